"""Every codec test runs twice: against the pure-Python codec and the compiled one.

``logq.codec.batch`` is the one seam; ``use_implementation`` switches the functions behind
it for the whole process, so the tests (which import the public functions) need no change.
Subprocesses started by a test inherit the choice through ``LOGQ_PURE_PYTHON``. When the
compiled codec is not built, its half of the suite is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from logq.codec import batch

IMPLEMENTATIONS = ["pure", "compiled"]


@pytest.fixture(autouse=True, scope="module", params=IMPLEMENTATIONS)
def codec_implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.param
    why_not = batch.implementations()[name]
    if why_not is not None:
        pytest.skip(why_not)
    previous = batch.use_implementation(name)
    saved_env = os.environ.get(batch.PURE_ENV)
    os.environ[batch.PURE_ENV] = "1" if name == "pure" else "0"
    try:
        yield name
    finally:
        batch.use_implementation(previous)
        if saved_env is None:
            os.environ.pop(batch.PURE_ENV, None)
        else:
            os.environ[batch.PURE_ENV] = saved_env
