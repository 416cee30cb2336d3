"""The topic, produce and consume commands of ``logq``, modelled on Kafka's tools.

=====================  ==============================================================
command                Kafka counterpart
=====================  ==============================================================
``logq topics ...``    kafka-topics (create, list, describe, delete), kafka-delete-records
``logq produce``       kafka-console-producer
``logq consume``       kafka-console-consumer
=====================  ==============================================================

Groups, offsets, seek and repair live in logq/cli/groups.py.

Each command parses its options, calls the library (Admin, Producer, Consumer) and prints;
errors are turned into one ``logq: <message>`` line by :class:`logq.cli.options.LogqGroup`.
Warnings (clamped offsets, Python warnings and ``logq`` log warnings) go to stderr as
``logq: warning: <message>`` lines. :data:`COMMANDS` lists what ``logq.cli`` registers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import click

from logq.cli.options import (
    EXIT_INTERRUPTED,
    CliState,
    check_partitions,
    existing_root,
    fail,
    json_option,
    partition_count,
    pass_state,
    routed,
)
from logq.client.admin import Admin, TopicDescription
from logq.client.consumer import Consumer
from logq.client.producer import Producer, RecordFuture
from logq.config import LogConfig
from logq.errors import ConfigError
from logq.storage.topics import MAX_PARTITIONS, validate_topic
from logq.types import Record, TopicPartition

__all__ = ["COMMANDS"]

HARVEST_EVERY = 10_000  # produce: flush and collect offsets every this many records (bounds memory)
DEFAULT_IDLE_MS = 10_000  # consume without --timeout-ms/--follow: give up after this long without progress
_POLL_S = 0.2
_INT = re.compile(r"-?[0-9]+")
# ----------------------------------------------------------------------------- helpers


def _text(data: bytes | bytearray | str | None) -> str | None:
    """Bytes as UTF-8 text, invalid bytes as backslash escapes (\\xff); None stays None."""
    if data is None:
        return None
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "backslashreplace")


def _bad(param: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'{param}'")


def _parse_key_values(items: Sequence[str], param: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _bad(param, f"{item!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def _parse_config(items: Sequence[str]) -> dict[str, Any]:
    """``--config key=value`` -> LogConfig overrides (Kafka's dotted names accepted too)."""
    defaults = {f.name: f.default for f in dataclasses.fields(LogConfig)}
    out: dict[str, Any] = {}
    for key, raw in _parse_key_values(items, "--config"):
        name = key.strip().replace(".", "_")
        if name not in defaults:
            raise _bad("--config", f"unknown setting {key!r} (known: {', '.join(sorted(defaults))})")
        if name in out:
            raise _bad("--config", f"{name} is given twice")
        if isinstance(defaults[name], str):
            out[name] = raw
        elif _INT.fullmatch(raw.strip()):
            out[name] = int(raw.strip())
        else:
            raise _bad("--config", f"{key}={raw!r}: the value must be an integer")
    try:
        LogConfig.from_dict(out)
    except ConfigError as e:
        raise _bad("--config", e.message) from None
    return out


def _topic_json(desc: TopicDescription, overrides: dict[str, Any]) -> dict[str, Any]:
    """``topics describe --json``: Kafka's camelCase names, one object per topic."""
    partitions = [
        {
            "partition": p.partition,
            "startOffset": p.log_start_offset,
            "endOffset": p.log_end_offset,
            "size": p.size_bytes,
            "segments": p.segments,
        }
        for p in desc.partitions
    ]
    return {
        "topic": desc.name,
        "topicId": desc.topic_id,
        "partitionCount": len(desc.partitions),
        "records": desc.records,
        "size": desc.size_bytes,
        "configs": overrides,
        "effectiveConfig": desc.config,
        "partitions": partitions,
    }


# ----------------------------------------------------------------------------- topics


@click.group("topics")
def topics_group() -> None:
    """Create, list, describe, delete and repair topics, like kafka-topics."""


@topics_group.command("create")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=1,
    show_default=True,
    metavar="N",
    help="Number of partitions.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A LogConfig setting (retention_ms=-1, segment_bytes=..., Kafka's retention.ms too); repeatable.",
)
@pass_state
@routed
def topics_create(state: CliState, name: str, partitions: int, configs: tuple[str, ...]) -> None:
    """Create topic NAME (and the data directory if needed)."""
    validate_topic(name)
    overrides = _parse_config(configs)
    with Admin(state.data_dir, shared_read=state.shared_read) as admin:
        admin.create_topic(name, partitions, **overrides)
    click.echo(f"Created topic {name} with {partitions} partition(s).")


