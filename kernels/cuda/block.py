"""Block-wide reductions and radix selects, shared by the CUDA kernels.

One block owns one row (or, on the split path, one chunk of a row: the ``*_chunk``
and ``*_digit`` pieces are shared by both paths). Every function here that takes
shared scratch is called by all threads of the block
(they contain ``cuda.syncthreads()``), with shared scratch arrays that the caller
declares (the simulator keys shared arrays by source line, so they are declared where
each line runs once per thread: in the kernel, or in a device function it calls once,
and passed down).

Reductions use a fixed tree over ``TPB`` slots in shared memory: the order of float64
additions depends only on ``TPB``, never on the batch, so a row's result cannot
change with batch composition or between runs. They are built from one tree body
(``_tree_reduction``) and a combining device function.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..shared import F32_MAX, saturate_f32
from .target import CHUNK, NEG_INF_KEY, TPB, f32_key, key_f32, load

__all__ = [
    "F32_MAX",
    "MASS_BINS",
    "RADIX_BINS",
    "bins_total",
    "count_keys",
    "fixed_bits",
    "key_value",
    "kept",
    "kth_digit",
    "mass_bins_chunk",
    "mass_digit",
    "max_f32",
    "max_f64",
    "max_i32",
    "min_f64",
    "min_i32",
    "radix_kth",
    "radix_mass",
    "stage_value",
    "sum_f64",
    "sum_i32",
]

RADIX_BINS = 256   # 8-bit digits: 4 passes for the count select
MASS_BINS = 16     # 4-bit digits: 8 passes for the mass select (16 float64 per thread)
_MASS_DIGITS = 8


@cuda.jit(device=True, inline=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True, inline=True)
def _max(a, b):
    return max(a, b)


@cuda.jit(device=True, inline=True)
def _min(a, b):
    return min(a, b)


_DTYPES = {"f32": "float32", "f64": "float64", "i32": "int32"}


def _tree_reduction(combine, name):
    """The device function ``name(val, sh)`` (``name``: ``<op>_<dtype>``): every thread
    of the block gives ``val`` and gets ``combine`` folded over the block in a fixed
    tree over ``TPB`` slots of the shared array ``sh``, whose dtype sets the type."""
    op, dtype = name.split("_")

    def reduce(val, sh):
        tid = cuda.threadIdx.x
        sh[tid] = val
        cuda.syncthreads()
        s = TPB // 2
        while s > 0:
            if tid < s:
                sh[tid] = combine(sh[tid], sh[tid + s])
            cuda.syncthreads()
            s //= 2
        out = sh[0]
        cuda.syncthreads()
        return out

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = (f"Block {op} of a {_DTYPES[dtype]} per thread, in a fixed tree "
                      f"order (``sh``: {_DTYPES[dtype]} (TPB,)).")
    return cuda.jit(device=True)(reduce)


max_f32 = _tree_reduction(_max, "max_f32")
max_f64 = _tree_reduction(_max, "max_f64")
sum_f64 = _tree_reduction(_add, "sum_f64")
sum_i32 = _tree_reduction(_add, "sum_i32")
max_i32 = _tree_reduction(_max, "max_i32")
min_i32 = _tree_reduction(_min, "min_i32")
min_f64 = _tree_reduction(_min, "min_f64")


@cuda.jit(device=True)
def stage_value(x, t):
    """A logit as a stage after Temperature(t) sees it: reference ``float32(clip(x/t))``
    (t > 0); ``t == 1`` and ``-inf`` pass through. Monotone, so it keeps every cut."""
    if t == 1.0 or not x > -np.inf:
        return np.float32(x)
    return saturate_f32(np.float64(x) / t)


@cuda.jit(device=True, inline=True)
def kept(v, T, xu, xg):
    """Whether the draw keeps a stage value ``v``: the cuts' ``v >= T``, less XTC's
    hole ``xu < v < xg`` (``xu``: XTC's upper cut, ``xg``: its ``min_keep`` floor
    above it; both ``inf`` when XTC changes nothing, so the hole is empty)."""
    f = np.float64(v)
    return f >= T and (f <= xu or f >= xg)


@cuda.jit(device=True)
def _lone_key(row, t, T, include_masked, prefix, mask, slot):
    """The key of the one entry whose key matches ``prefix`` under ``mask`` (among
    ``stage_value >= T``, ``-inf`` only if ``include_masked``): a radix select stops
    early once its group holds a single entry. ``slot``: int32 (>= 2,) shared."""
    tid = cuda.threadIdx.x
    for i in range(tid, row.shape[0], TPB):
        v = stage_value(load(row, i), t)
        key = np.int64(f32_key(v))
        if np.float64(v) >= T and (include_masked or key > NEG_INF_KEY) \
                and (key & mask) == prefix:
            slot[0] = key >> 16
            slot[1] = key & 0xFFFF
    cuda.syncthreads()
    key = (np.int64(slot[0]) << 16) | np.int64(slot[1])
    cuda.syncthreads()
    return key


@cuda.jit(device=True)
def fixed_bits(d, bits):
    """The key bits fixed before pass ``d`` of a select with ``bits``-bit digits (8: a
    count select, 4: a mass select), most significant digit first."""
    mask = 0
    for e in range(d):
        mask |= np.int64((1 << bits) - 1) << (32 - bits * (e + 1))
    return mask


@cuda.jit(device=True)
def count_keys(row, lo, hi, t, include_masked, prefix, mask, shift, hist):
    """Count ``row[lo:hi]``'s keys (of ``stage_value(., t)``) in the group ``prefix``
    under ``mask`` into ``hist`` by their 8-bit digit at ``shift`` (integer atomics:
    exact in any order). ``hist``: int32 (RADIX_BINS,), zeroed by the caller."""
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        key = np.int64(f32_key(stage_value(load(row, i), t)))
        if (include_masked or key > NEG_INF_KEY) and (key & mask) == prefix:
            cuda.atomic.add(hist, (key >> shift) & 255, 1)


@cuda.jit(device=True)
def kth_digit(hist, rem):
    """One thread: descend from the largest digit until the bin holds the ``rem``-th
    entry. Returns ``(digit, rank within its bin, the bin's count)``."""
    chosen = 0
    for b in range(RADIX_BINS - 1, -1, -1):
        c = hist[b]
        if rem <= c:
            chosen = b
            break
        rem -= c
    return chosen, rem, hist[chosen]


@cuda.jit(device=True)
def radix_kth(row, t, j, include_masked, hist, sh_i32):
    """Key of the j-th largest value (1-based) of ``stage_value(row, t)``.

    Radix select over order-preserving keys, 8 bits a pass, counts by shared-memory
    integer atomics (exact, so the result is deterministic). ``include_masked``:
    whether ``-inf`` entries count. Returns ``(key, rank)``: ``rank`` is how many
    entries equal to that key are needed to make j (ties to be taken in id order).
    The caller guarantees 1 <= j <= the number of entries counted.
    ``hist``: int32 (RADIX_BINS,) shared; ``sh_i32``: int32 (TPB,) shared.
    Stopping once the group holds one entry gives the key the remaining passes would
    (each picks that entry's digit, rank 1), so the split path can run every pass.
    """
    tid = cuda.threadIdx.x
    n = row.shape[0]
    prefix = 0
    mask = 0
    remaining = j
    for d in range(4):
        shift = 24 - 8 * d
        for b in range(tid, RADIX_BINS, TPB):
            hist[b] = 0
        cuda.syncthreads()
        count_keys(row, 0, n, t, include_masked, prefix, mask, shift, hist)
        cuda.syncthreads()
        if tid == 0:
            chosen, rem, count = kth_digit(hist, remaining)
            sh_i32[0] = chosen
            sh_i32[1] = rem
            sh_i32[2] = count
        cuda.syncthreads()
        prefix |= np.int64(sh_i32[0]) << shift
        remaining = sh_i32[1]
        lone = sh_i32[2] == 1
        mask |= np.int64(255) << shift
        cuda.syncthreads()
        if lone and d < 3:
            return _lone_key(row, t, -np.inf, include_masked, prefix, mask, hist), 1
    return prefix, remaining


_GS = min(16, TPB)   # threads per group in a chunk's per-bin sums
_NG = TPB // _GS     # groups


@cuda.jit(device=True)
def mass_bins_chunk(row, lo, hi, t, T, m, prefix, mask, shift, bins, red, cnt, tot):
    """One chunk's share of a mass pass: the float64 mass ``exp(v - m)`` of the
    survivors ``v >= T`` of ``row[lo:hi]`` in the group ``prefix``/``mask``, per 4-bit
    digit at ``shift``, added to ``tot[b]`` (a row's bin is its chunk sums added in
    chunk order); their counts are added to ``cnt`` (integer atomics).

    The chunk's order is fixed by ``TPB`` alone: thread-strided ids, each thread's own
    bins, then per bin ``_GS`` threads at a time in thread order, then the groups in
    order. ``bins``: (MASS_BINS,) float64 local; ``red``: float64 (MASS_BINS, TPB)
    shared; ``cnt``: int32, ``tot``: float64 (MASS_BINS,) shared.
    """
    tid = cuda.threadIdx.x
    for b in range(MASS_BINS):
        bins[b] = 0.0
    for i in range(lo + tid, hi, TPB):
        v = stage_value(load(row, i), t)
        if np.float64(v) >= T:
            key = np.int64(f32_key(v))
            if (key & mask) == prefix:
                b = (key >> shift) & 15
                bins[b] += math.exp(np.float64(v) - m)
                cuda.atomic.add(cnt, b, 1)
    for b in range(MASS_BINS):
        red[b, tid] = bins[b]
    cuda.syncthreads()
    for s in range(tid, MASS_BINS * _NG, TPB):   # (bin, group): its _GS threads in order
        b = s % MASS_BINS
        g = s // MASS_BINS
        acc = 0.0
        for c in range(_GS):
            acc += red[b, g * _GS + c]
        red[b, g * _GS] = acc
    cuda.syncthreads()
    for b in range(tid, MASS_BINS, TPB):         # then the groups in order
        acc = 0.0
        for g in range(_NG):
            acc += red[b, g * _GS]
        tot[b] += acc
    cuda.syncthreads()


@cuda.jit(device=True)
def bins_total(tot):
    """The survivors' whole mass: the row's pass-0 bins added in bin order."""
    W = 0.0
    for b in range(MASS_BINS):
        W += tot[b]
    return W


@cuda.jit(device=True)
def mass_digit(d, above, target, tot, cnt):
    """One thread: the digit of mass pass ``d`` from the row's per-bin mass ``tot`` and
    counts ``cnt``, ``above`` the mass of the survivors above the group. Returns
    ``(digit, ok, mass above the chosen bin)``; ``ok == 0``: the survivors' whole mass
    falls short of ``target`` (only at ``d == 0``): the stage keeps every survivor."""
    chosen = -1
    lowest = -1
    acc = above
    for b in range(MASS_BINS - 1, -1, -1):
        if cnt[b] > 0:
            lowest = b
            if acc + tot[b] >= target:
                chosen = b
                break
            acc += tot[b]
    ok = 1
    if chosen < 0:
        if d == 0:
            ok = 0
            chosen = 0
        else:
            # The previous digit chose this group, but the finer sums round
            # differently: its reach lands on its smallest member.
            chosen = lowest
            acc = above
            for b in range(MASS_BINS - 1, lowest, -1):
                acc += tot[b]
    return chosen, ok, acc


@cuda.jit(device=True)
def radix_mass(row, t, T, m, frac, bins, red, cnt, tot, sh_i32):
    """Top-p cut: the largest value c of ``v = stage_value(row, t)`` over the survivors
    ``v >= T`` such that ``mass(v >= c) >= frac * W`` (mass: ``sum exp(v - m)``, W:
    the survivors' whole mass, ``bins_total`` of the first pass).

    Radix select on the keys, 4 bits a pass. A bin's mass is the sum, in chunk order,
    of its per-chunk sums (``mass_bins_chunk``), the order the split path uses too.
    Returns ``(found, key)``; not found (rounding left the total short) means the
    stage keeps every survivor. Stopping once the group holds one entry gives the key
    the remaining passes would (every later pass picks that entry's digit).
    ``bins``: a (MASS_BINS,) float64 local array; ``red``: float64 (MASS_BINS, TPB)
    shared; ``cnt``: int32 (MASS_BINS,) shared; ``tot``: float64 (MASS_BINS,) shared;
    ``sh_i32``: int32 (TPB,) shared.
    """
    tid = cuda.threadIdx.x
    n = row.shape[0]
    prefix = 0
    mask = 0
    above = 0.0   # mass of the survivors above the current prefix group
    target = 0.0  # thread 0's
    found = 1
    for d in range(_MASS_DIGITS):
        shift = 28 - 4 * d
        for b in range(tid, MASS_BINS, TPB):
            cnt[b] = 0
            tot[b] = 0.0
        cuda.syncthreads()
        for lo in range(0, n, CHUNK):
            mass_bins_chunk(row, lo, min(lo + CHUNK, n), t, T, m, prefix, mask, shift,
                            bins, red, cnt, tot)
        if tid == 0:
            if d == 0:
                target = frac * bins_total(tot)
            chosen, ok, acc = mass_digit(d, above, target, tot, cnt)
            sh_i32[0] = chosen
            sh_i32[1] = ok
            sh_i32[2] = cnt[chosen]
            red[0, 0] = acc
        cuda.syncthreads()
        prefix |= np.int64(sh_i32[0]) << shift
        mask |= np.int64(15) << shift
        above = red[0, 0]
        found = found & sh_i32[1]
        lone = sh_i32[2] == 1
        cuda.syncthreads()
        if found == 0:
            return 0, 0
        if lone and d < _MASS_DIGITS - 1:
            return 1, _lone_key(row, t, T, False, prefix, mask, cnt)
    return 1, prefix


@cuda.jit(device=True)
def key_value(key):
    """The float64 value of an order-preserving key."""
    return np.float64(key_f32(key))
