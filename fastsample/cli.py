"""The ``fastsample`` command line: ``info``, ``sample``, ``bench``, ``check``, ``warmup``.

Errors are one line on stderr (``fastsample: error: ...``) and exit status 2; usage
errors too (argparse). ``check`` exits 1 when a backend disagrees with the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

PROG = "fastsample"
EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3


class CLIError(Exception):
    """An expected, user-facing error: printed as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


# --------------------------------------------------------------------------- helpers
def _fs():
    import fastsample as fs

    return fs


def _expected_errors() -> tuple:
    errs: List[type] = [CLIError, ValueError, TypeError, OSError]
    try:
        errs.append(_fs().BackendError)
    except Exception:  # the API itself failed to import: reported by main
        pass
    return tuple(errs)


def _backend_statuses() -> Dict[str, Any]:
    return dict(_fs().backends())


def _is_available(status: Any) -> bool:
    return bool(getattr(status, "available", status))


def _reason(status: Any) -> str:
    r = getattr(status, "reason", None)
    return str(r) if r else "unavailable"


def _parse_list(text: str, conv: Callable[[str], Any], name: str):
    """``"0.9"`` -> 0.9; ``"0.9,0.95"`` -> array (a per-row parameter)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [conv(p) for p in parts]
    except ValueError:
        raise CLIError(f"--{name}: expected a number or a comma-separated list, got {text!r}")
    if len(vals) == 1:
        return vals[0]
    return np.asarray(vals)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(text, 0)  # 0x... hex seeds


def _uint_list(text: str, name: str):
    v = _parse_list(text, _int, name)
    if isinstance(v, np.ndarray):
        if (v < 0).any():
            raise CLIError(f"--{name}: values must be >= 0")
        return v.astype(np.uint64)
    return v


def _load_logits(path: str, key: Optional[str]) -> np.ndarray:
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, expected a .npy or .npz file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise CLIError(f"{path}: cannot open ({e.strerror or e})") from None
    if not (magic.startswith(b"\x93NUMPY") or magic.startswith(b"PK\x03\x04")):
        raise CLIError(f"{path}: not a .npy or .npz file" + (" (it is empty)" if not magic else ""))
    try:
        obj = np.load(path, allow_pickle=False)
    except Exception as e:  # np.load raises many kinds (ValueError, EOFError, BadZipFile...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"{path}: cannot read as .npy/.npz ({msg})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            names = list(obj.files)
            if key is None:
                if len(names) == 1:
                    key = names[0]
                elif "logits" in names:
                    key = "logits"
                else:
                    raise CLIError(f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                                   "choose one with --key")
            if key not in names:
                raise CLIError(f"{path}: no array named {key!r} (has: {', '.join(names) or 'none'})")
            try:
                arr = obj[key]
            except Exception as e:
                raise CLIError(f"{path}: cannot read array {key!r} ({e})") from None
    else:
        if key is not None:
            raise CLIError(f"--key is for .npz files; {path} holds a single array")
        arr = obj
    return np.asarray(arr)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


# --------------------------------------------------------------------------- info
def _cpu_features() -> str:
    interesting = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                   "avx512_bf16", "avx512bf16", "amx-tile", "neon", "asimd", "sve"]
    name = platform.processor() or platform.machine()
    feats: List[str] = []
    try:
        import llvmlite.binding as llvm

        name = llvm.get_host_cpu_name()
        raw = llvm.get_host_cpu_features()
        on = {k for k, v in raw.items() if v}
        feats = [f for f in interesting if f.replace("_", "") in {x.replace("_", "") for x in on}]
    except Exception:
        try:
            with open("/proc/cpuinfo") as fh:
                for line in fh:
                    if line.startswith(("flags", "Features")):
                        flags = set(line.split(":", 1)[1].split())
                        feats = [f for f in interesting if f in flags]
                        break
        except OSError:
            pass
    return f"{name}; {' '.join(feats) if feats else 'no SIMD features detected'}"


def _version_of(mod: str) -> str:
    try:
        m = __import__(mod)
        return str(getattr(m, "__version__", "installed"))
    except Exception as e:
        return f"not installed ({type(e).__name__})"


def cmd_info(args: argparse.Namespace) -> int:
    fs = _fs()
    rows = [
        ("fastsample", str(getattr(fs, "__version__", "?"))),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("numpy", np.__version__),
        ("numba", _version_of("numba")),
        ("cffi", _version_of("cffi")),
        ("cpu", f"{os.cpu_count()} logical cores, {_cpu_features()}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print("backends:")
    statuses = _backend_statuses()
    bw = max(len(n) for n in statuses) if statuses else 0
    for name, st in statuses.items():
        if _is_available(st):
            print(f"  {name:<{bw}}  available")
        else:
            print(f"  {name:<{bw}}  not available: {_reason(st)}")
    return EXIT_OK


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    fs = _fs()
    logits = _load_logits(args.file, args.key)
    kw: Dict[str, Any] = dict(
        temperature=_parse_list(args.temperature, float, "temperature"),
        top_k=_parse_list(args.top_k, _int, "top-k"),
        top_p=_parse_list(args.top_p, float, "top-p"),
        min_p=_parse_list(args.min_p, float, "min-p"),
        min_keep=_parse_list(args.min_keep, _int, "min-keep"),
        seed=_uint_list(args.seed, "seed"),
        position=_uint_list(args.position, "position"),
        temperature_last=args.temperature_last,
        on_invalid=args.on_invalid,
        backend=args.backend,
    )
    tokens = fs.sample(logits, **kw)
    out = tokens.tolist() if isinstance(tokens, np.ndarray) else int(tokens)
    print(json.dumps(out))
    return EXIT_OK


# --------------------------------------------------------------------------- bench
def _select_backends(spec: Optional[str], *, allow_numpy: bool = True) -> List[str]:
    statuses = _backend_statuses()
    if not spec:
        return [n for n, st in statuses.items() if _is_available(st)]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise CLIError("--backends: no backend named")
    for n in names:
        if n not in statuses:
            raise CLIError(f"--backends: unknown backend {n!r}; known: {', '.join(statuses)}")
        if not _is_available(statuses[n]):
            raise CLIError(f"backend {n!r} is not available: {_reason(statuses[n])}")
    return list(dict.fromkeys(names))


def _measure(fn: Callable[[], Any], *, budget: float, min_repeats: int, max_repeats: int,
             batch_time: float) -> Dict[str, Any]:
    """Time ``fn``: one warm-up call, then ``repeats`` batches of ``number`` calls.

    ``number`` is chosen so a batch lasts about ``batch_time`` (timer resolution), and
    ``repeats`` so the whole measurement lasts about ``budget`` seconds.
    """
    clock = time.perf_counter
    t0 = clock()
    fn()  # warm-up: JIT compilation, caches, allocation
    t1 = clock()
    fn()
    single = max(clock() - t1, 1e-7)
    first = t1 - t0
    number = max(1, int(batch_time / single))
    repeats = int(budget / (single * number))
    repeats = max(min_repeats, min(max_repeats, repeats))
    per_call = np.empty(repeats)
    start = 0
    if number == 1:  # a slow call: the calibration call is the first sample
        per_call[0] = single
        start = 1
    for i in range(start, repeats):
        t = clock()
        for _ in range(number):
            fn()
        per_call[i] = (clock() - t) / number
    us = per_call * 1e6
    return {
        "median_us": float(np.median(us)),
        "q1_us": _pct(us, 25),
        "q3_us": _pct(us, 75),
        "min_us": float(us.min()),
        "max_us": float(us.max()),
        "repeats": repeats,
        "number": number,
        "first_call_us": first * 1e6,
    }


def _fmt_us(x: float) -> str:
    if x >= 1e5:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    sys.stdout.flush()


def cmd_bench(args: argparse.Namespace) -> int:
    from fastsample import workloads as wl

    backends = _select_backends(args.backends)
    if args.vocab is not None and args.vocab < 2:
        raise CLIError(f"--vocab must be >= 2, got {args.vocab}")
    selected = None
    if args.workloads:
        selected = {wl.get(w.strip()).id for w in args.workloads.split(",") if w.strip()}
    quick = bool(args.quick)
    if quick:
        budget, min_rep, max_rep, batch = 0.25, 3, 50, 1e-3
    else:
        budget, min_rep, max_rep, batch = 2.0, 7, 1000, 5e-3
    if args.repeats is not None:
        if args.repeats < 1:
            raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
        min_rep = max_rep = args.repeats

    vocab = args.vocab
    print(f"fastsample {getattr(_fs(), '__version__', '?')} bench"
          f"{' --quick' if quick else ''}: V={vocab or wl.DEFAULT_VOCAB}, backends: {', '.join(backends)}; "
          f"times in microseconds per call (median, IQR); floor = np.max over the same input",
          flush=True)
    results: List[Dict[str, Any]] = []
    rows: List[List[str]] = []
    for w in wl.WORKLOADS:
        if selected is not None and w.id not in selected:
            continue
        for case in w.cases:
            prep = case.prepare(vocab=vocab, seed=args.seed, quick=quick)
            floor = _measure(prep.floor, budget=budget / 2, min_repeats=min_rep,
                             max_repeats=max_rep, batch_time=batch)
            label = case.label_for(quick=quick, vocab=vocab)
            for be in backends:
                m = _measure(prep.call(be), budget=budget, min_repeats=min_rep,
                             max_repeats=max_rep, batch_time=batch)
                ratio = m["median_us"] / floor["median_us"] if floor["median_us"] > 0 else float("inf")
                res = {
                    "workload": case.workload,
                    "case": label,
                    "op": case.op,
                    "B": case.B,
                    "V": prep.V,
                    "params": _jsonable(case.effective_params(quick)),
                    "backend": be,
                    **m,
                    "floor_median_us": floor["median_us"],
                    "floor_q1_us": floor["q1_us"],
                    "floor_q3_us": floor["q3_us"],
                    "ratio_to_floor": ratio,
                }
                results.append(res)
                rows.append([label, be, _fmt_us(m["median_us"]),
                             f"{_fmt_us(m['q1_us'])}-{_fmt_us(m['q3_us'])}",
                             _fmt_us(floor["median_us"]), f"{ratio:,.1f}x", str(m["repeats"] * m["number"])])
    _print_table(["workload", "backend", "median", "IQR", "floor", "ratio", "calls"], rows,
                 [False, False, True, True, True, True, True])
    if args.json:
        doc = {
            "fastsample": str(getattr(_fs(), "__version__", "?")),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "quick": quick,
            "vocab": vocab or wl.DEFAULT_VOCAB,
            "seed": args.seed,
            "backends": backends,
            "results": results,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")
    return EXIT_OK


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


# --------------------------------------------------------------------------- check
def _check_stage_specs(fs, V: int) -> List[tuple]:
    """(name, factory of a fresh stage list, needs history) for ``check``."""
    specs = [
        ("LogitBias", lambda: [fs.LogitBias({0: 2.0, 5: -np.inf, V - 1: -1.5})], False),
        ("Penalties", lambda: [fs.Penalties(repeat=1.1, frequency=0.1, presence=0.2, last_n=64)], True),
        ("DRY", lambda: [fs.DRY(0.8, base=1.75, allowed_length=2, last_n=-1)], True),
        ("NoRepeatNGram", lambda: [fs.NoRepeatNGram(3)], True),
        ("TopNSigma", lambda: [fs.TopNSigma(1.0)], False),
        ("TopK", lambda: [fs.TopK(40)], False),
        ("Typical", lambda: [fs.Typical(0.9)], False),
        ("TopP", lambda: [fs.TopP(0.95)], False),
        ("MinP", lambda: [fs.MinP(0.05)], False),
        ("XTC", lambda: [fs.XTC(0.5, 0.1)], False),
        ("Epsilon", lambda: [fs.Epsilon(3e-4)], False),
        ("Eta", lambda: [fs.Eta(3e-4)], False),
        ("TopA", lambda: [fs.TopA(0.2)], False),
        ("PLess", lambda: [fs.PLess()], False),
        ("TailFree", lambda: [fs.TailFree(0.95)], False),
        ("Temperature", lambda: [fs.Temperature(0.8)], False),
        ("DynamicTemperature", lambda: [fs.DynamicTemperature(0.8, 0.3, 1.0)], False),
        ("Smoothing", lambda: [fs.Smoothing(0.3, 1.5)], False),
        ("Greedy", lambda: [fs.Greedy()], False),
        ("Mirostat", lambda: [fs.Mirostat(5.0, 0.1, 100)], False),
        ("MirostatV2", lambda: [fs.MirostatV2(5.0, 0.1)], False),
        ("AdaptiveP", lambda: [fs.AdaptiveP(0.5, 0.9)], False),
        ("chain W1 (TopK TopP MinP Temperature)",
         lambda: [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)], False),
        ("chain penalties+DRY+W1",
         lambda: [fs.Penalties(repeat=1.1), fs.DRY(0.8), fs.TopK(40), fs.TopP(0.95),
                  fs.MinP(0.05), fs.Temperature(0.8)], True),
    ]
    return specs


def _compare_logits(ref: np.ndarray, got: np.ndarray) -> tuple:
    ref = np.asarray(ref)
    got = np.asarray(got)
    if ref.shape != got.shape:
        return False, float("inf"), f"shape {got.shape} != {ref.shape}"
    fr, fg = np.isfinite(ref), np.isfinite(got)
    masks_equal = bool(np.array_equal(fr, fg))
    both = fr & fg
    diff = float(np.max(np.abs(ref[both].astype(np.float64) - got[both]))) if both.any() else 0.0
    return masks_equal, diff, ""


def cmd_check(args: argparse.Namespace) -> int:
    fs = _fs()
    from fastsample import workloads as wl

    statuses = _backend_statuses()
    if args.backends:
        backends = _select_backends(args.backends)
    else:
        backends = [n for n, st in statuses.items() if _is_available(st) and n != "numpy"]
        if not backends:
            unavailable = [f"{n} ({_reason(st)})" for n, st in statuses.items()
                           if n != "numpy" and not _is_available(st)]
            print("fastsample check: no fast backend available to check against the numpy reference"
                  + (f"; not available: {'; '.join(unavailable)}" if unavailable else ""))
            return EXIT_OK
    B, V, seeds = args.batch, args.vocab, args.seeds
    if B < 1 or V < 2 or seeds < 1:
        raise CLIError("check needs --batch >= 1, --vocab >= 2 and --seeds >= 1")
    logits = wl.llm_like(B, V, args.seed)
    if B > 1:
        logits[1, : V // 2] = -np.inf  # a partly masked row
    rng = np.random.default_rng([args.seed, 99])
    history = [wl.natural_history(int(rng.integers(1, 257)), V, args.seed + b) for b in range(B)]
    tol = args.atol
    failures = 0
    rows: List[List[str]] = []

    def record(be: str, what: str, ok: Optional[bool], masks: str, diff: str, agree: str, note: str = ""):
        nonlocal failures
        if ok is False:
            failures += 1
        status = "ok" if ok else ("skip" if ok is None else "FAIL")
        rows.append([be, what, masks, diff, agree, status + (f" ({note})" if note else "")])

    for be in backends:
        for name, make, needs_hist in _check_stage_specs(fs, V):
            hist = history if needs_hist else None
            try:
                ref_chain = fs.SamplerChain(make(), seed=args.seed, backend="numpy")
                got_chain = fs.SamplerChain(make(), seed=args.seed, backend=be)
                ref_l = ref_chain.process(logits, history=hist)
                got_l = got_chain.process(logits, history=hist)
            except getattr(fs, "BackendError", ()) as e:  # a stage this backend lacks
                record(be, name, None, "-", "-", "-", str(e).splitlines()[0])
                continue
            masks_equal, diff, note = _compare_logits(ref_l, got_l)
            scale = max(1.0, float(np.max(np.abs(ref_l[np.isfinite(ref_l)]), initial=0.0)))
            agree = 0
            for s in range(seeds):
                r = fs.SamplerChain(make(), seed=s, backend="numpy").sample(logits, history=hist)
                g = fs.SamplerChain(make(), seed=s, backend=be).sample(logits, history=hist)
                agree += int(np.sum(np.asarray(r) == np.asarray(g)))
            total = seeds * B
            ok = masks_equal and diff <= tol * scale and agree == total and not note
            record(be, name, ok, "same" if masks_equal else "DIFFER", f"{diff:.2e}", f"{agree}/{total}", note)
        # Free functions.
        for name, fn in (
            ("softmax", lambda b: fs.softmax(logits, temperature=0.8, backend=b)),
            ("log_softmax", lambda b: fs.log_softmax(logits, backend=b)),
        ):
            try:
                r, g = fn("numpy"), fn(be)
            except getattr(fs, "BackendError", ()) as e:
                record(be, name, None, "-", "-", "-", str(e).splitlines()[0])
                continue
            masks_equal, diff, note = _compare_logits(r, g)
            ok = masks_equal and diff <= tol * max(1.0, float(np.max(np.abs(r[np.isfinite(r)]), initial=0.0)))
            record(be, name, ok and not note, "same" if masks_equal else "DIFFER", f"{diff:.2e}", "-", note)
        for k in (1, 50, min(1000, V)):
            try:
                rv, ri = fs.topk(logits, k, backend="numpy")
                gv, gi = fs.topk(logits, k, backend=be)
            except getattr(fs, "BackendError", ()) as e:
                record(be, f"topk k={k}", None, "-", "-", "-", str(e).splitlines()[0])
                continue
            same_idx = np.array_equal(np.asarray(ri), np.asarray(gi))
            masks_equal, diff, note = _compare_logits(rv, gv)
            record(be, f"topk k={k}", same_idx and masks_equal and diff == 0.0 and not note,
                   "same" if masks_equal else "DIFFER", f"{diff:.2e}",
                   "same ids" if same_idx else "ids DIFFER", note)
        for hname, h in (("natural", wl.natural_history(2048, V, args.seed)),
                         ("repeated", wl.repeated_history(2048, V, args.seed))):
            try:
                r_ids, r_pen = fs.dry_penalty(h, V, 0.8, backend="numpy")
                g_ids, g_pen = fs.dry_penalty(h, V, 0.8, backend=be)
            except getattr(fs, "BackendError", ()) as e:
                record(be, f"dry_penalty {hname}", None, "-", "-", "-", str(e).splitlines()[0])
                continue
            same_ids = np.array_equal(np.asarray(r_ids), np.asarray(g_ids))
            diff = (float(np.max(np.abs(np.asarray(r_pen, np.float64) - g_pen))) if same_ids and np.size(r_pen)
                    else (0.0 if same_ids else float("inf")))
            record(be, f"dry_penalty {hname}", same_ids and diff <= tol,
                   "-", f"{diff:.2e}", "same ids" if same_ids else "ids DIFFER")
    print(f"fastsample check: reference (numpy) vs {', '.join(backends)}; B={B}, V={V}, "
          f"{seeds} seeds, atol={tol:g} (relative to max |logit|)")
    _print_table(["backend", "stage / chain", "masks", "max|diff|", "tokens", "result"], rows,
                 [False, False, False, True, True, False])
    if failures:
        print(f"fastsample check: {failures} mismatch(es)")
        return EXIT_MISMATCH
    print("fastsample check: all compared results agree")
    return EXIT_OK


def cmd_warmup(args: argparse.Namespace) -> int:
    """Compile (or load from numba's cache) every kernel of each compiled backend."""
    from fastsample import registry

    names = _select_backends(args.backends) if args.backends else [
        n for n, st in _backend_statuses().items() if _is_available(st) and n != "numpy"]
    for name in names:
        fn = getattr(registry.load(name), "warmup", None)
        if fn is None:
            print(f"fastsample warmup: {name}: nothing to compile")
        else:
            print(f"fastsample warmup: {name}: every kernel ready in {fn():.2f} s")
    if not names:
        print("fastsample warmup: no compiled backend available; nothing to do")
    return EXIT_OK


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(prog=PROG, description="LLM token samplers: numpy reference and fast backends.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    sub.required = True

    sp = sub.add_parser("info", help="versions, CPU features, backends and why any is unavailable")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("sample", help="draw tokens from logits in a .npy/.npz file; prints JSON",
                        description="Draw tokens with fs.sample. Per-row parameters are comma-separated "
                                    "lists of length B (e.g. --top-k 20,40,60).")
    sp.add_argument("file", help=".npy or .npz file holding (V,) or (B, V) logits")
    sp.add_argument("--key", help="array name inside a .npz (default: its only array, or 'logits')")
    sp.add_argument("--temperature", default="1.0", help="temperature (default 1.0; <= 0 is greedy)")
    sp.add_argument("--top-k", default="0", help="top-k (default 0 = off)")
    sp.add_argument("--top-p", default="1.0", help="top-p (default 1.0 = off)")
    sp.add_argument("--min-p", default="0.0", help="min-p (default 0.0 = off)")
    sp.add_argument("--min-keep", default="1", help="min_keep of every truncation (default 1)")
    sp.add_argument("--seed", default="0", help="seed (default 0)")
    sp.add_argument("--position", default="0", help="position of the token being drawn (default 0)")
    sp.add_argument("--temperature-last", action=argparse.BooleanOptionalAction, default=True,
                    help="llama.cpp order, temperature last (default); --no-temperature-last "
                         "gives HF's order (temperature first)")
    sp.add_argument("--on-invalid", choices=("raise", "flag"), default="raise",
                    help="invalid rows (NaN, +inf, all masked): error (default) or token -1")
    sp.add_argument("--backend", default="auto", help="auto (default), numpy, numba, c, cuda")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("bench", help="time workloads W1-W9 (SPEC §8) on the available backends")
    sp.add_argument("--quick", action="store_true", help="few repeats and short DRY histories (well under a minute)")
    sp.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    sp.add_argument("--backends", metavar="LIST", help="comma-separated backends (default: every available one)")
    sp.add_argument("--vocab", type=int, metavar="V", help="vocabulary size instead of 128256")
    sp.add_argument("--workloads", metavar="LIST", help="comma-separated workload ids (default: W1..W9)")
    sp.add_argument("--repeats", type=int, metavar="N", help="timed batches per measurement (default: adaptive)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("check", help="compare each available fast backend with the numpy reference")
    sp.add_argument("--backends", metavar="LIST",
                    help="comma-separated backends (default: every available fast backend; "
                         "naming numpy compares the reference with itself)")
    sp.add_argument("--vocab", type=int, default=4096, metavar="V", help="vocabulary size (default 4096)")
    sp.add_argument("--batch", type=int, default=8, metavar="B", help="rows (default 8)")
    sp.add_argument("--seeds", type=int, default=16, metavar="N", help="seeds for token agreement (default 16)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    sp.add_argument("--atol", type=float, default=1e-5,
                    help="tolerance on logits, relative to max(1, max |logit|) (default 1e-5)")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("warmup", help="compile every kernel ahead (numba's cache keeps them) and say how long it took")
    sp.add_argument("--backends", metavar="LIST", help="comma-separated backends (default: every available compiled one)")
    sp.set_defaults(func=cmd_warmup)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except _UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:
        if isinstance(e, _expected_errors()):
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        if os.environ.get("FASTSAMPLE_TRACEBACK"):
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set FASTSAMPLE_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
