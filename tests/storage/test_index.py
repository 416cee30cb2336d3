"""Offset and time index specification (logq.index), after Kafka's OffsetIndexTest / TimeIndexTest.

Both indexes are sparse, strictly increasing and stored in Kafka's big-endian layouts; the
byte examples are the ones in the reference notes (kafka-facts.md section 2).
"""

from __future__ import annotations

import bisect
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from logq.errors import CorruptIndexError
from logq.storage.index import OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES, OffsetIndex, TimeIndex

BASE = 1000

# Appending out of order is a programming error inside logq: an assert, or a logq error.
REJECTED = (AssertionError, CorruptIndexError)


def offset_index(tmp: Path, base: int = BASE, max_entries: int = 1000) -> OffsetIndex:
    return OffsetIndex(str(tmp / f"{base:020d}.index"), base, max_entries)


def time_index(tmp: Path, base: int = BASE, max_entries: int = 1000) -> TimeIndex:
    return TimeIndex(str(tmp / f"{base:020d}.timeindex"), base, max_entries)


def reloaded(idx, cls):
    other = cls(idx.path, idx.base_offset, idx.max_entries)
    other.load()
    return other


@st.composite
def offset_entries(draw) -> list[tuple[int, int]]:
    """Strictly increasing (absolute offset, position) pairs, positions > 0."""
    rels = draw(st.lists(st.integers(1, 10_000), max_size=60, unique=True))
    gaps = draw(st.lists(st.integers(1, 5000), min_size=len(rels), max_size=len(rels)))
    pos, out = 0, []
    for rel, gap in zip(sorted(rels), gaps):
        pos += gap
        out.append((BASE + rel, pos))
    return out


# --------------------------------------------------------------------------- byte layout


def test_offset_entry_bytes_match_kafkas_example(tmp_path: Path) -> None:
    idx = offset_index(tmp_path)
    idx.append(1005, 4150)
    idx.close()
    assert Path(idx.path).read_bytes() == bytes.fromhex("00 00 00 05 00 00 10 36")
    assert OFFSET_ENTRY_BYTES == 8


def test_time_entry_bytes_match_kafkas_example(tmp_path: Path) -> None:
    tix = time_index(tmp_path)
    tix.maybe_append(1_700_000_000_005, 1005)
    tix.close()
    assert Path(tix.path).read_bytes() == bytes.fromhex("00 00 01 8b cf e5 68 05 00 00 00 05")
    assert TIME_ENTRY_BYTES == 12


def test_index_files_are_created_private_0600(tmp_path: Path) -> None:
    idx, tix = offset_index(tmp_path), time_index(tmp_path)
    idx.append(BASE + 1, 100)
    tix.maybe_append(5, BASE + 1)
    for p in (idx.path, tix.path):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    idx.close()
    tix.close()


def test_index_files_are_created_lazily_and_a_missing_file_loads_empty(tmp_path: Path) -> None:
    idx, tix = offset_index(tmp_path), time_index(tmp_path)
    idx.load()
    tix.load()
    assert not os.path.exists(idx.path) and not os.path.exists(tix.path)
    assert idx.entries == 0 and tix.entries == 0


# --------------------------------------------------------------------------- offset index


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=offset_entries(), targets=st.lists(st.integers(0, 12_000), max_size=40))
def test_offset_lookup_agrees_with_a_sorted_list_reference(tmp_path: Path, entries, targets) -> None:
    for f in tmp_path.iterdir():
        f.unlink()
    idx = offset_index(tmp_path)
    for off, pos in entries:
        idx.append(off, pos)
    keys = [o for o, _ in entries]
    for target in targets + keys + [BASE - 1, BASE]:
        i = bisect.bisect_right(keys, target) - 1
        want = entries[i] if i >= 0 else (BASE, 0)
        assert idx.lookup(target) == want
    back = reloaded(idx, OffsetIndex)
    idx.close()
    assert back.keys().tolist() == idx.keys().tolist()
    assert back.values().tolist() == idx.values().tolist()
    for target in targets:
        assert back.lookup(target) == idx.lookup(target)


