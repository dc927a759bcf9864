"""The device path of the public API: logits already on an NVIDIA GPU.

Any array with ``__cuda_array_interface__`` (CuPy, torch.cuda tensors, numba device
arrays; under the CUDA simulator, its device arrays) is read in place: never copied
to the host. The sampling calls read float32, float16 and torch bfloat16 (as its int16
bits) logits of any strides in place; float64 logits, and the inputs of ``softmax``,
``log_softmax`` and ``topk`` unless float32 C-contiguous, are converted into a float32
copy by a kernel on the call's stream. Results stay on the device and come back as
the caller's type: a torch tensor or a CuPy array (zero-copy wraps of the result
buffer; torch token ids are int64, widened by a kernel), else a numba device array;
``sample`` on 1-D logits returns an int.

Synchronisation. With ``on_invalid="flag"``, ``sample`` on 2-D logits never waits for
the GPU: invalid rows become -1 on the device, per-row parameters given as device
arrays are checked on the device (a row whose parameter breaks the docs/spec.md §7 rule gets
token -1 as well; dtype and length are checked from the array's metadata), and nothing
is copied to the host. Host parameters go to the device in one asynchronous copy. With
the default ``on_invalid="raise"``, raising needs the B row flags on the host: one small
copy, which waits for the kernels; device parameters are then copied back (B values)
and validated with the host rules. A 1-D call returns a Python int, so it waits too.
(Memory comes from numba's memory manager; an engine that must never block can plug
its own pool into numba's EMM interface, for example torch's caching allocator.)

Chains (``check_chain``). LogitBias, Penalties and DRY first, then the stages of
``fs.sample``, with XTC after their truncations, ending in Dist (spec §12's W10a and
W10b). Penalties' window counts live on the device and ``accept`` updates them.
DRY's penalties depend only on the history, which the chain keeps on the host, and
finding them is a sequential scan (the Z-function of the reversed window: microseconds
per row on the CPU, milliseconds for one GPU thread at global-memory latency), so
they are found on the host by the numba CPU kernel and uploaded as sparse float64
edits (``kernels/cuda/dry.py``; the logits never leave the device). XTC is part of the
fused canonical kernel (``kernels/cuda/xtc.py``): an upper cut on top of the
truncations' threshold.

``stream``: a numba stream, a torch.cuda.Stream (``cuda_stream``), a CuPy stream
(``ptr``), a raw ``cudaStream_t`` as an int, or None/0 for the default stream. Every
kernel and copy of the call is queued on it, so the results are ready in stream order.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from . import arrays as _arrays
from . import bitmask as _bitmask
from . import registry as _backends
from .stages import AT_LEAST_ONE, FINITE, NON_NEGATIVE, POSITIVE
from .validation import (
    as_history,
    as_seeds,
    as_token_ids,
    check_on_invalid,
    per_row,
    raise_invalid,
)

__all__ = [
    "Plan",
    "accept_counts",
    "apply_token_bitmask",
    "as_stream",
    "chain_process",
    "chain_sample",
    "check_chain",
    "device_rows",
    "log_softmax",
    "sample",
    "softmax",
    "to_host",
    "topk",
    "wrap",
]

_INVALID = -2
_WHAT = "NaN, +inf, or every logit masked"


def _cuda():
    from numba import cuda

    return cuda


def _ops(backend, x):
    """The cuda ops module; GPU arrays go nowhere else (no hidden host round trip)."""
    if backend not in ("auto", "cuda"):
        _backends.load(backend)  # an unknown name gets the registry's message
        raise _backends.BackendError(
            f"{type(x).__name__} is a GPU array: it needs backend='cuda' (or 'auto'), "
            f"not {backend!r}; copy it to the host first to use a CPU backend"
        )
    return _backends.load("cuda")


# ---------------------------------------------------------------------- streams, arrays


def as_stream(stream):
    """A numba stream (or 0: the default stream) for the ``stream=`` argument."""
    if stream is None or (isinstance(stream, numbers.Integral) and int(stream) == 0):
        return 0
    cuda = _cuda()
    handle = None
    if hasattr(stream, "cuda_stream"):        # torch.cuda.Stream
        handle = int(stream.cuda_stream)
    elif hasattr(stream, "ptr"):              # cupy.cuda.Stream
        handle = int(stream.ptr)
    elif isinstance(stream, numbers.Integral):
        handle = int(stream)
    elif hasattr(stream, "synchronize"):      # a numba stream
        return stream
    else:
        raise TypeError(
            f"stream must be a numba stream, a torch/CuPy stream, a cudaStream_t int or "
            f"None; got {type(stream).__name__}"
        )
    return 0 if handle == 0 else cuda.external_stream(handle)


def _sync(stream):
    if stream:
        stream.synchronize()


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def _is_bf16(x):
    return _is_torch(x) and str(x.dtype) == "torch.bfloat16"


def _view(x):
    """A numba device array over ``x``'s memory (no copy)."""
    if hasattr(x, "copy_to_host"):
        return x
    return _cuda().as_cuda_array(x)


