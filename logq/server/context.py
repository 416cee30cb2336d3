"""What handlers see: the server's configuration, one Broker per server, one Session per connection.

The Broker lives on the event-loop thread. It opens each partition twice, lazily: a writer
``PartitionLog`` for produce (which catches up with other processes under the partition's
lock on every append) and a read-only one for fetch and list offsets (which catches up on
every read, so batches appended by embedded producers in other processes are served too),
at most ``max_open_partitions`` of each, least recently used closed first. It rebuilds a
partition's idempotent-producer state from the batch headers of its last two segments
whenever it opens the writer. Every ``topic()`` call checks the topic against the disk, so
logs of a topic another process deleted or recreated are closed before they are used.
One server holds a data directory (``__logq/server/serve.lock``).

Fetches waiting for data (long polls) wait on ``wait_for_append``: an in-process append
wakes them at once (``notify_append``), and so does an append by another process, through
an inotify watcher (logq.client.notify) whose descriptor the event loop watches. Every
wake-up only ends a wait; the fetch reads the logs again to see what is new.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from logq.client.notify import Watcher
from logq.config import LogConfig
from logq.errors import ConfigError, CorruptTopicMetadataError, LogqError, TopicExistsError, UnknownTopicError
from logq.server.framing import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES
from logq.server.idempotence import PartitionProducers, ProducerIds
from logq.storage.files import FileLock, make_dir
from logq.storage.log import PartitionLog
from logq.storage.topics import META_DIR, TopicMeta, TopicRegistry, partition_path

__all__ = ["Broker", "ServerConfig", "Session"]

log = logging.getLogger("logq.server")

TP = tuple[str, int]
CloseHook = Callable[[], Awaitable[None] | None]
_STATE_SCAN_SEGMENTS = 2
_FALLBACK_POLL_S = 0.01


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive int, not {value!r}", hint=f"pass {name}=<int >= 1>")


@dataclass
class ServerConfig:
    """Every limit of ``logq serve``, with its unit in its name (defaults as documented in
    docs/server.md)."""

    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None  # what Metadata names (default: host, 127.0.0.1 for 0.0.0.0)
    auto_create_topics: bool = True
    default_partitions: int = 1
    default_topic_config: dict[str, Any] = field(default_factory=dict)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # a frame before SASL authentication (Kafka's sasl.server.max.receive.size); only with a users file
    max_unauthenticated_request_bytes: int = DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES
    max_connections: int = 1000
    max_in_flight_requests: int = 100  # per connection, answered in order
    max_buffered_response_bytes: int = 64 * 1024 * 1024  # per connection, written but not yet sent
    idle_timeout_ms: int = 600_000  # Kafka's connections.max.idle.ms
    partial_request_timeout_ms: int = 30_000  # a request started must be complete within this
    max_fetch_wait_ms: int = 30_000  # cap on a fetch's max_wait_ms
    max_fetch_response_bytes: int = 55 * 1024 * 1024  # cap on a fetch's max_bytes (Kafka's fetch.max.bytes)
    max_open_partitions: int = 1000  # partition logs kept open, writers and readers each
    # share groups of network members (logq/server/share_service.py); Kafka's group.share.* names
    share_lock_duration_ms: int = 30_000  # group.share.record.lock.duration.ms
    share_delivery_count_limit: int = 5  # group.share.delivery.count.limit
    share_max_in_flight: int = 2000  # group.share.partition.max.record.locks
    share_session_timeout_ms: int = 45_000  # group.share.session.timeout.ms
    share_heartbeat_interval_ms: int = 5_000  # group.share.heartbeat.interval.ms
    share_auto_offset_reset: str = "latest"  # share.auto.offset.reset of a share-partition's first use
    share_dead_letter_topic: str | None = None  # errors.deadletterqueue.topic.name (KIP-1191)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host must be a non-empty str, not {self.host!r}")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be an int in [0, 65535], not {self.port!r}", hint="port=0 picks a free port")
        for name in (
            "default_partitions",
            "max_request_bytes",
            "max_unauthenticated_request_bytes",
            "max_connections",
            "max_in_flight_requests",
            "max_buffered_response_bytes",
            "idle_timeout_ms",
            "partial_request_timeout_ms",
            "max_fetch_wait_ms",
            "max_fetch_response_bytes",
            "max_open_partitions",
            "share_lock_duration_ms",
            "share_delivery_count_limit",
            "share_max_in_flight",
            "share_session_timeout_ms",
            "share_heartbeat_interval_ms",
        ):
            _positive(name, getattr(self, name))
        if self.share_auto_offset_reset not in ("latest", "earliest"):
            raise ConfigError(
                f"share_auto_offset_reset must be 'latest' or 'earliest', not {self.share_auto_offset_reset!r}"
            )
        if self.share_dead_letter_topic is not None and not isinstance(self.share_dead_letter_topic, str):
            raise ConfigError(
                f"share_dead_letter_topic must be a topic name or None, not {self.share_dead_letter_topic!r}"
            )
        if not isinstance(self.auto_create_topics, bool):
            raise ConfigError(f"auto_create_topics must be a bool, not {self.auto_create_topics!r}")
        if not isinstance(self.default_topic_config, dict):
            raise ConfigError(f"default_topic_config must be a dict, not {self.default_topic_config!r}")
        LogConfig.from_dict(self.default_topic_config)  # ConfigError names a bad setting now, not at first use


@dataclass
class Session:
    """One client connection."""

    peer: str
    client_id: str | None = None
    tls: bool = False
    authenticated: bool = True
    principal: str | None = None
    sasl: Any = None
    close_after_response: bool = False
    closed: bool = False  # the connection is gone: a long poll of it stops waiting


class Broker:
    """The server's state on the event-loop thread: topics, open logs, producers, waiters."""

    def __init__(self, data_dir: str, config: ServerConfig, loop: asyncio.AbstractEventLoop, auth: Any = None) -> None:
        self.registry = TopicRegistry(data_dir)
        self.data_dir = self.registry.root
        try:
            self._serve_lock = _lock_data_dir(self.data_dir)
        except ConfigError:
            self.registry.close()
            raise
        self.config = config
        self.loop = loop
        self.auth = auth
        self.node_id = 0
        self.cluster_id = "logq"
        self.advertised_host = config.advertised_host or _advertise(config.host)
        self.advertised_port = config.port
        self.extensions: dict[str, Any] = {}
        self.producer_ids = ProducerIds(self.data_dir)
        self._close_hooks: list[CloseHook] = []
        self._writers: OrderedDict[TP, PartitionLog] = OrderedDict()  # least recently used first
        self._readers: OrderedDict[TP, PartitionLog] = OrderedDict()
        self._producers: dict[TP, PartitionProducers] = {}
        self._write_locks: dict[TP, asyncio.Lock] = {}
        self._log_ids: dict[str, str] = {}  # topic -> the topic id its open logs belong to
        self._waiters: set[asyncio.Future[None]] = set()
        self._watcher = Watcher()
        self._poll_handle: asyncio.TimerHandle | None = None
        self.closing = False  # set at shutdown: waiting fetches answer with what they have
        self._watch_fd = self._watcher.fileno()  # -1: no inotify, waits poll instead
        if self._watch_fd >= 0:
            loop.add_reader(self._watch_fd, self._on_inotify)

    # ------------------------------------------------------------------ topics
    def add_close_hook(self, fn: CloseHook) -> None:
        self._close_hooks.append(fn)

    def topic(self, name: str, *, create: bool = False) -> TopicMeta | None:
        """The topic as on disk now; None if it does not exist (and is not auto-created).

        One stat per call: a topic another process deleted, or deleted and created again
        (another topic id), has the logs this broker holds for it closed first, so nothing
        is appended to unlinked files or read from them.
        """
        try:
            meta = self.registry.get(name, fresh=True)
        except UnknownTopicError:
            self.forget_topic(name)
            if not (create and self.config.auto_create_topics):
                return None
            return self.create_topic(name, self.config.default_partitions, {})
        except CorruptTopicMetadataError as e:
            log.warning("topic %s: %s", name, e)
            return None
        if self._log_ids.get(name, meta.topic_id) != meta.topic_id:
            self.forget_topic(name)
        return meta

    def fresh_topic(self, name: str) -> TopicMeta | None:
        """``topic(name)`` without creating it (the name other modules use)."""
        return self.topic(name)

    def create_topic(self, name: str, partitions: int, overrides: dict[str, Any]) -> TopicMeta:
        config = {**self.config.default_topic_config, **overrides}
        try:
            meta = self.registry.create(name, partitions, **config)
        except TopicExistsError:
            return self.registry.get(name)
        log.info("created topic %s with %d partition(s)", name, partitions)
        return meta

    def delete_topic(self, name: str) -> None:
        self.forget_topic(name)
        self.registry.delete(name)
        log.info("deleted topic %s", name)

    def forget_topic(self, name: str) -> None:
        """Close the logs of ``name`` this broker holds open (it was deleted or replaced)."""
        for cache in (self._writers, self._readers):
            for tp in [tp for tp in cache if tp[0] == name]:
                _close_quietly(cache.pop(tp))
                self._watcher.unwatch(partition_path(self.data_dir, *tp))
        for tp in [tp for tp in self._producers if tp[0] == name]:
            del self._producers[tp]
        self._log_ids.pop(name, None)

    # ------------------------------------------------------------------ partitions
    def log(self, topic: str, partition: int) -> PartitionLog:
        """The writer log of a partition (opened with its topic's config, kept open among
        the ``max_open_partitions`` most recently used)."""
        tp = (topic, partition)
        lg = self._writers.get(tp)
        if lg is not None:
            self._writers.move_to_end(tp)
            return lg
        meta = self.registry.get(topic)
        lg = PartitionLog(partition_path(self.data_dir, topic, partition), meta.config)
        self._writers[tp] = lg
        self._log_ids[topic] = meta.topic_id
        self._producers[tp] = _rebuild_producers(lg)
        self._evict(self._writers)
        return lg

    def reader(self, topic: str, partition: int) -> PartitionLog:
        """The read-only log of a partition (it catches up with every writer on each read)."""
        tp = (topic, partition)
        lg = self._readers.get(tp)
        if lg is not None:
            self._readers.move_to_end(tp)
            return lg
        meta = self.registry.get(topic)
        lg = PartitionLog(partition_path(self.data_dir, topic, partition), meta.config, readonly=True)
        self._readers[tp] = lg
        self._log_ids[topic] = meta.topic_id
        self._evict(self._readers)
        return lg

    def _evict(self, cache: OrderedDict[TP, PartitionLog]) -> None:
        """Close the least recently used logs past ``max_open_partitions`` (a partition
        being appended to is skipped). A writer's producer state goes with it and is
        rebuilt from its log tail when it is opened again."""
        excess = len(cache) - self.config.max_open_partitions
        for tp in list(cache)[:-1]:
            if excess <= 0:
                return
            lock = self._write_locks.get(tp)
            if cache is self._writers and lock is not None and lock.locked():
                continue
            _close_quietly(cache.pop(tp))
            if cache is self._writers:
                self._producers.pop(tp, None)
            else:
                self._watcher.unwatch(partition_path(self.data_dir, *tp))
            excess -= 1

    def producers(self, topic: str, partition: int) -> PartitionProducers:
        self.log(topic, partition)
        return self._producers[(topic, partition)]

    def write_lock(self, topic: str, partition: int) -> asyncio.Lock:
        """Serialises check-then-append per partition (idempotence needs both in one step)."""
        return self._write_locks.setdefault((topic, partition), asyncio.Lock())

    # ------------------------------------------------------------------ waiting for data
    def notify_append(self) -> None:
        """Wake every waiting fetch (they re-read their partitions)."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    @property
    def open_logs(self) -> int:
        """Partition logs open now (writers and readers)."""
        return len(self._writers) + len(self._readers)

    @property
    def waiting_fetches(self) -> int:
        """Fetches waiting for an append now (long polls)."""
        return len(self._waiters)

    def begin_shutdown(self) -> None:
        """End every long poll now (their fetches answer with what they have)."""
        self.closing = True
        self.notify_append()

    def _on_inotify(self) -> None:
        self._watcher.drain()
        self.notify_append()

    def _poll_tick(self) -> None:
        self._poll_handle = None
        self.notify_append()

    async def wait_for_append(self, timeout_s: float, partition_dirs: list[str]) -> None:
        """Wait until something is appended (here, or by another process into one of
        ``partition_dirs``) or ``timeout_s`` passes."""
        for d in partition_dirs:
            self._watcher.watch(d)
        if self._watch_fd >= 0 and not self._watcher.native:  # it gave up (inotify limits)
            self.loop.remove_reader(self._watch_fd)
            self._watch_fd = -1
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.add(fut)
        if self._watch_fd < 0 and self._poll_handle is None:
            self._poll_handle = self.loop.call_later(_FALLBACK_POLL_S, self._poll_tick)
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)

    # ------------------------------------------------------------------ shutdown
    async def close(self) -> None:
        """Run the close hooks, then close every log (writers record a clean shutdown)."""
        for hook in self._close_hooks:
            try:
                res = hook()
                if inspect.isawaitable(res):
                    await res
            except Exception:
                log.exception("a close hook failed")
        self.notify_append()
        if self._watch_fd >= 0:
            self.loop.remove_reader(self._watch_fd)
        self._watcher.close()
        for cache in (self._writers, self._readers):
            for lg in cache.values():
                _close_quietly(lg)
            cache.clear()
        self.registry.close()
        self._serve_lock.close()


def _close_quietly(lg: PartitionLog) -> None:
    """Close a log whose files may be gone (its topic was deleted under it)."""
    try:
        lg.close()
    except LogqError as e:
        log.info("closing %s: %s", lg.path, e)


def _lock_data_dir(root: str) -> FileLock:
    """One server per data directory (producer ids and dedup state are the server's)."""
    folder = os.path.join(root, META_DIR, "server")
    make_dir(folder)  # 0700 (0750 when the data directory is group-shared), as logq's own
    lock = FileLock(os.path.join(folder, "serve.lock"))
    if not lock.acquire(blocking=False):
        lock.close()
        raise ConfigError(
            f"another logq serve is already serving {root}",
            hint="stop it first, or serve another --data directory",
        )
    return lock


def _advertise(host: str) -> str:
    if host in ("0.0.0.0", "", "localhost"):
        return "127.0.0.1"  # an IPv4 literal: librdkafka may resolve localhost to ::1
    if host == "::":
        return "::1"
    return host


def _rebuild_producers(lg: PartitionLog) -> PartitionProducers:
    """Idempotence state from the batch headers of the last segments (as Kafka rebuilds it)."""
    state = PartitionProducers()
    segs = lg.segments[-_STATE_SCAN_SEGMENTS:]
    if not segs:
        return state
    offset = max(segs[0].base_offset, lg.log_start_offset)
    end = lg.log_end_offset
    while offset < end:
        res = lg.read(offset, 1 << 20)
        if not res.headers:
            break
        for h in res.headers:
            if h.producer_id >= 0:
                state.observe_header(h)
        offset = res.next_offset
    return state
