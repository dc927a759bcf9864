"""C kernels of the fused canonical chain (and its truncations alone), the draw and
the array operations.

Thin wrappers over ``csrc/fastsample.c`` with the signatures of
``fastsample.reference`` (``docs/internals.md``). Each wrapper converts its
arguments once (no copy for arrays already of the right dtype and layout), hands C
typed pointers and a workspace owned by the calling thread, and raises
``ValueError`` when C rejects a size. cffi releases the GIL around every C call, so
a large batch is split into row ranges run on separate cores (the first range on
the calling thread).

Every kernel exists once per instruction-set level (``ISAS``: 0 portable C, 1
AVX2+FMA, 2 AVX-512, as far as this CPU runs them). ``ISA`` is the level used by
default: the best one, or ``FASTSAMPLE_C_ISA`` when set lower. Every function takes
a keyword ``isa`` to force a level (tests run each).
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np

from ._util import buf, f32, f64, ffi, i64, lib, over_rows, u64, workspace

__all__ = [
    "INVALID", "ISA", "ISAS", "ISA_NAMES", "argmax", "draw", "greedy", "invalid_rows",
    "log_softmax", "log_softmax_checked", "sample_canonical", "sample_row", "softmax",
    "softmax_checked", "token_logprob", "topk",
    "topk_checked", "truncate_canonical", "truncate_row", "warmup",
]

ISA_NAMES = {0: "base", 1: "avx2", 2: "avx512"}
#: Every instruction-set level this CPU runs.
ISAS = tuple(range(lib.fs_cpu_isa() + 1))
#: The level used unless a call asks for another.
ISA = min(ISAS[-1], int(os.environ.get("FASTSAMPLE_C_ISA", ISAS[-1])))
INVALID = lib.FS_INVALID_ROW

_ERRORS = {
    lib.FS_E_SIZE: "bad array sizes",
    lib.FS_E_WORKSPACE: "workspace too small",
    lib.FS_E_PARAM: "parameter out of range",
    lib.FS_E_TOKEN: "token outside [-1, V)",
}
# Below this many logits in a call, one thread does all rows (a thread hand-off
# costs more than it saves on a few rows).
_PARALLEL_MIN = 1 << 20
# For arrays whose dtype and layout the wrapper itself guarantees: ffi.from_buffer
# without ``buf``'s checks (a measurable share of a B = 1 call).
_from_buffer = ffi.from_buffer


def _check(rc, op):
    if rc != lib.FS_OK:
        raise ValueError(f"C backend {op}: {_ERRORS.get(rc, f'error {rc}')}")


def _level(isa):
    return ISA if isa is None else int(isa)


@functools.lru_cache(maxsize=64)
def _canonical_bytes(V):
    return lib.fs_canonical_ws_bytes(V)


def _masked(name):
    """``constraints``' wrapper ``name`` (the bitmask paths; imported on first use, then
    kept: an import statement per token costs a microsecond)."""
    fn = _MASKED.get(name)
    if fn is None:
        from . import constraints

        fn = _MASKED[name] = getattr(constraints, name)
    return fn


_MASKED: dict = {}


def _rows2d(x):
    """(float32 C-contiguous (B, V) array, was 1-D)."""
    x = f32(x)
    return (x[None, :], True) if x.ndim == 1 else (x, False)


def _per_row(a, B, conv):
    return conv(np.broadcast_to(conv(a), (B,)))


# ----------------------------------------------------------------------------------
# the fused chain and the draw


def sample_canonical(logits, top_k, top_p, min_p, temperature, min_keep, temperature_last,
                     seed, position, bitmask=None, bitmask_rows=None, *, isa=None):
    """Draw one token per row with the canonical chain of ``fs.sample``.

    Parameters
    ----------
    logits : float32 (B, V), C-contiguous. Not modified.
    top_k, min_keep : int64 (B,)
    top_p, min_p, temperature : float64 (B,)
    temperature_last : bool
        True: llama.cpp order (temperature last); False: Hugging Face order.
    seed, position : uint64 (B,)
    bitmask, bitmask_rows : uint32 (R, W), int64 (B,), optional
        A packed token bitmask read in each row's first pass (``constraints``).
    isa : int, optional
        Instruction-set level (see ``ISAS``); default ``ISA``.

    Returns
    -------
    numpy.ndarray of int32, shape (B,)
        The reference chain's tokens; ``INVALID`` (-2) for a row with NaN, +inf or
        every logit masked.
    """
    if bitmask is not None:
        return _masked("sample_canonical_masked")(
            logits, top_k, top_p, min_p, temperature, min_keep, temperature_last, seed,
            position, bitmask, bitmask_rows, isa=isa)
    x = f32(logits)
    B, V = x.shape
    out = np.empty(B, np.int32)
    if B == 0:
        return out
    if B == 1:  # the latency case: scalars instead of seven one-element buffers
        out[0] = sample_row(x[0], int(top_k[0]), float(top_p[0]), float(min_p[0]),
                            float(temperature[0]), int(min_keep[0]), temperature_last,
                            int(seed[0]), int(position[0]), isa=isa)
        return out
    args = [buf(i64(top_k)), buf(f64(top_p)), buf(f64(min_p)), buf(f64(temperature)),
            buf(i64(min_keep))]
    sp, pp, xp, op = buf(u64(seed)), buf(u64(position)), buf(x), buf(out)
    nbytes = _canonical_bytes(V)
    t_last = 1 if temperature_last else 0
    level = _level(isa)

    def run(a, b):
        ws, size = workspace("canonical", np.uint8, nbytes)
        _check(lib.fs_sample_canonical(xp + a * V, b - a, V, *(p + a for p in args), t_last,
                                       sp + a, pp + a, op + a, ws, size, level),
               "sample_canonical")

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    return out


def sample_row(row, top_k, top_p, min_p, temperature, min_keep, temperature_last, seed,
               position, bitmask=None, *, isa=None):
    """``sample_canonical`` of one row with scalar parameters: the per-token latency path.

    ``row``: float32 (V,), C-contiguous; ``top_k``, ``min_keep`` (>= 1): int; ``top_p``,
    ``min_p``, ``temperature``: float; ``seed``, ``position``: int in [0, 2**64);
    ``bitmask``: the row's packed bitmask words (uint32) or None.
    Returns the token as an int, ``INVALID`` (-2) for an invalid row.
    """
    if bitmask is not None:
        return _masked("sample_row_masked")(row, top_k, top_p, min_p, temperature, min_keep,
                                            temperature_last, seed, position, bitmask, isa=isa)
    V = row.shape[0]
    ws, size = workspace("canonical", np.uint8, _canonical_bytes(V))
    out, _ = workspace("token", np.int32, 1)
    _check(lib.fs_sample_canonical_row(
        _from_buffer("float[]", f32(row)), V, top_k, top_p, min_p, temperature, min_keep,
        1 if temperature_last else 0, seed, position, out, ws, size, _level(isa)),
        "sample_canonical")
    return out[0]


_TRUNC = threading.local()


def _truncate_buffers(n):
    """This thread's output buffers of the truncations, for at least ``n`` survivors:
    ``(ids, vals, slot, ids_ptr, vals_ptr, slot_ptr)`` (``slot``: one int64 for C's
    count), kept between calls and grown when too small like ``workspace``'s, but as
    arrays so that results are sliced out of them."""
    have = getattr(_TRUNC, "bufs", None)
    if have is None or have[0].size < n:
        ids, vals = np.empty(max(n, 1), np.int32), np.empty(max(n, 1), np.float32)
        count = np.zeros(1, np.int64)
        have = (ids, vals, count, _from_buffer("int32_t[]", ids), _from_buffer("float[]", vals),
                _from_buffer("int64_t[]", count))
        _TRUNC.bufs = have
    return have


def _truncate_range(xp, V, params, a, b, invalid, level, masked=None):
    """Survivors of rows [a, b) (``fs_truncate_canonical``): (id parts, value parts, counts).

    The output goes to this thread's buffers, grown when C reports a row that does not
    fit (the next call resumes from that row); each call's result is copied out.
    ``masked``: ``(bitmask pointer, R, W, rows pointer)`` of a packed token bitmask
    (``fs_truncate_canonical_masked``).
    """
    ws, size = workspace("canonical", np.uint8, _canonical_bytes(V))
    offsets = np.empty(b - a + 1, np.int64)  # one call's offsets (and the unfit row's)
    counts = np.empty(b - a, np.int64)
    op, fp = _from_buffer("int64_t[]", offsets), _from_buffer("uint8_t[]", invalid)
    need = V  # a row fits in V, so every call makes progress
    id_parts, val_parts = [], []
    row = a
    while row < b:
        ids, vals, done, ip, vp, dp = _truncate_buffers(need)
        if masked is None:
            rc = lib.fs_truncate_canonical(xp + row * V, b - row, V, *(p + row for p in params),
                                           ip, vp, ids.size, op, fp + row, dp, ws, size, level)
        else:
            bp, R, W, rp = masked
            rc = lib.fs_truncate_canonical_masked(
                xp + row * V, b - row, V, *(p + row for p in params), bp, R, W, rp + row, ip, vp,
                ids.size, op, fp + row, dp, ws, size, level)
        _check(rc, "truncate_canonical")
        got = int(done[0])
        total = int(offsets[got])
        counts[row - a:row - a + got] = np.diff(offsets[:got + 1])
        id_parts.append(ids[:total].copy())
        val_parts.append(vals[:total].copy())
        row += got
        if row < b:
            need = max(2 * ids.size, int(offsets[got + 1] - offsets[got]))
    return id_parts, val_parts, counts


def truncate_canonical(logits, top_k, top_p, min_p, min_keep, bitmask=None, bitmask_rows=None,
                       *, isa=None):
    """The survivors of the canonical chain's truncations, per row.

    Row b keeps exactly the finite entries of ``reference.min_p(reference.top_p(
    reference.top_k(x, k, mk), p, mk), pmin, mk)`` (TopK -> TopP -> MinP with the
    ``min_keep`` floor; no temperature, no draw), found with the passes of
    ``sample_canonical`` without materialising a masked row.

    Parameters
    ----------
    logits : float32 (B, V), C-contiguous. Not modified.
    top_k, min_keep : int64 (B,) (or a scalar for every row)
        ``top_k <= 0`` disables TopK; ``min_keep >= 1``.
    top_p, min_p : float64 (B,) (or a scalar)
        ``top_p >= 1`` and ``min_p <= 0`` disable their stage.
    bitmask, bitmask_rows : uint32 (R, W), int64 (B,), optional
        A packed token bitmask read in each row's first pass.
    isa : int, optional
        Instruction-set level (see ``ISAS``); default ``ISA``.

    Returns
    -------
    ids : int32 (N,)
        Row b's survivors at ``[offsets[b], offsets[b + 1])``, ascending.
    vals : float32 (N,)
        ``logits[b, ids]`` for the same entries.
    offsets : int64 (B + 1,)
    invalid : bool (B,)
        True for a row with NaN, +inf or every logit ``-inf`` (it has no survivors).
    """
    x = f32(logits)
    B, V = x.shape
    invalid = np.zeros(B, np.bool_)  # C writes 0 / 1 bytes
    offsets = np.zeros(B + 1, np.int64)
    if B == 0:
        return np.empty(0, np.int32), np.empty(0, np.float32), offsets, invalid
    params = [buf(_per_row(top_k, B, i64)), buf(_per_row(top_p, B, f64)),
              buf(_per_row(min_p, B, f64)), buf(_per_row(min_keep, B, i64))]
    xp, level = buf(x), _level(isa)
    parts = {}
    masked = None
    if bitmask is not None:
        bm = np.ascontiguousarray(bitmask, dtype=np.uint32)
        rows = i64(bitmask_rows)
        masked = (ffi.from_buffer("uint32_t[]", bm), bm.shape[0], bm.shape[1], buf(rows))

    def run(a, b):
        parts[a] = _truncate_range(xp, V, params, a, b, invalid, level, masked)

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    starts = sorted(parts)
    np.cumsum(np.concatenate([parts[a][2] for a in starts]), out=offsets[1:])
    ids = np.concatenate([p for a in starts for p in parts[a][0]])
    vals = np.concatenate([p for a in starts for p in parts[a][1]])
    return ids, vals, offsets, invalid


def truncate_row(row, top_k, top_p, min_p, min_keep, bitmask=None, *, isa=None):
    """``truncate_canonical`` of one row with scalar parameters: the per-token latency path.

    ``row``: float32 (V,), C-contiguous; ``top_k``, ``min_keep`` (>= 1): int; ``top_p``,
    ``min_p``: float; ``bitmask``: the row's packed bitmask words (uint32) or None.
    Returns ``(ids, vals, invalid)``: int32 and float32 arrays of the survivors (ids
    ascending) and a bool, True for an invalid row (no survivors).
    """
    if bitmask is not None:
        words = np.ascontiguousarray(bitmask, dtype=np.uint32)
        ids, vals, offsets, bad = truncate_canonical(
            f32(row)[None, :], top_k, top_p, min_p, min_keep, words[None, :],
            np.zeros(1, np.int64), isa=isa)
        return ids, vals, bool(bad[0])
    V = row.shape[0]
    ws, size = workspace("canonical", np.uint8, _canonical_bytes(V))
    ids, vals, count, ip, vp, cp = _truncate_buffers(V)
    _check(lib.fs_truncate_canonical_row(
        _from_buffer("float[]", f32(row)), V, top_k, top_p, min_p, min_keep, ip, vp, ids.size, cp,
        ws, size, _level(isa)), "truncate_canonical")
    c = int(count[0])
    if c < 0:
        return np.empty(0, np.int32), np.empty(0, np.float32), True
    return ids[:c].copy(), vals[:c].copy(), False


def draw(logits, seed, position, *, isa=None):
    """docs/spec.md §5 draw (stream 0) per row: int32 (B,), -1 for a row with no finite logit."""
    x = f32(logits)
    B, V = x.shape
    out = np.empty(B, np.int32)
    if B == 0:
        return out
    sp, pp, xp, op = buf(u64(seed)), buf(u64(position)), buf(x), buf(out)
    nbytes = _canonical_bytes(V)
    level = _level(isa)

    def run(a, b):
        ws, size = workspace("canonical", np.uint8, nbytes)
        _check(lib.fs_draw(xp + a * V, b - a, V, sp + a, pp + a, op + a, ws, size, level), "draw")

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    return out


def _row_results(fn, logits, dtype, isa, op):
    """``fn(x, B, V, out, isa)`` over all rows in one call: its (B,) ``dtype`` results."""
    x = f32(logits)
    B, V = x.shape
    out = np.zeros(B, dtype)
    if B:
        _check(fn(buf(x), B, V, buf(out), _level(isa)), op)
    return out


def argmax(logits, *, isa=None):
    """The first maximum of each row: int32 (B,), -1 for a row with no finite logit."""
    return _row_results(lib.fs_argmax, logits, np.int32, isa, "argmax")


def greedy(logits, *, isa=None):
    """One-hot mask: the first maximum keeps its logit, every other token is ``-inf``."""
    x = f32(logits)
    out = np.full(x.shape, -np.inf, np.float32)
    tokens = argmax(x, isa=isa)
    rows = np.flatnonzero(tokens >= 0)
    out[rows, tokens[rows]] = x[rows, tokens[rows]]
    return out


def invalid_rows(logits, *, isa=None):
    """Boolean (B,): rows with NaN or +inf, or with every logit ``-inf``."""
    return _row_results(lib.fs_invalid_rows, logits, np.uint8, isa, "invalid_rows").view(bool)


def token_logprob(logits, tokens, *, isa=None):
    """Natural-log softmax probability of ``tokens[b]`` in row b: float64 (B,),
    ``-inf`` where the token is masked, NaN where it is -1."""
    x = f32(logits)
    B, V = x.shape
    out = np.empty(B, np.float64)
    if B:
        _check(lib.fs_token_logprob(buf(x), B, V, buf(_per_row(tokens, B, i64)), buf(out),
                                    _level(isa)), "token_logprob")
    return out


# ----------------------------------------------------------------------------------
# array operations


# softmax / log_softmax: rows in blocks of at least this many logits, claimed by the
# threads one block at a time (a thread slowed by another busy thread on its core, such
# as an OpenMP pool spinning after its own call, takes fewer blocks); the C kernels
# stream their stores from 2^19 logits a call, which every such block reaches.
_SOFTMAX_BLOCK = 1 << 19


def _over_row_blocks(B, V, run):
    """``run(a, b)`` over blocks of rows of a (B, V) batch: one call for a small batch,
    else blocks of at least ``_SOFTMAX_BLOCK`` logits (and of B / 16 rows) that the
    threads take in turn. Each row's result does not depend on its block."""
    if B <= 0:
        return
    if B * V < _PARALLEL_MIN:
        run(0, B)
        return
    step = max(-(-_SOFTMAX_BLOCK // V), B // 16, 1)
    blocks = iter(range(0, B, step))  # next() on it is atomic under the GIL

    def worker(_a, _b):
        for a in blocks:
            run(a, min(a + step, B))

    over_rows(-(-B // step), worker)


def softmax_checked(x, temperature=1.0, *, isa=None):
    """``softmax`` of (B, V) rows and each row's validity (NaN, +inf or every entry
    ``-inf``) from the kernel's own max pass: ``(out, invalid bool (B,))``; an invalid
    row's output is undefined. Rows split over the thread pool for large batches.

    At AVX-512 and temperature 1 the weights are float32 exps (relative error ~2e-7)
    summed in float64: probabilities within 1e-6 relative of the reference.
    """
    rows, _ = _rows2d(x)
    B, V = rows.shape
    out = np.empty((B, V), np.float32)
    invalid = np.zeros(B, np.uint8)
    t = _per_row(temperature, B, f64)
    xp, tp, op, fp, level = buf(rows), buf(t), buf(out), buf(invalid), _level(isa)

    def run(a, b):
        _check(lib.fs_softmax_checked(xp + a * V, b - a, V, tp + a, op + a * V, fp + a, level),
               "softmax")

    _over_row_blocks(B, V, run)
    return out, invalid.view(bool)


def softmax(x, temperature=1.0, *, isa=None):
    """Softmax of ``x / temperature`` over each row's finite entries (masked -> 0).

    ``x`` is ``(V,)`` or ``(B, V)``; ``temperature`` (> 0) a scalar or per-row array.
    Returns float32 of the shape of ``x``.
    """
    out, _ = softmax_checked(x, temperature, isa=isa)
    return out[0] if np.ndim(x) == 1 else out


def log_softmax_checked(x, *, isa=None):
    """``log_softmax`` of (B, V) rows and each row's validity from the same pass:
    ``(out, invalid bool (B,))`` (at AVX-512: float32 exps summed in float64)."""
    rows, _ = _rows2d(x)
    B, V = rows.shape
    out = np.empty((B, V), np.float32)
    invalid = np.zeros(B, np.uint8)
    xp, op, fp, level = buf(rows), buf(out), buf(invalid), _level(isa)

    def run(a, b):
        _check(lib.fs_log_softmax_checked(xp + a * V, b - a, V, op + a * V, fp + a, level),
               "log_softmax")

    _over_row_blocks(B, V, run)
    return out, invalid.view(bool)


def log_softmax(x, *, isa=None):
    """Log-softmax over each row's finite entries (masked -> ``-inf``), float32."""
    out, _ = log_softmax_checked(x, isa=isa)
    return out[0] if np.ndim(x) == 1 else out


@functools.lru_cache(maxsize=64)
def _topk_bytes(V):
    return lib.fs_topk_ws_bytes(V)


def _topk_run(rows, k, invalid, isa):
    """(values, indices) of ``rows`` ((B, V) float32 C-contiguous); ``invalid`` (bool
    (B,)) receives the rows' flags, or None: then a NaN row raises ``ValueError``."""
    B, V = rows.shape
    k = int(k)
    if not 0 <= k <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    values = np.empty((B, k), np.float32)
    indices = np.empty((B, k), np.int32)
    if B == 0 or (k == 0 and invalid is None):
        return values, indices
    level = ISA if isa is None else int(isa)
    ws, size = workspace("topk", np.uint8, _topk_bytes(V)) if k else (ffi.NULL, 0)
    # the arrays' dtype and layout are known here (a quarter of this call's overhead at B = 1)
    xp = _from_buffer("float[]", rows)
    vp, ip = (_from_buffer("float[]", values), _from_buffer("int32_t[]", indices)) if k else (
        ffi.NULL, ffi.NULL)
    fp = ffi.NULL if invalid is None else _from_buffer("uint8_t[]", invalid)
    if B * V < _PARALLEL_MIN:  # the latency case: one call, no closure
        if invalid is None:
            _check(lib.fs_topk(xp, B, V, k, vp, ip, ws, size, level), "topk")
        else:
            _check(lib.fs_topk_checked(xp, B, V, k, vp, ip, fp, ws, size, level), "topk")
        return values, indices

    def run(a, b):
        w, n = (ws, size) if a == 0 else (
            workspace("topk", np.uint8, _topk_bytes(V)) if k else (ffi.NULL, 0))
        vo, io = (vp + a * k, ip + a * k) if k else (vp, ip)
        if invalid is None:
            rc = lib.fs_topk(xp + a * V, b - a, V, k, vo, io, w, n, level)
        else:
            rc = lib.fs_topk_checked(xp + a * V, b - a, V, k, vo, io, fp + a, w, n, level)
        _check(rc, "topk")

    over_rows(B, run, parallel=B * V >= _PARALLEL_MIN)
    return values, indices


def topk(x, k, *, isa=None):
    """The k largest entries per row: exactly k, descending, ties to the lower id.

    Parameters
    ----------
    x : array_like, shape (V,) or (B, V)
    k : int, 0 <= k <= V
    isa : int, optional
        Instruction-set level (see ``ISAS``); default ``ISA``.

    Returns
    -------
    values : float32, shape (..., k)
    indices : int32, shape (..., k)

    Raises
    ------
    ValueError
        k out of range, or a row holding NaN.
    """
    rows, one = _rows2d(x)
    values, indices = _topk_run(rows, k, None, isa)
    return (values[0], indices[0]) if one else (values, indices)


def topk_checked(x, k, *, isa=None):
    """``topk`` and the rows' validity (spec §7) from the same pass over each row.

    Parameters
    ----------
    x : float32 (B, V), C-contiguous
    k : int, 0 <= k <= V
    isa : int, optional
        Instruction-set level (see ``ISAS``); default ``ISA``.

    Returns
    -------
    values : float32 (B, k)
    indices : int32 (B, k)
    invalid : bool (B,)
        True for a row with NaN, +inf or every entry ``-inf`` (as ``invalid_rows``);
        that row's values and indices are undefined (indices still in ``[0, V)``).
    """
    rows = f32(x)
    if rows.ndim != 2:
        raise ValueError(f"topk_checked needs a (B, V) array; got shape {rows.shape}")
    invalid = np.zeros(rows.shape[0], np.bool_)  # C writes 0 / 1 bytes
    values, indices = _topk_run(rows, k, invalid, isa)
    return values, indices, invalid


def warmup():
    """Nothing to compile: the C kernels are built at install time. Returns 0.0."""
    return 0.0
