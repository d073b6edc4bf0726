"""The asyncio driver on uvloop's event loop, against the real cluster.

The docs say uvloop works too; uvloop's transports are not asyncio's classes
(the driver looks for their methods, not their types), so it is run here: sends
one at a time, pipelined and in a batch, a push consumer receiving each of them,
and a request that times out.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt

from .cluster_fixture import admin_addr

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows"),
]


def test_producer_and_push_consumer_on_uvloop(rocketmq_cluster: Any) -> None:
    import uvloop  # installed with the dev extra: a CI without it fails here

    import rocketmq_asyncio

    topic = f"Uvloop_{uuid.uuid4().hex[:10]}"
    namesrv = rocketmq_cluster.namesrv_addr

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert type(loop).__module__.startswith("uvloop"), type(loop)
        async with rocketmq_asyncio.Admin(admin_addr(rocketmq_cluster)) as admin:
            await admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        sent: dict[bytes, str] = {}
        async with rocketmq_asyncio.Producer(namesrv, group=f"uvp_{uuid.uuid4().hex[:8]}") as p:
            for i in range(10):
                body = f"one {i}".encode()
                sent[body] = (await p.send(Message(topic, body))).msg_id
            bodies = [f"pipelined {i}".encode() for i in range(100)]
            results = await asyncio.gather(*(p.send_async(Message(topic, b)) for b in bodies))
            sent.update((b, r.msg_id) for b, r in zip(bodies, results, strict=True))
            batch = [Message(topic, f"batch {i}".encode()) for i in range(32)]
            batch_result = await p.send_batch(batch)
            ids = batch_result.msg_id.split(",")
            sent.update((m.body, uid) for m, uid in zip(batch, ids, strict=True))
            # A request that times out on this loop fails as on asyncio's.
            with pytest.raises(rocketmq_asyncio.RocketMQError):
                await p.send(Message(topic, b"late"), timeout=0.000_001)
        assert len(sent) == 142

        received: dict[bytes, str] = {}
        all_in = asyncio.Event()

        async def handle(messages: list[MessageExt]) -> None:
            for message in messages:
                received[message.body] = message.msg_id
            if set(sent) <= set(received):
                all_in.set()

        consumer = rocketmq_asyncio.PushConsumer(
            namesrv, handle, group=f"uvc_{uuid.uuid4().hex[:8]}", consume_from_where="first"
        )
        consumer.subscribe(topic)
        async with consumer:
            await asyncio.wait_for(all_in.wait(), 90)
        assert {body: received[body] for body in sent} == sent

    uvloop.run(main())
