"""Stage objects: the samplers of docs/spec.md §4 as values a ``SamplerChain`` runs in order.

A stage validates its parameters when built (scalars or per-row arrays) and, when
run, calls the backend function of the same name (``docs/internals.md``). Terminal
stages end a chain and make the draw; the stateful ones keep per-row state that the
chain owns.
"""

from __future__ import annotations

import math

import numpy as np

from .validation import Check, as_token_ids, per_row

__all__ = [
    "Stage", "Terminal", "LogitBias", "Penalties", "DRY", "NoRepeatNGram", "TopNSigma",
    "TopK", "Typical", "TopP", "MinP", "XTC", "Epsilon", "Eta", "TopA", "PLess",
    "TailFree", "Temperature", "DynamicTemperature", "Smoothing", "Dist", "Greedy",
    "Mirostat", "MirostatV2", "AdaptiveP", "AllowedTokens", "BadWords", "MinTokens",
]

_REQUIRED = object()

FINITE = Check(np.isfinite, "finite")
POSITIVE = Check(lambda v: np.isfinite(v) & (v > 0), "finite and > 0")
NON_NEGATIVE = Check(lambda v: np.isfinite(v) & (v >= 0), "finite and >= 0")
AT_LEAST_MINUS_ONE = Check(lambda v: v >= -1, ">= -1 (-1 = the whole history)")
AT_LEAST_ONE = Check(lambda v: v >= 1, ">= 1")
UNIT_INTERVAL_OPEN = Check(lambda v: (v >= 0) & (v < 1), "in [0, 1)")


class Param:
    """One parameter of a stage: its name, default, and checks."""

    def __init__(self, name, default=_REQUIRED, integer=False, check=FINITE):
        self.name = name
        self.default = default
        self.integer = integer
        self.check = check


def _min_keep():
    return Param("min_keep", 1, integer=True, check=AT_LEAST_ONE)


class Stage:
    """Base class of every stage.

    Subclasses list their parameters in ``PARAMS`` (in the order the backend function
    takes them) and name the backend function in ``op``.
    """

    PARAMS: tuple = ()
    op = ""
    terminal = False

    def __init__(self, *args, **kwargs):
        names = [p.name for p in self.PARAMS]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} parameters")
        values = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no parameter {key!r}; "
                                f"its parameters are {names}")
            if key in values:
                raise TypeError(f"{type(self).__name__} got {key!r} twice")
            values[key] = value
        self._values = {}
        for p in self.PARAMS:
            value = values.get(p.name, p.default)
            if value is _REQUIRED:
                raise TypeError(f"{type(self).__name__} needs parameter {p.name!r}")
            per_row(self._qualified(p.name), value, integer=p.integer, check=p.check)
            self._values[p.name] = value
            setattr(self, p.name, value)

    @property
    def name(self):
        return type(self).__name__

    def _qualified(self, param):
        return f"{self.name}.{param}"

    def rows(self, B):
        """Every parameter as a ``(B,)`` array, in ``PARAMS`` order.

        Checked once per B and kept (a chain calls this on every token); the arrays are
        shared between calls, so callers must not write them.
        """
        cache = self.__dict__.setdefault("_rows", {})
        if B not in cache:
            cache[B] = [
                per_row(self._qualified(p.name), self._values[p.name], B,
                        integer=p.integer, check=p.check)
                for p in self.PARAMS
            ]
        return cache[B]

    def required_ops(self):
        return (self.op,)

    def apply(self, ops, logits, ctx):
        """Run the stage on validated ``(B, V)`` logits; returns new logits.

        The edit stages (LogitBias and the history stages) also take ``out=logits``,
        which edits the logits in place.
        """
        return getattr(ops, self.op)(logits, *self.rows(ctx.B))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{self.name}({args})"


# ----------------------------------------------------------------------------------
# stages that need the history, the bias table or the random stream