def to_host(x, stream=0):
    """A small device array (flags, parameters, tokens) copied to a numpy array."""
    if _is_torch(x):  # torch orders the copy after the work of its own stream
        return (x.detach().float() if _is_bf16(x) else x.detach()).cpu().numpy()
    out = _view(x).copy_to_host(stream=stream)
    _sync(stream)
    return out


def device_rows(x, name, ops, stream=0, direct=False):
    """Validate GPU logits; return ``((B, V) device rows, was_1d)``.

    Bad dtypes and shapes raise as ``as_logits`` does. The rows are ``x`` itself when
    it is float32 and C-contiguous, else a float32 copy converted by a kernel on
    ``stream``. ``direct``: the caller's kernels read float16, float32 and bfloat16
    (as int16 bits: numba has no bfloat16) of any strides in place
    (``kernels/cuda/target.load``), so only float64 and strided 1-D rows are converted.
    """
    bf16 = _is_bf16(x)
    if bf16:
        import torch

        x = x.detach().view(torch.int16)  # same memory, same strides
    d = _view(x)
    dtype = np.dtype(d.dtype)
    if not bf16 and (dtype.kind != "f" or dtype.itemsize not in (2, 4, 8)):
        raise TypeError(
            f"{name} must be a floating-point array (float16, float32, float64 or torch "
            f"bfloat16 on the GPU); got dtype {dtype}"
        )
    if d.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (V,) or 2-D (B, V); got ndim={d.ndim}")
    if d.shape[d.ndim - 1] == 0:  # (the simulator's shapes take no negative index)
        raise ValueError(f"{name} must have at least one token (V >= 1); got V=0")
    one_d = d.ndim == 1
    if bf16 and one_d:   # a (1, V) view, whatever the stride
        d = _view(x.unsqueeze(0))
    elif one_d and d.is_c_contiguous():
        d = d.reshape(1, d.shape[0])
    if d.ndim == 2 and (dtype == np.float32 and d.is_c_contiguous()
                        or direct and dtype.itemsize < 8):
        return d, one_d
    return ops.to_rows(d, stream), one_d


def wrap(result, like, ops=None, stream=0):
    """A device result as the type of ``like``: torch tensor, CuPy array, or as is.

    torch gets token ids (int32 results) as int64, its index dtype, like the host path
    and ``torch.multinomial``: widened by ``ops``' kernel on ``stream``, in stream order
    with the kernels that made them."""
    root = type(like).__module__.split(".")[0]
    if root == "torch":
        import torch

        if ops is not None and np.dtype(result.dtype) == np.int32:
            result = ops.to_int64(result, stream)
        return torch.as_tensor(result, device=like.device)
    if root == "cupy":
        import cupy

        return cupy.asarray(result)
    return result


def _on_host(value, stream):
    """``value`` itself, or a host copy of it when it is a GPU array (B values)."""
    return to_host(value, stream) if _backends.is_gpu_array(value) else value


