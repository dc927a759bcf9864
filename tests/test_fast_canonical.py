"""The fused canonical chain (``sample_canonical``) of every compiled CPU backend
(numba, c) against the numpy reference.

Each test runs once per backend (the ``fast_backend`` fixture of ``conftest.py``), on
the backend's ops module as the registry loads it; the C kernel runs on every
instruction-set level this CPU has (portable C, AVX2, AVX-512, through ``isa=``).
``sample_canonical`` must give exactly the token of ``fs.sample(...,
backend="numpy")`` on every row: thousands of random rows (LLM-like and flat logits,
small and full vocabularies, ties made by rounding, partly masked rows, extreme
magnitudes), per-row parameters, both temperature orders, greedy (t <= 0), t == 1,
k >= V, V = 1, B = 0, min_keep above the survivors. Zero mismatches allowed; the input
is never written and the token is never a masked one.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample import registry
from fastsample.workloads import flat, llm_like

FULL_V = 128256


@pytest.fixture
def ops(fast_backend):
    return registry.load(fast_backend)


def _variants(ops):
    """Keyword sets that select each code path of one backend: every ISA level of C."""
    if ops.__name__ == "fastsample.c_backend":
        from fastsample.c_backend import core

        return [{"isa": isa} for isa in core.ISAS]
    return [{}]


# ---------------------------------------------------------------- helpers


def _rows(B, V, seed, gen):
    return (llm_like if gen == "llm_like" else flat)(B, V, seed)


def _perturb(x, rng):
    """Ties by rounding, masked tokens and scaled magnitudes, row by row."""
    x = x.copy()
    B, V = x.shape
    for b in range(B):
        kind = rng.integers(0, 6)
        if kind == 1:  # ties: round to a coarse grid
            q = rng.choice([1.0, 2.0, 4.0, 16.0])
            x[b] = np.round(x[b] * q) / q
        elif kind == 2:  # partly masked
            frac = rng.choice([0.1, 0.5, 0.9, 0.999])
            x[b, rng.random(V) < frac] = -np.inf
        elif kind == 3:  # ties and masks
            x[b] = np.round(x[b] * 2.0) / 2.0
            x[b, rng.random(V) < 0.3] = -np.inf
        elif kind == 4:  # magnitudes
            x[b] = x[b] * np.float32(rng.choice([1e-3, 10.0, 1e4, 1e30]))
        if not np.isfinite(x[b]).any():
            x[b, rng.integers(0, V)] = 0.0
    return x


def _params(B, V, rng):
    k_choices = np.array([0, 0, -1, 1, 2, 5, 40, 50, V - 1, V, V + 7], dtype=np.int64)
    return {
        "top_k": rng.choice(k_choices, B),
        "top_p": rng.choice([1.0, 1.0, 0.0, 0.1, 0.5, 0.9, 0.95, 0.999, 1.5], B),
        "min_p": rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 0.9, 1.0, 2.0], B),
        "temperature": rng.choice([1.0, 1.0, 0.8, 0.5, 1.7, 0.0, -1.0, 1e-3, 1e3], B),
        "min_keep": rng.choice(np.array([1, 1, 1, 2, 3, 10, 100], dtype=np.int64), B),
        "seed": rng.integers(0, 2**63, B, dtype=np.uint64),
        "position": rng.integers(0, 2**40, B, dtype=np.uint64),
    }


def _arr(a, B, dt):
    return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dt), (B,)))


def _kernel(ops, x, top_k, top_p, min_p, temperature, min_keep, seed, position, t_last,
            **variant):
    B = x.shape[0]
    before = x.copy()
    out = ops.sample_canonical(
        x, _arr(top_k, B, np.int64), _arr(top_p, B, np.float64), _arr(min_p, B, np.float64),
        _arr(temperature, B, np.float64), _arr(min_keep, B, np.int64), t_last,
        _arr(seed, B, np.uint64), _arr(position, B, np.uint64), **variant)
    assert out.dtype == np.int32 and out.shape == (B,)
    np.testing.assert_array_equal(x, before)  # the input is never written
    return out


def _check(ops, x, t_last, **p):
    """Every code path of the backend gives exactly the reference's tokens."""
    ref = fs.sample(x, temperature_last=t_last, backend="numpy", **p)
    for variant in _variants(ops):
        got = _kernel(ops, x, t_last=t_last, **variant, **p)
        bad = np.flatnonzero(got != ref)
        assert bad.size == 0, (
            f"{variant}: {bad.size} mismatches of {x.shape[0]}; first row {bad[0]}: kernel "
            f"{got[bad[0]]} reference {ref[bad[0]]}; params "
            + str({k: np.asarray(v)[bad[0]] if np.ndim(v) else v for k, v in p.items()})
        )
        assert np.isfinite(x[np.arange(x.shape[0]), got]).all()  # never a masked token


