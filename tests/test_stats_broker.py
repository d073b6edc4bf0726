"""``stats()`` against the real cluster, in each driver: a producer's sends (ok,
failed, latency), a push consumer's handler calls (ok, failed and retried, process
and await times), its queues' cached messages and lag, and the trace counters."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from rocketmq_proto import Hook, Message, MessageExt
from rocketmq_proto.otel import CACHED_MESSAGES, instrument

from .backends import Backend
from .test_otel_core import points as metric_points

pytestmark = pytest.mark.broker

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_stats_count_sends_consumes_lag_and_trace(
    rocketmq_cluster: Any, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    ns = rocketmq_cluster.namesrv_addr
    topic = unique(f"Stats_{backend.name}")
    with backend.open("Admin", ns) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the route")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seen_in_hook: list[int] = []
    with backend.open("Producer", ns, group=unique("stats_p"), enable_trace=True) as producer:
        instrument(producer, meter_provider=provider)

        client = getattr(producer, "_obj", producer)  # (asyncio: the client, not its proxy)

        class StatsInHook(Hook):  # stats() from where the client runs its own code
            def after_send(self, ctx: Any) -> None:
                seen_in_hook.append(client.stats()["sends"]["ok"])

        producer.add_hook(StatsInHook())
        for i in range(10):
            producer.send(Message(topic, b"m%d" % i))
        producer.send_batch([Message(topic, b"b1"), Message(topic, b"b2")])
        with pytest.raises(Exception):  # noqa: B017 - any refusal counts as a failed send
            producer.send(Message(topic, b"x" * (4 * 1024 * 1024 + 1)))
        before_close = producer.stats()
    sends = before_close["sends"]
    assert (sends["ok"], sends["failed"], sends["messages"]) == (11, 1, 12)
    latency = sends["latency"]
    assert (
        latency["count"] == 11 and 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    )
    assert before_close["client_id"] == producer.client_id
    assert len(seen_in_hook) == 12  # every send's hook read the stats, none blocked
    # Closing flushed the trace: every record of the 12 messages went.
    assert producer.stats()["trace"] == {
        "recorded": 12,
        "sent": 12,
        "buffered": 0,
        "dropped": 0,
        "failed": 0,
    }

    failed_once: set[bytes] = set()
    seen: list[bytes] = []
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> None:
        body = messages[0].body
        with lock:
            seen.append(body)
            first = body == b"m3" and body not in failed_once
            failed_once.add(body)
        if first:
            raise ValueError("fails once")

    group = unique("stats_c")
    consumer = backend.make("PushConsumer", ns, handler, group=group, consume_from_where="first")
    consumer.subscribe(topic)
    instrument(consumer, meter_provider=provider)
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.consumer"), consumer:
        backend.wait_for(lambda: len(set(seen)) >= 12 and seen.count(b"m3") >= 2, WAIT, "all")

        def settled() -> Any:
            # The handler noted m3's second call before returning from it: its
            # count comes once the call ended (13 calls in all: 12 messages, one
            # of them twice). The redelivered m3 is on the retry topic, whose
            # queues the rows below leave out.
            stats = consumer.stats()
            rows = [q for q in stats["queues"] if q["topic"] == topic]
            done = len(rows) == 4 and all(q["lag"] == 0 and q["cached_messages"] == 0 for q in rows)
            calls = stats["consume"]["ok"] + stats["consume"]["failed"]
            return stats if done and calls >= 13 else None

        stats = backend.wait_for(settled, WAIT, "no lag left")
        live = metric_points(reader)  # the gauges read the running consumer's queues
        cached = {p.attributes["topic"]: p.value for p in live[CACHED_MESSAGES]}
        # (2 queues on each of the 2 brokers; the retry topic's are held too)
    consume = stats["consume"]
    assert consume["ok"] >= 12 and consume["failed"] == 1 and consume["dead_lettered"] == 0
    # Every call is timed by the driver, the one that raised too.
    assert consume["process_time"]["count"] >= 13 and consume["process_time"]["p50_ms"] >= 0
    assert consume["await_time"]["count"] >= 13
    assert "trace" not in stats
    # The same through OpenTelemetry, under the 5.x clients' names.
    got = metric_points(reader)
    assert sum(p.count for p in got["rocketmq_send_cost_time"]) == 12
    by_status = {p.attributes["invocation_status"]: p.count for p in got["rocketmq_process_time"]}
    assert by_status["failure"] == 1 and by_status["success"] >= 12
    assert sum(p.count for p in got["rocketmq_await_time"]) >= 13
    assert sum(p.count for p in got["rocketmq_delivery_latency"]) >= 13
    assert cached[topic] == 0  # all consumed by then
    # The handler's failure was logged with the fields of its place.
    [raised] = [r for r in caplog.records if "message handler raised" in r.getMessage()]
    assert raised.rocketmq_group == group and raised.rocketmq_topic == topic  # type: ignore[attr-defined]
    assert len(raised.rocketmq_msg_ids) == 1  # type: ignore[attr-defined]
