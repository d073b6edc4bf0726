"""What the client classes need from asyncio, under the names the blocking driver
gives its own: the client classes (``_client.py``) are written once, here with
``async``/``await``, and ``rocketmq_sync``'s are generated from them
(``scripts/unasync.py``). Everything that differs between the drivers lives in
the two ``_shell`` modules, behind the same names.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rocketmq_proto import Message, MessageExt, TransactionState
from rocketmq_proto.driver import HANDLER_NOT_RUN, Flow, MessageHandler, TransportSettings

from ._interpreter import FlowTasks, run_flow
from ._transport import RemotingClient, RequestHandler

T = TypeVar("T")

#: A started flow: an :class:`asyncio.Task` here, a future in the blocking driver.
Task = asyncio.Task

LocalTransaction = Callable[[Message, Any], "TransactionState | bool | Awaitable[Any] | None"]
TransactionChecker = Callable[[MessageExt], "TransactionState | bool | Awaitable[Any] | None"]

monotonic = time.monotonic


#: A lock that is never needed: flows and methods all run on the loop's thread,
#: and a step of a flow (its code between two effects) ends before anything else
#: runs there.
_NO_LOCK: contextlib.nullcontext[None] = contextlib.nullcontext()


class _Slots:
    """At most ``size`` holders at once, the others served in arrival order.

    As an :class:`asyncio.Semaphore`, but a free slot is taken without a
    coroutine call (this runs once per consumed message), and a slot given back
    while others wait goes straight to the first of them."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        """Take a free slot if one is free and nobody waits for one."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (after :meth:`take_now` found none)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed a slot, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class Runtime:
    """One client's share of asyncio: the worker threads of plain (blocking)
    consume handlers, made on first use and shut down with the client."""

    def __init__(self, max_user_workers: int = 0) -> None:
        self._max_user_workers = max_user_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: _Slots | None = None

    #: The client's core lock (see the blocking runtime's): never needed here.
    core_lock = _NO_LOCK

    def Lock(self) -> contextlib.nullcontext[None]:  # named like the blocking runtime's factory
        return _NO_LOCK

    def bounded_handler(
        self, handler: MessageHandler, closed: Callable[[], bool]
    ) -> Callable[[list[MessageExt]], Awaitable[Any]]:
        """``handler`` run at most ``max_user_workers`` at a time: a coroutine
        function awaited, a plain one in a worker thread (so it may block)."""
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004
        )
        workers = max(1, self._max_user_workers)

        async def bounded(messages: list[MessageExt]) -> Any:
            slots = self._slots
            if slots is None:
                slots = self._slots = _Slots(workers)
            if not slots.take_now():
                await slots.take()
            try:
                if closed():
                    return HANDLER_NOT_RUN  # closed while this call waited for a slot
                if is_async:
                    return await handler(messages)
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        workers, thread_name_prefix="rocketmq-consume"
                    )
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._executor, handler, messages)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                slots.give_back()

        return bounded

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


#: The runtime a client makes for itself.
DefaultRuntime = Runtime


def bounded_handler(
    runtime: Runtime, handler: MessageHandler, closed: Callable[[], bool]
) -> MessageHandler:
    """``handler`` as the push consumer's core calls it (see :meth:`Runtime.bounded_handler`)."""
    return runtime.bounded_handler(handler, closed)


class Engine:
    """Runs one client's core flows on its connections."""

    def __init__(
        self, transport: TransportSettings, request_handler: RequestHandler, runtime: Runtime
    ) -> None:
        # ``runtime`` runs the flows in the blocking driver; here the loop does.
        self.remoting = RemotingClient(transport, request_handler=request_handler)
        #: The flows this client's flows spawned, and its file thread.
        self.tasks = FlowTasks()

    async def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its end; its value."""
        return await run_flow(self.remoting, flow, tasks=self.tasks)

    async def run_send(self, flow: Flow[T], sends: set[Any]) -> T:
        """A send the caller awaits: run as it is (``flush`` covers the sends of
        ``send_async``; an awaited send is its caller's own)."""
        return await run_flow(self.remoting, flow, tasks=self.tasks)

    def start(self, flow: Flow[T], name: str | None = None) -> asyncio.Task[T]:
        """Start ``flow`` as a task of its own."""
        return asyncio.create_task(run_flow(self.remoting, flow, tasks=self.tasks), name=name)

    async def close(self) -> None:
        await self.tasks.close()
        await self.remoting.close()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_all(pending: set[asyncio.Task[Any]], timeout: float | None) -> int:
    """Wait up to ``timeout`` seconds for every one of ``pending`` to end; how
    many have not."""
    if not pending:
        return 0
    _, not_done = await asyncio.wait(pending, timeout=timeout)
    return len(not_done)


def new_signal(runtime: Runtime) -> asyncio.Event:
    """What wakes a waiter when something arrived (set by flows, on the loop)."""
    return asyncio.Event()


async def wait_signal(signal: asyncio.Event, timeout: float) -> None:
    """Until ``signal`` is set, or ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(signal.wait(), timeout)


def new_waiter(runtime: Runtime) -> asyncio.Future[Any]:
    """A future a reply is delivered to, from any thread."""
    return asyncio.get_running_loop().create_future()


async def wait_waiter(waiter: asyncio.Future[T], timeout: float) -> T:
    """The waiter's value; the builtin :class:`TimeoutError` after ``timeout`` s."""
    return await asyncio.wait_for(waiter, timeout)


def deliver(waiter: asyncio.Future[T], value: T) -> None:
    """Give ``waiter`` its value unless it has one (safe from any thread)."""
    if not waiter.done():
        waiter.get_loop().call_soon_threadsafe(_set_if_pending, waiter, value)


def _set_if_pending(waiter: asyncio.Future[T], value: T) -> None:
    if not waiter.done():
        waiter.set_result(value)
