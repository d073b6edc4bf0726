"""POP consumption on the wire (RocketMQ 5.x): receipt handles, the offset
lists of a POP_MESSAGE answer, the BATCH_ACK_MESSAGE body, and the bodies of
QUERY_ASSIGNMENT and SET_MESSAGE_REQUEST_MODE (a group's mode per topic).

A popped message is acked (or hidden longer) by its receipt handle, the
``POP_CK`` property: space-separated fields ``ckOffset popTime invisibleTime
reviveQid retry brokerName queueId queueOffset`` (Java's ``ExtraInfoUtil``),
where ``retry`` says which topic the message was read from: ``0`` the topic,
``1`` its pop retry topic ``%RETRY%<group>_<topic>``, ``2`` the newer
``%RETRY%<group>+<topic>``. A ``reviveQid`` of 999 marks an orderly (FIFO)
pop. The proxy appends the commit log offset; any field after the eighth is
kept as it is, so a handle always goes back exactly as it came.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass

from rocketmq_proto.wire import jsonlenient as jl
from rocketmq_proto.wire.errors import InvalidArgumentError, RemoteProtocolError

__all__ = [
    "NORMAL_TOPIC",
    "POP_ORDER_REVIVE_QUEUE",
    "REQUEST_MODES",
    "RETRY_TOPIC_V1",
    "RETRY_TOPIC_V2",
    "QueueAssignment",
    "ReceiptHandle",
    "encode_batch_ack",
    "encode_query_assignment",
    "encode_set_request_mode",
    "offset_key",
    "parse_offset_counts",
    "parse_offset_lists",
    "parse_query_assignment",
    "parse_start_offsets",
    "pop_retry_topic",
    "queue_offset_key",
    "retry_flag",
]

#: ``reviveQid`` of an orderly pop (no checkpoint; the queue's offset is
#: committed by the ack).
POP_ORDER_REVIVE_QUEUE = 999
NORMAL_TOPIC = "0"
RETRY_TOPIC_V1 = "1"
RETRY_TOPIC_V2 = "2"
_RETRY_PREFIX = "%RETRY%"


def retry_flag(topic: str) -> str:
    """Which kind of topic ``topic`` is: ``0`` a topic, ``1`` or ``2`` a pop retry topic."""
    if topic.startswith(_RETRY_PREFIX):
        return RETRY_TOPIC_V2 if "+" in topic else RETRY_TOPIC_V1
    return NORMAL_TOPIC


def pop_retry_topic(topic: str, group: str, flag: str) -> str:
    """The topic a message with retry ``flag`` was read from (``topic`` is the one
    subscribed): ``topic`` itself, or one of ``group``'s pop retry topics."""
    if flag == RETRY_TOPIC_V1:
        return f"{_RETRY_PREFIX}{group}_{topic}"
    if flag == RETRY_TOPIC_V2:
        return f"{_RETRY_PREFIX}{group}+{topic}"
    return topic


def offset_key(flag: str, queue_id: int) -> str:
    """The key of a queue in a POP answer's offset lists: ``<flag>@<queueId>``."""
    return f"{flag}@{queue_id}"


def queue_offset_key(flag: str, queue_id: int, queue_offset: int) -> str:
    """The key of one message in an orderly POP answer's redelivery counts."""
    return f"{flag}@qo{queue_id}%{queue_offset}"


def _entries(text: str | None, what: str) -> Iterable[tuple[str, str]]:
    if not text:
        return
    for one in text.split(";"):
        parts = one.split(" ")
        if len(parts) != 3:
            raise RemoteProtocolError(f"POP answer's {what} entry {one!r} is not 'flag id value'")
        yield f"{parts[0]}@{parts[1]}", parts[2]


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RemoteProtocolError(f"POP answer's {what} holds {text!r}, not a number") from None


