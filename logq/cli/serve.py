"""``logq serve``: run the Kafka-protocol broker (logq.Server) on the data directory.

Prints where it listens and what it serves on stdout, logs one line per connection event at
INFO on stderr, and stops cleanly on SIGTERM or SIGINT (in-flight requests answered, logs
closed). Every option maps to one ``logq.Server`` argument; see docs/server.md.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from logq.cli.options import CliState, bad_parameter, parse_key_values, pass_state
from logq.errors import ConfigError

if TYPE_CHECKING:
    from logq.server.server import Server

__all__ = ["COMMANDS", "parse_listen", "serve_command", "tls_context"]

DEFAULT_LISTEN = "127.0.0.1:9092"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9092`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise bad_parameter("--listen", f"{value!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host.strip("[]"), int(port)


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from a PEM certificate chain and key (None without both)."""
    if cert is None and key is None:
        return None
    if cert is None:
        raise ConfigError("--tls-key needs --tls-cert", hint="pass both, or neither")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"cannot load the TLS certificate {cert}: {e}", hint="check --tls-cert and --tls-key"
        ) from None
    return ctx


def _describe(server: Server) -> str:
    from logq.server.apis import Dispatcher  # the server (and kio) load only for `logq serve`

    apis = Dispatcher().versions
    topics = ", ".join(server.served) if server.served else "none yet"
    return (
        f"logq serve: listening on {server.address} ({'TLS' if server.ssl_context else 'plaintext'}"
        f"{', SASL' if server.auth is not None else ''}), data {server.data_dir}\n"
        f"topics: {topics}\n"
        f"Kafka APIs: {len(apis)} ({', '.join(str(k) for k in sorted(apis))}); "
        f"auto-create topics: {'on' if server.config.auto_create_topics else 'off'}"
    )


@click.command("serve")
@click.option("--data", "data_dir", metavar="DIR", default=None, help="Data directory (default: logq's --data).")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT", help="Address to bind.")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, help="PEM certificate chain: serve TLS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="PEM private key of --tls-cert.")
@click.option("--users", "users_file", type=click.Path(dir_okay=False), default=None, help="SASL users file.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --listen address without --users.")
@click.option("--no-auto-create", is_flag=True, help="Do not create topics on first use (Metadata requests).")
@click.option(
    "--share",
    "share_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A share-group setting of network members, e.g. lock_duration_ms=15000 (repeatable; see server.md).",
)
@pass_state
def serve_command(
    state: CliState,
    data_dir: str | None,
    listen: str,
    tls_cert: str | None,
    tls_key: str | None,
    users_file: str | None,
    insecure: bool,
    no_auto_create: bool,
    share_settings: tuple[str, ...],
) -> None:
    """Serve the data directory to Kafka clients (a Kafka-protocol broker)."""
    from logq.server.server import Server

    host, port = parse_listen(listen)
    server = Server(
        data_dir or state.data_dir,
        host,
        port,
        ssl_context=tls_context(tls_cert, tls_key),
        users_file=users_file,
        auto_create_topics=not no_auto_create,
        insecure=insecure,
        **share_options(share_settings),
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("logq.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def announce() -> None:
        if server.wait_started():
            click.echo(_describe(server))
            sys.stdout.flush()

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.serve()
    finally:
        logger.removeHandler(handler)
    click.echo("logq serve: stopped")


SHARE_INT_SETTINGS = (
    "lock_duration_ms",
    "delivery_count_limit",
    "max_in_flight",
    "session_timeout_ms",
    "heartbeat_interval_ms",
)
SHARE_STR_SETTINGS = ("auto_offset_reset", "dead_letter_topic")


def share_options(items: tuple[str, ...]) -> dict[str, Any]:
    """``--share NAME=VALUE`` items as ``logq.Server``'s ``share_NAME`` arguments."""
    out: dict[str, Any] = {}
    for name, value in parse_key_values(items, "--share"):
        if name in SHARE_INT_SETTINGS:
            try:
                out[f"share_{name}"] = int(value)
            except ValueError:
                raise bad_parameter("--share", f"{name} must be an integer, not {value!r}") from None
        elif name in SHARE_STR_SETTINGS:
            out[f"share_{name}"] = value
        else:
            known = ", ".join(SHARE_INT_SETTINGS + SHARE_STR_SETTINGS)
            raise bad_parameter("--share", f"unknown share setting {name!r} (known: {known})")
    return out


COMMANDS: list[click.Command] = [serve_command]
