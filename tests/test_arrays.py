"""Host arrays of other libraries (issue #7): torch CPU tensors and DLPack arrays in,
the caller's type out, with the same tokens and values as numpy input.

The numpy answer on ``backend="numpy"`` (the reference) is the oracle: the torch path
must give identical tokens and identical processed logits (same float32 input, same
kernels), and torch-typed parameters must act like their numpy equivalents.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import arrays

try:
    import torch
except ImportError:  # the DLPack and to_host tests below still run
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch is not installed (CPU: pip install torch==2.13.0)")

B, V = 6, 300
FLOAT_DTYPES = ["float32", "float16", "bfloat16", "float64"]


def _logits(B=B, V=V, seed=0):
    return fs.workloads.llm_like(B, V, seed=seed)


def _tensor(x, dtype):
    return torch.from_numpy(x).to(getattr(torch, dtype))


def _as_f32(t):
    """The float32 numpy array fastsample computes on for tensor ``t``."""
    return t.detach().float().numpy()


def _layouts(x):
    """(name, tensor) pairs holding the same logits in different memory layouts."""
    t = torch.from_numpy(x)
    wide = torch.zeros(x.shape[0], 2 * x.shape[1])
    wide[:, ::2] = t
    return [
        ("contiguous", t.clone()),
        ("transposed", t.T.contiguous().T),            # column-major
        ("strided", wide[:, ::2]),                      # every other column
        ("requires_grad", t.clone().requires_grad_()),
    ]


# ---------------------------------------------------------------- fs.sample


@needs_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_sample_tensor_dtypes_match_reference(dtype, backend):
    t = _tensor(_logits(), dtype)
    before = t.clone()
    kw = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "seed": 11, "position": 3}
    out = fs.sample(t, backend=backend, **kw)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.device.type == "cpu"
    ref = fs.sample(_as_f32(t), backend="numpy", **kw)
    assert out.shape == (B,)
    np.testing.assert_array_equal(out.numpy(), ref)
    assert torch.equal(t, before)


@needs_torch
@pytest.mark.parametrize("layout", range(4))
def test_sample_tensor_layouts(layout, backend):
    x = _logits(seed=1)
    name, t = _layouts(x)[layout]
    out = fs.sample(t, top_k=20, top_p=0.9, seed=np.arange(B, dtype=np.uint64), backend=backend)
    ref = fs.sample(x, top_k=20, top_p=0.9, seed=np.arange(B, dtype=np.uint64), backend="numpy")
    np.testing.assert_array_equal(out.numpy(), ref, err_msg=name)


@needs_torch
def test_sample_1d_tensor_gives_int(backend):
    x = _logits(B=1)[0]
    out = fs.sample(torch.from_numpy(x), top_k=5, seed=2, backend=backend)
    assert type(out) is int
    assert out == fs.sample(x, top_k=5, seed=2, backend="numpy")


@needs_torch
def test_sample_tensor_parameters(backend):
    """Per-row parameters, seeds and positions as tensors act like numpy arrays."""
    x = _logits(seed=2)
    rng = np.random.default_rng(0)
    params = {
        "temperature": rng.uniform(0.5, 1.5, B).astype(np.float32),
        "top_k": rng.integers(0, 60, B),
        "top_p": rng.uniform(0.8, 1.0, B),
        "min_p": rng.uniform(0.0, 0.1, B),
        "seed": rng.integers(0, 2**40, B),
        "position": rng.integers(0, 1000, B),
    }
    tparams = {k: torch.from_numpy(v) for k, v in params.items()}
    tparams["temperature"] = tparams["temperature"].to(torch.bfloat16)
    params["temperature"] = tparams["temperature"].float().numpy()
    out = fs.sample(torch.from_numpy(x), backend=backend, **tparams)
    np.testing.assert_array_equal(out.numpy(), fs.sample(x, backend="numpy", **params))
    # numpy logits with tensor parameters: the result follows the logits (numpy)
    mixed = fs.sample(x, backend=backend, **tparams)
    assert isinstance(mixed, np.ndarray) and mixed.dtype == np.int32
    np.testing.assert_array_equal(mixed, out.numpy())


@needs_torch
def test_sample_flag_invalid_rows_tensor(backend):
    x = _logits()
    x[2, 5] = np.nan
    out = fs.sample(torch.from_numpy(x), top_k=3, seed=1, on_invalid="flag", backend=backend)
    assert out[2].item() == -1 and (out[np.r_[0:2, 3:B]] >= 0).all()
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        fs.sample(torch.from_numpy(x), backend=backend)


# ---------------------------------------------------------------- SamplerChain


def _chain(backend, seed=5):
    return fs.SamplerChain(
        [fs.Penalties(repeat=1.3, frequency=0.2, last_n=-1), fs.DRY(0.8, allowed_length=1),
         fs.TopK(50), fs.TopP(0.9), fs.Temperature(0.7)], seed=seed, backend=backend)


@needs_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_chain_process_and_sample_tensor(dtype, backend):
    t = _tensor(_logits(seed=3), dtype)
    hist = np.random.default_rng(1).integers(0, V, (B, 40))
    lens = np.arange(B) * 7
    th, tl = torch.from_numpy(hist), torch.from_numpy(lens)
    got = _chain(backend).process(t, history=th, history_len=tl, position=torch.tensor(9))
    ref = _chain("numpy").process(_as_f32(t), history=hist, history_len=lens, position=9)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    g = got.numpy()
    np.testing.assert_array_equal(np.isneginf(g), np.isneginf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(g[fin], ref[fin], rtol=0, atol=1e-5 * max(1.0, np.abs(ref[fin]).max()))
    tok = _chain(backend).sample(t, history=[torch.from_numpy(h[:n]) for h, n in zip(hist, lens)],
                                 position=torch.arange(B))
    assert tok.dtype == torch.int64
    ref_tok = _chain("numpy").sample(_as_f32(t), history=hist, history_len=lens, position=np.arange(B))
    np.testing.assert_array_equal(tok.numpy(), ref_tok)


@needs_torch
@pytest.mark.parametrize("layout", range(4))
def test_chain_tensor_layouts_and_state(layout, backend):
    """Own history and positions advance from tensor tokens exactly as from numpy ones."""
    x = _logits(seed=4)
    name, t = _layouts(x)[layout]
    a, b = _chain(backend), _chain("numpy")
    for _ in range(4):
        ta, tb = a.sample(t), b.sample(x)
        np.testing.assert_array_equal(ta.numpy(), tb, err_msg=name)
        a.accept(ta)
        b.accept(tb)
    np.testing.assert_array_equal(a.positions, b.positions)


@needs_torch
def test_process_never_aliases_input(backend):
    """A chain that changes nothing must still not hand back the caller's memory."""
    t = torch.from_numpy(_logits())
    out = fs.SamplerChain([], backend=backend).process(t)
    torch.testing.assert_close(out, t, rtol=0, atol=0)
    out[0, 0] = 123.0
    assert t[0, 0].item() != 123.0


