"""A name-server outage under producers and consumers of the three drivers.

    python namesrv_outage.py OUTAGE_SECONDS AFTER_RESTART_SECONDS

Starts its own cluster (two name servers, two brokers); in one thread per driver
runs a Producer sending a message every 0.25 s, a PushConsumer and a PullConsumer
of the topic (each in a group of its own);
once each has consumed a few, kills both name servers (SIGKILL), waits
OUTAGE_SECONDS, restarts them empty (the brokers register again within 30 s),
keeps sending AFTER_RESTART_SECONDS more, then waits for every message sent to
arrive. Prints one JSON line: per driver, what was sent and when, when each
message arrived, the sends that failed, and any error that ended its thread.
Run in the background by tests/test_namesrv_outage_broker.py, which judges it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]
for path in (_REPO, _REPO / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import cluster as launcher  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from rocketmq_proto import Message  # noqa: E402
from tests.backends import BACKENDS, Backend  # noqa: E402

#: Seconds between two sends of one producer.
SEND_EVERY = 0.25


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class Run:
    """What one driver's producer and consumer did (times on this process's clock)."""

    name: str
    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    #: What the pull consumer polled, and when.
    pulled: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None


def drive(
    run: Run, namesrv: str, topic: str, ready: threading.Event, stop: threading.Event
) -> None:
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
        puller = backend.make(
            "PullConsumer",
            namesrv,
            group=unique(f"outage_pull_{run.name}"),
            consume_from_where="first",
        )
        puller.subscribe(topic)

        def poll(timeout: float) -> None:
            for message in puller.poll(timeout):
                run.pulled.setdefault(message.body.decode(), time.monotonic())

        with (
            consumer,
            puller,
            backend.open("Producer", namesrv, group=unique("outage_p")) as producer,
        ):
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
                poll(0.0)
                if len(run.received) >= 5 and len(run.pulled) >= 5:
                    ready.set()
                backend.sleep(SEND_EVERY)
            backend.wait_for(
                lambda: set(run.sent) <= set(run.received), 60, "every message to arrive"
            )
            deadline = time.monotonic() + 60
            while not set(run.sent) <= set(run.pulled) and time.monotonic() < deadline:
                poll(1.0)
    except BaseException as exc:
        run.error = repr(exc)
    finally:
        ready.set()
        backend.close()


def main() -> int:
    outage, after_restart = float(sys.argv[1]), float(sys.argv[2])
    cluster = launcher.LocalCluster(namesrv_count=2)
    cluster.start()
    try:
        namesrv = cluster.namesrv_addr  # both, "a;b"
        topic = unique("Outage")
        setup = Backend("sync")
        try:
            with setup.open("Admin", namesrv) as admin:
                admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
                setup.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the route")
        finally:
            setup.close()
        runs = [Run(name) for name in BACKENDS]
        readies = [threading.Event() for _ in runs]
        stop = threading.Event()
        threads = [
            threading.Thread(target=drive, args=(run, namesrv, topic, ready, stop))
            for run, ready in zip(runs, readies, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            for ready in readies:
                ready.wait(120)
            outage_began = time.monotonic()
            for index in range(len(cluster.namesrv_addrs)):
                cluster.stop_namesrv(index, kill=True)
            print(f"name servers killed; waiting {outage:g} s", file=sys.stderr, flush=True)
            time.sleep(outage)
            outage_ended = time.monotonic()
            for index in range(len(cluster.namesrv_addrs)):
                cluster.start_namesrv(index)
            print("name servers restarted empty", file=sys.stderr, flush=True)
            time.sleep(after_restart)
        finally:
            stop.set()
            for thread in threads:
                thread.join(180)
        print(
            json.dumps(
                {
                    "outage_began": outage_began,
                    "outage_ended": outage_ended,
                    "runs": [asdict(run) for run in runs],
                }
            ),
            flush=True,
        )
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