def test_offset_lookup_on_empty_index_and_below_first_entry_returns_base_and_zero(tmp_path: Path) -> None:
    idx = offset_index(tmp_path)
    assert idx.lookup(BASE) == (BASE, 0)
    assert idx.lookup(BASE + 500) == (BASE, 0)
    idx.append(BASE + 10, 300)
    assert idx.lookup(BASE + 9) == (BASE, 0)
    assert idx.lookup(BASE - 5) == (BASE, 0)
    assert idx.lookup(BASE + 10) == (BASE + 10, 300)
    idx.close()


def test_offset_index_first_and_last_entries_of_a_full_index(tmp_path: Path) -> None:
    idx = offset_index(tmp_path, max_entries=5)
    for i in range(1, 6):
        idx.append(BASE + i * 10, i * 100)
    assert idx.is_full
    assert idx.lookup(BASE + 10) == (BASE + 10, 100)
    assert idx.lookup(BASE + 10**6) == (BASE + 50, 500)
    with pytest.raises(CorruptIndexError):
        idx.append(BASE + 60, 600)
    assert idx.entries == 5
    idx.close()
    assert os.path.getsize(idx.path) == 5 * 8


@pytest.mark.parametrize("offset,position", [(BASE + 10, 500), (BASE + 5, 500), (BASE + 20, 200), (BASE + 20, 300)])
def test_offset_index_rejects_non_increasing_appends(tmp_path: Path, offset: int, position: int) -> None:
    idx = offset_index(tmp_path)
    idx.append(BASE + 10, 300)
    with pytest.raises(REJECTED):
        idx.append(offset, position)
    assert idx.entries == 1
    idx.close()
    assert os.path.getsize(idx.path) == 8


def test_offset_index_rejects_an_offset_below_its_base(tmp_path: Path) -> None:
    idx = offset_index(tmp_path)
    with pytest.raises(REJECTED):
        idx.append(BASE - 1, 10)
    assert idx.entries == 0


def test_offset_index_reload_from_file_equals_memory(tmp_path: Path) -> None:
    idx = offset_index(tmp_path)
    for i in range(1, 300):  # past the initial in-memory capacity
        idx.append(BASE + 3 * i, 50 * i)
    back = reloaded(idx, OffsetIndex)
    assert back.entries == 299
    assert back.keys().tolist() == idx.keys().tolist()
    assert back.values().tolist() == idx.values().tolist()
    assert back.last_position() == 50 * 299
    idx.close()


@pytest.mark.parametrize(
    "cut,kept",
    [
        (BASE + 1000, 3),  # past the end: no-op
        (BASE + 30, 2),  # exactly at an entry: it and later ones go
        (BASE + 25, 2),  # between entries: the lower one stays
        (BASE + 10, 0),  # at the first entry
        (BASE, 0),  # at the base
    ],
)
def test_offset_index_truncate_to_offset_drops_entries_at_or_after_it(tmp_path: Path, cut: int, kept: int) -> None:
    idx = offset_index(tmp_path)
    for i in (1, 2, 3):
        idx.append(BASE + 10 * i, 100 * i)
    idx.truncate_to_offset(cut)
    assert idx.entries == kept
    assert idx.keys().tolist() == [10 * i for i in range(1, kept + 1)]
    # Appends still work after a truncation (the owner rewrites the file first).
    idx.write_all()
    idx.append(BASE + 100, 10_000)
    assert idx.lookup(BASE + 100) == (BASE + 100, 10_000)
    back = reloaded(idx, OffsetIndex)
    assert back.keys().tolist() == idx.keys().tolist()
    assert back.values().tolist() == idx.values().tolist()
    idx.close()


def test_offset_index_check_passes_for_a_sane_index(tmp_path: Path) -> None:
    idx = offset_index(tmp_path)
    idx.check(0)  # empty: nothing to check
    idx.append(BASE + 3, 100)
    idx.append(BASE + 7, 250)
    idx.check(251)
    idx.close()


