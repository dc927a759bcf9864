"""Numba CPU kernels for the stage functions of ``fastsample.reference``.

Every public function here has exactly the name and signature of its reference
counterpart (docs/internals.md) and returns a new float32 ``(B, V)`` array equal to
the reference's: the same ``-inf`` set, finite values within float rounding (the
same float64 formulas, rounded to float32 at the same points, saturating at the
float32 range).

Layout (docs/numba-backend.md):

- one njit *row* function per stage (``_<stage>_row(row, out, ...)``), writing the
  output row; they are plain ``@njit`` helpers (no parallelism of their own);
- a few drivers over rows: ``_rows_kernel`` (every stage that takes only per-row
  scalars; a ``kind`` code picks the stage, so one compilation serves them all),
  ``_penalties_kernel``, ``_dry_kernel``, ``_ngram_kernel``, ``_logit_bias_kernel``,
  each ``parallel=True`` with ``prange``, and its ``_serial`` twin for one row (a
  thread-pool launch per token costs more than the row, and on a loaded machine a
  descheduled worker stalls it for milliseconds); both call the row body ``_<name>_at``;
- the edit stages (LogitBias and the history stages) take ``out=logits`` to edit in
  place (the chain plan's working copy);
- the Python wrappers: conversion to contiguous float32 / (B,) float64 / int64
  arrays, histories flattened to one int64 array plus offsets.

Algorithms (all per row):

- probabilities: ``w = exp(l - max)`` in float64, ``W = sum(w)``, ``p = w / W``
  (the reference's ``_row_probs``); sums are plain float64 sums.
- ``top_k`` and the ``min_keep`` floor: the k-th largest value by a size-k heap
  (k <= 256) or a three-way quickselect of the finite values; no full sort.
- sorting: an own iterative quicksort on (key, position) (``_argsort_stable``);
  numba's ``np.sort``/``np.partition``/``np.argsort`` compile far too slowly.
- ``top_p`` / ``typical``: a 1024-bin histogram of the probability mass over the sort
  key (``max - l`` resp. ``|-ln p - H|``) finds a prefix of candidates that surely
  reaches the mass; up to 4096 candidates are sorted (ties to the lower id), and
  their running sum is the reference's cumulative sum term for term; more (flat
  rows) go through a weighted quickselect (``_mass_cut``, linear) instead of a
  sort. Falls back to all finite tokens when rounding leaves the candidates short.
- ``tail_free``: full sort of the finite tokens (the rule needs every second
  difference). ``mirostat``: the top-m values only.
- ``penalties``: touches only the tokens of the window (counts in an uninitialised
  scratch array indexed by token, reset only where the window writes).
- ``dry`` / ``dry_penalty`` / ``no_repeat_ngram``: Z-algorithm on the reversed
  window, linear in the history length (one token repeated 32768 times included).

Kernels never write their inputs. ``error_model="numpy"``: float division by zero
gives inf/nan as in the reference instead of raising.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange

from ..shared import penalized, uniform
from ..shared import saturate_f32 as _sat
from .simd import exp64, row_max

__all__ = [
    "logit_bias", "penalties", "dry", "dry_penalty", "no_repeat_ngram", "top_n_sigma",
    "top_k", "typical", "top_p", "min_p", "xtc", "epsilon", "eta", "top_a", "p_less",
    "tail_free", "temperature", "dynamic_temperature", "smoothing", "greedy",
    "mirostat", "mirostat_v2", "adaptive_p",
]

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
    """ids[:nsel] ordered by value descending, ties to the lower id."""
    keys = np.empty(nsel, np.float64)
    for j in range(nsel):
        keys[j] = -np.float64(row[ids[j]])
    order = _argsort_stable(keys)
    res = np.empty(nsel, np.int64)
    for j in range(nsel):
        res[j] = ids[order[j]]
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


# ----------------------------------------------------------------------------------
# truncations


@numba.njit(**_NJ)
def _top_n_sigma_row(row, out, n, min_keep):
    cnt = _count_finite(row)
    if n <= 0 or cnt == 0:
        _copy(row, out)
        return
    s = 0.0
    m = -np.inf
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            s += x
            if x > m:
                m = x
    mean = s / cnt
    q = 0.0
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            q += (x - mean) * (x - mean)
    sigma = math.sqrt(q / cnt)
    nk = _keep_ge(row, out, m - n * sigma)
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _top_k_row(row, out, k, min_keep):
    cnt = _count_finite(row)
    if 0 < k < cnt:
        nk = _keep_ge(row, out, _kth_largest(row, k))
        _finish(row, out, nk, min_keep)
    else:
        _copy(row, out)


@numba.njit(**_NJ)
def _min_p_row(row, out, p, min_keep):
    if p <= 0.0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    nk = _keep_ge(row, out, _row_max(row) + math.log(p))
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _top_p_cut(row, w, W, m, bstar, target):
    """Sort the candidates (bin <= bstar) by value descending, ties to the lower id;
    returns (reached, value of the first token whose running mass reaches target)."""
    V = row.shape[0]
    ids = np.empty(V, np.int64)
    nc = 0
    for i in range(V):
        x = row[i]
        if x > -np.inf and _bin_of(m - np.float64(x)) <= bstar:
            ids[nc] = i
            nc += 1
    if nc > _SORT_MAX:
        keys = np.empty(nc, np.float64)
        mass = np.empty(nc, np.float64)
        for j in range(nc):
            keys[j] = -np.float64(row[ids[j]])
            mass[j] = w[ids[j]] / W
        ok, kv = _mass_cut(keys, mass, target)
        return ok, -kv
    srt = _desc_order(row, ids, nc)
    cum = 0.0
    for j in range(nc):
        i = srt[j]
        cum += w[i] / W
        if cum >= target:
            return True, np.float64(row[i])
    return False, 0.0


@numba.njit(**_NJ)
def _top_p_row(row, out, p, min_keep):
    V = row.shape[0]
    if p >= 1.0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    target = p - MASS_TOL
    hist = np.zeros(_NBINS, np.float64)
    for i in range(V):
        x = row[i]
        if x > -np.inf:
            hist[_bin_of(m - np.float64(x))] += w[i]
    goal = (target + 1e-9) * W
    bstar = _NBINS - 1
    acc = 0.0
    for b in range(_NBINS):
        acc += hist[b]
        if acc >= goal:
            bstar = b
            break
    ok, xlast = _top_p_cut(row, w, W, m, bstar, target)
    if not ok and bstar < _NBINS - 1:
        ok, xlast = _top_p_cut(row, w, W, m, _NBINS - 1, target)
    if not ok:
        xlast = -np.inf  # never reached: every finite token
    nk = _keep_ge(row, out, xlast)
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _typical_cut(row, w, W, sc, bstar, target):
    V = row.shape[0]
    ids = np.empty(V, np.int64)
    nc = 0
    for i in range(V):
        if row[i] > -np.inf and _bin_of(sc[i]) <= bstar:
            ids[nc] = i
            nc += 1
    keys = np.empty(nc, np.float64)
    for j in range(nc):
        keys[j] = sc[ids[j]]
    if nc > _SORT_MAX:
        mass = np.empty(nc, np.float64)
        for j in range(nc):
            mass[j] = w[ids[j]] / W
        return _mass_cut(keys, mass, target)
    order = _argsort_stable(keys)  # ties to the lower id
    cum = 0.0
    for j in range(nc):
        i = ids[order[j]]
        cum += w[i] / W
        if cum >= target:
            return True, sc[i]
    return False, 0.0


@numba.njit(**_NJ)
def _typical_row(row, out, p, min_keep):
    V = row.shape[0]
    if p >= 1.0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    logw = math.log(W)
    h = _entropy(w, W)
    sc = np.empty(V, np.float64)
    hist = np.zeros(_NBINS, np.float64)
    for i in range(V):
        x = np.float64(row[i])
        if x > -np.inf:
            lp = (x - m) - logw
            s = abs(-lp - h)
            sc[i] = s
            hist[_bin_of(s)] += w[i]
        else:
            sc[i] = np.inf
    target = p - MASS_TOL
    goal = (target + 1e-9) * W
    bstar = _NBINS - 1
    acc = 0.0
    for b in range(_NBINS):
        acc += hist[b]
        if acc >= goal:
            bstar = b
            break
    ok, slast = _typical_cut(row, w, W, sc, bstar, target)
    if not ok and bstar < _NBINS - 1:
        ok, slast = _typical_cut(row, w, W, sc, _NBINS - 1, target)
    if not ok:
        slast = np.inf
    nk = 0
    for i in range(V):
        x = row[i]
        if x > -np.inf and sc[i] <= slast:
            out[i] = x
            nk += 1
        else:
            out[i] = -np.inf
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _xtc_row(row, out, probability, threshold, min_keep, u):
    V = row.shape[0]
    if (probability <= 0.0 or threshold > 0.5 or not u < probability
            or _count_finite(row) == 0):
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    above = 0
    smallest = np.inf
    for i in range(V):
        if row[i] > -np.inf:
            p = w[i] / W
            if p >= threshold:
                above += 1
                if p < smallest:
                    smallest = p
    if above < 2:
        _copy(row, out)
        return
    nk = 0
    for i in range(V):
        x = row[i]
        if x > -np.inf:
            p = w[i] / W
            if p >= threshold and p > smallest:
                out[i] = -np.inf
            else:
                out[i] = x
                nk += 1
        else:
            out[i] = -np.inf
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _prob_row(row, out, kind, a, min_keep):
    """epsilon / eta / top_a / p_less: mask ``p < threshold``."""
    V = row.shape[0]
    if (kind != K_P_LESS and a <= 0.0) or _count_finite(row) == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    if kind == K_EPSILON:
        thr = a
    elif kind == K_ETA:
        h = _entropy(w, W)
        e2 = math.sqrt(a) * math.exp(-h)
        thr = e2 if e2 < a else a
    elif kind == K_TOP_A:
        pmax = 0.0
        for i in range(V):
            p = w[i] / W
            if p > pmax:
                pmax = p
        thr = a * (pmax * pmax)
    else:  # p_less
        s = 0.0
        for i in range(V):
            p = w[i] / W
            s += p * p
        thr = s - MASS_TOL
    nk = _keep_p_ge(row, out, w, W, thr)
    _finish(row, out, nk, min_keep)


@numba.njit(**_NJ)
def _tail_free_row(row, out, z, min_keep):
    V = row.shape[0]
    n = _count_finite(row)
    if z >= 1.0 or n == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    ids = np.empty(n, np.int64)
    j = 0
    for i in range(V):
        if row[i] > -np.inf:
            ids[j] = i
            j += 1
    order = _desc_order(row, ids, n)
    sp = np.empty(n, np.float64)
    for j in range(n):
        sp[j] = w[order[j]] / W
    nd = n - 2 if n >= 2 else 0
    d = np.empty(nd, np.float64)
    total = 0.0
    for i in range(nd):
        d[i] = abs((sp[i + 2] - sp[i + 1]) - (sp[i + 1] - sp[i]))
        total += d[i]
    for i in range(V):
        out[i] = -np.inf
    # sorted position 0 always kept; position i+1 kept while cdf_i <= z; n-1 masked
    out[order[0]] = row[order[0]]
    nk = 1
    cdf = 0.0
    for i in range(nd):
        if total > 0:
            cdf += d[i] / total
        if cdf > z:
            break
        if i + 1 < n - 1:
            out[order[i + 1]] = row[order[i + 1]]
            nk += 1
    _finish(row, out, nk, min_keep)


# ----------------------------------------------------------------------------------
# logit-space transforms


@numba.njit(**_NJ)
def _greedy_row(row, out):
    best = -1
    m = -np.inf
    for i in range(row.shape[0]):
        out[i] = -np.inf
        if row[i] > m:
            m = row[i]
            best = i
    if best >= 0:
        out[best] = row[best]


@numba.njit(**_NJ)
def _temperature_row(row, out, t):
    if t == 1.0:
        _copy(row, out)
        return
    if t <= 0.0:
        _greedy_row(row, out)
        return
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            out[i] = _sat(x / t)
        else:
            out[i] = -np.inf


@numba.njit(**_NJ)
def _dyn_temp_row(row, out, t, range_, exponent):
    n = _count_finite(row)
    temp = t
    if not (range_ <= 0 or n <= 1):
        lo = t - range_
        if not lo > 0.0:
            lo = 0.0
        hi = t + range_
        w = np.empty(row.shape[0], np.float64)
        m, W = _weights(row, w)
        h = _entropy(w, W)
        temp = lo + (hi - lo) * (h / math.log(n)) ** exponent
    _temperature_row(row, out, temp)


@numba.njit(**_NJ)
def _smoothing_row(row, out, factor, curve):
    if factor <= 0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    top = _row_max(row)
    k = (3.0 - curve) / 2.0
    s = (curve - 1.0) / 2.0
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            d = x - top
            d2 = d * d
            out[i] = _sat(top - k * factor * d2 + s * factor * (d2 * d))
        else:
            out[i] = -np.inf


@numba.njit(**_NJ)
def _adaptive_p_row(row, out, target, ema_sum, ema_weight):
    if target < 0.0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    tau = 2.0 * target - ema_sum / ema_weight
    if not tau > 0.0:
        tau = 0.0 if tau <= 0.0 else tau
    if tau > 1.0:
        tau = 1.0
    w = np.empty(row.shape[0], np.float64)
    m, W = _weights(row, w)
    for i in range(row.shape[0]):
        if row[i] > -np.inf:
            d = abs(w[i] / W - tau) / 0.3
            out[i] = _sat(5.0 - 10.0 * (d * d) / (1.0 + d))
        else:
            out[i] = -np.inf


@numba.njit(**_NJ)
def _top_values_desc(row, k):
    """The k largest finite values (k <= finite count), descending, float64."""
    V = row.shape[0]
    n = _count_finite(row)
    vals = np.empty(n, np.float32)
    j = 0
    for i in range(V):
        if row[i] > -np.inf:
            vals[j] = row[i]
            j += 1
    if k < n:
        _select(vals, n - k)  # the k largest now sit in vals[n-k:]
    keys = np.empty(k, np.float64)
    for j in range(k):
        keys[j] = -np.float64(vals[n - k + j])
    order = _argsort_stable(keys)
    res = np.empty(k, np.float64)
    for j in range(k):
        res[j] = -keys[order[j]]
    return res


@numba.njit(**_NJ)
def _mirostat_row(row, out, mu, m_param):
    V = row.shape[0]
    n = _count_finite(row)
    if n == 0:
        _copy(row, out)
        return
    mm = m_param if m_param < n else n
    top = mm - 1
    k = 1
    if top > 0:
        w = np.empty(V, np.float64)
        mx, W = _weights(row, w)
        vals = _top_values_desc(row, top + 1)
        ps = np.empty(top + 1, np.float64)
        for j in range(top + 1):
            ps[j] = exp64(vals[j] - mx) / W
        num = 0.0
        den = 0.0
        for i in range(top):
            t = math.log((i + 2.0) / (i + 1.0))
            b = math.log(ps[i] / ps[i + 1])
            num += t * b
            den += t * t
        s = num / den
        e = s - 1.0
        ratio = (e * 2.0 ** mu) / (1.0 - np.float64(V) ** (-e))
        kf = ratio ** (1.0 / s)
        if not np.isfinite(kf) or kf > n:
            k = n
        else:
            k = max(int(kf), 1)
    _top_k_row(row, out, k, 1)


@numba.njit(**_NJ)
def _mirostat_v2_row(row, out, mu):
    V = row.shape[0]
    if _count_finite(row) == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    logw = math.log(W)
    nk = 0
    for i in range(V):
        x = np.float64(row[i])
        if x > -np.inf and -((x - m) - logw) / LN2 <= mu:
            out[i] = row[i]
            nk += 1
        else:
            out[i] = -np.inf
    if nk == 0:
        for i in range(V):
            if np.float64(row[i]) == m:
                out[i] = row[i]


@numba.njit(**_NJ)
def _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b):
    """Row b of ``_rows_kernel``."""
    row = logits[b]
    o = out[b]
    if kind == K_TOP_N_SIGMA:
        _top_n_sigma_row(row, o, f1[b], i2[b])
    elif kind == K_TOP_K:
        _top_k_row(row, o, i1[b], i2[b])
    elif kind == K_TYPICAL:
        _typical_row(row, o, f1[b], i2[b])
    elif kind == K_TOP_P:
        _top_p_row(row, o, f1[b], i2[b])
    elif kind == K_MIN_P:
        _min_p_row(row, o, f1[b], i2[b])
    elif kind == K_XTC:
        u = uniform(seed[b], position[b], STREAM_XTC)
        _xtc_row(row, o, f1[b], f2[b], i2[b], u)
    elif kind == K_TAIL_FREE:
        _tail_free_row(row, o, f1[b], i2[b])
    elif kind == K_TEMPERATURE:
        _temperature_row(row, o, f1[b])
    elif kind == K_DYN_TEMP:
        _dyn_temp_row(row, o, f1[b], f2[b], f3[b])
    elif kind == K_SMOOTHING:
        _smoothing_row(row, o, f1[b], f2[b])
    elif kind == K_GREEDY:
        _greedy_row(row, o)
    elif kind == K_MIROSTAT:
        _mirostat_row(row, o, f1[b], i1[b])
    elif kind == K_MIROSTAT_V2:
        _mirostat_v2_row(row, o, f1[b])
    elif kind == K_ADAPTIVE_P:
        _adaptive_p_row(row, o, f1[b], f2[b], f3[b])
    else:  # epsilon, eta, top_a, p_less
        _prob_row(row, o, kind, f1[b], i2[b])


@numba.njit(**_PJ)
def _rows_kernel(logits, out, kind, f1, f2, f3, i1, i2, seed, position):
    for b in prange(logits.shape[0]):
        _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b)


@numba.njit(**_NJ)
def _rows_serial(logits, out, kind, f1, f2, f3, i1, i2, seed, position):
    """``_rows_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b)


