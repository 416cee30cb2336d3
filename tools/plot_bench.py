#!/usr/bin/env python3
"""Turn benchmark results into PNG plots (for docs/benchmarks.md).

Usage (from the repository root, inside the project's virtualenv)::

    python tools/plot_bench.py RESULTS... [--out docs/img]

Each RESULTS file is one of:

* a pytest-benchmark JSON file (``make bench`` with ``--benchmark-json FILE``, or
  ``pytest benchmarks --benchmark-enable --benchmark-only --benchmark-json FILE``);
* the ``--json`` output of ``benchmarks/compare.py`` or ``logq perf seek`` (one object a line).

Plots written (only those the inputs have data for):

* ``bench_throughput.png``  records/s of every benchmark that handles records (log scale);
* ``bench_recovery.png``    reopen time of a crashed partition against its unflushed tail;
* ``seek_growth.png``       seek time by offset and by timestamp against the log size;
* ``compare_throughput.png`` and ``compare_times.png`` (latency, seek) logq against its peers (median,
  with min-max bars).

Needs matplotlib (in logq's ``bench`` extra): without it the script says so and exits 2.
Reading the inputs needs only the standard library, so :func:`load` is testable anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

Series = dict[str, Any]


def _objects(text: str) -> list[dict[str, Any]]:
    """A whole-file JSON object, or one JSON object per line."""
    text = text.strip()
    if not text:
        return []
    try:
        whole = json.loads(text)
        return [whole] if isinstance(whole, dict) else list(whole)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def load(paths: Sequence[str]) -> Series:
    """What to plot, gathered from every input file."""
    out: Series = {"throughput": [], "recovery": {}, "seek": [], "figures": []}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            objs = _objects(f.read())
        for obj in objs:
            if "benchmarks" in obj:
                _from_pytest_benchmark(obj, out)
            elif obj.get("type") == "figure":
                out["figures"].append(obj)
            elif obj.get("type") in ("seek", "size") and "offset_median_us" in obj:
                out["seek"].append(obj)
    return out


def _from_pytest_benchmark(doc: dict[str, Any], out: Series) -> None:
    for b in doc["benchmarks"]:
        extra, median = b.get("extra_info", {}), b["stats"]["median"]
        if "tail_bytes" in extra:
            curve = out["recovery"].setdefault(extra["crash"], [])
            curve.append((extra["tail_bytes"] / (1 << 20), median * 1000))
        elif extra.get("records") and median > 0:
            out["throughput"].append((b["name"], extra["records"] / median))
    for curve in out["recovery"].values():
        curve.sort()


def render(series: Series, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        path = os.path.join(out_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if series["throughput"]:
        rows = sorted(series["throughput"], key=lambda r: r[1])
        fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#4477aa")
        ax.set_xscale("log")
        ax.set_xlabel("records (or lookups) per second, median round")
        ax.set_title("pytest-benchmark suites")
        ax.tick_params(axis="y", labelsize=7)
        save(fig, "bench_throughput.png")
    if series["recovery"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        for crash, pts in sorted(series["recovery"].items()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=crash)
        ax.set_xlabel("unflushed tail (MiB)")
        ax.set_ylabel("reopen time (ms, median)")
        ax.set_title("Recovery of a crashed partition")
        ax.legend()
        save(fig, "bench_recovery.png")
    if series["seek"]:
        pts = sorted(series["seek"], key=lambda s: s["records"])
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [p["records"] for p in pts]
        for key, label in (("offset", "by offset"), ("timestamp", "by timestamp")):
            ax.errorbar(
                xs,
                [p[f"{key}_median_us"] for p in pts],
                yerr=_bars(pts, f"{key}_median_us", f"{key}_min_us", f"{key}_max_us"),
                marker="o",
                capsize=3,
                label=label,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records in the log")
        ax.set_ylabel("time to the first record (us, median)")
        ax.set_title("Seek as the log grows")
        ax.legend()
        save(fig, "seek_growth.png")
    if series["figures"]:
        for name, units in (("compare_throughput.png", ("records/s", "MB/s")), ("compare_times.png", ("us",))):
            figs = [f for f in series["figures"] if f["unit"] in units]
            if figs:
                save(_grouped(plt, figs), name)
    return written


def _bars(rows: list[dict[str, Any]], med: str, lo: str, hi: str) -> tuple[list[float], list[float]]:
    return [r[med] - r[lo] for r in rows], [r[hi] - r[med] for r in rows]


def _grouped(plt: Any, figs: list[dict[str, Any]]) -> Any:
    """One panel per workload, a bar per system, min-max as error bars."""
    workloads = list(dict.fromkeys(f["workload"] for f in figs))
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.2 * len(workloads), 4), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        rows = [f for f in figs if f["workload"] == w]
        names = [f["system"] for f in rows]
        ax.bar(
            range(len(rows)),
            [f["median"] for f in rows],
            yerr=_bars(rows, "median", "min", "max"),
            capsize=3,
            color=["#4477aa" if n.startswith("logq") else "#cc6677" for n in names],
        )
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        ax.set_title(w, fontsize=9)
        ax.set_ylabel(rows[0]["unit"])
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="pytest-benchmark JSON or `logq perf ... --json` output")
    ap.add_argument("--out", default=os.path.join("docs", "img"), help="directory for the PNG files")
    args = ap.parse_args(argv)
    try:
        series = load(args.results)
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_bench: cannot read the results: {e}", file=sys.stderr)
        return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "plot_bench: matplotlib is not installed (it is in logq's 'bench' extra: "
            "pip install -e '.[bench]'); no plots written",
            file=sys.stderr,
        )
        return 2
    written = render(series, args.out)
    if not written:
        print("plot_bench: nothing to plot in the given results", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
