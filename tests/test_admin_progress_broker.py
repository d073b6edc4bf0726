"""Admin's consumer progress and connections, in each driver, against what the
official ``mqadmin`` (``rocketmq-tools``, run from the launcher's jars) shows for
the same group on the same cluster."""

from __future__ import annotations

import subprocess
import threading
import uuid
from typing import Any

import pytest

from rocketmq_proto import Message, MessageExt, MessageQueue, RouteNotFoundError

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

WAIT = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def mqadmin(cluster: Any, *args: str) -> str:
    """What ``mqadmin`` prints (its stdout), run against ``cluster``."""
    version = getattr(cluster, "version", None) or launcher.DEFAULT_VERSION
    classpath = ":".join(str(jar) for jar in launcher.resolve_classpath(version))
    done = subprocess.run(
        [
            "java",
            "-cp",
            classpath,
            "org.apache.rocketmq.tools.command.MQAdminStartup",
            *args,
            "-n",
            cluster.namesrv_addr,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"mqadmin {args[0]} failed: {done.stderr[-2000:]}"
    return done.stdout


def off_hub(backend: Backend, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, which blocks (a subprocess), without stopping a gevent client:
    in gevent's thread pool, the hub running meanwhile (the broker asks the client
    things while mqadmin waits)."""
    if backend.name == "gevent":
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


def progress_rows(text: str) -> dict[MessageQueue, tuple[int, int, int]]:
    """``mqadmin consumerProgress``'s table: queue -> (broker offset, consumer offset, diff)."""
    rows = {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#Topic"))
    for line in lines[start + 1 :]:
        fields = line.split()
        if len(fields) < 6 or not fields[2].isdigit():
            break
        topic, broker, qid, broker_offset, consumer_offset, diff = fields[:6]
        rows[MessageQueue(topic, broker, int(qid))] = (
            int(broker_offset),
            int(consumer_offset),
            int(diff),
        )
    return rows


def test_consumer_progress_and_connections_match_mqadmin(
    rocketmq_cluster: Any, backend: Backend
) -> None:
    ns = rocketmq_cluster.namesrv_addr
    topic = unique(f"Progress_{backend.name}")
    group = unique("progress")
    lock = threading.Lock()
    got: list[bytes] = []

    def handler(messages: list[MessageExt]) -> None:
        with lock:
            got.extend(m.body for m in messages)

    with backend.open("Admin", ns) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        backend.wait_for(lambda: admin.topic_route(topic).queue_datas, 20, "the route")
        with pytest.raises(RouteNotFoundError, match="is known to no broker"):
            admin.consumer_progress(group)
        with backend.open("Producer", ns, group=unique("progress_p")) as producer:
            for i in range(10):
                producer.send(Message(topic, b"consumed-%d" % i))
            consumer = backend.make(
                "PushConsumer", ns, handler, group=group, consume_from_where="first"
            )
            consumer.subscribe(topic)
            with consumer:
                backend.wait_for(lambda: len(set(got)) >= 10, WAIT, "the messages")
                connections = admin.consumer_connections(group)
                shown = off_hub(
                    backend, mqadmin, rocketmq_cluster, "consumerConnection", "-g", group
                )
                client_id = connections.connections[0].client_id
                running = admin.consumer_running_info(group, client_id)
                held = {q for q in consumer.assigned_queues() if q.topic == topic}
                status = off_hub(
                    backend,
                    mqadmin,
                    rocketmq_cluster,
                    "consumerStatus",
                    "-g",
                    group,
                    "-i",
                    client_id,
                )
            # The consumer is gone: these stay behind, the lag.
            for i in range(3):
                producer.send(Message(topic, b"behind-%d" % i))
        stats = admin.consumer_progress(group, topic)
        everything = admin.consumer_progress(group)
    # Connections: this client, as the broker and mqadmin know it.
    (connection,) = connections.connections
    assert connection.language == "PYTHON" and connection.client_id in shown
    assert connection.client_addr.split(":")[0] in shown
    assert connections.subscriptions[topic] == "*"
    assert connections.message_model == "CLUSTERING"
    assert connections.consume_from_where == "CONSUME_FROM_FIRST_OFFSET"
    # Running info: what the consumer says of itself, relayed by a broker; mqadmin
    # reads the same answer.
    assert running.subscriptions[topic] == "*"
    assert {q for q in running.queues if q.topic == topic} == held and held
    assert all(info.commit_offset >= 0 for info in running.queues.values())
    assert running.properties and topic in status
    # Progress: every queue of the topic, as mqadmin shows it; the lag is what was
    # sent after the consumer closed.
    rows = progress_rows(mqadmin(rocketmq_cluster, "consumerProgress", "-g", group))
    mine = {mq: (w.broker_offset, w.consumer_offset, w.lag) for mq, w in stats.offset_table.items()}
    assert mine == {mq: row for mq, row in rows.items() if mq.topic == topic}
    assert len(mine) == 2 * len(rocketmq_cluster.brokers) and stats.total_lag == 3
    assert set(stats.offset_table) < set(everything.offset_table)  # the retry topic's too
    assert all(w.last_timestamp > 0 for w in stats.offset_table.values() if w.consumer_offset)
