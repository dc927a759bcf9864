"""Input checks and normalisation (docs/spec.md §3 and §7).

Everything the public API receives passes through here before a backend sees it,
so kernels can assume: float32 C-contiguous ``(B, V)`` logits, ``(B,)`` parameter
arrays, in-range token ids and uint64 seeds/positions.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_logits", "invalid_rows", "check_on_invalid", "raise_invalid", "per_row",
    "as_seeds", "as_history", "as_token_ids", "is_u64", "Check",
]

_U64_MAX = 2**64 - 1


def _is_float_dtype(dtype):
    return dtype.kind == "f" or dtype.name == "bfloat16"


def as_logits(x, name="logits"):
    """Validate logits; return ``(float32 C-contiguous (B, V) array, was_1d)``.

    The input is never modified: a float32 contiguous input is used as is (kernels
    never write to their input), anything else is converted into a new array.
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a float array of shape (V,) or (B, V): {exc}") from None
    if not _is_float_dtype(arr.dtype):
        raise TypeError(
            f"{name} must be a floating-point array (float16, float32, float64 or "
            f"bfloat16); got dtype {arr.dtype}"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (V,) or 2-D (B, V); got ndim={arr.ndim}")
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one token (V >= 1); got V=0")
    one_d = arr.ndim == 1
    out = np.ascontiguousarray(arr, dtype=np.float32)
    return (out[None, :] if one_d else out), one_d


def invalid_rows(logits):
    """Boolean ``(B,)``: rows with NaN or +inf, or with every logit ``-inf``.

    One pass: a row's max is NaN if it holds a NaN, +inf if it holds +inf, and -inf
    if every logit is masked, so all three show as a non-finite row max.
    """
    if logits.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return ~np.isfinite(logits.max(axis=1))


def check_on_invalid(on_invalid):
    if on_invalid not in ("raise", "flag"):
        raise ValueError(f"on_invalid must be 'raise' or 'flag'; got {on_invalid!r}")
    return on_invalid


def raise_invalid(rows, what):
    rows = [int(r) for r in np.nonzero(rows)[0]]
    shown = rows if len(rows) <= 20 else rows[:20] + ["..."]
    raise ValueError(
        f"invalid logits in rows {shown}: {what} "
        "(pass on_invalid='flag' to get token -1 for such rows instead)"
    )


class Check:
    """An elementwise range check with the words used in its error message."""

    def __init__(self, ok, desc):
        self.ok = ok
        self.desc = desc


def _scalar_or_array(name, value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or a 1-D array of numbers; got a bool")
    if isinstance(value, numbers.Number):
        return np.asarray(value), True
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr, True
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D per-row array; got ndim={arr.ndim}")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers; got dtype {arr.dtype}")
    return arr, False


_SCALAR_ROWS: dict = {}


def per_row(name, value, B=None, *, integer=False, check=None):
    """Validate a per-row parameter; broadcast it to ``(B,)`` when B is given.

    ``value`` is a Python scalar or a length-B 1-D array. Returns float64 (or int64
    for ``integer=True``). Raises ``ValueError`` naming ``name`` on a wrong length,
    NaN, a non-integer where an integer is needed, or a value failing ``check``.

    Python scalars are the common case on the per-token hot path, so their validated
    ``(B,)`` arrays are cached; callers (and kernels) never write to them.
    """
    if B is not None and type(value) in (int, float):
        key = (name, value, B, integer, check)
        hit = _SCALAR_ROWS.get(key)
        if hit is None:
            if len(_SCALAR_ROWS) > 4096:
                _SCALAR_ROWS.clear()
            hit = _SCALAR_ROWS[key] = _per_row(name, value, B, integer, check)
        return hit
    return _per_row(name, value, B, integer, check)


def _per_row(name, value, B, integer, check):
    arr, scalar = _scalar_or_array(name, value)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a number; got {value!r}")
    if not scalar and B is not None and arr.shape[0] != B:
        raise ValueError(f"{name} has length {arr.shape[0]} but the batch has B={B} rows")
    f = arr.astype(np.float64)
    if np.isnan(f).any():
        raise ValueError(f"{name} must not be NaN")
    if integer:
        if arr.dtype.kind == "f" and (~np.isfinite(f) | (f != np.floor(f))).any():
            bad = f[~np.isfinite(f) | (f != np.floor(f))][0]
            raise ValueError(f"{name} must be an integer; got {bad}")
        out = arr.astype(np.int64)
    else:
        out = f
    if check is not None:
        ok = check.ok(out)
        if not np.all(ok):
            bad = out[~np.asarray(ok)] if out.ndim else out
            raise ValueError(f"{name} must be {check.desc}; got {np.ravel(bad)[0]}")
    if B is None:
        return out
    return np.broadcast_to(out, (B,)).copy() if scalar else out


def is_u64(value):
    """Whether ``value`` is a plain Python int that ``as_seeds`` accepts (the hot path)."""
    return type(value) is int and 0 <= value <= _U64_MAX


def as_seeds(name, value, B):
    """Seeds and positions: non-negative integers < 2**64, as uint64 ``(B,)``."""
    if is_u64(value):  # the per-token hot path
        return np.array([value] * B, dtype=np.uint64)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if not 0 <= int(value) <= _U64_MAX:
            raise ValueError(f"{name} must be an integer in [0, 2**64); got {int(value)}")
        return np.array([int(value)] * B, dtype=np.uint64)
    arr, scalar = _scalar_or_array(name, value)
    if arr.dtype.kind == "f":
        f = arr.astype(np.float64)
        ok = np.isfinite(f) & (f == np.floor(f)) & (f >= 0) & (f < 2.0**64)
        if not ok.all():
            raise ValueError(f"{name} must be an integer in [0, 2**64); got {np.ravel(f[~ok])[0]}")
    elif arr.dtype.kind == "i" and (arr < 0).any():
        raise ValueError(f"{name} must be an integer in [0, 2**64); got {np.ravel(arr[arr < 0])[0]}")
    if not scalar and arr.shape[0] != B:
        raise ValueError(f"{name} has length {arr.shape[0]} but the batch has B={B} rows")
    out = arr.astype(np.uint64)
    return np.full(B, out, dtype=np.uint64) if scalar else out


def as_token_ids(name, seq, V):
    """A 1-D sequence of token ids in ``[0, V)`` as int64."""
    arr = np.asarray(seq)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of token ids; got ndim={arr.ndim}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer token ids; got dtype {arr.dtype}")
    out = arr.astype(np.int64)
    bad = (out < 0) | (out >= V)
    if bad.any():
        raise ValueError(f"{name} has token {int(out[bad][0])} outside [0, V={V})")
    return out


def as_history(history, history_len, B, V, one_d):
    """Normalise a history to a list of B int64 arrays (oldest first), checked in [0, V).

    Accepted forms (spec §3): for 1-D logits one 1-D int array; otherwise a list of B
    1-D int arrays, or a 2-D ``(B, L)`` int array with optional ``history_len (B,)``.
    """
    if history is None:
        return None
    if one_d:
        return [as_token_ids("history", history, V)]
    if isinstance(history, np.ndarray) and history.ndim == 2:
        if history.shape[0] != B:
            raise ValueError(f"history has {history.shape[0]} rows but the batch has B={B} rows")
        L = history.shape[1]
        lens = (
            np.full(B, L, dtype=np.int64)
            if history_len is None
            else per_row("history_len", history_len, B, integer=True,
                         check=Check(lambda v: (v >= 0) & (v <= L), f"in [0, {L}]"))
        )
        return [as_token_ids(f"history row {b}", history[b, : lens[b]], V) for b in range(B)]
    if history_len is not None:
        raise ValueError("history_len goes with a 2-D (B, L) history array")
    rows = list(history)
    if len(rows) != B:
        raise ValueError(f"history has {len(rows)} rows but the batch has B={B} rows")
    return [as_token_ids(f"history row {b}", h, V) for b, h in enumerate(rows)]
