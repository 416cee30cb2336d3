"""The group, offset and repair commands of ``logq``, modelled on Kafka's tools.

=====================  ==============================================================
command                Kafka counterpart
=====================  ==============================================================
``logq groups ...``    kafka-consumer-groups --list / --describe / --delete
``logq offsets``       kafka-get-offsets
``logq seek``          kafka-consumer-groups --reset-offsets (planning: logq/cli/seek.py)
``logq repair``        (none: Kafka cuts damage itself; logq asks first)
=====================  ==============================================================

Every command goes through :class:`logq.client.admin.Admin` (offsets, the group-must-be-
empty rule of a reset, the repair scan and cut); shared helpers (warning routing, tables,
partition checks) come from logq/cli/options.py.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable

import click

from logq.cli import seek as _seek
from logq.cli.options import (
    EXIT_PROBLEMS,
    EXIT_USAGE,
    CliState,
    check_partitions,
    existing_root,
    fail,
    json_option,
    partition_count,
    pass_state,
    routed,
    table,
    warn,
)
from logq.client.admin import Admin, GroupInfo
from logq.errors import SeekError

__all__ = ["COMMANDS"]


# ----------------------------------------------------------------------------- groups


@click.group("groups")
def groups_group() -> None:
    """List, describe and delete consumer groups, like kafka-consumer-groups."""


@groups_group.command("list")
@pass_state
@routed
def groups_list(state: CliState) -> None:
    """Print the group names, one a line."""
    with Admin(existing_root(state)) as admin:
        for name in admin.list_groups():
            click.echo(name)


GROUP_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID")
MEMBER_COLUMNS = ("GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "PID", "#PARTITIONS", "ASSIGNMENT")
STATE_COLUMNS = ("GROUP", "ASSIGNMENT-STRATEGY", "STATE", "GENERATION", "#MEMBERS")


def _assignment_text(tps: tuple[tuple[str, int], ...]) -> str:
    """``orders(0,2),other(0)``: kafka-consumer-groups' ASSIGNMENT column; ``-`` for none."""
    by_topic: dict[str, list[int]] = {}
    for topic, p in tps:
        by_topic.setdefault(topic, []).append(p)
    return ",".join(f"{t}({','.join(map(str, sorted(ps)))})" for t, ps in sorted(by_topic.items())) or "-"


def _offsets_view(group: str, info: GroupInfo, as_json: bool) -> None:
    if as_json:
        for r in info.partitions:
            click.echo(
                json.dumps(
                    {
                        "group": group,
                        "topic": r.topic,
                        "partition": r.partition,
                        "currentOffset": r.committed,
                        "logEndOffset": r.log_end_offset,
                        "lag": r.lag,
                        "consumerId": r.consumer_id,
                    }
                )
            )
        return
    rows = [(group, r.topic, r.partition, r.committed, r.log_end_offset, r.lag, r.consumer_id) for r in info.partitions]
    for line in table(GROUP_COLUMNS, rows):
        click.echo(line)


def _members_view(group: str, info: GroupInfo, as_json: bool) -> None:
    here = socket.gethostname()  # an embedded member runs on this host; a network one where logq serve saw it
    if as_json:
        for m in info.member_details:
            obj = {
                "group": group,
                "consumerId": m.member_id,
                "host": m.host or here,
                "clientId": m.client_id,
                "pid": m.pid,
                "partitions": len(m.assignment),
                "assignment": [[t, p] for t, p in m.assignment],
            }
            click.echo(json.dumps(obj))
        return
    rows = [
        (group, m.member_id, m.host or here, m.client_id, m.pid, len(m.assignment), _assignment_text(m.assignment))
        for m in info.member_details
    ]
    for line in table(MEMBER_COLUMNS, rows):
        click.echo(line)


def _state_view(group: str, info: GroupInfo, as_json: bool) -> None:
    if as_json:
        obj = {
            "group": group,
            "assignmentStrategy": info.assignor,
            "state": info.state,
            "generation": info.generation,
            "members": len(info.members),
        }
        click.echo(json.dumps(obj))
        return
    for line in table(STATE_COLUMNS, [(group, info.assignor, info.state, info.generation, len(info.members))]):
        click.echo(line)


@groups_group.command("describe")
@click.argument("group")
@click.option("--offsets", is_flag=True, help="Per partition: offsets, lag, owner (the default).")
@click.option("--members", is_flag=True, help="Per live member: pid and assigned partitions.")
@click.option("--state", "state_view", is_flag=True, help="The group: state, assignor, generation, member count.")
@json_option
@pass_state
@routed
def groups_describe(state: CliState, group: str, offsets: bool, members: bool, state_view: bool, as_json: bool) -> None:
    """Describe GROUP like kafka-consumer-groups --describe: its offsets (default), members or state."""
    if offsets + members + state_view > 1:
        raise click.UsageError("give only one of --offsets, --members, --state")
    view = "members" if members else "state" if state_view else "offsets"
    with Admin(existing_root(state)) as admin:
        info = admin.describe_group(group)
    if info.state == "Dead":
        fail(f"consumer group {group!r} does not exist")
    for problem in info.problems:
        warn(problem)
    if not info.members and view != "state":
        warn(f"consumer group {group!r} has no active members")
    {"offsets": _offsets_view, "members": _members_view, "state": _state_view}[view](group, info, as_json)


