"""The pull consumer against a real cluster, for each driver."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt

from .backends import Backend
from .cluster_fixture import admin_addr

pytestmark = pytest.mark.broker

COUNT = 60
#: How long a test waits for an assigned queue to deliver: more than one pull
#: timeout (30 s), as one pull lost to a stalled broker delays it by that much.
DELIVERY = 45.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def filled_topic(rocketmq_cluster: Any, backend: Backend) -> tuple[str, list[str]]:
    """A topic with 2 queues per broker holding COUNT messages; their bodies."""
    topic = unique(f"PullT_{backend.name}")
    with backend.open("Admin", admin_addr(rocketmq_cluster)) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the topic's route")
    bodies = [f"pull-{i}" for i in range(COUNT)]
    with backend.open("Producer", rocketmq_cluster.namesrv_addr, group=unique("ppg")) as producer:
        for body in bodies:
            producer.send(Message(topic, body.encode()))
    return topic, bodies


def poll_until(backend: Backend, consumer: Any, count: int, timeout: float) -> list[MessageExt]:
    got: list[MessageExt] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(0.5)
    return got


def test_subscribe_and_poll_everything_once(
    rocketmq_cluster: Any, backend: Backend, filled_topic: tuple[str, list[str]]
) -> None:
    topic, bodies = filled_topic
    with backend.open(
        "PullConsumer",
        rocketmq_cluster.namesrv_addr,
        group=unique("pull"),
        consume_from_where="first",
    ) as consumer:
        consumer.subscribe(topic)
        got = poll_until(backend, consumer, COUNT, 60)
        assert sorted(m.body.decode() for m in got) == sorted(bodies)
        assert all(m.topic == topic for m in got)
        assert len(consumer.assignment()) == 4
        # Offsets within each queue come in order.
        for mq in consumer.assignment():
            offsets = [
                m.queue_offset
                for m in got
                if m.queue_id == mq.queue_id and m.broker_name == mq.broker_name
            ]
            assert offsets == sorted(offsets)
        assert consumer.poll(0.5) == []


def test_assign_seek_commit_and_resume_after_restart(
    rocketmq_cluster: Any, backend: Backend, filled_topic: tuple[str, list[str]]
) -> None:
    topic, _ = filled_topic
    ns = rocketmq_cluster.namesrv_addr
    group = unique("assign")
    with backend.open(
        "PullConsumer", ns, group=group, auto_commit=False, consume_from_where="first"
    ) as consumer:
        queues = consumer.queues_of(topic)
        assert len(queues) == 4
        mq = queues[0]
        consumer.assign([mq])
        first = poll_until(backend, consumer, 1, DELIVERY)
        assert first and all(m.queue_id == mq.queue_id for m in first)
        total = len(first) + len(poll_until(backend, consumer, 100, 2))
        # Seek back to offset 2: the same messages again, from there.
        consumer.seek(mq, 2)
        again = poll_until(backend, consumer, total - 2, DELIVERY)
        assert [m.queue_offset for m in again][: total - 2] == list(range(2, total))
        consumer.commit({mq: 5})
        assert consumer.committed(mq) == 5
    with backend.open("PullConsumer", ns, group=group, consume_from_where="first") as consumer:
        consumer.assign([mq])
        resumed = poll_until(backend, consumer, 1, DELIVERY)
        assert resumed[0].queue_offset == 5


def test_pause_and_resume_a_queue(
    rocketmq_cluster: Any, backend: Backend, filled_topic: tuple[str, list[str]]
) -> None:
    topic, _ = filled_topic
    with backend.open(
        "PullConsumer",
        rocketmq_cluster.namesrv_addr,
        group=unique("pause"),
        consume_from_where="first",
    ) as consumer:
        queues = consumer.queues_of(topic)
        consumer.assign(queues)
        paused = queues[0]
        consumer.pause([paused])
        got = poll_until(backend, consumer, COUNT, 8)
        assert got
        assert not any(
            m.queue_id == paused.queue_id and m.broker_name == paused.broker_name for m in got
        )
        consumer.resume([paused])
        later = poll_until(backend, consumer, 1, DELIVERY)
        assert later and all(
            m.queue_id == paused.queue_id and m.broker_name == paused.broker_name for m in later
        )


def test_offset_for_timestamp_and_seek_to_end(
    rocketmq_cluster: Any, backend: Backend, filled_topic: tuple[str, list[str]]
) -> None:
    topic, _ = filled_topic
    with backend.open(
        "PullConsumer",
        rocketmq_cluster.namesrv_addr,
        group=unique("ts"),
        consume_from_where="first",
    ) as consumer:
        mq = consumer.queues_of(topic)[0]
        consumer.assign([mq])
        assert consumer.offset_for_timestamp(mq, 0) == 0
        consumer.seek_to_end(mq)
        assert poll_until(backend, consumer, 1, 3) == []


def test_a_failed_upkeep_is_logged_and_restarted(
    rocketmq_cluster: Any,
    backend: Backend,
    filled_topic: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pull consumer's upkeep (rebalance, announcements, commits) fails once: it
    is logged and started again, and the consumer goes on to get every message."""
    from rocketmq_proto.flows.consumer.lite_pull import PullConsumerCore
    from rocketmq_proto.flows.effects import Flow

    topic, bodies = filled_topic
    original = PullConsumerCore.maintenance_flow
    calls: list[int] = []

    def fails_once(self: PullConsumerCore) -> Flow[None]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("an injected upkeep failure")
        return (yield from original(self))

    monkeypatch.setattr(PullConsumerCore, "maintenance_flow", fails_once)
    with (
        caplog.at_level("ERROR"),
        backend.open(
            "PullConsumer",
            rocketmq_cluster.namesrv_addr,
            group=unique("supervised"),
            consume_from_where="first",
        ) as consumer,
    ):
        consumer.subscribe(topic)
        got = poll_until(backend, consumer, COUNT, DELIVERY)
    assert sorted(m.body.decode() for m in got) == sorted(bodies)
    assert len(calls) >= 2
    failures = [r for r in caplog.records if "pull consumer upkeep failed" in r.getMessage()]
    assert failures and isinstance(failures[0].exc_info[1], RuntimeError)  # type: ignore[index]
