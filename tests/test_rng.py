"""Philox4x32-10 and the docs/spec.md §5 uniform."""

import numpy as np
import pytest
from scipy import stats

from fastsample import rng

# Random123's published known-answer vectors, as listed in spec §5.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    out = rng.philox4x32_10(np.array(counter, np.uint32), np.array(key, np.uint32))
    assert out.dtype == np.uint32
    assert tuple(int(v) for v in out) == expected


def test_philox_batched_equals_one_by_one():
    counters = np.array([c for c, _, _ in KAT], np.uint32)
    keys = np.array([k for _, k, _ in KAT], np.uint32)
    out = rng.philox4x32_10(counters, keys)
    assert out.tolist() == [list(e) for _, _, e in KAT]


def _uniform_by_hand(seed, position, stream):
    ctr = (position & 0xFFFFFFFF, position >> 32, 0, stream)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    w = rng.philox4x32_10(np.array(ctr, np.uint32), np.array(key, np.uint32))
    x = int(w[0]) | (int(w[1]) << 32)
    return ((x >> 12) + 0.5) * 2.0**-52


@pytest.mark.parametrize("seed,position", [(0, 0), (7, 3), (2**64 - 1, 2**64 - 1), (2**33 + 5, 2**40 + 1)])
@pytest.mark.parametrize("stream", [0, 1])
def test_uniform_matches_the_spec_formula(seed, position, stream):
    u = rng.uniform(np.uint64(seed), np.uint64(position), stream)
    assert float(u) == _uniform_by_hand(seed, position, stream)


def test_uniform_open_interval_and_streams_differ():
    seeds = np.arange(2000, dtype=np.uint64)
    u0 = rng.uniform(seeds, 5, 0)
    u1 = rng.uniform(seeds, 5, 1)
    assert np.all((u0 > 0) & (u0 < 1))
    assert not np.array_equal(u0, u1)


def test_uniform_is_uniform():
    u = rng.uniform(np.uint64(42), np.arange(20000, dtype=np.uint64), 0)
    assert stats.kstest(u, "uniform").pvalue > 1e-4


def test_njit_uniform_is_bit_identical():
    """kernels/shared.py's njit copy (used by every compiled kernel) equals rng.uniform."""
    from fastsample.kernels import shared

    gen = np.random.default_rng(5)
    edges = np.array([0, 2**64 - 1], dtype=np.uint64)
    seeds = np.concatenate([gen.integers(0, 2**64 - 1, 300, dtype=np.uint64), edges])
    positions = np.concatenate([gen.integers(0, 2**64 - 1, 300, dtype=np.uint64), edges[::-1]])
    assert seeds.dtype == positions.dtype == np.uint64
    for stream in (0, 1):
        want = rng.uniform(seeds, positions, stream)
        got = [shared.uniform(s, p, stream) for s, p in zip(seeds, positions)]
        assert np.array_equal(np.array(got), want)
