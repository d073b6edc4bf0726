"""Counts the requests clients send to a name server and its brokers.

A relay on 127.0.0.1 in front of the name server, and one in front of each
broker: the clients are given the relay's name server address, and the routes it
answers name the brokers' relays instead of the brokers (the address is replaced
by one of the same length, so that no frame's length changes). Every request a
client sends through a relay is noted with its time and request code; the relays
forward every byte unchanged otherwise.

It serves the 1,000-topic row of ``side_by_side.py``: how many route requests and
heartbeats each client sends per minute, whatever its language.

    with WireCount("127.0.0.1:9876") as counter:
        ... run a client against counter.namesrv_addr ...
        counter.requests(105, since, until)   # GET_ROUTEINFO_BY_TOPIC
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from rocketmq_proto import RocketMQError
from rocketmq_proto.wire.codes import RequestCode
from rocketmq_proto.wire.command import RemotingCommand, decode_header

#: Request codes the benchmark counts.
GET_ROUTEINFO_BY_TOPIC = int(RequestCode.GET_ROUTEINFO_BY_TOPIC)
HEART_BEAT = int(RequestCode.HEART_BEAT)


def request_of(frame: bytes) -> RemotingCommand | None:
    """The request one whole frame (its 4-byte length included) carries (its header
    only); ``None`` for a response or a header that cannot be read."""
    if len(frame) < 8:
        return None
    (mark,) = struct.unpack_from(">I", frame, 4)
    try:
        command = decode_header(frame[8 : 8 + (mark & 0xFFFFFF)], mark >> 24)
    except (RocketMQError, ValueError):
        return None
    return None if command.is_response else command


class _Frames:
    """Splits a byte stream into whole frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from(">I", self._buffer)
            if len(self._buffer) < 4 + length:
                break
            frames.append(bytes(self._buffer[: 4 + length]))
            del self._buffer[: 4 + length]
        return frames


class _Relay(asyncio.Protocol):
    """One client connection relayed to ``upstream``: the client's requests noted,
    the server's frames passed through ``rewrite`` (whole frames) when given."""

    def __init__(
        self,
        upstream: tuple[str, int],
        note: Callable[[RemotingCommand], None],
        rewrite: Callable[[bytes], bytes] | None,
        relays: set[_Relay],
    ) -> None:
        self._relays = relays
        self._upstream = upstream
        self._note = note
        self._rewrite = rewrite
        self._requests = _Frames()
        self._client: asyncio.Transport | None = None
        self._server: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client = transport
        transport.pause_reading()
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server, _ = await loop.create_connection(lambda: _Upstream(self), *self._upstream)
        except OSError:
            if self._client is not None:
                self._client.close()
            return
        if self._lost:  # the client left while this connected
            self._server.close()
            return
        for data in self._pending:
            self._server.write(data)
        self._pending.clear()
        if self._client is not None and not self._client.is_closing():
            self._client.resume_reading()

    def data_received(self, data: bytes) -> None:
        for frame in self._requests.feed(data):
            request = request_of(frame)
            if request is not None:
                self._note(request)
        if self._server is None:
            self._pending.append(data)
        else:
            self._server.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._relays.discard(self)
        if self._server is not None:
            self._server.close()

    def close(self) -> None:
        """Closes both sides."""
        for side in (self._client, self._server):
            if side is not None:
                side.close()

    def from_server(self, data: bytes) -> None:
        if self._client is not None:
            self._client.write(data)

    def server_lost(self) -> None:
        if self._client is not None:
            self._client.close()


class _Upstream(asyncio.Protocol):
    def __init__(self, relay: _Relay) -> None:
        self._relay = relay
        self._frames = _Frames() if relay._rewrite is not None else None

    def data_received(self, data: bytes) -> None:
        if self._frames is None:
            self._relay.from_server(data)
            return
        rewrite = self._relay._rewrite
        assert rewrite is not None
        for frame in self._frames.feed(data):
            self._relay.from_server(rewrite(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.server_lost()


class WireCount:
    """Relays in front of the name server ``namesrv`` and of the ``brokers``
    (addresses ``host:port``), each request noted as ``(time, code)``."""

    def __init__(self, namesrv: str, brokers: list[str]) -> None:
        self._namesrv = namesrv
        self._brokers = brokers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wire-count", daemon=True
        )
        #: (wall-clock time, request code, subject) of each request: the subject is
        #: the topic of a route request, the server's address of any other.
        self.notes: list[tuple[float, int, str]] = []
        self._renames: list[tuple[bytes, bytes]] = []
        self._servers: list[asyncio.Server] = []
        self._relays: set[_Relay] = set()
        self.namesrv_addr = ""

    def __enter__(self) -> WireCount:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        for server in self._servers:
            server.close()
        for relay in list(self._relays):
            relay.close()
        for server in self._servers:
            await server.wait_closed()

    def _rename(self, frame: bytes) -> bytes:
        for old, new in self._renames:
            frame = frame.replace(old, new)
        return frame

    async def _listen(self, upstream: str, rewrite: Callable[[bytes], bytes] | None) -> str:
        host, port = upstream.rsplit(":", 1)

        def note(request: RemotingCommand) -> None:
            subject = upstream
            if request.code == GET_ROUTEINFO_BY_TOPIC:
                subject = request.get("topic") or ""
            self.notes.append((time.time(), request.code, subject))

        def relay() -> _Relay:
            made = _Relay((host, int(port)), note, rewrite, self._relays)
            self._relays.add(made)
            return made

        server = await self._loop.create_server(relay, "127.0.0.1", 0)
        self._servers.append(server)
        return f"127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _start(self) -> None:
        for broker in self._brokers:
            relay = await self._listen(broker, None)
            if len(relay) != len(broker):
                raise RuntimeError(f"relay address {relay} is not as long as {broker}")
            self._renames.append((broker.encode(), relay.encode()))
        self.namesrv_addr = await self._listen(self._namesrv, self._rename)

    def requests(self, code: int, since: float, until: float) -> int:
        """Requests of ``code`` noted between the wall-clock times ``since`` and ``until``."""
        return sum(1 for at, c, _ in list(self.notes) if c == code and since <= at <= until)

    def per_minute(self, code: int, since: float, until: float) -> float:
        """The steady rate of ``code`` requests between ``since`` and ``until``, per
        minute: for each subject (a route's topic, a heartbeat's broker) asked at
        least twice, 60 s over the mean time between its requests, summed.

        Counting the requests in a window would depend on where the window falls
        among periodic rounds (a 60 s window holds one or two 30 s heartbeat rounds
        to a broker); the mean interval does not."""
        times: defaultdict[str, list[float]] = defaultdict(list)
        for at, c, subject in list(self.notes):
            if c == code and since <= at <= until:
                times[subject].append(at)
        return sum(
            60 * (len(ts) - 1) / (ts[-1] - ts[0])
            for ts in times.values()
            if len(ts) > 1 and ts[-1] > ts[0]
        )
