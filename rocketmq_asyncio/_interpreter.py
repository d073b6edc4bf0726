"""The asyncio interpreter of the core's effects (see :mod:`rocketmq_proto._effects`)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from rocketmq_proto._effects import (
    Call,
    Flow,
    Now,
    Oneway,
    ReadFile,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
    WriteFile,
)
from rocketmq_proto._errors import RocketMQError, UserCallbackError
from rocketmq_sync._files import read_file, write_file

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
                    result = read_file(effect.path)
                elif type(effect) is WriteFile:
                    write_file(effect.path, effect.data)
                    result = None
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