# ----------------------------------------------------------------------------------
# history stages


@numba.njit(**_NJ)
def _window(offsets, b, last_n):
    start = offsets[b]
    end = offsets[b + 1]
    if last_n > 0 and end - start > last_n:
        start = end - last_n
    return start, end


@numba.njit(**_NJ)
def _penalties_row(row, out, hist, start, end, repeat, frequency, presence, cnt):
    for i in range(start, end):
        cnt[hist[i]] = 0
    for i in range(start, end):
        cnt[hist[i]] += 1
    for i in range(start, end):
        t = hist[i]
        c = cnt[t]
        if c > 0:
            cnt[t] = 0  # done
            x = np.float64(row[t])
            if x > -np.inf:
                out[t] = _sat(penalized(x, c, repeat, frequency, presence))


@numba.njit(**_NJ)
def _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b):
    """Row b of ``_penalties_kernel``."""
    B, V = logits.shape
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    ln = last_n[b]
    if ln == 0 or (repeat[b] == 1.0 and frequency[b] == 0.0 and presence[b] == 0.0):
        return
    start, end = _window(offsets, b, ln)
    if end <= start:
        return
    cnt = np.empty(V, np.int32)
    _penalties_row(row, o, hist, start, end, repeat[b], frequency[b], presence[b], cnt)


