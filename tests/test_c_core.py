"""What only the C backend's core kernels (csrc/fastsample.c) do, against the numpy
reference: every instruction-set level this CPU runs (portable C, AVX2, AVX-512,
through ``isa=``), the invalid-row flag, reentrancy, sizes and status codes.

Top-k with the row check folded in (single-pass and two-pass paths) is exact on
every level and flags exactly the invalid rows. Bad sizes are rejected with an
error, and 10 000 random calls (random shapes and parameters, NaN/inf rows) never
crash nor return a token outside [0, V) other than the invalid-row flag. The fused
chain, the draw, argmax, log-probabilities, softmax and top-k against the reference
run on every compiled backend (and every C level) in ``test_fast_canonical.py`` and
``test_fast_core.py``.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastsample as fs
from fastsample import reference
from fastsample.validation import invalid_rows
from fastsample.workloads import llm_like

if not fs.backends()["c"] and not os.environ.get("FASTSAMPLE_REQUIRE_C"):
    pytest.skip(f"C backend unavailable: {fs.backends()['c'].reason}", allow_module_level=True)

from test_fast_canonical import _default, _kernel, _perturb

from fastsample.c_backend import core
from fastsample.c_backend._util import ffi, lib

ISAS = core.ISAS
FULL_V = 128256


def test_isa_levels():
    assert ISAS[0] == 0 and ISAS == tuple(range(len(ISAS)))
    assert core.ISA in ISAS
    assert lib.fs_cpu_isa() == ISAS[-1]


def test_invalid_rows_flagged():
    x = llm_like(6, 700, 1)
    x[1, 5] = np.nan
    x[2, 9] = np.inf
    x[3, :] = -np.inf
    x[4, :] = np.nan
    for isa in ISAS:
        for t_last in (True, False):
            for t in (1.0, 0.7, 0.0):
                got = _kernel(core, x, t_last=t_last, isa=isa,
                              **_default(6, temperature=t, top_k=5, top_p=0.9))
                np.testing.assert_array_equal(got[1:5], core.INVALID)
                assert 0 <= got[0] < 700 and 0 <= got[5] < 700
    with pytest.raises(ValueError, match="1, 2, 3, 4|rows"):
        fs.sample(x, backend="c")
    flagged = fs.sample(x, backend="c", on_invalid="flag", seed=3)
    np.testing.assert_array_equal(flagged[1:5], -1)
    ok = np.array([0, 5])
    np.testing.assert_array_equal(flagged[ok], fs.sample(x[ok], backend="numpy", seed=3))


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


def _topk_checked_exact(x, k, names=None):
    """On every level: no row flagged, and exactly the reference's values (signed
    zeros included) and ids; ``names`` label the rows in a failure."""
    want_v, want_i = reference.topk(x, k)
    for isa in ISAS:
        vals, ids, bad = core.topk_checked(x, k, isa=isa)
        assert vals.shape == (x.shape[0], k) and ids.dtype == np.int32 and bad.dtype == np.bool_
        assert not bad.any(), [n for n, b in zip(names or range(x.shape[0]), bad) if b]
        np.testing.assert_array_equal(ids, want_i)
        np.testing.assert_array_equal(vals, want_v)
        np.testing.assert_array_equal(np.signbit(vals), np.signbit(want_v))  # -0.0 kept
    return want_v, want_i


@pytest.mark.parametrize("V", [FULL_V, STREAM_V])
def test_topk_checked_single_pass_rows(V):
    rng = np.random.default_rng(V)
    rows = _special_rows(V, rng)
    x = np.stack(list(rows.values()))
    for k in (1, 2, 50, 1000, V // 16):  # V // 16: the largest k of the single-pass path
        _topk_checked_exact(x, k, list(rows))


@pytest.mark.parametrize("V", [1, 2, 15, 17, 256, 1000, 4099, 65535, STREAM_V, FULL_V])
def test_topk_checked_matches_reference(V):
    rng = np.random.default_rng(V + 1)
    B = 4 if V >= 65535 else 12
    x = _perturb(llm_like(B, V, 3), rng)
    x[0] = np.round(x[0])  # many ties: lower ids first
    ks = {0, 1, 2, 50, 1000, V // 16, V // 16 + 1, V // 2, V - 1, V}
    for k in sorted(k for k in ks if 0 <= k <= V):
        _topk_checked_exact(x, k)


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
        want_v, want_i = _topk_checked_exact(x, k)
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
    _topk_checked_exact(x, k)
