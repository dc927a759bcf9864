"""Tiny loop-by-loop pure-Python oracles for every sampler stage (docs/spec.md §4, §4.1, §5).

Each function works on ONE row (a 1-D sequence of logits, masked = -inf) and follows
the spec text literally, with Python floats, the ``math`` module, lists and explicit
loops.  numpy is used only to read inputs and to build the float32 output array.
They are deliberately slow and obvious: they are the yardstick the vectorised
reference (``fastsample.reference``) and the fast backends are checked against.

Signatures mirror ``fastsample.reference`` (docs/internals.md) with the batch
dimension removed: per-row parameters are plain Python scalars, ``history`` is one
1-D sequence of token ids, and the two random stages take their uniform ``u``
directly (``xtc(..., u)``, ``draw(row, u)``).

Conventions for details the spec leaves open (decided by the project):
- probabilities are float64 softmax over the unmasked entries of the row as it
  stands at the stage (``math.exp`` of ``l - max``, sums in Python floats);
- ``min_keep``: if fewer than ``min_keep`` tokens survive, the tokens whose logit is
  ``>=`` the ``min_keep``-th largest finite logit of the stage input are kept as well
  (union with the survivors); ``min_keep < 1`` acts as 1 (a truncation never empties
  a row);
- DRY: penalty = multiplier * base ** min(L - allowed_length, 88.7228391 / ln(base))
  for base > 1 (base == 1 gives multiplier), in float64; new logit is
  max(l - penalty, -FLT_MAX) (DRY never masks; an already masked token stays masked);
  candidates are only tokens that follow an earlier copy inside the window;
- Mirostat v1: if sum t_i**2 == 0 keep the top token (TopK rule, ties kept); k in
  float64 with IEEE semantics; k not finite or k > n -> n; keep top max(int(k), 1);
- Temperature: float32(float64(l) / t); Penalties, Smoothing, AdaptiveP, DRY compute
  in float64 and round to float32; a finite logit that a transform (not a truncation)
  pushes past the float32 range saturates at +-FLT_MAX instead of becoming +-inf;
- MinP: keep float64(l) >= float64(l_max) + ln(p).
"""

import math

import numpy as np

NEG_INF = float("-inf")
FLT_MAX = 3.4028234663852886e38
DRY_LOG_FLT_MAX = 88.7228391


# ----------------------------------------------------------------------------- helpers


def _vals(row):
    """The row as a list of Python floats."""
    return [float(v) for v in row]


def _out(values):
    """A list of Python floats -> float32 numpy array (the only numpy use besides input)."""
    return np.array(values, dtype=np.float64).astype(np.float32)


def _sat(v):
    """Saturate a finite result at the float32 range: a stage that is not a truncation
    never turns a finite logit into -inf (a mask) or +inf (an invalid logit)."""
    return min(max(v, -FLT_MAX), FLT_MAX)


def _is_finite(v):
    return v != NEG_INF


def _finite_ids(l):
    ids = []
    for i in range(len(l)):
        if _is_finite(l[i]):
            ids.append(i)
    return ids


def _max_finite(l):
    m = NEG_INF
    for v in l:
        if _is_finite(v) and v > m:
            m = v
    return m


def _probs(l):
    """float64 softmax over the unmasked entries; masked entries get 0.0."""
    m = _max_finite(l)
    w = []
    for v in l:
        if _is_finite(v):
            w.append(math.exp(v - m))
        else:
            w.append(0.0)
    total = 0.0
    for x in w:
        total += x
    return [x / total for x in w]


def _entropy(p):
    h = 0.0
    for x in p:
        if x > 0.0:
            h -= x * math.log(x)
    return h


def _kth_largest_finite(l, k):
    """The k-th largest finite logit (k >= 1); the smallest finite one if k > count."""
    fin = []
    for v in l:
        if _is_finite(v):
            fin.append(v)
    fin.sort(reverse=True)
    if k > len(fin):
        return fin[-1]
    return fin[k - 1]


