"""Messages and their encodings: properties, batches, stored messages, ids, compression.

Wire facts (all integers big-endian), as Java's ``MessageDecoder`` reads and writes them:

* properties: ``key \\x01 value \\x02`` repeated, UTF-8, at most 32767 bytes (an int16
  length);
* a batch body (SEND_BATCH_MESSAGE): per member TOTALSIZE int32 (counting itself),
  MAGIC int32 0, BODYCRC int32 0, FLAG int32, BODYLEN int32 + body, PROPLEN int16 +
  properties;
* a stored message (pull bodies, check-backs, views, queries), the commit-log record:
  TOTALSIZE int32, MAGICCODE int32 (V1 0xDAA320A7: 1-byte topic length; V2 0xDAA320AB:
  int16), BODYCRC int32, QUEUEID int32, FLAG int32, QUEUEOFFSET int64, PHYSICALOFFSET
  int64, SYSFLAG int32, BORNTIMESTAMP int64, BORNHOST (4 bytes, 16 if sysFlag 0x10) +
  port int32, STORETIMESTAMP int64, STOREHOST (4, or 16 if sysFlag 0x20) + port int32,
  RECONSUMETIMES int32, PREPARED_TRANSACTION_OFFSET int64, BODYLEN int32 + body,
  TOPICLEN + topic, PROPERTIESLEN int16 + properties.

Decoding a pull body is the hot path of every consumer, so :func:`decode_messages`
reads each record's fixed part with one precompiled :class:`struct.Struct`, builds a
:class:`MessageExt` without calling ``__init__``, and leaves host strings and message
ids to be formatted on first access.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, NamedTuple

from rocketmq_proto.wire.errors import (
    CompressionUnavailableError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidPropertyError,
    InvalidTopicError,
    RemoteProtocolError,
)

__all__ = [
    "MAGIC_CODE_V1",
    "MAGIC_CODE_V2",
    "MAX_PROPERTIES_SIZE",
    "RESERVED_PROPERTY_KEYS",
    "CompressionType",
    "Message",
    "MessageConst",
    "MessageExt",
    "OffsetMsgId",
    "UniqueIdGenerator",
    "UniqueIdInfo",
    "body_crc32",
    "compress_body",
    "compression_available",
    "decode_batch",
    "decode_message",
    "decode_messages",
    "decode_offset_msg_id",
    "decode_properties",
    "decompress_body",
    "encode_batch",
    "encode_offset_msg_id",
    "encode_properties",
    "encode_stored_message",
    "parse_unique_id",
    "properties_string",
    "unwrap_inner_batch",
    "validate_tags",
    "validate_topic",
]


# ------------------------------------------------------------------ property names


class MessageConst:
    """Property keys, by the names Java's ``MessageConst`` gives them."""

    PROPERTY_KEYS: Final = "KEYS"
    PROPERTY_TAGS: Final = "TAGS"
    PROPERTY_WAIT_STORE_MSG_OK: Final = "WAIT"
    PROPERTY_DELAY_TIME_LEVEL: Final = "DELAY"
    PROPERTY_RETRY_TOPIC: Final = "RETRY_TOPIC"
    PROPERTY_REAL_TOPIC: Final = "REAL_TOPIC"
    PROPERTY_REAL_QUEUE_ID: Final = "REAL_QID"
    PROPERTY_TRANSACTION_PREPARED: Final = "TRAN_MSG"
    PROPERTY_PRODUCER_GROUP: Final = "PGROUP"
    PROPERTY_MIN_OFFSET: Final = "MIN_OFFSET"
    PROPERTY_MAX_OFFSET: Final = "MAX_OFFSET"
    PROPERTY_BUYER_ID: Final = "BUYER_ID"
    PROPERTY_ORIGIN_MESSAGE_ID: Final = "ORIGIN_MESSAGE_ID"
    PROPERTY_TRANSFER_FLAG: Final = "TRANSFER_FLAG"
    PROPERTY_CORRECTION_FLAG: Final = "CORRECTION_FLAG"
    PROPERTY_MQ2_FLAG: Final = "MQ2_FLAG"
    PROPERTY_RECONSUME_TIME: Final = "RECONSUME_TIME"
    PROPERTY_MSG_REGION: Final = "MSG_REGION"
    PROPERTY_TRACE_SWITCH: Final = "TRACE_ON"
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: Final = "UNIQ_KEY"
    PROPERTY_EXTEND_UNIQ_INFO: Final = "EXTEND_UNIQ_INFO"
    PROPERTY_MAX_RECONSUME_TIMES: Final = "MAX_RECONSUME_TIMES"
    PROPERTY_CONSUME_START_TIMESTAMP: Final = "CONSUME_START_TIME"
    PROPERTY_INNER_NUM: Final = "INNER_NUM"
    PROPERTY_INNER_BASE: Final = "INNER_BASE"
    DUP_INFO: Final = "DUP_INFO"
    PROPERTY_CHECK_IMMUNITY_TIME_IN_SECONDS: Final = "CHECK_IMMUNITY_TIME_IN_SECONDS"
    PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET: Final = "TRAN_PREPARED_QUEUE_OFFSET"
    PROPERTY_TRANSACTION_ID: Final = "__transactionId__"
    PROPERTY_TRANSACTION_CHECK_TIMES: Final = "TRANSACTION_CHECK_TIMES"
    PROPERTY_INSTANCE_ID: Final = "INSTANCE_ID"
    PROPERTY_CORRELATION_ID: Final = "CORRELATION_ID"
    PROPERTY_MESSAGE_REPLY_TO_CLIENT: Final = "REPLY_TO_CLIENT"
    PROPERTY_MESSAGE_TTL: Final = "TTL"
    PROPERTY_REPLY_MESSAGE_ARRIVE_TIME: Final = "ARRIVE_TIME"
    PROPERTY_PUSH_REPLY_TIME: Final = "PUSH_REPLY_TIME"
    PROPERTY_CLUSTER: Final = "CLUSTER"
    PROPERTY_MESSAGE_TYPE: Final = "MSG_TYPE"
    PROPERTY_POP_CK: Final = "POP_CK"
    PROPERTY_POP_CK_OFFSET: Final = "POP_CK_OFFSET"
    PROPERTY_FIRST_POP_TIME: Final = "1ST_POP_TIME"
    PROPERTY_SHARDING_KEY: Final = "__SHARDINGKEY"
    PROPERTY_FORWARD_QUEUE_ID: Final = "PROPERTY_FORWARD_QUEUE_ID"
    PROPERTY_REDIRECT: Final = "REDIRECT"
    PROPERTY_INNER_MULTI_DISPATCH: Final = "INNER_MULTI_DISPATCH"
    PROPERTY_INNER_MULTI_QUEUE_OFFSET: Final = "INNER_MULTI_QUEUE_OFFSET"
    PROPERTY_TRACE_CONTEXT: Final = "TRACE_CONTEXT"
    PROPERTY_TIMER_DELAY_SEC: Final = "TIMER_DELAY_SEC"
    PROPERTY_TIMER_DELIVER_MS: Final = "TIMER_DELIVER_MS"
    PROPERTY_BORN_HOST: Final = "__BORNHOST"
    PROPERTY_BORN_TIMESTAMP: Final = "BORN_TIMESTAMP"
    PROPERTY_TIMER_ENQUEUE_MS: Final = "TIMER_ENQUEUE_MS"
    PROPERTY_TIMER_DEQUEUE_MS: Final = "TIMER_DEQUEUE_MS"
    PROPERTY_TIMER_ROLL_TIMES: Final = "TIMER_ROLL_TIMES"
    PROPERTY_TIMER_OUT_MS: Final = "TIMER_OUT_MS"
    PROPERTY_TIMER_DEL_UNIQKEY: Final = "TIMER_DEL_UNIQKEY"
    PROPERTY_TIMER_DELAY_LEVEL: Final = "TIMER_DELAY_LEVEL"
    PROPERTY_TIMER_DELAY_MS: Final = "TIMER_DELAY_MS"
    PROPERTY_CRC32: Final = "__CRC32#"
    PROPERTY_DLQ_ORIGIN_TOPIC: Final = "DLQ_ORIGIN_TOPIC"
    PROPERTY_DLQ_ORIGIN_MESSAGE_ID: Final = "DLQ_ORIGIN_MESSAGE_ID"
    KEY_SEPARATOR: Final = " "


