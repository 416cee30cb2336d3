"""Dead letters of share groups (KIP-1191's shape), minimal version by the ShareConsumer's author.

A record a share group archives (rejected, at its delivery limit, expired) is written to the
group's dead-letter topic with headers naming where it came from:
``__dlq.errors.topic``, ``__dlq.errors.partition``, ``__dlq.errors.offset``,
``__dlq.errors.group`` (KIP-1191), plus ``__dlq.errors.reason`` and
``__dlq.errors.delivery_count`` (ASCII decimal). The original key, value and headers are copied
unless ``copy_record=False`` (then only the headers above are written).

The ShareConsumer writes and flushes the dead letters of an archive *before* it journals the
archive: a crash in between writes a dead letter twice, never loses one.
"""

from __future__ import annotations

from logq.client.producer import Producer
from logq.types import Record

__all__ = ["dead_letter_headers", "DeadLetterWriter"]


def dead_letter_headers(
    topic: str, partition: int, offset: int, group: str, reason: str, delivery_count: int
) -> list[tuple[str, bytes]]:
    return [
        ("__dlq.errors.topic", topic.encode()),
        ("__dlq.errors.partition", str(partition).encode()),
        ("__dlq.errors.offset", str(offset).encode()),
        ("__dlq.errors.group", group.encode()),
        ("__dlq.errors.reason", reason.encode()),
        ("__dlq.errors.delivery_count", str(delivery_count).encode()),
    ]


class DeadLetterWriter:
    """Queues dead letters on ``producer`` to ``topic``; ``flush()`` makes them durable."""

    def __init__(self, producer: Producer, topic: str, group: str, copy_record: bool = True) -> None:
        self.producer = producer
        self.topic = topic
        self.group = group
        self.copy_record = copy_record

    def write(self, record: Record, reason: str, delivery_count: int) -> None:
        headers = dead_letter_headers(record.topic, record.partition, record.offset, self.group, reason, delivery_count)
        if self.copy_record:
            original = [(k, v) for k, v in record.headers if v is not None]
            self.producer.send(self.topic, record.value, key=record.key, headers=original + headers)
        else:
            self.producer.send(self.topic, None, key=None, headers=headers)

    def flush(self) -> None:
        self.producer.flush()
