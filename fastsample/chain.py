"""``SamplerChain``: stages run in order, then one terminal draw, with per-row state."""

from __future__ import annotations

import numpy as np

from . import arrays as _arrays
from . import registry as _backends
from .stages import Dist, MinP, Stage, Temperature, Terminal, TopK, TopP
from .validation import (
    as_history,
    as_logits,
    as_seeds,
    as_token_ids,
    check_on_invalid,
    raise_invalid,
)

__all__ = ["SamplerChain"]


class _Ops:
    """Backend functions for one chain: each name from the first backend that has it."""

    def __init__(self, names):
        self._names = names

    def __getattr__(self, op):
        fn = _backends.op_for(self._names, op, op)
        setattr(self, op, fn)
        return fn


class _Context:
    """What a stage may read during one call: sizes, history, seeds, positions."""

    def __init__(self, B, V, history, seed, position):
        self.B, self.V = B, V
        self.history = history
        self.seed, self.position = seed, position



class SamplerChain:
    """A chain of samplers: non-terminal stages in order, then a terminal draw.

    Parameters
    ----------
    stages : sequence of Stage
        At most one terminal stage (Dist, Greedy, Mirostat, MirostatV2, AdaptiveP),
        and only last; ``Dist()`` is appended when there is none.
    seed : int or array_like of int
        Per-row seeds (non-negative, < 2**64).
    backend : {"auto", "numpy", "numba", "c", "cuda"}
        ``"auto"`` uses the fastest available backend for each stage.
    on_invalid : {"raise", "flag"}
        What to do with a row of NaN/+inf or fully masked logits: raise
        ``ValueError`` naming the rows, or return token -1 for them.

    Notes
    -----
    State is per row and created on the first call, which fixes the batch size B:
    the chain's own history (used when ``history=None``), the positions (start at 0,
    advanced by ``accept``), and the state of stateful terminals (Mirostat's mu,
    AdaptiveP's moving averages), which changes when ``sample`` draws, as in
    llama.cpp. ``reset`` forgets all of it.
    """

    def __init__(self, stages, *, seed=0, backend="auto", on_invalid="raise"):
        stages = list(stages)
        for i, stage in enumerate(stages):
            if not isinstance(stage, Stage):
                raise TypeError(f"stage {i} is {stage!r}, not a fastsample stage")
            if stage.terminal and i != len(stages) - 1:
                raise ValueError(
                    f"{stage.name} is a terminal stage and must be last (found at {i} of {len(stages)})"
                )
        if not stages or not stages[-1].terminal:
            stages.append(Dist())
        self.stages = tuple(stages)
        self.on_invalid = check_on_invalid(on_invalid)
        self._seed_arg = seed
        as_seeds("seed", seed, 1 if np.ndim(seed) == 0 else len(seed))
        self._requested = backend
        self._cpu_names = _backends.resolve(backend)
        self._gpu_plan = None   # fastsample.gpu's plan, made on the first GPU call
        if backend == "cuda":  # the chains gpu.check_chain accepts; others: BackendError naming the stage
            from . import gpu

            self._gpu_plan = gpu.check_chain(self)
        else:
            self._check_ops(self._cpu_names)
        self._ops = _Ops(self._cpu_names)
        self._invalid_rows = _backends.row_check(self._cpu_names)
        self.backend = self._cpu_names[0]
        self._fused = self._canonical_plan()
        self.reset()

    def _canonical_plan(self, backend=None, stages=None):
        """How to run ``sample`` as the backend's fused canonical kernel, if it can.

        A chain of TopK / TopP / MinP / Temperature (each at most once, in llama.cpp's
        order or with Temperature first, sharing one min_keep) ending in Dist is the
        chain of ``fs.sample`` with some stages disabled. ``stages``: a tail of the
        chain's stages to plan instead of all of them.
        """
        backend = self.backend if backend is None else backend
        if getattr(_backends.load(backend), "sample_canonical", None) is None:
            return None
        stages = self.stages if stages is None else stages
        body, terminal = stages[:-1], stages[-1]
        kinds = [type(s) for s in body]
        if type(terminal) is not Dist or len(set(kinds)) != len(kinds):
            return None
        if not set(kinds) <= {TopK, TopP, MinP, Temperature}:
            return None
        truncs = [k for k in kinds if k is not Temperature]
        if truncs != sorted(truncs, key=[TopK, TopP, MinP].index):
            return None
        if Temperature in kinds and kinds.index(Temperature) not in (0, len(kinds) - 1):
            return None
        keeps = [np.asarray(s.min_keep) for s in body if not isinstance(s, Temperature)]
        if any(k.shape != keeps[0].shape or not np.array_equal(k, keeps[0]) for k in keeps):
            return None
        temperature_last = not (kinds and kinds[0] is Temperature and len(kinds) > 1)
        return {type(s): s for s in body}, temperature_last

    def _fused_args(self, B, plan=None):
        """``(top_k, top_p, min_p, temperature, min_keep, temperature_last)`` of a plan."""
        by_type, temperature_last = self._fused if plan is None else plan
        def param(kind, default, integer=False):
            stage = by_type.get(kind)
            value = default if stage is None else stage.rows(B)[0]
            return np.broadcast_to(np.asarray(value, np.int64 if integer else np.float64), (B,))
        truncs = [s for s in by_type.values() if not isinstance(s, Temperature)]
        min_keep = truncs[0].rows(B)[-1] if truncs else np.ones(B, np.int64)
        return (np.ascontiguousarray(param(TopK, 0, True)), np.ascontiguousarray(param(TopP, 1.0)),
                np.ascontiguousarray(param(MinP, 0.0)),
                np.ascontiguousarray(param(Temperature, 1.0)), np.ascontiguousarray(min_keep),
                temperature_last)

    def _sample_fused(self, x, ctx):
        fused = _backends.load(self.backend).sample_canonical
        return fused(x, *self._fused_args(ctx.B), ctx.seed, ctx.position)

    def _check_ops(self, names):
        for stage in self.stages:
            for op in stage.required_ops():
                try:
                    _backends.op_for(names, op, stage.name)
                except _backends.BackendError:
                    raise _backends.BackendError(
                        f"stage {stage.name} has no kernel on backend {names[0]!r} "
                        f"(missing {op!r})"
                    ) from None

    # ------------------------------------------------------------------ state

    def reset(self):
        """Forget the history, positions and stateful-stage state of every row."""
        self._B = None
        self.history = None
        self.positions = None
        self._seeds = None
        self._state = None
        self._gpu_state = {}   # device-side state of fastsample.gpu (Penalties' counts)

    def _ensure_state(self, B):
        if self._B is None:
            self._B = B
            self._seeds = as_seeds("seed", self._seed_arg, B)
            self.positions = np.zeros(B, dtype=np.uint64)
            self.history = [np.zeros(0, dtype=np.int64) for _ in range(B)]
            self._state = [s.init_state(B) if s.terminal else None for s in self.stages]
        elif B != self._B:
            raise ValueError(
                f"this chain holds state for B={self._B} rows but the logits have "
                f"{B} rows; call reset() first"
            )

    @_arrays.host_io("tokens")
    def accept(self, tokens):
        """Append accepted tokens to each row's history and advance its position.

        A row whose token is -1 (flagged invalid) is left as it was. Called before
        any ``sample`` (say, to feed a prompt one token per row), it sets the batch
        size from ``tokens``. GPU tokens (B int32s) are copied to the host.
        """
        if _backends.is_gpu_array(tokens):
            from . import gpu

            tokens = gpu.to_host(tokens)
        tokens = np.atleast_1d(np.asarray(tokens))
        if self._B is None:
            self._ensure_state(tokens.shape[0])
        if tokens.dtype.kind not in "iu":
            raise TypeError(f"tokens must be integers; got dtype {tokens.dtype}")
        if tokens.shape != (self._B,):
            raise ValueError(f"tokens has shape {tokens.shape} but the chain has B={self._B} rows")
        if self._gpu_state.get("counts_V") is not None:
            from . import gpu

            gpu.accept_counts(self, tokens)   # before the history grows
        for b, t in enumerate(tokens.tolist()):
            if t >= 0:
                self.history[b] = np.append(self.history[b], np.int64(t))
                self.positions[b] += np.uint64(1)

    def state_of(self, rows=None):
        """Each row's state as a dict: what a request carries between batches.

        Parameters
        ----------
        rows : iterable of int, optional
            Row indices; every row by default.

        Returns
        -------
        list of dict
            One ``{"seed": int, "position": int, "history": int64 array, **terminal}``
            per row, where ``terminal`` is the stateful terminal's per-row state
            (``mu`` for Mirostat; ``ema_sum``, ``ema_weight`` for AdaptiveP) as
            floats. Copies: later calls do not change them.
        """
        if self._B is None:
            raise ValueError("this chain holds no state yet (no sample, accept or load_states)")
        out = []
        for b in range(self._B) if rows is None else rows:
            if not -self._B <= int(b) < self._B:
                raise IndexError(f"row {b} is out of range for B={self._B}")
            row = {"seed": int(self._seeds[b]), "position": int(self.positions[b]),
                   "history": self.history[b].copy()}
            row.update({k: float(v[b]) for k, v in self._state[-1].items()})
            out.append(row)
        return out

    def load_states(self, states):
        """Make the chain's rows ``states`` (from :meth:`state_of`, any chains), B = len.

        This is how an engine batches requests that join and leave: each request
        keeps its row state, and the batch's chain is loaded from them; a row's tokens
        do not depend on the other rows. A missing key starts fresh: ``seed`` the
        chain's seed for that row, ``history`` empty, ``position`` ``len(history)``
        (as if the history had been accepted), terminal state its initial value
        under this chain's parameters for that row. ``reset`` forgets loaded state.
        """
        states = list(states)
        B = len(states)
        terminal = {k: np.array(v, dtype=np.float64)
                    for k, v in self.stages[-1].init_state(B).items()}
        known = {"seed", "position", "history", *terminal}
        seeds = (as_seeds("seed", self._seed_arg, B) if any("seed" not in s for s in states)
                 else np.zeros(B, dtype=np.uint64))
        positions = np.zeros(B, dtype=np.uint64)
        history = []
        for b, s in enumerate(states):
            if not isinstance(s, dict):
                raise TypeError(f"state {b} must be a dict (see state_of); got {type(s).__name__}")
            if set(s) - known:
                raise ValueError(f"state {b} has unknown keys {sorted(set(s) - known)}; "
                                 f"this chain's row state has {sorted(known)}")
            h = as_token_ids(f"history of state {b}", _arrays.plain(s.get("history", ())),
                             np.iinfo(np.int64).max)
            history.append(h)
            if "seed" in s:
                seeds[b] = as_seeds(f"seed of state {b}", s["seed"], 1)[0]
            positions[b] = as_seeds(f"position of state {b}", s.get("position", h.size), 1)[0]
            for key in terminal.keys() & s.keys():
                value = float(s[key])
                if np.isnan(value):
                    raise ValueError(f"{key} of state {b} is NaN")
                terminal[key][b] = value
        self._B, self._seeds, self.positions, self.history = B, seeds, positions, history
        self._state = [None] * (len(self.stages) - 1) + [terminal]
        self._gpu_state = {}

    # ------------------------------------------------------------------ calls

    def _own_history(self, V):
        """The chain's own history, checked against V (``accept`` cannot check it)."""
        bad = [b for b, h in enumerate(self.history) if h.size and int(h.max()) >= V]
        if bad:
            raise ValueError(f"the chain's history row {bad[0]} has a token outside [0, V={V})")
        return self.history

    def _prepare(self, logits, history, history_len, position):
        """Host logits only: ``process`` and ``sample`` send GPU logits to ``gpu`` first."""
        x, one_d = as_logits(logits)
        B, V = x.shape
        self._ensure_state(B)
        if history is None:
            hist = self._own_history(V)
        else:
            hist = as_history(history, history_len, B, V, one_d)
        pos = self.positions if position is None else as_seeds("position", position, B)
        invalid = self._invalid_rows(x)
        if invalid.any():
            if self.on_invalid == "raise":
                raise_invalid(invalid, "NaN, +inf, or every logit masked")
            # Flagged rows run on a harmless stand-in row; their token becomes -1.
            x = x.copy()
            x[invalid] = 0.0
        return x, one_d, invalid, self._ops, _Context(B, V, hist, self._seeds, pos)

    def _run(self, x, ops, ctx):
        for stage in self.stages[:-1]:
            x = stage.apply(ops, x, ctx)
        return x

    def _check_emptied(self, x, invalid):
        emptied = ~invalid & ~np.isfinite(x).any(axis=1)
        if emptied.any() and self.on_invalid == "raise":
            raise_invalid(emptied, "every logit masked by the chain's stages")
        return invalid | emptied

    @_arrays.host_io("logits")
    def process(self, logits, history=None, history_len=None, position=None, stream=None):
        """The logits the terminal stage would draw from; no draw, no state change.

        Parameters
        ----------
        logits : array_like, shape (V,) or (B, V)
        history : optional
            A 1-D int array (1-D logits), a list of B int arrays, or a 2-D
            ``(B, L)`` int array with ``history_len``; None uses the chain's own.
        history_len : array_like of int, optional
        position : int or array_like, optional
            Overrides the chain's positions for this call.

        Returns
        -------
        numpy.ndarray of float32, the shape of ``logits``; masked tokens are ``-inf``
        (flagged invalid rows are all ``-inf``). GPU logits (``fastsample.gpu``): the
        canonical chain on backend cuda, a device result, ``stream`` honoured.
        """
        if _backends.is_gpu_array(logits):
            from . import gpu

            return gpu.chain_process(self, logits, history, history_len, stream)
        x, one_d, invalid, ops, ctx = self._prepare(logits, history, history_len, position)
        fused = getattr(_backends.load(self.backend), "process_canonical", None)
        if self._fused is not None and fused is not None:
            x = fused(x, *self._fused_args(ctx.B))
        else:
            x = self._run(x, ops, ctx)
            terminal = self.stages[-1]
            x = terminal.process(ops, x, ctx, self._state[-1])
        bad = self._check_emptied(x, invalid)
        if bad.any():
            x = x.copy()
            x[bad] = -np.inf
        return x[0] if one_d else x

    @_arrays.host_io("logits")
    def sample(self, logits, history=None, history_len=None, position=None, stream=None):
        """Run the chain and draw one token per row.

        Parameters are those of :meth:`process`.

        Returns
        -------
        int for 1-D logits, else numpy.ndarray of int32, shape (B,); -1 marks a row
        flagged invalid (``on_invalid="flag"``). GPU logits: tokens on the device as
        the caller's array type (see ``fastsample.gpu``).
        """
        if _backends.is_gpu_array(logits):
            from . import gpu

            return gpu.chain_sample(self, logits, history, history_len, position, stream)
        x, one_d, invalid, ops, ctx = self._prepare(logits, history, history_len, position)
        if self._fused is not None:
            tokens = np.array(self._sample_fused(x, ctx), dtype=np.int32)
            tokens[invalid] = -1
            return int(tokens[0]) if one_d else tokens
        x = self._run(x, ops, ctx)
        bad = self._check_emptied(x, invalid)
        if bad.any():
            x = x.copy()
            x[bad] = 0.0  # keeps stateful updates well-defined; token replaced below
        terminal: Terminal = self.stages[-1]
        state = self._state[-1]
        saved = {k: v.copy() for k, v in state.items()}
        tokens = np.asarray(terminal.sample(ops, x, ctx, state), dtype=np.int32)
        if bad.any():
            tokens = tokens.copy()
            tokens[bad] = -1
            for k in state:  # a flagged row's state does not move
                state[k] = np.where(bad, saved[k], state[k])
        return int(tokens[0]) if one_d else tokens

    def __repr__(self):
        return f"SamplerChain({list(self.stages)!r}, backend={self.backend!r})"
