"""The leak tests' measure under gevent: what is new is named, what serves what was
there before is not (so that clients living through the cycles, whose readers and
flows keep arming fresh timers, neither hide a leak nor make one up)."""

from __future__ import annotations

import time
import types
from typing import Any

import gevent
import gevent.event

from rocketmq_gevent._runtime import GeventRuntime

from .footprint import Footprint


def _driver() -> types.SimpleNamespace:
    return types.SimpleNamespace(name="gevent", sleep=gevent.sleep, _loop=None)


def _new(counts: dict[str, Any]) -> dict[str, Any]:
    """The gevent part of a footprint (the process's threads and descriptors are
    also those of the other tests running beside these)."""
    return {key: value for key, value in counts.items() if key.startswith("new ")}


class _Owner:
    """Something a driver timer calls back."""

    def wake(self) -> None:
        pass


def test_what_was_there_before_is_not_counted_however_it_waits_now() -> None:
    runtime = GeventRuntime()
    owner = _Owner()
    parked = gevent.event.Event()

    def sleeper() -> None:  # long-lived greenlets: one then sleeps, one waits a while
        while not parked.is_set():
            gevent.sleep(0.01)
        gevent.sleep(30)

    def waiter() -> None:
        parked.wait()
        gevent.event.Event().wait(30)

    before = [gevent.spawn(sleeper), gevent.spawn(waiter)]
    gevent.sleep(0.05)
    footprint = Footprint(_driver())
    parked.set()
    timer = runtime.call_later(30, owner.wake)  # a fresh timer of an old owner
    gevent.sleep(0.05)
    try:
        # Settled: a greenlet another test left may be starting one for a moment.
        settled = footprint.settled(2.0)
        assert _new(settled) == {"new greenlets": 0, "new hub watchers": 0}
        assert not _new(footprint.grown(settled))
    finally:
        timer.cancel()
        gevent.killall(before)
        runtime.close()


def _looked_until(footprint: Footprint, expected: dict[str, int]) -> dict[str, int]:
    """The footprint once its gevent counts are ``expected`` (or the last one seen
    after 2 s: a greenlet another test left may be starting one for a moment)."""
    deadline = time.monotonic() + 2.0
    while True:
        now = footprint.now()
        if _new(now) == expected or time.monotonic() > deadline:
            return now
        gevent.sleep(0.05)


def test_what_is_new_is_counted_and_named() -> None:
    runtime = GeventRuntime()
    footprint = Footprint(_driver())
    owner = _Owner()
    timer = runtime.call_later(30, owner.wake)  # a driver timer of a new owner
    raw = gevent.get_hub().loop.timer(30)
    raw.start(owner.wake)
    left = gevent.spawn(gevent.sleep, 30)
    gevent.sleep(0.05)
    try:
        # The driver's timer, the raw one, the sleep's.
        now = _looked_until(footprint, {"new greenlets": 1, "new hub watchers": 3})
        assert _new(now) == {"new greenlets": 1, "new hub watchers": 3}
        grown = footprint.grown(now)
        assert "sleep(30)" in grown["new greenlets"]
        assert grown["new hub watchers"].count("_Owner object") == 2, grown
        assert "Waiter.switch" in grown["new hub watchers"]
    finally:
        timer.cancel()
        raw.close()
        left.kill()
        runtime.close()
    assert _new(footprint.settled(5.0)) == {"new greenlets": 0, "new hub watchers": 0}


def _plain() -> None:
    pass


def test_a_plain_functions_timer_and_an_old_owners_extra_timers_count() -> None:
    """A timer calling a plain function serves nothing one can tell: it counts. An
    object that was there counts for the timers it holds beyond what it held then
    (and one): a long-lived client leaking one per cycle shows."""
    runtime = GeventRuntime()
    owner = _Owner()
    footprint = Footprint(_driver())
    timers = [runtime.call_later(30, owner.wake) for _ in range(3)]
    timers.append(runtime.call_later(30, _plain))
    gevent.sleep(0.05)
    try:
        now = _looked_until(footprint, {"new greenlets": 0, "new hub watchers": 3})
        assert _new(now) == {"new greenlets": 0, "new hub watchers": 3}
        grown = footprint.grown(now)["new hub watchers"]
        assert grown.count("(holds 3, 0 then)") == 2, grown
        assert "of None" in grown, grown
    finally:
        for timer in timers:
            timer.cancel()
        runtime.close()
