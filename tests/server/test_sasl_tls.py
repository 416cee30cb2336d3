"""TLS (and SASL over TLS) of `logq serve` with real clients and a self-signed certificate
made in the test with the ``openssl`` command (skipped with a reason when it is missing)."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator

import pytest
from logq import Admin, Server
from logq.server.sasl import add_user

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = str(tmp_path_factory.mktemp("tls"))
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
            "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(root: str, cert: tuple[str, str], tmp_path: str) -> Iterator[Server]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    users = os.path.join(str(tmp_path), "users.json")
    add_user(users, "alice", "pw-alice")
    Admin(root).create_topic("t", partitions=2)
    with Server(root, port=0, ssl_context=ctx, users_file=users) as s:
        yield s


def test_kafka_python_sasl_ssl_group_round_trip(tls_server: Server, cert: tuple[str, str]) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    common = {
        "bootstrap_servers": tls_server.address,
        "security_protocol": "SASL_SSL",
        "ssl_cafile": cert[0],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "pw-alice",
    }
    p = KafkaProducer(**common)
    p.send("t", b"over tls", partition=1).get(10)
    p.close()
    c = KafkaConsumer("t", group_id="tls", auto_offset_reset="earliest", consumer_timeout_ms=10_000, **common)
    got = next(iter(c))
    c.commit()
    c.close()
    assert got.value == b"over tls"
    assert Admin(tls_server.data_dir).committed_offsets("tls")[("t", 1)] == 1


def test_confluent_kafka_sasl_ssl_plain(tls_server: Server, cert: tuple[str, str]) -> None:
    from confluent_kafka import Consumer, Producer

    common = {
        "bootstrap.servers": tls_server.address,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": cert[0],
        "sasl.mechanism": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": "pw-alice",
    }
    p = Producer(common)
    p.produce("t", b"rdk over tls", partition=0)
    assert p.flush(10) == 0
    c = Consumer({**common, "group.id": "tls-rdk", "auto.offset.reset": "earliest"})
    c.subscribe(["t"])
    msg = None
    for _ in range(100):
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            break
    c.close()
    assert msg is not None and msg.value() == b"rdk over tls"


def test_aiokafka_sasl_ssl_scram_256(tls_server: Server, cert: tuple[str, str]) -> None:
    from aiokafka import AIOKafkaProducer

    async def main() -> int:
        p = AIOKafkaProducer(
            bootstrap_servers=tls_server.address,
            security_protocol="SASL_SSL",
            ssl_context=ssl.create_default_context(cafile=cert[0]),
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username="alice",
            sasl_plain_password="pw-alice",
        )
        await p.start()
        md = await p.send_and_wait("t", b"aio over tls", partition=0)
        await p.stop()
        return int(md.offset)

    assert asyncio.run(main()) >= 0


def test_a_client_that_does_not_trust_the_certificate_cannot_connect(tls_server: Server) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):
        KafkaProducer(
            bootstrap_servers=tls_server.address,
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_plain_username="alice",
            sasl_plain_password="pw-alice",
            bootstrap_timeout_ms=2000,
        )


def test_logq_serve_command_with_users_tls_and_a_non_loopback_address(
    root: str, cert: tuple[str, str], tmp_path: str
) -> None:
    import signal
    import sys

    from kafka import KafkaProducer

    logq_cmd = os.path.join(os.path.dirname(sys.executable), "logq")
    users = os.path.join(str(tmp_path), "users.json")
    added = subprocess.run(
        [logq_cmd, "serve-users", "add", "--users", users, "--name", "bob"],
        input="bobs password\n",
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0 and "bob" in added.stdout and "bobs password" not in open(users).read()
    proc = subprocess.Popen(
        [
            logq_cmd,
            "--data",
            root,
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--users",
            users,
            "--tls-cert",
            cert[0],
            "--tls-key",
            cert[1],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "TLS, SASL" in first, first
        port = int(first.split(" (")[0].rsplit(":", 1)[1])
        p = KafkaProducer(
            bootstrap_servers=f"127.0.0.1:{port}",
            security_protocol="SASL_SSL",
            ssl_cafile=cert[0],
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username="bob",
            sasl_plain_password="bobs password",
        )
        p.send("cli", b"via logq serve").get(10)
        p.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert Admin(root).log_offsets("cli", 0)[1] == 1
