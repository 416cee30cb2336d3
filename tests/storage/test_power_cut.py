"""T2 quick tier (power cuts on a loop-mounted ext4 image) and T6.1 (full disk on tmpfs).

A power cut is simulated as in reliability.md section 6: the writer is SIGSTOPped, the loop
device drains, and the image file is copied: the copy holds what the filesystem sent to
the block device and nothing of the dirty page cache. The copy is mounted and recovered in
a fresh process that sees another boot id (a reboot), then recovered again and checked.

Everything that mounts runs in a child started with ``unshare --mount --propagation
private``: the mounts live in that child's namespace and vanish with it, even on kill -9.
Tests skip (with the reason) when not root or when the mounts do not work.
"""

from __future__ import annotations

import errno
import statistics
import threading
from pathlib import Path
from typing import Any

import pytest
from logq.config import LogConfig
from logq.errors import DiskFullError, storage_error
from logq.storage import files as _fs
from logq.storage.log import PartitionLog
from logq.storage.state import PartitionState

from tests.support import harness as h
from tests.support import oracle

pytestmark = pytest.mark.slow

KIB = 1024
D1 = dict(segment_bytes=64 * KIB, index_interval_bytes=512, fsync="always")
D0 = dict(segment_bytes=64 * KIB, index_interval_bytes=512)  # the default fsync="never"


def _in_namespace(name: str, args: dict[str, Any]) -> dict[str, Any]:
    res = h.in_namespace(name, args, timeout=600)
    if "skip" in res:
        pytest.skip(res["skip"])
    assert "error" not in res, f"{res['error']}: {res['stderr']}"
    return res


def _cuts(tmp_path: Path, config: dict[str, Any], cuts: int, seed: int, **kw: Any) -> list[dict[str, Any]]:
    res = _in_namespace("power_cut", {"work": str(tmp_path), "cuts": cuts, "seed": seed, "config": config, **kw})
    assert res["rc"] == 0, res["stderr"]
    return res["cuts"]


def _integrity(cuts: list[dict[str, Any]]) -> None:
    for i, c in enumerate(cuts):
        assert not c["problems"], f"cut {i}: {c['problems'][:10]}"
        assert c["holes"] == 0, f"cut {i}: acknowledged batches missing below the recovered end"
        assert c["idempotent"], f"cut {i}: a second recovery changed the files"


def test_power_cuts_with_fsync_always_lose_no_acknowledged_record(tmp_path: Path) -> None:
    cuts = _cuts(tmp_path, D1, cuts=10, seed=1)
    _integrity(cuts)
    acked = sum(c["acked_records"] for c in cuts)
    lost = sum(c["lost_records"] for c in cuts)
    print(
        f"\n[T2 D1 ext4] cuts={len(cuts)} acked={acked} lost={lost} recovery p50="
        f"{statistics.median(c['recovery_ms'] for c in cuts):.1f} ms"
    )
    assert lost == 0, [c["lost_records"] for c in cuts]
    assert acked > 0


def test_power_cuts_in_the_default_mode_keep_integrity_and_report_the_loss_window(tmp_path: Path) -> None:
    cuts = _cuts(tmp_path, D0, cuts=4, seed=2)
    _integrity(cuts)  # D0 may lose an unsynced tail, never integrity
    lost = [c["lost_records"] for c in cuts]
    print(
        f"\n[T2 D0 ext4] cuts={len(cuts)} acked={sum(c['acked_records'] for c in cuts)} lost per cut={lost} "
        f"(median {statistics.median(lost)}, max {max(lost)}); offsets between the last ack and the "
        f"recovered end: {[c['lost_offsets_window'] for c in cuts]}"
    )
    for c in cuts:  # only a tail may go: the recovered log is a prefix of what was acked
        assert c["holes"] == 0


