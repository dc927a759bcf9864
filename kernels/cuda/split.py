"""The canonical chain with each row's vocabulary split across blocks (small batches).

One block per row leaves most of a GPU idle when B is small, so here a row is cut
into ``S = ceil(V / CHUNK)`` chunks and block ``(c, b)`` owns chunk ``c`` of row
``b``. The chunks are fixed by V alone, and every float64 sum is computed exactly as
the one-block kernels of ``canonical.py`` compute it (a chunk's partial by the same
device function, then the partials in chunk order), so a row's token and processed
logits are bit-identical on both paths and never depend on B.

Blocks of one launch cannot wait on each other, so the phases are separate launches
on the caller's stream (no host sync between them):

====================  =====================================================
phase                 each block, on its chunk
====================  =====================================================
scan (1 launch)       max, NaN/+inf flag, finite count, first index of the
                      chunk's max; zeroes the row's global counters
count (4)             8-bit digit histograms of G(max(k, min_keep)) and
                      G(min_keep) (shared counts, then global integer atomics)
mass (8)              4-bit digit mass bins of TopP (per-chunk float64 partials
                      in global memory) and counts; W is pass 0's bins
xtc (3)               XTC (``xtc.py``): the survivors' mass, then the count
                      above the threshold and its smallest p, then the largest
                      value XTC keeps (with its first index) and the count kept
final (1)             the draw's chunk and slice sums, or the processed logits
draw (1, B blocks)    the walk of docs/spec.md §5 (``canonical.finish_draw``)
====================  =====================================================

A launch starts by deciding the previous pass's digit from the global histograms
(``_row_state``); every block of the row does it alike (deterministic), and block 0
of the row stores the result in a slot that only later launches read, so no block
reads what another block of the same launch writes. The first launch after the
selects (the first XTC pass, or the final one) decides the cut ``T`` and stores it.
The select passes run to the end (no lone-key exit: it gives the same key, see
``block.radix_kth``). Counting, mass or XTC launches are left out when the host
parameters show no row needs them.
"""

from __future__ import annotations

import numpy as np
from numba import cuda, float32, float64, int32, int64

from ...rng import STREAM_DRAW
from ..shared import uniform
from . import transfer
from .block import (
    MASS_BINS,
    RADIX_BINS,
    bins_total,
    count_keys,
    fixed_bits,
    key_value,
    kth_digit,
    mass_bins_chunk,
    mass_digit,
    max_i32,
    stage_value,
)
from .canonical import (
    GREEDY,
    GREEDY_AFTER_XTC,
    INVALID,
    NEG,
    TOL,
    chunk_slices,
    cuts,
    finish_draw,
    first_index,
    scan_chunk,
    temperatures,
    write_chunk,
)
from .target import CHUNK, TPB
from .xtc import INF, xtc_above, xtc_cuts, xtc_rolls, xtc_upper

__all__ = ["carve", "chunks", "draw_kernel", "phase_kernel", "process_kernel",
           "process_split", "sample_split", "stages_needed"]

# phases (the ``phase`` argument of ``phase_kernel``)
SCAN = 0
COUNT0 = 1            # count pass d: COUNT0 + d, d < 4
MASS0 = 5             # mass pass d: MASS0 + d, d < 8
XTC_W = 13            # XTC: the survivors' mass (chunk sums)
XTC_ABOVE = 14        # XTC: count above the threshold, smallest p
XTC_UPPER = 15        # XTC: largest kept value, its first index, count kept
FINAL = 16
_KPASSES = 4
_MPASSES = 8

