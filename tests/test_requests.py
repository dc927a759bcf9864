"""Request styles (issue #16): ``SamplerChain.from_request`` builds the peer's chain.

Each test restates a peer's documented defaults, order and no-op rules as a stage
list written by hand, and compares it with what ``parse_request`` builds (stage types
and every parameter). Sources, read through the ``search`` tool (stored copies of the
public repositories, Dec 2026):

- llama.cpp: ``common/common.h`` (``common_params_sampling``: the defaults and the
  default ``samplers`` order penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p,
  xtc, temperature), ``common/sampling.cpp`` (``common_sampler_init``: logit bias
  first, the samplers in order, then dist or adaptive-p; mirostat 1/2 replace the list
  with temp -> mirostat(m=100)/mirostat_v2; ``common_sampler_types_from_names`` /
  ``_from_chars``: the names and letters), ``tools/server/server-task.cpp``
  (``params_from_json_cmpl``: the /completion field names, ``logprobs`` as the alias
  of ``n_probs``, ``dry_base < 1`` replaced by the default, ``repeat_last_n`` and
  ``dry_penalty_last_n`` >= -1), ``tools/server/server-schema.cpp`` (mirostat 0..2,
  adaptive_target/adaptive_decay), ``src/llama-sampling.cpp``'s no-op rules as
  restated in docs/spec.md §4. Note: ``dry_penalty_last_n`` defaults to 64 in the
  current common.h; tools/server/README.md still says -1 (the older default).
- OpenAI: the API reference (temperature 0..2 default 1, top_p default 1, penalties
  -2..2 default 0, logit_bias -100..100, logprobs / top_logprobs 0..20) and the
  "parameter details" formula ``mu[j] -= c[j] * alpha_frequency + (c[j] > 0) *
  alpha_presence``. OpenAI publishes no order; the style follows vLLM's (below).
- transformers 5.25 (installed): ``GenerationConfig._get_default_generation_params``
  (do_sample False, temperature 1.0, top_k 50, top_p 1.0, typical_p 1.0,
  repetition_penalty 1.0, epsilon/eta 0.0, ...) and
  ``GenerationMixin._get_logits_processor`` (the order and the conditions each
  processor is added under); ``NoBadWordsLogitsProcessor`` drops a bad word equal to
  an EOS token.
- text-generation-webui: ``modules/presets.py`` (``default_preset``: every default and
  the default ``sampler_priority``), ``modules/sampler_hijack.py``
  (``get_logits_processor_patch``: which samplers are added under which condition,
  the stable sort by ``sampler_priority`` with unlisted samplers first,
  ``temperature_last``; ``repetition_penalty_range`` as the window).
- vLLM: ``vllm/sampling_params.py`` (``SamplingParams`` defaults: n 1, penalties 0/0/1,
  temperature 1, top_p 1, top_k off, min_p 0, max_tokens 16, min_tokens 0; ranges;
  tiny temperatures raised to 0.01) and ``vllm/v1/sample/sampler.py`` (``Sampler``:
  allowed token ids, bad words, min tokens, logit bias, penalties, greedy when
  temperature is 0, temperature, min-p, top-k/top-p).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import fastsample as fs
from fastsample import stages as st
from fastsample import workloads as wl
from fastsample.cli import main
from fastsample.requests import Request, RequestWarning, parse_request, sample_kwargs

V = 300
TEXTS = [f"t{i}" for i in range(V)]
TEXTS[10], TEXTS[11], TEXTS[12] = "\n", "a:b", "*"
BREAKERS = [10, 11, 12]          # fs.dry_breakers(None, TEXTS): llama.cpp's defaults

H3 = ("AllowedTokens", "BadWords", "MinTokens")
needs_h3 = pytest.mark.skipif(
    not all(hasattr(st, n) for n in H3),
    reason="fastsample.stages lacks " + ", ".join(n for n in H3 if not hasattr(st, n))
    + " (being added for #14)")


def describe(stages):
    """Stage types and every parameter, as plain values."""
    out = []
    for s in stages:
        d = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
             for k, v in s._values.items()}
        for attr in ("ids", "values", "breakers", "stop_ids"):
            if hasattr(s, attr):
                d[attr] = np.asarray(getattr(s, attr)).tolist()
        if hasattr(s, "sequences"):
            d["sequences"] = [np.asarray(q).tolist() for q in s.sequences]
        out.append((type(s).__name__, d))
    return out


def built(params, style, **kw):
    kw.setdefault("seed", 0)
    stages, _ = parse_request(params, style, **kw)
    return describe(stages)


def assert_chain(params, style, expected, **kw):
    got = built(params, style, **kw)
    assert got == describe(expected), f"\n got      {got}\n expected {describe(expected)}"


def raises_listing(params, style, *names, **kw):
    """strict: one ValueError naming every field; strict=False: one warning, same list."""
    with pytest.raises(ValueError) as exc:
        parse_request(params, style, seed=0, **kw)
    for name in names:
        assert name in str(exc.value), (name, str(exc.value))
    with pytest.warns(RequestWarning) as record:
        stages, _ = parse_request(params, style, strict=False, seed=0, **kw)
    assert len(record) == 1
    for name in names:
        assert name in str(record[0].message)
    return stages


# ---------------------------------------------------------------------------- llama.cpp


def test_llama_cpp_defaults():
    """/completion with no fields: common_params_sampling's top_k 40, top_p 0.95,
    min_p 0.05, temp 0.8 (penalties 1/0/0, dry 0, typ_p 1, top_n_sigma -1, xtc 0 are
    off), in the default order, then dist; seed -1 = random, n_probs 0."""
    assert_chain({}, "llama.cpp",
                 [st.TopK(40), st.TopP(0.95), st.MinP(0.05), st.Temperature(0.8), st.Dist()])
    _, req = parse_request({}, "llama.cpp")
    assert req.seed_source == "random" and 0 <= req.seed < 2**64
    assert (req.logprobs, req.max_tokens, req.n) == (None, None, 1)


def test_llama_cpp_default_order_every_stage_on():
    """The default ``samplers``: penalties, dry, top_n_sigma, top_k, typ_p, top_p,
    min_p, xtc, temperature; defaults repeat_last_n 64, dry_base 1.75,
    dry_allowed_length 2, dry_penalty_last_n 64 (common.h), xtc_threshold 0.1;
    min_keep (0 -> 1) reaches typ_p, top_p, min_p and xtc but not top_k."""
    req = {"repeat_penalty": 1.1, "frequency_penalty": 0.2, "presence_penalty": 0.3,
           "dry_multiplier": 0.8, "top_n_sigma": 1.5, "typical_p": 0.9,
           "xtc_probability": 0.5, "min_keep": 3, "logit_bias": [[5, 1.5], [6, False]]}
    assert_chain(req, "llama.cpp", [
        st.LogitBias({5: 1.5, 6: -np.inf}),
        st.Penalties(1.1, 0.2, 0.3, 64), st.DRY(0.8, 1.75, 2, 64, breakers=BREAKERS),
        st.TopNSigma(1.5), st.TopK(40), st.Typical(0.9, 3), st.TopP(0.95, 3),
        st.MinP(0.05, 3), st.XTC(0.5, 0.1, 3), st.Temperature(0.8), st.Dist()],
        token_texts=TEXTS)


def test_llama_cpp_samplers_list_and_letters():
    """``samplers``: names in the given order (a sampler not named is not run), or
    common_sampler_type_to_chr letters: e penalties, d dry, s top_n_sigma, k top_k,
    y typ_p, p top_p, m min_p, x xtc, t temperature."""
    expected = [st.MinP(0.05), st.Temperature(0.8), st.TopK(40), st.Dist()]
    assert_chain({"samplers": ["min_p", "temperature", "top_k"]}, "llama.cpp", expected)
    assert_chain({"samplers": "mtk"}, "llama.cpp", expected)
    full = {"repeat_penalty": 1.1, "top_n_sigma": 1.0, "typical_p": 0.9,
            "xtc_probability": 0.5, "dry_multiplier": 0.5}
    assert built(dict(full, samplers="edskypmxt"), "llama.cpp", token_texts=TEXTS) == \
        built(full, "llama.cpp", token_texts=TEXTS)
    # a sampler named twice runs twice (llama.cpp: "applied multiple times")
    assert_chain({"samplers": ["top_k", "top_k"]}, "llama.cpp",
                 [st.TopK(40), st.TopK(40), st.Dist()])


@pytest.mark.parametrize("field", [
    {"top_k": 0}, {"top_k": -5}, {"top_p": 1.0}, {"min_p": 0.0}, {"temperature": 1.0},
    {"typical_p": 1.0}, {"top_n_sigma": 0.0}, {"xtc_probability": 0.5, "xtc_threshold": 0.6},
    {"xtc_probability": 0.0}, {"repeat_penalty": 1.3, "repeat_last_n": 0},
    {"dry_multiplier": 0.8, "dry_penalty_last_n": 0}, {"dynatemp_range": 0.0},
])
def test_llama_cpp_no_op_rules(field):
    """llama.cpp's samplers return early on: top_k <= 0, top_p >= 1, min_p <= 0,
    typ_p >= 1, top_n_sigma <= 0, xtc probability <= 0 or threshold > 0.5, penalties
    with last_n 0, dry with last_n 0, temp 1 without dynatemp; such a stage is left
    out of the chain."""
    base = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0}
    assert_chain({**base, **field}, "llama.cpp", [st.Dist()])


def test_llama_cpp_dry_base_dynatemp_and_windows():
    """dry_base < 1 is replaced by 1.75 (server); dynatemp_range > 0 makes temperature
    llama_sampler_init_temp_ext's dynamic form; -1 windows are the whole history."""
    assert_chain({"samplers": ["dry", "temperature"], "dry_multiplier": 0.5, "dry_base": 0.5,
                  "dry_penalty_last_n": -1, "dry_allowed_length": 3,
                  "dynatemp_range": 0.3, "dynatemp_exponent": 2.0}, "llama.cpp",
                 [st.DRY(0.5, 1.75, 3, -1, breakers=BREAKERS),
                  st.DynamicTemperature(0.8, 0.3, 2.0), st.Dist()], token_texts=TEXTS)
    assert_chain({"samplers": ["penalties"], "repeat_penalty": 1.2, "repeat_last_n": -1},
                 "llama.cpp", [st.Penalties(1.2, 0.0, 0.0, -1), st.Dist()])


