"""Ctrl-C on a long-running command: one line on stderr, exit status 130, nothing lost.

Each test starts a real ``logq`` child in its own process group, waits until the command is
doing its work (records landed, lines printed: never a sleep), then sends SIGINT to the
whole group, as a terminal's Ctrl-C does. Before the fix ``produce`` and ``perf`` printed
click's "Aborted!" and exited 1 (or printed a traceback per worker process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from logq import Admin, Producer


def _start(data: Path, *args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LOGQ_DATA", None)
    return subprocess.Popen(
        [sys.executable, "-m", "logq.cli", "--data", str(data), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: killpg reaches it and its workers only
    )


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll ``cond`` until it holds; fail if the child exits first."""
    while not cond():
        assert proc.poll() is None, f"the command ended before it was interrupted: {proc.communicate()}"
        try:
            proc.wait(0.02)
        except subprocess.TimeoutExpired:
            pass


def _ctrl_c(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _log_end(data: Path, topic: str) -> int:
    try:
        with Admin(str(data)) as admin:
            return sum(p.log_end_offset for p in admin.describe_topic(topic).partitions)
    except Exception:  # not created yet
        return 0


def _assert_one_line(err: str, line: str) -> None:
    assert err.splitlines() == [line], err
    assert "Aborted" not in err and "Traceback" not in err


def test_ctrl_c_on_produce_reading_stdin_prints_one_line_exits_130_and_keeps_what_was_read(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t")
    proc = _start(tmp_path, "produce", "t", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("one\ntwo\n")
    proc.stdin.flush()
    _wait_for(lambda: _log_end(tmp_path, "t") == 2, proc)
    code, _, err = _ctrl_c(proc)
    assert code == 130
    _assert_one_line(err, "logq: interrupted")
    assert _log_end(tmp_path, "t") == 2


def test_ctrl_c_on_consume_follow_prints_its_summary_line_and_exits_130(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t")
    with Producer(str(tmp_path)) as prod:
        for v in (b"a", b"b", b"c"):
            prod.send("t", v)
    proc = _start(tmp_path, "consume", "t", "--from-beginning", "--follow", "--group", "g")
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines == ["a\n", "b\n", "c\n"]
    code, _, err = _ctrl_c(proc)
    assert code == 130
    _assert_one_line(err, "Processed a total of 3 messages")
    with Admin(str(tmp_path)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 3}  # what was printed is committed


def test_ctrl_c_on_perf_produce_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    proc = _start(
        tmp_path, "perf", "produce", "--topic", "p", "--num-records", "1000000000", "--record-size", "10",
        "--throughput", "1000",
    )  # fmt: skip
    _wait_for(lambda: _log_end(tmp_path, "p") > 0, proc)
    code, _, err = _ctrl_c(proc)
    assert code == 130
    _assert_one_line(err, "logq: interrupted")


def _has_records(work: Path) -> bool:
    return any(f.endswith(".log") and os.path.getsize(os.path.join(d, f)) > 0 for d, _, fs in os.walk(work) for f in fs)


def test_ctrl_c_on_perf_latency_stops_its_worker_processes_without_a_traceback(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = _start(tmp_path, "perf", "latency", "--rate", "100", "--seconds", "600", "--work-dir", str(work))
    _wait_for(lambda: _has_records(work), proc)
    code, _, err = _ctrl_c(proc)
    assert code == 130
    _assert_one_line(err, "logq: interrupted")


def test_ctrl_c_on_dump_of_a_large_partition_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("big")
    with Producer(str(tmp_path)) as prod:
        prod.send_batch("big", [b"x" * 100] * 20_000, partition=0)
    proc = _start(tmp_path, "dump", "--deep", "big-0")
    assert proc.stdout is not None
    assert proc.stdout.readline()  # dumping: its output now fills the pipe we do not read
    code, _, err = _ctrl_c(proc)
    assert code == 130
    _assert_one_line(err, "logq: interrupted")
