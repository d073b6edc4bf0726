"""Hypothesis strategies for fuzzing code built on the protocol core.

Optional: this is the only core module that imports hypothesis (install it with
``pip install rocketmq-remoting[fuzz]``); ``import rocketmq_proto`` does not load it.

Every strategy builds values the core accepts by construction: commands that
encode in both header formats and decode back equal, frames the frame decoder
reads whole, messages the :class:`~rocketmq_proto.Message` constructor takes,
stored messages :func:`~rocketmq_proto.decode_messages` reads, routes the route
parser reads back equal. To fuzz with broken input, wrap a bytes strategy in
:func:`mutated`. ``docs/fuzzing.md`` states what the core promises for any input.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Sequence
from dataclasses import replace
from typing import Final, Literal

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from rocketmq_proto import (
    BrokerData,
    CompressionType,
    ExtTemplate,
    InvalidPropertyError,
    InvalidTopicError,
    LanguageCode,
    Message,
    MessageExt,
    MessageQueue,
    QueueData,
    RemotingCommand,
    SerializeType,
    TopicRouteData,
    encode_command,
    validate_topic,
)
from rocketmq_proto.message.codec import encode_stored_message
from rocketmq_proto.wire.codes import FLAG_ONEWAY, FLAG_RESPONSE
from rocketmq_proto.wire.route import (
    METADATA_SCOPE_GLOBAL,
    TopicQueueMappingInfo,
    encode_topic_route,
)

__all__ = [
    "broker_datas",
    "frames",
    "message_exts",
    "message_queues",
    "messages",
    "mutated",
    "queue_datas",
    "remoting_commands",
    "route_bodies",
    "stored_messages",
    "topic_names",
    "topic_routes",
]

_INT16: Final = st.integers(-(1 << 15), (1 << 15) - 1)
_INT32: Final = st.integers(-(1 << 31), (1 << 31) - 1)
_INT64: Final = st.integers(-(1 << 63), (1 << 63) - 1)

#: Any character UTF-8 can encode (no lone surrogates).
_UTF8: Final = st.characters(codec="utf-8")
#: Any such character but the property separators.
_PROPERTY_CHAR: Final = st.characters(codec="utf-8", exclude_characters="\x01\x02")

# ------------------------------------------------------------------ commands and frames

_EXT_TEXT: Final = st.text(_UTF8, max_size=30)
_EXT_FIELDS: Final = st.dictionaries(_EXT_TEXT, _EXT_TEXT, max_size=8)

_FLAGS: Final = {
    None: (0, FLAG_RESPONSE, FLAG_ONEWAY, FLAG_RESPONSE | FLAG_ONEWAY),
    "request": (0, FLAG_ONEWAY),
    "response": (FLAG_RESPONSE,),
}


def remoting_commands(
    *, kind: Literal["request", "response"] | None = None, max_body_size: int = 64
) -> SearchStrategy[RemotingCommand]:
    """Remoting commands that encode in both header formats and decode back equal.

    Any int16 code and version, any int32 opaque, any :class:`LanguageCode`, up to 8
    ext fields of any UTF-8 text (sometimes some of them in an :class:`ExtTemplate`),
    a remark or none, and a body of up to ``max_body_size`` bytes. ``kind``
    "request" gives flag 0 or oneway, "response" the response flag; by default any
    combination of the two bits.
    """
    flags = st.sampled_from(_FLAGS[kind])
    templates = st.none() | st.builds(ExtTemplate, _EXT_FIELDS)

    @st.composite
    def build(draw: st.DrawFn) -> RemotingCommand:
        return RemotingCommand(
            draw(_INT16),
            draw(_EXT_FIELDS),
            draw(st.binary(max_size=max_body_size)),
            remark=draw(st.none() | _EXT_TEXT),
            flag=draw(flags),
            opaque=draw(_INT32),
            language=draw(st.sampled_from(LanguageCode)),
            version=draw(_INT16),
            template=draw(templates),
        )

    return build()


def frames(
    commands: SearchStrategy[RemotingCommand] | None = None,
    *,
    serialize_types: Sequence[SerializeType] = (SerializeType.JSON, SerializeType.ROCKETMQ),
) -> SearchStrategy[bytes]:
    """Whole frames (length prefix, header-length word, header, body) as bytes.

    Each is one command from ``commands`` (default :func:`remoting_commands`)
    encoded with a header format drawn from ``serialize_types``. Concatenate them
    for a stream; a :class:`~rocketmq_proto.FrameDecoder` gives the commands back.
    """
    return st.builds(
        encode_command,
        remoting_commands() if commands is None else commands,
        st.sampled_from(serialize_types),
    )


_INTERESTING_INT32: Final = (0, 1, 3, 4, 8, 21, -1, 0xFFFFFF, 0x1000000, (1 << 31) - 1, -(1 << 31))


def mutated(data: SearchStrategy[bytes], *, max_edits: int = 4) -> SearchStrategy[bytes]:
    """Bytes from ``data`` with 1 to ``max_edits`` edits: a byte changed, an int32
    overwritten (often with a boundary value), a run deleted or inserted, the tail cut.

    Meant for malformed-input properties: the result is usually invalid.
    """
    kinds = st.sampled_from(("byte", "int32", "delete", "insert", "cut"))
    int32s = st.sampled_from(_INTERESTING_INT32) | _INT32

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        buf = bytearray(draw(data))
        for _ in range(draw(st.integers(1, max_edits))):
            kind = draw(kinds)
            pos = draw(st.integers(0, len(buf)))
            if kind == "byte" and pos < len(buf):
                buf[pos] = draw(st.integers(0, 255))
            elif kind == "int32":
                buf[pos : pos + 4] = draw(int32s).to_bytes(4, "big", signed=True)
            elif kind == "delete":
                del buf[pos : pos + draw(st.integers(1, 8))]
            elif kind == "insert":
                buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif kind == "cut":
                del buf[pos:]
        return bytes(buf)

    return build()


# ------------------------------------------------------------------ messages

_TOPIC_ALPHABET: Final = "%|-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _topic_allowed(topic: str) -> bool:
    try:
        validate_topic(topic)
    except InvalidTopicError:
        return False
    return True


def topic_names(*, retry_and_dlq: bool = True) -> SearchStrategy[str]:
    """Topic names a producer may send to (:func:`~rocketmq_proto.validate_topic`
    accepts them): 1 to 127 of ``[%|a-zA-Z0-9_-]``, and with ``retry_and_dlq`` also
    ``%RETRY%`` and ``%DLQ%`` topics of up to 255 characters."""
    plain = st.text(_TOPIC_ALPHABET, min_size=1, max_size=127)
    if retry_and_dlq:
        prefixed = st.tuples(
            st.sampled_from(("%RETRY%", "%DLQ%")), st.text(_TOPIC_ALPHABET, max_size=248)
        ).map("".join)
        plain = plain | prefixed
    return plain.filter(_topic_allowed)


def _user_property_allowed(key: str, value: str) -> bool:
    try:
        Message("T", properties={key: value})
    except InvalidPropertyError:
        return False
    return True


_PROPERTY_TEXT: Final = st.text(_PROPERTY_CHAR, min_size=1, max_size=20)
_USER_PROPERTIES: Final = st.dictionaries(
    _PROPERTY_TEXT.filter(lambda k: _user_property_allowed(k, "v")),
    _PROPERTY_TEXT.filter(lambda v: _user_property_allowed("k", v)),
    max_size=4,
)
_MESSAGE_KEYS: Final = st.lists(
    st.text(st.characters(codec="utf-8", exclude_characters=" \x01\x02"), min_size=1, max_size=12),
    max_size=3,
)
# Tags a tag filter can select (what a producer's send checks): no control
# character, no "||", no leading or trailing space.
_SENDABLE_TAGS: Final = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=20)
    .map(lambda t: t.strip(" "))
    .filter(lambda t: bool(t) and "||" not in t)
)


def messages(
    *,
    topics: SearchStrategy[str] | None = None,
    max_body_size: int = 256,
    timers: bool = True,
    sendable: bool = False,
) -> SearchStrategy[Message]:
    """Messages the :class:`~rocketmq_proto.Message` constructor accepts.

    A topic from ``topics`` (default :func:`topic_names`), a body of up to
    ``max_body_size`` bytes, any int32 flag, tags or none, up to 3 keys, up to 4
    user properties (any UTF-8 but the separators, not reserved, not blank), and
    with ``timers`` sometimes a delay level or a delivery time. With ``sendable``
    the body is never empty and the tags are ones a tag filter can select, so a
    producer's send checks pass too.
    """
    topic_strategy = topic_names() if topics is None else topics
    tags = st.none() | (_SENDABLE_TAGS if sendable else _PROPERTY_TEXT)
    bodies = st.binary(min_size=1 if sendable else 0, max_size=max_body_size)
    timer_kinds = st.sampled_from(("none", "delay", "deliver") if timers else ("none",))

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        timer = draw(timer_kinds)
        return Message(
            draw(topic_strategy),
            draw(bodies),
            flag=draw(_INT32),
            tags=draw(tags),
            keys=draw(_MESSAGE_KEYS),
            properties=draw(_USER_PROPERTIES),
            delay_level=draw(st.integers(1, 18)) if timer == "delay" else 0,
            deliver_at=draw(st.integers(0, 1 << 48)) if timer == "deliver" else None,
        )

    return build()


# ------------------------------------------------------------------ stored messages

_PORTS: Final = st.integers(0, 0xFFFF)
_IPV4_HOSTS: Final = st.builds(
    lambda ip, port: f"{ipaddress.IPv4Address(ip)}:{port}", st.integers(0, (1 << 32) - 1), _PORTS
)
_IPV6_HOSTS: Final = st.builds(
    lambda ip, port: f"[{ipaddress.IPv6Address(ip)}]:{port}",
    st.integers(0, (1 << 128) - 1),
    _PORTS,
)
_HOSTS: Final = _IPV4_HOSTS | _IPV6_HOSTS
_STORED_PROPERTIES: Final = st.dictionaries(_PROPERTY_TEXT, _PROPERTY_TEXT, max_size=8)


def _available_compressions() -> list[CompressionType | None]:
    found: list[CompressionType | None] = [None, CompressionType.ZLIB]
    if importlib.util.find_spec("lz4") is not None:
        found.append(CompressionType.LZ4)
    if importlib.util.find_spec("zstandard") is not None:
        found.append(CompressionType.ZSTD)
    return found


def message_exts(
    *,
    compressions: Sequence[CompressionType | None] | None = None,
    max_body_size: int = 300,
) -> SearchStrategy[MessageExt]:
    """Received messages that survive the stored-message encoding unchanged.

    Any UTF-8 topic of up to 300 characters (both magic codes), a body of up to
    ``max_body_size`` bytes, up to 8 properties of any UTF-8 but the separators,
    IPv4 or IPv6 born and store hosts, and any value of each int32 and int64 field.
    The sysFlag carries transaction bits and, for a compression drawn from
    ``compressions`` (default: none, zlib, and LZ4 and Zstandard where their
    libraries are installed), the compressed bit and type: the body is then
    compressed when encoded. See :func:`stored_messages` for the bytes.
    """
    choices = _available_compressions() if compressions is None else list(compressions)

    @st.composite
    def build(draw: st.DrawFn) -> MessageExt:
        compression = draw(st.sampled_from(choices))
        sys_flag = draw(st.integers(0, 7)) << 1  # MULTI_TAGS and the transaction type
        if compression is not None:
            sys_flag |= 0x1 | compression.sys_flag
        return MessageExt(
            draw(st.text(_UTF8, max_size=300)),
            draw(st.binary(max_size=max_body_size)),
            flag=draw(_INT32),
            properties=draw(_STORED_PROPERTIES),
            queue_id=draw(_INT32),
            queue_offset=draw(_INT64),
            commit_log_offset=draw(_INT64),
            sys_flag=sys_flag,
            born_timestamp=draw(_INT64),
            born_host=draw(_HOSTS),
            store_timestamp=draw(_INT64),
            store_host=draw(_HOSTS),
            reconsume_times=draw(_INT32),
            prepared_transaction_offset=draw(_INT64),
            body_crc=draw(_INT32),
        )

    return build()


def stored_messages(
    exts: SearchStrategy[MessageExt] | None = None, *, min_count: int = 1, max_count: int = 4
) -> SearchStrategy[bytes]:
    """Bytes of ``min_count`` to ``max_count`` stored messages back to back, as a
    pull body holds them, each from ``exts`` (default :func:`message_exts`) in the
    encoding a broker stores (magic code V1 or V2, drawn). ``decode_messages``
    reads them back."""
    source = message_exts() if exts is None else exts
    one = st.builds(
        lambda msg, v2: encode_stored_message(msg, version=2 if v2 else None),
        source,
        st.booleans(),
    )
    return st.lists(one, min_size=min_count, max_size=max_count).map(b"".join)


# ------------------------------------------------------------------ routes

_NAMES: Final = st.text(_UTF8, min_size=1, max_size=6)
_ADDRESSES: Final = _IPV4_HOSTS | _NAMES


def broker_datas(names: SearchStrategy[str] | None = None) -> SearchStrategy[BrokerData]:
    """Brokers as a route or cluster info lists them: a cluster, a name from
    ``names`` (default: 1 to 6 characters of any UTF-8), up to 3 members by broker id
    (0 is the master) at ``ip:port`` or any string, a zone or none."""
    return st.builds(
        BrokerData,
        cluster=_NAMES,
        broker_name=_NAMES if names is None else names,
        broker_addrs=st.dictionaries(st.integers(0, (1 << 63) - 1), _ADDRESSES, max_size=3),
        zone_name=st.none() | _NAMES,
        enable_acting_master=st.booleans(),
    )


def queue_datas(names: SearchStrategy[str] | None = None) -> SearchStrategy[QueueData]:
    """One broker's queues of a topic: a broker name from ``names``, 0 to 64 read and
    write queues, any permission bits and topic flags."""
    return st.builds(
        QueueData,
        broker_name=_NAMES if names is None else names,
        read_queue_nums=st.integers(0, 64),
        write_queue_nums=st.integers(0, 64),
        perm=st.integers(0, 15),
        topic_sys_flag=st.integers(0, 3),
    )


def _mapping_infos(names: SearchStrategy[str]) -> SearchStrategy[TopicQueueMappingInfo]:
    small = st.integers(0, 63)
    return st.builds(
        TopicQueueMappingInfo,
        topic=st.none() | _NAMES,
        scope=st.none() | st.just(METADATA_SCOPE_GLOBAL) | _NAMES,
        total_queues=st.integers(0, 16),
        bname=st.none() | names,
        epoch=_INT64,
        dirty=st.booleans(),
        curr_id_map=st.dictionaries(small, small, max_size=8),
    )


# A route's entries name its brokers more often than not: None keeps the drawn
# name, an int picks one of the route's brokers.
_RENAME: Final = st.none() | st.integers(0, 3)
_BROKER_LISTS: Final = st.lists(broker_datas(), max_size=4)
_QUEUE_ENTRIES: Final = st.lists(st.tuples(queue_datas(), _RENAME), max_size=4)
_CONF_ENTRIES: Final = st.lists(st.tuples(_NAMES, _RENAME, st.integers(0, 16)), max_size=4)
_MAPPING_ENTRIES: Final = st.lists(
    st.tuples(_NAMES, _RENAME, _mapping_infos(_NAMES), _RENAME), max_size=3
)
_FILTER_SERVERS: Final = st.dictionaries(
    _ADDRESSES, st.lists(_ADDRESSES, max_size=2).map(tuple), max_size=2
)


def topic_routes(
    *, order_topic_conf: bool = True, queue_mappings: bool = True
) -> SearchStrategy[TopicRouteData]:
    """Topic routes that encode as a name server writes them and parse back equal.

    Up to 4 brokers (:func:`broker_datas`) and 4 queue entries
    (:func:`queue_datas`) whose broker names are often those brokers', and filter
    servers. With ``order_topic_conf`` some routes carry a valid
    ``brokerName:queueNums;...`` order configuration; with ``queue_mappings`` some
    are static topics with logical queue mappings.
    """

    @st.composite
    def build(draw: st.DrawFn) -> TopicRouteData:
        brokers = tuple(draw(_BROKER_LISTS))
        known = [b.broker_name for b in brokers]

        def name(drawn: str, pick: int | None) -> str:
            return drawn if pick is None or not known else known[pick % len(known)]

        queues = tuple(
            replace(qd, broker_name=name(qd.broker_name, pick)) for qd, pick in draw(_QUEUE_ENTRIES)
        )
        conf = None
        if order_topic_conf and draw(st.booleans()):
            entries = [(name(n, pick), count) for n, pick, count in draw(_CONF_ENTRIES)]
            conf = ";".join(f"{n}:{count}" for n, count in entries if not {":", ";"} & set(n))
        mappings: dict[str, TopicQueueMappingInfo] = {}
        if queue_mappings and draw(st.booleans()):
            for key, key_pick, info, bname_pick in draw(_MAPPING_ENTRIES):
                bname = info.bname if bname_pick is None else name("", bname_pick) or None
                mappings[name(key, key_pick)] = replace(info, bname=bname)
        return TopicRouteData(
            queue_datas=queues,
            broker_datas=brokers,
            order_topic_conf=conf,
            filter_server_table=draw(_FILTER_SERVERS),
            topic_queue_mapping_by_broker=mappings,
        )

    return build()


def route_bodies(
    routes: SearchStrategy[TopicRouteData] | None = None, *, standard_json: bool | None = None
) -> SearchStrategy[bytes]:
    """GET_ROUTEINFO_BY_TOPIC answer bodies: a route from ``routes`` (default
    :func:`topic_routes`) in standard JSON (quoted broker ids) or the older form
    with bare integer keys (``standard_json`` None: either)."""
    forms = st.booleans() if standard_json is None else st.just(standard_json)
    return st.builds(
        lambda route, standard: encode_topic_route(route, standard_json=standard),
        topic_routes() if routes is None else routes,
        forms,
    )


def message_queues(
    topics: SearchStrategy[str] | None = None, brokers: SearchStrategy[str] | None = None
) -> SearchStrategy[MessageQueue]:
    """Message queues: a topic from ``topics`` and a broker name from ``brokers``
    (default for both: any text, as offsets files and routes may carry), and a
    queue id from 0 to the int32 maximum."""
    return st.builds(
        MessageQueue,
        st.text() if topics is None else topics,
        st.text() if brokers is None else brokers,
        st.integers(0, (1 << 31) - 1),
    )
