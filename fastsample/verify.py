"""Speculative decoding verification (docs/spec.md §11): ``fs.verify`` and ``SamplerChain.verify``.

A drafter proposes K tokens per request; the target model scores K+1 positions in one
pass. Verification decides how many drafts to accept and which token to emit after
them. Two methods:

- ``"rejection"`` (Leviathan et al. 2023; Chen et al. 2023): accept d_j with
  probability min(1, p_j(d_j) / q_j(d_j)); at the first rejection emit a draw from
  normalise(max(0, p_j - q_j)); after n acceptances the bonus draw from p_n. The
  emitted tokens follow the target distribution whatever the drafter proposes.
- ``"exact"``: the emitted token at step j is the plain draw of ``fs.sample`` /
  ``chain.sample`` at (seed, position + j); d_j is accepted iff it equals it. The
  output is token for token that of decoding without speculation.

p_j is the distribution the plain sampler draws from at step j: the chain's stages
applied to target row j, with the history stages seeing the row's history plus the
drafts before j, at position + j. The K+1 rows of every request run as one batch of
B*(K+1) rows through the chain's plan (``fastsample.plan``): exact mode is that
batch's plain ``sample`` (the fused kernel when the chain is fs.sample's), rejection
mode gathers each row's candidates (``truncate_canonical``) and runs the backend's
``verify_rows`` over them, which reads the drafter's probabilities only at the
candidates and the draft token. ``verify`` changes no chain state; the caller
accepts the emitted tokens (``accept``).
"""

from __future__ import annotations

import copy
import weakref
from typing import NamedTuple

import numpy as np

from . import arrays as _arrays
from . import plan as _plan
from . import registry as _backends
from .stages import Dist, Greedy, MinP, Temperature, TopK, TopP
from .validation import (
    as_history,
    as_logits,
    as_seeds,
    check_on_invalid,
    per_row,
    raise_invalid,
)

__all__ = ["METHODS", "Verified", "chain_verify", "verify"]

METHODS = ("rejection", "exact")


class Verified(NamedTuple):
    """What ``verify`` returns (spec §11).

    Attributes
    ----------
    tokens : numpy.ndarray of int32, shape (B, K+1)
        The accepted drafts, then the emitted token, then -1 padding.
    num_accepted : numpy.ndarray of int32, shape (B,)
    num_emitted : numpy.ndarray of int32, shape (B,)
        ``num_accepted + 1``; 0 for a flagged request (its tokens are all -1).
    """

    tokens: np.ndarray
    num_accepted: np.ndarray
    num_emitted: np.ndarray


# ------------------------------------------------------------------ input checks


def _inputs(target_logits, draft_tokens, draft_probs, num_draft, method):
    """Validated ``(x (B*(K+1), V) float32, d (B, K) int32, q or None, n (B,) int64)``."""
    if method not in METHODS:
        raise ValueError(f"method must be 'rejection' or 'exact'; got {method!r}")
    target = np.asarray(_arrays.plain(target_logits))
    if target.ndim != 3:
        raise ValueError("target_logits must be 3-D (B, K+1, V): one row per draft token "
                         f"plus the bonus row; got ndim={target.ndim}")
    B, K1, V = target.shape
    if K1 < 1:
        raise ValueError("target_logits must have K+1 >= 1 rows per request; got 0")
    x, _ = as_logits(target.reshape(B * K1, V), "target_logits")
    d, q, n = _drafts((B, K1, V), draft_tokens, draft_probs, num_draft)
    return x, d, q, n


