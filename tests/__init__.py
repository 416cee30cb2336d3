"""logq's test suite: one folder per package layer (codec, storage, groups, client, cli),
whole-package tests at the top, shared helpers in ``tests.support`` and fixtures in conftest.py.
"""