def _param(name, value, B, stream, *, integer=False, check=None):
    """A per-row parameter (scalar, host array or device array), validated on the host."""
    return per_row(name, _on_host(value, stream), B, integer=integer, check=check)


# The host rules of spec §7 that a kernel checks for parameters left on the device.
_DEVICE_CHECKS = {FINITE: "finite", NON_NEGATIVE: "non_negative", AT_LEAST_ONE: "at_least_one"}


class _Params:
    """The per-row parameters of one ``sample`` call.

    Host values are validated on the host (``ValueError`` naming the parameter). With
    ``lazy`` (``on_invalid="flag"``), device arrays stay on the device: their dtype and
    length are checked from metadata, their values by a kernel after the draw that
    gives a breaking row token -1 (``deferred``). Otherwise they are copied back.
    """

    def __init__(self, B, stream, lazy):
        self.B, self.stream, self.lazy = B, stream, lazy
        self.deferred = []

    def _device(self, name, value, integer):
        if _is_bf16(value):
            raise TypeError(f"{name} on the device must be float32 or float64, not bfloat16")
        d = _view(value)
        kind = np.dtype(d.dtype).kind
        if kind not in ("iu" if integer else "iuf"):
            what = "an integer" if integer else "a number"
            raise TypeError(f"{name} must be {what} array; got dtype {d.dtype} on the device")
        if d.ndim != 1 or d.shape[0] != self.B:
            raise ValueError(f"{name} has shape {tuple(d.shape)} but the batch has "
                             f"B={self.B} rows")
        return d

    def get(self, name, value, *, integer=False, check=None):
        if not (self.lazy and _backends.is_gpu_array(value)):
            return _param(name, value, self.B, self.stream, integer=integer, check=check)
        d = self._device(name, value, integer)
        if check is not None:
            self.deferred.append((d, _DEVICE_CHECKS[check]))
        return d

    def seeds(self, name, value):
        if not (self.lazy and _backends.is_gpu_array(value)):
            return as_seeds(name, _on_host(value, self.stream), self.B)
        d = self._device(name, value, True)
        if np.dtype(d.dtype).kind == "i":
            self.deferred.append((d, "non_negative"))
        return d


def _check_rows(ops, rows, stream):
    """Raise ``ValueError`` naming the invalid rows (one small device-to-host copy)."""
    bad = to_host(ops.invalid_rows(rows, stream), stream).astype(bool)
    if bad.any():
        raise_invalid(bad, _WHAT)


def _finish_tokens(ops, tokens, like, one_d, on_invalid, stream, deferred=()):
    """Raise for, or flag (-1), invalid rows; the caller's type (an int for 1-D).

    ``flag`` stays on the device (no host copy unless 1-D): -2 becomes -1, and so does
    every row whose ``deferred`` device parameter breaks its rule."""
    if on_invalid == "flag":
        ops.flag_invalid(tokens, stream)
        for values, check in deferred:
            ops.flag_params(tokens, values, check, stream)
        return int(to_host(tokens, stream)[0]) if one_d else wrap(tokens, like, ops, stream)
    flags = to_host(tokens, stream)
    invalid = flags == _INVALID
    if invalid.any():
        raise_invalid(invalid, _WHAT)
    return int(flags[0]) if one_d else wrap(tokens, like, ops, stream)


# ---------------------------------------------------------------------- the API


