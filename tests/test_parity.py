"""Chains of stages on a fast backend against the numpy reference.

Each fast backend must give identical masks, processed logits within 1e-5 (relative
to max(1, |l|)) and identical tokens for the same seed and position, over thousands
of random rows: llm_like and flat rows, ties, partly masked rows, long histories, per-row
parameters, and several steps of stateful chains.
"""

import numpy as np
import pytest

import fastsample as fs
from fastsample import workloads

VALUE_TOL = 1e-5


def _rows(rng, B, V, kind):
    seed = int(rng.integers(1 << 30))
    if kind == "llm":
        x = workloads.llm_like(B, V, seed)
    elif kind == "flat":
        x = workloads.flat(B, V, seed)
    elif kind == "ties":
        x = np.round(workloads.llm_like(B, V, seed), 0).astype(np.float32)
    else:  # partly masked
        x = workloads.llm_like(B, V, seed)
        x[rng.random((B, V)) < 0.5] = -np.inf
        x[np.arange(B), rng.integers(0, V, B)] = 0.0  # at least one finite per row
    return x


def _history(rng, B, V, L):
    alphabet = rng.integers(0, V, size=max(2, V // 8))
    return [alphabet[rng.integers(0, alphabet.size, size=int(rng.integers(0, L + 1)))]
            for _ in range(B)]


def _random_stage(rng, B, V):
    """One random non-terminal stage with scalar or per-row parameters."""
    def per_row(lo, hi, integer=False):
        if rng.random() < 0.5:
            v = rng.uniform(lo, hi, B)
            return np.floor(v).astype(np.int64) if integer else v
        v = float(rng.uniform(lo, hi))
        return int(v) if integer else v

    mk = int(rng.integers(1, 4))
    choices = [
        lambda: fs.TopK(per_row(-2, 60, True), min_keep=mk),
        lambda: fs.TopP(per_row(0.0, 1.05), min_keep=mk),
        lambda: fs.MinP(per_row(0.0, 0.3), min_keep=mk),
        lambda: fs.Typical(per_row(0.2, 1.05), min_keep=mk),
        lambda: fs.TopNSigma(per_row(-0.5, 3.0), min_keep=mk),
        lambda: fs.XTC(per_row(0.0, 1.0), per_row(0.01, 0.6), min_keep=mk),
        lambda: fs.Epsilon(per_row(0.0, 0.05), min_keep=mk),
        lambda: fs.Eta(per_row(0.0, 0.05), min_keep=mk),
        lambda: fs.TopA(per_row(0.0, 1.0), min_keep=mk),
        lambda: fs.PLess(min_keep=mk),
        lambda: fs.TailFree(per_row(0.5, 1.05), min_keep=mk),
        lambda: fs.Temperature(per_row(-0.2, 2.0)),
        lambda: fs.DynamicTemperature(per_row(0.5, 1.5), per_row(-0.1, 0.5), per_row(0.5, 2.0)),
        lambda: fs.Smoothing(per_row(-0.1, 0.5), per_row(0.5, 3.0)),
        lambda: fs.Penalties(per_row(0.8, 1.5), per_row(0.0, 0.5), per_row(0.0, 0.5),
                             per_row(-1, 40, True)),
        lambda: fs.DRY(per_row(0.0, 2.0), per_row(1.0, 2.5), per_row(0, 4, True),
                       per_row(-1, 40, True), breakers=[int(rng.integers(0, min(V, 8)))]),
        lambda: fs.NoRepeatNGram(per_row(0, 4, True)),
        lambda: fs.LogitBias({int(rng.integers(0, min(V, 8))): float(rng.normal()),
                              int(rng.integers(0, min(V, 8))): -np.inf}),
    ]
    return choices[int(rng.integers(len(choices)))]()


def _terminal(rng):
    return [fs.Dist(), fs.Greedy(), fs.Mirostat(tau=float(rng.uniform(2, 6))),
            fs.MirostatV2(tau=float(rng.uniform(2, 6))),
            fs.AdaptiveP(float(rng.uniform(-0.1, 0.9)))][int(rng.integers(5))]


def _assert_same_logits(got, want):
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    f = np.isfinite(want)
    err = np.abs(got[f].astype(np.float64) - want[f]) / np.maximum(1.0, np.abs(want[f]))
    assert err.size == 0 or err.max() <= VALUE_TOL


@pytest.mark.parametrize("kind", ["llm", "flat", "ties", "masked"])
def test_random_chains_match_reference(fast_backend, kind):
    rng = np.random.default_rng(["llm", "flat", "ties", "masked"].index(kind))
    rows = 0
    for trial in range(60):
        B = int(rng.integers(1, 6))
        V = int(rng.choice([1, 2, 7, 64, 300, 2048]))
        x = _rows(rng, B, V, kind)
        stages = [_random_stage(rng, B, V) for _ in range(int(rng.integers(1, 4)))]
        stages.append(_terminal(rng))
        hist = _history(rng, B, V, 60)
        seed = rng.integers(0, 2**63, B, dtype=np.uint64)
        ref = fs.SamplerChain(stages, seed=seed, backend="numpy", on_invalid="flag")
        got = fs.SamplerChain(stages, seed=seed, backend=fast_backend, on_invalid="flag")
        for step in range(3):  # stateful terminals evolve; they must evolve alike
            _assert_same_logits(got.process(x, history=hist), ref.process(x, history=hist))
            t_ref = ref.sample(x, history=hist)
            t_got = got.sample(x, history=hist)
            assert np.array_equal(t_got, t_ref), (trial, step, stages)
            ref.accept(t_ref)
            got.accept(t_got)
            rows += B
    assert rows >= 300


@pytest.mark.parametrize("kind", ["llm", "flat", "ties", "masked"])
def test_sample_matches_reference_on_thousands_of_rows(fast_backend, kind):
    rng = np.random.default_rng(100 + ["llm", "flat", "ties", "masked"].index(kind))
    B, V = 512, 1024
    x = _rows(rng, B, V, kind)
    params = dict(
        temperature=rng.uniform(-0.1, 1.5, B), top_k=rng.integers(-1, 80, B),
        top_p=rng.uniform(0.0, 1.05, B), min_p=rng.uniform(0.0, 0.2, B),
        min_keep=rng.integers(1, 4, B), seed=rng.integers(0, 2**63, B, dtype=np.uint64),
    )
    for position in range(4):
        for order in (True, False):
            want = fs.sample(x, position=position, temperature_last=order, backend="numpy", **params)
            got = fs.sample(x, position=position, temperature_last=order, backend=fast_backend, **params)
            assert np.array_equal(got, want)


def test_long_histories_match_reference(fast_backend):
    rng = np.random.default_rng(7)
    B, V = 3, 4096
    x = workloads.llm_like(B, V, 3)
    hist = [rng.integers(0, 50, 20000), np.full(30000, 5), rng.integers(0, V, 5000)]
    stages = [fs.Penalties(1.2, 0.1, 0.2, last_n=-1), fs.DRY(0.8, 1.75, 2, breakers=[3]),
              fs.NoRepeatNGram(3)]
    want = fs.SamplerChain(stages, seed=1, backend="numpy").process(x, history=hist)
    got = fs.SamplerChain(stages, seed=1, backend=fast_backend).process(x, history=hist)
    _assert_same_logits(got, want)


FUSABLE = [
    [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
    [fs.Temperature(0.7), fs.TopK(20), fs.TopP(0.9)],
    [fs.MinP(0.1, min_keep=3), fs.Temperature(1.3)],
    [fs.TopP(0.5)],
    [],
]
NOT_FUSABLE = [
    [fs.TopP(0.9), fs.TopK(5)],                      # not llama.cpp's order
    [fs.TopK(40, min_keep=2), fs.TopP(0.9)],          # two different min_keep
    [fs.TopK(40), fs.Temperature(0.8), fs.MinP(0.1)],  # temperature in the middle
    [fs.TopK(40), fs.Greedy()],                       # another terminal
    [fs.Penalties(1.1), fs.TopK(40)],                 # another stage
]


@pytest.mark.parametrize("stages", FUSABLE + NOT_FUSABLE, ids=repr)
def test_chains_fused_or_not_draw_like_the_reference(fast_backend, stages):
    """Chains that are fs.sample's chain run fused; the token never changes."""
    B, V = 64, 2048
    x = workloads.llm_like(B, V, 11)
    seeds = np.arange(B, dtype=np.uint64)
    got_chain = fs.SamplerChain(stages, seed=seeds, backend=fast_backend)
    assert (got_chain._fused is not None) == (stages in FUSABLE)
    ref_chain = fs.SamplerChain(stages, seed=seeds, backend="numpy")
    for _ in range(3):
        want = ref_chain.sample(x)
        got = got_chain.sample(x)
        assert np.array_equal(got, want)
        ref_chain.accept(want)
        got_chain.accept(got)
