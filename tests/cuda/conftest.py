"""CUDA backend tests: run under the simulator or on a GPU, in their own process.

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda -q

``tests/conftest.py`` leaves this folder out of a plain run unless the simulator is
on or a GPU is usable (the simulator must be chosen before numba is imported). Here
the cuda backend must load: a missing backend is a failure, not a skip. Shapes are
tiny (V <= 2048, B <= 4): the simulator runs every thread in Python.

The ``backend`` fixture is "cuda" here, so tests written against the ``backend``
fixture of ``tests/conftest.py`` (the conformance cases) run on cuda when imported.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: naive, conformance

import fastsample as fs


@pytest.fixture(autouse=True, scope="session")
def _fast_switching():
    """The simulator polls its block threads while holding the GIL; a short switch
    interval makes each ``syncthreads`` about 5x cheaper (results are unchanged)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(autouse=True, scope="session")
def _cuda_backend_loads():
    status = fs.backends()["cuda"]
    if not status.available:
        pytest.fail(f"the cuda backend must load for tests/cuda: {status.reason}")


@pytest.fixture
def backend():
    return "cuda"


@pytest.fixture
def dev():
    """Host numpy array -> device array (numba; simulator arrays under the simulator)."""
    from numba import cuda

    return lambda a: cuda.to_device(np.ascontiguousarray(a))

