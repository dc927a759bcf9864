"""Benchmark workloads W1-W10 (docs/spec.md §8, §12) and their input generators.

Used by ``fastsample bench``, ``fastsample check`` and the pytest-benchmark suite in
``bench/``. Everything here is deterministic: the same arguments give the same arrays
on every machine (numpy's ``default_rng`` seeded with ``[seed, row]``).

- ``llm_like(B, V, seed)`` and ``flat(B, V, seed)`` are the logit generators of spec §8.
- ``natural_history(L, V, seed)`` and ``repeated_history(L, V, seed)`` make DRY histories.
- ``WORKLOADS`` is the table of W1-W10; each ``Workload`` has one or more ``Case``
  objects (W7 has four: k in {50, 1000} x B in {1, 64}; W8 has three histories).
- W10a-c (spec §12) are engine loops: one timed call is one token, ``chain.sample`` then
  ``chain.accept``, on a ``SamplerChain`` that starts from a 4096-token history. Two more
  studies ride along: ``W1chain`` (W1 through a chain vs ``fs.sample``) and ``W3rows``
  (W3 and W5 on 16 different rows, for how much top-p's time depends on the row).
- ``Case.prepare(vocab=None, seed=0, quick=False)`` builds the inputs once and returns
  a ``Prepared`` with ``call(backend)`` (a zero-argument callable running the public
  API call on that backend), ``floor()`` (``np.max`` over the same row or rows:
  the cost of reading the input once, the yardstick ratios are taken against) and, for
  ``W1chain``, ``baseline(backend)`` (the ``fs.sample`` call the chain is compared with).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

__all__ = [
    "llm_like",
    "flat",
    "natural_history",
    "repeated_history",
    "engine_histories",
    "per_row_w1_params",
    "per_row_w10_params",
    "engine_chain",
    "chain_stages",
    "engine_loop",
    "W10A_CHAIN",
    "W10B_CHAIN",
    "Case",
    "Workload",
    "Prepared",
    "WORKLOADS",
    "CASES",
    "GENERATORS",
    "DEFAULT_VOCAB",
    "get",
]

#: Llama 3 vocabulary size, the V of every workload in spec §8.
DEFAULT_VOCAB = 128256

#: W1's sampling parameters (llama.cpp defaults).
W1_PARAMS: Mapping[str, Any] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temperature": 0.8}

#: DRY parameters used for W8 (text-generation-webui / llama.cpp recommended values).
W8_PARAMS: Mapping[str, Any] = {
    "multiplier": 0.8,
    "base": 1.75,
    "allowed_length": 2,
    "last_n": -1,
}

#: W10a's chain (spec §12): ``(stage, parameters)`` in order, names as in
#: ``fastsample.reference``. DRY has no breakers here, so that peers without a model's
#: vocabulary (llama.cpp's DRY tokenizes breaker strings) do exactly the same work.
W10A_CHAIN: Tuple[Tuple[str, Mapping[str, Any]], ...] = (
    ("penalties", {"repeat": 1.1, "last_n": 64}),
    ("dry", {"multiplier": 0.8, "base": 1.75, "allowed_length": 2, "last_n": 4096}),
    ("top_k", {"k": 40}),
    ("top_p", {"p": 0.95}),
    ("min_p", {"p": 0.05}),
    ("temperature", {"t": 0.8}),
)

#: W10b's chain (spec §12).
W10B_CHAIN: Tuple[Tuple[str, Mapping[str, Any]], ...] = (
    ("penalties", {"repeat": 1.05, "last_n": 64}),
    ("min_p", {"p": 0.02}),
    ("xtc", {"probability": 0.5, "threshold": 0.1}),
    ("temperature", {"t": 1.0}),
)

#: W10's loop: the history each row starts from, and how many different logits rows
#: (per batch row) the steps cycle through.
ENGINE_PARAMS: Mapping[str, Any] = {"history": 4096, "steps": 4, "per_row": False}

#: W3rows: the two workloads compared row by row, and the number of rows (seeds).
ROW_SPREAD_PARAMS: Mapping[str, Any] = {"pair": ("W3", "W5"), "rows": 16}


# --------------------------------------------------------------------------- logits
def _check_shape(B: int, V: int) -> Tuple[int, int]:
    B = int(B)
    V = int(V)
    if B < 0:
        raise ValueError(f"B must be >= 0, got {B}")
    if V < 1:
        raise ValueError(f"V must be >= 1, got {V}")
    return B, V


def llm_like(B: int, V: int, seed: int = 0) -> np.ndarray:
    """Logits shaped like a language model's next-token distribution (spec §8).

    Per row ``rng = np.random.default_rng([seed, row])``; ``rank = rng.permutation(V)``;
    ``l = -1.5 * log1p(rank) + 0.5 * rng.standard_normal(V)``; float32 ``(B, V)``.
    At V = 128256: p_max about 0.45, top-p 0.95 keeps 150-300 tokens, min-p 0.05 keeps
    5-10, entropy about 3 nats.
    """
    B, V = _check_shape(B, V)
    out = np.empty((B, V), dtype=np.float32)
    for row in range(B):
        rng = np.random.default_rng([seed, row])
        rank = rng.permutation(V)
        out[row] = -1.5 * np.log1p(rank) + 0.5 * rng.standard_normal(V)
    return out


def flat(B: int, V: int, seed: int = 0) -> np.ndarray:
    """Uniform logits in [-1, 1) (llama.cpp's sampler perf test; worst case for truncation).

    Per row ``rng = np.random.default_rng([seed, row])``; ``rng.uniform(-1, 1, V)``;
    float32 ``(B, V)``.
    """
    B, V = _check_shape(B, V)
    out = np.empty((B, V), dtype=np.float32)
    for row in range(B):
        rng = np.random.default_rng([seed, row])
        out[row] = rng.uniform(-1.0, 1.0, V)
    return out


GENERATORS: Dict[str, Callable[[int, int, int], np.ndarray]] = {"llm_like": llm_like, "flat": flat}


def bitmask_allowing(B: int, V: int, density: float, seed: int = 0) -> np.ndarray:
    """W12's packed token bitmasks (docs/spec.md §10): int32 ``(B, ceil(V/32))``, each
    token allowed with probability ``density`` (``rng = default_rng([seed, row, 12])``),
    bits past V clear; at density 0.1 a grammar that allows a tenth of the vocabulary."""
    W = (V + 31) // 32
    out = np.zeros((B, W), np.int32)
    for b in range(B):
        bits = np.random.default_rng([seed, b, 12]).random(W * 32) < density
        bits[V:] = False
        out[b] = np.packbits(bits.astype(np.uint8), bitorder="little").view("<u4").view(np.int32)
    return out


# --------------------------------------------------------------------------- histories
def _history_args(length, V):
    length, V = int(length), int(V)
    if length < 0:
        raise ValueError(f"history length must be >= 0, got {length}")
    if V < 1:
        raise ValueError(f"V must be >= 1, got {V}")
    return length, V


def natural_history(length: int, V: int, seed: int = 0) -> np.ndarray:
    """A natural-looking token history (int64, oldest first), for DRY and penalties.

    Token ids follow a Zipf-like law over a seeded permutation of the vocabulary (a few
    very frequent tokens, a long tail), and about a tenth of the text is made of copies
    of earlier spans (8-64 tokens), as quoted text and code have; so DRY finds real
    repeats of many lengths, as it does in a chat transcript.
    """
    length, V = _history_args(length, V)
    rng = np.random.default_rng([seed, 0x5EED, length])
    perm = rng.permutation(V)
    ranks = (rng.zipf(1.15, size=length) - 1) % V
    hist = perm[ranks].astype(np.int64)
    # Copy earlier spans forward (about 10% of positions).
    pos = 64
    while pos < length:
        pos += int(rng.integers(200, 600))
        if pos >= length:
            break
        span = int(rng.integers(8, 65))
        src = int(rng.integers(0, max(1, pos - span)))
        end = min(length, pos + span)
        hist[pos:end] = hist[src : src + (end - pos)]
        pos = end
    return hist


def repeated_history(length: int, V: int, seed: int = 0) -> np.ndarray:
    """One token repeated ``length`` times (DRY's worst case; int64)."""
    length, V = _history_args(length, V)
    rng = np.random.default_rng([seed, 0xD2, length])
    token = int(rng.integers(0, V))
    return np.full(length, token, dtype=np.int64)


def engine_histories(B: int, length: int, V: int, seed: int = 0) -> list:
    """B natural-looking histories of ``length`` tokens, one per row (W10's requests).

    Row b is ``natural_history(length, V, seed * 65536 + b)``: different text per row,
    the same arrays on every machine.
    """
    return [natural_history(length, V, int(seed) * 65536 + b) for b in range(int(B))]


HISTORIES: Dict[str, Callable[[int, int, int], np.ndarray]] = {
    "natural": natural_history,
    "repeated": repeated_history,
}


# --------------------------------------------------------------------------- per-row parameters, chains
def per_row_w1_params(B: int) -> Dict[str, np.ndarray]:
    """W4's per-row parameters: deterministic arrays spread around W1's values.

    Row b of B gets an evenly spaced value (b / (B-1)) across each range, with the
    ranges permuted differently per parameter so the rows are not all "tight" or all
    "loose" together: top_k in [20, 60] (int64), top_p in [0.90, 0.98], min_p in
    [0.02, 0.08], temperature in [0.7, 0.9] (float64).
    """
    B = int(B)
    if B <= 0:
        return {k: np.zeros(0, dtype=np.int64 if k == "top_k" else np.float64)
                for k in ("top_k", "top_p", "min_p", "temperature")}
    return {
        "top_k": np.rint(_spread(B, 20.0, 60.0, 1)).astype(np.int64),
        "top_p": _spread(B, 0.90, 0.98, 7),
        "min_p": _spread(B, 0.02, 0.08, 13),
        "temperature": _spread(B, 0.7, 0.9, 29),
    }


def _spread(B: int, lo: float, hi: float, stride: int) -> np.ndarray:
    """B evenly spaced values in [lo, hi] (0.5 of the way for B = 1), in a fixed
    permutation that depends on ``stride`` (so parameters do not rise together)."""
    t = np.linspace(0.0, 1.0, B) if B > 1 else np.full(1, 0.5)
    idx = np.arange(B)
    order = (idx * stride) % B if np.gcd(stride, B) == 1 else idx[::-1]
    return lo + (hi - lo) * t[order]


def per_row_w10_params(B: int) -> Dict[str, Dict[str, np.ndarray]]:
    """W10c's per-row parameters, ``{stage: {parameter: (B,) array}}``.

    W4's top_k / top_p / min_p / temperature (``per_row_w1_params``), and the
    penalties' repeat in [1.05, 1.15] and DRY's multiplier in [0.6, 1.0], spread the
    same way; the windows (last_n 64 and 4096) and DRY's base and allowed length stay
    W10a's.
    """
    w1 = per_row_w1_params(B)
    B = int(B)
    return {
        "penalties": {"repeat": _spread(B, 1.05, 1.15, 5) if B > 0 else np.zeros(0)},
        "dry": {"multiplier": _spread(B, 0.6, 1.0, 11) if B > 0 else np.zeros(0)},
        "top_k": {"k": w1["top_k"]},
        "top_p": {"p": w1["top_p"]},
        "min_p": {"p": w1["min_p"]},
        "temperature": {"t": w1["temperature"]},
    }


def engine_chain(chain, B: int = 1, per_row: bool = False) -> list:
    """A W10 chain as ``[(stage, {parameter: value})]`` (copies), per-row if asked.

    ``per_row`` replaces the parameters named by ``per_row_w10_params(B)`` with their
    (B,) arrays; the others stay scalars.
    """
    rows = per_row_w10_params(B) if per_row else {}
    return [(name, {**dict(kw), **{k: v for k, v in rows.get(name, {}).items() if k in kw}})
            for name, kw in chain]


#: fastsample's stage class of each stage name of an engine chain.
_STAGE_CLASS = {"penalties": "Penalties", "dry": "DRY", "top_k": "TopK", "top_p": "TopP",
                "min_p": "MinP", "xtc": "XTC", "temperature": "Temperature"}


def chain_stages(spec) -> list:
    """fastsample stages for ``[(stage, {parameter: value})]`` (``engine_chain``'s form)."""
    import fastsample as fs

    return [getattr(fs, _STAGE_CLASS[name])(**kw) for name, kw in spec]


def engine_loop(chain, steps) -> Callable[[], Any]:
    """One engine step per call: ``chain.sample`` on the next logits of ``steps``
    (cycled), then ``chain.accept`` of the tokens drawn; returns them."""
    nxt = itertools.cycle(steps).__next__

    def step():
        tokens = chain.sample(nxt())
        chain.accept(tokens)
        return tokens

    return step


# --------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Prepared:
    """Inputs of one case, built once, and the callables that time them."""

    case: "Case"
    V: int
    inputs: Dict[str, Any]
    _call: Callable[[str], Callable[[], Any]] = field(repr=False)
    _floor: Callable[[], Any] = field(repr=False)
    _baseline: Callable[[str], Callable[[], Any]] | None = field(default=None, repr=False)

    def call(self, backend: str) -> Callable[[], Any]:
        """A zero-argument callable making the public API call on ``backend``.

        Engine cases (W10, W1chain) build a fresh ``SamplerChain`` per call of this
        method; each call of the callable is one token (sample, then accept).
        """
        return self._call(backend)

    def floor(self) -> Any:
        """``np.max`` over the same row(s) the call reads: the cost of one read."""
        return self._floor()

    @property
    def has_baseline(self) -> bool:
        return self._baseline is not None

    def baseline(self, backend: str) -> Callable[[], Any]:
        """What the case is compared with on the same backend (W1chain: ``fs.sample``)."""
        if self._baseline is None:
            raise ValueError(f"{self.case.label} has no baseline")
        return self._baseline(backend)


@dataclass(frozen=True)
class Case:
    """One measured configuration of a workload (W7 and W8 have several)."""

    workload: str  # "W7"
    name: str  # "k=50 B=1" ("" when the workload has one case)
    op: str  # "sample" | "logprobs" | "topk" | "dry_penalty" | "softmax" | "engine" | "chain_step" | "row_spread"
    generator: str  # "llm_like" | "flat" | "natural" | "repeated"
    B: int
    V: int
    params: Mapping[str, Any]
    quick_params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.label_for()

    def label_for(self, quick: bool = False, vocab: int | None = None) -> str:
        """``"W7 k=50 B=1"``: the name template filled with the parameters in effect."""
        p = self.effective_params(quick)
        V = int(self.V if vocab is None else vocab)
        if "k" in p:
            p["k"] = min(int(p["k"]), V)
        return f"{self.workload} {self.name.format(B=self.B, V=V, **p)}".strip()

    def effective_params(self, quick: bool = False) -> Dict[str, Any]:
        p = dict(self.params)
        if quick:
            p.update(self.quick_params)
        return p

    def prepare(self, vocab: int | None = None, seed: int = 0, quick: bool = False) -> Prepared:
        """Build this case's inputs (``vocab`` overrides V; ``quick`` shortens histories)."""
        import fastsample as fs  # late: workloads is importable before the API is

        V = int(self.V if vocab is None else vocab)
        if V < 2:
            raise ValueError(f"vocab must be >= 2, got {V}")
        params = self.effective_params(quick)

        if self.op in ("sample", "logprobs"):  # W11: fs.sample with logprobs= in params
            logits = GENERATORS[self.generator](self.B, V, seed)
            x = logits[0] if self.B == 1 else logits  # B=1: the single-row (V,) form
            kw = dict(params)
            if kw.pop("per_row", False):
                kw.update(per_row_w1_params(self.B))
            if "top_k" in kw and np.isscalar(kw["top_k"]):
                kw["top_k"] = min(int(kw["top_k"]), V)
            inputs = {"logits": x, **kw}

            def call(backend: str, x=x, kw=kw):
                return lambda: fs.sample(x, seed=seed, position=0, backend=backend, **kw)

            floor = _floor_of(x)
        elif self.op in ("bitmask", "apply_bitmask"):
            return self._prepare_bitmask(V, seed, params)
        elif self.op == "topk":
            logits = GENERATORS[self.generator](self.B, V, seed)
            x = logits[0] if self.B == 1 else logits
            k = min(int(params["k"]), V)
            inputs = {"x": x, "k": k}

            def call(backend: str, x=x, k=k):
                return lambda: fs.topk(x, k, backend=backend)

            floor = _floor_of(x)
        elif self.op == "softmax":
            logits = GENERATORS[self.generator](self.B, V, seed)
            x = logits[0] if self.B == 1 else logits
            inputs = {"x": x}

            def call(backend: str, x=x):
                return lambda: fs.softmax(x, backend=backend)

            floor = _floor_of(x)
        elif self.op == "dry_penalty":
            length = int(params["history"])
            hist = HISTORIES[self.generator](length, V, seed)
            kw = {k: params[k] for k in ("multiplier", "base", "allowed_length", "last_n")}
            breakers = np.asarray(params.get("breakers", ()), dtype=np.int64)
            breakers = breakers[breakers < V]
            if self.generator == "repeated" and hist.size:
                breakers = breakers[breakers != hist[0]]  # keep the worst case a worst case
            inputs = {"history": hist, "vocab_size": V, "breakers": breakers, **kw}

            def call(backend: str, hist=hist, kw=kw, breakers=breakers):
                return lambda: fs.dry_penalty(hist, V, breakers=breakers, backend=backend, **kw)

            # The floor for DRY is one read of its input, the history.
            floor = _floor_of(hist)
        elif self.op == "engine":
            return self._prepare_engine(V, seed, params)
        elif self.op == "chain_step":
            return self._prepare_chain_step(V, seed, params)
        elif self.op == "row_spread":
            return self._prepare_row_spread(V, seed, params)
        elif self.op == "verify":
            return self._prepare_verify(V, seed, params)
        else:  # pragma: no cover - table error
            raise ValueError(f"unknown workload op {self.op!r}")
        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=floor)

    def _prepare_bitmask(self, V: int, seed: int, params: Mapping[str, Any]) -> Prepared:
        """W12: ``fs.sample`` with W1's parameters and a packed bitmask allowing
        ``bitmask_density`` of the vocabulary, timed against the same call without it
        (the baseline); or ``fs.apply_token_bitmask`` alone, in place (as engines mask
        their logits buffer), against the floor ``np.max`` over the batch."""
        import fastsample as fs

        logits = GENERATORS[self.generator](self.B, V, seed)
        x = logits[0] if self.B == 1 else logits
        kw = {k: v for k, v in params.items() if k != "bitmask_density"}
        bm = bitmask_allowing(self.B, V, float(params["bitmask_density"]), seed)
        mask = bm[0] if self.B == 1 else bm
        inputs = {"logits": x, "bitmask": mask, **kw}
        if self.op == "apply_bitmask":
            def call(backend: str, x=x, mask=mask):
                return lambda: fs.apply_token_bitmask(x, mask, out=x, backend=backend)

            return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=_floor_of(x))

        def call(backend: str, x=x, kw=kw, mask=mask):
            return lambda: fs.sample(x, seed=seed, position=0, bitmask=mask, backend=backend, **kw)

        def baseline(backend: str, x=x, kw=kw):
            return lambda: fs.sample(x, seed=seed, position=0, backend=backend, **kw)

        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=_floor_of(x),
                        _baseline=baseline)

    def _prepare_engine(self, V: int, seed: int, params: Mapping[str, Any]) -> Prepared:
        """W10: a chain loaded with per-row histories; ``steps`` different logits per
        row, cycled (step i reads rows i .. i+B-1 of a pool of B + steps - 1 rows, a
        view: no copy is timed)."""
        import fastsample as fs

        B, steps = self.B, int(params["steps"])
        pool = GENERATORS[self.generator](B + steps - 1, V, seed)
        views = [pool[i] for i in range(steps)] if B == 1 else [pool[i: i + B] for i in range(steps)]
        hist = engine_histories(B, int(params["history"]), V, seed)
        spec = engine_chain(params["chain"], B, bool(params.get("per_row")))
        inputs = {"pool": pool, "steps": views, "history": hist, "chain": spec, "seed": seed}

        def call(backend: str):
            chain = fs.SamplerChain(chain_stages(spec), seed=seed, backend=backend)
            chain.load_states([{"history": h} for h in hist])
            return engine_loop(chain, views)

        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=_floor_of(views[0]))

    def _prepare_chain_step(self, V: int, seed: int, params: Mapping[str, Any]) -> Prepared:
        """W1chain: W1's stages as a SamplerChain (sample + accept per token) on W1's
        row; the baseline is ``fs.sample`` with W1's parameters on the same row."""
        import fastsample as fs

        x = GENERATORS[self.generator](1, V, seed)[0]
        kw = dict(params)
        kw["top_k"] = min(int(kw["top_k"]), V)
        spec = [("top_k", {"k": kw["top_k"]}), ("top_p", {"p": kw["top_p"]}),
                ("min_p", {"p": kw["min_p"]}), ("temperature", {"t": kw["temperature"]})]
        inputs = {"logits": x, **kw, "chain": spec}

        def call(backend: str):
            return engine_loop(fs.SamplerChain(chain_stages(spec), seed=seed, backend=backend), [x])

        def baseline(backend: str):
            return lambda: fs.sample(x, seed=seed, position=0, backend=backend, **kw)

        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=_floor_of(x),
                        _baseline=baseline)

    def _prepare_row_spread(self, V: int, seed: int, params: Mapping[str, Any]) -> Prepared:
        """W3rows: the prepared W3 and W5 cases of each row seed (``seed`` .. ``seed +
        rows - 1``). ``call(backend)`` samples W3 on every row once (a sweep)."""
        pair = [get(w).cases[0] for w in params["pair"]]
        rows = [(s, [c.prepare(vocab=V, seed=s) for c in pair])
                for s in range(seed, seed + int(params["rows"]))]
        x = np.stack([preps[0].inputs["logits"] for _, preps in rows])
        inputs = {"rows": rows, "logits": x, "pair": tuple(params["pair"])}

        def call(backend: str):
            fns = [preps[0].call(backend) for _, preps in rows]
            return lambda: [fn() for fn in fns]

        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=_floor_of(x))

    def _prepare_verify(self, V: int, seed: int, params: Mapping[str, Any]) -> Prepared:
        """W13: ``fs.verify`` of B requests with K drafts each, W1's parameters."""
        import fastsample as fs

        K = int(params["K"])
        target, q, drafts = verify_inputs(self.B, K, V, seed)
        probs = q if params.get("draft_probs", True) else None
        kw = {k: params[k] for k in W1_PARAMS}
        kw["top_k"] = min(int(kw["top_k"]), V)
        seeds = np.arange(seed, seed + self.B, dtype=np.uint64)
        inputs = {"target": target, "draft_tokens": drafts, "draft_probs": probs,
                  "method": params["method"], "logits": target[0], **kw}

        def call(backend: str):
            return lambda: fs.verify(target, drafts, probs, method=params["method"], seed=seeds,
                                     position=0, backend=backend, **kw)

        read = [target] if probs is None else [target, probs]
        return Prepared(case=self, V=V, inputs=inputs, _call=call,
                        _floor=lambda: [np.max(a, axis=-1) for a in read])


