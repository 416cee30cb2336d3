"""Type stub of the optional compiled columnar decoder (logq/codec/columns.pyx)."""

from typing import Any

OUT_OF_RANGE: str

def decode_columns(
    data: Any, h: Any, min_offset: int = 0
) -> tuple[int, bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes, list[Any] | None]: ...
def build_records(cols: Any, start: int, stop: int, cls: type) -> list[Any]: ...
