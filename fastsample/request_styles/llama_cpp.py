"""llama.cpp server ``/completion`` requests (style ``"llama.cpp"``).

The defaults are ``common_params_sampling``'s (common/common.h); the chain is
``common_sampler_init``'s (common/sampling.cpp): logit bias, then ``samplers`` in
order (names, or a string of letters), then dist, or adaptive-p when ``samplers``
names it; ``mirostat`` 1 or 2 replaces the list with temperature and Mirostat (m =
100) or MirostatV2. The server's parsing (tools/server/server-task.cpp): ``logprobs``
is the alias of ``n_probs``, ``dry_base`` below 1 becomes the default, the windows
are >= -1 (-1: the context, here the whole history). ``min_keep`` (0 -> 1) reaches
typ_p, top_p, min_p and xtc, not top_k or top_n_sigma.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .. import stages as _st
from ._common import dry_breaker_ids, first_given, no_limit_as_none, seed_of


#: llama.cpp's sampler names (common_sampler_type_to_str) and letters
#: (common_sampler_type_to_chr).
NAMES = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc",
         "temperature", "adaptive_p", "infill")
LETTERS = dict(zip("edskypmxtai", NAMES))
DEFAULT_ORDER = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                 "xtc", "temperature")
DEFAULT_BREAKERS = ("\n", ":", "\"", "*")
RANDOM_SEEDS = (-1, 0xFFFFFFFF)   # LLAMA_DEFAULT_SEED: a random seed


def _logit_bias(r):
    """``logit_bias``: ``[[id, bias or false], ...]`` or ``{"id": bias}``."""
    value = r.raw("logit_bias")
    if value is None:
        return None
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, (list, tuple)):
        pairs = []
        for el in value:
            if not isinstance(el, (list, tuple)) or len(el) != 2:
                raise r.bad("logit_bias", el, "entries must be [token id, bias] pairs")
            pairs.append(tuple(el))
    else:
        raise r.bad("logit_bias", value, "must be a list of [id, bias] pairs or an object")
    ids, biases, strings = [], [], []
    for tok, bias in pairs:
        if isinstance(tok, str):
            if not tok.lstrip("-").isdigit():
                strings.append(tok)
                continue
            tok = int(tok)
        if isinstance(tok, bool) or not isinstance(tok, int):
            raise r.bad("logit_bias", tok, "token must be an integer id")
        if bias is False:
            bias = -math.inf          # llama.cpp: false bans the token
        elif bias is True:
            continue                  # llama.cpp skips it
        elif not isinstance(bias, (int, float)):
            raise r.bad("logit_bias", bias, "bias must be a number or false")
        ids.append(tok)
        biases.append(float(bias))
    if strings:
        r.unsupported.append(f"logit_bias strings {strings!r} (need the tokenizer)")
    return (ids, biases) if ids else None


def _samplers(r):
    value = r.raw("samplers")
    if value is None:
        return DEFAULT_ORDER
    if isinstance(value, str):
        names = []
        for c in value:
            if c in LETTERS:
                names.append(LETTERS[c])
            else:
                r.unknown.append(f"samplers letter {c!r}")
        return tuple(names)
    if not isinstance(value, (list, tuple)):
        raise r.bad("samplers", value, "must be a list of names or a string of letters")
    names = []
    for name in value:
        if name in NAMES:
            names.append(name)
        else:
            r.unknown.append(f"samplers entry {name!r}")
    return tuple(names)


def build(r, seed, token_texts, eos_token_id):
    """``(stages, Request fields)`` of a llama.cpp request read through ``r``."""
    temp = r.number("temperature", 0.8)
    dyn_range = r.number("dynatemp_range", 0.0)
    dyn_exp = r.number("dynatemp_exponent", 1.0)
    top_k = r.number("top_k", 40, integer=True)
    top_p = r.number("top_p", 0.95)
    min_p = r.number("min_p", 0.05)
    top_n_sigma = r.number("top_n_sigma", -1.0)
    xtc_p = r.number("xtc_probability", 0.0)
    xtc_t = r.number("xtc_threshold", 0.1)
    typ_p = r.number("typical_p", 1.0)
    last_n = r.number("repeat_last_n", 64, integer=True, lo=-1)
    repeat = r.number("repeat_penalty", 1.0)
    freq = r.number("frequency_penalty", 0.0)
    presence = r.number("presence_penalty", 0.0)
    dry_mult = r.number("dry_multiplier", 0.0)
    dry_base = r.number("dry_base", 1.75)
    if dry_base < 1.0:          # the server replaces it with the default
        dry_base = 1.75
    dry_allowed = r.number("dry_allowed_length", 2, integer=True, lo=0)
    dry_last_n = r.number("dry_penalty_last_n", 64, integer=True, lo=-1)
    strings = r.raw("dry_sequence_breakers", DEFAULT_BREAKERS)
    if isinstance(strings, str) or not isinstance(strings, (list, tuple)) or not strings \
            or not all(isinstance(s, str) for s in strings):
        raise r.bad("dry_sequence_breakers", strings, "must be a non-empty list of strings")
    mirostat = r.number("mirostat", 0, integer=True, lo=0, hi=2)
    tau = r.number("mirostat_tau", 5.0)
    eta = r.number("mirostat_eta", 0.1)
    adaptive_target = r.number("adaptive_target", -1.0, hi=1.0)
    adaptive_decay = r.number("adaptive_decay", 0.9, lo=0.0, hi=0.99)
    min_keep = max(r.number("min_keep", 0, integer=True, lo=0), 1)
    # "logprobs" is read when "n_probs" is not given (the server's alias)
    n_probs = r.number(first_given(r, "n_probs", "logprobs"), 0, integer=True, lo=0)
    post = r.flag("post_sampling_probs", False)
    seed_value, source = seed_of(r, "seed", seed, RANDOM_SEEDS)
    max_tokens = r.number(first_given(r, "n_predict", "max_tokens", "max_completion_tokens"),
                          -1, integer=True, lo=-1)
    n = r.number(first_given(r, "n_cmpl", "n"), 1, integer=True, lo=1)
    r.unsupported_if("ignore_eos", bool, "bans the end-of-generation tokens, which "
                                         "need the vocabulary")
    for key in ("grammar", "json_schema"):
        r.unsupported_if(key, lambda v: v not in ("", {}),
                         "constrained decoding: use a bitmask (spec §10 in docs/spec.md)")
    r.keep("prompt", "stream", "stream_options", "stop", "cache_prompt", "return_tokens",
           "return_progress", "n_indent", "n_keep", "n_discard", "n_cache_reuse",
           "t_max_predict_ms", "id_slot", "response_fields", "timings_per_token",
           "verbose", "lora", "backend_sampling", "grammar_lazy", "grammar_triggers",
           "preserved_tokens", "model", "multimodal_data", "image_data", "chat_format",
           "reasoning_format", "thinking_forced_open", "parse_tool_calls",
           "thinking_budget_tokens", "speculative.n_max", "speculative.n_min",
           "speculative.p_min")

    out = []
    bias = _logit_bias(r)
    if bias is not None:
        out.append(_st.LogitBias(bias))
    order = _samplers(r)
    dry_active = dry_mult != 0 and dry_last_n != 0
    if mirostat == 0:
        adaptive = False
        for name in order:
            if name == "penalties":
                if last_n != 0 and (repeat, freq, presence) != (1.0, 0.0, 0.0):
                    out.append(_st.Penalties(repeat, freq, presence, last_n))
            elif name == "dry":
                breakers = dry_breaker_ids(r, "dry_sequence_breakers", strings, token_texts,
                                     dry_active)
                if dry_active:
                    out.append(_st.DRY(dry_mult, dry_base, dry_allowed, dry_last_n,
                                       breakers=breakers))
            elif name == "top_n_sigma" and top_n_sigma > 0:
                out.append(_st.TopNSigma(top_n_sigma))
            elif name == "top_k" and top_k > 0:
                out.append(_st.TopK(top_k))
            elif name == "typ_p" and typ_p < 1:
                out.append(_st.Typical(typ_p, min_keep))
            elif name == "top_p" and top_p < 1:
                out.append(_st.TopP(top_p, min_keep))
            elif name == "min_p" and min_p > 0:
                out.append(_st.MinP(min_p, min_keep))
            elif name == "xtc" and xtc_p > 0 and xtc_t <= 0.5:
                out.append(_st.XTC(xtc_p, xtc_t, min_keep))
            elif name == "temperature":
                if dyn_range > 0:
                    out.append(_st.DynamicTemperature(temp, dyn_range, dyn_exp))
                elif temp != 1:
                    out.append(_st.Temperature(temp))
            elif name == "adaptive_p":
                adaptive = True
            elif name == "infill":
                r.unsupported.append("samplers 'infill' (needs the vocabulary)")
        if adaptive and adaptive_target >= 0:
            out.append(_st.AdaptiveP(adaptive_target, adaptive_decay))
    else:  # mirostat replaces the sampler list: temperature, then mirostat
        if temp != 1:
            out.append(_st.Temperature(temp))
        out.append(_st.Mirostat(tau, eta, 100) if mirostat == 1 else _st.MirostatV2(tau, eta))
    request = dict(seed=seed_value, seed_source=source,
                   logprobs=n_probs if n_probs > 0 else None,
                   logprobs_mode="processed" if post else "raw",
                   max_tokens=no_limit_as_none(max_tokens), n=n)
    return out, request
