"""The asyncio interpreter of the core's effects (see :mod:`rocketmq_proto.flows.effects`)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Never, NoReturn, TypeVar

from rocketmq_proto import driver
from rocketmq_proto.driver import (
    Flow,
    HttpAnswer,
    LocalProtocolError,
    RocketMQError,
    log_fields,
    user_callback_error,
)
from rocketmq_proto.driver import perform_read_file as read_file
from rocketmq_proto.driver import perform_write_file as write_file

from ._transport import RemotingClient

__all__ = ["FlowTasks", "run_flow"]

_log = logging.getLogger("rocketmq_asyncio")

T = TypeVar("T")

#: At most this many of one client's plain user callables run at once (as many
#: as the loop's default executor would run).
USER_THREADS = min(32, (os.cpu_count() or 1) + 4)
#: Threads running one client's offloaded CPU work at once: one per core, as the
#: work runs without the GIL.
CPU_THREADS = os.cpu_count() or 1


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    # inspect sees through functools.partial; an object with an ``async def __call__``
    # is a coroutine function only by its method.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


async def _user_call(effect: driver.UserCall, tasks: FlowTasks) -> Any:
    fn = effect.fn
    if tasks.is_async(fn):
        try:
            return await fn(*effect.args)
        except Exception as exc:
            raise user_callback_error(fn, exc) from exc
    # A plain callable may block (a database, an HTTP call): never on the loop. Once
    # the client is closed this raises (no thread is made for it).
    running = tasks.in_user_thread(fn, *effect.args)
    try:
        result = await running
        if inspect.isawaitable(result):
            result = await result
        return result
    except Exception as exc:
        raise user_callback_error(fn, exc) from exc


class FlowTasks:
    """One client's share of the loop: the flows its flows spawned, while they run,
    the thread its file effects run in, and the threads its users' plain callables
    (a local transaction, a transaction check) run in."""

    def __init__(self) -> None:
        self.spawned: set[asyncio.Task[Any]] = set()
        #: File effects (broadcasting offsets: a read, an ``fsync``ed write) run
        #: here, never on the event loop. One worker: the writes of a file land in
        #: the order the flows asked for them (a newer offsets table is never
        #: overwritten by an older one). Made on first use.
        self._files: ThreadPoolExecutor | None = None
        #: Plain user callables run here, made on first use and shut down with the
        #: client: never the loop's default executor, whose threads would outlive it.
        self._users: ThreadPoolExecutor | None = None
        #: Offloaded CPU work (compressing a large body) runs here, off the loop;
        #: made on first use.
        self._cpu: ThreadPoolExecutor | None = None
        #: Whether a callable is a coroutine function, by callable: asked per
        #: message otherwise (``inspect`` costs microseconds). Weak: a callable
        #: made per call (a local transaction's lambda) is forgotten with it.
        self._async: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._closed = False

    def is_async(self, fn: Callable[..., Any]) -> bool:
        """Whether ``fn`` is a coroutine function (or an object whose ``__call__`` is)."""
        try:
            return self._async[fn]
        except (KeyError, TypeError):  # not asked yet, or not weakly referable
            pass
        found = _is_async_callable(fn)
        with contextlib.suppress(TypeError):
            self._async[fn] = found
        return found

    def in_user_thread(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            # A broker's request answered after the client closed (a check-back):
            # no thread is made for it any more.
            raise LocalProtocolError("the client is closed: no user code runs any more")
        if self._users is None:
            self._users = ThreadPoolExecutor(USER_THREADS, thread_name_prefix="rocketmq-user")
        return asyncio.get_running_loop().run_in_executor(self._users, fn, *args)

    def off_loop(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._files is None:
            self._files = ThreadPoolExecutor(1, thread_name_prefix="rocketmq-files")
        return asyncio.get_running_loop().run_in_executor(self._files, fn, *args)

    def offloaded(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            # A flow still running as the client closes (a last flush): done here,
            # rather than in a pool that nothing would shut down.
            done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            try:
                done.set_result(fn(*args))
            except Exception as exc:
                done.set_exception(exc)
            return done
        if self._cpu is None:
            self._cpu = ThreadPoolExecutor(CPU_THREADS, thread_name_prefix="rocketmq-cpu")
        return asyncio.get_running_loop().run_in_executor(self._cpu, fn, *args)

    async def close(self) -> None:
        """Cancel the spawned flows that still run; let the file thread end once
        its writes are done, and the user threads once their calls returned (when
        the client closes)."""
        self._closed = True
        tasks = set(self.spawned)
        self.spawned.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._files is not None:
            self._files.shutdown(wait=False)
        if self._cpu is not None:
            self._cpu.shutdown(wait=False)
        if self._users is not None:
            # Calls queued and not started never run (a local transaction then stays
            # unknown: the broker's check-back settles it).
            self._users.shutdown(wait=False, cancel_futures=True)


async def _http_get(effect: driver.HttpGet) -> bytes:
    """Send the request on a new connection and read until the server closes it."""
    answer = HttpAnswer(effect)
    try:
        async with asyncio.timeout(effect.timeout):
            reader, writer = await asyncio.open_connection(effect.host, effect.port)
            try:
                writer.write(effect.request)
                await writer.drain()
                while chunk := await reader.read(65536):
                    answer.add(chunk)
                return answer.value()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except RocketMQError:
        raise
    except OSError as exc:  # a TimeoutError too: the effect's timeout ran out
        answer.fail(exc)


async def run_flow(
    client: RemotingClient,
    flow: Flow[T],
    *,
    tasks: FlowTasks,
) -> T:
    """Drive ``flow`` to its end, performing each effect it yields; return its value.

    A :class:`RocketMQError` of an effect is thrown into the flow (an exception of
    a user's callable as :class:`UserCallbackError`); whatever the flow raises
    propagates. If this coroutine is cancelled, the flow is closed. The flows it
    spawns, its file effects and its users' plain callables run in ``tasks`` (the
    client's, closed with it).
    """
    send = flow.send
    result: Any = None
    error: RocketMQError | None = None
    try:
        while True:
            try:
                if error is None:
                    effect = send(result)
                else:
                    effect, error = flow.throw(error), None
            except StopIteration as stop:
                value: T = stop.value
                return value
            try:
                # Most frequent first: a flow is mostly calls. (Fields are read as
                # attributes: capturing them in the patterns is slower.)
                match effect:
                    case driver.Call():
                        result = await client.request(effect.addr, effect.command, effect.timeout)
                    case driver.Oneway():
                        await client.oneway(effect.addr, effect.command)
                        result = None
                    case driver.Sleep():
                        await asyncio.sleep(effect.seconds)
                        result = None
                    case driver.Now():
                        result = asyncio.get_running_loop().time()
                    case driver.WallTime():
                        result = int(time.time() * 1000)
                    case driver.UserCall():
                        if effect.timed:
                            loop = asyncio.get_running_loop()
                            began = loop.time()
                            try:
                                value = await _user_call(effect, tasks)
                            except driver.UserCallbackError as exc:
                                exc.elapsed = loop.time() - began
                                raise
                            result = (value, loop.time() - began)
                        else:
                            result = await _user_call(effect, tasks)
                    case driver.Spawn():
                        _spawn(client, effect, tasks)
                        result = None
                    case driver.ReadFile():
                        result = await tasks.off_loop(read_file, effect.path)
                    case driver.WriteFile():
                        await tasks.off_loop(write_file, effect.path, effect.data)
                        result = None
                    case driver.HttpGet():
                        result = await _http_get(effect)
                    case driver.Offload():
                        if effect.short:  # cheaper here than handed to a thread
                            result = effect.fn(*effect.args)
                        else:
                            result = await tasks.offloaded(effect.fn, *effect.args)
                    case _:
                        _not_an_effect(effect)
            except RocketMQError as exc:
                result, error = None, exc
    finally:
        flow.close()


def _not_an_effect(effect: Never) -> NoReturn:
    """Raise for what a flow yielded that is no effect. Typed ``Never``: mypy reports
    a member of :data:`Effect` that :func:`run_flow` has no case for."""
    raise TypeError(f"not an effect: {effect!r}")


def _spawn(
    client: RemotingClient,
    effect: driver.Spawn,
    tasks: FlowTasks,
) -> None:
    """Run a spawned flow as a task of its own; log how it failed, if it does."""
    task = asyncio.get_running_loop().create_task(
        run_flow(client, effect.flow, tasks=tasks), name=effect.name
    )
    tasks.spawned.add(task)
    task.add_done_callback(tasks.spawned.discard)
    task.add_done_callback(_spawn_done)


def _spawn_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error(
            "flow %s failed",
            task.get_name(),
            exc_info=task.exception(),
            extra=log_fields(task=task.get_name()),
        )
