"""The ``logq share`` commands: share groups (queues), like Kafka's kafka-share-groups tool.

====================================  =========================================================
command                               Kafka counterpart
====================================  =========================================================
``logq share list``                   kafka-share-groups --list
``logq share describe GROUP``         kafka-share-groups --describe (plus in-flight states,
                                      delivery counts, the oldest acquired record, dead letters)
``logq share reset-offsets GROUP``    kafka-share-groups --reset-offsets (refused while the
                                      group has live members, as Kafka does)
``logq share delete GROUP``           kafka-share-groups --delete
``logq share redrive --group G``      (none: KIP-1191 writes dead letters; this moves them back)
====================================  =========================================================

Every command calls one :class:`logq.client.admin.Admin` method (logq/client/share_admin.py).
"""

from __future__ import annotations

import json
from typing import Any

import click

from logq.cli.options import (
    EXIT_INTERRUPTED,
    CliState,
    existing_root,
    fail,
    json_option,
    pass_state,
    routed,
    table,
    warn,
)
from logq.cli.seek import TopicSpec, parse_topic_spec
from logq.client.admin import Admin
from logq.client.redrive import RedriveReport
from logq.client.share_admin import ShareGroupDescription
from logq.errors import SeekError

__all__ = ["COMMANDS"]

DESCRIBE_COLUMNS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "START-OFFSET",
    "END-OFFSET",
    "AVAILABLE",
    "ACQUIRED",
    "ACKNOWLEDGED",
    "ARCHIVED",
    "DELIVERY-COUNTS",
    "OLDEST-ACQUIRED",
)
DLQ_COLUMNS = ("GROUP", "DEAD-LETTER-TOPIC", "LETTERS", "NOT-REDRIVEN")
RESET_COLUMNS = ("GROUP", "TOPIC", "PARTITION", "START-OFFSET", "NEW-START-OFFSET")
REDRIVE_COLUMNS = ("DEAD-LETTER", "SOURCE", "REASON", "DELIVERIES")


@click.group("share")
def share_group() -> None:
    """Share groups (queues): list, describe, reset, delete, redrive dead letters."""


@share_group.command("list")
@pass_state
@routed
def share_list(state: CliState) -> None:
    """Print the share group names, one a line."""
    with Admin(existing_root(state)) as admin:
        for name in admin.list_share_groups():
            click.echo(name)


def _histogram(counts: dict[int, int]) -> str:
    """``1:3,2:1``: delivery count : records in flight with it; ``-`` for none."""
    return ",".join(f"{c}:{n}" for c, n in sorted(counts.items())) or "-"


def _describe_json(group: str, d: ShareGroupDescription) -> None:
    for p in d.info.partitions:
        oldest = p.oldest_acquired
        obj: dict[str, Any] = {
            "group": group,
            "topic": p.topic,
            "partition": p.partition,
            "startOffset": p.start_offset,
            "endOffset": p.end_offset,
            "states": p.states,
            "deliveryCounts": {str(c): n for c, n in sorted(p.delivery_counts.items())},
            "archivedByReason": p.archived_by_reason,
            "oldestAcquired": None
            if oldest is None
            else {"offset": oldest[0], "member": oldest[1], "lockDeadlineMs": oldest[2]},
            "expiredLocks": p.expired_locks,
            "deadHolders": p.dead_holders,
            "totals": p.totals,
        }
        click.echo(json.dumps(obj))
    for c in d.dead_letters:
        click.echo(json.dumps({"group": group, "deadLetterTopic": c.topic, "letters": c.letters, "pending": c.pending}))


def _describe_text(group: str, d: ShareGroupDescription) -> None:
    rows = []
    for p in d.info.partitions:
        oldest = p.oldest_acquired
        rows.append(
            (
                group,
                p.topic,
                p.partition,
                p.start_offset,
                p.end_offset,
                p.states.get("available", 0),
                p.states.get("acquired", 0),
                p.states.get("acknowledged", 0),
                p.states.get("archived", 0),
                _histogram(p.delivery_counts),
                None if oldest is None else f"{oldest[0]}@{oldest[1]}",
            )
        )
    for line in table(DESCRIBE_COLUMNS, rows):
        click.echo(line)
    if d.dead_letters:
        click.echo("")
        dl_rows = [(group, c.topic, c.letters, c.pending) for c in d.dead_letters]
        for line in table(DLQ_COLUMNS, dl_rows):
            click.echo(line)


@share_group.command("describe")
@click.argument("group")
@click.option("--no-dead-letters", is_flag=True, help="Do not read the dead-letter topics to count letters.")
@json_option
@pass_state
@routed
def share_describe(state: CliState, group: str, no_dead_letters: bool, as_json: bool) -> None:
    """Describe GROUP: per share-partition its start offset, in-flight records by state, the
    delivery-count histogram and the oldest acquired record; then its dead letters."""
    with Admin(existing_root(state)) as admin:
        d = admin.describe_share_group(group, dead_letters=not no_dead_letters)
    if not d.info.members:
        warn(f"share group {group!r} has no active members")
    for p in d.info.partitions:
        if p.expired_locks or p.dead_holders:
            warn(
                f"{p.topic}-{p.partition}: {p.expired_locks} expired lock(s), {p.dead_holders} dead holder(s) "
                "not reclaimed yet (the next operation of any member returns their records)"
            )
    (_describe_json if as_json else _describe_text)(group, d)


