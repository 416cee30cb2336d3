"""Corruption injection on closed partitions (reliability.md T4), deterministic.

Each class of damage has one expected outcome (the table in docs/durability.md):

- a torn tail above the recovery point (a crash mid-append) is cut at the last valid batch;
- damage below the recovery point (data once known durable) is kept and reported: reads of
  it raise CorruptRecordError(path, position), data before it stays readable, and only
  ``repair=True`` cuts it;
- zero bytes are never decoded as records;
- no read ever returns a record that differs from what was appended;
- indexes are caches: any damaged index is rebuilt, lookups equal brute force and retention
  decides exactly as with a clean index;
- leftovers (temporary files, orphan indexes) are removed on open.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from logq.codec.batch import BatchRecord as Record
from logq.errors import CorruptRecordError
from logq.storage.log import PartitionLog

from tests.support.logs import (
    T0,
    as_records,
    config,
    crash,
    open_log,
    read_all,
    rec,
    write_state,
)
from tests.support.oracle import (
    batch_positions,
    brute_offset_for_timestamp,
    expected_offset_index,
    expected_time_index,
    file_bytes,
    log_bases,
    read_state,
    scan_dir,
    seg_name,
    seg_path,
)

pytestmark = pytest.mark.usefixtures("no_fsync")  # process crashes only: fsync changes nothing observable


CFG = dict(segment_bytes=1000, index_interval_bytes=150)
N = 15  # batches of ~207 bytes, one record each: segments 0, 4, 8 sealed, 12 active (3 batches)


def ts_of(i: int) -> int:
    """Per segment of 4: timestamps out of order, so no segment's maximum is its last batch."""
    return T0 + 10_000 * (i // 4) + 100 * ((i * 3) % 4)


def build(pdir: Path, clean: bool, n: int = N) -> list[Record]:
    log = open_log(pdir, **CFG)
    for i in range(n):
        log.append([rec(i, ts=ts_of(i), size=130)])
    records = read_all(log)
    if clean:
        log.close()
    else:
        crash(log)
    assert log_bases(pdir) == [0, 4, 8, 12][: (n + 3) // 4]
    return records


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Record]]]:
    root = tmp_path_factory.mktemp("pristine")
    out = {}
    for kind in ("clean", "crashed"):
        p = root / f"{kind}-0"
        out[kind] = (p, build(p, clean=kind == "clean"))
    return out


def fresh(src: Path, dst: Path) -> Path:
    """Make ``dst`` a copy of ``src``, rewriting only the files that differ (sweeps are fast)."""
    if not dst.is_dir():
        shutil.copytree(src, dst)
        return dst
    want = {n: file_bytes(str(src / n)) for n in os.listdir(src)}
    for n in os.listdir(dst):
        if n not in want:
            os.unlink(dst / n)
    for n, data in want.items():
        if file_bytes(str(dst / n)) != data or not (dst / n).exists():
            (dst / n).write_bytes(data)
    return dst


def check_reads(log: PartitionLog, records: list[Record]) -> set:
    """Read every offset one batch at a time; return the offsets that raise CorruptRecordError.

    Whatever comes back must equal what was appended: no corrupt record is ever returned.
    """
    bad = set()
    for off in range(log.log_start_offset, log.log_end_offset):
        try:
            got = log.read_records(off, max_bytes=1)
        except CorruptRecordError:
            bad.add(off)
            continue
        assert got, f"read({off}) returned nothing below the log end"
        assert got == records[off - records[0].offset : off - records[0].offset + len(got)], off
    return bad


def flip(path: str, pos: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ (1 << bit)]))


# --------------------------------------------------------------------------- T4.1 truncation