def test_llama_cpp_mirostat_replaces_the_list():
    """mirostat 1: temp then mirostat (tau 5, eta 0.1, m 100); 2: temp then mirostat
    v2; penalties, dry and the truncations are not in that chain; logit bias is."""
    req = {"repeat_penalty": 1.3, "top_k": 10, "logit_bias": {"7": -2.0}}
    assert_chain({**req, "mirostat": 1}, "llama.cpp",
                 [st.LogitBias({7: -2.0}), st.Temperature(0.8), st.Mirostat(5.0, 0.1, 100)])
    assert_chain({**req, "mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.2,
                  "temperature": 1.0}, "llama.cpp",
                 [st.LogitBias({7: -2.0}), st.MirostatV2(3.0, 0.2)])


def test_llama_cpp_adaptive_p():
    """adaptive_p named in samplers replaces dist at the end (adaptive_decay 0.9);
    a negative adaptive_target (the default -1) is a plain draw."""
    assert_chain({"samplers": ["adaptive_p", "min_p"], "adaptive_target": 0.4},
                 "llama.cpp", [st.MinP(0.05), st.AdaptiveP(0.4, 0.9)])
    assert_chain({"samplers": ["min_p", "adaptive_p"]}, "llama.cpp", [st.MinP(0.05), st.Dist()])


