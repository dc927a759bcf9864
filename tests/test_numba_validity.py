"""The numba row validity pass against the numpy definition (docs/spec.md §7)."""

import numpy as np
import pytest

from fastsample.kernels.cpu.validity import invalid_rows as fast_invalid_rows
from fastsample.validation import invalid_rows


@pytest.mark.parametrize("V", [1, 2, 7, 64, 257, 4099])
@pytest.mark.parametrize("B", [0, 1, 5])
def test_matches_numpy_wherever_the_bad_value_sits(B, V):
    gen = np.random.default_rng([B, V])
    for trial in range(40):
        x = gen.normal(size=(B, V)).astype(np.float32)
        for b in range(B):
            kind = gen.integers(0, 5)
            where = int(gen.choice([0, V - 1, int(gen.integers(0, V))]))
            if kind == 1:
                x[b, where] = np.nan
            elif kind == 2:
                x[b, where] = np.inf
            elif kind == 3:
                x[b] = -np.inf
            elif kind == 4:
                x[b, gen.random(V) < 0.7] = -np.inf  # partly masked: valid if any finite left
        before = x.copy()
        got = fast_invalid_rows(x)
        assert got.dtype == np.bool_ and got.shape == (B,)
        assert np.array_equal(got, invalid_rows(x))
        assert np.array_equal(x, before, equal_nan=True)
