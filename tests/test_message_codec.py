"""Message codecs: exact byte layouts, round trips, hostile input, and the Message API."""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rocketmq_proto.message.codec import (
    body_crc32,
    decode_batch,
    decode_message,
    decode_messages,
    encode_batch,
    encode_stored_message,
    unwrap_inner_batch,
)
from rocketmq_proto.message.compression import CompressionType, compress_body, decompress_body
from rocketmq_proto.message.ids import (
    UniqueIdGenerator,
    decode_offset_msg_id,
    encode_offset_msg_id,
    parse_unique_id,
)
from rocketmq_proto.message.model import Message, MessageExt, validate_topic
from rocketmq_proto.message.properties import (
    RESERVED_PROPERTY_KEYS,
    decode_properties,
    encode_properties,
)
from rocketmq_proto.strategies import message_exts, messages
from rocketmq_proto.wire.errors import (
    CompressionUnavailableError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidPropertyError,
    InvalidTopicError,
    RemoteProtocolError,
)
from rocketmq_proto.wire.hashing import java_string_hash

HAVE_LZ4 = importlib.util.find_spec("lz4") is not None
HAVE_ZSTD = importlib.util.find_spec("zstandard") is not None

# ------------------------------------------------------------ exact layouts


def test_properties_exact_layout() -> None:
    assert encode_properties({"TAGS": "A", "KEYS": "k1 k2"}) == b"TAGS\x01A\x02KEYS\x01k1 k2\x02"
    assert encode_properties({}) == b""
    assert encode_properties({"标": "签"}) == b"\xe6\xa0\x87\x01\xe7\xad\xbe\x02"


def test_batch_of_two_exact_layout() -> None:
    first = Message("T", b"ab", tags="A")
    second = Message("T", b"", flag=7)
    expected = (
        # member 1: TOTALSIZE 44, MAGIC 0, BODYCRC 0, FLAG 0, BODYLEN 2
        bytes.fromhex("0000002C 00000000 00000000 00000000 00000002")
        + b"ab"
        + bytes.fromhex("0014")  # PROPLEN 20
        + b"TAGS\x01A\x02UNIQ_KEY\x01ID1\x02"
        # member 2: TOTALSIZE 35, FLAG 7, BODYLEN 0
        + bytes.fromhex("00000023 00000000 00000000 00000007 00000000")
        + bytes.fromhex("000D")  # PROPLEN 13
        + b"UNIQ_KEY\x01ID2\x02"
    )
    assert encode_batch([first, second], ["ID1", "ID2"]) == expected
    assert decode_batch(expected) == [
        (0, b"ab", {"TAGS": "A", "UNIQ_KEY": "ID1"}),
        (7, b"", {"UNIQ_KEY": "ID2"}),
    ]
    # Encoding is pure: the messages did not gain a UNIQ_KEY.
    assert "UNIQ_KEY" not in first.properties


V1_IPV4_STORED = bytes.fromhex(
    "00000066"  # TOTALSIZE 102
    "DAA320A7"  # MAGIC V1
    "00000063"  # BODYCRC 99
    "00000001"  # QUEUEID 1
    "00000002"  # FLAG 2
    "0000000000000003"  # QUEUEOFFSET 3
    "00000000000004D2"  # PHYSICALOFFSET 1234
    "00000000"  # SYSFLAG 0
    "00000000000003E8"  # BORNTIMESTAMP 1000
    "0A000001 00001388"  # BORNHOST 10.0.0.1:5000
    "00000000000007D0"  # STORETIMESTAMP 2000
    "7F000001 00002A9F"  # STOREHOST 127.0.0.1:10911
    "00000004"  # RECONSUMETIMES 4
    "0000000000000000"  # PREPARED_TX_OFFSET
    "00000002 6869"  # BODY "hi"
    "02 5431"  # TOPIC "T1" (1-byte length)
    "0007 54414753014102"  # PROPERTIES "TAGS\x01A\x02"
)


def test_stored_message_v1_ipv4_exact_layout() -> None:
    msg, next_offset = decode_message(V1_IPV4_STORED)
    assert next_offset == len(V1_IPV4_STORED) == 102
    assert msg.topic == "T1"
    assert msg.body == b"hi"
    assert msg.properties == {"TAGS": "A"}
    assert msg.tags == "A"
    assert (msg.queue_id, msg.flag, msg.queue_offset, msg.commit_log_offset) == (1, 2, 3, 1234)
    assert (msg.sys_flag, msg.born_timestamp, msg.store_timestamp) == (0, 1000, 2000)
    assert msg.born_host == "10.0.0.1:5000"
    assert msg.store_host == "127.0.0.1:10911"
    assert (msg.reconsume_times, msg.prepared_transaction_offset, msg.body_crc) == (4, 0, 99)
    assert msg.store_size == 102
    assert msg.broker_name == ""
    assert msg.offset_msg_id == "7F00000100002A9F00000000000004D2"
    assert msg.msg_id == msg.offset_msg_id  # no UNIQ_KEY
    rebuilt = MessageExt(
        "T1",
        b"hi",
        flag=2,
        properties={"TAGS": "A"},
        queue_id=1,
        queue_offset=3,
        commit_log_offset=1234,
        born_timestamp=1000,
        born_host="10.0.0.1:5000",
        store_timestamp=2000,
        store_host="127.0.0.1:10911",
        reconsume_times=4,
        body_crc=99,
    )
    assert encode_stored_message(rebuilt) == V1_IPV4_STORED
    assert rebuilt == msg


