"""The blocking driver's runtime on gevent's own primitives.

Only gevent's objects are handed out: ``gevent.socket`` (imported as a module,
never patched in), ``gevent.lock``, ``gevent.event``, ``gevent.queue``,
greenlets and the hub's timers. So the driver cooperates with the hub whether
or not the application called ``gevent.monkey.patch_all()``. TLS needs nothing
from gevent: the driver runs it over memory buffers on top of these sockets
(see :mod:`rocketmq_sync._tls`), with the user's ``ssl.SSLContext`` as given.

Use it from the thread that runs the hub (gevent's usual model): sockets and
timers belong to the hub of the thread that created them.

After ``os.fork()`` a runtime made in the parent starts afresh on its first use
in the child (see :meth:`GeventRuntime._start_afresh` for the hub), and its
sockets do no IO there (see :class:`_Socket`).
"""

from __future__ import annotations

import _socket
import errno
import math
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.local
import gevent.lock
import gevent.monkey
import gevent.queue
import gevent.socket

from rocketmq_sync._runtime import (
    Cancellable,
    EventLike,
    ForkCheck,
    LockLike,
    PollerLike,
    PooledRuntime,
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


class _Socket:
    """A connected socket that waits on the hub and does no IO in a forked child.

    A ``gevent.socket`` waits inside ``recv`` and ``sendall`` and, once woken,
    reads or writes at once. Greenlets live on in a child after ``os.fork()``: a
    reader waiting at the fork would, as soon as the child's hub runs, read data
    meant for the parent (a writer would write into the parent's stream), before
    anything in the child used the runtime. So this socket waits itself and, before
    each read or write, checks that it is in the process it was made in (or began
    connecting in): in a child it raises ``OSError(EBADF)`` instead, and never shuts
    the connection down (it is the parent's). ``close`` closes the child's
    descriptor only.
    """

    __slots__ = ("_fork", "_hub", "_read", "_sock", "_timeout", "_write")

    def __init__(self, sock: _socket.socket, fork: ForkCheck) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fork = fork
        self._timeout: float | None = None
        self._hub = gevent.get_hub()
        loop = self._hub.loop
        self._read: Any = loop.io(sock.fileno(), 1)
        self._write: Any = loop.io(sock.fileno(), 2)

    def _check(self) -> None:
        if self._read is None:
            raise OSError(errno.EBADF, "the socket is closed")
        if self._fork.forked():
            raise OSError(errno.EBADF, "the connection belongs to the parent process")

    def _deadline(self) -> float:
        return math.inf if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, watcher: Any, deadline: float) -> None:
        if deadline == math.inf:
            gevent.socket.wait(watcher)
            return
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError("timed out")
        gevent.socket.wait(watcher, timeout, TimeoutError("timed out"))

    def recv(self, bufsize: int, /) -> bytes:
        deadline = None  # from the first wait on
        while True:
            self._check()
            try:
                return self._sock.recv(bufsize)
            except BlockingIOError:
                if deadline is None:
                    deadline = self._deadline()
            self._wait(self._read, deadline)

    def recv_idle(self, bufsize: int, /) -> bytes:
        """``recv`` without a deadline (the reader task's, see
        ``GeventRuntime.idle_read``): it waits on the read watcher alone, so a
        connection's reader holds one watcher whether it reads or is parked."""
        while True:
            self._check()
            try:
                return self._sock.recv(bufsize)
            except BlockingIOError:
                pass
            gevent.socket.wait(self._read)

    def send_now(self, data: bytes, /) -> int:
        """What the socket takes of ``data`` now, without waiting (0 if none)."""
        self._check()
        try:
            sent: int = self._sock.send(data)
        except BlockingIOError:
            return 0
        return sent

    def sendall(self, data: bytes, /) -> None:
        view = memoryview(data)
        deadline = None  # from the first wait on: the timeout bounds the whole call
        while view:
            self._check()
            try:
                view = view[self._sock.send(view) :]
                continue
            except BlockingIOError:
                if deadline is None:
                    deadline = self._deadline()
            self._wait(self._write, deadline)

    def settimeout(self, value: float | None, /) -> None:
        self._timeout = value

    def readable(self, seconds: float) -> bool:
        """Whether something came to read (or the socket broke or closed) within
        ``seconds``, waiting on the hub meanwhile."""
        try:
            self._check()
            if seconds <= 0:
                # A peek, not select() (which refuses descriptors from 1024 on) nor a
                # wait on the read watcher: the parked reader looks this way while a
                # caller may be waiting on that watcher, and one watcher takes one
                # waiting greenlet.
                try:
                    self._sock.recv(1, _socket.MSG_PEEK)
                except BlockingIOError:
                    return False
                return True  # something to read, or the end of the stream
            # A fresh timeout each time (one exception raised again and again would
            # keep every traceback it went through): it ends the block silently.
            with gevent.Timeout(seconds, False):
                gevent.socket.wait(self._read)
                return True
        except OSError:  # closed meanwhile: the read that follows says how
            return True
        return False

    def setsockopt(self, level: int, optname: int, value: int, /) -> None:
        self._sock.setsockopt(level, optname, value)

    def shutdown(self, how: int, /) -> None:
        self._check()
        self._sock.shutdown(how)

    def close(self) -> None:
        read, write = self._read, self._write
        if read is None:
            return
        self._read = self._write = None
        # As gevent's own sockets do: a greenlet waiting on the socket gets an error,
        # then the descriptor closes (not under a watcher still in the loop).
        self._hub.cancel_waits_close_and_then(
            [read, write], gevent.socket.cancel_wait_ex, self._sock.close
        )