@numba.njit(**_PJ)
def _penalties_kernel(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace):
    for b in prange(logits.shape[0]):
        _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b)


@numba.njit(**_NJ)
def _penalties_serial(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace):
    """``_penalties_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b)


@numba.njit(**_NJ)
def _z_reversed(hist, start, end):
    """Z-function of the reversed window ``rev[i] = hist[end - 1 - i]`` (z[0] = n).

    int32 and no copy of the window: per-call allocations stay small.
    """
    n = end - start
    z = np.zeros(n, np.int32)
    if n == 0:
        return z
    z[0] = n
    last = end - 1
    left = 0
    right = 0
    for i in range(1, n):
        k = 0
        if i < right:
            k = right - i
            if z[i - left] < k:
                k = z[i - left]
        while i + k < n and hist[last - k] == hist[last - i - k]:
            k += 1
        z[i] = k
        if i + k > right:
            left = i
            right = i + k
    return z


@numba.njit(**_NJ)
def dry_lengths(hist, start, end, allowed, brk, scratch):
    """Spec §4.1 repeat lengths: distinct tokens (history order) with L >= allowed."""
    n = end - start
    if n < 2 or brk[hist[end - 1]]:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rep_limit = n
    for i in range(n - 1, -1, -1):
        if brk[hist[start + i]]:
            rep_limit = n - 1 - i
            break
    z = _z_reversed(hist, start, end)
    # rev[j - 1] = hist[end - j]: the token that followed the earlier copy
    for j in range(1, n):
        scratch[hist[end - j]] = -1
    cnt = 0
    for j in range(1, n):
        length = np.int64(z[j]) if z[j] < rep_limit else rep_limit
        tok = hist[end - j]
        if length >= allowed and not brk[tok]:
            if scratch[tok] < length:
                if scratch[tok] < 0:
                    cnt += 1
                scratch[tok] = length
    toks = np.empty(cnt, np.int64)
    lens = np.empty(cnt, np.int64)
    c = 0
    for j in range(1, n):
        tok = hist[end - j]
        if scratch[tok] >= 0:
            toks[c] = tok
            lens[c] = scratch[tok]
            scratch[tok] = -1
            c += 1
    return toks, lens


@numba.njit(**_NJ)
def _dry_amount(length, multiplier, base, allowed):
    expo = np.float64(length) - np.float64(allowed)
    if base > 1.0:
        cap = LN_F32_MAX / math.log(base)
        if expo > cap:
            expo = cap
    return multiplier * base ** expo


@numba.njit(**_NJ)
def _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace, b):
    """Row b of ``_dry_kernel``."""
    B, V = logits.shape
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    mult = multiplier[b]
    bs = base[b]
    ln = last_n[b]
    if not (mult != 0.0 and bs >= 1.0 and ln != 0):
        return
    start, end = _window(offsets, b, ln)
    scratch = np.empty(V, np.int32)
    toks, lens = dry_lengths(hist, start, end, allowed[b], brk, scratch)
    for j in range(toks.shape[0]):
        t = toks[j]
        x = np.float64(row[t])
        if x > -np.inf:
            o[t] = _sat(x - _dry_amount(lens[j], mult, bs, allowed[b]))


@numba.njit(**_PJ)
def _dry_kernel(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace):
    for b in prange(logits.shape[0]):
        _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace, b)


@numba.njit(**_NJ)
def _dry_serial(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace):
    """``_dry_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace, b)


