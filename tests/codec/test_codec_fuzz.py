"""Fuzzing the decoders (reliability plan T7.2 quick run, T8.2 sizes and bombs).

Contract: on any input, ``validate_batch``, ``decode_batch``, ``iter_batches`` and
``decode_varint`` return or raise :class:`CorruptRecordError`; never ``IndexError``,
``struct.error``, ``MemoryError``, ``OverflowError``, ``UnicodeDecodeError`` or anything else.
Lengths and counts read from the input must not drive allocations, and compressed records
must not inflate past ``max_decompressed_bytes``.

Most inputs here are mutated valid batches whose CRC (and optionally length) is repaired
after the mutation, so that they get past the CRC and reach the record parser and the
decompressors. ``tools/fuzz_codec.py`` runs the same targets under atheris for hours.
"""

from __future__ import annotations

import functools
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from logq.codec.batch import (
    BATCH_OVERHEAD,
    Compression,
    decode_batch,
    decode_records,
    decode_varint,
    encode_batch,
    encode_values,
    iter_batches,
    validate_batch,
)
from logq.errors import CorruptRecordError

from tests import support

try:
    import cramjam
except ImportError:  # pragma: no cover - cramjam is a test dependency
    cramjam = None

needs_cramjam = pytest.mark.skipif(cramjam is None, reason="cramjam is not installed")

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL_CAP = 64 * 1024  # keeps fuzzed decompression cheap
T = 1_700_000_000_000
MiB = 1024 * 1024

# --------------------------------------------------------------------------- seeds


def _fix(buf: bytearray, *, length: bool = True) -> bytes:
    """Make a mutated batch pass the structural length check and the CRC again."""
    if len(buf) >= BATCH_OVERHEAD:
        if length:
            struct.pack_into(">i", buf, 8, len(buf) - 12)
        struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    return bytes(buf)


def _with_codec(plain: bytes, codec_id: int, compress: Callable[[bytes], bytes]) -> bytes:
    buf = bytearray(plain[:BATCH_OVERHEAD]) + compress(plain[BATCH_OVERHEAD:])
    struct.pack_into(">h", buf, 21, codec_id)
    return _fix(buf)


def _seeds() -> list[bytes]:
    recs = [
        (b"key", b"value", [("h", b"x"), ("h", None), ("ключ", b"")], T),
        (None, None, None, T - 5),
        (b"", b"v" * 200, {"a": b"1"}, T + 2**40),
    ]
    plain = encode_batch(recs, 5)
    seeds = [
        plain,
        encode_batch(recs, compression=Compression.GZIP),
        encode_values([b"x" * 70, b"", b"y"], T, key=b"k"),
        encode_batch([(None, b"a", None, T), (None, b"bc", None, T + 5)]),
    ]
    if cramjam is not None:
        seeds += [
            _with_codec(plain, 2, lambda d: bytes(cramjam.snappy.compress_raw(d))),
            _with_codec(
                plain,
                2,
                lambda d: (
                    b"\x82SNAPPY\x00"
                    + struct.pack(">ii", 1, 1)
                    + struct.pack(">i", len(c := bytes(cramjam.snappy.compress_raw(d))))
                    + c
                ),
            ),
            _with_codec(plain, 3, lambda d: bytes(cramjam.lz4.compress(d))),
            _with_codec(plain, 4, lambda d: bytes(cramjam.zstd.compress(d))),
        ]
    return seeds


SEEDS = _seeds()


def test_every_seed_is_a_valid_batch() -> None:
    # The mutations below only mean something if they start from decodable batches.
    for seed in SEEDS:
        h, records = decode_batch(seed)
        assert len(records) == h.records_count > 0


