"""The storage misuse tier (issue 9): sizes, hostile files, read-only data, idle retention.

Each test is named after what went wrong. Crashes are a real ``kill -9`` of a child process,
damage is a real file on disk, and nothing here asserts a duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import logq
import pytest
from logq.cli import dump as dump_mod
from logq.codec.batch import BatchRecord, encode_values
from logq.config import LogConfig
from logq.storage import segment as segment_mod
from logq.storage.log import DEFAULT_FETCH_BYTES, PartitionLog

MIB = 1 << 20
T0 = 1_700_000_000_000


def batch_of_size(n: int, ts: int = T0) -> bytes:
    """One encoded single-record batch of exactly ``n`` bytes (a key pads over varint steps)."""
    for key in (None, b"", b"k", b"kk"):
        for v in range(max(0, n - 90), n):
            b = encode_values([b"v" * v], ts, key=key)
            if len(b) == n:
                return b
    raise AssertionError(f"no batch of exactly {n} bytes")


def dump_problems(path: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    status = dump_mod.run_dump([path], dump_mod.DumpOptions(deep=True), lines.append, as_json=False)
    return status, [ln for ln in lines if "invalid bytes" in ln or "isvalid: false" in ln]


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def read_all(lg: PartitionLog, max_bytes: int) -> list[BatchRecord]:
    out: list[BatchRecord] = []
    offset = lg.log_start_offset
    while offset < lg.log_end_offset:
        fetched = lg.read(offset, max_bytes)
        assert fetched.next_offset > offset, f"no progress at offset {offset}"
        out.extend(fetched.records(lg.config.max_decompressed_bytes))
        offset = fetched.next_offset
    return out


# ----------------------------------------------------------------------------- item 1: sizes

# Every internal window and limit a batch size could meet, with its neighbours.
_LIMITS = sorted(
    {
        4096,  # index_interval_bytes
        segment_mod.SCAN_CHUNK_BYTES,  # recovery and tail scans
        DEFAULT_FETCH_BYTES,  # PartitionLog.read's default
        dump_mod.READ_CHUNK_BYTES,  # dump's window
        LogConfig().max_batch_bytes,  # the default topic limit
        2 * MIB + 74,  # the batch of the report (2097226 bytes)
    }
)
SIZES = sorted({70} | {n + d for n in _LIMITS for d in (-1, 0, 1)})
TOPIC_LIMIT = 8 * MIB


@pytest.mark.parametrize("size", SIZES)
def test_a_batch_of_any_size_up_to_the_limit_appends_reads_recovers_dumps_and_repairs(tmp_path, size):
    """Regression: batches over the 1 MiB scan window locked the partition (issue 9 item 1)."""
    d = str(tmp_path / "t-0")
    cfg = LogConfig(max_batch_bytes=TOPIC_LIMIT, retention_ms=-1)
    big = batch_of_size(size)
    with PartitionLog(d, cfg) as lg:
        lg.append_values([b"small"], T0)
        lg.append_batch(big)
        lg.append_batch(big)
    with PartitionLog(d, cfg) as lg:  # a clean reopen validates the tail past the window
        assert lg.report.corruption is None and lg.report.bytes_truncated == 0
        lg.append_values([b"again"], T0)
        got = read_all(lg, 1)  # a fetch smaller than a batch still returns that batch
    value_len = len(got[1].value)
    assert [len(r.value) for r in got] == [5, value_len, value_len, 5]
    assert value_len > size - 90
    # A writer killed with kill -9 right after its acknowledged append: recovery scans it all.
    blob = str(tmp_path / "batch.bin")
    with open(blob, "wb") as f:
        f.write(big)
    child = run_child(
        f"""
        import os
        from logq.config import LogConfig
        from logq.storage.log import PartitionLog
        lg = PartitionLog({d!r}, LogConfig(max_batch_bytes={TOPIC_LIMIT}, retention_ms=-1))
        with open({blob!r}, "rb") as f:
            lg.append_batch(f.read())
        print("acked", flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    assert child.returncode == -9 and "acked" in child.stdout, child.stderr
    with PartitionLog(d, cfg) as lg:
        assert not lg.report.clean
        assert lg.report.corruption is None and lg.report.bytes_truncated == 0, lg.report
        got = read_all(lg, 1)
    assert [len(r.value) for r in got] == [5, value_len, value_len, 5, value_len]
    status, bad = dump_problems(d)
    assert status == 0 and bad == []
    with PartitionLog(d, cfg, repair=True) as lg:
        assert lg.report.corruption is None and lg.report.bytes_truncated == 0
        assert lg.log_end_offset == 5


def test_the_smallest_and_the_largest_batch_a_topic_allows_both_append(tmp_path):
    cfg = LogConfig(max_batch_bytes=1 * MIB, retention_ms=-1)
    with PartitionLog(str(tmp_path / "t-0"), cfg) as lg:
        lg.append_values([b""], T0)
        lg.append_batch(batch_of_size(cfg.max_batch_bytes))
        with pytest.raises(logq.RecordTooLargeError):
            lg.append_batch(batch_of_size(cfg.max_batch_bytes + 1))
        got = read_all(lg, 1)
    assert len(got) == 2 and got[0].value == b"" and len(got[1].value) > cfg.max_batch_bytes - 90


def test_a_100_mib_batch_on_a_100_mib_topic_appends_reads_recovers_and_dumps_valid(tmp_path):
    """Regression: dump called batches over 64 MiB invalid bytes while storage accepted them."""
    d = str(tmp_path / "t-0")
    limit = 100 * MIB
    cfg = LogConfig(max_batch_bytes=limit, retention_ms=-1)
    with PartitionLog(d, cfg) as lg:
        lg.append_values([b"small"], T0)
        lg.append_batch(batch_of_size(limit))
    os.truncate(os.path.join(d, "logq.state"), 0)  # a damaged state file: the next open rescans all
    with PartitionLog(d, cfg) as lg:
        assert not lg.report.clean and lg.report.segments_recovered == 1
        assert lg.report.bytes_truncated == 0 and lg.report.corruption is None
        assert lg.log_end_offset == 2
        fetched = lg.read(1, 1024)
        assert fetched.next_offset == 2 and fetched.headers[0].size == limit
    status, bad = dump_problems(d)
    assert status == 0 and bad == []


def test_three_2_mib_sends_after_a_small_one_leave_the_topic_usable(tmp_path):
    """The report's reproduction: later producers, consumers, repair and dump all agree."""
    root = str(tmp_path / "data")
    admin = logq.Admin(root)
    admin.create_topic("t", 1, max_batch_bytes=8 * MIB)
    with logq.Producer(root) as p:
        p.send("t", b"small").result()
        for f in [p.send("t", b"x" * (2 * MIB)) for _ in range(3)]:
            f.result()
    with logq.Producer(root) as p:
        p.send("t", b"again").result()
    c = logq.Consumer(root, "t", auto_offset_reset="earliest", fetch_max_bytes=1024)
    got: list[int] = []
    try:
        for _ in range(100):
            got += [len(r.value) for r in c.poll(timeout=0.05)]
            if len(got) >= 5:
                break
    finally:
        c.close()
    assert got == [5, 2 * MIB, 2 * MIB, 2 * MIB, 5]
    report = admin.repair_partition("t", 0)
    assert report.damage is None and report.log_end_offset == 5
    status, bad = dump_problems(os.path.join(root, "t-0"))
    assert status == 0 and bad == []


# ----------------------------------------------------------------------------- item 9: stray files

STRAY = "00000000000000099999.log"
_KAFKA_LIKE = encode_values([b"from another log"], T0, 99999)  # a real batch, named right


@pytest.mark.parametrize(
    "content",
    [b"", b"not a kafka segment at all " * 4, b"\0" * 7, _KAFKA_LIKE],
    ids=["empty", "foreign", "short", "a-batch-from-another-log"],
)
def test_a_stray_file_named_like_a_segment_never_moves_the_log_end(tmp_path, content):
    """Regression: an empty 00000000000000099999.log moved the log end to 99999."""
    d = str(tmp_path / "t-0")
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        for i in range(5):
            lg.append_values([b"v%d" % i], T0)
    with open(os.path.join(d, STRAY), "wb") as f:
        f.write(content)
    with PartitionLog(d, LogConfig(), readonly=True) as reader:  # readers ignore it, change nothing
        assert reader.log_end_offset == 5
        assert [r.value for r in read_all(reader, 1 << 20)] == [b"v%d" % i for i in range(5)]
        assert [s.split(":")[0] for s in reader.report.stray_segments] == [STRAY]
    assert os.path.exists(os.path.join(d, STRAY))
    with PartitionLog(d, LogConfig()) as lg:  # a writer sets it aside, renamed, never deleted
        assert lg.log_end_offset == 5
        assert [s.split(":")[0] for s in lg.report.stray_segments] == [STRAY]
        lg.append_values([b"v5"], T0)
        assert [r.value for r in read_all(lg, 1 << 20)][-1] == b"v5"
    assert not os.path.exists(os.path.join(d, STRAY))
    with open(os.path.join(d, STRAY + ".stray"), "rb") as f:
        assert f.read() == content
    with PartitionLog(d, LogConfig()) as lg:
        assert lg.report.quarantined == [STRAY + ".stray"] and lg.log_end_offset == 6


def test_an_empty_stray_file_between_two_segments_is_set_aside(tmp_path):
    d = str(tmp_path / "t-0")
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        for i in range(3):
            lg.append_values([b"v%d" % i], T0)
        lg.roll()
        for i in range(3, 6):
            lg.append_values([b"v%d" % i], T0)
    with open(os.path.join(d, "00000000000000000001.log"), "wb"):
        pass
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert [s.split(":")[0] for s in lg.report.stray_segments] == ["00000000000000000001.log"]
        assert [r.value for r in read_all(lg, 1 << 20)] == [b"v%d" % i for i in range(6)]


def _three_segments(d: str) -> None:
    """Segments 0 (v0-v2), 3 (v3-v5) and 6 (v6-v8), closed cleanly."""
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        for i in range(9):
            lg.append_values([b"v%d" % i], T0)
            if i in (2, 5):
                lg.roll()


def _segment_files(d: str) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.endswith(".log"))


