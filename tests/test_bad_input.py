"""docs/spec.md §7: bad input, row by row of the table.

Every entry point that takes logits (fs.sample, SamplerChain.sample/process,
fs.softmax, fs.topk) and fs.dry_penalty is covered.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastsample as fs





def logits(B=4, V=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, V)).astype(np.float32)


def all_of(*words):
    """A regex that matches when every word occurs (any order)."""
    return "(?s)^" + "".join(f"(?=.*{w})" for w in words)


ROWS_1_3 = r"(?s)\b1\b\D+\b3\b"


# the entry points that validate logits rows; each takes (x, backend)
def _sample(x, backend):
    return fs.sample(x, top_k=3, top_p=0.9, seed=1, backend=backend)


def _chain_sample(x, backend):
    return fs.SamplerChain([fs.TopK(3), fs.Temperature(0.8)], seed=1, backend=backend).sample(x)


def _chain_process(x, backend):
    return fs.SamplerChain([fs.TopK(3), fs.Temperature(0.8)], seed=1, backend=backend).process(x)


def _softmax(x, backend):
    return fs.softmax(x, backend=backend)


def _topk(x, backend):
    return fs.topk(x, 2, backend=backend)


ENTRY = {
    "sample": _sample,
    "chain.sample": _chain_sample,
    "chain.process": _chain_process,
    "softmax": _softmax,
    "topk": _topk,
}
ENTRY_IDS = list(ENTRY)


# ---------------------------------------------------------------- invalid rows


def _bad_rows(kind):
    x = logits(B=5)
    if kind == "nan":
        x[1, 2] = np.nan
        x[3, 0] = np.nan
    elif kind == "posinf":
        x[1, 7] = np.inf
        x[3, 3] = np.inf
    elif kind == "all_masked":
        x[1, :] = -np.inf
        x[3, :] = -np.inf
    elif kind == "mixed":
        x[1, 4] = np.nan
        x[3, :] = -np.inf
    return x


KINDS = ["nan", "posinf", "all_masked", "mixed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRY_IDS)
def test_invalid_rows_raise_naming_rows(backend, entry, kind):
    x = _bad_rows(kind)
    before = x.copy()
    with pytest.raises(ValueError, match=ROWS_1_3):
        ENTRY[entry](x, backend)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRY_IDS)
def test_invalid_single_row_raises(backend, entry, kind):
    x = _bad_rows(kind)[1]
    with pytest.raises(ValueError, match=r"\b0\b|row"):
        ENTRY[entry](x, backend)


def test_neg_inf_partial_row_is_valid(backend):
    x = logits(B=2)
    x[0, :7] = -np.inf  # one finite logit left
    tok = fs.sample(x, seed=3, backend=backend)
    assert tok[0] == 7
    assert 0 <= tok[1] < 8


@pytest.mark.parametrize("kind", KINDS)
def test_flag_sample(backend, kind):
    x = _bad_rows(kind)
    good = [0, 2, 4]
    kw = dict(temperature=0.9, top_k=5, top_p=0.95, min_p=0.02,
              seed=np.array([11, 12, 13, 14, 15]), position=np.array([0, 1, 2, 3, 4]))
    tok = fs.sample(x, on_invalid="flag", backend=backend, **kw)
    assert tok.dtype == np.int32 and tok.shape == (5,)
    assert tok[1] == -1 and tok[3] == -1
    # valid rows get the token they get without the invalid rows around them
    sub = {k: (v[good] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    ref = fs.sample(x[good], backend=backend, **sub)
    np.testing.assert_array_equal(tok[good], ref)
    assert np.all((tok[good] >= 0) & (tok[good] < x.shape[1]))


@pytest.mark.parametrize("kind", KINDS)
def test_flag_chain_sample(backend, kind):
    x = _bad_rows(kind)
    good = [0, 2, 4]
    seeds = np.array([5, 6, 7, 8, 9])
    stages = [fs.TopK(4), fs.TopP(0.9), fs.Temperature(0.7)]
    chain = fs.SamplerChain(stages, seed=seeds, backend=backend, on_invalid="flag")
    tok = chain.sample(x)
    assert tok.dtype == np.int32
    assert tok[1] == -1 and tok[3] == -1
    ref = fs.SamplerChain(stages, seed=seeds[good], backend=backend).sample(x[good])
    np.testing.assert_array_equal(tok[good], ref)


def test_flag_single_row(backend):
    x = np.full(6, -np.inf, dtype=np.float32)
    assert fs.sample(x, on_invalid="flag", backend=backend) == -1
    x[2] = np.nan
    assert fs.sample(x, on_invalid="flag", backend=backend) == -1
    chain = fs.SamplerChain([fs.TopK(2)], backend=backend, on_invalid="flag")
    assert chain.sample(x) == -1


def test_flag_row_emptied_by_ban(backend):
    # a row can become all-masked through a -inf bias: invalid, flagged, no crash
    x = np.zeros((2, 3), dtype=np.float32)
    x[1] = [0.0, -np.inf, -np.inf]
    chain = fs.SamplerChain([fs.LogitBias({0: -math.inf})], backend=backend, on_invalid="flag")
    tok = chain.sample(x)
    assert tok[1] == -1
    assert tok[0] in (1, 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(
        st.lists(st.sampled_from([0.0, 1.0, -2.5, 3.0, -np.inf, np.inf, np.nan, 1e30, -1e30]),
                 min_size=5, max_size=5),
        min_size=1, max_size=6),
    top_k=st.integers(0, 6),
    top_p=st.sampled_from([0.0, 0.5, 1.0]),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_flag_never_out_of_range(backend, data, top_k, top_p, temperature):
    x = np.array(data, dtype=np.float32)
    tok = fs.sample(x, top_k=top_k, top_p=top_p, temperature=temperature, seed=3,
                    on_invalid="flag", backend=backend)
    invalid = np.isnan(x).any(1) | np.isposinf(x).any(1) | np.isneginf(x).all(1)
    np.testing.assert_array_equal(tok == -1, invalid)
    assert np.all(np.isfinite(x[np.arange(len(x))[~invalid], tok[~invalid]]))


# ---------------------------------------------------------------- dtype / ndim / V == 0


BAD_DTYPES = [
    np.zeros((2, 4), dtype=np.int32),
    np.zeros((2, 4), dtype=np.int64),
    np.zeros((2, 4), dtype=np.complex64),
    np.zeros((2, 4), dtype=object),
]


@pytest.mark.parametrize("x", BAD_DTYPES, ids=lambda a: str(a.dtype))
@pytest.mark.parametrize("entry", ENTRY_IDS)
def test_bad_dtype(backend, entry, x):
    with pytest.raises(TypeError, match="float"):
        ENTRY[entry](x, backend)


BAD_SHAPES = {
    "ndim0": np.array(1.0, dtype=np.float32),
    "ndim3": np.zeros((2, 2, 4), dtype=np.float32),
    "V0_1d": np.zeros((0,), dtype=np.float32),
    "V0_2d": np.zeros((3, 0), dtype=np.float32),
}


@pytest.mark.parametrize("shape", list(BAD_SHAPES))
@pytest.mark.parametrize("entry", ENTRY_IDS)
def test_bad_shape(backend, entry, shape):
    with pytest.raises(ValueError, match=r"(?i)ndim|dimension|1-d|2-d|\(V,\)|\(B, ?V\)|\bV\b|vocab|empty"):
        ENTRY[entry](BAD_SHAPES[shape], backend)


# ---------------------------------------------------------------- per-row length


@pytest.mark.parametrize(
    "name, value",
    [
        ("top_k", np.array([1, 2])),
        ("top_p", np.array([0.9, 0.9])),
        ("min_p", np.array([0.1, 0.1, 0.1, 0.1])),
        ("temperature", np.array([0.8, 0.8])),
        ("seed", np.array([1, 2])),
        ("position", np.array([0, 0, 0, 0])),
        ("min_keep", np.array([1, 1])),
    ],
)
def test_sample_per_row_wrong_length(backend, name, value):
    x = logits(B=3)
    with pytest.raises(ValueError, match=all_of(name, rf"\b{len(value)}\b", r"\b3\b")):
        fs.sample(x, backend=backend, **{name: value})


@pytest.mark.parametrize(
    "stage, name",
    [
        (lambda v: fs.TopK(v.astype(np.int64)), "k"),
        (lambda v: fs.TopP(v * 0.9), "p"),
        (lambda v: fs.MinP(v * 0.05), "p"),
        (lambda v: fs.Temperature(v * 0.8), "t"),
        (lambda v: fs.DRY(v * 0.8), "multiplier"),
        (lambda v: fs.Penalties(repeat=v * 1.1), "repeat"),
        (lambda v: fs.TopK(3, min_keep=v.astype(np.int64)), "min_keep"),
    ],
    ids=["TopK.k", "TopP.p", "MinP.p", "Temperature.t", "DRY.multiplier", "Penalties.repeat",
         "TopK.min_keep"],
)
@pytest.mark.parametrize("method", ["sample", "process"])
def test_stage_per_row_wrong_length(backend, stage, name, method):
    x = logits(B=3)
    v = np.ones(2)
    with pytest.raises(ValueError, match=all_of(rf"\b{name}\b", r"\b2\b", r"\b3\b")):
        chain = fs.SamplerChain([stage(v)], backend=backend)
        getattr(chain, method)(x, history=[np.array([0, 1])] * 3)


def test_chain_seed_and_position_wrong_length(backend):
    x = logits(B=3)
    with pytest.raises(ValueError, match=all_of("seed", r"\b2\b", r"\b3\b")):
        fs.SamplerChain([fs.TopK(3)], seed=np.array([1, 2]), backend=backend).sample(x)
    with pytest.raises(ValueError, match=all_of("position", r"\b4\b", r"\b3\b")):
        fs.SamplerChain([fs.TopK(3)], backend=backend).sample(x, position=np.arange(4))


def test_history_wrong_row_count(backend):
    x = logits(B=3)
    with pytest.raises(ValueError, match="history"):
        fs.SamplerChain([fs.Penalties(repeat=1.2)], backend=backend).process(
            x, history=[np.array([0]), np.array([1])])


# ---------------------------------------------------------------- parameters NaN / out of range


@pytest.mark.parametrize(
    "name, value",
    [
        ("temperature", float("nan")),
        ("top_p", -0.1),
        ("top_p", float("nan")),
        ("min_p", -0.01),
        ("min_p", float("nan")),
        ("top_k", 1.5),
        ("top_k", float("nan")),
        ("top_k", np.array([1.0, 2.5, 3.0, 4.0])),
        ("top_p", np.array([0.5, np.nan, 0.5, 0.5])),
        ("temperature", np.array([1.0, 1.0, np.nan, 1.0])),
        ("min_keep", 1.5),
        ("min_keep", -1),
        ("seed", -1),
        ("position", -1),
        ("on_invalid", "ignore"),
    ],
)
def test_sample_bad_parameter(backend, name, value):
    with pytest.raises(ValueError, match=name):
        fs.sample(logits(B=4), backend=backend, **{name: value})


NAN = float("nan")

BAD_STAGES = [
    ("k", lambda: fs.TopK(1.5)),
    ("k", lambda: fs.TopK(NAN)),
    ("p", lambda: fs.TopP(-0.1)),
    ("p", lambda: fs.TopP(NAN)),
    ("p", lambda: fs.MinP(-0.1)),
    ("p", lambda: fs.MinP(NAN)),
    ("p", lambda: fs.Typical(NAN)),
    ("t", lambda: fs.Temperature(NAN)),
    ("multiplier", lambda: fs.DRY(-0.5)),
    ("multiplier", lambda: fs.DRY(NAN)),
    ("base", lambda: fs.DRY(0.8, base=NAN)),
    ("allowed_length", lambda: fs.DRY(0.8, allowed_length=1.5)),
    ("repeat", lambda: fs.Penalties(repeat=NAN)),
    ("frequency", lambda: fs.Penalties(frequency=NAN)),
    ("presence", lambda: fs.Penalties(presence=NAN)),
    ("last_n", lambda: fs.Penalties(repeat=1.1, last_n=2.5)),
    ("n", lambda: fs.TopNSigma(NAN)),
    ("n", lambda: fs.NoRepeatNGram(1.5)),
    ("epsilon", lambda: fs.Epsilon(NAN)),
    ("epsilon", lambda: fs.Eta(NAN)),
    ("a", lambda: fs.TopA(NAN)),
    ("z", lambda: fs.TailFree(NAN)),
    ("probability", lambda: fs.XTC(NAN, 0.1)),
    ("threshold", lambda: fs.XTC(0.5, NAN)),
    ("factor", lambda: fs.Smoothing(NAN)),
    ("range", lambda: fs.DynamicTemperature(1.0, NAN)),
    ("tau", lambda: fs.MirostatV2(tau=NAN)),
    ("eta", lambda: fs.Mirostat(eta=NAN)),
    ("target", lambda: fs.AdaptiveP(NAN)),
    ("min_keep", lambda: fs.TopP(0.9, min_keep=1.5)),
    ("min_keep", lambda: fs.MinP(0.1, min_keep=-1)),
    ("p", lambda: fs.TopP(np.array([0.9, NAN, 0.9, 0.9]))),
    ("multiplier", lambda: fs.DRY(np.array([0.8, -1.0, 0.8, 0.8]))),
]


@pytest.mark.parametrize("name, make", BAD_STAGES, ids=[f"{i}-{n}" for i, (n, _) in enumerate(BAD_STAGES)])
def test_stage_bad_parameter(backend, name, make):
    # the error may come at construction or at first use; either way it names it
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        chain = fs.SamplerChain([make()], backend=backend)
        chain.sample(logits(B=4), history=[np.array([0, 1, 2])] * 4)


def test_softmax_topk_bad_parameters(backend):
    x = logits(B=2, V=8)
    with pytest.raises(ValueError, match="temperature"):
        fs.softmax(x, temperature=float("nan"), backend=backend)
    with pytest.raises(ValueError, match=r"\bk\b"):
        fs.topk(x, 1.5, backend=backend)
    with pytest.raises(ValueError, match=r"\bk\b"):
        fs.topk(x, 9, backend=backend)  # exactly k values: k <= V
    with pytest.raises(ValueError, match=r"\bk\b"):
        fs.topk(x, -1, backend=backend)


def test_dry_penalty_bad_parameters(backend):
    h = np.array([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="multiplier"):
        fs.dry_penalty(h, 4, -1.0, backend=backend)
    with pytest.raises(ValueError, match="multiplier"):
        fs.dry_penalty(h, 4, float("nan"), backend=backend)
    with pytest.raises(ValueError, match="base"):
        fs.dry_penalty(h, 4, 1.0, base=float("nan"), backend=backend)
    with pytest.raises(ValueError, match="allowed_length"):
        fs.dry_penalty(h, 4, 1.0, allowed_length=1.5, backend=backend)
    with pytest.raises(ValueError, match="vocab_size"):
        fs.dry_penalty(h, 0, 1.0, backend=backend)
    with pytest.raises(TypeError):
        fs.dry_penalty(h.astype(np.float64) + 0.5, 4, 1.0, backend=backend)


# ---------------------------------------------------------------- tokens outside [0, V)


@pytest.mark.parametrize("bad", [4, -1, 2**31])
@pytest.mark.parametrize(
    "make",
    [
        lambda: fs.Penalties(repeat=1.2),
        lambda: fs.DRY(0.8),
        lambda: fs.NoRepeatNGram(2),
    ],
    ids=["Penalties", "DRY", "NoRepeatNGram"],
)
@pytest.mark.parametrize("method", ["sample", "process"])
def test_history_token_out_of_range(backend, make, bad, method):
    x = logits(B=2, V=4)
    hist = [np.array([0, 1, 2]), np.array([1, bad, 3], dtype=np.int64)]
    with pytest.raises(ValueError, match="history"):
        getattr(fs.SamplerChain([make()], backend=backend), method)(x, history=hist)


def test_history_2d_out_of_range(backend):
    x = logits(B=2, V=4)
    h = np.array([[0, 1, 2], [1, 9, 0]])
    with pytest.raises(ValueError, match="history"):
        fs.SamplerChain([fs.Penalties(repeat=1.2)], backend=backend).process(
            x, history=h, history_len=np.array([3, 3]))


def test_history_1d_out_of_range(backend):
    x = logits(B=1, V=4)[0]
    with pytest.raises(ValueError, match="history"):
        fs.SamplerChain([fs.Penalties(repeat=1.2)], backend=backend).process(
            x, history=np.array([0, 4]))


@pytest.mark.parametrize(
    "bias",
    [{4: 1.0}, {-1: 1.0}, ([0, 7], [1.0, 1.0]), ([-3], [1.0])],
    ids=["dict4", "dict-1", "ids7", "ids-3"],
)
def test_bias_token_out_of_range(backend, bias):
    with pytest.raises(ValueError, match=r"(?i)bias"):
        fs.SamplerChain([fs.LogitBias(bias)], backend=backend).sample(logits(B=2, V=4))


@pytest.mark.parametrize("breakers", [(4,), (-1,), (0, 100)])
def test_breaker_out_of_range(backend, breakers):
    with pytest.raises(ValueError, match="breaker"):
        fs.SamplerChain([fs.DRY(0.8, breakers=breakers)], backend=backend).sample(
            logits(B=2, V=4), history=[np.array([0, 1, 0])] * 2)
    with pytest.raises(ValueError, match="breaker"):
        fs.dry_penalty(np.array([0, 1, 0, 1]), 4, 1.0, breakers=breakers, backend=backend)


def test_dry_penalty_history_out_of_range(backend):
    with pytest.raises(ValueError, match="history"):
        fs.dry_penalty(np.array([0, 1, 4]), 4, 1.0, backend=backend)
    with pytest.raises(ValueError, match="history"):
        fs.dry_penalty(np.array([0, -1, 2]), 4, 1.0, backend=backend)


# ---------------------------------------------------------------- awkward but valid input


def _variants():
    base = logits(B=3, V=16, seed=42)
    base[0, 3] = -np.inf
    out = {}
    big = np.zeros((3, 32), dtype=np.float32)
    big[:, ::2] = base
    out["strided"] = (big[:, ::2], base)
    ro = base.copy()
    ro.flags.writeable = False
    out["readonly"] = (ro, base)
    out["fortran"] = (np.asfortranarray(base), base)
    h = base.astype(np.float16)
    out["float16"] = (h, h.astype(np.float32))
    d = base.astype(np.float64) + 1e-9
    out["float64"] = (d, d.astype(np.float32))
    rev = base[:, ::-1].copy()[:, ::-1]  # negative strides
    out["negstride"] = (rev, base)
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_awkward_input_works_and_is_unchanged(backend, variant):
    x, as_f32 = VARIANTS[variant]
    snapshot = x.copy()
    kw = dict(temperature=0.8, top_k=8, top_p=0.95, min_p=0.02, seed=np.array([1, 2, 3]),
              position=np.array([4, 5, 6]))
    np.testing.assert_array_equal(fs.sample(x, backend=backend, **kw),
                                  fs.sample(as_f32, backend=backend, **kw))
    stages = [fs.Penalties(repeat=1.3), fs.TopK(6), fs.Temperature(0.7)]
    hist = [np.array([1, 2]), np.array([3]), np.array([0, 5, 5])]
    c1 = fs.SamplerChain(stages, seed=9, backend=backend)
    c2 = fs.SamplerChain(stages, seed=9, backend=backend)
    np.testing.assert_array_equal(c1.process(x, history=hist), c2.process(as_f32, history=hist))
    np.testing.assert_array_equal(c1.sample(x, history=hist), c2.sample(as_f32, history=hist))
    s = fs.softmax(x, backend=backend)
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s, fs.softmax(as_f32, backend=backend))
    v1, i1 = fs.topk(x, 5, backend=backend)
    v2, i2 = fs.topk(as_f32, 5, backend=backend)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(x, snapshot)  # input unchanged
    if variant == "readonly":
        assert not x.flags.writeable


def test_readonly_history_unchanged(backend):
    h = np.array([0, 1, 2, 0, 1])
    h.flags.writeable = False
    snapshot = h.copy()
    ids, pen = fs.dry_penalty(h, 4, 1.0, base=1.1, allowed_length=2, backend=backend)
    np.testing.assert_array_equal(h, snapshot)
    x = np.zeros(4, dtype=np.float32)
    out = fs.SamplerChain([fs.DRY(1.0, base=1.1)], backend=backend).process(x, history=h)
    np.testing.assert_allclose(out, [0, 0, -1, 0])
    np.testing.assert_array_equal(h, snapshot)


def test_history_2d_padding_beyond_len_is_ignored(backend):
    # Spec §3: (B, L) history plus history_len; entries past history_len are padding
    x = np.zeros((2, 5), dtype=np.float32)
    chain = fs.SamplerChain([fs.Penalties(presence=1.0)], backend=backend)
    out = chain.process(x, history=np.array([[0, 1, 2], [3, -1, 99]]), history_len=np.array([3, 1]))
    ref = chain.process(x, history=[np.array([0, 1, 2]), np.array([3])])
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(ref, [[-1, -1, -1, 0, 0], [0, 0, 0, -1, 0]])


def test_accepted_token_out_of_range(backend):
    # a token outside [0, V) that reaches the chain's own history is an error,
    # at accept() or at the next call that reads the history
    x = np.zeros((1, 5), dtype=np.float32)
    chain = fs.SamplerChain([fs.Penalties(presence=1.0)], backend=backend)
    chain.sample(x)
    with pytest.raises(ValueError, match=r"history|outside|token"):
        chain.accept(np.array([7], dtype=np.int32))
        chain.process(x)


def test_chain_one_dim_returns_int(backend):
    x = np.zeros(5, dtype=np.float32)
    chain = fs.SamplerChain([fs.TopK(2)], seed=3, backend=backend)
    t = chain.sample(x)
    assert isinstance(t, int) and t in (0, 1)
    assert isinstance(fs.sample(x, backend=backend), int)
    chain.accept(t)
    np.testing.assert_array_equal(chain.positions, [1])
