"""The asyncio transport and effect interpreter, against a small fake broker.

The fake broker speaks only frames (``FrameDecoder`` in, ``encode_command`` out);
these tests prove what the driver does with bytes and sockets: pipelining,
timers, reconnects, server requests, TLS, flow control. What a real broker
answers is the contract suite's business.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import random
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rocketmq_asyncio._interpreter import FlowTasks
from rocketmq_asyncio._interpreter import run_flow as run_flow_in
from rocketmq_asyncio._transport import RemotingClient
from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.connection.pool import ReconnectBackoff
from rocketmq_proto.driver import transport_settings
from rocketmq_proto.flows.effects import Call, Effect, Now, Oneway, Sleep, UserCall, WallTime
from rocketmq_proto.wire.codes import FLAG_RESPONSE, ResponseCode
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    RemoteProtocolError,
    RequestTimeoutError,
    UserCallbackError,
)

T = TypeVar("T")

# Request codes the fake broker treats specially.
ECHO = 0
NEVER_ANSWER = 6
HANG_UP = 5
GARBAGE = 7
HOLD = 8  # answered when the test says so

#: The timeout of requests that must succeed: generous, the test machine may be busy.
LONG = 30.0


def run(coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class FakeConn:
    """The broker's end of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.replies: asyncio.Queue[RemotingCommand] = asyncio.Queue()
        self.reading = asyncio.Event()
        self.reading.set()

    def send(self, command: RemotingCommand) -> None:
        self.writer.write(encode_command(command))

    def answer(self, request: RemotingCommand, code: int = 0, body: bytes | None = None) -> None:
        response = RemotingCommand(
            code,
            dict(request.ext_fields),
            request.body if body is None else body,
            flag=FLAG_RESPONSE,
            opaque=request.opaque,
        )
        self.send(response)


Handler = Callable[[FakeConn, RemotingCommand], Awaitable[None] | None]


