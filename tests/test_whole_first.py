"""A whole-distribution stage first in the one-call step (``plan.FIRST_WHOLE_OPS``;
``fs_whole_first_row`` of C, ``csrc/fs_whole_first.inc``, and ``whole_first_row`` of
numba, ``kernels/cpu/whole_first.py``).

A chain ``[Penalties] [DRY] [Temperature] -> Epsilon / Eta / TopA / PLess / TopNSigma /
XTC / Typical / TailFree -> [stages on the survivors] -> Dist`` (a Temperature only
before the first four),
or ``[edits] [Temperature] -> Mirostat / MirostatV2``, runs its step in one compiled
call. Its tokens must be the numpy reference chain's, step after step with
``accept``, on rows of every style (smooth, flat, ties, partly masked, one token
left, constant, huge), with every min_keep; the Mirostats' mu must follow the
reference's within 1e-9 (its update reads a log-probability summed in another
order); the call must decide on its own on ordinary rows (no hand-back), and a row
with a token exactly on its threshold must be handed to the general route, which
decides as the reference does.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import plan as fsplan
from fastsample import registry, workloads


@pytest.fixture
def backend(fast_backend):
    """The compiled CPU backends only (conftest's fast_backend)."""
    return fast_backend


V = 3000
STYLES = ("llm", "flat", "ties", "masked", "one_left", "const", "huge")


def _rows(seed, n, style):
    rng = np.random.default_rng(seed)
    x = workloads.flat(n, V, seed) if style == "flat" else workloads.llm_like(n, V, seed)
    if style == "ties":
        x = np.round(x * 2) / 2
    elif style == "masked":
        x[rng.random(x.shape) < 0.7] = -np.inf
    elif style == "one_left":
        x[:] = -np.inf
        x[np.arange(n), rng.integers(0, V, n)] = rng.normal(size=n)
    elif style == "const":
        x[:] = 0.5
    elif style == "huge":
        x = x * 1e37
    return np.ascontiguousarray(x, np.float32)


def _first_stages(rng):
    """One of every stage a row program runs first, with a random min_keep."""
    mk = int(rng.choice([1, 1, 2, 5]))
    return [fs.Epsilon(float(rng.uniform(1e-4, 0.05)), min_keep=mk),
            fs.Eta(float(rng.uniform(1e-4, 0.05)), min_keep=mk),
            fs.TopA(float(rng.uniform(0.05, 1.0)), min_keep=mk), fs.PLess(min_keep=mk),
            fs.TopNSigma(float(rng.uniform(0.3, 3.0)), min_keep=mk),
            fs.XTC(float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.02, 0.3)), min_keep=mk),
            fs.Typical(float(rng.choice([0.3, 0.9, 0.99, rng.uniform(0.05, 1.0)])), min_keep=mk),
            fs.TailFree(float(rng.choice([0.3, 0.9, 0.95, 0.99, rng.uniform(0.0, 1.0)])),
                        min_keep=mk)]


def _loop(stages, steps, rows, seed, backend, prompt=None):
    """The chain on ``backend`` and on numpy, step by step: the tokens must agree."""
    got, want = (fs.SamplerChain(stages, seed=seed, backend=b) for b in (backend, "numpy"))
    if prompt is not None:
        for chain in (got, want):
            chain.load_states([{"history": prompt}])
    for i in range(steps):
        row = rows[i % len(rows)]
        a, b = got.sample(row), want.sample(row)
        assert a == b, (i, stages)
        got.accept(np.array([a]))
        want.accept(np.array([b]))
    return got


