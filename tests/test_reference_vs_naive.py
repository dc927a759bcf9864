"""The numpy reference (``fastsample.reference``) against the loop-by-loop oracles of
``tests/naive.py`` on random inputs (hypothesis) and on edge cases.

Truncations must agree exactly (same surviving set, surviving logits untouched);
transforms agree within float32 rounding; draws agree exactly (same u from
``fastsample.rng.uniform``).  Every reference call is also checked not to write to its
input and to return float32 of the input's shape.
"""

import importlib.util
import math
import os
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastsample import reference as ref
from fastsample import rng


def _load_naive():
    name = "fastsample_tests_naive"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, pathlib.Path(__file__).with_name("naive.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


naive = _load_naive()

FLT_MAX = float(np.finfo(np.float32).max)
NEG_INF = -np.inf

EXAMPLES = int(os.environ.get("FASTSAMPLE_NAIVE_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ----------------------------------------------------------------------------- strategies


@st.composite
def logit_batches(draw, min_b=1, max_b=4, min_v=1, max_v=64):
    """(B, V) float32 logits, every row with at least one finite entry.

    Values come from a seeded numpy generator (shape, spread, grid and mask density
    chosen by hypothesis); rounding to a grid makes ties on purpose.
    """
    B = draw(st.integers(min_b, max_b))
    V = draw(st.integers(min_v, max_v))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["normal", "llm_like", "few_values", "uniform"]))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0, 8.0]))
    grid = draw(st.sampled_from([0.0, 0.0, 1.0, 0.5, 0.25, 0.1]))
    mask_frac = draw(st.sampled_from([0.0, 0.0, 0.1, 0.4, 0.9]))
    g = np.random.default_rng(seed)
    if kind == "normal":
        x = g.normal(0.0, scale, (B, V))
    elif kind == "llm_like":
        x = np.empty((B, V))
        for b in range(B):
            rank = g.permutation(V)
            x[b] = scale * (-1.5 * np.log1p(rank) + 0.5 * g.standard_normal(V))
    elif kind == "few_values":
        x = g.integers(0, 3, (B, V)) * scale
    else:
        x = g.uniform(-scale, scale, (B, V))
    if grid:
        x = np.round(x / grid) * grid
    x = np.clip(x, -30.0, 30.0).astype(np.float32)
    mask = g.random((B, V)) < mask_frac
    for b in range(B):
        if mask[b].all():
            mask[b, g.integers(0, V)] = False
    x[mask] = NEG_INF
    return x


def per_row_floats(draw, B, lo, hi, extra=()):
    strat = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if extra:
        strat = st.one_of(strat, st.sampled_from(list(extra)))
    return np.array([draw(strat) for _ in range(B)], dtype=np.float64)


def per_row_ints(draw, B, lo, hi, extra=()):
    strat = st.integers(lo, hi)
    if extra:
        strat = st.one_of(strat, st.sampled_from(list(extra)))
    return np.array([draw(strat) for _ in range(B)], dtype=np.int64)


def histories(draw, B, V, max_len=40):
    """B int64 histories over a small alphabet (lots of repeats) of ids < V."""
    out = []
    for _ in range(B):
        alpha = draw(st.integers(1, max(1, min(V, 5))))
        seed = draw(st.integers(0, 2**32 - 1))
        length = draw(st.integers(0, max_len))
        g = np.random.default_rng(seed)
        ids = g.choice(V, size=alpha, replace=False)
        out.append(ids[g.integers(0, alpha, length)].astype(np.int64))
    return out


def seeds_positions(draw, B):
    seed = np.array([draw(st.integers(0, 2**64 - 1)) for _ in range(B)], dtype=np.uint64)
    position = np.array([draw(st.integers(0, 2**64 - 1)) for _ in range(B)], dtype=np.uint64)
    return seed, position


def u_of(seed, position, stream):
    return float(np.asarray(rng.uniform(seed, position, stream)).reshape(()))


# ----------------------------------------------------------------------------- comparisons


def call_ref(fn, x, *args):
    """Call a reference function; check it neither writes its input nor changes dtype/shape."""
    before = x.copy()
    got = fn(x, *args)
    assert np.array_equal(x, before), f"{fn.__name__} modified its input"
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, (fn.__name__, type(got), getattr(got, "dtype", None))
    assert got.shape == x.shape, (fn.__name__, got.shape, x.shape)
    return got


def expected_rows(x, row_fn):
    rows = [np.asarray(row_fn(b), dtype=np.float32) for b in range(x.shape[0])]
    if not rows:
        return np.zeros(x.shape, dtype=np.float32)
    return np.stack(rows)


def describe(x, got, exp, b, **params):
    lines = [f"row {b}: {x[b].tolist()!r}"]
    for key, val in params.items():
        lines.append(f"  {key} = {val!r}")
    lines.append(f"  reference: {got[b].tolist()!r}")
    lines.append(f"  naive:     {exp[b].tolist()!r}")
    return "\n".join(lines)


