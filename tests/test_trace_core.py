"""Message trace in the core: the Java encoding of each record kind, the decoder's
tolerance of the Java and Go variants, what the trace hook records for sends,
consumes and transactions, the bounded buffer, and the dispatch to the trace topic."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rocketmq_proto.build import Host, build_producer
from rocketmq_proto.flows.consumer.consume import ConsumeResult, trace_code
from rocketmq_proto.flows.hooks import EndTransactionContext
from rocketmq_proto.flows.producer import OFFLOAD_COMPRESSION_OVER, ProducerCore, SendResult
from rocketmq_proto.flows.trace import (
    FLUSH_DELAY,
    MAX_RECORDS_PER_MESSAGE,
    MAX_TRACE_BODY,
    MAX_TRACE_KEYS_BYTES,
    Tracer,
)
from rocketmq_proto.message.compression import decompress_body
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.message.properties import decode_properties, encode_properties
from rocketmq_proto.options import pull_consumer_settings, trace_options
from rocketmq_proto.wire.codes import RequestCode, SendStatus
from rocketmq_proto.wire.errors import ConfigError, RemoteProtocolError
from rocketmq_proto.wire.route import MessageQueue
from rocketmq_proto.wire.trace import (
    ConsumeReturnType,
    TraceMessageType,
    TraceRecord,
    TraceType,
    decode_trace_data,
    trace_keys,
)

from .flowsim import Sim
from .test_producer_core import BROKERS, NAMESRV, Broker, make_producer

S, E = "\x01", "\x02"


def java(*fields: object) -> str:
    """A record as Java's TraceDataEncoder writes it."""
    return S.join(str(f) for f in fields) + E


# ------------------------------------------------------------------ encoding


def test_each_record_kind_is_written_as_java_writes_it() -> None:
    pub = TraceRecord(
        TraceType.PUB,
        "ID1",
        timestamp_ms=1700000000123,
        region_id="DefaultRegion",
        group="pg",
        topic="T",
        tags=None,
        keys="k1 k2",
        store_host="127.0.0.1:10911",
        body_length=5,
        cost_ms=3,
        msg_type=TraceMessageType.NORMAL,
        offset_msg_id="OFF1",
        success=True,
    )
    assert pub.encode() == java(
        "Pub", 1700000000123, "DefaultRegion", "pg", "T", "ID1", "null", "k1 k2",
        "127.0.0.1:10911", 5, 3, 0, "OFF1", "true",
    )  # fmt: skip
    before = TraceRecord(
        TraceType.SUB_BEFORE, "ID1", timestamp_ms=7, group="cg", request_id="R", retry_times=2
    )
    assert before.encode() == java("SubBefore", 7, "DefaultRegion", "cg", "R", "ID1", 2, "null")
    after = TraceRecord(
        TraceType.SUB_AFTER,
        "ID1",
        request_id="R",
        cost_ms=4,
        success=False,
        keys="k",
        context_code=ConsumeReturnType.EXCEPTION,
        timestamp_ms=9,
        group="cg",
    )
    assert after.encode() == java("SubAfter", "R", "ID1", 4, "false", "k", 2, 9, "cg")
    end = TraceRecord(
        TraceType.END_TRANSACTION,
        "ID1",
        timestamp_ms=11,
        group="pg",
        topic="T",
        tags="A",
        store_host="h:1",
        msg_type=TraceMessageType.TRANSACTION_COMMIT,
        transaction_id="TX",
        transaction_state="COMMIT_MESSAGE",
        from_transaction_check=True,
    )
    assert end.encode() == java(
        "EndTransaction", 11, "DefaultRegion", "pg", "T", "ID1", "A", "null", "h:1", 2, "TX",
        "COMMIT_MESSAGE", "true",
    )  # fmt: skip
    # What is written reads back the same.
    assert decode_trace_data(pub.encode() + before.encode() + after.encode() + end.encode()) == [
        pub,
        before,
        after,
        end,
    ]


