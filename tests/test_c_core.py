"""The C backend's core kernels (csrc/fastsample.c) against the numpy reference.

``sample_canonical`` must give exactly the reference chain's token on every row
(thousands of random rows: LLM-like and flat logits, ties made by rounding, partly
masked rows, extreme magnitudes, per-row parameters, both temperature orders, greedy,
k >= V, V = 1, B = 0), on every instruction-set level this CPU runs (portable C, AVX2,
AVX-512). Zero mismatches allowed. The draw, argmax, log-probabilities and top-k are
exact too; softmax and log-softmax agree within 1e-5 relative to max(1, |value|) with
identical masks. Bad sizes are rejected with an error, and 10 000 random calls
(random shapes and parameters, NaN/inf rows) never crash nor return a token outside
[0, V) other than the invalid-row flag.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import reference
from fastsample.validation import invalid_rows
from fastsample.workloads import flat, llm_like

core = pytest.importorskip("fastsample.c_backend.core")
from fastsample.c_backend._util import ffi, lib

ISAS = core.ISAS
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


def _kernel(x, top_k, top_p, min_p, temperature, min_keep, seed, position, t_last, isa):
    B = x.shape[0]
    before = x.copy()
    out = core.sample_canonical(
        x, _arr(top_k, B, np.int64), _arr(top_p, B, np.float64), _arr(min_p, B, np.float64),
        _arr(temperature, B, np.float64), _arr(min_keep, B, np.int64), t_last,
        _arr(seed, B, np.uint64), _arr(position, B, np.uint64), isa=isa)
    assert out.dtype == np.int32 and out.shape == (B,)
    np.testing.assert_array_equal(x, before)  # the input is never written
    return out


def _check(x, t_last, **p):
    """Every ISA level gives exactly the reference's tokens."""
    ref = fs.sample(x, temperature_last=t_last, backend="numpy", **p)
    for isa in ISAS:
        got = _kernel(x, t_last=t_last, isa=isa, **p)
        bad = np.flatnonzero(got != ref)
        assert bad.size == 0, (
            f"isa {core.ISA_NAMES[isa]}: {bad.size} mismatches of {x.shape[0]}; first row "
            f"{bad[0]}: kernel {got[bad[0]]} reference {ref[bad[0]]}; params "
            + str({k: np.asarray(v)[bad[0]] if np.ndim(v) else v for k, v in p.items()})
        )
        assert np.isfinite(x[np.arange(x.shape[0]), got]).all()  # never a masked token


def _default(B, **kw):
    p = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "min_keep": 1,
             "seed": np.arange(B, dtype=np.uint64), "position": np.zeros(B, np.uint64)}
    p.update(kw)
    return p


def test_isa_levels():
    assert ISAS[0] == 0 and ISAS == tuple(range(len(ISAS)))
    assert core.ISA in ISAS
    assert lib.fs_cpu_isa() == ISAS[-1]


# ---------------------------------------------------------------- the fused chain


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
@pytest.mark.parametrize("V", [1, 2, 3, 17, 64, 65, 200, 255, 256, 257, 1000, 4099])
def test_random_rows_small_vocab(V, gen, t_last):
    rng = np.random.default_rng([V, len(gen), t_last, 1])
    B = 120
    x = _perturb(_rows(B, V, V, gen), rng)
    _check(x, t_last, **_params(B, V, rng))


@pytest.mark.parametrize("t_last", [True, False])
@pytest.mark.parametrize("gen", ["llm_like", "flat"])
def test_random_rows_full_vocab(gen, t_last):
    rng = np.random.default_rng([7, len(gen), t_last, 1])
    B = 16
    x = _perturb(_rows(B, FULL_V, 11, gen), rng)
    _check(x, t_last, **_params(B, FULL_V, rng))


@pytest.mark.parametrize("V", [300, 32000])
def test_many_seeds_one_config(V):
    """Many draws per configuration: the boundary search of every path is exercised."""
    rng = np.random.default_rng(V)
    B = 300 if V < 1000 else 24
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
            _check(x, t_last, seed=seed, position=pos, **full)


