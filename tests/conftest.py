"""Shared fixtures: the ``backend`` fixture runs a test once per CPU backend.

numpy is the reference and numba a hard dependency, so both must be present; a
backend missing here is a failure, not a skip. The C and CUDA backends join this
list when they exist.
"""

import pytest

CPU_BACKENDS = ["numpy", "numba"]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    return request.param
