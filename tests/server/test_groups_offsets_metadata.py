"""Committed offsets keep the metadata string a Kafka client commits (logq/groups/offsets.py)."""

from __future__ import annotations

import json
import os

import pytest
from logq.errors import ConfigError, GroupNotEmptyError, InvalidOffsetCommitError
from logq.groups.offsets import MAX_METADATA_CHARS, OffsetStore
from logq.storage.meta import encode_meta


def test_metadata_round_trips_and_a_commit_without_it_clears_it(tmp_path: str) -> None:
    gdir = os.path.join(str(tmp_path), "g")
    with OffsetStore(gdir) as store:
        store.commit({("t", 0): 5, ("t", 1): 7}, metadata={("t", 0): "épsilon \u2603"})
        assert store.all_with_metadata() == {("t", 0): (5, "épsilon \u2603"), ("t", 1): (7, "")}
    with OffsetStore(gdir) as again:  # from the file, not the cache
        assert again.all_with_metadata()[("t", 0)] == (5, "épsilon \u2603")
        again.commit({("t", 0): 6})
        assert again.all_with_metadata()[("t", 0)] == (6, "")
        assert again.all() == {("t", 0): 6, ("t", 1): 7}


def test_a_file_without_metadata_reads_as_empty_strings(tmp_path: str) -> None:
    gdir = os.path.join(str(tmp_path), "g")
    os.makedirs(gdir)
    body = {"format": 1, "offsets": {"t": {"0": 3}}, "topic_ids": {"t": None}}
    for name in ("offsets", "offsets.bak"):
        with open(os.path.join(gdir, name), "wb") as f:
            f.write(encode_meta(body))
    with OffsetStore(gdir, topic_id=lambda t: None) as store:
        assert store.all_with_metadata() == {("t", 0): (3, "")}


def test_metadata_is_stored_beside_the_offsets_an_older_reader_understands(tmp_path: str) -> None:
    gdir = os.path.join(str(tmp_path), "g")
    with OffsetStore(gdir) as store:
        store.commit({("t", 0): 1}, metadata={("t", 0): "m"})
    raw = open(os.path.join(gdir, "offsets"), "rb").read()
    doc = json.loads(raw[raw.index(b"{") :])
    assert doc["offsets"] == {"t": {"0": 1}} and doc["metadata"] == {"t": {"0": "m"}} and doc["format"] == 1


def test_bad_metadata_is_refused_with_a_logq_error(tmp_path: str) -> None:
    with OffsetStore(os.path.join(str(tmp_path), "g")) as store:
        with pytest.raises(InvalidOffsetCommitError):
            store.commit({("t", 0): 1}, metadata={("t", 0): "x" * (MAX_METADATA_CHARS + 1)})
        with pytest.raises(InvalidOffsetCommitError):
            store.commit({("t", 0): 1}, metadata={("t", 0): 5})  # type: ignore[dict-item]
        with pytest.raises(ConfigError):
            store.commit({("t", 0): 1}, metadata={("t", 9): "x"})
        assert store.all() == {}


def test_coordinated_commit_skips_the_membership_checks(tmp_path: str) -> None:
    from logq.groups.member import GroupMember

    root = str(tmp_path)
    with GroupMember(root, "g", lambda: {"t": 1}, heartbeat_thread=False):
        with OffsetStore.for_group(root, "g") as store:
            with pytest.raises(GroupNotEmptyError):
                store.commit({("t", 0): 1})
            store.commit({("t", 0): 1}, coordinated=True)
            assert store.all() == {("t", 0): 1}
