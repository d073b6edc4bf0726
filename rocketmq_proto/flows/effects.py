"""Effects: what a multi-step flow asks its driver to do.

A flow (send with retries, a transaction, a route refresh...) is written once,
here in the core, as a generator that yields effects and receives their
results. Each driver has one small interpreter that performs them with its own
IO (asyncio, threads, gevent)::

    result, error = None, None
    while True:
        try:
            effect = flow.throw(error) if error else flow.send(result)
        except StopIteration as stop:
            return stop.value
        try:
            result, error = perform(effect), None
        except RocketMQError as exc:
            result, error = None, exc

Errors of an effect are thrown into the flow (only :class:`RocketMQError`
subclasses; anything else is a bug and propagates). A flow never blocks and
never reads the clock itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import RequestTimeoutError

T = TypeVar("T")

Flow = Generator["Effect", Any, T]


@dataclass(frozen=True, slots=True)
class Call:
    """Send ``command`` to ``addr`` and wait up to ``timeout`` seconds for the answer.

    Result: the response command, whatever its code (the flow decides what an
    error code means). Raises :class:`RequestTimeoutError` or
    :class:`ConnectionClosedError` into the flow.
    """

    addr: str
    command: RemotingCommand
    timeout: float


@dataclass(frozen=True, slots=True)
class Oneway:
    """Send ``command`` to ``addr`` with the oneway flag; no answer comes.

    Result: ``None`` once written. Raises :class:`ConnectionClosedError` if the
    connection cannot be opened.
    """

    addr: str
    command: RemotingCommand


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``. Result: ``None``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Now:
    """Result: the driver's monotonic clock, in seconds."""


@dataclass(frozen=True, slots=True)
class WallTime:
    """Result: the wall clock, in milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class UserCall:
    """Run a user's callable (a local transaction, a check-back, a handler).

    The driver runs it where a slow callable cannot stall IO (an executor,
    another greenlet; in asyncio a coroutine function is awaited). Result: what
    it returned. An exception it raised is thrown into the flow wrapped in
    :class:`UserCallbackError`.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start ``flow`` concurrently (a pull loop, a consume request). Result: ``None``.

    The spawned flow runs on its own until it returns; the driver logs an
    exception it ends with. It stops itself (it watches the state that ends it).
    """

    flow: Flow[Any]
    name: str = "flow"


@dataclass(frozen=True, slots=True)
class ReadFile:
    """Read a whole (small) file. Result: its bytes, or ``None`` if it does not exist."""

    path: str


@dataclass(frozen=True, slots=True)
class WriteFile:
    """Replace a (small) file atomically: write a temporary file, then rename. Result: ``None``.

    Missing directories are created. An OS error is thrown into the flow as
    :class:`LocalStorageError`. Drivers perform both file effects with
    :mod:`rocketmq_proto.flows.localfile`, and never on an event loop's thread.
    """

    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class HttpGet:
    """Exchange one plain HTTP/1.0 request on a new TCP connection to ``host``:``port``.

    Send ``request`` (whole, built by the core), then read until the server
    closes the connection, all within ``timeout`` seconds. Result: the bytes
    read (status line, headers, body), which the core parses. Raises
    :class:`RequestTimeoutError` when time runs out, :class:`ConnectionClosedError`
    when the connection cannot be made or fails, or the answer exceeds
    ``max_size`` bytes. Used for the name server lookup
    (:mod:`rocketmq_proto.flows.namesrv_lookup`); a driver performs it without
    blocking its event loop or its timer thread.
    """

    host: str
    port: int
    request: bytes
    timeout: float
    max_size: int = 64 * 1024


Effect = Call | Oneway | Sleep | Now | WallTime | UserCall | Spawn | ReadFile | WriteFile | HttpGet


def within(flow: Flow[T], deadline: float, what: str) -> Flow[T]:
    """``flow``, made to end by ``deadline`` (on the driver's clock, :class:`Now`).

    Use as ``yield from within(flow, deadline, what)``. The timeout of each
    :class:`Call` and the length of each :class:`Sleep` it yields are cut to the
    time left; one yielded when no time is left is not performed: a
    :class:`RequestTimeoutError` is thrown into ``flow`` in its place (``flow``
    may catch it and try something else, which meets the same fate). Other
    effects pass through unchanged; a flow that yields neither costs nothing more.
    """
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.send(value) if error is None else flow.throw(error)
            except StopIteration as stop:
                result: T = stop.value
                return result
            value, error = None, None
            kind = type(effect)
            if kind is Call or kind is Sleep:
                now: float = yield Now()
                left = deadline - now
                if left <= 0:
                    error = RequestTimeoutError(f"{what}: no time left for the next step")
                    continue
                if kind is Call:
                    assert isinstance(effect, Call)
                    if effect.timeout > left:
                        effect = Call(effect.addr, effect.command, left)
                else:
                    assert isinstance(effect, Sleep)
                    if effect.seconds > left:
                        effect = Sleep(left)
            try:
                value = yield effect
            except GeneratorExit:
                raise
            except BaseException as exc:  # the effect's error: the inner flow decides
                error = exc
    finally:
        flow.close()  # a no-op once it returned or raised; else (we are closed) its cleanup


#: Seconds before a failed upkeep flow is started again (see :func:`supervised`).
UPKEEP_RESTART_DELAY = 1.0


def supervised(
    make: Callable[[], Flow[None]], stopped: Callable[[], bool], what: str, log: logging.Logger
) -> Flow[None]:
    """Run ``make()`` (a client's upkeep) until ``stopped()``, starting it again
    :data:`UPKEEP_RESTART_DELAY` seconds after it failed (logged with its traceback)
    or ended while not stopped. Every driver runs each upkeep flow of its clients
    under this one supervisor, so none ends unseen."""
    while not stopped():
        try:
            yield from make()
        except Exception:
            if stopped():
                return
            log.exception("%s failed; restarting it in %g s", what, UPKEEP_RESTART_DELAY)
        else:
            if stopped():
                return
            log.error("%s ended unasked; restarting it in %g s", what, UPKEEP_RESTART_DELAY)
        yield Sleep(UPKEEP_RESTART_DELAY)
