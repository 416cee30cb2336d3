"""One partition written at once by network producers (through logq serve) and by an embedded
logq.Producer in another process: every record lands exactly once, offsets stay contiguous,
and a network consumer and an embedded consumer read the same log."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter

from logq import Admin, Consumer, Server

N = 1000

EMBEDDED = textwrap.dedent(
    """
    import sys
    from logq import Producer
    with Producer(sys.argv[1]) as p:
        for i in range(int(sys.argv[2])):
            p.send("shared", value=b"emb-%d" % i)
    """
)


def test_network_and_embedded_producers_share_one_partition(server: Server, bootstrap: str, root: str) -> None:
    import confluent_kafka as ck

    with Admin(root) as a:
        a.create_topic("shared", partitions=1)
    child = subprocess.Popen([sys.executable, "-c", EMBEDDED, root, str(N)])
    producers = [
        ck.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 1}) for _ in range(2)
    ]
    for i in range(N):
        for k, p in enumerate(producers):
            p.produce("shared", value=b"net%d-%d" % (k, i))
            p.poll(0)
    for p in producers:
        assert p.flush(60) == 0
    assert child.wait(60) == 0
    total = 3 * N
    with Consumer(root, "shared", group_id=None, auto_offset_reset="earliest") as c:
        embedded: list[tuple[int, bytes]] = []
        while len(embedded) < total:
            batch = c.poll(timeout=5)
            assert batch, f"only {len(embedded)} of {total} records"
            embedded += [(r.offset, r.value) for r in batch]
    assert [o for o, _ in embedded] == list(range(total))  # contiguous offsets
    counts = Counter(v for _, v in embedded)
    assert len(counts) == total and max(counts.values()) == 1
    network = _network_read(bootstrap, total)
    assert network == embedded  # the same log, through either door


def _network_read(bootstrap: str, total: int) -> list[tuple[int, bytes]]:
    import confluent_kafka as ck

    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([ck.TopicPartition("shared", 0, 0)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    while len(out) < total and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if not m.error():
                out.append((m.offset(), m.value()))
    c.close()
    return out


def test_an_embedded_consumer_sees_keyed_network_records_in_every_partition(bootstrap: str, root: str) -> None:
    from kafka import KafkaProducer

    partitions = 3
    with Admin(root) as a:
        a.create_topic("spread", partitions=partitions)
    p = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(60):
        p.send("spread", key=b"key-%d" % i, value=b"%d" % i)
    p.flush()
    p.close()
    with Consumer(root, "spread", group_id=None, auto_offset_reset="earliest") as c:
        got = []
        while len(got) < 60:
            batch = c.poll(timeout=5)
            assert batch
            got += batch
    assert sorted(int(r.value) for r in got) == list(range(60))
    assert {r.partition for r in got} == set(range(partitions))  # keys spread over partitions
