"""Small file-system primitives with the durability rules written once.

- A file that is created, renamed or deleted is durable only after its directory is fsynced.
- A metadata file is replaced atomically: write tmp -> fsync tmp -> rename -> fsync dir.
- Locks are ``flock`` on a dedicated file: per open file description, so two threads with
  their own descriptors exclude each other, and the kernel drops the lock when the holder
  dies (``fcntl.lockf`` is per process and is silently released by closing any descriptor).
- Files are created 0600 and directories 0700: event data is not other users' business.
  A data directory shared with its group (``shared_read="group"``: mode 0750) passes its
  group's read access down: a directory whose mode is exactly ``rwxr-x---`` (setuid, setgid
  and sticky bits aside) gets new files 0640 and new directories 0750, whatever the umask.
  Any other parent mode, ``/tmp``'s or a home directory's 0755 included, gives the private
  modes: only a directory made group-shared on purpose shares what is created in it.

Every OSError is re-raised as a logq StorageError (DiskFullError for ENOSPC).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from logq.config import check_shared_read
from logq.errors import MissingPartitionError, StorageError, storage_error

FILE_MODE = 0o600
DIR_MODE = 0o700
SHARED_FILE_MODE = 0o640
SHARED_DIR_MODE = 0o750
_SPECIAL = 0o7000  # setuid, setgid, sticky: kept by chmod here (setgid passes the group down)

# Test hook: the name of a site at which to SIGKILL this process (see crash_point()).
_CRASH_AT = os.environ.get("LOGQ_CRASH_AT", "")


def crash_point(site: str) -> None:
    """Kill this process with SIGKILL when ``LOGQ_CRASH_AT`` names ``site``.

    ``LOGQ_CRASH_AT=site:n`` kills at the n-th time the site is reached (1-based).
    Used by the crash tests to stop a writer at an exact point; free when unset.
    """
    if not _CRASH_AT:
        return
    name, _, nth = _CRASH_AT.partition(":")
    if name != site:
        return
    count = _crash_counts.get(site, 0) + 1
    _crash_counts[site] = count
    if count >= int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_crash_counts: dict = {}


def fsync_fd(fd: int, path: str, what: str = "fsync") -> None:
    """fsync ``fd``; an error becomes a StorageError naming ``path`` (never retried)."""
    try:
        os.fsync(fd)
    except OSError as e:
        raise storage_error(what, path, e) from None


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise storage_error("open directory", path, e) from None
    try:
        fsync_fd(fd, path, "fsync directory")
    finally:
        os.close(fd)


def shares_read(directory: str) -> bool:
    """Whether what is created in ``directory`` is readable by its group (mode exactly 0750)."""
    try:
        mode = os.stat(directory).st_mode
    except OSError:
        return False
    return mode & 0o077 == 0o050


def modes(shared_read: str) -> tuple[int, int]:
    """(file mode, directory mode) of a ``shared_read`` setting ("private" or "group")."""
    check_shared_read(shared_read)
    return (SHARED_FILE_MODE, SHARED_DIR_MODE) if shared_read == "group" else (FILE_MODE, DIR_MODE)


def make_dir(path: str) -> bool:
    """Create ``path`` (0700, or 0750 in a group-shared directory) if missing, refusing
    symlinks. True if it was created."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        shared = shares_read(os.path.dirname(path) or ".")
        mode = SHARED_DIR_MODE if shared else DIR_MODE
        try:
            os.mkdir(path, mode)
            if shared:  # the umask may have taken the group's bits away
                os.chmod(path, (os.stat(path).st_mode & _SPECIAL) | mode)
        except FileExistsError:
            return make_dir(path)
        except OSError as e:
            raise storage_error("mkdir", path, e) from None
        return True
    except OSError as e:
        raise storage_error("stat", path, e) from None
    if not stat.S_ISDIR(st.st_mode):
        raise storage_error(
            "open directory", path, OSError(errno.ENOTDIR, "exists and is not a directory (symlinks are refused)")
        )
    return False


