"""Message trace (``enable_trace=True``): a hook that records each send, consume and
transaction outcome in the Java client's trace format, and the flow that sends the
records to the trace topic in the background.

The hook only appends records to a bounded buffer: a send or a consume never waits
for trace. A record that finds the buffer full is dropped and counted
(:attr:`Tracer.dropped`). The dispatch flow packs the buffered records into trace
messages (up to :data:`MAX_RECORDS_PER_MESSAGE` records, :data:`MAX_TRACE_BODY`
bytes and :data:`MAX_TRACE_KEYS_CHARS` characters of keys each), sends one as soon
as a message's worth is waiting, or the oldest record waited :data:`FLUSH_DELAY`
seconds, with at most :data:`MAX_SENDS_IN_FLIGHT` sends at once. A trace message
that cannot be sent is dropped and its records counted in :attr:`Tracer.failed`.
Closing a client flushes what is buffered (:meth:`Tracer.flush_flow`).

What is recorded, as Java's trace hooks do:

- a ``Pub`` record per message of each send that got a result (not oneway sends,
  not failures); a batch gives one record per message, each under its own id
  (Java writes one record keyed by the joined ids);
- a ``SubBefore`` record per message handed to a handler, and a ``SubAfter`` per
  message once it returned: success, and the context code (0 success, 2 raised, 4
  asked to retry);
- an ``EndTransaction`` record per transaction outcome told to a broker, after the
  local transaction or a check-back.

Nothing is recorded for a message the broker marks ``TRACE_ON=false``, nor for
sends to the trace topic itself. Groups and topics are written without the
client's namespace.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Final

from rocketmq_proto.flows.effects import Flow, now, sleep, spawn
from rocketmq_proto.flows.hooks import ConsumeContext, EndTransactionContext, SendContext
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message
from rocketmq_proto.message.properties import MessageConst as _C
from rocketmq_proto.wire.errors import RocketMQError
from rocketmq_proto.wire.trace import (
    CONTENT_SEPARATOR,
    DEFAULT_REGION,
    RECORD_SEPARATOR,
    ConsumeReturnType,
    TraceMessageType,
    TraceRecord,
    TraceType,
    trace_keys,
)

if TYPE_CHECKING:
    from rocketmq_proto.flows.producer import ProducerCore

__all__ = [
    "FLUSH_DELAY",
    "MAX_RECORDS_PER_MESSAGE",
    "MAX_SENDS_IN_FLIGHT",
    "MAX_TRACE_BODY",
    "MAX_TRACE_KEYS_CHARS",
    "TRACE_BUFFER_RECORDS",
    "TRACE_SEND_TIMEOUT",
    "Tracer",
    "trace_producer_group",
]

log = logging.getLogger("rocketmq_proto.trace")

#: Records the buffer holds before it drops new ones.
TRACE_BUFFER_RECORDS: Final = 20_000
#: Characters of encoded records the buffer holds before it drops new ones (user
#: keys may make records long).
TRACE_BUFFER_CHARS: Final = 16 * 1024 * 1024
#: Records per trace message at most.
MAX_RECORDS_PER_MESSAGE: Final = 1000
#: A trace message's body at most, in bytes (Java's trace producer: 128000).
MAX_TRACE_BODY: Final = 120_000
#: A trace message's KEYS property at most, in characters (the broker refuses
#: properties over 32 KiB in all).
MAX_TRACE_KEYS_CHARS: Final = 16_000
#: Seconds a record waits at most for more to fill its message.
FLUSH_DELAY: Final = 1.0
#: Trace messages being sent at once, at most.
MAX_SENDS_IN_FLIGHT: Final = 4
#: Seconds a trace message's send may take (Java's trace producer: 5 s).
TRACE_SEND_TIMEOUT: Final = 5.0
#: Seconds between two looks at the buffer while it holds less than a message.
_POLL: Final = 0.05
#: The same while every send slot is taken.
_BUSY_POLL: Final = 0.005

S: Final = CONTENT_SEPARATOR
E: Final = RECORD_SEPARATOR
_KEYS: Final = _C.PROPERTY_KEYS
_TAGS: Final = _C.PROPERTY_TAGS
_REGION: Final = _C.PROPERTY_MSG_REGION
_TRACE_SWITCH: Final = _C.PROPERTY_TRACE_SWITCH
_UNIQ: Final = _C.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX

#: A buffered record: its message id, its message's keys, and the record encoded.
Entry = tuple[str, str | None, str]

#: Where ``before_consume`` leaves the request id and traced messages for ``after_consume``.
_EXTRA_KEY: Final = "rocketmq_trace"


def trace_producer_group(group: str, kind: str) -> str:
    """The group a client's trace messages are sent under (Java's inner trace
    producer's: ``_INNER_TRACE_PRODUCER-<group>-<PRODUCE|CONSUME>``)."""
    return f"_INNER_TRACE_PRODUCER-{group}-{kind}"


