"""The API reference (docs/api.md, built by mkdocs + mkdocstrings) stays complete and
renders: every public name of ``fastsample`` has an entry, and the docstrings use no
Sphinx roles, which mkdocstrings prints as raw text (issue #16).
"""

import importlib
import importlib.util
import re
from pathlib import Path

import fastsample as fs

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
ENTRY = re.compile(r"^::: (fastsample(?:\.\w+)+)\s*$", re.M)
ROLE = re.compile(r":(?:func|meth|class|attr|mod|obj|data|exc):`")


def entries(text):
    return set(ENTRY.findall(text))


def test_every_public_name_has_an_entry():
    have = entries(API.read_text(encoding="utf-8"))
    missing = [n for n in fs.__all__ if n != "__version__" and f"fastsample.{n}" not in have]
    assert missing == [], f"add '::: fastsample.NAME' to docs/api.md for {missing}"


def test_entries_name_real_objects():
    # A module entry is found without importing it: an integration module imports its
    # optional peer (llama_cpp, llguidance, ...), which CI does not install.
    for path in sorted(entries(API.read_text(encoding="utf-8"))):
        module, _, attr = path.rpartition(".")
        try:
            found = importlib.util.find_spec(path) is not None
        except ModuleNotFoundError:   # a parent is not a package: path names an object
            found = False
        if not found:
            found = getattr(importlib.import_module(module), attr, None) is not None
        assert found, path


def test_entry_pattern_finds_entries():
    text = "# API\n\n::: fastsample.sample\n\n::: fastsample.integrations.llama_cpp\n    options:\n"
    assert entries(text) == {"fastsample.sample", "fastsample.integrations.llama_cpp"}
    assert entries("text ::: fastsample.sample\n") == set()


def test_no_sphinx_roles_in_the_package_docstrings():
    files = [p for p in (ROOT / "fastsample").rglob("*.py") if "kernels" not in p.parts]
    found = [f"{p.relative_to(ROOT)}:{i}" for p in files
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if ROLE.search(line)]
    assert found == [], f"write ``name`` instead of a :role:`name` at {found}"
    assert ROLE.search("see :func:`fastsample.sample`") and not ROLE.search("``sample``")