V2_IPV6_STORED = bytes.fromhex(
    "00000076"  # TOTALSIZE 118
    "DAA320AB"  # MAGIC V2
    "00000000 00000000 00000000"  # BODYCRC, QUEUEID, FLAG
    "0000000000000000"  # QUEUEOFFSET
    "0000000000000001"  # PHYSICALOFFSET 1
    "00000030"  # SYSFLAG: BORNHOST_V6 | STOREHOST_V6
    "0000000000000000"  # BORNTIMESTAMP
    "00000000000000000000000000000001 00000001"  # BORNHOST [::1]:1
    "0000000000000000"  # STORETIMESTAMP
    "FE800000000000000000000000000001 00002A9F"  # STOREHOST [fe80::1]:10911
    "00000000"  # RECONSUMETIMES
    "0000000000000000"  # PREPARED_TX_OFFSET
    "00000000"  # BODY (empty)
    "0002 5432"  # TOPIC "T2" (int16 length)
    "0000"  # PROPERTIES (none)
)


def test_stored_message_v2_ipv6_exact_layout() -> None:
    msg, next_offset = decode_message(V2_IPV6_STORED)
    assert next_offset == 118
    assert msg.topic == "T2"
    assert msg.body == b""
    assert msg.properties == {}
    assert msg.sys_flag == 0x30
    assert msg.commit_log_offset == 1
    assert msg.born_host == "[::1]:1"
    assert msg.store_host == "[fe80::1]:10911"
    assert msg.offset_msg_id == "FE80000000000000000000000000000100002A9F0000000000000001"
    rebuilt = MessageExt(
        "T2", commit_log_offset=1, born_host="[::1]:1", store_host="[fe80::1]:10911"
    )
    assert rebuilt.sys_flag == 0x30  # the V6 bits follow the hosts
    assert encode_stored_message(rebuilt, version=2) == V2_IPV6_STORED


def test_offset_msg_id_exact_layout() -> None:
    assert encode_offset_msg_id("127.0.0.1", 10911, 1234) == "7F00000100002A9F00000000000004D2"
    assert decode_offset_msg_id("7F00000100002A9F00000000000004D2") == ("127.0.0.1", 10911, 1234)
    v6 = encode_offset_msg_id("[fe80::1]", 10911, 1)
    assert v6 == "FE80000000000000000000000000000100002A9F0000000000000001"
    assert decode_offset_msg_id(v6) == ("fe80::1", 10911, 1)


@pytest.mark.parametrize(
    "bad", ["", "7F00000100002A9F00000000000004D", "7F00000100002A9F00000000000004DZ", 42, " " * 32]
)
def test_offset_msg_id_invalid(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        decode_offset_msg_id(bad)  # type: ignore[arg-type]


def test_offset_msg_id_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        encode_offset_msg_id("not-an-ip", 1, 1)
    with pytest.raises(InvalidArgumentError):
        encode_offset_msg_id("127.0.0.1", 70000, 1)
    with pytest.raises(InvalidArgumentError):
        encode_offset_msg_id("127.0.0.1", 1, -1)


# ------------------------------------------------------------ unique ids

NOV_14_2023 = 1_700_000_000_000  # 2023-11-14T22:13:20Z; the month began at 1_698_796_800_000


def test_unique_id_exact_layout() -> None:
    gen = UniqueIdGenerator(bytes([10, 0, 0, 1]), 1234, 0x12345678)
    # ip 0A000001, pid 04D2, per-process 12345678, 1_203_200_000 ms into the month, counter
    assert gen.prefix == "0A00000104D212345678"
    assert gen.next_id(NOV_14_2023) == "0A00000104D21234567847B760000000"
    assert gen.next_id(NOV_14_2023) == "0A00000104D21234567847B760000001"
    # Next month: the span restarts from 0 at 2023-12-01T00:00:00Z.
    assert gen.next_id(1_701_388_800_000).endswith("000000000002")


def test_unique_id_pid_and_counter_wrap_to_16_bits() -> None:
    gen = UniqueIdGenerator(bytes(4), 0x12345, -1)
    assert gen.prefix == "000000002345FFFFFFFF"
    ids = [gen.next_id(NOV_14_2023) for _ in range(0x10001)]
    assert ids[0].endswith("0000")
    assert ids[0xFFFF].endswith("FFFF")
    assert ids[0x10000].endswith("0000")


@pytest.mark.parametrize(
    ("first", "count", "now"),
    [
        (0, 32, NOV_14_2023),
        (0xFFF0, 32, NOV_14_2023),  # the counter wraps within the batch
        (5, 1, 1_701_388_800_000),  # a new month: the span restarts
        (7, 0, NOV_14_2023),
    ],
)
def test_next_ids_are_what_as_many_next_id_calls_give(first: int, count: int, now: int) -> None:
    one_by_one = UniqueIdGenerator(bytes([10, 0, 0, 1]), 1234, 0x12345678)
    at_once = UniqueIdGenerator(bytes([10, 0, 0, 1]), 1234, 0x12345678)
    for gen in (one_by_one, at_once):
        for _ in range(first):
            gen.next_id(NOV_14_2023)
    assert at_once.next_ids(now, count) == [one_by_one.next_id(now) for _ in range(count)]
    assert at_once.next_id(now) == one_by_one.next_id(now)  # the counter went on alike


def test_unique_id_span_wraps_like_javas_int_cast() -> None:
    gen = UniqueIdGenerator(bytes([127, 0, 0, 1]), 1, 2)
    month_start = 1_696_118_400_000  # 2023-10-01T00:00:00Z: October has 31 days
    thirty_days = 30 * 86_400_000  # 2_592_000_000 > 2**31 - 1
    uid = gen.next_id(month_start + thirty_days)
    assert uid[20:28] == "9A7EC800"
    assert parse_unique_id(uid, month_start + thirty_days).timestamp_ms == month_start + thirty_days


def test_unique_id_ipv6_is_40_bytes_of_hex() -> None:
    ip = ipaddress.IPv6Address("2001:db8::7").packed
    uid = UniqueIdGenerator(ip, 7, 9).next_id(NOV_14_2023)
    assert len(uid) == 56
    assert parse_unique_id(uid, NOV_14_2023) == ("2001:db8::7", 7, NOV_14_2023)


def test_parse_unique_id_takes_previous_month_when_span_is_ahead() -> None:
    gen = UniqueIdGenerator(bytes([1, 2, 3, 4]), 5, 6)
    late_november = 1_701_300_000_000  # 2023-11-29T23:20:00Z
    uid = gen.next_id(late_november)
    early_december = 1_701_400_000_000  # 2023-12-01T03:06:40Z, span ahead of it
    assert parse_unique_id(uid, early_december) == ("1.2.3.4", 5, late_november)


@pytest.mark.parametrize("bad", ["", "XYZ", "0" * 31, "G" * 32, "0" * 40])
def test_parse_unique_id_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_unique_id(bad, NOV_14_2023)


def test_unique_id_generator_rejects_bad_ip_and_time() -> None:
    with pytest.raises(InvalidArgumentError):
        UniqueIdGenerator(b"\x01\x02\x03", 1, 1)
    with pytest.raises(InvalidArgumentError):
        UniqueIdGenerator(bytes(4), 1, 1).next_id(-1)


@given(
    ip=st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)),
    pid=st.integers(0, 0xFFFF),
    salt=st.integers(0, 0xFFFFFFFF),
    now=st.integers(0, 4_000_000_000_000),
    later=st.integers(0, 86_400_000),
)
def test_unique_id_round_trip(ip: bytes, pid: int, salt: int, now: int, later: int) -> None:
    gen = UniqueIdGenerator(ip, pid, salt)
    uid = gen.next_id(now)
    assert len(uid) == (32 if len(ip) == 4 else 56)
    assert uid == uid.upper()
    assert uid.startswith(gen.prefix)
    host = str(ipaddress.ip_address(ip))
    assert parse_unique_id(uid, now) == (host, pid, now)
    start_of_next_month = _next_month_start(now)
    if now + later < start_of_next_month:
        assert parse_unique_id(uid, now + later).timestamp_ms == now
    assert gen.next_id(now) != uid


