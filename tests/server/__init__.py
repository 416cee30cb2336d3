"""Tests of logq.server (`logq serve`): the sans-IO core, and real Kafka clients against a server."""
