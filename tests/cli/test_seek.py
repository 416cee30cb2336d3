"""logq/cli/seek.py: the planning logic of `logq seek` and the parsers of its option values,
tested without a CLI or a data directory (scopes, log offsets and lookups are plain dicts)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logq.cli.seek import (
    BY_DURATION,
    SHIFT_BY,
    TO_DATETIME,
    TO_EARLIEST,
    TO_LATEST,
    TO_OFFSET,
    Plan,
    PlanRow,
    Scenario,
    SeekError,
    TopicSpec,
    duration_target_ms,
    format_ms,
    parse_datetime_ms,
    parse_duration_ns,
    parse_partition_list,
    parse_topic_spec,
    plan_reset,
    resolve_scope,
)
from logq.client.consumer import to_millis
from logq.errors import UnknownTopicError

TP = tuple[str, int]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
T2024 = 1704067200000  # 2024-01-01T00:00:00Z

# t-0: [2, 10), t-1: [0, 5), t-2: [0, 0) empty
LOGS: dict[TP, tuple[int, int]] = {("t", 0): (2, 10), ("t", 1): (0, 5), ("t", 2): (0, 0)}
COMMITTED: dict[TP, int] = {("t", 0): 6, ("t", 1): 1, ("t", 2): 0}


def plan(scenario: Scenario, scope: list[TP] | None = None, **kw: object) -> Plan:
    return plan_reset("g", scenario, list(LOGS) if scope is None else scope, LOGS, COMMITTED, **kw)  # type: ignore[arg-type]


def new_offsets(p: Plan) -> dict[TP, int]:
    return p.offsets()


# ----------------------------------------------------------------------------- datetimes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024-01-01T00:00:00", T2024),
        ("2024-01-01T00:00:00Z", T2024),
        ("2024-01-01t00:00:00z", T2024),
        ("2024-01-01T00:00:00.5", T2024 + 500),
        ("2024-01-01T00:00:00.123", T2024 + 123),
        ("2024-01-01T00:00:00.000000001", T2024 + 1),  # finer than 1 ms rounds up
        ("2024-01-01T00:00:00.001000000", T2024 + 1),
        ("2024-01-01T01:00:00+01:00", T2024),
        ("2024-01-01T01:00:00+0100", T2024),
        ("2024-01-01T01:00:00+01", T2024),
        ("2023-12-31T18:30:00.250-05:30", T2024 + 250),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("2024-02-29T12:00:00Z", T2024 + (31 + 28) * 86_400_000 + 12 * 3_600_000),
    ],
)
def test_datetimes_are_parsed_exactly_utc_when_no_zone(text: str, expected: int) -> None:
    assert parse_datetime_ms(text) == expected


def test_a_datetime_without_zone_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_datetime_ms("2024-07-01T12:00:00") == parse_datetime_ms("2024-07-01T12:00:00Z")
        assert parse_datetime_ms("2024-07-01T12:00:00") == T2024 + 182 * 86_400_000 + 12 * 3_600_000
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01",  # no time
        "2024-01-01T00:00",  # no seconds (Kafka requires them)
        "2024-01-01 00:00:00",  # space instead of T
        "2024-13-01T00:00:00",  # month 13
        "2023-02-29T00:00:00",  # not a leap year
        "2024-01-01T24:00:00",
        "2024-01-01T00:00:60",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00.1234567891",  # 10 fraction digits
        "2024-01-01T00:00:00Zjunk",
        "24-01-01T00:00:00",
        "yesterday",
        "",
    ],
)
def test_malformed_datetimes_are_rejected(text: str) -> None:
    with pytest.raises(SeekError):
        parse_datetime_ms(text)


@given(st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2400, 1, 1)))
def test_datetime_parsing_agrees_with_exact_arithmetic_and_to_millis(when: dt.datetime) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    exact = (when.replace(tzinfo=dt.UTC) - EPOCH) // MS
    text = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{when.microsecond // 1000:03d}"
    assert parse_datetime_ms(text) == exact
    assert to_millis(when.replace(tzinfo=dt.UTC)) == exact  # to_millis: no float rounding (naive is refused)
    assert format_ms(exact) == text + "Z"


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text, seconds, nanos",
    [
        ("P1D", 86_400, 0),
        ("PT1H", 3_600, 0),
        ("PT1M", 60, 0),
        ("PT1S", 1, 0),
        ("PT0S", 0, 0),
        ("PT1.5S", 1, 500_000_000),
        ("PT0,25S", 0, 250_000_000),
        ("PT0.000000001S", 0, 1),
        ("P2DT3H4M5.006S", 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5, 6_000_000),
        ("p1dt1h", 86_400 + 3_600, 0),
        ("PT90M", 5_400, 0),
        ("P1DT30M", 86_400 + 1_800, 0),
    ],
)
def test_iso_durations_are_parsed_to_exact_nanoseconds(text: str, seconds: int, nanos: int) -> None:
    assert parse_duration_ns(text) == seconds * 1_000_000_000 + nanos


@pytest.mark.parametrize(
    "text",
    [
        "P",  # nothing
        "PT",  # T without a time part
        "P1DT",
        "1D",  # no P
        "P1H",  # hours need T
        "PT1D",  # days go before T
        "PT1S2M",  # wrong order
        "PT1H1H",
        "P1W",
        "P1Y",
        "P1M",  # a month, not a minute
        "-P1D",
        "P-1D",
        "PT-5M",
        "+PT5M",
        "PT1.S",
        "PT.5S",
        "PT1.1234567891S",
        " PT1S",
        "PT1S ",
        "PT1.5M",  # fraction only on seconds
        "P1234567890123456789D",  # absurdly large
        "",
    ],
)
def test_malformed_durations_are_rejected(text: str) -> None:
    with pytest.raises(SeekError):
        parse_duration_ns(text)


@given(
    st.integers(0, 10_000), st.integers(0, 100), st.integers(0, 100), st.integers(0, 100), st.integers(0, 999_999_999)
)
def test_duration_parsing_matches_its_parts(d: int, h: int, m: int, s: int, ns: int) -> None:
    text = f"P{d}DT{h}H{m}M{s}.{ns:09d}S"
    assert parse_duration_ns(text) == (((d * 24 + h) * 60 + m) * 60 + s) * 1_000_000_000 + ns


def test_duration_target_is_now_minus_duration_rounded_up_to_a_millisecond() -> None:
    now_ns = T2024 * 1_000_000
    assert duration_target_ms(parse_duration_ns("PT1H"), now_ns) == T2024 - 3_600_000
    assert duration_target_ms(parse_duration_ns("PT0.0005S"), now_ns) == T2024  # 999.5 us before -> 0 ms
    assert duration_target_ms(parse_duration_ns("PT0.0015S"), now_ns) == T2024 - 1


# ----------------------------------------------------------------------------- scope


def test_topic_specs_name_a_topic_or_some_of_its_partitions() -> None:
    assert parse_topic_spec("orders") == TopicSpec("orders", None)
    assert parse_topic_spec("orders:0,2") == TopicSpec("orders", (0, 2))
    assert parse_topic_spec("orders:2, 0,2") == TopicSpec("orders", (2, 0))
    assert parse_partition_list("5") == (5,)


@pytest.mark.parametrize("text", ["orders:", ":0", "orders:-1", "orders:a", "orders:0,,1", "orders:1.5", "orders:²"])
def test_malformed_topic_specs_are_rejected(text: str) -> None:
    with pytest.raises(SeekError):
        parse_topic_spec(text)


def test_all_topics_means_the_committed_partitions_of_existing_topics() -> None:
    committed = {("t", 0): 1, ("t", 2): 4, ("gone", 0): 3, ("t", 9): 1}
    scope, notes = resolve_scope([], True, {"t": 3, "u": 2}, committed)
    assert scope == [("t", 0), ("t", 2)]
    assert len(notes) == 2 and any("'gone'" in n for n in notes)


def test_topic_specs_merge_into_a_sorted_scope() -> None:
    specs = [TopicSpec("u", (1,)), TopicSpec("t", (2, 0)), TopicSpec("u", None)]
    scope, notes = resolve_scope(specs, False, {"t": 3, "u": 2}, {})
    assert scope == [("t", 0), ("t", 2), ("u", 0), ("u", 1)]
    assert notes == []


def test_scope_errors() -> None:
    with pytest.raises(UnknownTopicError):
        resolve_scope([TopicSpec("nope", None)], False, {"t": 3}, {})
    with pytest.raises(SeekError, match="no partition 3"):
        resolve_scope([TopicSpec("t", (0, 3))], False, {"t": 3}, {})
    with pytest.raises(SeekError, match="not both"):
        resolve_scope([TopicSpec("t", None)], True, {"t": 3}, {})
    with pytest.raises(SeekError, match="required"):
        resolve_scope([], False, {"t": 3}, {})


# ----------------------------------------------------------------------------- plans


def test_to_earliest_and_to_latest_use_the_log_offsets() -> None:
    p = plan(Scenario(TO_EARLIEST))
    assert p.rows == [PlanRow("g", "t", 0, 2), PlanRow("g", "t", 1, 0), PlanRow("g", "t", 2, 0)]
    assert p.warnings == []
    assert new_offsets(plan(Scenario(TO_LATEST))) == {("t", 0): 10, ("t", 1): 5, ("t", 2): 0}


def test_to_offset_inside_the_log_is_kept_without_warning() -> None:
    p = plan(Scenario(TO_OFFSET, 4), [("t", 0), ("t", 1)])
    assert new_offsets(p) == {("t", 0): 4, ("t", 1): 4}
    assert p.warnings == []


def test_to_offset_outside_the_log_is_clamped_with_a_warning_each() -> None:
    p = plan(Scenario(TO_OFFSET, 7))
    assert new_offsets(p) == {("t", 0): 7, ("t", 1): 5, ("t", 2): 0}
    assert len(p.warnings) == 2
    assert "t-1" in p.warnings[0] and "above the log end offset 5" in p.warnings[0]
    low = plan(Scenario(TO_OFFSET, 1), [("t", 0)])
    assert new_offsets(low) == {("t", 0): 2}
    assert len(low.warnings) == 1 and "below the log start offset 2" in low.warnings[0]


def test_shift_by_moves_the_committed_offsets_both_ways_and_clamps() -> None:
    up = plan(Scenario(SHIFT_BY, 3))
    assert new_offsets(up) == {("t", 0): 9, ("t", 1): 4, ("t", 2): 0}
    assert len(up.warnings) == 1 and "t-2" in up.warnings[0]
    down = plan(Scenario(SHIFT_BY, -3))
    assert new_offsets(down) == {("t", 0): 3, ("t", 1): 0, ("t", 2): 0}
    assert [w.split(":")[0] for w in down.warnings] == ["t-1", "t-2"]


def test_shift_by_refuses_partitions_with_nothing_committed() -> None:
    logs = {**LOGS, ("u", 0): (0, 3)}
    with pytest.raises(SeekError, match="u-0"):
        plan_reset("g", Scenario(SHIFT_BY, 1), [("t", 0), ("u", 0)], logs, COMMITTED)


def test_to_datetime_asks_the_lookup_and_sends_partitions_without_a_record_to_the_end() -> None:
    asked: list[tuple[TP, int]] = []

    def lookup(tp: TP, ms: int) -> int | None:
        asked.append((tp, ms))
        return {("t", 0): 4, ("t", 1): None, ("t", 2): None}[tp]

    p = plan(Scenario(TO_DATETIME, T2024), offset_for_time=lookup)
    assert asked == [(("t", 0), T2024), (("t", 1), T2024), (("t", 2), T2024)]
    assert new_offsets(p) == {("t", 0): 4, ("t", 1): 5, ("t", 2): 0}
    assert len(p.warnings) == 2
    assert "2024-01-01T00:00:00.000Z" in p.warnings[0] and "log end offset 5" in p.warnings[0]


def test_by_duration_looks_up_now_minus_the_duration() -> None:
    asked: list[int] = []

    def lookup(tp: TP, ms: int) -> int | None:
        asked.append(ms)
        return 3

    now_ns = (T2024 + 123) * 1_000_000
    p = plan(Scenario(BY_DURATION, parse_duration_ns("PT1H")), [("t", 1)], offset_for_time=lookup, now_ns=now_ns)
    assert asked == [T2024 + 123 - 3_600_000]
    assert new_offsets(p) == {("t", 1): 3}


def test_time_scenarios_need_a_lookup_and_a_clock() -> None:
    with pytest.raises(SeekError):
        plan(Scenario(TO_DATETIME, 0))
    with pytest.raises(SeekError):
        plan(Scenario(BY_DURATION, 0), offset_for_time=lambda tp, ms: 0)
    with pytest.raises(SeekError):
        plan(Scenario("to-nowhere"))


def test_plan_rows_are_sorted_unique_and_name_the_group() -> None:
    p = plan_reset("billing", Scenario(TO_LATEST), [("t", 1), ("t", 0), ("t", 1)], LOGS, {})
    assert [(r.group, r.topic, r.partition) for r in p.rows] == [("billing", "t", 0), ("billing", "t", 1)]
