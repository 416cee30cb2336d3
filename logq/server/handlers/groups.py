"""Consumer-group APIs of `logq serve`: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups.

This broker is the coordinator of every group (FindCoordinator names it, v4's batches too).
Membership is the sans-IO coordinator's (logq/server/coordinator.py) through the broker's
GroupService (logq/server/group_service.py); JoinGroup and SyncGroup await its answer.
Committed offsets are the group's logq offsets (logq/groups/offsets.py), shared with
embedded consumers and ``logq groups``, metadata strings included. Group ids are stored as
directory names, so they follow logq's rule (1-249 characters of ``[a-zA-Z0-9._-]``); other
ids are answered INVALID_GROUP_ID (24).

Every response is built with ``kio_api.make``, which drops the fields a version lacks, so one
handler serves every advertised version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from logq.server import coordinator as co
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.server.group_service import COORDINATOR_NOT_AVAILABLE, now_ms, service
from logq.server.handlers.group_reads import (
    DELETE_GROUPS,
    DESCRIBE_GROUPS,
    LIST_GROUPS,
    OFFSET_COMMIT,
    OFFSET_FETCH,
    handle_delete_groups,
    handle_describe_groups,
    handle_list_groups,
    handle_offset_commit,
    handle_offset_fetch,
)

__all__ = ["HANDLERS", "VERSIONS"]

log = logging.getLogger("logq.server.groups")

FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP, SYNC_GROUP = 10, 11, 12, 13, 14


def _ms(value: Any) -> int:
    return kio_api.timestamp_ms(value)


# ----------------------------------------------------------------------------- FindCoordinator


async def handle_find_coordinator(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(FIND_COORDINATOR, version)
    key_type = getattr(request, "key_type", 0)
    error = co.NONE if key_type == 0 else COORDINATOR_NOT_AVAILABLE  # transactions: not served
    message = None if error == co.NONE else "logq serve coordinates consumer groups only"
    where = {"node_id": broker.node_id if not error else -1, "host": broker.advertised_host if not error else ""}
    where["port"] = broker.advertised_port if not error else -1
    if version >= 4:
        coordinators = tuple(
            kio_api.make(m.Coordinator, key=k, error_code=kio_api.error(error), error_message=message, **where)
            for k in request.coordinator_keys
        )
        return kio_api.make(m.FindCoordinatorResponse, throttle_time=kio_api.millis(0), coordinators=coordinators)
    return kio_api.make(
        m.FindCoordinatorResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(error),
        error_message=message,
        **where,
    )


# ----------------------------------------------------------------------------- JoinGroup, SyncGroup


def _setter(fut: asyncio.Future[Any]) -> Callable[[Any], None]:
    def set_result(value: Any) -> None:
        if not fut.done():  # the connection may have gone and the wait been cancelled
            fut.set_result(value)

    return set_result


NOT_COORDINATOR = 16
_SHUTDOWN_CHECK_S = 0.1


async def _answer(broker: Broker, fut: asyncio.Future[Any], at_shutdown: Any) -> Any:
    """The coordinator's answer, or ``at_shutdown`` once the server is stopping (a long-polled
    join or sync must not hold the shutdown's grace period)."""
    while True:
        done, _ = await asyncio.wait([fut], timeout=_SHUTDOWN_CHECK_S)
        if done:
            return fut.result()
        if getattr(broker, "closing", False):
            return at_shutdown


def _join_response(version: int, r: co.JoinResult) -> Any:
    m = kio_api.module(JOIN_GROUP, version)
    members = tuple(
        kio_api.make(m.JoinGroupResponseMember, member_id=mid, group_instance_id=iid, metadata=meta)
        for mid, iid, meta in r.members
    )
    return kio_api.make(
        m.JoinGroupResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(r.error),
        generation_id=r.generation,
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name if version >= 7 else (r.protocol_name or ""),
        leader=r.leader,
        member_id=r.member_id,
        members=members,
    )


