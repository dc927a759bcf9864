"""C kernel of ``fastsample.reference.logprobs`` (``csrc/fs_logprobs.c``).

The top ``max(n, 1)`` of each row come from the C top-k (``fs_topk_checked``: the
block-maxima passes; the first value is the row max), then ``fs_logprobs`` makes one
pass over the same row while it is in cache, for the float64 log-sum-exp (the core's
exps: 512-bit at AVX-512) and the rank count; row ranges on the thread pool for large
batches. Agrees with the reference to 1 float32 ulp or 1e-9 absolute; ranks, ids and
the padding exactly.
"""

from __future__ import annotations

import numpy as np

from . import core
from ._util import f32, ffi, i64, lib, over_rows, workspace

__all__ = ["logprobs"]


def logprobs(logits, tokens, n, *, isa=None):
    """``(logprob float32 (B,), rank int32 (B,), top_ids int32 (B, n), top_logprobs
    float32 (B, n))`` of float32 ``(B, V)`` logits and int tokens (B,) (-1: flagged)."""
    x = f32(logits)
    B, V = x.shape
    n = int(n)
    t = i64(tokens)
    if t.shape != (B,):
        raise ValueError(f"C backend logprobs: tokens has shape {t.shape}, expected ({B},)")
    kk = min(max(n, 1), V)
    lp = np.empty(B, np.float32)
    rank = np.empty(B, np.int32)
    top_ids = np.empty((B, n), np.int32)
    top_lp = np.empty((B, n), np.float32)
    if B == 0:
        return lp, rank, top_ids, top_lp
    invalid = np.zeros(B, np.uint8)
    vals = np.empty((B, kk), np.float32)
    idx = np.empty((B, kk), np.int32)
    # dtypes and layouts are this function's own: no checks per buffer (B = 1 latency)
    fb = ffi.from_buffer
    xp, tp, vp, ip = fb("float[]", x), fb("int64_t[]", t), fb("float[]", vals), fb("int32_t[]", idx)
    fp, lpp, rp = fb("uint8_t[]", invalid), fb("float[]", lp), fb("int32_t[]", rank)
    tip, tlp = (fb("int32_t[]", top_ids), fb("float[]", top_lp)) if n else (ffi.NULL, ffi.NULL)
    level = core._level(isa)
    nbytes = core._topk_bytes(V)

    def run(a, b):
        ws, size = workspace("topk", np.uint8, nbytes)
        for r in range(a, b):  # row by row: the LSE pass reads the row top-k left in cache
            core._check(lib.fs_topk_checked(xp + r * V, 1, V, kk, vp + r * kk, ip + r * kk,
                                            fp + r, ws, size, level), "logprobs")
            core._check(lib.fs_logprobs(xp + r * V, 1, V, tp + r, vp + r * kk, ip + r * kk, kk,
                                        n, lpp + r, rp + r, tip + r * n if n else tip,
                                        tlp + r * n if n else tlp, level), "logprobs")

    over_rows(B, run, parallel=B * V >= core._PARALLEL_MIN)
    return lp, rank, top_ids, top_lp
