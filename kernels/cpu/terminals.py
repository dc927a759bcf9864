"""Numba row kernels of the terminal-side stages: Greedy's one-hot mask, and the
per-token truncations/transforms of the stateful terminals (Mirostat v1 and v2,
AdaptiveP) for their current state (docs/spec.md §4; the chain keeps the state and
updates it from ``token_logprob``). ``_mirostat_row`` looks at the top-m values only.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..shared import saturate_f32 as _sat
from .simd import exp64
from .stage_common import (
    _NJ,
    LN2,
    _argsort_stable,
    _copy,
    _count_finite,
    _select,
    _weights,
)
from .truncations import _top_k_row


@numba.njit(**_NJ)
def _greedy_row(row, out):
    best = -1
    m = -np.inf
    for i in range(row.shape[0]):
        out[i] = -np.inf
        if row[i] > m:
            m = row[i]
            best = i
    if best >= 0:
        out[best] = row[best]


@numba.njit(**_NJ)
def _adaptive_p_row(row, out, target, ema_sum, ema_weight):
    if target < 0.0 or _count_finite(row) == 0:
        _copy(row, out)
        return
    tau = 2.0 * target - ema_sum / ema_weight
    if not tau > 0.0:
        tau = 0.0 if tau <= 0.0 else tau
    if tau > 1.0:
        tau = 1.0
    w = np.empty(row.shape[0], np.float64)
    m, W = _weights(row, w)
    for i in range(row.shape[0]):
        if row[i] > -np.inf:
            d = abs(w[i] / W - tau) / 0.3
            out[i] = _sat(5.0 - 10.0 * (d * d) / (1.0 + d))
        else:
            out[i] = -np.inf


@numba.njit(**_NJ)
def _top_values_desc(row, k):
    """The k largest finite values (k <= finite count), descending, float64."""
    V = row.shape[0]
    n = _count_finite(row)
    vals = np.empty(n, np.float32)
    j = 0
    for i in range(V):
        if row[i] > -np.inf:
            vals[j] = row[i]
            j += 1
    if k < n:
        _select(vals, n - k)  # the k largest now sit in vals[n-k:]
    keys = np.empty(k, np.float64)
    for j in range(k):
        keys[j] = -np.float64(vals[n - k + j])
    order = _argsort_stable(keys)
    res = np.empty(k, np.float64)
    for j in range(k):
        res[j] = -keys[order[j]]
    return res


@numba.njit(**_NJ)
def _mirostat_row(row, out, mu, m_param):
    V = row.shape[0]
    n = _count_finite(row)
    if n == 0:
        _copy(row, out)
        return
    mm = m_param if m_param < n else n
    top = mm - 1
    k = 1
    if top > 0:
        w = np.empty(V, np.float64)
        mx, W = _weights(row, w)
        vals = _top_values_desc(row, top + 1)
        ps = np.empty(top + 1, np.float64)
        for j in range(top + 1):
            ps[j] = exp64(vals[j] - mx) / W
        num = 0.0
        den = 0.0
        for i in range(top):
            t = math.log((i + 2.0) / (i + 1.0))
            b = math.log(ps[i] / ps[i + 1])
            num += t * b
            den += t * t
        s = num / den
        e = s - 1.0
        ratio = (e * 2.0 ** mu) / (1.0 - np.float64(V) ** (-e))
        kf = ratio ** (1.0 / s)
        if not np.isfinite(kf) or kf > n:
            k = n
        else:
            k = max(int(kf), 1)
    _top_k_row(row, out, k, 1)


@numba.njit(**_NJ)
def _mirostat_v2_row(row, out, mu):
    V = row.shape[0]
    if _count_finite(row) == 0:
        _copy(row, out)
        return
    w = np.empty(V, np.float64)
    m, W = _weights(row, w)
    logw = math.log(W)
    nk = 0
    for i in range(V):
        x = np.float64(row[i])
        if x > -np.inf and -((x - m) - logw) / LN2 <= mu:
            out[i] = row[i]
            nk += 1
        else:
            out[i] = -np.inf
    if nk == 0:
        for i in range(V):
            if np.float64(row[i]) == m:
                out[i] = row[i]
