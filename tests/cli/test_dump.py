"""`logq dump`: segments are built here byte by byte, dumped through the CLI, and the
report is parsed back and compared with what was written."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from crc32c import crc32c
from logq.cli import dump as dump_mod
from logq.cli import main
from logq.cli.options import TerminalProgress
from logq.codec.batch import Compression, encode_batch, encode_values, read_header
from logq.errors import StorageError

T = 1700000000000
VECTOR_A = bytes.fromhex(
    "0000000000000000000000420000000002cdfe91db0000000000010000018bcfe568000000018bcfe568"
    "05ffffffffffffffffffffffffffff000000020e0000000102610010000a020104626300"
)
KAFKA_BATCH_FIELDS = [
    "baseOffset", "lastOffset", "count", "baseSequence", "lastSequence", "producerId",
    "producerEpoch", "partitionLeaderEpoch", "isTransactional", "isControl", "deleteHorizonMs",
    "position", "CreateTime", "size", "magic", "compresscodec", "crc", "isvalid",
]  # fmt: skip
FIELD = re.compile(r"(\w+): (\[[^\]]*\]|\S+)")
FOUND = re.compile(r"^Found (\d+) invalid bytes at the end of (\S+)")


# ----------------------------------------------------------------------------- helpers


def seg(directory: Path, base: int, suffix: str = ".log") -> Path:
    return directory / f"{base:020d}{suffix}"


def write_log(path: Path, batches: Sequence[bytes]) -> list[int]:
    """Write batches back to back; return their positions."""
    positions, pos = [], 0
    for b in batches:
        positions.append(pos)
        pos += len(b)
    path.write_bytes(b"".join(batches))
    return positions


def write_index(path: Path, base: int, entries: Sequence[tuple[int, int]], zero_slots: int = 0) -> None:
    data = b"".join(struct.pack(">ii", off - base, pos) for off, pos in entries)
    path.write_bytes(data + b"\x00" * 8 * zero_slots)


def write_time_index(path: Path, base: int, entries: Sequence[tuple[int, int]], zero_slots: int = 0) -> None:
    data = b"".join(struct.pack(">qi", ts, off - base) for ts, off in entries)
    path.write_bytes(data + b"\x00" * 12 * zero_slots)


def values_batch(base: int, n: int, ts: int = T, size: int = 10) -> bytes:
    return encode_values([f"v{base + i}".encode().ljust(size, b".") for i in range(n)], ts, base)


def with_attributes(batch: bytes, bits: int) -> bytes:
    """Set attribute bits and re-seal the CRC, as a broker would."""
    b = bytearray(batch)
    attrs = int.from_bytes(b[21:23], "big") | bits
    b[21:23] = attrs.to_bytes(2, "big")
    b[17:21] = crc32c(bytes(b[21:])).to_bytes(4, "big")
    return bytes(b)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def parse(line: str) -> dict[str, str]:
    return dict(FIELD.findall(line))


def batch_lines(out: str) -> list[dict[str, str]]:
    return [parse(line) for line in out.splitlines() if line.startswith("baseOffset: ")]


def record_lines(out: str) -> list[dict[str, str]]:
    recs = []
    for line in out.splitlines():
        if line.startswith("| "):
            head, _, payload = line.partition(" payload: ")
            d = parse(head)
            if _:
                d["payload"] = payload
            recs.append(d)
    return recs


def expect_batch(line: dict[str, str], batch: bytes, position: int, isvalid: bool = True) -> None:
    h = read_header(batch)
    assert int(line["baseOffset"]) == h.base_offset
    assert int(line["lastOffset"]) == h.last_offset
    assert int(line["count"]) == h.records_count
    assert int(line["position"]) == position
    assert int(line["size"]) == len(batch)
    assert int(line["crc"]) == h.crc
    assert int(line[h.timestamp_type]) == h.max_timestamp
    assert line["isvalid"] == ("true" if isvalid else "false")


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("logq: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, list[bytes], list[int]]:
    """A segment with base 1000 holding three batches of 2, 3 and 2 records."""
    batches = [values_batch(1000, 2, T), values_batch(1002, 3, T + 7), values_batch(1005, 2, T + 9)]
    log = seg(tmp_path, 1000)
    return log, batches, write_log(log, batches)


# ----------------------------------------------------------------------------- .log dumps


def test_golden_vector_a_is_dumped_with_kafkas_fields_in_kafkas_order(tmp_path: Path) -> None:
    log = seg(tmp_path, 0)
    log.write_bytes(VECTOR_A)
    r = run("dump", str(log))
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"Dumping {log}", "Log starting offset: 0"]
    assert [k for k, _ in FIELD.findall(lines[2])] == KAFKA_BATCH_FIELDS
    assert parse(lines[2]) == {
        "baseOffset": "0", "lastOffset": "1", "count": "2", "baseSequence": "-1",
        "lastSequence": "-1", "producerId": "-1", "producerEpoch": "-1",
        "partitionLeaderEpoch": "0", "isTransactional": "false", "isControl": "false",
        "deleteHorizonMs": "-1", "position": "0", "CreateTime": "1700000000005", "size": "78",
        "magic": "2", "compresscodec": "none", "crc": "3456012763", "isvalid": "true",
    }  # fmt: skip
    assert len(lines) == 3


def test_batches_written_back_to_back_match_offsets_positions_sizes_and_crcs(three: Any) -> None:
    log, batches, positions = three
    r = run("dump", str(log))
    assert r.exit_code == 0, r.output
    assert "Log starting offset: 1000" in r.stdout
    got = batch_lines(r.stdout)
    assert len(got) == 3
    for line, batch, pos in zip(got, batches, positions):
        expect_batch(line, batch, pos)
    assert r.stderr == ""  # no progress when stderr is not a terminal


def test_empty_log_prints_only_the_header(tmp_path: Path) -> None:
    log = seg(tmp_path, 7)
    log.write_bytes(b"")
    r = run("dump", str(log))
    assert r.exit_code == 0
    assert r.stdout.splitlines() == [f"Dumping {log}", "Log starting offset: 7"]


def test_deep_prints_one_line_per_record_with_sizes_sequences_and_header_keys(tmp_path: Path) -> None:
    recs = [(b"k1", b"hello", [("a", b"1"), ("b", None)], T), (None, b"xy", None, T + 3)]
    batch = encode_batch(recs, 10, producer_id=77, producer_epoch=3, base_sequence=40)
    log = seg(tmp_path, 10)
    write_log(log, [batch])
    r = run("dump", "--deep", str(log))
    assert r.exit_code == 0, r.output
    b = batch_lines(r.stdout)[0]
    assert (b["producerId"], b["producerEpoch"], b["baseSequence"], b["lastSequence"]) == ("77", "3", "40", "41")
    got = record_lines(r.stdout)
    assert got == [
        {
            "offset": "10",
            "CreateTime": str(T),
            "keySize": "2",
            "valueSize": "5",
            "sequence": "40",
            "headerKeys": "[a,b]",
        },
        {
            "offset": "11",
            "CreateTime": str(T + 3),
            "keySize": "-1",
            "valueSize": "2",
            "sequence": "41",
            "headerKeys": "[]",
        },
    ]
    assert "payload:" not in r.stdout and "key:" not in r.stdout


def test_sequences_wrap_past_int32_max_like_kafka(tmp_path: Path) -> None:
    batch = encode_batch([(None, b"x", None, T)] * 3, 0, producer_id=1, producer_epoch=0, base_sequence=2**31 - 2)
    log = seg(tmp_path, 0)
    write_log(log, [batch])
    r = run("dump", "--deep", str(log))
    assert batch_lines(r.stdout)[0]["lastSequence"] == "0"
    assert [rec["sequence"] for rec in record_lines(r.stdout)] == ["2147483646", "2147483647", "0"]


def test_print_data_implies_deep_and_shows_key_and_payload_as_text(tmp_path: Path) -> None:
    recs = [
        (b"user-1", b"plain", None, T),
        (None, b"\xff\xfeok", None, T),  # not UTF-8
        (b"k", None, None, T),  # tombstone
        (b"k", b"two\nlines\x1b[31m", None, T),  # control characters stay on one line
    ]
    log = seg(tmp_path, 0)
    write_log(log, [encode_batch(recs, 0)])
    r = run("dump", "--print-data", str(log))
    assert r.exit_code == 0, r.output
    got = record_lines(r.stdout)
    assert len(got) == 4 and len(r.stdout.splitlines()) == 3 + 4
    assert (got[0]["key"], got[0]["payload"]) == ("user-1", "plain")
    assert (got[1]["key"], got[1]["keySize"], got[1]["payload"]) == ("null", "-1", "\ufffd\ufffdok")
    assert (got[2]["payload"], got[2]["valueSize"]) == ("null", "-1")
    assert got[3]["payload"] == "two\\nlines\\x1b[31m"
    assert "\x1b" not in r.stdout


def test_json_lines_parse_and_carry_the_same_numbers_as_the_text(three: Any) -> None:
    log, batches, positions = three
    text = run("dump", "--deep", str(log))
    r = run("dump", "--deep", "--json", str(log))
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs[0] == {"type": "file", "path": str(log), "kind": "log", "logStartOffset": 1000}
    jb = [o for o in objs if o["type"] == "batch"]
    for o, line, batch, pos in zip(jb, batch_lines(text.stdout), batches, positions):
        assert o["crc"] == read_header(batch).crc and o["position"] == pos and o["size"] == len(batch)
        assert o["isvalid"] is True and o["compresscodec"] == "none"
        for key, value in line.items():
            want = o["maxTimestamp"] if key == "CreateTime" else o[key]
            assert value == (str(want).lower() if isinstance(want, bool) else str(want)), key
    jr = [o for o in objs if o["type"] == "record"]
    assert [o["offset"] for o in jr] == list(range(1000, 1007))
    assert [int(t["offset"]) for t in record_lines(text.stdout)] == [o["offset"] for o in jr]


def test_gzip_batch_shows_compresscodec_gzip_and_its_records_with_deep(tmp_path: Path) -> None:
    recs = [(f"k{i}".encode(), f"value-{i}".encode() * 5, None, T + i) for i in range(4)]
    plain, gz = encode_batch(recs[:1], 0), encode_batch(recs, 1, compression=Compression.GZIP)
    log = seg(tmp_path, 0)
    positions = write_log(log, [plain, gz])
    r = run("dump", "--print-data", str(log))
    assert r.exit_code == 0, r.output
    b = batch_lines(r.stdout)
    assert [x["compresscodec"] for x in b] == ["none", "gzip"]
    expect_batch(b[1], gz, positions[1])
    got = record_lines(r.stdout)
    assert [x["offset"] for x in got] == ["0", "1", "2", "3", "4"]
    assert [x["payload"] for x in got[1:]] == [(f"value-{i}" * 5) for i in range(4)]
    assert [x["keySize"] for x in got[1:]] == ["2"] * 4


def test_log_append_time_transactional_control_batch(tmp_path: Path) -> None:
    marker = encode_batch([(b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x07", None, T)], 5,
                          producer_id=9, producer_epoch=1, base_sequence=-1)  # fmt: skip
    batch = with_attributes(marker, 0x08 | 0x10 | 0x20)
    log = seg(tmp_path, 5)
    write_log(log, [batch])
    r = run("dump", "--deep", str(log))
    assert r.exit_code == 0, r.output
    b = batch_lines(r.stdout)[0]
    assert (b["isTransactional"], b["isControl"], b["LogAppendTime"]) == ("true", "true", str(T))
    assert "CreateTime" not in r.stdout
    line = [x for x in r.stdout.splitlines() if x.startswith("| ")][0]
    assert f"LogAppendTime: {T}" in line and "endTxnMarker: COMMIT coordinatorEpoch: 7" in line


# ----------------------------------------------------------------------------- damage


def test_truncated_last_batch_reports_the_invalid_bytes_and_exits_1(three: Any) -> None:
    log, batches, positions = three
    cut = 9
    log.write_bytes(log.read_bytes()[:-cut])
    r = run("dump", str(log))
    assert r.exit_code == 1
    got = batch_lines(r.stdout)
    assert len(got) == 2
    for line, batch, pos in zip(got, batches, positions):
        expect_batch(line, batch, pos)
    found = [FOUND.match(x) for x in r.stdout.splitlines() if x.startswith("Found")]
    assert len(found) == 1 and found[0] is not None
    assert int(found[0].group(1)) == len(batches[2]) - cut
    assert found[0].group(2) == log.name
    assert r.stdout.splitlines()[-1].startswith("Found")


def test_trailing_garbage_shorter_than_a_batch_prefix(three: Any) -> None:
    log, batches, _ = three
    log.write_bytes(log.read_bytes() + b"\x00\x01\x02\x03\x04")
    r = run("dump", str(log))
    assert r.exit_code == 1
    assert len(batch_lines(r.stdout)) == 3
    assert r.stdout.splitlines()[-1].startswith(f"Found 5 invalid bytes at the end of {log.name}")


def test_crc_flipped_middle_batch_is_shown_invalid_and_the_scan_goes_on(three: Any) -> None:
    log, batches, positions = three
    data = bytearray(log.read_bytes())
    data[positions[1] + 70] ^= 0x01  # inside the records, covered by the CRC
    log.write_bytes(bytes(data))
    r = run("dump", "--deep", str(log))
    assert r.exit_code == 1
    got = batch_lines(r.stdout)
    assert [x["isvalid"] for x in got] == ["true", "false", "true"]
    for line, batch, pos, ok in zip(got, batches, positions, (True, False, True)):
        expect_batch(line, batch, pos, ok)  # stored CRC is printed, unchanged
    assert "invalid bytes" not in r.stdout


def test_structurally_bad_middle_batch_stops_the_scan(three: Any) -> None:
    log, batches, positions = three
    data = bytearray(log.read_bytes())
    data[positions[1] + 16] = 1  # magic: outside the CRC, so only structure can catch it
    log.write_bytes(bytes(data))
    r = run("dump", "--json", str(log))
    assert r.exit_code == 1
    objs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [o["type"] for o in objs] == ["file", "batch", "invalid_bytes"]
    bad = objs[2]
    assert bad["count"] == len(data) - positions[1] and bad["position"] == positions[1]
    assert "magic" in bad["reason"]


def test_oversized_length_is_refused_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = values_batch(0, 2)
    log = seg(tmp_path, 0)
    log.write_bytes(good + struct.pack(">qi", 2, 0x7FFFFF00) + b"\xab" * 1000)
    sizes: list[int] = []
    real = os.pread
    monkeypatch.setattr(dump_mod.os, "pread", lambda fd, n, pos: sizes.append(n) or real(fd, n, pos))
    opts = dump_mod.DumpOptions(max_batch_bytes=200, read_chunk_bytes=64)
    events = list(dump_mod.dump_events([str(log)], opts))
    assert [e["type"] for e in events] == ["file", "batch", "invalid_bytes"]
    assert events[2]["count"] == 1012 and "exceeds the limit 200" in events[2]["reason"]
    assert max(sizes) <= max(64, len(good))


def test_large_log_is_streamed_in_bounded_reads_with_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [values_batch(i * 5, 5, T + i, size=200) for i in range(300)]
    log = seg(tmp_path, 0)
    positions = write_log(log, batches)
    size = log.stat().st_size
    sizes: list[int] = []
    real = os.pread
    monkeypatch.setattr(dump_mod.os, "pread", lambda fd, n, pos: sizes.append(n) or real(fd, n, pos))
    seen: list[tuple[str, int, int]] = []
    opts = dump_mod.DumpOptions(read_chunk_bytes=4096, progress=lambda p, d, t: seen.append((p, d, t)))
    lines = [dump_mod.format_text(e) for e in dump_mod.dump_events([str(log)], opts)]
    got = batch_lines("\n".join(lines))
    assert [int(x["position"]) for x in got] == positions
    assert max(sizes) <= 4096 and sum(sizes) < 2 * size
    assert seen[-1] == (str(log), size, size)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


# ----------------------------------------------------------------------------- indexes


def test_index_dump_prints_absolute_offsets_and_stops_at_the_zero_tail(tmp_path: Path) -> None:
    idx = seg(tmp_path, 100, ".index")
    write_index(idx, 100, [(100, 0), (105, 400), (109, 800)], zero_slots=4)
    r = run("dump", str(idx))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == [
        f"Dumping {idx}",
        "offset: 100 position: 0",
        "offset: 105 position: 400",
        "offset: 109 position: 800",
    ]


def test_time_index_dump_and_its_zero_tail(tmp_path: Path) -> None:
    tix = seg(tmp_path, 100, ".timeindex")
    write_time_index(tix, 100, [(T + 5, 104), (T + 9, 110)], zero_slots=2)
    r = run("dump", "--json", str(tix))
    assert r.exit_code == 0, r.output
    objs = [json.loads(x) for x in r.stdout.splitlines()]
    assert objs[1:] == [
        {"type": "time_index_entry", "timestamp": T + 5, "offset": 104},
        {"type": "time_index_entry", "timestamp": T + 9, "offset": 110},
    ]
    assert run("dump", str(tix)).stdout.splitlines()[1] == f"timestamp: {T + 5} offset: 104"


def test_index_of_odd_size_is_reported(tmp_path: Path) -> None:
    idx = seg(tmp_path, 0, ".index")
    idx.write_bytes(struct.pack(">ii", 3, 100) + b"\x01\x02\x03")
    r = run("dump", str(idx))
    assert r.exit_code == 1
    assert "offset: 3 position: 100" in r.stdout
    assert "not a multiple of the 8-byte entry size" in r.stdout


def test_verify_index_accepts_a_correct_index_and_time_index(three: Any) -> None:
    log, batches, positions = three
    idx, tix = log.with_suffix(".index"), log.with_suffix(".timeindex")
    write_index(idx, 1000, [(1004, positions[1]), (1006, positions[2])])
    write_time_index(tix, 1000, [(T + 7, 1004), (T + 9, 1006)])
    r = run("dump", "--verify-index", str(idx), str(tix))
    assert r.exit_code == 0, r.output
    assert f"Verified 2 entries of {idx.name} against {log.name}: 0 problems" in r.stdout
    assert f"Verified 2 entries of {tix.name} against {log.name}: 0 problems" in r.stdout
    assert "mismatch" not in r.stdout


def test_verify_index_catches_an_entry_pointing_mid_batch(three: Any) -> None:
    log, batches, positions = three
    idx = log.with_suffix(".index")
    write_index(idx, 1000, [(1004, positions[1] + 12), (1006, positions[2])])
    r = run("dump", "--verify-index", str(idx))
    assert r.exit_code == 1
    bad = [x for x in r.stdout.splitlines() if x.startswith("Index mismatch")]
    assert len(bad) == 1
    assert f"entry 0 (offset: 1004 position: {positions[1] + 12})" in bad[0]
    assert f"inside the batch at position {positions[1]} (offsets 1002-1004)" in bad[0]
    assert "1 problems" in r.stdout
    assert run("dump", str(idx)).exit_code == 0  # without --verify-index nothing is checked


def test_verify_index_catches_wrong_offsets_order_and_positions_past_the_log(three: Any) -> None:
    log, batches, positions = three
    idx = log.with_suffix(".index")
    size = log.stat().st_size
    entries = [(1006, positions[2]), (1004, positions[1]), (1005, positions[2]), (1007, size)]
    write_index(idx, 1000, entries)
    r = run("dump", "--json", "--verify-index", str(idx))
    assert r.exit_code == 1
    problems = [json.loads(x) for x in r.stdout.splitlines() if '"problem"' in x]
    by_entry = {}
    for p in problems:
        by_entry.setdefault(p["entry"], []).append(p["message"])
    assert 0 not in by_entry  # correct entry
    assert len(by_entry[1]) == 1 and "not greater than the previous entry's 1006" in by_entry[1][0]
    assert len(by_entry[2]) == 1 and "has lastOffset 1006" in by_entry[2][0]
    assert len(by_entry[3]) == 1 and f"not inside the log's {size} valid bytes" in by_entry[3][0]


def test_verify_index_catches_a_non_monotonic_time_index(three: Any) -> None:
    log, batches, positions = three
    tix = log.with_suffix(".timeindex")
    write_time_index(tix, 1000, [(T + 7, 1004), (T + 3, 1006), (T + 20, 1500)])
    r = run("dump", "--verify-index", str(tix))
    assert r.exit_code == 1
    bad = [x for x in r.stdout.splitlines() if x.startswith("Time index mismatch")]
    assert any(
        "entry 1" in x and f"timestamp {T + 3} is not greater than the previous entry's {T + 7}" in x for x in bad
    )
    assert any("entry 1" in x and f"has maxTimestamp {T + 9}" in x for x in bad)
    assert any("entry 2" in x and "offset 1500 is not in any batch" in x for x in bad)
    assert not any("entry 0" in x for x in bad)


def test_verify_index_without_its_log_is_reported(tmp_path: Path) -> None:
    idx = seg(tmp_path, 0, ".index")
    write_index(idx, 0, [(3, 100)])
    r = run("dump", "--verify-index", str(idx))
    assert r.exit_code == 1
    assert f"Cannot verify {idx.name}" in r.stdout


# ----------------------------------------------------------------------------- paths, CLI


def test_partition_directory_dumps_every_segment_file_in_order(tmp_path: Path) -> None:
    part = tmp_path / "orders-0"
    part.mkdir()
    first, second = [values_batch(0, 3)], [values_batch(3, 2, T + 1)]
    write_log(seg(part, 0), first)
    write_log(seg(part, 3), second)
    for base, b in ((0, first[0]), (3, second[0])):
        write_index(seg(part, base, ".index"), base, [])
        write_time_index(
            seg(part, base, ".timeindex"), base, [(read_header(b).max_timestamp, read_header(b).last_offset)]
        )
    (part / "leader-epoch-checkpoint").write_text("0\n0\n")
    seg(part, 0, ".snapshot").write_bytes(b"x")
    r = run("dump", "--verify-index", str(part))
    assert r.exit_code == 0, r.output
    dumped = [x.split(" ", 1)[1] for x in r.stdout.splitlines() if x.startswith("Dumping ")]
    assert dumped == [str(seg(part, b, s)) for b in (0, 3) for s in (".log", ".index", ".timeindex")]
    assert [x for x in r.stdout.splitlines() if x.startswith("Log starting")] == [
        "Log starting offset: 0",
        "Log starting offset: 3",
    ]
    assert [x["baseOffset"] for x in batch_lines(r.stdout)] == ["0", "3"]


def test_relative_path_is_also_found_under_data_dir_and_logq_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part = tmp_path / "root" / "t-0"
    part.mkdir(parents=True)
    write_log(seg(part, 0), [VECTOR_A])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = run("--data", str(tmp_path / "root"), "dump", "t-0")
    assert r.exit_code == 0, r.output
    assert "crc: 3456012763" in r.stdout
    r = run("dump", "t-0", env={"LOGQ_DATA": str(tmp_path / "root")})
    assert r.exit_code == 0 and "crc: 3456012763" in r.stdout
    assert run("dump", "t-0").exit_code == 2  # default ./logq-data has no t-0


def test_missing_file_is_a_one_line_error_with_exit_2(tmp_path: Path) -> None:
    log = seg(tmp_path, 0)
    log.write_bytes(VECTOR_A)
    r = run("dump", str(log), str(tmp_path / "nope.log"))
    assert r.exit_code == 2
    assert one_error_line(r) == f"logq: {tmp_path / 'nope.log'}: no such file or directory"
    assert r.stdout == ""  # every path is checked before anything is printed


@pytest.mark.parametrize(
    "args, needle",
    [
        (["dump", "--bogus", "x.log"], "No such option"),
        (["dump"], "Missing argument"),
        (["--bogus", "dump"], "No such option"),
        (["dump", "--max-batch-bytes", "10", "x.log"], "--max-batch-bytes"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], needle: str) -> None:
    r = run(*args)
    assert r.exit_code == 2
    assert needle in one_error_line(r)


def test_unsupported_file_and_empty_directory_are_usage_errors(tmp_path: Path) -> None:
    other = tmp_path / "leader-epoch-checkpoint"
    other.write_text("0\n")
    r = run("dump", str(other))
    assert r.exit_code == 2 and "give a .log, .index or .timeindex file" in one_error_line(r)
    empty = tmp_path / "empty-0"
    empty.mkdir()
    r = run("dump", str(empty))
    assert r.exit_code == 2 and "no .log, .index or .timeindex files" in one_error_line(r)


def test_logq_errors_and_unexpected_errors_become_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def io_error(*a: Any, **k: Any) -> int:
        raise StorageError("read", "x.log", OSError(5, "Input/output error"))

    monkeypatch.setattr(dump_mod, "run_dump", io_error)
    r = run("dump", "x.log")
    assert r.exit_code == 1
    assert one_error_line(r).startswith("logq: read failed on x.log: Input/output error")

    def bug(*a: Any, **k: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(dump_mod, "run_dump", bug)
    r = run("dump", "x.log")
    assert r.exit_code == 1
    assert one_error_line(r).startswith("logq: internal error: RuntimeError: boom")
    r = run("dump", "x.log", env={"LOGQ_DEBUG": "1"})
    assert isinstance(r.exception, RuntimeError)


def test_real_subprocess_python_m_logq_cli(three: Any, tmp_path: Path) -> None:
    log, batches, positions = three
    proc = subprocess.run(
        [sys.executable, "-m", "logq", "dump", "--deep", str(log)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for line, batch, pos in zip(batch_lines(proc.stdout), batches, positions):
        expect_batch(line, batch, pos)
    assert len(record_lines(proc.stdout)) == 7
    proc = subprocess.run(
        [sys.executable, "-m", "logq", "dump", str(tmp_path / "missing.log")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"logq: {tmp_path / 'missing.log'}: no such file or directory"]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_is_drawn_only_for_a_terminal_and_cleared() -> None:
    assert TerminalProgress.enabled(stdout=_Stream(False), stderr=_Stream(True))
    assert not TerminalProgress.enabled(stdout=_Stream(False), stderr=_Stream(False))
    assert not TerminalProgress.enabled(stdout=_Stream(True), stderr=_Stream(True))
    err = _Stream(True)
    p = TerminalProgress(err, delay_s=0.0, interval_s=0.0)
    p("/x/00000000000000000000.log", 512 * 1024, 1024 * 1024)
    assert "00000000000000000000.log:  50.0% (0.5 of 1.0 MiB)" in err.getvalue()
    p.clear()
    assert err.getvalue().endswith("\r\x1b[K")
    quiet = _Stream(True)
    TerminalProgress(quiet, delay_s=60.0)("/x/a.log", 1, 2)  # small files never show it
    assert quiet.getvalue() == ""
