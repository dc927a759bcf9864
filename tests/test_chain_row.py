"""The one-call step of a common chain on one row (``plan.row_program``; ``chain_row``
of C, ``csrc/fs_chain.c``, and of numba, ``kernels/cpu/chain_row.py``).

A chain ``[LogitBias] [Penalties] [DRY] -> truncations -> [stages on the survivors] -> Dist``
(a NoRepeatNGram, BadWords and MinTokens anywhere among the edits) at
B = 1 runs its whole per-token step in one compiled call. Its tokens must be the numpy
reference chain's, step after step with ``accept`` (each test checks the one-call path
was taken), and every case it hands back (an invalid row, a NaN or +inf where an edit
writes) must end as the general route ends it.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import plan as fsplan
from fastsample import workloads


@pytest.fixture
def backend(fast_backend):
    """The compiled CPU backends only (conftest's fast_backend)."""
    return fast_backend


V = 3000


def _rows(seed, n, flat=False):
    gen = workloads.flat if flat else workloads.llm_like
    x = gen(n, V, seed)
    if not flat:
        x[1::3] = np.round(x[1::3] * 2) / 2   # ties at the cuts
    return x


def _random_bias(rng):
    """A LogitBias over a few ids (repeats add up), now and then a ban (-inf) and a
    bias large enough to put a token on top."""
    n = int(rng.integers(1, 12))
    ids = rng.integers(0, V, n)
    ids[rng.random(n) < 0.3] = ids[0]
    values = rng.uniform(-5.0, 5.0, n)
    values[rng.random(n) < 0.15] = -np.inf
    values[rng.random(n) < 0.1] = 30.0
    return fs.LogitBias((ids, values))


def _random_bans(rng):
    """A BadWords over a few sequences of the rows' leading ids (one-token ones banned
    always, longer ones after their prefix), or a MinTokens of the leading ids."""
    lead = int(np.argmax(_rows(0, 1)[0]))   # some of the ids that are drawn
    pool = np.array([lead, 1, 2, 3, 4, 5])
    if rng.random() < 0.5:
        return fs.MinTokens(int(rng.integers(0, 12)), rng.choice(pool, 2))
    return fs.BadWords([rng.choice(pool, int(rng.integers(1, 4))).tolist()
                        for _ in range(int(rng.integers(1, 5)))])


def _random_chain(rng):
    stages = []
    if rng.random() < 0.35:
        stages.append(_random_bias(rng))
    if rng.random() < 0.7:
        stages.append(fs.Penalties(float(rng.uniform(1.0, 1.5)), float(rng.uniform(0, 0.3)),
                                   float(rng.uniform(0, 0.3)), int(rng.choice([-1, 8, 64]))))
    if rng.random() < 0.7:
        stages.append(fs.DRY(float(rng.uniform(0.2, 1.5)), 1.75, int(rng.integers(1, 4)),
                             int(rng.choice([-1, 32, 512])),
                             breakers=rng.integers(0, V, 3) if rng.random() < 0.5 else ()))
    if rng.random() < 0.25:   # anywhere among the edits: its bans commute with them
        stages.insert(int(rng.integers(0, len(stages) + 1)),
                      fs.NoRepeatNGram(int(rng.integers(1, 5))))
    if rng.random() < 0.25:   # so do BadWords' and MinTokens'
        stages.insert(int(rng.integers(0, len(stages) + 1)), _random_bans(rng))
    mk = int(rng.integers(1, 4))
    truncs = [fs.TopK(int(rng.integers(1, 60)), min_keep=mk), fs.TopP(float(rng.uniform(0.5, 1.0)), min_keep=mk),
              fs.MinP(float(rng.uniform(0.0, 0.2)), min_keep=mk)]
    keep = [s for s in truncs if rng.random() < 0.6] or [truncs[2]]
    t = float(rng.choice([0.0, 0.7, 1.0, 1.3]))
    if rng.random() < 0.5:   # the fused tail: temperature first or last
        tail = keep + [fs.Temperature(t)] if rng.random() < 0.7 else [fs.Temperature(t)] + keep
    else:                    # the candidates route: stages on the survivors
        after = _after_stages(rng, t)
        rng.shuffle(after)
        tail = keep + after[:int(rng.integers(1, 5))]
    if rng.random() < 0.15:
        tail.append(fs.Greedy())
    return stages + tail


def _after_stages(rng, t):
    """One of every stage a row program runs on the survivors (plan.AFTER_OPS)."""
    mk = int(rng.integers(1, 3))
    return [fs.XTC(float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.02, 0.3)), min_keep=mk),
            fs.Temperature(t), fs.TopK(int(rng.integers(1, 20)), min_keep=mk),
            fs.TopP(float(rng.uniform(0.3, 1.0)), min_keep=mk),
            fs.MinP(float(rng.uniform(0.0, 0.3)), min_keep=mk),
            fs.Typical(float(rng.uniform(0.3, 1.0)), min_keep=mk),
            fs.TopNSigma(float(rng.uniform(0.0, 2.0)), min_keep=mk),
            fs.Epsilon(float(rng.uniform(0.0, 0.05)), min_keep=mk),
            fs.Eta(float(rng.uniform(0.0, 0.05)), min_keep=mk),
            fs.TopA(float(rng.uniform(0.0, 0.5)), min_keep=mk), fs.PLess(min_keep=mk),
            fs.TailFree(float(rng.uniform(0.5, 1.0)), min_keep=mk),
            fs.DynamicTemperature(float(rng.uniform(0.5, 1.5)), float(rng.uniform(0.0, 0.5)),
                                  float(rng.uniform(0.5, 2.0))),
            fs.Smoothing(float(rng.uniform(0.0, 0.5)), float(rng.uniform(1.0, 2.0)))]


