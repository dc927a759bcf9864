"""The C backend: one function per ``fastsample.reference`` function, in C.

The kernels live in ``csrc/`` and are compiled at install time by cffi into the
extension ``fastsample._ckernels``; this package is the thin Python layer the
registry loads as ``backend="c"``. Importing it fails with ``ImportError`` when the
extension was not built (the registry then reports the C backend as unavailable).
Functions are looked up lazily by name, like ``kernels/cpu/ops.py``: ``core`` holds
the fused chain, the draw and the array operations; ``stages`` the stage kernels.
"""

from __future__ import annotations

import importlib

from . import _util  # noqa: F401  (imports fastsample._ckernels: ImportError if not built)

_HOME = {
    **{name: "core" for name in (
        "sample_canonical", "sample_row", "draw", "argmax", "greedy", "token_logprob", "invalid_rows",
        "softmax", "log_softmax", "topk", "topk_checked", "truncate_canonical", "truncate_row",
        "warmup", "softmax_checked", "log_softmax_checked",
    )},
    "logprobs": "logprobs",
    **{name: "stages" for name in (
        "logit_bias", "penalties", "dry", "dry_penalty", "top_n_sigma", "typical", "xtc",
        "top_k", "top_p", "min_p", "temperature",
    )},
    "verify_rows": "verify",
    "chain_program": "chain_row", "chain_row": "chain_row", "chain_rows": "chain_row",
    "chain_row_logprobs": "chain_row",
    **{name: "constraints" for name in (
        "apply_token_bitmask", "allowed_tokens", "bad_words", "min_tokens",
    )},
    **{name: "stages_extra" for name in (
        "epsilon", "eta", "top_a", "p_less", "tail_free", "dynamic_temperature", "smoothing",
        "mirostat", "mirostat_v2", "adaptive_p", "no_repeat_ngram",
    )},
}

__all__ = [  # noqa: RUF022 - grouped like _HOME
    "sample_canonical", "sample_row", "draw", "argmax", "greedy", "token_logprob", "invalid_rows", "softmax",
    "log_softmax", "topk", "topk_checked", "truncate_canonical", "truncate_row", "warmup",
    "logprobs", "softmax_checked", "log_softmax_checked",
    "logit_bias", "penalties", "dry", "dry_penalty", "top_n_sigma", "typical", "xtc", "top_k", "top_p", "min_p", "temperature",
    "epsilon", "eta", "top_a", "p_less", "tail_free", "dynamic_temperature", "smoothing",
    "mirostat", "mirostat_v2", "adaptive_p", "no_repeat_ngram", "verify_rows",
    "chain_program", "chain_row", "chain_rows", "chain_row_logprobs",
    "apply_token_bitmask", "allowed_tokens", "bad_words", "min_tokens",
]


def __getattr__(name):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"the C backend has no {name!r}")
    try:
        module = importlib.import_module(f".{home}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{home}":
            raise
        # not written yet: the stage is missing from C (auto falls back to numba)
        raise AttributeError(f"the C backend has no {name!r}") from None
    # Every name of that module at once: importing a submodule binds its own name here
    # (chain_row the module would shadow chain_row the function).
    for other, other_home in _HOME.items():
        if other_home == home and hasattr(module, other):
            globals()[other] = getattr(module, other)
    return globals()[name]
