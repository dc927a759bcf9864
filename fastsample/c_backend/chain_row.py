"""The chain plan's per-token path on C: one call per token for a common chain.

``chain_program(program, V)`` turns ``plan.row_program``'s description (a dict) into
the C struct ``fs_chain_params`` once per chain and V; ``chain_row(row, history,
prog, seed, position)`` then runs the whole step (``csrc/fs_chain.c``): the edits
(LogitBias, Penalties, DRY, NoRepeatNGram; the call's bitmask, if any, before them) into
a workspace copy of the row, the truncations (or a whole-distribution stage first, or
nothing: the stages read the whole row), the stages on the survivors and the draw (or
a Mirostat terminal).
Returns the token, or -2 when the general route must decide (an invalid or emptied
row, or a NaN/+inf at an id the edits touch).
"""

from __future__ import annotations

import threading

import numpy as np

from ..row_threads import program_rows
from ._util import buf, ffi, lib, workspace
from .core import _canonical_bytes, _level
from .stages import _breaker_table

__all__ = ["chain_program", "chain_row", "chain_row_logprobs", "chain_rows"]

_AFTER = {op: getattr(lib, f"FS_CHAIN_{op.upper()}") for op in (
    "xtc", "temperature", "top_k", "top_p", "min_p", "typical", "top_n_sigma", "epsilon", "eta",
    "top_a", "p_less", "tail_free", "dynamic_temperature", "smoothing")}
_FIRST = {**_AFTER, "mirostat": lib.FS_CHAIN_MIROSTAT, "mirostat_v2": lib.FS_CHAIN_MIROSTAT_V2,
          "whole_row": lib.FS_CHAIN_WHOLE_ROW}
_TERMINAL = {"mirostat": lib.FS_CHAIN_MIROSTAT, "mirostat_v2": lib.FS_CHAIN_MIROSTAT_V2,
             "greedy": lib.FS_CHAIN_GREEDY, "adaptive_p": lib.FS_CHAIN_ADAPTIVE_P}
_F32, _I64 = np.dtype(np.float32), np.dtype(np.int64)
_TLS = threading.local()


class _Program:
    """The C struct, the breaker table, the bias arrays the struct points at and V,
    kept together (the struct's pointer is passed on every token; its seed and position
    are set per call)."""

    __slots__ = ("V", "params", "table", "table_ptr", "bias")

    def __init__(self, params, table, V, bias):
        self.params, self.table, self.V, self.bias = params, table, V, bias
        self.table_ptr = buf(table)


def chain_program(program, V):
    """The C form of ``plan.row_program``'s description for vocabulary size ``V``."""
    p = ffi.new("fs_chain_params *")
    bias = program.get("bias")
    if bias is not None and bias[0].size:   # LogitBias first: ids ascending, < V (checked)
        ids, values = (np.ascontiguousarray(bias[0], np.int64),
                       np.ascontiguousarray(bias[1], np.float64))
        bias = (ids, values, buf(ids), buf(values))   # the struct points into these
        p.n_bias = ids.size
        p.bias_ids, p.bias_values = bias[2], bias[3]
    p.ngram = program.get("ngram", 0)
    pen = program.get("penalties")
    if pen is not None:
        p.penalties = 1
        p.repeat, p.frequency, p.presence, p.penalty_last_n = pen
    dry = program.get("dry")
    breakers = np.zeros(0, np.int64)
    if dry is not None:
        p.dry = 1
        p.dry_multiplier, p.dry_base, p.dry_allowed_length, p.dry_last_n, breakers = dry
    first = program.get("first")
    p.first_temperature = program.get("first_temperature", 1.0)
    if first is not None:   # a whole-distribution stage first (fs_whole_first_row)
        op, p.first_a, p.first_b, _, p.first_min_keep = first
        p.first = _FIRST[op]
    else:
        p.top_k, p.top_p, p.min_p, p.min_keep = program["truncations"]
    fused = program.get("fused")
    if fused is not None:
        p.fused = 1
        p.temperature, t_last = fused
        p.temperature_last = 1 if t_last else 0
    terminal = program.get("terminal")
    if terminal is not None:   # a Mirostat (its mu is set per call), Greedy or AdaptiveP
        # (its target; its averages are set per call)
        p.terminal = _TERMINAL[terminal[0]]
        p.terminal_m = terminal[1]
    after = program.get("after", ())
    if len(after) > lib.FS_CHAIN_MAX_AFTER:
        raise ValueError(f"chain_program: at most {lib.FS_CHAIN_MAX_AFTER} stages after the "
                         "truncations")
    p.n_after = len(after)
    for i, (op, a, b, c, mk) in enumerate(after):
        p.after[i] = _AFTER[op]
        p.after_a[i], p.after_b[i], p.after_c[i], p.after_min_keep[i] = a, b, c, mk
    return _Program(p, _breaker_table(breakers, V), V, bias)