class FakeBroker:
    """An ``asyncio.start_server`` that decodes frames and answers by request code."""

    def __init__(
        self, handler: Handler | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler or self.default_handler
        self.ssl_context = ssl_context
        self.connections: list[FakeConn] = []
        self.received: list[RemotingCommand] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.held: list[tuple[FakeConn, RemotingCommand]] = []

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeBroker:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", port, ssl=self.ssl_context
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for conn in self.connections:
            conn.writer.close()
        await self.server.wait_closed()

    async def __aenter__(self) -> FakeBroker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def release_held(self) -> None:
        for conn, cmd in self.held:
            conn.answer(cmd)
        self.held.clear()

    async def default_handler(self, conn: FakeConn, cmd: RemotingCommand) -> None:
        if cmd.is_oneway or cmd.code == NEVER_ANSWER:
            return
        if cmd.code == HANG_UP:
            conn.writer.close()
        elif cmd.code == GARBAGE:
            conn.writer.write(b"\x7f\xff\xff\xff" + b"\x00" * 16)  # a 2 GiB frame
        elif cmd.code == HOLD:
            self.held.append((conn, cmd))
        else:
            conn.answer(cmd)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeConn(reader, writer)
        self.connections.append(conn)
        decoder = FrameDecoder()
        try:
            while True:
                await conn.reading.wait()
                data = await reader.read(256 * 1024)
                if not data:
                    break
                decoder.feed(data)
                while (cmd := decoder.next_frame()) is not None:
                    self.received.append(cmd)
                    if cmd.is_response:
                        conn.replies.put_nowait(cmd)
                        continue
                    result = self.handler(conn, cmd)
                    if result is not None:
                        await result
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def request(code: int, body: bytes = b"", **fields: str) -> RemotingCommand:
    return RemotingCommand(code, dict(fields), body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------ request/response


def test_pipelined_requests_answered_out_of_order_reach_their_callers() -> None:
    n = 1000
    pending: list[tuple[FakeConn, RemotingCommand]] = []

    def collect_then_shuffle(conn: FakeConn, cmd: RemotingCommand) -> None:
        pending.append((conn, cmd))
        if len(pending) == n:
            random.Random(7).shuffle(pending)
            for c, r in pending:
                c.answer(r)

    async def main() -> None:
        async with (
            FakeBroker(collect_then_shuffle) as broker,
            RemotingClient() as client,
        ):
            responses = await asyncio.gather(
                *(
                    client.request(broker.addr, request(ECHO, f"body {i}".encode(), i=str(i)), 60)
                    for i in range(n)
                )
            )
            for i, response in enumerate(responses):
                assert response.is_response
                assert response.get("i") == str(i)
                assert response.body == f"body {i}".encode()
            assert len(broker.connections) == 1  # one multiplexed connection
            opaques = {cmd.opaque for cmd in broker.received}
            assert len(opaques) == n

    run(main())


def test_response_with_error_code_is_returned_not_raised() -> None:
    async def main() -> None:
        async with (
            FakeBroker(lambda conn, cmd: conn.answer(cmd, code=17)) as broker,
            RemotingClient() as client,
        ):
            response = await client.request(broker.addr, request(ECHO), LONG)
            assert response.code == 17

    run(main())


def test_timeout_raises_and_a_late_answer_does_not_break_later_requests() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await client.request(broker.addr, request(ECHO), LONG)  # connected before the clock
            with pytest.raises(RequestTimeoutError) as info:
                await client.request(broker.addr, request(HOLD), 0.05)
            message = str(info.value)
            assert broker.addr in message
            assert f"code {HOLD}" in message
            assert "0.05s" in message
            conn = client._protocols[broker.addr].conn
            broker.release_held()
            await wait_until(lambda: conn.late_responses == 1)  # the late answer is dropped
            response = await client.request(broker.addr, request(ECHO, b"after"), LONG)
            assert response.body == b"after"
            assert client.connected(broker.addr)

    run(main())


def test_an_earlier_deadline_moves_the_connection_timer() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await client.request(broker.addr, request(ECHO), 100)  # connect first
            slow = asyncio.ensure_future(client.request(broker.addr, request(NEVER_ANSWER), 100))
            await wait_until(lambda: len(broker.received) == 2)
            start = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                await client.request(broker.addr, request(NEVER_ANSWER), 0.05)
            # Not at the 100 s deadline the connection's timer was first armed for.
            assert time.monotonic() - start < 20
            assert not slow.done()
            slow.cancel()

    run(main())


def test_many_requests_timing_out_together_all_fail() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await client.request(broker.addr, request(ECHO), LONG)  # connected before the clock
            results = await asyncio.gather(
                *(client.request(broker.addr, request(NEVER_ANSWER), 0.05) for _ in range(200)),
                return_exceptions=True,
            )
            assert all(isinstance(r, RequestTimeoutError) for r in results)
            assert client._protocols[broker.addr].conn.in_flight == 0

    run(main())


def test_cancelled_request_is_forgotten_by_the_connection() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            task = asyncio.ensure_future(client.request(broker.addr, request(HOLD), LONG))
            await wait_until(lambda: len(broker.held) == 1)
            conn = client._protocols[broker.addr].conn
            assert conn.in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert conn.in_flight == 0
            broker.release_held()
            await wait_until(lambda: conn.late_responses == 1)
            assert (await client.request(broker.addr, request(ECHO, b"x"), LONG)).body == b"x"

    run(main())


def test_oneway_sets_the_flag_and_awaits_no_answer() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await client.oneway(broker.addr, request(ECHO, b"fire", k="v"))
            await wait_until(lambda: len(broker.received) == 1)
            sent = broker.received[0]
            assert sent.is_oneway
            assert not sent.is_response
            assert sent.body == b"fire"
            assert sent.get("k") == "v"
            assert client._protocols[broker.addr].conn.in_flight == 0

    run(main())


def test_concurrent_requests_to_a_new_address_share_one_connect() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await asyncio.gather(
                *(client.request(broker.addr, request(ECHO), LONG) for _ in range(50))
            )
            assert len(broker.connections) == 1

    run(main())


# ------------------------------------------------------------ requests from the server


async def _connected_pair(
    handler: Callable[[str, RemotingCommand], Any] | None,
) -> tuple[FakeBroker, RemotingClient, FakeConn]:
    broker = await FakeBroker().start()
    client = RemotingClient(request_handler=handler)
    await client.request(broker.addr, request(ECHO), LONG)
    return broker, client, broker.connections[0]


def test_server_request_is_answered_with_the_handler_reply_and_its_opaque() -> None:
    seen: list[tuple[str, RemotingCommand]] = []

    async def handler(addr: str, cmd: RemotingCommand) -> Reply:
        seen.append((addr, cmd))
        return Reply(0, {"state": "COMMIT"}, b"checked", remark="fine")

    async def main() -> None:
        broker, client, conn = await _connected_pair(handler)
        try:
            conn.send(RemotingCommand(39, {"tid": "t1"}, b"msg", opaque=777))
            reply = await asyncio.wait_for(conn.replies.get(), LONG)
            assert reply.is_response
            assert reply.opaque == 777
            assert reply.code == 0
            assert reply.body == b"checked"
            assert reply.get("state") == "COMMIT"
            assert reply.remark == "fine"
            assert seen[0][0] == broker.addr
            assert seen[0][1].get("tid") == "t1"
        finally:
            await client.close()
            await broker.stop()

    run(main())


def test_slow_server_request_handler_does_not_stall_responses() -> None:
    release = asyncio.Event

    async def main() -> None:
        gate = release()

        async def handler(addr: str, cmd: RemotingCommand) -> Reply:
            await gate.wait()
            return Reply(0, body=b"late")

        broker, client, conn = await _connected_pair(handler)
        try:
            conn.send(RemotingCommand(39, opaque=901))
            await asyncio.sleep(0.01)
            responses = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.request(broker.addr, request(ECHO, str(i).encode()), LONG)
                        for i in range(20)
                    )
                ),
                LONG,  # a stalled reader would never see them: the handler waits for us
            )
            assert [r.body for r in responses] == [str(i).encode() for i in range(20)]
            assert conn.replies.empty()
            gate.set()
            reply = await asyncio.wait_for(conn.replies.get(), LONG)
            assert (reply.opaque, reply.body) == (901, b"late")
        finally:
            await client.close()
            await broker.stop()

    run(main())