class _Poller:
    """The ``poll`` of a :class:`_Socket` for reading, waiting on the hub."""

    __slots__ = ("_sock",)

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock

    def poll(self, timeout: float, /) -> bool:
        return self._sock.readable(timeout / 1000)


class GeventRuntime(PooledRuntime):
    """Greenlets, gevent locks, events, queues, sockets and hub timers.

    User callables run on at most ``max_user_workers`` greenlets; a callable that
    blocks without yielding to the hub (CPU work, an unpatched blocking call)
    stalls every greenlet, as anywhere under gevent.
    """

    name = "gevent"
    coalesce_writes = True
    callers_read = True
    reader_writes = False  # writes are coalesced by a greenlet spawned for them

    def __init__(self, *, max_user_workers: int = 64) -> None:
        self._max_user_workers = max_user_workers
        self._fork = ForkCheck()
        self._pool = WorkerPool(self, max_user_workers)
        self.core_lock = self.Lock()

    def __repr__(self) -> str:
        return f"<GeventRuntime max_user_workers={self._max_user_workers}>"

    @property
    def threads_may_wait(self) -> bool:
        """Whether code may block on ``threading`` primitives (``concurrent.futures.wait``
        on this runtime's futures): only if gevent monkey-patched ``threading``."""
        return bool(gevent.monkey.is_module_patched("threading"))

    def spawn(self, fn: Callable[..., object], /, *args: Any) -> TaskHandle:
        self._fork.check(self._start_afresh)
        greenlet: TaskHandle = gevent.spawn(fn, *args)
        return greenlet

    def current(self) -> object:
        return gevent.getcurrent()

    def Lock(self) -> LockLike:
        self._fork.check(self._start_afresh)
        lock: LockLike = gevent.lock.Semaphore(1)
        return lock

    def Event(self) -> EventLike:
        self._fork.check(self._start_afresh)
        event: EventLike = gevent.event.Event()
        return event

    def Queue(self) -> QueueLike:
        self._fork.check(self._start_afresh)
        q: QueueLike = gevent.queue.SimpleQueue()
        return q

    def create_connection(self, addr: tuple[str, int], timeout: float) -> SocketLike:
        self._fork.check(self._start_afresh)
        fork = ForkCheck()  # before connecting: a fork meanwhile leaves it to the parent
        conn = gevent.socket.create_connection(addr, timeout)
        return _Socket(_socket.socket(fileno=conn.detach()), fork)

    def sleep(self, seconds: float) -> None:
        self._fork.check(self._start_afresh)
        gevent.sleep(seconds)

    def give_turn(self) -> None:
        hub = gevent.get_hub()
        if gevent.getcurrent() is not hub:  # the hub itself must never switch out
            gevent.sleep(0)

    def monotonic(self) -> float:
        return time.monotonic()

    def poller(self, sock: SocketLike) -> PollerLike:
        assert isinstance(sock, _Socket)  # made by create_connection
        return _Poller(sock)

    def local(self) -> Any:
        return gevent.local.local()

    def idle_read(self, sock: SocketLike) -> Callable[[int], bytes]:
        # Not the socket's recv: its write timeout would arm a timer per wait.
        assert isinstance(sock, _Socket)  # made by create_connection
        return sock.recv_idle

    def send_now(self, sock: SocketLike, data: bytes) -> int:
        assert isinstance(sock, _Socket)
        return sock.send_now(data)

    def call_later(self, delay: float, fn: Callable[[], object]) -> Cancellable:
        self._fork.check(self._start_afresh)
        return _Timer(delay, fn)

    def offload(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> bool:
        # A greenlet waits for the hub's thread pool (gevent's own threads, which
        # outlive a client as the hub does), then answers from the greenlet.
        self.spawn(_offloaded, fn, args, on_done)
        return True

    def close(self) -> None:
        self._fork.check(self._start_afresh)
        # Hub timers belong to their owners (each cancels its own); only the
        # workers waiting for users' callables are this runtime's to end.
        self._pool.close()

    def _start_afresh(self) -> None:
        """Start afresh in a child after ``os.fork()``, on the runtime's first use there.

        The child gets a worker pool of its own: the calls queued in the parent are
        the parent's work.

        And the library calls ``gevent.reinit()``. After a plain ``os.fork()`` the
        child's hub still polls with the parent's epoll descriptor, one kernel object
        shared by both processes: the sockets the child opens would join the parent's
        set, and each process would be woken for the other's events. gevent asks
        whoever forks to call ``gevent.reinit()`` in the child at once; ``gevent.fork()``,
        gevent's patched ``os.fork`` and gunicorn's gevent worker do, a plain
        ``os.fork()`` (``multiprocessing``, a supervisor that knows nothing of gevent)
        does not. It is called here, before the runtime's first IO in the child, not in
        an at-fork hook: a hook would run in every child of the process, gevent used
        there or not, and would need a registry of runtimes. If the child called it
        already, calling it again is harmless: the loop makes a new descriptor and
        registers its watchers there again.
        """
        gevent.reinit()
        self._pool = WorkerPool(self, self._max_user_workers)


def _offloaded(fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> None:
    try:
        value = gevent.get_hub().threadpool.apply(fn, args)
    except BaseException as exc:  # a bug in the work: the flow ends with it
        on_done(None, exc)
    else:
        on_done(value, None)
