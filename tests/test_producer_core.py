"""Producer flows driven by a scripted interpreter: queue choice, retries, transactions."""

from __future__ import annotations

import json

import pytest

from rocketmq_proto._client import ClientConfig, ClientCore
from rocketmq_proto._codes import (
    FLAG_RESPONSE,
    RequestCode,
    ResponseCode,
    SendStatus,
    TransactionState,
)
from rocketmq_proto._command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto._errors import (
    ConfigError,
    ConnectionClosedError,
    InvalidMessageError,
    MessageTooLargeError,
    NoPermissionError,
    RouteNotFoundError,
)
from rocketmq_proto._message import (
    Message,
    MessageExt,
    UniqueIdGenerator,
    decode_batch,
    decode_properties,
    encode_offset_msg_id,
    encode_stored_message,
)
from rocketmq_proto._producer import (
    ProducerConfig,
    ProducerCore,
    make_reply_message,
    select_by_key,
)
from rocketmq_proto._route import MessageQueue

from .flowsim import Sim

NAMESRV = "127.0.0.1:9876"
BROKERS = {"broker-a": "127.0.0.1:10911", "broker-b": "127.0.0.1:10921"}


def route_body(topic: str, queues: int = 4) -> bytes:
    return json.dumps(
        {
            "brokerDatas": [
                {"cluster": "DefaultCluster", "brokerName": n, "brokerAddrs": {"0": a}}
                for n, a in BROKERS.items()
            ],
            "queueDatas": [
                {
                    "brokerName": n,
                    "readQueueNums": queues,
                    "writeQueueNums": queues,
                    "perm": 6,
                    "topicSysFlag": 0,
                }
                for n in BROKERS
            ],
        }
    ).encode()


def reply(code: int, fields: dict[str, str] | None = None, body: bytes = b"") -> RemotingCommand:
    return RemotingCommand(code, fields or {}, body, flag=FLAG_RESPONSE)


def wire(cmd: RemotingCommand) -> RemotingCommand:
    """The command as the broker would decode it (proves it encodes)."""
    decoder = FrameDecoder()
    decoder.feed(encode_command(cmd))
    got = decoder.next_frame()
    assert got is not None
    return got


class Broker:
    """Scripted name server and brokers: ``failing`` brokers answer with errors."""

    def __init__(self) -> None:
        self.failing: dict[str, Exception | int] = {}
        self.sent: list[tuple[str, RemotingCommand]] = []
        self.offset = 0

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        cmd = wire(command)
        if addr == NAMESRV:
            assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
            if cmd.ext_fields["topic"] == "Missing":
                return reply(ResponseCode.TOPIC_NOT_EXIST, remark=None)  # type: ignore[call-arg]
            return reply(0, body=route_body(cmd.ext_fields["topic"]))
        name = next(n for n, a in BROKERS.items() if a == addr)
        failure = self.failing.get(name)
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, int):
            return reply(failure)
        self.sent.append((name, cmd))
        self.offset += 1
        return reply(
            0,
            {
                "msgId": encode_offset_msg_id("127.0.0.1", 10911, 1000 + self.offset),
                "queueId": cmd.ext_fields["e"],
                "queueOffset": str(self.offset),
                "transactionId": "TX" + str(self.offset),
            },
        )


def make_producer(**config: object) -> ProducerCore:
    client = ClientCore(ClientConfig((NAMESRV,), client_ip="10.0.0.1", instance_name="t"))
    core = ProducerCore(
        client,
        ProducerConfig(group="G", **config),  # type: ignore[arg-type]
        UniqueIdGenerator(bytes([10, 0, 0, 1]), 42, 7),
    )
    core.register()
    return core


def test_send_builds_v2_request_and_parses_result() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    msg = Message("T", b"hello", tags="TagA", keys=["k1", "k2"], properties={"color": "blue"})
    result = sim.run(core.send_flow(msg))
    assert result is not None and result.status is SendStatus.SEND_OK
    name, cmd = broker.sent[0]
    assert cmd.code == RequestCode.SEND_MESSAGE_V2
    fields = cmd.ext_fields
    assert (fields["a"], fields["b"], fields["c"], fields["d"]) == ("G", "T", "TBW102", "4")
    assert fields["n"] == name == result.message_queue.broker_name
    assert fields["g"] == str(sim.wall_ms)
    props = decode_properties(fields["i"].encode())
    assert props["TAGS"] == "TagA" and props["KEYS"] == "k1 k2" and props["color"] == "blue"
    assert props["UNIQ_KEY"] == result.msg_id
    assert result.msg_id.startswith("0A000001002A00000007")
    assert cmd.body == b"hello"
    assert result.message_queue == MessageQueue("T", name, int(fields["e"]))


def test_round_robin_spreads_over_queues_of_both_brokers() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    for i in range(16):
        sim.run(core.send_flow(Message("T", b"%d" % i)))
    used = {(n, c.ext_fields["e"]) for n, c in broker.sent}
    assert len(used) == 8


