"""Log-probabilities (docs/spec.md §9): ``fs.sample`` / ``SamplerChain.sample`` with ``logprobs=N``.

- ``reference.logprobs`` against the loop oracle ``naive.logprobs``;
- the numba and C kernels against the reference: ranks, ids and the -1 / ``-inf`` /
  NaN pattern identical, log-probabilities within ``max(1 float32 ulp, 1e-9)``
  (their exps are float64 polynomials, relative error < 3e-10, where the reference
  calls ``np.exp``);
- the API: tokens identical to the call without ``logprobs`` on every backend, in
  both modes; processed = the log-softmax of the logits the draw used (greedy rows 0,
  Mirostat what its draw used); every backend equal to the numpy reference's result;
- edge cases (N = 0, N past the finite tokens, all but one masked, V = 1, B = 0,
  flagged rows, 1-D input) and bad arguments.

Deterministic: seeded generators, hypothesis with derandomize.
"""

import importlib
import math

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import reference as ref
from fastsample.workloads import flat, llm_like

HYP = settings(max_examples=120, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
BACKENDS = ["numpy", "numba", "c"]


def _ops(name):
    from fastsample import registry

    return registry.load(name)


def _assert_lp_close(got, want):
    """Identical NaN / -inf pattern; finite values within max(1 float32 ulp, 1e-9)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    tol = np.maximum(np.spacing(np.abs(want[fin]).astype(np.float32)).astype(np.float64), 1e-9)
    assert np.all(np.abs(got[fin] - want[fin]) <= tol), np.max(np.abs(got[fin] - want[fin]))


def _assert_same(got, want):
    lp, rank, ids, top = got
    wlp, wrank, wids, wtop = want
    assert lp.dtype == np.float32 and top.dtype == np.float32
    assert rank.dtype == np.int32 and ids.dtype == np.int32
    np.testing.assert_array_equal(rank, wrank)
    np.testing.assert_array_equal(ids, wids)
    _assert_lp_close(lp, wlp)
    _assert_lp_close(top, wtop)


@st.composite
def _case(draw, max_v=40, B=None, V=None):
    """Rows with ties, masks (some all but one masked) and a token per row: a finite
    entry, or -1 (flagged). ``B`` / ``V`` fix the shape."""
    B = draw(st.integers(1, 4)) if B is None else B
    V = draw(st.integers(1, max_v)) if V is None else V
    levels = draw(st.lists(st.sampled_from([-np.inf, -3.0, -1.0, 0.0, 0.5, 2.0, 7.25]),
                           min_size=B * V, max_size=B * V))
    x = np.array(levels, np.float32).reshape(B, V)
    noise = draw(st.integers(0, 2**31 - 1))
    jitter = np.random.default_rng(noise).standard_normal((B, V)).astype(np.float32)
    if draw(st.booleans()):
        x = np.where(np.isfinite(x), x + jitter, x).astype(np.float32)
    tokens = np.full(B, -1, np.int64)
    for b in range(B):
        if not np.isfinite(x[b]).any():
            x[b, draw(st.integers(0, V - 1))] = 1.0
        finite = np.flatnonzero(np.isfinite(x[b]))
        if draw(st.integers(0, 5)):
            tokens[b] = finite[draw(st.integers(0, finite.size - 1))]
    n = draw(st.integers(0, V + 3))
    return x, tokens, n


# ------------------------------------------------------------------ reference vs oracle


@HYP
@given(_case(max_v=24))
def test_reference_matches_naive(case):
    x, tokens, n = case
    lp, rank, ids, top = ref.logprobs(x, tokens, n)
    for b in range(x.shape[0]):
        wlp, wrank, wids, wtop = naive.logprobs(x[b], int(tokens[b]), n)
        assert rank[b] == wrank
        assert ids[b].tolist() == wids
        _assert_lp_close(lp[b:b + 1], np.float32([wlp]))
        _assert_lp_close(top[b], np.array(wtop, np.float64).astype(np.float32))


def test_reference_shapes_and_edges():
    x = np.array([[0.0, 1.0, 1.0, -np.inf], [-np.inf, -np.inf, 2.0, -np.inf]], np.float32)
    lp, rank, ids, top = ref.logprobs(x, np.array([2, 2]), 5)
    assert rank.tolist() == [1, 1]  # a tie at the top: nothing strictly greater
    assert ids.tolist() == [[1, 2, 0, -1, -1], [2, -1, -1, -1, -1]]  # ties to the lower id
    assert lp[1] == 0.0 and top[1, 0] == 0.0 and np.isneginf(top[1, 1:]).all()
    lp, rank, ids, top = ref.logprobs(x, np.array([0, -1]), 0)
    assert ids.shape == (2, 0) and top.shape == (2, 0)
    assert rank.tolist() == [3, -1] and np.isnan(lp[1])
    out = ref.logprobs(np.zeros((0, 7), np.float32), np.zeros(0, np.int64), 3)
    assert [a.shape for a in out] == [(0,), (0,), (0, 3), (0, 3)]


# ------------------------------------------------------------------ kernels vs reference


@pytest.mark.parametrize("backend", ["numba", "c"])
@HYP
@given(case=_case())
def test_kernel_matches_reference(backend, case):
    x, tokens, n = case
    _assert_same(_ops(backend).logprobs(x, tokens, n), ref.logprobs(x, tokens, n))


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("B,V,n", [(1, 128256, 20), (3, 70000, 0), (2, 5000, 5000), (5, 1, 2),
                                   (0, 9, 4), (64, 3000, 20)])
def test_kernel_large_rows(backend, B, V, n):
    x = llm_like(B, V, seed=V + n) if B % 2 else flat(B, V, seed=V)
    if B > 1:
        x[1, max(V // 3, 1):] = -np.inf  # fewer finite tokens than n
    rng = np.random.default_rng(V)
    tokens = np.array([rng.choice(np.flatnonzero(np.isfinite(r))) for r in x], np.int64)
    if B > 2:
        tokens[2] = -1
    before = x.copy()
    _assert_same(_ops(backend).logprobs(x, tokens, n), ref.logprobs(x, tokens, n))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("backend", ["numba", "c"])
def test_kernel_all_but_one_masked(backend):
    x = np.full((2, 300), -np.inf, np.float32)
    x[0, 17] = -5.0
    x[1, 299] = 3e38
    got = _ops(backend).logprobs(x, np.array([17, 299]), 3)
    _assert_same(got, ref.logprobs(x, np.array([17, 299]), 3))
    assert got[0].tolist() == [0.0, 0.0] and got[1].tolist() == [1, 1]


def test_c_levels_agree():
    core = pytest.importorskip("fastsample.c_backend.core")
    clp = importlib.import_module("fastsample.c_backend.logprobs")

    x = llm_like(3, 20000, 5)
    t = np.array([3, 10, -1])
    want = ref.logprobs(x, t, 7)
    for isa in core.ISAS:
        _assert_same(clp.logprobs(x, t, 7, isa=isa), want)


# ------------------------------------------------------------------ the API


W1 = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8}
PARAMS = [W1, {"temperature": 0.8}, {"top_p": 0.9}, {"min_p": 0.1, "temperature": 1.3},
          {"top_k": 5, "temperature": 0.0}, {"top_p": 0.9, "temperature": 0.7, "temperature_last": False},
          {"top_k": 3, "temperature": 0.0, "temperature_last": False},
          {"top_k": np.array([0, 40, 1, 7]), "temperature": np.array([0.8, 0.0, 1.0, 1.5])}]


def _processed_logits(x, p):
    """The canonical chain's processed rows by the reference stages."""
    B = x.shape[0]
    row = lambda v, d=np.float64: np.broadcast_to(np.asarray(v, d), (B,))
    t, k = row(p.get("temperature", 1.0)), row(p.get("top_k", 0), np.int64)
    tp, mp, mk = row(p.get("top_p", 1.0)), row(p.get("min_p", 0.0)), row(1, np.int64)
    if not p.get("temperature_last", True):
        x = ref.temperature(x, t)
    x = ref.min_p(ref.top_p(ref.top_k(x, k, mk), tp, mk), mp, mk)
    return ref.temperature(x, t) if p.get("temperature_last", True) else x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("p", PARAMS, ids=str)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_tokens_and_values(backend, p, mode):
    x = llm_like(4, 3000, seed=11)
    seeds = np.array([1, 2, 3, 4])
    want_tokens = fs.sample(x, seed=seeds, backend=backend, **p)
    got = fs.sample(x, seed=seeds, backend=backend, logprobs=6, logprobs_mode=mode, **p)
    assert isinstance(got, fs.Sampled)
    np.testing.assert_array_equal(got.tokens, want_tokens)
    np.testing.assert_array_equal(got.tokens, fs.sample(x, seed=seeds, backend="numpy", **p))
    rows = x if mode == "raw" else _processed_logits(x, p)
    _assert_same(got[1:], ref.logprobs(rows, want_tokens, 6))
    greedy = np.broadcast_to(np.asarray(p.get("temperature", 1.0)), (4,)) <= 0
    if mode == "processed" and greedy.any():
        assert (got.logprob[greedy] == 0).all() and (got.rank[greedy] == 1).all()
        assert (got.top_ids[greedy, 0] == got.tokens[greedy]).all()
        assert (got.top_ids[greedy, 1:] == -1).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_one_row_scalars(backend, mode):
    x = llm_like(1, 128256, seed=3)[0]
    got = fs.sample(x, seed=9, backend=backend, logprobs=20, logprobs_mode=mode, **W1)
    assert got.tokens == fs.sample(x, seed=9, backend=backend, **W1)
    assert isinstance(got.tokens, int) and isinstance(got.rank, int)
    assert np.ndim(got.logprob) == 0 and got.top_ids.shape == (20,)
    if mode == "processed":  # top-k 40 then top-p / min-p: fewer than 20 survivors
        assert got.top_ids[-1] == -1 and np.isneginf(got.top_logprobs[-1])
        assert math.isclose(float(np.exp(np.float64(got.top_logprobs[got.top_ids >= 0])).sum()),
                            1.0, rel_tol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_flagged_rows(backend, mode):
    x = llm_like(3, 500, seed=1)
    x[1] = -np.inf
    x[2, 7] = np.nan
    got = fs.sample(x, backend=backend, logprobs=4, logprobs_mode=mode, on_invalid="flag", **W1)
    assert got.tokens.tolist()[1:] == [-1, -1]
    assert np.isnan(got.logprob[1:]).all() and (got.rank[1:] == -1).all()
    assert (got.top_ids[1:] == -1).all() and np.isnan(got.top_logprobs[1:]).all()
    assert got.tokens[0] >= 0 and np.isfinite(got.logprob[0])
    with pytest.raises(ValueError, match="rows"):
        fs.sample(x, backend=backend, logprobs=4, logprobs_mode=mode, **W1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_edges(backend, mode):
    empty = fs.sample(np.zeros((0, 9), np.float32), backend=backend, logprobs=2,
                      logprobs_mode=mode)
    assert [np.shape(a) for a in empty] == [(0,), (0,), (0,), (0, 2), (0, 2)]
    one = fs.sample(np.array([[1.5]], np.float32), backend=backend, logprobs=3,
                    logprobs_mode=mode, **W1)
    assert one.tokens.tolist() == [0] and one.logprob.tolist() == [0.0]
    assert one.top_ids.tolist() == [[0, -1, -1]] and one.rank.tolist() == [1]
    none = fs.sample(llm_like(2, 50, 0), backend=backend, logprobs=0, logprobs_mode=mode)
    assert none.top_ids.shape == (2, 0)


@pytest.mark.parametrize("bad,err", [(-1, ">= 0"), (1.5, "integer"), (True, "integer"),
                                     ("3", "integer")])
def test_bad_logprobs(bad, err):
    with pytest.raises(ValueError, match=err):
        fs.sample(llm_like(1, 10, 0), logprobs=bad)
    with pytest.raises(ValueError, match=err):
        fs.SamplerChain([fs.TopK(3)]).sample(llm_like(1, 10, 0), logprobs=bad)


def test_bad_mode():
    with pytest.raises(ValueError, match="logprobs_mode"):
        fs.sample(llm_like(1, 10, 0), logprobs=2, logprobs_mode="final")
    with pytest.raises(ValueError, match="logprobs_mode"):
        fs.SamplerChain([fs.TopK(3)]).sample(llm_like(1, 10, 0), logprobs=2, logprobs_mode=None)


# ------------------------------------------------------------------ chains


CHAINS = {
    "fused": lambda: [fs.TopK(40), fs.TopP(0.9), fs.MinP(0.05), fs.Temperature(0.7)],
    "edits+fused": lambda: [fs.Penalties(1.1, 0.1, 0.1, 64), fs.TopK(40), fs.Temperature(0.8)],
    "candidates-v2": lambda: [fs.TopK(40), fs.TopP(0.95), fs.MirostatV2(4.0)],
    "candidates-greedy": lambda: [fs.MinP(0.05), fs.Greedy()],
    "candidates-adaptive": lambda: [fs.TopK(50), fs.Temperature(0.9), fs.AdaptiveP(0.4)],
    "stages-xtc": lambda: [fs.XTC(1.0, 0.05), fs.TopP(0.9), fs.Temperature(0.8)],
    "stages-mirostat": lambda: [fs.Penalties(1.2, 0.0, 0.0, 32), fs.Mirostat(5.0)],
    "stages-typical": lambda: [fs.Typical(0.9), fs.TopNSigma(2.0), fs.Dist()],
    "dry+temp": lambda: [fs.DRY(0.8, 1.75, 2, 64), fs.Temperature(1.2)],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CHAINS))
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_chain(backend, name, mode):
    """Three steps of an engine loop: tokens equal a twin chain's without logprobs;
    processed = the log-softmax of what a third twin's process gave just before its
    sample (the state the draw saw); every backend equal to numpy's."""
    B, V = 3, 2000
    chains = [fs.SamplerChain(CHAINS[name](), seed=[5, 6, 7], backend=b)
              for b in (backend, backend, backend, "numpy")]
    for step in range(3):
        x = llm_like(B, V, seed=step)
        x[0, :5] = x[0, 5]  # ties
        expect = chains[2].process(x)
        got = chains[0].sample(x, logprobs=5, logprobs_mode=mode)
        tokens = chains[1].sample(x)
        chains[2].sample(x)
        want = chains[3].sample(x, logprobs=5, logprobs_mode=mode)
        np.testing.assert_array_equal(got.tokens, tokens)
        np.testing.assert_array_equal(got.tokens, want.tokens)
        _assert_same(got[1:], ref.logprobs(x if mode == "raw" else expect, tokens, 5))
        _assert_same(got[1:], want[1:])
        for c in chains:
            c.accept(tokens)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_flagged_and_one_d(backend):
    chain = fs.SamplerChain([fs.TopK(10), fs.MirostatV2(5.0)], backend=backend,
                            on_invalid="flag")
    x = llm_like(2, 300, seed=2)
    x[1] = -np.inf
    got = chain.sample(x, logprobs=3, logprobs_mode="processed")
    assert got.tokens[1] == -1 and np.isnan(got.logprob[1]) and got.rank[1] == -1
    single = fs.SamplerChain([fs.TopK(10)], backend=backend)
    got = single.sample(x[0], logprobs=3)
    assert isinstance(got.tokens, int) and got.top_ids.shape == (3,)


# ------------------------------------------------------------------ with a bitmask


def _bitmask(B, V, seed):
    """A packed int32 bitmask allowing about a tenth of the tokens of each row."""
    allowed = np.random.default_rng(seed).random((B, V)) < 0.1
    allowed[:, 0] = True
    words = np.zeros((B, (V + 31) // 32), np.uint32)
    for v in np.flatnonzero(allowed.any(axis=0)):
        words[allowed[:, v], v // 32] |= np.uint32(1) << np.uint32(v % 32)
    return words.view(np.int32), allowed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_sample_with_bitmask(backend, mode):
    """Raw ignores the bitmask (the input row, as vLLM's raw logprobs); processed sees
    it (the draw's logits: masked, then the chain). Row 2 is unconstrained (-1)."""
    B, V = 3, 2000
    x = llm_like(B, V, seed=4)
    words, allowed = _bitmask(B, V, 5)
    rows = np.array([1, 0, -1])
    kw = dict(W1, seed=[3, 4, 5], bitmask=words, bitmask_rows=rows, backend=backend)
    got = fs.sample(x, logprobs=4, logprobs_mode=mode, **kw)
    tokens = fs.sample(x, **kw)
    np.testing.assert_array_equal(got.tokens, tokens)
    if mode == "raw":
        want = ref.logprobs(x, tokens, 4)
    else:
        masked = x.copy()
        for b, r in enumerate(rows):
            if r >= 0:
                masked[b, ~allowed[r]] = -np.inf
        want = ref.logprobs(_processed_logits(masked, W1), tokens, 4)
        assert np.isin(got.top_ids[:2][got.top_ids[:2] >= 0],
                       np.flatnonzero(allowed[0] | allowed[1])).all()
    _assert_same(got[1:], want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["raw", "processed"])
def test_chain_with_bitmask(backend, mode):
    B, V = 2, 1500
    x = llm_like(B, V, seed=6)
    words, allowed = _bitmask(B, V, 7)
    stages = [fs.TopK(30), fs.TopP(0.9), fs.Temperature(0.9)]
    a = fs.SamplerChain(stages, seed=[1, 2], backend=backend)
    b = fs.SamplerChain(stages, seed=[1, 2], backend=backend)
    got = a.sample(x, bitmask=words, logprobs=3, logprobs_mode=mode)
    tokens = b.sample(x, bitmask=words)
    np.testing.assert_array_equal(got.tokens, tokens)
    rows = x if mode == "raw" else b.process(x, bitmask=words)
    _assert_same(got[1:], ref.logprobs(np.ascontiguousarray(rows), tokens, 3))
    assert all(allowed[r, t] for r, t in enumerate(tokens))


@st.composite
def _sample_case(draw):
    """Rows with ties and masks, per-row parameters (some rows greedy, some with no
    truncation), either order, min_keep, a flagged row sometimes."""
    B = draw(st.integers(1, 4))
    V = draw(st.integers(1, 60))
    x, _, _ = draw(_case(B=B, V=V))
    p = {
        "top_k": np.array(draw(st.lists(st.integers(0, V + 2), min_size=B, max_size=B))),
        "top_p": np.array(draw(st.lists(st.sampled_from([0.0, 0.3, 0.9, 1.0]), min_size=B, max_size=B))),
        "min_p": np.array(draw(st.lists(st.sampled_from([0.0, 0.05, 0.5]), min_size=B, max_size=B))),
        "temperature": np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.7]), min_size=B, max_size=B))),
        "min_keep": draw(st.integers(1, 3)),
        "temperature_last": draw(st.booleans()),
        "seed": np.arange(B) + draw(st.integers(0, 1000)),
    }
    flag = draw(st.booleans())
    if flag:
        x = x.copy()
        x[draw(st.integers(0, B - 1))] = -np.inf
    return x, p, flag, draw(st.integers(0, V + 2)), draw(st.sampled_from(["raw", "processed"]))


