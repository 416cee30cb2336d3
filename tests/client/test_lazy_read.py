"""The consumer's lazy read path (issue 11 part 2): a poll reads and decodes only what it
returns (plus the rest of the last batch it needed), keeps the rest for the next poll, and
returns exactly the records an eager read of the whole log returns.

Behaviour is asserted through ``Consumer.read_stats()`` (bytes read from segment files,
records decoded), never through time. Each test runs with the pure and the compiled codec.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from logq import Admin, Consumer, CorruptRecordError, Record, TopicPartition
from logq.client.consumer import FIRST_FETCH_BYTES
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

TP = TopicPartition("t", 0)
RECORDS = 20_000
BATCH = 1000
VALUE = 100


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Record]]:
    """A topic of 20,000 records of 100 B in batches of 1,000 (some keyed, some with headers),
    and every record as an eager read of the whole log decodes it."""
    root = str(tmp_path_factory.mktemp("lazy") / "data")
    with Admin(root) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
    with PartitionLog(partition_path(root, "t", 0)) as log:
        for b in range(RECORDS // BATCH):
            recs = []
            for i in range(BATCH):
                n = b * BATCH + i
                key = None if n % 3 else b"k%d" % n
                headers = [("h", b"%d" % n)] if n % 7 == 0 else None
                recs.append((key, (b"%06d" % n).ljust(VALUE, b"."), headers, 1_700_000_000_000 + n))
            log.append(recs)
        everything = log.read(0, 1 << 30).records(origin=(Record, "t", 0))
    assert len(everything) == RECORDS
    return root, everything


def consumer(root: str, **kw: object) -> Consumer:
    return Consumer(root, "t", auto_offset_reset="earliest", **kw)  # type: ignore[arg-type]


def test_replay_then_one_record_reads_and_decodes_one_batch(codec: str, data: tuple[str, list[Record]]) -> None:
    root, everything = data
    with consumer(root) as c:
        c.replay_from(offset=10_500)
        got = c.poll(1.0, max_records=1)
        assert got == everything[10_500:10_501]
        st = c.read_stats()
        # one fetch: the small first read, extended to the one batch holding the offset
        assert st["fetches"] == 1
        assert st["bytes_read"] <= max(FIRST_FETCH_BYTES, 2 * BATCH * (VALUE + 40))
        assert st["bytes_read"] < c.fetch_max_bytes // 4
        # the batch is decoded from the offset on (the records below it are checked, not built)
        assert st["batches_decoded"] == 1
        assert st["records_decoded"] == 500
        # with the compiled codec into columns: only the record returned becomes an object
        assert st["records_built"] == (1 if codec == "compiled" else 500)
        assert c.position(TP) == 10_501


def test_the_rest_of_the_batch_is_kept_for_the_next_poll(codec: str, data: tuple[str, list[Record]]) -> None:
    root, everything = data
    with consumer(root) as c:
        c.seek(TP, 3_000)
        assert c.poll(1.0, max_records=1) == everything[3_000:3_001]
        before = c.read_stats()
        assert c.poll(1.0, max_records=10) == everything[3_001:3_011]
        after = c.read_stats()
        assert after.pop("records_built") == before.pop("records_built") + (10 if codec == "compiled" else 0)
        assert after == before  # nothing read, nothing decoded again
        got = c.poll(1.0, max_records=1000)  # the rest of the batch, then reads on
        assert got == everything[3_011:4_011]
        after = c.read_stats()
        assert after["fetches"] == before["fetches"] + 1
        assert after["batches_decoded"] == before["batches_decoded"] + 1


def test_fetches_grow_while_reading_on_and_restart_small_after_a_seek(
    codec: str, data: tuple[str, list[Record]]
) -> None:
    root, everything = data
    with consumer(root, max_poll_records=1) as c:
        sizes = []
        for _ in range(6):
            before = c.read_stats()["bytes_read"]
            while c.read_stats()["bytes_read"] == before:
                c.poll(1.0)
            sizes.append(c.read_stats()["bytes_read"] - before)
        assert sizes[-1] > sizes[0]  # later fetches read more at once
        assert max(sizes) <= c.fetch_max_bytes + BATCH * (VALUE + 40)
        c.seek(TP, 15_000)
        before = c.read_stats()["bytes_read"]
        assert c.poll(1.0) == everything[15_000:15_001]
        assert c.read_stats()["bytes_read"] - before < sizes[-1]


def test_a_drain_reads_each_byte_about_once(codec: str, data: tuple[str, list[Record]]) -> None:
    root, everything = data
    with consumer(root) as c:
        out: list[Record] = []
        while len(out) < RECORDS:
            got = c.poll(1.0, max_records=700)
            assert got
            out.extend(got)
        assert out == everything
        st = c.read_stats()
        with PartitionLog(partition_path(root, "t", 0), readonly=True) as log:
            total = log.size_bytes
        assert st["records_decoded"] == RECORDS
        assert st["batches_decoded"] == RECORDS // BATCH
        assert st["bytes_read"] <= total * 1.5  # a cut-off batch at a fetch's end is read again


def test_random_seeks_and_polls_return_what_an_eager_read_returns(codec: str, data: tuple[str, list[Record]]) -> None:
    root, everything = data
    rng = random.Random(11)
    with consumer(root) as c:
        pos = 0
        for _ in range(200):
            if rng.random() < 0.3:
                pos = rng.randrange(0, RECORDS)
                c.seek(TP, pos)
            n = rng.choice([1, 2, 17, 500, 999, 1000, 1001, 2500])
            got = c.poll(1.0, max_records=n)
            want = everything[pos : pos + n]
            assert got == want, (pos, n)
            pos += len(got)
            if pos >= RECORDS:
                pos = rng.randrange(0, RECORDS)
                c.seek(TP, pos)
            assert c.position(TP) == pos


@pytest.mark.parametrize("columns", [False, True], ids=["poll", "poll_columns"])
def test_records_before_damage_are_returned_before_the_error(codec: str, tmp_path: Path, columns: bool) -> None:
    """A poll that reads on into a damaged batch returns what it read first; the next raises."""
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
    with PartitionLog(partition_path(root, "t", 0)) as log:
        for b in range(40):
            log.append_values([b"%05d" % (b * 100 + i) for i in range(100)], timestamp_ms=1_700_000_000_000)
        size = log.size_bytes
    path = os.path.join(partition_path(root, "t", 0), "00000000000000000000.log")
    with open(path, "r+b") as f:  # inside the last batch's records: a CRC-covered byte
        f.seek(size - 3)
        byte = f.read(1)
        f.seek(size - 3)
        f.write(bytes([byte[0] ^ 0xFF]))
    with consumer(root) as c:
        got = c.poll_columns(1.0, max_records=10_000) if columns else c.poll(1.0, max_records=10_000)
        assert [r.offset for r in got] == list(range(3_900))
        with pytest.raises(CorruptRecordError):
            c.poll_columns(1.0) if columns else c.poll(1.0)
        assert c.position(TP) == 3_900


def test_a_poll_that_reaches_the_log_end_does_not_read_again(codec: str, tmp_path: Path) -> None:
    """A consumer following the end: the poll that takes the last records must not fetch a
    second time (that read finds nothing but pays a catch-up on every wake-up)."""
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("t", 1, retention_ms=-1)
    with PartitionLog(partition_path(root, "t", 0)) as log, Consumer(root) as consumer:
        consumer.assign([TP])
        consumer.seek(TP, 0)
        for n in range(1, 4):
            log.append_values([b"v%d" % n] * 10)
            before = consumer.read_stats()["fetches"]
            got = consumer.poll(timeout=1.0, max_records=500)
            assert [r.offset for r in got] == list(range((n - 1) * 10, n * 10))
            assert consumer.read_stats()["fetches"] - before == 1
