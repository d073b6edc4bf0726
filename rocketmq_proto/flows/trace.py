"""Message trace (``enable_trace=True``): each send, consume and transaction
outcome recorded in the Java client's trace format, and the flow that sends the
records to the trace topic in the background.

The client's flows tell the :class:`Tracer` directly (not through the hooks, which
cost a context and two calls per consume): a send or a consume never waits for
trace. A handler call is recorded as one append, its records written later by the
dispatch flow. A record that finds the buffer full is dropped and counted
(:attr:`Tracer.dropped`). The dispatch flow packs the buffered records into trace
messages (up to :data:`MAX_RECORDS_PER_MESSAGE` records, :data:`MAX_TRACE_BODY`
bytes and :data:`MAX_TRACE_KEYS_BYTES` bytes of keys each), sends one as soon
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
  asked to retry). Both are made once the handler returned (the SubBefore with
  the time the call began): a call that never returns leaves no record;
- an ``EndTransaction`` record per transaction outcome told to a broker, after the
  local transaction or a check-back.

Nothing is recorded for a message the broker marks ``TRACE_ON=false``, nor for
sends to the trace topic itself. Groups and topics are written without the
client's namespace.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from rocketmq_proto.flows.effects import Flow, now, sleep, spawn
from rocketmq_proto.flows.hooks import EndTransactionContext
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message, MessageExt, number_property
from rocketmq_proto.message.properties import MessageConst as _C
from rocketmq_proto.wire.codes import SendStatus
from rocketmq_proto.wire.errors import RocketMQError
from rocketmq_proto.wire.trace import (
    CONTENT_SEPARATOR,
    DEFAULT_REGION,
    RECORD_SEPARATOR,
    ConsumeReturnType,
    TraceMessageType,
    TraceRecord,
    TraceType,
)

if TYPE_CHECKING:
    from rocketmq_proto.flows.producer import ProducerCore, SendResult

__all__ = [
    "FLUSH_DELAY",
    "MAX_RECORDS_PER_MESSAGE",
    "MAX_SENDS_IN_FLIGHT",
    "MAX_TRACE_BODY",
    "MAX_TRACE_KEYS_BYTES",
    "TRACE_BUFFER_RECORDS",
    "TRACE_SEND_TIMEOUT",
    "Tracer",
    "trace_producer_group",
]

log = logging.getLogger("rocketmq_proto.trace")

#: Records the buffer holds before it drops new ones.
TRACE_BUFFER_RECORDS: Final = 20_000
#: Bytes of encoded records the buffer holds before it drops new ones (user keys
#: may make records long).
TRACE_BUFFER_BYTES: Final = 16 * 1024 * 1024
#: Records per trace message at most.
MAX_RECORDS_PER_MESSAGE: Final = 2000
#: A trace message's body at most, in bytes, before its compression (Java's trace
#: producer: 128000; fewer, larger trace messages cost a consumer less per record,
#: and a body of these records compresses about 15 to 1).
MAX_TRACE_BODY: Final = 240_000
#: A trace message's KEYS property at most, in UTF-8 bytes (the broker refuses
#: properties over 32 KiB in all; the trace message's other properties take a
#: few hundred).
MAX_TRACE_KEYS_BYTES: Final = 30_000
#: Seconds a record waits at most for more to fill its message.
FLUSH_DELAY: Final = 1.0
#: Trace messages being sent at once, at most.
MAX_SENDS_IN_FLIGHT: Final = 4
#: Seconds a trace message's send may take (Java's trace producer: 5 s).
TRACE_SEND_TIMEOUT: Final = 5.0
#: Handler calls whose records wait to be written, at most: writing them soon lets
#: their messages go (kept longer, they would outlive the garbage collector's
#: youngest generation).
_WRITE_AFTER: Final = 16
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

#: A handler call, recorded as it ended and encoded by the dispatch flow: the
#: group, the messages, when it began (ms), how long it ran (s), how it ended.
_Consumed = tuple[str, tuple[MessageExt, ...], int, float, ConsumeReturnType]


#: A SubAfter record's success and context code, by how the handler call ended
#: (indexed by its number: an enum member as a dict key would hash in Python).
_OUTCOMES: Final = tuple(
    ("true" if code == 0 else "false", str(code)) for code in range(max(ConsumeReturnType) + 1)
)


def trace_producer_group(group: str, kind: str) -> str:
    """The group a client's trace messages are sent under (Java's inner trace
    producer's: ``_INNER_TRACE_PRODUCER-<group>-<PRODUCE|CONSUME>``)."""
    return f"_INNER_TRACE_PRODUCER-{group}-{kind}"


