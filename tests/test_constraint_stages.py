"""The constraint stages of docs/spec.md §10: AllowedTokens, BadWords, MinTokens.

The reference against the naive loops (tests/naive.py), every backend's kernels
against the reference (all three ``out=`` forms of the edit stages), the chain plan
(they are edits: one working copy), engine loops with identical tokens on every
backend, the semantics of vLLM's ``bad_words``/``allowed_token_ids``/``min_tokens``
and transformers' ``MinNewTokensLengthLogitsProcessor``, and bad input.
"""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import plan as fsplan
from fastsample import reference, registry, workloads


def _flat(sequences):
    tokens = np.array([t for s in sequences for t in s], np.int64)
    offsets = np.zeros(len(sequences) + 1, np.int64)
    np.cumsum([len(s) for s in sequences], out=offsets[1:])
    return tokens, offsets


def _x(B, V, seed):
    x = workloads.llm_like(B, V, seed)
    x[:, 1::7] = -np.inf
    return x


def _op(backend, name):
    return getattr(registry.load(backend), name)


def _check_out_forms(fn, x, want):
    """``out=None`` (new array, input untouched), ``out=x`` (in place), ``out=other``."""
    before = x.copy()
    got = fn(x, None)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(got, x)
    other = np.full_like(x, 3.0)
    assert fn(x, other) is other
    np.testing.assert_array_equal(other, want)
    y = x.copy()
    assert fn(y, y) is y
    np.testing.assert_array_equal(y, want)


# ---------------------------------------------------------------- reference vs naive


def test_reference_vs_naive():
    rng = np.random.default_rng(0)
    for V in (1, 2, 17, 300):
        x = _x(3, V, V)
        ids = rng.integers(0, V, size=min(V, 5))
        want = np.stack([naive.allowed_tokens(r, ids) for r in x])
        np.testing.assert_array_equal(reference.allowed_tokens(x, ids), want)
        seqs = [[int(rng.integers(V))], [0, 0], list(rng.integers(0, V, 3)), [V - 1, 0, V - 1]]
        hist = [rng.integers(0, V, n) for n in (0, 2, 6)]
        hist[2][-2:] = [V - 1, 0]
        tokens, offsets = _flat(seqs)
        want = np.stack([naive.bad_words(r, h, seqs) for r, h in zip(x, hist)])
        np.testing.assert_array_equal(reference.bad_words(x, hist, tokens, offsets), want)
        n = np.array([0, 3, 5])
        pos = np.array([0, 2, 5], np.uint64)
        stop = np.array([0, V - 1])
        want = np.stack([naive.min_tokens(r, int(a), stop, int(p)) for r, a, p in zip(x, n, pos)])
        np.testing.assert_array_equal(reference.min_tokens(x, n, stop, pos), want)


# ---------------------------------------------------------------- kernels vs reference


@pytest.mark.parametrize("V", [1, 33, 1000, 5000])
def test_kernels_vs_reference(backend, V):
    rng = np.random.default_rng(V)
    B = 4
    x = _x(B, V, V + 3)
    ids = rng.integers(0, V, size=min(V, 40))
    _check_out_forms(lambda a, out: _op(backend, "allowed_tokens")(a, ids, out=out), x,
                     reference.allowed_tokens(x, ids))
    seqs = [[int(rng.integers(V))] for _ in range(3)] + \
        [list(rng.integers(0, V, n)) for n in (2, 3, 4)]
    hist = [rng.integers(0, V, n) for n in (0, 1, 5, 40)]
    hist[3][-1] = seqs[3][0]           # ends with sequence 3's prefix
    hist[2][-3:] = seqs[5][:3]          # ends with sequence 5's prefix
    tokens, offsets = _flat(seqs)
    _check_out_forms(lambda a, out: _op(backend, "bad_words")(a, hist, tokens, offsets, out=out),
                     x, reference.bad_words(x, hist, tokens, offsets))
    n = np.array([0, 1, 4, 9], np.int64)
    pos = np.array([0, 1, 3, 2**40], np.uint64)
    stop = rng.integers(0, V, size=3)
    _check_out_forms(lambda a, out: _op(backend, "min_tokens")(a, n, stop, pos, out=out), x,
                     reference.min_tokens(x, n, stop, pos))


