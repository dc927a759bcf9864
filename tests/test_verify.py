"""Speculative decoding verification (docs/spec.md §11): ``fs.verify`` and ``SamplerChain.verify``.

- exact mode: the tokens are those of step-by-step ``fs.sample`` / ``chain.sample`` +
  ``accept`` (accepting the drafts), scanned for the first mismatch, on every backend,
  for random chains of every stage verify allows, per-row parameters, ragged drafts,
  K = 0;
- rejection mode: every backend gives the reference's tokens; the kernels give the
  same result on dense and compacted rows; statistical tests (fixed seeds, so
  deterministic) that the first emitted token follows p_0, the token after an
  accepted draft follows p_1, and the acceptance rate matches sum(min(p, q));
- bad input: clear errors, flagged requests.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import fastsample as fs
from fastsample import reference, registry

CHI2_FLOOR = 1e-4     # p-value floor of every chi-square test here
Z_LIMIT = 4.5         # acceptance-rate tests: |observed - expected| <= 4.5 sigma (p ~ 7e-6)


def _logits(shape, seed, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _probs(shape, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(shape[-1]), shape[:-1]).astype(np.float32)


def _scan(plain, d, n):
    """Exact mode from the plain tokens ``plain`` (B, K+1): accept while equal."""
    B, K1 = plain.shape
    tokens = np.full((B, K1), -1, np.int32)
    acc = np.zeros(B, np.int32)
    for b in range(B):
        j = 0
        while j < n[b] and plain[b, j] == d[b, j]:
            tokens[b, j] = d[b, j]
            j += 1
        tokens[b, j] = plain[b, j]
        acc[b] = j
    return tokens, acc


def _same(a, b):
    assert np.array_equal(a.tokens, b.tokens), (a.tokens, b.tokens)
    assert np.array_equal(a.num_accepted, b.num_accepted)
    assert np.array_equal(a.num_emitted, b.num_emitted)


# ---------------------------------------------------------------- fs.verify, exact


@st.composite
def sample_cases(draw):
    B = draw(st.integers(1, 5))
    K = draw(st.integers(0, 4))
    V = draw(st.sampled_from([1, 2, 8, 33, 300]))
    per_row = draw(st.booleans())

    def param(lo, hi, integer=False):
        if per_row:
            v = np.array([draw(st.floats(lo, hi)) for _ in range(B)])
            return np.floor(v).astype(np.int64) if integer else v
        v = draw(st.floats(lo, hi))
        return int(v) if integer else v

    params = {"temperature": param(-0.3, 2.0), "top_k": param(-1, 12, True),
              "top_p": param(0.0, 1.05), "min_p": param(0.0, 0.4),
              "min_keep": draw(st.integers(1, 3)), "temperature_last": draw(st.booleans())}
    seed = draw(st.integers(0, 2**40))
    return B, K, V, params, seed


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=sample_cases(), greedy_draft=st.booleans())
def test_exact_is_plain_sampling(case, greedy_draft, backend):
    """Exact mode = fs.sample at (seed, position + j) on every row, then the scan."""
    B, K, V, params, seed = case
    x = _logits((B, K + 1, V), seed)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**63, B).astype(np.uint64)
    pos = rng.integers(0, 2**40, B).astype(np.uint64)
    n = rng.integers(0, K + 1, B)
    plain = np.stack([fs.sample(x[:, j], seed=seeds, position=pos + np.uint64(j),
                                backend="numpy", **params) for j in range(K + 1)], axis=1)
    # drafts that often agree: the plain token itself, or a random one
    d = np.where(rng.random((B, K)) < 0.7, plain[:, :K], rng.integers(0, V, (B, K)))
    if greedy_draft:
        d = np.argmax(x[:, :K], axis=2)
    tokens, acc = _scan(plain, d, n)
    for q in (None, _probs((B, K, V), seed)):
        got = fs.verify(x, d, q, num_draft=n, method="exact", seed=seeds, position=pos,
                        backend=backend, **params)
        assert np.array_equal(got.tokens, tokens)
        assert np.array_equal(got.num_accepted, acc)
        assert np.array_equal(got.num_emitted, acc + 1)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=sample_cases(), use_q=st.booleans())
def test_rejection_matches_reference(case, use_q, fast_backend):
    B, K, V, params, seed = case
    x = _logits((B, K + 1, V), seed)
    rng = np.random.default_rng(seed + 1)
    d = rng.integers(0, V, (B, K))
    n = rng.integers(0, K + 1, B)
    q = _probs((B, K, V), seed) if use_q else None
    seeds = rng.integers(0, 2**63, B).astype(np.uint64)
    want = fs.verify(x, d, q, num_draft=n, seed=seeds, position=7, backend="numpy", **params)
    got = fs.verify(x, d, q, num_draft=n, seed=seeds, position=7, backend=fast_backend,
                    **params)
    _same(got, want)
    assert (want.num_accepted <= n).all()
    assert ((want.tokens >= 0).sum(axis=1) == want.num_emitted).all()


def test_k0_is_fs_sample(backend):
    """K = 0: both methods emit fs.sample's token (the bonus draw is the plain draw)."""
    B, V = 16, 50
    x = _logits((B, 1, V), 3)
    prm = {"top_k": 10, "top_p": 0.9, "min_p": 0.02, "temperature": 0.7}
    want = fs.sample(x[:, 0], seed=np.arange(B), position=5, backend="numpy", **prm)
    for method in ("exact", "rejection"):
        got = fs.verify(x, np.zeros((B, 0), np.int64), method=method, seed=np.arange(B),
                        position=5, backend=backend, **prm)
        assert np.array_equal(got.tokens[:, 0], want)
        assert (got.num_accepted == 0).all() and (got.num_emitted == 1).all()


