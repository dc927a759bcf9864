"""The fused canonical chain of ``fs.sample`` as CUDA kernels, one block per row, and
the per-chunk device functions the split path (``split.py``) shares.

Same chain and conventions as ``kernels/cpu/canonical.py`` (read its docstring for
why one running threshold ``T`` is enough): TopK, TopP and MinP each raise ``T`` to
their cut (with the ``min_keep`` floor ``G(min_keep)``), Temperature is monotone so
it only changes the draw's weights (last) or the values the cuts see (first, HF
order: ``float32(l / t)``, recomputed per element on every pass instead of stored).

Per row:

1. Row max, NaN/+inf flag and finite count (one pass; invalid row -> token -2).
2. ``G(j)``, the j-th largest value: radix select on order-preserving keys, 8 bits
   a pass, counts by shared-memory integer atomics (exact).
3. TopP's cut: radix select on probability mass, 4 bits a pass, per-thread float64
   bins summed in a fixed order; the total ``W`` is the first pass's bins.
4. MinP's cut in logit space: ``l_max + ln p`` in float64.
5. XTC, when the chain has it after the truncations and the row's roll says so
   (``xtc.py``): an upper cut ``xu`` (and its ``min_keep`` floor ``xg``) that the
   draw and ``process`` apply with ``T`` (``block.kept``).
6. The draw of docs/spec.md §5 (inverse CDF in token-id order): in each chunk, each thread
   sums the float64 weights of one contiguous slice of ids; a chunk's sum is a fixed
   tree over its slices; thread 0 walks the chunk sums in id order, then the slices of
   the one chunk where the running sum passes ``u * W``, then its ids. ``u`` comes
   from the shared Philox (``kernels/shared.py``, compiled as a device function).

Every float64 sum is chunk-structured (``target.CHUNK``): a chunk's partial in an
order fixed by the block size, then the partials in chunk order. It depends on
``TPB`` and ``CHUNK`` only, so a token never depends on the batch or on which path
(one block or several per row) ran; it differs from the reference only where float64
rounding puts a cumulative mass within ~1e-15 of a boundary.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int32

from ...rng import STREAM_DRAW
from ..shared import uniform
from .block import (
    F32_MAX,
    MASS_BINS,
    RADIX_BINS,
    kept,
    key_value,
    max_f32,
    max_i32,
    min_i32,
    radix_kth,
    radix_mass,
    stage_value,
    sum_f64,
    sum_i32,
)
from .target import CHUNK, TPB, load
from .xtc import INF, xtc_above, xtc_cuts, xtc_rolls, xtc_upper

__all__ = [
    "GREEDY",
    "GREEDY_AFTER_XTC",
    "INVALID",
    "chunk_slices",
    "cuts",
    "finish_draw",
    "first_index",
    "invalid_kernel",
    "process_kernel",
    "sample_kernel",
    "scan_chunk",
    "temperatures",
    "write_chunk",
]

INVALID = -2
GREEDY = 1             # status: the token is ``first``
GREEDY_AFTER_XTC = 2   # status: greedy, but XTC acts first (Temperature <= 0 last)
NEG = -F32_MAX         # a threshold that keeps every finite token
TOL = 1e-6             # spec §4 mass tolerance
_SLICE = CHUNK // TPB  # ids per thread in a chunk's draw sums


@cuda.jit(device=True)
def scan_chunk(row, lo, hi, sh_f32, sh_i32):
    """(max of the finite entries of ``row[lo:hi]`` as float32, bad flag, finite count)."""
    m = float32(-np.inf)
    bad = 0
    nf = 0
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        x = load(row, i)
        if x > -np.inf and x < np.inf:
            nf += 1
            m = max(m, x)
        elif x != -np.inf:   # NaN or +inf
            bad = 1
    m = max_f32(m, sh_f32)
    bad = max_i32(bad, sh_i32)
    nf = sum_i32(nf, sh_i32)
    return m, bad, nf


@cuda.jit(device=True)
def first_index(row, lo, hi, m, sh_i32):
    """Index of the first entry of ``row[lo:hi]`` equal to ``m``, else ``len(row)``."""
    first = row.shape[0]
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        if load(row, i) == m:
            first = i
            break
    return min_i32(first, sh_i32)


@cuda.jit(device=True)
def temperatures(t, t_last):
    """``(t_pre, t_draw)``: the temperature the cuts see and the one the draw applies.
    HF order (not ``t_last``) makes the cuts see ``float32(l / t)``."""
    if t_last or t == 1.0:
        return 1.0, t
    return t, 1.0


@cuda.jit(device=True)
def cuts(m, p, pmin, mk, T, found, key, g_mk):
    """The chain's threshold after TopP and MinP, from TopK's ``T``, the mass select's
    ``(found, key)`` and ``g_mk = G(min_keep)`` (used only when ``min_keep > 1``)."""
    if p < 1.0:
        if p - TOL <= 0.0:
            cut = m          # the first token reaches: keep the max and its ties
        elif found:
            cut = key_value(key)
        else:
            cut = NEG
        if mk > 1 and cut > NEG:
            cut = min(cut, g_mk)
        T = max(T, cut)
    if pmin > 0.0:
        cut = min(m + math.log(pmin), m)   # p > 1 keeps the max
        if mk > 1:
            cut = min(cut, g_mk)
        T = max(T, cut)
    return T


@cuda.jit(device=True)
def _kth_value(row, t, j, nf, hist, sh_i32):
    """G(j): the j-th largest finite stage value, or NEG when j >= the finite count
    (the stage keeps every finite token)."""
    if j >= nf:
        return NEG
    key, _ = radix_kth(row, t, j, False, hist, sh_i32)
    return key_value(key)


@cuda.jit(device=True)
def _threshold(row, k, p, pmin, mk, t, t_last, xon, sh_i32):
    """Run the chain's cuts on one row; ``xon``: XTC acts on it after them.

    Returns ``(status, T, t_pre, t_draw, m, first, g_mk)``: status -2 invalid row, 1
    greedy (``first`` is the token), 0 draw over ``stage_value(row, t_pre) >= T`` with
    weights ``exp(stage_value(v, t_draw) - stage_value(m, t_draw))``, 2 greedy after
    XTC (``T`` computed, ``first`` not yet). ``g_mk``: ``G(min_keep)`` where a
    ``min_keep`` floor may need it, else ``NEG``.
    The selects' scratch is declared here (called once per kernel, so the simulator's
    by-line shared arrays stay distinct); ``sh_i32``: the kernel's int32 (TPB,)
    array, which the draw reuses.
    """
    hist = cuda.shared.array(RADIX_BINS, int32)
    red = cuda.shared.array((MASS_BINS, TPB), float64)
    cnt = cuda.shared.array(MASS_BINS, int32)
    tot = cuda.shared.array(MASS_BINS, float64)
    sh_f32 = cuda.shared.array(TPB, float32)
    bins = cuda.local.array(MASS_BINS, float64)
    n = row.shape[0]
    m32, bad, nf = scan_chunk(row, 0, n, sh_f32, sh_i32)
    if bad != 0 or nf == 0:
        return INVALID, 0.0, 1.0, 1.0, 0.0, -1, NEG
    status = 0
    if t <= 0.0:
        if not (xon and t_last):   # the cuts keep the row's first maximum
            return GREEDY, 0.0, 1.0, 1.0, 0.0, first_index(row, 0, n, m32, sh_i32), NEG
        status = GREEDY_AFTER_XTC  # XTC may mask it: cut first (t_pre = 1)
    t_pre, t_draw = temperatures(t, t_last)
    m = np.float64(stage_value(m32, t_pre))   # stage_value is monotone
    T = NEG
    g_mk = NEG
    if k > 0:
        T = _kth_value(row, t_pre, max(k, mk), nf, hist, sh_i32)
    if mk > 1 and (p < 1.0 or pmin > 0.0 or xon):
        g_mk = _kth_value(row, t_pre, mk, nf, hist, sh_i32)
    found = 0
    key = 0
    if p < 1.0 and p - TOL > 0.0:
        found, key = radix_mass(row, t_pre, T, m, p - TOL, bins, red, cnt, tot, sh_i32)
    return status, cuts(m, p, pmin, mk, T, found, key, g_mk), t_pre, t_draw, m, -1, g_mk


@cuda.jit(device=True)
def _xtc(row, T, t_pre, m, threshold, mk, g_mk, sl, sh_f64, sh_i32):
    """``xtc.xtc_cuts``' ``(xu, xg, m_draw)`` for one row, one block (``xtc.py``).
    Declares its float32 scratch (called once per kernel)."""
    sh_f32 = cuda.shared.array(TPB, float32)
    n = row.shape[0]
    W = 0.0
    for lo in range(0, n, CHUNK):   # chunk sums in chunk order, as the split path
        total, _last = chunk_slices(row, lo, min(lo + CHUNK, n), T, INF, INF, t_pre, 1.0,
                                    m, sl, sh_f64)
        W += total
    n_above, pmin = xtc_above(row, 0, n, T, t_pre, m, W, threshold, sh_f64, sh_i32)
    top = float32(-np.inf)
    n_low = 0
    if n_above >= 2:   # the same in every thread (a block reduction)
        top, n_low = xtc_upper(row, 0, n, T, t_pre, m, W, pmin, sh_f32, sh_i32)
    return xtc_cuts(n_above, top, n_low, mk, g_mk, m)


@cuda.jit(device=True)
def _cut_row(row, b, top_k, top_p, min_p, temperature, min_keep, t_last, xtc_p, xtc_t,
             seed, position, sl, sh_f64, sh_i32):
    """The cuts and XTC of row ``b``: ``(status, T, xu, xg, t_pre, t_draw, m_draw,
    first)``; status -2 invalid, 1 greedy (``first``), 0 draw over ``block.kept``
    with weights ``exp(stage_value(v, t_draw) - stage_value(m_draw, t_draw))``."""
    mk = min_keep[b]
    xon = xtc_rolls(xtc_p[b], xtc_t[b], seed[b], position[b])
    status, T, t_pre, t_draw, m, first, g_mk = _threshold(
        row, top_k[b], top_p[b], min_p[b], mk, temperature[b], t_last, xon, sh_i32)
    xu = INF
    xg = INF
    m_draw = m
    if xon and (status == 0 or status == GREEDY_AFTER_XTC):
        xu, xg, m_draw = _xtc(row, T, t_pre, m, xtc_t[b], mk, g_mk, sl, sh_f64, sh_i32)
    if status == GREEDY_AFTER_XTC:   # t_pre = 1: the first of the largest kept value
        first = first_index(row, 0, row.shape[0], float32(m_draw), sh_i32)
        status = GREEDY
    return status, T, xu, xg, t_pre, t_draw, m_draw, first


@cuda.jit(device=True)
def chunk_slices(row, lo, hi, T, xu, xg, t_pre, t_draw, mw, sl, sh_f64):
    """The draw's sums over ``row[lo:hi]`` (one chunk): thread ``s`` sums the weights of
    the kept ids (``block.kept``) among ``lo + s*_SLICE ...`` (its slice) in id order
    into ``sl[s]``. Returns the chunk's sum (every thread: a fixed tree over the
    slices) and the thread's own last survivor (-1 if none; ``max_i32`` of it is the
    chunk's, left to the caller so the one-block loop reduces once). ``sl``,
    ``sh_f64``: float64 (TPB,) shared."""
    a = min(lo + cuda.threadIdx.x * _SLICE, hi)
    z = min(a + _SLICE, hi)
    acc = 0.0
    last = -1
    for i in range(a, z):
        v = stage_value(load(row, i), t_pre)
        if kept(v, T, xu, xg):
            acc += math.exp(np.float64(stage_value(v, t_draw)) - mw)
            last = i
    sl[cuda.threadIdx.x] = acc
    return sum_f64(acc, sh_f64), last   # sum_f64's barriers also publish sl


@cuda.jit(device=True)
def _walk_slices(row, lo, hi, T, xu, xg, t_pre, t_draw, mw, sl, run, target):
    """One thread: in the chunk ``row[lo:hi]`` whose sum carries the running sum past
    ``target``, the first id where it does (slices in order, then ids); -1 if float64
    rounding leaves it short."""
    for s in range(TPB):
        if run + sl[s] > target:
            a = min(lo + s * _SLICE, hi)
            part = 0.0
            for i in range(a, min(a + _SLICE, hi)):
                v = stage_value(load(row, i), t_pre)
                if kept(v, T, xu, xg):
                    part += math.exp(np.float64(stage_value(v, t_draw)) - mw)
                    if run + part > target:
                        return i
            return -1
        run += sl[s]
    return -1


@cuda.jit(device=True)
def finish_draw(row, cs, last, T, xu, xg, t_pre, t_draw, mw, u, sl, sh_f64, sh_i32):
    """Spec §5 from the row's chunk sums ``cs`` (float64 (S,), by ``chunk_slices``) and
    last survivor ``last`` (any thread's value): ``W`` is the chunk sums in chunk order;
    the walk passes ``u * W`` in one chunk, whose slices are summed again (same order,
    same bits). If rounding leaves the running sum short, the chunk's (or the row's)
    last survivor. Kept ids: ``block.kept(v, T, xu, xg)``. Called by every thread; the
    token is thread 0's return value."""
    tid = cuda.threadIdx.x
    n = row.shape[0]
    target = 0.0
    run = 0.0
    if tid == 0:
        W = 0.0
        for c in range(cs.shape[0]):
            W += cs[c]
        target = u * W
        found = -1
        for c in range(cs.shape[0]):
            if run + cs[c] > target:
                found = c
                break
            run += cs[c]
        sh_i32[0] = found
    cuda.syncthreads()
    c = sh_i32[0]
    cuda.syncthreads()
    tok = last
    if c >= 0:
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        _total, last_c = chunk_slices(row, lo, hi, T, xu, xg, t_pre, t_draw, mw, sl, sh_f64)
        last_c = max_i32(last_c, sh_i32)
        if tid == 0:
            tok = _walk_slices(row, lo, hi, T, xu, xg, t_pre, t_draw, mw, sl, run, target)
            if tok < 0:
                tok = last_c
    return tok


