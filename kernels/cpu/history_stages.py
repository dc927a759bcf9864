"""Numba kernels of the edit stages: LogitBias and the history stages (Penalties,
DRY, NoRepeatNGram), with their Python wrappers (the reference's names and
signatures).

They touch few logits, so each takes ``out=``: a new array, a separate buffer that
the kernel copies each row into (in its threads) and edits, or the logits
themselves, edited in place (the chain plan's working copy; each token is read
before it is written). Each kernel has a row body ``_<name>_at``, a ``parallel=True``
driver over rows and a ``_serial`` twin for one row (a thread-pool launch per token
costs more than the row).

- ``penalties``: touches only the tokens of the window (counts in an uninitialised
  scratch array indexed by token, reset only where the window writes).
- ``dry`` / ``dry_penalty`` / ``no_repeat_ngram``: Z-algorithm on the reversed
  window, linear in the history length (one token repeated 32768 times included).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange

from ..shared import penalized
from ..shared import saturate_f32 as _sat
from .stage_common import (
    _NJ,
    _PJ,
    F32_MAX,
    LN_F32_MAX,
    _argsort_stable,
    _check_ids,
    _copy,
    _f64,
    _history_args,
    _i64,
    _logits,
    _out,
)

# ----------------------------------------------------------------------------------
# history stages


@numba.njit(**_NJ)
def _window(offsets, b, last_n):
    start = offsets[b]
    end = offsets[b + 1]
    if last_n > 0 and end - start > last_n:
        start = end - last_n
    return start, end


@numba.njit(**_NJ)
def _penalties_row(row, out, hist, start, end, repeat, frequency, presence, cnt):
    for i in range(start, end):
        cnt[hist[i]] = 0
    for i in range(start, end):
        cnt[hist[i]] += 1
    for i in range(start, end):
        t = hist[i]
        c = cnt[t]
        if c > 0:
            cnt[t] = 0  # done
            x = np.float64(row[t])
            if x > -np.inf:
                out[t] = _sat(penalized(x, c, repeat, frequency, presence))


@numba.njit(**_NJ)
def _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b):
    """Row b of ``_penalties_kernel``."""
    B, V = logits.shape
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    ln = last_n[b]
    if ln == 0 or (repeat[b] == 1.0 and frequency[b] == 0.0 and presence[b] == 0.0):
        return
    start, end = _window(offsets, b, ln)
    if end <= start:
        return
    cnt = np.empty(V, np.int32)
    _penalties_row(row, o, hist, start, end, repeat[b], frequency[b], presence[b], cnt)


@numba.njit(**_PJ)
def _penalties_kernel(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace):
    for b in prange(logits.shape[0]):
        _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b)


@numba.njit(**_NJ)
def _penalties_serial(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace):
    """``_penalties_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _penalties_at(logits, out, hist, offsets, repeat, frequency, presence, last_n, inplace, b)


@numba.njit(**_NJ)
def _z_reversed(hist, start, end):
    """Z-function of the reversed window ``rev[i] = hist[end - 1 - i]`` (z[0] = n).

    int32 and no copy of the window: per-call allocations stay small.
    """
    n = end - start
    z = np.zeros(n, np.int32)
    if n == 0:
        return z
    z[0] = n
    last = end - 1
    left = 0
    right = 0
    for i in range(1, n):
        k = 0
        if i < right:
            k = right - i
            if z[i - left] < k:
                k = z[i - left]
        while i + k < n and hist[last - k] == hist[last - i - k]:
            k += 1
        z[i] = k
        if i + k > right:
            left = i
            right = i + k
    return z


@numba.njit(**_NJ)
def _dry_match(hist, last, n, j, brk):
    """The repeat length at rev offset j (rev[i] = hist[last - i], rev[j] == rev[0]):
    how far rev[0..) and rev[j..) agree, stopping at a breaker of the suffix, i.e.
    min(Z(j), rep_limit) (csrc/stages.c's dry_match)."""
    k = 1
    while k < n - j and hist[last - k] == hist[last - j - k] and not brk[hist[last - k]]:
        k += 1
    return k


