"""The split path of the canonical chain (several blocks per row, ``kernels/cuda/split.py``)
against the one-block path and the numpy reference.

Both paths must give IDENTICAL tokens and bit-identical processed logits (every float64
sum is chunk-structured the same way), and tokens equal to ``fs.sample(...,
backend="numpy")``. Rows are a few ``CHUNK`` long (``CHUNK = TPB * 4`` under the
simulator), with the last chunk partial.
"""


import numpy as np
import pytest
from cuda_helpers import host
from fastsample.kernels.cuda import canonical, ops, split
from fastsample.kernels.cuda.target import CHUNK, SPLIT_BELOW_ROWS, TPB
from numba import cuda
from test_cuda_sample import CONFIGS

import fastsample as fs
from fastsample import workloads

V = 2 * CHUNK + CHUNK // 2   # 3 chunks, the last one half full
SEEDS = np.array([3, 2**40 + 7, 11, 12345], dtype=np.uint64)
POSITIONS = np.array([0, 5, 2**33, 17], dtype=np.uint64)
_DEFAULTS = {"top_k": 0, "top_p": 1.0, "min_p": 0.0, "temperature": 1.0, "min_keep": 1}
# beyond CONFIGS: top_k >= V, a min_keep floor above the survivors, top_p ~ 0
EXTRA = [{"top_k": 1000, "top_p": 0.97}, {"top_k": 2, "top_p": 0.3, "min_keep": 50},
         {"top_p": 1e-7, "min_p": 0.5, "min_keep": 4}]


def rows(seed=0, n=V):
    """Four rows: LLM-like; flat in steps of 1/4 (large tie groups) with the max tied
    across a chunk boundary; one whole chunk masked; rounded LLM-like."""
    rng = np.random.default_rng(seed)
    x = workloads.llm_like(4, n, seed)
    x[1] = np.round(workloads.flat(1, n, seed)[0] * 4) / 4
    if n > CHUNK:
        x[1, CHUNK - 1] = x[1, CHUNK] = 1.5
        x[2, CHUNK:2 * CHUNK] = -np.inf
    x[2, rng.random(n) < 0.3] = -np.inf
    x[2, 0] = 0.5
    x[3] = np.round(x[3] * 2) / 2
    return x.astype(np.float32)


def per_row(cfgs):
    """One config per row -> per-row parameter arrays (and the common order)."""
    params = {key: np.array([c.get(key, d) for c in cfgs]) for key, d in _DEFAULTS.items()}
    orders = {c.get("temperature_last", True) for c in cfgs}
    assert len(orders) == 1
    return params, orders.pop()


def run(x, params, t_last, use_split, seeds=SEEDS, positions=POSITIONS):
    """(tokens, processed logits) of one path, as numpy."""
    args = [params[k] for k in ("top_k", "top_p", "min_p", "temperature", "min_keep")]
    tok = ops.sample_canonical(x, *args, t_last, seeds, positions, split=use_split)
    out = ops.process_canonical(x, *args, t_last, split=use_split)
    return host(tok), host(out)


def check_paths(x, cfgs, seeds=SEEDS, positions=POSITIONS, valid=None):
    """Split == one block, bit for bit; tokens == the numpy reference on valid rows."""
    params, t_last = per_row(cfgs)
    tok_s, out_s = run(x, params, t_last, True, seeds, positions)
    tok_o, out_o = run(x, params, t_last, False, seeds, positions)
    np.testing.assert_array_equal(tok_s, tok_o)
    assert out_s.dtype == out_o.dtype == np.float32
    np.testing.assert_array_equal(out_s.view(np.uint32), out_o.view(np.uint32))
    ok = np.ones(len(x), bool) if valid is None else valid
    ref = fs.sample(x[ok], seed=seeds[ok], position=positions[ok], backend="numpy",
                    temperature_last=t_last, **{k: v[ok] for k, v in params.items()})
    np.testing.assert_array_equal(tok_s[ok], ref)
    return tok_s, out_s


LAST = [c for c in CONFIGS + EXTRA if c.get("temperature_last", True)]
HF = [c for c in CONFIGS if not c.get("temperature_last", True)]


@pytest.mark.parametrize("start", [0, 4, 8])
def test_llama_order_configs(start):
    # every config on several row kinds: the rows rotate through the configs
    cfgs = [LAST[(start + i) % len(LAST)] for i in range(4)]
    check_paths(rows(seed=start), cfgs)


def test_hf_order_configs():
    check_paths(rows(seed=1), [HF[i % len(HF)] for i in range(4)])