def check_dir(path: str) -> None:
    """Refuse ``path`` unless it is a real directory (a planted symlink could point anywhere)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as e:
        raise MissingPartitionError("open directory", path, e) from None
    except OSError as e:
        raise storage_error("open directory", path, e) from None
    if not stat.S_ISDIR(st.st_mode):
        raise storage_error("open directory", path, OSError(errno.ENOTDIR, "not a directory (symlinks are refused)"))


def open_file(path: str, flags: int) -> int:
    """os.open that never follows a symlink and creates files 0600 (0640 in a group-shared
    directory)."""
    shared = bool(flags & os.O_CREAT) and shares_read(os.path.dirname(path) or ".")
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, SHARED_FILE_MODE if shared else FILE_MODE)
    except OSError as e:
        raise storage_error("open", path, e) from None
    if shared:  # the umask may have taken the group's read bit away
        try:
            st = os.fstat(fd)
            if not st.st_mode & stat.S_IRGRP and st.st_uid == os.geteuid():
                os.fchmod(fd, SHARED_FILE_MODE)
        except OSError as e:
            os.close(fd)
            raise storage_error("chmod", path, e) from None
    return fd


def open_existing(path: str, flags: int) -> int | None:
    """:func:`open_file`, or None when ``path`` does not exist (any other failure raises)."""
    try:
        return open_file(path, flags)
    except StorageError as e:
        if isinstance(e.cause, FileNotFoundError):
            return None
        raise


def set_tree_mode(root: str, shared_read: str) -> int:
    """Give every directory and regular file under ``root`` (itself included) the modes of
    ``shared_read``; symlinks are left alone. Returns how many entries changed.

    Entries of other owners are skipped (only their owner may change them). Used when a
    data directory's sharing changes, so files made before follow files made after.
    """
    file_mode, dir_mode = modes(shared_read)
    me = os.geteuid()
    changed = 0

    def fix(path: str, want: int, is_dir: bool) -> None:
        nonlocal changed
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) != is_dir or stat.S_ISLNK(st.st_mode):
                return
            if st.st_uid != me:
                return
            special = st.st_mode & _SPECIAL if is_dir else 0
            if st.st_mode & 0o7777 != special | want:
                os.chmod(path, special | want, follow_symlinks=False)
                changed += 1
        except FileNotFoundError:
            return  # deleted meanwhile (a topic delete, a rolled tmp file)
        except OSError as e:
            raise storage_error("chmod", path, e) from None

    fix(root, dir_mode, True)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in dirnames:
            fix(os.path.join(dirpath, d), dir_mode, True)
        for f in filenames:
            fix(os.path.join(dirpath, f), file_mode, False)
    return changed


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, pos: int, path: str) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.pwrite(fd, view, pos)
        except OSError as e:
            raise storage_error("write", path, e) from None
        view = view[n:]
        pos += n


def pread_exact(fd: int, n: int, pos: int) -> bytes:
    """Read up to ``n`` bytes at ``pos``; shorter only at end of file."""
    out = os.pread(fd, n, pos)
    if len(out) == n or not out:
        return out
    parts = [out]
    got = len(out)
    while got < n:
        more = os.pread(fd, n - got, pos + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def write_tmp(path: str, data: bytes, sync: bool = True) -> str:
    """Write ``data`` to ``path + ".tmp"`` (fsynced when ``sync``); return the tmp path."""
    tmp = path + ".tmp"
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        pwrite_all(fd, data, 0, tmp)
        if sync:
            fsync_fd(fd, tmp)
    finally:
        os.close(fd)
    return tmp


def atomic_write(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    tmp = write_tmp(path, data)
    try:
        os.replace(tmp, path)
    except OSError as e:
        raise storage_error("rename", path, e) from None
    fsync_dir(os.path.dirname(path) or ".")


def unlink_if_exists(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise storage_error("unlink", path, e) from None


class FileLock:
    """An exclusive or shared ``flock`` on a dedicated lock file, held by one descriptor."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = open_file(path, os.O_RDWR | os.O_CREAT)
        self.held = False  # set while this object holds the lock through ``with``

    def acquire(self, shared: bool = False, blocking: bool = True) -> bool:
        assert self._fd is not None, "lock file closed"
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(self._fd, op)
        except BlockingIOError:
            return False
        except OSError as e:
            raise storage_error("flock", self.path, e) from None
        return True

    def acquire_within(self, timeout_s: float, shared: bool = False) -> bool:
        """Try for up to ``timeout_s`` seconds (a bounded wait); False if still held by another."""
        deadline = time.monotonic() + timeout_s
        pause = 0.0001
        while not self.acquire(shared=shared, blocking=False):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.005)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        self.held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.held = False
        self.release()
