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
final (1)             the draw's chunk and slice sums, or the processed logits
draw (1, B blocks)    the walk of SPEC §5 (``canonical.finish_draw``)
====================  =====================================================

A launch starts by deciding the previous pass's digit from the global histograms
(``_row_state``); every block of the row does it alike (deterministic), and block 0
of the row stores the result in a slot that only later launches read, so no block
reads what another block of the same launch writes. The select passes run to the
end (no lone-key exit: it gives the same key, see ``block.radix_kth``). Counting or
mass launches are left out when the host parameters show no row needs them.
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

__all__ = ["carve", "chunks", "draw_kernel", "phase_kernel", "process_kernel",
           "process_split", "sample_split", "stages_needed"]

# phases (the ``phase`` argument of ``phase_kernel``)
SCAN = 0
COUNT0 = 1            # count pass d: COUNT0 + d, d < 4
MASS0 = 5             # mass pass d: MASS0 + d, d < 8
FINAL = 13
_KPASSES = 4
_MPASSES = 8

# pi32 (B, 4, S) rows
_BAD, _NF, _FIRST, _LAST = 0, 1, 2, 3
# pf64 (B, 1 + 8 * MASS_BINS, S) rows: draw chunk sums, mass bins
_CS, _MB = 0, 1
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
_GMK, _T, _TPRE, _TDRAW, _M, _TGT = (_TK + i for i in range(1, 7))
_NSF = _TGT + 1


@cuda.jit(device=True)
def _row_state(phase, prev, b, c, row, k, p, pmin, mk, t, t_last, pf32, pi32, pf64,
               cnt, si, sf):
    """Everything the launch of ``phase`` needs about row ``b``, after ``prev`` ran:
    ``(status, first, t_pre, t_draw, m, T_k, g_mk, T, need, kp, kr, mp, mfound)``.

    ``need``: bit 0 G(max(k, min_keep)) is selected, bit 1 G(min_keep), bit 2 TopP's
    mass select. ``kp``/``kr``: (2,) shared, the count selects' prefix and rank before
    this pass; ``mp``/``mfound``: the mass select's prefix before this pass, and 0 if
    it stopped (the survivors' mass falls short). ``T``: the final cut (final phase).
    Thread 0 decides, block ``c == 0`` stores what later launches read. Called once
    per kernel by every thread (it declares the shared arrays).
    """
    hk = cuda.shared.array((2, RADIX_BINS), int32)
    st_i = cuda.shared.array(8, int64)
    st_f = cuda.shared.array(8, float64)
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
        status = 0
        first = -1
        if bad != 0 or nf == 0:
            status = INVALID
        elif t <= 0.0:
            status = 1
            for cc in range(S):   # the first chunk holding the max has its first index
                if pf32[b, cc] == m32:
                    first = pi32[b, _FIRST, cc]
                    break
        t_pre, t_draw = temperatures(t, t_last)
        m = np.float64(stage_value(m32, t_pre))
        j1 = max(k, mk)
        need = 0
        if status == 0:
            if k > 0 and j1 < nf:
                need |= 1
            if mk > 1 and (p < 1.0 or pmin > 0.0) and mk < nf:
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
        if phase == FINAL:
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
        if phase == FINAL:
            if status == 0:
                T = cuts(m, p, pmin, mk, T_k, mfound, mp, g_mk)
            if c == 0:
                si[b, _STATUS] = status
                si[b, _FIRSTI] = first
                sf[b, _T] = T
                sf[b, _TPRE] = t_pre
                sf[b, _TDRAW] = t_draw
                sf[b, _M] = m
        st_i[0] = status
        st_i[1] = first
        st_i[2] = need
        st_i[3] = mp
        st_i[4] = mfound
        st_f[0] = t_pre
        st_f[1] = t_draw
        st_f[2] = m
        st_f[3] = T_k
        st_f[4] = g_mk
        st_f[5] = T
    cuda.syncthreads()
    return (st_i[0], st_i[1], st_f[0], st_f[1], st_f[2], st_f[3], st_f[4], st_f[5],
            st_i[2], kp, kr, st_i[3], st_i[4])


@cuda.jit(cache=True)
def phase_kernel(phase, prev, logits, top_k, top_p, min_p, temperature, min_keep,
                 t_last, pf32, pi32, pf64, cnt, si, sf):
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
    status, _first, t_pre, t_draw, m, T_k, _g, T, need, kp, _kr, mp, mfound = _row_state(
        phase, prev, b, c, row, k, top_p[b], min_p[b], mk, temperature[b], t_last,
        pf32, pi32, pf64, cnt, si, sf)
    if status != 0:
        return
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
    elif phase < FINAL:
        d = phase - MASS0
        if need & 4 and mfound:
            for bb in range(tid, MASS_BINS, TPB):
                mc[bb] = 0
                mt[bb] = 0.0
            cuda.syncthreads()
            mass_bins_chunk(row, lo, hi, t_pre, T_k, m, mp, fixed_bits(d, 4), 28 - 4 * d,
                            bins, red, mc, mt)
            for bb in range(tid, MASS_BINS, TPB):
                pf64[b, _MB + d * MASS_BINS + bb, c] = mt[bb]
                if mc[bb] != 0:
                    cuda.atomic.add(cnt, (b, _MC + d * MASS_BINS + bb), mc[bb])
    else:   # the final phase of a draw: this chunk's sums
        mw = np.float64(stage_value(np.float32(m), t_draw))
        total, last = chunk_slices(row, lo, hi, T, t_pre, t_draw, mw, sl, sh_f64)
        last = max_i32(last, sh_i32)
        if tid == 0:
            pf64[b, _CS, c] = total
            pi32[b, _LAST, c] = last