@pytest.mark.parametrize("wid", ["W1", "W2", "W3", "W4", "W5", "W6"])
def test_workload_rows(wid):
    """The SPEC §8 workloads (full V), several positions each."""
    from fastsample import workloads as wl

    case = wl.get(wid).cases[0]
    B = 6 if case.B == 1 else 16
    x = _rows(B, FULL_V, 0, case.generator)
    kw = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "min_keep": 1}
    params = dict(case.params)
    if params.pop("per_row", False):
        params.update(wl.per_row_w1_params(B))
    kw.update(params)
    rng = np.random.default_rng(1)
    seed = rng.integers(0, 2**63, B, dtype=np.uint64)
    for pos in (0, 12345):
        _check(x, True, seed=seed, position=np.full(B, pos, np.uint64), **kw)


def test_empty_batch():
    for isa in ISAS:
        out = _kernel(np.zeros((0, 10), np.float32), t_last=True, isa=isa, **_default(0))
        assert out.shape == (0,) and out.dtype == np.int32


@pytest.mark.parametrize("t_last", [True, False])
def test_single_token_vocab(t_last):
    x = np.array([[0.5], [-3.0], [1e30]], np.float32)
    for kw in ({}, {"top_k": 1, "top_p": 0.1, "min_p": 0.9}, {"temperature": 0.0},
               {"temperature": 0.5, "min_keep": 4}):
        _check(x, t_last, **_default(3, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_all_tied(t_last):
    x = np.zeros((6, 1000), np.float32)
    x[3:, ::3] = -np.inf
    for kw in ({"top_k": 5}, {"top_p": 0.3}, {"min_p": 0.5}, {"temperature": 0.0},
               {"top_k": 1, "min_keep": 7}, {"top_p": 0.001, "temperature": 0.1}):
        _check(x, t_last, **_default(6, **kw))


@pytest.mark.parametrize("t_last", [True, False])
def test_greedy_first_max(t_last):
    x = np.full((4, 300), -2.0, np.float32)
    x[:, [17, 40, 299]] = 3.0
    x[1, 17] = -np.inf
    x[2, :] = -np.inf
    x[2, 299] = 1.0
    for isa in ISAS:
        for t in (0.0, -0.5):
            got = _kernel(x, t_last=t_last, isa=isa,
                          **_default(4, temperature=t, top_k=2, top_p=0.5))
            np.testing.assert_array_equal(got, [17, 40, 299, 17])


def test_min_keep_above_survivors():
    rng = np.random.default_rng(3)
    x = llm_like(40, 5000, 2)
    for mk in (2, 7, 64, 4999, 5000, 10**6):
        for kw in ({"top_k": 3}, {"top_p": 0.2}, {"min_p": 0.9}, {"min_p": 5.0},
                   {"top_k": 1, "top_p": 0.0, "min_p": 1.0}):
            p = _default(40, min_keep=mk, **kw)
            p["seed"] = rng.integers(0, 2**63, 40, dtype=np.uint64)
            _check(x, True, **p)
            _check(x, False, **p)


def test_k_at_least_vocab_and_p_edges():
    x = llm_like(30, 777, 4)
    for kw in ({"top_k": 777}, {"top_k": 776}, {"top_k": 10**9}, {"top_p": 0.0},
               {"top_p": 1e-7}, {"top_p": 1.0 - 1e-7}, {"top_p": 2.0}, {"min_p": 1.0},
               {"min_p": 1e-300}):
        _check(x, True, **_default(30, **kw))


def test_round_masses_within_tolerance():
    """Masses that reach p exactly in real arithmetic count as reached (1e-6 rule)."""
    probs = np.array([0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625])
    x = np.tile(np.log(probs).astype(np.float32), (40, 1))
    for p in (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375, 1.0 - 1e-7):
        _check(x, True, **_default(40, top_p=p))


def test_invalid_rows_flagged():
    x = llm_like(6, 700, 1)
    x[1, 5] = np.nan
    x[2, 9] = np.inf
    x[3, :] = -np.inf
    x[4, :] = np.nan
    for isa in ISAS:
        for t_last in (True, False):
            for t in (1.0, 0.7, 0.0):
                got = _kernel(x, t_last=t_last, isa=isa,
                              **_default(6, temperature=t, top_k=5, top_p=0.9))
                np.testing.assert_array_equal(got[1:5], core.INVALID)
                assert 0 <= got[0] < 700 and 0 <= got[5] < 700
    with pytest.raises(ValueError, match="1, 2, 3, 4|rows"):
        fs.sample(x, backend="c")
    flagged = fs.sample(x, backend="c", on_invalid="flag", seed=3)
    np.testing.assert_array_equal(flagged[1:5], -1)
    ok = np.array([0, 5])
    np.testing.assert_array_equal(flagged[ok], fs.sample(x[ok], backend="numpy", seed=3))


def test_batch_invariance_and_parallel_rows():
    """Row b's token does not depend on the batch (threaded row ranges vs one row)."""
    rng = np.random.default_rng(9)
    B, V = 64, 20000  # B * V above the threshold that splits rows across threads
    x = _perturb(llm_like(B, V, 8), rng)
    p = _params(B, V, rng)
    whole = _kernel(x, t_last=True, isa=None, **p)
    for b in range(0, B, 9):
        one = _kernel(x[b:b + 1], t_last=True, isa=None, **{k: v[b:b + 1] for k, v in p.items()})
        assert one[0] == whole[b]
    ref = fs.sample(x[::9], backend="numpy", **{k: v[::9] for k, v in p.items()})
    np.testing.assert_array_equal(whole[::9], ref)


def test_concurrent_callers():
    """Reentrant: several Python threads sampling at once get their own results."""
    x = llm_like(8, 30000, 3)
    kw = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8, "seed": np.arange(8)}
    want = fs.sample(x, backend="c", **kw)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(fs.sample(x, backend="c", **kw))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 80
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_public_api_uses_c():
    x = llm_like(5, 3000, 2)
    kw = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8, "seed": 7, "position": 3}
    np.testing.assert_array_equal(fs.sample(x, backend="c", **kw),
                                  fs.sample(x, backend="numpy", **kw))
    assert fs.sample(x[0], backend="c", **kw) == fs.sample(x[0], backend="numpy", **kw)
    assert fs.backends()["c"].available


