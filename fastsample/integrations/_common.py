"""What the integrations share: building the chain, history, positions, resets."""

from __future__ import annotations

from ..chain import SamplerChain
from ..stages import DRY, NoRepeatNGram, Penalties, Stage

_HISTORY_STAGES = (Penalties, DRY, NoRepeatNGram)


def as_chain(sampler, seed, backend, on_invalid):
    """A ``SamplerChain`` as is; a stage or a list of stages built into one."""
    if isinstance(sampler, SamplerChain):
        return sampler
    if isinstance(sampler, Stage):
        sampler = [sampler]
    return SamplerChain(sampler, seed=seed, backend=backend, on_invalid=on_invalid)


class ChainCaller:
    """A chain that the host library calls once per token, with its bookkeeping.

    The host passes the whole sequence each call (prompt plus generated tokens), so
    the history comes from it and the position is its length: the index of the token
    being generated, counted from the start of the prompt (as if the prompt had been
    fed to ``SamplerChain.accept``). A call that does not continue the previous one
    (another batch size, or a length other than one more) starts a new generation:
    the chain's state (Mirostat's mu, AdaptiveP's averages) is reset.
    """

    def __init__(self, sampler, *, seed=0, backend="auto", on_invalid="raise"):
        self.chain = as_chain(sampler, seed, backend, on_invalid)
        self._needs_history = any(isinstance(s, _HISTORY_STAGES) for s in self.chain.stages)
        self._last = None

    def _call_args(self, input_ids, B, L):
        """The ``history`` and ``position`` keywords of the chain call for a (B, L) sequence."""
        if self._last != (B, L - 1):
            self.chain.reset()
        self._last = (B, L)
        return {"history": input_ids if self._needs_history else None, "position": L}

    def __repr__(self):
        return f"{type(self).__name__}({self.chain!r})"
