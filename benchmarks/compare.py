"""The peer comparison: the same workloads against logq and what users would pick instead.

Run it from the repository root (``make compare`` rewrites docs/benchmarks.md with it)::

    python benchmarks/compare.py [--quick] [--records N] [--runs N] [--latency-seconds S]
                                 [--systems NAME,...] [--markdown FILE] [--work-dir DIR] [--json]

Systems (benchmarks/peers.py), each with its durability stated next to every figure: logq
in each fsync mode, each with the compiled and with the pure-Python codec ("logq (never)"
and "logq (never, pure)"), SQLite with synchronous=NORMAL and FULL, and Redis Streams when
redis-py and a redis-server binary exist. Workloads: N records of 100 bytes produced then
consumed (logq also: a group committing after every ``poll`` and every ``poll_columns`` of
1,000, and ``send`` one record at a time), N/10 records of 1 KiB, seek to the middle and
read 1,000, replay from random offsets (the first record, then the next 1,000),
send-to-receive latency at 5,000 records/s across two processes, and logq's seek as the
log grows. Runs are interleaved (run
1 of every system, then run 2, ...) so that drifting load on a shared machine hits every
system alike; each figure is the median of the runs, with min and max. Then the ratios
logq / peer and the targets of the performance issue against the measured medians (never
asserted, only reported).

The output is markdown (the generated block of docs/benchmarks.md, with the machine facts
of benchmarks/machine.py) or, with ``--json``, one object a line for tools/plot_bench.py.
Errors follow the ``logq`` CLI's contract: one ``logq: <message>`` line, exit 1 or 2.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import click
from logq.cli.options import LogqCommand, TerminalProgress, json_option, warn
from logq.cli.perf_workloads import run_seek, spread

from machine import disk_fdatasync_mb_s, machine_info
from peers import (
    LATENCY_RATE,
    REPLAYS,
    SYSTEM_KEYS,
    LogqSystem,
    compiled_codec_error,
    make_systems,
    redis_unavailable,
)

__all__ = ["WORKLOADS", "run_compare", "targets", "markdown", "write_markdown", "compare", "main"]

MARK_BEGIN = "<!-- perf:begin -->"
MARK_END = "<!-- perf:end -->"

# workload name -> (unit, higher is better)
WORKLOADS: dict[str, tuple[str, bool]] = {
    "produce 100 B": ("records/s", True),
    "produce 100 B, send()": ("records/s", True),
    "consume 100 B": ("records/s", True),
    "consume 100 B, poll + commit": ("records/s", True),
    "consume 100 B, poll_columns + commit": ("records/s", True),
    "produce 1 KiB": ("MB/s", True),
    "consume 1 KiB": ("MB/s", True),
    "seek to middle + read 1,000": ("us", False),
    "replay: first record": ("us", False),
    "replay: next 1,000 records": ("us", False),
    "latency p50 at 5,000/s": ("us", False),
    "latency p99 at 5,000/s": ("us", False),
}

# logq-only workloads, and the peer workload each is compared with (the targets:
# one record at a time against the peer's batched insert, a committing consumer against
# the peer's consume)
PEER_WORKLOAD = {
    "produce 100 B, send()": "produce 100 B",
    "consume 100 B, poll + commit": "consume 100 B",
    "consume 100 B, poll_columns + commit": "consume 100 B",
}


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def run_compare(
    records: int,
    runs: int,
    latency_seconds: float,
    work_dir: str | None,
    progress: TerminalProgress | None = None,
    keys: Sequence[str] = SYSTEM_KEYS,
) -> dict[str, Any]:
    """Every workload on every available system; figures, ratios, seek growth, targets."""
    systems, skipped = make_systems(keys)
    big = max(1000, records // 10)
    dd_mb = disk_fdatasync_mb_s(work_dir)
    values: dict[tuple[str, str], list[float]] = {}
    notes: list[str] = []
    step = 0
    if progress is not None:
        progress.total = runs * len(systems) + 1

    def add(workload: str, system: Any, v: float) -> None:
        values.setdefault((workload, system.name), []).append(v)

    for run in range(runs):
        for s in systems:
            if progress is not None:
                progress.label = f"compare: run {run + 1}/{runs}, {s.name}"
                progress.update(step)
            s.start(work_dir)
            try:
                small = s.run(records, 100, seek=True)
                add("produce 100 B", s, small["produce"])
                add("consume 100 B", s, small["consume"])
                for key, workload in (
                    ("seek", "seek to middle + read 1,000"),
                    ("consume_commit", "consume 100 B, poll + commit"),
                    ("consume_columns", "consume 100 B, poll_columns + commit"),
                    ("replay_first", "replay: first record"),
                    ("replay_next", "replay: next 1,000 records"),
                ):
                    if key in small:
                        add(workload, s, small[key])
                if isinstance(s, LogqSystem) and s.fsync == "never":
                    add("produce 100 B, send()", s, s.send_mode(records))
                large = s.run(big, 1024, seek=False)
                add("produce 1 KiB", s, large["produce_mb"])
                add("consume 1 KiB", s, large["consume_mb"])
                if latency_seconds > 0:
                    lat = s.latency(latency_seconds, work_dir)
                    add("latency p50 at 5,000/s", s, lat["p50"])
                    add("latency p99 at 5,000/s", s, lat["p99"])
                    planned = max(1, int(LATENCY_RATE * latency_seconds))
                    if lat["sent"] < planned or lat["received"] < lat["sent"]:
                        notes.append(
                            f"{s.name}, latency run {run + 1}: {lat['sent']:,} of {planned:,} records sent "
                            f"(the producer could not keep 5,000/s), {lat['received']:,} received"
                        )
            finally:
                s.stop()
            step += 1
    if progress is not None:
        progress.label = "compare: seek growth"
        progress.update(step)
    seek = run_seek([max(1000, records // 10), records], targets=200, work_dir=work_dir)
    why = compiled_codec_error()
    if why is not None and any(isinstance(s, LogqSystem) for s in systems):
        notes.append(f"the compiled codec is not built ({why}): every logq figure is the pure codec's")
    by_name = {s.name: s for s in systems}
    figures = []
    for workload, (unit, higher) in WORKLOADS.items():
        for s in systems:
            if (workload, s.name) in values:
                figures.append(
                    {
                        "workload": workload,
                        "system": s.name,
                        "durability": s.durability,
                        "unit": unit,
                        "higher_is_better": higher,
                        **spread(values[(workload, s.name)]),
                    }
                )
    med = {(f["workload"], f["system"]): f["median"] for f in figures}
    ratios = []
    logqs = [s.name for s in systems if isinstance(s, LogqSystem)]
    peers = [s.name for s in systems if not isinstance(s, LogqSystem)]
    for workload, (_unit, higher) in WORKLOADS.items():
        for lq in logqs:
            for peer in peers:
                a, b = med.get((workload, lq)), med.get((PEER_WORKLOAD.get(workload, workload), peer))
                if a and b:
                    ratios.append({"workload": workload, "logq": lq, "peer": peer, "ratio": a / b if higher else b / a})
    return {
        "records": records,
        "records_1k": big,
        "runs": runs,
        "latency_seconds": latency_seconds,
        "figures": figures,
        "ratios": ratios,
        "seek": seek,
        "skipped": skipped,
        "notes": notes,
        "disk_fdatasync_mb_s": dd_mb,
        "targets": targets(med, ratios, seek, dd_mb),
        "durability": {n: s.durability for n, s in by_name.items()},
    }


def targets(
    med: dict[tuple[str, str], float],
    ratios: list[dict[str, Any]],
    seek: list[dict[str, Any]],
    dd_mb: float | None = None,
) -> list[dict[str, Any]]:
    """The issue's targets against the measured medians (never asserted, only reported).

    Ratios are "how many times better": logq / peer for throughput, peer / logq for times,
    so "replay within 2x SQLite's time" is a ratio >= 0.5. "met" is the compiled codec's;
    the pure codec's ratio is reported beside it."""

    def m(workload: str, system: str = "logq (never)") -> float | None:
        return med.get((workload, system))

    def ratio(workload: str, lq: str, peer: str) -> float | None:
        return next((r["ratio"] for r in ratios if (r["workload"], r["logq"], r["peer"]) == (workload, lq, peer)), None)

    out = []

    def row(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    def thr(target: str, workload: str, goal: float, unit: str) -> None:
        v = m(workload)
        row(
            target, "not measured" if v is None else f"{_fmt(v)} {unit} (fsync=never)", None if v is None else v >= goal
        )

    thr("produce >= 1,500,000 records/s (send_batch, 100 B)", "produce 100 B", 1.5e6, "records/s")
    thr("produce >= 500,000 records/s (send, 100 B)", "produce 100 B, send()", 5e5, "records/s")
    thr("consume >= 1,000,000 records/s (100 B)", "consume 100 B", 1e6, "records/s")
    pk, ck = m("produce 1 KiB"), m("consume 1 KiB")
    if pk is not None and ck is not None:
        row(
            "1 KiB values >= 500 MB/s",
            f"produce {_fmt(pk)} MB/s, consume {_fmt(ck)} MB/s (fsync=never)",
            pk >= 500 and ck >= 500,
        )
    ak = m("produce 1 KiB", "logq (always)")
    if ak is not None and dd_mb:
        row(
            "1 KiB, fsync=always >= 60% of the disk's fdatasync bandwidth (dd, same run)",
            f"{_fmt(ak)} MB/s = {100 * ak / dd_mb:.0f}% of dd's {_fmt(dd_mb)} MB/s",
            ak >= 0.6 * dd_mb,
        )
    p50, p99 = m("latency p50 at 5,000/s"), m("latency p99 at 5,000/s")
    if p50 is not None and p99 is not None:
        row(
            "cross-process latency p50 <= 100 us, p99 <= 500 us",
            f"p50 {_fmt(p50)} us, p99 {_fmt(p99)} us (fsync=never)",
            p50 <= 100 and p99 <= 500,
        )
    if len(seek) >= 2:
        a, b = seek[0], seek[-1]
        grow = b["offset_median_us"] / max(a["offset_median_us"], 1e-9)
        limit = 1.25 * math.log(b["records"]) / math.log(max(a["records"], 2))
        row(
            "seek <= 100 us, growing at most logarithmically",
            f"by offset {_fmt(a['offset_median_us'])} us at {a['records']:,} records, {_fmt(b['offset_median_us'])} us at "
            f"{b['records']:,} (x{grow:.2f}; log bound x{limit:.2f}); by timestamp {_fmt(b['timestamp_median_us'])} us",
            max(a["offset_median_us"], b["offset_median_us"], b["timestamp_median_us"]) <= 100 and grow <= limit,
        )
    # the table: ratios against the SQLite queue of like durability, compiled and pure
    for workload, goal, what in (
        ("consume 100 B, poll + commit", 2, "consume 100 B, `poll` + commit"),
        ("consume 100 B, poll_columns + commit", 20, "consume 100 B, `poll_columns` + commit"),
        ("produce 100 B", 5, "produce 100 B, `send_batch`"),
        ("produce 100 B, send()", 1, "produce 100 B, `send` one at a time, vs its batched insert"),
        ("replay: first record", 0.5, "replay: first record after `replay_from(offset)`, <= 2x its time"),
        ("replay: next 1,000 records", 1, "replay: next 1,000 records, <= 1x its time"),
    ):
        peer = "SQLite (NORMAL)"
        target = f"{what}: >= x{goal:g} {peer} (logq (never), compiled / pure)"
        rc, rp = ratio(workload, "logq (never)", peer), ratio(workload, "logq (never, pure)", peer)
        if rc is None and rp is None:
            row(target, "not measured", None)
            continue
        cells = []
        for label, r in (("compiled", rc), ("pure", rp)):
            if r is None:
                cells.append(f"{label} not measured")
            elif r >= goal:
                cells.append(f"{label} x{r:.2f} (met)")
            else:
                cells.append(f"{label} x{r:.2f} (missed by {goal / r:.1f}x)")
        row(target, ", ".join(cells), None if rc is None else rc >= goal)
    for peer, lq, goal in (
        ("Redis Streams", "logq (interval)", 10),
        ("SQLite (NORMAL)", "logq (never)", 5),
        ("SQLite (FULL)", "logq (always)", 5),
    ):
        rp, rc = ratio("produce 100 B", lq, peer), ratio("consume 100 B", lq, peer)
        target = f">= {goal}x {peer} ({lq}, same durability class)"
        if rp is None or rc is None:
            row(target, "not measured", None)
        else:
            row(target, f"produce x{rp:.2f}, consume x{rc:.2f}", rp >= goal and rc >= goal)
    return out


def markdown(res: dict[str, Any], machine: dict[str, Any]) -> str:
    """The generated part of docs/benchmarks.md."""
    L = [
        f"Measured {machine['date']} by `python benchmarks/compare.py{' --quick' if res.get('quick') else ''}` with "
        f"{res['records']:,} records of 100 B, "
        f"{res['records_1k']:,} of 1 KiB, latency runs of {res['latency_seconds']:g} s (0: none); each figure is the "
        f"median of {res['runs']} runs (min and max beside it); each replay figure is, per run, the median of "
        f"{REPLAYS} replays from random offsets in the middle half of the log.",
        "",
        "| machine | |",
        "|---|---|",
    ]
    L += [f"| {k} | {v} |" for k, v in machine.items()]
    L += [
        "",
        "#### Results",
        "",
        "| workload | system | durability | median | min | max | unit |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for f in res["figures"]:
        L.append(
            f"| {f['workload']} | {f['system']} | {f['durability']} | {_fmt(f['median'])} | {_fmt(f['min'])} | "
            f"{_fmt(f['max'])} | {f['unit']} |"
        )
    peers = [
        f["system"] for f in res["figures"] if f["workload"] == "produce 100 B" and not f["system"].startswith("logq")
    ]
    if peers:
        L += [
            "",
            "#### Ratios",
            "",
            "How many times better logq is: logq / peer for throughput, peer / logq for times (> 1: logq wins).",
            "",
            "| workload | logq | " + " | ".join(f"vs {p}" for p in peers) + " |",
            "|---|---|" + "---:|" * len(peers),
        ]
        keys = []
        for r in res["ratios"]:
            if (r["workload"], r["logq"]) not in keys:
                keys.append((r["workload"], r["logq"]))
        for w, lq in keys:
            cells = [
                next(
                    (
                        f"x{r['ratio']:.2f}"
                        for r in res["ratios"]
                        if (r["workload"], r["logq"], r["peer"]) == (w, lq, p)
                    ),
                    "-",
                )
                for p in peers
            ]
            L.append(f"| {w} | {lq} | " + " | ".join(cells) + " |")
    L += [
        "",
        "#### Seek as the log grows (logq, by offset and by timestamp)",
        "",
        "| records | MB | segments | by offset, median us | min | max | by timestamp, median us | min | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in res["seek"]:
        L.append(
            f"| {s['records']:,} | {s['size_mb']:.1f} | {s['segments']} | {_fmt(s['offset_median_us'])} | "
            f"{_fmt(s['offset_min_us'])} | {_fmt(s['offset_max_us'])} | {_fmt(s['timestamp_median_us'])} | "
            f"{_fmt(s['timestamp_min_us'])} | {_fmt(s['timestamp_max_us'])} |"
        )
    L += ["", "#### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {'-' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    for s in res["skipped"]:
        L += ["", f"Skipped {s['system']}: {s['reason']}."]
    if res["notes"]:
        L += ["", "Notes:", ""] + [f"- {n}." for n in res["notes"]]
    return "\n".join(L) + "\n"


def write_markdown(path: str, body: str) -> None:
    """Replace the text between the perf markers of ``path``, or write the whole file."""
    block = f"{MARK_BEGIN}\n{body}{MARK_END}\n"
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    # the markers on lines of their own: prose may quote them (docs/benchmarks.md does)
    begin = re.search(rf"^{re.escape(MARK_BEGIN)}[ \t]*$", old, re.MULTILINE)
    end = re.search(rf"^{re.escape(MARK_END)}[ \t]*$", old[begin.end() :], re.MULTILINE) if begin else None
    if begin is not None and end is not None:
        i, j = begin.start(), begin.end() + end.start()
        new = old[:i] + block + old[j + len(MARK_END) :].lstrip("\n")
    else:
        new = block
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def compare(
    *,
    quick: bool,
    records: int | None,
    runs: int,
    latency_seconds: float | None,
    markdown_file: str | None,
    work_dir: str | None,
    as_json: bool,
    systems: Sequence[str] = SYSTEM_KEYS,
) -> None:
    n = records or (20_000 if quick else 1_000_000)
    secs = (0.5 if quick else 5.0) if latency_seconds is None else latency_seconds
    machine = machine_info(work_dir)
    progress = TerminalProgress.counting("compare", runs)
    why = redis_unavailable()
    if why is not None and "redis" in systems:
        warn(f"skipping Redis Streams: {why}.")
    try:
        res = run_compare(n, runs, secs, work_dir, progress, systems)
        res["quick"] = quick
    finally:
        progress.clear()
    body = markdown(res, machine)
    if markdown_file:
        write_markdown(markdown_file, body)
    if not as_json:
        click.echo(body, nl=False)
        return
    click.echo(json.dumps({"type": "machine", **machine}))
    for f in res["figures"]:
        click.echo(json.dumps({"type": "figure", **f}))
    for r in res["ratios"]:
        click.echo(json.dumps({"type": "ratio", **r}))
    for s in res["seek"]:
        click.echo(json.dumps({"type": "seek", **s}))
    for t in res["targets"]:
        click.echo(json.dumps({"type": "target", **t}))
    for s in res["skipped"]:
        click.echo(json.dumps({"type": "skipped", **s}))
    for n in res["notes"]:
        click.echo(json.dumps({"type": "note", "text": n}))


# --------------------------------------------------------------------------- command line
def _systems(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in names if x not in SYSTEM_KEYS]
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'}: choose from {', '.join(SYSTEM_KEYS)}")
    return list(dict.fromkeys(names))


@click.command("compare", cls=LogqCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Far fewer records and shorter latency runs (a smoke test).")
@click.option(
    "--records",
    type=click.IntRange(min=1000),
    default=None,
    metavar="N",
    help="Records of 100 bytes per run (default 1,000,000; 20,000 with --quick).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    metavar="N",
    help="Runs per figure; each figure is their median, with min and max.",
)
@click.option(
    "--latency-seconds",
    type=click.FloatRange(min=0, max=600),
    default=None,
    metavar="S",
    help="Seconds of each latency run at 5,000 records/s (default 5; 0.5 with --quick; 0 skips it).",
)
@click.option(
    "--systems",
    default=",".join(SYSTEM_KEYS),
    show_default=True,
    callback=_systems,
    metavar="NAME,...",
    help="Systems to measure.",
)
@click.option(
    "--markdown",
    "markdown_file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Write the tables as markdown (between the perf markers if FILE has them).",
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    metavar="DIR",
    help="Where temporary logs are created (default: the system's temp directory).",
)
@json_option
def compare_command(
    quick: bool,
    records: int | None,
    runs: int,
    latency_seconds: float | None,
    systems: list[str],
    markdown_file: str | None,
    work_dir: str | None,
    as_json: bool,
) -> None:
    """The same workloads against logq (each fsync mode), SQLite and Redis Streams."""
    compare(
        quick=quick,
        records=records,
        runs=runs,
        latency_seconds=latency_seconds,
        markdown_file=markdown_file,
        work_dir=work_dir,
        as_json=as_json,
        systems=systems,
    )


def main() -> None:
    compare_command.main(prog_name="compare.py")


if __name__ == "__main__":
    main()
