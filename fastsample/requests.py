"""Requests in other formats: the chain a peer would run for its sampling parameters.

An engine receives sampling parameters in the formats its clients already speak.
:func:`from_request` (and ``SamplerChain.from_request``) reads one of them and builds
the chain that peer runs: the same stages, in the same order, with the same defaults
and the same rules for when a stage is off. A stage the peer would run as a no-op is
left out, so a default llama.cpp request is ``TopK(40) -> TopP(0.95) -> MinP(0.05) ->
Temperature(0.8) -> Dist`` and runs as ``fs.sample``'s fused kernel.

Styles (the sources each was read from are named in ``tests/test_requests.py``):

``"llama.cpp"``
    llama.cpp server ``/completion`` fields: defaults of ``common_params_sampling``
    (common/common.h), the chain of ``common_sampler_init`` (common/sampling.cpp):
    logit bias, then ``samplers`` in order (a list of names or a string of letters;
    default penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc,
    temperature), then dist, or adaptive-p when ``samplers`` names it; ``mirostat``
    1 or 2 replaces the list with temperature -> Mirostat (m = 100) / MirostatV2.
``"openai"``
    chat/completions (and legacy completions) fields. OpenAI does not publish an
    order; this is the one vLLM's OpenAI server runs: logit bias, penalties (over
    the whole history, OpenAI's formula), temperature, top-p, draw.
``"hf"``
    a ``generation_config.json`` dict, with transformers' defaults
    (``GenerationConfig._get_default_generation_params``) and the processor order
    of ``GenerationMixin._get_logits_processor``: repetition penalty, no-repeat
    n-gram, bad words, min new tokens, suppress tokens, then (``do_sample`` only)
    temperature, top-k, top-p, min-p, typical, epsilon, eta; ``do_sample`` false
    (the default) ends in ``Greedy``.
``"webui"``
    text-generation-webui's parameter names (modules/presets.py) and its sorting of
    the samplers by ``sampler_priority`` (modules/sampler_hijack.py), including
    ``temperature_last``; a sampler missing from the priority list runs first, as
    there.
``"vllm"``
    ``SamplingParams`` field names and the order of vLLM v1's ``Sampler``: allowed
    token ids, bad words, min tokens, logit bias, penalties, then greedy when
    temperature is 0, else temperature, min-p, top-k, top-p, draw.

What a style has that fastsample does not (a grammar, beam search, a string that
needs the tokenizer) and every unknown key is a ``ValueError`` that lists them all;
``strict=False`` makes it a :class:`RequestWarning` and leaves those features out.
Constrained decoding (a grammar, a JSON schema) is a token bitmask in fastsample
(spec §10, docs/spec.md), which a request cannot carry.
A value outside the range the peer accepts is a ``ValueError`` either way. Fields
about the call rather than the draw (``max_tokens``, ``stop``, ``stream``, ``model``,
the prompt) are kept in ``Request.passthrough`` for the caller.

History: the stages that read it (penalties, DRY, n-gram and bad-word bans) use the
chain's history: the tokens the caller gives ``accept`` (or passes as ``history=``).
Peers differ in what they count: transformers and vLLM's repetition penalty count
the prompt too, OpenAI's and vLLM's frequency and presence penalties only the
generated tokens; feed the chain what the peer would count. ``MinTokens`` compares
the chain's position, so count positions from the first generated token.
"""

from __future__ import annotations

import json
import math
import numbers
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import stages as _st

__all__ = ["STYLES", "Request", "RequestWarning", "from_request", "parse_request"]

STYLES = ("llama.cpp", "openai", "hf", "webui", "vllm")


class RequestWarning(UserWarning):
    """Unknown or unsupported request fields, with ``strict=False``."""


