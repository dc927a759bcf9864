"""``fs.sample`` on the cuda backend: tokens identical to the numpy reference.

Device logits stay on the device; tokens must equal ``fs.sample(..., backend="numpy")``
row for row (zero mismatches) for the same seed and position.
"""

import numpy as np
import pytest
from cuda_helpers import host
from fastsample.kernels.cuda import ops

import fastsample as fs
from fastsample import workloads

V = 256


def mixed_rows(seed=0):
    """Four rows: LLM-like, flat, partly masked, heavily tied (rounded to 0.5)."""
    x = np.concatenate([workloads.llm_like(1, V, seed), workloads.flat(1, V, seed)])
    masked = workloads.llm_like(1, V, seed + 1)
    masked[0, np.random.default_rng(seed).random(V) < 0.6] = -np.inf
    tied = np.round(workloads.llm_like(1, V, seed + 2) * 2) / 2
    return np.concatenate([x, masked, tied]).astype(np.float32)


SEEDS = np.array([3, 2**40 + 7, 11, 12345], dtype=np.uint64)
POSITIONS = np.array([0, 5, 2**33, 17], dtype=np.uint64)

CONFIGS = [
    {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8},          # llama.cpp defaults
    {"top_p": 0.9},                                                 # top-p on whole rows
    {"min_p": 0.1, "temperature": 1.3},
    {"top_k": 5, "top_p": 0.5, "min_p": 0.2, "min_keep": 3},                 # min_keep floor
    {"top_k": 20, "top_p": 0.8, "temperature": 0.7, "temperature_last": False},  # HF order
    {"top_p": 0.6, "min_p": 0.02, "temperature": 1.7, "temperature_last": False},
    {"temperature": 0.0, "top_k": 3},                                  # greedy
    {},                                                          # plain draw
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_device_tokens_match_reference(dev, cfg):
    x = mixed_rows()
    before = x.copy()
    d = dev(x)
    got = fs.sample(d, seed=SEEDS, position=POSITIONS, **cfg)
    ref = fs.sample(x, seed=SEEDS, position=POSITIONS, backend="numpy", **cfg)
    assert got.dtype == np.int32 and got.shape == (4,)
    np.testing.assert_array_equal(host(got), ref)
    np.testing.assert_array_equal(host(d), before)   # input untouched


def test_per_row_device_parameters(dev):
    x = mixed_rows(seed=5)
    params = {"top_k": np.array([0, 7, 40, 2]), "top_p": np.array([0.9, 1.0, 0.5, 0.99]),
                  "min_p": np.array([0.0, 0.05, 0.3, 0.01]),
                  "temperature": np.array([0.6, 1.0, 2.5, 0.0]),
                  "min_keep": np.array([1, 2, 1, 4])}
    ref = fs.sample(x, seed=SEEDS, position=POSITIONS, backend="numpy", **params)
    on_dev = {k: dev(v) for k, v in params.items()}
    got = fs.sample(dev(x), seed=dev(SEEDS), position=dev(POSITIONS), **on_dev)
    np.testing.assert_array_equal(host(got), ref)
    # host arrays for the parameters, device logits
    got = fs.sample(dev(x), seed=SEEDS, position=POSITIONS, backend="cuda", **params)
    np.testing.assert_array_equal(host(got), ref)


def test_batch_invariance(dev):
    x = mixed_rows(seed=9)
    cfg = {"top_k": 30, "top_p": 0.9, "min_p": 0.02, "temperature": 0.9}
    batch = host(fs.sample(dev(x), seed=SEEDS, position=POSITIONS, **cfg))
    order = np.array([2, 0, 3, 1])
    shuffled = host(fs.sample(dev(x[order]), seed=SEEDS[order], position=POSITIONS[order],
                              **cfg))
    np.testing.assert_array_equal(shuffled, batch[order])
    for b in (0, 3):   # a row alone, 1-D: an int
        one = fs.sample(dev(x[b]), seed=int(SEEDS[b]), position=int(POSITIONS[b]), **cfg)
        assert isinstance(one, int) and one == batch[b]


def test_positions_and_seeds_move_the_draw(dev):
    x = np.tile(workloads.llm_like(1, 64, seed=4), (4, 1))
    for seed in (0, 1, 2**63 + 5):
        pos = np.arange(4, dtype=np.uint64) + np.uint64(seed % 7)
        got = host(fs.sample(dev(x), seed=seed, position=pos, temperature=1.5))
        ref = fs.sample(x, seed=seed, position=pos, temperature=1.5, backend="numpy")
        np.testing.assert_array_equal(got, ref)


def test_invalid_rows_raise_or_flag(dev):
    x = mixed_rows(seed=2)
    x[1, 10] = np.nan
    x[2] = -np.inf
    x[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows \[1, 2, 3\]"):
        fs.sample(dev(x), top_k=5)
    got = host(fs.sample(dev(x), top_k=5, seed=SEEDS, on_invalid="flag"))
    assert list(got[1:]) == [-1, -1, -1]
    assert got[0] == fs.sample(x[0], top_k=5, seed=int(SEEDS[0]), backend="numpy")
    # the kernel's own convention: -2, and 1-D flagged rows give -1
    assert host(ops.sample_canonical(dev(x[2:3]), [0], [1.0], [0.0], [1.0], [1], True,
                                     [0], [0]))[0] == ops.INVALID
    assert fs.sample(dev(x[2]), on_invalid="flag") == -1


def test_edge_shapes(dev):
    empty = fs.sample(dev(np.zeros((0, 5), np.float32)), top_k=3)
    assert host(empty).shape == (0,)
    one = np.array([[0.3]], np.float32)                  # V = 1
    assert host(fs.sample(dev(one), top_k=5, top_p=0.1, min_p=0.9))[0] == 0
    x = workloads.llm_like(2, 16, seed=1)
    for k in (16, 17, 1000):                             # k >= V: no-op
        np.testing.assert_array_equal(
            host(fs.sample(dev(x), top_k=k, seed=4)),
            fs.sample(x, top_k=k, seed=4, backend="numpy"))
    lone = np.full((1, 50), -np.inf, np.float32)         # all but one masked
    lone[0, 37] = -3.0
    assert host(fs.sample(dev(lone), top_p=0.5, temperature=0.3))[0] == 37


def test_dtypes_and_strides_are_converted_on_device(dev):
    x = mixed_rows(seed=3)
    cfg = {"top_k": 10, "top_p": 0.9, "seed": SEEDS}
    for arr in (x.astype(np.float16), x.astype(np.float64)):
        ref = fs.sample(arr, backend="numpy", **cfg)
        np.testing.assert_array_equal(host(fs.sample(dev(arr), **cfg)), ref)
    wide = np.repeat(x, 2, axis=1)                       # a strided (B, V) view
    strided = dev(wide)[:, ::2]
    np.testing.assert_array_equal(host(fs.sample(strided, **cfg)),
                                  fs.sample(x, backend="numpy", **cfg))


def test_stream_is_accepted(dev):
    from numba import cuda

    x = mixed_rows(seed=6)
    stream = cuda.stream()
    got = fs.sample(cuda.to_device(x, stream=stream), top_p=0.8, seed=SEEDS, stream=stream)
    np.testing.assert_array_equal(host(got), fs.sample(x, top_p=0.8, seed=SEEDS,
                                                      backend="numpy"))
    with pytest.raises(TypeError, match="stream"):
        fs.sample(dev(x), stream="fast")


def test_host_logits_on_backend_cuda():
    x = mixed_rows(seed=8)
    cfg = {"top_k": 12, "top_p": 0.85, "min_p": 0.03, "temperature": 0.9, "seed": SEEDS}
    got = fs.sample(x, backend="cuda", **cfg)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, fs.sample(x, backend="numpy", **cfg))


def test_bad_input_is_named(dev):
    x = dev(mixed_rows())
    with pytest.raises(fs.BackendError, match="cuda"):
        fs.sample(x, backend="numba")
    with pytest.raises(TypeError, match="floating-point"):
        fs.sample(dev(np.zeros((2, 3), np.int32)))
    with pytest.raises(ValueError, match="ndim=3"):
        fs.sample(dev(np.zeros((1, 2, 3), np.float32)))
    with pytest.raises(ValueError, match="V >= 1"):
        fs.sample(dev(np.zeros((2, 0), np.float32)))
    with pytest.raises(ValueError, match="top_p has length 3"):
        fs.sample(x, top_p=dev(np.array([0.5, 0.5, 0.5])))
    with pytest.raises(ValueError, match="min_p"):
        fs.sample(x, min_p=dev(np.array([0.1, np.nan, 0.1, 0.1])))
    with pytest.raises(ValueError, match="top_k must be an integer"):
        fs.sample(x, top_k=dev(np.array([1.5, 2, 3, 4])))
    with pytest.raises(ValueError, match="seed"):
        fs.sample(x, seed=dev(np.array([-1, 0, 0, 0])))


def test_draw_and_argmax_ops(dev):
    x = mixed_rows(seed=4)
    x[2] = -np.inf
    ref = fs.reference
    np.testing.assert_array_equal(host(ops.draw(dev(x), dev(SEEDS), dev(POSITIONS))),
                                  ref.draw(x, SEEDS, POSITIONS))
    np.testing.assert_array_equal(ops.draw(x, SEEDS, POSITIONS), ref.draw(x, SEEDS, POSITIONS))
    np.testing.assert_array_equal(host(ops.argmax(dev(x))), ref.argmax(x))
    x[1, 3] = np.nan
    np.testing.assert_array_equal(ops.invalid_rows(x), [False, True, True, False])


def test_wide_rows_match_reference(dev):
    # V = 2048: many entries per thread, every radix digit, the top-p boundary inside a
    # large tie group (flat rows rounded to 1/8)
    x = np.concatenate([workloads.llm_like(1, 2048, seed=11),
                        np.round(workloads.flat(1, 2048, seed=12) * 8) / 8]).astype(np.float32)
    seeds = np.array([5, 6], dtype=np.uint64)
    for cfg in ({"top_k": 300, "top_p": 0.7, "min_p": 0.01, "temperature": 0.9},
                {"top_p": 0.35, "temperature": 1.2, "temperature_last": False}):
        np.testing.assert_array_equal(host(fs.sample(dev(x), seed=seeds, **cfg)),
                                      fs.sample(x, seed=seeds, backend="numpy", **cfg))
