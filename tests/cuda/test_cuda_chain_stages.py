"""``SamplerChain`` on cuda with LogitBias, Penalties and DRY in front of the canonical
stages (and XTC after their truncations): tokens and masks identical to the numpy chain,
with the Penalties counts kept on the device and DRY's edits recomputed from the
growing history across ``sample`` / ``accept`` steps; docs/spec.md §12's W10a and W10b."""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values
from fastsample.kernels.cuda import ops

import fastsample as fs
from fastsample import rng, workloads
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
    gpu.sample(x)
    # refused by accept once the chain knows V, or else by the next call
    with pytest.raises(ValueError, match=r"row 0 .*outside \[0, V=96\)"):
        gpu.accept(np.array([V + 5, 1, 2]))
        gpu.sample(x)
    with pytest.raises(ValueError, match="outside"):
        pair(stage_lists()[0])[0].sample(x, history=[np.array([V]), [], []])


@pytest.mark.parametrize("stages, name", [
    ([fs.Penalties(1.1), fs.Penalties(1.2)], "Penalties"),
    ([fs.TopK(5), fs.Penalties(1.1)], "Penalties"),
    ([fs.TopK(5), fs.DRY(0.8)], "DRY"),
    ([fs.DRY(0.8), fs.DRY(0.5)], "DRY"),
    ([fs.XTC(0.5, 0.1), fs.TopK(5)], "XTC"),                          # before a cut
    ([fs.TopK(5), fs.Temperature(0.8), fs.XTC(0.5, 0.1)], "XTC"),     # after a last T
    ([fs.TopK(5, min_keep=2), fs.XTC(0.5, 0.1)], "XTC"),              # its own min_keep
    ([fs.MinP(0.1), fs.XTC(0.5, 0.1), fs.XTC(0.5, 0.2)], "XTC"),
    ([fs.MinP(0.1), fs.XTC(0.5, 0.1), fs.TopNSigma(1.0)], "TopNSigma"),
])
def test_unsupported_chains_name_the_stage(stages, name):
    with pytest.raises(BackendError, match=name):
        fs.SamplerChain(stages, backend="cuda")


# ---------------------------------------------------------------------- DRY and XTC

W10V = 80   # three chunks under the simulator: B = 1 takes the split path


def w10a(B):
    """W10a's chain; with B > 1 per-row parameters (W10c)."""
    if B == 1:
        return [fs.Penalties(repeat=1.1, last_n=64), fs.DRY(0.8, 1.75, 2, last_n=4096),
                fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)]
    r = np.random.default_rng(B)
    return [fs.Penalties(repeat=r.uniform(1.0, 1.3, B), last_n=64),
            fs.DRY(r.uniform(0.0, 2.0, B), r.uniform(1.0, 2.5, B), r.integers(1, 4, B),
                   last_n=4096, breakers=[3, 17]),
            fs.TopK(r.integers(0, 60, B)), fs.TopP(r.uniform(0.8, 1.0, B)),
            fs.MinP(r.uniform(0.0, 0.1, B)), fs.Temperature(r.uniform(0.5, 1.2, B))]


def w10b(B):
    """W10b's chain; with B > 1 per-row parameters (a few greedy rows)."""
    if B == 1:
        return [fs.Penalties(1.05, last_n=64), fs.MinP(0.02), fs.XTC(0.5, 0.1),
                fs.Temperature(1.0)]
    r = np.random.default_rng(B + 1)
    t = r.uniform(0.6, 1.4, B)
    t[::7] = 0.0
    return [fs.Penalties(r.uniform(1.0, 1.2, B), last_n=64), fs.MinP(r.uniform(0, 0.05, B)),
            fs.XTC(r.uniform(0.3, 0.9, B), r.uniform(0.02, 0.2, B)), fs.Temperature(t)]


def prompts(B):
    """Natural histories with copied spans, one token repeated, a short cycle."""
    out = [workloads.natural_history(300 + 40 * b, W10V, b) for b in range(B)]
    out[0] = np.tile([5, 9, 5, 11, 40, 2], 30)
    if B > 1:
        out[1] = np.full(5000, 7)
    return out


def xtc_rolls(chain):
    probability = next(s for s in chain.stages if isinstance(s, fs.XTC)).rows(chain._B)[0]
    return rng.uniform(chain._seeds, chain.positions, rng.STREAM_XTC) < probability