def _next_month_start(ms: int) -> int:
    day = datetime.fromtimestamp(ms / 1000, tz=UTC)
    nxt = (
        datetime(day.year + 1, 1, 1, tzinfo=UTC)
        if day.month == 12
        else datetime(day.year, day.month + 1, 1, tzinfo=UTC)
    )
    return int(nxt.timestamp()) * 1000


# ------------------------------------------------------------ Java String.hashCode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 97),
        # T=84, a=97, g=103, A=65: ((84*31 + 97)*31 + 103)*31 + 65
        ("TagA", 2598919),
        # U+6807, U+7B7E: 26631*31 + 31614
        ("标签", 857175),
        # U+1F600 is the surrogate pair D83D DE00: 55357*31 + 56832
        ("\U0001f600", 1772899),
        # Overflows 32 bits: Java's well-known value for this string
        ("hello world", 1794106052),
        ("polygenelubricants", -2147483648),
    ],
)
def test_java_string_hash(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


@given(st.text())
def test_java_string_hash_matches_utf16_definition(text: str) -> None:
    raw = text.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(raw), 2):
        h = (h * 31 + int.from_bytes(raw[i : i + 2], "big")) % 2**32
    assert java_string_hash(text) == (h - 2**32 if h >= 2**31 else h)
    assert -(2**31) <= java_string_hash(text) < 2**31


# ------------------------------------------------------------ properties

prop_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x01\x02"),
    max_size=20,
)
prop_keys = prop_text.filter(bool)
prop_maps = st.dictionaries(prop_keys, prop_text, max_size=8)


@given(prop_maps)
def test_properties_round_trip(props: dict[str, str]) -> None:
    data = encode_properties(props)
    assert data.count(b"\x01") == data.count(b"\x02") == len(props)
    # Empty values are written (as Java writes them) and dropped (as Java reads them).
    readable = {k: v for k, v in props.items() if v}
    assert decode_properties(data) == readable
    assert decode_properties(memoryview(data)) == readable
    # Java's writer ends each pair with \x02; a missing final one is tolerated.
    if data:
        assert decode_properties(data[:-1]) == readable


def test_decode_properties_tolerance_and_errors() -> None:
    assert decode_properties(b"") == {}
    assert decode_properties(b"a\x01b") == {"a": "b"}
    assert decode_properties(b"a\x01b\x02\x02c\x01d\x02") == {"a": "b", "c": "d"}
    assert decode_properties(b"a\x01b\x01c\x02") == {"a": "b\x01c"}  # as Java splits
    assert decode_properties(b"a\x011\x02a\x012\x02") == {"a": "2"}  # later wins
    assert decode_properties(b"k\x01\x02a\x01b\x02") == {"a": "b"}  # Java drops empty values
    assert decode_properties(b"\x01v\x02") == {}  # and empty keys
    with pytest.raises(RemoteProtocolError, match="separator"):
        decode_properties(b"a\x01b\x02oops\x02")
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode_properties(b"a\x01\xff\x02")


@given(st.binary(max_size=200))
def test_decode_properties_arbitrary_bytes(data: bytes) -> None:
    try:
        result = decode_properties(data)
    except RemoteProtocolError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"bad\x01key": "v"}, "'bad\\x01key'"),
        ({"key": "bad\x02value"}, "key"),
        ({"": "v"}, "''"),
        ({"ok": "1", "k2": 3}, "k2"),
        ({"k": "\ud800"}, "k"),
    ],
)
def test_encode_properties_rejects_bad_pairs_naming_the_key(
    props: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidPropertyError) as info:
        encode_properties(props)  # type: ignore[arg-type]
    assert named in str(info.value)


