"""The connection state machine: correlation, timeouts, server requests, failures."""

from __future__ import annotations

import struct

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from rocketmq_proto.connection.connection import (
    Connection,
    ConnectionClosed,
    ConnectionState,
    Event,
    RequestFailed,
    RequestTimedOut,
    Response,
    ServerRequest,
)
from rocketmq_proto.strategies import remoting_commands
from rocketmq_proto.wire.codes import FLAG_ONEWAY, FLAG_RESPONSE, SerializeType
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
)


class FakeServer:
    """The far end of the wire: decodes what the client wrote, encodes answers."""

    def __init__(self, serialize_type: SerializeType = SerializeType.JSON) -> None:
        self.decoder = FrameDecoder()
        self.serialize_type = serialize_type

    def read(self, conn: Connection) -> list[RemotingCommand]:
        self.decoder.feed(conn.data_to_send())
        out = []
        while (cmd := self.decoder.next_frame()) is not None:
            out.append(cmd)
        return out

    def answer(self, request: RemotingCommand, code: int = 0, body: bytes = b"") -> bytes:
        response = RemotingCommand(
            code, {"k": "v"}, body, flag=FLAG_RESPONSE, opaque=request.opaque
        )
        return encode_command(response, self.serialize_type)


def drain(conn: Connection) -> list[Event]:
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


@pytest.mark.parametrize("server_type", list(SerializeType))
@pytest.mark.parametrize("client_type", list(SerializeType))
def test_response_matched_to_request_whatever_the_header_types(
    client_type: SerializeType, server_type: SerializeType
) -> None:
    conn = Connection(serialize_type=client_type)
    server = FakeServer(server_type)
    first = conn.send_request(RemotingCommand(105, {"topic": "A"}), now=0.0, timeout=3.0)
    second = conn.send_request(RemotingCommand(105, {"topic": "B"}), now=0.0, timeout=3.0)
    assert first != second
    sent = server.read(conn)
    assert [c.ext_fields["topic"] for c in sent] == ["A", "B"]
    assert all(c.serialize_type == client_type for c in sent)
    # Answers out of order, in one chunk.
    conn.receive_data(server.answer(sent[1], body=b"b") + server.answer(sent[0], body=b"a"))
    events = drain(conn)
    assert [(type(e), e.opaque, e.command.body) for e in events if isinstance(e, Response)] == [
        (Response, second, b"b"),
        (Response, first, b"a"),
    ]
    assert conn.in_flight == 0


def test_oneway_request_has_flag_and_is_not_tracked() -> None:
    conn = Connection()
    server = FakeServer()
    conn.send_request(RemotingCommand(15, {"x": "1"}), now=0.0, oneway=True)
    (sent,) = server.read(conn)
    assert sent.flag & FLAG_ONEWAY
    assert conn.in_flight == 0
    assert conn.next_deadline() is None


def test_request_without_timeout_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="positive timeout"):
        Connection().send_request(RemotingCommand(1), now=0.0)


def test_timeout_then_late_answer_is_dropped_quietly() -> None:
    conn = Connection()
    server = FakeServer()
    opaque = conn.send_request(RemotingCommand(11), now=10.0, timeout=2.0)
    (sent,) = server.read(conn)
    assert conn.next_deadline() == 12.0
    conn.handle_timer(11.9)
    assert drain(conn) == []
    conn.handle_timer(12.0)
    assert drain(conn) == [RequestTimedOut(opaque, 11)]
    assert conn.next_deadline() is None
    conn.receive_data(server.answer(sent))
    assert drain(conn) == []
    assert conn.late_responses == 1
    assert conn.state is ConnectionState.OPEN


def test_cancelled_request_answer_is_dropped() -> None:
    conn = Connection()
    server = FakeServer()
    opaque = conn.send_request(RemotingCommand(11), now=0.0, timeout=5.0)
    (sent,) = server.read(conn)
    assert conn.cancel(opaque)
    assert not conn.cancel(opaque)
    conn.receive_data(server.answer(sent))
    assert drain(conn) == []
    assert conn.late_responses == 1


