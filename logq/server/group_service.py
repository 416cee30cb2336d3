"""The group coordinator of one broker, wired to the event loop and to the group files.

:class:`GroupService` owns the sans-IO :class:`~logq.server.coordinator.Coordinator`, the
one timer that drives its session and rebalance timeouts (``loop.call_later`` at
``next_deadline_ms``), the :class:`~logq.groups.served.ServedGroup` files of every group
with network members (so ``logq groups describe`` shows them) and the groups'
:class:`~logq.groups.offsets.OffsetStore` (committed offsets, shared with embedded
consumers). It lives in ``broker.extensions["groups"]`` and is created on first use.

Everything here runs on the event-loop thread; the file operations are short (a flock and a
few small writes) and bounded by ``LOCK_TIMEOUT_MS``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from logq.errors import GroupServedError, InvalidGroupIdError, LockTimeoutError, LogqError
from logq.groups.files import check_name, group_dir
from logq.groups.offsets import OffsetStore
from logq.groups.served import ServedGroup
from logq.server import coordinator as co
from logq.server.consumer_protocol import assignment_partitions, subscription_topics
from logq.server.context import Broker
from logq.storage.topics import validate_topic

__all__ = ["GroupService", "service"]

log = logging.getLogger("logq.server.groups")

LOCK_TIMEOUT_MS = 1000
MAX_OPEN_STORES = 256  # offsets stores kept open (a group lock descriptor each)
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15


def service(broker: Broker) -> GroupService:
    """The broker's group service (made on first use; closed with the broker)."""
    svc = broker.extensions.get("groups")
    if svc is None:
        svc = broker.extensions["groups"] = GroupService(broker)
        broker.add_close_hook(svc.close)
    assert isinstance(svc, GroupService)
    return svc


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class GroupService:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.co = co.Coordinator()
        self.served: dict[str, ServedGroup] = {}
        self._stores: dict[str, OffsetStore] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._closed = False

    # -- admission -------------------------------------------------------------------

    def admit(self, group_id: str, peer: str) -> int:
        """Serve ``group_id`` to network members (taking its files); an error code or NONE."""
        if group_id in self.served:
            return co.NONE
        try:
            check_name("group id", group_id)
            sg = ServedGroup(self.broker.data_dir, group_id, lock_timeout_ms=LOCK_TIMEOUT_MS)
            generation = sg.acquire()
        except InvalidGroupIdError:
            return co.INVALID_GROUP_ID
        except GroupServedError as e:
            log.warning("JoinGroup of %s for group %s refused: %s", peer, group_id, e)
            return co.INCONSISTENT_GROUP_PROTOCOL
        except LockTimeoutError:
            return COORDINATOR_LOAD_IN_PROGRESS
        except LogqError as e:
            log.warning("cannot serve group %s: %s", group_id, e)
            return COORDINATOR_NOT_AVAILABLE
        self.served[group_id] = sg
        g = self.co.groups.setdefault(group_id, co.Group(group_id))
        if not g.members:
            g.generation = max(g.generation, generation)
        log.info("serving group %s to network members (generation %d)", group_id, g.generation)
        return co.NONE

    # -- after every coordinator call ------------------------------------------------

    def after(self) -> None:
        """Mirror changed groups into their files, give back empty ones, re-arm the timer."""
        for gid in sorted(self.co.take_changed()):
            self._mirror(gid)
        for gid, sg in list(self.served.items()):
            g = self.co.group(gid)
            if g is None or (not g.members and not g.pending):
                del self.served[gid]
                self.co.groups.pop(gid, None)  # its generation lives on in the files (acquire reads it)
                try:
                    sg.release()
                except LogqError as e:
                    log.warning("releasing group %s: %s", gid, e)
                log.info("group %s has no network member left", gid)
        self._arm()

    def _mirror(self, gid: str) -> None:
        sg, g = self.served.get(gid), self.co.group(gid)
        if sg is None or g is None or not g.members:
            return
        consumer = g.protocol_type == "consumer"
        members = {mid: self._member_info(m, consumer, g.protocol_name) for mid, m in g.members.items()}
        assignment = {
            mid: _valid_tps(assignment_partitions(m.assignment)) if consumer else [] for mid, m in g.members.items()
        }
        try:
            sg.publish(g.generation, members, assignment)
        except LogqError as e:
            log.warning("group %s: could not record generation %d in its files: %s", gid, g.generation, e)

    def _member_info(self, m: co.Member, consumer: bool, protocol: str | None) -> dict[str, Any]:
        topics: dict[str, int] = {}
        for t in subscription_topics(m.metadata_for(protocol) or (m.protocols[0][1] if m.protocols else b"")):
            try:
                meta = self.broker.registry.get(validate_topic(t))
                topics[t] = meta.partitions
            except LogqError:  # an invalid name, or a topic that does not exist (yet)
                continue
        return {
            "topics": topics if consumer else {},
            "session_ms": m.session_timeout_ms,
            "max_poll_ms": m.rebalance_timeout_ms,
            "pid": os.getpid(),
            "network": True,
            "client_id": m.client_id,
            "host": m.client_host,
            "protocol": protocol,  # the group's chosen protocol: the assignor (range, roundrobin, ...)
        }

    def beat(self, group_id: str, member_id: str) -> None:
        sg = self.served.get(group_id)
        if sg is not None:
            sg.beat(member_id)

    # -- the timer -------------------------------------------------------------------

    def _arm(self) -> None:
        if self._closed:
            return
        due = self.co.next_deadline_ms()
        if due == self._timer_at and (due is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = due
        if due is not None:
            delay_s = max(0, due - now_ms() + 1) / 1000.0
            self._timer = self.broker.loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, None
        self.co.tick(now_ms())
        self.after()

    # -- committed offsets -----------------------------------------------------------

    def store(self, group_id: str, *, create: bool) -> OffsetStore | None:
        """The group's offsets (None for a group with no directory, unless ``create``)."""
        st = self._stores.pop(group_id, None)
        if st is None:
            gdir = group_dir(self.broker.data_dir, group_id)
            if not create and not os.path.isdir(gdir):
                return None
            st = OffsetStore(gdir, lock_timeout_ms=LOCK_TIMEOUT_MS)
            while len(self._stores) >= MAX_OPEN_STORES:  # least recently used first (one descriptor each)
                self._stores.pop(next(iter(self._stores))).close()
        self._stores[group_id] = st  # most recently used last
        return st

    def forget(self, group_id: str) -> None:
        """Close the group's offsets store and drop it from memory (before a delete)."""
        st = self._stores.pop(group_id, None)
        if st is not None:
            st.close()
        g = self.co.group(group_id)
        if g is not None and not g.members and not g.pending:
            del self.co.groups[group_id]

    # -- shutdown --------------------------------------------------------------------

    def close(self) -> None:
        """Give every served group back (members removed from the files) and close stores."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for gid, sg in list(self.served.items()):
            try:
                sg.release()
            except LogqError as e:
                log.warning("releasing group %s: %s", gid, e)
        self.served.clear()
        for st in self._stores.values():
            st.close()
        self._stores.clear()


def _valid_tps(tps: list[tuple[str, int]]) -> list[tuple[str, int]]:
    out = []
    for topic, p in tps:
        try:
            validate_topic(topic)
        except LogqError:
            continue
        if p >= 0:
            out.append((topic, p))
    return out
