"""Dispatch: one request frame in, one response payload out (or none), no I/O.

The dispatch table and the ApiVersions answer are built from every module of
logq.server.handlers (each defines ``HANDLERS: dict[api_key, handler]`` and ``VERSIONS:
dict[api_key, (min, max)]``, the range advertised). The server advertises ``[0, V]`` for
most APIs (old librdkafka looks for low versions inside the range, aiokafka refuses a
broker whose minimum is above its maximum) and implements every version kio knows in
that range; a request at another version closes the connection with one log line (as
Kafka 4 does for the versions it removed).

ApiVersions (key 18, versions 0-3) follows KIP-511: a request at a version this server does
not know is answered in the v0 format (response header v0) with UNSUPPORTED_VERSION (35)
and the ranges, and the client retries at a version it finds there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from logq.errors import ProtocolError
from logq.server import kio_api
from logq.server.context import Broker, Session

__all__ = ["API_VERSIONS_RANGE", "Dispatcher", "Reply"]

log = logging.getLogger("logq.server")

Handler = Callable[[Broker, Session, int, Any], Awaitable[Any]]
HANDLER_MODULES = ("metadata", "produce", "fetch", "offsets", "admin", "groups", "auth", "share")
API_VERSIONS_RANGE = (0, 3)
UNSUPPORTED_VERSION = 35
_NO_AUTH_NEEDED = frozenset({17, 18, 36})  # SaslHandshake, ApiVersions, SaslAuthenticate


@dataclass(frozen=True)
class Reply:
    """A response to send (``payload`` without its size prefix), or none (``payload`` None:
    Produce with acks=0)."""

    correlation_id: int
    payload: bytes | None


def load_handlers() -> tuple[dict[int, Handler], dict[int, tuple[int, int]]]:
    """Every handler module's HANDLERS and VERSIONS (a module not written yet is skipped)."""
    handlers: dict[int, Handler] = {}
    versions: dict[int, tuple[int, int]] = {}
    for name in HANDLER_MODULES:
        try:
            mod = importlib.import_module(f"logq.server.handlers.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"logq.server.handlers.{name}":
                raise
            continue
        handlers.update(getattr(mod, "HANDLERS", {}))
        versions.update(getattr(mod, "VERSIONS", {}))
    versions = {k: v for k, v in versions.items() if k in handlers}
    return handlers, versions


class Dispatcher:
    """Decodes a request frame, runs its handler, encodes the response."""

    def __init__(self) -> None:
        self.handlers, self.versions = load_handlers()
        self.versions[kio_api.API_VERSIONS_KEY] = API_VERSIONS_RANGE

    def supports(self, api_key: int, version: int) -> bool:
        rng = self.versions.get(api_key)
        return rng is not None and rng[0] <= version <= rng[1] and kio_api.has_request(api_key, version)

    async def handle(self, broker: Broker, session: Session, frame: bytes) -> Reply:
        """The reply to one request frame; ProtocolError means: close the connection."""
        raw = getattr(session.sasl, "handle_raw_frame", None)  # bare SASL tokens (handlers/auth.py)
        if raw is not None:
            return Reply(-1, await raw(broker, session, frame))
        header = kio_api.parse_header(frame)
        key, version = header.api_key, header.api_version
        if session.client_id is None:
            session.client_id = header.client_id
        if key == kio_api.API_VERSIONS_KEY:
            return Reply(header.correlation_id, self._api_versions(header, frame))
        if broker.auth is not None and not session.authenticated and key not in _NO_AUTH_NEEDED:
            raise ProtocolError(f"API {key} before authentication", api_key=key, api_version=version)
        if key not in self.handlers:
            raise ProtocolError(f"unknown API key {key}", api_key=key, api_version=version)
        if not self.supports(key, version):
            rng = self.versions[key]
            raise ProtocolError(
                f"API {key} version {version} is not implemented (advertised {rng[0]}-{rng[1]})",
                api_key=key,
                api_version=version,
            )
        request = kio_api.decode_request(header, frame)
        response = await self.handlers[key](broker, session, version, request)
        if response is None:
            return Reply(header.correlation_id, None)
        return Reply(header.correlation_id, kio_api.encode_response(key, version, header.correlation_id, response))

    def _api_versions(self, header: kio_api.RequestHeader, frame: bytes) -> bytes:
        version = header.api_version
        lo, hi = API_VERSIONS_RANGE
        if not lo <= version <= hi:
            body = self._api_versions_body(0, UNSUPPORTED_VERSION)
            return kio_api.encode_response(kio_api.API_VERSIONS_KEY, 0, header.correlation_id, body)
        kio_api.decode_request(header, frame)  # a malformed request closes the connection
        body = self._api_versions_body(version, 0)
        return kio_api.encode_response(kio_api.API_VERSIONS_KEY, version, header.correlation_id, body)

    def _api_versions_body(self, version: int, error: int) -> Any:
        m = kio_api.module(kio_api.API_VERSIONS_KEY, version)
        keys = tuple(
            kio_api.make(m.ApiVersion, api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in sorted(self.versions.items())
        )
        return kio_api.make(
            m.ApiVersionsResponse,
            error_code=kio_api.error(error),
            api_keys=keys,
            throttle_time=kio_api.millis(0),
        )