@pytest.mark.parametrize(
    "content",
    [b"not a kafka segment at all " * 4, encode_values([b"from another log"], T0, 4), _KAFKA_LIKE],
    ids=["foreign", "a-batch-from-another-log-named-to-fit", "a-batch-from-another-log"],
)
@pytest.mark.parametrize("shutdown", ["clean", "after-a-reboot"])
def test_a_non_empty_foreign_file_between_two_segments_is_set_aside_and_changes_no_offset(tmp_path, content, shutdown):
    """A file named 00000000000000000004.log lies inside segment 3 (offsets 3-5): no segment
    logq wrote can start there, whatever it holds and wherever the recovery point is."""
    from tests.support.logs import force_full_recovery

    d = str(tmp_path / "t-0")
    _three_segments(d)
    name = "00000000000000000004.log"
    with open(os.path.join(d, name), "wb") as f:
        f.write(content)
    if shutdown == "after-a-reboot":
        force_full_recovery(d)
    with PartitionLog(d, LogConfig(), readonly=True) as reader:
        assert [r.value for r in read_all(reader, 1 << 20)] == [b"v%d" % i for i in range(9)]
        assert [s.split(":")[0] for s in reader.report.stray_segments] == [name]
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert [s.split(":")[0] for s in lg.report.stray_segments] == [name]
        assert lg.report.corruption is None and lg.log_end_offset == 9
        assert [r.value for r in read_all(lg, 1 << 20)] == [b"v%d" % i for i in range(9)]
    with open(os.path.join(d, name + ".stray"), "rb") as f:
        assert f.read() == content
    assert _segment_files(d) == [f"{b:020d}.log" for b in (0, 3, 6)]


