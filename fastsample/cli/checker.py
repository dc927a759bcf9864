"""``fastsample check``: each fast backend against the numpy reference.

For every stage, the W1-W6 chains and the array operations, on four kinds of random
input (``llm_like``, ``flat``, ``ties``, ``masked``), a backend must give:

- the same masks (the same tokens at ``-inf``) as the reference;
- processed logits within ``atol`` of it, relative to ``max(1, |reference|)``;
- the same token as the reference for every row, seed and position tried;
- draws that fit the reference probabilities: a chi-square goodness-of-fit test of
  ``draws`` tokens drawn by the backend (one ``llm_like`` row, a different seed and
  position each) against the reference's probabilities for those draws (the mean of
  the reference's softmax of each draw's processed row); it fails when its p-value is
  below ``CHI2_ALPHA`` or a draw lands on a token the reference masks.

``run(...)`` returns the JSON document (format in ``docs/benchmarks.md``); a result
with ``ok`` false is a mismatch, ``ok`` None a stage the backend does not have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import workloads as wl

__all__ = ["CHI2_ALPHA", "KINDS", "chi_square", "inputs", "run", "stage_specs"]

#: The chi-square test fails below this p-value. The draws are a pure function of the
#: seeds, so the verdict is deterministic; 1e-6 keeps a correct backend from failing
#: by chance on any of the ~30 tests of a run.
CHI2_ALPHA = 1e-6

KINDS = ("llm_like", "flat", "ties", "masked")


def inputs(kind: str, B: int, V: int, seed: int) -> np.ndarray:
    """``(B, V)`` float32 test logits of one kind.

    ``ties``: llm_like rounded to steps of 0.5 (many equal logits, at the top too);
    ``masked``: llm_like with about half of each row at ``-inf``, and row 0 masked
    everywhere but one token.
    """
    if kind == "llm_like":
        return wl.llm_like(B, V, seed)
    if kind == "flat":
        return wl.flat(B, V, seed)
    if kind == "ties":
        return (np.round(wl.llm_like(B, V, seed) * 2.0) / 2.0).astype(np.float32)
    if kind == "masked":
        x = wl.llm_like(B, V, seed)
        rng = np.random.default_rng([seed, 0x3A5C])
        x[rng.random((B, V)) < 0.5] = -np.inf
        if B:
            keep = int(rng.integers(0, V))
            keep = keep + 1 if keep in (0, 5 % V, V - 1) and V > 8 else keep  # not LogitBias's ids
            x[0, :] = -np.inf
            x[0, keep] = 0.25
        return x
    raise ValueError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")


def stage_specs(fs, V: int) -> list[tuple]:
    """``(name, make(B) -> fresh stage list, needs history)`` for every stage and chain."""
    def w4(B):
        p = wl.per_row_w1_params(B)
        return [fs.TopK(p["top_k"]), fs.TopP(p["top_p"]), fs.MinP(p["min_p"]),
                fs.Temperature(p["temperature"])]

    return [
        ("LogitBias", lambda B: [fs.LogitBias({0: 2.0, 5 % V: -np.inf, V - 1: -1.5})], False),
        ("Penalties", lambda B: [fs.Penalties(repeat=1.1, frequency=0.1, presence=0.2, last_n=64)], True),
        ("DRY", lambda B: [fs.DRY(0.8, base=1.75, allowed_length=2, last_n=-1)], True),
        ("NoRepeatNGram", lambda B: [fs.NoRepeatNGram(3)], True),
        ("TopNSigma", lambda B: [fs.TopNSigma(1.0)], False),
        ("TopK", lambda B: [fs.TopK(40)], False),
        ("Typical", lambda B: [fs.Typical(0.9)], False),
        ("TopP", lambda B: [fs.TopP(0.95)], False),
        ("MinP", lambda B: [fs.MinP(0.05)], False),
        ("XTC", lambda B: [fs.XTC(0.5, 0.1)], False),
        ("Epsilon", lambda B: [fs.Epsilon(3e-4)], False),
        ("Eta", lambda B: [fs.Eta(3e-4)], False),
        ("TopA", lambda B: [fs.TopA(0.2)], False),
        ("PLess", lambda B: [fs.PLess()], False),
        ("TailFree", lambda B: [fs.TailFree(0.95)], False),
        ("Temperature", lambda B: [fs.Temperature(0.8)], False),
        ("DynamicTemperature", lambda B: [fs.DynamicTemperature(0.8, 0.3, 1.0)], False),
        ("Smoothing", lambda B: [fs.Smoothing(0.3, 1.5)], False),
        ("Greedy", lambda B: [fs.Greedy()], False),
        ("Mirostat", lambda B: [fs.Mirostat(5.0, 0.1, 100)], False),
        ("MirostatV2", lambda B: [fs.MirostatV2(5.0, 0.1)], False),
        ("AdaptiveP", lambda B: [fs.AdaptiveP(0.5, 0.9)], False),
        ("W1 chain (TopK TopP MinP Temperature)",
         lambda B: [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)], False),
        ("W2 chain (MinP Temperature)", lambda B: [fs.MinP(0.05), fs.Temperature(1.0)], False),
        ("W3 chain (TopP Temperature)", lambda B: [fs.TopP(0.95), fs.Temperature(1.0)], False),
        ("W4 chain (W1, per-row parameters)", w4, False),
        ("W5 chain (Temperature)", lambda B: [fs.Temperature(0.8)], False),
        ("W6 chain (TopP)", lambda B: [fs.TopP(0.95)], False),
        ("chain Penalties DRY W1",
         lambda B: [fs.Penalties(repeat=1.1), fs.DRY(0.8), fs.TopK(40), fs.TopP(0.95),
                    fs.MinP(0.05), fs.Temperature(0.8)], True),
    ]


def _chi2_sf(stat: float, df: int) -> float:
    """Upper tail of the chi-square distribution (scipy if present, else Wilson-Hilferty)."""
    try:
        from scipy.stats import chi2

        return float(chi2.sf(stat, df))
    except ImportError:
        z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
        return 0.5 * math.erfc(z / math.sqrt(2))


def chi_square(tokens: np.ndarray, expected_p: np.ndarray) -> dict[str, Any]:
    """Goodness of fit of drawn ``tokens`` to probabilities ``expected_p`` (sums to 1).

    Tokens expected fewer than 5 times are pooled into one bin (merged into the
    smallest other bin if the pool is still under 5). A draw of a token with
    probability 0 is reported as ``outside`` (and p = 0).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    n = tokens.size
    V = expected_p.size
    if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
        return {"stat": None, "df": 0, "p": 0.0, "outside": int(np.sum((tokens < 0) | (tokens >= V)))}
    counts = np.bincount(tokens, minlength=V).astype(np.float64)
    outside = int(counts[expected_p <= 0].sum())
    if outside:
        return {"stat": None, "df": 0, "p": 0.0, "outside": outside}
    exp = expected_p * n
    big = exp >= 5
    obs_bins = list(counts[big])
    exp_bins = list(exp[big])
    pool_o, pool_e = float(counts[~big].sum()), float(exp[~big].sum())
    if pool_e > 0:
        if pool_e >= 5 or not exp_bins:
            obs_bins.append(pool_o)
            exp_bins.append(pool_e)
        else:
            i = int(np.argmin(exp_bins))
            obs_bins[i] += pool_o
            exp_bins[i] += pool_e
    o, e = np.asarray(obs_bins), np.asarray(exp_bins)
    df = len(e) - 1
    if df < 1:  # one possible outcome: every draw must be it (checked by `outside`)
        return {"stat": 0.0, "df": 0, "p": 1.0, "outside": 0}
    stat = float(np.sum((o - e) ** 2 / e))
    return {"stat": stat, "df": df, "p": _chi2_sf(stat, df), "outside": 0}


