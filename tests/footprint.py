"""What clients could leave behind in a driver: threads, descriptors, asyncio tasks,
and under gevent the greenlets and hub watchers that serve nothing that was there
before (see :class:`Footprint`)."""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import os
import threading
import time
import types
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
    """What a callback serves: the object of a bound method (under a partial), or
    ``None`` for a plain function (or one of a module): nothing to tell it by."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    return None if owner is None or isinstance(owner, types.ModuleType) else owner


def _served(watcher: Any) -> Any:
    """What an active hub watcher serves: the greenlet a timeout is thrown into or
    a waiter wakes, the object the driver's timer calls back, the object of its
    callback; ``None`` if nothing can be told."""
    import gevent
    from gevent.hub import Waiter

    served = _owner(watcher.callback)
    if isinstance(served, gevent.Timeout) and watcher.args:
        return watcher.args[0]
    if isinstance(served, Waiter):  # a sleep's, or a wait's on a socket
        return served.greenlet
    if type(served).__name__ == "_Timer":  # the driver's: it calls its _fn
        return _owner(served._fn)
    return served


def _active_watchers(objects: list[Any]) -> list[Any]:
    from gevent.libev import corecext

    return [obj for obj in objects if isinstance(obj, corecext.watcher) and obj.active]


def _tracked() -> list[Any]:
    """The objects the collector tracks, after a collection (what is garbage gone)."""
    gc.collect()
    return gc.get_objects()


def _name(watcher: Any, served: Any) -> str:
    callback = getattr(watcher.callback, "__qualname__", watcher.callback)
    return f"{type(watcher).__name__} -> {callback} of {served!r}"[:200]


class Footprint:
    """What clients could leave behind in this driver, against the moment it was made.

    Threads, descriptors and asyncio tasks are counted. Under gevent the clients that
    live through the cycles keep changing how many greenlets and hub watchers they
    hold (a parked reader waits on a timer, a reading one on its socket's watcher;
    a flow's sleep arms a new timer), so a count taken at one moment may be lower
    than one taken later with nothing leaked. What is counted there instead is what
    is *new*: live greenlets made since, and active hub watchers made since that
    serve nothing that was there then (the greenlet a timeout or a wait wakes, the
    object a callback or the driver's timer calls back; a plain function serves
    nothing one can tell). A watcher made since for something that was there counts
    too when that something holds more of them than it did then (and more than
    one): a timer leaked per cycle by a client living through the cycles shows so.
    Each is named, so a failure says what was left.
    """

    def __init__(self, backend: _Driver) -> None:
        self.backend = backend
        self._then: list[Any] = []
        #: Active hub watchers per object they serve, then (by id).
        self._held_then: collections.Counter[int] = collections.Counter()
        #: What the last look found new: greenlets, hub watchers.
        self._found: tuple[list[str], list[str]] = ([], [])
        if backend.name == "gevent":
            self._then = _tracked()  # held, so that none of their ids is reused
            for watcher in _active_watchers(self._then):
                served = _served(watcher)
                if served is not None:
                    self._held_then[id(served)] += 1
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
            objects = _tracked()  # one look for both
            self._found = (self.new_greenlets(objects), self.new_watchers(objects))
            counts["new greenlets"] = len(self._found[0])
            counts["new hub watchers"] = len(self._found[1])
        return counts

    def new_greenlets(self, objects: list[Any]) -> list[str]:
        import greenlet

        ids = self._ids
        return [
            repr(obj)[:200]
            for obj in objects
            if isinstance(obj, greenlet.greenlet) and obj and not obj.dead and id(obj) not in ids
        ]

    def new_watchers(self, objects: list[Any]) -> list[str]:
        ids = self._ids
        found = []
        held: collections.Counter[int] = collections.Counter()
        named: dict[int, str] = {}
        for watcher in _active_watchers(objects):
            if id(watcher) in ids:  # there then (a socket's, watched again)
                continue
            served = _served(watcher)
            if served is None or id(served) not in ids:
                found.append(_name(watcher, served))
                continue
            held[id(served)] += 1
            named[id(served)] = _name(watcher, served)
        for key, count in held.items():
            then = self._held_then[key]
            found += [f"{named[key]} (holds {count}, {then} then)"] * (count - max(then, 1))
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
        """What grew from the baseline to ``after`` (the last look's), with what the
        new ones are."""
        baseline = self.baseline
        grown = {
            key: f"{baseline[key]} -> {after[key]}"
            for key in baseline
            if after[key] > baseline[key]
        }
        if "new greenlets" in grown:
            grown["new greenlets"] += ": " + "; ".join(self._found[0])
        if "new hub watchers" in grown:
            grown["new hub watchers"] += ": " + "; ".join(self._found[1])
        return grown