# ---------------------------------------------------------------- draw and friends


def _draw_rows():
    rng = np.random.default_rng(21)
    parts = [_perturb(llm_like(60, 3000, 1), rng), _perturb(flat(20, 3000, 2), rng)]
    x = np.concatenate(parts)
    x[5] = -np.inf  # no finite logit: -1
    x[6, :] = -np.inf
    x[6, 2999] = 0.0
    return x


def test_draw_matches_reference():
    x = _draw_rows()
    B = x.shape[0]
    rng = np.random.default_rng(4)
    for _ in range(3):
        seed = rng.integers(0, 2**63, B, dtype=np.uint64)
        pos = rng.integers(0, 2**40, B, dtype=np.uint64)
        ref = reference.draw(x, seed, pos)
        for isa in ISAS:
            np.testing.assert_array_equal(core.draw(x, seed, pos, isa=isa), ref)
    full = llm_like(4, FULL_V, 3)
    seed = np.arange(4, dtype=np.uint64)
    for isa in ISAS:
        np.testing.assert_array_equal(core.draw(full, seed, seed, isa=isa),
                                      reference.draw(full, seed, seed))


def test_argmax_invalid_rows_token_logprob():
    x = _draw_rows()
    x[7, [3, 10]] = 50.0  # ties: the first wins
    for isa in ISAS:
        np.testing.assert_array_equal(core.argmax(x, isa=isa), reference.argmax(x))
        tokens = reference.argmax(x)
        tokens[::4] = np.arange(0, x.shape[0], 4) % x.shape[1]  # some masked, some not
        tokens[1] = -1
        got = core.token_logprob(x, tokens, isa=isa)
        want = reference.token_logprob(x, tokens)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=1e-12)
    for isa in ISAS:
        np.testing.assert_array_equal(core.greedy(x, isa=isa), reference.greedy(x))
    bad = llm_like(5, 300, 0)
    bad[1, 3] = np.nan
    bad[2, 4] = np.inf
    bad[3] = -np.inf
    for isa in ISAS:
        np.testing.assert_array_equal(core.invalid_rows(bad, isa=isa),
                                      [False, True, True, True, False])
    assert core.invalid_rows(np.zeros((0, 5), np.float32)).shape == (0,)
    assert core.argmax(np.zeros((0, 5), np.float32)).shape == (0,)