# --------------------------------------------------------------------------- contract


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a decoder; CorruptRecordError is an allowed outcome, anything else propagates."""
    try:
        return fn(*args, **kwargs)
    except CorruptRecordError as e:
        assert e.reason, "CorruptRecordError without a reason"
        return None


def _check_all_decoders(buf: bytes) -> None:
    h = _call(validate_batch, buf)
    got = _call(decode_batch, buf, max_decompressed_bytes=SMALL_CAP)
    if got is not None:
        header, records = got
        assert h == header
        assert len(records) == header.records_count
        for r in records:
            assert r.key is None or isinstance(r.key, bytes)
            assert r.value is None or isinstance(r.value, bytes)
            assert all(isinstance(k, str) for k, _ in r.headers)
    walked = _call(lambda: list(iter_batches(buf)))
    if walked is not None:
        assert sum(hh.size for _, hh in walked) == len(buf)
    for pos in {0, 1, len(buf) // 2}:
        _call(decode_varint, buf, pos, len(buf), 5)
        _call(decode_varint, buf, pos, len(buf), 10)


@given(st.binary(max_size=400))
@FUZZ
def test_random_bytes_only_ever_raise_corrupt_record_error(data: bytes) -> None:
    _check_all_decoders(data)


@given(
    st.binary(max_size=300),
    st.sampled_from([0, 1, 2, 3, 4, 0x08, 0x10, 0x20, 0x30, 0x40]),
    st.one_of(st.integers(min_value=0, max_value=40), st.sampled_from([2**31 - 1, 2**30])),
)
@FUZZ
def test_random_records_behind_a_valid_header_and_crc(data: bytes, attrs: int, count: int) -> None:
    head = bytearray(encode_values([b"x"], T)[:BATCH_OVERHEAD])
    struct.pack_into(">h", head, 21, attrs)
    struct.pack_into(">i", head, 57, count)
    _check_all_decoders(_fix(head + data))


def _varint(n: int) -> bytes:
    u = n * 2 if n >= 0 else -n * 2 - 1
    out = bytearray()
    while u >= 0x80:
        out.append(0x80 | (u & 0x7F))
        u >>= 7
    out.append(u)
    return bytes(out)


EXTREMES = [0, 1, -1, -2, 6, 7, 63, 64, 2**31 - 1, -(2**31), 2**31, 2**35, 2**63 - 1, -(2**63)]
token = st.one_of(
    st.sampled_from(EXTREMES).map(_varint),
    st.integers(min_value=-200, max_value=200).map(_varint),
    st.binary(min_size=1, max_size=6),
    st.sampled_from([b"\x80", b"\xff" * 5, b"\xff" * 10, b"\x00", b"\x01"]),
)


@given(st.lists(token, max_size=60), st.integers(min_value=0, max_value=6), st.booleans())
@FUZZ
def test_records_made_of_random_varints_behind_a_valid_crc(tokens: list[bytes], count: int, gzip: bool) -> None:
    blob = b"".join(tokens)
    head = bytearray(encode_values([b"x"], T)[:BATCH_OVERHEAD])
    struct.pack_into(">i", head, 57, count)
    if gzip:
        struct.pack_into(">h", head, 21, 1)
        blob = zlib.compress(blob, 1, wbits=31)
    _check_all_decoders(_fix(head + blob))


# --------------------------------------------------------------------------- mutations

HEADER_FIELDS = [  # (offset, struct format) of every fixed header field
    (0, ">q"),
    (8, ">i"),
    (12, ">i"),
    (16, ">b"),
    (17, ">I"),
    (21, ">h"),
    (23, ">i"),
    (27, ">q"),
    (35, ">q"),
    (43, ">q"),
    (51, ">h"),
    (53, ">i"),
    (57, ">i"),
]


def _extreme(fmt: str) -> st.SearchStrategy[int]:
    bits = struct.calcsize(fmt) * 8
    lo, hi = (0, 2**bits - 1) if fmt[-1].isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.sampled_from(sorted({lo, hi, 0, -1 if lo < 0 else 1, 1, 2, hi // 2, 61, 49}))


@st.composite
def mutation(draw: st.DrawFn, size: int) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "field", "varint"]))
    if kind == "flip":
        return kind, (draw(st.integers(0, size - 1)), draw(st.integers(0, 7)))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "insert":
        return kind, (draw(st.integers(0, size)), draw(st.binary(min_size=1, max_size=8)))
    if kind == "delete":
        return kind, (draw(st.integers(0, size - 1)), draw(st.integers(1, 8)))
    if kind == "field":
        off, fmt = draw(st.sampled_from(HEADER_FIELDS))
        return kind, (off, fmt, draw(_extreme(fmt)))
    # Overwrite a few record bytes with a varint holding an extreme length or count.
    pos = draw(st.integers(BATCH_OVERHEAD, size - 1)) if size > BATCH_OVERHEAD else size
    return kind, (pos, draw(st.integers(0, 5)), _varint(draw(st.sampled_from(EXTREMES))))


def _apply(buf: bytearray, m: tuple[str, Any]) -> None:
    kind, arg = m
    if kind == "flip" and arg[0] < len(buf):
        buf[arg[0]] ^= 1 << arg[1]
    elif kind == "truncate":
        del buf[arg:]
    elif kind == "insert":
        buf[arg[0] : arg[0]] = arg[1]
    elif kind == "delete":
        del buf[arg[0] : arg[0] + arg[1]]
    elif kind == "field" and arg[0] + struct.calcsize(arg[1]) <= len(buf):
        struct.pack_into(arg[1], buf, arg[0], arg[2])
    elif kind == "varint":
        buf[arg[0] : arg[0] + arg[1]] = arg[2]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    buf = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        _apply(buf, draw(mutation(max(len(buf), 1))))
    repair = draw(st.sampled_from(["none", "crc", "crc+length"]))
    if repair == "none":
        return bytes(buf)
    return _fix(buf, length=repair == "crc+length")


@given(mutated())
@settings(FUZZ, max_examples=1500)
def test_mutated_valid_batches_only_ever_raise_corrupt_record_error(buf: bytes) -> None:
    _check_all_decoders(buf)


@given(st.lists(st.sampled_from(SEEDS), min_size=2, max_size=4), mutated())
@FUZZ
def test_a_corrupt_batch_after_good_ones_fails_only_at_its_own_position(good: list[bytes], bad: bytes) -> None:
    assume(bad and _call(validate_batch, bad) is None)
    prefix = b"".join(good)
    seen: list[int] = []
    with pytest.raises(CorruptRecordError) as info:
        for pos, _ in iter_batches(prefix + bad):
            seen.append(pos)
    assert info.value.position == len(prefix)
    assert len(seen) == len(good)


@given(
    st.binary(max_size=24),
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=30),
    st.sampled_from([5, 10]),
)
@example(b"\xff\xff\xff\xff\x1f", 0, 5, 5)
@example(b"\xff" * 9 + b"\x7f", 0, 10, 10)
@FUZZ
def test_decode_varint_returns_an_in_range_value_or_raises_corrupt(
    data: bytes, pos: int, span: int, width: int
) -> None:
    pos = min(pos, len(data))
    limit = min(pos + span, len(data))
    got = _call(decode_varint, data, pos, limit, width)
    if got is not None:
        value, nxt = got
        bits = 32 if width == 5 else 64
        assert -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
        assert pos < nxt <= min(limit, pos + width)
        assert data[nxt - 1] < 0x80 and all(b >= 0x80 for b in data[pos : nxt - 1])


# --------------------------------------------------------------------------- sizes and bombs


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _bomb_batch(codec_id: int, stream: bytes) -> bytes:
    head = bytearray(encode_values([b"x"], T)[:BATCH_OVERHEAD])
    struct.pack_into(">h", head, 21, codec_id)
    struct.pack_into(">i", head, 23, 999)  # lastOffsetDelta
    struct.pack_into(">i", head, 57, 1000)
    return _fix(head + stream)


def _gzip_zeros(total: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MiB)
    return b"".join(c.compress(chunk) for _ in range(total // MiB)) + c.flush()


def _stream_zeros(name: str, total: int) -> bytes:
    comp = getattr(cramjam, name).Compressor()
    chunk = bytes(MiB)
    for _ in range(total // MiB):
        comp.compress(chunk)
    return bytes(comp.finish())


def _xerial_zeros(total: int) -> bytes:
    block = bytes(cramjam.snappy.compress_raw(bytes(64 * 1024)))
    frame = struct.pack(">i", len(block)) + block
    return b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + frame * (total // (64 * 1024))


@pytest.fixture(scope="module")
def bombs() -> Iterator[dict]:
    out = {"gzip": _bomb_batch(1, _gzip_zeros(64 * MiB))}
    if cramjam is not None:
        out["zstd"] = _bomb_batch(4, _stream_zeros("zstd", 64 * MiB))
        out["lz4"] = _bomb_batch(3, _stream_zeros("lz4", 64 * MiB))
        # snappy tops out near 21:1, so 16 MiB keeps the bomb itself well under the cap
        out["snappy-xerial"] = _bomb_batch(2, _xerial_zeros(16 * MiB))
        out["snappy-raw"] = _bomb_batch(2, bytes(cramjam.snappy.compress_raw(bytes(4 * MiB))))
    yield out


@pytest.mark.parametrize(
    "name",
    [
        "gzip",
        pytest.param("zstd", marks=needs_cramjam),
        pytest.param("lz4", marks=needs_cramjam),
        pytest.param("snappy-xerial", marks=needs_cramjam),
        pytest.param("snappy-raw", marks=needs_cramjam),
    ],
)
def test_decompression_bomb_is_refused_within_bounded_memory(bombs: dict, name: str) -> None:
    buf = bombs[name]
    assert len(buf) < 4 * MiB  # the bomb itself is small
    validate_batch(buf)  # its CRC is fine: only the size gives it away

    def decode() -> None:
        with pytest.raises(CorruptRecordError) as info:
            decode_batch(buf, max_decompressed_bytes=MiB)
        assert info.value.position == 0

    assert _peak(decode) < 4 * MiB


def test_gzip_bomb_under_a_larger_cap_still_stops_at_the_cap(bombs: dict) -> None:
    h = validate_batch(bombs["gzip"])
    assert _peak(lambda: _call(decode_records, bombs["gzip"], h, max_decompressed_bytes=8 * MiB)) < 4 * 8 * MiB
    with pytest.raises(CorruptRecordError, match="exceed"):
        decode_records(bombs["gzip"], h, max_decompressed_bytes=8 * MiB)


_RSS_CHILD = textwrap.dedent(
    """
    import resource, sys
    from logq.codec.batch import decode_batch, encode_values
    from logq.errors import CorruptRecordError
    bombs = [open(p, "rb").read() for p in sys.argv[1:]]
    decode_batch(encode_values([b"warm"], 0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for b in bombs:
        try:
            decode_batch(b, max_decompressed_bytes=1 << 20)
        except CorruptRecordError:
            pass
        else:
            raise SystemExit("bomb accepted")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
)


@needs_cramjam
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_decompression_bombs_keep_peak_rss_far_below_the_bomb_size(bombs: dict, tmp_path: Path) -> None:
    # tracemalloc cannot see allocations made inside cramjam (Rust); the OS can.
    paths = []
    for name, buf in bombs.items():
        p = tmp_path / name
        p.write_bytes(buf)
        paths.append(str(p))
    env = dict(os.environ, PYTHONPATH=str(support.REPO))
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, *paths],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    grew_kib = int(out.stdout.strip())
    assert grew_kib < 16 * 1024  # the bombs inflate to 16-64 MiB each; the cap is 1 MiB


