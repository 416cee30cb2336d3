"""`logq groups describe --offsets|--members|--state` and `logq groups delete`, with a live
member in a real process (killed with kill -9 to leave the group)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from logq import Admin, GroupNotEmptyError, Producer, UnknownGroupError

from tests.cli.cli_helpers import ok, one_error_line, parse_table, run, warnings_of

MEMBER_COLUMNS = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "PID", "#PARTITIONS", "ASSIGNMENT"]
STATE_COLUMNS = ["GROUP", "ASSIGNMENT-STRATEGY", "STATE", "GENERATION", "#MEMBERS"]

MEMBER = """
import sys, time
from logq import Consumer
c = Consumer(sys.argv[1], "t", group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
while len(c.assignment()) < 2 or len(c._member.owned()) < 2:
    c.poll(timeout=0.05)
c.commit({("t", 0): 1})
open(sys.argv[2], "w").write(c._member.member_id)
while True:
    c.poll(timeout=0.5)
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    with Admin(str(root)) as admin:
        admin.create_topic("t", 2)
    with Producer(str(root)) as producer:
        for i in range(6):
            producer.send("t", b"x", partition=i % 2)
    return root


@pytest.fixture
def member(data: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    ready = tmp_path / "member-id"
    child = subprocess.Popen([sys.executable, "-c", MEMBER, str(data), str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text()):
            assert child.poll() is None, "the member exited"
            assert time.monotonic() < deadline, "the member never got its partitions"
            time.sleep(0.02)
        yield child, ready.read_text()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()


def test_members_view_shows_each_live_member_with_pid_and_assignment(
    data: Path, member: tuple[subprocess.Popen[bytes], str]
) -> None:
    child, member_id = member
    rows = parse_table(ok(data, "groups", "describe", "g", "--members").stdout, MEMBER_COLUMNS)
    assert rows == [
        {
            "GROUP": "g",
            "CONSUMER-ID": member_id,
            "HOST": socket.gethostname(),
            "CLIENT-ID": "-",  # an embedded member has none
            "PID": str(child.pid),
            "#PARTITIONS": "2",
            "ASSIGNMENT": "t(0,1)",
        }
    ]
    (obj,) = [
        json.loads(line) for line in ok(data, "groups", "describe", "g", "--members", "--json").stdout.splitlines()
    ]
    assert obj == {
        "group": "g",
        "consumerId": member_id,
        "host": socket.gethostname(),
        "clientId": None,
        "pid": child.pid,
        "partitions": 2,
        "assignment": [["t", 0], ["t", 1]],
    }


def test_state_view_follows_the_member_in_and_out(data: Path, member: tuple[subprocess.Popen[bytes], str]) -> None:
    child, _ = member
    (row,) = parse_table(ok(data, "groups", "describe", "g", "--state").stdout, STATE_COLUMNS)
    assert (row["GROUP"], row["ASSIGNMENT-STRATEGY"], row["STATE"], row["#MEMBERS"]) == ("g", "sticky", "Stable", "1")
    assert int(row["GENERATION"]) >= 1
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    res = ok(data, "groups", "describe", "g", "--state", "--json")
    obj = json.loads(res.stdout)
    assert (obj["state"], obj["members"], obj["assignmentStrategy"]) == ("Empty", 0, "sticky")
    assert warnings_of(res) == []  # the state view reports emptiness in its row
    members = ok(data, "groups", "describe", "g", "--members")
    assert members.stdout.split() == MEMBER_COLUMNS and any("no active members" in w for w in warnings_of(members))


def test_offsets_view_is_the_default_and_names_the_owner(
    data: Path, member: tuple[subprocess.Popen[bytes], str]
) -> None:
    _, member_id = member
    default = ok(data, "groups", "describe", "g").stdout
    assert default == ok(data, "groups", "describe", "g", "--offsets").stdout
    lines = default.splitlines()
    assert lines[1].split() == ["g", "t", "0", "1", "3", "2", member_id]
    assert lines[2].split() == ["g", "t", "1", "-", "3", "-", member_id]


def test_delete_is_refused_while_a_member_lives_and_done_once_it_is_killed(
    data: Path, member: tuple[subprocess.Popen[bytes], str]
) -> None:
    child, _ = member
    line = one_error_line(run(data, "groups", "delete", "g"), exit_code=1)
    assert "group 'g' has 1 live member(s)" in line and "only an empty group can be deleted" in line
    with Admin(str(data)) as admin, pytest.raises(GroupNotEmptyError):
        admin.delete_group("g")
    assert ok(data, "groups", "list").stdout == "g\n"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert ok(data, "groups", "delete", "g").stdout == "Deleted consumer group g.\n"
    assert ok(data, "groups", "list").stdout == ""
    with Admin(str(data)) as admin:
        assert admin.committed_offsets("g") == {}
        with pytest.raises(UnknownGroupError):
            admin.delete_group("g")
    # a deleted group starts over: a new consumer of it finds no committed offset
    assert ok(data, "consume", "t", "--group", "g", "--from-beginning").stdout.count("x") == 6


def test_deleting_or_describing_a_group_that_does_not_exist_is_one_error_line(data: Path) -> None:
    assert "does not exist" in one_error_line(run(data, "groups", "delete", "nope"), exit_code=1)
    assert "does not exist" in one_error_line(run(data, "groups", "describe", "nope", "--state"), exit_code=1)
    assert "invalid" in one_error_line(run(data, "groups", "delete", "bad/name"), exit_code=1).lower()


def test_two_views_at_once_are_a_usage_error(data: Path) -> None:
    line = one_error_line(run(data, "groups", "describe", "g", "--members", "--state"), exit_code=2)
    assert "give only one of --offsets, --members, --state" in line