def test_torn_last_batch_cut_at_every_byte_after_a_crash_is_trimmed_and_the_log_goes_on(
    pristine, tmp_path: Path
) -> None:
    src, records = pristine["crashed"]
    active = log_bases(src)[-1]
    last_pos, last_h = batch_positions(src, active)[-1]
    assert 150 <= last_h.size <= 250
    base = last_h.base_offset
    cuts = range(last_pos, last_pos + last_h.size)
    for c in cuts:
        work = fresh(src, tmp_path / "w-0")
        os.truncate(seg_path(work, active), c)
        with open_log(work, **CFG) as log:
            assert not log.report.clean and log.corruption is None and log.report.corruption is None
            assert log.log_end_offset == base, c
            assert os.path.getsize(seg_path(work, active)) == last_pos
            assert log.report.bytes_truncated == c - last_pos
            assert read_all(log) == records[:base]
            assert log.append([rec(99)]).base_offset == base
            assert log.read_records(base) == as_records(base, [rec(99)])
    assert len(cuts) == last_h.size


def test_cuts_inside_earlier_batches_of_the_active_segment_keep_exactly_the_whole_batches_before(
    pristine, tmp_path: Path
) -> None:
    src, records = pristine["crashed"]
    active = log_bases(src)[-1]
    batches = batch_positions(src, active)
    end = batches[-1][0] + batches[-1][1].size
    for c in range(0, end, 5):
        work = fresh(src, tmp_path / "w-0")
        os.truncate(seg_path(work, active), c)
        pos, h = [(p, h) for p, h in batches if p <= c][-1]
        with open_log(work, **CFG) as log:
            assert log.log_end_offset == h.base_offset, c
            assert os.path.getsize(seg_path(work, active)) == pos
            assert read_all(log) == records[: h.base_offset]
            assert log.append([rec(99)]).base_offset == h.base_offset


