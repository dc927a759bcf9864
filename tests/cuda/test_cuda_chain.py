"""``SamplerChain`` on the cuda backend: the chains of ``fs.sample`` (TopK, TopP, MinP,
Temperature, Dist); masks and tokens identical to the numpy reference chain."""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values

import fastsample as fs
from fastsample import workloads


def chains(backend, seed=7):
    return [
        fs.SamplerChain([fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
                        seed=seed, backend=backend),
        fs.SamplerChain([fs.Temperature(0.6), fs.TopK(8), fs.MinP(0.1)], seed=seed,
                        backend=backend),
        fs.SamplerChain([fs.TopP(np.array([0.5, 0.9, 0.99])), fs.Temperature(1.4)],
                        seed=np.array([1, 2, 3], dtype=np.uint64), backend=backend),
        fs.SamplerChain([fs.TopK(3, min_keep=2), fs.TopP(0.1, min_keep=2)], seed=seed,
                        backend=backend),
        fs.SamplerChain([fs.Dist()], seed=seed, backend=backend),
    ]


def test_chain_sample_and_accept_match_reference(dev):
    x = workloads.llm_like(3, 128, seed=2)
    x[1, :100] = -np.inf
    for gpu, ref in zip(chains("cuda"), chains("numpy")):
        for _ in range(2):         # accept advances the positions of both alike
            got = gpu.sample(dev(x))
            want = ref.sample(x)
            np.testing.assert_array_equal(host(got), want)
            gpu.accept(got)        # device tokens are accepted as they are
            ref.accept(want)
        np.testing.assert_array_equal(gpu.positions, ref.positions)


def test_chain_process_matches_reference(dev):
    x = workloads.llm_like(3, 128, seed=3)
    x[2] = np.round(x[2])
    for gpu, ref in zip(chains("cuda"), chains("numpy")):
        out = gpu.process(dev(x))
        same_mask_and_values(host(out), ref.process(x))
        same_mask_and_values(gpu.process(x), ref.process(x))   # host logits too


def test_random_rows_masks_and_tokens(dev):
    rng = np.random.default_rng(42)
    for trial in range(4):
        V = int(rng.integers(1, 160))
        x = rng.normal(0, 3, (3, V)).astype(np.float32)
        x[rng.random((3, V)) < rng.random()] = -np.inf
        if trial % 2:
            x = np.round(x)                          # ties
        x[:, int(rng.integers(V))] = rng.normal()    # every row keeps a finite logit
        stages = [fs.TopK(rng.integers(-1, V + 2, 3)), fs.TopP(rng.random(3)),
                  fs.MinP(rng.random(3) * 0.5), fs.Temperature(rng.uniform(0.2, 2.0, 3))]
        if trial >= 2:
            stages = stages[-1:] + stages[:-1]       # HF order
        seeds = rng.integers(0, 2**63, 3).astype(np.uint64)
        gpu = fs.SamplerChain(stages, seed=seeds, backend="cuda")
        ref = fs.SamplerChain(stages, seed=seeds, backend="numpy")
        same_mask_and_values(host(gpu.process(dev(x))), ref.process(x))
        np.testing.assert_array_equal(host(gpu.sample(dev(x))), ref.sample(x))


def test_auto_chain_takes_device_logits(dev):
    x = workloads.llm_like(2, 100, seed=4)
    stages = [fs.TopK(10), fs.Temperature(0.9)]
    got = fs.SamplerChain(stages, seed=5).sample(dev(x))
    assert hasattr(got, "copy_to_host")   # stays on the device
    np.testing.assert_array_equal(host(got), fs.SamplerChain(stages, seed=5,
                                                             backend="numpy").sample(x))
    one = fs.SamplerChain(stages, seed=5).sample(dev(x[0]))
    assert isinstance(one, int)


def test_chain_invalid_rows(dev):
    x = workloads.llm_like(3, 50, seed=6)
    x[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        fs.SamplerChain([fs.TopK(5)], backend="cuda").sample(dev(x))
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        fs.SamplerChain([fs.TopK(5)], backend="cuda").process(dev(x))
    chain = fs.SamplerChain([fs.TopK(5)], seed=1, backend="cuda", on_invalid="flag")
    tokens = host(chain.sample(dev(x)))
    assert tokens[1] == -1
    ref = fs.SamplerChain([fs.TopK(5)], seed=1, backend="numpy", on_invalid="flag")
    np.testing.assert_array_equal(tokens, ref.sample(x))
    out = host(chain.process(dev(x)))
    assert np.isneginf(out[1]).all() and np.isfinite(out[0]).sum() == 5


@pytest.mark.parametrize("stages, named", [
    ([fs.TopK(5), fs.DRY(0.8)], "DRY"),          # DRY after a truncation
    ([fs.TopK(5), fs.Greedy()], "Greedy"),
    ([fs.TopK(5), fs.Mirostat()], "Mirostat"),
    ([fs.TopK(5), fs.Typical(0.9)], "Typical"),
])
def test_other_stages_fail_at_construction(stages, named):
    with pytest.raises(fs.BackendError, match=f"stage {named} has no kernel on backend 'cuda'"):
        fs.SamplerChain(stages, backend="cuda")


def test_non_canonical_order_fails_at_construction(dev):
    with pytest.raises(fs.BackendError, match="in that order"):
        fs.SamplerChain([fs.TopP(0.9), fs.TopK(5)], backend="cuda")
    with pytest.raises(fs.BackendError, match="min_keep"):
        fs.SamplerChain([fs.TopK(5, min_keep=2), fs.TopP(0.9)], backend="cuda")
    auto = fs.SamplerChain([fs.Penalties(repeat=1.1), fs.Typical(0.9)])   # a CPU chain
    with pytest.raises(fs.BackendError, match="Typical"):
        auto.sample(dev(workloads.llm_like(1, 20)))