def _softmax64(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    m = np.max(rows, axis=-1, keepdims=True)
    w = np.where(np.isfinite(rows), np.exp(rows - m), 0.0)
    return w / w.sum(axis=-1, keepdims=True)


def _rel_diff(ref: np.ndarray, got: np.ndarray) -> tuple:
    """(masks equal, max |ref - got| / max(1, |ref|) over tokens finite in both)."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return False, math.inf
    fr, fg = np.isfinite(ref), np.isfinite(got)
    both = fr & fg
    if not both.any():
        return bool(np.array_equal(fr, fg)), 0.0
    r = ref[both].astype(np.float64)
    diff = np.abs(r - got[both].astype(np.float64)) / np.maximum(1.0, np.abs(r))
    return bool(np.array_equal(fr, fg)), float(diff.max())


def _failure(exc: Exception) -> str:
    """One line naming an exception a backend raised where the reference did not."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _tiled_seeds(R: int, S: int, base: int):
    """Seeds and positions of ``S`` copies of ``R`` rows: copy s has seed base + s."""
    seeds = np.repeat(np.arange(S, dtype=np.uint64) + np.uint64(base), R)
    positions = (np.arange(R * S, dtype=np.uint64) * np.uint64(7919)) % np.uint64(100003)
    return seeds, positions


def _chain_check(fs, be, make, needs_hist, data, hists, seeds, draws, seed, atol):
    """One stage spec on backend ``be``: every metric, over every input kind."""
    res = {"masks_equal": True, "max_rel_diff": 0.0, "tokens_agree": 0, "tokens_total": 0,
           "bad_kinds": []}
    for kind, x in data.items():
        R = x.shape[0]
        hist = hists if needs_hist else None
        ref = fs.SamplerChain(make(R), seed=seed, backend="numpy").process(x, history=hist)
        got = fs.SamplerChain(make(R), seed=seed, backend=be).process(x, history=hist)
        same, diff = _rel_diff(ref, got)
        res["masks_equal"] &= same
        res["max_rel_diff"] = max(res["max_rel_diff"], diff)
        # Tokens: every row under `seeds` seeds, each at its own position.
        X = np.tile(x, (seeds, 1))
        s, pos = _tiled_seeds(R, seeds, seed)
        H = None if hist is None else [hists[i % R] for i in range(R * seeds)]
        rt = fs.SamplerChain(make(R * seeds), seed=s, backend="numpy").sample(X, history=H, position=pos)
        gt = fs.SamplerChain(make(R * seeds), seed=s, backend=be).sample(X, history=H, position=pos)
        agree = int(np.sum(np.asarray(rt) == np.asarray(gt)))
        res["tokens_agree"] += agree
        res["tokens_total"] += R * seeds
        if not same or diff > atol or agree != R * seeds:
            res["bad_kinds"].append(kind)
    # Chi-square on the first llm_like row: `draws` draws, a fresh seed and position each.
    row = data["llm_like"][:1]
    X = np.repeat(row, draws, axis=0)
    s, pos = _tiled_seeds(1, draws, seed + 1000)
    H = None if not needs_hist else [hists[0]] * draws
    drawn = fs.SamplerChain(make(draws), seed=s, backend=be).sample(X, history=H, position=pos)
    # Each draw's own reference probabilities (per-row parameters and XTC's roll make
    # them differ between draws); the expected counts are their sum.
    probs = fs.SamplerChain(make(draws), seed=s, backend="numpy").process(X, history=H, position=pos)
    expected = _softmax64(probs).mean(axis=0)
    chi = chi_square(np.asarray(drawn), expected)
    res.update({"chi2": chi["stat"], "chi2_df": chi["df"], "chi2_p": chi["p"],
                "draws_outside": chi["outside"], "draws": draws})
    return res


def _free_checks(fs, be, x_all, V, seed, atol) -> list[dict[str, Any]]:
    """softmax, log_softmax, topk and dry_penalty on backend ``be``."""
    out = []

    def add(name, fn):
        try:
            out.append({"name": name, **fn()})
        except fs.BackendError as exc:
            out.append({"name": name, "ok": None, "note": str(exc).splitlines()[0]})
        except Exception as exc:  # noqa: BLE001 - the backend failed where the reference did not
            out.append({"name": name, "ok": False, "note": _failure(exc)})

    def logits_op(op):
        def fn():
            same, diff = _rel_diff(op("numpy"), op(be))
            return {"masks_equal": same, "max_rel_diff": diff, "ok": same and diff <= atol}
        return fn

    add("softmax", logits_op(lambda b: fs.softmax(x_all, temperature=0.8, backend=b)))
    add("log_softmax", logits_op(lambda b: fs.log_softmax(x_all, backend=b)))
    for k in sorted({1, min(50, V), min(1000, V), V}):
        def fn(k=k):
            rv, ri = fs.topk(x_all, k, backend="numpy")
            gv, gi = fs.topk(x_all, k, backend=be)
            same_idx = bool(np.array_equal(ri, gi))
            same, diff = _rel_diff(rv, gv)
            return {"masks_equal": same, "max_rel_diff": diff, "same_ids": same_idx,
                    "ok": same_idx and same and diff == 0.0}
        add(f"topk k={k}", fn)
    for hname, h in (("natural", wl.natural_history(2048, V, seed)),
                     ("repeated", wl.repeated_history(2048, V, seed))):
        def fn(h=h):
            r_ids, r_pen = fs.dry_penalty(h, V, 0.8, backend="numpy")
            g_ids, g_pen = fs.dry_penalty(h, V, 0.8, backend=be)
            same_ids = bool(np.array_equal(r_ids, g_ids))
            diff = _rel_diff(np.asarray(r_pen), np.asarray(g_pen))[1] if same_ids else math.inf
            return {"same_ids": same_ids, "max_rel_diff": diff, "ok": same_ids and diff <= atol}
        add(f"dry_penalty {hname}", fn)
    return out


def run(backends: Sequence[str], *, batch: int = 4, vocab: int = 4096, seeds: int = 16,
        draws: int = 2000, seed: int = 0, atol: float = 1e-5,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compare each backend with the reference; return the JSON document.

    ``batch`` rows of each input kind; ``seeds`` seeds per row for token agreement;
    ``draws`` draws for each chi-square test.
    """
    import fastsample as fs

    tick = progress or (lambda label: None)
    data = {k: inputs(k, batch, vocab, seed) for k in KINDS}
    rng = np.random.default_rng([seed, 99])
    hists = [wl.natural_history(int(rng.integers(1, 257)), vocab, seed + b) for b in range(batch)]
    x_all = np.concatenate([data[k] for k in KINDS])
    specs = stage_specs(fs, vocab)
    results: list[dict[str, Any]] = []
    for be in backends:
        for name, make, needs_hist in specs:
            tick(f"{be}: {name}")
            entry: dict[str, Any] = {"backend": be, "name": name}
            try:
                r = _chain_check(fs, be, make, needs_hist, data, hists, seeds, draws, seed, atol)
            except fs.BackendError as exc:  # a stage this backend does not have
                entry.update({"ok": None, "note": str(exc).splitlines()[0]})
            except Exception as exc:  # noqa: BLE001 - the backend failed where the reference did not
                entry.update({"ok": False, "note": _failure(exc)})
            else:
                ok = (r["masks_equal"] and r["max_rel_diff"] <= atol
                      and r["tokens_agree"] == r["tokens_total"]
                      and r["draws_outside"] == 0 and r["chi2_p"] >= CHI2_ALPHA)
                bad = r.pop("bad_kinds")
                note = f"differs on: {', '.join(bad)}" if bad else ""
                entry.update({**r, "ok": bool(ok), "note": note})
            results.append(entry)
        tick(f"{be}: array operations")
        for r in _free_checks(fs, be, x_all, vocab, seed, atol):
            results.append({"backend": be, **r, "note": r.get("note", "")})
    return {
        "format": "fastsample-check/1",
        "reference": "numpy",
        "backends": list(backends),
        "batch": batch, "vocab": vocab, "seeds": seeds, "draws": draws, "seed": seed,
        "atol": atol, "chi2_alpha": CHI2_ALPHA, "kinds": list(KINDS),
        "mismatches": sum(1 for r in results if r["ok"] is False),
        "results": results,
    }
