"""The optional C extension: built and loaded here, explained when missing, optional at
install time unless FASTSAMPLE_REQUIRE_C=1, and cheap to start (no numba import)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastsample as fs
from fastsample import registry

ROOT = Path(__file__).resolve().parents[1]


def test_extension_built_and_loaded():
    import fastsample._ckernels as ck

    assert Path(ck.__file__).parent == Path(fs.__file__).parent
    status = fs.backends()["c"]
    assert status.available and status.reason is None
    assert registry.resolve("auto")[0] == "c"


def test_reason_when_extension_missing(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("fastsample.c_backend")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastsample._ckernels", None)  # import -> ImportError
    with pytest.raises(registry.BackendUnavailable, match="was not built.*pip install"):
        registry._load_c()


def test_fresh_process_samples_without_numba():
    code = (
        "import sys, numpy as np, fastsample as fs\n"
        "x = fs.workloads.llm_like(1, 128256, 0)[0]\n"
        "t = fs.sample(x, top_k=40, top_p=0.95, min_p=0.05, temperature=0.8, backend='c')\n"
        "assert 0 <= t < 128256\n"
        "print(sorted(m for m in sys.modules if m == 'numba' or m.startswith('numba.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def _build_without_compiler(tmp_path, require):
    """``setup.py build_ext`` on a copy of the sources with a compiler that always fails."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("csrc", "fastsample", "kernels"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__", "tests"))
    env = dict(os.environ, CC="/bin/false", FASTSAMPLE_REQUIRE_C="1" if require else "0")
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        check=False, cwd=src, env=env, capture_output=True, text=True)


def test_no_compiler_install_still_succeeds(tmp_path):
    res = _build_without_compiler(tmp_path, require=False)
    assert res.returncode == 0, res.stderr
    assert "C backend not built" in res.stderr


def test_no_compiler_fails_when_c_required(tmp_path):
    res = _build_without_compiler(tmp_path, require=True)
    assert res.returncode != 0
