"""The SimpleConsumer (RocketMQ 5.x POP) against the real cluster, for each driver."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from rocketmq_proto import (
    ConfigError,
    InvalidArgumentError,
    LocalProtocolError,
    Message,
    MessageExt,
    RocketMQError,
)
from rocketmq_proto.wire.codes import RequestCode
from rocketmq_proto.wire.pop import ReceiptHandle

from .backends import Backend

pytestmark = pytest.mark.broker

#: How long a test waits for messages it expects (revive of an unacked message
#: adds a few seconds to its invisible time on the broker's side).
WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def new_topic(backend: Backend, admin: Any, prefix: str, queues: int = 2) -> str:
    topic = unique(f"{prefix}_{backend.name}")
    admin.create_topic(topic, read_queue_nums=queues, write_queue_nums=queues)
    backend.wait_for(lambda: len(admin.topic_route(topic).queue_datas) == 2, 30, "the route")
    return topic


@pytest.fixture
def admin(rocketmq_cluster: Any, backend: Backend) -> Any:
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as made:
        yield made


@pytest.fixture
def producer(rocketmq_cluster: Any, backend: Backend) -> Any:
    with backend.open("Producer", rocketmq_cluster.namesrv_addr, group=unique("sp")) as made:
        yield made


def simple(
    backend: Backend,
    ns: str,
    topic: str,
    expression: str = "*",
    *,
    sql: bool = False,
    **options: Any,
) -> Any:
    options.setdefault("group", unique("simple"))
    options.setdefault("consume_from_where", "first")
    options.setdefault("await_duration", 2.0)
    consumer = backend.make("SimpleConsumer", ns, **options)
    consumer.subscribe(topic, expression, sql=sql)
    return consumer


def receive_until(
    consumer: Any, count: int, timeout: float = WAIT, **kwargs: Any
) -> list[MessageExt]:
    got: list[MessageExt] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.receive(16, **kwargs)
    return got


def bodies(messages: list[MessageExt]) -> list[str]:
    return sorted(m.body.decode() for m in messages)


def test_receive_and_ack_each_message_once(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    """Every message of every broker and queue is received once, with a receipt
    handle naming its broker, queue and offset; acked (one, then the rest in one
    BATCH_ACK_MESSAGE per broker, each answered SUCCESS), none comes back."""
    topic = new_topic(backend, admin, "PopAck")
    sent = [f"pop-{i}" for i in range(40)]
    for body in sent:
        producer.send(Message(topic, body.encode(), tags="t", keys=[body]))
    acks: list[tuple[int, str, int | None]] = []  # (request code, where, answer code)

    class AckRequests:
        def after_request(self, ctx: Any) -> None:
            if ctx.request.code in (RequestCode.ACK_MESSAGE, RequestCode.BATCH_ACK_MESSAGE):
                code = None if ctx.response is None else ctx.response.code
                acks.append((ctx.request.code, ctx.addr, code))

    with simple(backend, rocketmq_cluster.namesrv_addr, topic, hooks=[AckRequests()]) as consumer:
        got = receive_until(consumer, len(sent), invisible_duration=6)
        assert bodies(got) == sorted(sent)
        assert {m.broker_name for m in got} == {"broker-a", "broker-b"}
        for message in got:
            assert message.topic == topic and message.reconsume_times == 0
            handle = ReceiptHandle.parse(message.receipt_handle or "")
            assert message.receipt_handle == handle.text
            assert (handle.broker_name, handle.queue_id, handle.offset) == (
                message.broker_name,
                message.queue_id,
                message.queue_offset,
            )
            assert handle.invisible_time == 6_000 and handle.retry == "0"
        consumer.ack(got[0])  # one at a time
        assert acks == [(RequestCode.ACK_MESSAGE, rocketmq_cluster.brokers[got[0].broker_name], 0)]
        consumer.ack(got[1:])  # the rest in batches, one per broker
        # One BATCH_ACK_MESSAGE to each broker's master, each answered SUCCESS (not
        # REQUEST_CODE_NOT_SUPPORTED, whose fallback would send single ACK_MESSAGEs).
        assert sorted(acks[1:]) == sorted(
            (RequestCode.BATCH_ACK_MESSAGE, addr, 0) for addr in rocketmq_cluster.brokers.values()
        ), acks
        # Acked: nothing comes back, even after the invisible time would have ended.
        assert receive_until(consumer, 1, timeout=14.0, invisible_duration=5) == []


def test_an_unacked_message_comes_back_with_its_reconsume_count_raised(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopBack", queues=1)
    producer.send(Message(topic, b"again"))
    with simple(backend, rocketmq_cluster.namesrv_addr, topic) as consumer:
        (first,) = receive_until(consumer, 1, invisible_duration=2)
        received_at = time.monotonic()
        assert first.reconsume_times == 0
        (second,) = receive_until(consumer, 1, invisible_duration=30)
        assert time.monotonic() - received_at >= 1.5  # not before its invisible time
        assert second.body == b"again" and second.msg_id == first.msg_id
        assert second.topic == topic  # the original topic, not the pop retry topic
        assert second.reconsume_times == 1
        handle = ReceiptHandle.parse(second.receipt_handle or "")
        assert handle.retry in ("1", "2")  # read from the group's pop retry topic
        consumer.ack(second)
        assert receive_until(consumer, 1, timeout=10.0) == []


def test_change_invisible_duration_renews_the_receipt_handle(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopInvis", queues=1)
    producer.send(Message(topic, b"longer"))
    producer.send(Message(topic, b"sooner"))
    with simple(backend, rocketmq_cluster.namesrv_addr, topic) as consumer:
        got = {m.body: m for m in receive_until(consumer, 2, invisible_duration=4)}
        longer, sooner = got[b"longer"], got[b"sooner"]
        old = longer.receipt_handle
        consumer.change_invisible_duration(longer, 60)
        assert longer.receipt_handle != old
        renewed = ReceiptHandle.parse(longer.receipt_handle or "")
        assert renewed.invisible_time == 60_000 and renewed.offset == longer.queue_offset
        consumer.change_invisible_duration(sooner, 1)
        # "sooner" comes back; "longer", hidden for a minute now, does not.
        back = receive_until(consumer, 1, timeout=30.0, invisible_duration=60)
        assert [m.body for m in back] == [b"sooner"]
        assert receive_until(consumer, 1, timeout=8.0) == []
        consumer.ack([longer, back[0]])  # the renewed handle acks it


def test_a_message_redelivered_too_often_goes_to_the_dead_letter_queue(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    """Delivered ``max_reconsume_times`` times again, the message is not delivered
    once more but moved to ``%DLQ%<group>`` (where the Java remoting POP consumer
    would ack and drop it)."""
    topic = new_topic(backend, admin, "PopDlq", queues=1)
    group = unique("dlq")
    sent = producer.send(Message(topic, b"poison", keys=["poison-key"]))
    deliveries: list[int] = []
    with simple(
        backend, rocketmq_cluster.namesrv_addr, topic, group=group, max_reconsume_times=1
    ) as consumer:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(deliveries) < 2:
            for message in consumer.receive(16, invisible_duration=1, wait=2):
                deliveries.append(message.reconsume_times)  # never acked
        assert deliveries == [0, 1]
        dlq = f"%DLQ%{group}"

        def moved() -> list[Any]:
            # The receive that pops it a third time moves it instead of delivering it.
            for message in consumer.receive(16, invisible_duration=1, wait=1):
                deliveries.append(message.reconsume_times)
            try:
                return [o for o in admin.topic_offsets(dlq) if o.max_offset > 0]
            except RocketMQError:
                return []  # no DLQ topic yet

        offsets = backend.wait_for(moved, 60, "the DLQ")
        assert deliveries == [0, 1] and sum(o.max_offset for o in offsets) == 1
        with backend.open(
            "PullConsumer",
            rocketmq_cluster.namesrv_addr,
            group=unique("dlqreader"),
            consume_from_where="first",
        ) as reader:
            reader.subscribe(dlq)
            stored: list[MessageExt] = []
            deadline = time.monotonic() + WAIT
            while not stored and time.monotonic() < deadline:
                stored = reader.poll(1.0)
        assert [m.body for m in stored] == [b"poison"]
        assert stored[0].msg_id == sent.msg_id
        # Moved and acked: it is not delivered again.
        assert consumer.receive(16, invisible_duration=1, wait=6) == []


def test_tag_and_sql_filters(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopFilter")
    for i in range(12):
        message = Message(topic, b"f%d" % i, tags="abc"[i % 3])
        message.properties["n"] = str(i)
        producer.send(message)
    ns = rocketmq_cluster.namesrv_addr
    with simple(backend, ns, topic, "a || c") as by_tag:
        got = receive_until(by_tag, 8)
        by_tag.ack(got)
        assert bodies(got) == sorted(f"f{i}" for i in range(12) if i % 3 != 1)
        assert receive_until(by_tag, 1, timeout=4.0) == []
    with simple(backend, ns, topic, "n >= 9", sql=True) as by_sql:
        got = receive_until(by_sql, 3)
        by_sql.ack(got)
        assert bodies(got) == ["f10", "f11", "f9"]


def test_consumers_of_one_group_share_the_messages(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopShare")
    sent = [f"share-{i}" for i in range(60)]
    for body in sent:
        producer.send(Message(topic, body.encode()))
    group = unique("share")
    ns = rocketmq_cluster.namesrv_addr
    with (
        simple(backend, ns, topic, group=group) as one,
        simple(backend, ns, topic, group=group) as two,
    ):
        got: dict[str, list[MessageExt]] = {"one": [], "two": []}
        deadline = time.monotonic() + WAIT
        while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
            for name, consumer in (("one", one), ("two", two)):
                batch = consumer.receive(8, invisible_duration=30, wait=0.5)
                if batch:
                    consumer.ack(batch)
                got[name] += batch
        everything = got["one"] + got["two"]
        assert bodies(everything) == sorted(sent)  # each exactly once
        assert got["one"] and got["two"]


def test_fifo_pops_hold_a_queue_until_its_message_is_acked(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopFifo", queues=1)
    for i in range(5):  # one sharding key: one queue, in order
        producer.send(Message(topic, b"o%d" % i), sharding_key="k")
    with simple(backend, rocketmq_cluster.namesrv_addr, topic, fifo=True) as consumer:
        order: list[str] = []
        deadline = time.monotonic() + WAIT
        while len(order) < 5 and time.monotonic() < deadline:
            batch = consumer.receive(1, invisible_duration=20, wait=1)
            if not batch:
                continue
            order += [m.body.decode() for m in batch]
            # While it is unacked, its queue gives nothing more.
            assert consumer.receive(1, invisible_duration=20, wait=0.5) == []
            consumer.ack(batch)
        assert order == [f"o{i}" for i in range(5)]


def test_bad_calls_are_clear_errors(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "PopBad", queues=1)
    consumer = simple(backend, rocketmq_cluster.namesrv_addr, topic)
    with pytest.raises(LocalProtocolError, match="is not started"):
        consumer.receive()
    with consumer:
        with pytest.raises(InvalidArgumentError, match=r"max_messages must be 1\.\.32"):
            consumer.receive(33)
        with pytest.raises(InvalidArgumentError, match="invisible_duration"):
            consumer.receive(1, invisible_duration=0)
        not_popped = MessageExt(topic, b"x")
        with pytest.raises(InvalidArgumentError, match="no receipt handle"):
            consumer.ack(not_popped)
    with pytest.raises(ConfigError, match="needs a group"):
        backend.make("SimpleConsumer", rocketmq_cluster.namesrv_addr)


def test_asyncio_consumer_iterates_with_async_for(rocketmq_cluster: Any) -> None:
    """``async for message in consumer`` (asyncio only; the topic is set up with
    the blocking driver)."""
    import asyncio

    import rocketmq_asyncio
    import rocketmq_sync

    ns = rocketmq_cluster.namesrv_addr
    topic = unique("PopIter")
    with rocketmq_sync.Admin(ns) as admin:
        admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
        deadline = time.monotonic() + 30
        while len(admin.topic_route(topic).queue_datas) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    with rocketmq_sync.Producer(ns, group=unique("sp")) as producer:
        for i in range(3):
            producer.send(Message(topic, b"it%d" % i))

    async def iterate() -> list[bytes]:
        consumer = rocketmq_asyncio.SimpleConsumer(
            ns, group=unique("iter"), consume_from_where="first", await_duration=1.0
        )
        consumer.subscribe(topic)
        seen: list[bytes] = []
        async with consumer:
            async for message in consumer:
                seen.append(message.body)
                await consumer.ack(message)
                if len(seen) == 3:
                    break
        return seen

    assert sorted(asyncio.run(asyncio.wait_for(iterate(), WAIT))) == [b"it0", b"it1", b"it2"]


# ----------------------------------------------------------- PushConsumer, POP mode


def test_push_consumers_in_pop_mode_share_a_group_and_retry_through_invisibility(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    """Two POP-mode push consumers of one group: every message consumed, none
    lost; a batch the handler failed comes back (reconsume count 1) after its
    retry delay, and once handled is not delivered again."""
    topic = new_topic(backend, admin, "PopPush")
    sent = [f"pp-{i}" for i in range(200)]
    group = unique("poppush")
    lock = threading.Lock()
    done: dict[str, list[int]] = {}
    failed_once: set[str] = set()

    def handler(messages: list[MessageExt]) -> bool:
        with lock:
            for message in messages:
                body = message.body.decode()
                if body.endswith("7") and body not in failed_once:
                    failed_once.add(body)
                    return False  # comes back later
                done.setdefault(body, []).append(message.reconsume_times)
        backend.sleep(0.002 * len(messages))  # a handler that takes some time
        return True

    consumers = [
        backend.make(
            "PushConsumer",
            rocketmq_cluster.namesrv_addr,
            handler,
            group=group,
            consume_mode="pop",
            consume_from_where="first",
        )
        for _ in range(2)
    ]
    for consumer in consumers:
        consumer.subscribe(topic)
        consumer.start()
    try:
        # Sent once both consumers wait in their pops: sent before, the first
        # consumer started could pop every message (32 a queue) before the
        # second asked, and sharing would not be shown.
        for body in sent:
            producer.send(Message(topic, body.encode()))
        backend.wait_for(lambda: set(done) >= set(sent), WAIT, "every message consumed")
        backend.sleep(4.0)  # nothing comes back once consumed
        assert all(consumer.consumed > 0 for consumer in consumers), [c.consumed for c in consumers]
        assert consumers[0].assigned_queues() == []  # POP: no queues held
    finally:
        for consumer in consumers:
            consumer.close()
    with lock:
        assert failed_once == {b for b in sent if b.endswith("7")}
        assert all(done[b] == [1] for b in failed_once), {b: done[b] for b in failed_once}
        assert all(len(times) == 1 for times in done.values())


def test_an_orderly_push_consumer_in_pop_mode_keeps_a_queues_order(
    rocketmq_cluster: Any, backend: Backend, admin: Any, producer: Any
) -> None:
    """Three sharding keys (a queue each), handled by a slow handler (a random
    pause of up to 50 ms a batch) that fails one batch once: every key's messages
    are consumed in the order sent, the failed batch again before any later one
    of its queue (the broker holds the queue while it is unacked). A consumer
    that was not orderly would handle batches at once, out of order, and retry
    the failed one after the others."""
    import random

    topic = new_topic(backend, admin, "PopPushFifo")
    keys = ["k1", "k2", "k3"]
    for i in range(30):
        producer.send(Message(topic, f"{keys[i % 3]}:{i}".encode()), sharding_key=keys[i % 3])
    lock = threading.Lock()
    pick = random.Random()
    consumed: dict[str, list[int]] = {key: [] for key in keys}
    failed: list[tuple[list[int], int]] = []  # (the numbers of the failed batch, when)
    again: list[int] = []  # reconsume counts of the failed batch's messages, redelivered

    def handler(messages: list[MessageExt]) -> bool:
        with lock:
            pause = pick.uniform(0.0, 0.05)
        backend.sleep(pause)  # several queues' batches are handled at once meanwhile
        read = [m.body.decode().split(":") for m in messages]
        numbers = [int(n) for _, n in read]
        with lock:
            if not failed and read[0][0] == "k2" and numbers[-1] >= 13:
                failed.append((numbers, len(consumed["k2"])))
                return False
            if failed and numbers[0] in failed[0][0]:
                again.extend(m.reconsume_times for m in messages)
            for key, number in zip((k for k, _ in read), numbers, strict=True):
                consumed[key].append(number)
        return True

    consumer = backend.make(
        "PushConsumer",
        rocketmq_cluster.namesrv_addr,
        handler,
        group=unique("poppushfifo"),
        consume_mode="pop",
        orderly=True,
        consume_from_where="first",
        consume_message_batch_max_size=3,
    )
    consumer.subscribe(topic)  # before the start: its pop loops begin at once

    def all_consumed() -> bool:
        with lock:
            return sum(len(set(numbers)) for numbers in consumed.values()) >= 30

    with consumer:
        backend.wait_for(all_consumed, WAIT, "every message")
    with lock:
        for index, key in enumerate(keys):
            assert consumed[key] == list(range(index, 30, 3)), (key, consumed[key])
        assert failed, "the handler failed no batch"
        numbers, before = failed[0]
        # The failed batch came back next in its queue, its reconsume counts raised.
        assert consumed["k2"][before : before + len(numbers)] == numbers
        assert again and all(times >= 1 for times in again), again


def test_an_auto_mode_push_consumer_follows_the_groups_request_mode(
    rocketmq_cluster: Any,
    backend: Backend,
    admin: Any,
    producer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``consume_mode="auto"``: a topic the brokers say the group pops is popped
    (messages carry receipt handles, no queue is held); switched to PULL by
    ``Admin.set_consume_mode`` it is pulled once its pops ended, and switched back
    it is popped once its queues are let go. Messages sent while the mode
    changes are all consumed (some may come twice: at-least-once)."""
    from rocketmq_proto.flows.consumer import auto_push

    monkeypatch.setattr(auto_push, "MODE_INTERVAL", 1.0)  # looks again every second
    topic = new_topic(backend, admin, "AutoMode", queues=4)
    group = unique("automode")
    admin.create_group(group)
    admin.set_consume_mode(topic, group, "pop")
    lock = threading.Lock()
    seen: dict[str, list[bool]] = {}  # body -> popped (had a receipt handle), per delivery

    def handler(messages: list[MessageExt]) -> None:
        with lock:
            for message in messages:
                popped = bool(message.properties.get("POP_CK"))
                seen.setdefault(message.body.decode(), []).append(popped)

    def topic_queues(consumer: Any) -> list[Any]:
        return [q for q in consumer.assigned_queues() if q.topic == topic]

    def send(prefix: str, count: int, pause: float = 0.0) -> list[str]:
        bodies = [f"{prefix}-{i}" for i in range(count)]
        for body in bodies:
            producer.send(Message(topic, body.encode()))
            if pause:
                backend.sleep(pause)
        return bodies

    def consumed(bodies: list[str]) -> bool:
        with lock:
            return set(seen) >= set(bodies)

    consumer = backend.make(
        "PushConsumer",
        rocketmq_cluster.namesrv_addr,
        handler,
        group=group,
        consume_mode="auto",
        consume_from_where="first",
        broker_suspend_max_time=2.0,  # the long polls of the pops, too
    )
    consumer.subscribe(topic)
    queues = sum(q.read_queue_nums for q in admin.topic_route(topic).queue_datas)
    with consumer:
        popped = send("pop", 8)
        backend.wait_for(lambda: consumed(popped), WAIT, "the popped messages")
        with lock:
            assert all(all(seen[b]) for b in popped), seen
        assert topic_queues(consumer) == []

        # To PULL while messages flow: none lost.
        flowing = backend.background(send, "to-pull", 40, 0.05)
        admin.set_consume_mode(topic, group, "PULL")
        backend.wait_for(lambda: len(topic_queues(consumer)) == queues, WAIT, "every queue pulled")
        to_pull = flowing.result(WAIT)
        backend.wait_for(lambda: consumed(to_pull), WAIT, "what was sent during the switch")
        # The pops ended before the pulls began: what comes now is pulled.
        pulled = send("pull", 8)
        backend.wait_for(lambda: consumed(pulled), WAIT, "the pulled messages")
        with lock:
            assert not any(any(seen[b]) for b in pulled), seen

        # Back to POP while messages flow: none lost, the queues let go.
        flowing = backend.background(send, "to-pop", 40, 0.05)
        admin.set_consume_mode(topic, group, "POP")
        backend.wait_for(lambda: topic_queues(consumer) == [], WAIT, "the queues let go")
        to_pop = flowing.result(WAIT)
        backend.wait_for(lambda: consumed(to_pop), WAIT, "what was sent during the switch back")
        popped_again = send("pop-again", 8)
        backend.wait_for(lambda: consumed(popped_again), WAIT, "the popped messages")
        with lock:
            assert all(all(seen[b]) for b in popped_again), seen
            twice = sorted(b for b, deliveries in seen.items() if len(deliveries) > 1)
    print(f"\n[{backend.name}] auto mode: {len(seen)} messages, {len(twice)} delivered twice")