def test_server_request_without_reply_cases() -> None:
    calls: list[int] = []

    def handler(addr: str, cmd: RemotingCommand) -> Reply | None:
        calls.append(cmd.code)
        if cmd.code == 40:
            return None  # the handler chose not to answer
        if cmd.code == 41:
            raise RuntimeError("handler bug")
        return Reply(0, body=b"sync")  # a plain function may answer too

    async def main() -> None:
        broker, client, conn = await _connected_pair(handler)
        try:
            oneway = RemotingCommand(42, opaque=1)
            oneway.flag = 0x2
            conn.send(oneway)
            conn.send(RemotingCommand(40, opaque=2))
            conn.send(RemotingCommand(41, opaque=3))
            conn.send(RemotingCommand(43, opaque=4))
            first = await asyncio.wait_for(conn.replies.get(), LONG)
            second = await asyncio.wait_for(conn.replies.get(), LONG)
            by_opaque = {r.opaque: r for r in (first, second)}
            assert set(by_opaque) == {3, 4}
            assert by_opaque[3].code == ResponseCode.SYSTEM_ERROR
            assert "handler bug" in (by_opaque[3].remark or "")
            assert by_opaque[4].body == b"sync"
            await asyncio.sleep(0.05)
            assert conn.replies.empty()
            assert sorted(calls) == [40, 41, 42, 43]
        finally:
            await client.close()
            await broker.stop()

    run(main())


def test_server_request_without_handler_is_answered_not_supported() -> None:
    async def main() -> None:
        broker, client, conn = await _connected_pair(None)
        try:
            conn.send(RemotingCommand(39, opaque=55))
            reply = await asyncio.wait_for(conn.replies.get(), LONG)
            assert (reply.opaque, reply.code) == (55, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)
        finally:
            await client.close()
            await broker.stop()

    run(main())


# ---------------------------------------------------------------- failures, reconnects


def test_peer_closing_fails_in_flight_requests_and_the_next_request_reconnects() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            in_flight = [
                asyncio.ensure_future(client.request(broker.addr, request(NEVER_ANSWER), 10))
                for _ in range(3)
            ]
            await wait_until(lambda: len(broker.received) == 3)
            with pytest.raises(ConnectionClosedError) as info:
                await client.request(broker.addr, request(HANG_UP), 10)
            assert broker.addr in str(info.value)
            for task in in_flight:
                with pytest.raises(ConnectionClosedError):
                    await task
            assert not client.connected(broker.addr)
            response = await client.request(broker.addr, request(ECHO, b"again"), LONG)
            assert response.body == b"again"
            assert len(broker.connections) == 2

    run(main())


def test_connect_refused_fails_then_backs_off_then_retries() -> None:
    async def main() -> None:
        port = free_port()
        addr = f"127.0.0.1:{port}"
        async with RemotingClient(backoff=ReconnectBackoff(initial=1.0)) as client:
            with pytest.raises(ConnectionClosedError) as info:
                await client.request(addr, request(ECHO), LONG)
            assert addr in str(info.value)
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(ConnectionClosedError, match="backing off"):
                await client.request(addr, request(ECHO), LONG)
            with pytest.raises(ConnectionClosedError, match="backing off"):
                await client.oneway(addr, request(ECHO))
            await asyncio.sleep(1.05)
            broker = await FakeBroker().start(port)  # the address comes back
            try:
                response = await client.request(addr, request(ECHO, b"up"), LONG)
                assert response.body == b"up"
            finally:
                await broker.stop()

    run(main())


