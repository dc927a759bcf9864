"""The CUDA backend: the functions of ``fastsample.reference`` it implements.

Same names and results as the reference (``docs/internals.md``) for ``softmax``,
``log_softmax``, ``topk``, ``draw``, ``argmax``, ``invalid_rows``, ``logit_bias``,
``penalties`` and ``dry``, plus the fused canonical chain ``sample_canonical`` (as
``kernels/cpu/canonical.py``, token -2 for an invalid row; optionally with XTC after
the truncations) and ``process_canonical`` (the logits that chain would draw from),
and what ``fastsample.gpu`` builds chains from: the LogitBias/Penalties/DRY
``prelude`` with its device counts, bias tables and DRY edits
(``kernels/cuda/stages.py``, ``kernels/cuda/dry.py``), and the token fix-ups
(``flag_invalid``, ``flag_params``, ``to_int64``).

Every function takes host (numpy) or device arrays. Host logits are copied to the
device and the result comes back as numpy (the backend contract, used by the
reference checks); device logits give device results (numba device arrays) and are
never copied to the host. Device logits are ``(B, V)``: float32 C-contiguous for
every function; ``sample_canonical``, ``process_canonical``, ``prelude`` and
``invalid_rows`` also read float16, bfloat16 bits (int16/uint16) and any strides in
place (``target.load``); ``to_rows`` converts the rest. Parameters may be host
or device arrays of shape ``(B,)`` (or scalars). ``stream`` is a numba stream or 0.
"""

from __future__ import annotations

import time

import numpy as np
from numba import cuda

from . import arrays as _arrays
from . import canonical as _canonical
from . import dry as _dry
from . import split as _split
from . import stages as _stages
from . import transfer
from .dry import breaker_table, dry, dry_edits
from .logprobs import logprobs
from .stages import (
    ORDER_BIAS,
    ORDER_BIAS_PENALTIES,
    ORDER_NONE,
    ORDER_PENALTIES,
    ORDER_PENALTIES_BIAS,
    bias_tables,
    counts_from_history,
    logit_bias,
    no_bias,
    no_penalties,
    order_of,
    penalties,
    prelude,
    update_counts,
    window_deltas,
)
from .constraints import allowed_tokens, apply_token_bitmask, bad_words, min_tokens, pack_ids
from .target import SIM, SPLIT_BELOW_ROWS, TPB
from .verify import verify_rows

__all__ = [
    "allowed_tokens",
    "apply_token_bitmask",
    "bad_words",
    "min_tokens",
    "pack_ids",
    "INVALID",
    "ORDER_BIAS",
    "ORDER_BIAS_PENALTIES",
    "ORDER_NONE",
    "ORDER_PENALTIES",
    "ORDER_PENALTIES_BIAS",
    "PARAM_CHECKS",
    "SIM",
    "TPB",
    "argmax",
    "bias_tables",
    "breaker_table",
    "counts_from_history",
    "draw",
    "dry",
    "dry_edits",
    "flag_invalid",
    "flag_params",
    "invalid_rows",
    "log_softmax",
    "logit_bias",
    "logprobs",
    "no_bias",
    "no_penalties",
    "order_of",
    "penalties",
    "prelude",
    "process_canonical",
    "sample_canonical",
    "softmax",
    "to_int64",
    "to_rows",
    "topk",
    "update_counts",
    "verify_rows",
    "warmup",
    "window_deltas",
]

INVALID = _canonical.INVALID


def _param(a, B, dtype, stream):
    """One ``(B,)`` parameter on the device (see ``transfer.upload``)."""
    return transfer.upload(B, stream, (a, dtype))[0]


def to_rows(src, stream=0):
    """Float32 C-contiguous ``(B, V)`` copy on the device of a 1-D or 2-D device array
    of any float dtype and strides, or of bfloat16 bits as int16/uint16 (numba has no
    bfloat16 type)."""
    if src.ndim == 1:
        out = cuda.device_array((1, src.shape[0]), np.float32, stream=stream)
        _arrays.cast1_kernel[1, TPB, stream](src, out)
        return out
    out = cuda.device_array(src.shape, np.float32, stream=stream)
    if src.shape[0]:
        _arrays.cast_kernel[src.shape[0], TPB, stream](src, out)
    return out


def _use_split(B, V, split):
    """The split path (several blocks per row) for small batches of multi-chunk rows,
    unless ``split`` forces a path. Both give identical bits (``split.py``)."""
    if split is None:
        return B < SPLIT_BELOW_ROWS and _split.chunks(V) > 1
    return bool(split)


def _no_xtc(xtc):
    """XTC's ``(probability, threshold)``; probability 0 (docs/spec.md §4: a no-op) for None."""
    return (0.0, 1.0) if xtc is None else xtc