def test_unknown_opaque_is_dropped_and_counted() -> None:
    conn = Connection()
    conn.receive_data(encode_command(RemotingCommand(0, flag=FLAG_RESPONSE, opaque=999)))
    assert drain(conn) == []
    assert conn.unmatched_responses == 1


def test_server_request_is_surfaced_and_answered_with_its_opaque() -> None:
    conn = Connection()
    server = FakeServer()
    check = RemotingCommand(39, {"msgId": "M"}, b"stored", opaque=77)
    conn.receive_data(encode_command(check))
    (event,) = drain(conn)
    assert isinstance(event, ServerRequest)
    assert event.command.ext_fields == {"msgId": "M"}
    conn.send_response(event.command, 0, body=b"ok", remark="fine")
    (answer,) = server.read(conn)
    assert answer.opaque == 77
    assert answer.is_response
    assert (answer.body, answer.remark) == (b"ok", "fine")


def test_oneway_server_request_cannot_be_answered() -> None:
    conn = Connection()
    conn.receive_data(encode_command(RemotingCommand(40, flag=FLAG_ONEWAY, opaque=1)))
    (event,) = drain(conn)
    assert isinstance(event, ServerRequest)
    with pytest.raises(LocalProtocolError, match="oneway"):
        conn.send_response(event.command, 0)


def test_malformed_frame_fails_everything_in_flight() -> None:
    conn = Connection()
    a = conn.send_request(RemotingCommand(10), now=0.0, timeout=1.0)
    b = conn.send_request(RemotingCommand(11), now=0.0, timeout=1.0)
    conn.receive_data(struct.pack(">i", -5))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    events = drain(conn)
    failed = [e for e in events if isinstance(e, RequestFailed)]
    assert {(e.opaque, e.request_code) for e in failed} == {(a, 10), (b, 11)}
    assert all(isinstance(e.error, ConnectionClosedError) for e in failed)
    assert isinstance(events[-1], ConnectionClosed)
    assert isinstance(events[-1].error, RemoteProtocolError)
    assert conn.state is ConnectionState.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send_request(RemotingCommand(1), now=0.0, timeout=1.0)
    assert conn.data_to_send() == b""


def test_peer_close_and_clean_close() -> None:
    conn = Connection()
    a = conn.send_request(RemotingCommand(10), now=0.0, timeout=1.0)
    conn.receive_data(b"")
    events = drain(conn)
    assert isinstance(events[0], RequestFailed) and events[0].opaque == a
    assert isinstance(events[1], ConnectionClosed)
    assert isinstance(events[1].error, ConnectionClosedError)

    clean = Connection()
    clean.connection_lost(None)
    assert drain(clean) == [ConnectionClosed(None)]
    clean.connection_lost(None)  # idempotent
    assert drain(clean) == []


def test_signer_adds_fields_to_requests_only() -> None:
    seen: list[tuple[dict[str, str], bytes]] = []

    def signer(fields: dict[str, str], body: bytes) -> dict[str, str]:
        seen.append((dict(fields), body))
        return {"Signature": "sig"}

    conn = Connection(signer=signer)
    server = FakeServer()
    conn.send_request(RemotingCommand(10, {"a": "1"}, b"B"), now=0.0, timeout=1.0)
    (sent,) = server.read(conn)
    assert seen == [({"a": "1"}, b"B")]
    assert sent.ext_fields == {"a": "1", "Signature": "sig"}


def test_opaque_wraps_before_overflow_and_skips_ids_in_flight() -> None:
    conn = Connection()
    conn._next_opaque = 0x7FFFFFFF
    last = conn.send_request(RemotingCommand(1), now=0.0, timeout=1.0)
    first = conn.send_request(RemotingCommand(1), now=0.0, timeout=1.0)
    assert (last, first) == (0x7FFFFFFF, 1)
    conn._next_opaque = 1
    assert conn.send_request(RemotingCommand(1), now=0.0, timeout=1.0) == 2


