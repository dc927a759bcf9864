"""Shared fixtures: the ``backend`` fixture runs a test once per CPU backend.

numpy is the reference and numba a hard dependency, so both must be present; a
backend missing here is a failure, not a skip. The C extension is optional: without
it the C runs are skipped, unless FASTSAMPLE_REQUIRE_C is set (CI), where they fail on
the missing backend. ``fast_backend`` runs a test once per compiled CPU backend
(numba, c).
"""

import os
from pathlib import Path

import pytest

CPU_BACKENDS = ["numpy", "numba", "c"]


def _usable(name):
    """``name``, or a skip when it is the optional C backend and it was not built."""
    from fastsample import registry

    status = registry.backends()[name]
    if not status and name == "c" and not os.environ.get("FASTSAMPLE_REQUIRE_C"):
        pytest.skip(f"C backend unavailable: {status.reason}")
    return name


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return _usable(request.param)


FAST_CPU_BACKENDS = ["numba", "c"]


@pytest.fixture(params=FAST_CPU_BACKENDS)
def fast_backend(request):
    """The name of each compiled CPU backend, for tests of its kernels against the
    reference."""
    return _usable(request.param)


def _cuda_tests_runnable():
    """The CUDA simulator is on, or a GPU is usable (numba-cuda installed)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return True
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 (no numba.cuda, or a broken driver: no GPU tests)
        return False


def pytest_ignore_collect(collection_path, config):
    """tests/cuda runs in its own process, under the simulator or on a GPU: the
    simulator must be switched on before numba is imported, so a plain run skips it
    (``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``)."""
    if collection_path == Path(__file__).parent / "cuda" and not _cuda_tests_runnable():
        return True
    return None