def sample_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
                     temperature_last, seed, position, stream=0, split=None, xtc=None):
    """Draw one token per row with the canonical chain of ``fs.sample``.

    Parameters
    ----------
    logits : (B, V), host or device: float32, or on the device float16 or bfloat16 bits
        (int16/uint16), any strides. Not modified.
    top_k, min_keep : int64 (B,)      (min_keep >= 1)
    top_p, min_p, temperature : float64 (B,)
    temperature_last : bool           True: llama.cpp order; False: HF order.
    seed, position : uint64 (B,)
    stream : numba stream or 0
    split : bool or None
        None: split each row across blocks when ``B < SPLIT_BELOW_ROWS`` and a row has
        more than one ``CHUNK``; True/False force the split/one-block path.
    xtc : ``(probability, threshold)``, float64 (B,) each, or None
        XTC after the truncations (before a last Temperature; after a first one in HF
        order), with ``min_keep`` as its floor; ``kernels/cuda/xtc.py``.

    Returns
    -------
    int32 (B,), numpy for host logits else a device array: the reference chain's
    token, ``INVALID`` (-2) for a row with NaN, +inf or every logit masked.
    """
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    if not B:
        return transfer.back(cuda.device_array(0, np.int32, stream=stream), host, stream)
    xp, xt = _no_xtc(xtc)
    k, p, mp, t, mk, s, pos, dxp, dxt = transfer.upload(
        B, stream, (top_k, np.int64), (top_p, np.float64), (min_p, np.float64),
        (temperature, np.float64), (min_keep, np.int64), (seed, np.uint64),
        (position, np.uint64), (xp, np.float64), (xt, np.float64))
    if _use_split(B, V, split):
        needed = _split.stages_needed(top_k, top_p, min_p, min_keep, xp, xt)
        out = _split.sample_split(x, (k, p, mp, t, mk), temperature_last, (dxp, dxt), s, pos,
                                  needed, stream)
    else:   # the tokens and the draw's chunk sums: one allocation
        out, cs = _split.carve(((B,), np.int32), ((B, _split.chunks(V)), np.float64),
                               stream=stream)
        _canonical.sample_kernel[B, TPB, stream](x, k, p, mp, t, mk, bool(temperature_last),
                                                dxp, dxt, s, pos, cs, out)
    return transfer.back(out, host, stream)


def process_canonical(logits, top_k, top_p, min_p, temperature, min_keep,
                      temperature_last, stream=0, split=None, xtc=None, seed=0, position=0):
    """The logits the canonical chain's draw would use (masked = -inf), float32 (B, V);
    an invalid row comes back all -inf. Host or device, ``split`` and ``xtc`` as
    ``sample_canonical``; ``seed``/``position`` feed XTC's roll (stream 1) only."""
    x, host = transfer.rows(logits, stream)
    B, V = x.shape
    out = cuda.device_array(x.shape, np.float32, stream=stream)
    if B:
        status = cuda.device_array(B, np.int32, stream=stream)
        xp, xt = _no_xtc(xtc)
        k, p, mp, t, mk, s, pos, dxp, dxt = transfer.upload(
            B, stream, (top_k, np.int64), (top_p, np.float64), (min_p, np.float64),
            (temperature, np.float64), (min_keep, np.int64), (seed, np.uint64),
            (position, np.uint64), (xp, np.float64), (xt, np.float64))
        if _use_split(B, V, split):
            needed = _split.stages_needed(top_k, top_p, min_p, min_keep, xp, xt)
            _split.process_split(x, (k, p, mp, t, mk), temperature_last, (dxp, dxt), s, pos,
                                 out, status, needed, stream)
        else:
            _canonical.process_kernel[B, TPB, stream](x, k, p, mp, t, mk,
                                                     bool(temperature_last), dxp, dxt, s,
                                                     pos, out, status)
    return transfer.back(out, host, stream)


def _tokens(logits, temperature, seed, position, stream):
    """The canonical kernel with every truncation off; -1 for a row with no finite
    logit (the reference's convention for ``draw`` and ``argmax``)."""
    x, host = transfer.rows(logits, stream)
    out = sample_canonical(x, 0, 1.0, 0.0, temperature, 1, True, seed, position, stream)
    return transfer.back(flag_invalid(out, stream), host, stream)


def draw(logits, seed, position, stream=0):
    """Spec §5 draw (stream 0) per row; int32 (B,), -1 for a row with no finite logit."""
    return _tokens(logits, 1.0, seed, position, stream)


def argmax(logits, stream=0):
    """The first maximum of each row; int32 (B,), -1 for a row with no finite logit."""
    return _tokens(logits, 0.0, 0, 0, stream)


def invalid_rows(logits, stream=0):
    """Boolean (B,): rows with NaN or +inf, or with every logit -inf."""
    x, host = transfer.rows(logits, stream)
    B = x.shape[0]
    out = cuda.device_array(B, np.uint8, stream=stream)
    if B:
        _canonical.invalid_kernel[B, TPB, stream](x, out)
    if host:
        return transfer.back(out, True, stream).astype(bool)
    return out


