"""``logq produce`` and ``logq consume``: kafka-console-producer and kafka-console-consumer.

Both take Kafka's ``--property KEY=VALUE`` settings (:data:`PRODUCE_PROPERTIES`,
:data:`CONSUME_PROPERTIES`); the text a consumer prints with them has Kafka's shape::

    CreateTime:1700000000000<TAB>Partition:0<TAB>Offset:4<TAB>h1:v1,h2:v2<TAB>key<TAB>value

(each part only when its ``print.*`` property is true; the separator is ``key.separator``;
no header prints as ``NO_HEADERS``, a null key, value or header value as ``null.literal``).
Errors become one ``logq: <message>`` line (:class:`logq.cli.options.LogqGroup`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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
    bad_parameter,
    check_partitions,
    existing_root,
    fail,
    parse_key_values,
    partition_count,
    pass_state,
    routed,
    warn,
)
from logq.client.admin import Admin
from logq.client.consumer import Consumer
from logq.client.producer import Producer, RecordFuture
from logq.codec.compression import CODECS
from logq.errors import DeserializationError
from logq.types import Record, TopicPartition

__all__ = ["COMMANDS", "PRODUCE_PROPERTIES", "CONSUME_PROPERTIES", "TextFormat"]

HARVEST_EVERY = 10_000  # produce: flush and collect offsets every this many records (bounds memory)
DEFAULT_IDLE_MS = 10_000  # consume without --timeout-ms/--follow: give up after this long without progress
_POLL_S = 0.2

PRODUCE_PROPERTIES = ("parse.key", "key.separator")
CONSUME_PROPERTIES = (
    "print.timestamp",
    "print.partition",
    "print.offset",
    "print.headers",
    "print.key",
    "print.value",
    "key.separator",
    "headers.separator",
    "null.literal",
)
_BOOLEANS = {"true": True, "false": False}

# ----------------------------------------------------------------------------- helpers


def _text(data: Any) -> str | None:
    """Bytes as UTF-8 text, invalid bytes as backslash escapes (\\xff); a deserialized value
    (``--value-deserializer json``) as compact JSON; None stays None."""
    if data is None:
        return None
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data).decode("utf-8", "backslashreplace")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _properties(items: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """``--property KEY=VALUE`` items: known keys only, each once."""
    out: dict[str, str] = {}
    for key, value in parse_key_values(items, "--property"):
        if key not in known:
            raise bad_parameter("--property", f"unknown property {key!r} (known here: {', '.join(known)})")
        if key in out:
            raise bad_parameter("--property", f"{key} is given twice")
        if key.startswith(("print.", "parse.")) and value.strip().lower() not in _BOOLEANS:
            raise bad_parameter("--property", f"{key}={value!r}: the value must be true or false")
        out[key] = value
    return out


def _flag(props: dict[str, str], key: str, default: bool) -> bool:
    return _BOOLEANS[props[key].strip().lower()] if key in props else default


def _one_separator(props: dict[str, str], key_separator: str | None, default: str) -> str:
    """``key.separator``, or ``--key-separator`` (the same setting; different values are refused)."""
    prop = props.get("key.separator")
    if prop is not None and key_separator is not None and prop != key_separator:
        raise click.UsageError(f"--key-separator {key_separator!r} and --property key.separator={prop!r} disagree")
    sep = prop if prop is not None else key_separator if key_separator is not None else default
    if sep == "":
        raise bad_parameter("--key-separator", "must not be empty")
    return sep


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


def _produce_lines(
    producer: Producer,
    topic: str,
    files: Sequence[str],
    sep: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    partition: int | None,
) -> _ProduceTally:
    """Send each line of ``files`` (split at the first ``sep`` into key and value when given)."""
    tally = _ProduceTally()
    futures: list[RecordFuture] = []
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
                        f"line {lineno} of {name} has no key separator {sep.decode('utf-8')!r}; "
                        f"{tally.count} record(s) before it were written"
                    )
                line = value
            futures.append(producer.send(topic, line, key=key, headers=headers, partition=partition))
            if len(futures) >= HARVEST_EVERY:
                tally.harvest(producer, futures)
    tally.harvest(producer, futures)
    return tally


@click.command("produce")
@click.argument("topic")
@click.argument("files", nargs=-1, metavar="[FILE]...", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--key-separator", metavar="SEP", help="Split each line at the first SEP into key and value.")
@click.option("--header", "headers", multiple=True, metavar="KEY=VALUE", help="A header on every record; repeatable.")
@click.option("--partition", type=click.IntRange(min=0), metavar="P", help="Write every record to this partition.")
@click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="kafka-console-producer's parse.key=true and key.separator=SEP (default TAB); repeatable.",
)
@click.option(
    "--compression-type",
    type=click.Choice(list(CODECS)),
    default=None,
    help="Compress the batches with this codec (default: the topic's compression_type).",
)
@pass_state
@routed
def produce_command(
    state: CliState,
    topic: str,
    files: tuple[str, ...],
    key_separator: str | None,
    headers: tuple[str, ...],
    partition: int | None,
    properties: tuple[str, ...],
    compression_type: str | None,
) -> None:
    """Append the lines of FILEs (or stdin) to TOPIC, one record per line, like kafka-console-producer."""
    root = existing_root(state)
    props = _properties(properties, PRODUCE_PROPERTIES)
    parse_key = _flag(props, "parse.key", key_separator is not None)
    if "key.separator" in props and not parse_key:
        raise click.UsageError("--property key.separator needs --property parse.key=true")
    sep = _one_separator(props, key_separator, "\t").encode("utf-8") if parse_key else None
    record_headers = [(k, v.encode("utf-8")) for k, v in parse_key_values(headers, "--header")] or None
    with Admin(root) as admin:
        count = partition_count(admin, topic)
    if partition is not None:
        check_partitions(topic, count, [partition])
    producer = Producer(root, compression_type=compression_type)
    try:
        tally = _produce_lines(producer, topic, files, sep, record_headers, partition)
    finally:
        producer.close()
    click.echo(tally.summary(topic), err=True)


# ----------------------------------------------------------------------------- consume


@dataclasses.dataclass(frozen=True)
class TextFormat:
    """How ``consume --format text`` prints a record: kafka-console-consumer's formatter."""

    print_timestamp: bool = False
    print_partition: bool = False
    print_offset: bool = False
    print_headers: bool = False
    print_key: bool = False
    print_value: bool = True
    key_separator: str = "\t"
    headers_separator: str = ","
    null_literal: str = "null"
    value_json: bool = False  # values came through the json deserializer: print them as JSON

    @classmethod
    def from_options(cls, props: dict[str, str], key_separator: str | None, value_json: bool = False) -> TextFormat:
        return cls(
            print_timestamp=_flag(props, "print.timestamp", False),
            print_partition=_flag(props, "print.partition", False),
            print_offset=_flag(props, "print.offset", False),
            print_headers=_flag(props, "print.headers", False),
            print_key=_flag(props, "print.key", key_separator is not None),
            print_value=_flag(props, "print.value", True),
            key_separator=_one_separator(props, key_separator, "\t"),
            headers_separator=props.get("headers.separator", ","),
            null_literal=props.get("null.literal", "null"),
            value_json=value_json,
        )

    def _or_null(self, data: Any) -> str:
        text = _text(data)
        return self.null_literal if text is None else text

    def line(self, rec: Record) -> str:
        parts = []
        if self.print_timestamp:
            parts.append(f"CreateTime:{rec.timestamp}")
        if self.print_partition:
            parts.append(f"Partition:{rec.partition}")
        if self.print_offset:
            parts.append(f"Offset:{rec.offset}")
        if self.print_headers:
            shown = self.headers_separator.join(f"{k}:{self._or_null(v)}" for k, v in rec.headers)
            parts.append(shown or "NO_HEADERS")
        if self.print_key:
            parts.append(self._or_null(rec.key))
        if self.print_value:
            value = rec.value
            if self.value_json and value is not None:
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            parts.append(self._or_null(value))
        return self.key_separator.join(parts)


