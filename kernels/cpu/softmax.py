"""Softmax and log-softmax: numba CPU kernels.

Per row, vectorised passes:

1. ``m = row_max_nan(row)``: the max, NaN when the row holds one, so the same pass
   is the row's validity check (``*_checked`` return it; the API reads each row once);
2. weights ``w = 2**100 exp(l - m)`` stored in the float32 output (the scale keeps
   every weight that can matter to a float32 probability out of float32's subnormal
   range: a weight below ``2**-226`` gives a probability that rounds to 0), then
   summed in float64. At T = 1 the exps are float32 (``_exp_up``: an exact TwoSum
   split of ``l - m``, Cody-Waite reduction, degree-7 polynomial, 16 lanes at 512
   bits; relative error ~2e-7); with a temperature, ``exp_f32acc((l - m) / T)`` in
   float64 (relative error < 3e-10);
3. softmax: ``out = float32(out * (2**-100 / W))``; log-softmax:
   ``out = float32((l - m) - log W)`` (the output row held the weights meanwhile).

Results agree with ``fastsample.reference.softmax``/``log_softmax`` (float64
exponentials and sums, rounded to float32) within 1e-6 relative (measured 1.5e-7,
about 1 float32 ulp). Masked logits give exactly 0 (softmax) or ``-inf``
(log-softmax); a row with no finite logit gives all 0 / all ``-inf``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from .simd import FASTMATH, _bitcast_intrinsic, exp_f32acc
from .validity import row_max_nan

__all__ = [
    "log_softmax",
    "log_softmax_checked",
    "log_softmax_row",
    "log_softmax_rows",
    "log_softmax_rows_serial",
    "softmax",
    "softmax_checked",
    "softmax_row",
    "softmax_rows",
    "softmax_rows_serial",
]

_NEG_INF = -np.inf
_UP = 2.0**100
_DOWN = 2.0**-100
_LOG_UP = 100.0 * math.log(2.0)

_u32_as_f32 = intrinsic(_bitcast_intrinsic(types.uint32, types.float32, ir.FloatType()))

_F = np.float32
_LOG2E32 = _F(1.44269504088896341)
_SHIFT32 = _F(12582912.0)          # 1.5 * 2**23: x + SHIFT - SHIFT rounds x to an integer
_C1 = _F(0.693359375)               # ln 2 in two parts; k * C1 is exact for |k| < 2**15
_C2 = _F(-2.12194440e-4)
_D_MIN = _F(-150.0)                 # below: a probability under 2**-216, 0 in float32
_P = (_F(1.0 / 5040.0), _F(1.0 / 720.0), _F(1.0 / 120.0), _F(1.0 / 24.0), _F(1.0 / 6.0),
      _F(0.5), _F(1.0), _F(1.0))
_P7, _P6, _P5, _P4, _P3, _P2, _P1, _P0 = _P


@numba.njit(cache=True, nogil=True, inline="always")
def _exp_up(x, m):
    """``2**100 exp(x - m)`` in float32 arithmetic (x, m float32; x <= m).

    Compiled without fast-math flags (the TwoSum and the rounding shift rely on IEEE
    order); an elementwise loop of it vectorises all the same. ``x - m`` is split
    exactly into ``hi + lo``; ``k = round(hi / ln 2)``; ``r = hi - k ln 2 + lo``;
    ``e**r`` by a degree-7 Taylor polynomial; ``2**(k + 100)`` in the exponent field.
    0 for ``x = -inf`` or ``x - m < -150``.
    """
    ok = x - m >= _D_MIN
    xs = x if ok else m
    hi = xs - m
    bb = hi - xs
    lo = (xs - (hi - bb)) + ((_F(0.0) - m) - bb)
    k = (hi * _LOG2E32 + _SHIFT32) - _SHIFT32
    r = ((hi - k * _C1) - k * _C2) + lo
    p = _P7 * r + _P6
    p = p * r + _P5
    p = p * r + _P4
    p = p * r + _P3
    p = p * r + _P2
    p = p * r + _P1
    p = p * r + _P0
    scale = _u32_as_f32(np.uint32((np.int32(k) + np.int32(227)) << np.int32(23)))
    return p * scale if ok else _F(0.0)


@numba.njit(cache=True, nogil=True)
def _exp_up_store(row, m, out):
    """out[i] = _exp_up(row[i], m) (elementwise: vectorised without fast-math)."""
    for i in range(row.shape[0]):
        out[i] = _exp_up(row[i], m)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sum64(w):
    """float64 sum of float32 weights (a vectorised reduction)."""
    s = 0.0
    for i in range(w.shape[0]):
        s += np.float64(w[i])
    return s


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _scale_into(out, scale):
    """out *= float32(scale): a float32 product is one rounding of the exact product (as
    the float64 one rounded to float32); the scale's own rounding adds < 6e-8."""
    sc = np.float32(scale)
    for i in range(out.shape[0]):
        out[i] = out[i] * sc


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _softmax_temp(row, mf, inv_t, out):
    """Weights ``2**100 exp((l - m) / T)`` (float64 exps) into ``out``; the sum of the
    unscaled weights."""
    s = 0.0
    for i in range(row.shape[0]):
        w = exp_f32acc((np.float64(row[i]) - mf) * inv_t)
        s += w
        out[i] = np.float32(w * _UP)
    return s


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _fill(out, v):
    for i in range(out.shape[0]):
        out[i] = v


