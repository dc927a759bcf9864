"""XTC (Exclude Top Choices, docs/spec.md §4) after the canonical truncations, on the GPU.

XTC runs on the row as the cuts leave it: the survivors ``K = {v >= T}`` of the
stage values ``v = stage_value(l, t_pre)`` (raw logits, or ``l / t`` in HF order),
with ``p = exp(v - m) / W``, ``m`` the row max (always in K), ``W`` the survivors'
mass. When the row's stream-1 uniform is below ``probability`` (and ``threshold <=
0.5``) and at least two survivors have ``p >= threshold``, XTC masks those with ``p``
above the smallest such ``pmin``. ``p`` is monotone in ``v`` (one ``exp``, one
division by the same ``W``), so what stays is an interval of values,
``T <= v <= xu``, ``xu`` the largest survivor with ``p <= pmin``. XTC's ``min_keep``
floor (the chain's one ``min_keep``) brings back the values ``>= G(min_keep)`` when
fewer than ``min_keep`` stay: the draw keeps ``v >= T`` outside the hole
``xu < v < xg`` (``block.kept``).

Three passes, run only for a row that XTC acts on: ``W`` (chunk sums in chunk order,
``canonical.chunk_slices``, so both paths add alike), then the count above the
threshold and ``pmin`` (``xtc_above``), then ``xu`` and the count that stays
(``xtc_upper``). Counts, minima and maxima are exact in any order, so the split path
(``split.py``) combines per-chunk results to the same bits. ``p`` is computed as the
reference computes it (``exp(v - m) / W`` in float64); like TopP's masses it differs
from numpy's only by float64 rounding of ``W`` and ``exp``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ...rng import STREAM_XTC
from ..shared import uniform
from .block import max_f32, min_f64, stage_value, sum_i32
from .target import TPB, load

__all__ = ["INF", "xtc_above", "xtc_cuts", "xtc_rolls", "xtc_upper"]

INF = np.inf   # xu and xg when XTC changes nothing (block.kept's hole is empty)


@cuda.jit(device=True)
def xtc_rolls(probability, threshold, seed, position):
    """Whether XTC may act on the row: not a no-op (``probability > 0``, ``threshold
    <= 0.5``) and the row's uniform of stream 1 is below ``probability``."""
    if not (probability > 0.0 and threshold <= 0.5):
        return False
    return uniform(seed, position, STREAM_XTC) < probability


@cuda.jit(device=True)
def xtc_above(row, lo, hi, T, t_pre, m, W, threshold, sh_f64, sh_i32):
    """Over the survivors of ``row[lo:hi]``: how many have ``p >= threshold`` and the
    smallest such ``p`` (``inf`` if none). Every thread gets both."""
    n_above = 0
    pmin = INF
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        f = np.float64(stage_value(load(row, i), t_pre))
        if f >= T:
            p = math.exp(f - m) / W
            if p >= threshold:
                n_above += 1
                pmin = min(pmin, p)
    return sum_i32(n_above, sh_i32), min_f64(pmin, sh_f64)


@cuda.jit(device=True)
def xtc_upper(row, lo, hi, T, t_pre, m, W, pmin, sh_f32, sh_i32):
    """Over the survivors of ``row[lo:hi]`` that XTC keeps (``p <= pmin``): the largest
    value (float32, ``-inf`` if none) and how many. Every thread gets both."""
    top = float32(-np.inf)
    n_low = 0
    for i in range(lo + cuda.threadIdx.x, hi, TPB):
        v = stage_value(load(row, i), t_pre)
        f = np.float64(v)
        if f >= T and math.exp(f - m) / W <= pmin:
            n_low += 1
            top = max(top, v)
    return max_f32(top, sh_f32), sum_i32(n_low, sh_i32)


@cuda.jit(device=True)
def xtc_cuts(n_above, top, n_low, min_keep, g_mk, m):
    """``(xu, xg, m_draw)`` from the passes' results: the hole of ``block.kept`` and
    the largest value the draw keeps. Fewer than two above the threshold: no change.
    Fewer than ``min_keep`` kept: the values ``>= g_mk = G(min_keep)`` come back
    (``g_mk``: ``-F32_MAX`` when ``min_keep`` reaches the finite count), so the
    row max stays too."""
    if n_above < 2:
        return INF, INF, m
    xu = np.float64(top)
    if n_low < min_keep:
        return xu, g_mk, m
    return xu, INF, xu
