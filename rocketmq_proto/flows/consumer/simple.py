"""The simple consumer: RocketMQ 5.x POP consumption, one receive at a time.

``receive`` pops messages from the brokers of the subscribed topics
(POP_MESSAGE): the broker hides them for an invisible duration and the
consumer acks each one it has processed (ACK_MESSAGE, or BATCH_ACK_MESSAGE for
several of one broker), or hides it longer (CHANGE_MESSAGE_INVISIBLETIME). A
message not acked in time becomes visible again: the broker writes it to the
group's pop retry topic with its reconsume count raised, and a later receive
gets it. No client rebalance: any number of consumers of a group share every
queue. Orderly (FIFO) pops deliver a queue's messages in order and hold the
next until the previous one is acked.

What the Java remoting POP consumer does differently: a message redelivered
more than ``max_reconsume_times`` times goes to the group's dead-letter queue
(CONSUMER_SEND_MSG_BACK with delay level -1, then acked), as the 5.x proxy does
for its gRPC clients, instead of being acked and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rocketmq_proto.flows.consumer.pull import decode_pull_body
from rocketmq_proto.flows.effects import Flow, call, now, wall_ms
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.message.properties import MessageConst
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    ConsumeFromWhere,
    ConsumerData,
    ConsumeType,
    ExpressionType,
    MessageModel,
    SubscriptionData,
    build_subscription,
)
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    ConnectionClosedError,
    InvalidArgumentError,
    LocalProtocolError,
    PopNotServedError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.pop import (
    ReceiptHandle,
    encode_batch_ack,
    offset_key,
    parse_offset_counts,
    parse_offset_lists,
    parse_start_offsets,
    queue_offset_key,
    retry_flag,
)

__all__ = ["MAX_POP_BATCH", "SimpleConsumerConfig", "SimpleConsumerCore"]

log = logging.getLogger("rocketmq_proto.consumer")

#: No limit to redeliveries (an orderly push consumer's default, as Java's).
_UNLIMITED = 2**31 - 1
#: Most messages one POP_MESSAGE may ask for (the broker refuses more).
MAX_POP_BATCH = 32
#: Seconds a POP's answer may take beyond its long poll (Java's margin).
POP_ANSWER_MARGIN = 10.0
#: Bounds of an invisible duration, in seconds (the 5.x proxy allows up to 12 h).
MIN_INVISIBLE = 1.0
MAX_INVISIBLE = 12 * 3600.0
_POP_CK = MessageConst.PROPERTY_POP_CK
_FIRST_POP_TIME = MessageConst.PROPERTY_FIRST_POP_TIME
_TAGS = MessageConst.PROPERTY_TAGS
#: ``initMode`` of POP_MESSAGE for a group with no offset yet.
_INIT_MODE = {
    ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET: 0,
    ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET: 1,
}


@dataclass(frozen=True, slots=True)
class SimpleConsumerConfig:
    """A simple consumer's settings. Times in seconds."""

    group: str
    #: How long a receive waits for a message (the broker's long poll).
    await_duration: float = 15.0
    #: How long received messages stay hidden when ``receive`` is not told.
    invisible_duration: float = 60.0
    #: A message delivered again more often than this goes to the dead-letter
    #: queue (as Java's push consumer: 16 means up to 17 deliveries).
    max_reconsume_times: int = 16
    #: Where a group with no offset yet starts: the last message or the first.
    consume_from_where: str = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    #: Orderly (FIFO) pops: a queue's messages in order, one unacked at a time.
    fifo: bool = False

    def __post_init__(self) -> None:
        if not self.group or not all(c.isalnum() or c in "%|-_" for c in self.group):
            raise ConfigError(f"consumer group {self.group!r} is not a valid group name")
        if not self.await_duration >= 0:
            raise ConfigError(f"await_duration must be >= 0, got {self.await_duration!r}")
        check_invisible_duration(self.invisible_duration, ConfigError)
        if not 0 <= self.max_reconsume_times <= _UNLIMITED:
            raise ConfigError(
                f"max_reconsume_times must be 0 or more, got {self.max_reconsume_times!r}"
            )
        if self.consume_from_where not in _INIT_MODE:
            raise ConfigError(
                "a simple consumer starts from the first or the last offset, not "
                f"{self.consume_from_where!r}"
            )


