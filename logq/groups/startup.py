"""Group start-up: the first assignment of an empty group waits for the members starting with it.

Without a wait, members started together churn: the first to join takes every partition, the
second takes half of them back a moment later, and so on, each move a revoke, a commit and a
re-read. Kafka avoids it by delaying the first rebalance of an empty group by
``group.initial.rebalance.delay.ms`` (3 s there); logq's members do the same with
``initial_rebalance_delay_ms`` (:data:`DEFAULT_INITIAL_REBALANCE_DELAY_MS`, 0 disables):

- A member that joins a group with no other live member opens a *forming window*: the state
  it writes lists the members but assigns nothing, due at now + delay.
- Each member that joins while the window is open pushes it to now + (its) delay, never past
  the window's limit: the first join + max(delay, max_poll_interval_ms), Kafka's cap (the
  rebalance timeout).
- When the window is due, the first member to notice (at a poll, or its heartbeat thread)
  computes the assignment for everyone in the group then: each member is assigned once.
- Members that leave or die during the window just drop out of it; a member that joins a
  group whose assignment is already made is not delayed (ordinary rebalance).

The window lives in the group's ``state`` file as two CLOCK_MONOTONIC instants, which all
processes of one host share (as the heartbeats do). These rules are pure: the member
(logq/groups/member.py) applies them under the group lock.
"""

from __future__ import annotations

from typing import Any

from logq.errors import ConfigError

__all__ = ["DEFAULT_INITIAL_REBALANCE_DELAY_MS", "check_delay", "forming_window", "is_due"]

# An embedded group's members are processes on one host: they start within a few hundred
# ms of each other (interpreter start-up and imports), not the seconds Kafka allows for
# clients over a network; 300 ms covers a batch started together while keeping a lone
# consumer's first poll prompt.
DEFAULT_INITIAL_REBALANCE_DELAY_MS = 300


def check_delay(value: Any) -> int:
    """``initial_rebalance_delay_ms`` if it is an int >= 0 (0 disables); ConfigError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"initial_rebalance_delay_ms={value!r} is invalid: must be an int >= 0 (0 disables)")
    return value


def forming_window(
    old: tuple[int, int] | None, *, joining: bool, alone: bool, now_ns: int, delay_ns: int, cap_ns: int
) -> tuple[int, int] | None:
    """The forming window after a state change; None when the assignment is to be made now.

    ``old`` is the window of the state read (or None), ``joining`` whether the member making
    the change joins (it is not yet among the members), ``alone`` whether no other live member
    is in the group, ``delay_ns`` the joining member's delay and ``cap_ns`` its longest wait
    (the window's limit is the first join + max(delay_ns, cap_ns)).
    """
    if joining and alone:
        return (now_ns + delay_ns, now_ns + max(delay_ns, cap_ns)) if delay_ns > 0 else None
    if old is None or is_due(old, now_ns):
        return None
    until, limit = old
    if joining:
        return (min(max(until, now_ns + delay_ns), limit), limit)
    return old


def is_due(window: tuple[int, int] | None, now_ns: int) -> bool:
    """Whether a forming window has ended (its assignment is to be made)."""
    return window is not None and now_ns >= window[0]
