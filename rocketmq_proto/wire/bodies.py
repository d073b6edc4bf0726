"""JSON bodies of requests and responses: heartbeats, locks, offsets, running info.

Servers read and write these with fastjson, so the keys here are Java's field
names (fastjson writes them sorted by name, and so do we). Where Java keys a map
by ``MessageQueue`` objects, fastjson writes the queue object itself as the key
(``{{"brokerName":"b","queueId":0,"topic":"t"}:5}``); we read that form, and
write it where a Java reader expects it (consumer running info, consumer status).

Encoders take our dataclasses and return bytes; parsers take a body and return
dataclasses, raising :class:`~rocketmq_proto.RemoteProtocolError` for anything a
server could not have meant.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rocketmq_proto.wire import jsonlenient as jl
from rocketmq_proto.wire.errors import InvalidArgumentError, RemoteProtocolError
from rocketmq_proto.wire.hashing import java_string_hash
from rocketmq_proto.wire.route import MessageQueue, java_order_key

# --------------------------------------------------------------- vocabulary


class ConsumeType(enum.StrEnum):
    """``consumeType`` of a heartbeat's consumer: pull (actively) or push (passively)."""

    CONSUME_ACTIVELY = "CONSUME_ACTIVELY"
    CONSUME_PASSIVELY = "CONSUME_PASSIVELY"
    CONSUME_POP = "CONSUME_POP"  # RocketMQ 5 only


class MessageModel(enum.StrEnum):
    CLUSTERING = "CLUSTERING"
    BROADCASTING = "BROADCASTING"


class ConsumeFromWhere(enum.StrEnum):
    """Where a consumer group starts when the broker has no offset for a queue."""

    CONSUME_FROM_LAST_OFFSET = "CONSUME_FROM_LAST_OFFSET"
    CONSUME_FROM_FIRST_OFFSET = "CONSUME_FROM_FIRST_OFFSET"
    CONSUME_FROM_TIMESTAMP = "CONSUME_FROM_TIMESTAMP"
    # Deprecated in Java, still accepted by brokers:
    CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST = (
        "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST"
    )
    CONSUME_FROM_MIN_OFFSET = "CONSUME_FROM_MIN_OFFSET"
    CONSUME_FROM_MAX_OFFSET = "CONSUME_FROM_MAX_OFFSET"


class ExpressionType(enum.StrEnum):
    TAG = "TAG"
    SQL92 = "SQL92"


#: A tag expression that selects every message.
SUB_ALL: Final = "*"


def _check_choice(value: str, choices: type[enum.StrEnum], what: str) -> None:
    if value not in choices.__members__:
        names = ", ".join(choices.__members__)
        raise InvalidArgumentError(f"{what} must be one of {names}; got {value!r}")


# ------------------------------------------------------------- subscriptions


def _java_trim(text: str) -> str:
    # Java's String.trim() strips every char <= U+0020, and nothing else.
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


@dataclass(frozen=True, slots=True)
class SubscriptionData:
    """One topic a consumer subscribes to, with its filter (Java ``SubscriptionData``).

    For tag filters, ``tags_set`` holds the tags and ``code_set`` their Java
    ``String.hashCode`` values (the broker filters on the codes, the client
    re-checks the tags); both are empty for ``*`` and for SQL92.
    """

    topic: str
    sub_string: str
    tags_set: frozenset[str] = frozenset()
    code_set: frozenset[int] = frozenset()
    sub_version: int = 0
    expression_type: str = ExpressionType.TAG
    class_filter_mode: bool = False

    def matches_tag(self, tag: str | None) -> bool:
        """The client-side check Java makes after a pull: with tags subscribed, a
        message passes only if its tag is one of them."""
        if not self.tags_set or self.class_filter_mode:
            return True
        return tag is not None and tag in self.tags_set

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "classFilterMode": self.class_filter_mode,
            "codeSet": sorted(self.code_set),
            "expressionType": str(self.expression_type),
            "subString": self.sub_string,
            "subVersion": self.sub_version,
            "tagsSet": sorted(self.tags_set, key=java_order_key),
            "topic": self.topic,
        }

    @classmethod
    def from_json_dict(cls, value: Any, what: str = "subscription") -> SubscriptionData:
        obj = jl.as_object(value, what)
        tags = jl.get_list(obj, "tagsSet", what)
        codes = jl.get_list(obj, "codeSet", what)
        return cls(
            topic=jl.get_str(obj, "topic", what),
            sub_string=jl.get_opt_str(obj, "subString", what) or "",
            tags_set=frozenset(jl.as_str(t, f"{what}: tagsSet") for t in tags),
            code_set=frozenset(jl.as_int(c, f"{what}: codeSet") for c in codes),
            sub_version=jl.get_int(obj, "subVersion", what, bits=64),
            expression_type=jl.get_opt_str(obj, "expressionType", what) or ExpressionType.TAG,
            class_filter_mode=jl.get_bool(obj, "classFilterMode", what),
        )


