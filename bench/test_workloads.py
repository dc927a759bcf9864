"""W1-W10c (docs/spec.md §8, §12) per backend, one benchmark group per workload case, with the floor.

Run with ``python -m pytest bench/ --benchmark-only`` (see bench/conftest.py).
"""

from __future__ import annotations

import pytest


def check_backend_available(backend):
    import fastsample as fs

    st = dict(fs.backends())[backend]
    if not bool(st):
        pytest.skip(f"backend {backend} not available: {getattr(st, 'reason', '')}")


def test_workload(benchmark, case, backend, prepared, group_label, extra_info):
    """The public API call of the workload (fs.sample, fs.topk, fs.dry_penalty, fs.softmax;
    an engine step, chain.sample + chain.accept, for W10 and W1chain)."""
    import fastsample as fs

    check_backend_available(backend)
    benchmark.group = group_label
    nbytes = extra_info.record(benchmark, case, prepared, backend=backend)
    try:
        fn = prepared.call(backend)  # an engine case builds its chain here
        fn()  # warm-up outside the timing: JIT compilation, first-touch allocation
    except fs.BackendError as exc:  # an operation the backend does not have (yet)
        pytest.skip(str(exc).splitlines()[0])
    result = benchmark(fn)
    assert result is not None
    extra_info.bytes_per_second(benchmark, nbytes)


def test_floor(benchmark, case, prepared, group_label, extra_info):
    """np.max over the same input: the cost of reading it once (the yardstick)."""
    benchmark.group = group_label
    nbytes = extra_info.record(benchmark, case, prepared, backend="floor (np.max)")
    benchmark(prepared.floor)
    extra_info.bytes_per_second(benchmark, nbytes)
