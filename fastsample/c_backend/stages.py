"""Python wrappers of the C stage kernels (``csrc/stages.c``).

Every function has the name, signature and result of its counterpart in
``fastsample.reference`` (docs/internals.md) and returns a new float32 ``(B, V)``
array. The wrappers convert inputs to the exact dtypes the C side expects, allocate
the kernels' workspaces with numpy (kept per thread, grown on demand), and spread the rows
over threads with ``over_rows`` (cffi releases the GIL during each call). The C
side checks every size, offset and token id it indexes with; a failure comes back
as a status code, raised here as ``ValueError``.
"""

from __future__ import annotations

import functools

import numpy as np

from ._util import buf, f32, f64, flat_history, i64, lib, over_rows, u64, workspace

__all__ = [
    "dry",
    "dry_penalty",
    "logit_bias",
    "min_p",
    "penalties",
    "temperature",
    "top_k",
    "top_n_sigma",
    "top_p",
    "typical",
    "xtc",
]

_MESSAGES = {
    lib.FS_STAGE_E_SIZE: "inconsistent sizes or a workspace too small",
    lib.FS_STAGE_E_OFFSETS: "history offsets out of order or past the history",
    lib.FS_STAGE_E_HISTORY: "history token outside [0, {V})",
    lib.FS_STAGE_E_ID: "token id outside [0, {V})",
    lib.FS_STAGE_E_UNSORTED: "bias ids not sorted",
}


def _check(rc, name, V):
    if rc != lib.FS_STAGE_OK:
        msg = _MESSAGES.get(rc, "error code {rc}").format(V=V, rc=rc)
        raise ValueError(f"{name} (C backend): {msg}")


def _logits(logits):
    x = f32(logits)
    if x.ndim != 2:
        raise ValueError(f"logits must be (B, V), got shape {x.shape}")
    return x


def _rows(value, B, conv):
    """A per-row parameter (scalar or (B,)) as a contiguous (B,) array of conv's dtype."""
    a = np.asarray(value)
    if a.ndim and a.shape != (B,):
        raise ValueError(f"per-row parameter has shape {a.shape}, expected ({B},)")
    return conv(a if a.shape == (B,) else np.broadcast_to(a, (B,)))


def _token_ids(ids, V, what):
    ids = i64(np.asarray(ids).ravel())
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{what} token outside [0, {V})")
    return ids


def _out(x, logits, out):
    """A new result array, ``out`` itself (float32, C-contiguous, the shape of
    ``logits``: C copies each row there and edits it, in its threads), or ``logits``
    itself for an in-place edit (``out is logits``)."""
    if out is None:
        return np.empty_like(x)
    if out is logits and x is logits:
        return x
    if out is logits or not (isinstance(out, np.ndarray) and out.dtype == np.float32
                             and out.flags.c_contiguous and out.flags.writeable
                             and out.shape == x.shape):
        raise ValueError("out must be None, the logits array itself, or a writable "
                         "C-contiguous float32 array of the logits' shape")
    return out


def _history_rows(logits, history, out=None):
    """The start of a history stage: ``(x, out, hist, offsets)``, with ``hist`` None
    when there are no rows (nothing to run)."""
    x = _logits(logits)
    out = _out(x, logits, out)
    B = x.shape[0]
    if B == 0:
        return x, out, None, None
    if len(history) != B:
        raise ValueError(f"history has {len(history)} rows, logits have {B}")
    return (x, out, *flat_history(history))


def _breaker_table(breakers, V):
    return _table(_token_ids(breakers, V, "DRY breaker").tobytes(), V)


@functools.lru_cache(maxsize=16)
def _table(ids, V):
    """The (V,) uint8 breaker table of int64 ids (as bytes): made once per chain and V,
    not per token (never written)."""
    table = np.zeros(V, np.uint8)
    table[np.frombuffer(ids, np.int64)] = 1
    return table


# ------------------------------------------------------------------ logit-space stages


