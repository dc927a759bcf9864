"""``SamplerChain``: stages run in order, then one terminal draw, with per-row state
(the rules: docs/spec.md).

How a chain runs is its plan (``fastsample.plan``), made once. Per-token state is
O(1): ``accept`` appends to a growable per-row history buffer and range-checks only
the new tokens; a call reads only the history window its stages need.
"""

from __future__ import annotations

import numpy as np

from . import arrays as _arrays
from . import bitmask as _bitmask
from . import plan as _plan
from . import registry as _backends
from .stages import (AdaptiveP, AllowedTokens, BadWords, Dist, LogitBias, MinP, MinTokens,
                     Mirostat, MirostatV2, Stage, Temperature, Terminal, TopK, TopP)
from .validation import (
    as_history,
    as_logits,
    as_seeds,
    as_token_ids,
    check_on_invalid,
    raise_invalid,
)

__all__ = ["SamplerChain"]

_INT64_MAX = int(np.iinfo(np.int64).max)


_NO_HISTORY = np.zeros(0, np.int64)


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
        self.bitmask = self.bitmask_rows = None   # spec §10, normalised (fastsample.bitmask)



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
                    f"{stage.name} is a terminal stage and must be last "
                    f"(found at {i} of {len(stages)})"
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
        # cuda: the chains gpu.check_chain accepts; others: BackendError naming the stage
        if backend == "cuda":
            from . import gpu

            self._gpu_plan = gpu.check_chain(self)
        else:
            self._check_ops(self._cpu_names)
        self._ops = _Ops(self._cpu_names)
        self._invalid_rows = _backends.row_check(self._cpu_names)
        self.backend = self._cpu_names[0]
        self._fused = self._canonical_plan()
        # The numpy backend is the reference: it runs stage by stage, with no plan.
        self._module = module = _backends.load(self.backend)   # the CPU backend's functions
        self._plan = _plan.Plan(self.stages, lambda tail: self._canonical_plan(stages=tail),
                                fast=self.backend != "numpy",
                                can_truncate=getattr(module, "truncate_canonical", None)
                                is not None)
        self._row_args = None   # fs.sample's scalar arguments, for the one-row path
        self._work = None       # the working copy of the logits that edits write
        # The one-call step of a common chain (plan.row_program): per (B, V), the rows'
        # programs, built on the first call of that shape; False where the backend or
        # the chain has none.
        self._row_prog = {} if hasattr(module, "chain_row") else False
        # the AllowedTokens edits, which a fused or truncation kernel applies as a
        # bitmask (_kernel_mask), and their packed ids: (V, words)
        self._allowed = tuple(s for s in self._plan.edits if isinstance(s, AllowedTokens))
        self._allowed_mask = None
        # their descriptions, and the programs with a call's BadWords / MinTokens bans
        # added (``_banned``): per (B, V, row, bans)
        self._row_desc, self._ban_progs = {}, {}
        # One row of numpy float32 logits with the chain's own history: (V, program)
        # once the one-call step ran for that V (``_one_row``).
        self._one = None
        self.reset()

    #: What the request asked of the call (a ``fastsample.requests.Request``) for a
    #: chain made by ``from_request``; None otherwise.
    request = None

    @classmethod
    def from_request(cls, params, style, *, strict=True, seed=None, backend="auto",
                     on_invalid="raise", token_texts=None, eos_token_id=None):
        """The chain a peer would run for a request in its own format.

        ``style`` is "llama.cpp" (server ``/completion``), "openai", "hf" (a
        ``generation_config.json``), "webui" (text-generation-webui) or "vllm"
        (``SamplingParams``): the peer's stages, order, defaults and no-op rules.
        Unknown or unsupported fields are a ``ValueError`` listing them (a
        ``RequestWarning`` with ``strict=False``). The chain's ``request`` holds
        what the request asked of the call: seed, logprobs, max_tokens, n.
        Parameters and rules: ``fastsample.requests.from_request``.
        """
        from .requests import from_request

        return from_request(params, style, strict=strict, seed=seed, backend=backend,
                            on_invalid=on_invalid, token_texts=token_texts,
                            eos_token_id=eos_token_id)

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

    def _sample_fused(self, x, ctx, masked=None):
        """Tokens of the fused plan (-2: the kernel's invalid-row flag): int32 (B,), or
        an int for one row (the per-token path: no arrays at all). ``masked``: the
        bitmask arguments of the kernel (``_kernel_mask``)."""
        module = self._module
        masked = masked or {}
        row_fn = getattr(module, "sample_row", None) if ctx.B == 1 else None
        if row_fn is not None:  # one row: scalar arguments, no per-row arrays
            if self._row_args is None:
                k, p, mp, t, mk, t_last = self._fused_args(1, self._plan.fused)
                self._row_args = (int(k[0]), float(p[0]), float(mp[0]), float(t[0]),
                                  int(mk[0]), t_last)
            if masked:
                masked = {"bitmask": _bitmask.row_words(masked["bitmask"],
                                                        masked["bitmask_rows"], 0)}
            return row_fn(x[0], *self._row_args, int(ctx.seed[0]), int(ctx.position[0]),
                          **masked)
        fused = module.sample_canonical
        return np.asarray(fused(x, *self._fused_args(ctx.B, self._plan.fused), ctx.seed,
                                ctx.position, **masked), dtype=np.int32)

    def _row_step(self, x, ctx):
        """The tokens through the backend's one-call step (``chain_row``; a batch:
        ``chain_rows``, rows over its thread pool): an int for one row, int32 (B,) for
        a batch, -2 for a row the general route must decide (an invalid or emptied
        row, a NaN/+inf where an edit writes); None when the chain has no such step."""
        B, V = ctx.B, ctx.V
        # a stateful terminal: its state in (Mirostat's mu, AdaptiveP's averages), the
        # drawn token's log-probability out
        stateful = isinstance(self._plan.terminal, (Mirostat, MirostatV2, AdaptiveP))
        progs = self._row_prog.get((B, V))
        if progs is None:
            fused = (self._fused_args(B, self._plan.fused) if self._plan.mode == "fused"
                     else None)
            programs = [_plan.row_program(self._plan, fused, B, b) for b in range(B)]
            if programs[0] is None:   # the chain's shape: the same for every row
                self._row_prog = False
                return None
            bias = programs[0].get("bias")
            bans = self._plan.bans(B)
            if any(p is None for p in programs) or (
                    bias is not None and bias[0].size and bias[0][-1] >= V) or (
                    bans is not None and bans.top >= V):
                # a row's own parameters (a greedy temperature before a first stage), or
                # a bias or ban id outside [0, V), which the general route raises for:
                # this (B, V) goes the general way
                progs = ()
            else:
                progs = [self._module.chain_program(p, V) for p in programs]
            if len(self._row_prog) >= 8:   # a few shapes at a time
                self._row_prog.clear()
                self._ban_progs.clear()
            self._row_prog[(B, V)] = progs
            self._row_desc[(B, V)] = programs
        if not progs:
            return None
        hist = ctx.history
        one = progs[0]   # the engine loop's next step (_one_row) adds its own bans
        bans = self._plan.bans(B)
        if bans is not None:   # this call's BadWords / MinTokens bans
            progs = [self._banned(bans, progs[b], B, V, b, hist[b] if hist else _NO_HISTORY,
                                  int(ctx.position[b])) for b in range(B)]
        # each row's packed bitmask (the call's, AllowedTokens'), applied before every
        # stage: the program reads the row through it
        masked = self._kernel_mask(ctx)
        words = ([masked["bitmask"][r] if r >= 0 else None for r in masked["bitmask_rows"]]
                 if masked else None)
        if stateful:
            return self._stateful_step(x, ctx, progs, one, words)
        if B == 1:
            h = hist[0] if hist else _NO_HISTORY
            self._one = (V, one, None)
            return self._module.chain_row(x[0], np.ascontiguousarray(h, np.int64), progs[0],
                                          int(ctx.seed[0]), int(ctx.position[0]),
                                          words=words[0] if words else None)
        hists = ([np.ascontiguousarray(h, np.int64) for h in hist] if hist
                 else [_NO_HISTORY] * B)
        return self._module.chain_rows(x, hists, progs, ctx.seed, ctx.position, words=words)

    def _banned(self, bans, prog, B, V, b, history, position):
        """Row ``b``'s program ``prog`` with this call's BadWords / MinTokens bans
        (``bans``: the plan's ``RowBans``) as ``-inf`` biases: one compiled program per
        set of bans, made on its first call."""
        key = bans.key(b, history, position)
        if not key:
            return prog
        banned = self._ban_progs.get((B, V, b, key))
        if banned is None:
            desc = dict(self._row_desc[(B, V)][b])
            desc["bias"] = _plan.add_bans(desc.get("bias"), key)
            if len(self._ban_progs) >= 256:   # a few hundred sets at a time
                self._ban_progs.clear()
            banned = self._ban_progs[(B, V, b, key)] = self._module.chain_program(desc, V)
        return banned

    def _one_row(self, logits, bitmask=None):
        """``sample``'s engine-loop step without ``_prepare``: one row of float32 numpy
        logits of the V the program was built for, the chain's own history (every
        token already checked against V) and position, and a bitmask given as one
        plain row of words, or none. The token, or None when the general path must run
        (another shape, or the one-call step handed back). A stateful terminal
        (Mirostat, AdaptiveP) takes the row's state and moves it, as
        ``_stateful_step`` does."""
        V, prog, terminal = self._one
        if not (logits.ndim == 1 and logits.shape[0] == V and logits.dtype == np.float32
                and self._B == 1 and self._checked_V == V and not self._unchecked
                and logits.flags.c_contiguous):
            return None
        words = None
        if bitmask is not None:
            words = _bitmask.one_row(bitmask, V)
            if words is None:   # another form: the general path checks it
                return None
        if self._allowed:
            words = self._with_allowed(words, V)
        n = int(self._hlen[0])
        window = self._plan.window(1)   # cached by the plan
        h = (self._hist[0, :n] if window is None
             else self._hist[0, max(n - window, 0):n] if window else _NO_HISTORY)
        bans = self._plan.bans(1)
        if bans is not None:
            prog = self._banned(bans, prog, 1, V, 0, h, int(self.positions[0]))
        if terminal is None:
            tok = self._module.chain_row(logits, h, prog, int(self._seeds[0]),
                                         int(self.positions[0]), words=words)
            return None if tok == -2 else tok
        state = self._state[-1]
        tok, lp = self._module.chain_row(logits, h, prog, int(self._seeds[0]),
                                         int(self.positions[0]), terminal.row_input(state),
                                         words=words)
        if tok == -2:
            return None
        terminal.update_one(state, lp)   # tok >= 0: the row is valid here
        return tok

    def _stateful_step(self, x, ctx, progs, one, words):
        """``_row_step`` of a stateful terminal (Mirostat, AdaptiveP): each row's state
        in (``row_inputs``), the drawn tokens' log-probabilities out, then the
        terminal's update (none when a row goes the general route: that route updates
        every row). Batches take this path too, so a row's state never depends on the
        batch it is in."""
        state = self._state[-1]
        hist = ctx.history
        if ctx.B == 1:
            h = np.ascontiguousarray(hist[0] if hist else _NO_HISTORY, np.int64)
            self._one = (ctx.V, one, self._plan.terminal)
            tok, lp = self._module.chain_row(x[0], h, progs[0], int(ctx.seed[0]),
                                             int(ctx.position[0]),
                                             self._plan.terminal.row_input(state),
                                             words=words[0] if words else None)
            tokens, lps = np.array([tok], np.int32), np.array([lp])
        else:
            hists = ([np.ascontiguousarray(h, np.int64) for h in hist] if hist
                     else [_NO_HISTORY] * ctx.B)
            tokens, lps = self._module.chain_rows(x, hists, progs, ctx.seed, ctx.position,
                                                  mus=self._plan.terminal.row_inputs(state),
                                                  words=words)
        if not (tokens == -2).any():
            self._plan.terminal.update(state, ctx.B, tokens >= 0, lps)
        return int(tokens[0]) if ctx.B == 1 else tokens

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
        self._hist = None         # (B, capacity) int64: row b's history is [b, :_hlen[b]]
        self._hlen = None
        self._checked_V = None    # the V that tokens [:_hchecked[b]] were checked against
        self._hchecked = None
        self.positions = None
        self._seeds = None
        self._state = None
        self._gpu_state = {}   # device-side state of fastsample.gpu (Penalties' counts)

    @property
    def history(self):
        """Each row's accepted tokens (oldest first): a list of B int64 arrays, or None.

        Read-only views of the chain's buffers; ``accept`` and ``load_states`` change
        them.
        """
        if self._hist is None:
            return None
        rows = [self._hist[b, :n] for b, n in enumerate(self._hlen.tolist())]
        for r in rows:
            r.flags.writeable = False
        return rows

    def _set_history(self, rows):
        B = len(rows)
        cap = max([64] + [r.size for r in rows])
        self._hist = np.zeros((B, cap), np.int64)
        self._hlen = np.zeros(B, np.int64)
        for b, r in enumerate(rows):
            self._hist[b, :r.size] = r
            self._hlen[b] = r.size
        self._hchecked = np.zeros(B, np.int64)
        self._checked_V = None
        self._unchecked = True    # some tokens are not checked against _checked_V yet

    def _ensure_state(self, B):
        if self._B is None:
            self._B = B
            self._seeds = as_seeds("seed", self._seed_arg, B)
            self.positions = np.zeros(B, dtype=np.uint64)
            self._set_history([np.zeros(0, np.int64)] * B)
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
        size from ``tokens``. GPU tokens (B int32s) are copied to the host. Amortised
        O(1) per row: the history is a growable buffer; once the chain has seen V, a
        token outside ``[0, V)`` is a ``ValueError`` here (before that, on the first
        call that gives V).
        """
        if self._B == 1 and self._gpu_state.get("counts_V") is None:
            if type(tokens) is int:   # one sequence, the token sample returned
                return self._accept_one(tokens)
            if type(tokens) is np.ndarray and tokens.shape == (1,) and tokens.dtype.kind in "iu":
                return self._accept_one(int(tokens[0]))   # sample's (1,) array
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
        V = self._checked_V
        top = int(tokens[0]) if self._B == 1 else int(tokens.max()) if tokens.size else -1
        if top >= (_INT64_MAX if V is None else V):
            b = int(np.argmax(tokens == top))
            raise ValueError(f"accepted token {top} of row {b} is outside "
                             f"[0, V={V if V is not None else 'unknown'})")
        if self._gpu_state.get("counts_V") is not None:
            from . import gpu

            gpu.accept_counts(self, tokens)   # before the history grows
        if self._B == 1:
            return self._accept_one(top)
        rows = np.flatnonzero(tokens >= 0)
        if rows.size == 0:
            return
        ends = self._hlen[rows]
        if int(ends.max()) >= self._hist.shape[1]:
            self._grow()
        self._hist[rows, ends] = tokens[rows]
        self._hlen[rows] = ends + 1
        if V is None:
            self._unchecked = True
        else:
            self._hchecked[rows] = ends + 1
        self.positions[rows] += np.uint64(1)

    def _accept_one(self, t):
        """``accept`` of one row's token ``t`` (an int): scalar work only."""
        V = self._checked_V
        if t >= (_INT64_MAX if V is None else V):
            raise ValueError(f"accepted token {t} of row 0 is outside "
                             f"[0, V={V if V is not None else 'unknown'})")
        if t < 0:
            return
        n = int(self._hlen[0])
        if n >= self._hist.shape[1]:
            self._grow()
        self._hist[0, n] = t
        self._hlen[0] = n + 1
        self.positions[0] += np.uint64(1)
        if V is None:
            self._unchecked = True
        else:
            self._hchecked[0] = n + 1

    def _grow(self):
        """Double the history buffer: amortised O(1) per accepted token."""
        grown = np.zeros((self._B, 2 * self._hist.shape[1]), np.int64)
        grown[:, :self._hist.shape[1]] = self._hist
        self._hist = grown

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
                   "history": self._hist[b, :self._hlen[b]].copy()}
            row.update({k: float(v[b]) for k, v in self._state[-1].items()})
            out.append(row)
        return out

    def load_states(self, states):
        """Make the chain's rows ``states`` (from ``state_of``, any chains), B = len.

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
        self._B, self._seeds, self.positions = B, seeds, positions
        self._set_history(history)
        self._state = [None] * (len(self.stages) - 1) + [terminal]
        self._gpu_state = {}

    # ------------------------------------------------------------------ calls

    def _own_history(self, V, window=None):
        """The chain's own history (its last ``window`` tokens per row; None: all),
        with the tokens not yet checked against V checked now (each token once)."""
        if self._checked_V != V:
            self._checked_V = V
            self._hchecked[:] = 0
            self._unchecked = True
        if self._unchecked:
            for b in np.flatnonzero(self._hchecked < self._hlen).tolist():
                new = self._hist[b, self._hchecked[b]:self._hlen[b]]
                if int(new.max()) >= V or int(new.min()) < 0:
                    raise ValueError(
                        f"the chain's history row {b} has a token outside [0, V={V})")
                self._hchecked[b] = self._hlen[b]
            self._unchecked = False
        if window == 0:
            return None
        lens = self._hlen.tolist()
        if window is None:
            return [self._hist[b, :n] for b, n in enumerate(lens)]
        return [self._hist[b, max(n - window, 0):n] for b, n in enumerate(lens)]

    def _prepare(self, logits, history, history_len, position, bitmask=None, bitmask_rows=None):
        """Host logits only: ``process`` and ``sample`` send GPU logits to ``gpu`` first.

        Returns ``(x, one_d, ctx)``; ``x`` is the caller's logits (never written).
        """
        x, one_d = as_logits(logits)
        B, V = x.shape
        self._ensure_state(B)
        if history is not None:
            hist = as_history(history, history_len, B, V, one_d)
        else:
            hist = self._own_history(V, self._plan.window(B))
        pos = self.positions if position is None else as_seeds("position", position, B)
        ctx = _Context(B, V, hist, self._seeds, pos)
        if bitmask is not None:
            ctx.bitmask, ctx.bitmask_rows = _bitmask.as_bitmask(
                _arrays.plain(bitmask), B, V, _arrays.plain(bitmask_rows))
        return x, one_d, ctx

    def _kernel_mask(self, ctx):
        """The bitmask arguments for a fused or truncation kernel that reads the bitmask
        itself (in its first pass) over the edits' working copy: the call's bitmask,
        and the AllowedTokens edits' ids (masking commutes with the other edits: -inf
        stays -inf under each), one ANDed with the other. ``{}`` when there is neither."""
        if not self._allowed:
            if ctx.bitmask is None:
                return {}
            return {"bitmask": ctx.bitmask, "bitmask_rows": ctx.bitmask_rows}
        if ctx.bitmask is None:
            return {"bitmask": self._allowed_words(ctx.V),
                    "bitmask_rows": np.zeros(ctx.B, np.int64)}
        # each bitmask row ANDed with the allowed ids; an unconstrained row (-1): the
        # allowed ids alone, an extra last row
        R = ctx.bitmask.shape[0]
        both = np.concatenate([self._with_allowed(ctx.bitmask, ctx.V),
                               self._allowed_words(ctx.V)])
        return {"bitmask": both,
                "bitmask_rows": np.where(ctx.bitmask_rows < 0, R, ctx.bitmask_rows)}

    def _with_allowed(self, words, V):
        """Packed bitmask words (one row, or rows; None: none) ANDed with the
        AllowedTokens edits' ids: the first ceil(V/32) words of each row."""
        allowed = self._allowed_words(V)[0]
        return allowed if words is None else words[..., :allowed.shape[0]] & allowed

    def _allowed_words(self, V):
        """The AllowedTokens edits' ids as one packed bitmask row for V (their AND),
        made once per V; an id >= V raises as the stage does."""
        if self._allowed_mask is None or self._allowed_mask[0] != V:
            words = None
            for stage in self._allowed:
                ids = as_token_ids("AllowedTokens token", stage.ids, V)
                w = _bitmask.pack_ids(ids, V)
                words = w if words is None else words & w
            self._allowed_mask = (V, words)
        return self._allowed_mask[1]

    def _edit(self, x, ctx, masked=True):
        """The working copy of ``x`` with the plan's edit stages applied in place.

        A bitmask (``masked``; False when the caller's kernel reads it, with the
        AllowedTokens edits: ``_kernel_mask``) is the first edit. Returns ``(work,
        hidden)``: ``hidden`` marks rows where an edit read a NaN or +inf input logit
        (it could overwrite it, hiding an invalid row); None when there is no edit.
        """
        edits = self._plan.edits
        bm = ctx.bitmask if masked else None
        if not masked and self._allowed:   # in the kernel's bitmask
            edits = tuple(s for s in edits if not isinstance(s, AllowedTokens))
            if not edits:   # a row the mask empties is the chain's doing: _bad_rows checks
                return x, np.zeros(ctx.B, np.bool_)
        if not edits and bm is None:
            return x, None
        hidden = np.zeros(ctx.B, np.bool_)
        if bm is not None or any(isinstance(s, AllowedTokens) for s in edits):
            hidden |= self._invalid_rows(x)   # they mask almost every token of a row
        for stage in edits:
            touched = (stage.tokens if isinstance(stage, BadWords) else
                       stage.stop_ids if isinstance(stage, MinTokens) else None)
            if touched is not None and touched.size:
                hidden |= ~(x[:, touched[touched < ctx.V]] < np.inf).all(axis=1)
        for b, h in enumerate(ctx.history or ()):   # the tokens the history stages touch
            if h.size and not (x[b].take(h) < np.inf).all():
                hidden[b] = True
        for stage in edits:
            if isinstance(stage, LogitBias) and stage.ids.size:
                ids = stage.ids[stage.ids < ctx.V]   # ids >= V: the stage raises below
                hidden |= ~(x[:, ids] < np.inf).all(axis=1)
        # One working copy per chain, reused: a fresh (B, V) array per token would cost
        # its page faults on every call. Never returned to the caller (see process).
        # The first edit writes it (its kernel copies each row, in its threads); the
        # others edit it in place.
        if self._work is None or self._work.shape != x.shape:
            self._work = np.empty(x.shape, np.float32)
        work = self._work
        if bm is not None:
            self._ops.apply_token_bitmask(x, bm, ctx.bitmask_rows, out=work)
        else:
            edits[0].apply(self._ops, x, ctx, out=work)
        for stage in edits[1:] if bm is None else edits:
            stage.apply(self._ops, work, ctx, out=work)
        return work, hidden

    def _bad_rows(self, x, flagged, hidden):
        """Split the rows a kernel flagged into invalid input and rows the edits emptied;
        raise for either unless ``on_invalid="flag"``. Returns all bad rows."""
        invalid = flagged if hidden is None else flagged | hidden
        if not invalid.any():
            return invalid
        if hidden is None:
            emptied = np.zeros_like(invalid)
        else:  # a flagged row is the input's fault unless its input was a valid row
            emptied = invalid & ~hidden
            rows = np.flatnonzero(emptied)
            emptied[rows] = ~self._invalid_rows(np.ascontiguousarray(x[rows]))
        if self.on_invalid == "raise":
            if (invalid & ~emptied).any():
                raise_invalid(invalid & ~emptied, "NaN, +inf, or every logit masked")
            raise_invalid(emptied, "every logit masked by the chain's stages")
        return invalid

    def _candidates(self, x, ctx):
        """Edits, then the first truncation: ``(block, ids, offsets, bad, cctx)``.

        ``block`` holds the survivors of each row compacted (a stand-in 0 for a bad
        row), ``cctx`` the context of the stages that run on it.
        """
        in_kernel = self._kernel_mask(ctx)
        work, hidden = self._edit(x, ctx, masked=not in_kernel)
        ids, vals, offsets, flagged = _plan.truncate(
            work, self._plan.truncation_args(ctx.B), self._module, **in_kernel)
        bad = self._bad_rows(x, np.asarray(flagged, np.bool_), hidden)
        if bad.any():  # one stand-in survivor per bad row: stages stay well-defined
            ids, vals, offsets = _plan.stand_in(ids, vals, offsets, bad)
        block = _plan.compact(ids, vals, offsets)
        cctx = _Context(ctx.B, block.shape[1], None, ctx.seed, ctx.position)
        for stage in self._plan.after:
            block = stage.apply(self._ops, block, cctx)
        return block, ids, offsets, bad, cctx

    def _staged(self, x, ctx):
        """The whole chain but the terminal, stage by stage: ``(logits, bad)``."""
        invalid = self._invalid_rows(x)
        if invalid.any():
            if self.on_invalid == "raise":
                raise_invalid(invalid, "NaN, +inf, or every logit masked")
            # Flagged rows run on a harmless stand-in row; their token becomes -1.
            x = x.copy()
            x[invalid] = 0.0
        x, _ = self._edit(x, ctx)
        for stage in self._plan.after:
            x = stage.apply(self._ops, x, ctx)
        emptied = ~invalid & ~np.isfinite(x).any(axis=1)
        if emptied.any() and self.on_invalid == "raise":
            raise_invalid(emptied, "every logit masked by the chain's stages")
        return x, invalid | emptied

    def _terminal(self, x, ctx, bad):
        """Draw with the terminal; a bad row gets -1 and keeps its terminal state."""
        if bad.any():
            x = x.copy()
            x[bad] = 0.0  # keeps stateful updates well-defined; token replaced below
        terminal: Terminal = self.stages[-1]
        state = self._state[-1]
        saved = {k: v.copy() for k, v in state.items()} if bad.any() else None
        tokens = np.array(terminal.sample(self._ops, x, ctx, state), dtype=np.int32)
        if bad.any():
            tokens[bad] = -1
            for k in state:  # a flagged row's state does not move
                state[k] = np.where(bad, saved[k], state[k])
        return tokens

    @_arrays.host_io("logits")
    def process(self, logits, history=None, history_len=None, position=None, stream=None,
                bitmask=None, bitmask_rows=None):
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
        bitmask, bitmask_rows : optional
            A packed token bitmask and its row map, as in ``fs.sample`` (spec §10):
            disallowed tokens are masked before every stage.

        Returns
        -------
        numpy.ndarray of float32
            The shape of ``logits``; masked tokens are ``-inf`` (flagged invalid rows
            are all ``-inf``). GPU logits (``fastsample.gpu``): the canonical chain on
            backend cuda, a device result, ``stream`` honoured.
        """
        if _backends.is_gpu_array(logits):
            from . import gpu

            return gpu.chain_process(self, logits, history, history_len, stream, position,
                                     bitmask=bitmask, bitmask_rows=bitmask_rows)
        x, one_d, ctx = self._prepare(logits, history, history_len, position, bitmask,
                                      bitmask_rows)
        mode = self._plan.mode
        terminal = self.stages[-1]
        fused = getattr(self._module, "process_canonical", None)
        if mode == "fused" and fused is not None:
            work, hidden = self._edit(x, ctx)
            bad = self._bad_rows(x, self._invalid_rows(work), hidden)
            out = fused(np.where(bad[:, None], np.float32(0.0), work) if bad.any() else work,
                        *self._fused_args(ctx.B, self._plan.fused))
        elif mode == "candidates":
            block, ids, offsets, bad, cctx = self._candidates(x, ctx)
            block = terminal.process(self._ops, block, cctx, self._state[-1])
            out = _plan.expand(block, ids, offsets, ctx.V)
        else:
            out, bad = self._staged(x, ctx)
            out = terminal.process(self._ops, out, ctx, self._state[-1])
        if bad.any() or out is self._work:
            out = out.copy()
            out[bad] = -np.inf
        return out[0] if one_d else out

    @_arrays.host_io("logits")
    def sample(self, logits, history=None, history_len=None, position=None, stream=None,
               bitmask=None, bitmask_rows=None, logprobs=None, logprobs_mode="raw"):
        """Run the chain and draw one token per row.

        Parameters are those of ``process``, and ``logprobs`` / ``logprobs_mode``
        as in ``fs.sample`` (``"processed"``: the logits the terminal drew from).

        Returns
        -------
        int or numpy.ndarray of int32, shape (B,), or Sampled
            The token of each row (an int for 1-D logits); -1 marks a row flagged
            invalid (``on_invalid="flag"``). GPU logits: tokens on the device as the
            caller's array type (see ``fastsample.gpu``). With ``logprobs``, an
            ``fs.Sampled``.
        """
        if logprobs is not None:  # fastsample/logprobs.py: this call's tokens, and more
            from . import logprobs as _logprobs

            return _logprobs.chain_sample(self, logits, logprobs, logprobs_mode, {
                "history": history, "history_len": history_len, "position": position,
                "stream": stream, "bitmask": bitmask, "bitmask_rows": bitmask_rows})
        if _backends.is_gpu_array(logits):
            from . import gpu

            return gpu.chain_sample(self, logits, history, history_len, position, stream,
                                    bitmask=bitmask, bitmask_rows=bitmask_rows)
        if (self._one is not None and type(logits) is np.ndarray and history is None and
                history_len is None and position is None and bitmask_rows is None):
            tok = self._one_row(logits, bitmask)   # the engine loop's step, checked once
            if tok is not None:
                return tok
        x, one_d, ctx = self._prepare(logits, history, history_len, position, bitmask,
                                      bitmask_rows)
        if self._row_prog is not False and ctx.B:
            tokens = self._row_step(x, ctx)   # a common chain's step in one call per row
            if ctx.B == 1 and tokens is not None and tokens != -2:
                return tokens if one_d else np.array([tokens], np.int32)
            if ctx.B > 1 and tokens is not None and not (tokens == -2).any():
                return tokens
        mode = self._plan.mode
        if mode == "fused":
            in_kernel = self._kernel_mask(ctx)
            work, hidden = self._edit(x, ctx, masked=not in_kernel)
            tokens = self._sample_fused(work, ctx, in_kernel)
            if type(tokens) is int:
                if tokens != -2 and (hidden is None or not hidden[0]):
                    return tokens if one_d else np.array([tokens], np.int32)
                tokens = np.array([tokens], np.int32)
            flagged = tokens == -2
            if hidden is not None or flagged.any():
                tokens[self._bad_rows(x, flagged, hidden)] = -1
        elif mode == "candidates":
            block, ids, offsets, bad, cctx = self._candidates(x, ctx)
            tokens = _plan.token_ids(self._terminal(block, cctx, bad), ids, offsets)
        else:
            x, bad = self._staged(x, ctx)
            tokens = self._terminal(x, ctx, bad)
        return int(tokens[0]) if one_d else tokens

    def verify(self, target_logits, draft_tokens, draft_probs=None, *, num_draft=None,
               method="rejection", history=None, history_len=None, position=None):
        """Verify draft tokens against the target's logits (speculative decoding, spec §11).

        p_j is the distribution this chain's ``sample`` draws from at step j: the
        stages on target row j, the history stages seeing the row's history plus the
        drafts before j, at position + j. The terminal must be Dist or Greedy
        (Mirostat, MirostatV2 and AdaptiveP are a ``ValueError``). No state changes:
        ``accept`` the emitted tokens. See ``fastsample.verify`` for the parameters
        and the result; ``history``, ``history_len`` and ``position`` are those of
        ``sample`` (None: the chain's own), for the row before the first draft.
        """
        from .verify import chain_verify

        return chain_verify(self, target_logits, draft_tokens, draft_probs,
                            num_draft=num_draft, method=method, history=history,
                            history_len=history_len, position=position)

    def __repr__(self):
        return f"SamplerChain({list(self.stages)!r}, backend={self.backend!r})"
