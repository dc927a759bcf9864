"""What the numba stage kernels share: constants, row helpers, host-side arguments.

The row helpers are plain ``@njit`` functions (no parallelism of their own) that the
stage families (``truncations``, ``transforms``, ``terminals``, ``history_stages``)
call inside their row functions:

- probabilities: ``w = exp(l - max)`` in float64, ``W = sum(w)``, ``p = w / W`` (the
  reference's ``_row_probs``); sums are plain float64 sums.
- the k-th largest value (``top_k`` and every ``min_keep`` floor): a size-k heap
  (k <= 256) or a three-way quickselect of the finite values; no full sort.
- sorting: an own iterative quicksort on (key, position) (``_argsort_stable``);
  numba's ``np.sort``/``np.partition``/``np.argsort`` compile far too slowly.
- the mass cut of ``top_p``/``typical``: a 1024-bin histogram of the mass over the
  sort key finds a prefix of candidates that surely reaches the mass; up to 4096
  candidates are sorted (ties to the lower id), more (flat rows) go through a
  weighted quickselect (``_mass_cut``, linear).

The host helpers convert the reference's arguments into the kernels' (contiguous
float32 ``(B, V)`` logits, ``(B,)`` float64/int64/uint64 parameters, a history as one
flat int64 array plus offsets) and implement the edit stages' ``out=`` convention
(docs/internals.md). ``error_model="numpy"``: float division by zero gives inf/nan as
in the reference instead of raising.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .simd import exp64, row_max
from .topk import _composite, _radix_sort_u64

_NJ = dict(cache=True, nogil=True, error_model="numpy")
_PJ = dict(cache=True, nogil=True, parallel=True, error_model="numpy")

F32_MAX = float(np.finfo(np.float32).max)
LN_F32_MAX = 88.7228391          # DRY's exponent clamp (as the reference, llama.cpp)
MASS_TOL = 1e-6                  # docs/spec.md §4: cum >= p - 1e-6
LN2 = math.log(2.0)
STREAM_XTC = 1

_NBINS = 1024                    # histogram of top_p / typical
_BIN_SCALE = 16.0                # bins of 1/16 (nats of logit distance, or score)
_HEAP_MAX = 256                  # k-th largest: heap up to this k, else quickselect
_SORT_MAX = 4096                 # top_p / typical: sort up to this many candidates

# kinds of _rows_kernel
K_TOP_N_SIGMA = 0
K_TOP_K = 1
K_TYPICAL = 2
K_TOP_P = 3
K_MIN_P = 4
K_XTC = 5
K_EPSILON = 6
K_ETA = 7
K_TOP_A = 8
K_P_LESS = 9
K_TAIL_FREE = 10
K_TEMPERATURE = 11
K_DYN_TEMP = 12
K_SMOOTHING = 13
K_GREEDY = 14
K_MIROSTAT = 15
K_MIROSTAT_V2 = 16
K_ADAPTIVE_P = 17


# ----------------------------------------------------------------------------------
# scalar / row helpers


@numba.njit(**_NJ)
def _row_max(row):
    """Largest value as float64 (-inf if none): simd.row_max (exact)."""
    return np.float64(row_max(row))


@numba.njit(**_NJ)
def _count_finite(row):
    n = 0
    for i in range(row.shape[0]):
        if row[i] > -np.inf:
            n += 1
    return n


@numba.njit(**_NJ)
def _copy(row, out):
    for i in range(row.shape[0]):
        out[i] = row[i]


@numba.njit(**_NJ)
def _weights(row, w):
    """``w = exp(l - max)`` (0 where masked); returns (max, sum(w)) in float64.

    simd.exp64 (within ~1 ulp of libm's exp) in a branch-free loop: ``-inf - max``
    gives exactly 0. The sum is a plain sequential float64 sum.
    """
    m = _row_max(row)
    n = row.shape[0]
    for i in range(n):
        w[i] = exp64(np.float64(row[i]) - m)
    s = 0.0
    for i in range(n):
        s += w[i]
    return m, s


@numba.njit(**_NJ)
def _entropy(w, W):
    """-sum p ln p over p = w / W > 0 (the reference's _entropy of _row_probs)."""
    s = 0.0
    for i in range(w.shape[0]):
        p = w[i] / W
        if p > 0.0:
            s += p * math.log(p)
    return -s


@numba.njit(**_NJ)
def _argsort_stable(keys):
    """Order of ``keys`` ascending, ties by position (a stable argsort).

    An iterative quicksort on (key, position) pairs, which are all distinct, moved
    together (no indirection in the comparisons), with median-of-three pivots and
    insertion sort below 16 elements. numba's own sorts are avoided: they take tens
    of seconds to compile.
    """
    n = keys.shape[0]
    idx = np.empty(n, np.int64)
    k = np.empty(n, np.float64)
    for i in range(n):
        idx[i] = i
        k[i] = keys[i]
    stack = np.empty(128, np.int64)
    sp = 0
    lo = 0
    hi = n - 1
    while True:
        while hi - lo >= 16:
            mid = (lo + hi) >> 1
            if k[mid] < k[lo] or (k[mid] == k[lo] and idx[mid] < idx[lo]):
                k[mid], k[lo] = k[lo], k[mid]
                idx[mid], idx[lo] = idx[lo], idx[mid]
            if k[hi] < k[lo] or (k[hi] == k[lo] and idx[hi] < idx[lo]):
                k[hi], k[lo] = k[lo], k[hi]
                idx[hi], idx[lo] = idx[lo], idx[hi]
            if k[hi] < k[mid] or (k[hi] == k[mid] and idx[hi] < idx[mid]):
                k[hi], k[mid] = k[mid], k[hi]
                idx[hi], idx[mid] = idx[mid], idx[hi]
            pk = k[mid]
            pi = idx[mid]
            i = lo
            j = hi
            while i <= j:
                while k[i] < pk or (k[i] == pk and idx[i] < pi):
                    i += 1
                while pk < k[j] or (pk == k[j] and pi < idx[j]):
                    j -= 1
                if i <= j:
                    k[i], k[j] = k[j], k[i]
                    idx[i], idx[j] = idx[j], idx[i]
                    i += 1
                    j -= 1
            # push the larger part, loop on the smaller (stack depth <= 2 log n)
            if j - lo < hi - i:
                if i < hi:
                    stack[sp] = i
                    stack[sp + 1] = hi
                    sp += 2
                hi = j
            else:
                if lo < j:
                    stack[sp] = lo
                    stack[sp + 1] = j
                    sp += 2
                lo = i
        for i in range(lo + 1, hi + 1):
            vk = k[i]
            vi = idx[i]
            j = i - 1
            while j >= lo and (vk < k[j] or (vk == k[j] and vi < idx[j])):
                k[j + 1] = k[j]
                idx[j + 1] = idx[j]
                j -= 1
            k[j + 1] = vk
            idx[j + 1] = vi
        if sp == 0:
            break
        sp -= 2
        lo = stack[sp]
        hi = stack[sp + 1]
    return idx


@numba.njit(inline="always", **_NJ)
def _median3(a, b, c):
    """The median of three values: the quickselect pivot."""
    if a > b:
        a, b = b, a
    if b > c:
        b = c
        if a > b:
            b = a
    return b


@numba.njit(**_NJ)
def _select(vals, pos):
    """The value of rank ``pos`` (0-based, ascending) of ``vals``; reorders vals.

    Quickselect with a three-way partition (many equal values stay linear).
    """
    lo = 0
    hi = vals.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        pivot = _median3(vals[lo], vals[mid], vals[hi])
        lt = lo
        i = lo
        gt = hi
        while i <= gt:
            v = vals[i]
            if v < pivot:
                vals[lt], vals[i] = vals[i], vals[lt]
                lt += 1
                i += 1
            elif v > pivot:
                vals[gt], vals[i] = vals[i], vals[gt]
                gt -= 1
            else:
                i += 1
        if pos < lt:
            hi = lt - 1
        elif pos > gt:
            lo = gt + 1
        else:
            return vals[pos]
    return vals[pos]


@numba.njit(**_NJ)
def _kth_largest(row, k):
    """The k-th largest finite value (k clipped to [1, finite count]); -inf if none."""
    V = row.shape[0]
    n = _count_finite(row)
    if n == 0:
        return -np.inf
    if k < 1:
        k = 1
    if k > n:
        k = n
    if k == 1:
        return _row_max(row)
    if k <= _HEAP_MAX:
        heap = np.empty(k, np.float32)  # min-heap of the k largest so far
        size = 0
        for i in range(V):
            x = row[i]
            if not x > -np.inf:
                continue
            if size < k:
                j = size
                size += 1
                while j > 0:
                    parent = (j - 1) >> 1
                    if heap[parent] <= x:
                        break
                    heap[j] = heap[parent]
                    j = parent
                heap[j] = x
            elif x > heap[0]:
                j = 0
                while True:
                    c = 2 * j + 1
                    if c >= k:
                        break
                    if c + 1 < k and heap[c + 1] < heap[c]:
                        c += 1
                    if heap[c] >= x:
                        break
                    heap[j] = heap[c]
                    j = c
                heap[j] = x
        return np.float64(heap[0])
    vals = np.empty(n, np.float32)
    j = 0
    for i in range(V):
        if row[i] > -np.inf:
            vals[j] = row[i]
            j += 1
    return np.float64(_select(vals, n - k))


@numba.njit(**_NJ)
def _finish(row, out, nkeep, min_keep):
    """The min_keep floor: union with ``l >= `` the min_keep-th largest (ties kept)."""
    if nkeep < min_keep:
        t = _kth_largest(row, min_keep)
        for i in range(row.shape[0]):
            if row[i] >= t:
                out[i] = row[i]


@numba.njit(**_NJ)
def _keep_ge(row, out, t):
    """out = l where finite and l >= t, else -inf; returns the kept count."""
    n = 0
    for i in range(row.shape[0]):
        x = row[i]
        if x > -np.inf and np.float64(x) >= t:
            out[i] = x
            n += 1
        else:
            out[i] = -np.inf
    return n


@numba.njit(**_NJ)
def _keep_p_ge(row, out, w, W, thr):
    """Keep finite tokens with ``w / W >= thr``; returns the kept count."""
    n = 0
    for i in range(row.shape[0]):
        x = row[i]
        if x > -np.inf and w[i] / W >= thr:
            out[i] = x
            n += 1
        else:
            out[i] = -np.inf
    return n


@numba.njit(**_NJ)
def _desc_order(row, ids, nsel):
    """ids[:nsel] (ascending) ordered by value descending, ties to the lower id: the
    (value descending, id) keys of top-k (``topk._composite``, -0.0 as +0.0) sorted by
    its LSD radix sort, O(n) where a comparison sort of a whole row took milliseconds.
    The order is the one total order, so it is the stable argsort's."""
    res = np.empty(nsel, np.int64)
    if nsel == 0:
        return res
    keys = np.empty(nsel, np.uint64)
    for j in range(nsel):
        keys[j] = _composite(row[ids[j]], ids[j])
    srt = _radix_sort_u64(keys, nsel)
    low = np.uint64(0xFFFFFFFF)
    for j in range(nsel):
        res[j] = np.int64(srt[j] & low)
    return res


@numba.njit(**_NJ)
def _mass_cut(keys, mass, target):
    """Weighted quickselect: the smallest key ``kv`` with ``sum(mass[keys <= kv]) >=
    target``; returns (found, kv). Expected linear time; used instead of a sort when
    many candidates remain (the sums are in another order than a sorted running sum,
    which only matters for a mass within float64 rounding of the target)."""
    n = keys.shape[0]
    k = keys.copy()
    ms = mass.copy()
    lo = 0
    hi = n - 1
    acc = 0.0
    while lo <= hi:
        mid = (lo + hi) >> 1
        pivot = _median3(k[lo], k[mid], k[hi])
        lt = lo
        i = lo
        gt = hi
        while i <= gt:
            v = k[i]
            if v < pivot:
                k[lt], k[i] = k[i], k[lt]
                ms[lt], ms[i] = ms[i], ms[lt]
                lt += 1
                i += 1
            elif v > pivot:
                k[gt], k[i] = k[i], k[gt]
                ms[gt], ms[i] = ms[i], ms[gt]
                gt -= 1
            else:
                i += 1
        m_lt = 0.0
        for j in range(lo, lt):
            m_lt += ms[j]
        m_eq = 0.0
        for j in range(lt, gt + 1):
            m_eq += ms[j]
        if lt > lo and acc + m_lt >= target:
            hi = lt - 1
        elif acc + m_lt + m_eq >= target:
            return True, pivot
        else:
            acc += m_lt + m_eq
            lo = gt + 1
    return False, 0.0


@numba.njit(**_NJ)
def _bin_of(key):
    v = key * _BIN_SCALE
    if not v < _NBINS - 1:  # also +inf / huge
        return _NBINS - 1
    return int(v)


def _logits(logits):
    """C-contiguous, writable float32 (B, V) (a read-only array would need its own
    compilation; kernels never write it either way)."""
    x = np.ascontiguousarray(logits, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"logits must be (B, V), got shape {x.shape}")
    if not x.flags.writeable:
        x = x.copy()
    return x


def _param(v, B, dtype):
    """A per-row parameter as a fresh (B,) C-contiguous writable array (without
    ``np.broadcast_to``, which costs more than the one-row kernels it feeds)."""
    a = np.asarray(v, dtype=dtype)
    if a.shape == (B,):
        return a.copy()
    if a.ndim == 0:
        return np.full(B, a, dtype=dtype)
    return np.array(np.broadcast_to(a, (B,)), dtype=dtype)


def _f64(v, B):
    return _param(v, B, np.float64)


def _i64(v, B):
    return _param(v, B, np.int64)


def _u64(v, B):
    return _param(v, B, np.uint64)


def _check_ids(a, V, what):
    if a.size and (a.min() < 0 or a.max() >= V):
        raise ValueError(f"{what} token outside [0, {V})")


def _out(x, logits, out):
    """``(out, inplace)``: a new result array, ``out`` itself (float32, C-contiguous,
    the shape of ``logits``: the kernel copies each row there and edits it, in its
    threads), or in place (``out is logits``)."""
    if out is None:
        return np.empty_like(x), False
    if out is logits and x is logits:
        return x, True
    if out is logits or not (isinstance(out, np.ndarray) and out.dtype == np.float32
                             and out.flags.c_contiguous and out.flags.writeable
                             and out.shape == x.shape):
        raise ValueError("out must be None, the logits array itself, or a writable "
                         "C-contiguous float32 array of the logits' shape")
    return out, False


def _flat_history(history, B, V):
    """A list of B 1-D int arrays -> (flat int64, offsets int64 (B+1,))."""
    if len(history) != B:
        raise ValueError(f"history has {len(history)} rows, logits have {B}")
    parts = [np.asarray(h, dtype=np.int64).ravel() for h in history]
    if B == 1:  # one row: its own array, no concatenated copy
        flat = np.ascontiguousarray(parts[0])
        _check_ids(flat, V, "history")
        return flat, np.array([0, flat.size], np.int64)
    offsets = np.zeros(B + 1, np.int64)
    if B:
        offsets[1:] = np.cumsum([p.size for p in parts])
    flat = np.concatenate(parts) if offsets[-1] else np.zeros(0, np.int64)
    flat = np.ascontiguousarray(flat, dtype=np.int64)
    _check_ids(flat, V, "history")
    return flat, offsets


def _history_args(logits, history, out):
    """The start of a history stage's wrapper: ``(x, out, inplace, flat, offsets)``,
    ``flat`` None when there are no rows (nothing to run)."""
    x = _logits(logits)
    B, V = x.shape
    out, inplace = _out(x, logits, out)
    if B == 0:
        return x, out, inplace, None, None
    return (x, out, inplace, *_flat_history(history, B, V))
