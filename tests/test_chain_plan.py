"""The chain plan (``fastsample.plan``) and the chain's O(1) per-token state.

Every plan mode (edits + fused kernel, edits + candidates, stages) must give the
numpy reference chain's tokens and masks exactly, step after step in engine loops
(prompt fed by ``accept``, then sample/accept with the chain's own history, per-row
parameters, ``state_of``/``load_states`` in the middle), and bad input must behave
as it does without a plan.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import plan as fsplan
from fastsample import workloads

VALUE_TOL = 1e-5   # processed logits, relative to max(1, |l|) (as tests/test_parity.py)


# ---------------------------------------------------------------- which plan


def _mode(stages, backend="c"):
    return fs.SamplerChain(stages, backend=backend)._plan


W10A = [fs.Penalties(1.1, last_n=64), fs.DRY(0.8, 1.75, 2, last_n=4096), fs.TopK(40),
        fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)]
W10B = [fs.Penalties(1.05, last_n=64), fs.MinP(0.02), fs.XTC(0.5, 0.1), fs.Temperature(1.0)]


@pytest.mark.parametrize("backend", ["numba", "c"])
def test_plan_modes(backend):
    if not fs.backends()[backend]:
        pytest.skip(fs.backends()[backend].reason)
    p = _mode(W10A, backend)
    assert p.mode == "fused" and [type(s) for s in p.edits] == [fs.Penalties, fs.DRY]
    p = _mode(W10B, backend)
    assert p.mode == "candidates" and list(p.truncation) == [fs.MinP]
    assert [type(s) for s in p.after] == [fs.XTC]        # Temperature(1.0) is a no-op
    p = _mode([fs.MinP(0.02), fs.XTC(0.5, 0.1), fs.Temperature(np.array([1.0, 0.5]))], backend)
    assert [type(s) for s in p.after] == [fs.XTC, fs.Temperature]
    # XTC before any truncation needs the whole row: stage by stage
    assert _mode([fs.XTC(0.5, 0.1), fs.TopK(5)], backend).mode == "stages"
    # Mirostat v1 reads V: not on compacted survivors
    assert _mode([fs.TopK(5), fs.Mirostat()], backend).mode == "stages"
    # a history stage after the truncation reads token ids: stages
    assert _mode([fs.TopK(5), fs.Penalties(1.2)], backend).mode == "stages"
    # truncations out of llama.cpp's order end the run; different min_keep too
    p = _mode([fs.TopP(0.9), fs.TopK(5), fs.Typical(0.9)], backend)
    assert p.mode == "candidates" and list(p.truncation) == [fs.TopP]
    p = _mode([fs.TopK(5, min_keep=2), fs.MinP(0.1), fs.Typical(0.9)], backend)
    assert list(p.truncation) == [fs.TopK]


def test_numpy_chain_is_plain_stages():
    p = _mode(W10A, "numpy")
    assert p.mode == "stages" and p.edits == () and len(p.after) == len(W10A)


def test_window_is_what_the_history_stages_read():
    p = _mode(W10A)
    assert p.window(1) == 4096
    assert _mode([fs.Penalties(1.1, last_n=64), fs.TopK(4)]).window(3) == 64
    assert _mode([fs.Penalties(1.1, last_n=np.array([3, -1]))]).window(2) is None
    assert _mode([fs.NoRepeatNGram(3), fs.TopK(4)]).window(1) is None
    assert _mode([fs.TopK(4)]).window(1) == 0


# ---------------------------------------------------------------- engine loops


def _per_row(draw, B, lo, hi, integer=False):
    if draw(st.booleans()):
        v = np.array([draw(st.floats(lo, hi)) for _ in range(B)])
        return np.floor(v).astype(np.int64) if integer else v
    v = draw(st.floats(lo, hi))
    return int(v) if integer else v


def _edit_stage(draw, B, V):
    kind = draw(st.sampled_from(["bias", "penalties", "dry", "ngram"]))
    if kind == "bias":
        ids = draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=4))
        vals = [draw(st.sampled_from([-np.inf, -2.0, 0.5, 3.0])) for _ in ids]
        return fs.LogitBias((ids, vals))
    if kind == "penalties":
        return fs.Penalties(_per_row(draw, B, 0.8, 1.6), _per_row(draw, B, 0, 0.5),
                            _per_row(draw, B, 0, 0.5), _per_row(draw, B, -1, 30, True))
    if kind == "dry":
        return fs.DRY(_per_row(draw, B, 0, 2), _per_row(draw, B, 1, 2.5),
                      _per_row(draw, B, 0, 4, True), _per_row(draw, B, -1, 50, True),
                      breakers=[draw(st.integers(0, V - 1))])
    return fs.NoRepeatNGram(_per_row(draw, B, 0, 4, True))


def _later_stage(draw, B):
    mk = draw(st.integers(1, 3))
    return draw(st.sampled_from([
        lambda: fs.Typical(_per_row(draw, B, 0.2, 1.05), min_keep=mk),
        lambda: fs.TopNSigma(_per_row(draw, B, -0.5, 3), min_keep=mk),
        lambda: fs.XTC(_per_row(draw, B, 0, 1), _per_row(draw, B, 0.01, 0.6), min_keep=mk),
        lambda: fs.Epsilon(_per_row(draw, B, 0, 0.05), min_keep=mk),
        lambda: fs.Eta(_per_row(draw, B, 0, 0.05), min_keep=mk),
        lambda: fs.TopA(_per_row(draw, B, 0, 1), min_keep=mk),
        lambda: fs.PLess(min_keep=mk),
        lambda: fs.TailFree(_per_row(draw, B, 0.5, 1.05), min_keep=mk),
        lambda: fs.Temperature(_per_row(draw, B, -0.2, 2)),
        lambda: fs.DynamicTemperature(_per_row(draw, B, 0.5, 1.5), _per_row(draw, B, -0.1, 0.5)),
        lambda: fs.Smoothing(_per_row(draw, B, -0.1, 0.5), _per_row(draw, B, 0.5, 3)),
        lambda: fs.TopK(_per_row(draw, B, -2, 30, True), min_keep=mk),
        lambda: fs.MinP(_per_row(draw, B, 0, 0.3), min_keep=mk),
    ]))()


@st.composite
def chains(draw):
    """``[edits] [TopK? TopP? MinP?] [later stages] terminal``, every part optional."""
    B = draw(st.integers(1, 4))
    V = draw(st.sampled_from([1, 7, 64, 300, 2048]))
    stages = [_edit_stage(draw, B, V) for _ in range(draw(st.integers(0, 3)))]
    mk = draw(st.integers(1, 3))
    if draw(st.booleans()):
        stages.append(fs.TopK(_per_row(draw, B, -2, 50, True), min_keep=mk))
    if draw(st.booleans()):
        stages.append(fs.TopP(_per_row(draw, B, 0, 1.05), min_keep=mk))
    if draw(st.booleans()):
        stages.append(fs.MinP(_per_row(draw, B, 0, 0.3), min_keep=mk))
    stages += [_later_stage(draw, B) for _ in range(draw(st.integers(0, 2)))]
    stages.append(draw(st.sampled_from([
        lambda: fs.Dist(), lambda: fs.Greedy(), lambda: fs.Mirostat(tau=3.0),
        lambda: fs.MirostatV2(tau=4.0), lambda: fs.AdaptiveP(0.3)]))())
    kind = draw(st.sampled_from(["llm", "flat", "ties"]))
    seed = draw(st.integers(0, 2**31))
    return B, V, stages, kind, seed


def _logits(kind, B, V, seed):
    if kind == "flat":
        return workloads.flat(B, V, seed)
    x = workloads.llm_like(B, V, seed)
    return np.round(x, 0).astype(np.float32) if kind == "ties" else x


def _same_logits(got, want):
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    f = np.isfinite(want)
    err = np.abs(got[f].astype(np.float64) - want[f]) / np.maximum(1.0, np.abs(want[f]))
    assert err.size == 0 or err.max() <= VALUE_TOL


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=chains())
@pytest.mark.parametrize("backend", ["numba", "c"])
def test_engine_loop_matches_reference(backend, case):
    if not fs.backends()[backend]:
        pytest.skip(fs.backends()[backend].reason)
    B, V, stages, kind, seed = case
    seeds = np.arange(B, dtype=np.uint64) + np.uint64(seed)
    # flag: a bias may ban a whole small vocabulary; both must give -1 for that row
    ref = fs.SamplerChain(stages, seed=seeds, backend="numpy", on_invalid="flag")
    got = fs.SamplerChain(stages, seed=seeds, backend=backend, on_invalid="flag")
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, V, size=(int(rng.integers(0, 30)), B))
    prompt[:, 0] = prompt[:, 0] % max(1, V // 4)    # repeats, for DRY and the n-gram ban
    for step in prompt:
        ref.accept(step)
        got.accept(step)
    for step in range(22):
        x = _logits(kind, B, V, seed + step)
        _same_logits(got.process(x), ref.process(x))
        t_ref = ref.sample(x)
        t_got = got.sample(x)
        assert np.array_equal(t_got, t_ref), (step, stages)
        ref.accept(t_ref)
        got.accept(t_got)
        if step == 10:  # the rows move to fresh chains, as an engine's batches do
            states = got.state_of()
            ref.load_states(ref.state_of())
            got = fs.SamplerChain(stages, seed=seeds, backend=backend, on_invalid="flag")
            got.load_states(states)
    for h_got, h_ref in zip(got.history, ref.history):
        assert np.array_equal(h_got, h_ref)


@pytest.mark.parametrize("chain", [W10A, W10B], ids=["W10a", "W10b"])
def test_w10_chains_long_loop(fast_backend, chain):
    """The W10 chains at a real vocabulary, B = 3, a 300-token prompt."""
    V, B = 32000, 3
    rng = np.random.default_rng(5)
    ref = fs.SamplerChain(chain, seed=np.arange(B, dtype=np.uint64), backend="numpy")
    got = fs.SamplerChain(chain, seed=np.arange(B, dtype=np.uint64), backend=fast_backend)
    for step in rng.integers(0, 200, size=(300, B)):
        ref.accept(step)
        got.accept(step)
    for step in range(25):
        x = workloads.llm_like(B, V, 100 + step)
        t = ref.sample(x)
        assert np.array_equal(got.sample(x), t), step
        ref.accept(t)
        got.accept(t)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_invalid_input_under_an_edit_still_raises(fast_backend, bad):
    """An edit could overwrite the bad logit (a ban writes -inf, a penalty saturates
    +inf): the row is still the input's fault."""
    x = workloads.llm_like(2, 500, 0)
    x[1, 7] = bad
    for stages in ([fs.LogitBias({7: -np.inf}), fs.TopK(5)],
                   [fs.Penalties(1.3), fs.TopK(5)],
                   [fs.NoRepeatNGram(1), fs.MinP(0.1), fs.XTC(1.0, 0.01)]):
        chain = fs.SamplerChain(stages, backend=fast_backend)
        chain.accept(np.array([7, 7]))
        with pytest.raises(ValueError, match=r"rows? \[?1\]?.*NaN, \+inf"):
            chain.sample(x)
        flag = fs.SamplerChain(stages, backend=fast_backend, on_invalid="flag")
        flag.accept(np.array([7, 7]))
        tokens = flag.sample(x)
        assert tokens[1] == -1 and 0 <= tokens[0] < 500
        assert np.isneginf(flag.process(x)[1]).all()


