"""Every "spec §N" cited in the tree names a section of docs/spec.md (issue #16).

Code, comments, tests, docs and CLI help cite the contract as "spec §N" or
"spec §N.M" (several at once: "spec §8 and §12", "spec §4, §4.1, §5"). This test reads
every tracked text file, collects those citations and checks that docs/spec.md has a
heading with each number; it also checks that no citation in the old upper-case form
is left, and that a file which cites the spec names docs/spec.md somewhere
(so a reader knows where "spec" lives; a page in docs/ may link to it instead).
``test_check_fails_*`` show that the checks can fail, on a small tree in tmp_path.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = "docs/spec.md"

NUM = r"\d+(?:\.\d+)?"
# "spec §8", "Spec §4.1", "docs/spec.md §5", "spec §8 and §12", "spec §4, §4.1, §5",
# "spec §§4-5": the citation word, then numbers joined by "," / "and" / "or" / a dash.
CITATION = re.compile(
    rf"\b[Ss]pec(?:\.md)?\s+§+\s*({NUM}(?:\s*(?:,|and|or)\s*§+\s*{NUM}|\s*[-–]\s*§*\s*{NUM})*)")
NUMBER = re.compile(NUM)
# A bare "§N" inside docs/spec.md refers to its own sections.
BARE = re.compile(rf"§\s*({NUM})")
# The old form, upper case, with or without ".md" and the section sign.
OLD = re.compile(r"\bSPEC(?:\.md)?\s*§|\(SPEC \d")
HEADING = re.compile(rf"^#{{2,3}}\s+({NUM})\.?\s", re.M)
SKIP_SUFFIXES = {".png", ".npy", ".npz", ".so", ".pyc", ".whl", ".gz"}


def tracked_files(root):
    """The repository's tracked files (relative paths); a plain walk outside git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                             check=True).stdout.decode()
        return [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "build", "site", "__pycache__", ".hypothesis"}
        found = []
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x not in skip and not x.endswith(".egg-info")]
            found += [os.path.relpath(os.path.join(d, f), root) for f in files]
        return found


def read_text(path):
    if path.suffix in SKIP_SUFFIXES or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def sections(spec_text):
    """The section numbers docs/spec.md defines, as strings ("4", "4.1", ...)."""
    return set(HEADING.findall(spec_text))


def cited(text):
    """``(line, number)`` for every section a "spec §..." citation in ``text`` names."""
    out = []
    for m in CITATION.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out += [(line, n) for n in NUMBER.findall(m.group(1))]
    return out


def names_spec(rel, text, spec=SPEC):
    """Whether a file names the spec: its path, or (a page beside it) a link to it."""
    if spec in text:
        return True
    if Path(rel).parent == Path(spec).parent or Path(spec).parent in Path(rel).parents:
        return re.search(r"\]\((?:\.\./)*" + re.escape(Path(spec).name), text) is not None
    return False


def problems(root, files, spec=SPEC, self_path=None):
    """Every broken or old-style citation under ``root``, one readable line each."""
    spec_text = (Path(root) / spec).read_text(encoding="utf-8")
    known = sections(spec_text)
    found = []
    for rel in files:
        if rel == self_path:
            continue   # this file spells the patterns out
        text = read_text(Path(root) / rel)
        if text is None:
            continue
        refs = cited(text)
        if rel == spec:
            refs += [(text.count("\n", 0, m.start()) + 1, m.group(1))
                     for m in BARE.finditer(text)]
        found += [f"{rel}:{line}: cites spec §{n}, which {spec} does not have"
                  for line, n in refs if n not in known]
        found += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: old citation "
                  f"{m.group(0)!r}; write 'spec §N'" for m in OLD.finditer(text)]
        if refs and rel != spec and not names_spec(rel, text, spec):
            found.append(f"{rel}: cites the spec but never names {spec}")
    return found


def test_spec_has_every_section_number():
    # the contract's numbering, 1-12 and 4.1, stays stable: citations rely on it
    have = sections((ROOT / SPEC).read_text(encoding="utf-8"))
    assert have >= {str(n) for n in range(1, 13)} | {"4.1"}, sorted(have)


def test_every_citation_in_the_tree_names_a_section():
    files = tracked_files(ROOT)
    assert SPEC in files or (ROOT / SPEC).exists()
    assert problems(ROOT, files, self_path="tests/test_spec_citations.py") == []


def test_the_tree_cites_the_spec():
    # Guards the test above against a pattern that silently matches nothing.
    n = sum(len(cited(read_text(ROOT / f) or "")) for f in tracked_files(ROOT))
    assert n >= 100, n


def test_citation_forms():
    text = ("spec §8 and §12; Spec §4, §4.1, §5.\n(docs/spec.md §7) spec §5, with 2 rows;"
            " spec §§4-5")
    assert [n for _, n in cited(text)] == ["8", "12", "4", "4.1", "5", "7", "5", "4", "5"]
    assert cited("the spec is silent; specs 3; §4 alone") == []


def _tree(tmp_path, files):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return list(files)


SMALL_SPEC = "# c\n\n## 1. One\n\ntext, see §2.\n\n## 2. Two\n\n### 2.1 Sub\n"


def test_check_fails_on_a_missing_section(tmp_path):
    files = _tree(tmp_path, {
        "docs/spec.md": SMALL_SPEC,
        "a.py": '"""Rules of docs/spec.md §1 and §2.1."""\n# spec §3 is not there\n',
        "b.c": "/* spec §2.2, docs/spec.md */\n",
    })
    assert problems(tmp_path, files) == [
        "a.py:2: cites spec §3, which docs/spec.md does not have",
        "b.c:1: cites spec §2.2, which docs/spec.md does not have",
    ]


def test_check_fails_on_a_bad_reference_inside_the_spec(tmp_path):
    files = _tree(tmp_path, {"docs/spec.md": SMALL_SPEC + "\nas in §9\n"})
    assert problems(tmp_path, files) == [
        "docs/spec.md:11: cites spec §9, which docs/spec.md does not have"]


# the old citation form, spelled in pieces so that this file does not hold it
OLD_FORM = "SP" + "EC §"


def test_check_fails_on_an_old_citation_and_an_unnamed_spec(tmp_path):
    files = _tree(tmp_path, {
        "docs/spec.md": SMALL_SPEC,
        "a.md": f"The {OLD_FORM}1 rule (docs/spec.md).\n",
        "b.h": "/* NaN rows (SPEC 7) */\n",
        "c.py": "# spec §1 only\n",
        "docs/page.md": "See [spec §1](spec.md#1-one).\n",
        "docs/sub/page.md": "See [spec §2](../spec.md).\n",
        "docs/other.md": "See spec §2 (spec.md).\n",
    })
    assert problems(tmp_path, files) == [
        f"a.md:1: old citation '{OLD_FORM}'; write 'spec §N'",
        "b.h:1: old citation '(SPEC 7'; write 'spec §N'",
        "c.py: cites the spec but never names docs/spec.md",
        "docs/other.md: cites the spec but never names docs/spec.md",
    ]


def test_bench_help_names_the_spec_sections_and_every_workload(capsys):
    from fastsample import cli, workloads

    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "spec §8 and §12" in text and "SPEC" not in text
    assert all(f"{w.id}," in text or f"{w.id};" in text or f"{w.id} " in text
               for w in workloads.WORKLOADS), text