def logit_bias(logits, ids, values, out=None):
    """``l[t] += bias``; a ``-inf`` bias bans the token; repeated ids add up.

    ``out=logits`` edits ``logits`` in place (the history stages take it too).
    """
    x = _logits(logits)
    B, V = x.shape
    ids = _token_ids(ids, V, "bias")
    values = f64(np.asarray(values, dtype=np.float64).ravel())
    if ids.shape != values.shape:
        raise ValueError(f"logit_bias has {ids.size} ids but {values.size} values")
    order = np.argsort(ids, kind="stable")  # runs of one id keep their given order
    sid, svals = i64(ids[order]), f64(values[order])
    out = _out(x, logits, out)

    def run(a, b):
        _check(lib.fs_logit_bias(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(sid),
                                 buf(svals), sid.size), "logit_bias", V)

    over_rows(B, run)
    return out


def penalties(logits, history, repeat, frequency, presence, last_n, out=None):
    """Repetition, frequency and presence penalties over the last ``last_n`` tokens.

    Touches only the tokens of each row's window; counts live in a workspace of V
    int32 per block of rows.
    """
    x, out, hist, offsets = _history_rows(logits, history, out)
    if hist is None:
        return out
    B, V = x.shape
    rep, freq, pres = (_rows(v, B, f64) for v in (repeat, frequency, presence))
    ln = _rows(last_n, B, i64)

    def run(a, b):
        # no zeroing needed: C zeroes the entries it counts in and leaves them zero
        counts, counts_len = workspace("counts", np.int32, V)
        _check(lib.fs_penalties(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(hist), hist.size,
                                buf(offsets[a:b + 1]), buf(rep[a:b]), buf(freq[a:b]),
                                buf(pres[a:b]), buf(ln[a:b]), counts, counts_len),
               "penalties", V)

    over_rows(B, run)
    return out


def _window_lengths(offsets, last_n):
    """Each row's window length, as a list (one row, the per-token path: plain ints)."""
    if last_n.size == 1:
        n, w = int(offsets[1] - offsets[0]), int(last_n[0])
        return [min(n, w) if w > 0 else n]
    lengths = np.diff(offsets)
    return np.where(last_n > 0, np.minimum(lengths, last_n), lengths).tolist()


def dry(logits, history, multiplier, base, allowed_length, last_n, breakers, out=None):
    """DRY penalty of docs/spec.md §4.1 per row (Z-algorithm, linear in the window length)."""
    x, out, hist, offsets = _history_rows(logits, history, out)
    if hist is None:
        return out
    B, V = x.shape
    mult, bs = _rows(multiplier, B, f64), _rows(base, B, f64)
    allowed, ln = _rows(allowed_length, B, i64), _rows(last_n, B, i64)
    table = _breaker_table(breakers, V)
    win = _window_lengths(offsets, ln)

    def run(a, b):
        z, z_len = workspace("z", np.int32, max(win[a:b]))
        best, best_len = workspace("best", np.int32, V)  # C sets every entry it reads
        _check(lib.fs_dry(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(hist), hist.size,
                          buf(offsets[a:b + 1]), buf(mult[a:b]), buf(bs[a:b]),
                          buf(allowed[a:b]), buf(ln[a:b]), buf(table), V,
                          z, z_len, best, best_len), "dry", V)

    over_rows(B, run)
    return out


def dry_penalty(history, vocab_size, multiplier, base, allowed_length, breakers, last_n):
    """DRY penalties for one history: ``(ids int32 ascending, penalties float32)``."""
    V = int(vocab_size)
    multiplier, base, last_n = float(multiplier), float(base), int(last_n)
    if not (multiplier != 0.0 and base >= 1.0 and last_n != 0):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    hist = i64(np.asarray(history).ravel())
    if hist.size == 0:
        hist = np.zeros(1, np.int64)  # a valid pointer; nhist = 0 below
        n = 0
    else:
        n = hist.size
    table = _breaker_table(breakers, V)
    z = np.empty(max(1, n), np.int32)
    best = np.empty(V, np.int32)
    cap = max(1, min(n, V))
    ids = np.empty(cap, np.int32)
    pen = np.empty(cap, np.float32)
    count = np.zeros(1, np.int64)
    _check(lib.fs_dry_penalty(buf(hist), n, V, multiplier, base, int(allowed_length), last_n,
                              buf(table), V, buf(z), z.size, buf(best), V, buf(ids),
                              buf(pen), cap, buf(count)), "dry_penalty", V)
    c = int(count[0])
    return ids[:c].copy(), pen[:c].copy()


