"""Run the docs/spec.md §8 and §12 workloads on backends and peers and collect the numbers.

``run(...)`` returns the JSON document that ``fastsample bench --json`` writes (format in
``docs/benchmarks.md``); printing, plots and markdown live in ``fastsample.cli.report``.
Every case is timed as: the floor (``np.max`` over the same input), then each backend,
then each peer, one after the other in the same process, so ratios are side by side.
A case with a baseline (W1chain: the chain vs ``fs.sample``) times the two interleaved,
batch by batch; the row-spread study (W3rows) times its pair interleaved on each row.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import peers as _peers
from . import sysinfo
from .. import workloads as wl
from ..registry import BackendError

__all__ = ["BUDGETS", "Budget", "input_bytes", "kept_tokens", "measure", "measure_interleaved", "run",
           "select_cases", "steps"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to time each measurement (seconds) and the bounds on its repeats."""

    seconds: float
    min_repeats: int
    max_repeats: int
    batch_time: float  # one timed batch of calls lasts about this long (timer resolution)


BUDGETS = {"full": Budget(2.0, 7, 1000, 5e-3), "quick": Budget(0.25, 3, 50, 1e-3)}


def measure(fn: Callable[[], Any], budget: Budget, repeats: int | None = None) -> dict[str, Any]:
    """Time ``fn``: one warm-up call, then ``repeats`` batches of ``number`` calls.

    ``number`` is chosen so a batch lasts about ``budget.batch_time``, and ``repeats`` so
    the whole lasts about ``budget.seconds`` (``repeats`` given: exactly that many).
    Returns per-call microseconds: median, quartiles, min, max, and the counts.
    """
    return measure_interleaved([fn], budget, repeats)[0]


def measure_interleaved(fns: Sequence[Callable[[], Any]], budget: Budget,
                        repeats: int | None = None) -> list[dict[str, Any]]:
    """Time several callables batch by batch in turn (A, B, A, B, ...), as ``measure``.

    Each gets its own warm-up and ``number``; ``repeats`` rounds of one batch each make
    the whole last about ``budget.seconds``. Interleaving puts the same machine noise
    on every callable, so the ratio of their medians is steadier than with one after
    the other. Returns one ``measure`` result per callable, in order.
    """
    clock = time.perf_counter
    first, single = [], []
    for fn in fns:
        t0 = clock()
        fn()  # warm-up: JIT compilation, caches, first-touch allocation
        t1 = clock()
        fn()
        single.append(max(clock() - t1, 1e-7))
        first.append(t1 - t0)
    numbers = [max(1, int(budget.batch_time / s)) for s in single]
    if repeats is None:
        round_time = sum(s * n for s, n in zip(single, numbers))
        repeats = int(budget.seconds / round_time)
        repeats = max(budget.min_repeats, min(budget.max_repeats, repeats))
    per_call = np.empty((len(fns), repeats))
    # A slow call (one per batch): its calibration call is its first sample.
    starts = [1 if n == 1 else 0 for n in numbers]
    for j, start in enumerate(starts):
        if start:
            per_call[j, 0] = single[j]
    for i in range(repeats):
        for j, (fn, number) in enumerate(zip(fns, numbers)):
            if i < starts[j]:
                continue
            t = clock()
            for _ in range(number):
                fn()
            per_call[j, i] = (clock() - t) / number
    return [_summary(per_call[j], numbers[j], first[j]) for j in range(len(fns))]


def _summary(per_call: np.ndarray, number: int, first: float) -> dict[str, Any]:
    us = per_call * 1e6
    q1, med, q3 = (float(v) for v in np.percentile(us, [25, 50, 75]))
    return {"median_us": med, "q1_us": q1, "q3_us": q3, "spread_us": q3 - q1,
            "min_us": float(us.min()), "max_us": float(us.max()), "repeats": int(us.size),
            "number": int(number), "first_call_us": first * 1e6}


#: Operations whose cases take ``--batch`` (the others have a fixed shape).
_BATCHED = ("sample", "topk", "softmax", "engine")