@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_greedy_rows_accept_on_the_argmax(method, backend):
    B, K, V = 6, 3, 20
    x = _logits((B, K + 1, V), 5)
    am = np.argmax(x, axis=2)
    d = am[:, :K].copy()
    d[1, 0] = (am[1, 0] + 1) % V     # request 1 rejected at step 0
    d[2, 2] = (am[2, 2] + 1) % V     # request 2 rejected at step 2
    q = _probs((B, K, V), 5)
    got = fs.verify(x, d, q, method=method, temperature=0.0, seed=np.arange(B),
                    backend=backend)
    assert got.num_accepted.tolist() == [3, 0, 2, 3, 3, 3]
    for b in range(B):
        a = got.num_accepted[b]
        assert got.tokens[b, :a].tolist() == d[b, :a].tolist()
        assert got.tokens[b, a] == am[b, a]


# ---------------------------------------------------------------- kernels


@pytest.mark.parametrize("use_q", [False, True])
def test_kernels_dense_and_compacted(use_q, fast_backend):
    """verify_rows on dense rows and on their compacted survivors: same result, all backends."""
    rng = np.random.default_rng(11)
    B, K, V = 40, 3, 24
    dense = _logits((B * (K + 1), V), 11)
    dense[rng.random(dense.shape) < 0.6] = -np.inf
    dense[::7] = -np.inf
    dense[::7, 3] = 1.0              # one survivor: a greedy row
    ids, offs = [], [0]
    n = max(int(np.isfinite(dense).sum(1).max()), 1)
    block = np.full((B * (K + 1), n), -np.inf, np.float32)
    for r in range(B * (K + 1)):
        keep = np.flatnonzero(np.isfinite(dense[r]))
        ids.append(keep)
        offs.append(offs[-1] + keep.size)
        block[r, :keep.size] = dense[r, keep]
    ids = np.concatenate(ids).astype(np.int32)
    offs = np.array(offs, np.int64)
    d = rng.integers(0, V, (B, K)).astype(np.int32)
    d[::3, 0] = np.argmax(dense[::3 * (K + 1)], axis=1)   # some drafts on the mode
    q = _probs((B, K, V), 12) if use_q else None
    if use_q:
        q[::5, 0] = 0.0
        q[::5, 0, d[::5, 0]] = 1.0
    nd = rng.integers(0, K + 1, B)
    seed = np.arange(B, dtype=np.uint64)
    pos = np.full(B, 2**64 - 2, np.uint64)    # position + j wraps around
    want = reference.verify_rows(dense, None, None, d, q, nd, seed, pos)
    fn = registry.load(fast_backend).verify_rows
    for got in (reference.verify_rows(block, ids, offs, d, q, nd, seed, pos),
                fn(dense, None, None, d, q, nd, seed, pos),
                fn(block, ids, offs, d, q, nd, seed, pos)):
        for a, b in zip(got, want):
            assert np.array_equal(a, b)


