"""The benchmark peers run the same stages as fastsample: their tokens stay in the
reference's kept set and follow the reference's probabilities.

Skipped per peer when its package is not installed (the peers are optional extras).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample.cli import checker, peers
from fastsample import workloads as wl

V = 512
SAMPLE_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6"]


def _peer(name):
    ok, reason = peers.get(name).status()
    if not ok:
        pytest.skip(f"peer {name}: {reason}")
    return peers.get(name)


def _case(wid, B=None):
    import dataclasses

    case = wl.get(wid).cases[0]
    return case if B is None else dataclasses.replace(case, B=B)


def _tokens(out):
    """The peer's tokens as a flat int array (tensor, list of tensors or of ints)."""
    if isinstance(out, list):
        return np.concatenate([_tokens(o) for o in out]) if out else np.zeros(0, np.int64)
    if hasattr(out, "numpy"):
        return out.numpy().reshape(-1).astype(np.int64)
    return np.asarray(out, dtype=np.int64).reshape(-1)


def _reference_processed(prep):
    """The reference's processed logits of the workload (the draw's candidates)."""
    inp = prep.inputs
    x = np.atleast_2d(inp["logits"])
    stages = []
    for name, cls in (("top_k", fs.TopK), ("top_p", fs.TopP), ("min_p", fs.MinP),
                      ("temperature", fs.Temperature)):
        if name in inp:
            stages.append(cls(inp[name]))
    return fs.SamplerChain(stages, backend="numpy").process(x)


def test_sample_stages_follow_llama_cpp_order_and_drop_disabled():
    got = peers.sample_stages({"temperature": 1.0, "min_p": 0.05, "top_k": 0, "top_p": 0.95})
    assert [n for n, _ in got] == ["top_p", "min_p"]
    per_row = peers.sample_stages({"top_k": np.array([0, 40]), "temperature": np.array([1.0, 1.0])})
    assert [n for n, _ in per_row] == ["top_k"]


@pytest.mark.parametrize("name", ["torch", "hf", "llama.cpp"])
@pytest.mark.parametrize("wid", SAMPLE_WORKLOADS)
def test_peer_tokens_are_in_the_reference_kept_set(name, wid):
    peer = _peer(name)
    case = _case(wid, B=4 if wid == "W4" else None)
    prep = case.prepare(vocab=V, seed=3)
    kept = np.isfinite(_reference_processed(prep))
    fn = peer.call(case, prep)
    for _ in range(50):
        toks = _tokens(fn()).reshape(kept.shape[0], -1)[:, 0]
        assert ((toks >= 0) & (toks < V)).all()
        assert kept[np.arange(kept.shape[0]), toks].all(), (name, wid, toks)


@pytest.mark.parametrize("name", ["torch", "hf", "llama.cpp"])
@pytest.mark.parametrize("wid", ["W1", "W3", "W5"])
def test_peer_draws_follow_the_reference_probabilities(name, wid):
    peer = _peer(name)
    case = _case(wid)
    prep = case.prepare(vocab=V, seed=5)
    processed = _reference_processed(prep)[0].astype(np.float64)
    p = np.where(np.isfinite(processed), np.exp(processed - processed.max()), 0.0)
    fn = peer.call(case, prep)
    toks = np.concatenate([_tokens(fn()) for _ in range(3000)])
    res = checker.chi_square(toks, p / p.sum())
    assert res["outside"] == 0 and res["p"] >= checker.CHI2_ALPHA, res


@pytest.mark.parametrize("name", ["torch", "llama.cpp"])
def test_peer_topk_matches_reference(name):
    peer = _peer(name)
    case = wl.get("W7").cases[0]
    prep = case.prepare(vocab=V, seed=0)
    out = peer.call(case, prep)()
    if name == "torch":
        values, ids = out
        rv, ri = fs.topk(prep.inputs["x"], prep.inputs["k"], backend="numpy")
        np.testing.assert_array_equal(ids.numpy().reshape(-1), ri)
        np.testing.assert_array_equal(values.numpy().reshape(-1), rv)
    else:
        assert out == [prep.inputs["k"]]  # the array was cut to k entries


def test_torch_softmax_peer_matches_reference():
    peer = _peer("torch")
    case = wl.get("W9").cases[0]
    import dataclasses

    prep = dataclasses.replace(case, B=3).prepare(vocab=V, seed=0)
    got = peer.call(case, prep)().numpy()
    np.testing.assert_allclose(got, fs.softmax(prep.inputs["x"], backend="numpy"), rtol=1e-5, atol=1e-7)


def test_unsupported_operation_is_named():
    with pytest.raises(peers.Unsupported, match="hf has no dry_penalty"):
        peers.get("hf").call(wl.get("W8").cases[0], None)
    with pytest.raises(ValueError, match="unknown peer"):
        peers.get("vllm")


@pytest.mark.parametrize("name", ["torch", "hf", "llama.cpp"])
def test_peer_per_row_parameters_with_disabled_rows(name):
    """Rows whose stage is off (k = 0, p = 1, min_p = 0, T = 1) keep what the reference keeps."""
    import types

    peer = _peer(name)
    x = wl.llm_like(4, V, 11)
    inputs = {"logits": x, "top_k": np.array([0, 5, 40, 0]), "top_p": np.array([1.0, 0.9, 0.95, 0.5]),
              "min_p": np.array([0.0, 0.05, 0.0, 0.1]), "temperature": np.array([1.0, 0.8, 1.2, 1.0])}
    prep = types.SimpleNamespace(inputs=inputs, V=V)
    kept = np.isfinite(_reference_processed(prep))
    assert kept.sum(axis=1)[0] == V  # row 0: nothing enabled
    fn = peer.call(_case("W4"), prep)
    seen = np.zeros_like(kept)
    for _ in range(300):
        toks = _tokens(fn()).reshape(4, -1)[:, 0]
        assert kept[np.arange(4), toks].all(), (name, toks)
        seen[np.arange(4), toks] = True
    assert seen[0].sum() > 10  # row 0 is not cut (a k clamped to 1 would give one token)


@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_torch_logprobs_peer_matches_reference(mode):
    """W11's torch peer (vLLM's log_softmax + topk + gather): its top ids and logprobs,
    and the sampled token's logprob and rank, are the reference's for its own token."""
    peer = _peer("torch")
    case = next(c for c in wl.get("W11").cases if c.B == 1 and c.params["logprobs_mode"] == mode)
    prep = case.prepare(vocab=V, seed=0)
    tokens, token_lp, rank, top_ids, top_lp = peer.call(case, prep)()
    x = np.atleast_2d(prep.inputs["logits"])
    if mode == "processed":
        kw = {k: np.atleast_1d(prep.inputs[k]) for k in ("top_k", "top_p", "min_p", "temperature")}
        one = np.ones(1, np.int64)
        x = fs.reference.min_p(fs.reference.top_p(fs.reference.top_k(x, kw["top_k"], one),
                                                  kw["top_p"], one), kw["min_p"], one)
        x = fs.reference.temperature(x, kw["temperature"])
    lp, rk, ids, tl = fs.reference.logprobs(x, tokens.numpy().reshape(-1), 20)
    finite = np.isfinite(tl[0])
    np.testing.assert_array_equal(top_ids.numpy()[0][finite], ids[0][finite])
    np.testing.assert_allclose(top_lp.numpy()[0][finite], tl[0][finite], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(token_lp.numpy().reshape(-1), lp, rtol=1e-5, atol=1e-6)
    assert rank.numpy().tolist() == rk.tolist()
