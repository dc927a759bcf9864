"""llama-cpp-python: fastsample chains as ``logits_processor`` callables.

llama-cpp-python calls each processor as ``processor(input_ids, scores)`` with the
sequence so far (``np.intc``, prompt included) and the next token's logits (float32
``(V,)``), and samples from what it returns. This module needs only numpy: it never
imports llama_cpp.

- ``LlamaCppLogitsProcessor`` returns ``SamplerChain.process`` of the scores;
  llama.cpp's own sampler chain then draws.
- ``LlamaCppDraw`` returns a mask that keeps only the token fastsample draws;
  with ``temperature=0`` (llama.cpp's greedy sampler) that token is picked, so the
  tokens are fastsample's (seeded, reproducible, Mirostat state kept).

Usage::

    from llama_cpp import Llama, LogitsProcessorList
    llm = Llama(model_path="model.gguf")
    draw = LlamaCppDraw([fs.Penalties(repeat=1.1), fs.TopK(40), fs.TopP(0.95),
                         fs.MinP(0.05), fs.Temperature(0.8)], seed=7)
    llm.create_completion("Once upon", max_tokens=32, temperature=0, repeat_penalty=1.0,
                          logits_processor=LogitsProcessorList([draw]))

The history of penalties, DRY and n-gram bans is ``input_ids``; the position is
``len(input_ids)``, the index of the token being generated.
"""

from __future__ import annotations

import numpy as np

from ._common import ChainCaller

__all__ = ["LlamaCppDraw", "LlamaCppLogitsProcessor"]


class _Processor(ChainCaller):
    def _args(self, input_ids):
        ids = np.asarray(input_ids)
        if ids.ndim != 1:
            raise ValueError(f"input_ids must be 1-D (the sequence so far); got ndim={ids.ndim}")
        return self._call_args(ids, 1, ids.shape[0])


class LlamaCppLogitsProcessor(_Processor):
    """A ``logits_processor`` applying a fastsample chain's stages.

    Parameters
    ----------
    sampler : SamplerChain, Stage or list of Stage
    seed, backend, on_invalid
        As for ``SamplerChain`` (used when ``sampler`` is not a chain already).

    Notes
    -----
    Returns new float32 ``(V,)`` logits, ``-inf`` where masked. A stateful terminal
    (Mirostat, AdaptiveP) is applied but not updated: use ``LlamaCppDraw``.
    """

    def __call__(self, input_ids, scores):
        return self.chain.process(scores, **self._args(input_ids))


class LlamaCppDraw(_Processor):
    """A ``logits_processor`` that makes fastsample's draw; use ``temperature=0``.

    Returns float32 ``(V,)`` scores, ``-inf`` except 0 at fastsample's token, so
    llama.cpp's greedy sampler picks it. Leave llama.cpp's penalties neutral
    (``repeat_penalty=1.0``) and put them in the chain; a grammar applied after this
    processor could mask the drawn token. State (Mirostat's mu) is reset when a new
    completion starts (``input_ids`` not one token longer than at the last call).
    """

    def __call__(self, input_ids, scores):
        token = self.chain.sample(scores, **self._args(input_ids))
        if token < 0:  # flagged invalid (on_invalid="flag"): leave the choice to llama.cpp
            return np.array(scores, dtype=np.float32)
        out = np.full(np.shape(scores), -np.inf, dtype=np.float32)
        out[token] = 0.0
        return out
