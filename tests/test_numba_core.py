"""What only the numba CPU backend has: its building blocks.

``kernels/cpu/simd.py`` (the fastmath flag set, row_max, exp64, exp64_neg,
exp_f32acc) against numpy, and ``draw.py``'s row draw at the rounding edge. The
draw, argmax, token_logprob, softmax, log_softmax and topk kernels run against the
reference on every compiled backend in ``test_fast_core.py``. Deterministic.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
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
