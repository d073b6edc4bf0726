"""A threaded worker pool: a push consumer whose handler does slow, blocking work
on several threads at once, fed by a producer sending from several threads.

    python examples/thread_pool_worker.py --namesrv 127.0.0.1:9876 --topic WorkerJobs \\
        --count 200 --workers 8 --work-ms 50

The producer (one ``rocketmq_sync.Producer``, shared: clients are thread-safe)
sends ``--count`` jobs from ``--producer-threads`` threads of a
``ThreadPoolExecutor``. The ``PushConsumer`` runs its handler on up to
``consume_thread_max`` (``--workers``) threads of its own: its worker pool
starts more threads while handlers block (sleeping here; a database or an HTTP
call in real life) and keeps a single thread for handlers that return at once.
So the handler simply does the work and returns.

Why not hand each message to a ``ThreadPoolExecutor`` of your own from the
handler? A handler that returns has consumed its messages: the consumer then
moves the group's offset past them. Handed off and not yet done, they would be
lost if the process stopped, and a failure could no longer be retried by
returning ``ConsumeResult.RETRY_LATER`` (or raising). Let the consumer's threads
do the work, and size them with ``consume_thread_max``.

Each job is counted once by its message id (a redelivery is counted as a
duplicate). The run ends when every job sent was processed: the consumer is
closed (running handlers finish, offsets are committed) and a summary is
printed, its last line a JSON object. Ctrl-C or SIGTERM stops early, as cleanly.
Exit status: 0 when every job was processed, 1 if ``--timeout`` passed first, 130
when stopped by a signal.

Create the topic first: ``admin.create_topic("WorkerJobs")`` with a
``rocketmq_sync.Admin(namesrv)`` (on every master of the cluster), or
``mqadmin updateTopic -c DefaultCluster -t WorkerJobs``. A topic the brokers make on
the first send (``autoCreateTopicEnable``) reaches a consumer started before it
only at its next route refresh, up to 30 s later.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from rocketmq_sync import ConsumeResult, Message, MessageExt, Producer, PushConsumer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--namesrv",
        default=os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876",
        help="name server(s), 'host:port;host:port' (default: $ROCKETMQ_NAMESRV or %(default)s)",
    )
    parser.add_argument("--topic", default="WorkerJobs")
    parser.add_argument("--group", default="thread-pool-workers", help="the consumer group")
    parser.add_argument("--count", type=int, default=200, help="jobs to send and process")
    parser.add_argument("--workers", type=int, default=8, help="consume threads at most")
    parser.add_argument("--producer-threads", type=int, default=4)
    parser.add_argument("--work-ms", type=float, default=50.0, help="how long each job takes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    return parser.parse_args(argv)


class Tally:
    """What the handlers did, from whichever thread runs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed: set[str] = set()
        self.duplicates = 0
        self.others = 0  # messages left by an earlier run, consumed and not counted
        self.per_thread: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.max_running = 0

    def started(self) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)

    def finished(self, msg_id: str) -> None:
        with self._lock:
            self.running -= 1
            if msg_id in self.processed:
                self.duplicates += 1
            else:
                self.processed.add(msg_id)
            self.per_thread[threading.current_thread().name] += 1

    def ignored(self) -> None:
        with self._lock:
            self.others += 1

    def count(self) -> int:
        with self._lock:
            return len(self.processed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:8]  # tells this run's jobs from those of earlier runs
    tally = Tally()
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def handle(messages: list[MessageExt]) -> ConsumeResult:
        for message in messages:
            if message.properties.get("run") != run_id:
                tally.ignored()  # left over by an earlier run: consumed, not counted
                continue
            tally.started()
            try:
                time.sleep(args.work_ms / 1000)  # the slow part: a database, an HTTP call...
            finally:
                tally.finished(message.msg_id)
        return ConsumeResult.SUCCESS  # an exception (or RETRY_LATER) would retry them later

    consumer = PushConsumer(
        args.namesrv,
        handle,
        group=args.group,
        consume_from_where="first",  # a new group starts with the topic's oldest message
        consume_thread_max=args.workers,
    )
    consumer.subscribe(args.topic)
    started = time.monotonic()
    sent = 0
    senders: set[str] = set()
    with consumer:
        with Producer(args.namesrv, group=f"{args.group}-producer") as producer:

            def send(i: int) -> bool:
                if stop.is_set():
                    return False
                body = json.dumps({"job": i, "run": run_id}).encode()
                message = Message(
                    args.topic, body, keys=[f"job-{run_id}-{i}"], properties={"run": run_id}
                )
                producer.send(message)
                senders.add(threading.current_thread().name)
                return True

            with ThreadPoolExecutor(args.producer_threads, thread_name_prefix="sender") as pool:
                sent = sum(pool.map(send, range(args.count)))
        print(f"sent {sent} jobs from {len(senders)} threads", flush=True)
        deadline = started + args.timeout
        shown, next_report = 0, time.monotonic() + 1.0
        while tally.count() < sent and not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.1)
            if time.monotonic() >= next_report and tally.count() != shown:
                shown, next_report = tally.count(), time.monotonic() + 1.0
                print(f"progress: {shown}/{sent} processed", flush=True)
        print(f"processed {tally.count()} jobs; closing the consumer", flush=True)
    # Closed: the handlers that were running have finished and offsets are committed.
    processed = tally.count()
    complete = processed == args.count and sent == args.count
    summary: dict[str, Any] = {
        "example": "thread_pool_worker",
        "topic": args.topic,
        "group": args.group,
        "sent": sent,
        "sender_threads": len(senders),
        "processed": processed,
        "duplicates": tally.duplicates,
        "earlier_runs_ignored": tally.others,
        "threads": len(tally.per_thread),
        "max_concurrent": tally.max_running,
        "per_thread": dict(sorted(tally.per_thread.items())),
        "seconds": round(time.monotonic() - started, 2),
        "complete": complete,
        "stopped_by": stopped_by[0] if stopped_by else None,
    }
    print(
        f"{processed} jobs processed by {len(tally.per_thread)} threads "
        f"(at most {tally.max_running} at once) in {summary['seconds']} s"
    )
    print(json.dumps(summary), flush=True)
    if complete:
        return 0
    return 130 if stopped_by else 1


if __name__ == "__main__":
    sys.exit(main())
