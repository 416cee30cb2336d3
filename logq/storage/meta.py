"""Checksummed metadata files with a fallback copy (partition state, group offsets).

File layout (text, so a person can read it)::

    logq-meta 1 <crc32c of body, 8 hex digits> <body length in bytes>\\n
    <body: one JSON object, UTF-8>

Writing (rule: a reader sees the old or the new content, never a mix)::

    write NAME.tmp -> [fsync NAME.tmp] -> rename NAME -> NAME.bak
                   -> rename NAME.tmp -> NAME -> [fsync directory]

The bracketed steps run when ``sync=True`` (power-loss durability). Without them the
write still survives a process crash: renames and page-cache data outlive the process.

Reading tries NAME, then NAME.bak (the previous good copy). A file that fails its header,
length or checksum is reported, never trusted. A leftover NAME.tmp is an update that did
not finish, so it is ignored: the write it belonged to never returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crc32c import crc32c

from logq.errors import CorruptMetadataError, storage_error
from logq.storage import files as _fs

MAGIC = "logq-meta"
VERSION = 1
MAX_META_BYTES = 64 * 1024 * 1024  # a metadata file larger than this is refused as corrupt


def encode_meta(obj: Any) -> bytes:
    body = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header = f"{MAGIC} {VERSION} {crc32c(body):08x} {len(body)}\n".encode("ascii")
    return header + body


def decode_meta(data: bytes, path: str = "<bytes>") -> Any:
    """Parse and verify one metadata file's bytes; CorruptMetadataError if anything is off."""
    nl = data.find(b"\n", 0, 128)
    if nl < 0:
        raise CorruptMetadataError(path, "no header line")
    try:
        magic, version, crc_hex, length = data[:nl].decode("ascii").split(" ")
        crc = int(crc_hex, 16)
        n = int(length)
        ver = int(version)
    except (UnicodeDecodeError, ValueError):
        raise CorruptMetadataError(path, "malformed header line") from None
    if magic != MAGIC:
        raise CorruptMetadataError(path, f"not a logq metadata file (magic {magic!r})")
    if crc_hex != f"{crc:08x}" or length != str(n):  # one spelling only: a flipped case bit is damage
        raise CorruptMetadataError(path, "malformed header line")
    if ver != VERSION:
        raise CorruptMetadataError(path, f"unknown version {ver}; this logq reads {VERSION}")
    body = data[nl + 1 : nl + 1 + n]
    if n < 0 or len(body) != n:
        raise CorruptMetadataError(path, f"body is {len(body)} bytes, header says {n}")
    if crc32c(body) != crc:
        raise CorruptMetadataError(path, "checksum mismatch")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptMetadataError(path, f"checksum ok but JSON invalid: {e}") from None


def write_meta(path: str, obj: Any, *, sync: bool = True) -> None:
    tmp = _fs.write_tmp(path, encode_meta(obj), sync)
    _fs.crash_point("meta-before-rename")
    try:
        if os.path.exists(path):
            os.replace(path, path + ".bak")
        os.replace(tmp, path)
    except OSError as e:
        raise storage_error("rename", path, e) from None
    if sync:
        _fs.fsync_dir(os.path.dirname(path) or ".")


@dataclass
class MetaRead:
    """What reading a metadata file found. ``value`` is None when no good copy exists."""

    value: Any
    source: str | None  # "main", "backup" or None
    problems: list[str] = field(default_factory=list)


def _read_file(path: str) -> bytes | None:
    fd = _fs.open_existing(path, os.O_RDONLY)
    if fd is None:
        return None
    try:
        size = os.fstat(fd).st_size
        if size > MAX_META_BYTES:
            raise CorruptMetadataError(path, f"{size} bytes is larger than {MAX_META_BYTES}")
        return _fs.pread_exact(fd, size, 0)
    finally:
        os.close(fd)


def read_meta(path: str, parse: Callable[[Any, str], Any] | None = None) -> MetaRead:
    """NAME, else NAME.bak. ``parse(value, name)`` checks a copy's content: raising
    CorruptMetadataError there falls back to the next copy, like a bad checksum."""
    problems: list[str] = []
    for name, source in ((path, "main"), (path + ".bak", "backup")):
        try:
            data = _read_file(name)
            if data is None:
                if source == "main":
                    problems.append(f"{name} is missing")
                continue
            value = decode_meta(data, name)
            return MetaRead(value if parse is None else parse(value, name), source, problems)
        except CorruptMetadataError as e:
            problems.append(str(e.message))
    if problems == [f"{path} is missing"]:
        problems = []  # never written: not a problem, just empty
    return MetaRead(None, None, problems)
