"""The asyncio interpreter of the core's effects (see :mod:`rocketmq_proto.flows.effects`)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from rocketmq_proto.flows.effects import (
    Call,
    Flow,
    HttpGet,
    Now,
    Oneway,
    ReadFile,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
    WriteFile,
)
from rocketmq_proto.flows.localfile import read_file, write_file
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    RequestTimeoutError,
    RocketMQError,
    UserCallbackError,
)

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
    client: RemotingClient, flow: Flow[T], *, user_executor: Executor | None = None
) -> T:
    """Drive ``flow`` to its end, performing each effect it yields; return its value.

    A :class:`RocketMQError` of an effect is thrown into the flow (an exception of
    a user's callable as :class:`UserCallbackError`); whatever the flow raises
    propagates. If this coroutine is cancelled, the flow is closed.
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
                # Most frequent first: a flow is mostly calls.
                if type(effect) is Call:
                    result = await client.request(effect.addr, effect.command, effect.timeout)
                elif type(effect) is Oneway:
                    await client.oneway(effect.addr, effect.command)
                    result = None
                elif type(effect) is Sleep:
                    await asyncio.sleep(effect.seconds)
                    result = None
                elif type(effect) is Now:
                    result = asyncio.get_running_loop().time()
                elif type(effect) is WallTime:
                    result = int(time.time() * 1000)
                elif type(effect) is UserCall:
                    result = await _user_call(effect, user_executor)
                elif type(effect) is Spawn:
                    _spawn(client, effect, user_executor)
                    result = None
                elif type(effect) is ReadFile:
                    result = await _off_loop(read_file, effect.path)
                elif type(effect) is WriteFile:
                    await _off_loop(write_file, effect.path, effect.data)
                    result = None
                elif type(effect) is HttpGet:
                    result = await _http_get(effect)
                else:
                    raise TypeError(f"not an effect: {effect!r}")
            except RocketMQError as exc:
                result, error = None, exc
    finally:
        flow.close()


_spawned: weakref.WeakKeyDictionary[RemotingClient, set[asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _spawn(client: RemotingClient, effect: Spawn, executor: Executor | None) -> None:
    """Run a spawned flow as a task of its own; log how it failed, if it does."""
    task = asyncio.get_running_loop().create_task(
        run_flow(client, effect.flow, user_executor=executor), name=effect.name
    )
    tasks = _spawned.setdefault(client, set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(_spawn_done)


def _spawn_done(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("flow %s failed", task.get_name(), exc_info=task.exception())


async def cancel_spawned(client: RemotingClient) -> None:
    """Cancel the flows spawned on ``client`` that still run (when it closes)."""
    tasks = _spawned.pop(client, set())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
