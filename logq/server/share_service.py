"""Share groups over the wire: the network members of share groups and their share sessions.

The state of every share-partition is logq's (logq/groups/share_store.py), the same files the
embedded ``logq.ShareConsumer`` uses, so network and embedded members of one group share its
records. Per group the server opens one :class:`ShareGroupStore` (``join=False``) and makes
every network member a live member of it with ``add_member``: its member file is flocked by
the server process until the member leaves (ShareGroupHeartbeat with epoch -1), misses its
session timeout, or the server stops. A server killed with ``kill -9`` leaves nothing held
(the kernel drops its flocks): the next operation of any member returns the records its
network members had acquired, as for a killed embedded member. Store member ids are
``net-<16 hex>``, a new one for every join (the store never reuses an id); the client's
own member id (KIP-1082: a client-made UUID) only names it on the wire.

Membership (ShareGroupHeartbeat, KIP-848-like epochs): epoch 0 joins and gets epoch 1, -1
leaves; any other epoch must be the member's current one (else FENCED_MEMBER_EPOCH), an
unknown member id is UNKNOWN_MEMBER_ID. Every member is assigned every partition of the
topics it subscribes to (share groups share partitions); the assignment is sent with every
heartbeat and the epoch rises when it changes (a topic created or grown).

Share sessions (ShareFetch and ShareAcknowledge, KIP-932): one per member. Epoch 0 opens a
new session with the partitions of the request (replacing an older session of the member),
each later request must carry the session's next epoch (else INVALID_SHARE_SESSION_EPOCH; no
session: SHARE_SESSION_NOT_FOUND), -1 closes it after its acknowledgements are applied, and
the records the member still holds are released (available again, their delivery counted).

Everything here runs on the event-loop thread; each store operation is one flock hold.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from logq.client.dead_letters import DeadLetterWriter
from logq.client.producer import Producer
from logq.client.share_config import record_times
from logq.errors import LogqError
from logq.groups.share_state import Archived, Candidate, SharePartitionState
from logq.groups.share_store import ShareGroupStore, SharePolicy, acquire_from_log
from logq.server.context import Broker
from logq.server.handlers.metadata import topic_uuid
from logq.types import Record

__all__ = ["NetMember", "ShareGroup", "ShareService", "share_service"]

log = logging.getLogger("logq.server.share")

TP = tuple[str, int]
_READ_BYTES = 64 << 10


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NetMember:
    """A network member of a share group."""

    member_id: str  # the client's id
    store_id: str  # its id in the share store (net-<hex>, new for every join)
    epoch: int
    topics: list[str]
    deadline_ms: int  # monotonic: its session ends here without a heartbeat
    assignment: dict[str, tuple[uuid.UUID, tuple[int, ...]]] = field(default_factory=dict)
    session_epoch: int | None = None  # the next share-session epoch expected; None: no session
    session: set[TP] = field(default_factory=set)
    left: bool = False  # it left the group; its open share session may still close (epoch -1)


class ShareGroup:
    def __init__(self, broker: Broker, group_id: str) -> None:
        self.group_id = group_id
        self.store = ShareGroupStore(broker.data_dir, group_id, join=False)
        self.members: dict[str, NetMember] = {}
        self.dlq: DeadLetterWriter | None = None


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ShareService:
    """Every share group with network members, in ``broker.extensions["share"]``."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        cfg = broker.config
        self.policy = SharePolicy(
            lock_ms=cfg.share_lock_duration_ms,
            delivery_count_limit=cfg.share_delivery_count_limit,
            max_in_flight=cfg.share_max_in_flight,
        )
        self.session_timeout_ms = cfg.share_session_timeout_ms
        self.heartbeat_interval_ms = cfg.share_heartbeat_interval_ms
        self.groups: dict[str, ShareGroup] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._decoded: dict[TP, dict[int, Any]] = {}

    # ------------------------------------------------------------------ membership
    def group(self, group_id: str) -> ShareGroup:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = ShareGroup(self.broker, group_id)
            log.info("serving share group %s to network members", group_id)
        return g

    def member(self, group_id: str, member_id: str | None) -> NetMember | None:
        g = self.groups.get(group_id)
        return None if g is None or member_id is None else g.members.get(member_id)

    def join(self, group_id: str, member_id: str, topics: list[str]) -> NetMember:
        g = self.group(group_id)
        old = g.members.get(member_id)
        if old is not None:
            self.leave(group_id, member_id)
            g = self.group(group_id)
        store_id = g.store.add_member(f"net-{secrets.token_hex(8)}")
        m = NetMember(member_id, store_id, 0, topics, _monotonic_ms() + self.session_timeout_ms)
        g.members[member_id] = m
        log.info("share group %s: network member %s joined (store id %s)", group_id, member_id, store_id)
        self._arm()
        return m

    def beat(self, m: NetMember, topics: list[str] | None) -> None:
        if topics is not None:
            m.topics = topics
        m.deadline_ms = _monotonic_ms() + self.session_timeout_ms

    def assign(self, m: NetMember) -> None:
        """Every partition of the member's topics that exist now; the epoch rises on a change."""
        new: dict[str, tuple[uuid.UUID, tuple[int, ...]]] = {}
        for t in m.topics:
            try:
                meta = self.broker.topic(t)
            except LogqError:  # an invalid topic name: nothing to assign
                continue
            if meta is not None:
                new[t] = (topic_uuid(meta), tuple(range(meta.partitions)))
        if new != m.assignment or m.epoch == 0:
            m.assignment = new
            m.epoch += 1

    def leave(self, group_id: str, member_id: str, why: str = "left", *, graceful: bool = False) -> None:
        """Remove a member. ``graceful`` (a leaving heartbeat): a member with an open share
        session stays until that session closes (librdkafka sends the closing ShareAcknowledge,
        with the last acknowledgements, after the leave) or for one more heartbeat interval."""
        g = self.groups.get(group_id)
        m = None if g is None else g.members.get(member_id)
        if g is None or m is None:
            return
        if graceful and m.session_epoch is not None and not m.left:
            m.left = True
            m.deadline_ms = _monotonic_ms() + min(self.session_timeout_ms, max(self.heartbeat_interval_ms, 1000))
            return
        del g.members[member_id]
        g.store.remove_member(m.store_id)  # its records return at the next operation of anyone
        log.info("share group %s: network member %s %s", group_id, member_id, why)
        if not g.members:
            self._drop(group_id)
        self.broker.notify_append()  # waiting share fetches may acquire what it held

    def _drop(self, group_id: str) -> None:
        g = self.groups.pop(group_id, None)
        if g is None:
            return
        if g.dlq is not None:
            _quietly(g.dlq.producer.close)
        _quietly(g.store.close)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.broker.loop.call_later(min(self.session_timeout_ms, 1000) / 1000, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = _monotonic_ms()
        for gid, g in list(self.groups.items()):
            for mid, m in list(g.members.items()):
                if m.deadline_ms <= now:
                    self.leave(gid, mid, f"missed its session timeout ({self.session_timeout_ms} ms)")
        if self.groups:
            self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for gid in list(self.groups):
            self._drop(gid)

    # ------------------------------------------------------------------ records
    def update(self, g: ShareGroup, tp: TP, change: Any, sync: bool = False) -> Any:
        """``change(state)`` on ``tp``'s share-partition under its flock (a new one starts at the
        log end, Kafka's share.auto.offset.reset=latest, or its start with ``earliest``)."""
        lg = self.broker.reader(*tp)
        reset = self.broker.config.share_auto_offset_reset

        def start() -> int:
            return lg.log_start_offset if reset == "earliest" else lg.log_end_offset

        return g.store.update(
            tp,
            change,
            start_offset=start,
            policy=self.policy,
            now_ms=_now_ms(),
            on_archive=lambda tp_, archived: self._dead_letter(g, tp_, archived),
            sync=sync,
        )

    def acquire(self, g: ShareGroup, m: NetMember, tp: TP, want: int) -> list[tuple[int, int]]:
        """Acquire up to ``want`` records of ``tp`` for ``m``: (offset, delivery count) pairs."""
        lg = self.broker.reader(*tp)
        cache = self._decoded.setdefault(tp, {})
        policy, now = self.policy, _now_ms()

        def change(state: SharePartitionState) -> list[tuple[int, int]]:
            return acquire_from_log(
                state,
                m.store_id,
                now,
                want,
                policy,
                lg.log_start_offset,
                lg.log_end_offset,
                lambda offset, count: self._candidates(lg, offset, count, cache),
            )

        return list(self.update(g, tp, change))

    def _candidates(self, lg: Any, offset: int, count: int, cache: dict[int, Any]) -> list[Candidate]:
        out: list[Candidate] = []
        pos = offset
        while len(out) < count:
            if pos not in cache:
                if len(cache) > 4096:
                    cache.clear()
                for r in lg.read(pos, _READ_BYTES).records(lg.config.max_decompressed_bytes):
                    cache.setdefault(r.offset, r)
                if pos not in cache:
                    break
            r = cache[pos]
            out.append(Candidate(pos, *record_times(r.headers, r.timestamp, None)))
            pos += 1
        return out

    def acknowledge(self, g: ShareGroup, m: NetMember, tp: TP, acks: dict[str, list[int]], sync: bool) -> list[int]:
        """Apply ``acks`` (kind -> offsets) held by ``m``; returns the offsets it did not hold."""
        limit = self.policy.delivery_count_limit
        now = _now_ms()

        def change(state: SharePartitionState) -> list[int]:
            lost: list[int] = []
            for kind, offs in acks.items():
                if kind == "renew":  # extend the locks, states unchanged (KIP-1222)
                    lost += state.renew(m.store_id, offs, now_ms=now, lock_ms=self.policy.lock_ms)
                else:
                    lost += state.acknowledge(m.store_id, offs, kind, now_ms=now, limit=limit)
            return lost

        return list(self.update(g, tp, change, sync=sync))

    def release_all(self, g: ShareGroup, m: NetMember) -> None:
        """The session closed: the member's acquired records are available again (counted)."""
        limit = self.policy.delivery_count_limit
        for tp in sorted(m.session):
            try:
                self.update(g, tp, lambda s: s.member_gone(m.store_id, limit, _now_ms()), sync=True)
            except LogqError as e:
                log.warning("share group %s: releasing %s-%d of %s: %s", g.group_id, *tp, m.member_id, e)

    def _dead_letter(self, g: ShareGroup, tp: TP, archived: list[Archived]) -> None:
        topic = self.broker.config.share_dead_letter_topic
        if topic is None:
            for a in archived:
                log.info("share group %s: %s-%d@%d archived (%s)", g.group_id, tp[0], tp[1], a.offset, a.reason)
            return
        if g.dlq is None:
            # created when missing and auto_create_topics is on; else the archive fails (and
            # the acknowledgement is answered with an error) until the topic exists
            self.broker.topic(topic, create=True)
            g.dlq = DeadLetterWriter(Producer(self.broker.data_dir), topic, g.group_id)
        lg = self.broker.reader(*tp)
        for a in archived:
            rec = next(iter(lg.read(a.offset, _READ_BYTES).records(lg.config.max_decompressed_bytes)))
            g.dlq.write(
                Record(tp[0], tp[1], rec.offset, rec.timestamp, rec.key, rec.value, tuple(rec.headers)),
                a.reason,
                a.delivery_count,
            )
        g.dlq.flush()


def _quietly(fn: Any) -> None:
    try:
        fn()
    except (LogqError, OSError) as e:
        log.warning("share groups: %s", e)


def share_service(broker: Broker) -> ShareService:
    """The broker's share service (made on first use; closed with the broker)."""
    svc = broker.extensions.get("share")
    if svc is None:
        svc = broker.extensions["share"] = ShareService(broker)
        broker.add_close_hook(svc.close)
    assert isinstance(svc, ShareService)
    return svc
