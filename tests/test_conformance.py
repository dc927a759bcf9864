"""Conformance suite: docs/spec.md §4 stage rules, on small hand-checkable cases.

The cases are drawn from llama.cpp's sampler tests (tests/test-sampling.cpp), from
transformers' logits-processor tests (tests/generation/test_logits_process.py) and
from text-generation-webui's sampler rules, restated in the form spec §4 requires.
Where the upstream rule differs from the spec, the spec wins and a comment says why.

Inputs are probabilities given as float32 log-probabilities (0 -> -inf, masked).
Every case runs ``fs.SamplerChain([...], backend=backend).process(logits)`` and
compares the kept set (finite entries) exactly and the renormalised probabilities
within 1e-6.  Expected values are written by hand or computed here in float64
from the spec formula; never by the library.

The ``backend`` fixture (tests/conftest.py) runs every case on each CPU backend.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastsample as fs


TOL = 1e-6




# ---------------------------------------------------------------- helpers


def lp(probs):
    """Probabilities -> float32 log-probabilities (0 -> -inf)."""
    a = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(a).astype(np.float32)


def softmax64(logits):
    """Float64 softmax over the finite entries of each row (masked -> 0)."""
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x)
    m = np.max(np.where(finite, x, -np.inf), axis=-1, keepdims=True)
    w = np.where(finite, np.exp(np.where(finite, x, 0.0) - m), 0.0)
    return w / w.sum(axis=-1, keepdims=True)


def process(backend, stages, logits, history=None):
    logits = np.asarray(logits)
    before = logits.copy()
    chain = fs.SamplerChain(list(stages), backend=backend)
    out = chain.process(logits, history=history)
    out = np.asarray(out)
    # the input is never modified; the output has the input's shape, in float32
    np.testing.assert_array_equal(logits, before)
    assert out.shape == logits.shape
    assert out.dtype == np.float32
    assert not np.isnan(out).any()
    assert not np.isposinf(out).any()
    return out


def check_probs(out, expected):
    """Kept set exact, renormalised probabilities within TOL."""
    expected = np.asarray(expected, dtype=np.float64)
    expected = expected / expected.sum(axis=-1, keepdims=True)
    kept = np.isfinite(out)
    np.testing.assert_array_equal(kept, expected > 0, err_msg="kept set differs")
    np.testing.assert_allclose(softmax64(out), expected, rtol=0, atol=TOL)


def check_kept(out, kept_expected):
    """Kept set exact, probabilities = input probabilities renormalised over it."""
    np.testing.assert_array_equal(np.isfinite(out), np.asarray(kept_expected, dtype=bool))


def run(backend, stages, probs, expected, history=None):
    out = process(backend, stages, lp(probs), history=history)
    check_probs(out, expected)
    return out


P4 = [0.1, 0.2, 0.3, 0.4]


def ramp_rows():
    """transformers' 'extreme logits' rows: arange(10) - 5, and the same times 100."""
    r = np.arange(10, dtype=np.float32) - 5
    return np.stack([r, r * 100]).astype(np.float32)


# ---------------------------------------------------------------- Temperature


@pytest.mark.parametrize(
    "t, expected",
    [
        (1.0, P4),  # no-op
        (0.0, [0, 0, 0, 1]),  # t <= 0: greedy
        (-1.0, [0, 0, 0, 1]),
        (0.5, [0.01, 0.04, 0.09, 0.16]),  # p ** (1/t), renormalised
        (2.0, np.sqrt(P4)),
    ],
)
def test_temperature(backend, t, expected):
    run(backend, [fs.Temperature(t)], P4, expected)


def test_temperature_greedy_keeps_first_maximum(backend):
    # t <= 0 keeps only the *first* maximum, even when the maximum is tied.
    run(backend, [fs.Temperature(0.0)], [0.1, 0.4, 0.1, 0.4], [0, 1, 0, 0])


def test_temperature_divides_logits(backend):
    x = np.array([1.0, -2.0, 0.5, -np.inf], dtype=np.float32)
    out = process(backend, [fs.Temperature(0.5)], x)
    np.testing.assert_allclose(out[:3], x[:3] / 0.5, rtol=1e-6)
    assert out[3] == -np.inf


# ---------------------------------------------------------------- DynamicTemperature


def _dyn_expected(probs, t, rng_, exponent):
    l = lp(probs).astype(np.float64)
    p = softmax64(l)
    nz = p > 0
    n = nz.sum()
    h = -(p[nz] * np.log(p[nz])).sum()
    lo, hi = max(0.0, t - rng_), t + rng_
    T = lo + (hi - lo) * (h / math.log(n)) ** exponent
    return softmax64(np.where(nz, l / T, -np.inf))


@pytest.mark.parametrize(
    "probs, t, rng_, exponent",
    [
        (P4, 1.0, 0.5, 1.0),
        (P4, 1.0, 0.5, 2.0),
        (P4, 0.7, 1.0, 1.0),  # lo clamped at 0
        ([0.1, 0.2, 0.3, 0.4, 0.0], 1.0, 0.5, 1.0),  # n counts unmasked tokens only
        ([0.7, 0.2, 0.1, 0.0, 0.0, 0.0], 0.8, 0.6, 0.5),
    ],
)
def test_dynamic_temperature(backend, probs, t, rng_, exponent):
    run(backend, [fs.DynamicTemperature(t, rng_, exponent=exponent)], probs,
        _dyn_expected(probs, t, rng_, exponent))