class TraceBatch:
    """The records of one trace message as they are written: the encoded records,
    the message's keys (each message id and user key, once per record that names
    it: :meth:`keys_text` keeps each once), and its sizes."""

    __slots__ = ("keys", "keys_size", "parts", "records", "size")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.keys: list[str] = []
        #: Bytes of the body; UTF-8 bytes of the keys with their separators, a key
        #: named twice counted twice (so never less than :meth:`keys_text` takes).
        self.size = 0
        self.keys_size = 0
        self.records = 0

    def __repr__(self) -> str:
        return f"TraceBatch(records={self.records}, size={self.size})"

    def body(self) -> bytes:
        return "".join(self.parts).encode()

    def keys_text(self) -> str:
        """The trace message's KEYS property: each key once, in the order written
        (a key named twice in one trace message is rare: a message consumed again
        within a second, or a message id also given as a key)."""
        return " ".join(dict.fromkeys(self.keys))


class Tracer:
    """One client's message trace: what the client's flows tell it, written into
    trace messages that its dispatch flow sends to ``topic`` through ``producer``
    (a producer core whose sends no hook sees, nor the trace)."""

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
        #: Handler calls whose records are not written yet.
        self._consumed: deque[_Consumed] = deque()
        #: The trace message being filled, and those full and waiting to be sent.
        self._open = TraceBatch()
        self._full: deque[TraceBatch] = deque()
        #: Records not sent yet, written or not (at most ``capacity``).
        self._records = 0
        #: Bytes of the records written and not sent yet.
        self._buffered_bytes = 0
        #: Groups as the brokers know them -> as traces name them (no namespace).
        self._groups: dict[str, str] = {}
        self._topics: dict[str, str] = {}
        #: Request ids of handler calls: this client's message id prefix (its
        #: address, process and instance) and a counter.
        self._request_prefix = ids.prefix
        self._requests = 0
        #: When the dispatch flow first saw the open message's first record.
        self._waiting_since: float | None = None
        #: Trace messages being sent, and their records.
        self.in_flight = 0
        self._sending = 0
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
        return self._records

    def stats(self) -> dict[str, int]:
        """The ``trace`` part of the client's ``stats()``: records made, sent, waiting,
        dropped because the buffer was full, and lost with a trace message that
        could not be sent."""
        return {
            "recorded": self.recorded,
            "sent": self.sent,
            "buffered": self._records,
            "dropped": self.dropped,
            "failed": self.failed,
        }

    # ------------------------------------------------------------- recording
    # The client's flows call these directly (not through the hooks machinery). A
    # traced handler call costs one call and one append; its records are written by
    # the dispatch flow.

    def published(
        self,
        group: str,
        messages: Sequence[Message],
        result: SendResult,
        timestamp_ms: int,
        elapsed: float,
    ) -> None:
        """A send that got ``result`` (one ``Pub`` record per message, written now:
        the caller may change a message once it is sent): sent at ``timestamp_ms``,
        answered ``elapsed`` seconds later. A batch's messages share one topic."""
        if not result.trace_on:
            return
        topic = messages[0].topic
        if topic.startswith(self.topic):
            return
        count = len(messages)
        if not self._room(count):
            return
        ids = result.msg_id.split(",") if count > 1 else (result.msg_id,)
        offset_ids = result.offset_msg_id.split(",") if count > 1 else (result.offset_msg_id,)
        # Pub: time, region, group, topic, message id, tags, keys, store host, body
        # size, cost, message type, offset message id, success.
        head = (
            f"Pub{S}{timestamp_ms}{S}{result.region_id or DEFAULT_REGION}{S}"
            f"{self._unwrapped(group)}{S}{self._unwrapped_topic(topic)}{S}"
        )
        tail = f"{S}{int(elapsed * 1000) // count}{S}"
        end = f"{S}{'true' if result.status is SendStatus.SEND_OK else 'false'}{E}"
        store = result.broker_addr
        for i, msg in enumerate(messages):
            msg_id = ids[i] if i < len(ids) else ids[-1]
            props = msg.properties
            keys = props.get(_KEYS)
            tags = props.get(_TAGS)
            text = (
                f"{head}{msg_id}{S}{'null' if tags is None else tags}{S}"
                f"{'null' if keys is None else keys}{S}{store}{S}{len(msg.body)}{tail}"
                f"{_pub_type(props)}{S}{offset_ids[i] if i < len(offset_ids) else ''}{end}"
            )
            self._write(msg_id, keys, text, 1)

    def consumed(
        self,
        group: str,
        messages: tuple[MessageExt, ...],
        start_ms: int,
        elapsed: float,
        code: ConsumeReturnType,
    ) -> None:
        """A handler call on ``messages`` that began at ``start_ms`` and ran
        ``elapsed`` seconds, ending as ``code``: a ``SubBefore`` and a ``SubAfter``
        record per message, written soon after (from the messages as they are then:
        a handler that changes a message's keys is traced with its new keys). A
        call that did not succeed is written at once: the consumer is about to
        count its messages' retries up, and the records tell them as the handler
        saw them."""
        records = 2 * len(messages)
        self.recorded += records
        if self._records + records <= self._capacity:
            self._records += records
            pending = self._consumed
            pending.append((group, messages, start_ms, elapsed, code))
            if code or len(pending) >= _WRITE_AFTER:
                self._write_consumed()
        else:
            self._drop(records)

    def ended_transaction(self, ctx: EndTransactionContext) -> None:
        """A transaction's outcome told to a broker: an ``EndTransaction`` record."""
        if not self._room(1):
            return
        msg = ctx.message
        keys = msg.properties.get(_KEYS)
        record = TraceRecord(
            TraceType.END_TRANSACTION,
            ctx.msg_id,
            timestamp_ms=ctx.timestamp_ms,
            region_id=msg.properties.get(_REGION) or DEFAULT_REGION,
            group=self._unwrapped(ctx.group),
            topic=ns.unwrap(self._namespace, msg.topic),
            tags=msg.tags,
            keys=keys,
            store_host=ctx.broker_addr,
            msg_type=TraceMessageType.TRANSACTION_COMMIT,
            transaction_id=ctx.transaction_id,
            transaction_state=ctx.state,
            from_transaction_check=ctx.from_check,
        )
        self._write(ctx.msg_id, keys, record.encode(), 1)

    def _unwrapped(self, group: str) -> str:
        """``group`` without the namespace (remembered: it is asked per record)."""
        name = self._groups.get(group)
        if name is None:
            name = self._groups[group] = ns.unwrap(self._namespace, group)
        return name

    def _unwrapped_topic(self, topic: str) -> str:
        """``topic`` without the namespace (remembered, for a few hundred topics)."""
        name = self._topics.get(topic)
        if name is None:
            if len(self._topics) >= 512:
                self._topics.clear()
            name = self._topics[topic] = ns.unwrap(self._namespace, topic)
        return name

    def _room(self, records: int) -> bool:
        """Count ``records`` made; whether the buffer takes them (else they are
        dropped, and counted)."""
        self.recorded += records
        if self._records + records <= self._capacity:
            self._records += records
            return True
        self._drop(records)
        return False

    def _drop(self, records: int) -> None:
        """Count ``records`` dropped (the buffer is full), logging now and then."""
        before = self.dropped
        self.dropped += records
        if before == 0 or before // 1000 != self.dropped // 1000:
            log.warning(
                "trace buffer full (%d records): %d records dropped so far",
                self._capacity,
                self.dropped,
                extra={"rocketmq_topic": self.topic},
            )

    def _write(self, msg_id: str, keys: str | None, text: str, records: int) -> None:
        """Write ``records`` (counted already) encoded as ``text`` into the open trace
        message, first closing it if they would not fit."""
        ascii_only = text.isascii()  # then so is the message id, a key's bytes its length
        size = len(text) if ascii_only else len(text.encode())
        if self._buffered_bytes + size > TRACE_BUFFER_BYTES:
            self._lost(records)
            return
        batch = self._open
        if (
            keys is None
            and ascii_only
            and batch.size + size <= MAX_TRACE_BODY
            and batch.keys_size + len(msg_id) < MAX_TRACE_KEYS_BYTES
            and batch.records < MAX_RECORDS_PER_MESSAGE
        ):  # the common case, quickly
            batch.keys.append(msg_id)
            batch.keys_size += len(msg_id) + 1
            batch.parts.append(text)
            batch.size += size
            batch.records += records
            self._buffered_bytes += size
            return
        fresh = [k for k in (msg_id, *(keys.split(" ") if keys else ())) if k]
        more_keys = _keys_size(fresh)
        if more_keys > MAX_TRACE_KEYS_BYTES:
            # Its own keys would not fit any trace message: its message id alone
            # keys it (the record itself still names every key).
            fresh = [msg_id]
            more_keys = _keys_size(fresh)
        if batch.records and (
            batch.size + size > MAX_TRACE_BODY
            or batch.keys_size + more_keys > MAX_TRACE_KEYS_BYTES
            or batch.records >= MAX_RECORDS_PER_MESSAGE
        ):
            self._full.append(batch)
            batch = self._open = TraceBatch()
        batch.keys += fresh
        batch.parts.append(text)
        batch.size += size
        batch.keys_size += more_keys
        batch.records += records
        self._buffered_bytes += size

    def _lost(self, records: int) -> None:
        """``records`` counted in but not written: the buffer's bytes are spent."""
        self._records -= records
        self._drop(records)

    def _write_consumed(self) -> None:
        """Write the records of the handler calls told since the last look: per
        message, its ``SubBefore`` and ``SubAfter``. (The hottest code of trace, so
        :meth:`_write` is inlined with the open message's counters kept in locals
        for a message without keys, and a record's text is put together from three
        pieces that change rarely, each made again only when what it holds changed,
        and the request and message ids.)"""
        pending = self._consumed
        unwrapped, groups = self._unwrapped, self._groups
        prefix = self._request_prefix
        requests = self._requests
        room = TRACE_BUFFER_BYTES - self._buffered_bytes
        batch = self._open
        ids, parts = batch.keys, batch.parts
        size, keys_size, records = batch.size, batch.keys_size, batch.records
        skipped = 0
        # SubBefore: time, region, group, request id, message id, retries, keys;
        # SubAfter: request id, message id, cost, success, keys, code, time, group.
        # For a message without keys, the text is put together from ``head`` (the
        # SubBefore up to the request id), ``middle`` (the rest of it after the
        # message id, and the SubAfter's type) and ``tail`` (the SubAfter after its
        # message id), each made again only when a field it holds changed.
        last_group: str | None = None
        name = region = head = middle = tail = ""
        head_ms = cost = end_ms = code = -1  # times, costs and codes are never negative
        rt: int | None = None
        while pending:
            group, messages, start_ms, elapsed, call_code = pending.popleft()
            if group != last_group:
                last_group, name = group, groups.get(group) or unwrapped(group)
                head_ms = end_ms = -1
            requests += 1
            rid = f"{prefix}{requests}\x01"  # unique: the prefix names the client's process
            elapsed_ms = int(elapsed * 1000)
            call_cost = elapsed_ms // len(messages)
            if call_cost != cost or start_ms + elapsed_ms != end_ms or call_code != code:
                cost, end_ms, code = call_cost, start_ms + elapsed_ms, call_code
                ok, code_n = _OUTCOMES[code]
                tail = f"\x01{cost}\x01{ok}\x01null\x01{code_n}\x01{end_ms}\x01{name}\x02"
            done = 0  # messages of this call written (or skipped)
            try:
                for msg in messages:
                    props = msg.properties
                    if props.get(_TRACE_SWITCH) == "false":
                        skipped += 2
                        done += 1
                        continue
                    keys = props.get(_KEYS)
                    msg_id = props.get(_UNIQ) or msg.msg_id
                    msg_region = props.get(_REGION) or DEFAULT_REGION
                    if start_ms != head_ms or msg_region != region:
                        head_ms, region = start_ms, msg_region
                        head = f"SubBefore\x01{start_ms}\x01{region}\x01{name}\x01"
                    if msg.reconsume_times != rt:
                        rt = msg.reconsume_times
                        middle = f"\x01{rt}\x01null\x02SubAfter\x01"
                    if keys is None:
                        text = f"{head}{rid}{msg_id}{middle}{rid}{msg_id}{tail}"
                    else:
                        ok, code_n = _OUTCOMES[code]
                        text = (
                            f"{head}{rid}{msg_id}\x01{rt}\x01{keys}\x02SubAfter\x01{rid}"
                            f"{msg_id}\x01{cost}\x01{ok}\x01{keys}\x01{code_n}\x01"
                            f"{end_ms}\x01{name}\x02"
                        )
                    more = len(text)
                    if (
                        keys is None
                        and more <= room
                        and size + more <= MAX_TRACE_BODY
                        and keys_size + len(msg_id) < MAX_TRACE_KEYS_BYTES
                        and records < MAX_RECORDS_PER_MESSAGE
                        and text.isascii()
                    ):
                        ids.append(msg_id)
                        keys_size += len(msg_id) + 1
                        parts.append(text)
                        size += more
                        records += 2
                        room -= more
                        done += 1
                        continue
                    # The general case: keys to split, or the open message is full.
                    batch.size, batch.keys_size, batch.records = size, keys_size, records
                    self._buffered_bytes = TRACE_BUFFER_BYTES - room
                    self._write(msg_id, keys, text, 2)
                    room = TRACE_BUFFER_BYTES - self._buffered_bytes
                    batch = self._open
                    ids, parts = batch.keys, batch.parts
                    size, keys_size, records = batch.size, batch.keys_size, batch.records
                    done += 1
            except Exception as exc:  # a message the handler broke (a non-text property)
                batch.size, batch.keys_size, batch.records = size, keys_size, records
                self._buffered_bytes = TRACE_BUFFER_BYTES - room
                lost = 2 * (len(messages) - done)
                self._records -= lost
                self.dropped += lost
                log.warning(
                    "trace records of %d consumed messages not written: %r",
                    len(messages) - done,
                    exc,
                    extra={"rocketmq_topic": self.topic, "rocketmq_group": name},
                )
        batch.size, batch.keys_size, batch.records = size, keys_size, records
        self._buffered_bytes = TRACE_BUFFER_BYTES - room
        self._requests = requests
        if skipped:
            self._records -= skipped
            self.recorded -= skipped

    # ------------------------------------------------------------- dispatch

    def take(self, now_s: float, *, flush: bool = False) -> TraceBatch | None:
        """The next trace message to send, if one is due: a full one, or one whose
        first record waited :data:`FLUSH_DELAY` (any, with ``flush``)."""
        if self._consumed:
            self._write_consumed()
        if self._full:
            batch = self._full.popleft()
        else:
            batch = self._open
            if not batch.records:
                self._waiting_since = None
                return None
            if self._waiting_since is None:
                self._waiting_since = now_s
            if not flush and now_s - self._waiting_since < FLUSH_DELAY:
                return None
            self._open = TraceBatch()
            self._waiting_since = None
        self._records -= batch.records
        self._buffered_bytes -= batch.size
        return batch

    def dispatch_flow(self) -> Flow[None]:
        """Send trace messages as they are due, for as long as the client runs."""
        while True:
            if self.in_flight < MAX_SENDS_IN_FLIGHT:
                batch = self.take((yield from now()))
                if batch is not None:
                    self.in_flight += 1
                    yield from spawn(self._send_flow(batch), "trace send")
                    continue
                yield from sleep(_POLL)
            else:
                yield from sleep(_BUSY_POLL)  # a send ends soon: be there to start the next

    def flush_flow(self, timeout: float) -> Flow[int]:
        """Send everything buffered and wait for the sends in flight, up to
        ``timeout`` seconds; the records still unsent, those of sends still in
        flight included (0 when all went)."""
        start = yield from now()
        while True:
            now_s = yield from now()
            if now_s - start >= timeout:
                break
            batch = self.take(now_s, flush=True)
            if batch is not None:
                self.in_flight += 1
                # Each send gets what is left of the time, never more.
                left = timeout - (now_s - start)
                yield from self._send_flow(batch, min(TRACE_SEND_TIMEOUT, left))
            elif self.in_flight:
                yield from sleep(_POLL)
            else:
                break
        return self._records + self._sending

    def _send_flow(self, batch: TraceBatch, timeout: float = TRACE_SEND_TIMEOUT) -> Flow[None]:
        records = batch.records
        self._sending += records
        try:
            message = Message(self.topic, batch.body(), keys=batch.keys_text())
            yield from self.producer.send_flow(message, timeout)
        except RocketMQError as exc:
            self.failed += records
            log.info(
                "trace message of %d records to %s not sent: %s",
                records,
                self.topic,
                exc,
                extra={"rocketmq_topic": self.topic},
            )
        else:
            self.sent += records
        finally:
            self.in_flight -= 1
            self._sending -= records


