"""W1-W9 (SPEC §8) per backend, one benchmark group per workload case, with the floor.

Run with ``python -m pytest bench/ --benchmark-only`` (see bench/conftest.py).
"""

from __future__ import annotations

import pytest


def check_backend_available(backend):
    import fastsample as fs

    st = dict(fs.backends())[backend]
    if not bool(st):
        pytest.skip(f"backend {backend} not available: {getattr(st, 'reason', '')}")


def test_workload(benchmark, case, backend, prepared, group_label):
    """The public API call of the workload (fs.sample, fs.topk, fs.dry_penalty, fs.softmax)."""
    check_backend_available(backend)
    benchmark.group = group_label
    benchmark.extra_info.update({"workload": case.workload, "backend": backend, "V": prepared.V,
                                 "B": case.B, "op": case.op})
    fn = prepared.call(backend)
    fn()  # warm-up outside the timing: JIT compilation, first-touch allocation
    result = benchmark(fn)
    assert result is not None


def test_floor(benchmark, case, prepared, group_label):
    """np.max over the same input: the cost of reading it once (the yardstick)."""
    benchmark.group = group_label
    benchmark.extra_info.update({"workload": case.workload, "backend": "floor (np.max)",
                                 "V": prepared.V, "B": case.B})
    benchmark(prepared.floor)
