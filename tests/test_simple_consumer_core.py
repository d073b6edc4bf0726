"""The simple (POP) consumer's core: receipt handles, POP answers, acks, the
dead-letter path, with scripted brokers (no IO)."""

from __future__ import annotations

import base64
import json

import pytest

from rocketmq_proto import (
    InvalidArgumentError,
    LocalProtocolError,
    PopNotServedError,
    RequestTimeoutError,
)
from rocketmq_proto.flows.consumer.pop_push import PopPushConsumerCore
from rocketmq_proto.flows.consumer.push_config import ConsumerConfig
from rocketmq_proto.flows.consumer.simple import SimpleConsumerConfig, SimpleConsumerCore
from rocketmq_proto.message.codec import encode_stored_message
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import ConfigError, RemoteProtocolError
from rocketmq_proto.wire.pop import (
    QueueAssignment,
    ReceiptHandle,
    encode_batch_ack,
    encode_query_assignment,
    encode_set_request_mode,
    parse_offset_counts,
    parse_offset_lists,
    parse_query_assignment,
    parse_start_offsets,
    pop_retry_topic,
    retry_flag,
)

from .flowsim import Sim
from .test_consumer_core import BROKERS, NAMESRV, make_client, reply, route_body, wire

POP_TIME = 1_700_000_123_456


# ------------------------------------------------------------- receipt handles


def test_a_receipt_handle_round_trips_exactly_and_reads_its_fields() -> None:
    text = "1200 1718000000000 60000 3 0 broker-a 2 1205"
    handle = ReceiptHandle.parse(text)
    assert handle.text == text
    assert (handle.ck_offset, handle.pop_time, handle.invisible_time, handle.revive_qid) == (
        1200,
        1718000000000,
        60000,
        3,
    )
    assert (handle.retry, handle.broker_name, handle.queue_id, handle.offset) == (
        "0",
        "broker-a",
        2,
        1205,
    )
    assert handle.visible_at == 1718000060000 and not handle.is_order
    assert ReceiptHandle.build(1200, 1718000000000, 60000, 3, "0", "broker-a", 2, 1205) == handle
    # The proxy's extra field (a commit log offset) stays in the text.
    proxied = ReceiptHandle.parse(text + " 98765")
    assert proxied.text == text + " 98765" and proxied.offset == 1205
    assert ReceiptHandle.parse("5 1 2 999 0 b 0 5").is_order


@pytest.mark.parametrize("bad", ["", "1 2 3", "a b c d e f g h", "1 2 3 4 0 b x 5"])
def test_a_malformed_receipt_handle_is_refused(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="receipt handle"):
        ReceiptHandle.parse(bad)


def test_retry_flags_and_the_topics_they_name() -> None:
    assert retry_flag("Orders") == "0"
    assert retry_flag("%RETRY%G_Orders") == "1"
    assert retry_flag("%RETRY%G+Orders") == "2"
    assert pop_retry_topic("Orders", "G", "0") == "Orders"
    assert pop_retry_topic("Orders", "G", "1") == "%RETRY%G_Orders"
    assert pop_retry_topic("Orders", "G", "2") == "%RETRY%G+Orders"
    assert ReceiptHandle.parse("0 1 2 3 1 b 0 0").real_topic("Orders", "G") == "%RETRY%G_Orders"


def test_offset_infos_of_a_pop_answer_are_read() -> None:
    assert parse_start_offsets("0 1 100;1 0 7") == {"0@1": 100, "1@0": 7}
    assert parse_offset_lists("0 1 100,101,103") == {"0@1": [100, 101, 103]}
    assert parse_offset_counts("0 qo1%100 2;0 1 0") == {"0@qo1%100": 2, "0@1": 0}
    assert parse_start_offsets(None) == {} and parse_offset_lists("") == {}
    with pytest.raises(Exception, match="not 'flag id value'"):
        parse_start_offsets("0 1")


def test_request_mode_bodies_have_javas_fields() -> None:
    assert json.loads(encode_query_assignment("T", "G", "cid", "CLUSTERING")) == {
        "topic": "T",
        "consumerGroup": "G",
        "clientId": "cid",
        "messageModel": "CLUSTERING",
        "strategyName": "AVG",
    }
    assert json.loads(encode_set_request_mode("T", "G", "POP", -1)) == {
        "topic": "T",
        "consumerGroup": "G",
        "mode": "POP",
        "popShareQueueNum": -1,
    }
    with pytest.raises(InvalidArgumentError, match="mode must be one of"):
        encode_set_request_mode("T", "G", "pop", 0)


