"""Other samplers to benchmark against: the same stages, in the same order, on the same logits.

A peer is an optional extra. ``Peer.status()`` says whether it can run here (and, if not,
the one-line reason); ``Peer.call(case, prepared)`` returns a zero-argument callable
doing the workload's job the peer's own way, or raises ``Unsupported`` naming why the
peer has no such operation.

- ``numpy``: the reference, ``fastsample.reference`` through the public API (always).
- ``torch``: PyTorch CPU tensors, sampled as vLLM and transformers do natively: sort,
  softmax, cumulative sum, mask, scatter back, ``torch.multinomial``.
- ``hf``: transformers' logits warpers (TopK, TopP, MinP, Temperature), then softmax and
  ``torch.multinomial``.
- ``llama.cpp``: llama.cpp's own sampler chain through llama-cpp-python's low-level API,
  with no model: each call fills a ``llama_token_data_array`` (id, logit, p) over a numpy
  buffer, as llama.cpp does for every token, and applies the chain.

Sampling workloads use llama.cpp's order (top_k -> top_p -> min_p -> temperature ->
draw), disabled stages left out. Per-row parameters (W4) are tensors for ``torch``; the
``hf`` warpers and llama.cpp chains take scalars, so they run one row at a time with a
chain per row, as an engine using them would.

Engine loops (W10, docs/spec.md §12), one token per call: llama.cpp runs its chain (penalties,
dry, top_k, top_p, min_p, xtc, temp, dist) and then ``llama_sampler_accept`` of the token,
one chain per row, each having accepted the row's history first (no model: DRY gets no
vocabulary and no breakers, which this llama.cpp allows). ``torch`` does what vLLM does:
a bincount of each row's recent tokens (``scatter_add_`` into ``(B, V + 1)`` with V as
padding), the repetition / frequency / presence penalties from it, then its top-k /
top-p / min-p, temperature and draw; vLLM has no DRY or XTC, so W10b is unsupported and
W10a / W10c run without DRY (the result says so in its ``note``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PEERS", "Peer", "Unsupported", "get", "names", "sample_stages", "torch_penalties"]

#: The install commands shown when a peer is missing (torch pinned: a bare ``torch``
#: requirement pulls a multi-GB CUDA build).
INSTALL = {
    "torch": "pip install torch==2.13.0",
    "hf": "pip install transformers torch==2.13.0",
    "llama.cpp": "pip install llama-cpp-python (compiles llama.cpp; needs cmake and a C++ compiler)",
}


class Unsupported(Exception):
    """The peer has no implementation of this workload's operation."""


_OFF = {"top_k": lambda v: v <= 0, "top_p": lambda v: v >= 1, "min_p": lambda v: v <= 0,
        "temperature": lambda v: v == 1}


def sample_stages(params: dict[str, Any]) -> list[tuple]:
    """The enabled stages of a sampling workload, in llama.cpp's order.

    ``params`` holds any of ``top_k``, ``top_p``, ``min_p``, ``temperature`` (scalars or
    per-row arrays). A stage is left out when it is disabled on every row (top_k <= 0,
    top_p >= 1, min_p <= 0, temperature == 1), as fastsample's own chain does.
    """
    return [(name, params[name]) for name, off in _OFF.items()
            if name in params and not np.all(off(np.asarray(params[name])))]


def _rows(x: np.ndarray) -> np.ndarray:
    return x[None, :] if x.ndim == 1 else x


def _row_params(stages: list[tuple], B: int) -> list[list[tuple]]:
    """Per-row scalar stage lists, without the stages disabled on that row (for peers
    whose stages take one value)."""
    rows = []
    for b in range(B):
        row = [(n, float(np.broadcast_to(np.asarray(v), (B,))[b])) for n, v in stages]
        rows.append([(n, v) for n, v in row if not _OFF[n](v)])
    return rows


