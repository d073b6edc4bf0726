"""Failover against a real cluster: a broker stops while a producer keeps sending.

The module starts its own 5.x cluster (broker-a, broker-b) and, for each driver,
sends continuously while broker-a is stopped and started again. Every send either
succeeds or raises a :class:`RocketMQError`; every acknowledged message is read
back afterwards (none missing); while broker-a is down, sends go to broker-b
(latency fault tolerance keeps the producer away from the dead broker).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rocketmq_proto import (
    Hook,
    Message,
    RequestContext,
    RequestTimeoutError,
    RocketMQError,
    SendResult,
    SendStatus,
)
from rocketmq_proto.wire.codes import RequestCode

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

STOPPED = "broker-a"
SURVIVOR = "broker-b"
PACE = 0.05  # seconds between two sends: ~20 sends a second
BEFORE_SENDS = 40  # acknowledged sends before broker-a is stopped
DOWN_SENDS = 60  # sends begun while broker-a is down
AFTER_SENDS = 20  # sends begun once broker-a is back
# Generous for a loaded 2-core machine; a failed send must give up within it.
SEND_TIMEOUT = 10.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[launcher.LocalCluster]:
    local = launcher.LocalCluster(version=launcher.DEFAULT_VERSION)
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start the failover cluster: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def healthy_cluster(cluster: launcher.LocalCluster) -> launcher.LocalCluster:
    """The cluster with both brokers up and registered (a failed run may have left one down)."""
    for name in cluster.brokers:
        if not cluster.is_running(name):
            cluster.start_broker(name)
    deadline = time.monotonic() + 60
    while launcher._query_cluster(cluster.namesrv_addr) != cluster.brokers:
        if time.monotonic() > deadline:
            pytest.fail("the brokers did not all register again", pytrace=False)
        time.sleep(0.5)
    return cluster


def off_the_hub(backend: Backend, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking launcher call; under gevent in a real thread, so the hub keeps running."""
    if backend.name == "gevent":
        import gevent

        return gevent.get_hub().threadpool.spawn(fn, *args).get()
    return fn(*args)


@dataclass
class Outcome:
    index: int
    phase_at_start: str
    phase_at_end: str
    message: Message
    result: SendResult | None
    error: BaseException | None
    seconds: float

    @property
    def broker(self) -> str | None:
        """The broker that stored the message (None: the send failed)."""
        return self.result.message_queue.broker_name if self.result is not None else None


@dataclass
class SenderState:
    phase: str = "before"
    done: bool = False


