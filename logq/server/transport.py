"""The asyncio transport of `logq serve`: sockets in, frames to the dispatcher, replies out.

Kept thin: framing, decoding and handling are sans-IO (framing.py, apis.py, handlers/).
Per connection, requests are handled one at a time in arrival order (as Kafka does), so
pipelined requests are answered in order; at most ``max_in_flight_requests`` complete
requests wait (reading pauses beyond that), at most one partial request is buffered
(``max_request_bytes``), and reading also pauses while more than
``max_buffered_response_bytes`` of replies wait to be sent. A sweep every second closes
connections idle for ``idle_timeout_ms`` (no request, or responses left unread: the bytes
they hold are released) and those whose request stays incomplete for
``partial_request_timeout_ms``. A bad frame, an undecodable request or a failing handler
closes that connection with one log line; every other connection keeps going.

On a server that requires SASL, a connection that has not authenticated yet may send
frames of at most ``max_unauthenticated_request_bytes`` (Kafka's
``sasl.server.max.receive.size``): a larger size prefix closes it before its body is
buffered. Until it authenticates its frames are taken one at a time (reading pauses while
one is handled), so the limit of each is decided after the one before it was answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from logq.errors import LogqError, ProtocolError
from logq.server.apis import Dispatcher
from logq.server.context import Broker, Session
from logq.server.framing import FrameDecoder, size_prefix

__all__ = ["Connection", "Connections"]

log = logging.getLogger("logq.server")

_SWEEP_S = 1.0


class Connections:
    """Every open connection of one server, the limits they share, and the sweep timer."""

    def __init__(self, broker: Broker, dispatcher: Dispatcher, tls: bool) -> None:
        self.broker = broker
        self.dispatcher = dispatcher
        self.tls = tls
        self.open: set[Connection] = set()
        self.accepted = 0
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def buffered_response_bytes(self) -> int:
        """Response bytes written but not yet taken by the clients, over all connections."""
        return sum(c.transport.get_write_buffer_size() for c in self.open if c.transport is not None)

    def factory(self) -> Connection:
        return Connection(self)

    def start_sweeping(self) -> None:
        self._sweep = self.broker.loop.call_later(_SWEEP_S, self._sweep_once)

    def _sweep_once(self) -> None:
        now = time.monotonic()
        cfg = self.broker.config
        for conn in list(self.open):
            conn.check_timeouts(now, cfg.idle_timeout_ms / 1000, cfg.partial_request_timeout_ms / 1000)
        self.start_sweeping()

    async def close_all(self, grace_s: float) -> None:
        """Let each connection finish the request it is handling (up to ``grace_s``), then close."""
        if self._sweep is not None:
            self._sweep.cancel()
        for conn in list(self.open):
            conn.stop_reading()
        self.broker.begin_shutdown()
        workers = [c.worker for c in self.open if c.worker is not None and not c.worker.done()]
        if workers:
            await asyncio.wait(workers, timeout=grace_s)
        for conn in list(self.open):
            conn.close("server shutting down", level=logging.INFO)


class Connection(asyncio.Protocol):
    """One client connection: its decoder, queue of complete requests and worker task."""

    def __init__(self, owner: Connections) -> None:
        self.owner = owner
        self.broker = owner.broker
        cfg = owner.broker.config
        pre_auth = cfg.max_unauthenticated_request_bytes if owner.broker.auth is not None else None
        self.decoder = FrameDecoder(cfg.max_request_bytes, pre_auth)
        self._unauthenticated_busy = False  # a frame taken before authentication is being handled
        self.queue: deque[bytes] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.session = Session(peer="?")
        self.requests = 0
        self.last_activity = time.monotonic()
        self.frame_started: float | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._stopping = False
        self._closed = False

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.session.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.session.tls = self.owner.tls
        self.session.authenticated = self.broker.auth is None
        cfg = self.broker.config
        if len(self.owner.open) >= cfg.max_connections:
            log.warning(
                "refused connection from %s: max_connections=%d reached", self.session.peer, cfg.max_connections
            )
            self._closed = True
            transport.abort()
            return
        transport.set_write_buffer_limits(high=cfg.max_buffered_response_bytes)
        self.owner.open.add(self)
        self.owner.accepted += 1
        log.info("connection from %s", self.session.peer)

    def data_received(self, data: bytes) -> None:
        if self._closed or self._stopping:
            return
        self.last_activity = time.monotonic()
        if self._unauthenticated_busy:  # not parsed before the frame in hand is answered
            frames = []
            self.decoder.hold(data)
        else:
            try:
                frames = self.decoder.feed(data)
            except ProtocolError as e:
                self.close(e.reason, level=logging.WARNING)
                return
        if frames and not self.decoder.authenticated:
            self._unauthenticated_busy = True
        if not self.decoder.in_frame:
            self.frame_started = None
        elif frames or self.frame_started is None:  # a new request started in this chunk
            self.frame_started = self.last_activity
        if frames:
            self.queue.extend(frames)
            if self.worker is None or self.worker.done():
                self.worker = self.broker.loop.create_task(self._work())
        self._update_reading()

    def _next_unauthenticated_frame(self) -> None:
        """After a frame taken before authentication was answered: the next buffered one,
        checked against the limit that now applies (the normal one if that frame
        authenticated the session)."""
        self._unauthenticated_busy = False
        self.decoder.authenticated = self.session.authenticated
        try:
            frames = self.decoder.feed(b"")
        except ProtocolError as e:
            self.close(e.reason, level=logging.WARNING)
            return
        if frames:
            self._unauthenticated_busy = not self.decoder.authenticated
            self.queue.extend(frames)
        if not self.decoder.in_frame:
            self.frame_started = None
        elif frames:
            self.frame_started = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        """The worker is not cancelled: a produce it is appending finishes (and its producer
        state is recorded, so the client's retry on a new connection is deduplicated); a
        long poll it waits on ends now; nothing more is read from the queue."""
        self._closed = True
        self.session.closed = True
        self.queue.clear()
        self._can_write.set()
        if self in self.owner.open:
            self.owner.open.discard(self)
            log.info("connection from %s closed (%d requests)", self.session.peer, self.requests)
        if self.worker is not None and not self.worker.done():
            self.broker.notify_append()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._can_write.clear()
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.last_activity = time.monotonic()  # the client read: not idle
        self._can_write.set()
        self._update_reading()

    # ------------------------------------------------------------------ work
    async def _work(self) -> None:
        while self.queue and not self._closed:
            request = self.queue.popleft()
            self._update_reading()
            try:
                reply = await self.owner.dispatcher.handle(self.broker, self.session, request)
            except ProtocolError as e:
                self.close(e.reason, level=logging.WARNING)
                return
            except (LogqError, Exception) as e:  # a handler bug: this connection only
                log.error("closing %s: request failed: %s: %s", self.session.peer, type(e).__name__, e)
                self.close(None)
                return
            self.requests += 1
            self.last_activity = time.monotonic()
            if reply.payload is not None and self.transport is not None and not self._closed:
                self.transport.writelines((size_prefix(len(reply.payload)), reply.payload))  # no concatenation
            if self.session.close_after_response:
                self.close("closed after the response, as its handler asked", level=logging.INFO)
                return
            if self._unauthenticated_busy:
                self._next_unauthenticated_frame()
                self._update_reading()
            if self._writing_paused:
                await self._can_write.wait()

    def _update_reading(self) -> None:
        if self.transport is None or self._closed:
            return
        full = (
            len(self.queue) >= self.broker.config.max_in_flight_requests
            or self._writing_paused
            or self._unauthenticated_busy
        )
        if full and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not full and self._reading_paused and not self._stopping:
            self.transport.resume_reading()
            self._reading_paused = False

    def check_timeouts(self, now: float, idle_s: float, partial_s: float) -> None:
        if self.frame_started is not None and not self._reading_paused and now - self.frame_started > partial_s:
            self.close(f"request incomplete after partial_request_timeout_ms={int(partial_s * 1000)}")
        elif now - self.last_activity > idle_s and (self._writing_paused or self._worker_idle()):
            # idle, or not reading the responses it asked for (then its buffer is released)
            self.close(f"idle for idle_timeout_ms={int(idle_s * 1000)}", level=logging.INFO)

    def _worker_idle(self) -> bool:
        return not self.queue and (self.worker is None or self.worker.done())

    def stop_reading(self) -> None:
        self._stopping = True
        self.queue.clear()
        if self.transport is not None and not self._closed and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True

    def close(self, reason: str | None, level: int = logging.WARNING) -> None:
        if self._closed:
            return
        self._closed = True
        if reason is not None:
            log.log(level, "closing %s: %s", self.session.peer, reason)
        self.queue.clear()
        if self.transport is not None:
            if self._writing_paused:  # close() would wait for a client that does not read
                self.transport.abort()
            else:
                self.transport.close()
