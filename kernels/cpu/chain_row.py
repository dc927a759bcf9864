"""The chain plan's per-token path on numba: one call per token for a common chain.

The numba twin of ``csrc/fs_chain.c``: for a chain ``[Penalties] [DRY] -> TopK ->
TopP -> MinP -> [XTC / Temperature ...] -> Dist`` on one row (``plan.row_program``),
``chain_row`` runs the whole step in one compiled call: the edits into a per-thread
copy of the row, then fs.sample's fused kernel, or the truncation followed by the
stages on the survivors and the draw. It composes the row kernels the stage-by-stage
route calls, in its order on the same data, so its token is the chain's; what it
saves is the Python glue between them. Returns -2 when the general route must decide
(an invalid or emptied row, a NaN/+inf at an id an edit writes).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from fastsample.row_threads import over_rows

from ..shared import uniform
from .canonical import _sample_one, _truncate_one
from .draw import draw_row
from .logprobs import logprobs_row
from .history_stages import _breaker_table, _dry_serial, _penalties_serial
from .stage_common import STREAM_XTC
from .transforms import _temperature_row
from .truncations import _xtc_row

__all__ = ["chain_program", "chain_row", "chain_row_logprobs", "chain_rows"]

_NJ = dict(cache=True, nogil=True, error_model="numpy")
_XTC, _TEMPERATURE = 1, 2
_AFTER = {"xtc": _XTC, "temperature": _TEMPERATURE}
# f64 slots: repeat, frequency, presence, dry multiplier, dry base, top_p, min_p, t, a[4], b[4]
# i64 slots: penalties, penalty last_n, dry, allowed, dry last_n, fused, top_k, min_keep,
#            t_last, n_after, kind[4], min_keep[4]
_F, _I = 16, 18


@numba.njit(**_NJ)
def _hides_bad_value(row, hist):
    for i in range(hist.shape[0]):
        t = hist[i]
        if t < 0 or t >= row.shape[0]:
            return True
        x = row[t]
        if x != x or x == np.inf:
            return True
    return False


@numba.njit(**_NJ)
def _chain_row_run(row, work, hist, f, i, brk, seed, position):
    """``(token, survivors' ids, the row the draw read, its drawn index)``; the last
    three are empty / -1 when the chain is fused or the token is -2."""
    # A NaN/+inf is checked only where an edit writes (the penalty window, the
    # followers DRY penalises): everywhere else the kernel's own first pass sees it.
    V = row.shape[0]
    n = hist.shape[0]
    offsets = np.array([0, n], np.int64)
    src = row.reshape(1, V)
    out = work.reshape(1, V)
    x = row
    if i[0] != 0:   # Penalties: copies the row into work, then edits its window
        w = n if i[1] < 0 or i[1] > n else i[1]
        if _hides_bad_value(row, hist[n - w:]):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        _penalties_serial(src, out, hist, offsets, f[0:1], f[1:2], f[2:3], i[1:2], False)
        x = work
    if i[2] != 0:   # DRY, in place when Penalties already wrote work
        if _dry_serial(out if i[0] != 0 else src, out, hist, offsets, f[3:4], f[4:5],
                       i[3:4], i[4:5], brk, i[0] != 0):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        x = work
    if i[5] != 0:   # the rest is fs.sample's fused chain
        tok = _sample_one(x, i[6], f[5], f[6], f[7], i[7], i[8] != 0, seed, position)
        return tok, np.empty(0, np.int32), np.empty(0, np.float32), -1
    ids, vals, invalid = _truncate_one(x, i[6], f[5], f[6], i[7])
    if invalid or vals.shape[0] == 0:
        return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
    cur = vals
    for s in range(i[9]):
        nxt = np.empty_like(cur)
        if i[10 + s] == _XTC:
            _xtc_row(cur, nxt, f[8 + s], f[12 + s], i[14 + s],
                     uniform(seed, position, STREAM_XTC))
        else:
            _temperature_row(cur, nxt, f[8 + s])
        cur = nxt
    k = draw_row(cur, uniform(seed, position, 0))
    if k < 0:
        return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
    return ids[k], ids, cur, k


@numba.njit(**_NJ)
def _chain_row_kernel(row, work, hist, f, i, brk, seed, position):
    return _chain_row_run(row, work, hist, f, i, brk, seed, position)[0]


@numba.njit(**_NJ)
def _chain_row_logprobs_kernel(row, work, hist, f, i, brk, seed, position, n, lp, rank,
                               top_ids, top_lp):
    """``_chain_row_kernel`` of a chain that is not fused, with the processed
    log-probabilities of the survivors' row its draw read (logprobs_row), top ids
    mapped back to token ids."""
    tok, ids, cur, k = _chain_row_run(row, work, hist, f, i, brk, seed, position)
    if k < 0:
        return tok
    kk = min(max(n, 1), cur.shape[0])
    logprobs_row(cur, k, n, np.empty(kk, np.float32), np.empty(kk, np.int32), lp, rank,
                 top_ids, top_lp)
    for q in range(n):
        if top_ids[q] >= 0:
            top_ids[q] = ids[top_ids[q]]
    return tok


class _Program:
    """The packed parameters, the breaker table and V of one chain."""

    __slots__ = ("V", "f", "i", "brk")

    def __init__(self, f, i, brk, V):
        self.f, self.i, self.brk, self.V = f, i, brk, V


def chain_program(program, V):
    """The packed form of ``plan.row_program``'s description for vocabulary size ``V``."""
    f = np.zeros(_F, np.float64)
    i = np.zeros(_I, np.int64)
    pen = program.get("penalties")
    if pen is not None:
        i[0] = 1
        f[0], f[1], f[2], i[1] = pen
    dry = program.get("dry")
    breakers = np.zeros(0, np.int64)
    if dry is not None:
        i[2] = 1
        f[3], f[4], i[3], i[4], breakers = dry
    i[6], f[5], f[6], i[7] = program["truncations"]
    fused = program.get("fused")
    if fused is not None:
        i[5] = 1
        f[7], t_last = fused
        i[8] = 1 if t_last else 0
    after = program.get("after", ())
    if len(after) > 4:
        raise ValueError("chain_program: at most 4 stages after the truncations")
    i[9] = len(after)
    for s, (kind, a, b, mk) in enumerate(after):
        i[10 + s], f[8 + s], f[12 + s], i[14 + s] = _AFTER[kind], a, b, mk
    return _Program(f, i, _breaker_table(breakers, V), V)


_TLS = threading.local()


def _work(V):
    work = getattr(_TLS, "work", None)
    if work is None or work.shape[0] < V:   # kept per thread: no (V,) array per token
        work = _TLS.work = np.empty(V, np.float32)
    return work[:V]


def chain_row(row, history, prog, seed, position):
    """One token of the chain ``prog`` (``chain_program``) on ``row`` (float32 (V,),
    C-contiguous) with the history window ``history`` (int64, checked in [0, V)):
    the token, or -2 for the general route."""
    V = prog.V
    if row.shape[0] != V:
        raise ValueError(f"chain_row: row has {row.shape[0]} logits, the program {V}")
    return int(_chain_row_kernel(row, _work(V), history, prog.f, prog.i, prog.brk,
                                 np.uint64(seed), np.uint64(position)))


def chain_row_logprobs(row, history, prog, seed, position, n):
    """``chain_row`` of a program that is not fused, with the processed log-probabilities
    of the survivors' row its draw read (docs/spec.md §9): ``(token, logprob, rank,
    top_ids int32 (n,), top_logprobs float32 (n,))``, or None for the general route."""
    V = prog.V
    if row.shape[0] != V:
        raise ValueError(f"chain_row: row has {row.shape[0]} logits, the program {V}")
    if prog.i[5] != 0:
        raise ValueError("chain_row_logprobs: the program must not be fused")
    lp = np.empty(1, np.float32)
    rank = np.empty(1, np.int32)
    top_ids = np.empty(n, np.int32)
    top_lp = np.empty(n, np.float32)
    tok = _chain_row_logprobs_kernel(row, _work(V), history, prog.f, prog.i, prog.brk,
                                     np.uint64(seed), np.uint64(position), n, lp, rank,
                                     top_ids, top_lp)
    if tok == -2:
        return None
    return int(tok), lp[0], int(rank[0]), top_ids, top_lp


def chain_rows(rows, histories, progs, seed, position):
    """``chain_row`` of every row of ``rows`` (float32 (B, V), C-contiguous) with its
    own history window and program (per-row parameters), rows split over threads by
    ``over_rows`` (the kernel releases the GIL). int32 (B,): the tokens, -2 where the
    general route must decide."""
    B = rows.shape[0]
    out = np.empty(B, np.int32)

    def run(a, b):
        for r in range(a, b):
            out[r] = chain_row(rows[r], histories[r], progs[r], int(seed[r]), int(position[r]))

    over_rows(B, run)
    return out