def test_dynamic_temperature_range_zero_is_plain_t(backend):
    # llama.cpp temp_ext(t, delta=0) == temp(t)
    run(backend, [fs.DynamicTemperature(1.0, 0.0)], P4, P4)
    run(backend, [fs.DynamicTemperature(0.0, 0.0)], P4, [0, 0, 0, 1])
    run(backend, [fs.DynamicTemperature(0.5, 0.0)], P4, [0.01, 0.04, 0.09, 0.16])
    run(backend, [fs.DynamicTemperature(0.5, -1.0)], P4, [0.01, 0.04, 0.09, 0.16])


def test_dynamic_temperature_single_token_is_plain_t(backend):
    # n <= 1: plain t (l / t on the one finite logit)
    x = np.array([-np.inf, 1.5, -np.inf], dtype=np.float32)
    out = process(backend, [fs.DynamicTemperature(0.5, 0.4)], x)
    np.testing.assert_array_equal(np.isfinite(out), [False, True, False])
    np.testing.assert_allclose(out[1], 3.0, rtol=1e-6)


# ---------------------------------------------------------------- TopK


@pytest.mark.parametrize(
    "k, expected",
    [
        (1, [0, 0, 0, 1]),
        (3, [0, 0.2, 0.3, 0.4]),
        (4, P4),  # k >= unmasked count: no-op
        (10, P4),
        (0, P4),  # k <= 0: no-op
        (-1, P4),
    ],
)
def test_top_k(backend, k, expected):
    run(backend, [fs.TopK(k)], P4, expected)


def test_top_k_ties_kept(backend):
    # keep l >= the k-th largest (ties at the cut kept): 3 tokens for k = 2
    run(backend, [fs.TopK(2)], [0.1, 0.3, 0.3, 0.3], [0, 0.3, 0.3, 0.3])
    run(backend, [fs.TopK(1)], [0.5, 0.5, 0.0, 0.0], [0.5, 0.5, 0, 0])


def test_top_k_counts_unmasked_only(backend):
    # 2 unmasked tokens, k = 2: no-op; k = 1 keeps the max
    run(backend, [fs.TopK(2)], [0.0, 0.3, 0.0, 0.7], [0, 0.3, 0, 0.7])
    run(backend, [fs.TopK(1)], [0.0, 0.3, 0.0, 0.7], [0, 0, 0, 1])


def test_top_k_min_keep(backend):
    run(backend, [fs.TopK(1, min_keep=3)], P4, [0, 0.2, 0.3, 0.4])
    # transformers: uniform rows are left alone, ramp rows keep min_keep = 3
    uni = np.full((2, 5), np.log(0.2), dtype=np.float32)
    out = process(backend, [fs.TopK(1, min_keep=3)], uni)
    assert np.isfinite(out).all()
    ramp = np.tile(np.arange(5, dtype=np.float32), (2, 1))
    out = process(backend, [fs.TopK(1, min_keep=3)], ramp)
    np.testing.assert_array_equal(np.isfinite(out).sum(-1), [3, 3])


def test_top_k_transformers_ramp(backend):
    r = np.tile(np.arange(10, dtype=np.float32), (2, 1))
    r[1, :5] += 10
    out = process(backend, [fs.TopK(3)], r)
    check_kept(out, [[0] * 7 + [1] * 3, [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]])


# ---------------------------------------------------------------- TopP


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.0, [0, 0, 0, 1]),  # min_keep = 1 keeps the max
        (0.4, [0, 0, 0, 1]),
        # 0.3 + 0.4 = 0.7 exactly: on float32 inputs the float64 sum may fall a hair
        # short of 0.7; the spec's 1e-6 tolerance counts it as reached -> 2 tokens
        (0.7, [0, 0, 0.3, 0.4]),
        (0.8, [0, 0.2, 0.3, 0.4]),
        (0.9, [0, 0.2, 0.3, 0.4]),  # 0.9 exactly: 3 tokens
        (0.95, P4),
        (1.0, P4),  # p >= 1: no-op
        (1.5, P4),
    ],
)
def test_top_p(backend, p, expected):
    run(backend, [fs.TopP(p)], P4, expected)


def test_top_p_mass_tolerance(backend):
    # within 1e-6 of the target counts as reached; 5e-6 beyond it does not
    run(backend, [fs.TopP(0.4 + 5e-7)], P4, [0, 0, 0, 1])
    run(backend, [fs.TopP(0.4 + 5e-6)], P4, [0, 0, 0.3, 0.4])
    run(backend, [fs.TopP(0.7 + 5e-7)], P4, [0, 0, 0.3, 0.4])
    run(backend, [fs.TopP(0.7 + 5e-6)], P4, [0, 0.2, 0.3, 0.4])


def test_top_p_ties_kept(backend):
    # Upstream (llama.cpp, transformers) cut inside a tie; the spec keeps every
    # token tied with the last one of the prefix.
    run(backend, [fs.TopP(0.5)], [0.2] * 5, [0.2] * 5)
    run(backend, [fs.TopP(0.5)], [0.4, 0.2, 0.2, 0.2], [0.4, 0.2, 0.2, 0.2])
    run(backend, [fs.TopP(0.4)], [0.4, 0.2, 0.2, 0.2], [1, 0, 0, 0])