def test_the_power_cut_harness_catches_lost_acknowledged_records_when_fdatasync_is_disabled(tmp_path: Path) -> None:
    """Negative control: a writer whose os.fdatasync is a no-op acknowledges records that
    are only in the page cache. A kill -9 test cannot see that; the power cut must."""
    cuts = _cuts(tmp_path, D1, cuts=3, seed=3, disable_fdatasync=True)
    _integrity(cuts)
    lost = sum(c["lost_records"] for c in cuts)
    print(f"\n[T2 negative control] cuts={len(cuts)} acked={sum(c['acked_records'] for c in cuts)} lost={lost}")
    assert lost > 0, "the harness did not notice acknowledged records that were never synced"


def test_full_disk_on_a_1_mib_tmpfs_raises_disk_full_never_sigbus_keeps_data_and_resumes(tmp_path: Path) -> None:
    res = _in_namespace("full_disk", {"mnt": str(tmp_path / "mnt"), "cycles": 20, "seed": 4, "size": "1m"})
    assert res["rc"] not in h.FATAL_SIGNAL_RCS, f"died of signal {-res['rc']}"
    st = res["stats"]
    print(f"\n[T6.1 tmpfs 1 MiB] {st}")
    assert res["rc"] == 0 and not res["problems"], res["problems"]
    assert st["cycles"] == st["disk_full_errors"] == st["resumed"] == 20


# -- regression tests for bugs these tests found -------------------------------------------


def _enospc_once(monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    real = _fs.pwrite_all
    left = [1]

    def flaky(fd: int, data: bytes, pos: int, path: str) -> None:
        if path.endswith(suffix) and left[0]:
            left[0] -= 1
            raise storage_error("write", path, OSError(errno.ENOSPC, "No space left on device"))
        real(fd, data, pos, path)

    monkeypatch.setattr(_fs, "pwrite_all", flaky)


@pytest.mark.parametrize("suffix", [".timeindex", ".index"])
def test_disk_full_on_an_index_write_leaves_no_stale_index_entry_and_appends_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Bug: ENOSPC on the time-index entry after the batch and its offset-index entry were
    written made append() cut the batch but keep the offset-index entry (and the raised
    max timestamp); the next appends then died of a bare AssertionError in the index."""
    path = str(tmp_path / "t-0")
    log = PartitionLog(path, LogConfig(index_interval_bytes=100))
    for i in range(3):
        log.append([(None, b"a" * 150, None, 1_000_000 + i)])
    _enospc_once(monkeypatch, suffix)
    try:
        log.append([(None, b"b" * 150, None, 1_000_100 + k) for k in range(8)])
    except DiskFullError:
        pass  # refusing is fine too, as long as nothing of the batch stays behind
    monkeypatch.undo()
    for i in range(10):
        log.append([(None, b"c" * 150, None, 1_000_200 + i)])
    log.close()
    scan = oracle.scan_partition(path, 100)
    assert not scan.problems, scan.problems


def test_disk_full_while_the_background_flusher_records_the_recovery_point_does_not_fail_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: the flusher that fsyncs a sealed segment then writes logq.state to advance the
    recovery point; ENOSPC on that write put the whole log in the failed state (reads and
    appends refused until reopen), although every fsync had succeeded."""
    real = PartitionState.write

    def full_in_flusher(state: PartitionState, clean: bool = False) -> None:
        if threading.current_thread().name == "logq-flush":
            raise storage_error("write", "logq.state.tmp", OSError(errno.ENOSPC, "No space left on device"))
        real(state, clean)

    monkeypatch.setattr(PartitionState, "write", full_in_flusher)
    log = PartitionLog(str(tmp_path / "t-0"), LogConfig(segment_bytes=1000))
    for _ in range(4):
        log.append_values([b"v" * 600])  # every append after the first rolls
    assert log._flusher is not None
    log._flusher.join(30)
    assert log.read(0).headers  # not LogFailedError
    log.append_values([b"w"])
    monkeypatch.undo()
    log.close()
