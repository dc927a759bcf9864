"""The one-call API: ``sample`` and the array operations, with backend dispatch."""

from __future__ import annotations

import numbers

import numpy as np

from . import arrays as _arrays
from . import bitmask as _bitmask
from . import logprobs as _logprobs
from . import registry as _backends
from .stages import AT_LEAST_MINUS_ONE, AT_LEAST_ONE, FINITE, NON_NEGATIVE, POSITIVE
from .validation import (
    Check, as_logits, as_seeds, as_token_ids, check_on_invalid, is_u64, per_row,
    raise_invalid,
)

__all__ = ["sample", "softmax", "log_softmax", "topk", "dry_penalty", "dry_breakers",
           "apply_token_bitmask"]


@_arrays.host_io("logits")
def sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, min_keep=1,
           seed=0, position=0, temperature_last=True, on_invalid="raise", backend="auto",
           stream=None, logprobs=None, logprobs_mode="raw", bitmask=None, bitmask_rows=None):
    """Draw one token per row with llama.cpp's default chain.

    The order is top_k -> top_p -> min_p -> temperature -> draw; with
    ``temperature_last=False`` it is Hugging Face's temperature -> top_k -> top_p ->
    min_p -> draw. Disabled stages (``top_k <= 0``, ``top_p >= 1``, ``min_p <= 0``,
    ``temperature == 1``) are no-ops.

    Parameters
    ----------
    logits : array_like, shape (V,) or (B, V)
        float16/32/64; computed in float32. ``-inf`` marks a masked token.
    temperature, top_k, top_p, min_p, min_keep : scalar or array_like of shape (B,)
        ``temperature <= 0`` is greedy; ``min_keep`` (>= 1) is the floor of every
        truncation.
    seed, position : int or array_like of int, shape (B,)
        The draw is a pure function of (logits, seed, position): docs/spec.md §5.
    temperature_last : bool
    on_invalid : {"raise", "flag"}
        Rows with NaN/+inf or every logit masked raise ``ValueError``, or give -1.
    backend : {"auto", "numpy", "numba", "c", "cuda"}
    logprobs : int >= 0, optional
        Return ``fs.Sampled`` with the sampled token's logprob and rank and the top
        ``logprobs`` tokens (spec §9); None returns the tokens alone.
    logprobs_mode : {"raw", "processed"}
        Log-softmax of the input logits, or of the logits the draw used.
    bitmask : array_like of int32 or uint32, shape (R, ceil(V/32)), optional
        Packed token bitmask (spec §10; xgrammar/llguidance's format): token v is
        allowed iff bit ``v % 32`` of word ``v // 32`` is set. Disallowed tokens are
        masked before every stage; a row it leaves without a finite logit is invalid.
    bitmask_rows : array_like of int, shape (B,), optional
        The bitmask row of each logits row, -1 = unconstrained; None: row b uses
        bitmask row b (R == B).

    Returns
    -------
    int or numpy.ndarray of int32, shape (B,), or Sampled
        The token of each row (an int for 1-D logits); with ``logprobs``, an
        ``fs.Sampled`` holding the tokens and their log-probabilities.
    """
    if logprobs is not None:  # fastsample/logprobs.py: the tokens of this call without it
        kw = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p,
              "min_keep": min_keep, "seed": seed, "position": position,
              "temperature_last": temperature_last, "on_invalid": on_invalid,
              "backend": backend, "stream": stream, "bitmask": bitmask,
              "bitmask_rows": bitmask_rows}
        return _logprobs.sample(sample, logits, logprobs, logprobs_mode, kw)
    if _backends.is_gpu_array(logits):  # device path: fastsample/gpu.py
        return _gpu().sample(
            logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            min_keep=min_keep, seed=seed, position=position,
            temperature_last=temperature_last, on_invalid=on_invalid, backend=backend,
            stream=stream, bitmask=bitmask, bitmask_rows=bitmask_rows)
    check_on_invalid(on_invalid)
    names = _backends.resolve(backend)
    x, one_d = as_logits(logits)
    B = x.shape[0]
    module = _backends.load(names[0])
    row_fn = getattr(module, "sample_row", None) if B == 1 else None
    masked = {}   # the bitmask arguments of the fused kernels, when there is one
    words = (_bitmask.one_row(bitmask, x.shape[1])
             if B == 1 and bitmask_rows is None and bitmask is not None else None)
    if words is not None and row_fn is not None:   # one row: no (R, W) / rows arrays
        masked = {"bitmask": words}
    elif bitmask is not None:
        bm, bm_rows = _bitmask.as_bitmask(bitmask, B, x.shape[1], bitmask_rows)
        if getattr(module, "sample_canonical", None) is None:
            # stage by stage: the masked row, and a disallowed NaN/+inf still invalid
            bad_input = _backends.row_check(names)(x)
            x = _backends.op_for(names, "apply_token_bitmask", "bitmask")(x, bm, bm_rows)
            x[bad_input] = np.nan
        elif B == 1:
            masked = {"bitmask": _bitmask.row_words(bm, bm_rows, 0)}
        else:
            masked = {"bitmask": bm, "bitmask_rows": bm_rows}
    if row_fn is not None and is_u64(seed) and is_u64(position) \
            and _PLAIN_NUMBER.issuperset((type(temperature), type(top_p), type(min_p))) \
            and type(top_k) is int and type(min_keep) is int:
        # One row, plain scalars: no per-row arrays at all (the per-token latency path).
        k, p, mp, t, mk = _row_params(temperature, top_k, top_p, min_p, min_keep)
        token = row_fn(x[0], k, p, mp, t, mk, bool(temperature_last), seed, position, **masked)
        if token == -2:  # the kernel's invalid-row flag
            if on_invalid == "raise":
                raise_invalid(np.ones(1, np.bool_), "NaN, +inf, or every logit masked")
            token = -1
        return int(token) if one_d else np.array([token], np.int32)
    t, k, p, mp, mk = _params(temperature, top_k, top_p, min_p, min_keep, B)
    seeds = as_seeds("seed", seed, B)
    pos = as_seeds("position", position, B)
    fused = getattr(module, "sample_canonical", None)
    if fused is not None:
        # The fused kernel checks row validity in its first pass (token -2).
        if "bitmask" in masked and "bitmask_rows" not in masked:  # one row, general path
            bm, bm_rows = _bitmask.as_bitmask(bitmask, B, x.shape[1], bitmask_rows)
            masked = {"bitmask": bm, "bitmask_rows": bm_rows}
        tokens = fused(x, k, p, mp, t, mk, bool(temperature_last), seeds, pos, **masked)
        invalid = tokens == -2
    else:
        invalid = _backends.row_check(names)(x)
        if invalid.any():
            if on_invalid == "flag":
                x = x.copy()
                x[invalid] = 0.0  # a harmless stand-in; the token becomes -1 below
        if not invalid.any() or on_invalid == "flag":
            tokens = _sample_stagewise(names, x, k, p, mp, t, mk, temperature_last, seeds, pos)
    if np.count_nonzero(invalid):  # cheaper than .any() on the per-token path
        if on_invalid == "raise":
            raise_invalid(invalid, "NaN, +inf, or every logit masked")
        tokens = np.array(tokens, dtype=np.int32)
        tokens[invalid] = -1
    return int(tokens[0]) if one_d else tokens