def test_top_p_transformers(backend):
    x = np.stack([lp([0.3, 0.1, 0.1, 0.5]), lp([0.15, 0.3, 0.3, 0.25])])
    out = process(backend, [fs.TopP(0.8)], x)
    # row 0: 0.5 + 0.3 = 0.8 reached (within 1e-6); row 1: 0.3 + 0.3 + 0.25
    check_probs(out, [[0.3, 0, 0, 0.5], [0, 0.3, 0.3, 0.25]])


def test_top_p_min_keep(backend):
    run(backend, [fs.TopP(0.1, min_keep=2)], P4, [0, 0, 0.3, 0.4])
    # transformers: ramp row keeps 3 (0.632 + 0.233 + 0.086 >= 0.9); the x100 row
    # would keep 1, min_keep = 2 keeps 2
    out = process(backend, [fs.TopP(0.9, min_keep=2)], ramp_rows())
    np.testing.assert_array_equal(np.isfinite(out).sum(-1), [3, 2])
    np.testing.assert_array_equal(np.isfinite(out)[:, -3:].sum(-1), [3, 2])


# ---------------------------------------------------------------- MinP


@pytest.mark.parametrize(
    "p, expected",
    [
        (0.0, P4),  # p <= 0: no-op
        (0.24, P4),
        (0.26, [0, 0.2, 0.3, 0.4]),
        (0.49, [0, 0.2, 0.3, 0.4]),
        (0.51, [0, 0, 0.3, 0.4]),
        (0.74, [0, 0, 0.3, 0.4]),
        (0.76, [0, 0, 0, 1]),
        (1.0, [0, 0, 0, 1]),
        (1.05, [0, 0, 0, 1]),  # p > 1 keeps the max
    ],
)
def test_min_p(backend, p, expected):
    run(backend, [fs.MinP(p)], P4, expected)


def test_min_p_ties(backend):
    run(backend, [fs.MinP(1.0)], [0.4, 0.1, 0.4, 0.1], [0.4, 0, 0.4, 0])
    run(backend, [fs.MinP(2.0)], [0.4, 0.1, 0.4, 0.1], [0.4, 0, 0.4, 0])


def test_min_p_transformers(backend):
    x = np.stack([lp([0.9, 0.0274, 0.047, 0.0274]), lp([0.15, 0.3, 0.3, 0.25]),
                  lp([0.97, 0.01, 0.01, 0.01])])
    out = process(backend, [fs.MinP(0.05)], x)
    check_probs(out, [[0.9, 0, 0.047, 0], [0.15, 0.3, 0.3, 0.25], [1, 0, 0, 0]])
    out = process(backend, [fs.MinP(0.9, min_keep=2)], ramp_rows())
    check_kept(out, np.tile([0] * 8 + [1] * 2, (2, 1)))


# ---------------------------------------------------------------- Typical


def test_typical_llama(backend):
    run(backend, [fs.Typical(0.5)], [0.97, 0.01, 0.01, 0.01], [1, 0, 0, 0])
    run(backend, [fs.Typical(0.5)], [0.4, 0.2, 0.2, 0.2], [0, 0.2, 0.2, 0.2])


def test_typical_ties_kept(backend):
    # p = 0.3 is reached after two of the three 0.2 tokens; the third has the same
    # |-ln p - H| and is kept (upstream would drop it)
    run(backend, [fs.Typical(0.3)], [0.4, 0.2, 0.2, 0.2], [0, 0.2, 0.2, 0.2])


def test_typical_noop(backend):
    run(backend, [fs.Typical(1.0)], [0.97, 0.01, 0.01, 0.01], [0.97, 0.01, 0.01, 0.01])
    run(backend, [fs.Typical(1.2)], P4, P4)


def test_typical_order_and_mass(backend):
    # H(P4) = 1.2799; |-ln p - H|: 0.4 -> 0.363, 0.3 -> 0.076, 0.2 -> 0.330, 0.1 -> 1.023
    # order: 0.3, 0.2, 0.4, 0.1
    run(backend, [fs.Typical(0.3)], P4, [0, 0, 1, 0])
    run(backend, [fs.Typical(0.5)], P4, [0, 0.2, 0.3, 0])
    run(backend, [fs.Typical(0.5 + 5e-7)], P4, [0, 0.2, 0.3, 0])
    run(backend, [fs.Typical(0.6)], P4, [0, 0.2, 0.3, 0.4])


def test_typical_min_keep(backend):
    uni = np.full((2, 5), np.log(0.2), dtype=np.float32)
    out = process(backend, [fs.Typical(0.5, min_keep=3)], uni)
    assert np.isfinite(out).all()  # uniform: all tied, all kept
    out = process(backend, [fs.Typical(0.7, min_keep=2)], ramp_rows())
    check_kept(out, np.tile([0] * 8 + [1] * 2, (2, 1)))


# ---------------------------------------------------------------- XTC