def _drafts(shape, draft_tokens, draft_probs, num_draft):
    """Validated ``(d (B, K) int32, q or None, n (B,) int64)`` for target logits of
    ``shape`` (B, K+1, V)."""
    B, K1, V = shape
    K = K1 - 1
    d = np.asarray(_arrays.plain(draft_tokens))
    if d.size == 0 and d.dtype.kind not in "iu":
        d = d.astype(np.int64)
    if d.dtype.kind not in "iu":
        raise TypeError(f"draft_tokens must hold integer token ids; got dtype {d.dtype}")
    if d.shape != (B, K):
        raise ValueError(f"draft_tokens has shape {d.shape}; target_logits {tuple(shape)} "
                         f"needs (B, K) = ({B}, {K})")
    if num_draft is None:
        n = np.full(B, K, np.int64)
    else:
        n = per_row("num_draft", _arrays.plain(num_draft), B, integer=True).astype(np.int64)
        n = np.broadcast_to(n, (B,)).copy()
        out = (n < 0) | (n > K)
        if out.any():
            b = int(np.flatnonzero(out)[0])
            raise ValueError(f"num_draft must be in [0, K={K}]; got {int(n[b])} for request {b}")
    used = np.arange(K) < n[:, None]
    bad = used & ((d < 0) | (d >= V))
    if bad.any():
        b, j = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"draft token {int(d[b, j])} of request {b} at step {j} is outside "
                         f"[0, V={V})")
    d = np.where(used, d, 0).astype(np.int32)   # unused steps: a harmless stand-in
    q = None
    if draft_probs is not None:
        q = np.asarray(_arrays.plain(draft_probs))
        if q.dtype.kind != "f":
            raise TypeError(f"draft_probs must be a float array; got dtype {q.dtype}")
        if q.shape != (B, K, V):
            raise ValueError(f"draft_probs has shape {q.shape}; expected (B, K, V) = "
                             f"({B}, {K}, {V})")
        q = np.ascontiguousarray(q, dtype=np.float32)
    return d, q, n


# ------------------------------------------------------------------ the chain of B*(K+1) rows

_EXPANDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _repeat_rows(stage, B, K1):
    """A copy of ``stage`` whose per-row parameters hold each of B rows K1 times."""
    clone = copy.copy(stage)
    clone.__dict__["_rows"] = {B * K1: [np.repeat(a, K1) for a in stage.rows(B)]}
    return clone


def _expanded(chain, B, K1, rejection):
    """The chain over B*(K+1) rows (per-row parameters repeated), made once per shape.

    Rejection needs each row's distribution rather than a draw, so its plan never takes
    the fused draw: fs.sample's chain becomes candidates (truncate_canonical's survivors,
    then Temperature on them).
    """
    from .chain import SamplerChain

    cache = _EXPANDED.setdefault(chain, {})
    key = (B, K1, rejection)
    ex = cache.get(key)
    if ex is None:
        ex = SamplerChain([_repeat_rows(s, B, K1) for s in chain.stages],
                          backend=chain._requested, on_invalid="flag")
        if rejection:
            ex._plan = _plan.Plan(ex.stages, lambda tail: None, fast=ex.backend != "numpy",
                                  can_truncate=getattr(ex._module, "truncate_canonical", None)
                                  is not None)
        ex._ensure_state(B * K1)
        cache[key] = ex
    return ex


def _histories(base, d, K1, window):
    """Row ``b*K1 + j``'s history: request b's (its last ``window`` tokens) + d[b, :j]."""
    if window == 0 or base is None:
        return None
    out = []
    for b, h in enumerate(base):
        h = np.asarray(h, np.int64)
        if window is not None and h.size > window:
            h = h[h.size - window:]
        drafts = d[b].astype(np.int64)
        out.extend(np.concatenate((h, drafts[:j])) for j in range(K1))
    return out


def _plain_tokens(ex, x, ctx):
    """``ex.sample``'s tokens on the prepared rows (-1 for bad rows) and the bad rows."""
    mode = ex._plan.mode
    if mode == "fused":
        work, hidden = ex._edit(x, ctx)
        tokens = np.atleast_1d(np.asarray(ex._sample_fused(work, ctx), np.int32))
        bad = ex._bad_rows(x, tokens == -2, hidden)
        tokens[bad] = -1
    elif mode == "candidates":
        block, ids, offsets, bad, cctx = ex._candidates(x, ctx)
        tokens = _plan.token_ids(ex._terminal(block, cctx, bad), ids, offsets)
    else:
        y, bad = ex._staged(x, ctx)
        tokens = ex._terminal(y, ctx, bad)
    return tokens, bad


