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


class Sequence:
    """Per-call bookkeeping for a chain that the host library calls once per token.

    The host passes the whole sequence each call (prompt plus generated tokens), so
    the history comes from it and the position is its length: the index of the token
    being generated, counted from the start of the prompt (as if the prompt had been
    fed to ``SamplerChain.accept``). A call that does not continue the previous one
    (another batch size, or a length other than one more) starts a new generation:
    the chain's state (Mirostat's mu, AdaptiveP's averages) is reset.
    """

    def __init__(self, chain):
        self.chain = chain
        self.needs_history = any(isinstance(s, _HISTORY_STAGES) for s in chain.stages)
        self._last = None

    def begin(self, B, L):
        if self._last != (B, L - 1):
            self.chain.reset()
        self._last = (B, L)
        return L
