"""The frame and header codecs: exact byte layouts, round trips, and hostile input."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rocketmq_proto.strategies import remoting_commands
from rocketmq_proto.wire.codes import LanguageCode, SerializeType
from rocketmq_proto.wire.command import (
    ExtTemplate,
    FrameDecoder,
    RemotingCommand,
    decode_binary_header,
    decode_json_header,
    encode_binary_header,
    encode_command,
    encode_json_header,
)
from rocketmq_proto.wire.errors import InvalidArgumentError, RemoteProtocolError

# ------------------------------------------------------------ exact layouts


def test_binary_header_exact_layout() -> None:
    cmd = RemotingCommand(310, {"a": "g"}, remark="ok", flag=1, opaque=0x01020304, version=479)
    expected = (
        struct.pack(">hbhii", 310, 3, 479, 0x01020304, 1)
        + struct.pack(">i", 2)
        + b"ok"
        + struct.pack(">i", 2 + 1 + 4 + 1)
        + struct.pack(">h", 1)
        + b"a"
        + struct.pack(">i", 1)
        + b"g"
    )
    assert encode_binary_header(cmd) == expected


def test_binary_header_null_remark_and_no_ext_fields() -> None:
    cmd = RemotingCommand(34, opaque=9, version=479)
    assert encode_binary_header(cmd) == struct.pack(">hbhiiii", 34, 3, 479, 9, 0, 0, 0)
    decoded = decode_binary_header(encode_binary_header(cmd))
    assert decoded.remark is None
    assert decoded.ext_fields == {}


def test_frame_exact_layout_json() -> None:
    cmd = RemotingCommand(105, {"topic": "T"}, b"xy", opaque=5)
    frame = encode_command(cmd, SerializeType.JSON)
    length, word = struct.unpack_from(">ii", frame)
    header = frame[8 : 8 + (word & 0xFFFFFF)]
    assert word >> 24 == 0
    assert length == len(frame) - 4 == 4 + len(header) + 2
    assert frame.endswith(b"xy")
    assert json.loads(header) == {
        "code": 105,
        "extFields": {"topic": "T"},
        "flag": 0,
        "language": "PYTHON",
        "opaque": 5,
        "serializeTypeCurrentRPC": "JSON",
        "version": 479,
    }


def test_frame_exact_layout_rocketmq_marks_serialize_type() -> None:
    frame = encode_command(RemotingCommand(105, opaque=5), SerializeType.ROCKETMQ)
    (_, word) = struct.unpack_from(">ii", frame)
    assert word >> 24 == 1
    assert word & 0xFFFFFF == 21


def test_json_header_escapes_separators_and_quotes() -> None:
    cmd = RemotingCommand(10, {"i": 'KEYS\x01a "b"\x02', 'q"': "\\"}, remark="line\nnext")
    obj = json.loads(encode_json_header(cmd))
    assert obj["extFields"] == {"i": 'KEYS\x01a "b"\x02', 'q"': "\\"}
    assert obj["remark"] == "line\nnext"


def test_json_header_from_java_style_response() -> None:
    raw = (
        b'{"code":0,"extFields":{"queueId":"3","msgId":"C0A8","queueOffset":"17"},'
        b'"flag":1,"language":"JAVA","opaque":42,"serializeTypeCurrentRPC":"JSON","version":453}'
    )
    cmd = decode_json_header(raw)
    assert (cmd.code, cmd.flag, cmd.opaque, cmd.version) == (0, 1, 42, 453)
    assert cmd.language == LanguageCode.JAVA
    assert cmd.is_response
    assert cmd.ext_fields["queueOffset"] == "17"


def test_json_header_from_go_style_numbers_and_nulls() -> None:
    raw = (
        b'{"code":0,"language":9,"version":317,"opaque":1,"flag":1,"remark":null,'
        b'"extFields":{"offset":12,"x":null,"b":true}}'
    )
    cmd = decode_json_header(raw)
    assert cmd.language == 9
    assert cmd.remark is None
    assert cmd.ext_fields == {"offset": "12", "b": "true"}


def test_template_fields_are_encoded_in_both_formats() -> None:
    template = ExtTemplate({"a": "group", "b": "topic"})
    cmd = RemotingCommand(310, {"e": "1"}, template=template, opaque=3)
    for serialize_type in SerializeType:
        decoder = FrameDecoder()
        decoder.feed(encode_command(cmd, serialize_type))
        got = decoder.next_frame()
        assert got is not None
        assert got.ext_fields == {"a": "group", "b": "topic", "e": "1"}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "not an object"),
        (b'{"opaque":1}', "no 'code'"),
        (b'{"code":"x"}', "'code' is not an integer"),
        (b'{"code":1,"extFields":[1]}', "'extFields' is not an object"),
        (b'{"code":1,"extFields":{"a":[1]}}', "ext field 'a'"),
        (b'{"code":1,"remark":5}', "'remark'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_json_headers_are_remote_protocol_errors(raw: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        decode_json_header(raw)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\x00" * 5, "shorter than 21"),
        (struct.pack(">hbhiii", 1, 0, 0, 0, 0, 100) + b"\x00" * 4, "remark length 100"),
        (struct.pack(">hbhiiii", 1, 0, 0, 0, 0, 0, 50), "ext fields length 50"),
        (struct.pack(">hbhiiii", 1, 0, 0, 0, 0, 0, 1) + b"\x00", "truncated ext field key"),
        (
            struct.pack(">hbhiii", 1, 0, 0, 0, 0, 1) + b"\xff" + struct.pack(">i", 0),
            "remark is not valid UTF-8",
        ),
        (struct.pack(">hbhiiii", 1, 0, 0, 0, 0, 0, 0) + b"zz", "trailing bytes"),
    ],
)
def test_malformed_binary_headers_are_remote_protocol_errors(raw: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        decode_binary_header(raw)


# ------------------------------------------------------------------ framing


def test_two_gib_length_is_rejected_at_once() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">i", 0x7FFFFFFF))
    with pytest.raises(RemoteProtocolError, match="exceeds the maximum frame size"):
        decoder.next_frame()
    assert decoder.buffered == 4  # nothing of the frame was waited for or allocated


def test_negative_and_tiny_lengths_are_rejected() -> None:
    for length in (-1, 0, 3):
        decoder = FrameDecoder()
        decoder.feed(struct.pack(">i", length))
        with pytest.raises(RemoteProtocolError, match="less than 4"):
            decoder.next_frame()


def test_header_length_larger_than_frame_is_rejected() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">ii", 8, 100) + b"\x00" * 4)
    with pytest.raises(RemoteProtocolError, match="header length 100 exceeds"):
        decoder.next_frame()


def test_unknown_serialize_type_is_rejected() -> None:
    decoder = FrameDecoder()
    decoder.feed(struct.pack(">ii", 6, (7 << 24) | 2) + b"{}")
    with pytest.raises(RemoteProtocolError, match="serialize type 7"):
        decoder.next_frame()


def test_configurable_max_frame_size() -> None:
    frame = encode_command(RemotingCommand(1, body=b"x" * 1000))
    small = FrameDecoder(max_frame_size=512)
    small.feed(frame)
    with pytest.raises(RemoteProtocolError):
        small.next_frame()
    big = FrameDecoder(max_frame_size=len(frame))
    big.feed(frame)
    assert big.next_frame() is not None
    with pytest.raises(InvalidArgumentError):
        FrameDecoder(max_frame_size=4)


def test_partial_frame_waits_and_buffer_is_released() -> None:
    frame = encode_command(RemotingCommand(1, {"k": "v"}, b"body"))
    decoder = FrameDecoder()
    decoder.feed(frame[:-1])
    assert decoder.next_frame() is None
    decoder.feed(frame[-1:])
    got = decoder.next_frame()
    assert got is not None and got.body == b"body"
    assert decoder.buffered == 0


# --------------------------------------------------------------- properties


@given(remoting_commands(), st.sampled_from(list(SerializeType)))
def test_command_round_trips(cmd: RemotingCommand, serialize_type: SerializeType) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_command(cmd, serialize_type))
    got = decoder.next_frame()
    assert got == cmd
    assert got is not None and got.serialize_type == serialize_type
    assert decoder.next_frame() is None


def _decode_all(chunks: list[bytes]) -> list[RemotingCommand] | str:
    decoder = FrameDecoder(max_frame_size=4096)
    out: list[RemotingCommand] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while (cmd := decoder.next_frame()) is not None:
                out.append(cmd)
    except RemoteProtocolError:
        out.append(RemotingCommand(-1))  # marks where the stream broke
    return out


@given(st.lists(remoting_commands(), max_size=6), st.sampled_from(list(SerializeType)), st.data())
def test_any_chunking_gives_the_same_commands(
    cmds: list[RemotingCommand], serialize_type: SerializeType, data: st.DataObject
) -> None:
    stream = b"".join(encode_command(c, serialize_type) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _decode_all(chunks) == cmds
    assert _decode_all([stream[i : i + 1] for i in range(len(stream))]) == cmds


@given(st.binary(max_size=400), st.data())
def test_garbage_gives_only_commands_or_protocol_errors(raw: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    whole = _decode_all([raw])
    assert _decode_all(chunks) == whole
    assert _decode_all([raw[i : i + 1] for i in range(len(raw))]) == whole


@given(st.binary(max_size=200))
def test_garbage_headers_raise_only_remote_protocol_errors(raw: bytes) -> None:
    for decode in (decode_json_header, decode_binary_header):
        try:
            result = decode(raw)
        except RemoteProtocolError as exc:
            assert str(exc)  # the error says what was wrong
        else:
            assert isinstance(result, RemotingCommand)
