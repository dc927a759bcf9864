"""A whole-distribution stage first (numba CPU backend): the twin of
``csrc/fs_whole_first.inc``.

``whole_first_row(v, kind, a, b, mk, t, u_xtc, draw, u) -> (count, ids, vals, token,
logprob)`` gives the survivors (ids ascending, values) of Epsilon, Eta, TopA, PLess,
TopNSigma, XTC, Typical or TailFree (``stage_common``'s ``K_*`` kinds) on one whole
row, after a first Temperature ``t`` (1: none), without writing the row and without
sorting it (TailFree sorts its head); ``chain_row`` runs the later stages of a chain
on them, as after TopK/TopP/MinP. For XTC or a probability threshold with nothing
after it (``draw``), and for the Mirostat terminals, it draws too (the Mirostats:
with the drawn token's log-probability among the kept tokens, for the mu update).
``xtc_removed_row`` gives only the ids XTC first removes (the stages after it read
the row itself), and ``mirostat_row`` draws a Mirostat terminal on any chain's
survivors, told the vocabulary size.

What it computes (docs/spec.md §4): each of these stages keeps a set decided by a few
sums over the row (the softmax normaliser ``Z = sum exp(l - M)``; for Eta and Typical
also ``S1 = sum w (l - M)``, the entropy being ``H = ln Z - S1 / Z``; for PLess
``S2 = sum w**2``; for TopNSigma the mean and population variance) and one
threshold on p (or on l; Typical: on the distance from the p-weighted mean logit;
TailFree: a cdf of the sorted p's second differences).

Why it is fast: the first pass is the canonical kernel's (row max, block maxima);
the exp pass sums the weights block by block (8 float64 lanes), and TopNSigma needs
no exp at all. ``p >= q`` iff ``l - M >= ln(q Z)``, so the kept tokens are gathered
from the blocks whose max reaches that level, and only those near it get their p
computed. XTC removes a few top tokens from the whole row: the draw walks the exp
pass's block sums less the removed weights, with no second exp pass. Typical sorts
only the tokens of a window of mass-histogram bins; TailFree's cut is settled by a
sorted head (``_typical``, ``_tail_free``).

Same decisions as the stage kernels: the sums are taken in another order than the
reference's pairwise sums, so a decision within a relative ``_BAND`` (a token's p, l
or score against its threshold, a running mass or cdf against its target) makes the
row undecided (``UNDECIDED``): the chain then runs the stage kernels. The draw's
weights are ``exp(l - M)`` with ``M`` the input's max: the weights of spec §5 up to a
common factor, so the token differs only by float64 rounding, as between any two
backends (spec §5).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .canonical import (_BS, _NBINS_MASS, _NEG, _TOL, _apply_temperature, _block_kth,
                        _block_sums, _draw_blocked, _f32_ceil, _f32_floor, _gather, _hit_blocks,
                        _invalid, _kth, _mass_hist, _mbin, _min_finite, _pass_max, _temp,
                        _walk_blocks)
from .simd import FASTMATH, exp64_neg, exp_store_sum, mul_strict
from .topk import _desc_key, _key_value, _radix_u32, _select_key
from .stage_common import (K_EPSILON, K_ETA, K_MIROSTAT, K_MIROSTAT_V2, K_P_LESS, K_TOP_A,
                           K_TAIL_FREE, K_TOP_N_SIGMA, K_TYPICAL, K_XTC)

__all__ = ["UNDECIDED", "mirostat_row", "whole_first_row", "xtc_removed_row"]

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


@numba.njit(cache=True, nogil=True, inline="always")
def _f(x, t):
    """f(x) = float32(x / t), Temperature's rule (t == 1: x); monotone for t > 0."""
    return x if t == 1.0 else _temp(x, t)


@numba.njit(cache=True, nogil=True)
def _raw_level(Lf, t):
    """A level in the input's units below which no x has f(x) >= Lf."""
    return Lf if t == 1.0 else t * (Lf - abs(Lf) * 1.2e-7) - 1e-300


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _exp_store(v, M, w):
    """w = exp(v - M) (0 for -inf); returns their sum."""
    n8 = v.shape[0] // 8 * 8   # the 8-lane pass takes a multiple of 8 entries
    z = exp_store_sum(v, 0, n8, M, w) if n8 else 0.0
    for i in range(n8, v.shape[0]):
        x = v[i]
        e = exp64_neg(np.float64(x) - M) if x > -np.inf else 0.0
        w[i] = e
        z += e
    return z


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _exp_moments(v, M, w):
    """(Z, S1, S2): ``w`` = exp(v - M) (stored), Z = sum w, S1 = sum w y,
    S2 = sum w**2, y = max(v - M, -1000) (-inf weighs 0 and adds 0 to S1)."""
    Z = _exp_store(v, M, w)
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
    # x >= sure: p >= q e^(1e-6), far past the band (no exp for the bulk of a flat
    # row's survivors)
    sure = M + math.log(q * Z) + _MARGIN if q > 0.0 else -np.inf
    for a in range(vals.shape[0]):
        if np.float64(vals[a]) >= sure:
            vals[k] = vals[a]
            ids[k] = ids[a]
            k += 1
            continue
        d = exp64_neg(np.float64(vals[a]) - M) / Z - q
        if -band <= d <= band:
            return UNDECIDED
        vals[k] = vals[a]
        ids[k] = ids[a]
        k += 1 if d > 0.0 else 0
    return k


