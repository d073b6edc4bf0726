"""Consumption outcomes: retries, dead letters, where a new queue starts.

Java's ``ConsumeMessageConcurrentlyService``, ``ConsumeMessageOrderlyService``
and the parts of ``DefaultMQPushConsumerImpl`` and ``RebalancePushImpl`` that
decide what happens to a message after the user's handler ran, and where
consumption of a newly taken queue begins:

* a failed message of a clustering group is sent back to its broker
  (CONSUMER_SEND_MSG_BACK, 36), which stores it in ``%RETRY%<group>`` with a
  delay (level 3 + reconsume times unless the handler chose one) or, after
  ``max_reconsume_times``, in ``%DLQ%<group>``; if that fails, the client sends
  a copy to the retry topic itself (:func:`retry_message`);
* a message pulled from the retry topic is shown to the user under its original
  topic (:func:`reset_retry_topic`);
* a queue the group has no offset for starts where ``consume_from_where`` says
  (:func:`initial_offset_flow`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    max_offset_flow,
    query_offset_flow,
    search_offset_flow,
)
from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.effects import Flow, call, now
from rocketmq_proto.flows.producer import ProducerCore
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.codec import decode_message
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.message.properties import MessageConst
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import ConsumeFromWhere
from rocketmq_proto.wire.codes import ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    InvalidArgumentError,
    RemoteProtocolError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import LOGICAL_QUEUE_MOCK_BROKER_PREFIX, MessageQueue
from rocketmq_proto.wire.trace import ConsumeReturnType

log = logging.getLogger("rocketmq_proto.consumer")

__all__ = [
    "CONSUME_REQUEST_RETRY_DELAY",
    "DEFAULT_CONSUME_TIMEOUT_MINUTES",
    "DEFAULT_MAX_RECONSUME_TIMES",
    "EXPIRED_MESSAGE_DELAY_LEVEL",
    "MAX_TIME_CONSUME_CONTINUOUSLY",
    "ORDERLY_MAX_RECONSUME_TIMES",
    "SEND_BACK_TIMEOUT",
    "ConsumeResult",
    "OrderlyOutcome",
    "SendBackPath",
    "clean_expired_flow",
    "consume_directly_result",
    "group_retry_topic",
    "handler_verdict",
    "initial_offset_flow",
    "mark_consume_start",
    "max_reconsume_times",
    "orderly_suspend_delay",
    "process_concurrent_result_flow",
    "process_orderly_result_flow",
    "reset_retry_topic",
    "reset_retry_topics",
    "retry_delay_level",
    "retry_message",
    "send_back_flow",
    "to_consume_result",
]

_C = MessageConst

#: Java's default ``maxReconsumeTimes`` for concurrent consumption (``-1`` configured).
DEFAULT_MAX_RECONSUME_TIMES: Final = 16
#: Orderly consumption retries forever by default (Java: ``Integer.MAX_VALUE``).
ORDERLY_MAX_RECONSUME_TIMES: Final = 2**31 - 1
#: Timeout of CONSUMER_SEND_MSG_BACK, seconds (Java: 5000 ms).
SEND_BACK_TIMEOUT: Final = 5.0
#: Messages whose send-back failed are consumed again locally after this long (s).
CONSUME_REQUEST_RETRY_DELAY: Final = 5.0
#: An orderly consume task yields its queue after running this long (s).
MAX_TIME_CONSUME_CONTINUOUSLY: Final = 60.0
#: Delay level Java sends an expired message back with (``cleanExpiredMsg``).
EXPIRED_MESSAGE_DELAY_LEVEL: Final = 3
#: Java's ``consumeTimeout``: minutes a message may be in consumption.
DEFAULT_CONSUME_TIMEOUT_MINUTES: Final = 15


class ConsumeResult(enum.StrEnum):
    """What a message handler says about the messages it was given."""

    #: Consumed: the offset may move past them.
    SUCCESS = "SUCCESS"
    #: Concurrent: retry them later (sent back to the broker's retry topic).
    RETRY_LATER = "RETRY_LATER"
    #: Orderly: stop this queue a moment and consume the same messages again.
    SUSPEND_CURRENT_QUEUE_A_MOMENT = "SUSPEND_CURRENT_QUEUE_A_MOMENT"


_RESULT_NAMES: Final[dict[str, ConsumeResult]] = {
    "SUCCESS": ConsumeResult.SUCCESS,
    "CONSUME_SUCCESS": ConsumeResult.SUCCESS,
    "COMMIT": ConsumeResult.SUCCESS,
    "RETRY_LATER": ConsumeResult.RETRY_LATER,
    "RECONSUME_LATER": ConsumeResult.RETRY_LATER,
    "ROLLBACK": ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT,
    "SUSPEND_CURRENT_QUEUE_A_MOMENT": ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT,
}


def to_consume_result(value: Any, *, orderly: bool = False) -> ConsumeResult:
    """A handler's return value as a :class:`ConsumeResult`.

    ``None`` (a function that just returns) and ``True`` are success: a handler
    fails only by saying so, with ``False``, RETRY_LATER or
    SUSPEND_CURRENT_QUEUE_A_MOMENT (or by raising). Unlike Java, where a null
    status is a failure, a Python handler that processes its messages and
    returns nothing must not have each of them retried and dead-lettered.
    Java's status names (CONSUME_SUCCESS, RECONSUME_LATER...) are accepted.
    Failure is RETRY_LATER for concurrent and SUSPEND_CURRENT_QUEUE_A_MOMENT for
    orderly consumption, whichever of the two the handler named.
    """
    if isinstance(value, ConsumeResult):
        result = value
    elif value is True or value is None:
        result = ConsumeResult.SUCCESS
    elif value is False:
        result = ConsumeResult.RETRY_LATER
    elif isinstance(value, str) and value.upper() in _RESULT_NAMES:
        result = _RESULT_NAMES[value.upper()]
    else:
        raise InvalidArgumentError(
            f"a message handler must return a ConsumeResult, True/False or None, got {value!r}"
        )
    if result is ConsumeResult.SUCCESS:
        return result
    return ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT if orderly else ConsumeResult.RETRY_LATER


def consume_directly_result(result: ConsumeResult) -> str:
    """The ``CMResult`` name answering CONSUME_MESSAGE_DIRECTLY for ``result``."""
    return "CR_SUCCESS" if result is ConsumeResult.SUCCESS else "CR_LATER"


def trace_code(result: ConsumeResult | None, error: BaseException | None) -> ConsumeReturnType:
    """How a handler call ended, as a trace's SubAfter record tells it."""
    if error is not None:
        return ConsumeReturnType.EXCEPTION
    if result is ConsumeResult.SUCCESS:
        return ConsumeReturnType.SUCCESS
    return ConsumeReturnType.FAILED


