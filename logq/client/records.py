"""Per-record checks at ``send``: everything a record must be before it is queued.

The producer refuses a bad record in the caller's thread, before anything is queued, so
that a batch written later never fails for its contents: serializers run here (a user
serializer's failure is wrapped in SerializationError, logq's own errors pass as they
are), keys and values must end up bytes or None, headers must be (str, bytes | None)
pairs, and a record too large for its topic's ``max_batch_bytes`` or the producer's
``buffer_bytes`` is refused with the limit it broke. ``RECORD_OVERHEAD_BYTES`` is what
``send`` counts for a record beyond its key, value and headers.

Delayed delivery and expiry (``send(delay_ms=, deliver_at=, ttl_ms=)``, docs/queues.md) are
two headers, ASCII decimal epoch milliseconds, read by ShareConsumers only (plain consumers
read the log in order): ``logq.deliver_at_ms`` = ``deliver_at``, or the record's timestamp +
``delay_ms``; ``logq.expire_at_ms`` = ``ttl_ms`` after the later of the record's timestamp
and its delivery time (a delayed record gets its whole time to live once deliverable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from logq.client.partitioner import Partitioner, call_partitioner
from logq.client.share_config import DELIVER_AT_HEADER, EXPIRE_AT_HEADER
from logq.client.timestamps import TS_LIMIT, to_millis
from logq.codec.batch import BATCH_OVERHEAD
from logq.errors import ConfigError, LogqError, RecordTooLargeError, SerializationError

__all__ = [
    "header_text",
    "RECORD_OVERHEAD_BYTES",
    "as_bytes",
    "bulk_input",
    "bulk_values",
    "encode_headers",
    "rare_arguments",
    "record_too_large",
    "send_headers",
    "serialize",
    "timing_headers",
]

RECORD_OVERHEAD_BYTES = 24  # varints, attributes and header count of one record, at most

Serializer = Callable[[Any], Any] | None


def as_bytes(x: Any, what: str) -> bytes | None:
    if x is None or type(x) is bytes:
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    raise SerializationError(f"{what} must be bytes or None, got {type(x).__name__}")


def serialize(topic: str, key: Any, value: Any, key_ser: Serializer, value_ser: Serializer) -> tuple[Any, Any]:
    """``send``'s key and value as bytes or None, through the serializers if any.

    A user serializer's failure is the caller's, wrapped in SerializationError; logq's own
    errors pass as they are.
    """
    try:
        k = key if key_ser is None else key_ser(key)
        v = value if value_ser is None else value_ser(value)
    except LogqError:
        raise
    except Exception as e:
        raise SerializationError(f"the serializer failed on {topic!r}: {e!r}") from e
    if (k is not None and type(k) is not bytes) or (v is not None and type(v) is not bytes):
        return as_bytes(k, "key"), as_bytes(v, "value")
    return k, v


def rare_arguments(
    partitioner: Partitioner | None,
    topic: str,
    num_partitions: int,
    partition: int | None,
    key: bytes | None,
    on_delivery: object,
    given: tuple[Any, Any, Any],
) -> Any:
    """``send``'s rarer arguments, checked before anything is queued: ``on_delivery`` must be
    callable; without an explicit ``partition``, the user's partitioner picks one (checked;
    ``given``: the key and value as passed, and the serialized value)."""
    if on_delivery is not None and not callable(on_delivery):
        raise ConfigError(f"on_delivery must be callable, got {on_delivery!r}")
    if partition is None and partitioner is not None:
        return call_partitioner(partitioner, topic, key, num_partitions, given)
    return partition


def bulk_input(
    topic: str, values: Any, key: Any, key_ser: Serializer, value_ser: Serializer
) -> tuple[Sequence[bytes], bytes | None]:
    """``send_batch``'s values and key as bytes, through the serializers if any."""
    if isinstance(values, (str, bytes, bytearray, memoryview, dict)) or not hasattr(values, "__iter__"):
        raise SerializationError(
            f"values must be a list (or any iterable) of values, got {type(values).__name__}",
            hint="wrap a single value in a list, or use send()",
        )
    values = list(values)  # a generator is read once, here
    try:
        if value_ser is not None:
            values = [value_ser(v) for v in values]
        k = key if key_ser is None else key_ser(key)
    except LogqError:
        raise
    except Exception as e:
        raise SerializationError(f"the serializer failed on {topic!r}: {e!r}") from e
    if k is not None:
        k = as_bytes(k, "key")
    return bulk_values(values), k


def bulk_values(values: Any) -> Sequence[bytes]:
    """``send_batch`` values as a sequence of bytes; refuses anything else before writing."""
    if not isinstance(values, (list, tuple)):
        try:
            values = list(values)
        except TypeError:
            raise SerializationError(f"values must be a sequence of bytes, got {type(values).__name__}") from None
    if not values or set(map(type, values)) == {bytes}:  # C loops: no bytecode per record
        return values
    out: list[bytes] = []
    for v in values:
        b = as_bytes(v, "value")
        if b is None:
            raise SerializationError("send_batch values cannot be None", hint="send tombstones with send()")
        out.append(b)
    return out


