"""Committed offsets and group listings of `logq serve`: OffsetCommit, OffsetFetch,
ListGroups, DescribeGroups, DeleteGroups (registered through logq/server/handlers/groups.py).

OffsetCommit is fenced by Kafka's rules (:meth:`Coordinator.check_commit`) and then stored
in the group's logq offsets: a network member's commit with ``coordinated=True`` (the
coordinator has checked member and generation), an admin commit (generation -1, no member
id, as a consumer with manual assignment sends) with logq's own rule that the group has no
live member. Per partition: UNKNOWN_TOPIC_OR_PARTITION (3) for a partition that does not
exist, OFFSET_OUT_OF_RANGE (1) for an offset below 0 or beyond the log end (logq's rule:
committed <= log end), OFFSET_METADATA_TOO_LARGE (12) for metadata over 4096 characters;
the other partitions of the request are stored.

OffsetFetch answers -1 and "" for a partition without a committed offset (and for offsets of
a deleted incarnation of a topic); a null topic list (v2+) means every committed offset.

ListGroups and DescribeGroups show every group of the data directory: network groups with
Kafka's states and members, embedded ones as "Stable" (live members) or "Empty", their
members' assignments encoded as the consumer protocol does, so Kafka tools can print them.

DeleteGroups deletes a group and its committed offsets as ``logq groups delete`` does
(Admin.delete_group): NON_EMPTY_GROUP (68) while it has network or embedded members,
GROUP_ID_NOT_FOUND (69) for a group that does not exist.
"""

from __future__ import annotations

import logging
from typing import Any

from logq.client.admin import Admin
from logq.errors import GroupNotEmptyError, LogqError, UnknownGroupError
from logq.groups.files import check_name, group_dir, list_groups, live_member_ids, load_state
from logq.groups.offsets import MAX_METADATA_CHARS
from logq.server import coordinator as co
from logq.server import kio_api
from logq.server.consumer_protocol import encode_assignment
from logq.server.context import Broker, Session
from logq.server.group_service import COORDINATOR_NOT_AVAILABLE, GroupService, now_ms, service

__all__ = [
    "OFFSET_COMMIT",
    "OFFSET_FETCH",
    "LIST_GROUPS",
    "DESCRIBE_GROUPS",
    "handle_offset_commit",
    "handle_offset_fetch",
    "handle_list_groups",
    "handle_describe_groups",
    "handle_delete_groups",
]

log = logging.getLogger("logq.server.groups")

OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS = 8, 9, 15, 16, 42
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_METADATA_TOO_LARGE = 12
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)

TP = tuple[str, int]


def _valid_group(group_id: str) -> bool:
    try:
        check_name("group id", group_id)
    except LogqError:
        return False
    return True


# ----------------------------------------------------------------------------- OffsetCommit


def _partition_error(broker: Broker, topic: str, p: int, offset: int, metadata: str | None) -> int:
    try:
        meta = broker.fresh_topic(topic)
    except LogqError:
        return UNKNOWN_TOPIC_OR_PARTITION
    if meta is None or not 0 <= p < meta.partitions:
        return UNKNOWN_TOPIC_OR_PARTITION
    if metadata is not None and len(metadata) > MAX_METADATA_CHARS:
        return OFFSET_METADATA_TOO_LARGE
    try:
        end = broker.reader(topic, p).log_end_offset
    except LogqError:
        return UNKNOWN_TOPIC_OR_PARTITION
    return co.NONE if 0 <= offset <= end else OFFSET_OUT_OF_RANGE


def _store_commit(svc: GroupService, group_id: str, member: bool, offsets: dict[TP, int], notes: dict[TP, str]) -> int:
    try:
        store = svc.store(group_id, create=True)
        assert store is not None
        store.commit(offsets, metadata=notes, coordinated=member)
    except GroupNotEmptyError as e:
        log.warning("OffsetCommit of group %s without membership refused: %s", group_id, e)
        return co.UNKNOWN_MEMBER_ID
    except LogqError as e:
        log.warning("OffsetCommit of group %s failed: %s", group_id, e)
        return COORDINATOR_NOT_AVAILABLE
    return co.NONE


