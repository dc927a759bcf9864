"""Numba CPU kernels (filled in by the numba backend)."""