@numba.njit(**_NJ)
def _dry_penalty_kernel(hist, V, multiplier, base, allowed, last_n, brk):
    start, end = _window(np.array([0, hist.shape[0]], np.int64), 0, last_n)
    scratch = np.empty(V, np.int32)
    toks, lens = dry_lengths(hist, start, end, allowed, brk, scratch)
    order = _argsort_stable(toks.astype(np.float64))
    ids = np.empty(toks.shape[0], np.int32)
    pen = np.empty(toks.shape[0], np.float32)
    for j in range(toks.shape[0]):
        k = order[j]
        ids[j] = toks[k]
        a = _dry_amount(lens[k], multiplier, base, allowed)
        pen[j] = np.float32(a if not a > F32_MAX else F32_MAX)
    return ids, pen


@numba.njit(**_NJ)
def _ngram_at(logits, out, hist, offsets, n, inplace, b):
    """Row b of ``_ngram_kernel``."""
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    nb = n[b]
    start = offsets[b]
    end = offsets[b + 1]
    L = end - start
    if nb <= 0 or L + 1 < nb:
        return
    if nb == 1:
        for i in range(start, end):
            o[hist[i]] = -np.inf
        return
    # a window of n-1 tokens ending at hist[e] equal to the last n-1 tokens bans
    # hist[e+1]: in the reversed window that is z[j] >= n-1, banned rev[j-1].
    z = _z_reversed(hist, start, end)
    for j in range(1, L):
        if z[j] >= nb - 1:
            o[hist[end - j]] = -np.inf