class LogitBias(Stage):
    """Add a bias to chosen tokens; a ``-inf`` bias bans the token.

    Parameters
    ----------
    bias : dict of int to float, or (ids, values)
    """

    op = "logit_bias"

    def __init__(self, bias):
        super().__init__()
        if isinstance(bias, dict):
            ids, values = list(bias.keys()), list(bias.values())
        else:
            ids, values = bias
        ids = np.asarray(ids)
        values = np.asarray(values, dtype=np.float64)
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"LogitBias ids must be integer token ids; got dtype {ids.dtype}")
        ids = ids.astype(np.int64).ravel()
        values = values.ravel()
        if ids.shape != values.shape:
            raise ValueError(f"LogitBias has {ids.size} ids but {values.size} values")
        if np.isnan(values).any() or np.isposinf(values).any():
            raise ValueError("LogitBias values must not be NaN or +inf (-inf bans a token)")
        if (ids < 0).any():
            raise ValueError(f"LogitBias token {int(ids[ids < 0][0])} is outside [0, V)")
        self.ids, self.values = ids, values

    def apply(self, ops, logits, ctx, out=None):
        ids = as_token_ids("LogitBias token", self.ids, ctx.V)
        return ops.logit_bias(logits, ids, self.values, out=out)

    def __repr__(self):
        return f"LogitBias({dict(zip(self.ids.tolist(), self.values.tolist()))!r})"


class Penalties(Stage):
    """Repetition (CTRL), frequency and presence penalties (llama.cpp, OpenAI).

    Each parameter is a scalar or one value per row (a ``(B,)`` array). The rule is
    spec §4's; a token counts if it is among the last ``last_n`` tokens of the row's
    history.

    Attributes
    ----------
    repeat : float, default 1.0
        Must be > 0. A seen token's logit ``l`` becomes ``l / repeat`` if ``l > 0``,
        else ``l * repeat``.
    frequency : float, default 0.0
        Subtracted once per occurrence.
    presence : float, default 0.0
        Subtracted once from every seen token.
    last_n : int, default 64
        The window of history tokens; -1 is the whole history, 0 turns the stage off.
    """

    op = "penalties"
    PARAMS = (
        Param("repeat", 1.0, check=POSITIVE),
        Param("frequency", 0.0),
        Param("presence", 0.0),
        Param("last_n", 64, integer=True, check=AT_LEAST_MINUS_ONE),
    )

    def apply(self, ops, logits, ctx, out=None):
        rows = self.rows(ctx.B)
        history = ctx.history
        if ctx.B > 1:  # only the window: the kernels join the rows into one array
            history = [h[len(h) - n:] if 0 < n < len(h) else h
                       for h, n in zip(history, rows[3].tolist())]
        return ops.penalties(logits, history, *rows, out=out)


class DRY(Stage):
    """DRY, "don't repeat yourself" (text-generation-webui, llama.cpp); spec §4.1.

    Each parameter is a scalar or one value per row (a ``(B,)`` array).

    Parameters
    ----------
    multiplier : float
        Must be >= 0; 0 turns the stage off.
    base : float, default 1.75
        A repeat of length ``L >= allowed_length`` loses
        ``multiplier * base ** (L - allowed_length)``; ``base < 1`` turns it off.
    allowed_length : int, default 2
        The longest repeat that goes unpenalised.
    last_n : int, default -1
        The window of history tokens searched; -1 is the whole history.
    breakers : sequence of int, default ()
        Token ids that end a match (see ``fastsample.dry_breakers``); the same for every
        row.
    """

    op = "dry"
    PARAMS = (
        Param("multiplier", check=NON_NEGATIVE),
        Param("base", 1.75),
        Param("allowed_length", 2, integer=True, check=Check(lambda v: v >= 0, ">= 0")),
        Param("last_n", -1, integer=True, check=AT_LEAST_MINUS_ONE),
    )

    def __init__(self, multiplier, base=1.75, allowed_length=2, last_n=-1, breakers=()):
        super().__init__(multiplier, base, allowed_length, last_n)
        breakers = np.asarray(list(breakers) if not isinstance(breakers, np.ndarray) else breakers)
        if breakers.size and breakers.dtype.kind not in "iu":
            raise TypeError("DRY breakers must be token ids (see fastsample.dry_breakers)")
        self.breakers = breakers.astype(np.int64).ravel()
        if (self.breakers < 0).any():
            raise ValueError(f"DRY breaker {int(self.breakers.min())} is outside [0, V)")

    def apply(self, ops, logits, ctx, out=None):
        breakers = as_token_ids("DRY breaker", self.breakers, ctx.V)
        return ops.dry(logits, ctx.history, *self.rows(ctx.B), breakers, out=out)


