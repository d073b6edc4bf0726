"""The producer's decisions and flows (Java's ``DefaultMQProducerImpl``), without IO.

A send is one flow: pick a queue (round robin, avoiding brokers the latency
fault table marks unavailable and the broker that just failed), build the
request, call the broker's master, and on a retriable failure try again within
the same total timeout. Batches, oneway sends, ordered sends by key or selector,
transactions (and the answer to a broker's check-back) and request-reply are
flows over the same pieces.
"""

from __future__ import annotations

import enum
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, overload

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.effects import Flow, call, now, offload, user_call, wall_ms, within
from rocketmq_proto.flows.effects import oneway as send_oneway
from rocketmq_proto.flows.hooks import EndTransactionContext, hooked_send
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner
from rocketmq_proto.flows.metrics import SendMetrics
from rocketmq_proto.flows.session import ClientCore, TopicPublishInfo
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.codec import decode_message, encode_batch
from rocketmq_proto.message.compression import (
    CompressionType,
    compress_body,
    compression_available,
    decompress_body,
)
from rocketmq_proto.message.ids import UniqueIdGenerator, decode_offset_msg_id
from rocketmq_proto.message.model import RETRY_GROUP_TOPIC_PREFIX, MessageExt, validate_tags
from rocketmq_proto.message.model import Message as Message
from rocketmq_proto.message.properties import MessageConst, decode_properties, properties_string
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.codes import (
    RETRIABLE_SEND_CODES,
    RequestCode,
    ResponseCode,
    SendStatus,
    TransactionState,
)
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    BrokerError,
    CompressionUnavailableError,
    ConfigError,
    ConnectionClosedError,
    InvalidMessageError,
    LocalProtocolError,
    MessageTooLargeError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    TimerUnsupportedError,
    UserCallbackError,
    error_for_response,
)
from rocketmq_proto.wire.hashing import java_string_hash
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue

log = logging.getLogger("rocketmq_proto.producer")

_C = MessageConst
_SYSFLAG_TRANSACTION_PREPARED = 0x4
_SYSFLAG_COMPRESSED = 0x1
_REPLY_MESSAGE_TYPE = "reply"
#: A body of this many bytes or more is compressed off the IO thread
#: (:meth:`ProducerCore.prepare_flow`; not the trace producer's, see
#: :attr:`ProducerCore.short_compression`); a smaller one costs less to compress
#: than the hand-off to a thread and back.
OFFLOAD_COMPRESSION_OVER = 64 * 1024

T = TypeVar("T")

#: A transaction's outcome as Java's ``LocalTransactionState`` names it (traces show it).
_JAVA_TRANSACTION_STATES: Final[dict[TransactionState, str]] = {
    TransactionState.COMMIT: "COMMIT_MESSAGE",
    TransactionState.ROLLBACK: "ROLLBACK_MESSAGE",
    TransactionState.UNKNOWN: "UNKNOW",
}

#: A user's queue selector: (queues, message, arg) -> the queue to send to.
QueueSelector = Callable[[list[MessageQueue], Message, Any], MessageQueue]

#: Answers a broker's check-back: (half message) -> TransactionState, True/False or None
#: (or a coroutine of one).
TransactionChecker = Callable[[MessageExt], Any]