def verify_inputs(B: int, K: int, V: int, seed: int = 0, noise: float = 1.0):
    """W13's inputs: llm_like target logits ``(B, K+1, V)``, a drafter whose logits are
    the target's plus ``noise`` * standard normal (its probabilities ``(B, K, V)``
    float32), and drafts drawn from it (``(B, K)`` int64)."""
    target = llm_like(B * (K + 1), V, seed).reshape(B, K + 1, V)
    rng = np.random.default_rng([seed, 13])
    q = target[:, :K] + np.float32(noise) * rng.standard_normal((B, K, V), dtype=np.float32)
    q = np.exp(q - q.max(axis=-1, keepdims=True))
    q /= q.sum(axis=-1, keepdims=True)
    cum = np.cumsum(q, axis=-1, dtype=np.float64)
    u = rng.random((B, K, 1)) * cum[..., -1:]
    drafts = np.minimum((cum <= u).sum(axis=-1), V - 1).astype(np.int64)
    return target, q.astype(np.float32), drafts


def _floor_of(x: np.ndarray) -> Callable[[], Any]:
    if x.ndim == 1:
        return lambda: np.max(x)
    return lambda: np.max(x, axis=-1)


@dataclass(frozen=True)
class Workload:
    id: str
    description: str
    op: str
    generator: str
    B: Tuple[int, ...]
    V: int
    params: Mapping[str, Any]
    cases: Tuple[Case, ...]


