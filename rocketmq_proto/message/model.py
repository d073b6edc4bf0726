"""The message classes, :class:`Message` (to send) and :class:`MessageExt` (as a broker
stored it), and the checks on what they hold: topic, tags, keys, body, properties."""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from rocketmq_proto.message.ids import _offset_msg_id, _parse_ip
from rocketmq_proto.message.properties import (
    RESERVED_PROPERTY_KEYS,
    MessageConst,
    _check_encodable,
)
from rocketmq_proto.wire.errors import (
    InvalidArgumentError,
    InvalidMessageError,
    InvalidPropertyError,
    InvalidTopicError,
)

__all__ = [
    "Message",
    "MessageExt",
    "validate_tags",
    "validate_topic",
]

_C = MessageConst

# sysFlag bits (the same values as ``codes.MessageSysFlag``, as plain ints for the hot path).
_BORNHOST_V6: Final = 0x10
_STOREHOST_V6: Final = 0x20

_INT32_MIN: Final = -(1 << 31)
_INT32_MAX: Final = (1 << 31) - 1


# ------------------------------------------------------------------ topics

TOPIC_MAX_LENGTH: Final = 127
RETRY_OR_DLQ_TOPIC_MAX_LENGTH: Final = 255
RETRY_GROUP_TOPIC_PREFIX: Final = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX: Final = "%DLQ%"
AUTO_CREATE_TOPIC_KEY_TOPIC: Final = "TBW102"

SYSTEM_TOPIC_PREFIX: Final = "rmq_sys_"

#: Topics a producer may not send to: Java 5.x's ``TopicValidator`` NOT_ALLOWED_SEND_TOPIC_SET
#: (the broker's own schedule, transaction, self-test, offset-moved and sync topics), plus
#: two system topics a message sent to is never consumed by anyone: the auto-create template
#: TBW102 and the RocksDB offset checkpoint topic. Topics starting with ``rmq_sys_`` (the
#: broker's timer wheel, pop revive logs, broker member sync...) are refused too. Allowed on
#: purpose, as in Java: ``BenchmarkTest``, ``RMQ_SYS_TRACE_TOPIC`` (message traces are sent
#: there), ``%RETRY%`` topics (a consumer's fallback for a message the broker would not take
#: back) and ``%DLQ%`` topics (re-driving dead letters), and ``<cluster>_REPLY_TOPIC``.
NOT_ALLOWED_SEND_TOPICS: Final[frozenset[str]] = frozenset(
    {
        AUTO_CREATE_TOPIC_KEY_TOPIC,
        "SCHEDULE_TOPIC_XXXX",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "CHECKPOINT_TOPIC",
        "RMQ_SYS_TOPIC_CONFIG_SYNC",
        "RMQ_SYS_CONSUMER_OFFSET_SYNC",
        "RMQ_SYS_DELAY_OFFSET_SYNC",
        "RMQ_SYS_SUBSCRIPTION_GROUP_SYNC",
        "RMQ_SYS_MESSAGE_MODE_SYNC",
        "RMQ_SYS_TIMER_METRICS_SYNC",
    }
)

_TOPIC_CHARS: Final = frozenset(
    "%|-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def validate_topic(topic: str) -> str:
    """Check that ``topic`` may be sent to, as Java's ``Validators`` do; return it.

    Rules: a non-blank ``str`` of at most 127 characters (255 for ``%RETRY%`` and
    ``%DLQ%`` topics) drawn from ``[%|a-zA-Z0-9_-]``, and not a system topic
    producers may not send to (:data:`NOT_ALLOWED_SEND_TOPICS`: TBW102,
    SCHEDULE_TOPIC_XXXX, the transaction half topics...; any ``rmq_sys_`` topic).
    Raises :class:`InvalidTopicError` naming the topic and the rule.
    """
    if not isinstance(topic, str):
        raise InvalidTopicError(f"topic must be a str, got {type(topic).__name__}")
    if not topic or topic.isspace():
        raise InvalidTopicError(f"topic {topic!r} is blank")
    limit = (
        RETRY_OR_DLQ_TOPIC_MAX_LENGTH
        if topic.startswith((RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX))
        else TOPIC_MAX_LENGTH
    )
    if len(topic) > limit:
        raise InvalidTopicError(
            f"topic {topic[:40]!r}... is {len(topic)} characters long, "
            f"more than the {limit} allowed"
        )
    if not _TOPIC_CHARS.issuperset(topic):
        bad = next(ch for ch in topic if ch not in _TOPIC_CHARS)
        raise InvalidTopicError(
            f"topic {topic!r} contains {bad!r}: only [%|a-zA-Z0-9_-] is allowed"
        )
    if topic in NOT_ALLOWED_SEND_TOPICS or topic.startswith(SYSTEM_TOPIC_PREFIX):
        raise InvalidTopicError(
            f"topic {topic!r} is a reserved system topic: sending to it is forbidden"
        )
    return topic


# ------------------------------------------------------------------ hosts


def _format_host(ip: int | bytes, port: int) -> str:
    if isinstance(ip, int):
        return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}:{port}"
    return f"[{ipaddress.IPv6Address(ip).compressed}]:{port}"