def parse_start_offsets(text: str | None) -> dict[str, int]:
    """``startOffsetInfo``: each queue's first popped offset (the checkpoint's)."""
    return {key: _number(value, "startOffsetInfo") for key, value in _entries(text, "start")}


def parse_offset_lists(text: str | None) -> dict[str, list[int]]:
    """``msgOffsetInfo``: the offsets popped from each queue, in order."""
    return {
        key: [_number(v, "msgOffsetInfo") for v in value.split(",")]
        for key, value in _entries(text, "offset")
    }


def parse_offset_counts(text: str | None) -> dict[str, int]:
    """``orderCountInfo`` (orderly pops): how often each message (or queue) was
    delivered before."""
    return {key: _number(value, "orderCountInfo") for key, value in _entries(text, "count")}


@dataclass(frozen=True, slots=True)
class ReceiptHandle:
    """A popped message's receipt handle (its ``POP_CK``), read."""

    #: The handle as it came: what an ack or a change of invisible time sends.
    text: str
    ck_offset: int
    pop_time: int
    invisible_time: int
    revive_qid: int
    retry: str
    broker_name: str
    queue_id: int
    #: The message's own queue offset.
    offset: int

    @classmethod
    def parse(cls, text: str) -> ReceiptHandle:
        """Read ``text``; :class:`InvalidArgumentError` if it is no receipt handle."""
        parts = text.split(" ")
        if len(parts) < 8:
            raise InvalidArgumentError(
                f"receipt handle {text!r} has {len(parts)} fields, not at least 8: "
                "not a popped message's"
            )
        try:
            return cls(
                text,
                int(parts[0]),
                int(parts[1]),
                int(parts[2]),
                int(parts[3]),
                parts[4],
                parts[5],
                int(parts[6]),
                int(parts[7]),
            )
        except ValueError:
            raise InvalidArgumentError(f"receipt handle {text!r} is malformed") from None

    @classmethod
    def build(
        cls,
        ck_offset: int,
        pop_time: int,
        invisible_time: int,
        revive_qid: int,
        retry: str,
        broker_name: str,
        queue_id: int,
        offset: int,
    ) -> ReceiptHandle:
        """A handle from its fields (as Java's ``buildExtraInfo`` writes it)."""
        text = (
            f"{ck_offset} {pop_time} {invisible_time} {revive_qid} {retry} "
            f"{broker_name} {queue_id} {offset}"
        )
        return cls(
            text, ck_offset, pop_time, invisible_time, revive_qid, retry, broker_name, queue_id,
            offset,
        )  # fmt: skip

    @property
    def is_order(self) -> bool:
        """Whether the message came from an orderly (FIFO) pop."""
        return self.revive_qid == POP_ORDER_REVIVE_QUEUE

    @property
    def visible_at(self) -> int:
        """Epoch ms at which the message becomes visible again unless acked."""
        return self.pop_time + self.invisible_time

    def real_topic(self, topic: str, group: str) -> str:
        """The topic the message was read from (what an ack names), given the
        subscribed ``topic`` and the ``group`` (both as the broker knows them)."""
        return pop_retry_topic(topic, group, self.retry)


