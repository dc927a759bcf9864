"""The core kernels of every compiled CPU backend (numba, c) against the reference:
draw, argmax, token_logprob, greedy, invalid_rows, softmax, log_softmax, topk.

Each test runs once per backend and, for C, once per instruction-set level this CPU
runs (portable C, AVX2, AVX-512: every call pinned with ``isa=``), on the backend's
ops module as the registry loads it. Tokens and top-k indices and values are
identical to the reference (signed zeros included); log-probabilities within 1e-12
relative; probabilities within 1e-6 relative with exactly the same zeros;
log-softmax within 1e-6 relative with identical ``-inf`` masks; inputs never
modified. Deterministic (seeded generators; hypothesis with derandomize).
Backend-specific checks live in ``test_numba_core.py`` (exp/max building blocks) and
``test_c_core.py`` (invalid-row flag, threads, sizes, fuzz, top-k with the row check).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_fast_canonical import _perturb  # ties, masks and magnitudes, row by row

import fastsample as fs
from fastsample import reference as ref
from fastsample import registry
from fastsample import workloads as wl
from fastsample.workloads import flat, llm_like

# the fixtures only name the backend and level: safe to share across examples
HYP = settings(max_examples=150, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
FULL_V = wl.DEFAULT_VOCAB


def _c_levels():
    try:
        from fastsample.c_backend import core
    except ImportError:
        return [None]  # the fast_backend fixture skips (or fails under FASTSAMPLE_REQUIRE_C)
    return [(isa, core.ISA_NAMES[isa]) for isa in core.ISAS]


def _per_level():
    """numba once, C once per instruction-set level (a parametrize mark, so that it
    takes the place of the ``fast_backend`` fixture's own parameters)."""
    pairs = [("numba", None)] + [("c", level) for level in _c_levels()]
    ids = [name if level is None else f"{name}-{level[1]}" for name, level in pairs]
    return pytest.mark.parametrize(("fast_backend", "level"), pairs, ids=ids,
                                   indirect=["fast_backend"])


pytestmark = _per_level()


class _AtLevel:
    """A backend's ops module with every call pinned to one instruction-set level."""

    def __init__(self, module, isa):
        self._module, self._isa = module, isa

    def __getattr__(self, name):
        return functools.partial(getattr(self._module, name), isa=self._isa)


@pytest.fixture
def ops(fast_backend, level):
    module = registry.load(fast_backend)
    return module if level is None else _AtLevel(module, level[0])


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


def _call(fn, x, *args):
    """``fn(x, *args)``, checking that it leaves ``x`` as it was."""
    before = x.copy()
    out = fn(x, *args)
    assert np.array_equal(before, x, equal_nan=True), "the input was written"
    return out


# ----------------------------------------------------------------------- draw


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES)
def test_draw_matches_reference(ops, kind, B, V):
    for rep in range(3):
        x = _rows(kind, B, V, seed=rep * 101 + V)
        seed, pos = _seeds(B, rep + V)
        got = _call(ops.draw, x, seed, pos)
        want = ref.draw(x, seed, pos)
        assert got.dtype == np.int32 and got.shape == (B,)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["llm_like", "temperature", "flat", "masked"])
def test_draw_full_vocab(ops, kind):
    x = _rows(kind, 6, wl.DEFAULT_VOCAB, seed=5)
    for position in range(4):
        seed, pos = _seeds(6, position)
        np.testing.assert_array_equal(ops.draw(x, seed, pos), ref.draw(x, seed, pos))
        # one row at a time (serial kernel) gives the same tokens as the batch
        for b in range(6):
            assert ops.draw(x[b:b + 1], seed[b:b + 1], pos[b:b + 1])[0] == \
                ref.draw(x[b:b + 1], seed[b:b + 1], pos[b:b + 1])[0]


def test_draw_many_rows_zero_mismatches(ops):
    """Thousands of random rows: not a single token differs from the reference."""
    total = 0
    for rep in range(24):
        kind = ["llm_like", "flat", "temperature", "masked"][rep % 4]
        x = _rows(kind, 128, 1500 + 37 * rep, seed=1000 + rep)
        seed, pos = _seeds(128, 77 + rep)
        np.testing.assert_array_equal(ops.draw(x, seed, pos), ref.draw(x, seed, pos))
        total += 128
    assert total >= 3000


