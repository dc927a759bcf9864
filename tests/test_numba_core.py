"""What only the numba CPU backend has: its building blocks.

``kernels/cpu/simd.py`` (the fastmath flag set, row_max, exp64, exp64_neg,
exp_f32acc) against numpy, and ``draw.py``'s row draw at the rounding edge. The
draw, argmax, token_logprob, softmax, log_softmax and topk kernels run against the
reference on every compiled backend in ``test_fast_core.py``. Deterministic.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from fastsample.kernels.cpu import canonical as kcanon
from fastsample.kernels.cpu import draw as kdraw
from fastsample.kernels.cpu import simd

# ----------------------------------------------------------------------- simd


def test_fastmath_flags_have_no_nnan_ninf():
    assert "nnan" not in simd.FASTMATH and "ninf" not in simd.FASTMATH
    assert "fast" not in simd.FASTMATH


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max(dtype):
    rng = np.random.default_rng(0)
    for n in [1, 2, 7, 8, 63, 64, 65, 1000, 128256]:
        x = rng.standard_normal(n).astype(dtype)
        assert simd.row_max_array(x) == x.max()
        x[rng.random(n) < 0.5] = -np.inf
        assert simd.row_max_array(x) == x.max()
    assert simd.row_max_array(np.full(100, -np.inf, dtype)) == -np.inf
    assert simd.row_max_array(np.zeros(0, dtype)) == -np.inf
    x = np.array([-np.inf, -3.0, 2.5, 2.5, -np.inf], dtype)
    assert simd.row_max_array(x) == 2.5


def test_exp64_accuracy():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(-708.0, 0.0, 1_000_001), rng.uniform(-40, 0, 200_000),
                        -rng.exponential(1.0, 100_000), np.linspace(0.0, 709.0, 10_001)])
    got, want = simd.exp64_array(x), np.exp(x)
    rel = np.abs(got / want - 1.0)
    assert rel.max() <= simd.EXP64_MAX_REL_ERR
    assert rel.max() <= 2.3e-16  # measured: 1 ulp


def test_exp64_subnormal_and_special_values():
    x = np.linspace(-745.2, -708.0, 100_001)
    got, want = simd.exp64_array(x), np.exp(x)
    assert np.max(np.abs(got - want)) <= 5e-324  # within one subnormal unit
    special = np.array([-np.inf, -1e300, -746.0, -745.2, 0.0, -0.0, 710.0, np.inf, 1.0, -1.0])
    with np.errstate(over="ignore"):
        want = np.exp(special)
    got = simd.exp64_array(special)
    np.testing.assert_allclose(got, want, rtol=2.3e-16, atol=0)  # zeros and infs exact
    assert got[0] == 0.0 and got[4] == 1.0 and got[5] == 1.0


def test_exp_f32acc_accuracy():
    rng = np.random.default_rng(2)
    x = np.concatenate([np.linspace(-708.0, 0.0, 1_000_001), rng.uniform(-40, 0, 200_000)])
    rel = np.abs(simd.exp_f32acc_array(x) / np.exp(x) - 1.0)
    assert rel.max() <= simd.EXP_F32ACC_MAX_REL_ERR
    special = np.array([-np.inf, -1e300, -709.0, 0.0, 710.0, np.inf])
    got = simd.exp_f32acc_array(special)
    assert np.array_equal(got, [0.0, 0.0, 0.0, 1.0, np.inf, np.inf])


# ----------------------------------------------------------------------- draw


def test_draw_row_last_finite_when_rounding_leaves_none():
    # u so close to 1 that u * W may not be exceeded: the last finite token
    row = np.array([0.0, 0.0, -np.inf, 0.0, -np.inf], np.float32)
    assert kdraw.draw_row(row, 1.0) == 3
    assert kdraw.draw_row(row, 0.5) == 1


@numba.njit(cache=True)
def _exp64_neg_array(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = simd.exp64_neg(x[i])
    return out


def test_exp64_neg_is_exp64_bit_for_bit_on_non_positive_inputs():
    """The canonical kernel's cheaper exp must round exactly like exp64 (x <= 0)."""
    rng = np.random.default_rng(3)
    x = np.concatenate([np.linspace(-750.0, 0.0, 1_000_001), -rng.exponential(5.0, 200_000),
                        np.linspace(-746.5, -707.5, 100_001), [-np.inf, -0.0, 0.0, -1e300]])
    got = _exp64_neg_array(x)
    want = simd.exp64_array(x)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))


# ------------------------------------------------- 8-lane exp passes (simd.py)
# Not cached: they must always be compiled against the current simd.py.


