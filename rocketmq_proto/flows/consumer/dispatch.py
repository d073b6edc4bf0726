"""Handing pulled messages to the user's handler, and settling what it answered.

:class:`Handler` runs the handler (where the driver runs user callables) and
reads its answer; :class:`ConcurrentConsumption` is Java's
``ConsumeMessageConcurrentlyService``: batches wait for one of at most
``consume_thread_max`` workers, each batch's result is settled (offsets move,
failed messages are sent back). Orderly consumption is in
:mod:`rocketmq_proto.flows.consumer.orderly`.
"""

from __future__ import annotations

import collections
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rocketmq_proto.flows.consumer.consume import (
    CONSUME_REQUEST_RETRY_DELAY,
    ConsumeResult,
    group_retry_topic,
    handler_verdict,
    mark_consume_start,
    process_concurrent_result_flow,
    reset_retry_topics,
    trace_code,
)
from rocketmq_proto.flows.consumer.push_state import PushContext, QueueState
from rocketmq_proto.flows.effects import Flow, now, sleep, spawn, timed_user_call, wall_ms
from rocketmq_proto.flows.hooks import ConsumeContext
from rocketmq_proto.flows.producer import ProducerCore
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.errors import UserCallbackError

__all__ = [
    "HANDLER_NOT_RUN",
    "ConcurrentConsumption",
    "Consumption",
    "Handler",
    "MessageHandler",
]

log = logging.getLogger("rocketmq_proto.consumer")

#: What a gated handler answers when the consumer closed before it could start.
HANDLER_NOT_RUN: Any = object()

#: A message handler: (messages) -> ConsumeResult, True/False or None (or a coroutine
#: of one). ``None`` is success: a handler fails by saying so, or by raising.
MessageHandler = Callable[[list[MessageExt]], Any]


class Consumption(Protocol):
    """Where a pull loop hands the messages it cached (concurrent or orderly)."""

    def dispatch_flow(
        self, state: QueueState, msgs: list[MessageExt], start_loop: bool
    ) -> Flow[None]:
        """Consume ``msgs``, just cached in ``state``'s process queue; ``start_loop``:
        the process queue asks for an orderly consume loop to be started."""
        ...


@dataclass(slots=True)
class Handler:
    """The user's message handler, run through the driver, and its verdicts."""

    ctx: PushContext
    handler: MessageHandler
    #: Batches taken for consumption and not yet settled: their handler calls, with
    #: the settling of their results (a graceful close waits for them; concurrent
    #: consumption counts its workers' needs by them).
    in_flight: int = 0
    #: Messages handed to the handler in all (for running info and tests).
    consumed: int = 0
    #: A coroutine handler is gated by the driver (after its concurrency limit).
    _is_async: bool = False
    #: The group's retry topic as the brokers name it (made once: asked per call).
    _retry_topic: str = ""

    def __post_init__(self) -> None:
        self._is_async = inspect.iscoroutinefunction(self.handler)
        self._retry_topic = group_retry_topic(self.ctx.group, self.ctx.client.config.namespace)

    def _gate(self, msgs: list[MessageExt]) -> Any:
        """Runs the handler where the driver runs user callables, unless the consumer
        closed while the call waited for a worker: then :data:`HANDLER_NOT_RUN`."""
        if self.ctx.closed:
            return HANDLER_NOT_RUN
        return self.handler(msgs)

    def call_flow(
        self, msgs: list[MessageExt], start_ms: int | None = None, awaited: float | None = None
    ) -> Flow[ConsumeResult | None]:
        """The handler's verdict on ``msgs``, or ``None`` if it did not run (the
        consumer closed). Messages of the retry topic show their original topic.
        ``start_ms``: the wall clock, if the caller just read it; ``awaited``: the
        seconds the messages waited in the client, if known."""
        ctx = self.ctx
        reset_retry_topics(msgs, self._retry_topic, ctx.client.config.namespace)
        handler = self.handler if self._is_async else self._gate
        client = ctx.client
        hooks, tracer = client.hooks, client.tracer
        if start_ms is None and (hooks or tracer is not None):
            start_ms = yield from wall_ms()
        hooked = ConsumeContext(ctx.group, msgs) if hooks else None
        if hooked is not None:
            hooked.timestamp_ms = start_ms or 0
            hooked.await_time = awaited
            hooks.fire("before_consume", hooked)
        # As handed over: the handler may change the list it is given.
        traced = tuple(msgs) if tracer is not None else ()
        error: BaseException | None = None
        took: float | None = None
        try:
            value, took = yield from timed_user_call(handler, msgs)
        except UserCallbackError as exc:
            self._log_error(msgs, exc)
            value, error, took = False, exc.__cause__ or exc, exc.elapsed
        result: ConsumeResult | None = None
        if value is not HANDLER_NOT_RUN:
            self.consumed += len(msgs)
            result = handler_verdict(
                value, msgs, orderly=ctx.orderly, client=client, group=ctx.group
            )
            ctx.metrics.handled(len(msgs), result is ConsumeResult.SUCCESS, took)
            if tracer is not None and traced:
                code = trace_code(result, error)
                tracer.consumed(ctx.group, traced, start_ms or 0, took or 0.0, code)
        if hooked is not None:
            hooked.result, hooked.error = result, error
            hooked.elapsed = took or 0.0  # as the driver timed the call
            hooks.fire("after_consume", hooked)
        return result

    def _log_error(self, msgs: list[MessageExt], exc: UserCallbackError) -> None:
        """Log a handler's exception: its traceback, the topic, group and message ids
        (in the text, and as ``rocketmq_topic``/``rocketmq_group``/``rocketmq_msg_ids``
        fields of the record). The batch then counts as failed."""
        error = exc.__cause__ if exc.__cause__ is not None else exc
        topic = ",".join(sorted({m.topic for m in msgs}))
        group = self.ctx.group
        msg_ids = [m.msg_id for m in msgs]
        log.warning(
            "message handler raised consuming topic %s, group %s, message id(s) %s: %r",
            topic,
            group,
            ", ".join(msg_ids),
            error,
            exc_info=error,
            extra={
                "rocketmq_topic": topic,
                "rocketmq_group": group,
                "rocketmq_msg_ids": msg_ids,
            },
        )