def consume_directly_flow(
    request: RemotingCommand,
    run: Callable[[list[MessageExt]], Flow[ConsumeResult | None]],
    *,
    orderly: bool,
) -> Flow[Reply]:
    """A push consumer's answer to CONSUME_MESSAGE_DIRECTLY: the message the broker
    read (the request's body) handed to the handler alone (``run``: the consumer's
    way of calling it, ``None`` if it did not run), its verdict and time in a
    ``ConsumeMessageDirectlyResult`` body. No offset moves and nothing is retried:
    the message was consumed before, this is one more delivery an operator asked for."""
    try:
        msg, _ = decode_message(request.body)
    except RemoteProtocolError as exc:
        return Reply(ResponseCode.SYSTEM_ERROR, remark=f"message unreadable: {exc}")
    msg.broker_name = request.ext_fields.get("brokerName", "")
    start = yield from now()
    result = yield from run([msg])
    spent = yield from now()
    body = rq.consume_message_directly_result(
        consume_directly_result(result or ConsumeResult.RETRY_LATER),
        order=orderly,
        spent_time_millis=int((spent - start) * 1000),
    )
    return Reply(ResponseCode.SUCCESS, body=body)


def handler_verdict(
    value: Any, msgs: Sequence[MessageExt], *, orderly: bool, client: ClientCore, group: str
) -> ConsumeResult:
    """A handler's answer ``value`` as a :class:`ConsumeResult`; an answer that cannot
    be read is logged (with ``client``'s id, made only then: this runs per handler
    call) and counts as a failure."""
    try:
        return to_consume_result(value, orderly=orderly)
    except RocketMQError as exc:
        log.warning(
            "message handler answer unusable: %s",
            exc,
            extra=log_fields(
                client=client.client_id, group=group, msg_ids=[m.msg_id for m in msgs]
            ),
        )
        return to_consume_result(False, orderly=orderly)


