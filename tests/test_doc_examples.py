"""Every Python example in README.md and docs/ runs (issue #16), so none can rot.

Each ```python fenced block of a page runs in order in one fresh namespace per page
(a later block may use what an earlier one defined), with the repository root as the
working directory. A page whose examples import an optional package (torch,
transformers, llama-cpp-python, CuPy) is skipped by ``pytest.importorskip`` when that
package is missing, with the install line as the reason; CI installs them. Blocks in
other languages (sh, text) are not run. ``test_extraction_*`` show the runner can fail.
"""

import ast
import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# top-level module -> why it is optional (what to install)
OPTIONAL = {
    "torch": "PyTorch is optional: pip install torch==2.13.0",
    "transformers": "transformers is optional: pip install 'transformers>=4.40'",
    "llama_cpp": "llama-cpp-python is optional: pip install llama-cpp-python",
    "cupy": "CuPy is optional (a GPU array library)",
    "tokenizers": "tokenizers is optional: pip install 'fastsample[grammar]'",
    "llguidance": "llguidance is optional: pip install 'fastsample[grammar]'",
}

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
                   re.M | re.S)


def pages():
    """README.md and every Markdown page under docs/, in a stable order."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


def python_blocks(text):
    """``(first line, source)`` of each ```python block of a Markdown text."""
    out = []
    for m in FENCE.finditer(text):
        if m.group("lang") not in ("python", "py"):
            continue
        indent = len(m.group("indent"))
        body = "".join(line[indent:] if line[:indent].isspace() else line
                       for line in m.group("body").splitlines(keepends=True))
        out.append((text.count("\n", 0, m.start()) + 2, body))
    return out


def imported_modules(source):
    """Top-level names of every module a block imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def run_page(path, blocks):
    """Run a page's blocks in order in one namespace; stdout is captured and returned."""
    namespace = {"__name__": "__doc_example__"}
    out = io.StringIO()
    for line, source in blocks:
        code = compile(source, f"{path}:{line}", "exec")
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
    return out.getvalue()


@pytest.fixture
def restore_process_state(monkeypatch):
    """Examples may set environment variables or change directory; undo both."""
    saved = dict(os.environ)
    monkeypatch.chdir(ROOT)
    yield
    os.environ.clear()
    os.environ.update(saved)


PAGES = [p for p in pages() if python_blocks(p.read_text(encoding="utf-8"))]


def test_the_pages_have_examples():
    # Guards against a FENCE that silently finds nothing.
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/spec.md",
            "docs/integrations/engine-loop.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run(page, restore_process_state):
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    for module in sorted(set().union(*(imported_modules(s) for _, s in blocks))):
        if module in OPTIONAL:
            pytest.importorskip(module, reason=OPTIONAL[module])
    run_page(page.relative_to(ROOT).as_posix(), blocks)


def test_extraction_finds_python_blocks_only():
    text = ("intro\n```python\nx = 1\n```\n\n```sh\nexit 1\n```\n"
            "- item\n\n  ```python\n  y = x + 1\n  ```\n```text\nnot code\n```\n")
    blocks = python_blocks(text)
    assert blocks == [(3, "x = 1\n"), (12, "y = x + 1\n")]
    namespace_out = run_page("t.md", blocks + [(0, "print(y)\n")])
    assert namespace_out == "2\n"


def test_extraction_a_broken_example_fails():
    blocks = python_blocks("```python\nimport fastsample as fs\nfs.sample([[1.0, 2.0]], top_p=-1)\n```\n")
    with pytest.raises(ValueError, match="top_p"):
        run_page("t.md", blocks)
    with pytest.raises(NameError):
        run_page("t.md", python_blocks("```python\nundefined_name\n```\n"))


def test_optional_imports_are_seen():
    assert imported_modules("import torch.nn as nn\nfrom transformers import X\n"
                            "from . import y\nimport numpy") == {"torch", "transformers", "numpy"}
