"""DRY on the cuda backend (``kernels/cuda/dry.py``, ``stages.dry_kernel``).

The repeat lengths come from the numba CPU kernel and the float64 amounts from the
reference's own expression, and the device rounds ``l - amount`` once, as
``reference.dry`` does: results are compared for EXACT equality (bits), on histories
with real repeats, long runs of one token, breakers, and per-row parameters. DRY may
sit anywhere among LogitBias and Penalties; each placement is checked against the
reference stages run one after another.
"""

import itertools

import numpy as np
import pytest
from cuda_helpers import host
from fastsample.kernels.cuda import dry as D
from fastsample.kernels.cuda import ops
from fastsample.kernels.cuda import stages as S
from numba import cuda

import fastsample as fs
from fastsample import reference as ref
from fastsample import workloads

F32_MAX = np.finfo(np.float32).max


def rows(B, *params):
    """Scalars as the (B,) arrays the reference takes."""
    return [np.full(B, v) for v in params]


def assert_bits(got, want):
    got = host(got)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def case(seed, V=200):
    """Five rows of logits (masked entries, values near the float32 range) and five
    histories: natural text, a 7-token cycle, one token 500 times, a 4-token alphabet,
    one token. Per-row parameters cover the no-ops (multiplier 0, base < 1, last_n 0)."""
    rng = np.random.default_rng(seed)
    x = workloads.llm_like(5, V, seed) * 3.0
    x[1, rng.random(V) < 0.3] = -np.inf
    x[2, ::2] = np.float32(-3e38)
    hist = [workloads.natural_history(3000, V, seed), np.tile(rng.integers(0, V, 7), 20),
            np.full(500, int(rng.integers(V))), rng.integers(0, 4, 200),
            np.array([int(rng.integers(V))])]
    x[1, hist[1]] = np.where(rng.random(hist[1].size) < 0.5, -np.inf, x[1, hist[1]])
    mult = np.array([0.8, 2.5, 1e30, 0.0, 1.0])
    base = np.array([1.75, 1.0, 3.0, 1.75, 0.5])
    allowed = np.array([1, 0, 1, 3, 2])
    last_n = np.array([-1, 64, -1, 50, 0])
    breakers = np.array([int(hist[0][5]), int(hist[3][0]) % 4, V - 1])
    return x.astype(np.float32), hist, (mult, base, allowed, last_n), breakers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dry_equals_the_reference_bit_for_bit(seed, dev):
    x, hist, params, brk = case(seed)
    want = ref.dry(x, hist, *params, brk)
    assert (want != x).any(axis=1)[:3].all()          # the penalties do bite
    assert_bits(ops.dry(x, hist, *params, brk), want)      # host logits
    d = dev(x)
    assert_bits(ops.dry(d, hist, *params, brk), want)      # device logits
    np.testing.assert_array_equal(host(d), x)             # input untouched


def test_float32_amounts_would_round_twice():
    # The design's reason for float64 amounts: fs.dry_penalty's float32 penalties
    # give float32(l - float32(a)), which is not the reference's float32(l - a).
    V = 8
    hist = [np.array([1, 2, 1])]     # 2 follows "1" (L = 1): a = 0.8 * 1.75 ** 0
    x = np.zeros((1, V), np.float32)
    x[0, 2] = 1.0                    # float32(0.2) here, float32(0.2) - 1 ulp there
    want = ref.dry(x, hist, *rows(1, 0.8, 1.75, 1, -1), np.zeros(0, np.int64))
    ids, pen = fs.dry_penalty(hist[0], V, 0.8, 1.75, 1, last_n=-1, backend="numpy")
    twice = x.copy()
    twice[0, ids] = (x[0, ids].astype(np.float64) - pen).astype(np.float32)
    assert not np.array_equal(twice.view(np.uint32), want.view(np.uint32))
    assert_bits(ops.dry(x, hist, 0.8, 1.75, 1, -1, []), want)