# probability = 1.0 (upstream uses 0.99): u < 1 always, so the roll always fires
@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0.09, [0, 0, 0, 1]),
        (0.19, [0, 0, 0.2, 0.1]),
        (0.29, [0, 0.3, 0.2, 0.1]),
        (0.39, [0.4, 0.3, 0.2, 0.1]),  # only one token above: unchanged
        (0.6, [0.4, 0.3, 0.2, 0.1]),  # threshold > 0.5: no-op
    ],
)
def test_xtc(backend, threshold, expected):
    run(backend, [fs.XTC(1.0, threshold)], [0.4, 0.3, 0.2, 0.1], expected)


def test_xtc_probability_zero_noop(backend):
    run(backend, [fs.XTC(0.0, 0.09)], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1])


def test_xtc_keeps_all_tied_smallest(backend):
    run(backend, [fs.XTC(1.0, 0.19)], [0.3, 0.3, 0.2, 0.2], [0, 0, 0.2, 0.2])


def test_xtc_roll_uses_stream_1(backend):
    # one u per row from stream 1 (spec §5): fires iff u < probability
    B = 64
    seeds = np.arange(B, dtype=np.uint64) + 1000
    pos = np.arange(B, dtype=np.uint64) * 7
    u1 = fs.rng.uniform(seeds, pos, 1)
    u0 = fs.rng.uniform(seeds, pos, 0)
    fires = u1 < 0.5
    assert 0 < fires.sum() < B and np.any(fires != (u0 < 0.5))
    X = np.tile(lp([0.4, 0.3, 0.2, 0.1]), (B, 1))
    chain = fs.SamplerChain([fs.XTC(0.5, 0.19)], seed=seeds, backend=backend)
    out = chain.process(X, position=pos)
    expected = np.where(fires[:, None], [0, 0, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1])
    check_probs(out, expected)


def test_xtc_min_keep(backend):
    # only token 3 survives; min_keep = 2 adds the 2 highest logits (union, per
    # docs/internals.md). llama.cpp instead skips XTC entirely when too few remain.
    run(backend, [fs.XTC(1.0, 0.09, min_keep=2)], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0, 0.1])


# ---------------------------------------------------------------- Epsilon / Eta


def test_epsilon_transformers(backend):
    x = np.stack([lp([0.87, 0.099, 0.001, 0.03]), lp([0.4, 0.299, 0.101, 0.2])])
    out = process(backend, [fs.Epsilon(0.1)], x)
    check_probs(out, [[1, 0, 0, 0], [0.4, 0.299, 0.101, 0.2]])
    out = process(backend, [fs.Epsilon(5e-2, min_keep=2)], ramp_rows())
    np.testing.assert_array_equal(np.isfinite(out).sum(-1), [3, 2])
    np.testing.assert_array_equal(np.isfinite(out)[:, -3:].sum(-1), [3, 2])


def test_epsilon_noop(backend):
    run(backend, [fs.Epsilon(0.0)], [0.87, 0.099, 0.001, 0.03], [0.87, 0.099, 0.001, 0.03])


def test_eta_transformers(backend):
    x = np.stack([lp([0.0, 0.1, 0.8, 0.1]), lp([0.01, 0.04, 0.9, 0.05])])
    out = process(backend, [fs.Eta(0.0625)], x)
    check_probs(out, [[0, 0.1, 0.8, 0.1], [0, 0, 1, 0]])
    out = process(backend, [fs.Eta(0.1, min_keep=2)], ramp_rows())
    check_kept(out, np.tile([0] * 8 + [1] * 2, (2, 1)))


def test_eta_entropy_branch(backend):
    # 5 x 0.15 + 5 x 0.05: H = 2.1718, exp(-H) = 0.11395
    probs = [0.15] * 5 + [0.05] * 5
    # eps 0.09: eta = min(0.09, 0.3 * 0.114 = 0.0342) -> 0.05 survives (Epsilon(0.09) would not)
    run(backend, [fs.Eta(0.09)], probs, probs)
    run(backend, [fs.Epsilon(0.09)], probs, [0.15] * 5 + [0] * 5)
    # eps 0.3: eta = min(0.3, 0.5477 * 0.114 = 0.0624) -> 0.05 masked
    run(backend, [fs.Eta(0.3)], probs, [0.15] * 5 + [0] * 5)
    run(backend, [fs.Eta(0.0)], probs, probs)


# ---------------------------------------------------------------- TopNSigma


def test_top_n_sigma_llama(backend):
    run(backend, [fs.TopNSigma(1)], P4, [0, 0, 0.3, 0.4])
    run(backend, [fs.TopNSigma(0)], P4, P4)  # n <= 0: no-op
    run(backend, [fs.TopNSigma(-1)], P4, P4)
    run(backend, [fs.TopNSigma(3)], P4, P4)


def test_top_n_sigma_population_std(backend):
    # ln P4: max -0.9163, population std 0.5206 (sample std 0.6012).
    # n = 1.2: cut at -1.5410 (population) masks ln 0.2 = -1.6094; the sample std
    # would put the cut at -1.6377 and keep it.
    run(backend, [fs.TopNSigma(1.2)], P4, [0, 0, 0.3, 0.4])
    # n = 1.4: cut at -1.6452 keeps 0.2
    run(backend, [fs.TopNSigma(1.4)], P4, [0, 0.2, 0.3, 0.4])


def test_top_n_sigma_ignores_masked(backend):
    run(backend, [fs.TopNSigma(1.2)], [0.1, 0.0, 0.2, 0.3, 0.0, 0.4], [0, 0, 0, 0.3, 0, 0.4])


