"""Log-probabilities with the sampled tokens (docs/spec.md §9): ``fs.sample(..., logprobs=N)``.

The tokens always come from the call without ``logprobs`` (the same kernels, the
same draw); this module adds the backend's ``logprobs(logits, tokens, n)`` over the
row the mode names:

- ``"raw"``: the input logits, before any stage (and before a bitmask). The backend
  kernel is one exp pass (float64 sum) with the rank count in it, plus the top-N from
  the top-k block maxima (whose first value is the row max).
- ``"processed"``: the logits the draw used. On a backend with ``truncate_canonical``
  ``fs.sample`` runs as the chain plan's candidates route (the survivors of TopK ->
  TopP -> MinP, then temperature and the draw on the compacted survivors: the fused
  kernel's tokens, as tests/test_chain_plan.py checks), and the logprobs come from
  the same compacted block, so the full row is read once more by nobody. One row
  (temperature last, no bitmask) takes all of that in one compiled call, the
  backend's ``chain_row_logprobs`` (the per-token path). Elsewhere (numpy, a backend
  without it) the processed rows are the stages one at a time.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import plan as _plan
from . import registry as _backends
from .results import Sampled
from .validation import as_logits, as_seeds, check_on_invalid, is_u64, raise_invalid

__all__ = ["MODES", "check", "compute", "on_candidates", "result", "sample"]

MODES = ("raw", "processed")


def check(n, mode):
    """``n`` as an int >= 0 and ``mode`` checked; ``ValueError`` naming the bad one."""
    if type(n) is int and n >= 0 and (mode == "processed" or mode == "raw"):
        return n   # the per-token path: a plain int and a known mode
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise ValueError(f"logprobs must be an integer >= 0 or None; got {n!r}")  # noqa: TRY004 (as k)
    if n < 0:
        raise ValueError(f"logprobs must be >= 0; got {n}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"logprobs_mode must be 'raw' or 'processed'; got {mode!r}")
    return int(n)


def compute(names, rows, tokens, n):
    """The backend's ``logprobs`` of float32 ``(B, V)`` rows: the four arrays."""
    fn = _backends.op_for(names, "logprobs", "logprobs")
    return fn(rows, np.asarray(tokens, np.int32), n)


def on_candidates(names, block, compact_tokens, ids, offsets, n):
    """``compute`` on a compacted block of survivors, top ids mapped back to token ids."""
    lp, rank, top, top_lp = compute(names, block, compact_tokens, n)
    if n and top.size:
        ok = top >= 0
        rows = np.nonzero(ok)[0]
        top = top.copy()
        top[ok] = ids[offsets[:-1][rows] + top[ok]]
    return lp, rank, top, top_lp


def result(tokens, arrays, one_d):
    """``Sampled`` of int32 tokens and the four arrays; 1-D input gives scalars."""
    tokens = np.asarray(tokens, np.int32)
    lp, rank, top, top_lp = arrays
    if one_d:
        return Sampled(int(tokens[0]), lp[0], int(rank[0]), top[0], top_lp[0])
    return Sampled(tokens, lp, rank, top, top_lp)


def sample(sample_fn, logits, n, mode, kwargs):
    """``fs.sample`` with ``logprobs=n``: ``sample_fn`` is ``fs.sample`` itself and
    ``kwargs`` its other keyword arguments."""
    n = check(n, mode)
    backend = kwargs.get("backend", "auto")
    if _backends.is_gpu_array(logits):
        return _gpu_sample(sample_fn, logits, n, mode, kwargs)
    names = _backends.resolve(backend)
    module = _backends.load(names[0])
    if mode == "processed" and getattr(module, "truncate_canonical", None) is not None:
        got = _processed_row(module, logits, n, kwargs)
        if got is not None:
            return got
        return _processed_candidates(names, module, logits, n, kwargs)
    tokens = np.atleast_1d(sample_fn(logits, **kwargs)).astype(np.int32)
    x, one_d = as_logits(logits)
    if mode == "raw":
        return result(tokens, compute(names, x, tokens, n), one_d)
    return result(tokens, compute(names, _processed_rows(names, x, kwargs), tokens, n), one_d)


