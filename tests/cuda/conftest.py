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
import threading
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
def _shared_arrays_allocated_once():
    """Make the simulator's shared-array allocation atomic.

    numba-cuda's simulator gives a block one shared array per source line: the first
    thread to reach the line looks it up, finds none, creates it and stores it
    (``FakeCUDAShared.array``), with no lock. Two threads that reach the line together
    can each create their own, and the block's threads then do not share it: a
    reduction or a broadcast through it reads another thread's stale copy. This showed
    as a rare wrong survivor at a cut of the split path (``test_cuda_xtc.py``, about 1
    run in 30 at this switch interval, always after two allocations for one line). On a
    GPU shared memory is shared by construction; this patch only gives the simulator
    the same guarantee (same key: the caller's file and line)."""
    from numba import config

    if not getattr(config, "ENABLE_CUDASIM", False):
        yield
        return
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:   # dynamic shared memory, or refused
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                if isinstance(dtype, types.Type):
                    dtype = numpy_support.as_dtype(dtype)
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array
    yield
    kernelapi.FakeCUDAShared.array = original


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

