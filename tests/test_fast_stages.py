"""The stage kernels of every compiled CPU backend (numba, c) against the reference.

Each test runs once per backend (the ``fast_backend`` fixture of ``conftest.py``),
on the backend's ops module as the registry loads it. Every stage function runs on
many random inputs (llm_like / flat rows, ties made by rounding, partly masked rows,
all-but-one masked rows, constant and huge rows, V = 1, B = 0, per-row and scalar
parameters, k >= V, min_keep above the survivors, small-alphabet histories, natural
text, breakers, 32768 copies of one token) and is compared with
``fastsample.reference``:

- masks identical: exactly the same ``-inf`` entries (and NaN only where the
  reference has NaN, never ``+inf``);
- finite values within ``|a - b| <= 1e-5 * max(1, |b|)``;
- the input array is never written.

Chains through ``SamplerChain(..., backend=name)`` give the same tokens as
``backend="numpy"`` step after step. Seeded and deterministic; no clocks.
Backend-specific checks live in ``test_c_stages.py`` (size and status errors) and
``test_numba_core.py`` (serial / parallel variants, compilation).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import reference as R
from fastsample import registry
from fastsample.workloads import flat, llm_like, natural_history, repeated_history

TOL = 1e-5  # relative to max(1, |reference|)

# the fixture only names the backend: one value per run, safe to share across examples
HYPOTHESIS = settings(max_examples=100, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.function_scoped_fixture])


@pytest.fixture
def ops(fast_backend):
    return registry.load(fast_backend)


# ---------------------------------------------------------------- helpers


def assert_same(got, want, what=""):
    assert got.dtype == np.float32 and got.shape == want.shape, what
    assert not np.isnan(got).any() or np.array_equal(np.isnan(got), np.isnan(want)), what
    assert not np.isposinf(got).any(), what
    gm, wm = np.isneginf(got), np.isneginf(want)
    if not np.array_equal(gm, wm):
        rows = np.nonzero((gm != wm).any(axis=-1))[0]
        raise AssertionError(f"{what}: -inf masks differ in rows {rows.tolist()}")
    fin = ~wm
    err = np.abs(got[fin].astype(np.float64) - want[fin])
    bound = TOL * np.maximum(1.0, np.abs(want[fin].astype(np.float64)))
    assert (err <= bound).all(), f"{what}: max error {err.max() if err.size else 0}"


def check(ops, name, logits, *args):
    """Run the backend's kernel and the reference on the same input; compare; input
    untouched. A scalar per-row parameter goes to the backend as is and to the
    reference as a (B,) array (the backend contract's form)."""
    before = logits.copy()
    got = getattr(ops, name)(logits, *args)
    assert np.array_equal(logits, before, equal_nan=True), f"{name} wrote its input"
    B = logits.shape[0]
    ref_args = [np.full(B, a) if isinstance(a, (int, float)) else a for a in args]
    assert_same(got, getattr(R, name)(logits, *ref_args), name)
    return got


def check_dry_penalty(ops, *args):
    gi, gp = ops.dry_penalty(*args)
    wi, wp = R.dry_penalty(*args)
    assert gi.dtype == np.int32 and gp.dtype == np.float32
    np.testing.assert_array_equal(gi, wi)
    np.testing.assert_allclose(gp, wp, rtol=TOL, atol=TOL)


STYLES = ("llm", "flat", "ties", "masked", "one_left", "const", "huge")


def make_logits(rng, B, V, style):
    seed = int(rng.integers(1 << 30))
    x = flat(B, V, seed) if style == "flat" else llm_like(B, V, seed)
    if style == "ties":
        x = np.round(x * rng.choice([1.0, 2.0, 4.0])) / 2
    elif style == "masked":
        x[rng.random((B, V)) < rng.uniform(0.1, 0.9)] = -np.inf
    elif style == "one_left":
        x[:] = -np.inf
        x[np.arange(B), rng.integers(0, V, B)] = rng.normal(size=B)
    elif style == "const":
        x[:] = rng.normal()
    elif style == "huge":
        x = x * 1e37
    x = np.asarray(x, np.float32)
    for b in range(B):  # the API rejects rows with every logit masked
        if not np.isfinite(x[b]).any():
            x[b, rng.integers(0, V)] = 0.0
    return np.ascontiguousarray(x)


def cases(n_cases, seed, vs=(1, 2, 3, 8, 50, 300, 1500)):
    rng = np.random.default_rng(seed)
    for i in range(n_cases):
        B = int(rng.choice([1, 2, 3, 5]))
        V = int(rng.choice(vs))
        yield rng, B, V, make_logits(rng, B, V, STYLES[i % len(STYLES)])


def min_keeps(rng, B, V):
    mk = rng.choice([1, 1, 1, 2, 3, 5, V, V + 3], size=B).astype(np.int64)
    return int(mk[0]) if B == 1 and rng.random() < 0.3 else mk  # scalars too


def per_row(rng, values, B):
    """Per-row parameters, sometimes as one scalar for every row."""
    v = rng.choice(values, size=B)
    return v.dtype.type(v[0]).item() if rng.random() < 0.25 else v


def mixed(rng, values, lo, hi, B, frac=0.5):
    """Per-row parameters: listed values, a fraction of them replaced by uniform draws."""
    v = rng.choice(values, size=B)
    return np.where(rng.random(B) < frac, rng.uniform(lo, hi, B), v)


# ---------------------------------------------------------------- truncations


def test_top_k(ops):
    for rng, B, V, x in cases(70, 1):
        k = rng.integers(-1, V + 3, size=B).astype(np.int64)
        check(ops, "top_k", x, k, min_keeps(rng, B, V))


def test_top_k_large_vocab_heap_and_select(ops):
    x = np.concatenate([llm_like(2, 128256, 3), flat(2, 128256, 4)])
    x[1, ::3] = -np.inf
    for k in ([40, 1000, 40, 1000], [1, 256, 257, 128255], [128256, 128257, 2, 3]):
        check(ops, "top_k", x, np.array(k, np.int64), np.ones(4, np.int64))
    check(ops, "top_k", x, np.array([2, 2, 2, 2]), np.array([5000, 1, 300, 7]))


def test_top_p(ops):
    for rng, B, V, x in cases(70, 2):
        p = mixed(rng, [0.0, 1e-7, 0.3, 0.9, 0.95, 1.0, 1.2], 0, 1, B)
        check(ops, "top_p", x, p, min_keeps(rng, B, V))


def test_typical(ops):
    for rng, B, V, x in cases(70, 3):
        p = mixed(rng, [0.0, 0.2, 0.5, 0.95, 1.0], 0, 1, B)
        check(ops, "typical", x, p, min_keeps(rng, B, V))


def test_top_p_typical_large_vocab(ops):
    x = np.concatenate([llm_like(2, 128256, 5), flat(2, 128256, 6)])
    x[0, 1::2] = -np.inf
    for p in ([0.95, 0.5, 0.95, 0.5], [0.9999, 0.05, 0.999999, 0.1]):
        check(ops, "top_p", x, np.array(p), np.ones(4, np.int64))
    x = np.concatenate([llm_like(1, 128256, 7), flat(1, 128256, 8)])
    check(ops, "typical", x, np.array([0.9, 0.5]), np.ones(2, np.int64))


def test_many_tied_candidates(ops):
    """More than 4096 candidates, flat and coarsely tied rows: thousands of tokens in
    the cut's bin (C) / the weighted-quickselect path (numba)."""
    rng = np.random.default_rng(27)
    x = np.concatenate([flat(3, 9000, 13), np.round(flat(2, 9000, 14) * 8) / 8,
                        llm_like(1, 9000, 15) * np.float32(0.05)]).astype(np.float32)
    x[0, ::5] = -np.inf
    B = x.shape[0]
    for _ in range(4):
        p = rng.uniform(0.05, 0.999, B)
        mk = rng.choice([1, 1, 7000], size=B).astype(np.int64)
        check(ops, "top_p", x, p, mk)
        check(ops, "typical", x, p, mk)


def _bin_edge_masses(keys, probs):
    """Masses p at which the cut falls exactly at the end of a histogram bin of the C
    kernels (bins of 1/16 over the sort key), and 5e-10 either side of it."""
    order = np.lexsort((np.arange(keys.size), keys))
    order = order[np.isfinite(keys[order])]
    cum = np.cumsum(probs[order])
    bins = np.floor(keys[order] * 16)
    edges = np.nonzero(bins[1:] != bins[:-1])[0][:6]
    return [cum[j] + R.MASS_TOLERANCE + d for j in edges for d in (-5e-10, 5e-10)]


def test_cut_at_histogram_bin_edges(ops):
    """The cut one token before or after the end of a bin: the bin search must neither
    skip a bin nor stop one short (and any kernel must agree at these masses)."""
    x = np.array([[0.0, -0.01, -0.02, -0.03, -0.2, -0.21, -0.5, -1.0, -1.02, -3.0, -np.inf]],
                 np.float32)
    x = np.concatenate([x, llm_like(1, 11, 5)])
    for b in range(2):
        row = x[b:b + 1]
        probs = R._row_probs(row[0])
        key = np.where(np.isfinite(row[0]), row[0].max() - row[0].astype(np.float64), np.inf)
        for p in _bin_edge_masses(key, probs):
            check(ops, "top_p", row, np.array([p]), np.ones(1, np.int64))
        logp = R._row_logprobs(row[0])
        score = np.where(np.isfinite(row[0]), np.abs(-logp - R._entropy(probs)), np.inf)
        for p in _bin_edge_masses(score, probs):
            check(ops, "typical", row, np.array([p]), np.ones(1, np.int64))


def test_min_p(ops):
    for rng, B, V, x in cases(70, 4):
        p = mixed(rng, [-0.1, 0.0, 0.05, 0.5, 1.0, 1.5], 0, 1, B)
        check(ops, "min_p", x, p, min_keeps(rng, B, V))


def test_min_p_threshold_on_a_logit(ops):
    """p chosen so that l_max + ln(p) lands within rounding of a logit: the float32
    compare of the kernel must decide exactly as the reference's float64 compare."""
    x = llm_like(1, 400, 9)
    m = float(x.max())
    for j in np.argsort(-x[0])[1:40]:
        base = np.exp(float(x[0, j]) - m)
        for f in (1 - 1e-15, 1.0, 1 + 1e-15, 1 - 1e-9, 1 + 1e-9):
            check(ops, "min_p", x, np.array([base * f]), np.ones(1, np.int64))


def test_top_n_sigma(ops):
    for rng, B, V, x in cases(70, 5):
        n = np.where(rng.random(B) < 0.2, 0.0, rng.uniform(-0.5, 3.0, B))
        check(ops, "top_n_sigma", x, n, min_keeps(rng, B, V))


def test_xtc(ops):
    for rng, B, V, x in cases(70, 6, vs=(1, 2, 3, 8, 20, 300)):
        prob = per_row(rng, [0.0, 0.5, 1.0], B)
        thr = rng.choice([0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.6], size=B)
        seed = rng.integers(0, 2**63, size=B, dtype=np.uint64)
        pos = rng.integers(0, 2**40, size=B, dtype=np.uint64)
        check(ops, "xtc", x, prob, thr, min_keeps(rng, B, V), seed, pos)


def test_xtc_roll_is_stream_1(ops):
    """With probability 0.5 some rows roll and some do not; both must match."""
    x = np.repeat(np.log(np.array([[0.4, 0.3, 0.2, 0.1]], np.float32)), 64, axis=0)
    B = x.shape[0]
    seed = np.arange(B, dtype=np.uint64) * np.uint64(7919)
    got = check(ops, "xtc", x, np.full(B, 0.5), np.full(B, 0.15), np.ones(B, np.int64),
                seed, np.arange(B, dtype=np.uint64))
    rolled = np.isneginf(got).any(axis=1)
    assert 0 < rolled.sum() < B


# seed, listed values, upper ends of the uniform draws
THRESHOLDS = {
    "epsilon": (101, [-1.0, -0.1, 0.0, 1e-4, 0.01, 0.1, 0.3, 0.5, 1.0], (0.3, 0.5)),
    "eta": (102, [-1.0, 0.0, 1e-4, 3e-4, 0.01, 0.1, 0.2, 0.3, 1.0, 2.0], (0.1, 0.5)),
    "top_a": (103, [-1.0, -0.5, 0.0, 1e-4, 0.01, 0.1, 0.2, 0.3, 1.0, 5.0], (0.5, 2.0)),
}


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_probability_thresholds(ops, name):
    seed, values, highs = THRESHOLDS[name]
    for rng, B, V, x in cases(80, seed):
        a = mixed(rng, values, 0, rng.choice(highs), B, frac=0.4)
        check(ops, name, x, a, min_keeps(rng, B, V))


def test_p_less(ops):
    for rng, B, V, x in cases(80, 104):
        check(ops, "p_less", x, min_keeps(rng, B, V))


def test_tail_free(ops):
    for rng, B, V, x in cases(90, 105):
        z = mixed(rng, [-0.1, 0.0, 0.5, 0.9, 0.95, 0.999, 1.0, 1.5], 0, 1, B, frac=0.4)
        check(ops, "tail_free", x, z, min_keeps(rng, B, V))


def test_other_stages_large_vocab(ops):
    x = np.concatenate([llm_like(2, 128256, 16), flat(1, 128256, 17)])
    x[1, ::7] = -np.inf
    B = x.shape[0]
    mk = np.array([1, 3, 2])
    check(ops, "min_p", x, np.array([0.05, 0.001, 0.9]), mk)
    check(ops, "top_n_sigma", x, np.array([1.0, 3.0, 0.5]), mk)
    check(ops, "xtc", x, np.ones(B), np.array([0.01, 0.001, 1e-5]), mk,
          np.arange(B, dtype=np.uint64), np.zeros(B, np.uint64))
    check(ops, "temperature", x, np.array([0.8, 0.0, 1e-3]))
    check(ops, "logit_bias", x, np.array([0, 5, 128255, 5]), np.array([1.0, -np.inf, 2.5, 1.0]))
    hist = [natural_history(4096, 128256, b) for b in range(B)]
    check(ops, "penalties", x, hist, 1.1, 0.1, 0.2, np.array([64, -1, 4096]))


def test_truncations_large_vocab(ops):
    x = np.concatenate([llm_like(2, 128256, 110), flat(1, 128256, 111)])
    x[1, ::5] = -np.inf
    mk = np.array([1, 3, 2])
    check(ops, "epsilon", x, np.array([3e-4, 1e-6, 7e-6]), mk)
    check(ops, "eta", x, np.array([3e-4, 1e-3, 1e-5]), mk)
    check(ops, "top_a", x, np.array([0.2, 0.01, 1.0]), mk)
    check(ops, "p_less", x, mk)
    check(ops, "tail_free", x, np.array([0.95, 0.5, 0.9]), mk)
    check(ops, "mirostat", x, np.array([10.0, 3.0, 16.0]), np.array([100, 2, 1000]))
    check(ops, "mirostat_v2", x, np.array([10.0, 3.0, 16.9]))
    y = np.concatenate([llm_like(1, 128256, 9), flat(1, 128256, 10)])
    check(ops, "tail_free", y, np.array([0.95, 0.5]), np.ones(2, np.int64))
    y = np.concatenate([llm_like(2, 128256, 11), flat(1, 128256, 12)])
    check(ops, "mirostat", y, np.array([10.0, 3.0, 10.0]), np.array([100, 1000, 100]))


# ---------------------------------------------------------------- transforms


def test_temperature(ops):
    for rng, B, V, x in cases(60, 10):
        t = mixed(rng, [0.0, -1.0, 1.0, 1e-30, 0.7, 2.0, 1e30], 0.05, 3, B, frac=0.3)
        check(ops, "temperature", x, t)
        check(ops, "temperature", x, float(t[0]))


def test_dynamic_temperature(ops):
    for rng, B, V, x in cases(80, 106):
        t = mixed(rng, [0.0, 0.5, 1.0, 1.5], 0.0, 2.0, B)
        r = rng.choice([-0.5, 0.0, 0.3, 1.0, 2.0, 5.0], size=B)
        expo = per_row(rng, [0.5, 1.0, 2.0, 3.0, 3.3], B)
        check(ops, "dynamic_temperature", x, t, r, expo)


def test_smoothing(ops):
    for rng, B, V, x in cases(80, 107):
        factor = rng.choice([-1.0, 0.0, 0.1, 0.3, 1.0, 4.0, 5.0], size=B)
        curve = per_row(rng, [0.0, 1.0, 2.0, 2.5, 3.0, 4.5, 5.0], B)
        check(ops, "smoothing", x, factor, curve)


def test_greedy(ops):
    for rng, B, V, x in cases(50, 13):
        got = check(ops, "greedy", x)
        assert (np.isfinite(got).sum(axis=1) == 1).all()


def test_adaptive_p(ops):
    for i, (rng, B, V, x) in enumerate(cases(80, 108)):
        target = rng.choice([-0.5, -0.1, 0.0, 0.1, 0.3, 0.5, 0.9, 1.0], size=B)
        if i % 2:  # a running average near its steady state
            decay = rng.uniform(0.5, 0.99, B)
            ema_weight = 1.0 / (1.0 - decay)
            ema_sum = np.clip(target, 0, 1) * ema_weight * rng.uniform(0.3, 1.7, B)
        else:  # any weight up to steady state, any mean in [0, 1]
            decay = rng.choice([0.0, 0.5, 0.9, 0.99], size=B)
            ema_weight = 1.0 / (1.0 - decay) * rng.uniform(0.5, 1.0, B)
            ema_sum = ema_weight * rng.uniform(0.0, 1.0, B)
        check(ops, "adaptive_p", x, target, ema_sum, ema_weight)


def test_transforms_large_vocab(ops):
    x = np.concatenate([llm_like(2, 128256, 112), flat(1, 128256, 113)])
    x[0, 1::3] = -np.inf
    check(ops, "dynamic_temperature", x, np.array([1.0, 0.7, 1.5]), np.array([0.5, 0.7, 1.0]),
          np.array([1.0, 2.0, 0.5]))
    check(ops, "smoothing", x, np.array([0.3, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    check(ops, "adaptive_p", x, np.array([0.3, 0.05, 0.9]), np.array([3.0, 0.1, 9.0]),
          np.array([10.0, 2.0, 10.0]))


def test_mirostat(ops):
    for rng, B, V, x in cases(90, 109):
        mu = mixed(rng, [-1.0, 0.0, 1.0, 2.0, 5.0, 6.0, 10.0, 20.0, 30.0, 1e3, 2000.0],
                   0, 20, B, frac=0.4)
        m = rng.choice([0, 1, 2, 3, 5, 10, 100, V, V + 5], size=B).astype(np.int64)
        check(ops, "mirostat", x, mu, m)


def test_mirostat_v2(ops):
    for rng, B, V, x in cases(80, 110):
        mu = mixed(rng, [-1.0, 0.0, 0.5, 2.0, 3.0, 6.0, 10.0, 100.0, 1e3], 0, 15, B, frac=0.4)
        check(ops, "mirostat_v2", x, mu)


def test_signed_zero_logits_tie(ops):
    """0.0 and -0.0 are equal logits: the sorts of tail-free and Mirostat must order
    them by id, as the reference's stable argsort does."""
    rng = np.random.default_rng(115)
    for _ in range(20):
        V = int(rng.integers(3, 40))
        x = rng.choice(np.array([0.0, -0.0, -1.0, -2.5], np.float32), size=(3, V))
        x = np.ascontiguousarray(x, np.float32)
        x[:, 0] = 0.0
        for z in (0.1, 0.5, 0.9, 0.99):
            check(ops, "tail_free", x, z, 1)
        check(ops, "mirostat", x, rng.uniform(0, 6, 3), np.array([2, 5, 100]))


# ---------------------------------------------------------------- logit bias


def test_logit_bias(ops):
    for rng, B, V, x in cases(60, 17):
        n = int(rng.integers(0, 6))
        ids = rng.integers(0, V, n).astype(np.int64)
        if n and rng.random() < 0.5:
            ids = np.concatenate([ids, ids[:2]])  # repeated ids add up
        vals = rng.choice([-np.inf, -5.0, -0.5, 0.0, 1.5, 3e38, -3e38], size=ids.size)
        vals = np.where(rng.random(ids.size) < 0.4, rng.normal(0, 3, ids.size), vals)
        check(ops, "logit_bias", x, ids, vals)


def test_bad_input_rejected(ops):
    """Ids outside [0, V), histories of the wrong number of rows, ids and values of
    different lengths, 1-D logits: a ValueError naming the problem."""
    x = llm_like(2, 10, 0)
    for ids in ([10], [-1], [3, 99]):
        with pytest.raises(ValueError, match="outside"):
            ops.logit_bias(x, np.array(ids), np.ones(len(ids)))
    with pytest.raises(ValueError, match="ids"):
        ops.logit_bias(x, np.array([1, 2]), np.ones(3))
    for h in ([np.array([1, 10, 1]), np.array([3])], [np.array([1]), np.array([-1])],
              [np.array([1, 2]), np.array([-1, 2])]):
        with pytest.raises(ValueError, match="outside"):
            ops.penalties(x, h, 1.2, 0.0, 0.0, -1)
        with pytest.raises(ValueError, match="outside"):
            ops.dry(x, h, 0.8, 1.75, 1, -1, np.zeros(0, np.int64))
        with pytest.raises(ValueError, match="outside"):
            ops.dry_penalty(h[0] if h[0].max() >= 10 else h[1], 10, 0.8, 1.75, 1, [], -1)
        if len(h[1]) >= 2:  # C checks the ids of a history only where n reads them
            with pytest.raises(ValueError, match="outside"):
                ops.no_repeat_ngram(x, h, 2)
    good = [np.array([1, 2, 1]), np.array([3])]
    with pytest.raises(ValueError, match="rows"):
        ops.penalties(x, good[:1], 1.2, 0.0, 0.0, -1)
    with pytest.raises(ValueError, match="rows"):
        ops.no_repeat_ngram(x, good[:1], 2)
    with pytest.raises(ValueError, match="breaker"):
        ops.dry(x, good, 0.8, 1.75, 1, -1, np.array([10]))
    with pytest.raises(ValueError, match="shape"):
        ops.smoothing(x[0], 0.3, 1.0)
    # an inactive n never reads the history (the reference does not either)
    check(ops, "no_repeat_ngram", x, [np.array([1, 2]), np.array([3])], 5)


# ---------------------------------------------------------------- history stages


def histories(rng, B, V, kind=None):
    out = []
    for _ in range(B):
        k = kind or rng.choice(["alpha", "alpha", "natural", "repeat", "empty", "one"])
        L = int(rng.integers(0, 200))
        if k == "alpha":  # small alphabet: many repeats of every length
            h = rng.integers(0, int(rng.integers(1, min(V, 4) + 1)), L)
        elif k == "natural":
            h = natural_history(L, V, int(rng.integers(1000)))
        elif k == "repeat":
            h = repeated_history(L, V, int(rng.integers(1000)))
        elif k == "one":
            h = rng.integers(0, V, 1)
        else:
            h = np.zeros(0, np.int64)
        out.append(np.asarray(h, np.int64))
    return out


def test_penalties(ops):
    for rng, B, V, x in cases(70, 20, vs=(1, 3, 8, 50, 300)):
        hist = histories(rng, B, V)
        repeat = per_row(rng, [1.0, 0.5, 1.1, 1.5, 3.0], B)
        freq = rng.choice([0.0, -0.3, 0.1, 1.0], size=B)
        pres = rng.choice([0.0, -0.5, 0.2, 1e38], size=B)
        last_n = np.array([rng.choice([-1, 0, 1, 5, 64, len(h) + 3]) for h in hist], np.int64)
        check(ops, "penalties", x, hist, repeat, freq, pres, last_n)


def dry_args(rng, B, V, hist):
    mult = per_row(rng, [0.0, 0.8, 2.0, 1e30], B)
    base = rng.choice([0.9, 1.0, 1.75, 3.0, 1e6], size=B)
    allowed = rng.choice([0, 1, 2, 3, 5], size=B).astype(np.int64)
    last_n = np.array([rng.choice([-1, 0, 1, 2, 7, 50, len(h) + 1]) for h in hist], np.int64)
    breakers = rng.choice(V, size=int(rng.integers(0, min(V, 3) + 1)), replace=False)
    return mult, base, allowed, last_n, breakers.astype(np.int64)


def test_dry(ops):
    for rng, B, V, x in cases(90, 21, vs=(1, 3, 5, 8, 50, 300)):
        hist = histories(rng, B, V)
        check(ops, "dry", x, hist, *dry_args(rng, B, V, hist))


def test_dry_penalty(ops):
    rng = np.random.default_rng(22)
    for _ in range(100):
        V = int(rng.choice([1, 3, 5, 50]))
        h = histories(rng, 1, V)[0]
        mult, base, allowed, last_n, breakers = dry_args(rng, 1, V, [h])
        check_dry_penalty(ops, h, V, float(np.ravel(mult)[0]), float(base[0]),
                          int(allowed[0]), breakers, int(last_n[0]))


def test_dry_long_histories(ops):
    """32768 copies of one token, natural text, and a breaker in the middle."""
    V = 128256
    x = llm_like(3, V, 23)
    rep = repeated_history(32768, V, 1)
    nat = natural_history(32768, V, 2)
    mixed_ = rep.copy()
    mixed_[16000] = 5
    hist = [rep, nat, mixed_]
    args = (np.full(3, 0.8), np.full(3, 1.75), np.full(3, 2), np.full(3, -1), np.array([5]))
    check(ops, "dry", x, hist, *args)
    check(ops, "dry", x, hist, 0.8, 1.75, 2, np.array([64, 8192, 20000]), np.zeros(0, np.int64))
    for h in hist:
        check_dry_penalty(ops, h, V, 0.8, 1.75, 2, np.array([5]), -1)


def test_history_stages_long(ops):
    V = 1000
    x = llm_like(2, V, 25)
    hist = [repeated_history(32768, V, 3), natural_history(32768, V, 4) % V]
    check(ops, "no_repeat_ngram", x, hist, np.array([3, 2]))
    check(ops, "penalties", x, hist, np.array([1.2, 1.2]), np.array([0.01, 0.01]),
          np.array([0.1, 0.1]), np.array([-1, 64]))
    check(ops, "dry", x, hist, 0.8, 1.75, 2, -1, np.array([7, 8]))


def test_no_repeat_ngram(ops):
    for rng, B, V, x in cases(90, 111, vs=(1, 3, 5, 8, 50, 300)):
        hist = histories(rng, B, V)
        n = np.array([rng.choice([-1, 0, 1, 2, 3, 4, 7, max(len(h), 1), len(h) + 2])
                      for h in hist], np.int64)
        check(ops, "no_repeat_ngram", x, hist, n)
        check(ops, "no_repeat_ngram", x, hist, int(n[0]))


def test_no_repeat_ngram_long(ops):
    V = 128256
    x = llm_like(3, V, 114)
    hist = [repeated_history(32768, V, 5), natural_history(32768, V, 6),
            np.tile(np.arange(7), 3000)]
    check(ops, "no_repeat_ngram", x, hist, np.array([2, 3, 5]))
    check(ops, "no_repeat_ngram", x, hist, 1)


# ---------------------------------------------------------------- edges


ROW_STAGES = [
    ("top_n_sigma", lambda B: (np.ones(B), np.ones(B, np.int64))),
    ("top_k", lambda B: (np.full(B, 2, np.int64), np.ones(B, np.int64))),
    ("typical", lambda B: (np.full(B, 0.5), np.ones(B, np.int64))),
    ("top_p", lambda B: (np.full(B, 0.5), np.ones(B, np.int64))),
    ("min_p", lambda B: (np.full(B, 0.1), np.ones(B, np.int64))),
    ("xtc", lambda B: (np.ones(B), np.full(B, 0.1), np.ones(B, np.int64),
                       np.zeros(B, np.uint64), np.zeros(B, np.uint64))),
    ("epsilon", lambda B: (np.full(B, 0.01), np.ones(B, np.int64))),
    ("eta", lambda B: (np.full(B, 0.01), np.ones(B, np.int64))),
    ("top_a", lambda B: (np.full(B, 0.2), np.ones(B, np.int64))),
    ("p_less", lambda B: (np.ones(B, np.int64),)),
    ("tail_free", lambda B: (np.full(B, 0.5), np.ones(B, np.int64))),
    ("temperature", lambda B: (np.full(B, 0.7),)),
    ("dynamic_temperature", lambda B: (np.ones(B), np.full(B, 0.5), np.ones(B))),
    ("smoothing", lambda B: (np.ones(B), np.ones(B))),
    ("greedy", lambda B: ()),
    ("mirostat", lambda B: (np.full(B, 10.0), np.full(B, 100, np.int64))),
    ("mirostat_v2", lambda B: (np.full(B, 5.0),)),
    ("adaptive_p", lambda B: (np.full(B, 0.5), np.full(B, 5.0), np.full(B, 10.0))),
    ("logit_bias", lambda B: (np.array([0, 2]), np.array([1.0, -np.inf]))),
    ("penalties", lambda B: ([np.array([0, 1, 1])] * B, np.full(B, 1.3), np.full(B, 0.1),
                             np.full(B, 0.1), np.full(B, -1, np.int64))),
    ("dry", lambda B: ([np.array([0, 1, 0, 1, 0])] * B, np.ones(B), np.full(B, 1.75),
                       np.full(B, 1, np.int64), np.full(B, -1, np.int64),
                       np.zeros(0, np.int64))),
    ("no_repeat_ngram", lambda B: ([np.array([0, 1, 0])] * B, np.full(B, 2, np.int64))),
]

# Other parameter values, valid for every V (V = 1 included: histories of token 0).
ONE_TOKEN_STAGES = [
    ("epsilon", lambda B: (np.full(B, 0.05), np.ones(B, np.int64))),
    ("eta", lambda B: (np.full(B, 0.01), np.full(B, 2, np.int64))),
    ("top_a", lambda B: (np.full(B, 0.2), np.ones(B, np.int64))),
    ("p_less", lambda B: (np.ones(B, np.int64),)),
    ("tail_free", lambda B: (np.full(B, 0.9), np.ones(B, np.int64))),
    ("dynamic_temperature", lambda B: (np.full(B, 1.0), np.full(B, 0.5), np.ones(B))),
    ("smoothing", lambda B: (np.full(B, 0.3), np.full(B, 2.0))),
    ("mirostat", lambda B: (np.full(B, 4.0), np.full(B, 100, np.int64))),
    ("mirostat_v2", lambda B: (np.full(B, 3.0),)),
    ("adaptive_p", lambda B: (np.full(B, 0.3), np.full(B, 3.0), np.full(B, 10.0))),
    ("no_repeat_ngram", lambda B: ([np.zeros(3 - b % 2, np.int64) for b in range(B)],
                                   np.full(B, 2, np.int64))),
]

EDGE_STAGES = ROW_STAGES + ONE_TOKEN_STAGES
EDGE_IDS = [n for n, _ in ROW_STAGES] + [f"{n}-v1" for n, _ in ONE_TOKEN_STAGES]


@pytest.mark.parametrize("name,args", EDGE_STAGES, ids=EDGE_IDS)
def test_empty_batch_and_odd_layouts(ops, name, args):
    empty = np.zeros((0, 7), np.float32)
    out = getattr(ops, name)(empty, *args(0))
    assert out.shape == (0, 7) and out.dtype == np.float32
    # a read-only, non-contiguous view gives the same answer as a plain copy
    base = llm_like(3, 14, 26)[:, ::2]
    base.flags.writeable = False
    check(ops, name, base, *args(3))
    check(ops, name, np.ascontiguousarray(base), *args(3))


@pytest.mark.parametrize("name,args", ONE_TOKEN_STAGES, ids=[n for n, _ in ONE_TOKEN_STAGES])
def test_vocab_of_one_and_one_finite(ops, name, args):
    x = np.array([[0.5], [-2.0], [3e38]], np.float32)
    check(ops, name, x, *args(3))
    y = np.full((3, 9), -np.inf, np.float32)
    y[0, 0], y[1, 4], y[2, 8] = 1.0, -7.0, 3e38
    check(ops, name, y, *args(3))


def test_vocab_of_one(ops):
    x = np.array([[0.5], [-2.0], [3e38]], np.float32)
    mk = np.array([1, 2, 3])
    check(ops, "top_k", x, np.array([0, 1, 2]), mk)
    check(ops, "top_p", x, np.array([0.0, 0.5, 1.0]), mk)
    check(ops, "typical", x, np.array([0.0, 0.5, 1.0]), mk)
    check(ops, "min_p", x, np.array([0.0, 0.5, 2.0]), mk)
    check(ops, "top_n_sigma", x, np.array([0.0, 1.0, 2.0]), mk)
    check(ops, "xtc", x, np.ones(3), np.zeros(3), mk, np.arange(3, dtype=np.uint64),
          np.zeros(3, np.uint64))
    check(ops, "temperature", x, np.array([0.0, 0.5, 1e-30]))
    check(ops, "greedy", x)
    check(ops, "logit_bias", x, np.array([0, 0]), np.array([1.0, 2.0]))
    hist = [np.zeros(n, np.int64) for n in (0, 1, 50)]
    check(ops, "penalties", x, hist, 1.5, 0.5, 0.5, -1)
    check(ops, "dry", x, hist, 1.0, 1.75, 0, -1, np.zeros(0, np.int64))
    check(ops, "dry", x, hist, 1.0, 1.75, 2, 10, np.array([0]))


def test_many_rows(ops):
    """Batches large enough to be split across threads / parallel loops: every row
    still matches."""
    rng = np.random.default_rng(40)
    B, V = 37, 2000
    x = make_logits(rng, B, V, "llm")
    hist = histories(rng, B, V)
    check(ops, "top_p", x, rng.uniform(0.1, 0.99, B), np.ones(B, np.int64))
    check(ops, "top_k", x, rng.integers(1, 300, B), 2)
    check(ops, "penalties", x, hist, 1.3, 0.2, 0.1, -1)
    check(ops, "dry", x, hist, 0.8, 1.75, 2, -1, np.array([1, 2, 3]))
    for name, args in ONE_TOKEN_STAGES:
        check(ops, name, x, *args(B))


# ---------------------------------------------------------------- hypothesis


@st.composite
def tied_rows(draw):
    """Small rows with many ties and masks: values from a tiny grid."""
    B = draw(st.integers(1, 3))
    V = draw(st.integers(1, 12))
    grid = st.sampled_from([-np.inf, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    x = np.array(draw(st.lists(grid, min_size=B * V, max_size=B * V)), np.float32)
    x = x.reshape(B, V)
    for b in range(B):
        if not np.isfinite(x[b]).any():
            x[b, 0] = 0.0
    return x


@HYPOTHESIS
@given(x=tied_rows(), data=st.data())
def test_hypothesis_tied_rows(ops, x, data):
    B, V = x.shape
    frac = st.floats(0.0, 1.0, allow_nan=False)
    pr = lambda s: np.array([data.draw(s) for _ in range(B)])
    mk = pr(st.integers(1, max(3, V + 2))).astype(np.int64)
    check(ops, "top_k", x, pr(st.integers(-1, V + 1)).astype(np.int64), mk)
    check(ops, "top_p", x, pr(frac), mk)
    check(ops, "typical", x, pr(frac), mk)
    check(ops, "min_p", x, pr(frac), mk)
    check(ops, "tail_free", x, pr(frac), mk)
    check(ops, "epsilon", x, pr(st.floats(0.0, 0.6)), mk)
    check(ops, "top_a", x, pr(st.floats(0.0, 1.5)), mk)
    check(ops, "p_less", x, mk)
    check(ops, "top_n_sigma", x, pr(st.floats(0.0, 3.0)), mk)
    check(ops, "mirostat", x, pr(st.floats(0.0, 12.0)), pr(st.integers(0, V + 1)).astype(np.int64))
    check(ops, "mirostat_v2", x, pr(st.floats(0.0, 6.0)))
    check(ops, "greedy", x)
    check(ops, "temperature", x, pr(st.sampled_from([0.0, 0.5, 1.0, 2.0])))
    seeds = np.array([data.draw(st.integers(0, 2**64 - 1)) for _ in range(B)], np.uint64)
    check(ops, "xtc", x, pr(st.sampled_from([0.0, 0.5, 1.0])), pr(st.floats(0.0, 0.6)), mk,
          seeds, np.zeros(B, np.uint64))


@HYPOTHESIS
@given(hist=st.lists(st.integers(0, 3), max_size=40), allowed=st.integers(0, 4),
       last_n=st.sampled_from([-1, 3, 10, 50]), brk=st.sets(st.integers(0, 3), max_size=2))
def test_hypothesis_dry_small_alphabet(ops, hist, allowed, last_n, brk):
    h = np.array(hist, np.int64)
    breakers = np.array(sorted(brk), np.int64)
    check_dry_penalty(ops, h, 4, 1.5, 1.75, allowed, breakers, last_n)
    x = llm_like(1, 4, len(hist))
    check(ops, "dry", x, [h], 1.5, 1.75, allowed, last_n, breakers)


# ---------------------------------------------------------------- chains


CHAINS = [
    lambda: [fs.Penalties(repeat=1.3, frequency=0.1, presence=0.2, last_n=64),
             fs.DRY(0.8, breakers=[3]), fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05),
             fs.Temperature(0.8)],
    lambda: [fs.LogitBias({1: 2.0, 5: -np.inf}), fs.TopNSigma(1.5), fs.Typical(0.9),
             fs.Temperature(1.2)],
    lambda: [fs.XTC(0.5, 0.05), fs.TopP(0.9, min_keep=3), fs.Temperature(0.7)],
    lambda: [fs.Temperature(0.7), fs.TopK(50), fs.MinP(0.1)],
    lambda: [fs.DRY(1.2, allowed_length=1), fs.Penalties(repeat=1.1, last_n=-1),
             fs.Typical(0.5, min_keep=2), fs.XTC(1.0, 0.02)],
]


@pytest.mark.parametrize("make", CHAINS, ids=[f"chain{i}" for i in range(len(CHAINS))])
def test_chain_tokens_match_numpy(fast_backend, make):
    B, V = 6, 3000
    x = llm_like(B, V, 31)
    rng = np.random.default_rng(32)
    hist = [natural_history(int(rng.integers(0, 500)), V, b) for b in range(B)]
    hist[0] = repeated_history(400, V, 0)
    c = fs.SamplerChain(make(), seed=11, backend=fast_backend)
    n = fs.SamplerChain(make(), seed=11, backend="numpy")
    assert_same(c.process(x, history=hist), n.process(x, history=hist), "process")
    for step in range(8):
        tc, tn = c.sample(x, history=hist), n.sample(x, history=hist)
        np.testing.assert_array_equal(tc, tn, err_msg=f"step {step}")
        c.accept(tc)
        n.accept(tn)


# Stateful terminals (transform, draw, state update from token_logprob).
TERMINAL_CHAINS = [
    lambda: [fs.TopK(200), fs.Mirostat(tau=5.0, eta=0.1)],
    lambda: [fs.Mirostat(tau=3.0, eta=0.3, m=20)],
    lambda: [fs.Penalties(repeat=1.2, last_n=32), fs.MirostatV2(tau=4.0, eta=0.2)],
    lambda: [fs.MirostatV2(tau=np.array([1.0, 3.0, 5.0, 8.0, 2.0, 6.0]), eta=0.1)],
    lambda: [fs.MinP(0.02), fs.AdaptiveP(0.3, decay=0.9)],
    lambda: [fs.AdaptiveP(np.array([0.1, 0.5, 0.9, -1.0, 0.3, 0.7]), decay=0.5)],
    lambda: [fs.NoRepeatNGram(2), fs.Epsilon(1e-3), fs.Eta(3e-4), fs.TopA(0.1),
             fs.TailFree(0.95), fs.Smoothing(0.3), fs.DynamicTemperature(1.0, 0.5),
             fs.Mirostat(tau=6.0)],
    lambda: [fs.PLess(), fs.DynamicTemperature(0.8, 0.3, exponent=2.0), fs.AdaptiveP(0.4)],
]


@pytest.mark.parametrize("make", TERMINAL_CHAINS,
                         ids=[f"chain{i}" for i in range(len(TERMINAL_CHAINS))])
def test_stateful_chain_tokens_match_numpy(fast_backend, make):
    B, V = 6, 3000
    rng = np.random.default_rng(33)
    hist = [natural_history(int(rng.integers(10, 400)), V, b) for b in range(B)]
    hist[0] = repeated_history(300, V, 0)
    c = fs.SamplerChain(make(), seed=13, backend=fast_backend)
    n = fs.SamplerChain(make(), seed=13, backend="numpy")
    for step in range(10):
        x = llm_like(B, V, 200 + step)  # fresh logits each step, as in generation
        assert_same(c.process(x, history=hist), n.process(x, history=hist), f"step {step}")
        tc, tn = c.sample(x, history=hist), n.sample(x, history=hist)
        np.testing.assert_array_equal(tc, tn, err_msg=f"step {step}")
        c.accept(tc)
        n.accept(tn)
        hist = [np.append(h, t) for h, t in zip(hist, tc)]
