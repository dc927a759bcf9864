"""What every request style shares: reading fields once, seeds, breakers, token ids.

``Reader`` hands out a request's fields one at a time, each checked against the range
the peer accepts, and remembers which it read: whatever is left at the end is
unknown. Unsupported fields are collected there too, so one error lists them all.
"""

from __future__ import annotations

import math
import numbers
import secrets
import sys
import warnings
from collections.abc import Mapping

from .. import stages as _st


class RequestWarning(UserWarning):
    """Unknown or unsupported request fields, with ``strict=False``."""


def _caller_level():
    """The ``stacklevel`` of the first frame outside fastsample (the caller's line)."""
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fastsample"):
        frame, level = frame.f_back, level + 1
    return level


class Reader:
    """A request's fields, each read once; what is never read is unknown.

    ``None`` (JSON null) reads as the default, as the peers' parsers do.
    """

    def __init__(self, params, style):
        if not isinstance(params, Mapping):
            raise TypeError(f"a {style} request must be a mapping (a JSON object); "
                            f"got {type(params).__name__}")
        bad = [k for k in params if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{style} request keys must be strings; got {bad!r}")
        self.style = style
        self.params = dict(params)
        self.read = set()
        self.unsupported = []       # "key=value (why)"
        self.unknown = []           # keys or entries no style field matches
        self.passthrough = {}

    def given(self, key):
        return self.params.get(key) is not None

    def raw(self, key, default=None):
        self.read.add(key)
        value = self.params.get(key)
        return default if value is None else value

    def bad(self, key, value, want):
        return ValueError(f"{self.style} request: {key}={value!r} {want}")

    def number(self, key, default, *, integer=False, lo=None, hi=None,
               lo_open=False, hi_open=False):
        """A finite number in the peer's range (bounds inclusive unless *_open)."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.bad(key, value, "must be a number")
        if not math.isfinite(value):
            raise self.bad(key, value, "must be finite")
        if integer:
            if value != int(value):
                raise self.bad(key, value, "must be an integer")
            value = int(value)
        else:
            value = float(value)
        low_ok = lo is None or (value > lo if lo_open else value >= lo)
        high_ok = hi is None or (value < hi if hi_open else value <= hi)
        if not (low_ok and high_ok):
            lb = "-inf" if lo is None else lo
            hb = "inf" if hi is None else hi
            raise self.bad(key, value, f"is outside {'(' if lo_open else '['}{lb}, "
                                        f"{hb}{')' if hi_open else ']'}")
        return value

    def flag(self, key, default=False):
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.bad(key, value, "must be true or false")
        return value

    def token_ids(self, key, value, what="token ids"):
        """A list of non-negative int token ids (JSON ints)."""
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise self.bad(key, value, f"must be a list of {what}")
        ids = list(value)
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, numbers.Integral):
                raise self.bad(key, value, f"must hold integer {what}; "
                                            f"strings need a tokenizer, which fastsample has not")
            if int(t) < 0:
                raise self.bad(key, value, f"holds {int(t)}; {what} are >= 0")
        return [int(t) for t in ids]

    def unsupported_if(self, key, active, why):
        """Note ``key`` as unsupported when its value (read here) is ``active``."""
        value = self.raw(key)
        try:
            on = value is not None and active(value)
        except TypeError:
            raise self.bad(key, value, "has the wrong type") from None
        if on:
            self.unsupported.append(f"{key}={value!r} ({why})")
            return True
        return False

    def keep(self, *keys):
        """Fields about the call, not the draw: kept for the caller as given."""
        for key in keys:
            self.read.add(key)
            if key in self.params:
                self.passthrough[key] = self.params[key]

    def finish(self, strict):
        unknown = sorted(set(self.params) - self.read) + self.unknown
        parts = []
        if unknown:
            parts.append("unknown: " + ", ".join(unknown))
        if self.unsupported:
            parts.append("not supported by fastsample: " + "; ".join(self.unsupported))
        if not parts:
            return
        msg = f"{self.style} request: " + ". ".join(parts)
        if strict:
            raise ValueError(msg + " (strict=False warns and leaves them out)")
        warnings.warn(msg + "; left out", RequestWarning, stacklevel=_caller_level())


def stage_class(name, reader, key):
    """A stage class of fastsample.stages, or None (noted unsupported) if missing."""
    cls = getattr(_st, name, None)
    if cls is None:
        reader.unsupported.append(f"{key} (fastsample.{name} is not in this build)")
    return cls


def seed_of(reader, key, fallback, random_values=()):
    """``(seed, source)``: the request's seed, else ``fallback``, else a random one."""
    value = reader.raw(key)
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise reader.bad(key, value, "must be an integer")
        if value not in random_values:
            if not 0 <= value < 2**64:
                raise reader.bad(key, value, "must be in [0, 2**64)")
            return int(value), "request"
    if fallback is not None:
        return fallback, "argument"
    return secrets.randbits(64), "random"


def dry_breaker_ids(reader, key, strings, token_texts, active):
    """DRY breaker strings as token ids (``fs.dry_breakers``), given the vocabulary."""
    if not active:
        return ()
    if token_texts is None:
        reader.unsupported.append(
            f"{key}={list(strings)!r} (DRY's sequence breakers are strings: pass "
            f"token_texts=, every token's text, to map them to token ids)")
        return ()
    from ..api import dry_breakers

    return dry_breakers(strings, token_texts)


def first_given(r, *keys):
    """The first of ``keys`` the request gives (aliases); all count as read."""
    r.read.update(keys)
    return next((k for k in keys if r.given(k)), keys[0])


def no_limit_as_none(value):
    return None if value is None or value < 0 else value


def eos_ids(r, key, value, fallback):
    value = fallback if value is None else value
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    return r.token_ids(key, value)


def mapping_logit_bias(r, lo=-100.0, hi=100.0):
    value = r.raw("logit_bias")
    if value is None or value == {}:
        return None
    if not isinstance(value, Mapping):
        raise r.bad("logit_bias", value, "must be an object of token id -> bias")
    ids, biases = [], []
    for tok, bias in value.items():
        if isinstance(tok, str) and tok.isdigit():
            tok = int(tok)
        if isinstance(tok, bool) or not isinstance(tok, int) or tok < 0:
            raise r.bad("logit_bias", tok, "keys must be token ids (>= 0)")
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) \
                or not math.isfinite(bias) or not lo <= bias <= hi:
            raise r.bad("logit_bias", bias, f"values must be numbers in [{lo:g}, {hi:g}]")
        ids.append(tok)
        biases.append(float(bias))
    return ids, biases
