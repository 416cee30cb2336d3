"""Serializers (value -> bytes) and deserializers (bytes -> value) for keys and values.

Three formats, chosen by name or passed as callables:

============  ==========================================  ====================================
name          serialize                                   deserialize
============  ==========================================  ====================================
``"bytes"``   bytes / bytearray / memoryview, as is        bytes, as stored (the default)
``"str"``     ``str`` encoded as UTF-8                     UTF-8 decoded ``str``
``"json"``    compact JSON (no spaces), UTF-8, no NaN      ``json.loads`` of the UTF-8 text
============  ==========================================  ====================================

``None`` passes through every serializer and deserializer unchanged: in Kafka a null key
means "no key" and a null value is a tombstone, so neither is ever encoded (JSON ``null``
would be the 4 bytes ``null``, which is a different record).

Pickle is refused on purpose: unpickling runs code chosen by whoever wrote the record.
Anything that cannot be converted raises :class:`SerializationError` (writing) or
:class:`DeserializationError` (reading), naming the type or the position of the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from logq.errors import ConfigError, DeserializationError, SerializationError

__all__ = [
    "Serializer",
    "Deserializer",
    "bytes_serializer",
    "str_serializer",
    "json_serializer",
    "bytes_deserializer",
    "str_deserializer",
    "json_deserializer",
    "get_serializer",
    "get_deserializer",
]

Serializer = Callable[[Any], bytes | None]
Deserializer = Callable[[bytes | None], Any]


def _type_name(obj: object) -> str:
    t = type(obj)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def bytes_serializer(obj: Any) -> bytes | None:
    """Bytes-like objects as they are; anything else is refused with its type named."""
    if obj is None or isinstance(obj, bytes):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise SerializationError(
        f"the bytes serializer needs bytes, got {_type_name(obj)}",
        hint="pass bytes, or set key_serializer / value_serializer to 'str' or 'json'",
    )


def str_serializer(obj: Any) -> bytes | None:
    """``str`` as UTF-8. Lone surrogates cannot be encoded and are refused."""
    if obj is None:
        return None
    if not isinstance(obj, str):
        raise SerializationError(
            f"the str serializer needs str, got {_type_name(obj)}",
            hint="pass str, or use the 'bytes' or 'json' serializer",
        )
    try:
        return obj.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SerializationError(
            f"str is not valid UTF-8 text at index {e.start}: {e.reason}",
            hint="remove lone surrogates (for example from os.fsdecode) before sending",
        ) from None


def json_serializer(obj: Any) -> bytes | None:
    """Compact JSON (``","`` and ``":"`` separators), UTF-8, NaN and Infinity refused."""
    if obj is None:
        return None
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise SerializationError(
            f"cannot encode {_type_name(obj)} as JSON: {e}",
            hint="send dicts, lists, str, int, float (finite), bool or None, or encode it yourself",
        ) from None


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise DeserializationError(f"the {what} deserializer needs bytes, got {_type_name(data)}")


def bytes_deserializer(data: bytes | None) -> bytes | None:
    """The stored bytes, unchanged (memoryviews are copied into bytes)."""
    if data is None:
        return None
    return _as_bytes(data, "bytes")


def str_deserializer(data: bytes | None) -> str | None:
    """Strict UTF-8 decoding; invalid bytes are an error, never replaced silently."""
    if data is None:
        return None
    raw = _as_bytes(data, "str")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DeserializationError(f"{len(raw)} bytes are not valid UTF-8 at byte {e.start}: {e.reason}") from None


def json_deserializer(data: bytes | None) -> Any:
    """``json.loads`` of UTF-8 text. The bytes ``null`` give None (unlike a null value)."""
    if data is None:
        return None
    text = str_deserializer(data) or ""  # never None here: data is not None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise DeserializationError(f"{len(data)} bytes are not valid JSON: {e}") from None


_SERIALIZERS: dict[str, Serializer] = {
    "bytes": bytes_serializer,
    "str": str_serializer,
    "json": json_serializer,
}
_DESERIALIZERS: dict[str, Deserializer] = {
    "bytes": bytes_deserializer,
    "str": str_deserializer,
    "json": json_deserializer,
}
_REFUSED = {"pickle", "marshal", "dill", "cloudpickle"}


def _resolve(spec: str | Callable[..., Any] | None, table: dict[str, Any], what: str) -> Any:
    if spec is None:
        return table["bytes"]
    if isinstance(spec, str):
        name = spec.strip().lower()
        if name in table:
            return table[name]
        if name in _REFUSED:
            raise ConfigError(
                f"{what} {spec!r} is refused: loading it would run code stored in the log",
                hint="use 'json', or pass your own callable for a safe format",
            )
        raise ConfigError(f"unknown {what} {spec!r}", hint=f"use one of {sorted(table)} or a callable")
    if callable(spec):
        return spec
    raise ConfigError(f"{what} must be a name or a callable, got {_type_name(spec)}")


def get_serializer(spec: str | Serializer | None = None) -> Serializer:
    """``"bytes"`` (default for None), ``"str"``, ``"json"``, or a callable used as is."""
    return _resolve(spec, _SERIALIZERS, "serializer")


def get_deserializer(spec: str | Deserializer | None = None) -> Deserializer:
    """``"bytes"`` (default for None), ``"str"``, ``"json"``, or a callable used as is."""
    return _resolve(spec, _DESERIALIZERS, "deserializer")