def test_the_trim_of_a_torn_tail_is_fsynced(pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = pristine["crashed"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    last_pos, _ = batch_positions(work, active)[-1]
    os.truncate(seg_path(work, active), last_pos + 30)
    events: list[tuple[str, int]] = []
    real_trunc, real_fsync = os.ftruncate, os.fsync
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (events.append(("ftruncate", fd)), real_trunc(fd, n))[1])
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", fd)), real_fsync(fd))[1])
    log = open_log(work, **CFG)
    monkeypatch.undo()
    i = next(i for i, e in enumerate(events) if e[0] == "ftruncate")
    assert ("fsync", events[i][1]) in events[i + 1 :]
    log.close()


def test_torn_tail_cut_when_the_crash_followed_a_reboot(pristine, tmp_path: Path) -> None:
    src, records = pristine["crashed"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    last_pos, last_h = batch_positions(work, active)[-1]
    os.truncate(seg_path(work, active), last_pos + 100)
    write_state(work, boot_id="another-boot")
    with open_log(work, **CFG) as log:
        assert log.corruption is None
        assert log.log_end_offset == last_h.base_offset
        assert read_all(log) == records[: last_h.base_offset]


def test_cut_of_a_durable_last_batch_after_a_clean_close_is_reported_and_kept_until_repair(
    pristine, tmp_path: Path
) -> None:
    src, records = pristine["clean"]
    active = log_bases(src)[-1]
    last_pos, last_h = batch_positions(src, active)[-1]
    base = last_h.base_offset
    path = seg_path(src, active)
    for c in range(last_pos + 1, last_pos + last_h.size, 3):
        work = fresh(src, tmp_path / "w-0")
        wpath = seg_path(work, active)
        os.truncate(wpath, c)
        with open_log(work, **CFG) as log:
            assert log.report.clean
            assert log.report.corruption is not None, c
            err = log.corruption
            assert isinstance(err, CorruptRecordError) and (err.path, err.position) == (wpath, last_pos)
            assert log.log_end_offset == base
            with pytest.raises(CorruptRecordError) as ei:
                log.read(base)
            assert (ei.value.path, ei.value.position) == (wpath, last_pos)
            assert read_all(log) == records[:base]
            with pytest.raises(CorruptRecordError):
                log.append([rec(99)])
            assert os.path.getsize(wpath) == c  # nothing cut, nothing appended
        with open_log(work, **CFG) as log:  # still there after a reopen
            assert log.corruption is not None and log.corruption.position == last_pos, c
            assert os.path.getsize(wpath) == c
        with PartitionLog(str(work), config(**CFG), repair=True) as log:
            assert log.corruption is None
            assert log.log_end_offset == base
            assert os.path.getsize(wpath) == last_pos
            assert log.report.bytes_truncated == c - last_pos
            assert log.append([rec(99)]).base_offset == base
        with open_log(work, **CFG) as log:
            assert log.report.clean and log.corruption is None and log.log_end_offset == base + 1
    assert os.path.getsize(path) == last_pos + last_h.size  # the source was never touched


def test_durable_last_batch_missing_whole_after_a_clean_close_is_reported(pristine, tmp_path: Path) -> None:
    # Regression: a cut exactly at a batch boundary below the recovery point was accepted
    # silently (no invalid bytes to find), losing a durable batch.
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    last_pos, last_h = batch_positions(work, active)[-1]
    os.truncate(seg_path(work, active), last_pos)
    with open_log(work, **CFG) as log:
        assert log.report.corruption is not None
        assert log.log_end_offset == last_h.base_offset
        with pytest.raises(CorruptRecordError):
            log.read(last_h.base_offset)
        with pytest.raises(CorruptRecordError):
            log.append([rec(99)])
        assert read_all(log) == records[: last_h.base_offset]
    with PartitionLog(str(work), config(**CFG), repair=True) as log:
        assert log.corruption is None
        assert log.append([rec(99)]).base_offset == last_h.base_offset


def test_regression_damage_below_the_recovery_point_is_not_cut_by_a_later_write_or_reopen(
    pristine, tmp_path: Path
) -> None:
    # The recovery point used to be lowered to the end of the valid prefix at open (and at
    # close), so the next append's catch-up, or the next open, cut the damage as a torn tail.
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    last_pos, last_h = batch_positions(work, active)[-1]
    os.truncate(seg_path(work, active), last_pos + 100)
    log = open_log(work, **CFG)
    assert read_state(work)["recovery_point"] == N
    with pytest.raises(CorruptRecordError):
        log.append([rec(99)])
    with pytest.raises(CorruptRecordError):
        log.append([rec(98)])
    assert os.path.getsize(seg_path(work, active)) == last_pos + 100
    log.close()
    assert read_state(work)["recovery_point"] == N and read_state(work)["clean"] is False
    crash(open_log(work, **CFG))
    with open_log(work, **CFG) as log:
        assert log.corruption is not None and log.corruption.position == last_pos
        assert os.path.getsize(seg_path(work, active)) == last_pos + 100


def test_regression_flipped_base_offset_is_never_returned_as_another_offset(pristine, tmp_path: Path) -> None:
    # baseOffset lies outside the CRC: batch 1 relabelled as offset 3 was served as record 3.
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    p1, h1 = batch_positions(work, 0)[1]
    assert h1.base_offset == 1
    flip(seg_path(work, 0), p1 + 7, 1)  # base offset 1 -> 3
    with open_log(work, **CFG) as log:
        for off in (3, 1, 2, 3):
            try:
                got = log.read_records(off)
            except CorruptRecordError as e:
                assert e.path == seg_path(work, 0)
                continue
            assert got == records[off : off + len(got)], off
        assert log.read_records(0, max_bytes=1) == records[:1]


# --------------------------------------------------------------------------- T4.2 zero tails


@pytest.mark.parametrize("k", [1, 11, 12, 17, 60, 61, 4096, 1 << 20, "preallocated"])
@pytest.mark.parametrize("kind", ["crashed", "clean"])
def test_zero_filled_tail_is_never_decoded_as_records(pristine, tmp_path: Path, k, kind: str) -> None:
    src, records = pristine[kind]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    path = seg_path(work, active)
    size = os.path.getsize(path)
    zeros = CFG["segment_bytes"] - size if k == "preallocated" else k
    with open(path, "ab") as f:
        f.write(bytes(zeros))
    reader = PartitionLog(str(work), config(**CFG), readonly=True)
    assert reader.log_end_offset == N
    assert read_all(reader) == records
    assert reader.read(N).headers == []
    reader.close()
    with open_log(work, **CFG) as log:
        assert log.corruption is None
        assert log.log_end_offset == N
        assert os.path.getsize(path) == size
        assert log.report.bytes_truncated == zeros
        assert read_all(log) == records
        assert log.append([rec(99)]).base_offset == N
    with open_log(work, **CFG) as log:
        assert log.report.clean
        assert read_all(log) == records + as_records(N, [rec(99)])


def test_lost_page_zeroing_the_last_batch_drops_only_that_batch(pristine, tmp_path: Path) -> None:
    src, records = pristine["crashed"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    last_pos, last_h = batch_positions(work, active)[-1]
    with open(seg_path(work, active), "r+b") as f:
        f.seek(last_pos)
        f.write(bytes(last_h.size))
    with open_log(work, **CFG) as log:
        assert log.log_end_offset == last_h.base_offset
        assert read_all(log) == records[: last_h.base_offset]


# --------------------------------------------------------------------------- T4.3 bit flips

# Batch 1 of sealed segment 0 (batch 0 stays intact before it).
REGIONS = {
    "baseOffset": [(p, b) for p in range(0, 8) for b in range(8)],
    "batchLength": [(p, b) for p in range(8, 12) for b in range(8)],
    "magic": [(16, b) for b in range(8)],
    "crc": [(p, b) for p in range(17, 21) for b in range(0, 8, 3)],
    "crc-covered": [(p, p % 8) for p in range(21, 200, 4)],
}


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_bit_flip_in_a_sealed_segment_is_never_returned_and_data_before_stays_readable(
    pristine, tmp_path: Path, region: str
) -> None:
    src, records = pristine["clean"]
    (p0, h0), (p1, h1) = batch_positions(src, 0)[:2]
    for rel, bit in REGIONS[region]:
        work = fresh(src, tmp_path / "w-0")
        flip(seg_path(work, 0), p1 + rel, bit)
        with open_log(work, **CFG) as log:
            assert log.log_end_offset == N
            bad = check_reads(log, records)
            assert h1.base_offset in bad, (region, rel, bit)
            assert all(o not in bad for o in range(h1.base_offset)), (region, rel, bit)
            assert all(o not in bad for o in range(8, N)), (region, rel, bit)  # later segments unaffected


def test_bit_flip_in_partition_leader_epoch_is_not_detectable_and_changes_no_record(pristine, tmp_path: Path) -> None:
    src, records = pristine["clean"]
    p1 = batch_positions(src, 0)[1][0]
    for rel in range(12, 16):
        work = fresh(src, tmp_path / "w-0")
        flip(seg_path(work, 0), p1 + rel, rel % 8)
        with open_log(work, **CFG) as log:
            assert check_reads(log, records) == set()


def test_bit_flip_in_a_sealed_segment_found_by_recovery_after_a_reboot_is_reported_not_cut(
    pristine, tmp_path: Path
) -> None:
    # After a reboot recovery scans from the segment holding the recovery point (6, in
    # segment 4); the flipped batch (offset 5) lies below it, so it was once durable.
    src, records = pristine["clean"]
    p1, h1 = batch_positions(src, 4)[1]
    work = fresh(src, tmp_path / "w-0")
    flip(seg_path(work, 4), p1 + 40, 2)
    write_state(work, clean=False, boot_id="another-boot", recovery_point=6)
    sizes = {b: os.path.getsize(seg_path(work, b)) for b in log_bases(work)}
    with open_log(work, **CFG) as log:
        assert log.report.corruption is not None
        assert log.corruption.path == seg_path(work, 4) and log.corruption.position == p1
        assert {b: os.path.getsize(seg_path(work, b)) for b in log_bases(work)} == sizes
        assert log.log_end_offset == N
        bad = check_reads(log, records)
        assert h1.base_offset in bad and all(o not in bad for o in range(h1.base_offset))
        assert log.append([rec(99)]).base_offset == N
        assert log.read_records(N) == as_records(N, [rec(99)])


def test_bit_flip_in_the_unflushed_tail_after_a_crash_cuts_from_the_bad_batch(pristine, tmp_path: Path) -> None:
    src, records = pristine["crashed"]
    work = fresh(src, tmp_path / "w-0")
    active = log_bases(work)[-1]
    (p0, h0) = batch_positions(work, active)[0]
    flip(seg_path(work, active), p0 + 70, 5)
    with open_log(work, **CFG) as log:
        assert log.corruption is None
        assert log.log_end_offset == h0.base_offset
        assert os.path.getsize(seg_path(work, active)) == p0
        assert read_all(log) == records[: h0.base_offset]


# --------------------------------------------------------------------------- T4.4 indexes


def _entries(path: str, size: int) -> list[bytes]:
    data = file_bytes(path)
    return [data[i : i + size] for i in range(0, len(data), size)]


def fault_deleted(path: str, other: str, esize: int) -> None:
    os.unlink(path)


def fault_truncated_odd(path: str, other: str, esize: int) -> None:
    os.truncate(path, max(1, os.path.getsize(path) - esize // 2))


def fault_truncated_whole(path: str, other: str, esize: int) -> None:
    os.truncate(path, os.path.getsize(path) - esize)


def fault_garbage(path: str, other: str, esize: int) -> None:
    rnd = random.Random(path)
    with open(path, "wb") as f:
        f.write(bytes(rnd.randrange(256) for _ in range(3 * esize)))


def fault_non_monotonic(path: str, other: str, esize: int) -> None:
    entries = _entries(path, esize)
    with open(path, "wb") as f:
        f.write(b"".join(entries + entries[:1]))  # the first entry again after the last


def fault_zero_filled(path: str, other: str, esize: int) -> None:
    with open(path, "wb") as f:
        f.write(bytes(esize * 8))  # a preallocated, never written index


def fault_swapped(path: str, other: str, esize: int) -> None:
    shutil.copyfile(other, path)


def fault_past_eof(path: str, other: str, esize: int) -> None:
    entries = _entries(path, esize)
    last = entries[-1]
    if esize == 8:
        bad = (int.from_bytes(last[:4], "big") + 1).to_bytes(4, "big") + (10**6).to_bytes(4, "big")
    else:
        bad = (int.from_bytes(last[:8], "big") + 1).to_bytes(8, "big") + (10**6).to_bytes(4, "big")
    with open(path, "ab") as f:
        f.write(bad)


def fault_mid_batch(path: str, other: str, esize: int) -> None:
    entries = _entries(path, esize)
    if esize == 8:
        e = entries[-1]
        entries[-1] = e[:4] + (int.from_bytes(e[4:], "big") + 7).to_bytes(4, "big")
    else:
        e = entries[-1]
        entries[-1] = (int.from_bytes(e[:8], "big") + 5).to_bytes(8, "big") + e[8:]
    with open(path, "wb") as f:
        f.write(b"".join(entries))


INDEX_FAULTS: dict[str, Callable[[str, str, int], None]] = {
    "deleted": fault_deleted,
    "truncated-odd": fault_truncated_odd,
    "truncated-whole-entry": fault_truncated_whole,
    "garbage": fault_garbage,
    "non-monotonic": fault_non_monotonic,
    "zero-filled": fault_zero_filled,
    "swapped": fault_swapped,
    "past-eof": fault_past_eof,
    "mid-batch-or-wrong-time": fault_mid_batch,
}

RETENTION_MS = 5_000
NOW = T0 + 10_000 + 300 + RETENTION_MS + 1  # segments 0 and 4 are expired, 8 is not
TARGETS = sorted({ts_of(i) + d for i in range(N) for d in (-1, 0, 1)} | {T0 - 5, T0 + 10**6})


def outcome(work: Path, records: list[Record]) -> tuple:
    """Reads, time lookups and the retention decision of a partition, for comparison."""
    with open_log(work, **CFG) as log:
        assert check_reads(log, records) == set()
        lookups = [log.offset_for_timestamp(t) for t in TARGETS]
        assert lookups == [brute_offset_for_timestamp(records, t) for t in TARGETS]
    with open_log(work, **dict(CFG, retention_ms=RETENTION_MS)) as log:
        deleted = log.enforce_retention(now_ms=NOW)
        return lookups, deleted, log.log_start_offset


@pytest.fixture(scope="module")
def clean_outcome(pristine, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    src, records = pristine["clean"]
    got = outcome(fresh(src, tmp_path_factory.mktemp("ref") / "ref-0"), records)
    assert got[1:] == (2, 8)  # the reference decision itself
    return got


@pytest.mark.parametrize("fault", sorted(INDEX_FAULTS))
@pytest.mark.parametrize("ext", [".index", ".timeindex"])
@pytest.mark.parametrize("segment", [4, 12], ids=["sealed", "active"])
def test_damaged_index_is_rebuilt_lookups_equal_brute_force_and_retention_is_unchanged(
    pristine, clean_outcome, tmp_path: Path, fault: str, ext: str, segment: int
) -> None:
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    other = 0 if segment != 0 else 4
    INDEX_FAULTS[fault](seg_path(work, segment, ext), seg_path(work, other, ext), 8 if ext == ".index" else 12)
    assert outcome(work, records) == clean_outcome
    # After use, every remaining index file is the one Kafka's rule gives for the log.
    for base, bs in scan_dir(work).items():
        assert file_bytes(seg_path(work, base, ".index")) == expected_offset_index(
            bs, base, CFG["index_interval_bytes"]
        ), base
        assert file_bytes(seg_path(work, base, ".timeindex")) == expected_time_index(
            bs, base, CFG["index_interval_bytes"], final=True
        ), base


def test_damaged_indexes_of_every_segment_at_once_are_all_rebuilt(pristine, clean_outcome, tmp_path: Path) -> None:
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    for base in log_bases(work):
        fault_garbage(seg_path(work, base, ".index"), "", 8)
        fault_deleted(seg_path(work, base, ".timeindex"), "", 12)
    assert outcome(work, records) == clean_outcome


# --------------------------------------------------------------------------- T4.6 directory


def test_stray_temporary_files_and_orphan_indexes_are_removed_on_open(pristine, tmp_path: Path) -> None:
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    stray = [
        seg_name(12, ".log.tmp"),
        seg_name(4, ".index.tmp"),
        seg_name(0, ".log.deleted"),
        seg_name(8, ".timeindex.deleted"),
        seg_name(4, ".log.cleaned"),
        seg_name(8, ".log.swap"),
        seg_name(100, ".index"),  # orphans: no 100.log
        seg_name(100, ".timeindex"),
    ]
    for name in stray:
        (work / name).write_bytes(b"leftover")
    (work / "README.txt").write_bytes(b"not ours")
    with open_log(work, **CFG) as log:
        assert sorted(log.report.stray_files_deleted) == sorted(stray)
        assert read_all(log) == records
    left = set(os.listdir(work))
    assert not left & set(stray)
    assert "README.txt" in left


def test_missing_middle_segment_after_a_clean_close_never_skips_records_silently(pristine, tmp_path: Path) -> None:
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    for ext in (".log", ".index", ".timeindex"):
        os.unlink(seg_path(work, 4, ext))
    with open_log(work, **CFG) as log:
        assert log.log_start_offset == 0 and log.log_end_offset == N
        bad = check_reads(log, records)
        assert bad == {4, 5, 6, 7}


def test_missing_middle_segment_below_the_recovery_point_is_reported_after_a_reboot(pristine, tmp_path: Path) -> None:
    src, records = pristine["clean"]
    work = fresh(src, tmp_path / "w-0")
    for ext in (".log", ".index", ".timeindex"):
        os.unlink(seg_path(work, 4, ext))
    write_state(work, clean=False, boot_id="another-boot", recovery_point=0)
    # Nothing was known durable: the gap ends the log there, later segments are dropped.
    with open_log(work, **CFG) as log:
        assert log.corruption is None
        assert log.log_end_offset == 4
        assert log_bases(work) == [0]
        assert read_all(log) == records[:4]
        assert log.append([rec(99)]).base_offset == 4
    work = fresh(src, tmp_path / "w-0")
    for ext in (".log", ".index", ".timeindex"):
        os.unlink(seg_path(work, 4, ext))
    write_state(work, clean=False, boot_id="another-boot", recovery_point=5)
    # Offset 4 was known durable: reported, nothing deleted.
    with open_log(work, **CFG) as log:
        assert log.report.corruption is not None
        assert log_bases(work) == [0, 8, 12]
        assert log.log_end_offset == N
        assert check_reads(log, records) == {4, 5, 6, 7}
