"""What only the C backend's truncations (``fs_truncate_canonical``) do: the buffer
protocol of the C entry (a row that does not fit stops the call, which resumes from
it), the batch split across the thread pool with per-thread buffers that grow, the
status codes. Parity with the reference on every level is in test_fast_truncate.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastsample as fs
from fastsample import reference
from fastsample.workloads import flat, llm_like

if not fs.backends()["c"] and not os.environ.get("FASTSAMPLE_REQUIRE_C"):
    pytest.skip(f"C backend unavailable: {fs.backends()['c'].reason}", allow_module_level=True)

from fastsample.c_backend import core
from fastsample.c_backend._util import ffi, lib


def _want(x, k, p, pmin, mk):
    out = reference.min_p(reference.top_p(reference.top_k(x, k, mk), p, mk), pmin, mk)
    return [np.flatnonzero(np.isfinite(r)) for r in out]


def _ptr(a):
    return ffi.from_buffer(a, require_writable=True) if a is not None else ffi.NULL


def _call(x, k, p, pmin, mk, cap, isa):
    """One ``fs_truncate_canonical`` call with room for ``cap`` survivors:
    (status, done, offsets, invalid, ids, vals)."""
    B, V = x.shape
    ids, vals = np.full(cap, -1, np.int32), np.full(cap, np.nan, np.float32)
    offsets, invalid = np.full(B + 1, -1, np.int64), np.zeros(B, np.uint8)
    done = ffi.new("int64_t *", -1)
    ws = np.zeros(lib.fs_canonical_ws_bytes(V), np.uint8)
    rc = lib.fs_truncate_canonical(
        ffi.from_buffer("float[]", x), B, V, ffi.from_buffer("int64_t[]", k),
        ffi.from_buffer("double[]", p), ffi.from_buffer("double[]", pmin),
        ffi.from_buffer("int64_t[]", mk), ffi.from_buffer("int32_t[]", ids),
        ffi.from_buffer("float[]", vals), cap, ffi.from_buffer("int64_t[]", offsets),
        ffi.from_buffer("uint8_t[]", invalid), done, ffi.from_buffer("uint8_t[]", ws), ws.size,
        isa)
    return rc, done[0], offsets, invalid, ids, vals


@pytest.mark.parametrize("isa", core.ISAS)
def test_resume_from_the_row_that_did_not_fit(isa):
    """Rows of 1000, 3, 0 (invalid) and 2000 survivors with room for 1500: the call
    stops before the row that does not fit, reports its count, writes nothing past the
    rows done; calls from that row on give every row's set."""
    V = 2000
    x = flat(4, V, 5)
    x[0, 1000:] = -np.inf
    x[2, 7] = np.nan
    k = np.array([0, 3, 0, 0], np.int64)
    p, pmin, mk = np.ones(4), np.zeros(4), np.ones(4, np.int64)
    want = _want(np.where(np.isnan(x), 0, x), k, p, pmin, mk)
    rc, done, off, inv, ids, vals = _call(x, k, p, pmin, mk, 1500, isa)
    assert rc == lib.FS_OK and done == 3
    assert off[:5].tolist() == [0, 1000, 1003, 1003, 3003]  # off[4] - off[3]: row 3's count
    assert inv.tolist() == [0, 0, 1, 0]
    np.testing.assert_array_equal(ids[:1000], want[0])
    np.testing.assert_array_equal(ids[1000:1003], want[1])
    np.testing.assert_array_equal(vals[1000:1003], x[1, want[1]])
    assert (ids[1003:] == -1).all()  # nothing written for the row that did not fit
    rc, done, off, inv, ids, vals = _call(x[3:], k[3:], p[3:], pmin[3:], mk[3:], 2000, isa)
    assert rc == lib.FS_OK and done == 1 and off[:2].tolist() == [0, 2000]
    np.testing.assert_array_equal(ids, want[3])
    # no room at all (NULL buffers): an invalid row still fits, the next stops it
    rc, done, off, inv, _, _ = _call(x[2:], k[2:], p[2:], pmin[2:], mk[2:], 0, isa)
    assert rc == lib.FS_OK and done == 1 and off[:3].tolist() == [0, 0, 2000]


