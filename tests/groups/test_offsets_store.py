"""Committed offsets: merge under a lock, refuse impossible commits, survive damage, never a silent 0."""

from __future__ import annotations

import os
import random
import statistics
import time
import warnings
from pathlib import Path

import pytest
from logq.errors import ConfigError, GroupNotEmptyError, InvalidOffsetCommitError, LogqError
from logq.groups.member import GroupMember
from logq.groups.offsets import ClampReport, OffsetStore, OffsetsWarning
from logq.storage.meta import decode_meta, encode_meta

TP = tuple[str, int]


@pytest.fixture()
def gdir(tmp_path: Path) -> str:
    return str(tmp_path / "__logq" / "groups" / "g")


def _good_history(gdir: str) -> None:
    """Main holds {a-0: 7, a-1: 3}; .bak holds {a-0: 5}, so a read shows which copy it used.

    (Normally both copies hold the same map; they differ after a crash between the two.)
    """
    store = OffsetStore(gdir)
    store.commit({("a", 0): 7, ("a", 1): 3})
    store.close()
    Path(gdir, "offsets.bak").write_bytes(encode_meta({"format": 1, "offsets": {"a": {"0": 5}}}))


def _fresh(gdir: str) -> OffsetStore:
    return OffsetStore(gdir)


def _quiet_read(gdir: str, tp: TP = ("a", 0)) -> tuple[int | None, list]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OffsetsWarning)
        s = _fresh(gdir)
        try:
            return s.committed(*tp), list(s.problems)
        finally:
            s.close()


# -- basics ------------------------------------------------------------------------------


def test_nothing_committed_reads_as_none_without_problems(gdir: str) -> None:
    with OffsetStore(gdir) as s:
        assert s.committed("a", 0) is None
        assert s.all() == {}
        assert s.problems == []


def test_commit_then_committed_returns_the_next_offset_to_read(gdir: str) -> None:
    with OffsetStore(gdir) as s:
        s.commit({("a", 0): 10, ("b", 3): 0})
        assert s.committed("a", 0) == 10
        assert s.committed("b", 3) == 0
        assert s.committed("a", 1) is None
        assert s.all() == {("a", 0): 10, ("b", 3): 0}


def test_commits_from_separate_stores_merge_instead_of_overwriting(gdir: str) -> None:
    one, two = OffsetStore(gdir), OffsetStore(gdir)
    one.commit({("a", 0): 1})
    two.commit({("a", 1): 2})
    one.commit({("a", 2): 3})  # one's cache is stale: it must re-read before merging
    assert two.all() == one.all() == {("a", 0): 1, ("a", 1): 2, ("a", 2): 3}
    one.close()
    two.close()


def test_sync_commit_writes_both_copies_durably(gdir: str) -> None:
    with OffsetStore(gdir) as s:
        s.commit({("a", 0): 4}, sync=True)
    for name in ("offsets", "offsets.bak"):
        body = decode_meta(Path(gdir, name).read_bytes())
        # no topic "a" exists beside this group directory: its id is stored as null
        assert body == {"format": 1, "offsets": {"a": {"0": 4}}, "topic_ids": {"a": None}}


def test_files_are_private_to_the_user(gdir: str) -> None:
    with OffsetStore(gdir) as s:
        s.commit({("a", 0): 1})
    assert Path(gdir, "offsets").stat().st_mode & 0o077 == 0
    assert Path(gdir).stat().st_mode & 0o077 == 0


# -- refused commits ---------------------------------------------------------------------


def test_commit_beyond_the_log_end_is_refused_and_nothing_is_written(gdir: str) -> None:
    ends = {("a", 0): 100, ("a", 1): 5}
    with OffsetStore(gdir) as s:
        s.commit({("a", 0): 100}, log_end=lambda t, p: ends.get((t, p)))  # == log end is fine
        with pytest.raises(InvalidOffsetCommitError, match="beyond the log end offset 5") as info:
            s.commit({("a", 0): 50, ("a", 1): 6}, log_end=lambda t, p: ends.get((t, p)))
        assert (info.value.topic, info.value.partition, info.value.offset) == ("a", 1, 6)
        assert info.value.hint
        assert s.all() == {("a", 0): 100}  # all or nothing


def test_commit_for_a_partition_the_log_does_not_have_is_refused(gdir: str) -> None:
    with OffsetStore(gdir) as s, pytest.raises(InvalidOffsetCommitError, match="does not exist"):
        s.commit({("a", 9): 0}, log_end=lambda t, p: None)


