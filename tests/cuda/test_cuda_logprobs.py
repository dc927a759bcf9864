"""``logprobs`` on the cuda backend (simulator or GPU) against the reference (docs/spec.md §9).

Ranks, ids and the -1 / ``-inf`` / NaN pattern identical; log-probabilities within
max(1 float32 ulp, 1e-9) (device ``exp`` vs numpy's). Host inputs give numpy
results; device inputs device results, with nothing copied to the host.
"""

import numpy as np
import pytest
from numba import cuda

from fastsample import reference as ref
from fastsample import registry
from fastsample.workloads import llm_like

ops = registry.load("cuda")


def _assert_same(got, want):
    lp, rank, ids, top = got
    wlp, wrank, wids, wtop = want
    assert lp.dtype == np.float32 and rank.dtype == np.int32
    assert ids.dtype == np.int32 and top.dtype == np.float32
    np.testing.assert_array_equal(rank, wrank)
    np.testing.assert_array_equal(ids, wids)
    for g, w in ((lp, wlp), (top, wtop)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_array_equal(np.isneginf(g), np.isneginf(w))
        fin = np.isfinite(w)
        tol = np.maximum(np.spacing(np.abs(w[fin]).astype(np.float32)), 1e-9)
        assert np.all(np.abs(g[fin] - w[fin]) <= tol)


@pytest.mark.parametrize("n", [0, 3, 40])
def test_matches_reference(n):
    x = llm_like(4, 300, seed=n)
    x[1, 20:] = -np.inf          # 20 finite tokens: fewer than n = 40
    x[2, :10] = x[2, 10]         # ties at the top
    x[3, :] = -np.inf            # a flagged row
    tokens = np.array([7, 3, 4, -1])
    _assert_same(ops.logprobs(x, tokens, n), ref.logprobs(x, tokens, n))
    x[3, 5] = np.nan             # a flagged row with a NaN: top-k runs on it, unread
    _assert_same(ops.logprobs(x, tokens, n), ref.logprobs(x, tokens, n))


def test_edges():
    one = np.array([[2.5]], np.float32)
    _assert_same(ops.logprobs(one, np.array([0]), 2), ref.logprobs(one, np.array([0]), 2))
    empty = ops.logprobs(np.zeros((0, 5), np.float32), np.zeros(0, np.int32), 2)
    assert [a.shape for a in empty] == [(0,), (0,), (0, 2), (0, 2)]
    with pytest.raises(ValueError, match="token"):
        ops.logprobs(one, np.array([1]), 2)


def test_device_in_device_out():
    x = llm_like(2, 200, seed=3)
    tokens = np.array([5, 9], np.int32)
    got = ops.logprobs(cuda.to_device(x), cuda.to_device(tokens), 4)
    assert not any(isinstance(a, np.ndarray) for a in got)  # device arrays
    _assert_same([a.copy_to_host() for a in got], ref.logprobs(x, tokens, 4))


@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_on_device(mode):
    """fs.sample(device logits, logprobs=N): the device tokens of the call without
    logprobs, results on the device, equal to the numpy reference's host result."""
    import fastsample as fs
    import fastsample.gpu

    x = llm_like(3, 300, seed=1)
    W1 = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8, "seed": [1, 2, 3]}
    got = fs.sample(cuda.to_device(x), logprobs=5, logprobs_mode=mode, backend="cuda", **W1)
    want = fs.sample(x, logprobs=5, logprobs_mode=mode, backend="numpy", **W1)
    # fs.sample's device route without logprobs (gpu.sample; the reference's tokens)
    tokens = fs.gpu.sample(cuda.to_device(x), min_keep=1, position=0, temperature_last=True,
                           on_invalid="raise", backend="cuda", **W1)
    np.testing.assert_array_equal(got.tokens.copy_to_host(), tokens.copy_to_host())
    np.testing.assert_array_equal(got.tokens.copy_to_host(), want.tokens)
    _assert_same([a.copy_to_host() for a in got[1:]], want[1:])
    one = fs.sample(cuda.to_device(x[0]), logprobs=5, logprobs_mode=mode, backend="cuda",
                    **dict(W1, seed=1))
    ref_one = fs.sample(x[0], logprobs=5, logprobs_mode=mode, backend="numpy", **dict(W1, seed=1))
    assert one.tokens == ref_one.tokens and one.rank == ref_one.rank
    np.testing.assert_array_equal(one.top_ids, ref_one.top_ids)


@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_chain_sample_on_device(mode):
    """SamplerChain.sample(device logits, logprobs=N): the chain's device tokens, and
    the logprobs of the input rows (raw) or of what process gives (processed), equal to
    the numpy chain's on the host, step after step with accept."""
    import fastsample as fs

    stages = lambda: [fs.Penalties(1.2, last_n=16), fs.DRY(0.8, last_n=64), fs.TopK(30),
                      fs.TopP(0.9), fs.MinP(0.02), fs.Temperature(0.8)]
    got = fs.SamplerChain(stages(), seed=[4, 5, 6], backend="cuda")
    want = fs.SamplerChain(stages(), seed=[4, 5, 6], backend="numpy")
    hist = [[1, 2, 3, 1, 2], [7, 7, 7], [9]]
    for chain in (got, want):
        chain.load_states([{"history": h} for h in hist])
    for step in range(3):
        x = llm_like(3, 300, seed=10 + step)
        g = got.sample(cuda.to_device(x), logprobs=4, logprobs_mode=mode)
        w = want.sample(x, logprobs=4, logprobs_mode=mode)
        tokens = g.tokens.copy_to_host()
        np.testing.assert_array_equal(tokens, w.tokens)
        _assert_same([a.copy_to_host() for a in g[1:]], w[1:])
        got.accept(tokens)
        want.accept(w.tokens)
    one = fs.SamplerChain(stages(), seed=2, backend="cuda")
    ref_one = fs.SamplerChain(stages(), seed=2, backend="numpy")
    x = llm_like(1, 300, seed=3)[0]
    a = one.sample(cuda.to_device(x), logprobs=3, logprobs_mode=mode)
    b = ref_one.sample(x, logprobs=3, logprobs_mode=mode)
    assert a.tokens == b.tokens and a.rank == b.rank
    np.testing.assert_array_equal(a.top_ids, b.top_ids)


@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_with_bitmask_on_device(mode):
    """fs.sample(device logits, bitmask=..., logprobs=N): raw ignores the bitmask (the
    input rows), processed sees it; equal to the numpy reference's host result."""
    import fastsample as fs
    from fastsample.workloads import bitmask_allowing

    x = llm_like(3, 300, seed=4)
    bm = bitmask_allowing(3, 300, 0.2, 1)
    kw = {"top_k": 20, "min_p": 0.01, "temperature": 0.9, "seed": [3, 4, 5]}
    got = fs.sample(cuda.to_device(x), bitmask=bm, logprobs=4, logprobs_mode=mode,
                    backend="cuda", **kw)
    want = fs.sample(x, bitmask=bm, logprobs=4, logprobs_mode=mode, backend="numpy", **kw)
    np.testing.assert_array_equal(got.tokens.copy_to_host(), want.tokens)
    _assert_same([a.copy_to_host() for a in got[1:]], want[1:])
