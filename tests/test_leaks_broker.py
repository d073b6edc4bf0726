"""Nothing a client started outlives its ``close()``: threads, sockets, tasks, greenlets.

Each client class is opened, used against the real cluster and closed many times
in each driver; afterwards the process's threads, file descriptors and the
driver's own tasks (asyncio tasks, live greenlets and hub watchers) are back to
what they were before the first cycle.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rocketmq_proto import Message, TransactionState

from .backends import Backend

pytestmark = pytest.mark.broker

#: Open/use/close cycles per client class and driver (``LEAK_CYCLES`` overrides).
CYCLES = int(os.environ.get("LEAK_CYCLES", "500"))


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _live_greenlets() -> int:
    import greenlet

    return sum(
        1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and obj and not obj.dead
    )


def _footprint(backend: Backend) -> dict[str, int]:
    """What a client could leave behind, counted in this driver."""
    counts = {"threads": threading.active_count(), "fds": _open_fds()}
    if backend.name == "asyncio":
        assert backend._loop is not None

        def tasks() -> int:
            return len(asyncio.all_tasks())

        counts["tasks"] = backend._loop.call(tasks)
    elif backend.name == "gevent":
        import gevent

        gc.collect()
        counts["greenlets"] = _live_greenlets()
        counts["hub watchers"] = gevent.get_hub().loop.activecnt
    return counts


def _settled(backend: Backend, baseline: dict[str, int], timeout: float = 15.0) -> dict[str, int]:
    """The footprint once it is back to ``baseline`` (or the last one seen after ``timeout``:
    a thread or greenlet that is ending may need a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        now = _footprint(backend)
        if all(now[key] <= baseline[key] for key in baseline) or time.monotonic() > deadline:
            return now
        backend.sleep(0.1)


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


USES: dict[str, Callable[[Backend, str, str], None]] = {
    "Producer": _use_producer,
    "TransactionProducer": _use_transaction_producer,
    "PushConsumer": _use_push_consumer,
    "PullConsumer": _use_pull_consumer,
    "Admin": _use_admin,
}


@pytest.mark.parametrize("client", list(USES))
def test_open_use_close_leaves_nothing_behind(
    rocketmq_cluster: Any, backend: Backend, leak_topic: str, client: str
) -> None:
    use, cycles = USES[client], CYCLES
    ns = rocketmq_cluster.namesrv_addr
    use(backend, ns, leak_topic)  # first use: imports, loggers, caches made once
    backend.sleep(0.5)  # what that use's close ended is gone
    baseline = _footprint(backend)
    for _ in range(cycles):
        use(backend, ns, leak_topic)
    after = _settled(backend, baseline)
    print(f"\n[{backend.name}] {client}: {cycles} cycles, before {baseline}, after {after}")
    grown = {
        key: f"{baseline[key]} -> {after[key]}" for key in baseline if after[key] > baseline[key]
    }
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
    baseline = _footprint(backend)

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
    after = _settled(backend, baseline)
    grown = {
        key: f"{baseline[key]} -> {after[key]}" for key in baseline if after[key] > baseline[key]
    }
    assert not grown, f"12 concurrent local transactions ({backend.name}) left {grown}"
