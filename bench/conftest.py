"""pytest-benchmark suite of the docs/spec.md §8 and §12 workloads (W1-W10c, W1chain, W3rows);
not part of testpaths.

    python -m pytest bench/ --benchmark-only            # measure (full V = 128256)
    python -m pytest bench/ --benchmark-disable -q      # smoke: every call once, short DRY histories
    python -m pytest bench/ --benchmark-only --fs-backends numpy,numba --fs-vocab 32000
    python -m pytest bench/test_workloads.py bench/test_peers.py --benchmark-only --fs-peers torch,llama.cpp

Each workload case is one benchmark group (``benchmark.group``) holding one benchmark
per backend, one per peer (``bench/test_peers.py``), and ``test_floor``: ``np.max`` over
the same input, the cost of reading it once, measured in the same run so ratios are
comparable across machines. ``extra_info`` holds the bytes read, bytes per second and
the tokens the operation keeps per row. W10a-c time one engine step per call (the
chain's ``sample`` then ``accept``, from a 4096-token history); W1chain's group also
holds ``fs.sample`` with W1's parameters (``bench/test_engine.py``); W3rows times W3 over
its 16 rows in one call (``fastsample bench`` gives the per-row table).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fastsample import workloads as wl


def pytest_addoption(parser):
    group = parser.getgroup("fastsample", "fastsample workloads")
    group.addoption("--fs-backends", default=None,
                    help="comma-separated backends to benchmark (default: every available one)")
    group.addoption("--fs-vocab", type=int, default=None,
                    help="vocabulary size instead of 128256")
    group.addoption("--fs-quick", action="store_true", default=False,
                    help="short DRY histories, as `fastsample bench --quick` (implied by --benchmark-disable)")
    group.addoption("--fs-workloads", default=None,
                    help="comma-separated workload ids (default: all: W1..W9, W10a, W10b, W10c, "
                         "W1chain, W3rows)")
    group.addoption("--fs-peers", default=None,
                    help="comma-separated peers (numpy,torch,hf,llama.cpp; default: all; "
                         "a missing one is skipped with its reason)")


def pytest_configure(config):
    config.addinivalue_line("markers", "fs_ops(*ops): parametrize only over the cases of these operations")


def _named(config, option, what, known):
    """The comma-separated names given to ``option`` (each in ``known``), or None."""
    spec = config.getoption(option)
    if not spec:
        return None
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        if n not in known:
            raise pytest.UsageError(f"{option}: unknown {what} {n!r}; known: {', '.join(known)}")
    return names


def _backends(config):
    import fastsample as fs

    statuses = fs.backends()
    names = _named(config, "--fs-backends", "backend", statuses)
    return [n for n, st in statuses.items() if st] if names is None else names


def _cases(config):
    spec = config.getoption("--fs-workloads")
    if not spec:
        return list(wl.CASES)
    ids = {wl.get(s.strip()).id for s in spec.split(",") if s.strip()}
    return [c for c in wl.CASES if c.workload in ids]


def _quick(config) -> bool:
    return bool(config.getoption("--fs-quick") or config.getoption("benchmark_disable", default=False))


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "case" in metafunc.fixturenames:
        cases = _cases(config)
        only = metafunc.definition.get_closest_marker("fs_ops")  # a test for some operations only
        if only is not None:
            cases = [c for c in cases if c.op in only.args]
        vocab = config.getoption("--fs-vocab")
        metafunc.parametrize("case", cases,
                             ids=[c.label_for(quick=_quick(config), vocab=vocab).replace(" ", "-")
                                  for c in cases])
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _backends(config))
    if "peer" in metafunc.fixturenames:
        metafunc.parametrize("peer", _peer_names(config))


def _peer_names(config):
    from fastsample.cli import peers

    names = _named(config, "--fs-peers", "peer", peers.PEERS)
    return peers.names() if names is None else names


_PREPARED: dict = {}


@pytest.fixture
def prepared(case, request):
    """The case's inputs, built once per session (generation is not timed)."""
    config = request.config
    vocab = config.getoption("--fs-vocab")
    quick = _quick(config)
    key = (case.label, vocab, quick)
    if key not in _PREPARED:
        _PREPARED[key] = case.prepare(vocab=vocab, seed=0, quick=quick)
    return _PREPARED[key]


@pytest.fixture
def group_label(case, request):
    return case.label_for(quick=_quick(request.config), vocab=request.config.getoption("--fs-vocab"))


@pytest.fixture
def extra_info():
    """``record`` then ``bytes_per_second``, as a fixture (test modules do not import conftest)."""
    return SimpleNamespace(record=record, bytes_per_second=bytes_per_second)


def record(benchmark, case, prepared, **info):
    """Fill ``benchmark.extra_info`` before timing: the case, bytes read, kept tokens
    per row and ``info``; returns the bytes read (for ``bytes_per_second``)."""
    from fastsample.cli import bench_runner

    nbytes = bench_runner.input_bytes(case, prepared)
    benchmark.extra_info.update({"workload": case.workload, "V": prepared.V, "B": case.B, "op": case.op,
                                 "bytes": nbytes, "kept_tokens": bench_runner.kept_tokens(case, prepared),
                                 **info})
    return nbytes


def bytes_per_second(benchmark, nbytes):
    """Add ``bytes_per_s`` from the median (absent under --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    median = getattr(getattr(stats, "stats", None), "median", None)
    if median:
        benchmark.extra_info["bytes_per_s"] = nbytes / median
