"""The engine-loop workloads (W10a-c, docs/spec.md §12), the chain-overhead (W1chain) and
row-spread (W3rows) studies, and their peers.

Built and run at a small V through the runner and the CLI; no test reads a clock or
asserts a speed. Peers are checked against the reference where they do the same work.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import fastsample as fs
from fastsample.cli import bench_runner, peers, report
from fastsample import reference as ref
from fastsample import workloads as wl
from fastsample.cli import main

V = 256


def _case(wid, B=None):
    case = wl.get(wid).cases[0]
    return case if B is None else dataclasses.replace(case, B=B)


def _peer(name):
    ok, reason = peers.get(name).status()
    if not ok:
        pytest.skip(f"peer {name}: {reason}")
    return peers.get(name)


def _tokens(out):
    """A peer's tokens as a flat int64 array (tensor, list of ints)."""
    if hasattr(out, "numpy"):
        return out.numpy().reshape(-1).astype(np.int64)
    return np.asarray(out, dtype=np.int64).reshape(-1)


# --------------------------------------------------------------------------- workloads
def test_w10_chains_are_the_spec_chains():
    assert [n for n, _ in wl.W10A_CHAIN] == ["penalties", "dry", "top_k", "top_p", "min_p", "temperature"]
    assert dict(wl.W10A_CHAIN)["penalties"] == {"repeat": 1.1, "last_n": 64}
    assert dict(wl.W10A_CHAIN)["dry"] == {"multiplier": 0.8, "base": 1.75, "allowed_length": 2, "last_n": 4096}
    assert [n for n, _ in wl.W10B_CHAIN] == ["penalties", "min_p", "xtc", "temperature"]
    assert dict(wl.W10B_CHAIN)["xtc"] == {"probability": 0.5, "threshold": 0.1}
    stages = wl.chain_stages(wl.W10A_CHAIN)
    assert [s.name for s in stages] == ["Penalties", "DRY", "TopK", "TopP", "MinP", "Temperature"]
    assert (stages[0].repeat, stages[0].last_n, stages[1].last_n, stages[5].t) == (1.1, 64, 4096, 0.8)
    for wid, B in (("W10a", 1), ("W10b", 1), ("W10c", 64)):
        (case,) = wl.get(wid).cases
        assert (case.op, case.B, case.params["history"]) == ("engine", B, 4096)


def test_w10c_per_row_parameters_and_histories():
    prep = _case("W10c", B=8).prepare(vocab=V, seed=2)
    spec = dict(prep.inputs["chain"])
    w1 = wl.per_row_w1_params(8)
    np.testing.assert_array_equal(spec["top_k"]["k"], w1["top_k"])
    np.testing.assert_array_equal(spec["temperature"]["t"], w1["temperature"])
    rep = spec["penalties"]["repeat"]
    assert rep.shape == (8,) and rep.min() == pytest.approx(1.05) and rep.max() == pytest.approx(1.15)
    assert len(set(rep.tolist())) == 8  # every row its own value
    assert spec["penalties"]["last_n"] == 64 and spec["dry"]["last_n"] == 4096  # windows stay scalars
    hist = prep.inputs["history"]
    assert len(hist) == 8 and all(h.shape == (4096,) and h.min() >= 0 and h.max() < V for h in hist)
    assert not np.array_equal(hist[0], hist[1])  # per-row histories
    np.testing.assert_array_equal(hist[3], wl.engine_histories(8, 4096, V, 2)[3])  # deterministic


def test_engine_steps_are_distinct_views_of_one_pool():
    prep = _case("W10c", B=3).prepare(vocab=V)
    pool, steps = prep.inputs["pool"], prep.inputs["steps"]
    assert pool.shape == (3 + 4 - 1, V) and len(steps) == 4
    for i, x in enumerate(steps):
        assert x.shape == (3, V) and np.shares_memory(x, pool)
        np.testing.assert_array_equal(x, pool[i: i + 3])
    assert not np.array_equal(steps[0], steps[1])
    one = _case("W10a").prepare(vocab=V)
    assert [x.shape for x in one.inputs["steps"]] == [(V,)] * 4  # B=1: the (V,) form