def _loop(stages, steps, rows, prompt, seed, backend):
    got, want = (fs.SamplerChain(stages, seed=seed, backend=b) for b in (backend, "numpy"))
    for chain in (got, want):
        chain.load_states([{"history": prompt}])
    out = []
    for i in range(steps):
        row = rows[i % len(rows)]
        a, b = got.sample(row), want.sample(row)
        assert a == b, (i, stages)
        got.accept(np.array([a]))
        want.accept(np.array([b]))
        out.append(a)
    return got, out


@pytest.mark.parametrize("case", range(40))
def test_random_chains_match_the_reference(case, backend):
    rng = np.random.default_rng(case)
    stages = _random_chain(rng)
    chain, _ = _loop(stages, 8, _rows(case, 4, flat=case % 5 == 0),
                     workloads.natural_history(300, V, case), seed=case + 1, backend=backend)
    # fs.sample's fused chain without edits keeps its own one-call kernel (sample_row);
    # a Greedy terminal takes a row program whatever the stages before it
    taken = (bool(chain._plan.edits) or chain._plan.mode == "candidates"
             or isinstance(stages[-1], fs.Greedy))
    assert bool(chain._row_prog) == taken, f"the one-call path: {stages}"


@pytest.mark.parametrize("case", range(14))
def test_every_stage_on_the_survivors_matches_the_reference(case, backend):
    """Each stage of plan.AFTER_OPS, alone and with two others, after a first cut,
    step by step against the numpy chain (per-row parameters in a batch of 3 too)."""
    rng = np.random.default_rng(100 + case)
    pool = _after_stages(rng, float(rng.choice([0.0, 0.7, 1.3])))
    first = [fs.TopK(int(rng.integers(20, 200))), fs.MinP(0.02), fs.TopP(0.98)][case % 3]
    for tail in ([pool[case]], [pool[case], *rng.permutation(pool)[:2].tolist()]):
        stages = [fs.Penalties(1.2, last_n=16), first, *tail]
        chain, _ = _loop(stages, 6, _rows(case, 4, flat=case % 4 == 0),
                         workloads.natural_history(100, V, case), seed=case, backend=backend)
        assert chain._row_prog, f"the one-call path: {stages}"
    x = _rows(case + 50, 3)
    stages = [fs.Penalties(1.2, last_n=16), first, pool[case]]
    got = fs.SamplerChain(stages, seed=3, backend=backend)
    want = fs.SamplerChain(stages, seed=3, backend="numpy")
    np.testing.assert_array_equal(got.sample(x, history=x[:, :5].astype(np.int64) % V),
                                  want.sample(x, history=x[:, :5].astype(np.int64) % V))
    assert got._row_prog


