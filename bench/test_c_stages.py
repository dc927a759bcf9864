"""The C history stages next to numba, side by side (pytest-benchmark; not in testpaths).

    python -m pytest bench/test_c_stages.py --benchmark-only --benchmark-group-by=group

Groups (V = 128256):

- ``W8 dry_penalty <history>``: DRY's penalty list for one history of 8192 and 32768
  natural-looking tokens and of 32768 copies of one token (docs/spec.md §8 W8; target for C:
  under 1 ms at 32768 tokens, the repeated case within 2x of the natural one);
- ``dry B=1 <history>``: the DRY stage on one row of logits (adds the row copy);
- ``penalties B=<B> last_n=<n>``: repetition/frequency/presence penalties with an
  8192-token natural history per row.

Each group holds ``numba`` (``fastsample.kernels.cpu.stages``), ``c``
(``fastsample.c_backend.stages``) and ``floor`` (``np.max`` over the logits, or over
the history for dry_penalty: the cost of reading the input once).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastsample import workloads as wl

V = wl.DEFAULT_VOCAB
W8 = dict(wl.W8_PARAMS)
#: W8's cases by name ("natural L=8192", ...), as ``fastsample bench`` runs them.
HISTORIES = {c.label.removeprefix("W8 "): c for c in wl.get("W8").cases}
_CACHE: dict = {}


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _module(impl):
    if impl == "numba":
        return pytest.importorskip("fastsample.kernels.cpu.stages")
    import fastsample as fs

    if not fs.backends()["c"]:
        pytest.skip(f"C backend unavailable: {fs.backends()['c'].reason}")
    from fastsample.c_backend import stages

    return stages


def _history(name):
    """W8's history and breakers (for the repeated case, its token is no breaker)."""
    inputs = _cached(("hist", name), lambda: HISTORIES[name].prepare(seed=0).inputs)
    return inputs["history"], inputs["breakers"]


@pytest.mark.parametrize("impl", ["numba", "c", "floor"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_dry_penalty(benchmark, name, impl):
    hist, breakers = _history(name)
    benchmark.group = f"W8 dry_penalty {name}"
    benchmark.extra_info.update({"impl": impl, "V": V, "history": hist.size})
    if impl == "floor":
        benchmark(np.max, hist)
        return
    S = _module(impl)
    args = (hist, V, W8["multiplier"], W8["base"], W8["allowed_length"], breakers, W8["last_n"])
    S.dry_penalty(*args)  # warm-up: JIT compilation, first touch
    ids, _ = benchmark(S.dry_penalty, *args)
    assert ids.size > 0 or not name.startswith("repeated")


@pytest.mark.parametrize("impl", ["numba", "c", "floor"])
@pytest.mark.parametrize("name", list(HISTORIES))
def test_dry_stage(benchmark, name, impl):
    hist, breakers = _history(name)
    x = _cached(("x", 1), lambda: wl.llm_like(1, V, 0))
    benchmark.group = f"dry B=1 {name}"
    benchmark.extra_info.update({"impl": impl, "V": V, "history": hist.size})
    if impl == "floor":
        benchmark(np.max, x, axis=1)
        return
    S = _module(impl)
    one = lambda v, dt: np.full(1, v, dt)
    args = (x, [hist], one(W8["multiplier"], np.float64), one(W8["base"], np.float64),
            one(W8["allowed_length"], np.int64), one(W8["last_n"], np.int64), breakers)
    S.dry(*args)
    out = benchmark(S.dry, *args)
    assert out.shape == x.shape


@pytest.mark.parametrize("impl", ["numba", "c", "floor"])
@pytest.mark.parametrize("B,last_n", [(1, 64), (1, -1), (64, 64), (64, -1)])
def test_penalties(benchmark, B, last_n, impl):
    x = _cached(("x", B), lambda: wl.llm_like(B, V, 0))
    hist = _cached(("hists", B), lambda: [wl.natural_history(8192, V, b) for b in range(B)])
    benchmark.group = f"penalties B={B} last_n={last_n}"
    benchmark.extra_info.update({"impl": impl, "V": V, "B": B, "history": 8192})
    if impl == "floor":
        benchmark(np.max, x, axis=1)
        return
    S = _module(impl)
    args = (x, hist, np.full(B, 1.1), np.full(B, 0.1), np.full(B, 0.2), np.full(B, last_n))
    S.penalties(*args)
    out = benchmark(S.penalties, *args)
    assert out.shape == x.shape
