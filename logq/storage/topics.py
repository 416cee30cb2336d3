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
import errno
import logging
import os
import re
import shutil
import stat
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from logq.config import LogConfig
from logq.errors import (
    ConfigError,
    CorruptTopicMetadataError,
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    StoragePermissionError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
    storage_error,
)
from logq.storage import files as _fs
from logq.storage import meta as _meta

__all__ = [
    "validate_topic",
    "TopicMeta",
    "TopicRegistry",
    "TopicRepair",
    "partition_path",
    "topic_id_of",
    "new_topic_id",
    "META_DIR",
    "MAX_PARTITIONS",
]

log = logging.getLogger("logq.topics")

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
    """``partition`` if topic ``topic`` (with ``partitions`` partitions) has it, else UnknownPartitionError."""
    if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < partitions:
        raise UnknownPartitionError(topic, partition, partitions)
    return partition


def partition_dirs(root: str, topic: str) -> list[int]:
    """The partition numbers that have a directory ``<root>/<topic>-<p>`` (sorted).

    Unambiguous: a topic whose name ends in ``-<digits>`` has directories with one more
    ``-<p>`` (``a-1``'s partition 0 is ``a-1-0``), so ``a-1`` can only be ``a``'s partition 1.
    """
    validate_topic(topic)
    prefix = topic + "-"
    out = []
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise storage_error("list", root, e) from None
    for fname in names:
        num = fname[len(prefix) :]
        if fname.startswith(prefix) and num.isdigit() and num.isascii() and str(int(num)) == num:
            if os.path.isdir(os.path.join(root, fname)) and not os.path.islink(os.path.join(root, fname)):
                out.append(int(num))
    return sorted(out)


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


def _meta_body(meta: TopicMeta) -> dict[str, Any]:
    """The JSON object a topic's metadata file holds."""
    return {
        "name": meta.name,
        "partitions": meta.partitions,
        "overrides": meta.overrides,
        "created_ms": meta.created_ms,
        "topic_id": meta.topic_id,
    }


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
    tid = _read_meta_file(name, path).topic_id
    _ID_CACHE[path] = (sig, tid)
    return tid


def _read_meta_file(name: str, path: str) -> TopicMeta:
    """The metadata of topic ``name`` in ``path`` (or its ``.bak``).

    UnknownTopicError when neither copy exists; CorruptTopicMetadataError when a copy exists
    but none is good: the topic is there (its name is taken) but unusable until repaired.
    """
    got = _meta.read_meta(path)
    if got.value is None:
        if got.problems:
            raise CorruptTopicMetadataError(name, path, "; ".join(got.problems))
        raise UnknownTopicError(name)
    try:
        meta = _parse_meta(got.value)
        if meta.name != name or not 1 <= meta.partitions <= MAX_PARTITIONS:
            raise ValueError(f"names topic {meta.name!r} with {meta.partitions} partitions")
        LogConfig.from_dict(meta.overrides)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptTopicMetadataError(name, path, f"checksum ok but content invalid: {e}") from None
    return meta


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


def prepare_root(root: str, shared_read: str | None = None) -> str:
    """Create the data directory and its metadata folder; warn if others can write it.

    ``shared_read`` ("private": 0700/0600, "group": 0750/0640; None: keep what the
    directory has, private when it is created) sets who may read the data: a change is
    applied to every directory and file already there, and files created later follow the
    mode of their directory (logq/storage/files.py). A data directory the user cannot write
    is fine for reading: the metadata folder is then not created, only looked for.
    """
    root = os.path.abspath(root)
    if shared_read is not None:
        _fs.modes(shared_read)  # a bad value is refused before anything is created
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        _, dir_mode = _fs.modes(shared_read or "private")
        try:
            os.makedirs(root, mode=dir_mode, exist_ok=True)
            os.chmod(root, dir_mode)  # the umask may have taken the group's bits away
            mode = os.stat(root).st_mode
        except OSError as e:
            raise storage_error("create data directory", root, e) from None
    except OSError as e:  # EACCES: another user's private data directory
        raise storage_error("open data directory", root, e) from None
    if not stat.S_ISDIR(mode):
        raise storage_error("open data directory", root, OSError(errno.ENOTDIR, "not a directory"))
    if mode & stat.S_IWOTH:
        warnings.warn(f"data directory {root} is world-writable", stacklevel=3)
    if shared_read is not None and _fs.shares_read(root) != (shared_read == "group"):
        _fs.set_tree_mode(root, shared_read)
    try:
        _fs.make_dir(os.path.join(root, META_DIR))
        _fs.make_dir(os.path.join(root, META_DIR, "topics"))
    except StoragePermissionError:
        pass  # read-only data: create() will need it and says so; readers see no topics
    return root


