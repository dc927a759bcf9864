"""The device path of the public API: logits already on an NVIDIA GPU.

Any array with ``__cuda_array_interface__`` (CuPy, torch.cuda tensors, numba device
arrays; under the CUDA simulator, its device arrays) is read in place: never copied
to the host. Logits of another float dtype or with strides are converted into a
float32 copy on the device. Results stay on the device and come back as the caller's
type: a torch tensor or a CuPy array (zero-copy wraps of the result buffer), else a
numba device array; ``sample`` on 1-D logits returns an int.

What does cross to the host, all O(B): per-row parameters given as device arrays
(copied back to be validated with the host rules of SPEC §7) and the per-row flags
of invalid rows (to raise ``ValueError`` naming them, or to give -1).

``stream``: a numba stream, a torch.cuda.Stream (``cuda_stream``), a CuPy stream
(``ptr``), a raw ``cudaStream_t`` as an int, or None/0 for the default stream. Every
kernel and copy of the call is queued on it; the call returns once the O(B) flags
have arrived, so the results are ready on that stream.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import registry as _backends
from .stages import AT_LEAST_ONE, FINITE, NON_NEGATIVE, POSITIVE
from .validation import as_seeds, check_on_invalid, per_row, raise_invalid

__all__ = [
    "as_stream",
    "chain_process",
    "chain_sample",
    "check_chain",
    "device_rows",
    "log_softmax",
    "sample",
    "softmax",
    "to_host",
    "topk",
    "wrap",
]

_INVALID = -2
_WHAT = "NaN, +inf, or every logit masked"


def _cuda():
    from numba import cuda

    return cuda


def _ops(backend, x):
    """The cuda ops module; GPU arrays go nowhere else (no hidden host round trip)."""
    if backend not in ("auto", "cuda"):
        _backends.load(backend)  # an unknown name gets the registry's message
        raise _backends.BackendError(
            f"{type(x).__name__} is a GPU array: it needs backend='cuda' (or 'auto'), "
            f"not {backend!r}; copy it to the host first to use a CPU backend"
        )
    return _backends.load("cuda")


# ---------------------------------------------------------------------- streams, arrays


def as_stream(stream):
    """A numba stream (or 0: the default stream) for the ``stream=`` argument."""
    if stream is None or (isinstance(stream, numbers.Integral) and int(stream) == 0):
        return 0
    cuda = _cuda()
    handle = None
    if hasattr(stream, "cuda_stream"):        # torch.cuda.Stream
        handle = int(stream.cuda_stream)
    elif hasattr(stream, "ptr"):              # cupy.cuda.Stream
        handle = int(stream.ptr)
    elif isinstance(stream, numbers.Integral):
        handle = int(stream)
    elif hasattr(stream, "synchronize"):      # a numba stream
        return stream
    else:
        raise TypeError(
            f"stream must be a numba stream, a torch/CuPy stream, a cudaStream_t int or "
            f"None; got {type(stream).__name__}"
        )
    return 0 if handle == 0 else cuda.external_stream(handle)


def _sync(stream):
    if stream:
        stream.synchronize()


def _view(x):
    """A numba device array over ``x``'s memory (no copy)."""
    if hasattr(x, "copy_to_host"):
        return x
    if type(x).__module__.startswith("torch") and str(x.dtype) == "torch.bfloat16":
        x = x.float()  # numba has no bfloat16: widened on the device (exact)
    return _cuda().as_cuda_array(x)


def to_host(x, stream=0):
    """A small device array (flags, parameters) copied to a numpy array."""
    out = _view(x).copy_to_host(stream=stream)
    _sync(stream)
    return out


