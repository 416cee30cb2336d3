"""The admin, produce and consume commands of ``logq``, modelled on Kafka's tools.

=====================  ==============================================================
command                Kafka counterpart
=====================  ==============================================================
``logq topics ...``    kafka-topics (create, list, describe, delete), kafka-delete-records
``logq produce``       kafka-console-producer
``logq consume``       kafka-console-consumer
``logq groups ...``    kafka-consumer-groups --list / --describe
``logq offsets``       kafka-get-offsets
``logq seek``          kafka-consumer-groups --reset-offsets (planning: logq/_seek.py)
=====================  ==============================================================

Each command parses its options, calls the library (Admin, Producer, Consumer) and prints;
errors are turned into one ``logq: <message>`` line by :class:`logq._cli_options.LogqGroup`.
Warnings (clamped offsets, Python warnings and ``logq`` log warnings) go to stderr as
``logq: warning: <message>`` lines. :data:`COMMANDS` lists what ``logq.cli`` registers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import re
import sys
import time
import warnings
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import click

from . import _seek
from ._cli_options import EXIT_PROBLEMS, EXIT_USAGE, CliError, CliState, json_option, pass_state
from .admin import Admin
from .config import LogConfig
from .consumer import Consumer, Record, TopicPartition
from .errors import ConfigError, GroupNotEmptyError
from .group import group_dir, live_member_ids
from .log import PartitionLog
from .producer import Producer, RecordFuture
from .topics import MAX_PARTITIONS, partition_path, validate_topic

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])
TP = Tuple[str, int]

HARVEST_EVERY = 10_000  # produce: flush and collect offsets every this many records (bounds memory)
DEFAULT_IDLE_MS = 10_000  # consume without --timeout-ms/--follow: give up after this long without progress
_POLL_S = 0.2
_INT = re.compile(r"-?[0-9]+")
_EXIT_INTERRUPTED = 130


# ----------------------------------------------------------------------------- helpers


def _warn(message: str) -> None:
    click.echo(f"logq: warning: {message}", err=True)


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _warn(record.getMessage())
        except Exception:  # never let a log line break the command
            self.handleError(record)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Python warnings and ``logq`` log warnings become ``logq: warning: ...`` lines."""
    logger = logging.getLogger("logq")
    handler = _EchoHandler(logging.WARNING)
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
                _warn(str(message))

            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def _routed(f: F) -> F:
    """Run a command body with :func:`_warnings_to_stderr`."""

    @functools.wraps(f)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with _warnings_to_stderr():
            return f(*args, **kwargs)

    return inner  # type: ignore[return-value]


def _existing_root(state: CliState) -> str:
    """The data directory, which must exist (only `topics create` makes one)."""
    if not os.path.isdir(state.data_dir):
        raise CliError(
            f"data directory {state.data_dir!r} does not exist (create a topic first with 'logq topics create', "
            "or pass --data DIR)"
        )
    return state.data_dir


def _partition_count(admin: Admin, topic: str) -> int:
    return admin.registry.get(topic).partitions  # UnknownTopicError: one line, exit 1


