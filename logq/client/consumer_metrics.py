"""The counters behind ``Consumer.metrics()``, named as Kafka's consumer metrics where one exists.

``metrics()`` returns a flat ``{name: number}`` dict (kafka-python nests the same names under
metric groups; ``metrics()["records-consumed-total"]`` here is the
``consumer-fetch-manager-metrics`` entry there). Totals count since the Consumer was built;
averages and maxima are over its whole life (Kafka's are over a 30 s window). Names:

- ``records-consumed-total``: records returned by ``poll`` and ``poll_columns``.
- ``bytes-consumed-total``: bytes read from segment files to serve them (Kafka: bytes fetched).
- ``fetch-total``: reads of a partition log.
- ``fetch-latency-avg`` / ``fetch-latency-max`` (ms): the time of one fetch pass of a poll
  over its partitions (reading and decoding; waiting for new data is not counted: Kafka's
  includes the broker's wait for data).
- ``records-lag-max``: the largest lag (log end offset minus position) over the assigned
  partitions, at the call (Kafka: the largest seen in its window).
- ``commit-total``, ``commit-failed-total``: commits written and commits refused;
  ``commit-latency-avg`` / ``commit-latency-max`` (ms) over every attempt.
- ``assigned-partitions``: partitions the consumer reads now.

Zero-valued averages mean nothing was measured yet (Kafka reports NaN there).
"""

from __future__ import annotations

__all__ = ["ConsumerMetrics"]


class _Timing:
    """Count, total and maximum of durations in ns."""

    __slots__ = ("count", "total_ns", "max_ns")

    def __init__(self) -> None:
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def avg_ms(self) -> float:
        return self.total_ns / self.count / 1e6 if self.count else 0.0

    def max_ms(self) -> float:
        return self.max_ns / 1e6


class ConsumerMetrics:
    """What a Consumer counts as it polls and commits (two clock reads per fetch pass)."""

    def __init__(self) -> None:
        self.records_consumed = 0
        self.fetch = _Timing()
        self.commit = _Timing()
        self.commits_failed = 0

    def fetched(self, ns: int, records: int) -> None:
        """A fetch pass of a poll took ``ns`` and returned ``records``."""
        self.fetch.add(ns)
        self.records_consumed += records

    def commit_done(self, ns: int, ok: bool) -> None:
        """A commit attempt took ``ns``; ``ok`` False if it was refused."""
        self.commit.add(ns)
        if not ok:
            self.commits_failed += 1

    def snapshot(self, *, bytes_read: int, fetches: int, lag_max: int, assigned: int) -> dict[str, int | float]:
        """The documented metrics (see the module docstring), given what the Consumer knows."""
        return {
            "records-consumed-total": self.records_consumed,
            "bytes-consumed-total": bytes_read,
            "fetch-total": fetches,
            "fetch-latency-avg": self.fetch.avg_ms(),
            "fetch-latency-max": self.fetch.max_ms(),
            "records-lag-max": lag_max,
            "commit-total": self.commit.count - self.commits_failed,
            "commit-failed-total": self.commits_failed,
            "commit-latency-avg": self.commit.avg_ms(),
            "commit-latency-max": self.commit.max_ms(),
            "assigned-partitions": assigned,
        }
