"""Token constraints of docs/spec.md §10 (numba CPU backend): the packed bitmask and
the AllowedTokens / BadWords / MinTokens edits.

- ``apply_token_bitmask(logits, bitmask, rows, out=None)``: a masked copy, 32 tokens
  per bitmask word (the word is read once per 32 logits; a compile-time trip count
  of 32 vectorises the select), rows in parallel for B > 1.
- ``allowed_tokens``: the ids packed into one bitmask row, then the same kernel.
- ``bad_words`` / ``min_tokens``: sparse edits (they write -inf at a few ids).

Every function follows the edit stages' ``out=`` convention (docs/internals.md):
None gives a new array, ``out is logits`` edits in place, another float32 array of
the logits' shape receives a copy of each row (made in the kernel's threads), then
the edit. ``mask_row`` is the masked load shared with the fused canonical kernel
(kernels/cpu/canonical.py), which reads the bitmask in its first pass.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

from fastsample.bitmask import pack_ids

from .simd import _want_512
from .stage_common import _history_args, _logits, _out

__all__ = [
    "allowed_tokens",
    "apply_token_bitmask",
    "bad_words",
    "mask_row",
    "masked_max",
    "masked_words",
    "min_tokens",
    "pack_ids",
]

_NJ = dict(cache=True, nogil=True)
_PJ = dict(cache=True, nogil=True, parallel=True)
_W = 32   # tokens per bitmask word


def _vmax(builder, a, b):
    """Lane-wise ``llvm.maximum`` (NaN if either is NaN) of two float32 vectors."""
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(a.type, [a.type, a.type]),
        f"llvm.maximum.v{a.type.count}f32")
    return builder.call(fn, [a, b])


def _masked_intrinsic(store):
    """The masked load over the ``n`` tokens from ``s`` (both multiples of 32; no bounds
    check: the caller guarantees ``s + n <= len(src)`` (and ``len(dst)``) and
    ``(s + n) / 32 <= len(words)``): token i is allowed where bit ``i % 32`` of
    ``words[i // 32]`` is set. Returns ``(float32 max, bool bad)``: the max of the
    masked values (meaningless when ``bad``) and whether any ``src[i]`` is NaN or
    +inf, allowed or not. ``store``: also ``dst[i] = src[i]``
    where allowed, else ``-inf`` (``dst`` may be ``src``). Each word is loaded once
    and bit-cast to the 32 lanes' mask (a mask-register move on AVX-512; LLVM's
    auto-vectoriser does not find this from the scalar loop).
    """
    def f32c1(a):
        return (isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1
                and a.layout == "C")

    def typer(src, dst, words, s, n):
        # src may be read-only (a caller's logits), dst too when it is src (a caller
        # that never stores passes src for dst)
        if not (f32c1(src) and (dst is None or dst == src or (f32c1(dst) and dst.mutable))
                and isinstance(words, types.Array) and words.dtype == types.uint32
                and words.ndim == 1 and words.layout == "C"):
            return None
        return types.Tuple((types.float32, types.boolean))

    def codegen(context, builder, signature, args):
        _want_512(builder)
        if store:
            sig, (src, dst, words, s, n) = signature.args, args
            tys = sig
        else:
            sig0, (src, words, s, n) = signature.args, args
            tys = (sig0[0], sig0[0], sig0[1], sig0[2], sig0[3])
            dst = src
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)
        lanes = 32
        fty = ir.VectorType(ir.FloatType(), lanes)
        sa = context.make_array(tys[0])(context, builder, src)
        da = context.make_array(tys[1])(context, builder, dst)
        wa = context.make_array(tys[2])(context, builder, words)
        start = context.cast(builder, s, tys[3], types.intp)
        count = context.cast(builder, n, tys[4], types.intp)
        ninf = ir.Constant(fty, [float("-inf")] * lanes)
        pinf = ir.Constant(fty, [float("inf")] * lanes)
        acc_ptr = cgutils.alloca_once_value(builder, ninf)
        bad_ptr = cgutils.alloca_once_value(
            builder, ir.Constant(ir.VectorType(ir.IntType(1), lanes), [0] * lanes))
        with cgutils.for_range_slice(builder, start, builder.add(start, count),
                                     ir.Constant(intp, lanes), intp=intp) as (i, _):
            x = builder.load(builder.bitcast(builder.gep(sa.data, [i]), fty.as_pointer()),
                             align=4)
            w = builder.load(builder.gep(wa.data, [builder.lshr(i, ir.Constant(intp, 5))]))
            # lane j's bit is bit j of the word (LLVM's vector of i1 is little-endian):
            # one mask-register move on AVX-512
            keep = builder.bitcast(w, ir.VectorType(ir.IntType(1), lanes))
            y = builder.select(keep, x, ninf)
            if store:
                builder.store(y, builder.bitcast(builder.gep(da.data, [i]), fty.as_pointer()),
                              align=4)
            # an ordered compare-select (one vmaxps): a NaN is reported through bad
            acc = builder.load(acc_ptr)
            builder.store(builder.select(builder.fcmp_ordered(">", acc, y), acc, y), acc_ptr)
            nonfinite = builder.fcmp_unordered(">=", x, pinf)   # NaN or +inf
            builder.store(builder.or_(builder.load(bad_ptr), nonfinite), bad_ptr)
        acc = builder.load(acc_ptr)
        m = lanes
        while m > 1:   # horizontal llvm.maximum, halving
            m //= 2
            lo = builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined),
                                        ir.Constant(ir.VectorType(i32, m), list(range(m))))
            hi = builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined),
                                        ir.Constant(ir.VectorType(i32, m), list(range(m, 2 * m))))
            acc = _vmax(builder, lo, hi)
        mx = builder.extract_element(acc, ir.Constant(i32, 0))
        bad = builder.icmp_unsigned("!=", builder.bitcast(builder.load(bad_ptr), i32),
                                    ir.Constant(i32, 0))
        return context.make_tuple(builder, signature.return_type, [mx, bad])

    if store:
        def impl(typingctx, src, dst, words, s, n):
            ret = typer(src, dst, words, s, n)
            return None if ret is None else (ret(src, dst, words, s, n), codegen)
    else:
        def impl(typingctx, src, words, s, n):
            ret = typer(src, None, words, s, n)
            return None if ret is None else (ret(src, words, s, n), codegen)
    return impl


masked_words = intrinsic(_masked_intrinsic(store=True))
masked_words.__doc__ = ("``(src, dst, words, s, n) -> (float32 max, bool bad)``: the masked "
                        "load, written to ``dst`` (see ``_masked_intrinsic``).")
masked_max = intrinsic(_masked_intrinsic(store=False))
masked_max.__doc__ = ("``(src, words, s, n) -> (float32 max, bool bad)``: the masked load's "
                      "max and NaN/+inf check, nothing written (see ``_masked_intrinsic``).")


@numba.njit(**_NJ)
def mask_row(src, words, dst):
    """dst[v] = src[v] where bit v of the packed ``words`` is set, else -inf (``dst``
    may be ``src``). Bits past the row's length are ignored. Returns whether any src
    value is NaN or +inf, allowed or not (an invalid input row, docs/spec.md §7)."""
    n = src.shape[0]
    nfull = n // _W
    ninf = np.float32(-np.inf)
    _, bad = masked_words(src, dst, words, 0, nfull * _W)
    if nfull * _W < n:
        word = np.uint32(words[nfull])
        for v in range(nfull * _W, n):
            x = src[v]
            bad = bad or not x < np.inf
            dst[v] = x if (word >> np.uint32(v - nfull * _W)) & np.uint32(1) else ninf
    return bad


@numba.njit(**_NJ)
def _bitmask_at(x, bitmask, rows, out, inplace, b):
    r = rows[b]
    if r >= 0:
        mask_row(x[b], bitmask[r], out[b])
    elif not inplace:
        out[b, :] = x[b]


@numba.njit(**_NJ)
def _bitmask_serial(x, bitmask, rows, out, inplace):
    for b in range(x.shape[0]):
        _bitmask_at(x, bitmask, rows, out, inplace, b)


@numba.njit(**_PJ)
def _bitmask_parallel(x, bitmask, rows, out, inplace):
    for b in prange(x.shape[0]):
        _bitmask_at(x, bitmask, rows, out, inplace, b)


def apply_token_bitmask(logits, bitmask, rows, out=None):
    """Mask every token the packed bitmask disallows (``-inf``).

    Parameters
    ----------
    logits : float32 (B, V)
    bitmask : uint32 (R, W), C-contiguous, W >= ceil(V / 32)
    rows : int64 (B,), in [-1, R): row b uses bitmask row ``rows[b]``, -1: none
    out : None, ``logits`` (in place) or a float32 (B, V) array
    """
    x = _logits(logits)
    out, inplace = _out(x, logits, out)
    B = x.shape[0]
    if B == 0:
        return out
    bm = np.ascontiguousarray(bitmask, dtype=np.uint32)
    r = np.ascontiguousarray(rows, dtype=np.int64)
    kernel = _bitmask_serial if B == 1 else _bitmask_parallel  # one row: no thread pool
    kernel(x, bm, r, out, inplace)
    return out


def allowed_tokens(logits, ids, out=None):
    """Only ``ids`` (int64, in [0, V), the same for every row) may be drawn: the ids
    packed into one bitmask row that every row uses."""
    B, V = np.shape(logits)
    words = pack_ids(np.ascontiguousarray(ids, dtype=np.int64), V)
    return apply_token_bitmask(logits, words, np.zeros(B, np.int64), out=out)


@numba.njit(**_NJ)
def _ban(o, ids):
    ninf = np.float32(-np.inf)
    for t in ids:
        o[t] = ninf


@numba.njit(**_NJ)
def _bad_words_at(x, out, hist, hoff, tokens, offsets, inplace, b):
    o = out[b]
    if not inplace:
        o[:] = x[b]
    h0 = hoff[b]
    hn = hoff[b + 1] - h0
    ninf = np.float32(-np.inf)
    for s in range(offsets.shape[0] - 1):
        a = offsets[s]
        e = offsets[s + 1]
        plen = e - a - 1          # the prefix: every token but the last
        if plen > hn:
            continue
        match = True
        for i in range(plen):
            if hist[h0 + hn - plen + i] != tokens[a + i]:
                match = False
                break
        if match:
            o[tokens[e - 1]] = ninf


@numba.njit(**_NJ)
def _bad_words_serial(x, out, hist, hoff, tokens, offsets, inplace):
    for b in range(x.shape[0]):
        _bad_words_at(x, out, hist, hoff, tokens, offsets, inplace, b)


@numba.njit(**_PJ)
def _bad_words_parallel(x, out, hist, hoff, tokens, offsets, inplace):
    for b in prange(x.shape[0]):
        _bad_words_at(x, out, hist, hoff, tokens, offsets, inplace, b)


def bad_words(logits, history, tokens, offsets, out=None):
    """vLLM ``bad_words``: for each sequence ``tokens[offsets[i]:offsets[i + 1]]`` (the
    same for every row, each non-empty), ban its last token when the row's history
    ends with the rest."""
    x, out, inplace, hist, hoff = _history_args(logits, history, out)
    if hist is None:
        return out
    B = x.shape[0]
    tok = np.ascontiguousarray(tokens, dtype=np.int64)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    kernel = _bad_words_serial if B == 1 else _bad_words_parallel
    kernel(x, out, hist, hoff, tok, off, inplace)
    return out


@numba.njit(**_NJ)
def _min_tokens_rows(x, out, n, stop, position, inplace):
    for b in range(x.shape[0]):
        if not inplace:
            out[b, :] = x[b]
        if position[b] < np.uint64(max(n[b], 0)):
            _ban(out[b], stop)


def min_tokens(logits, n, stop_ids, position, out=None):
    """Ban ``stop_ids`` in row b while ``position[b] < n[b]``."""
    x = _logits(logits)
    B = x.shape[0]
    out, inplace = _out(x, logits, out)
    if B == 0:
        return out
    _min_tokens_rows(x, out, np.ascontiguousarray(n, dtype=np.int64),
                     np.ascontiguousarray(stop_ids, dtype=np.int64),
                     np.ascontiguousarray(position, dtype=np.uint64), inplace)
    return out
