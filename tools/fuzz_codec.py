#!/usr/bin/env python3
"""Coverage-guided fuzzing of logq's batch decoders with atheris (reliability plan T7.2).

Usage (from the repository root, inside the project's virtualenv)::

    pip install atheris
    python tools/fuzz_codec.py -max_total_time=3600
    python tools/fuzz_codec.py -max_total_time=3600 -rss_limit_mb=512 -timeout=1 CORPUS_DIR

Every argument goes to libFuzzer unchanged (``-help=1`` lists them). Without a corpus
directory a temporary one is created; an empty corpus directory is filled first. Seeds are
valid batches written by logq's own encoder: plain, with headers, tombstones, gzip, and, when
cramjam is installed, snappy (raw and xerial-framed), lz4 and zstd.

Targets, chosen by the low bits of the first input byte (the rest is the input):

* ``decode_batch`` with a 1 MiB decompression cap, ``iter_batches``, ``validate_batch``,
  ``decode_varint`` (5- and 10-byte forms), and ``decode_records`` as the consumer calls it
  (``origin``, ``min_offset``) next to ``walk_records``;
* the same with the batch length and CRC repaired first, so mutations get past the CRC and
  reach the record parser and the decompressors.

Contract checked: each call returns or raises ``CorruptRecordError``. Any other exception
(``IndexError``, ``struct.error``, ``MemoryError``, ``OverflowError``, ...) is reported by
libFuzzer as a crash and the input is saved as ``crash-*``; turn it into a regression test
in ``tests/codec/test_codec.py``. Exits 2 with a message when atheris is not installed.

``python tools/fuzz_codec.py --loop SECONDS [SEED]`` needs no atheris: it mutates the seeds
at random (bit flips, cuts, inserts, extreme header fields and varints, appended batches)
without coverage feedback, for sanitizer runs.

The codec fuzzed is the one ``logq.codec.batch`` uses (the compiled one when built, unless
``LOGQ_PURE_PYTHON=1``); the first line on stderr names it. ``tools/fuzz_sanitized.sh`` runs
this harness against a compiled codec built with AddressSanitizer and UBSan.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

MIB = 1024 * 1024
HEADER_BYTES = 61


def seed_batches(codec: ModuleType) -> list[bytes]:
    """Valid batches from logq's encoder (and cramjam-compressed copies of one of them)."""
    t = 1_700_000_000_000
    rich = [
        (b"key", b"value", [("h", b"x"), ("h", None), ("ключ", b"")], t),
        (None, None, None, t - 5),
        (b"", b"v" * 300, {"a": b"1"}, t + 2**40),
    ]
    plain = codec.encode_batch(rich, 7, partition_leader_epoch=3)
    seeds = [
        plain,
        codec.encode_batch(rich, compression=codec.Compression.GZIP),
        codec.encode_batch([(None, b"a", None, t), (None, b"bc", None, t + 5)]),
        codec.encode_batch([(b"k", None, None, t)]),
        codec.encode_values([b"x" * 100] * 50, t, key=b"k"),
        codec.encode_values([b""], -1),
    ]
    try:
        import cramjam
    except ImportError:
        return seeds

    def recompress(codec_id: int, compress: Callable[[bytes], bytes]) -> bytes:
        buf = bytearray(plain[:HEADER_BYTES]) + compress(plain[HEADER_BYTES:])
        struct.pack_into(">h", buf, 21, codec_id)
        return repair(bytes(buf))

    def xerial(data: bytes) -> bytes:
        block = bytes(cramjam.snappy.compress_raw(data))
        return b"\x82SNAPPY\x00" + struct.pack(">iii", 1, 1, len(block)) + block

    seeds += [
        recompress(2, lambda d: bytes(cramjam.snappy.compress_raw(d))),
        recompress(2, xerial),
        recompress(3, lambda d: bytes(cramjam.lz4.compress(d))),
        recompress(4, lambda d: bytes(cramjam.zstd.compress(d))),
    ]
    return seeds


def repair(buf: bytes) -> bytes:
    """Set batchLength to the input size and recompute the CRC (needs a full header)."""
    if len(buf) < HEADER_BYTES:
        return buf
    out = bytearray(buf)
    struct.pack_into(">i", out, 8, len(out) - 12)
    from crc32c import crc32c

    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return bytes(out)


def make_target(codec: ModuleType, corrupt: type) -> Callable[[bytes], None]:
    """The per-input function; separate from atheris so it can be tested without it."""

    def target(data: bytes) -> None:
        if not data:
            return
        mode, buf = data[0], data[1:]
        if mode & 0x08:
            buf = repair(buf)
        which = mode & 0x07
        try:
            if which in (0, 5):
                h, records = codec.decode_batch(buf, max_decompressed_bytes=MIB)
                if len(records) != h.records_count:
                    raise AssertionError("decoded record count differs from the header")
            elif which == 4:
                # The consumer's path (records built as another class, some skipped) and the
                # walk that builds nothing; both must agree on what they keep.
                h = codec.validate_batch(buf, max_batch_bytes=MIB)
                kept = codec.decode_records(buf, h, origin=(tuple, "t", 0), min_offset=h.base_offset + 1)
                if codec.walk_records(buf, h, min_offset=h.base_offset + 1) != len(kept):
                    raise AssertionError("walk_records and decode_records disagree")
            elif which == 1:
                total = sum(h.size for _, h in codec.iter_batches(buf))
                if total != len(buf):
                    raise AssertionError("iter_batches did not account for every byte")
            elif which == 2:
                codec.validate_batch(buf, max_batch_bytes=MIB)
            else:
                width = 5 if which == 3 else 10
                value, nxt = codec.decode_varint(buf, 0, len(buf), width)
                bits = 32 if width == 5 else 64
                if not -(1 << (bits - 1)) <= value < 1 << (bits - 1) or not 0 < nxt <= width:
                    raise AssertionError(f"varint decoded out of range: {value}, {nxt}")
        except corrupt:
            pass

    return target