@numba.njit(**_NJ)
def _all_finite(v, bmax):
    """(count, ids, values) of every finite token."""
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
def mirostat_row(v, vocab, kind, mu, m, u):
    """A Mirostat terminal (``kind`` K_MIROSTAT: mu, m; K_MIROSTAT_V2: mu) on a chain's
    survivors ``v`` of a vocabulary of ``vocab`` tokens: ``(index drawn, its
    log-probability among the kept)``; index -1 for an invalid row, UNDECIDED."""
    bmax = np.empty((v.shape[0] + _BS - 1) // _BS, np.float32)
    m32 = _pass_max(v, bmax)
    if _invalid(m32):
        return -1, np.nan
    und, tok, lp = _mirostats(v, bmax, np.float64(m32), 1.0, kind, mu, m, u, vocab)
    return (UNDECIDED if und else tok), lp


@numba.njit(**_NJ)
def _mirostats(v, bmax, M, t, kind, mu, m, u, vocab):
    """Mirostat v1 (mu, m) or v2 (mu) on the row, after its temperature t (v2: already
    applied; M the max of f(v)): (undecided, token, logprob)."""
    if kind == K_MIROSTAT:
        return _mirostat(v, bmax, t, mu, int(min(m, 9e18)), u, vocab)
    return _mirostat_v2(v, bmax, M, mu, u)


@numba.njit(**_NJ)
def xtc_removed_row(v, a, b, t, u_xtc, tout):
    """XTC first with stages after it (probability ``a``, threshold ``b``), on ``v``
    after a first Temperature ``t`` (1: none; else the transformed row is written to
    ``tout``, which the stages then read): ``(count, removed ids ascending)``, count 0
    when it does not fire, -1 for an invalid row, UNDECIDED. The stages read the row
    itself, less those ids: no gather of the ~V survivors."""
    bmax = np.empty((v.shape[0] + _BS - 1) // _BS, np.float32)
    m32 = _pass_max(v, bmax)
    if _invalid(m32):
        return -1, np.empty(0, np.int32)
    fires = a > 0.0 and b <= 0.5 and u_xtc < a
    if t != 1.0:
        _apply_temperature(v, t, tout)
        v = tout
        if fires:   # its own block maxima on the transformed row, as whole_first_row
            m32 = _pass_max(v, bmax)
    if not fires:
        return 0, np.empty(0, np.int32)
    M = np.float64(m32)
    bs = np.empty(bmax.shape[0], np.float64)
    Z = _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
    return _xtc_removed(v, bmax, M, Z, b)


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
def _draw_kept(vals, ids, M, u):
    """Spec §5 over the kept (values f(x), max M): (token, its log-probability among
    them)."""
    c = vals.shape[0]
    W = 0.0
    for a in range(c):
        W += exp64_neg(np.float64(vals[a]) - M)
    target = u * W
    run = 0.0
    k = c - 1   # rounding left every running sum <= target: the last one
    for a in range(c):
        run += exp64_neg(np.float64(vals[a]) - M)
        if run > target:
            k = a
            break
    return ids[k], (np.float64(vals[k]) - M) - math.log(W)


@numba.njit(**_NJ)
def _mirostat_k(d, top, M, mu, vocab):
    """Mirostat v1's k (reference._mirostat_k) from the top values of f(v), descending:
    0 keeps every token; -1 (undecided) when k is within rounding of an integer >= 2
    or a weight near underflow could make the reference's probabilities 0."""
    if top <= 0:
        return 1
    num = 0.0
    den = 0.0
    wp = exp64_neg(np.float64(d[0]) - M)
    for i in range(top):
        wn = exp64_neg(np.float64(d[i + 1]) - M)
        if wn < 1e-290:
            return -1
        ti = math.log((i + 2.0) / (i + 1.0))
        num += ti * math.log(wp / wn)
        den += ti * ti
        wp = wn
    s = num / den
    e = s - 1.0
    k = ((e * 2.0 ** mu) / (1.0 - np.float64(vocab) ** (-e))) ** (1.0 / s)
    if not k == k or k > vocab + 1.0:
        return 0
    if k < 1.999999:   # max(int(k), 1): no integer crossing below 2
        return 1
    if abs(k - np.rint(k)) <= 1e-9 * k:
        return -1
    return int(k)


_ONES = np.uint32(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _key(x):
    """Ascending uint32 key of a float32 (topk's descending key, complemented)."""
    return np.uint32(_ONES - _desc_key(x))


@numba.njit(cache=True, nogil=True, inline="always")
def _unkey(k):
    return _key_value(np.uint32(_ONES - k))


@numba.njit(**_NJ)
def _first_raw(lo, hi, t, Lf):
    """The smallest float32 x in [lo, hi] with f(x) >= Lf, given f(hi) >= Lf."""
    a = _key(np.float32(lo))
    b = _key(np.float32(hi))
    while a < b:
        c = a + (b - a) // np.uint32(2)
        if _f(_unkey(c), t) >= Lf:
            b = c
        else:
            a = c + np.uint32(1)
    return _unkey(b)


@numba.njit(**_NJ)
def _any_in(v, bmax, lo, hi):
    """Whether some token of ``v`` lies in [lo, hi] (over the blocks reaching lo)."""
    n = v.shape[0]
    for j in range(bmax.shape[0]):
        if bmax[j] >= lo:
            c = 0
            for i in range(j * _BS, min(j * _BS + _BS, n)):   # a count: vectorises
                c += (v[i] >= lo) & (v[i] <= hi)
            if c:
                return True
    return False


@numba.njit(**_NJ)
def _draw_from(v, bmax, x0, M, t, u, w, use_w):
    """The draw over the kept tokens {v >= x0} (weights exp(f(v) - M)): (token, its
    log-probability among them). Few kept: gathered; many: the blocked draw."""
    n = v.shape[0]
    if _hit_blocks(bmax, x0) * _BS * 4 <= n:
        vals, ids = _gather(v, bmax, np.float64(x0))
        for a in range(vals.shape[0]):
            vals[a] = _f(vals[a], t)
        return _draw_kept(vals, ids, M, u)
    bs = np.empty(bmax.shape[0], np.float64)
    W = _block_sums(v, bmax, np.float64(x0), M, t, w, use_w, bs)
    tok = _walk_blocks(v, bmax, np.float64(x0), M, t, u, w, use_w, bs, W)
    if tok < 0:
        return tok, np.nan
    return tok, (np.float64(_f(v[tok], t)) - M) - math.log(W)


@numba.njit(**_NJ)
def _prob_draw(v, bmax, M, Z, q, td, u, w):
    """A probability threshold with nothing after it but a Temperature ``td`` (1:
    none) and min_keep 1: (undecided, token), the draw over {p >= q} straight from the
    row (td = 1: with the stored weights ``w``), no gather; undecided when a token lies
    within _MARGIN nats of the level (its exact p decides: the caller gathers) or the
    level is above the max (the floor keeps it)."""
    x0 = _NEG
    if q > 0.0:
        Lq = M + math.log(q * Z)
        hi = _f32_ceil(Lq + _MARGIN)
        lo = _f32_ceil(Lq - _MARGIN)
        if not np.float64(hi) <= M:
            return True, -1
        if lo < hi and _any_in(v, bmax, lo, np.nextafter(hi, np.float32(-np.inf))):
            return True, -1
        x0 = np.float64(hi)
    if td != 1.0:   # the Temperature after it, on the kept
        M2 = np.float64(_temp(np.float32(M), td))
        many = _hit_blocks(bmax, x0) * _BS * 4 > v.shape[0]   # _draw_from's blocked draw
        if many:   # its weights first, in two vector passes
            y = np.empty(v.shape[0], np.float32)
            _apply_temperature(v, td, y)
            _exp_store(y, M2, w)
        tok, _ = _draw_from(v, bmax, x0, M2, td, u, w, many)
    else:
        tok, _ = _draw_from(v, bmax, x0, M, 1.0, u, w, True)
    return tok < 0, tok


@numba.njit(**_NJ)
def _kth_value(v, bmax, j):
    """The j-th largest finite value (``_NEG`` when fewer are finite), by top-k's radix
    select (``topk._select_key``) among the tokens above the block bound: canonical's
    ``_kth`` also sorts them, milliseconds when Mirostat's k is thousands."""
    if j >= v.shape[0]:
        return _NEG
    vals, _ = _gather(v, bmax, _block_kth(bmax, j))
    c = vals.shape[0]
    if c < j:
        return _NEG
    keys = np.empty(c, np.uint32)
    for i in range(c):
        keys[i] = _desc_key(vals[i])
    kmin = keys.min()
    kmax = keys.max()
    t = _key_value(_select_key(keys, c, j, kmin, kmax, 1)[0])
    G = np.float32(np.inf)   # t bounds the j-th largest from below; the value itself:
    for i in range(c):
        x = vals[i]
        if t <= x < G:
            G = x
    return np.float64(G)


@numba.njit(**_NJ)
def _mirostat(v, bmax, t, mu, m, u, vocab):
    """Mirostat v1 (mu, m) of a vocabulary of ``vocab`` tokens (its Zipf k reads it; ``v``
    may be a chain's survivors): the top k of f(v) (TopK rule), drawn: (undecided,
    token, logprob)."""
    m = max(m, 1)
    G, _, srt, _, _ = _kth(v, bmax, m)
    if G <= _NEG:   # fewer than m finite: all of them, sorted
        srt = np.sort(_gather(v, bmax, _NEG)[0])
        top = srt.shape[0] - 1
    else:
        top = m - 1
    cnt = srt.shape[0]
    d = np.empty(top + 1, np.float32)
    for i in range(top + 1):
        d[i] = _f(srt[cnt - 1 - i], t)
    M = np.float64(d[0])
    k = _mirostat_k(d, top, M, mu, vocab)
    if k < 0:
        return True, -1, np.nan
    Gk = _NEG if k == 0 else _kth_value(v, bmax, k)
    x0 = np.float32(-3.4028234663852886e38)
    if Gk > _NEG:
        Gf = _f(np.float32(Gk), t)
        x0 = np.float32(Gk) if t == 1.0 else _first_raw(
            _f32_ceil(max(_raw_level(np.float64(Gf), t), _NEG)), np.float32(Gk), t, Gf)
    tok, lp = _draw_from(v, bmax, x0, M, t, u, np.empty(0, np.float64), False)
    return False, tok, lp


@numba.njit(**_NJ)
def _mirostat_v2(v, bmax, M, mu, u):
    """Mirostat v2 (mu) on a row (its temperature already applied): keep
    d(x) = ((x - M) - ln Z) + mu ln 2 > 0 (at least the max and its ties), drawn:
    (undecided, token, logprob). d is monotone in x: the kept set is {x >= x0}."""
    w = np.empty(v.shape[0], np.float64)
    Z = _exp_store(v, M, w)
    lz = math.log(Z)
    bound = -mu * 0.6931471805599453
    thr = M + lz + bound
    band = _BAND * (abs(bound) + abs(lz) + abs(M) + 1.0)
    a = _key(_f32_floor(thr - _MARGIN))
    b = _key(_f32_ceil(thr + _MARGIN))
    while a < b:
        c = a + (b - a) // np.uint32(2)
        if ((np.float64(_unkey(c)) - M) - lz) - bound > 0.0:
            b = c
        else:
            a = c + np.uint32(1)
    y0 = _unkey(b)
    if np.float64(y0) > M:
        y0 = np.float32(M)   # none kept: the max and its ties
    c = _key(_f32_floor(thr - 2.0 * band))
    hi = _key(_f32_ceil(thr + 2.0 * band))
    while c <= hi:   # the band: the float32 values y it holds, and any token on them
        y = _unkey(c)
        d = ((np.float64(y) - M) - lz) - bound
        if -band <= d <= band and np.float64(y) <= M:
            if _any_in(v, bmax, y, y):
                return True, -1, np.nan
        if c == np.uint32(0xFFFFFFFF):
            break
        c += np.uint32(1)
    tok, lp = _draw_from(v, bmax, y0, M, 1.0, u, w, True)
    return False, tok, lp


_TY_FULL = -4   # the partial histogram's tail reaches the cut: redo it whole


@numba.njit(cache=True, nogil=True, inline="always")
def _ty_edge(b, far, c, m, inv):
    """The least (far: the greatest) distance from c of bin b's values (widened by 1%
    of a bin, far above the rounding of either side)."""
    lo = m - (b + 1.01) * inv
    hi = m - (b - 0.01) * inv
    if lo >= c:
        return hi - c if far else lo - c
    if hi <= c:
        return c - lo if far else c - hi
    return max(hi - c, c - lo) if far else 0.0


@numba.njit(**_NJ)
def _ty_walk(h, bu, bl, far, c, m, inv, tw, bw):
    """The bins in ascending near (far False) or far order: [0, bu] above c (the key
    falls with b), (bu, bl) straddling c, [bl, nbins) below. far: the first key whose
    running mass (it included) reaches tw; near: the last key whose running mass before
    it stays below tw (both by a margin bw: a mass within the band of the target is
    left to the window's tokens)."""
    nbins = h.shape[0]
    s0 = bu + 1
    ns = min(bl - bu - 1, 2)
    if ns == 2 and _ty_edge(s0 + 1, far, c, m, inv) < _ty_edge(s0, far, c, m, inv):
        order = (s0 + 1, s0)
    else:
        order = (s0, s0 + 1)
    u = bu
    lb = bl
    q = 0
    cum = 0.0
    key = -1.0
    while True:
        ku = _ty_edge(u, far, c, m, inv) if u >= 0 else np.inf
        kl = _ty_edge(lb, far, c, m, inv) if lb < nbins else np.inf
        ks = _ty_edge(order[q], far, c, m, inv) if q < ns else np.inf
        if q < ns and ks <= ku and ks <= kl:
            b = order[q]
            k = ks
            q += 1
        elif u >= 0 and ku <= kl:
            b = u
            k = ku
            u -= 1
        elif lb < nbins:
            b = lb
            k = kl
            lb += 1
        else:
            return np.inf if far else key
        if not far:
            if not cum < tw - bw:
                return key
            key = k
        cum += h[b]
        if far and cum >= tw + bw:
            return k


@numba.njit(cache=True, nogil=True, inline="always")
def _ty_score(x, m, lz, H):
    return abs(-((np.float64(x) - m) - lz) - H)


@numba.njit(**_NJ)
def _ty_decide(v, bmax, m, scale, qlim, hist, Z, S1, target, mk):
    """Typical's survivors from the mass histogram ``hist`` (``_mass_hist``'s bins at
    ``scale``; tokens with q >= qlim are past it): (count, ids, vals), count UNDECIDED
    or _TY_FULL."""
    e32 = np.empty(0, np.float32)
    ei = np.empty(0, np.int32)
    nbn = hist.shape[0]
    lz = math.log(Z)
    H = lz - S1 / Z
    c = m + S1 / Z
    inv = 1.0 / scale   # bin edges: any rounding of them is in the 1%
    band = _BAND * (2.0 * abs(m) + abs(lz) + abs(H) + 1.0)
    qc = (m - c) * scale   # c's place in bins; then exact by the edges
    bu = int(min(max(qc - 2.0, -1.0), nbn - 1.0))
    while bu >= 0 and not m - (bu + 1.01) * inv >= c:
        bu -= 1
    while bu + 1 < nbn and m - (bu + 1 + 1.01) * inv >= c:
        bu += 1
    bl = int(min(qc + 2.0, nbn))
    while bl < nbn and not m - (bl - 0.01) * inv <= c:
        bl += 1
    while bl - 1 >= 0 and m - (bl - 1 - 0.01) * inv <= c:
        bl -= 1
    tw = target * Z
    bw = _BAND * Z   # the mass band (the score's is band)
    d_hi = _ty_walk(hist, bu, bl, True, c, m, inv, tw, bw)
    d_lo = _ty_walk(hist, bu, bl, False, c, m, inv, tw, bw)
    if qlim < np.inf and not c - (m - (qlim - 0.01) * inv) >= d_hi:
        return _TY_FULL, ei, e32
    if not d_hi < np.inf or not d_lo < d_hi or d_hi > 700.0:
        return UNDECIDED, ei, e32
    # the inside (class 1) and window (2) bins: [b0, b1] around c; the inside's mass
    b0 = bu + 1
    b1 = bl - 1
    while b0 > 0 and _ty_edge(b0 - 1, False, c, m, inv) < d_hi:
        b0 -= 1
    while b1 + 1 < nbn and _ty_edge(b1 + 1, False, c, m, inv) < d_hi:
        b1 += 1
    if b1 < b0:
        return UNDECIDED, ei, e32
    cls = np.zeros(nbn, np.uint8)
    inside = 0.0
    for b in range(b0, b1 + 1):
        cls[b] = 1 if _ty_edge(b, True, c, m, inv) <= d_lo else 2
        if cls[b] == 1:
            inside += hist[b]
    # the window's tokens (the exact bin test), above c and below c
    lo32 = _f32_ceil(m - (b1 + 1.01) * inv)
    hi32 = _f32_floor(m - (b0 - 0.01) * inv)
    gv, gi = _gather(v, bmax, lo32)
    up = np.empty(gv.shape[0], np.float32)
    dn = np.empty(gv.shape[0], np.float32)
    nu = 0
    nl = 0
    last = np.float64(nbn - 1)
    for a in range(gv.shape[0]):
        x = gv[a]
        if x > hi32 or not mul_strict(m - np.float64(x), scale) < qlim:
            continue
        if cls[_mbin(np.float64(x), m, scale, last)] == 2:
            if np.float64(x) > c:
                up[nu] = x
                nu += 1
            else:
                dn[nl] = x
                nl += 1
    up = np.sort(up[:nu])
    dn = np.sort(dn[:nl])
    # merge by score (up ascending, dn descending) from the inside's mass to the
    # first token reaching the target
    iu = 0
    il = nl - 1
    cw = inside
    s_last = -1.0
    x_last = np.float32(0.0)
    while iu < nu or il >= 0:
        su = _ty_score(up[iu], m, lz, H) if iu < nu else np.inf
        sl = _ty_score(dn[il], m, lz, H) if il >= 0 else np.inf
        if su <= sl:
            x = up[iu]
            iu += 1
        else:
            x = dn[il]
            il -= 1
        cw += exp64_neg(np.float64(x) - m)
        if -bw <= cw - tw <= bw:
            return UNDECIDED, ei, e32
        if cw > tw:
            s_last = min(su, sl)
            x_last = x
            break
    if s_last < 0.0:
        return UNDECIDED, ei, e32
    # no other value's score within the band of the last's
    for arr, k in ((up, nu), (dn, nl)):
        for a in range(k):
            d = _ty_score(arr[a], m, lz, H) - s_last
            if arr[a] != x_last and -band <= d <= band:
                return UNDECIDED, ei, e32
    # the survivors: score <= the last's, an interval [xlo, xhi] of values; its ends by
    # bisection on the float32 keys between the window's outer edges and c
    cl = _f32_floor(c)
    ch = _f32_ceil(c)
    if _ty_score(cl, m, lz, H) > s_last or _ty_score(ch, m, lz, H) > s_last or \
            not (lo32 <= cl and ch <= hi32):
        return UNDECIDED, ei, e32
    ka = _key(lo32)
    kb = _key(cl)
    while ka < kb:
        kc = ka + (kb - ka) // np.uint32(2)
        if _ty_score(_unkey(kc), m, lz, H) <= s_last:
            kb = kc
        else:
            ka = kc + np.uint32(1)
    xlo = _unkey(kb)
    ka = _key(ch)
    kb = _key(hi32)
    while ka < kb:
        kc = kb - (kb - ka) // np.uint32(2)
        if _ty_score(_unkey(kc), m, lz, H) <= s_last:
            ka = kc
        else:
            kb = kc - np.uint32(1)
    xhi = _unkey(ka)
    r = 0
    for a in range(gv.shape[0]):   # gv (>= lo32 <= xlo), ids ascending
        x = gv[a]
        gv[r] = x
        gi[r] = gi[a]
        r += 1 if (x >= xlo and x <= xhi) else 0
    if r < mk:   # the floor (rare): the stage kernel
        return UNDECIDED, ei, e32
    return r, gi[:r], gv[:r]


@numba.njit(**_NJ)
def _typical(v, bmax, m32, p, mk):
    """Typical (p) on the row: csrc/fs_whole_first.inc's wf_typical. The histogram
    covers [m - depth, m] (top-p's depth: the tokens below hold under 1 - target of
    the mass); when the cut reaches past it, it is redone over the whole range from
    the stored weights."""
    m = np.float64(m32)
    target = p - _TOL
    if p >= 1.0:
        return _all_finite(v, bmax)
    lower = _min_finite(v)
    if not m > lower:   # every score equal
        return _all_finite(v, bmax)
    ei = np.empty(0, np.int32)
    e32 = np.empty(0, np.float32)
    if not target > 0.0:   # the least score's ties: the stage kernel
        return UNDECIDED, ei, e32
    n = v.shape[0]
    wb = 0.0
    for j in range(bmax.shape[0]):
        wb += exp64_neg(np.float64(bmax[j]) - m)
    depth = math.log(max(n - 1, 1) / ((1.0 - target) * wb)) + 0.01
    rng = m - lower
    w = np.empty(n, np.float64)
    Z, S1, _ = _exp_moments(v, m, w)
    if rng > depth and depth > 0.0:
        scale = _NBINS_MASS / depth
        c, ids, vals = _ty_decide(v, bmax, m, scale, np.float64(_NBINS_MASS),
                                  _mass_hist(v, w, m, scale), Z, S1, target, mk)
        if c != _TY_FULL:
            return c, ids, vals
    scale = (_NBINS_MASS - 0.5) / rng   # every finite token in a bin
    c, ids, vals = _ty_decide(v, bmax, m, scale, np.inf, _mass_hist(v, w, m, scale), Z, S1,
                              target, mk)
    return (UNDECIDED if c == _TY_FULL else c), ids, vals


@numba.njit(**_NJ)
def _tf_cut(sd, partial, Z, M, z):
    """TailFree's K (the count of cdf <= z) from the sorted head ``sd`` (descending), or
    -1 when the head does not settle it: csrc/fs_whole_first.inc's tf_cut."""
    H = sd.shape[0]
    w = np.empty(H, np.float64)
    for i in range(H):
        w[i] = exp64_neg(np.float64(sd[i]) - M) / Z
    T = 0.0
    for i in range(H - 2):
        T += abs((w[i + 2] - w[i + 1]) - (w[i + 1] - w[i]))   # np.diff twice
    unc = (2.0 * w[H - 2] if H >= 2 else np.inf) if partial else 0.0
    if not T > 0.0:
        if partial or z < 0.0:
            return -1
        return H - 2 if H >= 2 else 0   # sum(d) = 0: every cdf is 0
    band = _BAND + 64.0 * 2.220446049250313e-16 / T
    sure = (z - band) * T
    maybe = (z + band) * (T + unc)
    C = 0.0
    klo = 0
    khi = 0
    for i in range(H - 2):
        C += abs((w[i + 2] - w[i + 1]) - (w[i + 1] - w[i]))
        klo += 1 if C <= sure else 0
        khi += 1 if C <= maybe else 0
        if C > maybe:
            break
    if klo != khi or (partial and klo >= H - 2):
        return -1
    return klo


@numba.njit(**_NJ)
def _tail_free(v, bmax, m32, z, mk):
    """TailFree (z) on the row: csrc/fs_whole_first.inc's wf_tail_free. The head
    (p >= 1e-4, 1e-5, 1e-6, 1e-7, then every token) sorted by value descending
    (topk's ``_radix_u32``; the cut value's ties kept in id order, as the reference's
    positions), its d's settle the cut when the tail's bound 2 p_{H-2} on the rest of
    sum(d) cannot move it."""
    ei = np.empty(0, np.int32)
    e32 = np.empty(0, np.float32)
    if z >= 1.0:
        return _all_finite(v, bmax)
    M = np.float64(m32)
    bs = np.empty(bmax.shape[0], np.float64)
    Z = _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
    lower = _min_finite(v)
    K = -1
    sd = e32
    for t in range(5):
        whole = t == 4
        L = _NEG if whole else _f32_ceil(M + math.log(10.0 ** (-4 - t) * Z))
        partial = L > lower
        if not whole and not partial:
            continue   # the head would be the whole row
        vals, ids = _gather(v, bmax, L)
        H = vals.shape[0]
        if H == 0 or (not whole and H > 65536):
            continue
        keys = np.empty(H, np.uint32)
        for a in range(H):
            keys[a] = _desc_key(vals[a])
        keys = _radix_u32(keys)
        sd = np.empty(H, np.float32)
        for a in range(H):
            sd[a] = _key_value(keys[a])
        K = _tf_cut(sd, partial, Z, M, z)
        if K >= 0:
            break
    if K < 0:
        return UNDECIDED, ei, e32
    keep = K + 1
    if keep < mk:   # the floor: every token >= the mk-th largest
        if mk > sd.shape[0]:
            return UNDECIDED, ei, e32
        vals, ids = _gather(v, bmax, sd[mk - 1])
        return vals.shape[0], ids, vals
    # the first keep in (value descending, id ascending) order: every token above the
    # cut value and its first ties by id
    xk = sd[keep - 1]
    above = 0
    while sd[above] > xk:
        above += 1
    ties = keep - above
    vals, ids = _gather(v, bmax, xk)
    r = 0
    for a in range(vals.shape[0]):   # ids ascending
        x = vals[a]
        vals[r] = x
        ids[r] = ids[a]
        if x > xk:
            r += 1
        elif ties > 0:
            r += 1
            ties -= 1
    return r, ids[:r], vals[:r]


@numba.njit(**_NJ)
def whole_first_row(v, kind, a, b, mk, t, u_xtc, draw, u):
    """``(count, ids, vals, token, logprob)``: the survivors of the stage ``kind`` on
    the row ``v`` after a first Temperature ``t`` (1: none; > 0), values after it (count -1: an invalid row; UNDECIDED: see the module
    docstring). ``draw``: 0 when stages follow, else the temperature of the draw that
    follows (1: none). XTC with draw 1, a probability threshold with draw (when it can
    decide without the survivors), and the Mirostats (a = mu, b = m): the token drawn
    over them, count 0, and (the Mirostats) its log-probability among them."""
    e32 = np.empty(0, np.float32)
    ei = np.empty(0, np.int32)
    mk = max(mk, 1)
    bmax = np.empty((v.shape[0] + _BS - 1) // _BS, np.float32)
    m32 = _pass_max(v, bmax)
    if _invalid(m32):
        return -1, ei, e32, -1, np.nan
    t0 = t
    if t != 1.0 and kind != K_MIROSTAT:
        # the exp passes take the transformed row (one vectorised division pass) rather
        # than a division per token inside a scalar exp loop
        y = np.empty(v.shape[0], np.float32)
        _apply_temperature(v, t, y)
        v = y
        t = 1.0
        m32 = _pass_max(v, bmax)
    M = np.float64(_f(np.float32(m32), t))
    if kind == K_MIROSTAT or kind == K_MIROSTAT_V2:
        und, tok, lp = _mirostats(v, bmax, M, t, kind, a, b, u, v.shape[0])
        return (UNDECIDED if und else 0), ei, e32, tok, lp
    if kind == K_TYPICAL or kind == K_TAIL_FREE:
        if kind == K_TYPICAL:
            c, ids, vals = _typical(v, bmax, m32, a, mk)
        else:
            c, ids, vals = _tail_free(v, bmax, m32, a, mk)
        return c, ids, vals, -1, np.nan
    if kind == K_TOP_N_SIGMA:
        if not a > 0.0:
            c, ids, vals = _all_finite(v, bmax)
            return c, ids, vals, -1, np.nan
        mu, var = _moments(v)
        sd = math.sqrt(var)
        T = M - a * sd
        band = _BAND * (abs(M) + abs(a * sd) + abs(mu))
        vals, ids = _gather(v, bmax, max(T - band, _NEG))
        k = 0
        for q in range(vals.shape[0]):
            x = vals[q]
            d = np.float64(x) - T
            if x != m32 and -band <= d <= band:
                return UNDECIDED, ei, e32, -1, np.nan
            vals[k] = x
            ids[k] = ids[q]
            k += 1 if x == m32 or d > 0.0 else 0   # the max is kept in every rounding
        if k < mk:   # the floor (min_keep above the kept count): the stage kernel
            return UNDECIDED, ei, e32, -1, np.nan
        return k, ids[:k], vals[:k], -1, np.nan
    if kind == K_XTC:
        nr = 0
        rm = ei
        if a > 0.0 and b <= 0.5 and u_xtc < a:
            bs = np.empty(bmax.shape[0], np.float64)
            Z = _block_sums(v, bmax, _NEG, M, 1.0, bs, False, bs)
            nr, rm = _xtc_removed(v, bmax, M, Z, b)
            if nr == UNDECIDED:
                return UNDECIDED, ei, e32, -1, np.nan
        if nr > 0 and mk > 1:
            return UNDECIDED, ei, e32, -1, np.nan
        if draw == 1.0:
            if nr == 0:   # the whole row: the W5 draw
                tok = _draw_blocked(v, bmax, _NEG, M, 1.0, u, np.empty(0, np.float64), False)
                return 0, ei, e32, tok, np.nan
            return 0, ei, e32, _draw_except(v, bmax, M, rm, u), np.nan
        vals, ids = _gather(v, bmax, _NEG)
        k = 0
        q = 0
        for i in range(vals.shape[0]):   # drop the removed ids (both ascending)
            while q < nr and rm[q] < ids[i]:
                q += 1
            vals[k] = vals[i]
            ids[k] = ids[i]
            k += 0 if (q < nr and rm[q] == ids[i]) else 1
        return k, ids[:k], vals[:k], -1, np.nan
    # the probability thresholds
    if (kind == K_EPSILON or kind == K_ETA or kind == K_TOP_A) and not a > 0.0:
        c, ids, vals = _all_finite(v, bmax)
        return c, ids, vals, -1, np.nan
    extra = 0.0
    # nothing after it (but a Temperature, on a stage after none): the draw on the row
    direct = draw > 0.0 and mk <= 1 and (draw == 1.0 or t0 == 1.0)
    moments = kind == K_ETA or kind == K_P_LESS
    w = np.empty(v.shape[0] if moments or direct else 0, np.float64)   # stored weights
    if moments:
        Z, S1, S2 = _exp_moments(v, M, w)
    elif direct:
        Z = _exp_store(v, M, w)
        S1 = 0.0
        S2 = 0.0
    else:
        bs = np.empty(bmax.shape[0], np.float64)
        Z = _block_sums(v, bmax, _NEG, M, t, bs, False, bs)
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
        return UNDECIDED, ei, e32, -1, np.nan
    if direct:
        und, tok = _prob_draw(v, bmax, M, Z, q, draw, u, w)
        if not und:
            return 0, ei, e32, tok, np.nan
    c, ids, vals = _prob_cut(v, bmax, M, Z, q, _BAND * (abs(q) + extra), mk)
    return c, ids, vals, -1, np.nan
