"""Issue 9 item 12: a reader streaming through a log keeps its resident memory bounded.

Regression: sealed segments were read through a read-only mmap of the whole file, so every
page a reader touched stayed mapped in the process; reading a 2 GB partition showed 2.1 GB
RSS. The data is written by one child process and read by a fresh one, which reports its
peak resident set (VmHWM) and its file-backed resident pages (RssFile) from
/proc/self/status. Nothing here measures time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MIB = 1 << 20
DATA_MIB = 320  # ten sealed 32 MiB segments and the active one
SEGMENT_BYTES = 32 * MIB
VALUE_BYTES = 64 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc/self/status")

_STATUS = """
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    return out
"""


def _child(code: str) -> dict[str, int]:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_STATUS) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("memory") / "data")
    _child(
        f"""
        import json, logq, os
        logq.Admin({root!r}).create_topic("t", 1, segment_bytes={SEGMENT_BYTES}, retention_ms=-1)
        value = os.urandom({VALUE_BYTES})
        with logq.Producer({root!r}) as p:
            for _ in range({DATA_MIB * MIB // VALUE_BYTES}):
                p.send("t", value, partition=0)
        print(json.dumps({{}}))
        """
    )
    return root


def _assert_bounded(got: dict[str, int]) -> None:
    read = got["bytes_read"]
    assert read >= DATA_MIB * MIB, got  # the whole log went through the reader
    grown = got["peak"] - got["before"]
    print(f"\n[memory] read {read >> 20} MiB: peak RSS +{grown >> 20} MiB, RssFile {got['rss_file'] >> 20} MiB")
    assert grown < read // 4, f"peak RSS grew by {grown >> 20} MiB while reading {read >> 20} MiB: {got}"
    assert got["rss_file"] < read // 4, got


def test_reading_a_log_through_partition_log_read_keeps_resident_memory_bounded(data_dir: str) -> None:
    got = _child(
        f"""
        import json, os
        from logq.config import LogConfig
        from logq.storage.log import PartitionLog
        log = PartitionLog(os.path.join({data_dir!r}, "t-0"), LogConfig(), readonly=True)
        before = status()["VmRSS"]
        offset, n = log.log_start_offset, 0
        while offset < log.log_end_offset:
            fetched = log.read(offset, 1 << 20)
            n += sum(len(r.value) for r in fetched.records())
            offset = fetched.next_offset
        st = status()
        print(json.dumps({{"before": before, "peak": st["VmHWM"], "rss_file": st["RssFile"], "bytes_read": n}}))
        """
    )
    _assert_bounded(got)


def test_a_consumer_without_a_group_streaming_a_log_keeps_resident_memory_bounded(data_dir: str) -> None:
    got = _child(
        f"""
        import json, logq
        c = logq.Consumer({data_dir!r}, "t", auto_offset_reset="earliest")
        before = status()["VmRSS"]
        n, empty = 0, 0
        while n < {DATA_MIB * MIB} and empty < 20:  # 20 empty polls in a row: stop, the assert says why
            records = c.poll(timeout=1)
            empty = 0 if records else empty + 1
            n += sum(len(r.value) for r in records)
        st = status()
        c.close()
        print(json.dumps({{"before": before, "peak": st["VmHWM"], "rss_file": st["RssFile"], "bytes_read": n}}))
        """
    )
    _assert_bounded(got)