def test_two_stray_files_past_the_log_end_never_move_it(tmp_path):
    """Regression of the last-file-only screen: the file before the last stray was kept and
    its name became the log end."""
    d = str(tmp_path / "t-0")
    _three_segments(d)
    for base in (99998, 99999):
        with open(os.path.join(d, f"{base:020d}.log"), "wb"):
            pass
    with PartitionLog(d, LogConfig(), readonly=True) as reader:
        assert reader.log_end_offset == 9
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert lg.log_end_offset == 9
        assert len(lg.report.stray_segments) == 2
        lg.append_values([b"v9"], T0)
        assert [r.value for r in read_all(lg, 1 << 20)] == [b"v%d" % i for i in range(10)]
    assert sorted(n for n in os.listdir(d) if n.endswith(".stray")) == [
        "00000000000000099998.log.stray",
        "00000000000000099999.log.stray",
    ]


def test_a_segment_a_power_cut_emptied_ends_the_log_there_and_later_segments_are_set_aside_not_deleted(tmp_path):
    """Above the recovery point a break in the log is an unsynced tail a power cut may lose
    (fsync="never"): the log ends at the break, with no hole below its end, and the later
    segments, which a hostile file could also have caused, are kept as .stray files."""
    from tests.support.logs import force_full_recovery

    d = str(tmp_path / "t-0")
    _three_segments(d)
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        lg.roll()
        lg.append_values([b"v9"], T0)
    later = {}
    for base in (6, 9):
        with open(os.path.join(d, f"{base:020d}.log"), "rb") as f:
            later[base] = f.read()
    os.truncate(os.path.join(d, "00000000000000000003.log"), 0)  # what the power cut kept of it
    force_full_recovery(d)
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert lg.log_end_offset == 3 and lg.report.corruption is None
        assert [s.split(":")[0] for s in lg.report.stray_segments] == [f"{b:020d}.log" for b in (6, 9)]
        assert [r.value for r in read_all(lg, 1 << 20)] == [b"v0", b"v1", b"v2"]
        lg.append_values([b"new"], T0)
    for base, data in later.items():
        with open(os.path.join(d, f"{base:020d}.log.stray"), "rb") as f:
            assert f.read() == data


