"""`logq produce --property` and `logq consume --property/--offset/--value-deserializer/
--skip-message-on-error`, checked against records written and read with the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from logq import Admin, Producer

from tests.cli.cli_helpers import ok, one_error_line, run, warnings_of

T0 = 1700000000000


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Topic t (1 partition): offset 0 no key, no headers; 1 key k1, headers h1=a, h2=None;
    2 key k2, value b'{"n": 2}' (JSON); 3 a value that is not UTF-8; 4 key k4, value 'tail'."""
    root = tmp_path / "data"
    with Admin(str(root)) as admin:
        admin.create_topic("t", 1)
    with Producer(str(root)) as producer:
        producer.send("t", b"plain", timestamp_ms=T0)
        producer.send("t", b"hello", key=b"k1", headers=[("h1", b"a"), ("h2", None)], timestamp_ms=T0 + 1)
        producer.send("t", b'{"n": 2}', key=b"k2", timestamp_ms=T0 + 2)
        producer.send("t", b"\xff\xfe", timestamp_ms=T0 + 3)
        producer.send("t", b'"tail"', key=b"k4", timestamp_ms=T0 + 4)
    return root


def consume(data: Path, *args: str) -> list[str]:
    return ok(data, "consume", "t", "--from-beginning", *args).stdout.splitlines()


def test_print_key_timestamp_and_headers_have_kafkas_shape(data: Path) -> None:
    lines = consume(
        data, "--property", "print.key=true", "--property", "print.timestamp=true", "--property", "print.headers=true"
    )
    assert lines[:2] == [
        f"CreateTime:{T0}\tNO_HEADERS\tnull\tplain",
        f"CreateTime:{T0 + 1}\th1:a,h2:null\tk1\thello",
    ]
    assert lines[3] == f"CreateTime:{T0 + 3}\tNO_HEADERS\tnull\t\\xff\\xfe"


def test_every_part_and_separator_can_be_chosen(data: Path) -> None:
    props = [
        "print.partition=true",
        "print.offset=true",
        "print.headers=true",
        "print.key=TRUE",
        "print.value=false",
        "key.separator= | ",
        "headers.separator=;",
        "null.literal=<none>",
    ]
    lines = consume(data, *[a for p in props for a in ("--property", p)])
    assert lines[:2] == ["Partition:0 | Offset:0 | NO_HEADERS | <none>", "Partition:0 | Offset:1 | h1:a;h2:<none> | k1"]


def test_key_separator_option_is_print_key_with_that_separator(data: Path) -> None:
    short = consume(data, "--key-separator", ":")
    assert short[1] == "k1:hello"
    assert short == consume(data, "--property", "print.key=true", "--property", "key.separator=:")
    assert short == consume(data, "--key-separator", ":", "--property", "key.separator=:")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--property", "print.colour=true"], "unknown property 'print.colour'"),
        (["--property", "print.key=yes"], "must be true or false"),
        (["--property", "print.key"], "is not KEY=VALUE"),
        (["--property", "print.key=true", "--property", "print.key=false"], "print.key is given twice"),
        (["--key-separator", ":", "--property", "key.separator=;"], "disagree"),
        (["--key-separator", ""], "must not be empty"),
        (["--format", "json", "--property", "print.key=true"], "--format text only"),
        (["--offset", "3"], "--offset needs --partition"),
        (["--partition", "0", "--offset", "3", "--from-beginning"], "either --offset or --from-beginning"),
        (["--partition", "0", "--offset", "-3"], "not earliest, latest or an offset"),
        (["--value-deserializer", "pickle"], "--value-deserializer"),
    ],
)
def test_bad_consume_options_are_one_usage_error(data: Path, args: list[str], words: str) -> None:
    assert words in one_error_line(run(data, "consume", "t", *args), exit_code=2)


@pytest.mark.parametrize(("offset", "first"), [("2", '{"n": 2}'), ("earliest", "plain"), ("0", "plain")])
def test_offset_starts_the_partition_there(data: Path, offset: str, first: str) -> None:
    lines = ok(data, "consume", "t", "--partition", "0", "--offset", offset, "--max-messages", "1").stdout
    assert lines == first + "\n"


def test_offset_latest_prints_nothing_already_written(data: Path) -> None:
    res = ok(data, "consume", "t", "--partition", "0", "--offset", "latest")
    assert res.stdout == "" and "Processed a total of 0 messages" in res.stderr


def test_offset_overrides_the_groups_committed_offset(data: Path) -> None:
    ok(data, "consume", "t", "--group", "g", "--from-beginning", "--max-messages", "4")
    assert ok(data, "consume", "t", "--group", "g", "--partition", "0", "--offset", "1", "--max-messages", "1").stdout
    with Admin(str(data)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 2}


