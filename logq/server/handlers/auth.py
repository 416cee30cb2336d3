"""SASL APIs of `logq serve` (SaslHandshake, SaslAuthenticate). Being written."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[int, Any] = {}
VERSIONS: dict[int, tuple[int, int]] = {}
