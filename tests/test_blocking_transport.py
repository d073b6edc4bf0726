"""The blocking driver (transport and effect interpreter), on threads and on gevent.

Every test runs once per runtime. The far end is a fake broker on 127.0.0.1 made
of stdlib sockets and OS threads: it speaks real frames (the core's codec) but
answers by rules each request carries in its ``do`` ext field. The driver under
test never knows: it is the same socket traffic a broker would send. Under
gevent (not monkey-patched) the fake's threads are real OS threads beside the
hub, so the test body waits with ``runtime.sleep``, never with a thread
primitive that would stall the hub.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import ipaddress
import math
import os
import random
import select
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.connection.pool import ReconnectBackoff
from rocketmq_proto.driver import transport_settings
from rocketmq_proto.flows.effects import (
    Call,
    Now,
    Offload,
    Oneway,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
)
from rocketmq_proto.wire.codes import FLAG_ONEWAY, FLAG_RESPONSE, LanguageCode, SerializeType
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    RemoteProtocolError,
    RequestTimeoutError,
    UserCallbackError,
)
from rocketmq_sync._future import CancelledError, Future
from rocketmq_sync._interpreter import _CLOCKS_IN_A_STEP, _TURN_AFTER, run_flow, start_flow
from rocketmq_sync._runtime import Runtime, ThreadRuntime
from rocketmq_sync._transport import RemotingClient

gevent = pytest.importorskip("gevent")
from rocketmq_gevent._runtime import GeventRuntime  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
REQUEST_CODE = 10


# ------------------------------------------------------------------- fake broker


class ServerConn:
    """One accepted connection of the fake broker."""

    def __init__(self, broker: FakeBroker, sock: socket.socket) -> None:
        self.broker = broker
        self.sock = sock
        self.wlock = threading.Lock()
        self.responses: dict[int, RemotingCommand] = {}  # answers to requests we sent
        self.answer_order: list[int] = []
        self.pending: list[RemotingCommand] = []
        self.ended = False
        self._opaque = 1_000_000

    def send_raw(self, data: bytes) -> None:
        with self.wlock:
            self.sock.sendall(data)

    def respond(self, request: RemotingCommand, code: int = 0, body: bytes | None = None) -> None:
        response = RemotingCommand(
            code,
            {"k": request.get("k") or ""},
            request.body if body is None else body,
            flag=FLAG_RESPONSE,
            opaque=request.opaque,
            language=LanguageCode.JAVA,
        )
        self.answer_order.append(request.opaque)
        with contextlib.suppress(OSError):
            self.send_raw(encode_command(response, self.broker.serialize_type))

    def send_request(self, code: int, body: bytes = b"", *, oneway: bool = False) -> int:
        self._opaque += 1
        command = RemotingCommand(
            code,
            {"from": "broker"},
            body,
            opaque=self._opaque,
            flag=FLAG_ONEWAY if oneway else 0,
            language=LanguageCode.JAVA,
        )
        self.send_raw(encode_command(command, self.broker.serialize_type))
        return self._opaque

    def flush_pending(self) -> None:
        pending, self.pending = self.pending, []
        random.shuffle(pending)
        for request in pending:
            self.respond(request)

    def close(self) -> None:
        # Only shut it down: that wakes the serving thread, which closes the socket
        # itself. Closing it from here could free its descriptor while that thread
        # (or OpenSSL within it, sending an alert) still uses the number, which the
        # next socket or pipe of the process may already have.
        with self.wlock, contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def serve(self) -> None:
        decoder = FrameDecoder()
        sock = self.sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
            # Blocking writes (a socket timeout would cut a long sendall short); a lull
            # of 20 ms in the requests answers the ones held for shuffling.
            sock.settimeout(None)
            while True:
                buffered = isinstance(sock, ssl.SSLSocket) and sock.pending()
                if not buffered and not select.select([sock], [], [], 0.02)[0]:
                    self.flush_pending()
                    continue
                try:
                    data = sock.recv(256 * 1024)
                except OSError:
                    return
                if not data:
                    return
                decoder.feed(data)
                while (command := decoder.next_frame()) is not None:
                    if command.is_response:
                        self.responses[command.opaque] = command
                        continue
                    self.broker.received.append(command)
                    self.broker.act(self, command)
                if len(self.pending) >= 32:
                    self.flush_pending()
        except (OSError, ValueError, RemoteProtocolError):
            return
        finally:
            with self.wlock:
                sock.close()
            self.ended = True


class FakeBroker:
    """A remoting server answering each request by its ``do`` ext field.

    ``echo`` (default): answer at once, body echoed; ``shuffle``: answer in
    random order, a batch at a time; ``delay``: answer after ``delay`` seconds;
    ``never``: no answer; ``close``: close the connection; ``garbage``: send a
    frame claiming 2 GiB.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = 0,
        serialize_type: SerializeType = SerializeType.JSON,
    ) -> None:
        self.serialize_type = serialize_type
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._ssl_context = ssl_context
        self.conns: list[ServerConn] = []
        self.received: list[RemotingCommand] = []
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
            conn = ServerConn(self, sock)
            self.conns.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def act(self, conn: ServerConn, command: RemotingCommand) -> None:
        if command.is_oneway:
            return
        do = command.get("do", "echo")
        if do == "echo":
            conn.respond(command)
        elif do == "shuffle":
            conn.pending.append(command)
        elif do == "delay":
            timer = threading.Timer(float(command.get("delay") or 0), conn.respond, (command,))
            timer.daemon = True
            timer.start()
        elif do == "close":
            conn.close()
        elif do == "garbage":
            conn.send_raw(struct.pack(">ii", 0x7FFFFFF0, 0) + b"\0" * 16)
        elif do != "never":
            raise AssertionError(f"unknown rule {do!r}")

    def close(self) -> None:
        self._stop = True
        self._listener.close()
        for conn in self.conns:
            conn.close()