@topics_group.command("list")
@pass_state
@routed
def topics_list(state: CliState) -> None:
    """Print the topic names, one a line."""
    with Admin(existing_root(state)) as admin:
        for name in admin.list_topics():
            click.echo(name)


@topics_group.command("describe")
@click.argument("name", required=False)
@json_option
@pass_state
@routed
def topics_describe(state: CliState, name: str | None, as_json: bool) -> None:
    """Per partition: start offset, end offset, size and segments; the config overrides."""
    with Admin(existing_root(state)) as admin:
        names = [name] if name is not None else admin.list_topics()
        for topic in names:
            desc = admin.describe_topic(topic)
            overrides = dict(admin.registry.get(topic).overrides)
            if as_json:
                click.echo(json.dumps(_topic_json(desc, overrides)))
                continue
            configs = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            click.echo(
                f"Topic: {desc.name}\tTopicId: {desc.topic_id}\tPartitionCount: {len(desc.partitions)}\t"
                f"Records: {desc.records}\t"
                f"Size: {desc.size_bytes}\tConfigs: {configs}"
            )
            for p in desc.partitions:
                click.echo(
                    f"\tTopic: {desc.name}\tPartition: {p.partition}\tStartOffset: {p.log_start_offset}\t"
                    f"EndOffset: {p.log_end_offset}\tSize: {p.size_bytes}\tSegments: {p.segments}"
                )


@topics_group.command("delete")
@click.argument("name")
@pass_state
@routed
def topics_delete(state: CliState, name: str) -> None:
    """Delete topic NAME and all its data."""
    with Admin(existing_root(state)) as admin:
        admin.delete_topic(name)
    click.echo(f"Deleted topic {name}.")


@topics_group.command("repair")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=None,
    metavar="N",
    help="Partition count to write (default: the highest partition directory + 1).",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config override to write again (a corrupt file's could not be read); repeatable.",
)
@pass_state
@routed
def topics_repair(state: CliState, name: str, partitions: int | None, configs: tuple[str, ...]) -> None:
    """Rewrite topic NAME's corrupt or lost metadata file from its partition directories.

    Missing partition directories are created empty; records are not touched. The topic id
    is the one committed offsets recorded (so they stay valid) when the groups agree on one.
    """
    validate_topic(name)
    overrides = _parse_config(configs)
    with Admin(existing_root(state)) as admin:
        r = admin.repair_topic(name, partitions, **overrides)
    for problem in r.problems:
        click.echo(f"{name}: {problem}")
    if r.rewritten or r.created_partitions:
        click.echo(f"Repaired topic {name}: {r.partitions} partition(s), topic id {r.topic_id}.")
    else:
        click.echo(f"Topic {name} is healthy: {r.partitions} partition(s), topic id {r.topic_id}.")


@topics_group.command("delete-records")
@click.argument("name")
@click.option("--partition", type=click.IntRange(min=0), required=True, metavar="P", help="The partition to purge.")
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    required=True,
    metavar="O",
    help="Delete the records before this offset (it becomes the log start offset).",
)
@pass_state
@routed
def topics_delete_records(state: CliState, name: str, partition: int, offset: int) -> None:
    """Purge the records of one partition below an offset, like kafka-delete-records."""
    with Admin(existing_root(state)) as admin:
        check_partitions(name, partition_count(admin, name), [partition])
        start = admin.delete_records(name, {partition: offset})[partition]
    click.echo(f"Deleted the records of {name}-{partition} before offset {offset}: low_watermark: {start}")


@topics_group.command("enforce-retention")
@click.argument("name", required=False)
@pass_state
@routed
def topics_enforce_retention(state: CliState, name: str | None) -> None:
    """Apply retention now to topic NAME (default: every topic)."""
    with Admin(existing_root(state)) as admin:
        deleted = admin.enforce_retention(name)
    for (topic, p), n in sorted(deleted.items()):
        click.echo(f"{topic}-{p}: deleted {n} segment(s)")


