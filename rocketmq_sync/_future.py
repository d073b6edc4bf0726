"""A small future, written once on a :class:`~rocketmq_sync._runtime.Runtime`'s primitives.

``concurrent.futures.Future`` waits on ``threading.Condition``, which would block
gevent's hub unless gevent had monkey-patched it; this one takes its lock from
the runtime and creates a runtime event only when somebody actually waits, so
that the common case (a callback, or a result read after completion) costs one
lock.

It is a :class:`concurrent.futures.Future` (a subclass that never runs the base
initialiser, so no ``threading.Condition`` is made) and keeps the few private
attributes the standard library reads, so that :func:`concurrent.futures.wait`,
:func:`concurrent.futures.as_completed` and :func:`asyncio.wrap_future` accept
it: ``_state`` holds the base class's state names, ``_condition`` is the
future's lock, and ``_waiters`` (made on first use) is told of completion.
Those functions block the calling thread on ``threading`` primitives, so under
gevent they are allowed only when ``threading`` is monkey-patched; otherwise
``_condition`` raises :class:`TypeError` rather than stall the hub.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Any, TypeVar

from rocketmq_proto.driver import log_fields

from ._runtime import EventLike, LockLike, Runtime

__all__ = ["CancelledError", "Future"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

# The state names of concurrent.futures' own futures (see concurrent/futures/_base.py):
# wait() and as_completed() count a future as done when ``_state`` is FINISHED or
# CANCELLED_AND_NOTIFIED. A cancelled future here notifies at once, so it goes
# straight to the latter; there is no RUNNING.
_PENDING = "PENDING"
_FINISHED = "FINISHED"
_CANCELLED = "CANCELLED_AND_NOTIFIED"


class Future(concurrent.futures.Future[T]):
    """The eventual result of an operation: a value, an exception, or cancelled.

    Thread-safe (and greenlet-safe in the gevent runtime). A
    :class:`concurrent.futures.Future` for ``isinstance``, ``wait``,
    ``as_completed`` and :func:`asyncio.wrap_future`. Unlike the base class,
    :meth:`set_result` and :meth:`set_exception` on a future that is already
    done are ignored and return ``False``: a late answer to a request its caller
    cancelled is not an error. There is no running state (:meth:`running` is
    always ``False``).
    """

    __slots__ = (
        "_callbacks",
        "_event",
        "_exception",
        "_lock",
        "_result",
        "_runtime",
        "_state",
        "_waiter_list",
    )

    def __init__(self, runtime: Runtime) -> None:  # no super().__init__(): no Condition
        self._runtime = runtime
        self._lock = runtime.Lock()
        self._state = _PENDING
        self._result: T | None = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], object]] | None = None
        self._event: EventLike | None = None
        #: concurrent.futures' waiters (of wait() or as_completed()), made by them.
        self._waiter_list: list[Any] | None = None

    @classmethod
    def completed(cls, runtime: Runtime, result: T) -> Future[T]:
        future: Future[T] = cls(runtime)
        future._result = result
        future._state = _FINISHED
        return future

    @classmethod
    def failed(cls, runtime: Runtime, exception: BaseException) -> Future[T]:
        future: Future[T] = cls(runtime)
        future._exception = exception
        future._state = _FINISHED
        return future

    def __repr__(self) -> str:
        if self._state == _PENDING:
            return "<Future pending>"
        if self._state == _CANCELLED:
            return "<Future cancelled>"
        if self._exception is not None:
            return f"<Future raised {type(self._exception).__name__}>"
        return f"<Future returned {type(self._result).__name__}>"

    # ------------------------------------------------------------------ completing

    def set_result(self, result: T) -> bool:  # type: ignore[override]
        """Complete with ``result``; ``False`` (and no effect) if already done."""
        with self._lock:
            if self._state != _PENDING:
                return False
            self._result = result
            self._state = _FINISHED
            callbacks, self._callbacks = self._callbacks, None
            event = self._event
            if self._waiter_list:
                for waiter in self._waiter_list:
                    waiter.add_result(self)
        if event is not None:
            event.set()
        if callbacks:
            self._run_callbacks(callbacks)
        return True

    def set_exception(self, exception: BaseException) -> bool:  # type: ignore[override]
        """Complete with ``exception``; ``False`` (and no effect) if already done."""
        with self._lock:
            if self._state != _PENDING:
                return False
            self._exception = exception
            self._state = _FINISHED
            callbacks, self._callbacks = self._callbacks, None
            event = self._event
            if self._waiter_list:
                for waiter in self._waiter_list:
                    waiter.add_exception(self)
        if event is not None:
            event.set()
        if callbacks:
            self._run_callbacks(callbacks)
        return True

    def cancel(self) -> bool:
        """Cancel if not done yet: waiters get :class:`CancelledError`."""
        with self._lock:
            if self._state != _PENDING:
                return self._state == _CANCELLED
            self._state = _CANCELLED
            callbacks, self._callbacks = self._callbacks, None
            event = self._event
            if self._waiter_list:
                for waiter in self._waiter_list:
                    waiter.add_cancelled(self)
        if event is not None:
            event.set()
        if callbacks:
            self._run_callbacks(callbacks)
        return True

    def _run_callbacks(self, callbacks: list[Callable[[Future[T]], object]]) -> None:
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                _log.exception(
                    "future callback %r raised", callback, extra=log_fields(callback=repr(callback))
                )

    # -------------------------------------------------------------------- reading

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def running(self) -> bool:
        return False

    def set_running_or_notify_cancel(self) -> bool:
        """For executors: ``False`` if cancelled, else ``True`` (there is no running state)."""
        return self._state != _CANCELLED

    # What concurrent.futures.wait() and as_completed() use besides ``_state``. Type
    # checkers see the base class's declarations of these two (so that typeshed's
    # protocol for as_completed() is met); at runtime they are these properties.
    if not TYPE_CHECKING:

        @property
        def _condition(self) -> LockLike:
            """The lock under which wait() and as_completed() read ``_state`` and ``_waiters``."""
            if not getattr(self._runtime, "threads_may_wait", True):
                raise TypeError(
                    "concurrent.futures.wait() and as_completed() block the thread, which "
                    "would stall gevent's hub (threading is not monkey-patched): use "
                    "result(timeout) or add_done_callback() on these futures"
                )
            return self._lock

        @property
        def _waiters(self) -> list[Any]:
            waiters = self._waiter_list
            if waiters is None:
                waiters = self._waiter_list = []
            return waiters

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(self)`` once done: at once (in this thread) if it already is.

        Otherwise ``fn`` runs in whichever thread or greenlet completes the
        future (for a request: its connection's reader), so it must be quick.
        """
        if self._state == _PENDING:
            with self._lock:
                if self._state == _PENDING:
                    if self._callbacks is None:
                        self._callbacks = [fn]
                    else:
                        self._callbacks.append(fn)
                    return
        try:
            fn(self)
        except Exception:
            _log.exception("future callback %r raised", fn, extra=log_fields(callback=repr(fn)))

    def _wait(self, timeout: float | None) -> None:
        if self._state != _PENDING:
            return
        with self._lock:
            if self._state != _PENDING:
                return
            event = self._event
            if event is None:
                event = self._event = self._runtime.Event()
        if not event.wait(timeout) and self._state == _PENDING:
            raise TimeoutError(f"future not done after {timeout:g}s")

    def result(self, timeout: float | None = None) -> T:
        """The value, waiting up to ``timeout`` seconds (``None``: as long as it takes).

        Raises what the operation raised, :class:`CancelledError` if cancelled,
        or the builtin :class:`TimeoutError` if still not done after ``timeout``.
        """
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise CancelledError()
        if self._exception is not None:
            raise self._exception
        return self._result  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception it completed with (``None`` for a value), waiting like :meth:`result`."""
        self._wait(timeout)
        if self._state == _CANCELLED:
            raise CancelledError()
        return self._exception
