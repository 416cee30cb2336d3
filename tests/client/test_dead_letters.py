"""Dead letters (KIP-1191's headers) written by DeadLetterWriter and a ShareConsumer, read back by
parse_dead_letter, and redriven to their source topics; a redrive killed with kill -9 at its
dangerous points loses no dead letter and repeats at most one chunk."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import textwrap
from collections import Counter

import logq
import pytest
from logq.client.dead_letters import DeadLetterWriter, dead_letter_headers, dead_letter_topics, parse_dead_letter
from logq.client.redrive import count_dead_letters, redrive, redrive_group, redrive_positions

DLQ_HEADERS = (
    "__dlq.errors.topic",
    "__dlq.errors.partition",
    "__dlq.errors.offset",
    "__dlq.errors.group",
    "__dlq.errors.reason",
    "__dlq.errors.delivery_count",
)


def make(root: str, *topics: str, partitions: int = 1) -> None:
    with logq.Admin(root) as a:
        for t in topics:
            a.create_topic(t, partitions=partitions)


def read_all(root: str, topic: str) -> list[logq.Record]:
    out: list[logq.Record] = []
    with logq.Consumer(root, topic, auto_offset_reset="earliest") as c:
        while batch := c.poll(timeout=0.2):
            out += batch
    return sorted(out, key=lambda r: (r.partition, r.offset))


def record(topic: str = "jobs", offset: int = 7, headers: tuple = ()) -> logq.Record:
    return logq.Record(topic, 0, offset, 1_700_000_000_000, b"k", b"v", headers)


def reject_some(root: str, n: int, group: str = "g", dlq: str = "dlq", partitions: int = 1) -> list[bytes]:
    """Produce n jobs with headers, reject the even ones through a ShareConsumer; their values."""
    with logq.Producer(root) as p:
        for i in range(n):
            p.send("jobs", b"job-%d" % i, key=b"key-%d" % i, headers={"trace": b"%d" % i}, partition=i % partitions)
    rejected = []
    with logq.ShareConsumer(
        root,
        "jobs",
        group_id=group,
        auto_offset_reset="earliest",
        dead_letter_topic=dlq,
        acknowledgement_mode="explicit",
    ) as sc:
        while recs := sc.poll(timeout=0):
            for r in recs:
                bad = int(r.value.split(b"-")[1]) % 2 == 0
                sc.acknowledge(r, "reject" if bad else "accept")
                if bad:
                    rejected.append(r.value)
        sc.commit()
    return sorted(rejected)


# ----------------------------------------------------------------------------- writing


def test_dead_letter_headers_are_kip_1191_plus_reason_and_count_in_ascii() -> None:
    assert dead_letter_headers("jobs", 3, 42, "workers", "delivery_limit", 5) == [
        ("__dlq.errors.topic", b"jobs"),
        ("__dlq.errors.partition", b"3"),
        ("__dlq.errors.offset", b"42"),
        ("__dlq.errors.group", b"workers"),
        ("__dlq.errors.reason", b"delivery_limit"),
        ("__dlq.errors.delivery_count", b"5"),
    ]


def test_a_copied_dead_letter_has_the_original_key_value_and_headers_then_the_dlq_headers(root: str) -> None:
    make(root, "dlq")
    original = record(headers=(("a", b"1"), ("empty", None), ("__dlq.errors.topic", b"older")))
    with logq.Producer(root) as p:
        w = DeadLetterWriter(p, "dlq", "g")
        w.write(original, "rejected", 2)
        w.flush()
    (dead,) = read_all(root, "dlq")
    assert (dead.key, dead.value) == (b"k", b"v")
    assert dead.headers[:2] == (("a", b"1"), ("empty", None))
    assert [k for k, _ in dead.headers[2:]] == list(DLQ_HEADERS)
    letter = parse_dead_letter(dead)
    assert letter is not None
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("jobs", 0, 7)
    assert (letter.group, letter.reason, letter.delivery_count, letter.copied) == ("g", "rejected", 2, True)


def test_copy_record_false_writes_only_the_dlq_headers(root: str) -> None:
    make(root, "dlq")
    with logq.Producer(root) as p:
        w = DeadLetterWriter(p, "dlq", "g", copy_record=False)
        w.write(record(headers=(("a", b"1"),)), "expired", 1)
        w.flush()
    (dead,) = read_all(root, "dlq")
    assert (dead.key, dead.value) == (None, None)
    assert [k for k, _ in dead.headers] == list(DLQ_HEADERS)
    letter = parse_dead_letter(dead)
    assert letter is not None and not letter.copied and letter.reason == "expired"


def test_a_record_without_the_kip_1191_headers_is_not_a_dead_letter() -> None:
    assert parse_dead_letter(record()) is None
    assert parse_dead_letter(record(headers=(("__dlq.errors.topic", b"jobs"), ("__dlq.errors.offset", b"x")))) is None
    assert parse_dead_letter(record(headers=tuple(dead_letter_headers("jobs", 0, 1, "g", "rejected", 1)))) is not None


@pytest.mark.parametrize(
    "reason, count, error",
    [("nope", 1, "reason='nope'"), ("rejected", -1, "delivery_count=-1"), ("rejected", True, "delivery_count=True")],
)
def test_writer_refuses_bad_reasons_and_counts(root: str, reason: str, count: object, error: str) -> None:
    make(root, "dlq")
    with logq.Producer(root) as p:
        w = DeadLetterWriter(p, "dlq", "g")
        with pytest.raises(logq.ConfigError, match=error):
            w.write(record(), reason, count)  # type: ignore[arg-type]
        w.flush()
    assert read_all(root, "dlq") == []


def test_writer_refuses_an_unknown_topic_a_bad_group_and_a_non_producer(root: str) -> None:
    make(root, "dlq")
    with logq.Producer(root) as p:
        with pytest.raises(logq.UnknownTopicError):
            DeadLetterWriter(p, "nope", "g")
        with pytest.raises(logq.InvalidGroupIdError):
            DeadLetterWriter(p, "dlq", "bad group")
        with pytest.raises(logq.ConfigError):
            DeadLetterWriter(p, "dlq", "g", copy_record="no")  # type: ignore[arg-type]
    with pytest.raises(logq.ConfigError, match="logq.Producer"):
        DeadLetterWriter(object(), "dlq", "g")  # type: ignore[arg-type]


def test_the_group_remembers_its_dead_letter_topics_once_each(root: str) -> None:
    make(root, "dlq", "dlq2")
    assert dead_letter_topics(root, "g") == []
    with logq.Producer(root) as p:
        DeadLetterWriter(p, "dlq", "g")
        DeadLetterWriter(p, "dlq", "g")
        DeadLetterWriter(p, "dlq2", "g")
    assert dead_letter_topics(root, "g") == ["dlq", "dlq2"]
    assert dead_letter_topics(root, "other") == []


def test_a_share_consumer_dead_letters_rejected_records_with_a_copy(root: str) -> None:
    make(root, "jobs", "dlq")
    rejected = reject_some(root, 6)
    dead = read_all(root, "dlq")
    assert sorted(r.value for r in dead) == rejected == [b"job-0", b"job-2", b"job-4"]
    for r in dead:
        letter = parse_dead_letter(r)
        assert letter is not None and letter.reason == "rejected" and letter.delivery_count == 1
        assert ("trace", r.value.split(b"-")[1]) in r.headers
    assert count_dead_letters(root, "dlq", "g") == (3, 3)


def test_a_share_consumer_with_dead_letter_copy_record_false_writes_headers_only(root: str) -> None:
    make(root, "jobs", "dlq")
    with logq.Producer(root) as p:
        p.send("jobs", b"job", key=b"k", headers={"trace": b"1"})
    with logq.ShareConsumer(
        root, "jobs", group_id="g", auto_offset_reset="earliest", dead_letter_topic="dlq", dead_letter_copy_record=False
    ) as sc:
        (r,) = sc.poll(timeout=1.0)
        sc.acknowledge(r, "reject")
        sc.commit()
    (dead,) = read_all(root, "dlq")
    assert (dead.key, dead.value) == (None, None) and [k for k, _ in dead.headers] == list(DLQ_HEADERS)
    assert redrive(root, "g")[0].redriven == 1  # read back from the source partition
    assert [(r.key, r.value, r.headers) for r in read_all(root, "jobs")] == [(b"k", b"job", (("trace", b"1"),))] * 2
    with pytest.raises(logq.ConfigError, match="dead_letter_copy_record"):
        logq.ShareConsumer(root, "jobs", group_id="g", dead_letter_topic="dlq", dead_letter_copy_record=1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- redrive


def test_redrive_sends_each_letter_back_once_without_the_dlq_headers(root: str) -> None:
    make(root, "jobs", "dlq", partitions=2)
    rejected = reject_some(root, 8, partitions=2)
    (report,) = redrive(root, "g")
    assert report.redriven == 4 and report.by_topic == Counter({"jobs": 4}) and report.missing == []
    again = [r for r in read_all(root, "jobs") if r.offset >= 4]  # each partition had 4 jobs
    assert sorted(r.value for r in again) == rejected
    for r in again:
        n = r.value.split(b"-")[1]
        assert r.key == b"key-" + n and r.headers == (("trace", n),)
        assert r.partition == int(n) % 2  # the original partition
    assert redrive(root, "g")[0].redriven == 0  # the position passed them
    assert count_dead_letters(root, "dlq", "g") == (4, 0)
    assert redrive_positions(root, "dlq", "g") == {0: 2, 1: 2}
    assert redrive_group("dlq", "g") in logq.Admin(root).list_groups()


def test_redrive_dry_run_lists_the_letters_and_changes_nothing(root: str) -> None:
    make(root, "jobs", "dlq")
    reject_some(root, 4)
    (report,) = redrive(root, "g", "dlq", dry_run=True)
    assert report.dry_run and report.redriven == 2
    assert [letter.source_offset for letter in report.letters] == [0, 2]
    assert len(read_all(root, "jobs")) == 4
    assert redrive_positions(root, "dlq", "g") == {}


def test_redrive_limit_stops_after_n_letters_and_the_next_run_goes_on(root: str) -> None:
    make(root, "jobs", "dlq")
    rejected = reject_some(root, 10)
    assert redrive(root, "g", limit=2)[0].redriven == 2
    assert redrive(root, "g", limit=2)[0].redriven == 2
    assert redrive(root, "g")[0].redriven == 1
    assert sorted(r.value for r in read_all(root, "jobs")[10:]) == rejected


def test_redrive_takes_only_its_groups_letters(root: str) -> None:
    make(root, "jobs", "dlq")
    reject_some(root, 4, group="a")
    reject_some(root, 4, group="b")  # b starts at the log start too: 8 jobs, 4 rejected
    (report,) = redrive(root, "a", "dlq")
    assert report.redriven == 2 and report.skipped == 4
    (report,) = redrive(root, "b", "dlq")
    assert report.redriven == 4 and report.skipped == 2


def test_a_letter_without_a_copy_is_read_from_its_source_or_reported_missing(root: str) -> None:
    make(root, "jobs", "dlq")
    with logq.Producer(root) as p:
        for i in range(3):
            p.send("jobs", b"job-%d" % i, headers={"trace": b"%d" % i})
        w = DeadLetterWriter(p, "dlq", "g", copy_record=False)
        for r in read_all(root, "jobs"):
            w.write(r, "delivery_limit", 5)
        w.flush()
    logq.Admin(root).delete_records("jobs", {0: 1})  # job-0 is gone from the source
    (report,) = redrive(root, "g")
    assert report.redriven == 2 and [m.source_offset for m in report.missing] == [0]
    assert [(r.value, r.headers) for r in read_all(root, "jobs")[2:]] == [
        (b"job-1", (("trace", b"1"),)),
        (b"job-2", (("trace", b"2"),)),
    ]


def test_a_letter_whose_source_topic_was_deleted_is_reported_missing(root: str) -> None:
    make(root, "jobs", "gone", "dlq")
    with logq.Producer(root) as p:
        w = DeadLetterWriter(p, "dlq", "g")
        w.write(record("gone", 0), "rejected", 1)
        w.write(record("jobs", 0), "rejected", 1)
        p.send("dlq", b"v", headers=dead_letter_headers("bad topic!", 0, 0, "g", "rejected", 1))
        w.flush()
    logq.Admin(root).delete_topic("gone")
    (report,) = redrive(root, "g")
    assert report.redriven == 1 and [m.source_topic for m in report.missing] == ["gone", "bad topic!"]
    assert redrive_positions(root, "dlq", "g") == {0: 3}


def test_an_expired_letter_is_redriven_without_its_expiry(root: str) -> None:
    make(root, "jobs", "dlq")
    with logq.Producer(root) as p:
        p.send("jobs", b"x", timestamp_ms=1_700_000_000_000, ttl_ms=1, headers={"a": b"1"})
    with logq.ShareConsumer(root, "jobs", group_id="g", auto_offset_reset="earliest", dead_letter_topic="dlq") as sc:
        assert sc.poll(timeout=0) == []
    assert redrive(root, "g")[0].redriven == 1
    assert read_all(root, "jobs")[-1].headers == (("a", b"1"),)


def test_redrive_misuse_raises_logq_errors(root: str) -> None:
    make(root, "dlq")
    with pytest.raises(logq.ConfigError, match="no dead-letter topic"):
        redrive(root, "g")
    with pytest.raises(logq.UnknownTopicError):
        redrive(root, "g", "nope")
    with pytest.raises(logq.ConfigError, match="limit=0"):
        redrive(root, "g", "dlq", limit=0)
    with pytest.raises(logq.ConfigError):
        redrive(root, "g", "dlq", dry_run="yes")  # type: ignore[arg-type]
    with pytest.raises(logq.InvalidGroupIdError):
        redrive(root, "no such/group", "dlq")
    with pytest.raises(logq.ConfigError, match="data_dir"):
        redrive(123, "g", "dlq")  # type: ignore[arg-type]
    with pytest.raises(logq.ConfigError, match="limit"):
        redrive(root, "g", "dlq", limit=1.5)  # type: ignore[arg-type]
    assert redrive(root, "g", "dlq")[0].redriven == 0
    assert redrive(pathlib.Path(root), "g", "dlq")[0].redriven == 0


def test_redrive_group_names_are_valid_and_distinct_for_look_alike_pairs() -> None:
    assert redrive_group("a.b", "c") != redrive_group("a", "b.c")
    long = redrive_group("t" * 249, "g" * 249)
    assert len(long) == 249 and long.startswith("__redrive.ttt")


_KILLED_REDRIVE = """
import os, signal, sys
from logq.client import redrive as m
m.CHUNK_RECORDS = 2
point = sys.argv[2]
commit = m._Run.commit
calls = []
def killing_commit(self, p, pos, store):
    calls.append(pos)
    if len(calls) == 3:
        if point == "before_flush":
            os.kill(os.getpid(), signal.SIGKILL)
        self.producer.flush()
        if point == "before_commit":
            os.kill(os.getpid(), signal.SIGKILL)
    commit(self, p, pos, store)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
