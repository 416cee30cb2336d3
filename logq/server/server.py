"""``logq.Server``: the Kafka-protocol broker on a logq data directory, as a Python object.

Two ways to run it:

* ``with logq.Server(data_dir, port=0) as server:`` starts an event loop in a background
  thread, returns once the socket listens (``server.port`` is the real port), and stops on
  exit (in-flight requests answered, logs closed);
* ``server.serve()`` runs in the calling thread until ``stop()``, SIGTERM or SIGINT (what
  ``logq serve`` does).

Listening on an address that is not loopback needs authentication (``users_file``) or an
explicit ``insecure=True``: an open broker on a network is a choice, not a default.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import ipaddress
import logging
import signal
import ssl
import threading
from typing import Any

from logq.errors import ConfigError, LogqError
from logq.server.apis import Dispatcher
from logq.server.context import Broker, ServerConfig
from logq.server.sasl import load_authenticator
from logq.server.transport import Connections

__all__ = ["Server"]

log = logging.getLogger("logq.server")

SHUTDOWN_GRACE_S = 5.0
START_TIMEOUT_S = 30.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """A Kafka-protocol broker serving ``data_dir`` (see the module docstring)."""

    def __init__(
        self,
        data_dir: str,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        ssl_context: ssl.SSLContext | None = None,
        users_file: str | None = None,
        auto_create_topics: bool = True,
        insecure: bool = False,
        **limits: Any,
    ) -> None:
        if not isinstance(data_dir, str) or not data_dir:
            raise ConfigError(f"data_dir must be a non-empty str, not {data_dir!r}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}")
        try:
            self.config = ServerConfig(host=host, port=port, auto_create_topics=auto_create_topics, **limits)
        except TypeError as e:
            raise ConfigError(f"unknown Server option: {e}", hint="see docs/server.md for the limits") from None
        if not is_loopback(host) and users_file is None and not insecure:
            raise ConfigError(
                f"refusing to listen on {host} (not loopback) without authentication",
                hint="pass users_file (--users) or insecure=True (--insecure)",
            )
        self.data_dir = data_dir
        self.ssl_context = ssl_context
        self.auth = load_authenticator(users_file) if users_file is not None else None
        self.port = port
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_lock = threading.Lock()
        self._start_error: BaseException | None = None
        self._closed = False
        self.served: list[str] = []
        self._broker: Broker | None = None
        self._thread_of_loop: threading.Thread | None = None
        self._conns: Connections | None = None

    # ------------------------------------------------------------------ running
    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._thread_of_loop = threading.current_thread()
        self._stop = asyncio.Event()
        broker = Broker(self.data_dir, self.config, loop, self.auth)
        self._broker = broker
        try:
            dispatcher = Dispatcher()
            conns = Connections(broker, dispatcher, tls=self.ssl_context is not None)
            self._conns = conns
            try:
                server = await loop.create_server(
                    conns.factory, self.config.host, self.config.port, ssl=self.ssl_context, reuse_address=True
                )
            except OSError as e:
                raise ConfigError(
                    f"cannot listen on {self.config.host}:{self.config.port}: {e.strerror or e}",
                    hint="pick another --listen address or port, or stop what uses it",
                ) from None
            sock = server.sockets[0].getsockname()
            self.port = broker.advertised_port = int(sock[1])
            self.served = sorted(broker.registry.names())
            conns.start_sweeping()
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                server.close()
                await conns.close_all(SHUTDOWN_GRACE_S)
                await server.wait_closed()
        finally:
            await broker.close()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start(); logged if it happens later
            self._start_error = e
            if self._started.is_set():
                log.error("server stopped: %s", e)
        finally:
            self._started.set()

    def start(self) -> Server:
        """Listen, serving from a background thread; returns once the socket is bound.
        Starting a started server (from any thread) returns it as it is."""
        with self._start_lock:
            return self._start()

    def _start(self) -> Server:
        if self._closed:
            raise ConfigError("this Server was stopped; create a new one")
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run_thread, name="logq-server", daemon=True)
        self._thread.start()
        self._started.wait(START_TIMEOUT_S)
        err = self._start_error
        if err is not None:
            self._thread.join()
            self._closed = True
            if isinstance(err, LogqError):
                raise err
            raise ConfigError(f"the server could not start: {type(err).__name__}: {err}")
        atexit.register(self.stop)  # a server never stopped still closes its logs cleanly at exit
        return self

    def serve(self, *, handle_signals: bool = True) -> None:
        """Serve in this thread until ``stop()``, SIGTERM or SIGINT."""
        if self._closed or self._thread is not None:
            raise ConfigError("this Server is already running or was stopped; create a new one")

        async def main() -> None:
            loop = asyncio.get_running_loop()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.stop)
            await self._main()

        try:
            asyncio.run(main())
        finally:
            self._closed = True

    def wait_started(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """For ``serve()`` in another thread: wait until it listens (True) or failed."""
        return self._started.wait(timeout_s) and self._start_error is None

    def stop(self) -> None:
        """Stop serving: in-flight requests are answered (up to 5 s), logs closed. Idempotent."""
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._closed = True
        atexit.unregister(self.stop)

    close = stop

    def stats(self) -> dict[str, int]:
        """Open connections, connections accepted so far, fetches waiting for data,
        partition logs open, and response bytes waiting for clients to read them (read on
        the server's event loop, so any thread may call it)."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread_of_loop:
            return self._stats()

        async def read() -> dict[str, int]:
            return self._stats()

        try:
            return asyncio.run_coroutine_threadsafe(read(), loop).result(START_TIMEOUT_S)
        except (RuntimeError, TimeoutError, concurrent.futures.CancelledError):  # the loop stopped meanwhile
            return self._stats()

    def _stats(self) -> dict[str, int]:
        conns, broker = self._conns, self._broker
        return {
            "connections": len(conns.open) if conns is not None else 0,
            "accepted": conns.accepted if conns is not None else 0,
            "waiting_fetches": broker.waiting_fetches if broker is not None else 0,
            "open_logs": broker.open_logs if broker is not None else 0,
            "buffered_response_bytes": conns.buffered_response_bytes if conns is not None else 0,
        }

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Server({self.data_dir!r}, {self.address})"