def test_a_value_the_deserializer_refuses_stops_the_command_with_its_offset(data: Path) -> None:
    res = run(data, "consume", "t", "--from-beginning", "--value-deserializer", "str")
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stdout.splitlines() == ["plain", "hello", '{"n": 2}']  # the records before it were printed
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("logq: ")]
    assert "offset 3 of t-0" in line and "--skip-message-on-error" in line


def test_skip_message_on_error_reports_each_skipped_offset_and_commits_past_it(data: Path) -> None:
    res = ok(
        data,
        "consume",
        "t",
        "--group",
        "g",
        "--from-beginning",
        "--value-deserializer",
        "json",
        "--skip-message-on-error",
    )
    assert res.stdout.splitlines() == ['{"n":2}', '"tail"']
    skipped = warnings_of(res)
    assert [w.split(":")[2].strip() for w in skipped] == [
        "skipped t-0 offset 0",
        "skipped t-0 offset 1",
        "skipped t-0 offset 3",
    ]
    assert "Processed a total of 2 messages (skipped 3 that could not be deserialized)" in res.stderr
    with Admin(str(data)) as admin:
        assert admin.committed_offsets("g") == {("t", 0): 5}


def test_json_values_are_json_in_the_json_format(data: Path) -> None:
    res = ok(
        data,
        "consume",
        "t",
        "--from-beginning",
        "--value-deserializer",
        "json",
        "--skip-message-on-error",
        "--format",
        "json",
    )
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(o["offset"], o["key"], o["value"]) for o in objs] == [(2, "k2", {"n": 2}), (4, "k4", "tail")]


def test_str_values_print_as_they_are(data: Path) -> None:
    res = ok(data, "consume", "t", "--from-beginning", "--value-deserializer", "str", "--skip-message-on-error")
    assert res.stdout.splitlines() == ["plain", "hello", '{"n": 2}', '"tail"']
    assert len(warnings_of(res)) == 1


# ----------------------------------------------------------------------------- produce


def _records(data: Path) -> list[tuple[bytes | None, bytes]]:
    lines = ok(data, "consume", "u", "--from-beginning", "--format", "json").stdout.splitlines()
    return [(None if o["key"] is None else o["key"].encode(), o["value"].encode()) for o in map(json.loads, lines)]


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    ok(root, "topics", "create", "u")
    return root


def test_parse_key_splits_at_a_tab_by_default(empty: Path) -> None:
    ok(empty, "produce", "u", "--property", "parse.key=true", input="a\tone\nb\ttwo\tmore\n")
    assert _records(empty) == [(b"a", b"one"), (b"b", b"two\tmore")]


def test_parse_key_with_a_key_separator_as_kafkas_console_producer(empty: Path) -> None:
    ok(empty, "produce", "u", "--property", "parse.key=true", "--property", "key.separator=:", input="k:v:w\n:empty\n")
    assert _records(empty) == [(b"k", b"v:w"), (b"", b"empty")]


def test_parse_key_false_keeps_whole_lines_as_values(empty: Path) -> None:
    ok(empty, "produce", "u", "--property", "parse.key=false", input="k:v\n")
    assert _records(empty) == [(None, b"k:v")]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--property", "key.separator=:"], "needs --property parse.key=true"),
        (["--property", "parse.key=maybe"], "must be true or false"),
        (["--property", "ignore.error=true"], "unknown property 'ignore.error'"),
        (["--property", "parse.key=true", "--property", "key.separator="], "must not be empty"),
        (["--key-separator", ";", "--property", "parse.key=true", "--property", "key.separator=:"], "disagree"),
    ],
)
def test_bad_produce_properties_are_one_usage_error_and_write_nothing(empty: Path, args: list[str], words: str) -> None:
    assert words in one_error_line(run(empty, "produce", "u", *args, input="k:v\n"), exit_code=2)
    assert _records(empty) == []


def test_a_line_without_the_separator_stops_after_the_lines_before_it(empty: Path) -> None:
    res = run(
        empty, "produce", "u", "--property", "parse.key=true", "--property", "key.separator=:", input="a:1\nno\nb:2\n"
    )
    assert res.exit_code == 1
    assert "line 2 of <stdin> has no key separator ':'; 1 record(s) before it were written" in res.stderr
    assert _records(empty) == [(b"a", b"1")]


def test_an_offset_outside_the_log_is_moved_into_it_with_a_warning(data: Path) -> None:
    with Admin(str(data)) as admin:
        admin.delete_records("t", {0: 2})
    below = ok(data, "consume", "t", "--partition", "0", "--offset", "1", "--max-messages", "1")
    assert below.stdout == '{"n": 2}\n' and any("resuming at log start 2" in w for w in warnings_of(below))
    past = ok(data, "consume", "t", "--partition", "0", "--offset", "100")
    assert past.stdout == "" and any("past the log end 5" in w for w in warnings_of(past))
