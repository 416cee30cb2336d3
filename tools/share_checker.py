#!/usr/bin/env python3
"""Jepsen-style checker of share groups (issue 13): many runs of worker processes sharing a
topic's partitions, killed with kill -9 and restarted, locks expiring, then a proof from the logs.

A run: a topic of ``--partitions`` partitions holds ``--records`` records (``--poison`` of them
kill the worker that takes them, every time); ``--processes`` worker processes (this file,
``worker`` subcommand) share it as one group with a short ``lock_duration_ms``: each polls a
random number of records, sometimes renews, sometimes works longer than its lock, then
acknowledges each (accept most, release some, reject a few) and commits; now and then it
closes its consumer with records still held (close() releases them) and opens a new one. The parent kills a
random worker with kill -9 ``--kills`` times (starting a new one each time, and replacing any
that died on a poison record), waits until the group has finished every record, stops them and
checks.

The history format and what is verified: tools/share_history.py (:func:`check`).

    python tools/share_checker.py --runs 20 --records 2000 --processes 6 --seed 1
    python tools/share_checker.py --runs 1 --records 300 --keep    # keep the data and logs
    python tools/share_checker.py --recheck DIR                    # check a kept run again

Exit status 1 with a report of every violation (0 when all runs pass).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from share_history import (  # noqa: E402
    DLQ,
    GROUP,
    MS,
    TOPIC,
    Delivery,
    History,
    Key,
    Settings,
    check,
    deliveries,
)

__all__ = ["Delivery", "History", "MS", "Settings", "check", "deliveries", "load", "main", "run_once"]


# ----------------------------------------------------------------------------- worker process


def _writer(path: str) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(*event: Any) -> None:
        os.write(fd, (json.dumps([time.time_ns(), *event]) + "\n").encode())

    return emit


def worker(root: str, workdir: str, name: str, cfg: Settings) -> None:
    """Poll, maybe renew or overrun the lock, acknowledge every record at random, commit."""
    import logq

    if cfg.fault == "steal":  # every other member looks dead: their records are taken while held
        from logq.groups import share_store

        share_store._Alive.__call__ = lambda self, member: member in self.mine  # type: ignore[method-assign]
    rng = random.Random(f"{cfg.seed}-{name}")
    emit = _writer(os.path.join(workdir, f"{name}.log"))
    stop = os.path.join(workdir, "stop")
    while not os.path.exists(stop):
        _member(logq.ShareConsumer, root, cfg, rng, emit, stop)


def _member(make: Any, root: str, cfg: Settings, rng: random.Random, emit: Any, stop: str) -> None:
    """One ShareConsumer: until the stop file, or until it closes itself with records held."""
    with make(
        root,
        [TOPIC],
        group_id=GROUP,
        acknowledgement_mode="explicit",
        auto_offset_reset="earliest",
        lock_duration_ms=cfg.lock_ms,
        delivery_count_limit=cfg.limit,
        dead_letter_topic=DLQ,
    ) as sc:
        emit("member", sc.member_id, os.getpid())
        go, until = os.path.join(os.path.dirname(stop), "go"), time.monotonic() + 120
        while not os.path.exists(go) and time.monotonic() < until:
            time.sleep(0.01)  # the first workers start together (the parent makes "go")
        while not os.path.exists(stop):
            emit("poll")
            recs = sc.poll(timeout=0.05, max_records=rng.randint(1, 12))
            if not recs:
                continue
            emit("acq", [[r.partition, r.offset, r.delivery_count] for r in recs])
            for r in recs:
                if r.value.startswith(b"poison"):
                    emit("die", r.partition, r.offset)
                    os.kill(os.getpid(), signal.SIGKILL)
            if not cfg.fault and rng.random() < 0.03:
                # close() with some records accepted and the rest held: it applies the
                # acknowledgements and releases the others (their counts kept)
                for r in recs[: rng.randint(0, len(recs))]:
                    sc.acknowledge(r, "accept")
                    emit("ack", r.partition, r.offset, r.delivery_count, "accept")
                emit("close")
                sc.close()
                return
            _work(sc, recs, rng, emit, cfg)
            emit("commit")
            late = sc.commit()
            emit("committed", [[r.partition, r.offset] for r in late])


def _work(sc: Any, recs: list[Any], rng: random.Random, emit: Any, cfg: Settings) -> None:
    roll = rng.random()
    if cfg.fault:
        time.sleep(cfg.work_ms / 1000)  # a fault is only seen while records are held
    elif roll < 0.1:
        for r in recs:
            t = time.time_ns()
            ok = sc.renew(r)
            emit("renew", r.partition, r.offset, ok, t)
    elif roll < 0.16:
        time.sleep(cfg.lock_ms * 1.5 / 1000)  # overrun the lock: it expires, the ack may be late
    elif roll < 0.6:
        time.sleep(rng.random() * cfg.work_ms / 1000)  # work (so holds overlap other polls)
    for r in recs:
        roll = rng.random()
        kind = "release" if roll < 0.12 else "reject" if roll < 0.15 else "accept"
        sc.acknowledge(r, kind)
        emit("ack", r.partition, r.offset, r.delivery_count, kind)


# ----------------------------------------------------------------------------- running


def load(root: str, workdir: str, cfg: Settings, produced: dict[Key, bytes]) -> History:
    """Read the logs, the dead-letter topic and the group's state after a run."""
    import logq
    from logq.groups.share_store import describe_share_group

    procs = {}
    for fn in sorted(os.listdir(workdir)):
        if fn.endswith(".log") and fn != "parent.log":
            procs[fn[:-4]] = _rows(os.path.join(workdir, fn))
    h = History(cfg, produced, procs, _rows(os.path.join(workdir, "parent.log")))
    with logq.Consumer(root, DLQ, auto_offset_reset="earliest") as c:
        while batch := c.poll(1.0):
            for r in batch:
                hd = dict(r.headers)
                key = (int(hd["__dlq.errors.partition"]), int(hd["__dlq.errors.offset"]))
                h.dead_letters.append((key, hd["__dlq.errors.reason"].decode(), int(hd["__dlq.errors.delivery_count"])))
    for p in describe_share_group(root, GROUP).partitions:
        h.partitions[p.partition] = dict(start=p.start_offset, end=p.end_offset, states=p.states, totals=p.totals)
    with logq.ShareConsumer(root, [TOPIC], group_id=GROUP, auto_offset_reset="earliest") as sc:
        h.leftover = [(r.partition, r.offset) for r in sc.poll(timeout=0, max_records=1000)]
        for r in sc.poll(timeout=0):  # implicit mode: the first poll's records are accepted
            h.leftover.append((r.partition, r.offset))
    return h


