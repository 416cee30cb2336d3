"""Tests of logq.codec."""