def test_long_run_of_one_token_and_natural_window():
    # W8's worst case: one token 20000 times (one edit; its exponent is clamped, so
    # the amount is 2 * FLT_MAX and the logit saturates at -FLT_MAX), and W10a's
    # window of 4096 natural tokens.
    V = 300
    x = workloads.llm_like(2, V, 3)
    hist = [workloads.repeated_history(20000, V, 1), workloads.natural_history(6000, V, 2)]
    params = (np.array([2.0, 0.8]), np.array([1.75, 1.75]), np.array([2, 2]),
              np.array([-1, 4096]))
    brk = np.array([int(hist[1][-7])])
    want = ref.dry(x, hist, *params, brk)
    got = host(ops.dry(x, hist, *params, brk))
    assert_bits(got, want)
    assert got[0, hist[0][0]] == -F32_MAX
    assert (got[1] != x[1]).sum() >= 1


def test_breakers():
    V = 16
    x = workloads.llm_like(3, V, 4)
    run = np.array([5, 6, 7, 5, 6, 7, 5, 6])
    hist = [run, np.append(run, 9), np.array([5, 6, 9, 5, 6, 7, 5, 6])]
    # row 0: 7 follows "5 6" (L = 5); row 1: the last token is a breaker (nothing);
    # row 2: the match stops at the breaker 9 (L = 2)
    want = ref.dry(x, hist, *rows(3, 1.0, 2.0, 2, -1), np.array([9]))
    got = host(ops.dry(x, hist, 1.0, 2.0, 2, -1, [9]))
    assert_bits(got, want)
    changed = got != x
    assert list(changed.sum(axis=1)) == [1, 0, 1] and changed[0, 7] and changed[2, 7]
    assert got[0, 7] == np.float32(np.float64(x[0, 7]) - 8.0)   # 1 * 2 ** (5 - 2)
    assert got[2, 7] == np.float32(np.float64(x[2, 7]) - 1.0)   # 1 * 2 ** (2 - 2)
    no_break = host(ops.dry(x, hist, 1.0, 2.0, 2, -1, []))
    assert no_break[2, 9] != x[2, 9]          # 9 follows "5 6" too: a breaker is spared


def test_edits_and_empty_inputs():
    V = 10
    table = D.breaker_table([], V)
    none = D.dry_edits([np.array([1, 2, 3])], V, [0.8], [1.75], [2], [-1], table)
    assert none is None                                   # no repeat: no kernel launch
    edits = D.dry_edits([np.array([1, 2, 1, 2, 1]), np.array([], np.int64),
                         np.array([4, 4, 4])], V, [0.8] * 3, [1.75] * 3, [2] * 3,
                        [-1] * 3, table)
    index = host(edits.index)
    assert list(index[:4]) == [0, 1, 1, 2] and list(index[4:]) == [2, 4]
    assert edits.longest == 1
    assert host(ops.dry(np.zeros((0, V), np.float32), [], 0.8, 1.75, 2, -1, [])).shape == (0, V)


def test_out_edits_the_logits_in_place(dev):
    # the backend's ``out=logits`` (the chain's edit stages): host and device logits
    x, hist, params, brk = case(4)
    want = ref.dry(x, hist, *params, brk)
    h = x.copy()
    assert ops.dry(h, hist, *params, brk, out=h) is h
    assert_bits(h, want)
    d = dev(x)
    assert ops.dry(d, hist, *params, brk, out=d) is d
    assert_bits(d, want)
    pen = [np.full(5, v) for v in (1.3, 0.2, 0.1, 8)]
    d = dev(x)
    assert ops.penalties(d, hist, *pen, out=d) is d
    assert_bits(d, ref.penalties(x, hist, *pen))
    h = x.copy()
    ops.logit_bias(h, [3, 4], [1.0, -np.inf], out=h)
    assert_bits(h, ref.logit_bias(x, [3, 4], [1.0, -np.inf]))
    with pytest.raises(ValueError, match="out must be None or the logits"):
        ops.dry(x, hist, *params, brk, out=x.copy())