async def handle_offset_commit(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    group_id = request.group_id
    generation = getattr(request, "generation_id_or_member_epoch", getattr(request, "generation_id", -1))
    member_id = getattr(request, "member_id", "")
    if not _valid_group(group_id):
        error = co.INVALID_GROUP_ID
    else:
        error = svc.co.check_commit(
            group_id,
            member_id,
            generation,
            instance_id=getattr(request, "group_instance_id", None),
            now_ms=now_ms(),
        )
    errors: dict[TP, int] = {}
    offsets: dict[TP, int] = {}
    notes: dict[TP, str] = {}
    for t in request.topics:
        for p in t.partitions:
            tp = (t.name, p.partition_index)
            text = p.committed_metadata
            errors[tp] = error or _partition_error(broker, t.name, p.partition_index, p.committed_offset, text)
            if errors[tp] == co.NONE:
                offsets[tp] = p.committed_offset
                notes[tp] = text or ""
    if offsets:
        stored = _store_commit(svc, group_id, bool(member_id), offsets, notes)
        errors.update(dict.fromkeys(offsets, stored))
        if stored == co.NONE:
            svc.beat(group_id, member_id)
    m = kio_api.module(OFFSET_COMMIT, version)
    topics = []
    for t in request.topics:
        parts = tuple(
            kio_api.make(
                m.OffsetCommitResponsePartition,
                partition_index=p.partition_index,
                error_code=kio_api.error(errors[(t.name, p.partition_index)]),
            )
            for p in t.partitions
        )
        topics.append(kio_api.make(m.OffsetCommitResponseTopic, name=t.name, partitions=parts))
    return kio_api.make(m.OffsetCommitResponse, throttle_time=kio_api.millis(0), topics=tuple(topics))


# ----------------------------------------------------------------------------- OffsetFetch


def _committed(svc: GroupService, group_id: str) -> tuple[dict[TP, tuple[int, str]], int]:
    if not _valid_group(group_id):
        return {}, co.INVALID_GROUP_ID
    try:
        store = svc.store(group_id, create=False)
        return ({} if store is None else store.all_with_metadata()), co.NONE
    except LogqError as e:
        log.warning("OffsetFetch of group %s failed: %s", group_id, e)
        return {}, COORDINATOR_NOT_AVAILABLE


def _fetch_topics(m: Any, version: int, wanted: Any, got: dict[TP, tuple[int, str]], error: int) -> tuple[Any, ...]:
    """The topics of one group's answer (``wanted`` None: every committed offset)."""
    topic_cls = getattr(m, "OffsetFetchResponseTopics", None) or m.OffsetFetchResponseTopic
    part_cls = getattr(m, "OffsetFetchResponsePartitions", None) or m.OffsetFetchResponsePartition
    if wanted is None:
        names: dict[str, list[int]] = {}
        for topic, p in sorted(got):
            names.setdefault(topic, []).append(p)
        asked = list(names.items())
    else:
        asked = [(t.name, list(t.partition_indexes)) for t in wanted]
    part_error = error if version < 2 else co.NONE  # v2+ carries the group's error at the top
    out = []
    for topic, parts in asked:
        rows = []
        for p in parts:
            off, text = got.get((topic, p), (-1, ""))
            rows.append(
                kio_api.make(
                    part_cls,
                    partition_index=p,
                    committed_offset=off,
                    committed_leader_epoch=-1,
                    metadata=text,
                    error_code=kio_api.error(part_error),
                )
            )
        out.append(kio_api.make(topic_cls, name=topic, partitions=tuple(rows)))
    return tuple(out)


async def handle_offset_fetch(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    m = kio_api.module(OFFSET_FETCH, version)
    if version >= 8:
        groups = []
        for g in request.groups:
            got, error = _committed(svc, g.group_id)
            groups.append(
                kio_api.make(
                    m.OffsetFetchResponseGroup,
                    group_id=g.group_id,
                    topics=_fetch_topics(m, version, g.topics, got, error),
                    error_code=kio_api.error(error),
                )
            )
        return kio_api.make(m.OffsetFetchResponse, throttle_time=kio_api.millis(0), groups=tuple(groups))
    got, error = _committed(svc, request.group_id)
    return kio_api.make(
        m.OffsetFetchResponse,
        throttle_time=kio_api.millis(0),
        topics=_fetch_topics(m, version, request.topics, got, error),
        error_code=kio_api.error(error),
    )


# ----------------------------------------------------------------------------- ListGroups, DescribeGroups


def _embedded_state(broker: Broker, group_id: str) -> str:
    return "Stable" if live_member_ids(group_dir(broker.data_dir, group_id)) else "Empty"


def _all_groups(broker: Broker, svc: GroupService) -> dict[str, str]:
    """Every group: the coordinator's state for network groups, else from the files."""
    out: dict[str, str] = {}
    try:
        for gid in list_groups(broker.data_dir):
            out[gid] = _embedded_state(broker, gid)
    except LogqError as e:
        log.warning("listing groups: %s", e)
    for gid, g in svc.co.groups.items():
        if g.members or gid not in out:
            out[gid] = g.state
    return out


async def handle_list_groups(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    wanted = {s.lower() for s in getattr(request, "states_filter", ()) or ()}
    m = kio_api.module(LIST_GROUPS, version)
    listed = tuple(
        kio_api.make(m.ListedGroup, group_id=gid, protocol_type="consumer", group_state=state)
        for gid, state in sorted(_all_groups(broker, svc).items())
        if not wanted or state.lower() in wanted
    )
    return kio_api.make(
        m.ListGroupsResponse, throttle_time=kio_api.millis(0), error_code=kio_api.error(0), groups=listed
    )


def _describe_network(m: Any, g: co.Group) -> Any:
    members = tuple(
        kio_api.make(
            m.DescribedGroupMember,
            member_id=x.member_id,
            group_instance_id=x.instance_id,
            client_id=x.client_id,
            client_host=x.client_host,
            member_metadata=x.metadata_for(g.protocol_name),
            member_assignment=x.assignment,
        )
        for x in g.members.values()
    )
    return g.state, g.protocol_type or "", g.protocol_name or "", members


def _describe_embedded(m: Any, broker: Broker, group_id: str) -> Any:
    gdir = group_dir(broker.data_dir, group_id)
    state, _ = load_state(gdir)
    live = set(live_member_ids(gdir))
    assignment = state.assignment if state else {}
    members = tuple(
        kio_api.make(
            m.DescribedGroupMember,
            member_id=mid,
            group_instance_id=None,
            client_id="logq",
            client_host=f"pid {info.get('pid', '?')}",
            member_metadata=b"",
            member_assignment=encode_assignment(assignment.get(mid, ())),
        )
        for mid, info in (state.members.items() if state else ())
        if mid in live
    )
    return ("Stable" if members else "Empty"), "consumer", ("logq" if members else ""), members


async def handle_describe_groups(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    m = kio_api.module(DESCRIBE_GROUPS, version)
    described = []
    for gid in request.groups:
        error, found = co.NONE, ("Dead", "", "", ())
        g = svc.co.group(gid)
        if not _valid_group(gid):
            error = co.INVALID_GROUP_ID
        elif g is not None and g.members:
            found = _describe_network(m, g)
        else:
            try:
                if gid in list_groups(broker.data_dir):
                    found = _describe_embedded(m, broker, gid)
            except LogqError as e:
                log.warning("describing group %s: %s", gid, e)
                error = COORDINATOR_NOT_AVAILABLE
        state, ptype, pdata, members = found
        described.append(
            kio_api.make(
                m.DescribedGroup,
                error_code=kio_api.error(error),
                group_id=gid,
                group_state=state,
                protocol_type=ptype,
                protocol_data=pdata,
                members=members,
                authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
            )
        )
    return kio_api.make(m.DescribeGroupsResponse, throttle_time=kio_api.millis(0), groups=tuple(described))


# ----------------------------------------------------------------------------- DeleteGroups


def _delete_group(broker: Broker, svc: GroupService, group_id: str) -> int:
    if not _valid_group(group_id):
        return co.INVALID_GROUP_ID
    g = svc.co.group(group_id)
    if g is not None and (g.members or g.pending):
        return NON_EMPTY_GROUP
    svc.forget(group_id)
    try:
        with Admin(broker.data_dir) as admin:
            admin.delete_group(group_id)
    except UnknownGroupError:
        return GROUP_ID_NOT_FOUND
    except GroupNotEmptyError:
        return NON_EMPTY_GROUP
    except LogqError as e:
        log.warning("deleting group %s: %s", group_id, e)
        return COORDINATOR_NOT_AVAILABLE
    log.info("deleted group %s", group_id)
    return co.NONE


async def handle_delete_groups(broker: Broker, session: Session, version: int, request: Any) -> Any:
    svc = service(broker)
    m = kio_api.module(DELETE_GROUPS, version)
    results = tuple(
        kio_api.make(m.DeletableGroupResult, group_id=gid, error_code=kio_api.error(_delete_group(broker, svc, gid)))
        for gid in request.groups_names
    )
    return kio_api.make(m.DeleteGroupsResponse, throttle_time=kio_api.millis(0), results=results)