def test_kernels_b0_and_empty(backend):
    x = np.zeros((0, 10), np.float32)
    assert _op(backend, "allowed_tokens")(x, np.array([1], np.int64)).shape == (0, 10)
    tokens, offsets = _flat([])
    y = _x(2, 10, 1)
    np.testing.assert_array_equal(_op(backend, "bad_words")(y, [np.zeros(0, np.int64)] * 2,
                                                           tokens, offsets), y)
    np.testing.assert_array_equal(
        _op(backend, "min_tokens")(y, np.array([5, 5]), np.zeros(0, np.int64),
                                   np.zeros(2, np.uint64)), y)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(V=st.integers(1, 200), B=st.integers(1, 4), nseq=st.integers(0, 6),
       seed=st.integers(0, 2**31))
def test_bad_words_hypothesis(V, B, nseq, seed):
    rng = np.random.default_rng(seed)
    x = _x(B, V, seed % 500)
    alphabet = min(V, 3)   # a small alphabet: prefixes match often
    seqs = [list(rng.integers(0, alphabet, rng.integers(1, 5))) for _ in range(nseq)]
    hist = [rng.integers(0, alphabet, rng.integers(0, 8)) for _ in range(B)]
    tokens, offsets = _flat(seqs)
    want = np.stack([naive.bad_words(r, h, seqs) for r, h in zip(x, hist)])
    np.testing.assert_array_equal(reference.bad_words(x, hist, tokens, offsets), want)
    for backend in ("numba", "c"):
        if fs.backends()[backend]:
            np.testing.assert_array_equal(
                _op(backend, "bad_words")(x, hist, tokens, offsets), want, err_msg=backend)


# ---------------------------------------------------------------- conformance


def test_vllm_and_transformers_semantics(backend):
    """vLLM ``bad_words``: a one-token word is always banned, a longer one only after
    its prefix; ``allowed_token_ids``: everything else is masked; ``min_tokens`` and
    transformers' MinNewTokensLengthLogitsProcessor: EOS banned while fewer than n
    tokens were generated (position counts them), allowed from position n on."""
    V = 10
    x = np.zeros(V, np.float32)
    chain = fs.SamplerChain([fs.BadWords([[4], [1, 2, 3]])], backend=backend)
    out = chain.process(x, history=np.array([1, 2]))
    assert np.flatnonzero(~np.isfinite(out)).tolist() == [3, 4]
    out = chain.process(x, history=np.array([2, 1]))
    assert np.flatnonzero(~np.isfinite(out)).tolist() == [4]
    chain = fs.SamplerChain([fs.AllowedTokens([7, 2, 7])], backend=backend)
    assert np.flatnonzero(np.isfinite(chain.process(x))).tolist() == [2, 7]
    chain = fs.SamplerChain([fs.MinTokens(2, stop_ids=[9])], backend=backend)
    assert not np.isfinite(chain.process(x, position=0)[9])
    assert not np.isfinite(chain.process(x, position=1)[9])
    assert np.isfinite(chain.process(x, position=2)[9])
    chain = fs.SamplerChain([fs.MinTokens(0, [9])], backend=backend)
    assert np.isfinite(chain.process(x)).all()


def test_min_tokens_per_row_and_accept(backend):
    V = 50
    x = np.zeros((3, V), np.float32)
    x[:, 0] = 10.0   # EOS (token 0) is the greedy choice once allowed
    chain = fs.SamplerChain([fs.MinTokens([0, 2, 3], [0]), fs.Greedy()], backend=backend)
    got = []
    for _ in range(4):
        t = chain.sample(x)
        got.append(t.tolist())
        chain.accept(t)
    assert [row[0] for row in got] == [0, 0, 0, 0]
    assert [row[1] == 0 for row in got] == [False, False, True, True]
    assert [row[2] == 0 for row in got] == [False, False, False, True]


# ---------------------------------------------------------------- the chain plan


def test_they_are_edits():
    stages = [fs.AllowedTokens(range(100)), fs.BadWords([[1, 2, 3]]), fs.MinTokens(3, [0]),
              fs.TopK(40), fs.TopP(0.9)]
    p = fs.SamplerChain(stages, backend="numba")._plan
    assert p.mode == "fused" and len(p.edits) == 3
    assert p.window(2) == 2   # BadWords reads its longest prefix
    p = fs.SamplerChain([fs.Penalties(1.1, last_n=8), fs.BadWords([[1] * 20])], backend="numba")._plan
    assert p.window(1) == 19
    assert fsplan.Plan.__name__ == "Plan"