def test_bad_input():
    x = np.zeros((1, 10), np.float32)
    with pytest.raises(ValueError, match="breaker"):
        ops.dry(x, [np.array([1, 2])], 0.8, 1.75, 2, -1, [10])
    with pytest.raises(ValueError, match="history row 0"):
        ops.dry(x, [np.array([1, 12])], 0.8, 1.75, 2, -1, [])
    with pytest.raises(ValueError, match="rows"):
        ops.dry(x, [np.array([1]), np.array([2])], 0.8, 1.75, 2, -1, [])


def test_nan_and_posinf_pass_through():
    x, hist, params, brk = case(5)
    ids = ref.dry(x, hist, *params, brk) != x
    b, t = np.argwhere(ids)[0]
    x[b, t] = np.nan
    got = host(ops.dry(x, hist, *params, brk))
    assert np.isnan(got[b, t])                            # the row stays invalid


# ------------------------------------------------------------------ DRY in the prelude


def _stage_fns(x, hist, seed):
    rng = np.random.default_rng(seed)
    B, V = x.shape
    pen = (rng.uniform(0.5, 2.0, B), rng.uniform(-0.5, 1.0, B), rng.uniform(-1, 1, B),
           np.full(B, -1))
    ids, vals = np.array([7, 3, 0, 7, 40]), np.array([2.5, -np.inf, 1e3, -1.0, 0.125])
    dry = (np.full(B, 0.8), np.full(B, 1.75), np.full(B, 1), np.full(B, -1))
    fns = {"bias": lambda a: ref.logit_bias(a, ids, vals),
           "penalties": lambda a: ref.penalties(a, hist, *pen),
           "dry": lambda a: ref.dry(a, hist, *dry, np.array([9]))}
    return fns, pen, (ids, vals), dry


@pytest.mark.parametrize("names", [p for n in (1, 2, 3)
                                   for p in itertools.permutations(("bias", "penalties", "dry"), n)
                                   if "dry" in p])
def test_dry_anywhere_in_the_prelude(names):
    V = 64
    x = (workloads.llm_like(3, V, 7) * 2).astype(np.float32)
    hist = [np.tile([7, 3, 0, 5], 6), np.tile([40, 12, 7], 5), np.array([1, 2, 1, 2, 1])]
    fns, pen, bias, dry = _stage_fns(x, hist, len(names))
    want = x
    for n in names:
        want = fns[n](want)
    at = names.index("dry")
    order = S.order_of([n for n in names if n != "dry"])
    edits = D.dry_edits(hist, V, *dry, D.breaker_table([9], V))
    counts = S.counts_from_history(hist, V, pen[3])
    d = cuda.to_device(x)
    out = S.prelude(d, cuda.device_array_like(d), counts, *pen[:3],
                    S.bias_tables(*bias, V), order,
                    dry=(edits, S.order_of(names[:at]), S.order_of(names[at + 1:])))
    assert_bits(out, want)


def test_prelude_dry_arguments_are_checked():
    V = 16
    d = cuda.to_device(np.zeros((1, V), np.float32))
    edits = D.dry_edits([np.array([1, 2, 1, 2, 1])], V, [0.8], [1.75], [2], [-1],
                        D.breaker_table([], V))
    tables = S.bias_tables([3], [1.0], V)
    with pytest.raises(ValueError, match="out must not be x"):
        S.prelude(d, d, None, 1.0, 0.0, 0.0, tables, S.ORDER_BIAS,
                  dry=(edits, S.ORDER_BIAS, S.ORDER_NONE))
    with pytest.raises(ValueError, match="neighbours"):
        S.prelude(d, cuda.device_array_like(d), None, 1.0, 0.0, 0.0, None, S.ORDER_NONE,
                  dry=(edits, S.ORDER_PENALTIES, S.ORDER_NONE))
    with pytest.raises(ValueError, match="no prelude order"):
        S.order_of(["penalties", "penalties"])