@pytest.mark.parametrize("tail", [[fs.TopK(3)], [fs.MinP(0.1), fs.XTC(1.0, 0.01)],
                                  [fs.Typical(0.5)]], ids=["fused", "candidates", "stages"])
def test_edits_that_empty_a_row(backend, tail):
    V = 6
    x = np.zeros((2, V), np.float32)
    x[1, 2:] = -np.inf
    chain = fs.SamplerChain([fs.LogitBias({0: -np.inf, 1: -np.inf})] + tail, backend=backend)
    with pytest.raises(ValueError, match=r"row.*1.*masked by the chain's stages"):
        chain.sample(x)
    mirostat = [fs.LogitBias({0: -np.inf, 1: -np.inf})] + tail + [fs.MirostatV2()]
    flag = fs.SamplerChain(mirostat, backend=backend, on_invalid="flag")
    tokens = flag.sample(x)
    assert tokens[1] == -1 and 2 <= tokens[0] < V
    mu = [s["mu"] for s in flag.state_of()]
    assert mu[1] == 2 * 5.0 and mu[0] != 2 * 5.0   # only the drawn row's mu moved


# ---------------------------------------------------------------- per-token state


def test_history_is_a_growing_buffer(backend):
    chain = fs.SamplerChain([fs.Penalties(1.2, last_n=3), fs.TopK(2)], backend=backend)
    for t in range(200):                      # several doublings of the buffer
        chain.accept(np.array([t % 50, -1]))  # -1: a flagged row stays as it was
    h = chain.history
    assert [len(r) for r in h] == [200, 0]
    assert np.array_equal(h[0], np.arange(200) % 50)
    assert chain.positions.tolist() == [200, 0]
    with pytest.raises(ValueError):
        h[0][0] = 1                           # views of the chain's state are read-only
    assert chain.state_of()[0]["history"].flags.writeable