def test_encode_properties_size_limit() -> None:
    fits = {"k": "v" * (32767 - 3)}
    assert len(encode_properties(fits)) == 32767
    with pytest.raises(InvalidPropertyError, match="32767"):
        encode_properties({"k": "v" * (32767 - 2)})


# ------------------------------------------------------------ the Message class


def test_message_properties_hold_system_and_user_properties() -> None:
    deliver = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=8)))
    msg = Message(
        "Orders",
        b"payload",
        tags="TagA",
        keys=["k1", "k2"],
        properties={"color": "red"},
        delay_level=3,
        flag=5,
    )
    assert msg.properties == {"color": "red", "TAGS": "TagA", "KEYS": "k1 k2", "DELAY": "3"}
    assert (msg.tags, msg.keys, msg.delay_level, msg.flag) == ("TagA", ["k1", "k2"], 3, 5)
    assert msg.user_properties == {"color": "red"}
    msg.delay_level = 0
    assert "DELAY" not in msg.properties
    msg.deliver_at = deliver
    assert msg.properties["TIMER_DELIVER_MS"] == "1704038400000"  # 2023-12-31T16:00:00Z
    assert msg.deliver_at == 1_704_038_400_000
    msg.deliver_at = None
    assert msg.deliver_at is None
    msg.keys = "a b"  # a str is stored as Java's setKeys(String) stores it
    assert msg.keys == ["a", "b"]
    msg.tags = None
    assert msg.tags is None and "TAGS" not in msg.properties
    assert msg.get_property("color") == "red"


def test_message_repr_and_equality() -> None:
    msg = Message("T", b"12345", tags="A", keys="k")
    assert repr(msg) == "Message(topic='T', tags='A', keys=['k'], body=5 bytes)"
    assert msg == Message("T", b"12345", tags="A", keys=["k"])
    assert msg != Message("T", b"12345", tags="B", keys=["k"])
    assert msg != Message("T", b"12345", tags="A", keys=["k"], flag=1)
    assert msg != Message("U", b"12345", tags="A", keys=["k"])
    assert Message("T", bytearray(b"x")).body == b"x"


@pytest.mark.parametrize("key", sorted(RESERVED_PROPERTY_KEYS))
def test_put_user_property_rejects_reserved_keys(key: str) -> None:
    msg = Message("T")
    with pytest.raises(InvalidPropertyError) as info:
        msg.put_user_property(key, "v")
    assert repr(key) in str(info.value)


def test_reserved_keys_match_javas_set() -> None:
    assert len(RESERVED_PROPERTY_KEYS) == 51
    assert {"UNIQ_KEY", "TAGS", "KEYS", "WAIT", "DELAY", "__CRC32#", "TIMER_DELIVER_MS"} <= (
        RESERVED_PROPERTY_KEYS
    )
    # Java leaves these out of STRING_HASH_SET, so users may set them.
    assert "__transactionId__" not in RESERVED_PROPERTY_KEYS
    assert "__SHARDINGKEY" not in RESERVED_PROPERTY_KEYS


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("a\x01b", "v", "a\\x01b"),
        ("k", "a\x02b", "'k'"),
        ("", "v", "''"),
        ("  ", "v", "'  '"),
        ("k", "", "'k'"),
        ("k", 5, "'k'"),
        (5, "v", "5"),
    ],
)
def test_put_user_property_rejects_bad_pairs(key: object, value: object, named: str) -> None:
    with pytest.raises(InvalidPropertyError) as info:
        Message("T", properties={key: value})  # type: ignore[dict-item]
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("topic", "rule"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("a" * 128, "127"),
        ("bad topic", "' '"),
        ("主题", "'主'"),
        ("TBW102", "reserved"),
        ("SCHEDULE_TOPIC_XXXX", "reserved"),
        ("RMQ_SYS_TRANS_HALF_TOPIC", "reserved"),
        ("%RETRY%" + "g" * 249, "255"),
    ],
)
def test_validate_topic_rules(topic: str, rule: str) -> None:
    with pytest.raises(InvalidTopicError) as info:
        Message(topic)
    assert rule in str(info.value)
    assert topic[:10] in str(info.value) or not topic.strip()


def test_validate_topic_accepts_what_java_accepts() -> None:
    for topic in ("a" * 127, "ns%Topic|x-y_z", "%RETRY%" + "g" * 120, "%DLQ%group", "T"):
        assert validate_topic(topic) == topic
    with pytest.raises(InvalidTopicError):
        validate_topic(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "topic",
    [
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "CHECKPOINT_TOPIC",
        "RMQ_SYS_TOPIC_CONFIG_SYNC",
        "RMQ_SYS_CONSUMER_OFFSET_SYNC",
        "RMQ_SYS_DELAY_OFFSET_SYNC",
        "RMQ_SYS_SUBSCRIPTION_GROUP_SYNC",
        "RMQ_SYS_MESSAGE_MODE_SYNC",
        "RMQ_SYS_TIMER_METRICS_SYNC",
        "rmq_sys_wheel_timer",
        "rmq_sys_REVIVE_LOG_DefaultCluster",
        "rmq_sys_SYNC_BROKER_MEMBER_broker-a",
    ],
)
def test_every_reserved_system_topic_is_refused_as_a_send_target(topic: str) -> None:
    with pytest.raises(InvalidTopicError, match=f"topic '{topic}' is a reserved system topic"):
        Message(topic, b"x")
    msg = Message("T", b"x")
    with pytest.raises(InvalidTopicError, match="reserved system topic"):
        msg.topic = topic
    assert msg.topic == "T"