@numba.njit(**_PJ)
def _ngram_kernel(logits, out, hist, offsets, n, inplace):
    for b in prange(logits.shape[0]):
        _ngram_at(logits, out, hist, offsets, n, inplace, b)


@numba.njit(**_NJ)
def _ngram_serial(logits, out, hist, offsets, n, inplace):
    """``_ngram_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _ngram_at(logits, out, hist, offsets, n, inplace, b)


@numba.njit(**_NJ)
def _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b):
    """Row b of ``_logit_bias_kernel``."""
    G = uids.shape[0]
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    for g in range(G):
        t = uids[g]
        x = np.float64(row[t])
        acc = x
        for j in range(starts[g], starts[g + 1]):
            acc += vals[j]
        if banned[g] or not x > -np.inf:
            o[t] = -np.inf
        else:
            o[t] = _sat(acc)


@numba.njit(**_PJ)
def _logit_bias_kernel(logits, out, uids, starts, vals, banned, inplace):
    for b in prange(logits.shape[0]):
        _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b)


@numba.njit(**_NJ)
def _logit_bias_serial(logits, out, uids, starts, vals, banned, inplace):
    """``_logit_bias_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b)


# ----------------------------------------------------------------------------------
# Python wrappers (the reference's names and signatures)


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


def _run_rows(logits, kind, f1=None, f2=None, f3=None, i1=None, i2=None,
              seed=None, position=None):
    x = _logits(logits)
    B = x.shape[0]
    out = np.empty_like(x)
    if B == 0:
        return out
    zf = np.zeros(B, np.float64)
    zi = np.zeros(B, np.int64)
    zu = np.zeros(B, np.uint64)
    kernel = _rows_serial if B == 1 else _rows_kernel  # one row: no thread pool
    kernel(
        x, out, kind,
        zf if f1 is None else _f64(f1, B),
        zf if f2 is None else _f64(f2, B),
        zf if f3 is None else _f64(f3, B),
        zi if i1 is None else _i64(i1, B),
        zi if i2 is None else _i64(i2, B),
        zu if seed is None else _u64(seed, B),
        zu if position is None else _u64(position, B),
    )
    return out


