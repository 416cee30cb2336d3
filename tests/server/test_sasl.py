"""SASL of `logq serve`: SCRAM against RFC 7677's vector and kafka-python's client code, the
users file, the protocol rules on the wire, and real clients with right and wrong passwords."""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import time
from collections.abc import Iterator

import pytest
from logq import Admin, AuthenticationError, ConfigError, Consumer, Server
from logq.server import scram
from logq.server.sasl import add_user, load_authenticator, read_users, remove_user

from tests.server import wire

MECHS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PASSWORD = "s3cret pässword"


@pytest.fixture
def users(tmp_path: str) -> str:
    path = os.path.join(str(tmp_path), "users.json")
    add_user(path, "alice", PASSWORD)
    return path


@pytest.fixture
def sasl_server(root: str, users: str) -> Iterator[Server]:
    Admin(root).create_topic("t", partitions=1)
    with Server(root, port=0, users_file=users) as s:
        yield s


def _read_all(root: str) -> list[object]:
    """Every record of topic t, read embedded."""
    with Consumer(root, "t", auto_offset_reset="earliest") as c:
        return [r for batch in iter(lambda: c.poll(timeout=0.5), []) for r in batch]


# ----------------------------------------------------------------------------- SCRAM, pure


def test_scram_sha256_matches_the_rfc_7677_example(monkeypatch: pytest.MonkeyPatch) -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    keys = scram.derive_keys("SCRAM-SHA-256", "pencil", salt, 4096)
    monkeypatch.setattr(scram.secrets, "token_urlsafe", lambda n: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    server = scram.ScramServer("SCRAM-SHA-256", lambda u: keys if u == "user" else None, b"seed")
    first = server.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = server.final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.user == "user"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("password", [PASSWORD, "wrong"])
def test_scram_with_kafka_pythons_client_code(users: str, mech: str, password: str) -> None:
    from kafka.net.sasl.scram import ScramClient

    client = ScramClient("alice", password, mech)
    exchange = load_authenticator(users).start(mech)
    assert exchange is not None
    server_first, user = exchange.step(client.first_message())
    assert user is None
    client.process_server_first_message(server_first)
    if password != PASSWORD:
        with pytest.raises(AuthenticationError):
            exchange.step(client.final_message())
        return
    server_final, user = exchange.step(client.final_message())
    client.process_server_final_message(server_final)  # raises if the server's proof is wrong
    assert user == "alice"


def test_unknown_user_gets_a_stable_salt_and_fails_like_a_wrong_password(users: str) -> None:
    auth = load_authenticator(users)
    salts = []
    for _ in range(2):
        ex = auth.start("SCRAM-SHA-256")
        assert ex is not None
        first, _ = ex.step(b"n,,n=mallory,r=abc")
        salts.append(first.split(b",")[1])
    assert salts[0] == salts[1]
    with pytest.raises(AuthenticationError):
        ex.step(b"c=biws,r=" + first.split(b",")[0][2:] + b",p=" + base64.b64encode(b"x" * 32))


@pytest.mark.parametrize(
    "message",
    [b"", b"p=tls-unique,,n=a,r=b", b"n,,r=onlynonce", b"n,,n=a", b"\xff\xfe", b"n,,n=a,r=b,junk", b"x" * 5000],
)
def test_malformed_scram_messages_are_authentication_errors(users: str, message: bytes) -> None:
    ex = load_authenticator(users).start("SCRAM-SHA-512")
    assert ex is not None
    with pytest.raises(AuthenticationError):
        ex.step(message)


@pytest.mark.parametrize(
    "message", [b"\0alice\0" + PASSWORD.encode(), b"alice\0alice\0" + PASSWORD.encode()], ids=["no-authzid", "authzid"]
)
def test_plain_accepts_the_right_password(users: str, message: bytes) -> None:
    ex = load_authenticator(users).start("PLAIN")
    assert ex is not None and ex.step(message) == (b"", "alice")


@pytest.mark.parametrize(
    "message", [b"\0alice\0wrong", b"\0bob\0" + PASSWORD.encode(), b"bob\0alice\0" + PASSWORD.encode(), b"alice", b""]
)
def test_plain_refuses_wrong_passwords_users_and_shapes(users: str, message: bytes) -> None:
    ex = load_authenticator(users).start("PLAIN")
    assert ex is not None
    with pytest.raises(AuthenticationError):
        ex.step(message)


# ----------------------------------------------------------------------------- the users file


def test_users_file_holds_no_password_and_is_private(users: str) -> None:
    raw = open(users, encoding="utf-8").read()
    assert PASSWORD not in raw and "pässword" not in raw
    assert os.stat(users).st_mode & 0o077 == 0
    doc = json.loads(raw)
    assert set(doc["users"]["alice"]) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert set(doc["users"]["alice"]["SCRAM-SHA-256"]) == {"salt", "iterations", "stored_key", "server_key"}


def test_add_replace_remove_users(users: str) -> None:
    add_user(users, "bob", "one")
    add_user(users, "bob", "two")
    auth = load_authenticator(users)
    assert auth.check_password("bob", "two") and not auth.check_password("bob", "one")
    assert auth.check_password("alice", PASSWORD)
    assert remove_user(users, "bob") and not remove_user(users, "bob")
    assert set(read_users(users)) == {"alice"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read"),
        (b"not json", "not JSON"),
        (b"[]", "format 1"),
        (b'{"format": 1, "users": {"a": {}}}', "no SCRAM secrets"),
        (b'{"format": 1, "users": {"a": {"SCRAM-MD5": {}}}}', "unknown mechanism"),
        (b'{"format": 1, "users": {"a": {"SCRAM-SHA-256": {"iterations": 10}}}}', "iterations"),
    ],
)
def test_bad_users_files_are_config_errors_naming_the_problem(
    tmp_path: str, content: bytes | None, fragment: str
) -> None:
    path = os.path.join(str(tmp_path), "u.json")
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(ConfigError, match=fragment):
        load_authenticator(path)
    with pytest.raises(ConfigError):
        Server(str(tmp_path), port=0, users_file=path)


