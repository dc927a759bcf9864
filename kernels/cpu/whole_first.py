"""A whole-distribution stage first (numba CPU backend): the twin of
``csrc/fs_whole_first.inc``.

``whole_first_row(v, kind, a, b, mk, u_xtc, draw, u) -> (count, ids, vals, token)``
gives the survivors (ids ascending, values) of Epsilon, Eta, TopA, PLess, TopNSigma
or XTC (``stage_common``'s ``K_*`` kinds) on one whole row, without writing the row
and without sorting it; ``chain_row`` runs the later stages of a chain on them, as
after TopK/TopP/MinP. For XTC with nothing after it (``draw``), it draws too.

What it computes (docs/spec.md §4): each of these stages keeps a set decided by a few
sums over the row (the softmax normaliser ``Z = sum exp(l - M)``; for Eta also
``S1 = sum w (l - M)``, the entropy being ``H = ln Z - S1 / Z``; for PLess
``S2 = sum w**2``; for TopNSigma the mean and population variance) and one
threshold on p (or on l).

Why it is fast: the first pass is the canonical kernel's (row max, block maxima);
the exp pass sums the weights block by block (8 float64 lanes), and TopNSigma needs
no exp at all. ``p >= q`` iff ``l - M >= ln(q Z)``, so the kept tokens are gathered
from the blocks whose max reaches that level, and only they get their p computed.
XTC removes a few top tokens from the whole row: the draw walks the exp pass's
block sums less the removed weights, with no second exp pass.

Same decisions as the stage kernels: the sums are taken in another order than the
reference's pairwise sums, so a token's p (or l) within a relative ``_BAND`` of the
threshold makes the row undecided (``UNDECIDED``): the chain then runs the stage
kernels. The draw's weights are ``exp(l - M)`` with ``M`` the input's max: the
SPEC's weights up to a common factor, so the token differs only by float64
rounding, as between any two backends (spec §5).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .canonical import (_BS, _NEG, _TOL, _block_sums, _draw_blocked, _f32_ceil, _gather,
                        _invalid, _kth, _pass_max)
from .simd import FASTMATH, exp64_neg, exp_store_sum
from .stage_common import K_EPSILON, K_ETA, K_P_LESS, K_TOP_A, K_TOP_N_SIGMA, K_XTC

__all__ = ["UNDECIDED", "whole_first_row"]

UNDECIDED = -3
_BAND = 1e-12
_MARGIN = 1e-6          # nats below the exact level: the band and exp's ulps
_NJ = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _finite_sum(v):
    """(sum, count) of the finite values of ``v`` (a select and a bool count: both
    vectorise; a float count does not)."""
    s = 0.0
    c = 0
    for i in range(v.shape[0]):
        x = v[i]
        s += np.float64(x) if x > -np.inf else 0.0
        c += x > -np.inf
    return s, c


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _sq_dev(v, mu):
    """Sum of the squared deviations from ``mu`` of the finite values of ``v``."""
    q = 0.0
    for i in range(v.shape[0]):
        x = v[i]
        d = np.float64(x) - mu
        q += d * d if x > -np.inf else 0.0
    return q


@numba.njit(**_NJ)
def _moments(v):
    """(mean, population variance) of the finite values of ``v``."""
    s, c = _finite_sum(v)
    if c == 0:
        return 0.0, 0.0
    mu = s / c
    return mu, _sq_dev(v, mu) / c


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _exp_moments(v, M, w):
    """(Z, S1, S2): ``w`` = exp(v - M) (stored), Z = sum w, S1 = sum w y, S2 = sum w**2,
    y = max(v - M, -1000) (-inf weighs 0 and adds 0 to S1, no 0 * -inf)."""
    Z = exp_store_sum(v, 0, v.shape[0], M, w)
    s1 = 0.0
    s2 = 0.0
    for i in range(v.shape[0]):
        y = max(np.float64(v[i]) - M, -1000.0)
        e = w[i]
        s1 += e * y
        s2 += e * e
    return Z, s1, s2


@numba.njit(**_NJ)
def _keep_p(vals, ids, M, Z, q, band):
    """Compact the entries with p = exp(x - M) / Z >= q to the front; their count, or
    UNDECIDED when some p lies within ``band`` of q."""
    k = 0
    for a in range(vals.shape[0]):
        d = exp64_neg(np.float64(vals[a]) - M) / Z - q
        if -band <= d <= band:
            return UNDECIDED
        vals[k] = vals[a]
        ids[k] = ids[a]
        k += 1 if d > 0.0 else 0
    return k


@numba.njit(**_NJ)
def _all_finite(v, bmax):
    vals, ids = _gather(v, bmax, _NEG)
    return vals.shape[0], ids, vals


@numba.njit(**_NJ)
def _prob_cut(v, bmax, M, Z, q, band, mk):
    """(count, ids, vals) of the tokens with p >= q, with the min_keep floor."""
    if not q > 0.0:   # every finite p >= 0 >= q
        return _all_finite(v, bmax)
    L = max(M + math.log(q * Z) - _MARGIN, _NEG)
    vals, ids = _gather(v, bmax, L)
    k = _keep_p(vals, ids, M, Z, q, band)
    if k == UNDECIDED or k >= mk:
        return k, ids[:max(k, 0)], vals[:max(k, 0)]
    G = _kth(v, bmax, mk)[0]
    if G <= _NEG:
        return _all_finite(v, bmax)
    G32 = _f32_ceil(G)
    vals, ids = _gather(v, bmax, min(L, G))
    k = 0
    for a in range(vals.shape[0]):
        x = vals[a]
        d = exp64_neg(np.float64(x) - M) / Z - q
        if x < G32 and -band <= d <= band:
            return UNDECIDED, ids[:0], vals[:0]
        vals[k] = x
        ids[k] = ids[a]
        k += 1 if x >= G32 or d > 0.0 else 0
    return k, ids[:k], vals[:k]


@numba.njit(**_NJ)
def _xtc_removed(v, bmax, M, Z, thr):
    """XTC fired: (count, ids ascending) of the tokens it removes; count UNDECIDED when
    a p lies within the band of the threshold."""
    vals, ids = _gather(v, bmax, max(M + math.log(thr * Z) - _MARGIN, _NEG))
    c = _keep_p(vals, ids, M, Z, thr, _BAND * thr)
    if c < 2:
        return (UNDECIDED if c == UNDECIDED else 0), ids[:0]
    smallest = vals[0]
    for a in range(1, c):
        smallest = min(smallest, vals[a])
    r = 0
    for a in range(c):   # equal logits have equal p: compare logits
        ids[r] = ids[a]
        r += 1 if vals[a] > smallest else 0
    return r, ids[:r]


@numba.njit(**_NJ)
def _draw_except(v, bmax, M, rm, u):
    """Spec §5 over the finite tokens of ``v`` except the ids ``rm`` (ascending)."""
    n = v.shape[0]
    nb = bmax.shape[0]
    bs = np.empty(nb, np.float64)
    _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
    for a in range(rm.shape[0]):
        bs[rm[a] // _BS] = -1.0
    W = 0.0
    q = 0
    for j in range(nb):
        if bs[j] < 0.0:   # a block holding removed ids: its sum without them
            acc = 0.0
            for i in range(j * _BS, min(j * _BS + _BS, n)):
                if q < rm.shape[0] and rm[q] == i:
                    q += 1
                    continue
                acc += exp64_neg(np.float64(v[i]) - M)
            bs[j] = acc
        W += bs[j]
    target = u * W
    run = 0.0
    q = 0
    last = -1
    for j in range(nb):
        s = j * _BS
        while q < rm.shape[0] and rm[q] < s:
            q += 1
        if bs[j] > 0.0 and run + bs[j] > target:
            for i in range(s, min(s + _BS, n)):
                if q < rm.shape[0] and rm[q] == i:
                    q += 1
                    continue
                if v[i] > -np.inf:
                    run += exp64_neg(np.float64(v[i]) - M)
                    last = i
                    if run > target:
                        return i
        else:
            run += bs[j]
    if last >= 0:
        return last
    q = rm.shape[0] - 1   # rounding left every running sum <= target: the last survivor
    for i in range(n - 1, -1, -1):
        while q >= 0 and rm[q] > i:
            q -= 1
        if q >= 0 and rm[q] == i:
            continue
        if v[i] > -np.inf:
            return i
    return -1


@numba.njit(**_NJ)
def whole_first_row(v, kind, a, b, mk, u_xtc, draw, u):
    """``(count, ids, vals, token)``: the survivors of the stage ``kind`` on the row
    ``v`` (count -1: an invalid row; UNDECIDED: see the module docstring); XTC with
    ``draw``: the token drawn over them, count 0."""
    e32 = np.empty(0, np.float32)
    ei = np.empty(0, np.int32)
    mk = max(mk, 1)
    bmax = np.empty((v.shape[0] + _BS - 1) // _BS, np.float32)
    M = _pass_max(v, bmax)
    if _invalid(M):
        return -1, ei, e32, -1
    if kind == K_TOP_N_SIGMA:
        if not a > 0.0:
            c, ids, vals = _all_finite(v, bmax)
            return c, ids, vals, -1
        mu, var = _moments(v)
        sd = math.sqrt(var)
        T = M - a * sd
        band = _BAND * (abs(M) + abs(a * sd) + abs(mu))
        vals, ids = _gather(v, bmax, max(T - band, _NEG))
        k = 0
        for q in range(vals.shape[0]):
            d = np.float64(vals[q]) - T
            if -band <= d <= band:
                return UNDECIDED, ei, e32, -1
            vals[k] = vals[q]
            ids[k] = ids[q]
            k += 1 if d > 0.0 else 0
        if k < mk:   # the floor (min_keep above the kept count): the stage kernel
            return UNDECIDED, ei, e32, -1
        return k, ids[:k], vals[:k], -1
    if kind == K_XTC:
        nr = 0
        rm = ei
        if a > 0.0 and b <= 0.5 and u_xtc < a:
            bs = np.empty(bmax.shape[0], np.float64)
            Z = _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
            nr, rm = _xtc_removed(v, bmax, M, Z, b)
            if nr == UNDECIDED:
                return UNDECIDED, ei, e32, -1
        if nr > 0 and mk > 1:
            return UNDECIDED, ei, e32, -1
        if draw:
            if nr == 0:   # the whole row: the W5 draw
                tok = _draw_blocked(v, bmax, _NEG, M, 1.0, u, np.empty(0, np.float64), False)
                return 0, ei, e32, tok
            return 0, ei, e32, _draw_except(v, bmax, M, rm, u)
        vals, ids = _gather(v, bmax, _NEG)
        k = 0
        q = 0
        for i in range(vals.shape[0]):   # drop the removed ids (both ascending)
            while q < nr and rm[q] < ids[i]:
                q += 1
            vals[k] = vals[i]
            ids[k] = ids[i]
            k += 0 if (q < nr and rm[q] == ids[i]) else 1
        return k, ids[:k], vals[:k], -1
    # the probability thresholds
    if (kind == K_EPSILON or kind == K_ETA or kind == K_TOP_A) and not a > 0.0:
        c, ids, vals = _all_finite(v, bmax)
        return c, ids, vals, -1
    extra = 0.0
    if kind == K_ETA or kind == K_P_LESS:
        Z, S1, S2 = _exp_moments(v, M, np.empty(v.shape[0], np.float64))
    else:
        bs = np.empty(bmax.shape[0], np.float64)
        Z = _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
        S1 = 0.0
        S2 = 0.0
    if kind == K_EPSILON:
        q = a
    elif kind == K_ETA:
        H = math.log(Z) - S1 / Z
        q = min(a, math.sqrt(a) * math.exp(-H))
        extra = q * (abs(H) + 1.0)   # exp(-H) inherits H's absolute rounding
    elif kind == K_TOP_A:
        q = a * (1.0 / Z) * (1.0 / Z)
    elif kind == K_P_LESS:
        s = S2 / (Z * Z)
        q = s - _TOL
        extra = s   # the subtraction keeps s's absolute rounding
    else:
        return UNDECIDED, ei, e32, -1
    c, ids, vals = _prob_cut(v, bmax, M, Z, q, _BAND * (abs(q) + extra), mk)
    return c, ids, vals, -1
