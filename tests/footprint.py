"""What clients could leave behind in a driver: threads, descriptors, asyncio tasks,
and under gevent the greenlets and hub watchers that serve nothing that was there
before (see :class:`Footprint`)."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import threading
import time
from typing import Any, Protocol


class _Driver(Protocol):
    """What a footprint needs of a test backend: its driver's name, its sleep (and,
    for asyncio, its loop's thread)."""

    name: str
    _loop: Any  # asyncio's: the loop's thread, whose tasks are counted

    def sleep(self, seconds: float) -> None: ...


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _owner(fn: Any) -> Any:
    """What a callback serves: the object of a bound method (under a partial)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__self__", fn)


class Footprint:
    """What clients could leave behind in this driver, against the moment it was made.

    Threads, descriptors and asyncio tasks are counted. Under gevent the clients that
    live through the cycles keep changing how many greenlets and hub watchers they
    hold (a parked reader waits on a timer, a reading one on its socket's watcher;
    a flow's sleep arms a new timer), so a count taken at one moment may be lower
    than one taken later with nothing leaked. What is counted there instead is what
    is *new*: live greenlets made since, and active hub watchers that neither existed
    then nor wake a greenlet, or call back an object, that did (the driver's timers
    are followed to the object they call back). Each is named, so a
    failure says what was left.
    """

    def __init__(self, backend: _Driver) -> None:
        self.backend = backend
        self._then: list[Any] = []
        if backend.name == "gevent":
            gc.collect()
            self._then = gc.get_objects()  # held, so that none of their ids is reused
        self._ids = {id(obj) for obj in self._then}
        self.baseline = self.now()

    def now(self) -> dict[str, int]:
        counts = {"threads": threading.active_count(), "fds": _open_fds()}
        backend = self.backend
        if backend.name == "asyncio":
            assert backend._loop is not None

            def tasks() -> int:
                return len(asyncio.all_tasks())

            counts["tasks"] = backend._loop.call(tasks)
        elif backend.name == "gevent":
            counts["new greenlets"] = len(self.new_greenlets())
            counts["new hub watchers"] = len(self.new_watchers())
        return counts

    def new_greenlets(self) -> list[str]:
        import greenlet

        gc.collect()
        ids = self._ids
        return [
            repr(obj)[:200]
            for obj in gc.get_objects()
            if isinstance(obj, greenlet.greenlet) and obj and not obj.dead and id(obj) not in ids
        ]

    def new_watchers(self) -> list[str]:
        import gevent
        from gevent.hub import Waiter
        from gevent.libev import corecext

        gc.collect()
        ids = self._ids
        found = []
        for obj in gc.get_objects():
            if not isinstance(obj, corecext.watcher) or not obj.active or id(obj) in ids:
                continue
            served = _owner(obj.callback)
            if isinstance(served, gevent.Timeout) and obj.args:
                served = obj.args[0]  # the greenlet the timeout is thrown into
            elif isinstance(served, Waiter):  # a sleep's, or a wait's on a socket
                served = served.greenlet
            elif type(served).__name__ == "_Timer":  # the driver's: it calls its _fn
                served = _owner(served._fn)
            if id(served) in ids:
                continue
            name = getattr(obj.callback, "__qualname__", obj.callback)
            found.append(f"{type(obj).__name__} -> {name} of {served!r}"[:200])
        return found

    def settled(self, timeout: float = 15.0) -> dict[str, int]:
        """The footprint once it is back to the baseline (or the last one seen after
        ``timeout``: a thread or greenlet that is ending may need a moment)."""
        deadline = time.monotonic() + timeout
        baseline = self.baseline
        while True:
            now = self.now()
            if all(now[key] <= baseline[key] for key in baseline) or time.monotonic() > deadline:
                return now
            self.backend.sleep(0.1)

    def grown(self, after: dict[str, int]) -> dict[str, str]:
        """What grew from the baseline to ``after``, with what the new ones are."""
        baseline = self.baseline
        grown = {
            key: f"{baseline[key]} -> {after[key]}"
            for key in baseline
            if after[key] > baseline[key]
        }
        if "new greenlets" in grown:
            grown["new greenlets"] += ": " + "; ".join(self.new_greenlets())
        if "new hub watchers" in grown:
            grown["new hub watchers"] += ": " + "; ".join(self.new_watchers())
        return grown