# ---------------------------------------------------------------- softmax, top-k


def _close(got, want):
    """Within 1e-5 relative to max(1, |want|), identical masks."""
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    err = np.abs(got[fin].astype(np.float64) - want[fin]) / np.maximum(1.0, np.abs(want[fin]))
    assert err.size == 0 or err.max() <= 1e-5, err.max()


def test_softmax_log_softmax():
    rng = np.random.default_rng(5)
    x = _perturb(np.concatenate([llm_like(30, 5000, 3), flat(10, 5000, 4)]), rng)
    t = rng.choice([1.0, 0.5, 2.0, 1e-3, 100.0], x.shape[0])
    for isa in ISAS:
        s = core.softmax(x, t, isa=isa)
        want = reference.softmax(x, t)
        np.testing.assert_array_equal(s == 0, want == 0)
        assert np.abs(s.astype(np.float64) - want).max() <= 1e-5
        np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-5)
        _close(core.log_softmax(x, isa=isa), reference.log_softmax(x))
        one = core.softmax(x[0], 0.7, isa=isa)
        assert one.shape == (5000,)
        np.testing.assert_allclose(one, reference.softmax(x[0], 0.7), rtol=1e-5, atol=1e-12)
    big = llm_like(3, FULL_V, 9)
    for isa in ISAS:
        _close(core.log_softmax(big, isa=isa), reference.log_softmax(big))
        assert np.abs(core.softmax(big, 0.8, isa=isa) - reference.softmax(big, 0.8)).max() <= 1e-6


def test_softmax_through_api():
    x = llm_like(64, 4096, 1)
    assert np.abs(fs.softmax(x, 0.9, backend="c") - fs.softmax(x, 0.9, backend="numpy")).max() <= 1e-6
    _close(fs.log_softmax(x, backend="c"), fs.log_softmax(x, backend="numpy"))


@pytest.mark.parametrize("V", [1, 5, 256, 1000, 4099, FULL_V])
def test_topk_matches_reference(V):
    rng = np.random.default_rng(V)
    B = 3 if V == FULL_V else 12
    x = _perturb(llm_like(B, V, 2), rng)
    x[0] = np.round(x[0])  # many ties: lower ids first
    for k in sorted({0, 1, 2, 50, 1000, V // 2, V - 1, V} & set(range(V + 1))):
        want_v, want_i = reference.topk(x, k)
        for isa in ISAS:
            got_v, got_i = core.topk(x, k, isa=isa)
            assert got_v.shape == (B, k) and got_i.dtype == np.int32
            np.testing.assert_array_equal(got_i, want_i)
            np.testing.assert_array_equal(got_v, want_v)


def test_topk_signed_zero_and_masks_and_1d():
    x = np.array([0.0, -0.0, 1.0, -np.inf, -0.0, 0.0, -np.inf, 2.0], np.float32)
    for isa in ISAS:
        for k in range(9):
            wv, wi = reference.topk(x, k)
            gv, gi = core.topk(x, k, isa=isa)
            np.testing.assert_array_equal(gi, wi)
            np.testing.assert_array_equal(np.signbit(gv), np.signbit(wv))
    row = llm_like(1, 9000, 0)[0]
    gv, gi = fs.topk(row, 50, backend="c")
    wv, wi = fs.topk(row, 50, backend="numpy")
    np.testing.assert_array_equal(gi, wi)
    np.testing.assert_array_equal(gv, wv)


@settings(max_examples=150, deadline=None)
@given(V=st.integers(1, 600), k=st.integers(0, 600), seed=st.integers(0, 2**32 - 1),
       grid=st.sampled_from([0.0, 1.0, 4.0]), mask=st.floats(0.0, 0.95))
def test_topk_and_draw_property(V, k, seed, grid, mask):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, V)).astype(np.float32) * 3
    if grid:
        x = np.round(x * grid) / np.float32(grid)
    x[rng.random((2, V)) < mask] = -np.inf
    x[:, rng.integers(0, V)] = 1.0
    k = min(k, V)
    wv, wi = reference.topk(x, k)
    s = np.array([seed, seed + 1], np.uint64)
    for isa in ISAS:
        gv, gi = core.topk(x, k, isa=isa)
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gv, wv)
        np.testing.assert_array_equal(core.draw(x, s, s, isa=isa), reference.draw(x, s, s))


