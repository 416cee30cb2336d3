"""Rendering ``logq dump`` events: kafka-dump-log style text, or one JSON object per line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from logq.cli.dump_scan import Event

__all__ = ["format_text", "format_json"]

# Control characters (C0, DEL, C1) are escaped so that data cannot break the one-line-per-
# record layout or send escape sequences to a terminal; backslash is escaped to stay unambiguous.
_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\\"): "\\\\"})


def _printable(text: str | None) -> str:
    return "null" if text is None else text.translate(_ESCAPES)


def _v(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


_BATCH_FIELDS = (
    "baseOffset",
    "lastOffset",
    "count",
    "baseSequence",
    "lastSequence",
    "producerId",
    "producerEpoch",
    "partitionLeaderEpoch",
    "isTransactional",
    "isControl",
    "deleteHorizonMs",
    "position",
)
_BATCH_TAIL_FIELDS = ("size", "magic", "compresscodec", "crc", "isvalid")


def _format_batch(ev: Event) -> str:
    parts = [f"{k}: {_v(ev[k])}" for k in _BATCH_FIELDS]
    parts.append(f"{ev['timestampType']}: {ev['maxTimestamp']}")
    parts.extend(f"{k}: {_v(ev[k])}" for k in _BATCH_TAIL_FIELDS)
    return " ".join(parts)


def _format_record(ev: Event) -> str:
    keys = ",".join(_printable(k) for k in ev["headerKeys"])
    line = (
        f"| offset: {ev['offset']} {ev['timestampType']}: {ev['timestamp']} keySize: {ev['keySize']} "
        f"valueSize: {ev['valueSize']} sequence: {ev['sequence']} headerKeys: [{keys}]"
    )
    if "endTxnMarker" in ev:
        line += f" endTxnMarker: {ev['endTxnMarker']} coordinatorEpoch: {ev['coordinatorEpoch']}"
    elif "controlType" in ev:
        line += f" controlType: {ev['controlType']}"
    if "payload" in ev:
        line += f" key: {_printable(ev['key'])} payload: {_printable(ev['payload'])}"
    return line


_TEXT: dict[str, Callable[[Event], str]] = {
    "batch": _format_batch,
    "record": _format_record,
    "index_entry": lambda ev: f"offset: {ev['offset']} position: {ev['position']}",
    "time_index_entry": lambda ev: f"timestamp: {ev['timestamp']} offset: {ev['offset']}",
    "file": lambda ev: (
        f"Dumping {ev['path']}" + (f"\nLog starting offset: {ev['logStartOffset']}" if ev["kind"] == "log" else "")
    ),
    "invalid_bytes": lambda ev: (
        f"Found {ev['count']} invalid bytes at the end of {ev['file']} (from position {ev['position']}: {ev['reason']})"
    ),
    "problem": lambda ev: str(ev["message"]),
    "verify_summary": lambda ev: (
        f"Verified {ev['entries']} entries of {os.path.basename(ev['path'])} "
        f"against {os.path.basename(ev['log'])}: {ev['problems']} problems"
    ),
}


def format_text(ev: Event) -> str:
    """One event as kafka-dump-log style text (two lines for a .log file header)."""
    return _TEXT[ev["type"]](ev)


def format_json(ev: Event) -> str:
    """One event as one line of JSON (keys as in the text form, plus ``type``)."""
    return json.dumps(ev)
