"""Shared fixtures: the ``backend`` fixture runs a test once per CPU backend.

numpy is the reference and numba a hard dependency, so both must be present; a
backend missing here is a failure, not a skip. The C and CUDA backends join this
list when they exist.
"""

import os
from pathlib import Path

import pytest

CPU_BACKENDS = ["numpy", "numba", "c"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param


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