class NoRepeatNGram(Stage):
    """Ban tokens that would repeat an n-gram of the history (transformers).

    Attributes
    ----------
    n : int or array_like of int
        The n-gram length; ``n <= 0`` turns the stage off.
    """

    op = "no_repeat_ngram"
    PARAMS = (Param("n", integer=True),)

    def apply(self, ops, logits, ctx, out=None):
        return ops.no_repeat_ngram(logits, ctx.history, *self.rows(ctx.B), out=out)


class XTC(Stage):
    """Exclude Top Choices (text-generation-webui, llama.cpp).

    With chance ``probability`` (stream 1 of spec §5, one roll per row and position),
    when at least two tokens have ``p >= threshold``, every one of them but the least
    likely is masked. Each parameter is a scalar or one value per row (a ``(B,)``
    array).

    Attributes
    ----------
    probability : float
        ``probability <= 0`` turns the stage off.
    threshold : float
        ``threshold > 0.5`` turns the stage off.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "xtc"
    PARAMS = (Param("probability"), Param("threshold"), _min_keep())

    def apply(self, ops, logits, ctx):
        return ops.xtc(logits, *self.rows(ctx.B), ctx.seed, ctx.position)


# ----------------------------------------------------------------------------------
# token constraints (spec §10): sparse edits, like the history stages


def _id_array(what, ids):
    """Token ids given at construction as int64 (1-D), checked >= 0 (V is checked when
    the stage runs)."""
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer token ids; got dtype {arr.dtype}")
    arr = arr.astype(np.int64).ravel()
    if (arr < 0).any():
        raise ValueError(f"{what} has token {int(arr[arr < 0][0])} outside [0, V)")
    return arr


class AllowedTokens(Stage):
    """Only these token ids may be drawn (vLLM ``allowed_token_ids``); every other
    token is masked. The same ids for every row; an empty list is an error.
    """

    op = "allowed_tokens"

    def __init__(self, ids):
        super().__init__()
        self.ids = _id_array("AllowedTokens ids", ids)
        if self.ids.size == 0:
            raise ValueError("AllowedTokens needs at least one token id")
        self._top = int(self.ids.max())   # ids are >= 0: only V is left to check

    def apply(self, ops, logits, ctx, out=None):
        if self._top >= ctx.V:   # raises, naming the token
            as_token_ids("AllowedTokens token", self.ids, ctx.V)
        return ops.allowed_tokens(logits, self.ids, out=out)

    def __repr__(self):
        return f"AllowedTokens({self.ids.tolist()!r})"


class BadWords(Stage):
    """vLLM ``bad_words`` as token sequences: for each sequence s, when the row's
    history ends with ``s[:-1]``, ``s[-1]`` is banned; a one-token sequence is always
    banned. The same sequences for every row.

    Parameters
    ----------
    sequences : iterable of sequences of int
        Each non-empty.
    """

    op = "bad_words"

    def __init__(self, sequences):
        super().__init__()
        if isinstance(sequences, np.ndarray) and sequences.ndim == 1:
            raise TypeError("BadWords takes a list of token sequences, not one sequence")
        seqs = [_id_array(f"BadWords sequence {i}", s) for i, s in enumerate(sequences)]
        for i, s in enumerate(seqs):
            if s.size == 0:
                raise ValueError(f"BadWords sequence {i} is empty")
        self.sequences = seqs
        self.tokens = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
        self.offsets = np.zeros(len(seqs) + 1, np.int64)
        np.cumsum([s.size for s in seqs], out=self.offsets[1:])
        # the history tokens a call reads: the longest prefix
        self.window = max((s.size - 1 for s in seqs), default=0)

    def apply(self, ops, logits, ctx, out=None):
        tokens = as_token_ids("BadWords token", self.tokens, ctx.V)
        history = ctx.history if ctx.history is not None else [np.zeros(0, np.int64)] * ctx.B
        return ops.bad_words(logits, history, tokens, self.offsets, out=out)

    def __repr__(self):
        return f"BadWords({[s.tolist() for s in self.sequences]!r})"


class MinTokens(Stage):
    """Ban ``stop_ids`` while the row's position is below n (vLLM/OpenAI
    ``min_tokens``; transformers' ``MinNewTokensLengthLogitsProcessor``). The
    position is the chain's (tokens accepted so far, or the ``position`` argument).

    Parameters
    ----------
    n : int or array_like of int, shape (B,)
        >= 0; per row.
    stop_ids : sequence of int
        The end-of-sequence / stop token ids (the same for every row).
    """

    op = "min_tokens"
    PARAMS = (Param("n", integer=True, check=Check(lambda v: v >= 0, ">= 0")),)

    def __init__(self, n, stop_ids):
        super().__init__(n)
        self.stop_ids = _id_array("MinTokens stop_ids", stop_ids)

    def apply(self, ops, logits, ctx, out=None):
        ids = as_token_ids("MinTokens stop id", self.stop_ids, ctx.V)
        return ops.min_tokens(logits, *self.rows(ctx.B), ids, ctx.position, out=out)

    def __repr__(self):
        return f"MinTokens(n={self.n!r}, stop_ids={self.stop_ids.tolist()!r})"


# ----------------------------------------------------------------------------------
# plain truncations and transforms


class TopNSigma(Stage):
    """Top-nσ (Tang et al. 2024; llama.cpp): keep ``l >= max - n * std``.

    Attributes
    ----------
    n : float or array_like
        Standard deviations below the max; ``n <= 0`` turns the stage off.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "top_n_sigma"
    PARAMS = (Param("n"), _min_keep())


