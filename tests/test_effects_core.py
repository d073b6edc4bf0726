"""The typed effect helpers: each yields its effect once and returns what is sent in."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, assert_type, get_args

import pytest

import rocketmq_proto.flows.effects as fx
from rocketmq_asyncio._interpreter import FlowTasks
from rocketmq_asyncio._interpreter import run_flow as run_asyncio
from rocketmq_asyncio._transport import RemotingClient as AsyncioClient
from rocketmq_proto.flows.effects import (
    Ask,
    Call,
    Effect,
    Flow,
    HttpGet,
    Now,
    Offload,
    Oneway,
    ReadFile,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
    WriteFile,
)
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import RequestTimeoutError, UserCallbackError
from rocketmq_sync._interpreter import run_flow as run_threads
from rocketmq_sync._runtime import ThreadRuntime
from rocketmq_sync._transport import RemotingClient as ThreadsClient

COMMAND = RemotingCommand(code=10)


def _child() -> Flow[None]:
    yield Now()


CHILD = _child()


def _user_fn(a: int, b: str) -> str:
    return f"{a}{b}"


#: helper call, the effect it must yield, what the driver sends in.
CASES: list[tuple[str, Callable[[], Ask[Any]], Effect, Any]] = [
    ("call", lambda: fx.call("h:1", COMMAND, 2.5), Call("h:1", COMMAND, 2.5), COMMAND),
    ("oneway", lambda: fx.oneway("h:1", COMMAND), Oneway("h:1", COMMAND), None),
    ("sleep", lambda: fx.sleep(0.25), Sleep(0.25), None),
    ("now", fx.now, Now(), 12.5),
    ("wall_ms", fx.wall_ms, WallTime(), 1_700_000_000_000),
    ("user_call", lambda: fx.user_call(_user_fn, 1, "x"), UserCall(_user_fn, (1, "x")), "1x"),
    ("spawn", lambda: fx.spawn(CHILD, "child"), Spawn(CHILD, "child"), None),
    ("read_file", lambda: fx.read_file("/p"), ReadFile("/p"), b"data"),
    ("read_file_missing", lambda: fx.read_file("/p"), ReadFile("/p"), None),
    ("write_file", lambda: fx.write_file("/p", b"d"), WriteFile("/p", b"d"), None),
    ("offload", lambda: fx.offload(_user_fn, 2, "y"), Offload(_user_fn, (2, "y")), "2y"),
    (
        "http_get",
        lambda: fx.http_get("h", 80, b"GET / HTTP/1.0\r\n\r\n", 3.0, 100),
        HttpGet("h", 80, b"GET / HTTP/1.0\r\n\r\n", 3.0, 100),
        b"HTTP/1.0 200 OK\r\n\r\n",
    ),
]


@pytest.mark.parametrize(
    ("make", "effect", "answer"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_helper_yields_its_effect_once_and_returns_the_answer(
    make: Callable[[], Ask[Any]], effect: Effect, answer: Any
) -> None:
    flow = make()
    assert next(flow) == effect
    with pytest.raises(StopIteration) as stop:
        flow.send(answer)
    assert stop.value.value is answer


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_an_effects_error_comes_out_of_the_helper(make: Callable[[], Ask[Any]]) -> None:
    flow = make()
    next(flow)
    error = RequestTimeoutError("late")
    with pytest.raises(RequestTimeoutError) as raised:
        flow.throw(error)
    assert raised.value is error


def test_every_effect_is_in_the_union_exported_and_has_a_helper() -> None:
    classes = {
        obj
        for obj in vars(fx).values()
        if inspect.isclass(obj) and obj.__module__ == fx.__name__ and dataclasses.is_dataclass(obj)
    }
    assert set(get_args(Effect)) == classes
    assert {cls.__name__ for cls in classes} <= set(fx.__all__)
    assert {type(c[2]) for c in CASES} == classes
    assert {c[0] for c in CASES} - {"read_file_missing"} <= set(fx.__all__)
    for name in fx.__all__:
        assert hasattr(fx, name), name


def _typed_flow(path: str) -> Flow[tuple[float, int, str, bytes | None]]:
    """A flow written with the helpers (mypy checks what each gives back)."""
    start = yield from fx.now()
    assert_type(start, float)
    wall = yield from fx.wall_ms()
    assert_type(wall, int)
    yield from fx.sleep(0.01)
    text = yield from fx.user_call(_user_fn, 4, "2")
    assert_type(text, str)
    yield from fx.write_file(path, b"offsets")
    data = yield from fx.read_file(path)
    assert_type(data, bytes | None)
    try:
        yield from fx.user_call(int, "not a number")
    except UserCallbackError as exc:
        assert isinstance(exc.__cause__, ValueError)
    later = yield from fx.now()
    return later - start, wall, text, data


def _check(result: tuple[float, int, str, bytes | None]) -> None:
    elapsed, wall, text, data = result
    assert elapsed >= 0.01
    assert isinstance(wall, int) and wall > 1_600_000_000_000
    assert text == "42"
    assert data == b"offsets"


def test_a_flow_written_with_helpers_runs_on_the_asyncio_driver(tmp_path: Path) -> None:
    async def main() -> tuple[float, int, str, bytes | None]:
        client = AsyncioClient()
        tasks = FlowTasks()
        try:
            return await run_asyncio(client, _typed_flow(str(tmp_path / "a" / "f")), tasks=tasks)
        finally:
            await tasks.close()
            await client.close()

    _check(asyncio.run(main()))


def test_a_flow_written_with_helpers_runs_on_the_threads_driver(tmp_path: Path) -> None:
    runtime = ThreadRuntime()
    client = ThreadsClient(runtime)
    try:
        _check(run_threads(client, runtime, _typed_flow(str(tmp_path / "t" / "f"))))
    finally:
        client.close()