@pytest.mark.parametrize(
    "offset,fmt,value",
    [(57, ">i", 2**31 - 1), (8, ">i", 2**31 - 1), (23, ">i", 2**31 - 1)],
    ids=["records-count", "batch-length", "last-offset-delta"],
)
def test_header_lengths_and_counts_of_int32_max_allocate_nothing(offset: int, fmt: str, value: int) -> None:
    buf = bytearray(SEEDS[0])
    struct.pack_into(fmt, buf, offset, value)
    fixed = _fix(buf, length=offset != 8)
    assert _peak(lambda: _call(decode_batch, fixed)) < 64 * 1024


def _int32_max_field(field: str) -> bytes:
    big = _varint(2**31 - 1)
    pad = b"\x00" * 10
    if field == "record-length":
        return big + pad
    prefix = {
        "key-length": b"\x00\x00\x00",
        "value-length": b"\x00\x00\x00\x01",
        "header-count": b"\x00\x00\x00\x01\x01",
        "header-key-length": b"\x00\x00\x00\x01\x01\x02",
        "header-value-length": b"\x00\x00\x00\x01\x01\x02\x02h",
    }[field]
    body = prefix + big + pad
    return _varint(len(body)) + body


@pytest.mark.parametrize(
    "field",
    ["record-length", "key-length", "value-length", "header-count", "header-key-length", "header-value-length"],
)
def test_record_fields_of_int32_max_are_refused_without_allocating(field: str) -> None:
    buf = bytearray(SEEDS[0][:BATCH_OVERHEAD]) + _int32_max_field(field)
    struct.pack_into(">i", buf, 23, 0)  # lastOffsetDelta
    struct.pack_into(">i", buf, 57, 1)  # recordsCount
    fixed = _fix(buf)
    with pytest.raises(CorruptRecordError, match=field.replace("-", " ") + " 2147483647"):
        decode_batch(fixed)
    assert _peak(lambda: _call(decode_batch, fixed)) < 64 * 1024


