"""kcat (librdkafka's command-line client) against logq.Server: produce keyed records with
headers under each codec, read them back with kcat and with an embedded Consumer, list
metadata. Skipped when kcat is not installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from logq import Consumer, Server

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")


def _kcat(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_produces_and_consumes_every_codec(server: Server, bootstrap: str, root: str, codec: str) -> None:
    topic = f"kcat-{codec}"
    lines = "".join(f"k{i}:v{i}\n" for i in range(10))
    _kcat(
        "-b",
        bootstrap,
        "-P",
        "-t",
        topic,
        "-K:",
        "-z",
        codec,
        "-H",
        "src=kcat",
        "-X",
        "enable.idempotence=true",
        stdin=lines,
    )
    out = _kcat("-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k:%s:%h\n")
    assert out.splitlines() == [f"k{i}:v{i}:src=kcat" for i in range(10)]
    with Consumer(root, topic, group_id=None, auto_offset_reset="earliest") as c:
        assert [r.value for r in c.poll(timeout=5)] == [f"v{i}".encode() for i in range(10)]


def test_kcat_lists_the_broker_and_topics(server: Server, bootstrap: str) -> None:
    _kcat("-b", bootstrap, "-P", "-t", "listed", stdin="x\n")
    out = _kcat("-b", bootstrap, "-L")
    assert "1 brokers" in out and 'topic "listed" with 1 partitions' in out