@dataclass(slots=True)
class ConcurrentConsumption:
    """Concurrent consumption: batches wait, in arrival order, for one of at most
    ``consume_thread_max`` workers (Java's consume thread pool)."""

    ctx: PushContext
    handler: Handler
    #: Sends the messages the brokers would not take back to the retry topic.
    producer: ProducerCore
    #: Batches waiting for a consume worker, in arrival order, with their arrival
    #: (wall clock, ms).
    ready: collections.deque[tuple[QueueState, list[MessageExt], int]] = field(
        default_factory=collections.deque
    )
    #: Consume workers running (at most ``consume_thread_max``).
    workers: int = 0
    #: A worker was spawned and has not started yet (see :meth:`_start_workers`).
    _unstarted: bool = False
    #: A :meth:`_start_workers` is spawning: the worker it starts (at once, in the
    #: blocking drivers) starts none itself.
    _spawning: bool = False

    def dispatch_flow(
        self, state: QueueState, msgs: list[MessageExt], start_loop: bool = True
    ) -> Flow[None]:
        """Cut ``msgs`` into batches of ``consume_message_batch_max_size``, queue them,
        start workers for them."""
        size = self.ctx.config.consume_message_batch_max_size
        arrived = yield from wall_ms()
        for i in range(0, len(msgs), size):
            self.ready.append((state, msgs[i : i + size], arrived))
        yield from self._start_workers()

    def _start_workers(self) -> Flow[None]:
        """Consume workers for the waiting batches, up to ``consume_thread_max``
        (Java's consume thread pool: each takes batches until none waits): as many
        as the batches held and waiting need, counting the workers there are. None
        once the consumer closes: a worker would take nothing.

        One at a time: none while a worker spawned earlier has not started, and the
        counts are taken again after each. A driver that starts a spawned flow
        later (asyncio) gets one worker here, and more only as workers start and
        find batches still waiting (each worker asks as it takes a batch): a
        handler that never waits lets the first worker take every batch, where a
        worker per batch would have been started, run, and found nothing left. A
        driver that runs a spawned flow up to its first wait before ``spawn``
        returns (the blocking drivers) gets them all here, one after another: the
        worker has started when ``spawn`` returns.

        A call made while another spawns (by the worker being started, or by a
        flow of another thread while the spawning one is in its ``spawn``) does
        nothing: the spawning call counts again once its ``spawn`` returned, the
        batches added meanwhile included. At most ``consume_thread_max`` plus the
        waiting batches rounds: each round's worker takes a batch or the loop
        ends, so it never spins (a gevent consumer's close once did, in the
        greenlet of the connection whose pull answer brought the batch)."""
        if self._spawning:
            return
        ctx = self.ctx
        for _ in range(ctx.config.consume_thread_max + len(self.ready)):
            if ctx.closed or not self._short_of_workers():
                return
            self.workers += 1
            self._unstarted = self._spawning = True
            try:
                yield from spawn(self.worker_flow(), "consume")
            finally:
                self._spawning = False

    def _short_of_workers(self) -> bool:
        """Whether another worker may start now: none spawned earlier is still to
        start, and the batches held and waiting (up to ``consume_thread_max``)
        outnumber the workers."""
        wanted = min(self.ctx.config.consume_thread_max, self.handler.in_flight + len(self.ready))
        return not self._unstarted and self.workers < wanted

    def worker_flow(self) -> Flow[None]:
        """A consume worker: takes waiting batches until none is left (or the
        consumer closes); for each, the handler, then settle its result."""
        handler = self.handler
        ready = self.ready
        self._unstarted = False
        try:
            while ready and not self.ctx.closed:
                state, msgs, arrived = ready.popleft()
                handler.in_flight += 1  # this worker holds a batch from here
                try:
                    # Help wanted, should this batch's handler wait (asked here
                    # first: this runs per batch, and the spawning flow rarely).
                    if ready and self._short_of_workers():
                        yield from self._start_workers()
                    left = yield from self.consume_flow(state, msgs, arrived)
                finally:
                    handler.in_flight -= 1
                if left:  # to be consumed again here, later (a worker is not held meanwhile)
                    yield from spawn(self._consume_later_flow(state, left), "consume later")
        finally:
            self.workers -= 1

    def _consume_later_flow(self, state: QueueState, msgs: list[MessageExt]) -> Flow[None]:
        yield from sleep(CONSUME_REQUEST_RETRY_DELAY)
        if not self.ctx.closed and not state.request.process_queue.dropped:
            self.ready.append((state, msgs, (yield from wall_ms())))
            yield from self._start_workers()

    def consume_flow(
        self, state: QueueState, msgs: list[MessageExt], arrived_ms: int | None = None
    ) -> Flow[list[MessageExt]]:
        """One concurrent consume request: the handler, then settle its result; the
        messages to consume again locally (their send-back failed). ``arrived_ms``:
        when the batch came (wall clock), for the await-time statistics."""
        ctx = self.ctx
        request = state.request
        pq = request.process_queue
        if not msgs or pq.dropped:
            return []
        start_ms = yield from wall_ms()
        mark_consume_start(msgs, start_ms)
        awaited: float | None = None
        if arrived_ms is not None:
            awaited = max(0, start_ms - arrived_ms) / 1000
            ctx.metrics.awaited.add(awaited)
        result = yield from self.handler.call_flow(msgs, start_ms, awaited)
        if result is None or pq.dropped:
            return []
        if result is ConsumeResult.SUCCESS:
            # Every message done: what process_concurrent_result_flow does then, here
            # (the common case, per batch).
            offset = pq.remove(msgs, (yield from now()))
            if offset >= 0 and not pq.dropped:
                ctx.offsets.update(request.message_queue, offset, increase_only=True)
            return []
        doomed: list[MessageExt] = []
        if ctx.config.clustering:
            # Sent back past the group's maximum (or with a negative delay level),
            # the broker dead-letters them.
            limit, level = ctx.config.max_reconsume, ctx.config.delay_level_when_next_consume
            doomed = [m for m in msgs if level < 0 or m.reconsume_times >= limit]
        left = yield from process_concurrent_result_flow(
            ctx.client,
            ctx.group,
            pq,
            request.message_queue,
            msgs,
            result,
            offsets=ctx.offsets,
            producer=self.producer,
            clustering=ctx.config.clustering,
            delay_level=ctx.config.delay_level_when_next_consume,
            max_reconsume=ctx.config.max_reconsume,
        )
        if doomed:  # counted once their send-back went (the others come back here)
            kept = {id(m) for m in left}
            ctx.metrics.dead_lettered += sum(1 for m in doomed if id(m) not in kept)
        return left
