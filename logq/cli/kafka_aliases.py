"""Kafka's tool spellings, rewritten to logq's one documented spelling before click parses.

A Kafka user types ``logq topics --create --topic t --partitions 4`` (kafka-topics style);
:func:`rewrite` turns the argument list into ``logq topics create t --partitions 4`` and
click parses that, so every alias runs the same command, with the same checks and errors,
as its documented spelling. The table in docs/cli.md lists every alias.

=====================================================  =====================================
Kafka spelling                                         logq spelling
=====================================================  =====================================
``topics --create|--list|--describe|--delete|--alter``  ``topics create|list|describe|delete|alter``
``topics <sub> --topic T``                             ``topics <sub> T``
``topics --create ... --replication-factor 1``         (dropped: logq keeps one copy)
``groups --list|--describe|--delete``                  ``groups list|describe|delete``
``groups <sub> --group G``                             ``groups <sub> G``
``groups --reset-offsets ...``                         ``seek ...``
``produce|consume|offsets|repair --topic T``           ``produce|consume|offsets|repair T``
``produce --compression-codec [CODEC]``                ``produce --compression-type CODEC`` (gzip without one)
``--bootstrap-server HOST:PORT``                       an error: logq reads a data directory
=====================================================  =====================================

Only the Kafka form is rewritten: an argument list already in logq's spelling comes back
unchanged, and nothing after ``--`` is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from logq.cli.options import LogqGroup

__all__ = ["rewrite", "KafkaAliasGroup"]

_GLOBAL_WITH_VALUE = ("--data", "--shared-read")
_TOPIC_ACTIONS = {
    "--create": "create",
    "--list": "list",
    "--describe": "describe",
    "--delete": "delete",
    "--alter": "alter",
}
_GROUP_ACTIONS = {"--list": "list", "--describe": "describe", "--delete": "delete"}
# Sub-commands whose first argument is a topic (``--topic T`` becomes it) or a group.
_TOPIC_SUBS = {"create", "describe", "delete", "alter", "repair", "delete-records", "enforce-retention"}
_TOPIC_COMMANDS = {"produce", "consume", "offsets", "repair"}
_GROUP_SUBS = {"describe", "delete"}
_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")  # kafka-console-producer's --compression-codec values


def _take(args: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` (or ``flag=VALUE``) from ``args`` and return VALUE (None if absent)."""
    found: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if a == flag:
            if i + 1 >= len(args):
                raise click.UsageError(f"option '{flag}' requires an argument")
            if found is not None:
                raise click.UsageError(f"option '{flag}' is given twice")
            found = args[i + 1]
            del args[i : i + 2]
            continue
        if a.startswith(flag + "="):
            if found is not None:
                raise click.UsageError(f"option '{flag}' is given twice")
            found = a[len(flag) + 1 :]
            del args[i]
            continue
        i += 1
    return found


def _take_flags(args: list[str], table: dict[str, str]) -> list[str]:
    """Remove the flags of ``table`` from ``args`` (before any ``--``); their mapped names, in order."""
    out = []
    end = args.index("--") if "--" in args else len(args)
    for a in list(args[:end]):
        if a in table:
            out.append(table[a])
            args.remove(a)
    return out


def _positional(args: list[str], flag: str) -> list[str]:
    """``--topic T`` (or ``--group G``) out of ``args``, as the leading argument."""
    value = _take(args, flag)
    return args if value is None else [value, *args]


def _compression_codec(args: list[str]) -> list[str]:
    """kafka-console-producer's ``--compression-codec [CODEC]`` as ``--compression-type CODEC``.

    Its value is optional there (gzip without one): the next word is taken only if it names
    a codec, so ``--compression-codec --topic t`` and ``--compression-codec t`` mean gzip.
    """
    end = args.index("--") if "--" in args else len(args)
    for i, a in enumerate(args[:end]):
        if a.startswith("--compression-codec="):
            return [*args[:i], "--compression-type", a.split("=", 1)[1] or "gzip", *args[i + 1 :]]
        if a == "--compression-codec":
            if i + 1 < end and args[i + 1] in _CODECS:
                return [*args[:i], "--compression-type", *args[i + 1 :]]
            return [*args[:i], "--compression-type", "gzip", *args[i + 1 :]]
    return args


