"""Python wrappers of the remaining C stage kernels (``csrc/stages_extra.c``).

Epsilon, eta, top-a, p-less, tail-free, dynamic temperature, smoothing, the
Mirostat v1 / v2 truncations, the adaptive-p transform and the no-repeat-n-gram
ban: each has the name, signature and result of its counterpart in
``fastsample.reference`` (docs/internals.md) and returns a new float32 ``(B, V)``
array. Inputs are converted to the exact dtypes C expects, workspaces are numpy
arrays kept per thread and grown on demand, rows are spread over threads with
``over_rows``, and a C status code other than OK is raised as ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from ._util import buf, f64, i64, lib, over_rows, workspace
from .stages import _B, _check, _history_rows, _rows, _run, _truncation

__all__ = [
    "adaptive_p",
    "dynamic_temperature",
    "epsilon",
    "eta",
    "mirostat",
    "mirostat_v2",
    "no_repeat_ngram",
    "p_less",
    "smoothing",
    "tail_free",
    "top_a",
]


def _extra(name, logits, params, *, fws=True, dws=True):
    """``stages._run`` for this file's kernels, whose double workspace (when ``dws``)
    is ``fs_extra_dws_len(V)`` long."""
    return _run(name, logits, params, fws=fws, dws_len=lib.fs_extra_dws_len if dws else None)


# ------------------------------------------------------------------ p thresholds


def epsilon(logits, epsilon, min_keep):
    """Epsilon sampling (Hewitt et al.): mask ``p < epsilon``."""
    return _truncation("epsilon", logits, epsilon, min_keep, dws_len=lib.fs_extra_dws_len)


def eta(logits, epsilon, min_keep):
    """Eta sampling (Hewitt et al.): mask ``p < min(eps, sqrt(eps) * exp(-H))``."""
    return _truncation("eta", logits, epsilon, min_keep, dws_len=lib.fs_extra_dws_len)


def top_a(logits, a, min_keep):
    """Top-a: mask ``p < a * p_max ** 2``."""
    return _truncation("top_a", logits, a, min_keep, dws_len=lib.fs_extra_dws_len)


def p_less(logits, min_keep):
    """P-less sampling: mask ``p < sum(p**2) - 1e-6`` (the max always survives)."""
    return _extra("p_less", logits, (_rows(min_keep, _B(logits), i64),))


def tail_free(logits, z, min_keep):
    """Tail-free sampling, text-generation-webui's rule (docs/spec.md §4 table)."""
    return _truncation("tail_free", logits, z, min_keep, dws_len=lib.fs_extra_dws_len)


# ------------------------------------------------------------------ logit transforms


def dynamic_temperature(logits, t, range_, exponent):
    """Entropy-scaled temperature: ``T = lo + (hi - lo) * (H / ln n) ** exponent``."""
    B = _B(logits)
    params = (_rows(t, B, f64), _rows(range_, B, f64), _rows(exponent, B, f64))
    return _extra("dynamic_temperature", logits, params, fws=False)


def smoothing(logits, factor, curve):
    """Quadratic/cubic sampling (text-generation-webui's smoothing factor and curve)."""
    B = _B(logits)
    return _extra("smoothing", logits, (_rows(factor, B, f64), _rows(curve, B, f64)),
                fws=False, dws=False)


# ------------------------------------------------------------------ stateful terminals


def mirostat(logits, mu, m):
    """Mirostat v1's truncation for the current mu: keep the top k (TopK rule)."""
    B = _B(logits)
    return _extra("mirostat", logits, (_rows(mu, B, f64), _rows(m, B, i64)))


def mirostat_v2(logits, mu):
    """Mirostat v2's truncation: keep tokens with ``-log2 p <= mu`` (at least the max)."""
    return _extra("mirostat_v2", logits, (_rows(mu, _B(logits), f64),), fws=False)


def adaptive_p(logits, target, ema_sum, ema_weight):
    """Adaptive-p transform: ``l' = 5 - 10 d**2 / (1 + d)``, ``d = |p - tau'| / 0.3``."""
    B = _B(logits)
    params = (_rows(target, B, f64), _rows(ema_sum, B, f64), _rows(ema_weight, B, f64))
    return _extra("adaptive_p", logits, params, fws=False)


# ------------------------------------------------------------------ history


def no_repeat_ngram(logits, history, n, out=None):
    """Ban every token that would complete an n-gram already in the history (HF)."""
    x, out, hist, offsets = _history_rows(logits, history, out)
    if hist is None:
        return out
    B, V = x.shape
    nn = _rows(n, B, i64)
    longest = int(np.diff(offsets).max())

    def run(a, b):
        z, z_len = workspace("z", np.int32, longest)
        _check(lib.fs_no_repeat_ngram(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(hist),
                                      hist.size, buf(offsets[a:b + 1]), buf(nn[a:b]),
                                      z, z_len), "no_repeat_ngram", V)

    over_rows(B, run)
    return out