def _bitmask_args(bitmask, rows, B, V, stream):
    """A host or GPU packed bitmask (docs/spec.md §10), checked as on the host path:
    ``(uint32 (R, W) bitmask, host or device; int64 (B,) host rows)``. A GPU bitmask
    stays on the device (only its shape and dtype are read)."""
    if not _backends.is_gpu_array(bitmask):
        return _bitmask.as_bitmask(_arrays.plain(bitmask), B, V, _arrays.plain(rows))
    d = _view(bitmask)
    if np.dtype(d.dtype) not in (np.dtype(np.int32), np.dtype(np.uint32)):
        raise TypeError("bitmask must be a packed int32 (or uint32) array of shape "
                        f"(R, ceil(V/32)); got dtype {np.dtype(d.dtype)}")
    if d.ndim == 1:
        d = d.reshape(1, d.shape[0])
    if d.ndim != 2:
        raise ValueError(f"bitmask must be 2-D (R, ceil(V/32)); got ndim={d.ndim}")
    if d.shape[1] < _bitmask.words(V):
        raise ValueError(f"bitmask has {d.shape[1]} words per row but V={V} needs "
                         f"ceil(V/32)={_bitmask.words(V)}")
    if not d.is_c_contiguous():
        raise ValueError("a GPU bitmask must be C-contiguous")
    return d, _bitmask.as_rows(_on_host(rows, stream), B, d.shape[0])


def _masked_rows(ops, x, bitmask, rows, stream):
    """The rows with the bitmask applied (a float32 copy; a row with a NaN or +inf
    anywhere, allowed or not, gets a NaN: invalid for the kernels after it)."""
    words, r = _bitmask_args(bitmask, rows, x.shape[0], x.shape[1], stream)
    if np.dtype(x.dtype) != np.float32 or not x.is_c_contiguous():
        x = ops.to_rows(x, stream)
    return ops.apply_token_bitmask(x, words, r, stream=stream, poison=True)


def apply_token_bitmask(logits, bitmask, rows=None, out=None, *, backend="auto", stream=None):
    """``fs.apply_token_bitmask`` for GPU logits: float32 on the device; ``out`` None
    (a new array) or the logits themselves (float32, C-contiguous: in place)."""
    ops, x, one_d, stream = _rows(logits, "logits", backend, stream)
    words, r = _bitmask_args(bitmask, rows, x.shape[0], x.shape[1], stream)
    if out is None:
        return wrap(_unbatch(ops.apply_token_bitmask(x, words, r, stream=stream), one_d), logits)
    if out is not logits:
        raise ValueError("out must be None or the logits themselves on the GPU")
    d = _view(logits)
    if np.dtype(d.dtype) != np.float32 or not d.is_c_contiguous():
        raise TypeError("in place needs float32 C-contiguous GPU logits")
    ops.apply_token_bitmask(x, words, r, out=x, stream=stream)
    return out


def sample(logits, *, temperature, top_k, top_p, min_p, min_keep, seed, position,
           temperature_last, on_invalid, backend, stream=None, bitmask=None,
           bitmask_rows=None):
    """``fs.sample`` for GPU logits (same parameters; see ``fastsample.api.sample``)."""
    check_on_invalid(on_invalid)
    ops, x, one_d, stream = _rows(logits, "logits", backend, stream, direct=True)
    if bitmask is not None:
        x = _masked_rows(ops, x, bitmask, bitmask_rows, stream)
    P = _Params(x.shape[0], stream, lazy=on_invalid == "flag")
    t = P.get("temperature", temperature, check=FINITE)
    k = P.get("top_k", top_k, integer=True)
    p = P.get("top_p", top_p, check=NON_NEGATIVE)
    mp = P.get("min_p", min_p, check=NON_NEGATIVE)
    mk = P.get("min_keep", min_keep, integer=True, check=AT_LEAST_ONE)
    seeds = P.seeds("seed", seed)
    pos = P.seeds("position", position)
    tokens = ops.sample_canonical(x, k, p, mp, t, mk, bool(temperature_last), seeds, pos,
                                  stream)
    return _finish_tokens(ops, tokens, logits, one_d, on_invalid, stream, P.deferred)


def _rows(x, name, backend, stream, direct=False):
    """``(ops, (B, V) device rows, was_1d, numba stream)`` of GPU logits: float32, or
    (``direct``, for the sampling kernels) also float16 / bfloat16 bits read in place."""
    ops = _ops(backend, x)
    stream = as_stream(stream)
    rows, one_d = device_rows(x, name, ops, stream, direct)
    return ops, rows, one_d, stream


