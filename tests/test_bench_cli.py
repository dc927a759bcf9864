"""``fastsample bench``: the JSON document, peers, --batch, --markdown, --plot, progress.

No test here reads a clock or asserts a speed: only the shape and consistency of what
``bench`` prints and writes.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fastsample.cli import bench_runner, peers, report
from fastsample import workloads as wl
from fastsample.cli import main

TIMING = ("median_us", "q1_us", "q3_us", "spread_us", "min_us", "max_us", "ratio_to_floor",
          "floor_median_us", "bytes_per_s")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    """One quick run: W1 (sample), W7 (topk), W8 (DRY) at V=512 on numba with the numpy peer."""
    path = tmp_path_factory.mktemp("bench") / "b.json"
    assert main(["bench", "--quick", "--vocab", "512", "--workloads", "W1,W7,W8", "--repeats", "2",
                 "--backends", "numba", "--peers", "numpy", "--no-progress", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_json_document(doc):
    assert doc["format"] == "fastsample-bench/3"
    for key in ("date", "command", "cpu", "cpu_count", "platform", "versions", "vocab", "quick"):
        assert key in doc, key
    assert doc["backends"] == ["numba"] and doc["peers"] == ["numpy"] and doc["vocab"] == 512
    labels = [lbl for _, lbl in bench_runner.select_cases(["W1", "W7", "W8"], vocab=512, quick=True)]
    assert [r["case"] for r in doc["results"]] == labels
    assert [r["case"] for r in doc["peer_results"]] == labels
    for r, p in zip(doc["results"], doc["peer_results"]):
        assert r["backend"] == "numba" and p["peer"] == "numpy"
        for e in (r, p):
            for key in TIMING:
                assert e[key] > 0, (e["case"], key)
            assert e["q1_us"] <= e["median_us"] <= e["q3_us"]
            assert e["spread_us"] == pytest.approx(e["q3_us"] - e["q1_us"])
            assert e["ratio_to_floor"] == pytest.approx(e["median_us"] / e["floor_median_us"])
            assert e["repeats"] == 2
        # Both were timed against the same floor, and the speed-up is the ratio of medians.
        assert r["floor_median_us"] == p["floor_median_us"]
        assert r["speedup"]["numpy"] == pytest.approx(p["median_us"] / r["median_us"])
        assert p["speedup"] == {}


def test_json_kept_tokens_and_bytes(doc):
    by_case = {r["case"]: r for r in doc["results"]}
    w1 = by_case["W1"]
    x = wl.llm_like(1, 512, 0)[0].astype(np.float64)
    # W1 keeps what min_p 0.05 keeps after top_k 40 and top_p 0.95 (computed naively here).
    order = np.argsort(-x, kind="stable")
    kth = x[order[39]]
    kept = x >= kth
    p = np.exp(x - x.max()) * kept
    p /= p.sum()
    ps = np.sort(p[kept])[::-1]
    n = int(np.searchsorted(np.cumsum(ps), 0.95 - 1e-6) + 1)
    keep_p = p >= ps[n - 1]
    q = np.where(keep_p, p, 0)
    assert w1["kept_tokens"] == int(np.sum(keep_p & (q >= 0.05 * q.max())))
    assert w1["bytes_per_s"] == pytest.approx(512 * 4 / (w1["median_us"] * 1e-6))
    assert by_case["W7 k=50 B=64"]["kept_tokens"] == 50
    assert by_case["W7 k=50 B=64"]["bytes_per_s"] == pytest.approx(64 * 512 * 4 / (by_case["W7 k=50 B=64"]["median_us"] * 1e-6))
    h = by_case["W8 natural L=8192"]
    assert h["bytes_per_s"] == pytest.approx(8192 * 8 / (h["median_us"] * 1e-6))


def test_tables_and_markdown(doc):
    buf = io.StringIO()
    report.bench_tables(doc, file=buf)
    text = buf.getvalue()
    for r in doc["results"]:
        assert f"\n{r['case']}  (B={r['B']}, V=512" in text
    assert "vs numpy" in text and "numpy (peer)" in text
    md = report.bench_markdown(doc)
    rows = [ln for ln in md.splitlines() if ln.startswith("| W")]
    assert len(rows) == 2 * len(doc["results"])
    assert "| vs numpy |" in md


def test_unavailable_peer_is_skipped_with_one_line_note(capsys, monkeypatch):
    monkeypatch.setitem(peers.PEERS, "ghost", peers.Peer("ghost", "not installed anywhere",
                                                          "fastsample_no_such_module"))
    code, out, err = run(capsys, "bench", "--quick", "--vocab", "256", "--workloads", "W2",
                         "--repeats", "1", "--peers", "numpy,ghost", "--backends", "numba")
    assert code == 0, err
    notes = [ln for ln in out.splitlines() if ln.startswith("peer ghost skipped:")]
    assert len(notes) == 1 and "fastsample_no_such_module" in notes[0]
    assert "vs ghost" not in out and "vs numpy" in out


def test_missing_peers_are_named_in_json(tmp_path, capsys):
    missing = {n: peers.get(n).status()[1] for n in peers.names() if not peers.get(n).status()[0]}
    path = tmp_path / "b.json"
    code, out, err = run(capsys, "bench", "--quick", "--vocab", "256", "--workloads", "W5", "--repeats", "1",
                         "--backends", "numba", "--json", str(path))
    assert code == 0, err
    d = json.loads(path.read_text())
    assert d["skipped_peers"] == missing
    assert set(d["peers"]) == set(peers.names()) - set(missing)
    for name in missing:
        assert f"peer {name} skipped: " in out


def test_batch_option_sets_rows_of_logits_workloads(tmp_path, capsys):
    path = tmp_path / "b.json"
    code, _out, err = run(capsys, "bench", "--quick", "--vocab", "256", "--workloads", "W1,W7,W8",
                         "--repeats", "1", "--batch", "3", "--peers", "none", "--backends", "numba",
                         "--json", str(path))
    assert code == 0, err
    d = json.loads(path.read_text())
    cases = [r["case"] for r in d["results"]]
    assert cases == ["W1 B=3", "W7 k=50 B=3", "W7 k=256 B=3",
                     "W8 natural L=8192", "W8 natural L=32768", "W8 repeated L=32768"]
    assert [r["B"] for r in d["results"][:3]] == [3, 3, 3]
    assert d["peer_results"] == []


def test_plot_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    code, _out, err = run(capsys, "bench", "--quick", "--vocab", "256", "--workloads", "W2,W9",
                         "--repeats", "1", "--peers", "numpy", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    code, out, err = run(capsys, "bench", "--quick", "--plot", str(tmp_path / "x.png"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "matplotlib" in err
    assert out == ""  # refused before measuring anything


def test_markdown_option_writes_table(tmp_path, capsys):
    md = tmp_path / "t.md"
    code, _out, err = run(capsys, "bench", "--quick", "--vocab", "256", "--workloads", "W3",
                         "--repeats", "1", "--peers", "numpy", "--markdown", str(md))
    assert code == 0, err
    text = md.read_text()
    assert "| W3 | numba |" in text and "| W3 | numpy (peer) |" in text


def test_progress_bar_goes_to_its_stream_only_when_enabled():
    buf = io.StringIO()
    bar = report.Progress(4, enabled=True, file=buf)
    for i in range(4):
        bar(f"step {i}")
    bar.close()
    assert "[" in buf.getvalue() and "3/4" in buf.getvalue() and "step 3" in buf.getvalue()
    quiet = io.StringIO()
    bar = report.Progress(4, file=quiet)  # a StringIO is not a terminal
    bar("x")
    bar.close()
    assert quiet.getvalue() == ""


def test_default_backends_are_the_available_fast_ones(tmp_path, capsys):
    import fastsample as fs

    path = tmp_path / "b.json"
    code, _out, err = run(capsys, "bench", "--quick", "--vocab", "64", "--workloads", "W2", "--repeats", "1",
                          "--peers", "none", "--json", str(path))
    assert code == 0, err
    fast = [n for n, st in fs.backends().items() if bool(st) and n not in ("numpy", "cuda")]
    assert json.loads(path.read_text())["backends"] == (fast or ["numpy"])


def test_select_cases_dedupes_and_labels():
    assert [lbl for _, lbl in bench_runner.select_cases()] == [c.label for c in wl.CASES]
    got = bench_runner.select_cases(["W4", "W7"], batch=8)
    assert [lbl for _, lbl in got] == ["W4 B=8 per-row", "W7 k=50 B=8", "W7 k=1000 B=8"]
    assert all(c.B == 8 for c, _ in got)


def test_update_readme_splices_only_between_markers():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "update_readme.py"
    spec = importlib.util.spec_from_file_location("update_readme", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = f"# T\nbefore\n{mod.START}\nold table\n{mod.END}\nafter\n"
    assert mod.splice(text, "new | table\n") == f"# T\nbefore\n{mod.START}\nnew | table\n{mod.END}\nafter\n"
    with pytest.raises(SystemExit):
        mod.splice("no markers", "x")
    readme = (path.parent.parent / "README.md").read_text()
    assert readme.count(mod.START) == 1 and readme.count(mod.END) == 1
