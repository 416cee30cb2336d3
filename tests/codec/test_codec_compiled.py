"""The compiled codec against the pure one, and how logq chooses between them.

The rest of tests/codec runs once per implementation (tests/codec/conftest.py). Here the
two are run side by side on the same input: hostile bytes must give the same records or
the same error (reason and position), and encoders must give the same bytes or the same
refusal. Tests that need the compiled codec skip with the reason when it is not built.
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from logq.codec import batch
from logq.codec.batch import (
    BATCH_OVERHEAD,
    Compression,
    decode_batch,
    decode_records,
    encode_batch,
    encode_values,
    iter_batches,
    validate_batch,
    walk_records,
)
from logq.errors import CorruptRecordError, InvalidRecordError
from logq.types import Record

from tests import support
from tests.codec.test_codec_fuzz import FUZZ, SEEDS, T, mutated

WHY_NOT_COMPILED = batch.implementations()["compiled"]
needs_compiled = pytest.mark.skipif(WHY_NOT_COMPILED is not None, reason=str(WHY_NOT_COMPILED))


def outcome(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What ``fn`` gives under the implementation ``name``: its result or its error."""
    previous = batch.use_implementation(name)
    try:
        return ("ok", fn(*args, **kwargs))
    except CorruptRecordError as e:
        return ("corrupt", e.reason, e.position)
    except InvalidRecordError as e:
        return ("invalid", type(e))
    finally:
        batch.use_implementation(previous)


def same_everywhere(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    pure = outcome("pure", fn, *args, **kwargs)
    compiled = outcome("compiled", fn, *args, **kwargs)
    assert compiled == pure
    return pure


def _decode_all(buf: bytes) -> Any:
    h, records = decode_batch(buf, max_decompressed_bytes=64 * 1024)
    return h, records, walk_records(buf, h, max_decompressed_bytes=64 * 1024)


def _decode_as_consumer_records(buf: bytes) -> Any:
    h = validate_batch(buf)
    return decode_records(buf, h, origin=(Record, "t", 3), min_offset=h.base_offset + 1)


# --------------------------------------------------------------------------- differential


@needs_compiled
@given(mutated())
@settings(FUZZ, max_examples=1500)
def test_mutated_batches_decode_to_the_same_records_or_the_same_error(buf: bytes) -> None:
    same_everywhere(_decode_all, buf)
    same_everywhere(lambda b: list(iter_batches(b, partial_ok=True)), buf)
    same_everywhere(validate_batch, buf, max_batch_bytes=4096, expected_offset=5)


@needs_compiled
@given(mutated())
@settings(FUZZ, max_examples=300)
def test_mutated_batches_decode_to_the_same_consumer_records(buf: bytes) -> None:
    same_everywhere(_decode_as_consumer_records, buf)


@needs_compiled
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=8), st.booleans())
@settings(FUZZ, max_examples=600)
def test_random_record_bytes_behind_a_valid_crc_give_the_same_outcome(
    data: bytes, count: int, log_append: bool
) -> None:
    from crc32c import crc32c

    head = bytearray(encode_values([b"x"], T)[:BATCH_OVERHEAD])
    struct.pack_into(">i", head, 57, count)
    struct.pack_into(">i", head, 23, max(count - 1, 0))
    struct.pack_into(">h", head, 21, 0x08 if log_append else 0)
    buf = head + data
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    same_everywhere(_decode_all, bytes(buf))


header_keys = st.one_of(st.text(max_size=5), st.binary(max_size=5))
headers = st.one_of(
    st.none(),
    st.lists(st.tuples(header_keys, st.one_of(st.none(), st.binary(max_size=20))), max_size=3),
    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.binary(max_size=5)), max_size=3),
)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
timestamps = st.one_of(int64, st.integers(min_value=0, max_value=2**45))
records = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=30)), st.one_of(st.none(), st.binary(max_size=300)), headers, timestamps
    ),
    min_size=1,
    max_size=20,
)


