"""Message properties: their names (:class:`MessageConst`) and their encoding.

Wire facts, as Java's ``MessageDecoder`` reads and writes them: ``key \\x01 value \\x02``
repeated, UTF-8, at most 32767 bytes (an int16 length).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from rocketmq_proto.wire.errors import InvalidPropertyError, RemoteProtocolError

__all__ = [
    "MAX_PROPERTIES_SIZE",
    "RESERVED_PROPERTY_KEYS",
    "MessageConst",
    "decode_properties",
    "encode_properties",
    "properties_string",
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
