"""Host <-> device moves of the CUDA backend functions.

The backend contract (``docs/internals.md``) lets every function take host (numpy) or
device arrays: host logits are copied in and the result copied back, device logits
stay on the device. Per-row parameters given on the host go in one upload per call (a
copy costs about the same for 8 bytes as for a few kilobytes).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

__all__ = ["back", "back_into", "edit_target", "is_device", "pack", "rows", "upload"]


def is_device(a):
    """A numba device array (the form ``fastsample.gpu`` hands every GPU array in)."""
    return hasattr(a, "copy_to_host")


def rows(x, stream):
    """``(device (B, V) float32 rows, came_from_host)``."""
    if is_device(x):
        return x, False
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"logits must be (B, V); got shape {x.shape}")
    return cuda.to_device(x, stream=stream), True


def back(dev, host, stream):
    """``dev`` itself, or (``host``: the call's logits came from the host) its numpy copy."""
    if not host:
        return dev
    out = dev.copy_to_host(stream=stream)
    if stream:
        stream.synchronize()
    return out


def edit_target(logits, x, host, out, stream):
    """The device buffer an edit stage writes, for the backend's ``out=`` (None: a
    new array; else ``logits`` itself, edited in place): ``x`` (the device logits)
    when they are edited in place, else a new device array (host logits come back
    into ``out`` by ``back_into``)."""
    if out is None or host:
        if out is not None and out is not logits:
            raise ValueError("out must be None or the logits array itself")
        return cuda.device_array(x.shape, np.float32, stream=stream)
    if out is not logits:
        raise ValueError("out must be None or the logits array itself")
    return x


def back_into(dev, host, out, stream):
    """``back``, then (host logits edited in place: ``out`` is them) copied into
    ``out``; returns ``out`` when given."""
    if out is None:
        return back(dev, host, stream)
    if host:
        out[...] = back(dev, True, stream)
    return out


def pack(parts, stream):
    """Host arrays -> device views into one uploaded buffer (one transfer). Parts are
    laid out in the given order; each offset is rounded up to 8 bytes, so every view
    is aligned for its dtype."""
    offsets = []
    size = 0
    for a in parts:
        offsets.append(size)
        size += -(-a.nbytes // 8) * 8
    buf = np.zeros(max(size, 8), np.uint8)
    for a, o in zip(parts, offsets):
        buf[o:o + a.nbytes] = np.ascontiguousarray(a).view(np.uint8).ravel()
    dev = cuda.to_device(buf, stream=stream)
    return [dev[o:o + a.nbytes].view(a.dtype) for a, o in zip(parts, offsets)]


def upload(B, stream, *pairs):
    """``(value, dtype)`` pairs -> ``(B,)`` device arrays: device arrays pass as they
    are; host values (scalars or (B,) arrays) are broadcast, converted and uploaded
    together (``pack``)."""
    out = [v if is_device(v) else None for v, _ in pairs]
    idx = [i for i, v in enumerate(out) if v is None]
    if idx:
        host = [np.ascontiguousarray(np.broadcast_to(np.asarray(pairs[i][0], pairs[i][1]), (B,)))
                for i in idx]
        for i, d in zip(idx, pack(host, stream)):
            out[i] = d
    return out
