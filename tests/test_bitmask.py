"""The packed token bitmask (docs/spec.md §10): ``fs.apply_token_bitmask`` and
``bitmask=`` / ``bitmask_rows=`` on ``fs.sample``, ``SamplerChain.sample`` and
``process``.

The reference is checked against the naive loops (tests/naive.py); every backend is
checked against the reference: identical masks, identical tokens (the fused kernels
read the bitmask in their first pass, so this also checks that pass), step after
step in engine loops. Bad input gives the errors of spec §7/§10.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import bitmask as fsbm
from fastsample import reference, workloads


def _words(V):
    return (V + 31) // 32


def random_bitmask(rng, R, V, density, extra_words=0, dtype=np.int32):
    """R rows over V tokens, each token allowed with probability ``density``; bits
    past V are random (they must be ignored)."""
    W = _words(V) + extra_words
    bits = rng.random((R, W * 32)) < density
    bits[:, V:] = rng.random((R, W * 32 - V)) < 0.5
    packed = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
    words = np.ascontiguousarray(packed.view("<u4").astype(np.uint32))
    return words if dtype == np.uint32 else words.view(np.int32)


def naive_masked(x, bm, rows):
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        r = int(rows[b]) if rows is not None else b
        out[b] = naive.apply_token_bitmask(x[b], None if r < 0 else bm[r])
    return out


def logits(B, V, seed, kind="llm"):
    if kind == "flat":
        return workloads.flat(B, V, seed)
    return workloads.llm_like(B, V, seed)


# ---------------------------------------------------------------- the reference


@pytest.mark.parametrize("V", [1, 5, 31, 32, 33, 64, 100, 1000])
@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_reference_matches_naive(V, dtype):
    rng = np.random.default_rng(V)
    B = 4
    x = logits(B, V, V)
    x[0, :: 3] = -np.inf
    bm = random_bitmask(rng, 3, V, 0.4, extra_words=1, dtype=dtype)
    rows = np.array([0, -1, 2, 1])
    m, r = fsbm.as_bitmask(bm, B, V, rows)
    got = reference.apply_token_bitmask(x, m, r)
    np.testing.assert_array_equal(got, naive_masked(x, bm, rows))
    assert not np.shares_memory(got, x)


def test_bit_order_is_xgrammar_llguidance():
    """Token v is bit v % 32 of word v // 32, least significant bit first: word 0 =
    0b101 allows tokens 0 and 2; word 1 = -2**31 (int32) allows token 63 only."""
    x = np.zeros(64, np.float32)
    bm = np.array([0b101, -2**31], np.int32)
    out = fs.apply_token_bitmask(x, bm, backend="numpy")
    assert np.flatnonzero(np.isfinite(out)).tolist() == [0, 2, 63]


# ---------------------------------------------------------------- apply_token_bitmask


@pytest.mark.parametrize("V", [1, 7, 32, 33, 1000, 4099])
def test_apply_every_backend(backend, V):
    rng = np.random.default_rng(V + 1)
    B = 5
    x = logits(B, V, V)
    x[1, ::2] = -np.inf
    x[2, 0] = np.nan   # values are not checked: an allowed NaN stays NaN
    bm = random_bitmask(rng, 4, V, 0.3, extra_words=2)
    rows = np.array([3, -1, 0, 1, 3])
    want = naive_masked(x, bm, rows)
    got = fs.apply_token_bitmask(x, bm, rows, backend=backend)
    np.testing.assert_array_equal(got, want)
    out = np.full_like(x, 7.0)
    assert fs.apply_token_bitmask(x, bm, rows, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, want)
    y = x.copy()
    assert fs.apply_token_bitmask(y, bm, rows, out=y, backend=backend) is y
    np.testing.assert_array_equal(y, want)
    one = fs.apply_token_bitmask(x[3], bm[1], backend=backend)
    np.testing.assert_array_equal(one, want[3])


def test_apply_b0(backend):
    x = np.zeros((0, 40), np.float32)
    out = fs.apply_token_bitmask(x, np.zeros((0, 2), np.int32), backend=backend)
    assert out.shape == (0, 40)


# ---------------------------------------------------------------- fs.sample


PARAMS = [
    dict(top_k=40, top_p=0.95, min_p=0.05, temperature=0.8),          # W1
    dict(temperature=1.0),                                             # the plain draw
    dict(top_p=0.9),
    dict(min_p=0.1, temperature=1.3),
    dict(top_k=5, temperature=0.7, temperature_last=False),            # HF order
    dict(top_k=3, min_keep=5, top_p=0.5),
    dict(temperature=0.0),                                             # greedy
    dict(top_k=100000),
]


@pytest.mark.parametrize("params", PARAMS, ids=range(len(PARAMS)))
@pytest.mark.parametrize("B,V,density", [(1, 1000, 0.1), (1, 70, 0.5), (6, 2000, 0.1),
                                         (6, 129, 0.02), (3, 4096, 0.9)])
def test_sample_every_backend(backend, params, B, V, density):
    rng = np.random.default_rng(B * V)
    x = logits(B, V, V + B)
    bm = random_bitmask(rng, B, V, density)
    bm[:, 0] |= 1   # token 0 allowed: no row is emptied
    seed = np.arange(B) + 11
    want = fs.sample(reference.apply_token_bitmask(x, bm.view(np.uint32), np.arange(B)),
                     seed=seed, position=3, backend="numpy", **params)
    got = fs.sample(x, seed=seed, position=3, bitmask=bm, backend=backend, **params)
    np.testing.assert_array_equal(got, want)
    if B == 1:   # the one-row path (plain scalars)
        assert fs.sample(x[0], seed=11, position=3, bitmask=bm[0], backend=backend,
                         **params) == int(want[0])


@pytest.mark.parametrize("kind", ["llm", "flat"])
def test_sample_rows_map(backend, kind):
    B, V = 7, 3000
    rng = np.random.default_rng(5)
    x = logits(B, V, 9, kind)
    bm = random_bitmask(rng, 3, V, 0.1)
    bm[:, 1] |= 1
    rows = np.array([2, -1, 0, 0, 1, -1, 2])
    masked = naive_masked(x, bm, rows)
    for params in PARAMS[:4]:
        want = fs.sample(masked, seed=4, position=np.arange(B), backend="numpy", **params)
        got = fs.sample(x, seed=4, position=np.arange(B), bitmask=bm, bitmask_rows=rows,
                        backend=backend, **params)
        np.testing.assert_array_equal(got, want)
    # every row unconstrained is the call without a bitmask
    np.testing.assert_array_equal(
        fs.sample(x, seed=1, bitmask=bm, bitmask_rows=np.full(B, -1), backend=backend),
        fs.sample(x, seed=1, backend=backend))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 4), V=st.integers(1, 700), density=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
       k=st.sampled_from([0, 1, 5, 50]), p=st.sampled_from([1.0, 0.9, 0.5]),
       mp=st.sampled_from([0.0, 0.05]), t=st.sampled_from([1.0, 0.8, 0.0, 1.5]),
       t_last=st.booleans(), seed=st.integers(0, 2**32))
def test_sample_hypothesis(B, V, density, k, p, mp, t, t_last, seed):
    rng = np.random.default_rng(seed)
    x = workloads.llm_like(B, V, seed % 1000)
    x[rng.random((B, V)) < 0.1] = -np.inf
    bm = random_bitmask(rng, B, V, density)
    masked = naive_masked(x, bm, None)
    ok = np.isfinite(masked).any(axis=1)
    kw = dict(top_k=k, top_p=p, min_p=mp, temperature=t, temperature_last=t_last,
              seed=seed, position=seed % 7, on_invalid="flag")
    want = fs.sample(np.where(ok[:, None], masked, 0.0), backend="numpy", **kw)
    want[~ok] = -1
    for backend in ("numba", "c"):
        if not fs.backends()[backend]:
            continue
        got = fs.sample(x, bitmask=bm, backend=backend, **kw)
        np.testing.assert_array_equal(got, want, err_msg=backend)


def test_all_but_one_allowed_and_only_one(backend):
    V = 1000
    x = logits(2, V, 3)
    bm = np.full((2, _words(V)), 0xFFFFFFFF, np.uint32)
    top = int(np.argmax(x[0]))
    bm[0, top // 32] &= ~np.uint32(1 << (top % 32))
    bm[1] = 0
    bm[1, 0] = 1 << 17
    bm = bm.view(np.int32)
    got = fs.sample(x, temperature=0.0, bitmask=bm, backend=backend)
    masked = x[0].copy()
    masked[top] = -np.inf
    assert got[0] == int(np.argmax(masked)) and got[1] == 17
    got = fs.sample(x, seed=3, top_k=40, bitmask=bm, backend=backend)
    assert got[0] != top and got[1] == 17


def test_emptied_row_is_invalid(backend):
    V = 100
    x = logits(3, V, 1)
    x[2, 40:] = -np.inf
    bm = np.full((3, _words(V)), -1, np.int32)
    bm[1] = 0                       # allows nothing
    bm[2, :] = 0
    bm[2, 50 // 32] = 1 << (50 % 32)   # allows only a masked token
    with pytest.raises(ValueError, match=r"rows \[1, 2\]"):
        fs.sample(x, bitmask=bm, backend=backend)
    got = fs.sample(x, bitmask=bm, on_invalid="flag", seed=2, backend=backend)
    assert got[1] == -1 and got[2] == -1 and got[0] == fs.sample(x[0], seed=2, backend=backend)
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        fs.sample(x[1], bitmask=bm[1], backend=backend)
    assert fs.sample(x[1], bitmask=bm[1], on_invalid="flag", backend=backend) == -1


def test_disallowed_nan_is_still_invalid(backend):
    """Validity is the input's (spec §7): a NaN or +inf anywhere in the row makes it
    invalid, allowed or not; the bitmask only masks."""
    V = 300
    x = logits(2, V, 4)
    x[0, 5] = np.nan
    x[1, 7] = np.inf
    bm = np.full((2, _words(V)), -1, np.int32)
    bm[:, 0] = ~((1 << 5) | (1 << 7))
    with pytest.raises(ValueError, match=r"rows \[0, 1\]"):
        fs.sample(x, bitmask=bm, backend=backend)
    assert (fs.sample(x, bitmask=bm, on_invalid="flag", backend=backend) == -1).all()
    assert fs.sample(x[0], bitmask=bm[0], on_invalid="flag", backend=backend) == -1


# ---------------------------------------------------------------- bad input


def test_bad_bitmask_input(backend):
    V = 100
    x = logits(2, V, 0)
    good = np.full((2, 4), -1, np.int32)
    with pytest.raises(TypeError, match="int32"):
        fs.sample(x, bitmask=good.astype(np.int64), backend=backend)
    with pytest.raises(TypeError, match="int32"):
        fs.sample(x, bitmask=np.ones((2, V), bool), backend=backend)
    with pytest.raises(TypeError, match="int32"):
        fs.apply_token_bitmask(x, good.astype(np.float32), backend=backend)
    with pytest.raises(ValueError, match="needs ceil"):
        fs.sample(x, bitmask=good[:, :3], backend=backend)
    with pytest.raises(ValueError, match="B=2"):
        fs.sample(x, bitmask=good[:1], backend=backend)
    with pytest.raises(ValueError, match="outside"):
        fs.sample(x, bitmask=good, bitmask_rows=[0, 2], backend=backend)
    with pytest.raises(ValueError, match="outside"):
        fs.sample(x, bitmask=good, bitmask_rows=[-2, 0], backend=backend)
    with pytest.raises(ValueError, match="shape"):
        fs.sample(x, bitmask=good, bitmask_rows=[0], backend=backend)
    with pytest.raises(TypeError, match="integer"):
        fs.sample(x, bitmask=good, bitmask_rows=[0.0, 1.0], backend=backend)
    with pytest.raises(ValueError, match="ndim"):
        fs.sample(x, bitmask=good[None], backend=backend)
    with pytest.raises(ValueError, match="shape"):
        fs.apply_token_bitmask(x, good, out=np.zeros((2, V + 1), np.float32), backend=backend)
    with pytest.raises(TypeError, match="float32"):
        fs.apply_token_bitmask(x, good, out=np.zeros((2, V)), backend=backend)
    # the uint32 form is the same bits
    u = good.view(np.uint32)
    np.testing.assert_array_equal(fs.sample(x, bitmask=u, seed=1, backend=backend),
                                  fs.sample(x, bitmask=good, seed=1, backend=backend))


def test_input_unchanged(backend):
    x = logits(3, 500, 2)
    before = x.copy()
    bm = random_bitmask(np.random.default_rng(0), 3, 500, 0.2)
    bm[:, 0] |= 1
    fs.sample(x, bitmask=bm, top_k=10, backend=backend)
    fs.apply_token_bitmask(x, bm, backend=backend)
    np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------- chains


CHAINS = {
    "fused": lambda: [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
    "fused_hf": lambda: [fs.Temperature(0.7), fs.TopK(20)],
    "candidates": lambda: [fs.TopK(50), fs.TopP(0.9), fs.Typical(0.95), fs.Temperature(0.9)],
    "stages": lambda: [fs.XTC(0.5, 0.1), fs.TopK(30)],
    "edits_fused": lambda: [fs.Penalties(1.2, 0.1, 0.1, last_n=16), fs.TopK(40),
                            fs.Temperature(0.8)],
    "edits_candidates": lambda: [fs.LogitBias({3: 2.0}), fs.MinP(0.02), fs.XTC(0.5, 0.1)],
    "greedy": lambda: [fs.TopK(5), fs.Greedy()],
    "mirostat": lambda: [fs.MirostatV2(5.0, 0.1)],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_engine_loop(fast_backend, name):
    """Tokens identical to the numpy chain step after step (sample + accept), with a
    new bitmask every step (as a grammar matcher gives), one row unconstrained."""
    B, V = 4, 3000
    rng = np.random.default_rng(len(name))
    ref = fs.SamplerChain(CHAINS[name](), seed=[1, 2, 3, 4], backend="numpy")
    fast = fs.SamplerChain(CHAINS[name](), seed=[1, 2, 3, 4], backend=fast_backend)
    rows = np.array([0, 1, -1, 2])
    for step in range(6):
        x = workloads.llm_like(B, V, 100 + step)
        bm = random_bitmask(rng, 3, V, 0.1 if step % 2 else 0.6)
        bm[:, 0] |= 1
        want = ref.sample(x, bitmask=bm, bitmask_rows=rows)
        got = fast.sample(x, bitmask=bm, bitmask_rows=rows)
        np.testing.assert_array_equal(got, want, err_msg=f"step {step}")
        pw = ref.process(x, bitmask=bm, bitmask_rows=rows)
        pg = fast.process(x, bitmask=bm, bitmask_rows=rows)
        np.testing.assert_array_equal(np.isfinite(pg), np.isfinite(pw))
        np.testing.assert_allclose(pg[np.isfinite(pg)], pw[np.isfinite(pw)], rtol=1e-5)
        ref.accept(want)
        fast.accept(got)


@pytest.mark.parametrize("name", ["fused", "candidates", "edits_fused"])
def test_chain_one_row(fast_backend, name):
    V = 5000
    rng = np.random.default_rng(3)
    ref = fs.SamplerChain(CHAINS[name](), seed=9, backend="numpy")
    fast = fs.SamplerChain(CHAINS[name](), seed=9, backend=fast_backend)
    for step in range(5):
        x = workloads.llm_like(1, V, step)[0]
        bm = random_bitmask(rng, 1, V, 0.1)[0]
        bm[0] |= 1
        t = ref.sample(x, bitmask=bm)
        assert fast.sample(x, bitmask=bm) == t
        ref.accept(t)
        fast.accept(t)


def test_chain_bitmask_masks_before_every_stage(backend):
    """Disallowed tokens are -inf before the penalties and the truncations: TopK(2)
    keeps the two best allowed tokens, and a LogitBias cannot revive a disallowed one."""
    V = 64
    x = np.arange(V, dtype=np.float32)
    bm = np.array([-1, 0x0000FFFF], np.int32)    # tokens 0..47 allowed
    chain = fs.SamplerChain([fs.LogitBias({60: 100.0}), fs.TopK(2)], backend=backend)
    out = chain.process(x, bitmask=bm)
    assert np.flatnonzero(np.isfinite(out)).tolist() == [46, 47]
    chain = fs.SamplerChain([fs.TopK(2)], backend=backend)
    assert np.flatnonzero(np.isfinite(chain.process(x, bitmask=bm))).tolist() == [46, 47]


def test_chain_emptied_and_invalid_rows(backend):
    V = 200
    x = logits(3, V, 8)
    x[2, 3] = np.nan
    bm = np.full((3, _words(V)), -1, np.int32)
    bm[1] = 0
    bm[2, 0] = ~(1 << 3)      # the NaN is disallowed: still invalid input
    for stages in (CHAINS["fused"](), CHAINS["edits_fused"](), CHAINS["stages"](),
                   CHAINS["candidates"]()):
        chain = fs.SamplerChain(stages, backend=backend)
        # the reference chain names the input's fault first; a fused kernel both rows
        with pytest.raises(ValueError, match=r"rows \[(1, )?2\]"):
            chain.sample(x, bitmask=bm)
        chain.reset()
        with pytest.raises(ValueError, match=r"rows \[1\]"):
            chain.sample(x[:2], bitmask=bm[:2])
        chain = fs.SamplerChain(stages, backend=backend, on_invalid="flag")
        got = chain.sample(x, bitmask=bm)
        assert got[1] == -1 and got[2] == -1 and got[0] >= 0


# ---------------------------------------------------------------- W12 (fastsample bench)


def test_w12_cases_and_torch_peer():
    """W12's cases run on every backend at a small V, the bitmask allows about 10 %,
    and the torch peer's unpacked mask (vLLM's way) is the reference's."""
    torch = pytest.importorskip("torch")
    from fastsample.cli import peers
    from fastsample import workloads as wl

    V = 3000
    for case in wl.get("W12").cases:
        prep = case.prepare(vocab=V)
        bm = np.atleast_2d(prep.inputs["bitmask"])
        allowed = np.isfinite(reference.apply_token_bitmask(
            np.zeros((bm.shape[0], V), np.float32), bm.view(np.uint32), np.arange(bm.shape[0])))
        assert 0.07 < allowed.mean() < 0.13
        np.testing.assert_array_equal(peers._torch_unpack(torch, bm, V).numpy(), ~allowed)
        for backend in ("numpy", "numba", "c"):
            if fs.backends()[backend]:
                prep.call(backend)()
        if prep.has_baseline:
            x = prep.inputs["logits"]
            kw = {k: prep.inputs[k] for k in ("top_k", "top_p", "min_p", "temperature")}
            got = prep.call("numpy")()
            masked = reference.apply_token_bitmask(np.atleast_2d(x), bm.view(np.uint32),
                                                   np.arange(bm.shape[0]))
            want = fs.sample(masked if x.ndim == 2 else masked[0], seed=0, backend="numpy",
                             **kw)
            np.testing.assert_array_equal(got, want)
        peers._torch_bitmask(prep)()
