"""Fixtures of the client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from logq.codec import batch


@pytest.fixture(params=["pure", "compiled"])
def codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the pure and the compiled codec (skipped when it is not built)."""
    why_not = batch.implementations()[request.param]
    if why_not is not None:
        pytest.skip(why_not)
    previous = batch.use_implementation(request.param)
    try:
        yield request.param
    finally:
        batch.use_implementation(previous)
