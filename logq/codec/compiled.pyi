"""Types of the optional compiled codec (logq/codec/compiled.pyx); logq.codec.batch is its only caller."""

from collections.abc import Callable, Sequence
from typing import Any

def bind(
    header_cls: type, record_cls: type, corrupt_error: type, crc_function: Callable[..., int], validate_pure: Any
) -> None: ...
def validate_batch(
    buf: Any,
    pos: int = 0,
    end: int | None = None,
    max_batch_bytes: int | None = None,
    expected_offset: int | None = None,
) -> Any: ...
def decode_records(
    data: Any, h: Any, min_offset: int = 0, origin: tuple[type, str, int] | None = None
) -> list[Any]: ...
def walk_records(data: Any, h: Any, min_offset: int = 0) -> int: ...
def encode_records(records: Sequence[Any], base_ts: int) -> bytes: ...
def encode_values(
    values: Sequence[Any], timestamp: int, base_offset: int, key: bytes | None, partition_leader_epoch: int
) -> bytes: ...