def test_the_decoder_reads_the_java_and_go_variants_and_skips_unknown_kinds() -> None:
    old_pub = java("Pub", 1, "R", "g", "T", "ID", "t", "k", "h:1", 10, 2, 3, "true")  # 13 fields
    go_pub = java("Pub", 1, "R", "g", "T", "ID", "", "", "h:1", 10, 2, 0, "OFF", "true", "1.2.3.4")
    cloud_after = "SubAfter" + S + S.join(["R", "ID", "5", "true", "k", "0"]) + S + E
    go_before = java("SubBefore", 1, "R", "g", "RQ", "ID", 0, "k", "1.2.3.4")
    recall = java("Recall", 1, "R", "g", "T", "ID", "true")
    records = decode_trace_data(old_pub + go_pub + "Future" + S + "x" + E + cloud_after + go_before)
    records += decode_trace_data(recall)
    assert [r.type for r in records] == [
        TraceType.PUB,
        TraceType.PUB,
        TraceType.SUB_AFTER,
        TraceType.SUB_BEFORE,
        TraceType.RECALL,
    ]
    assert records[0].msg_type is TraceMessageType.DELAY and records[0].offset_msg_id == ""
    assert records[1].client_host == "1.2.3.4" and records[1].offset_msg_id == "OFF"
    assert records[1].tags == "" and records[1].success
    assert records[2].cost_ms == 5 and records[2].timestamp_ms == 0 and records[2].group == ""
    assert records[3].request_id == "RQ" and records[3].keys == "k"
    with pytest.raises(RemoteProtocolError, match="unreadable"):
        decode_trace_data(java("Pub", "not-a-time", "R"))


def test_a_trace_message_is_keyed_by_each_id_and_user_key_once() -> None:
    assert trace_keys([("A", "k1 k2"), ("A", "k2"), ("B", None)]) == ["A", "k1", "k2", "B"]


# --------------------------------------------------------------- recording


def due(t: Tracer, now_s: float = 0.0, *, flush: bool = True) -> list[TraceRecord]:
    """The records of the trace message the tracer would send now, decoded (``[]``:
    none due)."""
    batch = t.take(now_s, flush=flush)
    return [] if batch is None else decode_trace_data(batch.body().decode())


def tracer(producer: ProducerCore | None = None, **kw: Any) -> Tracer:
    producer = producer or make_producer()
    return Tracer(
        "RMQ_SYS_TRACE_TOPIC", producer, UniqueIdGenerator(bytes([10, 0, 0, 1]), 1, 2), **kw
    )


def publish(t: Tracer, result: SendResult, *messages: Message) -> None:
    """``messages`` sent at 1000 ms, answered 12.5 ms later, by group ``NS%pg``."""
    t.published("NS%pg", messages, result, 1000, 0.0125)


def result(msg_id: str = "ID1", **kw: Any) -> SendResult:
    fields: dict[str, Any] = {
        "status": SendStatus.SEND_OK,
        "msg_id": msg_id,
        "offset_msg_id": "OFF1",
        "message_queue": MessageQueue("T", "broker-a", 1),
        "queue_offset": 5,
        "region_id": "RegionX",
        "broker_addr": "127.0.0.1:10911",
    }
    fields.update(kw)
    return SendResult(**fields)


def test_a_send_gives_pub_records() -> None:
    t = tracer(namespace="NS")
    publish(t, result(), Message("NS%T", b"hello", tags="A", keys=["k1", "k2"]))
    [pub] = due(t)
    assert pub == TraceRecord(
        TraceType.PUB,
        "ID1",
        timestamp_ms=1000,
        region_id="RegionX",
        group="pg",  # without the namespace, as Java writes it
        topic="T",
        tags="A",
        keys="k1 k2",
        store_host="127.0.0.1:10911",
        body_length=5,
        cost_ms=12,
        offset_msg_id="OFF1",
    )
    # A batch: one record per message, each under its own id.
    publish(
        t,
        result("I1,I2", offset_msg_id="O1,O2", region_id=None),
        Message("T", b"a"),
        Message("T", b"bb"),
    )
    batch = due(t)
    assert [(r.msg_id, r.offset_msg_id, r.body_length, r.cost_ms) for r in batch] == [
        ("I1", "O1", 1, 6),
        ("I2", "O2", 2, 6),
    ]
    assert {r.region_id for r in batch} == {"DefaultRegion"}
    # Kinds of message.
    half = Message("T", b"x")
    half.properties["TRAN_MSG"] = "true"
    publish(t, result(), half)
    publish(t, result(), Message("T", b"x", delay_level=3))
    assert [r.msg_type for r in due(t)] == [
        TraceMessageType.TRANSACTION_HALF,
        TraceMessageType.DELAY,
    ]
    # No record: the broker's TRACE_ON=false, the trace topic itself.
    publish(t, result(trace_on=False), Message("T", b"x"))
    publish(t, result(), Message("RMQ_SYS_TRACE_TOPIC", b"x"))
    assert t.take(0.0, flush=True) is None and t.recorded == 5