def test_draw_edge_cases(ops):
    seed, pos = _seeds(3, 9)
    x = np.full((3, 5), -np.inf, np.float32)
    x[1, 3] = 2.0
    np.testing.assert_array_equal(ops.draw(x, seed, pos), [-1, 3, -1])
    empty = np.zeros((0, 10), np.float32)
    assert ops.draw(empty, seed[:0], pos[:0]).shape == (0,)
    one = np.zeros((4, 1), np.float32)
    s4, p4 = _seeds(4, 1)
    np.testing.assert_array_equal(ops.draw(one, s4, p4), [0, 0, 0, 0])
    # a one-hot row and a row whose tail is masked
    x = np.full((2, 600), -np.inf, np.float32)
    x[0, 517] = -3.0
    x[1, :300] = 0.0
    s2, p2 = _seeds(2, 4)
    np.testing.assert_array_equal(ops.draw(x, s2, p2), ref.draw(x, s2, p2))
    assert ops.draw(x, s2, p2)[0] == 517


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 700)),
                  elements=st.one_of(st.floats(-20, 5, width=32),
                                     st.just(float("-inf")), st.sampled_from([0.0, -1.0]))),
       st.integers(0, 2**40))
def test_draw_hypothesis(ops, x, s):
    B = x.shape[0]
    seed = np.full(B, s, dtype=np.uint64)
    pos = np.arange(B, dtype=np.uint64)
    np.testing.assert_array_equal(ops.draw(x, seed, pos), ref.draw(x, seed, pos))


# ----------------------------------------------------------------------- argmax, logprob


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES + [(3, wl.DEFAULT_VOCAB)])
def test_argmax_matches_reference(ops, kind, B, V):
    x = _rows(kind, B, V, seed=V + 3)
    got = _call(ops.argmax, x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref.argmax(x))


def test_argmax_edge_cases(ops):
    x = np.array([[-np.inf, -np.inf], [1.0, 1.0], [-0.0, 0.0], [-np.inf, 5.0]], np.float32)
    np.testing.assert_array_equal(ops.argmax(x), [-1, 0, 0, 1])
    assert ops.argmax(np.zeros((0, 4), np.float32)).shape == (0,)
    big = np.zeros((2, 1000), np.float32)
    big[0, 999] = 1.0
    big[1, [64, 128, 700]] = 3.0
    np.testing.assert_array_equal(ops.argmax(big), [999, 64])


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)),
                  elements=st.one_of(st.sampled_from([-2.0, -1.0, 0.0, -0.0, 1.0, 3.0]),
                                     st.just(float("-inf")))))
def test_argmax_hypothesis(ops, x):
    np.testing.assert_array_equal(ops.argmax(x), ref.argmax(x))


@pytest.mark.parametrize("kind", KINDS)
def test_token_logprob_matches_reference(ops, kind):
    B, V = 16, 5000
    x = _rows(kind, B, V, seed=17)
    seed, pos = _seeds(B, 3)
    tokens = ref.draw(x, seed, pos)
    tokens[0] = -1
    tokens[3] = 17
    got = _call(ops.token_logprob, x, tokens)
    want = ref.token_logprob(x, tokens)
    assert got.dtype == np.float64
    assert np.isnan(got[0]) and np.isnan(want[0])
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-13)


def test_token_logprob_masked_and_full_vocab(ops):
    x = _rows("masked", 4, wl.DEFAULT_VOCAB, seed=2)
    masked = int(np.flatnonzero(~np.isfinite(x[0]))[0])
    tokens = np.array([masked, 5, ref.argmax(x)[2], 0], np.int64)
    got = ops.token_logprob(x, tokens)
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
def test_softmax_matches_reference(ops, kind, B, V):
    x = _rows(kind, B, V, seed=V + 11)
    temps = np.linspace(0.25, 2.0, B)
    for t in (1.0, 0.7, temps):
        _assert_probs_close(_call(ops.softmax, x, t), ref.softmax(x, t))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES + [(3, wl.DEFAULT_VOCAB)])
def test_log_softmax_matches_reference(ops, kind, B, V):
    x = _rows(kind, B, V, seed=V + 13)
    got = _call(ops.log_softmax, x)
    want = ref.log_softmax(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-12)


def test_softmax_edge_cases(ops):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0], [1e30, -1e30, 0.0]],
                 np.float32)
    np.testing.assert_array_equal(ops.softmax(x), ref.softmax(x))
    ls = ops.log_softmax(x)
    assert np.all(np.isneginf(ls[0]))
    np.testing.assert_allclose(ls[1:], ref.log_softmax(x)[1:], rtol=1e-6)
    v = wl.llm_like(1, 300, 3)[0]  # 1-D input keeps its shape
    assert ops.softmax(v, 0.5).shape == (300,)
    _assert_probs_close(ops.softmax(v, 0.5), ref.softmax(v, 0.5))
    np.testing.assert_allclose(ops.log_softmax(v), ref.log_softmax(v), rtol=1e-6)
    assert ops.softmax(np.zeros((0, 5), np.float32)).shape == (0, 5)
    np.testing.assert_array_equal(ops.softmax(np.zeros((2, 1), np.float32)), [[1.0], [1.0]])
    p = ops.softmax(wl.llm_like(8, 4000, 1))
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=1), 1.0, rtol=1e-5)


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 400)),
                  elements=st.one_of(st.floats(-60, 60, width=32), st.just(float("-inf")))),
       st.floats(0.05, 5.0))
