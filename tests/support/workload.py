"""What the reliability children write, and how a batch is recognised afterwards.

A child writer appends batches from :func:`make_batch` and acknowledges each one with its
offsets and :func:`records_digest`; the oracle digests what it finds on disk the same way, so
an acknowledged batch is "intact" when offsets and digest agree.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class Ack:
    """One acknowledged batch: writer id, its sequence number, offsets, digest, ack time."""

    wid: int
    seq: int
    base: int
    last: int
    digest: str
    t_ns: int


def _field(b: bytes | None) -> bytes:
    return b"\xff\xff\xff\xff" if b is None else len(b).to_bytes(4, "big") + b


def records_digest(records: Iterable[tuple[Any, Any, Any, int]]) -> str:
    """A digest of (key, value, headers, timestamp) records, as written or as read back."""
    h = hashlib.blake2b(digest_size=10)
    for key, value, headers, ts in records:
        h.update(ts.to_bytes(8, "big", signed=True))
        h.update(_field(key))
        h.update(_field(value))
        hs = list(headers or ())
        h.update(len(hs).to_bytes(4, "big"))
        for hk, hv in hs:
            h.update(_field(hk.encode("utf-8") if isinstance(hk, str) else bytes(hk)))
            h.update(_field(hv))
    return h.hexdigest()


def record_tuples(recs: Iterable[Any]) -> list[tuple[Any, Any, Any, int]]:
    return [(r.key, r.value, r.headers, r.timestamp) for r in recs]


def _value_size(rng: random.Random, small_only: bool) -> int:
    x = rng.random()
    if x < 0.15:
        return 0
    if x < 0.25:
        return 1
    if x < 0.65:
        return 100
    if x < 0.85 or small_only:
        return rng.choice((100, 700, 4096))
    if x < 0.96:
        return 4096
    return rng.randint(4097, 65536)


def make_batch(rng: random.Random, wid: int, seq: int, now_ms: int, small_only: bool = False) -> list:
    """1-8 records: 0 B-64 KiB values, null or short keys, headers, equal/decreasing times."""
    n = rng.choice((1, 1, 1, 2, 3, 5, 8))
    ts0 = now_ms - rng.choice((0, 0, 0, 1000, 3_600_000))
    mode = rng.random()
    recs = []
    for i in range(n):
        size = _value_size(rng, small_only or n > 3)
        if size == 0:
            value: bytes | None = None if rng.random() < 0.3 else b""
        else:
            value = rng.randbytes(size)
        key = None if rng.random() < 0.5 else b"k%d" % rng.randrange(1000)
        headers = [("src", b"%d:%d:%d" % (wid, seq, i))]
        if rng.random() < 0.2:
            headers.append(("e", b""))
        if mode < 0.4:
            ts = ts0  # equal timestamps
        elif mode < 0.7:
            ts = ts0 - i * rng.randrange(0, 50)  # decreasing inside the batch
        else:
            ts = ts0 + i
        recs.append((key, value, headers, ts))
    return recs