def test_a_break_below_the_recovery_point_is_damage_and_no_segment_is_set_aside(tmp_path):
    """Below the recovery point the missing bytes were durable once: report the damage, keep
    every file, and leave the cut to an explicit repair."""
    d = str(tmp_path / "t-0")
    _three_segments(d)
    os.truncate(os.path.join(d, "00000000000000000003.log"), 0)
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:  # clean: recovery point 9
        assert lg.report.stray_segments == []
        assert lg.report.corruption is not None
    assert _segment_files(d) == [f"{b:020d}.log" for b in (0, 3, 6)]


def test_recovery_sets_later_segments_aside_instead_of_deleting_them_when_it_cuts_a_torn_segment(tmp_path):
    from tests.support.logs import force_full_recovery

    d = str(tmp_path / "t-0")
    _three_segments(d)
    path = os.path.join(d, "00000000000000000003.log")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # a CRC-covered byte of the last batch
        f.seek(size - 2)
        f.write(b"\xff")
    with open(os.path.join(d, "00000000000000000006.log"), "rb") as f:
        kept = f.read()
    force_full_recovery(d)
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert lg.log_end_offset == 5
        assert [s.split(":")[0] for s in lg.report.stray_segments] == ["00000000000000000006.log"]
        assert lg.report.segments_deleted == 0
    with open(os.path.join(d, "00000000000000000006.log.stray"), "rb") as f:
        assert f.read() == kept


def test_setting_aside_never_overwrites_an_earlier_stray_of_the_same_name(tmp_path):
    d = str(tmp_path / "t-0")
    _three_segments(d)
    for content in (b"first", b"second"):
        with open(os.path.join(d, STRAY), "wb") as f:
            f.write(content)
        with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
            assert lg.log_end_offset == 9
    got = {}
    for n in os.listdir(d):
        if n.startswith(STRAY) and n.endswith(".stray"):
            with open(os.path.join(d, n), "rb") as f:
                got[n] = f.read()
    assert got == {STRAY + ".stray": b"first", STRAY + ".1.stray": b"second"}


def test_a_real_segment_whose_first_header_is_damaged_is_damage_not_a_stray(tmp_path):
    """The baseOffset is outside the CRC: a flipped bit there must stay visible as damage."""
    d = str(tmp_path / "t-0")
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        for i in range(3):
            lg.append_values([b"v%d" % i], T0)
        lg.roll()
        lg.append_values([b"v3"], T0)
        lg.flush()
    path = os.path.join(d, "00000000000000000003.log")
    with open(path, "r+b") as f:
        f.write(b"\x7f")  # baseOffset's top byte
    with PartitionLog(d, LogConfig(retention_ms=-1)) as lg:
        assert lg.report.stray_segments == []
        assert lg.report.corruption is not None
    assert os.path.exists(path)