@pytest.mark.parametrize("wid,B", [("W10a", None), ("W10b", None), ("W10c", 3)])
def test_engine_loop_is_sample_then_accept_over_cycled_steps(wid, B):
    """The timed callable gives the tokens of a hand-written loop: a chain loaded with
    the histories, sampling step i % 4 and accepting what it drew."""
    prep = _case(wid, B).prepare(vocab=V, seed=1)
    fn = prep.call("numpy")
    got = [np.atleast_1d(fn()) for _ in range(6)]
    chain = fs.SamplerChain(wl.chain_stages(prep.inputs["chain"]), seed=1, backend="numpy")
    chain.load_states([{"history": h} for h in prep.inputs["history"]])
    for i in range(6):
        want = np.atleast_1d(chain.sample(prep.inputs["steps"][i % 4]))
        chain.accept(want)
        np.testing.assert_array_equal(got[i], want, err_msg=f"step {i}")


def test_chain_step_and_its_baseline():
    prep = _case("W1chain").prepare(vocab=V, seed=4)
    assert prep.has_baseline
    x = prep.inputs["logits"]
    want = fs.sample(x, top_k=40, top_p=0.95, min_p=0.05, temperature=0.8, seed=4, position=0, backend="numpy")
    assert prep.baseline("numpy")() == want
    step = prep.call("numpy")
    assert step() == want  # the chain's first token is fs.sample's at position 0
    assert not _case("W1").prepare(vocab=V).has_baseline
    with pytest.raises(ValueError, match="no baseline"):
        _case("W1").prepare(vocab=V).baseline("numpy")


def test_row_spread_prepares_w3_and_w5_per_seed():
    prep = _case("W3rows").prepare(vocab=V, seed=5)
    rows = prep.inputs["rows"]
    assert [s for s, _ in rows] == list(range(5, 21))
    for s, (w3, w5) in rows:
        assert (w3.case.workload, w5.case.workload) == ("W3", "W5")
        np.testing.assert_array_equal(w3.inputs["logits"], wl.llm_like(1, V, s)[0])
        assert w3.inputs["top_p"] == 0.95 and w5.inputs["temperature"] == 0.8
    assert len(prep.call("numpy")()) == 16


def test_select_cases_batch_leaves_studies_alone():
    got = dict((c.workload, (c.B, lbl)) for c, lbl in
               bench_runner.select_cases(["W10a", "W10c", "W1chain", "W3rows"], batch=5))
    assert got == {"W10a": (5, "W10a B=5"), "W10c": (5, "W10c B=5 per-row"),
                   "W1chain": (1, "W1chain"), "W3rows": (1, "W3rows")}


# --------------------------------------------------------------------------- runner
def test_measure_interleaved_alternates_batches():
    order = []
    budget = bench_runner.Budget(0.0, 1, 10, 0.0)  # one call per batch
    out = bench_runner.measure_interleaved([lambda: order.append("a"), lambda: order.append("b")],
                                           budget, repeats=4)
    assert [m["repeats"] for m in out] == [4, 4] and [m["number"] for m in out] == [1, 1]
    # Warm-up and calibration of each, then (a calibration call is a slow call's first
    # sample) three rounds of a then b.
    assert "".join(order) == "aabb" + "ab" * 3
    for m in out:
        assert m["q1_us"] <= m["median_us"] <= m["q3_us"]


@pytest.fixture(scope="module")
def doc():
    """One quick runner pass over the new cases on numpy (W10c at B=4) with the numpy peer."""
    cases = bench_runner.select_cases(["W10a", "W10b", "W1chain", "W3rows"], vocab=V, quick=True)
    cases.insert(2, (_case("W10c", B=4), "W10c B=4 per-row"))
    ticks = []
    d = bench_runner.run(backends=["numpy"], peers=["numpy"], cases=cases, vocab=V, quick=True,
                         repeats=2, progress=ticks.append)
    d["_ticks"], d["_steps"] = ticks, bench_runner.steps(cases, 1, 0)
    return d


