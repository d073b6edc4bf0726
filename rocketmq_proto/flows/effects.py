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

A flow asks through the typed helpers below, one per effect, rather than with a
bare ``yield``: ``response = yield from call(addr, command, timeout)`` is a
:class:`RemotingCommand` to the type checker, where ``yield Call(...)`` gives an
``object``, nothing more (:data:`Flow`). Each helper yields its effect once
and returns the driver's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar, TypeVarTuple, overload

from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import RequestTimeoutError
from rocketmq_proto.wire.logfields import log_fields

__all__ = [
    "UPKEEP_RESTART_DELAY",
    "Ask",
    "Call",
    "Effect",
    "Flow",
    "HttpGet",
    "Now",
    "Offload",
    "Oneway",
    "ReadFile",
    "Sleep",
    "Spawn",
    "UserCall",
    "WallTime",
    "WriteFile",
    "call",
    "http_get",
    "now",
    "offload",
    "oneway",
    "read_file",
    "sleep",
    "spawn",
    "supervised",
    "timed_user_call",
    "user_call",
    "wall_ms",
    "within",
    "write_file",
]

T = TypeVar("T")
R = TypeVar("R")
Ts = TypeVarTuple("Ts")

#: A flow returning ``T``: it yields effects and is sent their results. To the type
#: checker a bare ``yield`` gives an ``object``, nothing more: a flow asks through
#: the typed helpers (:func:`call`, :func:`now`...) instead.
Flow: TypeAlias = Generator["Effect", object, T]

#: What a typed helper returns: one effect yielded, its answer (``Any`` as sent by
#: the driver) returned as ``T``.
Ask: TypeAlias = Generator["Effect", Any, T]


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
    it returned, or with ``timed`` the pair ``(returned, seconds)``: how long the
    call took, from when the driver began it (a wait for a worker thread
    included). An exception it raised is thrown into the flow wrapped in
    :class:`UserCallbackError`.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    timed: bool = False


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start ``flow`` concurrently (a pull loop, a consume request). Result: ``None``.

    The spawned flow runs on its own until it returns; the driver logs an
    exception it ends with. It stops itself (it watches the state that ends it);
    the driver also cancels it, and ends it at once if it sleeps, when the
    client whose flows spawned it closes. It may have run up to its first wait,
    or to its end, before the spawner resumes (the blocking drivers start it so),
    or not at all yet (asyncio): a flow must not rely on either, e.g. spawn again
    for as long as a count the spawned flow gives back stays short (it would
    never wait).
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


@dataclass(frozen=True, slots=True)
class Offload:
    """Run ``fn(*args)``, CPU work that releases the GIL (compressing a large body),
    off the thread that runs the client's IO: the event loop, or gevent's hub, goes
    on meanwhile. Result: what ``fn`` returned; an exception it raises is a bug and
    propagates. The blocking driver's threads may run it where they are (they hold
    no event loop up), outside the client's core lock.

    ``short``: work of a fraction of a millisecond, which a hand-off to a thread and
    back costs as much as (a trace message's body): the task running the flow runs
    it (the event loop's thread; under gevent, the flow's greenlet), as the blocking
    driver's threads run every Offload, outside the core lock.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = field(default=(), repr=False)  # a body: megabytes, maybe
    short: bool = False


#: Every effect; each driver's interpreter has a case for each.
Effect: TypeAlias = (
    Call
    | Oneway
    | Sleep
    | Now
    | WallTime
    | UserCall
    | Spawn
    | ReadFile
    | WriteFile
    | HttpGet
    | Offload
)


# ------------------------------------------------------------------ typed helpers
# Use as ``x = yield from helper(...)``: the effect's answer, typed.


def call(addr: str, command: RemotingCommand, timeout: float) -> Ask[RemotingCommand]:
    """:class:`Call`: the response command, whatever its code."""
    response: RemotingCommand = yield Call(addr, command, timeout)
    return response


def oneway(addr: str, command: RemotingCommand) -> Ask[None]:
    """:class:`Oneway`: returns once the command is written."""
    yield Oneway(addr, command)


def sleep(seconds: float) -> Ask[None]:
    """:class:`Sleep`: returns after ``seconds``."""
    yield Sleep(seconds)


def now() -> Ask[float]:
    """:class:`Now`: the driver's monotonic clock, in seconds."""
    seconds: float = yield Now()
    return seconds


def wall_ms() -> Ask[int]:
    """:class:`WallTime`: the wall clock, in milliseconds since the epoch."""
    ms: int = yield WallTime()
    return ms


@overload
def user_call(fn: Callable[[*Ts], Awaitable[R]], *args: *Ts) -> Ask[R]: ...


@overload
def user_call(fn: Callable[[*Ts], R], *args: *Ts) -> Ask[R]: ...


def user_call(fn: Callable[[*Ts], Any], *args: *Ts) -> Ask[Any]:
    """:class:`UserCall` of ``fn(*args)``: what it returned (a coroutine function's
    result is awaited by the asyncio driver). Its exception is thrown in as
    :class:`UserCallbackError`."""
    return (yield UserCall(fn, args))


def timed_user_call(fn: Callable[..., Any], *args: Any) -> Ask[tuple[Any, float]]:
    """A timed :class:`UserCall` of ``fn(*args)``: what it returned, and the
    seconds the call took (measured by the driver)."""
    answer: tuple[Any, float] = yield UserCall(fn, args, timed=True)
    return answer


def spawn(flow: Flow[Any], name: str = "flow") -> Ask[None]:
    """:class:`Spawn`: returns once ``flow`` is started."""
    yield Spawn(flow, name)


def read_file(path: str) -> Ask[bytes | None]:
    """:class:`ReadFile`: the file's bytes, or ``None`` if it does not exist."""
    data: bytes | None = yield ReadFile(path)
    return data


def write_file(path: str, data: bytes) -> Ask[None]:
    """:class:`WriteFile`: returns once the file is replaced."""
    yield WriteFile(path, data)


def http_get(
    host: str, port: int, request: bytes, timeout: float, max_size: int = 64 * 1024
) -> Ask[bytes]:
    """:class:`HttpGet`: the bytes the server answered (status line, headers, body)."""
    answer: bytes = yield HttpGet(host, port, request, timeout, max_size)
    return answer


def offload(fn: Callable[[*Ts], R], *args: *Ts, short: bool = False) -> Ask[R]:
    """:class:`Offload`: what ``fn(*args)`` returned, run off the IO thread (with
    ``short``, by the task running the flow, outside the core lock)."""
    result: R = yield Offload(fn, args, short)
    return result


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
            if type(effect) is Call or type(effect) is Sleep:
                left = deadline - (yield from now())
                if left <= 0:
                    error = RequestTimeoutError(f"{what}: no time left for the next step")
                    continue
                match effect:
                    case Call(addr, command, timeout) if timeout > left:
                        effect = Call(addr, command, left)
                    case Sleep(seconds) if seconds > left:
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
            log.exception(
                "%s failed; restarting it in %g s",
                what,
                UPKEEP_RESTART_DELAY,
                extra=log_fields(task=what),
            )
        else:
            if stopped():
                return
            log.error(
                "%s ended unasked; restarting it in %g s",
                what,
                UPKEEP_RESTART_DELAY,
                extra=log_fields(task=what),
            )
        yield from sleep(UPKEEP_RESTART_DELAY)