def test_repair_names_a_stray_segment_file_instead_of_saying_ok(tmp_path):
    """Regression: `logq repair` printed "ok" for a partition holding a stray segment file."""
    from click.testing import CliRunner
    from logq.cli.app import main

    root = str(tmp_path / "data")
    admin = logq.Admin(root)
    admin.create_topic("t", 1)
    with logq.Producer(root) as p:
        p.send("t", b"a", partition=0).result()
    with open(os.path.join(root, "t-0", STRAY), "wb"):
        pass
    report = admin.repair_partition("t", 0)
    assert report.damage is None and report.log_end_offset == 1
    assert any(STRAY in s for s in report.stray_files)
    out = CliRunner().invoke(main, ["--data", root, "repair", "t"])
    assert STRAY in out.output and "set aside" in out.output, out.output
    c = logq.Consumer(root, "t", auto_offset_reset="earliest")
    try:
        assert [r.value for r in c.poll(timeout=1)] == [b"a"]
    finally:
        c.close()


# ----------------------------------------------------------------------------- item 14: idle retention


def _wait_for(cond: object, what: str) -> None:
    import time

    deadline = time.monotonic() + 60  # a hang guard, not a measurement
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def test_an_idle_topic_with_an_open_writer_loses_its_expired_data_on_schedule(tmp_path):
    """Regression: retention ran only when a segment rolled, so idle topics kept data forever."""
    d = str(tmp_path / "t-0")
    cfg = LogConfig(retention_ms=1000, retention_check_interval_ms=20)
    with PartitionLog(d, cfg) as lg:
        for i in range(3):
            lg.append_values([b"old%d" % i], T0)  # 2023: long expired, all in the active segment
        _wait_for(lambda: lg.num_segments == 1 and lg.log_start_offset == 3, "the scheduled check deleted them")
        assert lg.log_end_offset == 3
        lg.append_values([b"new"])  # fresh data stays
        assert [r.value for r in read_all(lg, 1 << 20)] == [b"new"]


def test_retention_keeps_what_has_not_expired_and_keeps_forever_with_minus_one(tmp_path):
    now = int(__import__("time").time() * 1000)
    for ms, start in ((-1, 0), (3_600_000, 2)):
        d = str(tmp_path / f"t{ms}-0")
        with PartitionLog(d, LogConfig(retention_ms=ms, segment_bytes=200)) as lg:
            lg.append_values([b"a" * 100], T0)
            lg.append_values([b"b" * 100], T0)
            lg.append_values([b"c" * 100], now)
            lg.enforce_retention()
            assert (lg.log_start_offset, lg.log_end_offset) == (start, 3)


def test_admin_and_cli_enforce_retention_on_a_topic_no_process_writes(tmp_path):
    from click.testing import CliRunner
    from logq.cli.app import main

    root = str(tmp_path / "data")
    admin = logq.Admin(root)
    admin.create_topic("old", 2, retention_ms=1000)
    admin.create_topic("kept", 1)
    with logq.Producer(root) as p:
        for part in (0, 1):
            p.send("old", b"x", partition=part, timestamp_ms=T0).result()
        p.send("kept", b"y").result()  # now: within the default 7 days
    assert admin.enforce_retention("old") == {("old", 0): 1, ("old", 1): 1}
    assert admin.log_offsets("old", 0) == (1, 1)
    with logq.Producer(root) as p:
        p.send("old", b"z", partition=0, timestamp_ms=T0).result()
    out = CliRunner().invoke(main, ["--data", root, "topics", "enforce-retention"])
    assert out.exit_code == 0, out.output
    assert "old-0: deleted 1 segment(s)" in out.output and "kept-0: deleted 0 segment(s)" in out.output
    assert admin.log_offsets("old", 0) == (2, 2) and admin.log_offsets("kept", 0) == (0, 1)
