"""What the blocking driver needs from its runtime, and the runtime made of OS threads.

The blocking driver (:mod:`rocketmq_sync._transport`, :mod:`rocketmq_sync._interpreter`)
is written once against :class:`Runtime`: tasks, locks, events, queues, sockets,
sleeping, timers and a pool for user callables. :class:`ThreadRuntime` provides
them with the standard library; ``rocketmq_gevent.GeventRuntime`` with gevent's
own primitives, so that the gevent driver is this same code on greenlets.

Everything here must be safe to use from any thread (or greenlet) of the
runtime; only the runtime's own objects are shared between them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from rocketmq_proto.driver import log_fields

__all__ = [
    "Cancellable",
    "EventLike",
    "ForkCheck",
    "LockLike",
    "PooledRuntime",
    "QueueLike",
    "Runtime",
    "SocketLike",
    "TaskHandle",
    "ThreadRuntime",
    "UserDone",
    "WorkerPool",
]

_log = logging.getLogger(__name__)

#: Called with ``(result, None)`` when a user's callable returned, or
#: ``(None, exception)`` when it raised.
UserDone = Callable[[Any, BaseException | None], object]


class Cancellable(Protocol):
    def cancel(self) -> object: ...


class TaskHandle(Protocol):
    def join(self, timeout: float | None = None) -> object: ...


class LockLike(Protocol):
    """A non-reentrant mutex: ``threading.Lock`` or ``gevent.lock.Semaphore(1)``."""

    def acquire(self, blocking: bool = ...) -> bool: ...

    def release(self) -> object: ...

    def locked(self) -> bool: ...

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> object: ...


class EventLike(Protocol):
    def set(self) -> object: ...

    def clear(self) -> object: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class QueueLike(Protocol):
    """An unbounded FIFO; ``get`` raises :class:`queue.Empty` on timeout."""

    def put(self, item: Any) -> object: ...

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...


class SocketLike(Protocol):
    """The part of a (stdlib or gevent) socket the driver uses."""

    def sendall(self, data: bytes, /) -> object: ...

    def recv(self, bufsize: int, /) -> bytes: ...

    def settimeout(self, value: float | None, /) -> object: ...

    def setsockopt(self, level: int, optname: int, value: int, /) -> object: ...

    def shutdown(self, how: int, /) -> object: ...

    def close(self) -> object: ...


class PollerLike(Protocol):
    def poll(self, timeout: float, /) -> Any: ...


class Runtime(Protocol):
    """Tasks, synchronisation, sockets and time for the blocking driver.

    Implementations: :class:`ThreadRuntime`, ``rocketmq_gevent.GeventRuntime``.
    A gevent runtime must never hand out a ``threading`` primitive (they would
    block the hub when gevent has not monkey-patched them), and a thread
    runtime never a gevent one.
    """

    #: ``"threads"`` or ``"gevent"``: for logs and reprs.
    name: str
    #: Whether the driver should write from a task spawned after the caller yields
    #: (coalescing the requests made meanwhile into one send) rather than from the
    #: caller's own thread. Worth it only where spawning costs microseconds.
    coalesce_writes: bool
    #: Whether a caller blocked on its own request may read the connection itself
    #: while the connection's reader task waits (it does once a blocked caller's
    #: answer came and nothing else is in flight), sparing the hand-off of the
    #: answer from the reader (a thread switch; under gevent, a switch through
    #: the hub and the event's callbacks). It waits in :meth:`poller`.
    callers_read: bool
    #: Whether a request queued by another task while a connection's reader task
    #: is busy with what it read (completing answers, resuming flows) is left to
    #: the reader, which writes every frame queued meanwhile in one send before it
    #: reads again, rather than written by its caller; having completed answers,
    #: the reader first lets the tasks they woke run (``sleep(0)``), so that their
    #: next requests are among those frames. Worth it where tasks are threads: a
    #: caller's write is a system call per request, during which the interpreter's
    #: lock goes to the other thread.
    reader_writes: bool

    def spawn(self, fn: Callable[..., object], /, *args: Any) -> TaskHandle:
        """Run ``fn(*args)`` concurrently (a daemon thread, a greenlet)."""
        ...

    def current(self) -> object:
        """The running task (thread or greenlet), comparable by identity to a handle."""
        ...

    #: Held while a step of one of its client's flows runs (flows resume on reader
    #: threads, users call from theirs), and by the client's methods that touch
    #: core state directly: one per client, as the runtime is.
    core_lock: LockLike

    def Lock(self) -> LockLike: ...

    def Event(self) -> EventLike: ...

    def Queue(self) -> QueueLike: ...

    def create_connection(self, addr: tuple[str, int], timeout: float) -> SocketLike:
        """A connected TCP socket (TLS, if any, is layered on by the driver)."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def give_turn(self) -> None:
        """Let the other tasks run a moment, if they could not otherwise: a task
        that never waits (a flow whose effects all complete at once) would hold
        every greenlet up; threads take turns anyway."""
        ...

    def monotonic(self) -> float: ...

    def poller(self, sock: SocketLike) -> PollerLike:
        """A poller of ``sock`` for reading (only where ``callers_read``): its
        ``poll(milliseconds)`` waits as a task of this runtime waits, at most that
        long, and returns something true once ``sock`` has something to read or
        broke. One task polls it at a time."""
        ...

    def local(self) -> Any:
        """A namespace whose attributes are the current task's own (a thread's, a
        greenlet's)."""
        ...

    def idle_read(self, sock: SocketLike) -> Callable[[int], bytes]:
        """The read a connection's reader task waits in: it may wait for as long as
        the connection is idle (a plain socket's ``recv`` times out with the
        write timeout, which the reader ignores)."""
        ...

    def send_now(self, sock: SocketLike, data: bytes) -> int:
        """Send what ``sock`` takes of ``data`` now, without waiting: how many bytes
        (0 if its buffer is full). Raises ``OSError`` as a send does."""
        ...

    def call_later(self, delay: float, fn: Callable[[], object]) -> Cancellable:
        """Run ``fn()`` once after ``delay`` seconds, on a task of the runtime's own.

        ``fn`` may block briefly (write to a socket) but should not wait long:
        other timers may be waiting behind it.
        """
        ...

    def run_user(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> None:
        """Run a user's callable where it cannot stall IO, then ``on_done`` there.

        Never blocks the caller, however many calls are already running.
        """
        ...

    def offload(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> bool:
        """Run ``fn(*args)``, CPU work that releases the GIL, on an OS thread other
        than the hub's and call ``on_done(result, error)`` in a task of the runtime
        once it returned: True. Or False, having called nothing: the caller runs it
        itself (an OS thread holds up no other task while the GIL is released)."""
        ...

    def run_user_here(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """``(True, fn(*args))`` if the caller is a worker that runs users'
        callables (it may run the next one itself, sparing a hand-off), else
        ``(False, None)`` without calling. Raises what ``fn`` raises."""
        ...

    def close(self) -> None:
        """End the runtime's own tasks: the timers' task and idle user workers.

        Called by the client that made the runtime, once it closed. Timers armed
        later never fire; user callables submitted later still run, on a worker
        that ends as soon as nothing is queued. Idempotent.
        """
        ...


#: A worker of an adaptive pool whose call has run this long counts as stuck
#: (blocked on IO, or slow): another worker may start on the queued calls.
STUCK_AFTER = 0.001
#: How often an adaptive pool looks for stuck workers while calls wait.
WATCH_EVERY = 0.005


class WorkerPool:
    """Up to ``size`` workers of a runtime running queued calls, spawned on demand.

    Written once on :class:`Runtime` primitives, so threads and greenlets share it.
    :meth:`submit` never blocks: a call waits in the queue until a worker is free.

    An ``adaptive`` pool (the thread runtime's) starts workers beyond the first
    only while calls wait and every worker is stuck in a call that has run for
    :data:`STUCK_AFTER` (checked on a timer; the workers double each time), and
    a worker whose call was quick leaves while another is free. Quick callables
    (a handler that acknowledges a message) thus run one after another on one
    thread, sparing the hand-offs between threads that cost far more than the
    calls themselves under the GIL, while callables that block (a database, an
    HTTP call) get up to ``size`` threads, as a fixed pool would give them.
    """

    def __init__(self, runtime: Runtime, size: int, *, adaptive: bool = False) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {size}")
        self._runtime = runtime
        self._size = size
        self._adaptive = adaptive
        self._queue = runtime.Queue()
        self._lock = runtime.Lock()
        self._workers = 0
        #: Workers waiting for a call, and calls submitted but not yet taken.
        self._idle = 0
        self._queued = 0
        #: Each running worker's task (thread or greenlet), and when its current
        #: call started (``None``: between calls).
        self._started: dict[object, float | None] = {}
        self._watching = False
        #: Set by :meth:`close`: workers leave instead of waiting for more calls.
        self._closed = False

    @property
    def workers(self) -> int:
        """Workers alive now (busy or waiting for a call)."""
        return self._workers

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> None:
        self._queue.put((fn, args, on_done))
        with self._lock:
            self._queued += 1
            if self._queued <= self._idle or self._workers >= self._size:
                return  # a waiting worker takes it, or it waits for one
            if self._adaptive and self._workers:
                self._arm_watch()
                return
            self._workers += 1
        self._runtime.spawn(self._work)

    def close(self) -> None:
        """Let every worker end once the queue is empty (a worker busy in a call
        finishes it first). Calls submitted later still run, on a worker that
        ends when nothing is left."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._idle
        for _ in range(idle):
            self._queue.put(_WAKE)  # each waiting worker wakes up and leaves

    def _arm_watch(self) -> None:
        """(Under the lock.) Look for stuck workers soon, unless a watch is armed."""
        if not self._watching:
            self._watching = True
            self._runtime.call_later(WATCH_EVERY, self._watch)

    def run_here(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Call ``fn`` now if the caller is one of this pool's workers (counted as
        that worker's call, so a slow one still lets the pool grow)."""
        me = self._runtime.current()
        started = self._started
        if me not in started:
            return False, None
        outer = started[me]  # a call of this worker that (through a flow) made this one
        started[me] = outer or self._runtime.monotonic()
        try:
            return True, fn(*args)
        finally:
            started[me] = outer

    def _watch(self) -> None:
        """Start more workers if calls wait and every worker is stuck in a call."""
        now = self._runtime.monotonic()
        more = 0
        with self._lock:
            self._watching = False
            if self._queued <= self._idle or self._workers >= self._size:
                return
            if all(
                start is not None and now - start >= STUCK_AFTER for start in self._started.values()
            ):
                waiting = self._queued - self._idle
                more = min(waiting, self._size - self._workers, max(1, self._workers))
                self._workers += more
            self._arm_watch()
        for _ in range(more):
            self._runtime.spawn(self._work)

    def _surplus(self, me: object) -> bool:
        """Under the lock, after a quick call: whether another worker is free."""
        now = self._runtime.monotonic()
        return any(
            worker != me and (start is None or now - start < STUCK_AFTER)
            for worker, start in self._started.items()
        )

    def _work(self) -> None:
        get = self._queue.get
        clock = self._runtime.monotonic
        adaptive = self._adaptive
        started = self._started
        me = self._runtime.current()
        waiting = False
        with self._lock:
            started[me] = None
        try:
            while True:
                with self._lock:
                    if self._closed and self._queued <= 0:
                        self._leave(me, waiting=False)
                        return
                    self._idle += 1
                    waiting = True
                item = get()
                if item is _WAKE:
                    with self._lock:
                        self._idle -= 1
                        waiting = False
                    continue
                fn, args, on_done = item
                begin = clock()
                with self._lock:
                    self._idle -= 1
                    waiting = False
                    self._queued -= 1
                    started[me] = begin
                error: BaseException | None = None
                try:
                    result = fn(*args)
                except BaseException as exc:
                    result, error = None, exc
                started[me] = None
                quick = clock() - begin < STUCK_AFTER
                _call_done(on_done, result, error)
                if error is not None and not isinstance(error, Exception):
                    raise error  # GreenletExit, SystemExit...: let the worker end
                item = fn = args = on_done = result = error = None  # nothing kept alive while idle
                if adaptive and quick and self._workers > 1:
                    with self._lock:
                        if self._surplus(me):
                            self._leave(me, waiting=False)
                            return  # another worker carries on
        except BaseException:
            with self._lock:
                self._leave(me, waiting=waiting)
            raise

    def _leave(self, me: object, *, waiting: bool) -> None:
        """(Under the lock.) Forget a worker that ends; make sure that calls still
        waiting get a worker: a new one if none is left, else a watch."""
        del self._started[me]
        self._workers -= 1
        if waiting:
            self._idle -= 1
        if self._queued <= self._idle:
            return
        if self._workers == 0:
            self._workers += 1
            self._runtime.spawn(self._work)
        elif self._adaptive and self._workers < self._size:
            self._arm_watch()


#: Queued by :meth:`WorkerPool.close` to wake a waiting worker, which then leaves.
_WAKE: Any = object()


def _call_done(on_done: UserDone, result: Any, exc: BaseException | None) -> None:
    try:
        on_done(result, exc)
    except Exception:
        _log.exception(
            "completion callback %r raised", on_done, extra=log_fields(callback=repr(on_done))
        )


# ------------------------------------------------------------------ forks

#: How many ``os.fork()`` calls led to this process: the hook below adds one in
#: each child. An object that recorded another value (:class:`ForkCheck`) was made
#: before a fork and is now in the child. With ``_fork_lock`` (made afresh in each
#: child), this is the drivers' only module-level state that changes: a count about
#: the process, not about clients. The hook holds no object, so no registry of
#: runtimes or connections is needed to reset them; each resets itself when used.
#: (A fork made without ``os.fork()``, by C code, runs no hook: Python's own locks
#: would not be reset there either.)
_forks = 0
#: Taken while an object resets itself in a child. Reentrant: a reset may use
#: another object that resets itself first (a transport its runtime).
_fork_lock = threading.RLock()


def _count_fork() -> None:
    global _forks, _fork_lock
    _forks += 1
    _fork_lock = threading.RLock()  # a thread of the parent may have held the old one


os.register_at_fork(after_in_child=_count_fork)


class ForkCheck:
    """Part of an object that notices, when used, that it is in a child after ``os.fork()``.

    In the child only the thread that forked runs: the parent's other threads, and
    any lock they held, do not exist there, while every socket is shared with the
    parent. An object holding such things calls :meth:`forked` where it is used
    (one comparison) and, if it returns true, :meth:`renew` with what starts it afresh.
    """

    __slots__ = ("_generation", "_renewing")

    def __init__(self) -> None:
        self._generation = _forks
        #: The value of ``_forks`` while a thread renews the object (a thread that
        #: a further fork left behind never finishes: its value is then outdated).
        self._renewing = -1

    def forked(self) -> bool:
        """Whether the process forked since this object was made (or last renewed)."""
        return self._generation != _forks

    def check(self, reset: Callable[[], object]) -> None:
        """:meth:`renew` with ``reset`` if the process forked since (one comparison
        otherwise)."""
        if self._generation != _forks:
            self.renew(reset)

    def renew(self, reset: Callable[[], object]) -> None:
        """Run ``reset()`` once in this process, however many threads find the object
        stale at once (the others wait for it). Returns at once when called again
        from within ``reset`` (the object's own methods may serve it). If ``reset``
        raises, the next use tries again."""
        with _fork_lock:
            generation = _forks
            if self._generation == generation or self._renewing == generation:
                return  # another thread of the child did it, or this one is doing it
            self._renewing = generation
            try:
                reset()
            finally:
                self._renewing = -1
            self._generation = generation


# ------------------------------------------------------------------ thread runtime


class _Timer:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], object]) -> None:
        self.when = when
        self.fn: Callable[[], object] | None = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.fn = None