def test_top_n_sigma_min_keep(backend):
    run(backend, [fs.TopNSigma(1, min_keep=3)], P4, [0, 0.2, 0.3, 0.4])


# ---------------------------------------------------------------- TopA / PLess / TailFree


@pytest.mark.parametrize(
    "a, expected",
    [
        (0.0, P4),  # a <= 0: no-op
        (0.5, P4),  # threshold 0.08
        (1.0, [0, 0.2, 0.3, 0.4]),  # threshold 0.16
        (2.0, [0, 0, 0, 1]),  # threshold 0.32
    ],
)
def test_top_a(backend, a, expected):
    run(backend, [fs.TopA(a)], P4, expected)


def test_top_a_min_keep(backend):
    run(backend, [fs.TopA(2.0, min_keep=2)], P4, [0, 0, 0.3, 0.4])


def test_p_less(backend):
    # sum p^2 = 0.225: keeps 0.25 and 0.3
    run(backend, [fs.PLess()], [0.1, 0.15, 0.2, 0.25, 0.3], [0, 0, 0, 0.25, 0.3])
    # uniform: sum p^2 = 0.2 = p; the -1e-6 keeps every token
    run(backend, [fs.PLess()], [0.2] * 5, [0.2] * 5)
    run(backend, [fs.PLess(min_keep=3)], [0.1, 0.15, 0.2, 0.25, 0.3], [0, 0, 0.2, 0.25, 0.3])


# sorted p: 0.4, 0.2, 0.15, 0.12, 0.08, 0.05; second differences 0.15, 0.02, 0.01,
# 0.01 -> normalised cumsum 0.789, 0.895, 0.947, 1.0
TF_PROBS = [0.12, 0.4, 0.05, 0.2, 0.08, 0.15]


@pytest.mark.parametrize(
    "z, expected",
    [
        (0.5, [0, 1, 0, 0, 0, 0]),
        (0.85, [0, 0.4, 0, 0.2, 0, 0]),
        (0.9, [0, 0.4, 0, 0.2, 0, 0.15]),
        (0.96, [0.12, 0.4, 0, 0.2, 0, 0.15]),
        (1.0, TF_PROBS),  # z >= 1: no-op
    ],
)
def test_tail_free(backend, z, expected):
    run(backend, [fs.TailFree(z)], TF_PROBS, expected)


def test_tail_free_min_keep(backend):
    run(backend, [fs.TailFree(0.5, min_keep=3)], TF_PROBS, [0, 0.4, 0, 0.2, 0, 0.15])


# ---------------------------------------------------------------- Smoothing


def _smooth_expected(probs, factor, curve):
    l = lp(probs).astype(np.float64)
    fin = np.isfinite(l)
    m = l[fin].max()
    d = np.where(fin, l - m, 0.0)
    k, s = (3 - curve) / 2, (curve - 1) / 2
    out = m - k * factor * d**2 + s * factor * d**3
    return softmax64(np.where(fin, out, -np.inf))


@pytest.mark.parametrize(
    "probs, factor, curve",
    [
        (P4, 0.5, 1.0),
        (P4, 0.3, 2.0),
        (P4, 1.5, 3.0),
        ([0.1, 0.2, 0.3, 0.4, 0.0], 0.5, 0.5),  # masked stays masked
        ([0.05, 0.5, 0.25, 0.2], 0.25, 1.0),
    ],
)
def test_smoothing(backend, probs, factor, curve):
    run(backend, [fs.Smoothing(factor, curve=curve)], probs,
        _smooth_expected(probs, factor, curve))


def test_smoothing_noop(backend):
    run(backend, [fs.Smoothing(0.0)], P4, P4)
    run(backend, [fs.Smoothing(-1.0, curve=2.0)], P4, P4)


# ---------------------------------------------------------------- LogitBias


def test_logit_bias(backend):
    run(backend, [fs.LogitBias({0: math.log(2.0)})], P4, [0.2, 0.2, 0.3, 0.4])
    run(backend, [fs.LogitBias({3: -math.inf})], P4, [0.1, 0.2, 0.3, 0])
    run(backend, [fs.LogitBias(([0, 3], [math.log(3.0), -math.inf]))], P4, [0.3, 0.2, 0.3, 0])
    run(backend, [fs.LogitBias({})], P4, P4)


def test_logit_bias_repeated_ids_add(backend):
    # docs/internals.md: repeated ids add up
    run(backend, [fs.LogitBias(([0, 0], [math.log(2.0), math.log(2.0)]))], P4, [0.4, 0.2, 0.3, 0.4])


# ---------------------------------------------------------------- Penalties


U5 = [0.2] * 5


def _pen_expected(probs, history, repeat=1.0, frequency=0.0, presence=0.0, last_n=64):
    l = lp(probs).astype(np.float64)
    h = list(history)
    if last_n == 0:
        h = []
    elif last_n > 0:
        h = h[-last_n:]
    for tok in set(h):
        c = h.count(tok)
        l[tok] = l[tok] / repeat if l[tok] > 0 else l[tok] * repeat
        l[tok] -= c * frequency + presence
    return softmax64(l)


