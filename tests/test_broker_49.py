"""A smoke run of the producer against the 4.9 broker line, for each driver.

The module runs on the shared 4.x cluster (name server and brokers of that release,
started by ``scripts/cluster.py``) with short delay levels (level n waits n s), and
checks the main producer paths there: send and read back, batch, ordered sends,
delay levels, transactions with check-back, and topic creation by ``Admin``; and
that a timer message (4.x brokers have no timers) is refused before it is sent,
or sent with the nearest delay level when the producer asks for that fallback.

The release is 4.9.7: the newest 4.x whose name server and broker jars Maven
Central serves (4.9.8's ``rocketmq-namesrv``/``rocketmq-broker`` jars are missing
there, so Maven cannot resolve it). ``ROCKETMQ_V4_VERSION`` picks another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import (
    Message,
    MessageExt,
    MessageQueue,
    SendStatus,
    TimerUnsupportedError,
    TransactionState,
)

from .backends import Backend
from .cluster_fixture import V4_VERSION, launcher  # type: ignore[attr-defined]
from .messages import assert_same, sample

pytestmark = pytest.mark.broker

VERSION = V4_VERSION
# Generous for a loaded 2-core machine.
LIMITS = {"send_timeout": 20.0, "request_timeout": 20.0}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def cluster(rocketmq_v4_cluster: launcher.LocalCluster) -> launcher.LocalCluster:
    """The shared 4.x cluster (see tests/cluster_fixture.py), with short delay levels."""
    return rocketmq_v4_cluster


@pytest.fixture(scope="module")
def admin(cluster: launcher.LocalCluster, backend: Backend) -> Iterator[Any]:
    with backend.open("Admin", cluster.namesrv_addr, request_timeout=20.0) as made:
        yield made


@pytest.fixture(scope="module")
def topic(cluster: launcher.LocalCluster, backend: Backend, admin: Any) -> str:
    name = unique(f"V4T_{backend.name}")
    created = admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    assert sorted(created) == sorted(cluster.brokers)
    return name


@pytest.fixture(scope="module")
def producer(cluster: launcher.LocalCluster, backend: Backend) -> Iterator[Any]:
    with backend.open("Producer", cluster.namesrv_addr, group=unique("v4pg"), **LIMITS) as made:
        yield made


def test_the_cluster_is_the_4_line(cluster: launcher.LocalCluster) -> None:
    # A broker just started may not answer its first runtime-info request in time:
    # ask until it does (the answer itself must name the 4.x release).
    for addr in cluster.brokers.values():
        version = None
        deadline = time.monotonic() + 60
        while version is None and time.monotonic() < deadline:
            version = launcher._query_broker_version(addr, timeout=20.0)
        assert version == VERSION


def test_admin_creates_topics_on_every_broker(admin: Any, cluster: launcher.LocalCluster) -> None:
    name = unique("V4Created")
    assert sorted(admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)) == sorted(
        cluster.brokers
    )
    route = admin.topic_route(name)
    assert sorted(b.broker_name for b in route.broker_datas) == sorted(cluster.brokers)
    assert all(q.write_queue_nums == 2 for q in route.queue_datas)
    assert len(admin.topic_offsets(name)) == 4


def test_send_reads_back_byte_for_byte(producer: Any, admin: Any, topic: str) -> None:
    for i in range(5):
        msg = sample(topic, i)
        result = producer.send(msg)
        assert result.status is SendStatus.SEND_OK
        stored = admin.view_message(result.offset_msg_id)
        assert_same(stored, msg)
        assert stored.msg_id == result.msg_id == msg.properties["UNIQ_KEY"]
        assert stored.queue_offset == result.queue_offset
    big = Message(topic, bytes(range(256)) * 40)  # compressed on the way
    stored = admin.view_message(producer.send(big).offset_msg_id)
    assert stored.body == big.body and stored.store_size < len(big.body)
    futures = [producer.send_async(sample(topic, i), 30.0) for i in range(40)]
    assert len({f.result(60).msg_id for f in futures}) == 40


def test_batch(producer: Any, admin: Any, topic: str) -> None:
    batch = [sample(topic, i) for i in range(8)]
    result = producer.send_batch(batch)
    ids = result.msg_id.split(",")
    offsets = result.offset_msg_id.split(",")
    assert len(ids) == len(offsets) == 8 and len(set(ids)) == 8
    for msg, uid, offset_id in zip(batch, ids, offsets, strict=True):
        stored = admin.view_message(offset_id)
        assert stored.msg_id == uid
        assert_same(stored, msg)


def test_ordered_sends_keep_one_key_in_one_queue_in_order(
    producer: Any, admin: Any, topic: str
) -> None:
    per_key: dict[str, list[Any]] = {}
    for i in range(24):
        key = f"order-{i % 3}"
        result = producer.send(Message(topic, b"%d" % i), sharding_key=key)
        per_key.setdefault(key, []).append(result)
    for results in per_key.values():
        assert len({r.message_queue for r in results}) == 1
        offsets = [r.queue_offset for r in results]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    result = producer.send(Message(topic, b"sel"), selector=lambda qs, m, arg: qs[arg], arg=3)
    assert result.message_queue.queue_id == 3
    assert admin.view_message(result.offset_msg_id).body == b"sel"


def test_delay_level(backend: Backend, producer: Any, admin: Any, topic: str) -> None:
    key = unique("delay")
    producer.send(Message(topic, b"later", keys=[key], delay_level=2))  # 2 s here
    found = backend.wait_for(
        lambda: [m for m in admin.query_messages(topic, key) if m.topic == topic],
        40,
        "the delayed message",
    )
    stored = found[0]
    assert stored.body == b"later"
    assert stored.store_timestamp - stored.born_timestamp >= 2000


def test_timer_message_is_refused_before_it_is_sent(
    cluster: launcher.LocalCluster, backend: Backend, admin: Any
) -> None:
    name = unique(f"V4Timer_{backend.name}")
    admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
    # A new producer has had no answer from the brokers: it asks them first.
    with backend.open("Producer", cluster.namesrv_addr, group=unique("v4tg"), **LIMITS) as made:
        deliver_at = int(time.time() * 1000) + 5000
        with pytest.raises(TimerUnsupportedError, match=r"4\.9\.7.*timer_fallback"):
            made.send(Message(name, b"at a time", deliver_at=deliver_at))
        made.send(Message(name, b"now"))
        # Each broker is refused, its version asked once or read from a send's answer.
        for broker in sorted(cluster.brokers):
            queue = MessageQueue(name, broker, 0)
            with pytest.raises(TimerUnsupportedError, match=cluster.brokers[broker]):
                made.send(Message(name, b"at a time", deliver_at=deliver_at), queue=queue)
    # Only the plain message was stored. (A 4.x broker counts a stored message in a
    # queue's offsets once its dispatch thread got to it: under load, a moment later.)
    stored = backend.wait_for(
        lambda: sum(o.max_offset for o in admin.topic_offsets(name)),
        10,
        "the plain message in the topic's offsets",
    )
    assert stored == 1


def test_timer_fallback_sends_the_nearest_of_the_brokers_delay_levels(
    cluster: launcher.LocalCluster, backend: Backend, admin: Any, topic: str
) -> None:
    key = unique("timerlevel")
    with backend.open(
        "Producer",
        cluster.namesrv_addr,
        group=unique("v4fg"),
        timer_fallback="delay_level",
        **LIMITS,
    ) as made:
        made.send(Message(topic, b"warm-up"))  # the route, so the timer goes at once
        # 3.4 s from now: level 3 of this cluster's table (1s 2s 3s ...); the default
        # table's nearest (5 s, level 2) would wait 2 s here.
        made.send(
            Message(topic, b"about then", keys=[key], deliver_at=int(time.time() * 1000) + 3400)
        )
    found = backend.wait_for(
        lambda: [m for m in admin.query_messages(topic, key) if m.topic == topic],
        40,
        "the delayed message",
    )
    stored = found[0]
    assert stored.body == b"about then"
    assert "TIMER_DELIVER_MS" not in stored.properties
    assert stored.store_timestamp - stored.born_timestamp >= 3000


@pytest.mark.parametrize(
    ("local", "check", "visible"),
    [
        (TransactionState.COMMIT, None, True),
        (TransactionState.ROLLBACK, None, False),
        (TransactionState.UNKNOWN, TransactionState.COMMIT, True),
        (TransactionState.UNKNOWN, TransactionState.ROLLBACK, False),
    ],
    ids=["commit", "rollback", "checkback-commit", "checkback-rollback"],
)
def test_transactions(
    cluster: launcher.LocalCluster,
    backend: Backend,
    admin: Any,
    topic: str,
    local: TransactionState,
    check: TransactionState | None,
    visible: bool,
) -> None:
    key = unique("tx")
    asked: list[str] = []

    def checker(msg: MessageExt) -> TransactionState:
        asked.append(msg.keys[0])
        return check or TransactionState.UNKNOWN

    with backend.open(
        "TransactionProducer", cluster.namesrv_addr, checker, group=unique("v4tx"), **LIMITS
    ) as tx_producer:
        msg = Message(topic, b"tx body", keys=[key])
        result, state = tx_producer.send_in_transaction(msg, lambda m, arg: local, None)
        assert state is local and result.status is SendStatus.SEND_OK
        if check is not None:
            backend.wait_for(lambda: key in asked, 90, "the broker's check-back")

        def visible_now() -> list[MessageExt]:
            return [m for m in admin.query_messages(topic, key) if m.topic == topic]

        if visible:
            found = backend.wait_for(visible_now, 30, "the committed message")
            assert found[0].body == b"tx body"
        else:
            backend.sleep(3)
            assert visible_now() == []