@numba.njit(fastmath=simd.FASTMATH)
def _scalar_weights(x, mw, t):
    """Per-lane exp64_neg(float64(y) - mw), y = x or canonical's _temp(x, t)."""
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        y = np.float64(x[i]) if t == 1.0 else np.float64(kcanon._temp(x[i], t))
        out[i] = simd.exp64_neg(y - mw)
    return out


@numba.njit(fastmath=simd.FASTMATH)
def _vector_store(x, s, n, mw):
    w = np.full(x.shape[0], -1.0)
    tot = simd.exp_store_sum(x, s, n, mw, w)
    return w, tot


@numba.njit(fastmath=simd.FASTMATH)
def _vector_group_sums(x, T, mw, t):
    """exp_sum_ge / exp_sum_ge_temp over every 8-lane group of x."""
    out = np.empty(x.shape[0] // 8)
    for g in range(out.shape[0]):
        if t == 1.0:
            out[g] = simd.exp_sum_ge(x, 8 * g, 8, T, mw)
        else:
            out[g] = simd.exp_sum_ge_temp(x, 8 * g, 8, T, mw, t)
    return out


def _exp_pass_inputs(rng):
    """float32 logits x <= 0 and offsets mw >= 0 (the contract: exp arguments <= 0):
    ordinary, -inf, x - mw < -745 (weight 0) and the subnormal-result range."""
    x = np.concatenate([rng.uniform(-40, 0, 20_000), rng.uniform(-746, -700, 20_000),
                        rng.uniform(-2000, -740, 4000), [-np.inf] * 64,
                        -np.abs(rng.standard_normal(20_000)) * 4]).astype(np.float32)
    x = x[rng.permutation(x.shape[0])]
    return x[: x.shape[0] // 8 * 8], [0.0, 3.5, 700.25]


def test_exp_store_sum_is_exp64_neg_lane_by_lane():
    rng = np.random.default_rng(4)
    x, mws = _exp_pass_inputs(rng)
    for mw in mws:
        want = _scalar_weights(x, mw, 1.0)
        assert (want == 0).any() and ((want > 0) & (want < 2.3e-308)).any()  # inputs reach both
        w, tot = _vector_store(x, 0, x.shape[0], mw)
        assert np.array_equal(w.view(np.uint64), want.view(np.uint64))
        np.testing.assert_allclose(tot, math.fsum(want), rtol=1e-13, atol=0)
        # a sub-range: only [s, s + n) is written
        w, tot = _vector_store(x, 16, 40, mw)
        assert np.array_equal(w[16:56].view(np.uint64), want[16:56].view(np.uint64))
        assert (w[:16] == -1.0).all() and (w[56:] == -1.0).all()


@pytest.mark.parametrize("t", [1.0, 0.8, 0.7, 1.3, 0.123456789, 3e-3, 1e-31, 1e31])
def test_exp_sum_ge_masks_and_matches_exp64_neg(t):
    """One lane of each 8 kept (the others below T): the pass's sum is that lane's
    weight bit for bit, so every lane is compared; all-masked groups give 0."""
    rng = np.random.default_rng(5)
    x, mws = _exp_pass_inputs(rng)
    x = (x * t).astype(np.float32)  # x / t spans the same range for every t
    T = float(np.float32(-50.0 * t))  # a float32 value: exact ties below
    keep = rng.integers(0, 8, x.shape[0] // 8) + 8 * np.arange(x.shape[0] // 8)
    xs = np.full_like(x, np.float32(-60.0 * t))
    xs[rng.random(x.shape[0]) < 0.3] = -np.inf
    xs[keep] = x[keep]                                           # the kept lane
    xs[keep[::5]] = np.float32(-np.inf)                          # some groups all masked
    xs[keep[1::5]] = np.float32(T)                               # >= T keeps ties
    kept = xs[keep].astype(np.float64) >= T  # the passes compare in float64
    assert kept.any() and not kept.all()
    for mw in mws:
        want = np.where(kept, _scalar_weights(xs[keep], mw, t), 0.0)
        got = _vector_group_sums(xs, T, mw, t)
        assert (want > 0).any()
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
    # every lane kept: two orders of 8 positive terms, each within 7 * 2**-53
    for mw in mws:
        want = _scalar_weights(x, mw, t).reshape(-1, 8)
        got = _vector_group_sums(x, -np.inf, mw, t)
        np.testing.assert_allclose(got, want.sum(axis=1), rtol=14 * 2.0**-53, atol=0)
