"""The one independent reading of a partition directory.

Everything here parses the segment and index files with the codec alone (``validate_batch``,
``decode_records``) and never goes through PartitionLog or the storage layer's segment code,
so a test compares the library with a second reading of the bytes on disk:

- files: segment names, the bases on disk, raw bytes, the index files, the state file;
- :func:`parse_segment` / :func:`scan_dir`: the valid batches of each segment (lenient: it
  stops where the bytes stop being valid, as recovery would);
- :func:`expected_offset_index` / :func:`expected_time_index`: the index files Kafka's rule
  gives for those batches (what a rebuild must write);
- :func:`scan_partition`: a strict scan listing every rule the directory breaks (T1's C2-C5);
- :func:`check_log`: C1-C5 against the acknowledged batches, plus C7 by recovering again, and
  the same checks through the API of a reader (the only place PartitionLog is used: as the
  thing under test).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from logq.codec.batch import BatchHeader, decode_records, validate_batch
from logq.codec.batch import BatchRecord as Record
from logq.config import LogConfig
from logq.errors import CorruptRecordError, LogqError
from logq.storage import meta
from logq.storage.log import PartitionLog

from tests.support.workload import record_tuples, records_digest

STATE_FILE = "logq.state"
LOCK_FILES = (".lock", ".writers")
INDEX_SUFFIXES = (".index", ".timeindex")
DEFAULT_MAX_BATCH_BYTES = 1_048_588


# --------------------------------------------------------------------------- files


def seg_name(base: int, ext: str = ".log") -> str:
    return f"{base:020d}{ext}"


def seg_path(path: os.PathLike | str, base: int, ext: str = ".log") -> str:
    return os.path.join(str(path), seg_name(base, ext))


def log_bases(path: os.PathLike | str) -> list[int]:
    """Base offsets of the segment files in a partition directory, ascending."""
    return sorted(
        int(n[:20]) for n in os.listdir(str(path)) if n.endswith(".log") and len(n) == 24 and n[:20].isdigit()
    )


def file_bytes(p: str) -> bytes:
    """A file's bytes; a missing file reads as empty."""
    try:
        with open(p, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def index_files(path: os.PathLike | str) -> dict[str, bytes]:
    """Contents of every .index / .timeindex file (missing = absent from the dict)."""
    out = {}
    for n in sorted(os.listdir(str(path))):
        if n.endswith(INDEX_SUFFIXES):
            out[n] = file_bytes(os.path.join(str(path), n))
    return out


def read_state(path: os.PathLike | str) -> dict:
    """The partition's logq.state as a dict ({} when absent)."""
    return meta.read_meta(os.path.join(str(path), STATE_FILE)).value or {}


def tree_hash(path: str, indexes: bool = True) -> str:
    """Hash of every file of a partition directory (names and bytes), lock files aside."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(path)):
        if name in LOCK_FILES or (not indexes and name.endswith(INDEX_SUFFIXES)):
            continue
        h.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """A valid batch found in a segment file: where it starts, its header, its records."""

    position: int
    header: BatchHeader
    records: list[Record]

    @property
    def base(self) -> int:
        return self.header.base_offset

    @property
    def last(self) -> int:
        return self.header.last_offset

    @property
    def size(self) -> int:
        return self.header.size

    @property
    def max_ts(self) -> int:
        return self.header.max_timestamp

    @property
    def timestamps(self) -> list[int]:
        return [r.timestamp for r in self.records]

    @cached_property
    def digest(self) -> str:
        return records_digest(record_tuples(self.records))


def walk_segment(
    data: bytes,
    first_offset: int | None = None,
    max_batch_bytes: int | None = None,
    *,
    stop_on_bad_records: bool = True,
) -> tuple[list[Batch], int, CorruptRecordError | None]:
    """Valid batches from the start of a .log file's bytes, where they stop, and why.

    Each batch must begin at the offset the previous one ended (the first at ``first_offset``
    when given). The error is None when the valid batches fill ``data``. A batch whose header
    and CRC are valid but whose records do not decode stops the walk too, or raises when
    ``stop_on_bad_records`` is false (the writer itself produced it: a test failure).
    """
    out: list[Batch] = []
    pos = 0
    expected = first_offset
    while pos < len(data):
        try:
            h = validate_batch(data, pos, max_batch_bytes=max_batch_bytes, expected_offset=expected)
        except CorruptRecordError as e:
            return out, pos, e
        try:
            recs = decode_records(data, h, pos)
        except CorruptRecordError as e:
            if not stop_on_bad_records:
                raise
            return out, pos, e
        out.append(Batch(pos, h, recs))
        expected = h.next_offset
        pos += h.size
    return out, pos, None


def parse_segment(data: bytes) -> tuple[list[Batch], int]:
    """Valid batches from the start of a .log file's bytes, and where they stop."""
    batches, stop, _ = walk_segment(data, stop_on_bad_records=False)
    return batches, stop


def scan_dir(path: os.PathLike | str) -> dict[int, list[Batch]]:
    """Every segment's valid batches, by base offset."""
    return {b: parse_segment(file_bytes(seg_path(path, b)))[0] for b in log_bases(path)}


def records_on_disk(path: os.PathLike | str, start: int = 0) -> list[Record]:
    out = []
    for batches in scan_dir(path).values():
        for b in batches:
            out.extend(r for r in b.records if r.offset >= start)
    return out


def batch_positions(path: os.PathLike | str, base: int) -> list[tuple[int, BatchHeader]]:
    return [(b.position, b.header) for b in parse_segment(file_bytes(seg_path(path, base)))[0]]


# --------------------------------------------------------------------------- index rule


def expected_offset_index(batches: Iterable[Batch], base: int, interval: int) -> bytes:
    """Kafka's LogSegment.append rule, counted in bytes since the last entry."""
    out = bytearray()
    since = 0
    for b in batches:
        if since > interval:
            out += struct.pack(">ii", b.header.last_offset - base, b.position)
            since = 0
        since += b.header.size
    return bytes(out)


def expected_time_index(batches: Sequence[Batch], base: int, interval: int, final: bool) -> bytes:
    """Time entries written with the offset entries (strictly increasing), plus the final one
    that closing (sealing) a segment appends."""
    out = bytearray()
    since = 0
    max_ts, max_off = -1, base
    last_written = -1  # Kafka: an empty time index reads as (-1, base)

    def maybe(ts: int, off: int) -> None:
        nonlocal last_written
        if ts > last_written:
            out.extend(struct.pack(">qi", ts, off - base))
            last_written = ts

    for b in batches:
        if b.header.max_timestamp > max_ts:
            max_ts, max_off = b.header.max_timestamp, b.header.last_offset
        if since > interval:
            maybe(max_ts, max_off)
            since = 0
        since += b.header.size
    if final and batches:
        maybe(max_ts, max_off)
    return bytes(out)


def brute_offset_for_timestamp(records: Sequence[Record], ts: int) -> int | None:
    """Kafka's answer, by brute force: the first offset whose timestamp is >= ts."""
    return next((r.offset for r in records if r.timestamp >= ts), None)


# --------------------------------------------------------------------------- strict scan (T1)


@dataclass
class Scan:
    log_start: int
    leo: int
    segments: list[tuple[int, int]]  # (base, file size)
    batches: dict[int, Batch]
    order: list[int]  # batch bases in log order
    problems: list[str]
    index_mismatch: list[str]  # the last segment's indexes differ from a rebuild
    total_bytes: int


def _check_indexes(base: int, seg_batches: list[Batch], ib: bytes, tb: bytes) -> list[str]:
    """C5: index entries point at batch starts and increase; time entries are where the
    segment's running max timestamp was reached, monotonic."""
    problems: list[str] = []
    starts = {b.position: b for b in seg_batches}
    if len(ib) % 8:
        problems.append(f"C5: {base:020d}.index size {len(ib)}")
    prev = (-1, -1)
    for i in range(0, len(ib) - len(ib) % 8, 8):
        rel, ipos = struct.unpack_from(">ii", ib, i)
        b = starts.get(ipos)
        if b is None or b.last != base + rel:
            problems.append(f"C5: {base:020d}.index entry ({rel}, {ipos}) is not a batch start with that last offset")
        if rel <= prev[0] or ipos <= prev[1]:
            problems.append(f"C5: {base:020d}.index not strictly increasing at entry {i // 8}")
        prev = (rel, ipos)
    if len(tb) % 12:
        problems.append(f"C5: {base:020d}.timeindex size {len(tb)}")
    # A time entry is (running max timestamp, last offset of the batch that first reached it).
    running: dict[int, int] = {}
    m = -1
    for b in seg_batches:
        if b.max_ts > m:
            m = b.max_ts
            running[b.last] = m
    prev_t: tuple[int, int] | None = None
    for i in range(0, len(tb) - len(tb) % 12, 12):
        ts, rel = struct.unpack_from(">qi", tb, i)
        if prev_t is not None and (ts <= prev_t[0] or rel < prev_t[1]):
            problems.append(f"C5: {base:020d}.timeindex not monotonic at entry {i // 12}")
        if seg_batches and running.get(base + rel) != ts:
            problems.append(
                f"C5: {base:020d}.timeindex entry ({ts}, {base + rel}) is not where the segment's max timestamp was reached"
            )
        prev_t = (ts, rel)
    return problems


def scan_partition(path: str, index_interval_bytes: int, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES) -> Scan:
    """Read a partition directory with the codec alone; list every rule it breaks."""
    log_start = int(read_state(path).get("log_start_offset", 0))
    bases = log_bases(path)
    problems: list[str] = []
    mism: list[str] = []
    batches: dict[int, Batch] = {}
    order: list[int] = []
    segments: list[tuple[int, int]] = []
    expected: int | None = None
    total = 0
    for k, base in enumerate(bases):
        data = file_bytes(seg_path(path, base))
        segments.append((base, len(data)))
        total += len(data)
        if expected is not None and base != expected:
            problems.append(f"C4: segment {base} follows a segment ending at {expected}")
        seg_batches, stop, err = walk_segment(data, base, max_batch_bytes)
        if err is not None:
            problems.append(f"C2/C3: {base:020d}.log: invalid bytes at {stop} of {len(data)}: {err.reason}")
        for b in seg_batches:
            h = b.header
            if h.records_count != h.last_offset_delta + 1 or [r.offset for r in b.records] != list(
                range(h.base_offset, h.last_offset + 1)
            ):
                problems.append(f"C2: batch {h.base_offset} record offsets do not match its header")
            batches[b.base] = b
            order.append(b.base)
        expected = seg_batches[-1].header.next_offset if seg_batches else base
        ib, tb = file_bytes(seg_path(path, base, ".index")), file_bytes(seg_path(path, base, ".timeindex"))
        problems += _check_indexes(base, seg_batches, ib, tb)
        if k + 1 < len(bases):
            continue  # exact comparison only for the last segment, which recovery rebuilt
        interval = index_interval_bytes
        if ib != expected_offset_index(seg_batches, base, interval):
            want = len(expected_offset_index(seg_batches, base, interval))
            mism.append(f"{base:020d}.index differs from a rebuild ({len(ib) // 8} vs {want // 8} entries)")
        if tb != expected_time_index(seg_batches, base, interval, final=False):
            want = len(expected_time_index(seg_batches, base, interval, final=False))
            mism.append(f"{base:020d}.timeindex differs from a rebuild ({len(tb) // 12} vs {want // 12} entries)")
    leo = expected if expected is not None else log_start
    if bases and not bases[0] <= log_start <= leo:
        problems.append(f"C4: log start {log_start} outside [{bases[0]}, {leo}]")
    return Scan(log_start, leo, segments, batches, order, problems, mism, total)


# --------------------------------------------------------------------------- recovery checks


@dataclass
class CheckResult:
    leo: int
    log_start: int
    records: int
    lost: list[int] = field(default_factory=list)  # bases of acked batches not found intact
    lost_records: int = 0
    lost_window: int = 0  # offsets between the last acked record and the recovered log end
    retained_away: int = 0  # acked batches below the log start (retention)
    problems: list[str] = field(default_factory=list)
    hash_after: str = ""
    data_hash_after: str = ""  # the same without index files
    segments: int = 0


def check_log(
    path: str,
    config: LogConfig,
    acked: Mapping[int, Any],
    *,
    exact_indexes: bool = True,
    retention: bool = False,
    boot_id: str | None = None,
    timestamp_probes: int = 200,
    recover_again: bool = True,
) -> CheckResult:
    """T1's checks C1-C5 on a recovered directory, and C7 by recovering it once more.

    ``acked`` maps base offset -> Ack (tests.support.workload). With ``recover_again`` the
    caller must have recovered the directory already in another process (which left it
    unclean); this opens a writer here, which recovers again, and the tree hash after that
    is returned in ``hash_after`` for the caller to compare.
    """
    scan = scan_partition(path, config.index_interval_bytes, config.max_batch_bytes)
    res = CheckResult(scan.leo, scan.log_start, 0, problems=list(scan.problems), segments=len(scan.segments))
    if exact_indexes:
        res.problems += [f"C5: {m}" for m in scan.index_mismatch]
    # C1: every acked batch present at its offset, byte-identical
    for base, ack in sorted(acked.items()):
        if ack.last < scan.log_start:
            if retention:
                res.retained_away += 1
                continue
        b = scan.batches.get(base)
        if b is None or b.last != ack.last or b.digest != ack.digest:
            res.lost.append(base)
            res.lost_records += ack.last - ack.base + 1
    if res.lost:  # the caller decides whether loss is a failure (it is not for D0 power cuts)
        res.lost_window = max(a.last + 1 for a in acked.values()) - scan.leo
    # C4: contiguous from the log start (scan_partition checks segment joins; here the whole chain)
    nxt = None
    for base in scan.order:
        b = scan.batches[base]
        if nxt is not None and base != nxt:
            res.problems.append(f"C4: batch {base} follows {nxt}")
        nxt = b.last + 1
    if scan.order and scan.batches[scan.order[0]].base > scan.log_start and scan.log_start != scan.segments[0][0]:
        res.problems.append("C4: first batch starts after the log start")
    res.records = sum(b.last - b.base + 1 for b in scan.batches.values() if b.last >= scan.log_start)
    if recover_again:
        env_boot = None
        if boot_id:
            from logq.storage import state as state_mod

            env_boot, state_mod.boot_id = state_mod.boot_id, (lambda: boot_id)
        try:
            w = PartitionLog(path, config)
            res.hash_after = tree_hash(path)
            res.data_hash_after = tree_hash(path, indexes=False)
            w.close()
        finally:
            if env_boot is not None:
                from logq.storage import state as state_mod

                state_mod.boot_id = env_boot
    # C2, C5 through the API of a reader in this process
    res.problems += api_checks(path, config, scan, timestamp_probes)
    return res


def api_checks(path: str, config: LogConfig, scan: Scan, probes: int) -> list[str]:
    """A readonly PartitionLog must serve exactly what the files hold (C2) and find offsets
    and timestamps as a brute-force search over the scan does (C5)."""
    out: list[str] = []
    log = PartitionLog(path, config, readonly=True)
    try:
        if log.log_end_offset != scan.leo or log.log_start_offset != scan.log_start:
            out.append(
                f"API: log range [{log.log_start_offset}, {log.log_end_offset}) but files hold [{scan.log_start}, {scan.leo})"
            )
        live = [b for b in scan.order if scan.batches[b].last >= scan.log_start]
        off, i = (scan.log_start if live else scan.leo), 0
        while off < scan.leo:
            try:
                fr = log.read(off, 256 * 1024)
            except LogqError as e:
                out.append(f"C2: read({off}) raised {e}")
                break
            if not fr.headers:
                out.append(f"C2: read({off}) returned nothing before the end {scan.leo}")
                break
            recs = fr.records()
            j = 0
            for h in fr.headers:
                n = h.last_offset_delta + 1
                b = scan.batches.get(h.base_offset)
                if b is None or i >= len(live) or live[i] != h.base_offset:
                    out.append(f"C2: read returned a batch at {h.base_offset} the files do not have there")
                elif records_digest(record_tuples(recs[j : j + n])) != b.digest:
                    out.append(f"C2: batch {h.base_offset} read back differently")
                j += n
                i += 1
            off = fr.next_offset
        # C5: lookups for sampled offsets start at the batch that holds them
        rng = random.Random(scan.leo)
        if live:
            lo = scan.batches[live[0]].base
            for target in (
                {rng.randrange(lo, scan.leo) for _ in range(min(200, scan.leo - lo))} if scan.leo > lo else ()
            ):
                try:
                    fr = log.read(target, 1)
                except LogqError as e:
                    out.append(f"C2: read({target}) raised {e}")
                    break
                if not fr.headers or not fr.headers[0].base_offset <= target <= fr.headers[0].last_offset:
                    out.append(f"C5: read({target}) did not start at the batch holding it")
                    break
        # C5: offset_for_timestamp equals a brute-force scan
        pairs = [(b.base + k, t) for base in live for b in (scan.batches[base],) for k, t in enumerate(b.timestamps)]
        pairs = [(o, t) for o, t in pairs if o >= scan.log_start]
        if pairs:
            pm, m = [], None
            for _, t in pairs:
                m = t if m is None or t > m else m
                pm.append(m)
            ts_all = [t for _, t in pairs]
            targets = {min(ts_all) - 1, max(ts_all), max(ts_all) + 1}
            targets |= {rng.choice(ts_all) + rng.choice((-1, 0, 0, 1)) for _ in range(probes)}
            for t in sorted(targets):
                k = bisect.bisect_left(pm, t)
                want = pairs[k][0] if k < len(pairs) else None
                try:
                    got = log.offset_for_timestamp(t)
                except LogqError as e:
                    out.append(f"C5: offset_for_timestamp({t}) raised {e}")
                    break
                if got != want:
                    out.append(f"C5: offset_for_timestamp({t}) = {got}, brute force {want}")
                    break
    finally:
        log.close()
    return out
