"""llguidance: grammar-constrained sampling (JSON schema, regex, Lark) with fastsample.

One step of structured generation, for each row with a grammar:

1. the row's llguidance matcher fills the row's packed int32 bitmask (bit ``v % 32``
   of word ``v // 32`` is token ``v``, docs/spec.md §10) straight into a numpy array;
2. fastsample draws with it: ``fs.sample(logits, bitmask=M, bitmask_rows=rows)`` or
   ``SamplerChain.sample(..., bitmask=M, bitmask_rows=rows)``. The fused kernels read
   the bitmask in their first pass over the logits: no unpacked boolean array, no
   masked copy of the logits;
3. the matcher consumes the drawn token, and the row stops when the matcher does.

The building blocks are ``tokenizer``, ``matcher``, ``allocate_bitmask``,
``fill_bitmask`` and ``consume``; ``generate`` is the whole loop for a
batch of rows. Usage::

    import fastsample as fs
    from fastsample.integrations import llguidance as fsg

    tok = fsg.tokenizer(hf_tokenizer, vocab_size=V)        # once per tokenizer
    m = fsg.matcher(tok, json_schema={"type": "object", ...})
    out = fsg.generate(model, m, sampler={"temperature": 0.7, "top_p": 0.9}, seed=1)
    text = tok.decode_bytes(out.tokens)

In an engine's own loop (rows without a grammar get ``bitmask_rows`` -1)::

    bitmask = fsg.allocate_bitmask(B, V)
    rows = fsg.fill_bitmask(matchers, bitmask)
    tokens = fs.sample(logits, bitmask=bitmask, bitmask_rows=rows, seed=seeds,
                       position=positions)
    stopped = fsg.consume(matchers, tokens)

Needs llguidance (``pip install 'fastsample[grammar]'``); numpy only otherwise. The
decisions (no fast-forward tokens, what the positions count) are in
``docs/integrations/structured-output.md``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

try:
    import llguidance as _llg
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastsample.integrations.llguidance needs llguidance "
        f"(pip install 'fastsample[grammar]'): {exc}"
    ) from None

from ..api import sample as _sample
from ..chain import SamplerChain
from ..stages import Stage
from ._common import as_chain

__all__ = [
    "Generated", "allocate_bitmask", "consume", "fill_bitmask", "generate", "matcher",
    "tokenizer",
]


def tokenizer(tok, *, eos_token=None, vocab_size=None):
    """An ``llguidance.LLTokenizer`` for a Hugging Face tokenizer.

    Parameters
    ----------
    tok : tokenizers.Tokenizer, transformers fast tokenizer, or str
        A ``tokenizers.Tokenizer``, a ``PreTrainedTokenizerFast`` (its Rust backend is
        used), or the JSON text of a ``tokenizer.json``.
    eos_token : int or list of int, optional
        The end-of-sequence token(s). Default: the transformers tokenizer's
        ``eos_token_id``; required for the other two kinds.
    vocab_size : int, optional
        The model's vocabulary size V (the width of its logits), when it is larger than
        the tokenizer's (padded embeddings). The bitmask then has ``ceil(V / 32)``
        words and the tokens past the tokenizer's are never allowed.

    Returns
    -------
    llguidance.LLTokenizer
        Building one walks the whole vocabulary (milliseconds to a second): build it
        once per tokenizer and share it between matchers.
    """
    backend = getattr(tok, "backend_tokenizer", None)  # transformers' fast tokenizers
    if eos_token is None:
        eos_token = getattr(tok, "eos_token_id", None)
    if backend is not None:
        tok = backend
    if eos_token is None:
        raise ValueError("eos_token is required (the tokenizer does not name one)")
    if isinstance(tok, str):
        text = tok
    elif hasattr(tok, "to_str"):
        text = tok.to_str()
    else:
        raise TypeError(
            "tok must be a tokenizers.Tokenizer, a transformers fast tokenizer or the "
            f"JSON text of a tokenizer.json; got {type(tok).__name__}")
    if vocab_size is not None and (not isinstance(vocab_size, numbers.Integral)
                                   or vocab_size < 1):
        raise ValueError(f"vocab_size must be a positive int; got {vocab_size!r}")
    return _llg.LLTokenizer(text, n_vocab=vocab_size, eos_token=eos_token)


def matcher(tok, *, json_schema=None, regex=None, lark=None, json_options=None):
    """An ``llguidance.LLMatcher`` for one grammar; give exactly one of the three.

    Parameters
    ----------
    tok : llguidance.LLTokenizer
        From ``tokenizer``.
    json_schema : dict or str, optional
        A JSON schema; the output is one JSON value that validates against it.
    regex : str, optional
    lark : str, optional
        A Lark grammar (llguidance's dialect).
    json_options : dict, optional
        llguidance's JSON compile options, e.g. ``{"whitespace_flexible": False}``
        for JSON without whitespace (separators ``","`` and ``":"``, which
        ``item_separator`` and ``key_separator`` change).

    Returns
    -------
    llguidance.LLMatcher
        One per generated sequence; ``reset()`` makes it reusable.

    Raises
    ------
    ValueError
        Not exactly one grammar given, or the grammar does not compile (llguidance's
        message is included).
    """
    given = [g is not None for g in (json_schema, regex, lark)]
    if sum(given) != 1:
        raise ValueError("give exactly one of json_schema, regex and lark")
    if json_options is not None and json_schema is None:
        raise ValueError("json_options applies to json_schema only")
    if json_schema is not None:
        grammar = _llg.LLMatcher.grammar_from_json_schema(json_schema, overrides=json_options)
    elif regex is not None:
        grammar = _llg.LLMatcher.grammar_from_regex(regex)
    else:
        grammar = _llg.LLMatcher.grammar_from_lark(lark)
    m = _llg.LLMatcher(tok, grammar, log_level=0)
    if m.is_error():
        raise ValueError(f"the grammar does not compile: {m.get_error()}")
    return m


def allocate_bitmask(n, vocab_size):
    """An int32 bitmask ``(n, ceil(vocab_size / 32))``, every token allowed."""
    return np.full((n, (vocab_size + 31) // 32), -1, dtype=np.int32)


def fill_bitmask(matchers, bitmask, executor=None):
    """Fill row ``b`` of ``bitmask`` with the tokens ``matchers[b]`` allows next.

    Parameters
    ----------
    matchers : sequence of llguidance.LLMatcher or None
        None, or a stopped matcher, leaves its row alone and gets -1 in ``rows``.
    bitmask : numpy.ndarray of int32, shape (R, W), C-contiguous
        ``R >= len(matchers)``; ``W = ceil(V / 32)`` must be the width of the
        matchers' tokenizer (build it with ``tokenizer(..., vocab_size=V)``).
    executor : llguidance.LLExecutor, optional
        Fill the rows in parallel on its threads (llguidance releases the GIL).

    Returns
    -------
    numpy.ndarray of int32, shape (len(matchers),)
        ``bitmask_rows`` for fastsample: b for a row with a live grammar, -1 for an
        unconstrained one.
    """
    if not isinstance(bitmask, np.ndarray) or bitmask.dtype != np.int32 or bitmask.ndim != 2:
        raise TypeError("bitmask must be a 2-D int32 numpy array (allocate_bitmask)")
    if not bitmask.flags.c_contiguous:
        raise ValueError("bitmask must be C-contiguous (llguidance writes whole rows)")
    if len(matchers) > bitmask.shape[0]:
        raise ValueError(
            f"bitmask has {bitmask.shape[0]} rows for {len(matchers)} matchers")
    rows = np.full(len(matchers), -1, dtype=np.int32)
    live = [(m, b) for b, m in enumerate(matchers) if m is not None and not m.is_stopped()]
    nbytes = bitmask.shape[1] * 4
    try:
        if executor is not None and len(live) > 1:
            executor.unsafe_compute_mask_ptr(live, bitmask.ctypes.data, nbytes,
                                             bitmask.shape[0])
        else:
            for m, b in live:
                m.unsafe_compute_mask_ptr(bitmask[b].ctypes.data, nbytes)
    except ValueError as exc:  # llguidance: "Invalid buffer size"
        raise ValueError(
            f"bitmask rows of {bitmask.shape[1]} words do not fit the matchers' "
            f"tokenizer (build it with tokenizer(..., vocab_size=V)): {exc}") from None
    for m, b in live:
        rows[b] = b
    return rows


def consume(matchers, tokens):
    """Advance each live matcher by its row's token; True where the row is done.

    Parameters
    ----------
    matchers : sequence of llguidance.LLMatcher or None
    tokens : sequence of int
        One per matcher; a negative token (a row fastsample flagged invalid) is not
        consumed and ends the row.

    Returns
    -------
    numpy.ndarray of bool, shape (len(matchers),)
        True for a row with no matcher, a stopped matcher or a negative token.

    Raises
    ------
    RuntimeError
        A matcher refused its token: the token was not drawn with this matcher's
        bitmask (llguidance's message is included).
    """
    done = np.ones(len(matchers), dtype=bool)
    for b, m in enumerate(matchers):
        if m is None or m.is_stopped():
            continue
        t = int(tokens[b])
        if t < 0:
            continue
        if not m.consume_token(t):
            raise RuntimeError(f"row {b}: the grammar refused token {t}: {m.get_error()}")
        done[b] = m.is_stopped()
    return done


@dataclass
class Generated:
    """One row of ``generate``.

    Attributes
    ----------
    tokens : list of int
        The tokens drawn, the end-of-sequence token included when the grammar ended
        with it.
    stop_reason : str
        llguidance's ``stop_reason()`` ("EndOfSentence": EOS drawn; "NoExtension":
        the grammar admits no further token), "max_tokens", or "invalid" (the row was
        flagged invalid under ``on_invalid="flag"``).
    """

    tokens: list = field(default_factory=list)
    stop_reason: str = ""


def generate(model, matchers, *, sampler=None, seed=0, max_tokens=256, backend="auto",
             on_invalid="raise"):
    """Generate under grammars until every matcher stops or ``max_tokens``.

    Parameters
    ----------
    model : callable
        ``model(rows, sequences)``: ``rows`` the indices of the rows still running,
        ``sequences`` their tokens so far (lists of int; a prompt is the model's own
        business); returns their next-token logits, array_like ``(len(rows), V)``.
    matchers : llguidance.LLMatcher or sequence of them
        One per row (None: an unconstrained row, ended only by ``max_tokens``).
    sampler : None, dict, Stage, list of Stage or SamplerChain
        None or a dict: ``fs.sample`` with these keyword arguments (temperature,
        top_k, top_p, min_p, ...; scalars or per-row arrays). Otherwise a chain
        (stages are made into one with ``seed``, ``backend``, ``on_invalid``); it is
        reset first, its history is the generated tokens (``accept`` each step).
    seed : int or array_like of int
        Per-row seeds of the draw; a chain passed in uses its own.
    max_tokens : int
    backend, on_invalid
        As for ``fs.sample``; with ``on_invalid="flag"`` a row whose bitmask leaves
        no finite logit ends with stop_reason "invalid" instead of raising.

    Returns
    -------
    Generated, or a list of Generated for a sequence of matchers.

    Notes
    -----
    The draw of row b at step n is that of ``fs.sample`` with ``position=n``, the
    row's seed and its bitmask, so the tokens are the same on every backend and do
    not depend on the other rows. Rows that have stopped keep a stand-in row of
    zeros (unconstrained) so that the batch size, and a chain's per-row state, stay
    fixed; their draws are discarded and the model is not called for them.
    """
    single = not isinstance(matchers, (list, tuple))
    matchers = [matchers] if single else list(matchers)
    if not isinstance(max_tokens, numbers.Integral) or max_tokens < 0:
        raise ValueError(f"max_tokens must be a non-negative int; got {max_tokens!r}")
    B = len(matchers)
    chain = None
    if isinstance(sampler, (SamplerChain, Stage, list, tuple)):
        chain = as_chain(sampler, seed, backend, on_invalid)
        chain.reset()
    elif sampler is not None and not isinstance(sampler, dict):
        raise TypeError("sampler must be None, a dict of fs.sample arguments, a Stage, "
                        f"a list of Stage or a SamplerChain; got {type(sampler).__name__}")
    kwargs = sampler if isinstance(sampler, dict) else {}
    out = [Generated() for _ in range(B)]
    running = np.array([m is None or not m.is_stopped() for m in matchers], dtype=bool)
    for b in np.flatnonzero(~running):
        out[b].stop_reason = matchers[b].stop_reason()
    executor = _llg.LLExecutor() if B > 1 else None
    x = bitmask = None
    for step in range(max_tokens):
        active = np.flatnonzero(running)
        if active.size == 0:
            break
        logits = np.asarray(model(active, [out[b].tokens for b in active]))
        if logits.ndim != 2 or logits.shape[0] != active.size:
            raise ValueError(f"model returned shape {logits.shape}; expected "
                             f"({active.size}, V) for the {active.size} running rows")
        if x is None:
            x = np.zeros((B, logits.shape[1]), dtype=np.float32)
            bitmask = allocate_bitmask(B, logits.shape[1])
        elif logits.shape[1] != x.shape[1]:
            raise ValueError(f"model returned V={logits.shape[1]}; it was {x.shape[1]}")
        x[active] = logits
        x[~running] = 0.0
        live = [m if running[b] else None for b, m in enumerate(matchers)]
        rows = fill_bitmask(live, bitmask, executor)
        if chain is not None:
            tokens = chain.sample(x, bitmask=bitmask, bitmask_rows=rows)
            chain.accept(np.maximum(tokens, 0))  # a flagged row (-1) has ended: any stand-in
        else:
            tokens = _sample(x, bitmask=bitmask, bitmask_rows=rows, seed=seed,
                             position=step, backend=backend, on_invalid=on_invalid,
                             **kwargs)
        done = consume(live, tokens)
        for b in active:
            if tokens[b] < 0:
                out[b].stop_reason = "invalid"
                running[b] = False
                continue
            out[b].tokens.append(int(tokens[b]))
            if matchers[b] is not None and done[b]:
                out[b].stop_reason = matchers[b].stop_reason()
                running[b] = False
    for b in np.flatnonzero(running):
        out[b].stop_reason = "max_tokens"
    return out[0] if single else out
