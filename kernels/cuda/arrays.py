"""Array operations as CUDA kernels, one block per row: softmax, log_softmax, topk,
plus the small ones around them: the input cast (any float dtype or bfloat16 bits, any
strides -> float32 C-contiguous rows), token fix-ups and parameter checks."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int32

from .block import RADIX_BINS, max_f64, radix_kth, sum_f64
from .target import TPB, f32_key, load

__all__ = ["CHECK_AT_LEAST_ONE", "CHECK_FINITE", "CHECK_NON_NEGATIVE", "cast1_kernel",
           "cast_kernel", "flag_params_kernel", "log_softmax_kernel",
           "replace_kernel", "softmax_kernel", "topk_kernel", "widen_kernel"]


@cuda.jit(device=True)
def _max_scaled(row, t, sh_f64):
    """Max of the finite ``float64(x) / t`` (-inf when none)."""
    m = -np.inf
    for i in range(cuda.threadIdx.x, row.shape[0], TPB):
        x = row[i]
        if x > -np.inf:
            y = np.float64(x) / t
            m = max(m, y)
    return max_f64(m, sh_f64)


@cuda.jit(device=True)
def _mass(row, t, m, sh_f64):
    """``sum exp(x / t - m)`` over the finite entries, float64, fixed tree order."""
    acc = 0.0
    for i in range(cuda.threadIdx.x, row.shape[0], TPB):
        x = row[i]
        if x > -np.inf:
            acc += math.exp(np.float64(x) / t - m)
    return sum_f64(acc, sh_f64)


@cuda.jit(cache=True)
def softmax_kernel(x, temperature, out):
    """Reference softmax of ``x / t`` per row (masked -> 0), float32."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    row = x[b]
    t = temperature[b]
    m = _max_scaled(row, t, sh_f64)
    dst = out[b]
    if m == -np.inf:
        for i in range(cuda.threadIdx.x, row.shape[0], TPB):
            dst[i] = 0.0
        return
    W = _mass(row, t, m, sh_f64)
    for i in range(cuda.threadIdx.x, row.shape[0], TPB):
        v = row[i]
        dst[i] = float32(math.exp(np.float64(v) / t - m) / W) if v > -np.inf else float32(0.0)


@cuda.jit(cache=True)
def log_softmax_kernel(x, out):
    """Reference log-softmax per row (masked -> -inf), float32."""
    b = cuda.blockIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    row = x[b]
    m = _max_scaled(row, 1.0, sh_f64)
    dst = out[b]
    if m == -np.inf:
        for i in range(cuda.threadIdx.x, row.shape[0], TPB):
            dst[i] = -np.inf
        return
    lw = math.log(_mass(row, 1.0, m, sh_f64))
    for i in range(cuda.threadIdx.x, row.shape[0], TPB):
        v = row[i]
        dst[i] = float32((np.float64(v) - m) - lw) if v > -np.inf else float32(-np.inf)


@cuda.jit(cache=True)
def topk_kernel(x, k, cand_v, cand_i, values, indices):
    """Exactly k per row, descending, ties to the lower id (1 <= k <= V, no NaN).

    Radix select finds the key K of the k-th largest; the entries above K and the
    first ``rank`` entries equal to K (id order: per-thread contiguous slices and a
    prefix sum) are the candidates; each candidate's place is its rank in (value
    descending, id ascending) order, counted over the candidates (O(k^2 / TPB) per
    thread, which is small for the k of sampling).
    """
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    hist = cuda.shared.array(RADIX_BINS, int32)
    sh_i32 = cuda.shared.array(TPB, int32)
    slot = cuda.shared.array(1, int32)
    row = x[b]
    n = row.shape[0]
    cv = cand_v[b]
    ci = cand_i[b]
    K, need = radix_kth(row, 1.0, k, True, hist, sh_i32)
    above = k - need
    if tid == 0:
        slot[0] = 0
    chunk = (n + TPB - 1) // TPB
    lo = min(tid * chunk, n)
    hi = min(lo + chunk, n)
    ties = 0
    for i in range(lo, hi):
        if np.int64(f32_key(row[i])) == K:
            ties += 1
    sh_i32[tid] = ties
    cuda.syncthreads()
    r = 0
    for c in range(tid):   # ties in earlier slices (TPB is small: a plain loop)
        r += sh_i32[c]
    cuda.syncthreads()
    for i in range(lo, hi):
        key = np.int64(f32_key(row[i]))
        if key > K:
            s = cuda.atomic.add(slot, 0, 1)
            cv[s] = row[i]
            ci[s] = i
        elif key == K:
            if r < need:
                cv[above + r] = row[i]
                ci[above + r] = i
            r += 1
    cuda.syncthreads()
    vdst = values[b]
    idst = indices[b]
    for c in range(tid, k, TPB):
        v = cv[c]
        i = ci[c]
        rank = 0
        for d in range(k):
            w = cv[d]
            if w > v or (w == v and ci[d] < i):
                rank += 1
        vdst[rank] = v
        idst[rank] = i


@cuda.jit(cache=True)
def cast_kernel(src, out):
    """``out[b, i] = load(src[b], i)``: float32 of a 2-D ``src`` of any float dtype (or
    bfloat16 bits as int16/uint16) and strides."""
    b = cuda.blockIdx.x
    row = src[b]
    dst = out[b]
    for i in range(cuda.threadIdx.x, row.shape[0], TPB):
        dst[i] = load(row, i)


@cuda.jit(cache=True)
def cast1_kernel(src, out):
    """``out[0, i] = load(src, i)`` for a 1-D ``src`` (dtypes as ``cast_kernel``)."""
    dst = out[0]
    for i in range(cuda.threadIdx.x, src.shape[0], TPB):
        dst[i] = load(src, i)


@cuda.jit(cache=True)
def widen_kernel(src, out):
    """``out[b] = int64(src[b])`` (token ids for torch, whose index dtype is int64)."""
    b = cuda.grid(1)
    if b < src.shape[0]:
        out[b] = src[b]


# What a per-row parameter left on the device must satisfy (docs/spec.md §7, as the host
# Check objects of fastsample.stages): flagged rows get token -1 instead of an error.
CHECK_FINITE = 0
CHECK_NON_NEGATIVE = 1      # finite and >= 0
CHECK_AT_LEAST_ONE = 2


@cuda.jit(cache=True)
def flag_params_kernel(tokens, values, check):
    """``tokens[b] = -1`` where ``values[b]`` fails ``check`` (one thread per row)."""
    b = cuda.grid(1)
    if b < tokens.shape[0]:
        v = values[b]
        finite = v > -np.inf and v < np.inf       # False for NaN
        ok = finite
        if check == CHECK_NON_NEGATIVE:
            ok = finite and v >= 0
        elif check == CHECK_AT_LEAST_ONE:
            ok = v >= 1
        if not ok:
            tokens[b] = -1


@cuda.jit(cache=True)
def replace_kernel(tokens, old, new):
    """``tokens[b] = new`` where ``tokens[b] == old`` (one thread per row)."""
    b = cuda.grid(1)
    if b < tokens.shape[0] and tokens[b] == old:
        tokens[b] = new
