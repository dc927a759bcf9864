"""The row validity check of docs/spec.md §7 as one vectorised pass per row.

A row is invalid if it holds a NaN or +inf, or if every logit is ``-inf``: exactly
when its max is not finite, provided the max propagates NaN, which ``llvm.maximum``
does (numpy's ``max`` does too, but this pass is about twice as fast here).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .simd import FASTMATH, maximum

__all__ = ["invalid_rows", "row_is_invalid", "row_max_nan"]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def row_max_nan(row):
    """The row's max, NaN if it holds a NaN (``llvm.maximum`` propagates it)."""
    m = row[0]
    for i in range(1, row.shape[0]):
        m = maximum(m, row[i])
    return m


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def row_is_invalid(row):
    """Spec §7: the row holds a NaN or +inf, or every entry is ``-inf``."""
    m = row_max_nan(row)
    return not (-np.inf < m < np.inf)


@numba.njit(cache=True, nogil=True)
def _rows_serial(x, out):
    for b in range(x.shape[0]):
        out[b] = row_is_invalid(x[b])


@numba.njit(cache=True, nogil=True, parallel=True)
def _rows_parallel(x, out):
    for b in prange(x.shape[0]):
        out[b] = row_is_invalid(x[b])


def invalid_rows(logits):
    """Boolean ``(B,)``: rows with NaN or +inf, or with every logit ``-inf``.

    ``logits`` is float32 ``(B, V)`` C-contiguous with V >= 1.
    """
    out = np.zeros(logits.shape[0], dtype=np.bool_)
    if logits.shape[0] == 1:
        _rows_serial(logits, out)
    elif logits.shape[0] > 1:
        _rows_parallel(logits, out)
    return out