def select_cases(workloads: Sequence[str] | None = None, batch: int | None = None,
                 vocab: int | None = None, quick: bool = False) -> list[tuple]:
    """``[(case, label)]`` for the chosen workload ids, with every logits case at ``batch`` rows.

    ``batch`` leaves W8 (one history), W1chain and W3rows alone; cases that become
    identical (W7's B=1 and B=64) are measured once.
    """
    ids = None if not workloads else {wl.get(w).id for w in workloads}
    out, seen = [], set()
    for case in wl.CASES:
        if ids is not None and case.workload not in ids:
            continue
        if batch is not None and case.op in _BATCHED:
            per_row = bool(case.params.get("per_row"))
            case = dataclasses.replace(case, B=int(batch))
            label = case.label_for(quick=quick, vocab=vocab)
            if "B=" not in label:
                label += f" B={batch}" + (" per-row" if per_row else "")
        else:
            label = case.label_for(quick=quick, vocab=vocab)
        if label not in seen:
            seen.add(label)
            out.append((case, label))
    return out


def steps(cases: Sequence[tuple], n_backends: int, n_peers: int) -> int:
    """How many measurements ``run`` makes (each calls ``progress`` once)."""
    total = 0
    for case, _label in cases:
        if case.op == "row_spread":
            total += n_backends * int(case.params["rows"])
        elif case.op == "chain_step":
            total += 1 + n_backends
        else:
            total += 1 + n_backends + n_peers
    return total


def input_bytes(case, prepared) -> int:
    """Bytes the operation must read: the logits (one step's for an engine loop, every
    row's for W3rows), or the history for DRY."""
    inp = prepared.inputs
    if case.op == "dry_penalty":
        return int(np.asarray(inp["history"]).nbytes)
    if case.op == "engine":
        return int(np.asarray(inp["steps"][0]).nbytes)
    if case.op == "verify":   # the target rows, and the drafter's when given
        return int(inp["target"].nbytes) + (0 if inp["draft_probs"] is None
                                             else int(inp["draft_probs"].nbytes))
    key = "x" if case.op in ("topk", "softmax") else "logits"
    return int(np.asarray(inp[key]).nbytes)


def kept_tokens(case, prepared) -> float:
    """Mean tokens per row the operation keeps (reference): the draw's candidates for a
    sampling chain (an engine loop's first step), k for topk, V for softmax, penalised
    ids for DRY, W3's candidates over the rows of W3rows."""
    from .. import reference as ref
    from ..validation import per_row

    inp = prepared.inputs
    if case.op == "topk":
        return float(inp["k"])
    if case.op == "softmax":
        return float(prepared.V)
    if case.op == "dry_penalty":
        ids, _ = ref.dry_penalty(inp["history"], inp["vocab_size"], inp["multiplier"], inp["base"],
                                 inp["allowed_length"], inp["breakers"], inp["last_n"])
        return float(len(ids))
    if case.op == "row_spread":
        first = [preps[0] for _, preps in inp["rows"]]
        return float(np.mean([kept_tokens(p.case, p) for p in first]))
    if case.op == "engine":
        import fastsample as fs

        chain = fs.SamplerChain(wl.chain_stages(inp["chain"]), seed=inp["seed"], backend="numpy")
        chain.load_states([{"history": h} for h in inp["history"]])
        x = chain.process(np.atleast_2d(inp["steps"][0]))
        return float(np.isfinite(x).sum() / max(x.shape[0], 1))
    x = np.ascontiguousarray(np.atleast_2d(inp["logits"]), dtype=np.float32)
    B = x.shape[0]
    if "bitmask" in inp:   # W12: what the bitmask allows, then the chain
        x = ref.apply_token_bitmask(x, np.atleast_2d(inp["bitmask"]).view(np.uint32),
                                    np.arange(B))
        if case.op == "apply_bitmask":
            return float(np.isfinite(x).sum() / max(B, 1))
    ones = np.ones(B, np.int64)
    x = ref.top_k(x, per_row("top_k", inp.get("top_k", 0), B, integer=True), ones)
    x = ref.top_p(x, per_row("top_p", inp.get("top_p", 1.0), B), ones)
    x = ref.min_p(x, per_row("min_p", inp.get("min_p", 0.0), B), ones)
    return float(np.isfinite(x).sum() / max(B, 1))


