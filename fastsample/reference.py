"""The numpy reference: the executable form of docs/spec.md §4 and §5.

Every fast backend is checked against these functions, and they are the benchmark
baseline, so they are written plainly with ordinary numpy (argsort, cumsum,
bincount) and loop over rows where a rule is per row. Conventions (see
``docs/internals.md``): ``logits`` is a validated float32 ``(B, V)`` array with
``-inf`` for masked tokens; per-row parameters are ``(B,)`` arrays; history is a list
of B int arrays; every function returns a new array and leaves its input alone.
Probabilities are float64 softmaxes over the finite entries of a row.
"""

from __future__ import annotations

import math

import numpy as np

from . import rng

__all__ = [
    "logit_bias", "penalties", "dry", "no_repeat_ngram", "top_n_sigma", "top_k",
    "typical", "top_p", "min_p", "xtc", "epsilon", "eta", "top_a", "p_less",
    "tail_free", "temperature", "dynamic_temperature", "smoothing", "greedy",
    "mirostat", "mirostat_v2", "adaptive_p", "draw", "argmax", "token_logprob",
    "softmax", "log_softmax", "topk", "dry_penalty", "dry_breakers", "logprobs",
    "apply_token_bitmask", "allowed_tokens", "bad_words", "min_tokens",
    "verify_rows", "DEFAULT_DRY_BREAKERS", "MASS_TOLERANCE",
]

MASS_TOLERANCE = 1e-6
"""A cumulative mass within this of its target counts as reached (spec §4)."""

F32_MAX = float(np.finfo(np.float32).max)
LN_F32_MAX = 88.7228391  # ln(FLT_MAX): DRY's exponent clamp, as in llama.cpp
DEFAULT_DRY_BREAKERS = ("\n", ":", '"', "*")
NEG_INF = -np.inf


# ----------------------------------------------------------------------------------
# shared helpers


def _to_f32(values64, finite):
    """Round float64 results to float32, saturating finite ones at the float32 range.

    A stage that is not a truncation must never turn a finite logit into -inf (that
    would mask it) or +inf (that would poison the draw).
    """
    out = np.clip(values64, -F32_MAX, F32_MAX).astype(np.float32)
    out[~finite] = NEG_INF
    return out


def _row_logprobs(row):
    """float64 log-probabilities of one row (``-inf`` where masked)."""
    finite = np.isfinite(row)
    if not finite.any():
        return np.full(row.shape, NEG_INF)
    x = row.astype(np.float64)
    m = x[finite].max()
    w = np.where(finite, np.exp(x - m), 0.0)
    return np.where(finite, (x - m) - math.log(w.sum()), NEG_INF)


def _row_probs(row):
    """float64 probabilities of one row: exp(l - max) / sum, 0 where masked."""
    finite = np.isfinite(row)
    if not finite.any():
        return np.zeros(row.shape)
    x = row.astype(np.float64)
    w = np.where(finite, np.exp(x - x[finite].max()), 0.0)
    return w / w.sum()


def _entropy(p):
    nz = p > 0
    return float(-(p[nz] * np.log(p[nz])).sum())


def _kth_largest(row, k):
    """The k-th largest finite value of a row (k clipped to [1, finite count])."""
    vals = row[np.isfinite(row)]
    if vals.size == 0:
        return NEG_INF
    pos = vals.size - min(max(int(k), 1), vals.size)
    return np.partition(vals, pos)[pos]


def _truncate(row, keep, min_keep):
    """Mask ``~keep`` after applying the ``min_keep`` floor (union, ties kept).

    The floor is at least 1, so a truncation never empties a row.
    """
    keep = keep & np.isfinite(row)
    min_keep = max(int(min_keep), 1)
    if keep.sum() < min_keep:
        keep = keep | (row >= _kth_largest(row, min_keep))
    out = row.copy()
    out[~keep] = NEG_INF
    return out


def _per_row(logits, fn, *params):
    """Apply ``fn(row, *row_params)`` to every row; params are (B,) arrays or lists.

    A row with no finite logit (emptied by an earlier stage, say a LogitBias that
    bans every token) passes through unchanged; the chain reports it as invalid.
    """
    out = logits.copy()
    alive = np.isfinite(logits).any(axis=1)
    for b in np.flatnonzero(alive):
        out[b] = fn(logits[b], *(p[b] for p in params))
    return out


def _shortest_prefix(order, p_row, mass):
    """Index into ``order`` of the last token of the shortest prefix reaching ``mass``."""
    cum = np.cumsum(p_row[order])
    reached = cum >= mass - MASS_TOLERANCE
    return int(np.argmax(reached)) if reached.any() else len(order) - 1