def _default(B, **kw):
    p = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "min_keep": 1,
         "seed": np.arange(B, dtype=np.uint64), "position": np.zeros(B, np.uint64)}
    p.update(kw)
    return p


# ---------------------------------------------------------------- random rows


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
@pytest.mark.parametrize("V", [1, 2, 3, 17, 64, 65, 200, 255, 256, 257, 1000, 4099])
def test_random_rows_small_vocab(ops, V, gen, t_last):
    rng = np.random.default_rng([V, len(gen), t_last])
    B = 240
    x = _perturb(_rows(B, V, V, gen), rng)
    _check(ops, x, t_last, **_params(B, V, rng))


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
def test_random_rows_full_vocab(ops, gen, t_last):
    rng = np.random.default_rng([7, len(gen), t_last])
    B = 24
    x = _perturb(_rows(B, FULL_V, 11, gen), rng)
    _check(ops, x, t_last, **_params(B, FULL_V, rng))


@pytest.mark.parametrize("V", [300, 32000])
def test_many_seeds_one_config(ops, V):
    """Many draws per configuration: the boundary search of every path is exercised."""
    rng = np.random.default_rng(V)
    B = 400 if V < 1000 else 40
    x = _rows(B, V, 5, "llm_like")
    seed = rng.integers(0, 2**63, B, dtype=np.uint64)
    pos = rng.integers(0, 2**40, B, dtype=np.uint64)
    for kw in ({"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8},
               {"min_p": 0.05, "temperature": 1.0},
               {"top_p": 0.95, "temperature": 1.0},
               {"temperature": 0.8},
               {"top_k": 10, "temperature": 1.3},
               {"top_p": 0.5, "min_p": 0.1, "temperature": 0.7, "min_keep": 3}):
        full = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "min_keep": 1}
        full.update(kw)
        for t_last in (True, False):
            _check(ops, x, t_last, seed=seed, position=pos, **full)


# ---------------------------------------------------------------- the workloads


@pytest.mark.parametrize("wid", ["W1", "W2", "W3", "W4", "W5", "W6"])
def test_workload_rows(ops, wid):
    """The docs/spec.md §8 workloads (full V), several positions each."""
    from fastsample import workloads as wl

    case = wl.get(wid).cases[0]
    B = 8 if case.B == 1 else case.B
    x = _rows(B, FULL_V, 0, case.generator)
    kw = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "min_keep": 1}
    params = dict(case.params)
    if params.pop("per_row", False):
        params.update(wl.per_row_w1_params(B))
    kw.update(params)
    rng = np.random.default_rng(1)
    seed = rng.integers(0, 2**63, B, dtype=np.uint64)
    for pos in (0, 1, 12345):
        _check(ops, x, True, seed=seed, position=np.full(B, pos, np.uint64), **kw)


# ---------------------------------------------------------------- edge cases


def test_empty_batch(ops):
    for variant in _variants(ops):
        out = _kernel(ops, np.zeros((0, 10), np.float32), t_last=True, **variant,
                      **_default(0))
        assert out.shape == (0,) and out.dtype == np.int32


