"""The chain plan: how a ``SamplerChain`` runs, decided once when the chain is built.

A chain reads as ``[edits] [first truncation] [later stages] terminal``:

- **Edits** (the leading LogitBias, Penalties, DRY, NoRepeatNGram, BadWords and
  MinTokens stages; AllowedTokens) change a few logits each: the bias ids, the banned
  ids and the tokens of the history window. They run in
  chain order into one working copy of the logits (``out=``: the first copies the
  rows in its kernel's threads, the others edit in place), so a chain pays one copy
  for all of them, never a new ``(B, V)`` array per stage; the history stages read
  only the window they need (the chain's history is a per-row buffer).
- **Fused**: when what follows the edits is ``fs.sample``'s chain (TopK / TopP /
  MinP / Temperature in llama.cpp's or Hugging Face's order, then Dist), the
  backend's fused canonical kernel samples (or processes) the working copy.
- **Candidates**: when what follows starts with a run of TopK / TopP / MinP
  (llama.cpp's order, one shared min_keep) and the backend has ``truncate_canonical``
  (a backend without it runs such chains as stages), that kernel
  gathers the survivors (ids ascending, values) with the block-maxima passes of the
  fused kernel. Every later stage and the terminal run on the compacted survivors: a
  ``(B, n)`` row of their values, padded with ``-inf``. That is exact because every
  such stage sees only the unmasked values, in id order (ties break to the lower id,
  which is the lower compact index), and the draw's uniform depends on the seed and
  position only; a compact index maps back to its token id. Mirostat v1 is the one
  exception (its rule reads the vocabulary size), and history stages read token ids:
  chains with those after the truncation run as stages.
- **Whole distribution first**: when what follows the edits starts with Epsilon, Eta,
  TopA, PLess, TopNSigma, XTC, Typical or TailFree (``FIRST_WHOLE_OPS``, each also
  after a Temperature) and the rest could run on survivors, or is a Mirostat /
  MirostatV2 terminal after at most a Temperature, a one-row step (``row_program``)
  runs that stage's kernel for a whole row first (``csrc/fs_whole_first.inc``,
  ``kernels/cpu/whole_first.py``: one exp pass for its sums, then the kept tokens
  from the blocks that can hold them; Typical's window of a mass histogram, TailFree's
  sorted head; the Mirostats draw there and return the drawn token's
  log-probability for the mu update) and the rest on its survivors.
  Other calls (batches without a row program, ``process``) run such chains as stages.
- **Whole row**: a chain that no stage cuts first (a transform of the whole row first)
  has a row program too (``WHOLE_ROW_OP``): its stages read the row itself, whose
  positions are the survivors' ids. XTC first with stages after it does the same, less
  the few ids it removes.
- **A Mirostat terminal after other stages**: a row program draws it on the survivors
  the last stage left, told the vocabulary size (Mirostat v1 reads it), after a first
  cut (``truncation`` is kept for Mirostat v1, which the general route runs as stages), a
  whole-distribution stage first, or the whole row. An AdaptiveP terminal likewise
  (the drawn token's log-probability comes back for its update).
- **Stages**: anything else runs stage by stage on the working copy, as the
  reference does.
"""

from __future__ import annotations

import numpy as np

from .stages import (DRY, XTC, AdaptiveP, AllowedTokens, BadWords, Dist, Greedy, LogitBias,
                     MinP, MinTokens, Mirostat, MirostatV2, NoRepeatNGram, Penalties, Stage,
                     Temperature, TopK, TopP)

__all__ = ["Plan", "EDIT_STAGES", "HISTORY_STAGES", "FIRST_WHOLE_OPS", "TEMPERATURE_FIRST_OPS",
           "RowBans", "add_bans", "row_program"]

EDIT_STAGES = (LogitBias, Penalties, DRY, NoRepeatNGram, AllowedTokens, BadWords, MinTokens)
HISTORY_STAGES = (Penalties, DRY, NoRepeatNGram, BadWords)
# Edits that only ban ids chosen per call (RowBans): a row program takes them anywhere
# among its edits, as -inf biases (-inf stays -inf under every other edit)
BAN_STAGES = (BadWords, MinTokens)
_TRUNCATIONS = (TopK, TopP, MinP)   # in llama.cpp's order