def _rows_checked(x, backend, stream):
    ops, rows, one_d, stream = _rows(x, "x", backend, stream)
    _check_rows(ops, rows, stream)
    return ops, rows, one_d, stream


def _unbatch(out, one_d):
    return out.reshape(out.shape[1]) if one_d else out


def softmax(x, temperature=1.0, *, backend="auto", stream=None):
    """``fs.softmax`` for GPU logits: float32 on the device, the shape of ``x``."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    t = _param("temperature", temperature, rows.shape[0], stream, check=POSITIVE)
    return wrap(_unbatch(ops.softmax(rows, t, stream), one_d), x)


def log_softmax(x, *, backend="auto", stream=None):
    """``fs.log_softmax`` for GPU logits: float32 on the device, the shape of ``x``."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    return wrap(_unbatch(ops.log_softmax(rows, stream), one_d), x)


def topk(x, k, *, backend="auto", stream=None):
    """``fs.topk`` for GPU logits: (values float32, indices int32) on the device."""
    ops, rows, one_d, stream = _rows_checked(x, backend, stream)
    V = rows.shape[1]
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer; got {k!r}")  # noqa: TRY004 (spec §7)
    if not 0 <= int(k) <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    values, indices = ops.topk(rows, int(k), stream)
    return wrap(_unbatch(values, one_d), x), wrap(_unbatch(indices, one_d), x, ops, stream)


# ---------------------------------------------------------------------- SamplerChain


class Plan(NamedTuple):
    """How a chain runs on cuda (``check_chain``)."""

    prelude: tuple   # LogitBias / Penalties / DRY stages, in chain order
    canonical: tuple  # ``SamplerChain._canonical_plan`` of the canonical stages
    xtc: object      # the XTC stage after the truncations, or None
    # AllowedTokens / BadWords / MinTokens among the leading edits: they only write
    # -inf, and every prelude stage keeps -inf, so they run first (same result)
    constraints: tuple = ()


_PRELUDE_DOC = ("LogitBias, Penalties and DRY (first, each at most once), then TopK, TopP, "
                "MinP and Temperature, with XTC after the truncations (before a last "
                "Temperature, or after a first one), ending in Dist")


def _no_kernel(stage, why=""):
    return _backends.BackendError(
        f"stage {stage.name} has no kernel on backend 'cuda'{why}: the cuda backend runs "
        + _PRELUDE_DOC)


def _split_xtc(chain, rest):
    """``(canonical plan, XTC stage or None)`` of the stages after the prelude, or
    ``BackendError`` naming XTC where it cannot run: XTC must follow every truncation
    and see what the plan's cuts see (raw logits with Temperature last, ``l / t`` with
    Temperature first), and share the truncations' ``min_keep`` (its floor is theirs)."""
    from .stages import XTC, Temperature

    at = [i for i, s in enumerate(rest) if type(s) is XTC]
    if not at:
        return chain._canonical_plan("cuda", rest), None
    xtc = rest[at[0]]
    if len(at) > 1:
        raise _no_kernel(xtc, " (twice)")
    canonical = rest[:at[0]] + rest[at[0] + 1:]
    plan = chain._canonical_plan("cuda", canonical)
    if plan is None:
        return None, xtc
    by_type, t_last = plan
    after = rest[at[0] + 1:-1]
    heated = any(type(s) is Temperature for s in rest[:at[0]])
    if len(by_type) == 1 and heated:   # Temperature, XTC: no cut, so "first" is the same
        t_last = False
    if any(type(s) is not Temperature for s in after) or heated == t_last:
        raise _no_kernel(xtc, " here (it runs after TopK, TopP and MinP, before a last "
                              "Temperature or after a first one)")
    truncs = [s for s in by_type.values() if type(s) is not Temperature]
    if truncs and not np.array_equal(np.asarray(truncs[0].min_keep), np.asarray(xtc.min_keep)):
        raise _no_kernel(xtc, f" with min_keep {xtc.min_keep!r} (the truncations have "
                              f"{truncs[0].min_keep!r}; cuda runs one shared min_keep)")
    return (by_type, t_last), xtc


