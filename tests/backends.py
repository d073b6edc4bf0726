"""One blocking face for the three drivers, so a single test suite covers them all.

For asyncio, every call runs on an event loop in a background thread and the
test thread waits for it; for sync and gevent the client objects are used as
they are (gevent's hub runs in the test thread, without monkey-patching).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BACKENDS = ("asyncio", "sync", "gevent")
CALL_TIMEOUT = 120.0


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="aio")
        self.thread.start()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def runner() -> Any:
            result = fn(*args, **kwargs)
            if isinstance(result, asyncio.Future | asyncio.Task):
                return _ConcurrentResult(result)
            if inspect.isawaitable(result):
                return await result
            return result

        value = asyncio.run_coroutine_threadsafe(runner(), self.loop).result(CALL_TIMEOUT)
        if isinstance(value, _ConcurrentResult):
            return value.future
        return value

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _ConcurrentResult:
    """An asyncio future as a concurrent one (for pipelined sends)."""

    def __init__(self, task: asyncio.Future[Any]) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def done(t: asyncio.Future[Any]) -> None:
            if t.cancelled():
                self.future.cancel()
            elif t.exception() is not None:
                self.future.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                self.future.set_result(t.result())

        task.add_done_callback(done)


class AsyncProxy:
    """Calls an asyncio client's methods on the loop thread and waits for them."""

    def __init__(self, runner: _LoopThread, obj: Any) -> None:
        self._runner = runner
        self._obj = obj

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.call(attr, *args, **kwargs)

        return call

    def __enter__(self) -> AsyncProxy:
        self._runner.call(self._obj.start)
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.call(self._obj.close)


class Backend:
    """Makes client objects of one driver, blocking-style."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: _LoopThread | None = None
        if name == "asyncio":
            import rocketmq_asyncio as module

            self._loop = _LoopThread()
        elif name == "sync":
            import rocketmq_sync as module  # type: ignore[no-redef]
        else:
            import rocketmq_gevent as module  # type: ignore[no-redef]
        self.module = module

    def make(self, cls_name: str, *args: Any, **kwargs: Any) -> Any:
        cls = getattr(self.module, cls_name)
        if self._loop is not None:
            obj = self._loop.call(cls, *args, **kwargs)
            return AsyncProxy(self._loop, obj)
        return cls(*args, **kwargs)

    @contextmanager
    def open(self, cls_name: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        obj = self.make(cls_name, *args, **kwargs)
        with obj:
            yield obj

    def sleep(self, seconds: float) -> None:
        """Sleep without stalling the driver (under gevent, the hub must keep running)."""
        if self.name == "gevent":
            import gevent

            gevent.sleep(seconds)
        else:
            time.sleep(seconds)

    def background(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` concurrently; returns something with ``result(timeout)``."""
        if self.name == "gevent":
            import gevent

            greenlet = gevent.spawn(fn, *args)

            class _Result:
                def result(self, timeout: float | None = None) -> Any:
                    return greenlet.get(timeout=timeout)

            return _Result()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return future

    def wait_for(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
        return wait_for(check, timeout, what, sleep=self.sleep)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.stop()


def opened(name: str) -> Iterator[Backend]:
    """A fixture's body: the ``name`` driver's backend, closed after its tests."""
    made = Backend(name)
    try:
        yield made
    finally:
        made.close()


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Poll ``check`` until it returns something true (its value); fail after
    ``timeout`` seconds. ``sleep`` waits between two polls (gevent's under gevent)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        sleep(0.2)