m._Run.commit = killing_commit
m.redrive(sys.argv[1], "g")
"""


@pytest.mark.parametrize("point", ["before_flush", "before_commit", "after_commit"])
def test_a_redrive_killed_with_sigkill_loses_no_letter_and_repeats_at_most_a_chunk(root: str, point: str) -> None:
    make(root, "jobs", "dlq")
    rejected = reject_some(root, 20)  # 10 letters, 5 chunks of 2
    in_dlq = [r.value for r in read_all(root, "dlq")]
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_REDRIVE), root, point], check=False)
    assert child.returncode == -signal.SIGKILL
    assert redrive_positions(root, "dlq", "g") == {0: 4 if point != "after_commit" else 6}
    (report,) = redrive(root, "g")
    assert report.redriven == (6 if point != "after_commit" else 4)
    again = Counter(r.value for r in read_all(root, "jobs")[20:])
    assert set(again) == set(rejected)  # none lost
    repeated = sorted(v for v, n in again.items() if n > 1)
    if point == "before_commit":  # sent and flushed, the position not moved: the chunk again
        assert repeated == sorted(in_dlq[4:6])
    elif point == "before_flush":  # the linger thread may have written some of the chunk
        assert set(repeated) <= set(in_dlq[4:6])
    else:
        assert repeated == []
    assert max(again.values()) <= 2


def test_two_redrives_at_once_redrive_each_letter_once(root: str) -> None:
    make(root, "jobs", "dlq")
    rejected = reject_some(root, 40)
    code = "import sys; from logq.client.redrive import redrive; redrive(sys.argv[1], 'g')"
    procs = [subprocess.Popen([sys.executable, "-c", code, root]) for _ in range(2)]
    assert [p.wait() for p in procs] == [0, 0]
    assert sorted(r.value for r in read_all(root, "jobs")[40:]) == rejected


_LETTER_WRITER = """
import sys
import logq
from logq.client.dead_letters import DeadLetterWriter
with logq.Producer(sys.argv[1]) as p:
    w = DeadLetterWriter(p, "dlq", "g")
    for i in range(int(sys.argv[2])):
        w.write(logq.Record("jobs", 0, i, 0, None, b"letter-%d" % i, ()), "delivery_limit", 5)
        if i % 7 == 0:
            w.flush()
"""


def test_redrives_running_while_another_process_writes_letters_redrive_each_once(root: str) -> None:
    make(root, "jobs", "dlq")
    writer = subprocess.Popen([sys.executable, "-c", _LETTER_WRITER, root, "3000"])
    runs = 0
    while writer.poll() is None or runs == 0:
        redrive(root, "g", "dlq")
        runs += 1
    assert writer.returncode == 0
    redrive(root, "g", "dlq")  # the letters written after the last run's end snapshot
    values = [r.value for r in read_all(root, "jobs")]
    assert sorted(values) == sorted(b"letter-%d" % i for i in range(3000))  # each once, none lost