@dataclass
class Peer:
    """One comparison implementation."""

    name: str
    description: str
    module: str | None  # the package the peer needs (None: always there)
    requires: tuple = ()  # other packages it needs

    def status(self) -> tuple:
        """``(True, None)`` or ``(False, reason)`` (one line, with the install command).

        Only looks the packages up (importing transformers takes seconds); a package
        that is found but fails to import is reported when the peer is first called.
        """
        for mod in ((self.module,) if self.module else ()) + tuple(self.requires):
            if importlib.util.find_spec(mod) is None:
                return False, f"{mod} is not installed; install: {INSTALL.get(self.name, '')}"
        return True, None

    def version(self) -> str | None:
        if self.module is None:
            return np.__version__
        try:
            mod = importlib.import_module(self.module.split(".")[0])
        except Exception:  # noqa: BLE001 - a broken install has no version to report
            return None
        return str(getattr(mod, "__version__", "installed"))

    def call(self, case, prepared) -> Callable[[], Any]:
        builder = _BUILDERS[self.name].get(case.op)
        if builder is None:
            raise Unsupported(f"{self.name} has no {case.op}")
        return builder(prepared)


# --------------------------------------------------------------------------- numpy
def _numpy_call(prepared):
    return prepared.call("numpy")


# --------------------------------------------------------------------------- torch
def _torch_rows(prepared, key):
    import torch

    return torch.from_numpy(np.ascontiguousarray(_rows(prepared.inputs[key])))


def _torch_param(torch, v, B, dtype):
    """A scalar stays a Python number; a per-row array becomes a (B, 1) tensor."""
    if np.ndim(v) == 0:
        return v
    return torch.as_tensor(np.asarray(v), dtype=dtype).reshape(B, 1)


def _torch_sample(prepared):
    x = _torch_rows(prepared, "logits")
    draw = _torch_draw(dict(sample_stages(prepared.inputs)), *x.shape)
    return lambda: draw(x)


