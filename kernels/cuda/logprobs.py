"""``logprobs`` (``fastsample.reference.logprobs``, docs/spec.md §9) on the device.

The top ``max(n, 1)`` of each row come from the backend's ``topk`` kernel (its first
value is the row max); then one block per row makes one pass over the row for the
float64 ``W = sum exp(x - m)`` and the rank count ``#(x > x[token])`` (block tree
reductions in shared memory, a fixed order), and writes the float32 log-probabilities
of the token and of the top N. Host inputs give numpy results, device inputs device
results (``transfer.rows`` / ``transfer.back``), as every cuda op.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int32

from . import transfer
from .block import sum_f64, sum_i32
from .target import TPB

__all__ = ["logprobs", "logprobs_kernel"]


@cuda.jit(cache=True)
def logprobs_kernel(x, tokens, vals, ids, n, lp, rank, top_ids, top_lp):
    """One block per row: token -1 gives NaN / -1 / ids -1 / NaN; else the token's
    log-probability and rank, and those of the top ``n`` (``vals`` / ``ids``: the
    row's top ``kk >= min(n, V)``, descending), padded with -1 / -inf."""
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    sh_f64 = cuda.shared.array(TPB, float64)
    sh_i32 = cuda.shared.array(TPB, int32)
    t = tokens[b]
    kk = vals.shape[1]
    if t < 0:
        if tid == 0:
            lp[b] = float32(np.nan)
            rank[b] = -1
        for q in range(tid, n, TPB):
            top_ids[b, q] = -1
            top_lp[b, q] = float32(np.nan)
        return
    row = x[b]
    m = np.float64(vals[b, 0])
    if not (m > -np.inf and m < np.inf):
        m = 0.0
    xt = row[t]
    acc = 0.0
    cnt = 0
    for i in range(tid, row.shape[0], TPB):
        v = row[i]
        if v > -np.inf:
            acc += math.exp(np.float64(v) - m)
        if v > xt:
            cnt += 1
    w = sum_f64(acc, sh_f64)
    c = sum_i32(cnt, sh_i32)
    lse = math.log(w)
    if tid == 0:
        lp[b] = float32((np.float64(xt) - m) - lse)
        rank[b] = c + 1
    for q in range(tid, n, TPB):
        v = vals[b, q] if q < kk else float32(-np.inf)
        if v > -np.inf:
            top_ids[b, q] = ids[b, q]
            top_lp[b, q] = float32((np.float64(v) - m) - lse)
        else:
            top_ids[b, q] = -1
            top_lp[b, q] = float32(-np.inf)


def logprobs(logits, tokens, n, stream=0):
    """``(logprob float32 (B,), rank int32 (B,), top_ids int32 (B, n), top_logprobs
    float32 (B, n))`` of ``(B, V)`` logits and tokens (B,) (-1: flagged), n >= 0."""
    from .ops import topk

    rows, host = transfer.rows(logits, stream)
    B, V = rows.shape
    n = int(n)
    if transfer.is_device(tokens):
        tok = tokens
    else:
        tok = np.ascontiguousarray(tokens, dtype=np.int32)
        if tok.shape != (B,):
            raise ValueError(f"tokens has shape {tok.shape}, expected ({B},)")
        if B and (int(tok.min()) < -1 or int(tok.max()) >= V):
            raise ValueError(f"logprobs: token outside [-1, V={V})")
        tok = cuda.to_device(tok, stream=stream)
    lp = cuda.device_array(B, np.float32, stream=stream)
    rank = cuda.device_array(B, np.int32, stream=stream)
    top_ids = cuda.device_array((B, n), np.int32, stream=stream)
    top_lp = cuda.device_array((B, n), np.float32, stream=stream)
    if B:
        vals, ids = topk(rows, min(max(n, 1), V), stream=stream)
        logprobs_kernel[B, TPB, stream](rows, tok, vals, ids, n, lp, rank, top_ids, top_lp)
    return tuple(transfer.back(a, host, stream) for a in (lp, rank, top_ids, top_lp))