async def handle_join_group(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    error = svc.admit(request.group_id, session.peer)
    if error:
        return _join_response(version, co.JoinResult(error, member_id=request.member_id))
    fut: asyncio.Future[co.JoinResult] = broker.loop.create_future()
    svc.co.join(
        request.group_id,
        request.member_id,
        instance_id=getattr(request, "group_instance_id", None),
        client_id=session.client_id or "",
        client_host=f"/{session.peer.rsplit(':', 1)[0]}",
        session_timeout_ms=_ms(request.session_timeout),
        rebalance_timeout_ms=_ms(getattr(request, "rebalance_timeout", -1)),
        protocol_type=request.protocol_type,
        protocols=[(p.name, bytes(p.metadata)) for p in request.protocols],
        require_known_member_id=version >= 4,
        now_ms=now_ms(),
        reply=_setter(fut),
    )
    svc.after()
    result = await _answer(broker, fut, co.JoinResult(NOT_COORDINATOR, member_id=request.member_id))
    svc.after()  # the group may have become empty meanwhile (a refused join of a new group)
    return _join_response(version, result)


async def handle_sync_group(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    fut: asyncio.Future[co.SyncResult] = broker.loop.create_future()
    svc.co.sync(
        request.group_id,
        request.member_id,
        request.generation_id,
        instance_id=getattr(request, "group_instance_id", None),
        assignments=[(a.member_id, bytes(a.assignment)) for a in request.assignments],
        now_ms=now_ms(),
        reply=_setter(fut),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
    )
    svc.after()
    r = await _answer(broker, fut, co.SyncResult(NOT_COORDINATOR))
    svc.beat(request.group_id, request.member_id)
    m = kio_api.module(SYNC_GROUP, version)
    return kio_api.make(
        m.SyncGroupResponse,
        throttle_time=kio_api.millis(0),
        error_code=kio_api.error(r.error),
        protocol_type=r.protocol_type,
        protocol_name=r.protocol_name,
        assignment=r.assignment,
    )


# ----------------------------------------------------------------------------- Heartbeat, LeaveGroup


async def handle_heartbeat(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    error = svc.co.heartbeat(
        request.group_id,
        request.member_id,
        request.generation_id,
        instance_id=getattr(request, "group_instance_id", None),
        now_ms=now_ms(),
    )
    if error in (co.NONE, co.REBALANCE_IN_PROGRESS):
        svc.beat(request.group_id, request.member_id)
    svc.after()
    m = kio_api.module(HEARTBEAT, version)
    return kio_api.make(m.HeartbeatResponse, throttle_time=kio_api.millis(0), error_code=kio_api.error(error))


async def handle_leave_group(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    if version >= 3:
        who = [(x.member_id, x.group_instance_id) for x in request.members]
    else:
        who = [(request.member_id, None)]
    known = svc.co.group(request.group_id) is not None
    outcomes = svc.co.leave(request.group_id, who, now_ms=now_ms())
    svc.after()
    for o in outcomes:
        if o.error == co.NONE:
            log.info("member %s left group %s", o.member_id, request.group_id)
    m = kio_api.module(LEAVE_GROUP, version)
    if version < 3:
        return kio_api.make(
            m.LeaveGroupResponse, throttle_time=kio_api.millis(0), error_code=kio_api.error(outcomes[0].error)
        )
    members = tuple(
        kio_api.make(
            m.MemberResponse, member_id=o.member_id, group_instance_id=o.instance_id, error_code=kio_api.error(o.error)
        )
        for o in outcomes
    )
    top = co.NONE if known else co.UNKNOWN_MEMBER_ID
    return kio_api.make(
        m.LeaveGroupResponse, throttle_time=kio_api.millis(0), error_code=kio_api.error(top), members=members
    )


HANDLERS = {
    FIND_COORDINATOR: handle_find_coordinator,
    JOIN_GROUP: handle_join_group,
    SYNC_GROUP: handle_sync_group,
    HEARTBEAT: handle_heartbeat,
    LEAVE_GROUP: handle_leave_group,
    OFFSET_COMMIT: handle_offset_commit,
    OFFSET_FETCH: handle_offset_fetch,
    LIST_GROUPS: handle_list_groups,
    DESCRIBE_GROUPS: handle_describe_groups,
    DELETE_GROUPS: handle_delete_groups,
}
VERSIONS = {
    FIND_COORDINATOR: (0, 4),
    JOIN_GROUP: (0, 7),
    SYNC_GROUP: (0, 5),
    HEARTBEAT: (0, 4),
    LEAVE_GROUP: (0, 4),
    OFFSET_COMMIT: (0, 8),
    OFFSET_FETCH: (0, 8),
    LIST_GROUPS: (0, 4),
    DESCRIBE_GROUPS: (0, 5),
    DELETE_GROUPS: (0, 2),
}