def logit_bias(logits, ids, values, out=None):
    """``l[t] += bias``; a ``-inf`` bias bans the token; repeated ids add up.

    ``out=logits`` edits ``logits`` in place (the history stages take it too).
    """
    x = _logits(logits)
    B, V = x.shape
    ids = np.asarray(ids, dtype=np.int64).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if ids.shape != values.shape:
        raise ValueError("logit_bias: ids and values differ in length")
    _check_ids(ids, V, "bias")
    out, inplace = _out(x, logits, out)
    if B == 0 or ids.size == 0:
        if not inplace:
            out[...] = x
        return out
    order = np.argsort(ids, kind="stable")
    sid = ids[order]
    svals = np.ascontiguousarray(values[order])
    uids, first = np.unique(sid, return_index=True)
    starts = np.append(first, sid.size).astype(np.int64)
    banned = np.logical_or.reduceat(np.isneginf(svals), first)
    kernel = _logit_bias_serial if B == 1 else _logit_bias_kernel  # one row: no thread pool
    kernel(x, out, uids.astype(np.int64), starts, svals, banned.astype(np.bool_), inplace)
    return out


def penalties(logits, history, repeat, frequency, presence, last_n, out=None):
    """Repetition, frequency and presence penalties over the last ``last_n`` tokens."""
    x = _logits(logits)
    B, V = x.shape
    out, inplace = _out(x, logits, out)
    if B == 0:
        return out
    flat, offsets = _flat_history(history, B, V)
    kernel = _penalties_serial if B == 1 else _penalties_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _f64(repeat, B), _f64(frequency, B), _f64(presence, B),
           _i64(last_n, B), inplace)
    return out