def test_a_query_assignment_answer_is_read_with_its_modes() -> None:
    body = json.dumps(
        {
            "messageQueueAssignments": [
                {
                    "messageQueue": {"topic": "T", "brokerName": "broker-a", "queueId": -1},
                    "mode": "POP",
                    "attachments": {},
                },
                {"messageQueue": {"topic": "T", "brokerName": "broker-b", "queueId": 3}},
            ]
        }
    ).encode()
    assert parse_query_assignment(body) == [
        QueueAssignment("T", "broker-a", -1, "POP"),
        QueueAssignment("T", "broker-b", 3, "PULL"),  # no mode: Java's default
    ]
    # No assignment to give (an unknown topic, a client not in the group): None.
    assert parse_query_assignment(b'{"messageQueueAssignments":null}') is None
    assert parse_query_assignment(b"{}") is None
    assert parse_query_assignment(None) is None
    assert parse_query_assignment(b'{"messageQueueAssignments":[]}') == []
    bad = b'{"messageQueueAssignments":[{"messageQueue":{"topic":"T","brokerName":"b",'
    with pytest.raises(RemoteProtocolError, match="unknown mode 'PUSH'"):
        parse_query_assignment(bad + b'"queueId":0},"mode":"PUSH"}]}')
    with pytest.raises(RemoteProtocolError, match="queueId"):
        parse_query_assignment(bad + b'"queueId":"x"}}]}')


def test_a_batch_ack_groups_by_checkpoint_with_javas_bitset() -> None:
    handles = [
        ReceiptHandle.build(100, POP_TIME, 30000, 2, "0", "broker-a", 1, offset)
        for offset in (100, 101, 109)
    ] + [ReceiptHandle.build(7, POP_TIME, 30000, 5, "1", "broker-a", 0, 7)]
    body = json.loads(encode_batch_ack("G", "T", handles))
    assert body["brokerName"] == "broker-a"
    first, second = body["acks"]
    assert {k: first[k] for k in ("c", "t", "r", "so", "q", "rq", "pt", "it")} == {
        "c": "G",
        "t": "T",
        "r": "0",
        "so": 100,
        "q": 1,
        "rq": 2,
        "pt": POP_TIME,
        "it": 30000,
    }
    # Bits 0, 1 and 9 (little-endian bytes, as BitSet.toByteArray): 0b11, 0b10.
    assert base64.b64decode(first["b"]) == bytes([0b11, 0b10])
    assert (second["r"], second["so"], base64.b64decode(second["b"])) == ("1", 7, b"\x01")
    with pytest.raises(InvalidArgumentError, match="one broker"):
        encode_batch_ack("G", "T", [*handles, ReceiptHandle.parse("0 1 2 3 0 other 0 0")])


# --------------------------------------------------------------- the flows

TOPIC = "T"
GROUP = "G"


def stored(
    offset: int, queue_id: int, body: bytes = b"x", topic: str = TOPIC, **props: str
) -> bytes:
    msg = MessageExt(
        topic,
        body,
        queue_id=queue_id,
        queue_offset=offset,
        properties={"UNIQ_KEY": f"ID{queue_id}-{offset}", **props},
        commit_log_offset=5000 + offset,
        store_host="127.0.0.1:10911",
        born_host="10.0.0.1:5000",
    )
    return encode_stored_message(msg)


def pop_answer(
    messages: list[tuple[int, int]], *, start: dict[int, int] | None = None, body: bytes = b""
) -> RemotingCommand:
    """A FOUND answer holding (queue id, offset) ``messages`` of the topic."""
    by_queue: dict[int, list[int]] = {}
    for queue_id, offset in messages:
        by_queue.setdefault(queue_id, []).append(offset)
    start = start or {q: offsets[0] for q, offsets in by_queue.items()}
    fields = {
        "popTime": str(POP_TIME),
        "invisibleTime": "30000",
        "reviveQid": "4",
        "restNum": "0",
        "startOffsetInfo": ";".join(f"0 {q} {start[q]}" for q in by_queue),
        "msgOffsetInfo": ";".join(
            f"0 {q} {','.join(map(str, offsets))}" for q, offsets in by_queue.items()
        ),
    }
    payload = body or b"".join(stored(offset, q) for q, offset in messages)
    return reply(ResponseCode.SUCCESS, fields, payload)