def test_kernel_reads_q_only_on_the_support(fast_backend):
    """NaN draft probabilities off p's support and off the draft token are never read."""
    B, K, V = 4, 2, 10
    x = np.full((B, K + 1, V), -np.inf, np.float32)
    x[:, :, :3] = [0.0, 1.0, 2.0]
    d = np.ones((B, K), np.int64)
    q = np.full((B, K, V), np.nan, np.float32)
    q[:, :, :3] = 1 / 3
    for backend in ("numpy", fast_backend):
        got = fs.verify(x, d, q, seed=np.arange(B), backend=backend)
        assert (got.num_emitted >= 1).all()


# ---------------------------------------------------------------- statistics


def _p(row, **prm):
    """p of fs.sample's stages on one row (the reference's processed logits)."""
    chain = fs.SamplerChain(_stages(**prm), backend="numpy")
    return reference.softmax(chain.process(row)[None], np.ones(1))[0].astype(np.float64)


def _stages(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0):
    return [fs.TopK(top_k), fs.TopP(top_p), fs.MinP(min_p), fs.Temperature(temperature)]


def _chi2(tokens, p):
    counts = np.bincount(tokens, minlength=p.size).astype(np.float64)
    assert counts[p == 0].sum() == 0, "a token outside p's support was emitted"
    keep = p > 0
    exp = p[keep] / p[keep].sum() * counts.sum()
    return stats.chisquare(counts[keep], exp).pvalue


STAT_PARAMS = {"temperature": 0.9, "top_k": 7, "top_p": 0.97}


@pytest.mark.parametrize("deterministic_drafter", [False, True])
def test_rejection_is_lossless(deterministic_drafter, backend):
    """Drafts drawn from q: the first emitted token ~ p_0, the token after an accepted
    d_0 ~ p_1, and P(accept d_0) = sum(min(p_0, q_0)). N = 20000 requests (one call,
    seeds 0..N-1; 6000 on the slow numpy reference), V = 10; chi-square p-values >= 1e-4,
    rates within 4.5 sigma."""
    N, K, V = (6000 if backend == "numpy" else 20000), 2, 10
    base = _logits((1, K + 1, V), 21, scale=1.0)
    x = np.broadcast_to(base, (N, K + 1, V))
    p0, p1 = _p(base[0, 0], **STAT_PARAMS), _p(base[0, 1], **STAT_PARAMS)
    rng = np.random.default_rng(22)
    if deterministic_drafter:   # q one-hot on a fixed draft: the mode of the target
        d = np.tile([int(np.argmax(p0)), int(np.argmax(p1))], (N, 1))
        q, q0 = None, np.eye(V)[d[0, 0]]
    else:   # a drafter that puts mass on tokens p masks, and too little on others
        qrow = _probs((1, K, V), 23)[0]
        d = np.stack([rng.choice(V, N, p=qrow[j] / qrow[j].sum()) for j in range(K)], axis=1)
        q, q0 = np.broadcast_to(qrow, (N, K, V)), qrow[0].astype(np.float64)
    got = fs.verify(x, d, q, seed=np.arange(N), position=100, backend=backend,
                    **STAT_PARAMS)
    assert _chi2(got.tokens[:, 0], p0) >= CHI2_FLOOR
    after = got.num_accepted >= 1
    assert _chi2(got.tokens[after, 1], p1) >= CHI2_FLOOR
    rate = np.minimum(p0, q0).sum()
    sigma = np.sqrt(rate * (1 - rate) / N)
    assert abs(after.mean() - rate) <= Z_LIMIT * sigma + 1e-12


