"""A custom inference-engine loop around fastsample: continuous batching.

Requests arrive, join the running batch, decode one token per step, and leave when
they hit EOS or their token budget. Each request has its own seed and sampling
parameters; repetition penalties and DRY read the history the chain keeps; Mirostat
keeps its mu per request. Requests are grouped by sampler kind (one SamplerChain per
kind). While a group's membership is unchanged its chain carries the state from step
to step; when a request joins or leaves, the group's chain is rebuilt with the
members' parameters as per-row arrays and loaded with their row states
(``SamplerChain.state_of`` / ``load_states``). Because fastsample's draw depends only
on a row's own logits, parameters, seed, position and history, a request's tokens
are the same whatever else is in the batch.

The "model" is a stand-in: deterministic random logits from a request's own tokens,
so the example runs offline in a second::

    python examples/engine_loop.py
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

import fastsample as fs

V = 2048
EOS = 0


@dataclass
class Request:
    """One generation request: prompt, budget, seed and sampling parameters."""

    rid: int
    prompt: list
    max_tokens: int
    seed: int
    kind: str = "dist"  # "dist" (top-k/top-p/min-p/temperature) or "mirostat"
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat: float = 1.1
    dry: float = 0.8
    tau: float = 5.0
    output: list = field(default_factory=list)


def toy_model(sequences, vocab_size=V):
    """Logits for the next token of each sequence, a pure function of the sequence.

    Zipf-like logits over a permutation chosen by the last two tokens, with a bonus
    on recent tokens so that penalties and DRY have something to do, and EOS more
    likely as the sequence grows.
    """
    out = np.empty((len(sequences), vocab_size), dtype=np.float32)
    for i, seq in enumerate(sequences):
        rng = np.random.default_rng([len(seq), *seq[-2:]])
        rank = rng.permutation(vocab_size)
        row = -1.2 * np.log1p(rank) + 0.5 * rng.standard_normal(vocab_size)
        row[np.asarray(seq[-8:], dtype=np.int64)] += 2.0
        row[EOS] += 0.35 * len(seq)
        out[i] = row
    return out


def build_chain(kind, members, backend="auto"):
    """One chain for a group of requests: their parameters as per-row arrays."""

    def col(name, dtype=np.float64):
        return np.array([getattr(r, name) for r in members], dtype=dtype)

    stages = [fs.Penalties(repeat=col("repeat"), last_n=64), fs.DRY(col("dry"), allowed_length=2)]
    if kind == "mirostat":
        stages += [fs.Temperature(col("temperature")), fs.Mirostat(tau=col("tau"), eta=0.1)]
    else:
        stages += [fs.TopK(col("top_k", np.int64)), fs.TopP(col("top_p")), fs.MinP(col("min_p")),
                   fs.Temperature(col("temperature"))]
    return fs.SamplerChain(stages, backend=backend)


class _Group:
    """The running requests of one sampler kind, and the chain holding their state."""

    def __init__(self, kind, backend):
        self.kind, self.backend = kind, backend
        self.members: list = []
        self.chain = None
        self.carried = 0  # rebuilds that carried a running request's state over

    def regroup(self, members, fresh):
        """Rebuild the chain for ``members``, keeping the state of those staying."""
        if [r.rid for r in members] == [r.rid for r in self.members]:
            return
        kept = {}
        if self.chain is not None and self.members:
            kept = dict(zip((r.rid for r in self.members), self.chain.state_of()))
            self.carried += any(r.rid in kept for r in members)
        self.members = list(members)
        if not members:
            self.chain = None
            return
        self.chain = build_chain(self.kind, members, self.backend)
        # A new request starts from its prompt: position len(prompt), its seed,
        # Mirostat's mu at 2*tau.
        self.chain.load_states([kept.get(r.rid) or fresh(r) for r in members])

    def step(self, model):
        logits = model([r.prompt + r.output for r in self.members])
        tokens = self.chain.sample(logits)  # history=None: the chain's own history
        self.chain.accept(tokens)
        return tokens


class Engine:
    """Continuous batching: at most ``max_batch`` requests decode at once."""

    def __init__(self, model=toy_model, max_batch=8, backend="auto"):
        self.model, self.max_batch, self.backend = model, max_batch, backend
        self.waiting: deque = deque()
        self.running: list = []
        self.finished: dict = {}
        self.groups = {k: _Group(k, backend) for k in ("dist", "mirostat")}

    def submit(self, request):
        self.waiting.append(request)

    @staticmethod
    def _fresh_state(request):
        return {"seed": request.seed, "history": np.asarray(request.prompt, dtype=np.int64)}

    def step(self):
        """Admit waiting requests, decode one token for every running one, retire."""
        while self.waiting and len(self.running) < self.max_batch:
            self.running.append(self.waiting.popleft())
        for kind, group in self.groups.items():
            group.regroup([r for r in self.running if r.kind == kind], self._fresh_state)
            if group.members:
                for r, t in zip(group.members, group.step(self.model).tolist()):
                    r.output.append(t)
        done = [r for r in self.running if r.output[-1] == EOS or len(r.output) >= r.max_tokens]
        for r in done:
            self.running.remove(r)
            self.finished[r.rid] = r

    def run(self, arrivals=None):
        """Decode until every request is finished.

        ``arrivals`` maps a step number to the requests submitted before that step.
        """
        arrivals = dict(arrivals or {})
        steps = 0
        while arrivals or self.waiting or self.running:
            for r in arrivals.pop(steps, []):
                self.submit(r)
            self.step()
            steps += 1
        return self.finished


def demo_requests(n=10, seed=0):
    """A mixed workload: different seeds, parameters, budgets and sampler kinds."""
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        reqs.append(Request(
            rid=i, prompt=rng.integers(1, V, int(rng.integers(3, 12))).tolist(),
            max_tokens=int(rng.integers(5, 30)), seed=1000 + i,
            kind="mirostat" if i % 4 == 3 else "dist",
            temperature=float(rng.uniform(0.6, 1.2)), top_k=int(rng.integers(0, 80)),
            top_p=float(rng.uniform(0.8, 1.0)), min_p=float(rng.uniform(0.0, 0.1)),
            repeat=float(rng.uniform(1.0, 1.3)), dry=float(rng.uniform(0.0, 1.0)),
            tau=float(rng.uniform(3.0, 6.0)),
        ))
    return reqs


def main():
    reqs = demo_requests()
    arrivals = {0: reqs[:4], 2: reqs[4:7], 5: reqs[7:]}  # requests join while others run
    finished = Engine(max_batch=6).run(arrivals)
    for rid in sorted(finished):
        r = finished[rid]
        print(f"request {rid} ({r.kind:8s} seed {r.seed}): {r.output}")
    # The same request alone gives the same tokens: batch composition does not matter.
    alone = Engine(max_batch=1).run({0: [Request(**{**reqs[5].__dict__, "output": []})]})
    assert alone[5].output == finished[5].output
    print("request 5 alone:", alone[5].output, "(identical)")


if __name__ == "__main__":
    main()