# pi32 (B, _NI32, S) rows
_BAD, _NF, _FIRST, _LAST, _XA, _XN, _XF = range(7)
_NI32 = 7
# pf64 (B, _NF64, S) rows: draw chunk sums, XTC mass / smallest p / top, mass bins
_CS, _XW, _XP, _XH, _MB = 0, 1, 2, 3, 4
_NF64 = _MB + _MPASSES * MASS_BINS
# cnt (B, _NCNT) int32: count histograms (select, pass), then mass counts (pass)
_MC = 2 * _KPASSES * RADIX_BINS
_NCNT = _MC + _MPASSES * MASS_BINS
# si (B, _NSI) int64: count state before pass d (select s: (s*5 + d)*2: prefix,
# rank), mass state before pass d (_MS + 2d: prefix, found), final status, first
_MS = 2 * 5 * 2
_STATUS = _MS + 2 * (_MPASSES + 1)
_FIRSTI = _STATUS + 1
_NSI = _FIRSTI + 1
# sf (B, _NSF) float64: mass "above" before pass d at [d], then the cuts
_TK = _MPASSES + 1
_GMK, _T, _TPRE, _TDRAW, _MDRAW, _TGT, _XU, _XG = (_TK + i for i in range(1, 9))
_NSF = _XG + 1

# what ``_row_state`` returns in its shared arrays: ri (int64) and rf (float64)
R_STATUS, R_FIRST, R_NEED, R_MP, R_MFOUND, R_XON, R_NABOVE = range(7)
R_TPRE, R_TDRAW, R_M, R_TK, R_GMK, R_T, R_XU, R_XG, R_MDRAW, R_W, R_PMIN = range(11)


@cuda.jit(device=True)
def _xtc_state(prev, b, S, mk, m, g_mk, pi32, pf64, rf, ri):
    """Thread 0: XTC's results so far for row b (XTC acts on it), from the per-chunk
    slots of the XTC passes that ran before ``phase``, into ``rf``/``ri`` (W, smallest
    p, count above; at the final phase the hole, the draw's max, and the first index of
    the largest kept value in ``ri[R_FIRST]`` when that is not the row max)."""
    if prev < XTC_W:   # no XTC pass ran before this launch
        return
    W = 0.0
    for cc in range(S):   # chunk sums in chunk order: the one-block order
        W += pf64[b, _XW, cc]
    rf[R_W] = W
    if prev < XTC_ABOVE:
        return
    n_above = 0
    pmin = INF
    for cc in range(S):
        n_above += pi32[b, _XA, cc]
        pmin = min(pmin, pf64[b, _XP, cc])
    ri[R_NABOVE] = n_above
    rf[R_PMIN] = pmin
    if prev < XTC_UPPER or n_above < 2:
        return
    top = -np.inf
    n_low = 0
    for cc in range(S):
        top = max(top, pf64[b, _XH, cc])
        n_low += pi32[b, _XN, cc]
    xu, xg, m_draw = xtc_cuts(n_above, float32(top), n_low, mk, g_mk, m)
    rf[R_XU] = xu
    rf[R_XG] = xg
    rf[R_MDRAW] = m_draw
    if m_draw != m:   # the first chunk holding the top has its first index
        for cc in range(S):
            if pf64[b, _XH, cc] == top:
                ri[R_FIRST] = pi32[b, _XF, cc]
                break


