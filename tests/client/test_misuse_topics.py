"""Misuse tier: topic lifecycles. A name deleted and created again is another topic.

Each topic incarnation has an id (Kafka's topic ID); committed offsets carry it, so a group
never resumes a new topic at the position it had in a deleted one of the same name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from logq import Admin, Consumer, InvalidOffsetCommitError, Producer
from logq.groups.member import group_dir
from logq.groups.offsets import OffsetStore
from logq.storage.meta import decode_meta, write_meta
from logq.storage.topics import TopicRegistry, partition_path


def _produce(root: Path, topic: str, n: int) -> None:
    with Producer(str(root)) as prod:
        for i in range(n):
            prod.send(topic, b"v%d" % i, partition=0)


def _consume(root: Path, topic: str, group: str, want: int) -> list[bytes]:
    """What a new member of ``group`` reads (auto_offset_reset=earliest), up to ``want`` records."""
    got: list[bytes] = []
    with Consumer(str(root), group_id=group, auto_offset_reset="earliest", enable_auto_commit=False) as c:
        c.subscribe([topic])
        for _ in range(50):  # polls, not time: stop as soon as the records are there
            got += [r.value for r in c.poll(timeout=0.2)]
            if len(got) >= want:
                break
    return got


def _logq(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logq.cli", "--data", str(root), *args], capture_output=True, text=True, timeout=60
    )


def test_a_recreated_topic_does_not_inherit_the_old_group_offsets(tmp_path: Path) -> None:
    # The report: commit 1000, delete and create again, produce 10 -> the group skipped all
    # 10 ("offset 1000 is past the log end") and `groups describe` showed lag -990.
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t")
    _produce(tmp_path, "t", 1000)
    with Admin(str(tmp_path)) as admin:
        admin.reset_offsets("g", {("t", 0): 1000})
        admin.delete_topic("t")
        admin.create_topic("t")
    _produce(tmp_path, "t", 10)

    with Admin(str(tmp_path)) as admin:
        info = admin.describe_group("g")
    assert [(r.topic, r.partition, r.committed, r.log_end_offset, r.lag) for r in info.partitions] == []
    assert any("ignored" in p for p in info.problems)
    shown = _logq(tmp_path, "groups", "describe", "g")
    assert shown.returncode == 0, shown.stderr
    assert "-990" not in shown.stdout

    assert _consume(tmp_path, "t", "g", 10) == [b"v%d" % i for i in range(10)]


def test_a_commit_for_the_new_incarnation_replaces_the_old_offsets_of_the_topic(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t", partitions=2)
    _produce(tmp_path, "t", 5)
    with Admin(str(tmp_path)) as admin:
        admin.reset_offsets("g", {("t", 0): 5})
        admin.delete_topic("t")
        admin.create_topic("t", partitions=2)
    _produce(tmp_path, "t", 3)
    with Admin(str(tmp_path)) as admin:
        admin.reset_offsets("g", {("t", 0): 2})
        assert admin.committed_offsets("g") == {("t", 0): 2}
        info = admin.describe_group("g")
    assert [(r.committed, r.log_end_offset, r.lag) for r in info.partitions] == [(2, 3, 1)]
    body = decode_meta(Path(group_dir(str(tmp_path), "g"), "offsets").read_bytes())
    assert body["offsets"] == {"t": {"0": 2}}


def test_a_late_commit_naming_the_old_incarnation_is_refused_and_keeps_the_new_offsets(tmp_path: Path) -> None:
    """Bug: a commit that raced past the consumer's incarnation check, naming the old topic id,
    dropped every offset already committed for the new incarnation and stamped the old id."""
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t", partitions=2)
    old_id = TopicRegistry(str(tmp_path)).get("t").topic_id
    _produce(tmp_path, "t", 5)
    with Admin(str(tmp_path)) as admin:
        admin.delete_topic("t")
        admin.create_topic("t", partitions=2)
    _produce(tmp_path, "t", 3)
    with Admin(str(tmp_path)) as admin:
        admin.reset_offsets("g", {("t", 0): 2, ("t", 1): 0})
    store = OffsetStore(group_dir(str(tmp_path), "g"))
    try:
        store.commit({("t", 1): 4}, topic_ids={"t": old_id})
    except InvalidOffsetCommitError as e:
        assert (e.topic, e.partition, e.offset) == ("t", 1, 4)
        assert old_id in e.reason
    else:
        raise AssertionError("a commit for the deleted incarnation was accepted")
    with Admin(str(tmp_path)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 2, ("t", 1): 0}


def test_every_topic_gets_an_id_at_creation_and_a_recreated_topic_a_new_one(tmp_path: Path) -> None:
    with Admin(str(tmp_path)) as admin:
        first = admin.create_topic("t").topic_id
        assert len(first) == 22  # 16 bytes in Kafka's base64 form
        assert admin.describe_topic("t").topic_id == first
        admin.delete_topic("t")
        second = admin.create_topic("t").topic_id
    assert second != first
    other = TopicRegistry(str(tmp_path))  # another process's view agrees
    assert other.get("t").topic_id == second
    other.close()
    shown = _logq(tmp_path, "topics", "describe", "t")
    assert f"TopicId: {second}" in shown.stdout
    as_json = json.loads(_logq(tmp_path, "topics", "describe", "t", "--json").stdout)
    assert as_json["topicId"] == second


def test_a_cached_registry_sees_a_topic_recreated_by_another_process_when_asked_fresh(tmp_path: Path) -> None:
    reg = TopicRegistry(str(tmp_path))
    old = reg.create("t", 1)
    with Admin(str(tmp_path)) as admin:
        admin.delete_topic("t")
        new = admin.create_topic("t", partitions=3)
    assert reg.get("t") == old  # the cached view, as before
    assert reg.get("t", fresh=True).topic_id == new.topic_id
    assert reg.get("t", fresh=True).partitions == 3
    reg.close()


def _old_format_data_dir(root: Path) -> None:
    """A data directory as the previous logq wrote it: topic meta and offsets without ids."""
    with Admin(str(root)) as admin:
        admin.create_topic("t")
    _produce(root, "t", 20)
    meta = root / "__logq" / "topics" / "t" / "meta"
    write_meta(str(meta), {"name": "t", "partitions": 1, "overrides": {}, "created_ms": 1_700_000_000_000})
    os.unlink(str(meta) + ".bak")
    gdir = Path(group_dir(str(root), "g"))
    OffsetStore(str(gdir)).close()  # the group's directories and lock file
    write_meta(str(gdir / "offsets"), {"format": 1, "offsets": {"t": {"0": 15}}}, sync=False)


def test_a_data_directory_written_before_topic_ids_keeps_its_offsets(tmp_path: Path) -> None:
    _old_format_data_dir(tmp_path)
    meta_before = (tmp_path / "__logq" / "topics" / "t" / "meta").read_bytes()
    with Admin(str(tmp_path)) as admin:
        tid = admin.describe_topic("t").topic_id
        assert [(r.committed, r.lag) for r in admin.describe_group("g").partitions] == [(15, 5)]
    assert TopicRegistry(str(tmp_path)).get("t").topic_id == tid  # derived the same everywhere
    assert (tmp_path / "__logq" / "topics" / "t" / "meta").read_bytes() == meta_before  # never rewritten
    assert _consume(tmp_path, "t", "g", 5) == [b"v%d" % i for i in range(15, 20)]


def test_old_offsets_are_stamped_by_the_next_commit_so_a_later_recreate_does_not_inherit_them(
    tmp_path: Path,
) -> None:
    _old_format_data_dir(tmp_path)
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("u")
        tid = admin.describe_topic("t").topic_id
        admin.reset_offsets("g", {("u", 0): 0})  # a commit for another topic
        body = decode_meta(Path(group_dir(str(tmp_path), "g"), "offsets").read_bytes())
        assert body["topic_ids"]["t"] == tid and body["offsets"]["t"] == {"0": 15}
        admin.delete_topic("t")
        admin.create_topic("t")
    _produce(tmp_path, "t", 3)
    assert _consume(tmp_path, "t", "g", 3) == [b"v0", b"v1", b"v2"]


def test_offsets_written_with_ids_stay_readable_by_the_previous_reader(tmp_path: Path) -> None:
    # The previous reader accepted {"format": 1, "offsets": {...}} and ignored other keys.
    with Admin(str(tmp_path)) as admin:
        admin.create_topic("t")
    _produce(tmp_path, "t", 4)
    with Admin(str(tmp_path)) as admin:
        admin.reset_offsets("g", {("t", 0): 4})
    body = decode_meta(Path(group_dir(str(tmp_path), "g"), "offsets").read_bytes())
    assert body["format"] == 1 and body["offsets"] == {"t": {"0": 4}}
    assert os.path.isdir(partition_path(str(tmp_path), "t", 0))