def consumed(msg_id: str, **props: str) -> MessageExt:
    msg = MessageExt("T", b"body", properties={"UNIQ_KEY": msg_id, **props}, reconsume_times=1)
    return msg


def test_consume_records_are_written_exactly_as_java_writes_them_whatever_changes() -> None:
    """The consume records' text is put together from pieces kept while their fields
    stay the same: over calls that change the group, time, cost, outcome, region,
    keys and retries in every order, each record is Java's, field for field."""
    import random

    rng = random.Random(7)
    t = tracer(capacity=100_000)
    # Per message: its call, and its two records with "RID" for the request id.
    expected: list[tuple[int, str, str]] = []
    for call in range(600):
        group = rng.choice(["cg", "other"])
        start_ms = 5000 + rng.choice([0, 0, 1, 7])
        elapsed = rng.choice([0.0, 0.0, 0.0031, 0.02])
        elapsed_ms = int(elapsed * 1000)
        code = rng.choice(list(ConsumeReturnType))
        msgs = []
        for i in range(rng.choice([1, 1, 1, 2, 3])):
            props = {"UNIQ_KEY": f"M{call}_{i}"}
            if rng.random() < 0.2:
                props["MSG_REGION"] = rng.choice(["R1", "DefaultRegion"])
            if rng.random() < 0.2:
                props["KEYS"] = rng.choice(["k", "a b"])
            msgs.append(MessageExt("T", b"x", properties=props, reconsume_times=rng.choice([0, 2])))
        for msg in msgs:
            keys = msg.properties.get("KEYS", "null")
            region = msg.properties.get("MSG_REGION", "DefaultRegion")
            before = java(
                "SubBefore", start_ms, region, group, "RID", msg.msg_id, msg.reconsume_times, keys
            )
            after = java(
                "SubAfter",
                "RID",
                msg.msg_id,
                elapsed_ms // len(msgs),
                "true" if code == 0 else "false",
                keys,
                int(code),
                start_ms + elapsed_ms,
                group,
            )
            expected.append((call, before, after))  # fmt: skip
        t.consumed(group, tuple(msgs), start_ms, elapsed, code)
    text = ""
    while (batch := t.take(0.0, flush=True)) is not None:
        text += batch.body().decode()
    written = [r + E for r in text.split(E) if r]
    assert len(written) == 2 * len(expected) and t.dropped == 0
    request_ids: dict[int, str] = {}
    for (call, before, after), got_before, got_after in zip(
        expected, written[::2], written[1::2], strict=True
    ):
        rid = got_before.split(S)[4]
        assert request_ids.setdefault(call, rid) == rid  # one request id per call
        assert got_before == before.replace("RID", rid)
        assert got_after == after.replace("RID", rid)
    assert len(set(request_ids.values())) == len(request_ids)


