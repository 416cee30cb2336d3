"""Child processes of tests/groups/test_share_store_processes.py: ShareConsumers in other processes.

Each child journals what it was delivered to ``<workdir>/<name>.log`` as JSON rows, flushed
before it acts on them, so a parent that kills it still knows what it held.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from typing import Any

import logq


def _append(path: str, row: list[Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def worker(root: str, topic: str, group: str, workdir: str, name: str, total: int, seed: int) -> None:
    """Poll, accept most records, release some (explicit mode), commit; journal
    ["got", offset, delivery_count] and ["ack", offset, type]; stop when ``total`` records were
    accepted by the group (the parent's "stop" file) or after a minute."""
    rng = random.Random(seed)
    path = os.path.join(workdir, f"{name}.log")
    stop = os.path.join(workdir, "stop")
    with logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
    ) as sc:
        _append(path, ["member", sc.member_id])
        end = time.monotonic() + 60
        while not os.path.exists(stop) and time.monotonic() < end:
            recs = sc.poll(timeout=0.05, max_records=rng.randint(1, 20))
            for r in recs:
                _append(path, ["got", r.offset, r.delivery_count])
            for r in recs:
                kind = "release" if rng.random() < 0.1 else "accept"
                sc.acknowledge(r, kind)
                _append(path, ["ack", r.offset, kind])
            late = sc.commit()
            for r in late:
                _append(path, ["late", r.offset])


def holder(root: str, topic: str, group: str, workdir: str, n: int) -> None:
    """Acquire ``n`` records, journal them, then wait to be killed (never acknowledge)."""
    sc = logq.ShareConsumer(root, [topic], group_id=group, auto_offset_reset="earliest", lock_duration_ms=600_000)
    got: list[list[int]] = []
    while len(got) < n:
        got += [[r.offset, r.delivery_count] for r in sc.poll(timeout=1.0, max_records=n - len(got))]
    with open(os.path.join(workdir, "held.tmp"), "w") as f:
        json.dump(got, f)
    os.rename(os.path.join(workdir, "held.tmp"), os.path.join(workdir, "held.json"))
    time.sleep(600)


def poisoned(root: str, topic: str, group: str, workdir: str, limit: int) -> None:
    """Poll once; journal what came; die by kill -9 at the poison record (offset 0)."""
    sc = logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
        delivery_count_limit=limit,
        dead_letter_topic="dlq",
    )
    recs = sc.poll(timeout=2.0, max_records=1)
    _append(os.path.join(workdir, "poison.log"), [[r.offset, r.delivery_count] for r in recs])
    if recs and recs[0].offset == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    sc.close()


def ack_then_die(root: str, topic: str, group: str, workdir: str, commit: bool) -> None:
    """Accept every record delivered; commit (or not); then die by kill -9."""
    sc = logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
    )
    recs = sc.poll(timeout=2.0, max_records=100)
    for r in recs:
        sc.acknowledge(r, "accept")
    if commit:
        sc.commit()
    _append(os.path.join(workdir, "acked.log"), [r.offset for r in recs])
    os.kill(os.getpid(), signal.SIGKILL)


def chaos_worker(root: str, topic: str, group: str, workdir: str, name: str, seed: int) -> None:
    """Like ``worker`` with random rejects, and journalled with the pid: the parent kills it
    with kill -9 at any moment and starts another."""
    rng = random.Random(seed)
    path = os.path.join(workdir, f"{name}.log")
    stop = os.path.join(workdir, "stop")
    with logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
        delivery_count_limit=10,
    ) as sc:
        while not os.path.exists(stop):
            recs = sc.poll(timeout=0.05, max_records=rng.randint(1, 10))
            for r in recs:
                _append(path, ["got", r.partition, r.offset, r.delivery_count])
            for r in recs:
                roll = rng.random()
                sc.acknowledge(r, "release" if roll < 0.1 else "reject" if roll < 0.13 else "accept")
            if rng.random() < 0.5:
                sc.commit()


def compacting_worker(root: str, topic: str, group: str, workdir: str) -> None:
    """Accept records one poll at a time with commits, journal every committed offset, with
    compaction forced often; LOGQ_CRASH_AT (set by the parent) kills it at a chosen site."""
    from logq.groups import share_journal

    share_journal.COMPACT_MIN_BYTES = 600
    with logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=600_000,
    ) as sc:
        while True:
            recs = sc.poll(timeout=1.0, max_records=3)
            if not recs:
                return
            for r in recs:
                sc.acknowledge(r, "accept")
            sc.commit()
            _append(os.path.join(workdir, "committed.log"), [r.offset for r in recs])


def slow_worker(root: str, topic: str, group: str, workdir: str, name: str, seed: int) -> None:
    """Locks of 100 ms and work that sometimes takes longer: journal deliveries and the
    acknowledgements commit() reports as late (the lock had expired)."""
    rng = random.Random(seed)
    path = os.path.join(workdir, f"{name}.log")
    stop = os.path.join(workdir, "stop")
    with logq.ShareConsumer(
        root,
        [topic],
        group_id=group,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=100,
        delivery_count_limit=20,
    ) as sc:
        while not os.path.exists(stop):
            recs = sc.poll(timeout=0.05, max_records=rng.randint(1, 5))
            for r in recs:
                _append(path, ["got", r.offset, r.delivery_count])
            if recs and rng.random() < 0.2:
                time.sleep(rng.random() * 0.2)  # the locks may expire meanwhile
            for r in recs:
                sc.acknowledge(r, "accept")
            for r in sc.commit():
                _append(path, ["late", r.offset, r.delivery_count])
