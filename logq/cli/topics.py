"""The topic commands of ``logq``, modelled on kafka-topics and kafka-delete-records.

=========================  ==========================================================
command                    Kafka counterpart
=========================  ==========================================================
``logq topics create``     kafka-topics --create
``logq topics list``       kafka-topics --list
``logq topics describe``   kafka-topics --describe
``logq topics alter``      kafka-topics --alter --partitions, kafka-configs --alter
``logq topics delete``     kafka-topics --delete
``logq topics ...``        repair, delete-records (kafka-delete-records), enforce-retention
=========================  ==========================================================

produce and consume live in logq/cli/console.py; groups, offsets, seek and repair in
logq/cli/groups.py. Each command parses its options, calls :class:`Admin` and prints;
errors are turned into one ``logq: <message>`` line by :class:`logq.cli.options.LogqGroup`.
Warnings go to stderr as ``logq: warning: <message>`` lines. :data:`COMMANDS` lists what
``logq.cli`` registers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

import click

from logq.cli.options import (
    CliState,
    bad_parameter,
    check_partitions,
    existing_root,
    json_option,
    parse_key_values,
    partition_count,
    pass_state,
    routed,
)
from logq.client.admin import Admin, TopicDescription
from logq.config import LogConfig
from logq.errors import ConfigError, TopicExistsError
from logq.storage.topics import MAX_PARTITIONS, validate_topic

__all__ = ["COMMANDS"]

_INT = re.compile(r"-?[0-9]+")

# ----------------------------------------------------------------------------- helpers


def _parse_config(items: Sequence[str]) -> dict[str, Any]:
    """``--config key=value`` -> LogConfig overrides (Kafka's dotted names accepted too)."""
    defaults = {f.name: f.default for f in dataclasses.fields(LogConfig)}
    out: dict[str, Any] = {}
    for key, raw in parse_key_values(items, "--config"):
        name = key.strip().replace(".", "_")
        if name not in defaults:
            raise bad_parameter("--config", f"unknown setting {key!r} (known: {', '.join(sorted(defaults))})")
        if name in out:
            raise bad_parameter("--config", f"{name} is given twice")
        if isinstance(defaults[name], str):
            out[name] = raw
        elif _INT.fullmatch(raw.strip()):
            out[name] = int(raw.strip())
        else:
            raise bad_parameter("--config", f"{key}={raw!r}: the value must be an integer")
    try:
        LogConfig.from_dict(out)
    except ConfigError as e:
        raise bad_parameter("--config", e.message) from None
    return out


def _topic_json(desc: TopicDescription, overrides: dict[str, Any]) -> dict[str, Any]:
    """``topics describe --json``: Kafka's camelCase names, one object per topic."""
    partitions = [
        {
            "partition": p.partition,
            "startOffset": p.log_start_offset,
            "endOffset": p.log_end_offset,
            "size": p.size_bytes,
            "segments": p.segments,
        }
        for p in desc.partitions
    ]
    return {
        "topic": desc.name,
        "topicId": desc.topic_id,
        "partitionCount": len(desc.partitions),
        "records": desc.records,
        "size": desc.size_bytes,
        "configs": overrides,
        "effectiveConfig": desc.config,
        "partitions": partitions,
    }


# ----------------------------------------------------------------------------- topics


@click.group("topics")
def topics_group() -> None:
    """Create, list, describe, alter, delete and repair topics, like kafka-topics."""


@topics_group.command("create")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=1,
    show_default=True,
    metavar="N",
    help="Number of partitions.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A LogConfig setting (retention_ms=-1, segment_bytes=..., Kafka's retention.ms too); repeatable.",
)
@click.option(
    "--if-not-exists", is_flag=True, help="A topic that already exists is not an error (it is left as it is)."
)
@pass_state
@routed
def topics_create(state: CliState, name: str, partitions: int, configs: tuple[str, ...], if_not_exists: bool) -> None:
    """Create topic NAME (and the data directory if needed)."""
    validate_topic(name)
    overrides = _parse_config(configs)
    with Admin(state.data_dir, shared_read=state.shared_read) as admin:
        try:
            admin.create_topic(name, partitions, **overrides)
        except TopicExistsError:
            if not if_not_exists:
                raise
            click.echo(f"Topic {name} already exists.")
            return
    click.echo(f"Created topic {name} with {partitions} partition(s).")


@topics_group.command("list")
@pass_state
@routed
def topics_list(state: CliState) -> None:
    """Print the topic names, one a line."""
    with Admin(existing_root(state)) as admin:
        for name in admin.list_topics():
            click.echo(name)


@topics_group.command("describe")
@click.argument("name", required=False)
@json_option
@pass_state
@routed
def topics_describe(state: CliState, name: str | None, as_json: bool) -> None:
    """Per partition: start offset, end offset, size and segments; the config overrides."""
    with Admin(existing_root(state)) as admin:
        names = [name] if name is not None else admin.list_topics()
        for topic in names:
            desc = admin.describe_topic(topic)
            overrides = dict(admin.registry.get(topic).overrides)
            if as_json:
                click.echo(json.dumps(_topic_json(desc, overrides)))
                continue
            configs = ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            click.echo(
                f"Topic: {desc.name}\tTopicId: {desc.topic_id}\tPartitionCount: {len(desc.partitions)}\t"
                f"Records: {desc.records}\t"
                f"Size: {desc.size_bytes}\tConfigs: {configs}"
            )
            for p in desc.partitions:
                click.echo(
                    f"\tTopic: {desc.name}\tPartition: {p.partition}\tStartOffset: {p.log_start_offset}\t"
                    f"EndOffset: {p.log_end_offset}\tSize: {p.size_bytes}\tSegments: {p.segments}"
                )


