"""The group, offset and repair commands of ``logq``, modelled on Kafka's tools.

=====================  ==============================================================
command                Kafka counterpart
=====================  ==============================================================
``logq groups ...``    kafka-consumer-groups --list / --describe
``logq offsets``       kafka-get-offsets
``logq seek``          kafka-consumer-groups --reset-offsets (planning: logq/_seek.py)
``logq repair``        (none: Kafka cuts damage itself; logq asks first)
=====================  ==============================================================

Shared helpers (error routing, tables, partition checks) come from logq/_cli_admin.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import click

from logq.cli import seek as _seek
from logq.cli.admin import TP, _check_partitions, _existing_root, _partition_count, _routed, _table, _warn
from logq.cli.options import EXIT_PROBLEMS, EXIT_USAGE, CliError, CliState, json_option, pass_state
from logq.client.admin import Admin
from logq.errors import GroupNotEmptyError
from logq.groups.member import group_dir, live_member_ids
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_path

__all__ = ["COMMANDS"]


# ----------------------------------------------------------------------------- groups


@click.group("groups")
def groups_group() -> None:
    """List and describe consumer groups, like kafka-consumer-groups."""


@groups_group.command("list")
@pass_state
@_routed
def groups_list(state: CliState) -> None:
    """Print the group names, one a line."""
    with Admin(_existing_root(state)) as admin:
        for name in admin.list_groups():
            click.echo(name)


GROUP_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID")


@groups_group.command("describe")
@click.argument("group")
@json_option
@pass_state
@_routed
def groups_describe(state: CliState, group: str, as_json: bool) -> None:
    """Committed offset, log end offset, lag and owner of each partition of GROUP."""
    with Admin(_existing_root(state)) as admin:
        info = admin.describe_group(group)
    if info.state == "Dead":
        raise CliError(f"consumer group {group!r} does not exist")
    for problem in info.problems:
        _warn(problem)
    if not info.members:
        _warn(f"consumer group {group!r} has no active members")
    if as_json:
        for r in info.partitions:
            click.echo(json.dumps({
                "group": group, "topic": r.topic, "partition": r.partition, "currentOffset": r.committed,
                "logEndOffset": r.log_end_offset, "lag": r.lag, "consumerId": r.consumer_id,
            }))  # fmt: skip
        return
    rows = [(group, r.topic, r.partition, r.committed, r.log_end_offset, r.lag, r.consumer_id) for r in info.partitions]
    for line in _table(GROUP_COLUMNS, rows):
        click.echo(line)


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
    except _seek.SeekError as e:
        raise click.BadParameter(
            f"{e.message}; expected earliest, latest, milliseconds since the epoch or an ISO datetime"
        ) from None


def _parse_partitions(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return _seek.parse_partition_list(value, value)
    except _seek.SeekError as e:
        raise click.BadParameter(e.message) from None


@click.command("offsets")
@click.argument("topic")
@click.option(
    "--time", "when", default="latest", show_default=True, callback=_parse_time, metavar="TIME",
    help="earliest (-2), latest (-1), epoch milliseconds, or an ISO datetime (UTC when no zone).",
)  # fmt: skip
@click.option("--partitions", callback=_parse_partitions, metavar="P,P,...", help="Only these partitions.")
@pass_state
@_routed
def offsets_command(state: CliState, topic: str, when: TimeSpec, partitions: tuple[int, ...] | None) -> None:
    """Print topic:partition:offset per partition for a time, like kafka-get-offsets."""
    with Admin(_existing_root(state)) as admin:
        count = _partition_count(admin, topic)
        parts = sorted(partitions) if partitions is not None else list(range(count))
        _check_partitions(topic, count, parts)
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
        except _seek.SeekError as e:
            raise click.BadParameter(e.message) from None

    return callback


def _topic_specs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[_seek.TopicSpec]:
    try:
        return [_seek.parse_topic_spec(v) for v in value]
    except _seek.SeekError as e:
        raise click.BadParameter(e.message) from None


SEEK_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")


@click.command("seek")
@click.option("--group", required=True, metavar="GROUP", help="The group whose committed offsets to reset.")
@click.option(
    "--topic", "topics", multiple=True, callback=_topic_specs, metavar="TOPIC[:P,P,...]",
    help="A topic, or some of its partitions; repeatable.",
)  # fmt: skip
@click.option("--all-topics", is_flag=True, help="Every partition the group has committed offsets for.")
@click.option("--to-earliest", is_flag=True, help="Reset to the log start offset.")
@click.option("--to-latest", is_flag=True, help="Reset to the log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="Reset to offset N (clamped to the log).")
@click.option("--shift-by", type=int, metavar="N", help="Committed offset + N (N may be negative; clamped).")
@click.option(
    "--to-datetime", callback=_scenario_value(_seek.parse_datetime_ms), metavar="DATETIME",
    help="First offset at or after YYYY-MM-DDTHH:mm:SS[.sss][zone] (UTC when no zone).",
)  # fmt: skip
@click.option(
    "--by-duration", callback=_scenario_value(_seek.parse_duration_ns), metavar="DURATION",
    help="First offset at or after now - DURATION (ISO-8601 PnDTnHnMnS).",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only print the plan (the default).")
@click.option("--execute", is_flag=True, help="Apply the plan.")
@pass_state
@_routed
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
    chosen = [
        (flag, scenario)
        for flag, scenario in (
            ("--to-earliest", _seek.Scenario(_seek.TO_EARLIEST) if to_earliest else None),
            ("--to-latest", _seek.Scenario(_seek.TO_LATEST) if to_latest else None),
            ("--to-offset", None if to_offset is None else _seek.Scenario(_seek.TO_OFFSET, to_offset)),
            ("--shift-by", None if shift_by is None else _seek.Scenario(_seek.SHIFT_BY, shift_by)),
            ("--to-datetime", None if to_datetime is None else _seek.Scenario(_seek.TO_DATETIME, to_datetime)),
            ("--by-duration", None if by_duration is None else _seek.Scenario(_seek.BY_DURATION, by_duration)),
        )
        if scenario is not None
    ]
    all_flags = "--to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime, --by-duration"
    if not chosen:
        raise click.UsageError(f"one of {all_flags} is required")
    if len(chosen) > 1:
        raise click.UsageError(f"give only one of {all_flags} (got {', '.join(f for f, _ in chosen)})")
    if dry_run and execute:
        raise click.UsageError("give either --dry-run or --execute, not both")
    if all_topics and topics:
        raise click.UsageError("give either --topic or --all-topics, not both")
    if not all_topics and not topics:
        raise click.UsageError("one of --topic or --all-topics is required")
    scenario = chosen[0][1]
    assert scenario is not None
    now_ns = time.time_ns()

    with Admin(_existing_root(state)) as admin:
        live = live_member_ids(group_dir(admin.root, group))
        if live:
            raise GroupNotEmptyError(group, len(live))
        committed = admin.committed_offsets(group)
        partitions_of = {t: _partition_count(admin, t) for t in admin.list_topics()}
        try:
            scope, notes = _seek.resolve_scope(topics, all_topics, partitions_of, committed)
        except _seek.SeekError as e:
            raise CliError(e.message, EXIT_USAGE) from None
        log_offsets = {tp: admin.log_offsets(*tp) for tp in scope}

        def lookup(tp: TP, ms: int) -> int | None:
            return admin.offset_for_time(tp[0], tp[1], ms)

        try:
            plan = _seek.plan_reset(group, scenario, scope, log_offsets, committed, lookup, now_ns)
        except _seek.SeekError as e:
            raise CliError(e.message, EXIT_PROBLEMS) from None
        for note in notes + plan.warnings:
            _warn(note)
        if not plan.rows:
            _warn(f"nothing to reset: no partition is in scope for group {group!r}")
        for line in _table(SEEK_COLUMNS, [tuple(r) for r in plan.rows]):
            click.echo(line)
        if execute:
            if plan.rows:
                admin.reset_offsets(group, plan.offsets())
            click.echo(f"Reset the offsets of {len(plan.rows)} partition(s) of group {group}.", err=True)
        else:
            click.echo("Dry run: nothing was changed (add --execute to apply this plan).", err=True)


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
@_routed
def repair_command(state: CliState, topic: str, partitions: tuple[int, ...], execute: bool) -> None:
    """Open each partition, report what recovery found, and with --execute cut damage.

    Damage below the recovery point (bytes that were durable once) is never cut silently:
    reads stop there with an error until this command runs with --execute, which cuts the
    partition at the first bad batch and deletes what follows it.
    """
    root = _existing_root(state)
    with Admin(root) as admin:
        count = _partition_count(admin, topic)
        _check_partitions(topic, count, partitions)
        cfg = admin.topic_config(topic)
    damaged = 0
    for p in partitions or range(count):
        with PartitionLog(partition_path(root, topic, p), cfg, create=False) as lg:
            found = lg.report.corruption
        if found is None:
            click.echo(f"{topic}-{p}: ok")
            continue
        damaged += 1
        if not execute:
            click.echo(f"{topic}-{p}: damaged: {found}")
            continue
        with PartitionLog(partition_path(root, topic, p), cfg, create=False, repair=True) as lg:
            r = lg.report
            click.echo(
                f"{topic}-{p}: repaired: cut {r.bytes_truncated} bytes, deleted {r.segments_deleted} segment(s); log end offset {lg.log_end_offset}"
            )
    if damaged and not execute:
        click.echo(f"{damaged} damaged partition(s); run again with --execute to cut the damage.", err=True)
        click.get_current_context().exit(1)


COMMANDS: list[click.Command] = [groups_group, offsets_command, seek_command, repair_command]
