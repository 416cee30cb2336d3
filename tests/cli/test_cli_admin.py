"""The topic / produce / consume commands of the `logq` CLI (logq/cli/topics.py, console.py).

Data directories are filled and checked with the Python API (Admin, Producer, Consumer);
the commands run through click's CliRunner (two through a real subprocess) and their output
is parsed back and compared with what the API says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import Result
from logq import Admin, Consumer, Producer
from logq.client.partitioner import partition_for_key
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

from tests import support
from tests.cli.cli_helpers import ok, one_error_line, parse_table, run, warnings_of

REPO = support.REPO
T0 = 1704067200000  # 2024-01-01T00:00:00Z
GROUP_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"]
SEEK_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
TP = tuple[str, int]


# ----------------------------------------------------------------------------- helpers


def records(data: Path, topic: str, partition: int) -> list:
    with PartitionLog(partition_path(str(data), topic, partition), readonly=True) as lg:
        return lg.read_records(lg.log_start_offset)


def committed(data: Path, group: str) -> dict[TP, int]:
    with Admin(str(data)) as admin:
        return admin.committed_offsets(group)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def timed(data: Path) -> Path:
    """Topic t (3 partitions): record i of partition p has value p-i and timestamp T0 + 10 s * i + p.

    Topic u (2 partitions, 4 records each). Group g has committed t-0: 5, t-1: 5, t-2: 5.
    """
    with Admin(str(data)) as admin:
        admin.create_topic("t", 3, retention_ms=-1)
        admin.create_topic("u", 2, retention_ms=-1)
        with Producer(str(data)) as prod:
            for p in range(3):
                for i in range(10):
                    prod.send("t", f"{p}-{i}".encode(), partition=p, timestamp_ms=T0 + 10_000 * i + p)
            for p in range(2):
                for i in range(4):
                    prod.send("u", b"x", partition=p, timestamp_ms=T0)
        admin.reset_offsets("g", {("t", 0): 5, ("t", 1): 5, ("t", 2): 5})
    return data


# ----------------------------------------------------------------------------- topics


def test_topics_create_list_describe_delete(data: Path) -> None:
    res = ok(data, "topics", "create", "orders", "--partitions", "3", "--config", "retention_ms=-1",
             "--config", "segment.bytes=100000")  # fmt: skip
    assert res.stdout == "Created topic orders with 3 partition(s).\n"
    ok(data, "topics", "create", "audit")
    with Admin(str(data)) as admin:
        cfg = admin.topic_config("orders")
        assert (cfg.retention_ms, cfg.segment_bytes) == (-1, 100000)
        assert admin.describe_topic("audit").partitions.__len__() == 1
    assert ok(data, "topics", "list").stdout.splitlines() == ["audit", "orders"]

    with Producer(str(data)) as prod:
        for i in range(7):
            prod.send("orders", b"v%d" % i, partition=i % 2)
    with Admin(str(data)) as admin:
        admin.delete_records("orders", {0: 2})
        desc = admin.describe_topic("orders")

    text = ok(data, "topics", "describe", "orders").stdout.splitlines()
    head = dict(f.split(": ", 1) for f in text[0].split("\t"))
    assert head == {"Topic": "orders", "TopicId": desc.topic_id, "PartitionCount": "3", "Records": str(desc.records),
                    "Size": str(desc.size_bytes), "Configs": "retention_ms=-1,segment_bytes=100000"}  # fmt: skip
    assert len(text) == 4
    for line, p in zip(text[1:], desc.partitions):
        assert line.startswith("\t")
        fields = dict(f.split(": ", 1) for f in line.strip("\t").split("\t"))
        assert fields == {"Topic": "orders", "Partition": str(p.partition), "StartOffset": str(p.log_start_offset),
                          "EndOffset": str(p.log_end_offset), "Size": str(p.size_bytes),
                          "Segments": str(p.segments)}  # fmt: skip
    assert [(p.log_start_offset, p.log_end_offset) for p in desc.partitions] == [(2, 4), (0, 3), (0, 0)]

    objs = [json.loads(line) for line in ok(data, "topics", "describe", "--json").stdout.splitlines()]
    assert [o["topic"] for o in objs] == ["audit", "orders"]  # no NAME: every topic
    o = objs[1]
    assert o["configs"] == {"retention_ms": -1, "segment_bytes": 100000}
    assert o["effectiveConfig"] == desc.config
    assert [(q["partition"], q["startOffset"], q["endOffset"], q["size"], q["segments"]) for q in o["partitions"]] == [
        tuple(p) for p in desc.partitions
    ]

    assert ok(data, "topics", "delete", "orders").stdout == "Deleted topic orders.\n"
    assert ok(data, "topics", "list").stdout == "audit\n"
    with Admin(str(data)) as admin:
        assert admin.list_topics() == ["audit"]
    assert "'orders' does not exist" in one_error_line(run(data, "topics", "describe", "orders"))


def test_topics_delete_records_moves_the_log_start(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 2)
    with Producer(str(data)) as prod:
        for i in range(10):
            prod.send("t", b"x", partition=1)
    res = ok(data, "topics", "delete-records", "t", "--partition", "1", "--offset", "4")
    assert res.stdout.strip().endswith("low_watermark: 4")
    with Admin(str(data)) as admin:
        assert admin.log_offsets("t", 1) == (4, 10)
    assert "out of range" in one_error_line(
        run(data, "topics", "delete-records", "t", "--partition", "1", "--offset", "11")
    )
    assert "no partition 2" in one_error_line(
        run(data, "topics", "delete-records", "t", "--partition", "2", "--offset", "0")
    )
    with Admin(str(data)) as admin:
        assert admin.log_offsets("t", 1) == (4, 10)


# ----------------------------------------------------------------------------- produce


def test_produce_from_stdin_with_keys_and_headers_reads_back_with_the_api(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 4)
    lines = [f"key{i}:value {i}:with colon" for i in range(20)]
    res = ok(data, "produce", "t", "--key-separator", ":", "--header", "src=cli", "--header", "empty=",
             input=("\n".join(lines) + "\n").encode())  # fmt: skip
    summary = res.stderr.splitlines()
    assert len(summary) == 1 and summary[0].startswith("Produced 20 record(s) to t: ")
    ranges = {
        int(m.group(1)): (int(m.group(2)), int(m.group(3) or m.group(2)))
        for m in re.finditer(r"partition (\d+) offsets? (\d+)(?:-(\d+))?", summary[0])
    }
    got = {}
    for p in range(4):
        recs = records(data, "t", p)
        for r in recs:
            assert p == partition_for_key(r.key, 4)  # keyed records follow Kafka's partitioner
            assert r.headers == (("src", b"cli"), ("empty", b""))
            got[r.key] = r.value
        assert ranges.get(p) == ((0, len(recs) - 1) if recs else None)
    assert got == {f"key{i}".encode(): f"value {i}:with colon".encode() for i in range(20)}


def test_produce_from_files_to_one_partition_keeps_line_order(data: Path, tmp_path: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 3)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"one\r\ntwo\n\nfour")
    b.write_bytes(b"\xffraw\n")
    res = ok(data, "produce", "t", str(a), str(b), "--partition", "2")
    assert res.stderr.strip() == "Produced 5 record(s) to t: partition 2 offsets 0-4"
    recs = records(data, "t", 2)
    assert [(r.offset, r.key, r.value) for r in recs] == [
        (0, None, b"one"), (1, None, b"two"), (2, None, b""), (3, None, b"four"), (4, None, b"\xffraw"),
    ]  # fmt: skip
    assert records(data, "t", 0) == [] and records(data, "t", 1) == []


def test_produce_stops_at_a_line_without_the_key_separator(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 1)
    line = one_error_line(run(data, "produce", "t", "--key-separator", "=", input=b"a=1\nb=2\nnope\nc=3\n"))
    assert "line 3" in line and "2 record(s)" in line
    assert [(r.key, r.value) for r in records(data, "t", 0)] == [(b"a", b"1"), (b"b", b"2")]


# ----------------------------------------------------------------------------- consume


def test_consume_from_beginning_json_round_trip(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 2)
    sent = [
        (0, b"k0", b"hello", (("h", b"1"), ("h", b"2")), T0),
        (0, None, "ünïcode ✓".encode(), (), T0 + 1),
        (1, b"k\xfe", b"bad \xff byte", (("n", None),), T0 + 2),
        (1, b"", None, (), T0 + 3),
        (1, b"k4", b'quote " and \\ and \n newline', (), T0 + 4),
    ]
    with Producer(str(data)) as prod:
        for p, k, v, h, ts in sent:
            prod.send("t", v, key=k, headers=list(h), partition=p, timestamp_ms=ts)
    res = ok(data, "consume", "t", "--from-beginning", "--format", "json")
    assert res.stderr.strip() == "Processed a total of 5 messages"
    got = sorted((json.loads(line) for line in res.stdout.splitlines()), key=lambda o: (o["partition"], o["offset"]))
    assert got == [
        {"topic": "t", "partition": 0, "offset": 0, "timestamp": T0, "key": "k0", "value": "hello",
         "headers": [["h", "1"], ["h", "2"]]},
        {"topic": "t", "partition": 0, "offset": 1, "timestamp": T0 + 1, "key": None, "value": "ünïcode ✓",
         "headers": []},
        {"topic": "t", "partition": 1, "offset": 0, "timestamp": T0 + 2, "key": "k\\xfe", "value": "bad \\xff byte",
         "headers": [["n", None]]},
        {"topic": "t", "partition": 1, "offset": 1, "timestamp": T0 + 3, "key": "", "value": None, "headers": []},
        {"topic": "t", "partition": 1, "offset": 2, "timestamp": T0 + 4, "key": "k4",
         "value": 'quote " and \\ and \n newline', "headers": []},
    ]  # fmt: skip


def test_consume_text_with_key_separator_partition_and_max_messages(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 2)
    with Producer(str(data)) as prod:
        for i in range(6):
            prod.send("t", b"v%d" % i, key=b"k%d" % i if i % 2 else None, partition=i % 2)
    assert ok(data, "consume", "t", "--from-beginning", "--partition", "1").stdout == "v1\nv3\nv5\n"
    res = ok(data, "consume", "t", "--from-beginning", "--partition", "0", "--key-separator", "|")
    assert res.stdout == "null|v0\nnull|v2\nnull|v4\n"
    res = ok(
        data, "consume", "t", "--from-beginning", "--partition", "1", "--max-messages", "2", "--key-separator", "="
    )
    assert res.stdout == "k1=v1\nk3=v3\n" and "total of 2 messages" in res.stderr
    # without --from-beginning and without a group it starts at the log end: nothing to print
    assert ok(data, "consume", "t").stdout == ""


def test_consume_with_group_commits_what_it_printed_and_resumes_there(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 2)
    with Producer(str(data)) as prod:
        for i in range(10):
            prod.send("t", b"%d" % i, partition=i % 2)
    first = ok(data, "consume", "t", "--group", "g", "--from-beginning", "--max-messages", "4").stdout.split()
    assert len(first) == 4
    offsets = committed(data, "g")
    assert set(offsets) == {("t", 0), ("t", 1)} and sum(offsets.values()) == 4
    rest = ok(data, "consume", "t", "--group", "g", "--from-beginning").stdout.split()
    assert sorted(first + rest, key=int) == [str(i) for i in range(10)]
    assert committed(data, "g") == {("t", 0): 5, ("t", 1): 5}
    assert ok(data, "consume", "t", "--group", "g").stdout == ""  # caught up: stops at once


def test_consume_stops_when_caught_up_and_waits_with_timeout(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 1)
    start = time.monotonic()
    ok(data, "consume", "t", "--from-beginning")
    assert time.monotonic() - start < 3
    start = time.monotonic()
    ok(data, "consume", "t", "--timeout-ms", "400")
    assert 0.4 <= time.monotonic() - start < 5


# ----------------------------------------------------------------------------- groups


def test_groups_describe_columns_and_lag_after_a_consumer_committed(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("orders", 3)
        admin.create_topic("other", 1)
    with Producer(str(data)) as prod:
        for i in range(12):
            prod.send("orders", b"x", partition=i % 3)  # 4 each
    c = Consumer(str(data), "orders", group_id="billing", auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 60  # a group's first assignment may wait initial_rebalance_delay_ms
        while len(c._member.owned()) < 3:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the consumer never got the group's partitions"
            c.poll(timeout=0.05)
        c.commit({("orders", 0): 3, ("orders", 1): 1})
        member = c._member.member_id  # type: ignore[union-attr]
        live = parse_table(ok(data, "groups", "describe", "billing").stdout, GROUP_COLUMNS)
        assert [r["CONSUMER-ID"] for r in live] == [member] * 3
    finally:
        c.close(autocommit=False)
    assert ok(data, "groups", "list").stdout.split() == ["billing"]
    res = ok(data, "groups", "describe", "billing")
    rows = parse_table(res.stdout, GROUP_COLUMNS)
    assert [(r["GROUP"], r["TOPIC"], r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"],
             r["CONSUMER-ID"]) for r in rows] == [
        ("billing", "orders", "0", "3", "4", "1", "-"),
        ("billing", "orders", "1", "1", "4", "3", "-"),
    ]  # fmt: skip
    assert any("no active members" in w for w in warnings_of(res))
    objs = [json.loads(line) for line in ok(data, "groups", "describe", "billing", "--json").stdout.splitlines()]
    assert objs == [
        {"group": "billing", "topic": "orders", "partition": 0, "currentOffset": 3, "logEndOffset": 4, "lag": 1,
         "consumerId": None},
        {"group": "billing", "topic": "orders", "partition": 1, "currentOffset": 1, "logEndOffset": 4, "lag": 3,
         "consumerId": None},
    ]  # fmt: skip


def test_describing_an_unknown_group_fails_and_does_not_create_it(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.create_topic("t", 1)
    assert "'ghost' does not exist" in one_error_line(run(data, "groups", "describe", "ghost"))
    assert ok(data, "seek", "--group", "ghost2", "--topic", "t", "--to-latest").exit_code == 0  # dry run
    assert ok(data, "groups", "list").stdout == ""
    with Admin(str(data)) as admin:
        assert admin.list_groups() == []


# ----------------------------------------------------------------------------- offsets


def offsets_out(data: Path, *args: str) -> dict[int, int | None]:
    out: dict[int, int | None] = {}
    for line in ok(data, "offsets", *args).stdout.splitlines():
        topic, p, off = line.split(":")
        assert topic == "t"
        out[int(p)] = int(off) if off else None
    return out


def test_offsets_for_earliest_latest_ms_and_iso_match_the_api(timed: Path) -> None:
    with Admin(str(timed)) as admin:
        admin.delete_records("t", {1: 3})
        assert offsets_out(timed, "t", "--time", "earliest") == {p: admin.log_offsets("t", p)[0] for p in range(3)}
        assert offsets_out(timed, "t", "--time", "-2") == {0: 0, 1: 3, 2: 0}
        assert offsets_out(timed, "t") == offsets_out(timed, "t", "--time", "latest") == {0: 10, 1: 10, 2: 10}
        for ms in (0, T0, T0 + 1, T0 + 25_000, T0 + 25_001, T0 + 50_002, T0 + 90_001, T0 + 90_003):
            expected = {p: admin.offset_for_time("t", p, ms) for p in range(3)}
            assert offsets_out(timed, "t", "--time", str(ms)) == expected
        assert offsets_out(timed, "t", "--time", str(T0 + 20_001)) == {0: 3, 1: 3, 2: 2}  # t-1 starts at 3
        assert offsets_out(timed, "t", "--time", str(T0 + 90_003)) == {0: None, 1: None, 2: None}
    # 2024-01-01T00:00:30.001Z, written three ways
    for iso in ("2024-01-01T00:00:30.001", "2024-01-01T00:00:30.001Z", "2024-01-01T02:00:30.001+02:00"):
        assert offsets_out(timed, "t", "--time", iso) == {0: 4, 1: 3, 2: 3}
    assert offsets_out(timed, "t", "--time", "earliest", "--partitions", "0,2") == {0: 0, 2: 0}


# ----------------------------------------------------------------------------- seek


def seek(data: Path, *args: str) -> tuple[dict[TP, int], list[str], Result]:
    res = ok(data, "seek", "--group", "g", *args)
    rows = parse_table(res.stdout, SEEK_COLUMNS)
    assert all(r["GROUP"] == "g" for r in rows)
    plan = {(r["TOPIC"], int(r["PARTITION"])): int(r["NEW-OFFSET"]) for r in rows}
    assert len(plan) == len(rows)
    return plan, warnings_of(res), res


def seek_both(data: Path, *args: str, expected: dict[TP, int], warned: int = 0) -> list[str]:
    """The dry run prints ``expected`` and changes nothing; --execute commits exactly it."""
    before = committed(data, "g")
    plan, warns, res = seek(data, *args)
    assert plan == expected
    assert len(warns) == warned, warns
    assert "Dry run" in res.stderr
    assert committed(data, "g") == before
    plan2, warns2, _ = seek(data, *args, "--execute")
    assert plan2 == expected and len(warns2) == warned
    after = dict(before)
    after.update(expected)
    assert committed(data, "g") == after
    with Admin(str(data)) as admin:  # restore for the next scenario
        admin.reset_offsets("g", before)
    return warns


ALL_T = [("t", 0), ("t", 1), ("t", 2)]


def test_seek_to_earliest_and_to_latest(timed: Path) -> None:
    with Admin(str(timed)) as admin:
        admin.delete_records("t", {2: 2})
    seek_both(timed, "--topic", "t", "--to-earliest", expected={("t", 0): 0, ("t", 1): 0, ("t", 2): 2})
    seek_both(timed, "--topic", "t", "--to-latest", expected={tp: 10 for tp in ALL_T})


def test_seek_to_offset_clamps_with_a_warning(timed: Path) -> None:
    seek_both(timed, "--topic", "t", "--to-offset", "7", expected={tp: 7 for tp in ALL_T})
    warns = seek_both(timed, "--topic", "t:1", "--to-offset", "50", expected={("t", 1): 10}, warned=1)
    assert "t-1" in warns[0] and "log end offset 10" in warns[0]
    with Admin(str(timed)) as admin:
        admin.delete_records("t", {0: 4})
    warns = seek_both(timed, "--topic", "t:0", "--to-offset", "1", expected={("t", 0): 4}, warned=1)
    assert "log start offset 4" in warns[0]


def test_seek_shift_by_forward_and_backward(timed: Path) -> None:
    seek_both(timed, "--topic", "t", "--shift-by", "3", expected={tp: 8 for tp in ALL_T})
    seek_both(timed, "--topic", "t", "--shift-by", "-2", expected={tp: 3 for tp in ALL_T})
    seek_both(timed, "--topic", "t:0", "--shift-by=-7", expected={("t", 0): 0}, warned=1)
    seek_both(timed, "--topic", "t:2", "--shift-by", "+9", expected={("t", 2): 10}, warned=1)
    line = one_error_line(run(timed, "seek", "--group", "g", "--topic", "u", "--shift-by", "1"))
    assert "no committed offset" in line and "u-0" in line


def test_seek_to_datetime_with_and_without_zone(timed: Path) -> None:
    # 2024-01-01T00:00:20.001Z: t-0 record 3 (T0+30000), t-1 record 2 (T0+20001), t-2 record 2 (T0+20002)
    expected = {("t", 0): 3, ("t", 1): 2, ("t", 2): 2}
    seek_both(timed, "--topic", "t", "--to-datetime", "2024-01-01T00:00:20.001", expected=expected)
    seek_both(timed, "--topic", "t", "--to-datetime", "2024-01-01T00:00:20.001Z", expected=expected)
    seek_both(timed, "--topic", "t", "--to-datetime", "2023-12-31T19:00:20.001-05:00", expected=expected)
    seek_both(timed, "--topic", "t", "--to-datetime", "2024-01-01T05:30:20.001+05:30", expected=expected)
    # later than every record: the log end, with a warning per partition
    warns = seek_both(timed, "--topic", "t", "--to-datetime", "2024-01-01T00:05:00", expected={tp: 10 for tp in ALL_T},
                      warned=3)  # fmt: skip
    assert all("no record" in w and "log end offset 10" in w for w in warns)


def test_seek_by_duration(data: Path) -> None:
    now = int(time.time() * 1000)
    minute = 60_000
    with Admin(str(data)) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
    with Producer(str(data)) as prod:
        for k in (50, 40, 30, 20, 10):  # offsets 0..4 at now-50min ... now-10min
            prod.send("t", b"x", partition=0, timestamp_ms=now - k * minute)
    with Admin(str(data)) as admin:
        admin.reset_offsets("g", {("t", 0): 0})
    seek_both(data, "--topic", "t", "--by-duration", "PT25M", expected={("t", 0): 3})
    seek_both(data, "--topic", "t", "--by-duration", "PT0H35M", expected={("t", 0): 2})
    seek_both(data, "--topic", "t", "--by-duration", "P1D", expected={("t", 0): 0})
    seek_both(data, "--topic", "t", "--by-duration", "PT2M30S", expected={("t", 0): 5}, warned=1)


def test_seek_scopes_all_topics_and_topic_partitions(timed: Path) -> None:
    with Admin(str(timed)) as admin:
        admin.reset_offsets("g", {("t", 1): 2})
    # --all-topics: the committed partitions (t-0..2), not topic u
    seek_both(timed, "--all-topics", "--to-latest", expected={tp: 10 for tp in ALL_T})
    seek_both(timed, "--topic", "t:0,2", "--to-earliest", expected={("t", 0): 0, ("t", 2): 0})
    seek_both(timed, "--topic", "t:2", "--topic", "u", "--to-offset", "3",
              expected={("t", 2): 3, ("u", 0): 3, ("u", 1): 3})  # fmt: skip


def test_seek_refuses_while_the_group_has_a_live_member(timed: Path) -> None:
    before = committed(timed, "g")
    member = Consumer(str(timed), "t", group_id="g", enable_auto_commit=False)
    try:
        for extra in ((), ("--execute",)):
            line = one_error_line(run(timed, "seek", "--group", "g", "--topic", "t", "--to-earliest", *extra))
            assert "live member" in line and "'g'" in line
            assert committed(timed, "g") == before
    finally:
        member.close(autocommit=False)
    seek_both(timed, "--topic", "t", "--to-earliest", expected={tp: 0 for tp in ALL_T})


# ----------------------------------------------------------------------------- user mistakes


BAD = {
    "unknown topic (seek)": ["seek", "--group", "g", "--topic", "nope", "--to-latest"],
    "unknown topic (consume)": ["consume", "nope"],
    "unknown topic (produce)": ["produce", "nope"],
    "unknown topic (offsets)": ["offsets", "nope"],
    "unknown partition": ["seek", "--group", "g", "--topic", "t:7", "--to-latest"],
    "bad topic spec": ["seek", "--group", "g", "--topic", "t:a", "--to-latest"],
    "bad datetime": ["seek", "--group", "g", "--topic", "t", "--to-datetime", "2024-01-01 00:00:00"],
    "impossible datetime": ["seek", "--group", "g", "--topic", "t", "--to-datetime", "2024-02-30T00:00:00"],
    "bad --time": ["offsets", "t", "--time", "noon"],
    "negative offset": ["seek", "--group", "g", "--topic", "t", "--to-offset", "-1"],
    "negative delete offset": ["topics", "delete-records", "t", "--partition", "0", "--offset", "-3"],
    "bad duration": ["seek", "--group", "g", "--topic", "t", "--by-duration", "P1H"],
    "negative duration": ["seek", "--group", "g", "--topic", "t", "--by-duration", "-PT1H"],
    "two scenarios": ["seek", "--group", "g", "--topic", "t", "--to-earliest", "--to-offset", "3"],
    "no scenario": ["seek", "--group", "g", "--topic", "t"],
    "no scope": ["seek", "--group", "g", "--to-latest"],
    "two scopes": ["seek", "--group", "g", "--topic", "t", "--all-topics", "--to-latest"],
    "dry run and execute": ["seek", "--group", "g", "--topic", "t", "--to-latest", "--dry-run", "--execute"],
    "bad group name": ["seek", "--group", "a/b", "--topic", "t", "--to-latest"],
    "bad --config key": ["topics", "create", "x", "--config", "retention_days=3"],
    "bad --config value": ["topics", "create", "x", "--config", "retention_ms=soon"],
    "--config out of range": ["topics", "create", "x", "--config", "segment_bytes=10"],
    "bad topic name": ["topics", "create", "no/slash"],
    "existing topic": ["topics", "create", "t"],
    "zero partitions": ["topics", "create", "x", "--partitions", "0"],
    "bad header": ["produce", "t", "--header", "novalue"],
    "bad --partitions": ["offsets", "t", "--partitions", "0,,1"],
    "missing file": ["produce", "t", "no-such-file.txt"],
    "unknown group": ["groups", "describe", "ghost"],
}


@pytest.mark.parametrize("args", list(BAD.values()), ids=list(BAD))
def test_user_mistakes_print_one_line_and_exit_non_zero(timed: Path, args: list[str]) -> None:
    before = committed(timed, "g")
    one_error_line(run(timed, *args))
    assert committed(timed, "g") == before
    with Admin(str(timed)) as admin:
        assert admin.list_topics() == ["t", "u"]


def test_a_missing_data_directory_is_one_line_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (
        ["topics", "list"],
        ["groups", "list"],
        ["consume", "t"],
        ["seek", "--group", "g", "--all-topics", "--to-latest"],
    ):
        assert "does not exist" in one_error_line(run(missing, *args))
    assert not missing.exists()


# ----------------------------------------------------------------------------- real processes


def cli(data: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "logq", "--data", str(data), *args],
        input=input, capture_output=True, env=env, timeout=60,
    )  # fmt: skip


def test_subprocess_create_produce_consume_round_trip(data: Path) -> None:
    assert cli(data, "topics", "create", "t", "--partitions", "2").returncode == 0
    p = cli(data, "produce", "t", "--key-separator", "\t", input=b"a\t1\nb\t2\nc\t3\n")
    assert p.returncode == 0 and p.stderr.decode().startswith("Produced 3 record(s) to t")
    c = cli(data, "consume", "t", "--from-beginning", "--format", "json", "--group", "g")
    assert c.returncode == 0
    got = sorted((o["key"], o["value"]) for o in map(json.loads, c.stdout.decode().splitlines()))
    assert got == [("a", "1"), ("b", "2"), ("c", "3")]
    assert sum(committed(data, "g").values()) == 3


def test_subprocess_error_is_one_line_without_traceback(data: Path) -> None:
    assert cli(data, "topics", "create", "t").returncode == 0
    r = cli(data, "seek", "--group", "g", "--topic", "t", "--by-duration", "P1Y")
    assert r.returncode == 2 and r.stdout == b""
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("logq: ") and "P1Y" in lines[0]