def assert_same_mask(x, got, exp, params):
    """Same set of -inf per row."""
    for b in range(x.shape[0]):
        gm = np.isneginf(got[b])
        em = np.isneginf(exp[b])
        assert np.array_equal(gm, em), "mask differs\n" + describe(x, got, exp, b, **_pick(params, b))


def assert_exact(x, got, exp, params):
    assert_same_mask(x, got, exp, params)
    for b in range(x.shape[0]):
        assert np.array_equal(got[b], exp[b]), "values differ\n" + describe(x, got, exp, b, **_pick(params, b))


def assert_close(x, got, exp, params, rtol=1e-6, atol=1e-6):
    assert_same_mask(x, got, exp, params)
    assert not np.isnan(got).any() and not np.isposinf(got).any()
    for b in range(x.shape[0]):
        fin = ~np.isneginf(exp[b])
        ok = np.allclose(got[b][fin].astype(np.float64), exp[b][fin].astype(np.float64), rtol=rtol, atol=atol)
        assert ok, "values differ\n" + describe(x, got, exp, b, **_pick(params, b))


def _pick(params, b):
    out = {}
    for key, val in params.items():
        if isinstance(val, np.ndarray) and val.ndim == 1 and val.shape[0] > b and key != "breakers" and key != "ids" and key != "values":
            out[key] = val[b]
        elif isinstance(val, list) and len(val) > b and key == "history":
            out[key] = list(np.asarray(val[b]).tolist())
        else:
            out[key] = val
    return out


# ----------------------------------------------------------------------------- truncations

# name -> (ref call, naive call, per-row parameter draw)
# Each parameter draw returns a dict of per-row (B,) arrays in signature order.


def _p_top_k(draw, B, V):
    return {"k": per_row_ints(draw, B, -1, V + 2, extra=(0, 1, V, V - 1)),
            "min_keep": per_row_ints(draw, B, 1, 6)}


def _p_top_n_sigma(draw, B, V):
    return {"n": per_row_floats(draw, B, -0.5, 4.0, extra=(0.0, 1.0, 2.0)),
            "min_keep": per_row_ints(draw, B, 1, 6)}


def _p_mass(lo, hi, extra):
    def params(draw, B, V):
        return {"p": per_row_floats(draw, B, lo, hi, extra=extra),
                "min_keep": per_row_ints(draw, B, 1, 6)}
    return params


def _p_eps(name, lo, hi, extra):
    def params(draw, B, V):
        return {name: per_row_floats(draw, B, lo, hi, extra=extra),
                "min_keep": per_row_ints(draw, B, 1, 6)}
    return params


def _p_p_less(draw, B, V):
    return {"min_keep": per_row_ints(draw, B, 1, 6)}


def _p_tail_free(draw, B, V):
    return {"z": per_row_floats(draw, B, 0.0, 1.05, extra=(0.0, 0.5, 0.95, 1.0)),
            "min_keep": per_row_ints(draw, B, 1, 6)}


TRUNCATIONS = {
    "top_k": _p_top_k,
    "top_n_sigma": _p_top_n_sigma,
    "typical": _p_mass(0.0, 1.05, (0.0, 0.5, 0.9, 0.95, 1.0)),
    "top_p": _p_mass(0.0, 1.05, (0.0, 0.5, 0.9, 0.95, 1.0)),
    "min_p": _p_mass(0.0, 1.2, (0.0, 0.05, 0.1, 0.5, 1.0)),
    "epsilon": _p_eps("epsilon", 0.0, 0.6, (0.0, 0.001, 0.1, 0.25, 0.5)),
    "eta": _p_eps("epsilon", 0.0, 0.6, (0.0, 0.0009, 0.01, 0.25, 0.5)),
    "top_a": _p_eps("a", 0.0, 1.5, (0.0, 0.2, 0.5, 1.0)),
    "p_less": _p_p_less,
    "tail_free": _p_tail_free,
}


def run_truncation(name, x, params):
    args = list(params.values())
    got = call_ref(getattr(ref, name), x, *args)
    fn = getattr(naive, name)
    exp = expected_rows(x, lambda b: fn(x[b], *(a[b] for a in args)))
    assert_exact(x, got, exp, params)
    return got


