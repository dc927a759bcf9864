"""Numba row kernels of the truncation stages: each masks tokens (``-inf``) and keeps
the survivors' logits unchanged.

``_top_n_sigma_row``, ``_top_k_row``, ``_min_p_row``, ``_top_p_row``,
``_typical_row``, ``_xtc_row``, ``_prob_row`` (epsilon, eta, top_a, p_less: a
threshold on p) and ``_tail_free_row``, each ``(row, out, ..., min_keep)`` writing
the output row, with the rules of docs/spec.md §4. They run one row at a time under
``stages._rows_kernel``; the helpers they share (k-th largest, probabilities, the
top-p/typical mass cut) are in ``stage_common``. ``tail_free`` sorts the finite
tokens (the rule needs every second difference); the others never sort the row.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .stage_common import (
    _NBINS,
    _NJ,
    _SORT_MAX,
    K_EPSILON,
    K_ETA,
    K_P_LESS,
    K_TOP_A,
    MASS_TOL,
    _argsort_stable,
    _bin_of,
    _copy,
    _count_finite,
    _desc_order,
    _entropy,
    _finish,
    _keep_ge,
    _keep_p_ge,
    _kth_largest,
    _mass_cut,
    _row_max,
    _weights,
)

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