@pytest.mark.parametrize("backend", ["numba", "c"])
@HYP
@given(case=_sample_case())
def test_sample_hypothesis(backend, case):
    """Every fast backend equals the numpy reference's fs.sample(logprobs=...), and its
    tokens equal its own call without logprobs."""
    x, p, flag, n, mode = case
    kw = dict(p, on_invalid="flag" if flag else "raise")
    got = fs.sample(x, backend=backend, logprobs=n, logprobs_mode=mode, **kw)
    want = fs.sample(x, backend="numpy", logprobs=n, logprobs_mode=mode, **kw)
    np.testing.assert_array_equal(got.tokens, fs.sample(x, backend=backend, **kw))
    np.testing.assert_array_equal(got.tokens, want.tokens)
    _assert_same(got[1:], want[1:])


def test_torch_input_gives_sampled_of_tensors():
    torch = pytest.importorskip("torch")
    x = llm_like(2, 500, seed=0)
    got = fs.sample(torch.from_numpy(x), logprobs=3, top_k=10, seed=1)
    want = fs.sample(x, logprobs=3, top_k=10, seed=1)
    assert isinstance(got, fs.Sampled)
    assert all(isinstance(a, torch.Tensor) for a in got)
    assert got.tokens.dtype == torch.int64 and got.top_logprobs.dtype == torch.float32
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("p", [
    {"top_k": 40, "top_p": 0.9, "min_p": 0.02, "temperature": 0.8, "min_keep": 2},
    {"top_k": 3, "temperature": 0.0},
    {"top_p": 0.5, "temperature": 1.0, "temperature_last": False},
    {"top_k": np.array([4000]), "min_p": np.array([0.3]), "temperature": np.array([1.3])},
], ids=["plain", "greedy", "hf-order-t1", "arrays"])
@pytest.mark.parametrize("one_d", [True, False])
def test_processed_one_row_runs_in_one_call(backend, p, one_d, monkeypatch):
    """One valid row with temperature last takes the backend's chain_row_logprobs (the
    stage-by-stage candidates route is never reached) and equals the reference."""
    from fastsample import plan

    x = llm_like(1, 4000, seed=3)
    x = x[0] if one_d else x
    want = fs.sample(x, backend="numpy", seed=4, position=2, logprobs=7,
                     logprobs_mode="processed", **p)

    def general_route(*args, **kwargs):
        raise AssertionError("the stage-by-stage route ran")

    monkeypatch.setattr(plan, "truncate", general_route)
    got = fs.sample(x, backend=backend, seed=4, position=2, logprobs=7,
                    logprobs_mode="processed", **p)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    assert type(got.tokens) is type(want.tokens) and type(got.rank) is type(want.rank)
    rows = lambda r: (np.atleast_1d(r.logprob), np.atleast_1d(np.asarray(r.rank, np.int32)),
                      np.atleast_2d(r.top_ids), np.atleast_2d(r.top_logprobs))
    _assert_same(rows(got), rows(want))
