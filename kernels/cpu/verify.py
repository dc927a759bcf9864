"""Speculative decoding verification (docs/spec.md §11): the numba kernel of ``verify_rows``.

Same signature and result as ``fastsample.reference.verify_rows``. One request per
loop iteration (``prange`` over requests when the batch carries enough work): for each
step j it makes two passes over row j's finite values (max, then the float64 weights
``exp(l - max)`` summed in id order) and, on a rejection, two over the residual
``max(0, p - q)``. On compacted rows (``truncate_canonical``'s survivors) every pass
visits only the candidates, and the drafter's probabilities are read at the candidate
ids and the draft token only: one pass over the target row happened before (the
truncation), none over ``draft_probs``.

Running sums are sequential in id order, as in the reference (``np.cumsum``); tokens
can differ only by the rounding of ``exp`` (numpy's vs libm's, ~1 ulp).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .. import shared

__all__ = ["verify_rows"]

_NEG_INF = -np.inf
# Below this many (row, column) cells the serial kernel runs: a thread-pool launch
# costs more than the work.
_PARALLEL_CELLS = 1 << 16


@numba.njit(cache=True, nogil=True, inline="always")
def _token(ids, lo, sparse, c):
    return np.int64(ids[lo + c]) if sparse else np.int64(c)


@numba.njit(cache=True, nogil=True)
def _column(ids, lo, hi, sparse, ncol, t):
    """Row's column of token ``t``, or -1 (binary search over ascending ids)."""
    if not sparse:
        return t if t < ncol else -1
    a, b = lo, hi
    while a < b:
        mid = (a + b) >> 1
        if ids[mid] < t:
            a = mid + 1
        else:
            b = mid
    return a - lo if a < hi and ids[a] == t else -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _verify_request(b, block, ids, offsets, sparse, d, q, has_q, n, seed, position,
                    tokens, accepted, bad_q):
    K1 = tokens.shape[1]
    for j in range(n + 1):
        r = b * K1 + j
        lo = np.int64(offsets[r]) if sparse else np.int64(0)
        ncol = np.int64(offsets[r + 1]) - lo if sparse else np.int64(block.shape[1])
        ncol = min(ncol, np.int64(block.shape[1]))
        hi = lo + ncol
        m = _NEG_INF
        count = 0
        only = -1
        for c in range(ncol):
            v = np.float64(block[r, c])
            if math.isfinite(v):
                count += 1
                only = c
                m = max(m, v)
        if count == 0:
            return
        W = 0.0
        for c in range(ncol):
            v = np.float64(block[r, c])
            if math.isfinite(v):
                W += math.exp(v - m)
        pos = np.uint64(position) + np.uint64(j)
        if j == n:   # every draft accepted: the bonus token, spec §5's plain draw
            target = shared.uniform(seed, pos, 0) * W
            cum = 0.0
            for c in range(ncol):
                v = np.float64(block[r, c])
                if math.isfinite(v):
                    cum += math.exp(v - m)
                    if cum > target:
                        tokens[b, j] = _token(ids, lo, sparse, c)
                        return
            tokens[b, j] = _token(ids, lo, sparse, only)   # the last finite token
            return
        dj = np.int64(d[b, j])
        qd = np.float64(q[b, j, dj]) if has_q else 1.0
        ok = qd >= 0.0
        if has_q:
            for c in range(ncol):
                if math.isfinite(np.float64(block[r, c])) and \
                        not np.float64(q[b, j, _token(ids, lo, sparse, c)]) >= 0.0:
                    ok = False
        if not ok:
            bad_q[b] = j
            return
        col = _column(ids, lo, hi, sparse, ncol, dj)
        pd = 0.0
        here = False
        if col >= 0:
            v = np.float64(block[r, col])
            if math.isfinite(v):
                here = True
                pd = math.exp(v - m) / W
        if count == 1:   # greedy: accept on the one token, else emit it
            accept = here
        elif qd == 0.0:
            accept = pd > 0.0
        else:
            accept = shared.uniform(seed, pos, 2) < pd / qd
        if accept:
            tokens[b, j] = dj
            accepted[b] = j + 1
            continue
        u3 = shared.uniform(seed, pos, 3)
        if count == 1:
            tokens[b, j] = _token(ids, lo, sparse, only)
            return
        R = 0.0
        for c in range(ncol):
            v = np.float64(block[r, c])
            if math.isfinite(v):
                t = _token(ids, lo, sparse, c)
                qt = np.float64(q[b, j, t]) if has_q else (1.0 if t == dj else 0.0)
                x = math.exp(v - m) / W - qt
                if x > 0.0:
                    R += x
        if R > 0.0:
            target = u3 * R
            cum = 0.0
            last = -1
            for c in range(ncol):
                v = np.float64(block[r, c])
                if math.isfinite(v):
                    t = _token(ids, lo, sparse, c)
                    qt = np.float64(q[b, j, t]) if has_q else (1.0 if t == dj else 0.0)
                    x = math.exp(v - m) / W - qt
                    if x > 0.0:
                        cum += x
                        last = c
                        if cum > target:
                            tokens[b, j] = t
                            return
            tokens[b, j] = _token(ids, lo, sparse, last)
            return
        # Residual zero everywhere (only rounding gets here): the draw from p with u3.
        target = u3 * W
        cum = 0.0
        for c in range(ncol):
            v = np.float64(block[r, c])
            if math.isfinite(v):
                cum += math.exp(v - m)
                if cum > target:
                    tokens[b, j] = _token(ids, lo, sparse, c)
                    return
        tokens[b, j] = _token(ids, lo, sparse, only)
        return


