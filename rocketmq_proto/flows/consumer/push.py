"""The push consumer, assembled from the consumer pieces (Java's ``DefaultMQPushConsumerImpl``).

:class:`PushConsumerCore` owns a group's subscriptions, process queues and
offsets, and the flows that keep them moving: rebalance (at start, every 20 s,
and when a broker says the group changed), one pull loop per assigned queue,
consume requests (concurrent, or one at a time per queue for orderly
consumption), broker locks for orderly queues, offset commits every 5 s (to the
brokers, or for broadcasting to a local file), and shutdown. A driver starts
:meth:`PushConsumerCore.start_flow` and :meth:`PushConsumerCore.maintenance_flow`,
and runs what they spawn; it holds no consumer decision itself.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.consumer.consume import (
    CONSUME_REQUEST_RETRY_DELAY,
    ConsumeResult,
    clean_expired_flow,
    consume_directly_result,
    initial_offset_flow,
    mark_consume_start,
    max_reconsume_times,
    process_concurrent_result_flow,
    process_orderly_result_flow,
    reset_retry_topic,
    to_consume_result,
)
from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    commit_offsets_flow,
    encode_local_offsets,
    load_local_offsets,
    local_offsets_client_id,
    local_offsets_path,
    persist_offset_flow,
)
from rocketmq_proto.flows.consumer.process_queue import REBALANCE_LOCK_INTERVAL, ProcessQueue
from rocketmq_proto.flows.consumer.pull import PullConfig, PullRequest, pull_step_flow
from rocketmq_proto.flows.consumer.rebalance import (
    AllocateStrategy,
    allocate_averagely,
    allocate_averagely_by_circle,
    allocate_consistent_hash,
    queues_not_subscribed,
    rebalance_topic_flow,
)
from rocketmq_proto.flows.effects import (
    Call,
    Flow,
    Now,
    Oneway,
    ReadFile,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
    WriteFile,
)
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.model import Message, MessageExt, UniqueIdGenerator, decode_message
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    ExpressionType,
    MessageModel,
    SubscriptionData,
    build_subscription,
    encode_consumer_running_info,
    encode_lock_batch,
    encode_unlock_batch,
    parse_lock_batch_response,
    parse_reset_offset_body,
    running_info_properties,
)
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    RemoteProtocolError,
    RocketMQError,
    UserCallbackError,
)
from rocketmq_proto.wire.route import MessageQueue

log = logging.getLogger("rocketmq_proto.consumer")

#: Seconds until an extra rebalance after an orderly queue could not be locked.
QUICK_REBALANCE_DELAY: Final = 0.5

#: What a gated handler answers when the consumer closed before it could start.
HANDLER_NOT_RUN: Any = object()

#: A message handler: (messages) -> ConsumeResult, True/False or None (or a coroutine
#: of one). ``None`` is success: a handler fails by saying so, or by raising.
MessageHandler = Callable[[list[MessageExt]], Any]

_STRATEGIES: dict[str, AllocateStrategy] = {
    "averagely": allocate_averagely,
    "average": allocate_averagely,
    "averagely_by_circle": allocate_averagely_by_circle,
    "circle": allocate_averagely_by_circle,
    "consistent_hash": allocate_consistent_hash,
}


class ConsumeMode(enum.StrEnum):
    CONCURRENTLY = "concurrently"
    ORDERLY = "orderly"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Push consumer settings, with Java's defaults. Times in seconds unless named ms."""

    group: str
    message_model: MessageModel = MessageModel.CLUSTERING
    consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    #: For CONSUME_FROM_TIMESTAMP: epoch ms (default: half an hour before start).
    consume_timestamp: int | None = None
    allocate_strategy: str | AllocateStrategy = "averagely"
    orderly: bool = False
    #: Handlers running at once (Java's ``consumeThreadMax``).
    consume_thread_max: int = 20
    consume_message_batch_max_size: int = 1
    #: -1: 16 for concurrent consumption, unlimited local retries for orderly.
    max_reconsume_times: int = -1
    #: Delay level of messages sent back (0: the broker's 3 + reconsume times).
    delay_level_when_next_consume: int = 0
    suspend_current_queue_time_millis: int = 1000
    consume_timeout_minutes: int = 15
    persist_consumer_offset_interval: float = 5.0
    rebalance_interval: float = 20.0
    #: Broadcasting: directory of the local offset files (default ``~/.rocketmq_offsets``).
    offset_store_dir: str | None = None
    #: The instance name the user configured (``None``: a generated one). It names
    #: the broadcasting offsets directory, ``<client_ip>@<name or DEFAULT>``.
    configured_instance_name: str | None = None
    #: Graceful close: how long in-flight handlers may run on.
    await_termination: float = 30.0
    pull: PullConfig = field(default_factory=PullConfig)

    def __post_init__(self) -> None:
        if not self.group or not all(c.isalnum() or c in "%|-_" for c in self.group):
            raise ConfigError(
                f"consumer group {self.group!r} must be non-empty and use only "
                "letters, digits, '%', '|', '-' and '_'"
            )
        object.__setattr__(self, "message_model", MessageModel(self.message_model))
        object.__setattr__(self, "consume_from_where", ConsumeFromWhere(self.consume_from_where))
        if isinstance(self.allocate_strategy, str):
            if self.allocate_strategy not in _STRATEGIES:
                raise ConfigError(
                    f"allocate_strategy must be one of {sorted(_STRATEGIES)} or a callable, "
                    f"got {self.allocate_strategy!r}"
                )
        elif not callable(self.allocate_strategy):
            raise ConfigError("allocate_strategy must be a name or a callable")
        if not 1 <= self.consume_thread_max <= 1000:
            raise ConfigError(f"consume_thread_max must be 1..1000, got {self.consume_thread_max}")
        if not 1 <= self.consume_message_batch_max_size <= 1024:
            raise ConfigError(
                "consume_message_batch_max_size must be 1..1024, "
                f"got {self.consume_message_batch_max_size}"
            )
        if self.max_reconsume_times < -1:
            raise ConfigError(f"max_reconsume_times must be >= -1, got {self.max_reconsume_times}")
        for name in ("persist_consumer_offset_interval", "rebalance_interval", "await_termination"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")

    @property
    def strategy(self) -> AllocateStrategy:
        if isinstance(self.allocate_strategy, str):
            return _STRATEGIES[self.allocate_strategy]
        return self.allocate_strategy

    @property
    def clustering(self) -> bool:
        return self.message_model == MessageModel.CLUSTERING


@dataclass(slots=True)
class _QueueState:
    request: PullRequest
    consuming: bool = False  # orderly: a consume loop runs for this queue
    #: Orderly: given away by a rebalance while its consume loop ran; the queue
    #: stays locked (and its result is settled) until the loop ends.
    releasing: bool = False


@dataclass(slots=True)
class PushConsumerCore:
    client: ClientCore
    config: ConsumerConfig
    handler: MessageHandler
    ids: UniqueIdGenerator
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)
    offsets: OffsetStore = field(default_factory=OffsetStore)
    queues: dict[MessageQueue, _QueueState] = field(default_factory=dict)
    #: Orderly queues given away whose consume loop has not ended yet (still locked).
    releasing: dict[MessageQueue, _QueueState] = field(default_factory=dict)
    closed: bool = False
    #: Handlers running now (a graceful close waits for them).
    in_flight: int = 0
    #: Concurrent consumption: batches waiting for a consume worker, in arrival order.
    ready: collections.deque[tuple[_QueueState, list[MessageExt]]] = field(
        default_factory=collections.deque
    )
    #: Concurrent consumption: consume workers running (at most ``consume_thread_max``).
    workers: int = 0
    #: Messages handed to handlers in all (for running info and tests).
    consumed: int = 0
    _rebalance_now: bool = True
    #: When a quick extra rebalance is due (after an orderly queue could not be locked).
    _rebalance_due: float | None = None
    _last_rebalance: float | None = None
    _last_persist: float | None = None
    _last_lock: float | None = None
    _last_clean: float | None = None
    _local_previous: dict[MessageQueue, int] = field(default_factory=dict)
    _start_ms: int = 0
    _inner: ProducerCore | None = None
    #: A coroutine handler is gated by the driver (after its concurrency limit).
    _handler_is_async: bool = False
    _group: str = ""

    def __post_init__(self) -> None:
        self._inner = ProducerCore(
            self.client, ProducerConfig(group="CLIENT_INNER_PRODUCER"), self.ids
        )
        self._handler_is_async = inspect.iscoroutinefunction(self.handler)
        self._group = ns.wrap(self.client.config.namespace, self.config.group)

    # ------------------------------------------------------------ names

    @property
    def group(self) -> str:
        """The group as the brokers know it (with the namespace)."""
        return self._group

    @property
    def orderly(self) -> bool:
        return self.config.orderly

    def _max_reconsume(self) -> int:
        return max_reconsume_times(self.config.max_reconsume_times, orderly=self.orderly)

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Subscribe to ``topic`` with a tag expression (``*``, ``a || b``) or SQL92."""
        full = ns.wrap(self.client.config.namespace, topic)
        self.subscriptions[full] = build_subscription(full, expression, expression_type)
        self._rebalance_now = True

    def unsubscribe(self, topic: str) -> None:
        self.subscriptions.pop(ns.wrap(self.client.config.namespace, topic), None)
        self._rebalance_now = True

    def _all_subscriptions(self) -> dict[str, SubscriptionData]:
        subs = dict(self.subscriptions)
        if self.config.clustering:
            retry = ns.retry_topic(self.group)
            subs.setdefault(retry, build_subscription(retry, "*", ExpressionType.TAG))
        return subs

    def consumer_data(self) -> ConsumerData:
        return ConsumerData(
            group_name=self.group,
            consume_type=ConsumeType.CONSUME_PASSIVELY,
            message_model=self.config.message_model,
            consume_from_where=self.config.consume_from_where,
            subscriptions=tuple(self._all_subscriptions().values()),
        )

    def register(self) -> None:
        client = self.client
        client.consumer_data[self.group] = self.consumer_data
        client.handlers[RequestCode.NOTIFY_CONSUMER_IDS_CHANGED] = self._ids_changed_flow
        client.handlers[RequestCode.RESET_CONSUMER_CLIENT_OFFSET] = self._reset_offset_flow
        client.handlers[RequestCode.GET_CONSUMER_RUNNING_INFO] = self._running_info_flow
        client.handlers[RequestCode.CONSUME_MESSAGE_DIRECTLY] = self._consume_directly_flow

    # ------------------------------------------------------------------ start

    def _local_offsets_file(self) -> str:
        config = self.client.config
        stable_id = local_offsets_client_id(
            config.client_ip, self.config.configured_instance_name, config.unit_name
        )
        root, client_id, group, name = local_offsets_path(stable_id, self.group)
        base = self.config.offset_store_dir or os.path.join(os.path.expanduser("~"), root)
        return os.path.join(base, client_id, group, name)

    def start_flow(self) -> Flow[None]:
        """Routes of the subscribed topics, local offsets (broadcasting), a heartbeat."""
        if not self.subscriptions:
            raise ConfigError("subscribe to at least one topic before starting the consumer")
        self._start_ms = yield WallTime()
        if not self.config.clustering:
            path = self._local_offsets_file()
            main = yield ReadFile(path)
            backup = yield ReadFile(path + ".bak")
            self._local_previous = load_local_offsets(main, backup)
        for topic in self._all_subscriptions():
            self.client.topics_in_use.add(topic)
            try:
                yield from self.client.route_flow(topic)
            except RocketMQError as exc:
                # A group's retry topic exists only once a broker has seen the group.
                level = logging.DEBUG if topic.startswith(ns.RETRY_PREFIX) else logging.WARNING
                log.log(level, "route of %s unavailable at start: %s", topic, exc)
        yield from self.client.heartbeat_flow()
        self._rebalance_now = True

    # -------------------------------------------------------------- rebalance

    def rebalance_flow(self) -> Flow[bool]:
        """One rebalance round over every subscribed topic; whether anything changed."""
        self._rebalance_now = False
        self._rebalance_due = None
        changed = False
        subs = self._all_subscriptions()
        current = {mq: state.request.process_queue for mq, state in self.queues.items()}
        added: list[PullRequest] = []
        for mq in queues_not_subscribed(list(self.queues), subs):
            yield from self._drop_queue(mq)
            changed = True
        try:
            for topic in subs:
                decision = yield from rebalance_topic_flow(
                    self.client,
                    self.group,
                    topic,
                    self.config.strategy,
                    current,
                    message_model=self.config.message_model,
                )
                if decision is None or not decision.changed:
                    continue
                changed = True
                for mq in (*decision.to_drop, *decision.to_renew):
                    yield from self._drop_queue(mq)
                for mq in (*decision.to_add, *decision.to_renew):
                    request = yield from self._add_queue(mq)
                    if request is not None:
                        added.append(request)
        except RocketMQError:
            yield from self._start_pulls(added)  # what was taken is pulled all the same
            raise
        self._last_rebalance = yield Now()
        if changed:
            # The new subscription version reaches the brokers (heartbeat) before
            # the first pull that carries it: a broker refuses a pull whose version
            # is newer than the one registered (SUBSCRIPTION_NOT_LATEST).
            wall: int = yield WallTime()
            for topic, sub in self.subscriptions.items():
                self.subscriptions[topic] = dataclasses.replace(sub, sub_version=wall)
            yield from self.client.heartbeat_flow()
        yield from self._start_pulls(added)
        return changed

    def _start_pulls(self, requests: list[PullRequest]) -> Flow[None]:
        for request in requests:
            state = self.queues.get(request.message_queue)
            if state is not None and state.request is request:
                yield Spawn(self.pull_loop_flow(request), f"pull {request.message_queue}")

    def _drop_queue(self, mq: MessageQueue) -> Flow[None]:
        state = self.queues.pop(mq, None)
        if state is None:
            return
        if self.orderly and self.config.clustering and state.consuming:
            # As Java: a busy orderly queue keeps its broker lock until its consume
            # loop ends, so the next owner cannot run a message still being handled.
            state.releasing = True
            self.releasing[mq] = state
            log.info("queue %s is being consumed; releasing it when its handler ends", mq)
            return
        yield from self._release_queue(mq, state)

    def _release_queue(self, mq: MessageQueue, state: _QueueState) -> Flow[None]:
        pq = state.request.process_queue
        pq.dropped = True
        if self.config.clustering:
            yield from persist_offset_flow(self.client, self.group, self.offsets, mq)
            if self.orderly:
                yield from self._unlock_flow([mq])
        self.offsets.remove(mq)

    def _add_queue(self, mq: MessageQueue) -> Flow[PullRequest | None]:
        """Take ``mq``: lock it (orderly), read its start offset; the pull request
        to start (the caller spawns its pull loop), or ``None`` if not taken now."""
        now: float = yield Now()
        if mq in self.releasing:  # its old consume loop still runs: take it back after
            self._retry_rebalance(now)
            return None
        if self.orderly and self.config.clustering:
            locked = yield from self._lock_flow([mq])
            if mq not in locked:
                log.info("queue %s is locked by another consumer; trying again soon", mq)
                self._retry_rebalance(now)
                return None
        self.offsets.remove(mq)
        timestamp = self.config.consume_timestamp
        if timestamp is None:
            timestamp = self._start_ms - 30 * 60 * 1000
        try:
            offset = yield from initial_offset_flow(
                self.client,
                self.group,
                mq,
                self.config.consume_from_where,
                timestamp,
                stored=None if self.config.clustering else self._local_previous,
                offsets=self.offsets,
            )
        except RocketMQError as exc:
            log.warning("start offset of %s unavailable; taking it later: %s", mq, exc)
            self._rebalance_now = True
            return None
        pq = ProcessQueue(now)
        pq.set_locked(True, now)
        if self.offsets.read(mq) is None:
            self.offsets.update(mq, offset)
        request = PullRequest(self.group, mq, pq, offset)
        self.queues[mq] = _QueueState(request)
        log.info("consuming %s from offset %d", mq, offset)
        return request

    def _retry_rebalance(self, now: float) -> None:
        """Rebalance again in half a second (Java's ``rebalanceLater(500)``)."""
        if self._rebalance_due is None:
            self._rebalance_due = now + QUICK_REBALANCE_DELAY

    def _finish_releases(self) -> Flow[None]:
        """Let go of the given-away orderly queues whose consume loop ended."""
        for mq, state in list(self.releasing.items()):
            if not state.consuming:
                del self.releasing[mq]
                yield from self._release_queue(mq, state)
                self._rebalance_now = True  # it may be allocated here again

    # ------------------------------------------------------------------ locks

    def _lock_flow(self, mqs: list[MessageQueue]) -> Flow[set[MessageQueue]]:
        locked: set[MessageQueue] = set()
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in mqs:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        for broker_name, group_mqs in by_broker.items():
            addr = self.client.master_addr(broker_name)
            if addr is None:
                continue
            body = encode_lock_batch(self.group, self.client.client_id, group_mqs)
            try:
                response = yield Call(
                    addr, rq.lock_batch_mq(body), self.client.config.request_timeout
                )
            except RocketMQError as exc:
                log.warning("lock of %s queues on %s failed: %s", len(group_mqs), broker_name, exc)
                continue
            if response.code != ResponseCode.SUCCESS:
                log.warning(
                    "lock on %s refused: %s %s", broker_name, response.code, response.remark
                )
                continue
            try:
                locked |= parse_lock_batch_response(response.body)
            except RemoteProtocolError as exc:
                log.warning("lock answer of %s unreadable: %s", broker_name, exc)
        return locked

    def _unlock_flow(self, mqs: list[MessageQueue]) -> Flow[None]:
        by_broker: dict[str, list[MessageQueue]] = {}
        for mq in mqs:
            by_broker.setdefault(mq.broker_name, []).append(mq)
        for broker_name, group_mqs in by_broker.items():
            addr = self.client.master_addr(broker_name)
            if addr is None:
                continue
            body = encode_unlock_batch(self.group, self.client.client_id, group_mqs)
            try:
                yield Oneway(addr, rq.unlock_batch_mq(body))
            except RocketMQError as exc:
                log.info("unlock on %s failed: %s", broker_name, exc)

    def lock_all_flow(self) -> Flow[None]:
        """Renew the broker locks of every orderly queue held (every 20 s)."""
        mqs = sorted([*self.queues, *self.releasing])
        locked = yield from self._lock_flow(mqs)
        now: float = yield Now()
        for mq in mqs:
            state = self.queues.get(mq)
            if state is None:
                continue
            pq = state.request.process_queue
            if mq in locked:
                pq.set_locked(True, now)
                if not state.consuming and pq.msg_count:
                    state.consuming = True
                    yield Spawn(self.consume_orderly_flow(state), f"orderly {mq}")
            else:
                pq.set_locked(False, now)
        self._last_lock = now

    # ------------------------------------------------------------------- pull

    def pull_loop_flow(self, request: PullRequest) -> Flow[None]:
        """Pull one queue until it is dropped (or the consumer closes)."""
        mq = request.message_queue
        while not self.closed:
            state = self.queues.get(mq)
            if state is None or state.request is not request:
                return
            sub = self.subscriptions.get(mq.topic) or self._all_subscriptions().get(mq.topic)
            outcome = yield from pull_step_flow(
                self.client,
                request,
                sub,
                self.config.pull,
                self.offsets,
                clustering=self.config.clustering,
                orderly=self.orderly,
                queue_count=len(self.queues),
                recompute_offset=self._recompute_offset if self.orderly else None,
            )
            if outcome.messages:
                yield from self._dispatch(state, outcome.messages, outcome.dispatch)
            if outcome.delay is None:
                if outcome.offset_fixed:
                    self.queues.pop(mq, None)
                    self.offsets.remove(mq)
                    self._rebalance_now = True
                return
            if outcome.delay > 0:
                yield Sleep(outcome.delay)

    def _recompute_offset(self, mq: MessageQueue) -> Flow[int]:
        return (
            yield from initial_offset_flow(
                self.client,
                self.group,
                mq,
                self.config.consume_from_where,
                self.config.consume_timestamp or self._start_ms - 30 * 60 * 1000,
                offsets=self.offsets,
            )
        )

    def _dispatch(self, state: _QueueState, msgs: list[MessageExt], dispatch: bool) -> Flow[None]:
        if self.orderly:
            if dispatch and not state.consuming:
                state.consuming = True
                yield Spawn(
                    self.consume_orderly_flow(state), f"orderly {state.request.message_queue}"
                )
            return
        size = self.config.consume_message_batch_max_size
        for i in range(0, len(msgs), size):
            self.ready.append((state, msgs[i : i + size]))
        yield from self._start_workers()

    def _start_workers(self) -> Flow[None]:
        """Enough consume workers for the waiting batches, up to ``consume_thread_max``
        (Java's consume thread pool: each takes batches until none waits)."""
        while self.workers < self.config.consume_thread_max and self.workers < len(self.ready):
            self.workers += 1
            yield Spawn(self.consume_worker_flow(), "consume")

    # ---------------------------------------------------------------- consume

    def _gate(self, msgs: list[MessageExt]) -> Any:
        """Runs the handler where the driver runs user callables, unless the consumer
        closed while the call waited for a worker: then :data:`HANDLER_NOT_RUN`."""
        if self.closed:
            return HANDLER_NOT_RUN
        return self.handler(msgs)

    def _call_handler(self, msgs: list[MessageExt]) -> Flow[ConsumeResult | None]:
        """The handler's verdict, or ``None`` if it did not run (the consumer closed)."""
        namespace = self.client.config.namespace
        for msg in msgs:
            reset_retry_topic(msg, self.group, namespace)
        handler = self.handler if self._handler_is_async else self._gate
        try:
            value = yield UserCall(handler, (msgs,))
        except UserCallbackError as exc:
            self._log_handler_error(msgs, exc)
            value = False
        if value is HANDLER_NOT_RUN:
            return None
        self.consumed += len(msgs)
        try:
            return to_consume_result(value, orderly=self.orderly)
        except RocketMQError as exc:  # a handler's return value we cannot read
            log.warning("message handler answer unusable: %s", exc)
            return to_consume_result(False, orderly=self.orderly)

    def _log_handler_error(self, msgs: list[MessageExt], exc: UserCallbackError) -> None:
        """Log a handler's exception: its traceback, the topic, group and message ids
        (in the text, and as ``rocketmq_topic``/``rocketmq_group``/``rocketmq_msg_ids``
        fields of the record). The batch then counts as failed."""
        error = exc.__cause__ if exc.__cause__ is not None else exc
        topic = ",".join(sorted({m.topic for m in msgs}))
        msg_ids = [m.msg_id for m in msgs]
        log.warning(
            "message handler raised consuming topic %s, group %s, message id(s) %s: %r",
            topic,
            self.group,
            ", ".join(msg_ids),
            error,
            exc_info=error,
            extra={
                "rocketmq_topic": topic,
                "rocketmq_group": self.group,
                "rocketmq_msg_ids": msg_ids,
            },
        )

    def _send(self, msg: Message) -> Flow[Any]:
        assert self._inner is not None
        return self._inner.send_flow(msg)

    def consume_worker_flow(self) -> Flow[None]:
        """A consume worker: takes waiting batches until none is left (or the
        consumer closes); for each, the handler, then settle its result."""
        try:
            while self.ready and not self.closed:
                state, msgs = self.ready.popleft()
                self.in_flight += 1
                try:
                    left = yield from self.consume_flow(state, msgs)
                finally:
                    self.in_flight -= 1
                if left:  # to be consumed again here, later (a worker is not held meanwhile)
                    yield Spawn(self._consume_later(state, left), "consume later")
        finally:
            self.workers -= 1

    def _consume_later(self, state: _QueueState, msgs: list[MessageExt]) -> Flow[None]:
        yield Sleep(CONSUME_REQUEST_RETRY_DELAY)
        if not self.closed and not state.request.process_queue.dropped:
            self.ready.append((state, msgs))
            yield from self._start_workers()

    def consume_flow(self, state: _QueueState, msgs: list[MessageExt]) -> Flow[list[MessageExt]]:
        """One concurrent consume request: the handler, then settle its result; the
        messages to consume again locally (their send-back failed)."""
        request = state.request
        pq = request.process_queue
        if not msgs or pq.dropped:
            return []
        wall: int = yield WallTime()
        mark_consume_start(msgs, wall)
        result = yield from self._call_handler(msgs)
        if result is None or pq.dropped:
            return []
        return (
            yield from process_concurrent_result_flow(
                self.client,
                self.group,
                pq,
                request.message_queue,
                msgs,
                result,
                offsets=self.offsets,
                send=self._send,
                clustering=self.config.clustering,
                delay_level=self.config.delay_level_when_next_consume,
                max_reconsume=self._max_reconsume(),
            )
        )

    def consume_orderly_flow(self, state: _QueueState) -> Flow[None]:
        """Consume one queue in order until it holds nothing (or loses its lock)."""
        request = state.request
        pq = request.process_queue
        mq = request.message_queue
        try:
            while not pq.dropped and not state.releasing and not self.closed:
                now: float = yield Now()
                if self.config.clustering and (not pq.locked or pq.is_lock_expired(now)):
                    locked = yield from self._lock_flow([mq])
                    now = yield Now()
                    pq.set_locked(mq in locked, now)
                    if mq not in locked:
                        yield Sleep(0.1)
                        continue
                msgs = pq.take_messages(self.config.consume_message_batch_max_size, now)
                if not msgs:
                    return
                self.in_flight += 1
                try:
                    result = yield from self._call_handler(msgs)
                    if result is None:
                        pq.rollback()  # not consumed: the taken messages stay pending
                        return
                    if pq.dropped:
                        return
                    outcome = yield from process_orderly_result_flow(
                        pq,
                        mq,
                        msgs,
                        result,
                        offsets=self.offsets,
                        group=self.group,
                        send=self._send,
                        max_reconsume=self._max_reconsume(),
                        default_suspend_millis=self.config.suspend_current_queue_time_millis,
                    )
                finally:
                    self.in_flight -= 1
                if not outcome.continue_consume:
                    yield Sleep(outcome.delay)
        finally:
            state.consuming = False

    # ---------------------------------------------------------------- offsets

    def persist_flow(self) -> Flow[None]:
        """Commit offsets: to the brokers (clustering) or the local file (broadcasting)."""
        assigned = [*self.queues, *self.releasing]
        if self.config.clustering:
            yield from commit_offsets_flow(self.client, self.group, self.offsets, assigned)
        else:
            table = self.offsets.local_snapshot(assigned, self._local_previous)
            if table != self._local_previous or not self._local_previous:
                path = self._local_offsets_file()
                old = yield ReadFile(path)
                if old is not None:
                    yield WriteFile(path + ".bak", old)
                yield WriteFile(path, encode_local_offsets(table))
                self._local_previous = table
        self._last_persist = yield Now()

    # ------------------------------------------------------------ maintenance

    def maintenance_flow(self) -> Flow[None]:
        """Until closed: rebalance, commit offsets, renew locks, clean expired messages."""
        config = self.config
        while not self.closed:
            now: float = yield Now()
            if self.releasing:
                try:
                    yield from self._finish_releases()
                except RocketMQError as exc:
                    log.warning("release of orderly queues of %s failed: %s", self.group, exc)
            if (
                self._rebalance_now
                or self._last_rebalance is None
                or (now - self._last_rebalance >= config.rebalance_interval)
                or (self._rebalance_due is not None and now >= self._rebalance_due)
            ):
                try:
                    yield from self.rebalance_flow()
                except RocketMQError as exc:
                    log.warning("rebalance of %s failed: %s", self.group, exc)
            if self._last_persist is None or now - self._last_persist >= (
                config.persist_consumer_offset_interval
            ):
                try:
                    yield from self.persist_flow()
                except RocketMQError as exc:
                    log.warning("offset commit of %s failed: %s", self.group, exc)
                    self._last_persist = now
            if (
                self.orderly
                and config.clustering
                and (self._last_lock is None or now - self._last_lock >= REBALANCE_LOCK_INTERVAL)
            ):
                yield from self.lock_all_flow()
            if not self.orderly and (self._last_clean is None or now - self._last_clean >= 900):
                self._last_clean = now
                wall: int = yield WallTime()
                for state in list(self.queues.values()):
                    yield from clean_expired_flow(
                        self.client,
                        self.group,
                        state.request.process_queue,
                        wall_ms=wall,
                        send=self._send,
                        consume_timeout_minutes=config.consume_timeout_minutes,
                        max_reconsume=self._max_reconsume(),
                    )
            yield Sleep(0.2)

    def shutdown_flow(self) -> Flow[None]:
        """Stop pulling, let handlers finish (up to ``await_termination``), commit, unlock,
        unregister."""
        # As Java: stop pulling and starting handlers, let the running ones finish
        # and settle (their offsets move), commit, and only then let the queues go.
        self.closed = True
        start: float = yield Now()
        now = start
        while self.in_flight and now - start < self.config.await_termination:
            yield Sleep(0.05)
            now = yield Now()
        try:
            yield from self.persist_flow()
        except RocketMQError as exc:
            log.warning("final offset commit of %s failed: %s", self.group, exc)
        self.ready.clear()  # batches no worker took stay unconsumed (and uncommitted)
        held = {**self.queues, **self.releasing}
        for state in held.values():
            state.request.process_queue.dropped = True
        if self.orderly and self.config.clustering and held:
            yield from self._unlock_flow(sorted(held))
        self.queues.clear()
        self.releasing.clear()
        self.client.consumer_data.pop(self.group, None)
        yield from self.client.unregister_flow(consumer_group=self.group)

    # ------------------------------------------------- broker-initiated requests

    def _ids_changed_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        log.info("broker %s says the consumers of %s changed", addr, self.group)
        self._rebalance_now = True
        return None
        yield  # a flow

    def _reset_offset_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        try:
            table = parse_reset_offset_body(request.body)
        except RemoteProtocolError as exc:
            log.warning("reset offset request from %s unreadable: %s", addr, exc)
            return None if request.is_oneway else Reply(ResponseCode.SYSTEM_ERROR, remark=str(exc))
        group = request.ext_fields.get("group")
        if group and group != self.group:
            return None if request.is_oneway else Reply(ResponseCode.SUCCESS)
        for mq, offset in table.items():
            state = self.queues.pop(mq, None) or self.releasing.pop(mq, None)
            if state is not None:
                state.request.process_queue.dropped = True
            self.offsets.update_and_freeze(mq, offset)
            if self.config.clustering:
                yield from persist_offset_flow(self.client, self.group, self.offsets, mq)
            self.offsets.remove(mq)
        self._rebalance_now = True
        return None if request.is_oneway else Reply(ResponseCode.SUCCESS)

    def _running_info_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        now: float = yield Now()
        wall: int = yield WallTime()
        properties = running_info_properties(
            consume_type=ConsumeType.CONSUME_PASSIVELY,
            consume_orderly=self.orderly,
            consumer_start_timestamp=self._start_ms,
            namesrv_addrs=self.client.namesrv_addrs,
            client_version="V5_3_3",
            thread_pool_core_size=self.config.consume_thread_max,
        )
        mq_table = {
            mq: state.request.process_queue.info(self.offsets.read(mq) or 0, now, wall)
            for mq, state in self.queues.items()
        }
        body = encode_consumer_running_info(
            properties, self._all_subscriptions().values(), mq_table=mq_table
        )
        return Reply(ResponseCode.SUCCESS, body=body)

    def _consume_directly_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        try:
            msg, _ = decode_message(request.body)
        except RemoteProtocolError as exc:
            return Reply(ResponseCode.SYSTEM_ERROR, remark=str(exc))
        msg.broker_name = request.ext_fields.get("brokerName", "")
        start: float = yield Now()
        result = yield from self._call_handler([msg])
        spent: float = yield Now()
        body = rq.consume_message_directly_result(
            consume_directly_result(result or ConsumeResult.RETRY_LATER),
            order=self.orderly,
            spent_time_millis=int((spent - start) * 1000),
        )
        return Reply(ResponseCode.SUCCESS, body=body)
