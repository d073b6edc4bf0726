"""A smoke run of the consumers against the 4.9 broker line, for each driver.

On the shared 4.x cluster (``rocketmq_v4_cluster``, short delay levels): a push
consumer with a tag filter and a retry, an orderly push consumer, a pull
consumer, and a reset of an offline group's offsets (a 4.x broker answers
CONSUMER_NOT_ONLINE, so they are written queue by queue). The full consumer
suite runs on the default 5.x cluster (``tests/test_consumer_broker.py``).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import ConsumeResult, Message, MessageExt, MessageQueue

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]
from .test_consumer_broker import Recorder, queue_ends, send_all, unique

pytestmark = pytest.mark.broker

WAIT = 120.0
CLIENT: dict[str, Any] = {"request_timeout": 20.0}


@pytest.fixture(scope="module")
def ns(rocketmq_v4_cluster: launcher.LocalCluster) -> str:
    return str(rocketmq_v4_cluster.namesrv_addr)


@pytest.fixture(scope="module")
def admin(ns: str, backend: Backend) -> Iterator[Any]:
    with backend.open("Admin", ns, **CLIENT) as made:
        yield made


@pytest.fixture(scope="module")
def producer(ns: str, backend: Backend) -> Iterator[Any]:
    with backend.open("Producer", ns, group=unique("v4cp"), send_timeout=20.0, **CLIENT) as made:
        yield made


def new_topic(backend: Backend, admin: Any, prefix: str, queues: int = 2) -> str:
    topic = unique(f"{prefix}_{backend.name}")
    admin.create_topic(topic, read_queue_nums=queues, write_queue_nums=queues)
    backend.wait_for(lambda: len(queue_ends(admin, topic)) == 2 * queues, WAIT, "the route")
    return topic


def start_consumer(backend: Backend, ns: str, handler: Any, group: str, topic: str,
                   expression: str = "*", **options: Any) -> Any:  # fmt: skip
    consumer = backend.make("PushConsumer", ns, handler, group=group, **{**CLIENT, **options})
    consumer.subscribe(topic, expression)
    consumer.start()
    return consumer


def test_push_consumer_filters_tags_retries_and_resets_offline_offsets(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "V4Push")
    group = unique("v4push")
    recorder = Recorder(backend)
    early = [Message(topic, b"early-%d" % i, tags="a" if i % 2 else "b") for i in range(20)]
    send_all(backend, producer, early)
    backend.sleep(1.5)
    boundary = int(time.time() * 1000)
    backend.sleep(1.5)
    late = [Message(topic, b"late-%d" % i, tags="a" if i % 2 else "b") for i in range(20)]
    send_all(backend, producer, late)
    want = {m.body.decode() for m in early + late if m.tags == "a"}

    def result(msg: MessageExt) -> Any:  # early-1 fails once, then succeeds
        return msg.body != b"early-1" or msg.reconsume_times > 0

    consumer = start_consumer(
        backend, ns, recorder.handler(result=result), group, topic, "a",
        consume_from_where="first", persist_consumer_offset_interval=1.0,
    )  # fmt: skip
    try:
        backend.wait_for(
            lambda: (
                recorder.distinct() >= want
                and any(d.reconsume_times == 1 for d in recorder.snapshot())
            ),
            WAIT,
            "every 'a' message and the retry",
        )
        ends = queue_ends(admin, topic)
        backend.wait_for(
            lambda: all(admin.consumer_offset(group, mq) == end for mq, end in ends.items()),
            WAIT,
            "the offsets to be committed",
        )
    finally:
        consumer.close()
    assert recorder.distinct() == want  # no 'b' message reached the handler
    retried = [d for d in recorder.snapshot() if d.body == "early-1"]
    assert [d.reconsume_times for d in retried] == [0, 1]
    assert all(d.topic == topic for d in retried)

    # The group is offline now: the brokers answer CONSUMER_NOT_ONLINE and the
    # offsets are written directly.
    # (A 4.x broker's search may answer the offset of the last message stored
    # before the time, so the replay may start one message early.)
    first_late = {mq: admin.search_offset(mq, boundary) for mq in ends}
    assert len(late) <= sum(end - first_late[mq] for mq, end in ends.items()) <= len(late) + 4
    assert admin.reset_offsets_by_time(group, topic, boundary) == first_late
    assert {mq: admin.consumer_offset(group, mq) for mq in ends} == first_late
    stored_a = {  # first deliveries only: a retried one comes from the retry queue
        (d.queue, d.offset): d.body for d in recorder.snapshot() if d.reconsume_times == 0
    }
    replay = {body for (mq, offset), body in stored_a.items() if offset >= first_late[mq]}
    assert replay >= {m.body.decode() for m in late if m.tags == "a"}
    before = len(recorder.snapshot())
    consumer = start_consumer(backend, ns, recorder.handler(), group, topic, "a")
    try:
        backend.wait_for(
            lambda: {d.body for d in recorder.snapshot()[before:]} >= replay,
            WAIT,
            "the 'a' messages from the reset point on",
        )
        backend.sleep(1.0)
    finally:
        consumer.close()
    again = collections.Counter(d.body for d in recorder.snapshot()[before:])
    assert set(again) == replay and max(again.values()) == 1, again


def test_orderly_and_pull_consumers(backend: Backend, ns: str, admin: Any, producer: Any) -> None:
    topic = new_topic(backend, admin, "V4Order")
    keys = [f"k{i}" for i in range(4)]
    messages = [Message(topic, f"{key}:{seq}".encode()) for seq in range(10) for key in keys]
    sent = send_all(
        backend, producer, messages, window=1, sharding_keys=[m.body.decode()[:2] for m in messages]
    )
    lock = threading.Lock()
    seen: dict[str, list[int]] = collections.defaultdict(list)

    def handle(msgs: list[MessageExt]) -> ConsumeResult:
        with lock:
            for m in msgs:
                key, seq = m.body.decode().split(":")
                seen[key].append(int(seq))
        return ConsumeResult.SUCCESS

    consumer = start_consumer(
        backend, ns, handle, unique("v4ord"), topic, orderly=True, consume_from_where="first"
    )
    try:
        backend.wait_for(lambda: sum(map(len, seen.values())) >= 40, WAIT, "every message")
    finally:
        consumer.close()
    assert {k: sorted(set(v)) for k, v in seen.items()} == {k: list(range(10)) for k in keys}
    for key, seqs in seen.items():  # in order (a repeat may only restart from earlier)
        firsts = list(dict.fromkeys(seqs))
        assert firsts == list(range(10)), (key, seqs)

    by_queue = collections.defaultdict(list)
    for result in sent:
        by_queue[result.message_queue].append(result.msg_id)
    with backend.open(
        "PullConsumer", ns, group=unique("v4pull"), consume_from_where="first", **CLIENT
    ) as pull:
        pull.assign(sorted(by_queue, key=lambda q: (q.broker_name, q.queue_id)))
        got: dict[MessageQueue, list[str]] = collections.defaultdict(list)
        deadline = time.monotonic() + WAIT
        while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
            for m in pull.poll(1.0):
                got[MessageQueue(m.topic, m.broker_name, m.queue_id)].append(m.msg_id)
    assert dict(got) == dict(by_queue)