def _setting_names(items: Sequence[str]) -> tuple[str, ...]:
    """``--delete-config KEY`` names as LogConfig settings (Kafka's dotted names accepted)."""
    known = {f.name for f in dataclasses.fields(LogConfig)}
    out = []
    for key in items:
        name = key.strip().replace(".", "_")
        if name not in known:
            raise bad_parameter("--delete-config", f"unknown setting {key!r} (known: {', '.join(sorted(known))})")
        out.append(name)
    return tuple(out)


@topics_group.command("alter")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=None,
    metavar="N",
    help="Grow the topic to N partitions (only more than it has).",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a LogConfig setting (retention_ms=..., Kafka's retention.ms too); repeatable.",
)
@click.option(
    "--delete-config",
    "delete_configs",
    multiple=True,
    metavar="KEY",
    help="Remove a setting's override (back to the default); repeatable.",
)
@pass_state
@routed
def topics_alter(
    state: CliState, name: str, partitions: int | None, configs: tuple[str, ...], delete_configs: tuple[str, ...]
) -> None:
    """Add partitions to topic NAME and/or change its config, like kafka-topics --alter."""
    overrides = _parse_config(configs)
    deleted = _setting_names(delete_configs)
    both = set(overrides) & set(deleted)
    if both:
        raise click.UsageError(f"{', '.join(sorted(both))} is given to both --config and --delete-config")
    if partitions is None and not overrides and not deleted:
        raise click.UsageError("nothing to change: give --partitions, --config or --delete-config")
    with Admin(existing_root(state)) as admin:
        before = admin.registry.get(name, fresh=True).partitions
        # one rewrite of the metadata: partitions and config change together or not at all
        meta = admin.registry.alter(name, partitions=partitions, config=overrides, delete_config=deleted)
    if partitions is not None:
        click.echo(f"Topic {name}: {before} -> {meta.partitions} partition(s).")
    if overrides or deleted:
        configs_now = ",".join(f"{k}={v}" for k, v in sorted(meta.overrides.items()))
        click.echo(f"Topic {name}: configs now {configs_now or '(none: all defaults)'}.")


@topics_group.command("delete")
@click.argument("name")
@click.option("--if-exists", is_flag=True, help="A topic that does not exist is not an error.")
@pass_state
@routed
def topics_delete(state: CliState, name: str, if_exists: bool) -> None:
    """Delete topic NAME and all its data."""
    with Admin(existing_root(state)) as admin:
        if if_exists and not admin.registry.exists(validate_topic(name)):
            click.echo(f"Topic {name} does not exist.")
            return
        admin.delete_topic(name)
    click.echo(f"Deleted topic {name}.")


@topics_group.command("repair")
@click.argument("name")
@click.option(
    "--partitions",
    type=click.IntRange(1, MAX_PARTITIONS),
    default=None,
    metavar="N",
    help="Partition count to write (default: the highest partition directory + 1).",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config override to write again (a corrupt file's could not be read); repeatable.",
)
@pass_state
@routed
def topics_repair(state: CliState, name: str, partitions: int | None, configs: tuple[str, ...]) -> None:
    """Rewrite topic NAME's corrupt or lost metadata file from its partition directories.

    Missing partition directories are created empty; records are not touched. The topic id
    is the one committed offsets recorded (so they stay valid) when the groups agree on one.
    """
    validate_topic(name)
    overrides = _parse_config(configs)
    with Admin(existing_root(state)) as admin:
        r = admin.repair_topic(name, partitions, **overrides)
    for problem in r.problems:
        click.echo(f"{name}: {problem}")
    if r.rewritten or r.created_partitions:
        click.echo(f"Repaired topic {name}: {r.partitions} partition(s), topic id {r.topic_id}.")
    else:
        click.echo(f"Topic {name} is healthy: {r.partitions} partition(s), topic id {r.topic_id}.")


@topics_group.command("delete-records")
@click.argument("name")
@click.option("--partition", type=click.IntRange(min=0), required=True, metavar="P", help="The partition to purge.")
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    required=True,
    metavar="O",
    help="Delete the records before this offset (it becomes the log start offset).",
)
@pass_state
@routed
def topics_delete_records(state: CliState, name: str, partition: int, offset: int) -> None:
    """Purge the records of one partition below an offset, like kafka-delete-records."""
    with Admin(existing_root(state)) as admin:
        check_partitions(name, partition_count(admin, name), [partition])
        start = admin.delete_records(name, {partition: offset})[partition]
    click.echo(f"Deleted the records of {name}-{partition} before offset {offset}: low_watermark: {start}")


@topics_group.command("enforce-retention")
@click.argument("name", required=False)
@pass_state
@routed
def topics_enforce_retention(state: CliState, name: str | None) -> None:
    """Apply retention now to topic NAME (default: every topic)."""
    with Admin(existing_root(state)) as admin:
        deleted = admin.enforce_retention(name)
    for (topic, p), n in sorted(deleted.items()):
        click.echo(f"{topic}-{p}: deleted {n} segment(s)")


COMMANDS: list[click.Command] = [topics_group]