@pytest.mark.parametrize("offset", [-1, True, 1.0, "3", None])
def test_negative_or_non_int_offsets_are_refused(gdir: str, offset: object) -> None:
    with OffsetStore(gdir) as s, pytest.raises(InvalidOffsetCommitError):
        s.commit({("a", 0): offset})  # type: ignore[dict-item]


@pytest.mark.parametrize("key", [("a",), ("a", -1), ("a", "0"), ("../x", 0), ("", 0), "a-0"])
def test_bad_keys_are_refused(gdir: str, key: object) -> None:
    with OffsetStore(gdir) as s, pytest.raises(LogqError):
        s.commit({key: 1})  # type: ignore[dict-item]


def test_member_commit_needs_a_generation(gdir: str) -> None:
    with OffsetStore(gdir) as s, pytest.raises(ConfigError, match="generation"):
        s.commit({("a", 0): 1}, member_id="m1")


def test_commit_without_membership_is_refused_while_the_group_has_live_members(tmp_path: Path) -> None:
    root = str(tmp_path)
    store = OffsetStore.for_group(root, "g")
    with GroupMember(root, "g", lambda: {"a": 1}, heartbeat_thread=False):
        with pytest.raises(GroupNotEmptyError, match="1 live member"):
            store.commit({("a", 0): 1})
    store.commit({("a", 0): 1})  # the group is empty again: an admin reset is fine
    assert store.committed("a", 0) == 1
    store.close()


# -- damage ------------------------------------------------------------------------------


def _assert_fell_back(gdir: str, expect: int | None = 5) -> list:
    value, problems = _quiet_read(gdir)
    assert value == expect
    assert problems, "the damage must be reported"
    return problems


