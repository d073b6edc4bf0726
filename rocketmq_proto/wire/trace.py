"""Message trace records in the Java client's encoding, so that the RocketMQ tools
(``mqadmin queryMsgTraceById``, the dashboard) read this client's traces and this
client reads theirs.

A trace message's body is a run of records, each ended by U+0002, its fields
joined by U+0001 (Java's ``TraceDataEncoder``). The record kinds and their fields,
in order:

- ``Pub``: timestamp, region, producer group, topic, message id, tags, keys, store
  host, body length, cost (ms), message type, offset message id, success;
- ``SubBefore`` (one per message of a consumed batch): timestamp, region, consumer
  group, request id, message id, retry times, keys;
- ``SubAfter``: request id, message id, cost (ms, per message), success, keys,
  context code, timestamp, consumer group;
- ``EndTransaction``: timestamp, region, producer group, topic, message id, tags,
  keys, store host, message type, transaction id, transaction state, whether it
  answered a check-back;
- ``Recall`` (5.3 and later; read only): timestamp, region, group, topic, message
  id, success.

Java writes an absent tag, key or transaction id as the text ``null``; so does this
module, and it reads ``null`` back as ``None``. A trace message is keyed (its
``KEYS`` property) by every record's message id and user keys, so that a
QUERY_MESSAGE by key finds it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from rocketmq_proto.wire.errors import RemoteProtocolError

__all__ = [
    "CONTENT_SEPARATOR",
    "DEFAULT_REGION",
    "DEFAULT_TRACE_TOPIC",
    "RECORD_SEPARATOR",
    "ConsumeReturnType",
    "TraceMessageType",
    "TraceRecord",
    "TraceType",
    "decode_trace_data",
    "trace_keys",
]

#: The system topic traces go to unless a client names its own (Java's
#: ``TopicValidator.RMQ_SYS_TRACE_TOPIC``).
DEFAULT_TRACE_TOPIC: Final = "RMQ_SYS_TRACE_TOPIC"
#: The region written when the broker names none (Java's fallback on the send path).
DEFAULT_REGION: Final = "DefaultRegion"
#: Between the fields of a record (Java's ``TraceConstants.CONTENT_SPLITOR``).
CONTENT_SEPARATOR: Final = "\x01"
#: After each record (Java's ``TraceConstants.FIELD_SPLITOR``).
RECORD_SEPARATOR: Final = "\x02"

_NULL: Final = "null"


class TraceType(enum.StrEnum):
    """A record's kind; the value is its name on the wire."""

    PUB = "Pub"
    SUB_BEFORE = "SubBefore"
    SUB_AFTER = "SubAfter"
    END_TRANSACTION = "EndTransaction"
    RECALL = "Recall"


class TraceMessageType(enum.IntEnum):
    """What was sent (Java's ``MessageType``; the value is its ordinal on the wire)."""

    NORMAL = 0
    TRANSACTION_HALF = 1
    TRANSACTION_COMMIT = 2
    DELAY = 3
    ORDER = 4


class ConsumeReturnType(enum.IntEnum):
    """How a handler call ended (Java's ``ConsumeReturnType``; its ordinal is a
    SubAfter record's context code)."""

    SUCCESS = 0
    TIME_OUT = 1
    EXCEPTION = 2
    RETURNNULL = 3
    FAILED = 4


@dataclass(slots=True)
class TraceRecord:
    """One trace record: the fields its kind has are set, the others keep their
    defaults. ``timestamp_ms`` is when the send or the handler call began
    (SubAfter: when the call ended)."""

    type: TraceType
    msg_id: str
    timestamp_ms: int = 0
    region_id: str = DEFAULT_REGION
    group: str = ""
    topic: str = ""
    tags: str | None = None
    keys: str | None = None
    #: The broker (or proxy) address the message was sent to.
    store_host: str = ""
    body_length: int = 0
    #: Milliseconds the send took, or the handler call per message.
    cost_ms: int = 0
    msg_type: TraceMessageType = TraceMessageType.NORMAL
    offset_msg_id: str = ""
    success: bool = True
    #: The sending client's address (written by the Go client only).
    client_host: str = ""
    #: Ties a consume's SubBefore records to its SubAfter records.
    request_id: str = ""
    retry_times: int = 0
    context_code: ConsumeReturnType | int = ConsumeReturnType.SUCCESS
    transaction_id: str | None = None
    #: ``COMMIT_MESSAGE``, ``ROLLBACK_MESSAGE`` or ``UNKNOW`` (Java's spelling).
    transaction_state: str = ""
    from_transaction_check: bool = False

    def encode(self) -> str:
        """The record as Java writes it, its separator included."""
        t = self.type
        if t is TraceType.PUB:
            fields = [
                t.value,
                str(self.timestamp_ms),
                self.region_id,
                self.group,
                self.topic,
                self.msg_id,
                _text(self.tags),
                _text(self.keys),
                self.store_host,
                str(self.body_length),
                str(self.cost_ms),
                str(int(self.msg_type)),
                self.offset_msg_id,
                _bool(self.success),
            ]
        elif t is TraceType.SUB_BEFORE:
            fields = [
                t.value,
                str(self.timestamp_ms),
                self.region_id,
                self.group,
                self.request_id,
                self.msg_id,
                str(self.retry_times),
                _text(self.keys),
            ]
        elif t is TraceType.SUB_AFTER:
            fields = [
                t.value,
                self.request_id,
                self.msg_id,
                str(self.cost_ms),
                _bool(self.success),
                _text(self.keys),
                str(int(self.context_code)),
                str(self.timestamp_ms),
                self.group,
            ]
        elif t is TraceType.END_TRANSACTION:
            fields = [
                t.value,
                str(self.timestamp_ms),
                self.region_id,
                self.group,
                self.topic,
                self.msg_id,
                _text(self.tags),
                _text(self.keys),
                self.store_host,
                str(int(self.msg_type)),
                _text(self.transaction_id),
                self.transaction_state,
                _bool(self.from_transaction_check),
            ]
        else:
            fields = [
                t.value,
                str(self.timestamp_ms),
                self.region_id,
                self.group,
                self.topic,
                self.msg_id,
                _bool(self.success),
            ]
        return CONTENT_SEPARATOR.join(fields) + RECORD_SEPARATOR


