"""Token constraints of docs/spec.md §10 on the GPU: the packed bitmask and the
AllowedTokens / BadWords / MinTokens edits.

- ``bitmask_kernel``: one block per row, threads striding over the row; thread i reads
  logit i and word i / 32 (a warp's 32 consecutive tokens share one word: one load,
  broadcast), writes the masked value, and raises the row's ``bad`` flag for a NaN or
  +inf anywhere (allowed or not: the input's validity, docs/spec.md §7).
- ``ban_kernel``: ``-inf`` at (row, id) pairs. BadWords and MinTokens decide their
  pairs from host state (the chain's history and positions live on the host), so the
  device work is one tiny kernel.
- ``allowed_tokens``: the ids packed into one bitmask row, then ``bitmask_kernel``.

On cuda the bitmask is a masked copy made before the fused canonical kernel (one pass
that reads and writes the row); the CPU kernels read it inside their first pass.
Host logits give numpy results and device logits device arrays, as the other ops;
``out``: None (a new array) or the logits themselves (in place).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from fastsample.bitmask import pack_ids

from . import transfer
from .target import TPB

__all__ = ["allowed_tokens", "apply_token_bitmask", "bad_words", "ban_pairs", "min_tokens",
           "pack_ids"]

_NEG_INF = np.float32(-np.inf)


@cuda.jit(cache=True)
def bitmask_kernel(x, bitmask, rows, out, bad, poison):
    """out[b, i] = x[b, i] if token i is allowed by bitmask row rows[b] (-1: all), else
    -inf; bad[b] = 1 when x[b] holds a NaN or +inf. ``poison``: such a row's out[b, 0]
    becomes NaN, so the kernels after this one see an invalid row (the sampling path's
    masked copy; never the in-place op)."""
    b = cuda.blockIdx.x
    r = rows[b]
    V = x.shape[1]
    found = False
    for i in range(cuda.threadIdx.x, V, cuda.blockDim.x):
        v = x[b, i]
        if not v < np.float32(np.inf):
            found = True
        if r >= 0 and ((bitmask[r, i >> 5] >> np.uint32(i & 31)) & np.uint32(1)) == 0:
            v = _NEG_INF
        out[b, i] = v
    if found:
        cuda.atomic.max(bad, b, 1)
    if poison:
        cuda.syncthreads()
        if cuda.threadIdx.x == 0 and bad[b] != 0:
            out[b, 0] = np.float32(np.nan)


@cuda.jit(cache=True)
def ban_kernel(out, rows, ids, keep_bad):
    """out[rows[j], ids[j]] = -inf; ``keep_bad``: not over a NaN or +inf (a chain's
    invalid input row stays invalid)."""
    j = cuda.grid(1)
    if j < rows.shape[0]:
        if not keep_bad or out[rows[j], ids[j]] < np.float32(np.inf):
            out[rows[j], ids[j]] = _NEG_INF


def _device_words(bitmask, stream):
    """A uint32 device view of a host or device int32/uint32 bitmask (no host copy of a
    device one)."""
    if transfer.is_device(bitmask):
        d = bitmask if hasattr(bitmask, "copy_to_host") else cuda.as_cuda_array(bitmask)
        return d.view(np.uint32) if np.dtype(d.dtype) == np.int32 else d
    return cuda.to_device(np.ascontiguousarray(bitmask).view(np.uint32), stream=stream)


def apply_token_bitmask(logits, bitmask, rows, out=None, stream=0, poison=False):
    """Mask every token the packed bitmask disallows (docs/internals.md).

    ``bitmask``: uint32 (R, W) (int32 viewed), host or device; ``rows``: int64 (B,),
    -1 = unconstrained. ``poison``: a row holding a NaN or +inf anywhere comes out
    with a NaN (invalid for the sampling kernels; see ``bitmask_kernel``). Returns the
    masked logits.
    """
    x, host = transfer.rows(logits, stream)
    B = x.shape[0]
    dst = transfer.edit_target(logits, x, host, out, stream)
    if B:
        words = _device_words(bitmask, stream)
        r = transfer.upload(B, stream, (rows, np.int64))[0]
        bad = cuda.to_device(np.zeros(B, np.int32), stream=stream)
        bitmask_kernel[B, TPB, stream](x, words, r, dst, bad, bool(poison))
    return transfer.back_into(dst, host, out, stream)


def allowed_tokens(logits, ids, out=None, stream=0):
    """Only ``ids`` (int64, in [0, V), the same for every row) may be drawn."""
    B, V = np.shape(logits) if not transfer.is_device(logits) else logits.shape
    return apply_token_bitmask(logits, pack_ids(ids, V), np.zeros(B, np.int64), out, stream)


def ban_pairs(x, rows, ids, stream=0, keep_bad=False):
    """``-inf`` at ``x[rows[j], ids[j]]`` (host int64 arrays; x a device array)."""
    n = len(rows)
    if n:
        dr, di = transfer.pack([np.ascontiguousarray(rows, np.int64),
                                np.ascontiguousarray(ids, np.int64)], stream)
        ban_kernel[(n + TPB - 1) // TPB, TPB, stream](x, dr, di, bool(keep_bad))


def _edit(logits, out, stream, pairs, keep_bad=False):
    """The edit stages' frame: copy (unless in place), then ban the (row, id) pairs
    that ``pairs(B, V)`` gives."""
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    dst = transfer.edit_target(logits, x, host, out, stream)
    if dst is not x:
        dst.copy_to_device(x, stream=stream)
    rows, ids = pairs(B, V)
    ban_pairs(dst, rows, ids, stream, keep_bad)
    return transfer.back_into(dst, host, out, stream)


def bad_words(logits, history, tokens, offsets, out=None, stream=0, keep_bad=False):
    """vLLM ``bad_words`` (docs/internals.md): the banned ids are found from the host
    histories, then banned on the device."""
    tokens = np.asarray(tokens, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)

    def pairs(B, V):
        if len(history) != B:
            raise ValueError(f"history has {len(history)} rows but the batch has B={B} rows")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
            raise ValueError(f"bad_words token outside [0, V={V})")
        rows, ids = [], []
        for b, h in enumerate(history):
            h = np.asarray(h, dtype=np.int64).ravel()
            for s in range(offsets.size - 1):
                seq = tokens[offsets[s]:offsets[s + 1]]
                n = seq.size - 1
                if n <= h.size and np.array_equal(h[h.size - n:], seq[:-1]):
                    rows.append(b)
                    ids.append(int(seq[-1]))
        return rows, ids

    return _edit(logits, out, stream, pairs, keep_bad)


def min_tokens(logits, n, stop_ids, position, out=None, stream=0, keep_bad=False):
    """Ban ``stop_ids`` in row b while ``position[b] < n[b]`` (host or device n,
    position)."""
    stop = np.asarray(stop_ids, dtype=np.int64).ravel()

    def pairs(B, V):
        if stop.size and (stop.min() < 0 or stop.max() >= V):
            raise ValueError(f"min_tokens stop id outside [0, V={V})")
        nn = n.copy_to_host(stream=stream) if transfer.is_device(n) else n
        pos = position.copy_to_host(stream=stream) if transfer.is_device(position) else position
        nn = np.broadcast_to(np.asarray(nn, np.int64), (B,))
        pos = np.broadcast_to(np.asarray(pos, np.uint64), (B,))
        active = [b for b in range(B) if nn[b] > 0 and int(pos[b]) < int(nn[b])]
        return np.repeat(active, stop.size), np.tile(stop, len(active))

    return _edit(logits, out, stream, pairs, keep_bad)