def write_seeds(corpus: Path, seeds: list[bytes]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        for mode in (0x00, 0x01, 0x02):
            (corpus / f"seed-{i:02d}-{mode}").write_bytes(bytes([mode]) + seed)
        (corpus / f"seed-{i:02d}-repair").write_bytes(bytes([0x08]) + seed)


EXTREMES = [0, 1, -1, 6, 7, 64, 2**31 - 1, -(2**31), 2**32, 2**63 - 1, -(2**63)]
FIELDS = [
    (0, 8),
    (8, 4),
    (12, 4),
    (16, 1),
    (17, 4),
    (21, 2),
    (23, 4),
    (27, 8),
    (35, 8),
    (43, 8),
    (51, 2),
    (53, 4),
    (57, 4),
]


def zigzag_varint(n: int) -> bytes:
    u = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while u >= 0x80:
        out.append(0x80 | (u & 0x7F))
        u >>= 7
    out.append(u)
    return bytes(out)


def mutate(rng: Any, seeds: list[bytes]) -> bytes:
    """One input for the target: a mode byte and a seed batch with 1-4 random mutations."""
    buf = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        n = len(buf)
        if kind == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif kind == 1 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif kind == 2 and n:
            del buf[rng.randrange(n) :]
        elif kind == 3:
            at = rng.randint(0, n)
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == 4 and n:
            at = rng.randrange(n)
            del buf[at : at + rng.randint(1, 8)]
        elif kind == 5:
            off, width = rng.choice(FIELDS)
            if off + width <= n:
                value = rng.choice(EXTREMES) & ((1 << (8 * width)) - 1)
                buf[off : off + width] = value.to_bytes(width, "big")
        elif kind == 6 and n > HEADER_BYTES:
            at = rng.randrange(HEADER_BYTES, n)
            buf[at : at + rng.randint(0, 5)] = zigzag_varint(rng.choice(EXTREMES + [rng.randint(-300, 300)]))
        elif kind == 7:
            buf += rng.choice(seeds)[: rng.randint(0, 200)]  # a second batch, maybe cut short
    mode = rng.randrange(16) | (0x08 if rng.random() < 0.6 else 0)  # mostly past the CRC
    return bytes([mode]) + bytes(buf)


def loop(seconds: float, seed: int) -> int:
    """Random mutation without coverage feedback: for sanitizer builds, where atheris's
    libFuzzer cannot see coverage (gcc's ASan runtime provides the coverage hooks) or cannot
    be combined with the runtime. Returns the number of executions."""
    import random
    import time

    from logq.codec import batch as codec
    from logq.errors import CorruptRecordError

    print(f"fuzz_codec: codec {codec.describe_implementation()} from {Path(codec.__file__).parent}", file=sys.stderr)
    rng = random.Random(seed)
    seeds = seed_batches(codec)
    target = make_target(codec, CorruptRecordError)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        for _ in range(1000):
            data = mutate(rng, seeds) if rng.random() < 0.97 else rng.randbytes(rng.randint(0, 200))
            try:
                target(data)
            except Exception:
                print(f"fuzz_codec: contract broken after {runs} runs by input {data.hex()}", file=sys.stderr)
                raise
            runs += 1
    print(f"fuzz_codec: Done {runs} runs in {seconds:.0f} second(s), seed {seed}", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1 and argv[1] == "--loop":
        loop(float(argv[2]) if len(argv) > 2 else 60.0, int(argv[3]) if len(argv) > 3 else 0)
        return 0
    try:
        import atheris
    except ImportError:
        print(
            "fuzz_codec: atheris is not installed. Install it with `pip install atheris`, "
            "then run `python tools/fuzz_codec.py -max_total_time=3600`.",
            file=sys.stderr,
        )
        return 2

    import importlib.util

    root = Path(__file__).resolve().parent.parent
    if importlib.util.find_spec("logq") is None and str(root) not in sys.path:
        sys.path.insert(0, str(root))  # else keep the logq on the path (fuzz_sanitized.sh puts its build first)
    with atheris.instrument_imports():
        from logq.codec import batch as codec  # noqa: F401  (compression: instrument the decompressors)
        from logq.errors import CorruptRecordError
    print(f"fuzz_codec: codec {codec.describe_implementation()} from {Path(codec.__file__).parent}", file=sys.stderr)

    corpora = [a for a in argv[1:] if not a.startswith("-")]
    if not corpora:
        corpus = Path(tempfile.mkdtemp(prefix="logq-fuzz-codec-"))
        argv.append(str(corpus))
        corpora = [str(corpus)]
        print(f"fuzz_codec: corpus in {corpus}", file=sys.stderr)
    first = Path(corpora[0])
    if not first.exists() or not any(first.iterdir()):
        write_seeds(first, seed_batches(codec))

    atheris.Setup(argv, make_target(codec, CorruptRecordError))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
