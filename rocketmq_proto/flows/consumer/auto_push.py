"""A push consumer that consumes each topic as the brokers say (``consume_mode="auto"``).

RocketMQ 5.x brokers keep a request mode per topic and group, ``PULL`` (the
default) or ``POP``, set by SET_MESSAGE_REQUEST_MODE (``Admin.set_consume_mode``,
``mqadmin setConsumeMode``) and told by QUERY_ASSIGNMENT. This consumer asks at
start and then every :data:`MODE_INTERVAL` seconds, and consumes each topic by
its mode: a pulled topic in a :class:`PushConsumerCore` (client rebalance,
offsets), a popped one in a :class:`PopPushConsumerCore` (pops and acks). Both
parts share the group, the handler and its worker limit; one heartbeat names
all the subscriptions.

As Java's consumer with client rebalance off, a topic in ``PULL`` mode also
pulls the topic's pop retry topic (``%RETRY%<group>_<topic>``), so messages
popped and not acked before a switch to ``PULL`` are still consumed; the
group's own retry topic is pulled in both modes. A broker that knows no
request modes (4.x), or has no assignment to give (the topic unknown to it, this
client not yet in the group), leaves a topic as it is: ``PULL`` until a broker
has said ``POP``. Unlike Java's, a popping consumer pops every queue: it does not
follow ``popShareQueueNum`` shares, and it rebalances pulled topics itself (the
same average allocation the broker would make). A switch is at-least-once: a
message may come twice across it. An orderly consumer always pulls (as Java's):
``consume_mode="auto"`` with ``orderly=True`` is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rocketmq_proto.flows.consumer.dispatch import MessageHandler
from rocketmq_proto.flows.consumer.pop_push import PopPushConsumerCore
from rocketmq_proto.flows.consumer.push import PushConsumerCore
from rocketmq_proto.flows.consumer.push_config import ConsumerConfig
from rocketmq_proto.flows.effects import Flow, call, now, sleep, spawn
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    ConsumerData,
    ConsumeType,
    MessageModel,
    SubscriptionData,
    build_subscription,
)
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.errors import ConfigError, RocketMQError, error_for_response
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.pop import (
    RETRY_TOPIC_V1,
    encode_query_assignment,
    parse_query_assignment,
    pop_retry_topic,
)
from rocketmq_proto.wire.route import MessageQueue

__all__ = ["MODE_INTERVAL", "AutoPushConsumerCore"]

log = logging.getLogger("rocketmq_proto.consumer")

#: Seconds between two looks at the brokers' request modes (Java asks at each
#: rebalance, every 20 s).
MODE_INTERVAL = 20.0
#: The allocation strategy named in QUERY_ASSIGNMENT (only its mode is used here).
_STRATEGY = "AVG"
#: Seconds a switch to PULL waits beyond a pop's answer timeout for the pops to end.
_POP_END_MARGIN = 5.0
#: Seconds between two looks at what a switch or a close waits for.
_CLOSE_POLL = 0.05


@dataclass(slots=True)
class AutoPushConsumerCore(LifecycleOwner):
    """A push consumer of one group consuming each topic by the brokers' mode."""

    client: ClientCore
    config: ConsumerConfig
    handler: MessageHandler
    ids: UniqueIdGenerator
    #: The topics in ``PULL`` mode (and the group's retry topic).
    pulling: PushConsumerCore = field(init=False)
    #: The topics in ``POP`` mode.
    popping: PopPushConsumerCore = field(init=False)
    #: Each subscribed topic's mode (by the user's name), as last told.
    modes: dict[str, str] = field(default_factory=dict, init=False)
    #: The user's subscriptions: topic -> (expression, expression type).
    _wanted: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)
    _lifecycle: Lifecycle = field(
        default_factory=lambda: Lifecycle("push consumer (auto)"), init=False
    )

    def __post_init__(self) -> None:
        self.pulling = PushConsumerCore(self.client, self.config, self.handler, self.ids)
        self.popping = PopPushConsumerCore(self.client, self.config, self.handler)
        # One set of counters for both parts: a topic may move from one to the other.
        self.popping.metrics = self.pulling.ctx.metrics

    # ------------------------------------------------------------ names

    @property
    def group(self) -> str:
        return self.pulling.group

    @property
    def subscriptions(self) -> dict[str, SubscriptionData]:
        """Every subscription of both parts (by the names the brokers know)."""
        return {**self.pulling.ctx.all_subscriptions(), **self.popping.subscriptions}

    @property
    def queues(self) -> dict[MessageQueue, object]:
        """The queues pulled now (popped topics hold none)."""
        return dict(self.pulling.queues)

    @property
    def consumed(self) -> int:
        return self.pulling.consumed + self.popping.consumed

    def stats(self) -> dict[str, Any]:
        """Both parts' ``stats()`` in one: the handler calls (counted together), the
        pulled queues, and the popped messages held."""
        merged = self.pulling.stats()
        merged["consume"]["dead_lettered"] += self.popping.pop.dead_lettered
        merged["in_flight"] = self.popping.in_flight
        merged["pop_not_served"] = self.popping.pop_not_served()
        return merged

    def mode_of(self, topic: str) -> str:
        """``topic``'s mode: ``PULL`` until a broker said ``POP``."""
        return self.modes.get(topic, "PULL")

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, topic: str, expression: str = "*", expression_type: str = "TAG") -> None:
        self._wanted[topic] = (expression, expression_type)
        if self.mode_of(topic) == "POP":
            self.popping.subscribe(topic, expression, expression_type)
        else:
            self.pulling.subscribe(topic, expression, expression_type)

    def unsubscribe(self, topic: str) -> None:
        self._wanted.pop(topic, None)
        self.modes.pop(topic, None)
        self.pulling.unsubscribe(topic)
        self.pulling.ctx.subscriptions.pop(self._pop_retry(topic), None)
        self.popping.unsubscribe(topic)

    def _pop_retry(self, topic: str) -> str:
        return pop_retry_topic(
            ns.wrap(self.client.config.namespace, topic), self.group, RETRY_TOPIC_V1
        )

    def consumer_data(self) -> ConsumerData:
        return ConsumerData(
            group_name=self.group,
            consume_type=ConsumeType.CONSUME_PASSIVELY,
            message_model=MessageModel.CLUSTERING,
            consume_from_where=self.config.consume_from_where,
            subscriptions=tuple(self.subscriptions.values()),
        )

    def register(self) -> None:
        """The pulling part answers the brokers' requests to the group; the
        heartbeat names both parts' subscriptions."""
        self.pulling.register()
        self.client.consumer_data[self.group] = self.consumer_data

    # ------------------------------------------------------------ lifecycle

    def start_flow(self) -> Flow[None]:
        """Routes and a heartbeat, the topics' modes, then both parts; the popping
        part's upkeep and the look at the modes run from then on, each once."""
        if not self._wanted:
            raise ConfigError("subscribe to at least one topic before starting the consumer")
        if self.state is not LifecycleState.RUNNING:
            self.start()
        yield from self.pulling.open_flow()
        yield from self._modes_flow()
        yield from self.popping.start_flow()
        yield from spawn(self.popping.maintenance_flow(), f"pop upkeep {self.group}")
        yield from spawn(self._modes_loop_flow(), f"request modes {self.group}")

    def maintenance_flow(self) -> Flow[None]:
        """Until closed: the pulling part's upkeep (rebalance, offsets)."""
        return self.pulling.maintenance_flow()

    def _modes_loop_flow(self) -> Flow[None]:
        while not self.closed:
            yield from sleep(MODE_INTERVAL)
            if self.closed:
                return
            try:
                yield from self._modes_flow()
            except RocketMQError as exc:
                log.warning(
                    "request modes of %s not refreshed: %s",
                    self.group,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group),
                )

    def shutdown_flow(self) -> Flow[None]:
        """As a pulling consumer closes: both parts stop fetching, the handlers of
        both finish (and the popped messages are acked), up to ``await_termination``;
        then the pulled offsets are committed and the group is unregistered, once."""
        if self.state is not LifecycleState.CLOSING:
            self.begin_close()
        try:
            for part in (self.popping, self.pulling):
                if part.state is LifecycleState.RUNNING:
                    part.begin_close()
            start = yield from now()
            now_s = start
            while (
                self.pulling.in_flight or self.popping.in_flight or self.popping.settling
            ) and now_s - start < self.config.await_termination:
                yield from sleep(_CLOSE_POLL)
                now_s = yield from now()
            if self.popping.state is LifecycleState.CLOSING:
                yield from self.popping.shutdown_flow(unregister=False)
            if self.pulling.state is LifecycleState.CLOSING:
                yield from self.pulling.shutdown_flow()  # commits, then unregisters
        finally:
            self.popping.close_at_once()
            self.pulling.close_at_once()
            self.finish_close()

    def close_at_once(self) -> None:
        self.popping.close_at_once()
        self.pulling.close_at_once()
        LifecycleOwner.close_at_once(self)

    # ------------------------------------------------------------ modes

    def _modes_flow(self) -> Flow[None]:
        """Ask for each subscribed topic's mode; move the topics whose mode changed."""
        for topic in sorted(self._wanted):
            try:
                mode = yield from self._query_mode_flow(topic)
            except RocketMQError as exc:
                log.warning(
                    "request mode of %s for %s unknown: %s",
                    topic,
                    self.group,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group, topic=topic),
                )
                continue
            if mode is not None and topic in self._wanted and mode != self.modes.get(topic):
                yield from self._set_mode_flow(topic, mode)
        if self.popping.state is LifecycleState.RUNNING:
            yield from self.popping.refresh_loops_flow()

    def _query_mode_flow(self, topic: str) -> Flow[str | None]:
        """``POP`` or ``PULL`` as one broker of ``topic`` says, or ``None`` when it
        cannot say (it knows no request modes, or has no assignment to give)."""
        full = ns.wrap(self.client.config.namespace, topic)
        route = yield from self.client.route_flow(full)
        brokers = sorted(
            q.broker_name for q in route.queue_datas if q.readable and q.read_queue_nums > 0
        )
        if not brokers:
            return None
        addr = yield from self.client.master_addr_flow(brokers[0], full)
        body = encode_query_assignment(
            full, self.group, self.client.client_id, MessageModel.CLUSTERING, _STRATEGY
        )
        response = yield from call(
            addr, rq.query_assignment(body), self.client.config.request_timeout
        )
        if response.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
            return None
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(
                response.code, response.remark, request=RequestCode.QUERY_ASSIGNMENT
            )
        assignments = parse_query_assignment(response.body)
        if assignments is None:
            return None
        # An empty answer: no queue for this consumer, which POP never leaves one
        # without (every consumer pops every queue, or a share): PULL, as Java reads it.
        return "POP" if any(a.mode == "POP" for a in assignments) else "PULL"

    def _set_mode_flow(self, topic: str, mode: str) -> Flow[None]:
        """Consume ``topic`` by ``mode`` from now on. To POP: the topic's pulled
        queues are let go first (their offsets committed), then popped. To PULL: the
        pops of the topic end first (a pop held at a broker returns within its
        long-poll time, its messages handled and acked), then it is pulled, with its
        pop retry topic. Either way a message may come twice across the switch
        (at-least-once: the pops and the pulls share the group's offsets, which a
        broker commits for pops a little behind their acks)."""
        previous = self.mode_of(topic)
        self.modes[topic] = mode
        expression, expression_type = self._wanted[topic]
        retry = self._pop_retry(topic)
        full = ns.wrap(self.client.config.namespace, topic)
        if mode == "POP":
            # As Java: a popped topic's pop retry topic is the broker's to read.
            self.pulling.ctx.subscriptions.pop(retry, None)
            if previous != "POP":
                self.pulling.unsubscribe(topic)
                yield from self.pulling.drop_topic_flow(full)
                self.popping.subscribe(topic, expression, expression_type)
        else:
            if previous == "POP":
                self.popping.unsubscribe(topic)
                start = yield from now()
                limit = self.config.pull.consumer_timeout_when_suspend + _POP_END_MARGIN
                while self.popping.pops_running(full) and not self.closed:
                    if (yield from now()) - start > limit:
                        log.warning(
                            "pops of %s still running after %g s",
                            topic,
                            limit,
                            extra=log_fields(
                                client=self.client.client_id, group=self.group, topic=topic
                            ),
                        )
                        break
                    yield from sleep(_CLOSE_POLL)
                if topic not in self._wanted or self.modes.get(topic) != mode:
                    return  # unsubscribed or switched again meanwhile
                self.pulling.subscribe(topic, expression, expression_type)
            # Messages popped before a switch come back through the pop retry topic.
            if retry not in self.pulling.ctx.subscriptions:
                self.pulling.ctx.subscriptions[retry] = build_subscription(retry, "*", "TAG")
                self.pulling.ctx.rebalance.ask_now()
        if mode != previous:
            log.info(
                "group %s consumes %s by %s now (the brokers' request mode)",
                self.group,
                topic,
                mode,
                extra=log_fields(client=self.client.client_id, group=self.group, topic=topic),
            )