def write_raw(path: str, raw: bytes) -> None:
    with open(path, "wb") as f:
        f.write(raw)


@pytest.mark.parametrize(
    "entries,log_size,why",
    [
        ([(5, 100), (5, 200)], 1000, "repeated offset"),
        ([(5, 100), (4, 200)], 1000, "decreasing offset"),
        ([(5, 200), (6, 100)], 1000, "decreasing position"),
        ([(5, 100), (6, 100)], 1000, "repeated position"),
        ([(5, 100), (9, 1000)], 1000, "position at the log end"),
        ([(5, 5000)], 1000, "position past the log end"),
        ([(0, 100)], 1000, "an entry for the base offset (the first batch never gets one)"),
        ([(5, 0)], 1000, "position 0"),
        ([(-3, 100)], 1000, "offset below the base"),
    ],
)
def test_offset_index_check_catches_bad_files(tmp_path: Path, entries, log_size: int, why: str) -> None:
    idx = offset_index(tmp_path)
    write_raw(idx.path, b"".join(r.to_bytes(4, "big", signed=True) + p.to_bytes(4, "big") for r, p in entries))
    idx.load()
    with pytest.raises(CorruptIndexError):
        idx.check(log_size)


@pytest.mark.parametrize("size", [1, 7, 9, 15, 17])
def test_offset_index_of_a_size_not_a_multiple_of_8_fails_to_load(tmp_path: Path, size: int) -> None:
    idx = offset_index(tmp_path)
    write_raw(idx.path, b"\x00\x00\x00\x01\x00\x00\x00\x10" * 3)
    os.truncate(idx.path, size)
    with pytest.raises(CorruptIndexError):
        idx.load()


def test_offset_index_with_more_entries_than_its_maximum_fails_to_load(tmp_path: Path) -> None:
    idx = offset_index(tmp_path, max_entries=2)
    write_raw(idx.path, b"".join(i.to_bytes(4, "big") + (i * 10).to_bytes(4, "big") for i in (1, 2, 3)))
    with pytest.raises(CorruptIndexError):
        idx.load()


# --------------------------------------------------------------------------- time index


def test_time_lookup_empty_below_between_and_exact(tmp_path: Path) -> None:
    tix = time_index(tmp_path)
    assert tix.lookup(12345) == (-1, BASE)
    assert tix.last_entry() == (-1, BASE)
    tix.maybe_append(100, BASE + 5)
    tix.maybe_append(200, BASE + 9)
    tix.maybe_append(300, BASE + 20)
    assert tix.lookup(99) == (-1, BASE)  # below the first entry
    assert tix.lookup(100) == (100, BASE + 5)  # exact
    assert tix.lookup(250) == (200, BASE + 9)  # between: the lower entry
    assert tix.lookup(10**15) == (300, BASE + 20)
    assert tix.last_entry() == (300, BASE + 20)
    tix.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 50)), max_size=60),
    targets=st.lists(st.integers(-5, 10_500), max_size=40),
)
def test_time_lookup_agrees_with_a_sorted_list_reference(tmp_path: Path, pairs, targets) -> None:
    for f in tmp_path.iterdir():
        f.unlink()
    tix = time_index(tmp_path)
    kept: list[tuple[int, int]] = []
    off = BASE
    for ts, step in pairs:
        off += step
        tix.maybe_append(ts, off)
        if not kept or ts > kept[-1][0]:  # only strictly greater timestamps are kept
            kept.append((ts, off))
    assert list(zip(tix.keys().tolist(), (BASE + v for v in tix.values().tolist()))) == kept
    stamps = [t for t, _ in kept]
    for target in targets + stamps:
        i = bisect.bisect_right(stamps, target) - 1
        assert tix.lookup(target) == (kept[i] if i >= 0 else (-1, BASE))
    back = reloaded(tix, TimeIndex)
    tix.close()
    assert back.keys().tolist() == tix.keys().tolist() and back.values().tolist() == tix.values().tolist()


