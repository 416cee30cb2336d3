"""`logq produce --compression-type CODEC` (kafka-console-producer's `--compression-codec` as an
alias) and `logq perf produce --compression-type CODEC`: the batches are stored compressed
with that codec, read back as they were sent, and the perf harness reports the ratio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from logq.cli.kafka_aliases import rewrite

from tests.cli.cli_helpers import ok, one_error_line, run

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
LINES = b"".join(b"event %d of the same shape, compressible\n" % i for i in range(300))


def codecs_on_disk(data: Path, topic: str = "t") -> set[str]:
    """The codec of every batch of ``topic``-0, as `logq dump` prints it."""
    return set(re.findall(r"compresscodec: (\w+)", ok(data, "dump", str(data / f"{topic}-0")).stdout))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    ok(d, "topics", "create", "t")
    return d


@pytest.mark.parametrize("codec", CODECS)
def test_produce_stores_batches_with_the_codec_asked_for_and_reads_them_back(data: Path, codec: str) -> None:
    ok(data, "produce", "t", "--compression-type", codec, input=LINES)
    assert codec in codecs_on_disk(data) <= {codec, "none"}  # a batch compression would grow stays plain
    assert ok(data, "consume", "t", "--from-beginning").stdout.encode() == LINES


def test_produce_without_the_option_follows_the_topics_compression_type(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(data, "topics", "create", "t", "--config", "compression_type=lz4")
    ok(data, "produce", "t", input=LINES)
    assert "lz4" in codecs_on_disk(data) <= {"lz4", "none"}
    ok(data, "produce", "t", "--compression-type", "gzip", input=LINES)  # the producer's choice wins
    assert "gzip" in codecs_on_disk(data)


@pytest.mark.parametrize(
    ("kafka", "logq"),
    [
        ("produce --topic t --compression-codec lz4", "produce t --compression-type lz4"),
        ("produce --topic t --compression-codec=zstd", "produce t --compression-type zstd"),
        ("produce --topic t --compression-codec=", "produce t --compression-type gzip"),
        ("produce --compression-codec --topic t", "produce t --compression-type gzip"),
        ("produce --topic t --compression-codec", "produce t --compression-type gzip"),
        ("produce t --compression-codec in.txt", "produce t --compression-type gzip in.txt"),
        ("produce t -- --compression-codec", "produce t -- --compression-codec"),
    ],
)
def test_kafkas_compression_codec_becomes_compression_type_gzip_without_a_value(kafka: str, logq: str) -> None:
    assert rewrite(kafka.split()) == logq.split()


def test_the_kafka_spelling_runs_the_same_command(data: Path) -> None:
    ok(data, "produce", "--topic", "t", "--compression-codec", "snappy", input=LINES)
    ok(data, "produce", "--topic", "t", "--compression-codec", input=LINES)
    assert {"snappy", "gzip"} <= codecs_on_disk(data) <= {"snappy", "gzip", "none"}


@pytest.mark.parametrize("args", [["--compression-type", "brotli"], ["--compression-codec", "GZIP"]])
def test_an_unknown_codec_is_one_usage_error_and_writes_nothing(data: Path, args: list[str]) -> None:
    line = one_error_line(run(data, "produce", "--topic", "t", *args, input=b"x\n"), exit_code=2)
    assert "compression" in line or "GZIP" in line
    assert ok(data, "consume", "t", "--from-beginning").stdout == ""


def test_a_codec_whose_library_is_missing_is_one_error_line(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logq.codec.compression as compression

    monkeypatch.setattr(compression, "_cramjam", lambda: None)
    line = one_error_line(run(data, "produce", "t", "--compression-type", "zstd", input=b"x\n"), exit_code=1)
    assert "cramjam" in line
    assert ok(data, "consume", "t", "--from-beginning").stdout == ""


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_perf_produce_measures_a_codec_and_reports_its_ratio(tmp_path: Path, codec: str) -> None:
    args = ["perf", "produce", "--topic", "p", "--num-records", "3000", "--record-size", "200"]
    res = ok(tmp_path, *args, "--compression-type", codec, "--json")
    total = json.loads(res.stdout.splitlines()[-1])
    assert total["type"] == "total" and total["records"] == 3000
    assert total["compression_type"] == codec
    assert 0 < total["compression_rate"] < 1  # random letters A-Z: about 5 bits of 8
    assert codec in codecs_on_disk(tmp_path, "p")
    text = ok(tmp_path, *args, "--compression-type", codec)
    assert re.search(rf"compression: {codec}, 0\.\d+ bytes stored per byte sent", text.stderr)


def test_perf_produce_without_a_codec_reports_the_topic_default(tmp_path: Path) -> None:
    res = ok(tmp_path, "perf", "produce", "--topic", "p", "--num-records", "100", "--record-size", "10", "--json")
    total = json.loads(res.stdout.splitlines()[-1])
    assert total["compression_type"] == "topic default" and total["compression_rate"] == 1.0