def test_runner_engine_entries(doc):
    by = {r["case"]: r for r in doc["results"]}
    assert list(by) == ["W10a", "W10b", "W10c B=4 per-row", "W1chain"]
    assert doc["format"] == "fastsample-bench/3"
    for r in doc["results"]:
        assert r["median_us"] > 0 and r["per_row_us"] == pytest.approx(r["median_us"] / r["B"])
        assert 1 <= r["kept_tokens"] <= V
    assert by["W10c B=4 per-row"]["op"] == "engine" and by["W10c B=4 per-row"]["B"] == 4
    assert by["W10a"]["params"]["chain"][1][0] == "dry"
    # The numpy peer is the numpy backend's own measurement; W1chain has no peer.
    assert [p["case"] for p in doc["peer_results"]] == ["W10a", "W10b", "W10c B=4 per-row"]
    assert len(doc["_ticks"]) == doc["_steps"]


def test_runner_chain_overhead_entry(doc):
    (r,) = [r for r in doc["results"] if r["workload"] == "W1chain"]
    assert r["baseline"] == "fs.sample" and r["baseline_median_us"] > 0
    assert r["ratio_to_baseline"] == pytest.approx(r["median_us"] / r["baseline_median_us"])
    assert r["baseline_repeats"] == r["repeats"] == 2


def test_runner_row_spread_entry(doc):
    (r,) = doc["row_spread"]
    assert r["backend"] == "numpy" and r["pair"] == ["W3", "W5"] and len(r["rows"]) == 16
    w3 = np.array([row["W3"]["median_us"] for row in r["rows"]])
    ratio = np.array([row["ratio"] for row in r["rows"]])
    for row in r["rows"]:
        assert row["ratio"] == pytest.approx(row["W3"]["median_us"] / row["W5"]["median_us"])
        assert row["W3"]["repeats"] == 2 and row["kept_tokens"] >= 1
    assert r["median_us"] == pytest.approx(np.median(w3)) and r["max_us"] == pytest.approx(w3.max())
    assert r["max_over_median"] == pytest.approx(w3.max() / np.median(w3))
    assert (r["ratio_median"], r["ratio_max"]) == pytest.approx((np.median(ratio), ratio.max()))
    assert r["kept_tokens"] == pytest.approx(np.mean([row["kept_tokens"] for row in r["rows"]]))


def test_tables_and_markdown_show_the_new_rows(doc):
    import io

    buf = io.StringIO()
    report.bench_tables(doc, file=buf)
    text = buf.getvalue()
    assert "one call = one token: chain.sample + chain.accept" in text
    assert "us/row" in text and "chain/fs.sample" in text
    assert "numpy: W3 over the rows: median" in text and "numpy W3/W5" in text
    md = report.bench_markdown(doc)
    assert "| W10a | numpy |" in md and "/row" in md.split("| W10c B=4 per-row | numpy |")[1].splitlines()[0]
    assert "| W1chain |" not in md  # in its own table
    assert "Chain overhead (W1chain)" in md and "Row spread (W3rows)" in md
    row = [ln for ln in md.splitlines() if ln.startswith("| numpy |")]
    assert len(row) == 2  # one line in each study table


def test_cli_json_carries_the_new_rows(tmp_path, capsys):
    path, md = tmp_path / "b.json", tmp_path / "b.md"
    code = main(["bench", "--quick", "--vocab", "128", "--workloads", "W10a,W10b,W1chain,W3rows",
                 "--repeats", "1", "--backends", "numpy", "--peers", "none", "--no-progress",
                 "--json", str(path), "--markdown", str(md)])
    out, err = capsys.readouterr()
    assert code == 0, err
    d = json.loads(path.read_text())
    assert [r["case"] for r in d["results"]] == ["W10a", "W10b", "W1chain"]
    assert [r["workload"] for r in d["row_spread"]] == ["W3rows"]
    assert "ratio_to_baseline" in d["results"][2]
    assert "W3rows  (B=1, V=128" in out and "Row spread (W3rows)" in md.read_text()


