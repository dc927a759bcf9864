"""The sampling kernels read float16, bfloat16 (int16 bits) and strided float32 logits in
place (``target.load``): tokens and processed logits are bit-identical to those of
the same values given as contiguous float32, on both paths, and no converted copy is
made."""

import numpy as np
import pytest
from cuda_helpers import host
from fastsample.kernels.cuda import ops

import fastsample as fs
from fastsample import workloads

V = 80
SEEDS = np.array([5, 6, 7], dtype=np.uint64)
CONFIGS = [(40, 0.95, 0.05, 0.8, True), (0, 0.9, 0.0, 1.3, True), (7, 0.7, 0.1, 0.6, False),
           (0, 1.0, 0.0, 0.0, True)]


def rows32():
    """LLM-like, tied, partly masked rows whose values float16 and bfloat16 hold exactly."""
    x = workloads.llm_like(3, V, seed=2)
    x[1] = np.round(x[1] * 2) / 2
    x[2, ::3] = -np.inf
    return x.astype(np.float32)


def as_bf16_bits(x):
    """(int16 bits, float32 values) of x truncated to bfloat16."""
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    return bits.view(np.int16), (bits.astype(np.uint32) << 16).view(np.float32)


def variants(dev):
    """(name, device rows as the kernels read them, the same values as float32)."""
    x = rows32()
    h = x.astype(np.float16)
    bits, wide = as_bf16_bits(x)
    strided = np.zeros((3, 2 * V), np.float32)
    strided[:, ::2] = x
    return [("float16", dev(h), h.astype(np.float32)),
            ("bfloat16", dev(bits), wide),
            ("strided", dev(strided)[:, ::2], x)]


@pytest.mark.parametrize("split", [False, True])
def test_kernels_read_each_dtype_in_place(dev, split):
    # the split path runs ~15 launches a call in the simulator: two configs there
    configs = CONFIGS[::2] if split else CONFIGS
    for name, d, same in variants(dev):
        ref = dev(same)
        for k, p, mp, t, last in configs:
            args = (k, p, mp, t, 1, last)
            got = host(ops.sample_canonical(d, *args, SEEDS, 3, split=split))
            want = host(ops.sample_canonical(ref, *args, SEEDS, 3, split=split))
            np.testing.assert_array_equal(got, want, err_msg=name)
            np.testing.assert_array_equal(
                host(ops.process_canonical(d, *args, split=split)).view(np.uint32),
                host(ops.process_canonical(ref, *args, split=split)).view(np.uint32),
                err_msg=name)
        np.testing.assert_array_equal(host(ops.to_rows(d)), same, err_msg=name)


def test_sample_makes_no_converted_copy(dev, monkeypatch):
    x = rows32()
    h = x.astype(np.float16)
    want = fs.sample(h.astype(np.float32), top_k=20, top_p=0.9, seed=SEEDS, backend="numpy")
    d = dev(h)
    one = fs.sample(h[0].astype(np.float32), top_k=20, top_p=0.9, seed=5, backend="numpy")

    def refuse(*args, **kwargs):
        raise AssertionError("a converted copy of the logits was made")

    monkeypatch.setattr(ops, "to_rows", refuse)
    np.testing.assert_array_equal(host(fs.sample(d, top_k=20, top_p=0.9, seed=SEEDS)), want)
    assert fs.sample(dev(h[0]), top_k=20, top_p=0.9, seed=5) == one     # 1-D: a (1, V) view
    chain = fs.SamplerChain([fs.Penalties(1.2, last_n=4), fs.TopK(20), fs.TopP(0.9)],
                            seed=SEEDS, backend="cuda")
    ref = fs.SamplerChain([fs.Penalties(1.2, last_n=4), fs.TopK(20), fs.TopP(0.9)],
                          seed=SEEDS, backend="numpy")
    hist = [np.array([1, 2, 3]), np.array([0, 0]), np.array([], np.int64)]
    np.testing.assert_array_equal(host(chain.sample(d, history=hist)),
                                  ref.sample(h.astype(np.float32), history=hist))


def test_float64_and_strided_1d_are_converted(dev):
    x = rows32()
    want = fs.sample(x, top_k=20, seed=SEEDS, backend="numpy")
    np.testing.assert_array_equal(host(fs.sample(dev(x.astype(np.float64)), top_k=20,
                                                 seed=SEEDS)), want)
    wide = np.zeros(2 * V, np.float32)
    wide[::2] = x[0]
    assert fs.sample(dev(wide)[::2], top_k=20, seed=5) == want[0]