def test_time_index_ignores_a_timestamp_not_greater_than_the_last(tmp_path: Path) -> None:
    tix = time_index(tmp_path)
    tix.maybe_append(100, BASE + 1)
    tix.maybe_append(100, BASE + 2)
    tix.maybe_append(50, BASE + 3)
    assert tix.entries == 1
    tix.close()
    assert os.path.getsize(tix.path) == 12


def test_time_index_rejects_an_offset_going_back(tmp_path: Path) -> None:
    tix = time_index(tmp_path)
    tix.maybe_append(100, BASE + 10)
    with pytest.raises(REJECTED):
        tix.maybe_append(200, BASE + 9)
    assert tix.entries == 1
    tix.close()


def test_time_index_keeps_one_slot_spare_for_the_final_entry(tmp_path: Path) -> None:
    tix = time_index(tmp_path, max_entries=3)
    tix.maybe_append(10, BASE + 1)
    assert not tix.is_full
    tix.maybe_append(20, BASE + 2)
    assert tix.is_full  # 2 of 3: the last slot is reserved
    tix.maybe_append(30, BASE + 3)  # an ordinary entry is skipped when full
    assert tix.entries == 2
    tix.maybe_append(40, BASE + 4, final=True)  # the final entry may take the spare slot
    assert tix.entries == 3 and tix.last_entry() == (40, BASE + 4)
    with pytest.raises(CorruptIndexError):
        tix.maybe_append(50, BASE + 5, final=True)  # beyond capacity even for the final entry
    tix.close()
    assert os.path.getsize(tix.path) == 36


@pytest.mark.parametrize(
    "cut,kept",
    [(BASE + 100, 3), (BASE + 20, 2), (BASE + 15, 2), (BASE + 5, 0), (BASE, 0)],
)
def test_time_index_truncate_to_offset_drops_entries_at_or_after_it(tmp_path: Path, cut: int, kept: int) -> None:
    tix = time_index(tmp_path)
    for ts, off in ((100, 5), (200, 10), (300, 20)):
        tix.maybe_append(ts, BASE + off)
    tix.truncate_to_offset(cut)
    assert tix.entries == kept
    tix.write_all()
    tix.maybe_append(1000, BASE + 50)
    back = reloaded(tix, TimeIndex)
    assert back.entries == kept + 1 and back.last_entry() == (1000, BASE + 50)
    tix.close()


@pytest.mark.parametrize(
    "entries,next_offset,why",
    [
        ([(100, 5), (100, 6)], 50, "repeated timestamp"),
        ([(200, 5), (100, 6)], 50, "decreasing timestamp"),
        ([(100, 6), (200, 5)], 50, "decreasing offset"),
        ([(100, 5), (200, 50)], 50, "offset at the segment end"),
        ([(100, 70)], 50, "offset past the segment end"),
        ([(100, -1)], 50, "offset below the base"),
    ],
)
def test_time_index_check_catches_bad_files(tmp_path: Path, entries, next_offset: int, why: str) -> None:
    tix = time_index(tmp_path)
    write_raw(
        tix.path, b"".join(t.to_bytes(8, "big", signed=True) + r.to_bytes(4, "big", signed=True) for t, r in entries)
    )
    tix.load()
    with pytest.raises(CorruptIndexError):
        tix.check(BASE + next_offset)


def test_time_index_check_passes_when_the_last_offset_is_the_base_offset(tmp_path: Path) -> None:
    tix = time_index(tmp_path)
    tix.maybe_append(100, BASE)
    tix.check(BASE + 1)
    tix.close()


@pytest.mark.parametrize("size", [1, 11, 13, 23, 25])
def test_time_index_of_a_size_not_a_multiple_of_12_fails_to_load(tmp_path: Path, size: int) -> None:
    tix = time_index(tmp_path)
    write_raw(tix.path, bytes(36))
    os.truncate(tix.path, size)
    with pytest.raises(CorruptIndexError):
        tix.load()