def test_system_topics_meant_to_be_sent_to_are_accepted() -> None:
    # Traces, the benchmark topic, retry and dead-letter topics, request-reply.
    for topic in (
        "RMQ_SYS_TRACE_TOPIC",
        "BenchmarkTest",
        "%RETRY%group",
        "%DLQ%group",
        "DefaultCluster_REPLY_TOPIC",
        "RMQ_SYS_MY_OWN",
    ):
        assert Message(topic, b"x").topic == topic


def test_message_rejects_bad_fields() -> None:
    with pytest.raises(InvalidMessageError, match="bytes-like"):
        Message("T", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="delay_level"):
        Message("T", delay_level=-1)
    with pytest.raises(InvalidMessageError, match="naive"):
        Message("T", deliver_at=datetime(2024, 1, 1))
    with pytest.raises(InvalidMessageError, match="flag"):
        Message("T", flag=2**31)
    with pytest.raises(InvalidMessageError, match="space"):
        Message("T", keys=["two words"])
    with pytest.raises(InvalidPropertyError, match="separator"):
        Message("T", tags="a\x01")
    msg = Message("T")
    with pytest.raises(InvalidTopicError):
        msg.topic = "TBW102"
    with pytest.raises(InvalidMessageError):
        msg.body = 5  # type: ignore[assignment]


# ------------------------------------------------------------ batches

batch_messages = st.lists(
    messages(topics=st.just("BatchTopic"), max_body_size=64, timers=False),
    min_size=1,
    max_size=6,
)


@given(batch_messages, st.data())
def test_batch_round_trip(messages: list[Message], data: st.DataObject) -> None:
    ids = [f"ID{i:030d}" for i in range(len(messages))]
    encoded = encode_batch(messages, ids)
    decoded = decode_batch(encoded)
    assert len(decoded) == len(messages)
    for msg, uid, (flag, body, props) in zip(messages, ids, decoded, strict=True):
        assert flag == msg.flag
        assert body == msg.body
        assert props == {**msg.properties, "UNIQ_KEY": uid}


def test_batch_overrides_an_existing_uniq_key_with_the_given_one() -> None:
    msg = Message("T", b"x")
    msg.properties["UNIQ_KEY"] = "OLD"
    assert decode_batch(encode_batch([msg], ["NEW"]))[0][2] == {"UNIQ_KEY": "NEW"}


def test_batch_validation() -> None:
    a = Message("T", b"a")
    with pytest.raises(InvalidMessageError, match="one topic"):
        encode_batch([a, Message("U", b"b")], ["1", "2"])
    with pytest.raises(InvalidMessageError, match="delayed"):
        encode_batch([a, Message("T", b"b", delay_level=2)], ["1", "2"])
    with pytest.raises(InvalidMessageError, match="delayed"):
        encode_batch([Message("T", deliver_at=1_700_000_000_000)], ["1"])
    with pytest.raises(InvalidMessageError, match="retry"):
        encode_batch([Message("%RETRY%group", b"a")], ["1"])
    with pytest.raises(InvalidMessageError, match="at least one"):
        encode_batch([], [])
    with pytest.raises(InvalidArgumentError, match="unique ids"):
        encode_batch([a], [])
    waits = Message("T", b"b")
    waits.properties["WAIT"] = "false"
    with pytest.raises(InvalidMessageError, match="WAIT"):
        encode_batch([a, waits], ["1", "2"])
    with pytest.raises(InvalidMessageError, match="member 1 differs in WAIT"):
        encode_batch([waits, a], ["1", "2"])  # no properties at all: WAIT is true
    with pytest.raises(InvalidPropertyError, match="separator"):
        encode_batch([a], ["1\x012"])
    with pytest.raises(InvalidArgumentError, match="not a non-empty str"):
        encode_batch([a], [""])


@given(st.binary(max_size=120))
def test_decode_batch_arbitrary_bytes(data: bytes) -> None:
    try:
        members = decode_batch(data)
    except RemoteProtocolError:
        return
    assert sum(22 + len(body) for _, body, _ in members) <= len(data)


@pytest.mark.parametrize("cut", range(1, 44))
def test_decode_batch_truncated(cut: int) -> None:
    data = encode_batch([Message("T", b"ab", tags="A")], ["ID1"])
    with pytest.raises(RemoteProtocolError, match="batch member 0"):
        decode_batch(data[:cut])


# ------------------------------------------------------------ stored messages


@given(st.lists(message_exts(), min_size=1, max_size=4), st.sampled_from([None, 2]))
def test_stored_message_round_trip(messages: list[MessageExt], version: int | None) -> None:
    encoded = [encode_stored_message(m, version=version) for m in messages]
    body = b"".join(encoded)
    decoded = decode_messages(body)
    assert len(decoded) == len(messages)
    offset = 0
    for original, chunk, got in zip(messages, encoded, decoded, strict=True):
        expected_magic = (
            b"\xda\xa3\x20\xab"
            if version == 2 or len(original.topic.encode()) > 127
            else b"\xda\xa3\x20\xa7"
        )
        assert chunk[4:8] == expected_magic
        assert got.store_size == len(chunk)
        assert got.topic == original.topic
        assert got.body == original.body
        assert got.sys_flag == original.sys_flag & ~0x1  # decompressed, as Java clears it
        assert got.born_host == original.born_host
        assert got.store_host == original.store_host
        assert got.offset_msg_id == original.offset_msg_id
        got.sys_flag = original.sys_flag
        assert got == original
        single, next_offset = decode_message(body, offset)
        offset += len(chunk)
        assert next_offset == offset
        assert single.body == original.body


