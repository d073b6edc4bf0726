"""The push consumer against a real RocketMQ cluster, for each driver.

Each test records every delivery its handlers see (which consumer, which queue
and offset, ``reconsume_times``, when) and checks the guarantees a Java push
consumer gives: at-least-once without gaps, one owner per queue through
rebalances, per-key order, broadcasting with local offsets, tag and SQL92
filters, retries and dead letters, committed offsets (restart, reset to a
timestamp, where a new consumer starts), graceful close, bounded memory under a
slow handler and a bounded number of handlers at once.

Handlers only append to lists under a ``threading.Lock`` (never held across a
switch, so it is safe under gevent too) and wait with ``backend.sleep``; the
test thread waits with ``backend.wait_for``/``backend.sleep`` so that gevent's
hub keeps running.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rocketmq_proto import (
    ConsumeResult,
    Message,
    MessageExt,
    MessageQueue,
    RocketMQError,
    SystemBusyError,
)

from .backends import Backend
from .cluster_fixture import admin_addr

pytestmark = pytest.mark.broker

QUEUES_PER_BROKER = 8
#: How long a test waits for something the cluster should do (the machine may be busy).
WAIT = 120.0
#: Options every client object of this module gets: generous, the machine may be busy.
CLIENT: dict[str, Any] = {"request_timeout": 10.0}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ----------------------------------------------------------------- recording


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as one handler call saw it."""

    consumer: str
    body: str
    topic: str
    queue: MessageQueue
    offset: int
    reconsume_times: int
    msg_id: str
    at: float
    phase: int
    properties: dict[str, str]
    tags: str | None