def _gpu():
    """The device path (imported on first use: it needs no GPU to import)."""
    from . import gpu

    return gpu


def _params(temperature, top_k, top_p, min_p, min_keep, B):
    """``sample``'s per-row parameters, validated: ``(t, k, p, mp, mk)``, each ``(B,)``."""
    return (per_row("temperature", temperature, B, check=FINITE),
            per_row("top_k", top_k, B, integer=True),
            per_row("top_p", top_p, B, check=NON_NEGATIVE),
            per_row("min_p", min_p, B, check=NON_NEGATIVE),
            per_row("min_keep", min_keep, B, integer=True, check=AT_LEAST_ONE))


_PLAIN_NUMBER = frozenset({int, float})
_ROW_PARAMS: dict = {}


def _row_params(temperature, top_k, top_p, min_p, min_keep):
    """``(top_k, top_p, min_p, temperature, min_keep)`` of one row as validated scalars.

    The checks are ``_params``' own (they raise the same errors), run once per
    distinct set of plain scalars: a generation loop repeats the same set each token.
    """
    key = (temperature, top_k, top_p, min_p, min_keep)
    hit = _ROW_PARAMS.get(key)
    if hit is None:
        t, k, p, mp, mk = _params(temperature, top_k, top_p, min_p, min_keep, 1)
        if len(_ROW_PARAMS) > 4096:
            _ROW_PARAMS.clear()
        hit = _ROW_PARAMS[key] = (int(k[0]), float(p[0]), float(mp[0]), float(t[0]), int(mk[0]))
    return hit


def _sample_stagewise(names, x, k, p, mp, t, mk, temperature_last, seeds, pos):
    """The canonical chain one stage at a time (backends without a fused kernel)."""
    op = lambda name: _backends.op_for(names, name, name)  # noqa: E731
    if not temperature_last:
        x = op("temperature")(x, t)
    x = op("top_k")(x, k, mk)
    x = op("top_p")(x, p, mk)
    x = op("min_p")(x, mp, mk)
    if temperature_last:
        x = op("temperature")(x, t)
    return op("draw")(x, seeds, pos)