def test_llama_cpp_call_fields():
    """n_probs (or its alias logprobs), post_sampling_probs, seed (-1 = random),
    n_predict / max_tokens (-1 = no limit), n_cmpl / n; call fields kept as given."""
    _, r = parse_request({"n_probs": 5, "post_sampling_probs": True, "seed": 9,
                          "n_predict": 32, "n": 2, "prompt": "hi", "stream": True,
                          "stop": ["\n"]}, "llama.cpp")
    assert (r.logprobs, r.logprobs_mode, r.seed, r.seed_source, r.max_tokens, r.n) == \
        (5, "processed", 9, "request", 32, 2)
    assert dict(r.passthrough) == {"prompt": "hi", "stream": True, "stop": ["\n"]}
    _, r = parse_request({"logprobs": 3, "seed": -1, "max_tokens": -1}, "llama.cpp", seed=4)
    assert (r.logprobs, r.logprobs_mode, r.seed, r.seed_source, r.max_tokens) == \
        (3, "raw", 4, "argument", None)


def test_llama_cpp_unknown_and_unsupported():
    """Unknown keys, unknown sampler names and what fastsample lacks (a grammar,
    ignore_eos, string logit_bias, DRY breakers without the vocabulary) are listed."""
    stages = raises_listing(
        {"frobnicate": 1, "top_q": 0.3, "grammar": "root ::= \"a\"", "ignore_eos": True,
         "samplers": ["top_k", "top-k", "infill", "dry"], "logit_bias": [["Hello", -1.0]],
         "dry_multiplier": 0.5, "dry_sequence_breakers": ["\n"]},
        "llama.cpp", "frobnicate", "top_q", "grammar", "ignore_eos", "'top-k'", "infill",
        "Hello", "dry_sequence_breakers")
    # strict=False: built without them (DRY without its breakers)
    assert describe(stages) == describe([st.TopK(40), st.DRY(0.5, 1.75, 2, 64), st.Dist()])


@pytest.mark.parametrize("field", [
    {"repeat_last_n": -2}, {"dry_penalty_last_n": -3}, {"mirostat": 3}, {"top_k": 2.5},
    {"temperature": "hot"}, {"min_keep": -1}, {"dry_sequence_breakers": []},
    {"samplers": 5}, {"seed": 2**64}, {"logit_bias": [[1, "a"]]},
])
def test_llama_cpp_bad_values(field):
    with pytest.raises(ValueError, match=next(iter(field))):
        parse_request(field, "llama.cpp", strict=False)


# ------------------------------------------------------------------------------ openai


def test_openai_defaults():
    """temperature 1 and top_p 1 are off, penalties 0, no logit_bias: a plain draw."""
    assert_chain({}, "openai", [st.Dist()])
    _, r = parse_request({}, "openai")
    assert (r.logprobs, r.n, r.seed_source) == (None, 1, "random")


def test_openai_full_request():
    """logit bias, then the penalties over the whole history (repeat 1: OpenAI has
    only the additive form), temperature, top_p, draw; seed and logprobs carried."""
    req = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}],
           "temperature": 0.7, "top_p": 0.9, "frequency_penalty": 0.4,
           "presence_penalty": -0.5, "logit_bias": {"50256": -100, "7": 2.5}, "seed": 42,
           "logprobs": True, "top_logprobs": 3, "n": 2, "max_completion_tokens": 64,
           "stream": False, "stop": ["\n\n"]}
    assert_chain(req, "openai", [st.LogitBias({50256: -100.0, 7: 2.5}),
                                 st.Penalties(1.0, 0.4, -0.5, -1), st.Temperature(0.7),
                                 st.TopP(0.9), st.Dist()])
    _, r = parse_request(req, "openai")
    assert (r.seed, r.seed_source, r.logprobs, r.logprobs_mode, r.n, r.max_tokens) == \
        (42, "request", 3, "raw", 2, 64)
    assert set(r.passthrough) == {"model", "messages", "stream", "stop"}


@pytest.mark.parametrize("fields, expected", [
    ({"logprobs": True}, 0), ({"logprobs": True, "top_logprobs": 20}, 20),
    ({"logprobs": False}, None), ({"logprobs": 4}, 4), ({}, None)])
def test_openai_logprobs(fields, expected):
    """chat: logprobs true (+ top_logprobs 0..20); legacy completions: an int 0..5."""
    assert parse_request(fields, "openai")[1].logprobs == expected