def _finish(l, keep, min_keep):
    """Apply the keep mask, then the min_keep rule (union with the top min_keep logits)."""
    mk = max(int(min_keep), 1)
    count = 0
    for i in range(len(l)):
        if keep[i]:
            count += 1
    if count < mk:
        thr = _kth_largest_finite(l, mk)
        for i in range(len(l)):
            if _is_finite(l[i]) and l[i] >= thr:
                keep[i] = True
    res = []
    for i in range(len(l)):
        res.append(l[i] if keep[i] else NEG_INF)
    return _out(res)


def _keep_top_k_rule(l, k):
    """TopK rule: keep l >= the k-th largest unmasked logit (ties kept)."""
    thr = _kth_largest_finite(l, k)
    keep = []
    for v in l:
        keep.append(_is_finite(v) and v >= thr)
    return keep


def _sorted_by_prob_desc(l, p):
    """Unmasked ids by probability descending, ties to the lower id."""
    ids = _finite_ids(l)
    ids.sort(key=lambda i: (-p[i], i))
    return ids


def _mask_where(l, predicate, min_keep):
    """Mask unmasked token i where predicate(i) is true, then min_keep."""
    keep = []
    for i in range(len(l)):
        keep.append(_is_finite(l[i]) and not predicate(i))
    return _finish(l, keep, min_keep)


def _ieee_div(a, b):
    if b == 0.0:
        if a == 0.0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _ieee_pow(a, b):
    try:
        return math.pow(a, b)
    except ValueError:
        return math.nan
    except OverflowError:
        return math.inf


# ----------------------------------------------------------------------------- basics


def softmax(row, temperature=1.0):
    l = _vals(row)
    scaled = []
    for v in l:
        scaled.append(v / temperature if _is_finite(v) else NEG_INF)
    if not _finite_ids(scaled):
        return _out([0.0] * len(l))
    return _out(_probs(scaled))


def log_softmax(row):
    l = _vals(row)
    m = _max_finite(l)
    total = 0.0
    for v in l:
        if _is_finite(v):
            total += math.exp(v - m)
    lse = math.log(total)
    res = []
    for v in l:
        res.append(v - m - lse if _is_finite(v) else NEG_INF)
    return _out(res)


def topk(row, k):
    """(values float32, indices int32): exactly k, descending, ties to the lower id."""
    l = _vals(row)
    order = list(range(len(l)))
    order.sort(key=lambda i: (-l[i], i))
    idx = order[:k]
    vals = [l[i] for i in idx]
    return _out(vals), np.array(idx, dtype=np.int32)


def argmax(row):
    l = _vals(row)
    best = -1
    for i in range(len(l)):
        if _is_finite(l[i]) and (best < 0 or l[i] > l[best]):
            best = i
    return best


def token_logprob(row, token):
    if token < 0:
        return math.nan
    l = _vals(row)
    if not _is_finite(l[token]):
        return NEG_INF
    m = _max_finite(l)
    total = 0.0
    for v in l:
        if _is_finite(v):
            total += math.exp(v - m)
    return l[token] - m - math.log(total)


def logprobs(row, token, n):
    """spec §9 for one row: (logprob, rank, top ids, top logprobs) as Python values.

    rank = 1 + #(logits strictly greater than the token's); top n descending, ties to
    the lower id, padded with (-1, -inf) past the finite tokens; token -1 gives
    (NaN, -1, [-1] * n, [NaN] * n). Logprobs as Python floats (float64).
    """
    if token < 0:
        return math.nan, -1, [-1] * n, [math.nan] * n
    l = _vals(row)
    lp = token_logprob(row, token)
    rank = 1
    for v in l:
        if v > l[token]:
            rank += 1
    ids, vals = [], []
    order = list(range(len(l)))
    order.sort(key=lambda i: (-l[i], i))
    for i in order[:n]:
        if _is_finite(l[i]):
            ids.append(i)
            vals.append(token_logprob(row, i))
    while len(ids) < n:
        ids.append(-1)
        vals.append(NEG_INF)
    return lp, rank, ids, vals


