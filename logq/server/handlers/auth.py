"""SASL APIs of `logq serve`: SaslHandshake (v0-1) and SaslAuthenticate (v0-2).

The handshake names a mechanism (answered with the server's list: PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512; UNSUPPORTED_SASL_MECHANISM (33) for another); SaslAuthenticate then carries
the mechanism's messages (logq/server/sasl.py). A failed exchange answers
SASL_AUTHENTICATION_FAILED (58) and closes the connection after that response; so does a
SaslAuthenticate without a handshake, or on a session that is already authenticated
(ILLEGAL_SASL_STATE, 34). Until a session is authenticated the core lets it call only
ApiVersions, SaslHandshake and SaslAuthenticate.

After a SaslHandshake v0 (KIP-43; kafka-python 2.0, aiokafka <= 0.12 and Sarama <= 1.40 send
it) the client's next frames are bare SASL tokens: ``size:int32`` then the token, with no
request header, answered the same way (PLAIN's answer is the empty token: four zero bytes;
SCRAM's are its server-first and server-final messages). The session then holds a
:class:`RawTokens`, whose ``handle_raw_frame`` the dispatcher calls with each frame in place
of a request; a failed exchange in this form closes the connection without an answer (v0
has no way to carry an error). Once authenticated, frames are requests again.

A server started without a users file answers every handshake with an empty mechanism list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from logq.errors import AuthenticationError
from logq.server import kio_api
from logq.server.context import Broker, Session
from logq.server.sasl import Exchange

__all__ = ["HANDLERS", "VERSIONS", "RawTokens"]

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
        exchange = auth.start(request.mechanism)
        session.sasl = RawTokens(exchange) if version == 0 and exchange is not None else exchange
    return kio_api.make(m.SaslHandshakeResponse, error_code=kio_api.error(error), mechanisms=offered)


async def _step(broker: Broker, exchange: Exchange, raw: bytes) -> tuple[bytes, str | None]:
    """One message of ``exchange``; AuthenticationError when it fails."""
    if exchange.mechanism == "PLAIN":  # a PBKDF2 derivation (about 2 ms): off the event loop
        return await broker.loop.run_in_executor(None, exchange.step, raw)
    return exchange.step(raw)


def _authenticated(session: Session, exchange: Exchange, user: str) -> None:
    session.authenticated, session.principal, session.sasl = True, user, None
    log.info("%s authenticated as %s (%s)", session.peer, user, exchange.mechanism)


def _failed(session: Session, exchange: Exchange, e: AuthenticationError) -> None:
    log.warning("SASL %s authentication of %s failed: %s", exchange.mechanism, session.peer, e.reason)
    session.sasl = None
    session.close_after_response = True


@dataclass
class RawTokens:
    """The SASL exchange of a session whose handshake was v0: its frames are bare tokens."""

    exchange: Exchange

    async def handle_raw_frame(self, broker: Broker, session: Session, frame: bytes) -> bytes | None:
        """The bare token answering ``frame`` (sent with its size prefix only), or None when
        the exchange failed (the connection is closed without an answer)."""
        try:
            data, user = await _step(broker, self.exchange, bytes(frame))
        except AuthenticationError as e:
            _failed(session, self.exchange, e)
            return None
        if user is not None:
            _authenticated(session, self.exchange, user)
        return data


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
        data, user = await _step(broker, exchange, bytes(request.auth_bytes))
    except AuthenticationError as e:
        _failed(session, exchange, e)
        return _answer(version, SASL_AUTHENTICATION_FAILED, "Authentication failed: invalid user name or password", b"")
    if user is not None:
        _authenticated(session, exchange, user)
    return _answer(version, 0, None, data)


HANDLERS = {SASL_HANDSHAKE: handle_sasl_handshake, SASL_AUTHENTICATE: handle_sasl_authenticate}
VERSIONS = {SASL_HANDSHAKE: (0, 1), SASL_AUTHENTICATE: (0, 2)}
