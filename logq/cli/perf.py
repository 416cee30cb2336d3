"""``logq perf``: Kafka-style perf commands over the workloads of logq/cli/perf_workloads.py.

``logq perf produce`` / ``consume`` print kafka-producer-perf-test's and
kafka-consumer-perf-test's line shapes; ``latency`` measures send-to-receive time between a
producer process and a consumer process; ``seek`` times lookups as a log grows. Every
command has ``--json`` for scripts. The workloads themselves are plain functions in
:mod:`logq.cli.perf_workloads`, so that benchmarks/ can drive them too; the comparison
with SQLite and Redis Streams (``python benchmarks/compare.py``) lives there, outside the
installed package.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from logq.cli.options import CliState, TerminalProgress, json_option, pass_state
from logq.cli.perf_workloads import MIB, run_consume, run_latency, run_produce, run_seek
from logq.codec import batch as codec
from logq.codec.compression import CODECS

__all__ = [
    "producer_line",
    "CONSUMER_HEADER",
    "consumer_row",
    "latency_line",
    "seek_line",
    "perf_group",
]

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- output lines
def producer_line(s: dict[str, Any], final: bool) -> str:
    """kafka-producer-perf-test's window line, or its final line with percentiles."""
    line = (
        f"{s['records']} records sent, {s['records_per_sec']:.1f} records/sec ({s['mb_per_sec']:.2f} MB/sec), "
        f"{s['avg_latency_ms']:.3f} ms avg latency, {s['max_latency_ms']:.3f} ms max latency"
    )
    if final:
        line += (
            f", {s['p50_ms']:.3f} ms 50th, {s['p95_ms']:.3f} ms 95th, {s['p99_ms']:.3f} ms 99th, "
            f"{s['p999_ms']:.3f} ms 99.9th"
        )
    return line + "."


CONSUMER_HEADER = (
    "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
    "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec"
)


def consumer_row(s: dict[str, Any]) -> str:
    return (
        f"{s['start.time']}, {s['end.time']}, {s['data.consumed.in.MB']:.4f}, {s['MB.sec']:.4f}, "
        f"{s['data.consumed.in.nMsg']}, {s['nMsg.sec']:.4f}, {s['rebalance.time.ms']}, {s['fetch.time.ms']}, "
        f"{s['fetch.MB.sec']:.4f}, {s['fetch.nMsg.sec']:.4f}"
    )


def latency_line(s: dict[str, Any]) -> str:
    return (
        f"{s['records_received']} records received of {s['records_sent']} sent at {s['rate']:g} records/sec, "
        f"{s['avg_us']:.1f} us avg latency, {s['max_us']:.1f} us max latency, {s['p50_us']:.1f} us 50th, "
        f"{s['p99_us']:.1f} us 99th, {s['p999_us']:.1f} us 99.9th."
    )


def seek_line(s: dict[str, Any]) -> str:
    return (
        f"{s['records']} records ({s['size_mb']:.1f} MB, {s['segments']} segments): seek by offset "
        f"{s['offset_median_us']:.1f} us median (min {s['offset_min_us']:.1f}, max {s['offset_max_us']:.1f}), "
        f"by timestamp {s['timestamp_median_us']:.1f} us median (min {s['timestamp_min_us']:.1f}, "
        f"max {s['timestamp_max_us']:.1f}), over {s['targets']} random targets."
    )


# --------------------------------------------------------------------------- commands
def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, sort_keys=False))


def _codec_note(s: dict[str, Any]) -> None:
    """Which codec the figures are for: a "codec" field in the JSON total, a stderr line otherwise."""
    s["codec"] = codec.IMPLEMENTATION
    click.echo(f"codec: {codec.describe_implementation()}", err=True)


@click.group("perf")
def perf_group() -> None:
    """Measure logq: produce, consume, latency and seek, like Kafka's perf tools."""


@perf_group.command("produce")
@click.option("--topic", required=True, help="Topic to write (created if missing).")
@click.option("--num-records", required=True, type=click.IntRange(min=1), metavar="N", help="Records to send.")
@click.option("--record-size", required=True, type=click.IntRange(min=0), metavar="B", help="Bytes per value.")
@click.option(
    "--throughput",
    type=float,
    default=-1,
    show_default=True,
    metavar="R",
    help="Cap in records/s; -1 sends as fast as possible.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="N",
    help="Records per batch: values per send_batch call, or the producer's batch size in send mode.",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "interval", "never"]),
    default=None,
    help="Durability for this producer (default: the topic's setting).",
)
@click.option(
    "--compression-type",
    type=click.Choice(list(CODECS)),
    default=None,
    help="Codec of this producer's batches (default: the topic's compression_type).",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="P",
    help="Partitions of the topic when it is created.",
)
@click.option(
    "--mode",
    type=click.Choice(["send", "send_batch"]),
    default="send_batch",
    show_default=True,
    help="Producer API to drive.",
)
@click.option(
    "--reporting-interval",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    metavar="MS",
    help="Milliseconds between window lines.",
)
@json_option
@pass_state
def produce_command(
    state: CliState,
    topic: str,
    num_records: int,
    record_size: int,
    throughput: float,
    batch_size: int,
    fsync: str | None,
    compression_type: str | None,
    partitions: int,
    mode: str,
    reporting_interval: int,
    as_json: bool,
) -> None:
    """Write records as fast as possible (or at --throughput), like kafka-producer-perf-test."""

    def on_window(s: dict[str, Any]) -> None:
        _emit({"type": "window", **s}) if as_json else click.echo(producer_line(s, final=False))

    s = run_produce(
        state.data_dir,
        topic,
        num_records,
        record_size,
        throughput=throughput,
        batch_size=batch_size,
        fsync=fsync,
        compression_type=compression_type,
        partitions=partitions,
        mode=mode,
        report_interval_s=reporting_interval / 1000,
        on_window=on_window,
        progress=TerminalProgress.counting("produce", num_records),
    )
    _codec_note(s)
    _emit({"type": "total", **s}) if as_json else click.echo(producer_line(s, final=True))
    if compression_type is not None and not as_json:
        click.echo(f"compression: {compression_type}, {s['compression_rate']:.3f} bytes stored per byte sent", err=True)


