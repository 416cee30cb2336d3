"""The on-disk protocol of consumer groups: paths, the group lock, probes, state, owners.

Shared by logq/groups/member.py (membership) and logq/groups/offsets.py (fenced commits),
plus the read-only inspection (describe_group, list_groups), which member.py re-exports.
The layout and the rules are described in member.py's docstring; the assignment rules
are in logq/groups/assignor.py. Topic names follow the storage layer's rule
(logq.storage.topics.validate_topic); group and member ids, which name directories and
files here, follow the same character rule with :data:`NAME_RE`.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from logq.errors import (
    ClientClosedError,
    CommitFailedError,
    ConfigError,
    InvalidGroupIdError,
    LockTimeoutError,
    LogqError,
    StorageError,
    storage_error,
)
from logq.storage import files as _fs
from logq.storage.meta import read_meta
from logq.storage.topics import validate_topic

TopicPartition = tuple[str, int]  # plain (topic, partition) keys; logq.types.TopicPartition is one of these

STATE_FORMAT = 1
NAME_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")  # group and member ids
OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


P = ParamSpec("P")
R = TypeVar("R")


def os_errors(op: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: an OSError escaping the function becomes a logq StorageError."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except LogqError:
                raise
            except OSError as e:
                raise storage_error(op, e.filename or "group directory", e) from None

        return inner

    return wrap


# ----------------------------------------------------------------------------- names, paths


def check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value) or value in (".", ".."):
        raise InvalidGroupIdError(kind, value, "must be 1-249 characters of [a-zA-Z0-9._-]")
    if kind == "member id" and value.startswith("."):
        raise InvalidGroupIdError(kind, value, "must not start with '.'")
    return value


def group_dir(root: str, group: str) -> str:
    """The directory of ``group`` under the data directory ``root``."""
    return os.path.join(root, "__logq", "groups", check_name("group id", group))


def groups_root(root: str) -> str:
    return os.path.join(root, "__logq", "groups")


def ensure_dirs(gdir: str) -> None:
    missing = []
    path = gdir
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        _fs.make_dir(p)
    _fs.make_dir(os.path.join(gdir, "members"))
    _fs.make_dir(os.path.join(gdir, "owners"))


def owner_path(gdir: str, tp: TopicPartition) -> str:
    return os.path.join(gdir, "owners", f"{tp[0]}-{tp[1]}.lock")


def member_path(gdir: str, member_id: str) -> str:
    return os.path.join(gdir, "members", f"{member_id}.lock")


# ----------------------------------------------------------------------------- the group lock


def read_lock_tokens(fd: int) -> tuple[bytes, bytes]:
    """The two change tokens of a lock file: two 64-byte space-padded slots at offsets 0 and 64."""
    raw = os.pread(fd, 128, 0)
    return raw[:64].rstrip(), raw[64:128].rstrip()


def write_lock_token(fd: int, slot: int, token: bytes, path: str) -> None:
    """Overwrite slot ``slot`` (0 or 1) of a lock file with ``token`` (at most 64 bytes kept)."""
    _fs.pwrite_all(fd, token[:64].ljust(64, b" "), 64 * slot, path)


class GroupLock:
    """The group's flock with a bounded wait, shareable by the threads of one process.

    ``readonly=True`` (describing a group, reading its offsets) opens the lock file for
    reading only, so a user who cannot write the data directory can still take the shared
    lock (flock needs no write access); a group whose lock file was never made has nothing
    to lock, and its tokens read as empty.
    """

    def __init__(self, path: str, timeout_ms: float, *, readonly: bool = False) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        self.readonly = readonly
        self._absent = False
        if readonly:
            try:
                self._fd: int | None = _fs.open_file(path, os.O_RDONLY)
            except StorageError as e:
                if not isinstance(e.cause, FileNotFoundError):
                    raise
                self._fd, self._absent = None, True
        else:
            self._fd = _fs.open_file(path, os.O_RDWR | os.O_CREAT)
        self._threads = threading.Lock()

    @contextmanager
    def hold(self, shared: bool = False) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_ms / 1000.0
        if not self._threads.acquire(timeout=max(0.0, self.timeout_ms / 1000.0)):
            raise LockTimeoutError(self.path, "group lock", self.timeout_ms)
        try:
            if self._absent:
                yield  # read-only and never created: no writer ever held it
                return
            if self._fd is None:
                raise ClientClosedError("group lock")
            op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            pause = 0.0001
            while True:
                try:
                    fcntl.flock(self._fd, op)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LockTimeoutError(self.path, "group lock", self.timeout_ms) from None
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.005)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    # The lock file's content: two 64-byte change tokens, written with the lock held.
    # Slot 0 changes with every offsets write, slot 1 before every ownership-record change
    # (once per lock hold that changes any). A process whose cached token still matches can
    # skip re-reading those files; a member reads slot 1 without the lock to learn that its
    # ownership records are unchanged (a bump is written before the records it announces).
    OFFSETS, OWNERS = 0, 1

    def read_tokens(self) -> tuple[bytes, bytes]:
        if self._absent:
            return b"", b""
        assert self._fd is not None
        return read_lock_tokens(self._fd)

    def write_token(self, slot: int, token: bytes) -> None:
        assert self._fd is not None
        write_lock_token(self._fd, slot, token, self.path)

    def close(self) -> None:
        with self._threads:
            self._absent = False
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


# ----------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    alive: bool
    heartbeat_ns: int | None
    poll_ns: int | None
    pid: int | None


def probe_member(gdir: str, member_id: str, *, remove_dead: bool = False) -> Probe:
    path = member_path(gdir, member_id)
    try:
        fd = os.open(path, os.O_RDONLY | OPEN_FLAGS)
    except FileNotFoundError:
        return Probe(False, None, None, None)
    except OSError as e:  # EMFILE, EACCES: a logq error naming the file
        raise storage_error("open", path, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            alive = False
            if remove_dead:  # nobody can take it while we hold the shared lock
                _fs.unlink_if_exists(path)
        except BlockingIOError:
            alive = True
        fields = os.pread(fd, 64, 0).split()
    finally:
        os.close(fd)
    try:
        hb, poll, pid = (int(f) for f in fields[:3])
        return Probe(alive, hb, poll, pid)
    except ValueError:  # unreadable heartbeat: judge by the flock alone
        return Probe(alive, None, None, None)


def member_ok(probe: Probe, info: Mapping[str, Any], now_ns: int) -> bool:
    if not probe.alive:
        return False
    session_ns = int(info.get("session_ms", 3000)) * 1_000_000
    poll_ns = int(info.get("max_poll_ms", 300_000)) * 1_000_000
    if probe.heartbeat_ns is not None and now_ns - probe.heartbeat_ns > session_ns:
        return False
    if probe.poll_ns is not None and now_ns - probe.poll_ns > poll_ns:
        return False
    return True


def live_member_ids(gdir: str) -> list[str]:
    """Ids whose member file is flocked by a live process (members of any generation)."""
    try:
        names = os.listdir(os.path.join(gdir, "members"))
    except FileNotFoundError:
        return []
    ids = [n[: -len(".lock")] for n in names if n.endswith(".lock") and not n.startswith(".")]
    return sorted(m for m in ids if probe_member(gdir, m).alive)


def parse_owner(raw: bytes) -> tuple[str, int] | None:
    """(member id, generation) of an ownership record's content; None if blank or unreadable."""
    fields = raw.split()
    if len(fields) == 2 and fields[1].isdigit():
        return fields[0].decode("ascii", "replace"), int(fields[1])
    return None


