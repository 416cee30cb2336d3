"""`logq topics alter`: partitions only grow (keyed records then map over the new count, as in
Kafka), config overrides are set and deleted, and every refusal is one line that changes
nothing (partitions and config are written together or not at all)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from logq import Admin
from logq.client.partitioner import partition_for_key
from logq.storage.log import PartitionLog
from logq.storage.topics import partition_dirs, partition_path

from tests.cli.cli_helpers import ok, one_error_line, run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    ok(root, "topics", "create", "t", "--partitions", "2", "--config", "retention_ms=-1")
    return root


def _overrides(data: Path) -> dict[str, object]:
    with Admin(str(data)) as admin:
        return dict(admin.registry.get("t", fresh=True).overrides)


def _keys_by_partition(data: Path, count: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for p in range(count):
        with PartitionLog(partition_path(str(data), "t", p), readonly=True) as lg:
            out[p] = {r.key.decode() for r in lg.read_records(lg.log_start_offset)}
    return out


def test_adding_partitions_prints_the_change_and_keyed_records_map_over_the_new_count(data: Path) -> None:
    keys = [f"k{i}" for i in range(40)]
    assert ok(data, "topics", "alter", "t", "--partitions", "5").stdout == "Topic t: 2 -> 5 partition(s).\n"
    assert "PartitionCount: 5" in ok(data, "topics", "describe", "t").stdout
    assert partition_dirs(str(data), "t") == [0, 1, 2, 3, 4]
    ok(data, "produce", "t", "--key-separator", ":", input="".join(f"{k}:v\n" for k in keys))
    expected: dict[int, set[str]] = {p: set() for p in range(5)}
    for k in keys:
        expected[partition_for_key(k.encode(), 5)].add(k)
    assert _keys_by_partition(data, 5) == expected
    assert any(partition_for_key(k.encode(), 2) != partition_for_key(k.encode(), 5) for k in keys)


def test_config_is_set_and_deleted_with_kafka_names_too(data: Path) -> None:
    out = ok(data, "topics", "alter", "t", "--config", "retention.bytes=4096", "--config", "segment_ms=60000").stdout
    assert out == "Topic t: configs now retention_bytes=4096,retention_ms=-1,segment_ms=60000.\n"
    assert (
        "Configs: retention_bytes=4096,retention_ms=-1,segment_ms=60000" in ok(data, "topics", "describe", "t").stdout
    )
    out = ok(data, "topics", "alter", "t", "--delete-config", "retention.ms", "--delete-config", "segment_ms").stdout
    assert out == "Topic t: configs now retention_bytes=4096.\n"
    assert _overrides(data) == {"retention_bytes": 4096}
    ok(data, "topics", "alter", "t", "--delete-config", "retention_bytes")
    assert ok(data, "topics", "alter", "t", "--partitions", "3", "--config", "retention_ms=1000").stdout == (
        "Topic t: 2 -> 3 partition(s).\nTopic t: configs now retention_ms=1000.\n"
    )


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (["--partitions", "2"], 1, "partitions can only be added"),
        (["--partitions", "1"], 1, "partitions can only be added"),
        (["--partitions", "0"], 2, "--partitions"),
        (["--partitions", "10001"], 2, "--partitions"),
        (["--partitions", "four"], 2, "--partitions"),
        ([], 2, "nothing to change"),
        (["--config", "bogus=1"], 2, "unknown setting 'bogus'"),
        (["--config", "retention_ms"], 2, "is not KEY=VALUE"),
        (["--config", "retention_ms=soon"], 2, "must be an integer"),
        (["--delete-config", "bogus"], 2, "unknown setting 'bogus'"),
        (["--config", "retention_ms=5", "--delete-config", "retention.ms"], 2, "both --config and --delete-config"),
        (["--partitions", "4", "--config", "max_batch_bytes=100000"], 1, "can only be raised"),
        (["--partitions", "4", "--config", "segment_index_bytes=1048576"], 1, "fixed at creation"),
    ],
)
def test_a_refused_alter_is_one_line_and_changes_nothing(
    data: Path, args: list[str], exit_code: int, words: str
) -> None:
    line = one_error_line(run(data, "topics", "alter", "t", *args), exit_code=exit_code)
    assert words in line
    assert partition_dirs(str(data), "t") == [0, 1]
    assert _overrides(data) == {"retention_ms": -1}


def test_alter_of_a_missing_topic_or_data_directory_is_one_line(tmp_path: Path, data: Path) -> None:
    assert "does not exist" in one_error_line(run(data, "topics", "alter", "nope", "--partitions", "3"), exit_code=1)
    missing = tmp_path / "missing"
    assert "does not exist" in one_error_line(run(missing, "topics", "alter", "t", "--partitions", "3"), exit_code=1)
    assert not missing.exists()


def test_consume_reads_the_new_partitions(data: Path) -> None:
    ok(data, "topics", "alter", "t", "--partitions", "3")
    ok(data, "produce", "t", "--partition", "2", input=b"late\n")
    assert ok(data, "consume", "t", "--from-beginning").stdout == "late\n"
    assert ok(data, "offsets", "t").stdout.splitlines() == ["t:0:0", "t:1:0", "t:2:1"]


def test_if_not_exists_and_if_exists_make_create_and_delete_idempotent(data: Path) -> None:
    assert "already exists" in one_error_line(run(data, "topics", "create", "t"), exit_code=1)
    again = ok(data, "topics", "create", "t", "--partitions", "9", "--if-not-exists")
    assert again.stdout == "Topic t already exists.\n"
    assert partition_dirs(str(data), "t") == [0, 1]  # left as it was
    ok(data, "topics", "--create", "--topic", "t", "--if-not-exists")  # Kafka's spelling too
    assert ok(data, "topics", "delete", "t", "--if-exists").stdout == "Deleted topic t.\n"
    assert ok(data, "topics", "delete", "t", "--if-exists").stdout == "Topic t does not exist.\n"
    assert ok(data, "topics", "--delete", "--topic", "t", "--if-exists").stdout == "Topic t does not exist.\n"
    assert "does not exist" in one_error_line(run(data, "topics", "delete", "t"), exit_code=1)
    assert "invalid topic" in one_error_line(run(data, "topics", "delete", "a/b", "--if-exists"), exit_code=1)


def test_a_running_group_consume_reads_a_partition_added_under_it(data: Path) -> None:
    """A real `logq consume --group --follow` process; partitions added, a record sent to the new
    one arrives; Ctrl-C (SIGINT) commits it."""
    logq = os.path.join(os.path.dirname(sys.executable), "logq")
    ok(data, "produce", "t", "--partition", "0", input=b"first\n")
    proc = subprocess.Popen(
        [logq, "--data", str(data), "consume", "t", "--group", "g", "--from-beginning", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a bound for a hung test, not a measurement
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "first\n"
        ok(data, "topics", "alter", "t", "--partitions", "3")
        ok(data, "produce", "t", "--partition", "2", input=b"in-new\n")
        assert proc.stdout.readline() == "in-new\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Processed a total of 2 messages" in err
    with Admin(str(data)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 1, ("t", 1): 0, ("t", 2): 1}
