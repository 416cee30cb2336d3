"""Producer.send(delay_ms=, deliver_at=, ttl_ms=): the headers it writes (logq.deliver_at_ms,
logq.expire_at_ms), its argument checks, and what readers do with them: a plain Consumer reads
the log in order, a ShareConsumer (with a controllable clock) waits for the delivery time and
archives an expired record as "expired" without delivering it."""

from __future__ import annotations

import datetime as dt

import logq
import pytest
from logq.client.records import timing_headers

TS = 1_700_000_000_000  # a fixed record timestamp (epoch ms), so header values are exact


def make(root: str, *topics: str) -> None:
    with logq.Admin(root) as a:
        for t in topics:
            a.create_topic(t)


def read_all(root: str, topic: str) -> list[logq.Record]:
    with logq.Consumer(root, topic, auto_offset_reset="earliest") as c:
        return c.poll(timeout=1.0)


def header(rec: logq.Record, name: str) -> bytes | None:
    found = [v for k, v in rec.headers if k == name]
    assert len(found) <= 1
    return found[0] if found else None


def test_delay_ms_counts_from_the_record_timestamp(root: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        p.send("t", b"x", timestamp_ms=TS, delay_ms=5_000)
    (rec,) = read_all(root, "t")
    assert header(rec, "logq.deliver_at_ms") == str(TS + 5_000).encode()
    assert header(rec, "logq.expire_at_ms") is None


def test_deliver_at_takes_an_aware_datetime_or_epoch_ms(root: str) -> None:
    make(root, "t")
    when = dt.datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC)
    with logq.Producer(root) as p:
        p.send("t", b"a", deliver_at=when)
        p.send("t", b"b", deliver_at=TS + 1)
    a, b = read_all(root, "t")
    assert header(a, "logq.deliver_at_ms") == str(int(when.timestamp() * 1000)).encode()
    assert header(b, "logq.deliver_at_ms") == str(TS + 1).encode()


def test_ttl_counts_from_the_later_of_timestamp_and_delivery_time(root: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        p.send("t", b"now", timestamp_ms=TS, ttl_ms=1_000)
        p.send("t", b"delayed", timestamp_ms=TS, delay_ms=60_000, ttl_ms=1_000)
        p.send("t", b"past", timestamp_ms=TS, deliver_at=TS - 50_000, ttl_ms=1_000)
    now, delayed, past = read_all(root, "t")
    assert header(now, "logq.expire_at_ms") == str(TS + 1_000).encode()
    assert header(delayed, "logq.expire_at_ms") == str(TS + 61_000).encode()
    assert header(past, "logq.expire_at_ms") == str(TS + 1_000).encode()


def test_the_user_headers_are_kept_before_the_timing_headers(root: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        p.send("t", b"x", headers={"a": b"1"}, timestamp_ms=TS, delay_ms=1)
        p.send("t", b"y", headers=[("b", None), ("b", b"2")], timestamp_ms=TS, ttl_ms=2)
    x, y = read_all(root, "t")
    assert x.headers == (("a", b"1"), ("logq.deliver_at_ms", str(TS + 1).encode()))
    assert y.headers == (("b", None), ("b", b"2"), ("logq.expire_at_ms", str(TS + 2).encode()))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"delay_ms": -1}, "delay_ms=-1"),
        ({"delay_ms": 1.5}, "delay_ms=1.5"),
        ({"delay_ms": True}, "delay_ms=True"),
        ({"delay_ms": "10"}, "delay_ms='10'"),
        ({"delay_ms": dt.timedelta(seconds=1)}, "delay_ms=datetime.timedelta"),
        ({"ttl_ms": 0}, "ttl_ms=0"),
        ({"ttl_ms": None, "delay_ms": 2**62}, "delay_ms"),
        ({"deliver_at": dt.datetime(2030, 1, 1)}, "naive datetime"),
        ({"deliver_at": 1_700_000_000}, "looks like seconds"),
        ({"deliver_at": 1.7e12}, "float"),
        ({"delay_ms": 1, "deliver_at": TS}, "not both"),
        ({"deliver_at": 2**62 - 1, "ttl_ms": 10}, "2**62"),
    ],
)
def test_bad_timing_arguments_are_config_errors_and_nothing_is_queued(root: str, kwargs: dict, words: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        with pytest.raises(logq.ConfigError) as e:
            p.send("t", b"x", timestamp_ms=TS, **kwargs)
        assert words in str(e.value)
        p.send("t", b"ok")
    assert [r.value for r in read_all(root, "t")] == [b"ok"]


def test_a_timing_header_given_twice_is_refused(root: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        with pytest.raises(logq.ConfigError, match="given twice"):
            p.send("t", b"x", headers={"logq.deliver_at_ms": b"5"}, delay_ms=1)
        with pytest.raises(logq.SerializationError):
            p.send("t", b"x", headers=[("a", 5)], ttl_ms=1)
    assert read_all(root, "t") == []


def test_timing_headers_without_timing_arguments_adds_nothing() -> None:
    assert timing_headers(None, TS, None, None, None) == []
    assert timing_headers({"a": b"1"}, TS, None, None, None) == [("a", b"1")]


def test_a_plain_consumer_reads_delayed_records_in_log_order(root: str) -> None:
    make(root, "t")
    with logq.Producer(root) as p:
        p.send("t", b"later", delay_ms=3_600_000)
        p.send("t", b"now")
    assert [r.value for r in read_all(root, "t")] == [b"later", b"now"]


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_a_share_consumer_waits_for_deliver_at_and_drops_expired_records(root: str) -> None:
    make(root, "jobs", "dlq")
    clock = Clock(TS)
    with logq.Producer(root) as p:
        p.send("jobs", b"in a minute", timestamp_ms=TS, delay_ms=60_000)
        p.send("jobs", b"short lived", timestamp_ms=TS, ttl_ms=10_000)
        p.send("jobs", b"plain", timestamp_ms=TS)
    with logq.ShareConsumer(
        root, "jobs", group_id="g", auto_offset_reset="earliest", clock=clock, dead_letter_topic="dlq"
    ) as sc:
        assert sorted(r.value for r in sc.poll(timeout=0)) == [b"plain", b"short lived"]
        sc.commit()
        clock.now = TS + 59_999
        assert sc.poll(timeout=0) == []
        clock.now = TS + 60_000
        assert [r.value for r in sc.poll(timeout=0)] == [b"in a minute"]
        sc.commit()
    assert read_all(root, "dlq") == []


def test_a_share_consumer_archives_a_record_whose_ttl_passed_as_expired(root: str) -> None:
    make(root, "jobs", "dlq")
    clock = Clock(TS + 10_000)
    with logq.Producer(root) as p:
        p.send("jobs", b"stale", timestamp_ms=TS, ttl_ms=10_000)
        p.send("jobs", b"fresh", timestamp_ms=TS, ttl_ms=10_001)
    with logq.ShareConsumer(
        root, "jobs", group_id="g", auto_offset_reset="earliest", clock=clock, dead_letter_topic="dlq"
    ) as sc:
        assert [r.value for r in sc.poll(timeout=0)] == [b"fresh"]
        sc.commit()
    (dead,) = read_all(root, "dlq")
    assert dead.value == b"stale"
    assert header(dead, "__dlq.errors.reason") == b"expired"