def _distributions(ex, x, ctx):
    """Each row's processed logits: ``(block, ids, offsets, bad)``; ``ids`` None = dense."""
    terminal = ex.stages[-1]
    if ex._plan.mode == "candidates":
        block, ids, offsets, bad, cctx = ex._candidates(x, ctx)
        return terminal.process(ex._ops, block, cctx, ex._state[-1]), ids, offsets, bad
    y, bad = ex._staged(x, ctx)
    return terminal.process(ex._ops, y, ctx, ex._state[-1]), None, None, bad


def _exact_accept(tokens, d, n):
    """Exact mode's scan: accept drafts while they equal the plain tokens."""
    B, K1 = tokens.shape
    K = K1 - 1
    steps = np.arange(K)
    match = (tokens[:, :K] == d) & (steps < n[:, None])
    accepted = np.cumprod(match, axis=1).sum(axis=1).astype(np.int32) if K else \
        np.zeros(B, np.int32)
    out = np.full((B, K1), -1, np.int32)
    out[:, :K] = np.where(steps < accepted[:, None], d, -1)
    rows = np.arange(B)
    out[rows, accepted] = tokens[rows, accepted]
    return out, accepted


def _run(chain, x, d, q, n, seeds, pos, base_hist, method, on_invalid):
    """Verification of B requests through ``chain``'s stages (see the module docstring)."""
    from .chain import _Context

    B, K = d.shape
    K1 = K + 1
    V = x.shape[1]
    if B == 0:
        empty = np.zeros(0, np.int32)
        return Verified(np.zeros((0, K1), np.int32), empty, empty.copy())
    rejection = method == "rejection"
    ex = _expanded(chain, B, K1, rejection)
    window = ex._plan.window(B * K1)
    if base_hist is None and window != 0:
        base_hist = [np.zeros(0, np.int64)] * B
    ctx = _Context(B * K1, V, _histories(base_hist, d, K1, window), np.repeat(seeds, K1),
                   np.repeat(pos, K1) + np.tile(np.arange(K1, dtype=np.uint64), B))
    ex._seeds = ctx.seed
    if rejection:
        block, ids, offsets, bad = _distributions(ex, x, ctx)
        fn = _backends.op_for(ex._cpu_names, "verify_rows", "verify")
        tokens, accepted, bad_q = fn(block, ids, offsets, d, q, n, seeds, pos)
    else:
        plain, bad = _plain_tokens(ex, x, ctx)
        tokens, accepted = _exact_accept(np.asarray(plain, np.int32).reshape(B, K1), d, n)
        bad_q = None
    return _finish(tokens, accepted, bad_q, bad, n, on_invalid)


def _finish(tokens, accepted, bad_q, bad, n, on_invalid):
    """Raise for bad draft probabilities; raise for, or flag, invalid requests."""
    B, K1 = tokens.shape
    if bad_q is not None and (bad_q >= 0).any():
        b = int(np.flatnonzero(bad_q >= 0)[0])
        raise ValueError(f"draft_probs of request {b} at step {int(bad_q[b])} has a NaN "
                         "or negative probability")
    flagged = (np.asarray(bad).reshape(B, K1) & (np.arange(K1) <= n[:, None])).any(axis=1)
    if flagged.any():
        if on_invalid == "raise":
            raise_invalid(flagged, "a target row (of steps 0..num_draft) has NaN, +inf, or "
                          "every logit masked")
        tokens[flagged] = -1
        accepted[flagged] = 0
    emitted = np.where(flagged, 0, accepted + 1).astype(np.int32)
    return Verified(tokens, accepted, emitted)


# ------------------------------------------------------------------ public entry points

_STATEFUL = ("Mirostat", "MirostatV2", "AdaptiveP")