def logit_bias(row, ids, values):
    l = _vals(row)
    for t, b in zip(ids, values):
        l[int(t)] = l[int(t)] + float(b)
    return _out([_sat(v) if _is_finite(v) else v for v in l])


# ----------------------------------------------------------------------------- history stages


def _window(history, last_n):
    h = [int(t) for t in history]
    if last_n < 0:
        return h
    if last_n == 0:
        return []
    return h[max(len(h) - last_n, 0):]


def penalties(row, history, repeat, frequency, presence, last_n):
    repeat, frequency, presence, last_n = float(repeat), float(frequency), float(presence), int(last_n)
    l = _vals(row)
    if last_n == 0 or (repeat == 1.0 and frequency == 0.0 and presence == 0.0):
        return _out(l)
    counts = {}
    for t in _window(history, last_n):
        counts[t] = counts.get(t, 0) + 1
    for t, c in counts.items():
        if c <= 0:
            continue
        v = l[t]
        if v > 0:
            v = v / repeat
        else:
            v = v * repeat
        v = v - (c * frequency + presence)
        l[t] = _sat(v) if _is_finite(v) else v
    return _out(l)


def dry_match_lengths(history, breakers, last_n):
    """{candidate token: L(c)} per spec §4.1, quadratic, straight from the definition.

    Window x = the last ``last_n`` tokens (-1: all).  For every earlier end position
    j < len(x) - 1, the match length is the longest common suffix of x[:j+1] and x
    containing no breaker; the candidate is x[j+1] (the token that followed the earlier
    copy).  Breaker candidates are dropped; a breaker as the last token empties it all.
    """
    brk = set(int(b) for b in breakers)
    x = _window(history, last_n)
    n = len(x)
    best = {}
    if n == 0 or x[n - 1] in brk:
        return best
    for j in range(n - 1):
        length = 0
        while length <= j and x[j - length] == x[n - 1 - length] and x[n - 1 - length] not in brk:
            length += 1
        c = x[j + 1]
        if c in brk:
            continue
        if c not in best or length > best[c]:
            best[c] = length
    return best


def dry_penalty_value(multiplier, base, length, allowed_length):
    """float64 DRY penalty for a match of ``length`` (project convention)."""
    if base > 1.0:
        e = min(float(length - allowed_length), DRY_LOG_FLT_MAX / math.log(base))
        return multiplier * base ** e
    return multiplier * 1.0


def _dry_is_noop(multiplier, base, last_n):
    return multiplier == 0.0 or base < 1.0 or last_n == 0


def dry_penalty(history, vocab_size, multiplier, base, allowed_length, breakers, last_n):
    """(ids ascending, float64 penalties) of the penalised tokens of one row."""
    multiplier, base, allowed_length, last_n = float(multiplier), float(base), int(allowed_length), int(last_n)
    if _dry_is_noop(multiplier, base, last_n):
        return [], []
    best = dry_match_lengths(history, breakers, last_n)
    ids = []
    for c in sorted(best):
        if best[c] >= allowed_length and 0 <= c < vocab_size:
            ids.append(c)
    pens = [dry_penalty_value(multiplier, base, best[c], allowed_length) for c in ids]
    return ids, pens


def dry(row, history, multiplier, base, allowed_length, last_n, breakers):
    multiplier, base, allowed_length, last_n = float(multiplier), float(base), int(allowed_length), int(last_n)
    l = _vals(row)
    ids, pens = dry_penalty(history, len(l), multiplier, base, allowed_length, breakers, last_n)
    for c, pen in zip(ids, pens):
        if _is_finite(l[c]):
            l[c] = max(l[c] - pen, -FLT_MAX)
    return _out(l)