def _buffers(V):
    """This thread's buffers for V, looked up once per V (a cffi pointer keeps its
    array alive, so these stay valid even if the workspace is later grown)."""
    w = getattr(_TLS, "bufs", None)
    if w is None or w[0] != V:
        small = np.zeros(3, np.int32)   # a one-entry z, the token, the rank
        lp = np.zeros(1, np.float32)
        w = _TLS.bufs = (V, *(workspace(kind, dtype, V)[0] for kind, dtype in (
            ("chain_work", np.float32), ("chain_ids", np.int32), ("chain_vals", np.float32),
            ("chain_tmp", np.float32), ("chain_counts", np.int32), ("chain_best", np.int32))),
            *workspace("chain_dws", np.float64, lib.fs_stage_dws_len(V)),
            *workspace("chain_canonical", np.uint8,
                       max(_canonical_bytes(V), lib.fs_topk_ws_bytes(V))),
            buf(small), small, buf(lp), lp)
    return w


def _args(row, history, prog, seed, position, isa):
    """The arguments of fs_chain_row but the token, and this thread's small buffers.

    The per-token path: the row and history pointers skip ``buf``'s dtype lookup when
    the dtype is the expected one (anything else still goes through ``buf``)."""
    V = prog.V
    if row.shape[0] != V:
        raise ValueError(f"chain_row: row has {row.shape[0]} logits, the program {V}")
    p = prog.params
    p.seed, p.position = seed, position
    n = history.shape[0]
    _, work, ids, vals, tmp, counts, best, dws, dws_len, ws, size, sp, small, lpp, lp = \
        _buffers(V)
    rp = (ffi.from_buffer("float[]", row, require_writable=False)
          if row.dtype is _F32 and row.flags.c_contiguous else buf(row))
    if n:
        hp = (ffi.from_buffer("int64_t[]", history, require_writable=False)
              if history.dtype is _I64 and history.flags.c_contiguous else buf(history))
        z, z_len = workspace("z", np.int32, n)
    else:
        hp, z, z_len = ffi.NULL, sp, 1
    return (rp, V, hp, n, p, prog.table_ptr, V, work, ids, vals, tmp, V, counts, best, z,
            z_len, dws, dws_len, ws, size, _level(isa)), (sp, small, lpp, lp)


def chain_row(row, history, prog, seed, position, mu=None, words=None, *, isa=None):
    """One token of the chain ``prog`` (``chain_program``) on ``row`` (float32 (V,),
    C-contiguous) with the history window ``history`` (int64, checked in [0, V)):
    the token, or -2 for the general route. A Mirostat program takes the row's
    ``mu`` and returns ``(token, log-probability of it among the kept tokens)``; an
    AdaptiveP program takes ``(ema_sum, ema_weight)`` as ``mu`` and returns the
    token's log-probability among the survivors before the reshaping.
    ``words``: the row's packed token bitmask (uint32, at least ceil(V/32) words),
    applied before every stage, or None."""
    if mu is not None:   # a Mirostat terminal after stages, or one first; AdaptiveP's
        if prog.params.terminal == lib.FS_CHAIN_ADAPTIVE_P:   # (ema_sum, ema_weight)
            prog.params.terminal_mu, prog.params.terminal_w = mu
        elif prog.params.terminal:
            prog.params.terminal_mu = mu
        else:
            prog.params.first_a = mu
    args, (sp, small, _, _) = _args(row, history, prog, seed, position, isa)
    if words is None:
        rc = lib.fs_chain_row(*args, sp + 1)
    else:   # the struct points at the words for this call only
        if words.dtype != np.uint32 or words.shape[0] < (prog.V + 31) // 32:
            raise ValueError("chain_row: words must be uint32, ceil(V/32) of them")
        wp = ffi.from_buffer("uint32_t[]", words, require_writable=False)
        prog.params.words = wp
        try:
            rc = lib.fs_chain_row(*args, sp + 1)
        finally:
            prog.params.words = ffi.NULL
    if rc == lib.FS_CHAIN_OK:
        tok = int(small[1])
        return tok if mu is None else (tok, float(prog.params.first_lp))
    if rc == lib.FS_CHAIN_FALLBACK:
        return -2 if mu is None else (-2, np.nan)
    raise ValueError(f"chain_row (C backend): error {rc}")


def chain_row_logprobs(row, history, prog, seed, position, n, *, isa=None):
    """``chain_row`` of a program that is not fused, with the processed log-probabilities
    of the survivors' row its draw read (docs/spec.md §9): ``(token, logprob, rank,
    top_ids int32 (n,), top_logprobs float32 (n,))``, or None for the general route."""
    args, (sp, small, lpp, lp) = _args(row, history, prog, seed, position, isa)
    top_ids = np.empty(n, np.int32)
    top_lp = np.empty(n, np.float32)
    rc = lib.fs_chain_row_logprobs(
        *args, n, lpp, sp + 2, ffi.from_buffer("int32_t[]", top_ids) if n else ffi.NULL,
        ffi.from_buffer("float[]", top_lp) if n else ffi.NULL, sp + 1)
    if rc == lib.FS_CHAIN_OK:
        return int(small[1]), lp[0], int(small[2]), top_ids, top_lp
    if rc == lib.FS_CHAIN_FALLBACK:
        return None
    raise ValueError(f"chain_row_logprobs (C backend): error {rc}")


def chain_rows(rows, histories, progs, seed, position, mus=None, words=None):
    """``chain_row`` of every row of ``rows`` (float32 (B, V), C-contiguous) with its
    own history window, program and bitmask words (``words``: a list, None where a row
    has none), over threads (``row_threads.program_rows``; a Mirostat program: with
    each row's ``mu``, and the log-probabilities back)."""
    return program_rows(chain_row, rows, histories, progs, seed, position, mus, words)
