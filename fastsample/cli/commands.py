"""The ``fastsample`` command line: ``info``, ``sample``, ``bench``, ``check``, ``warmup``.

This module parses arguments and wires the commands to the modules doing the work:
``bench_runner`` and ``peers`` (bench), ``checker`` (check), ``report`` (tables, JSON,
markdown, plot, progress bar), ``npyfile`` (sample's input), ``sysinfo`` (info).

Errors are one line on stderr (``fastsample: error: ...``) and exit status 2; usage
errors too (argparse). ``check`` exits 1 when a backend disagrees with the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import sysinfo
from .npyfile import load_logits

PROG = "fastsample"
EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3


class CLIError(Exception):
    """An expected, user-facing error: printed as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


# --------------------------------------------------------------------------- helpers
def _fs():
    import fastsample as fs

    return fs


def _expected_errors() -> tuple:
    errs: list[type] = [CLIError, ValueError, TypeError, OSError]
    with contextlib.suppress(Exception):  # the API failed to import: main reports it
        errs.append(_fs().BackendError)
    return tuple(errs)


def _backend_statuses() -> dict[str, Any]:
    """Backend name -> ``registry.BackendStatus`` (truthy when available)."""
    return _fs().backends()


def _reason(status: Any) -> str:
    return status.reason or "unavailable"


def _parse_list(text: str, conv: Callable[[str], Any], name: str):
    """``"0.9"`` -> 0.9; ``"0.9,0.95"`` -> array (a per-row parameter)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [conv(p) for p in parts]
    except ValueError:
        raise CLIError(f"--{name}: expected a number or a comma-separated list, got {text!r}")
    if len(vals) == 1:
        return vals[0]
    return np.asarray(vals)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return int(text, 0)  # 0x... hex seeds


def _uint_list(text: str, name: str):
    v = _parse_list(text, _int, name)
    if isinstance(v, np.ndarray):
        if (v < 0).any():
            raise CLIError(f"--{name}: values must be >= 0")
        return v.astype(np.uint64)
    return v


# --------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    fs = _fs()
    rows = [
        ("fastsample", str(getattr(fs, "__version__", "?"))),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("numpy", np.__version__),
        ("numba", sysinfo.version_of("numba")),
        ("cffi", sysinfo.version_of("cffi")),
        ("cpu", f"{os.cpu_count()} logical cores, {sysinfo.cpu_features()}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print("backends:")
    statuses = _backend_statuses()
    bw = max(len(n) for n in statuses) if statuses else 0
    for name, st in statuses.items():
        if st:
            print(f"  {name:<{bw}}  available")
        else:
            print(f"  {name:<{bw}}  not available: {_reason(st)}")
    return EXIT_OK


# --------------------------------------------------------------------------- sample
#: sample's fs.sample options at their defaults: --request gives these instead.
_SAMPLE_DEFAULTS = {"temperature": "1.0", "top_k": "0", "top_p": "1.0", "min_p": "0.0",
                    "min_keep": "1", "temperature_last": True}


def _sample_request(args: argparse.Namespace, logits):
    """``--request FILE --style S``: draw with the chain the request describes
    (``SamplerChain.from_request``); the request's seed wins over --seed."""
    fs = _fs()
    if args.style is None:
        raise CLIError("--request needs --style (llama.cpp, openai, hf, webui or vllm)")
    given = [f"--{k.replace('_', '-')}" for k, v in _SAMPLE_DEFAULTS.items()
             if getattr(args, k) != v]
    if given:
        raise CLIError(f"--request gives the sampling parameters; drop {', '.join(given)}")
    try:
        with open(args.request, encoding="utf-8") as f:
            params = json.load(f)
    except json.JSONDecodeError as exc:
        raise CLIError(f"--request {args.request}: not valid JSON ({exc})") from None
    seed = _uint_list(args.seed, "seed")
    if isinstance(seed, np.ndarray):
        raise CLIError("--seed: one seed with --request (the request's seed is every row's)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chain = fs.SamplerChain.from_request(params, args.style, strict=args.strict,
                                             seed=seed, backend=args.backend,
                                             on_invalid=args.on_invalid)
    for w in caught:
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    return chain.sample(logits, position=_uint_list(args.position, "position"))