def no_repeat_ngram(row, history, n):
    n = int(n)
    l = _vals(row)
    if n <= 0:
        return _out(l)
    h = [int(t) for t in history]
    size = len(h)
    if size < n - 1:
        return _out(l)
    prefix = h[size - (n - 1):]
    for i in range(size - n + 1):
        if h[i:i + n - 1] == prefix:
            l[h[i + n - 1]] = NEG_INF
    return _out(l)


# ----------------------------------------------------------------------------- truncations


def top_k(row, k, min_keep):
    k, min_keep = int(k), int(min_keep)
    l = _vals(row)
    n = len(_finite_ids(l))
    if k <= 0 or k >= n:
        return _out(l)
    return _finish(l, _keep_top_k_rule(l, int(k)), min_keep)


def top_n_sigma(row, n, min_keep):
    n, min_keep = float(n), int(min_keep)
    l = _vals(row)
    if n <= 0:
        return _out(l)
    fin = [v for v in l if _is_finite(v)]
    big = max(fin)
    mean = 0.0
    for v in fin:
        mean += v
    mean /= len(fin)
    var = 0.0
    for v in fin:
        var += (v - mean) * (v - mean)
    var /= len(fin)
    thr = big - n * math.sqrt(var)
    return _mask_where(l, lambda i: not (l[i] >= thr), min_keep)


def _prefix_mass_keep(l, order, score, p, target, min_keep):
    """Keep the shortest prefix of ``order`` whose mass reaches target (within 1e-6),
    plus tokens whose ``score`` equals that of the prefix's last token."""
    keep = [False] * len(l)
    cum = 0.0
    last = None
    for i in order:
        cum += p[i]
        keep[i] = True
        last = i
        if cum >= target - 1e-6:
            break
    for i in order:
        if score[i] == score[last]:
            keep[i] = True
    return _finish(l, keep, min_keep)


def typical(row, p, min_keep):
    p, min_keep = float(p), int(min_keep)
    l = _vals(row)
    if p >= 1.0:
        return _out(l)
    pr = _probs(l)
    h = _entropy(pr)
    score = [None] * len(l)
    for i in _finite_ids(l):
        score[i] = abs(-math.log(pr[i]) - h)
    order = _finite_ids(l)
    order.sort(key=lambda i: (score[i], i))
    return _prefix_mass_keep(l, order, score, pr, p, min_keep)


def top_p(row, p, min_keep):
    p, min_keep = float(p), int(min_keep)
    l = _vals(row)
    if p >= 1.0:
        return _out(l)
    pr = _probs(l)
    order = _sorted_by_prob_desc(l, pr)
    return _prefix_mass_keep(l, order, pr, pr, p, min_keep)


def min_p(row, p, min_keep):
    p, min_keep = float(p), int(min_keep)
    l = _vals(row)
    if p <= 0.0:
        return _out(l)
    thr = _max_finite(l) + math.log(p)
    return _mask_where(l, lambda i: not (l[i] >= thr), min_keep)


def xtc(row, probability, threshold, min_keep, u):
    probability, threshold, min_keep, u = float(probability), float(threshold), int(min_keep), float(u)
    l = _vals(row)
    if probability <= 0.0 or threshold > 0.5:
        return _out(l)
    if not (u < probability):
        return _out(l)
    pr = _probs(l)
    above = [i for i in _finite_ids(l) if pr[i] >= threshold]
    if len(above) < 2:
        return _out(l)
    smallest = min(pr[i] for i in above)
    doomed = set(i for i in above if pr[i] != smallest)
    return _mask_where(l, lambda i: i in doomed, min_keep)


def epsilon(row, epsilon, min_keep):
    epsilon, min_keep = float(epsilon), int(min_keep)
    l = _vals(row)
    if epsilon <= 0.0:
        return _out(l)
    pr = _probs(l)
    return _mask_where(l, lambda i: pr[i] < epsilon, min_keep)


