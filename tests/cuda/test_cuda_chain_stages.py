"""``SamplerChain`` on cuda with LogitBias and Penalties in front of the canonical stages:
tokens and masks identical to the numpy chain, with the Penalties counts kept on the
device across ``sample`` / ``accept`` steps."""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values

import fastsample as fs
from fastsample import workloads
from fastsample.registry import BackendError

V = 96
B = 3


def bias():
    return fs.LogitBias(([3, 7, 7, 50, 95], [2.5, -1.0, 0.75, -np.inf, 30.0]))


def stage_lists():
    return [
        [fs.Penalties(repeat=1.3, frequency=0.2, presence=0.1, last_n=4), fs.TopK(20),
         fs.Temperature(0.8)],
        [bias(), fs.Penalties(repeat=np.array([1.1, 2.0, 1.0]), last_n=-1), fs.TopP(0.9)],
        [fs.Penalties(frequency=0.5, last_n=np.array([0, 2, 8])), bias(), fs.MinP(0.05),
         fs.Temperature(1.2)],
        [bias(), fs.Temperature(0.7), fs.TopK(10)],                       # HF order
        [fs.Penalties(repeat=1.5, last_n=3)],                              # then Dist only
    ]


def pair(stages, **kw):
    return (fs.SamplerChain(stages, seed=np.array([1, 2, 3], np.uint64), backend="cuda", **kw),
            fs.SamplerChain(stages, seed=np.array([1, 2, 3], np.uint64), backend="numpy", **kw))


def test_steps_with_accept_match_reference(dev):
    prompt = [np.array([3, 3, 9, 50]), np.array([], np.int64), np.arange(12) % 5]
    for stages in stage_lists():
        gpu, ref = pair(stages)
        gpu.load_states([{"history": h} for h in prompt])
        ref.load_states([{"history": h} for h in prompt])
        for step in range(5):   # windows fill and slide: counts updated on the device
            x = workloads.llm_like(B, V, seed=10 + step)
            want = ref.sample(x)
            np.testing.assert_array_equal(host(gpu.sample(dev(x))), want,
                                          err_msg=f"{stages} step {step}")
            same_mask_and_values(host(gpu.process(dev(x))), ref.process(x))
            # device tokens are accepted as they are; the penalty makes repeats matter
            gpu.accept(dev(want))
            ref.accept(want)
        for g, r in zip(gpu.history, ref.history):
            np.testing.assert_array_equal(g, r)


def test_explicit_history_and_reset(dev):
    stages = stage_lists()[0]
    gpu, ref = pair(stages)
    x = workloads.llm_like(B, V, seed=4)
    hist = np.array([[1, 2, 2, 0], [5, 5, 5, 5], [9, 8, 7, 6]])
    lens = np.array([3, 4, 0])
    np.testing.assert_array_equal(host(gpu.sample(dev(x), history=hist, history_len=lens)),
                                  ref.sample(x, history=hist, history_len=lens))
    gpu.accept(np.array([4, 4, 4]))
    ref.accept(np.array([4, 4, 4]))
    gpu.reset()
    ref.reset()
    np.testing.assert_array_equal(host(gpu.sample(dev(x))), ref.sample(x))


def test_bias_that_bans_every_token_empties_the_row(dev):
    x = workloads.llm_like(2, 8, seed=1)
    ban = fs.LogitBias((np.arange(8), np.full(8, -np.inf)))
    chain = fs.SamplerChain([ban, fs.TopK(3)], backend="cuda")
    with pytest.raises(ValueError, match="rows"):
        chain.sample(dev(x))
    flag = fs.SamplerChain([ban, fs.TopK(3)], backend="cuda", on_invalid="flag")
    assert list(host(flag.sample(dev(x)))) == [-1, -1]
    assert np.isneginf(host(flag.process(dev(x)))).all()


def test_history_token_outside_vocabulary(dev):
    gpu, _ = pair(stage_lists()[0])
    x = dev(workloads.llm_like(B, V, seed=2))
    gpu.sample(x)   # the chain now knows V: accept refuses the token, appending nothing
    with pytest.raises(ValueError, match=r"accepted token 101 of row 0 is outside \[0, V=96\)"):
        gpu.accept(np.array([V + 5, 1, 2]))
    assert [len(h) for h in gpu.history] == [0, 0, 0]
    with pytest.raises(ValueError, match="outside"):
        pair(stage_lists()[0])[0].sample(x, history=[np.array([V]), [], []])


@pytest.mark.parametrize("stages, name", [
    ([fs.Penalties(1.1), fs.Penalties(1.2)], "Penalties"),
    ([fs.TopK(5), fs.Penalties(1.1)], "Penalties"),
    ([fs.DRY(0.8), fs.TopK(5)], "DRY"),
    ([bias(), fs.XTC(0.5, 0.1)], "XTC"),
])
def test_unsupported_chains_name_the_stage(stages, name):
    with pytest.raises(BackendError, match=name):
        fs.SamplerChain(stages, backend="cuda")
