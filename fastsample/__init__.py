"""fastsample: LLM token samplers with compiled hot paths, checked against numpy.

Quick start::

    import fastsample as fs
    token = fs.sample(logits, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=7)

See ``SamplerChain`` for chains of any stages, and ``fs.reference`` for the numpy
reference every backend is checked against.
"""

from . import reference, rng, workloads
from .api import apply_token_bitmask, dry_breakers, dry_penalty, log_softmax, sample, softmax, topk
from .registry import BackendError, BackendStatus, backends
from .results import Sampled
from .chain import SamplerChain
from .verify import Verified, verify
from .stages import (
    DRY, XTC, AdaptiveP, Dist, DynamicTemperature, Epsilon, Eta, Greedy, LogitBias, MinP,
    Mirostat, MirostatV2, NoRepeatNGram, Penalties, PLess, Smoothing, Stage, TailFree,
    Temperature, TopA, TopK, TopNSigma, TopP, Typical, AllowedTokens, BadWords, MinTokens,
)

__version__ = "0.1.0"

__all__ = [
    "sample", "softmax", "log_softmax", "topk", "dry_penalty", "dry_breakers",
    "SamplerChain", "verify", "Verified", "Sampled", "backends", "BackendError", "BackendStatus", "reference", "rng",
    "workloads", "Stage", "LogitBias", "Penalties", "DRY", "NoRepeatNGram", "TopNSigma",
    "TopK", "Typical", "TopP", "MinP", "XTC", "Epsilon", "Eta", "TopA", "PLess",
    "TailFree", "Temperature", "DynamicTemperature", "Smoothing", "Dist", "Greedy",
    "Mirostat", "MirostatV2", "AdaptiveP", "AllowedTokens", "BadWords", "MinTokens",
    "apply_token_bitmask", "__version__",
]