class TopK(Stage):
    """Top-k (Fan et al. 2018): keep the k largest logits, ties kept.

    Attributes
    ----------
    k : int or array_like of int
        ``k <= 0`` or ``k >=`` the number of finite logits is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "top_k"
    PARAMS = (Param("k", integer=True), _min_keep())


class Typical(Stage):
    """Locally typical sampling (Meister et al. 2022).

    Keeps the tokens whose surprise ``-ln p`` is closest to the entropy, up to mass p.

    Attributes
    ----------
    p : float or array_like
        Must be >= 0; ``p >= 1`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "typical"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class TopP(Stage):
    """Nucleus sampling (Holtzman et al. 2019).

    Keeps the most probable tokens until their mass reaches p (ties at the cut kept).

    Attributes
    ----------
    p : float or array_like
        Must be >= 0; ``p >= 1`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "top_p"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class MinP(Stage):
    """Min-p (Nguyen et al. 2024; llama.cpp): keep ``p >= p * p_max``.

    Attributes
    ----------
    p : float or array_like
        Must be >= 0; 0 is a no-op, ``p > 1`` keeps only the maximum.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "min_p"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class Epsilon(Stage):
    """Epsilon sampling (Hewitt et al. 2022; transformers).

    Attributes
    ----------
    epsilon : float or array_like
        Tokens with ``p < epsilon`` are masked; ``epsilon <= 0`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "epsilon"
    PARAMS = (Param("epsilon"), _min_keep())


class Eta(Stage):
    """Eta sampling (Hewitt et al. 2022; transformers).

    Attributes
    ----------
    epsilon : float or array_like
        Tokens with ``p < min(epsilon, sqrt(epsilon) * exp(-H))`` are masked (H the
        entropy); ``epsilon <= 0`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "eta"
    PARAMS = (Param("epsilon"), _min_keep())


class TopA(Stage):
    """Top-a (text-generation-webui): mask ``p < a * p_max**2``.

    Attributes
    ----------
    a : float or array_like
        ``a <= 0`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "top_a"
    PARAMS = (Param("a"), _min_keep())


class PLess(Stage):
    """P-less sampling: mask ``p < sum(p**2)``.

    Attributes
    ----------
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "p_less"
    PARAMS = (_min_keep(),)


class TailFree(Stage):
    """Tail-free sampling (Bricken 2019; text-generation-webui's rule).

    Attributes
    ----------
    z : float or array_like
        The cut on the normalised second differences of the sorted probabilities;
        ``z >= 1`` is a no-op.
    min_keep : int or array_like of int, default 1
        Keep at least this many tokens (>= 1): the top ``min_keep`` logits, ties kept.
    """

    op = "tail_free"
    PARAMS = (Param("z"), _min_keep())