# --------------------------------------------------------------------------- peers
def test_torch_penalties_match_the_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, n, last_n = 5, 40, 12
    x = (rng.standard_normal((B, n)) * 3).astype(np.float32)
    x[1, :3] = -np.inf
    hist = [rng.integers(0, 8, size=L) for L in (30, 5, 12, 0, 20)]  # repeats; short; empty
    hist[1][:3] = [0, 1, 2]  # penalised tokens that are masked stay masked
    repeat, freq, pres = np.array([1.3, 1.1, 0.8, 1.5, 2.0]), np.array([0.0, 0.5, 0.2, 0.1, -0.3]), \
        np.array([0.0, 0.25, 1.0, 0.0, 0.5])
    window = torch.full((B, last_n), n, dtype=torch.int64)
    for b, h in enumerate(hist):
        tail = h[len(h) - min(len(h), last_n):]
        window[b, :tail.size] = torch.from_numpy(tail.astype(np.int64))
    col = lambda v: torch.as_tensor(v, dtype=torch.float32).reshape(B, 1)  # noqa: E731
    got = peers.torch_penalties(torch.from_numpy(x), window, col(repeat), col(freq), col(pres)).numpy()
    want = ref.penalties(x, hist, repeat, freq, pres, np.full(B, last_n))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.isneginf(got[1, :3]).all()
    np.testing.assert_array_equal(got[3], x[3])  # empty history: untouched


def _kept(stages, x, hist, position=None):
    chain = fs.SamplerChain(stages, backend="numpy")
    out = chain.process(np.atleast_2d(x), history=[np.asarray(h) for h in hist],
                        position=position)
    return np.isfinite(out)


def test_torch_engine_peer_tokens_and_window():
    _peer("torch")
    B, last_n = 3, 64
    prep = _case("W10c", B=B).prepare(vocab=V, seed=7)
    eng = peers.get("torch").call(prep.case, prep)
    assert "no DRY" in eng.note
    spec = [(n, kw) for n, kw in prep.inputs["chain"] if n != "dry"]  # what the peer runs
    hist = [list(h) for h in prep.inputs["history"]]
    for i in range(10):
        kept = _kept(wl.chain_stages(spec), prep.inputs["steps"][i % 4], hist)
        toks = _tokens(eng())
        assert kept[np.arange(B), toks].all(), (i, toks)
        for b in range(B):
            hist[b].append(int(toks[b]))
            # The ring holds exactly the row's last last_n tokens.
            assert sorted(eng.window[b].tolist()) == sorted(hist[b][-last_n:])


def test_torch_engine_peer_short_history_ring():
    torch = pytest.importorskip("torch")
    prep = _case("W10a").prepare(vocab=V, seed=0)
    inputs = dict(prep.inputs, history=[np.array([3, 4, 5])])
    eng = peers._TorchEngine(inputs)
    assert eng.window[0, :3].tolist() == [3, 4, 5] and (eng.window[0, 3:] == V).all()
    toks = [int(_tokens(eng())[0]) for _ in range(70)]
    assert sorted(eng.window[0].tolist()) == sorted(([3, 4, 5] + toks)[-64:])
    assert isinstance(eng.window, torch.Tensor)


def test_engine_peers_without_the_stages_say_so():
    b = _case("W10b").prepare(vocab=V)
    a = _case("W10a").prepare(vocab=V)
    with pytest.raises(peers.Unsupported, match="transformers has no DRY"):
        peers.get("hf").call(a.case, a)
    with pytest.raises(peers.Unsupported, match="transformers has no XTC"):
        peers.get("hf").call(b.case, b)
    if peers.get("torch").status()[0]:
        with pytest.raises(peers.Unsupported, match="torch .vLLM. has no XTC"):
            peers.get("torch").call(b.case, b)