def _first_truncation(stages):
    """The longest leading run of TopK / TopP / MinP in llama.cpp's order, one min_keep."""
    run = []
    for stage in stages:
        kind = type(stage)
        if kind not in _TRUNCATIONS or (run and _TRUNCATIONS.index(kind)
                                        <= _TRUNCATIONS.index(type(run[-1]))):
            break
        if run and not np.array_equal(np.asarray(stage.min_keep), np.asarray(run[0].min_keep)):
            break
        run.append(stage)
    return run


def _compact_safe(stage):
    """Whether a stage gives the same result on the compacted survivors of a row."""
    return not isinstance(stage, (*EDIT_STAGES, Mirostat))


class Plan:
    """The passes of one chain (see the module docstring).

    Attributes
    ----------
    edits : tuple of Stage
        The leading edit stages, run in place on the working copy.
    mode : {"fused", "candidates", "stages"}
    truncation : dict
        ``{TopK: stage, TopP: stage, MinP: stage}`` (present ones) in candidates mode,
        and in stages mode before a Mirostat v1 terminal (for row programs only).
    after : tuple of Stage
        The non-terminal stages after the edits (stages mode) or after the first
        truncation (candidates mode).
    first : Stage or None
        Stages mode: the whole-distribution stage (``FIRST_WHOLE_OPS``) that a row
        program runs first, when the stages after it (``first_after``) could run on
        its survivors; or a Mirostat / MirostatV2 terminal with no stage before it.
    first_temperature : Temperature or None
        A Temperature right before ``first`` (``TEMPERATURE_FIRST_OPS`` only).
    """

    def __init__(self, stages, fused_tail, fast=True, can_truncate=True):
        body, self.terminal = stages[:-1], stages[-1]
        if fast:  # Temperature(1) changes nothing (the reference copies the row)
            body = tuple(s for s in body if not (isinstance(s, Temperature)
                                                 and np.all(np.asarray(s.t) == 1.0)))
        self._window = {}
        self._truncation_args = {}
        self._bans = {}
        n = 0
        while fast and n < len(body) and isinstance(body[n], EDIT_STAGES):
            n += 1
        self.edits = tuple(body[:n])
        rest = tuple(body[n:])
        self.history_stages = tuple(s for s in body if isinstance(s, HISTORY_STAGES))
        self.fused = fused_tail(rest + (self.terminal,)) if fast else None
        self.truncation = {}
        self.after = rest
        self.first = None
        self.first_temperature = None
        self.first_after = ()
        if not fast:  # the reference backend: stage by stage, as written
            self.mode = "stages"
            return
        if self.fused is not None:
            self.mode = "fused"
            return
        run = _first_truncation(rest) if can_truncate else []
        after = rest[len(run):]
        if run and all(map(_compact_safe, after + (self.terminal,))):
            self.mode = "candidates"
            self.truncation = {type(s): s for s in run}
            self.after = after
        else:
            self.mode = "stages"
            if run and all(map(_compact_safe, after)) and isinstance(self.terminal, Mirostat):
                # only a row program cuts first here: it tells Mirostat v1 the vocabulary
                # size, which the general route's compacted survivors would not
                self.truncation = {type(s): s for s in run}
            self._plan_first(rest)

    def _plan_first(self, rest):
        """``first``: a whole-distribution stage (or a Mirostat terminal) that a row
        program runs on the whole row, after an optional Temperature."""
        lead = rest[:1] if rest and isinstance(rest[0], Temperature) else ()
        tail = rest[len(lead):]
        mirostat = isinstance(self.terminal, (Mirostat, MirostatV2))
        if mirostat and not tail:
            self.first = self.terminal
        elif (tail and tail[0].op in FIRST_WHOLE_OPS
                and (not lead or tail[0].op in TEMPERATURE_FIRST_OPS)
                and all(map(_compact_safe, tail[1:]))
                and (mirostat or _compact_safe(self.terminal))):
            # a Mirostat terminal on the survivors: a row program passes the vocabulary
            self.first, self.first_after = tail[0], tail[1:]
        if self.first is not None and lead:
            self.first_temperature = lead[0]

    def window(self, B):
        """How many of each row's latest history tokens the history stages read.

        None when a stage reads the whole history (NoRepeatNGram, ``last_n = -1``);
        0 when the chain has no history stage.
        """
        if B not in self._window:
            self._window[B] = self._longest_window(B)
        return self._window[B]

    def _longest_window(self, B):
        longest = 0   # no history stage: nothing to read
        for stage in self.history_stages:
            if isinstance(stage, NoRepeatNGram):
                return None
            if isinstance(stage, BadWords):   # the longest sequence's prefix
                longest = max(longest, stage.window)
                continue
            last_n = stage.rows(B)[-1]
            if last_n.size and int(last_n.min()) < 0:
                return None
            longest = max(longest, int(last_n.max()) if last_n.size else 0)
        return max(longest, 1) if self.history_stages else 0

    def bans(self, B):
        """The ``RowBans`` of the edits for a batch of ``B`` rows, or None when no edit
        is a BadWords or MinTokens."""
        if B not in self._bans:
            self._bans[B] = (RowBans(self.edits, B)
                             if any(isinstance(s, BAN_STAGES) for s in self.edits) else None)
        return self._bans[B]

    def truncation_args(self, B):
        """``(top_k, top_p, min_p, min_keep)`` (B,) arrays of the first truncation."""
        if B not in self._truncation_args:
            self._truncation_args[B] = self._make_truncation_args(B)
        return self._truncation_args[B]

    def _make_truncation_args(self, B):
        def param(kind, default, dtype):
            stage = self.truncation.get(kind)
            value = default if stage is None else stage.rows(B)[0]
            return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype), (B,)))
        first = next(iter(self.truncation.values()))
        min_keep = np.ascontiguousarray(first.rows(B)[-1], dtype=np.int64)
        return (param(TopK, 0, np.int64), param(TopP, 1.0, np.float64),
                param(MinP, 0.0, np.float64), min_keep)