@pytest.mark.parametrize("name", sorted(TRUNCATIONS))
@SETTINGS
@given(data=st.data())
def test_truncation_matches_naive(name, data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    params = TRUNCATIONS[name](data.draw, B, V)
    got = run_truncation(name, x, params)
    # a truncation never empties a row and never unmasks
    assert (np.isfinite(got).any(axis=1)).all()
    assert not (np.isfinite(got) & np.isneginf(x)).any()


@SETTINGS
@given(data=st.data())
def test_xtc_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    probability = per_row_floats(data.draw, B, 0.0, 1.0, extra=(0.0, 0.5, 1.0))
    threshold = per_row_floats(data.draw, B, 0.0, 0.6, extra=(0.0, 0.1, 0.5, 0.51))
    min_keep = per_row_ints(data.draw, B, 1, 6)
    seed, position = seeds_positions(data.draw, B)
    got = call_ref(ref.xtc, x, probability, threshold, min_keep, seed, position)
    exp = expected_rows(x, lambda b: naive.xtc(x[b], probability[b], threshold[b], min_keep[b],
                                                 u_of(seed[b], position[b], 1)))
    assert_exact(x, got, exp, dict(probability=probability, threshold=threshold, min_keep=min_keep,
                                   seed=seed, position=position))


def test_xtc_roll_uses_stream_1():
    """With probability = u of stream 1 the roll fails (u < u is false); just above it passes."""
    x = np.array([[3.0, 2.9, 2.8, -5.0]], dtype=np.float32)
    seed = np.array([11], np.uint64)
    position = np.array([5], np.uint64)
    u1 = u_of(seed[0], position[0], 1)
    mk = np.array([1], np.int64)
    thr = np.array([0.1])
    at = call_ref(ref.xtc, x, np.array([u1]), thr, mk, seed, position)
    above = call_ref(ref.xtc, x, np.array([np.nextafter(u1, 2.0)]), thr, mk, seed, position)
    assert np.array_equal(at[0], naive.xtc(x[0], u1, 0.1, 1, u1))
    assert np.array_equal(above[0], naive.xtc(x[0], np.nextafter(u1, 2.0), 0.1, 1, u1))
    assert np.array_equal(at[0], x[0])
    assert not np.array_equal(above[0], x[0])


# ----------------------------------------------------------------------------- logit-space stages


@SETTINGS
@given(data=st.data())
def test_logit_bias_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    n = data.draw(st.integers(0, 10))
    ids = np.array([data.draw(st.integers(0, V - 1)) for _ in range(n)], dtype=np.int64)
    values = np.array([data.draw(st.one_of(st.floats(-5, 5), st.just(-np.inf))) for _ in range(n)],
                      dtype=np.float64)
    got = call_ref(ref.logit_bias, x, ids, values)
    exp = expected_rows(x, lambda b: naive.logit_bias(x[b], ids, values))
    assert_close(x, got, exp, dict(ids=ids, values=values))


@SETTINGS
@given(data=st.data())
def test_penalties_match_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    hist = histories(data.draw, B, V)
    repeat = per_row_floats(data.draw, B, 0.5, 2.0, extra=(1.0, 1.1))
    frequency = per_row_floats(data.draw, B, -1.0, 1.0, extra=(0.0,))
    presence = per_row_floats(data.draw, B, -1.0, 1.0, extra=(0.0,))
    last_n = per_row_ints(data.draw, B, 1, 50, extra=(-1, 0, 64))
    got = call_ref(ref.penalties, x, hist, repeat, frequency, presence, last_n)
    exp = expected_rows(x, lambda b: naive.penalties(x[b], hist[b], repeat[b], frequency[b],
                                                       presence[b], last_n[b]))
    assert_close(x, got, exp, dict(history=hist, repeat=repeat, frequency=frequency,
                                   presence=presence, last_n=last_n))


@SETTINGS
@given(data=st.data())
def test_no_repeat_ngram_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    hist = histories(data.draw, B, V, max_len=30)
    n = per_row_ints(data.draw, B, -1, 5)
    got = call_ref(ref.no_repeat_ngram, x, hist, n)
    exp = expected_rows(x, lambda b: naive.no_repeat_ngram(x[b], hist[b], n[b]))
    assert_exact(x, got, exp, dict(history=hist, n=n))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_no_repeat_ngram_history_of_n_minus_1_tokens(n):
    """A history exactly n-1 long holds no complete n-gram: nothing is banned."""
    x = np.zeros((1, 6), dtype=np.float32)
    hist = [np.arange(n - 1, dtype=np.int64)]
    got = call_ref(ref.no_repeat_ngram, x, hist, np.array([n], np.int64))
    exp = naive.no_repeat_ngram(x[0], hist[0], n)
    assert np.array_equal(got[0], exp)


def _dry_params(draw, B, V):
    hist = histories(draw, B, V, max_len=60)
    multiplier = per_row_floats(draw, B, 0.0, 3.0, extra=(0.0, 0.8))
    base = np.array([draw(st.one_of(st.sampled_from([0.5, 1.0, 1.75, 3.0, 12.0]),
                                    st.floats(1.0, 4.0))) for _ in range(B)], dtype=np.float64)
    allowed = per_row_ints(draw, B, 0, 4)
    last_n = per_row_ints(draw, B, 1, 60, extra=(-1, -1, 0))
    nb = draw(st.integers(0, 2))
    breakers = np.array(sorted(set(draw(st.integers(0, min(V, 5) - 1)) for _ in range(nb))),
                        dtype=np.int64)
    return hist, multiplier, base, allowed, last_n, breakers


@SETTINGS
@given(data=st.data())
def test_dry_matches_quadratic_oracle(data):
    x = data.draw(logit_batches(max_v=12), label="logits")
    B, V = x.shape
    hist, multiplier, base, allowed, last_n, breakers = _dry_params(data.draw, B, V)
    got = call_ref(ref.dry, x, hist, multiplier, base, allowed, last_n, breakers)
    exp = expected_rows(x, lambda b: naive.dry(x[b], hist[b], multiplier[b], base[b], allowed[b],
                                                 last_n[b], breakers))
    assert_close(x, got, exp, dict(history=hist, multiplier=multiplier, base=base,
                                   allowed_length=allowed, last_n=last_n, breakers=breakers))


@SETTINGS
@given(data=st.data())
def test_dry_penalty_matches_quadratic_oracle(data):
    V = data.draw(st.integers(1, 12))
    hist, multiplier, base, allowed, last_n, breakers = _dry_params(data.draw, 1, V)
    args = (hist[0], V, float(multiplier[0]), float(base[0]), int(allowed[0]), breakers, int(last_n[0]))
    ids, pens = ref.dry_penalty(*args)
    exp_ids, exp_pens = naive.dry_penalty(*args)
    msg = f"args={args!r}\n ref: {ids!r} {pens!r}\n naive: {exp_ids!r} {exp_pens!r}"
    assert np.asarray(ids).dtype == np.int32 and np.asarray(pens).dtype == np.float32, msg
    assert np.array_equal(np.asarray(ids), np.array(exp_ids, dtype=np.int32)), msg
    exp32 = np.minimum(np.array(exp_pens, dtype=np.float64), FLT_MAX).astype(np.float32)
    assert np.allclose(np.asarray(pens, dtype=np.float64), exp32.astype(np.float64), rtol=1e-6, atol=0), msg


def test_dry_oracle_agrees_with_hand_example():
    """llama.cpp's worked example 'a b c c b c y a b c': the tokens that followed an
    earlier copy of a suffix are c (after 'a b c', L=3), b (after 'c', L=1), y (after
    'b c', L=2) and a (after the empty match, L=0)."""
    a, b_, c, y = 0, 1, 2, 3
    hist = [a, b_, c, c, b_, c, y, a, b_, c]
    lengths = naive.dry_match_lengths(hist, [], -1)
    assert lengths == {c: 3, b_: 1, y: 2, a: 0}
    x = np.zeros((1, 4), dtype=np.float32)
    got = call_ref(ref.dry, x, [np.array(hist, np.int64)], np.array([1.0]), np.array([2.0]),
                   np.array([1], np.int64), np.array([-1], np.int64), np.zeros(0, np.int64))
    exp = naive.dry(x[0], hist, 1.0, 2.0, 1, -1, [])
    assert np.array_equal(exp, np.array([0.0, -1.0, -4.0, -2.0], np.float32))
    assert np.allclose(got[0], exp, rtol=1e-6, atol=0)


def _dry_expected_single(length, multiplier, base, allowed, logit=0.0):
    pen = naive.dry_penalty_value(multiplier, base, length, allowed)
    return pen, np.float32(max(logit - pen, -FLT_MAX))


@pytest.mark.parametrize("base", [1.75, 1.0001])
def test_dry_long_repeat_is_linear_and_clamped(base):
    """100_000 copies of one token: L = 99_999.  A quadratic implementation would run for
    minutes here (the suite would visibly hang); the value checks the clamp."""
    n, V, tok = 100_000, 8, 3
    hist = np.full(n, tok, dtype=np.int64)
    x = np.array([[0.5, -1.0, 2.0, 0.0, -np.inf, 1.0, 0.25, -3.0]], dtype=np.float32)
    multiplier, allowed = 0.8, 2
    # the oracle itself on a short version confirms L = len - 1
    assert naive.dry_match_lengths(np.full(300, tok), [], -1) == {tok: 299}
    pen, new = _dry_expected_single(n - 1, multiplier, base, allowed, logit=0.0)
    got = call_ref(ref.dry, x, [hist], np.array([multiplier]), np.array([base]),
                   np.array([allowed], np.int64), np.array([-1], np.int64), np.zeros(0, np.int64))
    others = np.arange(V) != tok
    assert np.array_equal(got[0][others], x[0][others])
    assert np.isfinite(got[0, tok])
    assert np.isclose(float(got[0, tok]), float(new), rtol=1e-6, atol=0), (got[0, tok], new)
    ids, pens = ref.dry_penalty(hist, V, multiplier, base, allowed, np.zeros(0, np.int64), -1)
    assert np.array_equal(np.asarray(ids), np.array([tok], np.int32))
    assert np.isclose(float(pens[0]), min(pen, FLT_MAX), rtol=1e-6, atol=0)


def test_dry_long_repeat_with_breaker_in_the_middle():
    """[3]*50_000 + [5] + [3]*49_999 with breaker 5: L(3) = 49_999, 5 never penalised."""
    tok, brk, V = 3, 5, 8
    hist = np.array([tok] * 50_000 + [brk] + [tok] * 49_999, dtype=np.int64)
    small = [tok] * 50 + [brk] + [tok] * 49
    assert naive.dry_match_lengths(small, [brk], -1) == {tok: 49}
    multiplier, base, allowed = 0.8, 1.0001, 2
    pen, new = _dry_expected_single(49_999, multiplier, base, allowed)
    x = np.zeros((1, V), dtype=np.float32)
    got = call_ref(ref.dry, x, [hist], np.array([multiplier]), np.array([base]),
                   np.array([allowed], np.int64), np.array([-1], np.int64), np.array([brk], np.int64))
    assert np.isclose(float(got[0, tok]), float(new), rtol=1e-6, atol=0), (got[0, tok], new)
    assert got[0, brk] == 0.0
    ids, pens = ref.dry_penalty(hist, V, multiplier, base, allowed, np.array([brk], np.int64), -1)
    assert np.array_equal(np.asarray(ids), np.array([tok], np.int32))
    assert np.isclose(float(pens[0]), pen, rtol=1e-6, atol=0)


def test_dry_huge_penalty_saturates_not_masks():
    """multiplier 3 * base**clamp exceeds FLT_MAX: the logit becomes -FLT_MAX, not -inf."""
    hist = [np.full(400, 1, dtype=np.int64)]
    x = np.array([[0.0, 1.0, -np.inf]], dtype=np.float32)
    got = call_ref(ref.dry, x, hist, np.array([3.0]), np.array([1.75]), np.array([2], np.int64),
                   np.array([-1], np.int64), np.zeros(0, np.int64))
    exp = naive.dry(x[0], hist[0], 3.0, 1.75, 2, -1, [])
    assert exp[1] == np.float32(-FLT_MAX)
    assert np.array_equal(got[0], exp)


# ----------------------------------------------------------------------------- transforms


@SETTINGS
@given(data=st.data())
def test_temperature_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    t = per_row_floats(data.draw, B, -0.5, 5.0, extra=(0.0, 1.0, 0.8, 0.05))
    got = call_ref(ref.temperature, x, t)
    exp = expected_rows(x, lambda b: naive.temperature(x[b], t[b]))
    assert_exact(x, got, exp, dict(t=t))


@SETTINGS
@given(data=st.data())
def test_dynamic_temperature_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    t = per_row_floats(data.draw, B, 0.0, 3.0, extra=(0.0, 1.0))
    range_ = per_row_floats(data.draw, B, -0.5, 2.0, extra=(0.0,))
    exponent = per_row_floats(data.draw, B, 0.0, 3.0, extra=(1.0,))
    got = call_ref(ref.dynamic_temperature, x, t, range_, exponent)
    exp = expected_rows(x, lambda b: naive.dynamic_temperature(x[b], t[b], range_[b], exponent[b]))
    assert_close(x, got, exp, dict(t=t, range_=range_, exponent=exponent))


@SETTINGS
@given(data=st.data())
def test_smoothing_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    factor = per_row_floats(data.draw, B, -0.5, 5.0, extra=(0.0, 0.3, 1.0))
    curve = per_row_floats(data.draw, B, 0.0, 5.0, extra=(1.0, 3.0))
    got = call_ref(ref.smoothing, x, factor, curve)
    exp = expected_rows(x, lambda b: naive.smoothing(x[b], factor[b], curve[b]))
    assert_close(x, got, exp, dict(factor=factor, curve=curve))


@SETTINGS
@given(data=st.data())
def test_greedy_and_argmax_match_naive(data):
    x = data.draw(logit_batches(), label="logits")
    got = call_ref(ref.greedy, x)
    exp = expected_rows(x, lambda b: naive.greedy(x[b]))
    assert_exact(x, got, exp, {})
    tok = ref.argmax(x)
    assert tok.dtype == np.int32
    assert tok.tolist() == [naive.argmax(x[b]) for b in range(x.shape[0])]


@SETTINGS
@given(data=st.data())
def test_mirostat_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    mu = per_row_floats(data.draw, B, 0.0, 12.0, extra=(10.0, 0.0))
    m = per_row_ints(data.draw, B, 0, 8, extra=(100,))
    got = call_ref(ref.mirostat, x, mu, m)
    exp = expected_rows(x, lambda b: naive.mirostat(x[b], mu[b], m[b]))
    assert_exact(x, got, exp, dict(mu=mu, m=m))


@SETTINGS
@given(data=st.data())
def test_mirostat_v2_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    mu = per_row_floats(data.draw, B, 0.0, 12.0, extra=(10.0, 0.0))
    got = call_ref(ref.mirostat_v2, x, mu)
    exp = expected_rows(x, lambda b: naive.mirostat_v2(x[b], mu[b]))
    assert_exact(x, got, exp, dict(mu=mu))


@SETTINGS
@given(data=st.data())
def test_adaptive_p_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    target = per_row_floats(data.draw, B, -0.2, 1.0, extra=(-0.01, 0.0, 0.5))
    weight = per_row_floats(data.draw, B, 1.0, 50.0, extra=(10.0,))
    frac = per_row_floats(data.draw, B, 0.0, 1.0)
    ema_sum = frac * weight
    got = call_ref(ref.adaptive_p, x, target, ema_sum, weight)
    exp = expected_rows(x, lambda b: naive.adaptive_p(x[b], target[b], ema_sum[b], weight[b]))
    assert_close(x, got, exp, dict(target=target, ema_sum=ema_sum, ema_weight=weight))


# ----------------------------------------------------------------------------- draw and probabilities


@settings(max_examples=2 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_draw_matches_naive_exactly(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    seed, position = seeds_positions(data.draw, B)
    before = x.copy()
    tok = ref.draw(x, seed, position)
    assert np.array_equal(x, before)
    assert tok.dtype == np.int32 and tok.shape == (B,)
    exp = [naive.draw(x[b], u_of(seed[b], position[b], 0)) for b in range(B)]
    assert tok.tolist() == exp, (x.tolist(), seed, position)
    assert all(np.isfinite(x[b, t]) for b, t in enumerate(exp))


@SETTINGS
@given(data=st.data())
def test_draw_row_independent_of_batch(data):
    """A row's token depends on its own logits, seed and position only."""
    x = data.draw(logit_batches(min_b=2), label="logits")
    B = x.shape[0]
    seed, position = seeds_positions(data.draw, B)
    whole = ref.draw(x, seed, position)
    perm = np.array(data.draw(st.permutations(list(range(B)))))
    shuffled = ref.draw(np.ascontiguousarray(x[perm]), seed[perm], position[perm])
    assert np.array_equal(shuffled, whole[perm])
    for b in range(B):
        assert ref.draw(x[b:b + 1], seed[b:b + 1], position[b:b + 1])[0] == whole[b]


@SETTINGS
@given(data=st.data())
def test_token_logprob_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    tokens = np.array([data.draw(st.integers(-1, V - 1)) for _ in range(B)], dtype=np.int32)
    got = np.asarray(ref.token_logprob(x, tokens))
    assert got.shape == (B,)
    for b in range(B):
        e = naive.token_logprob(x[b], int(tokens[b]))
        if math.isnan(e):
            assert math.isnan(got[b])
        elif e == -math.inf:
            assert got[b] == -math.inf
        else:
            assert math.isclose(got[b], e, rel_tol=1e-12, abs_tol=1e-12), (x[b].tolist(), tokens[b], got[b], e)


@SETTINGS
@given(data=st.data())
def test_softmax_and_log_softmax_match_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    t = per_row_floats(data.draw, B, 0.1, 4.0, extra=(1.0,))
    before = x.copy()
    p = ref.softmax(x, t)
    lp = ref.log_softmax(x)
    assert np.array_equal(x, before)
    assert p.dtype == np.float32 and lp.dtype == np.float32 and p.shape == x.shape == lp.shape
    for b in range(B):
        ep = naive.softmax(x[b], t[b])
        elp = naive.log_softmax(x[b])
        assert np.allclose(p[b], ep, rtol=1e-6, atol=1e-30), (x[b].tolist(), t[b], p[b], ep)
        assert np.array_equal(np.isneginf(lp[b]), np.isneginf(elp))
        fin = np.isfinite(elp)
        assert np.allclose(lp[b][fin], elp[fin], rtol=1e-6, atol=1e-6), (x[b].tolist(), lp[b], elp)
    # 1-D input and a scalar temperature
    p1 = ref.softmax(x[0], float(t[0]))
    assert p1.shape == (V,) and np.allclose(p1, naive.softmax(x[0], float(t[0])), rtol=1e-6, atol=1e-30)
    lp1 = ref.log_softmax(x[0])
    assert lp1.shape == (V,) and np.array_equal(lp1, lp[0])


@SETTINGS
@given(data=st.data())
def test_topk_matches_naive(data):
    x = data.draw(logit_batches(), label="logits")
    B, V = x.shape
    k = data.draw(st.integers(0, V))
    before = x.copy()
    vals, idx = ref.topk(x, k)
    assert np.array_equal(x, before)
    assert vals.dtype == np.float32 and idx.dtype == np.int32
    assert vals.shape == (B, k) and idx.shape == (B, k)
    for b in range(B):
        ev, ei = naive.topk(x[b], k)
        assert np.array_equal(idx[b], ei), (x[b].tolist(), k, idx[b], ei)
        assert np.array_equal(vals[b], ev)
    v1, i1 = ref.topk(x[0], k)
    assert v1.shape == (k,) and np.array_equal(i1, idx[0]) and np.array_equal(v1, vals[0])


# ----------------------------------------------------------------------------- edge cases

# every row-wise logits -> logits stage, with fixed parameters, as (ref call, naive call)
def _stage_calls(B, min_keep=1, k=2):
    mk = np.full(B, min_keep, np.int64)

    def f(v):
        return np.full(B, v, np.float64)

    def i(v):
        return np.full(B, v, np.int64)

    hist = [np.array([0, 0, 0, 0], np.int64) for _ in range(B)]
    nobrk = np.zeros(0, np.int64)
    seed, pos = np.full(B, 3, np.uint64), np.full(B, 9, np.uint64)
    return {
        "top_k": (lambda x: ref.top_k(x, i(k), mk), lambda r: naive.top_k(r, k, min_keep)),
        "top_n_sigma": (lambda x: ref.top_n_sigma(x, f(0.5), mk), lambda r: naive.top_n_sigma(r, 0.5, min_keep)),
        "typical": (lambda x: ref.typical(x, f(0.3), mk), lambda r: naive.typical(r, 0.3, min_keep)),
        "top_p": (lambda x: ref.top_p(x, f(0.3), mk), lambda r: naive.top_p(r, 0.3, min_keep)),
        "min_p": (lambda x: ref.min_p(x, f(0.5), mk), lambda r: naive.min_p(r, 0.5, min_keep)),
        "xtc": (lambda x: ref.xtc(x, f(1.0), f(0.01), mk, seed, pos),
                lambda r: naive.xtc(r, 1.0, 0.01, min_keep, u_of(3, 9, 1))),
        "epsilon": (lambda x: ref.epsilon(x, f(0.2), mk), lambda r: naive.epsilon(r, 0.2, min_keep)),
        "eta": (lambda x: ref.eta(x, f(0.2), mk), lambda r: naive.eta(r, 0.2, min_keep)),
        "top_a": (lambda x: ref.top_a(x, f(0.9), mk), lambda r: naive.top_a(r, 0.9, min_keep)),
        "p_less": (lambda x: ref.p_less(x, mk), lambda r: naive.p_less(r, min_keep)),
        "tail_free": (lambda x: ref.tail_free(x, f(0.3), mk), lambda r: naive.tail_free(r, 0.3, min_keep)),
        "temperature": (lambda x: ref.temperature(x, f(0.7)), lambda r: naive.temperature(r, 0.7)),
        "temperature0": (lambda x: ref.temperature(x, f(0.0)), lambda r: naive.temperature(r, 0.0)),
        "dynamic_temperature": (lambda x: ref.dynamic_temperature(x, f(1.0), f(0.5), f(1.0)),
                                lambda r: naive.dynamic_temperature(r, 1.0, 0.5, 1.0)),
        "smoothing": (lambda x: ref.smoothing(x, f(0.5), f(2.0)), lambda r: naive.smoothing(r, 0.5, 2.0)),
        "greedy": (lambda x: ref.greedy(x), lambda r: naive.greedy(r)),
        "mirostat": (lambda x: ref.mirostat(x, f(3.0), i(100)), lambda r: naive.mirostat(r, 3.0, 100)),
        "mirostat_v2": (lambda x: ref.mirostat_v2(x, f(0.5)), lambda r: naive.mirostat_v2(r, 0.5)),
        "adaptive_p": (lambda x: ref.adaptive_p(x, f(0.3), f(3.0), f(10.0)),
                       lambda r: naive.adaptive_p(r, 0.3, 3.0, 10.0)),
        "penalties": (lambda x: ref.penalties(x, hist, f(1.3), f(0.1), f(0.2), i(-1)),
                      lambda r: naive.penalties(r, hist[0], 1.3, 0.1, 0.2, -1)),
        "dry": (lambda x: ref.dry(x, hist, f(0.8), f(1.75), i(2), i(-1), nobrk),
                lambda r: naive.dry(r, hist[0], 0.8, 1.75, 2, -1, [])),
        "no_repeat_ngram": (lambda x: ref.no_repeat_ngram(x, hist, i(2)),
                            lambda r: naive.no_repeat_ngram(r, hist[0], 2)),
        "logit_bias": (lambda x: ref.logit_bias(x, np.array([0], np.int64), np.array([1.5])),
                       lambda r: naive.logit_bias(r, [0], [1.5])),
    }


STAGE_NAMES = sorted(_stage_calls(1))
TRUNCATING = {"top_k", "top_n_sigma", "typical", "top_p", "min_p", "xtc", "epsilon", "eta",
              "top_a", "p_less", "tail_free", "mirostat", "mirostat_v2"}


def _check_edge(name, x, min_keep=1, k=2):
    B = x.shape[0]
    rcall, ncall = _stage_calls(B, min_keep=min_keep, k=k)[name]
    before = x.copy()
    got = rcall(x)
    assert np.array_equal(x, before), name
    assert got.dtype == np.float32 and got.shape == x.shape, (name, got.dtype, got.shape)
    exp = expected_rows(x, lambda b: ncall(x[b]))
    assert_close(x, got, exp, {"stage": name}, rtol=1e-6, atol=1e-6)
    return got


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_edge_v1(name):
    x = np.array([[0.5], [-2.0], [0.0]], dtype=np.float32)
    got = _check_edge(name, x)
    if name in TRUNCATING:
        assert np.array_equal(got, x)


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_edge_b0(name):
    x = np.zeros((0, 5), dtype=np.float32)
    got = _check_edge(name, x)
    assert got.shape == (0, 5)


def test_edge_b0_draw_and_helpers():
    x = np.zeros((0, 5), dtype=np.float32)
    e = np.zeros(0, np.uint64)
    tok = ref.draw(x, e, e)
    assert tok.dtype == np.int32 and tok.shape == (0,)
    assert ref.argmax(x).shape == (0,)
    assert ref.softmax(x).shape == (0, 5) and ref.log_softmax(x).shape == (0, 5)
    v, i = ref.topk(x, 3)
    assert v.shape == (0, 3) and i.shape == (0, 3)


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_edge_all_but_one_masked(name):
    x = np.full((3, 7), -np.inf, dtype=np.float32)
    x[0, 0] = 1.0
    x[1, 6] = -4.0
    x[2, 3] = 0.0
    got = _check_edge(name, x)
    if name in TRUNCATING:
        assert np.array_equal(got, x)
    # every stage but the n-gram ban (history 0 0 0 0 bans token 0) keeps the lone token
    want = [0, 1, 1] if name == "no_repeat_ngram" else [1, 1, 1]
    assert np.isfinite(got).sum(axis=1).tolist() == want


@pytest.mark.parametrize("name", sorted(TRUNCATING - {"mirostat", "mirostat_v2"}))
@pytest.mark.parametrize("min_keep", [3, 5, 50])
def test_edge_min_keep_exceeds_survivors(name, min_keep):
    x = np.array([[9.0, 1.0, 0.5, 0.5, 0.0, -np.inf, -1.0],
                  [0.0, 8.0, -np.inf, 2.0, 2.0, 2.0, 1.0]], dtype=np.float32)
    got = _check_edge(name, x, min_keep=min_keep, k=1)
    finite_in = np.isfinite(x).sum(axis=1)
    kept = np.isfinite(got).sum(axis=1)
    assert (kept >= np.minimum(min_keep, finite_in)).all(), (name, kept)


@pytest.mark.parametrize("k", [7, 8, 100])
def test_edge_top_k_at_least_v_is_noop(k):
    x = np.array([[3.0, -1.0, 0.0, 0.0, -np.inf, 2.0, 1.0]], dtype=np.float32)
    got = call_ref(ref.top_k, x, np.array([k], np.int64), np.array([1], np.int64))
    assert np.array_equal(got, x)
    assert np.array_equal(got[0], naive.top_k(x[0], k, 1))


def test_edge_top_k_at_unmasked_count_is_noop():
    x = np.array([[3.0, -np.inf, 0.0, -np.inf, 2.0]], dtype=np.float32)
    got = call_ref(ref.top_k, x, np.array([3], np.int64), np.array([1], np.int64))
    assert np.array_equal(got, x)


def test_edge_top_k_ties_kept():
    x = np.array([[1.0, 2.0, 2.0, 2.0, 0.0]], dtype=np.float32)
    got = call_ref(ref.top_k, x, np.array([2], np.int64), np.array([1], np.int64))
    assert np.array_equal(got[0], naive.top_k(x[0], 2, 1))
    assert np.isfinite(got[0]).tolist() == [False, True, True, True, False]


def test_edge_top_p_round_inputs():
    """docs/spec.md §4: exact answers for round inputs given as float32 logits: p = [0.5, 0.25,
    0.25] with top_p 0.5 keeps the first; with 0.75 the first two plus the tie -> all three."""
    x = np.array([[math.log(0.5), math.log(0.25), math.log(0.25), -math.inf]], dtype=np.float32)
    for p, want in [(0.5, [True, False, False, False]), (0.75, [True, True, True, False])]:
        got = call_ref(ref.top_p, x, np.array([p]), np.array([1], np.int64))
        assert np.isfinite(got[0]).tolist() == want, p
        assert np.array_equal(got[0], naive.top_p(x[0], p, 1))


def test_edge_min_keep_zero_never_empties():
    """Spec §4: a truncation never empties a row, even with min_keep 0."""
    x = np.array([[0.0, 0.0, 0.0, 0.0]], dtype=np.float32)  # p = 0.25 each
    zero = np.array([0], np.int64)
    got = call_ref(ref.epsilon, x, np.array([0.5]), zero)
    assert np.array_equal(got[0], naive.epsilon(x[0], 0.5, 0))
    assert np.isfinite(got).any()
