"""Child processes for the producer, consumer and group end-to-end tests (multiprocessing spawn).

Every child reports through files in a work directory so that the parent can check what it
did even after a ``kill -9``: lines are written with ``os.write`` on an O_APPEND descriptor
(nothing waits in a Python buffer), one JSON list per line.

Control: a child stops when the file ``stop`` appears in the work directory (or its time is
up); a consumer also leaves its group cleanly when ``<name>.leave`` appears; ``<name>.ready``
appears once a child is running.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import logq

TP = tuple[str, int]


class _Journal:
    """Append-only JSON-lines file written straight to the kernel (survives kill -9)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, rows: list[Any]) -> None:
        if rows:
            os.write(self.fd, "".join(json.dumps(r) + "\n" for r in rows).encode())

    def close(self) -> None:
        os.close(self.fd)


def read_journal(path: str) -> list[Any]:
    """Every complete line of a journal (a line cut by kill -9 is ignored)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


# ----------------------------------------------------------------------------- producers


def produce(
    root: str,
    topic: str,
    producer_id: str,
    count: int,
    workdir: str,
    start: Any = None,
    pause_s: float = 0.0,
    keys: int = 16,
) -> None:
    """Send ``count`` keyed records ``{"p": producer_id, "seq": i}``; journal every ack.

    Journal ``<producer_id>.acks``: [partition, offset, seq] per acknowledged record.
    ``start`` (a multiprocessing Event) makes several producers begin at the same moment.
    """
    acks = _Journal(os.path.join(workdir, f"{producer_id}.acks"))
    if start is not None:
        start.wait(60)
    with logq.Producer(root, linger_ms=2, value_serializer="json", key_serializer="str") as prod:
        pending = []
        for i in range(count):
            fut = prod.send(topic, {"p": producer_id, "seq": i}, key=f"key-{i % keys}")
            pending.append((i, fut))
            if pause_s and i % 10 == 9:
                prod.flush()
                acks.write([[f.result(30).partition, f.result(30).offset, s] for s, f in pending])
                pending = []
                time.sleep(pause_s)
        prod.flush()
        acks.write([[f.result(30).partition, f.result(30).offset, s] for s, f in pending])
    acks.close()


def append_after(root: str, topic: str, partition: int, delay_s: float, value: bytes) -> None:
    """Sleep, then append one record (to wake a consumer waiting in another process)."""
    time.sleep(delay_s)
    with logq.Producer(root, linger_ms=0) as prod:
        prod.send(topic, value, partition=partition).result(30)


# ----------------------------------------------------------------------------- consumers


def consume(
    root: str,
    topic: str,
    group: str,
    member_name: str,
    workdir: str,
    session_timeout_ms: int = 1000,
    run_s: float = 60.0,
    commit_every: int = 1,
    hold_s: float = 0.0,
    max_records: int = 50,
    auto_offset_reset: str = "earliest",
) -> None:
    """A group member that journals every delivery, ownership change and commit.

    Journal ``<member_name>.log`` rows:
      ["member", member_id, pid]
      ["assign", [partitions], monotonic_ns]       on_assign
      ["revoke", [partitions], monotonic_ns]       on_revoke (before the final commit)
      ["deliver", [[p, offset, value], ...], monotonic_ns]   one row per non-empty poll
      ["commit", {p: offset}, monotonic_ns]        after a successful commit
      ["commit-failed", error name, monotonic_ns]
    ``commit_every``: commit after every n-th non-empty poll (larger leaves records
    uncommitted, so a kill -9 produces redeliveries). ``hold_s``: sleep after delivering a
    poll and before committing it.
    """
    j = _Journal(os.path.join(workdir, f"{member_name}.log"))

    def on_assign(tps: set[Any]) -> None:
        j.write([["assign", sorted(p for _, p in tps), time.monotonic_ns()]])

    def on_revoke(tps: set[Any]) -> None:
        j.write([["revoke", sorted(p for _, p in tps), time.monotonic_ns()]])

    c = logq.Consumer(
        root,
        group_id=group,
        auto_offset_reset=auto_offset_reset,
        enable_auto_commit=True,
        auto_commit_interval_ms=3_600_000,
        session_timeout_ms=session_timeout_ms,
        value_deserializer="json",
        on_assign=on_assign,
        on_revoke=on_revoke,
        max_poll_records=max_records,
    )
    c.subscribe([topic])
    assert c._member is not None
    j.write([["member", c._member.member_id, os.getpid()]])
    _touch(os.path.join(workdir, f"{member_name}.ready"))
    stop = os.path.join(workdir, "stop")
    leave = os.path.join(workdir, f"{member_name}.leave")
    deadline = time.monotonic() + run_s
    polls = 0
    while time.monotonic() < deadline and not os.path.exists(stop) and not os.path.exists(leave):
        recs = c.poll(timeout=0.1)
        if not recs:
            continue
        now = time.monotonic_ns()
        j.write([["deliver", [[r.partition, r.offset, r.value] for r in recs], now]])
        polls += 1
        if hold_s:
            time.sleep(hold_s)
        if polls % commit_every == 0:
            _commit(c, j)
    c.close()  # auto-commit of the positions on close
    j.write([["closed", time.monotonic_ns()]])
    j.close()


def _commit(c: logq.Consumer, j: _Journal) -> None:
    try:
        pos = {tp.partition: c.position(tp) for tp in c.assignment() if tp in c._positions}
        c.commit()
        j.write([["commit", pos, time.monotonic_ns()]])
    except logq.LogqError as e:
        j.write([["commit-failed", type(e).__name__, time.monotonic_ns()]])


def consume_once(root: str, topic: str, group: str, workdir: str, name: str, count: int) -> None:
    """Join ``group``, deliver ``count`` records (journal them), commit, report, then wait.

    The parent may kill -9 this process after ``<name>.done`` appears: the commit is made.
    """
    j = _Journal(os.path.join(workdir, f"{name}.log"))
    c = logq.Consumer(
        root,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=1000,
        max_poll_records=7,
    )
    c.subscribe([topic])
    got: list[list[int]] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        for r in c.poll(timeout=0.1, max_records=count - len(got)):
            got.append([r.partition, r.offset])
    j.write([["deliver", got, time.monotonic_ns()]])
    c.commit()
    j.write([["commit", {tp.partition: c.committed(tp) for tp in c.assignment()}, time.monotonic_ns()]])
    _touch(os.path.join(workdir, f"{name}.done"))
    time.sleep(120)  # the parent kills us