_C = MessageConst

#: Keys a user may not set with ``put_user_property``: Java's ``MessageConst.STRING_HASH_SET``.
RESERVED_PROPERTY_KEYS: Final[frozenset[str]] = frozenset(
    {
        _C.PROPERTY_TRACE_SWITCH,
        _C.PROPERTY_MSG_REGION,
        _C.PROPERTY_KEYS,
        _C.PROPERTY_TAGS,
        _C.PROPERTY_WAIT_STORE_MSG_OK,
        _C.PROPERTY_DELAY_TIME_LEVEL,
        _C.PROPERTY_RETRY_TOPIC,
        _C.PROPERTY_REAL_TOPIC,
        _C.PROPERTY_REAL_QUEUE_ID,
        _C.PROPERTY_TRANSACTION_PREPARED,
        _C.PROPERTY_PRODUCER_GROUP,
        _C.PROPERTY_MIN_OFFSET,
        _C.PROPERTY_MAX_OFFSET,
        _C.PROPERTY_BUYER_ID,
        _C.PROPERTY_ORIGIN_MESSAGE_ID,
        _C.PROPERTY_TRANSFER_FLAG,
        _C.PROPERTY_CORRECTION_FLAG,
        _C.PROPERTY_MQ2_FLAG,
        _C.PROPERTY_RECONSUME_TIME,
        _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
        _C.PROPERTY_MAX_RECONSUME_TIMES,
        _C.PROPERTY_CONSUME_START_TIMESTAMP,
        _C.PROPERTY_POP_CK,
        _C.PROPERTY_POP_CK_OFFSET,
        _C.PROPERTY_FIRST_POP_TIME,
        _C.PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET,
        _C.DUP_INFO,
        _C.PROPERTY_EXTEND_UNIQ_INFO,
        _C.PROPERTY_INSTANCE_ID,
        _C.PROPERTY_CORRELATION_ID,
        _C.PROPERTY_MESSAGE_REPLY_TO_CLIENT,
        _C.PROPERTY_MESSAGE_TTL,
        _C.PROPERTY_REPLY_MESSAGE_ARRIVE_TIME,
        _C.PROPERTY_PUSH_REPLY_TIME,
        _C.PROPERTY_CLUSTER,
        _C.PROPERTY_MESSAGE_TYPE,
        _C.PROPERTY_INNER_MULTI_QUEUE_OFFSET,
        _C.PROPERTY_TIMER_DELAY_MS,
        _C.PROPERTY_TIMER_DELAY_SEC,
        _C.PROPERTY_TIMER_DELIVER_MS,
        _C.PROPERTY_TIMER_ENQUEUE_MS,
        _C.PROPERTY_TIMER_DEQUEUE_MS,
        _C.PROPERTY_TIMER_ROLL_TIMES,
        _C.PROPERTY_TIMER_OUT_MS,
        _C.PROPERTY_TIMER_DEL_UNIQKEY,
        _C.PROPERTY_TIMER_DELAY_LEVEL,
        _C.PROPERTY_BORN_HOST,
        _C.PROPERTY_BORN_TIMESTAMP,
        _C.PROPERTY_DLQ_ORIGIN_TOPIC,
        _C.PROPERTY_DLQ_ORIGIN_MESSAGE_ID,
        _C.PROPERTY_CRC32,
    }
)

NAME_VALUE_SEPARATOR: Final = "\x01"
PROPERTY_SEPARATOR: Final = "\x02"

#: Properties are length-prefixed by an int16 in every encoding that carries them.
MAX_PROPERTIES_SIZE: Final = 0x7FFF

MAGIC_CODE_V1: Final = 0xDAA320A7
"""Stored message whose topic length is one byte."""
MAGIC_CODE_V2: Final = 0xDAA320AB
"""Stored message whose topic length is an int16 (brokers use it for topics over 127 bytes)."""

