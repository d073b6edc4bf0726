"""A push consumer in POP mode (RocketMQ 5.x; ``consume_mode="pop"``).

No client rebalance: every consumer of the group pops from every queue of every
broker of its topics (one long-polling pop loop per topic and broker), hands
the messages to the handler and acks what it consumed. A batch the handler
failed is hidden again for the broker's retry delay of its attempt
(CHANGE_MESSAGE_INVISIBLETIME; delay level 3 + the times it was consumed
before, as the broker's own retries), so it comes back, its reconsume count
raised; after ``max_reconsume_times`` (16) it goes to the group's dead-letter
queue instead of being dropped. An orderly consumer pops in FIFO mode: the
broker hands a queue's messages in order and holds the next until the
previous is acked; the loop consumes them one batch after another.

It reuses the simple consumer's core for POP, acks and receipt handles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.consumer.consume import (
    ConsumeResult,
    consume_directly_flow,
    handler_verdict,
    trace_code,
)
from rocketmq_proto.flows.consumer.dispatch import HANDLER_NOT_RUN, MessageHandler
from rocketmq_proto.flows.consumer.push_config import ConsumerConfig
from rocketmq_proto.flows.consumer.simple import (
    MAX_POP_BATCH,
    SimpleConsumerConfig,
    SimpleConsumerCore,
)
from rocketmq_proto.flows.effects import Flow, now, sleep, spawn, timed_user_call, wall_ms
from rocketmq_proto.flows.hooks import ConsumeContext
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.metrics import ConsumeMetrics
from rocketmq_proto.flows.producer import delay_levels_flow
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.bodies import ConsumeFromWhere, SubscriptionData
from rocketmq_proto.wire.codes import RequestCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import PopNotServedError, RocketMQError, UserCallbackError
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.pop import ReceiptHandle
from rocketmq_proto.wire.route import MessageQueue

__all__ = ["PopPushConsumerCore"]

log = logging.getLogger("rocketmq_proto.consumer")

#: Messages popped and not yet handled above which the pop loops pause, at least
#: (Java's ``popThresholdForQueue``).
POP_THRESHOLD = 96
#: Acks unanswered (in multiples of that limit) at which the pops pause too.
_SETTLING_LIMIT = 4
#: Seconds a pop loop waits after a failed pop before popping again.
POP_ERROR_DELAY = 1.0
#: Seconds between two looks for new brokers or topics of the subscriptions.
TARGETS_INTERVAL = 20.0
#: Seconds a graceful close waits between two looks at the handlers still running.
_CLOSE_POLL = 0.05
#: Delay level of a message's first retry (the broker's retries start there too).
_FIRST_RETRY_LEVEL = 3


@dataclass(slots=True)
class PopPushConsumerCore(LifecycleOwner):
    """A push consumer of one group in POP mode: pop loops, the handler, acks."""

    client: ClientCore
    config: ConsumerConfig
    #: The handler as the driver runs it (bounded to ``consume_thread_max``).
    handler: MessageHandler
    #: POP, acks and receipt handles.
    pop: SimpleConsumerCore = field(init=False)
    _lifecycle: Lifecycle = field(
        default_factory=lambda: Lifecycle("push consumer (POP)"), init=False
    )
    #: Messages popped and not yet handled: the pop loops pause above a limit.
    in_flight: int = field(default=0, init=False)
    #: Messages handled whose ack (or retry) is not answered yet: a graceful
    #: close waits for them too. Like Java's, they no longer hold the pops back.
    settling: int = field(default=0, init=False)
    #: Messages handed to the handler so far.
    consumed: int = field(default=0, init=False)
    #: Handler calls counted and timed, for the client's ``stats()``.
    metrics: ConsumeMetrics = field(default_factory=ConsumeMetrics, init=False)
    #: (topic, broker) -> why: the pop loops ended because the server took no POP.
    not_served: dict[tuple[str, str], str] = field(default_factory=dict, init=False)

    def stats(self) -> dict[str, Any]:
        """This consumer's part of the client's ``stats()``: its handler calls and
        the messages it holds (popped, not settled). A POP consumer holds no queue:
        the broker keeps the progress (``Admin.consumer_progress`` tells the lag)."""
        consume = self.metrics.snapshot()
        consume["dead_lettered"] += self.pop.dead_lettered
        return {
            "consume": consume,
            "queues": [],
            "in_flight": self.in_flight,
            "pop_not_served": self.pop_not_served(),
        }

    def pop_not_served(self) -> list[str]:
        """``topic@broker: why`` for each pop loop that ended because its server
        does not serve POP (found after the start, which it fails)."""
        return [f"{t}@{b}: {why}" for (t, b), why in sorted(self.not_served.items())]

    #: The (topic, broker) pairs a pop loop runs for.
    _loops: set[tuple[str, str]] = field(default_factory=set, init=False)
    #: The (topic, broker) pairs of the subscriptions' routes, as last looked up: a
    #: loop whose pair is gone (a broker left, a topic unsubscribed) ends.
    _targets: set[tuple[str, str]] = field(default_factory=set, init=False)
    #: A refresh of the targets is under way.
    _refreshing: bool = field(default=False, init=False)
    _delay_levels: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.pop = SimpleConsumerCore(
            self.client,
            SimpleConsumerConfig(
                config.group,
                await_duration=config.pull.broker_suspend_max_time,
                invisible_duration=config.pop_invisible_duration,
                max_reconsume_times=config.max_reconsume,
                consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET
                if config.consume_from_where == ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET
                else ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
                fifo=config.orderly,
            ),
        )
        self.pop.start()  # its lifecycle is this one's: only its checks look at it

    @property
    def group(self) -> str:
        return self.pop.group

    @property
    def subscriptions(self) -> dict[str, SubscriptionData]:
        return self.pop.subscriptions

    @property
    def queues(self) -> dict[MessageQueue, object]:
        """POP mode holds no queues: every consumer pops from all of them."""
        return {}

    @property
    def _limit(self) -> int:
        """Messages popped and not yet handled above which the pop loops pause (at
        least Java's ``popThresholdForQueue``, 96)."""
        return max(POP_THRESHOLD, 2 * self.config.consume_thread_max * self._batch)

    @property
    def _batch(self) -> int:
        return self.config.consume_message_batch_max_size

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        self.pop.subscribe(topic, expression, expression_type)

    def unsubscribe(self, topic: str) -> None:
        self.pop.unsubscribe(topic)

    def register(self) -> None:
        """Announce the group in heartbeats; hand a message to the handler when an
        operator asks (CONSUME_MESSAGE_DIRECTLY)."""
        self.pop.register()
        self.client.handlers[RequestCode.CONSUME_MESSAGE_DIRECTLY] = self._consume_directly_flow

    def _consume_directly_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        return (
            yield from consume_directly_flow(
                request, self._handle_flow, orderly=self.config.orderly
            )
        )

    # ------------------------------------------------------------------ life

    def start_flow(self) -> Flow[None]:
        """Routes and a heartbeat, then a pop loop per topic and broker, each loop's
        first pop made here without waiting: a server that does not serve POP (the
        5.x proxy's remoting port) fails the start with :class:`PopNotServedError`."""
        if self.state is not LifecycleState.RUNNING:
            self.start()
        yield from self.pop.start_flow()
        yield from self.refresh_loops_flow(first_pops=True)

    def refresh_loops_flow(self, *, first_pops: bool = False) -> Flow[None]:
        """A pop loop for each topic and broker of the subscriptions not yet popped
        (one refresh at a time: a slower one must not leave older targets behind).
        With ``first_pops`` (the start), each new loop's first pop is made before
        any loop runs, and :class:`PopNotServedError` from one is raised."""
        if self._refreshing:
            return
        self._refreshing = True
        try:
            targets = yield from self.pop.targets_flow()
        finally:
            self._refreshing = False
        self._targets = set(targets)
        new = [target for target in targets if target not in self._loops]
        first: dict[tuple[str, str], list[MessageExt]] = {}
        if first_pops:
            for target in new:
                first[target] = yield from self._first_pop_flow(*target)
        for target in new:
            self._loops.add(target)
            yield from spawn(
                self._pop_loop_flow(*target, first.get(target, [])),
                f"pop {target[0]}@{target[1]}",
            )

    def _first_pop_flow(self, topic: str, broker: str) -> Flow[list[MessageExt]]:
        """A pop of ``topic`` from ``broker`` that does not wait (the start's): the
        messages it got, counted in flight; ``[]`` if it failed, except when the
        server does not serve POP (:class:`PopNotServedError` is raised)."""
        room = self._limit - self.in_flight
        if room <= 0:
            return []
        invisible_ms = round(self.config.pop_invisible_duration * 1000)
        try:
            msgs = yield from self.pop.pop_flow(
                topic, broker, min(MAX_POP_BATCH, room), invisible_ms, 0.0
            )
        except PopNotServedError:
            raise
        except RocketMQError as exc:
            log.info(
                "first pop of %s from %s failed: %s; its loop tries again",
                topic,
                broker,
                exc,
                extra=log_fields(
                    client=self.client.client_id, group=self.group, topic=topic, broker=broker
                ),
            )
            return []
        self.in_flight += len(msgs)
        return msgs

    def maintenance_flow(self) -> Flow[None]:
        """Until closed: pop loops for new topics and brokers."""
        while not self.closed:
            yield from sleep(TARGETS_INTERVAL)
            if self.closed:
                return
            try:
                yield from self.refresh_loops_flow()
            except RocketMQError as exc:
                log.warning(
                    "pop targets of %s not refreshed: %s",
                    self.group,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group),
                )

    def pops_running(self, topic: str) -> bool:
        """Whether a pop loop of ``topic`` (as the brokers know it) still runs."""
        return any(target[0] == topic for target in self._loops)

    def shutdown_flow(self, *, unregister: bool = True) -> Flow[None]:
        """Stop popping, let handlers finish and settle (up to ``await_termination``),
        unregister (unless told not to: a part of a consumer that does it once).
        Messages not settled come back once their invisible time ends."""
        if self.state is not LifecycleState.CLOSING:
            self.begin_close()
        try:
            start = yield from now()
            now_s = start
            while (
                self.in_flight or self.settling
            ) and now_s - start < self.config.await_termination:
                yield from sleep(_CLOSE_POLL)
                now_s = yield from now()
            if unregister:
                self.pop.unregister()
                yield from self.client.unregister_flow(consumer_group=self.group)
        finally:
            self.finish_close()

    # ------------------------------------------------------------------- pop

    def _pop_loop_flow(
        self, topic: str, broker: str, first: list[MessageExt] | None = None
    ) -> Flow[None]:
        """Pop ``topic`` from ``broker`` until closed, unsubscribed or gone from the
        routes, after handing out ``first`` (the start's pop, counted in flight)."""
        invisible_ms = round(self.config.pop_invisible_duration * 1000)
        wait = self.config.pull.broker_suspend_max_time
        try:
            if first:
                yield from self._dispatch_flow(first, broker)
            while (
                not self.closed
                and topic in self.pop.subscriptions
                and (topic, broker) in self._targets
            ):
                room = self._limit - self.in_flight
                if room <= 0 or self.settling >= _SETTLING_LIMIT * self._limit:
                    yield from sleep(0.01)
                    continue
                popped = yield from now()
                try:
                    msgs = yield from self.pop.pop_flow(
                        topic, broker, min(MAX_POP_BATCH, room), invisible_ms, wait
                    )
                except PopNotServedError as exc:
                    # Found at the start, this fails it; found later (a broker that
                    # joined, a topic switched to POP), the loop ends here.
                    self.not_served[(topic, broker)] = str(exc)
                    log.error(
                        "%s: no pop loop for %s",
                        exc,
                        topic,
                        extra=log_fields(
                            client=self.client.client_id,
                            group=self.group,
                            topic=topic,
                            broker=broker,
                        ),
                    )
                    return
                except RocketMQError as exc:
                    if self.closed:
                        return
                    log.info(
                        "pop of %s from %s failed: %s; again in 1 s",
                        topic,
                        broker,
                        exc,
                        extra=log_fields(
                            client=self.client.client_id,
                            group=self.group,
                            topic=topic,
                            broker=broker,
                        ),
                    )
                    yield from sleep(POP_ERROR_DELAY)
                    continue
                if not msgs:
                    if (yield from now()) - popped < wait / 2:
                        # Answered empty long before the wait: the broker holds too
                        # many waiting pops, or the clocks differ. Not at once again.
                        yield from sleep(POP_ERROR_DELAY)
                    continue
                self.in_flight += len(msgs)
                yield from self._dispatch_flow(msgs, broker)
        finally:
            self._loops.discard((topic, broker))

    def _dispatch_flow(self, msgs: list[MessageExt], broker: str) -> Flow[None]:
        """Hand popped messages (counted in flight) to the handler: an orderly
        consumer's in order, here; the others' in batches, each in its own flow."""
        if self.config.orderly:
            yield from self._consume_in_order_flow(msgs, broker)
            return
        for batch in self._batches(msgs):
            yield from spawn(self._consume_flow(batch, broker), "pop consume")

    def _batches(self, msgs: list[MessageExt]) -> list[list[MessageExt]]:
        return [msgs[i : i + self._batch] for i in range(0, len(msgs), self._batch)]

    def _consume_in_order_flow(self, msgs: list[MessageExt], broker: str) -> Flow[None]:
        """An orderly pop's messages, queue by queue, one batch after another. After
        a batch that failed, the rest of its queue is not handled now: hidden for
        the same pause, it comes back after the failed one, in order."""
        by_queue: dict[tuple[str, int], list[MessageExt]] = {}
        for msg in msgs:
            by_queue.setdefault((msg.topic, msg.queue_id), []).append(msg)
        for queue_msgs in by_queue.values():
            batches = self._batches(queue_msgs)
            for index, batch in enumerate(batches):
                result = yield from self._consume_flow(batch, broker)
                if result is not ConsumeResult.SUCCESS:
                    rest = [m for later in batches[index + 1 :] for m in later]
                    self.in_flight -= len(rest)
                    if rest:
                        try:
                            yield from self._retry_flow(rest, broker)
                        except RocketMQError as exc:
                            log.info(
                                "the rest of an orderly queue stays hidden: %s",
                                exc,
                                extra=log_fields(
                                    client=self.client.client_id, group=self.group, broker=broker
                                ),
                            )
                    break

    def _consume_flow(self, batch: list[MessageExt], broker: str) -> Flow[ConsumeResult | None]:
        """Handle and settle one batch: its result (``None``: not handled)."""
        count = len(batch)
        try:
            if self.closed:
                return None  # not handed over: it comes back when its invisible time ends
            handle = ReceiptHandle.parse(batch[0].receipt_handle or "")
            now_ms = yield from wall_ms()
            if now_ms >= handle.visible_at:
                # Java's check too: its invisible time is over, another consumer of
                # the group may have it by now.
                log.info(
                    "%d message(s) of %s waited past their invisible time",
                    count,
                    self.group,
                    extra=log_fields(
                        client=self.client.client_id,
                        group=self.group,
                        broker=broker,
                        msg_ids=[m.msg_id for m in batch],
                    ),
                )
                return None
            awaited = max(0, now_ms - handle.pop_time) / 1000
            self.metrics.awaited.add(awaited)
            result = yield from self._handle_flow(batch, awaited)
        finally:
            self.in_flight -= count
        if result is None:
            return None
        self.settling += count
        try:
            if result is ConsumeResult.SUCCESS:
                yield from self.pop.ack_flow(batch)
            else:
                yield from self._retry_flow(batch, broker)
        except RocketMQError as exc:
            log.warning(
                "settling %d message(s) of %s failed: %s; they come back later",
                len(batch),
                self.group,
                exc,
                extra=log_fields(
                    client=self.client.client_id,
                    group=self.group,
                    broker=broker,
                    msg_ids=[m.msg_id for m in batch],
                ),
            )
        finally:
            self.settling -= count
        return result

    def _handle_flow(
        self, batch: list[MessageExt], awaited: float | None = None
    ) -> Flow[ConsumeResult | None]:
        """The handler's verdict on ``batch`` (``None``: it did not run), between
        the client's consume hooks (``awaited``: the seconds since its pop)."""
        client = self.client
        hooks, tracer = client.hooks, client.tracer
        if not hooks and tracer is None:
            return (yield from self._run_handler_flow(batch))[0]
        start_ms = yield from wall_ms()
        hooked = ConsumeContext(self.group, batch, await_time=awaited) if hooks else None
        if hooked is not None:
            hooked.timestamp_ms = start_ms
            hooks.fire("before_consume", hooked)
        # As handed over: the handler may change the list it is given.
        traced = tuple(batch) if tracer is not None else ()
        result, error, took = yield from self._run_handler_flow(batch)
        if tracer is not None and traced and result is not None:
            tracer.consumed(self.group, traced, start_ms, took or 0.0, trace_code(result, error))
        if hooked is not None:
            hooked.result, hooked.error = result, error
            hooked.elapsed = took or 0.0  # as the driver timed the call
            hooks.fire("after_consume", hooked)
        return result

    def _run_handler_flow(
        self, batch: list[MessageExt]
    ) -> Flow[tuple[ConsumeResult | None, BaseException | None, float | None]]:
        """The handler's verdict on ``batch``, the exception it raised, and the
        seconds it ran (as the driver timed it)."""
        error: BaseException | None = None
        took: float | None = None
        try:
            value, took = yield from timed_user_call(self.handler, batch)
        except UserCallbackError as exc:
            error = exc.__cause__ if exc.__cause__ is not None else exc
            took = exc.elapsed
            ids = [m.msg_id for m in batch]
            log.warning(
                "message handler raised consuming topic %s, group %s, message id(s) %s: %r",
                batch[0].topic,
                self.group,
                ", ".join(ids),
                error,
                exc_info=error,
                extra={
                    "rocketmq_topic": batch[0].topic,
                    "rocketmq_group": self.group,
                    "rocketmq_msg_ids": ids,
                },
            )
            value = False
        if value is HANDLER_NOT_RUN:
            return None, None, None
        self.consumed += len(batch)
        result = handler_verdict(
            value,
            batch,
            orderly=self.config.orderly,
            client=self.client,
            group=self.group,
        )
        self.metrics.handled(len(batch), result is ConsumeResult.SUCCESS, took)
        return result, error, took

    def _retry_flow(self, batch: list[MessageExt], broker: str) -> Flow[None]:
        """Hide each failed message for its retry delay: the broker's delay level
        ``3 + reconsume_times`` (or ``delay_level_when_next_consume``)."""
        topic = ns.wrap(self.client.config.namespace, batch[0].topic)
        addr = yield from self.client.master_addr_flow(broker, topic)
        levels = yield from delay_levels_flow(self.client, addr, self._delay_levels)
        for msg in batch:
            level = self.config.delay_level_when_next_consume or (
                _FIRST_RETRY_LEVEL + msg.reconsume_times
            )
            delay_ms = levels[min(max(level, 1), len(levels)) - 1]
            if self.config.orderly:
                delay_ms = self.config.suspend_current_queue_time_millis
            yield from self.pop.change_invisible_flow(msg, max(1.0, delay_ms / 1000))
