"""The draw (docs/spec.md §5), argmax and token log-probabilities: numba CPU kernels.

Row kernels (plain njit, one row) and batched kernels (``prange`` over rows), plus
thin Python wrappers ``draw``, ``argmax``, ``token_logprob`` with the reference's
signatures (``docs/internals.md``) that ``ops.py`` can re-export.

The draw, per row (matches ``fastsample.reference.draw`` up to float64 rounding):

1. ``m = row_max(row)`` (vectorised); no finite logit -> -1.
2. Weights ``w = exp64(l - m)`` (float64, ~1 ulp; masked -> exactly 0; computed by
   ``exp64_neg``, exp64 bit for bit on ``l - m <= 0``, which skips the subnormal
   scale where the weight rounds to 0), summed per
   block of ``DRAW_BLOCK`` tokens (vectorised); ``W`` = sum of the block sums in
   block order.
3. ``target = u * W`` with ``u = shared.uniform(seed, position, 0)``; walk the block
   sums to the first block whose running sum exceeds ``target``, then rescan that
   block (and, if rounding says so, the following ones) token by token: the first
   token whose running sum exceeds ``target`` is drawn; none -> the last finite token.

The reference sums sequentially (``np.cumsum``); here the order inside a block is
LLVM's vector order, so running sums differ by float64 rounding only (~1e-16 relative)
and the drawn token can differ only when ``u * W`` lies within that of a boundary
(spec §5).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .. import shared
from .simd import FASTMATH, exp64, exp64_neg, row_max

__all__ = [
    "DRAW_BLOCK", "draw_row", "argmax_row", "logsumexp_row", "token_logprob_row",
    "draw_rows", "draw_rows_serial", "argmax_rows", "argmax_rows_serial",
    "token_logprob_rows", "draw", "argmax", "token_logprob",
]

#: Tokens per block of the draw's block sums (a compile-time trip count).
DRAW_BLOCK = 256
_ARGMAX_BLOCK = 64
_NEG_INF = -np.inf


# ---------------------------------------------------------------------------------
# row kernels


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def draw_row(row, u):
    """Spec §5 draw over one float32 row with uniform ``u``; -1 if no finite logit."""
    V = row.shape[0]
    m = row_max(row)
    if m == _NEG_INF:
        return -1
    mf = np.float64(m)
    nfull = V // DRAW_BLOCK
    nb = nfull + (1 if V % DRAW_BLOCK else 0)
    sums = np.empty(nb, np.float64)
    total = 0.0
    for b in range(nfull):
        base = b * DRAW_BLOCK
        s = 0.0
        for j in range(DRAW_BLOCK):  # vectorised exp + sum
            s += exp64_neg(np.float64(row[base + j]) - mf)
        sums[b] = s
        total += s
    if nb > nfull:
        s = 0.0
        for i in range(nfull * DRAW_BLOCK, V):
            s += exp64_neg(np.float64(row[i]) - mf)
        sums[nfull] = s
        total += s
    target = u * total
    acc = 0.0
    b = 0
    while b < nb and acc + sums[b] <= target:
        acc += sums[b]
        b += 1
    for i in range(b * DRAW_BLOCK, V):  # sequential running sum from that block on
        acc += exp64_neg(np.float64(row[i]) - mf)
        if acc > target:
            return i
    for i in range(V - 1, -1, -1):  # rounding left none: the last finite token
        if row[i] > _NEG_INF:
            return i
    return -1


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def argmax_row(row):
    """Index of the first maximum of one row; -1 if no finite logit."""
    V = row.shape[0]
    m = row_max(row)
    if m == _NEG_INF:
        return -1
    nfull = V // _ARGMAX_BLOCK
    for b in range(nfull):
        base = b * _ARGMAX_BLOCK
        hits = 0
        for j in range(_ARGMAX_BLOCK):  # vectorised compare-and-count
            hits += np.int32(row[base + j] == m)
        if hits:
            for i in range(base, base + _ARGMAX_BLOCK):
                if row[i] == m:
                    return i
    for i in range(nfull * _ARGMAX_BLOCK, V):
        if row[i] == m:
            return i
    return -1


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def logsumexp_row(row):
    """``(m, log(sum(exp(l - m))))`` of one row in float64; ``(-inf, 0)`` if none finite."""
    m = row_max(row)
    if m == _NEG_INF:
        return _NEG_INF, 0.0
    mf = np.float64(m)
    s = 0.0
    for i in range(row.shape[0]):
        s += exp64(np.float64(row[i]) - mf)
    return mf, math.log(s)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def token_logprob_row(row, t):
    """Natural-log probability of token ``t`` (float64); NaN if t < 0, -inf if masked."""
    if t < 0:
        return np.nan
    x = np.float64(row[t])
    if x == _NEG_INF:
        return _NEG_INF
    mf, lse = logsumexp_row(row)
    return (x - mf) - lse


# ---------------------------------------------------------------------------------
# batched kernels


@numba.njit(cache=True, nogil=True, parallel=True)
def draw_rows(logits, seed, position, out):
    """Batched draw (``prange`` over rows) into ``out`` (int32, (B,))."""
    for b in prange(logits.shape[0]):
        u = shared.uniform(seed[b], position[b], 0)
        out[b] = draw_row(logits[b], u)


@numba.njit(cache=True, nogil=True)
def draw_rows_serial(logits, seed, position, out):
    """``draw_rows`` without threads (B == 1: no thread-pool launch)."""
    for b in range(logits.shape[0]):
        u = shared.uniform(seed[b], position[b], 0)
        out[b] = draw_row(logits[b], u)


@numba.njit(cache=True, nogil=True, parallel=True)
def argmax_rows(logits, out):
    """Batched first-maximum index into ``out`` (int32, (B,))."""
    for b in prange(logits.shape[0]):
        out[b] = argmax_row(logits[b])


@numba.njit(cache=True, nogil=True)
def argmax_rows_serial(logits, out):
    """``argmax_rows`` without threads."""
    for b in range(logits.shape[0]):
        out[b] = argmax_row(logits[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def token_logprob_rows(logits, tokens, out):
    """Batched ``token_logprob_row`` into ``out`` (float64, (B,))."""
    for b in prange(logits.shape[0]):
        out[b] = token_logprob_row(logits[b], tokens[b])


# ---------------------------------------------------------------------------------
# Python wrappers (the reference's signatures; inputs as in docs/internals.md)


def _rows_f32(logits):
    x = np.asarray(logits)
    if x.ndim == 1:
        x = x[None, :]
    return np.ascontiguousarray(x, dtype=np.float32)


def draw(logits, seed, position):
    """Spec §5 draw: int32 ``(B,)``, -1 for a row with no finite logit."""
    x = _rows_f32(logits)
    B = x.shape[0]
    out = np.full(B, -1, np.int32)
    if B == 0 or x.shape[1] == 0:
        return out
    seed = np.ascontiguousarray(np.broadcast_to(np.asarray(seed, np.uint64), (B,)))
    position = np.ascontiguousarray(np.broadcast_to(np.asarray(position, np.uint64), (B,)))
    (draw_rows_serial if B == 1 else draw_rows)(x, seed, position, out)
    return out


def argmax(logits):
    """First maximum per row: int32 ``(B,)``, -1 for a row with no finite logit."""
    x = _rows_f32(logits)
    B = x.shape[0]
    out = np.full(B, -1, np.int32)
    if B == 0 or x.shape[1] == 0:
        return out
    (argmax_rows_serial if B == 1 else argmax_rows)(x, out)
    return out


def token_logprob(logits, tokens):
    """float64 ``(B,)`` log-probability of ``tokens[b]`` in row b (NaN for -1)."""
    x = _rows_f32(logits)
    B = x.shape[0]
    out = np.full(B, np.nan)
    if B == 0:
        return out
    tokens = np.ascontiguousarray(np.broadcast_to(np.asarray(tokens, np.int64), (B,)))
    token_logprob_rows(x, tokens, out)
    return out