# ---------------------------------------------------------------- bad sizes


def test_bad_sizes_rejected():
    x = np.zeros((2, 8), np.float32)
    xp = ffi.from_buffer("float[]", x)
    out = np.zeros(2, np.int32)
    op = ffi.from_buffer("int32_t[]", out)
    u = np.zeros(2, np.uint64)
    up = ffi.from_buffer("uint64_t[]", u)
    need = lib.fs_canonical_ws_bytes(8)
    assert need > 0 and lib.fs_canonical_ws_bytes(0) == 0 and lib.fs_canonical_ws_bytes(-5) == 0
    ws = np.zeros(need, np.uint8)
    wp = ffi.from_buffer("uint8_t[]", ws)
    for isa in (*ISAS, 7, -3):  # out-of-range levels are clamped, never trusted
        assert lib.fs_draw(xp, 2, 8, up, up, op, wp, need, isa) == lib.FS_OK
    assert lib.fs_draw(xp, -1, 8, up, up, op, wp, need, 0) == lib.FS_E_SIZE
    assert lib.fs_draw(xp, 2, 0, up, up, op, wp, need, 0) == lib.FS_E_SIZE
    assert lib.fs_draw(xp, 2, 2**40, up, up, op, wp, need, 0) == lib.FS_E_SIZE
    assert lib.fs_draw(xp, 2**62, 8, up, up, op, wp, need, 0) == lib.FS_E_SIZE
    assert lib.fs_draw(ffi.NULL, 2, 8, up, up, op, wp, need, 0) == lib.FS_E_SIZE
    assert lib.fs_draw(xp, 2, 8, up, up, op, wp, need - 1, 0) == lib.FS_E_WORKSPACE
    assert lib.fs_draw(xp, 2, 8, up, up, op, ffi.NULL, need, 0) == lib.FS_E_WORKSPACE
    vals = np.zeros(16, np.float32)
    ids = np.zeros(16, np.int32)
    tneed = lib.fs_topk_ws_bytes(8)
    tws = np.zeros(tneed, np.uint8)
    args = (ffi.from_buffer("float[]", vals), ffi.from_buffer("int32_t[]", ids),
            ffi.from_buffer("uint8_t[]", tws))
    assert lib.fs_topk(xp, 2, 8, 9, args[0], args[1], args[2], tneed, 0) == lib.FS_E_PARAM
    assert lib.fs_topk(xp, 2, 8, -1, args[0], args[1], args[2], tneed, 0) == lib.FS_E_PARAM
    assert lib.fs_topk(xp, 2, 8, 8, args[0], args[1], args[2], tneed - 1, 0) == lib.FS_E_WORKSPACE
    assert lib.fs_topk(xp, 2, 8, 8, args[0], args[1], args[2], tneed, 0) == lib.FS_OK
    tok = np.array([0, 8], np.int64)
    lp = np.zeros(2)
    assert lib.fs_token_logprob(xp, 2, 8, ffi.from_buffer("int64_t[]", tok),
                                ffi.from_buffer("double[]", lp), 0) == lib.FS_E_TOKEN
    t = np.array([1.0, 0.0])
    sm = np.zeros((2, 8), np.float32)
    assert lib.fs_softmax(xp, 2, 8, ffi.from_buffer("double[]", t),
                          ffi.from_buffer("float[]", sm), 0) == lib.FS_E_PARAM
    with pytest.raises(ValueError, match="token"):
        core.token_logprob(x, np.array([0, 8]))
    with pytest.raises(ValueError, match="k must be"):
        core.topk(x, 9)
    with pytest.raises(ValueError, match="parameter"):  # NaN rows: fewer than k orderable
        core.topk(np.full((1, 3000), np.nan, np.float32), 5)
    with pytest.raises(ValueError, match="parameter"):
        core.sample_canonical(x, *[np.zeros(2, np.int64)], np.full(2, np.nan), np.zeros(2),
                              np.ones(2), np.ones(2, np.int64), True, u, u)
    with pytest.raises(TypeError):
        lib.fs_draw(xp, 2, 8)  # wrong arity never reaches C