def eta(row, epsilon, min_keep):
    epsilon, min_keep = float(epsilon), int(min_keep)
    l = _vals(row)
    if epsilon <= 0.0:
        return _out(l)
    pr = _probs(l)
    h = _entropy(pr)
    cut = min(epsilon, math.sqrt(epsilon) * math.exp(-h))
    return _mask_where(l, lambda i: pr[i] < cut, min_keep)


def top_a(row, a, min_keep):
    a, min_keep = float(a), int(min_keep)
    l = _vals(row)
    if a <= 0.0:
        return _out(l)
    pr = _probs(l)
    pmax = max(pr)
    cut = a * pmax * pmax
    return _mask_where(l, lambda i: pr[i] < cut, min_keep)


def p_less(row, min_keep):
    l = _vals(row)
    pr = _probs(l)
    s2 = 0.0
    for x in pr:
        s2 += x * x
    cut = s2 - 1e-6
    return _mask_where(l, lambda i: pr[i] < cut, min_keep)


def tail_free(row, z, min_keep):
    """text-generation-webui rule over the unmasked tokens (sorted by p desc, ties to
    the lower id): position 0 kept; position i+1 masked where the normalised cumulative
    second difference c_i > z; position n-1 masked.  A zero sum of d (0/0 -> NaN in
    the webui code) masks nothing but position n-1."""
    z, min_keep = float(z), int(min_keep)
    l = _vals(row)
    if z >= 1.0:
        return _out(l)
    pr = _probs(l)
    order = _sorted_by_prob_desc(l, pr)
    n = len(order)
    ps = [pr[i] for i in order]
    masked_pos = [False] * n
    d = []
    for i in range(n - 2):
        d.append(abs(ps[i] - 2.0 * ps[i + 1] + ps[i + 2]))
    total = 0.0
    for x in d:
        total += x
    if total > 0.0:
        c = 0.0
        for i in range(n - 2):
            c += d[i] / total
            if c > z:
                masked_pos[i + 1] = True
    if n >= 2:
        masked_pos[n - 1] = True
    masked_pos[0] = False
    doomed = set(order[j] for j in range(n) if masked_pos[j])
    return _mask_where(l, lambda i: i in doomed, min_keep)


# ----------------------------------------------------------------------------- transforms


def greedy(row):
    l = _vals(row)
    best = argmax(l)
    res = [NEG_INF] * len(l)
    if best >= 0:
        res[best] = l[best]
    return _out(res)


def temperature(row, t):
    t = float(t)
    l = _vals(row)
    if t == 1.0:
        return _out(l)
    if t <= 0.0:
        return greedy(l)
    res = []
    for v in l:
        res.append(_sat(v / t) if _is_finite(v) else NEG_INF)
    return _out(res)


def dynamic_temperature(row, t, range_, exponent):
    t, range_, exponent = float(t), float(range_), float(exponent)
    l = _vals(row)
    if range_ <= 0.0:
        return temperature(l, t)
    n = len(_finite_ids(l))
    if n <= 1:
        return temperature(l, t)
    h = _entropy(_probs(l))
    lo = max(0.0, t - range_)
    hi = t + range_
    big_t = lo + (hi - lo) * (h / math.log(n)) ** exponent
    return temperature(l, big_t)


def smoothing(row, factor, curve):
    factor, curve = float(factor), float(curve)
    l = _vals(row)
    if factor <= 0.0:
        return _out(l)
    m = _max_finite(l)
    k = (3.0 - curve) / 2.0
    s = (curve - 1.0) / 2.0
    res = []
    for v in l:
        if _is_finite(v):
            d = v - m
            res.append(_sat(m - k * factor * d ** 2 + s * factor * d ** 3))
        else:
            res.append(NEG_INF)
    return _out(res)


# ----------------------------------------------------------------------------- terminals


def draw(row, u):
    """Spec §5 inverse CDF in token-id order; -1 if the row has no finite logit."""
    u = float(u)
    l = _vals(row)
    ids = _finite_ids(l)
    if not ids:
        return -1
    m = _max_finite(l)
    w = [math.exp(l[i] - m) for i in ids]
    total = 0.0
    for x in w:
        total += x
    target = u * total
    run = 0.0
    for i, x in zip(ids, w):
        run += x
        if run > target:
            return i
    return ids[-1]


