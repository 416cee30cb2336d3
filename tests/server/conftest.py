"""Fixtures of the `logq serve` tests: a server on a free loopback port, in this process.

``server`` is a started ``logq.Server(root, port=0)`` (stopped after the test);
``bootstrap`` is its ``host:port`` for clients. Raw-protocol helpers live in
tests/server/wire.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from logq import Server


@pytest.fixture
def server(root: str) -> Iterator[Server]:
    with Server(root, port=0) as s:
        yield s


@pytest.fixture
def bootstrap(server: Server) -> str:
    return f"127.0.0.1:{server.port}"