@dataclass(frozen=True)
class Request:
    """What a request asked of the call, beyond the chain's stages.

    A chain built by ``SamplerChain.from_request`` carries one as ``chain.request``,
    so the caller can pass it on (``chain.sample(logits, logprobs=r.logprobs,
    logprobs_mode=r.logprobs_mode)`` where the chain supports logprobs).

    Attributes
    ----------
    style : str
        The request's style.
    seed : int
        The chain's seed (every row's).
    seed_source : {"request", "argument", "random"}
        Where the seed came from: the request's own seed; the ``seed`` argument
        (the request gave none, or its "random" value: -1 in llama.cpp, vLLM and
        webui); or, with neither, a fresh random 64-bit seed (what the peers do
        without a seed), kept here so the run can be repeated.
    logprobs : int or None
        How many top log-probabilities to return with each token (0: only the
        sampled token's; None: none): OpenAI ``logprobs``/``top_logprobs``,
        llama.cpp ``n_probs``, vLLM ``logprobs``.
    logprobs_mode : {"raw", "processed"}
        "processed" for llama.cpp's ``post_sampling_probs``; otherwise "raw", the
        log-softmax of the input logits (what OpenAI and vLLM return).
    max_tokens : int or None
        The token limit the request gave (``max_tokens``, ``n_predict``,
        ``max_new_tokens``, ...); None when unlimited or not given.
    n : int
        Sequences asked for (OpenAI/vLLM ``n``, llama.cpp ``n_cmpl``, transformers
        ``num_return_sequences``); 1 unless given.
    passthrough : Mapping
        The request's fields about the call rather than the draw (stop strings,
        stream, model, prompt, ...), read-only, as given.
    """

    style: str
    seed: int
    seed_source: str
    logprobs: int | None = None
    logprobs_mode: str = "raw"
    max_tokens: int | None = None
    n: int = 1
    passthrough: Mapping = field(default_factory=lambda: MappingProxyType({}))


# ------------------------------------------------------------------------- reading


class _Reader:
    """A request's fields, each read once; what is never read is unknown.

    ``None`` (JSON null) reads as the default, as the peers' parsers do.
    """

    def __init__(self, params, style):
        if not isinstance(params, Mapping):
            raise TypeError(f"a {style} request must be a mapping (a JSON object); "
                            f"got {type(params).__name__}")
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{style} request keys must be strings; got {bad!r}")
        self.style = style
        self.params = dict(params)
        self.read = set()
        self.unsupported = []       # "key=value (why)"
        self.unknown = []           # keys or entries no style field matches
        self.passthrough = {}

    def given(self, key):
        return self.params.get(key) is not None

    def raw(self, key, default=None):
        self.read.add(key)
        value = self.params.get(key)
        return default if value is None else value

    def _bad(self, key, value, want):
        return ValueError(f"{self.style} request: {key}={value!r} {want}")

    def number(self, key, default, *, integer=False, lo=None, hi=None,
               lo_open=False, hi_open=False):
        """A finite number in the peer's range (bounds inclusive unless *_open)."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, value, "must be a number")
        if not math.isfinite(value):
            raise self._bad(key, value, "must be finite")
        if integer:
            if value != int(value):
                raise self._bad(key, value, "must be an integer")
            value = int(value)
        else:
            value = float(value)
        low_ok = lo is None or (value > lo if lo_open else value >= lo)
        high_ok = hi is None or (value < hi if hi_open else value <= hi)
        if not (low_ok and high_ok):
            lb = "-inf" if lo is None else lo
            hb = "inf" if hi is None else hi
            raise self._bad(key, value, f"is outside {'(' if lo_open else '['}{lb}, "
                                        f"{hb}{')' if hi_open else ']'}")
        return value

    def flag(self, key, default=False):
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, value, "must be true or false")
        return value

    def token_ids(self, key, value, what="token ids"):
        """A list of non-negative int token ids (JSON ints)."""
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise self._bad(key, value, f"must be a list of {what}")
        ids = list(value)
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                raise self._bad(key, value, f"must hold integer {what}; "
                                            f"strings need a tokenizer, which fastsample has not")
            if int(t) < 0:
                raise self._bad(key, value, f"holds {int(t)}; {what} are >= 0")
        return [int(t) for t in ids]

    def unsupported_if(self, key, active, why):
        """Note ``key`` as unsupported when its value (read here) is ``active``."""
        value = self.raw(key)
        try:
            on = value is not None and active(value)
        except TypeError:
            raise self._bad(key, value, "has the wrong type") from None
        if on:
            self.unsupported.append(f"{key}={value!r} ({why})")
            return True
        return False

    def keep(self, *keys):
        """Fields about the call, not the draw: kept for the caller as given."""
        for key in keys:
            self.read.add(key)
            if key in self.params:
                self.passthrough[key] = self.params[key]

    def finish(self, strict):
        unknown = sorted(set(self.params) - self.read) + self.unknown
        parts = []
        if unknown:
            parts.append("unknown: " + ", ".join(unknown))
        if self.unsupported:
            parts.append("not supported by fastsample: " + "; ".join(self.unsupported))
        if not parts:
            return
        msg = f"{self.style} request: " + ". ".join(parts)
        if strict:
            raise ValueError(msg + " (strict=False warns and leaves them out)")
        warnings.warn(msg + "; left out", RequestWarning, stacklevel=4)


def _stage(name, reader, key):
    """A stage class of fastsample.stages, or None (noted unsupported) if missing."""
    cls = getattr(_st, name, None)
    if cls is None:
        reader.unsupported.append(f"{key} (fastsample.{name} is not in this build)")
    return cls


def _seed(reader, key, fallback, random_values=()):
    """``(seed, source)``: the request's seed, else ``fallback``, else a random one."""
    value = reader.raw(key)
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise reader._bad(key, value, "must be an integer")
        if value not in random_values:
            if not 0 <= value < 2**64:
                raise reader._bad(key, value, "must be in [0, 2**64)")
            return int(value), "request"
    if fallback is not None:
        return fallback, "argument"
    return secrets.randbits(64), "random"