def _gpu_sample(sample_fn, logits, n, mode, kwargs):
    """GPU logits: the tokens of ``fs.sample`` on the device, then the cuda
    ``logprobs`` kernel on the input rows (raw) or on the canonical chain's processed
    rows (``process_canonical`` after the bitmask: the logits its draw used); results
    stay on the device as the caller's array type (an int token and host scalars for
    1-D logits)."""
    from . import gpu

    if kwargs.get("bitmask") is None:  # fs.sample's device route itself
        tokens = gpu.sample(logits, **{k: v for k, v in kwargs.items()
                                       if k not in ("bitmask", "bitmask_rows")})
    else:
        tokens = sample_fn(logits, **kwargs)
    ops, x, one_d, stream = gpu._rows(logits, "logits", kwargs.get("backend", "auto"),
                                      kwargs.get("stream"))
    if mode == "processed":
        if kwargs.get("bitmask") is not None:   # processed rows see the bitmask
            x = gpu._masked_rows(ops, x, kwargs["bitmask"], kwargs.get("bitmask_rows"), stream)
        P = gpu._Params(x.shape[0], stream, lazy=False)
        args = (P.get("top_k", kwargs.get("top_k", 0), integer=True),
                P.get("top_p", kwargs.get("top_p", 1.0)), P.get("min_p", kwargs.get("min_p", 0.0)),
                P.get("temperature", kwargs.get("temperature", 1.0)),
                P.get("min_keep", kwargs.get("min_keep", 1), integer=True))
        k, p, mp, t, mk = args
        x = ops.process_canonical(x, k, p, mp, t, mk, bool(kwargs.get("temperature_last", True)),
                                  stream)
    return _gpu_result(ops, x, tokens, n, logits, one_d, stream)


def _gpu_result(ops, rows, tokens, n, like, one_d, stream):
    """``Sampled`` of the device tokens and the cuda ``logprobs`` of the device rows:
    on the device as ``like``'s array type (an int token and host scalars for 1-D)."""
    from . import gpu

    tok = (np.array([tokens], np.int32) if isinstance(tokens, int)
           else gpu._view(tokens))
    arrays = ops.logprobs(rows, tok, n, stream)
    if one_d:
        lp, rank, top, top_lp = (gpu.to_host(a, stream) for a in arrays)
        return Sampled(int(tokens), lp[0], int(rank[0]), top[0], top_lp[0])
    lp, rank, top, top_lp = arrays
    return Sampled(tokens, gpu.wrap(lp, like), gpu.wrap(rank, like, ops, stream),
                   gpu.wrap(top, like, ops, stream), gpu.wrap(top_lp, like))


def _params(x, kwargs):
    from .api import _params as params

    B = x.shape[0]
    t, k, p, mp, mk = params(kwargs.get("temperature", 1.0), kwargs.get("top_k", 0),
                             kwargs.get("top_p", 1.0), kwargs.get("min_p", 0.0),
                             kwargs.get("min_keep", 1), B)
    return t, k, p, mp, mk, bool(kwargs.get("temperature_last", True))


def _masked(names, x, kwargs):
    """The logits with the bitmask applied (processed mode sees it), else ``x``; a row
    with NaN / +inf stays invalid where the bitmask disallows them (as in fs.sample)."""
    if kwargs.get("bitmask") is None:
        return x
    from .api import apply_token_bitmask

    bad = _backends.row_check(names)(x)
    out = np.atleast_2d(apply_token_bitmask(x, kwargs["bitmask"], kwargs.get("bitmask_rows"),
                                            backend=kwargs.get("backend", "auto")))
    out[bad] = np.nan
    return out


def _processed_rows(names, x, kwargs):
    """The canonical chain's processed rows, stage by stage (no fused kernel)."""
    op = lambda name: _backends.op_for(names, name, name)
    t, k, p, mp, mk, t_last = _params(x, kwargs)
    x = _masked(names, x, kwargs)
    bad = _backends.row_check(names)(x)
    if bad.any():  # flagged rows (their token is -1): a harmless stand-in
        x = np.where(bad[:, None], np.float32(0.0), x)
    if not t_last:
        x = op("temperature")(x, t)
    x = op("top_k")(x, k, mk)
    x = op("top_p")(x, p, mk)
    x = op("min_p")(x, mp, mk)
    if t_last:
        x = op("temperature")(x, t)
    return x


