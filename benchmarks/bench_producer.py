"""Producer throughput and latency against a real local cluster, for each backend.

    python benchmarks/bench_producer.py [--count N] [--backends asyncio,sync,gevent]

Uses the cluster named by ROCKETMQ_NAMESRV, or starts one (scripts/cluster.py).
Prints, for 1 KiB bodies: sequential sync sends (p50/p99 latency, msgs/s) and
pipelined sends with 1, 16 and 128 in flight (msgs/s), plus client CPU time per
message.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import cluster as launcher  # noqa: E402

import rocketmq_asyncio  # noqa: E402
import rocketmq_gevent  # noqa: E402
import rocketmq_sync  # noqa: E402
from rocketmq_proto import Message  # noqa: E402

BODY = bytes(range(256)) * 4
IN_FLIGHT = (1, 16, 128)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Figures:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.rows: list[str] = []

    def add(self, what: str, count: int, seconds: float, cpu: float, extra: str = "") -> None:
        self.rows.append(
            f"{self.backend:8s} {what:22s} {count / seconds:9,.0f} msgs/s  "
            f"cpu {cpu / count * 1e6:6.1f} µs/msg {extra}"
        )


def _cpu() -> float:
    return time.process_time()


async def bench_asyncio(namesrv: str, topic: str, count: int) -> Figures:
    figures = Figures("asyncio")
    async with rocketmq_asyncio.Producer(namesrv, group="bench-asyncio") as producer:
        for _ in range(50):  # warm up: routes, connections
            await producer.send(Message(topic, BODY))
        latencies = []
        start, cpu = time.perf_counter(), _cpu()
        for _ in range(count):
            t0 = time.perf_counter()
            await producer.send(Message(topic, BODY))
            latencies.append(time.perf_counter() - t0)
        figures.add(
            "sequential",
            count,
            time.perf_counter() - start,
            _cpu() - cpu,
            f"p50 {percentile(latencies, 0.5) * 1e3:.2f} ms p99 "
            f"{percentile(latencies, 0.99) * 1e3:.2f} ms",
        )
        for window in IN_FLIGHT:
            semaphore = asyncio.Semaphore(window)

            async def one(semaphore: asyncio.Semaphore = semaphore) -> None:
                async with semaphore:
                    await producer.send(Message(topic, BODY))

            total = count * 2
            start, cpu = time.perf_counter(), _cpu()
            await asyncio.gather(*(one() for _ in range(total)))
            figures.add(f"pipelined x{window}", total, time.perf_counter() - start, _cpu() - cpu)
    return figures


def bench_blocking(module: Any, name: str, namesrv: str, topic: str, count: int) -> Figures:
    figures = Figures(name)
    with module.Producer(namesrv, group=f"bench-{name}") as producer:
        for _ in range(50):
            producer.send(Message(topic, BODY))
        latencies = []
        start, cpu = time.perf_counter(), _cpu()
        for _ in range(count):
            t0 = time.perf_counter()
            producer.send(Message(topic, BODY))
            latencies.append(time.perf_counter() - t0)
        figures.add(
            "sequential",
            count,
            time.perf_counter() - start,
            _cpu() - cpu,
            f"p50 {percentile(latencies, 0.5) * 1e3:.2f} ms p99 "
            f"{percentile(latencies, 0.99) * 1e3:.2f} ms",
        )
        for window in IN_FLIGHT:
            total = count * 2
            start, cpu = time.perf_counter(), _cpu()
            _pipelined(producer, topic, total, window, module is rocketmq_gevent)
            figures.add(f"pipelined x{window}", total, time.perf_counter() - start, _cpu() - cpu)
    return figures


def _pipelined(producer: Any, topic: str, total: int, window: int, gevent_mode: bool) -> None:
    """Keep ``window`` sends in flight: a new one starts when one completes."""
    if gevent_mode:
        from gevent.event import Event
        from gevent.lock import BoundedSemaphore as Slots
    else:
        Event = threading.Event  # type: ignore[assignment]
        Slots = threading.BoundedSemaphore  # type: ignore[assignment]
    slots = Slots(window)
    done = Event()
    remaining = [total]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def finished(future: Any) -> None:
        if future.exception() is not None:
            errors.append(future.exception())
        slots.release()
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    for _ in range(total):
        slots.acquire()
        producer.send_async(Message(topic, BODY)).add_done_callback(finished)
    done.wait(120)
    if errors:
        raise errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--backends", default="asyncio,sync,gevent")
    args = parser.parse_args()
    external = launcher.cluster_from_env()
    local = None if external is not None else launcher.LocalCluster()
    if local is not None:
        local.start()
    cluster: launcher.ClusterInfo = external or local  # type: ignore[assignment]
    try:
        topic = f"Bench_{uuid.uuid4().hex[:8]}"
        with rocketmq_sync.Admin(cluster.namesrv_addr) as admin:
            admin.create_topic(topic, read_queue_nums=8, write_queue_nums=8)
        print(
            f"RocketMQ {cluster.version} at {cluster.namesrv_addr}; "
            f"1 KiB bodies, count {args.count}"
        )
        runs: dict[str, Callable[[], Figures]] = {
            "asyncio": lambda: asyncio.run(bench_asyncio(cluster.namesrv_addr, topic, args.count)),
            "sync": lambda: bench_blocking(
                rocketmq_sync, "sync", cluster.namesrv_addr, topic, args.count
            ),
            "gevent": lambda: bench_blocking(
                rocketmq_gevent, "gevent", cluster.namesrv_addr, topic, args.count
            ),
        }
        for name in args.backends.split(","):
            for row in runs[name]().rows:
                print(row, flush=True)
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