# ---------------------------------------------------------------- fuzz


def test_fuzz_10000_calls_never_out_of_range():
    """Random shapes, parameters and NaN/inf rows: a token in [0, V) or the flag."""
    rng = np.random.default_rng(2024)
    flagged = 0
    for i in range(10000):
        B = int(rng.integers(0, 4))
        V = int(rng.choice([1, 2, 3, 7, 31, 255, 256, 257, 1000, 5000]))
        x = (rng.standard_normal((B, V)) * rng.choice([1.0, 1e-3, 30.0, 1e35])).astype(np.float32)
        for b in range(B):
            kind = rng.integers(0, 8)
            if kind == 0:
                x[b, rng.integers(0, V)] = np.nan
            elif kind == 1:
                x[b, rng.integers(0, V)] = rng.choice([np.inf, -np.inf])
            elif kind == 2:
                x[b, rng.random(V) < rng.random()] = -np.inf
            elif kind == 3:
                x[b] = np.round(x[b])
        k = rng.integers(-3, V + 5, B)
        p = rng.choice([0.0, 1e-9, 0.3, 0.95, 1.0, 7.0], B)
        mp = rng.choice([0.0, 1e-300, 0.05, 0.9, 1.0, 3.0], B)
        t = rng.choice([0.0, -2.0, 1e-30, 0.7, 1.0, 1e30, np.inf], B)
        mk = rng.integers(1, V + 3, B)
        seed = rng.integers(0, 2**64, B, dtype=np.uint64)
        pos = rng.integers(0, 2**64, B, dtype=np.uint64)
        isa = int(rng.choice(ISAS))
        out = core.sample_canonical(x, k, p, mp, t, mk, bool(i & 1), seed, pos, isa=isa)
        ok = (out >= 0) & (out < V)
        flag = out == core.INVALID
        assert (ok | flag).all(), (i, out)
        bad_rows = ~np.isfinite(x).any(axis=1) | np.isnan(x).any(axis=1) | np.isposinf(x).any(axis=1)
        np.testing.assert_array_equal(flag, bad_rows)
        flagged += int(flag.sum())
        if B and ok.any():
            assert not np.isneginf(x[np.flatnonzero(ok), out[ok]]).any()
    assert flagged > 0


# ---------------------------------------------------------------- top-k with the row check
# Rows of V >= 65536 with V >= 16 k take the single-pass path of csrc/fs_topk.inc (a
# threshold guessed from a prefix, tightened when the buffer fills, a fallback when the
# guess was too high); shorter rows and larger k the two-pass path. Both on every level.

STREAM_V = 70001  # single-pass path, V % 16 != 0: a scalar tail after the vector loop


def _special_rows(V, rng):
    """Rows that drive each branch of the single-pass path (see the names)."""
    base = llm_like(1, V, int(rng.integers(1 << 30)))[0]
    rows = {
        "llm": base,
        "ascending": np.linspace(-5, 5, V, dtype=np.float32),  # guess low: many tightens
        "descending": np.linspace(5, -5, V, dtype=np.float32),  # guess high: fallback
        "all_equal": np.full(V, 0.5, np.float32),  # ties: exact cut at k
        "few_values": np.round(base * 0.5).astype(np.float32),  # ties around the k-th
        "zeros_signed": np.where(rng.random(V) < 0.5, -0.0, 0.0).astype(np.float32),
        "uniform": rng.random(V).astype(np.float32),
        "half_masked": np.where(rng.random(V) < 0.5, -np.inf, base).astype(np.float32),
        "all_but_one_masked": np.full(V, -np.inf, np.float32),
        "tiny_values": (base * np.float32(1e-38)).astype(np.float32),  # subnormals
        "huge_values": (base * np.float32(1e37)).astype(np.float32),
    }
    rows["all_but_one_masked"][int(rng.integers(V))] = 3.0
    rows["zeros_signed"][rng.integers(0, V, 5)] = 1.0
    return rows


