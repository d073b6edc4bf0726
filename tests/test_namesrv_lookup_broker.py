"""Name server discovery by lookup URL, in every driver, against the real cluster
(and each driver's HTTP exchange against a local endpoint alone).

A stdlib HTTP server on 127.0.0.1 plays the lookup endpoint (Java's
``jmenv.tbsite.net:8080/rocketmq/nsaddr``): it answers the shared cluster's
name server address, then other lists, then errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rocketmq_proto import (
    ConnectionClosedError,
    Message,
    RequestTimeoutError,
    RocketMQError,
    SendStatus,
)
from rocketmq_proto.flows.effects import HttpGet
from rocketmq_proto.flows.namesrv_lookup import parse_lookup_answer, parse_lookup_url

from .backends import Backend


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class LookupEndpoint:
    """Answers every GET with ``status`` and ``body``; counts the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.paths: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.paths.append(self.path)
                with contextlib.suppress(OSError):  # a client that gave up waiting
                    self.send_response(endpoint.status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(endpoint.body)))
                    self.end_headers()
                    self.wfile.write(endpoint.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/rocketmq/nsaddr"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, status: int, body: str) -> None:
        self.status, self.body = status, body.encode()

    @property
    def requests(self) -> int:
        return len(self.paths)

    def __enter__(self) -> LookupEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@contextmanager
def dead_address() -> Iterator[str]:
    """A 127.0.0.1 port bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.broker
def test_a_producer_finds_and_follows_its_name_servers_by_lookup_url(
    rocketmq_cluster: Any, backend: Backend
) -> None:
    real = rocketmq_cluster.namesrv_addr
    first, second = unique(f"LookupA_{backend.name}"), unique(f"LookupB_{backend.name}")
    with backend.open("Admin", real) as admin:
        for topic in (first, second):
            admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
    with LookupEndpoint() as endpoint, dead_address() as dead:
        endpoint.answer(200, f"{real}\n")
        with backend.open(
            "Producer",
            namesrv_lookup_url=endpoint.url,
            namesrv_lookup_interval=1.0,
            group=unique("lookup"),
        ) as producer:
            # Only the URL is configured: the list is asked for before anything else.
            result = producer.send(Message(first, b"found by lookup"), 30.0)
            assert result.status is SendStatus.SEND_OK
            assert endpoint.paths[0] == "/rocketmq/nsaddr"
            core = producer._core
            assert core.namesrv_addrs == tuple(real.split(";"))

            # A list of one dead name server: it is used (a new topic's route fails).
            endpoint.answer(200, dead)
            backend.wait_for(lambda: core.namesrv_addrs == (dead,), 15.0, "the dead list")
            with pytest.raises(RocketMQError):
                producer.send(Message(second, b"no name server"), 3.0)

            # The dead one first and the real one second: the client gets through.
            endpoint.answer(200, f"{dead};{real}")
            both = (dead, *real.split(";"))
            backend.wait_for(lambda: core.namesrv_addrs == both, 15.0, "the new list")
            result = producer.send(Message(second, b"second list"), 30.0)
            assert result.status is SendStatus.SEND_OK

            # An error status or garbage keeps the list in use.
            for status, body in ((500, real), (200, "<html>moved</html>"), (200, "")):
                endpoint.answer(status, body)
                seen = endpoint.requests
                backend.wait_for(
                    lambda seen=seen: endpoint.requests >= seen + 2, 15.0, f"lookups ({status})"
                )
                assert core.namesrv_addrs == both
            result = producer.send(Message(first, b"list kept"), 30.0)
            assert result.status is SendStatus.SEND_OK


# ------------------------------------------- the drivers' HTTP exchange, no broker


class SlowEndpoint(LookupEndpoint):
    """Answers after ``delay`` seconds (or never, within a test's patience)."""

    def __init__(self, delay: float, body: bytes = b"127.0.0.1:9876") -> None:
        super().__init__()
        self.answer(200, body.decode())
        handler = self.server.RequestHandlerClass
        original = handler.do_GET  # type: ignore[attr-defined]

        def slow(request: Any) -> None:
            time.sleep(delay)
            original(request)

        handler.do_GET = slow  # type: ignore[attr-defined]


def exchange(backend_name: str, effect: HttpGet) -> bytes:
    """Perform ``effect`` with the driver's own code."""
    if backend_name == "asyncio":
        from rocketmq_asyncio._interpreter import _http_get

        return asyncio.run(_http_get(effect))
    from rocketmq_sync._interpreter import http_get

    if backend_name == "gevent":
        from rocketmq_gevent._runtime import GeventRuntime

        runtime: Any = GeventRuntime()
    else:
        from rocketmq_sync._runtime import ThreadRuntime

        runtime = ThreadRuntime()
    try:
        return http_get(runtime, effect)
    finally:
        runtime.close()


def get(url: str, timeout: float = 3.0, max_size: int = 65536) -> HttpGet:
    parsed = parse_lookup_url(url)
    return HttpGet(parsed.host, parsed.port, parsed.request(), timeout, max_size)


@pytest.mark.parametrize("name", ["asyncio", "sync", "gevent"])
def test_each_driver_performs_the_lookup_get_and_maps_its_failures(name: str) -> None:
    with LookupEndpoint() as endpoint:
        endpoint.answer(200, "127.0.0.1:9876;127.0.0.1:9877")
        raw = exchange(name, get(endpoint.url))
        assert parse_lookup_answer(raw) == ("127.0.0.1:9876", "127.0.0.1:9877")
        endpoint.answer(200, "x" * 5000)
        with pytest.raises(ConnectionClosedError, match="exceeds 1000 bytes"):
            exchange(name, get(endpoint.url, max_size=1000))
    with dead_address() as dead, pytest.raises(ConnectionClosedError, match="HTTP request to"):
        exchange(name, get(f"http://{dead}/rocketmq/nsaddr"))
    with SlowEndpoint(3.0) as slow:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="no HTTP answer"):
            exchange(name, get(slow.url, timeout=0.5))
        assert time.monotonic() - started < 2.0


def test_under_gevent_the_lookup_lets_other_greenlets_run() -> None:
    import gevent

    from rocketmq_gevent._runtime import GeventRuntime
    from rocketmq_sync._interpreter import http_get

    ticks: list[float] = []

    def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.05)

    runtime = GeventRuntime()
    with SlowEndpoint(1.0) as slow:
        other = gevent.spawn(ticker)
        try:
            raw = http_get(runtime, get(slow.url))
        finally:
            other.kill()
            runtime.close()
    assert parse_lookup_answer(raw) == ("127.0.0.1:9876",)
    assert len(ticks) >= 10  # the hub kept running while the answer was awaited
