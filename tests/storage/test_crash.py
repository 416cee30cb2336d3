"""T1 quick tier: kill -9 of a writer process, then recovery in a fresh process.

Each kill: a writer child appends mixed batches (0 B to 64 KiB values, 1-8 records, null
keys, headers, equal and decreasing timestamps) to a partition with small segments and a
512-byte index interval, and reports every acknowledged batch through a pipe after
append() returned. It is SIGKILLed after uniform(5, 800) ms, or kills itself at a
``LOGQ_CRASH_AT`` site. Sometimes the harness then appends part of a batch to the tail
(a write torn by the kill). A fresh process recovers; the harness checks (see
tests/support/harness.py):

- C1 every acknowledged batch is present at its offset with identical records;
- C2 every byte of every segment is a valid batch, and the log reads back whole;
- C3 each segment's size is the sum of its batches, the next append gets the log end;
- C4 offsets run without gaps from the log start;
- C5 index entries point at batch starts, the time index is monotonic, the recovered
  segment's indexes equal a rebuild byte for byte, offset_for_timestamp equals brute force;
- C7 recovering a second time leaves every file identical.

tools/soak.py runs the same chains with hundreds of kills.
"""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
from logq.config import LogConfig
from logq.storage.log import PartitionLog

from tests.support import harness as h
from tests.support import oracle

pytestmark = pytest.mark.slow

KIB = 1024
CONFIGS: dict[str, dict] = {
    "seg64k": dict(segment_bytes=64 * KIB, index_interval_bytes=512),
    "seg256k-retention": dict(segment_bytes=256 * KIB, index_interval_bytes=512, retention_bytes=768 * KIB),
    "seg1m-interval-flush": dict(
        segment_bytes=1024 * KIB, index_interval_bytes=512, fsync="interval", fsync_interval_ms=50
    ),
}
RETENTION_CFG = dict(segment_bytes=64 * KIB, index_interval_bytes=512, retention_bytes=192 * KIB)

FIGURES: dict[str, h.CycleStats] = {}


def _report(name: str, st: h.CycleStats) -> None:
    FIGURES[name] = st
    print(
        f"\n[T1 {name}] kills={st.kills} targeted={st.targeted} acked={st.acked_records} records "
        f"({st.acked_batches} batches) lost={st.lost_records} retained_away={st.retained_away} batches "
        f"torn_tails={st.torn_tails} recovery p50={h.percentile(st.recovery_ms, 50):.1f} ms "
        f"p99={h.percentile(st.recovery_ms, 99):.1f} ms"
    )


def _assert_clean(st: h.CycleStats, kills: int) -> None:
    assert not st.problems, "\n".join(st.problems[:20])
    assert st.kills == kills
    assert st.lost_records == 0
    assert st.acked_batches > 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_kill_9_loses_no_acknowledged_record_and_recovery_is_idempotent(tmp_path: Path, name: str) -> None:
    cfg = CONFIGS[name]
    kills = 4
    st = h.kill_chain(
        str(tmp_path / "t-0"),
        cfg,
        kills=kills,
        seed=random.Random(name).randrange(1 << 30),
        logdir=str(tmp_path),
        retention="retention" in name,
    )
    _report(f"random/{name}", st)
    _assert_clean(st, kills)


SITES = {
    # site: (config, highest n for LOGQ_CRASH_AT=site:n)
    "append-after-write": (CONFIGS["seg64k"], 300),
    "roll-after-seal": (CONFIGS["seg64k"], 12),
    "roll-after-create": (CONFIGS["seg64k"], 12),
    "retention-after-state": (RETENTION_CFG, 6),
    "retention-after-unlink": (RETENTION_CFG, 6),
    "meta-before-rename": (RETENTION_CFG, 12),  # state writes at open, after syncs, in retention
}


