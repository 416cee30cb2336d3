"""Kafka's framing, sans-IO (in the style of h11: bytes in, frames out; no sockets here).

On the wire every request and every response is ``size:int32`` (big-endian, the number of
bytes that follow) then that many bytes. ``FrameDecoder.feed(data)`` takes whatever the
transport read and returns the complete request frames (without their size prefix) in order;
a partial frame stays buffered until its remaining bytes arrive. A size below 0 or above
``max_request_bytes`` raises ProtocolError before any of its body is buffered: the caller
closes the connection. ``frame(payload)`` prefixes a response with its size.
"""

from __future__ import annotations

import struct

from logq.errors import ConfigError, ProtocolError

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "FrameDecoder", "frame", "size_prefix"]

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
_SIZE = struct.Struct(">i")


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian size in front."""
    return _SIZE.pack(len(payload)) + payload


def size_prefix(size: int) -> bytes:
    """The 4-byte big-endian size that goes in front of a ``size``-byte payload."""
    return _SIZE.pack(size)


class FrameDecoder:
    """Splits a byte stream into request frames; holds at most one partial frame."""

    def __init__(self, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        if not isinstance(max_request_bytes, int) or isinstance(max_request_bytes, bool) or max_request_bytes < 1:
            raise ConfigError(f"max_request_bytes must be a positive int, not {max_request_bytes!r}")
        self.max_request_bytes = max_request_bytes
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
        while True:
            if self._need < 0:
                if end - pos < _SIZE.size:
                    break
                (size,) = _SIZE.unpack_from(buf, pos)
                if size < 0 or size > self.max_request_bytes:
                    self.failed = True
                    buf.clear()
                    raise ProtocolError(
                        f"request size {size} bytes is outside [0, max_request_bytes={self.max_request_bytes}]"
                    )
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