def test_exact_rate_is_plain_agreement(backend):
    """Exact mode accepts d_0 iff it equals the plain draw: P = q_0 . p_0 for d ~ q."""
    N, V = (6000 if backend == "numpy" else 20000), 10
    base = _logits((1, 2, V), 31, scale=1.0)
    x = np.broadcast_to(base, (N, 2, V))
    p0 = _p(base[0, 0], **STAT_PARAMS)
    qrow = _probs((1, 1, V), 32)[0, 0].astype(np.float64)
    d = np.random.default_rng(33).choice(V, (N, 1), p=qrow / qrow.sum())
    got = fs.verify(x, d, None, method="exact", seed=np.arange(N), backend=backend,
                    **STAT_PARAMS)
    assert _chi2(got.tokens[:, 0], p0) >= CHI2_FLOOR
    rate = float(qrow @ p0) / qrow.sum()
    sigma = np.sqrt(rate * (1 - rate) / N)
    assert abs((got.num_accepted >= 1).mean() - rate) <= Z_LIMIT * sigma


# ---------------------------------------------------------------- chains


def _row_param(rng, B, lo, hi, integer=False):
    v = rng.uniform(lo, hi, B)
    return np.floor(v).astype(np.int64) if integer else v


def _random_chain(rng, B, V):
    """Stages of every kind verify allows, per-row parameters, a Dist or Greedy terminal."""
    pool = [
        lambda: fs.LogitBias({int(rng.integers(V)): -np.inf, int(rng.integers(V)): 1.5}),
        lambda: fs.Penalties(_row_param(rng, B, 0.8, 1.6), _row_param(rng, B, 0, 0.5),
                             _row_param(rng, B, 0, 0.5), _row_param(rng, B, -1, 8, True)),
        lambda: fs.DRY(_row_param(rng, B, 0, 2), 1.75, _row_param(rng, B, 1, 3, True),
                       -1, breakers=[int(rng.integers(V))]),
        lambda: fs.NoRepeatNGram(_row_param(rng, B, 1, 4, True)),
        lambda: fs.BadWords([[int(rng.integers(V))], [int(rng.integers(V)),
                                                      int(rng.integers(V))]]),
        lambda: fs.MinTokens(_row_param(rng, B, 0, 12, True), [int(rng.integers(V))]),
        lambda: fs.AllowedTokens(rng.choice(V, max(2, V - 3), replace=False)),
        lambda: fs.TopK(_row_param(rng, B, -1, 10, True)),
        lambda: fs.TopP(_row_param(rng, B, 0.3, 1.05)),
        lambda: fs.MinP(_row_param(rng, B, 0, 0.3)),
        lambda: fs.Typical(_row_param(rng, B, 0.3, 1.05)),
        lambda: fs.TopNSigma(_row_param(rng, B, 0.5, 3)),
        lambda: fs.XTC(_row_param(rng, B, 0, 1), _row_param(rng, B, 0.05, 0.4)),
        lambda: fs.Epsilon(_row_param(rng, B, 0, 0.05)),
        lambda: fs.Eta(_row_param(rng, B, 0, 0.05)),
        lambda: fs.TopA(_row_param(rng, B, 0, 0.5)),
        lambda: fs.PLess(),
        lambda: fs.TailFree(_row_param(rng, B, 0.5, 1.05)),
        lambda: fs.Temperature(_row_param(rng, B, -0.2, 2)),
        lambda: fs.DynamicTemperature(_row_param(rng, B, 0.5, 1.5), _row_param(rng, B, 0, 0.5)),
        lambda: fs.Smoothing(_row_param(rng, B, 0, 0.5), _row_param(rng, B, 0.5, 3)),
    ]
    kinds = rng.choice(len(pool), int(rng.integers(0, 5)), replace=True)
    stages = [pool[k]() for k in kinds]
    if rng.random() < 0.4:   # fs.sample's chain after edits: the fused / candidates plans
        stages += [fs.TopK(_row_param(rng, B, 0, 10, True)), fs.TopP(0.9), fs.MinP(0.05),
                   fs.Temperature(_row_param(rng, B, 0.5, 1.2))]
    stages.append(fs.Greedy() if rng.random() < 0.2 else fs.Dist())
    return stages


def _fresh(stages):
    """Equal stages for a second chain (stages hold no state; the chain does)."""
    return list(stages)


CHAIN_SEEDS = range(40)


