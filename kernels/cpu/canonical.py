"""The fused canonical chain of ``fs.sample`` (numba CPU backend).

``sample_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
temperature_last, seed, position) -> int32 (B,)`` gives, row for row, the token of
the reference chain

    temperature_last=True  (llama.cpp): TopK(k, min_keep) -> TopP(p, min_keep)
                                        -> MinP(p, min_keep) -> Temperature(t) -> draw
    temperature_last=False (HF):        Temperature(t) -> TopK -> TopP -> MinP -> draw

without materialising a masked row and without a full sort.

``truncate_canonical(logits, top_k, top_p, min_p, min_keep) -> (ids, vals, offsets,
invalid)`` stops before the draw: row b's candidate set, the finite tokens of
``MinP(TopP(TopK(l)))``, as ascending ids and their logits (rows concatenated, row b
at ``[offsets[b], offsets[b + 1])``). It is what a ``SamplerChain`` plan runs its
later stages on. ``sample_row``/``truncate_row`` are the one-row entries with scalar
parameters (the per-token latency path). Both entries share the threshold
computation (``_cut``); rows run in parallel (``prange``) when B > 1.

Why one threshold is enough
---------------------------
Every one of these truncations keeps a set of the form ``{l >= T}`` of its input (ties
at the cut are kept), and the ``min_keep`` floor is a union with another such set
(the tokens ``>=`` the ``min_keep``-th largest logit of the stage's input). The input
of each stage is itself such a set, and its ``min_keep``-th largest logit is the
row's ``min_keep``-th largest (``G(min_keep)``) whenever the input holds at least
``min_keep`` tokens (else the floor keeps the whole input). So the chain is one
running threshold ``T``; a stage with its own cut ``c`` does
``T = max(T, min(c, G(min_keep)))``:

- TopK: ``c = G(k)`` (``k <= 0``: no-op; ``k >=`` the finite count keeps all), so
  ``T = G(max(k, min_keep))``.
- TopP: ``c`` = the value of the first token (by value, descending) at which the
  running probability of the stage's input, renormalised over it, reaches
  ``p - 1e-6``; every tie of it is kept. None reached: keep all.
- MinP: ``c = l_max + ln p`` in float64 (the max always survives).
- Temperature is monotone, so it commutes with the cuts: last, it only changes the
  draw's weights; first (HF order), the truncations run on ``float32(l / t)``
  (materialised once: rounding can create ties that are not ties of ``l``).
  ``t <= 0`` is greedy in both orders: the first maximum of the row (the maximum
  survives every truncation).

How it is fast
--------------
- Pass 1 (vectorised ``llvm.maximum``, which also propagates NaN, so the pass is
  the row's validity check too): the row max and the max of every 256-token block
  (``bmax``). Everything later touches only blocks whose max can matter.
- Finding the few tokens ``>= L`` in a block (``_gather``): a vectorised pass writes
  a byte mask of the block, read back as uint64 words; only 32-token chunks with a
  set byte are compacted (branch-free). Hot loops index a slice by the loop counter
  (``v[s + i]`` adds a negative-index check that stops vectorisation), compare in
  float32 against the float32 rounding of ``L`` in the safe direction
  (``_f32_ceil``), and avoid per-chunk slices (a refcount pair each).
- ``G(j)`` (top-k): the j-th largest block max (``np.partition`` of the block
  maxima) is a lower bound; the tokens above it (about j, in j blocks) are gathered
  with their ids and sorted.
- TopP after TopK: over those gathered, sorted candidates.
- TopP on a whole row: one exp pass and a small sort. Before the pass, a level ``F``
  is read off the block maxima (``_count_level``): the smallest block max among the
  top r, r the expected number of blocks holding the row's top ``_TOPP_CANDS``
  tokens (more for p > 0.95) when large values sit at random positions. The pass
  (``exp_store_sum_ge``: one compare and masked add per vector more than a plain
  exp pass, where a scatter into a mass histogram would cost more than a second
  pass) stores the weights and returns their sum ``W`` and the exact mass above
  ``F``. When that mass reaches the target (on LLM-like rows it does for every row:
  the top-p set is a few hundred tokens), the cut is among the tokens ``>= F``, or
  above the higher level that the block maxima's own mass proves when it does
  (``sum exp(bmax - max)`` over the blocks above a level bounds the mass above it
  from below): those tokens are gathered, sorted and their running mass read from
  the top. Rows whose top-p set is most of the row (flat rows) take a second pass
  over the stored weights instead: a mass histogram, 2048 buckets over
  ``[lower, max]`` with ``n exp(lower - max) <= (1 - p) W / 4`` (the cut lies above
  ``lower``; the tokens below it go to 8 overflow buckets by position, so that a
  bulk there makes no chain of dependent updates); bucket ids computed vectorised
  per block, then a scalar scatter; only the boundary bucket's tokens are sorted.
- The draw (docs/spec.md §5, inverse CDF in token-id order, weights exp(l' - max) in float64)
  runs over gathered candidates when a stage left them (every token above a level
  below the final threshold: top-k's and top-p's candidates) or when the survivors
  sit in few blocks, else as a blocked pass: vectorised per-block sums, then a
  sequential walk inside one block. ``truncate_canonical`` returns those candidates
  (or the tokens gathered at the final threshold) instead of drawing; with B > 1,
  each row's set lands in a per-row buffer of ``_STASH`` entries, and a second
  parallel pass copies the buffers (or gathers a row again when its set is larger)
  into the concatenated output once the offsets are known.
- Weights use ``simd.exp64_neg`` (``exp64`` bit for bit on arguments <= 0, fewer
  operations) and Temperature's clamp ordered compare-selects (``maxnum``/``minnum``
  cost several instructions each on x86 for their NaN rule; y is never NaN here).
  The full-row exp passes (``_mass_pass``, ``_block_sums``) use simd's 8-lane
  ``exp_store_sum_ge``/``exp_sum_ge``/``exp_sum_ge_temp``, which get 512-bit code on
  AVX-512 CPUs (LLVM's auto-vectoriser stops at 256 bits there) and give the same
  weights as ``exp64_neg`` bit for bit (only the summation order differs).

Floating point: every sum is float64; the only differences from the reference are
the order of float64 additions and exp's last ulp, so a token (or a candidate set's
edge) can only differ when a cumulative mass lands within ~1e-15 of a boundary.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ..shared import uniform
from .constraints import masked_max, masked_words
from .simd import (
    FASTMATH,
    div_strict,
    exp64_neg,
    exp_store_sum_ge,
    exp_sum_ge,
    exp_sum_ge_temp,
    max_ordered,
    maximum,
    min_ordered,
    minnum,
    mul_strict,
)

__all__ = ["INVALID", "sample_canonical", "sample_row", "truncate_canonical", "truncate_row"]

INVALID = -2                  # token of a row with NaN, +inf or every logit masked
_NEED_DENSE = -3              # a bitmask path needs the masked row written (internal)

_BS = 256                     # block size of the block maxima
_F32_MAX = float(np.finfo(np.float32).max)
_NEG = -_F32_MAX              # threshold that keeps every finite token
_TOL = 1e-6                   # spec §4 mass tolerance (reference.MASS_TOLERANCE)
_NBINS_BLOCK = 256            # histogram of block maxima
_NBINS_MASS = 2048            # mass histogram of a whole row (flat rows)
_SORT_CAP = 4096              # candidates sorted directly up to this count
_TOPP_CANDS = 640             # tokens a whole-row top-p (p <= 0.95) aims to leave above F
_STASH = 2048                 # per-row buffer of truncate_canonical (B > 1)
_NO_WORDS = np.zeros((1, 1), np.uint32)   # truncate_canonical without a bitmask
_NO_WORK = np.zeros((1, 1), np.float32)
_STREAM_DRAW = 0
_CH = 32                      # chunk (4 words of a block's byte mask) visited when set




# ---------------------------------------------------------------------------------
# scalar helpers


@numba.njit(cache=True, nogil=True, inline="always")
def _temp(x, t):
    """Reference Temperature for one finite float32 logit: float32(clip(x / t))."""
    y = div_strict(np.float64(x), t)
    # ordered compare-selects: maxnum/minnum for a NaN-free y, in one op each
    y = min_ordered(max_ordered(y, -_F32_MAX), _F32_MAX)
    return np.float32(y)


@numba.njit(cache=True, nogil=True)
def _log(x):
    return math.log(x)


# ---------------------------------------------------------------------------------
# pass 1: row max and block maxima
#
# Hot loops index a slice of the row by the loop counter (``blk = v[s:s + _BS];
# blk[i]``): ``v[s + i]`` makes numba emit a negative-index check that blocks
# vectorisation.


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _pass_max(v, bmax):
    """Fill ``bmax`` with every block's max; return the row max (float64).

    The row's validity check rides on this pass: ``llvm.maximum`` propagates NaN
    (unlike maxnum) and vectorises as well, so a NaN anywhere makes the result NaN,
    +inf gives +inf and an all-masked row -inf.
    """
    n = v.shape[0]
    nfull = n // _BS
    m = np.float32(-np.inf)
    for j in range(nfull):
        blk = v[j * _BS:j * _BS + _BS]
        bm = blk[0]
        for i in range(1, _BS):  # compile-time trip count: vectorised
            bm = maximum(bm, blk[i])
        bmax[j] = bm
        m = maximum(m, bm)
    if nfull * _BS < n:
        tail = v[nfull * _BS:]
        bm = tail[0]
        for i in range(1, tail.shape[0]):
            bm = maximum(bm, tail[i])
        bmax[nfull] = bm
        m = maximum(m, bm)
    return np.float64(m)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _pass_max_masked(l, words, v, bmax, store=True):
    """The first pass under a packed token bitmask (docs/spec.md §10): ``v`` = the row
    with the disallowed tokens -inf (one bitmask word read per 32 logits, a masked
    select), the block maxima of ``v`` in ``bmax``, and the max of ``v``; NaN when the
    input row holds a NaN or +inf anywhere, allowed or not (the input's validity).

    The same pass as ``_pass_max`` (this one also writes the masked row that every
    later pass reads), so the bitmask costs no extra pass over the logits and no
    unpacked boolean array. ``store=False``: the maxima only (``v`` is not written;
    the later passes read the row through the bitmask).
    """
    n = l.shape[0]
    nfull = n // _BS
    ninf = np.float32(-np.inf)
    m = ninf
    bad = False   # a NaN or +inf in the input, allowed or not
    for j in range(nfull):
        if store:
            bm, nonfinite = masked_words(l, v, words, j * _BS, _BS)
        else:
            bm, nonfinite = masked_max(l, words, j * _BS, _BS)
        bmax[j] = bm
        m = maximum(m, bm)
        bad |= nonfinite
    if nfull * _BS < n:
        bm = ninf
        for i in range(nfull * _BS, n):
            x = l[i]
            bad |= not x < np.inf
            y = x if (np.uint32(words[i >> 5]) >> np.uint32(i & 31)) & np.uint32(1) else ninf
            if store:
                v[i] = y
            bm = maximum(bm, y)
        bmax[nfull] = bm
        m = maximum(m, bm)
    if bad:
        return np.nan
    return np.float64(m)


@numba.njit(cache=True, nogil=True)
def _invalid(m):
    """A row max that is NaN, +inf or -inf marks an invalid row (spec §7)."""
    return not (-np.inf < m < np.inf)


@numba.njit(cache=True, nogil=True)
def _first_max(v, bmax, m, words=None):
    """Index of the first element equal to the row max ``m`` (``words``: among the
    tokens a packed bitmask allows)."""
    n = v.shape[0]
    for j in range(bmax.shape[0]):
        if bmax[j] == m:
            for i in range(j * _BS, min(j * _BS + _BS, n)):
                if v[i] == m and (words is None or _allowed(words, i)):
                    return i
    return -1  # unreachable for a row with a finite max


@numba.njit(cache=True, nogil=True, inline="always")
def _allowed(words, i):
    """Whether a packed bitmask allows token i (bit i % 32 of word i // 32)."""
    return ((np.uint32(words[i >> 5]) >> np.uint32(i & 31)) & np.uint32(1)) != 0


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _apply_temperature(l, t, out):
    """out = reference Temperature(t) of l (t > 0, t != 1); -inf stays -inf."""
    for i in range(l.shape[0]):
        x = l[i]
        y = _temp(x, t)
        out[i] = y if x > -np.inf else np.float32(-np.inf)


# ---------------------------------------------------------------------------------
# block-maxima bounds


@numba.njit(cache=True, nogil=True)
def _block_bins(bmax, m):
    """Histogram bin (0 = top) of every block max, linear in ``m - bmax``; -1: masked."""
    nb = bmax.shape[0]
    lo = np.inf
    for j in range(nb):
        x = np.float64(bmax[j])
        if x > -np.inf and x < lo:
            lo = x
    scale = 0.0
    if m > lo:
        scale = _NBINS_BLOCK / (m - lo)
    bins = np.empty(nb, np.int32)
    for j in range(nb):
        x = np.float64(bmax[j])
        if x > -np.inf:
            b = int((m - x) * scale)
            bins[j] = min(max(b, 0), _NBINS_BLOCK - 1)
        else:
            bins[j] = -1
    return bins


@numba.njit(cache=True, nogil=True)
def _bound_from_bins(bmax, bins, last_bin):
    """The smallest block max among blocks in bins 0..last_bin."""
    lo = np.inf
    for j in range(bmax.shape[0]):
        b = bins[j]
        if b >= 0 and b <= last_bin:
            x = np.float64(bmax[j])
            lo = min(lo, x)
    return lo


@numba.njit(cache=True, nogil=True)
def _block_kth(bmax, j):
    """A lower bound of the j-th largest finite value: the j-th largest finite block
    max (the j blocks above it hold j values >= it); ``_NEG`` when fewer than j
    blocks are finite."""
    nb = bmax.shape[0]
    tmp = np.empty(nb, np.float32)
    c = 0
    for i in range(nb):
        x = bmax[i]
        tmp[c] = x
        c += 1 if x > -np.inf else 0
    if c < j:
        return _NEG
    return np.float64(np.partition(tmp[:c], c - j)[c - j])


@numba.njit(cache=True, nogil=True)
def _mass_bound(bmax, bins, m, target):
    """A level L with mass({v >= L}) >= target, from the block maxima's own mass."""
    hist = np.zeros(_NBINS_BLOCK, np.float64)
    for i in range(bins.shape[0]):
        b = bins[i]
        if b >= 0:
            hist[b] += exp64_neg(np.float64(bmax[i]) - m)
    cum = 0.0
    for b in range(_NBINS_BLOCK):
        cum += hist[b]
        if cum >= target:
            return _bound_from_bins(bmax, bins, b)
    return _NEG


# ---------------------------------------------------------------------------------
# gathering candidates


@numba.njit(cache=True, nogil=True)
def _hit_blocks(bmax, L):
    c = 0
    for j in range(bmax.shape[0]):
        c += 1 if bmax[j] >= L else 0
    return c


@numba.njit(cache=True, nogil=True, inline="always")
def _f32_ceil(x):
    """The smallest float32 >= x (finite float64 within the float32 range): for a
    float32 y, ``y >= x`` iff ``y >= _f32_ceil(x)``."""
    a = np.float32(x)
    if np.float64(a) < x:
        a = np.nextafter(a, np.float32(np.inf))
    return a


@numba.njit(cache=True, nogil=True, inline="always")
def _f32_floor(x):
    """The largest float32 <= x: for a float32 y, ``y <= x`` iff ``y <= _f32_floor(x)``."""
    a = np.float32(x)
    if np.float64(a) > x:
        a = np.nextafter(a, np.float32(-np.inf))
    return a


# Locating rare hits inside a block: a vectorised pass writes a byte mask of the
# block (``mk``), read back as uint64 words (``wd``, a view of it); only the _CH-token
# chunks whose four words are not all zero are visited. (Per-chunk vector counts
# cost a horizontal reduction each, and per-chunk slices a refcount pair each.)


@numba.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _mark_ge(blk, L32, mk):
    one = np.uint8(1)
    zero = np.uint8(0)
    for i in range(_BS):  # compile-time trip count: vectorised
        mk[i] = one if blk[i] >= L32 else zero


@numba.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _mark_in(blk, lo32, hi32, mk):
    one = np.uint8(1)
    zero = np.uint8(0)
    for i in range(_BS):  # compile-time trip count: vectorised
        x = blk[i]
        mk[i] = one if (x >= lo32) & (x <= hi32) else zero


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk_hit(wd, q):
    return (wd[4 * q] | wd[4 * q + 1] | wd[4 * q + 2] | wd[4 * q + 3]) != 0


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _gather_upto(v, bmax, L, limit, words=None):
    """(values, ids) of the tokens ``v >= L`` (L >= _NEG, so finite), ids ascending,
    from the blocks whose max is >= L; the hit chunks are compacted branch-free.
    Stops after the block where the count passes ``limit`` (more than ``limit``
    returned: incomplete). ``words``: only the tokens a packed bitmask allows (``v``
    unmasked, ``bmax`` the masked row's; a 32-token chunk is one bitmask word)."""
    n = v.shape[0]
    nfull = n // _BS
    L32 = _f32_ceil(L)
    cap = _hit_blocks(bmax, L) * _BS
    vals = np.empty(cap, np.float32)
    ids = np.empty(cap, np.int32)
    mk = np.empty(_BS, np.uint8)
    wd = mk.view(np.uint64)
    c = 0
    for j in range(bmax.shape[0]):
        if bmax[j] >= L32:
            s = j * _BS
            if j < nfull:
                blk = v[s:s + _BS]
                _mark_ge(blk, L32, mk)
                for q in range(_BS // _CH):
                    if _chunk_hit(wd, q):
                        if words is None:
                            for i in range(q * _CH, q * _CH + _CH):
                                x = blk[i]
                                vals[c] = x
                                ids[c] = s + i
                                c += 1 if x >= L32 else 0
                        else:
                            word = np.uint32(words[(s >> 5) + q])
                            for i in range(q * _CH, q * _CH + _CH):
                                x = blk[i]
                                vals[c] = x
                                ids[c] = s + i
                                bit = (word >> np.uint32(i - q * _CH)) & np.uint32(1)
                                c += 1 if (x >= L32) & (bit != 0) else 0
            else:
                for i in range(s, n):
                    x = v[i]
                    vals[c] = x
                    ids[c] = i
                    c += 1 if x >= L32 and (words is None or _allowed(words, i)) else 0
            if c > limit:
                break
    return vals[:c], ids[:c]


@numba.njit(cache=True, nogil=True)
def _gather(v, bmax, L, words=None):
    """Every token ``v >= L``: ``_gather_upto`` without a limit."""
    return _gather_upto(v, bmax, L, v.shape[0], words)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _count_ge(v, bmax, L):
    """The number of tokens ``v >= L`` (L >= _NEG), over the blocks whose max is >= L."""
    n = v.shape[0]
    nfull = n // _BS
    L32 = _f32_ceil(L)
    c = 0
    for j in range(bmax.shape[0]):
        if bmax[j] >= L32:
            s = j * _BS
            e = min(s + _BS, n)
            blk = v[s:e]
            if j < nfull:
                for i in range(_BS):  # compile-time trip count: vectorised
                    c += 1 if blk[i] >= L32 else 0
            else:
                for i in range(e - s):
                    c += 1 if blk[i] >= L32 else 0
    return c


# ---------------------------------------------------------------------------------
# stage cuts


@numba.njit(cache=True, nogil=True)
def _kth(v, bmax, j, words=None):
    """(G, L, sorted, vals, ids): G is the j-th largest finite value, or _NEG when the
    row has fewer than j finite values (the stage keeps all); (vals, ids) are every
    token >= L (ids ascending; L = inf: none gathered), ``sorted`` their values
    ascending."""
    if j >= v.shape[0]:
        e = np.empty(0, np.float32)
        return _NEG, np.inf, e, e, np.empty(0, np.int32)
    L = _block_kth(bmax, j)
    vals, ids = _gather(v, bmax, L, words)
    if vals.shape[0] > 4 * j + 64:
        # Fewer blocks than j (mid-size V): the block bound kept most of the row.
        # Select the j-th largest in O(n), then keep only the tokens >= it.
        L = np.float64(np.partition(vals, vals.shape[0] - j)[vals.shape[0] - j])
        vals, ids = _gather(v, bmax, L, words)
    srt = np.sort(vals)
    c = srt.shape[0]
    if c < j:
        # L == _NEG here (a real bound leaves >= j candidates): fewer than j finite.
        return _NEG, L, srt, vals, ids
    return np.float64(srt[c - j]), L, srt, vals, ids


@numba.njit(cache=True, nogil=True)
def _top_p_sorted(vals, lo, m, p):
    """TopP cut over the candidates ``vals[lo:]`` (ascending), renormalised over them.

    Returns the value of the first token (descending) whose running mass reaches
    ``p - 1e-6``, or _NEG when none does (keep all).
    """
    c = vals.shape[0]
    W = 0.0
    for i in range(lo, c):
        W += exp64_neg(np.float64(vals[i]) - m)
    target = p - _TOL
    cum = 0.0
    for i in range(c - 1, lo - 1, -1):
        cum += exp64_neg(np.float64(vals[i]) - m) / W
        if cum >= target:
            return np.float64(vals[i])
    return _NEG


@numba.njit(cache=True, nogil=True)
def _count_level(bmax, bins, want):
    """A level with about ``want`` tokens above it when a row's large values sit at
    random positions: the smallest block max of the first bins (``_block_bins``)
    that hold r blocks, r = nb (1 - exp(-want / nb)) (the expected number of the nb
    finite blocks that hold one of the top ``want`` tokens). Any row gets a valid
    level; only the count above it depends on the layout."""
    counts = np.zeros(_NBINS_BLOCK, np.int64)
    nbf = 0
    for j in range(bins.shape[0]):
        if bins[j] >= 0:
            counts[bins[j]] += 1
            nbf += 1
    r = math.ceil(nbf * (1.0 - math.exp(-want / nbf)))
    c = 0
    for b in range(_NBINS_BLOCK):
        c += counts[b]
        if c >= r:
            return _bound_from_bins(bmax, bins, b)
    return _bound_from_bins(bmax, bins, _NBINS_BLOCK - 1)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _mass_pass(v, m, w, F):
    """w[i] = exp(v[i] - m) (0 where masked); returns (their sum, the sum over v >= F)."""
    n = v.shape[0]
    n8 = n - n % 8
    # 8-lane pass (512-bit where the CPU has it)
    tot, above = exp_store_sum_ge(v, 0, n8, m, w, F)
    for i in range(n8, n):
        x = v[i]
        e = exp64_neg(np.float64(x) - m)  # -inf -> 0
        w[i] = e
        tot += e
        above += e if x >= F else 0.0
    return tot, above


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _min_finite(v):
    """The smallest finite value (vectorised; a separate loop: fused into the exp
    pass it stops that from vectorising)."""
    lo = np.float32(np.inf)
    for i in range(v.shape[0]):
        x = v[i]
        lo = minnum(lo, x if x > -np.inf else np.float32(np.inf))
    return np.float64(lo)


@numba.njit(cache=True, nogil=True, inline="always")
def _mbin(x, m, scale, last):
    """Mass-histogram bin of x (float64): int((m - x) * scale) clamped to ``last``
    (-inf -> last), for x <= m. Strict multiply: identical in every loop that uses it."""
    return np.int32(minnum(mul_strict(m - x, scale), last))


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _mass_hist(v, w, m, scale):
    """hist[b] = sum of w over the tokens of bin b < _NBINS_MASS (as ``_mbin``).

    Tokens past the last bin (below the histogram's range, or masked) go to 8
    overflow bins by position, so a row whose bulk lies there makes no chain of
    dependent updates. Bins are computed vectorised per block; the scatter
    alternates two copies of the histogram to halve the store-to-load chains.
    """
    n = v.shape[0]
    nb = _NBINS_MASS
    nh = nb + 8
    h = np.zeros(2 * nh, np.float64)
    bi = np.empty(_BS, np.int32)
    nfull = n // _BS
    for j in range(nfull):
        blk = v[j * _BS:j * _BS + _BS]
        wb = w[j * _BS:j * _BS + _BS]
        for i in range(_BS):  # vectorised
            bi[i] = _mbin(np.float64(blk[i]), m, scale, np.float64(nb + (i & 7)))
        for i in range(_BS // 2):
            h[bi[2 * i]] += wb[2 * i]
            h[nh + bi[2 * i + 1]] += wb[2 * i + 1]
    for i in range(nfull * _BS, n):
        h[_mbin(np.float64(v[i]), m, scale, np.float64(nb + (i & 7)))] += w[i]
    hist = np.empty(nb, np.float64)
    for b in range(nb):
        hist[b] = h[b] + h[nh + b]
    return hist


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _bin_vals(v, m, scale, bmax, target_bin):
    """Values of the tokens whose mass bin (as in _mass_hist) is ``target_bin``."""
    n = v.shape[0]
    last = np.float64(_NBINS_MASS - 1)
    cap = 64
    out = np.empty(cap, np.float32)
    c = 0
    # The bin's value interval widened by 1% of a bin (far above the rounding of
    # either side: the values are float32, so 1 / scale >= ~6e-8 |m| / _NBINS_MASS),
    # then the exact bin test.
    lo32 = _f32_ceil(m - (target_bin + 1.01) / scale)
    hi32 = _f32_floor(m - (target_bin - 0.01) / scale)
    mk = np.empty(_BS, np.uint8)
    wd = mk.view(np.uint64)
    nfull = n // _BS
    for j in range(bmax.shape[0]):
        if bmax[j] >= lo32:
            s = j * _BS
            e = min(s + _BS, n)
            blk = v[s:e]
            if j < nfull:
                _mark_in(blk, lo32, hi32, mk)
            for q in range((e - s + _CH - 1) // _CH):
                if j < nfull and not _chunk_hit(wd, q):
                    continue
                for i in range(q * _CH, min(q * _CH + _CH, e - s)):
                    x = blk[i]
                    if x >= lo32 and x <= hi32 and \
                            _mbin(np.float64(x), m, scale, last) == target_bin:
                        if c == cap:
                            cap *= 2
                            grown = np.empty(cap, np.float32)
                            grown[:c] = out[:c]
                            out = grown
                        out[c] = x
                        c += 1
    return out[:c]


@numba.njit(cache=True, nogil=True)
def _top_p_row(v, bmax, m, p, w):
    """TopP cut over a whole row (every finite token is the stage's input), for
    ``p - 1e-6 > 0``.

    Fills ``w`` with the row's weights exp(v - m). Returns (cut or _NEG: keep all,
    L, vals, ids): (vals, ids) are every token >= L (L = inf: none gathered).
    """
    n = v.shape[0]
    target = p - _TOL
    e32 = np.empty(0, np.float32)
    ei32 = np.empty(0, np.int32)
    # The one exp pass: weights, their sum and the exact mass above the level F.
    bins = _block_bins(bmax, m)
    # A power-law tail's top-p set grows like (1 - p)**-2: aim higher above p = 0.95.
    want = min(_TOPP_CANDS * max((1.0 - 0.95) / (1.0 - p), 1.0) ** 2, _SORT_CAP / 2)
    F = _count_level(bmax, bins, want)
    W, above_F = _mass_pass(v, m, w, F)
    tW = target * W
    # Candidates: a level whose mass provably reaches the target, the highest known.
    L = F if above_F >= tW else _NEG
    L = max(L, _mass_bound(bmax, bins, m, tW))
    if L > _NEG:
        # (a layout that puts the large values together can leave many tokens above F)
        cvals, cids = _gather_upto(v, bmax, L, _SORT_CAP)
        if cvals.shape[0] <= _SORT_CAP:
            vals = np.sort(cvals)
            cum = 0.0
            for i in range(vals.shape[0] - 1, -1, -1):
                cum += exp64_neg(np.float64(vals[i]) - m) / W
                if cum >= target:
                    return np.float64(vals[i]), L, cvals, cids
            # rounding left the level just short: fall through to the histogram
    # Mass histogram over [lower, m]; exact work only in the boundary bucket. Below
    # lower lies at most a quarter of the mass the cut may exclude (n exp(lower - m)
    # <= (1 - target) W / 4), so the cut is above it; rounding aside, else the
    # histogram is redone over [min finite, m].
    lower = m + _log((1.0 - target) * W / (4.0 * n))
    for attempt in range(2):
        if m <= lower:
            # every other value is too far below the max to weigh anything (or there
            # is none): the max's ties hold the mass
            return m, np.inf, e32, ei32
        scale = _NBINS_MASS / (m - lower)
        hist = _mass_hist(v, w, m, scale)
        above = 0.0
        for b in range(_NBINS_MASS):
            if (above + hist[b]) / W >= target:
                vals = np.sort(_bin_vals(v, m, scale, bmax, b))
                cum = above / W
                for i in range(vals.shape[0] - 1, -1, -1):
                    cum += exp64_neg(np.float64(vals[i]) - m) / W
                    if cum >= target:
                        return np.float64(vals[i]), np.inf, e32, ei32
                return np.float64(vals[0]), np.inf, e32, ei32
            above += hist[b]
        lower = _min_finite(v)
    return _NEG, np.inf, e32, ei32


# ---------------------------------------------------------------------------------
# the draw


@numba.njit(cache=True, nogil=True)
def _draw_cands(vals, ids, T, mw, t, u):
    """Spec §5 over the candidates ``vals >= T`` (ids ascending); weights exp(l' - mw)."""
    c = vals.shape[0]
    W = 0.0
    for a in range(c):
        x = vals[a]
        if x >= T:
            y = x if t == 1.0 else _temp(x, t)
            W += exp64_neg(np.float64(y) - mw)
    target = u * W
    run = 0.0
    tok = -1
    for a in range(c):
        x = vals[a]
        if x >= T:
            y = x if t == 1.0 else _temp(x, t)
            run += exp64_neg(np.float64(y) - mw)
            tok = ids[a]
            if run > target:
                return tok
    return tok  # rounding left every running sum <= target: the last survivor


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _block_sums(v, bmax, T, mw, t, w, use_w, bs):
    """bs[j] = sum over block j of the weights of the tokens v >= T."""
    n = v.shape[0]
    nfull = n // _BS
    tot = 0.0
    for j in range(bmax.shape[0]):
        acc = 0.0
        if bmax[j] >= T:
            s = j * _BS
            if j < nfull:
                blk = v[s:s + _BS]
                if use_w:
                    wb = w[s:s + _BS]
                    for i in range(_BS):
                        acc += wb[i] if blk[i] >= T else 0.0
                elif t == 1.0:  # 8-lane passes: 512-bit where the CPU has it
                    acc = exp_sum_ge(v, s, _BS, T, mw)
                else:
                    acc = exp_sum_ge_temp(v, s, _BS, T, mw, t)
            else:
                for i in range(s, n):
                    x = v[i]
                    if x >= T:
                        y = x if t == 1.0 else _temp(x, t)
                        acc += exp64_neg(np.float64(y) - mw)
        bs[j] = acc
        tot += acc
    return tot


@numba.njit(cache=True, nogil=True)
def _draw_blocked(v, bmax, T, mw, t, u, w, use_w):
    """Spec §5 over the tokens v >= T of the whole row, block by block."""
    bs = np.empty(bmax.shape[0], np.float64)
    W = _block_sums(v, bmax, T, mw, t, w, use_w, bs)
    return _walk_blocks(v, bmax, T, mw, t, u, w, use_w, bs, W)


@numba.njit(cache=True, nogil=True)
def _walk_blocks(v, bmax, T, mw, t, u, w, use_w, bs, W):
    """``_draw_blocked``'s walk, given its block sums ``bs`` and their total ``W``."""
    n = v.shape[0]
    nb = bmax.shape[0]
    target = u * W
    run = 0.0
    for j in range(nb):
        if bs[j] > 0.0 and run + bs[j] > target:
            for i in range(j * _BS, min(j * _BS + _BS, n)):
                x = v[i]
                if x >= T:
                    y = x if t == 1.0 else _temp(x, t)
                    run += exp64_neg(np.float64(y) - mw)
                    if run > target:
                        return i
        else:
            run += bs[j]
    # rounding left every running sum <= target: the last surviving token
    for i in range(n - 1, -1, -1):
        if v[i] >= T:
            return i
    return -1


# ---------------------------------------------------------------------------------
# one row


@numba.njit(cache=True, nogil=True)
def _cut(v, bmax, m, k, p, pmin, mk, words=None):
    """The chain's final threshold on a valid row ``v`` (max ``m``, block maxima
    ``bmax``): TopK(k) -> TopP(p) -> MinP(pmin), each with the floor ``mk``.

    Returns (T, cL, cvals, cids, w): the survivors are the tokens ``v >= T``;
    (cvals, cids) are every token ``>= cL`` (ids ascending; cL = inf: none gathered);
    ``w`` holds the row's weights exp(v - m) when top-p made a whole-row pass, else it
    is empty. ``words``: ``v`` read through a packed bitmask (its gathers see the
    allowed tokens only); T is NaN when the row then needs the whole-row top-p pass,
    which reads every token (the caller writes the masked row and cuts that).
    """
    n = v.shape[0]
    T = _NEG
    g_mk = np.inf                    # G(min_keep), computed when first needed
    w = np.empty(0, np.float64)
    srt = np.empty(0, np.float32)    # sorted candidates of TopK
    # Candidates: every token >= cL (ids ascending). A stage's candidates are taken
    # at a level <= its cut, and T only grows, so any of them holds the survivors.
    cL = np.inf
    cvals = np.empty(0, np.float32)
    cids = np.empty(0, np.int32)
    if k > 0:
        G, cL, srt, cvals, cids = _kth(v, bmax, max(k, mk), words)
        T = G
    if p < 1.0:
        if T > _NEG:
            lo = srt.shape[0] - 1
            while lo > 0 and srt[lo - 1] >= T:
                lo -= 1
            while srt[lo] < T:
                lo += 1
            cut = _top_p_sorted(srt, lo, m, p)
        elif p - _TOL <= 0.0:
            cut = m  # the first token reaches: keep the max and its ties
        elif words is not None:
            return np.nan, cL, cvals, cids, w
        else:
            w = np.empty(n, np.float64)
            cut, L2, cv2, ci2 = _top_p_row(v, bmax, m, p, w)
            if L2 < np.inf:
                cL = L2
                cvals = cv2
                cids = ci2
        if mk > 1 and cut > _NEG:
            g_mk = _kth(v, bmax, mk, words)[0]
            cut = min(cut, g_mk)
        T = max(T, cut)
    if pmin > 0.0:
        cut = min(m + _log(pmin), m)  # p > 1: the max is kept (min_keep >= 1)
        if mk > 1:
            if g_mk == np.inf:
                g_mk = _kth(v, bmax, mk, words)[0]
            cut = min(cut, g_mk)
        T = max(T, cut)
    return T, cL, cvals, cids, w


@numba.njit(cache=True, nogil=True)
def _sample_row(l, k, p, pmin, mk, t, t_last, u):
    n = l.shape[0]
    bmax = np.empty((n + _BS - 1) // _BS, np.float32)
    if t <= 0.0:  # greedy in both orders: the first maximum of the row
        m = _pass_max(l, bmax)
        if _invalid(m):
            return INVALID
        return _first_max(l, bmax, m)
    if t_last or t == 1.0:
        v = l
        t_draw = t
    else:  # HF order: the truncations see float32(l / t)
        # Temperature saturates +inf (and would hide NaN): check validity on l first.
        if _invalid(_pass_max(l, bmax)):
            return INVALID
        v = np.empty(n, np.float32)
        _apply_temperature(l, t, v)
        t_draw = 1.0
    m = _pass_max(v, bmax)
    if _invalid(m):
        return INVALID
    return _cut_and_draw(v, bmax, m, k, p, pmin, mk, t_draw, u)


@numba.njit(cache=True, nogil=True)
def _sample_row_masked(l, words, k, p, pmin, mk, t, t_last, u):
    """``_sample_row`` of the row under a packed bitmask (``words``). The first pass
    gives the masked row's block maxima and the input's NaN/+inf check. With top-k
    (temperature last) or greedy, every later pass is a gather from a few blocks,
    which reads ``l`` through the bitmask: nothing is written. Otherwise (or when the
    cut turns out to need a whole-row pass) the masked row is written and the chain
    reads that."""
    n = l.shape[0]
    bmax = np.empty((n + _BS - 1) // _BS, np.float32)
    if t <= 0.0 or (k > 0 and (t_last or t == 1.0)):
        # (nothing stored: an empty v, so a read-only l compiles)
        m = _pass_max_masked(l, words, np.empty(0, np.float32), bmax, False)
        if _invalid(m):
            return INVALID
        if t <= 0.0:  # greedy: the first maximum of the masked row
            return _first_max(l, bmax, m, words)
        tok = _cut_and_draw(l, bmax, m, k, p, pmin, mk, t, u, words)
        if tok != _NEED_DENSE:
            return tok
    v = np.empty(n, np.float32)
    m = _pass_max_masked(l, words, v, bmax, True)
    if _invalid(m):
        return INVALID
    t_draw = t
    if not t_last and t != 1.0:  # HF order: the truncations see float32(v / t)
        _apply_temperature(v, t, v)
        m = _pass_max(v, bmax)
        t_draw = 1.0
    return _cut_and_draw(v, bmax, m, k, p, pmin, mk, t_draw, u)


@numba.njit(cache=True, nogil=True)
def _cut_and_draw(v, bmax, m, k, p, pmin, mk, t_draw, u, words=None):
    """The chain's cut and the draw over ``v`` (valid, max ``m``, block maxima
    ``bmax``), with a last temperature ``t_draw``; ``words``: ``v`` read through a
    packed bitmask (``_NEED_DENSE`` when a pass needs the masked row written)."""
    n = v.shape[0]
    T, cL, cvals, cids, w = _cut(v, bmax, m, k, p, pmin, mk, words)
    if T != T:
        return _NEED_DENSE
    # The draw over {v >= T}; weights exp(l' - max l'), l' after a last temperature.
    mw = m
    if t_draw != 1.0:
        mw = np.float64(_temp(np.float32(m), t_draw))
    if cL <= T and cvals.shape[0] * 8 <= n:
        return _draw_cands(cvals, cids, T, mw, t_draw, u)
    if _hit_blocks(bmax, T) * _BS * 4 <= n:
        gv, gi = _gather(v, bmax, T, words)
        return _draw_cands(gv, gi, T, mw, t_draw, u)
    if words is not None:
        return _NEED_DENSE   # the blocked draw reads every token
    use_w = w.shape[0] == n and t_draw == 1.0
    return _draw_blocked(v, bmax, T, mw, t_draw, u, w, use_w)


@numba.njit(cache=True, nogil=True)
def _select_ge(vals, ids, T):
    """The entries ``vals >= T`` of candidates (ids stay ascending), compacted."""
    c = vals.shape[0]
    ov = np.empty(c, np.float32)
    oi = np.empty(c, np.int32)
    j = 0
    for a in range(c):
        x = vals[a]
        ov[j] = x
        oi[j] = ids[a]
        j += 1 if x >= T else 0
    return ov[:j], oi[:j]


@numba.njit(cache=True, nogil=True)
def _row_threshold(l, bmax, k, p, pmin, mk):
    """(invalid, T, cL, cvals, cids) of one row; fills ``bmax``. See ``_cut``."""
    m = _pass_max(l, bmax)
    if _invalid(m):
        return True, np.inf, np.inf, np.empty(0, np.float32), np.empty(0, np.int32)
    T, cL, cvals, cids, _ = _cut(l, bmax, m, k, p, pmin, mk)
    return False, T, cL, cvals, cids


@numba.njit(cache=True, nogil=True)
def _row_threshold_masked(l, words, v, bmax, k, p, pmin, mk):
    """``_row_threshold`` of the row under a packed bitmask: ``v`` receives the masked
    row (the row every later pass reads)."""
    m = _pass_max_masked(l, words, v, bmax)
    if _invalid(m):
        return True, np.inf, np.inf, np.empty(0, np.float32), np.empty(0, np.int32)
    T, cL, cvals, cids, _ = _cut(v, bmax, m, k, p, pmin, mk)
    return False, T, cL, cvals, cids


@numba.njit(cache=True, nogil=True)
def _truncate_one_masked(l, words, k, p, pmin, mk):
    """``_truncate_one`` under a packed bitmask row ``words``."""
    n = l.shape[0]
    bmax = np.empty((n + _BS - 1) // _BS, np.float32)
    v = np.empty(n, np.float32)
    bad, T, cL, cvals, cids = _row_threshold_masked(l, words, v, bmax, k, p, pmin, mk)
    if bad:
        return np.empty(0, np.int32), np.empty(0, np.float32), True
    if cL <= T:
        vals, ids = _select_ge(cvals, cids, T)
    else:
        vals, ids = _gather(v, bmax, T)
    return ids, vals, False


@numba.njit(cache=True, nogil=True)
def _truncate_one(l, k, p, pmin, mk):
    """(ids, vals, invalid): the candidate set of one row (``truncate_row``)."""
    bmax = np.empty((l.shape[0] + _BS - 1) // _BS, np.float32)
    bad, T, cL, cvals, cids = _row_threshold(l, bmax, k, p, pmin, mk)
    if bad:
        return np.empty(0, np.int32), np.empty(0, np.float32), True
    if cL <= T:
        vals, ids = _select_ge(cvals, cids, T)
    else:
        vals, ids = _gather(l, bmax, T)
    return ids, vals, False


# ---------------------------------------------------------------------------------
# rows


@numba.njit(cache=True, nogil=True)
def _sample_one(row, top_k, top_p, min_p, temperature, min_keep, t_last, seed, position):
    """One row's token: the draw's uniform from (seed, position), then the chain."""
    return _sample_row(row, top_k, top_p, min_p, min_keep, temperature, t_last,
                       uniform(seed, position, _STREAM_DRAW))


@numba.njit(cache=True, nogil=True)
def _sample_one_masked(row, words, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                       position):
    """``_sample_one`` under a packed bitmask row ``words``."""
    return _sample_row_masked(row, words, top_k, top_p, min_p, min_keep, temperature, t_last,
                              uniform(seed, position, _STREAM_DRAW))


@numba.njit(cache=True, nogil=True)
def _sample_masked_at(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                      position, bitmask, rows, out, b):
    r = rows[b]
    if r >= 0:
        out[b] = _sample_one_masked(logits[b], bitmask[r], top_k[b], top_p[b], min_p[b],
                                    temperature[b], min_keep[b], t_last, seed[b], position[b])
    else:
        out[b] = _sample_one(logits[b], top_k[b], top_p[b], min_p[b], temperature[b],
                             min_keep[b], t_last, seed[b], position[b])


@numba.njit(cache=True, nogil=True)
def _sample_masked_serial(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                          position, bitmask, rows, out):
    for b in range(logits.shape[0]):
        _sample_masked_at(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                          position, bitmask, rows, out, b)


@numba.njit(cache=True, nogil=True, parallel=True)
def _sample_masked_parallel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                            position, bitmask, rows, out):
    for b in prange(logits.shape[0]):
        _sample_masked_at(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                          position, bitmask, rows, out, b)


@numba.njit(cache=True, nogil=True)
def _sample_serial(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                   position, out):
    for b in range(logits.shape[0]):
        out[b] = _sample_one(logits[b], top_k[b], top_p[b], min_p[b], temperature[b],
                             min_keep[b], t_last, seed[b], position[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def _sample_parallel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                     position, out):
    for b in prange(logits.shape[0]):
        out[b] = _sample_one(logits[b], top_k[b], top_p[b], min_p[b], temperature[b],
                             min_keep[b], t_last, seed[b], position[b])


def sample_row(row, top_k, top_p, min_p, temperature, min_keep, temperature_last, seed,
               position, bitmask=None):
    """``sample_canonical`` of one row with scalar parameters: the per-token latency path.

    ``row``: float32 (V,), C-contiguous; ``top_k``, ``min_keep`` (>= 1): int; ``top_p``,
    ``min_p``, ``temperature``: float; ``seed``, ``position``: int in [0, 2**64);
    ``bitmask``: the row's packed bitmask words (uint32, >= ceil(V/32)) or None.
    Returns the token as an int, ``INVALID`` (-2) for an invalid row.
    """
    if bitmask is not None:
        return _sample_one_masked(
            row, bitmask, np.int64(top_k), np.float64(top_p), np.float64(min_p),
            np.float64(temperature), np.int64(min_keep), bool(temperature_last),
            np.uint64(seed), np.uint64(position))
    return _sample_one(row, np.int64(top_k), np.float64(top_p), np.float64(min_p),
                       np.float64(temperature), np.int64(min_keep), bool(temperature_last),
                       np.uint64(seed), np.uint64(position))


def sample_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
                     temperature_last, seed, position, bitmask=None, bitmask_rows=None):
    """Draw one token per row with the canonical chain of ``fs.sample``.

    Parameters
    ----------
    logits : float32 (B, V), C-contiguous. Not modified.
    top_k, min_keep : int64 (B,)      (min_keep >= 1)
    top_p, min_p, temperature : float64 (B,)
    temperature_last : bool           True: llama.cpp order; False: HF order.
    seed, position : uint64 (B,)
    bitmask : uint32 (R, W), optional  packed token bitmask (docs/spec.md §10), read in
                                      the first pass (``_pass_max_masked``)
    bitmask_rows : int64 (B,)         row b's bitmask row, -1 = none

    Returns
    -------
    numpy.ndarray of int32, shape (B,): identical to
    ``fs.sample(..., backend="numpy")`` (up to float64 rounding at a boundary);
    ``INVALID`` (-2) for a row with NaN, +inf or every logit masked (or every allowed
    one), so the caller needs no separate validation pass over the logits.
    """
    B = logits.shape[0]
    out = np.empty(B, np.int32)
    if B == 0:
        return out
    if bitmask is not None:
        args = (logits, top_k, top_p, min_p, temperature, min_keep, bool(temperature_last),
                seed, position, bitmask, bitmask_rows, out)
        (_sample_masked_serial if B == 1 else _sample_masked_parallel)(*args)
        return out
    args = (logits, top_k, top_p, min_p, temperature, min_keep, bool(temperature_last),
            seed, position, out)
    if B == 1:
        _sample_serial(*args)
    else:
        _sample_parallel(*args)
    return out


# ---------------------------------------------------------------------------------
# truncation (the candidate set, no draw)


@numba.njit(cache=True, nogil=True, parallel=True)
def _truncate_rows(logits, bitmask, rows, work, top_k, top_p, min_p, min_keep, bmaxs, thr, cnt,
                   bad, sids, svals):
    """Pass 1 over the rows: each row's threshold, its set's size, and the set itself
    in its stash row when it fits (else pass 2 gathers it again at the threshold). A
    row with a bitmask row (``rows[b] >= 0``) writes its masked row into ``work[b]`` in
    its first pass, and its later passes read that."""
    cap = sids.shape[1]
    for b in prange(logits.shape[0]):
        bmax = bmaxs[b]
        r = rows[b]
        if r >= 0:
            row = work[b]
            invalid, T, cL, cvals, cids = _row_threshold_masked(
                logits[b], bitmask[r], row, bmax, top_k[b], top_p[b], min_p[b], min_keep[b])
        else:
            row = logits[b]
            invalid, T, cL, cvals, cids = _row_threshold(row, bmax, top_k[b], top_p[b],
                                                         min_p[b], min_keep[b])
        bad[b] = invalid
        thr[b] = T
        c = 0
        if not invalid:
            if cL <= T:
                vals, ids = _select_ge(cvals, cids, T)
                c = ids.shape[0]
                if c <= cap:
                    sids[b, :c] = ids
                    svals[b, :c] = vals
            else:
                c = _count_ge(row, bmax, T)
                if c <= cap:
                    vals, ids = _gather(row, bmax, T)
                    sids[b, :c] = ids
                    svals[b, :c] = vals
        cnt[b] = c


@numba.njit(cache=True, nogil=True, parallel=True)
def _truncate_fill(logits, rows, work, bmaxs, thr, cnt, sids, svals, offsets, ids, vals):
    """Pass 2: every row's set into its slice of the concatenated output (a row too big
    for its stash gathered again, from its masked copy in ``work`` if it has one)."""
    cap = sids.shape[1]
    for b in prange(logits.shape[0]):
        c = cnt[b]
        o = offsets[b]
        if c <= cap:
            ids[o:o + c] = sids[b, :c]
            vals[o:o + c] = svals[b, :c]
        else:
            row = work[b] if rows[b] >= 0 else logits[b]
            gv, gi = _gather(row, bmaxs[b], thr[b])
            ids[o:o + c] = gi
            vals[o:o + c] = gv


def truncate_row(row, top_k, top_p, min_p, min_keep, bitmask=None):
    """``truncate_canonical`` of one row with scalar parameters (the per-token path).

    ``row``: float32 (V,), C-contiguous, not modified; ``top_k``, ``min_keep`` (>= 1):
    int; ``top_p``, ``min_p``: float. Returns ``(ids, vals, invalid)``: int32 ids
    ascending, float32 ``vals = row[ids]``, and a bool, True (with no candidates) for
    a row with NaN, +inf or every logit masked. ``bitmask``: the row's packed bitmask
    words (uint32), read in the first pass, or None.
    """
    if bitmask is not None:
        ids, vals, invalid = _truncate_one_masked(row, bitmask, np.int64(top_k),
                                                  np.float64(top_p), np.float64(min_p),
                                                  np.int64(min_keep))
        return ids, vals, bool(invalid)
    ids, vals, invalid = _truncate_one(row, np.int64(top_k), np.float64(top_p),
                                       np.float64(min_p), np.int64(min_keep))
    return ids, vals, bool(invalid)


def truncate_canonical(logits, top_k, top_p, min_p, min_keep, bitmask=None, bitmask_rows=None):
    """The candidate set of every row after TopK -> TopP -> MinP (no draw).

    Row b's set is exactly the finite entries of ``reference.min_p(reference.top_p(
    reference.top_k(x, k, mk), p, mk), pmin, mk)``; disabled stages (k <= 0, p >= 1,
    pmin <= 0) are skipped, so with all three disabled it is every finite token.

    Parameters
    ----------
    logits : float32 (B, V), C-contiguous. Not modified.
    top_k, min_keep : int64 (B,)      (min_keep >= 1)
    top_p, min_p : float64 (B,)
    bitmask, bitmask_rows : optional   a packed token bitmask (uint32 (R, W)) and each
                                       row's bitmask row (int64 (B,), -1 = none), read
                                       in the first pass

    Returns
    -------
    ids : int32 (N,)        token ids, ascending within a row
    vals : float32 (N,)     ``logits[b, ids]``
    offsets : int64 (B + 1,) row b is ``[offsets[b], offsets[b + 1])``
    invalid : bool (B,)     True for a row with NaN, +inf or every logit masked (no
                            candidates for it)
    """
    B, V = logits.shape
    if bitmask is not None and B == 1:
        r = int(bitmask_rows[0])
        bitmask = bitmask[r] if r >= 0 else None
    if B == 1 and bitmask is not None:
        ids, vals, bad = _truncate_one_masked(logits[0], bitmask, top_k[0], top_p[0], min_p[0],
                                              min_keep[0])
        return (np.ascontiguousarray(ids), np.ascontiguousarray(vals),
                np.array([0, ids.shape[0]], np.int64), np.array([bad]))
    if B == 1:
        ids, vals, bad = _truncate_one(logits[0], top_k[0], top_p[0], min_p[0], min_keep[0])
        return (np.ascontiguousarray(ids), np.ascontiguousarray(vals),
                np.array([0, ids.shape[0]], np.int64), np.array([bad]))
    bmaxs = np.empty((B, (V + _BS - 1) // _BS), np.float32)
    thr = np.empty(B, np.float64)
    cnt = np.empty(B, np.int64)
    bad = np.empty(B, np.bool_)
    cap = min(V, _STASH)
    sids = np.empty((B, cap), np.int32)
    svals = np.empty((B, cap), np.float32)
    if bitmask is not None:   # constrained rows: masked copies, written by their first pass
        work = np.empty((B, V), np.float32)
        rows = np.ascontiguousarray(bitmask_rows, dtype=np.int64)
    else:                     # no row constrained: the same kernels, never reading these
        bitmask, work, rows = _NO_WORDS, _NO_WORK, np.full(B, -1, np.int64)
    if B:
        _truncate_rows(logits, bitmask, rows, work, top_k, top_p, min_p, min_keep, bmaxs, thr,
                       cnt, bad, sids, svals)
    offsets = np.zeros(B + 1, np.int64)
    np.cumsum(cnt, out=offsets[1:])
    ids = np.empty(offsets[-1], np.int32)
    vals = np.empty(offsets[-1], np.float32)
    if B:
        _truncate_fill(logits, rows, work, bmaxs, thr, cnt, sids, svals, offsets, ids, vals)
    return ids, vals, offsets, bad
