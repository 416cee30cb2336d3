"""Child processes of tests/groups/test_group_startup.py: group members started together.

Each child imports logq, says it is ready, waits for the parent's "go" file (so the members
join within moments of each other, whatever the cost of starting an interpreter), then joins
the group and journals its rebalance callbacks until the parent's "stop" file appears.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import logq


def _append(path: str, row: list[Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def member(root: str, topic: str, group: str, workdir: str, name: str, delay_ms: int) -> None:
    """Journal ``<name>.log``: ["assign", [partitions]] and ["revoke", [partitions]] rows, then
    ["closing"] before the close (whose revoke is not part of the start-up)."""
    path = os.path.join(workdir, f"{name}.log")

    def on_assign(tps: set[Any]) -> None:
        _append(path, ["assign", sorted(p for _, p in tps)])

    def on_revoke(tps: set[Any]) -> None:
        _append(path, ["revoke", sorted(p for _, p in tps)])

    open(os.path.join(workdir, f"{name}.ready"), "w").close()
    go, stop = os.path.join(workdir, "go"), os.path.join(workdir, "stop")
    while not os.path.exists(go):
        time.sleep(0.001)
    c = logq.Consumer(
        root,
        topic,
        group_id=group,
        initial_rebalance_delay_ms=delay_ms,
        on_assign=on_assign,
        on_revoke=on_revoke,
        session_timeout_ms=3000,
    )
    while not os.path.exists(stop):
        c.poll(0.02)
        owned = sorted(p for _, p in c.assignment())
        _write_atomically(os.path.join(workdir, f"{name}.owned"), json.dumps(owned))
    _append(path, ["closing"])
    c.close()


def _write_atomically(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
