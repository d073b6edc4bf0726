"""Admin's day-to-day operations in each driver, against what the official
``mqadmin`` shows and does on the same cluster: topic list and stats, cluster
list, broker config, message lookups by key, id and queue offset, offsets
cloned, and a message handed to a consumer directly.

``mqadmin`` starts a JVM per command (seconds each), so its commands run once
for the module, side by side, in the ``shared`` fixture; each driver's test
compares its own answers with theirs."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync
from rocketmq_proto import (
    BrokerError,
    Message,
    MessageExt,
    QueryNotFoundError,
    RouteNotFoundError,
    SendResult,
)
from rocketmq_proto.wire.errors import SubscriptionGroupNotExistError

from .backends import Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

WAIT = 60.0
KEY = "admin-ops-key"
COUNT = 6
#: A broker setting that changes nothing on a cluster without slaves.
HARMLESS = "slaveReadEnable"


BATCH = Path(__file__).resolve().parent / "programs" / "MqadminBatch.java"


def mqadmin_batch(cluster: Any, commands: dict[str, list[str]]) -> dict[str, str]:
    """What each ``mqadmin`` command printed, all run in one JVM
    (``tests/programs/MqadminBatch.java``), in order."""
    version = getattr(cluster, "version", None) or launcher.DEFAULT_VERSION
    classpath = ":".join(str(jar) for jar in launcher.resolve_classpath(version))
    script = "".join("\t".join([name, *args]) + "\n" for name, args in commands.items())
    done = subprocess.run(
        ["java", "-cp", classpath, str(BATCH), cluster.namesrv_addr],
        input=script,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"mqadmin batch failed: {done.stderr[-2000:]}"
    out = {}
    for name in commands:
        found = re.search(f"=====BEGIN {name}=====\n(.*?)=====END {name}=====", done.stdout, re.S)
        assert found, f"mqadmin {name} printed nothing: {done.stderr[-2000:]}"
        out[name] = found.group(1)
    return out


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def java_time(ms: int) -> str:
    """A timestamp as ``mqadmin`` prints it (``yyyy-MM-dd HH:mm:ss,SSS``, local time)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) + f",{ms % 1000:03d}"


def out_lines(text: str) -> list[str]:
    """``mqadmin``'s own output lines (the logging set-up's chatter dropped)."""
    return [line for line in text.splitlines() if "|-" not in line and line.strip()]


