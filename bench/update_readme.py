"""Regenerate the README's benchmark table and docs/bench.png from one run.

    python bench/update_readme.py                 # the full default run (V = 128256)
    python bench/update_readme.py --quick         # any `fastsample bench` option passes through

Runs ``fastsample bench ... --json docs/bench.json --plot docs/bench.png`` and puts the
markdown of that run (``fastsample.cli.report.bench_markdown``: the main table with W1-W10c,
then the chain-overhead (W1chain) and row-spread (W3rows) tables) between the
``<!-- bench-results:start -->`` and ``<!-- bench-results:end -->`` lines of README.md
(nothing else in the README changes).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench-results:start -->", "<!-- bench-results:end -->"


def splice(readme: str, body: str) -> str:
    """``readme`` with the text between the markers replaced by ``body``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise SystemExit(f"README.md must hold one {START} line followed by one {END} line")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{body.rstrip()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    import json

    from fastsample.cli import report
    from fastsample.cli import main as cli

    out = ROOT / "docs" / "bench.json"
    code = cli(["bench", *argv, "--json", str(out), "--plot", str(ROOT / "docs" / "bench.png")])
    if code:
        return code
    doc = json.loads(out.read_text())
    doc["command"] = " ".join(["python bench/update_readme.py", *argv])  # how to reproduce it
    report.write_json(doc, str(out))
    body = report.bench_markdown(doc) + "\n![fastsample bench](docs/bench.png)\n"
    readme = ROOT / "README.md"
    readme.write_text(splice(readme.read_text(), body))
    print(f"updated {readme.relative_to(ROOT)}, docs/bench.png and docs/bench.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
