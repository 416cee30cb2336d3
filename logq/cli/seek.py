"""The planning half of ``logq seek`` (kafka-consumer-groups --reset-offsets), without I/O.

:func:`plan_reset` takes a scenario, the partitions in scope, their log offsets, the group's
committed offsets and a timestamp lookup, and returns the new committed offset of every
partition plus the warnings to show. The parsers of the option values live here too:
:func:`parse_topic_spec` (``t`` or ``t:0,2``), :func:`parse_datetime_ms` (``--to-datetime``,
also ``logq offsets --time``) and :func:`parse_duration_ns` (``--by-duration``). They raise
:class:`SeekError` (a ValueError) with a one-line message for malformed input.

Rules (those of Kafka's ConsumerGroupCommand):

- ``to-earliest``: the log start offset; ``to-latest``: the log end offset.
- ``to-offset N``: N; ``shift-by N``: committed + N, an error for a partition with nothing
  committed.
- ``to-datetime T`` / ``by-duration D`` (T = now - D): the first offset whose record
  timestamp is >= T; a partition with no such record goes to its log end, with a warning.
- Every new offset is clamped into [log start, log end], with a warning when it moves.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from logq.errors import SeekError, UnknownTopicError

__all__ = [
    "TP",
    "SCENARIOS",
    "SeekError",
    "Scenario",
    "PlanRow",
    "Plan",
    "TopicSpec",
    "parse_topic_spec",
    "resolve_scope",
    "parse_datetime_ms",
    "parse_duration_ns",
    "format_ms",
    "plan_reset",
]

TP = tuple[str, int]
OffsetLookup = Callable[[TP, int], int | None]

TO_EARLIEST = "to-earliest"
TO_LATEST = "to-latest"
TO_OFFSET = "to-offset"
SHIFT_BY = "shift-by"
TO_DATETIME = "to-datetime"
BY_DURATION = "by-duration"
SCENARIOS = (TO_EARLIEST, TO_LATEST, TO_OFFSET, SHIFT_BY, TO_DATETIME, BY_DURATION)

_NS_PER_MS = 1_000_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_MAX_DIGITS = 18  # per number in a duration or partition list: bounds the arithmetic


class Scenario(NamedTuple):
    """What to reset to. ``value``: the offset (to-offset), the shift (shift-by), the epoch
    milliseconds (to-datetime) or the duration in nanoseconds (by-duration); unused else."""

    kind: str
    value: int = 0
    text: str = ""  # the option value as written, for messages


class PlanRow(NamedTuple):
    group: str
    topic: str
    partition: int
    new_offset: int


class Plan(NamedTuple):
    rows: list[PlanRow]
    warnings: list[str]

    def offsets(self) -> dict[TP, int]:
        return {(r.topic, r.partition): r.new_offset for r in self.rows}


class TopicSpec(NamedTuple):
    topic: str
    partitions: tuple[int, ...] | None  # None: every partition of the topic


# ----------------------------------------------------------------------------- scope


def parse_topic_spec(text: str) -> TopicSpec:
    """``orders`` (all partitions) or ``orders:0,2`` (those partitions)."""
    topic, sep, plist = text.partition(":")
    if not topic:
        raise SeekError(f"{text!r} has no topic name (expected TOPIC or TOPIC:P,P,...)")
    if not sep:
        return TopicSpec(topic, None)
    return TopicSpec(topic, parse_partition_list(plist, text))


def parse_partition_list(text: str, within: str | None = None) -> tuple[int, ...]:
    """``0,2,5`` -> (0, 2, 5): non-negative integers, no empty items, duplicates dropped.

    ``within``: the whole option value, named in the error message when it is not ``text``.
    """
    out: list[int] = []
    for item in text.split(","):
        item = item.strip()
        if not item.isascii() or not item.isdigit() or len(item) > _MAX_DIGITS:
            where = f" in {within!r}" if within is not None else ""
            raise SeekError(f"{item!r}{where} is not a partition number (expected P,P,... with P >= 0)")
        p = int(item)
        if p not in out:
            out.append(p)
    return tuple(out)


def resolve_scope(
    specs: Sequence[TopicSpec],
    all_topics: bool,
    partitions_of: Mapping[str, int],
    committed: Mapping[TP, int],
) -> tuple[list[TP], list[str]]:
    """The partitions in scope, sorted, and warnings.

    ``partitions_of``: partition count of every existing topic. ``--all-topics`` means the
    partitions the group has committed offsets for (those of deleted topics are skipped with
    a warning); a ``--topic`` naming a missing topic or partition is an error.
    """
    if all_topics and specs:
        raise SeekError("give either --topic or --all-topics, not both")
    if not all_topics and not specs:
        raise SeekError("one of --topic or --all-topics is required")
    warnings: list[str] = []
    scope: set = set()
    if all_topics:
        gone = sorted({t for t, p in committed if t not in partitions_of or p >= partitions_of[t]})
        for t in gone:
            warnings.append(f"the group has committed offsets for {t!r}, which no longer exists; skipped")
        scope = {(t, p) for t, p in committed if t in partitions_of and p < partitions_of[t]}
    for spec in specs:
        count = partitions_of.get(spec.topic)
        if count is None:
            raise UnknownTopicError(spec.topic)
        parts = range(count) if spec.partitions is None else spec.partitions
        for p in parts:
            if not 0 <= p < count:
                raise SeekError(f"topic {spec.topic!r} has no partition {p} (it has {count}: 0-{count - 1})")
            scope.add((spec.topic, p))
    return sorted(scope), warnings


# ----------------------------------------------------------------------------- time values

_DATETIME = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?"
    r"(?P<zone>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)

_DURATION = re.compile(
    r"P(?:(?P<d>[0-9]+)D)?"
    r"(?P<t>T(?:(?P<h>[0-9]+)H)?(?:(?P<m>[0-9]+)M)?(?:(?P<s>[0-9]+)(?:[.,](?P<frac>[0-9]{1,9}))?S)?)?",
    re.IGNORECASE,
)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def parse_datetime_ms(text: str) -> int:
    """``YYYY-MM-DDTHH:mm:SS[.fraction][zone]`` -> epoch milliseconds, exactly.

    The zone is ``Z``, ``+HH``, ``+HHMM`` or ``+HH:MM`` (or ``-``); without one the time is
    UTC, as in Kafka. A fraction finer than a millisecond rounds up (the result is the first
    millisecond at or after the instant).
    """
    m = _DATETIME.fullmatch(text)
    if m is None:
        raise SeekError(
            f"{text!r} is not a datetime of the form YYYY-MM-DDTHH:mm:SS[.sss] with an optional zone (Z, +HH:MM)"
        )
    zone = m.group("zone")
    if zone is None or zone in "Zz":
        tz = _dt.UTC
    else:
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            raise SeekError(f"{text!r}: zone offset {zone} is out of range (at most +23:59)")
        delta = _dt.timedelta(hours=hours, minutes=minutes)
        tz = _dt.timezone(-delta if zone[0] == "-" else delta)
    try:
        when = _dt.datetime(
            int(m.group("y")), int(m.group("mo")), int(m.group("d")),
            int(m.group("h")), int(m.group("mi")), int(m.group("s")), tzinfo=tz,
        )  # fmt: skip
    except ValueError as e:
        raise SeekError(f"{text!r} is not a valid datetime: {e}") from None
    delta = when - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000
    frac = m.group("frac")
    if frac:
        ns += int(frac.ljust(9, "0"))
    return _ceil_div(ns, _NS_PER_MS)


def parse_duration_ns(text: str) -> int:
    """An ISO-8601 duration ``PnDTnHnMnS`` (Java's Duration form) -> nanoseconds.

    Days, hours, minutes and seconds (with up to 9 fraction digits, ``.`` or ``,``), each
    optional but at least one present, in that order; ``T`` precedes the time part and must
    be followed by one. Letters may be lower case. Signs, years, months and weeks are refused.
    """
    m = _DURATION.fullmatch(text)
    if m is None:
        why = "expected PnDTnHnMnS, e.g. P1D, PT1H30M, P2DT3H4M5.5S"
        if text[:1] in "+-" or "-" in text:
            why = "a duration must not be negative or signed; " + why
        elif re.search(r"[YyWw]|P[0-9]+M", text):
            why = "years, months and weeks are not supported (use days); " + why
        raise SeekError(f"{text!r} is not an ISO-8601 duration: {why}")
    d, h, mi, s, frac = (m.group(k) for k in ("d", "h", "m", "s", "frac"))
    if m.group("t") is not None and h is None and mi is None and s is None:
        raise SeekError(f"{text!r} is not an ISO-8601 duration: 'T' must be followed by hours, minutes or seconds")
    if d is None and h is None and mi is None and s is None:
        raise SeekError(f"{text!r} is not an ISO-8601 duration: it has no days, hours, minutes or seconds")
    for part in (d, h, mi, s):
        if part is not None and len(part.lstrip("0")) > _MAX_DIGITS:
            raise SeekError(f"{text!r} is not a usable duration: {part} is too large")
    seconds = int(d or 0) * 86_400 + int(h or 0) * 3_600 + int(mi or 0) * 60 + int(s or 0)
    return seconds * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:mm:SS.sssZ`` (or ``<ms> ms`` out of range)."""
    try:
        when = _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms"
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def duration_target_ms(duration_ns: int, now_ns: int) -> int:
    """now - duration, in epoch milliseconds, rounded up (the first whole millisecond at or after it)."""
    return _ceil_div(now_ns - duration_ns, _NS_PER_MS)


# ----------------------------------------------------------------------------- planning


def plan_reset(
    group: str,
    scenario: Scenario,
    scope: Iterable[TP],
    log_offsets: Mapping[TP, tuple[int, int]],
    committed: Mapping[TP, int],
    offset_for_time: OffsetLookup | None = None,
    now_ns: int | None = None,
) -> Plan:
    """The new committed offset of every partition in ``scope`` (sorted), and warnings.

    ``log_offsets[tp]`` is (log start, log end); ``offset_for_time(tp, ms)`` the first offset
    whose timestamp >= ms, or None (needed by to-datetime / by-duration); ``now_ns`` the
    current time in epoch nanoseconds (needed by by-duration).
    """
    kind = scenario.kind
    if kind not in SCENARIOS:
        raise SeekError(f"unknown scenario {kind!r} (one of {', '.join(SCENARIOS)})")
    tps = sorted(set(scope))
    target_ms: int | None = None
    if kind in (TO_DATETIME, BY_DURATION):
        if offset_for_time is None:
            raise SeekError(f"{kind} needs a timestamp lookup")
        if kind == TO_DATETIME:
            target_ms = scenario.value
        else:
            if now_ns is None:
                raise SeekError("by-duration needs the current time")
            target_ms = duration_target_ms(scenario.value, now_ns)
        target_ms = min(max(target_ms, _INT64_MIN), _INT64_MAX)
    if kind == SHIFT_BY:
        missing = [f"{t}-{p}" for t, p in tps if (t, p) not in committed]
        if missing:
            raise SeekError(
                f"cannot shift: group {group!r} has no committed offset for {', '.join(missing)} "
                "(reset those partitions with another option first)"
            )

    rows: list[PlanRow] = []
    warnings: list[str] = []
    for tp in tps:
        topic, p = tp
        start, end = log_offsets[tp]
        if kind == TO_EARLIEST:
            target = start
        elif kind == TO_LATEST:
            target = end
        elif kind == TO_OFFSET:
            target = scenario.value
        elif kind == SHIFT_BY:
            target = committed[tp] + scenario.value
        else:
            assert offset_for_time is not None and target_ms is not None
            found = offset_for_time(tp, target_ms)
            if found is None:
                warnings.append(
                    f"{topic}-{p}: no record has a timestamp at or after {format_ms(target_ms)}; "
                    f"using the log end offset {end}"
                )
                target = end
            else:
                target = found
        if target < start:
            warnings.append(f"{topic}-{p}: new offset {target} is below the log start offset {start}; using {start}")
            target = start
        elif target > end:
            warnings.append(f"{topic}-{p}: new offset {target} is above the log end offset {end}; using {end}")
            target = end
        rows.append(PlanRow(group, topic, p, target))
    return Plan(rows, warnings)
