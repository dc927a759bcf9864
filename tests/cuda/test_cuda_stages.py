"""LogitBias and Penalties on the cuda backend (``kernels/cuda/stages.py``).

Against ``fastsample.reference``. The kernels do the reference's float64 operations in
the same order (``kernels/shared.py``: ``penalized``, ``saturate_f32``; bias values
added in their given order, as ``np.add.at``), so results are compared for EXACT
equality (bits, signed zeros included), on top of ``same_mask_and_values`` (identical
-inf masks, values within 1e-5 relative to max(1, |l|)). Device counts are compared
with numpy bincounts of the windows, exactly.
"""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values
from fastsample.kernels.cuda import stages as S
from numba import cuda

from fastsample import reference as ref
from fastsample import workloads

F32_MAX = float(np.finfo(np.float32).max)


def assert_exact(got, want):
    got = host(got)
    same_mask_and_values(got, want)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def rows(V=257):
    """llm_like, flat, a partly masked row, a row of ties, a row near the float32 range."""
    x = np.concatenate([workloads.llm_like(2, V, seed=4) * 4.0, workloads.flat(1, V, seed=5),
                        workloads.llm_like(2, V, seed=6)])
    x[2, ::3] = -np.inf
    x[3] = np.round(x[3])            # ties, zeros (and -0.0 below)
    x[3, 1::7] = -0.0
    x[4, :V // 2] = np.float32(3e38) * np.sign(x[4, :V // 2] + 0.5)
    return x.astype(np.float32)


def histories(B, V, seed=0):
    """Varying lengths (0 to 300), small-alphabet rows (counts > 1) and wide ones."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, 5, 40, 300, 17, 2]
    out = []
    for b in range(B):
        hi = 12 if b % 2 else V
        out.append(rng.integers(0, hi, lengths[b % len(lengths)]).astype(np.int64))
    return out


def per_row(B, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, B), rng.uniform(-0.5, 1.0, B), rng.uniform(-1.0, 1.0, B))


def windows_ref(history, last_n):
    return [np.asarray(h, np.int64)[max(len(h) - n, 0):] if n >= 0 else np.asarray(h, np.int64)
            for h, n in zip(history, last_n)]


def bincounts(history, V, last_n):
    return np.stack([np.bincount(w, minlength=V) for w in windows_ref(history, last_n)])


# ---------------------------------------------------------------- counts


@pytest.mark.parametrize("last_n", [-1, 0, 1, 3, 1000])
def test_counts_from_history_are_window_bincounts(last_n):
    V = 50
    hist = histories(5, V, seed=1)
    want = bincounts(hist, V, [last_n] * 5)
    got = host(S.counts_from_history(hist, V, last_n))
    assert got.dtype == np.int32 and got.shape == (5, V)
    np.testing.assert_array_equal(got, want)
    assert want[4].sum() == (300 if last_n in (-1, 1000) else max(last_n, 0))


def test_counts_per_row_last_n_and_edge_shapes():
    V = 30
    hist = histories(4, V, seed=2)
    last_n = np.array([-1, 2, 0, 7])
    np.testing.assert_array_equal(host(S.counts_from_history(hist, V, last_n)),
                                  bincounts(hist, V, last_n))
    assert host(S.counts_from_history([], V, -1)).shape == (0, V)
    np.testing.assert_array_equal(host(S.counts_from_history([[0, 0, 0]], 1, -1)), [[3]])
    with pytest.raises(ValueError, match="outside"):
        S.counts_from_history([[1, 30]], V, -1)


@pytest.mark.parametrize("last_n", [-1, 0, 1, 3, 1000])
def test_update_counts_equals_rebuild_after_accepts(last_n, dev):
    V = 20
    rng = np.random.default_rng(3)
    hist = [rng.integers(0, V, n) for n in (0, 2, 3, 9)]
    counts = S.counts_from_history(hist, V, last_n)
    for step in range(6):
        tokens = rng.integers(0, V, 4)
        tokens[step % 4] = -1                      # a flagged row appends nothing
        add, remove = S.window_deltas(hist, tokens, last_n)
        S.update_counts(counts, dev(add) if step % 2 else add, remove)
        hist = [h if t < 0 else np.append(h, t) for h, t in zip(hist, tokens)]
        np.testing.assert_array_equal(host(counts), bincounts(hist, V, [last_n] * 4))
    if last_n in (1, 3):   # tokens left the window on the way
        assert host(counts).sum() == 4 * last_n


def test_update_counts_ignores_out_of_range_ids():
    V = 6
    hist = [np.array([1, 1, 2]), np.array([5]), np.array([], np.int64)]
    counts = S.counts_from_history(hist, V, -1)
    want = bincounts(hist, V, [-1] * 3)
    S.update_counts(counts, np.array([V, -1, -7]), np.array([-1, 2**40, V + 3]))
    np.testing.assert_array_equal(host(counts), want)
    S.update_counts(counts, np.array([0, V, 5]), np.array([1, 5, -2]))
    want[0, 0] += 1
    want[0, 1] -= 1
    want[1, 5] -= 1
    want[2, 5] += 1
    np.testing.assert_array_equal(host(counts), want)
    S.update_counts(counts, 3, -1)                 # scalars broadcast to every row
    want[:, 3] += 1
    np.testing.assert_array_equal(host(counts), want)


# ---------------------------------------------------------------- penalties


@pytest.mark.parametrize("last_n", [-1, 0, 1, 3, 1000])
def test_penalties_match_reference(last_n, dev):
    x = rows()
    B, V = x.shape
    hist = histories(B, V, seed=last_n + 10)
    hist[4] = np.arange(0, 300, 2) % V              # hits the huge values of row 4
    repeat, frequency, presence = per_row(B, seed=last_n + 20)
    presence[4] = -1e39 if last_n else presence[4]   # saturation at +float32 max
    ln = np.full(B, last_n, np.int64)
    want = ref.penalties(x, hist, repeat, frequency, presence, ln)
    assert_exact(S.penalties(x, hist, repeat, frequency, presence, ln), want)
    got = S.penalties(dev(x), hist, dev(repeat), dev(frequency), presence, last_n)
    assert hasattr(got, "copy_to_host")              # device in, device out
    assert_exact(got, want)
    if last_n != 0:
        assert (host(got) != x).any()


def test_penalties_per_row_last_n_and_neutral_rows():
    x = rows(129)
    B, V = x.shape
    hist = histories(B, V, seed=5)
    repeat, frequency, presence = per_row(B, seed=6)
    repeat[1], frequency[1], presence[1] = 1.0, 0.0, 0.0       # neutral row
    ln = np.array([-1, 64, 0, 1, 3], np.int64)
    assert_exact(S.penalties(x, hist, repeat, frequency, presence, ln),
                 ref.penalties(x, hist, repeat, frequency, presence, ln))
    one = np.ones(B)
    zero = np.zeros(B)
    assert_exact(S.penalties(x, hist, one, zero, zero, -1), x)


def test_penalties_b0_v1_and_bad_history():
    x = np.zeros((0, 7), np.float32)
    assert S.penalties(x, [], 1.2, 0.1, 0.1, -1).shape == (0, 7)
    x = np.array([[2.0], [-3.0], [-np.inf]], np.float32)
    hist = [np.array([0, 0]), np.array([0]), np.array([0])]
    args = (np.full(3, 1.5), np.full(3, 0.25), np.full(3, 0.5), np.full(3, -1))
    assert_exact(S.penalties(x, hist, *args), ref.penalties(x, hist, *args))
    with pytest.raises(ValueError, match="outside"):
        S.penalties(x, [[0], [1], [0]], *args)
    with pytest.raises(ValueError, match="history has 2 rows"):
        S.penalties(x, hist[:2], *args)


# ---------------------------------------------------------------- logit bias


def test_logit_bias_matches_reference(dev):
    x = rows()
    V = x.shape[1]
    # id 7 repeated: 1e16 + 1 - 1e16 depends on the order of the additions
    ids = np.array([7, 3, 7, 0, 3, V - 1, 7, 9, 2, 200])
    vals = np.array([1e16, 0.5, 1.0, -np.inf, -0.25, 2.0, -1e16, 1e39, -1e39, 0.0])
    want = ref.logit_bias(x, ids, vals)
    assert_exact(S.logit_bias(x, ids, vals), want)
    got = S.logit_bias(dev(x), ids, vals)
    assert hasattr(got, "copy_to_host")
    assert_exact(got, want)
    assert np.isneginf(host(got)[:, 0]).all()           # -inf bans
    assert (host(got)[[0, 1, 3], 9] == F32_MAX).all()   # saturated, not +inf


def test_logit_bias_ban_in_a_repeated_id_empty_and_edges():
    x = rows(33)
    ids, vals = [5, 5, 6], [1.0, -np.inf, 2.0]
    assert_exact(S.logit_bias(x, ids, vals), ref.logit_bias(x, np.array(ids), np.array(vals)))
    assert_exact(S.logit_bias(x, [], []), x)
    assert S.logit_bias(np.zeros((0, 4), np.float32), [1], [1.0]).shape == (0, 4)
    one = np.array([[1.5], [-np.inf]], np.float32)
    assert_exact(S.logit_bias(one, [0, 0], [0.25, 0.5]),
                 ref.logit_bias(one, np.array([0, 0]), np.array([0.25, 0.5])))
    with pytest.raises(ValueError, match="outside"):
        S.logit_bias(x, [33], [1.0])
    with pytest.raises(ValueError, match="outside"):
        S.logit_bias(x, [-1], [1.0])
    with pytest.raises(ValueError, match="2 ids but 1 values"):
        S.logit_bias(x, [1, 2], [1.0])


# ---------------------------------------------------------------- prelude


def chain_ref(order, x, hist, pen, ids, vals):
    """The reference stages one after another, as ``prelude``'s ``order`` says."""
    def bias(a):
        return ref.logit_bias(a, ids, vals)

    def penal(a):
        return ref.penalties(a, hist, *pen)

    return [penal, bias, lambda a: penal(bias(a)), lambda a: bias(penal(a))][order](x)


def prelude_case(V=129, seed=0):
    x = rows(V)
    B = x.shape[0]
    hist = histories(B, V, seed=seed)
    hist[0] = np.array([7, 7, 3, 0, 11, 12])     # overlaps the bias ids
    repeat, frequency, presence = per_row(B, seed=seed + 1)
    ln = np.array([-1, 3, 0, 1, 1000], np.int64)
    ids = np.array([7, 3, 12, 7, 0, 40, 5, V - 1])
    vals = np.array([2.5, -0.5, -np.inf, -1.0, 1e3, 0.125, -3.0, 1e39])
    return x, hist, (repeat, frequency, presence, ln), ids, vals


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_prelude_equals_the_reference_stages_in_order(order, dev):
    x, hist, pen, ids, vals = prelude_case(seed=order)
    V = x.shape[1]
    want = chain_ref(order, x, hist, pen, ids, vals)
    counts = S.counts_from_history(hist, V, pen[3])
    tables = S.bias_tables(ids, vals, V)
    d = dev(x)
    out = S.prelude(d, cuda.device_array_like(d), counts, dev(pen[0]), pen[1], pen[2],
                    tables, order)
    assert_exact(out, want)
    np.testing.assert_array_equal(host(d), x)       # input untouched
    S.prelude(d, d, counts, *pen[:3], tables, order)   # in place
    assert_exact(d, want)


def test_prelude_passes_nan_and_posinf_through():
    x, hist, pen, ids, vals = prelude_case(seed=9)
    B, V = x.shape
    bad = np.zeros_like(x, bool)
    bad[0, [7, 3, 12, 0, 50]] = True       # biased, banned, counted tokens
    bad[3, [1, 2, 7]] = True
    x_bad = x.copy()
    x_bad[bad] = np.where(np.arange(bad.sum()) % 2, np.nan, np.inf)
    counts = S.counts_from_history(hist, V, pen[3])
    tables = S.bias_tables(ids, vals, V)
    clean = x.copy()
    clean[bad] = 0.0                        # other entries do not depend on these
    for order in range(4):
        got = host(S.prelude(cuda.to_device(x_bad), cuda.device_array((B, V), np.float32),
                             counts, *pen[:3], tables, order))
        np.testing.assert_array_equal(got[bad].view(np.uint32), x_bad[bad].view(np.uint32))
        want = chain_ref(order, clean, hist, pen, ids, vals)
        np.testing.assert_array_equal(got[~bad].view(np.uint32), want[~bad].view(np.uint32))


def test_prelude_dummies_and_bad_arguments(dev):
    x, hist, pen, ids, vals = prelude_case(seed=3)
    V = x.shape[1]
    d = dev(x)
    tables = S.bias_tables(ids, vals, V)
    out = S.prelude(d, cuda.device_array_like(d), *S.no_penalties(), tables, S.ORDER_BIAS)
    assert_exact(out, ref.logit_bias(x, ids, vals))
    counts = S.counts_from_history(hist, V, pen[3])
    out = S.prelude(d, cuda.device_array_like(d), counts, *pen[:3], S.no_bias(),
                    S.ORDER_PENALTIES)
    assert_exact(out, ref.penalties(x, hist, *pen))
    empty = cuda.device_array((0, V), np.float32)
    assert S.prelude(empty, empty, None, 1.0, 0.0, 0.0, tables, 1).shape == (0, V)
    with pytest.raises(ValueError, match="order"):
        S.prelude(d, d, counts, *pen[:3], tables, 5)
    with pytest.raises(ValueError, match="bias tables"):
        S.prelude(d, d, counts, *pen[:3], None, 2)
    with pytest.raises(ValueError, match="counts"):
        S.prelude(d, d, S.counts_from_history(hist[:2], V, -1), *pen[:3], tables, 0)
