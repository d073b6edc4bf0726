"""The launcher's brokers stay idle once the clients are done.

A broker that keeps a core busy with no client connected halves what this 2-core
machine gives every later test. The 5.5 brokers did after a single transaction:
their op batch thread spun for good once ``transactionOpBatchInterval`` had passed
after the last op record (see ``scripts/cluster.py``; the launcher's interval is now
the largest int, so a session never lives to see it pass). This starts a cluster of
its own (or takes the session's, when the launcher started it for this process
alone), ends transactions
on both brokers, closes the client and measures the brokers' CPU time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import rocketmq_sync
from rocketmq_proto import Message, TransactionState

from .cluster_fixture import launcher, running  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

#: Seconds of broker CPU time per second of wall time above which a broker is busy.
IDLE_LIMIT = 0.5


@pytest.fixture(scope="module")
def cluster(rocketmq_cluster: object) -> Iterator[launcher.LocalCluster]:
    """The session's cluster when the launcher started it for this process alone
    (its brokers' processes are known, and no other process's tests load them),
    else one of this module's own."""
    if isinstance(rocketmq_cluster, launcher.LocalCluster) and not os.environ.get(
        "PYTEST_XDIST_WORKER"
    ):
        yield rocketmq_cluster
        return
    yield from running(launcher.LocalCluster(), "local RocketMQ cluster")


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU time so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each broker's CPU seconds per second over ``seconds`` of wall time."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {
        name: round((cpu_seconds(pid) - before[name]) / seconds, 2) for name, pid in pids.items()
    }


def test_brokers_are_idle_after_transactions(cluster: launcher.LocalCluster) -> None:
    pids = {name: cluster._broker(name).pid for name in cluster.brokers}
    # A broker is busy for some 15 s after it starts (warming up): idle first.
    deadline = time.monotonic() + 90.0
    while True:
        before = busy(pids, 2.0)
        if all(value < IDLE_LIMIT for value in before.values()):
            break
        assert time.monotonic() < deadline, f"brokers never idle, even before: {before}"
    topic = "IdleTx"
    with rocketmq_sync.Admin(cluster.namesrv_addr) as admin:
        admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
    with rocketmq_sync.TransactionProducer(
        cluster.namesrv_addr, lambda message: TransactionState.COMMIT, group="idle_tx"
    ) as producer:
        stored = set()
        for _ in range(6):  # one queue per broker: sends go round both
            result, state = producer.send_in_transaction(
                Message(topic, b"tx"), lambda message, arg: TransactionState.COMMIT
            )
            assert state is TransactionState.COMMIT
            stored.add(result.message_queue.broker_name)
    assert stored == set(cluster.brokers)
    time.sleep(5.0)  # past the op records' writes and any batch interval of a few seconds
    use = busy(pids, 5.0)
    print(f"\nbroker CPU seconds per second after the transactions: {use}")
    assert all(value < IDLE_LIMIT for value in use.values()), (
        f"brokers busy with no client: {use} CPU seconds per second"
    )
