"""`logq repair`: damage below the recovery point is reported, then cut only on --execute."""

from __future__ import annotations

import os

import logq
from click.testing import CliRunner
from logq.cli import main


def _damaged_topic(root: str) -> str:
    admin = logq.Admin(root)
    admin.create_topic("t", 2, retention_ms=-1)
    with logq.Producer(root) as p:
        for v in (b"a", b"b", b"c"):
            p.send("t", v, partition=0).result(5)
        p.send("t", b"d", partition=0).result(5)
        p.send("t", b"x", partition=1).result(5)
    path = os.path.join(root, "t-0", "00000000000000000000.log")
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF  # inside the last batch's records: a CRC-covered byte
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_repair_without_execute_reports_damage_and_changes_nothing(tmp_path):
    root = str(tmp_path / "d")
    path = _damaged_topic(root)
    before = open(path, "rb").read()
    res = CliRunner().invoke(main, ["--data", root, "repair", "t"])
    assert res.exit_code == 1
    assert "t-0: damaged:" in res.output and "CRC mismatch" in res.output
    assert "t-1: ok" in res.output
    assert open(path, "rb").read() == before


def test_reads_of_damage_below_the_recovery_point_raise_until_repaired(tmp_path):
    root = str(tmp_path / "d")
    _damaged_topic(root)
    with logq.Consumer(root, "t", auto_offset_reset="earliest") as c:
        c.assign([("t", 0)])
        got = []
        try:
            for _ in range(5):
                got += c.poll(0.2)
            raised = False
        except logq.CorruptRecordError as e:
            raised = e.position is not None
    assert raised
    assert [r.value for r in got] == [b"a", b"b", b"c"]


def test_repair_execute_cuts_at_the_first_bad_batch_and_reads_work_again(tmp_path):
    root = str(tmp_path / "d")
    _damaged_topic(root)
    res = CliRunner().invoke(main, ["--data", root, "repair", "t", "--execute"])
    assert res.exit_code == 0, res.output
    assert "t-0: repaired:" in res.output and "log end offset 3" in res.output
    with logq.Consumer(root, "t", auto_offset_reset="earliest") as c:
        c.assign([("t", 0)])
        assert [r.value for r in c.poll(1.0)] == [b"a", b"b", b"c"]
    with logq.Producer(root) as p:
        assert p.send("t", b"e", partition=0).result(5).offset == 3
