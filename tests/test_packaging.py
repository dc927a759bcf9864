"""The top-level ``kernels/`` folder is ``fastsample.kernels`` and never the top-level
package ``kernels``: another distribution of that name (Hugging Face's ``kernels``, which
transformers imports) must win when Python runs from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fastsample import registry

ROOT = Path(__file__).resolve().parents[1]


def _run_from_root(code):
    """``python -c code`` from the repository root (which puts the root first on sys.path)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=False)


@pytest.fixture
def stand_in(tmp_path):
    """A regular package named ``kernels``, in a folder put right after the root on sys.path."""
    pkg = tmp_path / "site" / "kernels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("CUDAProperties = 'the stand-in'\n")
    return pkg.parent


def test_import_kernels_finds_the_other_package(stand_in):
    res = _run_from_root(
        "import sys\n"
        f"sys.path.insert(1, {str(stand_in)!r})  # after the root, before site-packages\n"
        "assert sys.path[0] == ''  # the root (cwd) is searched first\n"
        "import kernels\n"
        "from kernels import CUDAProperties\n"
        "print(kernels.__file__)\n"
    )
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve() == (stand_in / "kernels" / "__init__.py").resolve()


def test_fastsample_kernels_still_import_beside_the_other_package(stand_in):
    res = _run_from_root(
        "import sys\n"
        f"sys.path.insert(1, {str(stand_in)!r})  # after the root, before site-packages\n"
        "import kernels, fastsample as fs\n"
        "from fastsample.kernels import shared\n"
        "from fastsample.kernels.cpu import canonical\n"
        "assert kernels.CUDAProperties == 'the stand-in'\n"
        "assert fs.backends()['numba'].available, fs.backends()['numba'].reason\n"
        "print(canonical.__file__)\n"
    )
    assert res.returncode == 0, res.stderr
    # The kernels are the repository's own files (an editable install) or an installed copy.
    assert Path(res.stdout.strip()).name == "canonical.py"


def test_numba_reason_names_the_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastsample.kernels.cpu.ops", None)  # import -> ImportError
    with pytest.raises(registry.BackendUnavailable) as info:
        registry._load_numba()
    reason = str(info.value)
    assert "not implemented" not in reason
    assert "failed to import" in reason and "fastsample.kernels.cpu.ops" in reason
