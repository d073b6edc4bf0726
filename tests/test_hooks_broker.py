"""Hooks against the real cluster, in each driver: before and after each send, each
consume and each remoting request, with what happened; a hook that raises changes
nothing."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

from rocketmq_proto import (
    ConsumeContext,
    ConsumeResult,
    Hook,
    Message,
    MessageExt,
    RequestContext,
    SendContext,
)
from rocketmq_proto.wire.codes import RequestCode

from .backends import Backend

pytestmark = pytest.mark.broker

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Recorder(Hook):
    """Records every call, as (method, what) pairs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Any]] = []

    def _add(self, name: str, what: Any) -> None:
        with self.lock:
            self.calls.append((name, what))

    def of(self, name: str) -> list[Any]:
        with self.lock:
            return [what for called, what in self.calls if called == name]

    def before_send(self, ctx: SendContext) -> None:
        ctx.extra["seen"] = True
        self._add("before_send", [m.body for m in ctx.messages])

    def after_send(self, ctx: SendContext) -> None:
        self._add("after_send", (ctx.extra.get("seen"), ctx.result, ctx.error, ctx.elapsed))

    def before_consume(self, ctx: ConsumeContext) -> None:
        self._add("before_consume", [m.body for m in ctx.messages])

    def after_consume(self, ctx: ConsumeContext) -> None:
        bodies = [m.body for m in ctx.messages]
        self._add("after_consume", (bodies, ctx.result, ctx.error, ctx.elapsed))

    def before_request(self, ctx: RequestContext) -> None:
        self._add("before_request", (ctx.addr, ctx.request.code))

    def after_request(self, ctx: RequestContext) -> None:
        code = ctx.response.code if ctx.response is not None else None
        self._add("after_request", (ctx.addr, ctx.request.code, code, ctx.error, ctx.elapsed))


class Broken(Hook):
    """Raises in every method."""

    def __init__(self) -> None:
        self.raised = 0

    def _raise(self, ctx: object) -> None:
        self.raised += 1
        raise RuntimeError("a broken hook")

    before_send = after_send = before_consume = after_consume = _raise  # type: ignore[assignment]
    before_request = after_request = _raise  # type: ignore[assignment]


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: Any, backend: Backend) -> str:
    name = unique(f"Hooks_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(name).queue_datas, 20, "the route")
    return name


def test_send_and_request_hooks_see_each_send(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    recorder = Recorder()
    with backend.open(
        "Producer", rocketmq_cluster.namesrv_addr, group=unique("hooks_p"), hooks=[recorder]
    ) as producer:
        result = producer.send(Message(topic, b"hooked"))
        batch = producer.send_batch([Message(topic, b"b1"), Message(topic, b"b2")])
        with pytest.raises(Exception) as failed:
            producer.send(Message(topic, b"x" * (4 * 1024 * 1024 + 1)))
    assert recorder.of("before_send") == [
        [b"hooked"],
        [b"b1", b"b2"],
        [b"x" * (4 * 1024 * 1024 + 1)],
    ]
    sent = recorder.of("after_send")
    assert [(seen, res, err) for seen, res, err, _ in sent[:2]] == [
        (True, result, None),
        (True, batch, None),
    ]
    assert sent[2][1] is None and sent[2][2] is failed.value  # the error the caller got
    assert all(elapsed >= 0 for *_, elapsed in sent)
    # Each request: a route lookup, the sends (SEND_MESSAGE_V2, SEND_BATCH_MESSAGE), ...
    before = recorder.of("before_request")
    after = recorder.of("after_request")
    codes = [code for _, code in before]
    assert RequestCode.GET_ROUTEINFO_BY_TOPIC in codes
    assert RequestCode.SEND_MESSAGE_V2 in codes and RequestCode.SEND_BATCH_MESSAGE in codes
    sends = [
        a for a in after if a[1] in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE)
    ]
    assert len(sends) == 2 and all(code == 0 and error is None for _, _, code, error, _ in sends)
    assert sorted((addr, code) for addr, code, *_ in after) == sorted(before)


def mine(calls: list[Any]) -> list[Any]:
    """The consume hooks' calls for this test's own messages (``ok``, ``fails``)."""
    ours = ([b"ok"], [b"fails"])
    return [c for c in calls if (c[0] if isinstance(c, tuple) else c) in ours]


def test_consume_hooks_see_each_handler_call(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    recorder = Recorder()
    failed_once: set[bytes] = set()

    def handler(messages: list[MessageExt]) -> Any:
        body = messages[0].body
        if body == b"fails" and body not in failed_once:
            failed_once.add(body)
            raise ValueError("first try fails")
        return None

    ns = rocketmq_cluster.namesrv_addr
    consumer = backend.make(
        "PushConsumer", ns, handler, group=unique("hooks_c"), consume_from_where="last"
    )
    consumer.add_hook(recorder)
    consumer.subscribe(topic)
    with consumer:
        backend.wait_for(lambda: consumer.assigned_queues(), WAIT, "queues")
        backend.sleep(1.0)
        with backend.open("Producer", ns, group=unique("hooks_p")) as producer:
            producer.send(Message(topic, b"ok"))
            producer.send(Message(topic, b"fails"))
        backend.wait_for(lambda: len(mine(recorder.of("after_consume"))) >= 3, WAIT, "3 calls")
    # (The topic's earlier messages may come too: a new group may start at a queue's
    # first offset while it is in the broker's memory.)
    assert sorted(mine(recorder.of("before_consume"))) == [[b"fails"], [b"fails"], [b"ok"]]
    results = {
        (tuple(bodies), result, type(error).__name__)
        for bodies, result, error, _ in mine(recorder.of("after_consume"))
    }
    assert results == {
        ((b"ok",), ConsumeResult.SUCCESS, "NoneType"),
        ((b"fails",), ConsumeResult.RETRY_LATER, "ValueError"),
        ((b"fails",), ConsumeResult.SUCCESS, "NoneType"),
    }
    # The consumer's own requests go through the request hooks too (pulls, heartbeats).
    assert RequestCode.PULL_MESSAGE in {code for _, code in recorder.of("before_request")}


def test_a_hook_that_raises_changes_nothing(
    rocketmq_cluster: Any, backend: Backend, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Broken()
    got: list[bytes] = []
    ns = rocketmq_cluster.namesrv_addr
    consumer = backend.make(
        "PushConsumer",
        ns,
        lambda messages: got.extend(m.body for m in messages),
        group=unique("hooks_b"),
        consume_from_where="last",
        hooks=[broken],
    )
    consumer.subscribe(topic)
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.hooks"), consumer:
        backend.wait_for(lambda: consumer.assigned_queues(), WAIT, "queues")
        backend.sleep(1.0)
        with backend.open("Producer", ns, group=unique("hooks_p"), hooks=[broken]) as producer:
            producer.send(Message(topic, b"despite the hook"))
        backend.wait_for(lambda: b"despite the hook" in got, WAIT, "the message")
    assert broken.raised > 0
    assert any("a broken hook" in r.getMessage() for r in caplog.records)
