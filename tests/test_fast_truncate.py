"""The candidate sets of TopK -> TopP -> MinP (``truncate_canonical``, ``truncate_row``)
of every compiled CPU backend against the numpy reference.

Each test runs once per backend (the ``fast_backend`` fixture of ``conftest.py``); the
C kernel runs on every instruction-set level this CPU has (``isa=``). Row b's set must
be exactly the finite entries of ``reference.min_p(reference.top_p(reference.top_k(x,
k, mk), p, mk), pmin, mk)``: ids ascending, ``vals == x[b, ids]``, rows concatenated
at ``offsets``, ``invalid`` exactly the rows with NaN, +inf or no finite logit (and no
candidates for them). Random rows (hypothesis and seeded), LLM-like and flat rows at
the full vocabulary, ties at every cut, all-but-one masked, k >= V, V = 1, B = 0,
min_keep above the survivors, invalid rows, per-row parameters, sets larger than a
backend's per-row buffers. The input is never written.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastsample import reference as ref
from fastsample import registry
from fastsample.workloads import DEFAULT_VOCAB as FULL_V
from fastsample.workloads import flat, llm_like

OPS = ("truncate_canonical", "truncate_row")
# the fixtures only name the backend: safe to share across examples
HYP = settings(max_examples=150, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def ops(fast_backend):
    module = registry.load(fast_backend)
    missing = [name for name in OPS if not callable(getattr(module, name, None))]
    if missing and fast_backend != "numba":
        pytest.skip(f"the {fast_backend} backend has no {', '.join(missing)} yet")
    assert not missing, f"the numba backend lacks {missing}"
    return module


def _variants(fn):
    """Keyword sets that select each code path of one backend: every ISA level of C."""
    try:
        takes_isa = "isa" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_isa = False
    if takes_isa:
        from fastsample.c_backend import core

        return [{"isa": isa} for isa in core.ISAS]
    return [{}]


# ---------------------------------------------------------------- helpers


def _arr(a, B, dt):
    return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dt), (B,)))


def _invalid(x):
    return np.isnan(x).any(axis=1) | np.isposinf(x).any(axis=1) | ~np.isfinite(x).any(axis=1)


def _expected(x, k, p, pmin, mk):
    """(ids of every row, invalid): the reference's surviving tokens."""
    bad = _invalid(x)
    clean = np.where(bad[:, None], np.float32(0.0), x)  # the reference only sees valid rows
    out = ref.min_p(ref.top_p(ref.top_k(clean, k, mk), p, mk), pmin, mk)
    return [np.empty(0, np.int64) if bad[b] else np.flatnonzero(np.isfinite(out[b]))
            for b in range(x.shape[0])], bad


def _describe(b, want, got, k, p, pmin, mk):
    extra = np.setdiff1d(got, want)[:5]
    lost = np.setdiff1d(want, got)[:5]
    return (f"row {b}: {got.size} candidates, reference {want.size} (extra {extra}, "
            f"missing {lost}); k {k[b]} p {p[b]} min_p {pmin[b]} min_keep {mk[b]}")


def _check(ops, x, top_k=0, top_p=1.0, min_p=0.0, min_keep=1, rows=True):
    """Every code path of the backend gives exactly the reference's sets; ``rows``:
    ``truncate_row`` on every row too."""
    B = x.shape[0]
    k, p = _arr(top_k, B, np.int64), _arr(top_p, B, np.float64)
    pmin, mk = _arr(min_p, B, np.float64), _arr(min_keep, B, np.int64)
    want, bad = _expected(x, k, p, pmin, mk)
    before = x.copy()
    for variant in _variants(ops.truncate_canonical):
        ids, vals, offsets, invalid = ops.truncate_canonical(x, k, p, pmin, mk, **variant)
        np.testing.assert_array_equal(x, before)  # the input is never written
        assert ids.dtype == np.int32 and vals.dtype == np.float32
        assert offsets.dtype == np.int64 and offsets.shape == (B + 1,)
        assert invalid.dtype == np.bool_ and invalid.shape == (B,)
        assert offsets[0] == 0 and offsets[-1] == ids.shape[0] == vals.shape[0]
        np.testing.assert_array_equal(invalid, bad, err_msg=f"{variant}: invalid rows")
        for b in range(B):
            got = ids[offsets[b]:offsets[b + 1]]
            assert np.array_equal(got, want[b]), f"{variant} " + _describe(
                b, want[b], got, k, p, pmin, mk)
            np.testing.assert_array_equal(vals[offsets[b]:offsets[b + 1]], x[b, got])
    if not rows:
        return
    for variant in _variants(ops.truncate_row):
        for b in range(B):
            got, gv, gbad = ops.truncate_row(x[b], int(k[b]), float(p[b]), float(pmin[b]),
                                             int(mk[b]), **variant)
            assert got.dtype == np.int32 and gv.dtype == np.float32 and gbad is bool(bad[b])
            assert np.array_equal(got, want[b]), f"{variant} truncate_row " + _describe(
                b, want[b], got, k, p, pmin, mk)
            np.testing.assert_array_equal(gv, x[b, got])
        np.testing.assert_array_equal(x, before)