@pytest.mark.parametrize("field", [
    {"temperature": 2.5}, {"top_p": 1.5}, {"frequency_penalty": -2.1},
    {"presence_penalty": 3}, {"logit_bias": {"5": 101}}, {"logit_bias": {"x": 1}},
    {"top_logprobs": 2}, {"logprobs": False, "top_logprobs": 2}, {"logprobs": 6},
    {"top_logprobs": 21, "logprobs": True}, {"n": 0}])
def test_openai_bad_values(field):
    with pytest.raises(ValueError):
        parse_request(field, "openai", strict=False)


def test_openai_unknown_and_unsupported():
    raises_listing({"temprature": 0.5, "response_format": {"type": "json_object"}},
                   "openai", "temprature", "response_format")
    assert_chain({"response_format": {"type": "text"}}, "openai", [st.Dist()])


# ---------------------------------------------------------------------------------- hf


def test_hf_defaults_are_greedy():
    """An empty generation config: do_sample False, so greedy; the sampling-only
    warpers are not added; repetition_penalty 1.0 and no_repeat_ngram_size 0 are off."""
    assert_chain({}, "hf", [st.Greedy()])
    assert_chain({"temperature": 0.5, "top_k": 10, "top_p": 0.5}, "hf", [st.Greedy()])
    assert_chain({"repetition_penalty": 1.2, "temperature": 0.5}, "hf",
                 [st.Penalties(1.2, 0.0, 0.0, -1), st.Greedy()])


def test_hf_do_sample_defaults():
    """do_sample with the defaults: temperature 1.0 (not added), top_k 50 (added),
    top_p 1.0, typical_p 1.0, epsilon/eta 0.0 (not added)."""
    assert_chain({"do_sample": True}, "hf", [st.TopK(50), st.Dist()])


def test_hf_a_real_generation_config():
    """Meta-Llama-3.1-8B-Instruct's generation_config.json."""
    cfg = {"bos_token_id": 128000, "do_sample": True,
           "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9,
           "transformers_version": "4.42.3"}
    assert_chain(cfg, "hf", [st.Temperature(0.6), st.TopK(50), st.TopP(0.9), st.Dist()])
    assert parse_request(cfg, "hf")[1].passthrough["transformers_version"] == "4.42.3"


@needs_h3
def test_hf_processor_order():
    """_get_logits_processor: repetition penalty, no-repeat n-gram, bad words (a bad
    word equal to an EOS id dropped), min new tokens (EOS ids banned), suppress tokens
    (each banned), then temperature, top_k, top_p, min_p, typical, epsilon, eta."""
    cfg = {"do_sample": True, "eos_token_id": 2, "repetition_penalty": 1.2,
           "no_repeat_ngram_size": 3, "bad_words_ids": [[5], [6, 7], [2]],
           "min_new_tokens": 4, "suppress_tokens": [9, 10], "temperature": 0.7,
           "top_k": 20, "top_p": 0.9, "min_p": 0.05, "typical_p": 0.95,
           "epsilon_cutoff": 3e-4, "eta_cutoff": 1e-3, "max_new_tokens": 100}
    assert_chain(cfg, "hf", [
        st.Penalties(1.2, 0.0, 0.0, -1), st.NoRepeatNGram(3), st.BadWords([[5], [6, 7]]),
        st.MinTokens(4, [2]), st.BadWords([[9], [10]]), st.Temperature(0.7), st.TopK(20),
        st.TopP(0.9), st.MinP(0.05), st.Typical(0.95), st.Epsilon(3e-4), st.Eta(1e-3),
        st.Dist()])
    assert parse_request(cfg, "hf")[1].max_tokens == 100


@needs_h3
def test_hf_min_new_tokens_needs_eos():
    """No eos_token_id: transformers adds no MinNewTokens processor; the
    eos_token_id argument stands in for a config without one."""
    assert_chain({"min_new_tokens": 4}, "hf", [st.Greedy()])
    assert_chain({"min_new_tokens": 4}, "hf", [st.MinTokens(4, [3]), st.Greedy()],
                 eos_token_id=3)


@pytest.mark.parametrize("field", [
    {"epsilon_cutoff": 1.5}, {"eta_cutoff": 0.0}, {"top_k": 0}, {"min_p": 0.0},
    {"typical_p": 1.0}, {"temperature": 1.0}, {"top_p": 1.0}, {"no_repeat_ngram_size": 0},
    {"min_length": 5}])
def test_hf_no_op_rules(field):
    """Epsilon/eta only for 0 < v < 1, top_k only != 0, typical_p/top_p only < 1,
    temperature only != 1; min_length only with an EOS id."""
    assert_chain({"do_sample": True, "top_k": 0, **field}, "hf", [st.Dist()])


def test_hf_unknown_unsupported_and_bad_values():
    raises_listing({"num_beams": 4, "guidance_scale": 1.5, "sequence_bias": {"1": 1.0},
                    "penalty_alpha": 0.6, "top_k": 4, "shiny": True}, "hf",
                   "num_beams", "guidance_scale", "sequence_bias", "penalty_alpha", "shiny")
    for field in ({"do_sample": True, "temperature": 0.0}, {"top_k": -1},
                  {"repetition_penalty": 0.0}, {"top_p": 1.2}, {"typical_p": 0.0},
                  {"bad_words_ids": [[1, -2]]}, {"bad_words_ids": []},
                  {"do_sample": "yes"}):
        with pytest.raises(ValueError):
            parse_request(field, "hf", strict=False)


