"""Name-server outages against real clusters.

* With one of two name servers dead (connection refused, or black-holed so that a
  connect hangs), a new client of each driver starts and sends within one connect
  timeout (the live one is the session cluster's).
* With routes known, both name servers of a cluster killed for
  ``NAMESRV_OUTAGE_SECONDS`` (5 min by default) and then restarted empty, producers
  of the three drivers, sending all the while, fail no send, and their push
  consumers receive every message promptly. That scenario mostly waits, so it runs
  in a child process beside the rest of the suite, with its own cluster
  (``tests/programs/namesrv_outage.py``, started by ``tests/background.py``); the
  test here judges what it printed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message

from .backends import BACKENDS, Backend
from .background import NAMESRV_OUTAGE, background_run

pytestmark = pytest.mark.broker

#: A message sent while the name servers were away must still arrive this soon.
MAX_DELIVERY_DELAY = 20.0
CONNECT_TIMEOUT = 3.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


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


def _two_sends(backend: Backend, namesrvs: list[str], topics: list[str]) -> tuple[float, float]:
    """Seconds a new producer takes to start and send to ``topics[0]``, and then to
    send to ``topics[1]`` (each a route it must look up)."""
    started = time.monotonic()
    with backend.open(
        "Producer", namesrvs, group=unique("dead_ns"), connect_timeout=CONNECT_TIMEOUT
    ) as producer:
        producer.send(Message(topics[0], b"first"))
        first = time.monotonic() - started
        began = time.monotonic()
        producer.send(Message(topics[1], b"second"))
        second = time.monotonic() - began
    return first, second


def test_one_dead_name_server_of_two_costs_a_new_client_less_than_a_connect_timeout(
    rocketmq_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    live = rocketmq_cluster.namesrv_addr
    black_hole = _BlackHole()
    try:
        for name in BACKENDS:
            backend = Backend(name)
            try:
                topics = [unique(f"Dead_{name}") for _ in range(2)]
                for topic in topics:
                    _create_topic(backend, live, topic)
                for dead in (_refused_addr(), black_hole.addr):
                    # The same with the live name server alone, just before: what a
                    # busy machine adds is not blamed on the dead one.
                    alone, _ = _two_sends(backend, [live], topics)
                    with caplog.at_level("WARNING", logger="rocketmq_proto.client"):
                        first, _ = _two_sends(backend, [dead, live], topics)
                        asked = [
                            r
                            for r in caplog.records
                            if r.name == "rocketmq_proto.client"
                            and r.getMessage().startswith(f"name server {dead} failed")
                        ]
                    assert first - alone < CONNECT_TIMEOUT, (name, dead, first, alone)
                    # Only the first lookup tried the dead one; the second asked the
                    # live one first.
                    assert len(asked) == 1, (name, dead, [r.getMessage() for r in asked])
                    caplog.clear()
            finally:
                backend.close()
    finally:
        black_hole.close()


def _slowest(sent: dict[str, float], got: dict[str, float]) -> tuple[float, str] | None:
    """The longest a message that arrived took from its send, and which; ``None`` if
    none arrived."""
    delays = [(got[body] - when, body) for body, when in sent.items() if body in got]
    return max(delays) if delays else None


def outage_figures(result: dict[str, Any], began: float, ended: float) -> dict[str, Any]:
    """One driver's figures from the outage program's report: sends acknowledged
    during the outage and after it, failed sends, messages that never arrived and
    the slowest delivery (seconds from send), for the push and the pull consumer."""
    sent = result["sent"]
    figures: dict[str, Any] = {
        "sent in outage": sum(1 for when in sent.values() if began <= when <= ended),
        "sent after": sum(1 for when in sent.values() if when > ended),
        "failed sends": len(result["failures"]),
    }
    for consumer, got in (("push", result["received"]), ("pull", result["pulled"])):
        figures[f"{consumer} missing"] = len(set(sent) - set(got))
        slowest = _slowest(sent, got)
        figures[f"{consumer} slowest s"] = None if slowest is None else round(slowest[0], 2)
        figures[f"{consumer} slowest msg"] = None if slowest is None else slowest[1]
    return figures


def describe(name: str, figures: dict[str, Any]) -> str:
    """The figures as one line (printed, and quoted by a failed assertion)."""
    return f"[{name}] " + ", ".join(f"{key}: {value}" for key, value in figures.items())


def test_a_name_server_outage_fails_no_send_and_stalls_no_consumer() -> None:
    run = background_run(NAMESRV_OUTAGE)
    outage = float(NAMESRV_OUTAGE.args[0])
    # Cluster start, warm-up, the outage, 45 s after it, draining: started long ago
    # when the whole suite runs, this waits only when the test is run alone.
    outcome = run.outcome(timeout=outage + 600)
    assert outcome.returncode == 0, outcome.stderr[-5000:]
    report = json.loads(outcome.stdout.strip().splitlines()[-1])
    began, ended = report["outage_began"], report["outage_ended"]
    assert ended - began >= outage
    figures = {r["name"]: outage_figures(r, began, ended) for r in report["runs"]}
    print(f"\nname servers down {ended - began:.1f} s, then back empty:")
    for name, driver_figures in figures.items():
        print(describe(name, driver_figures))
    for result in report["runs"]:
        name, sent, received = result["name"], result["sent"], result["received"]
        line = describe(name, figures[name])
        assert result["error"] is None, f"{name}: {result['error']}\n{line}"
        failures = result["failures"]
        assert not failures, f"{name}: {len(failures)} sends failed: {failures[:5]}\n{line}"
        # One send every 0.25 s: at least one a second all through the outage.
        assert figures[name]["sent in outage"] >= outage, (
            f"{name} sent only {figures[name]['sent during']} during the outage\n{line}"
        )
        for consumer, got in (("push consumer", received), ("pull consumer", result["pulled"])):
            missing = set(sent) - set(got)
            assert not missing, f"{name} {consumer}: {len(missing)} messages never arrived\n{line}"
            slowest = _slowest(sent, got)
            assert slowest is not None and slowest[0] < MAX_DELIVERY_DELAY, (
                f"{name} {consumer}: the slowest message took {slowest} s\n{line}"
            )