@pytest.mark.parametrize(
    "history, repeat, frequency, presence",
    [
        ([0], 50.0, 0.0, 0.0),
        ([0, 1, 2], 50.0, 0.0, 0.0),
        ([0, 1, 2, 0, 0], 50.0, 0.0, 0.0),
        ([0], 1.0, 5.0, 5.0),
        ([0, 1, 2], 1.0, 5.0, 5.0),
        ([0, 1, 2, 0, 0], 1.0, 5.0, 5.0),
        ([0, 1, 2, 0, 0], 1.5, 0.5, 0.25),
    ],
)
def test_penalties_llama(backend, history, repeat, frequency, presence):
    h = np.array(history, dtype=np.int64)
    run(backend, [fs.Penalties(repeat=repeat, frequency=frequency, presence=presence,
                               last_n=len(history))],
        U5, _pen_expected(U5, history, repeat, frequency, presence), history=h)


def test_penalties_llama_values(backend):
    # the literal upstream expectations (rounded to 1e-6 there)
    out = process(backend, [fs.Penalties(repeat=1.0, frequency=5.0, presence=5.0, last_n=5)],
                  lp(U5), history=np.array([0, 1, 2, 0, 0]))
    np.testing.assert_allclose(softmax64(out), [0.0, 0.000023, 0.000023, 0.499977, 0.499977],
                               atol=2e-6)


def test_penalties_last_n(backend):
    h = [0, 1, 2, 0, 0]
    for last_n in (2, 3, -1):
        run(backend, [fs.Penalties(frequency=1.0, last_n=last_n)], U5,
            _pen_expected(U5, h, frequency=1.0, last_n=last_n), history=np.array(h))
    # last_n == 0: no-op
    run(backend, [fs.Penalties(repeat=50.0, frequency=1.0, presence=1.0, last_n=0)], U5, U5,
        history=np.array(h))
    # default last_n = 64: token 0 lies further back and is not penalised
    h2 = [0] * 10 + [1] * 64
    run(backend, [fs.Penalties(presence=2.0)], U5, [1, math.exp(-2.0), 1, 1, 1],
        history=np.array(h2))


def test_penalties_neutral_noop(backend):
    run(backend, [fs.Penalties()], U5, U5, history=np.array([0, 1, 2]))


def test_penalties_transformers_sign_rule(backend):
    # repeat divides positive logits and multiplies negative ones
    x = np.full((2, 10), 0.1, dtype=np.float32)
    x[0, 0] = -0.1
    x[1, 5] = 0.4
    out = process(backend, [fs.Penalties(repeat=2.0)], x,
                  history=[np.array([0, 1]), np.array([5, 0])])
    exp = x.astype(np.float64).copy()
    exp[0, 0] = -0.2
    exp[0, 1] = 0.05
    exp[1, 0] = 0.05
    exp[1, 5] = 0.2
    np.testing.assert_allclose(out, exp, rtol=1e-6)


