"""Topic names, the topic registry and where partitions live in a data directory.

Layout of a data directory::

    <root>/<topic>-<partition>/            one PartitionLog per partition (Kafka's layout)
    <root>/__logq/topics/<topic>/meta      {name, partitions, config overrides, created_ms, topic_id}
    <root>/__logq/trash/                   partitions of deleted topics, removed right away
    <root>/__logq/topics.lock              flock held while topics are created or deleted
    <root>/__logq/groups/<group>/...       consumer groups (group.py, offsets.py)

A topic name follows Kafka's rule: 1-249 characters of ``[a-zA-Z0-9._-]``, not ``.`` or
``..``. Paths are built only from validated names, and a symlinked topic directory is
refused, so nothing is ever written outside the data directory.

Topic identity (Kafka's topic ID, KIP-516): a name can be deleted and created again, so
each creation, an *incarnation*, gets a ``topic_id``: 16 random bytes shown as Kafka shows
them (URL-safe base64 without padding, 22 characters). Whatever refers to a topic beyond one
call (committed offsets, cached handles) keeps the id with the name and treats a different id
as a different topic. A metadata file written before ids existed has none and is not
rewritten (the data directory may be read-only): its id is derived from the name and the
creation time, so every process computes the same one, and a topic deleted and created
again, by any version, gets another.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from logq.config import LogConfig
from logq.errors import InvalidTopicError, TopicExistsError, UnknownTopicError, storage_error
from logq.storage import files as _fs
from logq.storage import meta as _meta

__all__ = [
    "validate_topic",
    "TopicMeta",
    "TopicRegistry",
    "partition_path",
    "topic_id_of",
    "new_topic_id",
    "META_DIR",
    "MAX_PARTITIONS",
]

META_DIR = "__logq"
MAX_PARTITIONS = 10_000  # per topic: every partition costs a directory, fds and mappings
_LEGAL = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def validate_topic(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidTopicError(name, f"must be a str, not {type(name).__name__}")
    if name in (".", ".."):
        raise InvalidTopicError(name, "'.' and '..' are not allowed")
    if len(name) > 249:
        raise InvalidTopicError(name, f"{len(name)} characters, the limit is 249")
    if not _LEGAL.fullmatch(name):
        raise InvalidTopicError(name, "only ASCII letters, digits, '.', '_' and '-' are allowed")
    if name.startswith("__logq"):
        raise InvalidTopicError(name, "names starting with '__logq' are reserved")
    return name


def validate_partition(topic: str, partition: object, partitions: int) -> int:
    if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < partitions:
        raise InvalidTopicError(f"{topic}-{partition}", f"partition must be an int in [0, {partitions})")
    return partition


def partition_path(root: str, topic: str, partition: int) -> str:
    return os.path.join(root, f"{validate_topic(topic)}-{int(partition)}")


def new_topic_id() -> str:
    """A fresh topic id: a random UUID written as Kafka writes one (base64url, no padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def legacy_topic_id(name: str, created_ms: int) -> str:
    """The id of a topic whose metadata predates ids: the same in every process, never stored."""
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"logq-topic:{name}:{created_ms}").bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _meta_path(root: str, name: str) -> str:
    # A directory per topic: a 249-character name plus ".meta.tmp" would pass the
    # 255-byte file name limit.
    return os.path.join(root, META_DIR, "topics", validate_topic(name), "meta")


def _stat_sig(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _parse_meta(v: Any) -> TopicMeta:
    name = v["name"]
    created = int(v.get("created_ms", 0))
    tid = v.get("topic_id")
    if not isinstance(tid, str) or not tid:
        tid = legacy_topic_id(name, created)
    return TopicMeta(name, int(v["partitions"]), dict(v.get("overrides", {})), created, tid)


_ID_CACHE: dict[str, tuple[tuple[int, int, int], str]] = {}  # meta path -> (stat signature, id)


def topic_id_of(root: str, name: str) -> str | None:
    """The id of the current incarnation of topic ``name`` under ``root``; None if none exists.

    Re-read only when the metadata file changed (a rewrite replaces the file), so callers
    may ask on every commit.
    """
    path = _meta_path(os.path.abspath(root), name)
    sig = _stat_sig(path)
    if sig is None:
        _ID_CACHE.pop(path, None)
        return None
    hit = _ID_CACHE.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1]
    got = _meta.read_meta(path)
    if got.value is None:
        return None
    try:
        tid = _parse_meta(got.value).topic_id
    except (KeyError, TypeError, ValueError):
        return None
    _ID_CACHE[path] = (sig, tid)
    return tid


