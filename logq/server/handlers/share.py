"""Share-group APIs: ShareGroupHeartbeat (76) v1, ShareFetch (78) and ShareAcknowledge (79)
v1-2 (librdkafka sends v1 of each; v2 adds RENEW acknowledgements, KIP-1222).

Membership and sessions are logq/server/share_service.py's; the records' states are the
share store's, shared with embedded ``logq.ShareConsumer`` members of the same group.

- **ShareFetch**: acknowledgements carried by the request are applied first (and made
  durable: the journal is fdatasynced before the answer), then records are acquired from the
  session's partitions, up to ``max_records`` in all. The answer per partition holds whole
  stored batches (the bytes as stored, from the batch holding the first acquired offset) and
  the acquired ranges ``[first, last, delivery count]``; the client keeps only the records in
  those ranges. While nothing is acquired the fetch waits up to ``max_wait_ms`` (capped by
  ``max_fetch_wait_ms``), woken by appends and by changes of the group's share state (another
  member acknowledging or releasing), and by the earliest lock expiry.
- **ShareAcknowledge**: acknowledgements only, fdatasynced before the answer.
- Acknowledgement batches are ``[first, last, types]``: one type for the whole range or one
  per offset; 0 gap (treated as accept: there are no gaps in a logq log), 1 accept, 2 release,
  3 reject, and from v2 4 renew (the lock runs ``share_lock_duration_ms`` from now, the state
  stays acquired). A v2 ShareFetch flagged ``is_renew_ack`` applies its acknowledgements and
  acquires nothing. An offset the member does not hold (its lock expired, or it never had it) is
  left unchanged and the partition answered INVALID_RECORD_STATE (121); the others apply.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from logq.errors import InvalidGroupIdError, LogqError
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.server.handlers.metadata import topic_by_id, topic_uuid
from logq.server.share_service import TP, NetMember, ShareGroup, share_service
from logq.storage.topics import partition_path

__all__ = ["HANDLERS", "VERSIONS"]

log = logging.getLogger("logq.server.share")

SHARE_GROUP_HEARTBEAT, SHARE_FETCH, SHARE_ACKNOWLEDGE = 76, 78, 79
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_REQUEST = 42
KAFKA_STORAGE_ERROR = 56
UNKNOWN_TOPIC_ID = 100
FENCED_MEMBER_EPOCH = 110
INVALID_RECORD_STATE = 121
SHARE_SESSION_NOT_FOUND = 122
INVALID_SHARE_SESSION_EPOCH = 123
ACK_KINDS = {0: "accept", 1: "accept", 2: "release", 3: "reject", 4: "renew"}


# ----------------------------------------------------------------------------- heartbeat


def _hb_response(version: int, error: int, message: str | None = None, m: NetMember | None = None, ms: int = 0) -> Any:
    mod = kio_api.module(SHARE_GROUP_HEARTBEAT, version)
    assignment = None
    if m is not None and error == NONE and m.epoch > 0:
        assignment = mod.Assignment(
            topic_partitions=tuple(
                mod.TopicPartitions(topic_id=tid, partitions=parts) for tid, parts in m.assignment.values()
            )
        )
    return kio_api.make(
        mod.ShareGroupHeartbeatResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(error),
        error_message=message,
        member_id=None if m is None else m.member_id,
        member_epoch=-1 if m is None else m.epoch,
        heartbeat_interval=kio_api.millis(ms),
        assignment=assignment,
    )


async def handle_share_group_heartbeat(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = share_service(broker)
    gid, mid, epoch = request.group_id, request.member_id or "", request.member_epoch
    topics = None if request.subscribed_topic_names is None else list(request.subscribed_topic_names)
    try:
        if epoch == -1:
            svc.leave(gid, mid, graceful=True)
            r = _hb_response(version, NONE, m=None)
            return kio_api.make(type(r), **{**_fields(r), "member_id": mid, "member_epoch": -1})
        m = svc.member(gid, mid)
        if m is not None and m.left and epoch != 0:
            m = None
        if epoch == 0:
            if not mid:
                mid = uuid.uuid4().hex
            m = svc.join(gid, mid, topics or [])
        elif m is None:
            return _hb_response(version, UNKNOWN_MEMBER_ID, f"member {mid} is not in share group {gid}")
        elif epoch != m.epoch:
            return _hb_response(version, FENCED_MEMBER_EPOCH, f"epoch {epoch} is not the member's {m.epoch}")
        svc.beat(m, topics)
        svc.assign(m)
    except LogqError as e:
        error = INVALID_GROUP_ID if isinstance(e, InvalidGroupIdError) else KAFKA_STORAGE_ERROR
        log.warning("ShareGroupHeartbeat of %s for group %s: %s", session.peer, gid, e)
        return _hb_response(version, error, str(e))
    return _hb_response(version, NONE, m=m, ms=svc.heartbeat_interval_ms)


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


# ----------------------------------------------------------------------------- sessions


def _check_session(svc: Any, request: Any, fetch: bool) -> tuple[int, ShareGroup | None, NetMember | None]:
    """(error, group, member) of a ShareFetch/ShareAcknowledge, opening/advancing the session."""
    m = svc.member(request.group_id, request.member_id)
    epoch = request.share_session_epoch
    if m is None and epoch == -1:
        return NONE, None, None  # closing a session of a member gone already: nothing held
    if m is None or (m.left and epoch != -1):
        return UNKNOWN_MEMBER_ID, None, None
    g = svc.groups[request.group_id]
    if epoch == 0:
        if not fetch:
            return INVALID_SHARE_SESSION_EPOCH, g, m
        m.session = set()
        m.session_epoch = 1
        svc.beat(m, None)
        return NONE, g, m
    if m.session_epoch is None:
        return SHARE_SESSION_NOT_FOUND, g, m
    if epoch != -1 and epoch != m.session_epoch:
        return INVALID_SHARE_SESSION_EPOCH, g, m
    if epoch != -1:
        m.session_epoch = 1 if epoch == 2**31 - 1 else epoch + 1
    svc.beat(m, None)
    return NONE, g, m


def _tp(broker: Broker, topic_id: Any, partition: int) -> tuple[TP | None, int]:
    meta = topic_by_id(broker, topic_id) if topic_id is not None else None
    if meta is None:
        return None, UNKNOWN_TOPIC_ID
    if not 0 <= partition < meta.partitions:
        return None, UNKNOWN_TOPIC_OR_PARTITION
    return (meta.name, partition), NONE


def _ack_map(batches: Any, version: int) -> tuple[dict[str, list[int]], bool]:
    """kind -> offsets of acknowledgement batches; False when one is malformed."""
    out: dict[str, list[int]] = {}
    for b in batches:
        n = b.last_offset - b.first_offset + 1
        types = tuple(b.acknowledge_types)
        known = ACK_KINDS if version >= 2 else {k: v for k, v in ACK_KINDS.items() if k != 4}
        if n < 1 or n > 1_000_000 or len(types) not in (1, n) or any(t not in known for t in types):
            return {}, False
        for i in range(n):
            out.setdefault(ACK_KINDS[types[0] if len(types) == 1 else types[i]], []).append(b.first_offset + i)
    return out, True


def _apply_acks(svc: Any, g: ShareGroup, m: NetMember, tp: TP, batches: Any, version: int) -> int:
    acks, ok = _ack_map(batches, version)
    if not ok:
        return INVALID_REQUEST
    if not acks:
        return NONE
    try:
        lost = svc.acknowledge(g, m, tp, acks, sync=True)
    except LogqError as e:
        log.warning("share group %s: acknowledgements of %s-%d: %s", g.group_id, *tp, e)
        return KAFKA_STORAGE_ERROR
    return INVALID_RECORD_STATE if lost else NONE


def _close_session(svc: Any, g: ShareGroup, m: NetMember) -> None:
    """Epoch -1: release what the member still holds; a member that left is gone now."""
    svc.release_all(g, m)
    m.session_epoch, m.session = None, set()
    if m.left:
        svc.leave(g.group_id, m.member_id)


# ----------------------------------------------------------------------------- ShareFetch


def _batches_for(broker: Broker, tp: TP, got: list[tuple[int, int]], max_bytes: int) -> bytes:
    """The stored batches holding the acquired offsets (each batch once, in offset order)."""
    lg = broker.reader(*tp)
    chunks: list[bytes] = []
    covered = -1  # offsets below this are in the chunks already
    for off, _ in sorted(got):
        if off < covered:
            continue
        res = lg.read(off, max(1, min(max_bytes, 1 << 20)))
        pos = 0
        for h in res.headers:
            last = h.base_offset + h.last_offset_delta
            if last >= off:
                chunks.append(res.data[pos : pos + h.size])
                covered = last + 1
                break
            pos += h.size
    return b"".join(chunks)


def _ranges(got: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    out: list[list[int]] = []
    for off, count in sorted(got):
        if out and out[-1][1] == off - 1 and out[-1][2] == count:
            out[-1][1] = off
        else:
            out.append([off, off, count])
    return [(a, b, c) for a, b, c in out]


def _fetch_response(version: int, error: int, parts: dict[TP, dict[str, Any]], broker: Broker, lock_ms: int) -> Any:
    mod = kio_api.module(SHARE_FETCH, version)
    by_topic: dict[uuid.UUID, list[Any]] = {}
    for (_topic, p), part in parts.items():
        by_topic.setdefault(part["topic_id"], []).append(
            kio_api.make(
                mod.PartitionData,
                partition_index=p,
                error_code=kio_api.error(part.get("error", NONE)),
                error_message=None,
                acknowledge_error_code=part.get("ack_error", NONE),
                acknowledge_error_message=None,
                current_leader=mod.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                records=part.get("records", b""),
                acquired_records=tuple(
                    mod.AcquiredRecords(first_offset=a, last_offset=b, delivery_count=c)
                    for a, b, c in part.get("ranges", [])
                ),
            )
        )
    return kio_api.make(
        mod.ShareFetchResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(error),
        error_message=None,
        acquisition_lock_timeout=kio_api.millis(lock_ms),
        responses=tuple(
            mod.ShareFetchableTopicResponse(topic_id=tid, partitions=tuple(ps)) for tid, ps in by_topic.items()
        ),
        node_endpoints=(),
    )


def _acquire_round(broker: Broker, svc: Any, g: ShareGroup, m: NetMember, want: int, max_bytes: int) -> dict[TP, Any]:
    out: dict[TP, Any] = {}
    for tp in sorted(m.session):
        if want <= 0:
            break
        try:
            got = svc.acquire(g, m, tp, want)
            if got:
                out[tp] = got
                want -= len(got)
        except LogqError as e:
            log.warning("share group %s: acquiring from %s-%d: %s", g.group_id, *tp, e)
    return out


async def handle_share_fetch(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = share_service(broker)
    error, g, m = _check_session(svc, request, fetch=True)
    if error or g is None or m is None:
        return _fetch_response(version, error, {}, broker, svc.policy.lock_ms)
    parts: dict[TP, dict[str, Any]] = {}
    for t in request.topics:
        for p in t.partitions:
            tp, err = _tp(broker, t.topic_id, p.partition_index)
            if tp is None:
                continue  # an unknown topic id: the client learns it from its metadata
            entry = parts.setdefault(tp, {"topic_id": t.topic_id})
            if request.share_session_epoch != -1:
                m.session.add(tp)
            if p.acknowledgement_batches:
                entry["ack_error"] = _apply_acks(svc, g, m, tp, p.acknowledgement_batches, version)
    for t in request.forgotten_topics_data:
        for pi in t.partitions:
            tp, _ = _tp(broker, t.topic_id, pi)
            if tp is not None:
                m.session.discard(tp)
    if request.share_session_epoch == -1:
        _close_session(svc, g, m)
        return _fetch_response(version, NONE, parts, broker, svc.policy.lock_ms)
    if getattr(request, "is_renew_ack", False):  # v2: acknowledgements (renewals) only
        return _fetch_response(version, NONE, parts, broker, svc.policy.lock_ms)
    want = max(request.max_records, 1)
    max_bytes = max(min(request.max_bytes, broker.config.max_fetch_response_bytes), 1)
    got = _acquire_round(broker, svc, g, m, want, max_bytes)
    deadline = time.monotonic() + min(kio_api.timestamp_ms(request.max_wait), broker.config.max_fetch_wait_ms) / 1000
    dirs: list[str] | None = None
    while not got and m.session and not (broker.closing or session.closed):
        left = deadline - time.monotonic()
        if left <= 0 or svc.member(g.group_id, m.member_id) is not m:
            break
        if dirs is None:
            dirs = [partition_path(broker.data_dir, *tp) for tp in m.session] + [g.store.gdir]
        await broker.wait_for_append(min(left, 0.5), dirs)  # a lock expiring needs no event: re-check often
        if svc.member(g.group_id, m.member_id) is not m:
            break
        got = _acquire_round(broker, svc, g, m, want, max_bytes)
    for tp, acquired in got.items():
        meta = broker.topic(tp[0])
        entry = parts.setdefault(tp, {"topic_id": topic_uuid(meta) if meta is not None else None})
        entry["records"] = _batches_for(broker, tp, acquired, max_bytes)
        entry["ranges"] = _ranges(acquired)
    return _fetch_response(version, NONE, parts, broker, svc.policy.lock_ms)


# ----------------------------------------------------------------------------- ShareAcknowledge


async def handle_share_acknowledge(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = share_service(broker)
    mod = kio_api.module(SHARE_ACKNOWLEDGE, version)
    error, g, m = _check_session(svc, request, fetch=False)
    by_topic: dict[Any, list[Any]] = {}
    if not error:
        for t in request.topics:
            for p in t.partitions:
                tp, err = _tp(broker, t.topic_id, p.partition_index)
                if tp is not None and (g is None or m is None):
                    err = INVALID_RECORD_STATE  # the member is gone: its records were released
                elif tp is not None and g is not None and m is not None:
                    err = _apply_acks(svc, g, m, tp, p.acknowledgement_batches, version)
                by_topic.setdefault(t.topic_id, []).append(
                    kio_api.make(
                        mod.PartitionData,
                        partition_index=p.partition_index,
                        error_code=kio_api.error(err),
                        error_message=None,
                        current_leader=mod.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
                    )
                )
        if request.share_session_epoch == -1 and g is not None and m is not None:
            _close_session(svc, g, m)
    return kio_api.make(
        mod.ShareAcknowledgeResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(error),
        error_message=None,
        responses=tuple(
            mod.ShareAcknowledgeTopicResponse(topic_id=tid, partitions=tuple(ps)) for tid, ps in by_topic.items()
        ),
        node_endpoints=(),
        acquisition_lock_timeout=kio_api.millis(svc.policy.lock_ms),
    )


HANDLERS = {
    SHARE_GROUP_HEARTBEAT: handle_share_group_heartbeat,
    SHARE_FETCH: handle_share_fetch,
    SHARE_ACKNOWLEDGE: handle_share_acknowledge,
}
VERSIONS = {SHARE_GROUP_HEARTBEAT: (1, 1), SHARE_FETCH: (1, 2), SHARE_ACKNOWLEDGE: (1, 2)}