CHAINS = {
    "fused": lambda: [fs.BadWords([[5], [1, 2], [3, 4, 6]]), fs.MinTokens([2, 0, 5, 1], [0, 9]),
                      fs.TopK(40), fs.TopP(0.95), fs.Temperature(0.8)],
    "allowed_fused": lambda: [fs.AllowedTokens(np.arange(0, 3000, 3)), fs.TopK(20),
                              fs.MinP(0.05)],
    "with_penalties": lambda: [fs.Penalties(1.3, last_n=16), fs.BadWords([[7, 8], [8, 7]]),
                               fs.DRY(0.8, last_n=64), fs.MinP(0.02), fs.XTC(0.5, 0.1)],
    "stages": lambda: [fs.MinTokens(3, [1]), fs.XTC(0.5, 0.1), fs.TopK(30)],
    "after_truncation": lambda: [fs.TopK(50), fs.BadWords([[2, 3]]), fs.AllowedTokens(range(2000))],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_engine_loop(fast_backend, name):
    """Tokens identical to the numpy chain step after step, the chain's own history
    feeding BadWords and its positions MinTokens; a prompt fed through accept."""
    B, V = 4, 3000
    ref = fs.SamplerChain(CHAINS[name](), seed=[5, 6, 7, 8], backend="numpy")
    fast = fs.SamplerChain(CHAINS[name](), seed=[5, 6, 7, 8], backend=fast_backend)
    prompt = np.array([[1, 2, 3, 7], [8, 7, 1, 2], [3, 4, 3, 4], [0, 0, 0, 0]])
    for t in prompt.T:
        ref.accept(t)
        fast.accept(t)
    for step in range(8):
        x = workloads.llm_like(B, V, 40 + step)
        # make the constrained tokens likely, so the bans matter
        x[:, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]] += 8.0
        want = ref.sample(x)
        got = fast.sample(x)
        np.testing.assert_array_equal(got, want, err_msg=f"step {step}")
        np.testing.assert_array_equal(np.isfinite(fast.process(x)), np.isfinite(ref.process(x)))
        ref.accept(want)
        fast.accept(got)


def test_one_row_loop(fast_backend):
    V = 2000
    stages = lambda: [fs.BadWords([[5], [1, 2], [3, 4, 6]]), fs.MinTokens(3, [0, 9]),
                      fs.TopK(40), fs.TopP(0.95), fs.Temperature(0.8)]
    ref = fs.SamplerChain(stages(), seed=1, backend="numpy")
    fast = fs.SamplerChain(stages(), seed=1, backend=fast_backend)
    for step in range(8):
        x = workloads.llm_like(1, V, step)[0]
        x[[0, 1, 2, 5, 9]] += 8.0
        t = ref.sample(x)
        assert fast.sample(x) == t
        ref.accept(t)
        fast.accept(t)


ALLOWED = np.arange(0, 3000, 3)
MASKED_CHAINS = {   # AllowedTokens in the fused or truncation kernel's bitmask
    "alone": [fs.AllowedTokens(ALLOWED), fs.TopK(40), fs.Temperature(0.8)],
    "with_edits": [fs.AllowedTokens(ALLOWED), fs.Penalties(1.3, last_n=8),
                   fs.LogitBias({4: 30.0, 5: 1.0}), fs.TopK(40), fs.TopP(0.9), fs.MinP(0.05),
                   fs.Temperature(0.8)],
    "after_a_bias": [fs.LogitBias({4: 30.0}), fs.AllowedTokens(ALLOWED), fs.MinP(0.02),
                     fs.XTC(0.5, 0.1)],
    "two": [fs.AllowedTokens(ALLOWED), fs.AllowedTokens(np.arange(0, 3000, 2)), fs.TopP(0.9),
            fs.Typical(0.9)],
    "few": [fs.AllowedTokens([7, 8]), fs.TopK(40)],
}


def _outcome(chain, x, **kw):
    try:
        return "token", np.asarray(chain.sample(x, **kw)).tolist()
    except ValueError as e:
        return "error", str(e)