@pytest.mark.parametrize("n", [CHUNK // 2, 2 * CHUNK])   # one chunk; a multiple of CHUNK
def test_chunk_counts(n):
    cfgs = [CONFIGS[0], CONFIGS[3], CONFIGS[1], EXTRA[1]]
    check_paths(rows(seed=2, n=n), cfgs)


@pytest.mark.parametrize("cfg", [
    {"top_p": 0.9, "temperature": 1.3},               # mass launches only
    {"top_k": 5, "min_p": 0.1, "temperature": 0.7},   # count launches only
    {"min_p": 0.1, "min_keep": 3},                    # count launches: the floor only
    {"min_p": 0.05},                                  # neither: scan, final, walk
], ids=["mass", "count", "floor", "none"])
def test_launch_subsets(cfg):
    # host parameters leave out the launches no row needs; the state handed from one
    # phase to the next must not depend on which ran
    check_paths(rows(seed=7), [cfg] * 4)


def test_device_parameters_run_every_phase():
    # device parameters: every launch runs, rows that need no select skip it
    x = rows(seed=8)
    cfgs = [{"min_p": 0.1}, {"top_k": 6}, {"top_p": 0.8, "min_keep": 2}, {}]
    params, t_last = per_row(cfgs)
    on_dev = {k: cuda.to_device(v) for k, v in params.items()}
    got, _ = run(cuda.to_device(x), on_dev, t_last, True)
    want, _ = run(x, params, t_last, False)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, fs.sample(x, seed=SEEDS, position=POSITIONS,
                                                 backend="numpy", **params))


def test_split_never_waits_for_the_device(monkeypatch):
    # every launch is queued on the stream: no copy back, no synchronise in between
    from numba.cuda.simulator.cudadrv import devicearray

    x = cuda.to_device(rows(seed=9)[:1])
    params = [cuda.to_device(np.array([v])) for v in (5, 0.9, 0.05, 0.8, 2)]
    seed, pos = cuda.to_device(SEEDS[:1]), cuda.to_device(POSITIONS[:1])

    def refuse(*args, **kwargs):
        raise AssertionError("the split path waited for the device")

    monkeypatch.setattr(devicearray.FakeCUDAArray, "copy_to_host", refuse)
    monkeypatch.setattr(cuda, "synchronize", refuse)
    tok = ops.sample_canonical(x, *params, True, seed, pos, split=True)
    out = ops.process_canonical(x, *params, True, split=True)
    monkeypatch.undo()
    want = fs.sample(host(x), top_k=5, top_p=0.9, min_p=0.05, temperature=0.8, min_keep=2,
                     seed=SEEDS[:1], position=POSITIONS[:1], backend="numpy")
    np.testing.assert_array_equal(host(tok), want)
    assert np.isfinite(host(out)[0, want[0]])


def test_invalid_rows_on_both_paths():
    x = rows(seed=3)
    x[1, 40] = np.nan
    x[2] = -np.inf
    x[3, CHUNK] = np.inf
    tok, out = check_paths(x, [CONFIGS[0]] * 4, valid=np.array([True, False, False, False]))
    assert list(tok[1:]) == [ops.INVALID] * 3
    assert np.isneginf(out[1:]).all()


def test_batch_invariance():
    # a row alone (B = 1: the split path by default) == inside a batch of 4 (forced
    # one block), in any row order
    x = rows(seed=4)
    cfg = {"top_k": 30, "top_p": 0.9, "min_p": 0.02, "temperature": 0.9, "min_keep": 2}
    params, t_last = per_row([cfg] * 4)
    order = np.array([2, 0, 3, 1])
    batch, _ = run(x[order], params, t_last, False, SEEDS[order], POSITIONS[order])
    for i, b in enumerate(order):
        one = fs.sample(x[b], seed=int(SEEDS[b]), position=int(POSITIONS[b]),
                        backend="cuda", **cfg)
        assert one == batch[i]


def test_default_dispatch():
    assert ops._use_split(1, V, None) == (SPLIT_BELOW_ROWS > 1)
    assert not ops._use_split(1, CHUNK, None)                 # one chunk: one block
    assert not ops._use_split(SPLIT_BELOW_ROWS, V, None)
    assert ops._use_split(64, CHUNK // 2, True) and not ops._use_split(1, V, False)


def test_draw_chunk_sums_are_bit_identical():
    # The draw's float64 chunk sums of both paths, compared as bits (a token hides a
    # difference in the last place); weights over ~40 decades so the order matters.
    rng = np.random.default_rng(6)
    x = rows(seed=6)
    x[0] = rng.uniform(-90.0, 0.0, V).astype(np.float32)
    params, t_last = per_row([{"top_k": 50, "top_p": 0.99, "temperature": 0.7}] * 4)
    dev = [cuda.to_device(params[k].astype(dt)) for k, dt in (
        ("top_k", np.int64), ("top_p", np.float64), ("min_p", np.float64),
        ("temperature", np.float64), ("min_keep", np.int64))]
    d = cuda.to_device(x)
    seeds, positions = cuda.to_device(SEEDS), cuda.to_device(POSITIONS)
    no_xtc = (cuda.to_device(np.zeros(4)), cuda.to_device(np.ones(4)))
    grid, args, prev, state = split._cuts(d, dev, t_last, no_xtc, seeds, positions,
                                          (True, True, False), (), 0)
    split.phase_kernel[grid, TPB](split.FINAL, prev, *args)
    cs = cuda.to_device(np.zeros((4, split.chunks(V))))
    out = cuda.device_array(4, np.int32)
    canonical.sample_kernel[4, TPB](d, *dev, t_last, *no_xtc, seeds, positions, cs, out)
    got = state[2].copy_to_host()[:, split._CS, :]   # pf64's draw chunk sums
    np.testing.assert_array_equal(got.view(np.uint64), cs.copy_to_host().view(np.uint64))
    assert (got[0] > 0).all()
