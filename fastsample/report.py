"""Presenting results: plain tables, the bench tables, markdown, the plot, a progress bar.

Nothing here measures or checks; it formats the documents built by
``fastsample.bench_runner`` and ``fastsample.checker``.
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


def _bench_rows(entries, peers) -> list[list[str]]:
    rows = []
    for r in entries:
        sp = r.get("speedup", {})
        gbs = r.get("bytes_per_s")
        rows.append([_impl(r), fmt_us(r["median_us"]), f"{fmt_us(r['q1_us'])}-{fmt_us(r['q3_us'])}",
                     fmt_ratio(r["ratio_to_floor"]), f"{gbs / 1e9:.2f}" if gbs else "-"]
                    + [fmt_ratio(sp.get(p)) for p in peers])
    return rows


def _measured(entries):
    """(timed entries, "name (why)" for those not measured)."""
    timed = [r for r in entries if "median_us" in r]
    missing = [f"{_impl(r)}: {r.get('skipped', '')}" for r in entries if "median_us" not in r]
    return timed, missing


def bench_tables(doc: dict[str, Any], file: TextIO | None = None) -> None:
    """One table per workload case: median, spread, floor ratio, GB/s, speed-up per peer.

    Only peers measured on the case get a ``vs`` column; implementations without the
    operation are named under the table.
    """
    file = file or sys.stdout
    for label, entries in _by_case(doc).items():
        timed, missing = _measured(entries)
        peers = [r["peer"] for r in timed if "peer" in r]
        headers = ["implementation", "median us", "IQR us", "/floor", "GB/s"] + [f"vs {p}" for p in peers]
        right = [False] + [True] * (len(headers) - 1)
        first = entries[0]
        print(f"\n{label}  (B={first['B']}, V={first['V']}, kept {first['kept_tokens']:.4g} tokens/row; "
              f"floor np.max {fmt_us(timed[0]['floor_median_us']) if timed else '-'} us)", file=file)
        print_table(headers, _bench_rows(timed, peers), right, file=file)
        if missing:
            print("not measured: " + "; ".join(missing), file=file)


def bench_markdown(doc: dict[str, Any]) -> str:
    """The README's benchmark section body: the setup line and one markdown table."""
    peers = doc.get("peers", [])
    v = doc.get("versions", {})
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    lines = [
        (f"Measured {doc['date']} on {doc['cpu']} ({doc['cpu_count']} logical cores), "
         f"{doc['platform']}; {vers}."),
        "",
        (f"Command: `{doc.get('command') or 'fastsample bench'}`. Times are the median "
         "microseconds per call (IQR in brackets); `/floor` is the median over `np.max` on "
         "the same input, timed in the same run; `vs X` is X's median over this row's "
         "(higher: faster than X)."),
        "",
        "| workload | implementation | median µs (IQR) | /floor | " + " | ".join(f"vs {p}" for p in peers) + " |",
        "|---|---|---:|---:|" + "---:|" * len(peers),
    ]
    for label, entries in _by_case(doc).items():
        for r in entries:
            if "median_us" not in r:
                continue
            sp = r.get("speedup", {})
            lines.append(f"| {label} | {_impl(r)} | {fmt_us(r['median_us'])} "
                         f"({fmt_us(r['q1_us'])}-{fmt_us(r['q3_us'])}) | {fmt_ratio(r['ratio_to_floor'])} | "
                         + " | ".join(fmt_ratio(sp.get(p)) for p in peers) + " |")
    return "\n".join(lines) + "\n"


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