@pytest.mark.parametrize("on_invalid", ["raise", "flag"])
@pytest.mark.parametrize("name", sorted(MASKED_CHAINS))
def test_allowed_tokens_as_the_kernels_bitmask(fast_backend, name, on_invalid):
    """AllowedTokens is the fused or truncation kernel's bitmask (ANDed with a call's
    bitmask; a row the call leaves unconstrained takes the allowed ids alone), not a
    masked copy: the numpy chain's tokens and errors (the same messages) on a batch of
    3 and one row, with a NaN at a disallowed id, a +inf at an allowed one, every
    allowed id -inf, and the few allowed ids -inf in one row."""
    V = 3000
    stages = MASKED_CHAINS[name]
    bm = np.zeros((2, (V + 31) // 32), np.uint32)
    bm[0, :] = 0x55555555
    bm[1, :5] = 0xFFFFFFFF
    h = np.array([[4, 5, 6], [9, 12, 3], [1, 1, 1]])
    for trial in range(6):
        x = workloads.llm_like(3, V, trial)
        x[:, [4, 5, 6, 9, 12]] += 5.0
        if trial == 1:
            x[0, 1] = np.nan
        elif trial == 2:
            x[1, 3] = np.inf
        elif trial == 3:
            x[2, ALLOWED] = -np.inf
        elif trial == 4:
            x[0, [7, 8]] = -np.inf
        masked = trial % 2 == 1
        kw = {"bitmask": bm, "bitmask_rows": np.array([0, -1, 1])} if masked else {}
        got, want = (_outcome(fs.SamplerChain(stages, seed=1, backend=b, on_invalid=on_invalid),
                              x, history=h, **kw) for b in (fast_backend, "numpy"))
        assert got == want, trial
        kw = {"bitmask": bm[0]} if masked else {}
        got, want = (_outcome(fs.SamplerChain(stages, seed=1, backend=b, on_invalid=on_invalid),
                              x[0], history=h[0], **kw) for b in (fast_backend, "numpy"))
        assert got == want, trial


def test_allowed_tokens_need_no_masked_copy(fast_backend, monkeypatch):
    """With AllowedTokens the only edit of a fused chain, the kernel reads the input row
    through the bitmask: no edit op runs."""
    chain = fs.SamplerChain(MASKED_CHAINS["alone"], seed=1, backend=fast_backend)
    x = workloads.llm_like(2, 3000, 0)
    want = fs.SamplerChain(MASKED_CHAINS["alone"], seed=1, backend="numpy").sample(x)

    def fail(*args, **kwargs):
        raise AssertionError("a masked copy of the row")

    monkeypatch.setattr(chain._ops, "allowed_tokens", fail, raising=False)
    monkeypatch.setattr(chain._ops, "apply_token_bitmask", fail, raising=False)
    np.testing.assert_array_equal(chain.sample(x), want)
    chain.reset()
    assert chain.sample(x[0]) == want[0]


# ---------------------------------------------------------------- invalid rows and bad input


def test_emptied_row(backend):
    x = np.zeros((2, 20), np.float32)
    x[1, :10] = -np.inf
    chain = fs.SamplerChain([fs.AllowedTokens([1, 2]), fs.TopK(3)], backend=backend)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        chain.sample(x)
    chain = fs.SamplerChain([fs.AllowedTokens([1, 2]), fs.TopK(3)], backend=backend,
                            on_invalid="flag")
    got = chain.sample(x)
    assert got[1] == -1 and got[0] in (1, 2)


def test_banned_nan_still_invalid(backend):
    x = np.zeros((2, 20), np.float32)
    x[0, 5] = np.nan
    for stages in ([fs.BadWords([[5]])], [fs.MinTokens(3, [5])], [fs.AllowedTokens([1, 2])]):
        chain = fs.SamplerChain(stages + [fs.TopK(3)], backend=backend)
        with pytest.raises(ValueError, match=r"rows \[0\]"):
            chain.sample(x)


def test_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        fs.AllowedTokens([])
    with pytest.raises(TypeError, match="integer"):
        fs.AllowedTokens([1.5])
    with pytest.raises(ValueError, match="outside"):
        fs.AllowedTokens([-1])
    with pytest.raises(ValueError, match="empty"):
        fs.BadWords([[1], []])
    with pytest.raises(ValueError, match="outside"):
        fs.BadWords([[1, -2]])
    with pytest.raises(TypeError, match="list of token sequences"):
        fs.BadWords(np.array([1, 2]))
    with pytest.raises(ValueError, match=">= 0"):
        fs.MinTokens(-1, [0])
    with pytest.raises(ValueError, match="integer"):
        fs.MinTokens(1.5, [0])
    x = np.zeros(10, np.float32)
    for stage in (fs.AllowedTokens([10]), fs.BadWords([[1, 10]]), fs.MinTokens(1, [10])):
        with pytest.raises(ValueError, match="outside"):
            fs.SamplerChain([stage], backend="numpy").sample(x)
    with pytest.raises(ValueError, match="length 3"):
        fs.SamplerChain([fs.MinTokens([1, 2, 3], [0])]).sample(np.zeros((2, 10), np.float32))