class QueueSelection(enum.StrEnum):
    """How a producer picks a queue when the caller names none."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"


class TimerFallback(enum.StrEnum):
    """What a producer does with a timer message bound for a broker without timers.

    Brokers older than RocketMQ 5.0.0 ignore TIMER_DELIVER_MS / TIMER_DELAY_SEC and
    deliver the message at once. ``REFUSE`` (the default) raises
    :class:`TimerUnsupportedError` before sending; ``DELAY_LEVEL`` sends it with
    the delay level nearest to the time left (see :func:`timer_to_delay_level`).
    """

    REFUSE = "refuse"
    DELAY_LEVEL = "delay_level"


#: ``MQVersion.Version.V5_0_0.ordinal()``: brokers answering with a lower ``version``
#: have no timer wheel (timers came with 5.0.0).
TIMER_MIN_BROKER_VERSION = 413

#: The broker's default ``messageDelayLevel``: used for the fallback when a broker's own
#: table cannot be read (GET_BROKER_CONFIG refused or unparsable).
DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"

#: The properties that make a message a timer message, in the order a 5.x broker reads
#: them (TIMER_DELAY_MS is Java's client's; it is a timer request all the same).
_TIMER_PROPERTIES = (
    _C.PROPERTY_TIMER_DELAY_SEC,
    _C.PROPERTY_TIMER_DELAY_MS,
    _C.PROPERTY_TIMER_DELIVER_MS,
)
_DELAY_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def broker_release(version: int) -> str:
    """The release a ``version`` header names (Java's ``MQVersion.Version`` ordinal):
    407 is "4.9.7", 412 "5.0.0-SNAPSHOT", 513 "5.5.0"."""
    first = 212  # V4_0_0_SNAPSHOT: from there on, a SNAPSHOT and a release per x.y.z
    if version < first:
        return "older than 4.0.0"
    rank, release = divmod(version - first, 2)
    if rank >= 200:
        return "newer than 5.9.9"
    name = f"{4 + rank // 100}.{rank // 10 % 10}.{rank % 10}"
    return name if release else f"{name}-SNAPSHOT"


def is_timer_message(msg: Message) -> bool:
    """Whether a 5.x broker would hold ``msg`` in its timer wheel: it has a timer
    property and no delay level (a broker gives a delay level precedence and drops
    the timer properties)."""
    props = msg.properties
    return msg.delay_level <= 0 and any(key in props for key in _TIMER_PROPERTIES)


def parse_delay_levels(text: str) -> tuple[int, ...]:
    """A broker's ``messageDelayLevel`` ("1s 5s ... 2h") as milliseconds per level
    (level 1 first); :class:`ValueError` if it is not one."""
    levels = []
    for item in text.split():
        unit = _DELAY_UNITS.get(item[-1:])
        if unit is None or not item[:-1].isdigit():
            raise ValueError(f"not a delay level: {item!r}")
        levels.append(int(item[:-1]) * unit)
    if not levels:
        raise ValueError("no delay levels")
    return tuple(levels)


def delay_levels_flow(
    client: ClientCore, addr: str, known: dict[str, tuple[int, ...]]
) -> Flow[tuple[int, ...]]:
    """The broker's ``messageDelayLevel`` (ms per level, level 1 first), asked
    with GET_BROKER_CONFIG once per address and kept in ``known``; Java's
    default table if the broker does not tell."""
    cached = known.get(addr)
    if cached is not None:
        return cached
    response = yield from call(addr, rq.get_broker_config(), client.config.request_timeout)
    client.note_broker_version(addr, response.version)
    levels: tuple[int, ...] | None = None
    if response.code == ResponseCode.SUCCESS:
        for line in response.body.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "messageDelayLevel":
                try:
                    levels = parse_delay_levels(value)
                except ValueError as exc:
                    log.warning(
                        "broker %s: messageDelayLevel unusable: %s",
                        addr,
                        exc,
                        extra=log_fields(client=client.client_id, addr=addr),
                    )
                break
    if levels is None:
        log.warning(
            "broker %s did not tell its delay levels (GET_BROKER_CONFIG answered %s): "
            "using the default table %r",
            addr,
            response.code,
            DEFAULT_DELAY_LEVELS,
            extra=log_fields(client=client.client_id, addr=addr),
        )
        levels = parse_delay_levels(DEFAULT_DELAY_LEVELS)
    known[addr] = levels
    return levels


def nearest_delay_level(delay_ms: int, levels: Sequence[int]) -> int:
    """The delay level whose wait is nearest to ``delay_ms`` (0, no delay, is a
    candidate too); between two as near, the longer (it never delivers earlier)."""
    best, best_distance, best_wait = 0, abs(delay_ms), 0
    for level, wait in enumerate(levels, 1):
        distance = abs(delay_ms - wait)
        if distance < best_distance or (distance == best_distance and wait > best_wait):
            best, best_distance, best_wait = level, distance, wait
    return best


def timer_to_delay_level(
    properties: dict[str, str], now_ms: int, levels: Sequence[int]
) -> tuple[dict[str, str], int, int]:
    """(properties, level, wanted delay in ms): ``properties`` with the timer
    properties replaced by the DELAY level nearest to the time they ask for (read as
    a 5.x broker does: TIMER_DELAY_SEC, else TIMER_DELAY_MS, else TIMER_DELIVER_MS
    less ``now_ms``). Level 0 (a time already past or nearer to now than to the
    first level) leaves no DELAY: the message is delivered at once."""
    for key in _TIMER_PROPERTIES:
        raw = properties.get(key)
        if raw is None:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise InvalidMessageError(f"{key}={raw!r} is not an integer") from None
        if key == _C.PROPERTY_TIMER_DELAY_SEC:
            wanted = value * 1000
        elif key == _C.PROPERTY_TIMER_DELAY_MS:
            wanted = value
        else:
            wanted = value - now_ms
        break
    else:
        raise InvalidMessageError("not a timer message")
    converted = {k: v for k, v in properties.items() if k not in _TIMER_PROPERTIES}
    level = nearest_delay_level(wanted, levels)
    if level:
        converted[_C.PROPERTY_DELAY_TIME_LEVEL] = str(level)
    return converted, level, wanted


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """Producer settings, with Java's defaults. Times are seconds.

    ``timer_fallback`` (not Java's): what to do with a timer message bound for a
    broker older than 5.0.0 (see :class:`TimerFallback`).
    """

    group: str = "DEFAULT_PRODUCER"
    send_timeout: float = 3.0
    retry_times_when_send_failed: int = 2
    retry_another_broker_when_not_store_ok: bool = False
    compress_msg_body_over_howmuch: int = 4096
    compress_level: int = 5
    compress_type: CompressionType = CompressionType.ZLIB
    max_message_size: int = 4 * 1024 * 1024
    default_topic_queue_nums: int = 4
    send_latency_fault_enable: bool = True
    queue_selection: QueueSelection = QueueSelection.ROUND_ROBIN
    timer_fallback: TimerFallback = TimerFallback.REFUSE

    def __post_init__(self) -> None:
        if not self.group or not all(c.isalnum() or c in "%|-_" for c in self.group):
            raise ConfigError(
                f"producer group {self.group!r} must be non-empty and use only "
                "letters, digits, '%', '|', '-' and '_'"
            )
        if len(self.group) > 255:
            raise ConfigError(f"producer group is longer than 255 characters: {self.group!r}")
        if not self.send_timeout > 0:
            raise ConfigError(f"send_timeout must be positive, got {self.send_timeout!r}")
        if not 0 <= self.retry_times_when_send_failed <= 16:
            raise ConfigError(
                "retry_times_when_send_failed must be 0..16, "
                f"got {self.retry_times_when_send_failed}"
            )
        if not 0 < self.max_message_size <= 128 * 1024 * 1024:
            raise ConfigError(f"max_message_size must be 1..128 MiB, got {self.max_message_size}")
        compression = _compression_type(self.compress_type)
        object.__setattr__(self, "compress_type", compression)
        low, high = (1, 22) if compression is CompressionType.ZSTD else (0, 9)
        if (
            isinstance(self.compress_level, bool)
            or not isinstance(self.compress_level, int)
            or not low <= self.compress_level <= high
        ):
            raise ConfigError(
                f"compress_level must be {low}..{high} for {compression.name}, "
                f"got {self.compress_level!r}"
            )
        threshold = self.compress_msg_body_over_howmuch
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ConfigError(
                f"compress_msg_body_over_howmuch must be an int >= 0, got {threshold!r}"
            )
        object.__setattr__(self, "queue_selection", QueueSelection(self.queue_selection))
        try:
            fallback = TimerFallback(self.timer_fallback)
        except ValueError:
            raise ConfigError(
                f"timer_fallback must be 'refuse' or 'delay_level', got {self.timer_fallback!r}"
            ) from None
        object.__setattr__(self, "timer_fallback", fallback)


def _compression_type(value: object) -> CompressionType:
    """``compress_type`` as a :class:`CompressionType`: one, or its name ("zlib", "lz4",
    "zstd"); LZ4 and Zstandard only with their optional library installed."""
    if isinstance(value, CompressionType):
        kind = value
    elif isinstance(value, str) and value.upper() in CompressionType.__members__:
        kind = CompressionType[value.upper()]
    else:
        raise ConfigError(f"compress_type must be 'zlib', 'lz4' or 'zstd', got {value!r}")
    try:
        compression_available(kind)
    except CompressionUnavailableError as exc:
        raise ConfigError(f"compress_type {kind.name}: {exc}") from None
    return kind


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the broker said about a stored message."""

    status: SendStatus
    msg_id: str
    offset_msg_id: str
    message_queue: MessageQueue
    queue_offset: int
    transaction_id: str | None = None
    region_id: str | None = None
    trace_on: bool = True
    #: The address the message was sent to (a broker's, or a proxy's).
    broker_addr: str = ""


def parse_send_response(
    response: RemotingCommand,
    mq: MessageQueue,
    msg_id: str,
    *,
    user_topic: str,
    broker_addr: str = "",
) -> SendResult:
    """A :class:`SendResult` from SEND_MESSAGE's answer, or the broker's error raised."""
    code = response.code
    if code == ResponseCode.SUCCESS:
        status = SendStatus.SEND_OK
    elif code in (
        ResponseCode.FLUSH_DISK_TIMEOUT,
        ResponseCode.FLUSH_SLAVE_TIMEOUT,
        ResponseCode.SLAVE_NOT_AVAILABLE,
    ):
        status = SendStatus(code)
    else:
        raise error_for_response(code, response.remark)
    fields = response.ext_fields
    try:
        queue_id = int(fields["queueId"])
        queue_offset = int(fields["queueOffset"])
    except (KeyError, ValueError):
        raise RemoteProtocolError(
            f"send response lacks a valid queueId/queueOffset: {fields!r}"
        ) from None
    batch_ids = fields.get("batchUniqId")
    return SendResult(
        status=status,
        msg_id=batch_ids or msg_id,
        offset_msg_id=fields.get("msgId", ""),
        message_queue=MessageQueue(user_topic, mq.broker_name, queue_id),
        queue_offset=queue_offset,
        transaction_id=fields.get("transactionId"),
        region_id=fields.get("MSG_REGION"),
        trace_on=fields.get("TRACE_ON", "true") != "false",
        broker_addr=broker_addr,
    )


def select_by_key(queues: Sequence[MessageQueue], key: str) -> MessageQueue:
    """The queue for a sharding key: ``|String.hashCode(key)| % len(queues)``.

    Java's ``SelectMessageQueueByHash`` computes the same, so Java and Python
    producers put one key in one queue; the hash is stable across processes
    (unlike Python's ``hash``).
    """
    if not queues:
        raise InvalidMessageError("no queue to select from")
    return queues[abs(java_string_hash(key)) % len(queues)]


@dataclass(slots=True)
class _Attempt:
    mq: MessageQueue
    addr: str


@dataclass(slots=True)
class ProducerCore(LifecycleOwner):
    """One producer group's state: config, id generator, per-topic templates, and
    its lifecycle (:class:`~rocketmq_proto.flows.lifecycle.LifecycleOwner`)."""

    client: ClientCore
    config: ProducerConfig
    ids: UniqueIdGenerator
    rng: random.Random = field(default_factory=random.Random)
    #: Whether the client's send hooks see this producer's sends (not those of a
    #: consumer's inner producer, which resends failed messages for retry).
    hooked: bool = True
    #: Bodies of :data:`OFFLOAD_COMPRESSION_OVER` bytes or more are compressed by
    #: the task running the send, not a worker thread (:class:`Offload`'s
    #: ``short``): the trace's producer, whose bodies take a fraction of a
    #: millisecond.
    short_compression: bool = False
    _transaction_checker: TransactionChecker | None = field(default=None, init=False)
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("producer"), init=False)
    _templates: dict[tuple[str, int], rq.SendTemplate] = field(default_factory=dict)
    #: Each broker address's ``messageDelayLevel`` in ms per level (timer fallback).
    _delay_levels: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Sends counted and timed, for the client's ``stats()``.
    metrics: SendMetrics = field(default_factory=SendMetrics)

    def __post_init__(self) -> None:
        self.client.fault.enabled = self.config.send_latency_fault_enable

    @property
    def group(self) -> str:
        return ns.wrap(self.client.config.namespace, self.config.group)

    def stats(self) -> dict[str, Any]:
        """This producer's part of the client's ``stats()``: its sends."""
        return {"sends": self.metrics.snapshot()}

    def register(self) -> None:
        self.client.producer_groups.add(self.group)
        self.client.handlers[RequestCode.CHECK_TRANSACTION_STATE] = self.check_transaction_flow

    def unregister(self) -> None:
        self.client.producer_groups.discard(self.group)

    # ------------------------------------------------------------- transactions

    @property
    def transaction_checker(self) -> TransactionChecker | None:
        """What answers the brokers' check-backs (see :meth:`set_transaction_checker`)."""
        return self._transaction_checker

    @transaction_checker.setter
    def transaction_checker(self, checker: TransactionChecker | None) -> None:
        # Kept for drivers that still set the field.
        if checker is None:
            self._transaction_checker = None
        else:
            self.set_transaction_checker(checker)

    def set_transaction_checker(self, checker: TransactionChecker) -> None:
        """Answer the brokers' check-backs with ``checker(message)`` (a user callable
        returning a :class:`TransactionState`, ``True``/``False`` or ``None``).

        Raises :class:`ConfigError` if it is not callable, and
        :class:`LocalProtocolError` once the producer is closing.
        """
        if not callable(checker):
            raise ConfigError(
                "a transaction checker must be callable: (message) -> TransactionState"
            )
        if self.closed:
            raise LocalProtocolError(f"the producer is {self.state.value}: no checker can be set")
        self._transaction_checker = checker

    # ------------------------------------------------------------ queue choice

    def select_queue(
        self, info: TopicPublishInfo, last_failed_broker: str | None, now: float
    ) -> MessageQueue:
        """Java's choice: the next queue round robin (or at random) on a broker that
        the fault table allows and that did not just fail; failing that, any."""
        queues = info.queues
        count = len(queues)
        if self.config.queue_selection is QueueSelection.RANDOM:
            start = self.rng.randrange(count)
        else:
            start = info.next_position()
        fault = self.client.fault
        fallback: MessageQueue | None = None
        for i in range(count):
            mq = queues[(start + i) % count]
            if mq.broker_name == last_failed_broker:
                continue
            if fault.is_available(mq.broker_name, now):
                return mq
            if fallback is None:
                fallback = mq
        if fallback is not None:
            return fallback
        return queues[start % count]

    # ------------------------------------------------------------ validation

    def check_message(self, msg: Message) -> None:
        """Refuse, before anything is sent, what no broker or consumer could use: a
        non-Message, an empty or oversized body, TAGS no tag filter can select
        (:func:`validate_tags`; not checked on ``%RETRY%`` topics, whose copies of
        received messages keep the tags they came with and are consumed with ``*``).
        The topic was checked when set (:func:`validate_topic`), the properties are
        when the request is built (:meth:`prepare`)."""
        if not isinstance(msg, Message):
            raise InvalidMessageError(f"expected a Message, got {type(msg).__name__}")
        tags = msg.properties.get(_C.PROPERTY_TAGS)
        if tags and not msg.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            validate_tags(tags)
        size = len(msg.body)
        if size == 0:
            # As the Java client: a 5.x broker fails such a send, a 4.x broker stores
            # a message the 4.x Java consumer cannot read.
            raise InvalidMessageError(f"message body is empty (topic {msg.topic!r})")
        if size > self.config.max_message_size:
            raise MessageTooLargeError(
                f"message body of {size} bytes exceeds the maximum message size "
                f"{self.config.max_message_size} (topic {msg.topic!r})"
            )

    # ---------------------------------------------------------------- builders

    def _template(self, topic: str, code: int) -> rq.SendTemplate:
        key = (topic, code)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) > 1024:
                self._templates.clear()
            template = rq.SendTemplate(
                self.group,
                topic,
                default_topic_queue_nums=self.config.default_topic_queue_nums,
                batch=code == RequestCode.SEND_BATCH_MESSAGE,
                reply=code == RequestCode.SEND_REPLY_MESSAGE_V2,
            )
            self._templates[key] = template
        return template

    def prepare(
        self, msg: Message, now_ms: int, *, compress: bool = True
    ) -> tuple[str, bytes, int, str]:
        """(properties field, body, sysFlag, message id) of a single message.

        Sets UNIQ_KEY if the message has none (as Java does, so a retried send
        keeps its id), compresses a large body with ``compress_type`` (if that makes
        it smaller: see :func:`compress_body`; not with ``compress=False``), marks
        transactions. The properties are checked as a batch member's are
        (:class:`InvalidPropertyError` for a separator in a key or value, a non-str,
        or over 32767 bytes encoded).
        """
        props = msg.properties
        msg_id = props.get(_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        if msg_id is None:
            msg_id = self.ids.next_id(now_ms)
            props[_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] = msg_id
        properties = properties_string(props)
        body, sys_flag = self._compressed(msg.body) if compress else (msg.body, 0)
        if props.get(_C.PROPERTY_TRANSACTION_PREPARED) == "true":
            sys_flag |= _SYSFLAG_TRANSACTION_PREPARED
        return properties, body, sys_flag, msg_id

    def _compressed(self, body: bytes) -> tuple[bytes, int]:
        """``body`` as it is sent, and its compression's sysFlag bits."""
        config = self.config
        return compress_body(
            body,
            config.compress_level,
            config.compress_msg_body_over_howmuch,
            compression=config.compress_type,
        )

    def prepare_flow(self, msg: Message, now_ms: int) -> Flow[tuple[str, bytes, int, str]]:
        """:meth:`prepare`, with a body of :data:`OFFLOAD_COMPRESSION_OVER` bytes or
        more compressed off the IO thread (:func:`offload`): zlib releases the GIL,
        so the event loop goes on meanwhile (a 1 MiB body takes milliseconds).
        Unless :attr:`short_compression`: then by the task running the send."""
        body = msg.body
        if len(body) < OFFLOAD_COMPRESSION_OVER or (
            len(body) < self.config.compress_msg_body_over_howmuch
        ):
            return self.prepare(msg, now_ms)
        properties, _, sys_flag, msg_id = self.prepare(msg, now_ms, compress=False)
        sent, compressed = yield from offload(self._compressed, body, short=self.short_compression)
        return properties, sent, sys_flag | compressed, msg_id

    def _send_command(
        self,
        topic: str,
        mq: MessageQueue,
        prepared: tuple[str, bytes, int, str],
        now_ms: int,
        msg: Message,
        code: int,
    ) -> RemotingCommand:
        properties, body, sys_flag, _ = prepared
        reconsume = msg.properties.get(_C.PROPERTY_RECONSUME_TIME)
        max_reconsume = msg.properties.get(_C.PROPERTY_MAX_RECONSUME_TIMES)
        return self._template(topic, code).build(
            mq.queue_id,
            mq.broker_name,
            properties,
            body,
            now_ms,
            sys_flag,
            msg.flag,
            int(reconsume) if reconsume and reconsume.isdigit() else 0,
            int(max_reconsume) if max_reconsume and max_reconsume.isdigit() else None,
        )

    # ------------------------------------------------------------------ timers

    def timer_prepared_flow(
        self, addr: str, prepared: tuple[str, bytes, int, str], msg: Message
    ) -> Flow[tuple[str, bytes, int, str]]:
        """``prepared`` as it may go to the broker at ``addr``, for a timer message.

        The broker's version is the one its latest response carried; with none seen
        yet, it is asked first (:meth:`ClientCore.broker_version_flow`). A broker of
        5.0.0 or later gets the message as it is. An older one has no timers and
        would deliver it at once: :class:`TimerUnsupportedError`, unless
        ``timer_fallback`` is ``"delay_level"``: then the timer properties are
        replaced by the nearest of that broker's delay levels (read once with
        GET_BROKER_CONFIG; :data:`DEFAULT_DELAY_LEVELS` if it cannot be read). The
        user's message is left as it is (a retry on another broker starts afresh).
        A server answering with no version (0) is not judged: the message goes as it is.
        """
        client = self.client
        version = yield from client.broker_version_flow(addr, client.config.request_timeout)
        if version <= 0 or version >= TIMER_MIN_BROKER_VERSION:
            return prepared
        release = broker_release(version)
        if self.config.timer_fallback is not TimerFallback.DELAY_LEVEL:
            raise TimerUnsupportedError(
                f"broker {addr} is RocketMQ {release} (version {version}), which has no "
                f"timers (5.0.0 and later have): it would deliver this timer message "
                f"(topic {msg.topic!r}) at once; send it to a 5.x broker, or create the "
                "producer with timer_fallback='delay_level' to send it with the nearest "
                "delay level instead"
            )
        levels = yield from self._delay_levels_flow(addr)
        now_ms = yield from wall_ms()
        props, level, wanted = timer_to_delay_level(msg.properties, now_ms, levels)
        log.info(
            "broker %s is RocketMQ %s, without timers: timer message %s (due in %d ms) "
            "sent with delay level %d (%d ms)",
            addr,
            release,
            prepared[3],
            wanted,
            level,
            levels[level - 1] if level else 0,
            extra=log_fields(
                client=self.client.client_id, group=self.group, addr=addr, msg_id=prepared[3]
            ),
        )
        _, body, sys_flag, msg_id = prepared
        return properties_string(props), body, sys_flag, msg_id

    def _delay_levels_flow(self, addr: str) -> Flow[tuple[int, ...]]:
        """The broker's ``messageDelayLevel`` (ms per level), asked once per address."""
        return delay_levels_flow(self.client, addr, self._delay_levels)

    # ------------------------------------------------------------------- sends

    @overload
    def send_flow(
        self,
        msg: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
        oneway: Literal[False] = False,
    ) -> Flow[SendResult]: ...

    @overload
    def send_flow(
        self,
        msg: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
        oneway: bool,
    ) -> Flow[SendResult | None]: ...

    def send_flow(
        self,
        msg: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
        oneway: bool = False,
    ) -> Flow[SendResult | None]:
        """Send one message (:meth:`_send_flow`), between the client's send hooks."""
        flow = self._send_flow(
            msg,
            timeout,
            queue=queue,
            sharding_key=sharding_key,
            selector=selector,
            arg=arg,
            oneway=oneway,
        )
        hooks = self.client.hooks
        if hooks and self.hooked:
            flow = hooked_send(hooks, self.group, [msg], oneway, flow)
        return self._counted(flow, 1)

    def _counted(self, flow: Flow[T], messages: int) -> Flow[T]:
        """``flow`` (a send), counted in :attr:`metrics` as it ends (its latency is
        added by the send itself, from the clock it reads anyway)."""
        metrics = self.metrics
        try:
            result = yield from flow
        except Exception:
            metrics.failed += 1
            raise
        metrics.ok += 1
        metrics.messages += messages
        return result

    def _send_flow(
        self,
        msg: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
        oneway: bool = False,
    ) -> Flow[SendResult | None]:
        """Send one message; ``None`` as result for oneway sends.

        With no queue given: up to 1 + ``retry_times_when_send_failed`` attempts
        (1 for oneway), each on a queue chosen as Java does, within ``timeout`` in
        all. With ``queue``, ``sharding_key`` or ``selector``: that one queue, one
        attempt (ordered messages must not move to another queue). The route
        lookups count against ``timeout`` too: :class:`RequestTimeoutError` once
        it is spent, however slow the name servers.

        A timer message (:func:`is_timer_message`) is checked against the chosen
        broker's release before it is sent (:meth:`timer_prepared_flow`): a broker
        older than 5.0.0 gets :class:`TimerUnsupportedError` raised, or the nearest
        delay level with ``timer_fallback="delay_level"``.
        """
        self.check_message(msg)
        timeout = self.config.send_timeout if timeout is None else timeout
        start = yield from now()
        # Built (and its properties checked) before any request, the route lookup too.
        now_ms = yield from wall_ms()
        prepared = (
            self.prepare(msg, now_ms)
            if len(msg.body) < OFFLOAD_COMPRESSION_OVER
            else (yield from self.prepare_flow(msg, now_ms))
        )
        msg_id = prepared[3]
        namespace = self.client.config.namespace
        user_topic = msg.topic
        topic = ns.wrap(namespace, user_topic)
        code = (
            RequestCode.SEND_REPLY_MESSAGE_V2
            if msg.properties.get(_C.PROPERTY_MESSAGE_TYPE) == _REPLY_MESSAGE_TYPE
            else RequestCode.SEND_MESSAGE_V2
        )
        deadline, what = start + timeout, f"send to topic {user_topic!r} in {timeout:g} s"
        info = yield from within(
            self.client.publish_info_flow(
                topic, default_queue_nums=self.config.default_topic_queue_nums
            ),
            deadline,
            what,
        )
        fixed: MessageQueue | None = None
        if queue is not None:
            fixed = MessageQueue(topic, queue.broker_name, queue.queue_id)
        elif sharding_key is not None:
            fixed = select_by_key(info.queues, sharding_key)
        elif selector is not None:
            user_queues = [MessageQueue(user_topic, q.broker_name, q.queue_id) for q in info.queues]
            try:
                chosen = selector(user_queues, msg, arg)
            except Exception as exc:
                raise UserCallbackError(f"queue selector {selector!r} raised: {exc!r}") from exc
            if not isinstance(chosen, MessageQueue):
                raise InvalidMessageError(f"queue selector returned {chosen!r}, not a MessageQueue")
            fixed = MessageQueue(topic, chosen.broker_name, chosen.queue_id)
        attempts = (
            1 if (oneway or fixed is not None) else 1 + self.config.retry_times_when_send_failed
        )
        timer = is_timer_message(msg)
        last_error: RocketMQError | None = None
        last_broker: str | None = None
        for attempt in range(attempts):
            now_s = yield from now()
            remaining = timeout - (now_s - start)
            if remaining <= 0:
                break
            mq = fixed or self.select_queue(info, last_broker, now_s)
            try:
                addr = yield from within(
                    self.client.master_addr_flow(mq.broker_name, topic), deadline, what
                )
            except RocketMQError as exc:
                last_error, last_broker = exc, mq.broker_name
                continue
            sending = prepared
            if timer:
                # Before the send: a broker without timers would deliver it at once.
                try:
                    sending = yield from within(
                        self.timer_prepared_flow(addr, prepared, msg), deadline, what
                    )
                except (RequestTimeoutError, ConnectionClosedError) as exc:
                    after_probe = yield from now()
                    self.client.fault.update(mq.broker_name, 0, after_probe, failed=True)
                    last_error, last_broker = exc, mq.broker_name
                    continue
                now_s = yield from now()
                remaining = timeout - (now_s - start)
                if remaining <= 0:
                    break
            if sending[2] & _SYSFLAG_TRANSACTION_PREPARED:
                # A half message's check-back needs this producer group known where
                # it goes: a proxy announces a transactional group to the brokers
                # only while the group is registered with it.
                yield from self.client.heartbeat_once_flow(addr)
            command = self._send_command(topic, mq, sending, now_ms, msg, code)
            if oneway:
                yield from send_oneway(addr, command)
                return None
            try:
                response = yield from call(addr, command, remaining)
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                after = yield from now()
                self.client.fault.update(
                    mq.broker_name,
                    (after - now_s) * 1000,
                    after,
                    failed=True,
                    isolate=isinstance(exc, ConnectionClosedError),
                )
                log.info(
                    "send to %s (attempt %d) failed: %s",
                    addr,
                    attempt + 1,
                    exc,
                    extra=log_fields(
                        client=self.client.client_id, group=self.group, queue=mq, addr=addr
                    ),
                )
                last_error, last_broker = exc, mq.broker_name
                continue
            self.client.note_broker_version(addr, response.version)
            after = yield from now()
            try:
                result = parse_send_response(
                    response, mq, msg_id, user_topic=user_topic, broker_addr=addr
                )
            except BrokerError as exc:
                self.client.fault.update(mq.broker_name, (after - now_s) * 1000, after, failed=True)
                if exc.code in RETRIABLE_SEND_CODES:
                    if exc.code == ResponseCode.TOPIC_NOT_EXIST:
                        self.client.forget_route(topic)
                    last_error, last_broker = exc, mq.broker_name
                    continue
                raise
            self.client.fault.update(mq.broker_name, (after - now_s) * 1000, after)
            if (
                result.status is not SendStatus.SEND_OK
                and self.config.retry_another_broker_when_not_store_ok
                and attempt + 1 < attempts
            ):
                last_broker = mq.broker_name
                continue
            self.metrics.latency.add(after - start)
            tracer = self.client.tracer
            if tracer is not None and self.hooked:
                tracer.published(self.config.group, (msg,), result, now_ms, after - start)
            return result
        if last_error is None:
            raise RequestTimeoutError(
                f"send to topic {user_topic!r} timed out after {timeout:.3f} s"
            )
        raise last_error

    def send_batch_flow(
        self,
        messages: Sequence[Message],
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
    ) -> Flow[SendResult]:
        """Send a batch (:meth:`_send_batch_flow`), between the client's send hooks."""
        flow = self._send_batch_flow(messages, timeout, queue=queue)
        hooks = self.client.hooks
        if hooks and self.hooked:
            flow = hooked_send(hooks, self.group, list(messages), False, flow)
        return self._counted(flow, len(messages))

    def _send_batch_flow(
        self,
        messages: Sequence[Message],
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
    ) -> Flow[SendResult]:
        """Send several messages of one topic as one SEND_BATCH_MESSAGE, with retries."""
        if not messages:
            raise InvalidMessageError("a batch needs at least one message")
        for msg in messages:
            self.check_message(msg)
        timeout = self.config.send_timeout if timeout is None else timeout
        start = yield from now()
        user_topic = messages[0].topic
        topic = ns.wrap(self.client.config.namespace, user_topic)
        now_ms = yield from wall_ms()
        key = _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX
        ids = [
            msg.properties.get(key) or uid
            for msg, uid in zip(messages, self.ids.next_ids(now_ms, len(messages)), strict=True)
        ]
        body = encode_batch(messages, ids)
        if len(body) > self.config.max_message_size:
            raise MessageTooLargeError(
                f"batch of {len(messages)} messages encodes to {len(body)} bytes, over the "
                f"maximum message size {self.config.max_message_size}"
            )
        for msg, uid in zip(messages, ids, strict=True):
            msg.properties[_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] = uid
        deadline, what = start + timeout, f"batch send to {user_topic!r} in {timeout:g} s"
        info = yield from within(
            self.client.publish_info_flow(
                topic, default_queue_nums=self.config.default_topic_queue_nums
            ),
            deadline,
            what,
        )
        batch_id = ",".join(ids)
        attempts = 1 if queue is not None else 1 + self.config.retry_times_when_send_failed
        last_error: RocketMQError | None = None
        last_broker: str | None = None
        for _ in range(attempts):
            now_s = yield from now()
            remaining = timeout - (now_s - start)
            if remaining <= 0:
                break
            mq = (
                MessageQueue(topic, queue.broker_name, queue.queue_id)
                if queue is not None
                else self.select_queue(info, last_broker, now_s)
            )
            try:
                addr = yield from within(
                    self.client.master_addr_flow(mq.broker_name, topic), deadline, what
                )
            except RocketMQError as exc:
                last_error, last_broker = exc, mq.broker_name
                continue
            command = self._template(topic, RequestCode.SEND_BATCH_MESSAGE).build(
                mq.queue_id, mq.broker_name, "", body, now_ms
            )
            try:
                response = yield from call(addr, command, remaining)
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                after = yield from now()
                self.client.fault.update(mq.broker_name, 0, after, failed=True)
                last_error, last_broker = exc, mq.broker_name
                continue
            self.client.note_broker_version(addr, response.version)
            try:
                result = parse_send_response(
                    response, mq, batch_id, user_topic=user_topic, broker_addr=addr
                )
            except BrokerError as exc:
                if exc.code in RETRIABLE_SEND_CODES:
                    last_error, last_broker = exc, mq.broker_name
                    continue
                raise
            elapsed = (yield from now()) - start
            self.metrics.latency.add(elapsed)
            tracer = self.client.tracer
            if tracer is not None and self.hooked:
                tracer.published(self.config.group, messages, result, now_ms, elapsed)
            return result
        if last_error is None:
            raise RequestTimeoutError(f"batch send to {user_topic!r} timed out after {timeout} s")
        raise last_error

    # ------------------------------------------------------------ transactions

    def transaction_flow(
        self,
        msg: Message,
        execute_local: Callable[[Message, Any], Any],
        arg: Any = None,
        timeout: float | None = None,
    ) -> Flow[tuple[SendResult, TransactionState]]:
        """Half message, the user's local transaction, then END_TRANSACTION (oneway).

        ``execute_local(msg, arg)`` returns a :class:`TransactionState` (or
        ``True``/``False`` for commit/rollback); if it raises, the state is
        UNKNOWN and the broker will ask the checker later.
        """
        if msg.delay_level or msg.deliver_at is not None:
            raise InvalidMessageError("a transactional message cannot be delayed")
        msg.properties[_C.PROPERTY_TRANSACTION_PREPARED] = "true"
        msg.properties[_C.PROPERTY_PRODUCER_GROUP] = self.group
        result = yield from self.send_flow(msg, timeout)
        remark: str | None = None
        if result.status is SendStatus.SEND_OK:
            if result.transaction_id:
                msg.properties[_C.PROPERTY_TRANSACTION_ID] = result.transaction_id
            try:
                outcome = yield from user_call(execute_local, msg, arg)
                state = to_transaction_state(outcome)
            except UserCallbackError as exc:
                log.warning(
                    "local transaction of %s raised: %r",
                    result.msg_id,
                    exc.__cause__,
                    extra=log_fields(
                        client=self.client.client_id,
                        group=self.group,
                        topic=msg.topic,
                        msg_id=result.msg_id,
                    ),
                )
                state = TransactionState.UNKNOWN
                remark = f"executeLocalTransactionBranch exception: {exc.__cause__!r}"
        else:
            state = TransactionState.ROLLBACK
        yield from self.end_transaction_flow(result, state, remark, message=msg)
        return result, state

    def end_transaction_flow(
        self,
        result: SendResult,
        state: TransactionState,
        remark: str | None = None,
        *,
        message: Message | None = None,
    ) -> Flow[None]:
        """Tell the broker the outcome of the half message ``result`` (oneway); the
        client's ``after_end_transaction`` hooks see it when ``message`` is given."""
        topic = ns.wrap(self.client.config.namespace, result.message_queue.topic)
        id_for_offset = result.offset_msg_id or result.msg_id
        offset = decode_offset_msg_id(id_for_offset.split(",")[0]).offset
        addr = yield from self.client.master_addr_flow(result.message_queue.broker_name, topic)
        command = rq.end_transaction(
            producer_group=self.group,
            topic=topic,
            tran_state_table_offset=result.queue_offset,
            commit_log_offset=offset,
            state=state,
            msg_id=result.msg_id,
            transaction_id=result.transaction_id,
            remark=remark,
            broker_name=result.message_queue.broker_name,
        )
        yield from send_oneway(addr, command)
        if message is not None and self._watched:
            yield from self._transaction_ended_flow(
                message, result.msg_id, result.transaction_id, state, addr, from_check=False
            )

    def _transaction_ended_flow(
        self,
        message: Message | MessageExt,
        msg_id: str,
        transaction_id: str | None,
        state: TransactionState,
        addr: str,
        *,
        from_check: bool,
    ) -> Flow[None]:
        ctx = EndTransactionContext(
            self.group,
            message,
            msg_id,
            transaction_id,
            _JAVA_TRANSACTION_STATES[state],
            addr,
            from_check,
            timestamp_ms=(yield from wall_ms()),
        )
        self.client.hooks.fire("after_end_transaction", ctx)
        if self.client.tracer is not None:
            self.client.tracer.ended_transaction(ctx)

    @property
    def _watched(self) -> bool:
        """Whether a hook or the trace sees this producer's transaction outcomes."""
        client = self.client
        return self.hooked and (bool(client.hooks) or client.tracer is not None)

    def check_transaction_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        """Answer CHECK_TRANSACTION_STATE: ask the user's checker, then END_TRANSACTION.

        As Java's client answers: oneway, with the check's offsets, ``topic`` (the half
        topic the broker names) and ``bname``, ``fromTransactionCheck=true``. Each
        check answered COMMIT stores a message: a 5.x broker checks a half message
        again if the record of the last answer is not written yet (it writes them in
        batches, ``transactionOpBatchInterval`` = 3 s by default), so a
        ``transactionCheckInterval`` / ``transactionTimeOut`` shorter than that
        stores duplicates, with Java's client too.
        """
        try:
            msg, _ = decode_message(request.body)
        except RemoteProtocolError as exc:
            log.warning(
                "check-back from %s with an undecodable message: %s",
                addr,
                exc,
                extra=log_fields(client=self.client.client_id, group=self.group, addr=addr),
            )
            return None
        checker = self._transaction_checker
        if checker is None:
            log.warning(
                "check-back for %s but no transaction checker is set",
                msg.msg_id,
                extra=log_fields(
                    client=self.client.client_id,
                    group=self.group,
                    addr=addr,
                    topic=msg.topic,
                    msg_id=msg.msg_id,
                ),
            )
            return None
        fields = request.ext_fields
        transaction_id = fields.get("transactionId") or msg.transaction_id
        if transaction_id:
            msg.properties.setdefault(_C.PROPERTY_TRANSACTION_ID, transaction_id)
        msg.topic = ns.unwrap(self.client.config.namespace, msg.topic)
        remark: str | None = None
        try:
            outcome = yield from user_call(checker, msg)
            state = to_transaction_state(outcome)
        except UserCallbackError as exc:
            log.warning(
                "transaction checker raised for %s: %r",
                msg.msg_id,
                exc.__cause__,
                extra=log_fields(
                    client=self.client.client_id,
                    group=self.group,
                    addr=addr,
                    topic=msg.topic,
                    msg_id=msg.msg_id,
                ),
            )
            state = TransactionState.UNKNOWN
            remark = f"checkLocalTransactionState exception: {exc.__cause__!r}"
        try:
            tran_offset = int(fields["tranStateTableOffset"])
            commit_offset = int(fields["commitLogOffset"])
        except (KeyError, ValueError):
            log.warning(
                "check-back from %s lacks offsets: %r",
                addr,
                fields,
                extra=log_fields(
                    client=self.client.client_id, group=self.group, addr=addr, msg_id=msg.msg_id
                ),
            )
            return None
        command = rq.end_transaction(
            producer_group=msg.properties.get(_C.PROPERTY_PRODUCER_GROUP, self.group),
            topic=fields.get("topic") or ns.wrap(self.client.config.namespace, msg.topic),
            tran_state_table_offset=tran_offset,
            commit_log_offset=commit_offset,
            state=state,
            msg_id=msg.properties.get(_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
            or fields.get("msgId", ""),
            transaction_id=transaction_id,
            from_transaction_check=True,
            remark=remark,
            broker_name=fields.get("bname"),
        )
        yield from send_oneway(addr, command)
        if self._watched:
            yield from self._transaction_ended_flow(
                msg, command.ext_fields["msgId"], transaction_id, state, addr, from_check=True
            )
        return None

    # ----------------------------------------------------------- request-reply

    def prepare_request(self, msg: Message, timeout: float) -> Flow[str]:
        """Mark ``msg`` as a request: correlation id, reply-to client, TTL, cluster.

        Returns the correlation id the reply will carry.
        """
        correlation_id = str(uuid.uuid4())
        topic = ns.wrap(self.client.config.namespace, msg.topic)
        route = yield from self.client.route_flow(topic)
        props = msg.properties
        props[_C.PROPERTY_CORRELATION_ID] = correlation_id
        props[_C.PROPERTY_MESSAGE_REPLY_TO_CLIENT] = self.client.client_id
        props[_C.PROPERTY_MESSAGE_TTL] = str(int(timeout * 1000))
        if route.broker_datas:
            props[_C.PROPERTY_CLUSTER] = route.broker_datas[0].cluster
        # The broker pushes the reply to the channel that heartbeats as this client.
        yield from self.client.heartbeat_flow()
        return correlation_id


@dataclass(slots=True)
class ReplyWaiters:
    """Requests waiting for their replies, by correlation id (request-reply).

    The driver registers a token (its future) per request and gives a ``deliver``
    callable; replies the broker pushes (PUSH_REPLY_MESSAGE_TO_CLIENT) are matched
    here and handed to ``deliver(token, message)``.
    """

    deliver: Callable[[Any, MessageExt], None]
    waiting: dict[str, Any] = field(default_factory=dict)

    def expect(self, correlation_id: str, token: Any) -> None:
        self.waiting[correlation_id] = token

    def forget(self, correlation_id: str) -> None:
        self.waiting.pop(correlation_id, None)

    def register(self, client: ClientCore) -> None:
        client.handlers[RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT] = self.push_reply_flow

    def push_reply_flow(self, addr: str, request: RemotingCommand) -> Flow[Reply | None]:
        try:
            msg = parse_push_reply(request)
        except RocketMQError as exc:
            log.warning(
                "undecodable reply pushed by %s: %s", addr, exc, extra=log_fields(addr=addr)
            )
            return Reply(ResponseCode.SYSTEM_ERROR, remark=str(exc))
        correlation_id = msg.properties.get(_C.PROPERTY_CORRELATION_ID, "")
        token = self.waiting.pop(correlation_id, None)
        if token is None:
            log.info(
                "reply %s arrived after its request gave up",
                correlation_id,
                extra=log_fields(correlation_id=correlation_id),
            )
        else:
            self.deliver(token, msg)
        return Reply(ResponseCode.SUCCESS)
        yield  # a generator, so that every handler is a flow


def make_reply_message(request: MessageExt, body: bytes) -> Message:
    """The reply to a request message (send it with a producer's ``send``)."""
    cluster = request.properties.get(_C.PROPERTY_CLUSTER)
    correlation_id = request.properties.get(_C.PROPERTY_CORRELATION_ID)
    reply_to = request.properties.get(_C.PROPERTY_MESSAGE_REPLY_TO_CLIENT)
    if not cluster or not correlation_id or not reply_to:
        raise InvalidMessageError(
            "message is not a request (it lacks CLUSTER, CORRELATION_ID or REPLY_TO_CLIENT)"
        )
    reply = Message(f"{cluster}_REPLY_TOPIC", body)
    props = reply.properties
    props[_C.PROPERTY_MESSAGE_TYPE] = _REPLY_MESSAGE_TYPE
    props[_C.PROPERTY_CORRELATION_ID] = correlation_id
    props[_C.PROPERTY_MESSAGE_REPLY_TO_CLIENT] = reply_to
    ttl = request.properties.get(_C.PROPERTY_MESSAGE_TTL)
    if ttl:
        props[_C.PROPERTY_MESSAGE_TTL] = ttl
    return reply


def parse_push_reply(request: RemotingCommand) -> MessageExt:
    """The reply message a broker pushes with PUSH_REPLY_MESSAGE_TO_CLIENT (326)."""
    fields = request.ext_fields
    try:
        props = decode_properties(fields.get("properties", "").encode())
        sys_flag = int(fields.get("sysFlag", "0"))
        body = request.body
        if sys_flag & _SYSFLAG_COMPRESSED:
            body = decompress_body(body, sys_flag)
        msg = MessageExt(
            fields.get("topic", ""),
            body,
            flag=int(fields.get("flag", "0")),
            properties=props,
            queue_id=int(fields.get("queueId", "0")),
            sys_flag=sys_flag,
            born_timestamp=int(fields.get("bornTimestamp", "0")),
            store_timestamp=int(fields.get("storeTimestamp", "0")),
            reconsume_times=int(fields.get("reconsumeTimes", "0")),
            born_host=fields.get("bornHost") or "0.0.0.0:0",
            store_host=fields.get("storeHost") or "0.0.0.0:0",
        )
    except (ValueError, TypeError, RocketMQError) as exc:
        raise RemoteProtocolError(f"malformed PUSH_REPLY_MESSAGE_TO_CLIENT: {exc}") from None
    return msg


def to_transaction_state(outcome: Any) -> TransactionState:
    """A local transaction's or checker's answer as a :class:`TransactionState`."""
    if isinstance(outcome, TransactionState):
        return outcome
    if outcome is True:
        return TransactionState.COMMIT
    if outcome is False:
        return TransactionState.ROLLBACK
    if outcome is None:
        return TransactionState.UNKNOWN
    if isinstance(outcome, str):
        try:
            return TransactionState[
                outcome.upper()
                .replace("COMMIT_MESSAGE", "COMMIT")
                .replace("ROLLBACK_MESSAGE", "ROLLBACK")
            ]
        except KeyError:
            pass
    raise InvalidMessageError(
        f"a transaction callable must return a TransactionState (or True/False/None), "
        f"got {outcome!r}"
    )
