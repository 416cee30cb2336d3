"""Admin.describe_group and `logq groups describe --members/--state` for a group `logq serve`
coordinates: the protocol the group chose (the Kafka clients' assignor) and each network
member's client id and host, with real Kafka clients against logq.Server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from logq import Admin

from tests.cli.cli_helpers import ok, parse_table

MEMBER_COLUMNS = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "PID", "#PARTITIONS", "ASSIGNMENT"]
STATE_COLUMNS = ["GROUP", "ASSIGNMENT-STRATEGY", "STATE", "GENERATION", "#MEMBERS"]


def wait_assigned(consumers: list[Any], partitions: int) -> None:
    deadline = time.monotonic() + 60  # a bound for a stuck rebalance, not a measurement
    while sum(len(c.assignment()) for c in consumers) < partitions:
        assert time.monotonic() < deadline, "the group never assigned every partition"
        for c in consumers:
            c.poll(50)


@pytest.mark.parametrize("name", ["roundrobin", "range"])
def test_describe_shows_the_chosen_protocol_and_each_network_members_client_id_and_host(
    root: str, bootstrap: str, name: str
) -> None:
    import kafka.coordinator.assignors.range as range_assignor
    import kafka.coordinator.assignors.roundrobin as roundrobin_assignor
    from kafka import KafkaConsumer

    assignor = (
        roundrobin_assignor.RoundRobinPartitionAssignor
        if name == "roundrobin"
        else range_assignor.RangePartitionAssignor
    )
    Admin(root).create_topic("t", partitions=4)
    consumers = [
        KafkaConsumer(
            "t",
            bootstrap_servers=bootstrap,
            group_id="g",
            client_id=f"billing-{i}",
            partition_assignment_strategy=[assignor],
        )
        for i in range(2)
    ]
    try:
        wait_assigned(consumers, 4)
        info = Admin(root).describe_group("g")
        assert info.assignor == name
        assert sorted((m.client_id, m.host) for m in info.member_details) == [
            ("billing-0", "/127.0.0.1"),
            ("billing-1", "/127.0.0.1"),
        ]
        assert sum(len(m.assignment) for m in info.member_details) == 4

        data = Path(root)
        (state,) = parse_table(ok(data, "groups", "describe", "g", "--state").stdout, STATE_COLUMNS)
        assert (state["ASSIGNMENT-STRATEGY"], state["STATE"], state["#MEMBERS"]) == (name, "Stable", "2")
        assert json.loads(ok(data, "groups", "describe", "g", "--state", "--json").stdout)["assignmentStrategy"] == name
        rows = parse_table(ok(data, "groups", "describe", "g", "--members").stdout, MEMBER_COLUMNS)
        assert sorted((r["CLIENT-ID"], r["HOST"], r["#PARTITIONS"]) for r in rows) == [
            ("billing-0", "/127.0.0.1", "2"),
            ("billing-1", "/127.0.0.1", "2"),
        ]
        objs = [json.loads(x) for x in ok(data, "groups", "describe", "g", "--members", "--json").stdout.splitlines()]
        assert sorted((o["clientId"], o["host"]) for o in objs) == [
            ("billing-0", "/127.0.0.1"),
            ("billing-1", "/127.0.0.1"),
        ]
    finally:
        for c in consumers:
            c.close(autocommit=False)


def test_confluent_kafkas_cooperative_sticky_is_shown_as_chosen(root: str, bootstrap: str) -> None:
    ck = pytest.importorskip("confluent_kafka")
    Admin(root).create_topic("t", partitions=2)
    c = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "g",
            "client.id": "ck-reader",
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    try:
        c.subscribe(["t"])
        deadline = time.monotonic() + 60  # a bound, not a measurement
        while len(c.assignment()) < 2:
            assert time.monotonic() < deadline, "the group never assigned every partition"
            c.poll(0.05)
        info = Admin(root).describe_group("g")
        assert info.assignor == "cooperative-sticky"
        assert [(m.client_id, m.host) for m in info.member_details] == [("ck-reader", "/127.0.0.1")]
    finally:
        c.close()


def test_an_embedded_group_still_reports_logqs_sticky_assignor_and_no_client_id(root: str) -> None:
    import logq

    Admin(root).create_topic("t", partitions=2)
    with logq.Consumer(root, "t", group_id="g", session_timeout_ms=300) as c:
        deadline = time.monotonic() + 60
        while len(c.assignment()) < 2:
            assert time.monotonic() < deadline
            c.poll(0.05)
        info = Admin(root).describe_group("g")
    assert info.assignor == "sticky"
    assert [(m.client_id, m.host) for m in info.member_details] == [(None, None)]