def _op(backend, name, x=None):
    """``(backend names, the function op)`` for host input (GPU input took its own
    path before this; a GPU history of ``dry_penalty``, passed as ``x``, must still
    go to cuda)."""
    names = _backends.resolve(backend, x)
    return names, _backends.op_for(names, name, name)


def _valid_rows(x, name, names):
    rows, one_d = as_logits(x, name)
    bad = _backends.row_check(names)(rows)
    if bad.any():
        raise_invalid(bad, "NaN, +inf, or every logit masked")
    return rows, one_d


def apply_token_bitmask(logits, bitmask, rows=None, out=None, *, backend="auto", stream=None):
    """Mask (``-inf``) every token a packed bitmask disallows (spec §10).

    The masking ``sample(..., bitmask=...)`` applies before every stage, as its own op
    (vLLM's ``apply_grammar_bitmask``, SGLang's ``apply_token_bitmask_inplace``).
    Logit values are not checked (a NaN stays a NaN where allowed).

    Parameters
    ----------
    logits : array_like, shape (V,) or (B, V)
    bitmask : array_like of int32 or uint32, shape (R, ceil(V/32)) or (ceil(V/32),)
        Token v is allowed iff bit ``v % 32`` of word ``v // 32`` is set; bits past V
        are ignored.
    rows : array_like of int, shape (B,), optional
        The bitmask row of each logits row, -1 = unconstrained; None: row b uses
        bitmask row b (R == B).
    out : array, optional
        None: a new float32 array. ``out is logits`` (float32, C-contiguous,
        writable): masked in place. Any other float32 array of the logits' shape: the
        masked logits are written there.
    backend : {"auto", "numpy", "numba", "c", "cuda"}

    Returns
    -------
    array of float32
        The masked logits, the shape of ``logits``: ``out`` when given, else a new
        array of the caller's array type.
    """
    if _backends.is_gpu_array(logits):
        return _gpu().apply_token_bitmask(logits, bitmask, rows, out, backend=backend,
                                          stream=stream)
    host, wrap = _arrays.to_host(logits)
    names = _backends.resolve(backend)
    x, one_d = as_logits(host)
    B, V = x.shape
    bm, r = _bitmask.as_bitmask(_arrays.plain(bitmask), B, V, _arrays.plain(rows), "bitmask",
                                "rows")
    fn = _backends.op_for(names, "apply_token_bitmask", "apply_token_bitmask")
    if out is None:
        result = fn(x, bm, r)
        return wrap(result[0] if one_d else result)
    target = _arrays.to_host(out)[0] if not isinstance(out, np.ndarray) else out
    if not isinstance(target, np.ndarray) or target.dtype != np.float32 \
            or not target.flags.c_contiguous or not target.flags.writeable:
        raise TypeError("out must be a writable C-contiguous float32 array")
    if target.shape != np.shape(host):
        raise ValueError(f"out has shape {target.shape} but logits have {np.shape(host)}")
    view = target.reshape(x.shape)
    if np.shares_memory(view, x):
        if view.__array_interface__["data"][0] != x.__array_interface__["data"][0]:
            raise ValueError("out overlaps logits without being them")
        fn(x, bm, r, out=x)   # in place: x is the caller's float32 memory
    else:
        fn(x, bm, r, out=view)
    return out


@_arrays.host_io("x")
def softmax(x, temperature=1.0, *, backend="auto", stream=None):
    """Softmax of ``x / temperature`` over each row's finite logits (masked -> 0).

    Parameters
    ----------
    x : array_like, shape (V,) or (B, V)
    temperature : float or array_like of shape (B,), > 0

    Returns
    -------
    numpy.ndarray of float32
        The shape of ``x``.
    """
    if _backends.is_gpu_array(x):
        return _gpu().softmax(x, temperature, backend=backend, stream=stream)
    names, fn = _op(backend, "softmax")
    checked = getattr(_backends.load(names[0]), "softmax_checked", None)
    if checked is not None:  # the row check in the kernel's own max pass: one read
        rows, one_d = as_logits(x, "x")
        t = per_row("temperature", temperature, rows.shape[0], check=POSITIVE)
        out, bad = checked(rows, t)
        if np.count_nonzero(bad):
            raise_invalid(bad, "NaN, +inf, or every logit masked")
        return out[0] if one_d else out
    rows, one_d = _valid_rows(x, "x", names)
    t = per_row("temperature", temperature, rows.shape[0], check=POSITIVE)
    out = fn(rows, t)
    return out[0] if one_d else out


