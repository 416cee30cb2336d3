"""logq in one run: a topic, a producer process, a consumer group of two processes, a kill -9,
the takeover, a replay from a point in time, the group's offsets and a throughput line.

    python tools/demo.py --data ./demo-data        (what `make demo` runs)

The data directory is wiped and created again (only if it is empty or holds logq data).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import os
import random
import shlex
import shutil
import signal
import sys
import time
from typing import Any

import logq

TOPIC = "orders"
GROUP = "billing"


def cli(data: str, *args: str) -> str:
    """A ``logq`` command line the reader can paste (tests/test_demo.py runs each one)."""
    return shlex.join(["logq", "--data", data, *args])


PARTITIONS = 4
SESSION_MS = 1500
STREAM_S = 4.0
KILL_AFTER_S = 1.5


def say(text: str = "") -> None:
    print(text, flush=True)


def _quiet() -> None:
    """The demo narrates group changes itself; keep logq's own warnings off the screen."""
    logging.getLogger("logq").setLevel(logging.ERROR)


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def _fmt_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%H:%M:%S.%f")[:-3]


# ----------------------------------------------------------------------------- child processes


def producer_main(data: str, work: str, seconds: float) -> None:
    """Send a stream of JSON order events, keyed by user, for ``seconds``; report the totals."""
    _quiet()
    rng = random.Random(7)
    sent = 0
    t0 = time.monotonic()
    next_report = t0 + 1.0
    with logq.Producer(data, linger_ms=5, key_serializer="str", value_serializer="json") as prod:
        while time.monotonic() - t0 < seconds:
            for _ in range(25):
                user = f"user-{rng.randrange(50)}"
                now_ms = int(time.time() * 1000)
                prod.send(
                    TOPIC,
                    {"order": sent, "user": user, "amount": round(rng.uniform(1, 500), 2), "ts": now_ms},
                    key=user,
                    timestamp_ms=now_ms,
                )
                sent += 1
            time.sleep(0.005)
            if time.monotonic() >= next_report:
                say(f"  [producer]    {sent:>6,} events sent")
                next_report += 1.0
        prod.flush()
    elapsed = time.monotonic() - t0
    say(f"  [producer]    done: {sent:,} events in {elapsed:.1f} s")
    with open(os.path.join(work, "producer.json"), "w") as f:
        json.dump({"sent": sent, "seconds": elapsed}, f)


