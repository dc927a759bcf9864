"""Numba CPU kernels for the stage functions of ``fastsample.reference``: the map, the
per-row driver and the wrappers of the row stages.

Every public function of the stage modules has exactly the name and signature of its
reference counterpart (docs/internals.md) and returns a new float32 ``(B, V)`` array
equal to the reference's: the same ``-inf`` set, finite values within float rounding
(the same float64 formulas, rounded to float32 at the same points, saturating at the
float32 range). Kernels never write their inputs.

Layout (docs/numba-backend.md), by stage family:

- ``history_stages``: LogitBias, Penalties, DRY, NoRepeatNGram (the edit stages,
  ``out=``), kernels and wrappers;
- ``truncations``: TopNSigma, TopK, Typical, TopP, MinP, XTC, Epsilon, Eta, TopA,
  PLess, TailFree (row functions);
- ``transforms``: Temperature, DynamicTemperature, Smoothing (row functions);
- ``terminals``: Greedy, Mirostat, MirostatV2, AdaptiveP (row functions);
- ``stage_common``: constants, shared row helpers, host-side argument conversion;
- here: ``_rows_kernel``, the one driver of every row function (a ``kind`` code picks
  the stage, so one compilation serves them all), ``parallel=True`` with ``prange``,
  and its ``_serial`` twin for one row (a thread-pool launch per token costs more
  than the row, and on a loaded machine a descheduled worker stalls it for
  milliseconds); and the Python wrappers of the row stages. The history stages'
  wrappers are re-exported, so this module holds every stage function by name.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..shared import uniform
from .history_stages import (
    dry,
    dry_penalty,
    logit_bias,
    no_repeat_ngram,
    penalties,
)
from .stage_common import (
    _NJ,
    _PJ,
    K_ADAPTIVE_P,
    K_DYN_TEMP,
    K_EPSILON,
    K_ETA,
    K_GREEDY,
    K_MIN_P,
    K_MIROSTAT,
    K_MIROSTAT_V2,
    K_P_LESS,
    K_SMOOTHING,
    K_TAIL_FREE,
    K_TEMPERATURE,
    K_TOP_A,
    K_TOP_K,
    K_TOP_N_SIGMA,
    K_TOP_P,
    K_TYPICAL,
    K_XTC,
    STREAM_XTC,
    _f64,
    _i64,
    _logits,
    _u64,
)
from .terminals import (
    _adaptive_p_row,
    _greedy_row,
    _mirostat_row,
    _mirostat_v2_row,
)
from .transforms import (
    _dyn_temp_row,
    _smoothing_row,
    _temperature_row,
)
from .truncations import (
    _min_p_row,
    _prob_row,
    _tail_free_row,
    _top_k_row,
    _top_n_sigma_row,
    _top_p_row,
    _typical_row,
    _xtc_row,
)

__all__ = [
    "logit_bias", "penalties", "dry", "dry_penalty", "no_repeat_ngram", "top_n_sigma",
    "top_k", "typical", "top_p", "min_p", "xtc", "epsilon", "eta", "top_a", "p_less",
    "tail_free", "temperature", "dynamic_temperature", "smoothing", "greedy",
    "mirostat", "mirostat_v2", "adaptive_p",
]



@numba.njit(**_NJ)
def _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b):
    """Row b of ``_rows_kernel``."""
    row = logits[b]
    o = out[b]
    if kind == K_TOP_N_SIGMA:
        _top_n_sigma_row(row, o, f1[b], i2[b])
    elif kind == K_TOP_K:
        _top_k_row(row, o, i1[b], i2[b])
    elif kind == K_TYPICAL:
        _typical_row(row, o, f1[b], i2[b])
    elif kind == K_TOP_P:
        _top_p_row(row, o, f1[b], i2[b])
    elif kind == K_MIN_P:
        _min_p_row(row, o, f1[b], i2[b])
    elif kind == K_XTC:
        u = uniform(seed[b], position[b], STREAM_XTC)
        _xtc_row(row, o, f1[b], f2[b], i2[b], u)
    elif kind == K_TAIL_FREE:
        _tail_free_row(row, o, f1[b], i2[b])
    elif kind == K_TEMPERATURE:
        _temperature_row(row, o, f1[b])
    elif kind == K_DYN_TEMP:
        _dyn_temp_row(row, o, f1[b], f2[b], f3[b])
    elif kind == K_SMOOTHING:
        _smoothing_row(row, o, f1[b], f2[b])
    elif kind == K_GREEDY:
        _greedy_row(row, o)
    elif kind == K_MIROSTAT:
        _mirostat_row(row, o, f1[b], i1[b])
    elif kind == K_MIROSTAT_V2:
        _mirostat_v2_row(row, o, f1[b])
    elif kind == K_ADAPTIVE_P:
        _adaptive_p_row(row, o, f1[b], f2[b], f3[b])
    else:  # epsilon, eta, top_a, p_less
        _prob_row(row, o, kind, f1[b], i2[b])


@numba.njit(**_PJ)
def _rows_kernel(logits, out, kind, f1, f2, f3, i1, i2, seed, position):
    for b in prange(logits.shape[0]):
        _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b)


@numba.njit(**_NJ)
def _rows_serial(logits, out, kind, f1, f2, f3, i1, i2, seed, position):
    """``_rows_kernel`` without threads (one row: no thread-pool launch, which a
    loaded machine can deschedule for milliseconds)."""
    for b in range(logits.shape[0]):
        _rows_at(logits, out, kind, f1, f2, f3, i1, i2, seed, position, b)


def _run_rows(logits, kind, f1=None, f2=None, f3=None, i1=None, i2=None,
              seed=None, position=None):
    x = _logits(logits)
    B = x.shape[0]
    out = np.empty_like(x)
    if B == 0:
        return out
    zf = np.zeros(B, np.float64)
    zi = np.zeros(B, np.int64)
    zu = np.zeros(B, np.uint64)
    kernel = _rows_serial if B == 1 else _rows_kernel  # one row: no thread pool
    kernel(
        x, out, kind,
        zf if f1 is None else _f64(f1, B),
        zf if f2 is None else _f64(f2, B),
        zf if f3 is None else _f64(f3, B),
        zi if i1 is None else _i64(i1, B),
        zi if i2 is None else _i64(i2, B),
        zu if seed is None else _u64(seed, B),
        zu if position is None else _u64(position, B),
    )
    return out


def top_n_sigma(logits, n, min_keep):
    """Keep ``l >= max - n * std`` over the finite logits (population std)."""
    return _run_rows(logits, K_TOP_N_SIGMA, f1=n, i2=min_keep)


def top_k(logits, k, min_keep):
    """Keep ``l >=`` the k-th largest finite logit (ties kept); k <= 0 is a no-op."""
    return _run_rows(logits, K_TOP_K, i1=k, i2=min_keep)


def typical(logits, p, min_keep):
    """Locally typical sampling: order by ``|-ln p - H|``, keep the prefix reaching p."""
    return _run_rows(logits, K_TYPICAL, f1=p, i2=min_keep)


def top_p(logits, p, min_keep):
    """Nucleus: the shortest prefix (by p, descending) whose mass reaches p, ties kept."""
    return _run_rows(logits, K_TOP_P, f1=p, i2=min_keep)


def min_p(logits, p, min_keep):
    """Keep ``l >= l_max + ln(p)`` (logit space)."""
    return _run_rows(logits, K_MIN_P, f1=p, i2=min_keep)


def xtc(logits, probability, threshold, min_keep, seed, position):
    """Exclude Top Choices with the stream-1 roll of docs/spec.md §5."""
    return _run_rows(logits, K_XTC, f1=probability, f2=threshold, i2=min_keep,
                     seed=seed, position=position)


def epsilon(logits, epsilon, min_keep):
    """Mask ``p < epsilon``."""
    return _run_rows(logits, K_EPSILON, f1=epsilon, i2=min_keep)


def eta(logits, epsilon, min_keep):
    """Mask ``p < min(eps, sqrt(eps) * exp(-H))``."""
    return _run_rows(logits, K_ETA, f1=epsilon, i2=min_keep)


def top_a(logits, a, min_keep):
    """Mask ``p < a * p_max ** 2``."""
    return _run_rows(logits, K_TOP_A, f1=a, i2=min_keep)


def p_less(logits, min_keep):
    """Mask ``p < sum(p**2) - 1e-6``."""
    return _run_rows(logits, K_P_LESS, i2=min_keep)


def tail_free(logits, z, min_keep):
    """Tail-free sampling, text-generation-webui's rule."""
    return _run_rows(logits, K_TAIL_FREE, f1=z, i2=min_keep)


