"""`logq serve` as a command (one-line errors, no traceback) and TLS with a real client."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from logq import Server

from tests.server import wire


def _logq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logq", *args], capture_output=True, text=True, timeout=60)


def test_a_non_loopback_listen_without_auth_fails_with_one_line_naming_insecure(root: str) -> None:
    res = _logq("serve", "--data", root, "--listen", "0.0.0.0:0")
    assert res.returncode != 0
    assert "--insecure" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("listen", ["9092", "host:", ":9092", "h:99999", "h:x"])
def test_a_bad_listen_address_is_a_usage_error(root: str, listen: str) -> None:
    res = _logq("serve", "--data", root, "--listen", listen)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_a_missing_tls_certificate_fails_with_one_line(root: str, tmp_path: Path) -> None:
    res = _logq("serve", "--data", root, "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "none.pem"))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "certificate" in res.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_confluent_kafka_produces_and_consumes_over_tls(root: str, tmp_path: Path) -> None:
    import confluent_kafka as ck

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    with Server(root, port=0, ssl_context=ctx) as srv:
        conf = {
            "bootstrap.servers": f"127.0.0.1:{srv.port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(cert),
        }
        p = ck.Producer(conf)
        for i in range(5):
            p.produce("tls", value=b"secret-%d" % i)
        assert p.flush(30) == 0
        c = ck.Consumer({**conf, "group.id": "unused"})
        c.assign([ck.TopicPartition("tls", 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        c.close()
    assert got == [b"secret-%d" % i for i in range(5)]


def test_logq_serve_prints_where_it_listens_and_what_it_serves_and_stops_on_sigterm(root: str) -> None:
    import signal

    from logq import Admin

    with Admin(root) as a:
        a.create_topic("orders", partitions=2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logq", "serve", "--data", root, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first, second = proc.stdout.readline(), proc.stdout.readline()
    assert first.startswith("logq serve: listening on 127.0.0.1:") and "plaintext" in first
    port = int(first.split("127.0.0.1:")[1].split()[0])
    assert second.strip() == "topics: orders"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(wire.request_frame(18, 0, 1, wire.request_class(18, 0)()))
        wire.read_frame(s)  # answered: the connection was accepted (and logged)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "logq serve: stopped" in out
    assert "INFO connection from 127.0.0.1:" in err and "Traceback" not in err


def test_a_server_never_stopped_closes_its_logs_cleanly_when_the_interpreter_exits(root: str) -> None:
    from logq.storage.log import PartitionLog

    script = (
        "import sys, logq\n"
        "from kafka import KafkaProducer\n"
        "srv = logq.Server(sys.argv[1], port=0).start()\n"
        "p = KafkaProducer(bootstrap_servers=f'127.0.0.1:{srv.port}')\n"
        "p.send('left-open', b'v').get(timeout=30)\n"
        "p.close()\n"  # no srv.stop(): the interpreter exits with the server running
    )
    res = subprocess.run([sys.executable, "-c", script, root], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    with PartitionLog(f"{root}/left-open-0") as lg:
        assert lg.report.clean  # the last writer recorded a clean shutdown
        assert lg.log_end_offset == 1
