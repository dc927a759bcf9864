"""The fused canonical chain (kernels/cpu/canonical.py) against the numpy reference.

``sample_canonical`` must give exactly the token of
``fs.sample(..., backend="numpy")`` on every row: thousands of random rows (LLM-like
and flat logits, small and full vocabularies, ties made by rounding, partly masked
rows, extreme magnitudes), per-row parameters, both temperature orders, greedy
(t <= 0), t == 1, k >= V, min_keep above the survivors. Zero mismatches allowed.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsample as fs
from fastsample.workloads import flat, llm_like

canonical = pytest.importorskip("fastsample.kernels.cpu.canonical")
sample_canonical = canonical.sample_canonical

FULL_V = 128256


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
    return dict(
        top_k=rng.choice(k_choices, B),
        top_p=rng.choice([1.0, 1.0, 0.0, 0.1, 0.5, 0.9, 0.95, 0.999, 1.5], B),
        min_p=rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 0.9, 1.0, 2.0], B),
        temperature=rng.choice([1.0, 1.0, 0.8, 0.5, 1.7, 0.0, -1.0, 1e-3, 1e3], B),
        min_keep=rng.choice(np.array([1, 1, 1, 2, 3, 10, 100], dtype=np.int64), B),
        seed=rng.integers(0, 2**63, B, dtype=np.uint64),
        position=rng.integers(0, 2**40, B, dtype=np.uint64),
    )


def _kernel(x, top_k, top_p, min_p, temperature, min_keep, seed, position, t_last):
    B = x.shape[0]

    def arr(a, dt):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dt), (B,)))

    before = x.copy()
    out = sample_canonical(x, arr(top_k, np.int64), arr(top_p, np.float64),
                           arr(min_p, np.float64), arr(temperature, np.float64),
                           arr(min_keep, np.int64), t_last, arr(seed, np.uint64),
                           arr(position, np.uint64))
    assert out.dtype == np.int32 and out.shape == (B,)
    np.testing.assert_array_equal(x, before)  # the input is never written
    return out


def _check(x, t_last, **p):
    got = _kernel(x, t_last=t_last, **p)
    ref = fs.sample(x, temperature_last=t_last, backend="numpy", **p)
    bad = np.flatnonzero(got != ref)
    assert bad.size == 0, (
        f"{bad.size} mismatches of {x.shape[0]}; first row {bad[0]}: kernel {got[bad[0]]} "
        f"reference {ref[bad[0]]}; params "
        + str({k: np.asarray(v)[bad[0]] if np.ndim(v) else v for k, v in p.items()})
    )
    finite = np.isfinite(x[np.arange(x.shape[0]), got])
    assert finite.all()  # never a masked token


# ---------------------------------------------------------------- random rows


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
@pytest.mark.parametrize("V", [1, 2, 3, 17, 64, 65, 200, 1000, 4099])
def test_random_rows_small_vocab(V, gen, t_last):
    rng = np.random.default_rng([V, len(gen), t_last])
    B = 120
    x = _perturb(_rows(B, V, V, gen), rng)
    _check(x, t_last, **_params(B, V, rng))


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
def test_random_rows_full_vocab(gen, t_last):
    rng = np.random.default_rng([7, len(gen), t_last])
    B = 24
    x = _perturb(_rows(B, FULL_V, 11, gen), rng)
    _check(x, t_last, **_params(B, FULL_V, rng))


@pytest.mark.parametrize("V", [300, 32000])
def test_many_seeds_one_config(V):
    """Many draws per configuration: the boundary search of every path is exercised."""
    rng = np.random.default_rng(V)
    B = 400 if V < 1000 else 40
    x = _rows(B, V, 5, "llm_like")
    seed = rng.integers(0, 2**63, B, dtype=np.uint64)
    pos = rng.integers(0, 2**40, B, dtype=np.uint64)
    for kw in (dict(top_k=40, top_p=0.95, min_p=0.05, temperature=0.8),
               dict(min_p=0.05, temperature=1.0),
               dict(top_p=0.95, temperature=1.0),
               dict(temperature=0.8),
               dict(top_k=10, temperature=1.3),
               dict(top_p=0.5, min_p=0.1, temperature=0.7, min_keep=3)):
        full = dict(top_k=0, top_p=1.0, min_p=0.0, min_keep=1)
        full.update(kw)
        for t_last in (True, False):
            _check(x, t_last, seed=seed, position=pos, **full)


# ---------------------------------------------------------------- the workloads


@pytest.mark.parametrize("wid", ["W1", "W2", "W3", "W4", "W5", "W6"])
def test_workload_rows(wid):
    """The SPEC §8 workloads (full V), several positions each."""
    from fastsample import workloads as wl

    case = wl.get(wid).cases[0]
    B = 8 if case.B == 1 else case.B
    x = _rows(B, FULL_V, 0, case.generator)
    kw = dict(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0, min_keep=1)
    params = dict(case.params)
    if params.pop("per_row", False):
        params.update(wl.per_row_w1_params(B))
    kw.update(params)
    rng = np.random.default_rng(1)
    seed = rng.integers(0, 2**63, B, dtype=np.uint64)
    for pos in (0, 1, 12345):
        _check(x, True, seed=seed, position=np.full(B, pos, np.uint64), **kw)


# ---------------------------------------------------------------- edge cases


def _default(B, **kw):
    p = dict(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0, min_keep=1,
             seed=np.arange(B, dtype=np.uint64), position=np.zeros(B, np.uint64))
    p.update(kw)
    return p


def test_empty_batch():
    x = np.zeros((0, 10), np.float32)
    out = _kernel(x, t_last=True, **_default(0))
    assert out.shape == (0,) and out.dtype == np.int32


@pytest.mark.parametrize("t_last", [True, False])
def test_single_token_vocab(t_last):
    x = np.array([[0.5], [-3.0], [1e30]], np.float32)
    for kw in (dict(), dict(top_k=1, top_p=0.1, min_p=0.9), dict(temperature=0.0),
               dict(temperature=0.5, min_keep=4)):
        _check(x, t_last, **_default(3, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_all_tied(t_last):
    x = np.zeros((6, 1000), np.float32)
    x[3:, ::3] = -np.inf
    for kw in (dict(top_k=5), dict(top_p=0.3), dict(min_p=0.5), dict(temperature=0.0),
               dict(top_k=1, min_keep=7), dict(top_p=0.001, temperature=0.1)):
        _check(x, t_last, **_default(6, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_greedy_first_max(t_last):
    x = np.full((4, 300), -2.0, np.float32)
    x[:, [17, 40, 299]] = 3.0
    x[1, 17] = -np.inf
    x[2, :] = -np.inf
    x[2, 299] = 1.0
    for t in (0.0, -0.5):
        got = _kernel(x, t_last=t_last, **_default(4, temperature=t, top_k=2, top_p=0.5))
        np.testing.assert_array_equal(got, [17, 40, 299, 17])
        _check(x, t_last, **_default(4, temperature=t, top_k=2, top_p=0.5))


def test_min_keep_above_survivors():
    rng = np.random.default_rng(3)
    x = llm_like(50, 5000, 2)
    for mk in (2, 7, 64, 4999, 5000, 10**6):
        for kw in (dict(top_k=3), dict(top_p=0.2), dict(min_p=0.9), dict(min_p=5.0),
                   dict(top_k=1, top_p=0.0, min_p=1.0)):
            p = _default(50, min_keep=mk, **kw)
            p["seed"] = rng.integers(0, 2**63, 50, dtype=np.uint64)
            _check(x, True, **p)
            _check(x, False, **p)


def test_k_at_least_vocab_and_p_edges():
    x = llm_like(30, 777, 4)
    for kw in (dict(top_k=777), dict(top_k=776), dict(top_k=10**9), dict(top_p=0.0),
               dict(top_p=1e-7), dict(top_p=1.0 - 1e-7), dict(top_p=2.0), dict(min_p=1.0),
               dict(min_p=1e-300)):
        _check(x, True, **_default(30, **kw))


def test_round_masses_within_tolerance():
    """Masses that reach p exactly in real arithmetic count as reached (1e-6 rule)."""
    probs = np.array([0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625])
    x = np.tile(np.log(probs).astype(np.float32), (40, 1))
    for p in (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375, 1.0 - 1e-7):
        _check(x, True, **_default(40, top_p=p, seed=np.arange(40, dtype=np.uint64)))


def test_batch_invariance_and_parallel_rows():
    """Row b's token does not depend on the batch (parallel path vs one row at a time)."""
    rng = np.random.default_rng(9)
    B, V = 64, 3000
    x = _perturb(llm_like(B, V, 8), rng)
    p = _params(B, V, rng)
    whole = _kernel(x, t_last=True, **p)
    for b in range(0, B, 7):
        one = _kernel(x[b:b + 1], t_last=True, **{k: v[b:b + 1] for k, v in p.items()})
        assert one[0] == whole[b]
