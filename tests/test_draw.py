"""docs/spec.md §5 draw: statistics, reproducibility, batch invariance, the exact rule, and
SamplerChain state (positions, history, Mirostat mu).

All randomness is seeded; every test is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

import fastsample as fs
from fastsample.rng import uniform





# ---------------------------------------------------------------- helpers


def softmax64(x):
    x = np.asarray(x, dtype=np.float64)
    fin = np.isfinite(x)
    m = np.max(np.where(fin, x, -np.inf), axis=-1, keepdims=True)
    w = np.where(fin, np.exp(np.where(fin, x, 0.0) - m), 0.0)
    return w / w.sum(axis=-1, keepdims=True)


def inverse_cdf(l, u):
    """Spec §5 by hand: ascending ids, float64 weights exp(l - m), first running sum > u*W."""
    l = np.asarray(l, dtype=np.float64)
    ids = np.flatnonzero(np.isfinite(l))
    w = np.exp(l[ids] - l[ids].max())
    target = u * w.sum()
    run = 0.0
    for t, wt in zip(ids, w):
        run += wt
        if run > target:
            return int(t)
    return int(ids[-1])


def chisq_pvalue(tokens, p):
    """Chi-square goodness of fit; bins with expected count < 5 are pooled."""
    n = len(tokens)
    counts = np.bincount(tokens, minlength=len(p)).astype(np.float64)
    # tokens with p == 0 must never be drawn
    assert counts[p == 0].sum() == 0, "a masked token was drawn"
    exp = p * n
    big = exp >= 5
    obs = list(counts[big])
    ex = list(exp[big])
    if (~big & (p > 0)).any():
        obs.append(counts[~big].sum())
        ex.append(exp[~big].sum())
    obs, ex = np.array(obs), np.array(ex)
    ex *= obs.sum() / ex.sum()
    return stats.chisquare(obs, ex).pvalue


def llm_like_row(V, seed):
    rng = np.random.default_rng([seed, 0])
    rank = rng.permutation(V)
    return (-1.5 * np.log1p(rank) + 0.5 * rng.standard_normal(V)).astype(np.float32)


def naive_w1(l, top_k, top_p, min_p, t):
    """llama.cpp order top_k -> top_p -> min_p -> temperature, spec §4 rules, by hand."""
    l = np.asarray(l, dtype=np.float64)
    keep = np.isfinite(l)
    # top_k: keep l >= k-th largest
    kth = np.sort(l[keep])[::-1][top_k - 1]
    keep &= l >= kth
    # top_p over the renormalised p: shortest prefix reaching p (descending p, ties lower id)
    p = softmax64(np.where(keep, l, -np.inf))
    order = sorted(np.flatnonzero(keep), key=lambda i: (-p[i], i))
    cum, cut = 0.0, None
    for i in order:
        cum += p[i]
        if cum >= top_p - 1e-6:
            cut = p[i]
            break
    keep &= p >= cut
    # min_p
    lm = l[keep].max()
    keep &= l >= lm + math.log(min_p)
    return np.where(keep, l / t, -np.inf)


N_DRAWS = 20000


def process_fresh(backend, stages, l):
    # a chain that has sampled holds per-row state for its B; use a new one for (V,)
    return fs.SamplerChain(stages, backend=backend).process(l)


def draw_many(backend, stages, l, seed=1234, n=N_DRAWS):
    X = np.tile(l, (n, 1))
    chain = fs.SamplerChain(stages, seed=seed, backend=backend)
    tok = chain.sample(X, position=np.arange(n, dtype=np.uint64))
    tok = np.asarray(tok)
    assert tok.dtype == np.int32 and tok.shape == (n,)
    return tok, chain


# ---------------------------------------------------------------- goodness of fit


def test_chisq_dist_only(backend):
    l = np.random.default_rng(1).standard_normal(10).astype(np.float32)
    l[4] = -np.inf
    tok, chain = draw_many(backend, [fs.Dist()], l)
    p = softmax64(l)
    np.testing.assert_allclose(fs.softmax(process_fresh(backend, [fs.Dist()], l)), p, atol=1e-6)
    assert chisq_pvalue(tok, p) > 1e-4


def test_chisq_topk_temperature(backend):
    l = np.random.default_rng(2).standard_normal(12).astype(np.float32) * 1.5
    top5 = np.argsort(-l.astype(np.float64), kind="stable")[:5]
    keep = np.zeros(12, bool)
    keep[top5] = True
    p = softmax64(np.where(keep, l.astype(np.float64) / 0.7, -np.inf))
    stages = [fs.TopK(5), fs.Temperature(0.7)]
    tok, chain = draw_many(backend, stages, l)
    np.testing.assert_allclose(fs.softmax(process_fresh(backend, stages, l)), p, atol=1e-6)
    assert chisq_pvalue(tok, p) > 1e-4


def test_chisq_top_p_min_p(backend):
    # by id: 0.1, 0.04, 0.3, 0.08, 0.15, 0.03, 0.25, 0.05
    probs = np.array([0.1, 0.04, 0.3, 0.08, 0.15, 0.03, 0.25, 0.05])
    l = np.log(probs).astype(np.float32)
    # TopP(0.85): 0.3 + 0.25 + 0.15 + 0.1 + 0.08 = 0.88 -> 5 tokens;
    # MinP(0.3) on the renormalised p: 0.3 * 0.3/0.88 = 0.102 > 0.08/0.88 = 0.091 -> 4 tokens
    expected = np.where(np.isin(np.arange(8), [0, 2, 4, 6]), probs, 0.0)
    expected /= expected.sum()
    stages = [fs.TopP(0.85), fs.MinP(0.3)]
    tok, chain = draw_many(backend, stages, l)
    np.testing.assert_allclose(fs.softmax(process_fresh(backend, stages, l)), expected, atol=1e-6)
    assert chisq_pvalue(tok, expected) > 1e-4


def test_chisq_sample_w1_like(backend):
    V = 64
    l = llm_like_row(V, 0)
    exp = softmax64(naive_w1(l, 40, 0.95, 0.05, 0.8))
    assert 3 <= np.count_nonzero(exp) <= 40
    chain = fs.SamplerChain([fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
                            backend=backend)
    np.testing.assert_allclose(fs.softmax(chain.process(l)), exp, atol=1e-6)
    X = np.tile(l, (N_DRAWS, 1))
    tok = fs.sample(X, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=99,
                    position=np.arange(N_DRAWS), backend=backend)
    assert chisq_pvalue(np.asarray(tok), exp) > 1e-4


def test_chisq_over_positions_single_row(backend):
    # one (V,) row drawn position by position through a Python loop
    l = np.log(np.array([0.5, 0.2, 0.2, 0.1])).astype(np.float32)
    toks = np.array([fs.sample(l, seed=5, position=i, backend=backend) for i in range(2000)])
    assert chisq_pvalue(toks, np.array([0.5, 0.2, 0.2, 0.1])) > 1e-4


# ---------------------------------------------------------------- reproducibility


def test_same_seed_and_position_same_token(backend):
    l = llm_like_row(50, 3)
    for pos in (0, 1, 17, 2**40 + 5):
        a = fs.sample(l, temperature=1.3, seed=42, position=pos, backend=backend)
        b = fs.sample(l.copy(), temperature=1.3, seed=42, position=pos, backend=backend)
        c = fs.SamplerChain([fs.Temperature(1.3)], seed=42, backend=backend).sample(
            l, position=pos)
        assert isinstance(a, int)
        assert a == b == c


def test_different_positions_and_seeds_differ(backend):
    l = np.zeros(16, dtype=np.float32)  # uniform over 16 tokens
    by_pos = [fs.sample(l, seed=8, position=i, backend=backend) for i in range(200)]
    assert len(set(by_pos)) >= 12
    assert sum(a == b for a, b in zip(by_pos, by_pos[1:])) < 40
    by_seed = [fs.sample(l, seed=s, position=0, backend=backend) for s in range(200)]
    assert len(set(by_seed)) >= 12
    assert sum(a == b for a, b in zip(by_pos, by_seed)) < 40


# ---------------------------------------------------------------- batch invariance


def test_batch_invariance_chain(backend):
    B, V = 16, 40
    X = np.stack([llm_like_row(V, s) for s in range(B)])
    seeds = np.arange(100, 100 + B, dtype=np.uint64) * 7919
    pos = np.arange(B, dtype=np.uint64) * 13 + 5
    stages = [fs.TopK(20), fs.TopP(0.95), fs.MinP(0.02), fs.Temperature(1.2)]
    full = np.asarray(fs.SamplerChain(stages, seed=seeds, backend=backend).sample(X, position=pos))
    assert len(set(full.tolist())) > 1

    def part(idx, extra=None):
        Xi, si, pi = X[idx], seeds[idx], pos[idx]
        if extra is not None:
            Xi = np.concatenate([Xi, extra])
            si = np.concatenate([si, np.arange(len(extra), dtype=np.uint64)])
            pi = np.concatenate([pi, np.zeros(len(extra), dtype=np.uint64)])
        return np.asarray(fs.SamplerChain(stages, seed=si, backend=backend).sample(Xi, position=pi))

    for idx in ([3, 7, 1], list(range(B))[::-1], [5], np.random.default_rng(0).permutation(B)):
        idx = np.asarray(idx)
        np.testing.assert_array_equal(part(idx), full[idx])
    extra = np.stack([llm_like_row(V, 1000 + s) for s in range(5)])
    idx = np.arange(B)
    np.testing.assert_array_equal(part(idx, extra)[:B], full)


def test_batch_invariance_sample(backend):
    B, V = 12, 30
    X = np.stack([llm_like_row(V, 50 + s) for s in range(B)])
    seeds = np.arange(B, dtype=np.uint64) + 2**33
    pos = np.arange(B, dtype=np.uint64) * 3
    kw = dict(temperature=0.9, top_k=15, top_p=0.9, min_p=0.05)
    full = np.asarray(fs.sample(X, seed=seeds, position=pos, backend=backend, **kw))
    perm = np.random.default_rng(1).permutation(B)
    np.testing.assert_array_equal(
        fs.sample(X[perm], seed=seeds[perm], position=pos[perm], backend=backend, **kw), full[perm])
    for i in range(B):
        assert fs.sample(X[i], seed=int(seeds[i]), position=int(pos[i]), backend=backend,
                         **kw) == full[i]


# ---------------------------------------------------------------- the exact rule


def test_uniform_known_answers():
    # Spec §5 Philox known answers, through the uniform: x = word0 | word1 << 32
    def u_of(word0, word1):
        x = (word1 << 32) | word0
        return ((x >> 12) + 0.5) * 2.0**-52

    assert float(uniform(0, 0, 0)) == u_of(0x6627E8D5, 0xE169C58D)
    assert float(uniform(2**64 - 1, 2**64 - 1, 0xFFFFFFFF, token=0xFFFFFFFF)) == u_of(
        0x408F276D, 0x41C83B0E)
    assert float(uniform(0x299F31D0A4093822, 0x85A308D3243F6A88, 0x03707344,
                         token=0x13198A2E)) == u_of(0xD16CFE09, 0x94FDCCEB)


def test_draw_rule_known_answer(backend):
    rng = np.random.default_rng(2024)
    B, V = 400, 24
    X = rng.standard_normal((B, V)).astype(np.float32) * 2
    X[rng.random((B, V)) < 0.3] = -np.inf
    X[np.arange(B), rng.integers(0, V, B)] = 0.5  # at least one finite per row
    seeds = rng.integers(0, 2**63, B, dtype=np.uint64)
    pos = rng.integers(0, 2**40, B, dtype=np.uint64)
    u = uniform(seeds, pos, 0)
    expected = np.array([inverse_cdf(X[b], u[b]) for b in range(B)])
    got = np.asarray(fs.sample(X, seed=seeds, position=pos, backend=backend))
    np.testing.assert_array_equal(got, expected)
    got = np.asarray(fs.SamplerChain([fs.Dist()], seed=seeds, backend=backend).sample(X, position=pos))
    np.testing.assert_array_equal(got, expected)
    # with temperature 0.5 (l / 0.5 is exact in float32)
    expected = np.array([inverse_cdf(X[b] / np.float32(0.5), u[b]) for b in range(B)])
    got = np.asarray(fs.sample(X, temperature=0.5, seed=seeds, position=pos, backend=backend))
    np.testing.assert_array_equal(got, expected)
    # the rule spreads over several tokens, not always the max
    assert len(set(expected.tolist())) > 5
    assert np.mean(expected != np.argmax(X, axis=1)) > 0.2


def test_draw_rule_single_row_uses_position(backend):
    l = np.log(np.array([0.1, 0.2, 0.3, 0.4])).astype(np.float32)
    for pos in range(50):
        u = float(uniform(77, pos, 0))
        assert fs.sample(l, seed=77, position=pos, backend=backend) == inverse_cdf(l, u)


def test_greedy_and_temperature_zero_pick_first_max(backend):
    l = np.array([0.1, 2.0, -1.0, 2.0], dtype=np.float32)
    assert fs.sample(l, temperature=0.0, seed=3, backend=backend) == 1
    assert fs.SamplerChain([fs.Greedy()], backend=backend).sample(l) == 1
    assert fs.SamplerChain([fs.Temperature(-1.0)], backend=backend).sample(l) == 1


# ---------------------------------------------------------------- SamplerChain state


def test_accept_advances_positions_and_reset(backend):
    X = np.stack([llm_like_row(20, 1), llm_like_row(20, 2)])
    seeds = np.array([10, 20], dtype=np.uint64)
    chain = fs.SamplerChain([fs.Temperature(1.5)], seed=seeds, backend=backend)

    def at(p):
        return [inverse_cdf(X[b] / np.float32(1.5), float(uniform(seeds[b], p, 0))) for b in range(2)]

    t0 = np.asarray(chain.sample(X))
    np.testing.assert_array_equal(t0, at(0))
    # sample alone does not advance
    np.testing.assert_array_equal(chain.sample(X), t0)
    seq = [t0]
    for step in range(1, 8):
        chain.accept(seq[-1])
        np.testing.assert_array_equal(chain.positions, [step, step])
        assert chain.positions.dtype == np.uint64
        seq.append(np.asarray(chain.sample(X)))
        np.testing.assert_array_equal(seq[-1], at(step))
    assert len({tuple(s) for s in seq}) > 1
    hist = chain.history
    assert len(hist) == 2
    np.testing.assert_array_equal(hist[0], [s[0] for s in seq[:-1]])
    np.testing.assert_array_equal(hist[1], [s[1] for s in seq[:-1]])
    chain.reset()
    assert chain.positions is None or np.all(np.asarray(chain.positions) == 0)
    assert chain.history is None or all(len(h) == 0 for h in chain.history)
    np.testing.assert_array_equal(chain.sample(X), t0)


def test_explicit_position_overrides(backend):
    X = np.stack([llm_like_row(20, 3)] * 3)
    chain = fs.SamplerChain([fs.Dist()], seed=5, backend=backend)
    pos = np.array([0, 9, 2**35], dtype=np.uint64)
    got = np.asarray(chain.sample(X, position=pos))
    np.testing.assert_array_equal(
        got, [inverse_cdf(X[b], float(uniform(5, pos[b], 0))) for b in range(3)])


def test_chain_history_feeds_penalties(backend):
    X = np.zeros((2, 6), dtype=np.float32)
    stages = [fs.Penalties(presence=5.0, frequency=1.0, last_n=-1), fs.Greedy()]
    chain = fs.SamplerChain(stages, backend=backend)
    np.testing.assert_array_equal(chain.process(X), np.where(np.arange(6) == 0, 0, -np.inf)[None]
                                  .repeat(2, 0))  # greedy one-hot on the first max
    np.testing.assert_array_equal(chain.sample(X), [0, 0])
    chain.accept(np.array([0, 3], dtype=np.int32))
    chain.accept(np.array([0, 4], dtype=np.int32))
    # Penalties alone, through a chain that shares the same history
    pen = fs.SamplerChain([fs.Penalties(presence=5.0, frequency=1.0, last_n=-1)], backend=backend)
    pen.sample(X)  # the chain learns B from its first sample
    pen.accept(np.array([0, 3], dtype=np.int32))
    pen.accept(np.array([0, 4], dtype=np.int32))
    exp = np.zeros((2, 6))
    exp[0, 0] = -(2 * 1.0 + 5.0)
    exp[1, 3] = -6.0
    exp[1, 4] = -6.0
    np.testing.assert_allclose(pen.process(X), exp, atol=1e-6)
    # an explicit history overrides the chain's own
    np.testing.assert_allclose(pen.process(X, history=[np.array([], dtype=np.int64), np.array([5])]),
                               [[0] * 6, [0, 0, 0, 0, 0, -6.0]], atol=1e-6)
    # greedy after the penalties: row 0 avoids token 0, row 1 avoids 3 and 4
    np.testing.assert_array_equal(chain.sample(X), [1, 0])
    pen.reset()
    np.testing.assert_allclose(pen.process(X), np.zeros((2, 6)), atol=0)


class _Mirostat2Model:
    """Hand model of MirostatV2 for one row (spec §4 table)."""

    def __init__(self, l, tau, eta):
        self.l = np.asarray(l, dtype=np.float64)
        self.p = softmax64(self.l)
        self.s = -np.log2(self.p)
        self.tau, self.eta = tau, eta
        self.mu = 2 * tau

    def kept(self):
        # far from a boundary, so float noise cannot flip the set
        assert np.min(np.abs(self.s - self.mu)) > 1e-6
        k = self.s <= self.mu
        if not k.any():
            k = self.l == self.l.max()
        return k

    def step(self, u):
        k = self.kept()
        tok = inverse_cdf(np.where(k, self.l, -np.inf), u)
        q = self.p[tok] / self.p[k].sum()
        self.mu -= self.eta * (-math.log2(q) - self.tau)
        return tok


def test_mirostat_v2_mu_per_row(backend):
    probs = np.array([0.45, 0.26, 0.14, 0.1, 0.05])
    l = np.log(probs).astype(np.float32)
    X = np.stack([l, l, l[::-1].copy()])
    seeds = np.array([1, 2, 3], dtype=np.uint64)
    tau, eta = 1.6, 1.0
    models = [_Mirostat2Model(X[b], tau, eta) for b in range(3)]
    chain = fs.SamplerChain([fs.MirostatV2(tau=tau, eta=eta)], seed=seeds, backend=backend)
    mus = set()
    for step in range(10):
        out = chain.process(X)
        np.testing.assert_array_equal(chain.process(X), out)  # process changes nothing
        for b in range(3):
            np.testing.assert_array_equal(np.isfinite(out[b]), models[b].kept(),
                                          err_msg=f"row {b} step {step}")
        tok = np.asarray(chain.sample(X))
        exp = [models[b].step(float(uniform(seeds[b], step, 0))) for b in range(3)]
        np.testing.assert_array_equal(tok, exp, err_msg=f"step {step}")
        mus.update(round(m.mu, 9) for m in models)
        chain.accept(tok)
    assert len(mus) > 3  # the rows' mu really moved apart


def test_mirostat_v2_rows_independent(backend):
    # a row's trajectory does not depend on the other rows in the batch
    l = np.log(np.array([0.45, 0.26, 0.14, 0.1, 0.05])).astype(np.float32)
    X = np.stack([l, l[::-1].copy(), l])
    seeds = np.array([4, 5, 6], dtype=np.uint64)
    both = fs.SamplerChain([fs.MirostatV2(tau=1.6, eta=1.0)], seed=seeds, backend=backend)
    solo = fs.SamplerChain([fs.MirostatV2(tau=1.6, eta=1.0)], seed=seeds[2:], backend=backend)
    for _ in range(8):
        a = np.asarray(both.sample(X))
        b = np.asarray(solo.sample(X[2:]))
        assert a[2] == b[0]
        np.testing.assert_array_equal(np.isfinite(both.process(X))[2], np.isfinite(solo.process(X[2:]))[0])
        both.accept(a)
        solo.accept(b)


def _mirostat1_keep(l, mu, m=100):
    p = softmax64(l)
    ps = np.sort(p[p > 0])[::-1]
    V = len(l)
    i = np.arange(min(m, len(ps)) - 1)
    t = np.log((i + 2) / (i + 1))
    b = np.log(ps[i] / ps[i + 1])
    s = (t * b).sum() / (t * t).sum()
    e = s - 1
    k = ((e * 2**mu) / (1 - V ** (-e))) ** (1 / s)
    frac = k - math.floor(k)
    assert min(frac, 1 - frac) > 1e-6  # far from an integer boundary
    k = max(int(k), 1)
    kth = np.sort(np.asarray(l, dtype=np.float64))[::-1][min(k, len(l)) - 1]
    return np.asarray(l, dtype=np.float64) >= kth


def test_mirostat_v1_mu_per_row(backend):
    V = 32
    X = np.stack([llm_like_row(V, 11), llm_like_row(V, 12)])
    seeds = np.array([8, 9], dtype=np.uint64)
    tau, eta = 1.5, 0.5
    mu = [2 * tau, 2 * tau]
    chain = fs.SamplerChain([fs.Mirostat(tau=tau, eta=eta, m=100)], seed=seeds, backend=backend)
    sizes = set()
    for step in range(8):
        out = chain.process(X)
        tok = np.asarray(chain.sample(X))
        for b in range(2):
            keep = _mirostat1_keep(X[b], mu[b])
            np.testing.assert_array_equal(np.isfinite(out[b]), keep, err_msg=f"row {b} step {step}")
            sizes.add(int(keep.sum()))
            lk = np.where(keep, X[b].astype(np.float64), -np.inf)
            assert tok[b] == inverse_cdf(lk, float(uniform(seeds[b], step, 0)))
            q = softmax64(lk)[tok[b]]
            mu[b] -= eta * (-math.log2(q) - tau)
        chain.accept(tok)
    assert len(sizes) > 1  # k actually changed with mu


def test_mirostat_v2_mu_dense_distribution(backend):
    # -log2 p spaced 0.06 apart: the kept count pins mu down to +-0.03 every step
    V, B = 96, 4
    base = (-0.06 * math.log(2.0) * np.arange(V)).astype(np.float32)
    rng = np.random.default_rng(5)
    X = np.stack([base[rng.permutation(V)] for _ in range(B)])
    seeds = np.array([21, 22, 23, 24], dtype=np.uint64)
    tau, eta = 3.0, 0.7
    models = [_Mirostat2Model(X[b], tau, eta) for b in range(B)]
    chain = fs.SamplerChain([fs.MirostatV2(tau=tau, eta=eta)], seed=seeds, backend=backend)
    counts = set()
    for step in range(25):
        out = chain.process(X)
        for b in range(B):
            np.testing.assert_array_equal(np.isfinite(out[b]), models[b].kept(),
                                          err_msg=f"row {b} step {step}")
            counts.add(int(models[b].kept().sum()))
        tok = np.asarray(chain.sample(X))
        exp = [models[b].step(float(uniform(seeds[b], step, 0))) for b in range(B)]
        np.testing.assert_array_equal(tok, exp, err_msg=f"step {step}")
        chain.accept(tok)
    assert len(counts) > 5


def test_adaptive_p_state_per_row(backend):
    # Spec §4 AdaptiveP, by hand: S, W at equilibrium; tau' = clamp(2 target - S/W, 0, 1);
    # l' = 5 - 10 d^2 / (1 + d), d = |p - tau'| / 0.3; after the draw S = p + decay S,
    # W = 1 + decay W with p the drawn token's probability before the transform
    V, B = 12, 3
    X = np.stack([llm_like_row(V, 30 + b) for b in range(B)])
    X[1, 5] = -np.inf
    target = np.array([0.2, 0.5, 0.05])
    decay = 0.8
    seeds = np.array([3, 4, 5], dtype=np.uint64)
    S, W = target / (1 - decay), np.full(B, 1 / (1 - decay))
    p = softmax64(X)
    chain = fs.SamplerChain([fs.AdaptiveP(target, decay=decay)], seed=seeds, backend=backend)
    taus = set()
    for step in range(12):
        out = chain.process(X)
        tok = np.asarray(chain.sample(X))
        for b in range(B):
            tau = min(max(2 * target[b] - S[b] / W[b], 0.0), 1.0)
            taus.add(round(tau, 9))
            d = np.abs(p[b] - tau) / 0.3
            lt = np.where(np.isfinite(X[b]), 5 - 10 * d**2 / (1 + d), -np.inf)
            np.testing.assert_allclose(softmax64(out[b]), softmax64(lt), atol=1e-6,
                                       err_msg=f"row {b} step {step}")
            assert tok[b] == inverse_cdf(out[b], float(uniform(seeds[b], step, 0)))
            S[b] = p[b, tok[b]] + decay * S[b]
            W[b] = 1 + decay * W[b]
        chain.accept(tok)
    assert len(taus) > 6