def _parse_host(value: str, what: str) -> tuple[int | bytes, int]:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be an 'ip:port' str, got {type(value).__name__}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise InvalidArgumentError(f"{what} {value!r} is not 'ip:port' (or '[ipv6]:port')")
    # Java's InetSocketAddress.toString() writes "hostname/ip:port" or "/ip:port".
    return _parse_ip(host.rpartition("/")[2]), int(port_text)


# ------------------------------------------------------------------ message classes


def number_property(properties: Mapping[str, str], name: str) -> int | None:
    """Property ``name`` read as an integer: ``None`` if it is absent or not a number
    (as Java's clients read such properties, leniently)."""
    raw = properties.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class _PropertyView:
    """Read-only accessors shared by outgoing and received messages."""

    __slots__ = ()

    properties: dict[str, str]

    def get_property(self, name: str, default: str | None = None) -> str | None:
        """A property (system or user) by name."""
        return self.properties.get(name, default)

    @property
    def user_properties(self) -> dict[str, str]:
        """The properties that are not RocketMQ's own (a new dict)."""
        return {k: v for k, v in self.properties.items() if k not in RESERVED_PROPERTY_KEYS}

    @property
    def tags(self) -> str | None:
        """The TAGS property (one tag; consumers filter on it)."""
        return self.properties.get(_C.PROPERTY_TAGS)

    @property
    def keys(self) -> list[str]:
        """The KEYS property, split on spaces (the broker indexes each key)."""
        raw = self.properties.get(_C.PROPERTY_KEYS)
        return [k for k in raw.split(" ") if k] if raw else []

    @property
    def delay_level(self) -> int:
        """The DELAY property (0: not delayed; 1 = 1s, 2 = 5s... on a default broker)."""
        return number_property(self.properties, _C.PROPERTY_DELAY_TIME_LEVEL) or 0

    @property
    def deliver_at(self) -> int | None:
        """The TIMER_DELIVER_MS property: epoch ms at which a timer message is delivered."""
        return number_property(self.properties, _C.PROPERTY_TIMER_DELIVER_MS)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


def _as_body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise InvalidMessageError(f"message body must be bytes-like, got {type(body).__name__}")