@perf_group.command("consume")
@click.option("--topic", required=True, help="Topic to read (every partition).")
@click.option("--messages", required=True, type=click.IntRange(min=1), metavar="N", help="Records to consume.")
@click.option(
    "--group",
    default=None,
    metavar="G",
    help="Consume as a member of this group (from its commits; commits at the end).",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    metavar="MS",
    help="Give up after this many milliseconds without a record.",
)
@click.option(
    "--fetch-size",
    type=click.IntRange(min=1024),
    default=MIB,
    show_default=True,
    metavar="BYTES",
    help="Bytes per fetch (the consumer's fetch_max_bytes).",
)
@click.option(
    "--max-poll-records",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    metavar="N",
    help="Records per poll.",
)
@json_option
@pass_state
def consume_command(
    state: CliState,
    topic: str,
    messages: int,
    group: str | None,
    timeout: int,
    fetch_size: int,
    max_poll_records: int,
    as_json: bool,
) -> None:
    """Read records as fast as possible, like kafka-consumer-perf-test."""
    s = run_consume(
        state.data_dir,
        topic,
        messages,
        group=group,
        timeout_ms=timeout,
        fetch_size=fetch_size,
        max_poll_records=max_poll_records,
        progress=TerminalProgress.counting("consume", messages),
    )
    _codec_note(s)
    if s["timed_out"]:
        click.echo(
            f"WARNING: Exiting before consuming the expected number of messages: timeout ({timeout} ms) "
            f"exceeded. You can use the --timeout option to increase the timeout.",
            err=True,
        )
    if as_json:
        _emit({"type": "total", **s})
    else:
        click.echo(CONSUMER_HEADER)
        click.echo(consumer_row(s))


def _work_dir_option(f: F) -> F:
    return click.option(
        "--work-dir",
        type=click.Path(file_okay=False, exists=True),
        default=None,
        metavar="DIR",
        help="Where temporary logs are created (default: the system's temp directory).",
    )(f)


@perf_group.command("latency")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=5000,
    show_default=True,
    metavar="R",
    help="Records per second.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=10,
    show_default=True,
    metavar="S",
    help="How long to send.",
)
@click.option(
    "--record-size",
    type=click.IntRange(min=16),
    default=100,
    show_default=True,
    metavar="B",
    help="Bytes per value (the first 16 carry the send time and a sequence number).",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "interval", "never"]),
    default="never",
    show_default=True,
    help="Durability of the producer.",
)
@_work_dir_option
@json_option
def latency_command(
    rate: float, seconds: float, record_size: int, fsync: str, work_dir: str | None, as_json: bool
) -> None:
    """Send-to-receive latency between a producer process and a consumer process."""
    s = run_latency(rate, seconds, record_size=record_size, fsync=fsync, work_dir=work_dir)
    _emit({"type": "total", **s}) if as_json else click.echo(latency_line(s))


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        sizes = [int(x.replace("_", "")) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of record counts") from None
    if not sizes or any(n < 1 for n in sizes):
        raise click.BadParameter("give one or more record counts >= 1, e.g. 100000,1000000")
    return sizes


@perf_group.command("seek")
@click.option(
    "--sizes",
    default="100000,1000000",
    show_default=True,
    callback=_sizes,
    metavar="N,N...",
    help="Log sizes in records (100-byte values, batches of 1,000).",
)
@click.option(
    "--targets",
    type=click.IntRange(min=1, max=1_000_000),
    default=1000,
    show_default=True,
    metavar="N",
    help="Random offsets and timestamps looked up per size.",
)
@_work_dir_option
@json_option
def seek_command(sizes: list[int], targets: int, work_dir: str | None, as_json: bool) -> None:
    """Time to reach a random offset / timestamp as the log grows."""
    rows = run_seek(sizes, targets=targets, work_dir=work_dir)
    for r in rows:
        _emit({"type": "size", **r}) if as_json else click.echo(seek_line(r))
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        g = {
            "type": "growth",
            "from_records": a["records"],
            "to_records": b["records"],
            "offset_ratio": b["offset_median_us"] / max(a["offset_median_us"], 1e-9),
            "timestamp_ratio": b["timestamp_median_us"] / max(a["timestamp_median_us"], 1e-9),
        }
        _emit(g) if as_json else click.echo(
            f"growth from {a['records']} to {b['records']} records: offset x{g['offset_ratio']:.2f}, "
            f"timestamp x{g['timestamp_ratio']:.2f}."
        )
