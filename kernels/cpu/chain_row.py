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
from .history_stages import _breaker_table, _dry_serial, _penalties_serial
from .stage_common import STREAM_XTC
from .transforms import _temperature_row
from .truncations import _xtc_row

__all__ = ["chain_program", "chain_row", "chain_rows"]

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
def _chain_row_kernel(row, work, hist, f, i, brk, seed, position):
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
            return -2
        _penalties_serial(src, out, hist, offsets, f[0:1], f[1:2], f[2:3], i[1:2], False)
        x = work
    if i[2] != 0:   # DRY, in place when Penalties already wrote work
        if _dry_serial(out if i[0] != 0 else src, out, hist, offsets, f[3:4], f[4:5],
                       i[3:4], i[4:5], brk, i[0] != 0):
            return -2
        x = work
    if i[5] != 0:   # the rest is fs.sample's fused chain
        return _sample_one(x, i[6], f[5], f[6], f[7], i[7], i[8] != 0, seed, position)
    ids, vals, invalid = _truncate_one(x, i[6], f[5], f[6], i[7])
    if invalid or vals.shape[0] == 0:
        return -2
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
        return -2
    return ids[k]


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


def chain_row(row, history, prog, seed, position):
    """One token of the chain ``prog`` (``chain_program``) on ``row`` (float32 (V,),
    C-contiguous) with the history window ``history`` (int64, checked in [0, V)):
    the token, or -2 for the general route."""
    V = prog.V
    if row.shape[0] != V:
        raise ValueError(f"chain_row: row has {row.shape[0]} logits, the program {V}")
    work = getattr(_TLS, "work", None)
    if work is None or work.shape[0] < V:   # kept per thread: no (V,) array per token
        work = _TLS.work = np.empty(V, np.float32)
    return int(_chain_row_kernel(row, work[:V], history, prog.f, prog.i, prog.brk,
                                 np.uint64(seed), np.uint64(position)))



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