def _replication(args: list[str]) -> list[str]:
    factor = _take(args, "--replication-factor")
    if factor is not None and factor.strip() != "1":
        raise click.UsageError(
            f"--replication-factor {factor}: logq keeps one copy of each partition on this host; give 1 or leave it out"
        )
    return args


def _kafka_mode(rest: list[str], actions: dict[str, str], tool: str) -> str | None:
    """The one action flag of a kafka-topics / kafka-consumer-groups style call, if any."""
    found = _take_flags(rest, actions)
    if len(found) > 1:
        raise click.UsageError(f"give one of {', '.join(actions)} ({tool} style), not {len(found)}")
    return found[0] if found else None


def _topics(rest: list[str]) -> list[str]:
    if rest and not rest[0].startswith("-"):
        sub = rest[0]
        tail = rest[1:]
        if sub in _TOPIC_SUBS:
            tail = _positional(tail, "--topic")
        if sub == "create":
            tail = _replication(tail)
        return [sub, *tail]
    action = _kafka_mode(rest, _TOPIC_ACTIONS, "kafka-topics")
    if action is None:
        return rest  # `logq topics --help`, or a mistake click reports
    topic = _take(rest, "--topic")
    if action == "create":
        rest = _replication(rest)
    if action in ("create", "delete", "alter") and topic is None:
        raise click.UsageError(f"topics --{action} needs --topic NAME")
    return [action, *([topic] if topic is not None else []), *rest]


def _groups(rest: list[str]) -> tuple[str | None, list[str]]:
    """(a command replacing ``groups``, or None; the arguments after it)."""
    if rest and not rest[0].startswith("-"):
        sub, tail = rest[0], rest[1:]
        if sub in _GROUP_SUBS:
            tail = _positional(tail, "--group")
        return None, [sub, *tail]
    if "--reset-offsets" in rest[: rest.index("--") if "--" in rest else len(rest)]:
        rest.remove("--reset-offsets")
        return "seek", rest
    action = _kafka_mode(rest, _GROUP_ACTIONS, "kafka-consumer-groups")
    if action is None:
        return None, rest
    group = _take(rest, "--group")
    if action == "describe" and "--verbose" in rest:
        rest.remove("--verbose")  # --members always shows the assignment
    if action in ("describe", "delete") and group is None:
        raise click.UsageError(f"groups --{action} needs --group GROUP")
    return None, [action, *([group] if group is not None else []), *rest]


def _command_index(args: Sequence[str]) -> int:
    """Index of the command name in ``args`` (after the global options), or len(args)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in _GLOBAL_WITH_VALUE:
            i += 2
        elif a.startswith("-"):
            i += 1  # --data=DIR, --version, -h: click reports what is wrong
        else:
            return i
    return len(args)


def rewrite(args: Sequence[str], broker_hint: str = "") -> list[str]:
    """``args`` (the words after ``logq``) in logq's documented spelling; click.UsageError (one
    line, exit 2) for a Kafka spelling that cannot be mapped."""
    out = list(args)
    end = out.index("--") if "--" in out else len(out)
    for a in out[:end]:
        if a == "--bootstrap-server" or a.startswith("--bootstrap-server="):
            raise click.UsageError(
                "--bootstrap-server: logq reads a data directory, not a broker: use --data DIR"
                + (f" ({broker_hint})" if broker_hint else "")
            )
    i = _command_index(out)
    if i >= len(out):
        return out
    head, cmd, rest = out[:i], out[i], out[i + 1 :]
    if cmd == "topics":
        return [*head, cmd, *_topics(rest)]
    if cmd == "groups":
        replaced, tail = _groups(rest)
        return [*head, replaced or cmd, *tail]
    if cmd == "produce":
        rest = _compression_codec(rest)
    if cmd in _TOPIC_COMMANDS:
        return [*head, cmd, *_positional(rest, "--topic")]
    return out


class KafkaAliasGroup(LogqGroup):
    """The ``logq`` group: Kafka's spellings are rewritten (:func:`rewrite`) before parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            hint = "or run `logq serve` to give Kafka clients a broker" if "serve" in self.commands else ""
            try:
                args = rewrite(args, hint)
            except click.UsageError as e:
                e.ctx = ctx
                raise
        result: Any = super().parse_args(ctx, args)
        return list(result)