def _torch_unpack(torch, bitmask, V):
    """vLLM's torch fallback of the bitmask: the packed int32 words unpacked to a bool
    mask of the disallowed tokens (bit v % 32 of word v // 32), ``(B, V)``."""
    words = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(bitmask)))
    bits = (words.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return (bits.reshape(words.shape[0], -1)[:, :V] == 0)


def _torch_bitmask(prepared):
    """W12 the vLLM way: unpack the bitmask, ``masked_fill`` the logits with -inf, then
    the torch draw (``apply_bitmask``: the unpack and an in-place ``masked_fill_``)."""
    import torch

    x = _torch_rows(prepared, "logits")
    bm = prepared.inputs["bitmask"]
    V = x.shape[1]
    if prepared.case.op == "apply_bitmask":
        x = x.clone()   # the peer's own buffer, masked in place like vLLM's logits
        return lambda: x.masked_fill_(_torch_unpack(torch, bm, V), float("-inf"))
    draw = _torch_draw(dict(sample_stages(prepared.inputs)), *x.shape)
    return lambda: draw(x.masked_fill(_torch_unpack(torch, bm, V), float("-inf")))


def _torch_logprobs(prepared):
    """W11 the way vLLM computes logprobs: the draw, then ``log_softmax`` of the raw
    logits (or of the processed ones the draw used), ``topk``, ``gather`` of the sampled
    token's logprob and its rank as the count of greater logprobs."""
    x = _torch_rows(prepared, "logits")
    n = int(prepared.inputs["logprobs"])
    raw = prepared.inputs.get("logprobs_mode", "raw") == "raw"
    draw = _torch_draw(dict(sample_stages(prepared.inputs)), *x.shape, with_logits=True)

    def run():
        tokens, processed = draw(x)
        lp = (x if raw else processed).log_softmax(dim=-1)
        top_lp, top_ids = lp.topk(n, dim=-1)
        token_lp = lp.gather(-1, tokens)
        rank = (lp > token_lp).sum(-1) + 1
        return tokens, token_lp, rank, top_ids, top_lp

    return run


def _torch_draw(kinds, B, V, with_logits=False, process_only=False):
    """``logits -> (B, 1) tokens``: top_k, top_p, min_p, temperature (those in ``kinds``,
    scalars or per-row arrays), softmax and ``torch.multinomial``; ``with_logits``:
    ``(tokens, the logits the draw used)``; ``process_only``: those logits alone."""
    import torch

    gen = torch.Generator().manual_seed(0)
    k = _torch_param(torch, kinds.get("top_k"), B, torch.int64)
    p = _torch_param(torch, kinds.get("top_p"), B, torch.float32)
    mp = _torch_param(torch, kinds.get("min_p"), B, torch.float32)
    t = _torch_param(torch, kinds.get("temperature"), B, torch.float32)
    if k is not None and np.ndim(k) == 0:
        k = min(int(k), V)

    def run(logits):
        if "top_k" in kinds or "top_p" in kinds:
            # One ascending sort serves both truncations; the result is scattered back.
            srt, idx = logits.sort(dim=-1)
            srt = srt.clone()
            if "top_k" in kinds:
                # Per-row k: a disabled row (k <= 0) keeps all V.
                kk = k if isinstance(k, int) else k.masked_fill(k <= 0, V).clamp(max=V)
                cut = srt[:, V - kk: V - kk + 1] if isinstance(kk, int) else srt.gather(1, V - kk)
                srt.masked_fill_(srt < cut, float("-inf"))
            if "top_p" in kinds:
                cum = srt.softmax(dim=-1).cumsum(dim=-1)
                drop = cum <= 1 - p
                drop[:, -1] = False  # the most likely token always stays
                srt.masked_fill_(drop, float("-inf"))
            logits = torch.empty_like(srt).scatter_(1, idx, srt)
        if "min_p" in kinds:
            probs = logits.softmax(dim=-1)
            top = probs.amax(dim=-1, keepdim=True)
            logits = logits.masked_fill(probs < mp * top, float("-inf"))
        if "temperature" in kinds:
            logits = logits / t
        if process_only:
            return logits
        probs = logits.softmax(dim=-1)
        tokens = torch.multinomial(probs, 1, generator=gen)
        return (tokens, logits) if with_logits else tokens

    return run


def _torch_verify(prepared):
    """W13 the way vLLM's rejection sampler works, written plainly in torch: the target
    logits processed (top_k, top_p, min_p, temperature, as ``_torch_draw``) and
    softmaxed, the accept test u < min(1, p(d) / q(d)), the recovered distribution
    normalise(max(0, p - q)) and ``torch.multinomial`` for it and the bonus token."""
    import torch

    inp = prepared.inputs
    if inp["method"] != "rejection":
        raise Unsupported("torch (vLLM's algorithm) has rejection sampling only")
    target = torch.from_numpy(np.ascontiguousarray(inp["target"]))
    B, K1, V = target.shape
    K = K1 - 1
    d = torch.from_numpy(np.asarray(inp["draft_tokens"], np.int64)).reshape(B, K, 1)
    q = None if inp["draft_probs"] is None else torch.from_numpy(inp["draft_probs"])
    process = _torch_draw(dict(sample_stages(inp)), B * K1, V, process_only=True)
    gen = torch.Generator().manual_seed(0)

    def run():
        p = process(target.reshape(B * K1, V)).softmax(dim=-1).reshape(B, K1, V)
        pd = p[:, :K].gather(2, d).squeeze(2)
        qd = torch.ones_like(pd) if q is None else q.gather(2, d).squeeze(2)
        accept = torch.rand(B, K, generator=gen) < (pd / qd).clamp(max=1.0)
        n_acc = accept.to(torch.int64).cumprod(dim=1).sum(dim=1)
        if q is None:   # a deterministic drafter: q one-hot on the draft
            resid = p[:, :K].scatter(2, d, 0.0)
        else:
            resid = (p[:, :K] - q).clamp(min=0.0)
        resid = resid / resid.sum(dim=-1, keepdim=True).clamp(min=1e-30)
        recovered = torch.multinomial(resid.reshape(B * K, V), 1, generator=gen).reshape(B, K)
        bonus = torch.multinomial(p[:, K], 1, generator=gen)
        emitted = torch.cat([recovered, bonus], dim=1).gather(1, n_acc[:, None])
        out = torch.full((B, K1), -1, dtype=torch.int64)
        steps = torch.arange(K1)[None, :]
        out[:, :K] = torch.where(steps[:, :K] < n_acc[:, None], d.squeeze(2), -1)
        out.scatter_(1, n_acc[:, None], emitted)
        return out, n_acc

    return run


def torch_penalties(logits, tokens, repeat, frequency, presence):
    """Repetition, frequency and presence penalties as vLLM applies them, in torch.

    ``tokens`` (B, L) int64 holds each row's recent tokens, padded with V (the
    vocabulary size, an id no logit has); the counts are a bincount of them
    (``scatter_add_`` into a zeroed ``(B, V + 1)``, the padding column dropped). Tokens
    with a count: ``l / repeat`` where ``l > 0``, else ``l * repeat``; then every token
    loses ``count * frequency + (count > 0) * presence``. Parameters: scalars or (B, 1)
    tensors. Returns new logits.
    """
    import torch

    B, V = logits.shape
    counts = torch.zeros((B, V + 1), dtype=torch.int64)
    counts.scatter_add_(1, tokens, torch.ones_like(tokens))
    counts = counts[:, :V]
    seen = counts > 0
    scale = torch.where(seen, torch.as_tensor(repeat, dtype=logits.dtype), 1.0)
    logits = torch.where(logits > 0, logits / scale, logits * scale)
    return logits - frequency * counts - presence * seen


#: Engine-chain stages torch (vLLM) has, and those it lacks (named in the result's note).
_TORCH_ENGINE = {"penalties", "top_k", "top_p", "min_p", "temperature"}
_TORCH_SKIPS = {"dry": "DRY"}


def _torch_engine(prepared):
    spec = dict(prepared.inputs["chain"])
    missing = set(spec) - _TORCH_ENGINE - set(_TORCH_SKIPS)
    if missing:
        raise Unsupported(f"torch (vLLM) has no {', '.join(sorted(m.upper() for m in missing))}")
    return _TorchEngine(prepared.inputs)


class _TorchEngine:
    """One engine step per call, vLLM's way: bincount penalties over each row's last
    ``last_n`` tokens (a ring, ``window``), truncations, draw, then the tokens replace
    each row's oldest in the ring."""

    def __init__(self, inp):
        import torch

        spec = dict(inp["chain"])
        steps = [torch.from_numpy(np.ascontiguousarray(_rows(v))) for v in inp["steps"]]
        self.steps = itertools.cycle(steps)
        B, V = _rows(inp["steps"][0]).shape
        self.draw = _torch_draw(_simple_kinds(inp["chain"]), B, V)
        self.window = None
        pen = spec.get("penalties")
        if pen is not None:
            self.last_n = int(pen["last_n"])
            if self.last_n <= 0:
                raise Unsupported("the torch peer keeps a window of the last last_n > 0 tokens")
            self.params = [_torch_param(torch, pen.get(k, d), B, torch.float32)
                           for k, d in (("repeat", 1.0), ("frequency", 0.0), ("presence", 0.0))]
            # V pads a short history (vLLM's padding id); ptr: each row's next (oldest) slot.
            self.window = torch.full((B, self.last_n), V, dtype=torch.int64)
            self.ptr = torch.zeros(B, dtype=torch.int64)
            for b, h in enumerate(inp["history"]):
                tail = np.asarray(h[len(h) - min(len(h), self.last_n):], dtype=np.int64)
                self.window[b, :tail.size] = torch.from_numpy(tail)
                self.ptr[b] = tail.size % self.last_n
            self.rows = torch.arange(B)
        skipped = [_TORCH_SKIPS[n] for n in spec if n in _TORCH_SKIPS]
        self.note = None if not skipped else (
            f"no {', '.join(skipped)} (vLLM has none): penalties by bincount, "
            + ", ".join(n for n in ("top_k", "top_p", "min_p", "temperature") if n in spec)
            + ", multinomial: less work than the workload's chain")

    def __call__(self):
        logits = next(self.steps)
        if self.window is not None:
            logits = torch_penalties(logits, self.window, *self.params)
        tokens = self.draw(logits)
        if self.window is not None:  # accept
            self.window[self.rows, self.ptr] = tokens[:, 0]
            self.ptr.add_(1).remainder_(self.last_n)
        return tokens


def _torch_topk(prepared):
    x = _torch_rows(prepared, "x")
    k = int(prepared.inputs["k"])
    return lambda: x.topk(k, dim=-1)


def _torch_softmax(prepared):
    x = _torch_rows(prepared, "x")
    return lambda: x.softmax(dim=-1)


# --------------------------------------------------------------------------- hf
def _hf_sample(prepared):
    import torch
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    make = {"top_k": lambda v: TopKLogitsWarper(int(v)), "top_p": TopPLogitsWarper,
            "min_p": MinPLogitsWarper, "temperature": TemperatureLogitsWarper}
    x = _torch_rows(prepared, "logits")
    B = x.shape[0]
    stages = sample_stages(prepared.inputs)
    gen = torch.Generator().manual_seed(0)
    ids = torch.zeros((1, 1), dtype=torch.long)  # the warpers used here ignore input_ids
    per_row = any(np.ndim(v) > 0 for _, v in stages)
    if per_row:  # the warpers take one value: one list per row
        lists = [LogitsProcessorList([make[n](v) for n, v in row]) for row in _row_params(stages, B)]
        rows = [x[b: b + 1] for b in range(B)]

        def run():
            out = []
            for row, procs in zip(rows, lists):
                scores = procs(ids, row)
                out.append(torch.multinomial(scores.softmax(dim=-1), 1, generator=gen))
            return out

        return run
    procs = LogitsProcessorList([make[n](v) for n, v in stages])
    ids = torch.zeros((B, 1), dtype=torch.long)

    def run():
        scores = procs(ids, x)
        return torch.multinomial(scores.softmax(dim=-1), 1, generator=gen)

    return run


def _hf_engine(prepared):
    lacking = [n.upper() for n, _ in prepared.inputs["chain"] if n in ("dry", "xtc")]
    if lacking:
        raise Unsupported(f"transformers has no {' or '.join(lacking)} logits processor")
    raise Unsupported("the hf peer has no engine loop")


# --------------------------------------------------------------------------- engine chains
#: The parameter of each one-parameter stage of an engine chain.
_ONE_PARAM = {"top_k": "k", "top_p": "p", "min_p": "p", "temperature": "t"}


def _simple_kinds(spec) -> dict[str, Any]:
    """The top_k / top_p / min_p / temperature values of an engine chain (``sample_stages``
    form: disabled on every row means absent)."""
    return dict(sample_stages({n: kw[_ONE_PARAM[n]] for n, kw in spec if n in _ONE_PARAM}))


def _engine_rows(spec, B: int) -> list[list[tuple]]:
    """Per-row scalar stage lists of an engine chain: one-parameter stages as ``(name,
    value)``, the others as ``(name, {parameter: value})``."""
    rows = []
    for b in range(B):
        row = []
        for name, kw in spec:
            vals = {k: np.broadcast_to(np.asarray(v), (B,))[b].item() for k, v in kw.items()}
            row.append((name, vals[_ONE_PARAM[name]] if name in _ONE_PARAM else vals))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- llama.cpp
def _arity(fn) -> int | None:
    argtypes = getattr(fn, "argtypes", None)
    return None if argtypes is None else len(argtypes)


def _llama_penalties(ll, V, repeat=1.0, frequency=0.0, presence=0.0, last_n=64):
    fn = ll.llama_sampler_init_penalties
    args = (int(last_n), float(repeat), float(frequency), float(presence))
    n = _arity(fn)
    if n == 5:  # llama.cpp with the backend samplers: n_vocab first
        return fn(int(V), *args)
    if n == 4:
        return fn(*args)
    raise Unsupported(f"llama_sampler_init_penalties of this llama-cpp-python takes {n} arguments "
                      "(expected 4 or 5: last_n, repeat, freq, present, with or without n_vocab)")


def _llama_dry(ll, multiplier, base=1.75, allowed_length=2, last_n=-1):
    """DRY without a model: no vocabulary and no breakers (llama.cpp only reads the
    vocabulary to tokenize breaker strings). last_n -1 ("all") has no model-free form."""
    fn = ll.llama_sampler_init_dry
    if int(last_n) < 0:
        raise Unsupported("llama.cpp's DRY takes last_n -1 as the model's context size; no model here")
    args = (float(multiplier), float(base), int(allowed_length), int(last_n), None, 0)
    n = _arity(fn)
    if n == 7:  # (vocab, multiplier, base, allowed_length, last_n, breakers, n)
        return fn(None, *args)
    if n == 8:  # older: (vocab, n_ctx_train, multiplier, ...)
        return fn(None, int(last_n), *args)
    raise Unsupported(f"llama_sampler_init_dry of this llama-cpp-python takes {n} arguments; "
                      "cannot build DRY without a model")


def _llama_sampler(ll, name, v, V, seed):
    """One llama.cpp sampler: ``v`` is the value of a one-parameter stage, else a dict."""
    if name == "top_k":
        return ll.llama_sampler_init_top_k(int(v))
    if name == "top_p":
        return ll.llama_sampler_init_top_p(float(v), 1)
    if name == "min_p":
        return ll.llama_sampler_init_min_p(float(v), 1)
    if name == "temperature":
        return ll.llama_sampler_init_temp(float(v))
    if name == "penalties":
        return _llama_penalties(ll, V, **v)
    if name == "dry":
        return _llama_dry(ll, **v)
    if name == "xtc":
        return ll.llama_sampler_init_xtc(float(v["probability"]), float(v["threshold"]),
                                         int(v.get("min_keep", 1)), seed)
    raise Unsupported(f"llama.cpp peer has no stage {name!r}")


class _LlamaRow:
    """One llama.cpp sampler chain and its token-data buffer (one sequence).

    ``history``: tokens the chain accepts before any timing (the penalties' and DRY's
    windows fill from it, as they do from a prompt).
    """

    def __init__(self, ll, V, stages, seed, history=()):
        import ctypes

        self.ll = ll
        dtype = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        assert dtype.itemsize == ctypes.sizeof(ll.llama_token_data)
        self.buf = np.zeros(V, dtype=dtype)
        self.ids = np.arange(V, dtype=np.int32)
        self.ptr = self.buf.ctypes.data_as(ctypes.POINTER(ll.llama_token_data))
        self.arr = ll.llama_token_data_array(self.ptr, V, -1, False)
        self.ref = ctypes.byref(self.arr)
        self.V = V
        params = ll.llama_sampler_chain_default_params()
        params.no_perf = True
        self.chain = ll.llama_sampler_chain_init(params)
        for name, v in stages:  # the chain owns (and frees) every sampler added
            smpl = _llama_sampler(ll, name, v, V, seed)
            if not smpl:
                raise Unsupported(f"llama.cpp returned no sampler for {name}")
            ll.llama_sampler_chain_add(self.chain, smpl)
        if seed is not None:
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_dist(seed))
        for t in np.asarray(history, dtype=np.int64).tolist():
            ll.llama_sampler_accept(self.chain, t)

    def apply(self, row):
        # The fill llama.cpp does before every token (llama_sampler_sample): id, logit, p = 0.
        buf = self.buf
        buf["id"] = self.ids
        buf["logit"] = row
        buf["p"] = 0.0
        arr = self.arr
        arr.data, arr.size, arr.selected, arr.sorted = self.ptr, self.V, -1, False
        self.ll.llama_sampler_apply(self.chain, self.ref)
        return arr

    def accept(self, token):
        self.ll.llama_sampler_accept(self.chain, token)

    def __del__(self):
        # At interpreter exit the library may be gone already; nothing to free then.
        with contextlib.suppress(Exception):
            self.ll.llama_sampler_free(self.chain)