@pytest.mark.parametrize("name, B", [("W10a", 1), ("W10b", 1), ("W10a", 32), ("W10b", 32)])
def test_w10_chains_over_accepted_steps(name, B, dev):
    stages = (w10a if name == "W10a" else w10b)(B)
    assert ops._use_split(B, W10V, None) == (B == 1)   # B = 1 split, B = 32 one block
    seeds = np.arange(B, dtype=np.uint64) + np.uint64(3)
    gpu = fs.SamplerChain(stages, seed=seeds, backend="cuda")
    ref = fs.SamplerChain(stages, seed=seeds, backend="numpy")
    for chain in (gpu, ref):
        chain.load_states([{"history": h} for h in prompts(B)])
    rolled, dried = [], 0
    for step in range(3 if B == 1 else 2):
        x = workloads.llm_like(B, W10V, seed=30 + step)
        if name == "W10b":
            rolled.append(xtc_rolls(ref))
        else:   # the tokens DRY penalises go to the top, so its edits show
            dry = ref.stages[1]
            for b, h in enumerate(ref.history):
                ids, _ = fs.dry_penalty(h, W10V, *[v[b] for v in dry.rows(B)[:3]],
                                        breakers=dry.breakers, last_n=4096,
                                        backend="numpy")
                x[b, ids] = x[b].max() + 0.5
                dried += ids.size
        want = ref.sample(x)
        np.testing.assert_array_equal(host(gpu.sample(dev(x))), want, err_msg=f"step {step}")
        same_mask_and_values(host(gpu.process(dev(x))), ref.process(x))
        gpu.accept(dev(want))
        ref.accept(want)
    for g, r in zip(gpu.history, ref.history):
        np.testing.assert_array_equal(g, r)
    if rolled:   # XTC acted on some (row, step) and not on others
        rolled = np.concatenate(rolled)
        assert rolled.any() and not rolled.all()
    else:        # DRY penalised something
        assert dried > 0


@pytest.mark.parametrize("stages", [
    [fs.Temperature(0.7), fs.TopK(10), fs.XTC(1.0, 0.05)],          # HF order
    [fs.Temperature(1.3), fs.XTC(1.0, 0.05)],                       # no cut: T first
    [fs.XTC(np.array([1.0, 0.0, 1.0]), 0.02), fs.Temperature(0.9)],
    [bias(), fs.DRY(1.5, allowed_length=1), fs.Penalties(1.3, presence=0.5), fs.TopP(0.99),
     fs.XTC(1.0, np.array([0.05, 0.1, 0.6]), min_keep=1)],
    [fs.DRY(2.0, base=1.2, allowed_length=1, breakers=[40]), fs.MinP(0.01, min_keep=3),
     fs.XTC(1.0, 0.01, min_keep=3), fs.Temperature(0.0)],            # greedy after XTC
], ids=["hf", "t-first", "xtc-only", "prelude-xtc", "greedy"])
def test_dry_and_xtc_placements(stages, dev):
    gpu, ref = pair(stages)
    prompt = [np.tile([5, 9, 40, 5, 9, 2], 4), np.array([1, 2, 1, 2, 1]), np.arange(12) % 5]
    gpu.load_states([{"history": h} for h in prompt])
    ref.load_states([{"history": h} for h in prompt])
    for step in range(2):
        x = workloads.llm_like(B, V, seed=50 + step)
        want = ref.sample(x)
        np.testing.assert_array_equal(host(gpu.sample(dev(x))), want)
        same_mask_and_values(host(gpu.process(dev(x))), ref.process(x))
        gpu.accept(want)
        ref.accept(want)


def test_w10_invalid_rows_raise_or_flag(dev):
    x = workloads.llm_like(B, V, seed=8)
    x[1, 5] = np.nan
    for stages in (w10a(1), w10b(1)):
        gpu, ref = pair(stages)
        with pytest.raises(ValueError, match=r"rows? \[?1"):
            gpu.sample(dev(x))
        flag, ref_flag = pair(stages, on_invalid="flag")
        got = host(flag.sample(dev(x)))
        assert got[1] == -1
        np.testing.assert_array_equal(got, ref_flag.sample(x))
        assert np.isneginf(host(flag.process(dev(x)))[1]).all()


def test_dry_history_and_breakers_outside_the_vocabulary(dev):
    x = dev(workloads.llm_like(B, V, seed=2))
    with pytest.raises(ValueError, match="breaker"):
        fs.SamplerChain([fs.DRY(0.8, breakers=[V]), fs.TopK(5)], backend="cuda").sample(x)
    with pytest.raises(ValueError, match="outside"):
        fs.SamplerChain([fs.DRY(0.8), fs.TopK(5)], backend="cuda").sample(
            x, history=[np.array([V]), [], []])
