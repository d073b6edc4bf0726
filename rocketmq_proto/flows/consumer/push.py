"""The push consumer, assembled from the consumer pieces (Java's ``DefaultMQPushConsumerImpl``).

:class:`PushConsumerCore` owns a group's subscriptions, held queues and
offsets (a :class:`~rocketmq_proto.flows.consumer.push_state.PushContext`) and
composes the parts that keep them moving, one job per module:

* :mod:`~rocketmq_proto.flows.consumer.push_config`: the settings;
* :mod:`~rocketmq_proto.flows.consumer.pull_loop`: one pull loop per held queue;
* :mod:`~rocketmq_proto.flows.consumer.dispatch`: the handler, and concurrent
  consumption (workers, results settled, failed messages sent back);
* :mod:`~rocketmq_proto.flows.consumer.orderly`: broker locks and one consume
  loop per queue for orderly consumption;
* :mod:`~rocketmq_proto.flows.consumer.upkeep`: rebalance (at start, every
  20 s, and when a broker says the group changed), offset commits every 5 s
  (to the brokers, or for broadcasting to a local file), lock renewals.

Here: subscriptions, the lifecycle (start, then a graceful shutdown), and the
requests brokers send the consumer. A driver runs :meth:`PushConsumerCore.start_flow`
and :meth:`PushConsumerCore.maintenance_flow`, and runs what they spawn; it
holds no consumer decision itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.consumer.consume import consume_directly_flow
from rocketmq_proto.flows.consumer.dispatch import (
    HANDLER_NOT_RUN,
    ConcurrentConsumption,
    Handler,
    MessageHandler,
)
from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    load_local_offsets,
    persist_offset_flow,
)
from rocketmq_proto.flows.consumer.orderly import OrderlyConsumption
from rocketmq_proto.flows.consumer.process_queue import REBALANCE_LOCK_INTERVAL
from rocketmq_proto.flows.consumer.pull import queue_lag
from rocketmq_proto.flows.consumer.pull_loop import PullLoops
from rocketmq_proto.flows.consumer.push_config import ConsumeMode, ConsumerConfig
from rocketmq_proto.flows.consumer.push_state import (
    QUICK_REBALANCE_DELAY,
    Periodic,
    PushContext,
    QueueState,
)
from rocketmq_proto.flows.consumer.upkeep import CLEAN_EXPIRED_INTERVAL, PushUpkeep
from rocketmq_proto.flows.effects import Flow, now, read_file, sleep, wall_ms
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.metrics import queue_row
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.wire.bodies import (
    ConsumerData,
    ConsumeType,
    SubscriptionData,
    build_subscription,
    encode_consumer_running_info,
    parse_reset_offset_body,
    running_info_properties,
)
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import ConfigError, RemoteProtocolError, RocketMQError
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue

__all__ = [
    "HANDLER_NOT_RUN",
    "QUICK_REBALANCE_DELAY",
    "ConsumeMode",
    "ConsumerConfig",
    "MessageHandler",
    "PushConsumerCore",
    "QueueState",
]

log = logging.getLogger("rocketmq_proto.consumer")

#: Seconds a graceful close waits between two looks at the handlers still running.
_CLOSE_POLL = 0.05


@dataclass(slots=True)
class PushConsumerCore(LifecycleOwner):
    """A push consumer of one group: the parts composed, and its lifecycle.

    :meth:`start_flow` moves it from created to running, :meth:`shutdown_flow`
    through closing to closed (see :class:`~rocketmq_proto.flows.lifecycle.LifecycleOwner`).
    """

    client: ClientCore
    config: ConsumerConfig
    handler: MessageHandler
    ids: UniqueIdGenerator
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("push consumer"), init=False)
    #: The state the parts share.
    ctx: PushContext = field(init=False)
    #: Sends messages back to the retry topic when a broker will not take them.
    producer: ProducerCore = field(init=False, repr=False)
    #: Runs the handler and reads its verdicts (counts what runs and what ran).
    handling: Handler = field(init=False, repr=False)
    #: Where pulled messages go: concurrent or orderly consumption.
    consumption: ConcurrentConsumption | OrderlyConsumption = field(init=False, repr=False)
    pulls: PullLoops = field(init=False, repr=False)
    upkeep: PushUpkeep = field(init=False, repr=False)

    def __post_init__(self) -> None:
        group = ns.wrap(self.client.config.namespace, self.config.group)
        ctx = PushContext(self.client, self.config, group, self._lifecycle)
        self.ctx = ctx
        self.producer = ProducerCore(
            self.client, ProducerConfig(group="CLIENT_INNER_PRODUCER"), self.ids, hooked=False
        )
        self.handling = Handler(ctx, self.handler)
        orderly: OrderlyConsumption | None = None
        if self.config.orderly:
            orderly = OrderlyConsumption(
                ctx, self.handling, self.producer, Periodic(REBALANCE_LOCK_INTERVAL)
            )
            self.consumption = orderly
        else:
            self.consumption = ConcurrentConsumption(ctx, self.handling, self.producer)
        self.pulls = PullLoops(ctx, self.consumption)
        self.upkeep = PushUpkeep(
            ctx,
            self.pulls,
            orderly,
            self.producer,
            persist=Periodic(self.config.persist_consumer_offset_interval),
            clean=Periodic(CLEAN_EXPIRED_INTERVAL),
        )

    # ------------------------------------------------------------ names

    @property
    def group(self) -> str:
        """The group as the brokers know it (with the namespace)."""
        return self.ctx.group

    @property
    def orderly(self) -> bool:
        return self.config.orderly

    @property
    def subscriptions(self) -> dict[str, SubscriptionData]:
        return self.ctx.subscriptions

    @property
    def offsets(self) -> OffsetStore:
        return self.ctx.offsets

    @property
    def queues(self) -> dict[MessageQueue, QueueState]:
        """The queues held now (this consumer's share after the last rebalance)."""
        return self.ctx.queues

    @property
    def consumed(self) -> int:
        """Messages handed to the handler so far."""
        return self.handling.consumed

    @property
    def in_flight(self) -> int:
        """Handlers running now (a graceful close waits for them)."""
        return self.handling.in_flight

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        """Subscribe to ``topic`` with a tag expression (``*``, ``a || b``) or SQL92."""
        full = ns.wrap(self.client.config.namespace, topic)
        self.ctx.subscriptions[full] = build_subscription(full, expression, expression_type)
        self.ctx.rebalance.ask_now()

    def unsubscribe(self, topic: str) -> None:
        self.ctx.subscriptions.pop(ns.wrap(self.client.config.namespace, topic), None)
        self.ctx.rebalance.ask_now()

    def consumer_data(self) -> ConsumerData:
        return ConsumerData(
            group_name=self.group,
            consume_type=ConsumeType.CONSUME_PASSIVELY,
            message_model=self.config.message_model,
            consume_from_where=self.config.consume_from_where,
            subscriptions=tuple(self.ctx.all_subscriptions().values()),
        )

    def register(self) -> None:
        """Announce the group in heartbeats and answer the brokers' requests to it."""
        client = self.client
        client.consumer_data[self.group] = self.consumer_data
        client.handlers[RequestCode.NOTIFY_CONSUMER_IDS_CHANGED] = self._ids_changed_flow
        client.handlers[RequestCode.RESET_CONSUMER_CLIENT_OFFSET] = self._reset_offset_flow
        client.handlers[RequestCode.GET_CONSUMER_RUNNING_INFO] = self._running_info_flow
        client.handlers[RequestCode.CONSUME_MESSAGE_DIRECTLY] = self._consume_directly_flow

    # ------------------------------------------------------------ lifecycle

    def start_flow(self) -> Flow[None]:
        """Start (created -> running, unless the driver called :meth:`start` first):
        routes of the subscribed topics, local offsets (broadcasting), a heartbeat.

        Raises :class:`ConfigError` with no subscription (the consumer stays
        created), :class:`LocalProtocolError` once it is closing or closed.
        """
        if not self.ctx.subscriptions:
            raise ConfigError("subscribe to at least one topic before starting the consumer")
        yield from self.open_flow()

    def open_flow(self) -> Flow[None]:
        """:meth:`start_flow` with no subscription needed (a consumer in ``auto``
        mode whose topics all pop still pulls its group's retry topic)."""
        if self.state is not LifecycleState.RUNNING:
            self.start()
        ctx = self.ctx
        ctx.start_ms = yield from wall_ms()
        if not self.config.clustering:
            path = ctx.local_offsets_file()
            main = yield from read_file(path)
            backup = yield from read_file(path + ".bak")
            ctx.local_offsets = load_local_offsets(main, backup)
        for topic in ctx.all_subscriptions():
            self.client.topics_in_use.add(topic)
            try:
                yield from self.client.route_flow(topic)
            except RocketMQError as exc:
                # A group's retry topic exists only once a broker has seen the group.
                level = logging.DEBUG if topic.startswith(ns.RETRY_PREFIX) else logging.WARNING
                log.log(level, "route of %s unavailable at start: %s", topic, exc)
        yield from self.client.heartbeat_flow()
        ctx.rebalance.ask_now()

    def maintenance_flow(self) -> Flow[None]:
        """Until closed: rebalance, commit offsets, renew locks, clean expired messages."""
        return self.upkeep.maintenance_flow()

    def rebalance_flow(self) -> Flow[bool]:
        """One rebalance round over every subscribed topic; whether anything changed."""
        return self.upkeep.rebalance_flow()

    def drop_topic_flow(self, topic: str) -> Flow[None]:
        """Let go of the queues of ``topic`` (as the brokers know it) held now,
        committing their offsets, as a rebalance does once it is unsubscribed."""
        for mq in [mq for mq in self.ctx.queues if mq.topic == topic]:
            yield from self.upkeep.drop_queue_flow(mq)

    def persist_flow(self) -> Flow[None]:
        """Commit offsets: to the brokers (clustering) or the local file (broadcasting)."""
        return self.upkeep.persist_flow()

    def stats(self) -> dict[str, Any]:
        """This consumer's part of the client's ``stats()``: its handler calls, and
        each held queue's cached messages and lag."""
        ctx = self.ctx
        namespace = ctx.client.config.namespace
        queues = []
        for mq, state in sorted(ctx.queues.items()):
            pq = state.request.process_queue
            lag = queue_lag(state.request, ctx.offsets.read(mq))
            topic = ns.unwrap(namespace, mq.topic)
            row = queue_row(topic, mq.broker_name, mq.queue_id, pq.msg_count, pq.msg_size, lag)
            queues.append(row)
        return {"consume": ctx.metrics.snapshot(), "queues": queues}

    def shutdown_flow(self) -> Flow[None]:
        """Close gracefully: stop pulling, let handlers finish (up to
        ``await_termination``), commit, unlock, unregister.

        Begins the close (running -> closing) unless the driver called
        :meth:`begin_close` first, and ends closed even when a step fails.
        """
        # As Java: stop pulling and starting handlers, let the running ones finish
        # and settle (their offsets move), commit, and only then let the queues go.
        if self.state is not LifecycleState.CLOSING:
            self.begin_close()
        try:
            yield from self._wind_down_flow()
        finally:
            self.finish_close()

    def _wind_down_flow(self) -> Flow[None]:
        ctx = self.ctx
        start = yield from now()
        now_s = start
        while self.handling.in_flight and now_s - start < self.config.await_termination:
            yield from sleep(_CLOSE_POLL)
            now_s = yield from now()
        try:
            yield from self.upkeep.persist_flow(confirmed=True)
        except RocketMQError as exc:
            log.warning(
                "final offset commit of %s failed: %s",
                self.group,
                exc,
                extra=log_fields(client=self.client.client_id, group=self.group),
            )
        if isinstance(self.consumption, ConcurrentConsumption):
            # Batches no worker took stay unconsumed (and uncommitted).
            self.consumption.ready.clear()
        held = {**ctx.queues, **ctx.releasing}
        for state in held.values():
            state.request.process_queue.dropped = True
        if isinstance(self.consumption, OrderlyConsumption) and self.config.clustering and held:
            yield from self.consumption.unlock_flow(sorted(held))
        ctx.queues.clear()
        ctx.releasing.clear()
        self.client.consumer_data.pop(self.group, None)
        yield from self.client.unregister_flow(consumer_group=self.group)

    # ------------------------------------------------- broker-initiated requests

    def _ids_changed_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        log.info(
            "broker %s says the consumers of %s changed",
            addr,
            self.group,
            extra=log_fields(client=self.client.client_id, group=self.group, addr=addr),
        )
        self.ctx.rebalance.ask_now()
        return None
        yield  # a flow

    def _reset_offset_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        ctx = self.ctx
        try:
            table = parse_reset_offset_body(request.body)
        except RemoteProtocolError as exc:
            log.warning(
                "reset offset request from %s unreadable: %s",
                addr,
                exc,
                extra=log_fields(client=self.client.client_id, group=self.group, addr=addr),
            )
            return None if request.is_oneway else Reply(ResponseCode.SYSTEM_ERROR, remark=str(exc))
        group = request.ext_fields.get("group")
        if group and group != self.group:
            return None if request.is_oneway else Reply(ResponseCode.SUCCESS)
        for mq, offset in table.items():
            state = ctx.queues.pop(mq, None) or ctx.releasing.pop(mq, None)
            if state is not None:
                state.request.process_queue.dropped = True
            ctx.offsets.update_and_freeze(mq, offset)
            if self.config.clustering:
                yield from persist_offset_flow(self.client, self.group, ctx.offsets, mq)
            ctx.offsets.remove(mq)
        ctx.rebalance.ask_now()
        return None if request.is_oneway else Reply(ResponseCode.SUCCESS)

    def _running_info_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        ctx = self.ctx
        now_s = yield from now()
        wall = yield from wall_ms()
        properties = running_info_properties(
            consume_type=ConsumeType.CONSUME_PASSIVELY,
            consume_orderly=self.orderly,
            consumer_start_timestamp=ctx.start_ms,
            namesrv_addrs=self.client.namesrv_addrs,
            client_version="V5_3_3",
            thread_pool_core_size=self.config.consume_thread_max,
        )
        mq_table = {
            mq: state.request.process_queue.info(ctx.offsets.read(mq) or 0, now_s, wall)
            for mq, state in ctx.queues.items()
        }
        body = encode_consumer_running_info(
            properties, ctx.all_subscriptions().values(), mq_table=mq_table
        )
        return Reply(ResponseCode.SUCCESS, body=body)

    def _consume_directly_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        return (
            yield from consume_directly_flow(request, self.handling.call_flow, orderly=self.orderly)
        )
