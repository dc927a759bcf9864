"""XTC after the canonical truncations on the cuda backend (``kernels/cuda/xtc.py``).

Both paths (one block per row, vocabulary split across blocks) must give identical
tokens and bit-identical processed logits, and tokens and masks equal to the numpy
reference chain ``[TopK, TopP, MinP, XTC, Temperature]`` (or Temperature first).
Rows are a few ``CHUNK`` long so the split path has several chunks; every case
checks, from the host's own stream-1 uniforms, that XTC acted on some rows and not
on others.
"""

import numpy as np
import pytest
from cuda_helpers import host, same_mask_and_values
from fastsample.kernels.cuda import ops
from fastsample.kernels.cuda.target import CHUNK

import fastsample as fs
from fastsample import rng, workloads

V = 2 * CHUNK + CHUNK // 2
NEG = -np.inf


def rows(seed, B=4):
    """LLM-like rows (one scaled flat so many tokens pass the threshold), one rounded
    to steps of 1/2 (ties at the cut), one with a masked chunk."""
    x = workloads.llm_like(B, V, seed)
    x[1] = np.round(x[1] * 2) / 2
    x[2, CHUNK:2 * CHUNK] = NEG
    x[3] = workloads.flat(1, V, seed)[0] * 0.5
    return x.astype(np.float32)


def run_both(x, k, p, mp, t, mk, t_last, xp, xt, seeds, pos):
    """(tokens, processed) of the split path, after checking the one-block path gives
    the same bits."""
    got = []
    for split in (True, False):
        tok = ops.sample_canonical(x, k, p, mp, t, mk, t_last, seeds, pos, split=split,
                                   xtc=(xp, xt))
        out = ops.process_canonical(x, k, p, mp, t, mk, t_last, split=split, xtc=(xp, xt),
                                    seed=seeds, position=pos)
        got.append((host(tok), host(out)))
    (tok_s, out_s), (tok_o, out_o) = got
    np.testing.assert_array_equal(tok_s, tok_o)
    np.testing.assert_array_equal(out_s.view(np.uint32), out_o.view(np.uint32))
    return tok_s, out_s


def reference(x, k, p, mp, t, mk, t_last, xp, xt, seeds, pos):
    cut = [fs.TopK(k, min_keep=mk), fs.TopP(p, min_keep=mk), fs.MinP(mp, min_keep=mk),
           fs.XTC(xp, xt, min_keep=mk)]
    stages = cut + [fs.Temperature(t)] if t_last else [fs.Temperature(t)] + cut
    chain = fs.SamplerChain(stages, seed=seeds, backend="numpy", on_invalid="flag")
    return chain.sample(x, position=pos), chain.process(x, position=pos)


def check(x, k=0, p=1.0, mp=0.0, t=1.0, mk=1, t_last=True, xp=1.0, xt=0.1, seeds=None,
          pos=None):
    """Both paths == each other == the reference; returns (tokens, processed, acted):
    ``acted``: the rows whose processed logits XTC changed."""
    B = x.shape[0]
    seeds = np.arange(1, B + 1, dtype=np.uint64) if seeds is None else seeds
    pos = np.arange(B, dtype=np.uint64) * np.uint64(3) if pos is None else pos
    tok, out = run_both(x, k, p, mp, t, mk, t_last, xp, xt, seeds, pos)
    want_tok, want_out = reference(x, k, p, mp, t, mk, t_last, xp, xt, seeds, pos)
    np.testing.assert_array_equal(tok, want_tok)
    same_mask_and_values(out, want_out)
    _, plain = reference(x, k, p, mp, t, mk, t_last, 0.0, xt, seeds, pos)
    acted = (np.isneginf(plain) != np.isneginf(want_out)).any(axis=1)
    return tok, out, acted


def rolls(seeds, pos, xp):
    return rng.uniform(seeds, pos, rng.STREAM_XTC) < xp


def test_w10b_order_per_row_parameters():
    # Penalties aside, W10b's tail: MinP -> XTC -> Temperature, per-row parameters;
    # probability 0.5 acts on some rows (per the host's uniform) and not on others
    x = np.concatenate([rows(0), rows(1)])
    seeds = np.arange(8, dtype=np.uint64) + np.uint64(40)
    pos = np.arange(8, dtype=np.uint64)
    xp = np.full(8, 0.5)
    xt = np.array([0.1, 0.05, 0.02, 0.2, 0.1, 0.01, 0.3, 0.1])
    roll = rolls(seeds, pos, xp)
    assert roll.any() and not roll.all()
    _, _, acted = check(x, mp=np.array([0.02, 0.05] * 4), t=np.array([1.0, 0.7] * 4),
                        xp=xp, xt=xt, seeds=seeds, pos=pos)
    assert acted.any() and not acted[~roll].any()