def build_subscription(
    topic: str,
    expression: str | None = SUB_ALL,
    expression_type: str = ExpressionType.TAG,
    sub_version: int = 0,
) -> SubscriptionData:
    """A subscription as Java's ``FilterAPI.build`` makes it.

    Tags: ``*``, empty or None select everything; otherwise ``a || b`` is split on
    ``||``, each tag trimmed (Java's ``trim``), empty ones dropped. SQL92: the
    expression is sent as is and must not be empty. ``sub_version`` is the
    subscription's version, by convention the time (ms) it was made: the broker
    answers a pull whose version is newer than the one it holds with
    SUBSCRIPTION_NOT_LATEST, so heartbeats must carry the same value.
    """
    if not topic:
        raise InvalidArgumentError("subscription topic must not be empty")
    _check_choice(expression_type, ExpressionType, "expression type")
    if expression_type == ExpressionType.SQL92:
        if not expression:
            raise InvalidArgumentError("a SQL92 subscription needs an expression")
        return SubscriptionData(
            topic, expression, sub_version=sub_version, expression_type=ExpressionType.SQL92
        )
    if not expression or expression == SUB_ALL:
        return SubscriptionData(topic, SUB_ALL, sub_version=sub_version)
    tags: dict[str, None] = {}
    for part in expression.split("||"):
        tag = _java_trim(part)
        if tag:
            tags[tag] = None
    return SubscriptionData(
        topic,
        expression,
        tags_set=frozenset(tags),
        code_set=frozenset(java_string_hash(t) for t in tags),
        sub_version=sub_version,
    )


# ------------------------------------------------------------------ heartbeat


@dataclass(frozen=True, slots=True)
class ConsumerData:
    """One consumer group in a heartbeat."""

    group_name: str
    consume_type: str
    message_model: str
    consume_from_where: str
    subscriptions: tuple[SubscriptionData, ...] = ()
    unit_mode: bool = False

    def __post_init__(self) -> None:
        if not self.group_name:
            raise InvalidArgumentError("consumer group name must not be empty")
        _check_choice(self.consume_type, ConsumeType, "consume type")
        _check_choice(self.message_model, MessageModel, "message model")
        _check_choice(self.consume_from_where, ConsumeFromWhere, "consume from where")
        if not isinstance(self.subscriptions, tuple):
            object.__setattr__(self, "subscriptions", tuple(self.subscriptions))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "consumeFromWhere": str(self.consume_from_where),
            "consumeType": str(self.consume_type),
            "groupName": self.group_name,
            "messageModel": str(self.message_model),
            "subscriptionDataSet": [s.to_json_dict() for s in self.subscriptions],
            "unitMode": self.unit_mode,
        }


@dataclass(frozen=True, slots=True)
class HeartbeatData:
    """HEART_BEAT's body: who we are, and our producer and consumer groups.

    ``heartbeat_fingerprint`` and ``without_sub`` are RocketMQ 5's optional
    heartbeat v2 (a non-zero fingerprint lets the broker skip unchanged
    subscriptions); the defaults make every broker treat it as a plain heartbeat.
    """

    client_id: str
    producer_groups: tuple[str, ...] = ()
    consumer_datas: tuple[ConsumerData, ...] = ()
    heartbeat_fingerprint: int = 0
    without_sub: bool = False

    def __post_init__(self) -> None:
        if not self.client_id:
            raise InvalidArgumentError("heartbeat client id must not be empty")
        if not isinstance(self.producer_groups, tuple):
            object.__setattr__(self, "producer_groups", tuple(self.producer_groups))
        if not isinstance(self.consumer_datas, tuple):
            object.__setattr__(self, "consumer_datas", tuple(self.consumer_datas))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "clientID": self.client_id,
            "consumerDataSet": [c.to_json_dict() for c in self.consumer_datas],
            "heartbeatFingerprint": self.heartbeat_fingerprint,
            "producerDataSet": [{"groupName": g} for g in self.producer_groups],
            "withoutSub": self.without_sub,
        }


def encode_heartbeat(data: HeartbeatData) -> bytes:
    """HEART_BEAT's (34) body."""
    return jl.dumps(data.to_json_dict()).encode()


