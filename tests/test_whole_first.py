"""A whole-distribution stage first in the one-call step (``plan.FIRST_WHOLE_OPS``;
``fs_whole_first_row`` of C, ``csrc/fs_whole_first.inc``, and ``whole_first_row`` of
numba, ``kernels/cpu/whole_first.py``).

A chain ``[Penalties] [DRY] -> Epsilon / Eta / TopA / PLess / TopNSigma / XTC ->
[stages on the survivors] -> Dist`` runs its step in one compiled call. Its tokens
must be the numpy reference chain's, step after step with ``accept``, on rows of every
style (smooth, flat, ties, partly masked, one token left, constant, huge), with every
min_keep; the call must decide on its own on ordinary rows (no hand-back), and a row
with a token exactly on its threshold must be handed to the general route, which
decides as the reference does.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import plan as fsplan
from fastsample import registry, workloads


@pytest.fixture(params=["c", "numba"])
def backend(request):
    if not fs.backends()[request.param]:
        pytest.skip(fs.backends()[request.param].reason)
    return request.param


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
            fs.XTC(float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.02, 0.3)), min_keep=mk)]


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
@pytest.mark.parametrize("which", range(6))
def test_each_first_stage_matches_the_reference(which, style, backend):
    rng = np.random.default_rng(which * 10 + STYLES.index(style))
    stage = _first_stages(rng)[which]
    rows = _rows(which, 4, style)
    for stages in ([stage], [stage, fs.Temperature(0.7)],
                   [fs.Penalties(1.3, 0.1, 0.1, 16), stage, fs.TopK(8), fs.Temperature(1.2)]):
        chain = _loop(stages, 8, rows, seed=which, backend=backend,
                      prompt=workloads.natural_history(40, V, which))
        assert chain._plan.first is stage and chain._row_prog, stages


@pytest.mark.parametrize("case", range(30))
def test_random_chains_with_a_whole_distribution_stage_first(case, backend):
    rng = np.random.default_rng(1000 + case)
    stages = []
    if rng.random() < 0.5:
        stages.append(fs.Penalties(float(rng.uniform(1.0, 1.5)), last_n=int(rng.choice([-1, 32]))))
    if rng.random() < 0.4:
        stages.append(fs.DRY(float(rng.uniform(0.2, 1.5)), 1.75, 2, 256))
    stages.append(_first_stages(rng)[case % 6])
    after = [fs.Temperature(float(rng.choice([0.0, 0.7, 1.3]))), fs.TopK(int(rng.integers(1, 30))),
             fs.MinP(float(rng.uniform(0.0, 0.2))), fs.Typical(float(rng.uniform(0.3, 1.0))),
             fs.XTC(0.7, 0.1), fs.Smoothing(0.3, 1.5)]
    rng.shuffle(after)
    stages += after[:int(rng.integers(0, 4))]
    style = STYLES[case % len(STYLES)]
    chain = _loop(stages, 10, _rows(case, 5, style), seed=case, backend=backend,
                  prompt=workloads.natural_history(200, V, case))
    assert chain._row_prog, stages


@pytest.mark.parametrize("which", range(6))
def test_ordinary_rows_are_decided_in_the_call(which, backend):
    """No hand-back on llm_like and flat rows at V = 128256: the fast path holds on
    every row, not on the benchmark's alone (min_keep 1)."""
    stage = [fs.Epsilon(3e-4), fs.Eta(3e-4), fs.TopA(0.2), fs.PLess(), fs.TopNSigma(1.0),
             fs.XTC(1.0, 0.05)][which]
    for gen in (workloads.llm_like, workloads.flat):
        x = gen(6, 128256, which)
        for b in range(x.shape[0]):
            assert not _handed_back(backend, [stage], x[b], seed=b, position=b)


def test_a_token_on_the_threshold_is_handed_back(backend):
    """p exactly equal to the threshold (a constant row: every p = 1/n) and a logit
    exactly at max - n * sigma: the call hands the row back, and the chain's token is
    still the reference's."""
    n = 512
    const = np.full(n, 0.25, np.float32)
    two = np.where(np.arange(n) % 2 == 0, 0.0, 2.0).astype(np.float32)  # mean 1, sigma 1
    for stages, row in (([fs.Epsilon(1.0 / n)], const), ([fs.TopNSigma(2.0)], two)):
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