def _check_int32(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessageError(f"{what} must be an int, got {type(value).__name__}")
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise InvalidMessageError(f"{what} {value} does not fit a signed 32-bit int")
    return value


def _check_value(name: str, value: str) -> None:
    if "\x01" in value or "\x02" in value:
        raise InvalidPropertyError(
            f"{name} {value!r} contains a property separator (\\x01 or \\x02)"
        )


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


#: What separates tags in a subscription expression ("a || b").
TAG_SEPARATOR: Final = "||"


def validate_tags(tags: str) -> str:
    """Check that a message's TAGS can be matched by a tag filter; return them.

    A consumer's expression is split on ``||`` and each tag trimmed (Java's
    ``String.trim``: spaces and control characters), then compared whole with the
    message's TAGS. So TAGS containing ``||``, a control character, or a leading or
    trailing space can never match any expression but ``*``: such a message is
    refused at send with :class:`InvalidMessageError` naming the tag and the reason.
    """
    if TAG_SEPARATOR in tags:
        raise InvalidMessageError(
            f"tag {tags!r} contains '||', the separator of tag expressions: "
            "no subscription could ever select it (a message takes one tag)"
        )
    # isprintable() is the fast path: every control character is unprintable.
    bad = None if tags.isprintable() else next((c for c in tags if _is_control(c)), None)
    if bad is not None:
        raise InvalidMessageError(
            f"tag {tags!r} contains the control character {bad!r}: "
            "no subscription could ever select it"
        )
    if tags[:1] == " " or tags[-1:] == " ":
        raise InvalidMessageError(
            f"tag {tags!r} has a leading or trailing space, which subscriptions trim "
            "off: no subscription could ever select it"
        )
    return tags


class Message(_PropertyView):
    """A message to send.

    As in Java, one ``properties`` dict holds every property, RocketMQ's own and the
    user's; ``tags``, ``keys``, ``delay_level`` and ``deliver_at`` read and write it.
    ``properties=`` and :meth:`put_user_property` take user properties only: reserved
    keys (``RESERVED_PROPERTY_KEYS``), empty or blank keys and values, non-str values and
    the separators ``\\x01``/``\\x02`` are refused with :class:`InvalidPropertyError`.
    """

    __slots__ = ("_body", "_flag", "_topic", "properties")

    def __init__(
        self,
        topic: str,
        body: bytes | bytearray | memoryview = b"",
        *,
        tags: str | None = None,
        keys: str | Iterable[str] | None = None,
        properties: Mapping[str, str] | None = None,
        delay_level: int = 0,
        deliver_at: int | datetime | None = None,
        flag: int = 0,
    ) -> None:
        self._topic = validate_topic(topic)
        self._body = _as_body(body)
        self._flag = _check_int32(flag, "flag")
        self.properties: dict[str, str] = {}
        if properties:
            if not isinstance(properties, Mapping):
                raise InvalidPropertyError(
                    f"properties must be a mapping, got {type(properties).__name__}"
                )
            for k, v in properties.items():
                self.put_user_property(k, v)
        if tags is not None:
            self.tags = tags
        if keys is not None:
            self.keys = keys
        if delay_level:
            self.delay_level = delay_level
        if deliver_at is not None:
            self.deliver_at = deliver_at

    # -- plain fields

    @property
    def msg_id(self) -> str | None:
        """The id the producer gave this message (its ``UNIQ_KEY``): the ``msg_id`` of
        the send's result and of the message its consumers receive. ``None`` until a
        send (or a transaction's half message) is about to go; a local transaction
        already sees it, and can record it beside the work it does. A message sent
        again keeps its id."""
        return self.properties.get(_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)

    @property
    def topic(self) -> str:
        return self._topic

    @topic.setter
    def topic(self, value: str) -> None:
        self._topic = validate_topic(value)

    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: bytes | bytearray | memoryview) -> None:
        self._body = _as_body(value)

    @property
    def flag(self) -> int:
        """An int the application may use freely; the broker stores it untouched."""
        return self._flag

    @flag.setter
    def flag(self, value: int) -> None:
        self._flag = _check_int32(value, "flag")

    # -- properties

    def put_user_property(self, name: str, value: str) -> None:
        """Set a user property (not one of RocketMQ's reserved keys).

        As Java's ``putUserProperty``: blank names and values are refused too.
        """
        _check_encodable(name, value)
        if name.isspace():
            raise InvalidPropertyError(f"property key {name!r} is blank")
        if name in RESERVED_PROPERTY_KEYS:
            raise InvalidPropertyError(
                f"property {name!r} is reserved by RocketMQ: use another name"
            )
        if value.isspace() or not value:
            raise InvalidPropertyError(f"property {name!r}: value is empty or blank")
        self.properties[name] = value

    @property
    def tags(self) -> str | None:
        return self.properties.get(_C.PROPERTY_TAGS)

    @tags.setter
    def tags(self, value: str | None) -> None:
        if value is None or value == "":
            self.properties.pop(_C.PROPERTY_TAGS, None)
            return
        if not isinstance(value, str):
            raise InvalidMessageError(f"tags must be a str, got {type(value).__name__}")
        _check_value("tags", value)
        self.properties[_C.PROPERTY_TAGS] = value

    @property
    def keys(self) -> list[str]:
        raw = self.properties.get(_C.PROPERTY_KEYS)
        return [k for k in raw.split(" ") if k] if raw else []

    @keys.setter
    def keys(self, value: str | Iterable[str] | None) -> None:
        if value is None:
            self.properties.pop(_C.PROPERTY_KEYS, None)
            return
        if isinstance(value, str):
            joined = value
        else:
            if isinstance(value, bytes | bytearray | memoryview):
                raise InvalidMessageError("keys must be a str or an iterable of str, not bytes")
            items = list(value)
            for key in items:
                if not isinstance(key, str):
                    raise InvalidMessageError(
                        f"key {key!r} must be a str, got {type(key).__name__}"
                    )
                if not key or " " in key:
                    raise InvalidMessageError(
                        f"key {key!r} is empty or contains a space "
                        "(keys are stored space-separated)"
                    )
            joined = " ".join(items)
        if not joined:
            self.properties.pop(_C.PROPERTY_KEYS, None)
            return
        _check_value("keys", joined)
        self.properties[_C.PROPERTY_KEYS] = joined

    @property
    def delay_level(self) -> int:
        return number_property(self.properties, _C.PROPERTY_DELAY_TIME_LEVEL) or 0

    @delay_level.setter
    def delay_level(self, value: int) -> None:
        # No upper bound here: a broker configures its own levels (18 by default) and
        # clamps higher ones to its last.
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidMessageError(f"delay_level must be an int, got {type(value).__name__}")
        if value < 0:
            raise InvalidMessageError(f"delay_level must be 0 or more, got {value}")
        if value == 0:
            self.properties.pop(_C.PROPERTY_DELAY_TIME_LEVEL, None)
        else:
            self.properties[_C.PROPERTY_DELAY_TIME_LEVEL] = str(value)

    @property
    def deliver_at(self) -> int | None:
        return number_property(self.properties, _C.PROPERTY_TIMER_DELIVER_MS)

    @deliver_at.setter
    def deliver_at(self, value: int | datetime | None) -> None:
        if value is None:
            self.properties.pop(_C.PROPERTY_TIMER_DELIVER_MS, None)
            return
        if isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidMessageError(
                    f"deliver_at {value!r} is a naive datetime: give it a time zone"
                )
            ms = (value - _EPOCH) // _ONE_MS
        elif isinstance(value, int) and not isinstance(value, bool):
            ms = value
        else:
            raise InvalidMessageError(
                "deliver_at must be epoch milliseconds or an aware datetime, "
                f"got {type(value).__name__}"
            )
        if ms < 0:
            raise InvalidMessageError(f"deliver_at {ms} ms is before the epoch")
        self.properties[_C.PROPERTY_TIMER_DELIVER_MS] = str(ms)

    # -- dunder

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self._topic == other._topic
            and self._body == other._body
            and self._flag == other._flag
            and self.properties == other.properties
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Message(topic={self._topic!r}, tags={self.tags!r}, keys={self.keys!r}, "
            f"body={len(self._body)} bytes)"
        )