def parse_heartbeat(body: bytes) -> HeartbeatData:
    """Read a heartbeat body (what a broker sees; for tests and tools)."""
    what = "heartbeat"
    obj = jl.as_object(jl.loads(body, what=what), what)
    producers = [
        jl.get_str(jl.as_object(p, f"{what}: producerDataSet"), "groupName", what)
        for p in jl.get_list(obj, "producerDataSet", what)
    ]
    consumers = []
    for index, item in enumerate(jl.get_list(obj, "consumerDataSet", what)):
        cwhat = f"{what}: consumerDataSet[{index}]"
        cobj = jl.as_object(item, cwhat)
        try:
            consumers.append(
                ConsumerData(
                    group_name=jl.get_str(cobj, "groupName", cwhat),
                    consume_type=jl.get_str(cobj, "consumeType", cwhat),
                    message_model=jl.get_str(cobj, "messageModel", cwhat),
                    consume_from_where=jl.get_str(cobj, "consumeFromWhere", cwhat),
                    subscriptions=tuple(
                        SubscriptionData.from_json_dict(s, f"{cwhat}: subscriptionDataSet")
                        for s in jl.get_list(cobj, "subscriptionDataSet", cwhat)
                    ),
                    unit_mode=jl.get_bool(cobj, "unitMode", cwhat),
                )
            )
        except InvalidArgumentError as exc:
            raise RemoteProtocolError(f"{cwhat}: {exc}") from None
    try:
        return HeartbeatData(
            client_id=jl.get_str(obj, "clientID", what),
            producer_groups=tuple(producers),
            consumer_datas=tuple(consumers),
            heartbeat_fingerprint=jl.get_int(obj, "heartbeatFingerprint", what),
            without_sub=jl.get_bool(obj, "withoutSub", what),
        )
    except InvalidArgumentError as exc:
        raise RemoteProtocolError(f"{what}: {exc}") from None


# ---------------------------------------------------------- locks and groups


def _encode_mq_set(
    group: str, client_id: str, mqs: Iterable[MessageQueue], only_this_broker: bool
) -> bytes:
    return jl.dumps(
        {
            "clientId": client_id,
            "consumerGroup": group,
            "mqSet": [mq.to_json_dict() for mq in sorted(set(mqs))],
            "onlyThisBroker": only_this_broker,
        }
    ).encode()


def encode_lock_batch(
    group: str, client_id: str, mqs: Iterable[MessageQueue], only_this_broker: bool = False
) -> bytes:
    """LOCK_BATCH_MQ's (41) body: lock these queues of one broker for this client."""
    return _encode_mq_set(group, client_id, mqs, only_this_broker)


def encode_unlock_batch(
    group: str, client_id: str, mqs: Iterable[MessageQueue], only_this_broker: bool = False
) -> bytes:
    """UNLOCK_BATCH_MQ's (42) body (the same fields as a lock request)."""
    return _encode_mq_set(group, client_id, mqs, only_this_broker)


def parse_lock_batch_response(body: bytes) -> set[MessageQueue]:
    """The queues LOCK_BATCH_MQ's answer says this client now holds (``lockOKMQSet``)."""
    what = "lock batch response"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return {
        MessageQueue.from_json_dict(mq, f"{what}: lockOKMQSet[{i}]")
        for i, mq in enumerate(jl.get_list(obj, "lockOKMQSet", what))
    }


def parse_consumer_id_list(body: bytes) -> list[str]:
    """GET_CONSUMER_LIST_BY_GROUP's (38) answer: the client ids of a group's consumers."""
    what = "consumer id list"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return [
        jl.as_str(c, f"{what}: consumerIdList") for c in jl.get_list(obj, "consumerIdList", what)
    ]


# --------------------------------------------------------- queue-keyed maps


def _mq_key(key: Any, what: str) -> MessageQueue:
    if isinstance(key, str) and key.startswith("{"):
        # A writer with fastjson's WriteNonStringKeyAsString quotes the object key.
        key = jl.loads(key, what=what)
    return MessageQueue.from_json_dict(key, what)


def _mq_keyed(value: Any, what: str) -> list[tuple[MessageQueue, Any]]:
    """A Java ``Map<MessageQueue, V>`` in any form a server writes it.

    fastjson: an object whose keys are queue objects. Gson (some server builds):
    an array of ``[queue, value]`` pairs. ``ResetOffsetBodyForC`` (a broker asked
    by a C++ admin client): an array of queue objects carrying an ``offset``.
    """
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(_mq_key(k, f"{what} key"), v) for k, v in value.items()]
    pairs: list[tuple[MessageQueue, Any]] = []
    for index, item in enumerate(jl.as_list(value, what)):
        item_what = f"{what}[{index}]"
        if isinstance(item, list):
            if len(item) != 2:
                raise RemoteProtocolError(f"{item_what} must be a [queue, value] pair")
            pairs.append((MessageQueue.from_json_dict(item[0], item_what), item[1]))
        else:
            obj = jl.as_object(item, item_what)
            pairs.append((MessageQueue.from_json_dict(obj, item_what), obj.get("offset")))
    return pairs


def _mq_table(pairs: Iterable[tuple[MessageQueue, Any]]) -> dict[MessageQueue, Any]:
    # fastjson writes a queue key as an object; written sorted, as Java's TreeMaps are.
    return dict(sorted(pairs, key=lambda kv: kv[0]))