def test_garbage_from_the_server_fails_in_flight_requests_and_drops_the_connection() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            waiting = asyncio.ensure_future(client.request(broker.addr, request(NEVER_ANSWER), 10))
            await wait_until(lambda: len(broker.received) == 1)
            with pytest.raises(ConnectionClosedError) as info:
                await client.request(broker.addr, request(GARBAGE), 10)
            causes = []
            exc: BaseException | None = info.value
            while exc is not None:
                causes.append(exc)
                exc = exc.__cause__
            assert any(isinstance(c, RemoteProtocolError) for c in causes)
            with pytest.raises(ConnectionClosedError):
                await waiting
            assert not client.connected(broker.addr)
            assert (await client.request(broker.addr, request(ECHO, b"ok"), LONG)).body == b"ok"
            assert len(broker.connections) == 2

    run(main())


def test_close_addr_fails_in_flight_requests_and_the_next_request_reconnects() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            waiting = asyncio.ensure_future(client.request(broker.addr, request(NEVER_ANSWER), 10))
            await wait_until(lambda: len(broker.received) == 1)
            client.close_addr(broker.addr)
            with pytest.raises(ConnectionClosedError, match="closed by the client"):
                await waiting
            assert (await client.request(broker.addr, request(ECHO, b"ok"), LONG)).body == b"ok"
            assert len(broker.connections) == 2

    run(main())


def test_close_fails_in_flight_requests_and_later_requests() -> None:
    async def main() -> None:
        async with FakeBroker() as broker:
            client = RemotingClient()
            waiting = asyncio.ensure_future(client.request(broker.addr, request(NEVER_ANSWER), 10))
            await wait_until(lambda: len(broker.received) == 1)
            await client.close()
            with pytest.raises(ConnectionClosedError):
                await waiting
            with pytest.raises(ConnectionClosedError, match="closed"):
                await client.request(broker.addr, request(ECHO), LONG)
            await client.close()  # idempotent

    run(main())


def test_close_while_connecting_fails_the_waiting_request() -> None:
    async def main() -> None:
        client = RemotingClient()
        addr = f"127.0.0.1:{free_port()}"
        task = asyncio.ensure_future(client.request(addr, request(ECHO), LONG))
        await asyncio.sleep(0)
        assert addr in client._connecting  # the request waits on the connect attempt
        await client.close()
        with pytest.raises(ConnectionClosedError):
            await task

    run(main())


def test_garbage_collected_unclosed_client_warns() -> None:
    """The collector only warns: it closes no connection (it may run anywhere,
    the loop may be closed)."""

    async def main() -> None:
        async with FakeBroker() as broker:
            client = RemotingClient()
            await client.request(broker.addr, request(ECHO), LONG)
            (proto,) = client._protocols.values()
            with pytest.warns(ResourceWarning, match="unclosed"):
                del client
                gc.collect()
            await asyncio.sleep(0.1)
            assert proto._transport is not None and not proto._transport.is_closing()
            proto.abort()  # the test's own cleanup

    run(main())


# ----------------------------------------------------------------------- flow control


def test_requests_wait_while_the_transport_is_paused_and_then_complete() -> None:
    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            await client.request(broker.addr, request(ECHO), LONG)
            proto = client._protocols[broker.addr]
            assert proto._transport is not None
            proto._transport.set_write_buffer_limits(high=64 * 1024)
            server_side = broker.connections[0]
            # Small kernel buffers, so that the pause does not wait on TCP autotuning.
            proto._transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024
            )
            server_side.writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024
            )
            server_side.reading.clear()  # the broker stops reading
            body = b"x" * (256 * 1024)
            tasks = []
            peak = 0
            for _ in range(60):
                tasks.append(
                    asyncio.ensure_future(client.request(broker.addr, request(ECHO, body), 30))
                )
                for _ in range(3):
                    await asyncio.sleep(0)
                peak = max(peak, proto._transport.get_write_buffer_size())
            assert proto.paused
            # Paused requests waited instead of piling into the transport's buffer.
            assert peak < 60 * len(body) // 2
            server_side.reading.set()
            responses = await asyncio.wait_for(asyncio.gather(*tasks), LONG)
            assert all(r.body == body for r in responses)
            assert not proto.paused

    run(main())


