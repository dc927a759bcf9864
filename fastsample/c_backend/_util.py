"""Glue shared by the C backend's wrappers: typed buffers, histories, row splitting.

``ffi.from_buffer`` does not check dtype, so every array reaches C through
``buf``, which insists on the exact dtype and C-contiguity (convert first with
``f32``/``f64``/``i64``/``u64``). cffi releases the GIL around every ``lib`` call,
so ``over_rows`` (``fastsample/row_threads.py``) spreads row ranges of a batch across
a thread pool, and
``workspace`` gives each thread its own scratch buffers for the kernels.
"""

from __future__ import annotations

import threading

import numpy as np

from .._ckernels import ffi, lib  # noqa: F401  (ImportError -> backend unavailable)
from ..row_threads import over_rows  # noqa: F401  (the wrappers' row splitting)

_CTYPE = {
    np.dtype(np.float32): "float[]", np.dtype(np.float64): "double[]",
    np.dtype(np.int32): "int32_t[]", np.dtype(np.int64): "int64_t[]",
    np.dtype(np.uint64): "uint64_t[]", np.dtype(np.uint8): "uint8_t[]",
}
# per-thread workspaces, kept and grown on demand (first-touch pages are slow)
_TLS = threading.local()


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def i64(a):
    return np.ascontiguousarray(a, dtype=np.int64)


def u64(a):
    return np.ascontiguousarray(a, dtype=np.uint64)


def buf(a):
    """A cffi pointer to the data of ``a`` (exact dtype and C-contiguity required)."""
    if not a.flags.c_contiguous or a.dtype not in _CTYPE:
        raise TypeError(f"C backend needs a C-contiguous array of a known dtype, got {a.dtype}")
    return ffi.from_buffer(_CTYPE[a.dtype], a, require_writable=False)


def workspace(kind, dtype, n):
    """This thread's workspace ``kind``: ``(pointer, size)`` of at least ``n`` (>= 1) ``dtype``.

    The array lives on in thread-local storage and is replaced only when too small,
    so its cffi pointer is made once, not per call (the B = 1 hot paths use this).
    """
    have = getattr(_TLS, kind, None)
    if have is None or have[1] < n or have[2] is not dtype:  # identity: cheap per call
        arr = np.empty(max(1, n), dtype)
        have = (buf(arr), arr.size, dtype, arr)
        setattr(_TLS, kind, have)
    return have[0], have[1]


def flat_history(history):
    """B histories as one int64 token array and (B + 1,) int64 offsets."""
    if len(history) == 1 and len(history[0]):  # one row: its own array, no concatenated copy
        tokens = i64(np.asarray(history[0]).ravel())
        return tokens, np.array([0, tokens.size], np.int64)
    lengths = np.fromiter((len(h) for h in history), dtype=np.int64, count=len(history))
    offsets = np.zeros(len(history) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = (np.concatenate([np.asarray(h, dtype=np.int64) for h in history])
              if len(history) and offsets[-1] else np.zeros(1, dtype=np.int64))
    return i64(tokens), offsets