@pytest.mark.parametrize("t_last", [True, False])
def test_single_token_vocab(ops, t_last):
    x = np.array([[0.5], [-3.0], [1e30]], np.float32)
    for kw in ({}, {"top_k": 1, "top_p": 0.1, "min_p": 0.9}, {"temperature": 0.0},
               {"temperature": 0.5, "min_keep": 4}):
        _check(ops, x, t_last, **_default(3, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_all_tied(ops, t_last):
    x = np.zeros((6, 1000), np.float32)
    x[3:, ::3] = -np.inf
    for kw in ({"top_k": 5}, {"top_p": 0.3}, {"min_p": 0.5}, {"temperature": 0.0},
               {"top_k": 1, "min_keep": 7}, {"top_p": 0.001, "temperature": 0.1}):
        _check(ops, x, t_last, **_default(6, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_greedy_first_max(ops, t_last):
    x = np.full((4, 300), -2.0, np.float32)
    x[:, [17, 40, 299]] = 3.0
    x[1, 17] = -np.inf
    x[2, :] = -np.inf
    x[2, 299] = 1.0
    for t in (0.0, -0.5):
        p = _default(4, temperature=t, top_k=2, top_p=0.5)
        for variant in _variants(ops):
            got = _kernel(ops, x, t_last=t_last, **variant, **p)
            np.testing.assert_array_equal(got, [17, 40, 299, 17])
        _check(ops, x, t_last, **p)


def test_min_keep_above_survivors(ops):
    rng = np.random.default_rng(3)
    x = llm_like(50, 5000, 2)
    for mk in (2, 7, 64, 4999, 5000, 10**6):
        for kw in ({"top_k": 3}, {"top_p": 0.2}, {"min_p": 0.9}, {"min_p": 5.0},
                   {"top_k": 1, "top_p": 0.0, "min_p": 1.0}):
            p = _default(50, min_keep=mk, **kw)
            p["seed"] = rng.integers(0, 2**63, 50, dtype=np.uint64)
            _check(ops, x, True, **p)
            _check(ops, x, False, **p)


def test_k_at_least_vocab_and_p_edges(ops):
    x = llm_like(30, 777, 4)
    for kw in ({"top_k": 777}, {"top_k": 776}, {"top_k": 10**9}, {"top_p": 0.0},
               {"top_p": 1e-7}, {"top_p": 1.0 - 1e-7}, {"top_p": 2.0}, {"min_p": 1.0},
               {"min_p": 1e-300}):
        _check(ops, x, True, **_default(30, **kw))


def test_round_masses_within_tolerance(ops):
    """Masses that reach p exactly in real arithmetic count as reached (1e-6 rule)."""
    probs = np.array([0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625])
    x = np.tile(np.log(probs).astype(np.float32), (40, 1))
    for p in (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375, 1.0 - 1e-7):
        _check(ops, x, True, **_default(40, top_p=p))


@pytest.mark.parametrize("V", [3000, 20000])
def test_batch_invariance_and_parallel_rows(ops, V):
    """Row b's token does not depend on the batch (parallel rows / threaded row ranges
    vs one row at a time; B * V = 64 * 20000 is above C's threshold for threads)."""
    rng = np.random.default_rng(9)
    B = 64
    x = _perturb(llm_like(B, V, 8), rng)
    p = _params(B, V, rng)
    whole = _kernel(ops, x, t_last=True, **p)
    for b in range(0, B, 7):
        one = _kernel(ops, x[b:b + 1], t_last=True, **{k: v[b:b + 1] for k, v in p.items()})
        assert one[0] == whole[b]
    ref = fs.sample(x[::7], backend="numpy", **{k: v[::7] for k, v in p.items()})
    np.testing.assert_array_equal(whole[::7], ref)


# ---------------------------------------------------------------- the one-row scalar path


@pytest.mark.parametrize("V", [1, 5, 300, 4099])
def test_fs_sample_one_row_scalar_path(fast_backend, V):
    """``fs.sample`` on one row with plain scalar parameters takes the backend's
    ``sample_row`` (no per-row arrays); its token equals the reference's and the
    general path's (the same call with 1-element arrays), for 1-D and (1, V) input,
    both orders, greedy, disabled stages, huge seeds and positions."""
    rng = np.random.default_rng(V)
    assert callable(getattr(registry.load(fast_backend), "sample_row", None))
    for trial in range(60):
        x = _perturb(_rows(1, V, trial, "llm_like" if trial % 2 else "flat"), rng)
        if not np.isfinite(x).any():
            x[0, rng.integers(V)] = 0.0
        kw = dict(temperature=float(rng.choice([0.0, 0.7, 1.0, 1.3])),
                  top_k=int(rng.integers(-1, V + 2)), top_p=float(rng.choice([0.0, 0.5, 0.95, 1.0])),
                  min_p=float(rng.choice([0.0, 0.05, 0.5])), min_keep=int(rng.integers(1, 4)),
                  seed=int(rng.integers(0, 2**63)) * 2 + 1, position=2**64 - 1 - trial,
                  temperature_last=bool(trial % 3))
        want = fs.sample(x, backend="numpy", **kw)
        general = fs.sample(x, backend=fast_backend,
                            **{k: (np.array([v]) if k not in ("temperature_last", "seed",
                                                               "position") else v)
                               for k, v in kw.items()})
        assert fs.sample(x, backend=fast_backend, **kw).tolist() == want.tolist() == general.tolist()
        assert fs.sample(x[0], backend=fast_backend, **kw) == int(want[0])


def test_fs_sample_one_row_scalar_path_invalid(fast_backend):
    x = llm_like(1, 300, 1)
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[0, 7] = bad
        with pytest.raises(ValueError, match="row"):
            fs.sample(y, top_k=40, backend=fast_backend)
        assert fs.sample(y, top_k=40, on_invalid="flag", backend=fast_backend).tolist() == [-1]
        assert fs.sample(y[0], on_invalid="flag", backend=fast_backend) == -1
    with pytest.raises(ValueError, match="row"):
        fs.sample(np.full(300, -np.inf, np.float32), backend=fast_backend)