@pytest.mark.parametrize("case", CHAIN_SEEDS)
def test_chain_exact_is_sample_and_accept(case, backend):
    """chain.verify(method="exact") = chain.sample on each step with the drafts accepted
    before it, scanned; verify changes no state."""
    rng = np.random.default_rng(case)
    B, K = int(rng.integers(1, 4)), int(rng.integers(0, 4))
    V = int(rng.choice([8, 40, 300]))
    mod = registry.load(backend)
    # stages still without a kernel on this backend (being written) are left out
    stages = [s for s in _random_chain(rng, B, V)
              if all(getattr(mod, op, None) is not None for op in s.required_ops() if op)]
    seeds = rng.integers(0, 2**40, B)
    prompt = rng.integers(0, V, (B, int(rng.integers(0, 6))))
    x = _logits((B, K + 1, V), case)
    d = rng.integers(0, V, (B, K))
    n = rng.integers(0, K + 1, B)

    def loaded():
        chain = fs.SamplerChain(_fresh(stages), seed=seeds, backend=backend, on_invalid="flag")
        for i in range(prompt.shape[1]):
            chain.accept(prompt[:, i])
        return chain

    oracle = loaded()
    plain = []
    for j in range(K + 1):
        plain.append(oracle.sample(x[:, j]))
        if j < K:
            oracle.accept(d[:, j])
    plain = np.stack(plain, axis=1)
    d = np.where((rng.random((B, K)) < 0.7) & (plain[:, :K] >= 0), plain[:, :K], d)
    plain2 = []
    oracle = loaded()
    for j in range(K + 1):
        plain2.append(oracle.sample(x[:, j]))
        if j < K:
            oracle.accept(d[:, j])
    plain2 = np.stack(plain2, axis=1)
    tokens, acc = _scan(plain2, d, n)
    # a request whose used rows the chain empties is flagged (on_invalid="flag")
    flagged = ((plain2 < 0) & (np.arange(K + 1) <= n[:, None])).any(axis=1)
    tokens[flagged], acc[flagged] = -1, 0
    chain = loaded()
    before = chain.state_of() if chain._B is not None else None
    got = chain.verify(x, d, num_draft=n, method="exact")
    assert np.array_equal(got.tokens, tokens), (stages, got.tokens, tokens)
    assert np.array_equal(got.num_accepted, acc)
    assert np.array_equal(got.num_emitted, np.where(flagged, 0, acc + 1))
    if before is None:
        assert chain._B is None
    else:
        for a, b in zip(before, chain.state_of()):
            assert a["position"] == b["position"]
            assert np.array_equal(a["history"], b["history"])
    # rejection: every backend gives the numpy chain's result
    q = _probs((B, K, V), case)
    want = loaded_numpy(stages, seeds, prompt).verify(x, d, q, num_draft=n)
    _same(chain.verify(x, d, q, num_draft=n), want)


def loaded_numpy(stages, seeds, prompt):
    chain = fs.SamplerChain(_fresh(stages), seed=seeds, backend="numpy", on_invalid="flag")
    for i in range(prompt.shape[1]):
        chain.accept(prompt[:, i])
    return chain


def test_chain_history_argument_and_position():
    """history= / position= stand for the chain's own; the drafts extend the history."""
    V, B, K = 12, 2, 3
    stages = [fs.Penalties(repeat=3.0, last_n=-1), fs.NoRepeatNGram(2)]
    x = np.zeros((B, K + 1, V), np.float32)
    x[:, :, 5] = 0.5
    hist = [np.array([1, 2, 3]), np.array([4])]
    d = np.array([[5, 5, 5], [6, 7, 8]])
    chain = fs.SamplerChain(stages, seed=3)
    got = chain.verify(x, d, method="exact", history=hist, position=[10, 20])
    for b in range(B):
        oracle = fs.SamplerChain(stages, seed=3)
        h = list(hist[b])
        plain = []
        for j in range(K + 1):
            plain.append(oracle.sample(x[b:b + 1, j], history=[np.array(h)],
                                       position=[[10, 20][b] + j])[0])
            if j < K:
                h.append(int(d[b, j]))
        tokens, acc = _scan(np.array([plain]), d[b:b + 1], np.array([K]))
        assert got.tokens[b].tolist() == tokens[0].tolist()
        assert got.num_accepted[b] == acc[0]
    assert chain._B is None   # verify made no state


