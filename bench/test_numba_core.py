"""The numba core kernels next to numpy, side by side (pytest-benchmark; not in testpaths).

    python -m pytest bench/test_numba_core.py --benchmark-only --benchmark-group-by=group

One group per operation and shape, each with ``numpy`` (the usual numpy idiom),
``numba`` (``fastsample.kernels.cpu``) and ``floor`` (``np.max`` over the same input,
the cost of reading it once). Ratios within a group are what to compare.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastsample import reference as ref
from fastsample import workloads as wl

V = wl.DEFAULT_VOCAB
_CACHE: dict = {}


def _x(B, kind="llm_like", temperature=1.0):
    key = (B, kind, temperature)
    if key not in _CACHE:
        x = wl.GENERATORS[kind](B, V, 0)
        if temperature != 1.0:
            x = (x.astype(np.float64) / temperature).astype(np.float32)
        _CACHE[key] = np.ascontiguousarray(x)
    return _CACHE[key]


def _np_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_topk(x, k):
    part = np.argpartition(x, -k, axis=1)[:, -k:]
    vals = np.take_along_axis(x, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def _cases():
    from fastsample.kernels.cpu import draw as kdraw
    from fastsample.kernels.cpu import simd
    from fastsample.kernels.cpu import softmax as ksoftmax
    from fastsample.kernels.cpu import topk as ktopk

    cases = []
    for B in (1, 64):
        cases.append((f"row_max B={B}", B, "llm_like", 1.0,
                      lambda x: x.max(axis=1),
                      (lambda x: simd.row_max_array(x[0])) if B == 1 else None))
    for B in (1, 64):
        def np_draw(x):
            return ref.draw(x, np.zeros(x.shape[0], np.uint64), np.zeros(x.shape[0], np.uint64))

        def nb_draw(x):
            return kdraw.draw(x, np.zeros(x.shape[0], np.uint64), np.zeros(x.shape[0], np.uint64))
        cases.append((f"draw W5-like (T=0.8) B={B}", B, "llm_like", 0.8, np_draw, nb_draw))
        cases.append((f"argmax B={B}", B, "llm_like", 1.0,
                      lambda x: np.argmax(x, axis=1), kdraw.argmax))
        cases.append((f"softmax W9 B={B}", B, "llm_like", 1.0, _np_softmax, ksoftmax.softmax))
        cases.append((f"log_softmax B={B}", B, "llm_like", 1.0,
                      lambda x: x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
                      - x.max(1, keepdims=True),
                      ksoftmax.log_softmax))
        for k in (50, 1000):
            cases.append((f"topk W7 k={k} B={B}", B, "llm_like", 1.0,
                          (lambda x, k=k: _np_topk(x, k)), (lambda x, k=k: ktopk.topk(x, k))))
    cases.append(("topk k=50 flat B=1", 1, "flat", 1.0,
                  lambda x: _np_topk(x, 50), lambda x: ktopk.topk(x, 50)))
    return cases


_CASES = None


def _all_cases():
    global _CASES
    if _CASES is None:
        _CASES = _cases()
    return _CASES


_NAMES = ["row_max B=1", "row_max B=64", "draw W5-like (T=0.8) B=1", "argmax B=1",
          "softmax W9 B=1", "log_softmax B=1", "topk W7 k=50 B=1", "topk W7 k=1000 B=1",
          "draw W5-like (T=0.8) B=64", "argmax B=64", "softmax W9 B=64", "log_softmax B=64",
          "topk W7 k=50 B=64", "topk W7 k=1000 B=64", "topk k=50 flat B=1"]


def _lookup(name):
    for c in _all_cases():
        if c[0] == name:
            return c
    raise KeyError(name)


@pytest.mark.parametrize("impl", ["numpy", "numba", "floor"])
@pytest.mark.parametrize("name", _NAMES)
def test_core(benchmark, name, impl):
    _, B, kind, temperature, np_fn, nb_fn = _lookup(name)
    x = _x(B, kind, temperature)
    fn = {"numpy": np_fn, "numba": nb_fn, "floor": lambda x: x.max(axis=1)}[impl]
    if fn is None:
        pytest.skip(f"no {impl} variant for {name}")
    benchmark.group = name
    benchmark.extra_info.update({"impl": impl, "B": B, "V": V})
    fn(x)  # warm-up outside the timing: JIT compilation, first touch
    result = benchmark(fn, x)
    assert result is not None