def _topic_spec(ctx: click.Context, param: click.Parameter, value: str) -> TopicSpec:
    try:
        return parse_topic_spec(value)
    except SeekError as e:
        raise click.BadParameter(e.message) from None


@share_group.command("reset-offsets")
@click.argument("group")
@click.option(
    "--topic",
    "spec",
    required=True,
    callback=_topic_spec,
    metavar="TOPIC[:P,P,...]",
    help="The topic, or some of its partitions.",
)
@click.option("--to-earliest", is_flag=True, help="Start at the log start offset.")
@click.option("--to-latest", is_flag=True, help="Start at the log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0), metavar="N", help="Start at offset N (within the log).")
@click.option("--dry-run", is_flag=True, help="Only print the plan (the default).")
@click.option("--execute", is_flag=True, help="Apply the plan (refused while the group has live members).")
@pass_state
@routed
def share_reset_offsets(
    state: CliState,
    group: str,
    spec: TopicSpec,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    dry_run: bool,
    execute: bool,
) -> None:
    """Start GROUP's share-partitions of a topic over, like kafka-share-groups --reset-offsets:
    in-flight records are dropped, records before the new start are not delivered again."""
    chosen = [
        v for v in ("earliest" if to_earliest else None, "latest" if to_latest else None, to_offset) if v is not None
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --to-earliest, --to-latest, --to-offset")
    if dry_run and execute:
        raise click.UsageError("give either --dry-run or --execute, not both")
    parts = None if spec.partitions is None else list(spec.partitions)
    with Admin(existing_root(state)) as admin:
        rows = admin.reset_share_offsets(group, spec.topic, chosen[0], parts, execute=execute)
    for line in table(RESET_COLUMNS, [(group, r.topic, r.partition, r.start_offset, r.new_offset) for r in rows]):
        click.echo(line)
    if execute:
        click.echo(f"Reset {len(rows)} share-partition(s) of group {group}.", err=True)
    else:
        click.echo("Dry run: nothing was changed (add --execute to apply this plan).", err=True)


def _redrive_output(reports: list[RedriveReport], dry_run: bool, as_json: bool) -> None:
    for rep in reports:
        for m in rep.missing:
            warn(
                f"{m.topic}-{m.partition}@{m.offset}: its source {m.source_topic}-{m.source_partition}"
                f"@{m.source_offset} is gone (topic deleted, or no copy and the record deleted): skipped"
            )
        if as_json:
            for x in rep.letters:
                obj = {
                    "deadLetterTopic": x.topic,
                    "partition": x.partition,
                    "offset": x.offset,
                    "topic": x.source_topic,
                    "sourcePartition": x.source_partition,
                    "sourceOffset": x.source_offset,
                    "reason": x.reason,
                    "deliveryCount": x.delivery_count,
                    "dryRun": dry_run,
                }
                click.echo(json.dumps(obj))
        elif dry_run:
            rows = [
                (
                    f"{x.topic}-{x.partition}@{x.offset}",
                    f"{x.source_topic}-{x.source_partition}@{x.source_offset}",
                    x.reason,
                    x.delivery_count,
                )
                for x in rep.letters
            ]
            for line in table(REDRIVE_COLUMNS, rows):
                click.echo(line)
        verb = "Would redrive" if dry_run else "Redrove"
        click.echo(
            f"{verb} {rep.redriven} dead letter(s) of group {rep.group} from {rep.dead_letter_topic}"
            f" ({rep.skipped} other record(s) skipped, {len(rep.missing)} missing).",
            err=True,
        )


@share_group.command("delete")
@click.argument("group")
@pass_state
@routed
def share_delete(state: CliState, group: str) -> None:
    """Delete GROUP's state, like kafka-share-groups --delete; refused while it has live members."""
    with Admin(existing_root(state)) as admin:
        admin.delete_share_group(group)
    click.echo(f"Deleted share group {group}.")


@share_group.command("redrive")
@click.option("--group", required=True, metavar="GROUP", help="The share group whose dead letters to move back.")
@click.option(
    "--dead-letter-topic",
    metavar="TOPIC",
    help="The dead-letter topic (default: every one the group's consumers wrote to).",
)
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Redrive at most N dead letters.")
@click.option("--dry-run", is_flag=True, help="List the dead letters that would be redriven; change nothing.")
@json_option
@pass_state
@routed
def share_redrive(
    state: CliState, group: str, dead_letter_topic: str | None, limit: int | None, dry_run: bool, as_json: bool
) -> None:
    """Move GROUP's dead letters back to their source topics (without the __dlq.* headers),
    each once: a redrive position is committed after the records are written."""
    with Admin(existing_root(state)) as admin:
        try:
            reports = admin.redrive(group, dead_letter_topic, limit=limit, dry_run=dry_run)
        except KeyboardInterrupt:
            fail("interrupted: the letters redriven so far stay redriven; run again to go on", EXIT_INTERRUPTED)
    _redrive_output(reports, dry_run, as_json)


COMMANDS: list[click.Command] = [share_group]
