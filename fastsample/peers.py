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
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PEERS", "Peer", "Unsupported", "get", "names", "sample_stages"]

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
    import torch

    x = _torch_rows(prepared, "logits")
    B, V = x.shape
    kinds = dict(sample_stages(prepared.inputs))
    gen = torch.Generator().manual_seed(0)
    k = _torch_param(torch, kinds.get("top_k"), B, torch.int64)
    p = _torch_param(torch, kinds.get("top_p"), B, torch.float32)
    mp = _torch_param(torch, kinds.get("min_p"), B, torch.float32)
    t = _torch_param(torch, kinds.get("temperature"), B, torch.float32)
    if k is not None and np.ndim(k) == 0:
        k = min(int(k), V)

    def run():
        logits = x
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
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=gen)

    return run


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


# --------------------------------------------------------------------------- llama.cpp
class _LlamaRow:
    """One llama.cpp sampler chain and its token-data buffer (one sequence)."""

    def __init__(self, ll, V, stages, seed):
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
        for name, v in stages:
            if name == "top_k":
                smpl = ll.llama_sampler_init_top_k(int(v))
            elif name == "top_p":
                smpl = ll.llama_sampler_init_top_p(float(v), 1)
            elif name == "min_p":
                smpl = ll.llama_sampler_init_min_p(float(v), 1)
            elif name == "temperature":
                smpl = ll.llama_sampler_init_temp(float(v))
            else:  # pragma: no cover - sample_stages yields only these
                raise Unsupported(name)
            ll.llama_sampler_chain_add(self.chain, smpl)
        if seed is not None:
            ll.llama_sampler_chain_add(self.chain, ll.llama_sampler_init_dist(seed))

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


_BUILDERS: dict[str, dict[str, Callable]] = {
    "numpy": {"sample": _numpy_call, "topk": _numpy_call, "softmax": _numpy_call,
              "dry_penalty": _numpy_call},
    "torch": {"sample": _torch_sample, "topk": _torch_topk, "softmax": _torch_softmax},
    "hf": {"sample": _hf_sample},
    "llama.cpp": {"sample": _llama_sample, "topk": _llama_topk},
}

PEERS: dict[str, Peer] = {
    "numpy": Peer("numpy", "fastsample's numpy reference (fs.reference)", None),
    "torch": Peer("torch", "PyTorch CPU: sort, softmax, cumsum, mask, multinomial (vLLM/transformers style)",
                  "torch"),
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
