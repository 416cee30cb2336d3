"""`logq share list / describe / reset-offsets / redrive`: the views, the plan and its execution
(refused while a member lives in another process, allowed once it is killed with kill -9),
redrive in text and JSON, and every misuse as one error line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import logq
import pytest
from logq.client.redrive import redrive_group

from tests.cli.cli_helpers import ok, one_error_line, parse_table, run, warnings_of

DESCRIBE_COLUMNS = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "START-OFFSET",
    "END-OFFSET",
    "AVAILABLE",
    "ACQUIRED",
    "ACKNOWLEDGED",
    "ARCHIVED",
    "DELIVERY-COUNTS",
    "OLDEST-ACQUIRED",
]
DLQ_COLUMNS = ["GROUP", "DEAD-LETTER-TOPIC", "LETTERS", "NOT-REDRIVEN"]
RESET_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "NEW-START-OFFSET"]
REDRIVE_COLUMNS = ["DEAD-LETTER", "SOURCE", "REASON", "DELIVERIES"]

MEMBER = """
import sys
import logq
sc = logq.ShareConsumer(sys.argv[1], "jobs", group_id="w", acknowledgement_mode="explicit")
held = sc.poll(timeout=5.0, max_records=1)
print(held[0].offset, sc.member_id, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Group w on jobs (2 partitions, 6 records each): in partition 0, offsets 0-1 rejected
    (dead letters in dlq), 2 accepted, 3-5 released once; partition 1 all released once."""
    root = tmp_path / "data"
    with logq.Admin(str(root)) as a:
        a.create_topic("jobs", partitions=2)
        a.create_topic("dlq")
    with logq.Producer(str(root)) as p:
        for i in range(12):
            p.send("jobs", b"job-%d" % i, partition=i % 2)
    with logq.ShareConsumer(
        str(root),
        "jobs",
        group_id="w",
        auto_offset_reset="earliest",
        dead_letter_topic="dlq",
        acknowledgement_mode="explicit",
    ) as sc:
        recs = sc.poll(timeout=1.0, max_records=100)
        for r in recs:
            if r.partition == 1:
                sc.acknowledge(r, "release")
            else:
                sc.acknowledge(r, {0: "reject", 1: "reject", 2: "accept"}.get(r.offset, "release"))
        sc.commit()
    return root


def rows(text: str, columns: list[str]) -> list[dict[str, str]]:
    return parse_table(text, columns)


def test_list_prints_the_share_groups(data: Path) -> None:
    assert ok(data, "share", "list").stdout == "w\n"


def test_describe_shows_states_histogram_and_dead_letters(data: Path) -> None:
    res = ok(data, "share", "describe", "w")
    parts, dead = res.stdout.split("\n\n")
    by_p = {r["PARTITION"]: r for r in rows(parts, DESCRIBE_COLUMNS)}
    assert by_p["0"]["START-OFFSET"] == "3" and by_p["0"]["END-OFFSET"] == "6"
    assert by_p["0"]["AVAILABLE"] == "3" and by_p["0"]["ACQUIRED"] == "0"
    assert by_p["0"]["DELIVERY-COUNTS"] == "1:3" and by_p["0"]["OLDEST-ACQUIRED"] == "-"
    assert by_p["1"]["AVAILABLE"] == "6" and by_p["1"]["DELIVERY-COUNTS"] == "1:6"
    assert rows(dead, DLQ_COLUMNS) == [{"GROUP": "w", "DEAD-LETTER-TOPIC": "dlq", "LETTERS": "2", "NOT-REDRIVEN": "2"}]
    assert warnings_of(res) == ["logq: warning: share group 'w' has no active members"]


def test_describe_json_and_a_live_member_in_another_process(data: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", MEMBER, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        offset, member = child.stdout.readline().split()
        res = ok(data, "share", "describe", "w", "--json")
        assert warnings_of(res) == []
        objs = [json.loads(line) for line in res.stdout.splitlines()]
        held = [o for o in objs if "partition" in o and o["oldestAcquired"] is not None]
        assert len(held) == 1 and held[0]["oldestAcquired"]["offset"] == int(offset)
        assert held[0]["oldestAcquired"]["member"] == member and held[0]["states"]["acquired"] == 1
        assert objs[-1] == {"group": "w", "deadLetterTopic": "dlq", "letters": 2, "pending": 2}
        line = one_error_line(run(data, "share", "reset-offsets", "w", "--topic", "jobs", "--to-latest", "--execute"))
        assert "1 live member(s)" in line
        ok(data, "share", "reset-offsets", "w", "--topic", "jobs", "--to-latest")  # a plan is allowed
    finally:
        child.kill()  # SIGKILL: the member dies without leaving
        child.wait()
    assert child.returncode == -signal.SIGKILL
    res = ok(data, "share", "reset-offsets", "w", "--topic", "jobs", "--to-latest", "--execute")
    assert [(r["PARTITION"], r["NEW-START-OFFSET"]) for r in rows(res.stdout, RESET_COLUMNS)] == [
        ("0", "6"),
        ("1", "6"),
    ]
    info = logq.Admin(str(data)).describe_share_group("w", dead_letters=False).info
    assert [(p.start_offset, p.states) for p in info.partitions] == [(6, {}), (6, {})]


def test_reset_offsets_plans_by_default_and_applies_with_execute(data: Path) -> None:
    res = ok(data, "share", "reset-offsets", "w", "--topic", "jobs:1", "--to-offset", "2")
    assert rows(res.stdout, RESET_COLUMNS) == [
        {"GROUP": "w", "TOPIC": "jobs", "PARTITION": "1", "START-OFFSET": "0", "NEW-START-OFFSET": "2"}
    ]
    assert "Dry run" in res.stderr
    info = logq.Admin(str(data)).describe_share_group("w", dead_letters=False).info
    assert [p.start_offset for p in info.partitions] == [3, 0]
    ok(data, "share", "reset-offsets", "w", "--topic", "jobs:1", "--to-offset", "2", "--execute")
    with logq.ShareConsumer(str(data), "jobs", group_id="w", auto_offset_reset="earliest") as sc:
        got = sc.poll(timeout=1.0, max_records=100)
    assert sorted(r.offset for r in got if r.partition == 1) == [2, 3, 4, 5]
    assert all(r.delivery_count == 1 for r in got if r.partition == 1)


def test_reset_of_a_group_without_state_places_a_new_group(data: Path) -> None:
    res = ok(data, "share", "reset-offsets", "fresh", "--topic", "jobs", "--to-earliest", "--execute")
    assert [r["START-OFFSET"] for r in rows(res.stdout, RESET_COLUMNS)] == ["-", "-"]
    with logq.ShareConsumer(str(data), "jobs", group_id="fresh") as sc:  # "latest" would skip them
        assert len(sc.poll(timeout=1.0, max_records=100)) == 12


def test_redrive_dry_run_then_redrive_then_nothing_left(data: Path) -> None:
    res = ok(data, "share", "redrive", "--group", "w", "--dry-run")
    letters = rows(res.stdout, REDRIVE_COLUMNS)
    assert [tuple(r.values()) for r in letters] == [
        ("dlq-0@0", "jobs-0@0", "rejected", "1"),
        ("dlq-0@1", "jobs-0@1", "rejected", "1"),
    ]
    assert "Would redrive 2 dead letter(s)" in res.stderr
    res = ok(data, "share", "redrive", "--group", "w", "--limit", "1", "--json")
    (obj,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert (obj["topic"], obj["sourceOffset"], obj["dryRun"]) == ("jobs", 0, False)
    res = ok(data, "share", "redrive", "--group", "w", "--dead-letter-topic", "dlq")
    assert "Redrove 1 dead letter(s)" in res.stderr
    assert "Redrove 0 dead letter(s)" in ok(data, "share", "redrive", "--group", "w").stderr
    assert logq.Admin(str(data)).log_offsets("jobs", 0) == (0, 8)
    assert redrive_group("dlq", "w") in ok(data, "groups", "list").stdout.split()
    dead = ok(data, "share", "describe", "w").stdout.split("\n\n")[1]
    assert rows(dead, DLQ_COLUMNS)[0]["NOT-REDRIVEN"] == "0"


def test_delete_is_refused_while_a_member_lives_and_then_deletes(data: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", MEMBER, str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline()
        assert "1 live member(s)" in one_error_line(run(data, "share", "delete", "w"))
    finally:
        child.kill()
        child.wait()
    assert ok(data, "share", "delete", "w").stdout == "Deleted share group w.\n"
    assert ok(data, "share", "list").stdout == ""
    assert "does not exist" in one_error_line(run(data, "share", "delete", "w"))
    ok(data, "share", "redrive", "--group", "w", "--dead-letter-topic", "dlq")  # letters outlive the group


@pytest.mark.parametrize(
    "args, words",
    [
        (["share", "describe", "nope"], "share group 'nope' does not exist"),
        (["share", "redrive", "--group", "nope"], "no dead-letter topic on record"),
        (["share", "redrive", "--group", "w", "--dead-letter-topic", "nope"], "topic 'nope' does not exist"),
        (["share", "redrive", "--group", "bad group"], "group id"),
        (["share", "redrive", "--group", "w", "--limit", "0"], "--limit"),
        (["share", "redrive"], "--group"),
        (["share", "reset-offsets", "w", "--topic", "jobs"], "exactly one of"),
        (["share", "reset-offsets", "w", "--topic", "jobs", "--to-earliest", "--to-offset", "1"], "exactly one of"),
        (["share", "reset-offsets", "w", "--topic", "jobs", "--to-latest", "--dry-run", "--execute"], "not both"),
        (["share", "reset-offsets", "w", "--topic", "jobs", "--to-offset", "99"], "out of range"),
        (["share", "reset-offsets", "w", "--topic", "jobs:7", "--to-latest"], "partition 7"),
        (["share", "reset-offsets", "w", "--topic", "nope", "--to-latest"], "topic 'nope' does not exist"),
        (["share", "reset-offsets", "w", "--topic", ":1", "--to-latest"], "no topic name"),
        (["share", "reset-offsets", "w", "--to-latest"], "--topic"),
    ],
)
def test_misuse_is_one_error_line(data: Path, args: list[str], words: str) -> None:
    assert words in one_error_line(run(data, *args))


def test_commands_on_a_missing_data_directory_fail_with_one_line(tmp_path: Path) -> None:
    for args in (["share", "list"], ["share", "describe", "w"], ["share", "redrive", "--group", "w"]):
        assert "does not exist" in one_error_line(run(tmp_path / "none", *args), 1)
    assert not os.path.exists(tmp_path / "none")


@pytest.mark.parametrize(
    "args, error",
    [
        (("w", "jobs", "middle"), logq.ConfigError),
        (("w", "jobs", -1), logq.ConfigError),
        (("w", "jobs", True), logq.ConfigError),
        (("w", "jobs", 1.5), logq.ConfigError),
        (("w", "jobs", "earliest", [5]), logq.ConfigError),
        (("w", "jobs", "earliest", ["0"]), logq.ConfigError),
        (("w", "nope", "earliest"), logq.UnknownTopicError),
        (("bad group", "jobs", "earliest"), logq.InvalidGroupIdError),
        (("w", "jobs", 7), logq.OffsetOutOfRangeError),
    ],
)
def test_admin_reset_share_offsets_refuses_bad_arguments(data: Path, args: tuple, error: type) -> None:
    with logq.Admin(str(data)) as admin:
        for execute in (False, True):
            with pytest.raises(error):
                admin.reset_share_offsets(*args, execute=execute)
        info = admin.describe_share_group("w", dead_letters=False).info
    assert [p.start_offset for p in info.partitions] == [3, 0]  # nothing changed
