"""Producer flows driven by a scripted interpreter: queue choice, retries, transactions."""

from __future__ import annotations

import json
import sys

import pytest

from rocketmq_proto.flows.producer import (
    OFFLOAD_COMPRESSION_OVER,
    ProducerConfig,
    ProducerCore,
    make_reply_message,
    select_by_key,
)
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.codec import decode_batch, encode_stored_message
from rocketmq_proto.message.compression import CompressionType, decompress_body
from rocketmq_proto.message.ids import UniqueIdGenerator, encode_offset_msg_id
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.message.properties import decode_properties
from rocketmq_proto.options import producer_settings
from rocketmq_proto.wire.codes import (
    FLAG_RESPONSE,
    RequestCode,
    ResponseCode,
    SendStatus,
    TransactionState,
)
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import (
    ConfigError,
    ConnectionClosedError,
    InvalidMessageError,
    InvalidPropertyError,
    MessageTooLargeError,
    NoPermissionError,
    RouteNotFoundError,
)
from rocketmq_proto.wire.route import MessageQueue

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
        #: Brokers that got a heartbeat (before a half message: see the transactions).
        self.heartbeats: list[str] = []
        self.offset = 0

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        cmd = wire(command)
        if addr == NAMESRV:
            assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
            if cmd.ext_fields["topic"] == "Missing":
                return reply(ResponseCode.TOPIC_NOT_EXIST, remark=None)  # type: ignore[call-arg]
            return reply(0, body=route_body(cmd.ext_fields["topic"]))
        name = next(n for n, a in BROKERS.items() if a == addr)
        if cmd.code == RequestCode.HEART_BEAT:
            self.heartbeats.append(name)
            return reply(0)
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
    assert msg.msg_id is None
    result = sim.run(core.send_flow(msg))
    assert result is not None and result.status is SendStatus.SEND_OK
    assert msg.msg_id == result.msg_id  # the message now tells the id it went with
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