def cmd_sample(args: argparse.Namespace) -> int:
    fs = _fs()
    logits = load_logits(args.file, args.key)
    if args.request is not None:
        tokens = _sample_request(args, logits)
        print(json.dumps(tokens.tolist() if isinstance(tokens, np.ndarray) else int(tokens)))
        return EXIT_OK
    if args.style is not None:
        raise CLIError("--style goes with --request")
    kw: dict[str, Any] = {
        "temperature": _parse_list(args.temperature, float, "temperature"),
        "top_k": _parse_list(args.top_k, _int, "top-k"),
        "top_p": _parse_list(args.top_p, float, "top-p"),
        "min_p": _parse_list(args.min_p, float, "min-p"),
        "min_keep": _parse_list(args.min_keep, _int, "min-keep"),
        "seed": _uint_list(args.seed, "seed"),
        "position": _uint_list(args.position, "position"),
        "temperature_last": args.temperature_last,
        "on_invalid": args.on_invalid,
        "backend": args.backend,
    }
    tokens = fs.sample(logits, **kw)
    out = tokens.tolist() if isinstance(tokens, np.ndarray) else int(tokens)
    print(json.dumps(out))
    return EXIT_OK


# --------------------------------------------------------------------------- bench
def _names(spec: str, what: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise CLIError(f"--{what}: nothing named")
    return list(dict.fromkeys(names))


#: Backends left out unless named: cuda works on arrays already on a GPU, and the
#: workloads and checks here are host arrays (see bench/gpu_check.py for the GPU).
_NAMED_ONLY = ("cuda",)


def _select_backends(spec: str | None, *, fast_only: bool = False) -> list[str]:
    """The named backends (each must be available), or every available one (but cuda)."""
    statuses = _backend_statuses()
    if not spec:
        return [n for n, st in statuses.items() if st and n not in _NAMED_ONLY
                and not (fast_only and n == "numpy")]
    names = _names(spec, "backends")
    for n in names:
        if n not in statuses:
            raise CLIError(f"--backends: unknown backend {n!r}; known: {', '.join(statuses)}")
        if not statuses[n]:
            raise CLIError(f"backend {n!r} is not available: {_reason(statuses[n])}")
    return names


def _select_peers(spec: str | None) -> tuple:
    """(available peers to run, {skipped peer: one-line reason})."""
    from . import peers as pr

    if spec is not None and spec.strip().lower() == "none":
        return [], {}
    names = pr.names() if not spec else _names(spec, "peers")
    run, skipped = [], {}
    for n in names:
        try:
            ok, reason = pr.get(n).status()
        except ValueError as e:
            raise CLIError(f"--peers: {e}") from None
        if ok:
            run.append(n)
        else:
            skipped[n] = reason
    return run, skipped


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench_runner, report

    if args.vocab is not None and args.vocab < 2:
        raise CLIError(f"--vocab must be >= 2, got {args.vocab}")
    if args.batch is not None and args.batch < 1:
        raise CLIError(f"--batch must be >= 1, got {args.batch}")
    if args.repeats is not None and args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    if args.plot:
        report.need_matplotlib()
    # numpy is the reference peer; as a backend only when named or when nothing faster is there.
    backends = _select_backends(args.backends, fast_only=True) or ["numpy"]
    peers, skipped = _select_peers(args.peers)
    workloads = [w.strip() for w in (args.workloads or "").split(",") if w.strip()]
    cases = bench_runner.select_cases(workloads or None,
                                      batch=args.batch, vocab=args.vocab, quick=bool(args.quick))
    fs = _fs()
    print(f"fastsample {fs.__version__} bench{' --quick' if args.quick else ''}: "
          f"V={args.vocab or fs.workloads.DEFAULT_VOCAB}; backends: {', '.join(backends)}; "
          f"peers: {', '.join(peers) or 'none'}", flush=True)
    for name, reason in skipped.items():
        print(f"peer {name} skipped: {reason}")
    n_peers = len([p for p in peers if not (p == "numpy" and "numpy" in backends)])
    bar = report.Progress(bench_runner.steps(cases, len(backends), n_peers),
                          enabled=False if args.no_progress else None)
    try:
        doc = bench_runner.run(backends=backends, peers=peers, cases=cases, vocab=args.vocab,
                               quick=bool(args.quick), seed=args.seed, repeats=args.repeats,
                               progress=bar, skipped_peers=skipped,
                               command="fastsample " + " ".join(sys.argv[1:] if args.argv is None else args.argv))
    finally:
        bar.close()
    for name, reason in doc["skipped_peers"].items():
        if name not in skipped:
            print(f"peer {name} skipped: {reason}")
    print("times: microseconds per call (median, IQR); /floor: over np.max of the same input; "
          "vs X: X's median / this one's")
    report.bench_tables(doc)
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(report.bench_markdown(doc))
        print(f"wrote {args.markdown}")
    if args.plot:
        report.plot_bench(doc, args.plot)
        print(f"wrote {args.plot}")
    return EXIT_OK


# --------------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    from . import checker, report

    statuses = _backend_statuses()
    backends = _select_backends(args.backends, fast_only=True)
    if not backends:
        unavailable = [f"{n} ({_reason(st)})" for n, st in statuses.items()
                       if n != "numpy" and not st]
        print("fastsample check: no fast backend available to check against the numpy reference"
              + (f"; not available: {'; '.join(unavailable)}" if unavailable else ""))
        return EXIT_OK
    if args.batch < 1 or args.vocab < 2 or args.seeds < 1 or args.draws < 1:
        raise CLIError("check needs --batch >= 1, --vocab >= 2, --seeds >= 1 and --draws >= 1")
    if not args.atol >= 0:
        raise CLIError(f"--atol must be >= 0, got {args.atol}")
    specs = len(checker.stage_specs(_fs(), args.vocab)) + 1
    bar = report.Progress(len(backends) * specs, enabled=False if args.no_progress else None)
    try:
        doc = checker.run(backends, batch=args.batch, vocab=args.vocab, seeds=args.seeds,
                          draws=args.draws, seed=args.seed, atol=args.atol, progress=bar)
    finally:
        bar.close()
    print(f"fastsample check: reference (numpy) vs {', '.join(backends)}; V={args.vocab}, "
          f"{args.batch} rows of each of {', '.join(checker.KINDS)}; tokens over {args.seeds} seeds per row; "
          f"chi-square over {args.draws} draws (fails below p={checker.CHI2_ALPHA:g}); "
          f"logits within {args.atol:g} relative to max(1, |logit|)")
    report.print_table(["backend", "stage / chain", "masks", "max rel diff", "tokens", "chi2 p", "result"],
                       report.check_rows(doc), [False, False, False, True, True, True, False])
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if doc["mismatches"]:
        print(f"fastsample check: {doc['mismatches']} mismatch(es)")
        return EXIT_MISMATCH
    skipped = sum(1 for r in doc["results"] if r["ok"] is None)
    print("fastsample check: all compared results agree"
          + (f" ({skipped} skipped: operations a backend does not have)" if skipped else ""))
    return EXIT_OK


def cmd_warmup(args: argparse.Namespace) -> int:
    """Compile (or load from numba's cache) every kernel of each compiled backend."""
    from fastsample import registry

    names = _select_backends(args.backends) if args.backends else [
        n for n, st in _backend_statuses().items() if st and n != "numpy"]
    for name in names:
        fn = getattr(registry.load(name), "warmup", None)
        if fn is None:
            print(f"fastsample warmup: {name}: nothing to compile")
        else:
            print(f"fastsample warmup: {name}: every kernel ready in {fn():.2f} s")
    if not names:
        print("fastsample warmup: no compiled backend available; nothing to do")
    return EXIT_OK


# --------------------------------------------------------------------------- main
def _workload_ids() -> str:
    """The workload ids of ``fastsample.workloads`` for the help text, from the table."""
    try:
        from fastsample import workloads
    except Exception:  # the API failed to import: main reports it when a command runs
        return "see docs/benchmarks.md"
    return ", ".join(w.id for w in workloads.WORKLOADS)


def build_parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(prog=PROG, description="LLM token samplers: numpy reference and fast backends.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    sub.required = True

    sp = sub.add_parser("info", help="versions, CPU features, backends and why any is unavailable")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("sample", help="draw tokens from logits in a .npy/.npz file; prints JSON",
                        description="Draw tokens with fs.sample. Per-row parameters are comma-separated "
                                    "lists of length B (e.g. --top-k 20,40,60).")
    sp.add_argument("file", help=".npy or .npz file holding (V,) or (B, V) logits")
    sp.add_argument("--key", help="array name inside a .npz (default: its only array, or 'logits')")
    sp.add_argument("--temperature", default="1.0", help="temperature (default 1.0; <= 0 is greedy)")
    sp.add_argument("--top-k", default="0", help="top-k (default 0 = off)")
    sp.add_argument("--top-p", default="1.0", help="top-p (default 1.0 = off)")
    sp.add_argument("--min-p", default="0.0", help="min-p (default 0.0 = off)")
    sp.add_argument("--min-keep", default="1", help="min_keep of every truncation (default 1)")
    sp.add_argument("--seed", default="0", help="seed (default 0)")
    sp.add_argument("--position", default="0", help="position of the token being drawn (default 0)")
    sp.add_argument("--temperature-last", action=argparse.BooleanOptionalAction, default=True,
                    help="llama.cpp order, temperature last (default); --no-temperature-last "
                         "gives HF's order (temperature first)")
    sp.add_argument("--on-invalid", choices=("raise", "flag"), default="raise",
                    help="invalid rows (NaN, +inf, all masked): error (default) or token -1")
    sp.add_argument("--backend", default="auto", help="auto (default), numpy, numba, c, cuda")
    sp.add_argument("--request", metavar="JSON",
                    help="sampling parameters in another format (a JSON file) instead of "
                         "the options above; needs --style")
    sp.add_argument("--style", choices=("llama.cpp", "openai", "hf", "webui", "vllm"),
                    help="the format of --request: llama.cpp /completion, OpenAI, a "
                         "transformers generation_config.json, text-generation-webui, "
                         "vLLM SamplingParams")
    sp.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True,
                    help="unknown or unsupported request fields are an error (default); "
                         "--no-strict warns and leaves them out")
    sp.set_defaults(func=cmd_sample)

    sp = sub.add_parser("bench", help="time the workloads of spec §8 and §12 on the backends and the peers",
                        description="Time the workloads of spec §8 and §12 in docs/spec.md "
                                    f"({_workload_ids()}; W10a-c are engine loops, W1chain "
                                    "is a chain vs fs.sample, W3rows is W3's spread over rows) on each "
                                    "fast backend and each peer (numpy reference, torch, hf, llama.cpp), "
                                    "next to the memory floor (np.max over the same input). "
                                    "See docs/benchmarks.md.")
    sp.add_argument("--quick", action="store_true", help="few repeats (a quarter second per measurement)")
    sp.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    sp.add_argument("--markdown", metavar="PATH", help="also write the README's markdown table to PATH")
    sp.add_argument("--plot", metavar="PATH", help="also write a PNG plot to PATH (needs matplotlib)")
    sp.add_argument("--backends", metavar="LIST",
                    help="comma-separated backends (default: every available fast one; numpy is a peer)")
    sp.add_argument("--peers", metavar="LIST",
                    help="comma-separated peers: numpy,torch,hf,llama.cpp (default: all; a missing "
                         "one is skipped with a note); 'none' for no peer")
    sp.add_argument("--vocab", type=int, metavar="V", help="vocabulary size instead of 128256")
    sp.add_argument("--batch", type=int, metavar="B",
                    help="rows of every logits workload and engine loop (W8, W1chain, W3rows unchanged)")
    sp.add_argument("--workloads", metavar="LIST",
                    help=f"comma-separated workload ids: {_workload_ids()} (default: all)")
    sp.add_argument("--repeats", type=int, metavar="N", help="timed batches per measurement (default: adaptive)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("check", help="compare each available fast backend with the numpy reference")
    sp.add_argument("--backends", metavar="LIST",
                    help="comma-separated backends (default: every available fast backend; "
                         "naming numpy compares the reference with itself)")
    sp.add_argument("--vocab", type=int, default=4096, metavar="V", help="vocabulary size (default 4096)")
    sp.add_argument("--batch", type=int, default=4, metavar="B", help="rows of each input kind (default 4)")
    sp.add_argument("--seeds", type=int, default=16, metavar="N",
                    help="seeds per row for token agreement (default 16)")
    sp.add_argument("--draws", type=int, default=2000, metavar="N",
                    help="draws for each chi-square test (default 2000)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated inputs (default 0)")
    sp.add_argument("--atol", type=float, default=1e-5,
                    help="tolerance on logits, relative to max(1, |logit|) (default 1e-5)")
    sp.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("warmup", help="compile every kernel ahead (numba's cache keeps them) and say how long it took")
    sp.add_argument("--backends", metavar="LIST", help="comma-separated backends (default: every available compiled one)")
    sp.set_defaults(func=cmd_warmup)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
        args.argv = None if argv is None else list(argv)
    except _UsageError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_ERROR
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Further writes (the interpreter's final flush) must not raise again.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
        return EXIT_OK
    except Exception as e:
        if isinstance(e, _expected_errors()):
            print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        if os.environ.get("FASTSAMPLE_TRACEBACK"):
            raise
        print(f"{PROG}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set FASTSAMPLE_TRACEBACK=1 to see the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
