"""Message trace against the real cluster, in each driver: this client's traces of a
send, a consume and a transaction are found by ``mqadmin queryMsgTraceById`` and by
``Admin.query_trace``; and ``Admin.query_trace`` reads the traces the Java client
(the interop peer, rocketmq-client 5.x) writes."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt, TraceRecord, TraceType, TransactionState

from .backends import Backend, wait_for
from .test_admin_progress_broker import mqadmin, off_hub

pytestmark = pytest.mark.broker

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: Any, backend: Backend) -> str:
    name = unique(f"Trace_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(name).queue_datas, 20, "the route")
    return name


def complete(admin: Any, msg_id: str, wanted: set[TraceType]) -> list[TraceRecord] | None:
    """The message's trace records if every kind in ``wanted`` is among them."""
    found: list[TraceRecord] = admin.query_trace(msg_id)
    return found if wanted <= {r.type for r in found} else None


def traces(
    backend: Backend | None, admin: Any, msg_id: str, wanted: set[TraceType], whose: str = "the "
) -> list[TraceRecord]:
    """The message's trace records, once every kind in ``wanted`` is among them; on a
    timeout the failure says which kinds were found. ``backend`` None: poll with
    ``time.sleep``."""
    poll = wait_for if backend is None else backend.wait_for
    try:
        return poll(  # type: ignore[no-any-return]
            lambda: complete(admin, msg_id, wanted),
            WAIT,
            f"{whose}{sorted(t.name for t in wanted)} traces of {msg_id}",
        )
    except AssertionError as timed_out:
        found = sorted(r.type.name for r in admin.query_trace(msg_id))
        raise AssertionError(f"{timed_out}; found only {found}") from None


@pytest.mark.parametrize("mode", ["pull", "pop"])
def test_a_send_and_its_consume_are_traced_for_mqadmin_and_admin(
    rocketmq_cluster: Any, backend: Backend, topic: str, mode: str
) -> None:
    ns = rocketmq_cluster.namesrv_addr
    producer_group, consumer_group = unique("trace_p"), unique("trace_c")
    got: list[MessageExt] = []
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> None:
        with lock:
            got.extend(messages)

    consumer = backend.make(
        "PushConsumer",
        ns,
        handler,
        group=consumer_group,
        consume_from_where="last",
        enable_trace=True,
        consume_mode=mode,
    )
    consumer.subscribe(topic)
    with consumer:
        if mode == "pull":
            backend.wait_for(lambda: consumer.assigned_queues(), WAIT, "queues")
        backend.sleep(1.0)
        with backend.open("Producer", ns, group=producer_group, enable_trace=True) as producer:
            sent = producer.send(Message(topic, b"traced", tags="TagA", keys=["order-1"]))
        backend.wait_for(lambda: any(m.msg_id == sent.msg_id for m in got), WAIT, "the message")
    # Both closed: their traces were flushed on close.
    with backend.open("Admin", ns) as admin:
        records = traces(
            backend,
            admin,
            sent.msg_id,
            {TraceType.PUB, TraceType.SUB_BEFORE, TraceType.SUB_AFTER},
        )
        by_key = admin.query_messages("RMQ_SYS_TRACE_TOPIC", "order-1")
    [pub] = [r for r in records if r.type is TraceType.PUB]
    assert (pub.group, pub.topic, pub.tags, pub.keys) == (producer_group, topic, "TagA", "order-1")
    assert pub.success and pub.offset_msg_id == sent.offset_msg_id
    assert pub.store_host == sent.broker_addr and pub.body_length == len(b"traced")
    [before] = [r for r in records if r.type is TraceType.SUB_BEFORE]
    [after] = [r for r in records if r.type is TraceType.SUB_AFTER]
    assert before.group == after.group == consumer_group
    assert before.request_id == after.request_id and after.success
    assert before.timestamp_ms >= pub.timestamp_ms
    assert by_key, "the user key indexes the trace messages too"
    # The RocketMQ tool shows the send and the consume.
    shown = off_hub(backend, mqadmin, rocketmq_cluster, "queryMsgTraceById", "-i", sent.msg_id)
    rows = [line.split() for line in shown.splitlines() if line.startswith(("Pub", "Sub"))]
    assert ["Pub", producer_group] == rows[0][:2], shown
    assert ["Sub", consumer_group] == rows[1][:2] and rows[1][-1] == "success", shown


