"""The Producer's topic cache and partition choice.

``send`` needs, per topic, its partition count, the largest record it may take and the sticky
partition of keyless records; reading the topic's metadata on every send would cost a stat.
``TopicCache.read`` builds a topic's info list once; ``send`` uses it for
``metadata_max_age_ms`` (Kafka's ``metadata.max.age.ms``) and then ``refresh`` reads the topic
again (one stat when unchanged). The info is a list, not an object, because ``send`` reads it
on every record; its slots, by index:

    0 partitions, 1 largest record bytes, 2 sticky partition, 3 bytes sent to it,
    4 batch cap (batch_size, capped by the topic's max_batch_bytes), 5 topic id,
    6 read at (wall ms), 7 read again from (wall ms), 8 the TopicMeta it was made from.

Partitioning is Kafka's (``choose``): an explicit partition is checked, keyed records go to
``murmur2(key) & 0x7fffffff % partitions``, records without a key stick to one partition per
``batch_size`` bytes (KIP-794).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from logq.client.partitioner import KeyPlacements, StickyPartitioner
from logq.client.producer_config import Extras, topic_codec
from logq.client.records import RECORD_OVERHEAD_BYTES, record_too_large
from logq.codec.batch import BATCH_OVERHEAD
from logq.errors import LogqError, RecordTooLargeError
from logq.storage.topics import TopicRegistry, validate_partition, validate_topic

__all__ = ["TopicCache"]


class TopicCache:
    """The info lists of the topics a Producer sent to (``infos``: topic -> info, see above).

    ``tid_partitions`` is the open-log cache's map of topic id -> partition count (the Producer
    sets it to its OpenLogs' map once built), kept in step with every info read. ``forget`` takes ``lock`` (the Producer's); ``choose`` runs
    under it.
    """

    __slots__ = ("infos", "registry", "lock", "batch_size", "buffer_bytes", "x", "tid_partitions", "sticky", "keys")

    def __init__(
        self, registry: TopicRegistry, lock: threading.Lock, batch_size: int, buffer_bytes: int, x: Extras
    ) -> None:
        self.infos: dict[str, list] = {}
        self.registry = registry
        self.lock = lock
        self.batch_size = batch_size
        self.buffer_bytes = buffer_bytes
        self.x = x  # codec and metadata_max_age_ms
        self.tid_partitions: dict[str, int] = {}  # replaced by the OpenLogs' map
        self.sticky: dict[str, StickyPartitioner] = {}
        self.keys = KeyPlacements()

    def get(self, topic: str) -> list:
        """The info of ``topic``, read on first use and again once ``metadata_max_age_ms`` old."""
        try:
            info = self.infos[topic]
        except (KeyError, TypeError):  # first send to it, or not a topic name at all
            info = self.read(topic)
        now = int(time.time() * 1000)
        if not info[6] <= now < info[7]:
            info = self.refresh(topic, info, now)
        return info

    def read(self, topic: str) -> list:
        """Read ``topic``'s metadata (UnknownTopicError, or ConfigError for a topic codec whose
        library is missing) and cache its info."""
        meta = self.registry.get(validate_topic(topic), fresh=True)
        sticky = self._sticky_for(topic).partition(None, meta.partitions, self.batch_size)
        limit = meta.config.max_batch_bytes - BATCH_OVERHEAD
        if limit + RECORD_OVERHEAD_BYTES > self.buffer_bytes:
            limit = self.buffer_bytes - RECORD_OVERHEAD_BYTES  # a record must fit the buffer too
        if self.x.codec is None:
            topic_codec(meta.config)  # a topic codec whose library is missing fails this send
        now = int(time.time() * 1000)
        age = self.x.metadata_max_age_ms
        info = [meta.partitions, limit, sticky, 0, min(self.batch_size, limit), meta.topic_id, now, now + age, meta]
        self.tid_partitions[meta.topic_id] = meta.partitions
        self.infos[topic] = info
        return info

    def refresh(self, topic: str, info: list, now: int) -> list:
        """``info`` is ``metadata_max_age_ms`` old: read the topic again (one stat when unchanged).

        Partitions added (or a config altered) since: new info, so keyed records map over the
        new count from now on, as Kafka's producer does after its metadata refresh. A topic
        deleted (or unreadable) meanwhile keeps its info: the write reports it
        (TopicDeletedError on the futures), as before the refresh.
        """
        try:
            meta = self.registry.get(topic, fresh=True)
        except LogqError:
            meta = info[8]
        if meta is info[8]:  # unchanged: the registry hands back the same object
            info[6], info[7] = now, now + self.x.metadata_max_age_ms
            return info
        return self.read(topic)

    def forget(self, topic: str, stale: Callable[[str], bool]) -> None:
        """Drop the cached info of ``topic`` if ``stale(its topic id)``: the next send reads it again."""
        with self.lock:
            info = self.infos.get(topic)
            if info is not None and stale(info[5]):
                del self.infos[topic]

    def choose(self, topic: str, info: list, partition: object, key: bytes | None, size: int) -> int:
        """Under the Producer's lock: the one partition rule of ``send`` and ``send_batch``.

        An explicit partition is checked; a key goes to its murmur2 partition; records
        without a key stick to ``info[2]`` until ``batch_size`` bytes went to it (KIP-794).
        """
        if partition is not None:
            return validate_partition(topic, partition, info[0])
        if key is not None:
            return self.keys.partition(key, info[0])
        if info[3] >= self.batch_size:
            info[2] = self._sticky_for(topic).partition(None, info[0], self.batch_size)
            info[3] = 0
        info[3] += size
        return info[2]

    def too_large(self, topic: str, size: int) -> RecordTooLargeError:
        """A record of ``size`` bytes that cannot be sent, with the limit it broke (records.py)."""
        max_batch = self.registry.get(topic).config.max_batch_bytes
        return record_too_large(topic, size, max_batch, self.buffer_bytes)

    def _sticky_for(self, topic: str) -> StickyPartitioner:
        s = self.sticky.get(topic)
        if s is None:
            s = self.sticky[topic] = StickyPartitioner(self.batch_size)
        return s
