"""Speculative verification on cuda (docs/spec.md §11), in the simulator or on a GPU.

The kernel ``verify_rows`` against the numpy reference on dense and compacted rows
(ragged drafts, greedy rows, q given or one-hot, positions that wrap), and
``fs.verify`` on device logits against the numpy backend for both methods, per-row
parameters, K = 0, invalid rows and bad input. Tiny shapes: the simulator runs every
thread in Python.
"""

import numpy as np
import pytest
from numba import cuda

import fastsample as fs
from fastsample import reference
from fastsample.kernels.cuda import verify as cuda_verify


def _rows(rng, R, V):
    dense = (rng.standard_normal((R, V)) * 2).astype(np.float32)
    dense[rng.random(dense.shape) < 0.6] = -np.inf
    dense[::5] = -np.inf
    dense[::5, 3] = 1.0            # one survivor: a greedy row
    ids, offs = [], [0]
    n = max(int(np.isfinite(dense).sum(1).max()), 1)
    block = np.full((R, n), -np.inf, np.float32)
    for r in range(R):
        keep = np.flatnonzero(np.isfinite(dense[r]))
        ids.append(keep)
        offs.append(offs[-1] + keep.size)
        block[r, :keep.size] = dense[r, keep]
    return dense, block, np.concatenate(ids).astype(np.int32), np.array(offs, np.int64)


@pytest.mark.parametrize("use_q", [False, True])
def test_kernel_matches_reference(use_q):
    rng = np.random.default_rng(4)
    B, K, V = 4, 3, 20
    dense, block, ids, offs = _rows(rng, B * (K + 1), V)
    d = rng.integers(0, V, (B, K)).astype(np.int32)
    d[0, 0] = int(np.argmax(dense[0]))
    q = rng.dirichlet(np.ones(V), (B, K)).astype(np.float32) if use_q else None
    n = np.array([3, 0, 2, 1])
    seed = np.arange(B, dtype=np.uint64) + np.uint64(9)
    pos = np.full(B, 2**64 - 2, np.uint64)
    want = reference.verify_rows(dense, None, None, d, q, n, seed, pos)
    for got in (cuda_verify.verify_rows(dense, None, None, d, q, n, seed, pos),
                cuda_verify.verify_rows(block, ids, offs, d, q, n, seed, pos)):
        for a, b in zip(got, want):
            assert np.array_equal(a, b)


def test_kernel_reports_bad_q():
    rng = np.random.default_rng(5)
    B, K, V = 2, 2, 8
    dense = (rng.standard_normal((B * (K + 1), V))).astype(np.float32)
    q = np.full((B, K, V), 1 / V, np.float32)
    q[1, 0, 5] = np.nan
    d = np.zeros((B, K), np.int32)
    want = reference.verify_rows(dense, None, None, d, q, np.array([2, 2]),
                                 np.arange(B, dtype=np.uint64), np.zeros(B, np.uint64))
    got = cuda_verify.verify_rows(dense, None, None, d, q, np.array([2, 2]),
                                  np.arange(B, dtype=np.uint64), np.zeros(B, np.uint64))
    assert got[2].tolist() == want[2].tolist() == [-1, 0]


@pytest.mark.parametrize("method", ["exact", "rejection"])
@pytest.mark.parametrize("case", range(3))
def test_fs_verify_on_device(method, case):
    rng = np.random.default_rng(case)
    B, K, V = 3, int(rng.integers(0, 3)), 48
    x = (rng.standard_normal((B, K + 1, V)) * 2).astype(np.float32)
    d = rng.integers(0, V, (B, K))
    plain = np.stack([fs.sample(x[:, j], seed=[1, 2, 3], position=4 + j, top_k=6,
                                backend="numpy") for j in range(K + 1)], axis=1)
    d = np.where(rng.random((B, K)) < 0.6, plain[:, :K], d)
    q = rng.dirichlet(np.ones(V), (B, K)).astype(np.float32)
    prm = {"temperature": np.array([0.8, 0.0, 1.3]), "top_k": np.array([6, 10, 0]),
           "top_p": 0.9, "min_p": np.array([0.0, 0.05, 0.1]), "seed": [1, 2, 3],
           "position": 4, "num_draft": rng.integers(0, K + 1, B), "method": method,
           "temperature_last": bool(case % 2)}
    for qq in (None, q):
        want = fs.verify(x, d, qq, backend="numpy", **prm)
        got = fs.verify(cuda.to_device(x), d, None if qq is None else cuda.to_device(qq), **prm)
        assert np.array_equal(got.tokens, want.tokens)
        assert np.array_equal(got.num_accepted, want.num_accepted)
        assert np.array_equal(got.num_emitted, want.num_emitted)


@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_invalid_rows_and_bad_input(method):
    B, K, V = 2, 2, 16
    x = np.random.default_rng(1).standard_normal((B, K + 1, V)).astype(np.float32)
    x[1, 1, 2] = np.nan
    d = np.zeros((B, K), np.int64)
    dx = cuda.to_device(x)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        fs.verify(dx, d, method=method)
    got = fs.verify(dx, d, method=method, on_invalid="flag")
    assert got.tokens[1].tolist() == [-1, -1, -1] and got.num_emitted[1] == 0
    assert got.num_emitted[0] >= 1
    got = fs.verify(dx, d, method=method, num_draft=[2, 0])   # step 1 unused
    assert (got.num_emitted >= 1).all()
    with pytest.raises(ValueError, match="outside"):
        fs.verify(dx, np.array([[0, 16], [0, 0]]), method=method)
    with pytest.raises(ValueError, match="draft_probs has shape"):
        fs.verify(dx, d, cuda.to_device(np.ones((B, K, V - 1), np.float32)), method=method)
    with pytest.raises(TypeError, match="float32"):
        fs.verify(cuda.to_device(x.astype(np.float64)), d, method=method)


@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_cuda_chain_verify(method):
    """A cuda chain of fs.sample's stages verifies device logits like the numpy chain;
    other chains are a clear BackendError."""
    rng = np.random.default_rng(8)
    B, K, V = 2, 2, 40
    x = (rng.standard_normal((B, K + 1, V)) * 2).astype(np.float32)
    d = rng.integers(0, V, (B, K))
    q = rng.dirichlet(np.ones(V), (B, K)).astype(np.float32)
    stages = [fs.TopK(np.array([5, 8])), fs.TopP(0.9), fs.Temperature(0.7)]
    want = fs.SamplerChain(stages, seed=[3, 4], backend="numpy").verify(
        x, d, q, method=method, position=6)
    chain = fs.SamplerChain(stages, seed=[3, 4], backend="cuda")
    got = chain.verify(cuda.to_device(x), d, cuda.to_device(q), method=method, position=6)
    assert np.array_equal(got.tokens, want.tokens)
    assert np.array_equal(got.num_emitted, want.num_emitted)
    with pytest.raises(fs.BackendError, match="fs.sample's stages"):
        fs.SamplerChain([fs.Penalties(1.2), fs.TopK(5)], backend="cuda").verify(
            cuda.to_device(x), d, method=method)