class Brokers:
    """Routes from the name server; POP answers queued per broker; acks recorded."""

    def __init__(self) -> None:
        self.pops: dict[str, list[RemotingCommand | Exception]] = {}
        self.seen: list[tuple[str, RemotingCommand]] = []

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        cmd = wire(command)
        if addr == NAMESRV:
            return reply(0, body=route_body(2))
        self.seen.append((addr, cmd))
        if cmd.code == RequestCode.POP_MESSAGE:
            queued = self.pops.get(addr) or [reply(ResponseCode.POLLING_TIMEOUT)]
            answer = queued.pop(0) if len(queued) > 1 or addr in self.pops else queued[0]
            if isinstance(answer, Exception):
                raise answer
            return answer
        if cmd.code == RequestCode.CHANGE_MESSAGE_INVISIBLETIME:
            return reply(
                0, {"popTime": str(POP_TIME + 5), "invisibleTime": "9000", "reviveQid": "4"}
            )
        return reply(0)

    def of(self, code: RequestCode) -> list[tuple[str, RemotingCommand]]:
        return [(addr, cmd) for addr, cmd in self.seen if cmd.code == code]


A = BROKERS["broker-a"][0]
B = BROKERS["broker-b"][0]


def started(sim: Sim, **config: object) -> SimpleConsumerCore:
    core = SimpleConsumerCore(make_client(), SimpleConsumerConfig(GROUP, **config))  # type: ignore[arg-type]
    core.subscribe(TOPIC)
    core.register()
    core.start()
    sim.run(core.start_flow())
    return core


def test_a_receive_asks_each_broker_at_once_then_long_polls_one() -> None:
    brokers = Brokers()
    sim = Sim(brokers)
    core = started(sim, await_duration=5.0)
    assert sim.run(core.receive_flow(4, 30.0, None)) == []
    pops = brokers.of(RequestCode.POP_MESSAGE)
    assert [(addr, cmd.ext_fields["pollTime"]) for addr, cmd in pops[:2]] == [(A, "0"), (B, "0")]
    # What is left of the wait (the two quick asks took a few ms).
    assert pops[2][0] == A and 4990 <= int(pops[2][1].ext_fields["pollTime"]) < 5000
    fields = pops[0][1].ext_fields
    assert fields["queueId"] == "-1" and fields["maxMsgNums"] == "4"
    assert fields["invisibleTime"] == "30000" and fields["initMode"] == "1"
    assert fields["consumerGroup"] == GROUP and fields["bname"] == "broker-a"
    assert fields["order"] == "false" and fields["bornTime"] == str(sim.wall_ms)
    # The next receive starts at the other broker.
    brokers.seen.clear()
    sim.run(core.receive_flow(4, 30.0, 0.0))
    assert [addr for addr, _ in brokers.of(RequestCode.POP_MESSAGE)] == [B, A]


def test_popped_messages_get_their_receipt_handles_and_broker() -> None:
    brokers = Brokers()
    brokers.pops[B] = [pop_answer([(1, 100), (1, 101), (0, 7)], start={1: 99, 0: 7})]
    sim = Sim(brokers)
    core = started(sim)
    got = sim.run(core.receive_flow(16, 30.0, 0.0))
    assert [(m.queue_id, m.queue_offset) for m in got] == [(1, 100), (1, 101), (0, 7)]
    assert [m.receipt_handle for m in got] == [
        f"99 {POP_TIME} 30000 4 0 broker-b 1 100",
        f"99 {POP_TIME} 30000 4 0 broker-b 1 101",
        f"7 {POP_TIME} 30000 4 0 broker-b 0 7",
    ]
    assert all(m.broker_name == "broker-b" and m.topic == TOPIC for m in got)
    assert all(m.properties["1ST_POP_TIME"] == str(POP_TIME) for m in got)


def test_a_retried_message_keeps_the_handle_the_broker_wrote() -> None:
    brokers = Brokers()
    handle = f"3 {POP_TIME} 30000 4 1 broker-a 0 3"
    body = stored(3, 0, b"again", topic=TOPIC, POP_CK=handle)
    brokers.pops[A] = [pop_answer([(0, 3)], body=body)]
    sim = Sim(brokers)
    (msg,) = sim.run(started(sim).receive_flow(16, 30.0, 0.0))
    assert msg.receipt_handle == handle