def test_accepted_tokens_are_checked_once_v_is_known(backend):
    chain = fs.SamplerChain([fs.Penalties(1.2), fs.TopK(2)], backend=backend)
    chain.accept(np.array([10]))             # V not known yet: checked on the first call
    with pytest.raises(ValueError, match=r"history row 0 .* outside \[0, V=8\)"):
        chain.sample(np.zeros(8, np.float32))
    chain = fs.SamplerChain([fs.TopK(2)], backend=backend)
    chain.sample(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"accepted token 8 of row 0 is outside \[0, V=8\)"):
        chain.accept(np.array([8]))
    assert len(chain.history[0]) == 0         # nothing appended


def test_process_never_returns_the_working_copy(fast_backend):
    chain = fs.SamplerChain([fs.LogitBias({1: 2.0})], backend=fast_backend)
    x = workloads.llm_like(1, 64, 0)
    first = chain.process(x).copy()
    a = chain.process(x)
    chain.process(workloads.llm_like(1, 64, 1))
    assert np.array_equal(a, first)


def test_compact_and_expand_round_trip():
    ids = np.array([3, 9, 1, 4, 5], np.int32)
    vals = np.array([1, 2, 3, 4, 5], np.float32)
    offsets = np.array([0, 2, 2, 5])
    block = fsplan.compact(ids, vals, offsets)
    assert block.shape == (3, 3)
    assert np.array_equal(block[0], [1, 2, -np.inf]) and np.isneginf(block[1]).all()
    full = fsplan.expand(block, ids, offsets, 10)
    assert full[0, 3] == 1 and full[0, 9] == 2 and full[2, 1] == 3 and full[2, 5] == 5
    assert np.isfinite(full).sum() == 5
    assert fsplan.token_ids(np.array([1, -1, 2]), ids, offsets).tolist() == [9, -1, 5]


