"""Speculative decoding verification (docs/spec.md §11): the CUDA kernel of ``verify_rows``.

Same signature and result as ``fastsample.reference.verify_rows``; one block per
request, its K+1 rows in turn. For each row the block finds the max and the count of
finite values (a shared-memory tree), then every float64 sum is chunk-ordered: thread
t adds the weights of its contiguous chunk of columns in id order, thread 0 adds the
TPB partials in order (so sums differ from the reference's sequential ones only by
rounding), and a draw walks the partials to the chunk where the running sum passes
``u * W``, then that chunk token by token. The accept test and the step logic run on
thread 0; every branch is taken by the whole block (decisions go through shared
memory), so ``syncthreads`` is reached by every thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, int32, int64

from ..shared import uniform
from . import transfer
from .target import TPB

__all__ = ["verify_kernel", "verify_rows"]

_NEG_INF = -math.inf


@cuda.jit(device=True)
def _token(ids, lo, sparse, c):
    return int64(ids[lo + c]) if sparse else int64(c)


@cuda.jit(device=True)
def _weight(kind, v, m, W, q, has_q, b, j, t, dj):
    """Kind 0: ``exp(v - m)``; kind 1: ``max(0, exp(v - m) / W - q_j(t))`` (0 if masked)."""
    if not math.isfinite(v):
        return 0.0
    w = math.exp(v - m)
    if kind == 0:
        return w
    qt = float64(q[b, j, t]) if has_q else (1.0 if t == dj else 0.0)
    x = w / W - qt
    return max(0.0, x)


@cuda.jit(device=True)
def _chunk_sums(kind, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b, j, dj, part):
    """Every thread: its chunk's weight sum into ``part[tid]`` (id order); synced."""
    tid = cuda.threadIdx.x
    cs = (ncol + TPB - 1) // TPB
    s = 0.0
    for c in range(tid * cs, min((tid + 1) * cs, ncol)):
        s += _weight(kind, float64(block[r, c]), m, W, q, has_q, b, j,
                     _token(ids, lo, sparse, c), dj)
    part[tid] = s
    cuda.syncthreads()


@cuda.jit(device=True)
def _pick(kind, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b, j, dj, part, total,
          target):
    """Thread 0: the first token whose running sum (chunk-ordered) exceeds ``target``;
    if rounding leaves none, the last token of positive weight."""
    cs = (ncol + TPB - 1) // TPB
    acc = 0.0
    first = 0
    for t in range(TPB):
        if acc + part[t] > target:
            first = t
            break
        acc += part[t]
        first = t + 1
    last = int64(-1)
    cum = acc
    for c in range(first * cs, ncol):
        wt = _weight(kind, float64(block[r, c]), m, W, q, has_q, b, j,
                     _token(ids, lo, sparse, c), dj)
        if wt > 0.0:
            cum += wt
            last = c
            if cum > target:
                return _token(ids, lo, sparse, c)
    if last < 0:   # nothing positive after the chosen chunk: the last one anywhere
        for c in range(ncol):
            if _weight(kind, float64(block[r, c]), m, W, q, has_q, b, j,
                       _token(ids, lo, sparse, c), dj) > 0.0:
                last = c
    return _token(ids, lo, sparse, last) if last >= 0 else int64(-1)