def _check_partitions(topic: str, count: int, partitions: Sequence[int]) -> None:
    for p in partitions:
        if not 0 <= p < count:
            raise CliError(f"topic {topic!r} has no partition {p} (it has {count}: 0-{count - 1})", EXIT_USAGE)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> List[str]:
    """Left-aligned columns separated by one space; None shows as '-'; no trailing blanks."""
    cells = [list(header)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return [" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def _text(data: Union[bytes, bytearray, str, None]) -> Optional[str]:
    """Bytes as UTF-8 text, invalid bytes as backslash escapes (\\xff); None stays None."""
    if data is None:
        return None
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "backslashreplace")


def _bad(param: str, message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint=f"'{param}'")


def _parse_key_values(items: Sequence[str], param: str) -> List[Tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _bad(param, f"{item!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def _parse_config(items: Sequence[str]) -> Dict[str, Any]:
    """``--config key=value`` -> LogConfig overrides (Kafka's dotted names accepted too)."""
    defaults = {f.name: f.default for f in dataclasses.fields(LogConfig)}
    out: Dict[str, Any] = {}
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


# ----------------------------------------------------------------------------- topics


@click.group("topics")
def topics_group() -> None:
    """Create, list, describe and delete topics, like kafka-topics."""


@topics_group.command("create")
@click.argument("name")
@click.option(
    "--partitions", type=click.IntRange(1, MAX_PARTITIONS), default=1, show_default=True, metavar="N",
    help="Number of partitions.",
)  # fmt: skip
@click.option(
    "--config", "configs", multiple=True, metavar="KEY=VALUE",
    help="A LogConfig setting (retention_ms=-1, segment_bytes=..., Kafka's retention.ms too); repeatable.",
)  # fmt: skip
@pass_state
@_routed
def topics_create(state: CliState, name: str, partitions: int, configs: Tuple[str, ...]) -> None:
    """Create topic NAME (and the data directory if needed)."""
    validate_topic(name)
    overrides = _parse_config(configs)
    with Admin(state.data_dir) as admin:
        admin.create_topic(name, partitions, **overrides)
    click.echo(f"Created topic {name} with {partitions} partition(s).")


@topics_group.command("list")
@pass_state
@_routed
def topics_list(state: CliState) -> None:
    """Print the topic names, one a line."""
    with Admin(_existing_root(state)) as admin:
        for name in admin.list_topics():
            click.echo(name)


@topics_group.command("describe")
@click.argument("name", required=False)
@json_option
@pass_state
@_routed
def topics_describe(state: CliState, name: Optional[str], as_json: bool) -> None:
    """Per partition: start offset, end offset, size and segments; the config overrides."""
    with Admin(_existing_root(state)) as admin:
        names = [name] if name is not None else admin.list_topics()
        for topic in names:
            desc = admin.describe_topic(topic)
            overrides = dict(admin.registry.get(topic).overrides)
            if as_json:
                click.echo(json.dumps({
                    "topic": desc.name,
                    "partitionCount": len(desc.partitions),
                    "records": desc.records,
                    "size": desc.size_bytes,
                    "configs": overrides,
                    "effectiveConfig": desc.config,
                    "partitions": [
                        {"partition": p.partition, "startOffset": p.log_start_offset, "endOffset": p.log_end_offset,
                         "size": p.size_bytes, "segments": p.segments}
                        for p in desc.partitions
                    ],
                }))  # fmt: skip
                continue
            configs = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            click.echo(
                f"Topic: {desc.name}\tPartitionCount: {len(desc.partitions)}\tRecords: {desc.records}\t"
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
@_routed
def topics_delete(state: CliState, name: str) -> None:
    """Delete topic NAME and all its data."""
    with Admin(_existing_root(state)) as admin:
        admin.delete_topic(name)
    click.echo(f"Deleted topic {name}.")


@topics_group.command("delete-records")
@click.argument("name")
@click.option("--partition", type=click.IntRange(min=0), required=True, metavar="P", help="The partition to purge.")
@click.option(
    "--offset", type=click.IntRange(min=0), required=True, metavar="O",
    help="Delete the records before this offset (it becomes the log start offset).",
)  # fmt: skip
@pass_state
@_routed
def topics_delete_records(state: CliState, name: str, partition: int, offset: int) -> None:
    """Purge the records of one partition below an offset, like kafka-delete-records."""
    with Admin(_existing_root(state)) as admin:
        _check_partitions(name, _partition_count(admin, name), [partition])
        start = admin.delete_records(name, {partition: offset})[partition]
    click.echo(f"Deleted the records of {name}-{partition} before offset {offset}: low_watermark: {start}")


# ----------------------------------------------------------------------------- produce


def _sources(files: Sequence[str]) -> Iterator[Tuple[str, IO[bytes]]]:
    if not files:
        files = ("-",)
    for path in files:
        if path == "-":
            yield "<stdin>", getattr(sys.stdin, "buffer", sys.stdin)
        else:
            with open(path, "rb") as f:
                yield path, f


class _ProduceTally:
    """Offsets written so far, per partition: first and last."""

    def __init__(self) -> None:
        self.count = 0
        self.ranges: Dict[int, List[int]] = {}

    def harvest(self, producer: Producer, futures: List[RecordFuture]) -> None:
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
@click.argument(
    "files", nargs=-1, metavar="[FILE]...", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option("--key-separator", metavar="SEP", help="Split each line at the first SEP into key and value.")
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE", help="A header on every record; repeatable.")
@click.option("--partition", type=click.IntRange(min=0), metavar="P", help="Write every record to this partition.")
@pass_state
@_routed
def produce_command(
    state: CliState,
    topic: str,
    files: Tuple[str, ...],
    key_separator: Optional[str],
    headers: Tuple[str, ...],
    partition: Optional[int],
) -> None:
    """Append the lines of FILEs (or stdin) to TOPIC, one record per line, like kafka-console-producer."""
    root = _existing_root(state)
    if key_separator == "":
        raise _bad("--key-separator", "must not be empty")
    sep = key_separator.encode("utf-8") if key_separator is not None else None
    record_headers = [(k, v.encode("utf-8")) for k, v in _parse_key_values(headers, "--header")] or None
    with Admin(root) as admin:
        count = _partition_count(admin, topic)
    if partition is not None:
        _check_partitions(topic, count, [partition])
    tally = _ProduceTally()
    futures: List[RecordFuture] = []
    producer = Producer(root)
    try:
        for name, stream in _sources(files):
            for lineno, line in enumerate(stream, 1):
                if line.endswith(b"\n"):
                    line = line[:-1]
                    if line.endswith(b"\r"):
                        line = line[:-1]
                key: Optional[bytes] = None
                if sep is not None:
                    key, found, value = line.partition(sep)
                    if not found:
                        tally.harvest(producer, futures)
                        raise CliError(
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


def _record_text(rec: Record, key_separator: Optional[str]) -> str:
    value = _text(rec.value)
    text = "null" if value is None else value
    if key_separator is not None:
        key = _text(rec.key)
        text = ("null" if key is None else key) + key_separator + text
    return text


@click.command("consume")
@click.argument("topic")
@click.option("--group", metavar="GROUP", help="Consume as a member of this group; commit at the end.")
@click.option("--from-beginning", is_flag=True, help="Start at the log start when there is no committed offset.")
@click.option("--max-messages", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option(
    "--timeout-ms", type=click.IntRange(min=0), metavar="MS",
    help="Stop after this long without a record (default: stop when caught up).",
)  # fmt: skip
@click.option("--follow", is_flag=True, help="Keep waiting for new records (until Ctrl-C or --timeout-ms).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text: the value per line; json: one object per record.",
)  # fmt: skip
@click.option("--key-separator", metavar="SEP", help="text format: print the key, SEP, then the value.")
@click.option("--partition", type=click.IntRange(min=0), metavar="P", help="Read only this partition (no group rebalancing).")
@pass_state
@_routed
def consume_command(
    state: CliState,
    topic: str,
    group: Optional[str],
    from_beginning: bool,
    max_messages: Optional[int],
    timeout_ms: Optional[int],
    follow: bool,
    fmt: str,
    key_separator: Optional[str],
    partition: Optional[int],
) -> None:
    """Print the records of TOPIC on stdout, like kafka-console-consumer."""
    root = _existing_root(state)
    with Admin(root) as admin:
        count = _partition_count(admin, topic)
    if partition is not None:
        _check_partitions(topic, count, [partition])
    printed: Dict[TopicPartition, int] = {}  # next offset after the last printed record

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
        idle_ms = timeout_ms if timeout_ms is not None else (None if follow else DEFAULT_IDLE_MS)
        last_progress = time.monotonic()
        try:
            while max_messages is None or total < max_messages:
                want = 500 if max_messages is None else min(500, max_messages - total)
                recs = consumer.poll(timeout=_POLL_S, max_records=want)
                if recs:
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
            interrupted = True
        if group is not None:
            positioned = consumer.lag()  # every partition with a position: assigned and initialised
            offsets = {tp: consumer.position(tp) for tp in consumer.assignment() if tp in positioned}
            offsets.update({tp: off for tp, off in printed.items() if tp in offsets})
            if offsets:
                consumer.commit(offsets)
        ok = True
    finally:
        consumer.close(autocommit=False)
        if ok:
            click.echo(f"Processed a total of {total} messages", err=True)
    if interrupted:
        click.get_current_context().exit(_EXIT_INTERRUPTED)


# ----------------------------------------------------------------------------- groups


@click.group("groups")
def groups_group() -> None:
    """List and describe consumer groups, like kafka-consumer-groups."""


@groups_group.command("list")
@pass_state
@_routed
def groups_list(state: CliState) -> None:
    """Print the group names, one a line."""
    with Admin(_existing_root(state)) as admin:
        for name in admin.list_groups():
            click.echo(name)


GROUP_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID")


@groups_group.command("describe")
@click.argument("group")
@json_option
@pass_state
@_routed
def groups_describe(state: CliState, group: str, as_json: bool) -> None:
    """Committed offset, log end offset, lag and owner of each partition of GROUP."""
    with Admin(_existing_root(state)) as admin:
        info = admin.describe_group(group)
    if info.state == "Dead":
        raise CliError(f"consumer group {group!r} does not exist")
    for problem in info.problems:
        _warn(problem)
    if not info.members:
        _warn(f"consumer group {group!r} has no active members")
    if as_json:
        for r in info.partitions:
            click.echo(json.dumps({
                "group": group, "topic": r.topic, "partition": r.partition, "currentOffset": r.committed,
                "logEndOffset": r.log_end_offset, "lag": r.lag, "consumerId": r.consumer_id,
            }))  # fmt: skip
        return
    rows = [
        (group, r.topic, r.partition, r.committed, r.log_end_offset, r.lag, r.consumer_id) for r in info.partitions
    ]
    for line in _table(GROUP_COLUMNS, rows):
        click.echo(line)


# ----------------------------------------------------------------------------- offsets

TimeSpec = Union[str, int]  # "earliest", "latest" or epoch milliseconds


def _parse_time(ctx: click.Context, param: click.Parameter, value: str) -> TimeSpec:
    text = value.strip()
    low = text.lower()
    if low in ("earliest", "-2"):
        return "earliest"
    if low in ("latest", "-1"):
        return "latest"
    if re.fullmatch(r"[0-9]{1,18}", text):
        return int(text)
    try:
        return _seek.parse_datetime_ms(text)
    except _seek.SeekError as e:
        raise click.BadParameter(
            f"{e.message}; expected earliest, latest, milliseconds since the epoch or an ISO datetime"
        ) from None


def _parse_partitions(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[Tuple[int, ...]]:
    if value is None:
        return None
    try:
        return _seek.parse_partition_list(value, value)
    except _seek.SeekError as e:
        raise click.BadParameter(e.message) from None


@click.command("offsets")
@click.argument("topic")
@click.option(
    "--time", "when", default="latest", show_default=True, callback=_parse_time, metavar="TIME",
    help="earliest (-2), latest (-1), epoch milliseconds, or an ISO datetime (UTC when no zone).",
)  # fmt: skip
@click.option("--partitions", callback=_parse_partitions, metavar="P,P,...", help="Only these partitions.")
@pass_state
@_routed
def offsets_command(state: CliState, topic: str, when: TimeSpec, partitions: Optional[Tuple[int, ...]]) -> None:
    """Print topic:partition:offset per partition for a time, like kafka-get-offsets."""
    with Admin(_existing_root(state)) as admin:
        count = _partition_count(admin, topic)
        parts = sorted(partitions) if partitions is not None else list(range(count))
        _check_partitions(topic, count, parts)
        for p in parts:
            if when == "earliest":
                found: Optional[int] = admin.log_offsets(topic, p)[0]
            elif when == "latest":
                found = admin.log_offsets(topic, p)[1]
            else:
                assert isinstance(when, int)
                found = admin.offset_for_time(topic, p, when)
            click.echo(f"{topic}:{p}:{'' if found is None else found}")


# ----------------------------------------------------------------------------- seek


def _scenario_value(parse: Callable[[str], int]) -> Callable[[click.Context, click.Parameter, Optional[str]], Optional[int]]:
    def callback(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[int]:
        if value is None:
            return None
        try:
            return parse(value)
        except _seek.SeekError as e:
            raise click.BadParameter(e.message) from None

    return callback


def _topic_specs(ctx: click.Context, param: click.Parameter, value: Tuple[str, ...]) -> List[_seek.TopicSpec]:
    try:
        return [_seek.parse_topic_spec(v) for v in value]
    except _seek.SeekError as e:
        raise click.BadParameter(e.message) from None


SEEK_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")


@click.command("seek")
@click.option("--group", required=True, metavar="GROUP", help="The group whose committed offsets to reset.")
@click.option(
    "--topic", "topics", multiple=True, callback=_topic_specs, metavar="TOPIC[:P,P,...]",
    help="A topic, or some of its partitions; repeatable.",
)  # fmt: skip
@click.option("--all-topics", is_flag=True, help="Every partition the group has committed offsets for.")
@click.option("--to-earliest", is_flag=True, help="Reset to the log start offset.")
@click.option("--to-latest", is_flag=True, help="Reset to the log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="Reset to offset N (clamped to the log).")
@click.option("--shift-by", type=int, metavar="N", help="Committed offset + N (N may be negative; clamped).")
@click.option(
    "--to-datetime", callback=_scenario_value(_seek.parse_datetime_ms), metavar="DATETIME",
    help="First offset at or after YYYY-MM-DDTHH:mm:SS[.sss][zone] (UTC when no zone).",
)  # fmt: skip
@click.option(
    "--by-duration", callback=_scenario_value(_seek.parse_duration_ns), metavar="DURATION",
    help="First offset at or after now - DURATION (ISO-8601 PnDTnHnMnS).",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only print the plan (the default).")
@click.option("--execute", is_flag=True, help="Apply the plan.")
@pass_state
@_routed
def seek_command(
    state: CliState,
    group: str,
    topics: List[_seek.TopicSpec],
    all_topics: bool,
    to_earliest: bool,
    to_latest: bool,
    to_offset: Optional[int],
    shift_by: Optional[int],
    to_datetime: Optional[int],
    by_duration: Optional[int],
    dry_run: bool,
    execute: bool,
) -> None:
    """Reset the committed offsets of a group, like kafka-consumer-groups --reset-offsets."""
    chosen = [
        (flag, scenario)
        for flag, scenario in (
            ("--to-earliest", _seek.Scenario(_seek.TO_EARLIEST) if to_earliest else None),
            ("--to-latest", _seek.Scenario(_seek.TO_LATEST) if to_latest else None),
            ("--to-offset", None if to_offset is None else _seek.Scenario(_seek.TO_OFFSET, to_offset)),
            ("--shift-by", None if shift_by is None else _seek.Scenario(_seek.SHIFT_BY, shift_by)),
            ("--to-datetime", None if to_datetime is None else _seek.Scenario(_seek.TO_DATETIME, to_datetime)),
            ("--by-duration", None if by_duration is None else _seek.Scenario(_seek.BY_DURATION, by_duration)),
        )
        if scenario is not None
    ]
    all_flags = "--to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, --by-duration"
    if not chosen:
        raise click.UsageError(f"one of {all_flags} is required")
    if len(chosen) > 1:
        raise click.UsageError(f"give only one of {all_flags} (got {', '.join(f for f, _ in chosen)})")
    if dry_run and execute:
        raise click.UsageError("give either --dry-run or --execute, not both")
    if all_topics and topics:
        raise click.UsageError("give either --topic or --all-topics, not both")
    if not all_topics and not topics:
        raise click.UsageError("one of --topic or --all-topics is required")
    scenario = chosen[0][1]
    assert scenario is not None
    now_ns = time.time_ns()

    with Admin(_existing_root(state)) as admin:
        live = live_member_ids(group_dir(admin.root, group))
        if live:
            raise GroupNotEmptyError(group, len(live))
        committed = admin.committed_offsets(group)
        partitions_of = {t: _partition_count(admin, t) for t in admin.list_topics()}
        try:
            scope, notes = _seek.resolve_scope(topics, all_topics, partitions_of, committed)
        except _seek.SeekError as e:
            raise CliError(e.message, EXIT_USAGE) from None
        log_offsets = {tp: admin.log_offsets(*tp) for tp in scope}

        def lookup(tp: TP, ms: int) -> Optional[int]:
            return admin.offset_for_time(tp[0], tp[1], ms)

        try:
            plan = _seek.plan_reset(group, scenario, scope, log_offsets, committed, lookup, now_ns)
        except _seek.SeekError as e:
            raise CliError(e.message, EXIT_PROBLEMS) from None
        for note in notes + plan.warnings:
            _warn(note)
        if not plan.rows:
            _warn(f"nothing to reset: no partition is in scope for group {group!r}")
        for line in _table(SEEK_COLUMNS, [tuple(r) for r in plan.rows]):
            click.echo(line)
        if execute:
            if plan.rows:
                admin.reset_offsets(group, plan.offsets())
            click.echo(f"Reset the offsets of {len(plan.rows)} partition(s) of group {group}.", err=True)
        else:
            click.echo("Dry run: nothing was changed (add --execute to apply this plan).", err=True)


# ----------------------------------------------------------------------------- repair


@click.command("repair")
@click.argument("topic")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True, metavar="P",
              help="Repair only this partition; repeatable (default: all).")
@click.option("--execute", is_flag=True, help="Cut the damaged data; without it, only report.")
@pass_state
@_routed
def repair_command(state: CliState, topic: str, partitions: Tuple[int, ...], execute: bool) -> None:
    """Open each partition, report what recovery found, and with --execute cut damage.

    Damage below the recovery point (bytes that were durable once) is never cut silently:
    reads stop there with an error until this command runs with --execute, which cuts the
    partition at the first bad batch and deletes what follows it.
    """
    root = _existing_root(state)
    with Admin(root) as admin:
        count = _partition_count(admin, topic)
        _check_partitions(topic, count, partitions)
        cfg = admin.topic_config(topic)
    damaged = 0
    for p in partitions or range(count):
        with PartitionLog(partition_path(root, topic, p), cfg, create=False) as lg:
            found = lg.report.corruption
        if found is None:
            click.echo(f"{topic}-{p}: ok")
            continue
        damaged += 1
        if not execute:
            click.echo(f"{topic}-{p}: damaged: {found}")
            continue
        with PartitionLog(partition_path(root, topic, p), cfg, create=False, repair=True) as lg:
            r = lg.report
            click.echo(f"{topic}-{p}: repaired: cut {r.bytes_truncated} bytes, deleted {r.segments_deleted} segment(s); log end offset {lg.log_end_offset}")
    if damaged and not execute:
        click.echo(f"{damaged} damaged partition(s); run again with --execute to cut the damage.", err=True)
        click.get_current_context().exit(1)


COMMANDS: List[click.Command] = [
    topics_group,
    produce_command,
    consume_command,
    groups_group,
    offsets_command,
    seek_command,
    repair_command,
]
