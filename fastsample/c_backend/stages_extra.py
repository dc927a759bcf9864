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

from ._util import buf, f64, i64, lib, over_rows
from .stages import _check, _history, _logits, _rows, _workspace

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


def _run(name, logits, params, *, fws=True, dws=True):
    """Run ``fs_<name>(logits, out, B, V, *params[, fws, V][, dws, len])`` over row blocks.

    ``params`` are (B,) arrays, sliced per block; ``fws`` / ``dws`` say whether the
    kernel takes the float (V) / double (``fs_extra_dws_len(V)``) workspace.
    """
    x = _logits(logits)
    B, V = x.shape
    out = np.empty_like(x)
    fn = getattr(lib, "fs_" + name)

    def run(a, b):
        args = [buf(p[a:b]) for p in params]
        if fws:
            f = _workspace("fws", np.float32, V)
            args += [buf(f), f.size]
        if dws:
            d = _workspace("dws", np.float64, lib.fs_extra_dws_len(V))
            args += [buf(d), d.size]
        _check(fn(buf(x[a:b]), buf(out[a:b]), b - a, V, *args), name, V)

    over_rows(B, run)
    return out


def _B(logits):
    return int(np.shape(logits)[0])


# ------------------------------------------------------------------ p thresholds


def epsilon(logits, epsilon, min_keep):
    """Epsilon sampling (Hewitt et al.): mask ``p < epsilon``."""
    B = _B(logits)
    return _run("epsilon", logits, (_rows(epsilon, B, f64), _rows(min_keep, B, i64)))


def eta(logits, epsilon, min_keep):
    """Eta sampling (Hewitt et al.): mask ``p < min(eps, sqrt(eps) * exp(-H))``."""
    B = _B(logits)
    return _run("eta", logits, (_rows(epsilon, B, f64), _rows(min_keep, B, i64)))


def top_a(logits, a, min_keep):
    """Top-a: mask ``p < a * p_max ** 2``."""
    B = _B(logits)
    return _run("top_a", logits, (_rows(a, B, f64), _rows(min_keep, B, i64)))


def p_less(logits, min_keep):
    """P-less sampling: mask ``p < sum(p**2) - 1e-6`` (the max always survives)."""
    return _run("p_less", logits, (_rows(min_keep, _B(logits), i64),))


def tail_free(logits, z, min_keep):
    """Tail-free sampling, text-generation-webui's rule (SPEC §4 table)."""
    B = _B(logits)
    return _run("tail_free", logits, (_rows(z, B, f64), _rows(min_keep, B, i64)))


# ------------------------------------------------------------------ logit transforms


def dynamic_temperature(logits, t, range_, exponent):
    """Entropy-scaled temperature: ``T = lo + (hi - lo) * (H / ln n) ** exponent``."""
    B = _B(logits)
    params = (_rows(t, B, f64), _rows(range_, B, f64), _rows(exponent, B, f64))
    return _run("dynamic_temperature", logits, params, fws=False)


def smoothing(logits, factor, curve):
    """Quadratic/cubic sampling (text-generation-webui's smoothing factor and curve)."""
    B = _B(logits)
    return _run("smoothing", logits, (_rows(factor, B, f64), _rows(curve, B, f64)),
                fws=False, dws=False)


# ------------------------------------------------------------------ stateful terminals


def mirostat(logits, mu, m):
    """Mirostat v1's truncation for the current mu: keep the top k (TopK rule)."""
    B = _B(logits)
    return _run("mirostat", logits, (_rows(mu, B, f64), _rows(m, B, i64)))


def mirostat_v2(logits, mu):
    """Mirostat v2's truncation: keep tokens with ``-log2 p <= mu`` (at least the max)."""
    return _run("mirostat_v2", logits, (_rows(mu, _B(logits), f64),), fws=False)


def adaptive_p(logits, target, ema_sum, ema_weight):
    """Adaptive-p transform: ``l' = 5 - 10 d**2 / (1 + d)``, ``d = |p - tau'| / 0.3``."""
    B = _B(logits)
    params = (_rows(target, B, f64), _rows(ema_sum, B, f64), _rows(ema_weight, B, f64))
    return _run("adaptive_p", logits, params, fws=False)


# ------------------------------------------------------------------ history


def no_repeat_ngram(logits, history, n):
    """Ban every token that would complete an n-gram already in the history (HF)."""
    x = _logits(logits)
    B, V = x.shape
    out = np.empty_like(x)
    if B == 0:
        return out
    hist, offsets = _history(history, B)
    nn = _rows(n, B, i64)
    longest = int(np.diff(offsets).max())

    def run(a, b):
        z = _workspace("z", np.int32, longest)
        _check(lib.fs_no_repeat_ngram(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(hist),
                                      hist.size, buf(offsets[a:b + 1]), buf(nn[a:b]),
                                      buf(z), z.size), "no_repeat_ngram", V)

    over_rows(B, run)
    return out