def _record_json(rec: Record) -> str:
    value = rec.value if not isinstance(rec.value, (bytes, bytearray, memoryview)) else _text(rec.value)
    return json.dumps(
        {
            "topic": rec.topic,
            "partition": rec.partition,
            "offset": rec.offset,
            "timestamp": rec.timestamp,
            "key": _text(rec.key),
            "value": value,
            "headers": [[k, _text(v)] for k, v in rec.headers],
        },
        ensure_ascii=False,
    )


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


@dataclasses.dataclass
class _Run:
    """What ``consume`` does and has done: its limits, its format, what it printed and skipped."""

    max_messages: int | None
    timeout_ms: int | None
    follow: bool
    show: Any  # Record -> str
    skip_errors: bool
    printed: dict[TopicPartition, int] = dataclasses.field(default_factory=dict)  # next offset after the last
    total: int = 0
    skipped: int = 0


def _skip(consumer: Consumer, run: _Run, e: DeserializationError) -> None:
    """--skip-message-on-error: report the record a deserializer refused and move past it."""
    if e.topic is None or e.partition is None or e.offset is None:
        raise e
    tp = TopicPartition(e.topic, e.partition)
    warn(f"skipped {e.topic}-{e.partition} offset {e.offset}: {e.message}")
    consumer.seek(tp, e.offset + 1)
    run.printed[tp] = e.offset + 1  # consumed: a commit goes past it
    run.skipped += 1


def _caught_up(consumer: Consumer) -> bool:
    """Every assigned partition has a position at its log end. False before a group assigns
    anything (the first assignment of a group waits initial_rebalance_delay_ms)."""
    assigned = consumer.assignment()
    lags = consumer.lag()
    return bool(assigned) and assigned <= set(lags) and all(lag <= 0 for lag in lags.values())