def test_penalties_order_repeat_then_additive(backend):
    x = np.array([0.1, 0.2, -0.3, 0.0], dtype=np.float32)
    out = process(backend, [fs.Penalties(repeat=2.0, frequency=0.5, presence=0.3)], x,
                  history=np.array([0, 0, 2]))
    exp = [0.1 / 2 - 2 * 0.5 - 0.3, 0.2, -0.3 * 2 - 0.5 - 0.3, 0.0]
    np.testing.assert_allclose(out, exp, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- DRY


def _dry_dense(V, pens):
    d = np.zeros(V)
    for t, v in pens.items():
        d[t] = v
    return d


def _dry_expected(probs, pens):
    l = lp(probs).astype(np.float64)
    return softmax64(l - _dry_dense(len(probs), pens))


# (probs, history, multiplier, base, allowed_length, last_n, breakers, {token: penalty})
DRY_CASES = [
    # llama.cpp cases
    ([0.25] * 4, [0, 1], 1.0, 1.1, 2, 4, (), {}),
    ([0.25] * 4, [0, 1, 2, 0, 1], 1.0, 1.1, 2, 5, (), {2: 1.0}),
    ([0.2] * 5, [0, 1, 3, 4, 0, 1], 1.0, 1.1, 2, 6, (3,), {}),  # 3 is a breaker: never penalised
    ([0.2] * 5, [0, 1, 2, 0, 1], 2.0, 1.1, 2, 5, (), {2: 2.0}),
    ([0.2] * 5, [0, 1, 2, 3, 4, 0, 1], 1.0, 1.1, 4, 7, (), {}),  # L = 2 < allowed_length 4
    # the base exponent: L(3) = 3, penalty = 1 * 2 ** (3 - 2)
    ([0.2] * 5, [0, 1, 2, 3, 0, 1, 2], 1.0, 2.0, 2, -1, (), {3: 2.0}),
    ([0.2] * 5, [0, 1, 2, 3, 0, 1, 2], 0.5, 1.75, 1, -1, (), {3: 0.5 * 1.75**2}),
    # last token of x is a breaker: nothing penalised
    ([0.2] * 5, [0, 1, 2, 0, 1], 1.0, 1.1, 2, -1, (1,), {}),
    # a breaker inside the match limits L: [3, 1] contains breaker 3 -> L(2) = 1
    ([0.2] * 5, [0, 3, 1, 2, 0, 3, 1], 1.0, 2.0, 1, -1, (3,), {2: 1.0}),
    ([0.2] * 5, [0, 3, 1, 2, 0, 3, 1], 1.0, 2.0, 1, -1, (), {2: 4.0}),
    # L per candidate: L(2) = 2 via [0, 1], L(3) = 1 via [1]
    ([1 / 6] * 6, [0, 1, 2, 5, 1, 3, 5, 0, 1], 1.0, 3.0, 1, -1, (), {2: 3.0, 3: 1.0}),
    # last_n window: x = [1, 2, 0, 1] -> L(2) = 1 < 2
    ([0.25] * 4, [0, 1, 2, 0, 1], 1.0, 1.1, 2, 4, (), {}),
    ([0.25] * 4, [0, 1, 2, 0, 1], 1.0, 1.1, 2, -1, (), {2: 1.0}),
    # one token repeated 50 times: L = 49
    ([0.125] * 8, [5] * 50, 0.01, 1.1, 2, -1, (), {5: 0.01 * 1.1**47}),
    # no-ops: multiplier 0, base < 1, last_n 0
    ([0.25] * 4, [0, 1, 2, 0, 1], 0.0, 1.1, 2, -1, (), {}),
    ([0.25] * 4, [0, 1, 2, 0, 1], 1.0, 0.9, 2, -1, (), {}),
    ([0.25] * 4, [0, 1, 2, 0, 1], 1.0, 1.1, 2, 0, (), {}),
]


@pytest.mark.parametrize("case", DRY_CASES, ids=[str(i) for i in range(len(DRY_CASES))])
def test_dry(backend, case):
    probs, hist, mult, base, allowed, last_n, breakers, pens = case
    stage = fs.DRY(mult, base=base, allowed_length=allowed, last_n=last_n, breakers=breakers)
    out = run(backend, [stage], probs, _dry_expected(probs, pens), history=np.array(hist))
    # logit-level: l[c] -= penalty exactly as stated
    exp = lp(probs).astype(np.float64) - _dry_dense(len(probs), pens)
    np.testing.assert_allclose(out, exp, rtol=1e-6)


@pytest.mark.parametrize("case", DRY_CASES, ids=[str(i) for i in range(len(DRY_CASES))])
def test_dry_penalty_function(backend, case):
    probs, hist, mult, base, allowed, last_n, breakers, pens = case
    V = len(probs)
    ids, vals = fs.dry_penalty(np.array(hist), V, mult, base=base, allowed_length=allowed,
                               breakers=breakers, last_n=last_n, backend=backend)
    ids = np.asarray(ids)
    vals = np.asarray(vals)
    assert ids.dtype == np.int32 and vals.dtype == np.float32
    assert np.all(np.diff(ids) > 0)  # ascending
    dense = np.zeros(V)
    dense[ids] = vals
    np.testing.assert_allclose(dense, _dry_dense(V, pens), rtol=1e-6)


@pytest.mark.parametrize("multiplier", [1.0, 10.0])
def test_dry_exponent_clamped_finite(backend, multiplier):
    # a 400-token repeat: base ** 396 overflows float32; the penalty stays finite
    V = 6
    hist = np.array([0, 1] * 200)
    x = np.array([-1.0, 0, 0, 0, 0, 0], dtype=np.float32)
    out = process(backend, [fs.DRY(multiplier, base=1.75)], x, history=hist)
    assert np.isfinite(out).all()
    assert out[0] < -1e6  # x ends [.., 0, 1]: the earlier copy is followed by 0
    np.testing.assert_array_equal(out[1:], 0.0)
    ids, vals = fs.dry_penalty(hist, V, multiplier, base=1.75, backend=backend)
    np.testing.assert_array_equal(ids, [0])
    assert np.isfinite(vals).all() and vals[0] > 1e6


def test_dry_batch_rows_independent(backend):
    hists = [np.array([0, 1, 2, 0, 1]), np.array([3, 3, 3]), np.array([], dtype=np.int64)]
    x = np.zeros((3, 4), dtype=np.float32)
    out = process(backend, [fs.DRY(1.0, base=2.0, allowed_length=1)], x, history=hists)
    # row 0: L(2) = 2 -> 2 ** 1; row 1: L(3) = 2 -> 2 ** 1; row 2: empty history
    np.testing.assert_allclose(out, [[0, 0, -2, 0], [0, 0, 0, -2], [0, 0, 0, 0]], atol=1e-6)


# ---------------------------------------------------------------- NoRepeatNGram


def test_no_repeat_ngram_transformers(backend):
    x = np.full((2, 3), np.log(1 / 3), dtype=np.float32)
    hist = [np.array([1, 1, 2, 1]), np.array([0, 1, 0, 1])]
    out = process(backend, [fs.NoRepeatNGram(2)], x, history=hist)
    check_kept(out, [[1, 0, 0], [0, 1, 1]])
    out = process(backend, [fs.NoRepeatNGram(3)], x, history=hist)
    check_kept(out, [[1, 1, 1], [0, 1, 1]])


def test_no_repeat_ngram_edges(backend):
    x = np.full(4, np.log(0.25), dtype=np.float32)
    h = np.array([0, 2])
    check_kept(process(backend, [fs.NoRepeatNGram(1)], x, history=h), [0, 1, 0, 1])
    check_kept(process(backend, [fs.NoRepeatNGram(0)], x, history=h), [1, 1, 1, 1])
    check_kept(process(backend, [fs.NoRepeatNGram(-2)], x, history=h), [1, 1, 1, 1])
    check_kept(process(backend, [fs.NoRepeatNGram(4)], x, history=h), [1, 1, 1, 1])


# ---------------------------------------------------------------- terminal stages (process)


def test_dist_and_greedy_process(backend):
    run(backend, [fs.Dist()], P4, P4)
    run(backend, [], P4, P4)  # Dist appended
    run(backend, [fs.Greedy()], [0.1, 0.4, 0.1, 0.4], [0, 1, 0, 0])


@pytest.mark.parametrize(
    "tau, expected",
    [
        (1.0, [0, 0, 0.3, 0.4]),  # mu = 2: keep -log2 p <= 2, i.e. p >= 0.25
        (1.5, [0, 0.2, 0.3, 0.4]),  # mu = 3: p >= 0.125
        (0.1, [0, 0, 0, 1]),  # mu = 0.2: none; at least the max
        (5.0, P4),
    ],
)
def test_mirostat_v2_process(backend, tau, expected):
    run(backend, [fs.MirostatV2(tau=tau, eta=0.1)], P4, expected)


def _mirostat_k(probs, mu, m=100):
    p = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    p = p[p > 0]
    n = len(p)
    V = len(probs)
    i = np.arange(min(m, n) - 1)
    t = np.log((i + 2) / (i + 1))
    b = np.log(p[i] / p[i + 1])
    s = (t * b).sum() / (t * t).sum()
    e = s - 1
    return max(int(((e * 2**mu) / (1 - V ** (-e))) ** (1 / s)), 1)


@pytest.mark.parametrize(
    "tau, k, expected",
    [
        (0.5, 1, [0, 0, 0, 1]),  # k = 1.30
        (1.0, 3, [0, 0.2, 0.3, 0.4]),  # k = 3.19
        (1.5, 7, P4),  # k = 7.82
    ],
)
def test_mirostat_v1_process(backend, tau, k, expected):
    assert _mirostat_k(P4, 2 * tau) == k  # the hand numbers above
    run(backend, [fs.Mirostat(tau=tau, eta=0.1, m=100)], P4, expected)


def _adaptive_expected(probs, target):
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    d = np.abs(p - target) / 0.3  # state at equilibrium: tau' = target
    return softmax64(np.where(p > 0, 5 - 10 * d**2 / (1 + d), -np.inf))


@pytest.mark.parametrize("target", [0.25, 0.1, 0.6])
def test_adaptive_p_process(backend, target):
    run(backend, [fs.AdaptiveP(target)], P4, _adaptive_expected(P4, target))


def test_adaptive_p_noop(backend):
    run(backend, [fs.AdaptiveP(-1.0)], P4, P4)


# ---------------------------------------------------------------- chains and per-row parameters


def test_stage_sees_renormalised_p(backend):
    # after TopK(2) the survivors have p = 3/7, 4/7 > 0.35 (unrenormalised 0.3 < 0.35)
    run(backend, [fs.TopK(2), fs.Epsilon(0.35)], P4, [0, 0, 0.3, 0.4])
    # TopP after TopK: renormalised 0.571 >= 0.55 -> 1 token
    run(backend, [fs.TopK(2), fs.TopP(0.55)], P4, [0, 0, 0, 1])


def test_llama_default_chain(backend):
    run(backend, [fs.TopK(3), fs.TopP(0.8), fs.MinP(0.6), fs.Temperature(0.5)], P4,
        [0, 0, 0.09, 0.16])


def test_per_row_parameters(backend):
    x = np.stack([lp(P4)] * 3)
    out = process(backend, [fs.TopK(np.array([1, 3, 0]))], x)
    check_probs(out, [[0, 0, 0, 1], [0, 0.2, 0.3, 0.4], P4])
    out = process(backend, [fs.TopP(np.array([0.7, 1.0, 0.8]))], x)
    check_probs(out, [[0, 0, 0.3, 0.4], P4, [0, 0.2, 0.3, 0.4]])
    out = process(backend, [fs.MinP(np.array([0.0, 0.51, 0.76]))], x)
    check_probs(out, [P4, [0, 0, 0.3, 0.4], [0, 0, 0, 1]])
    out = process(backend, [fs.Temperature(np.array([1.0, 0.0, 0.5]))], x)
    check_probs(out, [P4, [0, 0, 0, 1], [0.01, 0.04, 0.09, 0.16]])
    out = process(backend, [fs.TopK(1, min_keep=np.array([1, 2, 4]))], x)
    check_probs(out, [[0, 0, 0, 1], [0, 0, 0.3, 0.4], P4])


def test_batch_rows_match_single_rows(backend):
    rows = [lp(P4), lp([0.4, 0.3, 0.2, 0.1]), lp([0.25] * 4), lp([0.7, 0.0, 0.2, 0.1])]
    stages = [fs.TopK(3), fs.TopP(0.9), fs.MinP(0.2), fs.Temperature(0.7)]
    batch = process(backend, stages, np.stack(rows))
    for i, r in enumerate(rows):
        single = process(backend, stages, r)
        np.testing.assert_array_equal(batch[i], single)
