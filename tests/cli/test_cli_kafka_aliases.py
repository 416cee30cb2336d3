"""Kafka's tool spellings on the `logq` command line (logq/cli/kafka_aliases.py): each alias is
rewritten to the documented spelling and runs the same command (same output, same errors);
what cannot be mapped is one usage-error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from logq import Admin
from logq.cli.kafka_aliases import rewrite

from tests.cli.cli_helpers import ok, one_error_line, run


@pytest.mark.parametrize(
    ("kafka", "logq"),
    [
        ("topics --create --topic t --partitions 4", "topics create t --partitions 4"),
        ("topics --create --topic=t --replication-factor 1", "topics create t"),
        ("topics --partitions 2 --topic t --create", "topics create t --partitions 2"),
        ("topics --list", "topics list"),
        ("topics --describe", "topics describe"),
        ("topics --describe --topic t", "topics describe t"),
        ("topics --alter --topic t --partitions 6", "topics alter t --partitions 6"),
        ("topics --delete --topic t", "topics delete t"),
        ("topics create --topic t --partitions 3", "topics create t --partitions 3"),
        (
            "topics delete-records --topic t --partition 0 --offset 3",
            "topics delete-records t --partition 0 --offset 3",
        ),
        ("groups --list", "groups list"),
        ("groups --describe --group g", "groups describe g"),
        ("groups --describe --group g --members --verbose", "groups describe g --members"),
        ("groups --describe --group g --state", "groups describe g --state"),
        ("groups --delete --group g", "groups delete g"),
        ("groups describe --group g --offsets", "groups describe g --offsets"),
        ("groups --reset-offsets --group g --topic t --to-earliest", "seek --group g --topic t --to-earliest"),
        (
            "consume --topic t --from-beginning --max-messages 10 --partition 0 --offset 5 --group g",
            "consume t --from-beginning --max-messages 10 --partition 0 --offset 5 --group g",
        ),
        ("produce --topic t --property parse.key=true", "produce t --property parse.key=true"),
        ("offsets --topic t --partitions 0,1 --time -1", "offsets t --partitions 0,1 --time -1"),
        ("repair --topic t --execute", "repair t --execute"),
        ("--data d topics --list", "--data d topics list"),
        ("--data=d --shared-read group topics --list", "--data=d --shared-read group topics list"),
    ],
)
def test_kafka_spellings_become_the_documented_ones(kafka: str, logq: str) -> None:
    assert rewrite(kafka.split()) == logq.split()


@pytest.mark.parametrize(
    "args",
    [
        "topics create t --partitions 4",
        "topics describe",
        "consume t --group g --from-beginning",
        "seek --group g --topic t --to-latest",  # seek's own --topic stays an option
        "perf produce --topic t --num-records 10 --record-size 10",
        "groups describe g --members",
        "produce t -- --topic x",  # nothing after -- is touched
        "topics --help",
        "--version",
        "",
    ],
)
def test_the_documented_spelling_comes_back_unchanged(args: str) -> None:
    assert rewrite(args.split()) == args.split()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_topics_create_list_describe_alter_delete_in_kafka_spelling(data: Path) -> None:
    assert ok(data, "topics", "--create", "--topic", "t", "--partitions", "4", "--replication-factor", "1").stdout == (
        "Created topic t with 4 partition(s).\n"
    )
    assert ok(data, "topics", "--list").stdout == "t\n"
    kafka = ok(data, "topics", "--describe", "--topic", "t").stdout
    assert kafka.startswith("Topic: t\t") and "PartitionCount: 4" in kafka
    assert kafka == ok(data, "topics", "describe", "t").stdout
    assert (
        ok(data, "topics", "--alter", "--topic", "t", "--partitions", "6").stdout == "Topic t: 4 -> 6 partition(s).\n"
    )
    assert ok(data, "topics", "--delete", "--topic", "t").stdout == "Deleted topic t.\n"
    with Admin(str(data)) as admin:
        assert admin.list_topics() == []


def test_consume_produce_and_offsets_in_kafka_spelling(data: Path) -> None:
    ok(data, "topics", "create", "t", "--partitions", "2")
    ok(data, "produce", "--topic", "t", "--partition", "1", input=b"a\nb\nc\nd\n")
    got = ok(data, "consume", "--topic", "t", "--partition", "1", "--offset", "2", "--max-messages", "1").stdout
    assert got == "c\n"
    assert ok(data, "consume", "--topic", "t", "--from-beginning", "--max-messages", "10").stdout.split() == list(
        "abcd"
    )
    assert ok(data, "offsets", "--topic", "t", "--time", "-1").stdout.splitlines() == ["t:0:0", "t:1:4"]
    assert ok(data, "offsets", "--topic", "t", "--partitions", "1", "--time", "-2").stdout == "t:1:0\n"


def test_groups_list_describe_reset_and_delete_in_kafka_spelling(data: Path) -> None:
    ok(data, "topics", "create", "t")
    ok(data, "produce", "t", input=b"1\n2\n3\n")
    ok(data, "consume", "t", "--group", "g", "--from-beginning")
    assert ok(data, "groups", "--list").stdout == "g\n"
    described = ok(data, "groups", "--describe", "--group", "g").stdout
    assert described == ok(data, "groups", "describe", "g").stdout and "g     t     0" in described
    assert "Empty" in ok(data, "groups", "--describe", "--group", "g", "--state").stdout
    reset = ok(data, "groups", "--reset-offsets", "--group", "g", "--topic", "t", "--to-earliest", "--execute")
    assert reset.stdout.splitlines()[1].split() == ["g", "t", "0", "0"]
    with Admin(str(data)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 0}
    assert ok(data, "groups", "--delete", "--group", "g").stdout == "Deleted consumer group g.\n"
    assert ok(data, "groups", "--list").stdout == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["topics", "--list", "--bootstrap-server", "localhost:9092"], "use --data DIR"),
        (["--bootstrap-server=localhost:9092", "topics", "--list"], "use --data DIR"),
        (["consume", "--topic", "t", "--bootstrap-server", "b:9092"], "reads a data directory"),
        (["topics", "--create", "--partitions", "3"], "topics --create needs --topic NAME"),
        (["topics", "--alter", "--partitions", "3"], "topics --alter needs --topic NAME"),
        (["topics", "--create", "--list", "--topic", "t"], "give one of --create"),
        (["topics", "--create", "--topic", "t", "--replication-factor", "3"], "--replication-factor 3"),
        (["topics", "--describe", "--topic", "a", "--topic", "b"], "'--topic' is given twice"),
        (["consume", "--topic"], "'--topic' requires an argument"),
        (["groups", "--describe"], "groups --describe needs --group GROUP"),
        (["groups", "--delete", "--list", "--group", "g"], "give one of --list"),
    ],
)
def test_a_kafka_spelling_that_cannot_be_mapped_is_one_usage_error(data: Path, args: list[str], words: str) -> None:
    line = one_error_line(run(data, *args), exit_code=2)
    assert words in line


def test_an_alias_fails_as_its_documented_spelling_does(data: Path) -> None:
    ok(data, "topics", "create", "t", "--partitions", "2")
    kafka = one_error_line(run(data, "topics", "--alter", "--topic", "t", "--partitions", "1"), exit_code=1)
    assert kafka == one_error_line(run(data, "topics", "alter", "t", "--partitions", "1"), exit_code=1)
    assert "partitions can only be added" in kafka
    missing = one_error_line(run(data, "topics", "--describe", "--topic", "nope"), exit_code=1)
    assert missing == one_error_line(run(data, "topics", "describe", "nope"), exit_code=1)


def test_the_installed_command_accepts_kafka_spellings(tmp_path: Path) -> None:
    logq = os.path.join(os.path.dirname(sys.executable), "logq")
    env = dict(os.environ, LOGQ_DATA=str(tmp_path / "data"))
    create = subprocess.run(
        [logq, "topics", "--create", "--topic", "t", "--partitions", "2"], env=env, capture_output=True, text=True
    )
    assert create.returncode == 0 and create.stdout == "Created topic t with 2 partition(s).\n", create.stderr
    refused = subprocess.run(
        [logq, "topics", "--list", "--bootstrap-server", "localhost:9092"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("logq: --bootstrap-server")
    assert "Traceback" not in refused.stderr
    with Admin(str(tmp_path / "data")) as admin:
        assert [p.partition for p in admin.describe_topic("t").partitions] == [0, 1]