def _handed_back(backend, stages, row, seed=0, position=0):
    """Whether the one-call step hands ``row`` to the general route (-2)."""
    chain = fs.SamplerChain(stages, seed=seed, backend=backend)
    program = fsplan.row_program(chain._plan)
    assert program is not None and "first" in program
    module = registry.load(backend)
    prog = module.chain_program(program, row.shape[0])
    return module.chain_row(row, np.zeros(0, np.int64), prog, seed, position) == -2


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("which", range(8))
def test_each_first_stage_matches_the_reference(which, style, backend):
    rng = np.random.default_rng(which * 10 + STYLES.index(style))
    stage = _first_stages(rng)[which]
    rows = _rows(which, 4, style)
    chains = [[stage], [stage, fs.Temperature(0.7)],
              [fs.Penalties(1.3, 0.1, 0.1, 16), stage, fs.TopK(8), fs.Temperature(1.2)]]
    if stage.op in fsplan.TEMPERATURE_FIRST_OPS:
        chains += [[fs.Temperature(0.6), stage], [fs.DRY(0.8), fs.Temperature(1.7), stage,
                                                  fs.MinP(0.05)]]
    for stages in chains:
        chain = _loop(stages, 8, rows, seed=which, backend=backend,
                      prompt=workloads.natural_history(40, V, which))
        assert chain._plan.first is stage and chain._row_prog, stages


@pytest.mark.parametrize("case", range(40))
def test_random_chains_with_a_whole_distribution_stage_first(case, backend):
    rng = np.random.default_rng(1000 + case)
    stages = []
    if rng.random() < 0.5:
        stages.append(fs.Penalties(float(rng.uniform(1.0, 1.5)), last_n=int(rng.choice([-1, 32]))))
    if rng.random() < 0.4:
        stages.append(fs.DRY(float(rng.uniform(0.2, 1.5)), 1.75, 2, 256))
    stages.append(_first_stages(rng)[case % 8])
    after = [fs.Temperature(float(rng.choice([0.0, 0.7, 1.3]))), fs.TopK(int(rng.integers(1, 30))),
             fs.MinP(float(rng.uniform(0.0, 0.2))), fs.Typical(float(rng.uniform(0.3, 1.0))),
             fs.XTC(0.7, 0.1), fs.Smoothing(0.3, 1.5)]
    rng.shuffle(after)
    stages += after[:int(rng.integers(0, 4))]
    style = STYLES[case % len(STYLES)]
    chain = _loop(stages, 10, _rows(case, 5, style), seed=case, backend=backend,
                  prompt=workloads.natural_history(200, V, case))
    assert chain._row_prog, stages


@pytest.mark.parametrize("which", range(10))
def test_ordinary_rows_are_decided_in_the_call(which, backend):
    """No hand-back on llm_like and flat rows at V = 128256: the fast path holds on
    every row, not on the benchmark's alone (min_keep 1)."""
    stage = [fs.Epsilon(3e-4), fs.Eta(3e-4), fs.TopA(0.2), fs.PLess(), fs.TopNSigma(1.0),
             fs.XTC(1.0, 0.05), fs.Typical(0.9), fs.Typical(0.99), fs.TailFree(0.95),
             fs.TailFree(0.5)][which]
    for gen in (workloads.llm_like, workloads.flat):
        x = gen(6, 128256, which)
        for b in range(x.shape[0]):
            assert not _handed_back(backend, [stage], x[b], seed=b, position=b)


def test_a_token_on_the_threshold_is_handed_back(backend):
    """p exactly equal to the threshold (a constant row: every p = 1/n), a logit
    exactly at max - n * sigma, a typical prefix whose mass is exactly the target and
    a tail-free cdf exactly z: the call hands the row back, and the chain's token is
    still the reference's."""
    n = 512
    const = np.full(n, 0.25, np.float32)
    two = np.where(np.arange(n) % 2 == 0, 0.0, 2.0).astype(np.float32)  # mean 1, sigma 1
    # Typical: three tokens at the max hold exactly the target mass (ordered first: the
    # fourth lies farther from the mean logit)
    typ = np.array([0.0, 0.0, -1.0, 0.0], np.float32)
    probs = np.exp(typ.astype(np.float64)) / np.exp(typ.astype(np.float64)).sum()
    p3 = float(np.cumsum(probs[[0, 1, 3]])[-1]) + 1e-6
    # TailFree: z exactly the reference's fourth cdf value
    tf = workloads.llm_like(1, 64, 5)[0]
    order = np.argsort(-tf, kind="stable")
    d = np.abs(np.diff(np.exp(tf[order].astype(np.float64) - tf.max()), n=2))
    z4 = float(np.cumsum(d / d.sum())[3])
    for stages, row in (([fs.Epsilon(1.0 / n)], const), ([fs.TopNSigma(2.0)], two),
                        ([fs.Typical(p3)], typ), ([fs.TailFree(z4)], tf)):
        assert _handed_back(backend, stages, row)
        _loop(stages, 5, row[None, :], seed=4, backend=backend)


