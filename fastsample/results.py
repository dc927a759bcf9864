"""``Sampled``: what ``fs.sample`` / ``SamplerChain.sample`` return with ``logprobs=N``
(docs/spec.md §9)."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Sampled"]


class Sampled(NamedTuple):
    """Tokens with their log-probabilities (spec §9).

    For 1-D logits the fields are scalars (``top_ids`` / ``top_logprobs`` 1-D).

    Attributes
    ----------
    tokens : int32 (B,)
        Exactly the tokens of the same call without ``logprobs``; -1 for a flagged row.
    logprob : float32 (B,)
        The sampled token's natural-log probability (NaN for a flagged row).
    rank : int32 (B,)
        1 + the number of tokens with a strictly greater logprob (-1 for a flagged row).
    top_ids : int32 (B, N)
        The N most likely tokens, descending, ties to the lower id; -1 past the row's
        finite tokens and on a flagged row.
    top_logprobs : float32 (B, N)
        Their logprobs; ``-inf`` past the finite tokens, NaN on a flagged row.
    """

    tokens: Any
    logprob: Any
    rank: Any
    top_ids: Any
    top_logprobs: Any
