"""Top-k by selection: numba CPU kernels.

``topk(x, k)`` -> ``(values float32 (B, k), indices int32 (B, k))``: exactly k per row,
descending, ties to the lower id (the order of ``np.argsort(-x, kind="stable")``),
identical to ``fastsample.reference.topk``.

One row, no full sort, one streaming pass over the row plus work on ~k entries:

1. **Column maxima** (one vectorised pass). The first ``S * W`` entries of the row
   (``S`` strips of ``W = V // S`` contiguous entries, ``S ~ V / (8k)``, at most
   ``TOPK_MAX_STRIPS``) are read as an ``(S, W)`` matrix and ``cmax[j]`` is the
   largest entry of column j: an element-wise ``llvm.maxnum`` over the strips, which
   LLVM vectorises (no horizontal reductions, unlike per-block maxima). The
   ``V - S*W < S`` tail entries are checked one by one in step 3.
2. **Threshold** from the column maxima by MSD radix select on order-preserving
   uint32 keys (``_desc_key``: ascending key = descending value, -0.0 keyed as 0.0):
   11-bit histograms of the bits below the common prefix of the keys, refined until
   the boundary bucket holds few columns. It gives ``thr`` such that at least k
   columns have ``cmax >= thr`` (``nsel``, between k and about k + k/16): then at
   least k entries are ``>= thr``, so ``thr <=`` the k-th largest entry, and every
   entry of the top k is ``>= thr``.
3. **Gather** (branch-free: store, then advance the count by the compare) every entry
   ``>= thr`` of the selected columns, strip by strip and within a strip by column,
   i.e. in id order, then the tail. Only ``nsel * S`` entries are touched (~8 per
   cent of the row).
4. **Sort** the candidates (about k) by key with a stable LSD radix sort (8-bit digits,
   only over the bits in which the candidate keys differ; insertion sort below 32),
   so equal values stay id-ascending; the first k are the answer.

Exact for every row (the candidates hold every entry ``>= thr`` and at least k of
them): ties, all-equal rows (one column bucket: every column selected, the gather
keeps the whole row and the sort is a no-op), -inf entries (ordinary values that lose
to every finite one), k = V. Signed zeros compare equal (as in the reference), so
-0.0 and 0.0 tie and the lower id wins; values are copied from the row, so their
sign is kept. Costs: O(V) with a vectorised main pass, plus O(W) scalar select and
O(k * S) gather; a tie-heavy row costs at most an O(V) gather and radix sort.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from .simd import FASTMATH, f32_as_u32, maxnum, minnum

__all__ = ["TOPK_MAX_STRIPS", "strips_for", "topk_row", "topk_rows", "topk_rows_serial",
           "topk"]

#: Most strips of the column-maxima pass (columns then hold up to this many entries).
TOPK_MAX_STRIPS = 128
_RADIX_BITS = 11
_SMALL_SORT = 32


@numba.njit(cache=True, nogil=True)
def strips_for(V, k):
    """Strips S for a row of V entries and k kept: about V / (8k) (W >= 8k columns)."""
    s = V // (8 * max(k, 1))
    return max(1, min(s, TOPK_MAX_STRIPS))


@numba.njit(cache=True, nogil=True, inline="always")
def _desc_key(v):
    """uint32 key whose ascending order is descending float order; -0.0 keys as 0.0."""
    u = np.int64(f32_as_u32(v))
    u = u if v != 0 else np.int64(0)  # -0.0 keys as +0.0 (a select, vectorises)
    flip = ((u >> 31) - 1) & 0x7FFFFFFF  # positive: flip the magnitude bits
    return np.uint32(u ^ flip)


@intrinsic
def _u32_as_f32(typingctx, a):
    """Reinterpret the bits of a uint32 as a float32."""
    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[0], signature.args[0], types.uint32)
        return builder.bitcast(v, ir.FloatType())

    return types.float32(a), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _key_value(key):
    """The float32 whose ``_desc_key`` is ``key`` (the inverse, for non-NaN keys)."""
    u = np.int64(key)
    flip = ((u >> 31) - 1) & 0x7FFFFFFF
    return _u32_as_f32(np.uint32(u ^ flip))


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _column_max(row, S, W, cmax):
    """cmax[j] = max over s < S of row[s*W + j] (vectorised, 4 strips per sweep)."""
    if S >= 4:
        for j in range(W):
            cmax[j] = maxnum(maxnum(row[j], row[W + j]), maxnum(row[2 * W + j], row[3 * W + j]))
        s = 4
    elif S >= 2:
        for j in range(W):
            cmax[j] = maxnum(row[j], row[W + j])
        s = 2
    else:
        for j in range(W):
            cmax[j] = row[j]
        s = 1
    while s + 4 <= S:
        a = s * W
        b = a + W
        c = b + W
        d = c + W
        for j in range(W):
            m = maxnum(maxnum(row[a + j], row[b + j]), maxnum(row[c + j], row[d + j]))
            cmax[j] = maxnum(cmax[j], m)
        s += 4
    while s < S:
        a = s * W
        for j in range(W):
            cmax[j] = maxnum(cmax[j], row[a + j])
        s += 1


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _finite_range(x, n):
    """(largest of x[:n], smallest entry of x[:n] above -inf); the latter +inf if none."""
    hi = np.float32(-np.inf)
    lo = np.float32(np.inf)
    for j in range(n):
        v = x[j]
        hi = maxnum(hi, v)
        lo = minnum(lo, v if v > -np.inf else np.float32(np.inf))
    return hi, lo


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _linear_buckets(x, n, hi, lo, nb, out):
    """out[j] = bucket of x[j] among nb equal slices of [lo, hi] (0 holds hi; monotone
    non-increasing in x[j]); entries below lo (-inf) go to bucket nb."""
    span = np.float64(hi) - np.float64(lo)
    scale = (nb - 1) / span if span > 0 else 0.0
    top = np.float64(hi)
    for j in range(n):
        f = minnum((top - np.float64(x[j])) * scale, np.float64(nb))  # -inf: inf or NaN -> nb
        out[j] = np.int32(f)


@numba.njit(cache=True, nogil=True)
def _bit_length(x):
    n = 0
    while x:
        x >>= 1
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _select_key(keys, n, k, kmin, kmax, slack):
    """A key t with k <= #(keys[:n] <= t) <= k - 1 + max(slack, ties at the k-th key).

    MSD radix select: the bucket of rank k is refined (11 bits at a time, below the
    common prefix of all keys) until it holds at most ``slack`` keys or one key value.
    Returns (t, #(keys <= t)); t lies in [kmin, kmax], so it is the key of a float.
    """
    lo = np.int64(kmin)
    hi = np.int64(kmax)
    s = _bit_length(lo ^ hi)  # keys differ in their low s bits only
    base = (lo >> s) << s
    before = 0  # keys < base
    cnt = n  # keys in [base, base + 2**s)
    hist = np.empty((1 << _RADIX_BITS) + 2, np.int32)
    while s > 0 and cnt > slack:
        b = min(_RADIX_BITS, s)
        sh = s - b
        nb = 1 << b
        for d in range(nb + 2):
            hist[d] = 0
        for i in range(n):  # bucket 0: below base, nb + 1: above the range
            d = (np.int64(keys[i]) - base) >> sh
            d = min(max(d, -1), nb) + 1
            hist[d] += 1
        cum = hist[0]
        d = 1
        while cum + hist[d] < k:
            cum += hist[d]
            d += 1
        before = cum
        cnt = hist[d]
        base += np.int64(d - 1) << sh
        s = sh
    t = min(base + (np.int64(1) << s) - 1, hi)
    return np.uint32(t), before + cnt


_THR_BUCKETS = 2048


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _threshold(cmax, W, k, slack):
    """thr with k <= #(cmax[:W] >= thr) = nsel <= k - 1 + max(slack, ties); (thr, nsel).

    A linear histogram of the values (one level), refined by a radix select on the
    keys of the boundary bucket when it holds more than ``slack`` columns.
    """
    hi, lo = _finite_range(cmax, W)
    if lo > hi:  # every column maximum is -inf
        return np.float32(-np.inf), W
    nb = _THR_BUCKETS
    bidx = np.empty(W, np.int32)
    _linear_buckets(cmax, W, hi, lo, nb, bidx)
    h = np.zeros(nb + 1, np.int32)
    for j in range(W):
        h[bidx[j]] += 1
    cum = 0
    d = 0
    while cum + h[d] < k:
        cum += h[d]
        d += 1
    if d == nb:  # the k-th largest column maximum is -inf
        return np.float32(-np.inf), W
    c = h[d]
    if c <= slack:
        thr = np.float32(np.inf)
        for j in range(W):
            thr = minnum(thr, cmax[j] if bidx[j] == d else np.float32(np.inf))
        return thr, cum + c
    keys = np.empty(c, np.uint32)
    q = 0
    for j in range(W):
        if bidx[j] == d:
            keys[q] = _desc_key(cmax[j])
            q += 1
    kmin = keys[0]
    kmax = keys[0]
    for i in range(c):
        kmin = min(kmin, keys[i])
        kmax = max(kmax, keys[i])
    t, cnt = _select_key(keys, c, k - cum, kmin, kmax, slack)
    return _key_value(t), cum + cnt


@numba.njit(cache=True, nogil=True)
def _sort_by_key(keys, pay, m):
    """Order of keys[:m] ascending, stable; pay[:m] (int32) permuted alongside.

    Returns the array (``pay`` or a scratch one) holding the permuted payload.
    Insertion sort for m <= _SMALL_SORT, else LSD radix sort with 8-bit digits over
    the bits in which the keys differ.
    """
    if m <= _SMALL_SORT:
        for i in range(1, m):
            kk = keys[i]
            p = pay[i]
            j = i - 1
            while j >= 0 and keys[j] > kk:
                keys[j + 1] = keys[j]
                pay[j + 1] = pay[j]
                j -= 1
            keys[j + 1] = kk
            pay[j + 1] = p
        return pay
    lo = keys[0]
    hi = keys[0]
    for i in range(m):
        lo = min(lo, keys[i])
        hi = max(hi, keys[i])
    for i in range(m):
        keys[i] = keys[i] - lo
    nbits = _bit_length(np.int64(hi - lo))
    tk = np.empty(m, np.uint32)
    tp = np.empty(m, np.int32)
    count = np.empty(256, np.int32)
    sk, sp, dk, dp = keys, pay, tk, tp
    for shift in range(0, nbits, 8):
        for d in range(256):
            count[d] = 0
        for i in range(m):
            count[(sk[i] >> shift) & 0xFF] += 1
        total = 0
        for d in range(256):
            c = count[d]
            count[d] = total
            total += c
        for i in range(m):
            key = sk[i]
            d = (key >> shift) & 0xFF
            j = count[d]
            dk[j] = key
            dp[j] = sp[i]
            count[d] = j + 1
        sk, sp, dk, dp = dk, dp, sk, sp
    return sp


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def topk_row(row, k, vals, ids):
    """Top k of one float32 row into ``vals`` (float32, (k,)) and ``ids`` (int32, (k,)).

    ``0 <= k <= row.shape[0]``. Entries come out descending, ties to the lower id.
    """
    V = row.shape[0]
    if k <= 0:
        return
    S = strips_for(V, k)
    W = V // S
    # 1. column maxima and their keys
    cmax = np.empty(W, np.float32)
    _column_max(row, S, W, cmax)
    ckeys = np.empty(W, np.uint32)
    kmin, kmax = _keys_of(cmax, W, ckeys)
    # 2. threshold: at least k columns (so at least k entries) are >= thr
    tkey, nsel = _select_key(ckeys, W, k, kmin, kmax, max(8, k >> 4))
    thr = _key_value(tkey)
    sel = np.empty(W, np.int32)
    ns = 0
    for j in range(W):  # branch-free compaction of the selected columns
        sel[ns] = j
        ns += np.int32(ckeys[j] <= tkey)
    # 3. gather every entry >= thr of the selected columns (id order), then the tail
    cap = ns * S + (V - S * W)
    cv = np.empty(cap, np.float32)
    ci = np.empty(cap, np.int32)
    n = 0
    for s in range(S):
        off = s * W
        for q in range(ns):
            i = off + sel[q]
            v = row[i]
            cv[n] = v
            ci[n] = i
            n += np.int32(v >= thr)
    for i in range(S * W, V):
        v = row[i]
        cv[n] = v
        ci[n] = i
        n += np.int32(v >= thr)
    # 4. stable sort of the candidates by key; the first k are the answer
    keys = np.empty(n, np.uint32)
    pos = np.empty(n, np.int32)
    for i in range(n):
        keys[i] = _desc_key(cv[i])
        pos[i] = i
    order = _sort_by_key(keys, pos, n)
    for i in range(k):
        o = order[i]
        vals[i] = cv[o]
        ids[i] = ci[o]


@numba.njit(cache=True, nogil=True, parallel=True)
def topk_rows(x, k, vals, ids):
    """Batched top-k (``prange`` over rows) into ``vals`` / ``ids`` ((B, k))."""
    for b in prange(x.shape[0]):
        topk_row(x[b], k, vals[b], ids[b])


@numba.njit(cache=True, nogil=True)
def topk_rows_serial(x, k, vals, ids):
    """``topk_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        topk_row(x[b], k, vals[b], ids[b])


def topk(x, k):
    """The k largest logits per row: exactly k, descending, ties to the lower id.

    ``x`` is ``(V,)`` or ``(B, V)``; k is clipped to ``[0, V]``. Returns
    ``(values float32 (..., k), indices int32 (..., k))``.
    """
    x = np.asarray(x)
    one = x.ndim == 1
    rows = np.ascontiguousarray(x[None, :] if one else x, dtype=np.float32)
    B, V = rows.shape
    k = min(max(int(k), 0), V)
    vals = np.empty((B, k), np.float32)
    ids = np.empty((B, k), np.int32)
    if B and k:
        (topk_rows_serial if B == 1 else topk_rows)(rows, k, vals, ids)
    return (vals[0], ids[0]) if one else (vals, ids)