def test_consume_mode_is_checked_by_the_admin_and_the_consumer(
    rocketmq_cluster: Any, backend: Backend, admin: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match="mode must be one of"):
        admin.set_consume_mode("AnyTopic", "any_group", "PUSH")
    with pytest.raises(ConfigError, match="consume_mode must be 'pull', 'pop' or 'auto'"):
        backend.make(
            "PushConsumer", rocketmq_cluster.namesrv_addr, print, group="g", consume_mode="push"
        )


def test_consumer_processes_in_pop_mode_drain_20000_messages_losing_none(
    rocketmq_cluster: Any,
) -> None:
    """Three consumer processes of one POP-mode group, one per driver (asyncio,
    gevent, sync), drain 20,000 messages: each message handled at least once,
    every process doing a share."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import rocketmq_sync

    ns = rocketmq_cluster.namesrv_addr
    topic = unique("PopDrain")
    count = 20_000
    with rocketmq_sync.Admin(ns) as admin:
        admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        deadline = time.monotonic() + 30
        while len(admin.topic_route(topic).queue_datas) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    with rocketmq_sync.Producer(ns, group=unique("drainp")) as producer:
        for start in range(0, count, 100):
            producer.send_batch([Message(topic, b"d%d" % i) for i in range(start, start + 100)])
    program = Path(__file__).parent / "programs" / "pop_drain.py"
    group = unique("drain")
    drivers = ("asyncio", "gevent", "sync")
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"member-{driver}.txt" for driver in drivers]
        members = [
            subprocess.Popen(
                [sys.executable, str(program), driver, ns, topic, group, str(out), "5", "240"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for driver, out in zip(drivers, outs, strict=True)
        ]
        reports = []
        for member in members:
            stdout, stderr = member.communicate(timeout=300)
            assert member.returncode == 0, stderr[-3000:]
            reports.append(stdout.split())
        shares = [out.read_text().split() for out in outs]
    # Each process ran its driver's consumer, and handled what it wrote.
    assert [r[1] for r in reports] == [f"rocketmq_{driver}" for driver in drivers], reports
    assert [int(r[0]) for r in reports] == [len(share) for share in shares]
    got = [body for share in shares for body in share]
    assert set(got) == {f"d{i}" for i in range(count)}, f"{count - len(set(got))} never handled"
    assert all(shares), dict(zip(drivers, map(len, shares), strict=True))
    print(
        f"\nshares {dict(zip(drivers, map(len, shares), strict=True))}, "
        f"handled twice {len(got) - len(set(got))}"
    )
