"""Producer flush() and close() with sends in flight, and send timeouts, for each driver.

Against the real cluster; a stalled name server is a local listening socket
that never accepts nor answers (connections complete in its backlog).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import Message, RequestTimeoutError, SendStatus

from .backends import Backend

pytestmark = pytest.mark.broker


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: Any, backend: Backend) -> str:
    name = unique(f"FlushT_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    return name


@pytest.fixture
def silent_namesrv() -> Iterator[str]:
    """An address whose connections open but never get an answer."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_close_finishes_the_sends_in_flight(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    producer = backend.make("Producer", rocketmq_cluster.namesrv_addr, group=unique("pg"))
    producer.start()
    futures = [producer.send_async(Message(topic, b"%d" % i), 30.0) for i in range(500)]
    producer.close()
    results = [f.result(0) for f in futures]  # all done when close() returns
    assert all(r.status is SendStatus.SEND_OK for r in results)
    assert len({r.msg_id for r in results}) == 500


def test_flush_returns_once_every_send_is_done(
    rocketmq_cluster: Any, backend: Backend, topic: str
) -> None:
    with backend.open("Producer", rocketmq_cluster.namesrv_addr, group=unique("pg")) as producer:
        futures = [producer.send_async(Message(topic, b"%d" % i), 30.0) for i in range(300)]
        producer.flush()
        assert all(f.done() for f in futures)
        assert all(f.result(0).status is SendStatus.SEND_OK for f in futures)
        producer.flush(0.5)  # nothing in flight: returns at once


def test_flush_and_close_with_a_stalled_server_are_bounded(
    backend: Backend, silent_namesrv: str
) -> None:
    producer = backend.make("Producer", silent_namesrv, group=unique("pg"))
    producer.start()
    stuck = producer.send_async(Message("Anything", b"x"), 20.0)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="1 of 1 sends still in flight"):
        producer.flush(0.3)
    assert 0.25 <= time.monotonic() - start < 1.5
    assert not stuck.done()
    start = time.monotonic()
    producer.close(timeout=0.3)
    assert time.monotonic() - start < 3.0
    with pytest.raises(Exception) as failed:
        stuck.result(5)
    assert "timed out" in str(failed.value) or "clos" in str(failed.value)


def test_send_timeout_bounds_the_route_lookup(backend: Backend, silent_namesrv: str) -> None:
    # A name server request waits 3 s by default; the send has 0.5 s in all.
    with backend.open("Producer", silent_namesrv, group=unique("pg")) as p:
        start = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            p.send(Message("Anything", b"x"), timeout=0.5)
        assert time.monotonic() - start < 1.2


# ------------------------------------------------ the thread driver's futures, as Python's


@pytest.fixture(scope="module")
def sync_producer(rocketmq_cluster: Any) -> Iterator[Any]:
    import rocketmq_sync

    with rocketmq_sync.Producer(rocketmq_cluster.namesrv_addr, group=unique("pg")) as made:
        yield made


@pytest.fixture(scope="module")
def sync_topic(rocketmq_cluster: Any) -> str:
    import rocketmq_sync

    name = unique("FutureT")
    with rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    return name


def test_send_async_futures_work_with_concurrent_futures_wait(
    sync_producer: Any, sync_topic: str
) -> None:
    futures = [sync_producer.send_async(Message(sync_topic, b"%d" % i)) for i in range(50)]
    done, _ = concurrent.futures.wait(
        futures, timeout=30, return_when=concurrent.futures.FIRST_COMPLETED
    )
    assert done and all(f.result(0).status is SendStatus.SEND_OK for f in done)
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert done == set(futures) and not not_done
    assert all(f.result(0).status is SendStatus.SEND_OK for f in futures)


def test_send_async_futures_work_with_as_completed(sync_producer: Any, sync_topic: str) -> None:
    futures = [sync_producer.send_async(Message(sync_topic, b"%d" % i)) for i in range(50)]
    seen = [f.result(0).msg_id for f in concurrent.futures.as_completed(futures, timeout=30)]
    assert sorted(seen) == sorted(f.result(0).msg_id for f in futures)


def test_send_async_futures_can_be_awaited_with_asyncio_wrap_future(
    sync_producer: Any, sync_topic: str
) -> None:
    async def main() -> list[Any]:
        futures = [sync_producer.send_async(Message(sync_topic, b"%d" % i)) for i in range(20)]
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))

    results = asyncio.run(main())
    assert len({r.msg_id for r in results}) == 20
    assert all(r.status is SendStatus.SEND_OK for r in results)