@cuda.jit(device=True)
def _row_state(phase, prev, b, c, row, k, p, pmin, mk, t, t_last, xp, xt, seed, position,
               pf32, pi32, pf64, cnt, si, sf):
    """Everything the launch of ``phase`` needs about row ``b``, after ``prev`` ran:
    ``(ri, rf, kp, kr)``, shared arrays read with the ``R_*`` indices.

    ``ri``: status (the final phase resolves a greedy row after XTC to 1 with its
    token in ``first``), first, ``need`` (bit 0 G(max(k, min_keep)) is selected,
    bit 1 G(min_keep), bit 2 TopP's mass select), the mass select's prefix before this
    pass and 0 if it stopped (the survivors' mass falls short), whether XTC acts on
    the row, its count above the threshold. ``rf``: t_pre, t_draw, m, T_k, g_mk, the
    cut T (from the first launch after the selects on), XTC's hole ``xu``/``xg``, the
    draw's max, XTC's W and smallest p. ``kp``/``kr``: (2,), the count selects' prefix
    and rank before this pass. Thread 0 decides, block ``c == 0`` stores what later
    launches read. Called once per kernel by every thread (it declares the shared
    arrays).
    """
    hk = cuda.shared.array((2, RADIX_BINS), int32)
    ri = cuda.shared.array(8, int64)
    rf = cuda.shared.array(12, float64)
    kp = cuda.shared.array(2, int64)
    kr = cuda.shared.array(2, int64)
    tot = cuda.local.array(MASS_BINS, float64)
    tid = cuda.threadIdx.x
    S = pf32.shape[1]
    kd = -1   # the count pass whose digit is decided now
    if COUNT0 < phase < MASS0:
        kd = phase - COUNT0 - 1
    elif phase >= MASS0 and prev == COUNT0 + _KPASSES - 1:
        kd = _KPASSES - 1
    if kd >= 0:
        for s in range(tid, 2 * RADIX_BINS, TPB):
            sel = s // RADIX_BINS
            hk[sel, s % RADIX_BINS] = cnt[b, (sel * _KPASSES + kd) * RADIX_BINS
                                          + s % RADIX_BINS]
    cuda.syncthreads()
    if tid == 0:
        m32 = float32(-np.inf)
        bad = 0
        nf = 0
        for cc in range(S):
            m32 = max(m32, pf32[b, cc])
            bad = max(bad, pi32[b, _BAD, cc])
            nf += pi32[b, _NF, cc]
        xon = xtc_rolls(xp, xt, seed, position)
        status = 0
        first = -1
        if bad != 0 or nf == 0:
            status = INVALID
        elif t <= 0.0:
            status = GREEDY_AFTER_XTC if xon and t_last else GREEDY
            for cc in range(S):   # the first chunk holding the max has its first index
                if pf32[b, cc] == m32:
                    first = pi32[b, _FIRST, cc]
                    break
        cutting = status == 0 or status == GREEDY_AFTER_XTC
        xon = xon and cutting
        t_pre, t_draw = temperatures(t, t_last)
        m = np.float64(m32)   # (a greedy row in HF order has t_pre <= 0)
        if cutting:
            m = np.float64(stage_value(m32, t_pre))
        j1 = max(k, mk)
        need = 0
        if cutting:
            if k > 0 and j1 < nf:
                need |= 1
            if mk > 1 and (p < 1.0 or pmin > 0.0 or xon) and mk < nf:
                need |= 2
            if p < 1.0 and p - TOL > 0.0:
                need |= 4
        # the count selects
        T_k = NEG
        g_mk = NEG
        for sel in range(2):
            kp[sel] = 0
            kr[sel] = j1 if sel == 0 else mk
            if need & (1 << sel) and kd >= 0:
                if kd > 0:
                    kp[sel] = si[b, (sel * 5 + kd) * 2]
                    kr[sel] = si[b, (sel * 5 + kd) * 2 + 1]
                chosen, rem, _count = kth_digit(hk[sel], kr[sel])
                kp[sel] |= np.int64(chosen) << (24 - 8 * kd)
                kr[sel] = rem
                if c == 0 and kd < _KPASSES - 1:
                    si[b, (sel * 5 + kd + 1) * 2] = kp[sel]
                    si[b, (sel * 5 + kd + 1) * 2 + 1] = kr[sel]
        if phase >= MASS0:
            if kd >= 0:   # the count selects ended with the previous launch
                if need & 1:
                    T_k = key_value(kp[0])
                if need & 2:
                    g_mk = key_value(kp[1])
                if c == 0:
                    sf[b, _TK] = T_k
                    sf[b, _GMK] = g_mk
            elif prev >= MASS0:
                T_k = sf[b, _TK]
                g_mk = sf[b, _GMK]
            elif c == 0:   # no count launch ran: no row needs a count select
                sf[b, _TK] = T_k
                sf[b, _GMK] = g_mk
        # the mass select: decide the digit of pass dm - 1
        dm = 0
        if phase >= XTC_W:   # the selects ended (-1: no mass launch ran)
            dm = _MPASSES if prev == MASS0 + _MPASSES - 1 else -1
        elif phase >= MASS0:
            dm = phase - MASS0
        mp = np.int64(0)
        mfound = 1 if dm >= 0 else 0
        if need & 4 and dm >= 1:
            above = 0.0
            target = 0.0
            if dm > 1:
                mp = si[b, _MS + 2 * (dm - 1)]
                mfound = si[b, _MS + 2 * (dm - 1) + 1]
                above = sf[b, dm - 1]
                target = sf[b, _TGT]
            if mfound:
                for bb in range(MASS_BINS):   # chunk partials in chunk order
                    acc = 0.0
                    for cc in range(S):
                        acc += pf64[b, _MB + (dm - 1) * MASS_BINS + bb, cc]
                    tot[bb] = acc
                if dm == 1:
                    target = (p - TOL) * bins_total(tot)
                    if c == 0:
                        sf[b, _TGT] = target
                chosen, ok, above = mass_digit(
                    dm - 1, above, target, tot,
                    cnt[b, _MC + (dm - 1) * MASS_BINS:_MC + dm * MASS_BINS])
                mp |= np.int64(chosen) << (28 - 4 * (dm - 1))
                mfound = ok
            if c == 0 and dm < _MPASSES:
                si[b, _MS + 2 * dm] = mp
                si[b, _MS + 2 * dm + 1] = mfound
                sf[b, dm] = above
        T = NEG
        if phase >= XTC_W:
            if prev < XTC_W:   # the first launch after the selects: the cut
                if cutting:
                    T = cuts(m, p, pmin, mk, T_k, mfound, mp, g_mk)
                if c == 0:
                    sf[b, _T] = T
            else:
                T = sf[b, _T]
        ri[R_FIRST] = first
        rf[R_XU] = INF
        rf[R_XG] = INF
        rf[R_MDRAW] = m
        ri[R_NABOVE] = 0
        if xon:
            _xtc_state(prev, b, S, mk, m, g_mk, pi32, pf64, rf, ri)
        if phase == FINAL:
            if status == GREEDY_AFTER_XTC:
                status = GREEDY
            if c == 0:
                si[b, _STATUS] = status
                si[b, _FIRSTI] = ri[R_FIRST]
                sf[b, _T] = T
                sf[b, _TPRE] = t_pre
                sf[b, _TDRAW] = t_draw
                sf[b, _MDRAW] = rf[R_MDRAW]
                sf[b, _XU] = rf[R_XU]
                sf[b, _XG] = rf[R_XG]
        ri[R_STATUS] = status
        ri[R_NEED] = need
        ri[R_MP] = mp
        ri[R_MFOUND] = mfound
        ri[R_XON] = xon
        rf[R_TPRE] = t_pre
        rf[R_TDRAW] = t_draw
        rf[R_M] = m
        rf[R_TK] = T_k
        rf[R_GMK] = g_mk
        rf[R_T] = T
    cuda.syncthreads()
    return ri, rf, kp, kr