def test_bit_flip_in_main_is_detected_and_bak_is_used_with_a_warning(gdir: str) -> None:
    _good_history(gdir)
    p = Path(gdir, "offsets")
    data = bytearray(p.read_bytes())
    data[-3] ^= 0x01
    p.write_bytes(bytes(data))
    s = _fresh(gdir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert s.committed("a", 0) == 5
    messages = [str(w.message) for w in caught if issubclass(w.category, OffsetsWarning)]
    assert any("checksum mismatch" in m for m in messages)
    assert all(w.filename == __file__ for w in caught)  # attributed to the caller, not logq
    assert any("checksum mismatch" in m for m in s.problems)
    assert any("second copy" in m for m in s.problems)
    s.close()


@pytest.mark.parametrize(
    "damage",
    ["zero-length", "garbage", "missing", "bad-header-version", "bad-body-format", "negative-offset", "not-a-map"],
)
def test_damaged_main_file_falls_back_to_bak_and_is_reported(gdir: str, damage: str) -> None:
    _good_history(gdir)
    p = Path(gdir, "offsets")
    if damage == "zero-length":
        p.write_bytes(b"")
    elif damage == "garbage":
        p.write_bytes(os.urandom(200))
    elif damage == "missing":
        p.unlink()
    elif damage == "bad-header-version":
        p.write_bytes(p.read_bytes().replace(b"logq-meta 1 ", b"logq-meta 9 ", 1))
    elif damage == "bad-body-format":
        p.write_bytes(encode_meta({"format": 2, "offsets": {"a": {"0": 7}}}))
    elif damage == "negative-offset":
        p.write_bytes(encode_meta({"format": 1, "offsets": {"a": {"0": -7}}}))
    elif damage == "not-a-map":
        p.write_bytes(encode_meta([1, 2, 3]))
    _assert_fell_back(gdir)


def test_truncation_of_main_at_every_byte_never_crashes_and_never_trusts_it(gdir: str) -> None:
    _good_history(gdir)
    p = Path(gdir, "offsets")
    whole = p.read_bytes()
    for cut in range(len(whole)):
        p.write_bytes(whole[:cut])
        _assert_fell_back(gdir)
    p.write_bytes(whole)
    assert _quiet_read(gdir) == (7, [])


def test_one_thousand_random_bit_flips_are_all_detected(gdir: str) -> None:
    _good_history(gdir)
    p = Path(gdir, "offsets")
    whole = p.read_bytes()
    rng = random.Random(1234)
    for _ in range(1000):
        data = bytearray(whole)
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
        p.write_bytes(bytes(data))
        value, problems = _quiet_read(gdir)
        assert (value, bool(problems)) == (5, True), f"flip of bit {bit} was not detected"


def test_both_copies_damaged_reads_as_not_committed_never_zero(gdir: str) -> None:
    _good_history(gdir)
    Path(gdir, "offsets").write_bytes(b"junk")
    Path(gdir, "offsets.bak").write_bytes(b"more junk")
    value, problems = _quiet_read(gdir)
    assert value is None
    assert any("auto_offset_reset" in m for m in problems)


def test_a_stale_tmp_file_with_newer_content_is_ignored(gdir: str) -> None:
    _good_history(gdir)
    Path(gdir, "offsets.tmp").write_bytes(encode_meta({"format": 1, "offsets": {"a": {"0": 999}}}))
    assert _quiet_read(gdir) == (7, [])


def test_next_commit_repairs_both_copies_and_keeps_the_damaged_one_aside(gdir: str) -> None:
    _good_history(gdir)
    Path(gdir, "offsets").write_bytes(b"damaged")
    s = _fresh(gdir)
    with pytest.warns(OffsetsWarning):
        s.commit({("a", 1): 4})
    s.close()
    assert Path(gdir, "offsets.corrupt").read_bytes() == b"damaged"
    assert _quiet_read(gdir, ("a", 1)) == (4, [])
    assert _quiet_read(gdir, ("a", 0)) == (5, [])  # merged into the map read from .bak
    Path(gdir, "offsets").unlink()
    assert _quiet_read(gdir, ("a", 1))[0] == 4  # .bak holds the repaired map too


def test_crash_between_the_two_copies_leaves_a_whole_copy(gdir: str) -> None:
    """Simulate torn writes of either copy: the reader gets the old or the new map, whole."""
    _good_history(gdir)
    main, bak = Path(gdir, "offsets"), Path(gdir, "offsets.bak")
    new = encode_meta({"format": 1, "offsets": {"a": {"0": 8}}})
    old_main = main.read_bytes()
    bak.write_bytes(new[: len(new) // 2])  # torn while writing .bak: main still old
    assert _quiet_read(gdir)[0] == 7
    bak.write_bytes(new)
    main.write_bytes(new[:-4] + old_main[len(new) - 4 :])  # torn while writing main
    assert _quiet_read(gdir)[0] == 8


# -- clamping ----------------------------------------------------------------------------


def test_offsets_beyond_the_log_end_are_clamped_persisted_and_reported(gdir: str) -> None:
    with OffsetStore(gdir) as s:
        s.commit({("a", 0): 50, ("a", 1): 3, ("b", 0): 9})
    ends: dict[TP, int] = {("a", 0): 40, ("a", 1): 10}  # b-0 unknown: left alone
    s = _fresh(gdir)
    with pytest.warns(OffsetsWarning, match="clamped"):
        reports = s.clamp_to(lambda t, p: ends.get((t, p)))
    assert reports == [ClampReport("a", 0, 50, 40)]
    assert any("beyond the log end 40" in m for m in s.problems)
    assert s.clamp_to(lambda t, p: ends.get((t, p))) == []
    s.close()
    assert _quiet_read(gdir) == (40, [])
    assert _quiet_read(gdir, ("b", 0)) == (9, [])


# -- speed (measured and reported, never asserted) ----------------------------------------


def test_commit_latency_is_measured_and_reported(tmp_path: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    root = str(tmp_path)
    with GroupMember(root, "g", lambda: {"a": 4}, member_id="m1", heartbeat_thread=False) as m:
        assert m.wait_for_assignment(5000)
        store = OffsetStore.for_group(root, "g")
        results = {}
        for label, tps in (("1 partition", [("a", 0)]), ("4 partitions", [("a", p) for p in range(4)])):
            samples = []
            for i in range(1500):
                t0 = time.perf_counter()
                store.commit({tp: i for tp in tps}, generation=m.generation, member_id="m1")
                samples.append((time.perf_counter() - t0) * 1e6)
            samples.sort()
            results[label] = (statistics.median(samples), samples[int(len(samples) * 0.99)])
        store.close()
    for label, (p50, p99) in results.items():
        record_property(f"commit_us_p50_{label}", round(p50, 1))
        print(f"fenced commit, sync=False, {label}: p50 {p50:.1f} us, p99 {p99:.1f} us")
