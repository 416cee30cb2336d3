"""Model-based test of PartitionLog (reliability.md T7.1): random sequences of appends, reads,
time lookups, rolls, retention, purges, clean reopens and simulated process crashes (with
torn, garbage or zero-filled tails), checked after every step against a plain model: the list
of every record ever appended (index = offset) and the log start offset.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from logq.codec.batch import BatchRecord as Record
from logq.storage.log import PartitionLog

from tests.support.logs import (
    T0,
    config,
    crash,
    read_all,
)
from tests.support.oracle import (
    expected_offset_index,
    expected_time_index,
    file_bytes,
    log_bases,
    parse_segment,
    read_state,
    seg_path,
)

CFG = config(segment_bytes=3000, index_interval_bytes=300)

keys = st.none() | st.binary(max_size=12)
values = st.none() | st.binary(max_size=160)
headers = st.lists(st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=8)), max_size=3).map(tuple)
stamps = st.integers(T0 - 5_000, T0 + 5_000)
records_in = st.lists(st.tuples(keys, values, headers, stamps), max_size=50)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class PartitionLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # fsync is free here: these are process crashes, after which the page cache survives.
        self._real_fsync, self._real_fdatasync = os.fsync, os.fdatasync
        os.fsync = os.fdatasync = lambda fd: None  # type: ignore[assignment]
        self.fds_before = open_fds()
        self.root = tempfile.mkdtemp(prefix="logq-model-")
        self.path = os.path.join(self.root, "model-0")
        self.log = PartitionLog(self.path, CFG)
        self.model: list[Record] = []  # every record ever appended; index = offset
        self.start = 0

    def teardown(self) -> None:
        try:
            self.log.close()
            assert open_fds() == self.fds_before, "descriptors leaked"
        finally:
            os.fsync, os.fdatasync = self._real_fsync, self._real_fdatasync  # type: ignore[assignment]
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def end(self) -> int:
        return len(self.model)

    # ------------------------------------------------------------------ rules
    @rule(batch=records_in)
    def append(self, batch) -> None:
        if not batch:
            try:
                self.log.append(batch)
            except ValueError:
                return
            raise AssertionError("an empty batch was accepted")
        res = self.log.append(batch)
        assert (res.base_offset, res.last_offset) == (self.end, self.end + len(batch) - 1)
        for k, v, h, ts in batch:
            self.model.append(Record(len(self.model), ts, k, v, h))

    @rule(data=st.data(), max_bytes=st.sampled_from([1, 200, 1000, 1 << 20]))
    def read(self, data, max_bytes: int) -> None:
        off = data.draw(st.integers(self.start, self.end), label="offset")
        got = self.log.read_records(off, max_bytes)
        assert got == self.model[off : off + len(got)]
        assert (len(got) > 0) == (off < self.end)

    @rule(ts=st.integers(T0 - 6_000, T0 + 6_000))
    def offset_for_timestamp(self, ts: int) -> None:
        want = next((r.offset for r in self.model[self.start :] if r.timestamp >= ts), None)
        assert self.log.offset_for_timestamp(ts) == want

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(limit=st.integers(0, 12_000))
    def retention_by_bytes(self, limit: int) -> None:
        bases = log_bases(self.path)
        sizes = [os.path.getsize(seg_path(self.path, b)) for b in bases]
        total, n = sum(sizes), 0
        # Kafka's rule; a non-empty active segment goes too (after an empty one is rolled)
        while n < len(bases) and total - sizes[n] >= limit and (n + 1 < len(bases) or sizes[n] > 0):
            total -= sizes[n]
            n += 1
        self.log.config = CFG.with_(retention_bytes=limit)
        try:
            deleted = self.log.enforce_retention()
        finally:
            self.log.config = CFG
        assert deleted == n
        if n:
            self.start = max(self.start, bases[n] if n < len(bases) else self.end)

    @rule(data=st.data())
    def delete_records_before(self, data) -> None:
        off = data.draw(st.integers(self.start, self.end), label="offset")
        self.log.delete_records_before(off)
        self.start = off

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self.log = PartitionLog(self.path, CFG)
        r = self.log.report
        assert r.clean and r.segments_recovered == 0 and r.corruption is None and r.bytes_truncated == 0

    @rule(tail=st.sampled_from(["none", "garbage", "zeros"]), k=st.integers(1, 300))
    def crash_and_reopen(self, tail: str, k: int) -> None:
        crash(self.log)
        path = seg_path(self.path, log_bases(self.path)[-1])
        with open(path, "ab") as f:
            if tail == "garbage":
                f.write(bytes((i * 131 + k) % 256 for i in range(k)))
            elif tail == "zeros":
                f.write(bytes(k))
        self.reopen_after_crash()

    @rule(batch=records_in.filter(bool), cut=st.floats(0, 1))
    def crash_with_a_torn_last_batch(self, batch, cut: float) -> None:
        self.append(batch)  # a batch appended since the last open: never known durable
        crash(self.log)
        path = seg_path(self.path, log_bases(self.path)[-1])
        batches, _ = parse_segment(file_bytes(path))
        last = batches[-1]
        assert last.header.base_offset >= read_state(self.path)["recovery_point"]
        os.truncate(path, last.position + int(cut * (last.header.size - 1)))
        del self.model[last.header.base_offset :]  # exactly that batch is lost, nothing else
        event("crash with a torn last batch")
        self.reopen_after_crash()

    def reopen_after_crash(self) -> None:
        self.log = PartitionLog(self.path, CFG)
        r = self.log.report
        assert not r.clean and r.corruption is None

    @rule()
    def readonly_reader_sees_the_model(self) -> None:
        reader = PartitionLog(self.path, CFG, readonly=True)
        try:
            assert (reader.log_start_offset, reader.log_end_offset) == (self.start, self.end)
            assert read_all(reader) == self.model[self.start :]
        finally:
            reader.close()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def offsets_match_the_model(self) -> None:
        assert self.log.log_end_offset == self.end
        assert self.log.log_start_offset == self.start

    @invariant()
    def reads_equal_model_slices(self) -> None:
        assert read_all(self.log, max_bytes=700) == self.model[self.start :]

    @invariant()
    def indexes_agree_with_a_full_scan(self) -> None:
        bases = log_bases(self.path)
        interval = CFG.index_interval_bytes
        for i, base in enumerate(bases):
            batches, valid = parse_segment(file_bytes(seg_path(self.path, base)))
            assert valid == os.path.getsize(seg_path(self.path, base)), "an invalid tail was left"
            nxt = bases[i + 1] if i + 1 < len(bases) else self.end
            assert (batches[-1].header.next_offset if batches else base) == nxt, "segments are not contiguous"
            assert file_bytes(seg_path(self.path, base, ".index")) == expected_offset_index(batches, base, interval)
            tix = file_bytes(seg_path(self.path, base, ".timeindex"))
            check_time_index(tix, batches, base, interval, sealed=i + 1 < len(bases))


def check_time_index(tix: bytes, batches, base: int, interval: int, sealed: bool) -> None:
    """The interval entries, plus one per clean close (as Kafka), plus the final one if sealed."""
    entries = [struct.unpack_from(">qi", tix, i) for i in range(0, len(tix), 12)]
    assert len(tix) % 12 == 0
    stamps = [t for t, _ in entries]
    assert stamps == sorted(set(stamps)), "time entries must strictly increase"
    running, first_at = -1, {}
    for b in batches:
        if b.header.max_timestamp > running:
            running = b.header.max_timestamp
            first_at[running] = b.header.last_offset - base
    for t, rel in entries:  # each entry: a running maximum and the batch that first reached it
        assert first_at.get(t) == rel, (t, rel)
    required = expected_time_index(batches, base, interval, final=sealed)
    for i in range(0, len(required), 12):
        assert struct.unpack_from(">qi", required, i) in entries
    if sealed and running >= 0:  # the final entry: the segment's maximum, where first reached
        assert entries[-1] == (running, first_at[running])


PartitionLogMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TestPartitionLogModel = PartitionLogMachine.TestCase