@cuda.jit(cache=True)
def draw_kernel(logits, seed, position, pi32, pf64, si, sf, out):
    """The walk of SPEC §5, one block per row, after the final phase."""
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
        mw = np.float64(stage_value(np.float32(sf[b, _M]), t_draw))
        u = uniform(seed[b], position[b], STREAM_DRAW)
        tok = finish_draw(logits[b], pf64[b, _CS], last, sf[b, _T], sf[b, _TPRE], t_draw,
                          mw, u, sl, sh_f64, sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = tok


@cuda.jit(cache=True)
def process_kernel(prev, logits, top_k, top_p, min_p, temperature, min_keep, t_last,
                   pf32, pi32, pf64, cnt, si, sf, out, status_out):
    """The final phase of ``process``: block ``(c, b)`` writes chunk c of row b."""
    c = cuda.blockIdx.x
    b = cuda.blockIdx.y
    row = logits[b]
    status, first, t_pre, t_draw, _m, _tk, _g, T, _need, _kp, _kr, _mp, _mf = _row_state(
        FINAL, prev, b, c, row, top_k[b], top_p[b], min_p[b], min_keep[b],
        temperature[b], t_last, pf32, pi32, pf64, cnt, si, sf)
    lo = c * CHUNK
    write_chunk(row, out[b], lo, min(lo + CHUNK, row.shape[0]), status, first, T, t_pre,
                t_draw)
    if c == 0 and cuda.threadIdx.x == 0:
        status_out[b] = INVALID if status == INVALID else 0


def _known(v):
    """A host parameter as numpy, or None for a device array (its values would need a
    copy to the host, which the device path never waits for)."""
    return None if transfer.is_device(v) else np.asarray(v)


def stages_needed(top_k, top_p, min_p, min_keep):
    """``(count, mass)``: whether any row may need the count selects (TopK or a
    ``min_keep`` floor) or TopP's mass select. Device parameters: assumed needed."""
    k, p, mp, mk = (_known(v) for v in (top_k, top_p, min_p, min_keep))
    if k is None or p is None or mp is None or mk is None:
        return True, True
    floor = (mk > 1) & ((p < 1.0) | (mp > 0.0))
    return bool(np.any(k > 0) or np.any(floor)), bool(np.any((p < 1.0) & (p - TOL > 0.0)))


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


def _cuts(x, params, t_last, count, mass, extra, stream):
    """Allocate the per-row state (and the ``extra`` ``(shape, dtype)`` arrays, in the
    same allocation) and launch every phase before the final one. Returns ``(grid,
    args, prev, extra arrays)``: the phase kernels' grid and arguments, and the last
    phase launched."""
    B, V = x.shape
    S = chunks(V)
    state = carve(((B, S), np.float32), ((B, 4, S), np.int32), ((B, _NF64, S), np.float64),
                  ((B, _NCNT), np.int32), ((B, _NSI), np.int64), ((B, _NSF), np.float64),
                  *extra, stream=stream)
    args = (x, *params, bool(t_last), *state[:6])
    grid = (S, B)
    phases = [SCAN]
    if count:
        phases += [COUNT0 + d for d in range(_KPASSES)]
    if mass:
        phases += [MASS0 + d for d in range(_MPASSES)]
    prev = SCAN
    for ph in phases:
        phase_kernel[grid, TPB, stream](ph, prev, *args)
        prev = ph
    return grid, args, prev, state[6:]


def sample_split(x, params, t_last, seed, position, count=True, mass=True, stream=0):
    """Tokens of the canonical chain, int32 (B,) device (-2: invalid row), split path.

    ``x``: float32 (B, V) device rows, B >= 1; ``params``: device ``(top_k, top_p,
    min_p, temperature, min_keep)``; ``count``/``mass``: ``stages_needed``'s answer
    (False only when no row needs that select)."""
    B = x.shape[0]
    grid, args, prev, (out,) = _cuts(x, params, t_last, count, mass,
                                     (((B,), np.int32),), stream)
    phase_kernel[grid, TPB, stream](FINAL, prev, *args)
    pi32, pf64, si, sf = args[8], args[9], args[11], args[12]
    draw_kernel[B, TPB, stream](x, seed, position, pi32, pf64, si, sf, out)
    return out


def process_split(x, params, t_last, out, status, count=True, mass=True, stream=0):
    """The processed logits into ``out`` (float32 (B, V) device) and the row status
    into ``status`` (int32 (B,), -2 invalid), split path."""
    grid, args, prev, _ = _cuts(x, params, t_last, count, mass, (), stream)
    process_kernel[grid, TPB, stream](prev, *args, out, status)
    return out