class MessageExt(_PropertyView):
    """A message as the broker stored it: what consumers receive.

    ``msg_id`` is the producer's UNIQ_KEY if it set one, else the ``offset_msg_id``
    (store host + commit-log offset, which VIEW_MESSAGE_BY_ID takes). ``broker_name``
    is filled in by the consumer that pulled the message. Host strings are
    ``"ip:port"`` (``"[ipv6]:port"``). Received messages are decoded without calling
    ``__init__``; the constructor is for tests and fake brokers.
    """

    __slots__ = (
        "_born_ip",
        "_born_port",
        "_store_ip",
        "_store_port",
        "body",
        "body_crc",
        "born_timestamp",
        "broker_name",
        "commit_log_offset",
        "flag",
        "prepared_transaction_offset",
        "properties",
        "queue_id",
        "queue_offset",
        "reconsume_times",
        "store_size",
        "store_timestamp",
        "sys_flag",
        "topic",
    )

    topic: str
    body: bytes
    flag: int
    properties: dict[str, str]
    queue_id: int
    queue_offset: int
    commit_log_offset: int
    sys_flag: int
    born_timestamp: int
    store_timestamp: int
    reconsume_times: int
    prepared_transaction_offset: int
    body_crc: int
    store_size: int
    broker_name: str
    _born_ip: int | bytes
    _born_port: int
    _store_ip: int | bytes
    _store_port: int

    def __init__(
        self,
        topic: str,
        body: bytes = b"",
        *,
        flag: int = 0,
        properties: Mapping[str, str] | None = None,
        queue_id: int = 0,
        queue_offset: int = 0,
        commit_log_offset: int = 0,
        sys_flag: int = 0,
        born_timestamp: int = 0,
        born_host: str = "0.0.0.0:0",
        store_timestamp: int = 0,
        store_host: str = "0.0.0.0:0",
        reconsume_times: int = 0,
        prepared_transaction_offset: int = 0,
        body_crc: int = 0,
        store_size: int = 0,
        broker_name: str = "",
    ) -> None:
        self.topic = topic
        self.body = _as_body(body)
        self.flag = flag
        self.properties = dict(properties) if properties else {}
        self.queue_id = queue_id
        self.queue_offset = queue_offset
        self.commit_log_offset = commit_log_offset
        self.sys_flag = sys_flag & ~(_BORNHOST_V6 | _STOREHOST_V6)
        self.born_timestamp = born_timestamp
        self.store_timestamp = store_timestamp
        self.reconsume_times = reconsume_times
        self.prepared_transaction_offset = prepared_transaction_offset
        self.body_crc = body_crc
        self.store_size = store_size
        self.broker_name = broker_name
        self.born_host = born_host
        self.store_host = store_host

    @property
    def born_host(self) -> str:
        """Address of the producer that sent the message, ``"ip:port"``."""
        return _format_host(self._born_ip, self._born_port)

    @born_host.setter
    def born_host(self, value: str) -> None:
        # The sysFlag V6 bits say how the host is encoded: they follow the address.
        self._born_ip, self._born_port = _parse_host(value, "born_host")
        if isinstance(self._born_ip, int):
            self.sys_flag &= ~_BORNHOST_V6
        else:
            self.sys_flag |= _BORNHOST_V6

    @property
    def store_host(self) -> str:
        """Address of the broker that stored the message, ``"ip:port"``."""
        return _format_host(self._store_ip, self._store_port)

    @store_host.setter
    def store_host(self, value: str) -> None:
        self._store_ip, self._store_port = _parse_host(value, "store_host")
        if isinstance(self._store_ip, int):
            self.sys_flag &= ~_STOREHOST_V6
        else:
            self.sys_flag |= _STOREHOST_V6

    @property
    def offset_msg_id(self) -> str:
        """Store host + port + commit-log offset, upper-case hex.

        Formatted when asked for, not when decoded: most consumers never ask (the msg_id
        of a producer's message is its UNIQ_KEY).
        """
        return _offset_msg_id(self._store_ip, self._store_port, self.commit_log_offset)

    @property
    def msg_id(self) -> str:
        """The id users see: UNIQ_KEY if the producer set one, else :attr:`offset_msg_id`."""
        uniq = self.properties.get(_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        return self.offset_msg_id if uniq is None else uniq

    @property
    def receipt_handle(self) -> str | None:
        """A message a ``SimpleConsumer`` received: what acks it (the ``POP_CK``
        property), as the broker's answer made it; ``None`` for other messages."""
        return self.properties.get(_C.PROPERTY_POP_CK)

    @property
    def transaction_id(self) -> str | None:
        """``__transactionId__`` if present, else UNIQ_KEY for a transactional message."""
        props = self.properties
        tx = props.get(_C.PROPERTY_TRANSACTION_ID)
        if tx is None and props.get(_C.PROPERTY_TRANSACTION_PREPARED, "").lower() == "true":
            tx = props.get(_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        return tx

    def _fields(self) -> tuple[object, ...]:
        return (
            self.topic,
            self.body,
            self.flag,
            self.properties,
            self.queue_id,
            self.queue_offset,
            self.commit_log_offset,
            self.sys_flag,
            self.born_timestamp,
            self._born_ip,
            self._born_port,
            self.store_timestamp,
            self._store_ip,
            self._store_port,
            self.reconsume_times,
            self.prepared_transaction_offset,
            self.body_crc,
            self.broker_name,
        )

    def __eq__(self, other: object) -> bool:
        """Equal in every field but ``store_size`` (which follows from the encoding)."""
        if not isinstance(other, MessageExt):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"MessageExt(topic={self.topic!r}, msg_id={self.msg_id!r}, "
            f"queue_id={self.queue_id}, queue_offset={self.queue_offset}, "
            f"tags={self.tags!r}, keys={self.keys!r}, reconsume_times={self.reconsume_times}, "
            f"body={len(self.body)} bytes)"
        )