def test_acks_name_the_real_topic_and_batch_per_broker() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100), (1, 101)])]
    sim = Sim(brokers)
    core = started(sim)
    got = sim.run(core.receive_flow(16, 30.0, 0.0))
    retried = MessageExt(TOPIC, b"r", properties={"POP_CK": f"3 {POP_TIME} 30000 4 1 broker-b 0 3"})
    sim.run(core.ack_flow([got[0]]))
    sim.run(core.ack_flow([got[1], retried]))
    acks = brokers.of(RequestCode.ACK_MESSAGE)
    assert [(addr, cmd.ext_fields["topic"], cmd.ext_fields["offset"]) for addr, cmd in acks] == [
        (A, TOPIC, "100"),
        (A, TOPIC, "101"),  # one message per broker: single acks
        (B, f"%RETRY%{GROUP}_{TOPIC}", "3"),
    ]
    assert acks[0][1].ext_fields["extraInfo"] == got[0].receipt_handle
    assert brokers.of(RequestCode.BATCH_ACK_MESSAGE) == []
    sim.run(core.ack_flow(got))  # two of one broker: one batch
    (batch,) = brokers.of(RequestCode.BATCH_ACK_MESSAGE)
    assert batch[0] == A and json.loads(batch[1].body)["acks"][0]["so"] == 100


def test_a_broker_without_batch_acks_gets_single_ones() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100), (1, 101)])]
    sim = Sim(brokers)
    core = started(sim)
    got = sim.run(core.receive_flow(16, 30.0, 0.0))

    def no_batch(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.BATCH_ACK_MESSAGE:
            brokers.seen.append((addr, command))
            return reply(ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        return brokers(addr, command)

    sim.on_call = no_batch
    sim.run(core.ack_flow(got))
    assert len(brokers.of(RequestCode.ACK_MESSAGE)) == 2


def test_change_invisible_duration_gives_the_message_its_new_handle() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100)], start={1: 90})]
    sim = Sim(brokers)
    core = started(sim)
    (msg,) = sim.run(core.receive_flow(16, 30.0, 0.0))
    old = msg.receipt_handle
    sim.run(core.change_invisible_flow(msg, 9.0))
    (change,) = brokers.of(RequestCode.CHANGE_MESSAGE_INVISIBLETIME)
    assert change[1].ext_fields["extraInfo"] == old
    assert change[1].ext_fields["invisibleTime"] == "9000"
    assert msg.receipt_handle == f"100 {POP_TIME + 5} 9000 4 0 broker-a 1 100"
    with pytest.raises(InvalidArgumentError, match="invisible_duration"):
        sim.run(core.change_invisible_flow(msg, 0.5))


def test_a_message_delivered_too_often_goes_to_the_dlq_and_is_acked() -> None:
    brokers = Brokers()
    retried = stored(3, 0, b"poison", POP_CK=f"3 {POP_TIME} 30000 4 1 broker-a 0 3")
    fresh = stored(4, 1, b"fine")
    answer = pop_answer([(1, 4)])
    brokers.pops[A] = [reply(ResponseCode.SUCCESS, answer.ext_fields, retried + fresh)]
    sim = Sim(brokers)
    core = started(sim, max_reconsume_times=2)
    # The broker's stored reconsume count: patch the poison's bytes via a real message.
    poison = MessageExt(
        TOPIC,
        b"poison",
        queue_offset=3,
        reconsume_times=3,  # one more than max_reconsume_times=2 allows
        properties={"UNIQ_KEY": "POISON", "POP_CK": f"3 {POP_TIME} 30000 4 1 broker-a 0 3"},
        commit_log_offset=5003,
        store_host="127.0.0.1:10911",
        born_host="10.0.0.1:5000",
    )
    brokers.pops[A] = [
        reply(ResponseCode.SUCCESS, answer.ext_fields, encode_stored_message(poison) + fresh)
    ]
    got = sim.run(core.receive_flow(16, 30.0, 0.0))
    assert [m.body for m in got] == [b"fine"]
    (back,) = brokers.of(RequestCode.CONSUMER_SEND_MSG_BACK)
    assert back[1].ext_fields["delayLevel"] == "-1"
    assert back[1].ext_fields["originTopic"] == f"%RETRY%{GROUP}_{TOPIC}"
    assert back[1].ext_fields["originMsgId"] == "POISON"
    assert back[1].ext_fields["offset"] == "5003"
    (ack,) = brokers.of(RequestCode.ACK_MESSAGE)
    assert ack[1].ext_fields["extraInfo"] == poison.receipt_handle


