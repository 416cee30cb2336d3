"""SASL APIs of `logq serve`: SaslHandshake (v0-1) and SaslAuthenticate (v0-2).

The handshake names a mechanism (answered with the server's list: PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512; UNSUPPORTED_SASL_MECHANISM (33) for another); SaslAuthenticate then carries
the mechanism's messages (logq/server/sasl.py). A failed exchange answers
SASL_AUTHENTICATION_FAILED (58) and closes the connection after that response; so does a
SaslAuthenticate without a handshake, or on a session that is already authenticated
(ILLEGAL_SASL_STATE, 34). Until a session is authenticated the core lets it call only
ApiVersions, SaslHandshake and SaslAuthenticate.

The handshake v0 form that is followed by raw SASL tokens (no Kafka request header) is not
implemented: kafka-python, aiokafka and librdkafka send handshake v1 and SaslAuthenticate.
A server started without a users file answers every handshake with an empty mechanism list.
"""

from __future__ import annotations

import logging
from typing import Any

from logq.errors import AuthenticationError
from logq.server import kio_api
from logq.server.context import Broker, Session

__all__ = ["HANDLERS", "VERSIONS"]

log = logging.getLogger("logq.server.auth")

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
SASL_AUTHENTICATION_FAILED = 58


async def handle_sasl_handshake(broker: Broker, session: Session, version: int, request: Any) -> Any:
    m = kio_api.module(SASL_HANDSHAKE, version)
    auth = broker.auth
    offered = tuple(auth.mechanisms) if auth is not None else ()
    error = 0
    if auth is None or request.mechanism not in offered:
        error = UNSUPPORTED_SASL_MECHANISM
    elif session.authenticated or session.sasl is not None:
        error = ILLEGAL_SASL_STATE
        session.close_after_response = True
    else:
        session.sasl = auth.start(request.mechanism)
    return kio_api.make(m.SaslHandshakeResponse, error_code=kio_api.error(error), mechanisms=offered)


def _answer(version: int, error: int, message: str | None, data: bytes) -> Any:
    m = kio_api.module(SASL_AUTHENTICATE, version)
    return kio_api.make(
        m.SaslAuthenticateResponse,
        error_code=kio_api.error(error),
        error_message=message,
        auth_bytes=data,
        session_lifetime=kio_api.millis(0),
    )


async def handle_sasl_authenticate(broker: Broker, session: Session, version: int, request: Any) -> Any:
    exchange = session.sasl
    if exchange is None or session.authenticated:
        session.close_after_response = True
        return _answer(version, ILLEGAL_SASL_STATE, "SaslAuthenticate needs a SaslHandshake first", b"")
    try:
        raw = bytes(request.auth_bytes)
        if exchange.mechanism == "PLAIN":  # a PBKDF2 derivation (about 2 ms): off the event loop
            data, user = await broker.loop.run_in_executor(None, exchange.step, raw)
        else:
            data, user = exchange.step(raw)
    except AuthenticationError as e:
        log.warning("SASL %s authentication of %s failed: %s", exchange.mechanism, session.peer, e.reason)
        session.sasl = None
        session.close_after_response = True
        return _answer(version, SASL_AUTHENTICATION_FAILED, "Authentication failed: invalid user name or password", b"")
    if user is not None:
        session.authenticated, session.principal, session.sasl = True, user, None
        log.info("%s authenticated as %s (%s)", session.peer, user, exchange.mechanism)
    return _answer(version, 0, None, data)


HANDLERS = {SASL_HANDSHAKE: handle_sasl_handshake, SASL_AUTHENTICATE: handle_sasl_authenticate}
VERSIONS = {SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 2)}