class Recorder:
    """Every delivery to the handlers it makes, in the order the handlers started."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.deliveries: list[Delivery] = []
        self.succeeded: list[tuple[str, MessageQueue, int]] = []
        #: Tests move this on at each membership change (join/leave) of a group.
        self.phase = 0

    def record(self, name: str, msgs: Sequence[MessageExt]) -> None:
        now = time.monotonic()
        with self.lock:
            for m in msgs:
                self.deliveries.append(
                    Delivery(
                        consumer=name,
                        body=m.body.decode(),
                        topic=m.topic,
                        queue=MessageQueue(m.topic, m.broker_name, m.queue_id),
                        offset=m.queue_offset,
                        reconsume_times=m.reconsume_times,
                        msg_id=m.msg_id,
                        at=now,
                        phase=self.phase,
                        properties=dict(m.properties),
                        tags=m.tags,
                    )
                )

    def handler(
        self,
        name: str = "c",
        *,
        delay: Callable[[], float] | float = 0.0,
        result: Callable[[MessageExt], Any] | None = None,
    ) -> Callable[[list[MessageExt]], Any]:
        """A handler recording under ``name``; it sleeps ``delay`` seconds (the
        driver's way) and answers ``result(first message)`` (default SUCCESS)."""

        def handle(msgs: list[MessageExt]) -> Any:
            self.record(name, msgs)
            seconds = delay() if callable(delay) else delay
            if seconds:
                self.backend.sleep(seconds)
            answer = ConsumeResult.SUCCESS if result is None else result(msgs[0])
            if answer in (ConsumeResult.SUCCESS, True):
                with self.lock:
                    self.succeeded.extend(
                        (name, MessageQueue(m.topic, m.broker_name, m.queue_id), m.queue_offset)
                        for m in msgs
                    )
            return answer

        return handle

    def done(self, consumer: str | None = None) -> set[tuple[MessageQueue, int]]:
        """(queue, offset) of the messages whose handler returned success."""
        with self.lock:
            return {(q, o) for c, q, o in self.succeeded if consumer is None or c == consumer}

    def snapshot(self, consumer: str | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if consumer is None or d.consumer == consumer]

    def bodies(self, consumer: str | None = None) -> collections.Counter[str]:
        return collections.Counter(d.body for d in self.snapshot(consumer))

    def distinct(self, consumer: str | None = None) -> set[str]:
        return set(self.bodies(consumer))


# ------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def ns(rocketmq_cluster: Any) -> str:
    return str(rocketmq_cluster.namesrv_addr)


@pytest.fixture(scope="module")
def admin(rocketmq_cluster: Any, backend: Backend) -> Iterator[Any]:
    with backend.open("Admin", admin_addr(rocketmq_cluster), **CLIENT) as made:
        yield made


@pytest.fixture(scope="module")
def producer(ns: str, backend: Backend) -> Iterator[Any]:
    with backend.open("Producer", ns, group=unique("cpg"), **CLIENT) as made:
        yield made


def new_topic(backend: Backend, admin: Any, prefix: str, queues: int = QUEUES_PER_BROKER) -> str:
    """A new topic with ``queues`` queues on each broker, once its whole route is known."""
    name = unique(f"{prefix}_{backend.name}")
    created = admin.create_topic(name, read_queue_nums=queues, write_queue_nums=queues)
    assert len(created) == 2, created

    def whole_route() -> bool:
        try:
            return len(admin.topic_offsets(name)) == 2 * queues
        except RocketMQError:
            return False

    backend.wait_for(whole_route, WAIT, f"the route of {name} on both brokers")
    return name


def queue_ends(admin: Any, topic: str) -> dict[MessageQueue, int]:
    """Each queue's max offset (the offset the next message will get)."""
    return {o.message_queue: o.max_offset for o in admin.topic_offsets(topic)}


def settled_queue_ends(
    backend: Backend, admin: Any, topic: str, total: int
) -> dict[MessageQueue, int]:
    """:func:`queue_ends` once the consume queues hold all ``total`` messages sent (a
    broker dispatches a stored message to its consume queue a moment later)."""

    def ends() -> dict[MessageQueue, int] | None:
        found = queue_ends(admin, topic)
        return found if sum(found.values()) == total else None

    settled: dict[MessageQueue, int] = backend.wait_for(ends, 20, f"{total} messages in {topic}")
    return settled


def send_all(
    backend: Backend,
    producer: Any,
    messages: Sequence[Message],
    window: int = 64,
    *,
    sharding_keys: Sequence[str] | None = None,
) -> list[Any]:
    """Pipelined sends, ``window`` at a time; every one must succeed.

    A busy machine may make a broker shed sends (SYSTEM_BUSY: not stored); those
    are sent again after a pause. Any other failure fails the test.
    """
    keys = list(sharding_keys) if sharding_keys is not None else [None] * len(messages)

    def send(i: int) -> Any:
        if keys[i] is None:
            return producer.send_async(messages[i], 30.0)
        return producer.send_async(messages[i], 30.0, sharding_key=keys[i])

    results = []
    for start in range(0, len(messages), window):
        indexes = range(start, min(start + window, len(messages)))
        futures = [send(i) for i in indexes]
        for i, future in zip(indexes, futures, strict=True):
            for attempt in range(10):
                try:
                    results.append(future.result(120))
                    break
                except SystemBusyError:
                    if attempt == 9:
                        raise
                    backend.sleep(1.0)
                    future = send(i)
    return results


def make_consumer(
    backend: Backend,
    ns: str,
    handler: Callable[[list[MessageExt]], Any],
    group: str,
    subscriptions: Iterable[tuple[str, str, bool]],
    **options: Any,
) -> Any:
    consumer = backend.make("PushConsumer", ns, handler, group=group, **{**CLIENT, **options})
    for topic, expression, sql in subscriptions:
        consumer.subscribe(topic, expression, sql=sql)
    return consumer


@contextmanager
def running(
    backend: Backend,
    ns: str,
    handler: Callable[[list[MessageExt]], Any],
    group: str,
    topic: str,
    expression: str = "*",
    *,
    sql: bool = False,
    **options: Any,
) -> Iterator[Any]:
    consumer = make_consumer(backend, ns, handler, group, [(topic, expression, sql)], **options)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.close()


def owned(consumer: Any, topic: str) -> list[MessageQueue]:
    return [q for q in consumer.assigned_queues() if q.topic == topic]


def core_of(consumer: Any) -> Any:
    """The consumer core behind a client object (behind the asyncio proxy too)."""
    return getattr(consumer, "_obj", consumer)._consumer


def held_counts(backend: Backend, consumer: Any) -> dict[MessageQueue, int]:
    """Messages each process queue of ``consumer`` holds now (read where the driver runs)."""
    core = core_of(consumer)

    def read() -> dict[MessageQueue, int]:
        for _ in range(100):
            try:
                items = list(core.queues.items())
            except RuntimeError:  # resized by a driver thread meanwhile
                continue
            return {mq: state.request.process_queue.msg_count for mq, state in items}
        raise AssertionError("could not read the process queues")

    if backend.name == "asyncio":
        assert backend._loop is not None
        return backend._loop.call(read)  # type: ignore[no-any-return]
    return read()


def holds(consumer: Any, count: int, topic: str | None = None) -> Callable[[], bool]:
    """Whether ``consumer`` holds ``count`` queues (of ``topic``, if given)."""

    def check() -> bool:
        queues = consumer.assigned_queues()
        return len([q for q in queues if topic is None or q.topic == topic]) == count

    return check


def got_all(recorder: Recorder, consumer: str, want: set[str]) -> Callable[[], bool]:
    """Whether ``consumer`` has received every body of ``want``."""
    return lambda: recorder.distinct(consumer) >= want


def settle(backend: Backend, seconds: float = 2.0) -> None:
    """Let anything still in flight arrive (to catch unexpected extra deliveries)."""
    backend.sleep(seconds)


# ============================================================ at least once


def test_every_message_is_consumed_at_least_once_without_gaps(
    backend: Backend, ns: str, admin: Any, producer: Any, rocketmq_cluster: Any
) -> None:
    """N messages over 2 brokers x 8 queues, sent while the consumer runs: every
    one arrives, every offset of every queue is delivered, nothing twice (one
    steady consumer), and closing commits exactly the queues' ends. N is the
    issue's 10,000 for one driver and 3,000 for the others (time)."""
    n = 10_000 if backend.name == "sync" else 3_000
    topic = new_topic(backend, admin, "AloT")
    group = unique("alo")
    recorder = Recorder(backend)
    messages = [Message(topic, f"alo-{i}".encode(), tags=f"T{i % 4}") for i in range(n)]
    handler: Callable[[list[MessageExt]], Any] = recorder.handler()
    if backend.name == "asyncio":  # a coroutine function: awaited on the loop, no thread
        record = handler

        async def handler(msgs: list[MessageExt]) -> Any:
            return record(msgs)

    started = time.monotonic()
    with running(backend, ns, handler, group, topic, consume_from_where="first") as consumer:
        results = send_all(backend, producer, messages)
        sent_in = time.monotonic() - started
        backend.wait_for(
            lambda: len(recorder.done()) >= n, WAIT * 2, f"{n} distinct messages consumed"
        )
        elapsed = time.monotonic() - started
        assert consumer.consumed >= n
        ends = queue_ends(admin, topic)
        backend.sleep(0.5)  # let the last results settle into the offset table
    print(f"{backend.name}: {n} messages sent in {sent_in:.1f} s, all consumed in {elapsed:.1f} s")

    assert len(ends) == 2 * QUEUES_PER_BROKER
    assert sum(ends.values()) == n
    used = {r.message_queue for r in results}
    assert {q.broker_name for q in used} == set(rocketmq_cluster.brokers)
    assert len(used) == 2 * QUEUES_PER_BROKER

    deliveries = recorder.snapshot()
    counts = collections.Counter(d.body for d in deliveries)
    assert set(counts) == {m.body.decode() for m in messages}
    duplicates = {b: c for b, c in counts.items() if c > 1}
    assert not duplicates, f"one steady consumer re-delivered {len(duplicates)} messages"
    # No gaps: every offset of every queue was delivered, where the producer put it.
    seen = {(d.queue, d.offset) for d in deliveries}
    assert seen == {(mq, o) for mq, end in ends.items() for o in range(end)}
    where = {(r.message_queue, r.queue_offset) for r in results}
    assert seen == where
    for d in deliveries[:: max(1, n // 50)]:
        assert d.topic == topic and d.reconsume_times == 0
        assert d.tags == f"T{int(d.body.split('-')[1]) % 4}"
    # Closing committed every queue's offset up to its end.
    for mq, end in ends.items():
        assert admin.consumer_offset(group, mq) == end, mq


# ================================================================= rebalance


@pytest.fixture
def rebalance_options() -> dict[str, Any]:
    """Options of the rebalance test's consumers: none here, where the broker tells a
    group's consumers when one joins or leaves. The proxy does not (its suite's module
    overrides this fixture)."""
    return {}


def test_rebalance_as_consumers_join_and_leave(
    backend: Backend, ns: str, admin: Any, producer: Any, rebalance_options: dict[str, Any]
) -> None:
    """1, 2, 3, 2, then 1 consumer while a producer keeps sending: after each
    change every queue has exactly one owner (the average split), nothing is
    lost, and a message is only seen twice when its queue changed hands."""
    topic = new_topic(backend, admin, "RebT")
    group = unique("reb")
    recorder = Recorder(backend)
    all_queues = sorted(queue_ends(admin, topic))
    sent: list[str] = []
    where: dict[str, tuple[MessageQueue, int]] = {}
    stop = threading.Event()
    owners: dict[MessageQueue, set[str]] = collections.defaultdict(set)

    def produce() -> int:
        i = 0
        while not stop.is_set():
            body = f"reb-{i}"
            (result,) = send_all(backend, producer, [Message(topic, body.encode())])
            where[body] = (result.message_queue, result.queue_offset)
            sent.append(body)
            i += 1
            backend.sleep(0.005)
        return i

    consumers: dict[str, Any] = {}

    def start(name: str) -> None:
        recorder.phase += 1
        # From the first offset: with "last", a message stored between the empty
        # queue's offset query and its max-offset query would be skipped (as in Java).
        consumer = make_consumer(
            backend,
            ns,
            recorder.handler(name),
            group,
            [(topic, "*", False)],
            consume_from_where="first",
            **rebalance_options,
        )
        consumer.start()
        consumers[name] = consumer

    def stop_consumer(name: str) -> None:
        recorder.phase += 1
        consumers.pop(name).close()

    def partitioned() -> bool:
        shares = {name: owned(c, topic) for name, c in consumers.items()}
        everyone = sorted(q for qs in shares.values() for q in qs)
        k = len(consumers)
        sizes_ok = all(
            len(qs) in (len(all_queues) // k, -(-len(all_queues) // k)) for qs in shares.values()
        )
        if everyone != all_queues or not sizes_ok:
            return False
        # No queue of any topic (the retry topic's included) is held twice.
        held = [q for c in consumers.values() for q in c.assigned_queues()]
        if len(held) != len(set(held)):
            return False
        for name, qs in shares.items():
            for q in qs:
                owners[q].add(name)
        return True

    steps = []
    worker = None
    try:
        for action, name in [
            ("join", "c1"),
            ("join", "c2"),
            ("join", "c3"),
            ("leave", "c3"),
            ("leave", "c2"),
        ]:
            began = time.monotonic()
            (start if action == "join" else stop_consumer)(name)
            backend.wait_for(
                partitioned, WAIT, f"one owner per queue after {name} {action}s ({list(consumers)})"
            )
            steps.append((action, name, round(time.monotonic() - began, 1)))
            if worker is None:
                worker = backend.background(produce)
            backend.sleep(1.5)  # consume a while in this shape
            assert partitioned(), f"the assignment changed again after {name} {action}s"
        stop.set()
        assert worker is not None
        total = worker.result(60)
        try:
            backend.wait_for(
                lambda: recorder.distinct() >= set(sent), WAIT, "every message sent to be consumed"
            )
        except AssertionError:
            missing = sorted(set(sent) - recorder.distinct(), key=lambda b: where[b])
            lost = collections.defaultdict(list)
            for body in missing:
                lost[where[body][0]].append(where[body][1])
            detail = {
                f"{mq.broker_name}/{mq.queue_id}": (
                    offsets[:10],
                    admin.consumer_offset(group, mq),
                    sorted(owners[mq]),
                    [n for n, c in consumers.items() if mq in c.assigned_queues()],
                )
                for mq, offsets in lost.items()
            }
            raise AssertionError(
                f"{len(missing)} of {len(sent)} never consumed; by queue: (lost offsets, "
                f"committed, owners seen, owner now): {detail}; steps {steps}"
            ) from None
    finally:
        stop.set()
        for c in consumers.values():
            c.close()
    print(f"{backend.name}: {total} messages; settled after {steps}")

    assert len(sent) == total and total > 100
    deliveries = recorder.snapshot()
    counts = collections.Counter(d.body for d in deliveries)
    assert set(counts) == set(sent), "nothing lost"
    moved = {q for q, names in owners.items() if len(names) > 1}
    by_body: dict[str, list[Delivery]] = collections.defaultdict(list)
    for d in deliveries:
        by_body[d.body].append(d)
    duplicated = {b: ds for b, ds in by_body.items() if len(ds) > 1}
    for body, ds in duplicated.items():
        # Only around a handover: the queue changed hands, and no consumer saw
        # the message twice while the group kept one shape.
        assert ds[0].queue in moved, f"{body} seen twice on a queue that never moved: {ds}"
        once = {(d.consumer, d.phase) for d in ds}
        assert len(once) == len(ds), f"{body} seen twice by one consumer in one phase: {ds}"
    print(f"{backend.name}: {len(duplicated)} seen twice, on {len(moved)} queues that moved")
    assert len(duplicated) <= len(deliveries) // 4, f"{len(duplicated)} duplicates"


# =================================================================== orderly


def test_orderly_consumers_keep_per_key_order(
    backend: Backend, ns: str, admin: Any, producer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Messages of 16 keys (each key to one queue, by ``sharding_key``) consumed
    by two orderly consumers, the second joining half way: per key, each
    consumer sees strictly increasing sequence numbers, a message is never seen
    before its predecessor, nothing is missing, and no two handlers ever run
    for the same key at once."""
    topic = new_topic(backend, admin, "OrdT")
    group = unique("ord")
    keys = [f"key-{k}" for k in range(16)]
    per_key = 30
    rounds = (range(0, 10), range(10, 20), range(20, per_key))
    lock = threading.Lock()
    seen: list[tuple[str, str, int]] = []  # (consumer, key, seq) in handler start order

    # Where each message was stored, and every handler call's queue and offset: what
    # a failure shows (it once found one message never handled and every lag 0).
    stored: dict[tuple[str, int], tuple[str, int, int]] = {}
    calls: list[tuple[str, str, int, int]] = []  # consumer, broker, queue id, offset
    caplog.set_level(logging.INFO, logger="rocketmq_proto")  # "consuming <queue> from offset"

    def handler(name: str) -> Callable[[list[MessageExt]], Any]:
        def handle(msgs: list[MessageExt]) -> Any:
            with lock:
                calls.extend((name, m.broker_name, m.queue_id, m.queue_offset) for m in msgs)
            assert len(msgs) == 1
            key = msgs[0].properties["k"]
            with lock:
                seen.append((name, key, int(msgs[0].properties["seq"])))
            backend.sleep(0.005)
            return ConsumeResult.SUCCESS

        return handle

    def send_round(seq: int) -> None:
        # One message per key at a time: a key's next is sent once its last is stored.
        messages = [
            Message(topic, f"{key}:{seq}".encode(), properties={"k": key, "seq": str(seq)})
            for key in keys
        ]
        results = send_all(backend, producer, messages, sharding_keys=keys)
        for key, result in zip(keys, results, strict=True):
            mq = result.message_queue
            stored[(key, seq)] = (mq.broker_name, mq.queue_id, result.queue_offset)

    consumers: list[Any] = []
    try:
        # A joining orderly consumer cannot lock its share until the holder lets
        # go; it tries again at its next rebalance (Java: 0.5 s later; this
        # client: the next periodic round), hence a shorter interval than 20 s.
        options = {"orderly": True, "rebalance_interval": 5.0}
        c1 = make_consumer(backend, ns, handler("c1"), group, [(topic, "*", False)], **options)
        c1.start()
        consumers.append(c1)
        backend.wait_for(lambda: len(owned(c1, topic)) == 16, WAIT, "c1 to lock every queue")
        for seq in rounds[0]:
            send_round(seq)
        c2 = make_consumer(backend, ns, handler("c2"), group, [(topic, "*", False)], **options)
        c2.start()
        joined = time.monotonic()
        consumers.append(c2)
        # These rounds race the hand-over: some may all go to c1 before c2 locks.
        for seq in rounds[1]:
            send_round(seq)
        backend.wait_for(
            lambda: len(owned(c1, topic)) == 8 and len(owned(c2, topic)) == 8,
            WAIT,
            "the two orderly consumers to split the queues",
        )
        waited = time.monotonic() - joined
        print(f"{backend.name}: c2 held its 8 locked queues {waited:.1f} s after joining")
        assert not set(owned(c1, topic)) & set(owned(c2, topic))
        # Sent once the queues are split, so c2 must consume its share of these.
        for seq in rounds[2]:
            send_round(seq)
        try:
            backend.wait_for(
                lambda: len({(k, s) for _, k, s in seen}) >= len(keys) * per_key,
                WAIT,
                "every ordered message",
            )
        except AssertionError as timed_out:
            # Which messages, and where each consumer stands on each queue.
            with lock:
                got = {(k, s) for _, k, s in seen}
            missing = sorted({(k, s) for k in keys for s in range(per_key)} - got)
            names = ("c1", "c2")[: len(consumers)]
            stands = {n: c.stats().get("queues") for n, c in zip(names, consumers, strict=True)}
            places = {stored.get(m) for m in missing}
            handled = [c for c in calls if (c[1], c[2], c[3]) in places]
            marks = [f"broker_name='{b}', queue_id={q})" for b, q, _ in filter(None, places)]
            said = [
                f"{r.levelname} {r.getMessage()}"
                for r in caplog.records
                if r.levelno >= logging.WARNING or any(m in r.getMessage() for m in marks)
            ]
            raise AssertionError(
                f"{timed_out}: missing {missing}, stored at {sorted(filter(None, places))}, "
                f"handler calls there {handled}; queues {stands}; logged {said[-40:]}"
            ) from None
    finally:
        for c in consumers:
            c.close()

    with lock:
        log = list(seen)
    assert {(k, s) for _, k, s in log} == {(k, s) for k in keys for s in range(per_key)}
    assert {c for c, _, _ in log} == {"c1", "c2"}, "the second consumer took part"
    for key in keys:
        firsts: list[int] = []
        for _, k, s in log:
            if k == key and s not in firsts:
                firsts.append(s)
        assert firsts == list(range(per_key)), f"{key} first seen out of order: {firsts}"
        for name in ("c1", "c2"):
            mine = [s for c, k, s in log if c == name and k == key]
            assert mine == sorted(set(mine)), f"{name} saw {key} out of order: {mine}"


def test_orderly_queue_changes_hands_only_after_its_running_handler_ends(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """While an orderly consumer's handler runs on a queue, no other consumer of
    the group may consume that queue: when a rebalance gives the queue away, the
    broker lock is released only once the running handler ended (Java:
    ``removeUnnecessaryMessageQueue`` tries the queue's consume lock and keeps
    the queue, locked, while it is busy). So the message being handled is not
    handed to the newcomer at the same time."""
    topic = new_topic(backend, admin, "HandT", queues=1)
    group = unique("hand")
    queues = sorted(queue_ends(admin, topic))
    lock = threading.Lock()
    runs: list[
        tuple[str, MessageQueue, int, float, float]
    ] = []  # consumer, queue, offset, start, end

    def handler(name: str) -> Callable[[list[MessageExt]], Any]:
        def handle(msgs: list[MessageExt]) -> Any:
            m = msgs[0]
            start = time.monotonic()
            backend.sleep(6.0 if m.body == b"slow" else 0.01)
            with lock:
                runs.append((name, MessageQueue(m.topic, m.broker_name, m.queue_id),
                             m.queue_offset, start, time.monotonic()))  # fmt: skip
            return ConsumeResult.SUCCESS

        return handle

    def started(name: str) -> int:
        return len(core_of(consumers[name]).queues) and core_of(consumers[name]).in_flight

    consumers: dict[str, Any] = {}
    try:
        for name in ("c1", "c2"):
            consumers[name] = make_consumer(
                backend, ns, handler(name), group, [(topic, "*", False)],
                orderly=True, rebalance_interval=0.5,
            )  # fmt: skip
        consumers["c1"].start()
        backend.wait_for(lambda: len(owned(consumers["c1"], topic)) == 2, WAIT, "c1 to lock both")
        for mq in queues:
            producer.send(Message(topic, b"slow"), 30.0, queue=mq)
        backend.wait_for(lambda: started("c1") == 2, WAIT, "c1's two slow handlers to run")
        consumers["c2"].start()  # c2 takes one of the two busy queues
        backend.wait_for(
            lambda: (
                len(owned(consumers["c1"], topic)) == 1 and len(owned(consumers["c2"], topic)) == 1
            ),
            WAIT,
            "the queues to be split",
        )
        for mq in queues:
            producer.send(Message(topic, b"next"), 30.0, queue=mq)
        backend.wait_for(
            lambda: len({(q, o) for _, q, o, _, _ in runs}) == 4, WAIT, "all four messages"
        )
    finally:
        for c in consumers.values():
            c.close()
    overlapping = [
        (a, b)
        for a in runs
        for b in runs
        if a[0] < b[0] and a[1] == b[1] and a[3] < b[4] and b[3] < a[4]
    ]
    assert not overlapping, f"two consumers ran one queue at once: {overlapping}"


# ============================================================== broadcasting


def test_broadcasting_delivers_everything_to_each_and_offsets_survive_restart(
    backend: Backend, ns: str, admin: Any, producer: Any, tmp_path: Path
) -> None:
    topic = new_topic(backend, admin, "BcT", queues=4)
    group = unique("bc")
    recorder = Recorder(backend)
    dirs = {name: str(tmp_path / name) for name in ("b1", "b2")}
    instances = {name: unique(f"inst-{name}") for name in ("b1", "b2")}

    def broadcaster(name: str, label: str) -> Any:
        return make_consumer(
            backend,
            ns,
            recorder.handler(label),
            group,
            [(topic, "*", False)],
            message_model="BROADCASTING",
            offset_store_dir=dirs[name],
            instance_name=instances[name],
            persist_consumer_offset_interval=1.0,
        )

    first = [Message(topic, b"bc1-%d" % i) for i in range(200)]
    second = [Message(topic, b"bc2-%d" % i) for i in range(100)]
    b1, b2 = broadcaster("b1", "b1"), broadcaster("b2", "b2")
    try:
        b1.start()
        b2.start()
        # Each broadcasting consumer takes every queue (and no retry topic).
        for c in (b1, b2):
            backend.wait_for(holds(c, 8), WAIT, "every queue")
            assert {q.topic for q in c.assigned_queues()} == {topic}
        send_all(backend, producer, first)
        want = {m.body.decode() for m in first}
        for name in ("b1", "b2"):
            backend.wait_for(got_all(recorder, name, want), WAIT, f"{name} to get all")
    finally:
        b1.close()
        b2.close()
    for name in ("b1", "b2"):
        assert recorder.distinct(name) == want
        assert max(recorder.bodies(name).values()) == 1
        files = list(Path(dirs[name]).rglob("offsets.json"))
        assert len(files) == 1 and group in str(files[0]), files

    send_all(backend, producer, second)  # while both are down
    again = broadcaster("b1", "b1-again")
    with again:
        want2 = {m.body.decode() for m in second}
        backend.wait_for(
            lambda: recorder.distinct("b1-again") >= want2, WAIT, "what was sent while down"
        )
        settle(backend)
    got = recorder.bodies("b1-again")
    assert set(got) == want2, f"re-delivered after restart: {sorted(set(got) - want2)[:5]}"
    assert max(got.values()) == 1


def test_broadcasting_offsets_survive_a_restart_without_an_instance_name(
    backend: Backend, ns: str, admin: Any, producer: Any, tmp_path: Path
) -> None:
    """No ``instance_name``: every consumer object has its own generated client id
    (as a restarted process would), yet a new one of the same broadcasting group
    starts where the closed one stopped: the offsets file does not depend on the
    generated name (Java keeps ``DEFAULT`` for broadcasting)."""
    topic = new_topic(backend, admin, "BcRT", queues=2)
    group = unique("bcr")
    recorder = Recorder(backend)
    store = str(tmp_path / "offsets")

    def broadcaster(label: str) -> Any:
        return make_consumer(
            backend,
            ns,
            recorder.handler(label),
            group,
            [(topic, "*", False)],
            message_model="BROADCASTING",
            offset_store_dir=store,
        )

    first = [Message(topic, b"bcr1-%d" % i) for i in range(60)]
    second = [Message(topic, b"bcr2-%d" % i) for i in range(40)]
    before = broadcaster("before")
    with before:
        backend.wait_for(holds(before, 4), WAIT, "every queue")
        send_all(backend, producer, first)
        want1 = {m.body.decode() for m in first}
        backend.wait_for(got_all(recorder, "before", want1), WAIT, "the first batch")
    (offsets_file,) = Path(store).rglob("offsets.json")
    assert offsets_file.parent.parent.name.endswith("@DEFAULT"), offsets_file

    send_all(backend, producer, second)  # while no consumer runs
    after = broadcaster("after")
    assert after.client_id != before.client_id
    with after:
        want2 = {m.body.decode() for m in second}
        backend.wait_for(got_all(recorder, "after", want2), WAIT, "what was sent while down")
        settle(backend)
    got = recorder.bodies("after")
    assert set(got) == want2, f"re-delivered after restart: {sorted(set(got) - want2)[:5]}"
    assert max(got.values()) == 1
    assert list(Path(store).rglob("offsets.json")) == [offsets_file]


# =================================================================== filters


def test_tag_and_sql92_filters(backend: Backend, ns: str, admin: Any, producer: Any) -> None:
    """Tags (non-ASCII, ``||``, and ``Aa`` whose Java hash equals ``BB``'s, so only
    the client's exact re-check can drop ``BB``) and SQL92 on user properties."""
    topic = new_topic(backend, admin, "FiltT", queues=2)
    recorder = Recorder(backend)
    tags = ["标签", "Aa", "BB", "b", None]
    colors = ["red", "blue", "red"]
    messages = []
    for i in range(120):
        props = {"color": colors[i % 3]}
        if i % 7:
            props["a"] = str(i % 10)
        messages.append(Message(topic, b"f-%d" % i, tags=tags[i % 5], properties=props))
    want_tags = {m.body.decode() for m in messages if m.tags in ("标签", "Aa")}
    want_sql = {
        m.body.decode()
        for m in messages
        if "a" in m.properties and int(m.properties["a"]) > 5 and m.properties["color"] == "red"
    }
    assert want_tags and want_sql
    with (
        running(
            backend, ns, recorder.handler("tags"), unique("ftag"), topic, "标签 || Aa",
            consume_from_where="first",
        ),
        running(
            backend, ns, recorder.handler("sql"), unique("fsql"), topic,
            "a > 5 AND color = 'red'", sql=True, consume_from_where="first",
        ),
        running(
            backend, ns, recorder.handler("all"), unique("fall"), topic, "*",
            consume_from_where="first",
        ),
    ):  # fmt: skip
        send_all(backend, producer, messages)
        for name, want in (("tags", want_tags), ("sql", want_sql)):
            backend.wait_for(got_all(recorder, name, want), WAIT, f"the {name} consumer's messages")
        backend.wait_for(lambda: len(recorder.distinct("all")) == 120, WAIT, "all messages")
        settle(backend)
    assert recorder.distinct("tags") == want_tags
    assert {d.tags for d in recorder.snapshot("tags")} == {"标签", "Aa"}
    assert recorder.distinct("sql") == want_sql
    for d in recorder.snapshot("sql"):
        assert d.properties["color"] == "red" and int(d.properties["a"]) > 5


# =========================================================== retry and DLQ


def test_failed_message_is_retried_with_growing_reconsume_times(
    backend: Backend, ns: str, admin: Any, producer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails (an exception), fails (RETRY_LATER), then succeeds: three deliveries
    with reconsume_times 0, 1, 2, under the original topic, after delay levels
    3 and 4 (3 s and 4 s on the test cluster); never a fourth. The exception is
    logged with its traceback, the topic, the group and the message id."""
    topic = new_topic(backend, admin, "RetT", queues=1)
    group = unique("ret")
    recorder = Recorder(backend)

    def result(msg: MessageExt) -> Any:
        if msg.reconsume_times == 0:
            raise RuntimeError("first attempt fails")
        return ConsumeResult.RETRY_LATER if msg.reconsume_times == 1 else ConsumeResult.SUCCESS

    with running(
        backend, ns, recorder.handler(result=result), group, topic, rebalance_interval=2.0
    ) as consumer:
        backend.wait_for(
            lambda: any(q.topic == f"%RETRY%{group}" for q in consumer.assigned_queues()),
            WAIT,
            "the retry topic to be assigned",
        )
        sent = producer.send(Message(topic, b"retry-me", keys=[unique("rk")]), 30.0)
        backend.wait_for(lambda: len(recorder.snapshot()) >= 3, WAIT, "three deliveries")
        settle(backend, seconds=3.0)  # nothing more once it succeeded
    ds = recorder.snapshot()
    assert [d.reconsume_times for d in ds] == [0, 1, 2]
    assert all(d.body == "retry-me" and d.topic == topic for d in ds)
    assert all(d.msg_id == sent.msg_id for d in ds)
    assert ds[0].queue.topic == topic and ds[0].offset == sent.queue_offset
    gaps = [b.at - a.at for a, b in itertools.pairwise(ds)]
    assert gaps[0] >= 2.5 and gaps[1] >= 3.5, gaps
    raised = [r for r in caplog.records if "message handler raised" in r.getMessage()]
    assert len(raised) == 1, [r.getMessage() for r in raised]
    record = raised[0]
    assert record.levelno == logging.WARNING and record.exc_info is not None
    assert "first attempt fails" in record.getMessage()
    assert all(part in record.getMessage() for part in (topic, group, sent.msg_id))
    fields = [getattr(record, f"rocketmq_{name}") for name in ("topic", "group", "msg_ids")]
    assert fields == [topic, group, [sent.msg_id]]


def test_always_failing_message_goes_to_the_dead_letter_queue(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    topic = new_topic(backend, admin, "DlqT", queues=1)
    group = unique("dlq")
    key = unique("dk")
    recorder = Recorder(backend)
    dlq = f"%DLQ%{group}"

    def in_dlq() -> list[MessageExt]:
        try:
            return [m for m in admin.query_messages(dlq, key) if m.topic == dlq]
        except RocketMQError:
            return []

    with running(
        backend,
        ns,
        recorder.handler(result=lambda m: False),
        group,
        topic,
        max_reconsume_times=1,
        rebalance_interval=2.0,
    ) as consumer:
        backend.wait_for(
            lambda: any(q.topic == f"%RETRY%{group}" for q in consumer.assigned_queues()),
            WAIT,
            "the retry topic to be assigned",
        )
        sent = producer.send(Message(topic, b"poison", keys=[key]), 30.0)
        found = backend.wait_for(in_dlq, WAIT, "the message in the dead letter queue")
        settle(backend, seconds=2.0)  # no further delivery once dead
    assert [d.reconsume_times for d in recorder.snapshot()] == [0, 1]
    assert len(found) == 1
    dead = found[0]
    assert dead.body == b"poison" and dead.msg_id == sent.msg_id
    assert dead.properties.get("RETRY_TOPIC") == topic
    offsets = admin.topic_offsets(dlq)
    assert sum(o.max_offset - o.min_offset for o in offsets) == 1


def wait_for_committed_ends(backend: Backend, admin: Any, group: str, ends: dict[Any, int]) -> None:
    """Wait up to 10 s until ``group``'s committed offsets are the queue ``ends``;
    failing, say where they stopped."""
    last: dict[Any, Any] = {}

    def at_the_ends() -> bool:
        last.update({mq: admin.consumer_offset(group, mq) for mq in ends})
        return all(last[mq] == end for mq, end in ends.items())

    try:
        backend.wait_for(at_the_ends, 10, "the committed offsets to reach the queue ends")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: ends {ends}, last read {last}") from None


@pytest.mark.parametrize("orderly", [False, True], ids=["concurrently", "orderly"])
def test_a_handler_returning_none_consumes_each_message_once(
    backend: Backend, ns: str, admin: Any, producer: Any, orderly: bool
) -> None:
    """A handler that just processes its messages and returns nothing consumed
    them: each is delivered once, the offsets reach the queues' ends, and
    nothing is sent back to ``%RETRY%<group>`` (nor suspended and re-run when
    orderly). Past the retry delay (3 s on the test cluster) and the orderly
    suspension (1 s), a failure would have shown as a second delivery."""
    topic = new_topic(backend, admin, "NoneT", queues=2)
    group = unique("none")
    recorder = Recorder(backend)
    n = 40
    messages = [Message(topic, b"none-%d" % i) for i in range(n)]
    send_all(backend, producer, messages)
    ends = settled_queue_ends(backend, admin, topic, n)
    want = {m.body.decode() for m in messages}
    with running(
        backend,
        ns,
        recorder.handler(result=lambda m: None),
        group,
        topic,
        consume_from_where="first",
        orderly=orderly,
    ):
        backend.wait_for(got_all(recorder, "c", want), WAIT, "every message")
        settle(backend, seconds=5.0)
    got = recorder.bodies()
    assert set(got) == want and max(got.values()) == 1, got.most_common(3)
    assert all(d.reconsume_times == 0 and d.topic == topic for d in recorder.snapshot())
    # (The commit at close is confirmed; read a while all the same, as a proxy answers
    # for the broker it relays to.)
    wait_for_committed_ends(backend, admin, group, ends)
    try:
        retry = admin.topic_offsets(f"%RETRY%{group}")
    except RocketMQError:
        retry = []  # the broker never made the group's retry topic
    assert sum(o.max_offset - o.min_offset for o in retry) == 0, retry


# =================================================================== offsets


def test_restart_resumes_exactly_after_the_committed_offset(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """A slow consumer closed part way; the offsets it committed split the
    backlog exactly: everything below was consumed by it, everything from there
    on is delivered by its successor in the same group, and nothing below is."""
    topic = new_topic(backend, admin, "OffT", queues=2)
    group = unique("off")
    recorder = Recorder(backend)
    n = 400
    send_all(backend, producer, [Message(topic, b"off-%d" % i) for i in range(n)])
    ends = settled_queue_ends(backend, admin, topic, n)
    with running(
        backend,
        ns,
        recorder.handler("first", delay=0.02),
        group,
        topic,
        consume_thread_max=2,
        consume_from_where="first",
    ):
        backend.wait_for(lambda: len(recorder.snapshot()) >= 120, WAIT, "some consumed")
    found = {mq: admin.consumer_offset(group, mq) for mq in ends}
    assert all(c is not None for c in found.values()), found
    committed = {mq: int(c or 0) for mq, c in found.items()}
    assert 0 < sum(committed.values()) < n, committed  # part way, and committed on close
    first = {(d.queue, d.offset) for d in recorder.snapshot("first")}
    below = {(mq, o) for mq in ends for o in range(committed[mq])}
    assert below <= first, "an offset was committed past a message never consumed"

    with running(backend, ns, recorder.handler("second"), group, topic):
        above = {(mq, o) for mq, end in ends.items() for o in range(committed[mq], end)}
        backend.wait_for(
            lambda: {(d.queue, d.offset) for d in recorder.snapshot("second")} >= above,
            WAIT,
            "the rest of the backlog",
        )
        settle(backend)
    second = [(d.queue, d.offset) for d in recorder.snapshot("second")]
    assert set(second) == above, f"re-delivered below the commit: {sorted(set(second) - above)[:5]}"
    assert len(second) == len(set(second))
    # The commit at close is confirmed; read a while all the same, as a proxy
    # answers for the broker it relays to.
    wait_for_committed_ends(backend, admin, group, ends)


def test_close_lets_running_handlers_finish_and_commits_their_work(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """Graceful close: handlers running when ``close`` is called finish, no new
    one starts, and what they consumed is committed (as Java's shutdown does:
    consume pool drained, then offsets persisted), so a successor in the group
    does not receive it again."""
    topic = new_topic(backend, admin, "CloseT", queues=2)
    group = unique("close")
    recorder = Recorder(backend)
    n = 24
    send_all(backend, producer, [Message(topic, b"close-%d" % i) for i in range(n)])
    ends = settled_queue_ends(backend, admin, topic, n)
    with running(
        backend,
        ns,
        recorder.handler("first", delay=1.0),
        group,
        topic,
        consume_thread_max=4,
        consume_from_where="first",
    ):
        backend.wait_for(lambda: len(recorder.snapshot()) >= 4, WAIT, "handlers running")
        backend.sleep(0.3)
        started = {(d.queue, d.offset) for d in recorder.snapshot()}
        assert not recorder.done(), "the handlers were meant to be still running at close"
    finished = recorder.done()
    problems = []
    # Every handler running at close ran to its end, and none started meanwhile.
    late = {(d.queue, d.offset) for d in recorder.snapshot()} - started
    if late:
        problems.append(f"{len(late)} handlers started after close was called")
    if not started <= finished:
        problems.append(f"{len(started - finished)} running handlers did not finish")
    committed = {mq: admin.consumer_offset(group, mq) or 0 for mq in ends}
    for mq in ends:
        prefix = 0
        while (mq, prefix) in finished:
            prefix += 1
        if committed[mq] != prefix:
            problems.append(
                f"{mq.broker_name}/{mq.queue_id}: offsets 0..{prefix - 1} were consumed before "
                f"close returned, but the committed offset is {committed[mq]}"
            )
    assert not problems, f"{len(started)} running at close; " + "; ".join(problems)

    with running(backend, ns, recorder.handler("second"), group, topic):
        rest = {(mq, o) for mq, end in ends.items() for o in range(committed[mq], end)}
        backend.wait_for(
            lambda: {(d.queue, d.offset) for d in recorder.snapshot("second")} >= rest,
            WAIT,
            "the rest",
        )
        settle(backend)
    again = {(d.queue, d.offset) for d in recorder.snapshot("second")} & finished
    assert not again, f"consumed before close, delivered again: {sorted(again)[:5]}"


def test_close_waits_for_a_stuck_handler_no_longer_than_await_termination(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """A handler that outlasts ``await_termination`` bounds close() by that time,
    not by the handler; its message is not committed, so the group's next
    consumer receives it again (nothing is lost)."""
    topic = new_topic(backend, admin, "StuckT", queues=1)
    group = unique("stuck")
    released: list[bool] = []
    entered: list[str] = []

    bound = 2.0

    def stuck(msgs: list[MessageExt]) -> None:
        entered.extend(m.body.decode() for m in msgs)
        # Released once close() returned; a close that waited for it would
        # take the 10 s more this gives it, and fail below instead of hanging.
        give_up = time.monotonic() + bound + 10.0
        while not released and time.monotonic() < give_up:
            backend.sleep(0.05)

    send_all(backend, producer, [Message(topic, b"stuck-0")])
    consumer = make_consumer(
        backend,
        ns,
        stuck,
        group,
        [(topic, "*", False)],
        consume_from_where="first",
        await_termination=bound,
    )
    consumer.start()
    try:
        backend.wait_for(lambda: entered, WAIT, "the handler to start")
        began = time.monotonic()
        consumer.close()
        took = time.monotonic() - began
    finally:
        released.append(True)
    # The wait for the handler, plus the commit, unlock and unregister requests.
    assert bound <= took < bound + 5.0, f"close took {took:.1f} s with await_termination={bound}"
    again: list[str] = []
    with running(
        backend, ns, lambda msgs: again.extend(m.body.decode() for m in msgs), group, topic
    ):
        backend.wait_for(lambda: "stuck-0" in again, WAIT, "the unfinished message again")


def test_reset_offsets_to_a_timestamp_while_consuming(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """A running group whose offsets an operator resets to a past time (the
    broker moves them; the consumer's next pulls answer OFFSET_MOVED) consumes
    again exactly what was stored from that time on."""
    topic = new_topic(backend, admin, "ResetT", queues=2)
    group = unique("reset")
    recorder = Recorder(backend)
    early = [Message(topic, b"early-%d" % i) for i in range(30)]
    late = [Message(topic, b"late-%d" % i) for i in range(30)]
    send_all(backend, producer, early)
    backend.sleep(1.5)
    boundary = int(time.time() * 1000)
    backend.sleep(1.5)
    send_all(backend, producer, late)
    ends = settled_queue_ends(backend, admin, topic, len(early) + len(late))
    first_late = {mq: admin.search_offset(mq, boundary) for mq in ends}
    assert sum(end - first_late[mq] for mq, end in ends.items()) == len(late)
    with running(
        backend,
        ns,
        recorder.handler(),
        group,
        topic,
        consume_from_where="first",
        persist_consumer_offset_interval=1.0,
    ) as consumer:
        backend.wait_for(lambda: len(recorder.done()) >= 60, WAIT, "the backlog")
        backend.wait_for(
            lambda: all(admin.consumer_offset(group, mq) == end for mq, end in ends.items()),
            WAIT,
            "the offsets to be committed",
        )
        before = len(recorder.snapshot())
        moved = admin.reset_offsets_by_time(group, topic, boundary)
        assert moved == first_late, (moved, first_late)
        # A message on every queue ends the long polls in progress at once.
        wake = [Message(topic, b"wake-%d" % i) for i in range(4)]
        for i, mq in enumerate(sorted(ends)):
            producer.send(wake[i], 30.0, queue=mq)
        want = {m.body.decode() for m in late + wake}
        backend.wait_for(
            lambda: {d.body for d in recorder.snapshot()[before:]} >= want,
            WAIT,
            "the messages after the reset point again",
        )
        settle(backend)
        assert consumer.consumed >= 60 + len(want)
    again = collections.Counter(d.body for d in recorder.snapshot()[before:])
    assert set(again) == want, sorted(set(again) - want)[:5]
    assert max(again.values()) == 1

    # With nobody of the group online, the offsets move all the same (a 5.x
    # broker moves them itself), and the next consumer starts from them.
    ends = queue_ends(admin, topic)
    assert all(admin.consumer_offset(group, mq) == end for mq, end in ends.items())
    moved = admin.reset_offsets_by_time(group, topic, boundary)
    assert moved == first_late, (moved, first_late)
    assert {mq: admin.consumer_offset(group, mq) for mq in ends} == first_late
    before = len(recorder.snapshot())
    with running(backend, ns, recorder.handler(), group, topic):
        backend.wait_for(
            lambda: {d.body for d in recorder.snapshot()[before:]} >= want,
            WAIT,
            "the messages after the reset point, after a restart",
        )
        settle(backend)
    again = collections.Counter(d.body for d in recorder.snapshot()[before:])
    assert set(again) == want and max(again.values()) == 1, again


def test_consume_from_first_last_and_timestamp(
    backend: Backend, ns: str, admin: Any, producer: Any, tmp_path: Path
) -> None:
    """Where a consumer with no stored offset starts. Broadcasting consumers keep
    offsets locally, so ``consume_from_where`` decides: first = the whole backlog,
    timestamp = what was stored from then on, last = only what comes next. A new
    clustering group asks the broker, which (as for Java clients) answers 0 while
    the queue's first message is still in memory: the whole backlog, whatever
    ``consume_from_where`` says."""
    topic = new_topic(backend, admin, "FromT", queues=2)
    recorder = Recorder(backend)
    early = [Message(topic, b"early-%d" % i) for i in range(40)]
    late = [Message(topic, b"late-%d" % i) for i in range(40)]
    after = [Message(topic, b"after-%d" % i) for i in range(40)]
    send_all(backend, producer, early)
    backend.sleep(1.5)
    boundary = int(time.time() * 1000)
    backend.sleep(1.5)
    send_all(backend, producer, late)

    def bodies(msgs: list[Message]) -> set[str]:
        return {m.body.decode() for m in msgs}

    options: dict[str, dict[str, Any]] = {
        "first": {"consume_from_where": "first"},
        "timestamp": {"consume_from_where": "timestamp", "consume_timestamp": boundary},
        "last": {"consume_from_where": "last"},
        "java-last": {"consume_from_where": "CONSUME_FROM_LAST_OFFSET"},
    }
    want = {
        "first": bodies(early + late + after),
        "timestamp": bodies(late + after),
        "last": bodies(after),
        "clustering-last": bodies(early + late + after),
        "clustering-timestamp": bodies(early + late + after),
    }
    consumers = []
    try:
        for name in ("first", "timestamp", "last"):
            consumers.append(
                make_consumer(
                    backend,
                    ns,
                    recorder.handler(name),
                    unique(f"from{name}"),
                    [(topic, "*", False)],
                    message_model="BROADCASTING",
                    offset_store_dir=str(tmp_path / name),
                    **options[name],
                )
            )
        for name, opts in (
            ("clustering-last", options["java-last"]),
            ("clustering-timestamp", options["timestamp"]),
        ):
            consumers.append(
                make_consumer(
                    backend, ns, recorder.handler(name), unique("fromc"), [(topic, "*", False)],
                    **opts,
                )
            )  # fmt: skip
        for c in consumers:
            c.start()
        for c in consumers:
            backend.wait_for(holds(c, 4, topic), WAIT, "every queue taken")
        send_all(backend, producer, after)
        for name, expected in want.items():
            backend.wait_for(
                got_all(recorder, name, expected), WAIT, f"the {name} consumer's messages"
            )
        settle(backend)
    finally:
        for c in consumers:
            c.close()
    for name, expected in want.items():
        got = recorder.bodies(name)
        assert set(got) == expected, (name, sorted(set(got) ^ expected)[:5])
        assert max(got.values()) == 1, name


# ============================================================== flow control


def test_slow_handler_keeps_held_messages_under_the_flow_control_bound(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """With ``pull_threshold_for_queue`` 50 and batches of 16, a queue never holds
    more than 66 unconsumed messages however far behind a slow handler falls,
    and pulling resumes (everything arrives, once) when it speeds up."""
    topic = new_topic(backend, admin, "SlowT", queues=2)
    group = unique("slow")
    recorder = Recorder(backend)
    threshold, batch = 50, 16
    n = 1000
    slow = threading.Event()
    slow.set()
    send_all(backend, producer, [Message(topic, b"slow-%d" % i) for i in range(n)])
    samples: list[dict[MessageQueue, int]] = []
    with running(
        backend,
        ns,
        recorder.handler(delay=lambda: 0.1 if slow.is_set() else 0.0),
        group,
        topic,
        consume_from_where="first",
        consume_thread_max=2,
        pull_threshold_for_queue=threshold,
        pull_batch_size=batch,
    ) as consumer:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            samples.append(held_counts(backend, consumer))
            backend.sleep(0.05)
        consumed_while_slow = len(recorder.snapshot())
        slow.clear()
        backend.wait_for(lambda: len(recorder.distinct()) >= n, WAIT, "the whole backlog")
    peak = max(c for s in samples for q, c in s.items() if q.topic == topic)
    total_peak = max(sum(c for q, c in s.items() if q.topic == topic) for s in samples)
    print(
        f"{backend.name}: peak {peak} per queue, {total_peak} in all, "
        f"{consumed_while_slow} consumed while slow"
    )
    assert consumed_while_slow < n // 2, (
        "the handler was not slow enough for the test to mean anything"
    )
    assert peak <= threshold + batch, f"a queue held {peak} messages"
    assert total_peak <= 4 * (threshold + batch)
    assert peak >= threshold, f"flow control never engaged (peak {peak})"
    counts = recorder.bodies()
    assert len(counts) == n and max(counts.values()) == 1


def most_handler_calls_at_once(
    backend: Backend,
    ns: str,
    admin: Any,
    producer: Any,
    *,
    name: str,
    queues: int,
    messages: int,
    limit: int,
    seconds: float,
) -> int:
    """Consume ``messages`` stored beforehand in a new topic of ``queues`` queues
    with ``consume_thread_max=limit``, each handler call taking ``seconds``: the
    most calls that ran at once."""
    topic = new_topic(backend, admin, f"{name}T", queues=queues)
    lock = threading.Lock()
    running_now = [0]
    peak = [0]
    done: set[str] = set()

    def handle(msgs: list[MessageExt]) -> Any:
        with lock:
            running_now[0] += 1
            peak[0] = max(peak[0], running_now[0])
        backend.sleep(seconds)
        with lock:
            running_now[0] -= 1
            done.update(m.body.decode() for m in msgs)
        return ConsumeResult.SUCCESS

    send_all(backend, producer, [Message(topic, b"%d" % i) for i in range(messages)])
    with running(
        backend,
        ns,
        handle,
        unique(name),
        topic,
        consume_from_where="first",
        consume_thread_max=limit,
    ):
        backend.wait_for(lambda: len(done) >= messages, WAIT, "the messages")
    return peak[0]


def test_handlers_in_flight_never_exceed_consume_thread_max(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """At most ``consume_thread_max`` handlers run at once (and that many do, with
    a backlog): the bound the issue asks for, in every driver."""
    limit = 3
    peak = most_handler_calls_at_once(
        backend, ns, admin, producer, name="pool", queues=2, messages=150, limit=limit, seconds=0.05
    )
    print(f"{backend.name}: at most {peak} handlers ran at once (consume_thread_max={limit})")
    assert peak <= limit
    assert peak == limit, "the pool never filled: the test means nothing"


def test_each_waiting_batch_gets_a_handler_call_of_its_own(
    backend: Backend, ns: str, admin: Any, producer: Any
) -> None:
    """Fewer batches than ``consume_thread_max``, all in one pull: each is handled
    at once, none waits for another's handler (the workers start one at a time,
    and count the batches they hold as well as those waiting)."""
    n = 4
    peak = most_handler_calls_at_once(
        backend, ns, admin, producer, name="few", queues=1, messages=n, limit=20, seconds=0.5
    )
    assert peak == n, f"at most {peak} of {n} handler calls ran at once"