# ----------------------------------------------------------------------------- produce


def _sources(files: Sequence[str]) -> Iterator[tuple[str, IO[bytes]]]:
    if not files:
        files = ("-",)
    for path in files:
        if path == "-":
            yield "<stdin>", sys.stdin.buffer
        else:
            with open(path, "rb") as f:
                yield path, f


class _ProduceTally:
    """Offsets written so far, per partition: first and last."""

    def __init__(self) -> None:
        self.count = 0
        self.ranges: dict[int, list[int]] = {}

    def harvest(self, producer: Producer, futures: list[RecordFuture]) -> None:
        producer.flush()
        for fut in futures:
            md = fut.result()
            r = self.ranges.get(md.partition)
            if r is None:
                self.ranges[md.partition] = [md.offset, md.offset]
            else:
                r[0], r[1] = min(r[0], md.offset), max(r[1], md.offset)
            self.count += 1
        futures.clear()

    def summary(self, topic: str) -> str:
        text = f"Produced {self.count} record(s) to {topic}"
        if self.ranges:
            text += ": " + ", ".join(
                f"partition {p} offsets {a}-{b}" if a != b else f"partition {p} offset {a}"
                for p, (a, b) in sorted(self.ranges.items())
            )
        return text


@click.command("produce")
@click.argument("topic")
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--key-separator", metavar="SEP", help="Split each line at the first SEP into key and value.")
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE", help="A header on every record; repeatable.")
@click.option("--partition", type=click.IntRange(min=0), metavar="P", help="Write every record to this partition.")
@pass_state
@routed
def produce_command(
    state: CliState,
    topic: str,
    files: tuple[str, ...],
    key_separator: str | None,
    headers: tuple[str, ...],
    partition: int | None,
) -> None:
    """Append the lines of FILEs (or stdin) to TOPIC, one record per line, like kafka-console-producer."""
    root = existing_root(state)
    if key_separator == "":
        raise _bad("--key-separator", "must not be empty")
    sep = key_separator.encode("utf-8") if key_separator is not None else None
    record_headers = [(k, v.encode("utf-8")) for k, v in _parse_key_values(headers, "--header")] or None
    with Admin(root) as admin:
        count = partition_count(admin, topic)
    if partition is not None:
        check_partitions(topic, count, [partition])
    tally = _ProduceTally()
    futures: list[RecordFuture] = []
    producer = Producer(root)
    try:
        for name, stream in _sources(files):
            for lineno, line in enumerate(stream, 1):
                if line.endswith(b"\n"):
                    line = line[:-1]
                    if line.endswith(b"\r"):
                        line = line[:-1]
                key: bytes | None = None
                if sep is not None:
                    key, found, value = line.partition(sep)
                    if not found:
                        tally.harvest(producer, futures)
                        fail(
                            f"line {lineno} of {name} has no key separator {key_separator!r}; "
                            f"{tally.count} record(s) before it were written"
                        )
                    line = value
                futures.append(producer.send(topic, line, key=key, headers=record_headers, partition=partition))
                if len(futures) >= HARVEST_EVERY:
                    tally.harvest(producer, futures)
        tally.harvest(producer, futures)
    finally:
        producer.close()
    click.echo(tally.summary(topic), err=True)


# ----------------------------------------------------------------------------- consume


def _record_json(rec: Record) -> str:
    return json.dumps(
        {
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "timestamp": rec.timestamp,
            "key": _text(rec.key),
            "value": _text(rec.value),
            "headers": [[k, _text(v)] for k, v in rec.headers],
        },
        ensure_ascii=False,
    )


def _record_text(rec: Record, key_separator: str | None) -> str:
    value = _text(rec.value)
    text = "null" if value is None else value
    if key_separator is not None:
        key = _text(rec.key)
        text = ("null" if key is None else key) + key_separator + text
    return text


