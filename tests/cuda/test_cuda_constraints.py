"""Token constraints on cuda (docs/spec.md §10): the packed bitmask
(``fs.apply_token_bitmask``, ``fs.sample``/``SamplerChain`` with ``bitmask=``) and the
AllowedTokens / BadWords / MinTokens kernels, against the numpy reference: identical
masks and tokens, host and device inputs, invalid rows and bad input."""

import numpy as np
import pytest
from cuda_helpers import host

import fastsample as fs
from fastsample import bitmask as fsbm
from fastsample import reference, registry, workloads


def _mask(rng, R, V, density):
    W = (V + 31) // 32
    bits = rng.random((R, W * 32)) < density
    bits[:, 0] = True
    words = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little").view("<u4")
    return np.ascontiguousarray(words.astype(np.uint32)).view(np.int32)


def _ref_masked(x, bm, rows):
    m, r = fsbm.as_bitmask(bm, x.shape[0], x.shape[1], rows)
    return reference.apply_token_bitmask(x, m, r)


@pytest.mark.parametrize("V", [1, 33, 300])
def test_apply_matches_reference(dev, V):
    rng = np.random.default_rng(V)
    x = workloads.llm_like(3, V, 1)
    x[1, ::3] = -np.inf
    bm = _mask(rng, 2, V, 0.3)
    rows = np.array([1, -1, 0])
    want = _ref_masked(x, bm, rows)
    np.testing.assert_array_equal(host(fs.apply_token_bitmask(dev(x), bm, rows)), want)
    np.testing.assert_array_equal(host(fs.apply_token_bitmask(dev(x), dev(bm), rows)), want)
    d = dev(x)
    assert fs.apply_token_bitmask(d, bm, rows, out=d) is d   # in place
    np.testing.assert_array_equal(host(d), want)
    ops = registry.load("cuda")
    m, r = fsbm.as_bitmask(bm, 3, V, rows)
    np.testing.assert_array_equal(ops.apply_token_bitmask(x, m, r), want)   # host in, host out


@pytest.mark.parametrize("params", [dict(top_k=10, top_p=0.9, min_p=0.05, temperature=0.8),
                                    dict(temperature=1.0), dict(temperature=0.0),
                                    dict(top_k=5, temperature=0.7, temperature_last=False)])
def test_sample_matches_reference(dev, params):
    rng = np.random.default_rng(3)
    V = 200
    x = workloads.llm_like(3, V, 5)
    bm = _mask(rng, 2, V, 0.2)
    rows = np.array([0, 1, -1])
    want = fs.sample(_ref_masked(x, bm, rows), seed=[1, 2, 3], position=4, backend="numpy",
                     **params)
    got = fs.sample(dev(x), seed=[1, 2, 3], position=4, bitmask=bm, bitmask_rows=rows, **params)
    np.testing.assert_array_equal(host(got), want)
    got = fs.sample(dev(x[0]), seed=1, position=4, bitmask=bm[0], **params)
    assert got == int(want[0])


def test_invalid_rows(dev):
    V = 64
    x = workloads.llm_like(3, V, 2)
    x[2, 5] = np.nan   # disallowed, still invalid input
    bm = np.full((3, 2), -1, np.int32)
    bm[1] = 0
    bm[2, 0] = ~(1 << 5)
    with pytest.raises(ValueError, match=r"rows \[1, 2\]"):
        fs.sample(dev(x), bitmask=bm)
    got = host(fs.sample(dev(x), bitmask=bm, on_invalid="flag", seed=4))
    assert got[1] == -1 and got[2] == -1
    assert got[0] == fs.sample(x[0], seed=4, backend="numpy")


