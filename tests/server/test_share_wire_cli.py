"""`logq serve --share NAME=VALUE`: the share-group settings of network members from the
command line (each one a ``logq.Server`` ``share_NAME`` argument)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from logq import Admin, Producer

from tests.server.test_share_wire_raw import Conn, _topic_id, acquired


def test_serve_share_settings_reach_network_members(root: str) -> None:
    Admin(root).create_topic("jobs", partitions=1)
    with Producer(root) as p:
        p.send("jobs", b"first")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logq", "--data", root, "serve", "--listen", "127.0.0.1:0",
         "--share", "auto_offset_reset=earliest", "--share", "lock_duration_ms=15000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", proc.stdout.readline())
        assert m is not None
        c = Conn(int(m.group(1)))
        c.topic_id = _topic_id(c)
        assert c.heartbeat("m1", 0).error_code == 0
        resp = c.fetch("m1", 0, {0: []})
        assert acquired(resp) == [(0, 0, 0, 1)]  # earliest: the record written before any member
        assert resp.acquisition_lock_timeout.total_seconds() == 15
        c.sock.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_refuses_an_unknown_or_malformed_share_setting(root: str) -> None:
    for setting, message in [
        ("bogus=1", "unknown share setting 'bogus'"),
        ("lock_duration_ms=soon", "lock_duration_ms must be an integer"),
        ("lock_duration_ms", "is not KEY=VALUE"),
        ("auto_offset_reset=middle", "share_auto_offset_reset must be 'latest' or 'earliest'"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "logq", "--data", root, "serve", "--listen", "127.0.0.1:0", "--share", setting],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0, setting
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
