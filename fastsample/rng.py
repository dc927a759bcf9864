"""Counter-based random numbers: Philox4x32-10 and the uniform of docs/spec.md §5.

Every random number is a pure function of (seed, position, token id, stream), so a
row's draw does not depend on batch composition, row order or backend.
"""

from __future__ import annotations

import numpy as np

__all__ = ["philox4x32_10", "uniform", "STREAM_DRAW", "STREAM_XTC", "STREAM_ACCEPT",
           "STREAM_RECOVER"]

STREAM_DRAW = 0
STREAM_XTC = 1
STREAM_ACCEPT = 2    # speculative verification: the acceptance roll (spec §11)
STREAM_RECOVER = 3   # speculative verification: the draw after a rejection

# Philox4x32 round multipliers and Weyl key increments (Salmon et al., SC'11).
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85

_M0 = np.uint64(PHILOX_M0)
_M1 = np.uint64(PHILOX_M1)
_W0 = np.uint32(PHILOX_W0)
_W1 = np.uint32(PHILOX_W1)
_LO32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


def philox4x32_10(counter, key):
    """Philox4x32 with 10 rounds (Salmon et al., Random123).

    Parameters
    ----------
    counter : array_like of uint32, shape (..., 4)
    key : array_like of uint32, shape (..., 2)
        Broadcast against ``counter`` on the leading axes.

    Returns
    -------
    numpy.ndarray of uint32, shape (..., 4)
    """
    ctr = np.asarray(counter, dtype=np.uint32)
    k = np.asarray(key, dtype=np.uint32)
    c0, c1, c2, c3 = (ctr[..., i].astype(np.uint64) for i in range(4))
    k0 = k[..., 0].astype(np.uint32)
    k1 = k[..., 1].astype(np.uint32)
    with np.errstate(over="ignore"):
        for rnd in range(10):
            p0 = _M0 * c0  # exact: both factors < 2**32
            p1 = _M1 * c2
            hi0, lo0 = p0 >> _SHIFT32, p0 & _LO32
            hi1, lo1 = p1 >> _SHIFT32, p1 & _LO32
            c0 = hi1 ^ c1 ^ k0.astype(np.uint64)
            c1 = lo1
            c2 = hi0 ^ c3 ^ k1.astype(np.uint64)
            c3 = lo0
            if rnd < 9:
                k0 = k0 + _W0
                k1 = k1 + _W1
    out = np.stack([c0, c1, c2, c3], axis=-1)
    return out.astype(np.uint32)


def uniform(seed, position, stream, token=0):
    """The spec §5 uniform in (0, 1) for each (seed, position) pair.

    Key = seed as (low, high) 32-bit words; counter = (position low, position high,
    token, stream); x = word0 | word1 << 32; ``u = ((x >> 12) + 0.5) * 2**-52``.

    Parameters
    ----------
    seed, position : array_like of non-negative integers < 2**64
        Broadcast against each other.
    stream : int
        0 for the draw, 1 for XTC's roll.
    token : int or array_like, optional
        Token id word of the counter (0 for the per-row streams).

    Returns
    -------
    numpy.ndarray of float64
        Strictly inside (0, 1).
    """
    seed = np.asarray(seed, dtype=np.uint64)
    position = np.asarray(position, dtype=np.uint64)
    token = np.asarray(token, dtype=np.uint64)
    seed, position, token = np.broadcast_arrays(seed, position, token)
    ctr = np.stack(
        [
            position & _LO32,
            position >> _SHIFT32,
            token & _LO32,
            np.full(position.shape, stream, dtype=np.uint64),
        ],
        axis=-1,
    )
    key = np.stack([seed & _LO32, seed >> _SHIFT32], axis=-1)
    words = philox4x32_10(ctr.astype(np.uint32), key.astype(np.uint32)).astype(np.uint64)
    x = words[..., 0] | (words[..., 1] << _SHIFT32)
    return ((x >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52
