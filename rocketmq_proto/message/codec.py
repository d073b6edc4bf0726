"""Message encodings: batch bodies and stored messages, and the stored body's CRC.

Wire facts (all integers big-endian), as Java's ``MessageDecoder`` reads and writes them:

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

import struct
import zlib
from collections.abc import Sequence
from typing import Final

from rocketmq_proto.message.compression import (
    _COMPRESSED,
    DEFAULT_COMPRESS_LEVEL,
    _compress,
    _compression_of,
    decompress_body,
)
from rocketmq_proto.message.model import (
    _BORNHOST_V6,
    _STOREHOST_V6,
    RETRY_GROUP_TOPIC_PREFIX,
    Message,
    MessageExt,
    _check_value,
)
from rocketmq_proto.message.properties import (
    MAX_PROPERTIES_SIZE,
    MessageConst,
    decode_properties,
    encode_properties,
)
from rocketmq_proto.wire.errors import (
    InvalidArgumentError,
    InvalidMessageError,
    InvalidPropertyError,
    RemoteProtocolError,
)

__all__ = [
    "MAGIC_CODE_V1",
    "MAGIC_CODE_V2",
    "body_crc32",
    "decode_batch",
    "decode_message",
    "decode_messages",
    "encode_batch",
    "encode_stored_message",
    "unwrap_inner_batch",
]

_C = MessageConst

MAGIC_CODE_V1: Final = 0xDAA320A7
"""Stored message whose topic length is one byte."""
MAGIC_CODE_V2: Final = 0xDAA320AB
"""Stored message whose topic length is an int16 (brokers use it for topics over 127 bytes)."""

# sysFlag bits (the same values as ``codes.MessageSysFlag``, as plain ints for the hot path).
_NEED_UNWRAP: Final = 0x40
_INNER_BATCH: Final = 0x80

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
_UNIQ_KEY: Final = _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX
_UNIQ_PREFIX: Final = _UNIQ_KEY + "\x01"


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
    add = parts.extend
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
        if not isinstance(uid, str) or not uid:
            raise InvalidArgumentError(
                f"unique id {uid!r} for batch member {index} is not a non-empty str"
            )
        props = msg.properties
        if props:
            for key in _TIMER_KEYS:
                if key in props:
                    raise InvalidMessageError(
                        f"batch member {index} is delayed ({key}={props[key]!r}): "
                        "batches cannot be delayed"
                    )
        if (_wait_store_ok(msg) if props else True) != wait:  # no properties: WAIT is true
            raise InvalidMessageError(
                f"batch member {index} differs in WAIT from the first message"
            )
        if _UNIQ_KEY in props:
            merged = dict(props)
            merged[_UNIQ_KEY] = uid
            prop_bytes = encode_properties(merged)
        else:
            _check_value("unique id", uid)
            prop_bytes = (_UNIQ_PREFIX + uid + "\x02").encode()
            if props:
                prop_bytes = encode_properties(props) + prop_bytes
            if len(prop_bytes) > MAX_PROPERTIES_SIZE:
                raise InvalidPropertyError(
                    f"batch member {index}: properties encode to {len(prop_bytes)} bytes, "
                    f"more than {MAX_PROPERTIES_SIZE}"
                )
        body = msg.body
        add(
            (
                head_pack(_BATCH_FIXED + len(body) + len(prop_bytes), 0, 0, msg.flag, len(body)),
                body,
                len_pack(len(prop_bytes)),
                prop_bytes,
            )
        )
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