def _llama_sample(prepared):
    import llama_cpp as ll

    x = _rows(prepared.inputs["logits"])
    B, V = x.shape
    stages = sample_stages(prepared.inputs)
    chains = [_LlamaRow(ll, V, row, seed=1234) for row in _row_params(stages, B)]

    def run():
        out = []
        for b, chain in enumerate(chains):
            arr = chain.apply(x[b])
            out.append(arr.data[arr.selected].id)
        return out

    return run


def _llama_topk(prepared):
    import llama_cpp as ll

    x = _rows(prepared.inputs["x"])
    B, V = x.shape
    chains = [_LlamaRow(ll, V, [("top_k", int(prepared.inputs["k"]))], seed=None) for _ in range(B)]
    return lambda: [chain.apply(x[b]).size for b, chain in enumerate(chains)]


def _llama_engine(prepared):
    import llama_cpp as ll

    inp = prepared.inputs
    steps = [_rows(v) for v in inp["steps"]]
    B, V = steps[0].shape
    chains = [_LlamaRow(ll, V, row, seed=1234 + b, history=inp["history"][b])
              for b, row in enumerate(_engine_rows(inp["chain"], B))]
    nxt = itertools.cycle(steps).__next__

    def run():
        x = nxt()
        out = []
        for b, chain in enumerate(chains):  # llama_sampler_sample: apply, then accept
            arr = chain.apply(x[b])
            token = arr.data[arr.selected].id
            chain.accept(token)
            out.append(token)
        return out

    return run