# --------------------------------------------------------------------------- the atheris harness

HARNESS = support.REPO / "tools" / "fuzz_codec.py"


def _load_harness() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_codec_harness", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_atheris_harness_exits_2_with_a_message_when_atheris_is_missing() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("atheris is installed; the harness would start fuzzing")
    out = subprocess.run([sys.executable, str(HARNESS), "-runs=1"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "pip install atheris" in out.stderr


def test_atheris_harness_seeds_decode_and_its_target_keeps_the_contract(tmp_path: Path) -> None:
    import logq.codec.batch as codec_module

    harness = _load_harness()
    seeds = harness.seed_batches(codec_module)
    assert len(seeds) >= 6
    for seed in seeds:
        h, records = decode_batch(seed)
        assert len(records) == h.records_count
    harness.write_seeds(tmp_path, seeds)
    target = harness.make_target(codec_module, CorruptRecordError)
    corpus = sorted(tmp_path.iterdir())
    assert len(corpus) == 4 * len(seeds)
    for path in corpus:
        target(path.read_bytes())


def test_atheris_target_lets_any_other_exception_through() -> None:
    # Negative control: the harness must surface what libFuzzer should report as a crash.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise IndexError("decoder bug")

    fake = type("FakeCodec", (), {"decode_batch": staticmethod(broken)})
    with pytest.raises(IndexError):
        _load_harness().make_target(fake, CorruptRecordError)(b"\x00" + SEEDS[0])


@functools.cache
def _harness_target() -> Callable[[bytes], None]:
    import logq.codec.batch as codec_module

    return _load_harness().make_target(codec_module, CorruptRecordError)


@given(st.integers(min_value=0, max_value=255), mutated())
@settings(FUZZ, max_examples=300)
def test_atheris_target_on_mutated_batches_only_raises_corrupt(mode: int, buf: bytes) -> None:
    _harness_target()(bytes([mode]) + buf)