def test_chain_with_bitmask(dev):
    rng = np.random.default_rng(9)
    V = 150
    stages = lambda: [fs.Penalties(1.3, last_n=8), fs.TopK(20), fs.TopP(0.9),
                      fs.Temperature(0.8)]
    gpu = fs.SamplerChain(stages(), seed=[3, 4], backend="cuda")
    ref = fs.SamplerChain(stages(), seed=[3, 4], backend="numpy")
    for step in range(3):
        x = workloads.llm_like(2, V, 10 + step)
        bm = _mask(rng, 2, V, 0.3)
        want = ref.sample(x, bitmask=bm)
        got = host(gpu.sample(dev(x), bitmask=bm))
        np.testing.assert_array_equal(got, want)
        out = host(gpu.process(dev(x), bitmask=bm))
        np.testing.assert_array_equal(np.isfinite(out), np.isfinite(ref.process(x, bitmask=bm)))
        gpu.accept(got)
        ref.accept(want)


def test_bad_bitmask(dev):
    x = dev(workloads.llm_like(2, 100, 0))
    with pytest.raises(TypeError, match="int32"):
        fs.sample(x, bitmask=dev(np.zeros((2, 4), np.int64)))
    with pytest.raises(ValueError, match="needs ceil"):
        fs.sample(x, bitmask=dev(np.zeros((2, 3), np.int32)))
    with pytest.raises(ValueError, match="outside"):
        fs.sample(x, bitmask=np.zeros((2, 4), np.int32), bitmask_rows=[0, 2])


def test_constraint_kernels_match_reference():
    ops = registry.load("cuda")
    rng = np.random.default_rng(1)
    V = 90
    x = workloads.llm_like(3, V, 4)
    ids = rng.integers(0, V, 7)
    np.testing.assert_array_equal(ops.allowed_tokens(x, ids), reference.allowed_tokens(x, ids))
    seqs = [[5], [1, 2], [7, 8, 9]]
    tokens = np.array([5, 1, 2, 7, 8, 9], np.int64)
    offsets = np.array([0, 1, 3, 6], np.int64)
    hist = [np.array([3, 1], np.int64), np.array([7, 8], np.int64), np.zeros(0, np.int64)]
    np.testing.assert_array_equal(ops.bad_words(x, hist, tokens, offsets),
                                  reference.bad_words(x, hist, tokens, offsets))
    assert seqs   # the sequences above, flattened
    n = np.array([2, 0, 5])
    pos = np.array([1, 0, 5], np.uint64)
    stop = np.array([0, 3])
    np.testing.assert_array_equal(ops.min_tokens(x, n, stop, pos),
                                  reference.min_tokens(x, n, stop, pos))
    y = x.copy()
    assert ops.min_tokens(y, n, stop, pos, out=y) is y   # host logits edited in place
    np.testing.assert_array_equal(y, reference.min_tokens(x, n, stop, pos))


def _constraint_chain(backend, seed):
    return fs.SamplerChain([fs.Penalties(1.2, last_n=8), fs.BadWords([[5], [1, 2], [7, 8, 9]]),
                            fs.MinTokens([2, 0], [0, 3]), fs.AllowedTokens(np.arange(0, 150, 2)),
                            fs.TopK(15), fs.Temperature(0.9)], seed=seed, backend=backend)


def test_chain_constraint_stages(dev):
    """The constraint stages in a cuda chain (run before the prelude: bans commute with
    it) give the numpy chain's tokens and masks step after step, the chain's own history
    feeding BadWords and its positions MinTokens."""
    V = 150
    gpu, ref = _constraint_chain("cuda", [1, 2]), _constraint_chain("numpy", [1, 2])
    for t in ([1, 7], [2, 8]):   # a prompt through accept
        gpu.accept(np.array(t))
        ref.accept(np.array(t))
    for step in range(3):
        x = workloads.llm_like(2, V, 30 + step)
        x[:, :10] += 6.0   # make the banned tokens likely
        want = ref.sample(x)
        got = host(gpu.sample(dev(x)))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.isfinite(host(gpu.process(dev(x)))),
                                      np.isfinite(ref.process(x)))
        gpu.accept(got)
        ref.accept(want)


def test_chain_banned_nan_is_invalid(dev):
    x = workloads.llm_like(2, 150, 3)
    x[0, 5] = np.nan   # banned by BadWords([[5]]) but still invalid input
    x[1, 1] = np.inf   # disallowed by AllowedTokens (odd id)
    with pytest.raises(ValueError, match=r"rows \[0, 1\]"):
        _constraint_chain("cuda", 0).sample(dev(x))
