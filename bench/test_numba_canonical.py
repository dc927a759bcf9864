"""pytest-benchmark: the fused canonical kernel (kernels/cpu/canonical.py) on W1-W6.

    python -m pytest bench/test_numba_canonical.py --benchmark-only

Each workload is one group holding the kernel (``sample_canonical``, called directly,
without the public wrapper's validation) and ``floor``: ``np.max`` over the same
input, the cost of reading it once, measured in the same run.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastsample import workloads as wl

canonical = pytest.importorskip("fastsample.kernels.cpu.canonical")

WIDS = ["W1", "W2", "W3", "W4", "W5", "W6"]
_INPUTS: dict = {}


def _inputs(wid):
    if wid not in _INPUTS:
        case = wl.get(wid).cases[0]
        B = case.B
        q = dict(case.prepare(seed=0).inputs)  # per-row parameters (W4) expanded
        x = np.atleast_2d(q.pop("logits"))
        p = dict(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0, min_keep=1)
        p.update(q)

        def arr(v, dt):
            return np.ascontiguousarray(np.broadcast_to(np.asarray(v, dt), (B,)))

        args = (x, arr(p["top_k"], np.int64), arr(p["top_p"], np.float64),
                arr(p["min_p"], np.float64), arr(p["temperature"], np.float64),
                arr(p["min_keep"], np.int64), True, np.zeros(B, np.uint64),
                np.zeros(B, np.uint64))
        _INPUTS[wid] = (case, x, args)
    return _INPUTS[wid]


@pytest.mark.parametrize("wid", WIDS)
def test_canonical_kernel(benchmark, wid):
    case, x, args = _inputs(wid)
    benchmark.group = f"canonical {wid}"
    benchmark.extra_info.update({"workload": wid, "B": case.B, "V": x.shape[1]})
    canonical.sample_canonical(*args)  # compile outside the timing
    out = benchmark(canonical.sample_canonical, *args)
    assert out.shape == (case.B,)


@pytest.mark.parametrize("wid", WIDS)
def test_floor(benchmark, wid):
    case, x, args = _inputs(wid)
    benchmark.group = f"canonical {wid}"
    row = x[0] if case.B == 1 else x
    if case.B == 1:
        benchmark(np.max, row)
    else:
        benchmark(np.max, row, axis=-1)
