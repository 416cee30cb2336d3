"""The "consumer" protocol payloads a group coordinator may look into, decoded leniently.

The broker relays JoinGroup metadata and SyncGroup assignments without needing them; logq
reads them only to show network members in ``logq groups describe`` (which topics a member
subscribes to, which partitions it was assigned) and encodes an assignment to describe an
embedded group to Kafka tools. Every version of Kafka's ConsumerProtocolSubscription and
ConsumerProtocolAssignment starts with the same fields (big-endian)::

    Subscription: version:int16, topics:int32 n + n x (int16 length + UTF-8), user_data, ...
    Assignment:   version:int16, n:int32 + n x (topic:int16 length + UTF-8,
                                               m:int32 + m x partition:int32), user_data, ...

Later versions add fields after these; they are ignored. Bytes that do not decode give an
empty result (a member of another protocol type, or a client's own format).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["subscription_topics", "assignment_partitions", "encode_assignment"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
MAX_ITEMS = 1_000_000


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def i16(self) -> int:
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def count(self) -> int:
        n = self.i32()
        if not 0 <= n <= MAX_ITEMS or n > len(self.data) - self.pos:
            raise ValueError(f"bad array length {n}")
        return n

    def string(self) -> str:
        n = self.i16()
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"bad string length {n}")
        s = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return s


def subscription_topics(metadata: bytes) -> list[str]:
    """The topics a consumer's JoinGroup metadata subscribes to ([] if it does not decode)."""
    try:
        r = _Reader(bytes(metadata))
        r.i16()
        return [r.string() for _ in range(r.count())]
    except (ValueError, struct.error, UnicodeDecodeError):
        return []


def assignment_partitions(assignment: bytes) -> list[tuple[str, int]]:
    """The (topic, partition) pairs of a SyncGroup assignment ([] if it does not decode)."""
    try:
        r = _Reader(bytes(assignment))
        r.i16()
        out: list[tuple[str, int]] = []
        for _ in range(r.count()):
            topic = r.string()
            out.extend((topic, r.i32()) for _ in range(r.count()))
        return out
    except (ValueError, struct.error, UnicodeDecodeError):
        return []


def encode_assignment(partitions: Iterable[tuple[str, int]]) -> bytes:
    """A ConsumerProtocolAssignment v0 of ``partitions`` (empty user data)."""
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    out = [_I16.pack(0), _I32.pack(len(by_topic))]
    for topic, parts in by_topic.items():
        raw = topic.encode("utf-8")
        out += [_I16.pack(len(raw)), raw, _I32.pack(len(parts))]
        out += [_I32.pack(p) for p in parts]
    out.append(_I32.pack(0))
    return b"".join(out)