def read_owner_record(gdir: str, tp: TopicPartition) -> tuple[str, int]:
    """(member id, acquisition generation) named by an ownership record; ("", -1) if none."""
    path = owner_path(gdir, tp)
    try:
        fd = os.open(path, os.O_RDONLY | OPEN_FLAGS)
    except FileNotFoundError:
        return "", -1
    except OSError as e:
        raise storage_error("open", path, e) from None
    try:
        rec = parse_owner(os.pread(fd, 512, 0))
    finally:
        os.close(fd)
    return rec if rec is not None else ("", -1)


class Liveness:
    """Whether members are alive (their member file is locked), each probed once.

    A holder that is dead stays dead (a member id taken again joins with the group lock
    held and first clears the records naming it), so one answer per member is enough for
    the span of one group-lock hold, or of one inspection.
    """

    def __init__(self, gdir: str) -> None:
        self.gdir = gdir
        self._seen: dict[str, bool] = {}

    def __call__(self, member_id: str) -> bool:
        alive = self._seen.get(member_id)
        if alive is None:
            alive = self._seen[member_id] = probe_member(self.gdir, member_id).alive
        return alive


def read_owner(
    gdir: str, tp: TopicPartition, alive: Callable[[str], bool] | None = None
) -> tuple[str | None, int | None, bool]:
    """(holder member id, generation, busy) of one ownership record.

    Busy: the record names a member whose member file is locked, i.e. a live process.
    """
    holder, gen = read_owner_record(gdir, tp)
    if not holder:
        return None, None, False
    return holder, gen, (alive or Liveness(gdir))(holder)


