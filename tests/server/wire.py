"""Raw Kafka-protocol helpers for the server tests: encode requests with kio (the server's
own library) or build frames by hand, send them over a socket, read responses."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer


def request_frame(api_key: int, version: int, correlation_id: int, body: Any, client_id: str | None = "test") -> bytes:
    """A complete request frame (size prefix, header v1 or v2, body) for a kio request object."""
    cls = type(body)
    header = struct.pack(">hhi", api_key, version, correlation_id)
    if client_id is None:
        header += struct.pack(">h", -1)
    else:
        raw = client_id.encode()
        header += struct.pack(">h", len(raw)) + raw
    if cls.__header_schema__.__version__ >= 2:
        header += b"\x00"
    buf = io.BytesIO()
    entity_writer(cls)(buf, body)
    payload = header + buf.getvalue()
    return struct.pack(">i", len(payload)) + payload


def request_class(api_key: int, version: int) -> Any:
    return load_request_schema(api_key, version)


def connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the server")
        out += chunk
    return out


def read_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    return recv_exact(sock, size)


def decode_response(api_key: int, version: int, payload: bytes, header_version: int | None = None) -> tuple[int, Any]:
    """(correlation id, kio response object) of a response payload."""
    cls = load_response_schema(api_key, version)
    hv = cls.__header_schema__.__version__ if header_version is None else header_version
    (corr,) = struct.unpack_from(">i", payload, 0)
    pos = 4 + (1 if hv >= 1 else 0)
    value, used = entity_reader(cls)(payload, pos)
    assert pos + used == len(payload)
    return corr, value


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reads EOF or a reset)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
