"""The blocking driver's Future is a concurrent.futures.Future: wait, as_completed, wrap_future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures._base as stdlib_base
import threading
import time
from typing import Any

import pytest

from rocketmq_sync._future import _CANCELLED, _FINISHED, _PENDING, CancelledError, Future
from rocketmq_sync._runtime import ThreadRuntime

RT = ThreadRuntime()


def later(delay: float, fn: Any, *args: Any) -> None:
    timer = threading.Timer(delay, fn, args)
    timer.daemon = True
    timer.start()


def test_its_states_are_the_ones_the_standard_library_reads() -> None:
    assert (_PENDING, _FINISHED, _CANCELLED) == (
        stdlib_base.PENDING,
        stdlib_base.FINISHED,
        stdlib_base.CANCELLED_AND_NOTIFIED,
    )
    future: Future[int] = Future(RT)
    assert isinstance(future, concurrent.futures.Future)
    assert not future.running() and future.set_running_or_notify_cancel()
    assert future.cancel() and not future.set_running_or_notify_cancel()


def test_wait_first_completed_returns_when_one_is_done() -> None:
    slow: Future[int] = Future(RT)
    quick: Future[int] = Future(RT)
    later(0.05, quick.set_result, 1)
    start = time.monotonic()
    done, not_done = concurrent.futures.wait(
        [slow, quick], timeout=5, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert done == {quick} and not_done == {slow}
    assert time.monotonic() - start < 2
    assert slow._waiter_list == [] and quick._waiter_list == []  # waiters taken off again


def test_wait_all_completed_with_timeout() -> None:
    futures: list[Future[int]] = [Future(RT) for _ in range(3)]
    futures[0].set_result(0)  # done before the wait
    later(0.02, futures[1].set_exception, ValueError("no"))
    start = time.monotonic()
    done, not_done = concurrent.futures.wait(futures, timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 2
    assert done == {futures[0], futures[1]} and not_done == {futures[2]}
    later(0.02, futures[2].cancel)
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert done == set(futures) and not not_done
    assert futures[2].cancelled()


def test_wait_first_exception() -> None:
    ok: Future[int] = Future(RT)
    bad: Future[int] = Future(RT)
    never: Future[int] = Future(RT)
    ok.set_result(1)
    later(0.02, bad.set_exception, ValueError("no"))
    done, not_done = concurrent.futures.wait(
        [ok, bad, never], timeout=5, return_when=concurrent.futures.FIRST_EXCEPTION
    )
    assert done == {ok, bad} and not_done == {never}


def test_as_completed_yields_each_in_completion_order_and_times_out() -> None:
    futures: list[Future[int]] = [Future(RT) for _ in range(4)]
    futures[3].set_result(3)

    def finish_in_order() -> None:
        # Only once ``as_completed`` has taken its snapshot and installed its waiter:
        # a future finished before that is yielded with the already-finished ones, in
        # no defined order (a loaded machine once delayed the caller past 50 ms).
        deadline = time.monotonic() + 5
        while not futures[2]._waiter_list and time.monotonic() < deadline:
            time.sleep(0.001)
        futures[1].set_result(1)
        time.sleep(0.01)
        futures[0].set_result(0)
        time.sleep(0.01)
        futures[2].cancel()

    later(0, finish_in_order)
    order = list(concurrent.futures.as_completed(futures, timeout=5))
    assert order == [futures[3], futures[1], futures[0], futures[2]]
    stuck: Future[int] = Future(RT)
    with pytest.raises(TimeoutError):
        list(concurrent.futures.as_completed([stuck], timeout=0.05))
    assert stuck._waiter_list == []


def test_asyncio_wrap_future_awaits_result_exception_and_cancel() -> None:
    async def main() -> None:
        value: Future[int] = Future(RT)
        later(0.02, value.set_result, 7)
        assert await asyncio.wrap_future(value) == 7
        failed: Future[int] = Future(RT)
        later(0.02, failed.set_exception, ValueError("no"))
        with pytest.raises(ValueError, match="no"):
            await asyncio.wrap_future(failed)
        # Cancelling the asyncio side cancels ours.
        mine: Future[int] = Future(RT)
        wrapped = asyncio.wrap_future(mine)
        wrapped.cancel()
        await asyncio.sleep(0.01)
        assert mine.cancelled()
        with pytest.raises(CancelledError):
            mine.result()

    asyncio.run(main())


def test_gevent_futures_refuse_a_thread_blocking_wait_but_work_otherwise() -> None:
    import gevent

    from rocketmq_gevent._runtime import GeventRuntime

    runtime = GeventRuntime()
    assert not runtime.threads_may_wait  # the test process does not monkey-patch
    pending: Future[int] = Future(runtime)
    with pytest.raises(TypeError, match="gevent's hub"):
        concurrent.futures.wait([pending], timeout=0.01)
    with pytest.raises(TypeError, match="gevent's hub"):
        list(concurrent.futures.as_completed([pending], timeout=0.01))
    gevent.spawn_later(0.01, pending.set_result, 5)
    assert pending.result(2) == 5
    seen: list[int] = []
    pending.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == [5] and isinstance(pending, concurrent.futures.Future)
