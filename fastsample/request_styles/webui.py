"""text-generation-webui presets and requests (style ``"webui"``).

Names and defaults: modules/presets.py ``default_preset``. Which sampler runs under
which condition, and the order: modules/sampler_hijack.py builds transformers'
processors plus its own, then sorts them by ``sampler_priority`` (stable; a sampler
the list does not name sorts first); ``temperature_last`` moves temperature,
dynamic_temperature and quadratic_sampling to the end. Repetition, presence and
frequency penalties are separate processors over the last
``repetition_penalty_range`` tokens (0: all). webui's XTC also leaves rows alone
where a newline or EOS token is among the top choices; fastsample's XTC does not.
"""

from __future__ import annotations

import json

from .. import stages as _st
from ._common import dry_breaker_ids, seed_of, stage_class


#: modules/presets.py default_preset()['sampler_priority'].
DEFAULT_PRIORITY = (
    "repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma",
    "temperature", "dynamic_temperature", "quadratic_sampling", "top_k", "top_p",
    "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "mirostat",
    "xtc", "encoder_repetition_penalty", "no_repeat_ngram",
)
DEFAULT_BREAKERS = '"\\n", ":", "\\"", "*"'


def _priority(r):
    value = r.raw("sampler_priority")
    if value is None:
        return list(DEFAULT_PRIORITY)
    if isinstance(value, str):
        value = [x.strip() for x in value.replace("\n", ",").split(",") if x.strip()]
    elif not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise r.bad("sampler_priority", value, "must be a list of names or a "
                                                "newline-separated string")
    for name in value:
        if name not in DEFAULT_PRIORITY:
            r.unknown.append(f"sampler_priority entry {name!r}")
    return list(value)


def _webuidry_breaker_ids(r):
    value = r.raw("dry_sequence_breakers", DEFAULT_BREAKERS)
    if isinstance(value, str):  # JSON array, or its items without the brackets
        try:
            value = json.loads(value if value.strip().startswith("[") else f"[{value}]")
        except json.JSONDecodeError:
            raise r.bad("dry_sequence_breakers", value, "is not a JSON list of strings") \
                from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise r.bad("dry_sequence_breakers", value, "must be a list of strings")
    return value


