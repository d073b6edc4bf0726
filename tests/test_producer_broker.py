"""The producer against a real RocketMQ cluster, for each driver.

Every message sent is read back from the broker (by its offset message id, or
through the key index) and compared field by field.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import (
    InvalidTopicError,
    Message,
    MessageExt,
    MessageTooLargeError,
    RouteNotFoundError,
    SendStatus,
    TransactionState,
)

from .backends import Backend
from .cluster_fixture import admin_addr
from .messages import assert_same, sample

pytestmark = pytest.mark.broker

BIG_BODY = bytes(range(256)) * 40  # 10 KiB: compressed on the way


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: Any, backend: Backend) -> str:
    name = unique(f"ProducerT_{backend.name}")
    with backend.open("Admin", admin_addr(rocketmq_cluster)) as admin:
        created = admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    assert sorted(created) == sorted(rocketmq_cluster.brokers)
    return name


@pytest.fixture(scope="module")
def admin(rocketmq_cluster: Any, backend: Backend) -> Iterator[Any]:
    with backend.open("Admin", admin_addr(rocketmq_cluster)) as made:
        yield made


@pytest.fixture(scope="module")
def producer(rocketmq_cluster: Any, backend: Backend) -> Iterator[Any]:
    with backend.open("Producer", rocketmq_cluster.namesrv_addr, group=unique("pg")) as made:
        yield made


def test_sync_send_reads_back_byte_for_byte(producer: Any, admin: Any, topic: str) -> None:
    for i in range(5):
        msg = sample(topic, i)
        result = producer.send(msg)
        assert result.status is SendStatus.SEND_OK
        assert result.message_queue.topic == topic
        stored = admin.view_message(result.offset_msg_id)
        assert_same(stored, msg)
        assert stored.msg_id == result.msg_id == msg.properties["UNIQ_KEY"]
        assert stored.topic == topic
        assert stored.queue_id == result.message_queue.queue_id
        assert stored.queue_offset == result.queue_offset
        assert stored.born_timestamp > 0 and stored.store_timestamp >= stored.born_timestamp


def test_pipelined_sends_all_arrive(producer: Any, admin: Any, topic: str) -> None:
    messages = [sample(topic, i) for i in range(200)]
    futures = [producer.send_async(m, 30.0) for m in messages]
    results = [f.result(60) for f in futures]
    assert len({r.msg_id for r in results}) == 200
    for msg, result in list(zip(messages, results, strict=True))[::20]:
        assert_same(admin.view_message(result.offset_msg_id), msg)


def test_oneway_send_arrives(backend: Backend, producer: Any, admin: Any, topic: str) -> None:
    key = unique("oneway")
    msg = Message(topic, b"one way", keys=[key], properties={"x": "1"})
    producer.send_oneway(msg)
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 20, "the oneway message")
    assert len(found) == 1
    assert_same(found[0], msg)


def test_batch_members_arrive_with_their_own_ids(producer: Any, admin: Any, topic: str) -> None:
    batch = [sample(topic, i) for i in range(10)]
    result = producer.send_batch(batch)
    ids = result.msg_id.split(",")
    offsets = result.offset_msg_id.split(",")
    assert len(ids) == len(offsets) == 10 and len(set(ids)) == 10
    for msg, uid, offset_id in zip(batch, ids, offsets, strict=True):
        stored = admin.view_message(offset_id)
        assert stored.msg_id == uid
        assert_same(stored, msg)


def test_large_body_is_stored_compressed_and_read_back_whole(
    producer: Any, admin: Any, topic: str
) -> None:
    msg = Message(topic, BIG_BODY, tags="big")
    result = producer.send(msg)
    stored = admin.view_message(result.offset_msg_id)
    # The broker's record is smaller than the body: it holds the compressed bytes.
    assert stored.store_size < len(BIG_BODY)
    assert stored.body == BIG_BODY


def test_message_over_4_mib_is_refused_before_sending(producer: Any, topic: str) -> None:
    with pytest.raises(MessageTooLargeError, match="exceeds the maximum message size"):
        producer.send(Message(topic, b"x" * (4 * 1024 * 1024 + 1)))


def test_max_size_random_body_and_each_compress_type_are_received_equal(
    rocketmq_cluster: Any, backend: Backend, admin: Any
) -> None:
    """A random body of exactly max_message_size, which zlib would make larger than the
    broker accepts (MESSAGE_ILLEGAL), goes uncompressed; a compressible one goes
    compressed with each compress_type, Java 5.x's type bits (LZ4 0x100, ZSTD 0x200, ZLIB
    0x300) stored with it; a consumer gets every body back byte for byte."""
    ns = rocketmq_cluster.namesrv_addr
    topic = unique(f"Compress_{backend.name}")
    admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
    backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the topic's route")
    random_body = random.Random(11).randbytes(4 * 1024 * 1024)
    text_body = b"".join(b"line %d of a compressible body\n" % i for i in range(20000))
    sent: dict[str, tuple[bytes, int]] = {}
    with backend.open("Producer", ns, group=unique("cpg"), max_message_size=len(random_body)) as p:
        result = p.send(Message(topic, random_body, tags="random"))
        assert result.status is SendStatus.SEND_OK
        sent[result.msg_id] = (random_body, 0)
        stored = admin.view_message(result.offset_msg_id)
        assert stored.sys_flag & 0x701 == 0 and stored.store_size > len(random_body)
    for compress_type, bits in (("zlib", 0x300), ("lz4", 0x100), ("zstd", 0x200)):
        with backend.open("Producer", ns, group=unique("cpg"), compress_type=compress_type) as p:
            result = p.send(Message(topic, text_body, tags=compress_type))
            sent[result.msg_id] = (text_body, bits)
            stored = admin.view_message(result.offset_msg_id)
            assert stored.store_size < len(text_body) // 4  # the broker holds it compressed
            assert stored.sys_flag & 0x700 == bits and stored.body == text_body
    with backend.open("PullConsumer", ns, group=unique("cpc"), consume_from_where="first") as c:
        c.assign(c.queues_of(topic))
        got: dict[str, MessageExt] = {}
        deadline = time.monotonic() + 60
        while len(got) < len(sent) and time.monotonic() < deadline:
            got.update((m.msg_id, m) for m in c.poll(0.5))
    assert sorted(got) == sorted(sent)
    for msg_id, (body, bits) in sent.items():
        assert got[msg_id].body == body
        assert got[msg_id].sys_flag & 0x700 == bits


def test_invalid_topic_is_refused() -> None:
    with pytest.raises(InvalidTopicError):
        Message("bad topic!", b"x")


def test_ordered_sends_keep_one_key_in_one_queue_in_order(
    producer: Any, admin: Any, topic: str
) -> None:
    per_key: dict[str, list[Any]] = {}
    for i in range(30):
        key = f"order-{i % 3}"
        result = producer.send(Message(topic, b"%d" % i), sharding_key=key)
        per_key.setdefault(key, []).append(result)
    for results in per_key.values():
        assert len({r.message_queue for r in results}) == 1
        offsets = [r.queue_offset for r in results]
        assert offsets == sorted(offsets)
    # A selector chooses the queue itself.
    result = producer.send(Message(topic, b"sel"), selector=lambda qs, m, arg: qs[arg], arg=2)
    assert result.message_queue.queue_id == 2


def test_delay_level_message_arrives_no_earlier_than_asked(
    backend: Backend, producer: Any, admin: Any, topic: str
) -> None:
    key = unique("delay")
    # The test cluster's level 2 waits 2 s (messageDelayLevel = 1s 2s 3s ...).
    msg = Message(topic, b"later", keys=[key], delay_level=2)
    producer.send(msg)
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 30, "the delayed message")
    stored = found[0]
    assert stored.body == b"later"
    assert stored.store_timestamp - stored.born_timestamp >= 2000


def test_timer_message_arrives_no_earlier_than_asked(
    backend: Backend, producer: Any, admin: Any, topic: str, rocketmq_cluster: Any
) -> None:
    if str(rocketmq_cluster.version).startswith("4."):
        pytest.fail("timer messages need RocketMQ 5; run this module on a 5.x cluster")
    key = unique("timer")
    deliver_at = int(time.time() * 1000) + 3000
    producer.send(Message(topic, b"at a time", keys=[key], deliver_at=deliver_at))
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 30, "the timer message")
    assert found[0].store_timestamp >= deliver_at - 50  # the broker's timer ticks are coarse


def test_unknown_topic_without_autocreate_or_with_it(producer: Any, admin: Any) -> None:
    # The test brokers auto-create topics (autoCreateTopicEnable), as Java clients expect.
    name = unique("AutoT")
    result = producer.send(Message(name, b"auto"))
    assert result.status is SendStatus.SEND_OK
    assert admin.view_message(result.offset_msg_id).body == b"auto"


def test_route_of_missing_topic_is_a_clear_error(admin: Any) -> None:
    with pytest.raises(RouteNotFoundError, match="no route for topic"):
        admin.topic_route(unique("Missing"))


def test_admin_offsets_and_search(backend: Backend, producer: Any, admin: Any, topic: str) -> None:
    before = int(time.time() * 1000)
    result = producer.send(Message(topic, b"offsets"))
    mq = result.message_queue
    # The broker counts a message in its queue a moment after acknowledging it.
    backend.wait_for(lambda: admin.max_offset(mq) >= result.queue_offset + 1, 10, "max offset")
    assert admin.min_offset(mq) == 0
    assert admin.search_offset(mq, before - 60_000) <= result.queue_offset
    offsets = admin.topic_offsets(topic)
    assert len(offsets) == 8
    key = unique("q")
    producer.send(Message(topic, b"by key", keys=[key]))
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 20, "the indexed message")
    assert found[0].body == b"by key"
    by_uniq = admin.view_message(found[0].msg_id, topic)
    assert by_uniq.body == b"by key"


# ------------------------------------------------------------------ transactions


@pytest.fixture(scope="module")
def checks() -> dict[str, TransactionState]:
    """What the checker answers, by message key; what it was asked is recorded too."""
    return {}


@pytest.fixture(scope="module")
def asked() -> list[str]:
    return []


@pytest.fixture(scope="module")
def tx_producer(
    rocketmq_cluster: Any,
    backend: Backend,
    checks: dict[str, TransactionState],
    asked: list[str],
) -> Iterator[Any]:
    def checker(msg: MessageExt) -> TransactionState:
        key = msg.keys[0]
        asked.append(key)
        return checks.get(key, TransactionState.UNKNOWN)

    with backend.open(
        "TransactionProducer", rocketmq_cluster.namesrv_addr, checker, group=unique("txg")
    ) as made:
        yield made


def _visible(admin: Any, topic: str, key: str) -> list[MessageExt]:
    return [m for m in admin.query_messages(topic, key) if m.topic == topic]


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
    rocketmq_cluster: Any,
    backend: Backend,
    tx_producer: Any,
    admin: Any,
    topic: str,
    checks: dict[str, TransactionState],
    asked: list[str],
    local: TransactionState,
    check: TransactionState | None,
    visible: bool,
) -> None:
    key = unique("tx")
    if check is not None:
        checks[key] = check
    seen_args = []

    def execute_local(msg: Message, arg: Any) -> TransactionState:
        seen_args.append(arg)
        return local

    msg = Message(topic, b"tx body", keys=[key])
    result, state = tx_producer.send_in_transaction(msg, execute_local, "the-arg")
    assert state is local and seen_args == ["the-arg"]
    assert result.status is SendStatus.SEND_OK
    if check is not None:
        try:
            backend.wait_for(lambda: key in asked, 60, "the broker's check-back")
        except AssertionError as exc:
            # What the servers said (through the proxy the first check-back of a new
            # producer group once took longer than this; see the proxy's log).
            servers = getattr(rocketmq_cluster, "cluster", rocketmq_cluster)
            logs = servers.logs() if hasattr(servers, "logs") else "(no server logs here)"
            raise AssertionError(f"{exc}; asked so far: {asked}\n{logs}") from None
    if visible:
        found = backend.wait_for(lambda: _visible(admin, topic, key), 30, "the committed message")
        assert found[0].body == b"tx body"
    else:
        backend.sleep(3)
        assert _visible(admin, topic, key) == []


def test_check_back_commits_store_one_message_each(
    rocketmq_cluster: Any, backend: Backend, admin: Any
) -> None:
    """N transactions committed on their check-back store N messages, no more.

    The launcher's broker checks every 1 s; each check answered COMMIT stores a
    message, so a half message checked again before the broker recorded the first
    answer is stored twice. Several more intervals pass before counting.
    """
    name = unique(f"TxOnce_{backend.name}")
    admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    count = 6
    keys = [unique("once") for _ in range(count)]
    asked: list[str] = []

    def checker(msg: MessageExt) -> TransactionState:
        asked.append(msg.keys[0])
        return TransactionState.COMMIT

    with backend.open(
        "TransactionProducer", rocketmq_cluster.namesrv_addr, checker, group=unique("txonce")
    ) as producer:
        for key in keys:
            msg = Message(name, b"once", keys=[key])
            _, state = producer.send_in_transaction(msg, lambda m, a: TransactionState.UNKNOWN)
            assert state is TransactionState.UNKNOWN
        backend.wait_for(lambda: set(keys) <= set(asked), 60, "every check-back")
        backend.sleep(5)  # five more check intervals, still answered
        stored = sum(o.max_offset - o.min_offset for o in admin.topic_offsets(name))
    assert stored == count, f"{count} transactions stored {stored} ({len(asked)} checks)"
    assert sorted(asked) == sorted(keys)


def test_request_reply_round_trip(rocketmq_cluster: Any, backend: Backend, topic: str) -> None:
    """A requester and a replier (the replier reads the request by key, as a consumer would)."""
    ns = rocketmq_cluster.namesrv_addr
    with (
        backend.open("Producer", ns, group=unique("req")) as requester,
        backend.open("Producer", ns, group=unique("rep")) as replier,
        backend.open("Admin", admin_addr(rocketmq_cluster)) as admin,
    ):
        key = unique("rr")
        pending = backend.background(requester.request, Message(topic, b"ping", keys=[key]), 20.0)
        request = backend.wait_for(lambda: _visible(admin, topic, key), 20, "the request message")[
            0
        ]
        replier.send_reply(request, b"pong:" + request.body)
        reply = pending.result(30)
        assert reply.body == b"pong:ping"
        assert reply.properties["CORRELATION_ID"] == request.properties["CORRELATION_ID"]