def row_program(plan, fused_args=None, B=1, b=0):
    """The one-call description of a common chain's step on one row, or None.

    A backend with ``chain_program`` / ``chain_row`` (C) runs the whole per-token step
    of such a chain in one call: ``[LogitBias] [Penalties] [DRY]`` (in this order, a
    NoRepeatNGram, BadWords, MinTokens and AllowedTokens anywhere among them: BadWords
    and MinTokens as ``-inf`` biases, ``RowBans``, the one-token BadWords in ``bias``
    and the others added per call by the caller; AllowedTokens as the bitmask the
    caller passes with the call's own) as the edits,
    then the fused chain (``fused_args``: the chain's ``_fused_args(1, plan.fused)``)
    or the first truncation (or ``plan.first``, a whole-distribution stage) followed
    by up to ``MAX_AFTER`` stages of ``AFTER_OPS`` on the survivors (or, when no stage
    cuts the row first, on the whole row: ``first`` is ``WHOLE_ROW_OP``), and Dist or
    a Mirostat, AdaptiveP or Greedy terminal (``[edits] -> Greedy`` alone: the fused
    kernel at temperature 0). Anything
    else (another edit or terminal, a later stage of another kind) is None: the general
    route. The description holds row ``b``'s plain scalars of a batch of ``B`` rows
    (per-row parameters): ``bias`` (the ids ascending, stably, and their values: int64
    and float64 arrays; an id may exceed the V of a call, which the caller checks),
    ``ngram`` (NoRepeatNGram's n), ``penalties``, ``dry``, ``truncations`` or ``first``
    (``(op, a, b, c, min_keep)`` as an ``after`` entry; a Mirostat's mu is 0 there, the
    caller passes the row's),
    ``first_temperature``, ``fused``, ``after``, ``terminal`` (``(op, m)`` of a
    Mirostat after the stages, its mu per call too; ``("adaptive_p", target)``, its
    averages per call; ``("greedy", 0.0)``).
    """
    first = plan.first if plan.mode == "stages" else None
    mirostat = first is plan.terminal
    greedy = type(plan.terminal) is Greedy
    # a Mirostat or AdaptiveP terminal after the stages (the first cut's survivors or
    # the whole row), or Greedy (their first maximum)
    terminal = (plan.terminal if (isinstance(plan.terminal, (Mirostat, MirostatV2, AdaptiveP))
                                  and not mirostat) or greedy else None)
    cut = plan.mode == "candidates" or (plan.mode == "stages" and bool(plan.truncation))
    # no stage cuts the row first: the stages run on the whole row (WHOLE_ROW_OP); with
    # Greedy there may be none
    whole = (plan.mode == "stages" and first is None and not cut
             and (bool(plan.after) or greedy))
    if (type(plan.terminal) is not Dist and not mirostat and terminal is None) or (
            plan.mode not in ("fused", "candidates") and first is None and not whole
            and not cut):
        return None
    if plan.mode == "fused" and not plan.edits:
        return None   # fs.sample's own kernel already is one call (the chain's sample_row)
    # NoRepeatNGram's, BadWords' and MinTokens' bans commute with the other edits (-inf
    # stays -inf under each), so they may stand anywhere among them; the rest keep this
    # order
    kinds = [type(s) for s in plan.edits
             if not isinstance(s, (NoRepeatNGram, AllowedTokens, *BAN_STAGES))]
    lead = 1 if kinds[:1] == [LogitBias] else 0
    if (kinds[lead:] not in ([], [Penalties], [DRY], [Penalties, DRY])
            or sum(isinstance(s, NoRepeatNGram) for s in plan.edits) > 1):
        return None
    program = {}
    for stage in plan.edits:
        if isinstance(stage, (AllowedTokens, *BAN_STAGES)):
            continue   # RowBans, and AllowedTokens' bitmask: the caller adds them per call
        if isinstance(stage, NoRepeatNGram):
            program["ngram"] = int(stage.rows(B)[0][b])
            continue
        if isinstance(stage, LogitBias):
            # ids ascending, a run of one id in the given order (its biases add up so)
            order = np.argsort(stage.ids, kind="stable")
            program["bias"] = (np.ascontiguousarray(stage.ids[order], np.int64),
                               np.ascontiguousarray(stage.values[order], np.float64))
            continue
        values = [a[b].item() for a in stage.rows(B)]
        if isinstance(stage, Penalties):
            program["penalties"] = tuple(values)
        else:
            program["dry"] = (*values, stage.breakers)
    bans = plan.bans(B)
    if bans is not None and bans.static.size:   # one-token BadWords: banned on every call
        program["bias"] = add_bans(program.get("bias"), bans.static)
    if whole and greedy and not plan.after:
        # [edits] -> Greedy: fs.sample's greedy kernel (temperature 0), the first maximum
        # of the edited row; on C through the overlay, with no copy of the row
        program["truncations"] = (0, 1.0, 0.0, 1)
        program["fused"] = (0.0, True)
        return program
    if plan.mode == "fused":
        k, p, mp, t, mk, t_last = fused_args
        program["truncations"] = (int(k[b]), float(p[b]), float(mp[b]), int(mk[b]))
        program["fused"] = (float(t[b]), bool(t_last))
        return program
    if plan.first_temperature is not None:
        t = float(plan.first_temperature.rows(B)[0][b])
        if not 0.0 < t < np.inf:
            return None   # greedy first: the general route
        program["first_temperature"] = t
    if mirostat:   # mu is the row's state: the caller passes it on every call
        m = float(first.rows(B)[2][b]) if isinstance(first, Mirostat) else 0.0
        program["first"] = (first.op, 0.0, m, 0.0, 1)
        program["after"] = ()
        return program
    if terminal is not None:   # a Mirostat's mu, AdaptiveP's averages: passed per call
        m = (float(terminal.rows(B)[2][b]) if isinstance(terminal, Mirostat)
             else float(terminal.rows(B)[0][b]) if isinstance(terminal, AdaptiveP) else 0.0)
        program["terminal"] = (terminal.op, m)
    if whole:
        stages = plan.after
    elif first is None:
        program["truncations"] = tuple(a[b].item() for a in plan.truncation_args(B))
        # stages mode (a Mirostat v1 terminal): ``after`` still starts with the cut
        stages = plan.after if plan.mode == "candidates" else plan.after[len(plan.truncation):]
    else:
        stages = (first,) + tuple(plan.first_after)
    after = []
    for stage in stages:
        # XTC rolls with the row's seed and position (the C and numba programs take
        # them per call); every other stage of AFTER_OPS is Stage.apply's op(x, *rows)
        if stage.op not in AFTER_OPS or (type(stage).apply is not Stage.apply
                                         and type(stage) is not XTC):
            return None
        names = [p.name for p in stage.PARAMS]
        values = [a[b].item() for a in stage.rows(B)]
        mk = values.pop(names.index("min_keep")) if "min_keep" in names else 1
        a, b_, c = (*values, 0.0, 0.0, 0.0)[:3]
        after.append((stage.op, float(a), float(b_), float(c), int(mk)))
    if whole:
        program["first"] = (WHOLE_ROW_OP, 0.0, 0.0, 0.0, 1)
    elif first is not None:
        program["first"] = after.pop(0)
    if len(after) > MAX_AFTER:
        return None
    program["after"] = tuple(after)
    return program


