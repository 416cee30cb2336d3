"""PartitionLog specification: appends, reads, rolls, indexes, time lookups, retention,
reopening, several writers and readers in one process, fsync and disk-full behaviour.

The checks follow Kafka's LogSegmentTest / UnifiedLogTest / LogLoaderTest (kafka-facts.md
section 8). Expected index bytes and answers come from the independent oracle in tests/support/oracle.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import struct
import time
from pathlib import Path

import pytest
from logq.codec.batch import encode_batch
from logq.errors import (
    DiskFullError,
    LogClosedError,
    LogFailedError,
    LogqError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from logq.storage.log import PartitionLog

from tests.support.logs import (
    T0,
    as_records,
    config,
    crash,
    force_full_recovery,
    open_log,
    read_all,
    rec,
)
from tests.support.oracle import (
    brute_offset_for_timestamp,
    expected_offset_index,
    expected_time_index,
    file_bytes,
    index_files,
    log_bases,
    read_state,
    records_on_disk,
    scan_dir,
    seg_name,
    seg_path,
)


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    return tmp_path / "orders-0"


# --------------------------------------------------------------------------- append / read


def test_append_read_round_trip_with_keys_headers_and_null_values(pdir: Path) -> None:
    inputs = [
        (b"k", b"v", (), T0),
        (None, b"no key", (), T0 + 1),
        (b"tombstone", None, (), T0 + 2),
        (None, None, (), T0 + 3),
        (b"", b"", (), T0 + 4),
        (b"h", b"v", (("a", b"1"), ("a", None), ("", b"")), T0 + 5),
        (b"\x00\xff" * 100, bytes(range(256)) * 20, (("unicode-\u00e9", b"\x00"),), T0 - 7),
    ]
    with open_log(pdir) as log:
        r1 = log.append(inputs[:3])
        r2 = log.append(inputs[3:])
        assert (r1.base_offset, r1.last_offset, r2.base_offset, r2.last_offset) == (0, 2, 3, 6)
        assert r1.position == 0 and r2.position > 0 and r1.segment == r2.segment == 0
        assert read_all(log) == as_records(0, inputs)
        assert log.log_end_offset == 7
    with open_log(pdir) as log:
        assert read_all(log) == as_records(0, inputs)


def test_append_values_shares_one_key_and_timestamp(pdir: Path) -> None:
    with open_log(pdir) as log:
        log.append_values([b"a", b"", b"c"], timestamp_ms=T0, key=b"K")
        log.append_values([b"d"], timestamp_ms=T0 + 9)
        got = read_all(log)
    assert got == as_records(
        0, [(b"K", b"a", (), T0), (b"K", b"", (), T0), (b"K", b"c", (), T0), (None, b"d", (), T0 + 9)]
    )


def test_append_batch_assigns_offsets_whatever_the_client_wrote(pdir: Path) -> None:
    with open_log(pdir) as log:
        log.append([rec(0)])
        res = log.append_batch(encode_batch([rec(1), rec(2)], base_offset=12345))
        assert (res.base_offset, res.last_offset) == (1, 2)
        assert [r.offset for r in read_all(log)] == [0, 1, 2]
        assert [b.header.base_offset for b in scan_dir(pdir)[0]] == [0, 1]


def test_read_from_the_middle_of_a_batch_skips_the_earlier_records(pdir: Path) -> None:
    inputs = [rec(i) for i in range(10)]
    with open_log(pdir) as log:
        log.append(inputs)
        for k in range(10):
            res = log.read(k)
            assert res.headers[0].base_offset == 0  # the whole batch comes back ...
            assert res.records() == as_records(0, inputs)[k:]  # ... but records start at k
            assert res.next_offset == 10


def test_read_at_the_log_end_returns_nothing(pdir: Path) -> None:
    with open_log(pdir) as log:
        res = log.read(0)
        assert (res.data, res.headers, res.next_offset, res.records()) == (b"", [], 0, [])
        log.append([rec(0), rec(1)])
        res = log.read(2)
        assert (res.data, res.headers, res.next_offset, res.records()) == (b"", [], 2, [])


@pytest.mark.parametrize("offset", [-1, 6, 100])
def test_out_of_range_read_raises_with_log_start_and_end(pdir: Path, offset: int) -> None:
    with open_log(pdir) as log:
        log.append([rec(i) for i in range(5)])
        with pytest.raises(OffsetOutOfRangeError) as ei:
            log.read(offset)
        assert (ei.value.offset, ei.value.log_start, ei.value.log_end) == (offset, 0, 5)


def test_read_below_the_log_start_raises_out_of_range(pdir: Path) -> None:
    with open_log(pdir) as log:
        for i in range(5):
            log.append([rec(i)])
        log.delete_records_before(3)
        with pytest.raises(OffsetOutOfRangeError) as ei:
            log.read(2)
        assert (ei.value.log_start, ei.value.log_end) == (3, 5)
        assert [r.offset for r in read_all(log)] == [3, 4]


def test_max_bytes_limits_a_fetch_to_whole_batches_but_returns_at_least_one(pdir: Path) -> None:
    with open_log(pdir) as log:
        for i in range(5):
            log.append([rec(i, size=100)])
        sizes = [b.header.size for b in scan_dir(pdir)[0]]
        res = log.read(0, max_bytes=1)  # smaller than one batch: still one batch
        assert [h.base_offset for h in res.headers] == [0] and res.next_offset == 1
        res = log.read(0, max_bytes=sizes[0] + sizes[1] + 10)
        assert [h.base_offset for h in res.headers] == [0, 1]
        assert len(res.data) == sizes[0] + sizes[1]


def test_record_too_large_is_refused_and_nothing_is_written(pdir: Path) -> None:
    with open_log(pdir, max_batch_bytes=1000) as log:
        log.append([rec(0)])
        before = file_bytes(seg_path(pdir, 0))
        with pytest.raises(RecordTooLargeError) as ei:
            log.append([rec(1, size=2000)])
        assert ei.value.limit == 1000 and ei.value.size > 1000
        assert file_bytes(seg_path(pdir, 0)) == before
        assert log.log_end_offset == 1
        assert log.append([rec(2)]).base_offset == 1


def test_append_to_a_closed_log_raises_log_closed(pdir: Path) -> None:
    log = open_log(pdir)
    log.close()
    with pytest.raises(LogClosedError):
        log.append([rec(0)])
    with pytest.raises(LogClosedError):
        log.read(0)


# --------------------------------------------------------------------------- rolling


def test_roll_when_the_next_batch_would_exceed_segment_bytes(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=1000) as log:
        batch_size = len(encode_batch([rec(0, size=100)]))
        for i in range(20):
            log.append([rec(i, size=100)])
        per_segment = 1000 // batch_size
        assert log_bases(pdir) == list(range(0, 20, per_segment))
        for base in log_bases(pdir):
            assert os.path.getsize(seg_path(pdir, base)) <= 1000
        assert [r.offset for r in read_all(log)] == list(range(20))


def test_a_batch_larger_than_segment_bytes_gets_a_segment_of_its_own(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=200) as log:
        log.append([rec(0)])
        log.append([rec(1, size=500)])
        log.append([rec(2)])
        assert log_bases(pdir) == [0, 1, 2]


def test_segment_files_are_named_by_20_digit_base_offsets(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=200, index_interval_bytes=0) as log:
        for i in range(3):
            log.append([rec(3 * i + j) for j in range(3)])
        log.roll()
    names = sorted(n for n in os.listdir(pdir) if n[0].isdigit())
    assert [n for n in names if n.endswith(".log")] == [
        "00000000000000000000.log",
        "00000000000000000003.log",
        "00000000000000000006.log",
        "00000000000000000009.log",
    ]
    assert all(len(n.split(".")[0]) == 20 for n in names)


def test_roll_on_segment_ms_uses_batch_timestamps_strictly(pdir: Path) -> None:
    with open_log(pdir, segment_ms=1000) as log:
        log.append([rec(0, ts=T0)])
        log.append([rec(1, ts=T0 + 1000)])  # exactly segment_ms later: no roll
        assert log_bases(pdir) == [0]
        log.append([rec(2, ts=T0 + 1001)])  # more than segment_ms after the first batch
        assert log_bases(pdir) == [0, 2]
        log.append([rec(3, ts=T0 + 1500)])
        assert log_bases(pdir) == [0, 2]
        log.append([rec(4, ts=T0 + 2002)])
        assert log_bases(pdir) == [0, 2, 4]


def test_roll_when_the_time_index_is_full_keeping_its_spare_slot(pdir: Path) -> None:
    # 24 bytes: 3 offset entries, 2 time entries of which one is spare.
    with open_log(pdir, segment_index_bytes=24, index_interval_bytes=0) as log:
        for i in range(6):
            log.append([rec(i, ts=T0 + i)])
        assert log_bases(pdir) == [0, 2, 4]
        log.roll()
    for base in (0, 2, 4):
        assert os.path.getsize(seg_path(pdir, base, ".timeindex")) <= 24


def test_roll_when_the_offset_index_is_full(pdir: Path) -> None:
    # 36 bytes: 4 offset entries, 3 time entries. Equal timestamps add one time entry only,
    # so the offset index fills first: 1 unindexed batch + 4 indexed ones per segment.
    with open_log(pdir, segment_index_bytes=36, index_interval_bytes=0) as log:
        for i in range(12):
            log.append([rec(i, ts=T0)])
        assert log_bases(pdir) == [0, 5, 10]
        assert os.path.getsize(seg_path(pdir, 0, ".index")) == 32


def test_explicit_roll_of_an_empty_active_segment_does_nothing(pdir: Path) -> None:
    with open_log(pdir) as log:
        log.roll()
        assert log_bases(pdir) == [0]
        log.append([rec(0)])
        log.roll()
        log.roll()
        assert log_bases(pdir) == [0, 1]
        assert log.append([rec(1)]).segment == 1


# --------------------------------------------------------------------------- indexes


@pytest.mark.parametrize("interval", [0, 1, 150, 500, 4096])
def test_index_entries_follow_kafkas_interval_rule(pdir: Path, interval: int) -> None:
    with open_log(pdir, index_interval_bytes=interval, segment_bytes=5000) as log:
        for i in range(60):
            n = 1 + i % 4
            log.append([rec(10 * i + j, ts=T0 + (i * 7919) % 500, size=(i * 37) % 90) for j in range(n)])
        log.roll()
    batches = scan_dir(pdir)
    assert len(batches) >= 3
    for base, bs in batches.items():
        assert file_bytes(seg_path(pdir, base, ".index")) == expected_offset_index(bs, base, interval)
        assert file_bytes(seg_path(pdir, base, ".timeindex")) == expected_time_index(bs, base, interval, final=True)


def test_first_batch_of_a_segment_never_gets_an_index_entry(pdir: Path) -> None:
    with open_log(pdir, index_interval_bytes=0) as log:
        log.append([rec(0)])
        assert file_bytes(seg_path(pdir, 0, ".index")) == b""
        log.append([rec(1), rec(2)])
        first_size = scan_dir(pdir)[0][0].header.size
        # entry = (last offset of the batch, position where the batch starts)
        assert file_bytes(seg_path(pdir, 0, ".index")) == struct.pack(">ii", 2, first_size)


# --------------------------------------------------------------------------- time lookups


def test_offset_for_timestamp_matches_kafkas_log_segment_example_across_segments(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=700, index_interval_bytes=100) as log:
        for i in range(50):
            log.append([(None, b"m%d" % i, (), i * 10)])
        assert log.num_segments > 3
        assert log.offset_for_timestamp(420) == 42
        assert log.offset_for_timestamp(421) == 43
        assert log.offset_for_timestamp(401) == 41
        assert log.offset_for_timestamp(399) == 40
        assert log.offset_for_timestamp(491) is None
        assert log.offset_for_timestamp(490) == 49
        assert log.offset_for_timestamp(0) == 0
        assert log.offset_for_timestamp(-100) == 0


@pytest.mark.parametrize("seed", range(4))
def test_offset_for_timestamp_equals_brute_force_with_non_monotonic_timestamps(pdir: Path, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    with open_log(pdir, segment_bytes=1500, index_interval_bytes=rnd.choice([0, 100, 400])) as log:
        for i in range(40):
            log.append([(None, b"x", (), rnd.randrange(0, 1000)) for _ in range(rnd.randrange(1, 5))])
        if seed % 2:
            log.delete_records_before(rnd.randrange(0, log.log_end_offset))
        records = read_all(log)
        for target in list(range(-1, 1002, 7)) + [r.timestamp for r in records]:
            assert log.offset_for_timestamp(target) == brute_offset_for_timestamp(records, target), target
    with open_log(pdir) as log:  # and from the reloaded indexes
        for target in range(-1, 1002, 13):
            assert log.offset_for_timestamp(target) == brute_offset_for_timestamp(records, target), target


def test_offset_for_timestamp_on_an_empty_log_is_none(pdir: Path) -> None:
    with open_log(pdir) as log:
        assert log.offset_for_timestamp(0) is None


# --------------------------------------------------------------------------- retention


# Rolls also enforce retention against the wall clock; records stamped a year ahead of it
# are never expired by that, so each test decides retention with an explicit now_ms.
TF = int(time.time() * 1000) + 365 * 24 * 3600 * 1000


def fill(log: PartitionLog, n: int, ts_of=lambda i: TF + i * 1000, size: int = 50) -> None:
    for i in range(n):
        log.append([rec(i, ts=ts_of(i), size=size)])


def test_retention_by_time_deletes_whole_oldest_segments_and_moves_the_log_start(pdir: Path) -> None:
    cfg = dict(segment_bytes=400, retention_ms=10_000)
    with open_log(pdir, **cfg) as log:
        fill(log, 30)
        bases = log_bases(pdir)
        assert len(bases) >= 4
        per = {
            b: [r.timestamp for r in records_on_disk(pdir) if b <= r.offset < nb]
            for b, nb in zip(bases, bases[1:] + [30])
        }
        now = max(per[bases[2]]) + 10_001  # segments 0..2 are older than 10 s, 3 is not
        assert log.enforce_retention(now_ms=now) == 3
        assert log_bases(pdir) == bases[3:]
        assert log.log_start_offset == bases[3]
        assert [r.offset for r in read_all(log)] == list(range(bases[3], 30))
    with open_log(pdir, **cfg) as log:
        assert log.log_start_offset == bases[3]
        assert read_state(pdir)["log_start_offset"] == bases[3]


def test_retention_never_deletes_the_active_segment(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=400, retention_ms=0, retention_bytes=0) as log:
        fill(log, 20)
        log.enforce_retention(now_ms=TF + 10**9)
        assert log.num_segments == 1
        active = log.active.base_offset
        assert log_bases(pdir) == [active] and log.log_start_offset == active
        assert [r.offset for r in read_all(log)] == list(range(active, 20))
        assert log.append([rec(99)]).base_offset == 20


def test_retention_by_bytes_keeps_at_most_the_limit_in_whole_segments(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=400, retention_bytes=900) as log:
        fill(log, 40)  # rolls enforce retention as they go
        log.enforce_retention()
        sizes = [os.path.getsize(seg_path(pdir, b)) for b in log_bases(pdir)]
        assert len(sizes) >= 2
        # Kafka's rule: a segment goes while (total - its size) >= retention_bytes.
        assert sum(sizes) - sizes[0] < 900
        assert log.log_start_offset == log_bases(pdir)[0]
        assert [r.offset for r in read_all(log)] == list(range(log.log_start_offset, 40))


def test_retention_by_time_stops_at_the_first_segment_too_young(pdir: Path) -> None:
    # Segment timestamps: old, young, old: only the first goes (oldest-first, stop at first miss).
    stamps = [TF] * 3 + [TF + 10**6] * 3 + [TF] * 3 + [TF] * 3
    with open_log(pdir, segment_bytes=10**6, retention_ms=1000) as log:
        for i, ts in enumerate(stamps):
            log.append([rec(i, ts=ts)])
            if i % 3 == 2:
                log.roll()
        assert log.enforce_retention(now_ms=TF + 5000) == 1
        assert log.log_start_offset == 3


def test_delete_records_before_moves_the_start_and_drops_whole_segments_only(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=400) as log:
        fill(log, 30)
        bases = log_bases(pdir)
        target = bases[2] + 1  # inside the third segment
        assert log.delete_records_before(target) == 2
        assert log_bases(pdir) == bases[2:]
        assert log.log_start_offset == target
        assert [r.offset for r in read_all(log)] == list(range(target, 30))
        with pytest.raises(OffsetOutOfRangeError):
            log.delete_records_before(target - 1)
        with pytest.raises(OffsetOutOfRangeError):
            log.delete_records_before(31)
        assert log.delete_records_before(30) == len(bases) - 3
    with open_log(pdir, segment_bytes=400) as log:
        assert log.log_start_offset == 30 and log.log_end_offset == 30
        assert read_all(log) == []
        assert log.append([rec(30)]).base_offset == 30


# --------------------------------------------------------------------------- close / reopen


def build_log(pdir: Path, **cfg) -> list:
    with open_log(pdir, **cfg) as log:
        for i in range(80):
            log.append([rec(10 * i + j, ts=T0 + (i * 7919) % 3000, size=(i * 13) % 70) for j in range(1 + i % 3)])
        return read_all(log)


def test_clean_reopen_skips_the_scan_and_reads_identically(pdir: Path) -> None:
    cfg = dict(segment_bytes=2000, index_interval_bytes=200)
    before = build_log(pdir, **cfg)
    assert read_state(pdir)["clean"] is True
    with open_log(pdir, **cfg) as log:
        assert log.report.clean and log.report.segments_recovered == 0 and log.report.indexes_rebuilt == 0
        assert read_all(log) == before
        for k in range(0, len(before), 7):
            assert log.read_records(k)[0] == before[k]


def test_index_files_after_a_clean_close_equal_a_full_rebuild(pdir: Path, tmp_path: Path) -> None:
    cfg = dict(segment_bytes=2000, index_interval_bytes=200)
    before = build_log(pdir, **cfg)
    clean = index_files(pdir)
    # The oracle: Kafka's rule applied to the log bytes.
    for base, bs in scan_dir(pdir).items():
        assert clean[seg_name(base, ".index")] == expected_offset_index(bs, base, 200)
        assert clean[seg_name(base, ".timeindex")] == expected_time_index(bs, base, 200, final=True)
    # The library's own rebuild of every segment gives the same bytes.
    other = tmp_path / "copy-0"
    shutil.copytree(pdir, other)
    for n in os.listdir(other):
        if n.endswith((".index", ".timeindex")):
            os.unlink(other / n)
    force_full_recovery(other)
    with open_log(other, **cfg) as log:
        assert not log.report.clean and log.report.segments_recovered == len(log_bases(other))
        assert read_all(log) == before
    assert index_files(other) == clean


def test_reopen_after_a_crash_rebuilds_the_active_index_identically(pdir: Path) -> None:
    cfg = dict(segment_bytes=2000, index_interval_bytes=200)
    log = open_log(pdir, **cfg)
    for i in range(60):
        log.append([rec(i, ts=T0 + (i * 37) % 500)])
    before = read_all(log)
    crash(log)
    assert read_state(pdir)["clean"] is False
    with open_log(pdir, **cfg) as log:
        assert not log.report.clean and log.report.segments_recovered == 1
        assert read_all(log) == before
    for base, bs in scan_dir(pdir).items():
        assert file_bytes(seg_path(pdir, base, ".index")) == expected_offset_index(bs, base, 200)
        assert file_bytes(seg_path(pdir, base, ".timeindex")) == expected_time_index(bs, base, 200, final=True)


def test_clean_reopen_with_an_empty_active_segment_rebuilds_nothing(pdir: Path) -> None:
    with open_log(pdir, index_interval_bytes=0) as log:
        for i in range(4):
            log.append([rec(i)])
        log.roll()
    assert file_bytes(seg_path(pdir, 4, ".timeindex")) == b""
    with open_log(pdir, index_interval_bytes=0) as log:
        assert log.report.clean and log.report.indexes_rebuilt == 0 and log.report.notes == []
        assert log.append([rec(4)]).base_offset == 4
        assert [r.offset for r in read_all(log)] == list(range(5))


def test_records_without_timestamps_reopen_without_index_rebuilds(pdir: Path) -> None:
    # Timestamp -1 is Kafka's "no timestamp": such batches never add time-index entries.
    cfg = dict(index_interval_bytes=0, segment_bytes=400)
    with open_log(pdir, **cfg) as log:
        for i in range(12):
            log.append([rec(i, ts=-1)])
        assert log.num_segments >= 3
    with open_log(pdir, **cfg) as log:
        assert log.report.clean and log.report.indexes_rebuilt == 0
        assert [log.read_records(k)[0].offset for k in range(12)] == list(range(12))
        assert log.offset_for_timestamp(0) is None
        assert log.report.indexes_rebuilt == 0  # sealed segments' indexes passed verification
    for base, bs in scan_dir(pdir).items():
        assert file_bytes(seg_path(pdir, base, ".index")) == expected_offset_index(bs, base, 0)
        assert file_bytes(seg_path(pdir, base, ".timeindex")) == b""


# --------------------------------------------------------------------------- several handles


def test_two_writers_in_one_process_interleave_with_contiguous_offsets(pdir: Path) -> None:
    cfg = dict(segment_bytes=600, index_interval_bytes=100)
    a = open_log(pdir, **cfg)
    b = open_log(pdir, **cfg)
    expect = []
    for i in range(40):
        w = a if (i * 7) % 3 else b
        n = 1 + i % 3
        inputs = [rec(100 * i + j) for j in range(n)]
        res = w.append(inputs)
        assert res.base_offset == len(expect)
        expect.extend(as_records(len(expect), inputs))
        if i % 11 == 5:
            (b if w is a else a).roll()
    # Each writer catches up under the lock with its next operation.
    a.roll()
    b.roll()
    assert read_all(a) == expect and read_all(b) == expect
    assert a.log_end_offset == b.log_end_offset == len(expect)
    assert records_on_disk(pdir) == expect
    a.close()
    b.close()
    with open_log(pdir, **cfg) as log:
        assert log.report.clean
        assert read_all(log) == expect


def test_writer_behind_another_writers_retention_appends_at_the_log_end_not_into_a_deleted_segment(pdir: Path) -> None:
    # Regression: b knew only segment 0; a filled several segments and deleted the first two.
    # b's catch-up kept its (deleted) segment 0 and rolled a new segment 3 below the log start.
    cfg = dict(segment_bytes=400)
    a, b = open_log(pdir, **cfg), open_log(pdir, **cfg)
    fill(a, 20)
    bases = log_bases(pdir)
    a.delete_records_before(bases[2])
    assert b.append([rec(20)]).base_offset == 20
    assert b.log_start_offset == bases[2]
    assert log_bases(pdir) == bases[2:]
    with pytest.raises(OffsetOutOfRangeError):
        b.read(0)
    assert [r.offset for r in read_all(b)] == list(range(bases[2], 21))
    assert a.append([rec(21)]).base_offset == 21
    a.close()
    b.close()
    with open_log(pdir, **cfg) as log:
        assert [r.offset for r in read_all(log)] == list(range(bases[2], 22))


def test_reader_behind_a_writers_retention_follows_the_log_start_and_end(pdir: Path) -> None:
    cfg = dict(segment_bytes=400)
    w = open_log(pdir, **cfg)
    w.append([rec(0)])
    r = PartitionLog(str(pdir), config(**cfg), readonly=True)
    assert r.log_end_offset == 1
    fill(w, 20)
    bases = log_bases(pdir)
    w.delete_records_before(bases[2])
    assert r.log_end_offset == 21
    assert r.log_start_offset == bases[2]
    assert [x.offset for x in read_all(r)] == list(range(bases[2], 21))
    r.close()
    w.close()


def test_a_readonly_reader_sees_new_batches_and_segments_as_they_land(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=500) as w:
        w.append([rec(0)])
        r = PartitionLog(str(pdir), config(segment_bytes=500), readonly=True)
        try:
            assert r.log_end_offset == 1
            for i in range(1, 25):
                w.append([rec(i)])
                assert r.log_end_offset == i + 1
                assert r.read_records(i) == read_all(w)[i:]
            assert len(log_bases(pdir)) > 2
            assert read_all(r) == read_all(w)
            with pytest.raises(LogqError):
                r.append([rec(99)])
        finally:
            r.close()


def test_a_readonly_reader_never_sees_a_partial_batch(pdir: Path) -> None:
    with open_log(pdir) as w:
        w.append([rec(0)])
        r = PartitionLog(str(pdir), config(), readonly=True)
        whole = encode_batch([rec(1), rec(2)], base_offset=1)
        with open(seg_path(pdir, 0), "ab") as f:  # a writer caught half way through
            f.write(whole[: len(whole) // 2])
        assert r.log_end_offset == 1
        assert r.read(1).headers == [] and r.read_records(1) == []
        assert read_all(r) == as_records(0, [rec(0)])
        with open(seg_path(pdir, 0), "ab") as f:
            f.write(whole[len(whole) // 2 :])
        assert r.log_end_offset == 3
        assert read_all(r) == as_records(0, [rec(0), rec(1), rec(2)])
        r.close()


def test_a_readonly_reader_never_changes_a_file(pdir: Path) -> None:
    with open_log(pdir, segment_bytes=500, index_interval_bytes=0) as w:
        for i in range(20):
            w.append([rec(i)])
    with open(seg_path(pdir, log_bases(pdir)[-1]), "ab") as f:
        f.write(b"\x00" * 100)  # a tail a writer would cut
    os.unlink(seg_path(pdir, 0, ".index"))
    snapshot = {n: file_bytes(str(pdir / n)) for n in os.listdir(pdir)}
    r = PartitionLog(str(pdir), config(segment_bytes=500), readonly=True)
    assert [x.offset for x in read_all(r)] == list(range(20))
    r.offset_for_timestamp(T0 + 5)
    r.close()
    assert {n: file_bytes(str(pdir / n)) for n in os.listdir(pdir)} == snapshot


# --------------------------------------------------------------------------- fsync / disk full


def test_fsync_always_fdatasyncs_every_append(pdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    with open_log(pdir, fsync="always") as log:
        n0 = len(calls)
        for i in range(5):
            log.append([rec(i)])
            assert len(calls) == n0 + i + 1
        assert log.recovery_point == 5


def test_fsync_never_does_not_fdatasync_appends(pdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(fd))
    with open_log(pdir, fsync="never") as log:
        n0 = len(calls)
        for i in range(5):
            log.append([rec(i)])
        assert len(calls) == n0


def test_a_failed_fsync_fails_the_log_until_it_is_reopened(pdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(pdir, fsync="always")
    log.append([rec(0)])
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(LogFailedError):
        log.append([rec(1)])
    monkeypatch.setattr(os, "fdatasync", real)  # "retrying" would now succeed: it must not be tried
    for op in (lambda: log.append([rec(2)]), log.flush, lambda: log.read(0), log.roll):
        with pytest.raises(LogFailedError):
            op()
    log.close()
    assert read_state(pdir)["clean"] is False  # a failed log never claims a clean shutdown
    with open_log(pdir, fsync="always") as log:
        assert not log.report.clean
        nxt = log.log_end_offset
        assert nxt in (1, 2)  # the failed batch may or may not have reached the disk
        assert log.append([rec(3)]).base_offset == nxt
        assert [r.offset for r in read_all(log)] == list(range(nxt + 1))


def test_a_failed_flush_fails_the_log(pdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(pdir)
    log.append([rec(0)])
    monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(LogFailedError):
        log.flush()
    monkeypatch.undo()
    with pytest.raises(LogFailedError):
        log.append([rec(1)])
    log.close()


def enospc_after(n_ok: int, partial: bool = False):
    """A pwrite that succeeds n_ok times, then (optionally writes a part and) hits ENOSPC."""
    real = os.pwrite
    state = {"calls": 0}

    def pwrite(fd, data, pos):
        state["calls"] += 1
        if state["calls"] <= n_ok:
            return real(fd, data, pos)
        if partial and state["calls"] == n_ok + 1 and len(data) > 1:
            return real(fd, bytes(data)[: len(data) // 2], pos)
        raise OSError(errno.ENOSPC, "No space left on device")

    return pwrite


@pytest.mark.parametrize("partial", [False, True], ids=["nothing-written", "half-written"])
def test_disk_full_on_the_log_write_raises_leaves_nothing_partial_and_appends_resume(
    pdir: Path, monkeypatch: pytest.MonkeyPatch, partial: bool
) -> None:
    log = open_log(pdir, index_interval_bytes=0)
    log.append([rec(0)])
    log.append([rec(1)])
    size = os.path.getsize(seg_path(pdir, 0))
    monkeypatch.setattr(os, "pwrite", enospc_after(0, partial))
    with pytest.raises(DiskFullError):
        log.append([rec(2, ts=T0 + 50)])
    monkeypatch.undo()
    assert os.path.getsize(seg_path(pdir, 0)) == size  # nothing partial visible
    assert log.log_end_offset == 2
    assert read_all(log) == as_records(0, [rec(0), rec(1)])
    reader = PartitionLog(str(pdir), config(), readonly=True)
    assert reader.log_end_offset == 2
    reader.close()
    assert log.append([rec(3)]).base_offset == 2
    assert read_all(log) == as_records(0, [rec(0), rec(1), rec(3)])
    log.close()
    with open_log(pdir, index_interval_bytes=0) as log:
        assert read_all(log) == as_records(0, [rec(0), rec(1), rec(3)])
        for k in range(3):
            assert log.read_records(k)[0].offset == k
        assert log.offset_for_timestamp(T0 + 3) == 2
    bs = scan_dir(pdir)[0]
    assert file_bytes(seg_path(pdir, 0, ".index")) == expected_offset_index(bs, 0, 0)
    assert file_bytes(seg_path(pdir, 0, ".timeindex")) == expected_time_index(bs, 0, 0, final=True)


@pytest.mark.parametrize("n_ok,partial", [(1, False), (1, True), (2, False), (2, True)])
def test_disk_full_on_an_index_write_keeps_the_batch_and_reopen_rebuilds_the_index(
    pdir: Path, monkeypatch: pytest.MonkeyPatch, n_ok: int, partial: bool
) -> None:
    # index_interval_bytes=0: an append writes the .log, then the .index (n_ok=1 fails it),
    # then the .timeindex (n_ok=2 fails it). The batch is in the log: the append succeeds,
    # the index only misses an entry (it is a cache).
    log = open_log(pdir, index_interval_bytes=0)
    log.append([rec(0)])
    log.append([rec(1)])
    monkeypatch.setattr(os, "pwrite", enospc_after(n_ok, partial))
    assert log.append([rec(2, ts=T0 + 50)]).base_offset == 2
    monkeypatch.undo()
    assert log.append([rec(3)]).base_offset == 3
    want = as_records(0, [rec(0), rec(1), rec(2, ts=T0 + 50), rec(3)])
    assert read_all(log) == want
    assert [log.read_records(k)[0] for k in range(4)] == want
    log.close()
    with open_log(pdir, index_interval_bytes=0) as log:
        assert [log.read_records(k)[0] for k in range(4)] == want
        assert log.offset_for_timestamp(T0 + 4) == 2
    bs = scan_dir(pdir)[0]
    assert file_bytes(seg_path(pdir, 0, ".index")) == expected_offset_index(bs, 0, 0)
    assert file_bytes(seg_path(pdir, 0, ".timeindex")) == expected_time_index(bs, 0, 0, final=True)


# --------------------------------------------------------------------------- permissions


def test_partition_directory_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    pdir = tmp_path / "orders-3"
    with open_log(pdir, segment_bytes=300, index_interval_bytes=0) as log:
        for i in range(10):
            log.append([rec(i)])
    assert stat.S_IMODE(os.stat(pdir).st_mode) == 0o700
    names = os.listdir(pdir)
    assert any(n.endswith(".index") for n in names) and "logq.state" in names
    for n in names:
        assert stat.S_IMODE(os.stat(pdir / n).st_mode) == 0o600, n