@needs_compiled
@given(records, st.integers(min_value=0, max_value=2**62), st.sampled_from([Compression.NONE, Compression.GZIP]))
@settings(FUZZ, max_examples=400)
def test_encode_batch_gives_the_same_bytes_or_the_same_refusal(recs: list, base: int, c: Compression) -> None:
    got = same_everywhere(encode_batch, recs, base, compression=c)
    if got[0] == "ok":
        decoded = same_everywhere(decode_batch, got[1])
        if decoded[0] == "ok":  # header keys given as bytes need not be utf-8
            assert [r[:4] for r in decoded[1][1]] == [(base + i, ts, k, v) for i, (k, v, _, ts) in enumerate(recs)]


@needs_compiled
@given(
    st.lists(st.binary(max_size=200), min_size=1, max_size=50),
    int64,
    st.integers(min_value=0, max_value=2**62),
    st.one_of(st.none(), st.binary(max_size=20)),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
@settings(FUZZ, max_examples=300)
def test_encode_values_gives_the_same_bytes(values: list, ts: int, base: int, key: bytes | None, epoch: int) -> None:
    got = same_everywhere(encode_values, values, ts, base, key=key, partition_leader_epoch=epoch)
    assert got[0] == "ok"


BAD_INPUTS: list[Any] = [
    [("k", b"v", None, T)],  # str key
    [(None, "v", None, T)],  # str value
    [(None, 5, None, T)],
    [(None, b"v", None, 1.5)],  # float timestamp
    [(None, b"v", None, "1")],
    [(None, b"v", None, T), (None, b"v", None, 2**64)],
    [(None, b"v", None, -(2**63)), (None, b"v", None, 2**63 - 1)],  # delta past int64
    [(None, b"v", [("h", "str value")], T)],
    [(None, b"v", [(None, b"x")], T)],
    [(None, b"v", [("h",)], T)],
    [(None, b"v", 5, T)],
    [(None, b"v", [("\udc80", b"x")], T)],  # a lone surrogate cannot be utf-8
    [(None, b"v", None)],
]


@needs_compiled
@pytest.mark.parametrize("recs", BAD_INPUTS, ids=range(len(BAD_INPUTS)))
def test_both_encoders_refuse_the_same_bad_records(recs: list) -> None:
    assert same_everywhere(encode_batch, recs)[0] == "invalid"


@needs_compiled
@pytest.mark.parametrize(
    "values,ts,key",
    [([b"a", "b"], T, None), ([None], T, None), ([b"a"], 1.5, None), ([b"a"], 2**63, None), ([b"a"], T, "k")],
)
def test_both_value_encoders_refuse_the_same_bad_values(values: list, ts: Any, key: Any) -> None:
    assert same_everywhere(encode_values, values, ts, key=key)[0] == "invalid"


@needs_compiled
def test_both_encoders_take_any_bytes_like_object_and_integer_like_timestamps() -> None:
    import numpy as np

    recs = [(bytearray(b"k"), memoryview(b"value"), [(b"h", bytearray(b"x"))], np.int64(T)), (None, b"", None, T + 1)]
    got = same_everywhere(encode_batch, recs)
    assert got == ("ok", encode_batch([(b"k", b"value", [("h", b"x")], T), (None, b"", None, T + 1)]))
    assert same_everywhere(encode_values, (bytearray(b"a"), memoryview(b"bc")), T, key=bytearray(b"k"))[0] == "ok"


# --------------------------------------------------------------------------- compiled specifics


@needs_compiled
def test_consumer_records_built_in_place_are_ordinary_named_tuples() -> None:
    buf = encode_batch([(b"k", b"v", [("h", b"x")], T), (None, None, None, T + 7)], 40)
    recs = same_everywhere(
        lambda b: decode_records(b, validate_batch(b), origin=(Record, "topic", 2)),
        buf,
    )[1]
    assert recs == [
        Record("topic", 2, 40, T, b"k", b"v", (("h", b"x"),)),
        Record("topic", 2, 41, T + 7, None, None, ()),
    ]
    batch.use_implementation("compiled")
    got = decode_records(buf, validate_batch(buf), origin=(Record, "topic", 2))
    assert type(got[0]) is Record and got[0].topic == "topic" and got[1].offset == 41
    assert hash(got[0]) == hash(recs[0]) and {got[0]: 1}[recs[0]] == 1
    assert got[0]._replace(value=b"w").value == b"w" and got[0]._asdict()["key"] == b"k"
    del recs
    gc.collect()
    assert got[0] == Record("topic", 2, 40, T, b"k", b"v", (("h", b"x"),))


@needs_compiled
def test_records_of_a_class_that_is_not_a_plain_tuple_subclass_are_built_as_the_pure_codec_builds_them() -> None:
    class Slotted(tuple):  # has a __dict__: cannot be filled in place
        pass

    buf = encode_batch([(b"k", b"v", None, T)])
    got = same_everywhere(lambda b: decode_records(b, validate_batch(b), origin=(Slotted, "t", 0)), buf)[1]
    assert type(got[0]) is Slotted and tuple(got[0]) == ("t", 0, 0, T, b"k", b"v", ())


@needs_compiled
def test_timestamps_and_offsets_past_int64_are_exact_python_integers() -> None:
    # A header whose base timestamp plus a record's delta leaves int64: the pure codec gives
    # the exact integer, and so must the compiled one (no wrap-around).
    buf = bytearray(encode_batch([(None, b"v", None, 2**63 - 1 - 5), (None, b"w", None, 2**63 - 1)]))
    from crc32c import crc32c

    struct.pack_into(">q", buf, 27, 2**63 - 1)  # baseTimestamp: the second record's delta now overflows
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    _, recs = same_everywhere(decode_batch, bytes(buf))[1]
    assert [r.timestamp for r in recs] == [2**63 - 1, 2**63 + 4]


@needs_compiled
def test_min_offset_of_any_size_skips_the_same_records() -> None:
    buf = encode_values([b"a", b"b", b"c"], T, 10)
    h = validate_batch(buf)
    for m in (-(2**70), -1, 0, 11, 12, 13, 2**63, 2**70):
        got = same_everywhere(decode_records, buf, h, min_offset=m)[1]
        assert [r.offset for r in got] == [o for o in (10, 11, 12) if o >= m]
        assert same_everywhere(walk_records, buf, h, min_offset=m)[1] == len(got)


@needs_compiled
def test_validate_batch_with_unusual_positions_and_ends_agrees() -> None:
    buf = SEEDS[0] + SEEDS[3]
    for pos, end in [
        (0, None),
        (len(SEEDS[0]), None),
        (0, len(SEEDS[0])),
        (0, 10),
        (5, None),
        (0, 0),
        (len(buf), None),
    ]:
        same_everywhere(validate_batch, buf, pos, end)
    for pos, end in [(-len(SEEDS[3]), None), (0, len(buf) + 50)]:  # the pure rules apply: delegated
        pure, compiled = outcome("pure", validate_batch, buf, pos, end), None
        try:
            compiled = outcome("compiled", validate_batch, buf, pos, end)
        except Exception as e:  # struct.error from the pure codec for an end past the buffer
            compiled = ("raised", type(e))
        assert pure is not None and compiled is not None


# --------------------------------------------------------------------------- walk_records


def test_walk_records_counts_what_decode_records_returns_and_raises_what_it_raises() -> None:
    for seed in SEEDS:
        h = validate_batch(seed)
        assert walk_records(seed, h) == len(decode_records(seed, h)) == h.records_count
        assert walk_records(seed, h, min_offset=h.base_offset + 1) == h.records_count - 1
    bad = bytearray(SEEDS[0])
    bad[BATCH_OVERHEAD] = 0x7F  # the first record's length: past the batch
    h = batch.read_header(bytes(bad))
    with pytest.raises(CorruptRecordError, match="record length") as a:
        walk_records(bytes(bad), h)
    with pytest.raises(CorruptRecordError, match="record length") as b:
        decode_records(bytes(bad), h)
    assert a.value.reason == b.value.reason and a.value.position == b.value.position == 0


# --------------------------------------------------------------------------- choosing


def test_the_implementation_in_use_is_named_and_described() -> None:
    assert batch.IMPLEMENTATION in ("pure", "compiled")
    desc = batch.describe_implementation()
    assert desc.startswith("compiled") if batch.IMPLEMENTATION == "compiled" else desc.startswith("pure")
    with pytest.raises(ValueError, match="unknown codec implementation"):
        batch.use_implementation("fortran")


def _child(env: dict[str, str]) -> str:
    code = "import logq.codec.batch as b; print(b.IMPLEMENTATION, '|', b.describe_implementation())"
    full = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=support.REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_logq_pure_python_1_forces_the_pure_codec() -> None:
    assert _child({"LOGQ_PURE_PYTHON": "1"}) == "pure | pure Python (LOGQ_PURE_PYTHON=1)"


def test_without_logq_pure_python_the_compiled_codec_is_used_when_built() -> None:
    got = _child({"LOGQ_PURE_PYTHON": "0"})
    if WHY_NOT_COMPILED is None:
        assert got == "compiled | compiled (Cython)"
    else:
        assert got.startswith("pure | pure Python (the compiled codec is not built")


def test_use_implementation_refuses_the_compiled_codec_when_it_is_not_built() -> None:
    if WHY_NOT_COMPILED is None:
        pytest.skip("the compiled codec is built here")
    with pytest.raises(RuntimeError, match="not built"):
        batch.use_implementation("compiled")


# --------------------------------------------------------------------------- where it is shown


def _logq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    code = "import sys; from logq.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full, cwd=support.REPO, timeout=120
    )


