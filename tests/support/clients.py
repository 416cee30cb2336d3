"""Small client-side helpers shared by the client, groups and CLI tests."""

from __future__ import annotations

from typing import Any

from logq import Admin


def make_topic(root: str, name: str = "t", partitions: int = 1, **config: Any) -> None:
    """Create topic ``name`` with ``partitions`` partitions (and topic config) under ``root``."""
    with Admin(root) as admin:
        admin.create_topic(name, partitions, **config)
