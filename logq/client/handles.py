"""What a client keeps about the partitions it holds open: which topic incarnation they
belong to, and a cheap check that it still exists.

A topic can be deleted, or deleted and created again (a new *incarnation*, with another
topic id: logq/storage/topics.py), by another process while a Producer or Consumer has its
partitions open. The open files then belong to directories that were unlinked: writing to
them would report offsets for records that exist nowhere, and reading them would return
data of a topic that is gone. :class:`Incarnation` tells, with one ``stat`` of the topic's
metadata file, whether the incarnation a client opened is still the current one.

Why the check is enough for a writer: deleting a topic removes its metadata file *before*
it renames the partition directories away, and creating one writes the metadata file
*after* the directories. So if the metadata file still names the incarnation after an
append returned, the directory the append wrote to was still the live one at that moment:
the record was in the log when it was acknowledged. A check before the append keeps a
writer from catching up with a new incarnation's files through a stale handle.

The number of open partition logs is capped by the clients (``max_open_partitions``): a
writer's log holds 3 file descriptors and a reader's 1, so thousands of partitions would
exhaust a 1024 ``ulimit -n``. The least recently used log is closed and reopened on its
next use (the log's files keep everything; the client keeps its positions and queues).
"""

from __future__ import annotations

import os

from logq.errors import ConfigError
from logq.storage.topics import META_DIR, topic_id_of

__all__ = ["Incarnation", "DEFAULT_MAX_OPEN_PARTITIONS", "check_max_open_partitions"]

# Partitions a client keeps open at once: a producer's partition costs 3 descriptors, so
# 256 of them (768) stay under the usual 1024 soft limit with room for the rest.
DEFAULT_MAX_OPEN_PARTITIONS = 256

_Sig = tuple[int, int, int]


def _sig(path: str) -> _Sig | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Incarnation:
    """One incarnation of a topic, as a client opened it: ``topic_id`` under ``root``."""

    __slots__ = ("root", "topic", "topic_id", "_path", "_sig")

    def __init__(self, root: str, topic: str, topic_id: str) -> None:
        self.root = root
        self.topic = topic
        self.topic_id = topic_id
        self._path = os.path.join(root, META_DIR, "topics", topic, "meta")
        self._sig: _Sig | None = None  # the metadata file known to name topic_id (None: not yet read)

    def current_id(self) -> str | None:
        """The id of the topic's current incarnation (None: deleted); one stat when unchanged."""
        sig = _sig(self._path)
        if sig is None:
            return None
        if sig == self._sig:
            return self.topic_id
        tid = topic_id_of(self.root, self.topic)  # rewritten (a config change keeps the id) or replaced
        if tid == self.topic_id and _sig(self._path) == sig:
            self._sig = sig
        return tid

    def holds(self) -> bool:
        """Whether the incarnation this client opened is still the topic's current one."""
        return self.current_id() == self.topic_id


def check_max_open_partitions(value: object) -> int:
    """``max_open_partitions`` as given to a Producer or Consumer, or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"max_open_partitions={value!r} is invalid: must be an int >= 1 (partition logs kept open at "
            f"once; the default {DEFAULT_MAX_OPEN_PARTITIONS} keeps a producer under 1024 file descriptors)"
        )
    return value