class RowBans:
    """The ids a chain's BadWords and MinTokens edits ban in one row on one call, for
    the row programs: they join LogitBias' ids as ``-inf`` biases (``add_bans``),
    which is exact wherever the bans stand among the edits, since ``-inf`` stays
    ``-inf`` under a bias, a penalty and DRY. A NaN or +inf at a banned id makes the
    program hand the row back, as at any bias id.

    Attributes
    ----------
    static : numpy.ndarray of int64
        The one-token BadWords sequences' ids: banned on every call (in the program).
    top : int
        The largest token id any of the stages names (the caller sends a call whose V
        is not above it the general way, which raises).
    """

    def __init__(self, edits, B):
        static, self._prefixes, self._min_tokens, self.top = [], {}, [], -1
        for stage in edits:
            if isinstance(stage, BadWords):
                self.top = max(self.top, int(stage.tokens.max(initial=-1)))
                for seq in stage.sequences:
                    if seq.size == 1:
                        static.append(int(seq[0]))
                    else:   # looked up by the prefix's last token: one dict hit per call
                        prefix = tuple(seq[:-1].tolist())
                        self._prefixes.setdefault(prefix[-1], []).append((prefix, int(seq[-1])))
            elif isinstance(stage, MinTokens):
                self.top = max(self.top, int(stage.stop_ids.max(initial=-1)))
                self._min_tokens.append((stage.rows(B)[0].tolist(),
                                         tuple(stage.stop_ids.tolist())))
        self.static = np.unique(np.array(static, np.int64))

    def key(self, b, history, position):
        """The ids banned beyond ``static`` in row ``b`` with this ``history`` (int64,
        its latest tokens last) at this ``position``: a tuple (empty: none), the same
        tuple for the same bans (the caller's cache key)."""
        extra = ()
        for n, stops in self._min_tokens:
            if position < n[b]:
                extra += stops
        k = history.shape[0]
        if k and self._prefixes:
            for prefix, token in self._prefixes.get(int(history[k - 1]), ()):
                # a one-token prefix is the dict's key: it matched
                if len(prefix) == 1 or (k >= len(prefix) and
                                        tuple(history[k - len(prefix):].tolist()) == prefix):
                    extra += (token,)
        return extra


