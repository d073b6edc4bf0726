"""One member of a POP-mode consumer group, for the multi-process drain test.

    python pop_drain.py DRIVER NAMESRV TOPIC GROUP OUT_FILE IDLE_SECONDS DEADLINE_SECONDS

Runs the PushConsumer of DRIVER (``asyncio``, ``gevent`` or ``sync``) with
``consume_mode="pop"`` and writes the body of every message it handles to
OUT_FILE, one per line. Ends once it has handled something and then nothing
more for IDLE_SECONDS, or after DEADLINE_SECONDS in all; prints how many it
handled and its driver's module.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

DRIVERS = ("asyncio", "gevent", "sync")


class Member:
    """What the handler wrote, and when it last handled something."""

    def __init__(self, sink: TextIO) -> None:
        self.sink = sink
        self.lock = threading.Lock()
        self.handled = 0
        self.last = 0.0

    def handle(self, messages: list[Any]) -> None:
        with self.lock:
            for message in messages:
                self.sink.write(message.body.decode() + "\n")
            self.handled += len(messages)
            self.last = time.monotonic()

    def done(self, began: float, idle: float, limit: float) -> bool:
        with self.lock:
            if self.handled and time.monotonic() - self.last > idle:
                return True
        return time.monotonic() - began >= limit


def options(group: str) -> dict[str, Any]:
    return {
        "group": group,
        "consume_mode": "pop",
        "consume_from_where": "first",
        "consume_message_batch_max_size": 16,
    }


def run_blocking(module: Any, sleep: Any, args: list[str], member: Member) -> None:
    namesrv, topic, group, idle, limit = args
    consumer = module.PushConsumer(namesrv, member.handle, **options(group))
    consumer.subscribe(topic)
    began = time.monotonic()
    with consumer:
        while not member.done(began, float(idle), float(limit)):
            sleep(0.2)


def run_asyncio(args: list[str], member: Member) -> None:
    import asyncio

    import rocketmq_asyncio

    namesrv, topic, group, idle, limit = args

    async def main() -> None:
        consumer = rocketmq_asyncio.PushConsumer(namesrv, member.handle, **options(group))
        consumer.subscribe(topic)
        began = time.monotonic()
        async with consumer:
            while not member.done(began, float(idle), float(limit)):
                await asyncio.sleep(0.2)

    asyncio.run(main())


def main() -> int:
    if len(sys.argv) != 8 or sys.argv[1] not in DRIVERS:
        print(__doc__, file=sys.stderr)
        print(f"DRIVER must be one of {', '.join(DRIVERS)}", file=sys.stderr)
        return 2
    driver, namesrv, topic, group, out, idle, limit = sys.argv[1:8]
    args = [namesrv, topic, group, idle, limit]
    with open(out, "w", encoding="utf-8") as sink:
        member = Member(sink)
        if driver == "asyncio":
            run_asyncio(args, member)
            module = "rocketmq_asyncio"
        elif driver == "gevent":
            import gevent

            import rocketmq_gevent

            run_blocking(rocketmq_gevent, gevent.sleep, args, member)
            module = rocketmq_gevent.__name__
        else:
            import rocketmq_sync

            run_blocking(rocketmq_sync, time.sleep, args, member)
            module = rocketmq_sync.__name__
        with member.lock:
            sink.flush()
    print(member.handled, module, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
