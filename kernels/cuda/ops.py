"""The CUDA backend: the functions of ``fastsample.reference`` it implements.

Same names and results as the reference (``docs/internals.md``) for ``softmax``,
``log_softmax``, ``topk``, ``draw``, ``argmax``, ``invalid_rows``, plus the fused
canonical chain ``sample_canonical`` (as ``kernels/cpu/canonical.py``, token -2 for an
invalid row) and ``process_canonical`` (the logits that chain would draw from).

Every function takes host (numpy) or device arrays. Host logits are copied to the
device and the result comes back as numpy (the backend contract, used by the
reference checks); device logits give device results (numba device arrays) and are
never copied to the host. Logits must already be float32 C-contiguous ``(B, V)``
(``fastsample.gpu.device_rows`` makes them so on the device). Parameters may be host
or device arrays of shape ``(B,)`` (or scalars). ``stream`` is a numba stream or 0.
"""

from __future__ import annotations

import time

import numpy as np
from numba import cuda

from . import arrays as _arrays
from . import canonical as _canonical
from .target import SIM, TPB

__all__ = [
    "INVALID",
    "SIM",
    "TPB",
    "argmax",
    "draw",
    "flag_invalid",
    "invalid_rows",
    "log_softmax",
    "process_canonical",
    "sample_canonical",
    "softmax",
    "to_rows",
    "topk",
    "warmup",
]

INVALID = _canonical.INVALID


def _is_device(a):
    return hasattr(a, "copy_to_host")


def _params(B, stream, *pairs):
    """``(value, dtype)`` pairs -> ``(B,)`` device arrays. Device arrays pass as they
    are; host values are broadcast, converted, and copied in one transfer (a copy costs
    about the same for 8 bytes as for a few kilobytes)."""
    out = [v if _is_device(v) else None for v, _ in pairs]
    host = [(i, np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=dt), (B,))))
            for i, (v, dt) in enumerate(pairs) if out[i] is None]
    if host:
        packed = cuda.to_device(np.concatenate([a.view(np.uint8) for _, a in host]),
                                stream=stream)
        offset = 0
        for i, a in host:   # every dtype here is 8 bytes wide: views stay aligned
            out[i] = packed[offset:offset + a.nbytes].view(a.dtype)
            offset += a.nbytes
    return out


def _param(a, B, dtype, stream):
    """One ``(B,)`` parameter on the device (see ``_params``)."""
    return _params(B, stream, (a, dtype))[0]


def _rows(x, stream):
    """``(device (B, V) float32 rows, came_from_host)``."""
    if _is_device(x):
        return x, False
    return cuda.to_device(np.ascontiguousarray(x, dtype=np.float32), stream=stream), True


def _back(dev, host, stream):
    if not host:
        return dev
    out = dev.copy_to_host(stream=stream)
    if stream:
        stream.synchronize()
    return out


def to_rows(src, stream=0):
    """Float32 C-contiguous ``(B, V)`` copy on the device of a 1-D or 2-D device array
    of any float dtype and strides."""
    if src.ndim == 1:
        out = cuda.device_array((1, src.shape[0]), np.float32, stream=stream)
        _arrays.cast1_kernel[1, TPB, stream](src, out)
        return out
    out = cuda.device_array(src.shape, np.float32, stream=stream)
    if src.shape[0]:
        _arrays.cast_kernel[src.shape[0], TPB, stream](src, out)
    return out


def sample_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
                     temperature_last, seed, position, stream=0):
    """Draw one token per row with the canonical chain of ``fs.sample``.

    Parameters
    ----------
    logits : float32 (B, V), C-contiguous, host or device. Not modified.
    top_k, min_keep : int64 (B,)      (min_keep >= 1)
    top_p, min_p, temperature : float64 (B,)
    temperature_last : bool           True: llama.cpp order; False: HF order.
    seed, position : uint64 (B,)
    stream : numba stream or 0

    Returns
    -------
    int32 (B,), numpy for host logits else a device array: the reference chain's
    token, ``INVALID`` (-2) for a row with NaN, +inf or every logit masked.
    """
    x, host = _rows(logits, stream)
    B = x.shape[0]
    out = cuda.device_array(B, np.int32, stream=stream)
    if B:
        k, p, mp, t, mk, s, pos = _params(
            B, stream, (top_k, np.int64), (top_p, np.float64), (min_p, np.float64),
            (temperature, np.float64), (min_keep, np.int64), (seed, np.uint64),
            (position, np.uint64))
        _canonical.sample_kernel[B, TPB, stream](x, k, p, mp, t, mk, bool(temperature_last),
                                                s, pos, out)
    return _back(out, host, stream)