def device_rows(x, name, ops, stream=0):
    """Validate GPU logits; return ``(float32 C-contiguous (B, V) device array, was_1d)``.

    The rows are ``x`` itself when it is float32 and C-contiguous, else a converted
    copy made on the device. Bad dtypes and shapes raise as ``as_logits`` does.
    """
    d = _view(x)
    dtype = np.dtype(d.dtype)
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise TypeError(
            f"{name} must be a floating-point array (float16, float32 or float64 on the "
            f"GPU); got dtype {dtype}"
        )
    if d.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (V,) or 2-D (B, V); got ndim={d.ndim}")
    if d.shape[d.ndim - 1] == 0:  # (the simulator's shapes take no negative index)
        raise ValueError(f"{name} must have at least one token (V >= 1); got V=0")
    one_d = d.ndim == 1
    if dtype == np.float32 and d.is_c_contiguous():
        return (d.reshape(1, d.shape[0]) if one_d else d), one_d
    return ops.to_rows(d, stream), one_d


def wrap(result, like):
    """A device result as the type of ``like``: torch tensor, CuPy array, or as is."""
    root = type(like).__module__.split(".")[0]
    if root == "torch":
        import torch

        out = torch.as_tensor(result, device=like.device)
        # Token ids as torch's index dtype, like the host path and torch.multinomial
        # (a device-side cast: no host round trip).
        return out.long() if out.dtype == torch.int32 else out
    if root == "cupy":
        import cupy

        return cupy.asarray(result)
    return result


def _on_host(value, stream):
    """``value`` itself, or a host copy of it when it is a GPU array (B values)."""
    return to_host(value, stream) if _backends.is_gpu_array(value) else value


def _param(name, value, B, stream, *, integer=False, check=None):
    """A per-row parameter (scalar, host array or device array), validated on the host."""
    return per_row(name, _on_host(value, stream), B, integer=integer, check=check)


def _seeds(name, value, B, stream):
    return as_seeds(name, _on_host(value, stream), B)


def _check_rows(ops, rows, stream):
    """Raise ``ValueError`` naming the invalid rows (one small device-to-host copy)."""
    bad = to_host(ops.invalid_rows(rows, stream), stream).astype(bool)
    if bad.any():
        raise_invalid(bad, _WHAT)


def _finish_tokens(ops, tokens, like, one_d, on_invalid, stream):
    """Raise for, or flag (-1), invalid rows; the caller's type (an int for 1-D)."""
    flags = to_host(tokens, stream)
    invalid = flags == _INVALID
    if invalid.any():
        if on_invalid == "raise":
            raise_invalid(invalid, _WHAT)
        flags[invalid] = -1
        if not one_d:
            ops.flag_invalid(tokens, stream)
    if one_d:
        return int(flags[0])
    return wrap(tokens, like)


# ---------------------------------------------------------------------- the API


def sample(logits, *, temperature, top_k, top_p, min_p, min_keep, seed, position,
           temperature_last, on_invalid, backend, stream=None):
    """``fs.sample`` for GPU logits (same parameters; see ``fastsample.api.sample``)."""
    check_on_invalid(on_invalid)
    ops, x, one_d, stream = _rows(logits, "logits", backend, stream)
    B = x.shape[0]
    t = _param("temperature", temperature, B, stream, check=FINITE)
    k = _param("top_k", top_k, B, stream, integer=True)
    p = _param("top_p", top_p, B, stream, check=NON_NEGATIVE)
    mp = _param("min_p", min_p, B, stream, check=NON_NEGATIVE)
    mk = _param("min_keep", min_keep, B, stream, integer=True, check=AT_LEAST_ONE)
    seeds = _seeds("seed", seed, B, stream)
    pos = _seeds("position", position, B, stream)
    tokens = ops.sample_canonical(x, k, p, mp, t, mk, bool(temperature_last), seeds, pos,
                                  stream)
    return _finish_tokens(ops, tokens, logits, one_d, on_invalid, stream)


def _rows(x, name, backend, stream):
    """``(ops, float32 (B, V) device rows, was_1d, numba stream)`` of GPU logits."""
    ops = _ops(backend, x)
    stream = as_stream(stream)
    rows, one_d = device_rows(x, name, ops, stream)
    return ops, rows, one_d, stream