@numba.njit(cache=True, nogil=True, parallel=True)
def _verify_parallel(block, ids, offsets, sparse, d, q, has_q, n, seed, position,
                     tokens, accepted, bad_q):
    for b in prange(d.shape[0]):
        _verify_request(b, block, ids, offsets, sparse, d, q, has_q, n[b], seed[b],
                        position[b], tokens, accepted, bad_q)


@numba.njit(cache=True, nogil=True)
def _verify_serial(block, ids, offsets, sparse, d, q, has_q, n, seed, position,
                   tokens, accepted, bad_q):
    for b in range(d.shape[0]):
        _verify_request(b, block, ids, offsets, sparse, d, q, has_q, n[b], seed[b],
                        position[b], tokens, accepted, bad_q)


_NO_IDS = np.zeros(0, np.int32)
_NO_OFFSETS = np.zeros(1, np.int64)
_NO_Q = np.zeros((1, 1, 1), np.float32)


def verify_rows(block, ids, offsets, draft_tokens, draft_probs, num_draft, seed, position):
    """``fastsample.reference.verify_rows`` (see there), numba."""
    B, K = draft_tokens.shape
    tokens = np.full((B, K + 1), -1, np.int32)
    accepted = np.zeros(B, np.int32)
    bad_q = np.full(B, -1, np.int32)
    if B == 0:
        return tokens, accepted, bad_q
    sparse = ids is not None
    block = np.ascontiguousarray(block, dtype=np.float32)
    if block.shape[0] != B * (K + 1):
        raise ValueError(f"block has {block.shape[0]} rows; expected B*(K+1) = {B * (K + 1)}")
    ids = np.ascontiguousarray(ids, dtype=np.int32) if sparse else _NO_IDS
    offsets = np.ascontiguousarray(offsets, dtype=np.int64) if sparse else _NO_OFFSETS
    has_q = draft_probs is not None
    q = np.ascontiguousarray(draft_probs, dtype=np.float32) if has_q else _NO_Q
    args = (block, ids, offsets, sparse, np.ascontiguousarray(draft_tokens, dtype=np.int32),
            q, has_q, np.ascontiguousarray(num_draft, dtype=np.int64),
            np.ascontiguousarray(seed, dtype=np.uint64),
            np.ascontiguousarray(position, dtype=np.uint64), tokens, accepted, bad_q)
    cells = block.shape[1] * (K + 1) * B
    (_verify_parallel if B > 1 and cells >= _PARALLEL_CELLS else _verify_serial)(*args)
    return tokens, accepted, bad_q