def _perturb(x, rng):
    """Ties by rounding, masked tokens and scaled magnitudes, row by row."""
    x = x.copy()
    B, V = x.shape
    for b in range(B):
        kind = rng.integers(0, 6)
        if kind == 1:
            q = rng.choice([1.0, 2.0, 4.0, 16.0])
            x[b] = np.round(x[b] * q) / q
        elif kind == 2:
            x[b, rng.random(V) < rng.choice([0.1, 0.5, 0.9, 0.999])] = -np.inf
        elif kind == 3:
            x[b] = np.round(x[b] * 2.0) / 2.0
            x[b, rng.random(V) < 0.3] = -np.inf
        elif kind == 4:
            x[b] = x[b] * np.float32(rng.choice([1e-3, 10.0, 1e4, 1e30]))
        if not np.isfinite(x[b]).any():
            x[b, rng.integers(0, V)] = 0.0
    return x


def _params(B, V, rng):
    return {
        "top_k": rng.choice(np.array([0, 0, -1, 1, 2, 5, 40, 50, V - 1, V, V + 7]), B),
        "top_p": rng.choice([1.0, 1.0, 0.0, 0.1, 0.5, 0.9, 0.95, 0.97, 0.999, 1.5], B),
        "min_p": rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 0.9, 1.0, 2.0], B),
        "min_keep": rng.choice(np.array([1, 1, 1, 2, 3, 10, 100]), B),
    }


# ---------------------------------------------------------------- random rows


@HYP
@given(st.data())
def test_hypothesis_rows(ops, data):
    B = data.draw(st.integers(0, 5), label="B")
    V = data.draw(st.integers(1, 600), label="V")
    x = data.draw(hnp.arrays(np.float32, (B, V), elements=st.one_of(
        st.floats(-30, 5, width=32), st.just(float("-inf")),
        st.sampled_from([0.0, -1.0, 2.0]))), label="x")

    def per_row(elements, label):
        return data.draw(st.lists(elements, min_size=B, max_size=B), label=label)

    k = per_row(st.integers(-2, V + 3), "k")
    p = per_row(st.one_of(st.sampled_from([0.0, 1e-7, 0.5, 0.95, 1.0 - 1e-7, 1.0, 1.5]),
                          st.floats(0.0, 1.0)), "p")
    pmin = per_row(st.one_of(st.sampled_from([0.0, 0.05, 1.0, 2.0]), st.floats(0.0, 1.2)),
                   "min_p")
    mk = per_row(st.integers(1, 12), "min_keep")
    _check(ops, x, k, p, pmin, mk)


@pytest.mark.parametrize("gen", ["llm_like", "flat"])
@pytest.mark.parametrize("V", [1, 2, 3, 17, 255, 256, 257, 1000, 4099, 32000])
def test_random_rows(ops, V, gen):
    rng = np.random.default_rng([V, len(gen)])
    B = 120 if V < 10000 else 12
    x = _perturb((llm_like if gen == "llm_like" else flat)(B, V, V), rng)
    _check(ops, x, rows=V < 10000, **_params(B, V, rng))


# ---------------------------------------------------------------- full vocabulary


