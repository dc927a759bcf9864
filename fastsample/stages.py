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
    "Mirostat", "MirostatV2", "AdaptiveP",
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
    """Repetition (CTRL), frequency and presence penalties (llama.cpp, OpenAI)."""

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
    """DRY, "don't repeat yourself" (text-generation-webui, llama.cpp); spec §4.1."""

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
    """Ban tokens that would repeat an n-gram of the history (transformers)."""

    op = "no_repeat_ngram"
    PARAMS = (Param("n", integer=True),)

    def apply(self, ops, logits, ctx, out=None):
        return ops.no_repeat_ngram(logits, ctx.history, *self.rows(ctx.B), out=out)


class XTC(Stage):
    """Exclude Top Choices (text-generation-webui, llama.cpp)."""

    op = "xtc"
    PARAMS = (Param("probability"), Param("threshold"), _min_keep())

    def apply(self, ops, logits, ctx):
        return ops.xtc(logits, *self.rows(ctx.B), ctx.seed, ctx.position)


# ----------------------------------------------------------------------------------
# plain truncations and transforms


class TopNSigma(Stage):
    """Top-nσ (Tang et al. 2024; llama.cpp): keep ``l >= max - n * std``."""

    op = "top_n_sigma"
    PARAMS = (Param("n"), _min_keep())


class TopK(Stage):
    """Top-k (Fan et al. 2018): keep the k largest logits, ties kept."""

    op = "top_k"
    PARAMS = (Param("k", integer=True), _min_keep())


class Typical(Stage):
    """Locally typical sampling (Meister et al. 2022)."""

    op = "typical"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class TopP(Stage):
    """Nucleus sampling (Holtzman et al. 2019)."""

    op = "top_p"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class MinP(Stage):
    """Min-p (Nguyen et al. 2024; llama.cpp): keep ``p >= p * p_max``."""

    op = "min_p"
    PARAMS = (Param("p", check=NON_NEGATIVE), _min_keep())


class Epsilon(Stage):
    """Epsilon sampling (Hewitt et al. 2022; transformers)."""

    op = "epsilon"
    PARAMS = (Param("epsilon"), _min_keep())


class Eta(Stage):
    """Eta sampling (Hewitt et al. 2022; transformers)."""

    op = "eta"
    PARAMS = (Param("epsilon"), _min_keep())


class TopA(Stage):
    """Top-a (text-generation-webui): mask ``p < a * p_max**2``."""

    op = "top_a"
    PARAMS = (Param("a"), _min_keep())


class PLess(Stage):
    """P-less sampling: mask ``p < sum(p**2)``."""

    op = "p_less"
    PARAMS = (_min_keep(),)


class TailFree(Stage):
    """Tail-free sampling (Phillips 2019; text-generation-webui's rule)."""

    op = "tail_free"
    PARAMS = (Param("z"), _min_keep())


class Temperature(Stage):
    """Divide logits by t; t <= 0 is greedy."""

    op = "temperature"
    PARAMS = (Param("t"),)


class DynamicTemperature(Stage):
    """Entropy-based dynamic temperature (text-generation-webui, llama.cpp)."""

    op = "dynamic_temperature"
    PARAMS = (Param("t"), Param("range"), Param("exponent", 1.0, check=NON_NEGATIVE))


class Smoothing(Stage):
    """Quadratic sampling: smoothing factor and curve (text-generation-webui)."""

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
        tau, eta = self.rows(ctx.B)[:2]
        drawn = tokens >= 0
        surprise = -ops.token_logprob(kept, tokens) / math.log(2.0)
        state["mu"] = np.where(drawn, state["mu"] - eta * (surprise - tau), state["mu"])
        return tokens


class Mirostat(_MirostatBase):
    """Mirostat v1 (Basu et al. 2021), llama.cpp's form."""

    op = "mirostat"
    PARAMS = (Param("tau", 5.0), Param("eta", 0.1), Param("m", 100, integer=True, check=AT_LEAST_ONE))

    def process(self, ops, logits, ctx, state):
        return ops.mirostat(logits, state["mu"], self.rows(ctx.B)[2])


class MirostatV2(_MirostatBase):
    """Mirostat v2 (Basu et al. 2021), llama.cpp's form."""

    op = "mirostat_v2"
    PARAMS = (Param("tau", 5.0), Param("eta", 0.1))

    def process(self, ops, logits, ctx, state):
        return ops.mirostat_v2(logits, state["mu"])


class AdaptiveP(Terminal):
    """Adaptive-p (llama.cpp / text-generation-webui): steer the drawn p to a target."""

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
        target, decay = self.rows(ctx.B)
        update = (tokens >= 0) & (target >= 0)
        p_orig = np.exp(ops.token_logprob(logits, tokens))
        state["ema_sum"] = np.where(update, p_orig + decay * state["ema_sum"], state["ema_sum"])
        state["ema_weight"] = np.where(update, 1.0 + decay * state["ema_weight"], state["ema_weight"])
        return tokens
