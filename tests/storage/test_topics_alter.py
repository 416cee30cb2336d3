"""TopicRegistry.alter: partitions can only be added, config overrides change, and the
metadata file is rewritten so that it is never missing and a crash (a real kill -9 at a
crash point) leaves the old topic or the new one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from logq import ConfigError, InvalidPartitionsError, UnknownTopicError
from logq.storage.log import PartitionLog
from logq.storage.topics import MAX_PARTITIONS, TopicRegistry, partition_dirs, partition_path


def _registry(tmp_path: Path, partitions: int = 2, **config: object) -> tuple[str, TopicRegistry]:
    root = str(tmp_path / "data")
    reg = TopicRegistry(root)
    reg.create("t", partitions, **config)
    return root, reg


def test_alter_adds_partition_directories_and_keeps_the_topic_id(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    before = reg.get("t")
    meta = reg.alter("t", partitions=5)
    assert meta.partitions == 5 and meta.topic_id == before.topic_id and meta.created_ms == before.created_ms
    assert partition_dirs(root, "t") == [0, 1, 2, 3, 4]
    with PartitionLog(partition_path(root, "t", 4), meta.config, create=False) as lg:
        assert lg.log_end_offset == 0  # a new partition is an empty log
    assert TopicRegistry(root).get("t").partitions == 5


def test_a_fresh_get_in_another_registry_sees_the_new_count(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    other = TopicRegistry(root)
    assert other.get("t", fresh=True).partitions == 2
    reg.alter("t", partitions=3)
    assert other.get("t").partitions == 2  # the cached copy, as documented
    assert other.get("t", fresh=True).partitions == 3
    assert other.get("t").partitions == 3


@pytest.mark.parametrize("asked", [2, 1, 0, -1, MAX_PARTITIONS + 1, "4", 2.5, True, None])
def test_partitions_can_only_grow_within_the_limit(tmp_path: Path, asked: object) -> None:
    root, reg = _registry(tmp_path)
    if asked is None:
        reg.alter("t")  # nothing asked: nothing changes
    else:
        with pytest.raises(InvalidPartitionsError) as e:
            reg.alter("t", partitions=asked)  # type: ignore[arg-type]
        assert e.value.partitions == 2 and e.value.requested == asked and e.value.topic == "t"
        assert "can only be added" in str(e.value)
    assert reg.get("t", fresh=True).partitions == 2
    assert partition_dirs(root, "t") == [0, 1]


def test_alter_of_an_unknown_topic_raises_unknown_topic(tmp_path: Path) -> None:
    _, reg = _registry(tmp_path)
    with pytest.raises(UnknownTopicError):
        reg.alter("nope", partitions=3)


def test_config_is_set_and_deleted_and_the_rest_kept(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path, retention_ms=-1, segment_bytes=1 << 20)
    meta = reg.alter("t", config={"retention_bytes": 4096}, delete_config=("segment_bytes",))
    assert meta.overrides == {"retention_ms": -1, "retention_bytes": 4096}
    fresh = TopicRegistry(root).get("t")
    assert fresh.overrides == {"retention_ms": -1, "retention_bytes": 4096}
    assert fresh.config.segment_bytes == 1 << 30  # back to the default
    assert fresh.partitions == 2


@pytest.mark.parametrize(
    ("config", "delete", "words"),
    [
        ({"bogus": 1}, (), "unknown topic setting 'bogus'"),
        ({}, ("bogus",), "unknown topic setting 'bogus'"),
        ({"retention_ms": "soon"}, (), "retention_ms"),
        ({"max_batch_bytes": 100_000}, (), "can only be raised"),
        ({"max_decompressed_bytes": 1 << 20}, (), "can only be raised"),
        ({"segment_index_bytes": 1 << 20}, (), "fixed at creation"),
    ],
)
def test_a_config_change_that_is_refused_changes_nothing(
    tmp_path: Path, config: dict[str, object], delete: tuple[str, ...], words: str
) -> None:
    root, reg = _registry(tmp_path, retention_ms=-1)
    with pytest.raises(ConfigError) as e:
        reg.alter("t", partitions=4, config=config, delete_config=delete)
    assert words in str(e.value)
    assert TopicRegistry(root).get("t").overrides == {"retention_ms": -1}
    assert partition_dirs(root, "t") == [0, 1]


def test_max_batch_bytes_can_be_raised(tmp_path: Path) -> None:
    _, reg = _registry(tmp_path)
    assert reg.alter("t", config={"max_batch_bytes": 4 << 20}).config.max_batch_bytes == 4 << 20


def test_the_previous_metadata_is_kept_as_backup(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    reg.alter("t", partitions=3)
    meta_file = Path(root) / "__logq" / "topics" / "t" / "meta"
    meta_file.write_bytes(b"garbage")  # the main copy damaged: the backup (2 partitions) is read
    assert TopicRegistry(root).get("t").partitions == 2


CRASH_CHILD = """
import sys
from logq.storage.topics import TopicRegistry
TopicRegistry(sys.argv[1]).alter("t", partitions=4, config={"retention_ms": 1000})
"""


def _alter_killed_at(root: str, site: str) -> None:
    env = dict(os.environ, LOGQ_CRASH_AT=site)
    child = subprocess.run([sys.executable, "-c", CRASH_CHILD, root], env=env, check=False)
    assert child.returncode == -signal.SIGKILL


def test_a_kill_before_the_metadata_is_written_leaves_the_old_topic(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    _alter_killed_at(root, "topic-alter-before-meta")
    after = TopicRegistry(root).get("t")
    assert after.partitions == 2 and after.overrides == {}
    assert partition_dirs(root, "t") == [0, 1, 2, 3]  # empty directories no metadata names yet
    meta = TopicRegistry(root).alter("t", partitions=4)  # the next alter reuses them
    assert meta.partitions == 4
    with PartitionLog(partition_path(root, "t", 3), meta.config, create=False) as lg:
        assert lg.log_end_offset == 0


def test_a_kill_between_the_backup_and_the_rename_leaves_the_old_topic(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    _alter_killed_at(root, "topic-alter-before-rename")
    after = TopicRegistry(root).get("t")
    assert after.partitions == 2 and after.overrides == {}
    assert TopicRegistry(root).alter("t", partitions=4).partitions == 4
    assert TopicRegistry(root).get("t").partitions == 4


READER_CHILD = """
import os, sys
from logq.storage.topics import TopicRegistry
from logq.errors import LogqError
reg = TopicRegistry(sys.argv[1])
reads = missing = 0
seen = set()
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[2]):
    try:
        seen.add(reg.get("t", fresh=True).overrides.get("retention_ms"))
    except LogqError as e:
        missing += 1
    reads += 1
print(reads, missing, len(seen))
"""


def test_a_reader_never_sees_the_topic_missing_while_its_config_changes(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER_CHILD, root, str(stop), str(ready)], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert reader.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        for i in range(300):
            reg.alter("t", config={"retention_ms": 1000 + i})
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    reads, missing, distinct = map(int, out.split())
    assert reads > 0 and missing == 0
    assert distinct >= 1


RACER = """
import sys
from logq import InvalidPartitionsError
from logq.storage.topics import TopicRegistry
reg = TopicRegistry(sys.argv[1])
for n in range(int(sys.argv[2]), 41, 2):  # one process asks the odd counts, the other the even ones
    try:
        reg.alter("t", partitions=n, config={"retention_ms": n})
    except InvalidPartitionsError:
        pass  # the other process got there first
"""


def test_two_processes_altering_at_once_leave_one_consistent_topic(tmp_path: Path) -> None:
    root, reg = _registry(tmp_path)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, root, str(first)]) for first in (3, 4)]
    for p in racers:
        assert p.wait(timeout=120) == 0
    meta = TopicRegistry(root).get("t")
    assert meta.partitions == 40 and meta.overrides == {"retention_ms": 40}
    assert partition_dirs(root, "t") == list(range(40))
