"""pytest-benchmark suites for logq, one file per layer: ``bench_<layer>.py``.

Run them with ``make bench`` (``pytest benchmarks --benchmark-enable --benchmark-only``).
They are not part of ``make test``: pyproject's ``testpaths`` is ``tests/`` and the files
are named ``bench_*.py``, which this conftest (loaded only when ``benchmarks/`` is
collected) turns into test modules.

``LOGQ_BENCH_SCALE=tiny`` shrinks every workload so that tests/cli/test_perf.py can run each
benchmark once (with ``--benchmark-disable``) in seconds; the default sizes are the
realistic ones: 100-byte values, batches of 1,000 records, logs of up to 1,000,000 records.

Every benchmark stores ``records`` (and ``bytes`` where it applies) handled per call in
``extra_info``, so ``tools/plot_bench.py`` can turn times into records/s and MB/s.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        if parent.session.isinitpath(file_path):
            return None  # named on the command line: pytest's python plugin collects it already
        return pytest.Module.from_parent(parent, path=file_path)
    return None
