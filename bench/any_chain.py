"""Issue #13's "any chain" measure: a SamplerChain's step against the passes its stages need.

Each chain runs as an engine step (``chain.sample`` then ``chain.accept``, a 64-token
history loaded) on four ``llm_like`` rows in turn, V = 128256, and is timed against
``fs.sample`` on the same rows in the same process: W1 (top_k 40, top_p 0.95, min_p
0.05, T 0.8) when the chain's first cut is TopK / TopP / MinP (W3, top_p 0.95 alone,
when the first cut is TopP alone: its mass needs the exp pass over the row), else W5
(temperature 0.8 only: one exp pass) when a stage needs the whole distribution first, and
W1 under the same packed bitmask (W1+mask) for a chain with AllowedTokens or a bitmask. The
two are timed in alternating rounds; each figure is the median of the per-round
medians. Target (issue #13): at most 1.3x its baseline on C, 2x on numba.

``--spread``: per-row ratios instead (each chain against its baseline on the same row,
over 16 llm_like rows and 4 flat rows): the median and the worst row.

Usage: ``python bench/any_chain.py [--backends c,numba] [--rounds 3] [--steps 200] [--spread]
[--only "NAME;NAME"]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastsample as fs
from fastsample.bitmask import pack_ids
from fastsample.workloads import GENERATORS, natural_history

V = 128256
W1 = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8}


def chains():
    """(name, stages, baseline[, sample's keyword arguments]) for the chains measured."""
    return [
        ("W1's stages", [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)], "W1"),
        ("Penalties + W1's stages", [fs.Penalties(1.1, last_n=64), fs.TopK(40), fs.TopP(0.95),
                                     fs.MinP(0.05), fs.Temperature(0.8)], "W1"),
        ("MinP -> XTC -> T", [fs.MinP(0.02), fs.XTC(0.5, 0.1), fs.Temperature(1.0)], "W1"),
        ("TopK -> TopA -> T", [fs.TopK(40), fs.TopA(0.2), fs.Temperature(0.8)], "W1"),
        ("TopK -> DynamicTemperature", [fs.TopK(40), fs.DynamicTemperature(0.8, 0.5)], "W1"),
        ("TopP -> Typical -> T", [fs.TopP(0.95), fs.Typical(0.9), fs.Temperature(0.8)], "W3"),
        ("T first -> TopK -> MinP", [fs.Temperature(0.8), fs.TopK(40), fs.MinP(0.05)], "W5"),
        ("Typical -> T", [fs.Typical(0.9), fs.Temperature(0.8)], "W5"),
        ("TopNSigma -> T", [fs.TopNSigma(1.0), fs.Temperature(0.8)], "W5"),
        ("Penalties + TopNSigma -> T", [fs.Penalties(1.1, last_n=64), fs.TopNSigma(1.0),
                                        fs.Temperature(0.8)], "W5"),
        ("T -> Eta", [fs.Temperature(0.8), fs.Eta(3e-4)], "W5"),
        ("PLess -> T", [fs.PLess(), fs.Temperature(0.8)], "W5"),
        ("TopA -> T", [fs.TopA(0.2), fs.Temperature(0.8)], "W5"),
        ("Epsilon", [fs.Epsilon(3e-4)], "W5"),
        ("Eta", [fs.Eta(3e-4)], "W5"),
        ("TailFree", [fs.TailFree(0.95)], "W5"),
        ("T -> Typical", [fs.Temperature(0.8), fs.Typical(0.9)], "W5"),
        ("T -> TailFree -> MinP", [fs.Temperature(0.8), fs.TailFree(0.95), fs.MinP(0.02)],
         "W5"),
        ("XTC -> Smoothing", [fs.XTC(0.5, 0.1), fs.Smoothing(0.3, 1.5)], "W5"),
        ("XTC first", [fs.XTC(0.5, 0.1), fs.Temperature(1.0)], "W5"),
        ("T -> XTC -> Smoothing", [fs.Temperature(0.8), fs.XTC(0.5, 0.1),
                                   fs.Smoothing(0.3, 1.5)], "W5"),
        ("Smoothing first", [fs.Smoothing(0.3, 1.5)], "W5"),
        ("DynamicTemperature first", [fs.DynamicTemperature(0.8, 0.5)], "W5"),
        ("T -> Mirostat", [fs.Temperature(0.8), fs.Mirostat(5.0, 0.1)], "W5"),
        ("T -> MirostatV2", [fs.Temperature(0.8), fs.MirostatV2(5.0, 0.1)], "W5"),
        ("TopK -> Mirostat", [fs.TopK(40), fs.Mirostat(5.0, 0.1)], "W1"),
        ("MinP -> T -> MirostatV2", [fs.MinP(0.05), fs.Temperature(0.8),
                                     fs.MirostatV2(5.0, 0.1)], "W1"),
        ("Penalties + Typical -> MirostatV2", [fs.Penalties(1.1, last_n=64), fs.Typical(0.9),
                                               fs.MirostatV2(5.0, 0.1)], "W5"),
        # the other edits and terminals an engine passes (OpenAI logit_bias, HF
        # no_repeat_ngram_size, greedy decoding with a repetition penalty, vLLM
        # allowed_token_ids)
        ("LogitBias + W1's stages", [fs.LogitBias(_BIAS), *_w1()], "W1"),
        ("LogitBias + Penalties + W1's stages", [fs.LogitBias(_BIAS), fs.Penalties(1.1, last_n=64),
                                                 *_w1()], "W1"),
        ("LogitBias + Typical -> T", [fs.LogitBias(_BIAS), fs.Typical(0.9), fs.Temperature(0.8)],
         "W5"),
        ("NoRepeatNGram + W1's stages", [fs.NoRepeatNGram(3), *_w1()], "W1"),
        ("Greedy", [fs.Greedy()], "W1"),
        ("Penalties + Greedy", [fs.Penalties(1.1, last_n=64), fs.Greedy()], "W1"),
        ("TopK -> MinP -> Greedy", [fs.TopK(40), fs.MinP(0.05), fs.Greedy()], "W1"),
        ("MinP -> AdaptiveP", [fs.MinP(0.05), fs.AdaptiveP(0.3)], "W1"),
        ("Penalties + TopK -> T -> AdaptiveP", [fs.Penalties(1.1, last_n=64), fs.TopK(40),
                                                fs.Temperature(0.8), fs.AdaptiveP(0.5)], "W1"),
        # a bitmask (vLLM allowed_token_ids; a grammar's mask passed to sample): the
        # baseline is fs.sample's W1 under the same mask
        ("AllowedTokens + W1's stages", [fs.AllowedTokens(_ALLOWED), *_w1()], "W1+mask"),
        ("W1's stages, bitmask", [*_w1()], "W1+mask", {"bitmask": _MASK}),
        ("Penalties + W1's stages, bitmask", [fs.Penalties(1.1, last_n=64), *_w1()], "W1+mask",
         {"bitmask": _MASK}),
        # vLLM bad_words (banned after their prefix) and min_tokens (the stop id banned)
        ("BadWords + MinTokens + W1's stages", [fs.BadWords(_bad_words()),
                                                fs.MinTokens(10**9, [2]), *_w1()], "W1"),
        ("MinTokens + Penalties + Greedy", [fs.MinTokens(10**9, [2, 3]),
                                            fs.Penalties(1.1, last_n=64), fs.Greedy()], "W1"),
    ]


def _bad_words():
    """20 one-token words and, for each of the rows' 64 leading ids, a two-token word
    it starts: most steps draw a prefix, so the next step bans its word's end."""
    rows = GENERATORS["llm_like"](4, V, 0)
    lead = np.unique(np.argsort(rows, axis=1)[:, -64:])
    return ([[int(t)] for t in range(5000, 7000, 100)]
            + [[int(t), int(t) + 1] for t in lead])


# every third token allowed: AllowedTokens' ids and the same packed bitmask
_ALLOWED = np.arange(0, V, 3)
_MASK = pack_ids(_ALLOWED, V)[0]
# a logit_bias of 21 ids, some raised, some lowered
_BIAS = {i: (0.5 if i % 2 else -1.0) for i in range(0, 2000, 97)}


def _w1():
    return [fs.TopK(40), fs.TopP(0.95), fs.MinP(0.05), fs.Temperature(0.8)]


def _baselines(backend):
    """fs.sample's W1, W3 (top_p 0.95, T 0.8), W5 (T 0.8) and W1 under ``_MASK``."""
    return {"W1": lambda v: fs.sample(v, backend=backend, **W1),
            "W3": lambda v: fs.sample(v, backend=backend, top_p=0.95, temperature=0.8),
            "W5": lambda v: fs.sample(v, backend=backend, temperature=0.8),
            "W1+mask": lambda v: fs.sample(v, backend=backend, bitmask=_MASK, **W1)}


def _chosen(only):
    """``chains()``, or those named in ``only`` (names separated by ';')."""
    if only is None:
        return chains()
    names = set(only.split(";"))
    picked = [c for c in chains() if c[0] in names]
    missing = names - {c[0] for c in picked}
    if missing:
        raise SystemExit(f"any_chain: no chain named {sorted(missing)}")
    return picked


def _median_us(fn, rows, steps):
    times = []
    for i in range(steps):
        row = rows[i % len(rows)]
        t0 = time.perf_counter()
        fn(row)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def measure(backend, rounds, steps, only=None):
    rows = GENERATORS["llm_like"](4, V, 0)
    base = _baselines(backend)
    out = []
    for name, stages, ref, *kw in _chosen(only):
        kw = kw[0] if kw else {}
        chain = fs.SamplerChain(stages, seed=0, backend=backend)
        chain.load_states([{"history": natural_history(64, V, 1)}])

        def step(v, chain=chain, kw=kw):
            chain.accept(chain.sample(v, **kw))

        step(rows[0])
        base[ref](rows[0])
        pairs = [(_median_us(step, rows, steps), _median_us(base[ref], rows, steps))
                 for _ in range(rounds)]
        c = float(np.median([p[0] for p in pairs]))
        b = float(np.median([p[1] for p in pairs]))
        out.append((name, ref, c, b, c / b))
    return out


def spread(backend, steps=25, only=None):
    """Per-row ratios: each chain's step on one row against its baseline on the same row
    (each the smaller of two medians of ``steps`` calls), over 16 llm_like rows (seed
    100) and 4 flat rows (seed 7): (name, baseline, llm median, llm max, flat max)."""
    rows = list(GENERATORS["llm_like"](16, V, 100)) + list(GENERATORS["flat"](4, V, 7))
    base = _baselines(backend)

    def best(fn, row):
        return min(_median_us(fn, [row], steps) for _ in range(2))

    out = []
    for name, stages, ref, *kw in _chosen(only):
        kw = kw[0] if kw else {}
        ratios = []
        for i, row in enumerate(rows):
            chain = fs.SamplerChain(stages, seed=i, backend=backend)
            chain.load_states([{"history": natural_history(64, V, 1)}])

            def step(v, chain=chain, kw=kw):
                chain.accept(chain.sample(v, **kw))

            step(row)
            base[ref](row)
            ratios.append(best(step, row) / best(base[ref], row))
        q = np.array(ratios)
        out.append((name, ref, float(np.median(q[:16])), float(q[:16].max()),
                    float(q[16:].max())))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="c,numba")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--only", default=None,
                    help="measure only these chains: their names, separated by ';'")
    ap.add_argument("--spread", action="store_true",
                    help="per-row ratios over 16 llm_like and 4 flat rows instead")
    args = ap.parse_args(argv)
    if args.spread:
        print("| chain | backend | baseline | llm rows median | llm rows max | flat rows max |")
        print("|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            for name, ref, med, mx, fmx in spread(backend, only=args.only):
                print(f"| {name} | {backend} | {ref} | {med:.2f}x | {mx:.2f}x | {fmx:.2f}x |",
                      flush=True)
        return
    print("| chain | backend | chain + accept us | baseline | baseline us | ratio |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for name, ref, c, b, r in measure(backend, args.rounds, args.steps, args.only):
            print(f"| {name} | {backend} | {c:.1f} | {ref} | {b:.1f} | {r:.2f}x |")


if __name__ == "__main__":
    main()
