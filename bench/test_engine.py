"""The baseline of the chain-overhead study: ``fs.sample`` with W1's parameters on
W1chain's row, in W1chain's group beside the chain (``bench/test_workloads.py``).

W10a-c, W1chain and W3rows themselves are cases of ``test_workload`` and ``test_peer``
like every other workload; only this comparison needs its own benchmark.
"""

from __future__ import annotations

import pytest


@pytest.mark.fs_ops("chain_step")
def test_chain_baseline(benchmark, case, backend, prepared, group_label, extra_info):
    """fs.sample on the row the chain samples (W1chain)."""
    import fastsample as fs

    status = fs.backends()[backend]
    if not status:
        pytest.skip(f"backend {backend} not available: {status.reason}")
    benchmark.group = group_label
    nbytes = extra_info.record(benchmark, case, prepared, backend=f"{backend} fs.sample")
    try:
        fn = prepared.baseline(backend)
        fn()  # warm-up outside the timing
    except fs.BackendError as exc:
        pytest.skip(str(exc).splitlines()[0])
    assert benchmark(fn) is not None
    extra_info.bytes_per_second(benchmark, nbytes)