# ------------------------------------------------------------------------------ TLS


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_request_to_a_server_with_a_trusted_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        async with (
            FakeBroker(ssl_context=server_ctx) as broker,
            RemotingClient(transport_settings(ssl_context=client_ctx)) as client,
        ):
            responses = await asyncio.gather(
                *(
                    client.request(broker.addr, request(ECHO, b"tls %d" % i), LONG)
                    for i in range(50)
                )
            )
            assert [r.body for r in responses] == [b"tls %d" % i for i in range(50)]
            proto = client._protocols[broker.addr]
            assert proto._transport is not None
            assert proto._transport.get_extra_info("ssl_object") is not None

            untrusting_settings = transport_settings(ssl_context=ssl.create_default_context())
            async with RemotingClient(untrusting_settings) as untrusting:
                with pytest.raises(ConnectionClosedError, match="cannot connect"):
                    await untrusting.request(broker.addr, request(ECHO), LONG)

    run(main())


# ----------------------------------------------------------------------- interpreter


async def run_flow(client: RemotingClient, flow: Generator[Effect, Any, Any]) -> Any:
    """The flow run as a client runs it: its user callables in threads of its own,
    shut down after it."""
    tasks = FlowTasks()
    try:
        return await run_flow_in(client, flow, tasks=tasks)
    finally:
        await tasks.close()


def test_run_flow_performs_every_effect() -> None:
    loop_thread: list[int] = []

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    def boom() -> None:
        raise KeyError("from the user")

    def flow(addr: str) -> Generator[Effect, Any, dict[str, Any]]:
        now = yield Now()
        wall = yield WallTime()
        response = yield Call(addr, request(ECHO, b"ping"), LONG)
        oneway_result = yield Oneway(addr, request(ECHO, b"one"))
        slept = yield Sleep(0.02)
        later = yield Now()
        thread = yield UserCall(threading.get_ident)
        doubled = yield UserCall(double, (21,))
        try:
            yield UserCall(boom)
        except UserCallbackError as exc:
            user_error: BaseException = exc
        try:
            yield Call(addr, request(NEVER_ANSWER), 0.02)
        except RequestTimeoutError as exc:
            timeout_error: BaseException = exc
        return {
            "now": now,
            "wall": wall,
            "response": response,
            "oneway": oneway_result,
            "slept": slept,
            "later": later,
            "thread": thread,
            "doubled": doubled,
            "user_error": user_error,
            "timeout_error": timeout_error,
        }

    async def main() -> dict[str, Any]:
        loop_thread.append(threading.get_ident())
        async with FakeBroker() as broker, RemotingClient() as client:
            result = await run_flow(client, flow(broker.addr))
            assert any(c.is_oneway and c.body == b"one" for c in broker.received)
            return result

    wall_before = int(time.time() * 1000)
    result = run(main())
    assert isinstance(result["now"], float)
    assert result["later"] - result["now"] >= 0.02
    assert wall_before <= result["wall"] <= int(time.time() * 1000)
    assert result["response"].body == b"ping"
    assert result["oneway"] is None and result["slept"] is None
    assert result["thread"] != loop_thread[0]  # a plain callable ran off the loop
    assert result["doubled"] == 42
    assert isinstance(result["user_error"].__cause__, KeyError)
    assert isinstance(result["timeout_error"], RequestTimeoutError)


def test_run_flow_propagates_the_flows_own_exception_and_unhandled_effect_errors() -> None:
    def failing() -> Generator[Effect, Any, None]:
        yield Now()
        raise ValueError("flow bug")

    def not_catching(addr: str) -> Generator[Effect, Any, None]:
        yield Call(addr, request(NEVER_ANSWER), 0.02)

    async def main() -> None:
        async with FakeBroker() as broker, RemotingClient() as client:
            with pytest.raises(ValueError, match="flow bug"):
                await run_flow(client, failing())
            with pytest.raises(RequestTimeoutError):
                await run_flow(client, not_catching(broker.addr))

    run(main())


def test_cancelling_run_flow_closes_the_flow() -> None:
    closed: list[bool] = []

    def sleeper() -> Generator[Effect, Any, None]:
        try:
            yield Sleep(10)
        finally:
            closed.append(True)

    async def main() -> None:
        async with RemotingClient() as client:
            task = asyncio.ensure_future(run_flow(client, sleeper()))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert closed == [True]

    run(main())
