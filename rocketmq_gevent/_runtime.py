"""The blocking driver's runtime on gevent's own primitives.

Only gevent's objects are handed out: ``gevent.socket`` (imported as a module,
never patched in), ``gevent.lock``, ``gevent.event``, ``gevent.queue``,
greenlets and the hub's timers. So the driver cooperates with the hub whether
or not the application called ``gevent.monkey.patch_all()``. TLS needs nothing
from gevent: the driver runs it over memory buffers on top of these sockets
(see :mod:`rocketmq_sync._tls`), with the user's ``ssl.SSLContext`` as given.

Use it from the thread that runs the hub (gevent's usual model): sockets and
timers belong to the hub of the thread that created them.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.monkey
import gevent.queue
import gevent.socket

from rocketmq_sync._runtime import (
    Cancellable,
    EventLike,
    LockLike,
    QueueLike,
    SocketLike,
    TaskHandle,
    UserDone,
    WorkerPool,
)

__all__ = ["GeventRuntime"]


class _Timer:
    """A hub timer whose callback runs in a greenlet of its own.

    The watcher's callback runs in the hub, which must never block; the
    function may write to a socket, so it gets a greenlet.
    """

    __slots__ = ("_fn", "_watcher")

    def __init__(self, delay: float, fn: Callable[[], object]) -> None:
        self._fn: Callable[[], object] | None = fn
        loop = gevent.get_hub().loop
        # The loop's clock is only as fresh as its last iteration: after the hub
        # did not run for a while (other code blocked the thread), a timer armed
        # against it would fire that much early.
        loop.update_now()
        self._watcher = loop.timer(max(0.0, delay))
        self._watcher.start(self._fire)

    def _fire(self) -> None:
        fn, self._fn = self._fn, None
        self._watcher.close()
        if fn is not None:
            gevent.spawn(fn)

    def cancel(self) -> None:
        self._fn = None
        self._watcher.close()


_gevent_runtimes: weakref.WeakSet[GeventRuntime] = weakref.WeakSet()


class GeventRuntime:
    """Greenlets, gevent locks, events, queues, sockets and hub timers.

    User callables run on at most ``max_user_workers`` greenlets; a callable that
    blocks without yielding to the hub (CPU work, an unpatched blocking call)
    stalls every greenlet, as anywhere under gevent.
    """

    name = "gevent"
    coalesce_writes = True

    def __init__(self, *, max_user_workers: int = 64) -> None:
        self._max_user_workers = max_user_workers
        self._pool = WorkerPool(self, max_user_workers)
        _gevent_runtimes.add(self)

    def __repr__(self) -> str:
        return f"<GeventRuntime max_user_workers={self._max_user_workers}>"

    @property
    def threads_may_wait(self) -> bool:
        """Whether code may block on ``threading`` primitives (``concurrent.futures.wait``
        on this runtime's futures): only if gevent monkey-patched ``threading``."""
        return bool(gevent.monkey.is_module_patched("threading"))

    def spawn(self, fn: Callable[..., object], /, *args: Any) -> TaskHandle:
        greenlet: TaskHandle = gevent.spawn(fn, *args)
        return greenlet

    def current(self) -> object:
        return gevent.getcurrent()

    def Lock(self) -> LockLike:
        lock: LockLike = gevent.lock.Semaphore(1)
        return lock

    def Event(self) -> EventLike:
        event: EventLike = gevent.event.Event()
        return event

    def Queue(self) -> QueueLike:
        q: QueueLike = gevent.queue.SimpleQueue()
        return q

    def create_connection(self, addr: tuple[str, int], timeout: float) -> SocketLike:
        sock: SocketLike = gevent.socket.create_connection(addr, timeout)
        return sock

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], object]) -> Cancellable:
        return _Timer(delay, fn)

    def run_user(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> None:
        self._pool.submit(fn, args, on_done)

    def run_user_here(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        return self._pool.run_here(fn, args)

    def close(self) -> None:
        # Hub timers belong to their owners (each cancels its own); only the
        # workers waiting for users' callables are this runtime's to end.
        self._pool.close()

    def _after_fork_in_child(self) -> None:
        self._pool = WorkerPool(self, self._max_user_workers)


def _after_fork_in_child() -> None:
    runtimes = list(_gevent_runtimes)
    if not runtimes:
        return
    # A plain os.fork() (gunicorn's, multiprocessing's) leaves the child sharing the
    # parent's epoll descriptor until the loop is reinitialised; gevent.os.fork does
    # this itself, and doing it twice is harmless.
    gevent.reinit()
    for runtime in runtimes:
        runtime._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
