"""Admin's day-to-day operations in the core: their request codecs, the bodies
they read, and their flows against scripted brokers (no IO)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketmq_proto.build import Host, build_admin, build_push_consumer
from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.admin import AdminCore, BrokerStatus, is_system_group
from rocketmq_proto.message.codec import decode_message, encode_stored_message
from rocketmq_proto.message.ids import encode_offset_msg_id
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    SubscriptionGroupConfig,
    encode_properties_text,
    parse_consume_message_directly_result,
    parse_kv_table,
    parse_properties_text,
    parse_subscription_groups,
    parse_topic_list,
)
from rocketmq_proto.wire.codes import PullSysFlag, RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    BrokerError,
    InvalidArgumentError,
    NoPermissionError,
    QueryNotFoundError,
    RemoteProtocolError,
    RouteNotFoundError,
    SubscriptionGroupNotExistError,
)
from rocketmq_proto.wire.route import MessageQueue

from .flowsim import Sim
from .test_producer_core import BROKERS, NAMESRV, reply, route_body, wire

HOST = Host(pid=4242, nonce=77, id_seed=99, default_ip="10.1.2.3", environ={})
A, B = BROKERS["broker-a"], BROKERS["broker-b"]


def cluster_body(**extra: dict[int, str]) -> bytes:
    brokers = {"broker-a": {0: A}, "broker-b": {0: B}, **extra}
    return json.dumps(
        {
            "brokerAddrTable": {
                name: {
                    "brokerName": name,
                    "cluster": "DefaultCluster",
                    "brokerAddrs": {str(k): v for k, v in addrs.items()},
                }
                for name, addrs in brokers.items()
            },
            "clusterAddrTable": {"DefaultCluster": sorted(brokers)},
        }
    ).encode()


def make_admin(namespace: str | None = None) -> AdminCore:
    options: dict[str, Any] = {"namespace": namespace} if namespace else {}
    return build_admin(NAMESRV, options, HOST).core


def mq_key(topic: str, broker: str, qid: int) -> str:
    return json.dumps({"brokerName": broker, "queueId": qid, "topic": topic}, sort_keys=True)


# ------------------------------------------------------------------ bodies


def test_properties_text_is_read_as_java_properties_load_reads_it() -> None:
    text = (
        b"# a comment\n"
        b"! another\n"
        b"brokerName=broker-a\n"
        b"  spaced   =  value with spaces  \n"
        b"colon: yes\n"
        b"bare value\n"
        b"empty=\n"
        b"path=C\\:\\\\data\\\\store\n"
        b"multi=one, \\\n"
        b"      two\n"
        b"uni=caf\\u00e9\\tend\n"
        b"\n"
    )
    assert parse_properties_text(text) == {
        "brokerName": "broker-a",
        "spaced": "value with spaces  ",
        "colon": "yes",
        "bare": "value",
        "empty": "",
        "path": "C:\\data\\store",
        "multi": "one, two",
        "uni": "caf\u00e9\tend",
    }
    with pytest.raises(RemoteProtocolError, match="u escape"):
        parse_properties_text(b"k=\\uZZZZ")


def test_broker_settings_are_written_as_key_value_lines_and_bad_ones_refused() -> None:
    body = encode_properties_text({"flushDiskType": "ASYNC_FLUSH", "autoCreateTopicEnable": True})
    assert body == b"flushDiskType=ASYNC_FLUSH\nautoCreateTopicEnable=true\n"
    assert parse_properties_text(body) == {
        "flushDiskType": "ASYNC_FLUSH",
        "autoCreateTopicEnable": "true",
    }
    for bad in ({"a=b": "1"}, {"": "1"}, {"k": "two\nlines"}, {"with space": "1"}):
        with pytest.raises(InvalidArgumentError, match="cannot be sent"):
            encode_properties_text(bad)
    with pytest.raises(InvalidArgumentError, match="no broker setting"):
        encode_properties_text({})


def test_topic_list_kv_table_and_direct_consume_result_bodies_are_read() -> None:
    assert parse_topic_list(b'{"topicList":["b","a"],"brokerAddr":null}') == ["b", "a"]
    assert parse_topic_list(b"{}") == []
    table = parse_kv_table(b'{"table":{"putTps":"1.5 2.0 ","bootTimestamp":"17","odd":3}}')
    assert table == {"bootTimestamp": "17", "odd": "3", "putTps": "1.5 2.0 "}
    with pytest.raises(RemoteProtocolError):
        parse_kv_table(b'{"table":[1]}')
    result = parse_consume_message_directly_result(
        b'{"autoCommit":true,"consumeResult":"CR_SUCCESS","order":false,'
        b'"remark":"","spentTimeMills":12}'
    )
    assert result.consume_result == "CR_SUCCESS" and result.succeeded
    assert result.spent_time_millis == 12 and not result.order
    later = parse_consume_message_directly_result(b'{"consumeResult":"CR_LATER"}')
    assert not later.succeeded and later.auto_commit


def test_subscription_group_table_is_read_with_java_defaults_for_missing_fields() -> None:
    body = (
        b'{"dataVersion":{"counter":1},"forbiddenTable":{},"subscriptionGroupTable":{'
        b'"g2":{"groupName":"g2","consumeMessageOrderly":true,"retryMaxTimes":3,'
        b'"attributes":{"+a":"1"},"groupRetryPolicy":{"type":"CUSTOMIZED"}},'
        b'"g1":{"groupName":"g1"}}}'
    )
    groups = parse_subscription_groups(body)
    assert list(groups) == ["g1", "g2"]
    assert groups["g1"] == SubscriptionGroupConfig("g1")
    assert groups["g2"].consume_message_orderly and groups["g2"].retry_max_times == 3
    assert dict(groups["g2"].attributes) == {"+a": "1"}
    with pytest.raises(RemoteProtocolError, match="groupName"):
        parse_subscription_groups(b'{"subscriptionGroupTable":{"x":{}}}')
    assert is_system_group("TOOLS_CONSUMER") and is_system_group("CID_RMQ_SYS_TRANS")
    assert not is_system_group("orders")


def test_each_new_request_carries_the_servers_code_and_fields() -> None:
    assert wire(rq.get_all_topic_list_from_namesrv()).code == 206
    stats = wire(rq.get_topic_stats_info("T"))
    assert (stats.code, stats.ext_fields) == (202, {"topic": "T"})
    assert wire(rq.get_all_subscription_group_config()).code == 201
    update = wire(rq.update_broker_config(b"k=v\n"))
    assert (update.code, update.body) == (25, b"k=v\n")
    assert wire(rq.get_broker_runtime_info()).code == 28
    direct = wire(rq.consume_message_directly(consumer_group="g", client_id="c", msg_id="M"))
    assert direct.code == 309
    assert direct.ext_fields == {"consumerGroup": "g", "clientId": "c", "msgId": "M"}
    assert (
        wire(
            rq.consume_message_directly(consumer_group="g", client_id="c", msg_id="M", topic="T")
        ).ext_fields["topic"]
        == "T"
    )


# ------------------------------------------------------------------- flows


def test_list_topics_asks_a_name_server_and_keeps_a_namespace_own_topics() -> None:
    body = b'{"topicList":["orders","ns1%pay","%RETRY%ns1%g","ns2%x","TBW102"]}'

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        assert addr == NAMESRV and command.code == RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER
        return reply(0, body=body)

    assert Sim(answer).run(make_admin().list_topics_flow()) == [
        "%RETRY%ns1%g",
        "TBW102",
        "ns1%pay",
        "ns2%x",
        "orders",
    ]
    assert Sim(answer).run(make_admin("ns1").list_topics_flow()) == ["%RETRY%g", "pay"]


def group_table(*names: str, orderly: bool = False) -> bytes:
    return json.dumps(
        {
            "subscriptionGroupTable": {
                n: {"groupName": n, "consumeMessageOrderly": orderly} for n in names
            }
        }
    ).encode()


def test_list_groups_merges_the_masters_tables_and_hides_the_brokers_own_groups() -> None:
    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_BROKER_CLUSTER_INFO:
            return reply(0, body=cluster_body())
        assert command.code == RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG
        if addr == A:
            return reply(0, body=group_table("orders", "TOOLS_CONSUMER", orderly=True))
        return reply(0, body=group_table("orders", "billing", "CID_RMQ_SYS_TRANS"))

    sim = Sim(answer)
    groups = sim.run(make_admin().list_groups_flow())
    assert [g.group_name for g in groups] == ["billing", "orders"]
    assert groups[1].consume_message_orderly  # broker-a's, the first master, kept
    assert {a for a, c in sim.calls if c.code == 201} == {A, B}
    everything = Sim(answer).run(make_admin().list_groups_flow(include_system=True))
    assert [g.group_name for g in everything] == [
        "CID_RMQ_SYS_TRANS",
        "TOOLS_CONSUMER",
        "billing",
        "orders",
    ]
    with pytest.raises(RouteNotFoundError, match="'Other'"):
        Sim(answer).run(make_admin().list_groups_flow(cluster="Other"))


def test_topic_offsets_read_each_brokers_stats_and_ask_queue_by_queue_where_unserved() -> None:
    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body("T", queues=2))
        if command.code == RequestCode.GET_TOPIC_STATS_INFO:
            if addr == B:
                return reply(ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
            table = ",".join(
                f'{mq_key("T", "broker-a", q)}:{{"lastUpdateTimestamp":{1000 + q},'
                f'"maxOffset":{10 + q},"minOffset":{q}}}'
                for q in range(2)
            )
            return reply(0, body=f'{{"offsetTable":{{{table}}},"topicPutTps":0.5}}'.encode())
        qid = int(command.ext_fields["queueId"])
        if command.code == RequestCode.GET_MIN_OFFSET:
            return reply(0, {"offset": str(100 + qid)})
        assert command.code == RequestCode.GET_MAX_OFFSET
        return reply(0, {"offset": str(200 + qid)})

    sim = Sim(answer)
    got = sim.run(make_admin().topic_offsets_flow("T"))
    assert [
        (o.message_queue.broker_name, o.message_queue.queue_id, o.min_offset, o.max_offset)
        for o in got
    ] == [
        ("broker-a", 0, 0, 10),
        ("broker-a", 1, 1, 11),
        ("broker-b", 0, 100, 200),
        ("broker-b", 1, 101, 201),
    ]
    assert [o.last_update_timestamp for o in got] == [1000, 1001, 0, 0]
    assert all(o.message_queue.topic == "T" for o in got)
    # broker-a answered for its queues at once: no queue-by-queue request went there.
    assert not [c for a, c in sim.calls if a == A and c.code in (30, 31)]


def test_broker_config_and_runtime_stats_go_to_an_address_or_a_named_master() -> None:
    sent: list[tuple[str, RemotingCommand]] = []

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_BROKER_CLUSTER_INFO:
            return reply(0, body=cluster_body())
        sent.append((addr, command))
        if command.code == RequestCode.GET_BROKER_CONFIG:
            return reply(0, body=b"brokerName=broker-b\nflushDiskType=ASYNC_FLUSH\n")
        if command.code == RequestCode.UPDATE_BROKER_CONFIG:
            if b"brokerIP1" in command.body:
                return reply(ResponseCode.NO_PERMISSION, {}, b"")
            return reply(0)
        assert command.code == RequestCode.GET_BROKER_RUNTIME_INFO
        return reply(0, body=b'{"table":{"brokerVersionDesc":"V5_5_0"}}')

    admin = make_admin()
    assert Sim(answer).run(admin.broker_config_flow("broker-b")) == {
        "brokerName": "broker-b",
        "flushDiskType": "ASYNC_FLUSH",
    }
    assert sent[-1][0] == B
    Sim(answer).run(admin.update_broker_config_flow(A, {"flushDiskType": "SYNC_FLUSH"}))
    assert sent[-1][0] == A and sent[-1][1].body == b"flushDiskType=SYNC_FLUSH\n"
    with pytest.raises(NoPermissionError):
        Sim(answer).run(admin.update_broker_config_flow(A, {"brokerIP1": "1.2.3.4"}))
    assert Sim(answer).run(admin.broker_runtime_stats_flow("broker-a")) == {
        "brokerVersionDesc": "V5_5_0"
    }
    with pytest.raises(RouteNotFoundError, match=r"'broker-z' \(brokers: broker-a, broker-b\)"):
        Sim(answer).run(admin.broker_config_flow("broker-z"))


def test_cluster_list_gives_each_member_its_figures_or_its_error() -> None:
    slave = "127.0.0.1:10912"

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_BROKER_CLUSTER_INFO:
            return reply(0, body=cluster_body(**{"broker-a": {0: A, 1: slave}}))
        assert command.code == RequestCode.GET_BROKER_RUNTIME_INFO
        if addr == B:
            return reply(ResponseCode.SYSTEM_ERROR, {}, b"")
        table = {
            "brokerVersionDesc": "V5_5_0",
            "putTps": "12.5 11.0 ",
            "getTransferredTps": "3.25 1.0 ",
            "msgPutTotalTodayMorning": "100",
            "msgPutTotalTodayNow": "150",
            "msgGetTotalTodayMorning": "7",
            "msgGetTotalTodayNow": "9",
        }
        return reply(0, body=json.dumps({"table": table}).encode())

    rows = Sim(answer).run(make_admin().cluster_list_flow())
    assert [(r.broker_name, r.broker_id, r.addr) for r in rows] == [
        ("broker-a", 0, A),
        ("broker-a", 1, slave),
        ("broker-b", 0, B),
    ]
    master = rows[0]
    assert (master.version, master.in_tps, master.out_tps) == ("V5_5_0", 12.5, 3.25)
    assert (master.in_today, master.out_today, master.error) == (50, 2, None)
    assert rows[2].stats == {} and rows[2].error and rows[2].in_tps == 0.0
    with pytest.raises(RouteNotFoundError, match="no cluster 'X'"):
        Sim(answer).run(make_admin().cluster_list_flow("X"))
    assert BrokerStatus("c", "b", 0, "a", {"putTps": "junk"}).in_tps == 0.0


def stored(topic: str, queue_id: int, offset: int, body: bytes = b"payload") -> MessageExt:
    return MessageExt(
        topic,
        body,
        queue_id=queue_id,
        queue_offset=offset,
        commit_log_offset=4096,
        store_host=A,
        born_host="127.0.0.1:5000",
        properties={"UNIQ_KEY": "UNIQ1", "KEYS": "k"},
    )


def test_message_at_pulls_one_message_with_the_tools_group_and_commits_nothing() -> None:
    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body("ns%T"))
        assert command.code == RequestCode.PULL_MESSAGE and addr == B
        offset = int(command.ext_fields["queueOffset"])
        fields = {"minOffset": "3", "maxOffset": "9", "nextBeginOffset": str(offset + 1)}
        fields["suggestWhichBrokerId"] = "0"
        if offset >= 9:
            return reply(ResponseCode.PULL_OFFSET_MOVED, fields)
        return reply(0, fields, encode_stored_message(stored("ns%T", 2, offset)))

    sim = Sim(answer)
    msg = sim.run(make_admin("ns").message_at_flow(MessageQueue("T", "broker-b", 2), 5))
    assert (msg.topic, msg.queue_offset, msg.body, msg.broker_name) == (
        "T",
        5,
        b"payload",
        "broker-b",
    )
    pull = sim.calls[-1][1]
    assert pull.ext_fields["consumerGroup"] == "TOOLS_CONSUMER"
    assert pull.ext_fields["maxMsgNums"] == "1" and pull.ext_fields["topic"] == "ns%T"
    assert int(pull.ext_fields["sysFlag"]) == PullSysFlag.SUBSCRIPTION  # no COMMIT_OFFSET
    with pytest.raises(QueryNotFoundError, match=r"offset 9 .* holds offsets 3 to 9"):
        Sim(answer).run(make_admin("ns").message_at_flow(MessageQueue("T", "broker-b", 2), 9))
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        Sim(answer).run(make_admin().message_at_flow(MessageQueue("T", "broker-b", 2), -1))


def test_clone_offsets_writes_the_sources_committed_offsets_for_the_destination() -> None:
    updates: list[tuple[str, dict[str, str]]] = []
    stats = {
        mq_key("T", "broker-a", 0): 7,
        mq_key("T", "broker-b", 1): 4,
        mq_key("T", "broker-b", 2): -1,  # never committed: left alone
    }

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body(command.ext_fields["topic"]))
        if command.code == RequestCode.GET_CONSUME_STATS:
            assert command.ext_fields == {"consumerGroup": "src", "topic": "T"}
            mine = {
                k: v
                for k, v in stats.items()
                if ('"' + ("broker-a" if addr == A else "broker-b")) in k
            }
            table = ",".join(
                f'{k}:{{"brokerOffset":10,"consumerOffset":{v},"lastTimestamp":0,"pullOffset":0}}'
                for k, v in mine.items()
            )
            return reply(0, body=f'{{"consumeTps":0.0,"offsetTable":{{{table}}}}}'.encode())
        assert command.code == RequestCode.UPDATE_CONSUMER_OFFSET
        updates.append((addr, dict(command.ext_fields)))
        return reply(0)

    done = Sim(answer).run(make_admin().clone_offsets_flow("src", "dst", "T"))
    assert done == {MessageQueue("T", "broker-a", 0): 7, MessageQueue("T", "broker-b", 1): 4}
    assert sorted((a, f["consumerGroup"], f["queueId"], f["commitOffset"]) for a, f in updates) == [
        (A, "dst", "0", "7"),
        (B, "dst", "1", "4"),
    ]


def test_explicit_offsets_are_written_only_for_a_group_with_no_consumer_online() -> None:
    online: list[str] = []
    updates: list[dict[str, str]] = []

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body("T", queues=2))
        if command.code == RequestCode.GET_CONSUMER_LIST_BY_GROUP:
            if not online:
                return reply(ResponseCode.SYSTEM_ERROR, {}, b"")
            return reply(0, body=json.dumps({"consumerIdList": online}).encode())
        assert command.code == RequestCode.UPDATE_CONSUMER_OFFSET
        updates.append(dict(command.ext_fields))
        return reply(0)

    admin = make_admin()
    target = {MessageQueue("T", "broker-b", 1): 5, MessageQueue("T", "broker-a", 0): 0}
    assert Sim(answer).run(admin.set_offsets_flow("g", "T", target)) == target
    assert [(u["queueId"], u["commitOffset"], u["bname"]) for u in updates] == [
        ("0", "0", "broker-a"),
        ("1", "5", "broker-b"),
    ]
    with pytest.raises(InvalidArgumentError, match="no queue"):
        Sim(answer).run(admin.set_offsets_flow("g", "T", {MessageQueue("T", "broker-a", 7): 1}))
    with pytest.raises(InvalidArgumentError, match="not a queue of topic"):
        Sim(answer).run(admin.set_offsets_flow("g", "T", {MessageQueue("U", "broker-a", 0): 1}))
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        Sim(answer).run(admin.set_offsets_flow("g", "T", {MessageQueue("T", "broker-a", 0): -2}))
    missing = Sim(
        lambda addr, command: (
            reply(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST)
            if command.code == RequestCode.UPDATE_CONSUMER_OFFSET
            else answer(addr, command)
        )
    )
    with pytest.raises(SubscriptionGroupNotExistError, match="'g' does not exist on broker-a"):
        missing.run(admin.set_offsets_flow("g", "T", target))
    online.append("10.0.0.9@1")
    with pytest.raises(InvalidArgumentError, match=r"consumers online \(10.0.0.9@1\)"):
        Sim(answer).run(admin.set_offsets_flow("g", "T", target))


def test_an_offset_a_broker_ignores_after_its_own_reset_is_set_by_a_reset_of_its_queue() -> None:
    """A 5.x broker answers SUCCESS to UPDATE_CONSUMER_OFFSET but ignores it while a
    server-side reset of the queue is pending (no consumer pulled since): the
    offset then goes as that queue's own reset (INVOKE_BROKER_TO_RESET_OFFSET with
    its queue id and offset), which replaces the pending one."""
    sent: list[tuple[int, dict[str, str]]] = []

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body("T", queues=2))
        if command.code == RequestCode.GET_CONSUMER_LIST_BY_GROUP:
            return reply(ResponseCode.SYSTEM_ERROR, {}, b"")
        sent.append((command.code, dict(command.ext_fields)))
        if command.code == RequestCode.UPDATE_CONSUMER_OFFSET:
            answered = reply(0)
            if command.ext_fields["queueId"] == "1":
                answered.remark = "Offset has been previously reset"
            return answered
        return reply(0)

    target = {MessageQueue("T", "broker-a", 0): 3, MessageQueue("T", "broker-a", 1): 1}
    assert Sim(answer).run(make_admin().set_offsets_flow("g", "T", target)) == target
    assert [(code, f["queueId"]) for code, f in sent] == [
        (RequestCode.UPDATE_CONSUMER_OFFSET, "0"),
        (RequestCode.UPDATE_CONSUMER_OFFSET, "1"),
        (RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, "1"),
    ]
    reset = sent[-1][1]
    assert (reset["topic"], reset["group"], reset["offset"], reset["timestamp"]) == (
        "T",
        "g",
        "1",
        "-1",
    )


def test_reset_to_latest_of_an_offline_group_writes_each_queues_end() -> None:
    updates: list[dict[str, str]] = []

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            return reply(0, body=route_body("T", queues=1))
        if command.code == RequestCode.INVOKE_BROKER_TO_RESET_OFFSET:
            assert command.ext_fields["timestamp"] == "-1"
            return reply(ResponseCode.CONSUMER_NOT_ONLINE)
        if command.code == RequestCode.GET_MAX_OFFSET:
            return reply(0, {"offset": "42" if addr == A else "17"})
        assert command.code == RequestCode.UPDATE_CONSUMER_OFFSET, command.code
        updates.append(dict(command.ext_fields))
        return reply(0)

    moved = Sim(answer).run(make_admin().reset_offsets_by_time_flow("g", "T", -1))
    assert moved == {MessageQueue("T", "broker-a", 0): 42, MessageQueue("T", "broker-b", 0): 17}
    assert sorted(u["commitOffset"] for u in updates) == ["17", "42"]


def test_consume_message_directly_goes_to_the_storing_broker_with_the_offset_id() -> None:
    offset_id = encode_offset_msg_id("127.0.0.1", 10911, 4096)

    def answer(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.VIEW_MESSAGE_BY_ID:
            return reply(0, body=encode_stored_message(stored("ns%T", 0, 3)))
        assert command.code == RequestCode.CONSUME_MESSAGE_DIRECTLY and addr == A
        assert command.ext_fields == {
            "consumerGroup": "ns%g",
            "clientId": "10.0.0.2@7",
            "msgId": offset_id,
            "topic": "ns%T",
        }
        return reply(0, body=rq.consume_message_directly_result("CR_SUCCESS", spent_time_millis=4))

    sim = Sim(answer)
    result = sim.run(make_admin("ns").consume_message_directly_flow("g", "10.0.0.2@7", offset_id))
    assert result.consume_result == "CR_SUCCESS" and result.spent_time_millis == 4

    def silent(addr: str, command: RemotingCommand) -> RemotingCommand:
        if command.code == RequestCode.VIEW_MESSAGE_BY_ID:
            return reply(0, body=encode_stored_message(stored("T", 0, 3)))
        return reply(ResponseCode.SYSTEM_ERROR, {}, b"")

    with pytest.raises(BrokerError, match="CONSUME_MESSAGE_DIRECTLY"):
        Sim(silent).run(make_admin().consume_message_directly_flow("g", "c", offset_id))


@pytest.mark.parametrize("mode", ["pull", "pop"])
@pytest.mark.parametrize(("answer", "verdict"), [(None, "CR_SUCCESS"), (False, "CR_LATER")])
def test_a_push_consumer_runs_its_handler_on_a_message_handed_to_it_directly(
    mode: str, answer: object, verdict: str
) -> None:
    seen: list[list[MessageExt]] = []

    def handler(messages: list[MessageExt]) -> object:
        seen.append(messages)
        return answer

    built = build_push_consumer(
        NAMESRV,
        {"group": "g", "consume_mode": mode},
        HOST,
        handler,
        lambda config, given: given,
    )
    built.core.subscribe("T", "*")
    built.core.start()
    raw = encode_stored_message(stored("T", 1, 8, b"again"))
    request = RemotingCommand(
        RequestCode.CONSUME_MESSAGE_DIRECTLY,
        {"consumerGroup": "g", "clientId": "c", "msgId": "M", "brokerName": "broker-a"},
        raw,
    )
    sim = Sim(lambda addr, command: pytest.fail(f"unexpected request {command.code}"))
    got = sim.run(built.session.handle_server_request(A, request))
    assert isinstance(got, Reply) and got.code == ResponseCode.SUCCESS
    result = parse_consume_message_directly_result(got.body)
    assert result.consume_result == verdict and not result.order
    assert [(m.body, m.queue_offset, m.broker_name) for m in seen[0]] == [(b"again", 8, "broker-a")]
    assert decode_message(raw)[0].body == b"again"
    assert not sim.oneways  # nothing acked, sent back or committed

    broken = RemotingCommand(RequestCode.CONSUME_MESSAGE_DIRECTLY, {"consumerGroup": "g"}, b"xx")
    refused = Sim(sim.on_call).run(built.session.handle_server_request(A, broken))
    assert isinstance(refused, Reply) and refused.code == ResponseCode.SYSTEM_ERROR
    assert "unreadable" in (refused.remark or "") and len(seen) == 1
