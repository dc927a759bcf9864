"""The ``fastsample`` command line (run in-process through ``main``) and the workloads.

No test here reads a clock: ``bench`` is only checked for what it prints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastsample as fs
from fastsample import workloads as wl
from fastsample.cli import main

FAST_BACKENDS = [n for n, st in fs.backends().items() if n != "numpy" and bool(st)]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "no error message"
    assert len(lines) == 1, err
    assert lines[0].startswith("fastsample: error:") or lines[0].startswith("fastsample sample: error:")
    assert "Traceback" not in err


def save_npy(tmp_path, arr, name="logits.npy"):
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


# --------------------------------------------------------------------------- info
def test_info_lists_every_backend(capsys):
    code, out, err = run(capsys, "info")
    assert code == 0, err
    assert "numpy" in out and "available" in out
    section = out.split("backends:", 1)[1].splitlines()
    for name, st in fs.backends().items():
        line = next((ln for ln in section if ln.strip().startswith(name + " ")), None)
        assert line is not None, f"backend {name} missing from info:\n{out}"
        assert ("not available" in line) == (not bool(st))
    assert np.__version__ in out


# --------------------------------------------------------------------------- sample
W1 = ["--top-k", "40", "--top-p", "0.95", "--min-p", "0.05", "--temperature", "0.8"]


def test_sample_npy_batch_matches_api(tmp_path, capsys):
    logits = wl.llm_like(4, 2000, seed=3)
    path = save_npy(tmp_path, logits)
    code, out, err = run(capsys, "sample", path, *W1, "--seed", "7", "--position", "5",
                         "--backend", "numpy")
    assert code == 0, err
    expected = fs.sample(logits, top_k=40, top_p=0.95, min_p=0.05, temperature=0.8,
                         seed=7, position=5, backend="numpy")
    assert json.loads(out) == np.asarray(expected).tolist()


def test_sample_single_row_prints_an_int(tmp_path, capsys):
    row = wl.llm_like(1, 500, seed=1)[0]
    path = save_npy(tmp_path, row)
    code, out, err = run(capsys, "sample", path, "--seed", "11")
    assert code == 0, err
    tok = json.loads(out)
    assert isinstance(tok, int)
    assert tok == fs.sample(row, seed=11)


def test_sample_npz_per_row_parameters_and_hf_order(tmp_path, capsys):
    logits = wl.llm_like(3, 800, seed=5)
    path = tmp_path / "x.npz"
    np.savez(path, logits=logits, other=np.zeros(3))
    code, out, err = run(capsys, "sample", str(path), "--top-k", "10,20,30", "--top-p", "0.9",
                         "--temperature", "0.7,1.0,1.3", "--seed", "1,2,3", "--position", "4",
                         "--no-temperature-last", "--min-keep", "2", "--backend", "numpy")
    assert code == 0, err
    expected = fs.sample(logits, top_k=np.array([10, 20, 30]), top_p=0.9,
                         temperature=np.array([0.7, 1.0, 1.3]), seed=np.array([1, 2, 3], np.uint64),
                         position=4, temperature_last=False, min_keep=2, backend="numpy")
    assert json.loads(out) == np.asarray(expected).tolist()

    # --key picks an array; a file with several arrays and none called "logits" needs it.
    path2 = tmp_path / "y.npz"
    np.savez(path2, a=logits, b=logits[:1])
    code, out, err = run(capsys, "sample", str(path2), "--key", "b", "--seed", "9")
    assert code == 0, err
    assert json.loads(out) == np.asarray(fs.sample(logits[:1], seed=9)).tolist()
    code, out, err = run(capsys, "sample", str(path2))
    assert_one_line_error(code, err)
    assert "--key" in err


@pytest.mark.parametrize("kind", ["missing", "garbage", "empty", "directory", "pickle"])
def test_sample_bad_file_is_one_line_error(tmp_path, capsys, kind):
    if kind == "missing":
        path = tmp_path / "nope.npy"
    elif kind == "garbage":
        path = tmp_path / "garbage.npy"
        path.write_bytes(b"this is not numpy\x00\x01\x02" * 10)
    elif kind == "empty":
        path = tmp_path / "empty.npy"
        path.write_bytes(b"")
    elif kind == "directory":
        path = tmp_path
    else:
        path = tmp_path / "obj.npy"
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, out, err = run(capsys, "sample", str(path))
    assert_one_line_error(code, err)
    assert out == ""


def test_sample_nan_logits_is_one_line_error(tmp_path, capsys):
    logits = wl.llm_like(2, 100, seed=0)
    logits[1, 7] = np.nan
    path = save_npy(tmp_path, logits)
    code, out, err = run(capsys, "sample", path)
    assert_one_line_error(code, err)
    assert out == ""

    # Engines: --on-invalid flag gives token -1 for the bad row and no error.
    code, out, err = run(capsys, "sample", path, "--on-invalid", "flag")
    assert code == 0, err
    toks = json.loads(out)
    assert toks[1] == -1 and 0 <= toks[0] < 100


@pytest.mark.parametrize("argv", [
    ["sample", "{path}", "--dtype-int"],                 # unknown flag (argparse)
    ["sample", "{path}", "--top-p", "abc"],               # not a number
    ["sample", "{path}", "--top-p", "-0.5"],              # out of range (API)
    ["sample", "{path}", "--top-k", "1,2,3"],             # per-row array of the wrong length
    ["sample", "{path}", "--backend", "nosuch"],          # unknown backend
    ["sample", "{path}", "--on-invalid", "ignore"],       # bad choice (argparse)
])
def test_sample_bad_arguments_are_one_line_errors(tmp_path, capsys, argv):
    path = save_npy(tmp_path, wl.llm_like(2, 50, seed=0))
    code, _out, err = run(capsys, *[a.format(path=path) for a in argv])
    assert_one_line_error(code, err)


def test_sample_int_logits_is_type_error_line(tmp_path, capsys):
    path = save_npy(tmp_path, np.arange(10, dtype=np.int64))
    code, _out, err = run(capsys, "sample", path)
    assert_one_line_error(code, err)


def test_usage_errors_exit_2_without_traceback(capsys):
    for argv in ([], ["nosuchcommand"], ["sample"], ["bench", "--vocab", "x"]):
        code, _out, err = run(capsys, *argv)
        assert code == 2, argv
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and "--help" in err, err


def test_help_exits_0(capsys):
    code, out, _err = run(capsys, "--help")
    assert code == 0
    for cmd in ("info", "sample", "bench", "check"):
        assert cmd in out


# --------------------------------------------------------------------------- bench
def _case_headings(out):
    """The workload case labels heading each bench table ("W7 k=50 B=1  (B=1, ...").)"""
    return [ln.split("  (")[0] for ln in out.splitlines() if ln.startswith("W") and "  (B=" in ln]


def test_bench_quick_prints_every_workload_and_writes_json(tmp_path, capsys):
    jpath = tmp_path / "bench.json"
    code, out, err = run(capsys, "bench", "--quick", "--vocab", "4096", "--backends", "numpy",
                         "--peers", "numpy", "--repeats", "2", "--json", str(jpath))
    assert code == 0, err
    labels = _case_headings(out)
    assert labels == [c.label_for(quick=True, vocab=4096) for c in wl.CASES], out
    doc = json.loads(jpath.read_text())
    assert doc["vocab"] == 4096 and doc["backends"] == ["numpy"]
    res = doc["results"]
    assert {r["workload"] for r in res} == {f"W{i}" for i in range(1, 10)} | {"W10a", "W10b", "W10c", "W11", "W12", "W13", "W1chain"}
    assert len(res) == len([c for c in wl.CASES if c.op != "row_spread"])
    assert [r["workload"] for r in doc["row_spread"]] == ["W3rows"]
    for r in res:
        assert r["backend"] == "numpy" and r["V"] == 4096
        assert r["median_us"] > 0 and r["floor_median_us"] > 0 and r["ratio_to_floor"] > 0
        assert r["q1_us"] <= r["median_us"] <= r["q3_us"]


def test_bench_workload_filter(capsys):
    code, out, err = run(capsys, "bench", "--quick", "--vocab", "512", "--workloads", "W7,w9",
                         "--repeats", "1", "--peers", "none")
    assert code == 0, err
    assert {label.split()[0] for label in _case_headings(out)} == {"W7", "W9"}


@pytest.mark.parametrize("argv", [
    ["bench", "--backends", "nosuch"],
    ["bench", "--vocab", "1"],
    ["bench", "--workloads", "W99"],
    ["bench", "--repeats", "0"],
    ["bench", "--batch", "0"],
    ["bench", "--peers", "nosuch"],
])
def test_bench_bad_options(capsys, argv):
    code, _out, err = run(capsys, *argv)
    assert_one_line_error(code, err)


def test_bench_unavailable_backend_is_an_error(capsys):
    unavailable = [n for n, st in fs.backends().items() if not bool(st)]
    if not unavailable:
        pytest.skip("every backend is available here")
    code, _out, err = run(capsys, "bench", "--quick", "--backends", unavailable[0])
    assert_one_line_error(code, err)
    assert unavailable[0] in err


def test_bench_json_unwritable_path(tmp_path, capsys):
    code, _out, err = run(capsys, "bench", "--quick", "--vocab", "64", "--workloads", "W9", "--peers", "none",
                         "--repeats", "1", "--json", str(tmp_path / "no" / "such" / "dir.json"))
    assert_one_line_error(code, err)


# --------------------------------------------------------------------------- check
def test_check_without_fast_backend_says_so(capsys):
    if FAST_BACKENDS:
        pytest.skip(f"fast backends available: {FAST_BACKENDS}")
    code, out, err = run(capsys, "check")
    assert code == 0, err
    assert "no fast backend" in out


def test_check_reference_against_itself(capsys):
    # Naming numpy exercises the whole checker with the reference on both sides.
    code, out, err = run(capsys, "check", "--backends", "numpy", "--vocab", "300", "--batch", "2",
                         "--seeds", "2", "--draws", "300")
    assert code == 0, out + err
    assert "FAIL" not in out
    for name in ("TopK", "TopP", "MinP", "DRY", "Mirostat", "softmax", "topk k=50", "dry_penalty natural"):
        assert name in out


@pytest.mark.skipif(not FAST_BACKENDS, reason="no fast backend available")
def test_check_fast_backends(capsys):
    code, out, err = run(capsys, "check", "--vocab", "1000", "--seeds", "4", "--draws", "500")
    assert code == 0, out + err


# --------------------------------------------------------------------------- console script
def _console_script():
    cand = Path(sys.executable).parent / ("fastsample.exe" if os.name == "nt" else "fastsample")
    if cand.exists():
        return str(cand)
    return shutil.which("fastsample")


def test_console_script_error_is_one_line(tmp_path):
    script = _console_script()
    if script is None:
        pytest.skip("the fastsample console script is not installed")
    proc = subprocess.run([script, "sample", str(tmp_path / "missing.npy")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("fastsample: error:")


# --------------------------------------------------------------------------- workloads
def test_generators_follow_spec_formulas():
    B, V, seed = 3, 1000, 42
    x = wl.llm_like(B, V, seed)
    f = wl.flat(B, V, seed)
    assert x.dtype == np.float32 and x.shape == (B, V)
    assert f.dtype == np.float32 and f.shape == (B, V)
    for row in range(B):
        rng = np.random.default_rng([seed, row])
        rank = rng.permutation(V)
        ref = (-1.5 * np.log1p(rank) + 0.5 * rng.standard_normal(V)).astype(np.float32)
        np.testing.assert_array_equal(x[row], ref)
        rng = np.random.default_rng([seed, row])
        np.testing.assert_array_equal(f[row], rng.uniform(-1, 1, V).astype(np.float32))
    # Rows are independent of B.
    np.testing.assert_array_equal(wl.llm_like(1, V, seed)[0], x[0])
    assert ((f >= -1) & (f < 1)).all()


def test_llm_like_shape_of_distribution():
    x = wl.llm_like(1, wl.DEFAULT_VOCAB, 0)[0].astype(np.float64)
    p = np.exp(x - x.max())
    p /= p.sum()
    assert 0.3 < p.max() < 0.6
    assert 2.0 < -(p * np.log(p)).sum() < 4.0
    assert 3 <= int((p >= 0.05 * p.max()).sum()) <= 15


def test_workload_table():
    assert [w.id for w in wl.WORKLOADS] == [f"W{i}" for i in range(1, 10)] + [
        "W10a", "W10b", "W10c", "W11", "W12", "W13", "W1chain", "W3rows"]
    assert wl.get("w10C").cases[0].B == 64
    w4 = wl.get("w4")
    assert w4.B == (64,) and w4.cases[0].B == 64
    p = wl.per_row_w1_params(64)
    assert p["top_k"].dtype == np.int64 and p["top_k"].min() == 20 and p["top_k"].max() == 60
    assert np.isclose(p["top_p"].min(), 0.90) and np.isclose(p["top_p"].max(), 0.98)
    assert np.isclose(p["min_p"].min(), 0.02) and np.isclose(p["min_p"].max(), 0.08)
    assert np.isclose(p["temperature"].min(), 0.7) and np.isclose(p["temperature"].max(), 0.9)
    assert len({tuple(v) for v in zip(*p.values())}) == 64  # rows differ
    labels = [c.label for c in wl.get("W7").cases]
    assert labels == ["W7 k=50 B=1", "W7 k=50 B=64", "W7 k=1000 B=1", "W7 k=1000 B=64"]
    assert [c.label for c in wl.get("W8").cases] == [
        "W8 natural L=8192", "W8 natural L=32768", "W8 repeated L=32768"]
    with pytest.raises(ValueError):
        wl.get("W99")


def test_histories():
    h = wl.natural_history(4096, 1000, 0)
    assert h.dtype == np.int64 and h.shape == (4096,)
    assert h.min() >= 0 and h.max() < 1000
    np.testing.assert_array_equal(h, wl.natural_history(4096, 1000, 0))
    assert 50 < len(np.unique(h)) < 1000
    r = wl.repeated_history(100, 1000, 0)
    assert len(np.unique(r)) == 1 and r.shape == (100,)


def test_warmup_names_each_compiled_backend(capsys):
    assert main(["warmup"]) == 0
    out = capsys.readouterr().out
    compiled = [n for n, st in fs.backends().items() if n != "numpy" and bool(st)]
    assert compiled, "numba is a hard dependency: a compiled backend must be available"
    for name in compiled:
        assert f"fastsample warmup: {name}: every kernel ready in" in out