def _breaker_table(breakers, V):
    br = np.asarray(breakers, dtype=np.int64).ravel()
    _check_ids(br, V, "breaker")
    return _table(br.tobytes(), V)


@functools.lru_cache(maxsize=16)
def _table(ids, V):
    """The (V,) bool breaker table of int64 ids (as bytes): made once per chain and V,
    not per token (never written)."""
    table = np.zeros(V, np.bool_)
    table[np.frombuffer(ids, np.int64)] = True
    return table


def dry(logits, history, multiplier, base, allowed_length, last_n, breakers, out=None):
    """DRY penalty of spec §4.1 per row (linear in the history length)."""
    x = _logits(logits)
    B, V = x.shape
    out, inplace = _out(x, logits, out)
    if B == 0:
        return out
    flat, offsets = _flat_history(history, B, V)
    kernel = _dry_serial if B == 1 else _dry_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _f64(multiplier, B), _f64(base, B), _i64(allowed_length, B),
           _i64(last_n, B), _breaker_table(breakers, V), inplace)
    return out


def dry_penalty(history, vocab_size, multiplier, base, allowed_length, breakers, last_n):
    """DRY penalties for one history: ``(ids int32 ascending, penalties float32)``."""
    V = int(vocab_size)
    hist = np.ascontiguousarray(np.asarray(history, dtype=np.int64).ravel())
    multiplier = float(multiplier)
    base = float(base)
    last_n = int(last_n)
    if not (multiplier != 0.0 and base >= 1.0 and last_n != 0):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    _check_ids(hist, V, "history")
    return _dry_penalty_kernel(hist, V, multiplier, base, int(allowed_length), last_n,
                               _breaker_table(breakers, V))


