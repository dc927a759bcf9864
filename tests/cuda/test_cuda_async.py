"""The device path never waits for the GPU with ``on_invalid="flag"`` (issue 5: "fs.sample
never synchronises with the host"), and the small kernels around the canonical one.

"Never waits" is checked by making every device-to-host copy and every synchronise
raise during the call: under the simulator those are the only ways the host could
wait for device work.
"""

import numpy as np
import pytest
from cuda_helpers import host
from fastsample.kernels.cuda import ops
from numba import cuda

import fastsample as fs
from fastsample import workloads

SEEDS = np.array([3, 9, 2**40 + 1, 5], dtype=np.uint64)


@pytest.fixture
def no_host_waits(monkeypatch):
    """Inside the ``with``: a device-to-host copy or a synchronise raises."""
    from numba.cuda.simulator.cudadrv import devicearray

    class Guard:
        def __enter__(self):
            def refuse(*args, **kwargs):
                raise AssertionError("the call waited for the device (copy to host or sync)")

            monkeypatch.setattr(devicearray.FakeCUDAArray, "copy_to_host", refuse)
            monkeypatch.setattr(cuda, "synchronize", refuse)
            return self

        def __exit__(self, *exc):
            monkeypatch.undo()

    return Guard()


def rows(seed=0):
    x = workloads.llm_like(4, 96, seed)
    x[1, 7] = np.nan
    x[3] = -np.inf
    return x


def test_flag_mode_never_waits_and_flags_rows(dev, no_host_waits):
    x = rows()
    temperature = np.array([0.8, 0.9, np.nan, 1.1])      # row 2: a bad device parameter
    top_p = np.array([0.9, 0.5, 0.7, -0.1])
    min_keep = np.array([1, 2, 1, 0])
    d_x, d_t, d_p, d_k = dev(x), dev(temperature), dev(top_p), dev(min_keep)
    d_seed = dev(SEEDS.astype(np.int64))
    with no_host_waits:
        got = fs.sample(d_x, temperature=d_t, top_p=d_p, min_keep=d_k, top_k=20,
                        seed=d_seed, position=3, on_invalid="flag")
    got = host(got)
    assert got.dtype == np.int32 and got.shape == (4,)
    ref = fs.sample(x[0], temperature=0.8, top_p=0.9, top_k=20, seed=int(SEEDS[0]),
                    position=3, backend="numpy")
    assert got[0] == ref
    assert list(got[1:]) == [-1, -1, -1]   # NaN row; NaN temperature; -inf row + bad params


def test_flag_mode_negative_device_seed_flags_its_row(dev, no_host_waits):
    x = workloads.llm_like(3, 64, seed=1)
    seeds = np.array([4, -1, 6], dtype=np.int64)
    with no_host_waits:
        got = fs.sample(dev(x), seed=dev(seeds), top_k=10, on_invalid="flag")
    got = host(got)
    want = fs.sample(x, seed=np.array([4, 0, 6]), top_k=10, backend="numpy")
    assert got[1] == -1
    np.testing.assert_array_equal(got[[0, 2]], want[[0, 2]])


def test_chain_flag_mode_never_waits(dev, no_host_waits):
    x = rows(seed=3)
    chain = fs.SamplerChain([fs.TopK(8), fs.Temperature(0.7)], seed=SEEDS, backend="cuda",
                            on_invalid="flag")
    ref = fs.SamplerChain([fs.TopK(8), fs.Temperature(0.7)], seed=SEEDS, backend="numpy",
                          on_invalid="flag")
    d_x = dev(x)
    with no_host_waits:
        got = chain.sample(d_x)
    np.testing.assert_array_equal(host(got), ref.sample(x))


def test_raise_mode_checks_device_parameters_on_the_host(dev):
    x = workloads.llm_like(2, 32, seed=2)
    with pytest.raises(ValueError, match="top_p must be finite and >= 0"):
        fs.sample(dev(x), top_p=dev(np.array([0.5, -1.0])))
    with pytest.raises(ValueError, match="min_keep must be >= 1"):
        fs.sample(dev(x), min_keep=dev(np.array([1, 0])))


@pytest.mark.parametrize("on_invalid", ["raise", "flag"])
def test_device_parameter_dtype_and_length_errors(dev, on_invalid):
    x = dev(workloads.llm_like(2, 32, seed=2))
    if on_invalid == "flag":   # checked from metadata: no copy
        with pytest.raises(TypeError, match="top_k must be an integer array"):
            fs.sample(x, top_k=dev(np.array([3.0, 4.0])), on_invalid=on_invalid)
    with pytest.raises(ValueError, match="temperature has (length 3|shape)"):
        fs.sample(x, temperature=dev(np.ones(3)), on_invalid=on_invalid)


def test_flag_params_kernel_rules(dev):
    cases = {
        "finite": (np.array([0.0, -2.0, np.inf, -np.inf, np.nan, 3.0]), [0, 0, 1, 1, 1, 0]),
        "non_negative": (np.array([0.0, -1e-9, 2.0, np.inf, np.nan, 0.5]), [0, 1, 0, 1, 1, 0]),
        "at_least_one": (np.array([1, 0, -3, 7, 2, 1], np.int64), [0, 1, 1, 0, 0, 0]),
    }
    for check, (values, bad) in cases.items():
        tokens = dev(np.arange(6, dtype=np.int32))
        ops.flag_params(tokens, dev(values), check)
        want = np.where(np.array(bad, bool), -1, np.arange(6))
        np.testing.assert_array_equal(host(tokens), want, err_msg=check)


def test_bfloat16_bits_are_widened_exactly(dev):
    rng = np.random.default_rng(0)
    f32 = rng.normal(0, 30, (3, 40)).astype(np.float32)
    f32[0, :3] = [np.inf, -np.inf, np.nan]
    bits32 = f32.view(np.uint32)
    bf16 = (bits32 >> 16).astype(np.uint16)          # truncation: exact bfloat16 values
    want = (bf16.astype(np.uint32) << 16).view(np.float32)
    for src in (bf16, bf16.view(np.int16)):           # torch hands over int16 bits
        got = host(ops.to_rows(dev(src)))
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    strided = host(ops.to_rows(dev(bf16)[:, ::2]))
    np.testing.assert_array_equal(strided.view(np.uint32), want[:, ::2].view(np.uint32))


def test_to_int64_widens_on_the_device(dev):
    tokens = np.array([0, -1, 2**31 - 1, 7], dtype=np.int32)
    out = ops.to_int64(dev(tokens))
    assert np.dtype(out.dtype) == np.int64
    np.testing.assert_array_equal(host(out), tokens.astype(np.int64))
    assert host(ops.to_int64(dev(np.zeros(0, np.int32)))).shape == (0,)


def test_raise_mode_waits_for_the_row_flags(dev, no_host_waits):
    # The guard itself: raising needs the flags on the host, so this call must trip it.
    x = dev(workloads.llm_like(2, 32, seed=2))
    with no_host_waits, pytest.raises(AssertionError, match="waited"):
        fs.sample(x, top_k=3)
