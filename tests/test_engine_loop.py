"""Per-request state across batches (issue #7): ``SamplerChain.state_of`` /
``load_states`` and the continuous-batching example ``examples/engine_loop.py``.

The property under test: a request's tokens do not change when other requests join
or leave the batch (same seed, parameters, history, Mirostat state), on every CPU
backend, and the backends agree token for token.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

import fastsample as fs

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "engine_loop.py"
_spec = importlib.util.spec_from_file_location("engine_loop", _PATH)
engine_loop = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("engine_loop", engine_loop)  # dataclasses look their module up
_spec.loader.exec_module(engine_loop)


def _copy(requests):
    return [dataclasses.replace(r, output=[]) for r in requests]


def _outputs(finished):
    return {rid: r.output for rid, r in finished.items()}


# ---------------------------------------------------------------- the engine loop


@pytest.fixture(scope="module")
def requests():
    return engine_loop.demo_requests(n=12, seed=3)


def test_tokens_do_not_depend_on_the_batch(requests, backend):
    alone = {}
    for r in _copy(requests):
        alone.update(_outputs(engine_loop.Engine(max_batch=1, backend=backend).run({0: [r]})))
    everyone = _outputs(engine_loop.Engine(max_batch=12, backend=backend).run({0: _copy(requests)}))
    churn_engine = engine_loop.Engine(max_batch=4, backend=backend)
    reqs = _copy(requests)
    churn = _outputs(churn_engine.run({0: reqs[:3], 1: reqs[3:5], 4: reqs[5:9], 9: reqs[9:]}))
    # The churn run really moved running requests between rebuilt chains.
    assert sum(g.carried for g in churn_engine.groups.values()) >= 5
    assert {r.kind for r in requests} == {"dist", "mirostat"}
    assert any(len(o) >= 5 for o in alone.values())
    for rid, tokens in alone.items():
        assert everyone[rid] == tokens, f"request {rid}, whole batch at once"
        assert churn[rid] == tokens, f"request {rid}, requests joining and leaving"


def test_backends_agree_with_the_reference(requests):
    runs = {b: _outputs(engine_loop.Engine(max_batch=5, backend=b).run(
        {0: _copy(requests)[:6], 3: _copy(requests)[6:]})) for b in ("numpy", "numba")}
    assert runs["numba"] == runs["numpy"]


def test_seed_changes_the_tokens(requests, backend):
    """Guard against a test that cannot fail: the seed does reach the draw."""
    r = _copy(requests)[0]
    other = dataclasses.replace(r, seed=r.seed + 1, output=[])
    a = engine_loop.Engine(backend=backend).run({0: [r]})[r.rid].output
    b = engine_loop.Engine(backend=backend).run({0: [other]})[r.rid].output
    assert a != b


def test_example_main_runs(capsys):
    engine_loop.main()
    assert "identical" in capsys.readouterr().out


# ---------------------------------------------------------------- state_of / load_states


def _mirostat_chain(backend, tau):
    return fs.SamplerChain([fs.Penalties(repeat=1.2), fs.Temperature(0.9),
                            fs.Mirostat(tau=tau, eta=0.3)], backend=backend)


def test_rows_move_between_chains(backend):
    """Splitting a batch mid-generation and regrouping its rows changes no token or mu."""
    B, V, steps = 4, 500, 6
    tau = np.array([3.0, 4.0, 5.0, 6.0])
    logits = [fs.workloads.llm_like(B, V, seed=s) for s in range(2 * steps)]
    whole = _mirostat_chain(backend, tau)
    whole.load_states([{"seed": 10 + b, "history": np.arange(b + 1)} for b in range(B)])
    np.testing.assert_array_equal(whole.positions, np.arange(B) + 1)  # position = len(history)
    ref_tokens = []
    for x in logits:
        t = whole.sample(x)
        whole.accept(t)
        ref_tokens.append(t)
    # The same rows, split after `steps` steps into two chains in another order.
    first = _mirostat_chain(backend, tau)
    first.load_states([{"seed": 10 + b, "history": np.arange(b + 1)} for b in range(B)])
    for x in logits[:steps]:
        first.accept(first.sample(x))
    states = first.state_of()
    assert all(s["mu"] != 2 * tau[b] for b, s in enumerate(states))  # mu has moved
    order = [2, 0]
    left = _mirostat_chain(backend, tau[order])
    left.load_states([states[b] for b in order])
    right = _mirostat_chain(backend, tau[[3, 1]])
    right.load_states(first.state_of([3, 1]))
    for i, x in enumerate(logits[steps:], start=steps):
        tl, tr = left.sample(x[order]), right.sample(x[[3, 1]])
        left.accept(tl)
        right.accept(tr)
        np.testing.assert_array_equal(tl, ref_tokens[i][order])
        np.testing.assert_array_equal(tr, ref_tokens[i][[3, 1]])
    final = whole.state_of()
    for got, b in zip(left.state_of() + right.state_of(), order + [3, 1]):
        assert got["mu"] == final[b]["mu"] and got["position"] == final[b]["position"]
        np.testing.assert_array_equal(got["history"], final[b]["history"])


def test_state_of_returns_copies():
    chain = fs.SamplerChain([fs.TopK(3)], seed=[1, 2])
    chain.accept(np.array([4, 5]))
    s = chain.state_of()
    chain.accept(np.array([6, 7]))
    assert s[0] == {"seed": 1, "position": 1, "history": s[0]["history"]}
    assert s[0]["history"].tolist() == [4] and chain.state_of([-1])[0]["history"].tolist() == [5, 7]


def test_load_states_defaults_and_errors():
    chain = fs.SamplerChain([fs.MirostatV2(tau=np.array([2.0, 3.0]))], seed=[7, 8])
    chain.load_states([{}, {"seed": 99, "position": 5}])
    s = chain.state_of()
    assert [r["seed"] for r in s] == [7, 99] and [r["position"] for r in s] == [0, 5]
    assert [r["mu"] for r in s] == [4.0, 6.0]
    with pytest.raises(ValueError, match="no state yet"):
        fs.SamplerChain([fs.TopK(3)]).state_of()
    with pytest.raises(IndexError, match="row 2"):
        chain.state_of([2])
    with pytest.raises(ValueError, match=r"unknown keys \['ema_sum'\]"):
        chain.load_states([{"ema_sum": 1.0}, {}])
    with pytest.raises(TypeError, match="state 1 must be a dict"):
        chain.load_states([{}, [1, 2]])
    with pytest.raises(ValueError, match="history of state 0 has token -3"):
        chain.load_states([{"history": [1, -3]}, {}])
    with pytest.raises(ValueError, match="mu of state 1 is NaN"):
        chain.load_states([{}, {"mu": float("nan")}])
    with pytest.raises(ValueError, match="position of state 0"):
        chain.load_states([{"position": -1}, {}])
    with pytest.raises(ValueError, match="MirostatV2.tau has length 2 but the batch has B=3"):
        chain.load_states([{"seed": 1}, {"seed": 2}, {"seed": 3}])  # per-row tau is for 2 rows
    plain = fs.SamplerChain([fs.TopK(2)], seed=[7, 8])
    with pytest.raises(ValueError, match="seed has length 2 but the batch has B=3"):
        plain.load_states([{}, {}, {}])  # default seeds come from the chain's 2 seeds
    plain.load_states([{"seed": 1}, {"seed": 2}, {"seed": 3, "history": [50]}])  # fine
    with pytest.raises(ValueError, match="history row 2 has a token outside"):
        plain.sample(np.zeros((3, 10), dtype=np.float32))
