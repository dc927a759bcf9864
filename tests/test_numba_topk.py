"""numba ``topk`` (kernels/cpu/topk.py): exactness on the paths of the column-maxima
kernel (threshold refinement, all-equal columns, -inf thresholds, tails, sorts)."""

from __future__ import annotations

import numpy as np
import pytest
from fastsample.kernels.cpu import topk as ktopk
from test_fast_core import _assert_topk_equal  # exact values, ids, signed zeros

from fastsample import reference as ref
from fastsample import workloads as wl
from fastsample.validation import invalid_rows


def _check(x, k):
    _assert_topk_equal(ktopk, np.ascontiguousarray(x, dtype=np.float32), k)


V = wl.DEFAULT_VOCAB


@pytest.mark.parametrize("k", [1, 2, 7, 50, 63, 64, 65, 999, 1000, 1001, 4096])
def test_w7_like_rows(k):
    _check(wl.llm_like(2, V, seed=k), k)
    _check(wl.flat(2, V, seed=k), k)


@pytest.mark.parametrize("V_", [1, 2, 15, 16, 17, 31, 33, 257, 1000, 4099, 40001])
def test_odd_lengths_and_tails(V_):
    x = wl.llm_like(3, V_, seed=V_)
    for k in sorted({1, min(3, V_), V_ // 3, V_ // 2, max(V_ - 1, 1), V_}):
        _check(x, k)


def test_all_equal_and_signed_zero():
    z = np.zeros((2, V), np.float32)
    _check(z, 50)
    _check(z, 1000)
    z[0, 1::2] = -0.0
    z[1, ::5] = -0.0
    _check(z, 50)
    _check(z, 1000)
    c = np.full((1, 5000), 3.25, np.float32)
    for k in (1, 17, 4999, 5000):
        _check(c, k)


def test_masked_rows():
    x = np.full((3, V), -np.inf, np.float32)
    x[0, ::1009] = np.linspace(-1, 1, len(x[0, ::1009]))  # 128 finite entries
    x[2, 5] = 0.5
    for k in (1, 50, 127, 128, 129, 1000, V):
        _check(x, k)
    y = wl.llm_like(2, V, seed=3)
    y[:, : V // 2] = -np.inf
    _check(y, 50)
    _check(y, 1000)


def test_ties_at_the_threshold():
    rng = np.random.default_rng(7)
    x = rng.integers(-4, 3, size=(3, V)).astype(np.float32)  # 7 distinct values
    for k in (1, 50, 1000, 20000):
        _check(x, k)
    y = np.round(wl.llm_like(2, V, seed=5) * 2.0) / 2.0
    y[:, ::7] = -0.0
    for k in (50, 1000):
        _check(y, k)


def test_sorted_and_skewed_rows():
    up = np.arange(V, dtype=np.float32)[None, :] / V
    for k in (50, 1000):
        _check(up, k)
        _check(up[:, ::-1], k)
    sk = wl.llm_like(1, V, seed=9)
    sk[0, 123] = 1e30  # one huge value: the linear buckets of the sort are lopsided
    sk[0, 456] = -1e30
    for k in (50, 1000):
        _check(sk, k)
    wide = np.random.default_rng(1).standard_normal((1, V)).astype(np.float32)
    wide *= np.float32(1e36)
    _check(wide, 1000)


def test_extreme_values():
    x = wl.flat(1, 20000, seed=2)
    x[0, ::3] = np.float32(3.4e38)
    x[0, 1::11] = np.float32(1e-45)  # subnormals
    x[0, 2::13] = np.float32(-1e-45)
    for k in (1, 100, 7000, 20000):
        _check(x, k)


def test_k_zero_and_empty_batch():
    x = wl.llm_like(2, 100, seed=0)
    v, i = ktopk.topk(x, 0)
    assert v.shape == (2, 0) and i.shape == (2, 0)
    v, i = ktopk.topk(np.zeros((0, V), np.float32), 50)
    assert v.shape == (0, 50) and i.shape == (0, 50)
    v, i = ktopk.topk(np.array([-np.inf], np.float32), 1)
    assert v.tolist() == [-np.inf] and i.tolist() == [0]


def test_batched_rows_independent():
    x = wl.llm_like(64, 20000, seed=11)
    x[3] = 0.0
    x[7] = -np.inf
    for k in (1, 50, 1000):
        _check(x, k)


# --------------------------------------------------- the single-pass (streaming) path
# Rows of V >= TOPK_STREAM_MIN_V: a guessed threshold from an L2-sized prefix, one gather
# pass with buffer tightening (threshold or exact cut at ties), a two-pass fallback.


def test_stream_path_is_taken_for_w7_rows():
    assert V >= ktopk.TOPK_STREAM_MIN_V and V >= 16 * 1000


@pytest.mark.parametrize("seed", range(6))
def test_stream_random_k(seed):
    rng = np.random.default_rng(seed)
    x = wl.llm_like(2, V, seed=100 + seed)
    for k in rng.integers(1, V // 16, size=4):
        _check(x, int(k))


def test_stream_guess_too_high_falls_back():
    # the top of the row lies in the prefix, the rest is low: the guess misses k
    x = wl.llm_like(2, V, seed=21)
    x[:, 20000:] -= 100.0
    for k in (50, 1000, 5000):
        _check(x, k)


def test_stream_tightening_and_exact_tie_cut():
    # the rest keeps beating the threshold (ascending) and holds long runs of ties
    x = np.repeat(np.arange(V // 512 + 1, dtype=np.float32), 512)[None, :V].copy()
    x = np.concatenate([x, x[:, ::-1]])
    for k in (1, 50, 1000, 7000):
        _check(x, k)
    y = wl.llm_like(2, V, seed=4)
    y[:, 70000:] = 5.0  # ties above everything, after the prefix
    y[1, 90000::3] = 6.0
    for k in (50, 1000):
        _check(y, k)


def test_stream_infinities_and_zeros():
    x = wl.llm_like(3, V, seed=8)
    x[0, 60000::7] = np.inf  # k-th largest +inf: nothing later can enter
    x[1, 30000:] = -np.inf
    x[1, 100000::5] = 0.0
    x[1, 100001::5] = -0.0
    x[2, :] = -0.0
    x[2, 77777] = 1.0
    x[2, 99999:] = 0.0
    for k in (1, 50, 1000, 3000):
        _check(x, k)


@pytest.mark.parametrize("k", [0, 1, 50, 1000, 20000])
@pytest.mark.parametrize("V_", [V, V - 5, 5000])
def test_checked_flags_match_the_row_check(k, V_):
    """``topk_checked`` flags exactly the rows docs/spec.md §7 calls invalid, wherever the bad
    entry sits (streaming prefix, middle, the < 16 tail, the two-pass path), and its
    results for the valid rows are exact."""
    x = wl.llm_like(9, V_, seed=k + V_)
    x[1, 3] = np.nan
    x[2, V_ // 2 + 1] = np.nan
    x[3, V_ - 1] = np.nan
    x[4, V_ - 20] = np.inf
    x[5, :] = -np.inf
    x[6, V_ // 3] = -np.inf  # masked entries alone do not make a row invalid
    x[7, ::2] = np.nan
    x[8, V_ - 70] = np.inf
    x[8, V_ - 69] = np.nan
    vals, ids, invalid = ktopk.topk_checked(np.ascontiguousarray(x), k)  # k > V is clipped
    k = min(k, V_)
    assert vals.shape == ids.shape == (9, k)
    np.testing.assert_array_equal(invalid, invalid_rows(x))
    good = ~invalid
    rv, ri = ref.topk(x[good], k)
    np.testing.assert_array_equal(ids[good], ri)
    np.testing.assert_array_equal(vals[good], rv)