def test_users_file_argument_of_the_wrong_type(root: str) -> None:
    with pytest.raises(ConfigError):
        load_authenticator(123)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Server(root, port=0, users_file=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "password"), [("", "x"), ("a,b", "x"), ("a=b", "x"), ("bob", ""), (5, "x")])
def test_bad_user_names_and_passwords_are_refused(users: str, name: object, password: str) -> None:
    with pytest.raises(ConfigError):
        add_user(users, name, password)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the wire


def call(sock: object, key: int, version: int, corr: int, **fields: object) -> object:
    from logq.server import kio_api

    req = kio_api.make(wire.request_class(key, version), **fields)
    sock.sendall(wire.request_frame(key, version, corr, req))  # type: ignore[attr-defined]
    return wire.decode_response(key, version, wire.read_frame(sock))[1]  # type: ignore[arg-type]


def test_only_apiversions_and_sasl_before_authentication(sasl_server: Server) -> None:
    from logq.server import kio_api

    with wire.connect(sasl_server.port) as sock:
        hs = call(sock, 17, 1, 1, mechanism="SCRAM-SHA-256")
        assert hs.error_code == 0 and set(hs.mechanisms) == set(MECHS)  # type: ignore[attr-defined]
        req = kio_api.make(wire.request_class(3, 5), topics=None, allow_auto_topic_creation=False)
        sock.sendall(wire.request_frame(3, 5, 2, req))
        assert wire.closed_by_peer(sock)


def test_failed_authentication_answers_then_closes(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 1, 1, mechanism="PLAIN").error_code == 0  # type: ignore[attr-defined]
        r = call(sock, 36, 2, 2, auth_bytes=b"\0alice\0wrong")
        assert r.error_code == 58 and "Authentication failed" in r.error_message  # type: ignore[attr-defined]
        assert wire.closed_by_peer(sock)


