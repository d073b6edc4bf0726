"""The main job: start a local RocketMQ cluster, send and receive with each driver.

    bash scripts/main.sh            (or: python examples/main_job.py)

Starts a real name server and two brokers from Maven Central (see
scripts/cluster.py), or uses the cluster named by ROCKETMQ_NAMESRV, then with
asyncio, threads and gevent in turn: sends messages (single, pipelined, batch),
receives every one with a push consumer of the same driver (a tag filter picks
that driver's messages), and prints what happened.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import cluster as launcher  # noqa: E402

import rocketmq_asyncio  # noqa: E402
import rocketmq_gevent  # noqa: E402
import rocketmq_sync  # noqa: E402
from rocketmq_proto import ConsumeResult, Message, MessageExt, SendResult  # noqa: E402

COUNT = 20
WAIT = 60.0  # seconds to wait for a consumer to receive everything


def messages(topic: str, backend: str) -> list[Message]:
    return [
        Message(
            topic,
            f"hello {i} from {backend}".encode(),
            tags=f"demo-{backend}",
            keys=[f"{backend}-{i}"],
            properties={"backend": backend},
        )
        for i in range(COUNT)
    ]


def report(backend: str, sent: list[SendResult], received: list[MessageExt], took: float) -> None:
    ok = sorted(m.msg_id for m in received) == sorted(r.msg_id for r in sent)
    queues = sorted({f"{r.message_queue.broker_name}/{r.message_queue.queue_id}" for r in sent})
    print(
        f"{backend:8s} sent {len(sent)} and received {len(received)} messages "
        f"({'all match' if ok else 'MISMATCH'}) in {took:.2f} s over queues {', '.join(queues)}"
    )
    sample = received[0]
    print(
        f"         e.g. {sample.msg_id} body={sample.body!r} tags={sample.tags} "
        f"keys={sample.keys} stored on {sample.store_host} at queue offset {sample.queue_offset}"
    )
    if not ok:
        raise SystemExit(f"{backend}: what was received differs from what was sent")


async def run_asyncio(namesrv: str, topic: str) -> None:
    start = time.monotonic()
    batch = messages(topic, "asyncio")
    async with rocketmq_asyncio.Producer(namesrv, group="main-job-asyncio") as producer:
        sent = [await producer.send(batch[0])]
        sent += await asyncio.gather(*(producer.send_async(m) for m in batch[1:10]))
        result = await producer.send_batch(batch[10:])
        sent += _split_batch(result)
    received: list[MessageExt] = []

    async def handle(msgs: list[MessageExt]) -> ConsumeResult:
        received.extend(msgs)
        return ConsumeResult.SUCCESS

    consumer = rocketmq_asyncio.PushConsumer(
        namesrv, handle, group="main-job-asyncio", consume_from_where="first"
    )
    consumer.subscribe(topic, "demo-asyncio")
    async with consumer:
        deadline = time.monotonic() + WAIT
        while len(received) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    report("asyncio", sent, received, time.monotonic() - start)


def run_blocking(module: object, name: str, namesrv: str, topic: str) -> None:
    start = time.monotonic()
    batch = messages(topic, name)
    producer_cls = module.Producer  # type: ignore[attr-defined]
    consumer_cls = module.PushConsumer  # type: ignore[attr-defined]
    with producer_cls(namesrv, group=f"main-job-{name}") as producer:
        sent = [producer.send(batch[0])]
        futures = [producer.send_async(m) for m in batch[1:10]]
        sent += [f.result() for f in futures]
        sent += _split_batch(producer.send_batch(batch[10:]))
    received: list[MessageExt] = []
    lock = threading.Lock()

    def handle(msgs: list[MessageExt]) -> ConsumeResult:
        with lock:
            received.extend(msgs)
        return ConsumeResult.SUCCESS

    sleep = time.sleep if name == "sync" else __import__("gevent").sleep
    consumer = consumer_cls(namesrv, handle, group=f"main-job-{name}", consume_from_where="first")
    consumer.subscribe(topic, f"demo-{name}")
    with consumer:
        deadline = time.monotonic() + WAIT
        while len(received) < len(sent) and time.monotonic() < deadline:
            sleep(0.05)
    report(name, sent, received, time.monotonic() - start)


def _split_batch(result: SendResult) -> list[SendResult]:
    """One result per member of a batch (ids and offset ids are comma-joined)."""
    return [
        SendResult(result.status, uid, offset_id, result.message_queue, result.queue_offset + i)
        for i, (uid, offset_id) in enumerate(
            zip(result.msg_id.split(","), result.offset_msg_id.split(","), strict=True)
        )
    ]


def main() -> None:
    external = launcher.cluster_from_env()
    local = None
    if external is None:
        print("starting a local RocketMQ cluster (first run downloads it through Maven)...")
        local = launcher.LocalCluster()
        local.start()
        cluster: launcher.ClusterInfo = local
    else:
        cluster = external
    try:
        print(
            f"RocketMQ {cluster.version}: name server {cluster.namesrv_addr}, "
            f"brokers {cluster.brokers}"
        )
        topic = f"MainJob_{uuid.uuid4().hex[:8]}"
        with rocketmq_sync.Admin(cluster.namesrv_addr) as admin:
            admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        print(f"created topic {topic} on both brokers")
        asyncio.run(run_asyncio(cluster.namesrv_addr, topic))
        run_blocking(rocketmq_sync, "sync", cluster.namesrv_addr, topic)
        run_blocking(rocketmq_gevent, "gevent", cluster.namesrv_addr, topic)
        print("done: every backend sent and received every message")
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
