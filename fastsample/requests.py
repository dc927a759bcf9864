"""Requests in other formats: the chain a peer would run for its sampling parameters.

An engine receives sampling parameters in the formats its clients already speak.
``from_request`` (and ``SamplerChain.from_request``) reads one of them and builds
the chain that peer runs: the same stages, in the same order, with the same defaults
and the same rules for when a stage is off. A stage the peer would run as a no-op is
left out, so a default llama.cpp request is ``TopK(40) -> TopP(0.95) -> MinP(0.05) ->
Temperature(0.8) -> Dist`` and runs as ``fs.sample``'s fused kernel.

Styles (one module each in ``fastsample/request_styles/``; the sources each was read
from are named there and in ``tests/test_requests.py``):

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
``strict=False`` makes it a ``RequestWarning`` and leaves those features out.
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

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import stages as _st
from .request_styles import BUILDERS as _BUILDERS
from .request_styles._common import Reader, RequestWarning

__all__ = ["STYLES", "Request", "RequestWarning", "from_request", "parse_request",
           "sample_kwargs"]

STYLES = ("llama.cpp", "openai", "hf", "webui", "vllm")


@dataclass(frozen=True)
class Request:
    """What a request asked of the call, beyond the chain's stages.

    A chain built by ``SamplerChain.from_request`` carries one as ``chain.request``,
    so the caller can pass it on (``chain.sample(logits, logprobs=r.logprobs,
    logprobs_mode=r.logprobs_mode)``, spec §9).

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


def _check_seed_argument(seed):
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) \
            or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64) or None; got {seed!r}")
    return int(seed)


def parse_request(params, style, *, strict=True, seed=None, token_texts=None,
                  eos_token_id=None):
    """The stages and the ``Request`` of a request, without building the chain.

    Parameters are those of ``from_request``.

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
    reader = Reader(params, style)
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
        ``ValueError`` listing every one. False: a ``RequestWarning`` listing
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
        With ``chain.request``, a ``Request``: the seed used, the logprobs
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


_FS_SAMPLE = {_st.TopK: "top_k", _st.TopP: "top_p", _st.MinP: "min_p"}


def sample_kwargs(params, style, *, strict=True, seed=None):
    """The ``fs.sample`` keywords of a request whose chain ``fs.sample`` can run.

    ``fs.sample`` is one chain: top_k, top_p, min_p (in that order, one ``min_keep``)
    with temperature last or first, then the draw; a greedy request is
    ``temperature=0``. ``fs.sample(logits, **sample_kwargs(req, "llama.cpp"))`` then
    draws what ``SamplerChain.from_request(req, "llama.cpp").sample(logits)`` would.

    Parameters are those of ``from_request``.

    Returns
    -------
    dict
        ``temperature, top_k, top_p, min_p, min_keep, temperature_last, seed``.

    Raises
    ------
    ValueError
        The request's chain has a stage ``fs.sample`` has not (the message names
        them; use ``SamplerChain.from_request``), or as ``from_request``.
    """
    stages, request = parse_request(params, style, strict=strict, seed=seed)
    body, terminal = stages[:-1], stages[-1]
    other = [s.name for s in body if type(s) not in (*_FS_SAMPLE, _st.Temperature)]
    if type(terminal) not in (_st.Dist, _st.Greedy):
        other.append(terminal.name)
    kinds = [type(s) for s in body]
    truncs = [s for s in body if type(s) in _FS_SAMPLE]
    temps = [i for i, k in enumerate(kinds) if k is _st.Temperature]
    keeps = {int(s.min_keep) for s in truncs}
    in_order = (len(set(kinds)) == len(kinds)
                and [type(s) for s in truncs] == sorted((type(s) for s in truncs),
                                                        key=list(_FS_SAMPLE).index)
                and all(i in (0, len(body) - 1) for i in temps))
    why = (f"it has {', '.join(other)}" if other else
           "its stages are in another order" if not in_order else
           "its truncations have different min_keep" if len(keeps) > 1 else None)
    if why is not None:
        raise ValueError(f"this {style} request's chain ({', '.join(s.name for s in stages)}) "
                         f"does not fit fs.sample: {why}; use SamplerChain.from_request")
    kw = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
          "min_keep": keeps.pop() if keeps else 1,
          "temperature_last": not (temps == [0] and len(body) > 1), "seed": request.seed}
    for s in truncs:
        kw[_FS_SAMPLE[type(s)]] = getattr(s, "k" if type(s) is _st.TopK else "p")
    if temps:
        kw["temperature"] = body[temps[0]].t
    if type(terminal) is _st.Greedy:
        kw["temperature"] = 0.0
    return kw
