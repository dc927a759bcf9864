"""Presenting results: plain tables, the bench tables, markdown, the plot, a progress bar.

Nothing here measures or checks; it formats the documents built by
``fastsample.cli.bench_runner`` and ``fastsample.cli.checker``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = [
    "Progress",
    "bench_markdown",
    "bench_tables",
    "fmt_us",
    "need_matplotlib",
    "plot_bench",
    "print_table",
    "row_spread_tables",
    "table",
    "write_json",
]


def fmt_us(x: float | None) -> str:
    """Microseconds with about three significant digits."""
    if x is None:
        return "-"
    if x >= 1e5:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else (f"{x:.1f}x" if x >= 10 else f"{x:.2f}x")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    """Lines of a fixed-width text table (``right[i]``: right-align column i)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def print_table(headers, rows, right, file: TextIO | None = None) -> None:
    file = file or sys.stdout
    for ln in table(headers, rows, right):
        print(ln, file=file)
    file.flush()


# --------------------------------------------------------------------------- bench
def _by_case(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Case label -> its entries (backends first, then peers), in run order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        out.setdefault(r["case"], []).append(r)
    for r in doc.get("peer_results", []):
        out.setdefault(r["case"], []).append(r)
    return out


def _impl(r: dict[str, Any]) -> str:
    return r["backend"] if "backend" in r else f"{r['peer']} (peer)"


def _bench_rows(entries, peers, per_row=False, baseline=False) -> list[list[str]]:
    rows = []
    for r in entries:
        sp = r.get("speedup", {})
        gbs = r.get("bytes_per_s")
        row = [_impl(r), fmt_us(r["median_us"]), f"{fmt_us(r['q1_us'])}-{fmt_us(r['q3_us'])}",
               fmt_ratio(r["ratio_to_floor"]), f"{gbs / 1e9:.2f}" if gbs else "-"]
        if per_row:
            row.append(fmt_us(r.get("per_row_us")))
        if baseline:
            row += [fmt_us(r.get("baseline_median_us")), fmt_ratio(r.get("ratio_to_baseline"))]
        rows.append(row + [fmt_ratio(sp.get(p)) for p in peers])
    return rows


def _measured(entries):
    """(timed entries, "name (why)" for those not measured)."""
    timed = [r for r in entries if "median_us" in r]
    missing = [f"{_impl(r)}: {r.get('skipped', '')}" for r in entries if "median_us" not in r]
    return timed, missing


#: What one timed call is, for the operations whose heading needs saying it.
_PER_CALL = {"engine": "one call = one token: chain.sample + chain.accept",
             "chain_step": "one call = chain.sample + chain.accept; fs.sample timed interleaved"}


def bench_tables(doc: dict[str, Any], file: TextIO | None = None) -> None:
    """One table per workload case: median, spread, floor ratio, GB/s, speed-up per peer.

    Only peers measured on the case get a ``vs`` column; implementations without the
    operation are named under the table, and so are peers doing other work (``note``).
    Batched cases add the time per row; W1chain adds ``fs.sample``'s time and the ratio.
    The row-spread study (W3rows) follows, one table for all backends.
    """
    file = file or sys.stdout
    for label, entries in _by_case(doc).items():
        timed, missing = _measured(entries)
        peers = [r["peer"] for r in timed if "peer" in r]
        first = entries[0]
        per_row = first["B"] > 1
        baseline = any("baseline_median_us" in r for r in timed)
        headers = (["implementation", "median us", "IQR us", "/floor", "GB/s"]
                   + (["us/row"] if per_row else [])
                   + (_BASELINE_HEADERS.get(first["op"], _BASELINE_HEADERS["chain_step"])
                      if baseline else [])
                   + [f"vs {p}" for p in peers])
        right = [False] + [True] * (len(headers) - 1)
        what = f"; {_PER_CALL[first['op']]}" if first["op"] in _PER_CALL else ""
        print(f"\n{label}  (B={first['B']}, V={first['V']}, kept {first['kept_tokens']:.4g} tokens/row; "
              f"floor np.max {fmt_us(timed[0]['floor_median_us']) if timed else '-'} us{what})", file=file)
        print_table(headers, _bench_rows(timed, peers, per_row, baseline), right, file=file)
        if missing:
            print("not measured: " + "; ".join(missing), file=file)
        for r in timed:
            if r.get("note"):
                print(f"note: {_impl(r)}: {r['note']}", file=file)
    row_spread_tables(doc, file=file)


def row_spread_tables(doc: dict[str, Any], file: TextIO | None = None) -> None:
    """The W3rows study: per row (seed), each backend's two medians and their ratio;
    then per backend, the first workload's max / median over the rows."""
    file = file or sys.stdout
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in doc.get("row_spread", []):
        by_case.setdefault(r["case"], []).append(r)
    for label, entries in by_case.items():
        timed = [r for r in entries if "rows" in r]
        first = entries[0]
        a, b = first["pair"]
        print(f"\n{label}  (B=1, V={first['V']}, kept {first['kept_tokens']:.4g} tokens/row by {a}, mean "
              f"over {len(timed[0]['rows']) if timed else 0} rows; {a} and {b} timed interleaved on each row)",
              file=file)
        if timed:
            headers = ["seed", f"{a} kept"] + [h for r in timed for h in
                                               (f"{r['backend']} {a} us", f"{r['backend']} {b} us",
                                                f"{r['backend']} {a}/{b}")]
            rows = []
            for i, row in enumerate(timed[0]["rows"]):
                cells = [str(row["seed"]), f"{row['kept_tokens']:.0f}"]
                for r in timed:
                    rr = r["rows"][i]
                    cells += [fmt_us(rr[a]["median_us"]), fmt_us(rr[b]["median_us"]), fmt_ratio(rr["ratio"])]
                rows.append(cells)
            print_table(headers, rows, [True] * len(headers), file=file)
            for r in timed:
                print(f"{r['backend']}: {a} over the rows: median {fmt_us(r['median_us'])} us, max "
                      f"{fmt_us(r['max_us'])} us, max/median {fmt_ratio(r['max_over_median'])}; {a}/{b} "
                      f"median {fmt_ratio(r['ratio_median'])} (min {fmt_ratio(r['ratio_min'])}, "
                      f"max {fmt_ratio(r['ratio_max'])})", file=file)
        missing = [f"{r['backend']}: {r['skipped']}" for r in entries if "rows" not in r]
        if missing:
            print("not measured: " + "; ".join(missing), file=file)


def bench_markdown(doc: dict[str, Any]) -> str:
    """The README's benchmark section body: the setup line, the main markdown table, and
    the tables of the chain-overhead (W1chain) and row-spread (W3rows) studies."""
    peers = doc.get("peers", [])
    v = doc.get("versions", {})
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    lines = [
        (f"Measured {doc['date']} on {doc['cpu']} ({doc['cpu_count']} logical cores), "
         f"{doc['platform']}; {vers}."),
        "",
        (f"Command: `{doc.get('command') or 'fastsample bench'}`. Times are the median "
         "microseconds per call (IQR in brackets; W10's calls are one token each, "
         "`chain.sample` + `chain.accept`, and batched rows add the time per row); `/floor` is "
         "the median over `np.max` on the same input, timed in the same run; `vs X` is X's "
         "median over this row's (higher: faster than X)."),
        "",
        "| workload | implementation | median µs (IQR) | /floor | " + " | ".join(f"vs {p}" for p in peers) + " |",
        "|---|---|---:|---:|" + "---:|" * len(peers),
    ]
    notes, overhead = [], []
    for label, entries in _by_case(doc).items():
        for r in entries:
            if "median_us" not in r:
                continue
            if r["op"] == "chain_step":  # in its own table below
                overhead.append(r)
                continue
            sp = r.get("speedup", {})
            per_row = f", {fmt_us(r['per_row_us'])}/row" if r["B"] > 1 and r["op"] == "engine" else ""
            lines.append(f"| {label} | {_impl(r)} | {_us_iqr(r)}{per_row} | "
                         f"{fmt_ratio(r['ratio_to_floor'])} | "
                         + " | ".join(fmt_ratio(sp.get(p)) for p in peers) + " |")
            if r.get("note"):
                notes.append(f"{label}, {_impl(r)}: {r['note']}")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines += _overhead_markdown([r for r in overhead if "baseline_median_us" in r])
    lines += _spread_markdown([r for r in doc.get("row_spread", []) if "rows" in r])
    return "\n".join(lines) + "\n"


#: The baseline columns of a case that has one: W1chain (the chain vs fs.sample), W12
#: (fs.sample with the bitmask vs without).
_BASELINE_HEADERS = {"chain_step": ["fs.sample us", "chain/fs.sample"],
                     "bitmask": ["no bitmask us", "bitmask/none"]}


def _us_iqr(r: dict[str, Any], prefix: str = "") -> str:
    """``median (q1-q3)`` of an entry's timing (``prefix="baseline_"``: its baseline's)."""
    return (f"{fmt_us(r[prefix + 'median_us'])} "
            f"({fmt_us(r[prefix + 'q1_us'])}-{fmt_us(r[prefix + 'q3_us'])})")


def _overhead_markdown(entries: list[dict[str, Any]]) -> list[str]:
    """The chain-overhead (W1chain) table: per backend fs.sample, the chain, the ratio."""
    if not entries:
        return []
    lines = ["", "Chain overhead (W1chain): W1's stages as a `SamplerChain`, `sample` + `accept` per "
                 "token, against `fs.sample` with W1's parameters on the same row, timed interleaved "
                 "in the same run.", "",
             "| backend | fs.sample µs (IQR) | chain µs (IQR) | chain / fs.sample |", "|---|---:|---:|---:|"]
    for r in entries:
        lines.append(f"| {_impl(r)} | {_us_iqr(r, 'baseline_')} | {_us_iqr(r)} | "
                     f"{fmt_ratio(r['ratio_to_baseline'])} |")
    return lines


def _spread_markdown(entries: list[dict[str, Any]]) -> list[str]:
    """The row-spread (W3rows) table: per backend, the first workload's median, max and
    max/median over the rows, and the pair's ratio (median, max)."""
    if not entries:
        return []
    a, b = entries[0]["pair"]
    rows = entries[0]["rows"]
    lines = ["", f"Row spread (W3rows): {a} and {b} timed interleaved on each of {len(rows)} llm_like "
                 f"rows (seeds {rows[0]['seed']}..{rows[-1]['seed']}).", "",
             f"| backend | {a} median µs over rows | {a} max µs | {a} max / median | {a}/{b} median "
             f"| {a}/{b} max |", "|---|---:|---:|---:|---:|---:|"]
    for r in entries:
        lines.append(f"| {r['backend']} | {fmt_us(r['median_us'])} | {fmt_us(r['max_us'])} | "
                     f"{fmt_ratio(r['max_over_median'])} | {fmt_ratio(r['ratio_median'])} | "
                     f"{fmt_ratio(r['ratio_max'])} |")
    return lines


def need_matplotlib() -> None:
    """``OSError`` with the install command when matplotlib is missing (checked up front)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise OSError("--plot needs matplotlib: pip install matplotlib (or the [bench] extra)")


def plot_bench(doc: dict[str, Any], path: str) -> None:
    """A PNG: per workload case, each implementation's median time over the floor (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_case(doc)
    impls: list[str] = []
    for entries in groups.values():
        for r in entries:
            if "median_us" in r and _impl(r) not in impls:
                impls.append(_impl(r))
    n, m = len(groups), max(1, len(impls))
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.15 * n * (m + 1)))
    height = 0.8 / m
    cmap = plt.get_cmap("tab10")
    for j, name in enumerate(impls):
        ys, xs = [], []
        for i, entries in enumerate(groups.values()):
            r = next((e for e in entries if _impl(e) == name and "median_us" in e), None)
            if r is not None and r.get("ratio_to_floor"):
                ys.append(i + j * height)
                xs.append(r["ratio_to_floor"])
        ax.barh(ys, xs, height=height, label=name, color=cmap(j % 10))
    ax.set_yticks([i + 0.4 - height / 2 for i in range(n)])
    ax.set_yticklabels(list(groups))
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time / np.max over the same input (log scale; lower is faster)")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_title(f"fastsample bench, V={doc['vocab']}: {doc['cpu']} ({doc['date']})", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_rows(doc) -> list[list[str]]:
    """The rows of the ``check`` table, one per result of a check document."""
    rows = []
    for r in doc["results"]:
        status = "ok" if r["ok"] else ("skip" if r["ok"] is None else "FAIL")
        masks = "-" if "masks_equal" not in r else ("same" if r["masks_equal"] else "DIFFER")
        if "same_ids" in r:
            masks += ", ids " + ("same" if r["same_ids"] else "DIFFER")
        diff = f"{r['max_rel_diff']:.1e}" if r.get("max_rel_diff") is not None else "-"
        tokens = f"{r['tokens_agree']}/{r['tokens_total']}" if "tokens_total" in r else "-"
        if r.get("draws_outside"):
            chi = f"{r['draws_outside']} outside"
        elif r.get("chi2_p") is not None:
            chi = f"{r['chi2_p']:.3f} (df {r['chi2_df']})"
        else:
            chi = "-"
        note = r.get("note") or ""
        rows.append([r["backend"], r["name"], masks, diff, tokens, chi, status + (f" ({note})" if note else "")])
    return rows


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, unless forced)."""

    def __init__(self, total: int, enabled: bool | None = None, file: TextIO | None = None):
        self.file = file or sys.stderr
        self.enabled = self.file.isatty() if enabled is None else enabled
        self.total, self.done, self.t0 = max(total, 1), 0, time.monotonic()

    def __call__(self, label: str) -> None:
        if self.enabled:
            frac = self.done / self.total
            bar = "#" * int(24 * frac)
            self.file.write(f"\r[{bar:<24}] {self.done}/{self.total} {time.monotonic() - self.t0:5.0f}s "
                            f"{label[:48]:<48}")
            self.file.flush()
        self.done += 1

    def close(self) -> None:
        if self.enabled:
            self.file.write("\r" + " " * 100 + "\r")
            self.file.flush()