def _breakers(reader, key, strings, token_texts, active):
    """DRY breaker strings as token ids (``fs.dry_breakers``), given the vocabulary."""
    if not active:
        return ()
    if token_texts is None:
        reader.unsupported.append(
            f"{key}={list(strings)!r} (DRY's sequence breakers are strings: pass "
            f"token_texts=, every token's text, to map them to token ids)")
        return ()
    from .api import dry_breakers

    return dry_breakers(strings, token_texts)


def _first_given(r, *keys):
    """The first of ``keys`` the request gives (aliases); all count as read."""
    r.read.update(keys)
    return next((k for k in keys if r.given(k)), keys[0])


def _max_tokens(value):
    return None if value is None or value < 0 else value


# ------------------------------------------------------------------------ llama.cpp

#: llama.cpp's sampler names (common_sampler_type_to_str) and letters
#: (common_sampler_type_to_chr).
_LLAMA_NAMES = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                "xtc", "temperature", "adaptive_p", "infill")
_LLAMA_LETTERS = dict(zip("edskypmxtai", _LLAMA_NAMES))
_LLAMA_ORDER = ("penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p",
                "xtc", "temperature")
_LLAMA_BREAKERS = ("\n", ":", "\"", "*")
_LLAMA_RANDOM_SEED = (-1, 0xFFFFFFFF)   # LLAMA_DEFAULT_SEED: a random seed


def _llama_logit_bias(r):
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
                raise r._bad("logit_bias", el, "entries must be [token id, bias] pairs")
            pairs.append(tuple(el))
    else:
        raise r._bad("logit_bias", value, "must be a list of [id, bias] pairs or an object")
    ids, biases, strings = [], [], []
    for tok, bias in pairs:
        if isinstance(tok, str):
            if not tok.lstrip("-").isdigit():
                strings.append(tok)
                continue
            tok = int(tok)
        if isinstance(tok, bool) or not isinstance(tok, int):
            raise r._bad("logit_bias", tok, "token must be an integer id")
        if bias is False:
            bias = -math.inf          # llama.cpp: false bans the token
        elif bias is True:
            continue                  # llama.cpp skips it
        elif not isinstance(bias, (int, float)):
            raise r._bad("logit_bias", bias, "bias must be a number or false")
        ids.append(tok)
        biases.append(float(bias))
    if strings:
        r.unsupported.append(f"logit_bias strings {strings!r} (need the tokenizer)")
    return (ids, biases) if ids else None