_HF_CLASS_TO_STAGE = {
    "RepetitionPenaltyLogitsProcessor": "Penalties", "NoRepeatNGramLogitsProcessor":
    "NoRepeatNGram", "NoBadWordsLogitsProcessor": "BadWords",
    "MinNewTokensLengthLogitsProcessor": "MinTokens", "SuppressTokensLogitsProcessor":
    "BadWords", "TemperatureLogitsWarper": "Temperature", "TopKLogitsWarper": "TopK",
    "TopPLogitsWarper": "TopP", "MinPLogitsWarper": "MinP", "TypicalLogitsWarper": "Typical",
    "EpsilonLogitsWarper": "Epsilon", "EtaLogitsWarper": "Eta"}

_HF_SAMPLING = {"do_sample": True, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2,
                "temperature": 0.7, "top_k": 60, "top_p": 0.95, "min_p": 0.02,
                "typical_p": 0.98, "epsilon_cutoff": 3e-4, "eta_cutoff": 1e-3}


@pytest.mark.parametrize("cfg", [
    _HF_SAMPLING,
    pytest.param({**_HF_SAMPLING, "eos_token_id": 2, "bad_words_ids": [[5], [6, 7], [2]],
                  "min_new_tokens": 40, "suppress_tokens": [9, 10]}, marks=needs_h3),
    {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "temperature": 0.7}])