def parse_reset_offset_body(body: bytes) -> dict[MessageQueue, int]:
    """RESET_CONSUMER_CLIENT_OFFSET's (220) body: the offset to restart each queue at."""
    what = "reset offset body"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return {
        mq: jl.as_int(offset, f"{what}: offset of {mq}", bits=64)
        for mq, offset in _mq_keyed(obj.get("offsetTable"), f"{what}: offsetTable")
    }


def encode_reset_offset_body(offsets: Mapping[MessageQueue, int]) -> bytes:
    """A reset-offset body as a Java broker writes it (queue objects as keys)."""
    return jl.dumps({"offsetTable": _mq_table(offsets.items())}).encode()


def encode_consumer_status(offsets: Mapping[MessageQueue, int]) -> bytes:
    """The answer's body to GET_CONSUMER_STATUS_FROM_CLIENT (221): each queue's
    consume offset (Java's ``GetConsumerStatusBody.messageQueueTable``)."""
    return jl.dumps({"messageQueueTable": _mq_table(offsets.items())}).encode()


# ------------------------------------------------------ consumer running info

PROP_NAMESERVER_ADDR: Final = "PROP_NAMESERVER_ADDR"
PROP_THREADPOOL_CORE_SIZE: Final = "PROP_THREADPOOL_CORE_SIZE"
PROP_CONSUME_ORDERLY: Final = "PROP_CONSUMEORDERLY"
PROP_CONSUME_TYPE: Final = "PROP_CONSUME_TYPE"
PROP_CLIENT_VERSION: Final = "PROP_CLIENT_VERSION"
PROP_CONSUMER_START_TIMESTAMP: Final = "PROP_CONSUMER_START_TIMESTAMP"


@dataclass(frozen=True, slots=True)
class ProcessQueueInfo:
    """One assigned queue's state in consumer running info (Java ``ProcessQueueInfo``)."""

    commit_offset: int = 0
    cached_msg_min_offset: int = 0
    cached_msg_max_offset: int = 0
    cached_msg_count: int = 0
    cached_msg_size_in_mib: int = 0
    transaction_msg_min_offset: int = 0
    transaction_msg_max_offset: int = 0
    transaction_msg_count: int = 0
    locked: bool = False
    try_unlock_times: int = 0
    last_lock_timestamp: int = 0
    dropped: bool = False
    last_pull_timestamp: int = 0
    last_consume_timestamp: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "cachedMsgCount": self.cached_msg_count,
            "cachedMsgMaxOffset": self.cached_msg_max_offset,
            "cachedMsgMinOffset": self.cached_msg_min_offset,
            "cachedMsgSizeInMiB": self.cached_msg_size_in_mib,
            "commitOffset": self.commit_offset,
            "droped": self.dropped,  # sic: Java's field name
            "lastConsumeTimestamp": self.last_consume_timestamp,
            "lastLockTimestamp": self.last_lock_timestamp,
            "lastPullTimestamp": self.last_pull_timestamp,
            "locked": self.locked,
            "transactionMsgCount": self.transaction_msg_count,
            "transactionMsgMaxOffset": self.transaction_msg_max_offset,
            "transactionMsgMinOffset": self.transaction_msg_min_offset,
            "tryUnlockTimes": self.try_unlock_times,
        }


@dataclass(frozen=True, slots=True)
class ConsumeStatus:
    """One topic's consume rates in consumer running info (Java ``ConsumeStatus``)."""

    pull_rt: float = 0.0
    pull_tps: float = 0.0
    consume_rt: float = 0.0
    consume_ok_tps: float = 0.0
    consume_failed_tps: float = 0.0
    consume_failed_msgs: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "consumeFailedMsgs": self.consume_failed_msgs,
            "consumeFailedTPS": self.consume_failed_tps,
            "consumeOKTPS": self.consume_ok_tps,
            "consumeRT": self.consume_rt,
            "pullRT": self.pull_rt,
            "pullTPS": self.pull_tps,
        }


def running_info_properties(
    *,
    consume_type: str,
    consume_orderly: bool,
    consumer_start_timestamp: int,
    namesrv_addrs: Iterable[str],
    client_version: str,
    thread_pool_core_size: int = -1,
) -> dict[str, str]:
    """The properties Java's admin tools read from running info.

    ``mqadmin consumerStatus`` parses PROP_CONSUMER_START_TIMESTAMP as a long
    and PROP_CONSUME_TYPE as a ``ConsumeType`` name, so both must be present.
    ``client_version`` is Java's version name (e.g. ``V5_3_3``).
    """
    _check_choice(consume_type, ConsumeType, "consume type")
    return {
        PROP_CLIENT_VERSION: client_version,
        PROP_CONSUME_ORDERLY: "true" if consume_orderly else "false",
        PROP_CONSUME_TYPE: str(consume_type),
        PROP_CONSUMER_START_TIMESTAMP: str(consumer_start_timestamp),
        PROP_NAMESERVER_ADDR: "".join(f"{addr};" for addr in namesrv_addrs),
        PROP_THREADPOOL_CORE_SIZE: str(thread_pool_core_size),
    }


