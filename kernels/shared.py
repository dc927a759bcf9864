"""Scalar helpers shared by the numba CPU kernels and the CUDA kernels.

Plain ``numba.njit`` functions (no arrays, no allocation), so one copy serves both
targets: numba-cuda compiles them as device functions when a CUDA kernel calls them.
The RNG is bit-identical to ``fastsample.rng``; the penalty math to
``fastsample.reference.penalties``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import overload

from ..rng import PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1

_M0 = np.uint64(PHILOX_M0)
_M1 = np.uint64(PHILOX_M1)
_W0 = np.uint64(PHILOX_W0)
_W1 = np.uint64(PHILOX_W1)
_LO = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S12 = np.uint64(12)
F32_MAX = float(np.finfo(np.float32).max)


@numba.njit(cache=True, nogil=True, inline="always")
def philox_words01(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on one counter; returns output words 0 and 1 as uint64.

    Every argument is a uint64 holding a 32-bit word. Only words 0 and 1 feed the
    uniform, so the other two are not returned.
    """
    for rnd in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> _S32) ^ c1 ^ k0
        n2 = (p0 >> _S32) ^ c3 ^ k1
        c1 = p1 & _LO
        c3 = p0 & _LO
        c0 = n0
        c2 = n2
        if rnd < 9:
            k0 = (k0 + _W0) & _LO
            k1 = (k1 + _W1) & _LO
    return c0, c1


@numba.njit(cache=True, nogil=True, inline="always")
def uniform(seed, position, stream):
    """docs/spec.md §5 uniform in (0, 1) for one (seed, position, stream), token word 0."""
    s = np.uint64(seed)
    p = np.uint64(position)
    w0, w1 = philox_words01(p & _LO, p >> _S32, np.uint64(0), np.uint64(stream),
                            s & _LO, s >> _S32)
    x = w0 | (w1 << _S32)
    return (np.float64(x >> _S12) + 0.5) * 2.0**-52


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def saturate_f32(v):
    """float64 -> float32, clipped at +-float32 max (NaN passes through)."""
    if v > F32_MAX:
        return np.float32(F32_MAX)
    if v < -F32_MAX:
        return np.float32(-F32_MAX)
    return np.float32(v)


def mul_rn(a, b):
    """``a * b`` in float64, rounded once: never fused with a following add into an FMA.

    A stub compiled per target: plain ``*`` on the CPU (LLVM contracts nothing without
    fast-math flags); on CUDA libdevice's ``dmul_rn``, because NVVM and ptxas contract
    ``a * b + c`` into one FMA by default, which rounds once instead of twice and so
    differs from the reference in the last bit. The CUDA overload is registered by
    ``kernels/cuda/target.py``, which every CUDA kernel module imports.
    """
    return a * b


@overload(mul_rn, target="cpu")
def _mul_rn_cpu(a, b):
    return lambda a, b: a * b


@numba.njit(cache=True, nogil=True, inline="always", error_model="numpy")
def penalized(x, c, repeat, frequency, presence):
    """Spec §4 Penalties on one float64 logit ``x`` seen ``c > 0`` times: float64.

    ``x / repeat`` if ``x > 0`` else ``x * repeat``, then ``- (c*frequency + presence)``
    (the caller saturates to float32 and keeps ``-inf`` masked). Products by
    ``mul_rn``: the same roundings as numpy's on every target.
    """
    y = x / repeat if x > 0 else mul_rn(x, repeat)
    return y - (mul_rn(np.float64(c), frequency) + presence)