def temperature(logits, t):
    """``l / t`` for t > 0 (saturating); t <= 0 keeps the first max; t == 1 copies."""
    return _run_rows(logits, K_TEMPERATURE, f1=t)


def dynamic_temperature(logits, t, range_, exponent):
    """Entropy-scaled temperature ``T = lo + (hi - lo) * (H / ln n) ** exponent``."""
    return _run_rows(logits, K_DYN_TEMP, f1=t, f2=range_, f3=exponent)


def smoothing(logits, factor, curve):
    """Quadratic/cubic smoothing (text-generation-webui)."""
    return _run_rows(logits, K_SMOOTHING, f1=factor, f2=curve)


def greedy(logits):
    """One-hot mask: the first maximum keeps its logit, every other token ``-inf``."""
    return _run_rows(logits, K_GREEDY)


def mirostat(logits, mu, m):
    """Mirostat v1's truncation for the current mu (TopK rule)."""
    return _run_rows(logits, K_MIROSTAT, f1=mu, i1=m)


def mirostat_v2(logits, mu):
    """Mirostat v2's truncation: keep ``-log2 p <= mu`` (at least the max)."""
    return _run_rows(logits, K_MIROSTAT_V2, f1=mu)


def adaptive_p(logits, target, ema_sum, ema_weight):
    """Adaptive-p transform ``l' = 5 - 10 d**2 / (1 + d)``, ``d = |p - tau'| / 0.3``."""
    return _run_rows(logits, K_ADAPTIVE_P, f1=target, f2=ema_sum, f3=ema_weight)