def process_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
                      temperature_last, stream=0):
    """The logits the canonical chain's draw would use (masked = -inf), float32 (B, V);
    an invalid row comes back all -inf. Host or device, as ``sample_canonical``."""
    x, host = _rows(logits, stream)
    B = x.shape[0]
    out = cuda.device_array(x.shape, np.float32, stream=stream)
    if B:
        status = cuda.device_array(B, np.int32, stream=stream)
        k, p, mp, t, mk = _params(
            B, stream, (top_k, np.int64), (top_p, np.float64), (min_p, np.float64),
            (temperature, np.float64), (min_keep, np.int64))
        _canonical.process_kernel[B, TPB, stream](x, k, p, mp, t, mk, bool(temperature_last),
                                                 out, status)
    return _back(out, host, stream)


def _tokens(logits, temperature, seed, position, stream):
    """The canonical kernel with every truncation off; -1 for a row with no finite
    logit (the reference's convention for ``draw`` and ``argmax``)."""
    x, host = _rows(logits, stream)
    out = sample_canonical(x, 0, 1.0, 0.0, temperature, 1, True, seed, position, stream)
    return _back(flag_invalid(out, stream), host, stream)


def draw(logits, seed, position, stream=0):
    """SPEC §5 draw (stream 0) per row; int32 (B,), -1 for a row with no finite logit."""
    return _tokens(logits, 1.0, seed, position, stream)


def argmax(logits, stream=0):
    """The first maximum of each row; int32 (B,), -1 for a row with no finite logit."""
    return _tokens(logits, 0.0, 0, 0, stream)


def invalid_rows(logits, stream=0):
    """Boolean (B,): rows with NaN or +inf, or with every logit -inf."""
    x, host = _rows(logits, stream)
    B = x.shape[0]
    out = cuda.device_array(B, np.uint8, stream=stream)
    if B:
        _canonical.invalid_kernel[B, TPB, stream](x, out)
    if host:
        return _back(out, True, stream).astype(bool)
    return out


def softmax(x, temperature=1.0, stream=0):
    """Softmax of ``x / t`` over each row's finite logits (masked -> 0), float32."""
    rows, host = _rows(x, stream)
    B = rows.shape[0]
    out = cuda.device_array(rows.shape, np.float32, stream=stream)
    if B:
        t = _param(temperature, B, np.float64, stream)
        _arrays.softmax_kernel[B, TPB, stream](rows, t, out)
    return _back(out, host, stream)


def log_softmax(x, stream=0):
    """Log-softmax over each row's finite logits (masked -> -inf), float32."""
    rows, host = _rows(x, stream)
    B = rows.shape[0]
    out = cuda.device_array(rows.shape, np.float32, stream=stream)
    if B:
        _arrays.log_softmax_kernel[B, TPB, stream](rows, out)
    return _back(out, host, stream)


def topk(x, k, stream=0):
    """The k largest per row: exactly k (0 <= k <= V), descending, ties to the lower id.

    Returns ``(values float32 (B, k), indices int32 (B, k))``.
    """
    rows, host = _rows(x, stream)
    B, V = rows.shape
    k = int(k)
    if not 0 <= k <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    values = cuda.device_array((B, k), np.float32, stream=stream)
    indices = cuda.device_array((B, k), np.int32, stream=stream)
    if B and k:
        cand_v = cuda.device_array((B, k), np.float32, stream=stream)
        cand_i = cuda.device_array((B, k), np.int32, stream=stream)
        _arrays.topk_kernel[B, TPB, stream](rows, k, cand_v, cand_i, values, indices)
    return _back(values, host, stream), _back(indices, host, stream)


def flag_invalid(tokens, stream=0):
    """On the device: token -2 (invalid row) becomes -1, in place."""
    B = tokens.shape[0]
    if B:
        _arrays.replace_kernel[(B + TPB - 1) // TPB, TPB, stream](tokens, INVALID, -1)
    return tokens


def warmup():
    """Compile (or load from numba's cache) every kernel on tiny inputs.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    x = cuda.to_device(np.linspace(-3.0, 3.0, 64, dtype=np.float32).reshape(2, 32))
    for temperature_last in (True, False):
        sample_canonical(x, 4, 0.9, 0.05, 0.8, 1, temperature_last, 0, 0)
        process_canonical(x, 4, 0.9, 0.05, 0.8, 1, temperature_last)
    flag_invalid(draw(x, 0, 0))
    invalid_rows(x)
    softmax(x)
    log_softmax(x)
    topk(x, 3)
    to_rows(cuda.to_device(np.zeros((2, 3), np.float16)))
    to_rows(cuda.to_device(np.zeros(3, np.float64)))
    cuda.synchronize()
    return time.perf_counter() - start
