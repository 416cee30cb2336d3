"""Shared plumbing of the ``logq`` command line: errors, state, options, helpers, progress.

Every command gets the same error contract from :class:`LogqGroup`: a failure prints one
line ``logq: <message>`` on stderr and exits non-zero, never a traceback. A command that
finds a problem itself calls :func:`fail`; a logq error, an ``OSError`` or a click usage
error raised anywhere under the group is turned into the same line by the group.

=====  ===================================================================
exit   meaning
=====  ===================================================================
0      success
1      the command ran and found a problem (corruption, mismatch), or a
       logq error (I/O, corrupt metadata, ...) stopped it
2      usage error: bad option or argument, missing file
130    interrupted (Ctrl-C, SIGINT): one line ``logq: interrupted``, or a
       command's own summary line (consume), never a traceback or "Aborted!"
=====  ===================================================================

A command reads the global options through :data:`pass_state`::

    @main.command("thing")
    @json_option
    @pass_state
    def thing(state: CliState, as_json: bool) -> None:
        ... state.data_dir ...

The helpers every command family shares live here too: :func:`routed` (Python and
``logq`` log warnings become ``logq: warning: ...`` lines), :func:`existing_root`,
:func:`partition_count`, :func:`check_partitions`, :func:`bad_parameter`,
:func:`parse_key_values`, :func:`table`, and the one progress
line, :class:`TerminalProgress`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, NoReturn, TypeVar

import click

from logq.client.admin import Admin
from logq.config import SHARED_READ
from logq.errors import LogqError

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "fail",
    "CliState",
    "LogqGroup",
    "LogqCommand",
    "pass_state",
    "data_option",
    "shared_read_option",
    "json_option",
    "warn",
    "routed",
    "existing_root",
    "partition_count",
    "check_partitions",
    "bad_parameter",
    "parse_key_values",
    "table",
    "TerminalProgress",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
DEFAULT_DATA_DIR = "./logq-data"
DATA_ENV = "LOGQ_DATA"
SHARED_READ_ENV = "LOGQ_SHARED_READ"
DEBUG_ENV = "LOGQ_DEBUG"  # set to 1 to see the traceback of an unexpected error
MIB = 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])
# click >= 8.2 signals "no arguments, so the help was shown" with this UsageError subclass.
_NO_ARGS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


# ----------------------------------------------------------------------------- errors


def fail(message: str, exit_code: int = EXIT_PROBLEMS) -> NoReturn:
    """Print ``logq: <message>`` on stderr and leave the command with ``exit_code``.

    click's ``Exit`` unwinds the command (``finally`` blocks and context managers run) and
    click's main turns it into the exit status, so no exception class of our own is needed.
    """
    click.echo(f"logq: {message}", err=True)
    raise click.exceptions.Exit(exit_code)


def _usage_line(e: click.UsageError) -> str:
    """A click usage error (normally usage + hint + message) as one line."""
    message = e.format_message().rstrip(".")
    if e.ctx is not None:
        message += f" (see '{e.ctx.command_path} --help')"
    return message


class _OneLineErrors(click.Command):
    """The one place where exceptions become ``logq: <message>`` and an exit status.

    Parse errors of the command itself surface in :meth:`make_context`; everything under
    it (sub-command parsing, nested groups, command bodies) runs inside :meth:`invoke`.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as e:
            fail(_usage_line(e), EXIT_USAGE)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Before click's main turns it into "Aborted!" and exit 1. Whatever the command
            # had open was closed on the way here (a producer flushed what it accepted).
            fail("interrupted", EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.Abort):
            raise
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as e:
            fail(_usage_line(e), EXIT_USAGE)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except LogqError as e:
            fail(str(e), EXIT_PROBLEMS)
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # click's main exits quietly when the reader of stdout went away
            fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), EXIT_PROBLEMS)
        except Exception as e:
            if os.environ.get(DEBUG_ENV):
                raise
            fail(f"internal error: {type(e).__name__}: {e} (set {DEBUG_ENV}=1 for the traceback)", EXIT_PROBLEMS)


class LogqGroup(_OneLineErrors, click.Group):
    """The ``logq`` group: every command under it fails with one line (see the table above)."""


class LogqCommand(_OneLineErrors, click.Command):
    """A stand-alone command (a script outside the package) with the same error contract."""


# ----------------------------------------------------------------------------- state and options


@dataclass
class CliState:
    """Global options, stored as ``ctx.obj`` by the ``logq`` group for every command."""

    data_dir: str = DEFAULT_DATA_DIR
    shared_read: str | None = None  # --shared-read: applied by the logq group before the command


pass_state = click.make_pass_decorator(CliState, ensure=True)


def data_option(f: F) -> F:
    """``--data DIR``: the root directory holding ``<topic>-<partition>`` directories."""
    return click.option(
        "--data",
        "data_dir",
        metavar="DIR",
        default=DEFAULT_DATA_DIR,
        show_default=True,
        envvar=DATA_ENV,
        show_envvar=True,
        type=click.Path(file_okay=False),
        help="Root directory of the log data (holds <topic>-<partition> directories).",
    )(f)