@pytest.mark.parametrize("gen", ["llm_like", "flat"])
@pytest.mark.parametrize("kw", [
    {"top_p": 0.95},                                   # W3 / W6
    {"top_k": 40, "top_p": 0.95, "min_p": 0.05},       # W1
    {"min_p": 0.05},                                   # W2
    {"top_p": 0.5}, {"top_p": 0.97}, {"top_p": 0.99}, {"top_p": 0.999999},
    {"top_k": 3000, "top_p": 0.9}, {"top_p": 0.95, "min_keep": 300},
    {},                                                # every finite token
])
def test_full_vocab_rows(ops, gen, kw):
    """LLM-like rows (the one-pass top-p level) and flat rows (the mass histogram),
    several seeds; flat rows' sets are most of the row."""
    x = (llm_like if gen == "llm_like" else flat)(6, FULL_V, 3)
    _check(ops, x, rows=False, **kw)
    _check(ops, x[:1], **kw)


def test_llm_like_rows_many_seeds(ops):
    """The W3 rows of the benchmark (seeds 0..15) at top_p 0.95, and nearby p."""
    x = np.concatenate([llm_like(1, FULL_V, s) for s in range(16)])
    for p in (0.95, 0.9, 0.98):
        _check(ops, x, top_p=p, rows=False)


# ---------------------------------------------------------------- edge cases


def test_ties_at_every_cut(ops):
    """Rounded rows (many ties) with each cut placed on a tied value: the k-th
    value, the top-p boundary token, the min-p threshold, the min_keep-th value."""
    rng = np.random.default_rng(5)
    base = llm_like(8, 3000, 2)
    for q in (1.0, 2.0, 8.0):
        x = np.round(base * q) / np.float32(q)
        B = x.shape[0]
        srt = -np.sort(-x, axis=1)
        for b in range(B):  # every row has a tie at a random rank
            assert (srt[b, :-1] == srt[b, 1:]).any()
        # a random one of the first 60 tied ranks
        tie_rank = np.array([int(rng.choice(np.flatnonzero(srt[b, :-1] == srt[b, 1:])[:60]))
                             for b in range(B)])
        k = tie_rank + 1  # the k-th value has a tie just below it
        # p: exactly the mass through a tied token (the boundary is that token)
        w = np.exp(srt.astype(np.float64) - srt[:, :1])
        cum = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
        p = cum[np.arange(B), tie_rank]
        pmin = np.exp(srt[np.arange(B), tie_rank].astype(np.float64) - srt[:, 0])
        _check(ops, x, top_k=k)
        _check(ops, x, top_p=p)
        _check(ops, x, top_p=p + 1e-7 * rng.standard_normal(B))
        _check(ops, x, min_p=pmin)
        _check(ops, x, min_keep=k)
        _check(ops, x, top_k=k, top_p=p, min_p=pmin, min_keep=rng.integers(1, 20, B))


def test_round_masses_within_tolerance(ops):
    """Masses that reach p exactly in real arithmetic count as reached (1e-6 rule)."""
    probs = np.array([0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625])
    x = np.tile(np.log(probs).astype(np.float32), (8, 1))
    for p in (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375, 1.0 - 1e-7):
        _check(ops, x, top_p=p)


def test_all_but_one_masked(ops):
    x = np.full((6, 700), -np.inf, np.float32)
    x[np.arange(6), [0, 5, 255, 256, 511, 699]] = [3.0, -1e30, 0.0, 7.5, -2.0, 1e30]
    for kw in ({}, {"top_k": 1}, {"top_k": 5, "min_keep": 9}, {"top_p": 1e-7},
               {"top_p": 0.999}, {"min_p": 0.9}, {"top_k": 2, "top_p": 0.5, "min_p": 2.0}):
        _check(ops, x, **kw)
    y = x.copy()
    y[:, 100] = y[np.arange(6), [0, 5, 255, 256, 511, 699]]  # all-but-two, tied
    for kw in ({"top_k": 1}, {"top_p": 0.3}, {"min_p": 1.0}):
        _check(ops, y, **kw)


