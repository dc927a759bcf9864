"""The fast routes of softmax / log_softmax against the reference, on every compiled
CPU backend and (for C) every instruction-set level this CPU runs.

At AVX-512 and temperature 1 the C kernels read each row once for its max and the
sum of its weights (chunks of 2048 with a running max, ``online_max_sum``), reduce the
exp on x itself when the row max lies in [-559, 709] (else on x - max with a TwoSum),
and from 2^19 floats a call write the output with streaming stores (a masked head up
to the first 64-byte boundary, a masked tail). These tests reach
each of those routes and their edges: chunk boundaries, a running max that grows in
every chunk, maxima on both sides of the exp's range, weights that underflow, a max
whose log-probability is near 0, batches large enough to stream, and the invalid-row
flags. Tolerances are those of test_fast_core: probabilities within 1e-6 relative
with exactly the same zeros (atol 3e-45: subnormal outputs), log-probabilities within
1e-6 relative with identical ``-inf`` masks. Results do not depend on the batch or its
thread split (bit for bit).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_fast_core import _AtLevel, _per_level

from fastsample import reference as ref
from fastsample import registry
from fastsample.workloads import DEFAULT_VOCAB, llm_like

pytestmark = _per_level()


@pytest.fixture
def ops(fast_backend, level):
    module = registry.load(fast_backend)
    return module if level is None else _AtLevel(module, level[0])


STREAM_ROWS = (1 << 21) // DEFAULT_VOCAB + 1  # blocks past the streaming threshold


def _close_probs(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=3e-45)


def _close_logs(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-6, atol=1e-12)


def _both(ops, x):
    _close_probs(ops.softmax(x), ref.softmax(x))
    _close_logs(ops.log_softmax(x), ref.log_softmax(x))


@pytest.mark.parametrize("V", [1, 15, 16, 17, 2047, 2048, 2049, 4095, 4097, 6151])
def test_chunk_and_vector_edges(ops, V):
    x = llm_like(5, V, V)
    x[1, -1] = x[1].max() + 3.0  # the max in the scalar tail of the last chunk
    x[2, ::3] = -np.inf
    _both(ops, x)


@pytest.mark.parametrize("shift", [-10000.0, -800.0, -560.0, -559.0, -558.0, -100.0, 50.0,
                                   650.0, 708.0, 709.0, 710.0, 900.0, 1e6])
def test_row_max_on_both_sides_of_the_exp_range(ops, shift):
    """A row max inside [-559, 709] takes the x-reduced exp, outside the TwoSum one."""
    x = (llm_like(3, 9000, 7).astype(np.float64) + shift).astype(np.float32)
    _both(ops, x)


def test_running_max_grows_every_chunk(ops):
    up = np.linspace(-300.0, 40.0, 50000, dtype=np.float32)
    rng = np.random.default_rng(3)
    noisy = (up + rng.normal(0, 2, up.size)).astype(np.float32)
    x = np.stack([up, up[::-1], noisy, noisy[::-1]])
    _both(ops, x)


def test_weights_that_underflow(ops):
    """Rows spread over hundreds of nats: most weights 0, subnormal probabilities."""
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 40.0, (4, 30000)).astype(np.float32)
    x[1] = np.linspace(-160.0, 0.0, 30000, dtype=np.float32)  # across the 150 cut-off
    x[2, :] = -200.0
    x[2, 123] = 0.0  # one token holds all the mass; the rest round to 0 or subnormal
    x[3, ::2] = -np.inf
    _both(ops, x)


def test_log_probability_near_zero(ops):
    """A max far above the rest: its log-probability is a tiny negative number that
    needs the max's weight exact and every other weight kept in the sum."""
    x = llm_like(4, 70000, 5)
    x[:, 17] = np.float32([6.0, 8.0, 10.0, 12.0]) + x.max(axis=1)
    _both(ops, x)
    # -5e-3 .. -1e-5: relative agreement with no absolute floor (much smaller ones sit
    # below the float64 rounding of a 70000-term sum next to the max's 1)
    np.testing.assert_allclose(ops.log_softmax(x)[:, 17], ref.log_softmax(x)[:, 17], rtol=1e-6)


def test_invalid_rows_flagged(ops):
    x = llm_like(5, 5000, 6)
    x[0, 4999] = np.nan
    x[1, 2048] = np.inf
    x[2] = -np.inf
    x[3, 0] = np.nan
    for fn, fill in ((ops.softmax_checked, 0.0), (ops.log_softmax_checked, -np.inf)):
        out, bad = fn(x)
        np.testing.assert_array_equal(bad, [True, True, True, True, False])
        assert np.all(out[2] == fill)
    _close_probs(ops.softmax(x[4:]), ref.softmax(x[4:]))


def test_streaming_batch_and_split(ops):
    """A batch past the streaming threshold; every row as the same row alone."""
    x = llm_like(STREAM_ROWS, DEFAULT_VOCAB, 2)
    x[3, ::5] = -np.inf
    x[4] += np.float32(800.0)  # the TwoSum exp inside a streamed batch
    p, lp = ops.softmax(x), ops.log_softmax(x)
    _close_probs(p, ref.softmax(x))
    _close_logs(lp, ref.log_softmax(x))
    for b in (0, 3, 4, STREAM_ROWS - 1):
        np.testing.assert_array_equal(ops.softmax(x[b]), p[b])
        np.testing.assert_array_equal(ops.log_softmax(x[b]), lp[b])
    np.testing.assert_array_equal(ops.softmax(x[:5]), p[:5])


def test_temperature_rows_beside_t1_rows(ops):
    x = llm_like(4, 20000, 8)
    t = np.array([1.0, 0.7, 1.0, 1.9])
    _close_probs(ops.softmax(x, t), ref.softmax(x, t))
