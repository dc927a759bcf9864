"""Run the SPEC §8 workloads on backends and peers and collect the numbers.

``run(...)`` returns the JSON document that ``fastsample bench --json`` writes (format in
``docs/benchmarks.md``); printing, plots and markdown live in ``fastsample.report``.
Every case is timed as: the floor (``np.max`` over the same input), then each backend,
then each peer, one after the other in the same process, so ratios are side by side.
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
from . import workloads as wl
from .registry import BackendError

__all__ = ["BUDGETS", "Budget", "input_bytes", "kept_tokens", "measure", "run", "select_cases"]


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
    clock = time.perf_counter
    t0 = clock()
    fn()  # warm-up: JIT compilation, caches, first-touch allocation
    t1 = clock()
    fn()
    single = max(clock() - t1, 1e-7)
    number = max(1, int(budget.batch_time / single))
    if repeats is None:
        repeats = int(budget.seconds / (single * number))
        repeats = max(budget.min_repeats, min(budget.max_repeats, repeats))
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
    q1, med, q3 = (float(v) for v in np.percentile(us, [25, 50, 75]))
    return {"median_us": med, "q1_us": q1, "q3_us": q3, "spread_us": q3 - q1,
            "min_us": float(us.min()), "max_us": float(us.max()), "repeats": int(repeats),
            "number": int(number), "first_call_us": (t1 - t0) * 1e6}


def select_cases(workloads: Sequence[str] | None = None, batch: int | None = None,
                 vocab: int | None = None, quick: bool = False) -> list[tuple]:
    """``[(case, label)]`` for the chosen workload ids, with every logits case at ``batch`` rows.

    ``batch`` leaves W8 (one history) alone; cases that become identical (W7's B=1 and
    B=64) are measured once.
    """
    ids = None if not workloads else {wl.get(w).id for w in workloads}
    out, seen = [], set()
    for case in wl.CASES:
        if ids is not None and case.workload not in ids:
            continue
        if batch is not None and case.op != "dry_penalty":
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


def input_bytes(case, prepared) -> int:
    """Bytes the operation must read: the logits, or the history for DRY."""
    if case.op == "dry_penalty":
        return int(np.asarray(prepared.inputs["history"]).nbytes)
    key = "logits" if case.op == "sample" else "x"
    return int(np.asarray(prepared.inputs[key]).nbytes)


def kept_tokens(case, prepared) -> float:
    """Mean tokens per row the operation keeps (reference): the draw's candidates for a
    sampling chain, k for topk, V for softmax, penalised ids for DRY."""
    from . import reference as ref
    from .validation import per_row

    inp = prepared.inputs
    if case.op == "topk":
        return float(inp["k"])
    if case.op == "softmax":
        return float(prepared.V)
    if case.op == "dry_penalty":
        ids, _ = ref.dry_penalty(inp["history"], inp["vocab_size"], inp["multiplier"], inp["base"],
                                 inp["allowed_length"], inp["breakers"], inp["last_n"])
        return float(len(ids))
    x = np.ascontiguousarray(np.atleast_2d(inp["logits"]), dtype=np.float32)
    B = x.shape[0]
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
    peer); each has the timing, ``ratio_to_floor``, ``bytes_per_s``, ``kept_tokens`` and
    ``speedup`` (the other implementation's median over this one's, per peer).
    """
    budget = BUDGETS["quick" if quick else "full"]
    skipped = dict(skipped_peers or {})
    results: list[dict[str, Any]] = []
    peer_results: list[dict[str, Any]] = []
    tick = progress or (lambda label: None)
    for case, label in cases:
        prep = case.prepare(vocab=vocab, seed=seed, quick=quick)
        base = {"workload": case.workload, "case": label, "op": case.op, "B": case.B, "V": prep.V,
                "params": _jsonable(case.effective_params(quick)),
                "kept_tokens": kept_tokens(case, prep)}
        nbytes = input_bytes(case, prep)
        tick(f"{label}: floor")
        floor = measure(prep.floor, budget, repeats)

        def entry(m, base=base, floor=floor, nbytes=nbytes):
            return {**base, **m, "floor_median_us": floor["median_us"], "floor_q1_us": floor["q1_us"],
                    "floor_q3_us": floor["q3_us"],
                    "ratio_to_floor": m["median_us"] / floor["median_us"] if floor["median_us"] > 0 else None,
                    "bytes_per_s": nbytes / (m["median_us"] * 1e-6) if m["median_us"] > 0 else None}

        by_backend: dict[str, dict[str, Any]] = {}
        for be in backends:
            tick(f"{label}: {be}")
            try:
                by_backend[be] = {"backend": be, **entry(measure(prep.call(be), budget, repeats))}
            except BackendError as exc:  # an operation this backend does not have (yet)
                by_backend[be] = {**base, "backend": be, "skipped": str(exc).splitlines()[0]}
        by_peer: dict[str, dict[str, Any]] = {}
        for name in peers:
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
        "format": "fastsample-bench/2",
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
    }


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
