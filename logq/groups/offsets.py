"""Committed offsets of one consumer group, shared by its members in any threads and processes.

A committed offset is the **next offset to read** (last processed + 1), as in Kafka. The map
{(topic, partition): offset} lives in ``<group dir>/offsets``, a checksummed metadata file
(logq/storage/meta.py) whose body is::

    {"format": 1, "offsets": {"<topic>": {"<partition>": <offset>, ...}, ...},
     "topic_ids": {"<topic>": "<topic id>" | null, ...},
     "metadata": {"<topic>": {"<partition>": "<string>", ...}, ...}}

- Metadata: the string a Kafka client commits with an offset (OffsetCommit's
  ``committed_metadata``, returned by OffsetFetch). Each commit replaces it (a commit without
  one clears it, as in Kafka); only non-empty strings are stored. ``metadata`` was added
  without changing ``format``: an older logq reads the offsets and ignores it (and drops it
  when it next commits); a file without it reads as empty strings.

- Topic identity (KIP-516): a commit stores, per topic, the id of the incarnation it was
  made for (logq/storage/topics.py; ``null``: no such topic existed then). Offsets whose id
  is not the topic's current id belong to a deleted topic of the same name: they read as
  "no committed offset" (auto_offset_reset applies, ``groups describe`` shows no lag), are
  reported once in ``problems``, and are dropped when the topic is next committed.
  ``topic_ids`` was added without changing ``format``: an older logq ignores the key. A
  file written before ids existed has no ``topic_ids``: its offsets are taken as belonging
  to the current incarnation, and the next commit of the group stamps them with the
  current ids, so from then on a delete and create again no longer inherits them.

- Commits merge into the stored map under the group's flock (``group.lock``), so members in
  several processes never lose each other's commits.
- Writing keeps two complete copies in the storage/meta.py format (header with CRC-32C and length):
  ``offsets.bak`` is overwritten in place first, then ``offsets``. A crash (or a torn write
  after a power cut) can damage at most the copy being written, and the other one is whole:
  the old map if ``.bak`` was hit, the new map if ``offsets`` was hit. This is the "A/B
  copies" form of reliability rule 5; it replaces meta.write_meta's tmp -> rename because
  creating a file costs about 300 us on this project's ext4 disks, while an in-place rewrite
  keeps a commit near 50 us. ``sync=True`` adds an fdatasync after each copy (power-loss
  durable, copies ordered); the default ``sync=False`` survives a process crash.
- Fencing: a commit with ``member_id`` and ``generation`` succeeds only for partitions whose
  ownership file names that member with an acquisition generation <= ``generation``
  (logq/groups/member.py); otherwise CommitFailedError. A commit without ``member_id`` (manual
  assignment, admin tools) is refused while the group has live members (GroupNotEmptyError).
  ``coordinated=True`` is `logq serve`'s commit for a network member: its coordinator, which
  serves the group alone (logq/groups/served.py), has already fenced it by Kafka's
  generation rules, so neither check applies.
- Offsets beyond the log end are refused at commit (``log_end``) and clamped, with a report,
  by :meth:`OffsetStore.clamp_to` (reliability rule 9: committed <= log end). For a
  ``sync=True`` commit pass the *durable* log end, so that no offset is durable ahead of the
  data it covers.
- Damage: a main file that fails its checksum, header, version or structure is reported (a
  ``logging`` warning, an :class:`OffsetsWarning` and the ``problems`` list) and ``.bak`` is
  used. With no good copy every partition reads as None ("no committed offset"), so the
  consumer applies auto_offset_reset and says so: never a silent 0. The next commit saves the
  damaged file as ``offsets.corrupt`` and rewrites both copies. A leftover ``offsets.tmp``
  (an older logq's unfinished write) is ignored. Reading goes through the storage layer's
  ``read_meta`` (one reader of the format), with this module's structure check as its
  ``parse`` hook, so a copy that passes its checksum but not the structure falls back too.
- Cache: the group lock file holds change tokens (offsets, ownership files) that writers
  change with the lock held; a store whose tokens still match skips re-reading those files.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import NamedTuple, TypeVar

from logq.errors import (
    ConfigError,
    CorruptMetadataError,
    GroupNotEmptyError,
    InvalidOffsetCommitError,
    OffsetsWarning,
    ReadOnlyLogError,
    storage_error,
)
from logq.groups.files import (
    GroupLock,
    check_commit_fence,
    ensure_dirs,
    group_dir,
    list_groups,
    live_member_ids,
    os_errors,
    read_owner_record,
)
from logq.storage import files as _fs
from logq.storage.meta import MAX_META_BYTES, encode_meta, read_meta
from logq.storage.topics import META_DIR, topic_id_of, validate_topic

__all__ = ["OffsetStore", "ClampReport", "OffsetsWarning", "LogEndFn", "recorded_topic_ids"]

log = logging.getLogger("logq.offsets")

FORMAT = 1
TP = TypeVar("TP", bound=tuple[str, int])  # a plain (topic, partition) key or a logq.TopicPartition
TopicPartition = tuple[str, int]  # plain (topic, partition) keys; logq.types.TopicPartition is one of these

LogEndFn = Callable[[str, int], int | None]
TopicIdFn = Callable[[str], str | None]  # topic -> id of its current incarnation, None: no such topic
_LEGACY = object()  # stored offsets with no topic id (written before ids existed)
_PARTITION = re.compile(r"[0-9]{1,10}")


def _outside_logq() -> int:
    """The warnings stacklevel of the first caller outside the logq package."""
    here = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    return level


_Stored = tuple[dict[TopicPartition, int], dict[str, str | None], dict[TopicPartition, str]]  # offsets, ids, metadata
MAX_METADATA_CHARS = 4096  # per committed offset, as Kafka's offset.metadata.max.bytes


def _topic_id_fn(gdir: str) -> TopicIdFn:
    """Topic ids from the data directory holding ``gdir`` (``<root>/__logq/groups/<group>``)."""
    meta = os.path.dirname(os.path.dirname(os.path.abspath(gdir)))
    if os.path.basename(meta) != META_DIR:
        return lambda topic: None  # a group directory outside a data directory: no topics
    root = os.path.dirname(meta)
    return lambda topic: topic_id_of(root, topic)


class ClampReport(NamedTuple):
    topic: str
    partition: int
    committed: int  # what the file said
    log_end: int  # what it was clamped to


def _is_offset(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class OffsetStore:
    """Committed offsets of the group whose directory is ``group_dir``."""

    def __init__(
        self,
        group_dir: str,
        *,
        lock_timeout_ms: int = 10_000,
        topic_id: TopicIdFn | None = None,
        readonly: bool = False,
    ) -> None:
        """``topic_id`` names the current incarnation of a topic; by default it is read from
        the topic metadata of the data directory that holds ``group_dir``. ``readonly=True``
        only reads (no directory or file is created, commits are refused), so it works on
        data the user cannot write."""
        self.group_dir = group_dir
        self._topic_id = topic_id if topic_id is not None else _topic_id_fn(group_dir)
        self.group_id = os.path.basename(os.path.normpath(group_dir))
        self.readonly = readonly
        if not readonly:
            ensure_dirs(group_dir)
        self.path = os.path.join(group_dir, "offsets")
        self.problems: list[str] = []
        self._lock = GroupLock(os.path.join(group_dir, "group.lock"), lock_timeout_ms, readonly=readonly)
        self._cache: dict[TopicPartition, int] | None = None
        self._ids: dict[str, str | None] = {}  # topic -> id stored with its offsets (cached)
        self._meta: dict[TopicPartition, str] = {}  # non-empty metadata strings (cached)
        self._cache_token = b""
        self._main_bad = False
        self._token_prefix = secrets.token_hex(8)
        self._writes = 0
        self._copy_len: int | None = None  # length of both copies, while the cache is valid
        self._owners: dict[TopicPartition, tuple[str, int]] = {}
        self._owners_token = b""

    @classmethod
    def for_group(cls, root: str, group: str, *, lock_timeout_ms: int = 10_000) -> OffsetStore:
        return cls(group_dir(root, group), lock_timeout_ms=lock_timeout_ms)

    # -- public API --------------------------------------------------------------------

    @os_errors("commit offsets")
    def commit(
        self,
        offsets: Mapping[TP, int],
        *,
        generation: int | None = None,
        member_id: str | None = None,
        sync: bool = False,
        log_end: LogEndFn | None = None,
        topic_ids: Mapping[str, str | None] | None = None,
        metadata: Mapping[TP, str] | None = None,
        coordinated: bool = False,
    ) -> None:
        """Merge ``offsets`` into the stored map, all of them or none.

        ``member_id``/``generation`` come from the GroupMember that owns the partitions;
        ``log_end(topic, partition)`` (optional) refuses offsets beyond the log end.
        ``topic_ids`` names the incarnation each topic's offsets were read from (a client
        holding a topic open passes the id it opened); a topic it does not name is stamped
        with its current id. ``metadata`` gives a string per committed partition (default
        ""); ``coordinated`` skips the membership checks (see the module docstring).
        """
        if self.readonly:
            raise ReadOnlyLogError(self.path)
        items = self._validate(offsets)
        if not items:
            return
        notes = self._validate_metadata(items, metadata or {})
        if log_end is not None:
            for (topic, p), off in items.items():
                end = log_end(topic, p)
                if end is None:
                    raise InvalidOffsetCommitError(topic, p, off, "the partition does not exist")
                if off > end:
                    raise InvalidOffsetCommitError(topic, p, off, f"beyond the log end offset {end}")
        if member_id is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
            raise ConfigError(f"a commit by member {member_id!r} needs its generation (an int)")
        with self._lock.hold():
            if coordinated:
                pass
            elif member_id is None or generation is None:
                live = live_member_ids(self.group_dir)
                if live:
                    raise GroupNotEmptyError(self.group_id, len(live))
            else:
                check_commit_fence(self._owner_records(items), items, member_id, generation)
            self._write_locked(*self._merged_locked(items, topic_ids, notes), sync=sync)

    def _merged_locked(
        self,
        items: dict[TopicPartition, int],
        topic_ids: Mapping[str, str | None] | None,
        notes: dict[TopicPartition, str],
    ) -> tuple[dict[TopicPartition, int], dict[str, str | None], dict[TopicPartition, str]]:
        """(offsets, topic ids, metadata) once ``items`` are merged into the stored ones."""
        stored = self._load_locked()
        ids = self._stamped_ids(stored)
        merged = dict(stored)
        meta = dict(self._meta)
        for topic in sorted({t for t, _ in items}):
            tid = self._topic_id(topic)
            self._refuse_stale(topic, topic_ids, tid, items)
            if topic in ids and ids[topic] != tid:  # offsets of another incarnation: drop them
                merged = {tp: off for tp, off in merged.items() if tp[0] != topic}
                meta = {tp: m for tp, m in meta.items() if tp[0] != topic}
            ids[topic] = tid
        merged.update(items)
        for tp in items:
            if notes.get(tp):
                meta[tp] = notes[tp]
            else:
                meta.pop(tp, None)
        return merged, ids, meta

    @staticmethod
    def _validate_metadata(
        items: Mapping[TopicPartition, int], metadata: Mapping[TP, str]
    ) -> dict[TopicPartition, str]:
        notes: dict[TopicPartition, str] = {}
        for tp, text in metadata.items():
            key = (tp[0], tp[1])
            if key not in items:
                raise ConfigError(f"metadata given for {key[0]}-{key[1]}, which this commit does not include")
            if not isinstance(text, str) or len(text) > MAX_METADATA_CHARS:
                raise InvalidOffsetCommitError(
                    key[0], key[1], items[key], f"its metadata must be a str of at most {MAX_METADATA_CHARS} characters"
                )
            notes[key] = text
        return notes

    @staticmethod
    def _refuse_stale(
        topic: str, topic_ids: Mapping[str, str | None] | None, now: str | None, items: Mapping[TP, int]
    ) -> None:
        """Offsets read from an incarnation that is no longer the topic's are refused whole:
        stamping them with the old id would drop the current incarnation's offsets."""
        if topic_ids is None or topic not in topic_ids or topic_ids[topic] == now:
            return
        tp = min(tp for tp in items if tp[0] == topic)
        raise InvalidOffsetCommitError(
            topic,
            tp[1],
            items[tp],
            f"read from topic id {topic_ids[topic]}, but {topic!r} is now "
            f"{'deleted' if now is None else f'topic id {now}'} (deleted or created again since)",
        )

    @os_errors("read offsets")
    def committed(self, topic: str, partition: int) -> int | None:
        """The committed offset (next to read), or None: then apply auto_offset_reset."""
        validate_topic(topic)
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise ConfigError(f"partition of {topic!r} must be an int, got {partition!r}")
        with self._lock.hold(shared=True):
            off = self._load_locked().get((topic, partition))
            ids = dict(self._ids)
        return off if off is None or self._current(topic, ids) else None

    @os_errors("read offsets")
    def all(self) -> dict[TopicPartition, int]:
        """Every committed offset of the current incarnations of their topics."""
        with self._lock.hold(shared=True):
            stored = dict(self._load_locked())
            ids = dict(self._ids)
        current = {t: self._current(t, ids) for t in {t for t, _ in stored}}
        return {tp: off for tp, off in stored.items() if current[tp[0]]}

    @os_errors("read offsets")
    def all_with_metadata(self) -> dict[TopicPartition, tuple[int, str]]:
        """Like :meth:`all`, each offset with its metadata string ("" when none)."""
        with self._lock.hold(shared=True):
            stored = dict(self._load_locked())
            ids, meta = dict(self._ids), dict(self._meta)
        current = {t: self._current(t, ids) for t in {t for t, _ in stored}}
        return {tp: (off, meta.get(tp, "")) for tp, off in stored.items() if current[tp[0]]}

    @os_errors("clamp offsets")
    def clamp_to(self, log_end_fn: LogEndFn) -> list[ClampReport]:
        """Lower every committed offset above its log end to the log end, durably; report each.

        ``log_end_fn`` returns None for a partition it does not know (left as it is).
        """
        if self.readonly:
            raise ReadOnlyLogError(self.path)
        with self._lock.hold():
            current = self._load_locked()
            ids = dict(self._ids)
            reports = []
            for (topic, p), off in sorted(current.items()):
                if not self._current(topic, ids):
                    continue
                end = log_end_fn(topic, p)
                if end is not None and off > end:
                    reports.append(ClampReport(topic, p, off, end))
            if reports:
                for r in reports:
                    self._report(
                        f"group {self.group_id}: committed offset {r.committed} of "
                        f"{r.topic}-{r.partition} is beyond the log end {r.log_end}; clamped to it"
                    )
                merged = dict(current)
                merged.update({(r.topic, r.partition): r.log_end for r in reports})
                self._write_locked(merged, self._stamped_ids(current), dict(self._meta), sync=True)
            return reports

    def close(self) -> None:
        self._lock.close()

    def __enter__(self) -> OffsetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _validate(self, offsets: Mapping[TP, int]) -> dict[TopicPartition, int]:
        items: dict[TopicPartition, int] = {}
        for key, off in offsets.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ConfigError(f"offsets must be keyed by (topic, partition), got {key!r}")
            topic, p = key
            validate_topic(topic)
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise ConfigError(f"partition of {topic!r} must be an int >= 0, got {p!r}")
            if not _is_offset(off):
                raise InvalidOffsetCommitError(topic, p, off, "an offset is an int >= 0")
            items[(topic, p)] = off
        return items

    def _report(self, message: str, *, warn: bool = True) -> None:
        if message in self.problems:
            return
        self.problems.append(message)
        log.warning("%s", message)
        if warn:
            warnings.warn(message, OffsetsWarning, stacklevel=_outside_logq())

    def _current(self, topic: str, ids: Mapping[str, object]) -> bool:
        """Whether the offsets stored for ``topic`` belong to its current incarnation."""
        stored = ids.get(topic, _LEGACY)
        if stored is _LEGACY:
            return True  # written before topic ids: taken as the current incarnation
        now = self._topic_id(topic)
        if stored == now:
            return True
        self._report(
            f"group {self.group_id}: the committed offsets of topic {topic!r} were committed for "
            f"{'a topic that did not exist then' if stored is None else f'topic id {stored}'}, "
            f"not the current {topic!r} ({'deleted' if now is None else f'topic id {now}'}); "
            "they are ignored and consumers apply auto_offset_reset",
            warn=False,
        )
        return False

    def _stamped_ids(self, stored: Mapping[TopicPartition, int]) -> dict[str, str | None]:
        """The stored topic ids, with offsets that have none adopted by the current incarnation."""
        ids = dict(self._ids)
        for topic in {t for t, _ in stored} - set(ids):
            ids[topic] = self._topic_id(topic)
        return ids

    def _owner_records(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, tuple[str, int]]:
        """Ownership records of ``tps``, from cache while the owners token is unchanged."""
        token = self._lock.read_tokens()[GroupLock.OWNERS]
        if not token or token != self._owners_token:
            self._owners.clear()
            self._owners_token = token
        out = {}
        for tp in tps:
            rec = self._owners.get(tp) if token else None
            if rec is None:
                rec = self._owners[tp] = read_owner_record(self.group_dir, tp)
            out[tp] = rec
        return out

    def _load_locked(self) -> dict[TopicPartition, int]:
        token = self._lock.read_tokens()[GroupLock.OFFSETS]
        if self._cache is not None and token and token == self._cache_token:
            return self._cache
        self._copy_len = None
        (offsets, self._ids, self._meta), source, problems, self._main_bad = self._read_copies()
        for p in problems:
            self._report(p)
        if source == "backup":
            self._report(
                f"group {self.group_id}: using the second copy {self.path}.bak "
                "(it holds the last commit, or the one that was being written)"
            )
        elif source is None and problems:
            self._report(
                f"group {self.group_id}: no good copy of the committed offsets; every "
                "partition reads as not committed and consumers apply auto_offset_reset"
            )
        self._cache, self._cache_token = offsets, token
        return offsets

    def _read_copies(self) -> tuple[_Stored, str | None, list[str], bool]:
        """((offsets, topic ids), copy used, problems, main copy damaged or missing)."""
        got = read_meta(self.path, self._parse)
        main_bad = got.source != "main" and bool(got.problems)
        return got.value or ({}, {}, {}), got.source, got.problems, main_bad

    @staticmethod
    def _read_file_raw(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read(MAX_META_BYTES)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise storage_error("read", path, e) from None

    @staticmethod
    def _parse(obj: object, name: str) -> _Stored:
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise CorruptMetadataError(name, f"unknown offsets format {found!r}; this logq reads {FORMAT}")
        raw = obj.get("offsets")
        if not isinstance(raw, dict):
            raise CorruptMetadataError(name, "no offsets map")
        out: dict[TopicPartition, int] = {}
        for topic, parts in raw.items():
            try:
                validate_topic(topic)
            except ValueError:
                raise CorruptMetadataError(name, f"bad topic name {topic!r}") from None
            if not isinstance(parts, dict):
                raise CorruptMetadataError(name, f"bad entry for topic {topic!r}")
            for p, off in parts.items():
                if not (isinstance(p, str) and _PARTITION.fullmatch(p)) or not _is_offset(off):
                    raise CorruptMetadataError(name, f"bad offset {off!r} for {topic}-{p}")
                out[(topic, int(p))] = off
        raw_ids = obj.get("topic_ids", {})
        if not isinstance(raw_ids, dict) or not all(
            isinstance(t, str) and (v is None or isinstance(v, str)) for t, v in raw_ids.items()
        ):
            raise CorruptMetadataError(name, "bad topic_ids map")
        raw_meta = obj.get("metadata", {})
        if not isinstance(raw_meta, dict) or not all(
            isinstance(parts, dict) and all(isinstance(m, str) for m in parts.values()) for parts in raw_meta.values()
        ):
            raise CorruptMetadataError(name, "bad metadata map")
        meta = {
            (t, int(p)): m
            for t, parts in raw_meta.items()
            for p, m in parts.items()
            if isinstance(p, str) and _PARTITION.fullmatch(p) and (t, int(p)) in out and m
        }
        return out, dict(raw_ids), meta

    def _write_locked(
        self,
        merged: dict[TopicPartition, int],
        ids: dict[str, str | None],
        meta: dict[TopicPartition, str],
        *,
        sync: bool,
    ) -> None:
        """Rewrite ``offsets.bak`` then ``offsets`` in place (A/B copies; see the docstring)."""
        self._cache = None  # until both copies and the token are written
        if self._main_bad:
            self._keep_damaged_copy()
        body: dict[str, dict[str, int]] = {}
        for (topic, p), off in sorted(merged.items()):
            body.setdefault(topic, {})[str(p)] = off
        ids = {t: ids.get(t) for t in body}
        doc: dict[str, object] = {"format": FORMAT, "offsets": body, "topic_ids": ids}
        notes: dict[str, dict[str, str]] = {}
        for (topic, p), text in sorted(meta.items()):
            if (topic, p) in merged and text:
                notes.setdefault(topic, {})[str(p)] = text
        if notes:
            doc["metadata"] = notes
        data = encode_meta(doc)
        created = False
        shrink = self._copy_len is None or len(data) < self._copy_len
        for path in (self.path + ".bak", self.path):
            created |= self._overwrite(path, data, sync, shrink)
            _fs.crash_point("offsets-after-" + os.path.basename(path))
        if created:
            _fs.fsync_dir(self.group_dir)
        self._copy_len = len(data)
        self._writes += 1
        token = f"{self._token_prefix}-{self._writes}".encode("ascii")
        self._lock.write_token(GroupLock.OFFSETS, token)
        self._cache, self._cache_token, self._ids = merged, token, ids
        self._meta = {tp: m for tp, m in meta.items() if tp in merged and m}

    @staticmethod
    def _overwrite(path: str, data: bytes, sync: bool, shrink: bool) -> bool:
        """Write ``data`` over ``path`` in place; True if the file was created (or empty)."""
        fd = _fs.open_file(path, os.O_RDWR | os.O_CREAT)
        try:
            created = sync and os.fstat(fd).st_size == 0
            _fs.pwrite_all(fd, data, 0, path)
            if shrink:  # bytes after the header's length are ignored, but keep files tidy
                os.ftruncate(fd, len(data))
            if sync:
                os.fdatasync(fd)
        except OSError as e:
            raise storage_error("write", path, e) from None
        finally:
            os.close(fd)
        return created

    def _keep_damaged_copy(self) -> None:
        """Save the damaged main file as ``offsets.corrupt`` before it is overwritten."""
        data = self._read_file_raw(self.path)
        if data is not None:
            _fs.atomic_write(self.path + ".corrupt", data)
        self._main_bad = False


@os_errors("read offsets")
def recorded_topic_ids(root: str, topic: str) -> set[str]:
    """The topic ids that the committed offsets of any group under ``root`` recorded for
    ``topic``: what a repair of the topic's lost metadata can give it back, so that those
    offsets stay valid. Only reads (a damaged offsets file is skipped)."""
    found: set[str] = set()
    for group in list_groups(root):
        got = read_meta(os.path.join(group_dir(root, group), "offsets"), OffsetStore._parse)
        if got.value is not None:
            tid = got.value[1].get(topic)
            if isinstance(tid, str) and tid:
                found.add(tid)
    return found