# ---------------------------------------------------------------- edits' out=


def _edit_calls(B, V, rng):
    hist = [rng.integers(0, V, int(rng.integers(0, 80))) for _ in range(B)]
    hist[0] = np.tile(hist[0][:5], 6) if hist[0].size >= 5 else hist[0]   # repeats for DRY
    f = lambda lo, hi: rng.uniform(lo, hi, B)  # noqa: E731
    i = lambda lo, hi: rng.integers(lo, hi, B)  # noqa: E731
    return [
        ("logit_bias", (np.array([1, V - 1, 1]), np.array([1.5, -np.inf, -0.25]))),
        ("penalties", (hist, f(0.8, 1.5), f(0, 0.5), f(0, 0.5), i(-1, 40))),
        ("dry", (hist, f(0, 2), f(1, 2.5), i(0, 4), i(-1, 40), np.array([2]))),
        ("no_repeat_ngram", (hist, i(0, 4))),
    ]


@pytest.mark.parametrize("backend", ["numpy", "numba", "c"])
def test_edit_ops_write_into_out(backend):
    """``out=other`` gives the same result as a new array, and ``out=logits`` edits in
    place; the input is untouched unless it is ``out``."""
    if not fs.backends()[backend]:
        pytest.skip(fs.backends()[backend].reason)
    ops = fs.registry.load(backend)
    rng = np.random.default_rng(3)
    for B in (1, 3):
        x = workloads.llm_like(B, 257, int(rng.integers(1000)))
        x[:, 5] = -np.inf
        for name, args in _edit_calls(B, 257, rng):
            fn = getattr(ops, name)
            want = fn(x, *args)
            keep = x.copy()
            out = np.full_like(x, 123.0)
            assert fn(x, *args, out=out) is out and np.array_equal(out, want)
            assert np.array_equal(x, keep)
            y = x.copy()
            assert fn(y, *args, out=y) is y and np.array_equal(y, want), name
            if backend != "numpy":
                with pytest.raises(ValueError, match="out must be"):
                    fn(x, *args, out=np.zeros((B, 256), np.float32))
