"""Kafka's framing, sans-IO (in the style of h11: bytes in, frames out; no sockets here).

On the wire every request and every response is ``size:int32`` (big-endian, the number of
bytes that follow) then that many bytes. ``FrameDecoder.feed(data)`` takes whatever the
transport read and returns the complete request frames (without their size prefix) in order;
a partial frame stays buffered until its remaining bytes arrive. A size below 0 or above
``max_request_bytes`` raises ProtocolError before any of its body is buffered: the caller
closes the connection. ``frame(payload)`` prefixes a response with its size.

A decoder given ``max_unauthenticated_request_bytes`` (a server that requires SASL) starts
unauthenticated: until its owner sets ``authenticated``, a size above that limit (or above
``max_request_bytes``, whichever is smaller) raises the same way, and ``feed`` returns at
most one frame per call, leaving later bytes buffered, so the limit of each frame is decided
after the frame before it was handled (it may be the one that authenticates); the owner
calls ``feed(b"")`` for the next one. Kafka bounds a client the same way before it
authenticates (``sasl.server.max.receive.size``, 512 KiB).
"""

from __future__ import annotations

import struct

from logq.errors import ConfigError, ProtocolError

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES",
    "FrameDecoder",
    "frame",
    "size_prefix",
]

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
DEFAULT_MAX_UNAUTHENTICATED_REQUEST_BYTES = 512 * 1024  # Kafka's sasl.server.max.receive.size
_SIZE = struct.Struct(">i")


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian size in front."""
    return _SIZE.pack(len(payload)) + payload


def size_prefix(size: int) -> bytes:
    """The 4-byte big-endian size that goes in front of a ``size``-byte payload."""
    return _SIZE.pack(size)


class FrameDecoder:
    """Splits a byte stream into request frames; holds at most one partial frame."""

    def __init__(
        self, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_unauthenticated_request_bytes: int | None = None
    ) -> None:
        _check_limit("max_request_bytes", max_request_bytes)
        if max_unauthenticated_request_bytes is not None:
            _check_limit("max_unauthenticated_request_bytes", max_unauthenticated_request_bytes)
        self.max_request_bytes = max_request_bytes
        self.max_unauthenticated_request_bytes = max_unauthenticated_request_bytes
        # False until the owner says the connection authenticated (True when none is required)
        self.authenticated = max_unauthenticated_request_bytes is None
        self._buf = bytearray()
        self._need = -1  # size of the frame being read, -1 while its size prefix is incomplete
        self.failed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes received that do not form a complete frame yet."""
        return len(self._buf)

    @property
    def in_frame(self) -> bool:
        """Whether part of a request has arrived but not all of it."""
        return bool(self._buf) or self._need >= 0

    def hold(self, data: bytes) -> None:
        """Buffer ``data`` without parsing it (the next ``feed`` does)."""
        if not self.failed:
            self._buf += data

    def feed(self, data: bytes) -> list[bytes]:
        """The frames that ``data`` completes, oldest first; ProtocolError on a bad size.

        After a ProtocolError the decoder stays failed: every later call raises too.
        """
        if self.failed:
            raise ProtocolError("the connection already sent a bad frame")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        one = not self.authenticated  # before authentication: one frame at a time
        while not (one and out):
            if self._need < 0:
                if end - pos < _SIZE.size:
                    break
                (size,) = _SIZE.unpack_from(buf, pos)
                self._check_size(size)
                pos += _SIZE.size
                self._need = size
            if end - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        if pos:
            del buf[:pos]
        return out

    def _check_size(self, size: int) -> None:
        """ProtocolError (and the decoder failed, its buffer dropped) for a size out of bounds."""
        if self.authenticated or self.max_unauthenticated_request_bytes is None:
            limit, name = self.max_request_bytes, "max_request_bytes"
        else:
            limit = min(self.max_request_bytes, self.max_unauthenticated_request_bytes)
            name = "max_unauthenticated_request_bytes"
        if 0 <= size <= limit:
            return
        self.failed = True
        self._buf.clear()
        before = "" if self.authenticated else " before authentication"
        raise ProtocolError(f"request size {size} bytes{before} is outside [0, {name}={limit}]")


def _check_limit(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive int, not {value!r}", hint=f"pass {name}=<int >= 1>")