def consumer_main(data: str, work: str, name: str) -> None:
    """A member of the group: consume, note every delivery, commit after each poll."""
    _quiet()
    fd = os.open(os.path.join(work, f"{name}.deliveries"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    c: logq.Consumer | None = None

    def owned() -> list[int]:
        return sorted(tp.partition for tp in c.assignment()) if c is not None else []

    def on_assign(tps: set[logq.TopicPartition]) -> None:
        say(f"  [{name}] now owns partitions {owned()} (took {sorted(tp.partition for tp in tps)})")

    def on_revoke(tps: set[logq.TopicPartition]) -> None:
        say(f"  [{name}] hands over partitions {sorted(tp.partition for tp in tps)}")

    c = logq.Consumer(
        data,
        group_id=GROUP,
        member_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=3_600_000,
        session_timeout_ms=SESSION_MS,
        value_deserializer="json",
        on_assign=on_assign,
        on_revoke=on_revoke,
    )
    c.subscribe([TOPIC])
    if not c.assignment():
        say(f"  [{name}] joined group {GROUP!r}, waiting for partitions")
    stop = os.path.join(work, "stop")
    while not os.path.exists(stop):
        recs = c.poll(timeout=0.2)
        if recs:
            os.write(fd, "".join(f"{r.partition} {r.offset} {time.monotonic_ns()}\n" for r in recs).encode())
            c.commit()
    c.close()
    os.close(fd)
    say(f"  [{name}] left the group")


# ----------------------------------------------------------------------------- the story


def prepare_dir(data: str) -> None:
    if os.path.exists(data):
        if not os.path.isdir(data):
            raise SystemExit(f"demo: {data} exists and is not a directory")
        if os.listdir(data) and not os.path.isdir(os.path.join(data, "__logq")):
            raise SystemExit(f"demo: {data} is not empty and holds no logq data; refusing to wipe it")
        shutil.rmtree(data)
    os.makedirs(data)


def wait_until(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def owners(admin: logq.Admin) -> dict[int, str | None]:
    info = admin.describe_group(GROUP)
    return {row.partition: row.consumer_id for row in info.partitions if row.topic == TOPIC}


def describe_table(admin: logq.Admin) -> None:
    info = admin.describe_group(GROUP)
    cols = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID")
    rows = [
        (
            info.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.log_end_offset),
            "-" if r.lag is None else str(r.lag),
            r.consumer_id or "-",
        )
        for r in info.partitions
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    say(f"  group {info.group!r}: state {info.state}, generation {info.generation}, live members {info.members}")
    for line in [cols] + rows:
        say("  " + "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


def read_deliveries(work: str, name: str) -> list[tuple[int, int]]:
    try:
        with open(os.path.join(work, f"{name}.deliveries")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:  # a line cut by kill -9 has fewer fields
            out.append((int(parts[0]), int(parts[1])))
    return out


def burst(data: str, n: int = 100_000) -> tuple[float, float]:
    """Records/s of one in-process producer and one consumer on a fresh topic (page cache)."""
    with logq.Admin(data) as admin:
        admin.create_topic("burst", 1)
    value = b"x" * 100
    t0 = time.perf_counter()
    with logq.Producer(data, linger_ms=5, batch_size=64 * 1024) as prod:
        for _ in range(n):
            prod.send("burst", value)
    produced = n / (time.perf_counter() - t0)
    got = 0
    t0 = time.perf_counter()
    with logq.Consumer(data, "burst", auto_offset_reset="earliest", max_poll_records=10_000) as c:
        while got < n:
            recs = c.poll(timeout=5)
            if not recs:
                break
            got += len(recs)
    consumed = got / (time.perf_counter() - t0)
    return produced, consumed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="./demo-data", help="data directory (wiped and created again)")
    ap.add_argument("--seconds", type=float, default=STREAM_S, help="how long the producer streams")
    args = ap.parse_args(argv)
    _quiet()
    started = time.monotonic()
    data = os.path.abspath(args.data)
    work = os.path.join(data, "demo-work")
    ctx = multiprocessing.get_context("spawn")

    say(f"logq {logq.__version__} demo: an embedded, Kafka-format event log (no broker)")
    say()
    say(f"1. data directory {args.data}: wiped and created")
    prepare_dir(data)
    os.makedirs(work)
    admin = logq.Admin(data)
    admin.create_topic(TOPIC, PARTITIONS)
    say(f"   topic {TOPIC!r} created with {PARTITIONS} partitions")
    say()

    say(f"2. group {GROUP!r}: two consumer processes join")
    consumers = {
        name: ctx.Process(target=consumer_main, args=(data, work, name), name=name)
        for name in ("consumer-1", "consumer-2")
    }
    procs = list(consumers.values())
    try:
        for p in procs:
            p.start()
        if not wait_until(
            lambda: sorted(v for v in owners(admin).values() if v) == ["consumer-1"] * 2 + ["consumer-2"] * 2, 30
        ):
            say("   the group did not settle in 30 s")
            return 1
        time.sleep(0.3)  # let consumer-2 print its assignment before the next step starts
        say()
        say(f"3. a producer process streams order events (JSON, keyed by user) for {args.seconds:.0f} s")
        producer = ctx.Process(target=producer_main, args=(data, work, args.seconds), name="producer")
        producer.start()
        procs.append(producer)
        wait_until(lambda: len(read_deliveries(work, "consumer-2")) > 0, 30)
        time.sleep(KILL_AFTER_S)

        victim = consumers["consumer-2"]
        lost_parts = sorted(p for p, o in owners(admin).items() if o == "consumer-2")
        kill_wall_ms = int(time.time() * 1000)
        kill_t = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        say()
        say(f"4. kill -9 consumer-2 (pid {victim.pid}) while it owns partitions {lost_parts}")
        took_over = wait_until(lambda: all(o == "consumer-1" for o in owners(admin).values()), 30)
        if took_over:
            say(
                f"   reassignment: partitions {lost_parts} moved to consumer-1 "
                f"{(time.monotonic() - kill_t) * 1000:.0f} ms after the kill; consumer-1 took over all {PARTITIONS} partitions"
            )
        else:
            say("   consumer-1 did NOT take over within 30 s")

        producer.join(60)
        with open(os.path.join(work, "producer.json")) as f:
            stats = json.load(f)

        def caught_up() -> bool:
            return (
                all(r.lag == 0 for r in admin.describe_group(GROUP).partitions)
                and len(admin.describe_group(GROUP).partitions) == PARTITIONS
            )

        wait_until(caught_up, 30)
        say()
        say(f"5. the group's offsets (like `{cli(args.data, 'groups', 'describe', GROUP)}`)")
        describe_table(admin)
    finally:
        _touch(os.path.join(work, "stop"))
        for p in procs:
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join()

    say()
    say("6. delivery check")
    ends = {p: admin.log_offsets(TOPIC, p)[1] for p in range(PARTITIONS)}
    total = sum(ends.values())
    d1, d2 = read_deliveries(work, "consumer-1"), read_deliveries(work, "consumer-2")
    delivered = set(d1) | set(d2)
    missing = sum(1 for p, end in ends.items() for o in range(end) if (p, o) not in delivered)
    redelivered = len(d1) + len(d2) - len(delivered)
    if missing == 0 and total == stats["sent"] and took_over:
        again = (
            f"{redelivered} delivered twice (consumer-2 died before committing them: at-least-once)"
            if redelivered
            else "none delivered twice (consumer-2 had committed all it read)"
        )
        say(f"   nothing lost: {stats['sent']:,} events produced, all {total:,} delivered to group {GROUP!r}; {again}")
    else:
        say(f"   PROBLEM: {missing} of {total} events never delivered ({stats['sent']} sent)")
    say()

    say(f"7. replay_from(timestamp=...) to the moment of the kill, {_fmt_ms(kill_wall_ms)} UTC")
    with logq.Consumer(data, TOPIC, value_deserializer="json") as replay:
        landed = replay.replay_from(timestamp=dt.datetime.fromtimestamp(kill_wall_ms / 1000, tz=dt.UTC))
        for tp in sorted(landed):
            off = landed[tp]
            here = replay.offsets_for_times({tp: kill_wall_ms})[tp]
            before = ""
            if off > 0:
                with logq.PartitionLog(
                    os.path.join(data, f"{TOPIC}-{tp.partition}"), admin.topic_config(TOPIC), readonly=True
                ) as lg:
                    prev = lg.read_records(off - 1, 1)
                if prev and prev[0].offset == off - 1:
                    before = f", the record before it at {_fmt_ms(prev[0].timestamp)}"
            at = f"first record at {_fmt_ms(here.timestamp)}" if here else "no record that late"
            say(f"   partition {tp.partition}: landed on offset {off:>5} of {ends[tp.partition]:>5} ({at}{before})")
        first = []
        while len(first) < 3:
            recs = replay.poll(timeout=2)
            if not recs:
                break
            first.extend(recs)
        for r in sorted(first, key=lambda r: r.timestamp)[:3]:
            say(f"   replayed: partition {r.partition} offset {r.offset} {_fmt_ms(r.timestamp)} {json.dumps(r.value)}")
    say()

    consumed_span = max((t for t in _delivery_times(work)), default=0) - min(
        (t for t in _delivery_times(work)), default=0
    )
    consumed_rate = (len(d1) + len(d2)) / (consumed_span / 1e9) if consumed_span > 0 else 0.0
    prod_rate, cons_rate = burst(data)
    say(
        f"8. throughput: the stream ran at {stats['sent'] / stats['seconds']:,.0f} events/s produced, "
        f"{consumed_rate:,.0f} events/s consumed by the group (paced by the producer); "
        f"unpaced burst in one process: {prod_rate:,.0f} records/s produced, {cons_rate:,.0f} records/s consumed"
    )
    admin.close()
    say()
    say(f"demo finished in {time.monotonic() - started:.1f} s; data left in {args.data}; look around with")
    for command in (
        ("topics", "describe", TOPIC),
        ("groups", "describe", GROUP),
        ("consume", TOPIC, "--from-beginning", "--max-messages", "3"),
    ):
        say(f"   `{cli(args.data, *command)}`")
    return 0


def _delivery_times(work: str) -> list[int]:
    out = []
    for name in ("consumer-1", "consumer-2"):
        try:
            with open(os.path.join(work, f"{name}.deliveries")) as f:
                for line in f.read().splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        out.append(int(parts[2]))
        except FileNotFoundError:
            pass
    return out


if __name__ == "__main__":
    sys.exit(main())