def _llama_samplers(r):
    value = r.raw("samplers")
    if value is None:
        return _LLAMA_ORDER
    if isinstance(value, str):
        names = []
        for c in value:
            if c in _LLAMA_LETTERS:
                names.append(_LLAMA_LETTERS[c])
            else:
                r.unknown.append(f"samplers letter {c!r}")
        return tuple(names)
    if not isinstance(value, (list, tuple)):
        raise r._bad("samplers", value, "must be a list of names or a string of letters")
    names = []
    for name in value:
        if name in _LLAMA_NAMES:
            names.append(name)
        else:
            r.unknown.append(f"samplers entry {name!r}")
    return tuple(names)


def _build_llama_cpp(r, seed, token_texts, eos_token_id):
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
    strings = r.raw("dry_sequence_breakers", _LLAMA_BREAKERS)
    if isinstance(strings, str) or not isinstance(strings, (list, tuple)) or not strings \
            or not all(isinstance(s, str) for s in strings):
        raise r._bad("dry_sequence_breakers", strings, "must be a non-empty list of strings")
    mirostat = r.number("mirostat", 0, integer=True, lo=0, hi=2)
    tau = r.number("mirostat_tau", 5.0)
    eta = r.number("mirostat_eta", 0.1)
    adaptive_target = r.number("adaptive_target", -1.0, hi=1.0)
    adaptive_decay = r.number("adaptive_decay", 0.9, lo=0.0, hi=0.99)
    min_keep = max(r.number("min_keep", 0, integer=True, lo=0), 1)
    # "logprobs" is read when "n_probs" is not given (the server's alias)
    n_probs = r.number(_first_given(r, "n_probs", "logprobs"), 0, integer=True, lo=0)
    post = r.flag("post_sampling_probs", False)
    seed_value, source = _seed(r, "seed", seed, _LLAMA_RANDOM_SEED)
    max_tokens = r.number(_first_given(r, "n_predict", "max_tokens", "max_completion_tokens"),
                          -1, integer=True, lo=-1)
    n = r.number(_first_given(r, "n_cmpl", "n"), 1, integer=True, lo=1)
    r.unsupported_if("ignore_eos", bool, "bans the end-of-generation tokens, which "
                                         "need the vocabulary")
    for key in ("grammar", "json_schema"):
        r.unsupported_if(key, lambda v: v not in ("", {}),
                         "constrained decoding: use a bitmask (spec §10)")
    r.keep("prompt", "stream", "stream_options", "stop", "cache_prompt", "return_tokens",
           "return_progress", "n_indent", "n_keep", "n_discard", "n_cache_reuse",
           "t_max_predict_ms", "id_slot", "response_fields", "timings_per_token",
           "verbose", "lora", "backend_sampling", "grammar_lazy", "grammar_triggers",
           "preserved_tokens", "model", "multimodal_data", "image_data", "chat_format",
           "reasoning_format", "thinking_forced_open", "parse_tool_calls",
           "thinking_budget_tokens", "speculative.n_max", "speculative.n_min",
           "speculative.p_min")

    out = []
    bias = _llama_logit_bias(r)
    if bias is not None:
        out.append(_st.LogitBias(bias))
    order = _llama_samplers(r)
    dry_active = dry_mult != 0 and dry_last_n != 0
    if mirostat == 0:
        adaptive = False
        for name in order:
            if name == "penalties":
                if last_n != 0 and (repeat, freq, presence) != (1.0, 0.0, 0.0):
                    out.append(_st.Penalties(repeat, freq, presence, last_n))
            elif name == "dry":
                breakers = _breakers(r, "dry_sequence_breakers", strings, token_texts,
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
                   max_tokens=_max_tokens(max_tokens), n=n)
    return out, request


# --------------------------------------------------------------------------- openai


def _openai_logit_bias(r, lo=-100.0, hi=100.0):
    value = r.raw("logit_bias")
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise r._bad("logit_bias", value, "must be an object of token id -> bias")
    ids, biases = [], []
    for tok, bias in value.items():
        if isinstance(tok, str) and tok.isdigit():
            tok = int(tok)
        if isinstance(tok, bool) or not isinstance(tok, int) or tok < 0:
            raise r._bad("logit_bias", tok, "keys must be token ids (>= 0)")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) \
                or not math.isfinite(bias) or not lo <= bias <= hi:
            raise r._bad("logit_bias", bias, f"values must be numbers in [{lo:g}, {hi:g}]")
        ids.append(tok)
        biases.append(float(bias))
    return ids, biases


