"""Consumer-group APIs of `logq serve` (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups). Being written."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[int, Any] = {}
VERSIONS: dict[int, tuple[int, int]] = {}