def _assert_topk_exact(x, k, vals, ids):
    want_v, want_i = reference.topk(x, k)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(vals, want_v)
    np.testing.assert_array_equal(np.signbit(vals), np.signbit(want_v))  # -0.0 kept


@pytest.mark.parametrize("V", [FULL_V, STREAM_V])
def test_topk_checked_single_pass_rows(V):
    rng = np.random.default_rng(V)
    rows = _special_rows(V, rng)
    x = np.stack(list(rows.values()))
    for k in (1, 2, 50, 1000, V // 16):  # V // 16: the largest k of the single-pass path
        for isa in ISAS:
            vals, ids, bad = core.topk_checked(x, k, isa=isa)
            assert not bad.any(), [n for n, b in zip(rows, bad) if b]
            _assert_topk_exact(x, k, vals, ids)


@pytest.mark.parametrize("V", [1, 2, 15, 17, 256, 1000, 4099, 65535, STREAM_V, FULL_V])
def test_topk_checked_matches_reference(V):
    rng = np.random.default_rng(V + 1)
    B = 4 if V >= 65535 else 12
    x = _perturb(llm_like(B, V, 3), rng)
    x[0] = np.round(x[0])  # many ties: lower ids first
    ks = {0, 1, 2, 50, 1000, V // 16, V // 16 + 1, V // 2, V - 1, V}
    for k in sorted(k for k in ks if 0 <= k <= V):
        want_v, want_i = reference.topk(x, k)
        for isa in ISAS:
            vals, ids, bad = core.topk_checked(x, k, isa=isa)
            assert vals.shape == (B, k) and ids.dtype == np.int32 and bad.dtype == np.bool_
            assert not bad.any()
            np.testing.assert_array_equal(ids, want_i)
            np.testing.assert_array_equal(vals, want_v)


@pytest.mark.parametrize("V", [300, 4099, STREAM_V, FULL_V, FULL_V + 7])
def test_topk_checked_flags_bad_rows_anywhere(V):
    """NaN / +inf at the start (the guess's prefix), the middle and the end (the scalar
    tail when V % 16 != 0), and all -inf rows: flagged exactly as ``invalid_rows``;
    indices always in [0, V); a row with +inf but no NaN keeps exact results."""
    base = llm_like(1, V, 5)[0]
    positions = sorted({0, 7, 63, 4097, V // 2, V - 17, V - 2, V - 1} & set(range(V)))
    rows = []
    for pos in positions:
        for bad in (np.nan, np.inf):
            r = base.copy()
            r[pos] = bad
            rows.append(r)
    r = base.copy()
    r[np.arange(0, V, 97)] = np.nan  # NaN everywhere
    rows += [r, np.full(V, -np.inf, np.float32), base.copy(), np.full(V, np.inf, np.float32)]
    x = np.stack(rows).astype(np.float32)
    want_bad = invalid_rows(x)
    assert want_bad.sum() == len(rows) - 1
    exact = ~np.isnan(x).any(axis=1)  # +inf / all -inf rows: still exact
    for k in sorted({0, 1, 50, 1000, V // 16, V} & set(range(V + 1))):
        want_v, want_i = reference.topk(x[exact], k)
        for isa in ISAS:
            vals, ids, bad = core.topk_checked(x, k, isa=isa)
            np.testing.assert_array_equal(bad, want_bad)
            assert ((ids >= 0) & (ids < V)).all()
            np.testing.assert_array_equal(ids[exact], want_i)
            np.testing.assert_array_equal(vals[exact], want_v)
            with pytest.raises(ValueError, match="parameter"):  # topk: NaN is an error
                core.topk(x[:1], max(k, 1), isa=isa)  # row 0: NaN at id 0


def test_topk_checked_batches():
    """B = 0; B = 64 (split across threads) with a few invalid rows, through fs.topk."""
    for k in (0, 5):
        vals, ids, bad = core.topk_checked(np.zeros((0, 9), np.float32), k)
        assert vals.shape == (0, k) and ids.shape == (0, k) and bad.shape == (0,)
    x = llm_like(64, FULL_V, 11)
    for k in (50, 1000):
        want_v, want_i = reference.topk(x, k)
        for isa in ISAS:
            vals, ids, bad = core.topk_checked(x, k, isa=isa)
            assert not bad.any()
            np.testing.assert_array_equal(ids, want_i)
            np.testing.assert_array_equal(vals, want_v)
        gv, gi = fs.topk(x, k, backend="c")
        np.testing.assert_array_equal(gi, want_i)
        np.testing.assert_array_equal(gv, want_v)
    x[[3, 40], [5, 70000]] = [np.nan, np.inf]
    x[63] = -np.inf
    vals, ids, bad = core.topk_checked(x, 50)
    np.testing.assert_array_equal(np.flatnonzero(bad), [3, 40, 63])
    for backend in ("c", "numpy"):
        with pytest.raises(ValueError, match=r"rows \[3, 40, 63\]"):
            fs.topk(x, 50, backend=backend)
    first = np.ascontiguousarray(x[:, :1])  # k = 0: the row check alone
    np.testing.assert_array_equal(core.topk_checked(first, 0)[2], invalid_rows(first))


def test_topk_checked_rejects_bad_sizes():
    x = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        core.topk_checked(x, 9)
    with pytest.raises(ValueError, match="k must be"):
        core.topk_checked(x, -1)
    with pytest.raises(ValueError, match="B, V"):
        core.topk_checked(x[0], 1)
    xp = ffi.from_buffer("float[]", x)
    vals = ffi.from_buffer("float[]", np.zeros(16, np.float32))
    ids = ffi.from_buffer("int32_t[]", np.zeros(16, np.int32))
    flags = ffi.from_buffer("uint8_t[]", np.zeros(2, np.uint8))
    need = lib.fs_topk_ws_bytes(8)
    ws = ffi.from_buffer("uint8_t[]", np.zeros(need, np.uint8))
    assert lib.fs_topk_checked(xp, 2, 8, 3, vals, ids, flags, ws, need, 0) == lib.FS_OK
    assert lib.fs_topk_checked(xp, 2, 8, 3, vals, ids, ffi.NULL, ws, need, 0) == lib.FS_E_SIZE
    assert lib.fs_topk_checked(xp, 2, 8, 3, ffi.NULL, ids, flags, ws, need, 0) == lib.FS_E_SIZE
    assert lib.fs_topk_checked(xp, 2, 8, 3, vals, ids, flags, ws, need - 1, 0) == lib.FS_E_WORKSPACE
    assert lib.fs_topk_checked(xp, 2, 8, 9, vals, ids, flags, ws, need, 0) == lib.FS_E_PARAM
    assert lib.fs_topk_checked(xp, -1, 8, 3, vals, ids, flags, ws, need, 0) == lib.FS_E_SIZE
    # k = 0 checks rows only: no outputs, no workspace
    assert lib.fs_topk_checked(xp, 2, 8, 0, ffi.NULL, ffi.NULL, flags, ffi.NULL, 0, 0) == lib.FS_OK
    assert lib.fs_topk_checked(xp, 0, 8, 3, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0, 0) == lib.FS_OK


@settings(max_examples=60, deadline=None)
@given(V=st.sampled_from([65536, 65537, 70000]), k=st.integers(1, 4096),
       seed=st.integers(0, 2**32 - 1), grid=st.sampled_from([0.0, 1.0, 8.0]),
       mask=st.sampled_from([0.0, 0.5, 0.99]), order=st.sampled_from([None, "up", "down"]))
def test_topk_checked_property_long_rows(V, k, seed, grid, mask, order):
    """Long rows with ties, masks and value order correlated with the ids (the guess
    too low or too high), any k: exact on every level."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, V)).astype(np.float32) * 3
    if order:
        x.sort(axis=1)
        if order == "down":
            x = np.ascontiguousarray(x[:, ::-1])
    if grid:
        x = np.round(x * grid) / np.float32(grid)
    x[rng.random((2, V)) < mask] = -np.inf
    x[:, rng.integers(0, V)] = 1.0
    want_v, want_i = reference.topk(x, k)
    for isa in ISAS:
        vals, ids, bad = core.topk_checked(x, k, isa=isa)
        assert not bad.any()
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_array_equal(vals, want_v)
