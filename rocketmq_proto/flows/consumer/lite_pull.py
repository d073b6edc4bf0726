"""The pull consumer (Java's ``DefaultLitePullConsumer``): the user polls, the client prefetches.

The application calls ``poll`` for messages instead of handing a callback.
Queues come from ``subscribe`` (with rebalance, like a push consumer) or from
``assign``. For each queue a pull loop prefetches into a bounded buffer;
``poll`` takes from it. Offsets follow what was polled: ``commit`` (or the
automatic commit every 5 s) stores them. ``seek`` moves a queue; ``pause`` and
``resume`` stop and restart its prefetching.

A pull long-polls (the broker holds it up to 15 s; the client waits 30 s). A
failed pull is retried ``pull_time_delay_when_exception`` after it was sent, so
a pull that timed out is followed by the next at once: a queue delivers within
one pull timeout of its broker answering again.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rocketmq_proto.flows.consumer.consume import initial_offset_flow, reset_retry_topic
from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    commit_offsets_flow,
    max_offset_flow,
    query_offset_flow,
    search_offset_flow,
    subscribe_addr_flow,
    update_offset_flow,
)
from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.consumer.pull import (
    PullConfig,
    PullRequest,
    parse_pull_response,
    pull_command,
    pull_error_delay,
    queue_lag,
)
from rocketmq_proto.flows.consumer.rebalance import (
    AllocateStrategy,
    allocate_averagely,
    rebalance_topic_flow,
)
from rocketmq_proto.flows.effects import Flow, call, now, sleep, spawn, wall_ms
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.metrics import queue_row
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.bodies import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    MessageModel,
    SubscriptionData,
    build_subscription,
)
from rocketmq_proto.wire.codes import PullStatus
from rocketmq_proto.wire.errors import (
    ConfigError,
    InvalidArgumentError,
    LocalProtocolError,
    RocketMQError,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue, subscribe_queues

log = logging.getLogger("rocketmq_proto.pull_consumer")


@dataclass(frozen=True, slots=True)
class PullConsumerConfig:
    group: str
    message_model: MessageModel = MessageModel.CLUSTERING
    consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    consume_timestamp: int | None = None
    auto_commit: bool = True
    auto_commit_interval: float = 5.0
    #: Most messages one poll returns (Java's ``pullBatchSize`` doubles as it).
    max_poll_records: int = 32
    rebalance_interval: float = 20.0
    strategy: AllocateStrategy = allocate_averagely
    pull: PullConfig = field(default_factory=PullConfig)

    def __post_init__(self) -> None:
        if not self.group or not all(c.isalnum() or c in "%|-_" for c in self.group):
            raise ConfigError(f"consumer group {self.group!r} is not a valid group name")
        if not 1 <= self.max_poll_records <= 1024:
            raise ConfigError(f"max_poll_records must be 1..1024, got {self.max_poll_records}")
        if not self.auto_commit_interval > 0:
            raise ConfigError("auto_commit_interval must be positive")


@dataclass(slots=True)
class _Queue:
    request: PullRequest
    generation: int
    paused: bool = False
    #: Offset after the last message polled from this queue (what a commit stores).
    polled_offset: int | None = None


@dataclass(slots=True)
class PullConsumerCore(LifecycleOwner):
    """A pull consumer: prefetching pull loops, the buffer ``poll`` takes from,
    offsets, and its lifecycle (:meth:`start_flow` starts it, :meth:`shutdown_flow`
    closes it; see :class:`~rocketmq_proto.flows.lifecycle.LifecycleOwner`)."""

    client: ClientCore
    config: PullConsumerConfig
    #: Called (from whatever runs the flows) when the buffer gets messages.
    notify: Callable[[], object] = lambda: None
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)
    assigned_only: bool = False
    queues: dict[MessageQueue, _Queue] = field(default_factory=dict)
    offsets: OffsetStore = field(default_factory=OffsetStore)
    buffer: deque[MessageExt] = field(default_factory=deque)
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("pull consumer"), init=False)
    _generation: int = 0
    #: Messages handed out by ``take`` (``stats()``).
    polled: int = field(default=0, init=False)
    _rebalance_now: bool = True
    #: Subscriptions or assigned queues changed since the brokers last heard of them.
    _announce: bool = False
    _last_rebalance: float | None = None
    _last_commit: float | None = None
    _start_ms: int = 0

    @property
    def group(self) -> str:
        return ns.wrap(self.client.config.namespace, self.config.group)

    def _wrap(self, name: str) -> str:
        return ns.wrap(self.client.config.namespace, name)

    def _user_mq(self, mq: MessageQueue) -> MessageQueue:
        return MessageQueue(
            ns.unwrap(self.client.config.namespace, mq.topic), mq.broker_name, mq.queue_id
        )

    def _wire_mq(self, mq: MessageQueue) -> MessageQueue:
        return MessageQueue(self._wrap(mq.topic), mq.broker_name, mq.queue_id)

    # ---------------------------------------------------------------- choose

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        if self.assigned_only:
            raise InvalidArgumentError("this consumer assigns queues itself: no subscribe")
        full = self._wrap(topic)
        self.subscriptions[full] = build_subscription(full, expression, expression_type)
        self._rebalance_now = True
        self._announce = True

    def consumer_data(self) -> ConsumerData:
        return ConsumerData(
            group_name=self.group,
            consume_type=ConsumeType.CONSUME_ACTIVELY,
            message_model=self.config.message_model,
            consume_from_where=self.config.consume_from_where,
            subscriptions=tuple(self.subscriptions.values()),
        )

    def register(self) -> None:
        self.client.consumer_data[self.group] = self.consumer_data

    def assign_flow(self, mqs: Iterable[MessageQueue]) -> Flow[None]:
        """Consume exactly these queues (no rebalance)."""
        if self.subscriptions and not self.assigned_only:
            raise InvalidArgumentError("this consumer subscribed: it cannot also assign queues")
        self.assigned_only = True
        wanted = {self._wire_mq(mq) for mq in mqs}
        for mq in list(self.queues):
            if mq not in wanted:
                self._drop(mq)
        for mq in sorted(wanted):
            if mq.topic not in self.subscriptions:
                self.subscriptions[mq.topic] = build_subscription(mq.topic)
                self._announce = True
            if mq not in self.queues:
                yield from self._add(mq)

    # ----------------------------------------------------------------- queues

    def _drop(self, mq: MessageQueue) -> None:
        queue = self.queues.pop(mq, None)
        if queue is not None:
            queue.request.process_queue.dropped = True
        self.buffer = deque(m for m in self.buffer if not _same_queue(m, mq))

    def _add(self, mq: MessageQueue, offset: int | None = None) -> Flow[None]:
        now_s = yield from now()
        if offset is None:
            timestamp = self.config.consume_timestamp or self._start_ms - 30 * 60 * 1000
            offset = yield from initial_offset_flow(
                self.client,
                self.group,
                mq,
                self.config.consume_from_where,
                timestamp,
                offsets=self.offsets,
            )
        self._generation += 1
        request = PullRequest(self.group, mq, ProcessQueue(now_s), offset)
        self.queues[mq] = _Queue(request, self._generation, polled_offset=offset)
        yield from spawn(self.pull_loop_flow(mq, self._generation), f"lite pull {mq}")

    @property
    def started(self) -> bool:
        """Whether it was ever started (polling before that is a mistake in the
        caller; a consumer closed before it started never was)."""
        return self._lifecycle.was_started

    def start_flow(self) -> Flow[None]:
        """Start (created -> running, unless the driver called :meth:`start` first):
        routes of the subscribed topics, then a heartbeat. Raises
        :class:`LocalProtocolError` once it is closing or closed."""
        if self.state is not LifecycleState.RUNNING:
            self.start()
        self._start_ms = yield from wall_ms()
        yield from self._announce_flow()

    def _announce_flow(self) -> Flow[None]:
        """Routes of the subscribed topics, then a heartbeat naming them: the
        brokers list this consumer in its group before it rebalances (Java's
        ``subscribe`` on a running consumer heartbeats at once too)."""
        self._announce = False
        for topic in list(self.subscriptions):
            self.client.topics_in_use.add(topic)
            try:
                yield from self.client.route_flow(topic)
            except RocketMQError as exc:
                log.warning(
                    "route of %s unavailable: %s",
                    topic,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group, topic=topic),
                )
        yield from self.client.heartbeat_flow()

    def rebalance_flow(self) -> Flow[None]:
        self._rebalance_now = False
        current = {mq: q.request.process_queue for mq, q in self.queues.items()}
        for topic in list(self.subscriptions):
            decision = yield from rebalance_topic_flow(
                self.client,
                self.group,
                topic,
                self.config.strategy,
                current,
                message_model=self.config.message_model,
                push=False,
            )
            if decision is None:
                continue
            for mq in decision.to_drop:
                self._drop(mq)
            for mq in decision.to_add:
                try:
                    yield from self._add(mq)
                except RocketMQError as exc:
                    log.warning(
                        "start offset of %s unavailable: %s",
                        mq,
                        exc,
                        extra=log_fields(client=self.client.client_id, group=self.group, queue=mq),
                    )
                    self._rebalance_now = True
        self._last_rebalance = yield from now()

    # ------------------------------------------------------------------- pull

    def pull_loop_flow(self, mq: MessageQueue, generation: int) -> Flow[None]:
        config = self.config.pull
        while not self.closed:
            queue = self.queues.get(mq)
            if queue is None or queue.generation != generation:
                return
            request = queue.request
            if queue.paused:
                yield from sleep(0.1)
                continue
            if request.process_queue.msg_count >= config.pull_threshold_for_queue:
                yield from sleep(0.05)
                continue
            sub = self.subscriptions.get(mq.topic)
            if sub is None:
                return
            sent = yield from now()
            try:
                addr, slave = yield from subscribe_addr_flow(self.client, mq, request.broker_id)
                # Like Java's lite pull consumer, every pull carries its
                # subscription: the broker need not have seen a heartbeat
                # naming this queue's topic (an assign between heartbeats).
                command = pull_command(
                    request, sub, config, -1, to_slave=slave, post_subscription=True
                )
                response = yield from call(addr, command, config.consumer_timeout_when_suspend)
                result = parse_pull_response(response, mq, sub)
                request.broker_max_offset = result.max_offset
            except RocketMQError as exc:
                if self.closed:
                    return
                # The back-off counts from when the pull was sent: after a pull
                # that timed out (a broker that stalled for the whole long poll)
                # the queue is pulled again at once, so it delivers within one
                # pull timeout of the broker answering again.
                failed = yield from now()
                delay = pull_error_delay(exc, config, failed - sent)
                log.info(
                    "pull of %s failed after %.3fs: %s; pulling again in %.3fs",
                    mq,
                    failed - sent,
                    exc,
                    delay,
                    extra=log_fields(client=self.client.client_id, group=self.group, queue=mq),
                )
                if delay > 0:
                    yield from sleep(delay)
                continue
            queue = self.queues.get(mq)
            if queue is None or queue.generation != generation:
                return  # dropped or sought while the pull was out
            request.broker_id = result.suggest_which_broker_id
            request.next_offset = result.next_begin_offset
            if result.status is PullStatus.FOUND and result.messages:
                for msg in result.messages:
                    reset_retry_topic(msg, self.group, self.client.config.namespace)
                request.process_queue.put(result.messages)
                self.buffer.extend(result.messages)
                self.notify()
            elif result.status is PullStatus.OFFSET_ILLEGAL:
                log.warning(
                    "offset of %s was illegal; moving to %d",
                    mq,
                    result.next_begin_offset,
                    extra=log_fields(client=self.client.client_id, group=self.group, queue=mq),
                )
                queue.polled_offset = result.next_begin_offset

    # ------------------------------------------------------------------- poll

    def check_started(self) -> None:
        """Raise :class:`LocalProtocolError` unless the consumer was started."""
        if not self.started:
            raise LocalProtocolError("PullConsumer.poll() before start(): call start() first")

    def take(self, max_records: int | None = None) -> list[MessageExt]:
        """Messages from the buffer (at most ``max_poll_records``), skipping paused
        queues (their messages wait); the polled offsets move past them.

        Raises :class:`LocalProtocolError` before :meth:`start_flow`."""
        self.check_started()
        limit = max_records or self.config.max_poll_records
        out: list[MessageExt] = []
        kept: deque[MessageExt] = deque()
        while self.buffer:
            msg = self.buffer.popleft()
            if len(out) >= limit:
                kept.append(msg)
                continue
            mq = MessageQueue(self._wrap(msg.topic), msg.broker_name, msg.queue_id)
            queue = self.queues.get(mq)
            if queue is None:
                continue  # its queue was dropped or sought
            if queue.paused:
                kept.append(msg)
                continue
            queue.request.process_queue.remove([msg])
            queue.polled_offset = msg.queue_offset + 1
            if self.config.auto_commit:
                self.offsets.update(mq, msg.queue_offset + 1)
            msg.topic = ns.unwrap(self.client.config.namespace, msg.topic)
            out.append(msg)
        self.buffer = kept
        self.polled += len(out)
        return out

    # ---------------------------------------------------------------- offsets

    def seek_flow(self, mq: MessageQueue, offset: int) -> Flow[None]:
        """Consume ``mq`` from ``offset`` on (the buffered messages of it are dropped)."""
        wire = self._wire_mq(mq)
        if wire not in self.queues:
            raise InvalidArgumentError(f"{mq} is not assigned to this consumer")
        paused = self.queues[wire].paused
        self._drop(wire)
        self.offsets.update(wire, offset)
        yield from self._add(wire, offset)
        self.queues[wire].paused = paused

    def seek_to_begin_flow(self, mq: MessageQueue) -> Flow[None]:
        # 0 is before every stored message: the broker answers with the first offset.
        yield from self.seek_flow(mq, 0)

    def seek_to_end_flow(self, mq: MessageQueue) -> Flow[None]:
        offset = yield from max_offset_flow(self.client, self._wire_mq(mq))
        yield from self.seek_flow(mq, offset)

    def offset_for_timestamp_flow(self, mq: MessageQueue, timestamp_ms: int) -> Flow[int]:
        return (yield from search_offset_flow(self.client, self._wire_mq(mq), timestamp_ms))

    def commit_flow(self, offsets: dict[MessageQueue, int] | None = None) -> Flow[None]:
        """Store offsets on the brokers, waiting for each to confirm: what was
        polled, or the given ones. A broker's refusal is raised."""
        if offsets is None:
            table = {
                mq: queue.polled_offset
                for mq, queue in self.queues.items()
                if queue.polled_offset is not None
            }
        else:
            table = {self._wire_mq(mq): offset for mq, offset in offsets.items()}
        for mq, offset in sorted(table.items()):
            self.offsets.update(mq, offset)
            yield from update_offset_flow(self.client, self.group, mq, offset, confirmed=True)
        self.offsets.mark_committed(table)
        self._last_commit = yield from now()

    def stats(self) -> dict[str, Any]:
        """This consumer's part of the client's ``stats()``: the messages polled,
        and each assigned queue's prefetched messages and lag (from what was polled)."""
        namespace = self.client.config.namespace
        queues = []
        for mq, queue in sorted(self.queues.items()):
            pq = queue.request.process_queue
            lag = queue_lag(queue.request, queue.polled_offset)
            topic = ns.unwrap(namespace, mq.topic)
            queues.append(
                queue_row(topic, mq.broker_name, mq.queue_id, pq.msg_count, pq.msg_size, lag)
            )
        return {"polled": self.polled, "queues": queues}

    def committed_flow(self, mq: MessageQueue) -> Flow[int | None]:
        return (yield from query_offset_flow(self.client, self.group, self._wire_mq(mq)))

    def pause(self, mqs: Iterable[MessageQueue], paused: bool = True) -> None:
        for mq in mqs:
            queue = self.queues.get(self._wire_mq(mq))
            if queue is not None:
                queue.paused = paused

    def assignment(self) -> list[MessageQueue]:
        return sorted(self._user_mq(mq) for mq in self.queues)

    def queues_of_flow(self, topic: str) -> Flow[list[MessageQueue]]:
        full = self._wrap(topic)
        route = yield from self.client.route_flow(full)
        return [self._user_mq(mq) for mq in subscribe_queues(full, route)]

    # ------------------------------------------------------------ maintenance

    def maintenance_flow(self) -> Flow[None]:
        while not self.closed:
            if self._announce:
                yield from self._announce_flow()
            now_s = yield from now()
            if (
                not self.assigned_only
                and self.subscriptions
                and (
                    self._rebalance_now
                    or self._last_rebalance is None
                    or now_s - self._last_rebalance >= self.config.rebalance_interval
                )
            ):
                try:
                    yield from self.rebalance_flow()
                except RocketMQError as exc:
                    log.warning(
                        "rebalance of %s failed: %s",
                        self.group,
                        exc,
                        extra=log_fields(client=self.client.client_id, group=self.group),
                    )
            if (
                self.config.auto_commit
                and not self.closed  # (a close commits, confirmed)
                and (
                    self._last_commit is None
                    or now_s - self._last_commit >= self.config.auto_commit_interval
                )
            ):
                try:
                    yield from commit_offsets_flow(
                        self.client, self.group, self.offsets, list(self.queues)
                    )
                except RocketMQError as exc:
                    log.warning(
                        "offset commit of %s failed: %s",
                        self.group,
                        exc,
                        extra=log_fields(client=self.client.client_id, group=self.group),
                    )
                self._last_commit = now_s
            yield from sleep(0.2)

    def shutdown_flow(self) -> Flow[None]:
        """Close: commit (with ``auto_commit``), drop the queues, unregister.

        Begins the close (running -> closing) unless the driver called
        :meth:`begin_close` first, and ends closed even when a step fails.
        """
        if self.state is not LifecycleState.CLOSING:
            self.begin_close()
        try:
            yield from self._wind_down_flow()
        finally:
            self.finish_close()

    def _wind_down_flow(self) -> Flow[None]:
        if self.config.auto_commit:
            try:
                yield from commit_offsets_flow(
                    self.client, self.group, self.offsets, list(self.queues), confirmed=True
                )
            except RocketMQError as exc:
                log.warning(
                    "final offset commit of %s failed: %s",
                    self.group,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group),
                )
        for queue in self.queues.values():
            queue.request.process_queue.dropped = True
        self.client.consumer_data.pop(self.group, None)
        yield from self.client.unregister_flow(consumer_group=self.group)


def _same_queue(msg: MessageExt, mq: MessageQueue) -> bool:
    return (
        msg.broker_name == mq.broker_name
        and msg.queue_id == mq.queue_id
        and (msg.topic == mq.topic or mq.topic.endswith("%" + msg.topic))
    )
