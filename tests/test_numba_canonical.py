"""Internals of the numba canonical kernel (kernels/cpu/canonical.py) that the
backend-neutral tests cannot see: the one-pass exp with the mass above a level
(``simd.exp_store_sum_ge``), which path a whole-row top-p takes, and the mass
histogram's overflow buckets. The sets and tokens themselves are checked against
the reference in tests/test_fast_canonical.py and tests/test_fast_truncate.py.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from fastsample.kernels.cpu import canonical as kc
from fastsample.kernels.cpu import simd
from fastsample.workloads import DEFAULT_VOCAB as FULL_V
from fastsample.workloads import flat, llm_like


# Not cached: compiled against the current simd.py.
@numba.njit(fastmath=simd.FASTMATH)
def _store_ge(x, s, n, mw, L):
    w = np.full(x.shape[0], -1.0)
    tot, above = simd.exp_store_sum_ge(x, s, n, mw, w, L)
    return w, tot, above


@numba.njit(fastmath=simd.FASTMATH)
def _scalar_weights(x, mw):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = simd.exp64_neg(np.float64(x[i]) - mw)
    return out


def test_exp_store_sum_ge_weights_sum_and_mass_above():
    """Weights bit for bit exp64_neg; the total and the mass of the entries >= L
    (ties at L included, -inf never) as exact sums up to float64 reassociation."""
    rng = np.random.default_rng(2)
    x = np.round(rng.uniform(-40, 0, 40_000) * 4).astype(np.float32) / np.float32(4)
    x[rng.random(x.shape[0]) < 0.1] = -np.inf
    assert (x == -3.0).sum() > 100  # ties at the level below
    for mw, L in ((0.0, -3.0), (2.5, -30.0), (0.0, -np.inf), (0.0, 1.0), (700.0, -20.25)):
        want = _scalar_weights(x, mw)
        w, tot, above = _store_ge(x, 0, x.shape[0], mw, L)
        assert np.array_equal(w.view(np.uint64), want.view(np.uint64))
        np.testing.assert_allclose(tot, math.fsum(want), rtol=1e-13, atol=0)
        np.testing.assert_allclose(above, math.fsum(want[x >= L]), rtol=1e-13, atol=1e-300)
        w, tot, above = _store_ge(x, 24, 64, mw, L)  # a sub-range: only [s, s + n)
        assert np.array_equal(w[24:88].view(np.uint64), want[24:88].view(np.uint64))
        assert (w[:24] == -1.0).all() and (w[88:] == -1.0).all()
        np.testing.assert_allclose(above, math.fsum(want[24:88][x[24:88] >= L]), rtol=1e-13,
                                   atol=1e-300)


def _ref_cut(row, p):
    """The reference TopP cut value (sorted descending, first running mass >= p - 1e-6)."""
    v = np.sort(row[np.isfinite(row)].astype(np.float64))[::-1]
    w = np.exp(v - v[0])
    cum = np.cumsum(w / w.sum())
    return v[int(np.argmax(cum >= p - 1e-6))]


def _top_p_row(row, p):
    """kc._top_p_row on a whole row; the weights it stores are exp64_neg's."""
    bmax = np.empty((row.shape[0] + 255) // 256, np.float32)
    m = kc._pass_max(row, bmax)
    w = np.empty(row.shape[0])
    cut, L, vals, ids = kc._top_p_row(row, bmax, m, p, w)
    assert np.array_equal(w.view(np.uint64), _scalar_weights(row, m).view(np.uint64))
    return cut, L, vals, ids


@pytest.mark.parametrize("p", [0.9, 0.95, 0.97])
def test_llm_like_top_p_takes_the_one_pass_path(p):
    """On LLM-like rows (the W3 rows, seeds 0..15) the cut is found among the tokens
    above a level of the exp pass: candidates gathered (L finite), no histogram pass;
    the cut equals the reference's and the candidates are every token >= L."""
    for s in range(16):
        row = llm_like(1, FULL_V, s)[0]
        cut, L, vals, ids = _top_p_row(row, p)
        assert L < np.inf, f"seed {s}: the histogram path"
        assert cut == _ref_cut(row, p) and L <= cut
        np.testing.assert_array_equal(ids, np.flatnonzero(row >= L))
        np.testing.assert_array_equal(vals, row[ids])


@pytest.mark.parametrize(("gen", "V", "p"), [("flat", FULL_V, 0.5), ("flat", FULL_V, 0.95),
                                           ("flat", FULL_V, 0.999), ("llm_like", 50_000, 0.999)])
def test_flat_and_deep_top_p_take_the_histogram(gen, V, p):
    """Flat rows (the set is most of the row) and LLM-like rows at p near 1 (most
    tokens below the histogram's range, in its overflow buckets) take the mass
    histogram; its cut equals the reference's."""
    row = (flat if gen == "flat" else llm_like)(1, V, 2)[0]
    cut, L, vals, ids = _top_p_row(row, p)
    assert L == np.inf and vals.shape[0] == 0
    assert cut == _ref_cut(row, p)


def test_mass_hist_overflow_buckets():
    """Tokens below the range land in overflow buckets: the buckets in range hold
    exactly the mass of their tokens (and -inf adds nothing anywhere)."""
    rng = np.random.default_rng(8)
    row = llm_like(1, 20_000, 3)[0]
    row[rng.random(row.shape[0]) < 0.2] = -np.inf
    bmax = np.empty((row.shape[0] + 255) // 256, np.float32)
    m = kc._pass_max(row, bmax)
    w = np.exp(row.astype(np.float64) - m)
    lower = m - 6.0
    scale = kc._NBINS_MASS / (m - lower)
    hist = kc._mass_hist(row, w, m, scale)
    b = np.floor((m - row.astype(np.float64)) * scale)
    inside = np.isfinite(row) & (b < kc._NBINS_MASS)
    assert (~inside & np.isfinite(row)).sum() > 1000  # most of the row is below range
    want = np.bincount(b[inside].astype(np.int64), weights=w[inside],
                       minlength=kc._NBINS_MASS)
    np.testing.assert_allclose(hist, want, rtol=1e-12, atol=1e-300)