def _single(wid: str, desc: str, gen: str, B: int, params: Mapping[str, Any]) -> Workload:
    case = Case(wid, "", "sample", gen, B, DEFAULT_VOCAB, dict(params))
    return Workload(wid, desc, "sample", gen, (B,), DEFAULT_VOCAB, dict(params), (case,))


def _engine(wid: str, desc: str, B: int, params: Mapping[str, Any]) -> Workload:
    params = {**ENGINE_PARAMS, **params}
    case = Case(wid, "", "engine", "llm_like", B, DEFAULT_VOCAB, params)
    return Workload(wid, desc, "engine", "llm_like", (B,), DEFAULT_VOCAB, params, (case,))


_V = DEFAULT_VOCAB
_BREAKERS: Tuple[int, ...] = (198, 25, 1, 9)  # example ids; real ones come from fs.dry_breakers

WORKLOADS: Tuple[Workload, ...] = (
    _single("W1", "llm_like B=1: top_k 40, top_p 0.95, min_p 0.05, T 0.8 (llama.cpp defaults)",
            "llm_like", 1, W1_PARAMS),
    _single("W2", "llm_like B=1: min_p 0.05, T 1.0", "llm_like", 1,
            {"min_p": 0.05, "temperature": 1.0}),
    _single("W3", "llm_like B=1: top_p 0.95 only, T 1.0 (no top-k)", "llm_like", 1,
            {"top_p": 0.95, "temperature": 1.0}),
    _single("W4", "llm_like B=64: W1 with per-row parameters (top_k 20-60, top_p 0.90-0.98, "
            "min_p 0.02-0.08, T 0.7-0.9)", "llm_like", 64, {"per_row": True}),
    _single("W5", "llm_like B=1: temperature 0.8 only (draw over the whole vocabulary)",
            "llm_like", 1, {"temperature": 0.8}),
    _single("W6", "flat B=1: top_p 0.95", "flat", 1, {"top_p": 0.95}),
    Workload(
        "W7", "topk k=50 and k=1000, B=1 and B=64 (llm_like)", "topk", "llm_like", (1, 64), _V,
        {"k": (50, 1000)},
        tuple(Case("W7", "k={k} B={B}", "topk", "llm_like", B, _V, {"k": k})
              for k in (50, 1000) for B in (1, 64)),
    ),
    Workload(
        "W8", "dry_penalty: history 8192 and 32768 natural-looking tokens, 32768 of one token "
        "(multiplier 0.8, base 1.75, allowed_length 2)", "dry_penalty", "natural", (1,), _V,
        dict(W8_PARAMS),
        (
            Case("W8", "natural L={history}", "dry_penalty", "natural", 1, _V,
                 {**W8_PARAMS, "history": 8192, "breakers": _BREAKERS}),
            Case("W8", "natural L={history}", "dry_penalty", "natural", 1, _V,
                 {**W8_PARAMS, "history": 32768, "breakers": _BREAKERS}),
            Case("W8", "repeated L={history}", "dry_penalty", "repeated", 1, _V,
                 {**W8_PARAMS, "history": 32768, "breakers": _BREAKERS}),
        ),
    ),
    Workload(
        "W9", "softmax B=64 (llm_like)", "softmax", "llm_like", (64,), _V, {},
        (Case("W9", "B=64", "softmax", "llm_like", 64, _V, {}),),
    ),
    _engine("W10a", "engine loop B=1, history 4096: Penalties(1.1, 64) -> DRY(0.8, 1.75, 2, 4096) "
            "-> TopK 40 -> TopP 0.95 -> MinP 0.05 -> Temperature 0.8; sample + accept per token",
            1, {"chain": W10A_CHAIN}),
    _engine("W10b", "engine loop B=1, history 4096: Penalties(1.05, 64) -> MinP 0.02 "
            "-> XTC(0.5, 0.1) -> Temperature 1.0; sample + accept per token", 1, {"chain": W10B_CHAIN}),
    _engine("W10c", "W10a at B=64 with per-row parameters and per-row histories", 64,
            {"chain": W10A_CHAIN, "per_row": True}),
    Workload(
        "W11", "logprobs: W1 with logprobs=20, raw and processed, B=1 and B=64 (llm_like)",
        "logprobs", "llm_like", (1, 64), _V, {**W1_PARAMS, "logprobs": 20},
        tuple(Case("W11", "{logprobs_mode} B={B}", "logprobs", "llm_like", B, _V,
                   {**W1_PARAMS, "logprobs": 20, "logprobs_mode": mode})
              for B in (1, 64) for mode in ("raw", "processed")),
    ),
    Workload(
        "W12", "bitmask: W1 with a packed token bitmask allowing 10% of the vocabulary, B=1 "
        "and B=64 (baseline: the same call without it); apply_token_bitmask alone, B=64, in "
        "place", "bitmask", "llm_like", (1, 64), _V, {**W1_PARAMS, "bitmask_density": 0.1},
        tuple(Case("W12", "W1 B={B}", "bitmask", "llm_like", B, _V,
                   {**W1_PARAMS, "bitmask_density": 0.1}) for B in (1, 64))
        + (Case("W12", "apply B={B}", "apply_bitmask", "llm_like", 64, _V,
                {"bitmask_density": 0.1}),),
    ),
    Workload(
        "W13", "verify: B=64 requests, K=4 drafts, W1's parameters, draft_probs given "
        "(rejection, exact) or not (rejection, deterministic drafter)", "verify", "llm_like",
        (64,), _V, {**W1_PARAMS, "K": 4},
        tuple(Case("W13", name, "verify", "llm_like", 64, _V,
                   {**W1_PARAMS, "K": 4, "method": method, "draft_probs": probs})
              for name, method, probs in (("rejection B={B} K={K}", "rejection", True),
                                          ("exact B={B} K={K}", "exact", True),
                                          ("rejection q=None B={B} K={K}", "rejection", False))),
    ),
    Workload(
        "W1chain", "W1 as a SamplerChain (sample + accept per token) vs fs.sample, same row",
        "chain_step", "llm_like", (1,), _V, dict(W1_PARAMS),
        (Case("W1chain", "", "chain_step", "llm_like", 1, _V, dict(W1_PARAMS)),),
    ),
    Workload(
        "W3rows", "W3 (top_p 0.95) and W5 (temperature 0.8) on 16 llm_like rows (seeds 0..15): "
        "how much top-p's time depends on the row", "row_spread", "llm_like", (1,), _V,
        dict(ROW_SPREAD_PARAMS),
        (Case("W3rows", "", "row_spread", "llm_like", 1, _V, dict(ROW_SPREAD_PARAMS)),),
    ),
)

#: Every case of every workload, in table order.
CASES: Tuple[Case, ...] = tuple(c for w in WORKLOADS for c in w.cases)


def get(workload_id: str) -> Workload:
    """The workload with this id (``"W1"`` .. ``"W10c"``, ``"W1chain"``, ``"W3rows"``;
    case-insensitive)."""
    for w in WORKLOADS:
        if w.id.lower() == str(workload_id).lower():
            return w
    raise ValueError(f"unknown workload {workload_id!r}; expected one of "
                     + ", ".join(w.id for w in WORKLOADS))