def _build_openai(r, seed, token_texts, eos_token_id):
    temp = r.number("temperature", 1.0, lo=0.0, hi=2.0)
    top_p = r.number("top_p", 1.0, lo=0.0, hi=1.0)
    freq = r.number("frequency_penalty", 0.0, lo=-2.0, hi=2.0)
    presence = r.number("presence_penalty", 0.0, lo=-2.0, hi=2.0)
    seed_value, source = _seed(r, "seed", seed)
    logprobs = r.raw("logprobs")
    top = r.number("top_logprobs", 0, integer=True, lo=0, hi=20) \
        if r.given("top_logprobs") else None
    if isinstance(logprobs, bool):      # chat: a flag, with top_logprobs
        if top is not None and not logprobs:
            raise r._bad("top_logprobs", top, "needs logprobs=true")
        n_logprobs = (top or 0) if logprobs else None
    elif logprobs is None:
        if top is not None:
            raise r._bad("top_logprobs", top, "needs logprobs=true")
        n_logprobs = None
    else:                               # legacy completions: an int, 0..5
        n_logprobs = r.number("logprobs", 0, integer=True, lo=0, hi=5)
    key = _first_given(r, "max_completion_tokens", "max_tokens")
    max_tokens = r.number(key, 0, integer=True, lo=1) if r.given(key) else None
    n = r.number("n", 1, integer=True, lo=1)
    r.unsupported_if("response_format", lambda v: not (isinstance(v, Mapping)
                                                       and v.get("type") == "text"),
                     "structured output: use a bitmask (spec §10)")
    r.keep("model", "messages", "prompt", "stream", "stream_options", "stop", "user",
           "store", "metadata", "service_tier", "modalities", "audio", "prediction",
           "reasoning_effort", "tools", "tool_choice", "parallel_tool_calls",
           "functions", "function_call", "echo", "suffix", "best_of",
           "web_search_options", "verbosity", "safety_identifier", "prompt_cache_key")

    out = []
    bias = _openai_logit_bias(r)
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


# ------------------------------------------------------------------------------- hf