@pytest.mark.parametrize("cfg", [
    {"k": 40, "p": 0.95, "mp": 0.05, "t": 0.8},                 # W10a's truncations
    {"k": 8, "p": 0.9, "mk": 3, "xt": 0.05},                    # a min_keep floor
    {"p": 0.99, "t": 1.3, "t_last": False, "xt": 0.02},         # HF: Temperature first
    {"xt": -1.0},                                               # every survivor above
    {"mp": 0.1, "xt": 0.6},                                     # threshold > 0.5: no-op
], ids=["w10a", "floor", "hf", "all-above", "noop"])
def test_with_the_truncations(cfg):
    _, _, acted = check(rows(2), **cfg)
    assert acted.any() == (cfg.get("xt", 0.1) <= 0.5)


def test_ties_at_the_cut():
    # four tokens tie at the smallest p above the threshold: all four stay; two tied
    # above it are masked; then p exactly at the threshold (four equal tokens: 0.25)
    x = np.full((3, V), NEG, np.float32)
    x[0, [3, 40, 41]] = 2.0
    x[0, [5, 33, 64, 79]] = 1.0
    x[0, [7, 8]] = -3.0
    x[1, [0, 1]] = 1.0
    x[1, [2, CHUNK + 2]] = 0.0
    x[2, [1, CHUNK, 2 * CHUNK, V - 1]] = 0.5
    tok, out, acted = check(x, xt=np.array([0.05, 0.1, 0.25]))
    kept = np.isfinite(out)
    assert sorted(np.flatnonzero(kept[0])) == [5, 7, 8, 33, 64, 79]
    assert sorted(np.flatnonzero(kept[1])) == [2, CHUNK + 2]
    assert kept[2].sum() == 4 and list(acted) == [True, True, False]


def test_threshold_zero_keeps_the_underflowed_tokens():
    # p = exp(-800) / W is exactly 0 in float64, and 0 >= threshold 0: every survivor
    # is above it and the smallest p is 0, so only the two underflowed tokens stay.
    # The draw's weights are taken from the largest kept value (-800), not the row
    # max, or they would all underflow to 0 as well.
    x = np.full((6, V), NEG, np.float32)
    x[:, 1] = 0.0
    x[:, CHUNK + 1] = -1.0
    x[:, [5, 2 * CHUNK + 5]] = -800.0
    seeds = np.arange(1, 7, dtype=np.uint64)   # stream-0 uniforms on both sides of 1/2
    tok, out, acted = check(x, xt=0.0, seeds=seeds)
    assert acted.all() and (np.isfinite(out).sum(axis=1) == 2).all()
    assert set(tok) == {5, 2 * CHUNK + 5}


def test_min_keep_floor_leaves_a_hole():
    # survivors 10, 9, 8, 7, 6, 1; threshold 0.01 puts 10..6 above it: XTC keeps 6 and
    # 1; min_keep 3 brings back G(3) = 8 and above: 7 alone stays masked
    x = np.full((2, V), NEG, np.float32)
    ids = [2, CHUNK + 1, 5, 2 * CHUNK + 3, 9, V - 1]
    x[:, ids] = [10.0, 9.0, 8.0, 7.0, 6.0, 1.0]
    _, out, _ = check(x, mk=np.array([3, 2]), xt=0.01, t=np.array([0.9, 0.0]))
    assert list(np.flatnonzero(np.isneginf(out[0][ids]))) == [3]
    # min_keep 2 is met by 6 and 1; Temperature 0 after XTC: the first of the largest
    # kept value, 6
    assert list(np.flatnonzero(np.isfinite(out[1]))) == [9]


def test_greedy_after_xtc():
    # Temperature 0 last: the first token of the largest value XTC keeps (tied across
    # chunks); Temperature 0 first (HF): greedy before XTC, which then sees one token
    x = np.full((2, V), NEG, np.float32)
    x[:, 3] = 5.0
    x[:, [2 * CHUNK + 1, CHUNK + 4]] = 4.0
    x[:, [0, 1]] = 1.0
    tok, _, _ = check(x, xt=0.05, t=0.0)
    assert list(tok) == [CHUNK + 4] * 2
    tok, _, _ = check(x, xt=0.05, t=0.0, t_last=False, mp=0.01)
    assert list(tok) == [3, 3]


def test_invalid_rows():
    x = rows(3)
    x[1, 10] = np.nan
    x[2] = NEG
    x[3, CHUNK + 1] = np.inf
    for split in (True, False):
        tok = host(ops.sample_canonical(x, 0, 1.0, 0.02, 1.0, 1, True, 1, 0, split=split,
                                        xtc=(1.0, 0.05)))
        out = host(ops.process_canonical(x, 0, 1.0, 0.02, 1.0, 1, True, split=split,
                                         xtc=(1.0, 0.05), seed=1, position=0))
        assert tok[0] >= 0 and list(tok[1:]) == [ops.INVALID] * 3
        assert np.isneginf(out[1:]).all() and np.isfinite(out[0]).any()