def check_chain(chain):
    """The chain's cuda ``Plan``, or ``BackendError`` naming what breaks it.

    A chain runs on cuda when it is: LogitBias, Penalties and/or DRY first (at most one
    of each, in any order: one fused elementwise kernel, then DRY's sparse edits; with
    AllowedTokens / BadWords / MinTokens among them, which run before them),
    then a chain of ``fs.sample`` (TopK, TopP, MinP, Temperature; the fused canonical
    kernel), with XTC after the truncations (before a last Temperature, or after a
    first one), ending in Dist.
    """
    from .stages import (DRY, XTC, AllowedTokens, BadWords, Dist, LogitBias, MinP, MinTokens,
                         Penalties, Temperature, TopK, TopP)

    stages = chain.stages
    constraint_types = (AllowedTokens, BadWords, MinTokens)
    n = 0
    while n < len(stages) - 1 and type(stages[n]) in (LogitBias, Penalties, DRY,
                                                       *constraint_types):
        n += 1
    constraints = tuple(s for s in stages[:n] if type(s) in constraint_types)
    prelude = tuple(s for s in stages[:n] if type(s) not in constraint_types)
    n_prelude = len(prelude)
    if len({type(s) for s in prelude}) < n_prelude:
        raise _backends.BackendError(
            "the cuda backend runs at most one LogitBias, one Penalties and one DRY "
            f"stage; got {[s.name for s in prelude]}"
        )
    plan, xtc = _split_xtc(chain, stages[n:])
    if plan is not None:
        return Plan(prelude, plan, xtc, constraints)
    allowed = (TopK, TopP, MinP, Temperature, XTC)
    for stage in stages[n:-1]:
        if type(stage) not in allowed:
            break
    else:
        stage = stages[-1] if type(stages[-1]) is not Dist else None
    if stage is not None:
        raise _no_kernel(stage)
    raise _backends.BackendError(
        "this chain has no kernel on backend 'cuda': after LogitBias, Penalties and DRY "
        "it runs TopK, TopP, MinP and Temperature at most once each, truncations in that "
        "order, Temperature first or last, one shared min_keep, XTC after the "
        "truncations, ending in Dist"
    )


def _gpu_plan(chain):
    """``check_chain``'s plan, computed once per chain (not per token)."""
    if chain._gpu_plan is None:
        chain._gpu_plan = check_chain(chain)
    return chain._gpu_plan


def _chain_rows(chain, logits, stream):
    """``(plan, ops, rows, was_1d, stream)`` for a chain's GPU call; sizes its state."""
    _backends.load("cuda")  # check_chain's first step: an unusable cuda raises as there
    plan = _gpu_plan(chain)
    ops, x, one_d, stream = _rows(logits, "logits", chain._requested, stream, direct=True)
    chain._ensure_state(x.shape[0])
    return plan, ops, x, one_d, stream


def _canonical_args(chain, plan, B):
    """The canonical kernel's ``(top_k, top_p, min_p, temperature, min_keep,
    temperature_last)`` and XTC's ``(probability, threshold)`` (None without XTC).
    XTC's ``min_keep`` is the truncations' (``check_chain``), or the one when there
    are none."""
    from .stages import Temperature

    args = chain._fused_args(B, plan.canonical)
    if plan.xtc is None:
        return args, None
    probability, threshold, min_keep = plan.xtc.rows(B)
    if all(isinstance(s, Temperature) for s in plan.canonical[0].values()):
        args = (*args[:4], min_keep, args[5])
    return args, (probability, threshold)


def _counts(chain, pen, ops, B, V, history, stream):
    """Device ``(B, V)`` window counts for Penalties: the chain's own, kept on the
    device across calls (``accept_counts`` updates them), or those of ``history``
    (validated host rows)."""
    last_n = pen.rows(B)[3]
    if history is not None:
        return ops.counts_from_history(history, V, last_n, stream)
    state = chain._gpu_state
    if state.get("counts_V") != V:
        state["counts"] = ops.counts_from_history(chain._own_history(V), V, last_n, stream)
        state["counts_V"] = V
    return state["counts"]


