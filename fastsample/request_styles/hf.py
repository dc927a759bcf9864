"""transformers ``generation_config.json`` dicts (style ``"hf"``).

Defaults: ``GenerationConfig._get_default_generation_params`` (do_sample False,
temperature 1.0, top_k 50, top_p 1.0, ...). Order and the condition each processor
is added under: ``GenerationMixin._get_logits_processor``: repetition penalty,
no-repeat n-gram, bad words (a bad word equal to an EOS id is dropped), min new
tokens (EOS banned), suppress tokens, then, with ``do_sample`` only, temperature,
top-k, top-p, min-p, typical, epsilon, eta; the draw, or ``Greedy`` without
``do_sample``. A config has no seed: the ``seed`` argument, else a random one.
"""

from __future__ import annotations

import secrets

from .. import stages as _st
from ._common import eos_ids, stage_class


PASSTHROUGH = (
    "max_length", "max_new_tokens", "early_stopping", "max_time", "stop_strings",
    "use_cache", "cache_implementation", "cache_config", "return_legacy_cache",
    "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores",
    "output_logits", "return_dict_in_generate", "pad_token_id", "bos_token_id",
    "decoder_start_token_id", "transformers_version", "_from_model_config",
    "length_penalty", "renormalize_logits", "is_assistant", "num_assistant_tokens",
    "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind", "prompt_lookup_max_matching_ngram_size",
    "prompt_lookup_num_tokens", "max_matching_ngram_size", "assistant_early_exit",
    "compile_config", "disable_compile", "token_healing", "forced_decoder_ids",
)


def build(r, seed, token_texts, eos_token_id):
    """``(stages, Request fields)`` of a transformers request read through ``r``."""
    do_sample = r.flag("do_sample", False)
    num_beams = r.number("num_beams", 1, integer=True, lo=1)
    if num_beams > 1:
        r.unsupported.append(f"num_beams={num_beams} (beam search)")
    temp = r.number("temperature", 1.0)
    top_k = r.number("top_k", 50, integer=True, lo=0)
    top_p = r.number("top_p", 1.0, lo=0.0, hi=1.0)
    min_p = r.number("min_p", 0.0, lo=0.0, hi=1.0)
    typical_p = r.number("typical_p", 1.0, lo=0.0, hi=1.0, lo_open=True)
    epsilon = r.number("epsilon_cutoff", 0.0)
    eta = r.number("eta_cutoff", 0.0)
    repetition = r.number("repetition_penalty", 1.0, lo=0.0, lo_open=True)
    ngram = r.number("no_repeat_ngram_size", 0, integer=True)
    min_new = r.number("min_new_tokens", 0, integer=True, lo=0)
    eos = eos_ids(r, "eos_token_id", r.raw("eos_token_id"), eos_token_id)
    bad = r.raw("bad_words_ids")
    suppress = r.raw("suppress_tokens")
    if do_sample and temp <= 0:
        raise r.bad("temperature", temp, "must be > 0 with do_sample (transformers' "
                                          "TemperatureLogitsWarper); use do_sample=false "
                                          "for greedy")
    r.unsupported_if("min_length", lambda v: v > 0 and eos is not None,
                     "counts the prompt; fastsample's MinTokens counts generated tokens: "
                     "use min_new_tokens")
    for key, active, why in (
            ("num_beam_groups", lambda v: v > 1, "group beam search"),
            ("diversity_penalty", lambda v: v != 0, "group beam search"),
            ("penalty_alpha", lambda v: v > 0 and top_k > 1, "contrastive search"),
            ("guidance_scale", lambda v: v != 1, "classifier-free guidance"),
            ("sequence_bias", lambda v: len(v) > 0, "sequence bias"),
            ("encoder_repetition_penalty", lambda v: v != 1, "needs the encoder input"),
            ("encoder_no_repeat_ngram_size", lambda v: v > 0, "needs the encoder input"),
            ("forced_bos_token_id", lambda v: True, "forced tokens"),
            ("forced_eos_token_id", lambda v: True, "forced tokens"),
            ("exponential_decay_length_penalty", lambda v: True, "length penalty"),
            ("begin_suppress_tokens", lambda v: len(v) > 0, "needs the prompt length"),
            ("remove_invalid_values", lambda v: v is True, "replaces NaN/inf"),
            ("top_h", lambda v: True, "no TopH stage"),
            ("watermarking_config", lambda v: True, "watermarking"),
            ("dola_layers", lambda v: True, "DoLa decoding"),
            ("constraints", lambda v: len(v) > 0, "constrained beam search"),
            ("force_words_ids", lambda v: len(v) > 0, "constrained beam search"),
            ("low_memory", lambda v: v is True, "beam search")):
        r.unsupported_if(key, active, why)
    r.keep(*PASSTHROUGH)

    out = []
    if repetition != 1.0:
        out.append(_st.Penalties(repetition, 0.0, 0.0, -1))
    if ngram > 0:
        out.append(_st.NoRepeatNGram(ngram))
    if bad is not None:
        if not isinstance(bad, (list, tuple)) or not bad:
            raise r.bad("bad_words_ids", bad, "must be a non-empty list of token-id lists")
        seqs = [r.token_ids("bad_words_ids", s) for s in bad]
        if any(not s for s in seqs):
            raise r.bad("bad_words_ids", bad, "holds an empty sequence")
        # transformers drops a bad word that is exactly an end-of-sequence token
        seqs = [s for s in seqs if not (eos and len(s) == 1 and s[0] in eos)]
        cls = stage_class("BadWords", r, "bad_words_ids")
        if cls is not None and seqs:
            out.append(cls(seqs))
    if min_new > 0 and eos:
        cls = stage_class("MinTokens", r, "min_new_tokens")
        if cls is not None:
            out.append(cls(min_new, eos))
    if suppress is not None:
        ids = r.token_ids("suppress_tokens", suppress)
        cls = stage_class("BadWords", r, "suppress_tokens") if ids else None
        if cls is not None:
            out.append(cls([[t] for t in ids]))
    if do_sample:
        if temp != 1.0:
            out.append(_st.Temperature(temp))
        if top_k != 0:
            out.append(_st.TopK(top_k))
        if top_p < 1.0:
            out.append(_st.TopP(top_p))
        if min_p > 0:
            out.append(_st.MinP(min_p))
        if typical_p < 1.0:
            out.append(_st.Typical(typical_p))
        if 0.0 < epsilon < 1.0:
            out.append(_st.Epsilon(epsilon))
        if 0.0 < eta < 1.0:
            out.append(_st.Eta(eta))
    out.append(_st.Dist() if do_sample else _st.Greedy())
    seed_value, source = (seed, "argument") if seed is not None else \
        (secrets.randbits(64), "random")
    mt = r.params.get("max_new_tokens")
    n = r.params.get("num_return_sequences")
    request = dict(seed=seed_value, seed_source=source,
                   max_tokens=mt if isinstance(mt, int) and not isinstance(mt, bool) else None,
                   n=n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1)
    return out, request