@cuda.jit(cache=True)
def phase_kernel(phase, prev, logits, top_k, top_p, min_p, temperature, min_keep,
                 t_last, xtc_p, xtc_t, seed, position, pf32, pi32, pf64, cnt, si, sf):
    """One phase of the split chain; grid ``(S, B)``, block ``(c, b)`` = chunk c of row b.
    ``prev``: the phase launched before this one (the scan, when none)."""
    sh_f32 = cuda.shared.array(TPB, float32)
    sh_i32 = cuda.shared.array(TPB, int32)
    sh_f64 = cuda.shared.array(TPB, float64)
    sl = cuda.shared.array(TPB, float64)
    hist = cuda.shared.array(RADIX_BINS, int32)
    red = cuda.shared.array((MASS_BINS, TPB), float64)
    mc = cuda.shared.array(MASS_BINS, int32)
    mt = cuda.shared.array(MASS_BINS, float64)
    bins = cuda.local.array(MASS_BINS, float64)
    tid = cuda.threadIdx.x
    c = cuda.blockIdx.x
    b = cuda.blockIdx.y
    row = logits[b]
    n = row.shape[0]
    lo = c * CHUNK
    hi = min(lo + CHUNK, n)
    if phase == SCAN:
        m, bad, nf = scan_chunk(row, lo, hi, sh_f32, sh_i32)
        first = first_index(row, lo, hi, m, sh_i32)
        if tid == 0:
            pf32[b, c] = m
            pi32[b, _BAD, c] = bad
            pi32[b, _NF, c] = nf
            pi32[b, _FIRST, c] = first
        for s in range(c * TPB + tid, _NCNT, pf32.shape[1] * TPB):
            cnt[b, s] = 0
        return
    k = top_k[b]
    mk = min_keep[b]
    ri, rf, kp, _kr = _row_state(
        phase, prev, b, c, row, k, top_p[b], min_p[b], mk, temperature[b], t_last,
        xtc_p[b], xtc_t[b], seed[b], position[b], pf32, pi32, pf64, cnt, si, sf)
    status = ri[R_STATUS]
    if status != 0 and status != GREEDY_AFTER_XTC:
        return
    need = ri[R_NEED]
    t_pre = rf[R_TPRE]
    m = rf[R_M]
    T = rf[R_T]
    if phase < MASS0:
        d = phase - COUNT0
        for sel in range(2):
            if need & (1 << sel):
                for bb in range(tid, RADIX_BINS, TPB):
                    hist[bb] = 0
                cuda.syncthreads()
                count_keys(row, lo, hi, t_pre, False, kp[sel], fixed_bits(d, 8), 24 - 8 * d,
                           hist)
                cuda.syncthreads()
                base = (sel * _KPASSES + d) * RADIX_BINS
                for bb in range(tid, RADIX_BINS, TPB):
                    if hist[bb] != 0:
                        cuda.atomic.add(cnt, (b, base + bb), hist[bb])
                cuda.syncthreads()
    elif phase < XTC_W:
        d = phase - MASS0
        if need & 4 and ri[R_MFOUND]:
            for bb in range(tid, MASS_BINS, TPB):
                mc[bb] = 0
                mt[bb] = 0.0
            cuda.syncthreads()
            mass_bins_chunk(row, lo, hi, t_pre, rf[R_TK], m, ri[R_MP], fixed_bits(d, 4),
                            28 - 4 * d, bins, red, mc, mt)
            for bb in range(tid, MASS_BINS, TPB):
                pf64[b, _MB + d * MASS_BINS + bb, c] = mt[bb]
                if mc[bb] != 0:
                    cuda.atomic.add(cnt, (b, _MC + d * MASS_BINS + bb), mc[bb])
    elif phase < FINAL:   # the XTC passes, for a row that XTC acts on
        if ri[R_XON] == 0:
            return
        if phase == XTC_W:
            total, _last = chunk_slices(row, lo, hi, T, INF, INF, t_pre, 1.0, m, sl, sh_f64)
            if tid == 0:
                pf64[b, _XW, c] = total
        elif phase == XTC_ABOVE:
            n_above, pm = xtc_above(row, lo, hi, T, t_pre, m, rf[R_W], xtc_t[b], sh_f64,
                                    sh_i32)
            if tid == 0:
                pi32[b, _XA, c] = n_above
                pf64[b, _XP, c] = pm
        elif ri[R_NABOVE] >= 2:
            top, n_low = xtc_upper(row, lo, hi, T, t_pre, m, rf[R_W], rf[R_PMIN], sh_f32,
                                   sh_i32)
            first = -1
            if status == GREEDY_AFTER_XTC:   # t_pre = 1: values are the logits
                first = first_index(row, lo, hi, top, sh_i32)
            if tid == 0:
                pf64[b, _XH, c] = top
                pi32[b, _XN, c] = n_low
                pi32[b, _XF, c] = first
    else:   # the final phase of a draw: this chunk's sums
        t_draw = rf[R_TDRAW]
        mw = np.float64(stage_value(np.float32(rf[R_MDRAW]), t_draw))
        total, last = chunk_slices(row, lo, hi, T, rf[R_XU], rf[R_XG], t_pre, t_draw, mw,
                                   sl, sh_f64)
        last = max_i32(last, sh_i32)
        if tid == 0:
            pf64[b, _CS, c] = total
            pi32[b, _LAST, c] = last


