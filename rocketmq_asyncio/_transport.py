"""The asyncio transport: one multiplexed remoting connection per address.

Every request to an address shares one TCP (or TLS) connection, pipelined by
opaque: the core's :class:`~rocketmq_proto.connection.connection.Connection` allocates the
opaques, matches answers and expires deadlines; this module only moves bytes,
keeps one future per request and one timer per connection.

Three things keep the hot path cheap:

- **One timer per connection.** Requests mostly share a timeout, so deadlines
  arrive in order; the timer is armed at the earliest one and re-armed from
  :meth:`Connection.next_deadline` when it fires. It is moved only when a request
  with an earlier deadline appears. (``call_at`` per request would put one
  handle per request in the loop's heap, and cancel each on its answer.)
- **Coalesced writes.** A send queues its frame in the connection and schedules
  one flush with ``call_soon``; every request made in the same loop iteration
  leaves in one ``transport.write``, and so usually in one ``send`` syscall.
- **Flow control.** While the transport is above its high-water mark
  (``pause_writing``), new requests wait for ``resume_writing`` instead of
  growing its buffer without bound.

No protocol decision is made here: the errors and the answers to a request
from the server that no handler takes are the core's
(:class:`~rocketmq_proto.connection.endpoint.Endpoint`), as in every driver.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
import warnings
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, cast

from rocketmq_proto import driver
from rocketmq_proto.driver import (
    ConfigError,
    Connection,
    ConnectionClosedError,
    ConnectionState,
    Endpoint,
    InvalidArgumentError,
    RemotingCommand,
    Reply,
    TransportSettings,
    log_fields,
    request_timeout_error,
    transport_settings,
)

__all__ = ["RemotingClient", "RequestHandler"]

#: Handles a request the server sent us (a transaction check-back, "consumer ids
#: changed", running info...). Returns the :class:`Reply`, or ``None`` to send none.
RequestHandler = Callable[[str, RemotingCommand], Awaitable[Reply | None] | Reply | None]

_OPEN = ConnectionState.OPEN


class _RemotingProtocol(asyncio.Protocol):
    """One connection: feeds the core, resolves futures, owns the timer and the flush.

    It holds no reference to the :class:`RemotingClient` (only to the client's
    pool, which it tells when it closes), so that an unclosed client can be
    garbage-collected and warn while its sockets are still registered with the loop.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        conn: Connection,
        loop: asyncio.AbstractEventLoop,
        pool: driver.PoolPolicy[_RemotingProtocol],
        handler: RequestHandler | None,
        handler_tasks: set[asyncio.Task[None]],
        log: logging.Logger,
    ) -> None:
        self.endpoint = endpoint
        self.addr = endpoint.addr
        self.conn = conn
        self._loop = loop
        self._pool = pool
        self._handler = handler
        self._handler_tasks = handler_tasks
        self._log = log
        self._transport: asyncio.Transport | None = None
        # opaque -> (future, timeout): the timeout only for the error message.
        self._waiters: dict[int, tuple[asyncio.Future[RemotingCommand], float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._flush_scheduled = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closing_on_purpose = False
        self.paused = False
        self.closed = False
        self.lost: asyncio.Future[None] = loop.create_future()

    # --------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._process_events()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._process_events()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn.state is _OPEN:
            error = None
            if exc is not None:
                error = ConnectionClosedError(f"connection to {self.addr} lost: {exc}")
                error.__cause__ = exc
            self.conn.connection_lost(error)
            self._process_events()
        self._finish()
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drain_waiters()

    # ------------------------------------------------------------------ sending

    def send_request(
        self, command: RemotingCommand, timeout: float, stated_timeout: float
    ) -> tuple[asyncio.Future[RemotingCommand], int]:
        """Send; ``stated_timeout`` is the caller's, for the error (connecting used some)."""
        loop = self._loop
        now = loop.time()
        opaque = self.conn.send_request(command, now, timeout)
        future: asyncio.Future[RemotingCommand] = loop.create_future()
        self._waiters[opaque] = (future, stated_timeout)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        deadline = now + timeout
        if self._timer is None or deadline < self._timer_when:
            self._arm_timer(deadline)
        return future, opaque

    def send_oneway(self, command: RemotingCommand) -> None:
        self.conn.send_request(command, self._loop.time(), oneway=True)
        self._schedule_flush()

    def cancel(self, opaque: int) -> None:
        """The caller stopped waiting: forget the request; its answer will be dropped."""
        self._waiters.pop(opaque, None)
        self.conn.cancel(opaque)

    async def wait_writable(self) -> None:
        """Wait while the transport's buffer is above its high-water mark."""
        while self.paused and not self.closed:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self.closed:
            raise ConnectionClosedError(f"connection to {self.addr} closed while waiting to write")

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.conn.data_to_send()
        if data and self._transport is not None and not self.closed:
            self._transport.write(data)

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------- timers

    def _arm_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # The loop runs a handle up to its clock resolution early: treat it as due,
        # or the request whose deadline armed it would not expire and the timer spin.
        self.conn.handle_timer(max(self._loop.time(), self._timer_when))
        self._process_events()
        if not self.closed:
            deadline = self.conn.next_deadline()
            if deadline is not None:
                self._arm_timer(deadline)

    # ------------------------------------------------------------------- events

    def _process_events(self) -> None:
        conn = self.conn
        waiters = self._waiters
        while True:
            try:
                event = conn.next_event()
            except driver.RemoteProtocolError as exc:
                # The stream lost its framing: nothing more can be read from it. The
                # connection reports the requests in flight as failed next.
                self._log.error(
                    "protocol error from %s, dropping the connection: %s",
                    self.addr,
                    exc,
                    extra=log_fields(addr=self.addr),
                )
                if self._transport is not None:
                    self._transport.abort()
                continue
            if event is None:
                return
            if isinstance(event, driver.Response):
                entry = waiters.pop(event.opaque, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(event.command)
            elif isinstance(event, driver.ServerRequest):
                self._dispatch(event.command)
            elif isinstance(event, driver.ConnectionClosed):
                if event.error is not None and not self._closing_on_purpose:
                    self.endpoint.log_closed(event.error)
                self._finish()
            else:  # a request timed out, or failed with the connection
                failed = self.endpoint.request_failure(event, waiters)
                if failed is not None and not failed[0].done():
                    failed[0].set_exception(failed[1])

    def _finish(self) -> None:
        """The connection is over: forget it, so that the next request reconnects."""
        if self.closed:
            return
        self.closed = True
        self._pool.on_closed(self.addr, self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_drain_waiters()
        if self._waiters:  # the core failed every request in flight; this is a safety net
            error = ConnectionClosedError(f"connection to {self.addr} closed")
            for future, _ in self._waiters.values():
                if not future.done():
                    future.set_exception(error)
            self._waiters.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def close(self, reason: str) -> None:
        """Close on purpose: send what is queued, fail what is in flight now."""
        if self.closed:
            return
        self._closing_on_purpose = True
        self._flush()
        self.conn.connection_lost(ConnectionClosedError(reason))
        self._process_events()

    def abort(self) -> None:
        """Close without flushing (the client was garbage-collected unclosed)."""
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------- requests from the server

    def _dispatch(self, command: RemotingCommand) -> None:
        handler = self._handler
        if handler is None:
            self._reply(command, self.endpoint.unhandled(command))
            return
        # A task of its own: a slow handler must not hold up the responses behind it.
        task = self._loop.create_task(self._handle(handler, command))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _handle(self, handler: RequestHandler, command: RemotingCommand) -> None:
        outcome: object = None
        error: Exception | None = None
        try:
            result = handler(self.addr, command)
            outcome = await result if inspect.isawaitable(result) else result
        except Exception as exc:
            error = exc
        self._reply(command, self.endpoint.answer(command, outcome, error))

    def _reply(self, command: RemotingCommand, reply: Reply | None) -> None:
        if self.endpoint.queue_reply(self.conn, command, reply):
            self._schedule_flush()


class RemotingClient:
    """Requests to name servers and brokers, over one multiplexed connection per address.

    ``addr`` is ``"host:port"`` (``"[v6]:port"`` for IPv6). Connections open on
    first use; concurrent requests to an address share one connect attempt. A
    failed connect makes the address back off (``backoff`` decides for how long);
    requests to it meanwhile fail at once. A connection that closes or breaks is
    dropped, failing its requests in flight, and the next request reconnects.

    ``settings`` (header type, TLS, signing, limits) default to
    :func:`~rocketmq_proto.driver.transport_settings`'s. ``request_handler``
    answers requests the server sends (see :data:`RequestHandler`); each runs in
    its own task.
    """

    def __init__(
        self,
        settings: TransportSettings | None = None,
        *,
        request_handler: RequestHandler | None = None,
        backoff: driver.ReconnectBackoff | None = None,
    ) -> None:
        self._closed = True  # until constructed: __del__ must not warn about a failed init
        self._used = False
        self._settings = settings = settings or transport_settings()
        ssl_context = settings.ssl_context  # the core does not import ssl: checked here
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
        self._connect_timeout = settings.connect_timeout
        self._hooks = settings.hooks
        self._request_handler = request_handler
        self._log = settings.logger or logging.getLogger(__name__)
        self._pool: driver.PoolPolicy[_RemotingProtocol] = driver.PoolPolicy(backoff)
        # The open connections (the pool's view): the fast path of every request.
        self._protocols: Mapping[str, _RemotingProtocol] = self._pool.open
        self._connecting: dict[str, asyncio.Task[_RemotingProtocol]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"connected to {sorted(self._protocols)}"
        return f"<RemotingClient {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def connected(self, addr: str) -> bool:
        """Whether a connection to ``addr`` is open now."""
        return addr in self._protocols

    # ----------------------------------------------------------------- requests

    async def request(self, addr: str, command: RemotingCommand, timeout: float) -> RemotingCommand:
        """Send ``command`` and return the response, whatever its code.

        ``timeout`` (seconds) covers connecting too. Raises
        :class:`RequestTimeoutError` or :class:`ConnectionClosedError`. The
        settings' request hooks are called before and after.
        """
        hooks = self._hooks
        if not hooks.requests:
            return await self._request(addr, command, timeout)
        ctx = driver.request_started(hooks, addr, command)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            response = await self._request(addr, command, timeout)
        except BaseException as exc:
            driver.request_ended(hooks, ctx, loop.time() - began, error=exc)
            raise
        driver.request_ended(hooks, ctx, loop.time() - began, response)
        return response

    async def _request(
        self, addr: str, command: RemotingCommand, timeout: float
    ) -> RemotingCommand:
        proto = self._protocols.get(addr)
        remaining = timeout
        if proto is None or proto.paused:
            proto, remaining = await self._ready_for_request(addr, command, timeout)
        future, opaque = proto.send_request(command, remaining, timeout)
        try:
            return await future
        except asyncio.CancelledError:
            proto.cancel(opaque)
            raise

    async def oneway(self, addr: str, command: RemotingCommand) -> None:
        """Send ``command`` with the oneway flag; returns once it is queued for writing
        (between the settings' request hooks)."""
        hooks = self._hooks
        if not hooks.requests:
            return await self._oneway(addr, command)
        ctx = driver.request_started(hooks, addr, command)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await self._oneway(addr, command)
        except BaseException as exc:
            driver.request_ended(hooks, ctx, loop.time() - began, error=exc)
            raise
        driver.request_ended(hooks, ctx, loop.time() - began)

    async def _oneway(self, addr: str, command: RemotingCommand) -> None:
        proto = self._protocols.get(addr)
        while proto is None or proto.paused:
            if proto is None:
                proto = await self._connect(addr)
            if proto.paused:
                await proto.wait_writable()
            proto = self._protocols.get(addr)
        proto.send_oneway(command)

    async def _ready_for_request(
        self, addr: str, command: RemotingCommand, timeout: float
    ) -> tuple[_RemotingProtocol, float]:
        """The slow path: connect, or wait for room to write, within the request's timeout."""
        if not timeout > 0:
            raise InvalidArgumentError(f"a request needs a positive timeout, got {timeout!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        doing = "connecting"
        try:
            async with asyncio.timeout_at(deadline):
                proto = self._protocols.get(addr)
                while proto is None or proto.paused:
                    if proto is None:
                        doing = "connecting"
                        proto = await self._connect(addr)
                    if proto.paused:
                        doing = "waiting to write"
                        await proto.wait_writable()
                    proto = self._protocols.get(addr)
        except TimeoutError:
            raise request_timeout_error(command.code, addr, timeout, doing) from None
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise request_timeout_error(command.code, addr, timeout, doing)
        return proto, remaining

    # ---------------------------------------------------------------- connecting

    async def _connect(self, addr: str) -> _RemotingProtocol:
        if self._closed:
            raise ConnectionClosedError(f"cannot connect to {addr}: the client is closed")
        loop = asyncio.get_running_loop()
        decision = self._pool.on_need(addr, loop.time())
        if isinstance(decision, driver.Use):
            return decision.conn
        if isinstance(decision, driver.Fail):
            raise decision.error
        if isinstance(decision, driver.Wait):
            task = self._connecting[addr]
        else:
            endpoint = Endpoint(addr, self._log)
            settings = self._settings
            proto = _RemotingProtocol(
                endpoint,
                Connection(
                    serialize_type=settings.serialize_type,
                    max_frame_size=settings.max_frame_size,
                    signer=settings.signer,
                    logger=self._log,
                ),
                loop,
                self._pool,
                self._request_handler,
                self._handler_tasks,
                self._log,
            )
            self._pool.on_dial(addr, proto)
            self._used = True
            task = loop.create_task(self._open(proto))
            self._connecting[addr] = task
            task.add_done_callback(functools.partial(self._connect_done, addr))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # The attempt itself was cancelled (by close()), not this caller.
                raise ConnectionClosedError(
                    f"cannot connect to {addr}: the client was closed"
                ) from None
            raise

    def _connect_done(self, addr: str, task: asyncio.Task[_RemotingProtocol]) -> None:
        if self._connecting.get(addr) is task:
            del self._connecting[addr]
        if not task.cancelled():
            task.exception()  # retrieved even if every waiter gave up

    async def _open(self, proto: _RemotingProtocol) -> _RemotingProtocol:
        endpoint = proto.endpoint
        addr = endpoint.addr
        host = endpoint.host
        pool = self._pool
        loop = asyncio.get_running_loop()
        ssl_context = self._settings.ssl_context
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: proto,
                    host,
                    endpoint.port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None,
                )
        except OSError as exc:  # a TimeoutError too: the connect timeout ran out
            error = endpoint.connect_error(exc, self._connect_timeout)
            delay = pool.on_connect_failed(addr, proto, str(error), loop.time())
            if delay is not None:
                self._log.warning("%s; retry in %.3fs", error, delay, extra=log_fields(addr=addr))
            raise error from exc
        except BaseException:
            pool.on_closed(addr, proto)  # cancelled (the client closed): no back-off
            raise
        open_now = pool.on_connected(addr, proto)
        if self._closed:
            proto.close("the client was closed while connecting")
            raise ConnectionClosedError(f"cannot connect to {addr}: the client was closed")
        if not open_now:  # the peer hung up at once: the protocol reported it closed
            raise ConnectionClosedError(f"connection to {addr} closed as soon as it opened")
        self._log.debug("connected to %s", addr, extra=log_fields(addr=addr))
        return proto

    # ------------------------------------------------------------------ closing

    def close_addr(self, addr: str) -> None:
        """Close the connection to ``addr`` (if any), failing its requests in flight."""
        proto = self._protocols.get(addr)
        if proto is not None:
            proto.close(f"connection to {addr} closed by the client")

    async def close(self) -> None:
        """Close every connection; requests in flight fail with :class:`ConnectionClosedError`."""
        if self._closed:
            return
        self._closed = True
        connecting = list(self._connecting.values())
        for task in connecting:
            task.cancel()
        protos = list(self._protocols.values())
        for proto in protos:
            proto.close("the client was closed")
        self._pool.forget_all()  # the connections being dialled: their tasks are cancelled
        handlers = list(self._handler_tasks)
        for handler_task in handlers:
            handler_task.cancel()
        pending: list[asyncio.Future[Any]] = [*connecting, *handlers]
        pending.extend(proto.lost for proto in protos)
        if pending:
            # A TLS close waits for the peer's close_notify: bound it.
            _, not_done = await asyncio.wait(pending, timeout=self._connect_timeout)
            if not_done:
                for proto in protos:
                    if not proto.lost.done():
                        proto.abort()

    async def __aenter__(self) -> RemotingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Only a warning: the garbage collector runs at any point of any thread
        # (the loop may be closed or busy), so nothing is closed or failed from here.
        if self._closed or not self._used:
            return
        _warn(f"unclosed {self!r}", ResourceWarning, source=self)