def _print_records(consumer: Consumer, run: _Run) -> bool:
    """Poll and print until ``max_messages``, caught up, idle too long, or Ctrl-C (returns True)."""
    idle_ms = run.timeout_ms if run.timeout_ms is not None else (None if run.follow else DEFAULT_IDLE_MS)
    last_progress = time.monotonic()
    try:
        while run.max_messages is None or run.total < run.max_messages:
            want = 500 if run.max_messages is None else min(500, run.max_messages - run.total)
            try:
                recs = consumer.poll(timeout=_POLL_S, max_records=want)
            except DeserializationError as e:
                if not run.skip_errors:
                    fail(f"{e.message} (add --skip-message-on-error to skip such records)")
                _skip(consumer, run, e)
                last_progress = time.monotonic()
                continue
            if recs:
                with _ctrl_c_after_block():  # what is printed is what is counted and committed
                    for rec in recs:
                        click.echo(run.show(rec))
                        run.printed[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1
                    run.total += len(recs)
                last_progress = time.monotonic()
                continue
            if run.timeout_ms is None and not run.follow and _caught_up(consumer):
                break
            if idle_ms is not None and (time.monotonic() - last_progress) * 1000 >= idle_ms:
                break
    except KeyboardInterrupt:
        return True
    return False


def _commit_printed(consumer: Consumer, printed: dict[TopicPartition, int]) -> None:
    """Commit what was printed, and the position of every assigned partition nothing came from."""
    positioned = consumer.lag()  # every partition with a position: assigned and initialised
    offsets = {tp: consumer.position(tp) for tp in consumer.assignment() if tp in positioned}
    offsets.update({tp: off for tp, off in printed.items() if tp in offsets})
    if offsets:
        consumer.commit(offsets)


def _start_offset(ctx: click.Context, param: click.Parameter, value: str | None) -> str | int | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text in ("earliest", "latest"):
        return text
    if text.isascii() and text.isdigit():
        return int(text)
    raise click.BadParameter(f"{value!r} is not earliest, latest or an offset >= 0")


def _start(
    consumer: Consumer, topic: str, count: int, partition: int | None, offset: str | int | None, group: str | None
) -> None:
    """Assign ``partition`` (placed at ``offset``), subscribe as ``group``, or assign every partition."""
    if partition is None:
        if group is not None:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p) for p in range(count)])
        return
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    if offset == "earliest":
        consumer.seek_to_beginning(tp)
    elif offset == "latest":
        consumer.seek_to_end(tp)
    elif isinstance(offset, int):
        consumer.seek(tp, offset)


def _consume_format(
    properties: Sequence[str], key_separator: str | None, fmt: str, value_deserializer: str
) -> TextFormat | None:
    """The text format of the options, or None for ``--format json`` (which takes none of them)."""
    props = _properties(properties, CONSUME_PROPERTIES)
    if fmt == "json":
        if props or key_separator is not None:
            raise click.UsageError("--property and --key-separator shape --format text only")
        return None
    return TextFormat.from_options(props, key_separator, value_json=value_deserializer == "json")


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
@click.option(
    "--offset",
    callback=_start_offset,
    metavar="earliest|latest|N",
    help="With --partition: start there (overrides a committed offset).",
)
@click.option(
    "--property",
    "properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="text format: print.key, print.timestamp, print.headers, ... as kafka-console-consumer; repeatable.",
)
@click.option(
    "--value-deserializer",
    type=click.Choice(["bytes", "str", "json"]),
    default="bytes",
    show_default=True,
    help="bytes: shown as UTF-8 with \\x escapes; str: must be UTF-8; json: must be JSON.",
)
@click.option(
    "--skip-message-on-error",
    is_flag=True,
    help="Skip a record the value deserializer refuses (its offset goes to stderr) instead of stopping.",
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
    offset: str | int | None,
    properties: tuple[str, ...],
    value_deserializer: str,
    skip_message_on_error: bool,
) -> None:
    """Print the records of TOPIC on stdout, like kafka-console-consumer."""
    root = existing_root(state)
    text_format = _consume_format(properties, key_separator, fmt, value_deserializer)
    if offset is not None and partition is None:
        raise click.UsageError("--offset needs --partition (as in kafka-console-consumer)")
    if offset is not None and from_beginning:
        raise click.UsageError("give either --offset or --from-beginning, not both")
    with Admin(root) as admin:
        count = partition_count(admin, topic)
    if partition is not None:
        check_partitions(topic, count, [partition])
    show = text_format.line if text_format is not None else _record_json
    run = _Run(max_messages, timeout_ms, follow, show, skip_message_on_error)

    def commit_revoked(tps: Any) -> None:
        done = {tp: run.printed[tp] for tp in tps if tp in run.printed}
        if done:
            consumer.commit(done)

    consumer = Consumer(
        root,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        on_revoke=commit_revoked if group is not None else None,
        value_deserializer=value_deserializer,
    )
    interrupted = False
    ok = False
    try:
        _start(consumer, topic, count, partition, offset, group)
        interrupted = _print_records(consumer, run)
        if group is not None:
            _commit_printed(consumer, run.printed)
        ok = True
    finally:
        consumer.close(autocommit=False)
        if ok:
            skipped = f" (skipped {run.skipped} that could not be deserialized)" if run.skipped else ""
            click.echo(f"Processed a total of {run.total} messages{skipped}", err=True)
    if interrupted:
        click.get_current_context().exit(EXIT_INTERRUPTED)


COMMANDS: list[click.Command] = [produce_command, consume_command]
