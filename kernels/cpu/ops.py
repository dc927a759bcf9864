"""The numba CPU backend: one function per ``fastsample.reference`` function.

Same names, same signatures, same results (docs/internals.md); the registry loads
this module as ``backend="numba"``. Nothing compiles at import: each kernel compiles
(or loads from numba's cache) on its first call; ``warmup()`` does all of them.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

# Where each backend function lives. Submodules are imported on first use, so that
# fs.sample's first call loads only the fused kernel's module (start-up latency).
_HOME = {
    "sample_canonical": "canonical", "sample_row": "canonical",
    "truncate_canonical": "canonical", "truncate_row": "canonical",
    "draw": "draw", "argmax": "draw", "token_logprob": "draw",
    "softmax": "softmax", "log_softmax": "softmax", "softmax_checked": "softmax",
    "log_softmax_checked": "softmax",
    "topk": "topk", "topk_checked": "topk",
    "logprobs": "logprobs",
    "invalid_rows": "validity",
    **{name: "constraints" for name in (
        "apply_token_bitmask", "allowed_tokens", "bad_words", "min_tokens",
    )},
    "verify_rows": "verify",
    "chain_program": "chain_row", "chain_row": "chain_row", "chain_rows": "chain_row",
    "chain_row_logprobs": "chain_row",
    **{name: "stages" for name in (
        "logit_bias", "penalties", "dry", "dry_penalty", "no_repeat_ngram", "top_n_sigma",
        "top_k", "typical", "top_p", "min_p", "xtc", "epsilon", "eta", "top_a", "p_less",
        "tail_free", "temperature", "dynamic_temperature", "smoothing", "greedy",
        "mirostat", "mirostat_v2", "adaptive_p",
    )},
}

__all__ = sorted(_HOME) + ["warmup"]


def __getattr__(name):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"the numba backend has no {name!r}")
    fn = getattr(importlib.import_module(f".{home}", __package__), name)
    globals()[name] = fn
    return fn


def warmup():
    """Compile (or load from cache) every kernel, serial and parallel variants.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    op = __getattr__  # imports every kernel module
    f = np.float64
    for B in (1, 2):  # B == 1 and B > 1 may take different (serial/parallel) kernels
        x = np.linspace(-3.0, 3.0, 4096 * B, dtype=np.float32).reshape(B, 4096)
        one = np.ones(B)
        ione = np.ones(B, dtype=np.int64)
        seed = np.arange(B, dtype=np.uint64)
        hist = [np.array([1, 2, 3, 1, 2], dtype=np.int64)] * B
        breakers = np.array([7], dtype=np.int64)
        for temperature_last in (True, False):
            op("sample_canonical")(x, 40 * ione, f(0.95) * one, f(0.05) * one, f(0.8) * one,
                                   ione, temperature_last, seed, seed)
            op("sample_row")(x[0], 40, 0.95, 0.05, 0.8, 1, temperature_last, 0, 0)
        op("truncate_canonical")(x, 40 * ione, f(0.95) * one, f(0.05) * one, ione)
        op("truncate_row")(x[0], 40, 0.95, 0.05, 1)
        op("draw")(x, seed, seed)
        op("invalid_rows")(x)
        op("token_logprob")(x, op("argmax")(x))
        op("softmax")(x, one)
        op("log_softmax")(x)
        op("topk")(x, 50)
        op("logprobs")(x, op("argmax")(x), 20)
        op("logit_bias")(x, np.array([1], dtype=np.int64), np.array([-1.0]))
        op("penalties")(x, hist, 1.1 * one, 0.1 * one, 0.1 * one, 64 * ione)
        op("dry")(x, hist, 0.8 * one, 1.75 * one, 2 * ione, -1 * ione, breakers)
        op("no_repeat_ngram")(x, hist, 2 * ione)
        op("top_n_sigma")(x, one, ione)
        op("top_k")(x, 40 * ione, ione)
        op("typical")(x, 0.9 * one, ione)
        op("top_p")(x, 0.9 * one, ione)
        op("min_p")(x, 0.05 * one, ione)
        op("xtc")(x, one, 0.1 * one, ione, seed, seed)
        op("epsilon")(x, 1e-4 * one, ione)
        op("eta")(x, 1e-4 * one, ione)
        op("top_a")(x, 0.1 * one, ione)
        op("p_less")(x, ione)
        op("tail_free")(x, 0.9 * one, ione)
        op("temperature")(x, 0.8 * one)
        op("dynamic_temperature")(x, one, 0.5 * one, one)
        op("smoothing")(x, 0.3 * one, one)
        op("greedy")(x)
        op("mirostat")(x, 10.0 * one, 100 * ione)
        op("mirostat_v2")(x, 10.0 * one)
        op("adaptive_p")(x, 0.5 * one, 5.0 * one, 10.0 * one)
        # speculative verification: dense rows, q given and one-hot (B requests, K = 1)
        d = np.ones((B, 1), np.int32)
        q = np.full((B, 1, 4096), 1 / 4096, np.float32)
        for probs in (q, None):
            op("verify_rows")(np.vstack([x, x]), None, None, d, probs,
                              np.ones(B, np.int64), seed, seed)
        words = np.full((B, 128), 0x55555555, np.uint32)
        op("apply_token_bitmask")(x, words, np.arange(B, dtype=np.int64))
        op("allowed_tokens")(x, np.array([1, 5], dtype=np.int64))
        op("bad_words")(x, hist, np.array([2, 1, 3], np.int64), np.array([0, 2, 3], np.int64))
        op("min_tokens")(x, 3 * ione, np.array([0], np.int64), seed)
    op("dry_penalty")(np.array([1, 2, 1, 2], dtype=np.int64), 4096, 0.8, 1.75, 2, breakers, -1)
    return time.perf_counter() - start