def test_softmax_hypothesis(ops, x, t):
    _assert_probs_close(ops.softmax(x, t), ref.softmax(x, t))
    got, want = ops.log_softmax(x), ref.log_softmax(x)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-12)


# ----------------------------------------------------------------------- topk


def _assert_topk_equal(ops, x, k):
    vals, ids = _call(ops.topk, x, k)
    rv, ri = ref.topk(x, k)
    assert vals.dtype == np.float32 and ids.dtype == np.int32
    assert vals.shape == rv.shape and ids.shape == ri.shape
    np.testing.assert_array_equal(ids, ri)
    np.testing.assert_array_equal(vals, rv)
    np.testing.assert_array_equal(np.signbit(vals), np.signbit(rv))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B,V", SHAPES)
def test_topk_matches_reference(ops, kind, B, V):
    x = _rows(kind, B, V, seed=V + 29)
    for k in sorted({0, 1, min(2, V), min(5, V), min(50, V), V // 2, max(V - 1, 0), V}):
        _assert_topk_equal(ops, x, k)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 40, 50, 1000, 5000, 16032])
def test_topk_full_vocab(ops, kind, k):
    """The sampled-threshold path (k <= V/8) and the scan path, at V = 128256."""
    _assert_topk_equal(ops, _rows(kind, 3, wl.DEFAULT_VOCAB, seed=k), k)


def test_topk_fallbacks(ops):
    V = 40000
    up = np.arange(V, dtype=np.float32)[None, :] / V  # ascending: every entry inserted
    _assert_topk_equal(ops, up, 100)
    _assert_topk_equal(ops, up[:, ::-1].copy(), 100)
    # mostly masked: the sample threshold is -inf, the candidates overflow -> scan
    x = np.full((2, V), -np.inf, np.float32)
    x[0, ::997] = np.linspace(0, 1, len(x[0, ::997]))
    _assert_topk_equal(ops, x, 10)
    _assert_topk_equal(ops, x, 100)  # more than the finite entries: ties at -inf by id
    # all equal: ties to the lower id
    _assert_topk_equal(ops, np.zeros((2, V), np.float32), 1000)
    # a constant row with a few -0.0: they tie with 0.0
    z = np.zeros((1, V), np.float32)
    z[0, ::3] = -0.0
    _assert_topk_equal(ops, z, 77)


def test_topk_shapes(ops):
    v = wl.llm_like(1, 1000, 0)[0]
    vals, ids = ops.topk(v, 10)
    assert vals.shape == (10,) and ids.shape == (10,)
    np.testing.assert_array_equal(ids, ref.topk(v, 10)[1])
    vals, ids = ops.topk(np.zeros((0, 7), np.float32), 3)
    assert vals.shape == (0, 3) and ids.shape == (0, 3)
    vals, ids = ops.topk(np.array([[2.5]], np.float32), 1)
    assert vals.tolist() == [[2.5]] and ids.tolist() == [[0]]


@HYP
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 300)),
                  elements=st.one_of(st.sampled_from([-2.0, -1.0, 0.0, -0.0, 1.0, 3.0]),
                                     st.floats(-5, 5, width=32), st.just(float("-inf")))),
       st.integers(0, 300))
def test_topk_hypothesis(ops, x, k):
    _assert_topk_equal(ops, x, min(k, x.shape[1]))




# ----------------------------------------------------------------------- perturbed rows


def _draw_rows():
    rng = np.random.default_rng(21)
    parts = [_perturb(llm_like(60, 3000, 1), rng), _perturb(flat(20, 3000, 2), rng)]
    x = np.concatenate(parts)
    x[5] = -np.inf  # no finite logit: -1
    x[6, :] = -np.inf
    x[6, 2999] = 0.0
    return x


def test_draw_perturbed_rows(ops):
    x = _draw_rows()
    B = x.shape[0]
    rng = np.random.default_rng(4)
    for _ in range(3):
        seed = rng.integers(0, 2**63, B, dtype=np.uint64)
        pos = rng.integers(0, 2**40, B, dtype=np.uint64)
        np.testing.assert_array_equal(ops.draw(x, seed, pos), ref.draw(x, seed, pos))
    full = llm_like(4, FULL_V, 3)
    seed = np.arange(4, dtype=np.uint64)
    np.testing.assert_array_equal(ops.draw(full, seed, seed), ref.draw(full, seed, seed))