@numba.njit(**_NJ)
def dry_lengths(hist, start, end, allowed, brk, scratch):
    """docs/spec.md §4.1 repeat lengths: distinct tokens (first seen from the end of
    the window) with L >= allowed, and their L. ``scratch`` (V,) is read and written
    only at them.

    L(t) is the longest min(Z(j), rep_limit) over the rev offsets j whose follower
    hist[end - j] is t. Z(j) > 0 only where hist[end - 1 - j] is the last token, so
    with allowed >= 1 the lengths come from those few positions, each match extended
    directly; a window whose matches would cost more than n
    comparisons (long periodic runs) takes the linear Z route: O(n) on any history
    (csrc/stages.c's dry_lengths, the same two routes). Both list the qualifying
    offsets for ``_dry_collect``."""
    n = end - start
    last = end - 1
    if n < 2 or brk[hist[last]]:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tok = hist[last]
    offs = np.empty(n, np.int64)   # the qualifying rev offsets and their lengths
    lens = np.empty(n, np.int64)
    m = 0
    if allowed >= 1:
        work = 0
        j = 1
        while j < n and work <= n:
            if hist[last - j] == tok:
                k = _dry_match(hist, last, n, j, brk)
                work += k
                if k >= allowed and not brk[hist[end - j]]:
                    offs[m] = j
                    lens[m] = k
                    m += 1
            j += 1
        if j == n and work <= n:
            return _dry_collect(hist, end, offs, lens, m, scratch)
        m = 0
    rep_limit = n
    for i in range(n - 1, -1, -1):
        if brk[hist[start + i]]:
            rep_limit = n - 1 - i
            break
    z = _z_reversed(hist, start, end)
    for j in range(1, n):
        length = np.int64(z[j]) if z[j] < rep_limit else rep_limit
        if length >= allowed and not brk[hist[end - j]]:
            offs[m] = j
            lens[m] = length
            m += 1
    return _dry_collect(hist, end, offs, lens, m, scratch)


@numba.njit(**_NJ)
def _dry_collect(hist, end, offs, lens, m, scratch):
    """The distinct followers hist[end - offs[q]] (first seen from the end) and the
    longest of their lengths, ``scratch`` read and written only at them."""
    for q in range(m):
        scratch[hist[end - offs[q]]] = -1
    toks = np.empty(m, np.int64)
    cnt = 0
    for q in range(m):
        t = hist[end - offs[q]]
        if scratch[t] < 0:
            toks[cnt] = t
            cnt += 1
        if scratch[t] < lens[q]:
            scratch[t] = lens[q]
    out = np.empty(cnt, np.int64)
    for c in range(cnt):
        out[c] = scratch[toks[c]]
    return toks[:cnt], out


@numba.njit(**_NJ)
def _dry_amount(length, multiplier, base, allowed):
    expo = np.float64(length) - np.float64(allowed)
    if base > 1.0:
        cap = LN_F32_MAX / math.log(base)
        if expo > cap:
            expo = cap
    return multiplier * base ** expo


@numba.njit(**_NJ)
def _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace, b):
    """Row b of ``_dry_kernel``; True when a token it edits held +inf (the edit would
    hide an invalid row: the chain's one-call step then hands the row back)."""
    B, V = logits.shape
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    mult = multiplier[b]
    bs = base[b]
    ln = last_n[b]
    saw_inf = False
    if not (mult != 0.0 and bs >= 1.0 and ln != 0):
        return saw_inf
    start, end = _window(offsets, b, ln)
    scratch = np.empty(V, np.int32)
    toks, lens = dry_lengths(hist, start, end, allowed[b], brk, scratch)
    for j in range(toks.shape[0]):
        t = toks[j]
        x = np.float64(row[t])
        saw_inf |= x == np.inf
        if x > -np.inf:
            o[t] = _sat(x - _dry_amount(lens[j], mult, bs, allowed[b]))
    return saw_inf


