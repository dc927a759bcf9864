"""What only the C stage wrappers (``fastsample.c_backend.stages`` and
``stages_extra``) do: reject per-row parameter arrays of the wrong size with the C
status message. Agreement with the reference, shared bad-input errors and chains run
on every compiled backend in ``test_fast_stages.py``.

Skipped when the C backend is unavailable, unless FASTSAMPLE_REQUIRE_C is set (CI),
where a missing backend fails.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastsample as fs
from fastsample.workloads import llm_like

if not fs.backends()["c"] and not os.environ.get("FASTSAMPLE_REQUIRE_C"):
    pytest.skip(f"C backend unavailable: {fs.backends()['c'].reason}", allow_module_level=True)

from fastsample import c_backend as C


def test_per_row_sizes_checked():
    x = llm_like(2, 10, 0)
    with pytest.raises(ValueError, match="per-row"):
        C.epsilon(x, np.ones(3), 1)
    with pytest.raises(ValueError, match="per-row"):
        C.mirostat(x, np.ones(2), np.ones(5, np.int64))
    with pytest.raises(ValueError, match="per-row"):
        C.top_p(x, np.ones(3), 1)