def _processed_candidates(names, module, logits, n, kwargs):
    """``fs.sample`` as the candidates route, with the processed logprobs of the same
    compacted block the draw uses."""
    op = lambda name: _backends.op_for(names, name, name)
    x, one_d = as_logits(logits)
    B = x.shape[0]
    t, k, p, mp, mk, t_last = _params(x, kwargs)
    seeds = as_seeds("seed", kwargs.get("seed", 0), B)
    pos = as_seeds("position", kwargs.get("position", 0), B)
    on_invalid = kwargs.get("on_invalid", "raise")
    if B == 1 and kwargs.get("bitmask") is None and (t_last or (t == 1.0).all()):
        arrays = _one_call(module, x, n, (k, p, mp, mk), t, seeds, pos)
        if arrays is not None:
            return result(arrays[0], arrays[1:], one_d)
    x = _masked(names, x, kwargs)
    if not t_last and (t != 1.0).any():  # Hugging Face's order: temperature first
        bad = _backends.row_check(names)(x)
        x = op("temperature")(np.where(bad[:, None], np.float32(0.0), x) if bad.any() else x, t)
        t = np.ones(B)
    else:
        bad = None
    ids, vals, offsets, flagged = _plan.truncate(x, (k, p, mp, mk), module)
    bad = np.asarray(flagged, np.bool_) if bad is None else bad | np.asarray(flagged, np.bool_)
    if bad.any():
        if on_invalid == "raise":
            raise_invalid(bad, "NaN, +inf, or every logit masked")
        ids, vals, offsets = _plan.stand_in(ids, vals, offsets, bad)
    block = _plan.compact(ids, vals, offsets)
    if (t != 1.0).any():
        block = op("temperature")(block, t)
    compact = np.array(op("draw")(block, seeds, pos), np.int32)
    compact[bad] = -1
    tokens = _plan.token_ids(compact, ids, offsets)
    return result(tokens, on_candidates(names, block, compact, ids, offsets, n), one_d)


_PROGRAMS = {}   # (backend module, V, parameters) -> its compiled row program


def _program(module, V, trunc, t):
    """The backend's row program of TopK -> TopP -> MinP -> Temperature -> Dist (not
    fused: the draw reads the survivors' row, which the logprobs then read)."""
    key = (module.__name__, V, *trunc, t)
    prog = _PROGRAMS.get(key)
    if prog is None:
        if len(_PROGRAMS) >= 32:
            _PROGRAMS.clear()
        after = [("temperature", t, 0.0, 0.0, 1)] if t != 1.0 else []
        prog = _PROGRAMS[key] = module.chain_program({"truncations": trunc, "after": after}, V)
    return prog


_NO_HISTORY = np.zeros(0, np.int64)


_F32 = np.dtype(np.float32)
_API = []   # api's _PLAIN_NUMBER and _row_params, bound on first use (api imports this module)


def _processed_row(module, logits, n, kwargs):
    """The per-token latency path of processed logprobs: one row, plain scalar
    parameters, no bitmask, temperature last (or 1), a backend with
    ``chain_row_logprobs``: one compiled call, no per-row arrays (as ``fs.sample``'s own
    one-row path). None when any of that does not hold, or the row needs the general
    route (invalid)."""
    if not _API:
        from .api import _PLAIN_NUMBER, _row_params

        _API.extend((_PLAIN_NUMBER, _row_params))
    plain, row_params = _API
    fn = getattr(module, "chain_row_logprobs", None)
    kw = kwargs.get
    seed, position = kw("seed", 0), kw("position", 0)
    t, k, p, mp, mk = (kw("temperature", 1.0), kw("top_k", 0), kw("top_p", 1.0),
                       kw("min_p", 0.0), kw("min_keep", 1))
    if fn is None or kw("bitmask") is not None or not (is_u64(seed) and is_u64(position)) \
            or not plain.issuperset((type(t), type(p), type(mp))) \
            or type(k) is not int or type(mk) is not int:
        return None
    if type(logits) is np.ndarray and logits.ndim == 1 and logits.dtype is _F32 \
            and logits.shape[0] and logits.flags.c_contiguous:
        row, one_d = logits, True   # used as is (as_logits' own rule), without its checks
    else:
        x, one_d = as_logits(logits)
        if x.shape[0] != 1:
            return None
        row = x[0]
    check_on_invalid(kw("on_invalid", "raise"))
    k, p, mp, t, mk = row_params(t, k, p, mp, mk)
    if t != 1.0 and not kw("temperature_last", True):
        return None
    got = fn(row, _NO_HISTORY, _program(module, row.shape[0], (k, p, mp, mk), t), seed,
             position, n)
    if got is None:
        return None
    token, lp, rank, top, top_lp = got
    if one_d:
        return Sampled(token, lp, rank, top, top_lp)
    return Sampled(np.array([token], np.int32), np.array([lp], np.float32),
                   np.array([rank], np.int32), top[None], top_lp[None])


