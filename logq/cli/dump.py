"""``logq dump``: a kafka-dump-log style report of segment files, streamed.

The report is a stream of *events* (plain dicts with a ``"type"`` key) built from the files
alone, without opening a log: a damaged partition can always be inspected. Each event
renders as one text line in Kafka's naming style (:func:`format_text`) or as one JSON
object (:func:`format_json`). Event types::

    file              Dumping <path>            (+ "Log starting offset: <base>" for a .log)
    batch             baseOffset: 0 lastOffset: 1 count: 2 ... crc: 3456012763 isvalid: true
    record            | offset: 0 CreateTime: 1700000000000 keySize: -1 valueSize: 1 ...
    invalid_bytes     Found 40 invalid bytes at the end of 00000000000000000000.log (...)
    index_entry       offset: 1005 position: 4150
    time_index_entry  timestamp: 1700000000005 offset: 1005
    problem           Index mismatch in 00000000000000000000.index entry 3 (...): ...
    verify_summary    Verified 12 entries of <index> against <log>: 0 problems

Memory stays bounded however large the file: a ``.log`` is read with ``os.pread`` through
one window of ``read_chunk_bytes`` (grown only to hold a single batch whose bytes are all in the
file, itself capped by ``max_batch_bytes``), index files a chunk of whole entries at a time, and index checks walk
the log forward in step with the index instead of loading it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

from logq.cli.dump_format import format_json, format_text
from logq.cli.dump_index import OFFSET_INDEX, TIME_INDEX, dump_index
from logq.cli.dump_scan import (
    DEFAULT_MAX_BATCH_BYTES,
    READ_CHUNK_BYTES,
    SUFFIXES,
    DumpOptions,
    Event,
    ScannedBatch,
    Tail,
    problem,
    scan_log,
    segment_base_offset,
)
from logq.codec.batch import ATTR_DELETE_HORIZON, BatchHeader, BatchRecord, decode_records
from logq.errors import CorruptRecordError, DumpArgumentError
from logq.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX

__all__ = [
    "DumpOptions",
    "DumpArgumentError",
    "Event",
    "READ_CHUNK_BYTES",
    "DEFAULT_MAX_BATCH_BYTES",
    "resolve_targets",
    "segment_base_offset",
    "dump_events",
    "run_dump",
    "is_failure",
    "format_text",
    "format_json",
]

INT32_MAX = (1 << 31) - 1
NO_SEQUENCE = -1

_CONTROL_TYPES = {0: "ABORT", 1: "COMMIT"}
DEFAULT_OPTIONS = DumpOptions()


# ----------------------------------------------------------------------------- paths


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1]


def _segment_files(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise DumpArgumentError(f"cannot list {directory}: {e.strerror or e}") from None
    files = [n for n in names if _suffix(n) in SUFFIXES and os.path.isfile(os.path.join(directory, n))]
    files.sort(key=lambda n: (segment_base_offset(n), n.split(".", 1)[0], SUFFIXES.index(_suffix(n))))
    return [os.path.join(directory, n) for n in files]


def resolve_targets(paths: Sequence[str], data_dir: str | None = None) -> list[str]:
    """Expand partition directories and check every path before anything is dumped.

    A relative path that does not exist is also looked up under ``data_dir``, so
    ``logq dump orders-0`` finds ``<data>/orders-0``.
    """
    out: list[str] = []
    for given in paths:
        path = given
        if not os.path.exists(path) and data_dir and not os.path.isabs(path):
            under = os.path.join(data_dir, path)
            if os.path.exists(under):
                path = under
        if os.path.isdir(path):
            files = _segment_files(path)
            if not files:
                raise DumpArgumentError(f"{given}: no .log, .index or .timeindex files in this directory")
            out.extend(files)
        elif os.path.isfile(path):
            if _suffix(path) not in SUFFIXES:
                raise DumpArgumentError(
                    f"{given}: cannot dump this file; give a .log, .index or .timeindex file or a partition directory"
                )
            out.append(path)
        elif os.path.exists(path):
            raise DumpArgumentError(f"{given}: not a regular file or directory")
        else:
            raise DumpArgumentError(f"{given}: no such file or directory")
    return out


# ----------------------------------------------------------------------------- .log events


def _sequence(base_sequence: int, delta: int) -> int:
    """Kafka's sequence arithmetic: -1 stays -1, past INT32_MAX wraps to 0."""
    if base_sequence == NO_SEQUENCE:
        return NO_SEQUENCE
    if base_sequence > INT32_MAX - delta:
        return delta - (INT32_MAX - base_sequence) - 1
    return base_sequence + delta