def test_status_codes():
    x = llm_like(2, 300, 1)
    k, pmin, mk = np.zeros(2, np.int64), np.zeros(2), np.ones(2, np.int64)
    assert _call(x, k, np.array([0.9, np.nan]), pmin, mk, 600, 0)[0] == lib.FS_E_PARAM
    with pytest.raises(ValueError, match="parameter"):
        core.truncate_canonical(x, k, np.array([np.nan, 0.5]), pmin, mk)
    with pytest.raises(ValueError, match="parameter"):
        core.truncate_row(x[0], 0, 0.9, float("nan"), 1)
    xp = ffi.from_buffer("float[]", x)
    count = ffi.new("int64_t *")
    ids = ffi.new("int32_t[]", 300)
    vals = ffi.new("float[]", 300)
    need = lib.fs_canonical_ws_bytes(300)
    ws = ffi.new("uint8_t[]", need)
    args = (ids, vals, 300, count, ws)
    assert lib.fs_truncate_canonical_row(xp, 300, 0, 0.9, 0.0, 1, *args, need, 0) == lib.FS_OK
    assert lib.fs_truncate_canonical_row(xp, 300, 0, 0.9, 0.0, 1, *args, need - 1, 0) == (
        lib.FS_E_WORKSPACE)
    assert lib.fs_truncate_canonical_row(xp, 0, 0, 0.9, 0.0, 1, *args, need, 0) == lib.FS_E_SIZE
    assert lib.fs_truncate_canonical_row(xp, 300, 0, 0.9, 0.0, 1, ids, vals, 300, ffi.NULL, ws,
                                         need, 0) == lib.FS_E_SIZE
    assert lib.fs_truncate_canonical_row(xp, 300, 0, 0.9, 0.0, 1, ids, vals, -1, count, ws, need,
                                         0) == lib.FS_E_SIZE


@pytest.mark.parametrize("isa", core.ISAS)
def test_parallel_batch_with_growing_buffers(isa):
    """A batch split across the thread pool (B * V over the parallel threshold) whose
    sets outgrow each thread's buffers several times (every finite token of most
    rows), mixed with small sets and invalid rows: exactly the reference's sets, in
    row order, and the same as the one-row path."""
    B, V = 24, 60000
    assert B * V >= core._PARALLEL_MIN
    x = np.concatenate([flat(12, V, 2), llm_like(12, V, 2)])
    x[[3, 17], [11, 59999]] = [np.nan, np.inf]
    x[20] = -np.inf
    rng = np.random.default_rng(4)
    k = rng.choice(np.array([0, 0, 40, 5000]), B).astype(np.int64)
    p = rng.choice([1.0, 1.0, 0.95, 0.5], B)
    pmin = rng.choice([0.0, 0.0, 0.05], B)
    mk = rng.choice(np.array([1, 1, 30]), B).astype(np.int64)
    k[:12:2], p[:12:2], pmin[:12:2] = 0, rng.choice([1.0, 0.99], 6), 0.0  # most of the row
    bad = np.isnan(x).any(axis=1) | np.isposinf(x).any(axis=1) | ~np.isfinite(x).any(axis=1)
    want = _want(np.where(bad[:, None], np.float32(0), x), k, p, pmin, mk)
    ids, vals, off, inv = core.truncate_canonical(x, k, p, pmin, mk, isa=isa)
    np.testing.assert_array_equal(inv, bad)
    assert off[-1] > 8 * V  # several times a thread's first buffer (V)
    for b in range(B):
        got = ids[off[b]:off[b + 1]]
        np.testing.assert_array_equal(got, [] if bad[b] else want[b])
        np.testing.assert_array_equal(vals[off[b]:off[b + 1]], x[b, got])
        rid, rval, rbad = core.truncate_row(x[b], int(k[b]), float(p[b]), float(pmin[b]),
                                            int(mk[b]), isa=isa)
        assert rbad is bool(bad[b])
        np.testing.assert_array_equal(rid, got)
        np.testing.assert_array_equal(rval, x[b, got])


def test_row_results_are_copies():
    """``truncate_row`` returns fresh arrays: a later call does not change them."""
    x = llm_like(2, 5000, 6)
    first = core.truncate_row(x[0], 0, 0.9, 0.0, 1)
    keep = (first[0].copy(), first[1].copy())
    core.truncate_row(x[1], 0, 0.99, 0.0, 1)
    np.testing.assert_array_equal(first[0], keep[0])
    np.testing.assert_array_equal(first[1], keep[1])