def test_a_message_whose_tag_is_not_subscribed_is_acked_not_delivered() -> None:
    brokers = Brokers()
    brokers.pops[A] = [
        pop_answer(
            [(0, 1), (0, 2)], body=stored(1, 0, b"no", TAGS="x") + stored(2, 0, b"yes", TAGS="a")
        )
    ]
    sim = Sim(brokers)
    core = started(sim)
    core.subscribe(TOPIC, "a || b")
    got = sim.run(core.receive_flow(16, 30.0, 0.0))
    assert [m.body for m in got] == [b"yes"]
    assert [cmd.ext_fields["offset"] for _, cmd in brokers.of(RequestCode.ACK_MESSAGE)] == ["1"]


def test_one_failing_broker_does_not_fail_a_receive_but_all_failing_do() -> None:
    brokers = Brokers()
    brokers.pops[A] = [RequestTimeoutError("POP_MESSAGE to a timed out")]
    brokers.pops[B] = [pop_answer([(0, 5)])]
    sim = Sim(brokers)
    core = started(sim)
    assert [m.queue_offset for m in sim.run(core.receive_flow(16, 30.0, 0.0))] == [5]
    brokers.pops[A] = [RequestTimeoutError("a")]
    brokers.pops[B] = [RequestTimeoutError("b")]
    with pytest.raises(RequestTimeoutError):
        sim.run(core.receive_flow(16, 30.0, 0.0))


def test_fifo_pops_send_order_and_an_attempt_id_kept_after_a_lost_answer() -> None:
    brokers = Brokers()
    brokers.pops[A] = [RequestTimeoutError("lost"), reply(ResponseCode.POLLING_TIMEOUT)]
    brokers.pops[B] = [RequestTimeoutError("lost"), reply(ResponseCode.POLLING_TIMEOUT)]
    sim = Sim(brokers)
    core = started(sim, fifo=True)
    with pytest.raises(RequestTimeoutError):
        sim.run(core.receive_flow(1, 30.0, 0.0))
    sim.run(core.receive_flow(1, 30.0, 0.0))
    pops = brokers.of(RequestCode.POP_MESSAGE)
    assert all(cmd.ext_fields["order"] == "true" for _, cmd in pops)
    ids = {(addr, n): cmd.ext_fields["attemptId"] for n, (addr, cmd) in enumerate(pops)}
    # Each broker's lost pop id is sent again to that broker, and only there.
    first_a, first_b, again_b, again_a = (ids[k] for k in sorted(ids, key=lambda k: k[1]))
    assert first_a != first_b
    assert (again_a, again_b) == (first_a, first_b)
    sim.run(core.receive_flow(1, 30.0, 0.0))
    fresh = {cmd.ext_fields["attemptId"] for _, cmd in brokers.of(RequestCode.POP_MESSAGE)[4:]}
    assert not fresh & {first_a, first_b}


def test_fifo_reconsume_counts_come_from_the_answer() -> None:
    brokers = Brokers()
    answer = pop_answer([(0, 8)])
    fields = {**answer.ext_fields, "orderCountInfo": "0 qo0%8 3;0 0 0", "reviveQid": "999"}
    brokers.pops[A] = [reply(ResponseCode.SUCCESS, fields, answer.body)]
    sim = Sim(brokers)
    (msg,) = sim.run(started(sim, fifo=True).receive_flow(1, 30.0, 0.0))
    assert msg.reconsume_times == 3
    assert ReceiptHandle.parse(msg.receipt_handle or "").is_order


def test_bad_arguments_and_states_are_clear_errors() -> None:
    sim = Sim(Brokers())
    core = SimpleConsumerCore(make_client(), SimpleConsumerConfig(GROUP))
    with pytest.raises(LocalProtocolError, match="before start"):
        sim.run(core.receive_flow(1, 30.0, 0.0))
    core.start()
    with pytest.raises(LocalProtocolError, match="subscribe to a topic first"):
        sim.run(core.receive_flow(1, 30.0, 0.0))
    core.subscribe(TOPIC)
    for bad in (0, 33, True):
        with pytest.raises(InvalidArgumentError, match="max_messages"):
            sim.run(core.receive_flow(bad, 30.0, 0.0))
    with pytest.raises(InvalidArgumentError, match="wait"):
        sim.run(core.receive_flow(1, 30.0, -1.0))
    with pytest.raises(InvalidArgumentError, match="no receipt handle"):
        sim.run(core.ack_flow([MessageExt(TOPIC, b"x")]))
    for config in ({"group": ""}, {"group": "G", "consume_from_where": "CONSUME_FROM_TIMESTAMP"}):
        with pytest.raises(ConfigError):
            SimpleConsumerConfig(**config)  # type: ignore[arg-type]


