"""llama-cpp-python integration (issue #7), called the way llama-cpp-python calls a
``logits_processor`` (``(input_ids np.intc (L,), scores float32 (V,))``), without a
model and without llama_cpp installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample.integrations.llama_cpp import LlamaCppDraw, LlamaCppLogitsProcessor

V = 400


def _model(seq):
    """A stand-in model: logits that are a pure function of the sequence."""
    rng = np.random.default_rng([len(seq), *seq[-2:]])
    row = -1.3 * np.log1p(rng.permutation(V)) + 0.5 * rng.standard_normal(V)
    row[np.asarray(seq[-6:], dtype=np.int64)] += 2.5  # repetition for the penalties to fight
    return row.astype(np.float32)


def _stages():
    return [fs.Penalties(repeat=1.3, frequency=0.2, last_n=32), fs.DRY(0.9, allowed_length=2),
            fs.TopK(60), fs.TopP(0.95), fs.MinP(0.02), fs.Temperature(0.9)]


def _greedy_loop(processor, prompt, n):
    """llama-cpp-python with temperature=0: argmax of the processed scores."""
    ids = np.array(prompt, dtype=np.intc)
    for _ in range(n):
        scores = _model(ids.tolist())
        out = processor(ids, scores)
        assert out.dtype == np.float32 and out.shape == (V,)
        ids = np.append(ids, np.intc(int(np.argmax(out))))
    return ids[len(prompt):].tolist()


def test_processor_is_chain_process_with_history_from_input_ids(backend):
    rng = np.random.default_rng(0)
    proc = LlamaCppLogitsProcessor(_stages(), seed=3, backend=backend)
    ref = fs.SamplerChain(_stages(), seed=3, backend="numpy")
    ids = rng.integers(0, V, 20).astype(np.intc)
    for step in range(5):
        scores = _model(ids.tolist())
        before = scores.copy()
        got = proc(ids, scores)
        want = ref.process(scores, history=ids.astype(np.int64), position=len(ids))
        np.testing.assert_array_equal(scores, before)  # input untouched
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=0, atol=1e-5 * max(1, np.abs(want[fin]).max()))
        assert np.isneginf(got).sum() > 0
        ids = np.append(ids, np.intc(int(np.flatnonzero(fin)[step % fin.sum()])))


@pytest.mark.parametrize("terminal", [fs.Dist(), fs.Mirostat(tau=4.0, eta=0.4)],
                         ids=["dist", "mirostat"])
def test_draw_gives_the_chains_own_tokens(terminal, backend):
    """Greedy over LlamaCppDraw's mask = SamplerChain.sample with the prompt accepted
    token by token and the chain's own history: the conventions agree."""
    stages = _stages() + [terminal]
    prompt = [5, 17, 17, 301, 42, 5, 17]
    got = _greedy_loop(LlamaCppDraw(stages, seed=9, backend=backend), prompt, 25)
    chain = fs.SamplerChain(stages, seed=9, backend="numpy")
    for t in prompt:
        chain.accept([t])
    want = []
    for _ in range(25):
        t = chain.sample(_model(prompt + want))
        chain.accept([t])
        want.append(t)
    assert got == want
    greedy = _greedy_loop(lambda ids, s: s, prompt, 25)
    assert got != greedy  # the draw is fastsample's, not llama.cpp's argmax


def test_new_completion_resets_state(backend):
    draw = LlamaCppDraw([fs.Temperature(1.1), fs.MirostatV2(tau=3.0, eta=0.5)], seed=1, backend=backend)
    a = _greedy_loop(draw, [1, 2, 3], 20)
    b = _greedy_loop(draw, [1, 2, 3], 20)  # same processor, new completion
    c = _greedy_loop(draw, [7, 8], 20)
    d = _greedy_loop(LlamaCppDraw([fs.Temperature(1.1), fs.MirostatV2(tau=3.0, eta=0.5)], seed=1,
                                  backend=backend), [7, 8], 20)
    assert a == b and c == d


def test_strided_scores_like_llama_cpp_recarray(backend):
    """llama-cpp-python may pass the ``logit`` field of a token-data recarray: a
    strided float32 view. It must work and come back as a plain float32 array."""
    data = np.zeros(V, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)],
                                      align=True))
    data["id"] = np.arange(V)
    data["logit"] = _model([3, 4])
    proc = LlamaCppLogitsProcessor([fs.TopK(10)], backend=backend)
    out = proc(np.array([3, 4], dtype=np.intc), data["logit"])
    assert out.flags.c_contiguous and np.isfinite(out).sum() == 10
    data["logit"][:] = out  # what llama-cpp-python does with the result
    assert np.isfinite(data["logit"]).sum() == 10
    draw = LlamaCppDraw([fs.TopK(10)], seed=2, backend=backend)
    t = int(np.argmax(draw([3, 4], data["logit"])))  # a list of ids is fine too
    assert t == fs.SamplerChain([fs.TopK(10)], seed=2, backend="numpy").sample(
        data["logit"].copy(), position=2)


def test_bad_input():
    proc = LlamaCppLogitsProcessor([fs.Penalties(1.2)])
    with pytest.raises(TypeError, match="floating-point"):
        proc(np.array([1], dtype=np.intc), np.arange(V))
    with pytest.raises(ValueError, match=f"history has token {V + 3} outside"):
        proc(np.array([1, V + 3], dtype=np.intc), np.zeros(V, dtype=np.float32))
    with pytest.raises(ValueError, match="input_ids must be 1-D"):
        proc(np.zeros((1, 2), dtype=np.intc), np.zeros(V, dtype=np.float32))
    flagged = LlamaCppDraw([fs.TopK(3)], on_invalid="flag")
    nan = np.full(V, np.nan, dtype=np.float32)
    np.testing.assert_array_equal(flagged([1], nan), nan)