def _text(value: str | None) -> str:
    return _NULL if value is None else value


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _optional(value: str) -> str | None:
    return None if value == _NULL else value


def _parse_bool(value: str) -> bool:
    return value.lower() == "true"  # as Java's Boolean.parseBoolean


def trace_keys(records: Iterable[tuple[str, str | None]]) -> list[str]:
    """The ``KEYS`` of a trace message holding records of ``(message id, its
    message's keys)``: each id and user key (keys split on spaces), once each, in
    order."""
    keys: dict[str, None] = {}
    for msg_id, user_keys in records:
        keys[msg_id] = None
        if user_keys:
            for key in user_keys.split(" "):
                if key:
                    keys[key] = None
    return list(keys)


def decode_trace_data(text: str) -> list[TraceRecord]:
    """The records of a trace message body, in order. Records of an unknown kind
    are skipped (as Java does); a known record too short or with a non-number
    where a number belongs raises :class:`RemoteProtocolError`."""
    records: list[TraceRecord] = []
    for raw in text.split(RECORD_SEPARATOR):
        if not raw:
            continue
        fields = raw.split(CONTENT_SEPARATOR)
        while fields and not fields[-1]:  # as Java's String.split drops trailing empties
            fields.pop()
        try:
            record = _decode_record(fields)
        except (IndexError, ValueError) as exc:
            raise RemoteProtocolError(f"trace record {raw[:80]!r} unreadable: {exc}") from None
        if record is not None:
            records.append(record)
    return records


def _decode_record(f: list[str]) -> TraceRecord | None:
    kind = f[0] if f else ""
    if kind == TraceType.PUB:
        record = TraceRecord(
            TraceType.PUB,
            f[5],
            timestamp_ms=int(f[1]),
            region_id=f[2],
            group=f[3],
            topic=f[4],
            tags=_optional(f[6]),
            keys=_optional(f[7]),
            store_host=f[8],
            body_length=int(f[9]),
            cost_ms=int(f[10]),
            msg_type=TraceMessageType(int(f[11])),
        )
        if len(f) == 13:
            record.success = _parse_bool(f[12])
        elif len(f) >= 14:
            record.offset_msg_id, record.success = f[12], _parse_bool(f[13])
            if len(f) >= 15:
                record.client_host = f[14]
        return record
    if kind == TraceType.SUB_BEFORE:
        return TraceRecord(
            TraceType.SUB_BEFORE,
            f[5],
            timestamp_ms=int(f[1]),
            region_id=f[2],
            group=f[3],
            request_id=f[4],
            retry_times=int(f[6]),
            keys=_optional(f[7]) if len(f) > 7 else None,
        )
    if kind == TraceType.SUB_AFTER:
        record = TraceRecord(
            TraceType.SUB_AFTER,
            f[2],
            request_id=f[1],
            cost_ms=int(f[3]),
            success=_parse_bool(f[4]),
            keys=_optional(f[5]) if len(f) > 5 else None,
        )
        if len(f) >= 7:
            record.context_code = _context_code(int(f[6]))
        if len(f) >= 9:
            record.timestamp_ms, record.group = int(f[7]), f[8]
        return record
    if kind == TraceType.END_TRANSACTION:
        return TraceRecord(
            TraceType.END_TRANSACTION,
            f[5],
            timestamp_ms=int(f[1]),
            region_id=f[2],
            group=f[3],
            topic=f[4],
            tags=_optional(f[6]),
            keys=_optional(f[7]),
            store_host=f[8],
            msg_type=TraceMessageType(int(f[9])),
            transaction_id=_optional(f[10]),
            transaction_state=f[11],
            from_transaction_check=_parse_bool(f[12]),
        )
    if kind == TraceType.RECALL:
        return TraceRecord(
            TraceType.RECALL,
            f[5],
            timestamp_ms=int(f[1]),
            region_id=f[2],
            group=f[3],
            topic=f[4],
            success=_parse_bool(f[6]),
        )
    return None


def _context_code(value: int) -> ConsumeReturnType | int:
    try:
        return ConsumeReturnType(value)
    except ValueError:
        return value