# sysFlag bits (the same values as ``_codes.MessageSysFlag``, as plain ints for the hot path).
_COMPRESSED: Final = 0x1
_BORNHOST_V6: Final = 0x10
_STOREHOST_V6: Final = 0x20
_NEED_UNWRAP: Final = 0x40
_INNER_BATCH: Final = 0x80
_COMPRESSION_TYPE_MASK: Final = 0x700

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


# ------------------------------------------------------------------ properties codec


def encode_properties(props: Mapping[str, str]) -> bytes:
    """``k\\x01v\\x02`` for each pair, UTF-8, as Java writes it (with a trailing ``\\x02``).

    An empty value is written, as Java writes it, and dropped by every reader (see
    :func:`decode_properties`). Raises :class:`InvalidPropertyError` (naming the key)
    for a non-str key or value, an empty key, a key or value containing ``\\x01`` or
    ``\\x02``, or a result over 32767 bytes.
    """
    return _checked_properties(props)[1]


def properties_string(props: Mapping[str, str]) -> str:
    """The ``properties`` header field of a single send: :func:`encode_properties`'s
    text, with the same checks (a broker stores it int16-length-prefixed too)."""
    return _checked_properties(props)[0]


def _checked_properties(props: Mapping[str, str]) -> tuple[str, bytes]:
    if not props:
        return "", b""
    try:
        text = "".join([k + "\x01" + v + "\x02" for k, v in props.items()])
    except TypeError:
        _raise_bad_pair(props)
        raise  # pragma: no cover - _raise_bad_pair always raises
    n = len(props)
    # Every pair adds exactly one of each separator: any other count means a separator
    # inside a key or value. "\x02\x01" or a leading "\x01" means an empty key.
    if (
        text.count("\x01") != n
        or text.count("\x02") != n
        or text[0] == "\x01"
        or "\x02\x01" in text
    ):
        _raise_bad_pair(props)
    try:
        data = text.encode()
    except UnicodeEncodeError:
        bad = next(k for k, v in props.items() if _unencodable(k + v))
        raise InvalidPropertyError(f"property {bad!r} cannot be encoded as UTF-8") from None
    if len(data) > MAX_PROPERTIES_SIZE:
        biggest = max(props, key=lambda k: len(k) + len(props[k]))
        raise InvalidPropertyError(
            f"properties encode to {len(data)} bytes, more than {MAX_PROPERTIES_SIZE} "
            f"(largest: {biggest[:40]!r})"
        )
    return text, data


def _unencodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _check_encodable(key: object, value: object) -> None:
    """Raise InvalidPropertyError, naming the key, if the pair cannot go on the wire."""
    if not isinstance(key, str):
        raise InvalidPropertyError(f"property key {key!r} must be a str, got {type(key).__name__}")
    if not key:
        raise InvalidPropertyError("property key '' is empty")
    if not isinstance(value, str):
        raise InvalidPropertyError(
            f"property {key!r}: value must be a str, got {type(value).__name__}"
        )
    for sep in ("\x01", "\x02"):
        if sep in key:
            raise InvalidPropertyError(f"property key {key!r} contains the separator {sep!r}")
        if sep in value:
            raise InvalidPropertyError(f"property {key!r}: value contains the separator {sep!r}")


def _raise_bad_pair(props: Mapping[str, str]) -> None:
    for k, v in props.items():
        _check_encodable(k, v)
    raise InvalidPropertyError("properties cannot be encoded")  # pragma: no cover


def decode_properties(data: bytes | bytearray | memoryview) -> dict[str, str]:
    """Parse ``k\\x01v\\x02...`` (UTF-8) into a dict.

    As Java's ``string2messageProperties``: an empty input, a missing final ``\\x02`` and
    empty segments are fine, a pair with an empty key or an empty value is dropped, the
    value runs from the first ``\\x01`` to the next ``\\x02``, and a later duplicate key
    wins; so a Python and a Java consumer see the same properties. Malformed UTF-8 or a
    segment without ``\\x01`` is a :class:`RemoteProtocolError`.
    """
    if not data:
        return {}
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"properties are not valid UTF-8: {exc.reason}") from None
    return _parse_properties(text)


