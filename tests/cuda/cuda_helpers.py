"""Small helpers of the CUDA tests."""

import numpy as np


def host(a):
    """A device result (numba device array) or a host one, as numpy."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def same_mask_and_values(out, ref):
    """Identical -inf masks; finite values within 1e-5 relative to max(1, |l|)."""
    out = np.asarray(out)
    ref = np.asarray(ref)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_array_equal(np.isneginf(out), np.isneginf(ref))
    fin = np.isfinite(ref)
    assert np.isfinite(out[fin]).all()
    err = np.abs(out[fin].astype(np.float64) - ref[fin]) / np.maximum(1.0, np.abs(ref[fin]))
    assert err.size == 0 or err.max() <= 1e-5