def test_a_transaction_outcome_is_traced(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    ns = rocketmq_cluster.namesrv_addr
    group = unique("trace_tx")
    with backend.open(
        "TransactionProducer",
        ns,
        lambda message: TransactionState.COMMIT,
        group=group,
        enable_trace=True,
    ) as producer:
        result, state = producer.send_in_transaction(
            Message(topic, b"tx"), lambda message, arg: TransactionState.COMMIT
        )
    assert state is TransactionState.COMMIT
    with backend.open("Admin", ns) as admin:
        records = traces(backend, admin, result.msg_id, {TraceType.PUB, TraceType.END_TRANSACTION})
    [end] = [r for r in records if r.type is TraceType.END_TRANSACTION]
    assert (end.group, end.topic, end.transaction_state) == (group, topic, "COMMIT_MESSAGE")
    assert end.transaction_id == result.transaction_id and not end.from_transaction_check
    [pub] = [r for r in records if r.type is TraceType.PUB]
    assert pub.msg_type == 1  # Java's Trans_Msg_Half


def test_admin_reads_the_traces_the_java_client_writes(rocketmq_cluster: Any) -> None:
    """Driver-independent (``Admin.query_trace`` is one flow for all): run once, with
    the blocking driver."""
    import rocketmq_sync

    from .peers import build_peers

    peer = build_peers("java")["java"]
    ns = rocketmq_cluster.namesrv_addr
    topic = unique("TraceJava")
    producer_group, consumer_group = unique("jtrace_p"), unique("jtrace_c")
    with rocketmq_sync.Admin(ns) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the route")

    def run(*args: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [peer, *args, "--namesrv", ns, "--topic", topic, "--trace"],
            capture_output=True,
            text=True,
            timeout=WAIT + 60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        # The peer waits for its client's trace messages to leave, and says how they went.
        [sends] = [line for line in lines if "traceSends" in line]
        assert sends["traceSent"] >= 1 and not sends["traceFailed"], (sends, done.stderr[-3000:])
        return lines

    [produced] = [
        line
        for line in run("produce", "--count", "1", "--group", producer_group, "--keys", "jk")
        if "msgId" in line
    ]
    msg_id = produced["msgId"]
    run(
        *("consume", "--group", consumer_group, "--count", "1", "--from", "first"),
        *("--timeout-sec", str(int(WAIT))),
    )
    wanted = {TraceType.PUB, TraceType.SUB_BEFORE, TraceType.SUB_AFTER}
    with rocketmq_sync.Admin(ns) as admin:
        records = traces(None, admin, msg_id, wanted, "the Java client's ")
    [pub] = [r for r in records if r.type is TraceType.PUB]
    assert (pub.group, pub.topic, pub.keys) == (producer_group, topic, "jk")
    assert {r.group for r in records if r.type is TraceType.SUB_BEFORE} == {consumer_group}
    [after] = [r for r in records if r.type is TraceType.SUB_AFTER]
    assert after.success and after.group == consumer_group


def test_full_trace_messages_with_wide_keys_are_taken_by_the_broker(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    """Enough sends to fill trace messages to their limits (keys of three-byte
    characters among them, 6 KB each, so a trace message is full of keys after a
    few dozen sends, long before it would go for its age): the broker takes every
    trace message (none fails), one of them holds keys near the limit, and the
    records of the first and the last send are found."""
    ns = rocketmq_cluster.namesrv_addr
    group = unique("trace_full")
    wide = "鍵" * 2000
    count = 1200
    with backend.open("Producer", ns, group=group, enable_trace=True) as producer:
        results = [
            producer.send(Message(topic, b"x", keys=[f"{wide}{i}"] if i % 4 == 0 else None))
            for i in range(count)
        ]
        # Before the close's flush: full trace messages went out on their own.
        backend.wait_for(
            lambda: producer.stats()["trace"]["sent"] > 0, WAIT, "a full trace message"
        )
    trace = producer.stats()["trace"]
    assert trace["recorded"] == trace["sent"] == count, trace
    assert trace["failed"] == trace["dropped"] == 0, trace
    with backend.open("Admin", ns) as admin:
        for sent in (results[0], results[-1]):
            [pub] = traces(backend, admin, sent.msg_id, {TraceType.PUB})
            assert pub.group == group and pub.offset_msg_id == sent.offset_msg_id
        first = admin.query_messages("RMQ_SYS_TRACE_TOPIC", f"{wide}0")
    assert first, "the trace message keyed by the first user key"
    keys_bytes = max(len(m.properties["KEYS"].encode()) for m in first)
    assert 20_000 < keys_bytes <= 30_000, keys_bytes