def check_invisible_duration(seconds: object, error: type[RocketMQError]) -> float:
    """``seconds`` if it is a usable invisible duration, else ``error``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise error(f"invisible_duration must be a number of seconds, got {seconds!r}")
    if not MIN_INVISIBLE <= seconds <= MAX_INVISIBLE:
        raise error(
            f"invisible_duration must be {MIN_INVISIBLE:g} s to {MAX_INVISIBLE:g} s, "
            f"got {seconds!r}"
        )
    return float(seconds)


@dataclass(slots=True)
class SimpleConsumerCore(LifecycleOwner):
    """A simple consumer of one group: its subscriptions and its POP flows.

    Its lifecycle is moved by the driver (``start``, ``begin_close``,
    ``finish_close``); :meth:`start_flow` announces it to the brokers.
    """

    client: ClientCore
    config: SimpleConsumerConfig
    #: Topic (as the broker knows it) -> its subscription.
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("simple consumer"), init=False)
    #: Where the next receive starts in the rotation of (topic, broker) pairs.
    _next: int = field(default=0, init=False)
    #: Orderly pops: per (topic, broker), the attempt id of a pop whose answer was
    #: lost, sent again by the next pop there (and by no other at the same time)
    #: so the broker hands the same messages over instead of holding the queues.
    _lost_attempts: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    _attempts: int = field(default=0, init=False)
    #: Messages received, acked, and moved to the dead-letter queue (``stats()``).
    received: int = field(default=0, init=False)
    acked: int = field(default=0, init=False)
    dead_lettered: int = field(default=0, init=False)

    @property
    def group(self) -> str:
        return ns.wrap(self.client.config.namespace, self.config.group)

    def stats(self) -> dict[str, Any]:
        """This consumer's part of the client's ``stats()``."""
        return {
            "received": self.received,
            "acked": self.acked,
            "dead_lettered": self.dead_lettered,
        }

    def _wrap(self, topic: str) -> str:
        return ns.wrap(self.client.config.namespace, topic)

    # ------------------------------------------------------------ subscriptions

    def subscribe(
        self, topic: str, expression: str = "*", expression_type: str = ExpressionType.TAG
    ) -> None:
        full = self._wrap(topic)
        self.subscriptions[full] = build_subscription(full, expression, expression_type)
        self.client.topics_in_use.add(full)

    def unsubscribe(self, topic: str) -> None:
        self.subscriptions.pop(self._wrap(topic), None)

    def consumer_data(self) -> ConsumerData:
        return ConsumerData(
            group_name=self.group,
            consume_type=ConsumeType.CONSUME_POP,
            message_model=MessageModel.CLUSTERING,
            consume_from_where=self.config.consume_from_where,
            subscriptions=tuple(self.subscriptions.values()),
        )

    def register(self) -> None:
        """Announce the group in heartbeats (the brokers list it as a consumer)."""
        self.client.consumer_data[self.group] = self.consumer_data

    def unregister(self) -> None:
        self.client.consumer_data.pop(self.group, None)

    def start_flow(self) -> Flow[None]:
        """Routes of the subscribed topics, then a heartbeat naming the group."""
        for topic in list(self.subscriptions):
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

    def _check_running(self, what: str) -> None:
        if self.state is not LifecycleState.RUNNING:
            if self.state is LifecycleState.CREATED:
                raise LocalProtocolError(f"SimpleConsumer.{what}() before start(): start it first")
            raise LocalProtocolError(f"SimpleConsumer.{what}(): the consumer is {self.state.value}")

    # ------------------------------------------------------------------ receive

    def receive_flow(
        self, max_messages: int, invisible_duration: float | None, wait: float | None
    ) -> Flow[list[MessageExt]]:
        """:meth:`_receive_flow`, counted."""
        msgs = yield from self._receive_flow(max_messages, invisible_duration, wait)
        self.received += len(msgs)
        return msgs

    def _receive_flow(
        self, max_messages: int, invisible_duration: float | None, wait: float | None
    ) -> Flow[list[MessageExt]]:
        """Up to ``max_messages`` messages, hidden from other receives for
        ``invisible_duration`` seconds, waiting up to ``wait`` seconds for the
        first (default: the ``await_duration`` option). ``[]`` if none came.

        Each broker of each subscribed topic is asked in turn without waiting;
        if none has a message, one of them (a different one each receive) is
        asked to hold the request until a message arrives or ``wait`` ends.
        """
        self._check_running("receive")
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise InvalidArgumentError(f"max_messages must be an int, got {max_messages!r}")
        if not 1 <= max_messages <= MAX_POP_BATCH:
            raise InvalidArgumentError(
                f"max_messages must be 1..{MAX_POP_BATCH} (the broker's limit), got {max_messages}"
            )
        invisible = check_invisible_duration(
            self.config.invisible_duration if invisible_duration is None else invisible_duration,
            InvalidArgumentError,
        )
        wait = self.config.await_duration if wait is None else wait
        if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
            raise InvalidArgumentError(f"wait must be a number of seconds >= 0, got {wait!r}")
        if not self.subscriptions:
            raise LocalProtocolError("SimpleConsumer.receive(): subscribe to a topic first")
        began = yield from now()
        targets = yield from self.targets_flow()
        if not targets:
            raise RouteNotFoundError(
                "no broker serves a subscribed topic: "
                + ", ".join(
                    sorted(ns.unwrap(self.client.config.namespace, t) for t in self.subscriptions)
                )
            )
        first = self._next % len(targets)
        self._next += 1
        order = targets[first:] + targets[:first]
        invisible_ms = round(invisible * 1000)
        answered: list[tuple[str, str]] = []
        failure: RocketMQError | None = None
        for topic, broker in order:
            try:
                msgs = yield from self.pop_flow(topic, broker, max_messages, invisible_ms, 0)
            except RocketMQError as exc:
                # Another broker may have messages: a receive fails only when
                # every broker failed.
                log.info(
                    "receive from %s of %s failed: %s",
                    broker,
                    topic,
                    exc,
                    extra=log_fields(
                        client=self.client.client_id, group=self.group, topic=topic, broker=broker
                    ),
                )
                failure = exc
                continue
            if msgs:
                return msgs
            answered.append((topic, broker))
        if failure is not None and not answered:
            raise failure  # every broker failed
        left = wait - ((yield from now()) - began)
        if left <= 0.05:
            return []
        topic, broker = answered[0]
        return (yield from self.pop_flow(topic, broker, max_messages, invisible_ms, left))

    def targets_flow(self) -> Flow[list[tuple[str, str]]]:
        """(topic, broker name) of every readable broker of every subscription."""
        targets: list[tuple[str, str]] = []
        for topic in sorted(self.subscriptions):
            try:
                route = yield from self.client.route_flow(topic)
            except RocketMQError as exc:
                log.warning(
                    "route of %s unavailable: %s",
                    topic,
                    exc,
                    extra=log_fields(client=self.client.client_id, group=self.group, topic=topic),
                )
                continue
            targets.extend(
                (topic, q.broker_name)
                for q in sorted(route.queue_datas, key=lambda q: q.broker_name)
                if q.readable and q.read_queue_nums > 0
            )
        return targets

    def pop_flow(
        self, topic: str, broker: str, max_messages: int, invisible_ms: int, wait: float
    ) -> Flow[list[MessageExt]]:
        """One POP_MESSAGE of ``topic`` (as the broker knows it) from ``broker``'s
        queues, held up to ``wait`` seconds: the messages the user gets (see
        :meth:`_sift_flow`), each with its receipt handle."""
        sub = self.subscriptions.get(topic)
        if sub is None:
            return []  # unsubscribed meanwhile
        addr = yield from self.client.master_addr_flow(broker, topic)
        attempt: str | None = None
        if self.config.fifo:
            attempt = self._lost_attempts.pop((topic, broker), None)
            if attempt is None:
                self._attempts += 1
                attempt = f"{self.client.client_id}-{self._attempts}"
        born = yield from wall_ms()
        began = yield from now()
        command = rq.pop_message(
            consumer_group=self.group,
            topic=topic,
            queue_id=-1,
            max_msg_nums=max_messages,
            invisible_time_ms=invisible_ms,
            poll_time_ms=round(wait * 1000),
            born_time_ms=born,
            init_mode=_INIT_MODE[ConsumeFromWhere(self.config.consume_from_where)],
            expression_type=sub.expression_type,
            expression=sub.sub_string,
            order=self.config.fifo,
            attempt_id=attempt,
            broker_name=broker,
        )
        try:
            # As Java's: the long poll, and 10 s more for the broker to answer.
            response = yield from call(addr, command, wait + POP_ANSWER_MARGIN)
        except (RequestTimeoutError, ConnectionClosedError):
            if attempt is not None:
                self._lost_attempts[(topic, broker)] = attempt
            raise
        code = response.code
        if code in (ResponseCode.POLLING_TIMEOUT, ResponseCode.PULL_NOT_FOUND):
            if wait >= 1.0 and (yield from now()) - began < 0.2:
                # The broker answers a long poll at once if the request seems to
                # have waited too long already: this host's clock is behind its.
                log.warning(
                    "broker %s ended a %.1f s wait for %s at once: is this host's clock "
                    "more than 0.5 s behind the broker's?",
                    broker,
                    wait,
                    topic,
                    extra=log_fields(
                        client=self.client.client_id, group=self.group, topic=topic, broker=broker
                    ),
                )
            return []
        if code == ResponseCode.POLLING_FULL:
            log.info(
                "broker %s holds too many waiting receives; none taken for %s",
                broker,
                topic,
                extra=log_fields(
                    client=self.client.client_id, group=self.group, topic=topic, broker=broker
                ),
            )
            return []
        if code != ResponseCode.SUCCESS:
            remark = response.remark or ""
            if (
                code == ResponseCode.SYSTEM_ERROR and "PullMessageRequestHeader" in remark
            ) or code == ResponseCode.SUBSCRIPTION_NOT_LATEST:
                raise PopNotServedError(
                    f"{addr} ({broker}) does not serve POP: it took POP_MESSAGE for a pull "
                    f"(it answered {code}: {remark[:200]}), as the RocketMQ 5.x proxy's "
                    "remoting port does, which never answers ACK_MESSAGE either. Give the "
                    "consumer the name servers (the brokers must be reachable), not the proxy"
                )
            raise error_for_response(code, remark, request=RequestCode.POP_MESSAGE)
        msgs = self._read_popped(response.ext_fields, response.body, topic, broker)
        return (yield from self._sift_flow(msgs, topic, sub))

    def _read_popped(
        self, fields: dict[str, str], body: bytes | None, topic: str, broker: str
    ) -> list[MessageExt]:
        """The messages of a POP answer, each with its receipt handle (``POP_CK``;
        the broker wrote it already for a retried message) and its broker."""
        try:
            pop_time = int(fields["popTime"])
            invisible = int(fields["invisibleTime"])
            revive = int(fields["reviveQid"])
        except (KeyError, ValueError):
            raise RemoteProtocolError(
                f"POP answer from {broker} lacks its pop time fields"
            ) from None
        starts = parse_start_offsets(fields.get("startOffsetInfo"))
        lists = parse_offset_lists(fields.get("msgOffsetInfo"))
        counts = parse_offset_counts(fields.get("orderCountInfo")) if self.config.fifo else {}
        msgs = decode_pull_body(body or b"", f"POP answer of {broker}")
        seen: dict[str, int] = {}
        read: list[MessageExt] = []
        for msg in msgs:
            props = msg.properties
            if _POP_CK not in props:
                flag = retry_flag(msg.topic)
                key = offset_key(flag, msg.queue_id)
                index = seen.get(key, 0)
                seen[key] = index + 1
                start, offsets = starts.get(key), lists.get(key)
                if start is None or offsets is None or index >= len(offsets):
                    # Without its handle it cannot be acked: it comes back once
                    # its invisible time is over.
                    log.error(
                        "POP answer from %s gives no offsets for %s of queue %s; skipped",
                        broker,
                        msg.msg_id,
                        key,
                        extra=log_fields(
                            client=self.client.client_id,
                            group=self.group,
                            topic=topic,
                            broker=broker,
                            msg_id=msg.msg_id,
                        ),
                    )
                    continue
                handle = ReceiptHandle.build(
                    start, pop_time, invisible, revive, flag, broker, msg.queue_id, offsets[index]
                )
                props[_POP_CK] = handle.text
                if counts:
                    count = counts.get(queue_offset_key(flag, msg.queue_id, msg.queue_offset))
                    if count is None:
                        count = counts.get(key)
                    if count:
                        msg.reconsume_times = count
            props.setdefault(_FIRST_POP_TIME, str(pop_time))
            msg.broker_name = broker
            msg.topic = topic
            read.append(msg)
        return read

    def _sift_flow(
        self, msgs: list[MessageExt], topic: str, sub: SubscriptionData
    ) -> Flow[list[MessageExt]]:
        """What the user gets: a message whose tag the subscription does not name
        is acked (the broker filters on tag hashes only); one delivered
        more than ``max_reconsume_times`` times before goes to the dead-letter queue."""
        keep: list[MessageExt] = []
        for msg in msgs:
            if not sub.matches_tag(msg.properties.get(_TAGS)):
                yield from self._ack_quietly(msg, topic, "its tag is not subscribed")
            elif msg.reconsume_times > self.config.max_reconsume_times:
                yield from self._dead_letter_flow(msg, topic)
            else:
                msg.topic = ns.unwrap(self.client.config.namespace, topic)
                keep.append(msg)
        return keep

    def _ack_quietly(self, msg: MessageExt, topic: str, why: str) -> Flow[None]:
        try:
            yield from self._ack_one_flow(ReceiptHandle.parse(msg.properties[_POP_CK]), topic)
        except RocketMQError as exc:
            log.info(
                "ack of %s (%s) failed: %s; it comes back later",
                msg.msg_id,
                why,
                exc,
                extra=log_fields(
                    client=self.client.client_id, group=self.group, topic=topic, msg_id=msg.msg_id
                ),
            )

    def _dead_letter_flow(self, msg: MessageExt, topic: str) -> Flow[None]:
        """Move ``msg`` to ``%DLQ%<group>`` (CONSUMER_SEND_MSG_BACK, delay level -1),
        then ack it; on failure it stays hidden and comes back to be tried again."""
        handle = ReceiptHandle.parse(msg.properties[_POP_CK])
        try:
            addr = yield from self.client.master_addr_flow(handle.broker_name, topic)
            command = rq.consumer_send_msg_back(
                group=self.group,
                commit_log_offset=msg.commit_log_offset,
                delay_level=-1,
                origin_msg_id=msg.msg_id,
                origin_topic=handle.real_topic(topic, self.group),
                max_reconsume_times=0,
                broker_name=handle.broker_name,
            )
            response = yield from call(addr, command, self.client.config.request_timeout)
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(
                    response.code, response.remark, request=RequestCode.CONSUMER_SEND_MSG_BACK
                )
        except RocketMQError as exc:
            log.warning(
                "message %s of %s, delivered %d times, could not go to the dead-letter "
                "queue of %s: %s; tried again when it comes back",
                msg.msg_id,
                topic,
                msg.reconsume_times,
                self.group,
                exc,
                extra=log_fields(
                    client=self.client.client_id, group=self.group, topic=topic, msg_id=msg.msg_id
                ),
            )
            return
        self.dead_lettered += 1
        log.info(
            "message %s of %s was delivered %d times: moved to the dead-letter queue of %s",
            msg.msg_id,
            topic,
            msg.reconsume_times,
            self.group,
            extra=log_fields(
                client=self.client.client_id, group=self.group, topic=topic, msg_id=msg.msg_id
            ),
        )
        yield from self._ack_quietly(msg, topic, "moved to the dead-letter queue")

    # ---------------------------------------------------------------------- ack

    def _handle_of(self, msg: MessageExt) -> tuple[ReceiptHandle, str]:
        """A received message's receipt handle and its topic as the broker knows it."""
        text = msg.properties.get(_POP_CK)
        if not text:
            raise InvalidArgumentError(
                f"message {msg.msg_id} has no receipt handle: only messages a "
                "SimpleConsumer received can be acked"
            )
        return ReceiptHandle.parse(text), self._wrap(msg.topic)

    def _by_handle_flow(
        self, handle: ReceiptHandle, topic: str, command: RemotingCommand
    ) -> Flow[RemotingCommand]:
        """``command`` (about the message of ``handle``) to that message's broker:
        its answer, or the broker's error."""
        addr = yield from self.client.master_addr_flow(handle.broker_name, topic)
        response = yield from call(addr, command, self.client.config.request_timeout)
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(response.code, response.remark, request=command.code)
        return response

    def _ack_one_flow(self, handle: ReceiptHandle, topic: str) -> Flow[None]:
        command = rq.ack_message(
            consumer_group=self.group,
            topic=handle.real_topic(topic, self.group),
            queue_id=handle.queue_id,
            extra_info=handle.text,
            offset=handle.offset,
            broker_name=handle.broker_name,
        )
        yield from self._by_handle_flow(handle, topic, command)

    def ack_flow(self, msgs: Iterable[MessageExt]) -> Flow[None]:
        """Ack ``msgs``: one ACK_MESSAGE for a single message, one
        BATCH_ACK_MESSAGE per broker and topic for several (single acks where
        a broker does not know batch acks)."""
        self._check_running("ack")
        groups: dict[tuple[str, str], list[ReceiptHandle]] = {}
        for msg in msgs:
            handle, topic = self._handle_of(msg)
            groups.setdefault((handle.broker_name, topic), []).append(handle)
        for (broker, topic), handles in groups.items():
            if len(handles) == 1:
                yield from self._ack_one_flow(handles[0], topic)
                self.acked += 1
                continue
            addr = yield from self.client.master_addr_flow(broker, topic)
            body = encode_batch_ack(self.group, topic, handles)
            response = yield from call(
                addr, rq.batch_ack_message(body), self.client.config.request_timeout
            )
            if response.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                for handle in handles:
                    yield from self._ack_one_flow(handle, topic)
            elif response.code != ResponseCode.SUCCESS:
                raise error_for_response(
                    response.code, response.remark, request=RequestCode.BATCH_ACK_MESSAGE
                )
            self.acked += len(handles)

    def change_invisible_flow(self, msg: MessageExt, invisible_duration: float) -> Flow[None]:
        """Hide ``msg`` for ``invisible_duration`` seconds from now; its receipt
        handle changes (the message object gets the new one; the old one is no
        longer valid)."""
        self._check_running("change_invisible_duration")
        seconds = check_invisible_duration(invisible_duration, InvalidArgumentError)
        handle, topic = self._handle_of(msg)
        command = rq.change_invisible_time(
            consumer_group=self.group,
            topic=handle.real_topic(topic, self.group),
            queue_id=handle.queue_id,
            extra_info=handle.text,
            offset=handle.offset,
            invisible_time_ms=round(seconds * 1000),
            broker_name=handle.broker_name,
        )
        response = yield from self._by_handle_flow(handle, topic, command)
        fields = response.ext_fields
        try:
            renewed = ReceiptHandle.build(
                handle.offset,
                int(fields["popTime"]),
                int(fields["invisibleTime"]),
                int(fields["reviveQid"]),
                handle.retry,
                handle.broker_name,
                handle.queue_id,
                handle.offset,
            )
        except (KeyError, ValueError):
            raise RemoteProtocolError(
                f"CHANGE_MESSAGE_INVISIBLETIME answer from {handle.broker_name} lacks its "
                "pop time fields"
            ) from None
        msg.properties[_POP_CK] = renewed.text