def _parse_properties(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for part in text.split("\x02"):
        key, sep, value = part.partition("\x01")
        if key and value:
            props[key] = value
        elif part and not sep:
            raise RemoteProtocolError(f"property {part[:40]!r} has no name/value separator")
    return props


# ------------------------------------------------------------------ compression


class CompressionType(enum.IntEnum):
    """Body compression algorithms (the value sits in sysFlag bits 8-10)."""

    LZ4 = 1
    ZSTD = 2
    ZLIB = 3

    @property
    def sys_flag(self) -> int:
        """The sysFlag bits naming this algorithm (without COMPRESSED)."""
        return int(self) << 8


#: Java's ``compressMsgBodyOverHowmuch`` and ``compressLevel`` defaults.
DEFAULT_COMPRESS_THRESHOLD: Final = 4096
DEFAULT_COMPRESS_LEVEL: Final = 5


def _lz4_frame() -> Any:
    try:
        import lz4.frame
    except ImportError:
        raise CompressionUnavailableError(
            "LZ4 message bodies need the 'lz4' package, which is not installed: "
            "pip install rocketmq-python[lz4]"
        ) from None
    return lz4.frame


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise CompressionUnavailableError(
            "Zstandard message bodies need the 'zstandard' package, which is not installed: "
            "pip install rocketmq-python[zstd]"
        ) from None
    return zstandard


def _compression_of(sys_flag: int) -> CompressionType:
    value = (sys_flag & _COMPRESSION_TYPE_MASK) >> 8
    if value == 0:  # written before compression types existed (Java 4.x, Go): zlib
        return CompressionType.ZLIB
    try:
        return CompressionType(value)
    except ValueError:
        raise RemoteProtocolError(
            f"sysFlag {sys_flag:#x} names unknown compression type {value}"
        ) from None


def compress_body(
    body: bytes,
    level: int = DEFAULT_COMPRESS_LEVEL,
    threshold: int = DEFAULT_COMPRESS_THRESHOLD,
    *,
    compression: CompressionType = CompressionType.ZLIB,
) -> tuple[bytes, int]:
    """Compress a single message's body as Java's producer does, when that pays.

    Bodies shorter than ``threshold`` are returned unchanged with flag bits 0. Longer
    ones are compressed (zlib by default, at ``level``; LZ4 and Zstandard need their
    optional libraries) and returned with the sysFlag bits to OR into the send header:
    COMPRESSED (0x1) plus the algorithm's type bits (Java 5.x's ``CompressionType``
    in bits 8-10: LZ4 0x100, ZSTD 0x200, ZLIB 0x300; Java 4.x and Go set 0x1 alone,
    which every reader also takes as zlib). Unlike Java, a body that does not get
    smaller (random or already compressed data) is returned unchanged with flag bits 0:
    so a body of exactly the maximum message size is never pushed over the broker's
    limit by compression. Batches are never compressed.
    """
    if len(body) < threshold:
        return body, 0
    data = _compress(body, compression, level)
    if len(data) >= len(body):
        return body, 0
    return data, _COMPRESSED | compression.sys_flag


def _compress(body: bytes, compression: CompressionType, level: int) -> bytes:
    if compression is CompressionType.ZLIB:
        return zlib.compress(body, level)
    if compression is CompressionType.LZ4:
        # lz4-java's LZ4FrameInputStream (what Java brokers and clients use) refuses
        # linked blocks; content size is left out as LZ4FrameOutputStream does. Java's
        # LZ4 compressor takes no level.
        return bytes(_lz4_frame().compress(body, block_linked=False, store_size=False))
    return bytes(_zstandard().ZstdCompressor(level=level).compress(body))


def compression_available(compression: CompressionType) -> None:
    """Raise :class:`CompressionUnavailableError` if ``compression``'s library is missing."""
    if compression is CompressionType.LZ4:
        _lz4_frame()
    elif compression is CompressionType.ZSTD:
        _zstandard()


def decompress_body(body: bytes, sys_flag: int) -> bytes:
    """The body uncompressed per ``sys_flag``; unchanged if COMPRESSED (0x1) is not set.

    A corrupt body is a :class:`RemoteProtocolError`; an LZ4 or Zstandard body without
    its library installed is a :class:`CompressionUnavailableError`.
    """
    if not sys_flag & _COMPRESSED:
        return body
    kind = _compression_of(sys_flag)
    if kind is CompressionType.ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error as exc:
            raise RemoteProtocolError(f"message body is not valid ZLIB data: {exc}") from None
    if kind is CompressionType.LZ4:
        lz4_frame = _lz4_frame()
        try:
            return bytes(lz4_frame.decompress(body))
        except (RuntimeError, ValueError) as exc:
            raise RemoteProtocolError(f"message body is not valid LZ4 data: {exc}") from None
    zstd = _zstandard()
    # Java's ZstdOutputStream writes frames without a content size, which
    # ZstdDecompressor.decompress refuses; a decompressobj streams instead, and says by
    # ``eof`` whether the frame was whole.
    unzstd = zstd.ZstdDecompressor().decompressobj()
    try:
        data = bytes(unzstd.decompress(body))
    except zstd.ZstdError as exc:
        raise RemoteProtocolError(f"message body is not valid ZSTD data: {exc}") from None
    if not unzstd.eof:
        raise RemoteProtocolError("message body is not valid ZSTD data: the frame is truncated")
    return data


# ------------------------------------------------------------------ hosts


def _format_host(ip: int | bytes, port: int) -> str:
    if isinstance(ip, int):
        return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}:{port}"
    return f"[{ipaddress.IPv6Address(ip).compressed}]:{port}"


def _parse_ip(host: str) -> int | bytes:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgumentError(f"{host!r} is not an IPv4 or IPv6 address") from None
    if isinstance(addr, ipaddress.IPv4Address):
        return int(addr)
    return addr.packed


def _parse_host(value: str, what: str) -> tuple[int | bytes, int]:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be an 'ip:port' str, got {type(value).__name__}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise InvalidArgumentError(f"{what} {value!r} is not 'ip:port' (or '[ipv6]:port')")
    # Java's InetSocketAddress.toString() writes "hostname/ip:port" or "/ip:port".
    return _parse_ip(host.rpartition("/")[2]), int(port_text)


# ------------------------------------------------------------------ offset message ids


class OffsetMsgId(NamedTuple):
    """What an offset message id says: where the broker stored the message."""

    host: str
    port: int
    offset: int


_HEX_DIGITS: Final = frozenset("0123456789ABCDEFabcdef")
_OFFSET_ID_V4: Final = struct.Struct(">4sIq")
_OFFSET_ID_V6: Final = struct.Struct(">16sIq")


def encode_offset_msg_id(host: str, port: int, commit_log_offset: int) -> str:
    """The offset message id of a stored message: store IP + port int32 + offset int64, hex.

    32 upper-case hex characters for an IPv4 store host, 56 for IPv6.
    """
    ip = _parse_ip(host)
    if not 0 <= port <= 0xFFFF:
        raise InvalidArgumentError(f"port {port} is out of range 0..65535")
    if not 0 <= commit_log_offset < 1 << 63:
        raise InvalidArgumentError(
            f"commit log offset {commit_log_offset} is not a non-negative int64"
        )
    if isinstance(ip, int):
        return f"{ip:08X}{port:08X}{commit_log_offset:016X}"
    return ip.hex().upper() + f"{port:08X}{commit_log_offset:016X}"


def decode_offset_msg_id(msg_id: str) -> OffsetMsgId:
    """Split an offset message id into store host (without port), port and commit-log offset."""
    if (
        not isinstance(msg_id, str)
        or len(msg_id) not in (32, 56)
        or not _HEX_DIGITS.issuperset(msg_id)
    ):
        raise InvalidArgumentError(
            f"{msg_id!r} is not an offset message id (32 or 56 hex characters)"
        )
    raw = bytes.fromhex(msg_id)
    if len(raw) == 16:
        ip_raw, port, offset = _OFFSET_ID_V4.unpack(raw)
        host = str(ipaddress.IPv4Address(ip_raw))
    else:
        ip_raw, port, offset = _OFFSET_ID_V6.unpack(raw)
        host = ipaddress.IPv6Address(ip_raw).compressed
    return OffsetMsgId(host, port, offset)