def max_reconsume_times(configured: int = -1, *, orderly: bool = False) -> int:
    """Java's effective ``maxReconsumeTimes``: ``-1`` means 16, or unlimited when orderly."""
    if configured == -1:
        return ORDERLY_MAX_RECONSUME_TIMES if orderly else DEFAULT_MAX_RECONSUME_TIMES
    return configured


def retry_delay_level(reconsume_times: int, configured_delay_level: int = 0) -> int:
    """The delay level a message sent back will be retried at.

    The send-back request carries ``configured_delay_level`` (Java's
    ``delayLevelWhenNextConsume``, 0 by default): 0 lets the broker choose
    3 + reconsume times (10 s, 30 s, 1 min, ...); a positive level is used as
    is; a negative one sends the message straight to the dead letter queue
    (answered as -1 here). The broker caps levels at its highest (18: 2 h).
    """
    if configured_delay_level < 0:
        return -1
    if configured_delay_level == 0:
        return 3 + reconsume_times
    return configured_delay_level


def orderly_suspend_delay(suspend_millis: int = -1, default_millis: int = 1000) -> float:
    """Seconds an orderly queue pauses after SUSPEND_CURRENT_QUEUE_A_MOMENT: the
    handler's value (``-1``: the consumer's ``suspendCurrentQueueTimeMillis``),
    clamped to 10 ms..30 s as Java does."""
    millis = default_millis if suspend_millis == -1 else suspend_millis
    return min(max(millis, 10), 30000) / 1000


def group_retry_topic(group: str, namespace: str | None = None) -> str:
    """The retry topic of ``group`` as the brokers name it (namespace included)."""
    return ns.retry_topic(ns.wrap(namespace, group))


def reset_retry_topic(msg: MessageExt, group: str, namespace: str | None = None) -> None:
    """Show a message as the user subscribed to it (Java's ``resetRetryAndNamespace``).

    A message pulled from ``%RETRY%<group>`` gets its original topic back (its
    RETRY_TOPIC property); with a namespace, the namespace is taken off the topic.
    """
    reset_retry_topics((msg,), group_retry_topic(group, namespace), namespace)


def reset_retry_topics(
    msgs: Iterable[MessageExt], retry_topic: str, namespace: str | None = None
) -> None:
    """:func:`reset_retry_topic` of each of ``msgs``, given the group's retry topic
    as the brokers name it (:func:`group_retry_topic`, made once by the caller)."""
    key = _C.PROPERTY_RETRY_TOPIC
    for msg in msgs:
        original = msg.properties.get(key)
        if original is not None and msg.topic == retry_topic:
            msg.topic = original
        if namespace:
            msg.topic = ns.unwrap(namespace, msg.topic)


def mark_consume_start(msgs: Iterable[MessageExt], wall_ms: int) -> None:
    """Stamp CONSUME_START_TIME on messages handed to a concurrent handler (what
    :meth:`ProcessQueue.expired_messages` later checks)."""
    stamp = str(wall_ms)
    for msg in msgs:
        msg.properties[_C.PROPERTY_CONSUME_START_TIMESTAMP] = stamp


