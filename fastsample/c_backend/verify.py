"""The C backend's speculative verification: ``verify_rows`` (csrc/fs_verify.c).

Same signature and result as ``fastsample.reference.verify_rows``; requests are split
across the thread pool when the batch carries enough work (``_util.over_rows``).
"""

from __future__ import annotations

import numpy as np

from ._util import buf, ffi, lib, over_rows

__all__ = ["verify_rows"]

# Below this many (row, column) cells one thread runs it: a hand-off costs more.
_PARALLEL_CELLS = 1 << 16
_ANY_ID = 2**31 - 1
_MESSAGES = {
    1: "inconsistent sizes", 2: "candidate offsets out of range", 3: "candidate id outside [0, V)",
    4: "num_draft outside [0, K] or a draft token outside [0, V)",
}


def verify_rows(block, ids, offsets, draft_tokens, draft_probs, num_draft, seed, position):
    """``fastsample.reference.verify_rows`` (see there), in C."""
    B, K = draft_tokens.shape
    tokens = np.full((B, K + 1), -1, np.int32)
    accepted = np.zeros(B, np.int32)
    bad_q = np.full(B, -1, np.int32)
    if B == 0:
        return tokens, accepted, bad_q
    block = np.ascontiguousarray(block, dtype=np.float32)
    rows, ncols = block.shape
    if rows != B * (K + 1):
        raise ValueError(f"block has {rows} rows; expected B*(K+1) = {B * (K + 1)}")
    sparse = ids is not None
    if sparse:
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if offsets.shape != (rows + 1,):
            raise ValueError(f"offsets has shape {offsets.shape}; expected ({rows + 1},)")
    if draft_probs is not None:
        q = np.ascontiguousarray(draft_probs, dtype=np.float32)
        if q.shape[:2] != (B, K):
            raise ValueError(f"draft_probs has shape {q.shape}; expected ({B}, {K}, V)")
        V = q.shape[2]
        qp = buf(q)
    else:
        qp = ffi.NULL
        V = ncols if not sparse else _ANY_ID   # no q to index: any int32 id is in range
    d = np.ascontiguousarray(draft_tokens, dtype=np.int32)
    n = np.ascontiguousarray(num_draft, dtype=np.int64)
    s = np.ascontiguousarray(seed, dtype=np.uint64)
    p = np.ascontiguousarray(position, dtype=np.uint64)
    if n.shape != (B,) or s.shape != (B,) or p.shape != (B,):
        raise ValueError("num_draft, seed and position must have shape (B,)")
    args = (buf(block), rows, ncols, buf(ids) if sparse and ids.size else ffi.NULL,
            ids.size if sparse else 0, buf(offsets) if sparse else ffi.NULL, int(sparse),
            buf(d) if d.size else ffi.NULL, qp, B, K, V, buf(n), buf(s), buf(p))
    outs = (buf(tokens), buf(accepted), buf(bad_q))

    def run(a, b):
        rc = lib.fs_verify_rows(*args, a, b, *outs)
        if rc != lib.FS_VERIFY_OK:
            raise ValueError(f"verify_rows (C backend): {_MESSAGES.get(rc, rc)}")

    over_rows(B, run, parallel=ncols * rows >= _PARALLEL_CELLS)
    return tokens, accepted, bad_q