def add_bans(bias, ids):
    """A row program's ``bias`` (ids ascending stably, values; or None) with ``ids``
    banned: ``-inf`` biases after the id's own, so a run of one id adds up to ``-inf``."""
    ids = np.asarray(ids, np.int64)
    if bias is None:
        bias = (np.zeros(0, np.int64), np.zeros(0, np.float64))
    all_ids = np.concatenate([bias[0], ids])
    values = np.concatenate([bias[1], np.full(ids.size, -np.inf)])
    order = np.argsort(all_ids, kind="stable")
    return np.ascontiguousarray(all_ids[order]), np.ascontiguousarray(values[order])


# The stages a row program runs on the survivors (each its backend kernel on the
# (1, n) row of survivors, as the candidates route applies it): their ops, in the
# description (op, a, b, c, min_keep) with the stage's parameters a, b, c in order.
AFTER_OPS = frozenset({"xtc", "temperature", "top_k", "top_p", "min_p", "typical",
                       "top_n_sigma", "epsilon", "eta", "top_a", "p_less", "tail_free",
                       "dynamic_temperature", "smoothing"})
MAX_AFTER = 8
# The "first stage" of a chain that no stage cuts first (a transform first: Smoothing,
# DynamicTemperature, ...): the stages of AFTER_OPS read the whole row, whose
# positions are the survivors' ids (no gather), then the draw.
WHOLE_ROW_OP = "whole_row"
# The stages a row program may run first on the whole row (before any truncation), in
# the same description; their survivors then go to the stages of AFTER_OPS.
FIRST_WHOLE_OPS = frozenset({"epsilon", "eta", "top_a", "p_less", "top_n_sigma", "xtc",
                             "typical", "tail_free"})
