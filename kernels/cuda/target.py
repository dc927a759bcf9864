"""Build-time switches of the CUDA kernels: simulator or GPU, block size, bit casts.

The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs every thread as a Python
thread, so the same kernel source serves CI (no GPU) and the GPU. What differs is
chosen here, once, at import:

- ``TPB``: threads per block. Small under the simulator (each thread is an OS
  thread), 256 on a GPU.
- ``CHUNK``: the fixed piece of a row that every float64 sum is structured by (a
  chunk's partial in a fixed in-block order, then the partials in chunk order), so
  the one-block path and the split path (several blocks per row, small batches) add
  in the same order. ``TPB * 4`` in the simulator, so tiny test rows have many chunks.
- ``SPLIT_BELOW_ROWS``: batches with fewer rows than this (and rows of more than one
  chunk) take the split path.
- Block reductions use shared memory and ``cuda.syncthreads()`` only (no warp
  shuffles, which the simulator does not model faithfully), so both run one code path.
- The float32 <-> uint32 bit casts: libdevice on the GPU, numpy views in the
  simulator (which has no libdevice); so is ``shared.mul_rn``'s unfused product.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..shared import mul_rn

try:
    from numba.cuda import config as _config
except ImportError:  # numba's own (deprecated) numba.cuda
    from numba import config as _config

__all__ = [
    "CHUNK",
    "NEG_INF_KEY",
    "SIM",
    "SPLIT_BELOW_ROWS",
    "TPB",
    "bf16_f32",
    "bits_f32",
    "f32_bits",
    "f32_key",
    "key_f32",
    "load",
]

SIM = bool(_config.ENABLE_CUDASIM)
TPB = 8 if SIM else 256   # a power of two (tree reductions)
CHUNK = TPB * (4 if SIM else 64)   # a multiple of TPB: V = 128256 is 8 chunks on a GPU
# B < 32 leaves most of a GPU's SMs idle with one block a row. The simulator pays per
# block launched, so there only single rows split by default (tests force the path).
SPLIT_BELOW_ROWS = 2 if SIM else 32

# Order-preserving keys: for float32 a, b (no NaN), a < b  <=>  key(a) < key(b), with
# -0.0 folded onto +0.0 (they compare equal, so they must share a key).
NEG_INF_KEY = 0x007FFFFF   # key(-inf): every finite value has a larger key
_SIGN = 0x80000000
_ALL = 0xFFFFFFFF

if SIM:
    @cuda.jit(device=True)
    def f32_bits(x):
        """The bits of a float32 as an unsigned 32-bit integer."""
        return int(np.asarray(x, dtype=np.float32).view(np.uint32))

    @cuda.jit(device=True)
    def bits_f32(b):
        """The float32 whose bits are ``b``."""
        return np.asarray(b & _ALL, dtype=np.uint32).view(np.float32)[()]
else:
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline=True)
    def f32_bits(x):
        return np.uint32(libdevice.float_as_int(x))

    @cuda.jit(device=True, inline=True)
    def bits_f32(b):
        return libdevice.int_as_float(np.int32(b))


@cuda.jit(device=True, inline=True)
def bf16_f32(bits):
    """The float32 value of the bfloat16 whose bits are ``bits`` (int16/uint16): exact."""
    return bits_f32(np.uint32(np.uint16(bits)) << np.uint32(16))


# ``load(row, i)``: ``row[i]`` as float32, the one way the sampling kernels read logits,
# so they read float32, float16 and bfloat16 (int16/uint16 bits: numba has no bfloat16)
# rows of any stride in place, without a converted copy. One kernel is compiled per
# dtype and layout (numba specialises on the argument types).
if SIM:
    @cuda.jit(device=True)
    def load(row, i):
        """``row[i]`` as float32; integer rows hold bfloat16 bits."""
        if row.dtype.kind in "iu":
            return bf16_f32(row[i])
        return np.float32(row[i])
else:
    from numba.core import types
    from numba.cuda.extending import overload

    def load(row, i):
        """``row[i]`` as float32; integer rows hold bfloat16 bits (compiled per dtype)."""
        raise NotImplementedError("a CUDA device function")

    @overload(load, target="cuda", inline="always")
    def _load_cuda(row, i):
        if isinstance(row.dtype, types.Integer):
            return lambda row, i: bf16_f32(row[i])
        return lambda row, i: np.float32(row[i])

    # ``shared.mul_rn`` on the GPU: libdevice's ``dmul_rn``, which NVVM never contracts
    # into an FMA with a following add (the simulator runs the CPU product).
    @overload(mul_rn, target="cuda")
    def _mul_rn_cuda(a, b):
        return lambda a, b: libdevice.dmul_rn(a, b)


@cuda.jit(device=True, inline=True)
def f32_key(x):
    """Order-preserving uint32 key of a float32 (``x + 0`` folds -0.0 onto +0.0)."""
    b = f32_bits(np.float32(x) + np.float32(0.0))
    if b & _SIGN:
        return np.uint32(~b & _ALL)
    return np.uint32(b | _SIGN)


@cuda.jit(device=True, inline=True)
def key_f32(k):
    """Inverse of ``f32_key`` (a folded -0.0 comes back as +0.0)."""
    k = np.uint32(k)
    if k & _SIGN:
        return bits_f32(k & np.uint32(0x7FFFFFFF))
    return bits_f32(~k & _ALL)