def retry_message(
    msg: MessageExt, group: str, max_reconsume: int, *, topic: str | None = None
) -> Message:
    """A copy of ``msg`` for ``%RETRY%<group>``, as Java's client builds it when
    the broker cannot take the message back (and orderly consumption does for
    messages past their retries).

    Every property is kept (the message id too); ORIGIN_MESSAGE_ID (if unset:
    the message's id), RETRY_TOPIC (``topic``, by default the message's),
    RECONSUME_TIME (+1), MAX_RECONSUME_TIMES and DELAY (3 + reconsume times) are
    set, TRAN_MSG is cleared. The broker moves it to the DLQ when its
    RECONSUME_TIME exceeds MAX_RECONSUME_TIMES.
    """
    new = Message(ns.retry_topic(group), msg.body, flag=msg.flag)
    props = new.properties
    props.update(msg.properties)
    origin = msg.properties.get(_C.PROPERTY_ORIGIN_MESSAGE_ID)
    props[_C.PROPERTY_ORIGIN_MESSAGE_ID] = origin if origin and origin.strip() else msg.msg_id
    props[_C.PROPERTY_RETRY_TOPIC] = topic or msg.topic
    props[_C.PROPERTY_RECONSUME_TIME] = str(msg.reconsume_times + 1)
    props[_C.PROPERTY_MAX_RECONSUME_TIMES] = str(max_reconsume)
    props.pop(_C.PROPERTY_TRANSACTION_PREPARED, None)
    props[_C.PROPERTY_DELAY_TIME_LEVEL] = str(3 + msg.reconsume_times)
    return new


class SendBackPath(enum.Enum):
    """How a failed message was returned for a retry."""

    #: The broker took it back (CONSUMER_SEND_MSG_BACK).
    SENT_BACK = "sent_back"
    #: A copy was sent to the retry topic as a new message.
    RESENT = "resent"


def send_back_flow(
    client: ClientCore,
    group: str,
    msg: MessageExt,
    delay_level: int = 0,
    max_reconsume: int = DEFAULT_MAX_RECONSUME_TIMES,
    *,
    producer: ProducerCore,
    timeout: float = SEND_BACK_TIMEOUT,
) -> Flow[SendBackPath]:
    """Return a failed message for a later retry (Java's ``sendMessageBack``).

    CONSUMER_SEND_MSG_BACK to the master of the broker the message was pulled
    from (its store host if the broker is unknown): the broker re-stores it in
    the retry topic with a delay, or in the DLQ past ``max_reconsume``. If that
    fails (no master, an error answer, a timeout), :func:`retry_message` is sent
    by ``producer`` (the consumer's inner producer); its error, if it fails too, is
    raised. Messages of a static topic's logical queue go that way directly.
    ``group`` and the message's topic may carry the namespace or not.
    """
    namespace = client.config.namespace
    group = ns.wrap(namespace, group)
    topic = ns.wrap(namespace, msg.topic)
    broker_name = msg.broker_name
    if not broker_name.startswith(LOGICAL_QUEUE_MOCK_BROKER_PREFIX):
        try:
            addr = client.master_addr(broker_name) if broker_name else msg.store_host
            if not addr:
                raise RouteNotFoundError(f"Broker[{broker_name}] master node does not exist")
            command = rq.consumer_send_msg_back(
                group=group,
                commit_log_offset=msg.commit_log_offset,
                delay_level=delay_level,
                origin_msg_id=msg.msg_id,
                origin_topic=topic,
                max_reconsume_times=max_reconsume,
                broker_name=broker_name or None,
            )
            response = yield from call(addr, command, timeout)
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(response.code, response.remark)
            return SendBackPath.SENT_BACK
        except RocketMQError as exc:
            log.warning(
                "send back of %s (group %s, broker %s) failed, resending it: %s",
                msg.msg_id,
                group,
                broker_name,
                exc,
                extra=log_fields(
                    client=client.client_id,
                    group=group,
                    broker=broker_name,
                    topic=msg.topic,
                    msg_id=msg.msg_id,
                ),
            )
    yield from producer.send_flow(retry_message(msg, group, max_reconsume, topic=topic))
    return SendBackPath.RESENT


# --------------------------------------------------------------- after consuming