# ----------------------------------------------------- PushConsumer, POP mode


def pop_push(sim: Sim, handler: object, **config: object) -> PopPushConsumerCore:
    core = PopPushConsumerCore(
        make_client(),
        ConsumerConfig(GROUP, consume_mode="pop", **config),  # type: ignore[arg-type]
        handler,  # type: ignore[arg-type]
    )
    core.subscribe(TOPIC)
    core.register()
    core.start()
    sim.run(core.pop.start_flow())
    return core


def test_a_pop_mode_batch_handled_is_acked_and_a_failed_one_hidden_for_its_retry_delay() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100), (1, 101)])]

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_BROKER_CONFIG:
            return reply(0, body=b"messageDelayLevel=1s 5s 10s 30s\n")
        return brokers(addr, command)

    sim = Sim(answer)
    results = iter([True, False])
    core = pop_push(sim, lambda msgs: next(results), consume_message_batch_max_size=1)
    msgs = sim.run(core.pop.pop_flow(TOPIC, "broker-a", 32, 30000, 0))
    core.in_flight = 2
    sim.run(core._consume_flow(msgs[:1], "broker-a"))
    sim.run(core._consume_flow(msgs[1:], "broker-a"))
    assert core.in_flight == 0 and core.consumed == 2
    (ack,) = brokers.of(RequestCode.ACK_MESSAGE)
    assert ack[1].ext_fields["offset"] == "100"
    (hide,) = brokers.of(RequestCode.CHANGE_MESSAGE_INVISIBLETIME)
    # First retry: delay level 3 of the broker's table (10 s), as its own retries.
    assert hide[1].ext_fields["offset"] == "101" and hide[1].ext_fields["invisibleTime"] == "10000"


def test_a_pop_mode_handler_that_raises_is_logged_and_its_batch_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100)])]
    sim = Sim(brokers)

    def fails(msgs: list[MessageExt]) -> None:
        raise RuntimeError("boom")

    core = pop_push(sim, fails, delay_level_when_next_consume=1)
    (msg,) = sim.run(core.pop.pop_flow(TOPIC, "broker-a", 32, 30000, 0))
    core.in_flight = 1
    sim.run(core._consume_flow([msg], "broker-a"))
    assert "message handler raised" in caplog.text and "boom" in caplog.text
    (hide,) = brokers.of(RequestCode.CHANGE_MESSAGE_INVISIBLETIME)
    assert hide[1].ext_fields["invisibleTime"] == "1000"  # the broker's level 1 (Java's table)
    assert brokers.of(RequestCode.ACK_MESSAGE) == []


def test_a_message_is_delivered_up_to_max_reconsume_times_again() -> None:
    brokers = Brokers()
    handle = f"3 {POP_TIME} 30000 4 1 broker-a 0 3"
    last = MessageExt(
        TOPIC,
        b"last try",
        queue_offset=3,
        reconsume_times=2,
        properties={"UNIQ_KEY": "LAST", "POP_CK": handle},
        commit_log_offset=5003,
        store_host="127.0.0.1:10911",
        born_host="10.0.0.1:5000",
    )
    brokers.pops[A] = [
        reply(ResponseCode.SUCCESS, pop_answer([(0, 9)]).ext_fields, encode_stored_message(last))
    ]
    sim = Sim(brokers)
    got = sim.run(started(sim, max_reconsume_times=2).receive_flow(16, 30.0, 0.0))
    assert [m.body for m in got] == [b"last try"]
    assert brokers.of(RequestCode.CONSUMER_SEND_MSG_BACK) == []


