"""Drivers and threads: what runs on which thread, under which lock (no broker)."""

from __future__ import annotations

import ast
import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import rocketmq_asyncio._interpreter as aio_interpreter
import rocketmq_sync
from rocketmq_asyncio._transport import RemotingClient
from rocketmq_proto.flows.effects import Flow, Offload, ReadFile, WriteFile
from rocketmq_proto.flows.localfile import read_file, write_file

T = TypeVar("T")

NAMESRV = "127.0.0.1:1"  # never contacted: the consumers are not started


# ------------------------------------------------- asyncio: file effects off the loop


async def _run_beside_a_ticker(flow: Flow[T]) -> tuple[T, int, int]:
    """Run ``flow`` in a fresh client's tasks while a task ticks every 10 ms: its
    result, the loop's thread, and the ticks (how long the loop went on meanwhile)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    client = RemotingClient()
    tasks = aio_interpreter.FlowTasks()
    try:
        result = await aio_interpreter.run_flow(client, flow, tasks=tasks)
    finally:
        tick_task.cancel()
        await tasks.close()
        await client.close()
    return result, threading.get_ident(), ticks


def test_asyncio_file_effects_run_off_the_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ReadFile/WriteFile (a broadcasting consumer's offsets, ``fsync``ed) run in a
    worker thread: the loop goes on meanwhile."""
    threads: list[tuple[str, int]] = []

    def spy(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            threads.append((name, threading.get_ident()))
            time.sleep(0.2)  # a slow disk
            return fn(*args)

        return run

    monkeypatch.setattr(aio_interpreter, "read_file", spy("read", read_file))
    monkeypatch.setattr(aio_interpreter, "write_file", spy("write", write_file))
    path = str(tmp_path / "sub" / "offsets.json")

    def flow() -> Flow[tuple[bytes | None, bytes | None]]:
        before = yield ReadFile(path)
        yield WriteFile(path, b'{"offsetTable":{}}')
        after = yield ReadFile(path)
        return before, after

    (before, after), loop_thread, ticks = asyncio.run(_run_beside_a_ticker(flow()))
    assert before is None and after == b'{"offsetTable":{}}'
    assert Path(path).read_bytes() == after
    assert [name for name, _ in threads] == ["read", "write", "read"]
    assert all(ident != loop_thread for _, ident in threads)
    assert ticks >= 20  # the loop ran during the 0.6 s of file IO


def test_asyncio_offloaded_work_runs_off_the_loop_thread() -> None:
    """:class:`Offload` (compressing a large body) runs on a worker thread: the loop
    goes on meanwhile; the result comes back to the flow; the thread ends with the
    client's tasks."""
    ran_on: list[int] = []

    def work(seconds: float, value: str) -> str:
        ran_on.append(threading.get_ident())
        time.sleep(seconds)  # releases the GIL, as zlib does
        return value

    def flow() -> Flow[str]:
        value: str = yield Offload(work, (0.3, "done"))
        return value

    before = {t.ident for t in threading.enumerate()}
    result, loop_thread, ticks = asyncio.run(_run_beside_a_ticker(flow()))
    assert result == "done"
    assert ran_on and loop_thread not in ran_on
    assert ticks >= 10  # the loop ran during the 0.3 s of work
    deadline = time.monotonic() + 5
    while {t.ident for t in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.ident not in before]


def test_asyncio_short_offloaded_work_runs_on_the_loop_thread() -> None:
    """A ``short`` :class:`Offload` (a trace message's body) runs on the loop's own
    thread: no worker thread is started for it."""
    ran_on: list[int] = []

    def work(value: str) -> str:
        ran_on.append(threading.get_ident())
        return value

    def flow() -> Flow[str]:
        value: str = yield Offload(work, ("done",), short=True)
        return value

    async def main() -> tuple[str, int, Any]:
        client = RemotingClient()
        tasks = aio_interpreter.FlowTasks()
        try:
            result = await aio_interpreter.run_flow(client, flow(), tasks=tasks)
        finally:
            await tasks.close()
            await client.close()
        return result, threading.get_ident(), tasks._cpu

    result, loop_thread, pool = asyncio.run(main())
    assert result == "done" and ran_on == [loop_thread] and pool is None


def test_asyncio_work_offloaded_once_the_client_closed_runs_in_place() -> None:
    """A flow still running as its client closes (a last trace flush) may offload:
    the work runs on the loop's thread, in no new pool that nothing would end."""
    ran_on: list[int] = []

    def work() -> str:
        ran_on.append(threading.get_ident())
        return "done"

    def flow() -> Flow[str]:
        value: str = yield Offload(work)
        return value

    async def main() -> tuple[str, int, Any]:
        client = RemotingClient()
        tasks = aio_interpreter.FlowTasks()
        await tasks.close()
        try:
            result = await aio_interpreter.run_flow(client, flow(), tasks=tasks)
        finally:
            await client.close()
        return result, threading.get_ident(), tasks._cpu

    result, loop_thread, pool = asyncio.run(main())
    assert result == "done" and ran_on == [loop_thread] and pool is None


def test_the_asyncio_driver_does_not_import_the_threads_driver() -> None:
    import rocketmq_asyncio

    for path in Path(rocketmq_asyncio.__file__ or "").parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] == "rocketmq_sync" for n in names), path.name


# --------------------------------------- sync: subscribe under the consumer's core lock


def _waits_for_core_lock(consumer: Any, call: Callable[[], None]) -> None:
    """``call`` (from another thread) does not finish while the test holds the
    consumer's core lock (what its flows step under), and finishes once released."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    with consumer._core_lock:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        assert not done.wait(0.3), "ran without the core lock"
    assert done.wait(5.0)
    worker.join(5.0)


def test_sync_push_consumer_subscribe_and_unsubscribe_take_the_core_lock() -> None:
    consumer = rocketmq_sync.PushConsumer(NAMESRV, lambda msgs: None, group="g")
    _waits_for_core_lock(consumer, lambda: consumer.subscribe("T", "a || b"))
    assert "T" in consumer._consumer.subscriptions
    _waits_for_core_lock(consumer, lambda: consumer.unsubscribe("T"))
    assert "T" not in consumer._consumer.subscriptions
    consumer.close()


def test_sync_pull_consumer_subscribe_takes_the_core_lock() -> None:
    consumer = rocketmq_sync.PullConsumer(NAMESRV, group="g")
    _waits_for_core_lock(consumer, lambda: consumer.subscribe("T"))
    assert "T" in consumer._consumer.subscriptions
    consumer.close()