class Temperature(Stage):
    """Divide logits by t; t <= 0 is greedy.

    Attributes
    ----------
    t : float or array_like
        1 is a no-op; ``t <= 0`` keeps only the first maximum.
    """

    op = "temperature"
    PARAMS = (Param("t"),)


class DynamicTemperature(Stage):
    """Entropy-based dynamic temperature (text-generation-webui, llama.cpp).

    The temperature runs from ``max(0, t - range)`` to ``t + range`` with the row's
    normalised entropy ``(H / ln n) ** exponent``.

    Attributes
    ----------
    t : float or array_like
        The central temperature.
    range : float or array_like
        ``range <= 0`` is plain temperature ``t``.
    exponent : float or array_like, default 1.0
        Must be >= 0.
    """

    op = "dynamic_temperature"
    PARAMS = (Param("t"), Param("range"), Param("exponent", 1.0, check=NON_NEGATIVE))


class Smoothing(Stage):
    """Quadratic sampling: smoothing factor and curve (text-generation-webui).

    With ``d = l - l_max``: ``l' = l_max - k * factor * d**2 + s * factor * d**3``,
    ``k = (3 - curve) / 2``, ``s = (curve - 1) / 2``.

    Attributes
    ----------
    factor : float or array_like
        ``factor <= 0`` is a no-op.
    curve : float or array_like, default 1.0
        1 is purely quadratic.
    """

    op = "smoothing"
    PARAMS = (Param("factor"), Param("curve", 1.0))


# ----------------------------------------------------------------------------------
# terminal stages


class Terminal(Stage):
    """A stage that ends a chain and makes the draw.

    ``process`` gives the logits the draw would use; ``sample`` draws, updating the
    per-row ``state`` (a dict the chain owns, made by ``init_state``) in place.
    """

    terminal = True

    def required_ops(self):
        return (self.op, "draw")

    def init_state(self, B):
        return {}

    def process(self, ops, logits, ctx, state):
        return logits

    def sample(self, ops, logits, ctx, state):
        return ops.draw(self.process(ops, logits, ctx, state), ctx.seed, ctx.position)


class Dist(Terminal):
    """The draw of spec §5 over the processed logits."""

    def required_ops(self):
        return ("draw",)


class Greedy(Terminal):
    """The first maximum."""

    op = "greedy"

    def required_ops(self):
        return ("greedy", "argmax")

    def process(self, ops, logits, ctx, state):
        return ops.greedy(logits)

    def sample(self, ops, logits, ctx, state):
        return ops.argmax(logits)


class _MirostatBase(Terminal):
    """Shared state handling of Mirostat v1 and v2: mu starts at 2*tau."""

    def required_ops(self):
        return (self.op, "draw", "token_logprob")

    def init_state(self, B):
        tau = self.rows(B)[0]
        return {"mu": 2.0 * tau}

    def sample(self, ops, logits, ctx, state):
        kept = self.process(ops, logits, ctx, state)
        tokens = ops.draw(kept, ctx.seed, ctx.position)
        self.update(state, ctx.B, tokens >= 0, ops.token_logprob(kept, tokens))
        return tokens

    def row_inputs(self, state):
        """What a row program's call takes of each row's state: mu, (B,)."""
        return state["mu"]

    def row_input(self, state):
        """``row_inputs`` of a one-row state (the engine loop's step)."""
        return float(state["mu"][0])

    def update(self, state, B, drawn, logprob):
        """mu -= eta * (surprise - tau) where a token was drawn; surprise = -log2 of its
        probability among the kept tokens (``logprob``, natural log)."""
        tau, eta = self.rows(B)[:2]
        surprise = -logprob / math.log(2.0)
        state["mu"] = np.where(drawn, state["mu"] - eta * (surprise - tau), state["mu"])

    def update_one(self, state, logprob):
        """``update`` of one row that drew (the engine loop's step): the same float64
        operations on scalars."""
        tau, eta = self.rows(1)[:2]
        surprise = -logprob / math.log(2.0)
        state["mu"] = np.array([float(state["mu"][0]) - float(eta[0]) * (surprise - float(tau[0]))])


