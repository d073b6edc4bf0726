"""The asyncio interpreter of the core's effects (see :mod:`rocketmq_proto.flows.effects`)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Never, NoReturn, TypeVar

from rocketmq_proto.driver import (
    Call,
    ConnectionClosedError,
    Flow,
    HttpGet,
    Now,
    Oneway,
    ReadFile,
    RequestTimeoutError,
    RocketMQError,
    Sleep,
    Spawn,
    UserCall,
    UserCallbackError,
    WallTime,
    WriteFile,
)
from rocketmq_proto.driver import perform_read_file as read_file
from rocketmq_proto.driver import perform_write_file as write_file

from ._transport import RemotingClient

__all__ = ["cancel_spawned", "run_flow"]

_log = logging.getLogger("rocketmq_asyncio")

T = TypeVar("T")


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    # inspect sees through functools.partial; an object with an ``async def __call__``
    # is a coroutine function only by its method.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004
    )


async def _user_call(effect: UserCall, executor: Executor | None) -> Any:
    fn = effect.fn
    try:
        if _is_async_callable(fn):
            return await fn(*effect.args)
        # A plain callable may block (a database, an HTTP call): never on the loop.
        result = await asyncio.get_running_loop().run_in_executor(executor, fn, *effect.args)
        if inspect.isawaitable(result):
            result = await result
        return result
    except Exception as exc:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise UserCallbackError(f"{name} raised {type(exc).__name__}: {exc}") from exc


#: File effects (broadcasting offsets: a read, an ``fsync``ed write) run here, never
#: on the event loop. One worker: the writes of a file land in the order the flows
#: asked for them (a newer offsets table is never overwritten by an older one).
_file_executor: ThreadPoolExecutor | None = None


def _off_loop(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    global _file_executor
    if _file_executor is None:
        _file_executor = ThreadPoolExecutor(1, thread_name_prefix="rocketmq-files")
    return asyncio.get_running_loop().run_in_executor(_file_executor, fn, *args)


async def _http_get(effect: HttpGet) -> bytes:
    """Send the request on a new connection and read until the server closes it."""
    where = f"{effect.host}:{effect.port}"
    try:
        async with asyncio.timeout(effect.timeout):
            reader, writer = await asyncio.open_connection(effect.host, effect.port)
            try:
                writer.write(effect.request)
                await writer.drain()
                answer = bytearray()
                while chunk := await reader.read(65536):
                    answer += chunk
                    if len(answer) > effect.max_size:
                        raise ConnectionClosedError(
                            f"HTTP answer from {where} exceeds {effect.max_size} bytes"
                        )
                return bytes(answer)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except RocketMQError:
        raise
    except TimeoutError:
        raise RequestTimeoutError(
            f"no HTTP answer from {where} within {effect.timeout} s"
        ) from None
    except OSError as exc:
        raise ConnectionClosedError(f"HTTP request to {where} failed: {exc}") from exc


async def run_flow(
    client: RemotingClient,
    flow: Flow[T],
    *,
    user_executor: Executor | None = None,
    spawned: set[asyncio.Task[Any]] | None = None,
) -> T:
    """Drive ``flow`` to its end, performing each effect it yields; return its value.

    A :class:`RocketMQError` of an effect is thrown into the flow (an exception of
    a user's callable as :class:`UserCallbackError`); whatever the flow raises
    propagates. If this coroutine is cancelled, the flow is closed. The flows it
    spawns run as tasks kept in ``spawned`` (the client's, which cancels them
    when it closes: :func:`cancel_spawned`) while they run.
    """
    if spawned is None:
        spawned = set()
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
                    case Call():
                        result = await client.request(effect.addr, effect.command, effect.timeout)
                    case Oneway():
                        await client.oneway(effect.addr, effect.command)
                        result = None
                    case Sleep():
                        await asyncio.sleep(effect.seconds)
                        result = None
                    case Now():
                        result = asyncio.get_running_loop().time()
                    case WallTime():
                        result = int(time.time() * 1000)
                    case UserCall():
                        result = await _user_call(effect, user_executor)
                    case Spawn():
                        _spawn(client, effect, user_executor, spawned)
                        result = None
                    case ReadFile():
                        result = await _off_loop(read_file, effect.path)
                    case WriteFile():
                        await _off_loop(write_file, effect.path, effect.data)
                        result = None
                    case HttpGet():
                        result = await _http_get(effect)
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
    effect: Spawn,
    executor: Executor | None,
    tasks: set[asyncio.Task[Any]],
) -> None:
    """Run a spawned flow as a task of its own; log how it failed, if it does."""
    task = asyncio.get_running_loop().create_task(
        run_flow(client, effect.flow, user_executor=executor, spawned=tasks), name=effect.name
    )
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(_spawn_done)


def _spawn_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("flow %s failed", task.get_name(), exc_info=task.exception())


async def cancel_spawned(spawned: set[asyncio.Task[Any]]) -> None:
    """Cancel the spawned flows that still run (when their client closes)."""
    tasks = set(spawned)
    spawned.clear()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
