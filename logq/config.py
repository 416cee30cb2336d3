"""Per-log settings. Names and defaults follow Kafka's topic configs, units in the names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from logq.codec.batch import BATCH_OVERHEAD
from logq.codec.compression import CODECS
from logq.errors import ConfigError

__all__ = ["LogConfig", "FSYNC_MODES", "SHARED_READ", "TOPIC_COMPRESSION_TYPES", "check_shared_read"]

FSYNC_MODES = ("never", "always", "interval")
# Who besides its owner may read a data directory (a data-directory setting, not a topic's:
# group and offsets files belong to no topic). "private": files 0600, directories 0700;
# "group": 0640 and 0750, read access for the directory's group (docs/durability.md).
SHARED_READ = ("private", "group")
# A topic's compression_type: Kafka's values. "producer" (the default) and "uncompressed"
# are Kafka's topic-level names; logq producers use a topic's codec when they set none.
TOPIC_COMPRESSION_TYPES = ("producer", "uncompressed", *CODECS)
_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1 << 30  # roll when the active segment would exceed this
    segment_ms: int = 7 * _DAY_MS  # roll when the segment's first record is older than this
    segment_index_bytes: int = 10 << 20  # max size of one .index / .timeindex file
    index_interval_bytes: int = 4096  # sparse index: an entry per this many log bytes
    max_batch_bytes: int = 1_048_588  # largest batch accepted (Kafka's max.message.bytes)
    retention_ms: int = 7 * _DAY_MS  # delete segments older than this; -1 keeps forever
    retention_bytes: int = -1  # keep at most this many bytes per partition; -1 = no limit
    retention_check_interval_ms: int = 300_000  # how often open writers apply retention (Kafka's default)
    fsync: str = "never"  # "never": page cache (survives kill -9); "always"; "interval"
    fsync_interval_ms: int = 1000  # background flush period when fsync == "interval"
    max_open_segments: int = 64  # sealed segments kept open at once (fds)
    max_decompressed_bytes: int = 16 << 20  # cap on one compressed batch's records
    open_timeout_ms: int = 60_000  # how long opening waits for another writer's recovery
    compression_type: str = "producer"  # codec of producers that set none (docs/guide.md, Producer)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: {rule}")

        for f in fields(self):
            if f.name not in ("fsync", "compression_type"):
                v = getattr(self, f.name)
                need(isinstance(v, int) and not isinstance(v, bool), f.name, "must be an integer")
        need(
            BATCH_OVERHEAD * 2 <= self.segment_bytes < 2**31,
            "segment_bytes",
            "between 122 and 2**31-1 (positions are int32)",
        )
        need(self.segment_ms > 0, "segment_ms", "must be positive")
        need(24 <= self.segment_index_bytes < 2**31, "segment_index_bytes", "between 24 and 2**31-1")
        need(self.index_interval_bytes >= 0, "index_interval_bytes", "must be >= 0")
        need(BATCH_OVERHEAD < self.max_batch_bytes < 2**31, "max_batch_bytes", "between 62 and 2**31-1")
        need(self.retention_ms >= -1, "retention_ms", "-1 (forever) or >= 0")
        need(self.retention_bytes >= -1, "retention_bytes", "-1 (no limit) or >= 0")
        need(self.retention_check_interval_ms > 0, "retention_check_interval_ms", "must be positive")
        need(self.fsync in FSYNC_MODES, "fsync", f"one of {', '.join(FSYNC_MODES)}")
        need(self.fsync_interval_ms > 0, "fsync_interval_ms", "must be positive")
        need(self.max_open_segments >= 1, "max_open_segments", "must be >= 1")
        need(self.max_decompressed_bytes >= 1024, "max_decompressed_bytes", "must be >= 1024")
        need(self.open_timeout_ms >= 0, "open_timeout_ms", "must be >= 0")
        need(
            self.compression_type in TOPIC_COMPRESSION_TYPES,
            "compression_type",
            f"one of {', '.join(TOPIC_COMPRESSION_TYPES)}",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def with_(self, **changes: Any) -> LogConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)


def check_shared_read(value: object) -> str:
    """``value`` if it is a ``shared_read`` setting, else ConfigError."""
    if not isinstance(value, str) or value not in SHARED_READ:
        raise ConfigError(f"shared_read={value!r} is invalid: one of {', '.join(SHARED_READ)}")
    return value
