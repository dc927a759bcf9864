"""Softmax and log-softmax: numba CPU kernels.

Per row:

1. ``_online_max_sum``: one read of the row, in chunks of 2048 (8 KiB, so each chunk
   is still in L1 for its second look): the chunk's max by ``row_max_nan`` (NaN when
   the row holds one, so the same pass is the row's validity check; ``*_checked``
   return it), then the weights ``w = 2**100 exp(l - mc)`` relative to the running max
   ``mc`` written to the output row and summed in float64; a new running max rescales
   the sum by ``exp(old - new)``. The scale keeps every weight that can matter to a
   float32 probability out of float32's subnormal range (a weight below ``2**-226``
   gives a probability that rounds to 0). At T = 1 the exps are float32, reduced on
   the logit itself (``_exp_up_x``: no TwoSum, degree-6 polynomial) when the row max
   lies in [-559, 709], else on an exact TwoSum split of ``l - m`` (``_exp_up``,
   degree 7); relative error ~2e-7 either way. With a temperature: one max pass, then
   ``exp_f32acc((l - m) / T)`` in float64 (relative error < 3e-10);
2. softmax: each chunk times ``exp(mc - m) / W`` (float32; in float64 for a chunk so
   far below the max that the float32 scale would be subnormal); log-softmax:
   ``out = (l - m) - log W`` in float32 (no cancellation: ``l - m <= 0 <= log W``).

The chunks depend only on the row length, so a row's result does not depend on its
batch or the thread split. Results agree with ``fastsample.reference.softmax``/
``log_softmax`` (float64 exponentials and sums, rounded to float32) within 1e-6
relative (measured 3e-7, a few float32 ulp). Masked logits give exactly 0 (softmax)
or ``-inf`` (log-softmax); a row with no finite logit gives all 0 / all ``-inf``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from .simd import FASTMATH, _bitcast_intrinsic, exp_f32acc, fmuladd32
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
_CHUNK = 2048                      # floats (8 KiB): a chunk's weights are summed from L1
_F32_TINY = float(np.finfo(np.float32).tiny)

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


# The x-reduced exp: ln 2 in two parts again (k * _C1 exact for |k| < 2**15), and a
# degree-6 polynomial with p(0) = 1 fitted for relative error on |r| <= 0.354 (2.2e-8).
_Q = (_F(0.0013841757), _F(0.0083757835), _F(0.041668113), _F(0.16666412),
      _F(0.49999994), _F(1.0), _F(1.0))
_Q6, _Q5, _Q4, _Q3, _Q2, _Q1, _Q0 = _Q
_XM_LO = _F(-559.0)   # row maxima for which every weight that matters has |l| < 709
_XM_HI = _F(709.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _reduce_x(x, k):
    """``x - k ln 2`` in float32 (x - k * _C1 exact, then the low part, by FMA)."""
    return fmuladd32(k, -_C2, fmuladd32(k, -_C1, x))


@numba.njit(cache=True, nogil=True)
def _xm_params(m):
    """``(rint(m / ln 2), rm = _reduce_x(m, km), 1.5 * 2**23 - km)`` for _exp_up_x."""
    km = (m * _LOG2E32 + _SHIFT32) - _SHIFT32
    return km, _reduce_x(m, km), _SHIFT32 - km


@numba.njit(cache=True, nogil=True, inline="always")
def _exp_up_x(x, m, km, rm, sk):
    """``2**100 exp(x - m)`` reduced on x itself (no ``x - m``, so no TwoSum); for a row
    max ``m`` in [-559, 709], with ``(km, rm, sk) = _xm_params(m)``.

    ``k = rint((x - rm) / ln 2)`` (read off ``t = (x - rm) / ln 2 + sk``); ``r =
    _reduce_x(x, k) - rm``, so ``x - m = (k - km) ln 2 + r`` with ``|r| <~ ln2 / 2``
    and ``r = 0`` exactly at ``x = m`` (the max's weight is exactly ``2**100``, which
    log-softmax near 0 needs); ``e**r`` by a degree-6 polynomial; ``2**(k - km + 100)``
    in the exponent field. 0 for ``x = -inf`` or ``x - m < -150`` (those lanes compute
    on ``m`` instead). Relative error ~2e-7, like ``_exp_up``.
    """
    ok = x - m >= _D_MIN
    xs = x if ok else m
    t = (xs - rm) * _LOG2E32 + sk
    k = t - sk
    r = _reduce_x(xs, k) - rm
    p = fmuladd32(_Q6, r, _Q5)
    p = fmuladd32(p, r, _Q4)
    p = fmuladd32(p, r, _Q3)
    p = fmuladd32(p, r, _Q2)
    p = fmuladd32(p, r, _Q1)
    p = fmuladd32(p, r, _Q0)
    scale = _u32_as_f32(np.uint32((np.int32(k) - np.int32(km) + np.int32(227)) << np.int32(23)))
    return p * scale if ok else _F(0.0)


@numba.njit(cache=True, nogil=True)
def _exp_up_x_store(row, m, km, rm, sk, out):
    """out[i] = _exp_up_x(row[i], ...) (elementwise: vectorised without fast-math)."""
    for i in range(row.shape[0]):
        out[i] = _exp_up_x(row[i], m, km, rm, sk)


@numba.njit(cache=True, nogil=True)
def _exp_up_store(row, m, out):
    """out[i] = 2**100 exp(row[i] - m): ``_exp_up_x`` where m allows, else ``_exp_up``
    (elementwise: vectorised without fast-math)."""
    if _XM_LO <= m <= _XM_HI:
        km, rm, sk = _xm_params(m)
        _exp_up_x_store(row, m, km, rm, sk, out)
    else:
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


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _scale_into64(out, scale):
    """out = float32(out * scale) in float64 (a scale below float32's normal range)."""
    for i in range(out.shape[0]):
        out[i] = np.float32(np.float64(out[i]) * scale)


@numba.njit(cache=True, nogil=True)
def _online_max_sum(row, w, mc):
    """The row's max M and S = sum of ``_exp_up(l, .)`` relative to M (float64) from one
    read of the row, in chunks of ``_CHUNK``: each chunk's max, then its weights
    relative to the running max ``mc[c]``, written to ``w`` (the chunk's place in the
    output row, or a chunk-sized scratch when ``len(w) < len(row)``) while the chunk
    is in L1 and summed from there; a new running max rescales S by ``exp(old - new)``.
    M is NaN for a row holding NaN or +inf, -inf when nothing is finite. The chunks
    depend only on the row length, not on the batch or its thread split."""
    n = row.shape[0]
    whole = w.shape[0] == n
    m = np.float32(_NEG_INF)
    s = 0.0
    for c, a in enumerate(range(0, n, _CHUNK)):
        b = min(a + _CHUNK, n)
        cm = row_max_nan(row[a:b])
        if not cm < np.inf:  # NaN or +inf
            return np.float32(np.nan), s
        if cm > m:
            if s > 0.0:
                s *= math.exp(np.float64(m) - np.float64(cm))
            m = cm
        mc[c] = m
        wc = w[a:b] if whole else w[:b - a]
        _exp_up_store(row[a:b], m, wc)
        s += _sum64(wc)
    return m, s


@numba.njit(cache=True, nogil=True)
def softmax_row(row, inv_t, out):
    """Softmax of one float32 row at temperature ``1 / inv_t`` into ``out`` (float32).
    Returns True for an invalid row (NaN, +inf or nothing finite; out all 0)."""
    if inv_t == 1.0:
        n = row.shape[0]
        mc = np.empty((n + _CHUNK - 1) // _CHUNK, np.float32)
        m, s = _online_max_sum(row, out, mc)
        if not (-np.inf < m < np.inf):
            _fill(out, np.float32(0.0))
            return True
        # chunk c holds 2**100 exp(l - mc[c]): scale by exp(mc[c] - m) / S (<= 2**-100,
        # S holding the max's own 2**100); a scale below float32's normal range (a chunk
        # far below the max) multiplies in float64 instead
        for c in range(mc.shape[0]):
            a = c * _CHUNK
            b = min(a + _CHUNK, n)
            sc = (1.0 if mc[c] == m else math.exp(np.float64(mc[c]) - np.float64(m))) / s
            if sc >= _F32_TINY:
                _scale_into(out[a:b], sc)
            else:
                _scale_into64(out[a:b], sc)
        return False
    m = row_max_nan(row)
    if not (-np.inf < m < np.inf):
        _fill(out, np.float32(0.0))
        return True
    s = _softmax_temp(row, np.float64(m), inv_t, out)
    _scale_into(out, _DOWN / s)
    return False


@numba.njit(cache=True, nogil=True)
def _log_softmax_out(row, m, lse, out):
    """out = (l - m) - lse in float32, without fast-math (its order matters): l - m
    rounds once (6e-8 of |l - m|) and so does lse; l - m <= 0 <= lse, so their
    difference cannot cancel: < 2e-7 relative in all."""
    for i in range(row.shape[0]):
        out[i] = (row[i] - m) - lse


@numba.njit(cache=True, nogil=True)
def log_softmax_row(row, out):
    """Log-softmax of one float32 row into ``out`` (float32), the weights in a
    chunk-sized scratch (the output row is written once). Returns True for an invalid
    row (out all ``-inf``)."""
    n = row.shape[0]
    mc = np.empty((n + _CHUNK - 1) // _CHUNK, np.float32)
    m, s = _online_max_sum(row, out, mc)
    if not (-np.inf < m < np.inf):
        _fill(out, np.float32(_NEG_INF))
        return True
    lse = math.log(s) - _LOG_UP
    _log_softmax_out(row, m, np.float32(lse), out)
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