def test_k_at_least_vocab_and_p_edges(ops):
    x = llm_like(10, 777, 4)
    for kw in ({"top_k": 777}, {"top_k": 776}, {"top_k": 10**9}, {"top_p": 0.0},
               {"top_p": 1e-7}, {"top_p": 1.0 - 1e-7}, {"top_p": 2.0}, {"min_p": 1.0},
               {"min_p": 1e-300}):
        _check(ops, x, **kw)


@pytest.mark.parametrize("kw", [{}, {"top_k": 1, "top_p": 0.1, "min_p": 0.9},
                                {"min_keep": 4}, {"top_k": 3, "top_p": 0.0}])
def test_single_token_vocab(ops, kw):
    _check(ops, np.array([[0.5], [-3.0], [1e30], [-np.inf]], np.float32), **kw)


def test_empty_batch(ops):
    for variant in _variants(ops.truncate_canonical):
        e = np.zeros(0)
        ids, vals, offsets, invalid = ops.truncate_canonical(
            np.zeros((0, 10), np.float32), e.astype(np.int64), e, e, e.astype(np.int64),
            **variant)
        assert ids.shape == vals.shape == (0,) and ids.dtype == np.int32
        assert offsets.tolist() == [0] and invalid.shape == (0,) and invalid.dtype == np.bool_


def test_min_keep_above_survivors(ops):
    x = llm_like(12, 5000, 2)
    for mk in (2, 7, 64, 4999, 5000, 10**6):
        for kw in ({"top_k": 3}, {"top_p": 0.2}, {"min_p": 0.9}, {"min_p": 5.0},
                   {"top_k": 1, "top_p": 0.0, "min_p": 1.0}):
            _check(ops, x, min_keep=mk, rows=mk < 100, **kw)


def test_invalid_rows(ops):
    """NaN, +inf and all-masked rows are flagged, with no candidates, between valid
    rows (B > 1) and alone (B == 1)."""
    x = llm_like(7, 3000, 9)
    x[1, 17] = np.nan
    x[2, 2999] = np.inf
    x[3] = -np.inf
    x[4, 5] = np.nan
    x[4, 6] = np.inf
    x[5, :] = -np.inf
    x[5, 0] = np.nan
    for kw in ({}, {"top_k": 40, "top_p": 0.95, "min_p": 0.05}, {"top_p": 0.9}):
        _check(ops, x, **kw)
        for b in range(x.shape[0]):
            _check(ops, x[b:b + 1], **kw)


def test_per_row_parameters_and_batch_invariance(ops):
    """Per-row parameters in one parallel call; row b's set does not depend on the
    batch (equal to the one-row call and to the reference)."""
    rng = np.random.default_rng(11)
    B, V = 48, 20000
    x = _perturb(llm_like(B, V, 8), rng)
    p = _params(B, V, rng)
    _check(ops, x, rows=False, **p)
    whole = ops.truncate_canonical(x, _arr(p["top_k"], B, np.int64),
                                   _arr(p["top_p"], B, np.float64),
                                   _arr(p["min_p"], B, np.float64),
                                   _arr(p["min_keep"], B, np.int64))
    for b in range(0, B, 5):
        one = ops.truncate_canonical(x[b:b + 1], *(_arr(p[n][b:b + 1], 1, dt) for n, dt in (
            ("top_k", np.int64), ("top_p", np.float64), ("min_p", np.float64),
            ("min_keep", np.int64))))
        lo, hi = whole[2][b], whole[2][b + 1]
        np.testing.assert_array_equal(one[0], whole[0][lo:hi])
        np.testing.assert_array_equal(one[1], whole[1][lo:hi])


def test_sets_larger_than_row_buffers(ops):
    """Rows whose sets hold thousands to most of the tokens, mixed with small ones
    (a backend may stash small sets per row and gather large ones again)."""
    x = np.concatenate([flat(2, FULL_V, 1), llm_like(2, FULL_V, 1)])
    _check(ops, x, top_k=[0, 5000, 3000, 40], top_p=[0.95, 1.0, 0.9, 1.0],
           min_p=[0.0, 0.0, 0.0, 0.05], rows=False)
    _check(ops, x, rows=False)
    y = llm_like(3, 9000, 4)
    _check(ops, y, top_k=[2100, 2047, 2049], min_keep=[1, 2048, 1])