def owner_records(gdir: str) -> Iterator[tuple[TopicPartition, str, int]]:
    """(partition, member id, generation) of every non-blank ownership record."""
    owners = os.path.join(gdir, "owners")
    try:
        names = sorted(os.listdir(owners))
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(".") or not name.endswith(".lock"):
            continue
        topic, _, part = name[: -len(".lock")].rpartition("-")
        if not (topic and part.isdigit() and part.isascii()):
            continue
        tp = (topic, int(part))
        holder, gen = read_owner_record(gdir, tp)
        if holder:
            yield tp, holder, gen


def claim_owner(
    gdir: str,
    tp: TopicPartition,
    member_id: str,
    generation: int,
    busy: Callable[[str, int], bool],
    before_write: Callable[[], object],
) -> bool:
    """With the group lock held: write "<member_id> <generation>" into ``tp``'s ownership
    record unless it names another member for which ``busy(holder, generation)`` is true.
    ``before_write()`` runs first (it bumps the owners token)."""
    path = owner_path(gdir, tp)
    fd = _fs.open_file(path, os.O_RDWR | os.O_CREAT)
    try:
        rec = parse_owner(os.pread(fd, 512, 0))
        if rec is not None and rec[0] != member_id and busy(*rec):
            return False
        before_write()
        content = f"{member_id} {generation}\n".encode("ascii")
        os.ftruncate(fd, 0)
        _fs.pwrite_all(fd, content, 0, path)
        return True
    finally:
        os.close(fd)


def clear_owner(
    gdir: str, tp: TopicPartition, member_id: str, generation: int, before_write: Callable[[], object]
) -> bool:
    """With the group lock held: empty ``tp``'s ownership record if it names ``member_id``
    with ``generation`` (``before_write()`` first). False when it names someone else (a
    fence emptied it, another member took it)."""
    path = owner_path(gdir, tp)
    fd = _fs.open_existing(path, os.O_RDWR)
    if fd is None:
        return False
    try:
        rec = parse_owner(os.pread(fd, 512, 0))
        if rec != (member_id, generation):
            return False
        before_write()
        os.ftruncate(fd, 0)
        return True
    finally:
        os.close(fd)