def test_logq_version_names_the_codec() -> None:
    out = _logq("--version", env={"LOGQ_PURE_PYTHON": "1"})
    assert out.returncode == 0 and "codec: pure Python (LOGQ_PURE_PYTHON=1)" in out.stdout
    out = _logq("--version", env={"LOGQ_PURE_PYTHON": "0"})
    assert out.returncode == 0
    assert ("codec: compiled (Cython)" if WHY_NOT_COMPILED is None else "codec: pure Python (") in out.stdout


def test_logq_perf_produce_and_consume_name_the_codec(tmp_path: Any) -> None:
    import json

    data = str(tmp_path / "data")
    for env in ({"LOGQ_PURE_PYTHON": "1"}, {"LOGQ_PURE_PYTHON": "0"}):
        produced = _logq(
            "--data",
            data,
            "perf",
            "produce",
            "--topic",
            "t",
            "--num-records",
            "50",
            "--record-size",
            "10",
            "--throughput",
            "-1",
            env=env,
        )
        assert produced.returncode == 0, produced.stderr
        assert "codec: " in produced.stderr
        consumed = _logq("--data", data, "perf", "consume", "--topic", "t", "--messages", "50", "--json", env=env)
        assert consumed.returncode == 0, consumed.stderr
        total = json.loads(consumed.stdout.strip().splitlines()[-1])
        want = "pure" if env["LOGQ_PURE_PYTHON"] == "1" or WHY_NOT_COMPILED else "compiled"
        assert total["codec"] == want


def test_the_mutation_loop_keeps_the_contract_on_the_codec_in_use() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_codec_loop", support.REPO / "tools" / "fuzz_codec.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    assert harness.loop(0.01, 7) >= 1000  # one round of 1,000 inputs at least, whatever the clock says
