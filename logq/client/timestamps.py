"""The one rule for a point in time given to the clients (``send(timestamp_ms=)``,
``send_batch(timestamp_ms=)``, ``replay_from(timestamp=)``, ``offsets_for_times``).

- an ``int`` is milliseconds since the epoch (Kafka's unit), within +-2**62 so any two
  timestamps of one batch differ by less than 2**63;
- an aware ``datetime`` is that instant;
- refused with a hint, never guessed: a naive ``datetime`` (its zone is unknown: Python's
  ``datetime.now()`` is local time, ``utcnow()`` UTC), a ``float`` (``time.time()`` is
  seconds, and a float cannot be told apart from float milliseconds), and an int between
  1e9 and 1e11: as milliseconds that is January 1970 to March 1973, as seconds the years
  2001 to 5138, so it is almost surely ``int(time.time())``.
"""

from __future__ import annotations

import datetime as _dt
import operator
from typing import Any

from logq.errors import ConfigError

__all__ = ["to_millis", "TS_LIMIT"]

# Timestamps a batch can hold: any two differ by less than 2**63, so every record's
# timestampDelta fits its varlong (about 146 million years either side of 1970).
TS_LIMIT = 1 << 62
_SECONDS_LOOKALIKE = (10**9, 10**11)  # ms values that are seconds of 2001 .. 5138
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_HINT = "pass int milliseconds since the epoch (int(time.time() * 1000)) or an aware datetime"


def to_millis(ts: Any, name: str = "timestamp") -> int:
    """Milliseconds since the epoch of ``ts`` by the rule above; ConfigError naming ``name`` otherwise."""
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None or ts.tzinfo.utcoffset(ts) is None:
            raise ConfigError(
                f"{name}={ts!r} is a naive datetime: its time zone is unknown",
                hint="attach one: datetime.now(timezone.utc), or dt.astimezone() for local time",
            )
        # exact integer arithmetic: float timestamp() * 1000 is 1 ms short for some datetimes
        t = (ts - _EPOCH) // _dt.timedelta(milliseconds=1)
    elif isinstance(ts, float):
        raise ConfigError(f"{name}={ts!r} is a float: seconds or milliseconds?", hint=_HINT)
    elif isinstance(ts, bool):
        raise ConfigError(f"{name}={ts!r} is invalid: a bool is not a time", hint=_HINT)
    else:
        try:
            t = operator.index(ts)  # int, numpy integers; not str, not Decimal
        except TypeError:
            raise ConfigError(f"{name}={ts!r} is invalid: must be milliseconds since the epoch", hint=_HINT) from None
        if _SECONDS_LOOKALIKE[0] <= t < _SECONDS_LOOKALIKE[1]:
            raise ConfigError(
                f"{name}={ts!r} looks like seconds since the epoch, not milliseconds",
                hint="multiply by 1000, or pass an aware datetime",
            )
    if not -TS_LIMIT <= t < TS_LIMIT:
        raise ConfigError(f"{name}={ts!r} is invalid: must be within +-2**62 ms of the epoch", hint=_HINT)
    return t