def test_a_consume_gives_sub_before_and_sub_after_records_sharing_a_request_id() -> None:
    t = tracer()
    msgs = (
        consumed("M1", KEYS="k", MSG_REGION="R1"),
        consumed("M2"),
        consumed("M3", TRACE_ON="false"),
    )
    t.consumed("cg", msgs, 5000, 0.03, ConsumeReturnType.SUCCESS)
    assert (t.recorded, t.buffered) == (6, 6)  # written by the dispatch flow
    records = due(t)
    assert (t.recorded, t.buffered) == (4, 0)  # TRACE_ON=false: no records
    assert [(r.type, r.msg_id) for r in records] == [
        (TraceType.SUB_BEFORE, "M1"),
        (TraceType.SUB_AFTER, "M1"),
        (TraceType.SUB_BEFORE, "M2"),
        (TraceType.SUB_AFTER, "M2"),
    ]
    assert len({r.request_id for r in records}) == 1
    assert records[0].request_id.startswith("0A000001")  # the client's address, then more
    before_1, after_1, before_2, _ = records
    assert before_1.region_id == "R1" and before_2.region_id == "DefaultRegion"
    assert before_1.retry_times == 1 and before_1.keys == "k" and before_1.timestamp_ms == 5000
    assert after_1.success and after_1.context_code is ConsumeReturnType.SUCCESS
    assert after_1.cost_ms == 10 and after_1.timestamp_ms == 5030 and after_1.group == "cg"
    # Each handler call has its own request id.
    t.consumed("cg", (consumed("M4"),), 6000, 0.0, ConsumeReturnType.FAILED)
    later = due(t)
    assert later[0].request_id != before_1.request_id
    assert [(r.success, r.context_code) for r in later if r.type is TraceType.SUB_AFTER] == [
        (False, ConsumeReturnType.FAILED)
    ]


def test_a_handler_calls_ending_is_told_as_java_codes_it() -> None:
    assert trace_code(ConsumeResult.SUCCESS, None) is ConsumeReturnType.SUCCESS
    assert trace_code(ConsumeResult.RETRY_LATER, None) is ConsumeReturnType.FAILED
    assert trace_code(ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT, None) is (
        ConsumeReturnType.FAILED
    )
    assert trace_code(ConsumeResult.RETRY_LATER, ValueError("bug")) is (ConsumeReturnType.EXCEPTION)


def test_a_transaction_outcome_gives_an_end_transaction_record() -> None:
    t = tracer()
    msg = Message("T", b"x", tags="A", keys="k")
    ctx = EndTransactionContext(
        "pg", msg, "ID1", "TX1", "ROLLBACK_MESSAGE", "h:1", True, timestamp_ms=77
    )
    t.ended_transaction(ctx)
    [end] = due(t)
    assert end.encode() == java(
        "EndTransaction", 77, "DefaultRegion", "pg", "T", "ID1", "A", "k", "h:1", 2, "TX1",
        "ROLLBACK_MESSAGE", "true",
    )  # fmt: skip


# ------------------------------------------------------- buffer and dispatch


def test_a_full_buffer_drops_and_counts_and_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    t = tracer(capacity=3)
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.trace"):
        for i in range(5):
            publish(t, result(f"ID{i}"), Message("T", b"x"))
        t.consumed("cg", (consumed("M1"),), 1, 0.0, ConsumeReturnType.SUCCESS)
    assert (t.buffered, t.dropped, t.recorded) == (3, 4, 7)
    assert [r.getMessage() for r in caplog.records] == [
        "trace buffer full (3 records): 1 records dropped so far"
    ]


def test_records_wait_for_a_full_message_or_the_flush_delay() -> None:
    t = tracer()
    publish(t, result(), Message("T", b"x"))
    assert t.take(10.0) is None  # first seen now
    assert t.take(10.0 + FLUSH_DELAY / 2) is None
    assert t.take(10.0 + FLUSH_DELAY) is not None
    for i in range(MAX_RECORDS_PER_MESSAGE + 5):
        publish(t, result(f"ID{i}"), Message("T", b"x"))
    full = t.take(20.0)  # a whole message's worth is due at once
    assert full is not None and full.records == MAX_RECORDS_PER_MESSAGE
    assert len(full.keys) == MAX_RECORDS_PER_MESSAGE
    assert t.take(20.0) is None and t.buffered == 5
    # Long user keys end a message before its record count does.
    long_key = "k" * 3000
    for i in range(10):
        publish(t, result(f"L{i}"), Message("T", b"x", keys=[long_key + str(i)]))
    first = t.take(30.0, flush=True)
    assert first is not None and 0 < first.records < 15
    assert first.keys_size == sum(len(k.encode()) + 1 for k in first.keys) <= MAX_TRACE_KEYS_BYTES