def no_repeat_ngram(logits, history, n, out=None):
    """Ban every token that would complete an n-gram already in the history (HF)."""
    x = _logits(logits)
    B, V = x.shape
    out, inplace = _out(x, logits, out)
    if B == 0:
        return out
    flat, offsets = _flat_history(history, B, V)
    kernel = _ngram_serial if B == 1 else _ngram_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _i64(n, B), inplace)
    return out


def top_n_sigma(logits, n, min_keep):
    """Keep ``l >= max - n * std`` over the finite logits (population std)."""
    return _run_rows(logits, K_TOP_N_SIGMA, f1=n, i2=min_keep)


def top_k(logits, k, min_keep):
    """Keep ``l >=`` the k-th largest finite logit (ties kept); k <= 0 is a no-op."""
    return _run_rows(logits, K_TOP_K, i1=k, i2=min_keep)


def typical(logits, p, min_keep):
    """Locally typical sampling: order by ``|-ln p - H|``, keep the prefix reaching p."""
    return _run_rows(logits, K_TYPICAL, f1=p, i2=min_keep)


def top_p(logits, p, min_keep):
    """Nucleus: the shortest prefix (by p, descending) whose mass reaches p, ties kept."""
    return _run_rows(logits, K_TOP_P, f1=p, i2=min_keep)


def min_p(logits, p, min_keep):
    """Keep ``l >= l_max + ln(p)`` (logit space)."""
    return _run_rows(logits, K_MIN_P, f1=p, i2=min_keep)


def xtc(logits, probability, threshold, min_keep, seed, position):
    """Exclude Top Choices with the stream-1 roll of spec §5."""
    return _run_rows(logits, K_XTC, f1=probability, f2=threshold, i2=min_keep,
                     seed=seed, position=position)


def epsilon(logits, epsilon, min_keep):
    """Mask ``p < epsilon``."""
    return _run_rows(logits, K_EPSILON, f1=epsilon, i2=min_keep)


def eta(logits, epsilon, min_keep):
    """Mask ``p < min(eps, sqrt(eps) * exp(-H))``."""
    return _run_rows(logits, K_ETA, f1=epsilon, i2=min_keep)


def top_a(logits, a, min_keep):
    """Mask ``p < a * p_max ** 2``."""
    return _run_rows(logits, K_TOP_A, f1=a, i2=min_keep)


def p_less(logits, min_keep):
    """Mask ``p < sum(p**2) - 1e-6``."""
    return _run_rows(logits, K_P_LESS, i2=min_keep)


def tail_free(logits, z, min_keep):
    """Tail-free sampling, text-generation-webui's rule."""
    return _run_rows(logits, K_TAIL_FREE, f1=z, i2=min_keep)


def temperature(logits, t):
    """``l / t`` for t > 0 (saturating); t <= 0 keeps the first max; t == 1 copies."""
    return _run_rows(logits, K_TEMPERATURE, f1=t)


def dynamic_temperature(logits, t, range_, exponent):
    """Entropy-scaled temperature ``T = lo + (hi - lo) * (H / ln n) ** exponent``."""
    return _run_rows(logits, K_DYN_TEMP, f1=t, f2=range_, f3=exponent)


def smoothing(logits, factor, curve):
    """Quadratic/cubic smoothing (text-generation-webui)."""
    return _run_rows(logits, K_SMOOTHING, f1=factor, f2=curve)


def greedy(logits):
    """One-hot mask: the first maximum keeps its logit, every other token ``-inf``."""
    return _run_rows(logits, K_GREEDY)


def mirostat(logits, mu, m):
    """Mirostat v1's truncation for the current mu (TopK rule)."""
    return _run_rows(logits, K_MIROSTAT, f1=mu, i1=m)


def mirostat_v2(logits, mu):
    """Mirostat v2's truncation: keep ``-log2 p <= mu`` (at least the max)."""
    return _run_rows(logits, K_MIROSTAT_V2, f1=mu)


def adaptive_p(logits, target, ema_sum, ema_weight):
    """Adaptive-p transform ``l' = 5 - 10 d**2 / (1 + d)``, ``d = |p - tau'| / 0.3``."""
    return _run_rows(logits, K_ADAPTIVE_P, f1=target, f2=ema_sum, f3=ema_weight)