def shared_read_of(root: str) -> str:
    """The ``shared_read`` setting a data directory has: "group" if its mode is 0750."""
    return "group" if _fs.shares_read(root) else "private"


_RAISE_ONLY = ("max_batch_bytes", "max_decompressed_bytes")  # lower: written batches become unreadable
_FIXED = ("segment_index_bytes",)  # sizes the index files already preallocated


def _grown_count(old: TopicMeta, partitions: object) -> int:
    """``partitions`` if it is a valid larger count for ``old``; InvalidTopicError otherwise."""
    if (
        not isinstance(partitions, int)
        or isinstance(partitions, bool)
        or not old.partitions < partitions <= MAX_PARTITIONS
    ):
        raise InvalidPartitionsError(old.name, old.partitions, partitions, MAX_PARTITIONS)
    return partitions


def _altered_overrides(old: TopicMeta, config: dict[str, Any], delete_config: tuple[str, ...]) -> dict[str, Any]:
    """``old``'s overrides with ``delete_config`` removed and ``config`` set, checked."""
    known = set(LogConfig().to_dict())
    for key in list(config) + list(delete_config):
        if key not in known:
            raise ConfigError(f"unknown topic setting {key!r} (known: {', '.join(sorted(known))})")
    overrides = {k: v for k, v in old.overrides.items() if k not in delete_config}
    overrides.update(config)
    new_cfg = LogConfig.from_dict(overrides)  # ConfigError on a bad value
    old_cfg = old.config
    for key in _RAISE_ONLY:
        if getattr(new_cfg, key) < getattr(old_cfg, key):
            raise ConfigError(
                f"{key} of topic {old.name!r} can only be raised ({getattr(old_cfg, key)} -> "
                f"{getattr(new_cfg, key)}): batches already written up to the old limit must stay readable"
            )
    for key in _FIXED:
        if getattr(new_cfg, key) != getattr(old_cfg, key):
            raise ConfigError(f"{key} of topic {old.name!r} is fixed at creation (the index files are sized by it)")
    return overrides


def _replace_meta(path: str, old_body: dict[str, Any], new_body: dict[str, Any]) -> None:
    """Rewrite a live metadata file so that ``path`` is never missing.

    ``meta.write_meta`` renames NAME to NAME.bak before NAME.tmp to NAME, which leaves a
    moment without NAME: a reader then takes the topic for deleted. Here NAME.bak gets the
    old content from its own tmp file, then NAME.tmp replaces NAME in one rename.
    """
    bak_tmp = _fs.write_tmp(path + ".bak", _meta.encode_meta(old_body))
    tmp = _fs.write_tmp(path, _meta.encode_meta(new_body))
    try:
        os.replace(bak_tmp, path + ".bak")
        _fs.crash_point("topic-alter-before-rename")
        os.replace(tmp, path)
    except OSError as e:
        raise storage_error("rename", path, e) from None
    _fs.fsync_dir(os.path.dirname(path))


@dataclass(frozen=True)
class TopicRepair:
    """What :meth:`TopicRegistry.repair` found and did for one topic."""

    name: str
    partitions: int
    topic_id: str
    rewritten: bool  # the metadata file was written again (it was corrupt or missing)
    created_partitions: tuple[int, ...]  # partition directories that were missing, made empty
    problems: tuple[str, ...]  # what was wrong, and what could not be recovered


@contextmanager
def _writes_stopped(partition_dir: str, timeout_ms: int) -> Iterator[None]:
    """Hold the write lock (``.lock``) of a partition directory, waiting at most ``timeout_ms``."""
    try:
        lock = _fs.FileLock(os.path.join(partition_dir, ".lock"))
    except StorageError as e:  # a planted symlink, a foreign file: no writer can lock it either
        log.warning("deleting %s without its write lock: %s", partition_dir, e)
        yield
        return
    try:
        if not lock.acquire_within(timeout_ms / 1000):
            log.warning(
                "deleting %s: a writer held its write lock for %d ms; renaming it anyway "
                "(that writer's append fails its incarnation check)",
                partition_dir,
                timeout_ms,
            )
        yield
    finally:
        lock.close()