def chain_verify(chain, target_logits, draft_tokens, draft_probs=None, *, num_draft=None,
                 method="rejection", history=None, history_len=None, position=None):
    """``SamplerChain.verify`` (see its docstring)."""
    terminal = chain.stages[-1]
    if not isinstance(terminal, (Dist, Greedy)):
        raise ValueError(  # noqa: TRY004 (spec §11: a stateful terminal is a ValueError)
            f"verify needs a chain ending in Dist or Greedy; {terminal.name} is a "
                         f"stateful terminal ({', '.join(_STATEFUL)} cannot be verified: their "
                         "state moves with every draw)")
    if chain._requested == "cuda" or _backends.is_gpu_array(target_logits):
        return _chain_verify_device(chain, target_logits, draft_tokens, draft_probs, num_draft,
                                    method, position)
    x, d, q, n = _inputs(target_logits, draft_tokens, draft_probs, num_draft, method)
    B = d.shape[0]
    V = x.shape[1]
    seeds, pos = _chain_rows(chain, B, position)
    if history is not None:
        base = as_history(history, history_len, B, V, False)
    elif chain._B is not None:
        base = chain._own_history(V, None)
    else:
        base = None
    return _run(chain, x, d, q, n, seeds, pos, base, method, chain.on_invalid)


def _chain_rows(chain, B, position):
    """The chain's seeds and positions for B requests, without creating state."""
    if chain._B is not None and chain._B != B:
        raise ValueError(f"this chain holds state for B={chain._B} rows but target_logits has "
                         f"{B} requests; call reset() first")
    if chain._B is None:   # no state yet: what the first sample would start from
        seeds = as_seeds("seed", chain._seed_arg, B)
        positions = np.zeros(B, np.uint64)
    else:
        seeds, positions = chain._seeds, chain.positions
    return seeds, positions if position is None else as_seeds("position", position, B)


def _chain_verify_device(chain, target_logits, draft_tokens, draft_probs, num_draft, method,
                         position):
    """``SamplerChain.verify`` on cuda: chains of fs.sample's stages (TopK, TopP, MinP,
    Temperature, then Dist), through ``fs.verify``'s device path."""
    from . import gpu

    if chain._fused is None or chain._plan.edits:
        raise _backends.BackendError(
            "verify on backend 'cuda' takes chains of fs.sample's stages only (TopK, TopP, "
            f"MinP, Temperature, then Dist); this chain is {[s.name for s in chain.stages]}")
    if not _backends.is_gpu_array(target_logits):
        raise _backends.BackendError("a cuda chain verifies GPU target_logits (a torch.cuda "
                                     "tensor or a numba device array)")
    B = int(gpu._view(target_logits).shape[0])
    seeds, pos = _chain_rows(chain, B, position)
    k, p, mp, t, mk, temperature_last = chain._fused_args(B)
    return _verify_device(target_logits, draft_tokens, draft_probs, num_draft, method, t, k, p,
                          mp, mk, temperature_last, seeds, pos, chain.on_invalid, "cuda", None)


_SAMPLE_CHAINS: dict = {}


def _sample_chain(t, k, p, mp, mk, temperature_last, backend, key):
    """fs.sample's stages as a chain (kept per plain-scalar parameter set)."""
    from .chain import SamplerChain

    chain = _SAMPLE_CHAINS.get(key) if key is not None else None
    if chain is None:
        truncs = [TopK(k, min_keep=mk), TopP(p, min_keep=mk), MinP(mp, min_keep=mk)]
        temp = [Temperature(t)]
        chain = SamplerChain(truncs + temp if temperature_last else temp + truncs,
                             backend=backend, on_invalid="flag")
        if key is not None:
            if len(_SAMPLE_CHAINS) > 64:
                _SAMPLE_CHAINS.clear()
            _SAMPLE_CHAINS[key] = chain
    return chain