@cuda.jit
def verify_kernel(block, ids, offsets, sparse, d, q, has_q, num_draft, seed, position,
                  tokens, accepted, bad_q):
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    part = cuda.shared.array(TPB, float64)
    mx = cuda.shared.array(TPB, float64)
    cnt = cuda.shared.array(TPB, int32)
    state = cuda.shared.array(2, float64)   # W
    ctrl = cuda.shared.array(2, int32)      # 0: go on (1) / stop (0); 1: bad q seen
    K1 = tokens.shape[1]
    n = num_draft[b]
    if tid == 0:
        ctrl[0] = 1
    cuda.syncthreads()
    for j in range(n + 1):
        if ctrl[0] == 0:
            break
        r = b * K1 + j
        lo = int64(offsets[r]) if sparse else int64(0)
        ncol = min(int64(offsets[r + 1]) - lo, int64(block.shape[1])) if sparse \
            else int64(block.shape[1])
        # max and count of finite values: strided, then a tree over TPB slots
        m = _NEG_INF
        k = 0
        for c in range(tid, ncol, TPB):
            v = float64(block[r, c])
            if math.isfinite(v):
                k += 1
                m = max(m, v)
        mx[tid] = m
        cnt[tid] = k
        cuda.syncthreads()
        step = TPB // 2
        while step > 0:
            if tid < step:
                mx[tid] = max(mx[tid], mx[tid + step])
                cnt[tid] += cnt[tid + step]
            cuda.syncthreads()
            step //= 2
        m = mx[0]
        count = cnt[0]
        cuda.syncthreads()
        if count == 0:
            break   # the caller flags the request
        dj = int64(d[b, j]) if j < n else int64(-1)
        _chunk_sums(0, block, r, ids, lo, sparse, ncol, m, 1.0, q, has_q, b, j, dj, part)
        if tid == 0:
            W = 0.0
            for t in range(TPB):
                W += part[t]
            state[1] = W
        cuda.syncthreads()
        W = state[1]
        pos = np.uint64(position[b]) + np.uint64(j)
        if j == n:   # every draft accepted: the bonus token, spec §5's plain draw
            if tid == 0:
                tokens[b, j] = _pick(0, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b,
                                     j, dj, part, W, uniform(seed[b], pos, 0) * W)
            break
        # the draft probabilities the rule reads: q_j(d_j) and q_j on p_j's support
        if tid == 0:
            ctrl[1] = 0
        cuda.syncthreads()
        if has_q:
            for c in range(tid, ncol, TPB):
                if math.isfinite(float64(block[r, c])) and \
                        not float64(q[b, j, _token(ids, lo, sparse, c)]) >= 0.0:
                    ctrl[1] = 1
            if tid == 0 and not float64(q[b, j, dj]) >= 0.0:
                ctrl[1] = 1
        cuda.syncthreads()
        if ctrl[1] != 0:
            if tid == 0:
                bad_q[b] = j
            break
        if tid == 0:   # the accept test
            col = int64(-1)
            if sparse:
                a, e = lo, lo + ncol
                while a < e:
                    mid = (a + e) >> 1
                    if ids[mid] < dj:
                        a = mid + 1
                    else:
                        e = mid
                if a < lo + ncol and ids[a] == dj:
                    col = a - lo
            elif dj < ncol:
                col = dj
            here = False
            pd = 0.0
            if col >= 0:
                v = float64(block[r, col])
                if math.isfinite(v):
                    here = True
                    pd = math.exp(v - m) / W
            qd = float64(q[b, j, dj]) if has_q else 1.0
            if count == 1:
                ok = here
            elif qd == 0.0:
                ok = pd > 0.0
            else:
                ok = uniform(seed[b], pos, 2) < pd / qd
            if ok:
                tokens[b, j] = dj
                accepted[b] = j + 1
            else:
                ctrl[0] = 0
        cuda.syncthreads()
        if ctrl[0] == 1:
            continue
        # rejected: the residual draw (a greedy row emits its one token)
        if count == 1:
            if tid == 0:
                for c in range(ncol):
                    if math.isfinite(float64(block[r, c])):
                        tokens[b, j] = _token(ids, lo, sparse, c)
            break
        _chunk_sums(1, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b, j, dj, part)
        if tid == 0:
            R = 0.0
            for t in range(TPB):
                R += part[t]
            ctrl[1] = 1
            if R > 0.0:
                tokens[b, j] = _pick(1, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b,
                                     j, dj, part, R, uniform(seed[b], pos, 3) * R)
                ctrl[1] = 0
        cuda.syncthreads()
        if ctrl[1] == 1:   # residual zero everywhere (rounding only): the draw from p, u3
            _chunk_sums(0, block, r, ids, lo, sparse, ncol, m, 1.0, q, has_q, b, j, dj, part)
            if tid == 0:
                tokens[b, j] = _pick(0, block, r, ids, lo, sparse, ncol, m, W, q, has_q, b,
                                     j, dj, part, W, uniform(seed[b], pos, 3) * W)
        break


def verify_rows(block, ids, offsets, draft_tokens, draft_probs, num_draft, seed, position,
                stream=0):
    """``fastsample.reference.verify_rows`` (see there) on the device: host arrays in,
    numpy out; device ``block`` in, device results out."""
    B, K = draft_tokens.shape
    host = not transfer.is_device(block)
    x, _ = transfer.rows(block, stream)
    rows = x.shape[0]
    if rows != B * (K + 1):
        raise ValueError(f"block has {rows} rows; expected B*(K+1) = {B * (K + 1)}")

    def dev(a, dtype):
        if transfer.is_device(a):
            return a
        return cuda.to_device(np.ascontiguousarray(a, dtype=dtype), stream=stream)

    sparse = ids is not None
    ids_d = dev(ids if sparse and np.size(ids) else np.zeros(1, np.int32), np.int32)
    offs_d = dev(offsets if sparse else np.zeros(1, np.int64), np.int64)
    has_q = draft_probs is not None
    q_d = dev(draft_probs if has_q else np.zeros((1, 1, 1), np.float32), np.float32)
    d_d = dev(draft_tokens if K else np.zeros((B, 1), np.int32), np.int32)
    tokens = cuda.to_device(np.full((B, K + 1), -1, np.int32), stream=stream)
    accepted = cuda.to_device(np.zeros(B, np.int32), stream=stream)
    bad_q = cuda.to_device(np.full(B, -1, np.int32), stream=stream)
    if B:
        verify_kernel[B, TPB, stream](x, ids_d, offs_d, sparse, d_d, q_d, has_q,
                                      dev(num_draft, np.int64), dev(seed, np.uint64),
                                      dev(position, np.uint64), tokens, accepted, bad_q)
    if host:
        return (tokens.copy_to_host(stream=stream), accepted.copy_to_host(stream=stream),
                bad_q.copy_to_host(stream=stream))
    return tokens, accepted, bad_q