class TopicRegistry:
    def __init__(self, root: str, shared_read: str | None = None) -> None:
        self.root = prepare_root(root, shared_read)
        self._dir = os.path.join(self.root, META_DIR, "topics")
        self._lock_path = os.path.join(self.root, META_DIR, "topics.lock")
        self._lock_file: _fs.FileLock | None = None  # opened by the first create or delete
        self._cache: dict[str, TopicMeta] = {}
        self._sigs: dict[str, tuple[int, int, int] | None] = {}  # stat signature each cached meta was read at

    @property
    def _lock(self) -> _fs.FileLock:
        # Only create and delete take the lock, so a reader never needs write access to
        # the data directory (a backup, another user's data, a read-only mount).
        if self._lock_file is None:
            self._lock_file = _fs.FileLock(self._lock_path)
        return self._lock_file

    def _path(self, name: str) -> str:
        return _meta_path(self.root, name)

    def create(self, name: str, partitions: int = 1, **overrides: Any) -> TopicMeta:
        validate_topic(name)
        if not isinstance(partitions, int) or isinstance(partitions, bool) or not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidTopicError(name, f"partitions must be an int in [1, {MAX_PARTITIONS}]")
        LogConfig.from_dict(overrides)  # validate before anything is written
        meta = TopicMeta(name, partitions, dict(overrides), int(time.time() * 1000), new_topic_id())
        with self._lock:
            if self._has_meta_file(name):
                _read_meta_file(name, self._path(name))  # a corrupt one says so: repair or delete
                raise TopicExistsError(name)
            self._make_meta_dirs(name)
            for p in range(partitions):
                _fs.make_dir(partition_path(self.root, name, p))
            _fs.fsync_dir(self.root)
            _meta.write_meta(self._path(name), _meta_body(meta))
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
        sig = _stat_sig(self._path(name))
        if fresh:
            if sig is None:  # as topic_id_of: no metadata file, no topic
                self._cache.pop(name, None)
                raise UnknownTopicError(name)
            if meta is not None and self._sigs.get(name) == sig:
                return meta  # the file was not rewritten since (alter rewrites it in place)
        meta = _read_meta_file(name, self._path(name))
        self._cache[name] = meta
        self._sigs[name] = sig
        return meta

    def exists(self, name: str) -> bool:
        """Whether topic ``name`` exists; True for one whose metadata is corrupt (its name is taken)."""
        try:
            self.get(name)
            return True
        except UnknownTopicError:
            return False
        except CorruptTopicMetadataError:
            return True

    def names(self) -> list[str]:
        """Every topic, including those whose metadata is corrupt (describe says which)."""
        try:
            entries = os.listdir(self._dir)
        except FileNotFoundError:
            return []  # read-only data without a metadata folder: no topics
        except OSError as e:
            raise storage_error("list", self._dir, e) from None
        return sorted(fname for fname in entries if self._has_meta_file(fname))

    def _has_meta_file(self, name: str) -> bool:
        path = os.path.join(self._dir, name, "meta")
        return os.path.lexists(path) or os.path.lexists(path + ".bak")

    def _make_meta_dirs(self, name: str) -> None:
        _fs.make_dir(os.path.join(self.root, META_DIR))
        _fs.make_dir(self._dir)
        _fs.make_dir(os.path.dirname(self._path(name)))

    def repair(
        self, name: str, partitions: int | None = None, topic_id: str | None = None, **overrides: Any
    ) -> TopicRepair:
        """Make topic ``name`` usable again from what its partition directories show.

        A corrupt (or lost) metadata file is set aside as ``meta.corrupt`` and written again:
        ``partitions`` defaults to the highest partition directory + 1, ``topic_id`` to a new
        id (:class:`logq.client.admin.Admin` passes the one committed offsets recorded),
        ``overrides`` (LogConfig settings) to none, as they could not be read. Partition
        directories the metadata lists but the disk lacks are created empty. A healthy topic
        is left as it is. No record is touched.
        """
        validate_topic(name)
        if overrides:
            LogConfig.from_dict(overrides)
        problems: list[str] = []
        path = self._path(name)
        with self._lock:
            self._cache.pop(name, None)
            on_disk = partition_dirs(self.root, name)
            try:
                meta: TopicMeta | None = _read_meta_file(name, path)
            except CorruptTopicMetadataError as e:
                meta = None
                problems.append(e.message)
            except UnknownTopicError:
                if not on_disk:
                    raise
                meta = None
                problems.append(f"topic {name!r} has partition directories but no metadata file {path}")
            rewritten = meta is None
            if meta is None:
                count = partitions if partitions is not None else (max(on_disk) + 1 if on_disk else 0)
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PARTITIONS:
                    raise InvalidTopicError(name, f"partitions must be an int in [1, {MAX_PARTITIONS}]")
                if count <= max(on_disk, default=-1):
                    raise InvalidTopicError(
                        name, f"partitions={count} leaves out the partition directory {name}-{max(on_disk)}"
                    )
                meta = TopicMeta(name, count, dict(overrides), int(time.time() * 1000), topic_id or new_topic_id())
                if topic_id is None:
                    problems.append(f"a new topic id {meta.topic_id}: committed offsets of the old one read as none")
                if not overrides:
                    problems.append("config overrides could not be read: the defaults apply until set again")
                self._make_meta_dirs(name)
                for suffix in ("", ".bak"):
                    if os.path.lexists(path + suffix):
                        os.replace(path + suffix, path + suffix + ".corrupt")
            created = tuple(p for p in range(meta.partitions) if p not in on_disk)
            for p in created:
                _fs.make_dir(partition_path(self.root, name, p))
                problems.append(f"partition {name}-{p} had no directory: created empty")
            if created:
                _fs.fsync_dir(self.root)
            if rewritten:
                _meta.write_meta(path, _meta_body(meta))
        _ID_CACHE.pop(path, None)
        return TopicRepair(name, meta.partitions, meta.topic_id, rewritten, created, tuple(problems))

    def alter(
        self,
        name: str,
        *,
        partitions: int | None = None,
        config: dict[str, Any] | None = None,
        delete_config: tuple[str, ...] = (),
    ) -> TopicMeta:
        """Grow topic ``name`` to ``partitions`` partitions and/or change its config overrides.

        Partitions can only be added, as in Kafka: keyed records then go to
        ``murmur2(key) % partitions``, so a key's new records may land in another partition
        than its old ones. ``config`` sets LogConfig overrides, ``delete_config`` removes
        some (back to the default). Settings whose change would make records already
        written unreadable are refused: lowering ``max_batch_bytes`` or
        ``max_decompressed_bytes``, changing ``segment_index_bytes``.

        Crash safety: the new partition directories are created (and the data directory
        fsynced) before the metadata file naming them is written, and that file is replaced
        by a rename while its previous content is kept as ``meta.bak``, so the file is never
        missing: a crash leaves the old topic (and at worst empty directories the next
        alter reuses) or the new one. Readers notice through ``get(fresh=True)``, which
        re-reads a metadata file that was rewritten.
        """
        validate_topic(name)
        with self._lock:
            self._cache.pop(name, None)
            old = _read_meta_file(name, self._path(name))
            count = old.partitions if partitions is None else _grown_count(old, partitions)
            overrides = _altered_overrides(old, config or {}, delete_config)
            for p in range(old.partitions, count):
                _fs.make_dir(partition_path(self.root, name, p))
            if count > old.partitions:
                _fs.fsync_dir(self.root)
            _fs.crash_point("topic-alter-before-meta")
            meta = TopicMeta(name, count, overrides, old.created_ms, old.topic_id)
            _replace_meta(self._path(name), _meta_body(old), _meta_body(meta))
        _ID_CACHE.pop(self._path(name), None)
        return meta

    def delete(self, name: str) -> None:
        """Delete topic ``name`` and its partitions; one whose metadata is corrupt too (every
        ``<name>-<p>`` directory goes).

        The metadata file goes first, then each partition directory is renamed away while
        its write lock (``.lock``, logq/storage/log.py) is held: a writer that checked the
        topic's incarnation under that lock finishes its append in the live directory before
        the rename, and one that takes the lock later finds the metadata gone. The wait for a
        writer is bounded by the topic's ``open_timeout_ms``; past it (a frozen writer) the
        directory is renamed anyway and the writer's own check after its append fails it.
        """
        try:
            meta = self.get(name)
            count, timeout_ms = meta.partitions, meta.config.open_timeout_ms
        except CorruptTopicMetadataError:
            count, timeout_ms = 0, LogConfig().open_timeout_ms
        with self._lock:
            _fs.unlink_if_exists(self._path(name))
            _fs.unlink_if_exists(self._path(name) + ".bak")
            _ID_CACHE.pop(self._path(name), None)
            shutil.rmtree(os.path.dirname(self._path(name)), ignore_errors=True)
            _fs.fsync_dir(self._dir)
            trash = os.path.join(self.root, META_DIR, "trash")
            _fs.make_dir(trash)
            # Rename first (atomic), then remove: readers with open maps keep working.
            for p in sorted(set(range(count)) | set(partition_dirs(self.root, name))):
                src = partition_path(self.root, name, p)
                if os.path.isdir(src) and not os.path.islink(src):
                    dst = os.path.join(trash, uuid.uuid4().hex)
                    with _writes_stopped(src, timeout_ms):
                        os.rename(src, dst)
                    shutil.rmtree(dst, ignore_errors=True)
            _fs.fsync_dir(self.root)
        self._cache.pop(name, None)

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
