"""Orderly consumption: each order's steps handled in the order they happened.

    python examples/orderly_consumer.py --namesrv 127.0.0.1:9876 --topic OrderSteps --orders 20

The producer sends the steps of ``--orders`` orders (created, then paid, then
shipped), the orders' steps interleaved, each with its order id as the
``sharding_key``: one order, one queue, so a queue holds each of its orders'
steps in the order they were sent (the next step of an order is sent once the
previous one is stored).

The ``PushConsumer`` with ``orderly=True`` handles a queue's messages one
batch at a time, in queue order, holding a lock on the queue at its broker so
that no other member of the group handles it meanwhile. Different queues are
handled at once. The handler checks, per order, that every step comes after
its predecessor, and that no two handlers ever run for one order at once.

One step fails once (the "paid" step of the first order, a transient error):
the handler answers ``SUSPEND_CURRENT_QUEUE_A_MOMENT``, so its queue pauses
(``suspend_current_queue_time``, 1 s) and hands it the same message again,
``reconsume_times`` raised; the order's "shipped" step waits behind it. (A
concurrent consumer would send the failed message to the retry topic and go
on: "shipped" would be handled before "paid".)

asyncio (``rocketmq_asyncio``): the handler is a coroutine; the consumer awaits
it, at most one per queue at a time. The run ends once every step was handled;
the consumer is closed (offsets committed) and a summary printed, its last line
a JSON object. Exit status: 0 when every step was handled in order, 1 if not
or past ``--timeout``, 130 when stopped by Ctrl-C or SIGTERM.

Create the topic first: ``admin.create_topic("OrderSteps")`` with a
``rocketmq_sync.Admin(namesrv)`` (on every master of the cluster), or
``mqadmin updateTopic -c DefaultCluster -t OrderSteps``. A topic the brokers make on
the first send (``autoCreateTopicEnable``) reaches a consumer started before it
only at its next route refresh, up to 30 s later.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

from rocketmq_asyncio import ConsumeResult, Message, MessageExt, Producer, PushConsumer

STEPS = ("created", "paid", "shipped")


def read_event(message: MessageExt) -> dict[str, Any] | None:
    """The message's JSON object, or None for a body that is not one (a message this
    program did not send): skipped, never left to fail its handler over and over."""
    try:
        event = json.loads(message.body)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        print(f"skipped {message.msg_id}: its body is not a JSON object", flush=True)
        return None
    return event


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--namesrv",
        default=os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876",
        help="name server(s), 'host:port;host:port' (default: $ROCKETMQ_NAMESRV or %(default)s)",
    )
    parser.add_argument("--topic", default="OrderSteps")
    parser.add_argument("--group", default="orderly-shipping", help="the consumer group")
    parser.add_argument("--orders", type=int, default=20, help="orders to send steps for")
    parser.add_argument("--work-ms", type=float, default=5.0, help="how long each step takes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    return parser.parse_args(argv)


class StepChecker:
    """Per order: the steps as handled, and anything out of order. The handlers all
    run on the event loop, so no lock is needed."""

    def __init__(self, orders: list[str]) -> None:
        self.next_step = dict.fromkeys(orders, 0)  # index in STEPS of the step awaited
        self.handled: dict[str, list[str]] = {order: [] for order in orders}
        self.queues: dict[str, set[str]] = collections.defaultdict(set)
        self.violations: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.redelivered = 0  # a step handled again (at-least-once), not a violation
        self.done = asyncio.Event()

    def begin(self, order: str) -> None:
        if order in self.running:
            self.overlaps += 1
            self.violations.append(f"{order}: two handlers at once")
        self.running.add(order)

    def end(self, order: str) -> None:
        self.running.discard(order)

    def handled_step(self, order: str, step: str, queue: str) -> None:
        index = STEPS.index(step)
        expected = self.next_step[order]
        self.handled[order].append(step)
        self.queues[order].add(queue)
        if index == expected:
            self.next_step[order] = expected + 1
        elif index < expected:
            self.redelivered += 1
        else:
            self.violations.append(f"{order}: {step} before {STEPS[expected]}")
        if all(n == len(STEPS) for n in self.next_step.values()):
            self.done.set()

    def complete(self) -> int:
        return sum(n == len(STEPS) for n in self.next_step.values())


async def run(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    orders = [f"order-{run_id}-{i}" for i in range(args.orders)]
    checker = StepChecker(orders)
    flaky = (orders[0], "paid")  # fails on its first attempt
    attempts: list[dict[str, Any]] = []

    async def handle(messages: list[MessageExt]) -> ConsumeResult:
        # One message at a time by default (consume_message_batch_max_size=1); a
        # suspended batch comes back whole, so fail before handling any of it.
        for message in messages:
            event = read_event(message)
            if event is not None and (event.get("order"), event.get("step")) == flaky:
                attempt = {"step": event["step"], "reconsume_times": message.reconsume_times}
                attempts.append(attempt)
                if len(attempts) == 1:
                    print(f"{event['order']} {event['step']}: failed, queue paused", flush=True)
                    return ConsumeResult.SUSPEND_CURRENT_QUEUE_A_MOMENT
        for message in messages:
            event = read_event(message)
            if event is None or event.get("run") != run_id:
                continue  # not this run's
            checker.begin(event["order"])
            try:
                await asyncio.sleep(args.work_ms / 1000)  # the work: await a database...
            finally:
                checker.end(event["order"])
            queue = f"{message.broker_name}/{message.queue_id}"
            checker.handled_step(event["order"], event["step"], queue)
        return ConsumeResult.SUCCESS

    consumer = PushConsumer(
        args.namesrv, handle, group=args.group, orderly=True, consume_from_where="first"
    )
    consumer.subscribe(args.topic)
    started = time.monotonic()
    sent = 0
    async with consumer:
        async with Producer(args.namesrv, group=f"{args.group}-producer") as producer:

            async def send_steps(order: str) -> int:
                done = 0
                for step in STEPS:  # one order's steps one after another...
                    if stop.is_set():
                        break
                    body = json.dumps({"order": order, "step": step, "run": run_id}).encode()
                    message = Message(args.topic, body, tags=step, keys=[order])
                    await producer.send(message, sharding_key=order)
                    done += 1
                return done

            # ...and the orders side by side, so their steps interleave in the queues.
            sent = sum(await asyncio.gather(*(send_steps(order) for order in orders)))
        print(f"sent {sent} steps of {len(orders)} orders", flush=True)
        waiting = [asyncio.ensure_future(checker.done.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiting, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in waiting:
            task.cancel()
    # Closed: handlers finished, offsets committed.
    one_queue_each = all(len(queues) == 1 for queues in checker.queues.values())
    # Every step handled came after its predecessor (an order not complete yet, if
    # stopped early, is in order as far as it got).
    in_order = not checker.violations
    return {
        "example": "orderly_consumer",
        "topic": args.topic,
        "group": args.group,
        "orders": len(orders),
        "sent": sent,
        "complete_orders": checker.complete(),
        "handled": sum(len(steps) for steps in checker.handled.values()),
        "in_order": in_order,
        "violations": checker.violations,
        "overlaps": checker.overlaps,
        "redelivered": checker.redelivered,
        "one_queue_per_order": one_queue_each,
        "queues": {order: sorted(queues) for order, queues in checker.queues.items()},
        "flaky_attempts": attempts,
        "flaky_order_steps": checker.handled[orders[0]],
        "seconds": round(time.monotonic() - started, 2),
    }


async def main_async(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    stopped_by: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):

        def on_signal(sig: signal.Signals = sig) -> None:
            stopped_by.append(sig.name)
            stop.set()

        loop.add_signal_handler(sig, on_signal)
    summary = await run(args, stop)
    summary["stopped_by"] = stopped_by[0] if stopped_by else None
    ok = summary["complete_orders"] == summary["orders"] and summary["in_order"]
    print(
        f"{summary['complete_orders']}/{summary['orders']} orders handled, "
        f"in order: {summary['in_order']}, each order in one queue: "
        f"{summary['one_queue_per_order']}; the failed step was tried "
        f"{len(summary['flaky_attempts'])} times"
    )
    print(json.dumps(summary), flush=True)
    if ok:
        return 0
    return 130 if stopped_by else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
