"""`make demo` (tools/demo.py) runs end to end: exit 0, no traceback, the takeover after the
kill -9 happens, nothing is lost, and replay and the group table are printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One run of the demo (it takes a while), shared by the tests below."""
    data = tmp_path_factory.mktemp("demo") / "demo-data"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--data", str(data)],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, data


def test_demo_runs_and_shows_the_takeover_and_that_nothing_was_lost(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = demo
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


def test_every_command_the_demo_prints_is_a_real_one_that_runs(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    # The demo used to suggest `logq groups describe --group billing`, which does not exist.
    proc, _ = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    commands = [c for c in re.findall(r"`([^`]*)`", proc.stdout) if c.startswith("logq ")]
    assert len(commands) >= 4
    bindir = os.path.dirname(sys.executable)  # the interpreter running the tests has `logq` beside it
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("LOGQ_DATA", None)
    for command in commands:
        res = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, env=env)
        assert res.returncode == 0, f"{command}: {res.stdout}{res.stderr}"
        assert res.stdout.strip(), f"{command} printed nothing"


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