@pytest.mark.parametrize("wid,B", [("W10a", None), ("W10c", 3)])
def test_llama_engine_peer_tokens_in_reference_kept_set(wid, B):
    """llama.cpp's chain (penalties, DRY without breakers, top-k/p, min-p, temp) keeps
    what the reference keeps, step after step, with its own tokens accepted."""
    peer = _peer("llama.cpp")
    prep = _case(wid, B).prepare(vocab=V, seed=3)
    fn = peer.call(prep.case, prep)
    stages = wl.chain_stages(prep.inputs["chain"])
    hist = [list(h) for h in prep.inputs["history"]]
    rows = len(hist)
    for i in range(12):
        kept = _kept(stages, prep.inputs["steps"][i % 4], hist)
        toks = _tokens(fn())
        assert kept[np.arange(rows), toks].all(), (i, toks)
        for b in range(rows):
            hist[b].append(int(toks[b]))


def test_llama_engine_chain_processes_like_the_reference():
    """W10a's llama.cpp chain without the draw, fed the same history and then its own
    top token each step: the surviving ids are the reference's kept set, with the same
    logits (float32 rounding), so penalties, DRY and accept do the same work."""
    ll = _peer("llama.cpp") and pytest.importorskip("llama_cpp")
    prep = _case("W10a").prepare(vocab=V, seed=3)
    spec = prep.inputs["chain"]
    hist = list(prep.inputs["history"][0])
    row = peers._LlamaRow(ll, V, peers._engine_rows(spec, 1)[0], seed=None, history=hist)
    stages = wl.chain_stages(spec)
    no_dry = wl.chain_stages([(n, kw) for n, kw in spec if n != "dry"])
    dry_mattered = 0
    for i in range(16):
        x = prep.inputs["steps"][i % 4]
        arr = row.apply(x)
        got = {int(arr.data[j].id): float(arr.data[j].logit) for j in range(arr.size)}
        want = fs.SamplerChain(stages, backend="numpy").process(x, history=np.array(hist))
        kept = np.flatnonzero(np.isfinite(want))
        assert sorted(got) == kept.tolist(), i
        np.testing.assert_allclose([got[t] for t in kept], want[kept], rtol=1e-5)
        plain = fs.SamplerChain(no_dry, backend="numpy").process(x, history=np.array(hist))
        dry_mattered += not np.array_equal(plain, want)
        token = max(got, key=got.get)
        row.accept(token)
        hist.append(token)
    assert dry_mattered >= 4


def test_llama_engine_peer_w10b_tokens_in_xtc_union():
    """XTC rolls its own dice in llama.cpp: its token is in the reference's kept set
    with XTC firing or with XTC off."""
    peer = _peer("llama.cpp")
    prep = _case("W10b").prepare(vocab=V, seed=3)
    fn = peer.call(prep.case, prep)
    spec = prep.inputs["chain"]
    fire = [(n, dict(kw, probability=1.0) if n == "xtc" else kw) for n, kw in spec]
    off = [(n, kw) for n, kw in spec if n != "xtc"]
    hist = [list(prep.inputs["history"][0])]
    differ = 0
    for i in range(40):
        x = prep.inputs["steps"][i % 4]
        k_fire, k_off = _kept(wl.chain_stages(fire), x, hist)[0], _kept(wl.chain_stages(off), x, hist)[0]
        differ += not np.array_equal(k_fire, k_off)
        t = int(_tokens(fn())[0])
        assert k_fire[t] or k_off[t], (i, t)
        hist[0].append(t)
    assert differ >= 10  # XTC had something to remove on many steps


def test_llama_dry_needs_a_window_without_a_model():
    ll = pytest.importorskip("llama_cpp")
    with pytest.raises(peers.Unsupported, match="no model"):
        peers._llama_dry(ll, 0.8, 1.75, 2, -1)
