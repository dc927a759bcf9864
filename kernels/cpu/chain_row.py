"""The chain plan's per-token path on numba: one call per token for a common chain.

The numba twin of ``csrc/fs_chain.c``: for a chain ``[LogitBias] [Penalties] [DRY] ->
TopK -> TopP -> MinP -> [stages on the survivors ...] -> Dist`` (a NoRepeatNGram
anywhere among the edits) on one row (``plan.row_program``), ``chain_row`` runs the
whole step in one compiled call: the edits into a per-thread copy of the row (masked
by the call's bitmask, if any: ``constraints.mask_row``; with no edit of values, the
masked fused or truncation kernel reads the row through it), then
fs.sample's fused kernel, or the truncation (or a whole-distribution stage first,
``whole_first.whole_first_row``; or nothing: the stages read the whole row) followed
by the stages on the survivors (``stages._rows_at``, the row kernels of the
stage-by-stage route) and the draw (or an AdaptiveP or a Mirostat terminal,
``whole_first.mirostat_row``, or Greedy: the survivors' first maximum, fs.sample's
greedy pass). It composes the row kernels the stage-by-stage
route calls, in its order on the same data, so its token is the chain's; what it
saves is the Python glue between them. Returns -2 when the general route must decide
(an invalid or emptied row, a NaN/+inf at an id an edit writes).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from fastsample.row_threads import program_rows

from ..shared import uniform
from .canonical import (_BS, _invalid, _pass_max, _sample_one, _sample_one_masked,
                        _truncate_one, _truncate_one_masked)
from .constraints import mask_row
from .draw import draw_row, token_logprob_row
from .logprobs import logprobs_row
from .history_stages import (_bias_groups, _breaker_table, _dry_serial, _logit_bias_serial,
                             _ngram_serial, _penalties_serial)
from .stage_common import (K_DYN_TEMP, K_EPSILON, K_ETA, K_MIN_P, K_MIROSTAT, K_MIROSTAT_V2,
                           K_P_LESS, K_SMOOTHING, K_TAIL_FREE, K_TEMPERATURE, K_TOP_A, K_TOP_K,
                           K_TOP_N_SIGMA, K_TOP_P, K_TYPICAL, K_XTC)
from .stages import _rows_at
from .terminals import _adaptive_p_row
from .whole_first import mirostat_row, whole_first_row, xtc_removed_row

__all__ = ["chain_program", "chain_row", "chain_row_logprobs", "chain_rows"]

_NJ = dict(cache=True, nogil=True, error_model="numpy")
_MAX_AFTER = 8
# A whole-distribution stage after the first cut on at least this many survivors (a
# flat row under MinP or TopP keeps ~V of them) runs as it does first (whole_first;
# XTC: xtc_removed_row), not as its stage kernel (a float64 exp pass, an argsort)
_LONG = 2048
# the stages on the survivors: stages.py's row kernels by kind (plan.AFTER_OPS)
_AFTER = {"xtc": K_XTC, "temperature": K_TEMPERATURE, "top_k": K_TOP_K, "top_p": K_TOP_P,
          "min_p": K_MIN_P, "typical": K_TYPICAL, "top_n_sigma": K_TOP_N_SIGMA,
          "epsilon": K_EPSILON, "eta": K_ETA, "top_a": K_TOP_A, "p_less": K_P_LESS,
          "tail_free": K_TAIL_FREE, "dynamic_temperature": K_DYN_TEMP, "smoothing": K_SMOOTHING}
# no stage first: the stages after read the whole row (plan.WHOLE_ROW_OP)
_K_WHOLE_ROW = -1
# the Greedy terminal: the first maximum of the survivors, not the draw
_K_GREEDY = -2
# the AdaptiveP terminal: the survivors reshaped (terminals._adaptive_p_row), the draw,
# and the drawn token's log-probability among the survivors before (token_logprob_row)
_K_ADAPTIVE_P = -3
_FIRST = {**_AFTER, "mirostat": K_MIROSTAT, "mirostat_v2": K_MIROSTAT_V2,
          "whole_row": _K_WHOLE_ROW}
_TERMINAL = {"greedy": _K_GREEDY, "adaptive_p": _K_ADAPTIVE_P}
# f64 slots: repeat, frequency, presence, dry multiplier, dry base, top_p, min_p, t,
#            a[8], b[8], c[8]
# i64 slots: penalties, penalty last_n, dry, allowed, dry last_n, fused, top_k, min_keep,
#            t_last, n_after, kind[8], min_keep[8], k[8] (TopK's k as an integer)
#            first stage: a, b, its leading temperature, the Mirostats' log-probability out
# i64 slots: ..., first stage: present, kind, min_keep
_FA, _FB, _FC = 8, 16, 24
_IK, _IM, _II = 10, 18, 26
_F1, _I1 = 32, 34
# a Mirostat, Greedy or AdaptiveP terminal after the stages: f64 mu, m (AdaptiveP:
# ema_sum, target); i64 its kind (0: Dist)
_FT, _IT = 36, 37
# i64: NoRepeatNGram's n (0: none); f64: AdaptiveP's ema_weight
_ING, _FTW = 38, 38
_F, _I = 39, 39


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
def _chain_row_run(row, work, hist, f, i, brk, bias, words, seed, position, want_row):
    """``(token, survivors' ids, the row the draw read, its drawn index)``; the last
    three are empty / -1 when the chain is fused, the token is -2, or (without
    ``want_row``) XTC first drew over the whole row itself. ``words``: the row's packed
    token bitmask (empty: none)."""
    # A NaN/+inf is checked only where an edit writes (the history for NoRepeatNGram,
    # the bias ids, the penalty window, the followers DRY penalises): everywhere else
    # the kernel's own first pass sees it.
    V = row.shape[0]
    n = hist.shape[0]
    offsets = np.array([0, n], np.int64)
    src = row.reshape(1, V)
    out = work.reshape(1, V)
    x = row
    uids, starts, bvals, banned = bias
    edited = False   # work holds the edited row: the next edit is in place
    # a bitmask and no edit of values before the fused chain or the first cut: their
    # masked kernels read the row through it (a masked first pass), no copy first
    view = (words.shape[0] > 0 and i[_ING] <= 0 and uids.shape[0] == 0 and i[0] == 0
            and i[2] == 0 and (i[5] != 0 or i[_I1] == 0))
    if words.shape[0] > 0 and not view:
        # a bitmask first (before every stage): the masked copy the edits then write in
        # place; a NaN/+inf anywhere in the input, allowed or not, is the general route's
        if mask_row(row, words, work):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        edited = True
        x = work
    if i[_ING] > 0:   # NoRepeatNGram first: its bans commute with the other edits
        if _hides_bad_value(row, hist):   # it bans history tokens
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        _ngram_serial(out if edited else src, out, hist, offsets, i[_ING:_ING + 1], edited)
        edited = True
        x = work
    if uids.shape[0] > 0:   # LogitBias: into work (a copy of the row first unless there)
        if _hides_bad_value(row, uids):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        _logit_bias_serial(out if edited else src, out, uids, starts, bvals, banned, edited)
        edited = True
        x = work
    if i[0] != 0:   # Penalties: copies the row into work (unless there), then edits
        w = n if i[1] < 0 or i[1] > n else i[1]
        if i[_ING] <= 0 and _hides_bad_value(row, hist[n - w:]):   # (else checked)
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        _penalties_serial(out if edited else src, out, hist, offsets, f[0:1], f[1:2],
                          f[2:3], i[1:2], edited)
        edited = True
        x = work
    if i[2] != 0:   # DRY, in place when an edit already wrote work
        if _dry_serial(out if edited else src, out, hist, offsets, f[3:4], f[4:5],
                       i[3:4], i[4:5], brk, edited):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        x = work
    if i[5] != 0:   # the rest is fs.sample's fused chain
        if view:
            tok = _sample_one_masked(x, words, i[6], f[5], f[6], f[7], i[7], i[8] != 0, seed,
                                     position)
        else:
            tok = _sample_one(x, i[6], f[5], f[6], f[7], i[7], i[8] != 0, seed, position)
        return tok, np.empty(0, np.int32), np.empty(0, np.float32), -1
    # The survivors are the whole row when no stage first cuts it (WHOLE_ROW), and for
    # XTC first with stages after it, the whole row less the few ids it removes
    # (xtc_removed_row; nothing when it does not fire): the stages read x itself, or a
    # copy with those ids at -inf, and ids stay empty (the positions). No gather.
    whole = i[_I1] != 0 and (i[_I1 + 1] == _K_WHOLE_ROW or (i[_I1 + 1] == K_XTC and i[9] > 0))
    if whole:
        vals = x
        if i[_I1 + 1] == K_XTC:
            t = f[_F1 + 2]
            tout = np.empty(V if t != 1.0 else 0, np.float32)
            nr, rm = xtc_removed_row(x, f[_F1], f[_F1 + 1], t, uniform(seed, position, 1), tout)
            if nr < 0 or (nr > 0 and i[_I1 + 2] > 1):   # invalid, undecided, the floor
                return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
            if t != 1.0 or nr > 0:   # (x itself may be read-only: never written)
                w = tout if t != 1.0 else x.copy()
                for r in range(nr):
                    w[rm[r]] = -np.inf
                vals = w
        elif _invalid(_pass_max(x, np.empty((V + _BS - 1) // _BS, np.float32))):
            return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
        ids = np.empty(0, np.int32)
        invalid = False
    elif i[_I1] != 0:   # a whole-distribution stage first; XTC alone, a Mirostat draw
        # the draw in the call when nothing follows, or only a Temperature (> 0)
        draw = 0.0
        if i[_IT] != 0:
            draw = 0.0   # the Mirostat terminal draws
        elif not want_row and i[9] == 0:
            draw = 1.0
        elif not want_row and i[9] == 1 and i[_IK] == K_TEMPERATURE and 0.0 < f[_FA] < np.inf:
            draw = f[_FA]
        n_first, ids, vals, tok, lp = whole_first_row(
            x, i[_I1 + 1], f[_F1], f[_F1 + 1], i[_I1 + 2], f[_F1 + 2],
            uniform(seed, position, 1), draw, uniform(seed, position, 0))
        f[_F1 + 3] = lp
        if n_first == 0 and tok >= 0:
            return tok, np.empty(0, np.int32), np.empty(0, np.float32), -1
        invalid = n_first < 0
    elif view:
        ids, vals, invalid = _truncate_one_masked(x, words, i[6], f[5], f[6], i[7])
    else:
        ids, vals, invalid = _truncate_one(x, i[6], f[5], f[6], i[7])
    if invalid or vals.shape[0] == 0:
        return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
    cur = vals
    sp = np.array([seed, position], np.uint64)   # XTC's roll
    for s in range(i[9]):
        kind = i[_IK + s]
        if cur.shape[0] >= _LONG and (kind == K_TYPICAL or kind == K_TAIL_FREE
                                      or kind == K_EPSILON or kind == K_ETA or kind == K_TOP_A
                                      or kind == K_P_LESS or kind == K_TOP_N_SIGMA):
            # a whole-distribution stage on a long row of survivors runs as it does first
            # (one exp pass, no argsort); a decision within rounding hands the row back
            cnt, wids, wvals, _, _ = whole_first_row(cur, kind, f[_FA + s], f[_FB + s],
                                                     i[_IM + s], 1.0, 0.0, 0.0, 0.0)
            if cnt <= 0:
                return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
            w = np.full(cur.shape[0], -np.inf, np.float32)
            for q in range(cnt):
                w[wids[q]] = wvals[q]
            cur = w
            continue
        if kind == K_XTC and cur.shape[0] >= _LONG:
            # XTC on a long row of survivors lists the ids it removes (a float exp pass)
            # rather than running the stage kernel (a float64 exp pass and a row write)
            nr, rm = xtc_removed_row(cur, f[_FA + s], f[_FB + s], 1.0,
                                     uniform(seed, position, 1), np.empty(0, np.float32))
            if nr < 0 or (nr > 0 and i[_IM + s] > 1):   # undecided, the floor
                return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
            if nr > 0:
                w = cur.copy()
                for r in range(nr):
                    w[rm[r]] = -np.inf
                cur = w
            continue
        nxt = np.empty_like(cur)
        _rows_at(cur.reshape(1, -1), nxt.reshape(1, -1), i[_IK + s], f[_FA + s:_FA + s + 1],
                 f[_FB + s:_FB + s + 1], f[_FC + s:_FC + s + 1], i[_II + s:_II + s + 1],
                 i[_IM + s:_IM + s + 1], sp[0:1], sp[1:2], 0)
        cur = nxt
    if i[_IT] == _K_GREEDY:   # the first maximum: fs.sample's greedy pass (t = 0)
        k = max(_sample_one(cur, 0, 1.0, 0.0, 0.0, 1, True, seed, position), -1)
    elif i[_IT] == _K_ADAPTIVE_P:   # the stage-by-stage route's kernels, in its order
        shaped = np.empty_like(cur)
        _adaptive_p_row(cur, shaped, f[_FT + 1], f[_FT], f[_FTW])
        k = draw_row(shaped, uniform(seed, position, 0))
        f[_F1 + 3] = token_logprob_row(cur, k)   # p before the reshaping: the update's
        cur = shaped
    elif i[_IT] != 0:   # its mu update reads the drawn token's log-probability
        k, lp = mirostat_row(cur, V, i[_IT], f[_FT], f[_FT + 1], uniform(seed, position, 0))
        f[_F1 + 3] = lp
    else:
        k = draw_row(cur, uniform(seed, position, 0))
    if k < 0:
        return -2, np.empty(0, np.int32), np.empty(0, np.float32), -1
    return (k if whole else ids[k]), ids, cur, k


@numba.njit(**_NJ)
def _chain_row_kernel(row, work, hist, f, i, brk, bias, words, seed, position):
    return _chain_row_run(row, work, hist, f, i, brk, bias, words, seed, position, False)[0]


@numba.njit(**_NJ)
def _chain_row_logprobs_kernel(row, work, hist, f, i, brk, bias, seed, position, n, lp,
                               rank, top_ids, top_lp):
    """``_chain_row_kernel`` of a chain that is not fused, with the processed
    log-probabilities of the survivors' row its draw read (logprobs_row), top ids
    mapped back to token ids."""
    tok, ids, cur, k = _chain_row_run(row, work, hist, f, i, brk, bias, _NO_WORDS, seed,
                                      position, True)
    if k < 0:
        return tok
    kk = min(max(n, 1), cur.shape[0])
    logprobs_row(cur, k, n, np.empty(kk, np.float32), np.empty(kk, np.int32), lp, rank,
                 top_ids, top_lp)
    for q in range(n):
        if top_ids[q] >= 0 and ids.shape[0] > 0:   # no ids: the whole row's positions
            top_ids[q] = ids[top_ids[q]]
    return tok


class _Program:
    """The packed parameters, the breaker table, the bias and V of one chain."""

    __slots__ = ("V", "f", "i", "brk", "bias")

    def __init__(self, f, i, brk, bias, V):
        self.f, self.i, self.brk, self.bias, self.V = f, i, brk, bias, V


def chain_program(program, V):
    """The packed form of ``plan.row_program``'s description for vocabulary size ``V``."""
    f = np.zeros(_F, np.float64)
    i = np.zeros(_I, np.int64)
    i[_ING] = program.get("ngram", 0)
    pen = program.get("penalties")
    if pen is not None:
        i[0] = 1
        f[0], f[1], f[2], i[1] = pen
    dry = program.get("dry")
    breakers = np.zeros(0, np.int64)
    if dry is not None:
        i[2] = 1
        f[3], f[4], i[3], i[4], breakers = dry
    first = program.get("first")
    f[_F1 + 2] = program.get("first_temperature", 1.0)
    if first is not None:   # a whole-distribution stage first (whole_first_row)
        op, f[_F1], f[_F1 + 1], _, i[_I1 + 2] = first
        i[_I1], i[_I1 + 1] = 1, _FIRST[op]
    else:
        i[6], f[5], f[6], i[7] = program["truncations"]
    terminal = program.get("terminal")
    if terminal is not None:   # a Mirostat (its mu is set per call), Greedy or AdaptiveP
        i[_IT] = _TERMINAL.get(terminal[0]) or _FIRST[terminal[0]]
        f[_FT + 1] = terminal[1]
    fused = program.get("fused")
    if fused is not None:
        i[5] = 1
        f[7], t_last = fused
        i[8] = 1 if t_last else 0
    after = program.get("after", ())
    if len(after) > _MAX_AFTER:
        raise ValueError(f"chain_program: at most {_MAX_AFTER} stages after the truncations")
    i[9] = len(after)
    for s, (op, a, b, c, mk) in enumerate(after):
        i[_IK + s], i[_IM + s] = _AFTER[op], mk
        f[_FA + s], f[_FB + s], f[_FC + s] = a, b, c
        i[_II + s] = int(a) if op == "top_k" else 0
    return _Program(f, i, _breaker_table(breakers, V), _bias_groups(program.get("bias")), V)


_TLS = threading.local()
_NO_WORDS = np.zeros(0, np.uint32)   # no bitmask


def _work(V):
    work = getattr(_TLS, "work", None)
    if work is None or work.shape[0] < V:   # kept per thread: no (V,) array per token
        work = _TLS.work = np.empty(V, np.float32)
    return work[:V]


def chain_row(row, history, prog, seed, position, mu=None, words=None):
    """One token of the chain ``prog`` (``chain_program``) on ``row`` (float32 (V,),
    C-contiguous) with the history window ``history`` (int64, checked in [0, V)):
    the token, or -2 for the general route. A Mirostat program takes the row's
    ``mu`` and returns ``(token, log-probability of it among the kept tokens)``; an
    AdaptiveP program takes ``(ema_sum, ema_weight)`` as ``mu`` and returns the
    token's log-probability among the survivors before the reshaping.
    ``words``: the row's packed token bitmask (uint32, at least ceil(V/32) words),
    applied before every stage, or None."""
    V = prog.V
    if row.shape[0] != V:
        raise ValueError(f"chain_row: row has {row.shape[0]} logits, the program {V}")
    if words is not None and (words.dtype != np.uint32 or words.ndim != 1
                              or words.shape[0] < (V + 31) // 32):
        raise ValueError("chain_row: words must be uint32, ceil(V/32) of them")
    if mu is not None:   # a Mirostat terminal after stages, or one first; AdaptiveP's
        if prog.i[_IT] == _K_ADAPTIVE_P:   # (ema_sum, ema_weight)
            prog.f[_FT], prog.f[_FTW] = mu
        else:
            prog.f[_FT if prog.i[_IT] else _F1] = mu
    tok = int(_chain_row_kernel(row, _work(V), history, prog.f, prog.i, prog.brk, prog.bias,
                                _NO_WORDS if words is None else words, np.uint64(seed),
                                np.uint64(position)))
    return tok if mu is None else (tok, float(prog.f[_F1 + 3]))


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
                                     prog.bias, np.uint64(seed), np.uint64(position), n, lp, rank,
                                     top_ids, top_lp)
    if tok == -2:
        return None
    return int(tok), lp[0], int(rank[0]), top_ids, top_lp


def chain_rows(rows, histories, progs, seed, position, mus=None, words=None):
    """``chain_row`` of every row of ``rows`` (float32 (B, V), C-contiguous) with its
    own history window, program and bitmask words (``words``: a list, None where a row
    has none), over threads (``row_threads.program_rows``; a Mirostat program: with
    each row's ``mu``, and the log-probabilities back)."""
    return program_rows(chain_row, rows, histories, progs, seed, position, mus, words)