class Mirostat(_MirostatBase):
    """Mirostat v1 (Basu et al. 2021), llama.cpp's form.

    Terminal. Each row keeps its own ``mu`` (starting at ``2 * tau``), updated when
    ``sample`` draws.

    Attributes
    ----------
    tau : float or array_like, default 5.0
        The target surprise, in bits.
    eta : float or array_like, default 0.1
        The learning rate of ``mu``.
    m : int or array_like of int, default 100
        How many of the most likely tokens estimate the Zipf exponent (>= 1).
    """

    op = "mirostat"
    PARAMS = (Param("tau", 5.0), Param("eta", 0.1), Param("m", 100, integer=True, check=AT_LEAST_ONE))

    def process(self, ops, logits, ctx, state):
        return ops.mirostat(logits, state["mu"], self.rows(ctx.B)[2])


class MirostatV2(_MirostatBase):
    """Mirostat v2 (Basu et al. 2021), llama.cpp's form.

    Terminal. Keeps the tokens with ``-log2 p <= mu``, draws, and updates the row's
    ``mu`` (starting at ``2 * tau``).

    Attributes
    ----------
    tau : float or array_like, default 5.0
        The target surprise, in bits.
    eta : float or array_like, default 0.1
        The learning rate of ``mu``.
    """

    op = "mirostat_v2"
    PARAMS = (Param("tau", 5.0), Param("eta", 0.1))

    def process(self, ops, logits, ctx, state):
        return ops.mirostat_v2(logits, state["mu"])


class AdaptiveP(Terminal):
    """Adaptive-p (llama.cpp / text-generation-webui): steer the drawn p to a target.

    Terminal. Each row keeps exponential moving averages of the drawn tokens'
    probabilities, updated when ``sample`` draws.

    Attributes
    ----------
    target : float or array_like
        The probability to steer toward; ``target < 0`` is a plain draw.
    decay : float or array_like, default 0.9
        The decay of the moving averages, in ``[0, 1)``.
    """

    op = "adaptive_p"
    PARAMS = (Param("target"), Param("decay", 0.9, check=UNIT_INTERVAL_OPEN))

    def required_ops(self):
        return (self.op, "draw", "token_logprob")

    def init_state(self, B):
        target, decay = self.rows(B)
        # Start at equilibrium: the EMA of the drawn p equals the target.
        return {"ema_sum": target / (1.0 - decay), "ema_weight": 1.0 / (1.0 - decay)}

    def process(self, ops, logits, ctx, state):
        target = self.rows(ctx.B)[0]
        return ops.adaptive_p(logits, target, state["ema_sum"], state["ema_weight"])

    def sample(self, ops, logits, ctx, state):
        tokens = ops.draw(self.process(ops, logits, ctx, state), ctx.seed, ctx.position)
        self.update(state, ctx.B, tokens >= 0, ops.token_logprob(logits, tokens))
        return tokens

    def row_inputs(self, state):
        """What a row program's call takes of each row's state: (ema_sum, ema_weight),
        (B, 2)."""
        return np.stack([state["ema_sum"], state["ema_weight"]], axis=1)

    def update(self, state, B, drawn, logprob):
        """The averages move where a token was drawn and the row's target is >= 0:
        ``S = p + decay * S``, ``W = 1 + decay * W``, p = exp(``logprob``), the drawn
        token's probability before the reshaping (natural log)."""
        target, decay = self.rows(B)
        update = drawn & (target >= 0)
        p_orig = np.exp(logprob)
        state["ema_sum"] = np.where(update, p_orig + decay * state["ema_sum"], state["ema_sum"])
        state["ema_weight"] = np.where(update, 1.0 + decay * state["ema_weight"], state["ema_weight"])

    def row_input(self, state):
        """``row_inputs`` of a one-row state, as plain floats (the engine loop's step)."""
        return float(state["ema_sum"][0]), float(state["ema_weight"][0])

    def update_one(self, state, logprob):
        """``update`` of one row that drew (the engine loop's step): the same float64
        operations on scalars (exp through the same ufunc loop)."""
        target, decay = self.rows(1)
        if target[0] >= 0:
            p = float(np.exp(np.array([logprob]))[0])
            d = float(decay[0])
            state["ema_sum"] = np.array([p + d * float(state["ema_sum"][0])])
            state["ema_weight"] = np.array([1.0 + d * float(state["ema_weight"][0])])
