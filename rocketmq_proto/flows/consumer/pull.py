"""Pulling: the request, the answer, and what to do next (Java's ``PullAPIWrapper``
and ``DefaultMQPushConsumerImpl.pullMessage``).

A push consumer runs one pull loop per queue it holds. Each step checks flow
control (too many or too large cached messages, too wide an offset span), sends
PULL_MESSAGE (the broker holds it up to 15 s when there is nothing new: long
polling), reads the answer (:func:`parse_pull_response`: the status from the
response code, the next offset, the messages re-filtered by tag) and decides
the next offset and when to pull again (:func:`plan_pull_result`).
:func:`pull_step_flow` is that whole step as one flow.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Final

from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    persist_offset_flow,
    subscribe_addr_flow,
)
from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.effects import Flow, call, now
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message.codec import decode_message, decode_messages, unwrap_inner_batch
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.message.properties import MessageConst
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import SubscriptionData
from rocketmq_proto.wire.codes import PullStatus, PullSysFlag, RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    RemoteProtocolError,
    RocketMQError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MASTER_ID, MessageQueue

log = logging.getLogger("rocketmq_proto.consumer")

__all__ = [
    "BROKER_SUSPEND_MAX_TIME",
    "CONSUMER_TIMEOUT_WHEN_SUSPEND",
    "PULL_TIME_DELAY_WHEN_BROKER_FLOW_CONTROL",
    "PULL_TIME_DELAY_WHEN_CACHE_FLOW_CONTROL",
    "PULL_TIME_DELAY_WHEN_EXCEPTION",
    "PULL_TIME_DELAY_WHEN_SUSPEND",
    "FlowControl",
    "PullAction",
    "PullConfig",
    "PullOutcome",
    "PullPlan",
    "PullRequest",
    "PullResult",
    "build_pull_sys_flag",
    "decode_pull_body",
    "parse_pull_response",
    "plan_pull_result",
    "pull_command",
    "pull_error_delay",
    "pull_step_flow",
    "queue_lag",
    "queue_thresholds",
    "should_pause",
]

#: Seconds before pulling again after an error (Java's ``pullTimeDelayMillsWhenException``).
PULL_TIME_DELAY_WHEN_EXCEPTION: Final = 3.0
#: ... when the process queue is too full (client-side flow control).
PULL_TIME_DELAY_WHEN_CACHE_FLOW_CONTROL: Final = 0.05
#: ... when the broker answered FLOW_CONTROL (215).
PULL_TIME_DELAY_WHEN_BROKER_FLOW_CONTROL: Final = 0.02
#: ... while the consumer is paused.
PULL_TIME_DELAY_WHEN_SUSPEND: Final = 1.0
#: How long the broker may hold a pull with nothing new (long polling), seconds.
BROKER_SUSPEND_MAX_TIME: Final = 15.0
#: How long the client waits for a long-polling pull's answer, seconds.
CONSUMER_TIMEOUT_WHEN_SUSPEND: Final = 30.0

_MIB: Final = 1024 * 1024
_MIN_OFFSET: Final = MessageConst.PROPERTY_MIN_OFFSET
_MAX_OFFSET: Final = MessageConst.PROPERTY_MAX_OFFSET


def _check_range(name: str, value: int | float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class PullConfig:
    """A push consumer's pull settings, with Java's defaults and limits. Times in seconds."""

    #: Messages per pull (``pullBatchSize``).
    pull_batch_size: int = 32
    #: Bytes per pull, a hint to RocketMQ 5 brokers (``pullBatchSizeInBytes``).
    pull_batch_size_in_bytes: int = 256 * 1024
    #: Cached messages per queue above which pulling pauses.
    pull_threshold_for_queue: int = 1000
    #: Cached MiB per queue above which pulling pauses.
    pull_threshold_size_for_queue: int = 100
    #: If not -1: a limit for all queues, shared out among them (overrides the above).
    pull_threshold_for_topic: int = -1
    pull_threshold_size_for_topic: int = -1
    #: Concurrent consumption: largest offset span cached before pulling pauses.
    consume_concurrently_max_span: int = 2000
    #: Pause after each pull that found messages.
    pull_interval: float = 0.0
    #: Send the subscription expression with every pull (else the broker uses the
    #: one from the heartbeat).
    post_subscription_when_pull: bool = False
    pull_time_delay_when_exception: float = PULL_TIME_DELAY_WHEN_EXCEPTION
    broker_suspend_max_time: float = BROKER_SUSPEND_MAX_TIME
    consumer_timeout_when_suspend: float = CONSUMER_TIMEOUT_WHEN_SUSPEND

    def __post_init__(self) -> None:
        _check_range("pull_batch_size", self.pull_batch_size, 1, 1024)
        _check_range("pull_batch_size_in_bytes", self.pull_batch_size_in_bytes, 1, 2**31 - 1)
        _check_range("pull_threshold_for_queue", self.pull_threshold_for_queue, 1, 65535)
        _check_range("pull_threshold_size_for_queue", self.pull_threshold_size_for_queue, 1, 1024)
        if self.pull_threshold_for_topic != -1:
            _check_range("pull_threshold_for_topic", self.pull_threshold_for_topic, 1, 6553500)
        if self.pull_threshold_size_for_topic != -1:
            _check_range(
                "pull_threshold_size_for_topic", self.pull_threshold_size_for_topic, 1, 102400
            )
        _check_range("consume_concurrently_max_span", self.consume_concurrently_max_span, 1, 65535)
        _check_range("pull_interval", self.pull_interval, 0, 65.535)
        _check_range("pull_time_delay_when_exception", self.pull_time_delay_when_exception, 0, 3600)
        _check_range("broker_suspend_max_time", self.broker_suspend_max_time, 0, 3600)
        _check_range(
            "consumer_timeout_when_suspend",
            self.consumer_timeout_when_suspend,
            self.broker_suspend_max_time,
            3600,
        )


def build_pull_sys_flag(
    commit_offset: bool,
    suspend: bool,
    subscription: bool,
    class_filter: bool,
    lite_pull: bool = False,
) -> int:
    """PULL_MESSAGE's ``sysFlag`` (Java's ``PullSysFlag.buildSysFlag``)."""
    flag = 0
    if commit_offset:
        flag |= PullSysFlag.COMMIT_OFFSET
    if suspend:
        flag |= PullSysFlag.SUSPEND
    if subscription:
        flag |= PullSysFlag.SUBSCRIPTION
    if class_filter:
        flag |= PullSysFlag.CLASS_FILTER
    if lite_pull:
        flag |= PullSysFlag.LITE_PULL
    return int(flag)


# ------------------------------------------------------------- flow control


class FlowControl(enum.Enum):
    """Why pulling a queue pauses (:data:`PULL_TIME_DELAY_WHEN_CACHE_FLOW_CONTROL`)."""

    CACHED_COUNT = "cached message count over the threshold"
    CACHED_SIZE = "cached message size over the threshold"
    MAX_SPAN = "cached offset span over consume_concurrently_max_span"


def queue_thresholds(config: PullConfig, queue_count: int = 0) -> tuple[int, int]:
    """Per-queue (count, MiB) limits: the per-topic limits shared among
    ``queue_count`` held queues when set (Java's ``messageQueueChanged``)."""
    count = config.pull_threshold_for_queue
    size = config.pull_threshold_size_for_queue
    if queue_count > 0:
        if config.pull_threshold_for_topic != -1:
            count = max(1, config.pull_threshold_for_topic // queue_count)
        if config.pull_threshold_size_for_topic != -1:
            size = max(1, config.pull_threshold_size_for_topic // queue_count)
    return count, size


def should_pause(
    pq: ProcessQueue, config: PullConfig, *, orderly: bool = False, queue_count: int = 0
) -> FlowControl | None:
    """Whether to hold off pulling ``pq``'s queue, and why.

    More than 1000 messages or 100 MiB cached (Java's defaults), or, for
    concurrent consumption only, an offset span over 2000 between the oldest
    and newest cached message (one slow message holds back the committed offset).
    """
    count, size = queue_thresholds(config, queue_count)
    if pq.msg_count > count:
        return FlowControl.CACHED_COUNT
    if pq.msg_size // _MIB > size:
        return FlowControl.CACHED_SIZE
    if not orderly and pq.max_span > config.consume_concurrently_max_span:
        return FlowControl.MAX_SPAN
    return None


# ------------------------------------------------------------- the response

_STATUS_BY_CODE: Final[dict[int, PullStatus]] = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


@dataclass(slots=True)
class PullResult:
    """A pull's answer, its messages already filtered and annotated."""

    status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: list[MessageExt] = field(default_factory=list)
    #: The broker the next pull of this queue should go to (0: the master).
    suggest_which_broker_id: int = MASTER_ID
    #: Static topics: logical minus physical offset (already added to the messages).
    offset_delta: int | None = None


def _long_field(fields: dict[str, str], name: str) -> int:
    value = _optional_long_field(fields, name)
    if value is None:
        raise RemoteProtocolError(f"pull response lacks {name!r}: {fields!r}")
    return value


def _optional_long_field(fields: dict[str, str], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise RemoteProtocolError(
            f"pull response field {name!r} is not a number: {value!r}"
        ) from None


def decode_pull_body(body: bytes, source: object) -> list[MessageExt]:
    """The stored messages of a PULL (or POP) answer's body, inner batches
    unwrapped; a corrupt record ends the list (logged, naming ``source``)."""
    mq = source
    try:
        msgs = decode_messages(body, unwrap_batches=False)
    except RemoteProtocolError as exc:
        # Java's decodesBatch keeps the messages before a bad record and stops there.
        log.error(
            "pull body of %s is corrupt after some messages: %s",
            mq,
            exc,
            extra=log_fields(source=str(mq)),
        )
        msgs = []
        pos = 0
        while pos < len(body):
            try:
                msg, pos = decode_message(body, pos)
            except RemoteProtocolError:
                break
            msgs.append(msg)
    if any(m.sys_flag & 0xC0 == 0xC0 for m in msgs):  # INNER_BATCH and NEED_UNWRAP
        try:
            msgs = [member for m in msgs for member in unwrap_inner_batch(m)]
        except RemoteProtocolError as exc:
            log.error(
                "inner batch of %s could not be unwrapped: %s",
                mq,
                exc,
                extra=log_fields(source=str(mq)),
            )
    return msgs


def queue_lag(request: PullRequest, consumed: int | None) -> int | None:
    """Messages of the queue not consumed yet, as far as the last pull answer
    tells (``None`` before the first): the broker's end offset minus ``consumed``
    (the consumer's offset; the next pull's when ``None``)."""
    if request.broker_max_offset < 0:
        return None
    done = request.next_offset if consumed is None else consumed
    return max(0, request.broker_max_offset - done)


def parse_pull_response(
    response: RemotingCommand, mq: MessageQueue, subscription: SubscriptionData
) -> PullResult:
    """Java's ``processPullResponse`` and ``processPullResult`` in one.

    Status: SUCCESS is FOUND, PULL_NOT_FOUND (19) NO_NEW_MSG,
    PULL_RETRY_IMMEDIATELY (20) NO_MATCHED_MSG, PULL_OFFSET_MOVED (21)
    OFFSET_ILLEGAL; any other code raises the broker's error. For FOUND the
    body's messages are decoded (inner batches unwrapped), those whose tag is
    not subscribed are dropped (the broker filters by tag hash only), and each
    kept one gets MIN_OFFSET/MAX_OFFSET properties, ``broker_name`` and
    ``queue_id`` of ``mq`` and, for static topics, its logical offset.
    """
    status = _STATUS_BY_CODE.get(response.code)
    if status is None:
        raise error_for_response(response.code, response.remark, request=RequestCode.PULL_MESSAGE)
    fields = response.ext_fields
    next_begin = _long_field(fields, "nextBeginOffset")
    min_offset = _long_field(fields, "minOffset")
    max_offset = _long_field(fields, "maxOffset")
    suggest = _long_field(fields, "suggestWhichBrokerId")
    delta = _optional_long_field(fields, "offsetDelta")
    result = PullResult(status, next_begin, min_offset, max_offset, [], suggest, delta)
    if status is not PullStatus.FOUND or not response.body:
        return result
    msgs = decode_pull_body(response.body, mq)
    if subscription.tags_set and not subscription.class_filter_mode:
        tags = subscription.tags_set
        msgs = [m for m in msgs if m.properties.get(MessageConst.PROPERTY_TAGS) in tags]
    low, high = str(min_offset), str(max_offset)
    broker_name, queue_id = mq.broker_name, mq.queue_id
    for msg in msgs:
        props = msg.properties
        props[_MIN_OFFSET] = low
        props[_MAX_OFFSET] = high
        msg.broker_name = broker_name
        msg.queue_id = queue_id
        if delta is not None:
            msg.queue_offset += delta
    result.messages = msgs
    return result


# ------------------------------------------------------------------ planning


class PullAction(enum.Enum):
    """What a pull's answer asks of the consumer."""

    #: Messages arrived: cache them in the process queue and consume them.
    CONSUME = "consume"
    #: Nothing to consume: pull again (from ``next_offset``).
    PULL_AGAIN = "pull_again"
    #: The offset was out of range: store ``next_offset`` (frozen), commit it,
    #: drop the process queue and rebalance now (the queue is taken afresh).
    FIX_OFFSET = "fix_offset"


@dataclass(frozen=True, slots=True)
class PullPlan:
    action: PullAction
    next_offset: int
    #: Seconds before the next pull; ``None``: this pull loop ends.
    delay: float | None
    #: NO_NEW_MSG/NO_MATCHED_MSG: if nothing is cached, the offset store may move
    #: to ``next_offset`` (Java's ``correctTagsOffset``: skipped messages of
    #: other tags must not be pulled again after a restart).
    correct_offset: bool = False


def plan_pull_result(result: PullResult, config: PullConfig) -> PullPlan:
    """The next offset and delay after a pull answered (Java's ``PullCallback.onSuccess``)."""
    next_offset = result.next_begin_offset
    if result.status is PullStatus.FOUND:
        if not result.messages:
            return PullPlan(PullAction.PULL_AGAIN, next_offset, 0.0)
        return PullPlan(PullAction.CONSUME, next_offset, config.pull_interval)
    if result.status is PullStatus.OFFSET_ILLEGAL:
        return PullPlan(PullAction.FIX_OFFSET, next_offset, None)
    return PullPlan(PullAction.PULL_AGAIN, next_offset, 0.0, correct_offset=True)


def pull_error_delay(
    exc: BaseException, config: PullConfig | None = None, elapsed: float = 0.0
) -> float:
    """Seconds before pulling again after a failed pull (Java's ``onException``).

    ``elapsed`` is how long the failed pull took: the back-off counts from when
    it was sent, so a pull that timed out (it already waited longer than the
    back-off) is followed by the next one at once, not a back-off later.
    """
    if getattr(exc, "code", None) == ResponseCode.FLOW_CONTROL:
        delay = PULL_TIME_DELAY_WHEN_BROKER_FLOW_CONTROL
    else:
        delay = config.pull_time_delay_when_exception if config else PULL_TIME_DELAY_WHEN_EXCEPTION
    return max(0.0, delay - elapsed)


# -------------------------------------------------------------------- the step


@dataclass(slots=True)
class PullRequest:
    """One queue's pull loop state (Java's ``PullRequest``)."""

    consumer_group: str
    message_queue: MessageQueue
    process_queue: ProcessQueue
    next_offset: int
    #: Orderly: whether the offset was re-read after the queue got locked.
    previously_locked: bool = False
    #: The broker member to pull from, as the last answer suggested.
    broker_id: int = MASTER_ID
    #: The queue's end offset on the broker, as the last pull answer said (-1: none yet).
    broker_max_offset: int = -1

    def relocked(self, offset: int) -> None:
        """Orderly: the offset was read again after the queue got locked: pull from it."""
        self.previously_locked = True
        self.next_offset = offset


def pull_command(
    request: PullRequest,
    subscription: SubscriptionData,
    config: PullConfig,
    commit_offset: int = -1,
    *,
    to_slave: bool = False,
    post_subscription: bool | None = None,
) -> RemotingCommand:
    """PULL_MESSAGE for ``request`` as Java's push consumer builds it.

    ``commit_offset`` is the group's offset in memory (clustering; -1 when
    unknown, 0 for broadcasting): a positive one rides along with the
    COMMIT_OFFSET flag, which is cleared for a slave. ``post_subscription``
    overrides ``config.post_subscription_when_pull``: with it the broker filters
    by the expression sent and needs no heartbeat of the group first.
    """
    mq = request.message_queue
    class_filter = subscription.class_filter_mode
    if post_subscription is None:
        post_subscription = config.post_subscription_when_pull
    expression = subscription.sub_string if post_subscription and not class_filter else None
    sys_flag = build_pull_sys_flag(
        commit_offset > 0 and not to_slave, True, expression is not None, class_filter
    )
    return rq.pull_message(
        consumer_group=request.consumer_group,
        topic=mq.topic,
        queue_id=mq.queue_id,
        queue_offset=request.next_offset,
        max_msg_nums=config.pull_batch_size,
        sys_flag=sys_flag,
        commit_offset=commit_offset,
        suspend_timeout_millis=int(config.broker_suspend_max_time * 1000),
        subscription=expression,
        sub_version=subscription.sub_version,
        expression_type=str(subscription.expression_type),
        max_msg_bytes=config.pull_batch_size_in_bytes,
        broker_name=mq.broker_name,
    )


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """What one pull step did, and when the next one is due."""

    #: Seconds until the next step; ``None``: stop this queue's loop (dropped, or
    #: its offset was fixed: forget the process queue and rebalance now).
    delay: float | None
    #: Messages just cached in the process queue: hand them to consumption.
    messages: list[MessageExt] = field(default_factory=list)
    #: Orderly: a consume task should be started (the process queue said so).
    dispatch: bool = False
    #: The broker's answer, when a pull was made and answered.
    result: PullResult | None = None
    #: Why no pull was made, or why it failed (for logs); empty otherwise.
    reason: str = ""
    #: OFFSET_ILLEGAL: the offset store holds the fixed offset (frozen).
    offset_fixed: bool = False
    #: Orderly: the queue was just locked and no pull was made; the caller reads
    #: its offset again (:func:`~rocketmq_proto.flows.consumer.consume.initial_offset_flow`),
    #: sets it with :meth:`PullRequest.relocked` and steps again.
    reread_offset: bool = False


def pull_step_flow(
    client: ClientCore,
    request: PullRequest,
    subscription: SubscriptionData | None,
    config: PullConfig,
    offsets: OffsetStore,
    *,
    clustering: bool = True,
    orderly: bool = False,
    paused: bool = False,
    queue_count: int = 0,
) -> Flow[PullOutcome]:
    """One step of a queue's pull loop (Java's ``DefaultMQPushConsumerImpl.pullMessage``).

    The caller hands :attr:`PullOutcome.messages` to consumption and runs it
    again after :attr:`PullOutcome.delay` (until ``None``). Orderly consumers
    pull only a locked queue; on the first step after it got locked no pull is
    made: the outcome asks the caller to read its offset again
    (:attr:`PullOutcome.reread_offset`). After OFFSET_ILLEGAL the fixed offset
    is committed here for clustering; a broadcasting caller writes its file.
    """
    pq = request.process_queue
    mq = request.message_queue
    if pq.dropped:
        return PullOutcome(None, reason="dropped")
    now_s = yield from now()
    pq.last_pull_time = now_s
    if paused:
        return PullOutcome(PULL_TIME_DELAY_WHEN_SUSPEND, reason="paused")
    control = should_pause(pq, config, orderly=orderly, queue_count=queue_count)
    if control is not None:
        return PullOutcome(PULL_TIME_DELAY_WHEN_CACHE_FLOW_CONTROL, reason=control.value)
    error_delay = config.pull_time_delay_when_exception
    if orderly:
        if not pq.locked:
            return PullOutcome(error_delay, reason="not locked in broker")
        if not request.previously_locked:
            return PullOutcome(0.0, reason="locked: offset to read again", reread_offset=True)
    if subscription is None:
        return PullOutcome(error_delay, reason="no subscription for the topic")
    commit_offset = -1
    if clustering:
        stored = offsets.read(mq)
        commit_offset = -1 if stored is None else stored
    else:
        commit_offset = 0
    try:
        addr, slave = yield from subscribe_addr_flow(client, mq, request.broker_id)
        command = pull_command(request, subscription, config, commit_offset, to_slave=slave)
        response = yield from call(addr, command, config.consumer_timeout_when_suspend)
        result = parse_pull_response(response, mq, subscription)
    except RocketMQError as exc:
        # Counted from when the pull began: after a pull that timed out (a broker
        # that stalled through the long poll) the queue is pulled again at once.
        failed = yield from now()
        delay = pull_error_delay(exc, config, failed - now_s)
        return PullOutcome(delay, reason=f"pull failed after {failed - now_s:.3f}s: {exc}")
    request.broker_id = result.suggest_which_broker_id
    request.broker_max_offset = result.max_offset
    if pq.dropped:
        return PullOutcome(None, result=result, reason="dropped")
    plan = plan_pull_result(result, config)
    request.next_offset = plan.next_offset
    if plan.action is PullAction.CONSUME:
        dispatch = pq.put(result.messages)
        return PullOutcome(plan.delay, result.messages, dispatch, result)
    if plan.action is PullAction.FIX_OFFSET:
        log.warning(
            "pull offset of %s was illegal; fixing it to %d",
            mq,
            plan.next_offset,
            extra=log_fields(client=client.client_id, group=request.consumer_group, queue=mq),
        )
        pq.dropped = True
        offsets.update_and_freeze(mq, plan.next_offset)
        if clustering:
            yield from persist_offset_flow(client, request.consumer_group, offsets, mq)
        return PullOutcome(None, result=result, offset_fixed=True)
    if plan.correct_offset and pq.msg_count == 0:
        offsets.update(mq, plan.next_offset, increase_only=True)
    return PullOutcome(plan.delay, result=result)
