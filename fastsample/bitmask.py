"""Packed token bitmasks (docs/spec.md §10): checks and normalisation.

The format is the one grammar engines fill each step (xgrammar, llguidance,
outlines-core): an int32 array ``(R, ceil(V / 32))`` in which token v is allowed iff
bit ``v % 32`` of word ``v // 32`` is 1 (little-endian bit order within a word).
``bitmask_rows`` (B,) maps each logits row to a bitmask row, -1 for a row without a
constraint (vLLM's indices); None means row b uses bitmask row b.

Backends receive the normalised form: ``bitmask`` as a C-contiguous uint32 ``(R, W)``
array (W >= ceil(V / 32); an int32 input is viewed, not copied) and ``rows`` as int64
``(B,)`` in ``[-1, R)``. Bits past V are ignored.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_bitmask", "as_rows", "one_row", "row_words", "words"]


def words(V):
    """The number of 32-bit words of a bitmask over V tokens: ``ceil(V / 32)``."""
    return (int(V) + 31) // 32


def as_bitmask(bitmask, B, V, rows=None, name="bitmask", rows_name="bitmask_rows"):
    """Check a packed bitmask and its row map; return ``(uint32 (R, W), int64 (B,))``.

    Parameters
    ----------
    bitmask : array_like of int32 or uint32, shape (R, W) or (W,)
        A 1-D bitmask is one row (R = 1).
    B, V : int
        The logits' batch size and vocabulary size.
    rows : array_like of int, shape (B,), optional
        Bitmask row of each logits row, -1 = unconstrained; None: row b uses bitmask
        row b (then R must equal B).

    Raises
    ------
    TypeError
        A dtype other than int32/uint32 (a bool or uint8 array is an unpacked mask, a
        different format), or non-integer ``rows``.
    ValueError
        A bitmask narrower than ``ceil(V / 32)`` words, of the wrong ndim, R != B
        without ``rows``, ``rows`` of the wrong length or outside ``[-1, R)``.
    """
    m = bitmask if isinstance(bitmask, np.ndarray) else np.asarray(bitmask)
    if m.dtype not in (np.int32, np.uint32):
        raise TypeError(f"{name} must be a packed int32 (or uint32) array of shape "
                        f"(R, ceil(V/32)); got dtype {m.dtype}")
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D (R, ceil(V/32)); got ndim={m.ndim}")
    need = words(V)
    if m.shape[1] < need:
        raise ValueError(f"{name} has {m.shape[1]} words per row but V={V} needs "
                         f"ceil(V/32)={need}")
    m = np.ascontiguousarray(m).view(np.uint32)
    return m, as_rows(rows, B, m.shape[0], name, rows_name)


def as_rows(rows, B, R, name="bitmask", rows_name="bitmask_rows"):
    """``bitmask_rows`` checked against a bitmask of R rows: int64 (B,) in [-1, R)
    (None: ``arange(B)``, which needs R == B)."""
    if rows is None:
        if R != B:
            raise ValueError(f"{name} has {R} rows but the batch has B={B} rows "
                             f"(pass {rows_name} to map logits rows to bitmask rows)")
        return np.arange(B, dtype=np.int64)
    if isinstance(rows, numbers.Integral) and not isinstance(rows, (bool, np.bool_)):
        r = np.full(B, int(rows), np.int64)
    else:
        r = np.asarray(rows)
        if r.dtype.kind not in "iu":
            raise TypeError(f"{rows_name} must hold integer row indices; got dtype {r.dtype}")
        if r.ndim != 1 or r.shape[0] != B:
            raise ValueError(f"{rows_name} has shape {r.shape} but the batch has B={B} rows")
        r = np.ascontiguousarray(r, dtype=np.int64)
    bad = (r < -1) | (r >= R)
    if bad.any():
        raise ValueError(f"{rows_name} has {int(r[bad][0])} (row {int(np.argmax(bad))}) "
                         f"outside [-1, R={R})")
    return r


def pack_ids(ids, V):
    """Token ids (int64, in [0, V)) as one packed bitmask row: uint32 (1, ceil(V/32)),
    bit t % 32 of word t // 32 set for each id t."""
    # a bool scatter and np.packbits (np.bitwise_or.at, a ufunc.at per id, costs 0.6 ms
    # for 43k ids at V = 128256)
    keep = np.zeros(words(V) * 32, np.bool_)
    keep[ids] = True
    return np.packbits(keep, bitorder="little").view("<u4").astype(np.uint32)[None, :]


def one_row(bitmask, V):
    """The words of a one-row call's bitmask given as a plain C-contiguous 1-D int32 or
    uint32 numpy array of at least ceil(V/32) words (the per-token case), as uint32;
    None for any other form (then ``as_bitmask`` checks it)."""
    if type(bitmask) is np.ndarray and bitmask.ndim == 1 and bitmask.flags.c_contiguous \
            and bitmask.shape[0] >= (V + 31) // 32 and bitmask.dtype in _WORD_TYPES:
        return bitmask.view(np.uint32)
    return None


_WORD_TYPES = (np.dtype(np.int32), np.dtype(np.uint32))


def row_words(bitmask, rows, b):
    """Logits row b's bitmask words (uint32 1-D), or None when it is unconstrained."""
    r = int(rows[b])
    return None if r < 0 else bitmask[r]
