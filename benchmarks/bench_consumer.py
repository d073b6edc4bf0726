"""Consumer drain rate against a real local cluster, for each backend.

    python benchmarks/bench_consumer.py [--count 100000] [--backends asyncio,sync,gevent]

Fills a topic (8 queues per broker) with ``count`` messages of 1 KiB, then for
each backend drains the backlog with a push consumer and with a pull consumer
(a fresh group each, consuming from the first offset) and prints messages per
second and client CPU time per message. Uses ROCKETMQ_NAMESRV or starts a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import cluster as launcher  # noqa: E402

import rocketmq_asyncio  # noqa: E402
import rocketmq_gevent  # noqa: E402
import rocketmq_sync  # noqa: E402
from rocketmq_proto import ConsumeResult, Message, MessageExt  # noqa: E402

BODY = bytes(range(256)) * 4


def fill(namesrv: str, topic: str, count: int) -> None:
    with rocketmq_sync.Producer(namesrv, group="bench-fill") as producer:
        window: list[Any] = []
        for _ in range(count // 32):
            window.append(producer.send_async(Message(topic, BODY)))
            batch = [Message(topic, BODY) for _ in range(31)]
            window.append(producer.send_async(batch[0]))
            producer.send_batch(batch[1:])
            if len(window) > 256:
                for f in window:
                    f.result(60)
                window.clear()
        for f in window:
            f.result(60)


def report(backend: str, kind: str, count: int, seconds: float, cpu: float) -> None:
    print(
        f"{backend:8s} {kind:5s} drained {count:,} in {seconds:6.1f} s: "
        f"{count / seconds:9,.0f} msgs/s  cpu {cpu / count * 1e6:6.1f} µs/msg",
        flush=True,
    )


def drain_blocking(module: Any, name: str, namesrv: str, topic: str, count: int) -> None:
    seen = 0
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> ConsumeResult:
        nonlocal seen
        with lock:
            seen += len(messages)
        return ConsumeResult.SUCCESS

    sleep = time.sleep if module is rocketmq_sync else __import__("gevent").sleep
    consumer = module.PushConsumer(
        namesrv, handler, group=f"bench-push-{uuid.uuid4().hex[:6]}", consume_from_where="first"
    )
    consumer.subscribe(topic)
    start, cpu = time.perf_counter(), time.process_time()
    with consumer:
        while seen < count:
            sleep(0.05)
        report(name, "push", seen, time.perf_counter() - start, time.process_time() - cpu)
    consumer = module.PullConsumer(
        namesrv, group=f"bench-pull-{uuid.uuid4().hex[:6]}", consume_from_where="first"
    )
    consumer.subscribe(topic)
    got = 0
    start, cpu = time.perf_counter(), time.process_time()
    with consumer:
        while got < count:
            got += len(consumer.poll(1.0))
        report(name, "pull", got, time.perf_counter() - start, time.process_time() - cpu)


async def drain_asyncio(namesrv: str, topic: str, count: int) -> None:
    seen = 0

    async def handler(messages: list[MessageExt]) -> ConsumeResult:
        nonlocal seen
        seen += len(messages)
        return ConsumeResult.SUCCESS

    consumer = rocketmq_asyncio.PushConsumer(
        namesrv, handler, group=f"bench-push-{uuid.uuid4().hex[:6]}", consume_from_where="first"
    )
    consumer.subscribe(topic)
    start, cpu = time.perf_counter(), time.process_time()
    async with consumer:
        while seen < count:
            await asyncio.sleep(0.05)
        report("asyncio", "push", seen, time.perf_counter() - start, time.process_time() - cpu)
    pull = rocketmq_asyncio.PullConsumer(
        namesrv, group=f"bench-pull-{uuid.uuid4().hex[:6]}", consume_from_where="first"
    )
    pull.subscribe(topic)
    got = 0
    start, cpu = time.perf_counter(), time.process_time()
    async with pull:
        while got < count:
            got += len(await pull.poll(1.0))
        report("asyncio", "pull", got, time.perf_counter() - start, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--backends", default="asyncio,sync,gevent")
    args = parser.parse_args()
    count = args.count - args.count % 32
    external = launcher.cluster_from_env()
    local = None if external is not None else launcher.LocalCluster()
    if local is not None:
        local.start()
    cluster: Any = external or local
    try:
        topic = f"Drain_{uuid.uuid4().hex[:8]}"
        with rocketmq_sync.Admin(cluster.namesrv_addr) as admin:
            admin.create_topic(topic, read_queue_nums=8, write_queue_nums=8)
        started = time.perf_counter()
        fill(cluster.namesrv_addr, topic, count)
        print(
            f"RocketMQ {cluster.version}: backlog of {count:,} x 1 KiB filled in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        for name in args.backends.split(","):
            if name == "asyncio":
                asyncio.run(drain_asyncio(cluster.namesrv_addr, topic, count))
            else:
                module = rocketmq_sync if name == "sync" else rocketmq_gevent
                drain_blocking(module, name, cluster.namesrv_addr, topic, count)
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