@pytest.mark.parametrize("site", sorted(SITES))
def test_writer_crashing_at_a_named_site_loses_nothing(tmp_path: Path, site: str) -> None:
    cfg, max_n = SITES[site]
    st = h.kill_chain(
        str(tmp_path / "t-0"),
        cfg,
        kills=3,
        seed=random.Random(site).randrange(1 << 30),
        logdir=str(tmp_path),
        site=site,
        site_max_n=max_n,
        retention="retention_bytes" in cfg,
    )
    _report(f"site/{site}", st)
    _assert_clean(st, 3)
    assert st.targeted == {site: 3}


@pytest.mark.parametrize("site", h.RECOVERY_SITES)
def test_a_crash_during_recovery_then_recovering_again_gives_the_same_files(tmp_path: Path, site: str) -> None:
    """Crash a writer, tear its tail, then kill the recovering process at ``site``
    (meta-before-rename:1 is recovery's very first step, the "unclean" marker). Recovering
    again must give exactly the files of one uninterrupted recovery of a copy."""
    problems = h.recovery_crash_cycle(
        str(tmp_path / "t-0"), CONFIGS["seg64k"], [site], random.Random(site), str(tmp_path)
    )
    assert not problems, problems


def test_recovery_crashed_at_every_site_in_turn_ends_like_one_recovery(tmp_path: Path) -> None:
    """A crash during the recovery of a crashed recovery, four times over (KAFKA-10471)."""
    problems = h.recovery_crash_cycle(
        str(tmp_path / "t-0"), CONFIGS["seg64k"], list(h.RECOVERY_SITES), random.Random(7), str(tmp_path)
    )
    assert not problems, problems


# -- regression tests for bugs these tests found -------------------------------------------


def test_roll_does_not_stall_on_the_background_flusher_of_the_previous_segment(tmp_path: Path) -> None:
    """Bug: _roll (holding the log mutex) joined the previous segment's flusher thread,
    which itself waits for that mutex, so every roll after the first stalled for the 30 s
    join timeout, and so did close(). Many rolls in a row must now finish promptly."""
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(segment_bytes=4 * KIB))

    def work() -> None:
        for _ in range(40):  # every append rolls (a 3 KB batch into a 4 KiB segment)
            log.append_values([b"x" * 1000] * 3)
        log.close()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(25)  # generous: before the fix one stall alone took 30 s
    assert not t.is_alive(), "40 rolls and a close did not finish: a roll is waiting on the flusher"
    with PartitionLog(str(tmp_path / "t-0"), LogConfig(segment_bytes=4 * KIB)) as again:
        assert again.log_end_offset == 120
        assert again.report.clean


def test_closing_an_empty_active_segment_writes_no_minus_one_time_index_entry(tmp_path: Path) -> None:
    """Bug: close() of a writer whose active segment was empty appended (-1, base) to its
    time index (Kafka treats an empty time index as ending at (-1, base) and never
    indexes timestamp -1). The entry stayed at the head of the segment's time index."""
    path = str(tmp_path / "t-0")
    PartitionLog(path, LogConfig()).close()
    assert (
        not os.path.exists(os.path.join(path, "00000000000000000000.timeindex"))
        or os.path.getsize(os.path.join(path, "00000000000000000000.timeindex")) == 0
    )
    with PartitionLog(path, LogConfig()) as log:
        log.append([(None, b"v", None, 5_000_000_000_000)])
        log.roll()
    with PartitionLog(path, LogConfig()) as log:
        log.append([(None, b"w", None, 5_000_000_000_001)])
    scan = oracle.scan_partition(path, LogConfig().index_interval_bytes)
    assert not scan.problems, scan.problems


def teardown_module() -> None:
    if not FIGURES:
        return
    total = h.CycleStats()
    for st in FIGURES.values():
        total.merge(st)
    print(
        f"\n[T1 total] kills={total.kills} (targeted {sum(total.targeted.values())}) acked records="
        f"{total.acked_records} lost={total.lost_records} recovery p50={h.percentile(total.recovery_ms, 50):.1f} ms "
        f"p99={h.percentile(total.recovery_ms, 99):.1f} ms"
    )