def build(r, seed, token_texts, eos_token_id):
    """``(stages, Request fields)`` of a webui request read through ``r``."""
    do_sample = r.flag("do_sample", True)
    temp = r.number("temperature", 1.0)
    dynamic = r.flag("dynamic_temperature", False)
    dyn_low = r.number("dynatemp_low", 1.0)
    dyn_high = r.number("dynatemp_high", 1.0)
    dyn_exp = r.number("dynatemp_exponent", 1.0)
    smoothing = r.number("smoothing_factor", 0.0)
    curve = r.number("smoothing_curve", 1.0)
    min_p = r.number("min_p", 0.0, lo=0.0, hi=1.0)
    top_p = r.number("top_p", 1.0, lo=0.0, hi=1.0)
    top_k = r.number("top_k", 0, integer=True, lo=0)
    typical_p = r.number("typical_p", 1.0, lo=0.0, hi=1.0, lo_open=True)
    xtc_t = r.number("xtc_threshold", 0.1)
    xtc_p = r.number("xtc_probability", 0.0)
    epsilon = r.number("epsilon_cutoff", 0.0)
    eta = r.number("eta_cutoff", 0.0)
    tfs = r.number("tfs", 1.0)
    top_a = r.number("top_a", 0.0)
    top_n_sigma = r.number("top_n_sigma", 0.0)
    dry_mult = r.number("dry_multiplier", 0.0)
    dry_allowed = r.number("dry_allowed_length", 2, integer=True, lo=0)
    dry_base = r.number("dry_base", 1.75)
    repetition = r.number("repetition_penalty", 1.0, lo=0.0, lo_open=True)
    freq = r.number("frequency_penalty", 0.0)
    presence = r.number("presence_penalty", 0.0)
    ngram = r.number("no_repeat_ngram_size", 0, integer=True)
    rng = r.number("repetition_penalty_range", 1024, integer=True, lo=0)
    mirostat = r.number("mirostat_mode", 0, integer=True, lo=0, hi=2)
    tau = r.number("mirostat_tau", 5.0)
    eta_m = r.number("mirostat_eta", 0.1)
    temperature_last = r.flag("temperature_last", False)
    priority = _priority(r)
    strings = _webuidry_breaker_ids(r)
    seed_value, source = seed_of(r, "seed", seed, (-1,))
    bans = r.raw("custom_token_bans")
    if do_sample and temp <= 0:
        raise r.bad("temperature", temp, "must be > 0 with do_sample; use "
                                          "do_sample=false for greedy")
    if mirostat == 1:
        r.unsupported.append("mirostat_mode=1 (webui's transformers path runs mode 2 only)")
    for key, active, why in (
            ("encoder_repetition_penalty", lambda v: v != 1, "needs the encoder input"),
            ("penalty_alpha", lambda v: v > 0, "contrastive search"),
            ("guidance_scale", lambda v: v != 1, "classifier-free guidance"),
            ("num_beams", lambda v: v > 1, "beam search"),
            ("min_length", lambda v: v > 0, "counts the prompt"),
            ("ban_eos_token", lambda v: v is True, "needs the end-of-sequence id"),
            ("grammar_string", lambda v: v != "", "constrained decoding: use a bitmask"),
            ("preset", lambda v: v not in ("", "None"), "a preset file: send its fields")):
        r.unsupported_if(key, active, why)
    r.keep("prompt", "messages", "model", "stream", "stop", "stopping_strings",
           "max_new_tokens", "max_tokens", "auto_max_new_tokens", "truncation_length",
           "add_bos_token", "skip_special_tokens", "static_cache", "negative_prompt",
           "length_penalty", "early_stopping", "max_tokens_second", "prompt_lookup_num_tokens",
           "mode", "character", "instruction_template")
    last_n = rng if rng > 0 else -1   # webui's input_ids[:, -0:] is the whole history

    # The processors in webui's construction order (the sort is stable; a sampler
    # missing from the priority list sorts first, key -1).
    built = []
    if ngram > 0:
        built.append(("no_repeat_ngram", _st.NoRepeatNGram(ngram)))
    if bans is not None and bans != "":   # transformers' SuppressTokens processor
        if isinstance(bans, str):
            try:
                bans = [int(x) for x in bans.split(",") if x.strip()]
            except ValueError:
                raise r.bad("custom_token_bans", bans, "must be comma-separated token ids") \
                    from None
        ids = r.token_ids("custom_token_bans", bans)
        cls = stage_class("BadWords", r, "custom_token_bans") if ids else None
        if cls is not None:
            built.append((None, cls([[t] for t in ids])))
    if do_sample:  # transformers' warpers
        if temp != 1.0:
            built.append(("temperature", _st.Temperature(temp)))
        if top_k != 0:
            built.append(("top_k", _st.TopK(top_k)))
        if top_p < 1.0:
            built.append(("top_p", _st.TopP(top_p)))
        if min_p > 0:
            built.append(("min_p", _st.MinP(min_p)))
        if typical_p < 1.0:
            built.append(("typical_p", _st.Typical(typical_p)))
        if 0.0 < epsilon < 1.0:
            built.append(("epsilon_cutoff", _st.Epsilon(epsilon)))
        if 0.0 < eta < 1.0:
            built.append(("eta_cutoff", _st.Eta(eta)))
    if dry_mult > 0:
        breakers = dry_breaker_ids(r, "dry_sequence_breakers", strings, token_texts, True)
        built.append(("dry", _st.DRY(dry_mult, dry_base, dry_allowed, last_n,
                                     breakers=breakers)))
    if repetition != 1.0:
        built.append(("repetition_penalty", _st.Penalties(repetition, 0.0, 0.0, last_n)))
    if presence != 0.0:
        built.append(("presence_penalty", _st.Penalties(1.0, 0.0, presence, last_n)))
    if freq != 0.0:
        built.append(("frequency_penalty", _st.Penalties(1.0, freq, 0.0, last_n)))
    if top_n_sigma > 0:
        built.append(("top_n_sigma", _st.TopNSigma(top_n_sigma)))
    if 0.0 <= tfs < 1.0:
        built.append(("tfs", _st.TailFree(tfs)))
    if 0.0 < top_a <= 1.0:
        built.append(("top_a", _st.TopA(top_a)))
    if xtc_p > 0:
        built.append(("xtc", _st.XTC(xtc_p, xtc_t)))
    if dynamic:
        built.append(("dynamic_temperature", _st.DynamicTemperature(
            (dyn_low + dyn_high) / 2, (dyn_high - dyn_low) / 2, dyn_exp)))
    if smoothing > 0:
        built.append(("quadratic_sampling", _st.Smoothing(smoothing, curve)))
    if mirostat == 2:
        built.append(("mirostat", _st.MirostatV2(tau, eta_m)))

    if temperature_last:
        for name in ("temperature", "dynamic_temperature", "quadratic_sampling"):
            if name in priority:
                priority.remove(name)
            priority.append(name)
    rank = {name: i for i, name in enumerate(priority)}
    built.sort(key=lambda item: rank.get(item[0], -1))
    out = []
    for name, stage in built:
        out.append(stage)
        if name == "mirostat":   # it leaves one token: what follows has nothing to do
            break
    if not out or not out[-1].terminal:
        out.append(_st.Dist() if do_sample else _st.Greedy())
    mt = r.params.get("max_new_tokens", r.params.get("max_tokens"))
    request = dict(seed=seed_value, seed_source=source,
                   max_tokens=mt if isinstance(mt, int) and not isinstance(mt, bool) else None)
    return out, request