@contextlib.contextmanager
def _ctrl_c_after_block() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block is done, then raise it.

    Python raises KeyboardInterrupt between any two bytecodes; between printing a record and
    counting it, the summary line and the commit would disagree with what was shown.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; nothing to hold elsewhere
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _print_records(
    consumer: Consumer,
    printed: dict[TopicPartition, int],
    max_messages: int | None,
    timeout_ms: int | None,
    follow: bool,
    fmt: str,
    key_separator: str | None,
) -> tuple[int, bool]:
    """Poll and print until ``max_messages``, caught up, idle too long, or Ctrl-C.

    Returns (records printed, interrupted); ``printed`` keeps the next offset after the last
    record printed per partition, for the commit.
    """
    total = 0
    idle_ms = timeout_ms if timeout_ms is not None else (None if follow else DEFAULT_IDLE_MS)
    last_progress = time.monotonic()
    try:
        while max_messages is None or total < max_messages:
            want = 500 if max_messages is None else min(500, max_messages - total)
            recs = consumer.poll(timeout=_POLL_S, max_records=want)
            if recs:
                with _ctrl_c_after_block():  # what is printed is what is counted and committed
                    for rec in recs:
                        click.echo(_record_json(rec) if fmt == "json" else _record_text(rec, key_separator))
                        printed[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
                    total += len(recs)
                last_progress = time.monotonic()
                continue
            if timeout_ms is None and not follow and all(lag <= 0 for lag in consumer.lag().values()):
                break  # caught up
            if idle_ms is not None and (time.monotonic() - last_progress) * 1000 >= idle_ms:
                break
    except KeyboardInterrupt:
        return total, True
    return total, False


def _commit_printed(consumer: Consumer, printed: dict[TopicPartition, int]) -> None:
    """Commit what was printed, and the position of every assigned partition nothing came from."""
    positioned = consumer.lag()  # every partition with a position: assigned and initialised
    offsets = {tp: consumer.position(tp) for tp in consumer.assignment() if tp in positioned}
    offsets.update({tp: off for tp, off in printed.items() if tp in offsets})
    if offsets:
        consumer.commit(offsets)


@click.command("consume")
@click.argument("topic")
@click.option("--group", metavar="GROUP", help="Consume as a member of this group; commit at the end.")
@click.option("--from-beginning", is_flag=True, help="Start at the log start when there is no committed offset.")
@click.option("--max-messages", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option(
    "--timeout-ms",
    type=click.IntRange(min=0),
    metavar="MS",
    help="Stop after this long without a record (default: stop when caught up).",
)
@click.option("--follow", is_flag=True, help="Keep waiting for new records (until Ctrl-C or --timeout-ms).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the value per line; json: one object per record.",
)
@click.option("--key-separator", metavar="SEP", help="text format: print the key, SEP, then the value.")
@click.option(
    "--partition", type=click.IntRange(min=0), metavar="P", help="Read only this partition (no group rebalancing)."
)
@pass_state
@routed
def consume_command(
    state: CliState,
    topic: str,
    group: str | None,
    from_beginning: bool,
    max_messages: int | None,
    timeout_ms: int | None,
    follow: bool,
    fmt: str,
    key_separator: str | None,
    partition: int | None,
) -> None:
    """Print the records of TOPIC on stdout, like kafka-console-consumer."""
    root = existing_root(state)
    with Admin(root) as admin:
        count = partition_count(admin, topic)
    if partition is not None:
        check_partitions(topic, count, [partition])
    printed: dict[TopicPartition, int] = {}  # next offset after the last printed record

    def commit_revoked(tps: Any) -> None:
        done = {tp: printed[tp] for tp in tps if tp in printed}
        if done:
            consumer.commit(done)

    consumer = Consumer(
        root,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        on_revoke=commit_revoked if group is not None else None,
    )
    total = 0
    interrupted = False
    ok = False
    try:
        if partition is not None:
            consumer.assign([TopicPartition(topic, partition)])
        elif group is not None:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p) for p in range(count)])
        total, interrupted = _print_records(consumer, printed, max_messages, timeout_ms, follow, fmt, key_separator)
        if group is not None:
            _commit_printed(consumer, printed)
        ok = True
    finally:
        consumer.close(autocommit=False)
        if ok:
            click.echo(f"Processed a total of {total} messages", err=True)
    if interrupted:
        click.get_current_context().exit(EXIT_INTERRUPTED)


COMMANDS: list[click.Command] = [topics_group, produce_command, consume_command]
