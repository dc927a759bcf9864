"""The block-wide tree reductions of ``kernels/cuda/block.py`` (one generated body each)."""

import numpy as np
import pytest
from fastsample.kernels.cuda.block import (
    max_f32,
    max_f64,
    max_i32,
    min_i32,
    sum_f64,
    sum_i32,
)
from fastsample.kernels.cuda.target import TPB
from numba import cuda, float32, float64, int32


@cuda.jit
def _reduce(xf, xd, xi, of, od, oi):
    """Every reduction, each thread writing what it got (all threads must agree)."""
    shf = cuda.shared.array(TPB, float32)
    shd = cuda.shared.array(TPB, float64)
    shi = cuda.shared.array(TPB, int32)
    t = cuda.threadIdx.x
    of[t] = max_f32(xf[t], shf)
    od[t, 0] = sum_f64(xd[t], shd)
    od[t, 1] = max_f64(xd[t], shd)
    oi[t, 0] = sum_i32(xi[t], shi)
    oi[t, 1] = max_i32(xi[t], shi)
    oi[t, 2] = min_i32(xi[t], shi)


def _tree(values, combine):
    """The kernels' fold order: slot i takes slot i + s, for s = TPB/2, ..., 1."""
    a = list(values)
    s = TPB // 2
    while s > 0:
        for i in range(s):
            a[i] = combine(a[i], a[i + s])
        s //= 2
    return a[0]


def _run(x, xi):
    """``(max_f32, [sum_f64, max_f64], [sum_i32, max_i32, min_i32])`` per thread."""
    of = cuda.device_array(TPB, np.float32)
    od = cuda.device_array((TPB, 2), np.float64)
    oi = cuda.device_array((TPB, 3), np.int32)
    _reduce[1, TPB](cuda.to_device(x.astype(np.float32)), cuda.to_device(x),
                    cuda.to_device(xi), of, od, oi)
    return of.copy_to_host(), od.copy_to_host(), oi.copy_to_host()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float_reductions_follow_the_fixed_tree(seed):
    rng = np.random.default_rng(seed)
    # magnitudes over 30 decades, so the order can change the sum (it does for seed 2)
    x = rng.standard_normal(TPB) * 10.0 ** rng.integers(-15, 15, TPB)
    x[rng.integers(TPB)] = -np.inf if seed == 1 else x[0]   # -inf or a tie
    got32, got, _ = _run(x, np.zeros(TPB, np.int32))
    want_sum = _tree(x.tolist(), lambda a, b: a + b)
    np.testing.assert_array_equal(got[:, 0], np.full(TPB, want_sum))  # every thread
    np.testing.assert_array_equal(got[:, 1], np.full(TPB, x.max()))
    np.testing.assert_array_equal(got32, np.full(TPB, x.astype(np.float32).max()))


def test_float_max_of_all_masked_is_minus_inf():
    got32, got, _ = _run(np.full(TPB, -np.inf), np.zeros(TPB, np.int32))
    assert (got[:, 1] == -np.inf).all()
    assert (got32 == -np.inf).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_int_reductions(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-1000, 1000, TPB).astype(np.int32)
    x[-1] = x[0]   # a tie
    _, _, got = _run(np.zeros(TPB), x)
    np.testing.assert_array_equal(got[:, 0], np.full(TPB, x.sum()))
    np.testing.assert_array_equal(got[:, 1], np.full(TPB, x.max()))
    np.testing.assert_array_equal(got[:, 2], np.full(TPB, x.min()))