@given(message_exts())
def test_stored_message_without_decompression_keeps_the_stored_body(msg: MessageExt) -> None:
    encoded = encode_stored_message(msg)
    (raw,) = decode_messages(encoded, decompress=False)
    assert raw.sys_flag == msg.sys_flag
    if msg.sys_flag & 0x1:
        assert decompress_body(raw.body, raw.sys_flag) == msg.body
    else:
        assert raw.body == msg.body


def test_message_ext_ids_and_accessors() -> None:
    msg = MessageExt(
        "T",
        b"x",
        properties={"UNIQ_KEY": "ABC", "TRAN_MSG": "true", "KEYS": "k1 k2", "TAGS": "t"},
        store_host="10.0.0.2:10911",
        commit_log_offset=255,
    )
    assert msg.msg_id == "ABC"
    assert msg.offset_msg_id == "0A00000200002A9F00000000000000FF"
    assert msg.transaction_id == "ABC"
    msg.properties["__transactionId__"] = "TX"
    assert msg.transaction_id == "TX"
    assert (msg.tags, msg.keys) == ("t", ["k1", "k2"])
    assert repr(msg) == (
        "MessageExt(topic='T', msg_id='ABC', queue_id=0, queue_offset=0, tags='t', "
        "keys=['k1', 'k2'], reconsume_times=0, body=1 bytes)"
    )
    assert MessageExt("T").transaction_id is None
    # Hosts as Java prints them: InetSocketAddress.toString() and unbracketed IPv6.
    assert MessageExt("T", born_host="broker-a/10.0.0.3:10911").born_host == "10.0.0.3:10911"
    assert MessageExt("T", born_host="/10.0.0.3:1").born_host == "10.0.0.3:1"
    assert MessageExt("T", store_host="0:0:0:0:0:0:0:1:10911").store_host == "[::1]:10911"
    with pytest.raises(InvalidArgumentError):
        MessageExt("T", born_host="localhost:1")
    with pytest.raises(InvalidArgumentError):
        MessageExt("T", store_host="1.2.3.4")


def test_decode_message_skips_padding_after_a_record() -> None:
    # A record re-encoded into a buffer of its old, larger size (TOTALSIZE counts padding).
    padded = bytearray(V1_IPV4_STORED + bytes(10))
    padded[0:4] = (len(padded)).to_bytes(4, "big")
    both = bytes(padded) + V1_IPV4_STORED
    first, second = decode_messages(both)
    assert first.body == second.body == b"hi"


def test_decode_message_offsets() -> None:
    body = V1_IPV4_STORED + V2_IPV6_STORED
    first, offset = decode_message(body)
    second, end = decode_message(body, offset)
    assert (first.topic, second.topic, end) == ("T1", "T2", len(body))
    with pytest.raises(RemoteProtocolError):
        decode_message(body, end)
    with pytest.raises(InvalidArgumentError):
        decode_message(body, -1)


@pytest.mark.parametrize(
    ("cut", "field"),
    [
        (2, "TOTALSIZE"),
        (6, "MAGICCODE"),
        (18, "FLAG"),
        (20, "QUEUEOFFSET"),
        (30, "PHYSICALOFFSET"),
        (50, "BORNHOST"),
        (70, "STOREHOST"),
        (86, "BODYLEN"),
        (89, "BODYLEN 2 overruns"),
        (90, "truncated in TOPICLEN"),
        (92, "TOPICLEN 2 overruns"),
        (94, "truncated in PROPERTIESLEN"),
        (96, "PROPERTIESLEN 7 overruns"),
        (101, "PROPERTIESLEN 7 overruns"),
    ],
)
def test_truncated_stored_message_names_the_field(cut: int, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=field):
        decode_messages(V1_IPV4_STORED[:cut])


def test_every_truncation_of_a_pull_body_is_a_protocol_error() -> None:
    body = V1_IPV4_STORED + V2_IPV6_STORED
    for cut in range(1, len(body)):
        if cut == len(V1_IPV4_STORED):
            assert len(decode_messages(body[:cut])) == 1
            continue
        with pytest.raises(RemoteProtocolError):
            decode_messages(body[:cut])


def test_bad_magic_and_bad_utf8() -> None:
    bad_magic = V1_IPV4_STORED[:4] + b"\xca\xfe\xba\xbe" + V1_IPV4_STORED[8:]
    with pytest.raises(RemoteProtocolError, match="MAGICCODE"):
        decode_messages(bad_magic)
    bad_topic = V1_IPV4_STORED.replace(b"\x02T1", b"\x02\xff1")
    with pytest.raises(RemoteProtocolError, match="TOPIC"):
        decode_messages(bad_topic)
    bad_props = V1_IPV4_STORED.replace(b"TAGS\x01A\x02", b"TAGS\x01\xff\x02")
    with pytest.raises(RemoteProtocolError, match="PROPERTIES"):
        decode_messages(bad_props)
    no_separator = V1_IPV4_STORED.replace(b"TAGS\x01A\x02", b"TAGSxA\x02")
    with pytest.raises(RemoteProtocolError, match="separator"):
        decode_messages(no_separator)
    negative_body = V1_IPV4_STORED[:84] + b"\xff\xff\xff\xff" + V1_IPV4_STORED[88:]
    with pytest.raises(RemoteProtocolError, match="BODYLEN -1"):
        decode_messages(negative_body)


def _stored_with(sys_flag: int, body: bytes) -> bytes:
    return encode_stored_message(MessageExt("T", body, sys_flag=sys_flag), compress=False)


def test_corrupt_compressed_body_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="ZLIB"):
        decode_messages(_stored_with(0x1, b"not zlib at all"))
    with pytest.raises(RemoteProtocolError, match="ZLIB"):
        decode_messages(_stored_with(0x301, zlib.compress(b"x" * 100)[:-3]))
    with pytest.raises(RemoteProtocolError, match="compression type 5"):
        decode_messages(_stored_with(0x501, b"whatever"))