def test_consumed_records_fill_messages_within_their_limits() -> None:
    """The written-inline path keeps each trace message within its body, key and
    record limits, as the general path does (with keys, it takes the general one)."""
    t = tracer(capacity=100_000)
    for i in range(3000):
        keys = {"KEYS": f"biz{i} other{i}"} if i % 7 == 0 else {}
        t.consumed("cg", (consumed(f"M{i:031d}", **keys),), 1, 0.0, ConsumeReturnType.SUCCESS)
    seen: list[str] = []
    while (batch := t.take(0.0, flush=True)) is not None:
        body = batch.body()
        assert len(body) == batch.size <= MAX_TRACE_BODY
        assert (
            batch.keys_size == sum(len(k.encode()) + 1 for k in batch.keys) <= MAX_TRACE_KEYS_BYTES
        )
        assert batch.records <= MAX_RECORDS_PER_MESSAGE + 1
        records = decode_trace_data(body.decode())
        assert len(records) == batch.records
        assert {r.msg_id for r in records} | {
            k for r in records if r.keys for k in r.keys.split(" ")
        } == set(batch.keys)
        seen += [r.msg_id for r in records if r.type is TraceType.SUB_AFTER]
    assert seen == [f"M{i:031d}" for i in range(3000)] and t.buffered == 0


def traced_producer(broker: Broker) -> tuple[Sim, ProducerCore, Tracer]:
    built = build_producer(
        NAMESRV,
        {"group": "pg", "enable_trace": True, "client_ip": "10.0.0.1"},
        Host(pid=1, nonce=2, id_seed=3),
    )
    assert built.tracer is not None and built.session.tracer is built.tracer
    assert not built.session.hooks  # the trace is no hook: the flows tell it directly
    return Sim(broker), built.core, built.tracer


def test_the_dispatch_sends_the_records_to_the_trace_topic_keyed_by_message_id() -> None:
    broker = Broker()
    sim, producer, t = traced_producer(broker)
    results = [sim.run(producer.send_flow(Message("T", b"m%d" % i, keys="biz"))) for i in range(3)]
    assert t.buffered == 3 and not [c for _, c in broker.sent if c.ext_fields["b"] != "T"]
    left = sim.run(t.flush_flow(5.0))
    assert left == 0 and (t.sent, t.failed, t.in_flight) == (3, 0, 0)
    [(_, trace)] = [(n, c) for n, c in broker.sent if c.ext_fields["b"] == "RMQ_SYS_TRACE_TOPIC"]
    assert trace.code == RequestCode.SEND_MESSAGE_V2
    assert trace.ext_fields["a"] == "_INNER_TRACE_PRODUCER-pg-PRODUCE"
    props = decode_properties(trace.ext_fields["i"].encode())
    assert props["KEYS"].split(" ") == [r.msg_id for r in results[:1]] + ["biz"] + [
        r.msg_id for r in results[1:]
    ]
    records = decode_trace_data(trace.body.decode())
    assert [(r.type, r.msg_id, r.group) for r in records] == [
        (TraceType.PUB, r.msg_id, "pg") for r in results
    ]
    assert {r.store_host for r in records} <= set(BROKERS.values())
    # The trace message's own send is not traced.
    assert t.buffered == 0 and t.recorded == 3


def test_a_full_trace_message_is_compressed_in_place_and_reads_back() -> None:
    """A trace message's body (up to MAX_TRACE_BODY bytes) is compressed by the task
    sending it, outside the core lock, not handed to a thread (a short Offload:
    measured no dearer for a drain's event loop, without the thread's hand-offs),
    and reads back as written."""
    broker = Broker()
    sim, _, t = traced_producer(broker)
    calls = 800  # their ids fill most of a trace message's keys
    for i in range(calls):
        t.consumed("g", (consumed(f"M{i:031d}"),), 1_000 + i, 0.0, ConsumeReturnType.SUCCESS)
    assert sim.run(t.flush_flow(5.0)) == 0 and t.sent == 2 * calls
    [(_, trace)] = [(n, c) for n, c in broker.sent if c.ext_fields["b"] == "RMQ_SYS_TRACE_TOPIC"]
    assert sim.offloaded == [] and sim.ran_short == [t.producer._compressed]
    flags = int(trace.ext_fields["f"])
    body = decompress_body(trace.body, flags)
    assert flags & 0x1 and len(trace.body) * 5 < len(body) > OFFLOAD_COMPRESSION_OVER
    records = decode_trace_data(body.decode())
    assert len(records) == 2 * calls
    assert records[-1].msg_id == f"M{calls - 1:031d}"


