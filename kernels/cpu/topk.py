"""Top-k by selection: numba CPU kernels.

``topk(x, k)`` -> ``(values float32 (B, k), indices int32 (B, k))``: exactly k per row,
descending, ties to the lower id (the order of ``np.argsort(-x, kind="stable")``),
identical to ``fastsample.reference.topk``.

Rows of at least ``TOPK_STREAM_MIN_V`` entries (and V >= 16 k) are read **once**
(``topk_row``): reading a 128256-entry row from DRAM dominates at B=64, and a row does
not fit in L2, so a second pass over it is a second read from L3 or memory.

1. **Guess from an L2-sized prefix** of P = max(16384, 32 k) entries (at most V/2):
   column maxima of the prefix (below), then a threshold ``thr`` that about
   ``r ~ e + 4 sqrt(e) + 8`` prefix entries reach (``e = k P / V``). On rows whose
   value order is unrelated to the ids about 1.5 k row entries reach it (llm_like,
   k = 1000: 1.47 k on average, at least 1.28 k over 256 rows; k = 50: about 4 k).
2. **One gather pass** over the row (the prefix is still in L2): every entry ``>= thr``
   into a buffer of composite keys. When the buffer fills, ``_tighten`` raises ``thr``
   to a bound below the buffer's k-th largest (``_threshold``) and drops what falls
   under; if ties keep it full, it sorts the buffer, keeps exactly k and asks later
   entries (higher ids, which lose ties) to be strictly above the k-th value.
3. **Check**: if fewer than k entries reached the guess, the row falls back to the
   two-pass path below (exact either way: n >= k distinct entries >= thr mean thr is at
   most the row's k-th largest). Otherwise the buffer is sorted (4. below, only up to
   rank k) and the first k are the answer.

Shorter rows (they fit in L2) and large k take the two-pass path ``_topk_two_pass``:
no full sort; two vectorised passes over the row plus work on ~k entries:

1. **Column maxima.** The first ``S * W`` entries (``S`` strips of ``W = V // S``,
   ``S ~ V / (4k)`` capped at ``TOPK_MAX_STRIPS``) are read as an ``(S, W)`` matrix and
   ``cmax[j]`` is the largest entry of column j: an element-wise ``llvm.maxnum`` over
   strip slices, which LLVM vectorises (no horizontal reductions; np.max speed).
2. **Threshold** ``thr`` from the column maxima: a linear value histogram (2048
   buckets, fewer for fewer columns), refined by an MSD radix select on
   order-preserving uint32 keys (``_desc_key``: ascending key = descending value,
   -0.0 keyed as 0.0) when the boundary bucket is crowded. At least k columns
   (``nsel``, about k + k/16) have ``cmax >= thr``, so at least k entries are
   ``>= thr``: ``thr`` is at most the k-th largest entry, and every entry of the top k
   is ``>= thr``.
3. **Gather** every entry ``>= thr`` (all lie in the selected columns or the tail, so
   ``nsel * S + tail`` bounds them): 64 entries per test via eight 8-lane compare
   masks (``_ge_mask8``: vcmpps + vmovmskps), set bits visited with tzcnt. ~1.07-1.15 k
   candidates on llm_like rows.
4. **Sort** the candidates by a distinct uint64 key ``(desc key << 32) | id`` (value
   descending, id ascending): a counting sort on linear value buckets plus an
   insertion sort inside buckets; a crowded bucket (ties, a lopsided row) switches to
   an LSD radix sort over the bits in which the keys differ. The first k are the answer;
   ``_sort_top`` only places the buckets up to the one holding rank k.

Exact for every row: ties (ids in the key), all-equal rows (every column selected, the
gather keeps the whole row), -inf entries (ordinary values; a -inf threshold keeps
every entry), k = V. Signed zeros compare equal (as in the reference), so -0.0 and 0.0
tie and the lower id wins; a zero's sign is copied from the row. NaN is not supported.
Costs: O(V) vectorised, plus O(W) scalar (the histogram) and O(k) for the sort; a
tie-heavy row costs at most an O(V) gather and radix sort.

Code-generation notes: index arrays by the loop counter of a slice (``row[off + j]``
gets numba's negative-index wraparound select, which blocks vectorisation: ~6x slower),
and do not rebind an array inside a hot loop (refcount traffic: ~5x slower).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from .simd import FASTMATH, _cttz, _ge_mask8, _uge_mask8, f32_as_u32, maxnum, minnum
from .validity import row_is_invalid, row_max_nan

__all__ = ["TOPK_MAX_STRIPS", "TOPK_STREAM_MIN_V", "TOPK_STREAM_PREFIX",
           "TOPK_STREAM_PREFIX_PER_K", "strips_for", "topk_row", "topk_rows",
           "topk_rows_serial", "topk"]

#: Most strips of the column-maxima pass (columns then hold up to this many entries).
TOPK_MAX_STRIPS = 128
_RADIX_BITS = 11
_SMALL_SORT = 32


@numba.njit(cache=True, nogil=True)
def strips_for(V, k):
    """Strips S for a row of V entries and k kept: about V / (4k) (W >= 4k columns)."""
    s = V // (4 * max(k, 1))
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
    """cmax[j] = max over s < S of row[s*W + j]: one vectorised pass, 2 strips a sweep.

    Strips are slices indexed by the loop counter only: an index computed as
    ``offset + j`` gets numba's negative-index wraparound, which stops LLVM from
    vectorising the loop (about 6x slower).
    """
    r0 = row[0:W]
    for j in range(W):
        cmax[j] = r0[j]
    s = 1
    while s + 2 <= S:
        ra = row[s * W:(s + 1) * W]
        rb = row[(s + 1) * W:(s + 2) * W]
        for j in range(W):
            cmax[j] = maxnum(cmax[j], maxnum(ra[j], rb[j]))
        s += 2
    if s < S:
        ra = row[s * W:(s + 1) * W]
        for j in range(W):
            cmax[j] = maxnum(cmax[j], ra[j])


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
    nb = 64  # about one bucket per column, at most _THR_BUCKETS
    while nb < W and nb < _THR_BUCKETS:
        nb *= 2
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


@numba.njit(cache=True, nogil=True, inline="always")
def _composite(v, i):
    """uint64 sort key of entry (value v, id i): (value descending, id ascending)."""
    return (np.uint64(_desc_key(v)) << np.uint64(32)) | np.uint64(i)


@numba.njit(cache=True, nogil=True, inline="always")
def _radix_pass(src, dst, sh, mask, count):
    """One stable LSD pass: src's keys into dst by the digit (key >> sh) & mask
    (``count``: mask + 1 counters); keys of any unsigned width."""
    count[:] = 0
    for i in range(src.shape[0]):
        count[(src[i] >> sh) & mask] += 1
    total = 0
    for d in range(count.shape[0]):
        c = count[d]
        count[d] = total
        total += c
    for i in range(src.shape[0]):
        key = src[i]
        d = (key >> sh) & mask
        dst[count[d]] = key
        count[d] += 1


@numba.njit(cache=True, nogil=True)
def _radix_sort_u64(keys, m):
    """Sort keys[:m] (uint64, distinct) ascending; returns the sorted array (LSD radix,
    8-bit digits over the bits in which the keys differ)."""
    lo = keys[0]
    hi = keys[0]
    for i in range(m):
        lo = min(lo, keys[i])
        hi = max(hi, keys[i])
    span = hi - lo
    nbits = 0
    while span:
        span >>= np.uint64(1)
        nbits += 1
    src = np.empty(m, np.uint64)
    for i in range(m):
        src[i] = keys[i] - lo
    dst = np.empty(m, np.uint64)
    count = np.empty(256, np.int64)
    for shift in range(0, nbits, 8):
        _radix_pass(src, dst, np.uint64(shift), np.uint64(0xFF), count)
        src, dst = dst, src
    for i in range(m):
        src[i] += lo
    return src


@numba.njit(cache=True, nogil=True)
def _radix_u32(keys):
    """keys (uint32) sorted ascending: LSD radix, 11-bit digits over the bits in which
    they differ (csrc's fs_radix_u32). ``_radix_sort_u64`` for 32-bit keys takes up to
    four 8-bit passes over twice the bytes: 1.2-1.9x slower on a flat row's 128k
    values (TailFree's whole-row sort)."""
    n = keys.shape[0]
    lo = np.uint32(0xFFFFFFFF)
    hi = np.uint32(0)
    for i in range(n):
        lo &= keys[i]
        hi |= keys[i]
    diff = lo ^ hi
    src = keys
    dst = np.empty(n, np.uint32)
    cnt = np.empty(2048, np.int64)
    for shift in range(0, 32, 11):
        sh = np.uint32(shift)
        if (diff >> sh) & np.uint32(0x7FF) == 0:
            continue
        _radix_pass(src, dst, sh, np.uint32(0x7FF), cnt)
        src, dst = dst, src
    return src


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sort_top(ck, cv, m, k):
    """The k smallest of the distinct composite keys ck[:m] (values cv[:m]), ascending:
    the first k entries of the returned array (``k <= m``).

    ``_sort_candidates`` that only places the buckets up to the one holding rank k
    (about one bucket per two entries), so a buffer of 1.5 k candidates costs little
    more than sorting k. A crowded bucket among them: the full sort.
    """
    if m <= _SMALL_SORT:
        return _sort_candidates(ck, cv, m)
    hi, lo = _finite_range(cv, m)
    nb = 64
    while 2 * nb < m and nb < (1 << 16):
        nb *= 2
    bidx = np.empty(m, np.int32)
    _linear_buckets(cv, m, hi, lo, nb, bidx)  # all -inf (lo > hi): every entry in bucket nb
    count = np.zeros(nb + 2, np.int32)
    for i in range(m):
        count[bidx[i]] += 1
    total = 0  # count[d] becomes the start of bucket d, for d <= dk
    big = 0
    d = 0
    while total < k:
        c = count[d]
        big = max(big, c)
        count[d] = total
        total += c
        d += 1
    if big > _BUCKET_MAX:
        return _sort_candidates(ck, cv, m)
    dk = d - 1
    mk = total  # entries in buckets 0..dk
    out = np.empty(mk, np.uint64)
    for i in range(m):
        b = bidx[i]
        if b <= dk:  # a branch: cheaper here than a branch-free trash slot
            p = count[b]
            out[p] = ck[i]
            count[b] = p + 1
    _insertion_sort_u64(out, mk)
    return out


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sort_candidates(ck, cv, m):
    """Sort the distinct composite keys ck[:m] (values cv[:m]) ascending; returns them.

    A counting sort on linear value buckets (about one per entry), then an insertion
    sort that only fixes the order inside buckets; a bucket of more than _BUCKET_MAX
    entries (ties, a skewed row) switches to the LSD radix sort.
    """
    if m <= _SMALL_SORT:
        out = ck[:m].copy()
        _insertion_sort_u64(out, m)
        return out
    hi, lo = _finite_range(cv, m)
    nb = 64
    while nb < m and nb < (1 << 16):
        nb *= 2
    bidx = np.empty(m, np.int32)
    _linear_buckets(cv, m, hi, lo, nb, bidx)  # all -inf (lo > hi): every entry in bucket nb
    count = np.zeros(nb + 2, np.int32)
    for i in range(m):
        count[bidx[i] + 1] += 1
    big = 0
    for d in range(nb + 2):
        big = max(big, count[d])
    if big > _BUCKET_MAX:
        return _radix_sort_u64(ck, m)
    for d in range(1, nb + 2):
        count[d] += count[d - 1]
    out = np.empty(m, np.uint64)
    for i in range(m):
        d = bidx[i]
        p = count[d]
        out[p] = ck[i]
        count[d] = p + 1
    _insertion_sort_u64(out, m)
    return out


@numba.njit(cache=True, nogil=True)
def _insertion_sort_u64(keys, m):
    """Insertion sort of keys[:m] ascending (O(m + inversions))."""
    for i in range(1, m):
        kk = keys[i]
        if keys[i - 1] <= kk:
            continue
        j = i - 1
        while j >= 0 and keys[j] > kk:
            keys[j + 1] = keys[j]
            j -= 1
        keys[j + 1] = kk


_BUCKET_MAX = 64


@numba.njit(cache=True, nogil=True, inline="always")
def _ge_mask64(row, i0, thr):
    """Bit b set where row[i0 + b] >= thr, b < 64 (eight 8-lane compare masks)."""
    return (_ge_mask8(row, i0, thr) | (_ge_mask8(row, i0 + 8, thr) << 8)
            | (_ge_mask8(row, i0 + 16, thr) << 16) | (_ge_mask8(row, i0 + 24, thr) << 24)
            | (_ge_mask8(row, i0 + 32, thr) << 32) | (_ge_mask8(row, i0 + 40, thr) << 40)
            | (_ge_mask8(row, i0 + 48, thr) << 48) | (_ge_mask8(row, i0 + 56, thr) << 56))


@numba.njit(cache=True, nogil=True, inline="always")
def _take_bits(row, i0, mk, ck, cv, n):
    """Append the entries i0 + b for the set bits b of mk (ascending); returns n."""
    while mk:
        i = i0 + _cttz(mk)
        v = row[i]
        ck[n] = _composite(v, i)
        cv[n] = v
        n += 1
        mk &= mk - 1
    return n


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gather_ge(row, thr, ck, cv):
    """Every entry >= thr, in id order, as composite keys ck[:n] and values cv[:n];
    returns n (the arrays must hold them).

    64 entries per test (eight 8-lane compare masks, then 16 for the rest); set bits are
    visited with tzcnt. One branch per 64 entries: 1.5-1.7x faster than per 16.
    """
    V = row.shape[0]
    n = 0
    i0 = 0
    while i0 + 64 <= V:
        n = _take_bits(row, i0, _ge_mask64(row, i0, thr), ck, cv, n)
        i0 += 64
    while i0 + 16 <= V:
        mk = _ge_mask8(row, i0, thr) | (_ge_mask8(row, i0 + 8, thr) << 8)
        n = _take_bits(row, i0, mk, ck, cv, n)
        i0 += 16
    for i in range(i0, V):
        v = row[i]
        ck[n] = _composite(v, i)
        cv[n] = v
        n += np.int64(v >= thr)
    return n


@numba.njit(cache=True, nogil=True, inline="always")
def _bad_mask64(row, i0):
    """Nonzero where row[i0:i0+64] holds a NaN or +inf (shares the gather's loads)."""
    inf = np.float32(np.inf)
    return (_uge_mask8(row, i0, inf) | _uge_mask8(row, i0 + 8, inf)
            | _uge_mask8(row, i0 + 16, inf) | _uge_mask8(row, i0 + 24, inf)
            | _uge_mask8(row, i0 + 32, inf) | _uge_mask8(row, i0 + 40, inf)
            | _uge_mask8(row, i0 + 48, inf) | _uge_mask8(row, i0 + 56, inf))


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gather_from(row, i0, end, thr, ck, cv, n):
    """Gather entries >= thr of row[i0:end] after ck[:n] / cv[:n], 64 at a time while
    64 more fit (then 16 at a time for the last < 64 entries); returns (n, where it
    stopped, bad): ``end`` (a multiple of 16 from i0) or below it when the buffer is
    full; ``bad`` nonzero if a visited entry is NaN or +inf (the row's validity check,
    folded into this pass so that the row is read once)."""
    cap = ck.shape[0]
    bad = np.int64(0)
    inf = np.float32(np.inf)
    while i0 + 64 <= end and n + 64 <= cap:
        bad |= _bad_mask64(row, i0)
        n = _take_bits(row, i0, _ge_mask64(row, i0, thr), ck, cv, n)
        i0 += 64
    if i0 + 64 > end:
        while i0 + 16 <= end and n + 16 <= cap:
            bad |= _uge_mask8(row, i0, inf) | _uge_mask8(row, i0 + 8, inf)
            mk = _ge_mask8(row, i0, thr) | (_ge_mask8(row, i0 + 8, thr) << 8)
            n = _take_bits(row, i0, mk, ck, cv, n)
            i0 += 16
    return n, i0, bad


@numba.njit(cache=True, nogil=True, inline="always")
def _above(v):
    """The least float32 > v (for v > -inf, v < inf; -inf -> -FLT_MAX; +inf -> NaN, which
    no ordered compare passes); both zeros give the least positive subnormal."""
    u = np.int64(f32_as_u32(v))
    if v == 0:
        return _u32_as_f32(np.uint32(1))
    u = u + 1 if u < 0x80000000 else u - 1
    return _u32_as_f32(np.uint32(u))


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _compact_ge(ck, cv, n, thr):
    """Keep the entries of ck[:n] / cv[:n] with cv >= thr, in order; returns the count."""
    m = 0
    for i in range(n):
        v = cv[i]
        ck[m] = ck[i]
        cv[m] = v
        m += np.int64(v >= thr)
    return m


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _tighten(ck, cv, n, k, thr):
    """Shrink the candidates ck[:n] (distinct entries, the top k of the row so far among
    them) to about k; returns (n, thr) with thr the new gather threshold.

    A threshold at most the k-th largest candidate (``_threshold``) drops the rest; when
    ties keep too many, the candidates are sorted and exactly k kept, and later entries
    (higher ids) must then be strictly above the k-th value.
    """
    t, _ = _threshold(cv, n, k, max(8, k >> 4))
    if t > thr:
        thr = t
        n = _compact_ge(ck, cv, n, thr)
    if n + 64 > ck.shape[0] - max(k >> 1, 16):  # ties: exact cut at k
        out = _sort_candidates(ck, cv, n)
        for q in range(k):
            c = out[q]
            ck[q] = c
            cv[q] = _key_value(np.uint32(c >> np.uint64(32)))
        n = k
        thr = _above(cv[k - 1])
    return n, thr


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _emit(row, ck, cv, n, k, vals, ids):
    """Sort the candidates ck[:n] (n >= k) and write the first k to vals / ids."""
    out = _sort_top(ck, cv, n, k)
    for q in range(k):
        c = out[q]
        t = np.int64(c & np.uint64(0xFFFFFFFF))
        v = _key_value(np.uint32(c >> np.uint64(32)))
        ids[q] = t
        vals[q] = v if v != 0 else row[t]  # the key maps -0.0 to 0.0: copy the sign


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _topk_two_pass(row, k, vals, ids):
    """Whole-row column maxima, threshold, gather, sort (rows that fit in L2, large k)."""
    V = row.shape[0]
    m = row_max_nan(row)
    if np.isnan(m):  # NaN: invalid, and no safe threshold to select with
        return True
    S = strips_for(V, k)
    W = V // S
    cmax = np.empty(W, np.float32)
    _column_max(row, S, W, cmax)
    thr, nsel = _threshold(cmax, W, k, max(8, k >> 4))
    cap = nsel * S + (V - S * W)
    ck = np.empty(cap, np.uint64)
    cv = np.empty(cap, np.float32)
    n = _gather_ge(row, thr, ck, cv)
    _emit(row, ck, cv, n, k, vals, ids)
    return not (-np.inf < m < np.inf)  # +inf or all masked: invalid, result still defined


#: Prefix of the single-pass path: max(TOPK_STREAM_PREFIX, TOPK_STREAM_PREFIX_PER_K * k)
#: entries, at most half the row.
TOPK_STREAM_PREFIX = 16384
TOPK_STREAM_PREFIX_PER_K = 32

#: Rows at least this long (and with V >= 16 k) take the single-pass path.
TOPK_STREAM_MIN_V = 1 << 16


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def topk_row(row, k, vals, ids):
    """Top k of one float32 row into ``vals`` (float32, (k,)) and ``ids`` (int32, (k,)).

    ``0 <= k <= row.shape[0]``. Entries come out descending, ties to the lower id.
    Returns True for an invalid row (docs/spec.md §7: NaN, +inf, or every entry ``-inf``),
    checked within the same pass; ``vals`` / ``ids`` are then undefined if the row
    holds a NaN (and still exact for +inf or all ``-inf``).
    """
    V = row.shape[0]
    if k <= 0:
        return row_is_invalid(row)
    if V < TOPK_STREAM_MIN_V or V < 16 * k:
        return _topk_two_pass(row, k, vals, ids)
    # 1. the prefix (L2-resident): column maxima and a threshold thr that about r of its
    #    entries reach, r ~ k P / V plus a wide margin: on rows whose order is not
    #    correlated with the values, about 1.5 k row entries reach it. That is a guess,
    #    checked at the end (step 3); the buffer's k-th largest is always a safe bound
    P = min(V // 2, max(TOPK_STREAM_PREFIX, TOPK_STREAM_PREFIX_PER_K * k)) & ~15
    pre = row[:P]
    e = k * P / V
    r = min(k, np.int64(e + 4.0 * np.sqrt(e)) + 8)
    S = strips_for(P, r)
    W = P // S
    cmax = np.empty(W, np.float32)
    _column_max(pre, S, W, cmax)
    thr, nsel = _threshold(cmax, W, r, max(8, r >> 4))
    cap = nsel * S + (P - S * W) + 2 * k + 256
    ck = np.empty(cap, np.uint64)
    cv = np.empty(cap, np.float32)
    # 2. one pass: entries >= thr; when the buffer fills, raise thr (the k-th largest
    #    candidate bounds the row's k-th largest from below) and drop what falls under
    n = 0
    i0 = 0
    bad = np.int64(0)
    end = V & ~15
    while i0 < end:
        n, i0, b = _gather_from(row, i0, end, thr, ck, cv, n)
        bad |= b
        if i0 < end:
            n, thr = _tighten(ck, cv, n, k, thr)
    if n + 16 > cap:
        n, thr = _tighten(ck, cv, n, k, thr)
    for i in range(end, V):
        v = row[i]
        ck[n] = _composite(v, i)
        cv[n] = v
        n += np.int64(v >= thr)
        bad |= np.int64(not v < np.inf)
    if n < k:  # the guess was above the row's k-th largest (values correlate with ids)
        return _topk_two_pass(row, k, vals, ids)
    # 3. cut to about k (a large buffer: ties, ordered rows), sort, emit
    if n > 4 * k + 256:
        t, _ = _threshold(cv, n, k, max(8, k >> 4))
        if t > thr:
            n = _compact_ge(ck, cv, n, t)
    _emit(row, ck, cv, n, k, vals, ids)
    # NaN / +inf seen, or every entry -inf (then the top one is too). NaN entries never
    # pass the ordered gather compare, so the result stays within bounds regardless.
    return bad != 0 or vals[0] == -np.inf


@numba.njit(cache=True, nogil=True, parallel=True)
def topk_rows(x, k, vals, ids, invalid):
    """Batched top-k (``prange`` over rows) into ``vals`` / ``ids`` ((B, k)) and the
    validity flags ``invalid`` ((B,) bool)."""
    for b in prange(x.shape[0]):
        invalid[b] = topk_row(x[b], k, vals[b], ids[b])


@numba.njit(cache=True, nogil=True)
def topk_rows_serial(x, k, vals, ids, invalid):
    """``topk_rows`` without threads (B == 1)."""
    for b in range(x.shape[0]):
        invalid[b] = topk_row(x[b], k, vals[b], ids[b])


def topk_checked(x, k):
    """``topk`` and the rows' validity from the same pass: ``(values, indices, invalid)``.

    ``x`` is float32 ``(B, V)`` C-contiguous, k is clipped to ``[0, V]``; ``invalid`` ((B,) bool)
    as ``invalid_rows``; an invalid row's values and indices are undefined.
    """
    B, V = x.shape
    k = min(max(int(k), 0), V)  # never write past a row, whatever the caller passes
    vals = np.empty((B, k), np.float32)
    ids = np.empty((B, k), np.int32)
    invalid = np.zeros(B, np.bool_)
    if B:
        (topk_rows_serial if B == 1 else topk_rows)(x, k, vals, ids, invalid)
    return vals, ids, invalid


def topk(x, k):
    """The k largest logits per row: exactly k, descending, ties to the lower id.

    ``x`` is ``(V,)`` or ``(B, V)``; k is clipped to ``[0, V]``. Returns
    ``(values float32 (..., k), indices int32 (..., k))``.
    """
    x = np.asarray(x)
    one = x.ndim == 1
    rows = np.ascontiguousarray(x[None, :] if one else x, dtype=np.float32)
    vals, ids, _ = topk_checked(rows, k)
    return (vals[0], ids[0]) if one else (vals, ids)
