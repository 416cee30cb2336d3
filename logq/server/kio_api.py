"""The one module that imports kio (pinned exactly: its 0.x API changes between releases).

kio holds frozen dataclasses generated from Kafka's JSON message definitions, one module per
API, version and direction, plus a native reader and a Python writer. Everything the server
needs from it goes through the functions here:

* ``parse_header(frame)``: a request frame (the bytes after the 4-byte size) starts with
  ``api_key:int16 api_version:int16 correlation_id:int32 client_id:nullable string(int16
  length)``; header v2 (flexible requests) adds tagged fields after ``client_id``. The header
  version of a request comes from kio's schema of that API and version.
* ``decode_request(header, frame)``: the body, as the kio request object of that version.
* ``encode_response(api_key, version, correlation_id, response)``: response header plus
  body. Response header v0 is ``correlation_id:int32``; v1 adds an empty tagged-field
  section (one zero byte). ApiVersions responses always use header v0 (Kafka's rule).
* ``module(api_key, version)`` / ``make(cls, **fields)``: the response classes of a version
  and a constructor that drops fields the version does not carry, so a handler can build
  one response for several versions.

Schemas load lazily (one import per API and version, about 8 ms the first time): loading all
of kio's schemas takes more than a second.

kio's readers take ``(buffer, offset)`` and return ``(value, bytes consumed)``; they refuse
writable buffers, so frames are passed as ``bytes``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from kio.index import load_payload_module, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from logq.errors import ProtocolError

__all__ = [
    "API_VERSIONS_KEY",
    "ErrorCode",
    "RequestHeader",
    "decode_request",
    "encode_response",
    "error",
    "has_request",
    "make",
    "millis",
    "module",
    "parse_header",
    "timestamp_ms",
]

API_VERSIONS_KEY = 18
_FIXED = struct.Struct(">hhih")
# APIs whose requests may carry bytes after the body, ignored as Kafka ignores them:
# librdkafka's Metadata v9+ request for every topic writes the topic array's count as four
# zero bytes (a compact null, then three bytes Kafka's parser never reaches).
_TRAILING_BYTES_IGNORED = {3: 9}  # api key -> from this version on


@dataclass(frozen=True)
class RequestHeader:
    """A request header; ``body_offset`` is where the request body starts in the frame."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int


@cache
def _request_class(api_key: int, version: int) -> Any:
    return load_request_schema(api_key, version)


@cache
def _response_class(api_key: int, version: int) -> Any:
    return load_response_schema(api_key, version)


@cache
def _reader(cls: Any) -> Any:
    return entity_reader(cls)


@cache
def _writer(cls: Any) -> Any:
    return entity_writer(cls)


@cache
def has_request(api_key: int, version: int) -> bool:
    """Whether kio knows this API at this version (versions Kafka 4 removed are absent)."""
    try:
        _request_class(api_key, version)
        _response_class(api_key, version)
    except Exception:  # kio raises its own index errors and import errors alike
        return False
    return True


@cache
def module(api_key: int, version: int) -> ModuleType:
    """kio's response module of ``api_key`` at ``version`` (its nested classes)."""
    return load_payload_module(api_key, version, EntityType.response)


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def make(cls: Any, **values: Any) -> Any:
    """``cls(**values)`` without the fields ``cls`` (one version of a message) lacks."""
    names = _field_names(cls)
    return cls(**{k: v for k, v in values.items() if k in names})


def error(code: int) -> ErrorCode:
    """kio's ErrorCode for a Kafka error number."""
    return ErrorCode(code)


def millis(ms: int) -> datetime.timedelta:
    """A millisecond count as kio's duration fields (throttle time, timeouts) hold it."""
    return datetime.timedelta(milliseconds=ms)


def timestamp_ms(value: Any) -> int:
    """A kio duration or datetime field as milliseconds (plain ints pass through)."""
    if isinstance(value, datetime.timedelta):
        return int(value / datetime.timedelta(milliseconds=1))
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def parse_header(frame: bytes) -> RequestHeader:
    """The request header at the start of ``frame``; ProtocolError when it cannot be read."""
    if len(frame) < _FIXED.size:
        raise ProtocolError(f"request of {len(frame)} bytes is shorter than a request header")
    api_key, version, correlation_id, n = _FIXED.unpack_from(frame, 0)
    pos = _FIXED.size
    client_id: str | None = None
    if n >= 0:
        if pos + n > len(frame):
            raise ProtocolError("client_id runs past the end of the request", api_key=api_key, api_version=version)
        try:
            client_id = frame[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("client_id is not UTF-8", api_key=api_key, api_version=version) from None
        pos += n
    elif n != -1:
        raise ProtocolError(f"client_id length {n}", api_key=api_key, api_version=version)
    if has_request(api_key, version) and _request_class(api_key, version).__header_schema__.__version__ >= 2:
        pos = _skip_tagged_fields(frame, pos, api_key, version)
    return RequestHeader(api_key, version, correlation_id, client_id, pos)


def _read_uvarint(frame: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(frame) or shift > 28:
            raise ProtocolError("malformed unsigned varint in the request header")
        b = frame[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _skip_tagged_fields(frame: bytes, pos: int, api_key: int, version: int) -> int:
    count, pos = _read_uvarint(frame, pos)
    for _ in range(count):
        _, pos = _read_uvarint(frame, pos)  # tag
        size, pos = _read_uvarint(frame, pos)
        pos += size
        if pos > len(frame):
            raise ProtocolError("tagged field runs past the end of the header", api_key=api_key, api_version=version)
    return pos


def decode_request(header: RequestHeader, frame: bytes) -> Any:
    """The request body as kio's object of ``header``'s API and version.

    Raises ProtocolError for an API or version kio does not know, for bytes that do not
    decode, and for bytes left over after the body (except for the APIs of
    ``_TRAILING_BYTES_IGNORED``).
    """
    key, version = header.api_key, header.api_version
    if not has_request(key, version):
        raise ProtocolError(f"API {key} version {version} is not supported", api_key=key, api_version=version)
    cls = _request_class(key, version)
    try:
        value, used = _reader(cls)(frame, header.body_offset)
    except Exception as e:  # the native reader raises ValueError, IndexError, UnicodeError...
        raise ProtocolError(
            f"undecodable API {key} v{version} request: {type(e).__name__}", api_key=key, api_version=version
        ) from None
    lenient = version >= _TRAILING_BYTES_IGNORED.get(key, 1 << 15)
    if header.body_offset + used != len(frame) and not lenient:
        raise ProtocolError(
            f"{len(frame) - header.body_offset - used} bytes after the API {key} v{version} request",
            api_key=key,
            api_version=version,
        )
    return value


def response_class(api_key: int, version: int) -> Any:
    """kio's top-level response class of ``api_key`` at ``version``."""
    return _response_class(api_key, version)


def encode_response(api_key: int, version: int, correlation_id: int, response: Any) -> bytes:
    """Response header and body (without the 4-byte size prefix)."""
    buf = io.BytesIO()
    buf.write(struct.pack(">i", correlation_id))
    flexible_header = api_key != API_VERSIONS_KEY and type(response).__header_schema__.__version__ >= 1
    if flexible_header:
        buf.write(b"\x00")  # no tagged fields
    cls: Any = type(response)
    _writer(cls)(buf, response)
    return buf.getvalue()
