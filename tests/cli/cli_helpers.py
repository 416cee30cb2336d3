"""Running the `logq` CLI in tests: through click's CliRunner, with the one-line error contract
checked (a failed command prints nothing on stdout and one `logq: ` line on stderr)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from click.testing import CliRunner, Result
from logq.cli import main


def run(data: Path, *args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(main, ["--data", str(data), *args], input=input, catch_exceptions=False)


def ok(data: Path, *args: str, input: bytes | str | None = None) -> Result:
    res = run(data, *args, input=input)
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return res


def one_error_line(res: Result, exit_code: int | None = None) -> str:
    """A failed command: non-zero exit, nothing on stdout, exactly one `logq: ` line on stderr."""
    assert res.exit_code != 0
    if exit_code is not None:
        assert res.exit_code == exit_code, (res.exit_code, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("logq: ") and "Traceback" not in res.stderr
    return lines[0]


def warnings_of(res: Result) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("logq: warning: ")]


def parse_table(text: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of an aligned table; checks the header and that every cell starts under its header."""
    lines = text.splitlines()
    assert lines[0].split() == list(columns)
    starts = [lines[0].index(c) for c in columns]
    rows = []
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == len(columns), line
        assert [m.start() for m in re.finditer(r"\S+", line)] == starts, f"misaligned: {line!r}"
        rows.append(dict(zip(columns, cells)))
    return rows
