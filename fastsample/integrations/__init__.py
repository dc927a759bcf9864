"""Integrations with other inference stacks; each submodule imports its own library.

- ``fastsample.integrations.transformers``: ``LogitsProcessor`` objects for
  ``model.generate()`` (needs transformers and torch, extra ``hf``).
- ``fastsample.integrations.llama_cpp``: ``logits_processor`` callables for
  llama-cpp-python (needs only numpy).
- ``fastsample.integrations.llguidance``: grammar-constrained generation (JSON
  schema, regex, Lark): llguidance fills the token bitmask, fastsample draws with it
  (needs llguidance, extra ``grammar``).

Nothing is imported here, so ``import fastsample`` never pulls in these libraries.
"""