def verify(target_logits, draft_tokens, draft_probs=None, *, num_draft=None,
           method="rejection", temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, min_keep=1,
           temperature_last=True, seed=0, position=0, on_invalid="raise", backend="auto",
           stream=None):
    """Verify draft tokens against the target model's logits (speculative decoding).

    The target distribution at step j, p_j, is the one ``fs.sample`` draws from with
    the same parameters: top_k -> top_p -> min_p -> temperature (or Hugging Face's
    order with ``temperature_last=False``), softmax.

    Parameters
    ----------
    target_logits : array_like, shape (B, K+1, V)
        The target's logits at the K draft positions and the one after them.
    draft_tokens : array_like of int, shape (B, K)
    draft_probs : array_like of float, shape (B, K, V), optional
        The drafter's probabilities q_j; None for a deterministic drafter (n-gram,
        prompt lookup, greedy draft): q_j one-hot on the draft token.
    num_draft : array_like of int, shape (B,), optional
        Drafts per request, in [0, K] (default K); later steps are ignored.
    method : {"rejection", "exact"}
        ``"rejection"``: Leviathan et al.'s rule; the emitted tokens follow p whatever
        the drafts. ``"exact"``: the emitted tokens are exactly those of ``fs.sample``
        at (seed, position + j): decoding with speculation gives the tokens of
        decoding without it.
    temperature, top_k, top_p, min_p, min_keep, temperature_last
        As in ``fs.sample``, per request (scalar or shape (B,)). ``temperature <= 0``
        is greedy: accept on the argmax, emit the argmax.
    seed, position : int or array_like of int, shape (B,)
        ``position`` is that of the first draft token; step j uses position + j.
        Random streams (spec §5): 2 the acceptance roll, 3 the draw after a
        rejection, 0 the bonus draw (and every draw of exact mode).
    on_invalid : {"raise", "flag"}
        A request whose target rows 0..num_draft hold NaN, +inf or nothing finite
        raises ``ValueError``, or gets tokens -1 and ``num_emitted`` 0.
    backend : {"auto", "numpy", "numba", "c", "cuda"}
        GPU ``target_logits`` (float32, C-contiguous; ``draft_probs`` too when given,
        on the GPU or the host) run on cuda: the rows through the fused canonical
        kernels, the rejection rule in ``kernels/cuda/verify.py``.
    stream : optional
        The GPU stream (torch/CuPy/numba stream), as ``fs.sample``'s.

    Returns
    -------
    Verified
        ``tokens`` (B, K+1) int32, ``num_accepted`` (B,), ``num_emitted`` (B,): numpy
        arrays, also for GPU input (B*(K+1) small integers, copied back).

    Raises
    ------
    ValueError
        Bad shapes; a draft token outside [0, V) at a step < num_draft; num_draft
        outside [0, K]; a NaN or negative draft probability where the rule reads one
        (q_j at d_j and on p_j's support, steps j < num_draft); bad parameters as in
        ``fs.sample``.
    """
    from .api import _params

    check_on_invalid(on_invalid)
    if _backends.is_gpu_array(target_logits):
        return _verify_device(target_logits, draft_tokens, draft_probs, num_draft, method,
                              temperature, top_k, top_p, min_p, min_keep, temperature_last,
                              seed, position, on_invalid, backend, stream)
    if backend == "cuda":
        raise _backends.BackendError("fs.verify on backend 'cuda' takes GPU target_logits "
                                     "(a torch.cuda tensor or a numba device array)")
    x, d, q, n = _inputs(target_logits, draft_tokens, draft_probs, num_draft, method)
    B = d.shape[0]
    t, k, p, mp, mk = _params(temperature, top_k, top_p, min_p, min_keep, B)
    seeds = as_seeds("seed", seed, B)
    pos = as_seeds("position", position, B)
    plain = all(type(v) in (int, float) for v in (temperature, top_k, top_p, min_p, min_keep))
    key = ((temperature, top_k, top_p, min_p, min_keep, bool(temperature_last), backend)
           if plain else None)
    if plain:   # scalars: the stages take them as scalars (one chain for every B)
        t, k, p, mp, mk = (float(temperature), int(top_k), float(top_p), float(min_p),
                           int(min_keep))
    chain = _sample_chain(t, k, p, mp, mk, bool(temperature_last), backend, key)
    return _run(chain, x, d, q, n, seeds, pos, None, method, on_invalid)


