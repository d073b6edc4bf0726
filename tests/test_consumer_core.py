"""The consumer's pure logic: allocation, process queues, offsets, pulls, retries.

Flows run on the scripted interpreter of :mod:`tests.flowsim` against a fake
name server and brokers that answer by request code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rocketmq_proto.flows.consumer.consume import (
    ConsumeResult,
    SendBackPath,
    clean_expired_flow,
    initial_offset_flow,
    max_reconsume_times,
    orderly_suspend_delay,
    process_concurrent_result_flow,
    process_orderly_result_flow,
    reset_retry_topic,
    retry_delay_level,
    retry_message,
    send_back_flow,
    to_consume_result,
)
from rocketmq_proto.flows.consumer.dispatch import ConcurrentConsumption
from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    commit_offsets_flow,
    encode_local_offsets,
    find_broker_in_subscribe,
    load_local_offsets,
    parse_local_offsets,
    query_offset_flow,
)
from rocketmq_proto.flows.consumer.orderly import OrderlyConsumption
from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.consumer.pull import (
    FlowControl,
    PullAction,
    PullConfig,
    PullRequest,
    PullResult,
    build_pull_sys_flag,
    parse_pull_response,
    plan_pull_result,
    pull_command,
    pull_error_delay,
    pull_step_flow,
    should_pause,
)
from rocketmq_proto.flows.consumer.push import ConsumerConfig, PushConsumerCore
from rocketmq_proto.flows.consumer.push_state import QueuePhase, QueueState
from rocketmq_proto.flows.consumer.rebalance import (
    allocate_averagely,
    allocate_averagely_by_circle,
    allocate_by_config,
    allocate_by_machine_room,
    allocate_consistent_hash,
    consistent_hash,
    consumer_ids_flow,
    decide_rebalance,
    java_message_queue_str,
    queues_not_subscribed,
    rebalance_topic_flow,
    sort_for_rebalance,
    strategy_name,
)
from rocketmq_proto.flows.effects import Call, Flow, Oneway, Spawn, UserCall, WallTime
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.codec import encode_batch, encode_stored_message
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.message.properties import decode_properties
from rocketmq_proto.strategies import message_queues
from rocketmq_proto.wire.bodies import ConsumeFromWhere, MessageModel, build_subscription
from rocketmq_proto.wire.codes import (
    FLAG_RESPONSE,
    PullStatus,
    PullSysFlag,
    RequestCode,
    ResponseCode,
)
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import (
    BrokerSystemError,
    ConfigError,
    ConnectionClosedError,
    InvalidArgumentError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    SubscriptionNotLatestError,
)
from rocketmq_proto.wire.route import MessageQueue

from .flowsim import Sim

# ------------------------------------------------------------------ fixtures

NAMESRV = "127.0.0.1:9876"
BROKERS = {
    "broker-a": {0: "127.0.0.1:10911", 1: "127.0.0.1:10912"},
    "broker-b": {0: "127.0.0.1:10921"},
}
MASTER_A = BROKERS["broker-a"][0]
SLAVE_A = BROKERS["broker-a"][1]
CLIENT_ID = "10.0.0.1@t"


def route_body(queues: int = 4) -> bytes:
    return json.dumps(
        {
            "brokerDatas": [
                {
                    "cluster": "DefaultCluster",
                    "brokerName": name,
                    "brokerAddrs": {str(k): v for k, v in addrs.items()},
                }
                for name, addrs in BROKERS.items()
            ],
            "queueDatas": [
                {
                    "brokerName": name,
                    "readQueueNums": queues,
                    "writeQueueNums": queues,
                    "perm": 6,
                    "topicSysFlag": 0,
                }
                for name in BROKERS
            ],
        }
    ).encode()


def reply(code: int, fields: dict[str, str] | None = None, body: bytes = b"") -> RemotingCommand:
    return RemotingCommand(code, fields or {}, body, flag=FLAG_RESPONSE)


def wire(cmd: RemotingCommand) -> RemotingCommand:
    """The command as a server decodes it (proves that it encodes)."""
    decoder = FrameDecoder()
    decoder.feed(encode_command(cmd))
    got = decoder.next_frame()
    assert got is not None
    return got


Handler = Callable[[str, RemotingCommand], RemotingCommand]


class Cluster:
    """A name server answering every route, and brokers answering by request code."""

    def __init__(self, **handlers: Handler) -> None:
        self.handlers: dict[int, Handler] = {RequestCode[k]: v for k, v in handlers.items()}
        self.seen: list[tuple[str, RemotingCommand]] = []

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        cmd = wire(command)
        if addr == NAMESRV:
            assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
            return reply(0, body=route_body())
        self.seen.append((addr, cmd))
        return self.handlers[cmd.code](addr, cmd)

    def codes(self) -> list[int]:
        return [cmd.code for _, cmd in self.seen]


def make_client(namespace: str | None = None) -> ClientCore:
    return ClientCore(
        ClientConfig((NAMESRV,), client_ip="10.0.0.1", instance_name="t", namespace=namespace)
    )


def with_routes(client: ClientCore, sim: Sim, *topics: str) -> None:
    for topic in topics:
        sim.run(client.route_flow(topic))


def mq(i: int, broker: str = "broker-a", topic: str = "T") -> MessageQueue:
    return MessageQueue(topic, broker, i)


def ext(offset: int, body: bytes = b"x", **props: str) -> MessageExt:
    return MessageExt(
        "T",
        body,
        queue_offset=offset,
        properties=props,
        store_host="127.0.0.1:10911",
        commit_log_offset=1000 + offset,
        broker_name="broker-a",
    )


# ------------------------------------------------------------- allocation

QUEUES_8 = [mq(i) for i in range(8)]
CIDS_3 = ["c0", "c1", "c2"]


def test_averagely_gives_consecutive_blocks_3_3_2() -> None:
    got = [allocate_averagely("G", cid, QUEUES_8, CIDS_3) for cid in CIDS_3]
    assert got == [QUEUES_8[0:3], QUEUES_8[3:6], QUEUES_8[6:8]]


def test_averagely_with_more_consumers_than_queues_leaves_some_idle() -> None:
    queues = QUEUES_8[:2]
    assert [allocate_averagely("G", c, queues, CIDS_3) for c in CIDS_3] == [
        [queues[0]],
        [queues[1]],
        [],
    ]


def test_averagely_by_circle_deals_queues_round_robin() -> None:
    got = [allocate_averagely_by_circle("G", cid, QUEUES_8, CIDS_3) for cid in CIDS_3]
    assert got == [
        [QUEUES_8[0], QUEUES_8[3], QUEUES_8[6]],
        [QUEUES_8[1], QUEUES_8[4], QUEUES_8[7]],
        [QUEUES_8[2], QUEUES_8[5]],
    ]


def test_allocation_checks_inputs_like_java() -> None:
    assert allocate_averagely("G", "stranger", QUEUES_8, CIDS_3) == []
    for bad in (("", QUEUES_8, CIDS_3), ("c0", [], CIDS_3), ("c0", QUEUES_8, [])):
        with pytest.raises(InvalidArgumentError):
            allocate_averagely("G", *bad)
        with pytest.raises(InvalidArgumentError):
            allocate_consistent_hash("G", *bad)


def _md5_long(key: str) -> int:
    # Java's MD5Hash: the first 4 digest bytes shifted into a long, big-endian.
    digest = hashlib.md5(key.encode("utf-8")).digest()
    value = 0
    for byte in digest[:4]:
        value = (value << 8) | byte
    return value


def _ring_owner(queue: MessageQueue, cids: list[str], vnodes: int = 10) -> str:
    ring = {_md5_long(f"{cid}-{i}"): cid for cid in cids for i in range(vnodes)}
    key = _md5_long(
        f"MessageQueue [topic={queue.topic}, brokerName={queue.broker_name}, "
        f"queueId={queue.queue_id}]"
    )
    points = sorted(ring)
    return ring[next((p for p in points if p >= key), points[0])]


def test_consistent_hash_key_and_hash_follow_java() -> None:
    assert java_message_queue_str(mq(3)) == "MessageQueue [topic=T, brokerName=broker-a, queueId=3]"
    assert consistent_hash("c0-0") == _md5_long("c0-0")
    assert 0 <= consistent_hash("x") < 2**32


# Produced by Java 4.9.7's AllocateMessageQueueConsistentHash for these inputs.
_JAVA_HASH_QUEUES = [mq(i, b, "TopicTest") for b in ("broker-a", "broker-b") for i in range(4)]
_JAVA_HASH_CIDS = ["127.0.0.1@1", "127.0.0.1@2", "127.0.0.1@3"]


@pytest.mark.parametrize(
    ("vnodes", "expected"),
    [
        (
            10,
            {
                "127.0.0.1@1": [("broker-a", 1), ("broker-a", 3), ("broker-b", 2)],
                "127.0.0.1@2": [("broker-a", 0), ("broker-a", 2), ("broker-b", 0)],
                "127.0.0.1@3": [("broker-b", 1), ("broker-b", 3)],
            },
        ),
        (
            3,
            {
                "127.0.0.1@1": [
                    ("broker-a", 1),
                    ("broker-a", 2),
                    ("broker-a", 3),
                    ("broker-b", 1),
                    ("broker-b", 2),
                    ("broker-b", 3),
                ],
                "127.0.0.1@2": [("broker-a", 0), ("broker-b", 0)],
                "127.0.0.1@3": [],
            },
        ),
    ],
)
def test_consistent_hash_matches_java(
    vnodes: int, expected: dict[str, list[tuple[str, int]]]
) -> None:
    for cid, owned in expected.items():
        got = allocate_consistent_hash(
            "G", cid, _JAVA_HASH_QUEUES, _JAVA_HASH_CIDS, virtual_node_count=vnodes
        )
        assert got == [mq(i, b, "TopicTest") for b, i in owned]


_names = st.text(alphabet="ab-_Z9\u00e9\ue000\U0001f600", min_size=1, max_size=4)
_queue_sets = st.sets(
    st.tuples(st.sampled_from(["T", "U"]), _names, st.integers(0, 16)), min_size=1, max_size=30
).map(lambda items: {MessageQueue(*item) for item in items})
_cid_sets = st.sets(_names, min_size=1, max_size=8)


@pytest.mark.parametrize(
    "strategy",
    [allocate_averagely, allocate_averagely_by_circle, allocate_consistent_hash],
    ids=strategy_name,
)
@given(queues=_queue_sets, cids=_cid_sets)
def test_every_queue_goes_to_exactly_one_consumer(
    strategy: Callable[..., list[MessageQueue]], queues: set[MessageQueue], cids: set[str]
) -> None:
    mq_all, cid_all = sort_for_rebalance(queues, cids)
    owners: dict[MessageQueue, str] = {}
    sizes = []
    for cid in cid_all:
        mine = strategy("G", cid, mq_all, cid_all)
        sizes.append(len(mine))
        for queue in mine:
            assert queue not in owners, f"{queue} given to {owners.get(queue)} and {cid}"
            owners[queue] = cid
    assert set(owners) == queues
    if strategy is allocate_consistent_hash:
        assert all(owners[q] == _ring_owner(q, cid_all) for q in queues)
    else:
        assert max(sizes) - min(sizes) <= 1


@given(queues=_queue_sets, cids=_cid_sets)
def test_allocation_does_not_depend_on_input_order(
    queues: set[MessageQueue], cids: set[str]
) -> None:
    mq_all, cid_all = sort_for_rebalance(queues, cids)
    again = sort_for_rebalance(reversed(mq_all), reversed(cid_all))
    assert again == (mq_all, cid_all)


def test_sorting_uses_java_utf16_order() -> None:
    # U+1F600 is a surrogate pair (D83D DE00) in Java, below U+E000.
    _, cids = sort_for_rebalance([], ["\ue000", "\U0001f600", "a"])
    assert cids == ["a", "\U0001f600", "\ue000"]
    queues, _ = sort_for_rebalance([mq(2, "b"), mq(10, "a"), mq(1, "b"), mq(0, "a", "S")], [])
    assert queues == [mq(0, "a", "S"), mq(10, "a"), mq(1, "b"), mq(2, "b")]


def test_machine_room_takes_queues_of_its_rooms_only() -> None:
    queues = sorted(
        [mq(i, "idc1@a") for i in range(4)]
        + [mq(i, "idc2@b") for i in range(2)]
        + [mq(0, "idc1@c"), mq(0, "plain")]
    )
    strategy = allocate_by_machine_room({"idc1"})
    got = [strategy("G", cid, queues, ["c0", "c1"]) for cid in ("c0", "c1")]
    room = [q for q in queues if q.broker_name.startswith("idc1@")]  # 5 queues
    assert got == [[*room[0:2], room[4]], room[2:4]]
    assert strategy_name(strategy) == "MACHINE_ROOM"


def test_by_config_returns_the_configured_queues() -> None:
    strategy = allocate_by_config([mq(5)])
    assert strategy("G", "anyone", QUEUES_8, CIDS_3) == [mq(5)]
    assert strategy_name(strategy) == "CONFIG"
    assert strategy_name(partial(allocate_consistent_hash, virtual_node_count=3)) == (
        "CONSISTENT_HASH"
    )


def test_decide_rebalance_adds_drops_and_renews() -> None:
    now = 1000.0
    fresh, stale, other = ProcessQueue(now), ProcessQueue(now - 500), ProcessQueue(now)
    current = {mq(0): fresh, mq(1): stale, mq(2): fresh, mq(0, topic="U"): other}
    decision = decide_rebalance("T", current, [mq(1), mq(2), mq(3)], now=now)
    assert decision.to_add == (mq(3),)
    assert decision.to_drop == (mq(0),)
    assert decision.to_renew == (mq(1),)
    assert decision.changed
    unchanged = decide_rebalance("T", current, [mq(0), mq(1), mq(2)], now=now, push=False)
    assert not unchanged.changed
    assert queues_not_subscribed(current, {"T"}) == [mq(0, topic="U")]


def test_rebalance_round_asks_the_group_and_allocates() -> None:
    cluster = Cluster(
        GET_CONSUMER_LIST_BY_GROUP=lambda a, c: reply(
            0, body=json.dumps({"consumerIdList": ["10.0.0.2@x", CLIENT_ID]}).encode()
        )
    )
    sim = Sim(cluster)
    client = make_client()
    decision = sim.run(rebalance_topic_flow(client, "G", "T", allocate_averagely, {}))
    assert decision is not None
    # 8 queues sorted (broker-a 0..3, broker-b 0..3); our id sorts first.
    assert decision.to_add == tuple(mq(i) for i in range(4))
    assert cluster.seen[0][1].ext_fields == {"consumerGroup": "G"}
    everything = sim.run(
        rebalance_topic_flow(
            client, "G", "T", allocate_averagely, {}, message_model=MessageModel.BROADCASTING
        )
    )
    assert everything is not None and len(everything.to_add) == 8


def test_rebalance_round_changes_nothing_without_the_consumer_list() -> None:
    cluster = Cluster(GET_CONSUMER_LIST_BY_GROUP=lambda a, c: reply(ResponseCode.SYSTEM_ERROR))
    client = make_client()
    held = {mq(0): ProcessQueue(0.0)}
    assert (
        Sim(cluster).run(rebalance_topic_flow(client, "G", "T", allocate_averagely, held)) is None
    )


def test_consumer_ids_come_from_the_next_broker_when_one_fails() -> None:
    def answer(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        if addr == MASTER_A:
            raise RequestTimeoutError("slow broker")
        return reply(0, body=b'{"consumerIdList":["b","a"]}')

    cluster = Cluster(GET_CONSUMER_LIST_BY_GROUP=answer)
    assert Sim(cluster).run(consumer_ids_flow(make_client(), "T", "G")) == ["b", "a"]
    assert [addr for addr, _ in cluster.seen] == [MASTER_A, BROKERS["broker-b"][0]]


# ------------------------------------------------------------ process queue


def test_put_remove_returns_java_commit_offsets() -> None:
    pq = ProcessQueue(0.0)
    assert pq.remove([ext(0)]) == -1  # nothing held
    assert pq.put([ext(5, b"abc"), ext(6), ext(7)]) is True
    assert pq.put([ext(8)]) is False  # a consume task is already running
    assert (pq.msg_count, pq.msg_size, pq.max_span) == (4, 6, 3)
    assert pq.remove([ext(6), ext(7)]) == 5  # 5 is still being consumed
    assert pq.remove([ext(5)]) == 8
    assert pq.remove([ext(8)]) == 9  # empty: the largest offset + 1
    assert (pq.msg_count, pq.msg_size, pq.max_span) == (0, 0, 0)


def test_put_ignores_a_duplicate_offset_and_reads_the_backlog() -> None:
    pq = ProcessQueue(0.0)
    pq.put([ext(1, MAX_OFFSET="100")])
    pq.put([ext(1, b"other")])
    assert pq.msg_count == 1 and pq.msg_acc_cnt == 99


@given(
    batches=st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=8), min_size=1, max_size=6),
    data=st.data(),
)
def test_committed_offset_never_passes_an_unconsumed_message(
    batches: list[list[int]], data: st.DataObject
) -> None:
    pq = ProcessQueue(0.0)
    offset, committed = 10, -1
    pending: list[MessageExt] = []
    for gaps in batches:  # pulls: increasing offsets, gaps where tags were filtered out
        msgs = []
        for gap in gaps:
            offset += gap
            msgs.append(ext(offset))
        pq.put(msgs)
        pending.extend(msgs)
        while pending:
            if not data.draw(st.booleans()):
                break
            done = data.draw(st.lists(st.sampled_from(pending), max_size=4, unique_by=id))
            for msg in done:
                pending.remove(msg)
            result = pq.remove(done)
            if result >= 0:
                committed = max(committed, result)
            if pending:
                assert committed <= min(m.queue_offset for m in pending)
            assert pq.msg_count == len(pending)
    if pending:
        committed = max(committed, pq.remove(pending))
    # Everything consumed: the commit offset is one past the last message pulled.
    assert committed == offset + 1
    assert pq.msg_count == 0 and pq.msg_size == 0
    assert pq.remove([]) == -1


@given(st.lists(st.sampled_from(["put", "take", "commit", "again", "rollback"]), max_size=40))
def test_orderly_consumes_every_message_once_in_offset_order(ops: list[str]) -> None:
    pq = ProcessQueue(0.0)
    next_offset, committed = 0, -1
    taken: list[MessageExt] = []
    consumed: list[int] = []
    for op in ops:
        if op == "put":
            pq.put([ext(next_offset), ext(next_offset + 1)])
            next_offset += 2
        elif op == "take" and not taken:
            taken = pq.take_messages(3)
        elif op == "commit" and taken:
            consumed.extend(m.queue_offset for m in taken)
            committed = pq.commit()
            taken = []
            assert committed == consumed[-1] + 1
            assert all(m.queue_offset >= committed for m in pq.messages())
        elif op == "again":
            pq.make_messages_to_consume_again(taken)
            taken = []
        elif op == "rollback":
            pq.rollback()
            taken = []
    assert consumed == list(range(len(consumed)))
    assert pq.msg_count == next_offset - len(consumed)


def test_remove_after_everything_consumed_commits_max_plus_one() -> None:
    pq = ProcessQueue(0.0)
    pq.put([ext(3), ext(9)])
    assert pq.remove([ext(9)]) == 3
    assert pq.remove([ext(3)]) == 10


def test_orderly_take_commit_and_consume_again() -> None:
    pq = ProcessQueue(0.0)
    pq.put([ext(i, b"12") for i in range(5)])
    first = pq.take_messages(2)
    assert [m.queue_offset for m in first] == [0, 1]
    assert pq.msg_count == 5 and pq.msg_size == 10
    pq.make_messages_to_consume_again(first)
    assert [m.queue_offset for m in pq.take_messages(3)] == [0, 1, 2]
    assert pq.commit() == 3
    assert (pq.msg_count, pq.msg_size) == (2, 4)
    pq.take_messages(1)
    pq.rollback()
    assert [m.queue_offset for m in pq.messages()] == [3, 4]
    assert pq.take_messages(10) and pq.commit() == 5
    assert pq.take_messages(1) == [] and pq.consuming is False
    assert pq.commit() == -1


def test_expiry_of_pull_and_lock() -> None:
    pq = ProcessQueue(100.0)
    assert not pq.is_pull_expired(220.0) and pq.is_pull_expired(220.1)
    pq.set_locked(True, 200.0)
    assert not pq.is_lock_expired(230.0) and pq.is_lock_expired(230.1)


def test_expired_messages_are_the_old_ones_at_the_head() -> None:
    pq = ProcessQueue(0.0)
    pq.put([ext(1, CONSUME_START_TIME="1000"), ext(2, CONSUME_START_TIME="5000"), ext(3)])
    assert [m.queue_offset for m in pq.expired_messages(4000, 2000)] == [1]
    assert [m.queue_offset for m in pq.expired_messages(9000, 2000)] == [1, 2]


def test_clear_and_info() -> None:
    pq = ProcessQueue(10.0)
    pq.put([ext(4), ext(6)])
    info = pq.info(commit_offset=4, now=12.0, wall_ms=1_000_000)
    assert (info.cached_msg_min_offset, info.cached_msg_max_offset, info.cached_msg_count) == (
        4,
        6,
        2,
    )
    assert info.last_pull_timestamp == 998_000
    pq.clear()
    assert pq.msg_count == 0 and pq.queue_offset_max == 0


# ------------------------------------------------------------------- offsets


def test_offset_store_update_freeze_and_commit_tracking() -> None:
    store = OffsetStore()
    store.update(mq(0), 10)
    store.update(mq(0), 5, increase_only=True)
    assert store.read(mq(0)) == 10
    store.update(mq(0), 5)
    assert store.read(mq(0)) == 5
    store.update(mq(1), 3)
    assert store.to_commit() == {mq(0): 5, mq(1): 3}
    store.mark_committed({mq(0): 5, mq(1): 3})
    assert store.to_commit() == {}
    store.update_and_freeze(mq(1), 50)
    store.update(mq(1), 60)
    assert store.read(mq(1)) == 50
    assert store.to_commit(assigned={mq(1)}) == {mq(1): 50}
    assert store.read(mq(0)) is None  # not assigned any more: forgotten
    store.remove(mq(1))
    store.update(mq(1), 1)
    assert store.read(mq(1)) == 1


def test_local_offsets_round_trip() -> None:
    table = {mq(1): 7, MessageQueue("%RETRY%G", "b", 0): 2**40, MessageQueue("T\u00e9", 'q"', 3): 0}
    data = encode_local_offsets(table)
    assert data.startswith(b'{"offsetTable":{{"brokerName":')
    assert parse_local_offsets(data) == table


@given(
    st.dictionaries(
        message_queues(),
        st.integers(0, 2**63 - 1),
        max_size=8,
    )
)
def test_local_offsets_round_trip_any_table(table: dict[MessageQueue, int]) -> None:
    assert parse_local_offsets(encode_local_offsets(table)) == table


# What Java 4.9.7's LocalFileOffsetStore writes (fastjson, pretty format).
JAVA_OFFSETS_FILE = (
    '{\n\t"offsetTable":{{\n\t\t\t"brokerName":"b",\n\t\t\t"queueId":0,\n'
    '\t\t\t"topic":"%RETRY%G"\n\t\t}:1099511627776,{\n\t\t\t"brokerName":"broker-a",\n'
    '\t\t\t"queueId":1,\n\t\t\t"topic":"T\u00e9"\n\t\t}:7\n\t}\n}'
).encode()


def test_parse_a_java_offsets_file() -> None:
    assert parse_local_offsets(JAVA_OFFSETS_FILE) == {
        MessageQueue("%RETRY%G", "b", 0): 2**40,
        MessageQueue("T\u00e9", "broker-a", 1): 7,
    }
    with pytest.raises(RemoteProtocolError):
        parse_local_offsets(b'{"offsetTable":{{"topic":"T"}:1}}')


def test_load_local_offsets_falls_back_to_the_backup() -> None:
    good = encode_local_offsets({mq(0): 3})
    assert load_local_offsets(good, None) == {mq(0): 3}
    assert load_local_offsets(b"{corrupt", good) == {mq(0): 3}
    assert load_local_offsets(b"", good) == {mq(0): 3}
    assert load_local_offsets(None, None) == {}
    with pytest.raises(RemoteProtocolError):
        load_local_offsets(None, b"{corrupt")


def test_find_broker_in_subscribe_like_java() -> None:
    addrs = {0: "m", 1: "s1"}
    assert find_broker_in_subscribe(addrs, 0, True) == ("m", False)
    assert find_broker_in_subscribe(addrs, 1, True) == ("s1", True)
    assert find_broker_in_subscribe({0: "m", 2: "s2"}, 1, True) == ("s2", True)
    assert find_broker_in_subscribe({1: "s1"}, 0, True) is None
    assert find_broker_in_subscribe({1: "s1"}, 0, False) == ("s1", True)
    assert find_broker_in_subscribe({}, 0, False) is None


def test_commit_offsets_sends_oneway_updates_to_masters() -> None:
    sim = Sim(Cluster())
    client = make_client()
    with_routes(client, sim, "T")
    store = OffsetStore({mq(0): 5, mq(1, "broker-b"): 9})
    sent = sim.run(commit_offsets_flow(client, "G", store))
    assert sent == {mq(0): 5, mq(1, "broker-b"): 9}
    (addr_a, cmd_a), (addr_b, cmd_b) = [(a, wire(c)) for a, c in sim.oneways]
    assert addr_a == MASTER_A and addr_b == BROKERS["broker-b"][0]
    assert cmd_b.ext_fields["commitOffset"] == "9"
    assert cmd_a.code == RequestCode.UPDATE_CONSUMER_OFFSET
    assert cmd_a.ext_fields == {
        "consumerGroup": "G",
        "topic": "T",
        "queueId": "0",
        "commitOffset": "5",
        "bname": "broker-a",
    }
    assert sim.run(commit_offsets_flow(client, "G", store)) == {}


def test_a_commit_sends_each_offset_as_it_is_when_sent() -> None:
    """A commit that waits (here for the route of a queue's topic) sends the offset
    the queue has by then, not the one it had when the commit began: a slow
    periodic commit must not store an older offset after the close's commit."""
    store = OffsetStore({mq(0): 5, mq(1, "broker-b"): 9})
    cluster = Cluster()

    def on_call(addr: str, command: RemotingCommand) -> RemotingCommand:
        if addr == NAMESRV:  # meanwhile, handlers settle more messages of both queues
            store.update(mq(0), 7, increase_only=True)
            store.update(mq(1, "broker-b"), 12, increase_only=True)
        return cluster(addr, command)

    sim = Sim(on_call)
    sent = sim.run(commit_offsets_flow(make_client(), "G", store))  # no route known yet
    assert sent == {mq(0): 7, mq(1, "broker-b"): 12}
    assert [wire(c).ext_fields["commitOffset"] for _, c in sim.oneways] == ["7", "12"]
    assert store.to_commit() == {}  # what was sent is what counts as committed


def test_a_confirmed_commit_sends_every_offset_changed_or_not() -> None:
    """A close's commit stores every held queue's offset, also one a periodic
    (oneway) commit sent before: that one may never have reached the broker."""
    sim = Sim(Cluster(UPDATE_CONSUMER_OFFSET=lambda a, c: reply(0)))
    client = make_client()
    with_routes(client, sim, "T")
    store = OffsetStore({mq(0): 5, mq(1): 9})
    assert sim.run(commit_offsets_flow(client, "G", store)) == {mq(0): 5, mq(1): 9}
    store.update(mq(1), 11)
    assert sim.run(commit_offsets_flow(client, "G", store)) == {mq(1): 11}  # changed only
    assert sim.run(commit_offsets_flow(client, "G", store, confirmed=True)) == {
        mq(0): 5,
        mq(1): 11,
    }
    confirmed = [wire(c).ext_fields for _, c in sim.calls if c.code == 15]
    assert [(f["queueId"], f["commitOffset"]) for f in confirmed] == [("0", "5"), ("1", "11")]


def test_query_offset_not_found_is_none() -> None:
    answers = iter([reply(ResponseCode.QUERY_NOT_FOUND), reply(0, {"offset": "42"})])
    sim = Sim(Cluster(QUERY_CONSUMER_OFFSET=lambda a, c: next(answers)))
    client = make_client()
    assert sim.run(query_offset_flow(client, "G", mq(0))) is None
    assert sim.run(query_offset_flow(client, "G", mq(0))) == 42


# --------------------------------------------------------------------- pull


def pull_response(
    code: int = 0,
    msgs: list[MessageExt] | None = None,
    *,
    next_begin: int = 20,
    suggest: int = 0,
    **extra: str,
) -> RemotingCommand:
    body = b"".join(encode_stored_message(m) for m in msgs or [])
    fields = {
        "nextBeginOffset": str(next_begin),
        "minOffset": "0",
        "maxOffset": "100",
        "suggestWhichBrokerId": str(suggest),
        **extra,
    }
    return reply(code, fields, body)


def test_parse_pull_response_rechecks_tags_and_annotates() -> None:
    msgs = [ext(10, TAGS="a"), ext(11, TAGS="b"), ext(12), ext(13, TAGS="c")]
    sub = build_subscription("T", "a || c")
    result = parse_pull_response(pull_response(0, msgs), mq(3), sub)
    assert result.status is PullStatus.FOUND
    assert [m.queue_offset for m in result.messages] == [10, 13]
    first = result.messages[0]
    assert first.properties["MIN_OFFSET"] == "0" and first.properties["MAX_OFFSET"] == "100"
    assert (first.broker_name, first.queue_id) == ("broker-a", 3)
    everything = parse_pull_response(pull_response(0, msgs), mq(3), build_subscription("T"))
    assert len(everything.messages) == 4
    sql = build_subscription("T", "a > 1", "SQL92")
    assert len(parse_pull_response(pull_response(0, msgs), mq(3), sql).messages) == 4


def test_parse_pull_response_status_codes() -> None:
    sub = build_subscription("T")
    for code, status in [
        (19, PullStatus.NO_NEW_MSG),
        (20, PullStatus.NO_MATCHED_MSG),
        (21, PullStatus.OFFSET_ILLEGAL),
    ]:
        result = parse_pull_response(pull_response(code, next_begin=7, suggest=1), mq(0), sub)
        assert (result.status, result.next_begin_offset, result.messages) == (status, 7, [])
        assert result.suggest_which_broker_id == 1
    with pytest.raises(SubscriptionNotLatestError):
        parse_pull_response(reply(ResponseCode.SUBSCRIPTION_NOT_LATEST), mq(0), sub)
    with pytest.raises(RemoteProtocolError):
        parse_pull_response(reply(0, {"nextBeginOffset": "1"}), mq(0), sub)


def test_parse_pull_response_unwraps_inner_batches_and_offset_delta() -> None:
    members = [Message("T", b"m0", tags="a"), Message("T", b"m1", tags="a")]
    wrapper = ext(30)
    wrapper.body = encode_batch(members, ["ID0", "ID1"])
    wrapper.sys_flag |= 0xC0
    plain = ext(32, TAGS="a")
    result = parse_pull_response(
        pull_response(0, [wrapper, plain], offsetDelta="1000"),
        mq(0),
        build_subscription("T", "a"),
    )
    assert [(m.body, m.queue_offset) for m in result.messages] == [
        (b"m0", 1030),
        (b"m1", 1031),
        (b"x", 1032),
    ]
    assert result.offset_delta == 1000


def test_parse_pull_response_keeps_messages_before_a_corrupt_one() -> None:
    good = encode_stored_message(ext(1))
    response = reply(
        0,
        {"nextBeginOffset": "3", "minOffset": "0", "maxOffset": "3", "suggestWhichBrokerId": "0"},
        good + b"\x00\x00\x00\x10garbage",
    )
    result = parse_pull_response(response, mq(0), build_subscription("T"))
    assert [m.queue_offset for m in result.messages] == [1]


def test_pull_sys_flag_and_command() -> None:
    assert build_pull_sys_flag(True, True, False, False) == 0x3
    assert build_pull_sys_flag(False, True, True, True, True) == 0x1E
    request = PullRequest("G", mq(2), ProcessQueue(0.0), next_offset=40)
    sub = build_subscription("T", "a || b", sub_version=77)
    cmd = wire(pull_command(request, sub, PullConfig(), commit_offset=35))
    assert cmd.code == RequestCode.PULL_MESSAGE
    fields = cmd.ext_fields
    assert int(fields["sysFlag"]) == PullSysFlag.COMMIT_OFFSET | PullSysFlag.SUSPEND
    assert (fields["queueOffset"], fields["commitOffset"], fields["maxMsgNums"]) == (
        "40",
        "35",
        "32",
    )
    assert fields["suspendTimeoutMillis"] == "15000" and fields["subVersion"] == "77"
    assert "subscription" not in fields
    posted = PullConfig(post_subscription_when_pull=True)
    slave_cmd = wire(pull_command(request, sub, posted, commit_offset=35, to_slave=True))
    assert int(slave_cmd.ext_fields["sysFlag"]) == PullSysFlag.SUSPEND | PullSysFlag.SUBSCRIPTION
    assert slave_cmd.ext_fields["subscription"] == "a || b"


def test_flow_control_reasons() -> None:
    config = PullConfig(pull_threshold_for_queue=3, consume_concurrently_max_span=5)
    pq = ProcessQueue(0.0)
    pq.put([ext(0), ext(6)])
    assert should_pause(pq, config) is FlowControl.MAX_SPAN
    assert should_pause(pq, config, orderly=True) is None
    pq.put([ext(1), ext(2)])
    assert should_pause(pq, config) is FlowControl.CACHED_COUNT
    big = ProcessQueue(0.0)
    big.put([ext(0, b"x" * (101 * 1024 * 1024))])
    assert should_pause(big, PullConfig()) is FlowControl.CACHED_SIZE
    shared = PullConfig(pull_threshold_for_topic=10)
    assert should_pause(pq, shared, queue_count=5) is FlowControl.CACHED_COUNT
    with pytest.raises(InvalidArgumentError):
        PullConfig(pull_batch_size=0)


def test_plan_after_each_status() -> None:
    config = PullConfig(pull_interval=0.5)
    found = PullResult(PullStatus.FOUND, 20, 0, 100, [ext(19)])
    assert plan_pull_result(found, config).action is PullAction.CONSUME
    assert plan_pull_result(found, config).delay == 0.5
    empty = PullResult(PullStatus.FOUND, 20, 0, 100, [])
    assert plan_pull_result(empty, config).action is PullAction.PULL_AGAIN
    none = plan_pull_result(PullResult(PullStatus.NO_NEW_MSG, 20, 0, 100), config)
    assert (none.next_offset, none.delay, none.correct_offset) == (20, 0.0, True)
    illegal = plan_pull_result(PullResult(PullStatus.OFFSET_ILLEGAL, 50, 50, 100), config)
    assert (illegal.action, illegal.next_offset, illegal.delay) == (PullAction.FIX_OFFSET, 50, None)
    assert pull_error_delay(BrokerSystemError(215)) == 0.02
    assert pull_error_delay(BrokerSystemError(1)) == 3.0


def _pull_setup(
    handler: Handler, orderly_locked: bool | None = None
) -> tuple[Sim, ClientCore, PullRequest, OffsetStore]:
    cluster = Cluster(PULL_MESSAGE=handler, UPDATE_CONSUMER_OFFSET=lambda a, c: reply(0))
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    pq = ProcessQueue(sim.now)
    if orderly_locked is not None:
        pq.set_locked(orderly_locked, sim.now)
    return sim, client, PullRequest("G", mq(0), pq, next_offset=10), OffsetStore()


def test_pull_step_caches_messages_and_moves_on() -> None:
    sim, client, request, store = _pull_setup(
        lambda a, c: pull_response(0, [ext(10), ext(11)], next_begin=12, suggest=1)
    )
    store.update(mq(0), 8)
    outcome = sim.run(pull_step_flow(client, request, build_subscription("T"), PullConfig(), store))
    assert [m.queue_offset for m in outcome.messages] == [10, 11]
    assert outcome.delay == 0.0 and request.next_offset == 12 and request.broker_id == 1
    assert request.process_queue.msg_count == 2
    addr, cmd = sim.calls[-1]
    assert addr == MASTER_A and cmd.ext_fields["commitOffset"] == "8"
    # The broker suggested its slave: the next pull goes there, without committing.
    sim.run(pull_step_flow(client, request, build_subscription("T"), PullConfig(), store))
    addr, cmd = sim.calls[-1]
    assert addr == SLAVE_A and not int(cmd.ext_fields["sysFlag"]) & PullSysFlag.COMMIT_OFFSET


def test_pull_step_no_new_message_corrects_the_stored_offset() -> None:
    sim, client, request, store = _pull_setup(lambda a, c: pull_response(19, next_begin=15))
    outcome = sim.run(pull_step_flow(client, request, build_subscription("T"), PullConfig(), store))
    assert outcome.delay == 0.0 and request.next_offset == 15 and store.read(mq(0)) == 15


def test_pull_step_fixes_an_illegal_offset() -> None:
    sim, client, request, store = _pull_setup(lambda a, c: pull_response(21, next_begin=50))
    store.update(mq(0), 10)
    outcome = sim.run(pull_step_flow(client, request, build_subscription("T"), PullConfig(), store))
    assert outcome.offset_fixed and outcome.delay is None and request.process_queue.dropped
    store.update(mq(0), 11)  # consumption still in flight must not move it
    assert store.read(mq(0)) == 50
    ((addr, cmd),) = sim.oneways  # the fixed offset, stored before the queue is let go
    assert addr == MASTER_A and wire(cmd).ext_fields["commitOffset"] == "50"


def test_pull_step_waits_on_errors_flow_control_and_locks() -> None:
    # The back-off counts from when the pull began (each simulated call costs 1 ms).
    sim, client, request, store = _pull_setup(lambda a, c: reply(ResponseCode.FLOW_CONTROL))
    sub = build_subscription("T")
    delay = sim.run(pull_step_flow(client, request, sub, PullConfig(), store)).delay
    assert delay == pytest.approx(0.02, abs=0.005)
    sim, client, request, store = _pull_setup(lambda a, c: reply(ResponseCode.SYSTEM_ERROR))
    delay = sim.run(pull_step_flow(client, request, sub, PullConfig(), store)).delay
    assert delay == pytest.approx(3.0, abs=0.005)
    request.process_queue.put([ext(i) for i in range(1001)])
    outcome = sim.run(pull_step_flow(client, request, sub, PullConfig(), store))
    assert outcome.delay == 0.05 and "count" in outcome.reason
    sim, client, request, store = _pull_setup(lambda a, c: pull_response(19), orderly_locked=False)
    outcome = sim.run(pull_step_flow(client, request, sub, PullConfig(), store, orderly=True))
    assert outcome.delay == 3.0 and sim.calls == sim.calls[:1]  # only the route lookup


def test_pull_step_after_a_timed_out_pull_pulls_again_at_once() -> None:
    """A broker that stalled through a whole long poll: the next pull goes at once,
    so the queue delivers within one pull timeout of the broker answering again."""

    def stalled(addr: str, command: RemotingCommand) -> RemotingCommand:
        sim.now += PullConfig().consumer_timeout_when_suspend
        raise RequestTimeoutError("PULL_MESSAGE timed out")

    sim, client, request, store = _pull_setup(stalled)
    outcome = sim.run(pull_step_flow(client, request, build_subscription("T"), PullConfig(), store))
    assert outcome.delay == 0.0 and "timed out" in outcome.reason


def test_pull_step_orderly_asks_for_the_offset_again_once_locked() -> None:
    """The first step after an orderly queue got locked makes no pull: its outcome
    asks the caller to read the offset again; the next step pulls from there."""
    sim, client, request, store = _pull_setup(
        lambda a, c: pull_response(19, next_begin=int(c.ext_fields["queueOffset"])),
        orderly_locked=True,
    )
    sub = build_subscription("T")

    def pulled_offsets() -> list[str]:
        pulls = [c for _, c in sim.calls if c.code == RequestCode.PULL_MESSAGE]
        return [c.ext_fields["queueOffset"] for c in pulls]

    first = sim.run(pull_step_flow(client, request, sub, PullConfig(), store, orderly=True))
    assert first.reread_offset and first.delay == 0.0 and pulled_offsets() == []
    request.relocked(33)
    second = sim.run(pull_step_flow(client, request, sub, PullConfig(), store, orderly=True))
    assert not second.reread_offset and pulled_offsets() == ["33"]
    assert request.previously_locked


@pytest.mark.parametrize(
    ("stored", "expected"),
    [("33", "33"), (None, "0")],
    ids=["another-consumer-moved-it", "new-group-keeps-its-start"],
)
def test_orderly_pull_loop_reads_the_offset_of_a_newly_locked_queue_then_pulls(
    stored: str | None, expected: str
) -> None:
    """Another consumer may have moved a queue's offset before this one locked it:
    the pull loop reads it from the broker and pulls from there. A new group (no
    offset on the broker) keeps the start offset it took the queue with (here 0),
    however many messages were stored since: working it out again from the last
    offset (as Java does: the broker's max offset, 7 here) would skip them,
    whenever the broker answers the group "not found"."""
    pulled: list[str] = []

    def on_pull(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        pulled.append(cmd.ext_fields["queueOffset"])
        core.begin_close()  # one pull is enough
        return pull_response(19, next_begin=33)

    def on_query(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        if stored is None:
            return reply(ResponseCode.QUERY_NOT_FOUND)
        return reply(0, {"offset": stored})

    cluster = Cluster(
        QUERY_CONSUMER_OFFSET=on_query,
        GET_MAX_OFFSET=lambda a, c: reply(0, {"offset": "7"}),  # grown since the start
        PULL_MESSAGE=on_pull,
    )
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    core = orderly_core(client)
    core.subscribe("T")
    state = hold_queue(core, mq(0), 0)
    sim.run(core.pulls.loop_flow(state.request))
    assert cluster.codes() == [RequestCode.QUERY_CONSUMER_OFFSET, RequestCode.PULL_MESSAGE]
    assert pulled == [expected] and state.request.previously_locked


# ------------------------------------------------------------------ consume


def make_producer(client: ClientCore) -> ProducerCore:
    core = ProducerCore(
        client,
        ProducerConfig(group="CLIENT_INNER_PRODUCER"),
        UniqueIdGenerator(bytes([10, 0, 0, 1]), 42, 7),
    )
    core.register()
    return core


def stored_send(addr: str, cmd: RemotingCommand) -> RemotingCommand:
    return reply(
        0,
        {"msgId": "0A00000100002A9F00000000000003E8", "queueId": "0", "queueOffset": "1"},
    )


def failed_message() -> MessageExt:
    msg = ext(7, TAGS="a", UNIQ_KEY="UNIQ1", TRAN_MSG="true")
    msg.reconsume_times = 2
    return msg


def test_send_back_asks_the_broker_first() -> None:
    cluster = Cluster(CONSUMER_SEND_MSG_BACK=lambda a, c: reply(0))
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    producer = make_producer(client)
    path = sim.run(send_back_flow(client, "G", failed_message(), producer=producer))
    assert path is SendBackPath.SENT_BACK
    addr, cmd = cluster.seen[-1]
    assert addr == MASTER_A and cmd.code == RequestCode.CONSUMER_SEND_MSG_BACK
    assert cmd.ext_fields == {
        "offset": "1007",
        "group": "G",
        "delayLevel": "0",
        "originMsgId": "UNIQ1",
        "originTopic": "T",
        "unitMode": "false",
        "maxReconsumeTimes": "16",
        "bname": "broker-a",
    }


@pytest.mark.parametrize("broker_fails", [True, False])
def test_send_back_falls_back_to_a_new_message_on_the_retry_topic(broker_fails: bool) -> None:
    cluster = Cluster(
        CONSUMER_SEND_MSG_BACK=lambda a, c: reply(ResponseCode.SYSTEM_ERROR),
        SEND_MESSAGE_V2=stored_send,
    )
    sim = Sim(cluster)
    client = make_client()
    producer = make_producer(client)
    msg = failed_message()
    if broker_fails:
        with_routes(client, sim, "T")
    else:
        msg.broker_name = "unknown-broker"  # no master known: straight to the fallback
    path = sim.run(send_back_flow(client, "G", msg, producer=producer))
    assert path is SendBackPath.RESENT
    assert (RequestCode.CONSUMER_SEND_MSG_BACK in cluster.codes()) is broker_fails
    _, sent = cluster.seen[-1]
    assert sent.code == RequestCode.SEND_MESSAGE_V2
    assert sent.ext_fields["b"] == "%RETRY%G"
    assert (sent.ext_fields["j"], sent.ext_fields["l"]) == ("3", "16")
    props = decode_properties(sent.ext_fields["i"].encode())
    assert props["RETRY_TOPIC"] == "T"
    assert props["ORIGIN_MESSAGE_ID"] == "UNIQ1"
    assert props["RECONSUME_TIME"] == "3" and props["MAX_RECONSUME_TIMES"] == "16"
    assert props["DELAY"] == "5"  # 3 + reconsume times
    assert props["UNIQ_KEY"] == "UNIQ1" and props["TAGS"] == "a"
    assert "TRAN_MSG" not in props
    assert sent.body == b"x"


def test_retry_message_keeps_an_existing_origin_id() -> None:
    msg = failed_message()
    msg.properties["ORIGIN_MESSAGE_ID"] = "FIRST"
    new = retry_message(msg, "G", 5, topic="ns%T")
    assert new.topic == "%RETRY%G" and new.properties["ORIGIN_MESSAGE_ID"] == "FIRST"
    assert new.properties["RETRY_TOPIC"] == "ns%T"


def test_reset_retry_topic_restores_the_original_topic() -> None:
    msg = ext(1, RETRY_TOPIC="T")
    msg.topic = "%RETRY%G"
    reset_retry_topic(msg, "G")
    assert msg.topic == "T"
    other = ext(1, RETRY_TOPIC="T")
    other.topic = "%RETRY%OtherGroup"
    reset_retry_topic(other, "G")
    assert other.topic == "%RETRY%OtherGroup"
    spaced = ext(1, RETRY_TOPIC="ns%T")
    spaced.topic = "%RETRY%ns%G"
    reset_retry_topic(spaced, "G", "ns")
    assert spaced.topic == "T"


def test_delay_levels_and_results() -> None:
    assert [retry_delay_level(n) for n in (0, 1, 5)] == [3, 4, 8]
    assert retry_delay_level(4, 2) == 2 and retry_delay_level(4, -1) == -1
    assert max_reconsume_times() == 16 and max_reconsume_times(orderly=True) == 2**31 - 1
    assert max_reconsume_times(3) == 3
    assert orderly_suspend_delay() == 1.0 and orderly_suspend_delay(5) == 0.01
    assert orderly_suspend_delay(60_000) == 30.0
    assert to_consume_result(True) is ConsumeResult.SUCCESS
    # None (a handler that just returns) is success; failure is explicit.
    assert to_consume_result(None) is ConsumeResult.SUCCESS
    assert to_consume_result(None, orderly=True) is ConsumeResult.SUCCESS
    assert to_consume_result(False) is ConsumeResult.RETRY_LATER
    assert to_consume_result("RECONSUME_LATER") is ConsumeResult.RETRY_LATER
    assert to_consume_result(False, orderly=True) is ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT
    assert to_consume_result("CONSUME_SUCCESS", orderly=True) is ConsumeResult.SUCCESS
    with pytest.raises(InvalidArgumentError):
        to_consume_result(42)


def test_concurrent_failure_sends_back_and_commits_past_the_batch() -> None:
    cluster = Cluster(CONSUMER_SEND_MSG_BACK=lambda a, c: reply(0))
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    pq, store = ProcessQueue(0.0), OffsetStore()
    msgs = [ext(1), ext(2), ext(3)]
    pq.put([*msgs, ext(4)])
    producer = make_producer(client)
    retry_locally = sim.run(
        process_concurrent_result_flow(
            client,
            "G",
            pq,
            mq(0),
            msgs,
            ConsumeResult.SUCCESS,
            offsets=store,
            producer=producer,
            ack_index=0,
        )
    )
    assert retry_locally == []
    assert [c.ext_fields["offset"] for _, c in cluster.seen] == ["1002", "1003"]
    assert store.read(mq(0)) == 4 and pq.msg_count == 1


def test_concurrent_send_back_failure_keeps_the_message_for_a_local_retry() -> None:
    def refuse(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        return reply(ResponseCode.SYSTEM_ERROR)

    cluster = Cluster(CONSUMER_SEND_MSG_BACK=refuse, SEND_MESSAGE_V2=refuse)
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    pq, store = ProcessQueue(0.0), OffsetStore()
    msgs = [ext(1), ext(2)]
    pq.put(msgs)
    producer = make_producer(client)
    retry_locally = sim.run(
        process_concurrent_result_flow(
            client,
            "G",
            pq,
            mq(0),
            msgs,
            ConsumeResult.RETRY_LATER,
            offsets=store,
            producer=producer,
        )
    )
    assert retry_locally == msgs and all(m.reconsume_times == 1 for m in msgs)
    # As Java: nothing left the process queue, so its first offset is committed.
    assert pq.msg_count == 2 and store.read(mq(0)) == 1
    broadcast = sim.run(
        process_concurrent_result_flow(
            client,
            "G",
            pq,
            mq(0),
            msgs,
            ConsumeResult.RETRY_LATER,
            offsets=store,
            producer=producer,
            clustering=False,
        )
    )
    assert broadcast == [] and store.read(mq(0)) == 3


def test_orderly_failure_suspends_then_dead_letters_past_max() -> None:
    cluster = Cluster(SEND_MESSAGE_V2=stored_send)
    producer = make_producer(make_client())
    pq, store = ProcessQueue(0.0), OffsetStore()
    pq.put([ext(1), ext(2)])
    taken = pq.take_messages(2)
    sim = Sim(cluster)
    outcome = sim.run(
        process_orderly_result_flow(
            pq,
            mq(0),
            taken,
            ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT,
            offsets=store,
            group="G",
            producer=producer,
            max_reconsume=1,
        )
    )
    assert not outcome.continue_consume and outcome.delay == 1.0
    assert [m.reconsume_times for m in taken] == [1, 1] and store.read(mq(0)) is None
    again = pq.take_messages(2)
    outcome = sim.run(
        process_orderly_result_flow(
            pq,
            mq(0),
            again,
            ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT,
            offsets=store,
            group="G",
            producer=producer,
            max_reconsume=1,
        )
    )
    assert outcome.continue_consume and store.read(mq(0)) == 3
    sent = [cmd for _, cmd in cluster.seen if cmd.code == RequestCode.SEND_MESSAGE_V2]
    assert [cmd.ext_fields["b"] for cmd in sent] == ["%RETRY%G", "%RETRY%G"]
    assert decode_properties(sent[0].ext_fields["i"].encode())["RECONSUME_TIME"] == "2"


def test_clean_expired_sends_old_messages_back_at_level_3() -> None:
    cluster = Cluster(CONSUMER_SEND_MSG_BACK=lambda a, c: reply(0))
    sim = Sim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    pq = ProcessQueue(0.0)
    pq.put([ext(1, CONSUME_START_TIME="0"), ext(2, CONSUME_START_TIME="0"), ext(3)])
    producer = make_producer(client)
    now_ms = 15 * 60_000 + 1
    flow = clean_expired_flow(client, "G", pq, wall_ms=now_ms, producer=producer)
    assert sim.run(flow) == 2
    assert [c.ext_fields["delayLevel"] for _, c in cluster.seen] == ["3", "3"]
    assert [m.queue_offset for m in pq.messages()] == [3]


# ----------------------------------------------------- where a queue starts


def offsets_cluster(stored: int | None) -> Cluster:
    def query(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        if stored is None:
            return reply(ResponseCode.QUERY_NOT_FOUND)
        return reply(0, {"offset": str(stored)})

    return Cluster(
        QUERY_CONSUMER_OFFSET=query,
        GET_MAX_OFFSET=lambda a, c: reply(0, {"offset": "500"}),
        SEARCH_OFFSET_BY_TIMESTAMP=lambda a, c: reply(0, {"offset": c.ext_fields["timestamp"]}),
    )


@pytest.mark.parametrize(
    ("where", "topic", "stored", "expected"),
    [
        (ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET, "T", 42, 42),
        (ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET, "T", None, 500),
        (ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET, "%RETRY%G", None, 0),
        (ConsumeFromWhere.CONSUME_FROM_MAX_OFFSET, "T", None, 500),
        (ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, "T", 42, 42),
        (ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, "T", None, 0),
        (ConsumeFromWhere.CONSUME_FROM_TIMESTAMP, "T", 42, 42),
        (ConsumeFromWhere.CONSUME_FROM_TIMESTAMP, "T", None, 123),
        (ConsumeFromWhere.CONSUME_FROM_TIMESTAMP, "%RETRY%G", None, 500),
    ],
)
def test_initial_offset_for_each_consume_from_where(
    where: str, topic: str, stored: int | None, expected: int
) -> None:
    cluster = offsets_cluster(stored)
    sim = Sim(cluster)
    client = make_client()
    store = OffsetStore()
    queue = mq(0, topic=topic)
    got = sim.run(initial_offset_flow(client, "G", queue, where, 123, offsets=store))
    assert got == expected
    assert store.read(queue) == stored
    assert cluster.codes()[0] == RequestCode.QUERY_CONSUMER_OFFSET


def test_initial_offset_from_a_broadcasting_file_and_errors() -> None:
    cluster = offsets_cluster(None)
    sim = Sim(cluster)
    client = make_client()
    stored = {mq(0): 9}
    assert sim.run(initial_offset_flow(client, "G", mq(0), stored=stored)) == 9
    assert sim.run(initial_offset_flow(client, "G", mq(1), stored=stored)) == 500
    assert RequestCode.QUERY_CONSUMER_OFFSET not in cluster.codes()
    failing = Sim(Cluster(QUERY_CONSUMER_OFFSET=lambda a, c: reply(ResponseCode.SYSTEM_ERROR)))
    with pytest.raises(BrokerSystemError):
        failing.run(initial_offset_flow(client, "G", mq(0)))


# ------------------------------------------------------- orderly handover


def orderly_core(client: ClientCore) -> PushConsumerCore:
    core = PushConsumerCore(
        client,
        ConsumerConfig(group="G", orderly=True),
        handler=lambda msgs: ConsumeResult.SUCCESS,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )
    return core


def hold_queue(core: PushConsumerCore, queue: MessageQueue, offset: int) -> QueueState:
    pq = ProcessQueue(100.0)
    pq.set_locked(True, 100.0)
    state = QueueState(PullRequest("G", queue, pq, offset))
    core.queues[queue] = state
    core.offsets.update(queue, offset)
    return state


def test_a_busy_orderly_queue_keeps_its_lock_until_its_consume_loop_ends() -> None:
    """A rebalance that gives a busy orderly queue away neither unlocks it nor
    forgets its offset while the consume loop runs; the next maintenance step
    after the loop ended commits the settled offset, then unlocks."""
    cluster = Cluster(UPDATE_CONSUMER_OFFSET=lambda a, c: reply(0))
    sim = OrderedSim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    core = orderly_core(client)
    busy, idle = mq(0), mq(1)
    busy_state = hold_queue(core, busy, 10)
    hold_queue(core, idle, 20)
    assert busy_state.begin_consuming()  # its consume loop runs

    sim.run(core.upkeep.drop_queue_flow(busy))
    sim.run(core.upkeep.drop_queue_flow(idle))
    sent = [wire(cmd) for _, cmd in sim.oneways]
    unlocked = [json.loads(c.body) for c in sent if c.code == RequestCode.UNLOCK_BATCH_MQ]
    assert [[q["queueId"] for q in body["mqSet"]] for body in unlocked] == [[1]]
    assert busy in core.ctx.releasing and busy not in core.queues
    assert busy_state.phase is QueuePhase.HANDING_OVER
    assert not busy_state.request.process_queue.dropped
    assert core.offsets.read(busy) == 10  # still ours: the running handler settles it
    # The queue stays locked: lock renewals include it.
    assert busy in core.ctx.held()

    core.offsets.update(busy, 11)  # the handler's message was consumed
    sim.sent.clear()
    sim.run(core.upkeep.finish_releases_flow())
    assert busy in core.ctx.releasing  # the loop still runs
    assert not sim.sent
    busy_state.end_consuming()  # the loop ended
    assert busy_state.phase is QueuePhase.HANDED_OVER
    sim.run(core.upkeep.finish_releases_flow())
    # The commit goes before the lock is let go.
    assert sim.sent == [RequestCode.UPDATE_CONSUMER_OFFSET, RequestCode.UNLOCK_BATCH_MQ]
    assert wire(sim.oneways[-2][1]).ext_fields["commitOffset"] == "11"
    assert busy_state.request.process_queue.dropped
    assert not core.ctx.releasing and core.offsets.read(busy) is None


def test_a_queue_still_being_released_or_locked_elsewhere_is_retried_soon() -> None:
    locked_elsewhere = Cluster(LOCK_BATCH_MQ=lambda a, c: reply(0, body=b'{"lockOKMQSet":[]}'))
    sim = Sim(locked_elsewhere)
    client = make_client()
    with_routes(client, sim, "T")
    core = orderly_core(client)
    schedule = core.ctx.rebalance
    schedule.begin()  # a rebalance round takes queues
    sim.run(core.upkeep._add_queue_flow(mq(0)))
    assert mq(0) not in core.queues
    assert schedule.due_at == pytest.approx(sim.now + 0.5, abs=0.01)
    schedule.done(sim.now)  # the round ends: the next regular one is 20 s away
    assert not schedule.due(sim.now) and schedule.due(sim.now + 0.5)

    schedule.begin()
    core.ctx.releasing[mq(1)] = hold_queue(core, mq(1), 5)
    del core.queues[mq(1)]
    before = len(locked_elsewhere.seen)
    sim.run(core.upkeep._add_queue_flow(mq(1)))
    assert len(locked_elsewhere.seen) == before  # not even a lock request
    assert mq(1) not in core.queues and schedule.due_at is not None


# ------------------------------------------------------------ admin resets


def test_reset_offsets_by_time_asks_each_master_and_reads_the_moved_offsets() -> None:
    from rocketmq_proto.flows.admin import AdminCore
    from rocketmq_proto.wire.bodies import encode_reset_offset_body

    def reset(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        assert cmd.ext_fields["timestamp"] == "1234" and cmd.ext_fields["isForce"] == "true"
        broker = "broker-a" if addr == MASTER_A else "broker-b"
        table = {MessageQueue("T", broker, i): 10 * i for i in range(4)}
        return reply(0, body=encode_reset_offset_body(table))

    cluster = Cluster(INVOKE_BROKER_TO_RESET_OFFSET=reset)
    sim = Sim(cluster)
    moved = sim.run(AdminCore(make_client()).reset_offsets_by_time_flow("G", "T", 1234))
    assert moved == {mq(i, b): 10 * i for b in BROKERS for i in range(4)}
    assert sorted(addr for addr, _ in cluster.seen) == sorted([MASTER_A, BROKERS["broker-b"][0]])


@pytest.mark.parametrize("force", [True, False])
def test_reset_offsets_of_an_offline_group_writes_them_queue_by_queue(force: bool) -> None:
    """A 4.x broker answers CONSUMER_NOT_ONLINE when no consumer of the group is
    connected: the offsets are then searched and written directly; without
    ``force`` an offset only moves back."""
    from rocketmq_proto.flows.admin import AdminCore

    written: dict[tuple[str, int], int] = {}

    def update(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        written[(addr, int(cmd.ext_fields["queueId"]))] = int(cmd.ext_fields["commitOffset"])
        return reply(0)

    cluster = Cluster(
        INVOKE_BROKER_TO_RESET_OFFSET=lambda a, c: reply(ResponseCode.CONSUMER_NOT_ONLINE),
        SEARCH_OFFSET_BY_TIMESTAMP=lambda a, c: reply(0, {"offset": "7"}),
        QUERY_CONSUMER_OFFSET=lambda a, c: reply(0, {"offset": c.ext_fields["queueId"]}),
        UPDATE_CONSUMER_OFFSET=update,
    )
    moved = Sim(cluster).run(AdminCore(make_client()).reset_offsets_by_time_flow(
        "G", "T", 1234, force=force
    ))  # fmt: skip
    # queue i has committed offset i; the timestamp's offset is 7 everywhere
    assert moved == {mq(i, b): 7 if force else i for b in BROKERS for i in range(4)}
    assert sorted(written.values()) == ([7] * 8 if force else [])


def test_reset_offsets_by_time_raises_the_brokers_error() -> None:
    from rocketmq_proto.flows.admin import AdminCore

    cluster = Cluster(INVOKE_BROKER_TO_RESET_OFFSET=lambda a, c: reply(ResponseCode.SYSTEM_ERROR))
    with pytest.raises(BrokerSystemError):
        Sim(cluster).run(AdminCore(make_client()).reset_offsets_by_time_flow("G", "T", 1))


# ------------------------------------------------------- consume workers


def spawned_by(flow: Flow[None]) -> list[Spawn]:
    """Run a flow that yields only Spawn effects (and reads the wall clock); the
    spawned flows, in order."""
    spawns: list[Spawn] = []
    try:
        effect = next(flow)
        while True:
            if isinstance(effect, WallTime):
                effect = flow.send(1_700_000_000_000)
                continue
            assert isinstance(effect, Spawn), effect
            spawns.append(effect)
            effect = flow.send(None)
    except StopIteration:
        return spawns


def test_concurrent_batches_are_taken_by_at_most_consume_thread_max_workers() -> None:
    """As Java's consume thread pool: at most ``consume_thread_max`` workers, each
    taking waiting batches in arrival order until none is left; offsets move on."""
    handled: list[int] = []
    client = make_client()
    sim = Sim(Cluster())
    core = PushConsumerCore(
        client,
        ConsumerConfig(group="G", consume_thread_max=3),
        handler=lambda msgs: handled.extend(m.queue_offset for m in msgs) or True,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )
    state = hold_queue(core, mq(0), 0)
    msgs = [ext(i) for i in range(50)]
    state.request.process_queue.put(msgs)
    pool = core.consumption
    assert isinstance(pool, ConcurrentConsumption)
    (worker,) = spawned_by(pool.dispatch_flow(state, msgs, True))  # one at a time
    assert pool.workers == 1 and len(pool.ready) == 50
    # The first worker takes every batch, one at a time (the Sim's handler never
    # waits). At its first batch it asked for one helper, and for none while that
    # one had not started.
    sim.run(worker.flow)
    assert handled == list(range(50)) and not pool.ready
    helpers = [flow for name, flow in sim.spawned if name == "consume"]
    assert len(helpers) == 1 and pool.workers == 1 and core.in_flight == 0
    sim.run(helpers[0])  # nothing left for it
    assert pool.workers == 0 and handled == list(range(50))
    assert core.offsets.read(mq(0)) == 50
    # Counted for stats(): each call timed by the driver, each batch's wait measured
    # from its arrival (the Sim's wall clock moves 0 ms between the two).
    consume = core.stats()["consume"]
    assert (consume["ok"], consume["failed"], consume["dead_lettered"]) == (50, 0, 0)
    assert consume["process_time"]["count"] == 50 and consume["process_time"]["p50_ms"] == 2.0
    assert consume["await_time"]["count"] == 50
    # Closed: a new worker takes nothing; what waits is left unconsumed.
    more = [ext(i) for i in range(50, 55)]
    state.request.process_queue.put(more)
    (worker,) = spawned_by(pool.dispatch_flow(state, more[:1], True))
    core.begin_close()
    sim.run(worker.flow)
    assert handled == list(range(50)) and core.offsets.read(mq(0)) == 50


def concurrent_pool(limit: int) -> tuple[PushConsumerCore, QueueState, ConcurrentConsumption]:
    core = PushConsumerCore(
        make_client(),
        ConsumerConfig(group="G", consume_thread_max=limit),
        handler=lambda msgs: True,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )
    state = hold_queue(core, mq(0), 0)
    pool = core.consumption
    assert isinstance(pool, ConcurrentConsumption)
    return core, state, pool


def until_the_handler(flow: Flow[None]) -> list[Spawn]:
    """Step a consume worker to its handler call (left waiting); what it spawned."""
    spawns: list[Spawn] = []
    effect = next(flow)
    while not isinstance(effect, UserCall):
        if isinstance(effect, Spawn):
            spawns.append(effect)
        effect = flow.send(1_700_000_000_000 if isinstance(effect, WallTime) else None)
    return spawns


@pytest.mark.parametrize(("batches", "limit"), [(2, 3), (3, 3), (10, 3), (4, 20), (1, 20)])
def test_consume_workers_grow_one_by_one_while_handlers_wait(batches: int, limit: int) -> None:
    """A driver that starts a spawned flow later (asyncio): each worker, as it takes
    a batch while more wait, starts one more, until every batch is in a handler
    call, or ``consume_thread_max`` calls wait at once."""
    core, state, pool = concurrent_pool(limit)
    msgs = [ext(i) for i in range(batches)]
    state.request.process_queue.put(msgs)
    (first,) = spawned_by(pool.dispatch_flow(state, msgs, True))
    waiting = [first.flow]
    while True:
        spawns = until_the_handler(waiting[-1])
        if not spawns:
            break
        waiting += [spawn.flow for spawn in spawns]
    at_once = min(batches, limit)
    assert len(waiting) == at_once and pool.workers == at_once and core.in_flight == at_once
    assert len(pool.ready) == batches - at_once


def test_a_batch_dispatched_while_a_worker_is_being_started_gets_a_worker() -> None:
    """The blocking drivers step a consumer's flows on several threads, holding
    the core lock only for a step. Thread 1's dispatch is inside its ``spawn``
    (the worker it started took the batch, its handler ran on a pool thread, and
    it ended: no worker left) when thread 2 dispatches another batch: one of the
    two starts a worker for it (here thread 1, counting again once its ``spawn``
    returned)."""
    _, state, pool = concurrent_pool(20)
    a, b = ext(0), ext(1)
    state.request.process_queue.put([a, b])
    first = pool.dispatch_flow(state, [a], True)
    effect = next(first)
    assert isinstance(effect, WallTime)
    effect = first.send(1_700_000_000_000)
    assert isinstance(effect, Spawn)  # thread 1 performs it (the lock released)
    worker = effect.flow
    assert until_the_handler(worker) == []  # it takes ``a``; the handler leaves for a thread
    effect = worker.send((True, 0.001))  # ...and comes back: settled, and no batch waits
    while True:
        try:
            effect = worker.send(1.0)  # the settling's clock
        except StopIteration:
            break
    assert pool.workers == 0 and not pool.ready
    started = spawned_by(pool.dispatch_flow(state, [b], True))  # thread 2
    started += spawned_by(first)  # thread 1, once its spawn returned
    assert len(started) == 1 and pool.workers == 1 and len(pool.ready) == 1


class EagerSpawnSim(Sim):
    """A Sim that runs a spawned flow at once, before the spawner goes on, as the
    blocking drivers (threads, gevent) start one: up to its first wait, and a Sim
    never waits. More than ``max_spawns`` spawns fail the test (a flow spawning
    forever would never let its driver's loop go: under gevent, the hub)."""

    def __init__(
        self, on_call: Callable[[str, RemotingCommand], RemotingCommand], max_spawns: int = 50
    ) -> None:
        super().__init__(on_call)
        self.max_spawns = max_spawns
        self.spawned: list[str] = []

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Spawn):
            self.spawned.append(effect.name)
            if len(self.spawned) > self.max_spawns:
                raise AssertionError(f"spawned forever: {self.spawned[-3:]}...")
            self.run(effect.flow)
            return None
        return super().perform(effect)


def pull_once_eagerly(
    on_pull: Callable[[PushConsumerCore, int], RemotingCommand], handled: list[int]
) -> tuple[EagerSpawnSim, PushConsumerCore, Any]:
    """A concurrent push consumer holding queue 0 of ``T`` from offset 10, its
    handler noting in ``handled`` the offsets it gets, after one run of that
    queue's pull loop on a Sim that runs spawned flows at once, as the blocking
    drivers do. ``on_pull(core, n)`` answers the loop's ``n``-th PULL_MESSAGE."""
    pulls = 0

    def answer(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        nonlocal pulls
        pulls += 1
        return on_pull(core, pulls)

    sim = EagerSpawnSim(Cluster(PULL_MESSAGE=answer))
    client = make_client()
    with_routes(client, sim, "T")
    core = PushConsumerCore(
        client,
        ConsumerConfig(group="G"),
        handler=lambda msgs: handled.extend(m.queue_offset for m in msgs) or True,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )
    core.subscribe("T")
    state = hold_queue(core, mq(0), 10)
    sim.run(core.pulls.loop_flow(state.request))
    return sim, core, state


def test_a_batch_pulled_as_the_consumer_closes_starts_no_worker_under_an_eager_spawn() -> None:
    """A pull answered after the close began still hands its messages over. A
    worker for them takes nothing (the consumer closes) and ends at once; where a
    spawned flow runs before ``spawn`` returns (the blocking drivers), the pool
    must not count its workers again after each spawn and start another, forever:
    a gevent consumer's close spun so in its reader's greenlet (the hub never ran
    again to read the answer the close waited for)."""
    handled: list[int] = []

    def on_pull(core: PushConsumerCore, pulls: int) -> RemotingCommand:
        core.begin_close()  # the close begins while the pull waits for its answer
        return pull_response(0, [ext(10), ext(11), ext(12)], next_begin=13)

    sim, core, state = pull_once_eagerly(on_pull, handled)
    pool = concurrent_of(core)
    assert state.request.process_queue.msg_count == 3  # cached, then handed over
    assert sim.spawned == [] and pool.workers == 0 and handled == []
    assert core.offsets.read(mq(0)) == 10


def test_a_worker_run_at_once_takes_every_waiting_batch_and_no_other_starts() -> None:
    """Running: where a spawned flow runs before ``spawn`` returns, the first
    worker takes every batch waiting (its handler answers at once here), and the
    pool starts no other for batches already taken."""
    handled: list[int] = []

    def on_pull(core: PushConsumerCore, pulls: int) -> RemotingCommand:
        if pulls == 2:
            core.begin_close()
            return pull_response(int(ResponseCode.PULL_NOT_FOUND), next_begin=13)
        return pull_response(0, [ext(10), ext(11), ext(12)], next_begin=13)

    sim, core, _ = pull_once_eagerly(on_pull, handled)
    assert sim.spawned == ["consume"] and concurrent_of(core).workers == 0
    assert handled == [10, 11, 12] and core.offsets.read(mq(0)) == 13


def test_lite_pull_posts_its_subscription_on_every_pull() -> None:
    """Like Java's lite pull consumer: the broker filters by the expression each
    pull carries, so a queue assigned between heartbeats pulls at once instead of
    being refused with SUBSCRIPTION_NOT_EXIST."""
    from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig, PullConsumerCore, _Queue

    client = make_client()
    core = PullConsumerCore(client, PullConsumerConfig("G"))
    core.subscriptions["T"] = build_subscription("T", "a || b")
    queue = mq(1)
    core.queues[queue] = _Queue(PullRequest("G", queue, ProcessQueue(0.0), 7), generation=1)

    def on_pull(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        core.begin_close()
        return pull_response(int(ResponseCode.PULL_NOT_FOUND), next_begin=7)

    cluster = Cluster(PULL_MESSAGE=on_pull)
    sim = Sim(cluster)
    with_routes(client, sim, "T")
    sim.run(core.pull_loop_flow(queue, 1))
    ((addr, pull),) = cluster.seen
    assert addr == MASTER_A
    assert int(pull.ext_fields["sysFlag"]) & PullSysFlag.SUBSCRIPTION
    assert pull.ext_fields["subscription"] == "a || b"
    assert pull.ext_fields["queueOffset"] == "7"


def test_lite_pull_subscribing_while_running_heartbeats_before_it_rebalances() -> None:
    """A running pull consumer that subscribes tells the brokers at once (as Java's
    does); otherwise they do not list it in its group until the next periodic
    heartbeat, and its rebalance assigns nothing for up to 20 s."""
    from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig, PullConsumerCore

    client = make_client()
    core = PullConsumerCore(client, PullConsumerConfig("G"))
    core.register()
    order: list[str] = []

    def on_heartbeat(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        subscribed = json.loads(cmd.body)["consumerDataSet"][0]["subscriptionDataSet"]
        order.append("heartbeat " + ",".join(sub["topic"] for sub in subscribed))
        return reply(0)

    def on_consumer_list(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        order.append("consumer list")
        core.begin_close()  # one maintenance round is enough
        return reply(0, body=json.dumps({"consumerIdList": []}).encode())

    cluster = Cluster(HEART_BEAT=on_heartbeat, GET_CONSUMER_LIST_BY_GROUP=on_consumer_list)
    sim = Sim(cluster)
    sim.run(core.start_flow())  # nothing subscribed yet: no broker known, no heartbeat
    core.subscribe("T")
    sim.run(core.maintenance_flow())
    assert order[0] == "heartbeat T"
    assert order[-1] == "consumer list"


def test_a_push_consumer_makes_no_periodic_commit_once_it_closes() -> None:
    """As below, for a push consumer: a close that begins during an upkeep round's
    rebalance leaves the offsets to the close's confirmed commit."""
    core = push_core(lambda msgs: None)
    core.subscribe("T", "*", "TAG")

    def on_consumer_list(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        core.begin_close()
        return reply(ResponseCode.SYSTEM_ERROR)  # (the round changes no queue)

    sim = Sim(Cluster(GET_CONSUMER_LIST_BY_GROUP=on_consumer_list))
    with_routes(core.client, sim, "T")
    hold_queue(core, mq(0), 5)  # consumed up to 5, not committed yet: a commit is due
    sim.run(core.maintenance_flow())
    assert sim.oneways == [] and core.offsets.to_commit() == {mq(0): 5}


def test_lite_pull_makes_no_periodic_commit_once_it_closes() -> None:
    """A close that begins during a maintenance round (here, during its heartbeat)
    leaves the offsets to the close's own confirmed commit: a periodic oneway one
    sent then could reach the broker after it and store an older offset."""
    from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig, PullConsumerCore, _Queue

    client = make_client()
    core = PullConsumerCore(client, PullConsumerConfig("G"))
    core.register()
    core.assigned_only = True
    core.subscriptions["T"] = build_subscription("T")
    queue = mq(1)
    core.queues[queue] = _Queue(PullRequest("G", queue, ProcessQueue(0.0), 0), generation=1)
    core.offsets.update(queue, 42)  # consumed, not committed yet: a commit is due

    def on_heartbeat(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        core.begin_close()
        return reply(0)

    sim = Sim(Cluster(HEART_BEAT=on_heartbeat))
    with_routes(client, sim, "T")
    core._announce = True  # the round starts with a heartbeat
    sim.run(core.maintenance_flow())
    assert sim.oneways == [] and core.offsets.to_commit() == {queue: 42}


def _lite_pull_after_a_failed_pull(first_failure: RocketMQError, took: float) -> list[float]:
    """An assigned queue whose first pull fails after ``took`` seconds and whose
    second finds a message: the times (Sim clock) at which the pulls were sent."""
    from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig, PullConsumerCore, _Queue

    client = make_client()
    core = PullConsumerCore(client, PullConsumerConfig("G"))
    core.subscriptions["T"] = build_subscription("T")
    queue = mq(1)
    core.queues[queue] = _Queue(PullRequest("G", queue, ProcessQueue(0.0), 0), generation=1)
    sent: list[float] = []

    def on_pull(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        sent.append(sim.now)
        if len(sent) == 1:
            sim.now += took
            raise first_failure
        core.begin_close()  # one delivery is enough
        return pull_response(0, [ext(0)], next_begin=1)

    sim = Sim(Cluster(PULL_MESSAGE=on_pull))
    with_routes(client, sim, "T")
    sim.run(core.pull_loop_flow(queue, 1))
    assert [m.queue_offset for m in core.buffer] == [0]
    return sent


def test_lite_pull_after_a_timed_out_pull_pulls_again_at_once() -> None:
    """A broker that stalls through a whole long poll: the client's pull times out
    (after ``consumer_timeout_when_suspend``, 30 s). The broker answers again just
    after that pull was sent; the queue must deliver within one pull timeout of
    that, so no back-off is added on top of the 30 s already waited (it used to
    be 3 s more: 33 s of silence after ``assign``, longer than the tests' 30 s)."""
    config = PullConfig()
    timeout = config.consumer_timeout_when_suspend
    first, second = _lite_pull_after_a_failed_pull(RequestTimeoutError("no answer"), timeout)
    broker_back = first + 0.5
    assert second - first >= timeout
    assert second <= broker_back + timeout


def test_lite_pull_after_a_fast_failure_still_backs_off() -> None:
    """A pull refused at once (a broker restarting) is retried after the back-off,
    counted from when it was sent: no busy loop of failing pulls."""
    config = PullConfig()
    first, second = _lite_pull_after_a_failed_pull(ConnectionClosedError("refused"), 0.2)
    assert second - first == pytest.approx(config.pull_time_delay_when_exception, abs=0.01)


# ------------------------------------------------- handler results and errors


def push_core(handler: Callable[[list[MessageExt]], object], **config: object) -> PushConsumerCore:
    return PushConsumerCore(
        make_client(),
        ConsumerConfig(group="G", **config),  # type: ignore[arg-type]
        handler=handler,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )


def concurrent_of(core: PushConsumerCore) -> ConcurrentConsumption:
    assert isinstance(core.consumption, ConcurrentConsumption)
    return core.consumption


def orderly_of(core: PushConsumerCore) -> OrderlyConsumption:
    assert isinstance(core.consumption, OrderlyConsumption)
    return core.consumption


def test_a_handler_returning_none_consumed_its_messages() -> None:
    """Concurrent: the offset moves past the batch and nothing is sent back."""
    cluster = Cluster()
    sim = Sim(cluster)
    core = push_core(lambda msgs: None, consume_message_batch_max_size=4)
    with_routes(core.client, sim, "T")
    state = hold_queue(core, mq(0), 0)
    msgs = [ext(i) for i in range(4)]
    state.request.process_queue.put(msgs)
    assert sim.run(concurrent_of(core).consume_flow(state, msgs)) == []
    assert core.offsets.read(mq(0)) == 4
    assert RequestCode.CONSUMER_SEND_MSG_BACK not in cluster.codes()
    assert RequestCode.SEND_MESSAGE not in cluster.codes()
    assert all(m.reconsume_times == 0 for m in msgs)


def test_a_handler_answer_that_cannot_be_read_is_logged_and_counts_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Concurrent: the batch is sent back for a retry, and the warning names the
    client (its id made only then), the group and the message ids."""
    cluster = Cluster(CONSUMER_SEND_MSG_BACK=lambda a, c: reply(0))
    sim = Sim(cluster)
    core = push_core(lambda msgs: "neither a verdict nor a bool")
    with_routes(core.client, sim, "T")
    state = hold_queue(core, mq(0), 0)
    msgs = [ext(0, **{"UNIQ_KEY": "AC11000100002A9F0000000000000007"})]
    state.request.process_queue.put(msgs)
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto"):
        assert sim.run(concurrent_of(core).consume_flow(state, msgs)) == []
    [record] = [r for r in caplog.records if "answer unusable" in r.getMessage()]
    assert record.__dict__["rocketmq_client"] == core.client.client_id == "10.0.0.1@t"
    assert record.__dict__["rocketmq_group"] == "G"
    assert record.__dict__["rocketmq_msg_ids"] == ["AC11000100002A9F0000000000000007"]
    assert RequestCode.CONSUMER_SEND_MSG_BACK in cluster.codes()  # a failure: retried
    assert core.offsets.read(mq(0)) == 1  # sent back, so settled here


def test_an_orderly_handler_returning_none_commits_and_goes_on() -> None:
    sim = Sim(Cluster())
    seen: list[int] = []

    def handler(msgs: list[MessageExt]) -> bool | None:
        if len(seen) >= 10:
            return True  # (stops a suspend-and-retry loop, were None a failure)
        seen.extend(m.queue_offset for m in msgs)
        return None

    core = push_core(handler, orderly=True)
    with_routes(core.client, sim, "T")
    state = hold_queue(core, mq(0), 0)
    state.request.process_queue.put([ext(i) for i in range(3)])
    assert state.begin_consuming()
    sim.run(orderly_of(core).consume_flow(state))
    assert seen == [0, 1, 2]  # once each, no suspension and no second attempt
    assert core.offsets.read(mq(0)) == 3
    assert state.phase is QueuePhase.IDLE and state.request.process_queue.msg_count == 0


def test_dead_letters_are_counted_once_their_send_back_went() -> None:
    """A failed message past the group's maximum is dead-lettered by the broker when
    it is sent back: counted then, not when the send-back failed (it comes back)."""
    answers = [ResponseCode.SYSTEM_ERROR, 0, 0]  # the first send-back fails, then they work
    cluster = Cluster(
        CONSUMER_SEND_MSG_BACK=lambda a, c: reply(answers.pop(0)),
        SEND_MESSAGE_V2=lambda a, c: reply(ResponseCode.SYSTEM_ERROR),  # the fallback fails
    )
    sim = Sim(cluster)
    core = push_core(lambda msgs: ConsumeResult.RETRY_LATER, max_reconsume_times=2)
    with_routes(core.client, sim, "T")
    state = hold_queue(core, mq(0), 0)
    young, old = ext(0), ext(1)
    young.reconsume_times, old.reconsume_times = 0, 2
    state.request.process_queue.put([young, old])
    pool = concurrent_of(core)
    [again] = sim.run(pool.consume_flow(state, [old]))  # its send-back fails: kept here
    assert core.stats()["consume"]["dead_lettered"] == 0
    assert sim.run(pool.consume_flow(state, [again])) == []
    assert sim.run(pool.consume_flow(state, [young])) == []
    consume = core.stats()["consume"]
    assert (consume["dead_lettered"], consume["failed"]) == (1, 3)


def test_a_handler_exception_is_logged_with_its_traceback_topic_group_and_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(msgs: list[MessageExt]) -> None:
        raise KeyError("no such order")

    cluster = Cluster(CONSUMER_SEND_MSG_BACK=lambda a, c: reply(0))
    sim = Sim(cluster)
    core = push_core(handler, consume_message_batch_max_size=2)
    with_routes(core.client, sim, "T")
    state = hold_queue(core, mq(0), 0)
    msgs = [ext(i) for i in range(2)]
    state.request.process_queue.put(msgs)
    with caplog.at_level("WARNING", logger="rocketmq_proto.consumer"):
        sim.run(concurrent_of(core).consume_flow(state, msgs))
    (record,) = [r for r in caplog.records if "handler raised" in r.getMessage()]
    text = record.getMessage()
    assert "topic T" in text and "group G" in text and "no such order" in text
    assert all(m.msg_id in text for m in msgs)
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert record.exc_info[2] is not None  # the handler's own traceback
    assert "in handler" in caplog.text and "raise KeyError" in caplog.text
    assert record.rocketmq_topic == "T" and record.rocketmq_group == "G"  # type: ignore[attr-defined]
    assert record.rocketmq_msg_ids == [m.msg_id for m in msgs]  # type: ignore[attr-defined]
    # and the batch failed: both messages went back for a retry
    assert cluster.codes().count(RequestCode.CONSUMER_SEND_MSG_BACK) == 2


# ------------------------------------------------------- broadcasting offsets


def test_broadcasting_offsets_file_does_not_depend_on_the_generated_instance_name() -> None:
    """Two consumer objects (two processes: other pid, other random instance
    name) of one broadcasting group use one offsets file, named as Java's
    broadcasting consumers name it (``ip@DEFAULT``); a configured instance name
    (and unit name) is kept in it."""
    from rocketmq_proto.options import consumer_settings

    def local_file(pid: int, nonce: int, **options: object) -> tuple[str, str]:
        settings, config = consumer_settings(
            "10.0.0.9:9876",
            {"group": "G", "message_model": "BROADCASTING", "offset_store_dir": "/d", **options},
            pid=pid,
            nonce=nonce,
        )
        core = PushConsumerCore(
            ClientCore(settings.client),
            config,
            handler=lambda msgs: None,
            ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", pid, 0),
        )
        return core.client.client_id, core.ctx.local_offsets_file()

    first_id, first = local_file(100, 1, client_ip="10.0.0.1")
    second_id, second = local_file(200, 2, client_ip="10.0.0.1")
    assert first_id != second_id  # the running clients differ...
    assert first == second == "/d/10.0.0.1@DEFAULT/G/offsets.json"  # ...their file does not
    _, named = local_file(100, 1, client_ip="10.0.0.1", instance_name="edge", unit_name="u")
    assert named == "/d/10.0.0.1@edge@u/G/offsets.json"


# ----------------------------------------------------- consume_mode="auto"


class OrderedSim(Sim):
    """A Sim that also keeps the requests and oneways in the order they went out."""

    def __init__(self, on_call: Callable[[str, RemotingCommand], RemotingCommand]) -> None:
        super().__init__(on_call)
        self.sent: list[int] = []

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Call | Oneway):
            self.sent.append(wire(effect.command).code)
        return super().perform(effect)


def test_an_auto_consumer_closes_as_a_pulling_one_commit_first_then_unregister_once() -> None:
    """Its popping part must not unregister the group while the pulling part still
    holds queues: the others would take them from offsets not yet committed."""
    from rocketmq_proto.flows.consumer.auto_push import AutoPushConsumerCore

    cluster = Cluster(
        UNREGISTER_CLIENT=lambda addr, cmd: reply(0),
        UPDATE_CONSUMER_OFFSET=lambda addr, cmd: reply(0),
    )
    sim = OrderedSim(cluster)
    client = make_client()
    with_routes(client, sim, "T")
    core = AutoPushConsumerCore(
        client,
        ConsumerConfig(group="G", consume_mode="auto"),
        handler=lambda msgs: None,
        ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
    )
    core.subscribe("T")
    core.register()
    for part in (core, core.pulling, core.popping):
        part.start()
    hold_queue(core.pulling, mq(0), 10)
    sim.sent.clear()
    sim.run(core.shutdown_flow())
    assert core.closed and core.pulling.closed and core.popping.closed
    commits = [i for i, code in enumerate(sim.sent) if code == RequestCode.UPDATE_CONSUMER_OFFSET]
    leaves = [i for i, code in enumerate(sim.sent) if code == RequestCode.UNREGISTER_CLIENT]
    assert commits and leaves, sim.sent
    assert max(commits) < min(leaves), sim.sent
    assert len(leaves) == len({addr for addr, _ in cluster.seen if addr != NAMESRV}), sim.sent
    assert "G" not in client.consumer_data


def test_close_returns_once_the_brokers_confirmed_the_final_offsets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The periodic commit is oneway, as Java's; the one at close waits for each
    broker's answer, before the group is unregistered, so a successor (or an admin
    reading the offset) never sees an older offset after ``close`` returned.
    Relayed by a proxy, a oneway commit can reach the broker later. A refusal is
    logged and leaves the offset uncommitted."""
    answers = {"broker-a": 0, "broker-b": ResponseCode.SYSTEM_ERROR}

    def update(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        response = reply(answers[cmd.ext_fields["bname"]])
        response.remark = "disk full"
        return response

    cluster = Cluster(UNREGISTER_CLIENT=lambda addr, cmd: reply(0), UPDATE_CONSUMER_OFFSET=update)
    sim = OrderedSim(cluster)
    core = push_core(lambda msgs: None)
    with_routes(core.client, sim, "T")
    core.subscribe("T")
    core.register()
    core.start()
    hold_queue(core, mq(0), 10)
    hold_queue(core, mq(1, "broker-b"), 7)
    sim.run(core.upkeep.persist_flow())  # periodic: oneway
    assert [wire(c).code for _, c in sim.oneways] == [RequestCode.UPDATE_CONSUMER_OFFSET] * 2
    core.offsets.update(mq(0), 12)
    core.offsets.update(mq(1, "broker-b"), 9)
    sim.oneways.clear()
    sim.sent.clear()
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.consumer"):
        sim.run(core.shutdown_flow())
    assert core.closed
    commits = {
        c.ext_fields["bname"]: c.ext_fields["commitOffset"]
        for _, c in sim.calls
        if c.code == RequestCode.UPDATE_CONSUMER_OFFSET
    }
    assert commits == {"broker-a": "12", "broker-b": "9"}
    assert not [c for _, c in sim.oneways if c.code == RequestCode.UPDATE_CONSUMER_OFFSET]
    assert sim.sent.index(RequestCode.UPDATE_CONSUMER_OFFSET) < sim.sent.index(
        RequestCode.UNREGISTER_CLIENT
    )
    assert "offset 9 for G failed" in caplog.text and "disk full" in caplog.text


def test_a_confirmed_commit_gives_up_on_a_broker_that_does_not_answer() -> None:
    """A close waits one request timeout per silent broker, not one per queue."""

    def update(addr: str, cmd: RemotingCommand) -> RemotingCommand:
        if cmd.ext_fields["bname"] == "broker-a":
            raise RequestTimeoutError("no answer")
        return reply(0)

    sim = Sim(Cluster(UPDATE_CONSUMER_OFFSET=update))
    client = make_client()
    with_routes(client, sim, "T")
    store = OffsetStore()
    queues = [mq(0), mq(1), mq(2), mq(0, "broker-b")]
    for i, queue in enumerate(queues):
        store.update(queue, 10 + i)
    sent = sim.run(commit_offsets_flow(client, "G", store, queues, confirmed=True))
    assert sent == {mq(0, "broker-b"): 13}
    asked = [wire(c).ext_fields["bname"] for _, c in sim.calls if c.code == 15]
    assert asked.count("broker-a") == 1 and asked.count("broker-b") == 1
    # The others are tried again at the next commit.
    assert set(store.to_commit(queues)) == {mq(0), mq(1), mq(2)}


def test_auto_with_orderly_is_refused_as_java_always_pulls_an_orderly_consumer() -> None:
    with pytest.raises(ConfigError, match="an orderly consumer pulls"):
        ConsumerConfig(group="G", consume_mode="auto", orderly=True)