def test_retry_on_another_broker_when_one_is_down() -> None:
    broker = Broker()
    broker.failing["broker-a"] = ConnectionClosedError("refused")
    sim = Sim(broker)
    core = make_producer()
    for i in range(6):
        result = sim.run(core.send_flow(Message("T", b"%d" % i)))
        assert result is not None and result.message_queue.broker_name == "broker-b"
    # After the first failure the fault table keeps sends away from broker-a.
    tried_a = [a for a, _ in sim.calls if a == BROKERS["broker-a"]]
    assert len(tried_a) == 1


def test_retriable_broker_code_retries_non_retriable_raises() -> None:
    broker = Broker()
    broker.failing["broker-a"] = ResponseCode.SYSTEM_BUSY
    broker.failing["broker-b"] = ResponseCode.SYSTEM_BUSY
    sim = Sim(broker)
    core = make_producer()
    with pytest.raises(Exception) as info:
        sim.run(core.send_flow(Message("T", b"x")))
    assert getattr(info.value, "code", None) == ResponseCode.SYSTEM_BUSY
    assert len([c for c in sim.calls if c[0] != NAMESRV]) == 3  # 1 + 2 retries

    broker2 = Broker()
    broker2.failing["broker-a"] = ResponseCode.MESSAGE_ILLEGAL
    broker2.failing["broker-b"] = ResponseCode.MESSAGE_ILLEGAL
    sim2 = Sim(broker2)
    with pytest.raises(Exception) as info2:
        sim2.run(make_producer().send_flow(Message("T", b"x")))
    assert getattr(info2.value, "code", None) == ResponseCode.MESSAGE_ILLEGAL
    assert len([c for c in sim2.calls if c[0] != NAMESRV]) == 1


def test_total_timeout_bounds_the_retries() -> None:
    broker = Broker()
    broker.failing["broker-a"] = NoPermissionError(16, "no")
    broker.failing["broker-b"] = NoPermissionError(16, "no")
    sim = Sim(broker, call_cost=2.0)
    core = make_producer()
    with pytest.raises(NoPermissionError):
        sim.run(core.send_flow(Message("T", b"x"), timeout=3.0))
    # name server (2 s), first attempt (2 s): the third attempt is never started.
    assert len([c for c in sim.calls if c[0] != NAMESRV]) == 1


def test_large_body_is_compressed_and_oversized_is_refused() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    body = b"abc" * 3000
    sim.run(core.send_flow(Message("T", body)))
    cmd = broker.sent[0][1]
    assert int(cmd.ext_fields["f"]) & 0x1
    assert len(cmd.body) < len(body)
    with pytest.raises(MessageTooLargeError, match="exceeds the maximum message size"):
        sim.run(core.send_flow(Message("T", b"x" * (4 * 1024 * 1024 + 1))))


def test_an_empty_body_is_refused_before_sending() -> None:
    """As the Java client refuses it ("the message body length is zero")."""
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    with pytest.raises(InvalidMessageError, match="message body is empty"):
        sim.run(core.send_flow(Message("T", b"")))
    with pytest.raises(InvalidMessageError, match="message body is empty"):
        sim.run(core.send_batch_flow([Message("T", b"a"), Message("T", b"")]))
    assert not broker.sent


def test_sharding_key_is_stable_and_matches_java_hash_rule() -> None:
    queues = [MessageQueue("T", "b", i) for i in range(8)]
    # Java 17 prints -1207111310 for "order-1".hashCode(); |h| % 8 == 6.
    assert select_by_key(queues, "order-1") == queues[6]
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    for _ in range(5):
        sim.run(core.send_flow(Message("T", b"x"), sharding_key="order-1"))
    assert len({(n, c.ext_fields["e"]) for n, c in broker.sent}) == 1


def test_oneway_send_is_not_awaited() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    assert sim.run(core.send_flow(Message("T", b"x"), oneway=True)) is None
    assert len(sim.oneways) == 1 and broker.sent == []


def test_batch_body_has_each_member_with_its_own_id() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    msgs = [Message("T", b"m%d" % i, keys=[f"k{i}"]) for i in range(3)]
    result = sim.run(core.send_batch_flow(msgs))
    cmd = broker.sent[0][1]
    assert cmd.code == RequestCode.SEND_BATCH_MESSAGE and cmd.ext_fields["m"] == "true"
    members = decode_batch(cmd.body)
    ids = [props["UNIQ_KEY"] for _, _, props in members]
    assert len(set(ids)) == 3
    assert result.msg_id == ",".join(ids)
    assert [body for _, body, _ in members] == [b"m0", b"m1", b"m2"]


def test_unknown_topic_without_default_route_raises_route_not_found() -> None:
    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        return reply(ResponseCode.TOPIC_NOT_EXIST)

    with pytest.raises(RouteNotFoundError, match="Missing"):
        Sim(answer).run(make_producer().send_flow(Message("Missing", b"x")))