def test_hf_matches_the_installed_transformers(cfg):
    """Cross-check with transformers itself: the processors its
    _get_logits_processor builds for the same config map one to one, in order, onto
    the chain's stages, and applying them gives the chain's processed logits (same
    tokens masked, finite values within 1e-5)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import types

    from transformers import GenerationConfig
    from transformers.generation.utils import GenerationMixin

    gc = GenerationConfig(**cfg)
    for key, value in GenerationConfig._get_default_generation_params().items():
        if getattr(gc, key, None) is None:    # what generate() fills in
            setattr(gc, key, value)
    eos = cfg.get("eos_token_id")
    gc._eos_token_tensor = None if eos is None else torch.tensor([eos])
    prompt = 5
    model = types.SimpleNamespace(config=types.SimpleNamespace(is_encoder_decoder=False),
                                  _merge_criteria_processor_list=lambda a, b: a)
    procs = GenerationMixin._get_logits_processor(
        model, generation_config=gc, input_ids_seq_length=prompt, encoder_input_ids=None,
        prefix_allowed_tokens_fn=None, logits_processor=None, device="cpu", model_kwargs={})
    chain = fs.SamplerChain.from_request(cfg, "hf", backend="numpy", seed=0)
    assert [_HF_CLASS_TO_STAGE[type(p).__name__] for p in procs] == \
        [type(s).__name__ for s in chain.stages[:-1]]
    rng = np.random.default_rng(3)
    for row in range(4):
        x = wl.llm_like(1, V, seed=10 + row)[0]
        hist = rng.integers(0, 40, size=prompt + 3 * row).astype(np.int64)
        hist[-1] = 6                        # so that bad word [6, 7] bans 7
        scores = torch.from_numpy(x[None].copy())
        ids = torch.from_numpy(hist[None])
        for p in procs:
            scores = p(ids, scores)
        want = scores.numpy()[0]
        got = chain.process(x, history=hist, position=len(hist) - prompt)
        if not cfg.get("do_sample"):        # Greedy: only transformers' argmax is left
            assert np.flatnonzero(np.isfinite(got)).tolist() == [int(np.argmax(want))]
            continue
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        np.testing.assert_allclose(got[np.isfinite(got)], want[np.isfinite(want)],
                                   rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- webui

WEBUI_ORDER = ["repetition_penalty", "presence_penalty", "frequency_penalty", "dry",
               "top_n_sigma", "temperature", "dynamic_temperature", "quadratic_sampling",
               "top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "tfs", "top_a",
               "min_p", "mirostat", "xtc", "encoder_repetition_penalty", "no_repeat_ngram"]


def test_webui_defaults():
    """default_preset: every sampler neutral (temperature 1, top_p 1, top_k 0,
    min_p 0, repetition_penalty 1, tfs 1, top_a 0, ...), do_sample true."""
    assert_chain({}, "webui", [st.Dist()])
    from fastsample.request_styles.webui import DEFAULT_PRIORITY
    assert list(DEFAULT_PRIORITY) == WEBUI_ORDER


def test_webui_default_priority():
    """Sorted by the default sampler_priority; the three penalties are separate
    processors over the last repetition_penalty_range (1024) tokens."""
    req = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.15,
           "presence_penalty": 0.1, "frequency_penalty": 0.2, "min_p": 0.05,
           "no_repeat_ngram_size": 3, "xtc_probability": 0.5, "xtc_threshold": 0.2,
           "tfs": 0.95, "top_a": 0.2, "typical_p": 0.9, "epsilon_cutoff": 3e-4,
           "eta_cutoff": 2e-3, "top_n_sigma": 1.0, "smoothing_factor": 0.3,
           "smoothing_curve": 1.5, "dynamic_temperature": True, "dynatemp_low": 0.5,
           "dynatemp_high": 1.5, "dynatemp_exponent": 2.0, "dry_multiplier": 0.8}
    assert_chain(req, "webui", [
        st.Penalties(1.15, 0.0, 0.0, 1024), st.Penalties(1.0, 0.0, 0.1, 1024),
        st.Penalties(1.0, 0.2, 0.0, 1024), st.DRY(0.8, 1.75, 2, 1024, breakers=BREAKERS),
        st.TopNSigma(1.0), st.Temperature(0.7), st.DynamicTemperature(1.0, 0.5, 2.0),
        st.Smoothing(0.3, 1.5), st.TopK(20), st.TopP(0.9), st.Typical(0.9),
        st.Epsilon(3e-4), st.Eta(2e-3), st.TailFree(0.95), st.TopA(0.2), st.MinP(0.05),
        st.XTC(0.5, 0.2), st.NoRepeatNGram(3), st.Dist()], token_texts=TEXTS)


def test_webui_temperature_last_and_custom_priority():
    """temperature_last moves temperature, dynamic_temperature, quadratic_sampling to
    the end; a sampler not in sampler_priority (a string, newline-separated) runs
    first, in the order webui builds them."""
    req = {"temperature": 0.7, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1}
    assert_chain({**req, "temperature_last": True}, "webui", [
        st.Penalties(1.1, 0.0, 0.0, 1024), st.TopK(20), st.MinP(0.05),
        st.Temperature(0.7), st.Dist()])
    assert_chain({**req, "sampler_priority": "min_p\ntemperature"}, "webui", [
        st.TopK(20), st.Penalties(1.1, 0.0, 0.0, 1024), st.MinP(0.05), st.Temperature(0.7),
        st.Dist()])
    assert built({**req, "sampler_priority": ["min_p", "temperature"]}, "webui") == \
        built({**req, "sampler_priority": "min_p, temperature"}, "webui")


def test_webui_mirostat_greedy_and_range():
    """mirostat_mode 2 draws (MirostatV2) where it sorts; it leaves one token, so
    what sorts after it is left out. do_sample false drops the transformers warpers
    (temperature, top_k, ...) but not webui's own (penalties, xtc, ...), then greedy.
    repetition_penalty_range 0 is the whole history."""
    req = {"temperature": 0.7, "top_k": 20, "xtc_probability": 0.5, "mirostat_mode": 2,
           "mirostat_tau": 4.0, "mirostat_eta": 0.2}
    assert_chain(req, "webui", [st.Temperature(0.7), st.TopK(20), st.MirostatV2(4.0, 0.2)])
    assert_chain({"do_sample": False, "temperature": 0.7, "top_k": 20, "xtc_probability": 0.5,
                  "repetition_penalty": 1.2, "repetition_penalty_range": 0}, "webui",
                 [st.Penalties(1.2, 0.0, 0.0, -1), st.XTC(0.5, 0.1), st.Greedy()])


@needs_h3
def test_webui_custom_token_bans():
    """custom_token_bans become transformers' suppress_tokens: not in any priority
    list, so first (after an unlisted no-repeat n-gram ban, which transformers builds
    before it)."""
    assert_chain({"custom_token_bans": "5, 9", "top_k": 3}, "webui",
                 [st.BadWords([[5], [9]]), st.TopK(3), st.Dist()])
    assert_chain({"custom_token_bans": [5], "no_repeat_ngram_size": 2,
                  "sampler_priority": ["top_k"], "top_k": 3}, "webui",
                 [st.NoRepeatNGram(2), st.BadWords([[5]]), st.TopK(3), st.Dist()])


def test_webui_unknown_and_unsupported():
    _, r = parse_request({"seed": -1}, "webui", seed=8)
    assert (r.seed, r.seed_source) == (8, "argument")
    raises_listing({"sampler_priority": ["top_k", "magic"], "guidance_scale": 1.5,
                    "mirostat_mode": 1, "wibble": 0}, "webui",
                   "'magic'", "guidance_scale", "mirostat_mode", "wibble")


# -------------------------------------------------------------------------------- vllm


def test_vllm_defaults():
    """SamplingParams(): temperature 1, top_p 1, top_k off, min_p 0, penalties
    0/0/1: a plain draw; max_tokens 16, n 1, logprobs None, seed None (random)."""
    assert_chain({}, "vllm", [st.Dist()])
    _, r = parse_request({}, "vllm")
    assert (r.max_tokens, r.n, r.logprobs, r.seed_source) == (16, 1, None, "random")
    assert parse_request({"max_tokens": None}, "vllm")[1].max_tokens is None


def test_vllm_order_without_constraints():
    """logit bias, penalties (repetition, frequency, presence in one stage over the
    history), temperature, min_p, top_k, top_p, draw."""
    req = {"logit_bias": {"3": 2.0}, "repetition_penalty": 1.1, "frequency_penalty": 0.2,
           "presence_penalty": 0.3, "temperature": 0.8, "min_p": 0.05, "top_k": 40,
           "top_p": 0.95, "seed": 11, "logprobs": True, "n": 3, "max_tokens": 50}
    assert_chain(req, "vllm", [st.LogitBias({3: 2.0}), st.Penalties(1.1, 0.2, 0.3, -1),
                               st.Temperature(0.8), st.MinP(0.05), st.TopK(40),
                               st.TopP(0.95), st.Dist()])
    _, r = parse_request(req, "vllm")
    assert (r.seed, r.logprobs, r.n, r.max_tokens) == (11, 1, 3, 50)


@needs_h3
def test_vllm_order_with_constraints():
    """allowed token ids, bad words, min tokens (stop_token_ids + EOS unless
    ignore_eos), logit bias, penalties, ...; temperature 0 is greedy on the penalised
    logits (top_k/top_p/min_p reset)."""
    req = {"allowed_token_ids": [1, 2, 3, 4, 5], "bad_words": [[4], [2, 3]],
           "min_tokens": 2, "stop_token_ids": [5], "logit_bias": {"1": 1.0},
           "presence_penalty": 0.5, "temperature": 0.0, "top_k": 3, "min_p": 0.5}
    assert_chain(req, "vllm", [st.AllowedTokens([1, 2, 3, 4, 5]), st.BadWords([[4], [2, 3]]),
                               st.MinTokens(2, [0, 5]), st.LogitBias({1: 1.0}),
                               st.Penalties(1.0, 0.0, 0.5, -1), st.Greedy()], eos_token_id=0)
    assert_chain({**req, "ignore_eos": True}, "vllm",
                 [st.AllowedTokens([1, 2, 3, 4, 5]), st.BadWords([[4], [2, 3]]),
                  st.MinTokens(2, [5]), st.LogitBias({1: 1.0}),
                  st.Penalties(1.0, 0.0, 0.5, -1), st.Greedy()], eos_token_id=0)


@pytest.mark.parametrize("fields, expected", [
    ({"top_k": -1}, [st.Dist()]), ({"top_k": 0}, [st.Dist()]),
    ({"temperature": 0.001}, [st.Temperature(0.01), st.Dist()]),
    ({"temperature": 0}, [st.Greedy()]), ({"min_tokens": 0}, [st.Dist()])])
def test_vllm_no_op_rules(fields, expected):
    """top_k -1 or 0 is off; 0 < temperature < 0.01 is raised to 0.01 (__post_init__);
    temperature 0 is greedy."""
    assert_chain(fields, "vllm", expected)


def test_vllm_unknown_unsupported_and_bad_values():
    raises_listing({"guided_decoding": {"json": {}}, "min_tokens": 3, "topk": 1},
                   "vllm", "guided_decoding", "min_tokens", "topk")
    for field in ({"bad_words": ["hello"]}, {"bad_words": [1, 2]}, {"top_p": 0.0},
                  {"repetition_penalty": 2.5}, {"temperature": -1}, {"top_k": -2},
                  {"min_tokens": 20, "max_tokens": 10}, {"allowed_token_ids": []},
                  {"allowed_token_ids": ["a"]}, {"seed": 1.5}):
        with pytest.raises(ValueError):
            parse_request(field, "vllm", strict=False)


# ------------------------------------------------------------------------------ common


def test_unknown_style_and_bad_params():
    with pytest.raises(ValueError, match="styles"):
        parse_request({}, "anthropic")
    with pytest.raises(TypeError, match="mapping"):
        parse_request([("temperature", 1)], "openai")
    with pytest.raises(ValueError, match="seed"):
        fs.SamplerChain.from_request({}, "openai", seed=-1)


def test_null_reads_as_the_default():
    assert built({"temperature": None, "top_k": None}, "llama.cpp") == built({}, "llama.cpp")


def test_chain_carries_the_request():
    chain = fs.SamplerChain.from_request({"seed": 5, "n_probs": 2, "temperature": 0.5},
                                         style="llama.cpp", backend="numpy")
    assert isinstance(chain.request, Request)
    assert (chain.request.seed, chain.request.logprobs) == (5, 2)
    assert fs.SamplerChain([st.Dist()]).request is None
    with pytest.raises(AttributeError):
        chain.request.seed = 3      # frozen
    lenient = None
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        lenient = fs.SamplerChain.from_request({"bogus": 1}, "openai", strict=False, seed=3)
    assert [type(w.message) for w in record] == [RequestWarning]
    assert lenient.request.seed == 3


# ------------------------------------------------------------ sampling equals by hand

CASES = {
    "llama.cpp": ({"seed": 42, "repeat_penalty": 1.3, "frequency_penalty": 0.5,
                   "dry_multiplier": 0.8, "dry_allowed_length": 1, "xtc_probability": 0.7,
                   "xtc_threshold": 0.05, "top_k": 50, "logit_bias": [[3, 2.0]]},
                  [st.LogitBias({3: 2.0}), st.Penalties(1.3, 0.5, 0.0, 64),
                   st.DRY(0.8, 1.75, 1, 64, breakers=BREAKERS), st.TopK(50),
                   st.TopP(0.95), st.MinP(0.05), st.XTC(0.7, 0.05), st.Temperature(0.8)]),
    "openai": ({"seed": 42, "temperature": 0.7, "top_p": 0.9, "presence_penalty": 1.5,
                "logit_bias": {"4": 5}},
               [st.LogitBias({4: 5.0}), st.Penalties(1.0, 0.0, 1.5, -1), st.Temperature(0.7),
                st.TopP(0.9)]),
    "hf": ({"do_sample": True, "temperature": 0.6, "top_p": 0.9, "typical_p": 0.95,
            "repetition_penalty": 1.2, "no_repeat_ngram_size": 2},
           [st.Penalties(1.2, 0.0, 0.0, -1), st.NoRepeatNGram(2), st.Temperature(0.6),
            st.TopK(50), st.TopP(0.9), st.Typical(0.95)]),
    "webui": ({"seed": 42, "temperature": 0.9, "top_a": 0.1, "tfs": 0.9, "min_p": 0.02,
               "repetition_penalty": 1.1, "temperature_last": True},
              [st.Penalties(1.1, 0.0, 0.0, 1024), st.TailFree(0.9), st.TopA(0.1),
               st.MinP(0.02), st.Temperature(0.9)]),
    "vllm": ({"seed": 42, "temperature": 0.8, "min_p": 0.05, "top_k": 30,
              "repetition_penalty": 1.2, "frequency_penalty": 0.3},
             [st.Penalties(1.2, 0.3, 0.0, -1), st.Temperature(0.8), st.MinP(0.05),
              st.TopK(30)]),
}


def _engine_loop(chain, logits):
    """A few tokens per row, each accepted, from a short history."""
    chain.accept(np.array([1, 2, 3], np.int32))
    chain.accept(np.array([3, 2, 1], np.int32))
    out = []
    for x in logits:
        t = chain.sample(x)
        chain.accept(t)
        out.append(t)
    return np.array(out)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("style", sorted(CASES))
def test_sampling_equals_the_hand_built_chain(style, backend):
    params, stages = CASES[style]
    logits = wl.llm_like(3 * 6, V, seed=5).reshape(6, 3, V)
    got = fs.SamplerChain.from_request(params, style, backend=backend, token_texts=TEXTS,
                                       seed=42)
    want = fs.SamplerChain(stages, seed=42, backend=backend)
    a, b = _engine_loop(got, logits), _engine_loop(want, logits)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) > 1     # not a degenerate chain


@needs_h3
def test_sampling_equals_with_constraints():
    params = {"seed": 7, "allowed_token_ids": list(range(0, V, 3)), "bad_words": [[6], [1, 9]],
              "min_tokens": 3, "stop_token_ids": [12], "temperature": 0.9}
    stages = [st.AllowedTokens(list(range(0, V, 3))), st.BadWords([[6], [1, 9]]),
              st.MinTokens(3, [12]), st.Temperature(0.9)]
    logits = wl.llm_like(3 * 6, V, seed=6).reshape(6, 3, V)
    got = fs.SamplerChain.from_request(params, "vllm", backend="numpy")
    want = fs.SamplerChain(stages, seed=7, backend="numpy")
    a, b = _engine_loop(got, logits), _engine_loop(want, logits)
    np.testing.assert_array_equal(a, b)
    assert (a % 3 == 0).all()


# ---------------------------------------------------------------- fs.sample keywords


@pytest.mark.parametrize("params, style, expected", [
    ({"seed": 3}, "llama.cpp", dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                                    min_keep=1, temperature_last=True, seed=3)),
    ({"samplers": "tpm", "min_keep": 2, "top_p": 0.9}, "llama.cpp",
     dict(temperature=0.8, top_k=0, top_p=0.9, min_p=0.05, min_keep=2,
          temperature_last=False, seed=0)),
    ({"do_sample": True, "temperature": 0.6, "top_p": 0.9}, "hf",
     dict(temperature=0.6, top_k=50, top_p=0.9, min_p=0.0, min_keep=1,
          temperature_last=False, seed=0)),
    ({"temperature": 0.5}, "openai", dict(temperature=0.5, top_k=0, top_p=1.0, min_p=0.0,
                                          min_keep=1, temperature_last=True, seed=0)),
    ({"top_k": 5}, "hf", dict(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, min_keep=1,
                              temperature_last=True, seed=0)),
])
def test_sample_kwargs(params, style, expected):
    """A chain of top_k/top_p/min_p with temperature first or last is fs.sample's;
    the draw is the chain's."""
    kw = sample_kwargs(params, style, seed=0)
    assert kw == expected
    logits = wl.llm_like(4, V, seed=8)
    chain = fs.SamplerChain.from_request(params, style, seed=0, backend="numpy")
    np.testing.assert_array_equal(fs.sample(logits, backend="numpy", **kw),
                                  chain.sample(logits))