def test_a_body_of_64_kib_or_more_is_compressed_off_the_io_thread() -> None:
    """From OFFLOAD_COMPRESSION_OVER bytes the compression is an Offload effect
    (the loop goes on meanwhile), and the message goes as it would have: the same
    bytes, the same flags. Under it, or under the producer's own threshold, it is
    compressed (or not) in place."""
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    big = bytes(range(256)) * (OFFLOAD_COMPRESSION_OVER // 256)
    sim.run(core.send_flow(Message("T", big)))
    assert sim.offloaded == [core._compressed]
    cmd = broker.sent[0][1]
    flags = int(cmd.ext_fields["f"])
    assert flags == 0x301
    assert decompress_body(cmd.body, flags) == big
    assert (cmd.body, flags) == make_producer()._compressed(big)
    # Just under: compressed in place.
    sim.run(core.send_flow(Message("T", big[:-1])))
    assert len(sim.offloaded) == 1 and int(broker.sent[1][1].ext_fields["f"]) & 0x1
    # Over it but under a larger threshold of the producer's: not compressed at all.
    lazy = make_producer(compress_msg_body_over_howmuch=10 * OFFLOAD_COMPRESSION_OVER)
    sim.run(lazy.send_flow(Message("T", big)))
    assert len(sim.offloaded) == 1 and broker.sent[2][1].body == big


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
        seen.append((msg.properties["TRAN_MSG"], arg, msg.msg_id))
        return TransactionState.COMMIT

    result, state = sim.run(core.transaction_flow(Message("T", b"x"), local, "arg"))
    # The local transaction already sees the id the consumers will see.
    assert state is TransactionState.COMMIT and seen == [("true", "arg", result.msg_id)]
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
    # As Java's endTransaction: the broker's name goes along (bname).
    assert end.ext_fields["bname"] == result.message_queue.broker_name
    assert end.ext_fields["topic"] == "T"


def test_a_half_message_goes_only_where_the_producer_group_was_announced() -> None:
    """Before a half message goes to a broker (or a proxy) that has not answered
    this client's heartbeat yet, one heartbeat goes there first: a check-back needs
    the producer group known there, and through a proxy the periodic heartbeat
    (30 s) came too late (the proxy drops a transactional group that is not
    registered with it when it announces its groups to the brokers, and the
    check-back then never came). Plain messages send no extra heartbeat."""
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    sim.run(core.send_flow(Message("T", b"plain")))
    assert broker.heartbeats == []
    results = [
        sim.run(core.transaction_flow(Message("T", b"x"), lambda m, a: TransactionState.COMMIT))
        for _ in range(4)
    ]
    used = {r.message_queue.broker_name for r, _ in results}
    assert sorted(broker.heartbeats) == sorted(used)  # once per broker, before its first half
    to_brokers = [wire(c) for a, c in sim.calls if a != NAMESRV]
    assert to_brokers[1].code == RequestCode.HEART_BEAT  # after the plain send
    assert int(to_brokers[2].ext_fields["f"]) & 0x4  # then the first half message


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
            "topic": "RMQ_SYS_TRANS_HALF_TOPIC",
            "bname": "broker-a",
            "offsetMsgId": "7F00000100002A9F0000000000000309",
        },
        stored,
    )
    sim = Sim(Broker())
    assert sim.run(core.client.handle_server_request(BROKERS["broker-a"], request)) is None
    ((addr, end),) = sim.oneways
    end = wire(end)
    assert addr == BROKERS["broker-a"]
    # The fields Java's checkTransactionState answers with, and no others.
    assert end.ext_fields == {
        "topic": "RMQ_SYS_TRANS_HALF_TOPIC",
        "producerGroup": "G",
        "tranStateTableOffset": "5",
        "commitLogOffset": "777",
        "commitOrRollback": "12",
        "fromTransactionCheck": "true",
        "msgId": "U1",
        "transactionId": "TX9",
        "bname": "broker-a",
    }


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
    from rocketmq_proto.flows.effects import Call, Now, Sleep

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


# ------------------------------------------------------------ validation before sending


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ("paid||shipped", "'||'"),
        ("a\tb", "control character '\\t'"),
        ("nul\x00", "control character '\\x00'"),
        ("del\x7f", "control character '\\x7f'"),
        ("c1\x85", "control character '\\x85'"),
        (" lead", "leading or trailing space"),
        ("trail ", "leading or trailing space"),
    ],
)
def test_tags_no_filter_can_select_are_refused_before_sending(tags: str, reason: str) -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    with pytest.raises(InvalidMessageError) as info:
        sim.run(core.send_flow(Message("T", b"x", tags=tags)))
    assert repr(tags) in str(info.value) and reason in str(info.value)
    # Set straight in the dict, or in a batch member: the same refusal.
    direct = Message("T", b"x")
    direct.properties["TAGS"] = tags
    with pytest.raises(InvalidMessageError, match="no subscription could ever select it"):
        sim.run(core.send_flow(direct, oneway=True))
    with pytest.raises(InvalidMessageError, match="no subscription could ever select it"):
        sim.run(core.send_batch_flow([Message("T", b"a"), Message("T", b"b", tags=tags)]))
    assert sim.calls == [] and sim.oneways == []


