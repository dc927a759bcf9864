"""Softmax and log-softmax: numba CPU kernels.

Per row, three vectorised passes:

1. ``m = row_max(row)``;
2. ``w = exp_f32acc((l - m) / T)`` in float64 (relative error < 3e-10), summed in
   float64; for softmax ``w * 2**100`` is stored in the float32 output (the scale
   keeps every weight that can matter to a float32 probability out of float32's
   subnormal range: a weight below ``2**-226`` gives a probability that rounds to 0);
3. softmax: ``out = float32(out * (2**-100 / W))``; log-softmax:
   ``out = float32((l - m) - log W)``.

Results agree with ``fastsample.reference.softmax``/``log_softmax`` (float64
exponentials and sums, rounded to float32) to about 1 float32 ulp (relative
difference < 3e-7 for normal float32 results). Masked logits give exactly 0
(softmax) or ``-inf`` (log-softmax); a row with no finite logit gives all 0 / all
``-inf``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .simd import FASTMATH, exp_f32acc, row_max

__all__ = [
    "softmax_row", "log_softmax_row", "softmax_rows", "softmax_rows_serial",
    "log_softmax_rows", "log_softmax_rows_serial", "softmax", "log_softmax",
]

_NEG_INF = -np.inf
_UP = 2.0**100
_DOWN = 2.0**-100


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def softmax_row(row, inv_t, out):
    """Softmax of one float32 row at temperature ``1 / inv_t`` into ``out`` (float32)."""
    V = row.shape[0]
    m = row_max(row)
    if m == _NEG_INF:
        for i in range(V):
            out[i] = 0.0
        return
    mf = np.float64(m)
    s = 0.0
    for i in range(V):
        w = exp_f32acc((np.float64(row[i]) - mf) * inv_t)
        s += w
        out[i] = np.float32(w * _UP)
    scale = _DOWN / s
    for i in range(V):
        out[i] = np.float32(np.float64(out[i]) * scale)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def log_softmax_row(row, out):
    """Log-softmax of one float32 row into ``out`` (float32)."""
    V = row.shape[0]
    m = row_max(row)
    if m == _NEG_INF:
        for i in range(V):
            out[i] = _NEG_INF
        return
    mf = np.float64(m)
    s = 0.0
    for i in range(V):
        s += exp_f32acc(np.float64(row[i]) - mf)
    lse = math.log(s)
    for i in range(V):
        out[i] = np.float32((np.float64(row[i]) - mf) - lse)


@numba.njit(cache=True, nogil=True, parallel=True)
def softmax_rows(x, inv_t, out):
    """Batched softmax (``prange`` over rows); ``inv_t`` float64 (B,) = 1 / temperature."""
    for b in prange(x.shape[0]):
        softmax_row(x[b], inv_t[b], out[b])


@numba.njit(cache=True, nogil=True)
def softmax_rows_serial(x, inv_t, out):
    """``softmax_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        softmax_row(x[b], inv_t[b], out[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def log_softmax_rows(x, out):
    """Batched log-softmax (``prange`` over rows)."""
    for b in prange(x.shape[0]):
        log_softmax_row(x[b], out[b])


@numba.njit(cache=True, nogil=True)
def log_softmax_rows_serial(x, out):
    """``log_softmax_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        log_softmax_row(x[b], out[b])


def _as_rows(x):
    x = np.asarray(x)
    one = x.ndim == 1
    rows = x[None, :] if one else x
    return np.ascontiguousarray(rows, dtype=np.float32), one


def softmax(x, temperature=1.0):
    """Softmax over the finite logits of each row (masked -> 0), float32, same shape.

    ``x`` is ``(V,)`` or ``(B, V)``; ``temperature`` (> 0) a scalar or ``(B,)`` array.
    """
    rows, one = _as_rows(x)
    B = rows.shape[0]
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (B,))
    inv_t = np.ascontiguousarray(1.0 / t)
    out = np.empty(rows.shape, np.float32)
    if B and rows.shape[1]:
        (softmax_rows_serial if B == 1 else softmax_rows)(rows, inv_t, out)
    return out[0] if one else out


def log_softmax(x):
    """Log-softmax over the finite logits of each row (masked -> -inf), float32."""
    rows, one = _as_rows(x)
    B = rows.shape[0]
    out = np.empty(rows.shape, np.float32)
    if B and rows.shape[1]:
        (log_softmax_rows_serial if B == 1 else log_softmax_rows)(rows, out)
    return out[0] if one else out