def test_an_orderly_pop_mode_queue_stops_at_a_failed_batch() -> None:
    """After a failed message, the rest of its queue from that pop is not handled
    (it would be acked before the failed one came back): it is hidden for the
    same pause, and the queue's messages come again in order."""
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(0, 1), (0, 2), (0, 3), (1, 7)])]
    sim = Sim(brokers)
    handled: list[int] = []

    def handler(msgs: list[MessageExt]) -> bool:
        handled.extend(m.queue_offset for m in msgs)
        return msgs[0].queue_offset != 2  # the second of queue 0 fails

    core = pop_push(sim, handler, orderly=True, suspend_current_queue_time_millis=1000)
    msgs = sim.run(core.pop.pop_flow(TOPIC, "broker-a", 32, 30000, 0))
    core.in_flight = len(msgs)
    sim.run(core._consume_in_order_flow(msgs, "broker-a"))
    assert handled == [1, 2, 7]  # offset 3 waits for 2; queue 1 goes on
    assert core.in_flight == 0 and core.settling == 0
    assert [c.ext_fields["offset"] for _, c in brokers.of(RequestCode.ACK_MESSAGE)] == ["1", "7"]
    hidden = brokers.of(RequestCode.CHANGE_MESSAGE_INVISIBLETIME)
    assert [(c.ext_fields["offset"], c.ext_fields["invisibleTime"]) for _, c in hidden] == [
        ("2", "1000"),
        ("3", "1000"),
    ]


def test_a_pop_mode_batch_past_its_invisible_time_is_not_handled() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100)])]
    sim = Sim(brokers)
    handled: list[object] = []
    core = pop_push(sim, handled.append)
    (msg,) = sim.run(core.pop.pop_flow(TOPIC, "broker-a", 32, 30000, 0))
    sim.wall_ms = POP_TIME + 30_000  # its invisible time is over
    core.in_flight = 1
    assert sim.run(core._consume_flow([msg], "broker-a")) is None
    assert handled == [] and core.in_flight == 0
    assert brokers.of(RequestCode.ACK_MESSAGE) == []


def not_served() -> RemotingCommand:
    """What the 5.x proxy's remoting port answers a POP_MESSAGE (it takes it for a pull)."""
    answer = reply(ResponseCode.SYSTEM_ERROR)
    answer.remark = "java.lang.NullPointerException: PullMessageRequestHeader.getSysFlag() is null"
    return answer


def test_a_pop_mode_start_pops_each_broker_once_without_waiting_then_starts_the_loops() -> None:
    brokers = Brokers()
    brokers.pops[A] = [pop_answer([(1, 100), (1, 101)])]
    sim = Sim(brokers)
    core = pop_push(sim, lambda msgs: True)
    sim.run(core.start_flow())
    pops = brokers.of(RequestCode.POP_MESSAGE)
    assert sorted(addr for addr, _ in pops) == sorted([A, B])
    assert {cmd.ext_fields["pollTime"] for _, cmd in pops} == {"0"}  # the start does not wait
    assert sorted(name for name, _ in sim.spawned) == [
        f"pop {TOPIC}@broker-a",
        f"pop {TOPIC}@broker-b",
    ]
    assert core.in_flight == 2  # broker-a's two messages, handed to its loop
    assert core.stats()["pop_not_served"] == []


def test_a_pop_mode_start_fails_where_pop_is_not_served() -> None:
    """Given the 5.x proxy's remoting port, the start raises PopNotServedError (the
    driver's start() then closes the consumer) and no pop loop runs."""
    brokers = Brokers()
    brokers.pops[A] = [not_served()]
    sim = Sim(brokers)
    core = pop_push(sim, lambda msgs: True)
    with pytest.raises(PopNotServedError, match="does not serve POP"):
        sim.run(core.start_flow())
    assert sim.spawned == []


def test_a_pop_loop_started_later_where_pop_is_not_served_ends_logged_and_in_the_stats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    brokers = Brokers()
    brokers.pops[B] = [not_served()]
    sim = Sim(brokers)
    core = pop_push(sim, lambda msgs: True)
    core._targets = {(TOPIC, "broker-b")}
    core._loops.add((TOPIC, "broker-b"))
    with caplog.at_level("ERROR", logger="rocketmq_proto.consumer"):
        sim.run(core._pop_loop_flow(TOPIC, "broker-b"))  # returns: the loop ended
    assert core._loops == set()
    assert [r.levelname for r in caplog.records if "does not serve POP" in r.getMessage()] == [
        "ERROR"
    ]
    (entry,) = core.stats()["pop_not_served"]
    assert entry.startswith(f"{TOPIC}@broker-b: ") and "does not serve POP" in entry