def test_transaction_commit_sends_end_transaction_with_offsets() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    seen = []

    def local(msg: Message, arg: object) -> TransactionState:
        seen.append((msg.properties["TRAN_MSG"], arg))
        return TransactionState.COMMIT

    result, state = sim.run(core.transaction_flow(Message("T", b"x"), local, "arg"))
    assert state is TransactionState.COMMIT and seen == [("true", "arg")]
    half = broker.sent[0][1]
    assert int(half.ext_fields["f"]) & 0x4
    ((addr, end),) = sim.oneways
    end = wire(end)
    assert end.code == RequestCode.END_TRANSACTION
    assert end.ext_fields["commitOrRollback"] == "8"
    assert end.ext_fields["tranStateTableOffset"] == str(result.queue_offset)
    assert end.ext_fields["commitLogOffset"] == str(1000 + 1)
    assert end.ext_fields["transactionId"] == result.transaction_id
    assert addr == BROKERS[result.message_queue.broker_name]


def test_transaction_local_exception_means_unknown() -> None:
    broker = Broker()
    sim = Sim(broker)

    def local(msg: Message, arg: object) -> TransactionState:
        raise RuntimeError("db down")

    _, state = sim.run(make_producer().transaction_flow(Message("T", b"x"), local))
    assert state is TransactionState.UNKNOWN
    end = wire(sim.oneways[0][1])
    assert end.ext_fields["commitOrRollback"] == "0"
    assert "db down" in (end.remark or "")


def test_check_back_asks_checker_and_answers_end_transaction() -> None:
    core = make_producer()
    core.transaction_checker = lambda msg: TransactionState.ROLLBACK
    stored = encode_stored_message(
        MessageExt(
            "T",
            b"half",
            properties={"UNIQ_KEY": "U1", "PGROUP": "G", "TRAN_MSG": "true"},
            queue_offset=5,
            commit_log_offset=777,
            store_host="127.0.0.1:10911",
        )
    )
    request = RemotingCommand(
        RequestCode.CHECK_TRANSACTION_STATE,
        {
            "tranStateTableOffset": "5",
            "commitLogOffset": "777",
            "msgId": "X",
            "transactionId": "TX9",
        },
        stored,
    )
    sim = Sim(Broker())
    assert sim.run(core.client.handle_server_request(BROKERS["broker-a"], request)) is None
    ((addr, end),) = sim.oneways
    end = wire(end)
    assert addr == BROKERS["broker-a"]
    assert end.ext_fields["fromTransactionCheck"] == "true"
    assert end.ext_fields["commitOrRollback"] == "12"
    assert (end.ext_fields["msgId"], end.ext_fields["transactionId"]) == ("U1", "TX9")
    assert end.ext_fields["commitLogOffset"] == "777"


def test_namespace_wraps_topic_and_group_on_the_wire_only() -> None:
    broker = Broker()
    sim = Sim(broker)
    client = ClientCore(ClientConfig((NAMESRV,), namespace="ns1"))
    core = ProducerCore(client, ProducerConfig(group="G"), UniqueIdGenerator(bytes(4), 1, 1))
    result = sim.run(core.send_flow(Message("T", b"x")))
    cmd = broker.sent[0][1]
    assert (cmd.ext_fields["a"], cmd.ext_fields["b"]) == ("ns1%G", "ns1%T")
    assert result is not None and result.message_queue.topic == "T"


def test_reply_message_carries_correlation() -> None:
    request = MessageExt(
        "T",
        b"q",
        properties={
            "CLUSTER": "DefaultCluster",
            "CORRELATION_ID": "c1",
            "REPLY_TO_CLIENT": "1.2.3.4@x",
            "TTL": "3000",
        },
    )
    reply_msg = make_reply_message(request, b"answer")
    assert reply_msg.topic == "DefaultCluster_REPLY_TOPIC"
    assert reply_msg.properties["MSG_TYPE"] == "reply"
    assert reply_msg.properties["CORRELATION_ID"] == "c1"


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="producer group"):
        ProducerConfig(group="bad group!")
    with pytest.raises(ConfigError, match="send_timeout"):
        ProducerConfig(send_timeout=0)
    with pytest.raises(ConfigError, match="host:port"):
        ClientConfig(("nohost",))


def test_concurrent_route_lookups_share_one_name_server_request() -> None:
    from rocketmq_proto._effects import Call, Now, Sleep

    core = make_producer().client
    first = core.route_flow("T")
    assert isinstance(first.send(None), Now)
    call = first.send(100.0)
    assert isinstance(call, Call) and call.addr == NAMESRV
    second = core.route_flow("T")
    assert isinstance(second.send(None), Now)
    assert isinstance(second.send(100.0), Sleep)  # waits instead of asking again
    with pytest.raises(StopIteration) as done:
        first.send(reply(0, body=route_body("T")))
    route = done.value.value
    assert isinstance(second.send(None), Now)
    with pytest.raises(StopIteration) as shared:
        second.send(100.01)
    assert shared.value.value is route