@needs_torch
def test_stage_parameters_as_tensors(backend):
    x = _logits(seed=6)
    k = np.arange(B) * 5
    p = np.linspace(0.5, 1.0, B)
    got = fs.SamplerChain([fs.TopK(torch.from_numpy(k)), fs.TopP(torch.from_numpy(p))],
                          backend=backend).process(torch.from_numpy(x))
    ref = fs.SamplerChain([fs.TopK(k), fs.TopP(p)], backend="numpy").process(x)
    np.testing.assert_array_equal(np.isneginf(got.numpy()), np.isneginf(ref))


# ---------------------------------------------------------------- array ops


@needs_torch
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_ops_tensor(dtype, backend):
    t = _tensor(_logits(seed=7), dtype)[:, ::3]
    x = _as_f32(t)
    for fn, kw in [(fs.softmax, {"temperature": 0.7}), (fs.log_softmax, {})]:
        got = fn(t, backend=backend, **kw)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == t.shape
        np.testing.assert_allclose(got.numpy(), fn(x, backend="numpy", **kw), rtol=1e-5, atol=1e-7)
    values, ids = fs.topk(t, 7, backend=backend)
    rv, ri = fs.topk(x, 7, backend="numpy")
    assert values.dtype == torch.float32 and ids.dtype == torch.int64
    np.testing.assert_array_equal(ids.numpy(), ri)
    np.testing.assert_array_equal(values.numpy(), rv)
    # 1-D
    v1, i1 = fs.topk(t[0], 3, backend=backend)
    assert v1.shape == (3,) and i1.tolist() == ri[0, :3].tolist()


@needs_torch
def test_dry_penalty_tensor_history(backend):
    hist = np.array([5, 6, 7, 5, 6, 9, 5, 6], dtype=np.int64)
    ids, pens = fs.dry_penalty(torch.from_numpy(hist), 20, 0.8, backend=backend)
    rids, rpens = fs.dry_penalty(hist, 20, 0.8, backend="numpy")
    assert ids.dtype == torch.int64 and pens.dtype == torch.float32
    assert ids.tolist() == rids.tolist() and len(ids) > 0
    np.testing.assert_allclose(pens.numpy(), rpens, rtol=1e-6)


# ---------------------------------------------------------------- bad input


@needs_torch
def test_bad_tensors():
    with pytest.raises(TypeError, match="floating-point"):
        fs.sample(torch.zeros(2, 5, dtype=torch.int64))
    with pytest.raises(TypeError, match="device 'meta'"):
        fs.sample(torch.zeros(2, 5, device="meta"))
    with pytest.raises(ValueError, match="top_k has length 3"):
        fs.sample(torch.zeros(2, 5), top_k=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="history row 1 has token 9"):
        fs.SamplerChain([fs.Penalties(1.2)]).process(
            torch.zeros(2, 5), history=torch.tensor([[1, 2], [3, 9]]))


# ---------------------------------------------------------------- to_host itself


class _Namespace:
    @staticmethod
    def asarray(x):
        return _HostArray(np.asarray(x))


class _HostArray:
    """A minimal foreign host array: DLPack export and an array namespace."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

    def __array_namespace__(self, api_version=None):
        return _Namespace


def test_dlpack_host_array_round_trip(backend):
    x = _logits(seed=8)
    out = fs.softmax(_HostArray(x), backend=backend)
    assert isinstance(out, _HostArray)
    np.testing.assert_allclose(out.a, fs.softmax(x, backend="numpy"), rtol=1e-5, atol=1e-7)
    tok = fs.sample(_HostArray(x), top_k=4, seed=3, backend=backend)
    assert isinstance(tok, _HostArray)
    np.testing.assert_array_equal(tok.a, fs.sample(x, top_k=4, seed=3, backend="numpy"))


@needs_torch
def test_to_host_is_zero_copy():
    t = torch.zeros(3, 4)
    host, _ = arrays.to_host(t)
    assert np.shares_memory(host, t.numpy())


def test_to_host_leaves_numpy_and_gpu_arrays_alone():
    x = np.zeros(3)
    assert arrays.to_host(x)[0] is x

    class FakeDevice:
        @property
        def __cuda_array_interface__(self):
            return {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}

    gpu = FakeDevice()
    host, wrap = arrays.to_host(gpu)
    assert host is gpu and wrap(5) == 5
    assert arrays.plain(gpu) is gpu
    assert arrays.plain(7) == 7 and arrays.plain(None) is None