@groups_group.command("delete")
@click.argument("group")
@pass_state
@routed
def groups_delete(state: CliState, group: str) -> None:
    """Delete GROUP and its committed offsets; refused while it has live members."""
    with Admin(existing_root(state)) as admin:
        admin.delete_group(group)
    click.echo(f"Deleted consumer group {group}.")


# ----------------------------------------------------------------------------- offsets

TimeSpec = str | int  # "earliest", "latest" or epoch milliseconds


def _parse_time(ctx: click.Context, param: click.Parameter, value: str) -> TimeSpec:
    text = value.strip()
    low = text.lower()
    if low in ("earliest", "-2"):
        return "earliest"
    if low in ("latest", "-1"):
        return "latest"
    if re.fullmatch(r"[0-9]{1,18}", text):
        return int(text)
    try:
        return _seek.parse_datetime_ms(text)
    except SeekError as e:
        raise click.BadParameter(
            f"{e.message}; expected earliest, latest, milliseconds since the epoch or an ISO datetime"
        ) from None


def _parse_partitions(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return _seek.parse_partition_list(value, value)
    except SeekError as e:
        raise click.BadParameter(e.message) from None


@click.command("offsets")
@click.argument("topic")
@click.option(
    "--time",
    "when",
    default="latest",
    show_default=True,
    callback=_parse_time,
    metavar="TIME",
    help="earliest (-2), latest (-1), epoch milliseconds, or an ISO datetime (UTC when no zone).",
)
@click.option("--partitions", callback=_parse_partitions, metavar="P,P,...", help="Only these partitions.")
@pass_state
@routed
def offsets_command(state: CliState, topic: str, when: TimeSpec, partitions: tuple[int, ...] | None) -> None:
    """Print topic:partition:offset per partition for a time, like kafka-get-offsets."""
    with Admin(existing_root(state)) as admin:
        count = partition_count(admin, topic)
        parts = sorted(partitions) if partitions is not None else list(range(count))
        check_partitions(topic, count, parts)
        for p in parts:
            if when == "earliest":
                found: int | None = admin.log_offsets(topic, p)[0]
            elif when == "latest":
                found = admin.log_offsets(topic, p)[1]
            else:
                assert isinstance(when, int)
                found = admin.offset_for_time(topic, p, when)
            click.echo(f"{topic}:{p}:{'' if found is None else found}")


# ----------------------------------------------------------------------------- seek


def _scenario_value(parse: Callable[[str], int]) -> Callable[[click.Context, click.Parameter, str | None], int | None]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse(value)
        except SeekError as e:
            raise click.BadParameter(e.message) from None

    return callback


def _topic_specs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[_seek.TopicSpec]:
    try:
        return [_seek.parse_topic_spec(v) for v in value]
    except SeekError as e:
        raise click.BadParameter(e.message) from None


SEEK_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")


@click.command("seek")
@click.option("--group", required=True, metavar="GROUP", help="The group whose committed offsets to reset.")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    callback=_topic_specs,
    metavar="TOPIC[:P,P,...]",
    help="A topic, or some of its partitions; repeatable.",
)
@click.option("--all-topics", is_flag=True, help="Every partition the group has committed offsets for.")
@click.option("--to-earliest", is_flag=True, help="Reset to the log start offset.")
@click.option("--to-latest", is_flag=True, help="Reset to the log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="Reset to offset N (clamped to the log).")
@click.option("--shift-by", type=int, metavar="N", help="Committed offset + N (N may be negative; clamped).")
@click.option(
    "--to-datetime",
    callback=_scenario_value(_seek.parse_datetime_ms),
    metavar="DATETIME",
    help="First offset at or after YYYY-MM-DDTHH:mm:SS[.sss][zone] (UTC when no zone).",
)
@click.option(
    "--by-duration",
    callback=_scenario_value(_seek.parse_duration_ns),
    metavar="DURATION",
    help="First offset at or after now - DURATION (ISO-8601 PnDTnHnMnS).",
)
@click.option("--dry-run", is_flag=True, help="Only print the plan (the default).")
@click.option("--execute", is_flag=True, help="Apply the plan.")
@pass_state
@routed
def seek_command(
    state: CliState,
    group: str,
    topics: list[_seek.TopicSpec],
    all_topics: bool,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    shift_by: int | None,
    to_datetime: int | None,
    by_duration: int | None,
    dry_run: bool,
    execute: bool,
) -> None:
    """Reset the committed offsets of a group, like kafka-consumer-groups --reset-offsets."""
    scenario = _one_scenario(
        ("--to-earliest", _seek.Scenario(_seek.TO_EARLIEST) if to_earliest else None),
        ("--to-latest", _seek.Scenario(_seek.TO_LATEST) if to_latest else None),
        ("--to-offset", None if to_offset is None else _seek.Scenario(_seek.TO_OFFSET, to_offset)),
        ("--shift-by", None if shift_by is None else _seek.Scenario(_seek.SHIFT_BY, shift_by)),
        ("--to-datetime", None if to_datetime is None else _seek.Scenario(_seek.TO_DATETIME, to_datetime)),
        ("--by-duration", None if by_duration is None else _seek.Scenario(_seek.BY_DURATION, by_duration)),
    )
    if dry_run and execute:
        raise click.UsageError("give either --dry-run or --execute, not both")
    if all_topics and topics:
        raise click.UsageError("give either --topic or --all-topics, not both")
    if not all_topics and not topics:
        raise click.UsageError("one of --topic or --all-topics is required")
    now_ns = time.time_ns()

    with Admin(existing_root(state)) as admin:
        admin.check_group_empty(group)
        plan = _plan(admin, group, scenario, topics, all_topics, now_ns)
        if not plan.rows:
            warn(f"nothing to reset: no partition is in scope for group {group!r}")
        for line in table(SEEK_COLUMNS, [tuple(r) for r in plan.rows]):
            click.echo(line)
        if execute:
            if plan.rows:
                admin.reset_offsets(group, plan.offsets())
            click.echo(f"Reset the offsets of {len(plan.rows)} partition(s) of group {group}.", err=True)
        else:
            click.echo("Dry run: nothing was changed (add --execute to apply this plan).", err=True)


def _one_scenario(*flags: tuple[str, _seek.Scenario | None]) -> _seek.Scenario:
    """The one reset scenario given; a usage error when none or several are."""
    chosen = [(flag, scenario) for flag, scenario in flags if scenario is not None]
    all_flags = ", ".join(flag for flag, _ in flags)
    if not chosen:
        raise click.UsageError(f"one of {all_flags} is required")
    if len(chosen) > 1:
        raise click.UsageError(f"give only one of {all_flags} (got {', '.join(f for f, _ in chosen)})")
    return chosen[0][1]


def _plan(
    admin: Admin, group: str, scenario: _seek.Scenario, topics: list[_seek.TopicSpec], all_topics: bool, now_ns: int
) -> _seek.Plan:
    """The reset plan of ``group``; its notes and warnings are printed as warnings."""
    committed = admin.committed_offsets(group)
    partitions_of = {t: partition_count(admin, t) for t in admin.list_topics()}
    try:
        scope, notes = _seek.resolve_scope(topics, all_topics, partitions_of, committed)
    except SeekError as e:
        fail(e.message, EXIT_USAGE)
    log_offsets = {tp: admin.log_offsets(*tp) for tp in scope}

    def lookup(tp: _seek.TP, ms: int) -> int | None:
        return admin.offset_for_time(tp[0], tp[1], ms)

    try:
        plan = _seek.plan_reset(group, scenario, scope, log_offsets, committed, lookup, now_ns)
    except SeekError as e:
        fail(e.message, EXIT_PROBLEMS)
    for note in notes + plan.warnings:
        warn(note)
    return plan


# ----------------------------------------------------------------------------- repair


@click.command("repair")
@click.argument("topic")
@click.option(
    "--partition",
    "partitions",
    type=click.IntRange(min=0),
    multiple=True,
    metavar="P",
    help="Repair only this partition; repeatable (default: all).",
)
@click.option("--execute", is_flag=True, help="Cut the damaged data; without it, only report.")
@pass_state
@routed
def repair_command(state: CliState, topic: str, partitions: tuple[int, ...], execute: bool) -> None:
    """Open each partition, report what recovery found, and with --execute cut damage.

    Damage below the recovery point (bytes that were durable once) is never cut silently:
    reads stop there with an error until this command runs with --execute, which cuts the
    partition at the first bad batch and deletes what follows it.
    """
    damaged = 0
    with Admin(existing_root(state)) as admin:
        count = partition_count(admin, topic)
        check_partitions(topic, count, partitions)
        for p in partitions or range(count):
            r = admin.repair_partition(topic, p, execute=execute)
            for name in r.stray_files:
                click.echo(f"{topic}-{p}: not a logq segment, set aside (offsets unaffected; remove it): {name}")
            if r.damage is None:
                click.echo(f"{topic}-{p}: ok")
                continue
            damaged += 1
            if not r.repaired:
                click.echo(f"{topic}-{p}: damaged: {r.damage}")
                continue
            click.echo(
                f"{topic}-{p}: repaired: cut {r.bytes_truncated} bytes, deleted {r.segments_deleted} segment(s); "
                f"log end offset {r.log_end_offset}"
            )
    if damaged and not execute:
        click.echo(f"{damaged} damaged partition(s); run again with --execute to cut the damage.", err=True)
        click.get_current_context().exit(1)


COMMANDS: list[click.Command] = [groups_group, offsets_command, seek_command, repair_command]
