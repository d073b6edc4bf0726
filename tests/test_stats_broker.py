"""``stats()`` against the real cluster, in each driver: a producer's sends (ok,
failed, latency), a push consumer's handler calls (ok, failed and retried, process
and await times), its queues' cached messages and lag, and the trace counters."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt

from .backends import Backend

pytestmark = pytest.mark.broker

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def test_stats_count_sends_consumes_lag_and_trace(rocketmq_cluster: Any, backend: Backend) -> None:
    ns = rocketmq_cluster.namesrv_addr
    topic = unique(f"Stats_{backend.name}")
    with backend.open("Admin", ns) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the route")
    with backend.open("Producer", ns, group=unique("stats_p"), enable_trace=True) as producer:
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

    consumer = backend.make(
        "PushConsumer", ns, handler, group=unique("stats_c"), consume_from_where="first"
    )
    consumer.subscribe(topic)
    with consumer:
        backend.wait_for(lambda: len(set(seen)) >= 12 and seen.count(b"m3") >= 2, WAIT, "all")

        def settled() -> Any:
            stats = consumer.stats()
            rows = [q for q in stats["queues"] if q["topic"] == topic]
            done = len(rows) == 4 and all(q["lag"] == 0 and q["cached_messages"] == 0 for q in rows)
            return stats if done else None

        stats = backend.wait_for(settled, WAIT, "no lag left")
        # (2 queues on each of the 2 brokers; the retry topic's are held too)
    consume = stats["consume"]
    assert consume["ok"] >= 12 and consume["failed"] == 1 and consume["dead_lettered"] == 0
    # Timed: the calls that returned (the one that raised is counted in failed only).
    assert consume["process_time"]["count"] >= 12 and consume["process_time"]["p50_ms"] >= 0
    assert consume["await_time"]["count"] >= 13
    assert "trace" not in stats
