"""The numba CPU building blocks and core kernels against the numpy reference.

``kernels/cpu/simd.py`` (row_max, exp64, exp_f32acc), ``draw.py`` (draw, argmax,
token_logprob), ``softmax.py`` (softmax, log_softmax), ``topk.py`` (topk): identical
tokens and indices, values within 1e-6 relative, inputs never modified. Deterministic
(seeded generators; hypothesis with derandomize).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastsample import reference as ref
from fastsample import workloads as wl
from fastsample.kernels.cpu import draw as kdraw
from fastsample.kernels.cpu import simd
from fastsample.kernels.cpu import softmax as ksoftmax
from fastsample.kernels.cpu import topk as ktopk

HYP = settings(max_examples=150, deadline=None, derandomize=True)
NEG_INF = np.float32(-np.inf)


# ----------------------------------------------------------------------- inputs


def _rows(kind, B, V, seed):
    """Logit rows of several shapes: llm_like, flat, rounded (many ties), masked."""
    rng = np.random.default_rng([seed, 991])
    if kind == "llm_like":
        x = wl.llm_like(B, V, seed)
    elif kind == "flat":
        x = wl.flat(B, V, seed)
    elif kind == "ties":  # rounding makes many exact ties, including +-0.0
        x = np.round(wl.llm_like(B, V, seed) * 2.0) / 2.0
        x[:, ::7] = -0.0
        x = x.astype(np.float32)
    elif kind == "masked":  # part of every row masked, one row fully masked, one left alone
        x = wl.llm_like(B, V, seed)
        x[rng.random((B, V)) < 0.6] = -np.inf
        if B > 1:
            x[1] = -np.inf
        if B > 2:
            x[2] = wl.flat(1, V, seed)[0]
    elif kind == "temperature":  # W5-like: logits already divided by a temperature
        x = (wl.llm_like(B, V, seed).astype(np.float64) / 0.8).astype(np.float32)
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(x, dtype=np.float32)


KINDS = ["llm_like", "flat", "ties", "masked", "temperature"]
SHAPES = [(64, 1), (64, 2), (64, 255), (64, 256), (64, 257), (32, 3000), (8, 20000)]


def _seeds(B, base):
    return (np.arange(B, dtype=np.uint64) * np.uint64(7919) + np.uint64(base)), \
        np.full(B, base * 3 + 1, dtype=np.uint64)


def _unchanged(before, after):
    assert np.array_equal(before, after, equal_nan=True)


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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES)
def test_draw_matches_reference(kind, B, V):
    for rep in range(3):
        x = _rows(kind, B, V, seed=rep * 101 + V)
        seed, pos = _seeds(B, rep + V)
        before = x.copy()
        got = kdraw.draw(x, seed, pos)
        _unchanged(before, x)
        want = ref.draw(x, seed, pos)
        assert got.dtype == np.int32 and got.shape == (B,)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["llm_like", "temperature", "flat", "masked"])
def test_draw_full_vocab(kind):
    x = _rows(kind, 6, wl.DEFAULT_VOCAB, seed=5)
    for position in range(4):
        seed, pos = _seeds(6, position)
        np.testing.assert_array_equal(kdraw.draw(x, seed, pos), ref.draw(x, seed, pos))
        # one row at a time (serial kernel) gives the same tokens as the batch
        for b in range(6):
            assert kdraw.draw(x[b:b + 1], seed[b:b + 1], pos[b:b + 1])[0] == \
                ref.draw(x[b:b + 1], seed[b:b + 1], pos[b:b + 1])[0]


def test_draw_many_rows_zero_mismatches():
    """Thousands of random rows: not a single token differs from the reference."""
    total = 0
    for rep in range(24):
        kind = ["llm_like", "flat", "temperature", "masked"][rep % 4]
        x = _rows(kind, 128, 1500 + 37 * rep, seed=1000 + rep)
        seed, pos = _seeds(128, 77 + rep)
        np.testing.assert_array_equal(kdraw.draw(x, seed, pos), ref.draw(x, seed, pos))
        total += 128
    assert total >= 3000


def test_draw_edge_cases():
    seed, pos = _seeds(3, 9)
    x = np.full((3, 5), -np.inf, np.float32)
    x[1, 3] = 2.0
    np.testing.assert_array_equal(kdraw.draw(x, seed, pos), [-1, 3, -1])
    empty = np.zeros((0, 10), np.float32)
    assert kdraw.draw(empty, seed[:0], pos[:0]).shape == (0,)
    one = np.zeros((4, 1), np.float32)
    s4, p4 = _seeds(4, 1)
    np.testing.assert_array_equal(kdraw.draw(one, s4, p4), [0, 0, 0, 0])
    # a one-hot row and a row whose tail is masked
    x = np.full((2, 600), -np.inf, np.float32)
    x[0, 517] = -3.0
    x[1, :300] = 0.0
    s2, p2 = _seeds(2, 4)
    np.testing.assert_array_equal(kdraw.draw(x, s2, p2), ref.draw(x, s2, p2))
    assert kdraw.draw(x, s2, p2)[0] == 517


def test_draw_row_last_finite_when_rounding_leaves_none():
    # u so close to 1 that u * W may not be exceeded: the last finite token
    row = np.array([0.0, 0.0, -np.inf, 0.0, -np.inf], np.float32)
    assert kdraw.draw_row(row, 1.0) == 3
    assert kdraw.draw_row(row, 0.5) == 1


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 700)),
                  elements=st.one_of(st.floats(-20, 5, width=32),
                                     st.just(float("-inf")), st.sampled_from([0.0, -1.0]))),
       st.integers(0, 2**40))
def test_draw_hypothesis(x, s):
    B = x.shape[0]
    seed = np.full(B, s, dtype=np.uint64)
    pos = np.arange(B, dtype=np.uint64)
    np.testing.assert_array_equal(kdraw.draw(x, seed, pos), ref.draw(x, seed, pos))


# ----------------------------------------------------------------------- argmax, logprob


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES + [(3, wl.DEFAULT_VOCAB)])
def test_argmax_matches_reference(kind, B, V):
    x = _rows(kind, B, V, seed=V + 3)
    before = x.copy()
    got = kdraw.argmax(x)
    _unchanged(before, x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.argmax(x))


def test_argmax_edge_cases():
    x = np.array([[-np.inf, -np.inf], [1.0, 1.0], [-0.0, 0.0], [-np.inf, 5.0]], np.float32)
    np.testing.assert_array_equal(kdraw.argmax(x), [-1, 0, 0, 1])
    assert kdraw.argmax(np.zeros((0, 4), np.float32)).shape == (0,)
    big = np.zeros((2, 1000), np.float32)
    big[0, 999] = 1.0
    big[1, [64, 128, 700]] = 3.0
    np.testing.assert_array_equal(kdraw.argmax(big), [999, 64])


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)),
                  elements=st.one_of(st.sampled_from([-2.0, -1.0, 0.0, -0.0, 1.0, 3.0]),
                                     st.just(float("-inf")))))
def test_argmax_hypothesis(x):
    np.testing.assert_array_equal(kdraw.argmax(x), ref.argmax(x))


@pytest.mark.parametrize("kind", KINDS)
def test_token_logprob_matches_reference(kind):
    B, V = 16, 5000
    x = _rows(kind, B, V, seed=17)
    seed, pos = _seeds(B, 3)
    tokens = ref.draw(x, seed, pos)
    tokens[0] = -1
    tokens[3] = 17
    before = x.copy()
    got = kdraw.token_logprob(x, tokens)
    _unchanged(before, x)
    want = ref.token_logprob(x, tokens)
    assert got.dtype == np.float64
    assert np.isnan(got[0]) and np.isnan(want[0])
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-13)


def test_token_logprob_masked_and_full_vocab():
    x = _rows("masked", 4, wl.DEFAULT_VOCAB, seed=2)
    masked = int(np.flatnonzero(~np.isfinite(x[0]))[0])
    tokens = np.array([masked, 5, ref.argmax(x)[2], 0], np.int64)
    got = kdraw.token_logprob(x, tokens)
    want = ref.token_logprob(x, tokens)
    assert got[0] == -np.inf and got[1] == -np.inf  # row 1 is fully masked
    np.testing.assert_allclose(got[2:], want[2:], rtol=1e-12)


# ----------------------------------------------------------------------- softmax


def _assert_probs_close(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=3e-45)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES + [(3, wl.DEFAULT_VOCAB)])
def test_softmax_matches_reference(kind, B, V):
    x = _rows(kind, B, V, seed=V + 11)
    temps = np.linspace(0.25, 2.0, B)
    before = x.copy()
    for t in (1.0, 0.7, temps):
        _assert_probs_close(ksoftmax.softmax(x, t), ref.softmax(x, t))
    _unchanged(before, x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES + [(3, wl.DEFAULT_VOCAB)])
def test_log_softmax_matches_reference(kind, B, V):
    x = _rows(kind, B, V, seed=V + 13)
    before = x.copy()
    got = ksoftmax.log_softmax(x)
    _unchanged(before, x)
    want = ref.log_softmax(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-12)


def test_softmax_edge_cases():
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0], [1e30, -1e30, 0.0]],
                 np.float32)
    np.testing.assert_array_equal(ksoftmax.softmax(x), ref.softmax(x))
    ls = ksoftmax.log_softmax(x)
    assert np.all(np.isneginf(ls[0]))
    np.testing.assert_allclose(ls[1:], ref.log_softmax(x)[1:], rtol=1e-6)
    v = wl.llm_like(1, 300, 3)[0]  # 1-D input keeps its shape
    assert ksoftmax.softmax(v, 0.5).shape == (300,)
    _assert_probs_close(ksoftmax.softmax(v, 0.5), ref.softmax(v, 0.5))
    np.testing.assert_allclose(ksoftmax.log_softmax(v), ref.log_softmax(v), rtol=1e-6)
    assert ksoftmax.softmax(np.zeros((0, 5), np.float32)).shape == (0, 5)
    np.testing.assert_array_equal(ksoftmax.softmax(np.zeros((2, 1), np.float32)), [[1.0], [1.0]])
    p = ksoftmax.softmax(wl.llm_like(8, 4000, 1))
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=1), 1.0, rtol=1e-5)


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 400)),
                  elements=st.one_of(st.floats(-60, 60, width=32), st.just(float("-inf")))),
       st.floats(0.05, 5.0))
def test_softmax_hypothesis(x, t):
    _assert_probs_close(ksoftmax.softmax(x, t), ref.softmax(x, t))
    got, want = ksoftmax.log_softmax(x), ref.log_softmax(x)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------- topk


def _assert_topk_equal(x, k):
    before = x.copy()
    vals, ids = ktopk.topk(x, k)
    _unchanged(before, x)
    rv, ri = ref.topk(x, k)
    assert vals.dtype == np.float32 and ids.dtype == np.int32
    assert vals.shape == rv.shape and ids.shape == ri.shape
    np.testing.assert_array_equal(ids, ri)
    np.testing.assert_array_equal(vals, rv)
    np.testing.assert_array_equal(np.signbit(vals), np.signbit(rv))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES)
def test_topk_matches_reference(kind, B, V):
    x = _rows(kind, B, V, seed=V + 29)
    for k in sorted({0, 1, min(2, V), min(5, V), min(50, V), V // 2, max(V - 1, 0), V}):
        _assert_topk_equal(x, k)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 40, 50, 1000, 5000, 16032])
def test_topk_full_vocab(kind, k):
    """The sampled-threshold path (k <= V/8) and the scan path, at V = 128256."""
    _assert_topk_equal(_rows(kind, 3, wl.DEFAULT_VOCAB, seed=k), k)


def test_topk_fallbacks():
    V = 40000
    up = np.arange(V, dtype=np.float32)[None, :] / V  # ascending: every entry inserted
    _assert_topk_equal(up, 100)
    _assert_topk_equal(up[:, ::-1].copy(), 100)
    # mostly masked: the sample threshold is -inf, the candidates overflow -> scan
    x = np.full((2, V), -np.inf, np.float32)
    x[0, ::997] = np.linspace(0, 1, len(x[0, ::997]))
    _assert_topk_equal(x, 10)
    _assert_topk_equal(x, 100)  # more than the finite entries: ties at -inf by id
    # all equal: ties to the lower id
    _assert_topk_equal(np.zeros((2, V), np.float32), 1000)
    # a constant row with a few -0.0: they tie with 0.0
    z = np.zeros((1, V), np.float32)
    z[0, ::3] = -0.0
    _assert_topk_equal(z, 77)


def test_topk_shapes():
    v = wl.llm_like(1, 1000, 0)[0]
    vals, ids = ktopk.topk(v, 10)
    assert vals.shape == (10,) and ids.shape == (10,)
    np.testing.assert_array_equal(ids, ref.topk(v, 10)[1])
    vals, ids = ktopk.topk(np.zeros((0, 7), np.float32), 3)
    assert vals.shape == (0, 3) and ids.shape == (0, 3)
    vals, ids = ktopk.topk(np.array([[2.5]], np.float32), 1)
    assert vals.tolist() == [[2.5]] and ids.tolist() == [[0]]


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)),
                  elements=st.one_of(st.sampled_from([-2.0, -1.0, 0.0, -0.0, 1.0, 3.0]),
                                     st.floats(-5, 5, width=32), st.just(float("-inf")))),
       st.integers(0, 300))
def test_topk_hypothesis(x, k):
    _assert_topk_equal(x, min(k, x.shape[1]))


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
