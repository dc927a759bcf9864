"""DRY (docs/spec.md §4.1) for the GPU: penalties found on the host, applied on the device.

Why the host finds them. DRY's penalties depend only on the row's history, which a
``SamplerChain`` keeps on the host (``chain.history``; an explicit ``history`` is host
arrays too). The repeat lengths come from the Z-function of the reversed window, a
sequential scan (each step starts from what the previous ones matched), linear in the
window. On the GPU that is one thread per row walking the window at global-memory
latency: about a microsecond per step, milliseconds for W10a's 4096 tokens, while
the numba CPU kernel (``kernels/cpu/stages.dry_lengths``) takes microseconds. The
result is small: at most one edit per distinct token of the window (usually a few),
so the host uploads ``(ids, amounts)`` per row in one copy and the logits never leave
the device; ``stages.dry_kernel`` applies them after the chain's elementwise prelude,
one thread per edit.

Exactness. The reference subtracts the float64 amount
``multiplier * base ** min(L - allowed_length, cap)`` from the float64 logit and rounds
once to float32. ``fs.dry_penalty`` returns the amounts rounded to float32, which would
round twice (``float32(l - float32(a))`` differs from ``float32(l - a)`` in the last
bit for many ``l``), so the amounts are computed here from the lengths, in float64,
with the reference's own numpy expression (``_amounts``), and uploaded as float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from ...reference import LN_F32_MAX
from ...validation import as_token_ids
from ..cpu.history_stages import dry_lengths
from . import stages, transfer

__all__ = ["DryEdits", "breaker_table", "dry", "dry_edits", "warmup"]


class DryEdits(NamedTuple):
    """DRY's edits on the device (``dry_edits``)."""

    index: object    # int64 (B + 1 + n,): row offsets, then the token ids
    amounts: object  # float64 (max(n, 1),): the amount subtracted from each id's logit
    longest: int     # the most edits of one row (the kernel's grid)


def breaker_table(breakers, V):
    """Breaker ids (validated against V: ``ValueError`` naming one outside) as a
    bool (V,) lookup table, the form the CPU kernel reads."""
    ids = as_token_ids("DRY breaker", np.asarray(breakers, dtype=np.int64).ravel(), V)
    table = np.zeros(int(V), np.bool_)
    table[ids] = True
    return table


def _amounts(lens, multiplier, base, allowed_length):
    """float64 amounts of repeat lengths ``lens``: ``reference._dry_amounts``' numpy
    expression, term for term (so the same bits)."""
    expo = lens.astype(np.float64) - allowed_length
    if base > 1.0:
        expo = np.minimum(expo, LN_F32_MAX / math.log(base))
    return multiplier * np.power(float(base), expo)


def _row_edits(hist, multiplier, base, allowed_length, last_n, table, scratch):
    """``(ids int64, amounts float64)`` of one row (empty when DRY is a no-op)."""
    if not (multiplier != 0.0 and base >= 1.0 and last_n != 0):
        return None
    h = np.ascontiguousarray(hist, dtype=np.int64).ravel()
    start = 0 if last_n < 0 else max(h.size - int(last_n), 0)
    ids, lens = dry_lengths(h, start, h.size, np.int64(allowed_length), table, scratch)
    if not ids.size:
        return None
    return ids, _amounts(lens, multiplier, base, allowed_length)


def dry_edits(history, V, multiplier, base, allowed_length, last_n, table, stream=0):
    """DRY's edits of every row, uploaded in one copy.

    Parameters
    ----------
    history : list of B 1-D int arrays (host), tokens in [0, V) (the caller validates:
        the CPU kernel indexes ``table`` by them).
    V : int
    multiplier, base : float64 (B,) (host)
    allowed_length, last_n : int64 (B,) (host)
    table : bool (V,), ``breaker_table``
    stream : numba stream or 0

    Returns
    -------
    DryEdits, or None when no row has an edit.
    """
    B = len(history)
    scratch = np.empty(int(V), np.int32)   # the CPU kernel resets what it reads
    rows = [_row_edits(history[b], multiplier[b], base[b], allowed_length[b], last_n[b],
                       table, scratch) for b in range(B)]
    sizes = np.array([0 if r is None else r[0].size for r in rows], np.int64)
    if not sizes.any():
        return None
    offsets = np.zeros(B + 1, np.int64)
    offsets[1:] = np.cumsum(sizes)
    index = np.concatenate([offsets] + [r[0] for r in rows if r is not None])
    amounts = np.concatenate([r[1] for r in rows if r is not None])
    index, amounts = transfer.pack([index, amounts], stream)
    return DryEdits(index, amounts, int(sizes.max()))


def dry(logits, history, multiplier, base, allowed_length, last_n, breakers, stream=0,
        out=None):
    """DRY penalty of spec §4.1 per row (backend function, as ``reference.dry``).

    Host (numpy) logits give a numpy result, device logits a device array; float32
    (B, V), a new array, or ``out=logits``: the logits edited in place (only the
    penalised tokens are written). ``history``: a list of B 1-D int arrays (host).
    """
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    history = stages.host_histories(history, B, V)
    params = [np.broadcast_to(np.asarray(v, dt), (B,)) for v, dt in (
        (multiplier, np.float64), (base, np.float64), (allowed_length, np.int64),
        (last_n, np.int64))]
    edits = dry_edits(history, V, *params, breaker_table(breakers, V), stream)
    dst = transfer.edit_target(logits, x, host, out, stream)
    none = stages.ORDER_NONE
    stages.prelude(x, dst, None, 1.0, 0.0, 0.0, None, none, stream, dry=(edits, none, none))
    return transfer.back_into(dst, host, out, stream)


def warmup():
    """Compile (or load from numba's cache) the DRY kernel on a tiny input."""
    x = cuda.to_device(np.zeros((2, 8), np.float32))
    dry(x, [np.array([1, 2, 1, 2, 1]), np.array([3])], 0.8, 1.75, 2, -1, [7])
    cuda.synchronize()