@cuda.jit(device=True)
def write_chunk(row, dst, lo, hi, status, first, T, xu, xg, t_pre, t_draw):
    """The processed logits of ``row[lo:hi]`` into ``dst``: -inf where masked."""
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        y = float32(-np.inf)
        if status == 1:
            if i == first:
                y = load(row, i)
        elif status == 0:
            v = stage_value(load(row, i), t_pre)
            if kept(v, T, xu, xg):
                y = stage_value(v, t_draw)
        dst[i] = y


@cuda.jit(cache=True)
def sample_kernel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, xtc_p,
                  xtc_t, seed, position, cs, out):
    """One token per row (block): ``out[b]``; -2 marks an invalid row.
    ``xtc_p``, ``xtc_t``: XTC's probability and threshold per row (probability 0: no
    XTC). ``cs``: float64 (B, ceil(V / CHUNK)) scratch for the chunk sums of the draw."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    sl = cuda.shared.array(TPB, float64)
    row = logits[b]
    n = row.shape[0]
    status, T, xu, xg, t_pre, t_draw, m_draw, first = _cut_row(
        row, b, top_k, top_p, min_p, temperature, min_keep, t_last, xtc_p, xtc_t, seed,
        position, sl, sh_f64, sh_i32)
    if status != 0:
        tok = INVALID if status == INVALID else first
    else:
        u = uniform(seed[b], position[b], STREAM_DRAW)
        mw = np.float64(stage_value(np.float32(m_draw), t_draw))
        last = -1
        for c in range(cs.shape[1]):
            lo = c * CHUNK
            total, last_c = chunk_slices(row, lo, min(lo + CHUNK, n), T, xu, xg, t_pre,
                                         t_draw, mw, sl, sh_f64)
            last = max(last, last_c)
            if cuda.threadIdx.x == 0:
                cs[b, c] = total
        last = max_i32(last, sh_i32)
        tok = finish_draw(row, cs[b], last, T, xu, xg, t_pre, t_draw, mw, u, sl, sh_f64,
                          sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = tok


@cuda.jit(cache=True)
def process_kernel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, xtc_p,
                   xtc_t, seed, position, out, status_out):
    """The logits the draw would use (``out``, -inf = masked); ``status_out[b]`` is -2
    for an invalid row (its ``out`` row is all -inf), else 0. XTC's roll uses
    ``seed``/``position`` (stream 1) as ``sample_kernel``'s does."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    sl = cuda.shared.array(TPB, float64)
    row = logits[b]
    status, T, xu, xg, t_pre, t_draw, _m, first = _cut_row(
        row, b, top_k, top_p, min_p, temperature, min_keep, t_last, xtc_p, xtc_t, seed,
        position, sl, sh_f64, sh_i32)
    write_chunk(row, out[b], 0, row.shape[0], status, first, T, xu, xg, t_pre, t_draw)
    if cuda.threadIdx.x == 0:
        status_out[b] = INVALID if status == INVALID else 0


@cuda.jit(cache=True)
def invalid_kernel(logits, out):
    """``out[b] = 1`` for a row with NaN, +inf or no finite logit, else 0."""
    b = cuda.blockIdx.x
    sh_f32 = cuda.shared.array(TPB, float32)
    sh_i32 = cuda.shared.array(TPB, int32)
    row = logits[b]
    _m, bad, nf = scan_chunk(row, 0, row.shape[0], sh_f32, sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = 1 if (bad != 0 or nf == 0) else 0
