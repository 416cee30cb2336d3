"""The producer's counters, under the names a Kafka user reads (``Producer.metrics()``).

Kafka's producer reports windowed rates and averages (about the last 30 s); logq's counters
and averages cover the producer's whole life, since it was built. Every name below is
Kafka's producer metric of the same meaning where one exists; the others are logq's.

==========================  ==============================================================
name                        meaning
==========================  ==============================================================
record-send-total           records written to their partition logs (acknowledged)
record-error-total          records whose batch could not be written (their futures raise)
batch-total                 batches written (logq; Kafka counts requests: request-total)
byte-total                  bytes of the batches written, as stored (compressed)
uncompressed-byte-total     the same batches before compression (logq)
batch-size-avg, -max        bytes per written batch, as stored
records-per-batch-avg       records per written batch (Kafka: records-per-request-avg)
compression-rate-avg        mean of stored / uncompressed size per batch (1.0: none)
record-queue-time-avg, -max ms from a batch's first record to its write (linger + waiting)
buffer-total-bytes          the producer's ``buffer_bytes``
buffer-available-bytes      ``buffer_bytes`` minus the bytes of records not yet written
==========================  ==============================================================

``send_batch`` batches count like the others (with no queue time). The counters are updated
once per batch, under the producer's lock, so a snapshot is consistent.
"""

from __future__ import annotations

__all__ = ["ProducerMetrics"]


class ProducerMetrics:
    """Counters of one producer; the producer calls these under its own lock."""

    def __init__(self) -> None:
        self.records = 0
        self.errors = 0
        self.batches = 0
        self.stored_bytes = 0
        self.raw_bytes = 0
        self.batch_max = 0
        self.ratio_sum = 0.0
        self.queued_batches = 0  # batches of send(): the ones with a queue time
        self.queue_ms_sum = 0.0
        self.queue_ms_max = 0.0

    def written(self, records: int, stored: int, raw: int, queue_ms: float | None) -> None:
        """One batch of ``records`` is in its log: ``stored`` bytes, ``raw`` before compression."""
        self.records += records
        self.batches += 1
        self.stored_bytes += stored
        self.raw_bytes += raw
        if stored > self.batch_max:
            self.batch_max = stored
        if stored != raw:
            self.ratio_sum += stored / raw
        else:
            self.ratio_sum += 1.0
        if queue_ms is not None:
            self.queued_batches += 1
            self.queue_ms_sum += queue_ms
            if queue_ms > self.queue_ms_max:
                self.queue_ms_max = queue_ms

    def failed(self, records: int) -> None:
        self.errors += records

    def snapshot(self, buffer_bytes: int, pending_bytes: int) -> dict[str, float]:
        n = self.batches
        q = self.queued_batches
        return {
            "record-send-total": self.records,
            "record-error-total": self.errors,
            "batch-total": n,
            "byte-total": self.stored_bytes,
            "uncompressed-byte-total": self.raw_bytes,
            "batch-size-avg": self.stored_bytes / n if n else 0.0,
            "batch-size-max": self.batch_max,
            "records-per-batch-avg": self.records / n if n else 0.0,
            "compression-rate-avg": self.ratio_sum / n if n else 1.0,
            "record-queue-time-avg": self.queue_ms_sum / q if q else 0.0,
            "record-queue-time-max": self.queue_ms_max,
            "buffer-total-bytes": buffer_bytes,
            "buffer-available-bytes": max(0, buffer_bytes - pending_bytes),
        }