def process_concurrent_result_flow(
    client: ClientCore,
    group: str,
    pq: ProcessQueue,
    mq: MessageQueue,
    msgs: Sequence[MessageExt],
    result: ConsumeResult,
    *,
    offsets: OffsetStore,
    producer: ProducerCore,
    clustering: bool = True,
    ack_index: int | None = None,
    delay_level: int = 0,
    max_reconsume: int = DEFAULT_MAX_RECONSUME_TIMES,
) -> Flow[list[MessageExt]]:
    """Settle a concurrent consume task (Java's ``processConsumeResult``).

    With SUCCESS the first ``ack_index + 1`` messages (all by default) are done;
    with RETRY_LATER none. Clustering: each other message still in ``pq`` is
    sent back (:func:`send_back_flow`); broadcasting: they are dropped. The done
    and sent-back messages leave ``pq`` and the offset store moves forward.

    Returns the messages that could not be sent back, with ``reconsume_times``
    increased: the caller consumes them again after
    :data:`CONSUME_REQUEST_RETRY_DELAY`. Nothing happens for a dropped queue.
    """
    if pq.dropped or not msgs:
        return []
    if result is ConsumeResult.SUCCESS:
        acked = len(msgs) - 1 if ack_index is None else min(ack_index, len(msgs) - 1)
    else:
        acked = -1
    failed = list(msgs[acked + 1 :])
    back_failed: list[MessageExt] = []
    if not clustering:
        for msg in failed:
            log.warning(
                "broadcasting: consuming %s failed, dropping it",
                msg.msg_id,
                extra=log_fields(client=client.client_id, group=group, queue=mq, msg_id=msg.msg_id),
            )
    else:
        for msg in failed:
            if not pq.contains(msg):
                continue  # expired and already sent back
            try:
                yield from send_back_flow(
                    client, group, msg, delay_level, max_reconsume, producer=producer
                )
            except RocketMQError as exc:
                log.warning(
                    "send back of %s failed, consuming it again later: %s",
                    msg.msg_id,
                    exc,
                    extra=log_fields(
                        client=client.client_id, group=group, queue=mq, msg_id=msg.msg_id
                    ),
                )
                msg.reconsume_times += 1
                back_failed.append(msg)
    if back_failed:
        kept = {id(m) for m in back_failed}
        done = [m for m in msgs if id(m) not in kept]
    else:
        done = list(msgs)
    now_s = yield from now()
    offset = pq.remove(done, now_s)
    if offset >= 0 and not pq.dropped:
        offsets.update(mq, offset, increase_only=True)
    return back_failed


@dataclass(frozen=True, slots=True)
class OrderlyOutcome:
    """What follows an orderly consume task."""

    #: Whether the task may take the next messages now.
    continue_consume: bool
    #: When not: seconds before the queue is consumed again.
    delay: float = 0.0
    #: Messages sent on to the dead letters (past the maximum retries).
    dead_lettered: int = 0


def process_orderly_result_flow(
    pq: ProcessQueue,
    mq: MessageQueue,
    msgs: Sequence[MessageExt],
    result: ConsumeResult,
    *,
    offsets: OffsetStore,
    group: str,
    producer: ProducerCore,
    max_reconsume: int = ORDERLY_MAX_RECONSUME_TIMES,
    suspend_millis: int = -1,
    default_suspend_millis: int = 1000,
) -> Flow[OrderlyOutcome]:
    """Settle an orderly consume task (Java's ``processConsumeResult``, auto-commit).

    SUCCESS commits the taken messages. A failure puts them back to be consumed
    again after :func:`orderly_suspend_delay`, except those past
    ``max_reconsume`` retries, which go to the retry topic (and from there to
    the DLQ); when all of them went, the batch is committed.
    """
    commit_offset = -1
    outcome = OrderlyOutcome(True)
    dead = 0
    if result is ConsumeResult.SUCCESS:
        commit_offset = pq.commit()
    else:
        suspend = False
        for msg in msgs:
            if msg.reconsume_times >= max_reconsume:
                msg.properties[_C.PROPERTY_RECONSUME_TIME] = str(msg.reconsume_times)
                try:
                    yield from producer.send_flow(retry_message(msg, group, max_reconsume))
                    dead += 1
                    continue
                except RocketMQError as exc:
                    log.warning(
                        "dead-lettering %s failed: %s",
                        msg.msg_id,
                        exc,
                        extra=log_fields(group=group, queue=mq, msg_id=msg.msg_id),
                    )
            suspend = True
            msg.reconsume_times += 1
        if suspend:
            pq.make_messages_to_consume_again(msgs)
            delay = orderly_suspend_delay(suspend_millis, default_suspend_millis)
            outcome = OrderlyOutcome(False, delay)
        else:
            commit_offset = pq.commit()
    outcome = OrderlyOutcome(outcome.continue_consume, outcome.delay, dead)
    if commit_offset >= 0 and not pq.dropped:
        offsets.update(mq, commit_offset)
    return outcome


