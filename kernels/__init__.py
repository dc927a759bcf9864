"""Compiled kernels, installed as ``fastsample.kernels`` (never ``import kernels``).

``cpu/`` holds the numba CPU kernels and ``cuda/`` the numba-CUDA kernels; each
backend module names its kernels after the functions of ``fastsample.reference``.
"""