@numba.njit(**_PJ)
def _dry_kernel(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace):
    for b in prange(logits.shape[0]):
        _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace, b)


@numba.njit(**_NJ)
def _dry_serial(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk, inplace):
    """``_dry_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds); True when an edited token held
    +inf in some row."""
    saw_inf = False
    for b in range(logits.shape[0]):
        saw_inf |= _dry_at(logits, out, hist, offsets, multiplier, base, allowed, last_n, brk,
                           inplace, b)
    return saw_inf


@numba.njit(**_NJ)
def _dry_penalty_kernel(hist, V, multiplier, base, allowed, last_n, brk):
    start, end = _window(np.array([0, hist.shape[0]], np.int64), 0, last_n)
    scratch = np.empty(V, np.int32)
    toks, lens = dry_lengths(hist, start, end, allowed, brk, scratch)
    order = _argsort_stable(toks.astype(np.float64))
    ids = np.empty(toks.shape[0], np.int32)
    pen = np.empty(toks.shape[0], np.float32)
    for j in range(toks.shape[0]):
        k = order[j]
        ids[j] = toks[k]
        a = _dry_amount(lens[k], multiplier, base, allowed)
        pen[j] = np.float32(a if not a > F32_MAX else F32_MAX)
    return ids, pen


@numba.njit(**_NJ)
def _ngram_at(logits, out, hist, offsets, n, inplace, b):
    """Row b of ``_ngram_kernel``."""
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    nb = n[b]
    start = offsets[b]
    end = offsets[b + 1]
    L = end - start
    if nb <= 0 or L + 1 < nb:
        return
    if nb == 1:
        for i in range(start, end):
            o[hist[i]] = -np.inf
        return
    # a window of n-1 tokens ending at hist[e] equal to the last n-1 tokens bans
    # hist[e+1]: in the reversed window that is z[j] >= n-1, banned rev[j-1].
    z = _z_reversed(hist, start, end)
    for j in range(1, L):
        if z[j] >= nb - 1:
            o[hist[end - j]] = -np.inf


@numba.njit(**_PJ)
def _ngram_kernel(logits, out, hist, offsets, n, inplace):
    for b in prange(logits.shape[0]):
        _ngram_at(logits, out, hist, offsets, n, inplace, b)


@numba.njit(**_NJ)
def _ngram_serial(logits, out, hist, offsets, n, inplace):
    """``_ngram_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _ngram_at(logits, out, hist, offsets, n, inplace, b)


@numba.njit(**_NJ)
def _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b):
    """Row b of ``_logit_bias_kernel``."""
    G = uids.shape[0]
    row = logits[b]
    o = out[b]
    if not inplace:  # out is logits: edit in place
        _copy(row, o)
    for g in range(G):
        t = uids[g]
        x = np.float64(row[t])
        acc = x
        for j in range(starts[g], starts[g + 1]):
            acc += vals[j]
        if banned[g] or not x > -np.inf:
            o[t] = -np.inf
        else:
            o[t] = _sat(acc)


@numba.njit(**_PJ)
def _logit_bias_kernel(logits, out, uids, starts, vals, banned, inplace):
    for b in prange(logits.shape[0]):
        _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b)


@numba.njit(**_NJ)
def _logit_bias_serial(logits, out, uids, starts, vals, banned, inplace):
    """``_logit_bias_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _logit_bias_at(logits, out, uids, starts, vals, banned, inplace, b)