def _bitset(bits: Iterable[int]) -> str:
    """Java's ``BitSet.toByteArray()`` of ``bits`` (little-endian), in base64."""
    value = 0
    for bit in bits:
        value |= 1 << bit
    raw = value.to_bytes((value.bit_length() + 7) // 8, "little")
    return base64.b64encode(raw).decode("ascii")


def encode_batch_ack(group: str, topic: str, handles: Iterable[ReceiptHandle]) -> bytes:
    """The body of BATCH_ACK_MESSAGE for ``handles`` of one broker: one entry per
    checkpoint (retry flag, queue, checkpoint offset, pop time), each message a
    bit at its offset past the checkpoint's. ``topic`` is the subscribed topic."""
    acks: dict[tuple[str, int, int, int], dict[str, object]] = {}
    bits: dict[tuple[str, int, int, int], set[int]] = {}
    broker_name = ""
    for handle in handles:
        broker_name = broker_name or handle.broker_name
        if handle.broker_name != broker_name:
            raise InvalidArgumentError("a batch ack goes to one broker: handles of two given")
        key = (handle.retry, handle.queue_id, handle.ck_offset, handle.pop_time)
        if key not in acks:
            acks[key] = {
                "c": group,
                "t": topic,
                "r": handle.retry,
                "so": handle.ck_offset,
                "q": handle.queue_id,
                "rq": handle.revive_qid,
                "pt": handle.pop_time,
                "it": handle.invisible_time,
            }
            bits[key] = set()
        bit = handle.offset - handle.ck_offset
        if bit < 0:
            raise InvalidArgumentError(f"receipt handle {handle.text!r}: offset before checkpoint")
        bits[key].add(bit)
    entries = [{**ack, "b": _bitset(bits[key])} for key, ack in acks.items()]
    return json.dumps({"acks": entries, "brokerName": broker_name}).encode()


# ------------------------------------------------------- request modes

#: A group's way of consuming a topic, as the brokers keep it (``MessageRequestMode``).
REQUEST_MODES = ("PULL", "POP")


def encode_query_assignment(
    topic: str, group: str, client_id: str, message_model: str, strategy: str = "AVG"
) -> bytes:
    """QUERY_ASSIGNMENT's (400) body: which queues of ``topic`` this client
    consumes, and how (the broker knows the strategies ``AVG`` and ``AVG_BY_CIRCLE``)."""
    return jl.dumps(
        {
            "clientId": client_id,
            "consumerGroup": group,
            "messageModel": message_model,
            "strategyName": strategy,
            "topic": topic,
        }
    ).encode()


@dataclass(frozen=True, slots=True)
class QueueAssignment:
    """One queue of QUERY_ASSIGNMENT's answer and its mode (``PULL`` or ``POP``);
    a ``queue_id`` of -1 means every queue of that broker."""

    topic: str
    broker_name: str
    queue_id: int
    mode: str


def parse_query_assignment(body: bytes | None) -> list[QueueAssignment] | None:
    """QUERY_ASSIGNMENT's answer; ``None`` when the broker has none to give (the
    topic unknown to it, or this client not yet in the group)."""
    what = "query assignment response"
    if not body:
        return None
    obj = jl.as_object(jl.loads(body, what=what), what)
    if obj.get("messageQueueAssignments") is None:
        return None
    out = []
    for i, entry in enumerate(jl.get_list(obj, "messageQueueAssignments", what)):
        where = f"{what}: messageQueueAssignments[{i}]"
        item = jl.as_object(entry, where)
        queue = jl.get_object(item, "messageQueue", where)
        mode = jl.get_opt_str(item, "mode", where) or "PULL"
        if mode not in REQUEST_MODES:
            raise RemoteProtocolError(f"{where}: unknown mode {mode!r}")
        out.append(
            QueueAssignment(
                jl.get_str(queue, "topic", where),
                jl.get_str(queue, "brokerName", where),
                jl.get_int(queue, "queueId", where),
                mode,
            )
        )
    return out


def encode_set_request_mode(topic: str, group: str, mode: str, pop_share_queue_num: int) -> bytes:
    """SET_MESSAGE_REQUEST_MODE's (401) body: ``group`` consumes ``topic`` by
    ``mode``; in POP mode each consumer pops ``pop_share_queue_num`` queues beyond
    its own share (0 or less: every queue)."""
    if mode not in REQUEST_MODES:
        raise InvalidArgumentError(f"mode must be one of {REQUEST_MODES}, got {mode!r}")
    return jl.dumps(
        {
            "consumerGroup": group,
            "mode": mode,
            "popShareQueueNum": pop_share_queue_num,
            "topic": topic,
        }
    ).encode()
