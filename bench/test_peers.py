"""The peers (numpy reference, torch, transformers warpers, llama.cpp) on W1-W10c.

Each peer's benchmark joins its workload's group, beside the backends and the floor of
``bench/test_workloads.py``. A peer that is not installed, or has no such operation, is
skipped with the reason. ``--fs-peers`` chooses them (see bench/conftest.py).
"""

from __future__ import annotations

import pytest

from fastsample.cli import peers


@pytest.mark.fs_ops("sample", "topk", "softmax", "dry_penalty", "engine")  # W1chain, W3rows: no peer
def test_peer(benchmark, case, peer, prepared, group_label, extra_info):
    ok, reason = peers.get(peer).status()
    if not ok:
        pytest.skip(f"peer {peer}: {reason}")
    try:
        fn = peers.get(peer).call(case, prepared)
    except peers.Unsupported as exc:
        pytest.skip(str(exc))
    benchmark.group = group_label
    note = {"note": fn.note} if getattr(fn, "note", None) else {}  # a peer doing less work says so
    nbytes = extra_info.record(benchmark, case, prepared, backend=f"peer {peer}", **note)
    fn()  # warm-up outside the timing
    benchmark(fn)
    extra_info.bytes_per_second(benchmark, nbytes)
