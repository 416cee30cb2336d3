"""Tests of logq.client."""