def test_unknown_mechanism_and_authenticate_without_handshake(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        r = call(sock, 17, 1, 1, mechanism="GSSAPI")
        assert r.error_code == 33 and "PLAIN" in r.mechanisms  # type: ignore[attr-defined]
        r = call(sock, 36, 1, 2, auth_bytes=b"\0alice\0" + PASSWORD.encode())
        assert r.error_code == 34  # type: ignore[attr-defined]
        assert wire.closed_by_peer(sock)


def test_successful_plain_then_metadata(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        call(sock, 17, 1, 1, mechanism="PLAIN")
        assert call(sock, 36, 0, 2, auth_bytes=b"\0alice\0" + PASSWORD.encode()).error_code == 0  # type: ignore[attr-defined]
        md = call(sock, 3, 5, 3, topics=None, allow_auto_topic_creation=False)
        assert [t.name for t in md.topics] == ["t"]  # type: ignore[attr-defined]
        r = call(sock, 17, 1, 4, mechanism="PLAIN")  # a second handshake on an authenticated session
        assert r.error_code == 34  # type: ignore[attr-defined]


def raw(sock: object, token: bytes) -> bytes:
    """A bare SASL token (after a SaslHandshake v0) and the server's bare answer."""
    sock.sendall(struct.pack(">i", len(token)) + token)  # type: ignore[attr-defined]
    return wire.read_frame(sock)  # type: ignore[arg-type]


def test_handshake_v0_then_a_bare_plain_token_then_requests(sasl_server: Server) -> None:
    with wire.connect(sasl_server.port) as sock:
        hs = call(sock, 17, 0, 1, mechanism="PLAIN")
        assert hs.error_code == 0 and "PLAIN" in hs.mechanisms  # type: ignore[attr-defined]
        assert raw(sock, b"\0alice\0" + PASSWORD.encode()) == b""  # PLAIN's answer: the empty token
        md = call(sock, 3, 5, 2, topics=None, allow_auto_topic_creation=False)
        assert [t.name for t in md.topics] == ["t"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_handshake_v0_then_a_bare_scram_exchange_checked_by_kafka_pythons_client_code(
    sasl_server: Server, mech: str
) -> None:
    from kafka.net.sasl.scram import ScramClient

    client = ScramClient("alice", PASSWORD, mech)
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 0, 1, mechanism=mech).error_code == 0  # type: ignore[attr-defined]
        client.process_server_first_message(raw(sock, client.first_message()))
        client.process_server_final_message(raw(sock, client.final_message()))  # raises on a wrong server proof
        md = call(sock, 3, 5, 2, topics=None, allow_auto_topic_creation=False)
        assert [t.name for t in md.topics] == ["t"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("token", [b"\0alice\0wrong", b"not a PLAIN message", b""])
def test_handshake_v0_with_a_wrong_token_closes_without_an_answer(sasl_server: Server, token: bytes) -> None:
    with wire.connect(sasl_server.port) as sock:
        assert call(sock, 17, 0, 1, mechanism="PLAIN").error_code == 0  # type: ignore[attr-defined]
        sock.sendall(struct.pack(">i", len(token)) + token)
        assert wire.closed_by_peer(sock)  # EOF first: no answer came


def test_handshake_v0_tokens_are_not_requests_and_requests_are_not_tokens(sasl_server: Server) -> None:
    """A Metadata request sent where a bare token belongs is a (wrong) token: the connection
    closes and nothing is answered; SaslAuthenticate after a v1 handshake still works."""
    from logq.server import kio_api

    with wire.connect(sasl_server.port) as sock:
        call(sock, 17, 0, 1, mechanism="PLAIN")
        req = kio_api.make(wire.request_class(3, 5), topics=None, allow_auto_topic_creation=False)
        sock.sendall(wire.request_frame(3, 5, 2, req))
        assert wire.closed_by_peer(sock)
    with wire.connect(sasl_server.port) as sock:
        call(sock, 17, 1, 1, mechanism="PLAIN")
        assert call(sock, 36, 2, 2, auth_bytes=b"\0alice\0" + PASSWORD.encode()).error_code == 0  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- real clients


@pytest.mark.parametrize("mech", MECHS)
def test_kafka_python_authenticates_and_is_refused_with_a_wrong_password(
    sasl_server: Server, mech: str, caplog: pytest.LogCaptureFixture
) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    common = {"bootstrap_servers": sasl_server.address, "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mech}
    p = KafkaProducer(**common, sasl_plain_username="alice", sasl_plain_password=PASSWORD)
    assert p.send("t", b"hello").get(10).offset >= 0
    p.close()
    # kafka-python 3.0.12 does not stop at a failed SASL exchange: its connection's initialize()
    # swallows SaslAuthenticationFailedError, so the manager never records it as a sticky auth
    # failure and retries the bootstrap with backoff until bootstrap_timeout_ms (30 s by default),
    # then raises KafkaTimeoutError. Hence the short timeouts, and the server's log, not the
    # client's exception, shows that each attempt was refused as a wrong password.
    with caplog.at_level(logging.WARNING, logger="logq.server.auth"), pytest.raises(KafkaError):
        KafkaProducer(
            **common,
            sasl_plain_username="alice",
            sasl_plain_password="wrong",
            max_block_ms=1000,
            bootstrap_timeout_ms=1000,
        ).send("t", b"no").get(5)
    refusals = [r.getMessage() for r in caplog.records if r.name == "logq.server.auth"]
    assert refusals and all(f"SASL {mech} authentication of" in m and "failed" in m for m in refusals)
    assert [r.value for r in _read_all(sasl_server.data_dir)] == [b"hello"]


@pytest.mark.parametrize("mech", MECHS)
def test_kafka_python_pinned_below_1_0_authenticates_with_handshake_v0_and_bare_tokens(
    sasl_server: Server, mech: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafka-python with api_version=(0, 10, 2) sends SaslHandshake v0, then bare tokens."""
    from kafka import KafkaConsumer
    from logq.server.handlers import auth

    frames: list[bytes] = []
    real = auth.RawTokens.handle_raw_frame

    async def counting(self: auth.RawTokens, broker: object, session: object, frame: bytes) -> bytes | None:
        frames.append(frame)
        return await real(self, broker, session, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(auth.RawTokens, "handle_raw_frame", counting)
    c = KafkaConsumer(
        bootstrap_servers=sasl_server.address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mech,
        sasl_plain_username="alice",
        sasl_plain_password=PASSWORD,
        api_version=(0, 10, 2),
    )
    try:
        assert c.topics() == {"t"}
    finally:
        c.close()
    assert frames  # the tokens came bare: PLAIN's message, or SCRAM's client-first then client-final
    if mech == "PLAIN":
        assert all(f.endswith(b"\0alice\0" + PASSWORD.encode()) for f in frames)
    else:
        assert len(frames) % 2 == 0
        assert all(f.startswith(b"n,,n=alice,r=") for f in frames[0::2])
        assert all(f.startswith(b"c=biws,r=") for f in frames[1::2])


@pytest.mark.parametrize("mech", MECHS)
def test_confluent_kafka_authenticates_and_is_refused_with_a_wrong_password(sasl_server: Server, mech: str) -> None:
    from confluent_kafka import KafkaError, Producer

    def produce(password: str) -> tuple[list[object], list[object]]:
        errors: list[object] = []
        delivered: list[object] = []
        p = Producer(
            {
                "bootstrap.servers": sasl_server.address,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": mech,
                "sasl.username": "alice",
                "sasl.password": password,
                "message.timeout.ms": 3000,
                "error_cb": errors.append,
                "log_level": 0,
            }
        )
        p.produce("t", b"hello", on_delivery=lambda err, msg: delivered.append(err))
        deadline = time.monotonic() + 20
        while not delivered and not errors and time.monotonic() < deadline:
            p.poll(0.05)
        return errors, delivered

    errors, delivered = produce(PASSWORD)
    assert delivered == [None] and not errors
    errors, delivered = produce("wrong")
    assert None not in delivered
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors)  # type: ignore[attr-defined]


def test_aiokafka_scram_consumer_group_over_sasl(sasl_server: Server) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def main() -> list[bytes]:
        auth = {
            "bootstrap_servers": sasl_server.address,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "alice",
            "sasl_plain_password": PASSWORD,
        }
        p = AIOKafkaProducer(**auth)
        await p.start()
        await p.send_and_wait("t", b"via aiokafka")
        await p.stop()
        c = AIOKafkaConsumer("t", group_id="secure", auto_offset_reset="earliest", **auth)
        await c.start()
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            for recs in (await c.getmany(timeout_ms=200)).values():
                got += [r.value for r in recs]
        await c.commit()
        await c.stop()
        return got

    assert b"via aiokafka" in asyncio.run(main())
    assert Admin(sasl_server.data_dir).committed_offsets("secure")