def test_argmax_greedy_token_logprob_invalid_rows(ops):
    x = _draw_rows()
    x[7, [3, 10]] = 50.0  # ties: the first wins
    np.testing.assert_array_equal(ops.argmax(x), ref.argmax(x))
    tokens = ref.argmax(x)
    tokens[::4] = np.arange(0, x.shape[0], 4) % x.shape[1]  # some masked, some not
    tokens[1] = -1
    got = ops.token_logprob(x, tokens)
    want = ref.token_logprob(x, tokens)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=1e-12)
    g = ops.greedy(x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, ref.greedy(x))
    bad = llm_like(5, 300, 0)
    bad[1, 3] = np.nan
    bad[2, 4] = np.inf
    bad[3] = -np.inf
    np.testing.assert_array_equal(ops.invalid_rows(bad), [False, True, True, True, False])
    assert ops.invalid_rows(np.zeros((0, 5), np.float32)).shape == (0,)
    assert ops.argmax(np.zeros((0, 5), np.float32)).shape == (0,)


def _close(got, want):
    """Within 1e-5 relative to max(1, |want|), identical masks."""
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    err = np.abs(got[fin].astype(np.float64) - want[fin]) / np.maximum(1.0, np.abs(want[fin]))
    assert err.size == 0 or err.max() <= 1e-5, err.max()


def test_softmax_log_softmax_perturbed_rows(ops):
    rng = np.random.default_rng(5)
    x = _perturb(np.concatenate([llm_like(30, 5000, 3), flat(10, 5000, 4)]), rng)
    t = rng.choice([1.0, 0.5, 2.0, 1e-3, 100.0], x.shape[0])
    s = ops.softmax(x, t)
    want = ref.softmax(x, t)
    np.testing.assert_array_equal(s == 0, want == 0)
    assert np.abs(s.astype(np.float64) - want).max() <= 1e-5
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-5)
    _close(ops.log_softmax(x), ref.log_softmax(x))
    one = ops.softmax(x[0], 0.7)
    assert one.shape == (5000,)
    np.testing.assert_allclose(one, ref.softmax(x[0], 0.7), rtol=1e-5, atol=1e-12)
    big = llm_like(3, FULL_V, 9)
    _close(ops.log_softmax(big), ref.log_softmax(big))
    assert np.abs(ops.softmax(big, 0.8) - ref.softmax(big, 0.8)).max() <= 1e-6


def test_softmax_topk_through_api(fast_backend, level):
    """The public API on the backend (at its best level, whatever ``level`` says)."""
    x = llm_like(64, 4096, 1)
    got = fs.softmax(x, 0.9, backend=fast_backend)
    assert np.abs(got - fs.softmax(x, 0.9, backend="numpy")).max() <= 1e-6
    _close(fs.log_softmax(x, backend=fast_backend), fs.log_softmax(x, backend="numpy"))
    row = llm_like(1, 9000, 0)[0]
    gv, gi = fs.topk(row, 50, backend=fast_backend)
    wv, wi = fs.topk(row, 50, backend="numpy")
    np.testing.assert_array_equal(gi, wi)
    np.testing.assert_array_equal(gv, wv)


@pytest.mark.parametrize("V", [1, 5, 256, 1000, 4099, FULL_V])
def test_topk_perturbed_rows(ops, V):
    rng = np.random.default_rng(V)
    B = 3 if V == FULL_V else 12
    x = _perturb(llm_like(B, V, 2), rng)
    x[0] = np.round(x[0])  # many ties: lower ids first
    for k in sorted({0, 1, 2, 50, 1000, V // 2, V - 1, V} & set(range(V + 1))):
        _assert_topk_equal(ops, x, k)


def test_topk_signed_zero_and_masks_1d(ops):
    x = np.array([0.0, -0.0, 1.0, -np.inf, -0.0, 0.0, -np.inf, 2.0], np.float32)
    for k in range(9):
        _assert_topk_equal(ops, x, k)


@HYP
@given(V=st.integers(1, 600), k=st.integers(0, 600), seed=st.integers(0, 2**32 - 1),
       grid=st.sampled_from([0.0, 1.0, 4.0]), mask=st.floats(0.0, 0.95))
def test_topk_and_draw_property(ops, V, k, seed, grid, mask):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, V)).astype(np.float32) * 3
    if grid:
        x = np.round(x * grid) / np.float32(grid)
    x[rng.random((2, V)) < mask] = -np.inf
    x[:, rng.integers(0, V)] = 1.0
    _assert_topk_equal(ops, x, min(k, V))
    s = np.array([seed, seed + 1], np.uint64)
    np.testing.assert_array_equal(ops.draw(x, s, s), ref.draw(x, s, s))
