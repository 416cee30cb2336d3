"""`make demo` (tools/demo.py) runs end to end: exit 0, no traceback, the takeover after the
kill -9 happens, nothing is lost, and replay and the group table are printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_and_shows_the_takeover_and_that_nothing_was_lost(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--data", str(data)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in out + proc.stderr
    assert "kill -9 consumer-2" in out
    assert "moved to consumer-1" in out and "consumer-1 took over all 4 partitions" in out
    assert "nothing lost:" in out and "PROBLEM" not in out
    assert "landed on offset" in out and "replayed:" in out
    header = next(line for line in out.splitlines() if "CURRENT-OFFSET" in line)
    assert header.split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"]
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("billing  orders")]
    assert len(rows) == 4 and all(r[3] == r[4] and r[5] == "0" for r in rows)
    assert "records/s produced" in out and "demo finished" in out


def test_demo_refuses_to_wipe_a_directory_that_holds_no_logq_data(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--data", str(precious)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert (precious / "thesis.txt").read_text() == "do not delete"
    assert "Traceback" not in proc.stderr
