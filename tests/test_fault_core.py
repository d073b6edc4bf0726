"""Latency fault tolerance: how long a broker is avoided after a send (Java's
``MQFaultStrategy`` table: 550 ms avoids it 2 s, ..., 15 s avoids it 30 s)."""

from __future__ import annotations

import pytest

from rocketmq_proto.flows.fault import (
    FAILURE_LATENCY_MS,
    ISOLATION_LATENCY_MS,
    LatencyFaultTolerance,
    not_available_duration_ms,
)


@pytest.mark.parametrize(
    ("latency_ms", "avoided_ms"),
    [
        (0, 0),
        (0.3, 0),
        (50, 0),
        (549.9, 0),
        (550, 2000),
        (1799, 2000),
        (1800, 5000),
        (3000, 6000),
        (5000, 10000),
        (14999, 10000),
        (15000, 30000),
        (10**9, 30000),
    ],
)
def test_a_sends_latency_avoids_its_broker_as_javas_table_says(
    latency_ms: float, avoided_ms: int
) -> None:
    assert not_available_duration_ms(latency_ms) == avoided_ms


def test_a_slow_send_makes_its_broker_unavailable_until_its_time_and_a_fast_one_clears_it() -> None:
    table = LatencyFaultTolerance()
    table.update("broker-a", 600, now=100.0)
    assert not table.is_available("broker-a", 101.9)
    assert table.is_available("broker-a", 102.0)
    assert table.is_available("broker-b", 100.0)
    table.update("broker-a", 20, now=100.5)  # a fast send clears it at once
    assert table.is_available("broker-a", 100.5)


@pytest.mark.parametrize(("isolate", "avoided_s"), [(False, 10.0), (True, 30.0)])
def test_a_failed_send_counts_as_a_long_latency(isolate: bool, avoided_s: float) -> None:
    assert not_available_duration_ms(FAILURE_LATENCY_MS) == 10_000
    assert not_available_duration_ms(ISOLATION_LATENCY_MS) == 30_000
    table = LatencyFaultTolerance()
    table.update("broker-a", 1, now=0.0, failed=True, isolate=isolate)
    assert not table.is_available("broker-a", avoided_s - 0.01)
    assert table.is_available("broker-a", avoided_s)