def encode_consumer_running_info(
    properties: Mapping[str, str],
    subscriptions: Iterable[SubscriptionData],
    mq_table: Mapping[MessageQueue, ProcessQueueInfo] | None = None,
    status_table: Mapping[str, ConsumeStatus] | None = None,
    jstack: str | None = None,
) -> bytes:
    """The answer's body to GET_CONSUMER_RUNNING_INFO (307), as Java writes it.

    ``mqTable`` is keyed by queue objects (not standard JSON: Java's admin tools
    read it with fastjson). Subscriptions are written in Java's ``TreeSet``
    order (by ``topic@subString``), tables in key order.
    """
    subs = sorted(subscriptions, key=lambda s: java_order_key(f"{s.topic}@{s.sub_string}"))
    doc: dict[str, Any] = {}
    if jstack is not None:
        doc["jstack"] = jstack
    doc["mqTable"] = _mq_table((mq_table or {}).items())
    doc["properties"] = dict(sorted(properties.items()))
    doc["statusTable"] = dict(
        sorted((status_table or {}).items(), key=lambda kv: java_order_key(kv[0]))
    )
    doc["subscriptionSet"] = [s.to_json_dict() for s in subs]
    return jl.dumps(doc).encode()


@dataclass(frozen=True, slots=True)
class ConsumerRunningInfo:
    """GET_CONSUMER_RUNNING_INFO's (307) answer: one consumer client's own account
    of itself, relayed by a broker (Java ``ConsumerRunningInfo``)."""

    #: Its settings and start time (Java's property names).
    properties: dict[str, str]
    #: Topic -> subscription expression.
    subscriptions: dict[str, str]
    #: Each queue it holds, with its process queue's state.
    queues: dict[MessageQueue, ProcessQueueInfo]
    jstack: str | None = None


def _process_queue_info(item: Mapping[Any, Any], what: str) -> ProcessQueueInfo:
    def number(key: str) -> int:
        return jl.get_int(item, key, what, bits=64)

    return ProcessQueueInfo(
        commit_offset=number("commitOffset"),
        cached_msg_min_offset=number("cachedMsgMinOffset"),
        cached_msg_max_offset=number("cachedMsgMaxOffset"),
        cached_msg_count=number("cachedMsgCount"),
        cached_msg_size_in_mib=number("cachedMsgSizeInMiB"),
        transaction_msg_min_offset=number("transactionMsgMinOffset"),
        transaction_msg_max_offset=number("transactionMsgMaxOffset"),
        transaction_msg_count=number("transactionMsgCount"),
        locked=jl.get_bool(item, "locked", what),
        try_unlock_times=number("tryUnlockTimes"),
        last_lock_timestamp=number("lastLockTimestamp"),
        dropped=jl.get_bool(item, "droped", what),  # sic: Java's field name
        last_pull_timestamp=number("lastPullTimestamp"),
        last_consume_timestamp=number("lastConsumeTimestamp"),
    )


def parse_consumer_running_info(body: bytes) -> ConsumerRunningInfo:
    """GET_CONSUMER_RUNNING_INFO's answer body (queue objects as map keys)."""
    what = "consumer running info"
    obj = jl.as_object(jl.loads(body, what=what), what)
    properties = {
        jl.as_str(k, f"{what}: properties"): str(v)
        for k, v in jl.as_object(obj.get("properties") or {}, f"{what}: properties").items()
    }
    subscriptions = {}
    for i, sub in enumerate(jl.get_list(obj, "subscriptionSet", what)):
        swhat = f"{what}: subscriptionSet[{i}]"
        item = jl.as_object(sub, swhat)
        subscriptions[jl.get_str(item, "topic", swhat)] = (
            jl.get_opt_str(item, "subString", swhat) or "*"
        )
    queues = {
        mq: _process_queue_info(jl.as_object(value, f"{what}: mqTable[{mq}]"), f"{what}: mqTable")
        for mq, value in _mq_keyed(obj.get("mqTable"), f"{what}: mqTable")
    }
    return ConsumerRunningInfo(
        properties, subscriptions, _mq_table(queues.items()), jl.get_opt_str(obj, "jstack", what)
    )


# ------------------------------------------------------------- admin bodies