@pytest.mark.parametrize("params, style, needle", [
    ({"presence_penalty": 0.5}, "openai", "Penalties"),
    ({"samplers": "pk"}, "llama.cpp", "order"),
    ({"samplers": "ktp"}, "llama.cpp", "order"),
    ({"mirostat": 2}, "llama.cpp", "MirostatV2"),
    ({"min_keep": 3}, "llama.cpp", "min_keep")])
def test_sample_kwargs_refuses_other_chains(params, style, needle):
    with pytest.raises(ValueError, match=needle):
        sample_kwargs(params, style, seed=0)


# --------------------------------------------------------------------------------- cli


def test_cli_sample_with_a_request(tmp_path, capsys):
    logits = wl.llm_like(4, V, seed=2)
    np.save(tmp_path / "logits.npy", logits)
    req = {"temperature": 0.7, "top_p": 0.8, "seed": 123, "logit_bias": {"9": 3},
           "model": "m"}
    (tmp_path / "req.json").write_text(json.dumps(req))
    code = main(["sample", str(tmp_path / "logits.npy"), "--request",
                 str(tmp_path / "req.json"), "--style", "openai", "--backend", "numpy",
                 "--position", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    chain = fs.SamplerChain.from_request(req, "openai", backend="numpy")
    assert json.loads(out) == chain.sample(logits, position=3).tolist()


def test_cli_request_errors(tmp_path, capsys):
    np.save(tmp_path / "logits.npy", wl.llm_like(2, V, seed=2))
    (tmp_path / "req.json").write_text(json.dumps({"temperature": 0.7, "wat": 1}))
    argv = ["sample", str(tmp_path / "logits.npy"), "--request", str(tmp_path / "req.json")]
    for extra, needle in ((["--style", "openai"], "wat"), ([], "--style"),
                          (["--style", "openai", "--top-k", "5"], "--top-k")):
        code = main(argv + extra)
        _, err = capsys.readouterr()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
    code = main(argv + ["--style", "openai", "--no-strict", "--backend", "numpy"])
    out, err = capsys.readouterr()
    assert code == 0 and "wat" in err
    assert len(json.loads(out)) == 2
