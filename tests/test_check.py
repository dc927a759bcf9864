"""``fastsample check``: the chi-square test, the input kinds, and a wrong backend caught."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from fastsample import reference, registry
from fastsample.cli import checker
from fastsample.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- chi-square
def test_chi_square_accepts_draws_from_the_distribution():
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125, 0.0])
    rng = np.random.default_rng(1)
    tokens = rng.choice(p.size, size=5000, p=p)
    res = checker.chi_square(tokens, p)
    assert res["outside"] == 0 and res["df"] == 5
    assert res["p"] > 1e-3


def test_chi_square_rejects_a_wrong_distribution():
    p = np.full(10, 0.1)
    q = np.linspace(1, 2, 10)
    rng = np.random.default_rng(2)
    tokens = rng.choice(10, size=5000, p=q / q.sum())
    assert checker.chi_square(tokens, p)["p"] < checker.CHI2_ALPHA


def test_chi_square_flags_masked_or_out_of_range_tokens():
    p = np.array([0.5, 0.5, 0.0])
    assert checker.chi_square(np.array([0, 1, 2, 0]), p)["outside"] == 1
    assert checker.chi_square(np.array([0, 1, 3]), p)["p"] == 0.0
    assert checker.chi_square(np.array([0, -1]), p)["outside"] == 1


def test_chi_square_pools_rare_tokens_and_single_outcome():
    p = np.array([0.9] + [0.1 / 50] * 50)  # 100 draws: the tail expects 0.2 each
    tokens = np.zeros(100, dtype=np.int64)
    tokens[:10] = np.arange(1, 11)
    res = checker.chi_square(tokens, p)
    assert res["df"] == 1  # the head and the pooled tail
    one = checker.chi_square(np.full(50, 3), np.eye(5)[3])
    assert one == {"stat": 0.0, "df": 0, "p": 1.0, "outside": 0}


def test_chi2_sf_fallback_is_close_to_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for stat, df in ((30.0, 20), (5.0, 3), (120.0, 80)):
        z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / np.sqrt(2 / (9 * df))
        approx = 0.5 * __import__("math").erfc(z / np.sqrt(2))
        assert abs(approx - scipy_stats.chi2.sf(stat, df)) < 0.01


# --------------------------------------------------------------------------- inputs
def test_input_kinds():
    B, V = 3, 500
    for kind in checker.KINDS:
        x = checker.inputs(kind, B, V, 0)
        assert x.shape == (B, V) and x.dtype == np.float32
        assert np.isfinite(x).any(axis=1).all(), kind
        np.testing.assert_array_equal(x, checker.inputs(kind, B, V, 0))
    ties = checker.inputs("ties", B, V, 0)
    assert all(len(np.unique(r)) < V / 4 for r in ties)
    assert (ties.max(axis=1, keepdims=True) == ties).sum(axis=1).min() >= 1
    masked = checker.inputs("masked", B, V, 0)
    assert np.isfinite(masked[0]).sum() == 1
    assert all(0.3 * V < np.isfinite(r).sum() < 0.7 * V for r in masked[1:])
    with pytest.raises(ValueError, match="kind"):
        checker.inputs("nope", 1, 10, 0)


# --------------------------------------------------------------------------- a wrong backend
def _wrong_top_k(logits, k, min_keep):
    """Keeps one token more than the reference's TopK (the k+1-th largest too)."""
    return reference.top_k(logits, np.where(k > 0, k + 1, k), min_keep)


@pytest.fixture
def wrong_backend():
    """A backend "wrong": the reference with a TopK that keeps one token too many."""
    ops = types.SimpleNamespace(**{n: getattr(reference, n) for n in dir(reference) if not n.startswith("_")})
    ops.top_k = _wrong_top_k
    registry.register("wrong", lambda: ops)
    yield "wrong"
    registry._LOADERS.pop("wrong", None)  # unregister: later tests see the usual backends
    registry._CACHE.pop("wrong", None)
    registry._AUTO_CPU.clear()


def test_check_exits_1_on_a_wrong_backend(wrong_backend, tmp_path, capsys):
    path = tmp_path / "check.json"
    code, out, err = run(capsys, "check", "--backends", wrong_backend, "--vocab", "200", "--batch", "2",
                         "--seeds", "4", "--draws", "400", "--json", str(path))
    assert code == 1, out + err
    assert "mismatch" in out
    doc = json.loads(path.read_text())
    assert doc["format"] == "fastsample-check/1" and doc["backends"] == ["wrong"]
    by_name = {r["name"]: r for r in doc["results"]}
    assert doc["mismatches"] == sum(1 for r in doc["results"] if r["ok"] is False) > 0
    # Every spec with TopK fails on its masks; those without it pass.
    for name, r in by_name.items():
        has_topk = name == "TopK" or name.startswith(("W1", "W4", "chain"))
        if name.startswith(("softmax", "log_softmax", "topk", "dry_penalty")):
            assert r["ok"] is True, name
        else:
            assert r["ok"] is (not has_topk), (name, r)
    assert by_name["TopK"]["masks_equal"] is False
    assert "FAIL" in out


def test_check_json_of_the_reference_against_itself(tmp_path, capsys):
    path = tmp_path / "check.json"
    code, out, err = run(capsys, "check", "--backends", "numpy", "--vocab", "128", "--batch", "1",
                         "--seeds", "2", "--draws", "200", "--json", str(path))
    assert code == 0, out + err
    doc = json.loads(path.read_text())
    assert doc["mismatches"] == 0 and doc["kinds"] == list(checker.KINDS)
    chains = [r for r in doc["results"] if "tokens_total" in r]
    assert len(chains) == len(checker.stage_specs(__import__("fastsample"), 128))
    for r in chains:
        assert r["tokens_agree"] == r["tokens_total"] == 2 * len(checker.KINDS)
        assert r["max_rel_diff"] == 0.0 and r["masks_equal"] and r["draws"] == 200
        assert r["draws_outside"] == 0 and r["chi2_p"] >= checker.CHI2_ALPHA


@pytest.mark.parametrize("argv", [["--draws", "0"], ["--atol", "-1"], ["--backends", "nosuch"]])
def test_check_bad_options(capsys, argv):
    code, _out, err = run(capsys, "check", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