def test_tags_a_filter_can_select_are_sent_and_retry_copies_keep_theirs() -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    for tags in ("paid", "a|b", "two words", "标签", "*"):
        sim.run(core.send_flow(Message("T", b"x", tags=tags)))
    # A copy of a received message for a retry topic (consumed with "*") keeps its tags.
    sim.run(core.send_flow(Message("%RETRY%G", b"x", tags="a||b")))
    sent = [decode_properties(cmd.ext_fields["i"].encode())["TAGS"] for _, cmd in broker.sent]
    assert sent == ["paid", "a|b", "two words", "标签", "*", "a||b"]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("color", "bl\x01ue", r"'color': value contains the separator '\\x01'"),
        ("color", "bl\x02ue", r"'color': value contains the separator '\\x02'"),
        ("co\x02lor", "blue", r"key 'co\\x02lor' contains the separator"),
        ("color", 5, "'color': value must be a str"),
        ("big", "v" * 40000, "more than 32767"),
        ("bad", "\ud800", "cannot be encoded as UTF-8"),
    ],
)
def test_single_send_checks_properties_as_a_batch_does(key: str, value: object, match: str) -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    msg = Message("T", b"x")
    msg.properties[key] = value  # type: ignore[assignment]  # past put_user_property's checks
    with pytest.raises(InvalidPropertyError, match=match):
        sim.run(core.send_flow(msg))
    with pytest.raises(InvalidPropertyError, match=match):
        sim.run(core.send_batch_flow([msg]))
    assert sim.calls == []  # not even the route lookup


def test_a_body_of_exactly_max_message_size_is_sent_whatever_its_content() -> None:
    import random

    broker = Broker()
    sim = Sim(broker)
    core = make_producer()
    body = random.Random(7).randbytes(4 * 1024 * 1024)  # zlib makes it larger
    sim.run(core.send_flow(Message("T", body)))
    cmd = broker.sent[0][1]
    assert int(cmd.ext_fields["f"]) & 0x701 == 0  # neither COMPRESSED nor a type
    assert cmd.body == body


@pytest.mark.parametrize(
    ("compress_type", "flags"),
    [(None, 0x301), ("zlib", 0x301), ("LZ4", 0x101), ("zstd", 0x201), (CompressionType.LZ4, 0x101)],
)
def test_compress_type_picks_the_algorithm_and_its_java_flag_bits(
    compress_type: object, flags: int
) -> None:
    broker = Broker()
    sim = Sim(broker)
    core = make_producer() if compress_type is None else make_producer(compress_type=compress_type)
    body = b"compressible body " * 500
    sim.run(core.send_flow(Message("T", body)))
    cmd = broker.sent[0][1]
    assert int(cmd.ext_fields["f"]) == flags
    assert len(cmd.body) < len(body)
    assert decompress_body(cmd.body, flags) == body
    # Under the threshold nothing is compressed, whatever the algorithm.
    sim.run(core.send_flow(Message("T", body[:4095])))
    assert int(broker.sent[1][1].ext_fields["f"]) == 0


def test_compression_options_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ProducerConfig().compress_type is CompressionType.ZLIB
    assert ProducerConfig(compress_type="Zstd").compress_type is CompressionType.ZSTD  # type: ignore[arg-type]
    _, config = producer_settings("127.0.0.1:9876", {"compress_type": "lz4"}, pid=1, nonce=2)
    assert config.compress_type is CompressionType.LZ4
    with pytest.raises(ConfigError, match="compress_type must be 'zlib', 'lz4' or 'zstd'"):
        ProducerConfig(compress_type="gzip")  # type: ignore[arg-type]
    assert (
        ProducerConfig(compress_type=CompressionType.ZSTD, compress_level=22).compress_level == 22
    )
    with pytest.raises(ConfigError, match=r"compress_level must be 0\.\.9 for ZLIB"):
        ProducerConfig(compress_level=10)
    with pytest.raises(ConfigError, match=r"compress_level must be 1\.\.22 for ZSTD"):
        ProducerConfig(compress_type=CompressionType.ZSTD, compress_level=0)
    with pytest.raises(ConfigError, match="compress_msg_body_over_howmuch"):
        ProducerConfig(compress_msg_body_over_howmuch=-1)
    monkeypatch.setitem(sys.modules, "lz4", None)
    monkeypatch.setitem(sys.modules, "lz4.frame", None)
    with pytest.raises(ConfigError, match=r"LZ4.*rocketmq-remoting\[lz4\]"):
        ProducerConfig(compress_type="lz4")  # type: ignore[arg-type]
