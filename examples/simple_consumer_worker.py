"""A POP worker: receive, process, ack; a job that fails is not acked and comes back.

    python examples/simple_consumer_worker.py --namesrv 127.0.0.1:9876 --topic Jobs \\
        --count 20 --invisible 10

RocketMQ 5.x brokers only (POP). The script sends ``--count`` jobs, then a
``SimpleConsumer`` works through them: each received message stays hidden
from the group's other receives for its invisible duration (``--invisible``
seconds); the worker processes it and acks it, and an acked message is never
delivered again. One job (``--fail-job``) fails on its first delivery: the
worker does not ack it, and once its invisible duration is over (plus the
few seconds the broker takes to revive it) the broker delivers it again, its
``reconsume_times`` raised; then it succeeds. Any number
of workers of one group may run at once: the brokers share every queue out
between their receives, message by message, without rebalancing.

Why asyncio (``rocketmq_asyncio``)? A POP worker spends its time waiting, on
the long-polling receive and on the I/O of its jobs; one event loop does both
without threads, and ``async for message in consumer`` reads as the worker loop
it is (it receives up to 16 messages at a time, each hidden for the consumer's
``invisible_duration``). Keep that duration longer than a batch takes to
process, or call ``change_invisible_duration`` for a long job: a message not
acked in time goes to another receive. With ``rocketmq_sync`` the loop is the
same, ``for message in consumer``, on a thread.

The run ends once every job was acked; a summary is printed, its last line a
JSON object. Ctrl-C or SIGTERM stops the worker at once: the job being
processed is not acked, so it comes back to a worker after its invisible
duration (at least once, never lost). Exit status: 0 when every job was acked,
1 past ``--timeout``, 130 when stopped by a signal.

Create the topic first: ``admin.create_topic("Jobs")`` with a
``rocketmq_sync.Admin(namesrv)`` (on every master of the cluster), or
``mqadmin updateTopic -c DefaultCluster -t Jobs``. A topic the brokers make on
the first send (``autoCreateTopicEnable``) reaches a consumer started before it
only at its next route refresh, up to 30 s later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

from rocketmq_asyncio import Message, MessageExt, Producer, RocketMQError, SimpleConsumer


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


class JobFailed(Exception):
    """A job's processing failed (a transient error: worth another attempt)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--namesrv",
        default=os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876",
        help="name server(s), 'host:port;host:port' (default: $ROCKETMQ_NAMESRV or %(default)s)",
    )
    parser.add_argument("--topic", default="Jobs")
    parser.add_argument("--group", default="pop-workers", help="the consumer group")
    parser.add_argument("--count", type=int, default=20, help="jobs to send and ack")
    parser.add_argument("--fail-job", type=int, default=0, help="the job failing once")
    parser.add_argument("--invisible", type=float, default=10.0, help="invisible duration, s")
    parser.add_argument("--work-ms", type=float, default=20.0, help="how long each job takes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    return parser.parse_args(argv)


class Worker:
    def __init__(self, args: argparse.Namespace, run_id: str) -> None:
        self.args = args
        self.run_id = run_id
        self.acked: dict[int, int] = {}  # job -> reconsume_times when acked
        self.failures: list[dict[str, Any]] = []
        self.redeliveries: list[dict[str, Any]] = []
        self.failed_at: dict[str, float] = {}  # msg_id -> when its failed attempt ended
        self.duplicates = 0
        self.sent = 0

    async def process(self, job: int, message: MessageExt) -> None:
        await asyncio.sleep(self.args.work_ms / 1000)  # the work: an HTTP call, a query...
        if job == self.args.fail_job and message.reconsume_times == 0:
            raise JobFailed("the payment service timed out")

    async def work(self, consumer: SimpleConsumer) -> None:
        """The worker loop: until every job of this run is acked."""
        async for message in consumer:
            event = read_event(message)
            if event is None or event.get("run") != self.run_id:
                await consumer.ack(message)  # left by an earlier run: drop it
                continue
            job = event["job"]
            if message.msg_id in self.failed_at:
                back_after = time.monotonic() - self.failed_at.pop(message.msg_id)
                self.redeliveries.append(
                    {
                        "job": job,
                        "msg_id": message.msg_id,
                        "reconsume_times": message.reconsume_times,
                        "back_after_s": round(back_after, 2),
                    }
                )
                print(
                    f"job {job} is back after {back_after:.1f} s, "
                    f"reconsume_times={message.reconsume_times}",
                    flush=True,
                )
            try:
                await self.process(job, message)
            except JobFailed as exc:
                # Not acked: the broker delivers it again once its invisible time is over.
                self.failed_at[message.msg_id] = time.monotonic()
                failure = {"job": job, "msg_id": message.msg_id, "error": str(exc)}
                self.failures.append({**failure, "reconsume_times": message.reconsume_times})
                print(f"job {job} failed ({exc}): not acked", flush=True)
                continue
            try:
                await consumer.ack(message)
            except RocketMQError as exc:  # e.g. acked too late: it will come again
                print(f"job {job}: ack failed ({exc}), it will be delivered again", flush=True)
                continue
            if job in self.acked:
                self.duplicates += 1
            self.acked.setdefault(job, message.reconsume_times)
            if len(self.acked) == self.args.count:
                return


async def send_jobs(args: argparse.Namespace, worker: Worker) -> None:
    async with Producer(args.namesrv, group=f"{args.group}-producer") as producer:
        for i in range(args.count):
            body = json.dumps({"job": i, "run": worker.run_id}).encode()
            await producer.send(Message(args.topic, body, keys=[f"job-{worker.run_id}-{i}"]))
            worker.sent += 1
    print(f"sent {worker.sent} jobs", flush=True)


async def send_and_work(args: argparse.Namespace, worker: Worker) -> None:
    await send_jobs(args, worker)
    consumer = SimpleConsumer(
        args.namesrv,
        group=args.group,
        consume_from_where="first",  # a new group starts with the topic's oldest message
        invisible_duration=args.invisible,
        await_duration=5.0,  # each receive waits up to 5 s for a message
    )
    consumer.subscribe(args.topic)
    async with consumer:  # closed however the worker ends, cancelled included
        await worker.work(consumer)


async def main_async(args: argparse.Namespace) -> int:
    worker = Worker(args, run_id=uuid.uuid4().hex[:8])
    started = time.monotonic()
    job = asyncio.create_task(send_and_work(args, worker))
    stopped_by: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):

        def on_signal(sig: signal.Signals = sig) -> None:
            stopped_by.append(sig.name)
            job.cancel()  # the job in hand is not acked: it comes back to a worker later

        loop.add_signal_handler(sig, on_signal)
    await asyncio.wait({job}, timeout=args.timeout)
    job.cancel()  # past the timeout (a job that ended already is not affected)
    with contextlib.suppress(asyncio.CancelledError):
        await job
    summary = {
        "example": "simple_consumer_worker",
        "topic": args.topic,
        "group": args.group,
        "sent": worker.sent,
        "acked": len(worker.acked),
        "duplicates": worker.duplicates,
        "failures": worker.failures,
        "redeliveries": worker.redeliveries,
        "invisible_s": args.invisible,
        "seconds": round(time.monotonic() - started, 2),
        "stopped_by": stopped_by[0] if stopped_by else None,
    }
    print(
        f"{summary['acked']}/{summary['sent']} jobs acked; {len(worker.failures)} failed "
        f"attempt(s), {len(worker.redeliveries)} redelivery(ies)"
    )
    print(json.dumps(summary), flush=True)
    if len(worker.acked) == args.count:
        return 0
    return 130 if stopped_by else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
