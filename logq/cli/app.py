"""The ``logq`` command line: a thin click layer over the library.

Each command parses its options and calls one function of the module that implements it;
errors and exit codes are handled once, in :class:`logq.cli.options.LogqGroup` (whose
subclass KafkaAliasGroup first rewrites Kafka's tool spellings, cli/kafka_aliases.py). The
command families: topics (cli/topics.py); produce and consume (cli/console.py); groups, offsets, seek and
repair (cli/groups.py); share groups (cli/share.py); dump (here, over cli/dump.py); perf (cli/perf.py). Every command
and option is documented in docs/cli.md (tests/cli/test_cli_docs.py checks it).
"""

from __future__ import annotations

import os

import click

from logq.cli import dump as _dump
from logq.cli.console import COMMANDS as _CONSOLE_COMMANDS
from logq.cli.groups import COMMANDS as _GROUP_COMMANDS
from logq.cli.kafka_aliases import KafkaAliasGroup
from logq.cli.options import (
    EXIT_USAGE,
    CliState,
    TerminalProgress,
    data_option,
    fail,
    json_option,
    pass_state,
    shared_read_option,
)
from logq.cli.perf import perf_group
from logq.cli.serve import COMMANDS as _SERVE_COMMANDS
from logq.cli.serve_users import COMMANDS as _SERVE_USERS_COMMANDS
from logq.cli.share import COMMANDS as _SHARE_COMMANDS
from logq.cli.topics import COMMANDS as _TOPIC_COMMANDS
from logq.client.admin import Admin
from logq.codec.batch import BATCH_OVERHEAD, describe_implementation
from logq.errors import DumpArgumentError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(cls=KafkaAliasGroup, context_settings=CONTEXT_SETTINGS)
@data_option
@shared_read_option
@click.version_option(
    package_name="logq",
    prog_name="logq",
    message="%(prog)s, version %(version)s\ncodec: " + describe_implementation().replace("%", "%%"),
)
@click.pass_context
def main(ctx: click.Context, data_dir: str, shared_read: str | None) -> None:
    """logq: an embedded, Kafka-format append-only event log."""
    ctx.obj = CliState(data_dir=data_dir, shared_read=shared_read)
    if shared_read is not None and os.path.isdir(data_dir):
        Admin(data_dir, shared_read=shared_read).close()  # applied once, to what is there


@main.command("dump")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--deep", is_flag=True, help="Also print one line per record ('| offset: ...').")
@click.option("--print-data", is_flag=True, help="Also print each record's key and payload (implies --deep).")
@click.option(
    "--verify-index",
    is_flag=True,
    help="Check every .index/.timeindex entry against the segment's .log and report mismatches.",
)
@json_option
@click.option(
    "--max-batch-bytes",
    type=click.IntRange(min=BATCH_OVERHEAD + 1),
    default=_dump.DEFAULT_MAX_BATCH_BYTES,
    show_default=True,
    metavar="BYTES",
    help="A batch claiming to be larger is treated as corruption (bounds memory).",
)
@pass_state
def dump_command(
    state: CliState,
    paths: tuple[str, ...],
    deep: bool,
    print_data: bool,
    verify_index: bool,
    as_json: bool,
    max_batch_bytes: int,
) -> None:
    """Print the batches, records and index entries of segment files, like kafka-dump-log.

    PATH is a .log, .index or .timeindex file, or a partition directory (all its segment
    files in order); a relative PATH not found is also looked up under --data. Exit status:
    0 all good, 1 corruption or index mismatch found, 2 usage error or missing file.
    """
    progress = TerminalProgress() if TerminalProgress.enabled() else None
    options = _dump.DumpOptions(
        deep=deep,
        print_data=print_data,
        verify_index=verify_index,
        max_batch_bytes=max_batch_bytes,
        progress=progress,
    )

    try:
        status = _dump.run_dump(paths, options, click.echo, as_json=as_json, data_dir=state.data_dir)
    except DumpArgumentError as e:
        fail(str(e), EXIT_USAGE)
    finally:
        if progress is not None:
            progress.clear()
    click.get_current_context().exit(status)


for _command in _TOPIC_COMMANDS + _CONSOLE_COMMANDS + _GROUP_COMMANDS + _SERVE_COMMANDS + _SERVE_USERS_COMMANDS:
    main.add_command(_command)
for _command in _SHARE_COMMANDS:
    main.add_command(_command)


main.add_command(perf_group)