@pytest.mark.skipif(not (HAVE_LZ4 and HAVE_ZSTD), reason="needs lz4 and zstandard")
def test_corrupt_lz4_and_zstd_bodies_are_protocol_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="LZ4"):
        decode_messages(_stored_with(0x101, b"\x04\x22\x4d\x18garbage"))
    with pytest.raises(RemoteProtocolError, match="ZSTD"):
        decode_messages(_stored_with(0x201, b"\x28\xb5\x2f\xfdgarbage"))
    whole, _ = compress_body(b"z" * 5000, compression=CompressionType.ZSTD)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decode_messages(_stored_with(0x201, whole[:-4]))
    whole, _ = compress_body(b"z" * 5000, compression=CompressionType.LZ4)
    with pytest.raises(RemoteProtocolError, match="LZ4"):
        decode_messages(_stored_with(0x101, whole[:-4]))


def _valid_pull_body() -> bytes:
    first = MessageExt(
        "Topic",
        b"x" * 40,
        properties={"UNIQ_KEY": "U1", "TAGS": "A"},
        born_host="[::1]:3",
        store_host="1.2.3.4:10911",
    )
    second = MessageExt("Topic", zlib.compress(b"y" * 50), sys_flag=0x301)
    return encode_stored_message(first) + encode_stored_message(second, compress=False)


@given(st.binary(max_size=400))
def test_decode_messages_arbitrary_bytes(data: bytes) -> None:
    try:
        messages = decode_messages(data)
    except RemoteProtocolError:
        return
    assert all(isinstance(m, MessageExt) for m in messages)


@given(st.data())
def test_decode_messages_mutated_input(data: st.DataObject) -> None:
    body = bytearray(_valid_pull_body())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(body) - 1))
        if kind == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del body[pos:]
            if not body:
                return
        else:
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        decode_messages(bytes(body))
    except RemoteProtocolError:
        pass
    except CompressionUnavailableError:
        assert not (HAVE_LZ4 and HAVE_ZSTD)


# ------------------------------------------------------------ inner batches


def test_inner_batch_members_come_back_as_messages() -> None:
    members = [Message("Inner", b"one", tags="A"), Message("Inner", b"two", flag=9)]
    batch_body = encode_batch(members, ["U1", "U2"])
    wrapper = MessageExt(
        "Inner",
        batch_body,
        sys_flag=0x40 | 0x80,
        queue_id=2,
        queue_offset=100,
        commit_log_offset=5000,
        store_host="10.0.0.9:10911",
    )
    plain = MessageExt("Inner", b"three", queue_offset=102, commit_log_offset=6000)
    pulled = decode_messages(encode_stored_message(wrapper) + encode_stored_message(plain))
    assert [m.body for m in pulled] == [b"one", b"two", b"three"]
    assert [m.queue_offset for m in pulled] == [100, 101, 102]
    assert [m.msg_id for m in pulled[:2]] == ["U1", "U2"]
    assert pulled[0].tags == "A"
    assert pulled[1].flag == 9
    assert pulled[0].offset_msg_id == pulled[1].offset_msg_id == wrapper.offset_msg_id
    assert {m.queue_id for m in pulled[:2]} == {2}
    # Without unwrapping, the wrapper comes back as stored.
    (raw, plain_again) = decode_messages(
        encode_stored_message(wrapper) + encode_stored_message(plain), unwrap_batches=False
    )
    assert raw.body == batch_body
    assert unwrap_inner_batch(raw)[1].body == b"two"
    assert unwrap_inner_batch(plain_again) == [plain_again]


def test_compressed_inner_batch_is_decompressed_then_unwrapped() -> None:
    batch_body = encode_batch([Message("I", b"a" * 5000), Message("I", b"b")], ["U1", "U2"])
    wrapper = MessageExt("I", batch_body, sys_flag=0x40 | 0x80 | 0x301)
    pulled = decode_messages(encode_stored_message(wrapper))
    assert [m.body for m in pulled] == [b"a" * 5000, b"b"]


def test_malformed_inner_batch_is_a_protocol_error() -> None:
    wrapper = MessageExt("I", b"\x00\x00\x00\x30garbage", sys_flag=0xC0)
    with pytest.raises(RemoteProtocolError, match="inner batch"):
        decode_messages(encode_stored_message(wrapper))


# ------------------------------------------------------------ compression


def test_compress_body_like_javas_producer() -> None:
    small = b"s" * 4095
    assert compress_body(small) == (small, 0)
    body = b"hello rocketmq " * 300  # 4500 bytes
    data, flags = compress_body(body)
    assert flags == 0x301  # COMPRESSED | ZLIB type, as Java 5.x sets
    assert data == zlib.compress(body, 5)
    assert decompress_body(data, flags) == body
    # Java 4.x and Go set only 0x1: the type bits 0 mean zlib.
    assert decompress_body(data, 0x1) == body
    assert decompress_body(b"raw", 0x300) == b"raw"  # not COMPRESSED: untouched


@pytest.mark.parametrize("kind", list(CompressionType))
def test_a_body_compression_does_not_shrink_is_left_uncompressed(kind: CompressionType) -> None:
    import random

    body = random.Random(3).randbytes(64 * 1024)
    assert compress_body(body, compression=kind) == (body, 0)
    assert compress_body(body, threshold=0, compression=kind) == (body, 0)
    # A stored message that says COMPRESSED is written compressed, larger or not.
    ext = MessageExt("T", body, sys_flag=0x1 | kind.sys_flag)
    raw = decode_messages(encode_stored_message(ext), decompress=False)[0]
    assert raw.body != body and raw.sys_flag & 0x1
    assert decompress_body(raw.body, raw.sys_flag) == body


