"""The state of one share-partition (Kafka's KIP-932), without I/O.

A share group lets many members consume one partition: each record is *acquired* by one member
for a bounded time (its lock), then acknowledged on its own. This module holds the rules; the
durable, multi-process store (logq/groups/share_store.py) journals the changes they make.

Vocabulary (Kafka's):

- ``spso``, the share-partition start offset: every record below it is finished.
- ``end``: one past the last offset that entered the in-flight window; records from ``spso`` to
  ``end - 1`` are *in flight*, each with an entry in ``records``. Offsets at or after ``end``
  were never delivered (available, delivery count 0).
- Record states (Kafka's numbers): AVAILABLE 0, ACQUIRED 1, ACKNOWLEDGED 2, ARCHIVED 4; and
  logq's own ARCHIVING 5 (an archive decided, its dead letter not yet known written).

Rules:

- ``acquire`` hands out AVAILABLE records whose ``available_at_ms`` has come, first from the
  window (re-deliveries), then new ones from the caller's ``candidates`` (offsets ``end``,
  ``end + 1``, ... read from the log), while the window holds fewer than ``max_in_flight``
  offsets. Each acquisition adds 1 to the record's delivery count and locks it to the member
  until ``now + lock_ms``. A record whose ``expire_at_ms`` has passed is archived ("expired")
  instead of delivered. A record held by a member is never handed to another while the lock
  runs (expiry and a dead member are the only ways out besides acknowledgement).
- A lock that ends unacknowledged (expiry, dead member) may carry a redelivery backoff
  (:func:`backoff_fn`: fixed or exponential in the delivery count), beyond Kafka.
- Kafka's delivery limit: the count rises at acquisition; when a lock expires, the member dies
  or releases it and the count is at least ``delivery_count_limit``, the record is ARCHIVED
  with reason "delivery_limit"; otherwise it is AVAILABLE again with its count kept.
- ``acknowledge`` by the holder: accept -> ACKNOWLEDGED, reject -> ARCHIVED ("rejected"),
  release -> AVAILABLE (not before ``now + delay_ms``), or ARCHIVED at the limit.
- ``spso`` advances over the contiguous prefix of finished (ACKNOWLEDGED or ARCHIVED) records,
  whose entries are then dropped: memory is bounded by ``max_in_flight`` entries.
- Crash-consistent archives: with ``defer_archives`` set (the store sets it when a dead letter
  is to be written), an archive makes the record ARCHIVING (its reason and delivery count kept,
  no holder) instead of ARCHIVED; the store journals that intent, writes the dead letter, then
  :meth:`SharePartitionState.finish_archives` makes it ARCHIVED. An ARCHIVING record is never
  acquired, acknowledged or released again: the only way out is ARCHIVED with the same reason
  and count, so a crash between the intent and the archive ends in the archive (the dead letter
  written again, at least once), never in a redelivery. The archive is counted in ``totals``
  once, at the intent.

Changes accumulate in ``changes`` (the offsets touched, the archives made) for the store to
journal; :func:`to_runs` / :func:`from_runs` turn entries into Kafka-like runs
``[first, last, state, count, member, deadline_ms, available_at_ms, expire_at_ms, reason]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

AVAILABLE, ACQUIRED, ACKNOWLEDGED, ARCHIVED = 0, 1, 2, 4
ARCHIVING = 5  # logq's own (not a Kafka state): archive journaled as intended, dead letter pending
STATE_NAMES = {
    AVAILABLE: "available",
    ACQUIRED: "acquired",
    ACKNOWLEDGED: "acknowledged",
    ARCHIVED: "archived",
    ARCHIVING: "archiving",
}
FINISHED = (ACKNOWLEDGED, ARCHIVED)
ACK_TYPES = ("accept", "release", "reject")
DEFAULT_MAX_IN_FLIGHT = 2000
Backoff = Callable[[int], int]  # delivery count -> milliseconds before the next acquisition


def backoff_fn(base_ms: int, mode: str = "fixed", max_ms: int | None = None) -> Backoff | None:
    """The redelivery delay after a lock ends unacknowledged (expiry, dead member): ``base_ms``
    each time ("fixed"), or ``base_ms * 2 ** (count - 1)`` ("exponential"), capped at
    ``max_ms``; None when ``base_ms`` is 0."""
    if base_ms <= 0:
        return None
    cap = max_ms if max_ms is not None else 3_600_000
    if mode == "fixed":
        return lambda count: min(base_ms, cap)
    return lambda count: min(base_ms << min(max(count - 1, 0), 40), cap)


@dataclass(slots=True)
class InFlight:
    """One in-flight record. ``member`` and ``deadline_ms`` are set only while ACQUIRED;
    ``reason`` only when ARCHIVED or ARCHIVING; ``expire_at_ms`` 0 means never."""

    state: int = AVAILABLE
    count: int = 0
    member: str = ""
    deadline_ms: int = 0
    available_at_ms: int = 0
    expire_at_ms: int = 0
    reason: str = ""

    def key(self) -> tuple[int, int, str, int, int, int, str]:
        return (
            self.state,
            self.count,
            self.member,
            self.deadline_ms,
            self.available_at_ms,
            self.expire_at_ms,
            self.reason,
        )


class Candidate(NamedTuple):
    """A record read from the log at an offset not yet in the window: when it may be delivered
    (``available_at_ms``, from a delay header) and when it expires (0: never)."""

    offset: int
    available_at_ms: int = 0
    expire_at_ms: int = 0


class Archived(NamedTuple):
    offset: int
    reason: str
    delivery_count: int


@dataclass
class Changes:
    """What changed since the last ``take_changes``: offsets whose entries were written or
    dropped, and the records archived (for dead letters)."""

    touched: set[int] = field(default_factory=set)
    archived: list[Archived] = field(default_factory=list)
    window_moved: bool = False

    def __bool__(self) -> bool:
        return bool(self.touched or self.archived or self.window_moved)


class SharePartitionState:
    """One share-partition's in-flight window. Not thread-safe; the store serialises access."""

    def __init__(self, spso: int = 0, end: int | None = None, records: dict[int, InFlight] | None = None) -> None:
        self.spso = spso
        self.end = spso if end is None else end
        self.records: dict[int, InFlight] = dict(records or {})
        # running totals since the share-partition began (kept across restarts by the journal):
        # "deliveries" (acquisitions), "acknowledged", and one per archive reason
        self.totals: dict[str, int] = {}
        self.changes = Changes()
        # archive as ARCHIVING (an intent the store completes) instead of ARCHIVED at once
        self.defer_archives = False
        self.check()

    # ------------------------------------------------------------------ invariants

    def check(self, offsets: Iterable[int] | None = None) -> None:
        """Assert the invariants; of ``offsets`` only, or of every entry when None.

        Why each holds: the window is contiguous (every in-flight offset has exactly one entry,
        so nothing is lost or delivered from nowhere); the first entry is unfinished (the start
        advances over finished records at once, so the journal and memory stay bounded);
        acquired entries name their holder and lock deadline (so expiry and member death can
        return them); other entries name nobody (a stale holder could acknowledge them);
        archived and archiving entries, and only they, carry their reason (the dead letter
        written for an ARCHIVING entry, again after a crash, has the same reason and count).
        """
        assert 0 <= self.spso <= self.end, (self.spso, self.end)
        assert len(self.records) == self.end - self.spso, (len(self.records), self.spso, self.end)
        if self.spso < self.end:
            assert self.records[self.spso].state not in FINISHED, "the start must advance over finished records"
        for off in self.records if offsets is None else offsets:
            if not self.spso <= off < self.end:
                assert off not in self.records, off
                continue
            r = self.records[off]
            assert r.state in STATE_NAMES, r
            assert r.count >= 0, r
            if r.state == ACQUIRED:
                assert r.member and r.count >= 1, r
            else:
                assert not r.member and r.deadline_ms == 0, r
            assert (r.state in (ARCHIVED, ARCHIVING)) == bool(r.reason), r

    # ------------------------------------------------------------------ reading

    def take_changes(self) -> Changes:
        out, self.changes = self.changes, Changes()
        return out

    def in_flight(self) -> int:
        return self.end - self.spso

    def held_by(self, member: str) -> list[int]:
        return [o for o, r in self.records.items() if r.state == ACQUIRED and r.member == member]

    def holders(self) -> set[str]:
        return {r.member for r in self.records.values() if r.state == ACQUIRED}

    def next_deadline_ms(self, now_ms: int) -> int | None:
        """The earliest future time at which something becomes acquirable: a lock expiring or a
        delayed record's time coming. None when nothing is waiting."""
        best: int | None = None
        for r in self.records.values():
            t = r.deadline_ms if r.state == ACQUIRED else r.available_at_ms if r.state == AVAILABLE else 0
            if t > now_ms and (best is None or t < best):
                best = t
        return best

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATE_NAMES.values(), 0)
        for r in self.records.values():
            out[STATE_NAMES[r.state]] += 1
        return out

    # ------------------------------------------------------------------ changing

    def _set(self, off: int, rec: InFlight) -> None:
        self.records[off] = rec
        self.changes.touched.add(off)

    def _finish_or_free(self, off: int, r: InFlight, limit: int, available_at_ms: int = 0) -> None:
        """A lock ends without acknowledgement: AVAILABLE, or ARCHIVED at the delivery limit."""
        if r.count >= limit:
            self._archive(off, r, "delivery_limit")
        else:
            self._set(off, InFlight(AVAILABLE, r.count, available_at_ms=available_at_ms, expire_at_ms=r.expire_at_ms))

    def _archive(self, off: int, r: InFlight, reason: str) -> None:
        state = ARCHIVING if self.defer_archives else ARCHIVED
        self._set(off, InFlight(state, r.count, expire_at_ms=r.expire_at_ms, reason=reason))
        self.changes.archived.append(Archived(off, reason, r.count))
        self._count(reason)

    def archiving(self) -> list[Archived]:
        """The ARCHIVING records (intents whose archive is not journaled yet), by offset."""
        return [Archived(o, r.reason, r.count) for o, r in sorted(self.records.items()) if r.state == ARCHIVING]

    def finish_archives(self) -> list[int]:
        """Every ARCHIVING record becomes ARCHIVED (same reason and count; counted already);
        the start advances over them. Returns their offsets."""
        out = [o for o, r in self.records.items() if r.state == ARCHIVING]
        for off in out:
            r = self.records[off]
            self._set(off, InFlight(ARCHIVED, r.count, expire_at_ms=r.expire_at_ms, reason=r.reason))
        self._advance()
        self.check(out)
        return out

    def _count(self, key: str) -> None:
        self.totals[key] = self.totals.get(key, 0) + 1

    def _advance(self) -> None:
        moved = False
        while self.spso < self.end and self.records[self.spso].state in FINISHED:
            del self.records[self.spso]
            self.changes.touched.add(self.spso)
            self.spso += 1
            moved = True
        self.changes.window_moved |= moved

    def expire(self, now_ms: int, limit: int, backoff: Backoff | None = None) -> list[int]:
        """Locks whose deadline has passed end; returns their offsets. ``backoff(count)`` is how
        long after ``now_ms`` a record that was delivered ``count`` times may be acquired again."""
        out = [o for o, r in self.records.items() if r.state == ACQUIRED and r.deadline_ms <= now_ms]
        for off in out:
            r = self.records[off]
            self._finish_or_free(off, r, limit, now_ms + backoff(r.count) if backoff else 0)
        self._advance()
        self.check(out)
        return out

    def member_gone(self, member: str, limit: int, now_ms: int = 0, backoff: Backoff | None = None) -> list[int]:
        """A member died or left: its records end their locks (a crash counts as an attempt),
        available again ``backoff(count)`` after ``now_ms``."""
        out = self.held_by(member)
        for off in out:
            r = self.records[off]
            self._finish_or_free(off, r, limit, now_ms + backoff(r.count) if backoff else 0)
        self._advance()
        self.check(out)
        return out

    def acquire(
        self,
        member: str,
        now_ms: int,
        candidates: Sequence[Candidate],
        max_records: int,
        *,
        lock_ms: int,
        limit: int,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> list[tuple[int, int]]:
        """Lock up to ``max_records`` records to ``member``; returns (offset, delivery count)."""
        assert member and max_records >= 0 and lock_ms > 0 and limit >= 1 and max_in_flight >= 1
        self.expire(now_ms, limit)
        got: list[tuple[int, int]] = []
        touched: list[int] = []
        for off, r in list(self.records.items()):
            if len(got) >= max_records:
                break
            if r.state == AVAILABLE and r.available_at_ms <= now_ms:
                touched.append(off)
                self._take(off, r, member, now_ms, lock_ms, got)
        self._acquire_new(member, now_ms, candidates, max_records, lock_ms, max_in_flight, got, touched)
        self._advance()
        self.check(touched)
        return got

    def _acquire_new(
        self,
        member: str,
        now_ms: int,
        candidates: Sequence[Candidate],
        max_records: int,
        lock_ms: int,
        max_in_flight: int,
        got: list[tuple[int, int]],
        touched: list[int],
    ) -> None:
        """Extend the window over ``candidates`` (offsets ``end``, ``end + 1``, ...): each enters
        AVAILABLE and is taken at once when due (as :meth:`_take` would: ACQUIRED with count 1,
        or archived "expired"). Written in one pass, as new offsets have no earlier entry."""
        deadline, taken = now_ms + lock_ms, 0
        records, changed = self.records, self.changes.touched
        for c in candidates:
            if len(got) >= max_records or self.end - self.spso >= max_in_flight:
                break
            off = c.offset
            if off < self.end:
                continue  # the window already holds it
            assert off == self.end, f"candidates must continue the window: {off} != {self.end}"
            self.end += 1
            self.changes.window_moved = True
            touched.append(off)
            changed.add(off)
            if c.available_at_ms > now_ms:
                records[off] = InFlight(AVAILABLE, 0, available_at_ms=c.available_at_ms, expire_at_ms=c.expire_at_ms)
            elif c.expire_at_ms and c.expire_at_ms <= now_ms:
                self._archive(off, InFlight(AVAILABLE, 0, expire_at_ms=c.expire_at_ms), "expired")
            else:
                records[off] = InFlight(ACQUIRED, 1, member, deadline, 0, c.expire_at_ms)
                got.append((off, 1))
                taken += 1
        if taken:
            self.totals["deliveries"] = self.totals.get("deliveries", 0) + taken

    def _take(self, off: int, r: InFlight, member: str, now_ms: int, lock_ms: int, got: list[tuple[int, int]]) -> None:
        if r.expire_at_ms and r.expire_at_ms <= now_ms:
            self._archive(off, r, "expired")
            return
        self._set(off, InFlight(ACQUIRED, r.count + 1, member, now_ms + lock_ms, 0, r.expire_at_ms))
        got.append((off, r.count + 1))
        self._count("deliveries")

    def acknowledge(
        self, member: str, offsets: Iterable[int], kind: str, *, now_ms: int, limit: int, delay_ms: int = 0
    ) -> list[int]:
        """Acknowledge records held by ``member``; returns the offsets it does not hold (its lock
        expired, or it never had them), which are left unchanged."""
        assert kind in ACK_TYPES, kind
        lost: list[int] = []
        done: list[int] = []
        for off in offsets:
            r = self.records.get(off)
            if r is None or r.state != ACQUIRED or r.member != member:
                lost.append(off)
                continue
            done.append(off)
            if kind == "accept":
                self._set(off, InFlight(ACKNOWLEDGED, r.count, expire_at_ms=r.expire_at_ms))
                self._count("acknowledged")
            elif kind == "reject":
                self._archive(off, r, "rejected")
            else:
                self._finish_or_free(off, r, limit, now_ms + delay_ms if delay_ms > 0 else 0)
        self._advance()
        self.check(done)
        return lost

    def give_back(self, member: str, offsets: Iterable[int]) -> list[int]:
        """Undo acquisitions the application never saw (a poll that failed before returning
        them): AVAILABLE again with the delivery count lowered back; returns the offsets
        ``member`` did not hold."""
        lost: list[int] = []
        done: list[int] = []
        for off in offsets:
            r = self.records.get(off)
            if r is None or r.state != ACQUIRED or r.member != member:
                lost.append(off)
                continue
            done.append(off)
            self._set(off, InFlight(AVAILABLE, r.count - 1, expire_at_ms=r.expire_at_ms))
            self.totals["deliveries"] = self.totals.get("deliveries", 0) - 1
        self.check(done)
        return lost

    def renew(self, member: str, offsets: Iterable[int], *, now_ms: int, lock_ms: int) -> list[int]:
        """Extend the locks ``member`` holds to ``now + lock_ms``; returns the offsets it lost."""
        lost: list[int] = []
        for off in offsets:
            r = self.records.get(off)
            if r is None or r.state != ACQUIRED or r.member != member or r.deadline_ms <= now_ms:
                lost.append(off)
                continue
            self._set(off, InFlight(ACQUIRED, r.count, member, now_ms + lock_ms, 0, r.expire_at_ms))
        return lost

    def move_start(self, offset: int) -> None:
        """Set the start to ``offset`` (the log start moved past it, or an administrator reset
        it): entries below it are dropped, the window begins there, empty if it was beyond."""
        assert offset >= 0
        for off in [o for o in self.records if o < offset]:
            del self.records[off]
            self.changes.touched.add(off)
        if offset > self.end:
            self.end = offset
        self.spso = offset
        for off in [o for o in self.records if o >= self.end]:  # cannot happen; kept for clarity
            del self.records[off]
        self.changes.window_moved = True
        self._advance()
        self.check()

    # ------------------------------------------------------------------ runs

    def runs(self, offsets: Iterable[int] | None = None) -> list[list[Any]]:
        return to_runs(self.records, offsets)

    def apply_runs(
        self, spso: int, end: int, runs: Sequence[Sequence[Any]], *, full: bool, totals: dict[str, int] | None = None
    ) -> None:
        """Replay a journal record: the window bounds and the entries it wrote (all of them
        when ``full``), and the running totals. Entries below the new start are dropped."""
        if totals is not None:
            self.totals = dict(totals)
        if full:
            self.records = {}
        touched: list[int] = []
        for run in runs:
            first, last, state, count, member, deadline, avail, expire, reason = run
            for off in range(first, last + 1):
                self.records[off] = InFlight(state, count, member, deadline, avail, expire, reason)
                touched.append(off)
        old_spso = self.spso
        self.spso, self.end = spso, end
        if not full and len(self.records) > end - spso:  # the start moved (or the window shrank)
            if spso - old_spso <= len(self.records):
                for off in range(old_spso, spso):
                    self.records.pop(off, None)
            for off in [o for o in self.records if not spso <= o < end] if len(self.records) > end - spso else []:
                del self.records[off]
        self.check(None if full else touched)


def to_runs(records: dict[int, InFlight], offsets: Iterable[int] | None = None) -> list[list[Any]]:
    """Entries as runs ``[first, last, state, count, member, deadline_ms, available_at_ms,
    expire_at_ms, reason]`` of consecutive offsets with equal fields (offsets absent from
    ``records`` are skipped)."""
    keys = sorted(records if offsets is None else (o for o in offsets if o in records))
    out: list[list[Any]] = []
    prev_key: tuple[Any, ...] | None = None
    for off in keys:
        k = records[off].key()
        if out and k == prev_key and out[-1][1] == off - 1:
            out[-1][1] = off
        else:
            out.append([off, off, *k])
            prev_key = k
    return out


def from_runs(runs: Sequence[Sequence[Any]]) -> dict[int, InFlight]:
    out: dict[int, InFlight] = {}
    for first, last, state, count, member, deadline, avail, expire, reason in runs:
        for off in range(first, last + 1):
            out[off] = InFlight(state, count, member, deadline, avail, expire, reason)
    return out
