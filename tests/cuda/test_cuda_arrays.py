"""``fs.softmax``, ``fs.log_softmax`` and ``fs.topk`` on the cuda backend.

softmax/log_softmax: identical -inf masks (zeros for softmax), values within 1e-5
relative to max(1, |value|) of the reference. topk: values and indices identical
(exactly k, descending, ties to the lower id).
"""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values

import fastsample as fs
from fastsample import workloads

ref = fs.reference


def rows():
    x = workloads.llm_like(3, 300, seed=1)
    x[1, ::4] = -np.inf
    x[2] = np.round(x[2])          # many ties
    return x


def test_softmax_matches_reference(dev):
    x = rows()
    t = np.array([0.5, 1.0, 3.0])
    got = host(fs.softmax(dev(x), dev(t)))
    want = ref.softmax(x, t)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    one = host(fs.softmax(dev(x[0]), 2.0))
    assert one.shape == (300,)
    np.testing.assert_allclose(one, ref.softmax(x[0], 2.0), rtol=1e-5, atol=1e-12)


def test_log_softmax_matches_reference(dev):
    x = rows()
    same_mask_and_values(host(fs.log_softmax(dev(x))), ref.log_softmax(x))
    same_mask_and_values(host(fs.log_softmax(dev(x[1]))), ref.log_softmax(x[1]))
    same_mask_and_values(fs.log_softmax(x, backend="cuda"), ref.log_softmax(x))


@pytest.mark.parametrize("k", [0, 1, 7, 64, 300])
def test_topk_matches_reference(dev, k):
    x = rows()
    values, indices = fs.topk(dev(x), k)
    rv, ri = ref.topk(x, k)
    np.testing.assert_array_equal(host(indices), ri)
    np.testing.assert_array_equal(host(values), rv)
    assert host(indices).dtype == np.int32 and host(values).shape == (3, k)


def test_topk_ties_masked_and_signed_zero(dev):
    x = np.array([[0.0, -0.0, 1.0, -np.inf, 1.0, 0.0, -np.inf],
                  [-np.inf, -np.inf, 2.0, -np.inf, -np.inf, -np.inf, -np.inf]], np.float32)
    for k in (1, 2, 3, 4, 6, 7):   # k beyond the finite count takes -inf ids in order
        v, i = fs.topk(dev(x), k)
        rv, ri = ref.topk(x, k)
        np.testing.assert_array_equal(host(i), ri)
        np.testing.assert_array_equal(host(v), rv)
        np.testing.assert_array_equal(np.signbit(host(v)), np.signbit(rv))
    v, i = fs.topk(dev(x[0]), 3)
    assert host(i).shape == (3,) and list(host(i)) == [2, 4, 0]


def test_array_ops_reject_invalid_rows_and_bad_k(dev):
    x = rows()
    x[1, 5] = np.nan
    for fn in (lambda a: fs.softmax(a), fs.log_softmax, lambda a: fs.topk(a, 3)):
        with pytest.raises(ValueError, match=r"rows \[1\]"):
            fn(dev(x))
    ok = dev(rows())
    with pytest.raises(ValueError, match="k must be in"):
        fs.topk(ok, 301)
    with pytest.raises(ValueError, match="k must be an integer"):
        fs.topk(ok, 2.0)
    with pytest.raises(ValueError, match="temperature"):
        fs.softmax(ok, 0.0)
    with pytest.raises(fs.BackendError, match="cuda"):
        fs.softmax(ok, backend="numpy")


def test_array_ops_on_empty_batch(dev):
    x = dev(np.zeros((0, 4), np.float32))
    assert host(fs.softmax(x)).shape == (0, 4)
    assert host(fs.log_softmax(x)).shape == (0, 4)
    v, i = fs.topk(x, 2)
    assert host(v).shape == (0, 2) and host(i).shape == (0, 2)
