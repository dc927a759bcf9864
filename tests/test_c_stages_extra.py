"""The remaining C stage kernels (``fastsample.c_backend.stages_extra``) against the
numpy reference: epsilon, eta, top_a, p_less, tail_free, dynamic_temperature,
smoothing, mirostat, mirostat_v2, adaptive_p, no_repeat_ngram.

Every function runs on many random inputs (llm_like / flat rows, ties, partly
masked and all-but-one masked rows, constant and huge rows, V = 1, B = 0, per-row
and scalar parameters, min_keep 1..3 and above the survivors, histories of small
alphabets and natural text) and is compared with ``fastsample.reference``:

- masks identical: exactly the same ``-inf`` entries;
- finite values within ``|a - b| <= 1e-5 * max(1, |b|)``;
- the input array is never written.

Chains ending in Mirostat / MirostatV2 / AdaptiveP (stateful terminals: transform,
draw, state update from ``token_logprob``) through ``SamplerChain(..., backend="c")``
must give the same tokens as ``backend="numpy"`` step after step. Skipped when the C
backend is unavailable, unless FASTSAMPLE_REQUIRE_C is set (CI). Seeded; no clocks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastsample as fs
from fastsample import reference as R
from fastsample.workloads import flat, llm_like, natural_history, repeated_history

if not fs.backends()["c"] and not os.environ.get("FASTSAMPLE_REQUIRE_C"):
    pytest.skip(f"C backend unavailable: {fs.backends()['c'].reason}", allow_module_level=True)

# the same helpers and input generators as the first C stage tests
from test_c_stages import assert_same, cases, histories, make_logits, min_keeps, per_row

from fastsample.c_backend import stages_extra as S


def check(name, logits, *args):
    """Run the C kernel and the reference on the same input; compare; input untouched.

    A scalar per-row parameter goes to C as is and to the reference as a (B,) array.
    """
    before = logits.copy()
    got = getattr(S, name)(logits, *args)
    assert np.array_equal(logits, before), f"{name} wrote its input"
    B = logits.shape[0]
    ref_args = [np.full(B, a) if isinstance(a, (int, float)) else a for a in args]
    assert_same(got, getattr(R, name)(logits, *ref_args), name)
    return got


# ---------------------------------------------------------------- truncations by p


def test_epsilon():
    for rng, B, V, x in cases(80, 101):
        eps = rng.choice([-0.1, 0.0, 1e-4, 0.01, 0.1, 0.5, 1.0], size=B)
        eps = np.where(rng.random(B) < 0.4, rng.uniform(0, 0.3, B), eps)
        check("epsilon", x, eps, min_keeps(rng, B, V))


def test_eta():
    for rng, B, V, x in cases(80, 102):
        eps = rng.choice([-1.0, 0.0, 1e-4, 3e-4, 0.01, 0.2, 2.0], size=B)
        eps = np.where(rng.random(B) < 0.4, rng.uniform(0, 0.1, B), eps)
        check("eta", x, eps, min_keeps(rng, B, V))


def test_top_a():
    for rng, B, V, x in cases(80, 103):
        a = rng.choice([-0.5, 0.0, 0.1, 0.2, 1.0, 5.0], size=B)
        a = np.where(rng.random(B) < 0.4, rng.uniform(0, 2, B), a)
        check("top_a", x, a, min_keeps(rng, B, V))


def test_p_less():
    for rng, B, V, x in cases(80, 104):
        check("p_less", x, min_keeps(rng, B, V))


def test_tail_free():
    for rng, B, V, x in cases(90, 105):
        z = rng.choice([-0.1, 0.0, 0.5, 0.9, 0.95, 0.999, 1.0, 1.5], size=B)
        z = np.where(rng.random(B) < 0.4, rng.uniform(0, 1, B), z)
        check("tail_free", x, z, min_keeps(rng, B, V))


def test_truncations_large_vocab():
    x = np.concatenate([llm_like(2, 128256, 110), flat(1, 128256, 111)])
    x[1, ::5] = -np.inf
    mk = np.array([1, 3, 2])
    check("epsilon", x, np.array([3e-4, 1e-6, 7e-6]), mk)
    check("eta", x, np.array([3e-4, 1e-3, 1e-5]), mk)
    check("top_a", x, np.array([0.2, 0.01, 1.0]), mk)
    check("p_less", x, mk)
    check("tail_free", x, np.array([0.95, 0.5, 0.9]), mk)
    check("mirostat", x, np.array([10.0, 3.0, 16.0]), np.array([100, 2, 1000]))
    check("mirostat_v2", x, np.array([10.0, 3.0, 16.9]))


# ---------------------------------------------------------------- logit transforms


def test_dynamic_temperature():
    for rng, B, V, x in cases(80, 106):
        t = rng.choice([0.0, 0.5, 1.0, 1.5], size=B)
        rng_ = rng.choice([-0.5, 0.0, 0.3, 1.0, 2.0], size=B)
        expo = per_row(rng, [0.5, 1.0, 2.0, 3.0], B)
        check("dynamic_temperature", x, t, rng_, expo)


def test_smoothing():
    for rng, B, V, x in cases(80, 107):
        factor = rng.choice([-1.0, 0.0, 0.1, 0.3, 1.0, 5.0], size=B)
        curve = per_row(rng, [0.0, 1.0, 2.0, 3.0, 4.5], B)
        check("smoothing", x, factor, curve)


def test_adaptive_p():
    for rng, B, V, x in cases(80, 108):
        target = rng.choice([-0.1, 0.0, 0.1, 0.3, 0.5, 0.9, 1.0], size=B)
        decay = rng.choice([0.0, 0.5, 0.9, 0.99], size=B)
        ema_weight = 1.0 / (1.0 - decay) * rng.uniform(0.5, 1.0, B)
        ema_sum = ema_weight * rng.uniform(0.0, 1.0, B)
        check("adaptive_p", x, target, ema_sum, ema_weight)


def test_transforms_large_vocab():
    x = np.concatenate([llm_like(2, 128256, 112), flat(1, 128256, 113)])
    x[0, 1::3] = -np.inf
    check("dynamic_temperature", x, np.array([1.0, 0.7, 1.5]), np.array([0.5, 0.7, 1.0]),
          np.array([1.0, 2.0, 0.5]))
    check("smoothing", x, np.array([0.3, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    check("adaptive_p", x, np.array([0.3, 0.05, 0.9]), np.array([3.0, 0.1, 9.0]),
          np.array([10.0, 2.0, 10.0]))


# ---------------------------------------------------------------- Mirostat


def test_mirostat():
    for rng, B, V, x in cases(90, 109):
        mu = rng.choice([-1.0, 0.0, 2.0, 6.0, 10.0, 20.0, 1e3], size=B)
        mu = np.where(rng.random(B) < 0.4, rng.uniform(0, 15, B), mu)
        m = rng.choice([1, 2, 3, 5, 100, V, V + 5], size=B).astype(np.int64)
        check("mirostat", x, mu, m)


def test_mirostat_v2():
    for rng, B, V, x in cases(80, 110):
        mu = rng.choice([-1.0, 0.0, 0.5, 2.0, 6.0, 10.0, 1e3], size=B)
        mu = np.where(rng.random(B) < 0.4, rng.uniform(0, 15, B), mu)
        check("mirostat_v2", x, mu)


# ---------------------------------------------------------------- no-repeat n-gram


def test_no_repeat_ngram():
    for rng, B, V, x in cases(90, 111, vs=(1, 3, 5, 8, 50, 300)):
        hist = histories(rng, B, V)
        n = rng.choice([-1, 0, 1, 2, 3, 4, 7], size=B).astype(np.int64)
        check("no_repeat_ngram", x, hist, n)
        check("no_repeat_ngram", x, hist, int(n[0]))


def test_no_repeat_ngram_long():
    V = 128256
    x = llm_like(3, V, 114)
    hist = [repeated_history(32768, V, 5), natural_history(32768, V, 6),
            np.tile(np.arange(7), 3000)]
    check("no_repeat_ngram", x, hist, np.array([2, 3, 5]))
    check("no_repeat_ngram", x, hist, 1)


def test_no_repeat_ngram_bad_history():
    x = llm_like(2, 10, 0)
    for h in ([np.array([1, 10, 1]), np.array([3])], [np.array([1, 2]), np.array([-1, 2])]):
        with pytest.raises(ValueError, match="outside"):
            S.no_repeat_ngram(x, h, 2)
    with pytest.raises(ValueError, match="rows"):
        S.no_repeat_ngram(x, [np.array([1, 2])], 2)
    # an inactive n never reads the history (the reference does not either)
    check("no_repeat_ngram", x, [np.array([1, 2]), np.array([3])], 5)


# ---------------------------------------------------------------- edges


EXTRA_STAGES = [
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
    # token 0 only: valid for every V used here (V = 1 included)
    ("no_repeat_ngram", lambda B: ([np.zeros(3 - b % 2, np.int64) for b in range(B)],
                                   np.full(B, 2, np.int64))),
]


@pytest.mark.parametrize("name,args", EXTRA_STAGES, ids=[n for n, _ in EXTRA_STAGES])
def test_empty_batch_and_odd_layouts(name, args):
    empty = np.zeros((0, 7), np.float32)
    out = getattr(S, name)(empty, *args(0))
    assert out.shape == (0, 7) and out.dtype == np.float32
    # a read-only, non-contiguous view gives the same answer as a plain copy
    base = llm_like(3, 14, 26)[:, ::2]
    base.flags.writeable = False
    check(name, base, *args(3))
    check(name, np.ascontiguousarray(base), *args(3))


@pytest.mark.parametrize("name,args", EXTRA_STAGES, ids=[n for n, _ in EXTRA_STAGES])
def test_vocab_of_one_and_one_finite(name, args):
    x = np.array([[0.5], [-2.0], [3e38]], np.float32)
    check(name, x, *args(3))
    y = np.full((3, 9), -np.inf, np.float32)
    y[0, 0], y[1, 4], y[2, 8] = 1.0, -7.0, 3e38
    check(name, y, *args(3))


@pytest.mark.parametrize("name,args", EXTRA_STAGES, ids=[n for n, _ in EXTRA_STAGES])
def test_many_rows_use_threads(name, args):
    rng = np.random.default_rng(40)
    x = make_logits(rng, 37, 2000, "llm")
    check(name, x, *args(37))


def test_bad_sizes():
    x = llm_like(2, 10, 0)
    with pytest.raises(ValueError, match="per-row"):
        S.epsilon(x, np.ones(3), 1)
    with pytest.raises(ValueError, match="per-row"):
        S.mirostat(x, np.ones(2), np.ones(5, np.int64))
    with pytest.raises(ValueError, match="shape"):
        S.smoothing(x[0], 0.3, 1.0)


# ---------------------------------------------------------------- chains


def _terminal_chains():
    return [
        lambda: [fs.TopK(200), fs.Mirostat(tau=5.0, eta=0.1)],
        lambda: [fs.Mirostat(tau=3.0, eta=0.3, m=20)],
        lambda: [fs.Penalties(repeat=1.2, last_n=32), fs.MirostatV2(tau=4.0, eta=0.2)],
        lambda: [fs.MirostatV2(tau=np.array([1.0, 3.0, 5.0, 8.0, 2.0, 6.0]), eta=0.1)],
        lambda: [fs.MinP(0.02), fs.AdaptiveP(0.3, decay=0.9)],
        lambda: [fs.AdaptiveP(np.array([0.1, 0.5, 0.9, -1.0, 0.3, 0.7]), decay=0.5)],
        lambda: [fs.NoRepeatNGram(2), fs.Epsilon(1e-3), fs.Eta(3e-4), fs.TopA(0.1),
                 fs.TailFree(0.95), fs.Smoothing(0.3), fs.DynamicTemperature(1.0, 0.5),
                 fs.Mirostat(tau=6.0)],
        lambda: [fs.PLess(), fs.DynamicTemperature(0.8, 0.3, exponent=2.0),
                 fs.AdaptiveP(0.4)],
    ]


@pytest.mark.parametrize("make", _terminal_chains(),
                         ids=[f"chain{i}" for i in range(len(_terminal_chains()))])
def test_stateful_chain_tokens_match_numpy(make):
    B, V = 6, 3000
    rng = np.random.default_rng(33)
    hist = [natural_history(int(rng.integers(10, 400)), V, b) for b in range(B)]
    hist[0] = repeated_history(300, V, 0)
    c = fs.SamplerChain(make(), seed=13, backend="c")
    n = fs.SamplerChain(make(), seed=13, backend="numpy")
    for step in range(10):
        x = llm_like(B, V, 200 + step)  # fresh logits each step, as in generation
        assert_same(c.process(x, history=hist), n.process(x, history=hist), f"step {step}")
        tc, tn = c.sample(x, history=hist), n.sample(x, history=hist)
        np.testing.assert_array_equal(tc, tn, err_msg=f"step {step}")
        c.accept(tc)
        n.accept(tn)
        hist = [np.append(h, t) for h, t in zip(hist, tc)]


def test_signed_zero_logits_tie():
    """0.0 and -0.0 are equal logits: the sorts of tail-free and Mirostat must order
    them by id, as the reference's stable argsort does."""
    rng = np.random.default_rng(115)
    for _ in range(20):
        V = int(rng.integers(3, 40))
        x = rng.choice(np.array([0.0, -0.0, -1.0, -2.5], np.float32), size=(3, V))
        x = np.ascontiguousarray(x, np.float32)
        x[:, 0] = 0.0
        for z in (0.1, 0.5, 0.9, 0.99):
            check("tail_free", x, z, 1)
        check("mirostat", x, rng.uniform(0, 6, 3), np.array([2, 5, 100]))