class Tracer:
    """One client's message trace: a hook (give it to the client's hooks) and the
    buffer its dispatch flow empties into ``topic`` through ``producer`` (a
    producer core whose sends no hook sees)."""

    def __init__(
        self,
        topic: str,
        producer: ProducerCore,
        ids: UniqueIdGenerator,
        *,
        namespace: str | None = None,
        capacity: int = TRACE_BUFFER_RECORDS,
    ) -> None:
        self.topic = topic
        self.producer = producer
        self._ids = ids
        self._namespace = namespace
        self._capacity = capacity
        self._buffer: deque[Entry] = deque()
        self._buffered_chars = 0
        #: Groups as the brokers know them -> as traces name them (no namespace).
        self._groups: dict[str, str] = {}
        #: When the dispatch flow first saw the oldest buffered record.
        self._waiting_since: float | None = None
        #: Trace messages being sent.
        self.in_flight = 0
        #: Records made, sent, dropped (buffer full) and lost with a failed send.
        self.recorded = 0
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"Tracer(topic={self.topic!r})"

    @property
    def buffered(self) -> int:
        """Records waiting to be sent."""
        return len(self._buffer)

    def stats(self) -> dict[str, int]:
        """The ``trace`` part of the client's ``stats()``: records made, sent, waiting,
        dropped because the buffer was full, and lost with a trace message that
        could not be sent."""
        return {
            "recorded": self.recorded,
            "sent": self.sent,
            "buffered": len(self._buffer),
            "dropped": self.dropped,
            "failed": self.failed,
        }

    # ----------------------------------------------------------------- hook

    def after_send(self, ctx: SendContext) -> None:
        result = ctx.result
        if result is None or not result.trace_on or ctx.message.topic.startswith(self.topic):
            return
        messages = ctx.messages
        count = len(messages)
        ids = result.msg_id.split(",") if count > 1 else [result.msg_id]
        offset_ids = result.offset_msg_id.split(",") if count > 1 else [result.offset_msg_id]
        # The fields every record of this send shares, up to its topic.
        head = S.join(
            (
                "Pub",
                str(ctx.timestamp_ms),
                result.region_id or DEFAULT_REGION,
                ns.unwrap(self._namespace, ctx.group),
            )
        )
        cost = int(ctx.elapsed * 1000) // count
        success = "true" if result.status.name == "SEND_OK" else "false"
        for i, msg in enumerate(messages):
            msg_id = ids[i] if i < len(ids) else ids[-1]
            props = msg.properties
            keys = props.get(_KEYS)
            text = (
                f"{head}{S}{ns.unwrap(self._namespace, msg.topic)}{S}{msg_id}{S}"
                f"{_text(props.get(_TAGS))}{S}{_text(keys)}{S}{result.broker_addr}{S}"
                f"{len(msg.body)}{S}{cost}{S}{int(_message_type(msg))}{S}"
                f"{offset_ids[i] if i < len(offset_ids) else ''}{S}{success}{E}"
            )
            self._append(msg_id, keys, text)

    def before_consume(self, ctx: ConsumeContext) -> None:
        ts = ctx.timestamp_ms
        request_id = self._ids.next_id(ts)
        head = f"SubBefore{S}{ts}{S}"
        middle = f"{S}{self._unwrapped(ctx.group)}{S}{request_id}{S}"
        traced: list[tuple[str, str | None]] = []
        append = self._append
        for msg in ctx.messages:
            props = msg.properties
            if props.get(_TRACE_SWITCH) == "false":
                continue
            keys = props.get(_KEYS)
            msg_id = props.get(_UNIQ) or msg.msg_id
            text = (
                f"{head}{props.get(_REGION) or DEFAULT_REGION}{middle}"
                f"{msg_id}{S}{msg.reconsume_times}{S}{'null' if keys is None else keys}{E}"
            )
            append(msg_id, keys, text)
            traced.append((msg_id, keys))
        if traced:
            # The batch's size too: the handler may change the list it was given.
            ctx.extra[_EXTRA_KEY] = (request_id, traced, len(ctx.messages))

    def after_consume(self, ctx: ConsumeContext) -> None:
        noted = ctx.extra.get(_EXTRA_KEY)
        if noted is None or (ctx.result is None and ctx.error is None):
            return  # nothing traced, or the handler did not run (the consumer closed)
        request_id, traced, count = noted
        if ctx.error is not None:
            success, code = "false", int(ConsumeReturnType.EXCEPTION)
        elif not ctx.succeeded:
            success, code = "false", int(ConsumeReturnType.FAILED)
        else:
            success, code = "true", int(ConsumeReturnType.SUCCESS)
        elapsed_ms = int(ctx.elapsed * 1000)
        # SubAfter: request id, message id, cost, success, keys, code, time, group.
        head = f"SubAfter{S}{request_id}{S}"
        middle = f"{S}{elapsed_ms // count}{S}{success}{S}"
        end = f"{S}{code}{S}{ctx.timestamp_ms + elapsed_ms}{S}{self._unwrapped(ctx.group)}{E}"
        append = self._append
        for msg_id, keys in traced:
            text = f"{head}{msg_id}{middle}{'null' if keys is None else keys}{end}"
            append(msg_id, keys, text)

    def _unwrapped(self, group: str) -> str:
        """``group`` without the namespace (remembered: it is asked per record)."""
        name = self._groups.get(group)
        if name is None:
            name = self._groups[group] = ns.unwrap(self._namespace, group)
        return name

    def after_end_transaction(self, ctx: EndTransactionContext) -> None:
        msg = ctx.message
        keys = msg.properties.get(_KEYS)
        record = TraceRecord(
            TraceType.END_TRANSACTION,
            ctx.msg_id,
            timestamp_ms=ctx.timestamp_ms,
            region_id=msg.properties.get(_REGION) or DEFAULT_REGION,
            group=ns.unwrap(self._namespace, ctx.group),
            topic=ns.unwrap(self._namespace, msg.topic),
            tags=msg.tags,
            keys=keys,
            store_host=ctx.broker_addr,
            msg_type=TraceMessageType.TRANSACTION_COMMIT,
            transaction_id=ctx.transaction_id,
            transaction_state=ctx.state,
            from_transaction_check=ctx.from_check,
        )
        self._append(ctx.msg_id, keys, record.encode())

    def _append(self, msg_id: str, keys: str | None, text: str) -> None:
        self.recorded += 1
        size = len(text)
        if len(self._buffer) >= self._capacity or self._buffered_chars + size > TRACE_BUFFER_CHARS:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "trace buffer full (%d records): %d records dropped so far",
                    self._capacity,
                    self.dropped,
                    extra={"rocketmq_topic": self.topic},
                )
            return
        self._buffer.append((msg_id, keys, text))
        self._buffered_chars += size

    # ------------------------------------------------------------- dispatch

    def take(self, now_s: float, *, flush: bool = False) -> list[Entry] | None:
        """The records (``(msg_id, keys, encoded)``) of the next trace message to
        send, if one is due: a full message's worth, or records that waited
        :data:`FLUSH_DELAY` (any, with ``flush``)."""
        buffer = self._buffer
        if not buffer:
            self._waiting_since = None
            return None
        if self._waiting_since is None:
            self._waiting_since = now_s
        if (
            not flush
            and len(buffer) < MAX_RECORDS_PER_MESSAGE
            and now_s - self._waiting_since < FLUSH_DELAY
        ):
            return None
        taken: list[Entry] = []
        size = keys_size = 0
        last_id = ""
        while buffer and len(taken) < MAX_RECORDS_PER_MESSAGE:
            msg_id, keys, text = entry = buffer[0]
            # A message's records mostly follow each other: its id is a key once.
            more_keys = (len(msg_id) + 1 if msg_id != last_id else 0) + (
                len(keys) + 1 if keys else 0
            )
            more = len(text.encode()) if not text.isascii() else len(text)
            if taken and (
                size + more > MAX_TRACE_BODY or keys_size + more_keys > MAX_TRACE_KEYS_CHARS
            ):
                break
            buffer.popleft()
            self._buffered_chars -= len(text)
            taken.append(entry)
            size += more
            keys_size += more_keys
            last_id = msg_id
        self._waiting_since = now_s if buffer else None
        return taken

    def dispatch_flow(self) -> Flow[None]:
        """Send trace messages as they are due, for as long as the client runs."""
        while True:
            if self.in_flight < MAX_SENDS_IN_FLIGHT:
                records = self.take((yield from now()))
                if records is not None:
                    self.in_flight += 1
                    yield from spawn(self._send_flow(records), "trace send")
                    continue
                yield from sleep(_POLL)
            else:
                yield from sleep(_BUSY_POLL)  # a send ends soon: be there to start the next

    def flush_flow(self, timeout: float) -> Flow[int]:
        """Send everything buffered and wait for the sends in flight, up to
        ``timeout`` seconds; the records still unsent (0 when all went)."""
        start = yield from now()
        while True:
            now_s = yield from now()
            if now_s - start >= timeout:
                break
            records = self.take(now_s, flush=True)
            if records is not None:
                self.in_flight += 1
                # Each send gets what is left of the time, never more.
                left = timeout - (now_s - start)
                yield from self._send_flow(records, min(TRACE_SEND_TIMEOUT, left))
            elif self.in_flight:
                yield from sleep(_POLL)
            else:
                break
        return len(self._buffer)

    def _send_flow(self, records: list[Entry], timeout: float = TRACE_SEND_TIMEOUT) -> Flow[None]:
        try:
            body = "".join(text for _, _, text in records).encode()
            message = Message(self.topic, body, keys=trace_keys((i, k) for i, k, _ in records))
            yield from self.producer.send_flow(message, timeout)
        except RocketMQError as exc:
            self.failed += len(records)
            log.info(
                "trace message of %d records to %s not sent: %s",
                len(records),
                self.topic,
                exc,
                extra={"rocketmq_topic": self.topic},
            )
        else:
            self.sent += len(records)
        finally:
            self.in_flight -= 1


def _text(value: str | None) -> str:
    """A field as Java's StringBuilder writes it: ``null`` for none."""
    return "null" if value is None else value


def _message_type(msg: Message) -> TraceMessageType:
    props = msg.properties
    if props.get(_C.PROPERTY_TRANSACTION_PREPARED) == "true":
        return TraceMessageType.TRANSACTION_HALF
    if msg.delay_level or msg.deliver_at is not None or "__STARTDELIVERTIME" in props:
        return TraceMessageType.DELAY
    return TraceMessageType.NORMAL