def _keys_size(keys: list[str]) -> int:
    """The UTF-8 bytes ``keys`` add to a KEYS property, a separator each (a key
    that is not ASCII takes more bytes than characters)."""
    return sum((len(k) if k.isascii() else len(k.encode())) + 1 for k in keys)


def _pub_type(props: dict[str, str]) -> str:
    """A Pub record's message type (its number) from the message's properties."""
    if props.get(_C.PROPERTY_TRANSACTION_PREPARED) == "true":
        return _HALF
    if (
        _C.PROPERTY_DELAY_TIME_LEVEL in props
        or _C.PROPERTY_TIMER_DELIVER_MS in props
        or "__STARTDELIVERTIME" in props
    ):
        # As Message.delay_level and deliver_at read them: a value that is not a
        # number is no delay.
        level = number_property(props, _C.PROPERTY_DELAY_TIME_LEVEL)
        deliver_at = number_property(props, _C.PROPERTY_TIMER_DELIVER_MS)
        if level or deliver_at is not None or "__STARTDELIVERTIME" in props:
            return _DELAYED
    return _NORMAL


_HALF: Final = str(int(TraceMessageType.TRANSACTION_HALF))
_DELAYED: Final = str(int(TraceMessageType.DELAY))
_NORMAL: Final = str(int(TraceMessageType.NORMAL))