def test_a_trace_message_that_cannot_be_sent_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker()
    sim, producer, t = traced_producer(broker)
    sim.run(producer.send_flow(Message("T", b"x")))
    broker.failing = {name: 17 for name in BROKERS}  # TOPIC_NOT_EXIST, everywhere
    with caplog.at_level(logging.INFO, logger="rocketmq_proto.trace"):
        assert sim.run(t.flush_flow(5.0)) == 0
    assert (t.sent, t.failed) == (0, 1)
    assert "trace message of 1 records to RMQ_SYS_TRACE_TOPIC not sent" in caplog.text


def test_trace_options_are_checked() -> None:
    assert trace_options({"group": "g"}) == ({"group": "g"}, None)
    assert trace_options({"enable_trace": True}) == ({}, "RMQ_SYS_TRACE_TOPIC")
    assert trace_options({"enable_trace": True, "trace_topic": "MyTrace"})[1] == "MyTrace"
    with pytest.raises(ConfigError, match="enable_trace must be True or False"):
        trace_options({"enable_trace": "yes"})
    with pytest.raises(ConfigError, match="trace_topic='MyTrace' is given but enable_trace"):
        trace_options({"trace_topic": "MyTrace"})
    with pytest.raises(ConfigError, match="invalid trace_topic"):
        trace_options({"enable_trace": True, "trace_topic": "bad topic"})
    # Only the classes that trace take the options.
    with pytest.raises(ConfigError, match="enable_trace"):
        pull_consumer_settings(NAMESRV, {"group": "g", "enable_trace": True}, pid=1, nonce=2)


