"""Rows of a batch split over threads: ``over_rows``, and ``program_rows`` (a
backend's ``chain_rows``: its one-call step on each row).

Kernels that release the GIL (every C call through cffi, numba's ``nogil`` kernels)
run row ranges of a batch on separate cores this way: the first range on the calling
thread, the others on one shared pool, made on the first batched call.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["THREADS", "over_rows", "program_rows"]

THREADS = max(1, os.cpu_count() or 1)
_POOL: list = []  # created on the first batched call


def over_rows(B, run, parallel=True):
    """Call ``run(start, stop)`` on row ranges covering ``[0, B)``, in parallel.

    ``run`` slices its arrays itself and calls a kernel that releases the GIL, so the
    ranges run on separate cores: the first on the calling thread, the others on a
    shared pool. ``parallel=False`` (small work: a thread
    hand-off would cost more than it saves) runs one range inline.
    """
    if B <= 0:
        return
    n = min(THREADS, B) if parallel else 1
    if n == 1:
        run(0, B)
        return
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(THREADS, thread_name_prefix="fastsample-rows"))
    edges = [B * i // n for i in range(n + 1)]
    futures = [_POOL[0].submit(run, a, b) for a, b in itertools.pairwise(edges[1:])]
    try:
        run(edges[0], edges[1])
    finally:
        for f in futures:
            f.result()


def program_rows(row_fn, rows, histories, progs, seed, position, mus=None, words=None):
    """A backend's ``chain_rows``: ``row_fn`` (its ``chain_row``) on every row of
    ``rows`` with its own history window and program, rows split by ``over_rows`` (the
    kernels release the GIL). int32 (B,): the tokens, -2 where the general route must
    decide. ``mus`` (a Mirostat program: each row's mu; AdaptiveP: (B, 2), each row's
    averages): also float64 (B,), each drawn token's log-probability among the kept
    tokens. ``words``: each row's packed token
    bitmask (a list, None where a row has none), or None."""
    out = np.empty(rows.shape[0], np.int32)
    lps = np.full(rows.shape[0], np.nan)

    def run(a, b):
        for r in range(a, b):
            args = (rows[r], histories[r], progs[r], int(seed[r]), int(position[r]))
            kw = {} if words is None else {"words": words[r]}
            if mus is None:
                out[r] = row_fn(*args, **kw)
            else:
                mu = mus[r]   # a Mirostat's mu, or AdaptiveP's two averages
                out[r], lps[r] = row_fn(*args, float(mu) if np.ndim(mu) == 0 else tuple(mu),
                                        **kw)

    over_rows(rows.shape[0], run)
    return out if mus is None else (out, lps)