def _rows_checked(x, backend, stream):
    ops, rows, one_d, stream = _rows(x, "x", backend, stream)
    _check_rows(ops, rows, stream)
    return ops, rows, one_d, stream


def _unbatch(out, one_d):
    return out.reshape(out.shape[1]) if one_d else out


def softmax(x, temperature=1.0, *, backend="auto", stream=None):
    """``fs.softmax`` for GPU logits: float32 on the device, the shape of ``x``."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    t = _param("temperature", temperature, rows.shape[0], stream, check=POSITIVE)
    return wrap(_unbatch(ops.softmax(rows, t, stream), one_d), x)


def log_softmax(x, *, backend="auto", stream=None):
    """``fs.log_softmax`` for GPU logits: float32 on the device, the shape of ``x``."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    return wrap(_unbatch(ops.log_softmax(rows, stream), one_d), x)


def topk(x, k, *, backend="auto", stream=None):
    """``fs.topk`` for GPU logits: (values float32, indices int32) on the device."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    V = rows.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer; got {k!r}")  # noqa: TRY004 (SPEC §7)
    if not 0 <= int(k) <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    values, indices = ops.topk(rows, int(k), stream)
    return wrap(_unbatch(values, one_d), x), wrap(_unbatch(indices, one_d), x)


# ---------------------------------------------------------------------- SamplerChain


def check_chain(chain):
    """The chain's canonical plan on cuda, or ``BackendError`` naming what breaks it."""
    plan = chain._canonical_plan("cuda")
    if plan is not None:
        return plan
    from .stages import Dist, MinP, Temperature, TopK, TopP

    allowed = (TopK, TopP, MinP, Temperature)
    for stage in chain.stages[:-1]:
        if type(stage) not in allowed:
            break
    else:
        stage = chain.stages[-1] if type(chain.stages[-1]) is not Dist else None
    if stage is not None:
        raise _backends.BackendError(
            f"stage {stage.name} has no kernel on backend 'cuda': the cuda backend runs "
            "chains of TopK, TopP, MinP and Temperature ending in Dist (fs.sample's chain)"
        )
    raise _backends.BackendError(
        "this chain has no kernel on backend 'cuda': it runs TopK, TopP, MinP and "
        "Temperature at most once each, truncations in that order, Temperature first "
        "or last, one shared min_keep, ending in Dist"
    )


def _chain_rows(chain, logits, stream):
    """``(plan, ops, rows, was_1d, stream)`` for a chain's GPU call; sizes its state."""
    _backends.load("cuda")  # check_chain's first step: an unusable cuda raises as there
    # The plan does not depend on the backend: the chain's own fused one when it has one
    # (not rebuilt per token), else check_chain's, which raises for non-canonical chains.
    plan = chain._fused if chain._fused is not None else check_chain(chain)
    ops, x, one_d, stream = _rows(logits, "logits", chain._requested, stream)
    chain._ensure_state(x.shape[0])
    return plan, ops, x, one_d, stream


def chain_sample(chain, logits, position=None, stream=None):
    """``SamplerChain.sample`` for GPU logits (the chain's fused canonical plan)."""
    plan, ops, x, one_d, stream = _chain_rows(chain, logits, stream)
    B = x.shape[0]
    pos = chain.positions if position is None else _seeds("position", position, B, stream)
    args = chain._fused_args(B, plan)
    tokens = ops.sample_canonical(x, *args, chain._seeds, pos, stream)
    return _finish_tokens(ops, tokens, logits, one_d, chain.on_invalid, stream)


def chain_process(chain, logits, stream=None):
    """``SamplerChain.process`` for GPU logits: the masked logits, on the device."""
    plan, ops, x, one_d, stream = _chain_rows(chain, logits, stream)
    B = x.shape[0]
    if chain.on_invalid == "raise":
        _check_rows(ops, x, stream)
    # flagged invalid rows come back all -inf from the kernel
    out = ops.process_canonical(x, *chain._fused_args(B, plan), stream)
    return wrap(_unbatch(out, one_d), logits)