@dataclass(frozen=True, slots=True)
class SubscriptionGroupConfig:
    """A consumer group's settings on a broker (Java ``SubscriptionGroupConfig``).

    The defaults are Java's. ``attributes`` (RocketMQ 5) are written as Java's
    admin tools send them: a key ``+name`` adds or changes an attribute, ``-name``
    removes one (only ``+`` when the group is created).
    """

    group_name: str
    consume_enable: bool = True
    consume_from_min_enable: bool = True
    consume_broadcast_enable: bool = True
    consume_message_orderly: bool = False
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    broker_id: int = 0
    which_broker_when_consume_slowly: int = 1
    notify_consumer_ids_changed_enable: bool = True
    group_sys_flag: int = 0
    consume_timeout_minute: int = 15
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.group_name:
            raise InvalidArgumentError("subscription group name must not be empty")
        if self.retry_queue_nums < 0 or self.retry_max_times < -1:
            raise InvalidArgumentError(
                "retry_queue_nums must be >= 0 and retry_max_times >= -1, got "
                f"{self.retry_queue_nums} and {self.retry_max_times}"
            )

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "brokerId": self.broker_id,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "consumeEnable": self.consume_enable,
            "consumeFromMinEnable": self.consume_from_min_enable,
            "consumeMessageOrderly": self.consume_message_orderly,
            "consumeTimeoutMinute": self.consume_timeout_minute,
            "groupName": self.group_name,
            "groupSysFlag": self.group_sys_flag,
            "notifyConsumerIdsChangedEnable": self.notify_consumer_ids_changed_enable,
            "retryMaxTimes": self.retry_max_times,
            "retryQueueNums": self.retry_queue_nums,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
        }
        if self.attributes:
            out["attributes"] = dict(sorted(self.attributes.items()))
        return out

    @classmethod
    def from_json_dict(cls, value: Any, what: str) -> SubscriptionGroupConfig:
        """A group config as a broker writes it; a field it leaves out keeps Java's default."""
        obj = jl.as_object(value, what)
        default = cls("_")

        def flag(key: str, attr: str) -> bool:
            return jl.get_bool(obj, key, what, default=getattr(default, attr))

        def number(key: str, attr: str) -> int:
            return jl.get_int(obj, key, what, default=getattr(default, attr), bits=64)

        attributes = {
            jl.as_str(k, f"{what}: attributes"): str(v)
            for k, v in jl.get_object(obj, "attributes", what).items()
        }
        return cls(
            group_name=jl.get_str(obj, "groupName", what),
            consume_enable=flag("consumeEnable", "consume_enable"),
            consume_from_min_enable=flag("consumeFromMinEnable", "consume_from_min_enable"),
            consume_broadcast_enable=flag("consumeBroadcastEnable", "consume_broadcast_enable"),
            consume_message_orderly=flag("consumeMessageOrderly", "consume_message_orderly"),
            retry_queue_nums=number("retryQueueNums", "retry_queue_nums"),
            retry_max_times=number("retryMaxTimes", "retry_max_times"),
            broker_id=number("brokerId", "broker_id"),
            which_broker_when_consume_slowly=number(
                "whichBrokerWhenConsumeSlowly", "which_broker_when_consume_slowly"
            ),
            notify_consumer_ids_changed_enable=flag(
                "notifyConsumerIdsChangedEnable", "notify_consumer_ids_changed_enable"
            ),
            group_sys_flag=number("groupSysFlag", "group_sys_flag"),
            consume_timeout_minute=number("consumeTimeoutMinute", "consume_timeout_minute"),
            attributes=attributes,
        )


def parse_subscription_groups(body: bytes) -> dict[str, SubscriptionGroupConfig]:
    """GET_ALL_SUBSCRIPTIONGROUP_CONFIG's (201) answer (a ``SubscriptionGroupWrapper``):
    each consumer group config of one broker, by name."""
    what = "subscription group table"
    obj = jl.as_object(jl.loads(body, what=what), what)
    out = {}
    for name, value in jl.get_object(obj, "subscriptionGroupTable", what).items():
        key = jl.as_str(name, f"{what} key")
        out[key] = SubscriptionGroupConfig.from_json_dict(value, f"{what}[{key}]")
    return dict(sorted(out.items()))


def encode_subscription_group_config(group: str, **settings: Any) -> bytes:
    """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP's (200) body for consumer group ``group``.

    ``settings`` are :class:`SubscriptionGroupConfig` fields (``retry_max_times=3``,
    ``consume_message_orderly=True``...); fields left out take Java's defaults.
    """
    try:
        config = SubscriptionGroupConfig(group, **settings)
    except TypeError as exc:
        raise InvalidArgumentError(f"subscription group config: {exc}") from None
    return jl.dumps(config.to_json_dict()).encode()


@dataclass(frozen=True, slots=True)
class OffsetWrapper:
    """One queue's offsets in consume stats (Java ``OffsetWrapper``)."""

    broker_offset: int
    consumer_offset: int
    pull_offset: int
    last_timestamp: int

    @property
    def lag(self) -> int:
        """Messages not yet consumed (broker offset minus consumer offset)."""
        return max(self.broker_offset - self.consumer_offset, 0)