def _offset_msg_id(ip: int | bytes, port: int, offset: int) -> str:
    port &= 0xFFFFFFFF
    offset &= 0xFFFFFFFFFFFFFFFF
    if isinstance(ip, int):
        return f"{ip:08X}{port:08X}{offset:016X}"
    return f"{ip.hex().upper()}{port:08X}{offset:016X}"


# ------------------------------------------------------------------ unique ids (UNIQ_KEY)


class UniqueIdInfo(NamedTuple):
    """What a client-generated message id (UNIQ_KEY) says about its producer."""

    ip: str
    pid: int
    timestamp_ms: int


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_DAY_MS: Final = 86_400_000


_MAX_NOW_MS: Final = (date(9999, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_MS


def _month_bounds(now_ms: int) -> tuple[int, int]:
    """Start of the UTC month holding ``now_ms`` and of the next one, epoch ms."""
    if not 0 <= now_ms < _MAX_NOW_MS:
        raise InvalidArgumentError(f"time {now_ms} ms is outside 1970..9998")
    day = date.fromordinal(_EPOCH_ORDINAL + now_ms // _DAY_MS)
    start = date(day.year, day.month, 1)
    nxt = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return (
        (start.toordinal() - _EPOCH_ORDINAL) * _DAY_MS,
        (nxt.toordinal() - _EPOCH_ORDINAL) * _DAY_MS,
    )


def _previous_month_start(month_start_ms: int) -> int:
    return _month_bounds(month_start_ms - 1)[0]


class UniqueIdGenerator:
    """Message ids (the UNIQ_KEY property) laid out as Java's ``MessageClientIDSetter``.

    ``ip`` (4 or 16 bytes) + pid (int16) + a per-process int32 (Java uses its class
    loader's hash: pass any number that differs between processes), then per id the
    milliseconds since the start of the current month (int32, wrapping like Java's
    cast after 24.8 days) and a counter (int16), all upper-case hex: 32 characters for
    IPv4. Months are taken in UTC (Java uses the local time zone; the field is only a
    hint). Not thread-safe: a driver shares one per process behind its own lock, or
    uses one per thread with distinct ``instance_hash`` values.
    """

    __slots__ = ("_counter", "_next_start", "_prefix", "_start")

    def __init__(self, ip: bytes, pid: int, instance_hash: int) -> None:
        if not isinstance(ip, bytes | bytearray) or len(ip) not in (4, 16):
            raise InvalidArgumentError(f"ip must be 4 or 16 bytes, got {ip!r}")
        self._prefix = (
            (bytes(ip) + struct.pack(">HI", pid & 0xFFFF, instance_hash & 0xFFFFFFFF)).hex().upper()
        )
        self._counter = 0
        self._start = 0
        self._next_start = -1

    @property
    def prefix(self) -> str:
        """The fixed hex prefix (ip, pid, instance hash) every id starts with."""
        return self._prefix

    def next_id(self, now_ms: int) -> str:
        """A new id for a message created at ``now_ms`` (epoch milliseconds)."""
        if not self._start <= now_ms < self._next_start:
            self._start, self._next_start = _month_bounds(now_ms)
        counter = self._counter
        self._counter = (counter + 1) & 0xFFFF
        return f"{self._prefix}{(now_ms - self._start) & 0xFFFFFFFF:08X}{counter:04X}"


def parse_unique_id(msg_id: str, now_ms: int) -> UniqueIdInfo:
    """The producer IP, pid and (nearly) the creation time of a UNIQ_KEY id.

    The id holds only milliseconds since a month's start, so like Java's
    ``getNearlyTimeFromID`` the month is taken as ``now_ms``'s (UTC), or the previous
    one if that would put the id in the future.
    """
    if (
        not isinstance(msg_id, str)
        or len(msg_id) not in (32, 56)
        or not _HEX_DIGITS.issuperset(msg_id)
    ):
        raise InvalidArgumentError(f"{msg_id!r} is not a message id (32 or 56 hex characters)")
    raw = bytes.fromhex(msg_id)
    ip_len = 16 if len(raw) == 28 else 4
    ip_raw = raw[:ip_len]
    pid, _salt, span, _counter = struct.unpack_from(">HIIH", raw, ip_len)
    ip = (
        str(ipaddress.IPv4Address(ip_raw))
        if ip_len == 4
        else ipaddress.IPv6Address(ip_raw).compressed
    )
    start, _ = _month_bounds(now_ms)
    if start + span > now_ms and start > 0:
        start = _previous_month_start(start)
    return UniqueIdInfo(ip, pid, start + span)


# ------------------------------------------------------------------ message classes


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
        raw = self.properties.get(_C.PROPERTY_DELAY_TIME_LEVEL)
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            return 0

    @property
    def deliver_at(self) -> int | None:
        """The TIMER_DELIVER_MS property: epoch ms at which a timer message is delivered."""
        raw = self.properties.get(_C.PROPERTY_TIMER_DELIVER_MS)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            return None


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
        raw = self.properties.get(_C.PROPERTY_DELAY_TIME_LEVEL)
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            return 0

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
        raw = self.properties.get(_C.PROPERTY_TIMER_DELIVER_MS)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            return None

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


_new_ext = object.__new__


# ------------------------------------------------------------------ batches (SEND_BATCH_MESSAGE)

_BATCH_HEAD: Final = struct.Struct(">iiiii")  # TOTALSIZE, MAGIC, BODYCRC, FLAG, BODYLEN
_INT16: Final = struct.Struct(">h")
_BATCH_FIXED: Final = _BATCH_HEAD.size + _INT16.size

_TIMER_KEYS: Final = (
    _C.PROPERTY_DELAY_TIME_LEVEL,
    _C.PROPERTY_TIMER_DELIVER_MS,
    _C.PROPERTY_TIMER_DELAY_SEC,
    _C.PROPERTY_TIMER_DELAY_MS,
)
_UNIQ_PREFIX: Final = _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX + "\x01"


def _wait_store_ok(msg: Message) -> bool:
    return msg.properties.get(_C.PROPERTY_WAIT_STORE_MSG_OK, "true").lower() == "true"


def encode_batch(messages: Sequence[Message], unique_ids: Sequence[str]) -> bytes:
    """The body of SEND_BATCH_MESSAGE (320) for ``messages``.

    Each member is written as Java's ``MessageDecoder.encodeMessage`` does: all of its
    properties (whatever the dict holds, as Java writes its whole map) plus its own
    UNIQ_KEY from ``unique_ids``. Members must share one topic and WAIT setting, and may
    not be delayed (DELAY, TIMER_*) nor go to a ``%RETRY%`` topic
    (:class:`InvalidMessageError`). Bodies are not compressed.
    """
    if not messages:
        raise InvalidMessageError("a batch needs at least one message")
    if len(unique_ids) != len(messages):
        raise InvalidArgumentError(f"{len(messages)} messages but {len(unique_ids)} unique ids")
    first = messages[0]
    topic = first.topic
    if topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        raise InvalidMessageError(f"topic {topic!r}: retry topics cannot take batches")
    wait = _wait_store_ok(first)
    head_pack = _BATCH_HEAD.pack
    len_pack = _INT16.pack
    parts: list[bytes] = []
    for index, (msg, uid) in enumerate(zip(messages, unique_ids, strict=True)):
        if not isinstance(msg, Message):
            raise InvalidMessageError(
                f"batch member {index} is a {type(msg).__name__}, not a Message"
            )
        if msg.topic != topic:
            raise InvalidMessageError(
                f"batch member {index} is for topic {msg.topic!r}, the batch for {topic!r}: "
                "a batch takes one topic"
            )
        props = msg.properties
        for key in _TIMER_KEYS:
            if key in props:
                raise InvalidMessageError(
                    f"batch member {index} is delayed ({key}={props[key]!r}): "
                    "batches cannot be delayed"
                )
        if _wait_store_ok(msg) != wait:
            raise InvalidMessageError(
                f"batch member {index} differs in WAIT from the first message"
            )
        if not isinstance(uid, str) or not uid:
            raise InvalidArgumentError(
                f"unique id {uid!r} for batch member {index} is not a non-empty str"
            )
        if _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX in props:
            merged = dict(props)
            merged[_C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] = uid
            prop_bytes = encode_properties(merged)
        else:
            _check_value("unique id", uid)
            prop_bytes = encode_properties(props) + (_UNIQ_PREFIX + uid + "\x02").encode()
            if len(prop_bytes) > MAX_PROPERTIES_SIZE:
                raise InvalidPropertyError(
                    f"batch member {index}: properties encode to {len(prop_bytes)} bytes, "
                    f"more than {MAX_PROPERTIES_SIZE}"
                )
        body = msg.body
        parts.append(
            head_pack(_BATCH_FIXED + len(body) + len(prop_bytes), 0, 0, msg.flag, len(body))
        )
        parts.append(body)
        parts.append(len_pack(len(prop_bytes)))
        parts.append(prop_bytes)
    return b"".join(parts)


def decode_batch(data: bytes | bytearray | memoryview) -> list[tuple[int, bytes, dict[str, str]]]:
    """The members of a batch body as ``(flag, body, properties)``.

    Reads fields in order as Java does (TOTALSIZE, MAGIC and BODYCRC are not checked);
    truncation, negative or overrunning lengths and bad properties are a
    :class:`RemoteProtocolError`.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    end = len(buf)
    pos = 0
    out: list[tuple[int, bytes, dict[str, str]]] = []
    unpack_head = _BATCH_HEAD.unpack_from
    while pos < end:
        index = len(out)
        if pos + _BATCH_HEAD.size > end:
            raise RemoteProtocolError(
                f"batch member {index} at byte {pos}: header truncated "
                f"({end - pos} of {_BATCH_HEAD.size} bytes)"
            )
        _total, _magic, _crc, flag, body_len = unpack_head(buf, pos)
        pos += _BATCH_HEAD.size
        if body_len < 0 or pos + body_len + 2 > end:
            raise RemoteProtocolError(
                f"batch member {index}: BODYLEN {body_len} overruns the data "
                f"({end - pos} bytes left)"
            )
        body = buf[pos : pos + body_len]
        pos += body_len
        (prop_len,) = _INT16.unpack_from(buf, pos)
        pos += 2
        if prop_len < 0 or pos + prop_len > end:
            raise RemoteProtocolError(
                f"batch member {index}: PROPLEN {prop_len} overruns the data "
                f"({end - pos} bytes left)"
            )
        props = decode_properties(buf[pos : pos + prop_len]) if prop_len else {}
        pos += prop_len
        out.append((flag, body, props))
    return out


# ------------------------------------------------------------------ stored messages

# TOTALSIZE MAGIC BODYCRC QUEUEID FLAG QUEUEOFFSET PHYSICALOFFSET SYSFLAG BORNTIMESTAMP
# BORNHOST(ip, port) STORETIMESTAMP STOREHOST(ip, port) RECONSUMETIMES PREPARED_TX_OFFSET
# BODYLEN. An IPv4 address is read as one uint32 (cheap to keep, to format and to put in
# an offset message id); an IPv6 one as 16 bytes.
_STORED_HEAD: Final = tuple(
    struct.Struct(
        ">iIiiiqqiq" + ("16s" if born_v6 else "I") + "iq" + ("16s" if store_v6 else "I") + "iiqi"
    )
    for store_v6 in (False, True)
    for born_v6 in (False, True)
)  # indexed by (sysFlag >> 4) & 3
_HEAD_V4: Final = _STORED_HEAD[0]
_HEAD_V4_SIZE: Final = _HEAD_V4.size

_FIELD_NAMES: Final = (
    ("TOTALSIZE", 4),
    ("MAGICCODE", 4),
    ("BODYCRC", 4),
    ("QUEUEID", 4),
    ("FLAG", 4),
    ("QUEUEOFFSET", 8),
    ("PHYSICALOFFSET", 8),
    ("SYSFLAG", 4),
    ("BORNTIMESTAMP", 8),
    ("BORNHOST", -1),
    ("STORETIMESTAMP", 8),
    ("STOREHOST", -2),
    ("RECONSUMETIMES", 4),
    ("PREPARED_TRANSACTION_OFFSET", 8),
    ("BODYLEN", 4),
)


def _truncated_field(avail: int, sys_flag: int) -> str:
    pos = 0
    for name, size in _FIELD_NAMES:
        if size == -1:
            size = 20 if sys_flag & _BORNHOST_V6 else 8
        elif size == -2:
            size = 20 if sys_flag & _STOREHOST_V6 else 8
        pos += size
        if pos > avail:
            return name
    return "BODYLEN"  # pragma: no cover


def _stored_error(start: int, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"stored message at byte {start}: {what}")


def decode_message(
    data: bytes | bytearray | memoryview, offset: int = 0, *, decompress: bool = True
) -> tuple[MessageExt, int]:
    """Decode the stored message at ``offset``; return it and the offset just after it.

    An inner batch (sysFlag INNER_BATCH and NEED_UNWRAP) comes back as the one wrapper
    message; :func:`decode_messages` (or :func:`unwrap_inner_batch`) yields its members.
    Any malformed input is a :class:`RemoteProtocolError` naming the field.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    if offset < 0:
        raise InvalidArgumentError(f"offset must be 0 or more, got {offset}")
    if offset >= len(buf):
        raise RemoteProtocolError(f"no stored message at byte {offset} of {len(buf)} bytes of data")
    out: list[MessageExt] = []
    next_offset = _decode_stored(buf, offset, len(buf), decompress, out, True)
    return out[0], next_offset


def decode_messages(
    data: bytes | bytearray | memoryview, *, decompress: bool = True, unwrap_batches: bool = True
) -> list[MessageExt]:
    """Every stored message in a pull (or query) body, in order.

    Compressed bodies are decompressed (``decompress=True``) and inner batches are
    replaced by their members (``unwrap_batches=True``). Malformed input is a
    :class:`RemoteProtocolError`; an LZ4/Zstandard body without its library a
    :class:`CompressionUnavailableError`.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    out: list[MessageExt] = []
    _decode_stored(buf, 0, len(buf), decompress, out, False)
    if unwrap_batches and any(msg.sys_flag & _INNER_BATCH for msg in out):
        try:
            unwrapped: list[MessageExt] = []
            for msg in out:
                unwrapped.extend(unwrap_inner_batch(msg))
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"inner batch: {exc}") from None
        return unwrapped
    return out


def _decode_stored(
    buf: bytes, pos: int, end: int, decompress: bool, out: list[MessageExt], just_one: bool
) -> int:
    """Decode stored messages from ``buf[pos:end]`` into ``out``; return where it stopped.

    One loop for the hot path: no call, no tuple per message beyond the header's.
    """
    head_v4 = _HEAD_V4
    head_v4_size = _HEAD_V4_SIZE
    int16 = _INT16.unpack_from
    append = out.append
    new = _new_ext
    cls = MessageExt
    while pos < end:
        start = pos
        if pos + head_v4_size > end:
            raise _truncated(buf, start, end)
        head = head_v4.unpack_from(buf, pos)
        sys_flag = head[7]
        if sys_flag & 0x30:
            layout = _STORED_HEAD[(sys_flag >> 4) & 3]
            if pos + layout.size > end:
                raise _truncated(buf, start, end)
            head = layout.unpack_from(buf, pos)
            pos += layout.size
        else:
            pos += head_v4_size
        (
            total,
            magic,
            body_crc,
            queue_id,
            flag,
            queue_offset,
            commit_log_offset,
            _,
            born_ts,
            born_ip,
            born_port,
            store_ts,
            store_ip,
            store_port,
            reconsume_times,
            prepared_offset,
            body_len,
        ) = head
        body_end = pos + body_len
        if body_len < 0 or body_end > end:
            raise _stored_error(
                start, f"BODYLEN {body_len} overruns the data ({end - pos} bytes left)"
            )
        body = buf[pos:body_end]
        if magic == MAGIC_CODE_V1:
            if body_end >= end:
                raise _stored_error(start, "truncated in TOPICLEN")
            topic_len = buf[body_end]
            pos = body_end + 1
        elif magic == MAGIC_CODE_V2:
            if body_end + 2 > end:
                raise _stored_error(start, "truncated in TOPICLEN")
            topic_len = int16(buf, body_end)[0]
            if topic_len < 0:
                raise _stored_error(start, f"TOPICLEN {topic_len} is negative")
            pos = body_end + 2
        else:
            raise _stored_error(start, f"MAGICCODE {magic:#010x} is neither V1 nor V2")
        topic_end = pos + topic_len
        if topic_end + 2 > end:
            if topic_end > end:
                raise _stored_error(
                    start, f"TOPICLEN {topic_len} overruns the data ({end - pos} bytes left)"
                )
            raise _stored_error(start, "truncated in PROPERTIESLEN")
        try:
            topic = buf[pos:topic_end].decode()
        except UnicodeDecodeError:
            raise _stored_error(start, "TOPIC is not valid UTF-8") from None
        prop_len = int16(buf, topic_end)[0]
        pos = topic_end + 2
        props_end = pos + prop_len
        if prop_len < 0 or props_end > end:
            raise _stored_error(
                start, f"PROPERTIESLEN {prop_len} overruns the data ({end - pos} bytes left)"
            )
        props: dict[str, str] = {}
        if prop_len:
            try:
                parts = buf[pos:props_end].decode().split("\x02")
            except UnicodeDecodeError:
                raise _stored_error(start, "PROPERTIES are not valid UTF-8") from None
            # The same loop as _parse_properties, inlined: on this path it is the
            # fastest form CPython offers (faster than dict() over a comprehension).
            for part in parts:
                key, sep, value = part.partition("\x01")
                if key and value:
                    props[key] = value
                elif part and not sep:
                    raise _stored_error(
                        start, f"PROPERTIES: {part[:40]!r} has no name/value separator"
                    )
        if decompress and sys_flag & _COMPRESSED:
            try:
                body = decompress_body(body, sys_flag)
            except RemoteProtocolError as exc:
                raise _stored_error(start, f"BODY: {exc}") from None
            sys_flag &= ~_COMPRESSED
        msg = new(cls)
        msg.topic = topic
        msg.body = body
        msg.flag = flag
        msg.properties = props
        msg.queue_id = queue_id
        msg.queue_offset = queue_offset
        msg.commit_log_offset = commit_log_offset
        msg.sys_flag = sys_flag
        msg.born_timestamp = born_ts
        msg._born_ip = born_ip
        msg._born_port = born_port
        msg.store_timestamp = store_ts
        msg._store_ip = store_ip
        msg._store_port = store_port
        msg.reconsume_times = reconsume_times
        msg.prepared_transaction_offset = prepared_offset
        msg.body_crc = body_crc
        msg.store_size = total
        msg.broker_name = ""
        append(msg)
        # Java reads field by field and ignores TOTALSIZE; honour it only to skip padding
        # (a record re-encoded into a buffer of its old, larger size).
        pos = start + total if props_end - start < total <= end - start else props_end
        if just_one:
            break
    return pos


def _truncated(buf: bytes, start: int, end: int) -> RemoteProtocolError:
    avail = end - start
    sys_flag = struct.unpack_from(">i", buf, start + 36)[0] if avail >= 40 else 0
    return _stored_error(
        start, f"truncated in {_truncated_field(avail, sys_flag)} ({avail} bytes left)"
    )


def unwrap_inner_batch(msg: MessageExt) -> list[MessageExt]:
    """The members of an inner-batch message, as Java's PullAPIWrapper unwraps them.

    Each member takes its flag, body and properties from the batch body and everything
    else from the wrapper, with ``queue_offset`` = wrapper's + its index. A message that
    is not an (uncompressed) inner batch comes back alone.
    """
    flags = msg.sys_flag
    if flags & (_INNER_BATCH | _NEED_UNWRAP) != _INNER_BATCH | _NEED_UNWRAP or flags & _COMPRESSED:
        return [msg]
    members = []
    for index, (flag, body, props) in enumerate(decode_batch(msg.body)):
        member = _new_ext(MessageExt)
        member.topic = msg.topic
        member.body = body
        member.flag = flag
        member.properties = props
        member.queue_id = msg.queue_id
        member.queue_offset = msg.queue_offset + index
        member.commit_log_offset = msg.commit_log_offset
        member.sys_flag = flags
        member.born_timestamp = msg.born_timestamp
        member._born_ip = msg._born_ip
        member._born_port = msg._born_port
        member.store_timestamp = msg.store_timestamp
        member._store_ip = msg._store_ip
        member._store_port = msg._store_port
        member.reconsume_times = msg.reconsume_times
        member.prepared_transaction_offset = msg.prepared_transaction_offset
        member.body_crc = 0
        member.store_size = 0
        member.broker_name = msg.broker_name
        members.append(member)
    return members


def encode_stored_message(
    msg: MessageExt, *, compress: bool = True, version: int | None = None
) -> bytes:
    """``msg`` as a broker stores it (and sends it in pull bodies and check-backs).

    The host V6 bits of ``sys_flag`` follow the hosts' address families. If ``sys_flag``
    has COMPRESSED and ``compress`` is true, the body is compressed (level 5) with the
    algorithm its type bits name, as Java's ``MessageDecoder.encode`` does; otherwise it
    is written as is. ``version`` 1 or 2 picks the magic code (default: V2 only for topics
    over 127 bytes). ``store_size`` is ignored (TOTALSIZE is computed).
    """
    try:
        topic = msg.topic.encode()
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"topic {msg.topic!r} cannot be encoded as UTF-8") from None
    if version is None:
        version = 2 if len(topic) > 127 else 1
    if version == 1:
        if len(topic) > 255:
            raise InvalidArgumentError(f"topic of {len(topic)} bytes needs a V2 message")
        topic_part = bytes((len(topic),)) + topic
        magic = MAGIC_CODE_V1
    elif version == 2:
        if len(topic) > 0x7FFF:
            raise InvalidArgumentError(f"topic of {len(topic)} bytes is too long")
        topic_part = _INT16.pack(len(topic)) + topic
        magic = MAGIC_CODE_V2
    else:
        raise InvalidArgumentError(f"stored message version must be 1 or 2, got {version}")
    sys_flag = msg.sys_flag & ~(_BORNHOST_V6 | _STOREHOST_V6)
    if not isinstance(msg._born_ip, int):
        sys_flag |= _BORNHOST_V6
    if not isinstance(msg._store_ip, int):
        sys_flag |= _STOREHOST_V6
    body = msg.body
    if compress and sys_flag & _COMPRESSED:
        try:
            kind = _compression_of(sys_flag)
        except RemoteProtocolError as exc:
            raise InvalidArgumentError(str(exc)) from None
        body = _compress(body, kind, DEFAULT_COMPRESS_LEVEL)
    props = encode_properties(msg.properties)
    layout = _STORED_HEAD[(sys_flag >> 4) & 3]
    total = layout.size + len(body) + len(topic_part) + 2 + len(props)
    try:
        head = layout.pack(
            total,
            magic,
            msg.body_crc,
            msg.queue_id,
            msg.flag,
            msg.queue_offset,
            msg.commit_log_offset,
            sys_flag,
            msg.born_timestamp,
            msg._born_ip,
            msg._born_port,
            msg.store_timestamp,
            msg._store_ip,
            msg._store_port,
            msg.reconsume_times,
            msg.prepared_transaction_offset,
            len(body),
        )
    except struct.error as exc:
        raise InvalidArgumentError(
            f"a field of the message does not fit its wire type: {exc}"
        ) from None
    return b"".join((head, body, topic_part, _INT16.pack(len(props)), props))


def body_crc32(body: bytes) -> int:
    """The BODYCRC a broker writes: CRC-32 of the stored body, masked to 31 bits as in Java."""
    return zlib.crc32(body) & 0x7FFFFFFF