def test_w10_chains_take_the_one_call_path(backend):
    hist = workloads.natural_history(4096, V, 0)
    for stages in ([fs.Penalties(1.1, last_n=64), fs.DRY(0.8, 1.75, 2, last_n=4096),
                    fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
                   [fs.Penalties(1.05, last_n=64), fs.MinP(0.02), fs.XTC(0.5, 0.1),
                    fs.Temperature(1.0)]):
        chain, tokens = _loop(stages, 12, _rows(3, 4), hist, seed=9, backend=backend)
        assert chain._row_prog and len(set(tokens)) > 1


@pytest.mark.parametrize("stages", [
    [fs.TopK(5), fs.Temperature(0.5)],                          # fs.sample's chain: sample_row
    [fs.Penalties(1.1), fs.LogitBias({1: 2.0}), fs.TopK(5)],    # LogitBias after an edit
    [fs.DRY(0.8), fs.Penalties(1.1), fs.TopK(5)],               # DRY before Penalties
    [fs.Penalties(1.1), fs.TopK(5)] + [fs.Temperature(0.9)] * 9,  # more than MAX_AFTER
    [fs.TopK(40), fs.Penalties(1.1), fs.Greedy()],              # a history stage after the cut
    [fs.Penalties(1.1), fs.AdaptiveP(0.5)],                     # AdaptiveP on the whole row
    [fs.Temperature(0.0), fs.Typical(0.9)],                     # greedy before a first stage
    [fs.Smoothing(0.3)] + [fs.Temperature(0.9)] * 8,            # more than MAX_AFTER
])
def test_other_chains_take_the_general_route(stages, backend):
    chain, _ = _loop(stages, 3, _rows(1, 3), workloads.natural_history(50, V, 1), seed=2,
                     backend=backend)
    assert chain._row_prog is False
    assert fsplan.row_program(chain._plan, chain._fused_args(1, chain._plan.fused)
                              if chain._plan.mode == "fused" else None) is None


@pytest.mark.parametrize("case", range(20))
def test_chains_no_stage_cuts_first_run_on_the_whole_row(case, backend):
    """A transform first (Smoothing, DynamicTemperature, a Temperature before them),
    or XTC first (after an optional Temperature) with stages after it: the one-call
    step runs those stages on the whole row (ids are positions, no gather; XTC's
    removed ids set to -inf), step by step against the numpy chain, and on a batch
    of 3 rows."""
    rng = np.random.default_rng(300 + case)
    t = float(rng.choice([0.7, 1.3]))
    pool = _after_stages(rng, t)
    dyn, smooth = pool[12], pool[13]
    xtc = fs.XTC([0.5, 1.0][case % 2], float(rng.uniform(0.02, 0.2)))   # fires often
    lead = [[smooth], [dyn], [fs.Temperature(t), smooth], [xtc],
            [fs.Temperature(t), xtc]][case % 5]
    stages = ([fs.Penalties(1.2, last_n=16)] if case % 2 else []) + lead + list(
        rng.permutation(pool)[: int(rng.integers(1, 4))])
    chain, tokens = _loop(stages, 8, _rows(case, 4, flat=case % 3 == 0),
                          workloads.natural_history(100, V, case), seed=case, backend=backend)
    program = fsplan.row_program(chain._plan)
    assert chain._row_prog and program["first"][0] == ("xtc" if xtc in lead else "whole_row")
    x = _rows(case + 50, 3)
    h = x[:, :5].astype(np.int64) % V
    got = fs.SamplerChain(stages, seed=3, backend=backend).sample(x, history=h)
    want = fs.SamplerChain(stages, seed=3, backend="numpy").sample(x, history=h)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("probability", [0.0, 1.0], ids=["xtc-idle", "xtc-fires"])
def test_a_whole_row_program_hands_invalid_rows_back(probability, backend):
    """The whole-row step checks the row itself (its stages would mask a NaN): an
    invalid row ends as the general route ends it."""
    for stages in ([fs.Smoothing(0.3), fs.TopK(10)],
                   [fs.XTC(probability, 0.05), fs.Smoothing(0.3)],
                   [fs.Temperature(0.7), fs.XTC(probability, 0.05), fs.MinP(0.01)]):
        chain = fs.SamplerChain(stages, seed=1, backend=backend, on_invalid="flag")
        for bad in (np.nan, np.inf):
            row = _rows(1, 1)[0]
            row[V - 1] = bad
            assert chain.sample(row) == -1
        assert chain.sample(np.full(V, -np.inf, np.float32)) == -1
        assert chain._row_prog
        with pytest.raises(ValueError, match="rows \\[0\\]"):
            fs.SamplerChain(stages, seed=1, backend=backend).sample(row)


@pytest.mark.parametrize("case", range(8))
def test_xtc_after_a_cut_that_keeps_most_of_the_row(case, backend):
    """W10b's shape on flat rows, where MinP keeps nearly every token: XTC on that many
    survivors lists the ids it removes instead of running its stage kernel. Thresholds
    near 1/V make it remove many tokens; min_keep 2 hands a firing row back."""
    rng = np.random.default_rng(700 + case)
    xtc = fs.XTC([1.0, 0.5][case % 2], [2e-4, 3.5e-4, 0.1, 1e-3][case % 4],
                 min_keep=2 if case == 7 else 1)
    stages = [fs.Penalties(1.05, last_n=64), fs.MinP(float(rng.uniform(0.0, 0.01))), xtc,
              fs.Temperature(float(rng.choice([1.0, 0.8])))]
    rows = _rows(case, 4, flat=True)
    chain, tokens = _loop(stages, 10, rows, workloads.natural_history(200, V, case),
                          seed=case, backend=backend)
    assert chain._row_prog and len(set(tokens)) > 1


@pytest.mark.parametrize("kind", range(7), ids=["typical", "top_n_sigma", "epsilon", "eta",
                                                 "top_a", "p_less", "tail_free"])
def test_a_whole_distribution_stage_on_a_long_row_of_survivors(kind, backend):
    """Typical, TopNSigma, Epsilon, Eta, TopA, PLess or TailFree after a first cut that
    keeps most of a flat row (2048 survivors or more) runs as it does first, not as its
    stage kernel: the same tokens as the numpy chain, step after step, with min_keep
    1 and 3 and Penalties first."""
    rng = np.random.default_rng(800 + kind)
    for mk in (1, 3):
        stage = [fs.Typical(0.9, min_keep=mk), fs.TopNSigma(1.0, min_keep=mk),
                 fs.Epsilon(3e-4, min_keep=mk), fs.Eta(3e-4, min_keep=mk),
                 fs.TopA(0.5, min_keep=mk), fs.PLess(min_keep=mk),
                 fs.TailFree(0.95, min_keep=mk)][kind]
        first = [fs.MinP(0.001), fs.TopP(0.999)][mk == 3]
        stages = [fs.Penalties(1.1, last_n=32), first, stage,
                  fs.Temperature(float(rng.choice([0.7, 1.0, 1.3])))]
        chain, tokens = _loop(stages, 8, _rows(kind, 4, flat=True),
                              workloads.natural_history(100, V, kind), seed=kind + mk,
                              backend=backend)
        assert chain._row_prog and len(set(tokens)) > 1


@pytest.mark.parametrize("case", range(16))
def test_a_mirostat_after_stages_matches_the_reference(case, backend):
    """Mirostat or MirostatV2 as the terminal after a first cut (Mirostat v1's Zipf k
    is told the vocabulary size, not the survivors' count), after a whole-distribution
    stage first, or after a transform of the whole row: tokens and each row's mu equal
    the numpy chain's step after step, across ``state_of`` / ``load_states``, and in a
    batch of 3 rows with their own mu."""
    rng = np.random.default_rng(500 + case)
    pool = _after_stages(rng, float(rng.choice([0.7, 1.3])))
    lead = [[fs.TopK(int(rng.integers(5, 200)))], [fs.MinP(0.02), fs.TopP(0.9)][:1 + case % 2],
            [pool[5]], [fs.Temperature(0.8), pool[0]], [pool[13]], [pool[12]]][case % 6]
    terminal = (fs.Mirostat(float(rng.uniform(2, 6)), 0.1, m=int(rng.integers(2, 120)))
                if case % 2 else fs.MirostatV2(float(rng.uniform(2, 6)), 0.2))
    stages = ([fs.Penalties(1.2, last_n=16)] if case % 3 else []) + lead + list(
        rng.permutation(pool)[: int(rng.integers(0, 3))]) + [terminal]
    rows = _rows(case, 4, flat=case % 4 == 0)
    chain, _ = _loop(stages, 6, rows, workloads.natural_history(100, V, case), seed=case,
                     backend=backend)
    assert chain._row_prog and fsplan.row_program(chain._plan)["terminal"][0] == terminal.op
    want = fs.SamplerChain(stages, seed=case, backend="numpy")
    want.load_states(chain.state_of())
    for i in range(6):   # picked up from the saved state
        a, b = chain.sample(rows[i % 4]), want.sample(rows[i % 4])
        assert a == b, (i, stages)
        chain.accept(np.array([a]))
        want.accept(np.array([b]))
        assert abs(chain.state_of()[0]["mu"] - want.state_of()[0]["mu"]) <= 1e-12
    x = _rows(case + 50, 3)
    got = fs.SamplerChain(stages, seed=3, backend=backend)
    ref = fs.SamplerChain(stages, seed=3, backend="numpy")
    for c in (got, ref):
        c.load_states([{"history": x[b, :5].astype(np.int64) % V, "mu": 3.0 + b}
                       for b in range(3)])
    for _ in range(3):
        np.testing.assert_array_equal(got.sample(x), ref.sample(x))
        np.testing.assert_allclose([s["mu"] for s in got.state_of()],
                                   [s["mu"] for s in ref.state_of()], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", range(12))
def test_an_adaptive_p_after_stages_matches_the_reference(case, backend):
    """AdaptiveP as the terminal after a first cut, a whole-distribution stage first or
    a transform of the whole row (a negative target: the plain draw, no update): tokens
    and each row's averages equal the numpy chain's step after step (averages within
    1e-12: the log-probability's sum rounds per backend, as on the general route),
    across ``state_of`` / ``load_states``, and in a batch of 3 rows with their own
    targets and averages."""
    rng = np.random.default_rng(800 + case)
    pool = _after_stages(rng, float(rng.choice([0.7, 1.3])))
    lead = [[fs.MinP(0.05)], [fs.TopK(int(rng.integers(5, 200))), fs.TopP(0.9)], [pool[5]],
            [fs.Temperature(0.8), pool[0]], [pool[13]], [pool[12]]][case % 6]
    target = -0.5 if case == 5 else float(rng.uniform(0.05, 0.9))
    terminal = fs.AdaptiveP(target, float(rng.uniform(0.5, 0.95)))
    stages = ([fs.Penalties(1.2, last_n=16)] if case % 3 else []) + lead + list(
        rng.permutation(pool)[: int(rng.integers(0, 3))]) + [terminal]
    rows = _rows(case, 4, flat=case % 4 == 0)
    chain, _ = _loop(stages, 6, rows, workloads.natural_history(100, V, case), seed=case,
                     backend=backend)
    assert chain._row_prog and fsplan.row_program(chain._plan)["terminal"] == ("adaptive_p",
                                                                                 target)
    want = fs.SamplerChain(stages, seed=case, backend="numpy")
    want.load_states(chain.state_of())
    moved = chain.state_of()[0]["ema_sum"] != terminal.init_state(1)["ema_sum"][0]
    assert moved == (target >= 0)
    for i in range(6):   # picked up from the saved state
        a, b = chain.sample(rows[i % 4]), want.sample(rows[i % 4])
        assert a == b, (i, stages)
        chain.accept(np.array([a]))
        want.accept(np.array([b]))
        for key in ("ema_sum", "ema_weight"):
            assert abs(chain.state_of()[0][key] - want.state_of()[0][key]) <= 1e-12
    x = _rows(case + 50, 3)
    batch = [s if s is not terminal else fs.AdaptiveP(np.array([target, 0.3, -1.0]), 0.9)
             for s in stages]
    got = fs.SamplerChain(batch, seed=3, backend=backend)
    ref = fs.SamplerChain(batch, seed=3, backend="numpy")
    for c in (got, ref):
        c.load_states([{"history": x[b, :5].astype(np.int64) % V, "ema_sum": 1.0 + b,
                        "ema_weight": 10.0} for b in range(3)])
    for _ in range(3):
        np.testing.assert_array_equal(got.sample(x), ref.sample(x))
        for key in ("ema_sum", "ema_weight"):
            np.testing.assert_allclose([s[key] for s in got.state_of()],
                                       [s[key] for s in ref.state_of()], rtol=0, atol=1e-12)
    assert got._row_prog


def _random_words(rng, R):
    """R packed bitmask rows: most tokens allowed, a third of them, or a few dozen."""
    words = np.zeros((R, (V + 31) // 32), np.uint32)
    for r in range(R):
        style = int(rng.integers(0, 3))
        keep = (rng.random(V) < 0.9 if style == 0 else rng.random(V) < 0.33 if style == 1
                else np.isin(np.arange(V), rng.integers(0, V, 40)))
        keep[rng.integers(0, 60, 5)] = True   # some of the rows' leading ids
        words[r] = np.packbits(np.r_[keep, np.zeros(words.shape[1] * 32 - V, bool)],
                               bitorder="little").view("<u4")
    return words


@pytest.mark.parametrize("case", range(24))
def test_a_bitmask_rides_in_the_program(case, backend):
    """A call's bitmask (and AllowedTokens) is applied before every stage inside the
    one-call step: the fused chain and the first cut read the row through it (on C, the
    overlay's first pass takes the masked row's maxima and masks the blocks it copies),
    anything else starts from a masked copy. The numpy chain's tokens step by step with
    a new bitmask each step (a plain row of words: the engine loop's fast path), and in
    a batch of 3 with a bitmask row map holding an unconstrained row; read-only rows and
    words; never a masked token; on the one-call path."""
    rng = np.random.default_rng(1700 + case)
    stages = _random_chain(rng)
    if case % 4 == 3:
        stages.insert(0, fs.AllowedTokens(np.flatnonzero(rng.random(V) < 0.5)))
    x = _rows(case, 4, flat=case % 6 == 5)
    x[:, :60] += 3.0
    got, want = (fs.SamplerChain(stages, seed=case, backend=b) for b in (backend, "numpy"))
    for chain in (got, want):
        chain.load_states([{"history": workloads.natural_history(100, V, case)}])
    for step in range(6):
        words = _random_words(rng, 1)[0]
        row = x[step % 4].copy()
        row.flags.writeable = words.flags.writeable = step % 2 == 0   # read-only inputs
        a, b = got.sample(row, bitmask=words), want.sample(row, bitmask=words)
        assert a == b, (step, stages)
        assert (words[a // 32] >> (a % 32)) & 1, a
        got.accept(np.array([a]))
        want.accept(np.array([b]))
    taken = (bool(got._plan.edits) or got._plan.mode == "candidates"
             or isinstance(stages[-1], fs.Greedy))
    assert bool(got._row_prog) == taken, f"the one-call path: {stages}"
    words = _random_words(rng, 2)
    rows = np.array([1, -1, 0])
    h = workloads.natural_history(30, V, case).reshape(3, 10)
    got, want = (fs.SamplerChain(stages, seed=5, backend=b) for b in (backend, "numpy"))
    np.testing.assert_array_equal(got.sample(x[:3], history=h, bitmask=words, bitmask_rows=rows),
                                  want.sample(x[:3], history=h, bitmask=words, bitmask_rows=rows))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_bad_value_under_a_bitmask_goes_the_general_way(bad, backend):
    """A NaN or +inf at a masked-out id is still an invalid input row: the program
    hands it back and the general route raises or flags it as the numpy chain does."""
    words = np.zeros((V + 31) // 32, np.uint32)
    words[:4] = 0xFFFFFFFF   # tokens 0..127
    x = _rows(2, 1)[0]
    x[500] = bad
    for stages in ([fs.Penalties(1.1), fs.TopK(20), fs.Temperature(0.8)],
                   [fs.Penalties(1.1), fs.Typical(0.9)], [fs.AllowedTokens([1, 2, 500]), fs.MinP(0.1)]):
        for on_invalid in ("raise", "flag"):
            outcome = []
            for b in (backend, "numpy"):
                chain = fs.SamplerChain(stages, seed=1, backend=b, on_invalid=on_invalid)
                chain.accept(np.array([3]))
                try:
                    outcome.append(("token", int(chain.sample(x, bitmask=words))))
                except ValueError as e:
                    outcome.append(("error", str(e)))
            assert outcome[0] == outcome[1], stages


@pytest.mark.parametrize("flat", [False, True])
def test_batches_with_per_row_parameters_and_histories(backend, flat):
    B = 5
    rng = np.random.default_rng(7)
    stages = [fs.Penalties(rng.uniform(1.0, 1.4, B), last_n=np.array([8, 64, -1, 16, 64])),
              fs.DRY(rng.uniform(0.3, 1.2, B), 1.75, np.array([1, 2, 2, 3, 2]),
                     last_n=np.array([32, 256, -1, 64, 128])),
              fs.MinP(rng.uniform(0.01, 0.1, B)), fs.XTC(0.7, rng.uniform(0.05, 0.2, B)),
              fs.Temperature(rng.uniform(0.5, 1.2, B))]
    got, want = (fs.SamplerChain(stages, seed=np.arange(B, dtype=np.uint64), backend=b)
                 for b in (backend, "numpy"))
    prompts = [workloads.natural_history(50 + 40 * b, V, b) for b in range(B)]
    for chain in (got, want):
        chain.load_states([{"history": h} for h in prompts])
    for step in range(6):
        x = _rows(step, B, flat=flat)
        a, b = got.sample(x), want.sample(x)
        np.testing.assert_array_equal(a, b)
        got.accept(a)
        want.accept(b)
    assert list(got._row_prog) == [(B, V)]   # the batch ran through chain_rows


def test_a_bad_row_in_a_batch_sends_the_batch_the_general_way(backend):
    stages = [fs.Penalties(1.2), fs.TopK(8), fs.XTC(1.0, 0.05)]
    x = _rows(3, 3)
    x[1, 5] = np.nan
    got = fs.SamplerChain(stages, seed=4, backend=backend, on_invalid="flag").sample(x)
    want = fs.SamplerChain(stages, seed=4, backend="numpy", on_invalid="flag").sample(x)
    np.testing.assert_array_equal(got, want)
    assert got[1] == -1 and (got[[0, 2]] >= 0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("on_invalid", ["raise", "flag"])
def test_a_bad_value_where_an_edit_writes_goes_the_general_way(bad, on_invalid, backend):
    stages = [fs.Penalties(1.3, last_n=16), fs.TopK(10), fs.Temperature(0.7)]
    hist = np.array([5, 6, 7, 5], np.int64)
    row = _rows(2, 1)[0]
    row[6] = bad   # an id the penalty rewrites
    outcomes = []
    for name in (backend, "numpy"):
        chain = fs.SamplerChain(stages, seed=1, backend=name, on_invalid=on_invalid)
        chain.load_states([{"history": hist}])
        if on_invalid == "raise":
            with pytest.raises(ValueError, match="NaN, \\+inf"):
                chain.sample(row)
            outcomes.append("raised")
        else:
            outcomes.append(chain.sample(row))
    assert outcomes[0] == outcomes[1] and outcomes[0] in ("raised", -1)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("at", [3, 9, 2], ids=["dry-follower", "untouched", "penalty-window"])
def test_a_bad_value_at_a_history_token_matches_the_general_route(at, bad, backend):
    """The one-call step checks only the ids its edits write (the penalty window, the
    followers DRY penalises); a bad value anywhere else in the history is left to the
    kernel's own check. Every case must end as the general route does."""
    stages = [fs.Penalties(1.3, last_n=2), fs.DRY(0.8, 1.75, 1, last_n=64), fs.TopK(10),
              fs.Temperature(0.7)]
    hist = np.array([1, 2, 3, 9, 1, 2], np.int64)   # DRY penalises 3 (after "1 2")
    row = _rows(5, 1)[0]
    row[at] = bad
    outcomes = []
    for name in (backend, "numpy"):
        chain = fs.SamplerChain(stages, seed=1, backend=name, on_invalid="flag")
        chain.load_states([{"history": hist}])
        outcomes.append(chain.sample(row))
    assert outcomes[0] == outcomes[1] == -1


def test_an_invalid_row_goes_the_general_way(backend):
    stages = [fs.Penalties(1.1), fs.MinP(0.1), fs.XTC(1.0, 0.05)]
    chain = fs.SamplerChain(stages, seed=1, backend=backend, on_invalid="flag")
    chain.load_states([{"history": [1, 2]}])
    assert chain.sample(np.full(V, -np.inf, np.float32)) == -1
    row = _rows(1, 1)[0]
    row[V - 1] = np.nan   # not an id an edit touches: the kernel's own check
    assert chain.sample(row) == -1
    assert chain._row_prog   # the path exists; it handed these rows back
    strict = fs.SamplerChain(stages, seed=1, backend=backend)
    with pytest.raises(ValueError, match="rows \\[0\\]"):
        strict.sample(row)


def test_explicit_history_and_positions(backend):
    stages = [fs.Penalties(1.2, 0.1, 0.1, last_n=32), fs.DRY(1.0, 1.75, 2, last_n=256),
              fs.MinP(0.05), fs.Temperature(0.9)]
    hist = workloads.natural_history(400, V, 4)
    for i, row in enumerate(_rows(4, 5)):
        got = fs.SamplerChain(stages, seed=11, backend=backend).sample(row, history=hist[:300 + i],
                                                                  position=i * 7)
        want = fs.SamplerChain(stages, seed=11, backend="numpy").sample(
            row, history=hist[:300 + i], position=i * 7)
        assert got == want


def test_the_one_row_step_keeps_the_general_checks(backend):
    """After the one-row step has run (``SamplerChain._one_row``: no ``_prepare``), a
    loaded history with a token outside [0, V) is still an error (so is a history
    that a smaller V makes out of range), float64 and strided logits still give the
    reference's token,
    and an explicit history or position takes the general path with the same result."""
    stages = [fs.Penalties(1.2, last_n=16), fs.TopK(20), fs.Temperature(0.8)]
    rows = _rows(4, 3)
    chain, _ = _loop(stages, 4, rows, workloads.natural_history(30, V, 2), seed=5,
                     backend=backend)
    assert chain._one is not None and chain._one[0] == V
    want = fs.SamplerChain(stages, seed=5, backend="numpy")
    want.load_states(chain.state_of())
    for x in (rows[0].astype(np.float64), np.repeat(rows[1], 2)[::2]):
        assert chain.sample(x) == want.sample(x)
    h = workloads.natural_history(20, V, 3)
    assert chain.sample(rows[2], history=h, position=7) == want.sample(rows[2], history=h,
                                                                       position=7)
    small = workloads.llm_like(1, 500, 1)[0]
    with pytest.raises(ValueError, match="outside"):   # another V: the history is checked
        chain.sample(small)
    with pytest.raises(ValueError, match="outside"):
        bad = fs.SamplerChain(stages, seed=5, backend=backend)
        bad.sample(rows[0])
        bad.load_states([{"history": np.array([1, V + 3])}])
        bad.sample(rows[0])


def _check_row_and_batch(stages, case, backend):
    """8 engine-loop steps on one row (flat rows now and then) and a batch of 3 with
    histories: the numpy chain's tokens, on the one-call path."""
    chain, _ = _loop(stages, 8, _rows(case, 4, flat=case % 4 == 3),
                     workloads.natural_history(200, V, case), seed=case, backend=backend)
    assert chain._row_prog, f"the one-call path: {stages}"
    x = _rows(case + 40, 3)
    h = workloads.natural_history(30, V, case).reshape(3, 10)
    got = fs.SamplerChain(stages, seed=5, backend=backend)
    want = fs.SamplerChain(stages, seed=5, backend="numpy")
    np.testing.assert_array_equal(got.sample(x, history=h), want.sample(x, history=h))
    assert got._row_prog


@pytest.mark.parametrize("case", range(12))
def test_a_logit_bias_first_is_an_edit_of_the_program(case, backend):
    """LogitBias first (then Penalties and DRY or not) is the program's first edit: the
    fused chain, a first cut with stages after it, a whole-distribution stage first and
    the whole row, step by step against the numpy chain, and in a batch of 3."""
    rng = np.random.default_rng(700 + case)
    edits = [_random_bias(rng)] + [fs.Penalties(1.2, last_n=16)] * (case % 2) + \
        [fs.DRY(0.8, 1.75, 2, last_n=64)] * (case % 3 == 0)
    tail = [[fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)],
            [fs.Temperature(0.7), fs.TopK(30), fs.MinP(0.02)],
            [fs.MinP(0.02), fs.XTC(0.5, 0.1), fs.Temperature(1.0)],
            [fs.Typical(0.9), fs.Temperature(0.8)],
            [fs.Smoothing(0.3, 1.5)],
            [fs.Temperature(0.8), fs.XTC(1.0, 0.05), fs.TopK(20)]][case % 6]
    _check_row_and_batch(edits + tail, case, backend)


def test_a_bias_that_puts_a_token_on_top_or_bans_it(backend):
    """A +30 bias draws its token every step; a ban (-inf, also as one of repeated
    biases of one id) never draws it, though it is the row's max."""
    x = _rows(3, 1)[0]
    top = int(np.argmax(x))
    for stages, check in (
            ([fs.LogitBias({17: 30.0}), fs.TopK(40), fs.Temperature(0.8)], lambda t: t == 17),
            ([fs.LogitBias(([top, top], [1.0, -np.inf])), fs.TopK(1)], lambda t: t != top)):
        chain, tokens = _loop(stages, 6, [x], np.zeros(0, np.int64), seed=1, backend=backend)
        assert chain._row_prog and all(check(t) for t in tokens), tokens


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_bad_value_at_a_bias_id_goes_the_general_way(bad, backend):
    """A NaN or +inf at a biased id: the program hands the row back and the general
    route ends it as the numpy chain does (the bias may overwrite it: an error either
    way, or the same flag)."""
    stages = [fs.LogitBias({5: -np.inf, 9: 1.0}), fs.TopK(10), fs.Temperature(0.7)]
    x = _rows(4, 1)
    x[0, 5] = bad
    for on_invalid in ("raise", "flag"):
        got = fs.SamplerChain(stages, seed=1, backend=backend, on_invalid=on_invalid)
        want = fs.SamplerChain(stages, seed=1, backend="numpy", on_invalid=on_invalid)
        outcome = []
        for chain in (got, want):
            try:
                outcome.append(("token", int(chain.sample(x)[0])))
            except ValueError as e:
                outcome.append(("error", type(e).__name__))
        assert outcome[0] == outcome[1]


def test_a_bias_id_outside_the_vocabulary_raises_as_the_general_route(backend):
    stages = [fs.LogitBias({V + 3: 1.0}), fs.TopK(10)]
    for b in (backend, "numpy"):
        with pytest.raises(ValueError, match="outside"):
            fs.SamplerChain(stages, seed=1, backend=b).sample(_rows(1, 1))


@pytest.mark.parametrize("case", range(10))
def test_a_greedy_terminal_matches_the_reference(case, backend):
    """Greedy after edits only (fs.sample's greedy kernel on the edited row), after a
    first cut, a whole-distribution stage or a transform (a temperature that merges
    neighbouring logits into ties included): the first maximum, step by step and in a
    batch of 3, on the one-call path."""
    rng = np.random.default_rng(900 + case)
    edits = [[], [fs.Penalties(1.3, last_n=16)], [_random_bias(rng), fs.Penalties(1.2),
                                                   fs.DRY(0.8, 1.75, 2, last_n=64)]][case % 3]
    tail = [[], [fs.TopK(40), fs.MinP(0.05)], [fs.Typical(0.9)], [fs.Smoothing(0.3, 1.5)],
            [fs.TopK(50), fs.Temperature(3.0)], [fs.Temperature(1.3), fs.XTC(1.0, 0.05)],
            [fs.MinP(0.02), fs.Temperature(0.5), fs.TopNSigma(1.0)]][case % 7]
    _check_row_and_batch(edits + tail + [fs.Greedy()], case, backend)


def test_greedy_breaks_ties_to_the_first_maximum(backend):
    """Equal maxima (an exact tie, and one a temperature of 3 makes of two neighbouring
    logits, the larger at the higher id): the lowest id, after edits and after a cut."""
    x = np.full(V, -5.0, np.float32)
    x[[40, 7, 900]] = 2.0
    x[3] = np.nextafter(np.float32(6.0), np.float32(7.0))
    x[5] = np.nextafter(x[3], np.float32(7.0))   # the max; float32(x / 3) merges 3 and 5
    assert np.float32(np.float64(x[3]) / 3.0) == np.float32(np.float64(x[5]) / 3.0)
    for stages, want in (([fs.Penalties(1.0), fs.Greedy()], 5),
                         ([fs.LogitBias({3: -10.0, 5: -10.0}), fs.Greedy()], 7),
                         ([fs.TopK(10), fs.Temperature(3.0), fs.Greedy()], 3),
                         ([fs.LogitBias({900: 0.0}), fs.Temperature(3.0), fs.Greedy()], 3)):
        for b in (backend, "numpy"):
            chain = fs.SamplerChain(stages, seed=1, backend=b)
            assert chain.sample(x[None])[0] == want, (b, stages)
            assert b == "numpy" or chain._row_prog, stages


@pytest.mark.parametrize("case", range(8))
def test_no_repeat_ngram_among_the_edits(case, backend):
    """NoRepeatNGram before, between or after the other edits (its bans commute with
    them), on a history full of repeats, with the fused chain, a cut and Greedy: the
    numpy chain's tokens step by step, on the one-call path, and never a token that
    completes a repeated n-gram."""
    rng = np.random.default_rng(1300 + case)
    n = 1 + case % 4
    edits = [_random_bias(rng), fs.Penalties(1.2, last_n=8), fs.DRY(0.8, 1.75, 2, last_n=64)]
    edits = edits[:case % 4]
    edits.insert(case % (len(edits) + 1), fs.NoRepeatNGram(n))
    tail = [[fs.TopK(40), fs.Temperature(0.9)], [fs.MinP(0.01), fs.XTC(0.5, 0.1)],
            [fs.Greedy()], [fs.TopK(40), fs.Typical(0.9)]][case % 4]
    prompt = np.tile(rng.integers(0, 60, 7), 6)   # repeats: many n-grams to ban
    x = _rows(case, 4)
    x[:, :60] += 4.0   # the prompt's tokens lead the rows
    chain, tokens = _loop(edits + tail, 10, x, prompt, seed=case, backend=backend)
    assert chain._row_prog, f"the one-call path: {edits + tail}"
    seq = list(prompt) + tokens
    for t in range(len(prompt), len(seq)):
        grams = {tuple(seq[i:i + n]) for i in range(t - n + 1)}
        assert tuple(seq[t - n + 1:t + 1]) not in grams, (t, n)


def test_a_batch_whose_other_row_has_no_program_goes_the_general_way(backend):
    """Row 0 has a program and row 1 none (its temperature before the first stage is
    greedy): the batch goes the general route, with the numpy chain's tokens (it
    raised when only row 0's program was looked at)."""
    stages = [fs.NoRepeatNGram(3), fs.Penalties(1.2), fs.Temperature(np.array([0.7, -0.1])),
              fs.Typical(0.9)]
    x = _rows(5, 2)
    h = workloads.natural_history(40, V, 5).reshape(2, 20)
    got = fs.SamplerChain(stages, seed=2, backend=backend)
    want = fs.SamplerChain(stages, seed=2, backend="numpy")
    for _ in range(3):
        a, b = got.sample(x, history=h), want.sample(x, history=h)
        np.testing.assert_array_equal(a, b)
    assert got._row_prog == {(2, V): ()}


@pytest.mark.parametrize("case", range(10))
def test_bad_words_and_min_tokens_among_the_edits(case, backend):
    """BadWords and MinTokens before, between or after the other edits (their bans are
    -inf biases chosen per call), on rows and a prompt where the bans fire: the numpy
    chain's tokens step by step and in a batch of 3 (per-row MinTokens n), on the
    one-call path, and never a banned token."""
    rng = np.random.default_rng(1500 + case)
    x = _rows(case, 4)
    x[:, :6] += 6.0   # the banned ids lead the rows
    seqs = [[1], [2, 3], [3, 2], [0, 4, 5], [5, 5]][:2 + case % 4]
    bans = [fs.BadWords(seqs), fs.MinTokens(6 + case % 5, [0, 4])]   # the prompt: 4
    edits = [_random_bias(rng), fs.Penalties(1.2, last_n=8), fs.DRY(0.8, 1.75, 2, last_n=64)]
    edits = edits[:case % 4]
    for stage in bans[:1 + case % 2] if case % 3 else bans[1:]:
        edits.insert(int(rng.integers(0, len(edits) + 1)), stage)
    tail = [[fs.TopK(40), fs.Temperature(1.5)], [fs.MinP(0.01), fs.XTC(0.5, 0.1)],
            [fs.Greedy()], [fs.Typical(0.95)], [fs.Smoothing(0.2)]][case % 5]
    prompt = np.array([7, 0, 4, 2])   # ends with [2, 3]'s prefix
    chain, tokens = _loop(edits + tail, 12, x, prompt, seed=case, backend=backend)
    assert chain._row_prog, f"the one-call path: {edits + tail}"
    seq = list(prompt) + tokens
    for t in range(len(prompt), len(seq)):
        for stage in edits:
            if isinstance(stage, fs.BadWords):
                for s in seqs:
                    assert seq[max(t - len(s) + 1, 0):t + 1] != s, (t, s, seq)
            if isinstance(stage, fs.MinTokens) and t < stage.n:   # position t
                assert seq[t] not in (0, 4), (t, seq)
    assert chain._ban_progs, "no call banned anything"
    n = np.array([0, 5, 2])
    stages = [s if not isinstance(s, fs.MinTokens) else fs.MinTokens(n, [0, 4])
              for s in edits] + tail
    h = np.array([[1, 2], [0, 5], [9, 3]])
    got = fs.SamplerChain(stages, seed=5, backend=backend)
    want = fs.SamplerChain(stages, seed=5, backend="numpy")
    for position in ([0, 0, 0], [3, 4, 1]):
        np.testing.assert_array_equal(got.sample(x[:3], history=h, position=position),
                                      want.sample(x[:3], history=h, position=position))
    assert got._row_prog


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("stage", [fs.BadWords([[9, 5]]), fs.MinTokens(4, [5])],
                         ids=["bad-words", "min-tokens"])
def test_a_bad_value_at_a_banned_id_goes_the_general_way(stage, bad, backend):
    """A NaN or +inf at an id banned this call: the program hands the row back and the
    general route ends it as the numpy chain does (the ban overwrites it)."""
    stages = [stage, fs.Penalties(1.1), fs.TopK(10), fs.Temperature(0.7)]
    x = _rows(4, 1)
    x[0, 5] = bad
    for on_invalid in ("raise", "flag"):
        outcome = []
        for b in (backend, "numpy"):
            chain = fs.SamplerChain(stages, seed=1, backend=b, on_invalid=on_invalid)
            try:
                outcome.append(("token", int(chain.sample(x, history=np.array([[9]]))[0])))
            except ValueError as e:
                outcome.append(("error", type(e).__name__))
        assert outcome[0] == outcome[1]


@pytest.mark.parametrize("stage", [fs.BadWords([[1, V + 2, 3]]), fs.MinTokens(0, [V])],
                         ids=["bad-words", "min-tokens"])
def test_a_ban_id_outside_the_vocabulary_raises_as_the_general_route(stage, backend):
    """Even a sequence that cannot match, or a MinTokens already past its n."""
    for b in (backend, "numpy"):
        with pytest.raises(ValueError, match="outside"):
            fs.SamplerChain([stage, fs.TopK(10)], seed=1, backend=b).sample(_rows(1, 1))