# ----------------------------------------------------------------------------------
# logit-space stages


def _into(result, out):
    """The history and bias stages' ``out=``: None, or the logits to edit in place."""
    if out is None:
        return result
    out[...] = result
    return out


def logit_bias(logits, ids, values, out=None):
    """``l[t] += bias``; a ``-inf`` bias bans the token; repeated ids add up.

    ``out=logits`` writes the result into ``logits`` (as the history stages do).
    """
    out_arg = out
    ids = np.asarray(ids, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    out = logits.astype(np.float64)
    np.add.at(out, (slice(None), ids), values)
    finite = np.isfinite(logits)
    banned = np.zeros(logits.shape[1], dtype=bool)
    banned[ids[np.isneginf(values)]] = True
    return _into(_to_f32(out, finite & ~banned), out_arg)


def _penalties_row(row, hist, repeat, frequency, presence, last_n):
    if last_n == 0 or (repeat == 1.0 and frequency == 0.0 and presence == 0.0):
        return row.copy()
    window = hist if last_n < 0 else hist[max(len(hist) - last_n, 0):]
    if len(window) == 0:
        return row.copy()
    tokens, counts = np.unique(window, return_counts=True)
    l = row[tokens].astype(np.float64)
    l = np.where(l > 0, l / repeat, l * repeat)
    l = l - (counts * frequency + presence)
    out = row.copy()
    out[tokens] = _to_f32(l, np.isfinite(row[tokens]))
    return out


def penalties(logits, history, repeat, frequency, presence, last_n, out=None):
    """Repetition, frequency and presence penalties over the last ``last_n`` tokens.

    For every token with count c > 0 in the window: ``l = l/repeat if l > 0 else
    l*repeat``, then ``l -= c*frequency + presence``. ``last_n == -1`` is the whole
    history; only the tokens of the window are touched.
    """
    return _into(_per_row(logits, _penalties_row, history, repeat, frequency, presence, last_n),
                 out)


def _z_function(seq):
    """Z-algorithm: z[i] = length of the longest common prefix of seq and seq[i:]."""
    n = len(seq)
    z = [0] * n
    if n:
        z[0] = n
    left = right = 0
    for i in range(1, n):
        k = 0
        if i < right:
            k = min(right - i, z[i - left])
        while i + k < n and seq[k] == seq[i + k]:
            k += 1
        z[i] = k
        if i + k > right:
            left, right = i, i + k
    return z


def _dry_lengths(hist, allowed_length, breakers, last_n):
    """DRY's repeat lengths (spec §4.1): ``{token: L(token)}`` for L >= allowed_length.

    Linear in the window length: the Z-function of the reversed window gives, for each
    earlier end position, the longest common suffix with the whole window.
    """
    if last_n == 0:
        return {}
    window = hist if last_n < 0 else hist[max(len(hist) - last_n, 0):]
    x = [int(t) for t in window]
    n = len(x)
    breaker_set = {int(t) for t in breakers}
    if n < 2 or x[-1] in breaker_set:
        return {}
    # The matched suffix may not reach back past the last breaker.
    rep_limit = n
    for i in range(n - 1, -1, -1):
        if x[i] in breaker_set:
            rep_limit = n - 1 - i
            break
    rev = x[::-1]
    z = _z_function(rev)
    lengths = {}
    for j in range(1, n):  # earlier copy ends at x index n-1-j, followed by rev[j-1]
        length = min(z[j], rep_limit)
        token = rev[j - 1]
        if length >= allowed_length and token not in breaker_set:
            if lengths.get(token, -1) < length:
                lengths[token] = length
    return lengths


def _dry_amounts(lengths, multiplier, base, allowed_length):
    """float64 penalty per token: multiplier * base**(L - allowed_length), clamped."""
    ids = np.array(sorted(lengths), dtype=np.int64)
    expo = np.array([lengths[t] for t in ids], dtype=np.float64) - allowed_length
    if base > 1.0:
        expo = np.minimum(expo, LN_F32_MAX / math.log(base))
    return ids, multiplier * np.power(float(base), expo)


def _dry_active(multiplier, base, last_n):
    return multiplier != 0.0 and base >= 1.0 and last_n != 0


def _dry_row(row, hist, multiplier, base, allowed_length, last_n, breakers):
    out = row.copy()
    if not _dry_active(multiplier, base, last_n):
        return out
    ids, amount = _dry_amounts(
        _dry_lengths(hist, allowed_length, breakers, last_n), multiplier, base, allowed_length
    )
    if ids.size:
        finite = np.isfinite(row[ids])
        out[ids] = _to_f32(row[ids].astype(np.float64) - amount, finite)
    return out


def dry(logits, history, multiplier, base, allowed_length, last_n, breakers, out=None):
    """DRY ("don't repeat yourself") penalty of spec §4.1, per row.

    A penalised logit saturates at the lowest finite float32: DRY never masks.
    """
    B = logits.shape[0]
    return _into(_per_row(
        logits, _dry_row, history, multiplier, base, allowed_length, last_n, [breakers] * B
    ), out)


def dry_penalty(history, vocab_size, multiplier, base, allowed_length, breakers, last_n):
    """DRY penalties for one history: ``(ids int32 ascending, penalties float32)``."""
    hist = np.asarray(history, dtype=np.int64)
    if not _dry_active(multiplier, base, last_n):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    ids, amount = _dry_amounts(
        _dry_lengths(hist, allowed_length, breakers, last_n), multiplier, base, allowed_length
    )
    return ids.astype(np.int32), np.minimum(amount[: ids.size], F32_MAX).astype(np.float32)


def dry_breakers(strings, token_texts):
    """Token ids whose text contains any of the breaker strings.

    Parameters
    ----------
    strings : iterable of str or None
        Breaker strings; None gives llama.cpp's defaults ``"\\n", ":", '"', "*"``.
    token_texts : sequence of str
        The text of every token, indexed by token id.

    Returns
    -------
    numpy.ndarray of int32
    """
    strings = DEFAULT_DRY_BREAKERS if strings is None else tuple(strings)
    strings = [s for s in strings if s]
    return np.array(
        [i for i, text in enumerate(token_texts) if any(s in text for s in strings)],
        dtype=np.int32,
    )


def _no_repeat_ngram_row(row, hist, n):
    out = row.copy()
    hist = np.asarray(hist, dtype=np.int64)
    if n <= 0 or len(hist) < n:  # no complete n-gram yet
        return out
    if n == 1:
        out[hist] = NEG_INF
        return out
    grams = np.lib.stride_tricks.sliding_window_view(hist, n)
    prefix = hist[len(hist) - (n - 1):]
    banned = grams[np.all(grams[:, :-1] == prefix, axis=1), -1]
    out[banned] = NEG_INF
    return out


def no_repeat_ngram(logits, history, n, out=None):
    """Ban every token that would complete an n-gram already in the history (HF)."""
    return _into(_per_row(logits, _no_repeat_ngram_row, history, n), out)


# ----------------------------------------------------------------------------------
# token constraints (spec §10): the packed bitmask and the allow/ban stages


def _bitmask_allowed(words, V):
    """Token v of ``V`` is allowed iff bit ``v % 32`` of ``words[v // 32]`` is set."""
    as_bytes = np.ascontiguousarray(words, dtype="<u4").view(np.uint8)
    return np.unpackbits(as_bytes, bitorder="little")[:V].astype(bool)


def apply_token_bitmask(logits, bitmask, rows, out=None):
    """Mask (``-inf``) every token the packed bitmask disallows.

    ``bitmask``: uint32 ``(R, W)``, W >= ceil(V/32); ``rows``: int64 (B,), row b uses
    bitmask row ``rows[b]`` (-1: unconstrained). Bits past V are ignored. ``out``:
    the edit stages' convention (None: a new array; the logits: in place).
    """
    result = logits.copy()
    V = logits.shape[1]
    for b in range(logits.shape[0]):
        if rows[b] >= 0:
            result[b, ~_bitmask_allowed(bitmask[rows[b]], V)] = NEG_INF
    return _into(result, out)


def allowed_tokens(logits, ids, out=None):
    """Only the tokens ``ids`` (int64, in [0, V), the same for every row) may be drawn."""
    keep = np.zeros(logits.shape[1], dtype=bool)
    keep[np.asarray(ids, dtype=np.int64)] = True
    result = logits.copy()
    result[:, ~keep] = NEG_INF
    return _into(result, out)


def _bad_words_row(row, hist, tokens, offsets):
    out = row.copy()
    hist = np.asarray(hist, dtype=np.int64)
    for s in range(len(offsets) - 1):
        seq = tokens[offsets[s]:offsets[s + 1]]
        prefix = seq[:-1]
        if len(prefix) == 0 or (len(hist) >= len(prefix)
                                and np.array_equal(hist[len(hist) - len(prefix):], prefix)):
            out[seq[-1]] = NEG_INF
    return out


def bad_words(logits, history, tokens, offsets, out=None):
    """vLLM's ``bad_words``: for each token sequence s, if the row's history ends with
    ``s[:-1]``, ``s[-1]`` is banned (a one-token sequence always is).

    The sequences (the same for every row) are ``tokens[offsets[i]:offsets[i + 1]]``,
    each non-empty; ``tokens`` int64 in [0, V), ``offsets`` int64 (S + 1,).
    """
    B = logits.shape[0]
    return _into(_per_row(logits, _bad_words_row, history, [tokens] * B, [offsets] * B), out)


def min_tokens(logits, n, stop_ids, position, out=None):
    """Ban ``stop_ids`` (int64, the same for every row) in row b while
    ``position[b] < n[b]`` (vLLM/OpenAI ``min_tokens``)."""
    result = logits.copy()
    ids = np.asarray(stop_ids, dtype=np.int64)
    for b in range(logits.shape[0]):
        if int(position[b]) < int(n[b]):
            result[b, ids] = NEG_INF
    return _into(result, out)


def _temperature_row(row, t):
    if t == 1.0:
        return row.copy()
    finite = np.isfinite(row)
    if t <= 0.0:
        out = np.full_like(row, NEG_INF)
        if finite.any():
            i = int(np.argmax(row))
            out[i] = row[i]
        return out
    with np.errstate(over="ignore"):  # saturated by _to_f32
        return _to_f32(row.astype(np.float64) / t, finite)


def temperature(logits, t):
    """``l / t`` for t > 0 (saturating at the float32 range); t <= 0 keeps the first max."""
    return _per_row(logits, _temperature_row, t)


def dynamic_temperature(logits, t, range_, exponent):
    """Entropy-scaled temperature: ``T = lo + (hi - lo) * (H / ln n) ** exponent``."""
    temps = np.array(t, dtype=np.float64, copy=True)
    for b in range(logits.shape[0]):
        n = int(np.isfinite(logits[b]).sum())
        if range_[b] <= 0 or n <= 1:
            continue
        lo = max(0.0, t[b] - range_[b])
        hi = t[b] + range_[b]
        h = _entropy(_row_probs(logits[b]))
        temps[b] = lo + (hi - lo) * (h / math.log(n)) ** exponent[b]
    return temperature(logits, temps)


def _smoothing_row(row, factor, curve):
    if factor <= 0:
        return row.copy()
    finite = np.isfinite(row)
    x = row.astype(np.float64)
    top = x[finite].max()
    d = np.where(finite, x - top, 0.0)
    k = (3.0 - curve) / 2.0
    s = (curve - 1.0) / 2.0
    return _to_f32(top - k * factor * d**2 + s * factor * d**3, finite)


def smoothing(logits, factor, curve):
    """Quadratic/cubic sampling (text-generation-webui's smoothing factor and curve)."""
    return _per_row(logits, _smoothing_row, factor, curve)


def argmax(logits):
    """The first maximum of each row; -1 for a row with no finite logit."""
    if logits.shape[0] == 0:
        return np.zeros(0, np.int32)
    tokens = np.argmax(logits, axis=1).astype(np.int32)
    tokens[~np.isfinite(logits).any(axis=1)] = -1
    return tokens


def greedy(logits):
    """One-hot mask: the first maximum keeps its logit, every other token is ``-inf``."""
    out = np.full_like(logits, NEG_INF)
    tokens = argmax(logits)
    rows = np.nonzero(tokens >= 0)[0]
    out[rows, tokens[rows]] = logits[rows, tokens[rows]]
    return out


# ----------------------------------------------------------------------------------
# truncations


def _top_n_sigma_row(row, n, min_keep):
    if n <= 0:
        return row.copy()
    finite = np.isfinite(row)
    x = row[finite].astype(np.float64)
    sigma = float(np.std(x))  # population std (ddof=0), as llama.cpp
    return _truncate(row, row.astype(np.float64) >= x.max() - n * sigma, min_keep)


def top_n_sigma(logits, n, min_keep):
    """Keep ``l >= max - n * std`` over the finite logits (population std)."""
    return _per_row(logits, _top_n_sigma_row, n, min_keep)


def _top_k_row(row, k, min_keep):
    count = int(np.isfinite(row).sum())
    keep = np.isfinite(row)
    if 0 < k < count:
        keep = row >= _kth_largest(row, k)
    return _truncate(row, keep, min_keep)


def top_k(logits, k, min_keep):
    """Keep ``l >=`` the k-th largest finite logit (ties kept); k <= 0 is a no-op."""
    return _per_row(logits, _top_k_row, k, min_keep)


def _top_p_row(row, p, min_keep):
    if p >= 1.0:
        return _truncate(row, np.isfinite(row), min_keep)
    probs = _row_probs(row)
    order = np.argsort(-row, kind="stable")  # p descending, ties to the lower id
    last = order[_shortest_prefix(order, probs, p)]
    return _truncate(row, row >= row[last], min_keep)


def top_p(logits, p, min_keep):
    """Nucleus: the shortest prefix (by p, descending) whose mass reaches p, ties kept."""
    return _per_row(logits, _top_p_row, p, min_keep)


def _min_p_row(row, p, min_keep):
    finite = np.isfinite(row)
    if p <= 0.0:
        return _truncate(row, finite, min_keep)
    threshold = float(row[finite].max()) + math.log(p)
    return _truncate(row, row.astype(np.float64) >= threshold, min_keep)


def min_p(logits, p, min_keep):
    """Keep ``l >= l_max + ln(p)`` (the same as ``p_i >= p * p_max``), in logit space."""
    return _per_row(logits, _min_p_row, p, min_keep)


def _typical_row(row, p, min_keep):
    finite = np.isfinite(row)
    if p >= 1.0:
        return _truncate(row, finite, min_keep)
    logp = _row_logprobs(row)
    probs = _row_probs(row)
    score = np.where(finite, np.abs(-logp - _entropy(probs)), np.inf)
    order = np.argsort(score, kind="stable")  # ties to the lower id
    last = order[_shortest_prefix(order, probs, p)]
    return _truncate(row, finite & (score <= score[last]), min_keep)


def typical(logits, p, min_keep):
    """Locally typical sampling: order by ``|-ln p - H|``, keep the prefix reaching p."""
    return _per_row(logits, _typical_row, p, min_keep)


def _xtc_row(row, probability, threshold, min_keep, u):
    finite = np.isfinite(row)
    if probability <= 0.0 or threshold > 0.5 or not u < probability:
        return _truncate(row, finite, min_keep)
    probs = _row_probs(row)
    above = finite & (probs >= threshold)
    if above.sum() < 2:
        return _truncate(row, finite, min_keep)
    smallest = probs[above].min()
    return _truncate(row, finite & ~(above & (probs > smallest)), min_keep)


def xtc(logits, probability, threshold, min_keep, seed, position):
    """Exclude Top Choices: with chance ``probability`` (stream 1), mask every token
    with ``p >= threshold`` except the least likely of them, when there are two or more.
    """
    u = rng.uniform(seed, position, rng.STREAM_XTC)
    return _per_row(logits, _xtc_row, probability, threshold, min_keep, u)


def _prob_threshold_row(row, threshold, min_keep):
    """Mask ``p < threshold`` (with the min_keep floor)."""
    probs = _row_probs(row)
    return _truncate(row, np.isfinite(row) & (probs >= threshold), min_keep)


def _epsilon_row(row, eps, min_keep):
    if eps <= 0.0:
        return _truncate(row, np.isfinite(row), min_keep)
    return _prob_threshold_row(row, eps, min_keep)


def epsilon(logits, epsilon, min_keep):
    """Epsilon sampling (Hewitt et al.): mask ``p < epsilon``."""
    return _per_row(logits, _epsilon_row, epsilon, min_keep)


def _eta_row(row, eps, min_keep):
    if eps <= 0.0:
        return _truncate(row, np.isfinite(row), min_keep)
    h = _entropy(_row_probs(row))
    return _prob_threshold_row(row, min(eps, math.sqrt(eps) * math.exp(-h)), min_keep)


def eta(logits, epsilon, min_keep):
    """Eta sampling (Hewitt et al.): mask ``p < min(eps, sqrt(eps) * exp(-H))``."""
    return _per_row(logits, _eta_row, epsilon, min_keep)


def _top_a_row(row, a, min_keep):
    if a <= 0.0:
        return _truncate(row, np.isfinite(row), min_keep)
    probs = _row_probs(row)
    return _prob_threshold_row(row, a * probs.max() ** 2, min_keep)


def top_a(logits, a, min_keep):
    """Top-a: mask ``p < a * p_max ** 2``."""
    return _per_row(logits, _top_a_row, a, min_keep)


def _p_less_row(row, min_keep):
    probs = _row_probs(row)
    return _prob_threshold_row(row, float((probs**2).sum()) - MASS_TOLERANCE, min_keep)


def p_less(logits, min_keep):
    """P-less sampling: mask ``p < sum(p**2)`` (less 1e-6; the max always survives)."""
    return _per_row(logits, _p_less_row, min_keep)


def _tail_free_row(row, z, min_keep):
    finite = np.isfinite(row)
    if z >= 1.0:
        return _truncate(row, finite, min_keep)
    n = int(finite.sum())
    order = np.argsort(-row, kind="stable")[:n]  # p descending, ties to the lower id
    sorted_p = _row_probs(row)[order]
    d = np.abs(np.diff(sorted_p, n=2))  # d_i = |p_i - 2 p_{i+1} + p_{i+2}|, i < n-2
    total = d.sum()
    cdf = np.cumsum(d / total) if total > 0 else np.zeros_like(d)
    remove = np.zeros(n, dtype=bool)
    remove[1: n - 1] = cdf > z
    remove[n - 1] = True
    remove[0] = False
    keep = np.zeros(row.shape, dtype=bool)
    keep[order[~remove]] = True
    return _truncate(row, keep, min_keep)


def tail_free(logits, z, min_keep):
    """Tail-free sampling, text-generation-webui's rule (spec §4 table)."""
    return _per_row(logits, _tail_free_row, z, min_keep)


# ----------------------------------------------------------------------------------
# stateful terminal transforms


def _mirostat_k(probs_sorted, mu, m, vocab_size):
    """Mirostat v1's k: Zipf exponent s from the top m tokens, then llama.cpp's k.

    Computed in numpy float64 so that overflow gives inf/nan instead of raising; a
    k that is not finite or exceeds the candidates keeps them all.
    """
    n = probs_sorted.size
    top = min(int(m), n) - 1
    if top <= 0:
        return 1
    i = np.arange(top, dtype=np.float64)
    t = np.log((i + 2.0) / (i + 1.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        b = np.log(probs_sorted[:top] / probs_sorted[1: top + 1])
        s = np.sum(t * b) / np.sum(t * t)
        e = s - 1.0
        ratio = (e * np.power(2.0, np.float64(mu))) / (1.0 - np.power(np.float64(vocab_size), -e))
        k = np.power(ratio, 1.0 / s)
    if not np.isfinite(k) or k > n:
        return n
    return max(int(k), 1)


def _mirostat_row(row, mu, m):
    vocab_size = row.size
    n = int(np.isfinite(row).sum())
    order = np.argsort(-row, kind="stable")[:n]
    k = _mirostat_k(_row_probs(row)[order], float(mu), m, vocab_size)
    return _top_k_row(row, k, 1)


def mirostat(logits, mu, m):
    """Mirostat v1's truncation for the current mu: keep the top k (TopK rule)."""
    return _per_row(logits, _mirostat_row, mu, m)


def _mirostat_v2_row(row, mu):
    surprise = -_row_logprobs(row) / math.log(2.0)
    keep = np.isfinite(row) & (surprise <= mu)
    if not keep.any():
        keep = row == row[np.isfinite(row)].max()
    out = row.copy()
    out[~keep] = NEG_INF
    return out


def mirostat_v2(logits, mu):
    """Mirostat v2's truncation: keep tokens with ``-log2 p <= mu`` (at least the max)."""
    return _per_row(logits, _mirostat_v2_row, mu)


def _adaptive_p_row(row, target, ema_sum, ema_weight):
    if target < 0.0:
        return row.copy()
    finite = np.isfinite(row)
    tau = min(max(2.0 * target - ema_sum / ema_weight, 0.0), 1.0)
    d = np.abs(_row_probs(row) - tau) / 0.3
    return _to_f32(5.0 - 10.0 * d**2 / (1.0 + d), finite)


def adaptive_p(logits, target, ema_sum, ema_weight):
    """Adaptive-p transform: ``l' = 5 - 10 d**2 / (1 + d)``, ``d = |p - tau'| / 0.3``."""
    return _per_row(logits, _adaptive_p_row, target, ema_sum, ema_weight)


# ----------------------------------------------------------------------------------
# the draw and probabilities


def draw(logits, seed, position):
    """Spec §5: inverse CDF in token-id order with u from stream 0.

    Weights ``w = exp(l - max)`` in float64 over the finite logits; the token is the
    first whose running sum exceeds ``u * W``; -1 for a row with no finite logit.
    """
    B, V = logits.shape
    tokens = np.full(B, -1, dtype=np.int32)
    if B == 0:
        return tokens
    u = rng.uniform(seed, position, rng.STREAM_DRAW)
    for b in range(B):
        row = logits[b]
        finite = np.isfinite(row)
        if not finite.any():
            continue
        x = row.astype(np.float64)
        w = np.where(finite, np.exp(x - x[finite].max()), 0.0)
        cum = np.cumsum(w)  # running sums in id order; cum[-1] is W
        t = int(np.count_nonzero(cum <= u[b] * cum[-1]))
        tokens[b] = t if t < V else int(np.nonzero(finite)[0][-1])
    return tokens


def token_logprob(logits, tokens):
    """Natural-log softmax probability of ``tokens[b]`` in row b (NaN for token -1)."""
    out = np.full(logits.shape[0], np.nan)
    for b, t in enumerate(np.asarray(tokens)):
        if t >= 0:
            out[b] = _row_logprobs(logits[b])[t]
    return out


def logprobs(logits, tokens, n):
    """spec §9: each row's log-probabilities, of its token and of its top ``n``.

    ``tokens`` int (B,), -1 for a flagged row; ``n`` int >= 0. Log-probabilities are
    the float64 ``log_softmax`` of the row rounded to float32; ``rank`` is 1 + the
    number of tokens with a strictly greater (exact) log-probability, i.e. a strictly
    greater logit; the top ``n`` are ``topk``'s order (descending, ties to the lower
    id), padded with id -1 and ``-inf`` past the row's finite tokens. A row whose
    token is -1 gives NaN, -1, ids -1 and NaN.

    Returns
    -------
    logprob : float32 (B,)
    rank : int32 (B,)
    top_ids : int32 (B, n)
    top_logprobs : float32 (B, n)
    """
    B, V = logits.shape
    lp = np.full(B, np.nan, np.float32)
    rank = np.full(B, -1, np.int32)
    top_ids = np.full((B, n), -1, np.int32)
    top_lp = np.full((B, n), np.nan, np.float32)
    for b, t in enumerate(np.asarray(tokens).tolist()):
        if t < 0:
            continue
        row = logits[b]
        l64 = _row_logprobs(row)
        lp[b] = l64[t]
        rank[b] = 1 + np.count_nonzero(row > row[t])
        order = np.lexsort((np.arange(V), -row.astype(np.float64)))[:n]
        kept = order[np.isfinite(row[order])]
        top_ids[b, :kept.size] = kept
        top_lp[b] = NEG_INF
        top_lp[b, :kept.size] = l64[kept]
    return lp, rank, top_ids, top_lp


def _as_rows(x):
    x = np.asarray(x)
    return (x[None, :], True) if x.ndim == 1 else (x, False)


def softmax(x, temperature=1.0):
    """Softmax over the finite logits of each row (masked -> 0), float32.

    ``x`` is ``(V,)`` or ``(B, V)``; ``temperature`` (> 0) a scalar or per-row array.
    """
    rows, one = _as_rows(x)
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (rows.shape[0],))
    out = np.zeros(rows.shape, dtype=np.float32)
    for b in range(rows.shape[0]):
        scaled = rows[b].astype(np.float64) / t[b]
        out[b] = _row_probs(scaled).astype(np.float32)
    return out[0] if one else out


def log_softmax(x):
    """Log-softmax over the finite logits of each row (masked -> -inf), float32."""
    rows, one = _as_rows(x)
    out = np.empty(rows.shape, dtype=np.float32)
    for b in range(rows.shape[0]):
        out[b] = _row_logprobs(rows[b]).astype(np.float32)
    return out[0] if one else out


def topk(x, k):
    """The k largest logits per row: exactly k, descending, ties to the lower id.

    Returns
    -------
    values : float32, shape (..., k)
    indices : int32, shape (..., k)
    """
    rows, one = _as_rows(x)
    B, V = rows.shape
    indices = np.zeros((B, k), dtype=np.int32)
    for b in range(B):
        if k == 0:
            break
        row = rows[b]
        kth = np.partition(row, V - k)[V - k]
        above = np.flatnonzero(row > kth)
        tied = np.flatnonzero(row == kth)[: k - above.size]  # ties go to the lower ids
        chosen = np.concatenate([above, tied])
        indices[b] = chosen[np.lexsort((chosen, -row[chosen]))]
    values = np.take_along_axis(rows, indices.astype(np.intp), axis=1).astype(np.float32)
    return (values[0], indices[0]) if one else (values, indices)


# ----------------------------------------------------------------------------------
# speculative decoding verification (spec §11)


def _first_above(cum, u, weights):
    """Index of the first running sum above ``u * cum[-1]`` (spec §5's inverse CDF); if
    rounding leaves none, the last index of positive weight."""
    t = int(np.count_nonzero(cum <= u * cum[-1]))
    return t if t < cum.size else int(np.flatnonzero(weights > 0)[-1])


def verify_rows(block, ids, offsets, draft_tokens, draft_probs, num_draft, seed, position):
    """Spec §11's rejection rule on processed target rows (speculative decoding).

    Parameters
    ----------
    block : float32 (B*(K+1), n)
        Row ``b*(K+1) + j`` holds request b's processed logits at step j (p_j is their
        softmax). Dense (``ids`` None): column = token id. Compacted: row r's columns
        are the tokens ``ids[offsets[r]:offsets[r+1]]`` (ascending), the rest ``-inf``.
    ids : int32 (total,) or None
    offsets : int64 (B*(K+1)+1,) or None
    draft_tokens : int32 (B, K), in [0, V) where j < num_draft[b]
    draft_probs : float32 (B, K, V) or None (q_j one-hot on the draft token)
    num_draft : int64 (B,), in [0, K]
    seed, position : uint64 (B,); step j uses position + j

    Returns
    -------
    tokens : int32 (B, K+1)
        Accepted drafts then the emitted token, -1 after; the emitted token is -1 when
        a row has no finite logit (the caller flags the request).
    num_accepted : int32 (B,)
    bad_q : int32 (B,)
        The first step whose draft probabilities read by the rule (q_j at d_j and on
        p_j's support, at every step j < num_draft) hold a NaN or a negative value;
        -1 if none. Such a request stops there.

    Notes
    -----
    Weights ``w = exp(l - max)`` and ``p = w / W`` in float64, every sum in token-id
    order. Step j < n: accept d_j iff u2 < p(d_j) / q(d_j) (q(d_j) = 0: iff p(d_j) > 0),
    u2 from stream 2; a row with one finite logit (greedy) accepts iff d_j is it. At the
    first rejection emit the inverse-CDF draw over ``max(0, p - q)`` with u3 from
    stream 3 (over p when that residual is zero everywhere, which only rounding can
    cause), or the one finite token of a greedy row. After n acceptances emit spec
    §5's draw from p_n (stream 0) at position + n.
    """
    B, K = draft_tokens.shape
    K1 = K + 1
    tokens = np.full((B, K1), -1, np.int32)
    accepted = np.zeros(B, np.int32)
    bad_q = np.full(B, -1, np.int32)
    for b in range(B):
        n = int(num_draft[b])
        for j in range(n + 1):
            r = b * K1 + j
            if ids is None:
                vals = block[r].astype(np.float64)
                tid = np.arange(vals.size)
            else:
                lo, hi = int(offsets[r]), int(offsets[r + 1])
                vals = block[r, :hi - lo].astype(np.float64)
                tid = ids[lo:hi].astype(np.int64)
            finite = np.isfinite(vals)
            if not finite.any():
                break
            w = np.where(finite, np.exp(vals - vals[finite].max()), 0.0)
            cum = np.cumsum(w)   # running sums in id order; cum[-1] is W
            pos = (int(position[b]) + j) % 2**64
            if j == n:  # every draft accepted: the bonus token, spec §5's plain draw
                u = float(rng.uniform(seed[b], pos, rng.STREAM_DRAW))
                tokens[b, j] = tid[_first_above(cum, u, w)]
                break
            d = int(draft_tokens[b, j])
            if draft_probs is None:
                q, qd = (tid == d).astype(np.float64), 1.0
            else:
                q = draft_probs[b, j][tid].astype(np.float64)
                qd = float(draft_probs[b, j, d])
            if not (qd >= 0 and (q[finite] >= 0).all()):
                bad_q[b] = j
                break
            col = int(np.searchsorted(tid, d))
            here = col < tid.size and tid[col] == d and finite[col]
            p = w / cum[-1]
            pd = p[col] if here else 0.0
            if np.count_nonzero(finite) == 1:   # greedy: accept on the one token
                accept = here
            elif qd == 0.0:
                accept = pd > 0.0
            else:
                accept = float(rng.uniform(seed[b], pos, rng.STREAM_ACCEPT)) < pd / qd
            if accept:
                tokens[b, j] = d
                accepted[b] = j + 1
                continue
            u3 = float(rng.uniform(seed[b], pos, rng.STREAM_RECOVER))
            if np.count_nonzero(finite) == 1:
                tokens[b, j] = tid[int(np.flatnonzero(finite)[0])]
                break
            resid = np.where(finite, np.maximum(p - q, 0.0), 0.0)
            rcum = np.cumsum(resid)
            if rcum[-1] > 0.0:
                tokens[b, j] = tid[_first_above(rcum, u3, resid)]
            else:
                tokens[b, j] = tid[_first_above(cum, u3, w)]
            break
    return tokens, accepted, bad_q
