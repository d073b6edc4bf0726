"""Lenient JSON, routes, JSON bodies and ACL signing: exact forms, round trips, hostile input."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rocketmq_proto.strategies import broker_datas, topic_routes
from rocketmq_proto.wire.acl import (
    UNIQUE_MSG_QUERY_FLAG,
    Credentials,
    sign_request,
    signing_content,
)
from rocketmq_proto.wire.bodies import (
    ConsumerData,
    ConsumeStatus,
    HeartbeatData,
    ProcessQueueInfo,
    SubscriptionData,
    build_subscription,
    encode_consumer_running_info,
    encode_consumer_status,
    encode_heartbeat,
    encode_lock_batch,
    encode_reset_offset_body,
    encode_subscription_group_config,
    encode_unlock_batch,
    parse_consume_stats,
    parse_consumer_id_list,
    parse_heartbeat,
    parse_lock_batch_response,
    parse_reset_offset_body,
    parse_topic_stats,
    running_info_properties,
)
from rocketmq_proto.wire.errors import ConfigError, InvalidArgumentError, RemoteProtocolError
from rocketmq_proto.wire.jsonlenient import MAX_DEPTH, FrozenObject, _parse_fallback, dumps, loads
from rocketmq_proto.wire.route import (
    LOGICAL_QUEUE_MOCK_BROKER_NAME_NOT_EXIST,
    MAX_QUEUE_NUMS,
    BrokerData,
    ClusterInfo,
    MessageQueue,
    QueueData,
    TopicRouteData,
    encode_cluster_info,
    encode_topic_route,
    is_order_topic,
    java_order_key,
    parse_cluster_info,
    parse_topic_route,
    publish_queues,
    static_topic_endpoints,
    subscribe_queues,
)

# ================================================================ lenient JSON


def test_standard_json_parses_like_json_loads() -> None:
    text = '{"a": [1, 2.5, "x\\u00e9", true, false, null], "b": {"c": -3e2}}'
    assert loads(text.encode()) == json.loads(text)


def test_unquoted_integer_keys_become_ints() -> None:
    doc = loads(b'{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921",-2:"x"}}')
    assert doc == {"brokerAddrs": {0: "127.0.0.1:10911", 1: "127.0.0.1:10921", -2: "x"}}
    assert all(isinstance(k, int) for k in doc["brokerAddrs"])


def test_object_keys_become_hashable_frozen_objects() -> None:
    body = (
        b'{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"t"}:5,'
        b'{"brokerName":"b","queueId":1,"topic":"t"}:7}}'
    )
    table = loads(body)["offsetTable"]
    keys = list(table)
    assert all(isinstance(k, FrozenObject) for k in keys)
    assert keys[0] == {"brokerName": "b", "queueId": 0, "topic": "t"}
    assert keys[0]["queueId"] == 0 and len(keys[0]) == 3
    assert table[FrozenObject({"topic": "t", "queueId": 1, "brokerName": "b"})] == 7
    assert MessageQueue.from_json_dict(keys[1]) == MessageQueue("t", "b", 1)


def test_nested_object_key_with_array_is_frozen_recursively() -> None:
    doc = loads('{{"a":[1,{"b":2}]}:"v"}')
    (key,) = doc
    assert key["a"] == (1, FrozenObject({"b": 2}))
    assert hash(key) == hash(FrozenObject({"a": [1, {"b": 2}]}))
    assert doc[FrozenObject({"a": (1, {"b": 2})})] == "v"


def test_whitespace_everywhere_in_non_standard_json() -> None:
    doc = loads(' { 0 : "a" ,\n\t{ "k" : 1 } : [ ] , "s" : { 1 : 2 } } ')
    assert doc == {0: "a", FrozenObject({"k": 1}): [], "s": {1: 2}}


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (b'{0:"a",}', 7),  # trailing comma: a value was expected at '}'
        (b'{0 "a"}', 3),
        (b'{0:"a" 1:"b"}', 7),
        (b"{0:", 3),
        (b"{0:[1,2}", 7),
        (b'{0:"a"} x', 8),
        (b"{0:tru}", 3),
        (b"{0:'a'}", 3),
    ],
)
def test_malformed_json_names_the_offset(body: bytes, offset: int) -> None:
    with pytest.raises(RemoteProtocolError, match=f"offset {offset}"):
        loads(body, what="thing")


def test_error_names_the_body() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^cluster info: "):
        loads(b"{0:", what="cluster info")


def test_empty_and_non_utf8_bodies_are_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="unexpected end"):
        loads(b"")
    with pytest.raises(RemoteProtocolError, match="not UTF-8 at byte offset 2"):
        loads(b'{"\xff":1}')


def test_depth_is_bounded_in_the_fallback() -> None:
    ok = "{0:" * MAX_DEPTH + "1" + "}" * MAX_DEPTH
    assert loads(ok) is not None
    too_deep = "{0:" * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)
    with pytest.raises(RemoteProtocolError, match="nested deeper"):
        loads(too_deep)
    with pytest.raises(RemoteProtocolError):
        loads("[" * 100_000)


def test_integer_with_too_many_digits_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        loads("1" * 5000)
    with pytest.raises(RemoteProtocolError):
        loads("{0:" + "1" * 5000 + "}")


def test_dumps_writes_fastjson_keys() -> None:
    mq = MessageQueue("t", "b", 3)
    text = dumps({0: "a", "s": [1, None, True, float("nan")], mq: {"x": 1.5}})
    assert text == (
        '{0:"a","s":[1,null,true,null],{"brokerName":"b","queueId":3,"topic":"t"}:{"x":1.5}}'
    )
    assert loads(text)[FrozenObject(mq.to_json_dict())] == {"x": 1.5}


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fallback_parser_agrees_with_json_loads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1, ensure_ascii=False)):
        assert _parse_fallback(text) == json.loads(text)
        assert loads(text.encode()) == json.loads(text)


lenient_keys = st.text(max_size=8) | st.integers(-(2**63), 2**63)
lenient_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(lenient_keys, children, max_size=4)
    ),
    max_leaves=25,
)


@given(lenient_values)
def test_dumps_then_loads_round_trips_integer_keyed_maps(value: Any) -> None:
    assert loads(dumps(value).encode()) == value


@given(st.text())
def test_any_text_gives_a_value_or_a_protocol_error(text: str) -> None:
    with contextlib.suppress(RemoteProtocolError):
        loads(text)


@given(st.binary())
def test_any_bytes_give_a_value_or_a_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        loads(data)


@given(lenient_values, st.data())
def test_corrupted_lenient_json_gives_a_value_or_a_protocol_error(value: Any, data: Any) -> None:
    text = dumps(value)
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["{", "}", "[", "]", ":", ",", '"', "0", "{0:", "-", ""]))
    with contextlib.suppress(RemoteProtocolError):
        _parse_fallback(text[:cut] + junk + text[cut + 1 :])


# ===================================================================== routes

# As a 5.x name server writes it for a client of version >= 4.9.4 (BrowserCompatible:
# map keys quoted, fields sorted by name).
STANDARD_ROUTE = (
    b'{"brokerDatas":['
    b'{"brokerAddrs":{"0":"127.0.0.1:10911","1":"127.0.0.1:10921"},"brokerName":"broker-b",'
    b'"cluster":"DefaultCluster","enableActingMaster":false},'
    b'{"brokerAddrs":{"0":"127.0.0.1:20911"},"brokerName":"broker-a","cluster":"DefaultCluster",'
    b'"enableActingMaster":false,"zoneName":"zone1"},'
    b'{"brokerAddrs":{"1":"127.0.0.1:30921"},"brokerName":"broker-c","cluster":"DefaultCluster",'
    b'"enableActingMaster":false},'
    b'{"brokerAddrs":{"0":"127.0.0.1:40911"},"brokerName":"broker-d","cluster":"DefaultCluster",'
    b'"enableActingMaster":false}],'
    b'"filterServerTable":{},'
    b'"queueDatas":['
    b'{"brokerName":"broker-b","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":2},'
    b'{"brokerName":"broker-a","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":3},'
    b'{"brokerName":"broker-c","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1},'
    b'{"brokerName":"broker-d","perm":4,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2}]}'
)
# The same route as older name servers write it: broker ids as bare integer keys.
LEGACY_ROUTE = STANDARD_ROUTE.replace(b'"0":', b"0:").replace(b'"1":', b"1:")


def test_standard_route_parses() -> None:
    route = parse_topic_route(STANDARD_ROUTE)
    assert [b.broker_name for b in route.broker_datas] == [
        "broker-b",
        "broker-a",
        "broker-c",
        "broker-d",
    ]
    b = route.broker_datas[0]
    assert b.cluster == "DefaultCluster"
    assert b.broker_addrs == {0: "127.0.0.1:10911", 1: "127.0.0.1:10921"}
    assert b.master_addr == "127.0.0.1:10911"
    assert route.broker_datas[1].zone_name == "zone1"
    assert route.queue_datas[1] == QueueData("broker-a", 2, 3, 6, 0)
    assert route.order_topic_conf is None
    assert route.filter_server_table == {}
    assert not is_order_topic(route)


def test_legacy_route_with_bare_integer_keys_parses_the_same() -> None:
    assert LEGACY_ROUTE != STANDARD_ROUTE
    with pytest.raises(json.JSONDecodeError):
        json.loads(LEGACY_ROUTE)
    assert parse_topic_route(LEGACY_ROUTE) == parse_topic_route(STANDARD_ROUTE)


def test_publish_queues_follow_java_order_and_rules() -> None:
    route = parse_topic_route(STANDARD_ROUTE)
    # Sorted by broker name; writeQueueNums each; broker-c has no master and
    # broker-d is read-only, so neither takes messages.
    assert publish_queues("T", route) == [
        MessageQueue("T", "broker-a", 0),
        MessageQueue("T", "broker-a", 1),
        MessageQueue("T", "broker-a", 2),
        MessageQueue("T", "broker-b", 0),
        MessageQueue("T", "broker-b", 1),
    ]


def test_subscribe_queues_use_read_perm_and_read_queue_nums() -> None:
    route = parse_topic_route(STANDARD_ROUTE)
    queues = subscribe_queues("T", route)
    assert queues == sorted(queues)
    assert [(q.broker_name, q.queue_id) for q in queues] == [
        ("broker-a", 0),
        ("broker-a", 1),
        ("broker-b", 0),
        ("broker-b", 1),
        ("broker-b", 2),
        ("broker-b", 3),
        ("broker-c", 0),
        ("broker-d", 0),
        ("broker-d", 1),
    ]
    write_only = TopicRouteData(queue_datas=(QueueData("x", 4, 4, 2),))
    assert subscribe_queues("T", write_only) == []


def test_order_topic_conf_decides_publish_queues() -> None:
    doc = json.loads(STANDARD_ROUTE)
    doc["orderTopicConf"] = "broker-d:2;broker-a:1;"
    route = parse_topic_route(json.dumps(doc).encode())
    assert is_order_topic(route)
    # The listed order, no perm or master check (as Java does).
    assert publish_queues("T", route) == [
        MessageQueue("T", "broker-d", 0),
        MessageQueue("T", "broker-d", 1),
        MessageQueue("T", "broker-a", 0),
    ]


@pytest.mark.parametrize("conf", ["broker-a", "broker-a:x", "broker-a: 1", "a:1;b"])
def test_malformed_order_topic_conf_is_a_protocol_error(conf: str) -> None:
    route = TopicRouteData(order_topic_conf=conf)
    with pytest.raises(RemoteProtocolError, match="orderTopicConf"):
        publish_queues("T", route)


def test_old_servers_topic_syn_flag_is_read() -> None:
    body = (
        b'{"brokerDatas":[],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":1,'
        b'"topicSynFlag":3,"writeQueueNums":1}]}'
    )
    assert parse_topic_route(body).queue_datas[0].topic_sys_flag == 3


def test_browser_compatible_long_as_string_is_read() -> None:
    body = (
        b'{"brokerDatas":[{"brokerName":"b","cluster":"c",'
        b'"brokerAddrs":{"9007199254740993":"h:1"}}]}'
    )
    assert parse_topic_route(body).broker_datas[0].broker_addrs == {9007199254740993: "h:1"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"brokerDatas":{},"queueDatas":[]}', "brokerDatas"),
        (b'{"brokerDatas":[],"queueDatas":"x"}', "queueDatas"),
        (b'{"brokerDatas":[1]}', r"brokerDatas\[0\]"),
        (b'{"brokerDatas":[{"brokerName":5}]}', "brokerName"),
        (b'{"brokerDatas":[{"brokerName":"b","brokerAddrs":[]}]}', "brokerAddrs"),
        (b'{"brokerDatas":[{"brokerName":"b","brokerAddrs":{"x":"a"}}]}', "brokerAddrs key"),
        (b'{"brokerDatas":[{"brokerName":"b","brokerAddrs":{0:1}}]}', r"brokerAddrs\[0\]"),
        (b'{"queueDatas":[{"brokerName":"b","readQueueNums":"4"}]}', None),
        (b'{"queueDatas":[{"brokerName":"b","readQueueNums":true}]}', "readQueueNums"),
        (b'{"queueDatas":[{"brokerName":"b","perm":1.5}]}', "perm"),
        (b'{"queueDatas":[{"brokerName":"b","perm":4294967296}]}', "perm"),
        (b'{"orderTopicConf":3}', "orderTopicConf"),
        (b'{"filterServerTable":{"a":"b"}}', "filterServerTable"),
        (b"[]", "topic route"),
    ],
)
def test_route_type_errors_name_the_field(body: bytes, field: str | None) -> None:
    if field is None:  # a decimal string is accepted for a number (BrowserCompatible)
        assert parse_topic_route(body).queue_datas[0].read_queue_nums == 4
        return
    with pytest.raises(RemoteProtocolError, match=field):
        parse_topic_route(body)


def test_absurd_queue_counts_are_refused() -> None:
    body = json.dumps(
        {"queueDatas": [{"brokerName": "b", "perm": 6, "readQueueNums": MAX_QUEUE_NUMS + 1}]}
    ).encode()
    with pytest.raises(RemoteProtocolError, match="readQueueNums"):
        parse_topic_route(body)
    many = [{"brokerName": f"b{i}", "perm": 6, "readQueueNums": MAX_QUEUE_NUMS} for i in range(5)]
    with pytest.raises(RemoteProtocolError, match="queues"):
        parse_topic_route(json.dumps({"queueDatas": many}).encode())


# As GET_BROKER_CLUSTER_INFO answers on 4.9 / 5.x: always the non-standard form.
CLUSTER_INFO = (
    b'{"brokerAddrTable":{'
    b'"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"broker-a",'
    b'"cluster":"DefaultCluster","enableActingMaster":false},'
    b'"broker-b":{"brokerAddrs":{0:"127.0.0.1:20911"},"brokerName":"broker-b",'
    b'"cluster":"DefaultCluster","enableActingMaster":false},'
    b'"broker-x":{"brokerAddrs":{0:"127.0.0.1:30911"},"brokerName":"broker-x",'
    b'"cluster":"OtherCluster"}},'
    b'"clusterAddrTable":{"DefaultCluster":["broker-b","broker-a"],"OtherCluster":["broker-x"]}}'
)


def test_cluster_info_parses() -> None:
    info = parse_cluster_info(CLUSTER_INFO)
    assert set(info.broker_addr_table) == {"broker-a", "broker-b", "broker-x"}
    assert info.broker_addr_table["broker-a"].broker_addrs == {
        0: "127.0.0.1:10911",
        1: "127.0.0.1:10921",
    }
    assert info.cluster_addr_table == {
        "DefaultCluster": frozenset({"broker-a", "broker-b"}),
        "OtherCluster": frozenset({"broker-x"}),
    }
    assert [b.broker_name for b in info.cluster_brokers("DefaultCluster")] == [
        "broker-a",
        "broker-b",
    ]
    assert info.cluster_addrs("DefaultCluster") == [
        "127.0.0.1:10911",
        "127.0.0.1:10921",
        "127.0.0.1:20911",
    ]
    assert info.cluster_addrs("Nope") == []
    assert parse_cluster_info(encode_cluster_info(info)) == info


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"brokerAddrTable":[]}', "brokerAddrTable"),
        (b'{"clusterAddrTable":{"c":"broker-a"}}', "clusterAddrTable"),
        (b'{"clusterAddrTable":{"c":[1]}}', "clusterAddrTable"),
        (b'{"brokerAddrTable":{"a":{"brokerName":"a","brokerAddrs":{0.5:"x"}}}}', "brokerAddrs"),
    ],
)
def test_cluster_info_type_errors_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=field):
        parse_cluster_info(body)


def test_broker_select_addr() -> None:
    assert BrokerData("c", "b", {1: "s1", 0: "m"}).select_addr() == "m"
    no_master = BrokerData("c", "b", {2: "s2", 1: "s1"})
    assert no_master.master_addr is None
    assert no_master.select_addr() == "s1"
    assert BrokerData("c", "b", {}).select_addr() is None


def test_message_queue_json_and_order() -> None:
    mq = MessageQueue("t", "b", 2)
    assert mq.to_json_dict() == {"brokerName": "b", "queueId": 2, "topic": "t"}
    assert MessageQueue.from_json_dict(mq.to_json_dict()) == mq
    assert hash(mq) == hash(MessageQueue("t", "b", 2))
    queues = [MessageQueue("t", "b", 10), MessageQueue("s", "z", 0), MessageQueue("t", "a", 5)]
    assert sorted(queues) == [queues[1], queues[2], queues[0]]
    with pytest.raises(RemoteProtocolError, match="queueId"):
        MessageQueue.from_json_dict({"topic": "t", "brokerName": "b", "queueId": "x"})


def test_message_queue_order_is_javas_utf16_order() -> None:
    # U+10000 is a surrogate pair (0xD800...) in Java, so it sorts before U+FFFF there.
    astral, bmp = MessageQueue("t", "\U00010000", 0), MessageQueue("t", "\uffff", 0)
    assert "\U00010000" > "\uffff"  # Python's code-point order says the opposite
    assert sorted([bmp, astral]) == [astral, bmp]
    assert astral < bmp and bmp > astral and astral <= astral


def test_static_topic_logical_queues() -> None:
    doc = {
        "brokerDatas": [],
        "queueDatas": [],
        "topicQueueMappingByBroker": {
            "broker-a": {
                "bname": "broker-a",
                "currIdMap": {"0": 0, "1": 1},
                "dirty": False,
                "epoch": 100,
                "scope": "__global__",
                "topic": "S",
                "totalQueues": 4,
            },
            "broker-b": {
                "bname": "broker-b",
                "currIdMap": {"1": 0, "2": 1},
                "dirty": False,
                "epoch": 200,
                "scope": "__global__",
                "topic": "S",
                "totalQueues": 4,
            },
        },
    }
    route = parse_topic_route(json.dumps(doc).encode())
    endpoints = static_topic_endpoints("S", route)
    mock = "__syslo__global__"
    assert endpoints == {
        MessageQueue("S", mock, 0): "broker-a",
        MessageQueue("S", mock, 1): "broker-b",  # the newer epoch wins
        MessageQueue("S", mock, 2): "broker-b",
        MessageQueue("S", mock, 3): LOGICAL_QUEUE_MOCK_BROKER_NAME_NOT_EXIST,
    }
    assert publish_queues("S", route) == [MessageQueue("S", mock, i) for i in range(4)]
    assert subscribe_queues("S", route) == [MessageQueue("S", mock, i) for i in range(4)]
    assert parse_topic_route(encode_topic_route(route)) == route


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=6)


@given(topic_routes(), st.booleans())
def test_route_round_trips_in_both_json_forms(route: TopicRouteData, standard: bool) -> None:
    body = encode_topic_route(route, standard_json=standard)
    assert parse_topic_route(body) == route
    if standard:
        assert json.loads(body) == json.loads(encode_topic_route(parse_topic_route(body)))


@given(topic_routes(order_topic_conf=False, queue_mappings=False))
def test_publish_queues_invariants(route: TopicRouteData) -> None:
    queues = publish_queues("T", route)
    # Java looks a queue's broker up by name and takes the first match.
    first: dict[str, BrokerData] = {}
    for b in route.broker_datas:
        first.setdefault(b.broker_name, b)
    masters = {name for name, b in first.items() if 0 in b.broker_addrs}
    assert all(mq.broker_name in masters for mq in queues)
    in_order = [mq.broker_name for mq in queues]
    assert in_order == sorted(in_order, key=java_order_key)
    expected = sum(
        q.write_queue_nums for q in route.queue_datas if q.writable and q.broker_name in masters
    )
    assert len(queues) == expected


@given(
    st.dictionaries(names, broker_datas(), max_size=3),
    st.dictionaries(names, st.frozensets(names, max_size=3), max_size=3),
)
def test_cluster_info_round_trips(
    brokers: dict[str, BrokerData], clusters: dict[str, frozenset[str]]
) -> None:
    info = ClusterInfo(brokers, clusters)
    assert parse_cluster_info(encode_cluster_info(info)) == info


route_keys = st.sampled_from(
    [
        "queueDatas",
        "brokerDatas",
        "brokerAddrs",
        "brokerName",
        "cluster",
        "readQueueNums",
        "writeQueueNums",
        "perm",
        "orderTopicConf",
        "filterServerTable",
        "topicQueueMappingByBroker",
        "currIdMap",
        "totalQueues",
        "scope",
        "epoch",
        "brokerAddrTable",
        "clusterAddrTable",
    ]
)
route_like = st.recursive(
    json_scalars | st.integers(-5, 5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(route_keys | st.integers(0, 3).map(str), children, max_size=4)
    ),
    max_leaves=20,
)


@given(route_like)
def test_route_and_cluster_parsers_on_shaped_garbage(doc: Any) -> None:
    for standard in (json.dumps(doc), dumps(doc)):
        for parser in (parse_topic_route, parse_cluster_info):
            with contextlib.suppress(RemoteProtocolError):
                parser(standard.encode())


@given(st.binary())
def test_route_and_cluster_parsers_on_any_bytes(data: bytes) -> None:
    for parser in (parse_topic_route, parse_cluster_info):
        with contextlib.suppress(RemoteProtocolError):
            parser(data)


# ===================================================================== bodies


@pytest.mark.parametrize("expression", ["*", "", None])
def test_subscribe_all(expression: str | None) -> None:
    sub = build_subscription("T", expression, sub_version=7)
    assert sub == SubscriptionData("T", "*", frozenset(), frozenset(), 7, "TAG", False)
    assert sub.matches_tag(None) and sub.matches_tag("anything")


def test_tag_expression_splits_trims_and_hashes_like_java() -> None:
    sub = build_subscription("T", " TagA ||TagB|| ||TagA||\U0001f600", sub_version=1)
    assert sub.sub_string == " TagA ||TagB|| ||TagA||\U0001f600"  # kept as written
    assert sub.tags_set == {"TagA", "TagB", "\U0001f600"}
    # Java "TagA".hashCode(): ((84*31 + 97)*31 + 103)*31 + 65; the emoji is the
    # surrogate pair 0xD83D 0xDE00: 0xD83D*31 + 0xDE00.
    assert sub.code_set == {2598919, 2598920, 0xD83D * 31 + 0xDE00}
    assert sub.matches_tag("TagB") and not sub.matches_tag("TagC") and not sub.matches_tag(None)


def test_java_trim_only_strips_ascii_control_and_space() -> None:
    sub = build_subscription("T", "\ta\x00||\u3000b")
    assert sub.tags_set == {"a", "\u3000b"}


def test_sql92_subscription() -> None:
    sub = build_subscription("T", "a > 5 AND b = 'x'", "SQL92", 3)
    assert sub.expression_type == "SQL92" and sub.sub_string == "a > 5 AND b = 'x'"
    assert sub.tags_set == frozenset() and sub.code_set == frozenset()
    with pytest.raises(InvalidArgumentError):
        build_subscription("T", "", "SQL92")
    with pytest.raises(InvalidArgumentError):
        build_subscription("T", "*", "REGEX")


HEARTBEAT_JSON = (
    '{"clientID":"127.0.0.1@4242","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",'
    '"consumeType":"CONSUME_PASSIVELY","groupName":"CG","messageModel":"CLUSTERING",'
    '"subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919,2598920],'
    '"expressionType":"TAG","subString":"TagA || TagB","subVersion":1700000000000,'
    '"tagsSet":["TagA","TagB"],"topic":"T"},{"classFilterMode":false,"codeSet":[],'
    '"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],'
    '"topic":"%RETRY%CG"}],"unitMode":false}],"heartbeatFingerprint":0,'
    '"producerDataSet":[{"groupName":"PG"},{"groupName":"CLIENT_INNER_PRODUCER"}],'
    '"withoutSub":false}'
)


def _heartbeat() -> HeartbeatData:
    subs = (
        build_subscription("T", "TagA || TagB", sub_version=1700000000000),
        build_subscription("%RETRY%CG", "*", sub_version=1700000000000),
    )
    consumer = ConsumerData(
        "CG", "CONSUME_PASSIVELY", "CLUSTERING", "CONSUME_FROM_LAST_OFFSET", subs
    )
    return HeartbeatData("127.0.0.1@4242", ("PG", "CLIENT_INNER_PRODUCER"), (consumer,))


def test_heartbeat_exact_json() -> None:
    assert encode_heartbeat(_heartbeat()) == HEARTBEAT_JSON.encode()


def test_heartbeat_round_trip_and_lists_accepted() -> None:
    hb = _heartbeat()
    assert parse_heartbeat(encode_heartbeat(hb)) == hb
    as_lists = HeartbeatData("c", ["P"], [])  # type: ignore[arg-type]
    assert as_lists.producer_groups == ("P",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("consume_type", "PUSH"), ("message_model", "clustering"), ("consume_from_where", "LAST")],
)
def test_consumer_data_checks_java_enum_names(field: str, value: str) -> None:
    args: dict[str, Any] = {
        "group_name": "G",
        "consume_type": "CONSUME_ACTIVELY",
        "message_model": "BROADCASTING",
        "consume_from_where": "CONSUME_FROM_TIMESTAMP",
    }
    ConsumerData(**args)
    args[field] = value
    with pytest.raises(InvalidArgumentError):
        ConsumerData(**args)


def test_lock_and_unlock_batch_bodies() -> None:
    mqs = [MessageQueue("T", "b", 1), MessageQueue("T", "b", 0)]
    expected = (
        b'{"clientId":"127.0.0.1@1","consumerGroup":"CG","mqSet":['
        b'{"brokerName":"b","queueId":0,"topic":"T"},{"brokerName":"b","queueId":1,"topic":"T"}],'
        b'"onlyThisBroker":true}'
    )
    assert encode_lock_batch("CG", "127.0.0.1@1", mqs, only_this_broker=True) == expected
    assert json.loads(encode_unlock_batch("CG", "c", mqs))["onlyThisBroker"] is False


def test_lock_batch_response() -> None:
    body = (
        b'{"lockOKMQSet":[{"brokerName":"b","queueId":0,"topic":"T"},'
        b'{"brokerName":"b","queueId":3,"topic":"T"}]}'
    )
    assert parse_lock_batch_response(body) == {MessageQueue("T", "b", 0), MessageQueue("T", "b", 3)}
    assert parse_lock_batch_response(b"{}") == set()
    with pytest.raises(RemoteProtocolError, match=r"lockOKMQSet\[0\]"):
        parse_lock_batch_response(b'{"lockOKMQSet":[{"topic":"T"}]}')


def test_consumer_id_list() -> None:
    body = b'{"consumerIdList":["10.0.0.1@123","10.0.0.2@456"]}'
    assert parse_consumer_id_list(body) == ["10.0.0.1@123", "10.0.0.2@456"]
    with pytest.raises(RemoteProtocolError, match="consumerIdList"):
        parse_consumer_id_list(b'{"consumerIdList":[1]}')


RESET_FASTJSON = (
    b'{"offsetTable":{{"brokerName":"RaftNode00","queueId":0,"topic":"topicB"}:11110,'
    b'{"brokerName":"RaftNode00","queueId":1,"topic":"topicB"}:0}}'
)
RESET_GSON = (
    b'{"offsetTable":[[{"topic":"topicB","brokerName":"RaftNode00","queueId":0},11110],'
    b'[{"topic":"topicB","brokerName":"RaftNode00","queueId":1},0]]}'
)
RESET_FOR_C = (
    b'{"offsetTable":[{"brokerName":"RaftNode00","offset":11110,"queueId":0,"topic":"topicB"},'
    b'{"brokerName":"RaftNode00","offset":0,"queueId":1,"topic":"topicB"}]}'
)


@pytest.mark.parametrize("body", [RESET_FASTJSON, RESET_GSON, RESET_FOR_C])
def test_reset_offset_body_in_every_server_form(body: bytes) -> None:
    assert parse_reset_offset_body(body) == {
        MessageQueue("topicB", "RaftNode00", 0): 11110,
        MessageQueue("topicB", "RaftNode00", 1): 0,
    }


def test_reset_offset_body_edge_cases() -> None:
    assert parse_reset_offset_body(b'{"offsetTable":{}}') == {}
    # fastjson's WriteNonStringKeyAsString: the key object serialized into a string.
    key = json.dumps(json.dumps({"brokerName": "b", "queueId": 2, "topic": "t"}))
    quoted_key = ('{"offsetTable":{' + key + ":9}}").encode()
    assert parse_reset_offset_body(quoted_key) == {MessageQueue("t", "b", 2): 9}
    offsets = {MessageQueue("t", "b", i): i * 10 for i in range(3)}
    assert parse_reset_offset_body(encode_reset_offset_body(offsets)) == offsets
    for bad in (b'{"offsetTable":{"x":1}}', b'{"offsetTable":[[1]]}', b'{"offsetTable":3}'):
        with pytest.raises(RemoteProtocolError, match="offsetTable"):
            parse_reset_offset_body(bad)


def test_consumer_running_info_body() -> None:
    props = running_info_properties(
        consume_type="CONSUME_PASSIVELY",
        consume_orderly=True,
        consumer_start_timestamp=1700000000000,
        namesrv_addrs=["127.0.0.1:9876", "127.0.0.2:9876"],
        client_version="V5_3_3",
    )
    mq = MessageQueue("T", "b", 0)
    body = encode_consumer_running_info(
        props,
        [build_subscription("T", "*", sub_version=5), build_subscription("%RETRY%G", "*")],
        {mq: ProcessQueueInfo(commit_offset=42, locked=True, dropped=True)},
        {"T": ConsumeStatus(pull_tps=1.5, consume_failed_msgs=2)},
    )
    doc = loads(body)
    assert list(doc) == ["mqTable", "properties", "statusTable", "subscriptionSet"]
    assert doc["properties"]["PROP_NAMESERVER_ADDR"] == "127.0.0.1:9876;127.0.0.2:9876;"
    assert doc["properties"]["PROP_CONSUME_TYPE"] == "CONSUME_PASSIVELY"
    assert doc["properties"]["PROP_CONSUMEORDERLY"] == "true"
    assert doc["properties"]["PROP_CONSUMER_START_TIMESTAMP"] == "1700000000000"
    ((key, info),) = doc["mqTable"].items()
    assert MessageQueue.from_json_dict(key) == mq
    assert info["commitOffset"] == 42 and info["locked"] is True and info["droped"] is True
    assert doc["statusTable"]["T"]["pullTPS"] == 1.5
    assert doc["statusTable"]["T"]["consumeFailedMsgs"] == 2
    assert [s["topic"] for s in doc["subscriptionSet"]] == ["%RETRY%G", "T"]
    assert b'"mqTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{' in body
    with_jstack = loads(encode_consumer_running_info(props, [], jstack="stack"))
    assert with_jstack["jstack"] == "stack" and with_jstack["mqTable"] == {}


def test_consumer_status_body() -> None:
    body = encode_consumer_status({MessageQueue("T", "b", 1): 5, MessageQueue("T", "a", 0): 7})
    assert body == (
        b'{"messageQueueTable":{{"brokerName":"a","queueId":0,"topic":"T"}:7,'
        b'{"brokerName":"b","queueId":1,"topic":"T"}:5}}'
    )


def test_subscription_group_config_body() -> None:
    doc = json.loads(encode_subscription_group_config("CG", retry_max_times=3))
    assert doc == {
        "brokerId": 0,
        "consumeBroadcastEnable": True,
        "consumeEnable": True,
        "consumeFromMinEnable": True,
        "consumeMessageOrderly": False,
        "consumeTimeoutMinute": 15,
        "groupName": "CG",
        "groupSysFlag": 0,
        "notifyConsumerIdsChangedEnable": True,
        "retryMaxTimes": 3,
        "retryQueueNums": 1,
        "whichBrokerWhenConsumeSlowly": 1,
    }
    with_attrs = json.loads(
        encode_subscription_group_config("CG", attributes={"+consume.lite": "true"})
    )
    assert with_attrs["attributes"] == {"+consume.lite": "true"}
    with pytest.raises(InvalidArgumentError):
        encode_subscription_group_config("CG", no_such_setting=1)
    with pytest.raises(InvalidArgumentError):
        encode_subscription_group_config("")


def test_consume_stats_body() -> None:
    body = (
        b'{"consumeTps":2.5,"offsetTable":{'
        b'{"brokerName":"b","queueId":1,"topic":"T"}:{"brokerOffset":10,"consumerOffset":4,'
        b'"lastTimestamp":1700000000000,"pullOffset":6},'
        b'{"brokerName":"b","queueId":0,"topic":"T"}:{"brokerOffset":3,"consumerOffset":3,'
        b'"lastTimestamp":0,"pullOffset":3}}}'
    )
    stats = parse_consume_stats(body)
    assert stats.consume_tps == 2.5
    assert list(stats.offset_table) == [MessageQueue("T", "b", 0), MessageQueue("T", "b", 1)]
    assert stats.offset_table[MessageQueue("T", "b", 1)].pull_offset == 6
    assert stats.total_lag == 6
    with pytest.raises(RemoteProtocolError, match="brokerOffset"):
        parse_consume_stats(
            b'{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"brokerOffset":"x"}}}'
        )


def test_topic_stats_body() -> None:
    body = (
        b'{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"lastUpdateTimestamp":9,'
        b'"maxOffset":100,"minOffset":2}},"topicPutTps":0.0}'
    )
    stats = parse_topic_stats(body)
    offset = stats.offset_table[MessageQueue("T", "b", 0)]
    assert (offset.min_offset, offset.max_offset, offset.last_update_timestamp) == (2, 100, 9)


BODY_PARSERS = [
    parse_heartbeat,
    parse_lock_batch_response,
    parse_consumer_id_list,
    parse_reset_offset_body,
    parse_consume_stats,
    parse_topic_stats,
]

body_keys = st.sampled_from(
    [
        "offsetTable",
        "lockOKMQSet",
        "consumerIdList",
        "topic",
        "brokerName",
        "queueId",
        "clientID",
        "consumerDataSet",
        "producerDataSet",
        "groupName",
        "subscriptionDataSet",
        "brokerOffset",
        "offset",
        "consumeType",
        "tagsSet",
        "codeSet",
    ]
)
body_like = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(body_keys | st.integers(0, 2), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary() | body_like.map(lambda d: dumps(d).encode()))
def test_body_parsers_give_results_or_protocol_errors(data: bytes) -> None:
    for parser in BODY_PARSERS:
        with contextlib.suppress(RemoteProtocolError):
            parser(data)


@given(
    st.builds(
        build_subscription,
        topic=names,
        expression=st.text(max_size=20),
        sub_version=st.integers(0, 2**63 - 1),
    )
)
def test_subscription_round_trips(sub: SubscriptionData) -> None:
    assert SubscriptionData.from_json_dict(json.loads(json.dumps(sub.to_json_dict()))) == sub


# ======================================================================== ACL


def test_signature_known_vector() -> None:
    creds = Credentials("AK", "SK", "TOK")
    ext = {"topic": "TopicA", "producerGroup": "PG", "queueId": "1"}
    added = sign_request(ext, b"hello", creds)
    # By hand: keys sorted as Java's TreeMap does (upper case first): AccessKey,
    # SecurityToken, producerGroup, queueId, topic; their values concatenated,
    # then the body.
    spec = b"AK" + b"TOK" + b"PG" + b"1" + b"TopicA" + b"hello"
    expected = base64.b64encode(hmac.new(b"SK", spec, hashlib.sha1).digest()).decode()
    assert added == {"AccessKey": "AK", "SecurityToken": "TOK", "Signature": expected}
    # The same digest computed independently with `openssl dgst -sha1 -hmac SK`.
    assert expected == "8bfFMZAKvDwz52XrtssG5tBIqgI="
    assert ext == {"topic": "TopicA", "producerGroup": "PG", "queueId": "1"}  # not mutated


def test_signature_without_token_with_unicode_and_empty_body() -> None:
    creds = Credentials("ak", "s\u00e9cret")
    added = sign_request({"b": "\u00e9", "B": "x", "a": "1"}, b"", creds)
    assert "SecurityToken" not in added
    spec = "ak" + "x" + "1" + "\u00e9"  # AccessKey, B, a, b
    expected = hmac.new("s\u00e9cret".encode(), spec.encode(), hashlib.sha1).digest()
    assert base64.b64decode(added["Signature"]) == expected


def test_signature_ignores_a_previous_signature_and_replaces_access_key() -> None:
    creds = Credentials("AK", "SK")
    plain = sign_request({"x": "1"}, b"body", creds)
    resigned = sign_request({"x": "1", "Signature": "old", "AccessKey": "stale"}, b"body", creds)
    assert resigned == plain


def test_unsigned_fields_for_older_brokers() -> None:
    ext = {"topic": "T", UNIQUE_MSG_QUERY_FLAG: "true"}
    assert signing_content(ext, b"") == b"trueT"  # "_" sorts after upper case, before lower
    assert signing_content(ext, b"", unsigned_fields=[UNIQUE_MSG_QUERY_FLAG]) == b"T"
    creds = Credentials("AK", "SK")
    assert sign_request(ext, b"", creds) != sign_request(
        ext, b"", creds, unsigned_fields=[UNIQUE_MSG_QUERY_FLAG]
    )


def test_credentials_never_show_secrets() -> None:
    creds = Credentials("my-access", "my-secret-key", "my-session-token")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "my-access" in text
        assert "my-secret-key" not in text and "my-session-token" not in text
    assert "None" in repr(Credentials("a", "b"))


@pytest.mark.parametrize(("ak", "sk"), [("", "s"), ("a", ""), (None, "s")])
def test_credentials_reject_empty_keys(ak: Any, sk: Any) -> None:
    with pytest.raises(ConfigError):
        Credentials(ak, sk)


@given(
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=6),
    st.binary(max_size=20),
)
def test_signature_covers_sorted_values_then_body(ext: dict[str, str], body: bytes) -> None:
    creds = Credentials("AK", "SK")
    added = sign_request(ext, body, creds)
    fields = {**ext, "AccessKey": "AK"}
    fields.pop("Signature", None)
    keys = sorted(fields, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    content = "".join(fields[k] for k in keys).encode("utf-8", "replace") + body
    digest = hmac.new(b"SK", content, hashlib.sha1).digest()
    assert base64.b64decode(added["Signature"]) == digest


def test_float_nan_is_written_as_null() -> None:
    assert math.isnan(float("nan"))
    assert dumps([float("inf"), float("-inf")]) == "[null,null]"


def test_topic_attributes_are_written_with_their_sign_as_mqadmin_does() -> None:
    from rocketmq_proto.wire.requests import update_and_create_topic

    command = update_and_create_topic(
        "T",
        read_queue_nums=1,
        write_queue_nums=1,
        perm=6,
        attributes={"message.type": "FIFO", "+queue.type": "BatchCQ", "-old.key": ""},
    )
    assert command.ext_fields["attributes"] == "+message.type=FIFO,+queue.type=BatchCQ,-old.key="


def test_a_consumer_connection_answer_is_read() -> None:
    from rocketmq_proto.wire.bodies import parse_consumer_connection

    body = (
        b'{"connectionSet":[{"clientAddr":"127.0.0.1:5","clientId":"b@1","language":"JAVA",'
        b'"version":479},{"clientId":"a@2","language":"PYTHON"}],"consumeFromWhere":'
        b'"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":'
        b'"CLUSTERING","subscriptionTable":{"T":{"subString":"a || b","topic":"T"}}}'
    )
    parsed = parse_consumer_connection(body)
    assert [(c.client_id, c.language, c.version) for c in parsed.connections] == [
        ("a@2", "PYTHON", 0),
        ("b@1", "JAVA", 479),
    ]
    assert parsed.subscriptions == {"T": "a || b"}
    assert (parsed.consume_type, parsed.message_model, parsed.consume_from_where) == (
        "CONSUME_PASSIVELY",
        "CLUSTERING",
        "CONSUME_FROM_LAST_OFFSET",
    )
    with pytest.raises(RemoteProtocolError):
        parse_consumer_connection(b'{"connectionSet":[{"language":"JAVA"}]}')


def test_consumer_running_info_reads_back_what_a_client_writes() -> None:
    from rocketmq_proto.wire.bodies import (
        ProcessQueueInfo,
        build_subscription,
        encode_consumer_running_info,
        parse_consumer_running_info,
    )

    queue = MessageQueue("T", "broker-a", 3)
    info = ProcessQueueInfo(commit_offset=7, cached_msg_count=2, locked=True, dropped=True)
    body = encode_consumer_running_info(
        {"PROP_CONSUME_TYPE": "CONSUME_PASSIVELY"},
        [build_subscription("T", "a || b", "TAG")],
        {queue: info},
        jstack="thread dump",
    )
    parsed = parse_consumer_running_info(body)
    assert parsed.properties == {"PROP_CONSUME_TYPE": "CONSUME_PASSIVELY"}
    assert parsed.subscriptions == {"T": "a || b"}
    assert parsed.queues == {queue: info}
    assert parsed.jstack == "thread dump"