def _versions(peer_names: Sequence[str]) -> dict[str, str | None]:
    import fastsample as fs

    out: dict[str, str | None] = {"fastsample": fs.__version__, "python": platform.python_version(),
                                     "numpy": np.__version__}
    try:
        import numba

        out["numba"] = numba.__version__
    except ImportError:
        out["numba"] = None
    for name in peer_names:
        if name != "numpy":
            out[name] = _peers.get(name).version()
    return out


def _threads() -> dict[str, int | None]:
    """Threads each multi-threaded implementation may use (numba's prange, torch's intra-op)."""
    import sys

    out: dict[str, int | None] = {}
    if "numba" in sys.modules:
        out["numba"] = int(sys.modules["numba"].get_num_threads())
    if "torch" in sys.modules:  # only if a peer imported it: never import torch for this
        out["torch"] = int(sys.modules["torch"].get_num_threads())
    return out


def _speedups(mine: float, others: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    return {name: (r["median_us"] / mine if r.get("median_us") and mine > 0 else None)
            for name, r in others.items()}


def run(*, backends: Sequence[str], peers: Sequence[str], cases: Sequence[tuple],
        vocab: int | None = None, quick: bool = False, seed: int = 0,
        repeats: int | None = None, progress: Callable[[str], None] | None = None,
        skipped_peers: dict[str, str] | None = None, command: str = "") -> dict[str, Any]:
    """Time every case on every backend and peer; return the JSON document.

    ``progress(label)`` is called before each measurement (for a progress bar).
    ``results`` holds one entry per (case, backend) and ``peer_results`` one per (case,
    peer); each has the timing, ``ratio_to_floor``, ``bytes_per_s``, ``kept_tokens``,
    ``per_row_us`` and ``speedup`` (the other implementation's median over this one's,
    per peer); a case with a baseline adds ``baseline_*`` and ``ratio_to_baseline``.
    ``row_spread`` holds one entry per backend for each row-spread case (W3rows).
    """
    budget = BUDGETS["quick" if quick else "full"]
    skipped = dict(skipped_peers or {})
    results: list[dict[str, Any]] = []
    peer_results: list[dict[str, Any]] = []
    spread: list[dict[str, Any]] = []
    tick = progress or (lambda label: None)
    for case, label in cases:
        prep = case.prepare(vocab=vocab, seed=seed, quick=quick)
        base = {"workload": case.workload, "case": label, "op": case.op, "B": case.B, "V": prep.V,
                "params": _jsonable(case.effective_params(quick)),
                "kept_tokens": kept_tokens(case, prep)}
        if case.op == "row_spread":
            spread.extend(_row_spread(prep, base, backends, budget, repeats, tick))
            continue
        nbytes = input_bytes(case, prep)
        tick(f"{label}: floor")
        floor = measure(prep.floor, budget, repeats)

        def entry(m, base=base, floor=floor, nbytes=nbytes):
            return {**base, **m, "floor_median_us": floor["median_us"], "floor_q1_us": floor["q1_us"],
                    "floor_q3_us": floor["q3_us"],
                    "ratio_to_floor": m["median_us"] / floor["median_us"] if floor["median_us"] > 0 else None,
                    "bytes_per_s": nbytes / (m["median_us"] * 1e-6) if m["median_us"] > 0 else None,
                    "per_row_us": m["median_us"] / max(base["B"], 1)}

        by_backend: dict[str, dict[str, Any]] = {}
        for be in backends:
            tick(f"{label}: {be}")
            try:
                if prep.has_baseline:
                    m, b = measure_interleaved([prep.call(be), prep.baseline(be)], budget, repeats)
                    by_backend[be] = {"backend": be, **entry(m), **_baseline_fields(m, b)}
                else:
                    by_backend[be] = {"backend": be, **entry(measure(prep.call(be), budget, repeats))}
            except BackendError as exc:  # an operation this backend does not have (yet)
                by_backend[be] = {**base, "backend": be, "skipped": str(exc).splitlines()[0]}
        by_peer: dict[str, dict[str, Any]] = {}
        # W1chain compares fastsample with itself (chain vs fs.sample): no peer. W12's
        # baseline is the call without the bitmask; its peers are timed too.
        for name in ([] if prep.has_baseline and case.op != "bitmask" else peers):
            if name == "numpy" and "numpy" in by_backend:  # the same call: time it once
                by_peer[name] = {**by_backend["numpy"], "peer": name}
                by_peer[name].pop("backend")
                continue
            tick(f"{label}: {name}")
            try:
                fn = _peers.get(name).call(case, prep)
            except _peers.Unsupported as exc:
                by_peer[name] = {**base, "peer": name, "skipped": str(exc)}
                continue
            except Exception as exc:  # noqa: BLE001 - found but broken (a bad shared library): skip it
                skipped[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
                peers = [p for p in peers if p != name]
                continue
            by_peer[name] = {"peer": name, **entry(measure(fn, budget, repeats))}
            if getattr(fn, "note", None):  # the peer does less or other work: say what
                by_peer[name]["note"] = fn.note
        timed_peers = {n: r for n, r in by_peer.items() if "median_us" in r}
        for r in by_backend.values():
            if "median_us" in r:
                r["speedup"] = _speedups(r["median_us"], timed_peers)
            results.append(r)
        for r in by_peer.values():
            if "median_us" in r:
                r["speedup"] = _speedups(r["median_us"], {n: o for n, o in timed_peers.items() if n != r["peer"]})
            peer_results.append(r)
    peer_list = [p for p in peers if p not in skipped]
    versions = _versions(peer_list)
    return {
        "format": "fastsample-bench/3",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "fastsample": versions["fastsample"],
        "python": versions["python"],
        "numpy": versions["numpy"],
        "versions": versions,
        "threads": _threads(),
        "platform": platform.platform(),
        "cpu": sysinfo.cpu_name(),
        "cpu_count": os.cpu_count(),
        "quick": quick,
        "vocab": vocab or wl.DEFAULT_VOCAB,
        "seed": seed,
        "backends": list(backends),
        "peers": peer_list,
        "skipped_peers": skipped,
        "results": results,
        "peer_results": peer_results,
        "row_spread": spread,
    }


def _baseline_fields(m: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The baseline's timing next to an entry, and the entry's median over it."""
    return {"baseline": "fs.sample", "baseline_median_us": b["median_us"], "baseline_q1_us": b["q1_us"],
            "baseline_q3_us": b["q3_us"], "baseline_repeats": b["repeats"], "baseline_number": b["number"],
            "ratio_to_baseline": m["median_us"] / b["median_us"] if b["median_us"] > 0 else None}


def _row_spread(prep, base: dict[str, Any], backends: Sequence[str], budget: Budget,
                repeats: int | None, tick: Callable[[str], None]) -> list[dict[str, Any]]:
    """W3rows on each backend: the pair (W3, W5) timed interleaved on every row.

    Each row gets a quarter of a measurement's budget. Per backend: every row's two
    timings and their ratio, and over the rows: the first workload's median and
    maximum, max / median, and the ratio's median, minimum and maximum.
    """
    short = dataclasses.replace(budget, seconds=budget.seconds / 4)
    pair = list(prep.inputs["pair"])
    kept = [kept_tokens(preps[0].case, preps[0]) for _, preps in prep.inputs["rows"]]
    out = []
    for be in backends:
        rows: list[dict[str, Any]] = []
        try:
            for (seed, preps), k in zip(prep.inputs["rows"], kept):
                tick(f"{base['case']} seed {seed}: {be}")
                timed = measure_interleaved([p.call(be) for p in preps], short, repeats)
                row: dict[str, Any] = {"seed": seed, "kept_tokens": k}
                for name, m in zip(pair, timed):
                    row[name] = {k: m[k] for k in ("median_us", "q1_us", "q3_us", "repeats", "number")}
                row["ratio"] = timed[0]["median_us"] / timed[1]["median_us"]
                rows.append(row)
        except BackendError as exc:
            out.append({**base, "backend": be, "pair": pair, "skipped": str(exc).splitlines()[0]})
            continue
        first = np.array([r[pair[0]]["median_us"] for r in rows])
        ratio = np.array([r["ratio"] for r in rows])
        med = float(np.median(first))
        out.append({**base, "backend": be, "pair": pair, "rows": rows, "median_us": med,
                    "max_us": float(first.max()), "min_us": float(first.min()),
                    "max_over_median": float(first.max()) / med if med > 0 else None,
                    "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
                    "ratio_max": float(ratio.max())})
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