def test_sends_survive_a_broker_stop_and_restart(
    healthy_cluster: launcher.LocalCluster, backend: Backend
) -> None:
    cluster = healthy_cluster
    ns = cluster.namesrv_addr
    topic = unique(f"FailoverT_{backend.name}")
    with (
        backend.open("Admin", ns, request_timeout=20.0) as admin,
        backend.open(
            "Producer", ns, group=unique("failover"), send_timeout=SEND_TIMEOUT
        ) as producer,
    ):
        created = admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        assert sorted(created) == sorted(cluster.brokers)

        state = SenderState()
        outcomes: list[Outcome] = []

        def send_continuously() -> None:
            index = 0
            while not state.done:
                phase = state.phase
                msg = Message(
                    topic, b"failover-%d-" % index + uuid.uuid4().bytes, keys=[f"k{index}"]
                )
                began = time.monotonic()
                result: SendResult | None = None
                error: BaseException | None = None
                try:
                    result = producer.send(msg)
                except Exception as exc:  # checked below: must be a RocketMQError
                    error = exc
                outcomes.append(
                    Outcome(index, phase, state.phase, msg, result, error, time.monotonic() - began)
                )
                index += 1
                backend.sleep(PACE)

        sender = backend.background(send_continuously)

        timings: dict[str, float] = {}

        def count(predicate: Callable[[Outcome], bool]) -> int:
            return sum(1 for o in list(outcomes) if predicate(o))

        try:
            # Both brokers take messages first (a just restarted broker may be slow at
            # first, and fault tolerance then avoids it for a few seconds).
            backend.wait_for(
                lambda: (
                    count(lambda o: o.result is not None) >= BEFORE_SENDS
                    and count(lambda o: o.broker == STOPPED) >= 5
                ),
                90,
                "sends to both brokers of the healthy cluster",
            )
            state.phase = "stopping"
            timings["stop"] = -time.monotonic()
            off_the_hub(backend, cluster.stop_broker, STOPPED)
            timings["stop"] += time.monotonic()
            state.phase = "down"
            backend.wait_for(
                lambda: count(lambda o: o.phase_at_start == "down") >= DOWN_SENDS,
                120,
                "sends while broker-a is down",
            )
            state.phase = "starting"
            timings["start"] = -time.monotonic()
            off_the_hub(backend, cluster.start_broker, STOPPED)
            timings["start"] += time.monotonic()
            state.phase = "after"
            backend.wait_for(
                lambda: count(lambda o: o.phase_at_start == "after") >= AFTER_SENDS,
                120,
                "sends after broker-a is back",
            )
        finally:
            state.done = True
            sender.result(60)
            if not cluster.is_running(STOPPED):
                off_the_hub(backend, cluster.start_broker, STOPPED)

        # 1. Every send either succeeded or raised one of the client's errors.
        unexpected = [
            o for o in outcomes if o.error is not None and not isinstance(o.error, RocketMQError)
        ]
        assert not unexpected, [repr(o.error) for o in unexpected]
        failed = [o for o in outcomes if o.error is not None]
        acked = [(o, o.result) for o in outcomes if o.result is not None]
        by_phase: dict[str, list[Outcome]] = {}
        for o in outcomes:
            by_phase.setdefault(o.phase_at_start, []).append(o)
        summary = {
            phase: (
                len(items),
                sum(1 for o in items if o.result is not None),
                sorted({o.broker for o in items if o.broker is not None}),
                sorted({type(o.error).__name__ for o in items if o.error}),
                round(max(o.seconds for o in items), 2),
            )
            for phase, items in by_phase.items()
        }
        print(f"\n[{backend.name}] phase: (sends, acked, brokers, errors, slowest s) {summary}")
        print(f"[{backend.name}] stop_broker / start_broker took {timings}")
        for o in failed:
            print(f"[{backend.name}] send {o.index} ({o.phase_at_start}) failed: {o.error!r}")

        # A failed send gave up within its timeout and a little scheduling slack.
        assert all(o.seconds < SEND_TIMEOUT + 3.0 for o in failed), [
            (o.index, o.seconds, repr(o.error)) for o in failed
        ]
        # Before the stop both brokers took messages (round robin over their 8 queues).
        assert {o.broker for o in by_phase["before"]} - {None} == {STOPPED, SURVIVOR}
        assert all(result.status is SendStatus.SEND_OK for _, result in acked)

        # 2. While broker-a was down, sends went to broker-b: fault tolerance keeps the
        # producer away from it, so almost no send failed.
        down = by_phase["down"]
        down_acked = [o for o in down if o.result is not None]
        assert all(o.broker == SURVIVOR for o in down_acked)
        assert len(down_acked) >= 0.9 * len(down), summary

        # 3. After the restart sends succeed again.
        after = by_phase["after"]
        assert sum(1 for o in after if o.result is not None) >= 0.9 * len(after), summary

        # 4. No acknowledged message is missing: each is read back by its offset id
        # (broker-a's from its store, now that it is back).
        assert len({result.msg_id for _, result in acked}) == len(acked)
        missing = []
        for o, result in acked:
            try:
                stored = admin.view_message(result.offset_msg_id)
            except RocketMQError as exc:
                missing.append((o.index, o.broker, repr(exc)))
                continue
            assert stored.body == o.message.body
            assert stored.msg_id == result.msg_id
            assert stored.queue_offset == result.queue_offset
            assert stored.topic == topic
        assert not missing, missing


