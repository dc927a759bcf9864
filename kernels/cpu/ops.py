"""The numba CPU backend: one function per ``fastsample.reference`` function.

Same names, same signatures, same results (docs/internals.md); the registry loads
this module as ``backend="numba"``. Nothing compiles at import: each kernel compiles
(or loads from numba's cache) on its first call; ``warmup()`` does all of them.
"""

from __future__ import annotations

import time

import numpy as np

from .canonical import sample_canonical
from .draw import argmax, draw, token_logprob
from .softmax import log_softmax, softmax
from .stages import (
    adaptive_p, dry, dry_penalty, dynamic_temperature, epsilon, eta, greedy, logit_bias,
    min_p, mirostat, mirostat_v2, no_repeat_ngram, p_less, penalties, smoothing, tail_free,
    temperature, top_a, top_k, top_n_sigma, top_p, typical, xtc,
)
from .topk import topk
from .validity import invalid_rows

__all__ = [
    "logit_bias", "penalties", "dry", "no_repeat_ngram", "top_n_sigma", "top_k",
    "typical", "top_p", "min_p", "xtc", "epsilon", "eta", "top_a", "p_less", "tail_free",
    "temperature", "dynamic_temperature", "smoothing", "greedy", "mirostat",
    "mirostat_v2", "adaptive_p", "draw", "argmax", "token_logprob", "softmax",
    "log_softmax", "topk", "dry_penalty", "sample_canonical", "invalid_rows", "warmup",
]


def warmup():
    """Compile (or load from cache) every kernel, serial and parallel variants.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    f = np.float64
    for B in (1, 2):  # B == 1 and B > 1 may take different (serial/parallel) kernels
        x = np.linspace(-3.0, 3.0, 4096 * B, dtype=np.float32).reshape(B, 4096)
        one = np.ones(B)
        ione = np.ones(B, dtype=np.int64)
        seed = np.arange(B, dtype=np.uint64)
        hist = [np.array([1, 2, 3, 1, 2], dtype=np.int64)] * B
        breakers = np.array([7], dtype=np.int64)
        sample_canonical(x, 40 * ione, f(0.95) * one, f(0.05) * one, f(0.8) * one, ione,
                         True, seed, seed)
        sample_canonical(x, 40 * ione, f(0.95) * one, f(0.05) * one, f(0.8) * one, ione,
                         False, seed, seed)
        draw(x, seed, seed)
        invalid_rows(x)
        token_logprob(x, argmax(x))
        softmax(x, one)
        log_softmax(x)
        topk(x, 50)
        logit_bias(x, np.array([1], dtype=np.int64), np.array([-1.0]))
        penalties(x, hist, 1.1 * one, 0.1 * one, 0.1 * one, 64 * ione)
        dry(x, hist, 0.8 * one, 1.75 * one, 2 * ione, -1 * ione, breakers)
        no_repeat_ngram(x, hist, 2 * ione)
        top_n_sigma(x, one, ione)
        top_k(x, 40 * ione, ione)
        typical(x, 0.9 * one, ione)
        top_p(x, 0.9 * one, ione)
        min_p(x, 0.05 * one, ione)
        xtc(x, one, 0.1 * one, ione, seed, seed)
        epsilon(x, 1e-4 * one, ione)
        eta(x, 1e-4 * one, ione)
        top_a(x, 0.1 * one, ione)
        p_less(x, ione)
        tail_free(x, 0.9 * one, ione)
        temperature(x, 0.8 * one)
        dynamic_temperature(x, one, 0.5 * one, one)
        smoothing(x, 0.3 * one, one)
        greedy(x)
        mirostat(x, 10.0 * one, 100 * ione)
        mirostat_v2(x, 10.0 * one)
        adaptive_p(x, 0.5 * one, 5.0 * one, 10.0 * one)
    dry_penalty(np.array([1, 2, 1, 2], dtype=np.int64), 4096, 0.8, 1.75, 2, breakers, -1)
    return time.perf_counter() - start