def _verify_device(target_logits, draft_tokens, draft_probs, num_draft, method, temperature,
                   top_k, top_p, min_p, min_keep, temperature_last, seed, position, on_invalid,
                   backend, stream):
    """``fs.verify`` for GPU target logits: the B*(K+1) rows through the canonical kernels
    on the device (exact: ``sample_canonical``; rejection: ``process_canonical`` then
    ``verify_rows``); the small per-request arrays are checked on the host."""
    from . import gpu
    from .api import _params

    if method not in METHODS:
        raise ValueError(f"method must be 'rejection' or 'exact'; got {method!r}")
    ops = gpu._ops(backend, target_logits)
    stream = gpu.as_stream(stream)
    x3 = gpu._view(target_logits)
    if x3.ndim != 3:
        raise ValueError("target_logits must be 3-D (B, K+1, V): one row per draft token "
                         f"plus the bonus row; got ndim={x3.ndim}")
    if np.dtype(x3.dtype) != np.float32 or not x3.is_c_contiguous():
        raise TypeError("GPU target_logits must be float32 and C-contiguous; got "
                        f"{np.dtype(x3.dtype)}")
    B, K1, V = x3.shape
    if K1 < 1 or V < 1:
        raise ValueError(f"target_logits must be (B, K+1 >= 1, V >= 1); got {tuple(x3.shape)}")
    K = K1 - 1
    q_host = None
    if draft_probs is not None:
        if _backends.is_gpu_array(draft_probs):
            qd = gpu._view(draft_probs)
            if np.dtype(qd.dtype) != np.float32 or not qd.is_c_contiguous():
                raise TypeError("GPU draft_probs must be float32 and C-contiguous")
            if tuple(qd.shape) != (B, K, V):
                raise ValueError(f"draft_probs has shape {tuple(qd.shape)}; expected (B, K, V)"
                                 f" = ({B}, {K}, {V})")
        else:
            q_host = draft_probs
    d_host = gpu._on_host(draft_tokens, stream)
    n_host = gpu._on_host(num_draft, stream) if num_draft is not None else None
    d, q_checked, n = _drafts((B, K1, V), d_host, q_host, n_host)
    if draft_probs is not None and q_host is None:
        q_dev = qd
    else:
        q_dev = q_checked
    t, k, p, mp, mk = _params(temperature, top_k, top_p, min_p, min_keep, B)
    seeds = as_seeds("seed", seed, B)
    pos = as_seeds("position", position, B)
    if B == 0:
        empty = np.zeros(0, np.int32)
        return Verified(np.zeros((0, K1), np.int32), empty, empty.copy())
    x = x3.reshape(B * K1, V)
    rep = lambda a: np.repeat(a, K1)
    seeds_x = rep(seeds)
    pos_x = rep(pos) + np.tile(np.arange(K1, dtype=np.uint64), B)
    args = (rep(k), rep(p), rep(mp), rep(t), rep(mk), bool(temperature_last))
    if method == "exact":
        plain = gpu.to_host(ops.sample_canonical(x, *args, seeds_x, pos_x, stream), stream)
        bad = plain == ops.INVALID
        tokens, accepted = _exact_accept(np.where(bad, -1, plain).astype(np.int32)
                                         .reshape(B, K1), d, n)
        bad_q = None
    else:
        processed = ops.process_canonical(x, *args, stream)
        bad = gpu.to_host(ops.invalid_rows(x, stream), stream).astype(bool)
        out = ops.verify_rows(processed, None, None, d, q_dev, n, seeds, pos, stream)
        tokens, accepted, bad_q = (gpu.to_host(a, stream) for a in out)
    return _finish(tokens, accepted, bad_q, bad, n, on_invalid)
