"""Benchmark workloads W1-W9 (SPEC §8) and their input generators.

Used by ``fastsample bench``, ``fastsample check`` and the pytest-benchmark suite in
``bench/``. Everything here is deterministic: the same arguments give the same arrays
on every machine (numpy's ``default_rng`` seeded with ``[seed, row]``).

- ``llm_like(B, V, seed)`` and ``flat(B, V, seed)`` are the logit generators of SPEC §8.
- ``natural_history(L, V, seed)`` and ``repeated_history(L, V, seed)`` make DRY histories.
- ``WORKLOADS`` is the table of W1-W9; each ``Workload`` has one or more ``Case``\\ s
  (W7 has four: k in {50, 1000} x B in {1, 64}; W8 has three histories).
- ``Case.prepare(vocab=None, seed=0, quick=False)`` builds the inputs once and returns
  a ``Prepared`` with ``call(backend)`` (a zero-argument callable running the public
  API call on that backend) and ``floor()`` (``np.max`` over the same row or rows:
  the cost of reading the input once, the yardstick ratios are taken against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Tuple

import numpy as np

__all__ = [
    "llm_like",
    "flat",
    "natural_history",
    "repeated_history",
    "per_row_w1_params",
    "Case",
    "Workload",
    "Prepared",
    "WORKLOADS",
    "CASES",
    "GENERATORS",
    "DEFAULT_VOCAB",
    "get",
]

#: Llama 3 vocabulary size, the V of every workload in SPEC §8.
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
    """Logits shaped like a language model's next-token distribution (SPEC §8).

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


HISTORIES: Dict[str, Callable[[int, int, int], np.ndarray]] = {
    "natural": natural_history,
    "repeated": repeated_history,
}


# --------------------------------------------------------------------------- W4 parameters
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
    t = np.linspace(0.0, 1.0, B) if B > 1 else np.full(1, 0.5)
    idx = np.arange(B)

    def spread(lo: float, hi: float, stride: int) -> np.ndarray:
        # A fixed permutation of the evenly spaced values (stride coprime-ish with B).
        order = (idx * stride) % B if np.gcd(stride, B) == 1 else idx[::-1]
        return lo + (hi - lo) * t[order]

    return {
        "top_k": np.rint(spread(20.0, 60.0, 1)).astype(np.int64),
        "top_p": spread(0.90, 0.98, 7),
        "min_p": spread(0.02, 0.08, 13),
        "temperature": spread(0.7, 0.9, 29),
    }


# --------------------------------------------------------------------------- table
@dataclass(frozen=True)
class Prepared:
    """Inputs of one case, built once, and the callables that time them."""

    case: "Case"
    V: int
    inputs: Dict[str, Any]
    _call: Callable[[str], Callable[[], Any]] = field(repr=False)
    _floor: Callable[[], Any] = field(repr=False)

    def call(self, backend: str) -> Callable[[], Any]:
        """A zero-argument callable making the public API call on ``backend``."""
        return self._call(backend)

    def floor(self) -> Any:
        """``np.max`` over the same row(s) the call reads: the cost of one read."""
        return self._floor()


@dataclass(frozen=True)
class Case:
    """One measured configuration of a workload (W7 and W8 have several)."""

    workload: str  # "W7"
    name: str  # "k=50 B=1" ("" when the workload has one case)
    op: str  # "sample" | "topk" | "dry_penalty" | "softmax"
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

        if self.op == "sample":
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
        else:  # pragma: no cover - table error
            raise ValueError(f"unknown workload op {self.op!r}")
        return Prepared(case=self, V=V, inputs=inputs, _call=call, _floor=floor)


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
)

#: Every case of every workload, in table order.
CASES: Tuple[Case, ...] = tuple(c for w in WORKLOADS for c in w.cases)


def get(workload_id: str) -> Workload:
    """The workload with this id (``"W1"`` .. ``"W9"``, case-insensitive)."""
    for w in WORKLOADS:
        if w.id.lower() == str(workload_id).lower():
            return w
    raise ValueError(f"unknown workload {workload_id!r}; expected one of "
                     + ", ".join(w.id for w in WORKLOADS))