def shared_read_option(f: F) -> F:
    """``--shared-read private|group``: who besides the owner may read the data directory."""
    return click.option(
        "--shared-read",
        "shared_read",
        type=click.Choice(SHARED_READ),
        default=None,
        envvar=SHARED_READ_ENV,
        show_envvar=True,
        help=(
            "Set who may read the data directory: 'private' (files 0600, directories 0700; a new "
            "one's default) or 'group' (0640/0750: its group may read); applied to existing files too."
        ),
    )(f)


def json_option(f: F) -> F:
    """``--json``: one JSON object per line on stdout, for scripts."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object per line instead of text (for scripts).",
    )(f)


# ----------------------------------------------------------------------------- shared helpers


def warn(message: str) -> None:
    """A ``logq: warning: <message>`` line on stderr (the command goes on)."""
    click.echo(f"logq: warning: {message}", err=True)


class _EchoHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            warn(record.getMessage())
        except Exception:  # never let a log line break the command
            self.handleError(record)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Python warnings and ``logq`` log warnings become ``logq: warning: ...`` lines."""
    logger = logging.getLogger("logq")
    handler = _EchoHandler(logging.WARNING)
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():

            def show(
                message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
            ) -> None:
                warn(str(message))

            warnings.showwarning = show
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def routed(f: F) -> F:
    """Run a command body with its warnings routed to stderr as ``logq: warning:`` lines."""

    @functools.wraps(f)
    def inner(*args: Any, **kwargs: Any) -> Any:
        with _warnings_to_stderr():
            return f(*args, **kwargs)

    return inner  # type: ignore[return-value]


def existing_root(state: CliState) -> str:
    """The data directory, which must exist (only `topics create` makes one)."""
    if not os.path.isdir(state.data_dir):
        fail(
            f"data directory {state.data_dir!r} does not exist (create a topic first with 'logq topics create', "
            "or pass --data DIR)"
        )
    return state.data_dir


def partition_count(admin: Admin, topic: str) -> int:
    """Partitions of ``topic``; an unknown topic is a logq error (one line, exit 1)."""
    return admin.registry.get(topic).partitions


def check_partitions(topic: str, count: int, partitions: Sequence[int]) -> None:
    """A usage error (exit 2) naming the first of ``partitions`` that ``topic`` lacks."""
    for p in partitions:
        if not 0 <= p < count:
            fail(f"topic {topic!r} has no partition {p} (it has {count}: 0-{count - 1})", EXIT_USAGE)


def bad_parameter(param: str, message: str) -> click.BadParameter:
    """A usage error (exit 2) about option ``param``: ``Invalid value for '--x': message``."""
    return click.BadParameter(message, param_hint=f"'{param}'")


def parse_key_values(items: Sequence[str], param: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` items of option ``param`` as pairs (split at the first ``=``; KEY not empty)."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise bad_parameter(param, f"{item!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Left-aligned columns separated by one space; None shows as '-'; no trailing blanks."""
    cells = [list(header)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return [" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


# ----------------------------------------------------------------------------- progress


class TerminalProgress:
    """One overwritten progress line on stderr, for the long runs of ``dump`` and ``perf``.

    Two ways to feed it:

    - as the callback ``(path, bytes done, file size)`` of ``dump``: one task per file,
      labelled with the file's name and counted in MiB;
    - through :meth:`update` (``perf``): ``label`` and ``total`` are plain attributes a
      long run may change between steps; counted in items (``unit_mib=False``).

    It draws only when its stream is a terminal, stays silent for the first ``delay_s`` of
    each task (short ones never show it) and redraws at most every ``interval_s``.
    :meth:`enabled` is the stricter test ``dump`` applies before making one: stderr is a
    terminal and stdout is not (else the line would tear the report on the same screen).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        delay_s: float = 0.5,
        interval_s: float = 0.2,
        *,
        label: str = "",
        total: int = 0,
        unit_mib: bool = True,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._on = _isatty(self._stream)
        self._delay_s = delay_s
        self._interval_s = interval_s
        self.label = label
        self.total = total
        self._unit_mib = unit_mib
        self._path = ""
        self._started = time.monotonic()
        self._drawn = 0.0
        self._visible = False

    @classmethod
    def counting(cls, label: str, total: int, stream: IO[str] | None = None, delay_s: float = 1.0) -> TerminalProgress:
        """A line ``label:  50.0% (50 of 100)`` for a run of ``total`` items."""
        return cls(stream, delay_s, label=label, total=max(total, 1), unit_mib=False)

    @staticmethod
    def enabled(stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> bool:
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        return _isatty(err) and not _isatty(out)

    def __call__(self, path: str, done: int, total: int) -> None:
        if path != self._path:  # a new file is a new task: its delay starts now
            self._path, self._started, self._drawn = path, time.monotonic(), 0.0
            self.label = os.path.basename(path)
        self.total = total
        self.update(done)

    def update(self, done: int) -> None:
        if not self._on:
            return
        now = time.monotonic()
        if now - self._started < self._delay_s or now - self._drawn < self._interval_s:
            return
        self._drawn = now
        total = self.total
        pct = 100.0 * done / total if total else 100.0
        if self._unit_mib:
            amount = f"{done / MIB:.1f} of {total / MIB:.1f} MiB"
        else:
            amount = f"{done:,} of {total:,}"
        self._stream.write(f"\r\x1b[K{self.label}: {pct:5.1f}% ({amount})")
        self._stream.flush()
        self._visible = True

    def clear(self) -> None:
        if self._visible:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._visible = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