def logit_bias(logits, ids, values, out=None):
    """``l[t] += bias``; a ``-inf`` bias bans the token; repeated ids add up.

    ``out=logits`` edits ``logits`` in place (the history stages take it too).
    """
    x = _logits(logits)
    B, V = x.shape
    ids = np.asarray(ids, dtype=np.int64).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if ids.shape != values.shape:
        raise ValueError("logit_bias: ids and values differ in length")
    _check_ids(ids, V, "bias")
    out, inplace = _out(x, logits, out)
    if B == 0 or ids.size == 0:
        if not inplace:
            out[...] = x
        return out
    order = np.argsort(ids, kind="stable")
    kernel = _logit_bias_serial if B == 1 else _logit_bias_kernel  # one row: no thread pool
    kernel(x, out, *_bias_groups((ids[order], values[order])), inplace)
    return out


def _bias_groups(bias):
    """``_logit_bias_kernel``'s form of ``(ids, values)`` sorted by id (stably): the
    distinct ids, where each one's run of values starts (and the end), the values, and
    whether a run holds a -inf (a ban). None: empty arrays (no LogitBias)."""
    if bias is None:
        return (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.float64),
                np.zeros(0, np.bool_))
    sid, svals = np.asarray(bias[0], np.int64), np.ascontiguousarray(bias[1], np.float64)
    uids, first = np.unique(sid, return_index=True)
    starts = np.append(first, sid.size).astype(np.int64)
    banned = (np.logical_or.reduceat(np.isneginf(svals), first) if sid.size
              else np.zeros(0, np.bool_))
    return uids.astype(np.int64), starts, svals, banned.astype(np.bool_)


def penalties(logits, history, repeat, frequency, presence, last_n, out=None):
    """Repetition, frequency and presence penalties over the last ``last_n`` tokens."""
    x, out, inplace, flat, offsets = _history_args(logits, history, out)
    if flat is None:
        return out
    B = x.shape[0]
    kernel = _penalties_serial if B == 1 else _penalties_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _f64(repeat, B), _f64(frequency, B), _f64(presence, B),
           _i64(last_n, B), inplace)
    return out


def _breaker_table(breakers, V):
    br = np.asarray(breakers, dtype=np.int64).ravel()
    _check_ids(br, V, "breaker")
    return _table(br.tobytes(), V)


@functools.lru_cache(maxsize=16)
def _table(ids, V):
    """The (V,) bool breaker table of int64 ids (as bytes): made once per chain and V,
    not per token (never written)."""
    table = np.zeros(V, np.bool_)
    table[np.frombuffer(ids, np.int64)] = True
    return table


def dry(logits, history, multiplier, base, allowed_length, last_n, breakers, out=None):
    """DRY penalty of spec §4.1 per row (linear in the history length)."""
    x, out, inplace, flat, offsets = _history_args(logits, history, out)
    if flat is None:
        return out
    B, V = x.shape
    kernel = _dry_serial if B == 1 else _dry_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _f64(multiplier, B), _f64(base, B), _i64(allowed_length, B),
           _i64(last_n, B), _breaker_table(breakers, V), inplace)
    return out


def dry_penalty(history, vocab_size, multiplier, base, allowed_length, breakers, last_n):
    """DRY penalties for one history: ``(ids int32 ascending, penalties float32)``."""
    V = int(vocab_size)
    hist = np.ascontiguousarray(np.asarray(history, dtype=np.int64).ravel())
    multiplier = float(multiplier)
    base = float(base)
    last_n = int(last_n)
    if not (multiplier != 0.0 and base >= 1.0 and last_n != 0):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    _check_ids(hist, V, "history")
    return _dry_penalty_kernel(hist, V, multiplier, base, int(allowed_length), last_n,
                               _breaker_table(breakers, V))


def no_repeat_ngram(logits, history, n, out=None):
    """Ban every token that would complete an n-gram already in the history (HF)."""
    x, out, inplace, flat, offsets = _history_args(logits, history, out)
    if flat is None:
        return out
    B = x.shape[0]
    kernel = _ngram_serial if B == 1 else _ngram_kernel  # one row: no thread pool
    kernel(x, out, flat, offsets, _i64(n, B), inplace)
    return out