def accept_counts(chain, tokens):
    """Keep the chain's device counts current as ``accept`` appends ``tokens`` (host,
    before the append): +1 for each new token, -1 for the token leaving its window."""
    state = chain._gpu_state
    if state.get("counts_V") is None:
        return
    if tokens.size and int(tokens.max()) >= state["counts_V"]:
        state.pop("counts_V")   # rebuilt (and refused, naming the row) at the next call
        return
    from .stages import Penalties

    ops = _backends.load("cuda")
    pen = next(s for s in _gpu_plan(chain)[0] if isinstance(s, Penalties))
    add, remove = ops.window_deltas(chain.history, tokens, pen.rows(chain._B)[3])
    ops.update_counts(state["counts"], add, remove, state["stream"])


def _prelude_order(ops, stages):
    """The ``ORDER_*`` code of the LogitBias / Penalties among ``stages``."""
    from .stages import LogitBias, Penalties

    return ops.order_of(["bias" if isinstance(s, LogitBias) else "penalties"
                         for s in stages if isinstance(s, (LogitBias, Penalties))])


def _dry(chain, dry, prelude, ops, B, V, history, stream):
    """``prelude``'s ``dry`` argument: DRY's edits from the rows' histories (the
    chain's own, or validated ``history``), found on the host (``kernels/cuda/dry.py``),
    and the orders of the stages before and after DRY."""
    state = chain._gpu_state
    if state.get("dry_V") != V:   # validates the breakers against V
        state["dry_table"] = ops.breaker_table(dry.breakers, V)
        state["dry_V"] = V
    hist = chain._own_history(V) if history is None else history
    edits = ops.dry_edits(hist, V, *dry.rows(B), state["dry_table"], stream)
    at = next(i for i, s in enumerate(prelude) if s is dry)
    return edits, _prelude_order(ops, prelude[:at]), _prelude_order(ops, prelude[at + 1:])


def _apply_prelude(chain, prelude, ops, x, history, history_len, one_d, stream):
    """The logits after the chain's LogitBias / Penalties / DRY stages (one fused
    kernel, then DRY's edits), or ``x`` itself when there are none. A ``history`` is
    validated either way, as on the host path."""
    if history is not None:
        history = as_history(history, history_len, x.shape[0], x.shape[1], one_d)
    if not prelude:
        return x
    from .stages import DRY, LogitBias, Penalties

    B, V = x.shape
    pen = next((s for s in prelude if isinstance(s, Penalties)), None)
    bias = next((s for s in prelude if isinstance(s, LogitBias)), None)
    dry = next((s for s in prelude if isinstance(s, DRY)), None)
    state = chain._gpu_state
    state["stream"] = stream   # accept's count updates follow the chain's last call
    if pen is not None:
        counts, rows = _counts(chain, pen, ops, B, V, history, stream), pen.rows(B)[:3]
    else:   # kept: numba allocates device memory synchronously, so not per token
        counts, *rows = state.setdefault("no_penalties", ops.no_penalties())
    if bias is not None:
        if state.get("bias_V") != V:
            ids = as_token_ids("LogitBias token", bias.ids, V)
            state["bias"] = ops.bias_tables(ids, bias.values, V, stream)
            state["bias_V"] = V
        tables = state["bias"]
    else:
        tables = state.setdefault("no_bias", ops.no_bias())
    edits = None if dry is None else _dry(chain, dry, prelude, ops, B, V, history, stream)
    # The output buffer is reused by the next call on the same stream, which is
    # ordered after this call's canonical kernel has read it.
    key = (x.shape, getattr(getattr(stream, "handle", None), "value", id(stream)) if stream
           else 0)
    if state.get("out_key") != key:
        state["out"] = _cuda().device_array(x.shape, np.float32, stream=stream)
        state["out_key"] = key
    return ops.prelude(x, state["out"], counts, *rows, tables, _prelude_order(ops, prelude),
                       stream, dry=edits)


