"""Fixtures of the asyncio client tests: every test runs on asyncio's own loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from logq import Admin

Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a coroutine to completion on a new event loop of the parametrized kind."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (it is in the test extras)")
        factory = uvloop.new_event_loop

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)

    return runner


@pytest.fixture
def data(tmp_path: Path) -> str:
    """A data directory with topic "t" of 3 partitions."""
    root = str(tmp_path / "data")
    with Admin(root) as admin:
        admin.create_topic("t", partitions=3)
    return root