class Recorder:
    """A handler that keeps each body it is handed, with a count per body."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[bytes, int] = {}

    def __call__(self, messages: list[MessageExt]) -> None:
        with self.lock:
            for m in messages:
                self.seen[m.body] = self.seen.get(m.body, 0) + 1

    def count(self, body: bytes) -> int:
        with self.lock:
            return self.seen.get(body, 0)


@dataclass
class Shared:
    namesrv: str
    topic: str
    sent: list[SendResult]
    #: A group that consumed every message (its offsets committed), then closed.
    src_group: str
    #: The group ``mqadmin cloneGroupOffset`` cloned ``src_group`` into.
    java_clone: str
    broker_addr: str
    #: ``HARMLESS``'s value before, and while mqadmin read the config.
    original: str
    flipped: str
    out: dict[str, str] = field(default_factory=dict)
    direct_client: str = ""
    direct_seen: int = 0


def consume_all(ns: str, topic: str, group: str, *, keep: bool = False) -> Any:
    """A sync push consumer of ``group`` that consumed the whole topic; closed unless ``keep``."""
    recorder = Recorder()
    consumer = rocketmq_sync.PushConsumer(ns, recorder, group=group, consume_from_where="first")
    consumer.subscribe(topic)
    consumer.start()
    deadline = time.monotonic() + WAIT
    while len(recorder.seen) < COUNT:
        assert time.monotonic() < deadline, f"{group} did not get the {COUNT} messages"
        time.sleep(0.1)
    if not keep:
        consumer.close()
    return consumer, recorder


@pytest.fixture(scope="module")
def shared(rocketmq_cluster: Any) -> Iterator[Shared]:
    ns = rocketmq_cluster.namesrv_addr
    topic = unique("AdminOps")
    with rocketmq_sync.Admin(ns) as admin, rocketmq_sync.Producer(ns) as producer:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
        deadline = time.monotonic() + 20
        while not admin.topic_route(topic).queue_datas:
            assert time.monotonic() < deadline, "no route for the new topic"
            time.sleep(0.2)
        sent = [
            producer.send(Message(topic, b"ops-%d" % i, keys=[KEY, f"k{i}"], tags="t"))
            for i in range(COUNT)
        ]
        addr = sent[0].broker_addr or ""
        src, direct_group = unique("ops_src"), unique("ops_direct")
        # Both groups consume at once: the source closes (its offsets committed),
        # the other stays online for mqadmin to hand it a message.
        with ThreadPoolExecutor(2) as pool:
            src_done = pool.submit(consume_all, ns, topic, src)
            direct_done = pool.submit(consume_all, ns, topic, direct_group, keep=True)
            src_done.result()
            direct, recorder = direct_done.result()
        try:
            direct_client = admin.consumer_connections(direct_group).connections[0].client_id
            original = admin.broker_config(addr)[HARMLESS]
            flipped = "false" if original == "true" else "true"
            shared = Shared(ns, topic, sent, src, unique("ops_java_clone"), addr, original, flipped)
            admin.create_group(shared.java_clone)  # 5.x brokers keep offsets of known groups only
            admin.update_broker_config(addr, {HARMLESS: flipped})
            probe = sent[1]
            mq = probe.message_queue
            commands = {
                "topicList": ["topicList"],
                "topicStatus": ["topicStatus", "-t", topic],
                "clusterList": ["clusterList"],
                "getBrokerConfig": ["getBrokerConfig", "-b", addr],
                "queryMsgByKey": ["queryMsgByKey", "-t", topic, "-k", KEY],
                "queryMsgById": ["queryMsgById", "-t", topic, "-i", probe.offset_msg_id or ""],
                "queryMsgByOffset": [
                    "queryMsgByOffset",
                    *("-t", topic, "-b", mq.broker_name),
                    *("-i", str(mq.queue_id), "-o", str(probe.queue_offset)),
                ],
                "cloneGroupOffset": [
                    "cloneGroupOffset",
                    *("-s", src, "-d", shared.java_clone, "-t", topic),
                ],
                "consumeDirectly": [
                    "queryMsgById",
                    *("-t", topic, "-i", sent[2].msg_id),
                    *("-g", direct_group, "-d", direct_client),
                ],
            }
            try:
                shared.out = mqadmin_batch(rocketmq_cluster, commands)
            finally:
                admin.update_broker_config(addr, {HARMLESS: original})
            shared.direct_client = direct_client
            shared.direct_seen = recorder.count(b"ops-2")
        finally:
            direct.close()
        yield shared
        admin.delete_topic(topic)


# ------------------------------------------------------------------ checks


def test_topic_list_and_stats_match_mqadmin(shared: Shared, backend: Backend) -> None:
    with backend.open("Admin", shared.namesrv) as admin:
        mine = admin.list_topics()
        theirs = set(out_lines(shared.out["topicList"]))
        assert shared.topic in mine and shared.topic in theirs
        assert mine == sorted(mine) and "TBW102" in mine
        # A topic mqadmin listed that this list lacks was deleted meanwhile (the
        # cluster is shared).
        for gone in theirs - set(mine):
            with pytest.raises(RouteNotFoundError):
                admin.topic_route(gone)
        stats = admin.topic_offsets(shared.topic)
    rows = {}
    for line in out_lines(shared.out["topicStatus"]):
        fields = line.split(None, 4)
        if len(fields) >= 4 and fields[1].isdigit():
            rows[(fields[0], int(fields[1]))] = (
                int(fields[2]),
                int(fields[3]),
                fields[4].strip() if len(fields) > 4 else "",
            )
    assert rows == {
        (o.message_queue.broker_name, o.message_queue.queue_id): (
            o.min_offset,
            o.max_offset,
            java_time(o.last_update_timestamp) if o.last_update_timestamp else "",
        )
        for o in stats
    }
    assert sum(o.max_offset for o in stats) == COUNT


def test_cluster_list_and_runtime_stats_match_mqadmin(shared: Shared, backend: Backend) -> None:
    with backend.open("Admin", shared.namesrv) as admin:
        rows = admin.cluster_list()
        info = admin.cluster_info()
        runtime = admin.broker_runtime_stats(shared.broker_addr)
        with pytest.raises(RouteNotFoundError, match="no cluster 'NoSuchCluster'"):
            admin.cluster_list("NoSuchCluster")
    theirs = []
    lines = out_lines(shared.out["clusterList"])
    start = next(i for i, line in enumerate(lines) if line.startswith("#Cluster Name"))
    for line in lines[start + 1 :]:
        cluster, broker, bid, addr, version = line.split()[:5]
        theirs.append((cluster, broker, int(bid), addr, version))
    mine = [(r.cluster, r.broker_name, r.broker_id, r.addr, r.version) for r in rows]
    assert sorted(mine) == sorted(theirs)
    assert len(mine) == sum(len(b.broker_addrs) for b in info.broker_addr_table.values())
    assert all(r.error is None and r.in_today >= 0 and r.in_tps >= 0 for r in rows)
    assert runtime["brokerVersionDesc"] == rows[0].version and "putTps" in runtime


def test_broker_config_matches_mqadmin_and_an_update_lands(
    shared: Shared, backend: Backend
) -> None:
    theirs = {}
    for line in out_lines(shared.out["getBrokerConfig"]):
        key, sep, value = line.partition("=")
        if sep and key.strip():
            theirs[key.strip()] = value.strip()
    # mqadmin read it while this module's update was in place.
    assert theirs[HARMLESS] == shared.flipped
    with backend.open("Admin", shared.namesrv) as admin:
        mine = admin.broker_config(shared.broker_addr)
        by_name = admin.broker_config(mine["brokerName"])
        assert mine[HARMLESS] == shared.original  # restored
        assert set(mine) == set(theirs)
        differ = {k for k in mine if mine[k] != theirs[k]} - {HARMLESS}
        assert not differ, {k: (mine[k], theirs[k]) for k in differ}
        assert by_name == mine
        try:
            admin.update_broker_config(shared.broker_addr, {HARMLESS: shared.flipped})
            assert admin.broker_config(shared.broker_addr)[HARMLESS] == shared.flipped
        finally:
            admin.update_broker_config(shared.broker_addr, {HARMLESS: shared.original})
        assert admin.broker_config(shared.broker_addr)[HARMLESS] == shared.original


def test_message_lookups_by_key_id_and_offset_match_mqadmin(
    shared: Shared, backend: Backend
) -> None:
    probe = shared.sent[1]
    with backend.open("Admin", shared.namesrv) as admin:
        by_key = admin.query_messages(shared.topic, KEY)
        by_id = admin.view_message(probe.offset_msg_id)
        at = admin.message_at(probe.message_queue, probe.queue_offset)
        with pytest.raises(QueryNotFoundError, match="no message at offset 999"):
            admin.message_at(probe.message_queue, 999)
    # By key: the same messages (their ids, queues and offsets) as mqadmin's.
    theirs = set()
    for line in out_lines(shared.out["queryMsgByKey"]):
        fields = line.split()
        if len(fields) >= 3 and fields[1].isdigit():  # 5.x adds an #IndexKey column
            theirs.add((fields[0], int(fields[1]), int(fields[2])))
    assert {(m.msg_id, m.queue_id, m.queue_offset) for m in by_key} == theirs
    assert len(theirs) == COUNT
    # By id and by offset: the same message as mqadmin's print of it.
    for name, msg in (("queryMsgById", by_id), ("queryMsgByOffset", at)):
        shown = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in out_lines(shared.out[name]))
        )
        assert shown["OffsetID"] == probe.offset_msg_id == msg.offset_msg_id, name
        assert shown["Topic"] == shared.topic == msg.topic
        assert shown["Queue ID"] == str(msg.queue_id) and shown["Queue Offset"] == str(
            msg.queue_offset
        )
        assert shown["Keys"] == f"[{KEY} k1]" and msg.keys == [KEY, "k1"]
        assert msg.body == b"ops-1" and msg.msg_id == probe.msg_id


def test_clone_offsets_writes_what_mqadmin_clone_writes(shared: Shared, backend: Backend) -> None:
    dst = unique(f"ops_clone_{backend.name}")
    with backend.open("Admin", shared.namesrv) as admin:
        queues = [o.message_queue for o in admin.topic_offsets(shared.topic)]
        src = {mq: admin.consumer_offset(shared.src_group, mq) for mq in queues}
        with pytest.raises(SubscriptionGroupNotExistError, match="create it first"):
            admin.clone_offsets(shared.src_group, dst, shared.topic)
        admin.create_group(dst)
        groups = {g.group_name: g for g in admin.list_groups()}
        everything = {g.group_name for g in admin.list_groups(include_system=True)}
        cloned = admin.clone_offsets(shared.src_group, dst, shared.topic)
        mine = {mq: admin.consumer_offset(dst, mq) for mq in queues}
        java = {mq: admin.consumer_offset(shared.java_clone, mq) for mq in queues}
        # Offsets moved by hand, the group being offline: earliest, latest, explicit.
        ends = {
            o.message_queue: (o.min_offset, o.max_offset) for o in admin.topic_offsets(shared.topic)
        }
        earliest = admin.reset_offsets(dst, shared.topic, "earliest")
        at_start = {mq: admin.consumer_offset(dst, mq) for mq in queues}
        latest = admin.reset_offsets(dst, shared.topic, "latest")
        at_end = {mq: admin.consumer_offset(dst, mq) for mq in queues}
        explicit = {queues[0]: 1}
        assert admin.reset_offsets(dst, shared.topic, explicit) == explicit
        moved_one = admin.consumer_offset(dst, queues[0])
        with pytest.raises(ValueError, match="earliest"):
            admin.reset_offsets(dst, shared.topic, "yesterday")
    assert "clone group offset success" in shared.out["cloneGroupOffset"]
    # The groups of the brokers: those made here (by consuming, or created), not
    # the brokers' own unless asked for.
    assert {shared.src_group, shared.java_clone, dst} <= set(groups)
    assert groups[dst].retry_max_times == 16 and groups[dst].consume_enable
    assert "TOOLS_CONSUMER" in everything and "TOOLS_CONSUMER" not in groups
    assert mine == java == src and cloned == src
    assert sum(v or 0 for v in src.values()) == COUNT
    assert earliest == at_start == {mq: ends[mq][0] for mq in queues}
    assert latest == at_end == {mq: ends[mq][1] for mq in queues}
    assert moved_one == 1


def test_a_message_is_handed_again_to_a_consumer_of_each_driver(
    shared: Shared, backend: Backend
) -> None:
    # mqadmin handed message 2 to the fixture's (sync) consumer, which consumed it again.
    assert "consumeResult=CR_SUCCESS" in shared.out["consumeDirectly"]
    assert shared.direct_seen == 2
    group = unique(f"ops_direct_{backend.name}")
    recorder = Recorder()
    consumer = backend.make(
        "PushConsumer", shared.namesrv, recorder, group=group, consume_from_where="first"
    )
    consumer.subscribe(shared.topic)
    probe = shared.sent[3]
    with backend.open("Admin", shared.namesrv) as admin, consumer:
        backend.wait_for(lambda: len(recorder.seen) >= COUNT, WAIT, "the messages")
        client_id = admin.consumer_connections(group).connections[0].client_id
        assert client_id == consumer.client_id
        by_offset_id = admin.consume_message_directly(group, client_id, probe.offset_msg_id)
        by_send_id = admin.consume_message_directly(group, client_id, probe.msg_id, shared.topic)
        backend.wait_for(lambda: recorder.count(b"ops-3") == 3, 10, "the two direct deliveries")
        with pytest.raises(BrokerError, match="not online"):
            admin.consume_message_directly(group, "10.9.9.9@nobody", probe.offset_msg_id)
    for result in (by_offset_id, by_send_id):
        assert result.consume_result == "CR_SUCCESS" and result.succeeded
        assert result.spent_time_millis >= 0 and not result.order
    assert all(count == 1 for body, count in recorder.seen.items() if body != b"ops-3")