class ConnectionMachine(RuleBasedStateMachine):
    """Random interleavings of requests, answers, server requests, timeouts and garbage."""

    sent = Bundle("sent")

    def __init__(self) -> None:
        super().__init__()
        self.conn = Connection(max_frame_size=1 << 16)
        self.server = FakeServer()
        self.now = 0.0
        self.pending: dict[int, tuple[int, float]] = {}
        self.seen_by_server: dict[int, RemotingCommand] = {}
        self.closed = False
        self.expected_failed: set[int] = set()

    def _server_reads(self) -> None:
        for cmd in self.server.read(self.conn):
            self.seen_by_server[cmd.opaque] = cmd

    @precondition(lambda self: not self.closed)
    @rule(target=sent, code=st.integers(0, 400), timeout=st.floats(0.1, 10.0))
    def send(self, code: int, timeout: float) -> int:
        opaque = self.conn.send_request(RemotingCommand(code), now=self.now, timeout=timeout)
        assert opaque not in self.pending
        self.pending[opaque] = (code, self.now + timeout)
        self._server_reads()
        return opaque

    @precondition(lambda self: not self.closed)
    @rule(code=st.integers(0, 400))
    def send_oneway(self, code: int) -> None:
        opaque = self.conn.send_request(RemotingCommand(code), now=self.now, oneway=True)
        self._server_reads()
        assert self.seen_by_server[opaque].is_oneway

    @precondition(lambda self: not self.closed)
    @rule(
        opaque=consumes(sent),
        reply=remoting_commands(kind="response"),
        serialize_type=st.sampled_from(list(SerializeType)),
        split=st.integers(0, 60),
    )
    def answer(
        self, opaque: int, reply: RemotingCommand, serialize_type: SerializeType, split: int
    ) -> None:
        reply.opaque = self.seen_by_server[opaque].opaque
        frame = encode_command(reply, serialize_type)
        for chunk in (frame[:split], frame[split:]):
            if chunk:  # an empty chunk means end of stream
                self.conn.receive_data(chunk)
        events = drain(self.conn)
        if opaque in self.pending:
            code, _ = self.pending.pop(opaque)
            assert events == [Response(opaque, code, reply)]
        else:
            assert events == []

    @precondition(lambda self: not self.closed)
    @rule(
        request=remoting_commands(kind="request"),
        serialize_type=st.sampled_from(list(SerializeType)),
    )
    def server_request(self, request: RemotingCommand, serialize_type: SerializeType) -> None:
        self.conn.receive_data(encode_command(request, serialize_type))
        (event,) = drain(self.conn)
        assert isinstance(event, ServerRequest)
        assert event.command == request
        if not request.is_oneway:
            self.conn.send_response(event.command, 0)
            (answer,) = self.server.read(self.conn)
            assert answer.is_response and answer.opaque == request.opaque

    @precondition(lambda self: not self.closed)
    @rule(dt=st.floats(0.0, 5.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.conn.handle_timer(self.now)
        events = drain(self.conn)
        expired = {o for o, (_, d) in self.pending.items() if d <= self.now}
        assert {e.opaque for e in events if isinstance(e, RequestTimedOut)} == expired
        assert len(events) == len(expired)
        for opaque in expired:
            del self.pending[opaque]

    @precondition(lambda self: not self.closed)
    @rule(garbage=st.sampled_from([struct.pack(">i", -1), struct.pack(">ii", 8, 99) + b"abcd"]))
    def garbage(self, garbage: bytes) -> None:
        self.conn.receive_data(garbage)
        with pytest.raises(RemoteProtocolError):
            self.conn.next_event()
        self._closed_with_failures()

    @precondition(lambda self: not self.closed)
    @rule()
    def peer_closes(self) -> None:
        self.conn.receive_data(b"")
        self._closed_with_failures()

    def _closed_with_failures(self) -> None:
        events = drain(self.conn)
        assert isinstance(events[-1], ConnectionClosed)
        assert {e.opaque for e in events[:-1] if isinstance(e, RequestFailed)} == set(self.pending)
        self.pending.clear()
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule()
    def closed_refuses_sends(self) -> None:
        with pytest.raises(LocalProtocolError):
            self.conn.send_request(RemotingCommand(1), now=self.now, timeout=1.0)

    @invariant()
    def table_matches_model(self) -> None:
        assert self.conn.in_flight == len(self.pending)
        deadlines = [d for _, d in self.pending.values()]
        assert self.conn.next_deadline() == (min(deadlines) if deadlines else None)


TestConnectionMachine = ConnectionMachine.TestCase