@_arrays.host_io("x")
def log_softmax(x, *, backend="auto", stream=None):
    """Log-softmax over each row's finite logits (masked -> ``-inf``), float32."""
    if _backends.is_gpu_array(x):
        return _gpu().log_softmax(x, backend=backend, stream=stream)
    names, fn = _op(backend, "log_softmax")
    checked = getattr(_backends.load(names[0]), "log_softmax_checked", None)
    if checked is not None:  # the row check in the kernel's own max pass: one read
        rows, one_d = as_logits(x, "x")
        out, bad = checked(rows)
        if np.count_nonzero(bad):
            raise_invalid(bad, "NaN, +inf, or every logit masked")
        return out[0] if one_d else out
    rows, one_d = _valid_rows(x, "x", names)
    out = fn(rows)
    return out[0] if one_d else out


@_arrays.host_io("x")
def topk(x, k, *, backend="auto", stream=None):
    """The k largest values per row: exactly k, descending, ties to the lower id.

    Parameters
    ----------
    x : array_like, shape (V,) or (B, V)
    k : int, 0 <= k <= V

    Returns
    -------
    values : numpy.ndarray of float32, shape (..., k)
    indices : numpy.ndarray of int32, shape (..., k)
    """
    if _backends.is_gpu_array(x):
        return _gpu().topk(x, k, backend=backend, stream=stream)
    names = _backends.resolve(backend)
    rows, one_d = as_logits(x, "x")
    V = rows.shape[1]
    if type(k) is not int and (isinstance(k, (bool, np.bool_))  # plain int: no ABC check
                               or not isinstance(k, numbers.Integral)):
        raise ValueError(f"k must be an integer; got {k!r}")
    if not 0 <= int(k) <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    checked = getattr(_backends.load(names[0]), "topk_checked", None)
    if checked is not None:  # the row check within topk's own pass: the row is read once
        values, indices, bad = checked(rows, int(k))
    else:
        bad = _backends.row_check(names)(rows)
        if not np.count_nonzero(bad):
            values, indices = _backends.op_for(names, "topk", "topk")(rows, int(k))
    if np.count_nonzero(bad):  # cheaper than .any() on the per-token path
        raise_invalid(bad, "NaN, +inf, or every logit masked")
    return (values[0], indices[0]) if one_d else (values, indices)


@_arrays.host_io("history")
def dry_penalty(history, vocab_size, multiplier, base=1.75, allowed_length=2,
                breakers=(), last_n=-1, *, backend="auto"):
    """The DRY penalties (spec §4.1) that one history puts on the next token.

    Parameters
    ----------
    history : 1-D array_like of int
        Token ids in ``[0, vocab_size)``, oldest first.
    vocab_size : int
    multiplier, base, allowed_length, last_n
        As in the ``DRY`` stage.
    breakers : array_like of int
        Token ids that stop a match (see ``dry_breakers``).

    Returns
    -------
    ids : numpy.ndarray of int32
        The penalised token ids, ascending.
    penalties : numpy.ndarray of float32
        The amount subtracted from each id's logit.

    Notes
    -----
    The DRY stage subtracts the float64 amount and rounds once; subtracting these
    float32 penalties from float32 logits rounds twice and can differ in the last bit.
    """
    _, fn = _op(backend, "dry_penalty", history)
    if isinstance(vocab_size, (bool, np.bool_)) or not isinstance(vocab_size, numbers.Integral) \
            or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer; got {vocab_size!r}")
    hist = as_token_ids("history", history, vocab_size)
    mult = float(per_row("multiplier", multiplier, check=NON_NEGATIVE))
    b = float(per_row("base", base, check=FINITE))
    allowed = int(per_row("allowed_length", allowed_length, integer=True,
                          check=Check(lambda v: v >= 0, ">= 0")))
    n = int(per_row("last_n", last_n, integer=True, check=AT_LEAST_MINUS_ONE))
    brk = as_token_ids("breaker", breakers, vocab_size)
    return fn(hist, int(vocab_size), mult, b, allowed, brk, n)


def dry_breakers(strings, token_texts):
    """Token ids whose text contains any breaker string (None: llama.cpp's defaults).

    Parameters
    ----------
    strings : iterable of str or None
        Defaults to ``"\\n", ":", '"', "*"``.
    token_texts : sequence of str
        Every token's text, indexed by id.

    Returns
    -------
    numpy.ndarray of int32
    """
    from . import reference

    if isinstance(strings, str):
        raise TypeError("strings must be an iterable of breaker strings, not one str")
    return reference.dry_breakers(strings, token_texts)