def test_admin_reads_a_messages_records_and_skips_only_the_unreadable_ones(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from rocketmq_proto.flows.admin import AdminCore
    from rocketmq_proto.message.codec import encode_stored_message
    from rocketmq_proto.wire.codes import FLAG_RESPONSE
    from rocketmq_proto.wire.command import RemotingCommand

    from .test_producer_core import make_producer, route_body

    good = TraceRecord(TraceType.PUB, "ID1", timestamp_ms=5, group="pg", topic="T").encode()
    other = TraceRecord(TraceType.PUB, "ID2", timestamp_ms=5, group="pg", topic="T").encode()
    bad = java("Pub", 1, "R", "g", "T", "ID1", "t", "k", "h:1", 10, 2, 9, "OFF", "true")  # type 9
    stored = MessageExt(
        "RMQ_SYS_TRACE_TOPIC",
        (bad + good + other).encode(),
        properties={"KEYS": "ID1 ID2"},
        store_host="127.0.0.1:10911",
        born_host="127.0.0.1:5000",
    )

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return RemotingCommand(0, {}, route_body("RMQ_SYS_TRACE_TOPIC"), flag=FLAG_RESPONSE)
        assert command.code == RequestCode.QUERY_MESSAGE
        return RemotingCommand(0, {}, encode_stored_message(stored), flag=FLAG_RESPONSE)

    admin = AdminCore(make_producer().client)
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.admin"):
        records = Sim(answer).run(admin.query_trace_flow("ID1"))
    # One answer per broker: the same stored message twice, kept once.
    assert [(r.type, r.msg_id, r.group) for r in records] == [(TraceType.PUB, "ID1", "pg")]
    assert "1 records unreadable" in caplog.text


def test_a_failed_call_is_written_at_once_with_the_retries_the_handler_saw() -> None:
    t = tracer()
    msg = consumed("M1")
    t.consumed("cg", (msg,), 1, 0.0, ConsumeReturnType.FAILED)
    msg.reconsume_times += 1  # as the consumer does next, for an orderly failure
    before = [r for r in due(t) if r.type is TraceType.SUB_BEFORE]
    assert [r.retry_times for r in before] == [1]


def test_consumed_messages_are_let_go_soon() -> None:
    """Calls wait to be written only a few at a time: the records are written, and
    the messages no longer held, long before the dispatch flow's next look."""
    t = tracer()
    for i in range(100):
        t.consumed("cg", (consumed(f"M{i}"),), 1, 0.0, ConsumeReturnType.SUCCESS)
    assert len(t._consumed) < 20  # what the tracer still holds of the messages
    assert t.buffered == 200


def test_a_message_the_handler_broke_loses_its_records_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = tracer()
    good, broken, after = consumed("M1"), consumed("M2"), consumed("M3")
    broken.properties["KEYS"] = 5  # type: ignore[assignment]  # not text: a misuse
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.trace"):
        t.consumed("cg", (good, broken, after), 1, 0.0, ConsumeReturnType.SUCCESS)
        t.consumed("cg", (consumed("M4"),), 2, 0.0, ConsumeReturnType.SUCCESS)
        records = due(t)
    assert [r.msg_id for r in records if r.type is TraceType.SUB_AFTER] == ["M1", "M4"]
    assert (t.recorded, t.dropped, t.buffered) == (8, 4, 0)
    assert "trace records of 2 consumed messages not written" in caplog.text


def test_a_flush_counts_the_records_of_sends_still_in_flight_as_unsent() -> None:
    t = tracer()
    for i in range(3):
        publish(t, result(f"ID{i}"), Message("T", b"x"))
    batch = t.take(0.0, flush=True)
    assert batch is not None
    sending = t._send_flow(batch)
    next(sending)  # the send is under way: its first request is out
    assert Sim(lambda addr, command: None).run(t.flush_flow(0.0)) == 3  # type: ignore[arg-type,return-value]
    sending.close()
    assert t._sending == 0  # a send that ended, however it ended, is no longer counted


def test_keys_that_are_not_ascii_keep_a_trace_message_within_the_brokers_limit() -> None:
    """The keys limit counts UTF-8 bytes: user keys of three-byte characters (and a
    message id that is not ASCII) still give trace messages whose properties the
    broker takes (32767 bytes in all), with every key written once."""
    t = tracer(capacity=100_000)
    wide = "鍵" * 300  # 900 bytes, 300 characters
    for i in range(200):
        publish(t, result(f"P{i}"), Message("T", b"x", keys=[f"{wide}{i}"]))
        msg_id = f"M{i:031d}" if i % 3 else f"é{i:030d}"
        t.consumed("cg", (consumed(msg_id, KEYS=f"{wide}c{i}"),), 1, 0.0, ConsumeReturnType.SUCCESS)
    batches = 0
    keys: set[str] = set()
    while (batch := t.take(0.0, flush=True)) is not None:
        batches += 1
        assert batch.keys_size == sum(len(k.encode()) + 1 for k in batch.keys)
        assert batch.keys_size <= MAX_TRACE_KEYS_BYTES
        message = Message("RMQ_SYS_TRACE_TOPIC", batch.body(), keys=" ".join(batch.keys))
        message.properties["UNIQ_KEY"] = "F" * 32
        assert len(encode_properties(message.properties)) <= 32767
        keys |= set(batch.keys)
    assert batches > 1 and t.buffered == 0 and t.dropped == 0
    assert len(keys) == 2 * 200 + 200 + 200  # each message id and user key


def test_a_record_whose_own_keys_fill_a_trace_message_is_keyed_by_its_id_alone() -> None:
    """User keys of nearly 32 KiB (the most a message's properties hold) cannot key
    its trace record too: the trace message would exceed the broker's limit. The
    record is written whole, keyed by its message id."""
    t = tracer(capacity=100)
    keys = [f"{'鍵' * 1000}{i}" for i in range(10)]  # 30,019 bytes with separators
    publish(t, result("BIG"), Message("T", b"x", keys=keys))
    publish(t, result("SMALL"), Message("T", b"x", keys=["small"]))
    batches = []
    while (batch := t.take(0.0, flush=True)) is not None:
        batches.append(batch)
        assert batch.keys_size <= MAX_TRACE_KEYS_BYTES
    assert [b.keys for b in batches] == [["BIG", "SMALL", "small"]]
    [big, _] = decode_trace_data(batches[0].body().decode())
    assert big.keys == " ".join(keys)
