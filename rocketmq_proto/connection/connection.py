"""One TCP connection to a name server or broker, as a state machine.

The driver owns the socket and the clock. It feeds received bytes to
:meth:`Connection.receive_data`, drains :meth:`Connection.next_event`, writes
what :meth:`Connection.data_to_send` returns, and calls
:meth:`Connection.handle_timer` when :meth:`Connection.next_deadline` passes.

The connection allocates opaques and keeps the table of requests in flight, so
that responses are matched to requests here, once, for every driver. A response
that arrives after its request timed out (or was cancelled) is dropped quietly,
as Java's client does; the ids of such requests are remembered in a bounded
table so that the drop is a known case rather than a guess.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from rocketmq_proto.wire.codes import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    LanguageCode,
    SerializeType,
    request_name,
)
from rocketmq_proto.wire.command import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_VERSION,
    FrameDecoder,
    RemotingCommand,
    encode_command,
)
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
    RocketMQError,
)
from rocketmq_proto.wire.logfields import log_fields

#: Signs an outgoing request: given all its ext fields and its body, returns the
#: fields to add (see :func:`rocketmq_proto.sign_request`).
Signer = Callable[[dict[str, str], bytes], dict[str, str]]

_OPAQUE_LIMIT = 0x7FFFFFFF  # opaques are Java ints: wrap before going negative
_RECENTLY_CLOSED_LIMIT = 4096


# ------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to a request we sent, matched by opaque."""

    opaque: int
    request_code: int
    command: RemotingCommand


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """A request the server sent us (check-back, ids changed, running info...).

    Answer it with :meth:`Connection.send_response` unless ``command.is_oneway``.
    """

    command: RemotingCommand


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No answer arrived before the deadline; a late answer will be dropped."""

    opaque: int
    request_code: int


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """The connection ended (or broke) with this request still in flight."""

    opaque: int
    request_code: int
    error: RocketMQError


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over; ``error`` says why if it was not a clean close."""

    error: RocketMQError | None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler of a :class:`ServerRequest` answers (see :meth:`Connection.send_response`)."""

    code: int
    ext_fields: dict[str, str] | None = None
    body: bytes = b""
    remark: str | None = None


Event = Response | ServerRequest | RequestTimedOut | RequestFailed | ConnectionClosed


class ConnectionState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Connection:
    """The protocol side of one remoting connection.

    ``serialize_type`` is the header format we send; whatever the server answers
    in is decoded. ``signer`` (for ACL) signs each outgoing request.
    """

    def __init__(
        self,
        *,
        serialize_type: SerializeType = SerializeType.JSON,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        language: int = LanguageCode.PYTHON,
        version: int = DEFAULT_VERSION,
        signer: Signer | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.serialize_type = SerializeType(serialize_type)
        self._serialize_code = int(self.serialize_type)
        self.language = language
        self.version = version
        self._signer = signer
        self._log = logger or logging.getLogger("rocketmq_proto.connection")
        self._decoder = FrameDecoder(max_frame_size)
        self._out: list[bytes] = []
        self._out_bytes = 0  # the bytes in _out
        self._events: deque[Event] = deque()
        self._in_flight: dict[int, tuple[int, float]] = {}  # opaque -> (code, deadline)
        self._deadlines: list[tuple[float, int]] = []  # heap; entries may be stale
        self._recently_closed: OrderedDict[int, None] = OrderedDict()
        self._next_opaque = 1
        self._state = ConnectionState.OPEN
        self._error: RocketMQError | None = None
        #: Responses dropped because their request had timed out or been cancelled.
        self.late_responses = 0
        #: Responses whose opaque matched nothing we ever sent or remember.
        self.unmatched_responses = 0

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def in_flight(self) -> int:
        """Requests sent and still waiting for an answer."""
        return len(self._in_flight)

    def is_in_flight(self, opaque: int) -> bool:
        return opaque in self._in_flight

    # ---------------------------------------------------------------- sending

    def _allocate_opaque(self) -> int:
        opaque = self._next_opaque
        # Skip ids still waiting for an answer after a wrap-around.
        while opaque in self._in_flight:
            opaque = opaque + 1 if opaque < _OPAQUE_LIMIT else 1
        self._next_opaque = opaque + 1 if opaque < _OPAQUE_LIMIT else 1
        return opaque

    def _check_open(self) -> None:
        if self._state is not ConnectionState.OPEN:
            raise LocalProtocolError("connection is closed") from self._error

    def send_request(
        self,
        command: RemotingCommand,
        now: float,
        timeout: float | None = None,
        *,
        oneway: bool = False,
    ) -> int:
        """Queue ``command`` for sending and return the opaque it was given.

        A request with ``oneway=True`` gets the oneway flag and is not tracked: the
        server sends no answer. Otherwise ``timeout`` (seconds from ``now``) is
        required and a :class:`Response` or :class:`RequestTimedOut` follows.
        """
        if self._state is not ConnectionState.OPEN:
            self._check_open()
        if oneway:
            command.flag = (command.flag | FLAG_ONEWAY) & ~FLAG_RESPONSE
        else:
            if timeout is None or timeout <= 0:
                raise InvalidArgumentError(f"a request needs a positive timeout, got {timeout!r}")
            if command.flag:
                command.flag &= ~(FLAG_ONEWAY | FLAG_RESPONSE)
        opaque = self._next_opaque
        if opaque in self._in_flight or opaque >= _OPAQUE_LIMIT:
            opaque = self._allocate_opaque()
        else:
            self._next_opaque = opaque + 1
        command.opaque = opaque
        if command.language != self.language or command.version != self.version:
            command.language = self.language
            command.version = self.version
            command.json_head = None
        if self._signer is not None:
            command.ext_fields.update(self._signer(command.all_ext_fields(), command.body))
            command.json_head = None
        frame = encode_command(command, self._serialize_code)
        self._out.append(frame)
        self._out_bytes += len(frame)
        if not oneway:
            deadline = now + timeout  # type: ignore[operator]
            self._in_flight[opaque] = (command.code, deadline)
            heapq.heappush(self._deadlines, (deadline, opaque))
        return opaque

    def send_response(
        self,
        request: RemotingCommand,
        code: int,
        *,
        ext_fields: dict[str, str] | None = None,
        body: bytes = b"",
        remark: str | None = None,
    ) -> None:
        """Answer a :class:`ServerRequest` (echoing its opaque, with the response flag)."""
        self._check_open()
        if request.is_response:
            raise LocalProtocolError("cannot answer a response")
        if request.is_oneway:
            raise LocalProtocolError(f"{request_name(request.code)} was oneway: it takes no answer")
        response = RemotingCommand(
            code,
            ext_fields,
            body,
            remark=remark,
            flag=FLAG_RESPONSE,
            opaque=request.opaque,
            language=self.language,
            version=self.version,
        )
        frame = encode_command(response, self._serialize_code)
        self._out.append(frame)
        self._out_bytes += len(frame)

    def send_reply(self, request: RemotingCommand, reply: Reply) -> None:
        """:meth:`send_response` with the fields of a :class:`Reply`."""
        self.send_response(
            request, reply.code, ext_fields=reply.ext_fields, body=reply.body, remark=reply.remark
        )

    def data_to_send(self) -> bytes:
        """Bytes to write to the socket (and forget); empty if there are none."""
        if not self._out:
            return b""
        out = self._out
        self._out = []
        self._out_bytes = 0
        return out[0] if len(out) == 1 else b"".join(out)

    @property
    def bytes_to_send(self) -> int:
        """How many bytes :meth:`data_to_send` would return now."""
        return self._out_bytes

    def cancel(self, opaque: int) -> bool:
        """Forget a request (its caller gave up); a late answer is then dropped."""
        if self._in_flight.pop(opaque, None) is None:
            return False
        self._remember_closed(opaque)
        return True

    # -------------------------------------------------------------- receiving

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed it."""
        if self._state is not ConnectionState.OPEN:
            return
        if not data:
            self.connection_lost(ConnectionClosedError("connection closed by peer"))
            return
        self._decoder.feed(data)

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when more input is needed.

        Raises :class:`RemoteProtocolError` once if the peer sent a malformed
        frame; the connection is then closed and the following calls report each
        request that was in flight as :class:`RequestFailed`, then
        :class:`ConnectionClosed`.
        """
        while True:
            if self._events:
                return self._events.popleft()
            if self._state is not ConnectionState.OPEN:
                return None
            try:
                command = self._decoder.next_frame()
            except RemoteProtocolError as exc:
                self._fail(exc)
                raise
            if command is None:
                return None
            event = self._classify(command)
            if event is not None:
                return event

    def _classify(self, command: RemotingCommand) -> Event | None:
        if not command.is_response:
            return ServerRequest(command)
        opaque = command.opaque
        pending = self._in_flight.pop(opaque, None)
        if pending is not None:
            return Response(opaque, pending[0], command)
        if opaque in self._recently_closed:
            self.late_responses += 1
            self._log.debug(
                "dropping late response with opaque %d",
                opaque,
                extra=log_fields(opaque=opaque, code=command.code),
            )
        else:
            self.unmatched_responses += 1
            self._log.warning(
                "dropping response with opaque %d, code %d: no such request",
                opaque,
                command.code,
                extra=log_fields(opaque=opaque, code=command.code),
            )
        return None

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or ``None``."""
        heap = self._deadlines
        while heap:
            deadline, opaque = heap[0]
            pending = self._in_flight.get(opaque)
            if pending is not None and pending[1] == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Expire every request whose deadline is at or before ``now``."""
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, opaque = heapq.heappop(heap)
            pending = self._in_flight.get(opaque)
            if pending is None or pending[1] != deadline:
                continue
            del self._in_flight[opaque]
            self._remember_closed(opaque)
            self._events.append(RequestTimedOut(opaque, pending[0]))

    def _remember_closed(self, opaque: int) -> None:
        closed = self._recently_closed
        closed[opaque] = None
        if len(closed) > _RECENTLY_CLOSED_LIMIT:
            closed.popitem(last=False)

    # ----------------------------------------------------------------- closing

    def connection_lost(self, error: RocketMQError | None = None) -> None:
        """The transport is gone (``error`` None: we closed it on purpose)."""
        if self._state is ConnectionState.OPEN:
            self._fail(error or ConnectionClosedError("connection closed"))
            if error is None:
                # A clean close: report it as such after failing what was in flight.
                last = self._events.pop()
                assert isinstance(last, ConnectionClosed)
                self._events.append(ConnectionClosed(None))

    def _fail(self, error: RocketMQError) -> None:
        self._state = ConnectionState.CLOSED
        self._error = error
        self._out.clear()
        self._out_bytes = 0
        pending_error: RocketMQError = error
        if not isinstance(error, ConnectionClosedError):
            pending_error = ConnectionClosedError(f"connection failed: {error}")
            pending_error.__cause__ = error
        for opaque, (request_code, _) in self._in_flight.items():
            self._events.append(RequestFailed(opaque, request_code, pending_error))
        self._in_flight.clear()
        self._deadlines.clear()
        self._events.append(ConnectionClosed(error))