def encode_headers(headers: Any) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    """The headers as a tuple of (str, bytes | None) pairs, and the bytes they add.

    Refuses, before anything is queued, what the codec cannot encode or a consumer could not
    decode: a key that is not str (or UTF-8 bytes), a value that is not bytes or None. A
    generator is read once, here.
    """
    try:
        if isinstance(headers, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"got {type(headers).__name__}")
        items = list(headers.items() if isinstance(headers, dict) else headers)
        out = []
        n = 0
        for item in items:
            if isinstance(item, (str, bytes)) or len(item) != 2:
                raise TypeError(f"{item!r} is not a (key, value) pair")
            hk, hv = item
            if isinstance(hk, (bytes, bytearray)):
                hk = bytes(hk).decode("utf-8")  # stored as UTF-8; consumers decode it to str
            if not isinstance(hk, str):
                raise TypeError(f"key {hk!r} is a {type(hk).__name__}")
            kb = hk.encode("utf-8")
            if hv is not None:
                if not isinstance(hv, (bytes, bytearray, memoryview)):
                    raise TypeError(f"value of {hk!r} is a {type(hv).__name__}")
                hv = bytes(hv)
            out.append((hk, hv))
            n += len(kb) + (len(hv) if hv else 0) + 10
        return tuple(out), n
    except (TypeError, ValueError, UnicodeError) as e:
        raise SerializationError(f"headers must be (str key, bytes or None value) pairs: {e}") from None


def record_too_large(topic: str, size: int, max_batch: int, buffer_bytes: int) -> RecordTooLargeError:
    """A record of ``size`` bytes (as send() counts them) that cannot be sent: quote the
    configured limit it broke, the topic's max_batch_bytes or the producer's buffer_bytes."""
    if size + BATCH_OVERHEAD > max_batch:
        return RecordTooLargeError(
            size + BATCH_OVERHEAD,
            max_batch,
            "record (in a batch of its own)",
            where=f" of topic {topic!r}",
            hint=f"send smaller records, or raise the topic's max_batch_bytes "
            f"(`logq topics alter {topic} --config max_batch_bytes=...`)",
        )
    return RecordTooLargeError(
        size,
        buffer_bytes,
        "record",
        setting="buffer_bytes",
        where=" of this Producer",
        hint="raise the Producer's buffer_bytes above the largest record, or send smaller records",
    )


def _ms_arg(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < TS_LIMIT:
        raise ConfigError(
            f"{name}={v!r} is invalid: must be an int of milliseconds >= {lo}",
            hint="a timedelta? pass int(td.total_seconds() * 1000)",
        )
    return v


def timing_headers(headers: Any, timestamp_ms: int, delay_ms: Any, deliver_at: Any, ttl_ms: Any) -> Any:
    """``headers`` plus ``logq.deliver_at_ms`` / ``logq.expire_at_ms`` for ``send``'s
    ``delay_ms``/``deliver_at`` and ``ttl_ms`` (the rule in the module docstring). Refuses both
    ``delay_ms`` and ``deliver_at``, and a header of those names given as well."""
    if delay_ms is not None and deliver_at is not None:
        raise ConfigError("give delay_ms or deliver_at, not both")
    extra: list[tuple[str, bytes]] = []
    due = timestamp_ms
    if delay_ms is not None:
        due = timestamp_ms + _ms_arg("delay_ms", delay_ms, 0)
    elif deliver_at is not None:
        due = to_millis(deliver_at, "deliver_at")
    if delay_ms is not None or deliver_at is not None:
        extra.append((DELIVER_AT_HEADER, b"%d" % due))
    if ttl_ms is not None:
        extra.append((EXPIRE_AT_HEADER, b"%d" % (max(due, timestamp_ms) + _ms_arg("ttl_ms", ttl_ms, 1))))
    if not -TS_LIMIT <= due + (ttl_ms or 0) < TS_LIMIT:
        raise ConfigError("delay_ms/deliver_at/ttl_ms put the record beyond +-2**62 ms of the epoch")
    if not headers:
        return extra
    given = encode_headers(headers)[0]
    clash = {k for k, _ in given} & {k for k, _ in extra}
    if clash:
        raise ConfigError(f"header {sorted(clash)[0]!r} is given twice: in headers and by delay_ms/deliver_at/ttl_ms")
    return list(given) + extra


def send_headers(headers: Any, timestamp_ms: int, delay_ms: Any, deliver_at: Any, ttl_ms: Any) -> tuple[Any, int]:
    """``send``'s headers, with the timing headers of ``delay_ms``/``deliver_at``/``ttl_ms``
    (``timing_headers``), encoded (``encode_headers``), and the bytes they add. Empty ones are
    kept as given (0 bytes); SerializationError for headers that are not a dict or a list."""
    if delay_ms is not None or deliver_at is not None or ttl_ms is not None:
        headers = timing_headers(headers, timestamp_ms, delay_ms, deliver_at, ttl_ms)
    if headers:
        return encode_headers(headers)
    if headers is not None and not isinstance(headers, (dict, list, tuple)):
        raise SerializationError(f"headers must be a dict or a list of (str, bytes) pairs, got {headers!r}")
    return headers, 0


def header_text(headers: Any, name: str) -> str | None:
    """The first non-null value of header ``name`` as ASCII text (the headers logq itself writes:
    dead-letter, correlation and reply-to headers); None when absent or not ASCII."""
    for k, v in headers or ():
        if k == name and v is not None:
            try:
                return bytes(v).decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