def clean_expired_flow(
    client: ClientCore,
    group: str,
    pq: ProcessQueue,
    *,
    wall_ms: int,
    producer: ProducerCore,
    consume_timeout_minutes: int = DEFAULT_CONSUME_TIMEOUT_MINUTES,
    max_reconsume: int = DEFAULT_MAX_RECONSUME_TIMES,
) -> Flow[int]:
    """Java's ``cleanExpiredMsg`` (every 15 min, concurrent consumption only): send
    back, at delay level 3, the leading messages whose consumption started more
    than ``consume_timeout_minutes`` ago, and forget them; how many went."""
    sent = 0
    for msg in pq.expired_messages(wall_ms, consume_timeout_minutes * 60_000):
        try:
            yield from send_back_flow(
                client, group, msg, EXPIRED_MESSAGE_DELAY_LEVEL, max_reconsume, producer=producer
            )
        except RocketMQError as exc:
            log.warning(
                "send back of expired %s failed: %s",
                msg.msg_id,
                exc,
                extra=log_fields(
                    client=client.client_id, group=group, topic=msg.topic, msg_id=msg.msg_id
                ),
            )
            break
        if pq.min_offset == msg.queue_offset:
            pq.remove([msg])
        sent += 1
    return sent


# ------------------------------------------------------------ where to start


def initial_offset_flow(
    client: ClientCore,
    group: str,
    mq: MessageQueue,
    consume_from_where: str = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
    timestamp_ms: int = 0,
    *,
    stored: Mapping[MessageQueue, int] | None = None,
    offsets: OffsetStore | None = None,
) -> Flow[int]:
    """The offset to start pulling a newly taken queue at (Java's
    ``computePullFromWhereWithException``).

    The group's stored offset if it has one: the broker's (QUERY_CONSUMER_OFFSET;
    QUERY_NOT_FOUND means none), or for broadcasting the ``stored`` table read
    from the local file. Without one:

    * LAST_OFFSET (and the deprecated MIN/MAX/...WHEN_BOOT_FIRST): 0 for the
      retry topic, else the queue's max offset (only new messages);
    * FIRST_OFFSET: 0 (a pull then corrects it to the queue's first offset);
    * TIMESTAMP: the retry topic's max offset, else the first offset stored at
      or after ``timestamp_ms``.

    A broker offset found is also put in ``offsets`` (as Java's read from store
    does). Failures raise; the caller retries the queue at the next rebalance.
    """
    if stored is not None:
        last = stored.get(mq, -1)
    else:
        found = yield from query_offset_flow(client, group, mq)
        last = -1 if found is None else found
        if found is not None and found >= 0 and offsets is not None:
            offsets.update(mq, found)
    if last < -1:
        raise RemoteProtocolError(f"found unexpected stored offset {last} of {mq}")
    retry = mq.topic.startswith(ns.RETRY_PREFIX)
    where = str(consume_from_where)
    if where == ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET:
        result = last if last >= 0 else 0
    elif where == ConsumeFromWhere.CONSUME_FROM_TIMESTAMP:
        if last >= 0:
            result = last
        elif retry:
            result = yield from max_offset_flow(client, mq)
        else:
            result = yield from search_offset_flow(client, mq, timestamp_ms)
    elif where in (
        ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
        ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST,
        ConsumeFromWhere.CONSUME_FROM_MIN_OFFSET,
        ConsumeFromWhere.CONSUME_FROM_MAX_OFFSET,
    ):
        if last >= 0:
            result = last
        elif retry:
            result = 0
        else:
            result = yield from max_offset_flow(client, mq)
    else:
        raise InvalidArgumentError(f"unknown consume_from_where {consume_from_where!r}")
    if result < 0:
        raise RemoteProtocolError(f"found unexpected start offset {result} for {mq}")
    return result
