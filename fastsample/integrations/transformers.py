"""Hugging Face transformers: fastsample as ``LogitsProcessor`` objects for ``generate()``.

- ``FastsampleLogitsProcessor`` applies a chain's stages to the scores (what
  ``SamplerChain.process`` returns); transformers then samples or takes the argmax.
- ``stage_processors`` gives one such processor per stage.
- ``FastsampleDraw`` lets fastsample make the draw: it returns a mask that keeps
  only fastsample's token, so greedy decoding (``do_sample=False``) picks it. The
  tokens are then those of ``SamplerChain.sample`` (same seed, same position, same
  token on every backend), and stateful samplers (Mirostat, AdaptiveP) work.

The history of penalties, DRY and n-gram bans is ``input_ids`` (prompt included, as
transformers' own repetition penalty does); the position of a row is
``input_ids.shape[1]``. Caveats are in ``docs/integrations/transformers.md``.

Needs ``transformers`` and ``torch`` (``pip install 'fastsample[hf]' torch``).
"""

from __future__ import annotations

try:
    import torch
    from transformers import LogitsProcessor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastsample.integrations.transformers needs transformers and torch "
        f"(pip install 'fastsample[hf]' torch): {exc}"
    ) from None

from ._common import ChainCaller

__all__ = ["FastsampleDraw", "FastsampleLogitsProcessor", "stage_processors"]


class _ChainProcessor(ChainCaller, LogitsProcessor):
    def _args(self, input_ids):
        return self._call_args(input_ids, *input_ids.shape)


class FastsampleLogitsProcessor(_ChainProcessor):
    """Apply a fastsample chain to the scores inside ``model.generate()``.

    Parameters
    ----------
    sampler : SamplerChain, Stage or list of Stage
        A stage or list of stages is made into a chain with ``seed``, ``backend``
        and ``on_invalid``.
    seed : int or array_like of int
        Used by XTC's roll (no draw happens here). Per-row seeds are per
        ``batch_size * num_return_sequences`` row.
    backend, on_invalid
        As for ``SamplerChain``.

    Notes
    -----
    Returns ``SamplerChain.process(scores, history=input_ids, position=L)`` in the
    dtype of ``scores``. A stateful terminal (Mirostat, AdaptiveP) is applied with
    its current state but never updated here: use ``FastsampleDraw`` for them.
    """

    def __call__(self, input_ids, scores):
        out = self.chain.process(scores, **self._args(input_ids))
        return out.to(scores.dtype)


class FastsampleDraw(_ChainProcessor):
    """Let fastsample draw the token; use with ``do_sample=False`` (greedy).

    Returns scores that are ``-inf`` everywhere except 0 at the token that
    ``SamplerChain.sample(scores, history=input_ids, position=L)`` draws, so the
    argmax is fastsample's token. Put it last: transformers' own processors (min
    length, bad words, ...) run before it and their masks are respected. Mirostat
    and AdaptiveP state is kept per row and reset when a new generation starts.
    Not for beam search: every beam gets a single candidate.

    Parameters are those of ``FastsampleLogitsProcessor``; ``seed`` is the
    draw's seed (``torch.manual_seed`` has no effect on it).
    """

    def __call__(self, input_ids, scores):
        tokens = self.chain.sample(scores, **self._args(input_ids))
        tokens = torch.as_tensor(tokens, device=scores.device)
        drawn = tokens >= 0  # -1: a row flagged invalid (on_invalid="flag") keeps its scores
        out = torch.where(drawn[:, None], torch.full_like(scores, float("-inf")), scores)
        rows = torch.nonzero(drawn).squeeze(1)
        out[rows, tokens[rows]] = 0.0
        return out


def stage_processors(stages, *, seed=0, backend="auto", on_invalid="raise"):
    """One ``FastsampleLogitsProcessor`` per stage, for a ``LogitsProcessorList``.

    Interleave them with transformers' own processors in any order; each one runs
    its stage alone (a terminal stage gives what its ``process`` gives).
    """
    return [FastsampleLogitsProcessor(s, seed=seed, backend=backend, on_invalid=on_invalid)
            for s in stages]