_BUILDERS: dict[str, dict[str, Callable]] = {
    "numpy": {"sample": _numpy_call, "topk": _numpy_call, "softmax": _numpy_call,
              "dry_penalty": _numpy_call, "engine": _numpy_call, "logprobs": _numpy_call,
              "bitmask": _numpy_call, "apply_bitmask": _numpy_call,
              "verify": _numpy_call},
    "torch": {"sample": _torch_sample, "topk": _torch_topk, "softmax": _torch_softmax,
              "engine": _torch_engine, "logprobs": _torch_logprobs, "verify": _torch_verify,
              "bitmask": _torch_bitmask, "apply_bitmask": _torch_bitmask},
    "hf": {"sample": _hf_sample, "engine": _hf_engine},
    "llama.cpp": {"sample": _llama_sample, "topk": _llama_topk, "engine": _llama_engine},
}

PEERS: dict[str, Peer] = {
    "numpy": Peer("numpy", "fastsample's numpy reference (fs.reference)", None),
    "torch": Peer("torch", "PyTorch CPU: sort, softmax, cumsum, mask, multinomial (vLLM/transformers style); "
                  "vLLM's bincount penalties for the engine loops", "torch"),
    "hf": Peer("hf", "transformers' TopK/TopP/MinP/Temperature warpers + softmax + multinomial",
               "transformers", ("torch",)),
    "llama.cpp": Peer("llama.cpp", "llama.cpp's sampler chain via llama-cpp-python (fill counted)",
                      "llama_cpp"),
}


def names() -> list[str]:
    """Every known peer, in table order."""
    return list(PEERS)


def get(name: str) -> Peer:
    """The peer called ``name``; ``ValueError`` listing the known ones if there is none."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return PEERS[name]
