"""Handlers of `logq serve`, one module per API family (see logq/server/apis.py)."""
