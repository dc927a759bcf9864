"""LogitBias, Penalties and DRY on the GPU: device token counts, bias tables, one fused
elementwise pass over the logits (the *prelude* of a chain) and DRY's sparse edits.

The data a chain keeps on the device:

- ``counts`` (B, V) int32: each row's token counts over its penalty window, built
  once by ``counts_from_history`` (one upload, one scatter kernel with integer
  atomics: exact) and kept current on ``accept`` by ``update_counts`` (the host
  knows which token enters the window and which one leaves it);
- ``BiasTables``: the bias as lookup tables built on the host once per chain
  (``bias_tables``): ``slot[t]`` is the group of token t (-1: no bias), a group's
  values ``vals[starts[g]:starts[g + 1]]`` are in the order given (as the reference's
  ``np.add.at``), ``banned[g]`` whether one of them is ``-inf``.

``prelude`` then runs LogitBias and/or Penalties in one pass (``order``: the
``ORDER_*`` constants), each stage rounding to float32 exactly as a chain of separate
stages would. DRY changes only the few tokens its host-computed edits name
(``dry.py``): ``dry_kernel`` runs after the pass, one thread per edit, and rewrites
each edited token from the input through the stages before DRY, DRY, and those after
it, so DRY may sit anywhere in the prelude. All of them use the scalar math shared
with the CPU kernels (``kernels/shared.py``: ``penalized``, ``saturate_f32``). NaN and +inf pass through
unchanged, so the canonical kernel that runs next still flags the row as invalid.
Products go through ``shared.mul_rn``, which ``target.py`` makes libdevice's
``dmul_rn`` on CUDA: NVVM would otherwise fuse ``c*frequency + presence`` (and ``x*repeat -
...``) into FMAs, one rounding fewer than the reference, so the last bit would differ.

``logit_bias`` and ``penalties`` are the backend functions (``docs/internals.md``):
host logits give numpy results, device logits device results.

Host/device moves come from ``transfer.py`` (shared with ``ops.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import cuda, float32, float64

from ...validation import as_token_ids
from ..shared import penalized, saturate_f32
from . import transfer
from .target import SIM, TPB, load

__all__ = [
    "ORDER_BIAS",
    "ORDER_BIAS_PENALTIES",
    "ORDER_PENALTIES",
    "ORDER_NONE",
    "ORDER_PENALTIES_BIAS",
    "BiasTables",
    "bias_tables",
    "counts_from_history",
    "dry_kernel",
    "logit_bias",
    "no_bias",
    "no_penalties",
    "order_of",
    "penalties",
    "prelude",
    "prelude_kernel",
    "scatter_counts_kernel",
    "update_counts",
    "update_counts_kernel",
    "warmup",
    "window_deltas",
    "zero_kernel",
]

ORDER_PENALTIES = 0        # Penalties only
ORDER_BIAS = 1             # LogitBias only
ORDER_BIAS_PENALTIES = 2   # LogitBias, then Penalties
ORDER_PENALTIES_BIAS = 3   # Penalties, then LogitBias
ORDER_NONE = 4             # neither (a copy; DRY alone)
_ORDERS = {(): ORDER_NONE, ("penalties",): ORDER_PENALTIES, ("bias",): ORDER_BIAS,
           ("bias", "penalties"): ORDER_BIAS_PENALTIES,
           ("penalties", "bias"): ORDER_PENALTIES_BIAS}

# Grid caps of the elementwise kernels (grid-stride loops cover the rest). The
# simulator runs every block's threads as Python threads: few blocks, more work each.
_MAX_X = 4 if SIM else 65535
_MAX_Y = 4 if SIM else 65535


class BiasTables(NamedTuple):
    """LogitBias as device tables (see ``bias_tables``)."""

    slot: object     # int32 (V,): group of each token, -1 = no bias
    starts: object   # int64 (G + 1,): group g's values are vals[starts[g]:starts[g+1]]
    vals: object     # float64 (max(n, 1),): the values, grouped, in their given order
    banned: object   # uint8 (max(G, 1),): 1 where a group holds a -inf value


# ------------------------------------------------------------------------ kernels


@cuda.jit(device=True, inline=True)
def _biased(v, g, starts, vals, banned):
    """Reference LogitBias of one float32 logit ``v`` (finite or -inf) in group g."""
    if banned[g] != 0 or v == -np.inf:
        return float32(-np.inf)
    acc = float64(v)
    for j in range(starts[g], starts[g + 1]):   # in order, as np.add.at
        acc += vals[j]
    return saturate_f32(acc)


@cuda.jit(device=True, inline=True)
def _has_penalties(order):
    return order == ORDER_PENALTIES or order == ORDER_BIAS_PENALTIES \
        or order == ORDER_PENALTIES_BIAS


@cuda.jit(device=True, inline=True)
def _stages(v, b, i, order, counts, r, f, p, slot, starts, vals, banned):
    """The stages of ``order`` on token i of row b, float32 ``v`` finite or -inf
    (``r``, ``f``, ``p``: the row's Penalties; read only if ``order`` has them)."""
    if order == ORDER_BIAS or order == ORDER_BIAS_PENALTIES:
        g = slot[i]
        if g >= 0:
            v = _biased(v, g, starts, vals, banned)
    if _has_penalties(order):
        c = counts[b, i]
        if c > 0 and v > -np.inf:
            v = saturate_f32(penalized(float64(v), c, r, f, p))
    if order == ORDER_PENALTIES_BIAS:
        g = slot[i]
        if g >= 0:
            v = _biased(v, g, starts, vals, banned)
    return v


@cuda.jit(device=True, inline=True)
def _row_penalties(b, pen, repeat, frequency, presence):
    """Row b's ``(repeat, frequency, presence)``; neutral dummies (never indexed by b)
    without Penalties."""
    if pen:
        return repeat[b], frequency[b], presence[b]
    return 1.0, 0.0, 0.0


@cuda.jit(cache=True)
def prelude_kernel(x, out, counts, repeat, frequency, presence, slot, starts, vals,
                   banned, order):
    """``out = stages(x)``, elementwise over (B, V); see ``prelude``.

    Grid: x over the vocabulary, y over rows, both grid-stride. ``out`` may be ``x``
    (each element is read before it is written, by the same thread).
    """
    B, V = x.shape
    pen = _has_penalties(order)
    first = cuda.blockIdx.x * TPB + cuda.threadIdx.x
    step = cuda.gridDim.x * TPB
    for b in range(cuda.blockIdx.y, B, cuda.gridDim.y):
        r, f, p = _row_penalties(b, pen, repeat, frequency, presence)
        for i in range(first, V, step):
            v = load(x[b], i)
            if v < np.inf:   # False for NaN and +inf: they pass through unchanged
                v = _stages(v, b, i, order, counts, r, f, p, slot, starts, vals, banned)
            out[b, i] = v


@cuda.jit(cache=True)
def dry_kernel(x, out, index, amounts, before, after, counts, repeat, frequency, presence,
               slot, starts, vals, banned):
    """DRY's edits, after ``prelude_kernel`` wrote ``out``: for each edit j of row b
    (``index``: B + 1 offsets, then the token ids; ``amounts[j]`` float64),
    ``out[b, t]`` = the stages ``after`` of DRY of the stages ``before`` of
    ``x[b, t]``. DRY is ``saturate_f32(float64(v) - amount)`` on a finite v, as the
    reference (never masks); NaN/+inf pass through. Grid as ``prelude_kernel``, x over
    the edits. The ids of a row are distinct: no two threads write one element.
    """
    B = x.shape[0]
    pen = _has_penalties(before) or _has_penalties(after)
    first = cuda.blockIdx.x * TPB + cuda.threadIdx.x
    step = cuda.gridDim.x * TPB
    for b in range(cuda.blockIdx.y, B, cuda.gridDim.y):
        r, f, p = _row_penalties(b, pen, repeat, frequency, presence)
        for j in range(index[b] + first, index[b + 1], step):
            i = index[B + 1 + j]
            v = load(x[b], i)
            if v < np.inf:
                v = _stages(v, b, i, before, counts, r, f, p, slot, starts, vals, banned)
                if v > -np.inf:
                    v = saturate_f32(float64(v) - amounts[j])
                v = _stages(v, b, i, after, counts, r, f, p, slot, starts, vals, banned)
            out[b, i] = v


@cuda.jit(cache=True)
def zero_kernel(a):
    """``a[:, :] = 0`` (2-D), grid as ``prelude_kernel``."""
    B, V = a.shape
    first = cuda.blockIdx.x * TPB + cuda.threadIdx.x
    step = cuda.gridDim.x * TPB
    for b in range(cuda.blockIdx.y, B, cuda.gridDim.y):
        for i in range(first, V, step):
            a[b, i] = 0


@cuda.jit(cache=True)
def scatter_counts_kernel(packed, counts):
    """``counts[b, t] += 1`` for every token t of row b's window.

    ``packed`` int64: B + 1 offsets, then the windows back to back (row b's tokens are
    ``packed[B + 1 + offsets[b] : B + 1 + offsets[b + 1]]``). Integer atomics: exact,
    so the order does not matter. Tokens outside [0, V) are skipped (never written).
    """
    B, V = counts.shape
    first = cuda.blockIdx.x * TPB + cuda.threadIdx.x
    step = cuda.gridDim.x * TPB
    for b in range(cuda.blockIdx.y, B, cuda.gridDim.y):
        for j in range(packed[b] + first, packed[b + 1], step):
            t = packed[B + 1 + j]
            if t >= 0 and t < V:
                cuda.atomic.add(counts, (b, t), 1)


@cuda.jit(cache=True)
def update_counts_kernel(counts, add, remove):
    """Per row b (one thread): ``counts[b, add[b]] += 1``, ``counts[b, remove[b]] -= 1``;
    ids outside [0, V) (-1: nothing) are ignored."""
    B, V = counts.shape
    b = cuda.grid(1)
    if b < B:
        a = add[b]
        if a >= 0 and a < V:
            counts[b, a] += 1
        r = remove[b]
        if r >= 0 and r < V:
            counts[b, r] -= 1


# ------------------------------------------------------------------------ host helpers


def _grid(B, V):
    """Blocks (x over the vocabulary, y over rows) of the elementwise kernels."""
    return (max(1, min(-(-V // TPB), _MAX_X)), max(1, min(B, _MAX_Y)))


# ------------------------------------------------------------------------ counts


def _windows(history, last_n):
    """The penalty window of each row (-1 = all, 0 = none, n = the last n tokens)."""
    out = []
    for h, n in zip(history, last_n):
        h = np.asarray(h, dtype=np.int64).ravel()
        out.append(h if n < 0 else h[max(h.size - int(n), 0):])
    return out


def counts_from_history(history, V, last_n, stream=0):
    """Per-row token counts of the penalty windows, on the device.

    Parameters
    ----------
    history : list of B 1-D int arrays (host), oldest first, tokens in [0, V).
    V : int
        Vocabulary size.
    last_n : int or int64 (B,) (host)
        -1 = the whole history, 0 = none, n = the last n tokens.
    stream : numba stream or 0

    Returns
    -------
    int32 (B, V) device array: ``counts[b, t]`` = occurrences of t in row b's window.

    Raises
    ------
    ValueError
        A history token outside [0, V).
    """
    B = len(history)
    V = int(V)
    last_n = np.broadcast_to(np.asarray(last_n, dtype=np.int64), (B,))
    wins = _windows(history, last_n)
    offsets = np.zeros(B + 1, np.int64)
    if B:
        offsets[1:] = np.cumsum([w.size for w in wins])
    flat = np.concatenate(wins) if offsets[-1] else np.zeros(0, np.int64)
    as_token_ids("history", flat, V)
    counts = cuda.device_array((B, V), np.int32, stream=stream)
    if B == 0 or V == 0:
        return counts
    grid = _grid(B, V)
    zero_kernel[grid, TPB, stream](counts)
    if flat.size:
        packed = cuda.to_device(np.concatenate([offsets, flat]), stream=stream)
        longest = int(np.diff(offsets).max())
        scatter_counts_kernel[_grid(B, longest), TPB, stream](packed, counts)
    return counts


def update_counts(counts, add, remove, stream=0):
    """Keep ``counts`` current after an accept, in place on the device.

    Parameters
    ----------
    counts : int32 (B, V) device array (from ``counts_from_history``).
    add, remove : int or int64 (B,), host or device
        Per row, the token that enters the window and the one that leaves it; -1 (or
        any id outside [0, V)) = nothing.
    stream : numba stream or 0

    Returns
    -------
    ``counts``.
    """
    B = counts.shape[0]
    if B:
        a, r = transfer.upload(B, stream, (add, np.int64), (remove, np.int64))
        update_counts_kernel[-(-B // TPB), TPB, stream](counts, a, r)
    return counts


def window_deltas(history, tokens, last_n):
    """The ``(add, remove)`` of ``update_counts`` for appending ``tokens`` to ``history``.

    Parameters
    ----------
    history : list of B 1-D int arrays, the histories *before* the append.
    tokens : int (B,); a negative token appends nothing (-1, -1).
    last_n : int or int (B,), as in ``counts_from_history``.

    Returns
    -------
    add, remove : int64 (B,) host arrays (-1 = nothing).
    """
    B = len(history)
    tokens = np.broadcast_to(np.asarray(tokens, dtype=np.int64), (B,))
    last_n = np.broadcast_to(np.asarray(last_n, dtype=np.int64), (B,))
    add = np.full(B, -1, np.int64)
    remove = np.full(B, -1, np.int64)
    for b in range(B):
        n = int(last_n[b])
        if tokens[b] < 0 or n == 0:
            continue
        add[b] = tokens[b]
        h = history[b]
        if 0 < n <= len(h):   # the window is full: its oldest token leaves
            remove[b] = h[len(h) - n]
    return add, remove


# ------------------------------------------------------------------------ bias


def bias_tables(ids, values, V, stream=0):
    """LogitBias ``(ids, values)`` as device tables (one upload).

    Parameters
    ----------
    ids : int (n,), token ids in [0, V); repeated ids add up, in the given order.
    values : float (n,); ``-inf`` bans the token.
    V : int
    stream : numba stream or 0

    Returns
    -------
    BiasTables ``(slot, starts, vals, banned)``; with no ids, every ``slot`` is -1.

    Raises
    ------
    ValueError
        ids and values differ in length, or an id outside [0, V).
    """
    V = int(V)
    ids = np.asarray(ids).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    if ids.shape != values.shape:
        raise ValueError(f"logit_bias has {ids.size} ids but {values.size} values")
    ids = as_token_ids("bias", ids, V)
    order = np.argsort(ids, kind="stable")    # groups by id, values in given order
    sid = ids[order]
    svals = values[order]
    uids, first = np.unique(sid, return_index=True)
    G = uids.size
    starts = np.append(first, sid.size).astype(np.int64)
    banned = (np.logical_or.reduceat(np.isneginf(svals), first).astype(np.uint8) if G
              else np.zeros(1, np.uint8))
    slot = np.full(V, -1, np.int32)
    slot[uids] = np.arange(G, dtype=np.int32)
    vals = svals if svals.size else np.zeros(1)   # never empty: a 0-byte view
    starts, vals, slot, banned = transfer.pack([starts, vals, slot, banned], stream)
    return BiasTables(slot, starts, vals, banned)


def no_bias(stream=0):
    """1-element dummy ``BiasTables`` for a prelude without LogitBias (never read)."""
    return BiasTables(cuda.device_array(1, np.int32, stream=stream),
                      cuda.device_array(1, np.int64, stream=stream),
                      cuda.device_array(1, np.float64, stream=stream),
                      cuda.device_array(1, np.uint8, stream=stream))


def no_penalties(stream=0):
    """1-element dummies ``(counts, repeat, frequency, presence)`` for a prelude without
    Penalties (never read)."""
    return (cuda.device_array((1, 1), np.int32, stream=stream),
            cuda.device_array(1, np.float64, stream=stream),
            cuda.device_array(1, np.float64, stream=stream),
            cuda.device_array(1, np.float64, stream=stream))


# ------------------------------------------------------------------------ prelude


def order_of(names):
    """The ``ORDER_*`` code of LogitBias/Penalties stages in chain order: ``names`` a
    sequence of ``"bias"`` and ``"penalties"`` (each at most once)."""
    try:
        return _ORDERS[tuple(names)]
    except KeyError:
        raise ValueError(f"no prelude order for stages {list(names)}") from None


def _names(order):
    return next(k for k, v in _ORDERS.items() if v == order)


def prelude(x, out, counts, repeat, frequency, presence, bias, order, stream=0, dry=None):
    """LogitBias and/or Penalties in one elementwise pass on the device, then DRY's edits.

    Each stage gives what the reference stage gives (float64 math, float32
    saturation), applied in ``order``. NaN and +inf pass through unchanged (the
    canonical kernel then flags the row); ``-inf`` stays ``-inf``.

    Parameters
    ----------
    x : float32 (B, V) device array, C-contiguous. Not modified unless ``out is x``.
    out : float32 (B, V) device array (may be ``x``, except with DRY edits and
        another stage).
    counts : int32 (B, V) device array (``counts_from_history``); Penalties apply to
        tokens with count > 0.
    repeat, frequency, presence : float64 (B,) device arrays (host arrays or scalars
        are uploaded, one transfer).
    bias : BiasTables (``bias_tables``).
    order : int
        ``ORDER_PENALTIES`` (0), ``ORDER_BIAS`` (1), ``ORDER_BIAS_PENALTIES`` (2),
        ``ORDER_PENALTIES_BIAS`` (3) or ``ORDER_NONE`` (4: a copy).
    stream : numba stream or 0
    dry : ``(edits, before, after)`` or None
        DRY in the chain: ``edits`` from ``dry.dry_edits`` (None: it changes nothing),
        ``before``/``after`` the ``ORDER_*`` codes of the stages of ``order`` that come
        before and after DRY (``order_of``).

    The arguments of an absent stage are never read: pass ``None`` (1-element
    dummies are then allocated) or the dummies of ``no_bias()`` / ``no_penalties()``
    (kept by the caller, to allocate nothing per call).

    Returns
    -------
    ``out``.
    """
    order = int(order)
    if order not in _ORDERS.values():
        raise ValueError(f"order must be 0, 1, 2, 3 or 4; got {order}")
    B, V = x.shape
    if tuple(out.shape) != (B, V):
        raise ValueError(f"out has shape {tuple(out.shape)}, logits {(B, V)}")
    pen = "penalties" in _names(order)
    if pen:
        if counts is None or tuple(counts.shape) != (B, V):
            raise ValueError(f"counts must be (B, V) = {(B, V)} for Penalties")
        if B:
            repeat, frequency, presence = transfer.upload(
                B, stream, (repeat, np.float64), (frequency, np.float64),
                (presence, np.float64))
    elif counts is None or not all(map(transfer.is_device, (counts, repeat, frequency, presence))):
        counts, repeat, frequency, presence = no_penalties(stream)
    if "bias" not in _names(order):
        if bias is None:
            bias = no_bias(stream)
    elif bias is None:
        raise ValueError("bias tables are required for LogitBias (order 1, 2 or 3)")
    edits = None
    if dry is not None:
        edits, before, after = dry
        if _names(int(before)) + _names(int(after)) != _names(order):
            raise ValueError(f"DRY's neighbours (orders {before}, {after}) are not the "
                             f"stages of order {order}")
        if edits is not None and out is x and order != ORDER_NONE:
            raise ValueError("out must not be x with DRY edits after other stages (the "
                             "edits read the input)")
    if B and V and not (order == ORDER_NONE and out is x):
        prelude_kernel[_grid(B, V), TPB, stream](x, out, counts, repeat, frequency,
                                                 presence, *bias, order)
    if B and V and edits is not None:
        dry_kernel[_grid(B, edits.longest), TPB, stream](
            x, out, edits.index, edits.amounts, int(before), int(after), counts, repeat,
            frequency, presence, *bias)
    return out


# ------------------------------------------------------------------------ backend functions


def logit_bias(logits, ids, values, stream=0, out=None):
    """``l[t] += bias``; a ``-inf`` bias bans the token; repeated ids add up.

    Host (numpy) logits give a numpy result, device logits a device array; float32
    (B, V), a new array, or ``out=logits``: the logits edited in place.
    """
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    tables = bias_tables(ids, values, V, stream)
    dst = transfer.edit_target(logits, x, host, out, stream)
    prelude(x, dst, None, 1.0, 0.0, 0.0, tables, ORDER_BIAS, stream)
    return transfer.back_into(dst, host, out, stream)



def host_histories(history, B, V):
    """B host histories (1-D int arrays), each checked against [0, V)."""
    if len(history) != B:
        raise ValueError(f"history has {len(history)} rows but the batch has B={B} rows")
    return [as_token_ids(f"history row {b}", np.asarray(h).ravel(), V)
            for b, h in enumerate(history)]

def penalties(logits, history, repeat, frequency, presence, last_n, stream=0, out=None):
    """Repetition, frequency and presence penalties over the last ``last_n`` tokens.

    ``history``: a list of B 1-D int arrays (host); ``last_n``: host int or (B,)
    (-1 = all). Host logits give a numpy result, device logits a device array;
    ``out=logits`` edits the logits in place.
    """
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    history = host_histories(history, B, V)
    if transfer.is_device(last_n):
        last_n = last_n.copy_to_host(stream=stream)
    counts = counts_from_history(history, V, last_n, stream)
    dst = transfer.edit_target(logits, x, host, out, stream)
    prelude(x, dst, counts, repeat, frequency, presence, None, ORDER_PENALTIES, stream)
    return transfer.back_into(dst, host, out, stream)


def warmup():
    """Compile (or load from numba's cache) this module's kernels on tiny inputs."""
    x = cuda.to_device(np.linspace(-3.0, 3.0, 64, dtype=np.float32).reshape(2, 32))
    hist = [np.array([1, 2, 2]), np.array([5])]
    counts = counts_from_history(hist, 32, -1)
    update_counts(counts, np.array([3, -1]), np.array([1, -1]))
    tables = bias_tables([1, 4], [0.5, -np.inf], 32)
    for order in range(5):
        prelude(x, cuda.device_array_like(x), counts, 1.1, 0.1, 0.1, tables, order)
    cuda.synchronize()