@dataclass(frozen=True)
class TopicMeta:
    name: str
    partitions: int
    overrides: dict[str, Any] = field(default_factory=dict)
    created_ms: int = 0
    topic_id: str = ""  # this incarnation of the name (see the module docstring)

    @property
    def config(self) -> LogConfig:
        cfg = self.__dict__.get("_config")
        if cfg is None:
            cfg = LogConfig.from_dict(self.overrides)
            object.__setattr__(self, "_config", cfg)  # cached: the dataclass is frozen
        return cfg


def prepare_root(root: str) -> str:
    """Create the data directory (0700) and its metadata folder; warn if others can write it."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        try:
            os.makedirs(root, mode=_fs.DIR_MODE, exist_ok=True)
        except OSError as e:
            raise storage_error("create data directory", root, e) from None
    mode = os.stat(root).st_mode
    if mode & stat.S_IWOTH:
        warnings.warn(f"data directory {root} is world-writable", stacklevel=3)
    _fs.make_dir(os.path.join(root, META_DIR))
    _fs.make_dir(os.path.join(root, META_DIR, "topics"))
    return root


class TopicRegistry:
    def __init__(self, root: str) -> None:
        self.root = prepare_root(root)
        self._dir = os.path.join(self.root, META_DIR, "topics")
        self._lock = _fs.FileLock(os.path.join(self.root, META_DIR, "topics.lock"))
        self._cache: dict[str, TopicMeta] = {}

    def _path(self, name: str) -> str:
        return _meta_path(self.root, name)

    def create(self, name: str, partitions: int = 1, **overrides: Any) -> TopicMeta:
        validate_topic(name)
        if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidTopicError(name, f"partitions must be an int in [1, {MAX_PARTITIONS}]")
        LogConfig.from_dict(overrides)  # validate before anything is written
        meta = TopicMeta(name, partitions, dict(overrides), int(time.time() * 1000), new_topic_id())
        with self._lock:
            if os.path.exists(self._path(name)):
                raise TopicExistsError(name)
            _fs.make_dir(os.path.dirname(self._path(name)))
            for p in range(partitions):
                _fs.make_dir(partition_path(self.root, name, p))
            _fs.fsync_dir(self.root)
            _meta.write_meta(
                self._path(name),
                {
                    "name": name,
                    "partitions": partitions,
                    "overrides": meta.overrides,
                    "created_ms": meta.created_ms,
                    "topic_id": meta.topic_id,
                },
            )
        self._cache[name] = meta
        return meta

    def get(self, name: str, *, fresh: bool = False) -> TopicMeta:
        """The metadata of ``name``: cached, or (``fresh=True``) the current incarnation on disk.

        A fresh read notices a topic another process deleted (UnknownTopicError) or deleted
        and created again (another ``topic_id``).
        """
        meta = self._cache.get(name)
        if meta is not None and not fresh:
            return meta
        if fresh:
            tid = topic_id_of(self.root, name)
            if tid is None:
                self._cache.pop(name, None)
                raise UnknownTopicError(name)
            if meta is not None and meta.topic_id == tid:
                return meta
        got = _meta.read_meta(self._path(name))
        if got.value is None:
            raise UnknownTopicError(name)
        meta = _parse_meta(got.value)
        self._cache[name] = meta
        return meta

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except UnknownTopicError:
            return False

    def names(self) -> list[str]:
        out = []
        for fname in os.listdir(self._dir):
            if os.path.exists(os.path.join(self._dir, fname, "meta")):
                out.append(fname)
        return sorted(out)

    def delete(self, name: str) -> None:
        meta = self.get(name)
        with self._lock:
            _fs.unlink_if_exists(self._path(name))
            _fs.unlink_if_exists(self._path(name) + ".bak")
            shutil.rmtree(os.path.dirname(self._path(name)), ignore_errors=True)
            _fs.fsync_dir(self._dir)
            trash = os.path.join(self.root, META_DIR, "trash")
            _fs.make_dir(trash)
            # Rename first (atomic), then remove: readers with open maps keep working.
            for p in range(meta.partitions):
                src = partition_path(self.root, name, p)
                if os.path.isdir(src) and not os.path.islink(src):
                    dst = os.path.join(trash, uuid.uuid4().hex)
                    os.rename(src, dst)
                    shutil.rmtree(dst, ignore_errors=True)
            _fs.fsync_dir(self.root)
        self._cache.pop(name, None)

    def close(self) -> None:
        self._lock.close()
