"""`logq offsets` as kafka-get-offsets / GetOffsetShell is used: `--topic`, `--partitions`,
`--time -1|-2|<ms>`, one `topic:partition:offset` line per partition, compared with the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from logq import Admin, Producer

from tests.cli.cli_helpers import ok, one_error_line, run

T0 = 1704067200000


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Topic t, 3 partitions: partition p holds 4 + p records, record i at T0 + 1000 * i."""
    root = tmp_path / "data"
    with Admin(str(root)) as admin:
        admin.create_topic("t", 3, retention_ms=-1)
    with Producer(str(root)) as producer:
        for p in range(3):
            for i in range(4 + p):
                producer.send("t", b"x", partition=p, timestamp_ms=T0 + 1000 * i)
    with Admin(str(root)) as admin:
        admin.delete_records("t", {2: 2})
    return root


def lines(data: Path, *args: str) -> list[str]:
    return ok(data, "offsets", "--topic", "t", *args).stdout.splitlines()


def test_latest_is_the_default_and_minus_one(data: Path) -> None:
    assert lines(data) == lines(data, "--time", "-1") == ["t:0:4", "t:1:5", "t:2:6"]


def test_earliest_is_minus_two_and_follows_deleted_records(data: Path) -> None:
    assert lines(data, "--time", "-2") == ["t:0:0", "t:1:0", "t:2:2"]


@pytest.mark.parametrize("i", [0, 1, 3, 4, 5, 6])
def test_a_time_gives_the_first_offset_at_or_after_it_or_nothing(data: Path, i: int) -> None:
    ms = T0 + 1000 * i - 1
    with Admin(str(data)) as admin:
        expected = [f"t:{p}:{'' if (o := admin.offset_for_time('t', p, ms)) is None else o}" for p in range(3)]
    assert lines(data, "--time", str(ms)) == expected
    assert lines(data, "--time", str(ms))[0] == (f"t:0:{i}" if i < 4 else "t:0:")


def test_only_the_partitions_asked_in_order(data: Path) -> None:
    assert lines(data, "--partitions", "2,0", "--time", "-2") == ["t:0:0", "t:2:2"]


def test_a_partition_added_later_is_listed_empty(data: Path) -> None:
    ok(data, "topics", "alter", "t", "--partitions", "4")
    assert lines(data, "--time", "-1")[-1] == "t:3:0"
    assert lines(data, "--time", str(T0))[-1] == "t:3:"


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (["--partitions", "7"], 2, "has no partition 7"),
        (["--partitions", "a,b"], 2, "--partitions"),
        (["--time", "-3"], 2, "--time"),
        (["--time", "yesterday"], 2, "--time"),
    ],
)
def test_bad_arguments_are_one_line(data: Path, args: list[str], exit_code: int, words: str) -> None:
    assert words in one_error_line(run(data, "offsets", "--topic", "t", *args), exit_code=exit_code)


def test_an_unknown_topic_is_one_line(data: Path) -> None:
    assert "does not exist" in one_error_line(run(data, "offsets", "--topic", "nope"), exit_code=1)
