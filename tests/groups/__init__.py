"""Tests of logq.groups."""