def once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run at its first call only (the owners token is bumped once per lock hold)."""
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            fn()

    return call


def bump_owners_token(lock: GroupLock) -> bytes:
    """Call with the group lock held, *before* changing any ownership record; returns the token."""
    token = secrets.token_hex(16).encode("ascii")
    lock.write_token(GroupLock.OWNERS, token)
    return token


def check_commit_fence(
    records: Mapping[TopicPartition, tuple[str, int]],
    tps: Iterable[TopicPartition],
    member_id: str,
    generation: int,
) -> None:
    """Raise CommitFailedError unless ``member_id`` holds every partition in ``tps``.

    ``records`` are the ownership records (read_owner_record) of ``tps``, read with the
    group lock held. A member holds a partition when the record names it with an acquisition
    generation <= ``generation``: a member that lost a partition (even if it got it back
    later) cannot commit with the generation it had then.
    """
    for tp in tps:
        holder, acquired = records[tp]
        if holder == member_id and 0 <= acquired <= generation:
            continue
        raise CommitFailedError(
            f"member {member_id!r} (generation {generation}) does not own {tp[0]}-{tp[1]}; "
            f"its ownership record names {holder or 'nobody'}"
        )


# ----------------------------------------------------------------------------- state


@dataclass(frozen=True)
class GroupState:
    """One generation of a group. ``forming`` is set while a group that was empty waits for
    more members before its first assignment (logq/groups/startup.py): (the monotonic ns at
    which the assignment is due, the latest it may be pushed to by members joining)."""

    generation: int
    members: dict[str, dict[str, Any]]
    assignment: dict[str, list[TopicPartition]]
    forming: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": STATE_FORMAT,
            "generation": self.generation,
            "members": self.members,
            "assignment": {m: [list(tp) for tp in tps] for m, tps in self.assignment.items()},
        }
        if self.forming is not None:  # absent otherwise: earlier readers ignore unknown keys
            out["forming_until_ns"], out["forming_limit_ns"] = self.forming
        return out


def check_subscription(got: Any) -> dict[str, int]:
    """A subscription ({topic: partition count}) as a dict; ConfigError if it is not one."""
    try:
        sub = dict(got)
    except (TypeError, ValueError):
        raise ConfigError(f"the subscription must be a mapping of topic to partition count, got {got!r}") from None
    for topic, n in sub.items():
        validate_topic(topic)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"partition count of {topic!r} must be an int >= 0, got {n!r}")
    return sub


def parse_state(obj: Any) -> GroupState:
    if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown state format {obj.get('format') if isinstance(obj, dict) else obj!r}")
    gen = obj["generation"]
    if not isinstance(gen, int) or gen < 0:
        raise ValueError("bad generation")
    members = {check_name("member id", m): dict(v) for m, v in obj["members"].items()}
    for info in members.values():
        info["topics"] = check_subscription(info["topics"])
    assignment = {
        check_name("member id", m): [(validate_topic(t), int(p)) for t, p in tps]
        for m, tps in obj["assignment"].items()
    }
    forming = None
    if "forming_until_ns" in obj:
        until, limit = obj["forming_until_ns"], obj["forming_limit_ns"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (until, limit)):
            raise ValueError("bad forming window")
        forming = (until, limit)
    return GroupState(gen, members, assignment, forming)


def load_state(gdir: str) -> tuple[GroupState | None, list[str]]:
    path = os.path.join(gdir, "state")
    got = read_meta(path)
    problems = list(got.problems)
    if got.value is None:
        return None, problems
    try:
        return parse_state(got.value), problems
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return None, problems + [f"{path}: unusable group state: {e}"]


def stat_sig(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


# ----------------------------------------------------------------------------- files


def new_locked_file(path: str, content: bytes | None = None) -> int:
    """Create a file beside ``path``, flock it, write ``content``, rename it to ``path``."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = _fs.open_file(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if content:
            _fs.pwrite_all(fd, content, 0, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        _fs.unlink_if_exists(tmp)
        raise
    return fd


def max_owner_generation(gdir: str) -> int:
    return max((gen for _, _, gen in owner_records(gdir)), default=0)


@os_errors("list groups")
def list_groups(root: str) -> list[str]:
    """Names of the groups that have a directory under ``root``."""
    try:
        names = os.listdir(groups_root(root))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if NAME_RE.fullmatch(n) and os.path.isdir(os.path.join(groups_root(root), n)))
