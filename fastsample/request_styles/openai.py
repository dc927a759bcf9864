"""OpenAI chat/completions (and legacy completions) requests (style ``"openai"``).

OpenAI publishes the fields and their ranges but no order; this is the order vLLM's
OpenAI server runs: logit bias, penalties (OpenAI's formula over the whole history:
``l -= c * frequency + (c > 0) * presence``), temperature, top-p, draw. ``logprobs``
is a flag with ``top_logprobs`` (chat) or an int 0..5 (legacy completions).
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import stages as _st
from ._common import first_given, mapping_logit_bias, seed_of


def build(r, seed, token_texts, eos_token_id):
    """``(stages, Request fields)`` of a OpenAI request read through ``r``."""
    temp = r.number("temperature", 1.0, lo=0.0, hi=2.0)
    top_p = r.number("top_p", 1.0, lo=0.0, hi=1.0)
    freq = r.number("frequency_penalty", 0.0, lo=-2.0, hi=2.0)
    presence = r.number("presence_penalty", 0.0, lo=-2.0, hi=2.0)
    seed_value, source = seed_of(r, "seed", seed)
    logprobs = r.raw("logprobs")
    top = r.number("top_logprobs", 0, integer=True, lo=0, hi=20) \
        if r.given("top_logprobs") else None
    if isinstance(logprobs, bool):      # chat: a flag, with top_logprobs
        if top is not None and not logprobs:
            raise r.bad("top_logprobs", top, "needs logprobs=true")
        n_logprobs = (top or 0) if logprobs else None
    elif logprobs is None:
        if top is not None:
            raise r.bad("top_logprobs", top, "needs logprobs=true")
        n_logprobs = None
    else:                               # legacy completions: an int, 0..5
        n_logprobs = r.number("logprobs", 0, integer=True, lo=0, hi=5)
    key = first_given(r, "max_completion_tokens", "max_tokens")
    max_tokens = r.number(key, 0, integer=True, lo=1) if r.given(key) else None
    n = r.number("n", 1, integer=True, lo=1)
    r.unsupported_if("response_format", lambda v: not (isinstance(v, Mapping)
                                                       and v.get("type") == "text"),
                     "structured output: use a bitmask (spec §10 in docs/spec.md)")
    r.keep("model", "messages", "prompt", "stream", "stream_options", "stop", "user",
           "store", "metadata", "service_tier", "modalities", "audio", "prediction",
           "reasoning_effort", "tools", "tool_choice", "parallel_tool_calls",
           "functions", "function_call", "echo", "suffix", "best_of",
           "web_search_options", "verbosity", "safety_identifier", "prompt_cache_key")

    out = []
    bias = mapping_logit_bias(r)
    if bias is not None:
        out.append(_st.LogitBias(bias))
    if (freq, presence) != (0.0, 0.0):
        out.append(_st.Penalties(1.0, freq, presence, -1))
    if temp != 1:
        out.append(_st.Temperature(temp))
    if top_p < 1:
        out.append(_st.TopP(top_p))
    request = dict(seed=seed_value, seed_source=source, logprobs=n_logprobs,
                   max_tokens=max_tokens, n=n)
    return out, request
