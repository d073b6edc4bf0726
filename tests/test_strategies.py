"""The public hypothesis strategies: each yields values the core accepts, the package
does not import them, and the fuzz contract of docs/fuzzing.md holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rocketmq_proto import (
    Connection,
    ConnectionClosed,
    ConnectionState,
    Event,
    FrameDecoder,
    Message,
    MessageExt,
    MessageQueue,
    RemoteProtocolError,
    RemotingCommand,
    RequestFailed,
    RequestTimedOut,
    Response,
    SerializeType,
    ServerRequest,
    TopicRouteData,
    decode_message,
    decode_messages,
    decode_properties,
    encode_batch,
    encode_command,
    encode_properties,
    validate_topic,
)
from rocketmq_proto import strategies as rs
from rocketmq_proto.message.codec import encode_stored_message
from rocketmq_proto.message.model import validate_tags
from rocketmq_proto.wire.route import (
    encode_topic_route,
    parse_topic_route,
    publish_queues,
    subscribe_queues,
)

ROOT = Path(__file__).resolve().parent.parent
SERIALIZE_TYPES = list(SerializeType)

# ------------------------------------------------------------------ optional module


def _loaded_after(statement: str) -> list[str]:
    """Modules of hypothesis and rocketmq_proto.strategies loaded by ``statement``
    in a fresh interpreter."""
    probe = (
        f"import sys; {statement}; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'hypothesis' or m == 'rocketmq_proto.strategies'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(ast.literal_eval(done.stdout.strip()))


def test_importing_the_package_does_not_import_hypothesis() -> None:
    assert _loaded_after("import rocketmq_proto") == []
    # The probe sees the module when it is imported.
    loaded = _loaded_after("import rocketmq_proto.strategies")
    assert "hypothesis" in loaded and "rocketmq_proto.strategies" in loaded


def test_only_the_strategies_module_imports_hypothesis() -> None:
    for path in sorted((ROOT / "rocketmq_proto").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "hypothesis" for name in names):
                assert path.name == "strategies.py", f"{path} imports hypothesis"


def test_every_public_strategy_says_what_it_generates() -> None:
    for name in rs.__all__:
        assert (getattr(rs, name).__doc__ or "").strip(), name


# ------------------------------------------------------------------ commands and frames


def _decode_one(frame: bytes) -> RemotingCommand:
    decoder = FrameDecoder()
    decoder.feed(frame)
    cmd = decoder.next_frame()
    assert cmd is not None
    assert decoder.next_frame() is None and decoder.buffered == 0
    return cmd


@given(rs.remoting_commands())
def test_commands_round_trip_in_both_header_formats(cmd: RemotingCommand) -> None:
    for serialize_type in SERIALIZE_TYPES:
        got = _decode_one(encode_command(cmd, serialize_type))
        assert got == cmd
        assert got.serialize_type == serialize_type
        assert got.ext_fields == cmd.all_ext_fields()


@given(rs.remoting_commands(kind="request"), rs.remoting_commands(kind="response"))
def test_command_kinds(request: RemotingCommand, response: RemotingCommand) -> None:
    assert not request.is_response
    assert response.is_response and not response.is_oneway


@given(st.lists(rs.frames(), max_size=5))
def test_frames_decode_whole_and_encode_again_the_same_command(frames: list[bytes]) -> None:
    decoder = FrameDecoder()
    decoder.feed(b"".join(frames))
    for frame in frames:
        cmd = decoder.next_frame()
        assert cmd is not None
        assert _decode_one(encode_command(cmd, cmd.serialize_type)) == cmd
        assert cmd.serialize_type == frame[4]  # the header-length word's high byte
    assert decoder.next_frame() is None and decoder.buffered == 0


@given(rs.frames(serialize_types=[SerializeType.ROCKETMQ]))
def test_frames_in_one_header_format(frame: bytes) -> None:
    assert _decode_one(frame).serialize_type == SerializeType.ROCKETMQ


# ------------------------------------------------------------------ messages


@given(rs.topic_names())
def test_topic_names_are_sendable(topic: str) -> None:
    assert validate_topic(topic) == topic


@given(rs.messages())
def test_messages_are_what_the_message_api_builds(msg: Message) -> None:
    validate_topic(msg.topic)
    # Every property is either a user property or set through the API.
    again = Message(
        msg.topic,
        msg.body,
        flag=msg.flag,
        tags=msg.tags,
        keys=msg.keys,
        properties=msg.user_properties,
        delay_level=msg.delay_level,
        deliver_at=msg.deliver_at,
    )
    assert again == msg
    assert decode_properties(encode_properties(msg.properties)) == msg.properties


@given(rs.messages(sendable=True))
def test_sendable_messages_pass_the_send_checks(msg: Message) -> None:
    assert msg.body
    if msg.tags is not None:
        validate_tags(msg.tags)


@given(rs.messages(topics=st.just("BatchTopic"), timers=False))
def test_messages_without_timers_go_in_a_batch(msg: Message) -> None:
    assert msg.delay_level == 0 and msg.deliver_at is None
    encode_batch([msg], ["ID"])


@given(rs.message_exts())
def test_message_exts_survive_the_stored_encoding(msg: MessageExt) -> None:
    (got,) = decode_messages(encode_stored_message(msg))
    got.sys_flag |= msg.sys_flag & 0x1  # decoding clears the compressed bit
    assert got == msg


@given(rs.stored_messages(min_count=1, max_count=3))
def test_stored_messages_decode_record_by_record(data: bytes) -> None:
    messages = decode_messages(data)
    assert 1 <= len(messages) <= 3
    offset = 0
    for whole in messages:
        single, offset = decode_message(data, offset)
        assert single.topic == whole.topic and single.body == whole.body
        assert single.store_size == whole.store_size
    assert offset == len(data)


# ------------------------------------------------------------------ routes


@given(rs.topic_routes())
def test_routes_round_trip_in_both_json_forms(route: TopicRouteData) -> None:
    for standard in (True, False):
        assert parse_topic_route(encode_topic_route(route, standard_json=standard)) == route
    # An order configuration, when there is one, is one a producer can use.
    publish_queues("T", route)
    subscribe_queues("T", route)


@given(rs.topic_routes(order_topic_conf=False, queue_mappings=False))
def test_plain_routes(route: TopicRouteData) -> None:
    assert route.order_topic_conf is None and not route.topic_queue_mapping_by_broker


@given(rs.route_bodies())
def test_route_bodies_parse(body: bytes) -> None:
    route = parse_topic_route(body)
    assert parse_topic_route(encode_topic_route(route)) == route


@given(st.sets(rs.message_queues(), max_size=5))
def test_message_queues_are_ordered_and_hashable(queues: set[MessageQueue]) -> None:
    ordered = sorted(queues)
    assert all(0 <= mq.queue_id < 2**31 for mq in ordered)


# ------------------------------------------------------------------ the fuzz contract

EVENT_TYPES = (Response, ServerRequest, RequestTimedOut, RequestFailed, ConnectionClosed)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if a < b]


def _frame_decoder_contract(chunks: list[bytes]) -> bool:
    """Feed ``chunks``; only commands, ``None`` or one RemoteProtocolError may come
    out. Return whether the stream was refused."""
    decoder = FrameDecoder(max_frame_size=1 << 12)
    for chunk in chunks:
        decoder.feed(chunk)
        while True:
            try:
                cmd = decoder.next_frame()
            except RemoteProtocolError as exc:
                assert str(exc)
                return True  # the stream has lost its framing: stop here
            if cmd is None:
                break
            assert isinstance(cmd, RemotingCommand)
    return False


def _connection_contract(chunks: list[bytes]) -> bool:
    """Feed ``chunks`` to a connection with requests in flight; ``receive_data``
    never raises, ``next_event`` gives events, ``None`` or a RemoteProtocolError
    once, after which the connection reports its end. Return whether it was refused."""
    conn = Connection(max_frame_size=1 << 12)
    for code in (10, 11, 12):
        conn.send_request(RemotingCommand(code), now=0.0, timeout=5.0)
    conn.data_to_send()
    errors: list[RemoteProtocolError] = []
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                errors.append(exc)
                continue
            if event is None:
                break
            assert isinstance(event, EVENT_TYPES)
            events.append(event)
    assert len(errors) <= 1
    if errors:
        assert conn.state is ConnectionState.CLOSED and conn.in_flight == 0
        assert events[-1] == ConnectionClosed(errors[0])
    else:
        assert conn.state is ConnectionState.OPEN
    return bool(errors)


def _small_opaque(cmd: RemotingCommand) -> RemotingCommand:
    cmd.opaque %= 5  # so that some responses match the requests in flight
    return cmd


valid_streams = st.lists(rs.frames(rs.remoting_commands().map(_small_opaque)), max_size=4).map(
    b"".join
)
cut_points = st.lists(st.integers(0, 2000), max_size=6)


@given(valid_streams, cut_points)
def test_valid_frames_in_any_chunking_are_never_refused(data: bytes, cuts: list[int]) -> None:
    chunks = _chunked(data, cuts)
    assert not _frame_decoder_contract(chunks)
    assert not _connection_contract(chunks)


@given(st.binary(max_size=600) | rs.mutated(valid_streams), cut_points)
def test_any_bytes_give_events_or_a_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    chunks = _chunked(data, cuts)
    refused = _frame_decoder_contract(chunks)
    # The connection decodes with the same decoder: it refuses the same streams.
    assert _connection_contract(chunks) == refused
