"""vLLM ``SamplingParams`` fields (style ``"vllm"``).

Defaults and ranges: vllm/sampling_params.py (temperatures in (0, 0.01) are raised
to 0.01; 0 is greedy; top_k -1 or 0 is off; seed -1 or None is random). Order: vLLM
v1's ``Sampler``: allowed token ids, bad words, min tokens, logit bias, penalties
(repetition, frequency, presence), then greedy when temperature is 0, else
temperature, min-p, top-k, top-p, draw. vLLM counts the prompt in the repetition
penalty but not in the frequency and presence penalties; fastsample's one history
serves both. ``bad_words`` are token-id sequences here (strings need the tokenizer).
"""

from __future__ import annotations

import math

from .. import stages as _st
from ._common import eos_ids, mapping_logit_bias, seed_of, stage_class


def build(r, seed, token_texts, eos_token_id):
    """``(stages, Request fields)`` of a vLLM request read through ``r``."""
    n = r.number("n", 1, integer=True, lo=1)
    presence = r.number("presence_penalty", 0.0, lo=-2.0, hi=2.0)
    freq = r.number("frequency_penalty", 0.0, lo=-2.0, hi=2.0)
    repetition = r.number("repetition_penalty", 1.0, lo=0.0, hi=2.0, lo_open=True)
    temp = r.number("temperature", 1.0, lo=0.0)
    if 0 < temp < 0.01:   # SamplingParams.__post_init__ raises tiny temperatures to 0.01
        temp = 0.01
    top_p = r.number("top_p", 1.0, lo=0.0, hi=1.0, lo_open=True)
    top_k = r.number("top_k", 0, integer=True, lo=-1)
    min_p = r.number("min_p", 0.0, lo=0.0, hi=1.0)
    seed_value, source = seed_of(r, "seed", seed, (-1,))
    ignore_eos = r.flag("ignore_eos", False)
    stop_ids = r.token_ids("stop_token_ids", r.raw("stop_token_ids", []))
    # max_tokens: 16 unless given; null is no limit
    max_tokens = None if "max_tokens" in r.params and not r.given("max_tokens") else \
        r.number("max_tokens", 16, integer=True, lo=1)
    r.read.add("max_tokens")
    min_tokens = r.number("min_tokens", 0, integer=True, lo=0)
    if max_tokens is not None and min_tokens > max_tokens:
        raise r.bad("min_tokens", min_tokens, f"is above max_tokens={max_tokens}")
    logprobs = r.raw("logprobs")
    if logprobs is True:
        logprobs = 1
    elif logprobs is not None:
        logprobs = r.number("logprobs", 0, integer=True, lo=0)
    r.unsupported_if("logits_processors", lambda v: len(v) > 0, "Python callables")
    for key in ("guided_decoding", "structured_outputs"):
        r.unsupported_if(key, lambda v: True,
                         "structured output: use a bitmask (spec §10 in docs/spec.md)")
    r.unsupported_if("use_beam_search", lambda v: v is True, "beam search")
    r.keep("best_of", "stop", "include_stop_str_in_output", "prompt_logprobs",
           "detokenize", "skip_special_tokens", "spaces_between_special_tokens",
           "truncate_prompt_tokens", "output_kind", "extra_args", "flat_logprobs",
           "logprobs_mode", "skip_reading_prefix_cache")

    out = []
    allowed = r.raw("allowed_token_ids")
    if allowed is not None:
        ids = r.token_ids("allowed_token_ids", allowed)
        if not ids:
            raise r.bad("allowed_token_ids", allowed, "is empty")
        cls = stage_class("AllowedTokens", r, "allowed_token_ids")
        if cls is not None:
            out.append(cls(ids))
    bad = r.raw("bad_words")
    if bad is not None and len(bad) > 0:
        if not isinstance(bad, (list, tuple)) or any(isinstance(s, (str, int)) for s in bad):
            raise r.bad("bad_words", bad, "must be token-id sequences (a list of lists "
                                           "of ints): words as strings need the tokenizer")
        seqs = [r.token_ids("bad_words", s) for s in bad]
        if any(not s for s in seqs):
            raise r.bad("bad_words", bad, "holds an empty sequence")
        cls = stage_class("BadWords", r, "bad_words")
        if cls is not None:
            out.append(cls(seqs))
    if min_tokens > 0:
        ids = list(stop_ids)
        if not ignore_eos and eos_token_id is not None:
            ids += eos_ids(r, "eos_token_id", eos_token_id, None)
        if not ids:
            r.unsupported.append(f"min_tokens={min_tokens} (no stop ids to ban: give "
                                 f"stop_token_ids, or eos_token_id= to from_request)")
        else:
            cls = stage_class("MinTokens", r, "min_tokens")
            if cls is not None:
                out.append(cls(min_tokens, sorted(set(ids))))
    bias = mapping_logit_bias(r, lo=-math.inf, hi=math.inf)
    if bias is not None:
        out.append(_st.LogitBias(bias))
    if (repetition, freq, presence) != (1.0, 0.0, 0.0):
        out.append(_st.Penalties(repetition, freq, presence, -1))
    if temp == 0:
        out.append(_st.Greedy())
    else:
        if temp != 1.0:
            out.append(_st.Temperature(temp))
        if min_p > 0:
            out.append(_st.MinP(min_p))
        if top_k > 0:
            out.append(_st.TopK(top_k))
        if top_p < 1.0:
            out.append(_st.TopP(top_p))
    request = dict(seed=seed_value, seed_source=source, logprobs=logprobs,
                   max_tokens=max_tokens, n=n)
    return out, request
