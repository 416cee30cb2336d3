"""Helpers shared by the tests and tools/soak.py (nothing here is collected as a test).

- ``workload``: the batches child writers append, their digest and the acknowledgement record.
- ``oracle``: the one independent reading of a partition directory (the codec alone, never
  PartitionLog), the expected index files, and the recovery checks C1-C5 and C7.
- ``logs``: building, abandoning ("crashing") and re-stating logs inside one test process.
- ``harness``: the parent side of child processes: spawning, the ack pipe, kills and cycles.
- ``children``: what a child process runs (``python -m tests.support.children <name> <json>``).
- ``group_children``, ``e2e_children``: targets for multiprocessing "spawn" children.

Importing this package must not import logq: ``children`` patches os.fdatasync first.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
