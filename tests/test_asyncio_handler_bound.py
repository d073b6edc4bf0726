"""The asyncio driver's bound on a push consumer's handler calls (at most
``consume_thread_max`` at once, served in arrival order), as the core reaches it
through ``Runtime.bounded_handler``."""

from __future__ import annotations

import asyncio
from typing import Any

from rocketmq_asyncio._shell import Runtime, _Slots
from rocketmq_proto import MessageExt
from rocketmq_proto.driver import HANDLER_NOT_RUN


def test_at_most_the_limit_run_at_once_and_the_others_in_arrival_order() -> None:
    async def main() -> None:
        running: list[int] = []
        most = 0
        started: list[int] = []
        gates = {i: asyncio.Event() for i in range(6)}

        async def handler(msgs: list[MessageExt]) -> None:
            nonlocal most
            (i,) = (m.queue_offset for m in msgs)
            started.append(i)
            running.append(i)
            most = max(most, len(running))
            await gates[i].wait()
            running.remove(i)

        bounded = Runtime(max_user_workers=2).bounded_handler(handler, lambda: False)
        calls = [
            asyncio.ensure_future(bounded([MessageExt("T", b"x", queue_offset=i)]))
            for i in range(6)
        ]
        await asyncio.sleep(0)
        assert started == [0, 1]
        for i in (1, 0, 2, 3, 4, 5):
            gates[i].set()
            await asyncio.sleep(0.01)
        await asyncio.gather(*calls)
        assert most == 2 and started == [0, 1, 2, 3, 4, 5]

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_its_slot_to_the_next_and_none_is_lost() -> None:
    async def main() -> None:
        release = asyncio.Event()
        ran: list[int] = []

        async def handler(msgs: list[MessageExt]) -> None:
            ran.append(msgs[0].queue_offset)
            await release.wait()

        bounded = Runtime(max_user_workers=1).bounded_handler(handler, lambda: False)

        def call(i: int) -> asyncio.Future[Any]:
            return asyncio.ensure_future(bounded([MessageExt("T", b"x", queue_offset=i)]))

        first, waiting, after = call(0), call(1), call(2)
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled while it waits: leaves the queue
        release.set()
        await asyncio.gather(first, waiting, after, return_exceptions=True)
        assert ran == [0, 2] and waiting.cancelled()

    asyncio.run(main())


def test_a_waiter_cancelled_once_handed_a_slot_passes_it_on() -> None:
    async def main() -> None:
        slots = _Slots(1)
        assert slots.take_now() and not slots.take_now()
        handed = asyncio.ensure_future(slots.take())
        nxt = asyncio.ensure_future(slots.take())
        await asyncio.sleep(0)
        slots.give_back()  # to ``handed``, which is cancelled before it resumes
        handed.cancel()
        await asyncio.gather(handed, nxt, return_exceptions=True)
        assert handed.cancelled() and nxt.result() is None  # passed on to the next
        slots.give_back()  # ``nxt`` is done with it: the slot is free again
        assert slots.take_now() and not slots.take_now()

    asyncio.run(main())


def test_a_call_that_waited_past_the_close_does_not_run() -> None:
    async def main() -> None:
        closed = False
        gate = asyncio.Event()

        async def handler(msgs: list[MessageExt]) -> None:
            await gate.wait()

        bounded = Runtime(max_user_workers=1).bounded_handler(handler, lambda: closed)
        first = asyncio.ensure_future(bounded([MessageExt("T", b"x")]))
        second = asyncio.ensure_future(bounded([MessageExt("T", b"y")]))
        await asyncio.sleep(0)
        closed = True
        gate.set()
        assert await first is None
        assert await second is HANDLER_NOT_RUN

    asyncio.run(main())
