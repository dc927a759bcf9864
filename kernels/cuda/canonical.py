"""The fused canonical chain of ``fs.sample`` as CUDA kernels, one block per row.

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
   bins summed in a fixed tree.
4. MinP's cut in logit space: ``l_max + ln p`` in float64.
5. The draw of SPEC §5 (inverse CDF in token-id order): each thread sums the float64
   weights of one contiguous slice of ids, thread 0 walks the slice sums in id order
   and then the one slice where the running sum passes ``u * W``. ``u`` comes from
   the shared Philox (``kernels/shared.py``, compiled as a device function).

Every float64 sum is in a fixed order that depends on the block size only, so a
token never depends on the batch; it differs from the reference only where float64
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
from .target import TPB

__all__ = ["INVALID", "invalid_kernel", "process_kernel", "sample_kernel"]

INVALID = -2
_NEG = -F32_MAX        # a threshold that keeps every finite token
_TOL = 1e-6            # SPEC §4 mass tolerance


@cuda.jit(device=True)
def _scan_row(row, sh_f32, sh_i32):
    """(max of the finite entries as float32, bad flag, finite count) of one row."""
    tid = cuda.threadIdx.x
    n = row.shape[0]
    m = float32(-np.inf)
    bad = 0
    nf = 0
    for i in range(tid, n, TPB):
        x = row[i]
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
def _first_index(row, m, sh_i32):
    """Index of the first entry equal to ``m``."""
    tid = cuda.threadIdx.x
    n = row.shape[0]
    first = n
    for i in range(tid, n, TPB):
        if row[i] == m:
            first = i
            break
    return min_i32(first, sh_i32)


@cuda.jit(device=True)
def _kth_value(row, t, j, nf, hist, sh_i32):
    """G(j): the j-th largest finite stage value, or _NEG when j >= the finite count
    (the stage keeps every finite token)."""
    if j >= nf:
        return _NEG
    key, _ = radix_kth(row, t, j, False, hist, sh_i32)
    return key_value(key)


@cuda.jit(device=True)
def _threshold(row, k, p, pmin, mk, t, t_last, sh_f64, sh_i32):
    """Run the chain's cuts on one row.

    Returns ``(status, T, t_pre, t_draw, m, first)``: status -2 invalid row, 1 greedy
    (``first`` is the token), 0 draw over ``stage_value(row, t_pre) >= T`` with
    weights ``exp(stage_value(v, t_draw) - stage_value(m, t_draw))``.
    The selects' scratch is declared here (called once per kernel, so the simulator's
    by-line shared arrays stay distinct); ``sh_f64``/``sh_i32``: the kernel's (TPB,)
    arrays, which the draw reuses.
    """
    hist = cuda.shared.array(RADIX_BINS, int32)
    red = cuda.shared.array((MASS_BINS, TPB), float64)
    cnt = cuda.shared.array(MASS_BINS, int32)
    sh_f32 = cuda.shared.array(TPB, float32)
    bins = cuda.local.array(MASS_BINS, float64)
    m32, bad, nf = _scan_row(row, sh_f32, sh_i32)
    if bad != 0 or nf == 0:
        return INVALID, 0.0, 1.0, 1.0, 0.0, -1
    if t <= 0.0:   # greedy in both orders: the first maximum of the row
        return 1, 0.0, 1.0, 1.0, 0.0, _first_index(row, m32, sh_i32)
    t_pre = 1.0
    t_draw = t
    if not (t_last or t == 1.0):   # HF order: the cuts see float32(l / t)
        t_pre = t
        t_draw = 1.0
    m = np.float64(stage_value(m32, t_pre))   # stage_value is monotone
    T = _NEG
    g_mk = np.inf                              # G(min_keep), when first needed
    if k > 0:
        T = _kth_value(row, t_pre, max(k, mk), nf, hist, sh_i32)
    if p < 1.0:
        target = p - _TOL
        if target <= 0.0:
            cut = m          # the first token reaches: keep the max and its ties
        else:
            W = 0.0
            tid = cuda.threadIdx.x
            for i in range(tid, row.shape[0], TPB):
                v = np.float64(stage_value(row[i], t_pre))
                if v >= T:
                    W += math.exp(v - m)
            W = sum_f64(W, sh_f64)
            found, key = radix_mass(row, t_pre, T, m, target * W, bins, red, cnt, sh_i32)
            cut = key_value(key) if found else _NEG
        if mk > 1 and cut > _NEG:
            g_mk = _kth_value(row, t_pre, mk, nf, hist, sh_i32)
            cut = min(cut, g_mk)
        T = max(T, cut)
    if pmin > 0.0:
        cut = min(m + math.log(pmin), m)   # p > 1 keeps the max
        if mk > 1:
            if g_mk == np.inf:
                g_mk = _kth_value(row, t_pre, mk, nf, hist, sh_i32)
            cut = min(cut, g_mk)
        T = max(T, cut)
    return 0, T, t_pre, t_draw, m, -1


@cuda.jit(device=True)
def _draw(row, T, t_pre, t_draw, m, u, sh_f64, sh_i32):
    """SPEC §5 over the survivors ``stage_value(row, t_pre) >= T``, in id order."""
    tid = cuda.threadIdx.x
    n = row.shape[0]
    mw = np.float64(stage_value(np.float32(m), t_draw))
    chunk = (n + TPB - 1) // TPB
    lo = min(tid * chunk, n)
    hi = min(lo + chunk, n)
    acc = 0.0
    last = -1
    for i in range(lo, hi):
        v = stage_value(row[i], t_pre)
        if np.float64(v) >= T:
            acc += math.exp(np.float64(stage_value(v, t_draw)) - mw)
            last = i
    sh_f64[tid] = acc
    sh_i32[tid] = last
    cuda.syncthreads()
    tok = -1
    if tid == 0:
        W = 0.0
        for c in range(TPB):
            W += sh_f64[c]
        target = u * W
        run = 0.0
        for c in range(TPB):
            if run + sh_f64[c] > target:
                part = 0.0
                for i in range(c * chunk, min(c * chunk + chunk, n)):
                    v = stage_value(row[i], t_pre)
                    if np.float64(v) >= T:
                        part += math.exp(np.float64(stage_value(v, t_draw)) - mw)
                        if run + part > target:
                            tok = i
                            break
                break
            run += sh_f64[c]
        if tok < 0:   # rounding left every running sum <= u * W: the last survivor
            for c in range(TPB):
                tok = max(tok, sh_i32[c])
    cuda.syncthreads()
    return tok


@cuda.jit(cache=True)
def sample_kernel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, seed,
                  position, out):
    """One token per row (block): ``out[b]``; -2 marks an invalid row."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    row = logits[b]
    status, T, t_pre, t_draw, m, first = _threshold(
        row, top_k[b], top_p[b], min_p[b], min_keep[b], temperature[b], t_last,
        sh_f64, sh_i32)
    if status != 0:
        tok = INVALID if status == INVALID else first
    else:
        u = uniform(seed[b], position[b], STREAM_DRAW)
        tok = _draw(row, T, t_pre, t_draw, m, u, sh_f64, sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = tok


@cuda.jit(cache=True)
def process_kernel(logits, top_k, top_p, min_p, temperature, min_keep, t_last, out,
                   status_out):
    """The logits the draw would use (``out``, -inf = masked); ``status_out[b]`` is -2
    for an invalid row (its ``out`` row is all -inf), else 0."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    row = logits[b]
    dst = out[b]
    status, T, t_pre, t_draw, _m, first = _threshold(
        row, top_k[b], top_p[b], min_p[b], min_keep[b], temperature[b], t_last,
        sh_f64, sh_i32)
    tid = cuda.threadIdx.x
    for i in range(tid, row.shape[0], TPB):
        y = float32(-np.inf)
        if status == 1:
            if i == first:
                y = row[i]
        elif status == 0:
            v = stage_value(row[i], t_pre)
            if np.float64(v) >= T:
                y = stage_value(v, t_draw)
        dst[i] = y
    if tid == 0:
        status_out[b] = INVALID if status == INVALID else 0


@cuda.jit(cache=True)
def invalid_kernel(logits, out):
    """``out[b] = 1`` for a row with NaN, +inf or no finite logit, else 0."""
    b = cuda.blockIdx.x
    sh_f32 = cuda.shared.array(TPB, float32)
    sh_i32 = cuda.shared.array(TPB, int32)
    _m, bad, nf = _scan_row(logits[b], sh_f32, sh_i32)
    if cuda.threadIdx.x == 0:
        out[b] = 1 if (bad != 0 or nf == 0) else 0