@dataclass(frozen=True, slots=True)
class ConsumeStats:
    """GET_CONSUME_STATS's (208) answer: a group's progress on each queue of a broker."""

    offset_table: dict[MessageQueue, OffsetWrapper]
    consume_tps: float = 0.0

    @property
    def total_lag(self) -> int:
        return sum(w.lag for w in self.offset_table.values())


def parse_consume_stats(body: bytes) -> ConsumeStats:
    """GET_CONSUME_STATS's answer body (queue objects as map keys)."""
    what = "consume stats"
    obj = jl.as_object(jl.loads(body, what=what), what)
    table: dict[MessageQueue, OffsetWrapper] = {}
    for mq, value in _mq_keyed(obj.get("offsetTable"), f"{what}: offsetTable"):
        vwhat = f"{what}: offsetTable[{mq}]"
        item = jl.as_object(value, vwhat)
        table[mq] = OffsetWrapper(
            broker_offset=jl.get_int(item, "brokerOffset", vwhat, bits=64),
            consumer_offset=jl.get_int(item, "consumerOffset", vwhat, bits=64),
            pull_offset=jl.get_int(item, "pullOffset", vwhat, bits=64),
            last_timestamp=jl.get_int(item, "lastTimestamp", vwhat, bits=64),
        )
    return ConsumeStats(_mq_table(table.items()), jl.get_float(obj, "consumeTps", what))


@dataclass(frozen=True, slots=True)
class ClientConnection:
    """One client of a group, as a broker knows it (Java ``Connection``)."""

    client_id: str
    client_addr: str
    #: Its language code: ``JAVA``, ``GO``, ``PYTHON``...
    language: str
    #: Its version code (Java's ``MQVersion`` ordinal).
    version: int


@dataclass(frozen=True, slots=True)
class ConsumerConnection:
    """GET_CONSUMER_CONNECTION_LIST's (203) answer: a group's clients and what
    they subscribe, as one broker knows them (Java ``ConsumerConnection``)."""

    connections: tuple[ClientConnection, ...]
    #: Topic -> its subscription expression (tags or SQL92), as the clients gave them.
    subscriptions: dict[str, str]
    consume_type: str | None
    message_model: str | None
    consume_from_where: str | None


def parse_consumer_connection(body: bytes) -> ConsumerConnection:
    """GET_CONSUMER_CONNECTION_LIST's answer body."""
    what = "consumer connection"
    obj = jl.as_object(jl.loads(body, what=what), what)
    connections = []
    for i, item in enumerate(jl.get_list(obj, "connectionSet", what)):
        cwhat = f"{what}: connectionSet[{i}]"
        conn = jl.as_object(item, cwhat)
        connections.append(
            ClientConnection(
                client_id=jl.get_str(conn, "clientId", cwhat),
                client_addr=jl.get_opt_str(conn, "clientAddr", cwhat) or "",
                language=jl.get_opt_str(conn, "language", cwhat) or "",
                version=jl.get_int(conn, "version", cwhat) if "version" in conn else 0,
            )
        )
    subscriptions = {}
    table = obj.get("subscriptionTable")
    if table is not None:
        for topic, sub in jl.as_object(table, f"{what}: subscriptionTable").items():
            swhat = f"{what}: subscriptionTable[{topic}]"
            subscriptions[jl.as_str(topic, swhat)] = (
                jl.get_opt_str(jl.as_object(sub, swhat), "subString", swhat) or "*"
            )
    return ConsumerConnection(
        tuple(sorted(connections, key=lambda c: c.client_id)),
        subscriptions,
        jl.get_opt_str(obj, "consumeType", what),
        jl.get_opt_str(obj, "messageModel", what),
        jl.get_opt_str(obj, "consumeFromWhere", what),
    )


@dataclass(frozen=True, slots=True)
class TopicOffset:
    """One queue's bounds in topic stats (Java ``TopicOffset``)."""

    min_offset: int
    max_offset: int
    last_update_timestamp: int


@dataclass(frozen=True, slots=True)
class TopicStatsTable:
    """GET_TOPIC_STATS_INFO's (202) answer: each queue's offsets on one broker."""

    offset_table: dict[MessageQueue, TopicOffset]
    topic_put_tps: float = 0.0


def parse_topic_stats(body: bytes) -> TopicStatsTable:
    """GET_TOPIC_STATS_INFO's answer body (queue objects as map keys)."""
    what = "topic stats"
    obj = jl.as_object(jl.loads(body, what=what), what)
    table: dict[MessageQueue, TopicOffset] = {}
    for mq, value in _mq_keyed(obj.get("offsetTable"), f"{what}: offsetTable"):
        vwhat = f"{what}: offsetTable[{mq}]"
        item = jl.as_object(value, vwhat)
        table[mq] = TopicOffset(
            min_offset=jl.get_int(item, "minOffset", vwhat, bits=64),
            max_offset=jl.get_int(item, "maxOffset", vwhat, bits=64),
            last_update_timestamp=jl.get_int(item, "lastUpdateTimestamp", vwhat, bits=64),
        )
    return TopicStatsTable(_mq_table(table.items()), jl.get_float(obj, "topicPutTps", what))


