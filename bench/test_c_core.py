"""pytest-benchmark: the C backend's core against numba, through the public API.

    python -m pytest bench/test_c_core.py --benchmark-only

W1-W6 (docs/spec.md §8) run through ``fs.sample`` (validation and wrapper included) on
``backend="c"`` and ``backend="numba"``, beside ``floor`` (``np.max`` over the same
input, the cost of reading it once) in one group per workload; ``topk`` (k = 50,
1000; W7, beside np.argpartition + a sort of the k) and ``softmax`` at B = 1 and 64
likewise. Speed targets are ratios to the floor read off these groups
(docs/c-backend.md), never asserted in a test.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import workloads as wl

pytest.importorskip("fastsample.c_backend")

WIDS = ["W1", "W2", "W3", "W4", "W5", "W6"]
BACKENDS = ["c", "numba"]
_CACHE: dict = {}


def _workload(wid):
    """(logits, fs.sample keywords) of the workload, as ``fastsample bench`` builds them."""
    if wid not in _CACHE:
        params = dict(wl.get(wid).cases[0].prepare(seed=0).inputs)
        _CACHE[wid] = (params.pop("logits"), params)
    return _CACHE[wid]


def _rows(B):
    key = ("llm", B)
    if key not in _CACHE:
        _CACHE[key] = wl.llm_like(B, wl.DEFAULT_VOCAB, 0)
    return _CACHE[key]


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("wid", WIDS)
def test_sample(benchmark, wid, impl):
    x, params = _workload(wid)
    benchmark.group = f"c-core {wid}"
    benchmark.extra_info.update({"workload": wid, "backend": impl})
    fs.sample(x, backend=impl, **params)  # compile / warm outside the timing
    out = benchmark(fs.sample, x, backend=impl, **params)
    assert np.all((np.asarray(out) >= 0) & (np.asarray(out) < x.shape[-1]))


@pytest.mark.parametrize("wid", WIDS)
def test_sample_floor(benchmark, wid):
    x, _ = _workload(wid)
    benchmark.group = f"c-core {wid}"
    benchmark(np.max, x, axis=-1)


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("B", [1, 64])
@pytest.mark.parametrize("k", [50, 1000])
def test_topk(benchmark, k, B, impl):
    x = _rows(B)
    benchmark.group = f"c-core topk k={k} B={B}"
    benchmark.extra_info.update({"workload": "W7", "backend": impl})
    fs.topk(x, k, backend=impl)
    values, _ = benchmark(fs.topk, x, k, backend=impl)
    assert values.shape == (B, k)


def _argpartition_topk(x, k):
    """W7's baseline: np.argpartition, then a sort of the k (descending)."""
    part = np.argpartition(-x, k - 1, axis=-1)[:, :k]
    vals = np.take_along_axis(x, part, axis=-1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, axis=-1), np.take_along_axis(part, order, axis=-1)


@pytest.mark.parametrize("B", [1, 64])
@pytest.mark.parametrize("k", [50, 1000])
def test_topk_argpartition(benchmark, k, B):
    x = _rows(B)
    benchmark.group = f"c-core topk k={k} B={B}"
    benchmark.extra_info.update({"workload": "W7", "backend": "argpartition+sort"})
    values, _ = benchmark(_argpartition_topk, x, k)
    np.testing.assert_array_equal(values, fs.topk(x, k, backend="c")[0])  # same values


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("B", [1, 64])
def test_softmax(benchmark, B, impl):
    x = _rows(B)
    benchmark.group = f"c-core softmax B={B}"
    fs.softmax(x, backend=impl)
    out = benchmark(fs.softmax, x, backend=impl)
    assert out.shape == x.shape


@pytest.mark.parametrize("B", [1, 64])
def test_rows_floor(benchmark, B):
    x = _rows(B)
    benchmark.group = f"c-core floor B={B}"
    benchmark(np.max, x, axis=-1)