class _Scheduler:
    """One thread running every timer of a :class:`ThreadRuntime` from a heap.

    A cancelled timer stays in the heap until it reaches the top (cancelling is
    a flag, so it costs nothing); the heap is rebuilt if those pile up.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._cancelled_hint = 0
        self._closed = False

    def close(self) -> None:
        """Drop every timer and let the thread end (timers armed later never fire)."""
        with self._cond:
            self._closed = True
            for _, _, timer in self._heap:
                timer.cancel()
            self._heap.clear()
            self._cond.notify()

    def call_later(self, delay: float, fn: Callable[[], object]) -> _Timer:
        timer = _Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            if self._closed:
                timer.cancel()
                return timer
            heap = self._heap
            if len(heap) > 1024 and self._cancelled_hint > len(heap) // 2:
                heap[:] = [entry for entry in heap if not entry[2].cancelled]
                heapq.heapify(heap)
                self._cancelled_hint = 0
            self._cancelled_hint += 1  # most timers get cancelled: a cheap estimate
            heapq.heappush(heap, (timer.when, next(self._seq), timer))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rocketmq-timers", daemon=True
                )
                self._thread.start()
            elif heap[0][2] is timer:
                self._cond.notify()
        return timer

    def _run(self) -> None:
        cond = self._cond
        heap = self._heap
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    if not heap:
                        cond.wait()
                        continue
                    when, _, timer = heap[0]
                    if timer.cancelled:
                        heapq.heappop(heap)
                        continue
                    delay = when - time.monotonic()
                    if delay > 0:
                        cond.wait(delay)
                        continue
                    heapq.heappop(heap)
                    break
            fn = timer.fn
            timer.fn = None
            if fn is not None and not timer.cancelled:
                try:
                    fn()
                except BaseException:  # SystemExit too: the thread serves every timer
                    _log.exception(
                        "timer callback %r raised", fn, extra=log_fields(callback=repr(fn))
                    )
            del fn, timer


#: Whether a socket's descriptor may be read and written with ``os.read`` and
#: ``os.write`` (POSIX; Windows' sockets are not file descriptors).
_READ_DESCRIPTORS = os.name == "posix"


def _send_without_waiting(sock: Any, data: bytes) -> int:
    """What a stdlib socket (or one like it) takes of ``data`` now: 0 if its buffer
    is full. A socket with a timeout waits for room before it sends, whatever the
    flags, so it is non-blocking for this one send (only the writer holding the
    connection's write lock calls this: no other task uses the socket meanwhile)."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        sent: int = sock.send(data)
    except BlockingIOError:
        return 0
    finally:
        sock.settimeout(timeout)
    return sent


class _DescriptorSocket:
    """A stdlib socket whose reads and writes try its descriptor first.

    A socket with a timeout polls before every ``recv`` and ``send``, and makes
    both a system call that releases the interpreter's lock. Its descriptor is
    non-blocking then (CPython's timeout mode), so ``os.read`` and ``os.write``
    on it do in one call what the socket does in two when data or room is there,
    which is the common case for a busy connection; only when they would block
    does the socket's own call wait, with its timeout (a read that finds nothing
    then costs one call more than the socket's). A socket in blocking mode (no
    timeout) is used as it is. The descriptor's mode is shared with any copy of
    it (``dup``, a forked child): one set to blocking there would make a read
    here wait without the timeout. Nothing in this package makes such a copy.
    """

    __slots__ = ("_direct", "_fd", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._direct = sock.gettimeout() is not None

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, bufsize: int, /) -> bytes:
        if self._direct:
            try:
                return os.read(self._fd, bufsize)
            except BlockingIOError:
                pass
        return self._sock.recv(bufsize)

    def sendall(self, data: bytes, /) -> None:
        if self._direct:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            self._sock.sendall(memoryview(data)[sent:])
            return
        self._sock.sendall(data)

    def send_now(self, data: bytes) -> int:
        """What the socket takes of ``data`` now, without waiting (0 if its buffer
        is full). Only the writer holding the connection's write lock calls it."""
        if self._direct:
            try:
                return os.write(self._fd, data)
            except BlockingIOError:
                return 0
        return _send_without_waiting(self._sock, data)

    def settimeout(self, value: float | None, /) -> None:
        self._sock.settimeout(value)
        self._direct = value is not None

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def setsockopt(self, level: int, optname: int, value: int, /) -> None:
        self._sock.setsockopt(level, optname, value)

    def shutdown(self, how: int, /) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        # The descriptor's number may be given to another file once closed: never
        # read or write it again (the socket's own calls then fail as closed).
        self._direct = False
        self._fd = -1
        self._sock.close()


class PooledRuntime:
    """What a runtime that runs users' callables on a :class:`WorkerPool` has in
    common (the thread runtime's and the gevent runtime's): both hand the calls
    to the pool, after starting afresh if the process forked."""

    _fork: ForkCheck
    _pool: WorkerPool

    def _start_afresh(self) -> None:
        raise NotImplementedError

    def run_user(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> None:
        self._fork.check(self._start_afresh)
        self._pool.submit(fn, args, on_done)

    def run_user_here(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
        self._fork.check(self._start_afresh)
        return self._pool.run_here(fn, args)


class ThreadRuntime(PooledRuntime):
    """The blocking driver's runtime on OS threads and stdlib sockets.

    Timers share one scheduler thread; user callables run on at most
    ``max_user_workers`` threads. Both start on first use, and on the first use in
    a child process after ``os.fork()`` they are replaced (the parent's threads do
    not exist there).
    """

    name = "threads"
    coalesce_writes = False
    callers_read = hasattr(select, "poll")  # the caller waits for its answer in poll()
    reader_writes = True

    def __init__(self, *, max_user_workers: int = 16) -> None:
        self._max_user_workers = max_user_workers
        self._fork = ForkCheck()
        self._scheduler = _Scheduler()
        self._pool = WorkerPool(self, max_user_workers, adaptive=True)
        self.core_lock = self.Lock()

    def __repr__(self) -> str:
        return f"<ThreadRuntime max_user_workers={self._max_user_workers}>"

    def spawn(self, fn: Callable[..., object], /, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        thread.name = f"rocketmq-{getattr(fn, '__name__', 'task').lstrip('_')}-{thread.name}"
        thread.start()
        return thread

    def current(self) -> object:
        return threading.current_thread()

    def Lock(self) -> LockLike:
        return threading.Lock()

    def Event(self) -> EventLike:
        return threading.Event()

    def Queue(self) -> QueueLike:
        return queue.SimpleQueue()

    def create_connection(self, addr: tuple[str, int], timeout: float) -> SocketLike:
        sock = socket.create_connection(addr, timeout)
        return _DescriptorSocket(sock) if _READ_DESCRIPTORS else sock

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def give_turn(self) -> None:
        pass  # the interpreter lets the other threads run (sys.getswitchinterval)

    def monotonic(self) -> float:
        return time.monotonic()

    def poller(self, sock: SocketLike) -> PollerLike:
        poller = select.poll()
        poller.register(sock, select.POLLIN)  # type: ignore[arg-type]  # a plain socket here
        return poller

    def local(self) -> Any:
        return threading.local()

    def idle_read(self, sock: SocketLike) -> Callable[[int], bytes]:
        return sock.recv

    def send_now(self, sock: SocketLike, data: bytes) -> int:
        if isinstance(sock, _DescriptorSocket):
            return sock.send_now(data)
        return _send_without_waiting(sock, data)

    def call_later(self, delay: float, fn: Callable[[], object]) -> Cancellable:
        self._fork.check(self._start_afresh)
        return self._scheduler.call_later(delay, fn)

    def offload(self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: UserDone) -> bool:
        return False  # the calling thread runs it: the others go on meanwhile

    def close(self) -> None:
        self._fork.check(self._start_afresh)
        self._scheduler.close()
        self._pool.close()

    def _start_afresh(self) -> None:
        # In a child after os.fork(): the parent's scheduler and workers are not
        # running here, and their locks may be held by threads that do not exist.
        # Timers and calls queued in the parent are the parent's work, not the child's.
        self._scheduler = _Scheduler()
        self._pool = WorkerPool(self, self._max_user_workers, adaptive=True)
