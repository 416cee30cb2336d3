"""Test-wide settings.

Under CI (``CI`` set, as .ci/run's environment does) hypothesis runs derandomized: the same
examples every run, so a landing never depends on a lucky draw. Locally it explores new random
examples each run; whatever it finds becomes an explicit regression test.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
