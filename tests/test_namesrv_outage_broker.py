"""Name-server outages against a real cluster of two name servers and two brokers.

* With one of two name servers dead (connection refused, or black-holed so that a
  connect hangs), a new client of each driver starts and sends within one connect
  timeout.
* With routes known, both name servers killed for ``NAMESRV_OUTAGE_SECONDS`` (5 min by
  default) and then restarted empty, producers of the three drivers, sending all the
  while, fail no send, and their push consumers receive every message promptly.

The module starts its own cluster: it kills that cluster's name servers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rocketmq_proto import Message

from .backends import BACKENDS, Backend

_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))

import cluster as launcher  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

pytestmark = pytest.mark.broker

#: How long both name servers stay dead (``NAMESRV_OUTAGE_SECONDS`` overrides).
OUTAGE = float(os.environ.get("NAMESRV_OUTAGE_SECONDS", "300"))
#: After the restart, the name servers know no topic until the brokers register again
#: (every 30 s): keep sending through that window and past it.
AFTER_RESTART = 45.0
#: A message sent while the name servers were away must still arrive this soon.
MAX_DELIVERY_DELAY = 20.0
CONNECT_TIMEOUT = 3.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[launcher.LocalCluster]:
    local = launcher.LocalCluster(namesrv_count=2)
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start a cluster with two name servers: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


def _create_topic(backend: Backend, namesrv: str, topic: str) -> None:
    with backend.open("Admin", namesrv) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the topic's route")


def _refused_addr() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # closed again: connects are refused


class _BlackHole:
    """A port whose connects hang: its one-slot accept queue is full and never served."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.addr = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.fillers: list[socket.socket] = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(self.server.getsockname())
            self.fillers.append(filler)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            with pytest.raises(TimeoutError):
                probe.connect(self.server.getsockname())
        finally:
            probe.close()

    def close(self) -> None:
        for sock in [*self.fillers, self.server]:
            sock.close()


def test_one_dead_name_server_of_two_costs_a_new_client_less_than_a_connect_timeout(
    cluster: launcher.LocalCluster,
) -> None:
    live = cluster.namesrv_addrs[1]
    black_hole = _BlackHole()
    try:
        for name in BACKENDS:
            backend = Backend(name)
            try:
                topics = [unique(f"Dead_{name}") for _ in range(2)]
                for topic in topics:
                    _create_topic(backend, live, topic)
                for dead in (_refused_addr(), black_hole.addr):
                    started = time.monotonic()
                    with backend.open(
                        "Producer",
                        [dead, live],
                        group=unique("dead_ns"),
                        connect_timeout=CONNECT_TIMEOUT,
                    ) as producer:
                        producer.send(Message(topics[0], b"first"))
                        first = time.monotonic() - started
                        began = time.monotonic()
                        producer.send(Message(topics[1], b"second"))  # a new route
                        second = time.monotonic() - began
                    assert first < CONNECT_TIMEOUT, (name, dead, first)
                    assert second < 1.0, (name, dead, second)  # the live one is asked first
            finally:
                backend.close()
    finally:
        black_hole.close()


@dataclass
class _Run:
    """What one driver's producer and consumer did."""

    name: str
    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    error: BaseException | None = None
    ready: threading.Event = field(default_factory=threading.Event)


def _drive(run: _Run, namesrv: str, topic: str, stop: threading.Event) -> None:
    backend = Backend(run.name)
    try:

        def handle(messages: list[Any]) -> None:
            for message in messages:
                run.received.setdefault(message.body.decode(), time.monotonic())

        consumer = backend.make(
            "PushConsumer",
            namesrv,
            handle,
            group=unique(f"outage_{run.name}"),
            consume_from_where="first",
        )
        consumer.subscribe(topic)
        with consumer, backend.open("Producer", namesrv, group=unique("outage_p")) as producer:
            count = 0
            while not stop.is_set():
                body = f"{run.name}-{count}"
                count += 1
                began = time.monotonic()
                try:
                    producer.send(Message(topic, body.encode()))
                except Exception as exc:
                    run.failures.append((began, repr(exc)))
                else:
                    run.sent[body] = began
                if len(run.received) >= 5:
                    run.ready.set()
                backend.sleep(0.25)
            backend.wait_for(
                lambda: set(run.sent) <= set(run.received), 60, "every message to arrive"
            )
    except BaseException as exc:
        run.error = exc
        run.ready.set()
    finally:
        backend.close()


def test_a_name_server_outage_fails_no_send_and_stalls_no_consumer(
    cluster: launcher.LocalCluster,
) -> None:
    namesrv = cluster.namesrv_addr  # both
    topic = unique("Outage")
    setup = Backend("sync")
    try:
        _create_topic(setup, namesrv, topic)
    finally:
        setup.close()
    stop = threading.Event()
    runs = [_Run(name) for name in BACKENDS]
    threads = [
        threading.Thread(target=_drive, args=(run, namesrv, topic, stop), name=f"outage-{run.name}")
        for run in runs
    ]
    for thread in threads:
        thread.start()
    try:
        for run in runs:
            assert run.ready.wait(60), f"{run.name}: nothing consumed before the outage"
            assert run.error is None, f"{run.name} failed before the outage: {run.error!r}"
        outage_began = time.monotonic()
        for index in range(len(cluster.namesrv_addrs)):
            cluster.stop_namesrv(index, kill=True)
        time.sleep(OUTAGE)
        for index in range(len(cluster.namesrv_addrs)):
            cluster.start_namesrv(index)  # empty: the brokers register again within 30 s
        time.sleep(AFTER_RESTART)
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    for run in runs:
        assert run.error is None, f"{run.name}: {run.error!r}"
        assert not run.failures, f"{run.name}: {len(run.failures)} sends failed: {run.failures[:5]}"
        during = [body for body, when in run.sent.items() if when >= outage_began]
        assert len(during) > OUTAGE, f"{run.name} sent only {len(during)} during the outage"
        delays = {body: run.received[body] - run.sent[body] for body in run.sent}
        slowest = max(delays, key=delays.__getitem__)
        assert delays[slowest] < MAX_DELIVERY_DELAY, (
            f"{run.name}: {slowest} arrived {delays[slowest]:.1f} s after it was sent"
        )
