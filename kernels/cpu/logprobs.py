"""Log-probabilities of sampled tokens and of each row's top N: numba CPU kernels.

``logprobs(logits, tokens, n)`` (``fastsample.reference.logprobs``, docs/spec.md §9) per row:

1. the top ``max(n, 1)`` from ``topk_row`` (the block-maxima machinery of top-k); its
   first value is the row max ``m``;
2. one pass over the row: ``W = sum exp(l - m)`` in float64 (``exp_f32acc``, relative
   error < 3e-10, 8 lanes) and, in the same loop, the rank count ``#(l > l[token])``;
3. ``float32((l - m) - log W)`` for the token and the top N.

The results agree with the reference (float64 ``exp``) to 1 float32 ulp or 1e-9
absolute: ``log W`` differs by < 3e-10. Ranks, ids and the -1 / ``-inf`` / NaN
padding are exact.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .simd import FASTMATH, exp_f32acc, row_max
from .topk import topk_row

__all__ = ["logprobs", "logprobs_row", "logprobs_rows", "logprobs_rows_serial"]

_NEG_INF = -np.inf
_PARALLEL_MIN = 1 << 20   # logits in a call below which the rows run on one thread


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _lse_rank(row, m, xt):
    """``(sum exp(row - m) in float64, #(row > xt))`` in one vectorised pass."""
    s = 0.0
    c = np.int64(0)
    for i in range(row.shape[0]):
        v = row[i]
        s += exp_f32acc(np.float64(v) - m)
        c += np.int64(v > xt)
    return s, c


@numba.njit(cache=True, nogil=True)
def logprobs_row(row, token, n, vals, ids, lp, rank, top_ids, top_lp):
    """One row into ``lp[0]``, ``rank[0]``, ``top_ids[:n]``, ``top_lp[:n]``; ``vals`` /
    ``ids`` (``min(max(n, 1), V)`` entries) are top-k scratch."""
    V = row.shape[0]
    if token < 0 or token >= V:
        lp[0] = np.nan
        rank[0] = -1
        for q in range(n):
            top_ids[q] = -1
            top_lp[q] = np.nan
        return
    kk = vals.shape[0]
    if kk > 0:
        topk_row(row, kk, vals, ids)
        m = vals[0]
    else:
        m = row_max(row)
    if not m > _NEG_INF:  # nothing finite (cannot happen with a sampled token)
        m = np.float32(0.0)
    mf = np.float64(m)
    xt = row[token]
    s, c = _lse_rank(row, mf, xt)
    lse = math.log(s)
    lp[0] = np.float32((np.float64(xt) - mf) - lse)
    rank[0] = np.int32(c + 1)
    for q in range(n):
        v = vals[q] if q < kk else _NEG_INF
        if v > _NEG_INF:
            top_ids[q] = ids[q]
            top_lp[q] = np.float32((np.float64(v) - mf) - lse)
        else:
            top_ids[q] = -1
            top_lp[q] = _NEG_INF


@numba.njit(cache=True, nogil=True, parallel=True)
def logprobs_rows(x, tokens, n, vals, ids, lp, rank, top_ids, top_lp):
    """Batched ``logprobs_row`` (``prange`` over rows); scratch ``vals`` / ``ids`` (B, kk)."""
    for b in prange(x.shape[0]):
        logprobs_row(x[b], tokens[b], n, vals[b], ids[b], lp[b:b + 1], rank[b:b + 1],
                     top_ids[b], top_lp[b])


@numba.njit(cache=True, nogil=True)
def logprobs_rows_serial(x, tokens, n, vals, ids, lp, rank, top_ids, top_lp):
    """``logprobs_rows`` without threads (one row, or a small block)."""
    for b in range(x.shape[0]):
        logprobs_row(x[b], tokens[b], n, vals[b], ids[b], lp[b:b + 1], rank[b:b + 1],
                     top_ids[b], top_lp[b])


def logprobs(logits, tokens, n):
    """``fastsample.reference.logprobs`` on numba: ``(logprob, rank, top_ids,
    top_logprobs)`` of float32 ``(B, V)`` logits, int tokens (B,) (-1: flagged), n >= 0."""
    x = np.ascontiguousarray(logits, dtype=np.float32)
    B, V = x.shape
    n = int(n)
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    kk = min(max(n, 1), V)
    vals = np.empty((B, kk), np.float32)
    ids = np.empty((B, kk), np.int32)
    lp = np.empty(B, np.float32)
    rank = np.empty(B, np.int32)
    top_ids = np.empty((B, n), np.int32)
    top_lp = np.empty((B, n), np.float32)
    if B:  # small work (one row, a block of candidates): no thread-pool launch
        (logprobs_rows_serial if B * V < _PARALLEL_MIN else logprobs_rows)(
            x, tokens, n, vals, ids, lp, rank, top_ids, top_lp)
    return lp, rank, top_ids, top_lp