def mirostat_k(row, mu, m):
    """Mirostat v1's k (float64, IEEE), or None when sum t_i^2 == 0."""
    mu, m = float(mu), int(m)
    l = _vals(row)
    pr = _probs(l)
    order = _sorted_by_prob_desc(l, pr)
    n = len(order)
    vocab = len(l)
    lim = min(int(m), n) - 1
    st2 = 0.0
    stb = 0.0
    for i in range(max(lim, 0)):
        t = math.log((i + 2) / (i + 1))
        b = math.log(pr[order[i]] / pr[order[i + 1]])
        stb += t * b
        st2 += t * t
    if st2 == 0.0:
        return None
    s = stb / st2
    e = s - 1.0
    num = e * _ieee_pow(2.0, mu)
    den = 1.0 - _ieee_pow(float(vocab), -e)
    return _ieee_pow(_ieee_div(num, den), _ieee_div(1.0, s))


def mirostat(row, mu, m):
    mu, m = float(mu), int(m)
    l = _vals(row)
    n = len(_finite_ids(l))
    k = mirostat_k(l, mu, m)
    if k is None:
        kk = 1
    else:
        if not math.isfinite(k) or k > n:
            k = float(n)
        kk = max(int(k), 1)
    return _finish(l, _keep_top_k_rule(l, kk), 1)


def mirostat_v2(row, mu):
    mu = float(mu)
    l = _vals(row)
    pr = _probs(l)
    return _mask_where(l, lambda i: not (-math.log2(pr[i]) <= mu), 1)


def adaptive_p(row, target, ema_sum, ema_weight):
    target, ema_sum, ema_weight = float(target), float(ema_sum), float(ema_weight)
    l = _vals(row)
    if target < 0.0:
        return _out(l)
    pr = _probs(l)
    tau = min(max(2.0 * target - ema_sum / ema_weight, 0.0), 1.0)
    res = []
    for i in range(len(l)):
        if _is_finite(l[i]):
            d = abs(pr[i] - tau) / 0.3
            res.append(5.0 - 10.0 * d * d / (1.0 + d))
        else:
            res.append(NEG_INF)
    return _out(res)


# ----------------------------------------------------------------------------------
# token constraints (docs/spec.md §10)


def bitmask_allowed(words, v):
    """Whether token v is allowed by a packed bitmask row (a sequence of 32-bit words,
    signed or unsigned): bit ``v % 32`` of word ``v // 32``."""
    return (int(words[v // 32]) >> (v % 32)) & 1 == 1


def apply_token_bitmask(row, words):
    """``row`` with every token the bitmask row ``words`` disallows set to -inf
    (``words`` None: unconstrained)."""
    l = _vals(row)
    if words is None:
        return _out(l)
    return _out([x if bitmask_allowed(words, v) else NEG_INF for v, x in enumerate(l)])


def allowed_tokens(row, ids):
    keep = set(int(i) for i in ids)
    return _out([x if v in keep else NEG_INF for v, x in enumerate(_vals(row))])


def bad_words(row, history, sequences):
    """vLLM bad_words: for each sequence s, if the history ends with s[:-1], ban s[-1]."""
    l = _vals(row)
    hist = [int(t) for t in history]
    for seq in sequences:
        seq = [int(t) for t in seq]
        prefix = seq[:-1]
        ends = len(hist) >= len(prefix) and all(
            hist[len(hist) - len(prefix) + i] == prefix[i] for i in range(len(prefix)))
        if ends:
            l[seq[-1]] = NEG_INF
    return _out(l)


def min_tokens(row, n, stop_ids, position):
    l = _vals(row)
    if position < n:
        for t in stop_ids:
            l[int(t)] = NEG_INF
    return _out(l)