def _one_call(module, x, n, trunc, t, seeds, pos):
    """Token and processed logprobs of a one-row batch in one compiled call (the
    backend's ``chain_row_logprobs``: the candidates route's kernels, then the logprobs
    of the survivors' row its draw read) as (B,) arrays; None when the backend has no
    such call or the row needs the general route. Batches keep the batched route: its
    kernels spread the rows over threads."""
    fn = getattr(module, "chain_row_logprobs", None)
    if fn is None:
        return None
    k, p, mp, mk = trunc
    prog = _program(module, x.shape[1], (int(k[0]), float(p[0]), float(mp[0]), int(mk[0])),
                    float(t[0]))
    got = fn(x[0], _NO_HISTORY, prog, int(seeds[0]), int(pos[0]), n)
    if got is None:
        return None
    token, lp, rank, top, top_lp = got
    return (np.array([token], np.int32), np.array([lp], np.float32),
            np.array([rank], np.int32), top[None], top_lp[None])


def chain_sample(chain, logits, n, mode, kwargs):
    """``SamplerChain.sample`` with ``logprobs=n``; ``kwargs``: its other arguments."""
    n = check(n, mode)
    if _backends.is_gpu_array(logits):
        return _gpu_chain_sample(chain, logits, n, mode, kwargs)
    names = chain._cpu_names
    if mode == "raw":  # the input row, before any stage (and any bitmask)
        tokens = np.atleast_1d(chain.sample(logits, **_present(kwargs))).astype(np.int32)
        x, one_d = as_logits(logits)
        return result(tokens, compute(names, x, tokens, n), one_d)
    if chain._plan.mode == "candidates":
        return _chain_candidates(chain, names, logits, n, kwargs)
    # The logits the terminal draws from, before sample moves any state (Mirostat's mu).
    processed = chain.process(logits, **_present(kwargs, "stream"))
    tokens = np.atleast_1d(chain.sample(logits, **_present(kwargs))).astype(np.int32)
    rows = np.atleast_2d(processed)
    return result(tokens, compute(names, rows, tokens, n), np.ndim(processed) == 1)


def _gpu_chain_sample(chain, logits, n, mode, kwargs):
    """``SamplerChain.sample`` of GPU logits with logprobs: the chain's device tokens,
    then the cuda ``logprobs`` of the input rows (raw) or of the rows ``process`` gives
    (processed: the chain's masked logits on the device, taken before ``sample`` as on
    the host)."""
    from . import gpu

    rows = chain.process(logits, **_present(kwargs)) if mode == "processed" else logits
    tokens = chain.sample(logits, **_present(kwargs))
    ops, x, one_d, stream = gpu._rows(rows, "logits", chain.backend, kwargs.get("stream"))
    return _gpu_result(ops, x, tokens, n, logits, one_d, stream)


def _present(kwargs, *drop):
    """The arguments given (not None), without ``drop``: a chain method's keywords."""
    return {k: v for k, v in kwargs.items() if v is not None and k not in drop}


def _chain_candidates(chain, names, logits, n, kwargs):
    """The chain's candidates route (its ``sample`` as written), with the processed
    logprobs of the compacted block its terminal draws from."""
    x, one_d, ctx = chain._prepare(
        logits, kwargs["history"], kwargs["history_len"], kwargs["position"],
        **_present(kwargs, "history", "history_len", "position", "stream"))
    block, ids, offsets, bad, cctx = chain._candidates(x, ctx)
    terminal = chain.stages[-1]
    processed = terminal.process(chain._ops, block, cctx, chain._state[-1])  # state before the draw
    compact = np.array(chain._terminal(block, cctx, bad), np.int32)
    tokens = _plan.token_ids(compact, ids, offsets)
    return result(tokens, on_candidates(names, np.ascontiguousarray(processed, np.float32),
                                        compact, ids, offsets, n), one_d)