def _batch_event(b: ScannedBatch) -> Event:
    h = b.header
    return {
        "type": "batch",
        "baseOffset": h.base_offset,
        "lastOffset": h.last_offset,
        "count": h.records_count,
        "baseSequence": h.base_sequence,
        "lastSequence": _sequence(h.base_sequence, h.last_offset_delta),
        "producerId": h.producer_id,
        "producerEpoch": h.producer_epoch,
        "partitionLeaderEpoch": h.partition_leader_epoch,
        "isTransactional": h.is_transactional,
        "isControl": h.is_control,
        "deleteHorizonMs": h.base_timestamp if h.attributes & ATTR_DELETE_HORIZON else -1,
        "position": b.position,
        "timestampType": h.timestamp_type,
        "maxTimestamp": h.max_timestamp,
        "size": h.size,
        "magic": h.magic,
        "compresscodec": h.compression.name.lower(),
        "crc": h.crc,
        "isvalid": b.crc_ok,
    }


def _text_of(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _record_event(h: BatchHeader, r: BatchRecord, print_data: bool) -> Event:
    ev: Event = {
        "type": "record",
        "offset": r.offset,
        "timestampType": h.timestamp_type,
        "timestamp": r.timestamp,
        "keySize": -1 if r.key is None else len(r.key),
        "valueSize": -1 if r.value is None else len(r.value),
        "sequence": _sequence(h.base_sequence, r.offset - h.base_offset),
        "headerKeys": [k for k, _ in r.headers],
    }
    if h.is_control and r.key is not None and len(r.key) >= 4:
        kind = int.from_bytes(r.key[2:4], "big", signed=True)
        if kind in _CONTROL_TYPES and r.value is not None and len(r.value) >= 6:
            ev["endTxnMarker"] = _CONTROL_TYPES[kind]
            ev["coordinatorEpoch"] = int.from_bytes(r.value[2:6], "big", signed=True)
        else:
            ev["controlType"] = kind
    if print_data:
        ev["key"] = _text_of(r.key)
        ev["payload"] = _text_of(r.value)
    return ev


def _dump_log(path: str, opts: DumpOptions) -> Iterator[Event]:
    yield {"type": "file", "path": path, "kind": "log", "logStartOffset": segment_base_offset(path)}
    deep = opts.deep or opts.print_data
    for item in scan_log(path, opts):
        if isinstance(item, Tail):
            name = os.path.basename(path)
            yield {
                "type": "invalid_bytes",
                "path": path,
                "file": name,
                "count": item.count,
                "position": item.position,
                "reason": item.reason,
            }
            return
        yield _batch_event(item)
        if not deep:
            continue
        h = item.header
        try:
            records = decode_records(item.buf, h, item.off)
        except CorruptRecordError as e:
            yield problem(
                "undecodable_batch",
                path,
                f"Cannot decode the records of the batch at position {item.position}: {e.reason}",
                position=item.position,
            )
            continue
        for r in records:
            yield _record_event(h, r, opts.print_data)


# ----------------------------------------------------------------------------- driver

_DUMPERS: dict[str, Callable[[str, DumpOptions], Iterator[Event]]] = {
    LOG_SUFFIX: _dump_log,
    INDEX_SUFFIX: lambda path, opts: dump_index(path, opts, OFFSET_INDEX),
    TIME_INDEX_SUFFIX: lambda path, opts: dump_index(path, opts, TIME_INDEX),
}


def dump_events(paths: Sequence[str], options: DumpOptions = DEFAULT_OPTIONS) -> Iterator[Event]:
    """The report for already resolved files (see :func:`resolve_targets`), in order."""
    for path in paths:
        yield from _DUMPERS[_suffix(path)](path, options)


def is_failure(ev: Event) -> bool:
    """True for events that mean corruption or an index mismatch (exit status 1)."""
    return ev["type"] in ("invalid_bytes", "problem") or (ev["type"] == "batch" and not ev["isvalid"])


def run_dump(
    paths: Sequence[str],
    options: DumpOptions,
    emit: Callable[[str], None],
    *,
    as_json: bool = False,
    data_dir: str | None = None,
) -> int:
    """Resolve ``paths``, pass each report line to ``emit``; return 1 if anything was
    damaged or mismatched, else 0. Raises DumpArgumentError before any output."""
    targets = resolve_targets(paths, data_dir)
    render = format_json if as_json else format_text
    failed = False
    for ev in dump_events(targets, options):
        failed = failed or is_failure(ev)
        emit(render(ev))
    return 1 if failed else 0
