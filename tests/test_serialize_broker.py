"""A cluster whose servers answer with the ROCKETMQ binary header, for each driver.

The name server and brokers run with ``rocketmq.serialize.type=ROCKETMQ``: every
response (and every request they send, such as a transaction check-back) carries the
binary header instead of JSON. The client must behave exactly as with a JSON
cluster: a representative subset of the producer suite runs here, once with the
client sending JSON headers (the default) and once sending ROCKETMQ headers itself
(``serialize_type="ROCKETMQ"``).
"""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt, SendStatus, TransactionState

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]
from .messages import assert_same, sample

pytestmark = pytest.mark.broker

# Generous for a loaded 2-core machine.
LIMITS = {"send_timeout": 20.0, "request_timeout": 20.0}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def cluster(rocketmq_headers_cluster: launcher.LocalCluster) -> launcher.LocalCluster:
    """The shared ROCKETMQ-header cluster (see tests/cluster_fixture.py)."""
    return rocketmq_headers_cluster


@pytest.fixture(scope="module", params=["JSON", "ROCKETMQ"], ids=["client-json", "client-rocketmq"])
def client_type(request: pytest.FixtureRequest) -> str:
    """The header type the client sends (the servers always answer ROCKETMQ)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def admin(cluster: launcher.LocalCluster, backend: Backend, client_type: str) -> Iterator[Any]:
    with backend.open(
        "Admin", cluster.namesrv_addr, serialize_type=client_type, request_timeout=20.0
    ) as made:
        yield made


@pytest.fixture(scope="module")
def topic(cluster: launcher.LocalCluster, backend: Backend, admin: Any, client_type: str) -> str:
    name = unique(f"SerT_{backend.name}_{client_type}")
    created = admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    assert sorted(created) == sorted(cluster.brokers)
    return name


@pytest.fixture(scope="module")
def producer(cluster: launcher.LocalCluster, backend: Backend, client_type: str) -> Iterator[Any]:
    with backend.open(
        "Producer",
        cluster.namesrv_addr,
        group=unique("serpg"),
        serialize_type=client_type,
        **LIMITS,
    ) as made:
        yield made


def _header_type_of_answer(addr: str, code: int) -> int:
    """Send a JSON-header request; return the header type byte of the answer (1: ROCKETMQ)."""
    header = json.dumps(
        {"code": code, "language": "JAVA", "version": 479, "opaque": 7, "flag": 0, "extFields": {}}
    ).encode()
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">ii", 4 + len(header), len(header)) + header)
        head = b""
        while len(head) < 8:
            chunk = sock.recv(8 - len(head))
            assert chunk, "the server closed the connection"
            head += chunk
    return head[4]


def test_servers_answer_with_the_rocketmq_header(cluster: launcher.LocalCluster) -> None:
    assert _header_type_of_answer(cluster.namesrv_addr, 106) == 1  # GET_BROKER_CLUSTER_INFO
    for addr in cluster.brokers.values():
        assert _header_type_of_answer(addr, 28) == 1  # GET_BROKER_RUNTIME_INFO


def test_sync_send_reads_back_byte_for_byte(producer: Any, admin: Any, topic: str) -> None:
    for i in range(5):
        msg = sample(topic, i)
        result = producer.send(msg)
        assert result.status is SendStatus.SEND_OK
        stored = admin.view_message(result.offset_msg_id)
        assert_same(stored, msg)
        assert stored.msg_id == result.msg_id == msg.properties["UNIQ_KEY"]
        assert stored.topic == topic
        assert stored.queue_id == result.message_queue.queue_id
        assert stored.queue_offset == result.queue_offset
    big = Message(topic, bytes(range(256)) * 40, tags="big")  # compressed on the way
    result = producer.send(big)
    stored = admin.view_message(result.offset_msg_id)
    assert stored.body == big.body and stored.store_size < len(big.body)


def test_pipelined_sends(producer: Any, admin: Any, topic: str) -> None:
    messages = [sample(topic, i) for i in range(50)]
    futures = [producer.send_async(m, 30.0) for m in messages]
    results = [f.result(60) for f in futures]
    assert len({r.msg_id for r in results}) == 50
    for msg, result in list(zip(messages, results, strict=True))[::10]:
        assert_same(admin.view_message(result.offset_msg_id), msg)


def test_batch(producer: Any, admin: Any, topic: str) -> None:
    batch = [sample(topic, i) for i in range(8)]
    result = producer.send_batch(batch)
    ids = result.msg_id.split(",")
    offsets = result.offset_msg_id.split(",")
    assert len(ids) == len(offsets) == 8
    for msg, uid, offset_id in zip(batch, ids, offsets, strict=True):
        stored = admin.view_message(offset_id)
        assert stored.msg_id == uid
        assert_same(stored, msg)


def test_oneway(backend: Backend, producer: Any, admin: Any, topic: str) -> None:
    key = unique("oneway")
    msg = Message(topic, b"one way", keys=[key], properties={"x": "1"})
    producer.send_oneway(msg)
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 30, "the oneway message")
    assert len(found) == 1
    assert_same(found[0], msg)


def test_admin_offsets_and_lookups(backend: Backend, producer: Any, admin: Any, topic: str) -> None:
    before = int(time.time() * 1000)
    result = producer.send(Message(topic, b"offsets"))
    mq = result.message_queue
    # The broker answers a send once the message is stored; its consume queue (which
    # the max offset counts) is built just after, so a loaded broker may lag a moment.
    backend.wait_for(
        lambda: admin.max_offset(mq) >= result.queue_offset + 1, 30, "the consume queue"
    )
    assert admin.min_offset(mq) == 0
    assert admin.search_offset(mq, before - 60_000) <= result.queue_offset
    offsets = admin.topic_offsets(topic)
    assert len(offsets) == 8
    route = admin.topic_route(topic)
    assert len(route.broker_datas) == 2
    key = unique("q")
    producer.send(Message(topic, b"by key", keys=[key]))
    found = backend.wait_for(lambda: admin.query_messages(topic, key), 30, "the indexed message")
    assert found[0].body == b"by key"
    assert admin.view_message(found[0].msg_id, topic).body == b"by key"


@pytest.mark.parametrize(
    ("local", "check", "visible"),
    [
        (TransactionState.COMMIT, None, True),
        (TransactionState.UNKNOWN, TransactionState.COMMIT, True),
        (TransactionState.UNKNOWN, TransactionState.ROLLBACK, False),
    ],
    ids=["commit", "checkback-commit", "checkback-rollback"],
)
def test_transactions_with_check_back(
    cluster: launcher.LocalCluster,
    backend: Backend,
    client_type: str,
    admin: Any,
    topic: str,
    local: TransactionState,
    check: TransactionState | None,
    visible: bool,
) -> None:
    """The broker's CHECK_TRANSACTION_STATE request arrives with the ROCKETMQ header."""
    key = unique("tx")
    asked: list[str] = []

    def checker(msg: MessageExt) -> TransactionState:
        asked.append(msg.keys[0])
        return check or TransactionState.UNKNOWN

    with backend.open(
        "TransactionProducer",
        cluster.namesrv_addr,
        checker,
        group=unique("sertx"),
        serialize_type=client_type,
        **LIMITS,
    ) as tx_producer:
        msg = Message(topic, b"tx body \x00", keys=[key])
        result, state = tx_producer.send_in_transaction(msg, lambda m, arg: local, None)
        assert state is local and result.status is SendStatus.SEND_OK
        if check is not None:
            backend.wait_for(lambda: key in asked, 90, "the broker's check-back")

        def visible_now() -> list[MessageExt]:
            return [m for m in admin.query_messages(topic, key) if m.topic == topic]

        if visible:
            found = backend.wait_for(visible_now, 30, "the committed message")
            assert found[0].body == b"tx body \x00"
        else:
            backend.sleep(3)
            assert visible_now() == []
