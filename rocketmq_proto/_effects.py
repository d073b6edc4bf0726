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

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from ._command import RemotingCommand

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
    :class:`LocalStorageError`.
    """

    path: str
    data: bytes


Effect = Call | Oneway | Sleep | Now | WallTime | UserCall | Spawn | ReadFile | WriteFile