_HF_PASSTHROUGH = (
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


def _eos_ids(r, key, value, fallback):
    value = fallback if value is None else value
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return r.token_ids(key, value)


def _build_hf(r, seed, token_texts, eos_token_id):
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
    eos = _eos_ids(r, "eos_token_id", r.raw("eos_token_id"), eos_token_id)
    bad = r.raw("bad_words_ids")
    suppress = r.raw("suppress_tokens")
    if do_sample and temp <= 0:
        raise r._bad("temperature", temp, "must be > 0 with do_sample (transformers' "
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
    r.keep(*_HF_PASSTHROUGH)

    out = []
    if repetition != 1.0:
        out.append(_st.Penalties(repetition, 0.0, 0.0, -1))
    if ngram > 0:
        out.append(_st.NoRepeatNGram(ngram))
    if bad is not None:
        if not isinstance(bad, (list, tuple)) or not bad:
            raise r._bad("bad_words_ids", bad, "must be a non-empty list of token-id lists")
        seqs = [r.token_ids("bad_words_ids", s) for s in bad]
        if any(not s for s in seqs):
            raise r._bad("bad_words_ids", bad, "holds an empty sequence")
        # transformers drops a bad word that is exactly an end-of-sequence token
        seqs = [s for s in seqs if not (eos and len(s) == 1 and s[0] in eos)]
        cls = _stage("BadWords", r, "bad_words_ids")
        if cls is not None and seqs:
            out.append(cls(seqs))
    if min_new > 0 and eos:
        cls = _stage("MinTokens", r, "min_new_tokens")
        if cls is not None:
            out.append(cls(min_new, eos))
    if suppress is not None:
        ids = r.token_ids("suppress_tokens", suppress)
        cls = _stage("BadWords", r, "suppress_tokens") if ids else None
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


# ---------------------------------------------------------------------------- webui

#: modules/presets.py default_preset()['sampler_priority'].
_WEBUI_PRIORITY = (
    "repetition_penalty", "presence_penalty", "frequency_penalty", "dry", "top_n_sigma",
    "temperature", "dynamic_temperature", "quadratic_sampling", "top_k", "top_p",
    "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs", "top_a", "min_p", "mirostat",
    "xtc", "encoder_repetition_penalty", "no_repeat_ngram",
)
_WEBUI_BREAKERS = '"\\n", ":", "\\"", "*"'


def _webui_priority(r):
    value = r.raw("sampler_priority")
    if value is None:
        return list(_WEBUI_PRIORITY)
    if isinstance(value, str):
        value = [x.strip() for x in value.replace("\n", ",").split(",") if x.strip()]
    elif not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise r._bad("sampler_priority", value, "must be a list of names or a "
                                                "newline-separated string")
    for name in value:
        if name not in _WEBUI_PRIORITY:
            r.unknown.append(f"sampler_priority entry {name!r}")
    return list(value)


def _webui_breakers(r):
    value = r.raw("dry_sequence_breakers", _WEBUI_BREAKERS)
    if isinstance(value, str):  # JSON array, or its items without the brackets
        try:
            value = json.loads(value if value.strip().startswith("[") else f"[{value}]")
        except json.JSONDecodeError:
            raise r._bad("dry_sequence_breakers", value, "is not a JSON list of strings") \
                from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise r._bad("dry_sequence_breakers", value, "must be a list of strings")
    return value


def _build_webui(r, seed, token_texts, eos_token_id):
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
    priority = _webui_priority(r)
    strings = _webui_breakers(r)
    seed_value, source = _seed(r, "seed", seed, (-1,))
    bans = r.raw("custom_token_bans")
    if do_sample and temp <= 0:
        raise r._bad("temperature", temp, "must be > 0 with do_sample; use "
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
    if bans is not None and bans != "":
        if isinstance(bans, str):
            try:
                bans = [int(x) for x in bans.split(",") if x.strip()]
            except ValueError:
                raise r._bad("custom_token_bans", bans, "must be comma-separated token ids") \
                    from None
        ids = r.token_ids("custom_token_bans", bans)
        cls = _stage("BadWords", r, "custom_token_bans") if ids else None
        if cls is not None:
            built.append((None, cls([[t] for t in ids])))
    if ngram > 0:
        built.append(("no_repeat_ngram", _st.NoRepeatNGram(ngram)))
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
        breakers = _breakers(r, "dry_sequence_breakers", strings, token_texts, True)
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


# ----------------------------------------------------------------------------- vllm


def _build_vllm(r, seed, token_texts, eos_token_id):
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
    seed_value, source = _seed(r, "seed", seed, (-1,))
    ignore_eos = r.flag("ignore_eos", False)
    stop_ids = r.token_ids("stop_token_ids", r.raw("stop_token_ids", []))
    # max_tokens: 16 unless given; null is no limit
    max_tokens = None if "max_tokens" in r.params and not r.given("max_tokens") else \
        r.number("max_tokens", 16, integer=True, lo=1)
    r.read.add("max_tokens")
    min_tokens = r.number("min_tokens", 0, integer=True, lo=0)
    if max_tokens is not None and min_tokens > max_tokens:
        raise r._bad("min_tokens", min_tokens, f"is above max_tokens={max_tokens}")
    logprobs = r.raw("logprobs")
    if logprobs is True:
        logprobs = 1
    elif logprobs is not None:
        logprobs = r.number("logprobs", 0, integer=True, lo=0)
    r.unsupported_if("logits_processors", lambda v: len(v) > 0, "Python callables")
    for key in ("guided_decoding", "structured_outputs"):
        r.unsupported_if(key, lambda v: True, "structured output: use a bitmask (spec §10)")
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
            raise r._bad("allowed_token_ids", allowed, "is empty")
        cls = _stage("AllowedTokens", r, "allowed_token_ids")
        if cls is not None:
            out.append(cls(ids))
    bad = r.raw("bad_words")
    if bad is not None and len(bad) > 0:
        if not isinstance(bad, (list, tuple)) or any(isinstance(s, (str, int)) for s in bad):
            raise r._bad("bad_words", bad, "must be token-id sequences (a list of lists "
                                           "of ints): words as strings need the tokenizer")
        seqs = [r.token_ids("bad_words", s) for s in bad]
        if any(not s for s in seqs):
            raise r._bad("bad_words", bad, "holds an empty sequence")
        cls = _stage("BadWords", r, "bad_words")
        if cls is not None:
            out.append(cls(seqs))
    if min_tokens > 0:
        ids = list(stop_ids)
        if not ignore_eos and eos_token_id is not None:
            ids += _eos_ids(r, "eos_token_id", eos_token_id, None)
        if not ids:
            r.unsupported.append(f"min_tokens={min_tokens} (no stop ids to ban: give "
                                 f"stop_token_ids, or eos_token_id= to from_request)")
        else:
            cls = _stage("MinTokens", r, "min_tokens")
            if cls is not None:
                out.append(cls(min_tokens, sorted(set(ids))))
    bias = _openai_logit_bias(r, lo=-math.inf, hi=math.inf)
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


_BUILDERS = {
    "llama.cpp": _build_llama_cpp,
    "openai": _build_openai,
    "hf": _build_hf,
    "webui": _build_webui,
    "vllm": _build_vllm,
}


# ---------------------------------------------------------------------------- entry


def _check_seed_argument(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64) or None; got {seed!r}")
    return int(seed)


def parse_request(params, style, *, strict=True, seed=None, token_texts=None,
                  eos_token_id=None):
    """The stages and the :class:`Request` of a request, without building the chain.

    Parameters are those of :func:`from_request`.

    Returns
    -------
    stages : list of Stage
        In the peer's order; the last is the terminal (``Dist`` unless the peer's
        chain ends otherwise).
    request : Request
    """
    if style not in _BUILDERS:
        raise ValueError(f"unknown request style {style!r}; styles: {', '.join(STYLES)}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False; got {strict!r}")
    seed = _check_seed_argument(seed)
    reader = _Reader(params, style)
    stages, fields = _BUILDERS[style](reader, seed, token_texts, eos_token_id)
    reader.finish(strict)
    if not stages or not stages[-1].terminal:
        stages.append(_st.Dist())
    request = Request(style=style, passthrough=MappingProxyType(dict(reader.passthrough)),
                      **fields)
    return stages, request


def from_request(params, style, *, strict=True, seed=None, backend="auto",
                 on_invalid="raise", token_texts=None, eos_token_id=None):
    """The ``SamplerChain`` a peer would run for a request in its own format.

    Parameters
    ----------
    params : Mapping
        The request's sampling fields as the peer takes them (a parsed JSON
        object, a ``generation_config.json``, ``SamplingParams`` fields as a dict).
    style : {"llama.cpp", "openai", "hf", "webui", "vllm"}
        Whose format ``params`` is in (module docstring).
    strict : bool
        True: an unknown key, or a feature fastsample does not have, is a
        ``ValueError`` listing every one. False: a :class:`RequestWarning` listing
        them, and the chain is built without them.
    seed : int, optional
        The seed when the request gives none (or its "random" value); None then
        draws a random 64-bit seed, recorded in ``chain.request.seed``.
    backend, on_invalid
        As for ``SamplerChain``.
    token_texts : sequence of str, optional
        Every token's text, by id: maps DRY's breaker strings to token ids
        (``fs.dry_breakers``). Needed when a request turns DRY on.
    eos_token_id : int or sequence of int, optional
        The model's end-of-sequence id(s), for requests that name none themselves
        (vLLM's ``min_tokens`` bans them with ``stop_token_ids``; transformers uses
        the config's ``eos_token_id`` first).

    Returns
    -------
    SamplerChain
        With ``chain.request``, a :class:`Request`: the seed used, the logprobs
        asked for, ``max_tokens``, ``n`` and the call-level fields.

    Raises
    ------
    ValueError
        Unknown style; unknown or unsupported fields (``strict=True``); a value the
        peer would reject.
    """
    from .chain import SamplerChain

    stages, request = parse_request(params, style, strict=strict, seed=seed,
                                    token_texts=token_texts, eos_token_id=eos_token_id)
    chain = SamplerChain(stages, seed=request.seed, backend=backend, on_invalid=on_invalid)
    chain.request = request
    return chain
