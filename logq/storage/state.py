"""A partition's durable state: log start offset, recovery point, clean flag, boot id.

Stored in ``<partition>/logq.state`` (+ ``.bak``) as a checksummed metadata file (see
meta.py), whose JSON body is::

    {"version": 1, "log_start_offset": int, "recovery_point": int,
     "clean": bool, "boot_id": str}

- ``log_start_offset``: the first offset a reader may see (moved by retention and purges).
- ``recovery_point``: every offset below it was once fsynced; damage below it is corruption,
  a bad tail at or above it is a torn write that recovery may cut.
- ``clean``: written false by the first writer before it changes anything, true by the
  last writer's close. ``boot_id`` tells a process crash (page cache intact) from a reboot.

Every write and read remembers the file's (inode, mtime, size) *stamp*: a writer or reader
compares it to decide, cheaply, whether another process moved the state since it looked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from logq.storage import meta as _meta

__all__ = ["STATE_FILE", "PartitionState", "StoredState", "boot_id"]

STATE_FILE = "logq.state"
STATE_VERSION = 1

Stamp = tuple[int, int, int] | None


def boot_id() -> str:
    """This machine's boot id ("" where the kernel does not provide one)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class StoredState:
    """What the state file said (defaults when it is missing or unreadable)."""

    log_start_offset: int = 0
    recovery_point: int = 0
    clean: bool = False
    same_boot: bool = False  # written during this boot of the machine
    problems: list[str] = field(default_factory=list)  # damaged copies found while reading


class PartitionState:
    """The in-memory log start offset and recovery point, and their file."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, STATE_FILE)
        self.log_start_offset = 0
        self.recovery_point = 0
        self._stamp: Stamp = None

    def read(self) -> StoredState:
        """Read the file (no change to the in-memory offsets); remember its stamp."""
        self._stamp = _stamp(self.path)
        got = _meta.read_meta(self.path)
        d = got.value if isinstance(got.value, dict) else {}
        stored_boot = d.get("boot_id")
        return StoredState(
            int(d.get("log_start_offset", 0)),
            int(d.get("recovery_point", 0)),
            bool(d.get("clean", False)),
            bool(stored_boot) and stored_boot == boot_id(),
            list(got.problems),
        )

    def write(self, clean: bool = False) -> None:
        """Persist the in-memory offsets (fsynced: the state must survive a power cut)."""
        _meta.write_meta(
            self.path,
            {
                "version": STATE_VERSION,
                "log_start_offset": self.log_start_offset,
                "recovery_point": self.recovery_point,
                "clean": clean,
                "boot_id": boot_id(),
            },
            sync=True,
        )
        self._stamp = _stamp(self.path)

    def changed_on_disk(self) -> bool:
        """True if another process wrote the file since this object last read or wrote it."""
        return _stamp(self.path) != self._stamp

    def advance_recovery_point(self, offset: int) -> None:
        self.recovery_point = max(self.recovery_point, offset)