@numba.njit(cache=True, nogil=True)
def softmax_row(row, inv_t, out):
    """Softmax of one float32 row at temperature ``1 / inv_t`` into ``out`` (float32).
    Returns True for an invalid row (NaN, +inf or nothing finite; out all 0)."""
    m = row_max_nan(row)
    if not (-np.inf < m < np.inf):
        _fill(out, np.float32(0.0))
        return True
    if inv_t == 1.0:
        _exp_up_store(row, m, out)
        s = _sum64(out) * _DOWN
    else:
        s = _softmax_temp(row, np.float64(m), inv_t, out)
    _scale_into(out, _DOWN / s)
    return False


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _log_softmax_out(row, mf, lse, out):
    for i in range(row.shape[0]):
        out[i] = np.float32((np.float64(row[i]) - mf) - lse)


@numba.njit(cache=True, nogil=True)
def log_softmax_row(row, out):
    """Log-softmax of one float32 row into ``out`` (float32), the output row holding
    the weights first. Returns True for an invalid row (out all ``-inf``)."""
    m = row_max_nan(row)
    if not (-np.inf < m < np.inf):
        _fill(out, np.float32(_NEG_INF))
        return True
    _exp_up_store(row, m, out)
    lse = math.log(_sum64(out)) - _LOG_UP
    _log_softmax_out(row, np.float64(m), lse, out)
    return False


@numba.njit(cache=True, nogil=True, parallel=True)
def softmax_rows(x, inv_t, out, invalid):
    """Batched softmax (``prange`` over rows); ``inv_t`` float64 (B,) = 1 / temperature;
    each row's validity into ``invalid`` (bool (B,))."""
    for b in prange(x.shape[0]):
        invalid[b] = softmax_row(x[b], inv_t[b], out[b])


@numba.njit(cache=True, nogil=True)
def softmax_rows_serial(x, inv_t, out, invalid):
    """``softmax_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        invalid[b] = softmax_row(x[b], inv_t[b], out[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def log_softmax_rows(x, out, invalid):
    """Batched log-softmax (``prange`` over rows), each row's validity into ``invalid``."""
    for b in prange(x.shape[0]):
        invalid[b] = log_softmax_row(x[b], out[b])


@numba.njit(cache=True, nogil=True)
def log_softmax_rows_serial(x, out, invalid):
    """``log_softmax_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        invalid[b] = log_softmax_row(x[b], out[b])


def _as_rows(x):
    x = np.asarray(x)
    one = x.ndim == 1
    rows = x[None, :] if one else x
    return np.ascontiguousarray(rows, dtype=np.float32), one


def softmax_checked(x, temperature=1.0):
    """``softmax`` of (B, V) rows and each row's validity from the same max pass:
    ``(out, invalid bool (B,))``; an invalid row's output is all 0."""
    rows, _ = _as_rows(x)
    B = rows.shape[0]
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (B,))
    inv_t = np.ascontiguousarray(1.0 / t)
    out = np.empty(rows.shape, np.float32)
    invalid = np.zeros(B, np.bool_)
    if B and rows.shape[1]:
        (softmax_rows_serial if B == 1 else softmax_rows)(rows, inv_t, out, invalid)
    return out, invalid


def softmax(x, temperature=1.0):
    """Softmax over the finite logits of each row (masked -> 0), float32, same shape.

    ``x`` is ``(V,)`` or ``(B, V)``; ``temperature`` (> 0) a scalar or ``(B,)`` array.
    """
    out, _ = softmax_checked(x, temperature)
    return out[0] if np.ndim(x) == 1 else out


def log_softmax_checked(x):
    """``log_softmax`` of (B, V) rows and each row's validity from the same max pass:
    ``(out, invalid bool (B,))``; an invalid row's output is all ``-inf``."""
    rows, _ = _as_rows(x)
    B = rows.shape[0]
    out = np.empty(rows.shape, np.float32)
    invalid = np.zeros(B, np.bool_)
    if B and rows.shape[1]:
        (log_softmax_rows_serial if B == 1 else log_softmax_rows)(rows, out, invalid)
    return out, invalid


def log_softmax(x):
    """Log-softmax over the finite logits of each row (masked -> -inf), float32."""
    out, _ = log_softmax_checked(x)
    return out[0] if np.ndim(x) == 1 else out