def command(do: str = "echo", k: str = "", body: bytes = b"", **ext: str) -> RemotingCommand:
    return RemotingCommand(REQUEST_CODE, {"do": do, "k": k, **ext}, body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------------- runtimes


class Env:
    """A runtime under test, and how to run a test body on it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.runtime: Runtime = ThreadRuntime() if kind == "threads" else GeventRuntime()
        self.clients: list[RemotingClient] = []

    def client(
        self,
        *,
        request_handler: Any = None,
        backoff: ReconnectBackoff | None = None,
        **options: Any,
    ) -> RemotingClient:
        """A client on this runtime; ``options`` are :func:`transport_settings`'s."""
        client = RemotingClient(
            self.runtime,
            transport_settings(**options),
            request_handler=request_handler,
            backoff=backoff,
        )
        self.clients.append(client)
        return client

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` as this runtime's code would: in a greenlet under gevent."""
        if self.kind == "gevent":
            return gevent.spawn(fn, *args).get(timeout=60)
        return fn(*args)

    def sleep(self, seconds: float) -> None:
        self.runtime.sleep(seconds)

    def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            self.runtime.sleep(0.005)

    def concurrently(self, fns: list[Callable[[], Any]]) -> list[Any]:
        """Run each of ``fns`` in a task of its own; their results, or raise the first error."""
        results: list[Any] = [None] * len(fns)
        errors: list[BaseException] = []

        def task(i: int) -> None:
            try:
                results[i] = fns[i]()
            except BaseException as exc:
                errors.append(exc)

        handles = [self.runtime.spawn(task, i) for i in range(len(fns))]
        for handle in handles:
            handle.join(30)
        if errors:
            raise errors[0]
        return results


@pytest.fixture(params=["threads", "gevent"])
def env(request: pytest.FixtureRequest) -> Generator[Env, None, None]:
    env = Env(request.param)
    yield env
    for client in env.clients:
        env.run(client.close)


@pytest.fixture
def broker() -> Generator[FakeBroker, None, None]:
    broker = FakeBroker()
    yield broker
    broker.close()


# ---------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rocketmq test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# -------------------------------------------------------------------------- tests


def test_pipelined_requests_from_many_tasks_share_one_connection_answered_out_of_order(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()

    def worker(w: int) -> list[tuple[str, RemotingCommand]]:
        futures = []
        for i in range(125):
            key = f"{w}-{i}"
            cmd = command("shuffle", k=key, body=key.encode() * 10)
            futures.append((key, client.request_future(broker.addr, cmd, 10.0)))
        return [(key, future.result(15)) for key, future in futures]

    def body() -> None:
        results = env.concurrently([functools.partial(worker, w) for w in range(8)])
        answers = [pair for result in results for pair in result]
        assert len(answers) == 1000
        for key, response in answers:
            assert response.code == 0
            assert response.get("k") == key
            assert response.body == key.encode() * 10
        assert len(broker.conns) == 1
        order = broker.conns[0].answer_order
        assert len(order) == 1000
        assert order != sorted(order)  # really answered out of order

    env.run(body)


def test_blocking_request_returns_the_response_whatever_its_code(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client(serialize_type=SerializeType.ROCKETMQ)

    def body() -> None:
        response = client.request(broker.addr, command(k="a", body=b"xyz"), 3.0)
        assert (response.code, response.get("k"), response.body) == (0, "a", b"xyz")
        assert broker.received[0].serialize_type is SerializeType.ROCKETMQ
        assert client.connected(broker.addr)

    env.run(body)


def test_timeout_names_address_code_and_timeout_and_a_late_answer_is_dropped(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()

    def body() -> None:
        client.request(broker.addr, command(), 5.0)  # connected: the timeout is all waiting
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as info:
            client.request(broker.addr, command("delay", delay="2.0"), 0.15)
        elapsed = time.monotonic() - started
        assert 0.14 <= elapsed < 1.5
        message = str(info.value)
        assert f"SEND_MESSAGE to {broker.addr}" in message  # the request by name
        assert "0.15s" in message
        assert isinstance(info.value, TimeoutError)
        env.wait_until(lambda: len(broker.conns[0].answer_order) == 2)  # the late answer...
        env.sleep(0.05)  # ... arrives, and is dropped
        for i in range(5):
            assert client.request(broker.addr, command(k=str(i)), 2.0).get("k") == str(i)
        assert len(broker.conns) == 1

    env.run(body)


def test_a_short_timeout_expires_even_behind_a_long_one(env: Env, broker: FakeBroker) -> None:
    client = env.client()

    def body() -> None:
        slow = client.request_future(broker.addr, command("never"), 5.0)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.request(broker.addr, command("never"), 0.1)
        assert time.monotonic() - started < 1.0
        assert not slow.done()

    env.run(body)


def test_oneway_sets_the_flag_and_expects_no_answer(env: Env, broker: FakeBroker) -> None:
    client = env.client()

    def body() -> None:
        future = client.oneway_future(broker.addr, command("never", k="first"))  # connecting
        client.oneway(broker.addr, command("never", k="second"))
        assert future.result(3) is None
        env.wait_until(lambda: len(broker.received) == 2)
        assert [c.get("k") for c in broker.received] == ["first", "second"]
        assert all(c.is_oneway and not c.is_response for c in broker.received)
        # A normal request on the same connection still works.
        assert client.request(broker.addr, command(k="x"), 2.0).get("k") == "x"

    env.run(body)


def test_server_request_runs_off_the_reader_and_its_reply_carries_the_opaque(
    env: Env, broker: FakeBroker
) -> None:
    handled: list[tuple[str, int]] = []

    def handler(addr: str, request: RemotingCommand) -> Reply | None:
        handled.append((addr, request.code))
        if request.code == 307:
            env.runtime.sleep(3.0)  # slow: must not hold up responses
            return Reply(0, {"info": "yes"}, b"running-info", remark="ok")
        if request.code == 308:
            raise RuntimeError("boom")
        return None

    client = env.client(request_handler=handler)

    def body() -> None:
        client.request(broker.addr, command(), 2.0)  # connect
        conn = broker.conns[0]
        slow_opaque = conn.send_request(307, b"q")
        oneway_opaque = conn.send_request(40, oneway=True)
        failing_opaque = conn.send_request(308)
        none_opaque = conn.send_request(309)
        started = time.monotonic()
        for i in range(20):
            assert client.request(broker.addr, command(k=str(i)), 2.0).get("k") == str(i)
        assert time.monotonic() - started < 2.5, "responses waited for the slow handler"
        assert slow_opaque not in conn.responses
        env.wait_until(lambda: slow_opaque in conn.responses)
        reply = conn.responses[slow_opaque]
        assert reply.is_response and reply.opaque == slow_opaque
        assert (reply.code, reply.body, reply.remark) == (0, b"running-info", "ok")
        assert reply.get("info") == "yes"
        error = conn.responses[failing_opaque]
        assert error.code == 1 and "boom" in (error.remark or "")
        env.sleep(0.1)
        assert oneway_opaque not in conn.responses  # oneway: no reply
        assert none_opaque not in conn.responses  # handler returned None: no reply
        assert sorted(code for _, code in handled) == [40, 307, 308, 309]
        assert all(addr == broker.addr for addr, _ in handled)

    env.run(body)


def test_server_request_handler_may_answer_later_with_a_future(
    env: Env, broker: FakeBroker
) -> None:
    def handler(addr: str, request: RemotingCommand) -> Future[Reply | None]:
        answer: Future[Reply | None] = Future(env.runtime)
        env.runtime.call_later(0.1, lambda: answer.set_result(Reply(0, body=b"later")))
        return answer

    client = env.client(request_handler=handler)

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        conn = broker.conns[0]
        opaque = conn.send_request(307)
        env.wait_until(lambda: opaque in conn.responses)
        assert conn.responses[opaque].body == b"later"

    env.run(body)


def test_server_request_without_handler_is_answered_not_supported(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        conn = broker.conns[0]
        opaque = conn.send_request(307)
        env.wait_until(lambda: opaque in conn.responses)
        assert conn.responses[opaque].code == 3

    env.run(body)


def test_peer_close_fails_requests_in_flight_and_the_next_request_reconnects(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()

    def body() -> None:
        waiting = client.request_future(broker.addr, command("never"), 5.0)
        with pytest.raises(ConnectionClosedError) as info:
            client.request(broker.addr, command("close"), 5.0)
        assert broker.addr in str(info.value)
        with pytest.raises(ConnectionClosedError):
            waiting.result(2)
        assert client.request(broker.addr, command(k="again"), 2.0).get("k") == "again"
        assert len(broker.conns) == 2

    env.run(body)


def test_connect_refused_fails_then_fails_fast_while_backing_off(env: Env) -> None:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    client = env.client(backoff=ReconnectBackoff(initial=0.3, maximum=1.0))

    def body() -> None:
        with pytest.raises(ConnectionClosedError) as info:
            client.request(addr, command(), 2.0)
        assert addr in str(info.value) and "refused" in str(info.value).lower()
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        started = time.monotonic()
        future = client.request_future(addr, command(), 2.0)
        assert future.done()  # no connect attempt
        with pytest.raises(ConnectionClosedError) as info:
            future.result()
        assert time.monotonic() - started < 0.5
        assert "backing off" in str(info.value) and addr in str(info.value)
        assert "refused" in str(info.value).lower()
        # The address comes back: once the backoff has passed, the client connects.
        broker = FakeBroker(port=port)
        try:
            env.sleep(0.35)
            assert client.request(addr, command(k="up"), 2.0).get("k") == "up"
        finally:
            broker.close()

    env.run(body)


def test_a_failed_connect_backs_off_before_its_channel_counts_as_closed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A request from another thread may look at the pool while a failed connect is
    # reported. It must still find the failing channel (and fail with it), not drop
    # it as closed and dial again: that dial would leave the failure unrecorded
    # (no back-off), as the pool ignores a report about a channel it dropped.
    addr = f"127.0.0.1:{free_port()}"
    client = env.client(backoff=ReconnectBackoff(initial=60.0))
    core = client._core
    report = core.on_connect_failed
    found_the_failing_channel: list[bool] = []

    def report_while_a_request_looks(channel: Any, error: ConnectionClosedError) -> None:
        if not found_the_failing_channel:
            found_the_failing_channel.append(core.channel(addr) is channel)
        report(channel, error)

    monkeypatch.setattr(core, "on_connect_failed", report_while_a_request_looks)

    def body() -> None:
        with pytest.raises(ConnectionClosedError, match="cannot connect"):
            client.request(addr, command(), 2.0)
        assert found_the_failing_channel == [True]
        with pytest.raises(ConnectionClosedError, match="backing off"):
            client.request(addr, command(), 2.0)

    env.run(body)


def test_request_future_never_waits_for_the_connect_and_requests_share_it(env: Env) -> None:
    # A TCP listener that never answers the TLS handshake: the connect hangs.
    listener = socket.create_server(("127.0.0.1", 0))
    addr = f"127.0.0.1:{listener.getsockname()[1]}"
    context = ssl.create_default_context()
    client = env.client(ssl_context=context, connect_timeout=2.0)

    def body() -> None:
        started = time.monotonic()
        futures = [client.request_future(addr, command(), 5.0) for _ in range(10)]
        short = client.request_future(addr, command(), 0.1)
        assert time.monotonic() - started < 0.5
        assert not any(f.done() for f in futures)
        with pytest.raises(RequestTimeoutError):  # its timer runs while connecting
            short.result(1.5)
        assert not any(f.done() for f in futures)
        for future in futures:
            with pytest.raises(ConnectionClosedError, match="timed out after 2s"):
                future.result(4)

    try:
        env.run(body)
        listener.settimeout(0)
        accepted = []
        with contextlib.suppress(BlockingIOError):
            while True:
                accepted.append(listener.accept()[0])
        assert len(accepted) == 1  # one connect for all eleven requests
        for sock in accepted:
            sock.close()
    finally:
        listener.close()


def test_garbage_frame_fails_requests_in_flight_and_drops_the_connection(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        waiting = client.request_future(broker.addr, command("never"), 5.0)
        with pytest.raises(ConnectionClosedError) as info:
            client.request(broker.addr, command("garbage"), 5.0)
        cause: BaseException | None = info.value
        while cause is not None and not isinstance(cause, RemoteProtocolError):
            cause = cause.__cause__
        assert isinstance(cause, RemoteProtocolError), info.value
        with pytest.raises(ConnectionClosedError):
            waiting.result(2)
        env.wait_until(lambda: broker.conns[0].ended)  # we hung up
        assert not client.connected(broker.addr)
        assert client.request(broker.addr, command(k="next"), 2.0).get("k") == "next"
        assert len(broker.conns) == 2

    env.run(body)


def test_tls_with_a_self_signed_certificate(env: Env, tls_files: tuple[Path, Path]) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    broker = FakeBroker(ssl_context=server_context)
    client = env.client(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
    untrusting = env.client(ssl_context=ssl.create_default_context())

    def body() -> None:
        big = os.urandom(200_000)  # spans many TLS records
        futures = [
            client.request_future(broker.addr, command(k=str(i), body=big), 10.0) for i in range(50)
        ]
        for i, future in enumerate(futures):
            response = future.result(15)
            assert response.get("k") == str(i) and response.body == big
        with pytest.raises(ConnectionClosedError) as info:
            untrusting.request(broker.addr, command(), 3.0)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)

    try:
        env.run(body)
    finally:
        broker.close()


def test_close_fails_requests_in_flight_and_later_requests(env: Env, broker: FakeBroker) -> None:
    client = env.client()

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        waiting = [client.request_future(broker.addr, command("never"), 5.0) for _ in range(5)]
        client.close()
        for future in waiting:
            with pytest.raises(ConnectionClosedError):
                future.result(1)
        assert client.closed and not client.connected(broker.addr)
        with pytest.raises(ConnectionClosedError, match="closed"):
            client.request(broker.addr, command(), 1.0)
        env.wait_until(lambda: broker.conns[0].ended)

    env.run(body)


def test_close_addr_drops_one_connection(env: Env, broker: FakeBroker) -> None:
    client = env.client()

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        waiting = client.request_future(broker.addr, command("never"), 5.0)
        client.close_addr(broker.addr)
        with pytest.raises(ConnectionClosedError):
            waiting.result(1)
        assert client.request(broker.addr, command(k="b"), 2.0).get("k") == "b"
        assert len(broker.conns) == 2

    env.run(body)


def test_bad_arguments_fail_the_future(env: Env) -> None:
    client = env.client()

    def body() -> None:
        with pytest.raises(InvalidArgumentError):
            client.request_future("no-port", command(), 1.0).result(1)
        with pytest.raises(InvalidArgumentError):
            client.request("127.0.0.1:1", command(), 0)

    env.run(body)


def test_unclosed_client_warns_when_collected(env: Env, broker: FakeBroker) -> None:
    """The collector only warns: it may run in any thread at any point (one that
    holds the client's locks), so it closes no socket and fails no future."""

    def body() -> None:
        client = RemotingClient(env.runtime)
        client.request(broker.addr, command(), 2.0)
        with pytest.warns(ResourceWarning, match="unclosed"):
            del client
            gc.collect()
        env.sleep(0.3)
        assert not broker.conns[0].ended  # the connection was left alone

    env.run(body)


# ------------------------------------------------------------------------- future


def test_future_basics(env: Env) -> None:
    def body() -> None:
        seen: list[object] = []
        future: Future[int] = Future(env.runtime)
        future.add_done_callback(lambda f: seen.append(f.result()))
        env.runtime.call_later(0.5, lambda: future.set_result(7))
        with pytest.raises(TimeoutError):
            future.result(0.02)
        assert future.result(2) == 7 and seen == [7]
        assert not future.set_result(8) and future.result() == 7
        future.add_done_callback(lambda f: seen.append("now"))
        assert seen == [7, "now"]
        failed: Future[int] = Future(env.runtime)
        failed.set_exception(RequestTimeoutError("x"))
        assert isinstance(failed.exception(), RequestTimeoutError)
        cancelled: Future[int] = Future(env.runtime)
        assert cancelled.cancel() and cancelled.cancelled()
        with pytest.raises(CancelledError):
            cancelled.result()
        timer = env.runtime.call_later(0.01, lambda: seen.append("cancelled timer"))
        timer.cancel()
        env.sleep(0.05)
        assert "cancelled timer" not in seen

    env.run(body)


# -------------------------------------------------------------------- interpreter


def test_interpreter_runs_a_flow_using_every_effect(env: Env, broker: FakeBroker) -> None:
    client = env.client()
    user_threads: list[object] = []

    def add(a: int, b: int) -> int:
        user_threads.append(env.runtime.current())
        return a + b

    def fails() -> None:
        raise KeyError("nope")

    def flow() -> Generator[Any, Any, dict[str, Any]]:
        out: dict[str, Any] = {}
        t0 = yield Now()
        out["wall"] = yield WallTime()
        response = yield Call(broker.addr, command(k="call"), 2.0)
        out["call"] = response.get("k")
        out["oneway"] = yield Oneway(broker.addr, command("never", k="ow"))
        out["sleep"] = yield Sleep(0.05)
        out["user"] = yield UserCall(add, (2, 3))
        try:
            yield UserCall(fails)
        except UserCallbackError as exc:
            out["user_error"] = type(exc.__cause__).__name__
        try:
            yield Call(broker.addr, command("never"), 0.05)
        except RequestTimeoutError:
            out["timeout"] = True
        try:
            yield Call("127.0.0.1:1", command(), 1.0)
        except ConnectionClosedError:
            out["refused"] = True
        out["elapsed"] = (yield Now()) - t0
        return out

    def body() -> None:
        out = run_flow(client, env.runtime, flow())
        assert abs(out["wall"] - time.time() * 1000) < 5000
        assert out["call"] == "call" and out["oneway"] is None and out["sleep"] is None
        assert out["user"] == 5 and out["user_error"] == "KeyError"
        assert out["timeout"] and out["refused"]
        assert out["elapsed"] >= 0.1
        assert user_threads and user_threads[0] is not env.runtime.current()
        assert any(c.get("k") == "ow" and c.is_oneway for c in broker.received)

    env.run(body)


def test_interpreter_does_not_recurse_on_effects_that_complete_at_once(env: Env) -> None:
    client = env.client(backoff=ReconnectBackoff(initial=60.0))
    dead = f"127.0.0.1:{free_port()}"

    def flow() -> Generator[Any, Any, int]:
        count = 0
        for _ in range(20_000):
            yield Now()
            count += 1
        with contextlib.suppress(ConnectionClosedError):
            yield Call(dead, command(), 2.0)  # refused: the address backs off
        for _ in range(5_000):  # each fails at once, synchronously
            try:
                yield Call(dead, command(), 2.0)
            except ConnectionClosedError:
                count += 1
        for _ in range(2_000):  # completed on other tasks, possibly before we wait
            count += yield UserCall(int, ("1",))
        return count

    def body() -> None:
        assert run_flow(client, env.runtime, flow()) == 27_000

    env.run(body)


def test_interpreter_propagates_what_the_flow_raises_and_closes_it_on_cancel(
    env: Env, broker: FakeBroker
) -> None:
    client = env.client()
    closed: list[bool] = []

    def failing() -> Generator[Any, Any, None]:
        yield Now()
        raise ValueError("flow bug")

    def sleepy() -> Generator[Any, Any, None]:
        try:
            yield Sleep(0.05)
            yield Sleep(10)
        finally:
            closed.append(True)

    def bad_effect() -> Generator[Any, Any, None]:
        yield "not an effect"

    def body() -> None:
        with pytest.raises(ValueError, match="flow bug"):
            run_flow(client, env.runtime, failing())
        with pytest.raises(TypeError, match="not an effect"):
            run_flow(client, env.runtime, bad_effect())
        future = start_flow(client, env.runtime, sleepy())
        future.cancel()
        env.wait_until(lambda: closed)

    env.run(body)


def test_offloaded_work_runs_beside_the_runtimes_other_tasks(env: Env) -> None:
    """:class:`Offload` (compressing a large body): under gevent on a thread of the
    hub's pool, the greenlets going on meanwhile; on threads in the flow's own
    thread, which holds no other task up. Its result comes back to the flow, and
    its exception ends the flow."""
    client = env.client()
    ran_on: list[int] = []

    def work(seconds: float, value: str) -> str:
        ran_on.append(threading.get_ident())
        time.sleep(seconds)  # releases the GIL, as zlib does
        return value

    def broken() -> None:
        raise ValueError("offloaded bug")

    def flow() -> Generator[Any, Any, tuple[str, str]]:
        first = yield Offload(work, (0.3, "a"))
        second = yield Offload(work, (0.0, "b"))
        return first, second

    def failing() -> Generator[Any, Any, None]:
        yield Offload(broken)

    def body() -> tuple[tuple[str, str], int]:
        ticks, done = [0], []

        def ticker() -> None:
            while not done:
                env.sleep(0.01)
                ticks[0] += 1

        tick_task = env.runtime.spawn(ticker)
        try:
            result = run_flow(client, env.runtime, flow())
        finally:
            done.append(True)
            tick_task.join()
        with pytest.raises(ValueError, match="offloaded bug"):
            run_flow(client, env.runtime, failing())
        return result, ticks[0]

    result, ticks = env.run(body)
    assert result == ("a", "b")
    assert len(ran_on) == 2
    if env.kind == "gevent":
        assert threading.get_ident() not in ran_on
        assert ticks >= 10  # the hub ran its greenlets during the 0.3 s of work
    else:
        assert ran_on == [threading.get_ident()] * 2


def test_short_offloaded_work_runs_in_the_flows_own_task(env: Env) -> None:
    """A ``short`` :class:`Offload` (a trace message's body) runs where the flow
    runs, under gevent too: not on a thread of the hub's pool; and outside the
    client's core lock, which the client's other flows take to step."""
    client = env.client()
    core_lock = env.runtime.Lock()
    ran_on: list[int] = []
    lock_free: list[bool] = []

    def work(value: str) -> str:
        ran_on.append(threading.get_ident())
        free = core_lock.acquire(blocking=False)
        if free:
            core_lock.release()
        lock_free.append(free)
        return value

    def flow() -> Generator[Any, Any, str]:
        value: str = yield Offload(work, ("a",), short=True)
        return value

    assert env.run(lambda: run_flow(client, env.runtime, flow(), core_lock=core_lock)) == "a"
    assert ran_on == [threading.get_ident()]
    assert lock_free == [True]


class _CountingLock:
    """A lock that counts how often it is taken."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.taken = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.taken += 1
        got: bool = self._lock.acquire(blocking, timeout)
        return got

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return bool(self._lock.locked())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_clock_readings_are_answered_in_the_steps_hold_of_the_core_lock(env: Env) -> None:
    """A flow's readings of the clocks (``Now``, ``WallTime``) are answered while it
    holds the client's core lock for its step: a consume worker reads them around
    each handler call, and taking the lock again for each let the connections'
    readers contend for it. Other effects are performed outside the lock."""
    client = env.client()
    core_lock = _CountingLock(env.runtime.Lock())
    held: list[bool] = []

    def work() -> None:
        held.append(core_lock.locked())

    def flow() -> Generator[Any, Any, int]:
        readings = 0
        for _ in range(3):  # three rounds of two clock readings, then a call
            yield Now()
            yield WallTime()
            readings += 2
            yield UserCall(work, ())
        return readings

    assert env.run(lambda: run_flow(client, env.runtime, flow(), core_lock=core_lock)) == 6
    # One hold per step that ends at the user's call, and one for the flow's end.
    assert core_lock.taken == 4
    assert held == [False] * 3


def test_a_flow_reading_the_clocks_over_and_over_still_lets_the_core_lock_go(env: Env) -> None:
    """Clock readings answered in one hold are bounded: the lock is let go (and
    taken again) after each ``_CLOCKS_IN_A_STEP`` of them and the one that follows,
    which the loop answers outside the lock."""
    client = env.client()
    core_lock = _CountingLock(env.runtime.Lock())
    readings = 10 * _CLOCKS_IN_A_STEP

    def flow() -> Generator[Any, Any, None]:
        for _ in range(readings):
            yield Now()

    env.run(lambda: run_flow(client, env.runtime, flow(), core_lock=core_lock))
    assert core_lock.taken == math.ceil(readings / (_CLOCKS_IN_A_STEP + 1))


class _ClocklessRuntime:
    """The runtime, but its clock fails."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def monotonic(self) -> float:
        raise OSError("no clock")


def test_a_clock_reading_that_fails_fails_the_flow_and_closes_it(env: Env) -> None:
    """A reading answered in the step's hold of the core lock that fails is left to
    the loop: the flow is closed (its ``finally`` runs) and its future fails with the
    error, as for any effect that fails outside a user's callable."""
    client = env.client()
    closed: list[bool] = []

    def flow() -> Generator[Any, Any, None]:
        try:
            yield WallTime()
            yield Now()
        finally:
            closed.append(True)

    runtime = _ClocklessRuntime(env.runtime)
    with pytest.raises(OSError, match="no clock"):
        env.run(lambda: run_flow(client, runtime, flow(), core_lock=env.runtime.Lock()))
    assert closed == [True]


def _armed_timers(env: Env) -> int:
    """Timers armed and not cancelled: the hub's active watchers under gevent, the
    scheduler's live entries on threads."""
    if env.kind == "gevent":
        return int(gevent.get_hub().loop.activecnt)
    scheduler = env.runtime._scheduler  # type: ignore[attr-defined]
    with scheduler._cond:
        return sum(1 for entry in scheduler._heap if not entry[2].cancelled)


def test_a_cancelled_sleeping_flow_ends_at_once_and_leaves_no_timer(env: Env) -> None:
    """A closing client cancels its upkeep flows, most of them asleep: each ends at
    once (its ``finally`` runs now) and its timer is cancelled. Under gevent a
    forgotten timer stays armed in the hub, which the client does not own, holding
    the closed client until it fires (20 s and more for some upkeep sleeps)."""
    client = env.client()
    closed: list[bool] = []

    def sleepy() -> Generator[Any, Any, None]:
        try:
            yield Sleep(60)
        finally:
            closed.append(True)

    def body() -> None:
        env.sleep(0.05)  # what the client's start armed is settled
        before = _armed_timers(env)
        future = start_flow(client, env.runtime, sleepy())
        assert _armed_timers(env) == before + 1
        future.cancel()
        env.wait_until(lambda: closed, timeout=1.0)
        env.sleep(0.05)  # under gevent a cancelled watcher leaves on the hub's next turn
        assert _armed_timers(env) == before

    env.run(body)


def test_flows_spawned_by_a_flow_are_kept_until_they_end_and_can_be_cancelled(
    env: Env,
) -> None:
    """``start_flow(spawned=...)``: the futures of the flows a flow spawns (and they
    spawn) are in the set while they run; a client's engine cancels them when it
    closes, and a sleeping one ends at once."""
    client = env.client()
    ended: list[str] = []

    def sleeper(name: str, seconds: float) -> Generator[Any, Any, None]:
        try:
            yield Sleep(seconds)
        finally:
            ended.append(name)

    def parent() -> Generator[Any, Any, None]:
        yield Spawn(sleeper("short", 0.05), "short")
        yield Spawn(sleeper("long", 60), "long")

    def body() -> None:
        spawned: set[Future[Any]] = set()
        run_flow(client, env.runtime, parent(), spawned=spawned)
        assert len(spawned) == 2
        env.wait_until(lambda: ended == ["short"])
        assert len(spawned) == 1  # an ended flow leaves the set
        for future in list(spawned):
            future.cancel()
        env.wait_until(lambda: ended == ["short", "long"], timeout=1.0)
        assert not spawned

    env.run(body)


def test_the_engine_cancels_the_flows_its_flows_spawned_when_it_closes(env: Env) -> None:
    from rocketmq_sync._shell import Engine

    ended: list[str] = []

    def sleeper() -> Generator[Any, Any, None]:
        try:
            yield Sleep(60)
        finally:
            ended.append("long")

    def parent() -> Generator[Any, Any, None]:
        yield Spawn(sleeper(), "long")

    def body() -> None:
        engine = Engine(transport_settings(), lambda addr, command: None, env.runtime)
        engine.run(parent())
        assert len(engine.spawned) == 1 and not ended
        engine.close()
        env.wait_until(lambda: ended == ["long"], timeout=1.0)
        assert not engine.spawned

    env.run(body)


def test_a_flow_on_a_user_worker_runs_its_next_user_calls_there(env: Env) -> None:
    """The first call goes to a worker; the flow resumes there and makes the next
    calls itself (no hand-off per call), yet a user's exception still reaches it."""
    client = env.client()
    tasks: list[object] = []

    def note(i: int) -> int:
        tasks.append(env.runtime.current())
        return i

    def fails() -> None:
        raise KeyError("inline")

    def flow() -> Generator[Any, Any, tuple[int, str]]:
        total = 0
        for i in range(10):
            total += yield UserCall(note, (i,))
        try:
            yield UserCall(fails)
        except UserCallbackError as exc:
            return total, type(exc.__cause__).__name__
        return total, "nothing raised"

    def body() -> None:
        assert run_flow(client, env.runtime, flow()) == (45, "KeyError")
        assert len(tasks) == 10 and len({id(t) for t in tasks}) == 1
        assert tasks[0] is not env.runtime.current()
        assert env.runtime.run_user_here(note, (1,)) == (False, None)  # not a worker

    env.run(body)


def appender(into: list[Any]) -> Callable[[Any, BaseException | None], None]:
    """A pool call's completion callback that appends its result (or exception)."""

    def done(result: Any, exc: BaseException | None) -> None:
        into.append(exc if exc is not None else result)

    return done


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_thread_pool_grows_for_calls_that_block_and_shrinks_back_for_quick_ones() -> None:
    runtime = ThreadRuntime(max_user_workers=6)
    pool = runtime._pool
    gate = threading.Event()
    running: list[int] = []
    done: list[Any] = []

    def blocked(i: int) -> int:
        running.append(i)
        gate.wait(10)
        return i

    for i in range(8):
        pool.submit(blocked, (i,), appender(done))
    # Every worker is stuck: the pool grows to its size (not beyond) to run them.
    wait_for(lambda: len(running) == 6)
    assert pool.workers == 6
    gate.set()
    wait_for(lambda: len(done) == 8)
    assert sorted(running) == list(range(8))
    # Quick calls need one worker: the others leave as they finish quick calls.
    deadline = time.monotonic() + 10
    while pool.workers > 1 and time.monotonic() < deadline:
        pool.submit(int, ("1",), appender(done))
        wait_for(lambda: done[-1] == 1)
        done.pop()
    assert pool.workers == 1


def test_thread_pool_runs_calls_that_wait_for_later_calls() -> None:
    """Each call waits for the one submitted after it: only a pool that starts
    workers while the earlier ones are stuck finishes, whatever the timing of
    quick calls mixed in (which make workers leave)."""
    pool = ThreadRuntime(max_user_workers=8)._pool

    def chain(length: int) -> list[Any]:
        released = [threading.Event() for _ in range(length)]
        done: list[Any] = []

        def link(i: int) -> int:
            if i + 1 < length:
                assert released[i + 1].wait(10), f"call {i + 1} never ran"
            released[i].set()
            return i

        for i in range(length):
            pool.submit(link, (i,), appender(done))
            for _ in range(random.randrange(4)):
                pool.submit(int, ("0",), appender([]))
        wait_for(lambda: len(done) == length, 15)
        return done

    for _ in range(3):
        assert sorted(chain(6)) == list(range(6))


def test_thread_pool_runs_a_burst_of_quick_calls_on_few_threads() -> None:
    """A fixed pool would start a thread per call submitted while none is idle:
    all sixteen for this burst."""
    runtime = ThreadRuntime(max_user_workers=16)
    pool = runtime._pool
    threads: set[int] = set()
    done: list[Any] = []

    def quick(i: int) -> int:
        threads.add(threading.get_ident())
        return i

    for i in range(2000):
        pool.submit(quick, (i,), appender(done))
    wait_for(lambda: len(done) == 2000)
    assert sorted(done) == list(range(2000))
    assert len(threads) <= 8


def test_a_closed_thread_runtime_ends_its_threads_and_still_runs_late_user_calls() -> None:
    before = set(threading.enumerate())
    runtime = ThreadRuntime(max_user_workers=4)
    fired: list[str] = []
    done: list[Any] = []
    runtime.call_later(0.0, lambda: fired.append("early"))
    wait_for(lambda: fired == ["early"])
    runtime.call_later(0.2, lambda: fired.append("armed before close"))
    for i in range(3):
        runtime.run_user(int, (str(i),), appender(done))
    wait_for(lambda: len(done) == 3)
    mine = [t for t in threading.enumerate() if t not in before]
    assert mine, "the runtime started no thread of its own"
    runtime.close()
    runtime.close()  # idempotent
    runtime.call_later(0.0, lambda: fired.append("armed after close"))
    wait_for(lambda: not any(t.is_alive() for t in mine), 5)
    # A user call submitted after close (a flow finishing) still runs, on a worker
    # that leaves once the queue is empty.
    runtime.run_user(int, ("7",), appender(done))
    wait_for(lambda: done[-1] == 7)
    wait_for(lambda: runtime._pool.workers == 0, 5)
    time.sleep(0.3)
    assert fired == ["early"]


def test_a_closed_gevent_runtime_ends_its_worker_greenlets() -> None:
    import gevent

    from rocketmq_gevent._runtime import GeventRuntime

    runtime = GeventRuntime(max_user_workers=4)
    done: list[Any] = []

    def slow(i: int) -> int:
        gevent.sleep(0.05)
        return i

    for i in range(4):
        runtime.run_user(slow, (i,), appender(done))
    gevent.sleep(0)
    assert runtime._pool.workers == 4
    runtime.close()  # two are still busy when it closes
    deadline = time.monotonic() + 5
    while (len(done) < 4 or runtime._pool.workers) and time.monotonic() < deadline:
        gevent.sleep(0.01)
    assert sorted(done) == [0, 1, 2, 3]
    assert runtime._pool.workers == 0


# ------------------------------------------------------------------------- gevent


def test_gevent_hub_keeps_running_during_requests_without_monkey_patching(
    tls_files: tuple[Path, Path],
) -> None:
    from gevent import monkey

    assert not monkey.is_module_patched("socket")
    assert not monkey.is_module_patched("threading")
    cert_file, key_file = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    plain = FakeBroker()
    secure = FakeBroker(ssl_context=server_context)
    runtime = GeventRuntime()
    client = RemotingClient(runtime)
    tls_client = RemotingClient(
        runtime, transport_settings(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
    )
    ticks: list[float] = []
    waiting: list[tuple[float, float]] = []  # phases in which the body only waits for IO
    stop = False

    def ticker() -> None:
        while not stop:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    def wait_phase(fn: Callable[[], object]) -> None:
        started = time.monotonic()
        fn()
        waiting.append((started, time.monotonic()))

    def body() -> None:
        nonlocal stop
        tick = gevent.spawn(ticker)
        gevent.sleep(0.02)
        # Each answered 250 ms later (the first one connecting, too).
        for i in range(4):
            delayed = command("delay", delay="0.25", k=str(i))
            wait_phase(functools.partial(client.request, plain.addr, delayed, 5.0))
        wait_phase(
            lambda: tls_client.request(
                secure.addr, command("delay", delay="0.25", body=b"x" * 100_000), 5.0
            )
        )
        for _ in range(5):  # a pipelined burst, yielding between batches
            batch = [client.request_future(plain.addr, command(), 5.0) for _ in range(50)]
            gevent.sleep(0)
            for future in batch:
                future.result(5)
        stop = True
        tick.join()

    try:
        gevent.spawn(body).get(timeout=30)
        # Timing on a busy machine is noisy, so count instead: while a request waits
        # 250 ms for its answer, a free hub ticks ~25 times; a blocked one not at all.
        for started, ended in waiting:
            inside = sum(1 for t in ticks if started < t < ended)
            assert inside >= 5, f"the hub ticked {inside} times in {ended - started:.3f}s"
    finally:
        gevent.spawn(client.close).get()
        gevent.spawn(tls_client.close).get()
        plain.close()
        secure.close()


def run_script(script: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_DIR), str(TESTS_DIR)]))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_works_when_the_application_monkey_patched_everything() -> None:
    out = run_script(
        """
        from gevent import monkey
        monkey.patch_all()
        import gevent
        from rocketmq_gevent._runtime import GeventRuntime
        from rocketmq_sync._runtime import ThreadRuntime
        from rocketmq_sync._transport import RemotingClient
        from rocketmq_sync._interpreter import run_flow
        from rocketmq_proto.flows.effects import Call, Sleep, UserCall
        from test_blocking_transport import FakeBroker, command

        broker = FakeBroker()
        for runtime in (GeventRuntime(), ThreadRuntime()):
            with RemotingClient(runtime) as client:
                futures = [client.request_future(broker.addr, command("shuffle", k=str(i)), 5)
                           for i in range(100)]
                assert [f.result(5).get("k") for f in futures] == [str(i) for i in range(100)]
                assert client.request(broker.addr, command(k="b"), 2).get("k") == "b"
                def flow():
                    yield Sleep(0.01)
                    response = yield Call(broker.addr, command(k="f"), 2)
                    return (yield UserCall(str.upper, (response.get("k"),)))
                assert run_flow(client, runtime, flow()) == "F"
            print(runtime.name, "ok")
        broker.close()
        """
    )
    assert out.split("\n")[:2] == ["gevent ok", "threads ok"]


@pytest.mark.parametrize("kind", ["threads", "gevent"])
def test_a_forked_child_reconnects_and_leaves_the_parent_connection_alone(kind: str) -> None:
    out = run_script(
        f"""
        import os, sys
        from rocketmq_gevent._runtime import GeventRuntime
        from rocketmq_sync._runtime import ThreadRuntime
        from rocketmq_sync._transport import RemotingClient
        from test_blocking_transport import FakeBroker, command

        broker = FakeBroker()
        runtime = GeventRuntime() if {kind!r} == "gevent" else ThreadRuntime()
        client = RemotingClient(runtime)
        assert client.request(broker.addr, command(k="parent"), 2).get("k") == "parent"
        pending = client.request_future(broker.addr, command("delay", delay="0.3", k="p2"), 5)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                response = client.request(broker.addr, command(k="child"), 3)
                if response.get("k") == "child":
                    code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child request failed"
        assert pending.result(3).get("k") == "p2"
        assert client.request(broker.addr, command(k="again"), 2).get("k") == "again"
        assert len(broker.conns) == 2, len(broker.conns)  # the child's own connection
        client.close()
        broker.close()
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.parametrize("kind", ["threads", "gevent"])
def test_a_runtime_and_client_made_before_a_fork_serve_the_child(kind: str) -> None:
    """Made and used in the parent (connection, timers, user pool), then used in
    the child only after it ran a while on its own: the child's timers and user
    pool work, and the parent's answers stay the parent's (under gevent the
    parent's reader greenlet lives on in the child, where the hub runs it)."""
    out = run_script(
        f"""
        import os, sys, threading, time
        import gevent
        from rocketmq_gevent._runtime import GeventRuntime
        from rocketmq_sync._runtime import ThreadRuntime
        from rocketmq_sync._transport import RemotingClient
        from rocketmq_proto.wire.errors import RequestTimeoutError
        from test_blocking_transport import FakeBroker, command

        gevent_kind = {kind!r} == "gevent"
        broker = FakeBroker()
        runtime = GeventRuntime() if gevent_kind else ThreadRuntime()
        client = RemotingClient(runtime)

        def use_timers_and_pool():
            done = []
            runtime.call_later(0.01, lambda: done.append("timer"))
            runtime.run_user(str.upper, ("pool",), lambda result, exc: done.append(result))
            deadline = time.monotonic() + 2
            while len(done) < 2 and time.monotonic() < deadline:
                runtime.sleep(0.01)
            assert sorted(done) == ["POOL", "timer"], done

        use_timers_and_pool()
        assert client.request(broker.addr, command(k="parent"), 2).get("k") == "parent"
        pending = client.request_future(broker.addr, command("delay", delay="0.2", k="p2"), 5)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if gevent_kind:
                    gevent.reinit()  # as gevent asks of whoever forks
                    gevent.sleep(0.5)  # the hub runs; the parent's answer arrives meanwhile
                else:
                    time.sleep(0.5)
                use_timers_and_pool()
                assert client.request(broker.addr, command(k="child"), 3).get("k") == "child"
                began = time.monotonic()
                try:
                    client.request(broker.addr, command("never"), 0.2)
                except RequestTimeoutError:
                    assert time.monotonic() - began < 1.0
                else:
                    raise AssertionError("no timeout")
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child failed"
        assert pending.result(3).get("k") == "p2"
        assert client.request(broker.addr, command(k="again"), 2).get("k") == "again"
        use_timers_and_pool()
        client.close()
        runtime.close()
        broker.close()
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_a_fork_check_renews_once_however_many_threads_find_it_stale() -> None:
    out = run_script(
        """
        import os, threading, time
        from rocketmq_sync._runtime import ForkCheck

        check = ForkCheck()
        assert not check.forked()
        pid = os.fork()
        if pid == 0:
            calls = []

            def reset():
                calls.append(threading.current_thread().name)
                time.sleep(0.1)  # the other threads find it stale meanwhile
                check.renew(reset)  # from within: returns at once

            stale_after = []

            def use():
                if check.forked():
                    check.renew(reset)
                stale_after.append(check.forked())

            threads = [threading.Thread(target=use) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            os._exit(0 if len(calls) == 1 and stale_after == [False] * 4 else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "renewed more than once"
        assert not check.forked()
        print("ok")
        """
    )
    assert out.strip() == "ok"


class _EarlyFirstTimer:
    """A runtime whose first timer fires at once, whatever its delay (as a gevent
    timer armed against the hub's stale clock did after the hub had been blocked)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.early = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runtime, name)

    def call_later(self, delay: float, fn: Callable[[], object]) -> Any:
        if not self.early:
            self.early += 1
            delay = 0.0
        return self._runtime.call_later(delay, fn)


def test_a_timer_firing_far_before_its_deadline_expires_nothing(
    env: Env, broker: FakeBroker
) -> None:
    runtime = _EarlyFirstTimer(env.runtime)
    client = RemotingClient(runtime)  # type: ignore[arg-type]
    env.clients.append(client)

    def body() -> None:
        answer = client.request(broker.addr, command("delay", delay="0.3", k="x"), 5.0)
        assert answer.get("k") == "x"

    env.run(body)
    assert runtime.early == 1


def test_a_flow_that_never_waits_still_lets_the_other_tasks_run(env: Env) -> None:
    """A flow whose effects all complete at once gives the other tasks a turn every
    so often: under gevent, without it, no other greenlet (nor the hub's IO) would
    run until the flow waits for something (a consumer's close once spun so)."""
    client = env.client()
    seen: list[str] = []

    def other() -> None:
        seen.append("ran")

    def flow() -> Generator[Any, Any, int]:
        env.runtime.spawn(other)
        for step in range(50_000):
            if seen:
                return step
            yield Now()
        return -1

    def body() -> int:
        return run_flow(client, env.runtime, flow())

    steps = env.run(body)
    # A turn after _TURN_AFTER effects, clock readings answered in a step counted
    # (a step may answer up to _CLOCKS_IN_A_STEP of them past the mark).
    turn = _TURN_AFTER + _CLOCKS_IN_A_STEP
    assert 0 <= steps <= turn if env.kind == "gevent" else 0 <= steps < 50_000, steps


# ------------------------------------------------- a caller reading its own answer
# The threads runtime lets a caller blocked on its own request read the connection
# itself while nothing else is in flight (the reader thread is parked meanwhile).
# In these tests a parked reader looks for unasked input only every minute, unless
# a test says otherwise: a request that only that look would have read fails by
# its timeout instead of passing late.


@pytest.fixture
def parked_look(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    from rocketmq_sync import _transport

    def set_look(seconds: float) -> None:
        monkeypatch.setattr(_transport, "_PARKED_LOOK", seconds)

    set_look(60.0)
    return set_look


def parked(client: RemotingClient, addr: str) -> Any:
    """The connection to ``addr``, once its reader thread parked."""
    channel = client._core.pool.conns[addr]
    deadline = time.monotonic() + 5
    while not channel._parked:
        assert time.monotonic() < deadline, "the reader never parked"
        time.sleep(0.001)
    return channel


def reading_for(channel: Any, broker: FakeBroker, k: str) -> None:
    """Return once a caller reads ``channel`` for its request ``k``: reading, and
    the broker has it. (Reading alone could be the caller's look at the parked
    connection before it sends, briefly; a request made then is left to the
    reader thread, which the look wakes once done.)"""
    # The broker first: reading seen after it had the request is no look.
    _when(
        lambda: any(c.get("k") == k for c in broker.received) and channel._caller_reading,
        f"no caller reads for {k!r}",
    )


def _when(predicate: Callable[[], object], what: str = "condition not reached in time") -> None:
    """Return once ``predicate()`` holds; fail with ``what`` after 5 seconds."""
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.0005)


class Warm:
    """A threads client whose connection to the fake broker is open, its reader
    parked (a blocked caller's answer came, nothing else is in flight)."""

    def __init__(self, env: Env, client: RemotingClient, channel: Any) -> None:
        self.env = env
        self.client = client
        self.channel = channel


@pytest.fixture
def warm(broker: FakeBroker, parked_look: Callable[[float], None]) -> Generator[Warm, None, None]:
    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        yield Warm(env, client, parked(client, broker.addr))
    finally:
        client.close()
        env.runtime.close()


def test_a_blocked_caller_reads_the_answers_to_its_flows_requests(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)  # connects: the reader reads that one
        channel = parked(client, broker.addr)
        reader = channel._reader
        resumed_in: list[object] = []

        def flow() -> Generator[Any, Any, list[str]]:
            keys = []
            for i in range(20):
                response = yield Call(broker.addr, command(k=str(i), body=b"x" * i), 2.0)
                resumed_in.append(threading.current_thread())
                keys.append(response.get("k"))
            return keys

        assert run_flow(client, env.runtime, flow()) == [str(i) for i in range(20)]
        # Each answer was read by the caller, and its flow resumed there.
        assert resumed_in == [threading.current_thread()] * 20
        assert channel._parked and reader.is_alive()
        # So was the answer of a plain blocking request.
        assert client.request(broker.addr, command(k="plain"), 2.0).get("k") == "plain"
        assert channel._parked
    finally:
        client.close()
        env.runtime.close()


def test_a_request_of_anyone_else_unparks_the_reader(broker: FakeBroker, warm: Warm) -> None:
    client, channel = warm.client, warm.channel
    # Not a blocked caller's: the reader thread reads its answer.
    future = client.request_future(broker.addr, command(k="async"), 2.0)
    assert future.result(3).get("k") == "async"
    completed_in: list[object] = []
    # Answered late enough for the callback to be added first.
    future = client.request_future(broker.addr, command("delay", delay="0.1"), 2.0)
    future.add_done_callback(lambda _: completed_in.append(threading.current_thread()))
    future.result(3)
    assert completed_in == [channel._reader]
    # The reader reads on while requests of others come, and parks only after
    # a blocked caller's request.
    assert not channel._parked
    client.request(broker.addr, command(), 2.0)
    parked(client, broker.addr)


def test_a_caller_that_stops_reading_with_requests_in_flight_unparks_the_reader(
    broker: FakeBroker, warm: Warm
) -> None:
    """Blocked callers in many threads at once: one reads, the others wait; the one
    reading stops once answered, and the reader thread takes over the rest."""
    client = warm.client
    env = warm.env

    def caller(n: int) -> list[str]:
        keys = []
        for i in range(40):
            do = "shuffle" if i % 3 == 0 else "echo"
            delay = {"do": "delay", "delay": "0.002"} if i % 7 == 0 else {}
            request = command(**{"do": do, "k": f"{n}-{i}", **delay})  # type: ignore[arg-type]
            keys.append(client.request(broker.addr, request, 3.0).get("k"))
        return keys

    results = env.concurrently([functools.partial(caller, n) for n in range(8)])
    assert results == [[f"{n}-{i}" for i in range(40)] for n in range(8)]


def test_a_caller_reading_its_answer_times_out_on_time_and_a_late_answer_is_dropped(
    broker: FakeBroker, warm: Warm
) -> None:
    client, channel = warm.client, warm.channel
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        client.request(broker.addr, command("delay", delay="0.5"), 0.15)
    assert 0.14 <= time.monotonic() - started < 0.9  # not its look after a second
    assert channel._parked
    # The late answer comes while the caller reads the next request's: dropped.
    assert client.request(broker.addr, command("delay", k="b", delay="0.6"), 2.0).get("k") == "b"
    assert len(broker.conns) == 1


def test_a_caller_reading_its_answer_sees_the_connection_close(
    broker: FakeBroker, warm: Warm
) -> None:
    client, channel = warm.client, warm.channel
    reader = channel._reader
    started = time.monotonic()
    with pytest.raises(ConnectionClosedError):
        client.request(broker.addr, command("close"), 5.0)
    assert time.monotonic() - started < 2.0
    reader.join(2)  # the parked reader closed the socket and ended
    assert not reader.is_alive()
    assert client.request(broker.addr, command(k="again"), 2.0).get("k") == "again"
    assert len(broker.conns) == 2


def test_closing_the_client_ends_a_callers_read_and_the_parked_reader(
    broker: FakeBroker, warm: Warm
) -> None:
    client, channel = warm.client, warm.channel
    reader = channel._reader
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            client.request(broker.addr, command("never", k="forever"), 30.0)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=wait_forever)
    caller.start()
    reading_for(channel, broker, "forever")
    started = time.monotonic()
    client.close()
    caller.join(5)
    assert time.monotonic() - started < 2.0
    assert len(errors) == 1 and isinstance(errors[0], ConnectionClosedError)
    assert not reader.is_alive()
    deadline = time.monotonic() + 5
    while not broker.conns[0].ended:  # the socket is closed, not left open
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_parked_reader_still_answers_a_servers_request(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    parked_look(0.05)
    env = Env("threads")
    client = env.client(request_handler=lambda addr, request: Reply(0, {}, b"yes"))
    try:
        client.request(broker.addr, command(), 2.0)
        parked(client, broker.addr)
        conn = broker.conns[0]
        opaque = conn.send_request(307, b"q")  # nothing in flight: nobody is reading
        deadline = time.monotonic() + 5
        while opaque not in conn.responses:
            assert time.monotonic() < deadline, "the server's request was never read"
            time.sleep(0.005)
        assert conn.responses[opaque].body == b"yes"
    finally:
        client.close()
        env.runtime.close()


def test_a_caller_reads_its_answer_over_tls(
    tls_files: tuple[Path, Path], parked_look: Callable[[float], None]
) -> None:
    cert_file, key_file = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    broker = FakeBroker(ssl_context=server_context)
    env = Env("threads")
    client = env.client(ssl_context=ssl.create_default_context(cafile=str(cert_file)))
    try:
        client.request(broker.addr, command(), 5.0)
        channel = parked(client, broker.addr)
        for i in range(10):
            big = os.urandom(50_000 * i)  # up to many TLS records per answer
            response = client.request(broker.addr, command(k=str(i), body=big), 5.0)
            assert response.get("k") == str(i) and response.body == big
        assert channel._parked
    finally:
        client.close()
        env.runtime.close()
        broker.close()


# Under gevent a greenlet blocked on its own request reads its answer too (the
# reader greenlet parks meanwhile), waiting on the hub, never in a blocking poll.


def _gevent_parked(client: RemotingClient, addr: str) -> Any:
    """(In a greenlet.) The connection to ``addr``, once its reader greenlet parked."""
    channel = client._core.pool.conns[addr]
    deadline = time.monotonic() + 5
    while not channel._parked:
        assert time.monotonic() < deadline, "the reader never parked"
        gevent.sleep(0.001)
    return channel


def _in_a_greenlet_parked(
    broker: FakeBroker, body: Callable[[Env, RemotingClient, Any], Any], **options: Any
) -> Any:
    """``body(env, client, channel)``'s value, run in a greenlet: a gevent client
    (``options`` are its transport settings') whose connection to ``broker`` is
    open, its reader parked; the client is closed after."""
    env = Env("gevent")
    client = env.client(**options)

    def run() -> Any:
        client.request(broker.addr, command(), 2.0)  # connects: the reader reads that one
        return body(env, client, _gevent_parked(client, broker.addr))

    try:
        return env.run(run)
    finally:
        env.run(client.close)


def test_a_blocked_greenlet_reads_its_own_answers_and_the_hub_runs_meanwhile(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    def body(env: Env, client: RemotingClient, channel: Any) -> None:
        reader = channel._reader
        resumed_in: list[object] = []

        def flow() -> Generator[Any, Any, list[str]]:
            keys = []
            for i in range(20):
                response = yield Call(broker.addr, command(k=str(i)), 2.0)
                resumed_in.append(gevent.getcurrent())
                keys.append(response.get("k"))
            return keys

        assert run_flow(client, env.runtime, flow()) == [str(i) for i in range(20)]
        assert resumed_in == [gevent.getcurrent()] * 20
        assert channel._parked and not reader.dead
        # A greenlet reading waits on the hub: other greenlets run meanwhile.
        tick = gevent.spawn(ticker)
        try:
            gevent.sleep(0.02)
            before = len(ticks)
            response = client.request(broker.addr, command("delay", k="d", delay="0.2"), 2.0)
            assert response.get("k") == "d"
            assert len(ticks) - before >= 10
        finally:
            tick.kill()

    _in_a_greenlet_parked(broker, body)


def test_greenlets_blocked_at_once_each_get_their_own_answers(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    """One greenlet reads, the others wait; the reader greenlet takes over the
    answers in flight once the reading one stops."""

    def body(env: Env, client: RemotingClient, channel: Any) -> list[list[str]]:
        def caller(n: int) -> list[str]:
            keys = []
            for i in range(40):
                do = "shuffle" if i % 3 == 0 else "echo"
                delay = {"do": "delay", "delay": "0.002"} if i % 7 == 0 else {}
                request = command(**{"do": do, "k": f"{n}-{i}", **delay})  # type: ignore[arg-type]
                keys.append(client.request(broker.addr, request, 3.0).get("k"))
            return keys

        return env.concurrently([functools.partial(caller, n) for n in range(8)])

    answers = _in_a_greenlet_parked(broker, body)
    assert answers == [[f"{n}-{i}" for i in range(40)] for n in range(8)]


def test_a_reading_greenlet_times_out_on_time_and_sees_a_close(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    def body(env: Env, client: RemotingClient, channel: Any) -> None:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.request(broker.addr, command("delay", delay="0.5"), 0.15)
        assert 0.14 <= time.monotonic() - started < 0.9
        assert channel._parked
        # The late answer comes while the caller reads the next one's: dropped.
        response = client.request(broker.addr, command("delay", k="b", delay="0.6"), 2.0)
        assert response.get("k") == "b"
        reader = channel._reader
        with pytest.raises(ConnectionClosedError):
            client.request(broker.addr, command("close"), 5.0)
        reader.join(2)
        assert reader.dead
        assert client.request(broker.addr, command(k="again"), 2.0).get("k") == "again"
        assert len(broker.conns) == 2

    _in_a_greenlet_parked(broker, body)


def test_closing_the_client_ends_a_reading_greenlet_and_the_parked_reader(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    def body(env: Env, client: RemotingClient, channel: Any) -> None:
        reader = channel._reader
        waiting = gevent.spawn(client.request, broker.addr, command("never"), 30.0)
        while not channel._caller_reading:
            gevent.sleep(0.001)
        started = time.monotonic()
        client.close()
        waiting.join(5)
        assert time.monotonic() - started < 2.0
        assert isinstance(waiting.exception, ConnectionClosedError)
        reader.join(2)
        assert reader.dead

    _in_a_greenlet_parked(broker, body)


def test_a_parked_reader_greenlet_still_answers_a_servers_request(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    parked_look(0.05)

    def body(env: Env, client: RemotingClient, channel: Any) -> None:
        conn = broker.conns[0]
        opaque = conn.send_request(307, b"q")  # nothing in flight: nobody is reading
        deadline = time.monotonic() + 5
        while opaque not in conn.responses:
            assert time.monotonic() < deadline, "the server's request was never read"
            gevent.sleep(0.005)
        assert conn.responses[opaque].body == b"yes"

    _in_a_greenlet_parked(broker, body, request_handler=lambda addr, request: Reply(0, {}, b"yes"))


def test_a_gevent_connection_holds_as_many_hub_watchers_parked_as_reading(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    """An idle connection's reader waits on one watcher, parked or reading (its
    read has no timer), so a count of the hub's watchers (the leak tests') does
    not change with what the last request on a long-lived connection was."""
    env = Env("gevent")
    client = env.client()
    loop = gevent.get_hub().loop

    def settled() -> int:
        gevent.sleep(0.4)  # the requests' deadline timers (0.2 s) have fired
        return int(loop.activecnt)

    def body() -> None:
        client.request(broker.addr, command(), 0.2)
        channel = _gevent_parked(client, broker.addr)
        parked_count = settled()
        assert channel._parked
        client.request_future(broker.addr, command(), 0.2).result(1)  # not a blocked caller's
        reading_count = settled()
        assert not channel._parked
        assert reading_count == parked_count

    try:
        env.run(body)
    finally:
        env.run(client.close)


def test_a_users_callable_never_runs_in_a_reading_greenlet(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    """As with threads: whether a greenlet is reading is its own (a greenlet-local),
    so a user worker reading a connection hands the next callable on."""
    ran_in: list[object] = []
    worker: list[object] = []
    outcome: list[Any] = []

    def body(env: Env, client: RemotingClient, channel: Any) -> None:
        def nested() -> str:
            ran_in.append(gevent.getcurrent())
            return client.request(broker.addr, command(k="nested"), 2.0).get("k") or ""

        def flow() -> Generator[Any, Any, str]:
            yield Call(broker.addr, command(k="outer"), 2.0)
            answer: str = yield UserCall(nested)
            return answer

        def on_worker() -> str:
            worker.append(gevent.getcurrent())
            return run_flow(client, env.runtime, flow())

        # While one greenlet reads, another is not reading.
        slow = gevent.spawn(client.request, broker.addr, command("delay", delay="0.2"), 2.0)
        while not channel._caller_reading:
            gevent.sleep(0.001)
        assert not client.reading_here()
        slow.get(timeout=5)
        env.runtime.run_user(on_worker, (), lambda value, exc: outcome.append((value, exc)))
        deadline = time.monotonic() + 5
        while not outcome:
            assert time.monotonic() < deadline
            gevent.sleep(0.005)

    _in_a_greenlet_parked(broker, body)
    assert outcome == [("nested", None)]
    assert ran_in and ran_in[0] is not worker[0]


def test_a_request_made_while_a_caller_reads_is_read_by_that_caller(
    broker: FakeBroker, warm: Warm
) -> None:
    """Never two readers at once: the reader thread stays parked while a caller
    reads, whoever else sends meanwhile. The caller completes only its own
    request: the others' callbacks run on the reader thread, as ever."""
    client, channel = warm.client, warm.channel
    caller_thread: list[object] = []
    completed_in: list[object] = []

    def caller() -> None:
        caller_thread.append(threading.current_thread())
        # Held by the broker until "quick" was answered, whatever the machine's load
        # (answered 1.5 s after it was sent, a CI run once saw "quick" answered later).
        client.request(broker.addr, command("never", k="slow"), 30.0)

    thread = threading.Thread(target=caller)
    thread.start()
    reading_for(channel, broker, "slow")
    quick = client.request_future(broker.addr, command("never", k="quick"), 10.0)
    assert channel._parked and channel._caller_reading  # the caller reads it
    quick.add_done_callback(lambda _: completed_in.append(threading.current_thread()))
    _when(lambda: any(c.get("k") == "quick" for c in broker.received))
    (held,) = [c for c in broker.received if c.get("k") == "quick"]
    broker.conns[-1].respond(held)  # answered once its callback is in place
    assert quick.result(10).get("k") == "quick"
    assert channel._caller_reading  # answered while the caller still read
    (slow,) = [c for c in broker.received if c.get("k") == "slow"]
    broker.conns[-1].respond(slow)  # only now
    thread.join(10)
    assert not thread.is_alive()
    assert completed_in == [channel._reader] and caller_thread[0] is not channel._reader
    assert channel._parked  # read by the caller, which is done: the reader parked on


class OneReaderRuntime(ThreadRuntime):
    """A threads runtime whose sockets count reads, and reads that overlapped
    another read of the same socket."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.overlaps = 0

    def create_connection(self, addr: tuple[str, int], timeout: float) -> Any:
        return _CountingSocket(self, socket.create_connection(addr, timeout))


class _SocketShim:
    """A plain socket seen through a test runtime: what a subclass does not
    define goes to the socket."""

    def __init__(self, runtime: Any, sock: socket.socket) -> None:
        self._runtime = runtime
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _CountingSocket(_SocketShim):
    def __init__(self, runtime: OneReaderRuntime, sock: socket.socket) -> None:
        super().__init__(runtime, sock)
        self._lock = threading.Lock()
        self._inside = 0

    def recv(self, size: int) -> bytes:
        with self._lock:
            self._inside += 1
            self._runtime.reads += 1
            if self._inside > 1:
                self._runtime.overlaps += 1
        try:
            return self._sock.recv(size)
        finally:
            with self._lock:
                self._inside -= 1


def test_callers_async_requests_and_a_servers_requests_all_at_once(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    """Every answer reaches its own request, its body whole, however the reading
    passes between callers and the reader thread; and never do two threads read
    one socket at once (its sockets count the threads inside ``recv``). (Long
    timeouts: it failed twice, unexplained, in runs beside a CI run.)"""
    parked_look(0.05)  # the server's requests may come while nothing is in flight
    env = Env("threads")
    env.runtime = OneReaderRuntime()
    client = env.client(request_handler=lambda addr, request: Reply(0, {}, request.body))
    try:
        client.request(broker.addr, command(), 2.0)
        parked(client, broker.addr)
        conn = broker.conns[0]
        rng = random.Random(7)
        bodies = [rng.randbytes(rng.choice((0, 10, 3000, 70_000))) for _ in range(64)]

        def caller(n: int) -> None:
            for i in range(30):
                body = bodies[(n * 30 + i) % 64]
                do = ("echo", "shuffle", "delay")[(n + i) % 3]
                request = command(do, k=f"{n}-{i}", body=body, delay="0.001")
                response = client.request(broker.addr, request, 20.0)
                assert (response.get("k"), response.body) == (f"{n}-{i}", body)

        def sender(n: int) -> None:
            futures = [
                client.request_future(broker.addr, command(k=f"a{n}-{i}", body=bodies[i]), 20.0)
                for i in range(20)
            ]
            for i, future in enumerate(futures):
                response = future.result(30)
                assert (response.get("k"), response.body) == (f"a{n}-{i}", bodies[i])

        def asker() -> None:
            for i in range(20):
                opaque = conn.send_request(307, bodies[i])
                deadline = time.monotonic() + 20
                while opaque not in conn.responses:
                    assert time.monotonic() < deadline, "a server's request was not read"
                    time.sleep(0.002)
                assert conn.responses[opaque].body == bodies[i]

        tasks = [functools.partial(caller, n) for n in range(6)]
        tasks += [functools.partial(sender, n) for n in range(2)]
        env.concurrently([*tasks, asker])
        assert len(broker.conns) == 1
        assert env.runtime.reads > 100 and env.runtime.overlaps == 0
    finally:
        client.close()
        env.runtime.close()


def test_a_parked_readers_looks_never_disturb_a_reading_caller(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    parked_look(0.0002)  # looks all the time, while callers read
    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        channel = parked(client, broker.addr)
        reader = channel._reader
        for i in range(1500):
            # A long timeout: a 2 s one expired once in CI, on a loaded machine. An
            # answer lost to the race this test looks for still fails, and says so.
            try:
                response = client.request(broker.addr, command(k=str(i)), 10.0)
            except RequestTimeoutError:
                conn = broker.conns[-1]
                raise AssertionError(
                    f"request {i} unanswered: the broker answered {len(conn.answer_order)}"
                    f" requests; parked={channel._parked}"
                    f" caller_reading={channel._caller_reading} in_flight={len(channel._waiters)}"
                    f" dirty={channel._dirty} reader_busy={channel._reader_busy}"
                ) from None
            assert response.get("k") == str(i)
        assert reader.is_alive() and len(broker.conns) == 1
    finally:
        client.close()
        env.runtime.close()


def test_a_reader_that_fails_unexpectedly_fails_its_requests_and_the_next_reconnects(
    env: Env, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rocketmq_sync._transport import _Channel

    client = env.client()
    feed = _Channel._feed
    failures: list[Exception] = []

    def fails_once(self: Any, data: bytes, *args: Any) -> Any:
        if failures:
            raise failures.pop()
        return feed(self, data, *args)

    def body() -> None:
        client.request(broker.addr, command(), 2.0)
        monkeypatch.setattr(_Channel, "_feed", fails_once)
        failures.append(RuntimeError("a bug"))
        future = client.request_future(broker.addr, command("delay", delay="0.05"), 5.0)
        with pytest.raises(ConnectionClosedError, match="a bug"):
            future.result(3)
        assert client.request(broker.addr, command(k="again"), 2.0).get("k") == "again"
        assert len(broker.conns) == 2
        # A blocked caller reading its own answer (threads) fails alike.
        if env.kind == "threads":
            parked(client, broker.addr)
        failures.append(RuntimeError("another bug"))
        with pytest.raises(ConnectionClosedError, match="another bug"):
            client.request(broker.addr, command(), 3.0)
        assert client.request(broker.addr, command(k="then"), 2.0).get("k") == "then"
        assert len(broker.conns) == 3

    env.run(body)


def test_a_request_still_in_flight_when_the_caller_stops_reading_goes_to_the_reader(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        channel = parked(client, broker.addr)
        box: dict[str, Any] = {}

        def other() -> None:
            _when(lambda: channel._caller_reading)
            future = client.request_future(broker.addr, command("delay", k="x", delay="0.3"), 5.0)
            box["k"] = future.result(4).get("k")

        thread = threading.Thread(target=other)
        thread.start()
        started = time.monotonic()
        assert (
            client.request(broker.addr, command("delay", k="c", delay="0.05"), 2.0).get("k") == "c"
        )
        thread.join(5)
        # Answered after the caller stopped: the reader read it, not its look a minute on.
        assert box == {"k": "x"} and time.monotonic() - started < 2.0
    finally:
        client.close()
        env.runtime.close()


def test_a_flow_that_moves_to_another_connection_leaves_the_first_to_its_reader(
    parked_look: Callable[[float], None],
) -> None:
    one, two = FakeBroker(), FakeBroker()
    env = Env("threads")
    client = env.client()
    try:
        client.request(one.addr, command(), 2.0)
        client.request(two.addr, command(), 2.0)
        first = parked(client, one.addr)
        parked(client, two.addr)
        box: dict[str, float] = {}

        def flow() -> Generator[Any, Any, None]:
            yield Call(one.addr, command("delay", k="a", delay="0.05"), 2.0)
            yield Call(two.addr, command("delay", k="b", delay="1.0"), 3.0)

        def other() -> None:
            _when(lambda: first._caller_reading)
            future = client.request_future(one.addr, command("delay", k="x", delay="0.1"), 5.0)
            started = time.monotonic()
            future.result(5)
            box["took"] = time.monotonic() - started

        thread = threading.Thread(target=other)
        thread.start()
        run_flow(client, env.runtime, flow())
        thread.join(5)
        assert box["took"] < 0.8  # not after the flow's read on the second connection
    finally:
        client.close()
        env.runtime.close()
        one.close()
        two.close()


def test_an_interrupt_in_a_reading_caller_strands_no_request(
    broker: FakeBroker, warm: Warm
) -> None:
    """KeyboardInterrupt reaches the main thread wherever it is: here in the
    caller's own flow, once it read its answer, while other threads' requests are
    in flight; then between reading bytes and feeding them."""
    client, channel = warm.client, warm.channel
    env = warm.env
    others: list[Future[RemotingCommand]] = []

    def send_others() -> None:
        _when(lambda: channel._caller_reading)
        for i in range(10):
            others.append(client.request_future(broker.addr, command("shuffle", k=str(i)), 2.0))

    def flow() -> Generator[Any, Any, None]:
        yield Call(broker.addr, command("delay", k="main", delay="0.1"), 2.0)
        raise KeyboardInterrupt  # as if SIGINT came while the flow ran in the caller

    thread = threading.Thread(target=send_others)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        run_flow(client, env.runtime, flow())
    thread.join(5)
    for future in others:
        assert future.result(3).get("k") is not None  # answered: nothing was lost
    assert not channel._caller_reading

    # Bytes read, then the interrupt before they were fed: the stream's state is
    # unknown, so the connection is dropped and what was in flight fails. (Under
    # load the flow above may have resumed on the reader thread, its interrupt
    # ending that thread and so the connection: a blocked request parks a new one.)
    client.request(broker.addr, command(k="park"), 2.0)
    connections = len(broker.conns)
    channel = parked(client, broker.addr)
    from rocketmq_sync._transport import _Channel

    feed = _Channel._feed
    interrupts = [KeyboardInterrupt()]

    def interrupted(self: Any, data: bytes, *args: Any) -> Any:
        if interrupts and args:  # a caller's feed
            raise interrupts.pop()
        return feed(self, data, *args)

    waiting: list[Future[RemotingCommand]] = []

    def send_one() -> None:
        _when(lambda: channel._caller_reading)
        waiting.append(client.request_future(broker.addr, command("never"), 5.0))

    thread = threading.Thread(target=send_one)
    thread.start()
    with contextlib.ExitStack() as stack:
        stack.callback(setattr, _Channel, "_feed", feed)
        _Channel._feed = interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            client.request(broker.addr, command("delay", k="c", delay="0.1"), 2.0)
    thread.join(5)
    with pytest.raises(ConnectionClosedError):
        waiting[0].result(3)
    assert client.request(broker.addr, command(k="after"), 2.0).get("k") == "after"
    assert len(broker.conns) == connections + 1


def test_a_connection_the_server_closed_while_idle_is_not_used_by_a_caller(
    broker: FakeBroker, warm: Warm
) -> None:
    client = warm.client
    broker.conns[0].close()  # unasked: nobody reads while the reader is parked
    _when(lambda: broker.conns[0].ended)
    time.sleep(0.02)
    # The caller looks before it writes: the closed connection is skipped.
    assert client.request(broker.addr, command(k="fresh"), 2.0).get("k") == "fresh"
    assert len(broker.conns) == 2


def test_closing_with_a_parked_reader_or_from_a_reading_caller_does_not_wait(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        reader = parked(client, broker.addr)._reader
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 1.0 and not reader.is_alive()
    finally:
        env.runtime.close()

    env = Env("threads")
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        channel = parked(client, broker.addr)
        took: list[float] = []

        def flow() -> Generator[Any, Any, None]:
            yield Call(broker.addr, command(k="main"), 2.0)
            started = time.monotonic()
            client.close()  # in the caller, as it reads: its own flow's continuation
            took.append(time.monotonic() - started)

        run_flow(client, env.runtime, flow())
        assert took[0] < 1.0
        channel._reader.join(2)
        assert not channel._reader.is_alive()
    finally:
        client.close()
        env.runtime.close()


def test_a_users_callable_never_runs_in_a_reading_caller(broker: FakeBroker, warm: Warm) -> None:
    """A flow run by one of the runtime's user workers runs its next user's
    callable there, unless that worker is reading a connection: the callable
    could wait for that very connection (here: a blocking request on it)."""
    client = warm.client
    env = warm.env
    ran_in: list[object] = []

    def nested() -> str:
        ran_in.append(threading.current_thread())
        return client.request(broker.addr, command(k="nested"), 2.0).get("k") or ""

    def flow() -> Generator[Any, Any, str]:
        yield Call(broker.addr, command(k="outer"), 2.0)
        answer: str = yield UserCall(nested)
        return answer

    outcome: list[Any] = []
    worker: list[object] = []

    def on_worker() -> str:
        worker.append(threading.current_thread())
        return run_flow(client, env.runtime, flow())

    env.runtime.run_user(on_worker, (), lambda value, exc: outcome.append((value, exc)))
    _when(lambda: outcome)
    assert outcome == [("nested", None)]
    assert ran_in and ran_in[0] is not worker[0]


def test_an_interrupt_as_a_caller_takes_or_leaves_the_connection_keeps_it_usable(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    env = Env("threads")
    client = env.client()

    class Interrupting:
        """The core's per-thread flags, raising once as a caller starts reading."""

        def __init__(self) -> None:
            object.__setattr__(self, "armed", True)

        def __setattr__(self, name: str, value: Any) -> None:
            if self.armed and name == "reading" and value:
                object.__setattr__(self, "armed", False)
                raise KeyboardInterrupt
            object.__setattr__(self, name, value)

    try:
        client.request(broker.addr, command(), 2.0)
        channel = parked(client, broker.addr)
        client._core.local = Interrupting()  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            client.request(broker.addr, command(k="a"), 2.0)
        assert not channel._caller_reading and channel._reading_caller is None
        for i in range(3):
            assert client.request(broker.addr, command(k=str(i)), 2.0).get("k") == str(i)
        assert len(broker.conns) == 1
    finally:
        client.close()
        env.runtime.close()


def test_answers_handed_to_the_reader_while_it_empties_earlier_ones_are_not_left(
    broker: FakeBroker, warm: Warm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader empties what a caller handed over while that caller hands over
    more (a pause after each emptying widens the window): none waits for a look."""
    from rocketmq_sync._transport import _Channel

    handed_over = _Channel._handed_over

    def slowly(self: Any) -> None:
        handed_over(self)
        time.sleep(0.003)

    monkeypatch.setattr(_Channel, "_handed_over", slowly)
    client, channel = warm.client, warm.channel
    futures: list[Future[RemotingCommand]] = []

    def others() -> None:
        _when(lambda: channel._caller_reading)
        for i in range(30):
            delay = f"{0.002 * i:.3f}"
            futures.append(
                client.request_future(broker.addr, command("delay", k=str(i), delay=delay), 3.0)
            )

    thread = threading.Thread(target=others)
    thread.start()
    client.request(broker.addr, command("delay", k="c", delay="0.3"), 3.0)
    thread.join(5)
    for i, future in enumerate(futures):
        assert future.result(4).get("k") == str(i)


def test_an_interrupt_after_answers_were_handed_over_keeps_those_answers(
    broker: FakeBroker, warm: Warm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rocketmq_sync._transport import _Channel

    client, channel = warm.client, warm.channel
    other: list[Future[RemotingCommand]] = []
    feed = _Channel._feed
    interrupts = [KeyboardInterrupt()]

    def then_interrupted(self: Any, data: bytes, *args: Any) -> Any:
        actions = feed(self, data, *args)
        if args and interrupts and self._handoff:  # others' answers handed over
            raise interrupts.pop()
        return actions

    monkeypatch.setattr(_Channel, "_feed", then_interrupted)

    def send_other() -> None:
        _when(lambda: channel._caller_reading)
        other.append(client.request_future(broker.addr, command(k="other"), 3.0))

    thread = threading.Thread(target=send_other)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        client.request(broker.addr, command("delay", k="c", delay="0.3"), 3.0)
    thread.join(5)
    assert other[0].result(3).get("k") == "other"  # answered, not failed


def test_any_request_skips_a_connection_the_server_closed_while_idle(
    broker: FakeBroker, warm: Warm
) -> None:
    client = warm.client
    broker.conns[0].close()
    _when(lambda: broker.conns[0].ended)
    time.sleep(0.02)
    future = client.request_future(broker.addr, command(k="async"), 2.0)
    assert future.result(3).get("k") == "async"
    assert len(broker.conns) == 2


def test_a_reading_caller_gives_up_should_the_timer_never_fire(
    broker: FakeBroker, warm: Warm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rocketmq_sync._transport import _Channel

    client = warm.client
    monkeypatch.setattr(_Channel, "_on_timer", lambda self, seq: None)
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        client.request(broker.addr, command("never"), 0.2)
    assert time.monotonic() - started < 5.0


def test_a_oneway_skips_a_connection_the_server_closed_while_idle(
    broker: FakeBroker, warm: Warm
) -> None:
    client = warm.client
    broker.conns[0].close()
    _when(lambda: broker.conns[0].ended)
    time.sleep(0.02)
    client.oneway(broker.addr, command(k="ow"))
    _when(lambda: any(c.get("k") == "ow" for c in broker.received))  # not lost unsaid
    assert len(broker.conns) == 2


class FailingWriteRuntime(ThreadRuntime):
    """A threads runtime whose sockets fail their next write once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_write = False

    def create_connection(self, addr: tuple[str, int], timeout: float) -> Any:
        return _FailingWriteSocket(self, socket.create_connection(addr, timeout))


class _FailingWriteSocket(_SocketShim):
    def _maybe_fail(self) -> None:
        if self._runtime.fail_next_write:
            self._runtime.fail_next_write = False
            raise ConnectionResetError("a write failed (test)")

    def sendall(self, data: bytes) -> None:
        self._maybe_fail()
        self._sock.sendall(data)

    def send(self, data: bytes) -> int:  # a reading caller's (Runtime.send_now)
        self._maybe_fail()
        return self._sock.send(data)


def test_a_write_failing_in_a_reading_caller_leaves_the_others_to_the_reader(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    """The caller's flow, resumed by its own answer as it reads, sends again and
    that write fails: the others' requests fail on the reader thread, not in the
    caller."""
    env = Env("threads")
    runtime = env.runtime = FailingWriteRuntime()
    client = env.client()
    try:
        client.request(broker.addr, command(), 2.0)
        channel = parked(client, broker.addr)
        failed_in: list[object] = []

        def sender() -> None:
            _when(lambda: channel._caller_reading)
            other = client.request_future(broker.addr, command("never", k="v"), 3.0)
            other.add_done_callback(lambda _: failed_in.append(threading.current_thread()))

        def flow() -> Generator[Any, Any, str]:
            yield Call(broker.addr, command("delay", k="c", delay="0.2"), 3.0)
            runtime.fail_next_write = True
            try:
                yield Call(broker.addr, command(k="c2"), 3.0)
            except ConnectionClosedError as exc:
                return str(exc)
            return "sent"

        thread = threading.Thread(target=sender)
        thread.start()
        outcome = run_flow(client, env.runtime, flow())
        thread.join(5)
        assert "a write failed" in outcome
        _when(lambda: failed_in)
        assert failed_in == [channel._reader]
    finally:
        client.close()
        env.runtime.close()


# The threads runtime leaves a request queued by another thread while the
# connection's reader thread is busy with what it read (completing answers,
# running their callbacks) to that reader, which writes every frame queued
# meanwhile in one send before it reads again.


class WriteCountingRuntime(ThreadRuntime):
    """A threads runtime whose sockets record each ``sendall``: the thread, and
    how many request frames it carried (counted by their opaque-bearing header)."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[tuple[object, int]] = []
        #: Cleared: reads wait (so that what comes meanwhile is read at once).
        self.reads_open = threading.Event()
        self.reads_open.set()

    def create_connection(self, addr: tuple[str, int], timeout: float) -> Any:
        return _SendCountingSocket(self, socket.create_connection(addr, timeout))


class TurnTakingRuntime(WriteCountingRuntime):
    """A :class:`WriteCountingRuntime` whose ``reader`` thread, when it gives the
    other threads a turn (``sleep(0)``), waits up to 1 s for ``turn_taken()``
    first: the turn the operating system gives at once on a quiet machine, maybe
    too late on a loaded one (a CI run once saw fewer than 300 of 400 frames
    written by the reader, beside busy processes)."""

    def __init__(self) -> None:
        super().__init__()
        self.reader: object = None
        self.turn_taken: Callable[[], bool] = lambda: True

    def sleep(self, seconds: float) -> None:
        if seconds == 0 and threading.current_thread() is self.reader:
            deadline = time.monotonic() + 1.0
            while not self.turn_taken() and time.monotonic() < deadline:
                time.sleep(0.0002)
        super().sleep(seconds)


class _SendCountingSocket(_SocketShim):
    def _count(self, data: bytes) -> None:
        frames, view = 0, memoryview(data)
        while len(view) >= 4:  # each frame starts with its length
            frames += 1
            view = view[4 + int.from_bytes(view[:4], "big") :]
        self._runtime.sends.append((threading.current_thread(), frames))

    def sendall(self, data: bytes) -> None:
        self._count(data)
        self._sock.sendall(data)

    def send(self, data: bytes) -> int:  # the reader's (Runtime.send_now): all of it here
        self._count(data)
        return self._sock.send(data)

    def recv(self, size: int) -> bytes:
        self._runtime.reads_open.wait(5)
        return self._sock.recv(size)


def _busy_reader(client: RemotingClient, addr: str) -> tuple[threading.Event, threading.Event]:
    """Make the connection's reader busy: a callback of an answer blocks it until
    the second event is set; the first is set once it blocks."""
    busy, release = threading.Event(), threading.Event()

    def hold(_: Any) -> None:
        busy.set()
        release.wait(5)

    # Answered late enough for the callback to be added first: answered at once, it
    # could run in the caller's thread, and the reader would not be busy at all.
    held = client.request_future(addr, command("delay", delay="0.3"), 2.0)
    assert not held.done()
    held.add_done_callback(hold)
    assert busy.wait(5)
    return busy, release


def test_requests_queued_while_the_reader_is_busy_leave_in_one_send_from_it(
    broker: FakeBroker,
) -> None:
    runtime = WriteCountingRuntime()
    client = RemotingClient(runtime, transport_settings())
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)  # connected
        reader = client._core.pool.conns[broker.addr]._reader
        _, release = _busy_reader(client, broker.addr)
        runtime.sends.clear()
        futures = [client.request_future(broker.addr, command(k=str(i)), 2.0) for i in range(10)]
        time.sleep(0.05)
        assert runtime.sends == []  # left to the reader, nothing written meanwhile
        release.set()
        assert [f.result(3).get("k") for f in futures] == [str(i) for i in range(10)]
        assert runtime.sends == [(reader, 10)]
    finally:
        client.close()
        runtime.close()


def test_a_request_to_an_idle_reader_or_of_a_blocked_caller_is_written_by_its_caller(
    broker: FakeBroker,
) -> None:
    runtime = WriteCountingRuntime()
    client = RemotingClient(runtime, transport_settings())
    me = threading.current_thread()
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        time.sleep(0.05)  # the reader waits for input: not busy
        runtime.sends.clear()
        assert client.request_future(broker.addr, command(k="a"), 2.0).result(3).get("k") == "a"
        assert runtime.sends == [(me, 1)]
        # A blocked caller writes its own request even while the reader is busy: it
        # waits for that answer next, and the reader may be busy for a while.
        _, release = _busy_reader(client, broker.addr)
        runtime.sends.clear()
        caller: list[str] = []
        thread = threading.Thread(
            target=lambda: caller.append(client.request(broker.addr, command(k="b"), 2.0).get("k"))
        )
        thread.start()
        deadline = time.monotonic() + 5
        while not runtime.sends:
            assert time.monotonic() < deadline, "the blocked caller's request was not written"
            time.sleep(0.005)
        assert runtime.sends == [(thread, 1)]
        release.set()
        thread.join(5)
        assert caller == ["b"]
    finally:
        client.close()
        runtime.close()


def test_requests_chained_from_callbacks_and_threads_at_once_all_complete(
    broker: FakeBroker,
) -> None:
    """Requests made from other threads and from answers' callbacks (on the reader
    thread) while answers stream in: none is left unwritten, and each completes."""
    env = Env("threads")
    client = env.client()
    done: list[str] = []
    lock = threading.Lock()

    def chain(n: int, left: int) -> None:
        do = "shuffle" if left % 2 else "echo"
        future = client.request_future(broker.addr, command(do, k=f"{n}-{left}"), 5.0)

        def next_one(f: Any) -> None:
            with lock:
                done.append(f.result().get("k"))
            if left:
                chain(n, left - 1)

        future.add_done_callback(next_one)

    def sender(n: int) -> None:
        for i in range(50):
            client.request_future(broker.addr, command(k=f"s{n}-{i}"), 5.0).add_done_callback(
                lambda f: done.append(f.result().get("k"))
            )
        chain(n, 30)

    env.concurrently([functools.partial(sender, n) for n in range(6)])
    deadline = time.monotonic() + 10
    while len(done) < 6 * (50 + 31):
        assert time.monotonic() < deadline, f"{len(done)} of {6 * 81} completed"
        time.sleep(0.01)
    assert sorted(done) == sorted(
        [f"s{n}-{i}" for n in range(6) for i in range(50)]
        + [f"{n}-{left}" for n in range(6) for left in range(31)]
    )
    client.close()
    env.runtime.close()


def test_requests_left_to_a_reader_fail_when_the_connection_closes_meanwhile(
    broker: FakeBroker,
) -> None:
    env = Env("threads")
    client = env.client()
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        _, release = _busy_reader(client, broker.addr)
        closing = client.request_future(broker.addr, command("close"), 2.0)
        left = [client.request_future(broker.addr, command(k=str(i)), 2.0) for i in range(5)]
        release.set()
        for future in [closing, *left]:
            with pytest.raises(ConnectionClosedError):
                future.result(3)
        # The next request reconnects and is answered.
        assert client.request_future(broker.addr, command(k="x"), 2.0).result(3).get("k") == "x"
    finally:
        client.close()
        env.runtime.close()


def test_a_sender_woken_by_completions_has_its_requests_written_by_the_reader(
    broker: FakeBroker,
) -> None:
    """Pipelined sends as an application makes them (a slot freed by each answer's
    callback, the sender waiting for one): having completed answers, the reader
    lets the sender run before it reads again, so the sender's next requests
    leave from the reader, several to a send."""
    runtime = TurnTakingRuntime()
    client = RemotingClient(runtime, transport_settings())
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        channel = client._core.pool.conns[broker.addr]
        reader = runtime.reader = channel._reader
        runtime.sends.clear()
        slots = threading.Semaphore(16)
        futures = []
        # The sender's turn ends once it filled every free slot again.
        runtime.turn_taken = lambda: len(channel._waiters) >= 16 or len(futures) == 400
        for i in range(400):
            slots.acquire()
            future = client.request_future(broker.addr, command(k=str(i)), 5.0)
            future.add_done_callback(lambda _: slots.release())
            futures.append(future)
        assert [f.result(5).get("k") for f in futures] == [str(i) for i in range(400)]
        by_reader = [frames for thread, frames in runtime.sends if thread is reader]
        assert sum(by_reader) >= 300, runtime.sends  # most (without the turn: none)
        assert sum(by_reader) > 1.5 * len(by_reader)  # several to a send
    finally:
        client.close()
        runtime.close()


def test_a_big_request_is_written_by_its_caller_even_while_the_reader_is_busy(
    broker: FakeBroker,
) -> None:
    """The reader reads nothing while it writes: a big frame left to it would hold
    up the answers already come. Its caller writes it (with any small ones left)."""
    runtime = WriteCountingRuntime()
    client = RemotingClient(runtime, transport_settings())
    me = threading.current_thread()
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        _, release = _busy_reader(client, broker.addr)
        runtime.sends.clear()
        small = client.request_future(broker.addr, command(k="small"), 2.0)
        big = client.request_future(broker.addr, command(k="big", body=b"x" * 100_000), 2.0)
        assert runtime.sends == [(me, 2)]  # both, by the caller of the big one
        release.set()
        assert small.result(3).get("k") == "small" and big.result(3).get("k") == "big"
    finally:
        client.close()
        runtime.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reader_ended_by_system_exit_in_a_callback_drops_its_connection(
    broker: FakeBroker,
) -> None:
    """``sys.exit()`` in a callback ends the reader thread: its connection must not
    look alive (requests left to a reader that is gone would never be written)."""
    env = Env("threads")
    client = env.client()
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        channel = client._core.pool.conns[broker.addr]
        # Answered late enough for the callback to be added first (answered at once,
        # the callback could run here, in the test's thread, as a CI run once saw).
        exiting = client.request_future(broker.addr, command("delay", delay="0.3"), 2.0)
        assert not exiting.done()
        exiting.add_done_callback(lambda _: sys.exit())
        assert exiting.result(3) is not None
        channel._reader.join(3)
        assert not channel._reader.is_alive() and not channel.usable
        answers = [client.request_future(broker.addr, command(k=str(i)), 2.0) for i in range(3)]
        assert [f.result(3).get("k") for f in answers] == ["0", "1", "2"]
        assert len(broker.conns) == 2
    finally:
        client.close()
        env.runtime.close()


class HighDescriptorRuntime(GeventRuntime):
    """A gevent runtime whose sockets have descriptors from 1024 on (``select()``
    refuses those)."""

    def __init__(self) -> None:
        super().__init__()
        self.next_fd = 1500

    def create_connection(self, addr: tuple[str, int], timeout: float) -> Any:
        import _socket

        from rocketmq_gevent._runtime import _Socket

        made = super().create_connection(addr, timeout)
        low = made._sock
        self.next_fd += 1
        high = _socket.socket(fileno=os.dup2(low.fileno(), self.next_fd))
        made._read.close()
        made._write.close()
        low.close()
        return _Socket(high, made._fork)


def test_a_gevent_connection_on_a_high_descriptor_parks_and_is_reused(
    broker: FakeBroker, parked_look: Callable[[float], None]
) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:  # descriptors up to 1510 must be allowed
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    parked_look(0.05)  # the parked reader's looks too
    runtime = HighDescriptorRuntime()
    client = RemotingClient(runtime, transport_settings())

    def body() -> None:
        for i in range(5):
            assert client.request(broker.addr, command(k=str(i)), 2.0).get("k") == str(i)
            _gevent_parked(client, broker.addr)
            gevent.sleep(0.12)  # two looks of the parked reader
        assert client._core.pool.conns[broker.addr]._sock._sock.fileno() >= 1024

    try:
        gevent.spawn(body).get(timeout=30)
        assert len(broker.conns) == 1  # one connection throughout, never dropped
    finally:
        gevent.spawn(client.close).get(timeout=10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_reader_hands_a_big_frame_queued_during_its_write_to_a_writer_task(
    broker: FakeBroker,
) -> None:
    """A big frame queued while the reader writes (the sender found the write lock
    taken, so the writer holding it takes the frame) is written by a task spawned
    for it, never by the reader: the reader would read nothing meanwhile."""
    runtime = WriteCountingRuntime()
    client = RemotingClient(runtime, transport_settings())
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        channel = client._core.pool.conns[broker.addr]
        reader = channel._reader
        writing, go_on = threading.Event(), threading.Event()
        sock = channel._sock
        plain_send = sock.send

        def held_send(data: bytes) -> int:  # the reader writes with send (never waiting)
            if threading.current_thread() is reader and not go_on.is_set():
                writing.set()
                go_on.wait(5)
            return plain_send(data)  # type: ignore[no-any-return]

        _, release = _busy_reader(client, broker.addr)
        sock.send = held_send
        runtime.sends.clear()
        small = client.request_future(broker.addr, command(k="small"), 5.0)  # left to it
        release.set()
        assert writing.wait(5)  # the reader writes "small", holding the write lock
        big = client.request_future(broker.addr, command(k="big", body=b"x" * 200_000), 5.0)
        go_on.set()
        assert small.result(5).get("k") == "small" and big.result(5).get("k") == "big"
        sent_by_reader = [frames for thread, frames in runtime.sends if thread is reader]
        assert sent_by_reader == [1]  # "small" only
        assert any(
            thread not in (reader, threading.current_thread()) for thread, _ in runtime.sends
        )
    finally:
        client.close()
        runtime.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_answers_read_with_one_whose_callback_exits_are_still_completed(
    broker: FakeBroker,
) -> None:
    """Two answers in one read, the first one's callback calling ``sys.exit()``:
    the second is out of every table already, and must be completed all the same."""
    runtime = WriteCountingRuntime()
    client = RemotingClient(runtime, transport_settings())
    try:
        client.request_future(broker.addr, command(), 2.0).result(3)
        reader = client._core.pool.conns[broker.addr]._reader
        _, release = _busy_reader(client, broker.addr)
        runtime.reads_open.clear()  # the reader's next read waits: both answers come first
        first = client.request_future(broker.addr, command(k="a"), 5.0)
        second = client.request_future(broker.addr, command(k="b"), 5.0)
        first.add_done_callback(lambda _: sys.exit())
        release.set()
        time.sleep(0.3)
        runtime.reads_open.set()
        assert second.result(3).get("k") == "b"  # not left waiting forever
        assert first.result(3).get("k") == "a"
        reader.join(3)  # it ended with the SystemExit (reported within this test)
        assert not reader.is_alive()
    finally:
        client.close()
        runtime.close()


def test_a_timer_callback_that_exits_leaves_the_other_timers_running() -> None:
    runtime = ThreadRuntime()
    fired: list[str] = []
    try:
        runtime.call_later(0.01, lambda: sys.exit())
        runtime.call_later(0.05, lambda: fired.append("later"))
        deadline = time.monotonic() + 3
        while not fired:
            assert time.monotonic() < deadline, "no timer fired after one exited"
            time.sleep(0.01)
    finally:
        runtime.close()