def _rows(path: str) -> list[list[Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]  # a torn last line is cut


class Run:
    """One run's processes: started, killed, replaced (every step in parent.log)."""

    def __init__(self, root: str, workdir: str, cfg: Settings) -> None:
        self.root, self.workdir, self.cfg = root, workdir, cfg
        self.rng = random.Random(cfg.seed)
        self.emit = _writer(os.path.join(workdir, "parent.log"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.serial = 0
        self.crashes: list[str] = []

    def start(self) -> None:
        name = f"w{self.serial:03d}"
        self.serial += 1
        args = [sys.executable, os.path.abspath(__file__), "worker", self.root, self.workdir, name]
        env = dict(os.environ, SHARE_CHECKER_SETTINGS=json.dumps(self.cfg.__dict__))
        err = open(os.path.join(self.workdir, f"{name}.err"), "wb")
        self.procs[name] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        err.close()
        self.emit("start", name, self.procs[name].pid)

    def reap(self) -> None:
        """Note exited workers and replace them (a poison record killed them, or a crash)."""
        for name, p in list(self.procs.items()):
            rc = p.poll()
            if rc is not None:
                self.emit("exit", name, rc)
                del self.procs[name]
                if rc != -signal.SIGKILL:
                    with open(os.path.join(self.workdir, f"{name}.err"), errors="replace") as f:
                        self.crashes.append(f"worker {name} exited with {rc}: {f.read()[-600:]}")
                self.start()

    def kill_one(self) -> None:
        alive = sorted(n for n, p in self.procs.items() if p.poll() is None)
        if not alive:
            return
        busy = [n for n in alive if os.path.exists(os.path.join(self.workdir, f"{n}.log"))]
        name = self.rng.choice(busy or alive)  # one that joined the group, if any has
        self.emit("kill", name, self.procs[name].pid)
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()
        self.reap()

    def stop(self) -> None:
        open(os.path.join(self.workdir, "stop"), "w").close()
        for name, p in self.procs.items():
            try:
                rc = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
                self.crashes.append(f"worker {name} did not stop within 60 s")
            self.emit("exit", name, rc)
            if rc not in (0, -signal.SIGKILL):
                self.crashes.append(f"worker {name} exited with {rc} at stop")


def _finished(root: str, cfg: Settings) -> bool:
    from logq.errors import UnknownGroupError
    from logq.groups.share_store import describe_share_group

    try:
        parts = describe_share_group(root, GROUP).partitions
    except UnknownGroupError:
        return False
    per = [len(range(p, cfg.records, cfg.partitions)) for p in range(cfg.partitions)]
    return sorted((p.partition, p.start_offset) for p in parts) == list(enumerate(per))


def prepare(root: str, cfg: Settings) -> dict[Key, bytes]:
    """The topic (records spread round-robin, the poison ones among them) and the dead-letter topic."""
    import logq

    rng = random.Random(cfg.seed)
    poison = set(rng.sample(range(cfg.records), min(cfg.poison, cfg.records)))
    produced: dict[Key, bytes] = {}
    with logq.Admin(root) as a:
        a.create_topic(TOPIC, partitions=cfg.partitions)
        a.create_topic(DLQ)
    with logq.Producer(root) as p:
        for i in range(cfg.records):
            value = (b"poison-%d-" if i in poison else b"job-%d-") % i
            value += b"x" * (100 - len(value))
            part = i % cfg.partitions
            p.send(TOPIC, value, partition=part)
            produced[(part, i // cfg.partitions)] = value
    return produced


def run_once(cfg: Settings, base: str) -> tuple[list[str], dict[str, int], History]:
    """One run in ``base``: violations, figures (deliveries, kills, dead letters) and the history."""
    root, workdir = os.path.join(base, "data"), os.path.join(base, "logs")
    os.makedirs(workdir)
    produced = prepare(root, cfg)
    with open(os.path.join(base, "run.json"), "w") as f:  # for --recheck
        json.dump({"settings": cfg.__dict__, "produced": [[p, o, v.decode()] for (p, o), v in produced.items()]}, f)
    run = Run(root, workdir, cfg)
    for _ in range(cfg.processes):
        run.start()
    joined = time.monotonic() + 60
    while sum(f.endswith(".log") for f in os.listdir(workdir)) <= cfg.processes and time.monotonic() < joined:
        time.sleep(0.01)  # until every worker joined (its .log besides parent.log)
    open(os.path.join(workdir, "go"), "w").close()
    for _ in range(cfg.kills):
        time.sleep(run.rng.random() * 0.4)
        run.reap()
        run.kill_one()
    deadline = time.monotonic() + cfg.finish_s
    while not _finished(root, cfg) and time.monotonic() < deadline and len(run.crashes) < 5:
        run.reap()
        time.sleep(0.05)
    done = _finished(root, cfg)
    run.stop()
    h = load(root, workdir, cfg, produced)
    bad = list(run.crashes)
    if not done:
        bad.append(f"the group did not finish every record within {cfg.finish_s:.0f} s: {h.partitions}")
    bad += check(h)
    ds, _ = deliveries(h)
    figures = dict(
        deliveries=len(ds),
        late=sum(1 for d in ds if d.ack_state == "late"),
        kills=sum(1 for e in h.parent if e[1] == "kill"),
        poison_deaths=sum(1 for ev in (e for evs in h.procs.values() for e in evs) if ev[1] == "die"),
        dead_letters=len(h.dead_letters),
        duplicate_dead_letters=len(h.notes),
        processes=sum(1 for e in h.parent if e[1] == "start"),
    )
    return bad, figures, h


def recheck(base: str) -> int:
    """The checks of a kept run again (after a change to the checker): its logs, dead letters, state."""
    try:
        with open(os.path.join(base, "run.json")) as f:
            saved = json.load(f)
    except OSError as e:
        print(f"{base}: not a kept run of this checker ({e.strerror}: run.json)")
        return 2
    produced = {(p, o): v.encode() for p, o, v in saved["produced"]}
    h = load(os.path.join(base, "data"), os.path.join(base, "logs"), Settings(**saved["settings"]), produced)
    bad = check(h)
    for line in h.notes + bad:
        print(f"  {line}")
    print(f"{base}: {len(bad)} violation(s), {len(h.notes)} note(s)")
    return 1 if bad else 0


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=6, help="workers alive at once (4-8 is the issue's range)")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--kills", type=int, default=12, help="kill -9 of a random worker per run")
    ap.add_argument("--poison", type=int, default=2, help="records that kill their worker every time")
    ap.add_argument("--lock-ms", type=int, default=150)
    ap.add_argument("--limit", type=int, default=4, help="delivery_count_limit")
    ap.add_argument("--seed", type=int, default=1, help="run i uses seed + i")
    ap.add_argument("--work-ms", type=int, default=20, help="work per poll: 0-N ms, half the polls")
    ap.add_argument("--fault", choices=["", "steal"], default="", help="inject a bug: the checker must fail")
    ap.add_argument("--keep", action="store_true", help="keep each run's data and logs (printed)")
    ap.add_argument("--recheck", metavar="DIR", help="check a kept run's directory again (nothing runs)")
    args = ap.parse_args(None if argv is None else list(argv))
    if args.recheck:
        return recheck(args.recheck)
    failed = 0
    for i in range(args.runs):
        cfg = Settings(
            args.records,
            args.processes,
            args.partitions,
            args.kills,
            args.poison,
            args.lock_ms,
            args.limit,
            args.seed + i,
            work_ms=args.work_ms,
            fault=args.fault,
        )
        base = tempfile.mkdtemp(prefix="share-check-")
        t0 = time.monotonic()
        bad, figures, h = run_once(cfg, base)
        took = time.monotonic() - t0
        status = "ok" if not bad else f"{len(bad)} VIOLATION(S)"
        print(f"run {i + 1}/{args.runs} seed {cfg.seed}: {status} in {took:.1f} s {figures}", flush=True)
        for line in [f"note: {n}" for n in h.notes[:10]] + bad[:50]:
            print(f"  {line}")
        failed += bool(bad)
        if args.keep or bad:
            print(f"  data and logs kept in {base}")
        else:
            subprocess.run(["rm", "-rf", base], check=False)
    print(f"{args.runs - failed}/{args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], Settings(**json.loads(os.environ["SHARE_CHECKER_SETTINGS"])))
    else:
        sys.exit(main())