def temperature(logits, t):
    """``l / t`` for t > 0 (saturating at the float32 range); t <= 0 keeps the first max."""
    x = _logits(logits)
    B, V = x.shape
    out = np.empty_like(x)
    tt = _rows(t, B, f64)

    def run(a, b):
        _check(lib.fs_temperature(buf(x[a:b]), buf(out[a:b]), b - a, V, buf(tt[a:b])),
               "temperature", V)

    over_rows(B, run)
    return out


# ------------------------------------------------------------------ truncations

def _B(logits):
    return int(np.shape(logits)[0])


def _run(name, logits, params, *, fws=True, dws_len=None):
    """Run ``fs_<name>(logits, out, B, V, *params[, fws, len][, dws, len])`` over row blocks.

    ``params`` are (B,) arrays, sliced per block; ``fws`` says whether the kernel takes
    the float workspace (V floats); ``dws_len`` gives the length of its double
    workspace as a function of V, or is None when it takes none.
    """
    x = _logits(logits)
    B, V = x.shape
    out = np.empty_like(x)
    fn = getattr(lib, "fs_" + name)
    need = None if dws_len is None else dws_len(V)

    def run(a, b):
        args = [buf(p[a:b]) for p in params]
        if fws:
            args += workspace("fws", np.float32, V)
        if need is not None:
            args += workspace("dws", np.float64, need)
        _check(fn(buf(x[a:b]), buf(out[a:b]), b - a, V, *args), name, V)

    over_rows(B, run)
    return out


def _truncation(name, logits, value, min_keep, *, conv=f64, dws_len=None):
    """Run the truncation ``fs_<name>`` with its per-row (value, min_keep) parameters."""
    B = _B(logits)
    return _run(name, logits, (_rows(value, B, conv), _rows(min_keep, B, i64)),
                dws_len=dws_len)


def _no_doubles(V):
    return 0


def _v_doubles(V):
    return V


def top_n_sigma(logits, n, min_keep):
    """Keep ``l >= max - n * std`` over the finite logits (population std)."""
    return _truncation("top_n_sigma", logits, n, min_keep, dws_len=_v_doubles)


def top_k(logits, k, min_keep):
    """Keep ``l >=`` the k-th largest finite logit (ties kept); k <= 0 is a no-op."""
    return _truncation("top_k", logits, k, min_keep, conv=i64, dws_len=_no_doubles)


def typical(logits, p, min_keep):
    """Locally typical sampling: order by ``|-ln p - H|``, keep the prefix reaching p."""
    return _truncation("typical", logits, p, min_keep, dws_len=lib.fs_stage_dws_len)


def top_p(logits, p, min_keep):
    """Nucleus: the shortest prefix (by p, descending) whose mass reaches p, ties kept."""
    return _truncation("top_p", logits, p, min_keep, dws_len=lib.fs_stage_dws_len)


def min_p(logits, p, min_keep):
    """Keep ``l >= l_max + ln(p)`` (the same as ``p_i >= p * p_max``)."""
    return _truncation("min_p", logits, p, min_keep, dws_len=_no_doubles)


def xtc(logits, probability, threshold, min_keep, seed, position):
    """Exclude Top Choices: with chance ``probability`` (stream 1), mask every token with
    ``p >= threshold`` except the least likely of them, when there are two or more."""
    B = _B(logits)
    params = (_rows(probability, B, f64), _rows(threshold, B, f64), _rows(min_keep, B, i64),
              _rows(seed, B, u64), _rows(position, B, u64))
    return _run("xtc", logits, params, dws_len=_v_doubles)
