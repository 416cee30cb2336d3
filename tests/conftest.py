"""Test-wide settings and fixtures.

Under CI (``CI`` set, as .ci/run's environment does) hypothesis runs derandomized: the same
examples every run, so a landing never depends on a lucky draw. Locally it explores new random
examples each run; whatever it finds becomes an explicit regression test.

Fixtures shared by every folder:

- ``root``: a logq data directory (the ``root`` of Admin, Producer, Consumer; not created)
  under the test's tmp_path;
- ``no_fsync``: fsync/fdatasync become free (tests that emulate *process* crashes only);
- ``open_log``: open a PartitionLog with the tests' config; closed after the test.

Helpers that are plain functions live in ``tests.support`` (imported as ``tests.support.X``:
``tests`` is a package and pytest puts the repository root on sys.path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from logq.storage.log import PartitionLog

from tests.support import logs

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def root(tmp_path: Path) -> str:
    """Where a test's logq data directory goes (created by whatever opens it first)."""
    return str(tmp_path / "data")


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync and fdatasync do nothing (see tests.support.logs.skip_fsync)."""
    logs.skip_fsync(monkeypatch)


@pytest.fixture
def open_log() -> Iterator[Callable[..., PartitionLog]]:
    """``open_log(path, **config)``: a writer with the tests' config (nothing expires by time
    unless asked); every log it opened that the test left open is closed afterwards."""
    opened: list[PartitionLog] = []

    def _open(path: os.PathLike | str, **overrides: object) -> PartitionLog:
        log = logs.open_log(path, **overrides)
        opened.append(log)
        return log

    yield _open
    for log in reversed(opened):
        log.close()
