"""The command-line tooling: the ``fastsample`` command and what its commands run.

Kept apart from the library so that ``fastsample``'s own modules (the API, the chain,
the reference, the backends) read on their own; nothing here is imported by
``import fastsample``.

- ``commands``: argument parsing and the commands ``info``, ``sample``, ``bench``,
  ``check``, ``warmup`` (the console script ``fastsample`` is ``main``);
- ``bench_runner``: times the workloads of ``fastsample.workloads`` (docs/spec.md §8,
  §12) on each backend and peer; ``peers``: the other libraries' samplers (PyTorch,
  transformers, llama.cpp) run the same workloads;
- ``checker``: ``fastsample check``, every backend against the reference;
- ``report``: tables, JSON, markdown, the plot, the progress bar;
- ``npyfile``: ``sample``'s logits input; ``sysinfo``: the machine, for ``info`` and
  the benchmark header.
"""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
