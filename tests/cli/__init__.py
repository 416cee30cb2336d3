"""Tests of logq.cli."""