@pytest.mark.parametrize("terminal", [fs.Mirostat(), fs.MirostatV2(), fs.AdaptiveP(0.3)])
def test_stateful_terminals_are_refused(terminal):
    chain = fs.SamplerChain([fs.TopK(5), terminal])
    with pytest.raises(ValueError, match=terminal.name):
        chain.verify(np.zeros((1, 2, 8), np.float32), np.zeros((1, 1), np.int64))


# ---------------------------------------------------------------- bad input


def test_bad_input(backend):
    B, K, V = 2, 3, 8
    x = _logits((B, K + 1, V), 1)
    d = np.zeros((B, K), np.int64)
    q = _probs((B, K, V), 1)
    call = lambda **kw: fs.verify(**{"target_logits": x, "draft_tokens": d,
                                     "backend": backend, **kw})
    with pytest.raises(ValueError, match="outside"):
        call(draft_tokens=np.array([[0, 8, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="outside"):
        call(draft_tokens=np.array([[0, 0, 0], [-1, 0, 0]]))
    with pytest.raises(ValueError, match="num_draft"):
        call(num_draft=[4, 0])
    with pytest.raises(ValueError, match="num_draft"):
        call(num_draft=[-1, 0])
    with pytest.raises(ValueError, match="draft_tokens has shape"):
        call(draft_tokens=np.zeros((B, K + 1), np.int64))
    with pytest.raises(TypeError, match="integer"):
        call(draft_tokens=np.zeros((B, K)))
    with pytest.raises(ValueError, match="draft_probs has shape"):
        call(draft_probs=q[:, :, :-1])
    with pytest.raises(ValueError, match="3-D"):
        call(target_logits=x[0])
    with pytest.raises(ValueError, match="method"):
        call(method="typical")
    for bad in (np.nan, -0.1):
        qq = q.copy()
        qq[1, 0, :] = bad
        with pytest.raises(ValueError, match="request 1 at step 0"):
            call(draft_probs=qq)
    # a draft token past num_draft is not checked (engines pad with -1)
    got = call(draft_tokens=np.array([[0, -1, -1], [9, 9, 9]]), num_draft=[1, 0])
    assert (got.num_emitted >= 1).all()


@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_invalid_rows(method, backend):
    B, K, V = 3, 2, 8
    x = _logits((B, K + 1, V), 2)
    x[0, 1, 3] = np.nan            # request 0, step 1: used
    x[1, 2, :] = -np.inf           # request 1, step 2: unused (num_draft 1)
    d = np.zeros((B, K), np.int64)
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        fs.verify(x, d, num_draft=[2, 1, 2], method=method, backend=backend)
    got = fs.verify(x, d, num_draft=[2, 1, 2], method=method, on_invalid="flag",
                    backend=backend)
    assert got.tokens[0].tolist() == [-1, -1, -1]
    assert got.num_emitted[0] == 0 and got.num_accepted[0] == 0
    assert (got.num_emitted[1:] >= 1).all()


def test_empty_batch(backend):
    got = fs.verify(np.zeros((0, 3, 5), np.float32), np.zeros((0, 2), np.int64),
                    backend=backend)
    assert got.tokens.shape == (0, 3) and got.num_emitted.shape == (0,)


# ---------------------------------------------------------------- W13


def test_w13_cases_and_torch_peer(fast_backend):
    """W13's cases (at V = 512) give the reference's result; the torch peer (vLLM's
    algorithm) gives well-formed output for the rejection cases."""
    from fastsample import workloads
    from fastsample.cli import peers

    for case in workloads.get("W13").cases:
        prep = case.prepare(vocab=512)
        _same(prep.call(fast_backend)(), prep.call("numpy")())
        if case.params["method"] != "rejection" or not peers.get("torch").status()[0]:
            continue
        out, n_acc = peers.get("torch").call(case, prep)()
        out, n_acc = out.numpy(), n_acc.numpy()
        K = case.params["K"]
        assert out.shape == (case.B, K + 1) and ((n_acc >= 0) & (n_acc <= K)).all()
        assert ((out >= -1) & (out < 512)).all()
        assert ((out >= 0).sum(axis=1) == n_acc + 1).all()
