"""The OpenTelemetry extra: the 5.x clients' instrument names, attributes and bucket
boundaries, read back with the SDK's in-memory reader."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rocketmq_proto.flows.hooks import ConsumeContext, SendContext
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.otel import (
    AWAIT_TIME,
    CACHED_BYTES,
    CACHED_MESSAGES,
    DELIVERY_LATENCY,
    PROCESS_TIME,
    SEND_BUCKETS,
    SEND_COST_TIME,
    instrument,
)
from rocketmq_proto.wire.errors import ConfigError


class FakeClient:
    """What ``instrument`` uses of a client."""

    client_id = "10.0.0.1@1"
    group = "cg"

    def __init__(self) -> None:
        self.hooks: list[Any] = []

    def add_hook(self, hook: Any) -> None:
        self.hooks.append(hook)

    def stats(self) -> dict[str, Any]:
        row = {"topic": "T", "broker": "b", "queue_id": 0, "lag": 0}
        return {
            "queues": [
                {**row, "cached_messages": 3, "cached_bytes": 300},
                {**row, "queue_id": 1, "cached_messages": 2, "cached_bytes": 50},
            ]
        }


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_sends_and_consumes_are_recorded_under_the_5x_names() -> None:
    reader = InMemoryMetricReader()
    client = FakeClient()
    hook = instrument(client, meter_provider=MeterProvider(metric_readers=[reader]))
    assert client.hooks == [hook]
    hook.after_send(SendContext("pg", [Message("T", b"x")], elapsed=0.004))
    hook.after_send(SendContext("pg", [Message("T", b"x")], elapsed=0.3, error=OSError("down")))
    msgs = [MessageExt("T", b"x", store_timestamp=1_000_000), MessageExt("T", b"y")]
    consumed = ConsumeContext("NS%cg", msgs, result="SUCCESS", elapsed=0.012)
    consumed.timestamp_ms, consumed.await_time = 1_000_050, 0.02
    hook.after_consume(consumed)
    hook.after_consume(ConsumeContext("cg", msgs, result="RETRY_LATER", elapsed=0.001))
    hook.after_consume(ConsumeContext("cg", msgs))  # not handled: not recorded
    got = points(reader)

    sends = {p.attributes["invocation_status"]: p for p in got[SEND_COST_TIME]}
    assert sends["success"].count == 1 and sends["success"].sum == 4.0
    assert sends["failure"].count == 1 and sends["failure"].sum == 300.0
    assert dict(sends["success"].attributes) == {
        "topic": "T",
        "client_id": "10.0.0.1@1",
        "invocation_status": "success",
    }
    assert tuple(sends["success"].explicit_bounds) == SEND_BUCKETS

    process = {p.attributes["invocation_status"]: p for p in got[PROCESS_TIME]}
    assert process["success"].sum == 12.0 and process["failure"].sum == 1.0
    assert process["success"].attributes["consumer_group"] == "cg"
    [awaited] = got[AWAIT_TIME]
    assert awaited.count == 1 and awaited.sum == 20.0
    [delivery] = got[DELIVERY_LATENCY]  # the message with a store time: arrived 30 ms later
    assert delivery.count == 1 and delivery.sum == 30.0

    [cached] = got[CACHED_MESSAGES]
    [cached_bytes] = got[CACHED_BYTES]
    assert (cached.value, cached_bytes.value) == (5, 350)
    assert dict(cached.attributes) == {
        "topic": "T",
        "consumer_group": "cg",
        "client_id": "10.0.0.1@1",
    }


def test_the_clients_never_import_opentelemetry_themselves() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rocketmq_asyncio, rocketmq_sync, rocketmq_gevent, rocketmq_proto;"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_without_opentelemetry_instrument_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"pip install 'rocketmq-remoting\[otel\]'"):
        instrument(FakeClient())


def test_every_client_instrumented_on_one_provider_is_observed() -> None:
    """The SDK keeps one callback per instrument name: the gauges read all clients."""

    class Other(FakeClient):
        client_id = "10.0.0.1@2"

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    first, second = FakeClient(), Other()
    instrument(first, meter_provider=provider)
    instrument(second, meter_provider=provider)
    got = points(reader)
    assert sorted(p.attributes["client_id"] for p in got[CACHED_MESSAGES]) == [
        "10.0.0.1@1",
        "10.0.0.1@2",
    ]
    assert [p.value for p in got[CACHED_BYTES]] == [350, 350]
