"""Shared plumbing of the ``logq`` command line: the group class, state, options, progress.

Every command gets the same error contract from :class:`LogqGroup`: a failure prints one
line ``logq: <message>`` on stderr and exits non-zero, never a traceback.

=====  ===================================================================
exit   meaning
=====  ===================================================================
0      success
1      the command ran and found a problem (corruption, mismatch), or a
       logq error (I/O, corrupt metadata, ...) stopped it
2      usage error: bad option or argument, missing file
=====  ===================================================================

A command reads the global options through :data:`pass_state`::

    @main.command("thing")
    @json_option
    @pass_state
    def thing(state: CliState, as_json: bool) -> None:
        ... state.data_dir ...
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import click

from logq.errors import LogqError

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "CliError",
    "CliState",
    "LogqGroup",
    "pass_state",
    "data_option",
    "json_option",
    "TerminalProgress",
]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
DEFAULT_DATA_DIR = "./logq-data"
DATA_ENV = "LOGQ_DATA"
DEBUG_ENV = "LOGQ_DEBUG"  # set to 1 to see the traceback of an unexpected error

F = TypeVar("F", bound=Callable[..., Any])
# click >= 8.2 signals "no arguments, so the help was shown" with this UsageError subclass.
_NO_ARGS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class CliError(click.ClickException):
    """An error shown as the single line ``logq: <message>`` on stderr."""

    def __init__(self, message: str, exit_code: int = EXIT_PROBLEMS) -> None:
        super().__init__(message)
        # click declares exit_code a class attribute; each CliError carries its own
        object.__setattr__(self, "exit_code", exit_code)

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"logq: {self.format_message()}", file=file, err=file is None)


def _usage_line(e: click.UsageError) -> CliError:
    """A click usage error (normally usage + hint + message) as one line."""
    message = e.format_message().rstrip(".")
    if e.ctx is not None:
        message += f" (see '{e.ctx.command_path} --help')"
    return CliError(message, EXIT_USAGE)


class LogqGroup(click.Group):
    """The one place where exceptions become ``logq: <message>`` and an exit status.

    Parse errors of the group itself surface in :meth:`make_context`; everything under it
    (sub-command parsing, nested groups, command bodies) runs inside :meth:`invoke`.
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as e:
            raise _usage_line(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CliError, click.exceptions.Exit, click.Abort):
            raise
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as e:
            raise _usage_line(e) from None
        except click.ClickException as e:
            raise CliError(e.format_message(), e.exit_code) from None
        except LogqError as e:
            raise CliError(str(e), EXIT_PROBLEMS) from None
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise  # click's main exits quietly when the reader of stdout went away
            raise CliError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), EXIT_PROBLEMS) from None
        except Exception as e:
            if os.environ.get(DEBUG_ENV):
                raise
            raise CliError(
                f"internal error: {type(e).__name__}: {e} (set {DEBUG_ENV}=1 for the traceback)", EXIT_PROBLEMS
            ) from None


@dataclass
class CliState:
    """Global options, stored as ``ctx.obj`` by the ``logq`` group for every command."""

    data_dir: str = DEFAULT_DATA_DIR


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


def json_option(f: F) -> F:
    """``--json``: one JSON object per line on stdout, for scripts."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON object per line instead of text (for scripts).",
    )(f)


class TerminalProgress:
    """Progress callback ``(path, done, total)`` drawing one overwritten line on stderr.

    Silent for the first ``delay_s`` of each file (small files never show it) and redrawn at
    most every ``interval_s``. :meth:`enabled` says whether to use it at all: only when
    stderr is a terminal and stdout is not the same terminal (else the line would tear
    the report).
    """

    def __init__(self, stream: IO[str] | None = None, delay_s: float = 0.5, interval_s: float = 0.2) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._delay_s = delay_s
        self._interval_s = interval_s
        self._path = ""
        self._started = 0.0
        self._drawn = 0.0
        self._visible = False

    @staticmethod
    def enabled(stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> bool:
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        return _isatty(err) and not _isatty(out)

    def __call__(self, path: str, done: int, total: int) -> None:
        now = time.monotonic()
        if path != self._path:
            self._path, self._started, self._drawn = path, now, 0.0
        if now - self._started < self._delay_s or now - self._drawn < self._interval_s:
            return
        self._drawn = now
        pct = 100.0 * done / total if total else 100.0
        mib = 1024 * 1024
        self._stream.write(f"\r\x1b[K{os.path.basename(path)}: {pct:5.1f}% ({done / mib:.1f} of {total / mib:.1f} MiB)")
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
