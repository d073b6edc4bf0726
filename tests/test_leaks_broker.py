"""Nothing a client started outlives its ``close()``: threads, sockets, tasks, greenlets.

Each client class is opened, used against the real cluster and closed many times
in each driver; afterwards the process's threads, file descriptors and the
driver's own tasks are back to what they were before the first cycle: asyncio
tasks; under gevent, no greenlet made since is alive, and no hub watcher made
since is active beyond what the clients living through the cycles hold (see
``footprint.Footprint``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rocketmq_proto import Message, TransactionState

from .backends import Backend
from .footprint import Footprint

pytestmark = pytest.mark.broker

#: Open/use/close cycles per client class and driver (``LEAK_CYCLES`` overrides).
CYCLES = int(os.environ.get("LEAK_CYCLES", "500"))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def leak_topic(rocketmq_cluster: Any, backend: Backend) -> str:
    topic = unique(f"Leak_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the topic's route")
    return topic


def _use_producer(backend: Backend, ns: str, topic: str) -> None:
    with backend.open("Producer", ns, group="leak_producer") as producer:
        producer.send(Message(topic, b"leak"))


def _use_transaction_producer(backend: Backend, ns: str, topic: str) -> None:
    def check(message: Any) -> TransactionState:
        return TransactionState.COMMIT

    with backend.open("TransactionProducer", ns, check, group="leak_tx") as producer:
        producer.send_in_transaction(
            Message(topic, b"leak"), lambda message, arg: TransactionState.COMMIT
        )


#: Every this many cycles, a push consumer also runs its handler on a message (so
#: the handlers' worker threads, greenlets or executor are made and closed too).
HANDLER_EVERY = 25
_push_cycles = [0]


def _use_push_consumer(backend: Backend, ns: str, topic: str) -> None:
    handled: list[int] = []
    _push_cycles[0] += 1
    run_handler = _push_cycles[0] % HANDLER_EVERY == 1
    if run_handler:
        # Sent before the consumer starts: its new group consumes from the first.
        with backend.open("Producer", ns, group="leak_push_producer") as producer:
            producer.send(Message(topic, b"leak"))
    # A group of its own when the handler must run: a consumer of the shared group
    # could find the one queue given to a just-closed member the broker still lists.
    group = unique("leak_handler") if run_handler else f"leak_push_{backend.name}"
    consumer = backend.make(
        "PushConsumer",
        ns,
        lambda messages: handled.append(len(messages)),
        group=group,
        consume_from_where="first",
    )
    consumer.subscribe(topic)
    with consumer:
        if run_handler:
            backend.wait_for(lambda: handled, 30, "the handler to run")


def _use_pull_consumer(backend: Backend, ns: str, topic: str) -> None:
    with backend.open("PullConsumer", ns, group="leak_pull", consume_from_where="last") as consumer:
        consumer.subscribe(topic)
        consumer.poll(0.05)


def _use_admin(backend: Backend, ns: str, topic: str) -> None:
    with backend.open("Admin", ns) as admin:
        admin.topic_route(topic)


def _use_simple_consumer(backend: Backend, ns: str, topic: str) -> None:
    """Each cycle pops a message the long-lived feeder just sent, acks it and closes
    (one group for every cycle: what one cycle acked, the next does not get)."""
    _feeder(backend).send(Message(topic, b"leak-simple"))
    with backend.open(
        "SimpleConsumer",
        ns,
        group=f"leak_simple_{backend.name}",
        consume_from_where="first",
        await_duration=2.0,
    ) as consumer:
        consumer.subscribe(topic)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = consumer.receive(32, invisible_duration=10)
        assert got, "the SimpleConsumer received nothing in 30 s"
        consumer.ack(got)


_pop_push_cycles: dict[str, int] = {}


def _use_pop_push_consumer(mode: str) -> Callable[[Backend, str, str], None]:
    """A PushConsumer with ``consume_mode=mode`` (``pop``, or ``auto`` on a group the
    brokers say pops): opened, popping, closed; every ``HANDLER_EVERY`` cycles its
    handler also consumes a message sent for it (a group of its own, from the first
    message: a pop of a just-closed member can hold the shared group's new one)."""

    def use(backend: Backend, ns: str, topic: str) -> None:
        handled: list[bool] = []  # per handler call: whether its messages were popped
        key = f"{mode}-{backend.name}"
        _pop_push_cycles[key] = _pop_push_cycles.get(key, 0) + 1
        run_handler = _pop_push_cycles[key] % HANDLER_EVERY == 1
        group = unique(f"leak_{mode}_handler") if run_handler else f"leak_{mode}_{backend.name}"
        if run_handler:
            if mode == "auto":
                _admin(backend).create_group(group)
                _admin(backend).set_consume_mode(topic, group, "POP")
            _feeder(backend).send(Message(topic, b"leak-pop"))
        consumer = backend.make(
            "PushConsumer",
            ns,
            lambda messages: handled.append(all(m.properties.get("POP_CK") for m in messages)),
            group=group,
            consume_mode=mode,
            consume_from_where="first" if run_handler else "last",
            pop_invisible_duration=10.0,
        )
        consumer.subscribe(topic)
        with consumer:
            if run_handler:
                backend.wait_for(lambda: handled, 30, f"the {mode} handler to run")
                # Popped messages carry their check point (an auto consumer that
                # pulled would hand over messages without one).
                assert all(handled), f"the {mode} consumer's handler got messages not popped"

    return use


#: Clients that live through the cycles of the pop consumers (opened before the
#: baseline is taken, closed at the module's end): a producer feeding them and an
#: admin setting the request mode of the auto consumers' groups.
_long_lived: dict[tuple[str, str], Any] = {}


def _feeder(backend: Backend) -> Any:
    return _long_lived[(backend.name, "Producer")]


def _admin(backend: Backend) -> Any:
    return _long_lived[(backend.name, "Admin")]


@pytest.fixture(scope="module")
def long_lived(rocketmq_cluster: Any, backend: Backend, leak_topic: str) -> Iterator[None]:
    ns = rocketmq_cluster.namesrv_addr
    with (
        backend.open("Producer", ns, group=f"leak_feeder_{backend.name}") as producer,
        backend.open("Admin", ns) as admin,
    ):
        # The auto consumers' shared group pops the topic too.
        admin.create_group(f"leak_auto_{backend.name}")
        admin.set_consume_mode(leak_topic, f"leak_auto_{backend.name}", "POP")
        # The feeder's connections are made now, before any baseline: it sends to
        # each broker once (round robin), and the consumers ack these too.
        brokers = {b.broker_name for b in admin.topic_route(leak_topic).broker_datas}
        reached: set[str] = set()
        for _ in range(4 * len(brokers)):
            if reached == brokers:
                break
            reached.add(producer.send(Message(leak_topic, b"warm-up")).message_queue.broker_name)
        assert reached == brokers, f"the feeder reached {reached}, not every broker {brokers}"
        _long_lived[(backend.name, "Producer")] = producer
        _long_lived[(backend.name, "Admin")] = admin
        try:
            yield
        finally:
            del _long_lived[(backend.name, "Producer")], _long_lived[(backend.name, "Admin")]


USES: dict[str, Callable[[Backend, str, str], None]] = {
    "Producer": _use_producer,
    "TransactionProducer": _use_transaction_producer,
    "PushConsumer": _use_push_consumer,
    "PushConsumer-pop": _use_pop_push_consumer("pop"),
    "PushConsumer-auto": _use_pop_push_consumer("auto"),
    "SimpleConsumer": _use_simple_consumer,
    "PullConsumer": _use_pull_consumer,
    "Admin": _use_admin,
}


@pytest.mark.parametrize("client", list(USES))
def test_open_use_close_leaves_nothing_behind(
    rocketmq_cluster: Any, backend: Backend, leak_topic: str, long_lived: None, client: str
) -> None:
    use, cycles = USES[client], CYCLES
    ns = rocketmq_cluster.namesrv_addr
    use(backend, ns, leak_topic)  # first use: imports, loggers, caches made once
    backend.sleep(0.5)  # what that use's close ended is gone
    footprint = Footprint(backend)
    for _ in range(cycles):
        use(backend, ns, leak_topic)
    after = footprint.settled()
    print(
        f"\n[{backend.name}] {client}: {cycles} cycles, before {footprint.baseline}, after {after}"
    )
    grown = footprint.grown(after)
    assert not grown, f"{cycles} open/use/close cycles of {client} ({backend.name}) left {grown}"


def test_concurrent_local_transactions_leave_no_thread_behind(
    rocketmq_cluster: Any, backend: Backend, leak_topic: str
) -> None:
    """Local transactions that block, run many at once, need many workers; once the
    producer is closed, none of them is left (the asyncio driver once ran them in the
    loop's default executor, whose threads outlive every client)."""
    ns = rocketmq_cluster.namesrv_addr
    _use_transaction_producer(backend, ns, leak_topic)
    backend.sleep(0.5)
    footprint = Footprint(backend)

    def slow_commit(message: Any, arg: Any) -> TransactionState:
        backend.sleep(0.2)
        return TransactionState.COMMIT

    with backend.open(
        "TransactionProducer", ns, lambda message: TransactionState.COMMIT, group="leak_tx"
    ) as producer:
        sends = [
            backend.background(
                producer.send_in_transaction, Message(leak_topic, b"slow"), slow_commit
            )
            for _ in range(12)
        ]
        states = [send.result(30)[1] for send in sends]
    assert states == [TransactionState.COMMIT] * 12
    grown = footprint.grown(footprint.settled())
    assert not grown, f"12 concurrent local transactions ({backend.name}) left {grown}"