# Those a Temperature may come before (on the whole row: inside the same passes, or,
# for the rules without a temperature inside, one vector pass first), and the Mirostat
# terminals, which a row program runs first too.
TEMPERATURE_FIRST_OPS = FIRST_WHOLE_OPS | {"mirostat", "mirostat_v2"}


def truncate(x, args, module, **masked):
    """``(ids, vals, offsets, invalid)`` of the first truncation on ``x`` (B, V): the
    backend ``module``'s ``truncate_row`` (one row, scalar arguments: the per-token
    path) or ``truncate_canonical``. ``masked``: ``bitmask`` and ``bitmask_rows``
    for the kernel to read (docs/spec.md §10), or nothing."""
    row_fn = getattr(module, "truncate_row", None) if x.shape[0] == 1 else None
    if row_fn is not None:
        if masked:
            r = int(masked["bitmask_rows"][0])
            masked = {"bitmask": masked["bitmask"][r] if r >= 0 else None}
        ids, vals, invalid = row_fn(x[0], *(a.item() for a in args), **masked)
        return ids, vals, np.array([0, ids.size], np.int64), np.array([invalid])
    return module.truncate_canonical(x, *args, **masked)


def stand_in(ids, vals, offsets, bad):
    """The survivors with each ``bad`` row's replaced by one stand-in (id 0, value 0)."""
    ids_out, vals_out = [], []
    for b in range(offsets.size - 1):
        if bad[b]:
            ids_out.append(np.zeros(1, np.int32))
            vals_out.append(np.zeros(1, np.float32))
        else:
            ids_out.append(ids[offsets[b]:offsets[b + 1]])
            vals_out.append(vals[offsets[b]:offsets[b + 1]])
    counts = np.array([a.size for a in ids_out], np.int64)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return (np.concatenate(ids_out).astype(np.int32), np.concatenate(vals_out).astype(np.float32),
            offsets)


def compact(ids, vals, offsets):
    """The survivors as a ``(B, n)`` float32 row block padded with ``-inf``."""
    counts = np.diff(offsets)
    B = counts.size
    if B == 1:
        return vals.reshape(1, -1)
    n = int(counts.max()) if B else 0
    out = np.full((B, max(n, 1)), -np.inf, np.float32)
    rows = np.repeat(np.arange(B), counts)
    cols = np.arange(ids.size) - np.repeat(offsets[:-1], counts)
    out[rows, cols] = vals
    return out


def expand(block, ids, offsets, V):
    """Compacted processed rows back to ``(B, V)`` logits (``-inf`` off the survivors)."""
    counts = np.diff(offsets)
    B = counts.size
    out = np.full((B, V), -np.inf, np.float32)
    rows = np.repeat(np.arange(B), counts)
    cols = np.arange(ids.size) - np.repeat(offsets[:-1], counts)
    out[rows, ids] = block[rows, cols]
    return out


def token_ids(tokens, ids, offsets):
    """Compact indices (``-1`` kept) to token ids."""
    if offsets.size == 2:  # one row
        t = int(tokens[0])
        return np.array([ids[t] if t >= 0 else -1], np.int32)
    tokens = np.asarray(tokens, dtype=np.int64)
    out = np.full(tokens.shape, -1, np.int32)
    ok = tokens >= 0
    out[ok] = ids[offsets[:-1][ok] + tokens[ok]]
    return out
