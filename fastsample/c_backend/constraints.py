"""Python wrappers of the C token-constraint kernels (``csrc/fs_constraints.c``) and of
the fused canonical kernels under a packed bitmask (``fs_sample_canonical_masked``,
``fs_truncate_canonical_masked`` in ``csrc/fastsample.c``; ``core`` hands them its
calls that carry ``bitmask=``).

The bitmask is uint32 ``(R, W)`` with W >= ceil(V/32) and ``rows`` int64 (B,) in
``[-1, R)`` (docs/spec.md §10; ``fastsample.bitmask`` checks them first). The edit
functions take the stages' ``out=`` (None, the logits for in place, or a float32
array of their shape); rows are spread over threads like the other C stages.
"""

from __future__ import annotations

import numpy as np

from ..bitmask import pack_ids
from ._util import buf, f32, f64, ffi, i64, lib, over_rows, u64, workspace
from .core import _PARALLEL_MIN, _canonical_bytes, _check, _from_buffer, _level
from .stages import _check as _stage_check
from .stages import _history_rows, _logits, _out

_U32 = np.dtype(np.uint32)

__all__ = [
    "allowed_tokens",
    "apply_token_bitmask",
    "bad_words",
    "min_tokens",
    "sample_canonical_masked",
    "sample_row_masked",
]


def _words(bitmask):
    return np.ascontiguousarray(bitmask, dtype=np.uint32)


def sample_canonical_masked(logits, top_k, top_p, min_p, temperature, min_keep,
                            temperature_last, seed, position, bitmask, bitmask_rows, *,
                            isa=None):
    """``core.sample_canonical`` with a packed bitmask read in each row's first pass."""
    x = f32(logits)
    B, V = x.shape
    out = np.empty(B, np.int32)
    if B == 0:
        return out
    bm = _words(bitmask)
    rows = i64(bitmask_rows)
    if rows.shape != (B,):
        raise ValueError(f"bitmask_rows has shape {rows.shape}, expected ({B},)")
    args = [buf(i64(np.broadcast_to(top_k, (B,)))), buf(f64(np.broadcast_to(top_p, (B,)))),
            buf(f64(np.broadcast_to(min_p, (B,)))), buf(f64(np.broadcast_to(temperature, (B,)))),
            buf(i64(np.broadcast_to(min_keep, (B,))))]
    sp, pp = buf(u64(np.broadcast_to(seed, (B,)))), buf(u64(np.broadcast_to(position, (B,))))
    xp, op, rp = buf(x), buf(out), buf(rows)
    bp = ffi.from_buffer("uint32_t[]", bm)
    t_last = 1 if temperature_last else 0
    nbytes = _canonical_bytes(V)
    level = _level(isa)

    def run(a, b):
        ws, size = workspace("canonical", np.uint8, nbytes)
        _check(lib.fs_sample_canonical_masked(
            xp + a * V, b - a, V, *(p + a for p in args), t_last, sp + a, pp + a, bp,
            bm.shape[0], bm.shape[1], rp + a, op + a, ws, size, level), "sample_canonical")

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    return out


def sample_row_masked(row, top_k, top_p, min_p, temperature, min_keep, temperature_last,
                      seed, position, bitmask, *, isa=None):
    """``core.sample_row`` under the row's packed bitmask words (uint32 1-D)."""
    V = row.shape[0]
    words = bitmask if bitmask.dtype is _U32 and bitmask.flags.c_contiguous \
        else _words(bitmask)
    ws, size = workspace("canonical", np.uint8, _canonical_bytes(V))
    out, _ = workspace("token", np.int32, 1)
    _check(lib.fs_sample_canonical_row_masked(
        _from_buffer("float[]", f32(row)), V, top_k, top_p, min_p, temperature, min_keep,
        1 if temperature_last else 0, seed, position, _from_buffer("uint32_t[]", words),
        words.shape[0], out, ws, size, _level(isa)), "sample_canonical")
    return out[0]


def apply_token_bitmask(logits, bitmask, rows, out=None, *, isa=None):
    """Mask (-inf) every token the packed bitmask disallows; ``rows[b] = -1``: unchanged."""
    x = _logits(logits)
    B, V = x.shape
    out = _out(x, logits, out)
    if B == 0:
        return out
    bm = _words(bitmask)
    r = i64(rows)
    bp = ffi.from_buffer("uint32_t[]", bm)
    rp = buf(r)
    level = _level(isa)

    def run(a, b):
        _stage_check(lib.fs_apply_token_bitmask(buf(x[a:b]), buf(out[a:b]), b - a, V, bp,
                                                bm.shape[0], bm.shape[1], rp + a, level),
                     "apply_token_bitmask", V)

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    return out


def allowed_tokens(logits, ids, out=None):
    """Only ``ids`` may be drawn: the ids packed into one bitmask row every row uses."""
    B, V = np.shape(logits)
    ids = i64(np.asarray(ids).ravel())
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"allowed token outside [0, {V})")
    return apply_token_bitmask(logits, pack_ids(ids, V), np.zeros(B, np.int64), out=out)


def bad_words(logits, history, tokens, offsets, out=None):
    """vLLM ``bad_words`` over token sequences (the same for every row)."""
    x, out, hist, hoff = _history_rows(logits, history, out)
    if hist is None:
        return out
    B, V = x.shape
    tok = i64(np.asarray(tokens).ravel()) if len(tokens) else np.zeros(1, np.int64)
    seq = i64(offsets)

    def run(a, b):
        _stage_check(lib.fs_bad_words(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(hist), hist.size,
                                      buf(hoff[a:b + 1]), buf(tok), len(tokens), buf(seq),
                                      seq.size - 1), "bad_words", V)

    over_rows(B, run, parallel=False)
    return out


def min_tokens(logits, n, stop_ids, position, out=None):
    """Ban ``stop_ids`` in row b while ``position[b] < n[b]``."""
    x = _logits(logits)
    B, V = x.shape
    out = _out(x, logits, out)
    if B == 0:
        return out
    stop = i64(np.asarray(stop_ids).ravel())
    sp = buf(stop) if stop.size else ffi.NULL
    _stage_check(lib.fs_min_tokens(buf(x), buf(out), B, V, buf(i64(np.broadcast_to(n, (B,)))),
                                   buf(u64(np.broadcast_to(position, (B,)))), sp, stop.size),
                 "min_tokens", V)
    return out