@cuda.jit(cache=True)
def draw_kernel(logits, seed, position, pi32, pf64, si, sf, out):
    """The walk of spec §5, one block per row, after the final phase."""
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    sl = cuda.shared.array(TPB, float64)
    b = cuda.blockIdx.x
    status = si[b, _STATUS]
    if status != 0:
        tok = INVALID if status == INVALID else si[b, _FIRSTI]
    else:
        last = -1
        for c in range(pi32.shape[2]):
            last = max(last, pi32[b, _LAST, c])
        t_draw = sf[b, _TDRAW]
        mw = np.float64(stage_value(np.float32(sf[b, _MDRAW]), t_draw))
        u = uniform(seed[b], position[b], STREAM_DRAW)
        tok = finish_draw(logits[b], pf64[b, _CS], last, sf[b, _T], sf[b, _XU], sf[b, _XG],
                          sf[b, _TPRE], t_draw, mw, u, sl, sh_f64, sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = tok


@cuda.jit(cache=True)
def process_kernel(prev, logits, top_k, top_p, min_p, temperature, min_keep, t_last,
                   xtc_p, xtc_t, seed, position, pf32, pi32, pf64, cnt, si, sf, out,
                   status_out):
    """The final phase of ``process``: block ``(c, b)`` writes chunk c of row b."""
    c = cuda.blockIdx.x
    b = cuda.blockIdx.y
    row = logits[b]
    ri, rf, _kp, _kr = _row_state(
        FINAL, prev, b, c, row, top_k[b], top_p[b], min_p[b], min_keep[b], temperature[b],
        t_last, xtc_p[b], xtc_t[b], seed[b], position[b], pf32, pi32, pf64, cnt, si, sf)
    status = ri[R_STATUS]
    lo = c * CHUNK
    write_chunk(row, out[b], lo, min(lo + CHUNK, row.shape[0]), status, ri[R_FIRST],
                rf[R_T], rf[R_XU], rf[R_XG], rf[R_TPRE], rf[R_TDRAW])
    if c == 0 and cuda.threadIdx.x == 0:
        status_out[b] = INVALID if status == INVALID else 0


def _known(v):
    """A host parameter as numpy, or None for a device array (its values would need a
    copy to the host, which the device path never waits for)."""
    return None if transfer.is_device(v) else np.asarray(v)


def stages_needed(top_k, top_p, min_p, min_keep, xtc_p=0.0, xtc_t=1.0):
    """``(count, mass, xtc)``: whether any row may need the count selects (TopK or a
    ``min_keep`` floor), TopP's mass select, or the XTC passes (``xtc_p``/``xtc_t``:
    XTC's probability and threshold). Device parameters: assumed needed."""
    k, p, mp, mk, xp, xt = (_known(v) for v in (top_k, top_p, min_p, min_keep, xtc_p, xtc_t))
    xtc = True if xp is None or xt is None else bool(np.any((xp > 0.0) & (xt <= 0.5)))
    if k is None or p is None or mp is None or mk is None:
        return True, True, xtc
    floor = (mk > 1) & ((p < 1.0) | (mp > 0.0) | xtc)
    return (bool(np.any(k > 0) or np.any(floor)), bool(np.any((p < 1.0) & (p - TOL > 0.0))),
            xtc)


def chunks(V):
    """Chunks per row of V ids."""
    return -(-V // CHUNK)


def carve(*specs, stream=0):
    """Device arrays of the given ``(shape, dtype)`` pairs, carved out of one
    allocation (one ``cudaMalloc`` per call instead of one per array; 8-byte aligned)."""
    sizes = [int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in specs]
    offsets = np.cumsum([0] + [-(-n // 8) * 8 for n in sizes])
    buf = cuda.device_array(int(offsets[-1]), np.uint8, stream=stream)
    return [buf[o:o + n].view(dt).reshape(shape)
            for o, n, (shape, dt) in zip(offsets, sizes, specs)]


def _cuts(x, params, t_last, xtc, seed, position, needed, extra, stream):
    """Allocate the per-row state (and the ``extra`` ``(shape, dtype)`` arrays, in the
    same allocation) and launch every phase before the final one. Returns ``(grid,
    args, prev, state)``: the phase kernels' grid and arguments, the last phase
    launched, and the state arrays ``(pf32, pi32, pf64, cnt, si, sf, *extra)``."""
    B, V = x.shape
    S = chunks(V)
    state = carve(((B, S), np.float32), ((B, _NI32, S), np.int32),
                  ((B, _NF64, S), np.float64), ((B, _NCNT), np.int32),
                  ((B, _NSI), np.int64), ((B, _NSF), np.float64), *extra, stream=stream)
    args = (x, *params, bool(t_last), *xtc, seed, position, *state[:6])
    grid = (S, B)
    count, mass, with_xtc = needed
    phases = [SCAN]
    if count:
        phases += [COUNT0 + d for d in range(_KPASSES)]
    if mass:
        phases += [MASS0 + d for d in range(_MPASSES)]
    if with_xtc:
        phases += [XTC_W, XTC_ABOVE, XTC_UPPER]
    prev = SCAN
    for ph in phases:
        phase_kernel[grid, TPB, stream](ph, prev, *args)
        prev = ph
    return grid, args, prev, state


def sample_split(x, params, t_last, xtc, seed, position, needed=(True, True, True),
                 stream=0):
    """Tokens of the canonical chain, int32 (B,) device (-2: invalid row), split path.

    ``x``: float32 (B, V) device rows, B >= 1; ``params``: device ``(top_k, top_p,
    min_p, temperature, min_keep)``; ``xtc``: device ``(probability, threshold)``
    (probability 0: no XTC); ``seed``, ``position``: device uint64 (B,); ``needed``:
    ``stages_needed``'s answer (False only when no row needs those launches)."""
    B = x.shape[0]
    grid, args, prev, state = _cuts(x, params, t_last, xtc, seed, position, needed,
                                    (((B,), np.int32),), stream)
    phase_kernel[grid, TPB, stream](FINAL, prev, *args)
    _pf32, pi32, pf64, _cnt, si, sf, out = state
    draw_kernel[B, TPB, stream](x, seed, position, pi32, pf64, si, sf, out)
    return out


def process_split(x, params, t_last, xtc, seed, position, out, status,
                  needed=(True, True, True), stream=0):
    """The processed logits into ``out`` (float32 (B, V) device) and the row status
    into ``status`` (int32 (B,), -2 invalid), split path (arguments as
    ``sample_split``)."""
    grid, args, prev, _ = _cuts(x, params, t_last, xtc, seed, position, needed, (), stream)
    process_kernel[grid, TPB, stream](prev, *args, out, status)
    return out