#: The pull consumer's pull timeout in the stall test, and the broker's long poll.
PULL_TIMEOUT = 5.0
BROKER_SUSPEND = 2.0
#: How soon after the stalled broker answers again the queue must deliver: well
#: under the error back-off (3 s) that used to follow a pull that timed out.
DELIVERY_BOUND = 2.0


class ResumeOnPullTimeout(Hook):
    """A request hook that lets the frozen broker run again (SIGCONT) the moment
    the consumer sees a PULL_MESSAGE to it time out, before the consumer decides
    when to pull next; it records when (``time.monotonic()``)."""

    def __init__(self, cluster: launcher.LocalCluster, broker: str) -> None:
        self.cluster = cluster
        self.broker = broker
        self.armed = False
        self.resumed_at: float | None = None
        self.timeout_error: BaseException | None = None

    def after_request(self, ctx: RequestContext) -> None:
        if not self.armed or self.resumed_at is not None:
            return
        # The consumer's one assigned queue is on the frozen broker: its pulls go there.
        if ctx.request.code != RequestCode.PULL_MESSAGE:
            return
        if isinstance(ctx.error, RequestTimeoutError):
            self.cluster.resume_broker(self.broker)  # a signal: does not block
            self.resumed_at = time.monotonic()
            self.timeout_error = ctx.error


def test_an_assigned_queue_delivers_within_one_pull_timeout_once_a_stalled_broker_answers(
    healthy_cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """A broker frozen (SIGSTOP) makes the pull in flight of an assigned queue time
    out. A hook lets the broker run again (SIGCONT) as soon as the consumer sees
    that timeout, and a message is sent there at once: it must reach ``poll``
    well under the error back-off (3 s). A pull that timed out already waited
    longer than the back-off, so the next goes at once; a back-off counted from
    the failure would keep the queue silent for 3 s after the broker is back."""
    ns = healthy_cluster.namesrv_addr
    topic = unique(f"Stall_{backend.name}")
    resumer = ResumeOnPullTimeout(healthy_cluster, STOPPED)
    with (
        backend.open("Admin", ns) as admin,
        backend.open("Producer", ns, group=unique("stall_p")) as producer,
        backend.open(
            "PullConsumer",
            ns,
            group=unique("stall_c"),
            consumer_timeout_when_suspend=PULL_TIMEOUT,
            broker_suspend_max_time=BROKER_SUSPEND,
            hooks=[resumer],
        ) as consumer,
    ):
        admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
        backend.wait_for(lambda: len(admin.topic_route(topic).queue_datas) == 2, 30, "the route")
        queue = next(q for q in consumer.queues_of(topic) if q.broker_name == STOPPED)
        consumer.assign([queue])
        producer.send(Message(topic, b"before"), queue=queue)
        backend.wait_for(lambda: consumer.poll(0.5), 30, "the message sent before the stall")

        resumer.armed = True
        off_the_hub(backend, healthy_cluster.pause_broker, STOPPED)
        try:
            # The pull in flight times out within one pull timeout of the pause
            # (it was sent at most then); the hook resumes the broker at once.
            backend.wait_for(
                lambda: resumer.resumed_at is not None,
                3 * PULL_TIMEOUT,
                "a PULL_MESSAGE to the frozen broker to time out",
            )
        finally:
            resumer.armed = False
            off_the_hub(backend, healthy_cluster.resume_broker, STOPPED)
        resumed_at = resumer.resumed_at
        assert resumed_at is not None
        producer.send(Message(topic, b"after"), queue=queue)  # answered: the broker is back
        got: list[bytes] = []
        while not got and time.monotonic() - resumed_at < 3 * PULL_TIMEOUT:
            got = [m.body for m in consumer.poll(0.1)]
        took = time.monotonic() - resumed_at
        assert got == [b"after"], f"nothing polled {took:.1f} s after the broker answered again"
        print(
            f"\n[{backend.name}] pull timed out ({resumer.timeout_error!r}); broker resumed; "
            f"delivered {took:.2f} s later"
        )
        assert took < DELIVERY_BOUND, (
            f"delivered {took:.2f} s after the broker answered again (bound {DELIVERY_BOUND} s)"
        )
