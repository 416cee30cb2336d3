"""Tests of logq.storage."""