# ------------------------------------------------------- more admin answers


def parse_topic_list(body: bytes) -> list[str]:
    """GET_ALL_TOPIC_LIST_FROM_NAMESERVER's (206) answer (a ``TopicList``): the topic names."""
    what = "topic list"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return [jl.as_str(t, f"{what}: topicList") for t in jl.get_list(obj, "topicList", what)]


def parse_kv_table(body: bytes) -> dict[str, str]:
    """A ``KVTable`` body (GET_BROKER_RUNTIME_INFO's (28) answer): its ``table``,
    every value as the text the broker wrote."""
    what = "KV table"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return {
        jl.as_str(k, f"{what} key"): v if isinstance(v, str) else jl.dumps(v)
        for k, v in sorted(jl.get_object(obj, "table", what).items())
    }


@dataclass(frozen=True, slots=True)
class ConsumeMessageDirectlyResult:
    """What a consumer answered when a message was handed to it directly
    (CONSUME_MESSAGE_DIRECTLY, Java ``ConsumeMessageDirectlyResult``)."""

    #: Java's ``CMResult`` name: ``CR_SUCCESS``, ``CR_LATER``, ``CR_ROLLBACK``,
    #: ``CR_COMMIT``, ``CR_THROW_EXCEPTION`` or ``CR_RETURN_NULL``.
    consume_result: str
    order: bool = False
    auto_commit: bool = True
    remark: str = ""
    spent_time_millis: int = 0

    @property
    def succeeded(self) -> bool:
        return self.consume_result in ("CR_SUCCESS", "CR_COMMIT")


def parse_consume_message_directly_result(body: bytes) -> ConsumeMessageDirectlyResult:
    """CONSUME_MESSAGE_DIRECTLY's (309) answer body."""
    what = "consume message directly result"
    obj = jl.as_object(jl.loads(body, what=what), what)
    return ConsumeMessageDirectlyResult(
        consume_result=jl.get_opt_str(obj, "consumeResult", what) or "",
        order=jl.get_bool(obj, "order", what),
        auto_commit=jl.get_bool(obj, "autoCommit", what, default=True),
        remark=jl.get_opt_str(obj, "remark", what) or "",
        spent_time_millis=jl.get_int(obj, "spentTimeMills", what, bits=64),  # sic: Java's name
    )


# ------------------------------------------------------ java.util.Properties

_PROPERTY_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> Iterable[str]:
    """Lines as ``Properties.load`` reads them: a line ending in an odd number of
    backslashes goes on with the next one (its leading blanks dropped)."""
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f") if pending is not None else raw
        if pending is None and line.lstrip(" \t\f")[:1] in ("#", "!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending = (pending or "") + line[:-1]
            continue
        yield (pending or "") + line
        pending = None
    if pending is not None:
        yield pending


def _unescape_property(text: str, what: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                raise RemoteProtocolError(f"{what}: bad \\u escape {text[i : i + 6]!r}") from None
            i += 6
            continue
        out.append(_PROPERTY_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def parse_properties_text(body: bytes, *, what: str = "properties") -> dict[str, str]:
    """A ``java.util.Properties`` text (GET_BROKER_CONFIG's (26) answer): ``key=value``
    (or ``key: value``, ``key value``) per line, ``#`` and ``!`` comments,
    backslash escapes and continued lines, as ``Properties.load`` reads it."""
    out: dict[str, str] = {}
    for line in _logical_lines(body.decode("utf-8", "replace")):
        line = line.lstrip(" \t\f")
        if not line:
            continue
        end = 0
        while end < len(line):
            if line[end] == "\\":
                end += 2
                continue
            if line[end] in "=: \t\f":
                break
            end += 1
        key, rest = line[:end], line[end:].lstrip(" \t\f")
        if rest[:1] in ("=", ":"):
            rest = rest[1:].lstrip(" \t\f")
        out[_unescape_property(key, what)] = _unescape_property(rest, what)
    return out


def encode_properties_text(settings: Mapping[str, object]) -> bytes:
    """``key=value`` lines as Java's admin writes a broker's new settings
    (UPDATE_BROKER_CONFIG's (25) body); a key must be a non-empty name without
    blanks, ``=`` or ``:``, and no key or value may span lines."""
    lines = []
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not key or any(c in key for c in "=: \t\f\r\n\\") or "\n" in text or "\r" in text:
            raise InvalidArgumentError(f"broker setting {key!r}={text!r} cannot be sent")
        lines.append(f"{key}={text}\n")
    if not lines:
        raise InvalidArgumentError("no broker setting to update")
    return "".join(lines).encode()
