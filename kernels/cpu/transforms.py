"""Numba row kernels of the logit-space transforms: Temperature, DynamicTemperature
and Smoothing (docs/spec.md §4). They change values, never the set of finite tokens,
and run one row at a time under ``stages._rows_kernel``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..shared import saturate_f32 as _sat
from .stage_common import (
    _NJ,
    _copy,
    _count_finite,
    _entropy,
    _row_max,
    _weights,
)
from .terminals import _greedy_row


@numba.njit(**_NJ)
def _temperature_row(row, out, t):
    if t == 1.0:
        _copy(row, out)
        return
    if t <= 0.0:
        _greedy_row(row, out)
        return
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            out[i] = _sat(x / t)
        else:
            out[i] = -np.inf


@numba.njit(**_NJ)
def _dyn_temp_row(row, out, t, range_, exponent):
    n = _count_finite(row)
    temp = t
    if not (range_ <= 0 or n <= 1):
        lo = t - range_
        if not lo > 0.0:
            lo = 0.0
        hi = t + range_
        w = np.empty(row.shape[0], np.float64)
        m, W = _weights(row, w)
        h = _entropy(w, W)
        temp = lo + (hi - lo) * (h / math.log(n)) ** exponent
    _temperature_row(row, out, temp)


@numba.njit(**_NJ)
def _smoothing_row(row, out, factor, curve):
    if factor <= 0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    top = _row_max(row)
    k = (3.0 - curve) / 2.0
    s = (curve - 1.0) / 2.0
    for i in range(row.shape[0]):
        x = np.float64(row[i])
        if x > -np.inf:
            d = x - top
            d2 = d * d
            out[i] = _sat(top - k * factor * d2 + s * factor * (d2 * d))
        else:
            out[i] = -np.inf