@pytest.mark.parametrize("on_invalid", ["raise", "flag"])
def test_an_invalid_row_goes_the_general_way(on_invalid, backend):
    row = _rows(3, 1, "llm")[0]
    row[17] = np.nan
    got, want = (fs.SamplerChain([fs.Eta(1e-3), fs.Temperature(0.8)], seed=1, backend=b,
                                 on_invalid=on_invalid) for b in (backend, "numpy"))
    assert _handed_back(backend, [fs.Eta(1e-3)], row)
    if on_invalid == "raise":
        with pytest.raises(ValueError, match="NaN"):
            want.sample(row)
        with pytest.raises(ValueError, match="NaN"):
            got.sample(row)
    else:
        assert got.sample(row) == want.sample(row) == -1


def test_xtc_draws_over_the_whole_row_itself(backend):
    """XTC with nothing after it draws in the call (rolls firing and not), over many
    positions, with the reference's tokens."""
    rows = _rows(8, 3, "llm")
    chain = _loop([fs.XTC(0.5, 0.05)], 60, rows, seed=11, backend=backend)
    assert chain._row_prog


def _mirostat_loop(stages, steps, rows, seed, backend, swap_at=None):
    """``_loop`` for a Mirostat terminal: tokens equal and mu within 1e-9, step by
    step; at ``swap_at`` both chains' states go through state_of / load_states."""
    got, want = (fs.SamplerChain(stages, seed=seed, backend=b) for b in (backend, "numpy"))
    for i in range(steps):
        if i == swap_at:
            for chain in (got, want):
                chain.load_states(chain.state_of())
        row = rows[i % len(rows)]
        a, b = got.sample(row), want.sample(row)
        assert a == b, (i, stages)
        got.accept(np.array([a]))
        want.accept(np.array([b]))
        np.testing.assert_allclose(got._state[-1]["mu"], want._state[-1]["mu"], rtol=1e-9,
                                   atol=1e-9)
    return got


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("v2", [False, True])
def test_mirostat_terminals_match_the_reference(v2, style, backend):
    rows = _rows(20 + STYLES.index(style), 4, style)
    term = fs.MirostatV2(4.0, 0.2) if v2 else fs.Mirostat(5.0, 0.1, m=int(20 + 80 * v2))
    for stages in ([term], [fs.Temperature(0.8), term],
                   [fs.Penalties(1.2, last_n=8), fs.Temperature(1.4), term]):
        chain = _mirostat_loop(stages, 25, rows, seed=5, backend=backend, swap_at=12)
        assert chain._plan.first is term and chain._row_prog, stages


def test_mirostat_batches_match_the_reference(backend):
    """A batch takes the one-call step row by row (per-row parameters too), with the
    reference's tokens and mu; a row's mu does not depend on the batch it is in."""
    x = _rows(30, 3, "llm")
    stages = [fs.Temperature(0.9), fs.Mirostat(tau=[4.0, 5.0, 6.0], eta=0.2)]
    got, want = (fs.SamplerChain(stages, seed=[2, 3, 4], backend=b)
                 for b in (backend, "numpy"))
    solo = fs.SamplerChain([fs.Temperature(0.9), fs.Mirostat(tau=6.0, eta=0.2)], seed=4,
                           backend=backend)
    for _ in range(12):
        a, b, c = got.sample(x), want.sample(x), solo.sample(x[2])
        np.testing.assert_array_equal(a, b)
        assert c == a[2]
        got.accept(a)
        want.accept(b)
        solo.accept(np.array([c]))
        np.testing.assert_allclose(got._state[-1]["mu"], want._state[-1]["mu"], rtol=1e-9)
        assert solo._state[-1]["mu"][0] == got._state[-1]["mu"][2]
    assert got._row_prog


def test_a_greedy_temperature_first_takes_the_general_route(backend):
    chain = _loop([fs.Temperature(0.0), fs.Epsilon(1e-3)], 3, _rows(2, 2, "llm"), seed=1,
                  backend=backend)
    assert chain._row_prog is False