def _apply_constraints(chain, stages, ops, x, history, history_len, position, one_d, stream,
                       fresh):
    """The rows after the chain's AllowedTokens / BadWords / MinTokens stages (``x``
    itself when there are none). They edit a float32 copy (``fresh``: ``x`` is one
    already, the bitmask's); a banned NaN or +inf is kept (the row stays invalid, as
    the input is), and AllowedTokens' bitmask poisons such a row the same way. The
    bans come from host state: the histories and the positions."""
    if not stages:
        return x
    from .stages import AllowedTokens, BadWords, MinTokens

    B, V = x.shape
    if not fresh:
        x = ops.to_rows(x, stream)
    for stage in stages:
        if isinstance(stage, AllowedTokens):
            ids = as_token_ids("AllowedTokens token", stage.ids, V)
            ops.apply_token_bitmask(x, ops.pack_ids(ids, V), np.zeros(B, np.int64), out=x,
                                    stream=stream, poison=True)
        elif isinstance(stage, BadWords):
            as_token_ids("BadWords token", stage.tokens, V)
            hist = (as_history(history, history_len, B, V, one_d) if history is not None
                    else chain._own_history(V, max(stage.window, 1)))
            ops.bad_words(x, hist, stage.tokens, stage.offsets, out=x, stream=stream,
                          keep_bad=True)
        elif isinstance(stage, MinTokens):
            ids = as_token_ids("MinTokens stop id", stage.stop_ids, V)
            ops.min_tokens(x, stage.rows(B)[0], ids, _on_host(position, stream), out=x,
                           stream=stream, keep_bad=True)
    return x


def chain_sample(chain, logits, history=None, history_len=None, position=None, stream=None,
                 bitmask=None, bitmask_rows=None):
    """``SamplerChain.sample`` for GPU logits (its cuda plan, see ``check_chain``)."""
    plan, ops, x, one_d, stream = _chain_rows(chain, logits, stream)
    if bitmask is not None:   # before every stage
        x = _masked_rows(ops, x, bitmask, bitmask_rows, stream)
    B = x.shape[0]
    P = _Params(B, stream, lazy=chain.on_invalid == "flag")
    pos = chain.positions if position is None else P.seeds("position", position)
    x = _apply_constraints(chain, plan.constraints, ops, x, history, history_len, pos, one_d,
                           stream, fresh=bitmask is not None)
    x = _apply_prelude(chain, plan.prelude, ops, x, history, history_len, one_d, stream)
    args, xtc = _canonical_args(chain, plan, B)
    tokens = ops.sample_canonical(x, *args, chain._seeds, pos, stream, xtc=xtc)
    return _finish_tokens(ops, tokens, logits, one_d, chain.on_invalid, stream, P.deferred)


def chain_process(chain, logits, history=None, history_len=None, stream=None, position=None,
                  bitmask=None, bitmask_rows=None):
    """``SamplerChain.process`` for GPU logits: the masked logits, on the device.
    ``position`` (default: the chain's) feeds XTC's roll."""
    plan, ops, x, one_d, stream = _chain_rows(chain, logits, stream)
    if bitmask is not None:   # before every stage
        x = _masked_rows(ops, x, bitmask, bitmask_rows, stream)
    B = x.shape[0]
    pos = chain.positions if position is None else as_seeds("position", position, B)
    x = _apply_constraints(chain, plan.constraints, ops, x, history, history_len, pos, one_d,
                           stream, fresh=bitmask is not None)
    x = _apply_prelude(chain, plan.prelude, ops, x, history, history_len, one_d, stream)
    if chain.on_invalid == "raise":
        _check_rows(ops, x, stream)
    # flagged invalid rows come back all -inf from the kernel
    args, xtc = _canonical_args(chain, plan, B)
    out = ops.process_canonical(x, *args, stream, xtc=xtc, seed=chain._seeds, position=pos)
    return wrap(_unbatch(out, one_d), logits)