@pytest.mark.skipif(not HAVE_LZ4, reason="needs lz4")
def test_lz4_bodies_use_javas_frame_format() -> None:
    import lz4.frame

    body = bytes(range(256)) * 40
    data, flags = compress_body(body, compression=CompressionType.LZ4)
    assert flags == 0x101
    assert data[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic, as LZ4FrameOutputStream writes
    assert data[4] & 0x20  # block independence: lz4-java refuses linked blocks
    assert decompress_body(data, flags) == body
    assert decompress_body(lz4.frame.compress(body), 0x101) == body


@pytest.mark.skipif(not HAVE_ZSTD, reason="needs zstandard")
def test_zstd_bodies_without_content_size_decode() -> None:
    import zstandard

    body = b"zstd body " * 600
    data, flags = compress_body(body, compression=CompressionType.ZSTD)
    assert flags == 0x201
    assert decompress_body(data, flags) == body
    # Java's ZstdOutputStream streams: the frame header has no content size.
    streamed = zstandard.ZstdCompressor(write_content_size=False).compress(body)
    assert decompress_body(streamed, 0x201) == body


@pytest.mark.parametrize(
    ("modules", "flags", "algorithm", "extra"),
    [
        (("lz4", "lz4.frame"), 0x101, "LZ4", "rocketmq-remoting[lz4]"),
        (("zstandard",), 0x201, "Zstandard", "rocketmq-remoting[zstd]"),
    ],
)
def test_missing_compression_library(
    monkeypatch: pytest.MonkeyPatch,
    modules: tuple[str, ...],
    flags: int,
    algorithm: str,
    extra: str,
) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CompressionUnavailableError) as info:
        decode_messages(_stored_with(flags, b"compressed bytes"))
    assert algorithm in str(info.value)
    assert extra in str(info.value)
    with pytest.raises(CompressionUnavailableError):
        compress_body(b"x" * 5000, compression=CompressionType(flags >> 8))
    # zlib needs nothing extra.
    assert decode_messages(_stored_with(0x301, zlib.compress(b"ok")))[0].body == b"ok"


# ------------------------------------------------------------ offset message ids


@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
        st.integers(0, 2**128 - 1).map(lambda i: ipaddress.IPv6Address(i).compressed),
    ),
    st.integers(0, 65535),
    st.integers(0, 2**63 - 1),
)
def test_offset_msg_id_round_trip(host: str, port: int, offset: int) -> None:
    msg_id = encode_offset_msg_id(host, port, offset)
    assert len(msg_id) == (32 if "." in host and ":" not in host else 56)
    assert msg_id == msg_id.upper()
    assert decode_offset_msg_id(msg_id) == (host, port, offset)
    store_host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert MessageExt("T", store_host=store_host, commit_log_offset=offset).offset_msg_id == msg_id


def test_body_crc32_is_javas_masked_crc() -> None:
    # The CRC-32 check value of "123456789" is 0xCBF43926; Java's UtilAll.crc32 masks
    # the sign bit off.
    assert body_crc32(b"123456789") == 0x4BF43926


def test_encode_stored_message_rejects_what_cannot_be_encoded() -> None:
    with pytest.raises(InvalidArgumentError, match="compression type 6"):
        encode_stored_message(MessageExt("T", b"x", sys_flag=0x601))
    with pytest.raises(InvalidArgumentError, match="V2"):
        encode_stored_message(MessageExt("t" * 300), version=1)
    with pytest.raises(InvalidArgumentError, match="wire type"):
        encode_stored_message(MessageExt("T", queue_id=2**31))


@pytest.mark.parametrize("compression", list(CompressionType))
def test_a_large_body_that_does_not_compress_is_judged_by_samples(
    compression: CompressionType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From SAMPLE_OVER bytes a body whose start, middle and end do not shrink is
    sent as it is, without compressing the whole (1 MiB of random bytes takes zlib
    about 20 ms, to be thrown away); a compressible one is compressed whole, as
    before; under SAMPLE_OVER the whole is tried, as before."""
    import random

    import rocketmq_proto.message.compression as comp

    sizes: list[int] = []
    real = comp._compress

    def counted(body: bytes, kind: CompressionType, level: int) -> bytes:
        sizes.append(len(body))
        return real(body, kind, level)

    monkeypatch.setattr(comp, "_compress", counted)
    noise = random.Random(3).randbytes(comp.SAMPLE_OVER)
    assert compress_body(noise, 5, 4096, compression=compression) == (noise, 0)
    assert sizes == [3 * 4096]  # the samples alone
    text = b"".join(b"line %d of text\n" % i for i in range(comp.SAMPLE_OVER // 8))
    sizes.clear()
    body, flags = compress_body(text, 5, 4096, compression=compression)
    assert sizes == [3 * 4096, len(text)] and flags == 0x1 | compression.sys_flag
    assert decompress_body(body, flags) == text
    # Random where it is sampled, compressible elsewhere: sent as it is (larger, correct).
    patched, fill = bytearray(text), random.Random(4).randbytes(len(text))
    for start in (0, len(text) // 2, len(text) - 4096):
        patched[start : start + 4096] = fill[start : start + 4096]
    mixed = bytes(patched)
    assert compress_body(mixed, 5, 4096, compression=compression) == (mixed, 0)
    # Under SAMPLE_OVER: the whole is tried, and dropped as it does not shrink.
    sizes.clear()
    short = noise[: comp.SAMPLE_OVER - 1]
    assert compress_body(short, 5, 4096, compression=compression) == (short, 0)
    assert sizes == [len(short)]