def softmax(x, temperature=1.0, stream=0):
    """Softmax of ``x / t`` over each row's finite logits (masked -> 0), float32."""
    rows, host = transfer.rows(x, stream)
    B = rows.shape[0]
    out = cuda.device_array(rows.shape, np.float32, stream=stream)
    if B:
        t = _param(temperature, B, np.float64, stream)
        _arrays.softmax_kernel[B, TPB, stream](rows, t, out)
    return transfer.back(out, host, stream)


def log_softmax(x, stream=0):
    """Log-softmax over each row's finite logits (masked -> -inf), float32."""
    rows, host = transfer.rows(x, stream)
    B = rows.shape[0]
    out = cuda.device_array(rows.shape, np.float32, stream=stream)
    if B:
        _arrays.log_softmax_kernel[B, TPB, stream](rows, out)
    return transfer.back(out, host, stream)


def topk(x, k, stream=0):
    """The k largest per row: exactly k (0 <= k <= V), descending, ties to the lower id.

    Returns ``(values float32 (B, k), indices int32 (B, k))``.
    """
    rows, host = transfer.rows(x, stream)
    B, V = rows.shape
    k = int(k)
    if not 0 <= k <= V:
        raise ValueError(f"k must be in [0, V={V}]; got {k}")
    values = cuda.device_array((B, k), np.float32, stream=stream)
    indices = cuda.device_array((B, k), np.int32, stream=stream)
    if B and k:
        cand_v = cuda.device_array((B, k), np.float32, stream=stream)
        cand_i = cuda.device_array((B, k), np.int32, stream=stream)
        _arrays.topk_kernel[B, TPB, stream](rows, k, cand_v, cand_i, values, indices)
    return transfer.back(values, host, stream), transfer.back(indices, host, stream)


def _row_grid(B):
    return (B + TPB - 1) // TPB, TPB


def flag_invalid(tokens, stream=0):
    """On the device: token -2 (invalid row) becomes -1, in place."""
    B = tokens.shape[0]
    if B:
        _arrays.replace_kernel[_row_grid(B) + (stream,)](tokens, INVALID, -1)
    return tokens


PARAM_CHECKS = {"finite": _arrays.CHECK_FINITE, "non_negative": _arrays.CHECK_NON_NEGATIVE,
                "at_least_one": _arrays.CHECK_AT_LEAST_ONE}


def flag_params(tokens, values, check, stream=0):
    """On the device: ``tokens[b] = -1`` where the device parameter ``values[b]`` fails
    ``check`` (a key of ``PARAM_CHECKS``), in place; nothing is copied to the host."""
    B = tokens.shape[0]
    if B:
        _arrays.flag_params_kernel[_row_grid(B) + (stream,)](tokens, values,
                                                            PARAM_CHECKS[check])
    return tokens


def to_int64(tokens, stream=0):
    """A new int64 copy of int32 tokens, made on the device (on ``stream``)."""
    B = tokens.shape[0]
    out = cuda.device_array(B, np.int64, stream=stream)
    if B:
        _arrays.widen_kernel[_row_grid(B) + (stream,)](tokens, out)
    return out


def warmup():
    """Compile (or load from numba's cache) every kernel on tiny inputs.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    x = cuda.to_device(np.linspace(-3.0, 3.0, 64, dtype=np.float32).reshape(2, 32))
    for temperature_last in (True, False):
        sample_canonical(x, 4, 0.9, 0.05, 0.8, 1, temperature_last, 0, 0, split=False)
        process_canonical(x, 4, 0.9, 0.05, 0.8, 1, temperature_last, split=False)
    # the split path's kernels (one set of types: the order is a runtime flag)
    sample_canonical(x, 4, 0.9, 0.05, 0.8, 2, True, 0, 0, split=True)
    process_canonical(x, 4, 0.9, 0.05, 0.8, 2, True, split=True)
    # XTC's passes (seed 1, position 0 rolls below 0.9)
    sample_canonical(x, 0, 1.0, 0.05, 0.8, 2, True, 1, 0, split=True, xtc=(0.9, 0.01))
    sample_canonical(x, 0, 1.0, 0.05, 0.8, 2, True, 1, 0, split=False, xtc=(0.9, 0.01))
    flag_invalid(draw(x, 0, 0))
    invalid_rows(x)
    softmax(x)
    log_softmax(x)
    topk(x, 3)
    to_rows(cuda.to_device(np.zeros((2, 3), np.float16)))
    to_rows(cuda.to_device(np.zeros(3, np.float64)))
    to_rows(cuda.to_device(np.zeros((2, 3), np.int16)))   # torch bfloat16 bits
    tokens = flag_invalid(draw(x, 0, 0))
    to_int64(flag_params(tokens, cuda.to_device(np.ones(2)), "non_negative"))
    _stages.warmup()
    _dry.warmup()
    cuda.synchronize()
    return time.perf_counter() - start
