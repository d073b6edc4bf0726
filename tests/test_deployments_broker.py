"""Deployments other than master-only brokers: the 5.x proxy and master/slave groups.

One cluster (``rocketmq_deployment_cluster``, started by ``scripts/cluster.py``
with ``namesrv_count=2, proxy=True, slaves=True``; the suites run through the proxy
share it): two name servers, masters ``broker-a`` and ``broker-b``, a slave for each
(brokerId 1, ``broker-a-slave``...), and the proxy in cluster mode.

The proxy: it answers route lookups naming itself as every broker, and the sync
driver's clients, given the proxy's remoting address as their name server, send,
pull and push through it. The slaves: they are registered beside their masters,
hold what was sent to their master, and serve reads once the master is gone.

The brokers run with ``slaveReadEnable=true``: without it a slave rejects every
PULL_MESSAGE (SYSTEM_BUSY, "[REJECTREQUEST]system busy", from
``PullMessageProcessor.rejectRequest``), so no read is served with the master gone.
A slave copies its master's topic configs once a minute (hard-coded in 5.x; the
first copy a minute after it starts) and answers TOPIC_NOT_EXIST for a topic it has
not copied yet. So the read from a slave uses the topic named after the group
(``broker-a``), which every broker of the group, the slave too, makes when it starts.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync
from rocketmq_proto import (
    ConsumeResult,
    LocalProtocolError,
    Message,
    MessageExt,
    MessageQueue,
    PopNotServedError,
    RequestTimeoutError,
    RocketMQError,
    SendStatus,
    TransactionState,
)
from rocketmq_proto.message.ids import decode_offset_msg_id, encode_offset_msg_id

from .backends import Backend, wait_for
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

GROUPS = ("broker-a", "broker-b")
#: How long a test waits for something the cluster should do (the machine may be busy).
WAIT = 90.0
#: Options of every client here: generous, the machine may be busy.
CLIENT: dict[str, Any] = {"request_timeout": 10.0}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def deployment(rocketmq_deployment_cluster: launcher.LocalCluster) -> launcher.LocalCluster:
    """The session's deployment cluster (shared with the suites run through the proxy)."""
    return rocketmq_deployment_cluster


@pytest.fixture
def cluster(deployment: launcher.LocalCluster) -> launcher.LocalCluster:
    """The cluster with every broker up and registered (a failed test may have left one
    down)."""
    for name in deployment.server_names():
        if not deployment.is_running(name) and name != "proxy" and "namesrv" not in name:
            deployment.start_broker(name)
    wait_for(lambda: registered(deployment) == expected_table(deployment), WAIT, "every broker")
    return deployment


def registered(cluster: launcher.LocalCluster) -> dict[str, dict[int, str]]:
    return launcher._query_cluster_table(cluster.namesrv_addrs[0])  # type: ignore[no-any-return]


def expected_table(cluster: launcher.LocalCluster) -> dict[str, dict[int, str]]:
    return {name: {0: cluster.brokers[name], 1: cluster.slaves[name]} for name in GROUPS}


def new_topic(cluster: launcher.LocalCluster, prefix: str, queues: int = 2) -> str:
    """A topic on both masters, with its route known to the name server."""
    topic = unique(prefix)
    with rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin:
        assert sorted(admin.create_topic(topic, read_queue_nums=queues, write_queue_nums=queues))
        wait_for(
            lambda: len(admin.topic_route(topic).queue_datas) == len(GROUPS), WAIT, "the route"
        )
    return topic


# ----------------------------------------------------------------- the launcher


def test_the_cluster_reports_its_proxy_and_slaves(cluster: launcher.LocalCluster) -> None:
    assert sorted(cluster.slaves) == sorted(GROUPS)
    assert cluster.proxy_addr is not None and cluster.proxy_addr.startswith("127.0.0.1:")
    assert cluster.proxy_grpc_addr is not None
    assert launcher._port_answers(cluster.proxy_grpc_addr)
    names = set(cluster.server_names())
    assert {
        "namesrv",
        "namesrv-2",
        "proxy",
        *GROUPS,
        *(g + launcher.SLAVE_SUFFIX for g in GROUPS),
    } == names
    # What `cluster.py up` writes; `status` and `down` attach to it.
    state = cluster.to_state()
    assert state["proxy_addr"] == cluster.proxy_addr
    assert state["slaves"] == cluster.slaves
    assert state["servers"]["proxy"]["role"] == "proxy"
    attached = launcher.LocalCluster.attach(state)
    assert attached.proxy_addr == cluster.proxy_addr
    assert attached.slaves == cluster.slaves
    assert all(attached.is_running(name) for name in names)


def test_options_reach_the_server_configs(tmp_path: Path) -> None:
    """slave_read_enable and slave_acting_master (configs only: no JVM is started)."""
    local = launcher.LocalCluster(
        workdir=tmp_path,
        slaves=True,
        slave_read_enable=True,
        slave_acting_master=True,
    )
    local._prepare([tmp_path / "none.jar"])

    def props(path: Path) -> dict[str, str]:
        lines = path.read_text("latin-1").splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    namesrv = props(tmp_path / "namesrv" / "namesrv.properties")
    assert namesrv["supportActingMaster"] == "true"
    master = props(tmp_path / "broker-a" / "broker.properties")
    slave = props(tmp_path / "broker-a-slave" / "broker.properties")
    assert (master["brokerId"], master["brokerRole"]) == ("0", "ASYNC_MASTER")
    assert (slave["brokerId"], slave["brokerRole"]) == ("1", "SLAVE")
    assert slave["brokerName"] == master["brokerName"] == "broker-a"
    assert slave["brokerClusterName"] == master["brokerClusterName"]
    assert slave["listenPort"] != master["listenPort"]
    assert slave["storePathRootDir"] != master["storePathRootDir"]
    assert master["haListenPort"] == str(int(master["listenPort"]) + 1)
    for config in (master, slave):
        assert config["slaveReadEnable"] == "true"
        assert config["enableSlaveActingMaster"] == "true"
    assert local.slaves["broker-a"] == f"127.0.0.1:{slave['listenPort']}"


# ----------------------------------------------------------------- the proxy


def test_the_proxy_answers_routes_naming_itself_as_every_broker(
    cluster: launcher.LocalCluster,
) -> None:
    topic = new_topic(cluster, "ProxyRouteT")
    proxy = cluster.proxy_addr
    # The name server's route has each group's master and slave ...
    assert launcher._query_route(cluster.namesrv_addrs[0], topic) == expected_table(cluster)
    # ... the proxy's names the proxy for both ids of both groups.
    routed = launcher._query_route(proxy, topic)
    assert routed == {name: {0: proxy, 1: proxy} for name in GROUPS}
    # And so does the client's route through the proxy (queue data kept).
    with rocketmq_sync.Admin(proxy, **CLIENT) as admin:
        route = admin.topic_route(topic)
    assert {b.broker_name: b.broker_addrs for b in route.broker_datas} == routed
    assert sorted(q.broker_name for q in route.queue_datas) == sorted(GROUPS)
    assert all(q.write_queue_nums == 2 for q in route.queue_datas)


def test_sync_producer_and_pull_consumer_through_the_proxy(
    cluster: launcher.LocalCluster,
) -> None:
    topic = new_topic(cluster, "ProxyPullT")
    proxy = cluster.proxy_addr
    bodies = [f"proxy-pull-{i}".encode() for i in range(20)]
    with rocketmq_sync.Producer(proxy, group=unique("proxy_p"), send_timeout=10.0) as producer:
        results = [producer.send(Message(topic, body)) for body in bodies]
    assert all(result.status is SendStatus.SEND_OK for result in results)
    # The proxy forwards each send to the master of the queue's group (by the "n"
    # field): both groups took messages, stored by their masters.
    assert {result.message_queue.broker_name for result in results} == set(GROUPS)
    for result in results:
        stored = decode_offset_msg_id(result.offset_msg_id)
        assert f"{stored.host}:{stored.port}" == cluster.brokers[result.message_queue.broker_name]

    group = unique("proxy_pull")
    with rocketmq_sync.PullConsumer(
        proxy, group=group, consume_from_where="first", **CLIENT
    ) as consumer:
        consumer.subscribe(topic)
        got: list[MessageExt] = []
        deadline = time.monotonic() + WAIT
        while len(got) < len(bodies) and time.monotonic() < deadline:
            got += consumer.poll(0.5)
        assert sorted(m.body for m in got) == sorted(bodies)
        assert consumer.poll(0.5) == []
        queues = consumer.assignment()
        assert len(queues) == 2 * len(GROUPS)
        consumer.commit()
    # The offsets went through the proxy to the masters.
    with rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin:
        for queue in queues:
            assert admin.consumer_offset(group, queue) == admin.max_offset(queue), queue


def test_sync_push_consumer_through_the_proxy(cluster: launcher.LocalCluster) -> None:
    topic = new_topic(cluster, "ProxyPushT")
    proxy = cluster.proxy_addr
    bodies = [f"proxy-push-{i}".encode() for i in range(20)]
    with rocketmq_sync.Producer(proxy, group=unique("proxy_p"), send_timeout=10.0) as producer:
        for body in bodies:
            producer.send(Message(topic, body))
    seen: list[bytes] = []
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> ConsumeResult:
        with lock:
            seen.extend(m.body for m in messages)
        return ConsumeResult.SUCCESS

    consumer = rocketmq_sync.PushConsumer(
        proxy, handler, group=unique("proxy_push"), consume_from_where="first", **CLIENT
    )
    consumer.subscribe(topic)
    consumer.start()
    try:
        wait_for(lambda: len(seen) >= len(bodies), WAIT, "the pushed messages")
        # A message sent while the consumer runs comes too.
        with rocketmq_sync.Producer(proxy, group=unique("proxy_p")) as producer:
            producer.send(Message(topic, b"proxy-push-late"))
        wait_for(lambda: b"proxy-push-late" in seen, WAIT, "the late message")
    finally:
        consumer.close()
    assert sorted(set(seen)) == sorted([*bodies, b"proxy-push-late"])


# Runs before the tests that stop a master or freeze the name servers (the
# driver-parametrized ones, which pytest groups after the tests above them): in a
# clean-clone CI run placed after them, the commit through the proxy was not seen
# within 120 s.
def test_a_transaction_through_the_proxy_takes_effect_at_the_brokers_check_back(
    cluster: launcher.LocalCluster,
) -> None:
    """Through the proxy's remoting port a topic must be of ``message.type``
    TRANSACTION, and a commit takes effect only when the broker asks the producer
    (CHECK_TRANSACTION_STATE, relayed by the proxy): the END_TRANSACTION right after
    the send finds no transaction at the proxy, which answers SUCCESS and forwards
    nothing. Given the name servers, the same commit is seen at once."""
    proxy = cluster.proxy_addr
    topic = unique("ProxyTx")
    with rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin:
        admin.create_topic(
            topic,
            read_queue_nums=1,
            write_queue_nums=1,
            attributes={"+message.type": "TRANSACTION"},
        )
        wait_for(lambda: admin.topic_route(topic).queue_datas, WAIT, "the route")
        normal = new_topic(cluster, "ProxyTxNormal", queues=1)
    asked: list[float] = []

    def check(message: MessageExt) -> TransactionState:
        asked.append(time.monotonic())
        return TransactionState.COMMIT

    def commit(message: Message, arg: object) -> TransactionState:
        return TransactionState.COMMIT

    sent_at: list[float] = []

    def committed_after(namesrv: str, body: bytes) -> float:
        """Seconds from the send until a consumer sees ``body`` (the send's start is
        kept in ``sent_at``)."""
        with rocketmq_sync.TransactionProducer(
            namesrv, check, group=unique("proxy_tx"), **CLIENT
        ) as producer:
            began = time.monotonic()
            sent_at.append(began)
            _, state = producer.send_in_transaction(Message(topic, body), commit)
            assert state is TransactionState.COMMIT
            with rocketmq_sync.PullConsumer(
                cluster.namesrv_addr, group=unique("proxy_tx_c"), consume_from_where="first"
            ) as consumer:
                consumer.subscribe(topic)
                deadline = began + 120.0
                while time.monotonic() < deadline:
                    if any(m.body == body for m in consumer.poll(0.5)):
                        return time.monotonic() - began
        raise AssertionError(
            f"{body!r} was not committed within 120 s (the checker was asked "
            f"{len(asked)} time(s), first {asked[0] - began if asked else 0:.1f} s after the send)"
        )

    direct = committed_after(cluster.namesrv_addr, b"tx-direct")
    assert not asked  # committed by END_TRANSACTION: the broker never asked
    through_proxy = committed_after(proxy, b"tx-proxy")
    assert asked, "the broker asked the producer (through the proxy)"
    # Both measured from the start of the send through the proxy (sent_at[1]): when
    # the producer's checker was first asked, and when a consumer saw the commit.
    asked_after = asked[0] - sent_at[1]
    print(
        f"\n[deployments] commit seen after {direct:.2f} s given the name servers, "
        f"{through_proxy:.1f} s through the proxy (the broker asked after "
        f"{asked_after:.1f} s, {len(asked)} check(s))"
    )
    assert direct < 5.0
    # Not before the half message is transactionTimeOut old (1 s on the test cluster,
    # 6 s by default), at the next check (every transactionCheckInterval: 1 s here,
    # 30 s by default); the commit is seen after the check that made it.
    assert 1.0 <= asked_after <= through_proxy
    # A transactional message to a NORMAL topic is refused by the proxy.
    with (
        rocketmq_sync.TransactionProducer(
            proxy, check, group=unique("proxy_tx"), **CLIENT
        ) as producer,
        pytest.raises(RocketMQError, match="MESSAGE_ILLEGAL"),
    ):
        producer.send_in_transaction(Message(normal, b"refused"), commit)


# ----------------------------------------------------------------- the slaves
# ----------------------------------------------------------------- the slaves


def test_each_driver_sends_pulls_and_pushes_through_the_proxy(
    cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """The smoke test of every driver through the proxy (the sync driver also runs
    the producer, push and pull suites through it: ``test_proxy_*_broker.py``)."""
    topic = new_topic(cluster, f"ProxySmoke_{backend.name}")
    proxy = cluster.proxy_addr
    bodies = [f"smoke-{backend.name}-{i}".encode() for i in range(10)]
    with backend.open("Producer", proxy, group=unique("smoke_p"), **CLIENT) as producer:
        for body in bodies:
            assert producer.send(Message(topic, body)).status is SendStatus.SEND_OK
    with backend.open(
        "PullConsumer", proxy, group=unique("smoke_pull"), consume_from_where="first", **CLIENT
    ) as consumer:
        consumer.subscribe(topic)
        pulled: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(pulled) < len(bodies) and time.monotonic() < deadline:
            pulled += [m.body for m in consumer.poll(0.5)]
    assert sorted(pulled) == sorted(bodies)
    pushed: list[bytes] = []
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> None:
        with lock:
            pushed.extend(m.body for m in messages)

    consumer = backend.make(
        "PushConsumer",
        proxy,
        handler,
        group=unique("smoke_push"),
        consume_from_where="first",
        **CLIENT,
    )
    consumer.subscribe(topic)
    with consumer:
        backend.wait_for(lambda: len(set(pushed)) >= len(bodies), WAIT, "the pushed messages")
    assert sorted(set(pushed)) == sorted(bodies)


def test_a_failed_message_comes_back_through_the_proxy(cluster: launcher.LocalCluster) -> None:
    """A message the handler failed is sent back through the proxy and comes again
    (reconsume count 1). For a new group the first retry is late: the group's retry
    topic is made by that first send-back (a heartbeat through the proxy makes none),
    and the proxy's route cache learns of it within 20 s."""
    topic = new_topic(cluster, "ProxyRetry", queues=1)
    deliveries: list[tuple[float, int]] = []
    lock = threading.Lock()

    def handler(messages: list[MessageExt]) -> ConsumeResult:
        with lock:
            deliveries.extend((time.monotonic(), m.reconsume_times) for m in messages)
        return ConsumeResult.SUCCESS if messages[0].reconsume_times else ConsumeResult.RETRY_LATER

    consumer = rocketmq_sync.PushConsumer(
        cluster.proxy_addr,
        handler,
        group=unique("proxy_retry"),
        consume_from_where="first",
        **CLIENT,
    )
    consumer.subscribe(topic)
    with consumer:
        with rocketmq_sync.Producer(cluster.proxy_addr, group=unique("proxy_p")) as producer:
            producer.send(Message(topic, b"retry through the proxy"))
        wait_for(lambda: len(deliveries) >= 2, WAIT, "the retried delivery")
        time.sleep(2.0)
    assert [times for _, times in deliveries] == [0, 1]
    late = deliveries[1][0] - deliveries[0][0]
    print(f"\n[deployments] the first retry through the proxy came after {late:.1f} s")


def test_slaves_are_registered_beside_their_masters(cluster: launcher.LocalCluster) -> None:
    with rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin:
        info = admin.cluster_info()
    table = {name: info.broker_addr_table[name].broker_addrs for name in GROUPS}
    assert table == expected_table(cluster)
    assert sorted(info.cluster_addr_table[launcher.CLUSTER_NAME]) == sorted(GROUPS)


def read_from_slave(admin: Any, slave_addr: str, offset_msg_id: str) -> MessageExt:
    """The message of ``offset_msg_id`` (a master's) as the slave's store holds it: its
    commit log is the master's, byte for byte, at the same offsets."""
    host, _, port = slave_addr.rpartition(":")
    offset = decode_offset_msg_id(offset_msg_id).offset
    return admin.view_message(encode_offset_msg_id(host, int(port), offset))  # type: ignore[no-any-return]


def replicated(admin: Any, slave_addr: str, offset_msg_id: str) -> MessageExt | None:
    try:
        return read_from_slave(admin, slave_addr, offset_msg_id)
    except Exception:  # not there yet
        return None


def test_what_a_master_stores_its_slave_stores(cluster: launcher.LocalCluster) -> None:
    topic = new_topic(cluster, "SlaveStoreT")
    with (
        rocketmq_sync.Producer(cluster.namesrv_addr, group=unique("slave_p")) as producer,
        rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin,
    ):
        sent = [(b"to-%s" % name.encode(), name) for name in GROUPS for _ in range(3)]
        results = [
            producer.send(Message(topic, body), queue=MessageQueue(topic, name, 0))
            for body, name in sent
        ]
        for (body, name), result in zip(sent, results, strict=True):
            slave = cluster.slaves[name]
            copy = wait_for(
                lambda r=result, s=slave: replicated(admin, s, r.offset_msg_id),  # type: ignore[misc]
                WAIT,
                f"{result.offset_msg_id} on {slave}",
            )
            assert copy.body == body
            assert copy.msg_id == result.msg_id
            assert copy.queue_offset == result.queue_offset


def test_a_slave_stops_and_starts_by_its_name(cluster: launcher.LocalCluster) -> None:
    name = "broker-b" + launcher.SLAVE_SUFFIX
    pid = cluster._broker(name).pid
    cluster.pause_broker(name)
    try:
        wait_for(lambda: launcher._proc_state(pid) == "T", 10, "SIGSTOP")
    finally:
        cluster.resume_broker(name)
    wait_for(lambda: launcher._proc_state(pid) != "T", 10, "SIGCONT")
    # SIGKILL: the name server drops the slave as its connection closes.
    cluster.stop_broker(name, kill=True)
    try:
        assert not cluster.is_running(name)
        assert cluster.is_running("broker-b")
        assert registered(cluster)["broker-b"] == {0: cluster.brokers["broker-b"]}
    finally:
        cluster.start_broker(name)
    assert cluster.is_running(name)
    assert registered(cluster) == expected_table(cluster)


def java_consume(cluster: launcher.LocalCluster, topic: str, tag: str, count: int) -> Any:
    """The Java client's push consumer (5.x, the interop peer), a new group, reading
    ``count`` messages of ``tag``: its process, once ended."""
    import subprocess

    from .peers import build_peers

    peer = build_peers("java")["java"]
    return subprocess.run(
        [
            *(peer, "consume", "--namesrv", cluster.namesrv_addr, "--topic", topic),
            *("--group", unique("cmp_java"), "--expression", tag, "--from", "first"),
            *("--count", str(count), "--timeout-sec", str(int(WAIT))),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT + 60,
        check=False,
    )


def test_with_the_master_stopped_its_slave_serves_reads_and_sends_go_to_the_other_group(
    cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """broker-a's master is stopped with a backlog on it. Meanwhile, in each driver:
    a producer that knew both groups, and a new one, send every message to broker-b's
    master; a pull consumer reads the backlog from broker-a's slave, and so does a new
    group's push consumer (the broker's ``suggestWhichBrokerId`` and
    ``slaveReadEnable``). With the sync driver, the Java client (5.x, the interop
    peer) reads the same backlog, for comparison."""
    import json

    topic = "broker-a"  # the group's own topic: one queue, known to the slave from its start
    queue = MessageQueue(topic, "broker-a", 0)
    tag = f"down{uuid.uuid4().hex[:8]}"
    bodies = [f"slave-read-{tag}-{i}".encode() for i in range(10)]
    spread = new_topic(cluster, f"MasterDown_{backend.name}")  # on both groups
    ns = cluster.namesrv_addr
    with (
        backend.open("Producer", ns, group=unique("down_p"), **CLIENT) as producer,
        rocketmq_sync.Admin(ns, **CLIENT) as admin,
    ):
        results = [producer.send(Message(topic, body, tags=tag), queue=queue) for body in bodies]
        warm = [producer.send(Message(spread, b"warm")) for _ in range(4)]
        assert {r.message_queue.broker_name for r in warm} == set(GROUPS)
        last = results[-1].offset_msg_id
        wait_for(lambda: replicated(admin, cluster.slaves["broker-a"], last), WAIT, "replication")

        cluster.stop_broker("broker-a")
        try:
            # The group stays in the route, with only its slave.
            route = launcher._query_route(cluster.namesrv_addrs[0], topic)
            assert route == {"broker-a": {1: cluster.slaves["broker-a"]}}
            # Sends go on, each to broker-b's master: from the producer that knew
            # broker-a's master, and from one that never did.
            with backend.open("Producer", ns, group=unique("down_p2"), **CLIENT) as fresh:
                sent = [
                    sender.send(Message(spread, b"while-down-%d" % i))
                    for sender in (producer, fresh)
                    for i in range(10)
                ]
            assert [r.status for r in sent] == [SendStatus.SEND_OK] * len(sent)
            assert {r.message_queue.broker_name for r in sent} == {"broker-b"}
            stored = {decode_offset_msg_id(r.offset_msg_id) for r in sent}
            assert {f"{s.host}:{s.port}" for s in stored} == {cluster.brokers["broker-b"]}

            with backend.open("PullConsumer", ns, group=unique("slave_read"), **CLIENT) as pull:
                pull.assign([queue])
                pull.seek(queue, results[0].queue_offset)
                got: list[MessageExt] = []
                deadline = time.monotonic() + WAIT
                while len(got) < len(bodies) and time.monotonic() < deadline:
                    got += pull.poll(0.5)
            assert [m.body for m in got] == bodies
            assert [m.queue_offset for m in got] == [r.queue_offset for r in results]

            java_took = 0.0
            if backend.name == "sync":
                began = time.monotonic()
                done = java_consume(cluster, topic, tag, len(bodies))
                java_took = time.monotonic() - began
                assert done.returncode == 0, done.stderr[-2000:]
                java = [
                    bytes.fromhex(line["bodyHex"])
                    for line in map(json.loads, done.stdout.splitlines())
                    if "bodyHex" in line
                ]
                assert sorted(set(java)) == sorted(bodies)

            seen: list[bytes] = []
            lock = threading.Lock()

            def handler(messages: list[MessageExt]) -> None:
                with lock:
                    seen.extend(m.body for m in messages)

            consumer = backend.make(
                "PushConsumer",
                ns,
                handler,
                group=unique("down_push"),
                consume_from_where="first",
                **CLIENT,
            )
            consumer.subscribe(topic, tag)
            began = time.monotonic()
            with consumer:
                backend.wait_for(
                    lambda: len(set(seen)) >= len(bodies), WAIT, "the backlog, from the slave"
                )
            push_took = time.monotonic() - began
        finally:
            cluster.start_broker("broker-a")
    assert sorted(set(seen)) == sorted(bodies)
    assert registered(cluster) == expected_table(cluster)
    java = f", the Java consumer in {java_took:.1f} s (JVM start included)" if java_took else ""
    print(
        f"\n[deployments] {backend.name}: master stopped, {len(sent)} sends all to broker-b; "
        f"the push consumer read the backlog from the slave in {push_took:.1f} s{java}"
    )


def update_broker_config(
    cluster: launcher.LocalCluster, broker_addr: str, **settings: object
) -> None:
    """UPDATE_BROKER_CONFIG to one broker (settings as ``key=value`` lines); the
    broker takes them at once (and keeps them in its config file)."""
    from rocketmq_proto import RemotingCommand, RequestCode
    from rocketmq_proto.flows.effects import call

    body = "".join(f"{key}={value}\n" for key, value in settings.items()).encode()

    def update() -> Any:
        command = RemotingCommand(RequestCode.UPDATE_BROKER_CONFIG, body=body)
        return (yield from call(broker_addr, command, 10.0))

    with rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin:
        response = admin._run(update())  # no Admin method sends it
    assert response.code == 0, (response.code, response.remark)


def test_a_master_suggesting_its_slave_has_the_pulls_go_there(
    cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """With ``slaveReadEnable``, a master answers a pull whose messages lie further
    behind the end of its commit log than ``accessMessageInMemoryMaxRatio`` % of its
    memory with ``suggestWhichBrokerId`` = the group's ``whichBrokerWhenConsumeSlowly``
    (1, the slave); the slave suggests the master again. With the ratio set to 0 on
    broker-a's master (at run time, restored after), every pull of a backlog is slow
    there: while the master is up, some pulls go to the slave, each as the last
    answer suggested."""
    from rocketmq_proto import RequestCode

    topic = "broker-a"  # known to the slave from its start (see the module's notes)
    queue = MessageQueue(topic, "broker-a", 0)
    master, slave = cluster.brokers["broker-a"], cluster.slaves["broker-a"]
    bodies = [f"suggest-{backend.name}-{i}".encode() for i in range(24)]
    with (
        rocketmq_sync.Producer(cluster.namesrv_addr, group=unique("sug_p"), **CLIENT) as producer,
        rocketmq_sync.Admin(cluster.namesrv_addr, **CLIENT) as admin,
    ):
        results = [producer.send(Message(topic, body), queue=queue) for body in bodies]
        last = results[-1].offset_msg_id
        wait_for(lambda: replicated(admin, slave, last), WAIT, "replication")

    # Each pull: where it went and the offset it asked for; each answer that found
    # messages of the backlog: where from, the broker id it suggested, and the next
    # offset. (The pull the assign began with, before the seek, is answered too,
    # and its answer not followed: for a new group it asks from the queue's first
    # offset, which is the backlog's only on a new cluster, with the same answer.)
    first = results[0].queue_offset
    pulls: set[tuple[str, int]] = set()
    answers: list[tuple[str, str, int]] = []

    class CountPulls:
        def before_request(self, ctx: Any) -> None:
            if ctx.request.code == RequestCode.PULL_MESSAGE:
                pulls.add((ctx.addr, int(ctx.request.ext_fields["queueOffset"])))

        def after_request(self, ctx: Any) -> None:
            response = ctx.response
            request = ctx.request
            if (
                request.code == RequestCode.PULL_MESSAGE
                and int(request.ext_fields["queueOffset"]) >= first
                and response
                and response.code == 0
            ):
                fields = response.ext_fields
                suggested, following = fields["suggestWhichBrokerId"], fields["nextBeginOffset"]
                answers.append((ctx.addr, suggested, int(following)))

    update_broker_config(cluster, master, accessMessageInMemoryMaxRatio=0)
    try:
        with backend.open(
            "PullConsumer",
            cluster.namesrv_addr,
            group=unique("suggest"),
            pull_batch_size=4,
            hooks=[CountPulls()],
            **CLIENT,
        ) as consumer:
            consumer.assign([queue])
            consumer.seek(queue, results[0].queue_offset)
            got: list[MessageExt] = []
            deadline = time.monotonic() + WAIT
            while len(got) < len(bodies) and time.monotonic() < deadline:
                got += consumer.poll(0.5)
    finally:
        update_broker_config(cluster, master, accessMessageInMemoryMaxRatio=40)
    assert [m.body for m in got] == bodies
    assert {addr for addr, _ in pulls} == {master, slave}, pulls
    assert (master, "1", first + 4) in answers, answers  # the master
    # suggested its slave at once; and each answer's next pull went where it said (ids:
    # 0 the master, 1 the slave), up to the backlog's end.
    where = {"0": master, "1": slave}
    end = results[-1].queue_offset + 1
    for _, suggested, following in answers:
        if following < end:
            assert (where[suggested], following) in pulls, (answers, sorted(pulls))
    at_slave = sum(addr == slave for addr, _, _ in answers)
    print(
        f"\n[deployments] {backend.name}: {at_slave} of {len(answers)} pulls that found "
        "messages were answered by the slave"
    )


# ------------------------------------------------------------------ POP and the proxy


def test_pop_through_the_proxy_fails_clearly_and_works_against_the_brokers(
    cluster: launcher.LocalCluster,
) -> None:
    """The proxy's remoting port takes POP_MESSAGE for a pull and fails (a
    SYSTEM_ERROR naming PullMessageRequestHeader) and never answers ACK_MESSAGE:
    a SimpleConsumer given the proxy says so at once; given the name servers it
    pops from the brokers."""
    topic = new_topic(cluster, "PopProxy", queues=1)
    with rocketmq_sync.Producer(cluster.namesrv_addr, group=unique("pp"), **CLIENT) as producer:
        producer.send(Message(topic, b"popped"))
    via_proxy = rocketmq_sync.SimpleConsumer(
        cluster.proxy_addr, group=unique("popproxy"), request_timeout=3.0
    )
    via_proxy.subscribe(topic)
    with via_proxy:
        began = time.monotonic()
        with pytest.raises(PopNotServedError, match="does not serve POP"):
            via_proxy.receive(1, wait=1.0)
        assert time.monotonic() - began < 3.0  # an answer, not a timeout
        # The evidence for the docs: an ACK through the proxy gets no answer at all.
        handle = f"0 {int(time.time() * 1000)} 30000 0 0 broker-a 0 0"
        with pytest.raises(RequestTimeoutError, match="ACK_MESSAGE"):
            via_proxy.ack(MessageExt(topic, b"x", properties={"POP_CK": handle}))
    direct = rocketmq_sync.SimpleConsumer(
        cluster.namesrv_addr, group=unique("popdirect"), consume_from_where="first", **CLIENT
    )
    direct.subscribe(topic)
    with direct:
        got = wait_for(lambda: direct.receive(1, wait=1.0), WAIT, "the message, popped")
        direct.ack(got)
    assert [m.body for m in got] == [b"popped"]


def test_a_pop_mode_push_consumer_given_the_proxy_fails_to_start(
    cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """A POP-mode PushConsumer given the proxy: start() raises PopNotServedError at
    once (its first pops, made before it runs, got the proxy's pull error), and the
    consumer is closed."""
    topic = new_topic(cluster, f"PopPushProxy_{backend.name}", queues=1)
    handled: list[MessageExt] = []
    consumer = backend.make(
        "PushConsumer",
        cluster.proxy_addr,
        handled.extend,
        group=unique("poppushproxy"),
        consume_mode="pop",
        request_timeout=3.0,
    )
    consumer.subscribe(topic)
    began = time.monotonic()
    with pytest.raises(PopNotServedError, match="does not serve POP"):
        consumer.start()
    assert time.monotonic() - began < 3.0  # an answer, not a timeout
    with pytest.raises(LocalProtocolError, match="closed client cannot be started"):
        consumer.start()
    assert handled == []


# ------------------------------------------------------------ several name servers


def test_a_hung_name_server_costs_a_client_less_than_a_request_timeout(
    cluster: launcher.LocalCluster, backend: Backend
) -> None:
    """Two name servers; each in turn hangs (SIGSTOP). A producer given both looks
    up a new topic's route, and sends, within one request timeout."""
    assert len(cluster.namesrv_addrs) == 2
    timeout = 3.0
    warm, *topics = (new_topic(cluster, f"Hang_{backend.name}", queues=1) for _ in range(3))
    with backend.open(
        "Producer", cluster.namesrv_addr, group=unique("hang"), request_timeout=timeout
    ) as producer:
        producer.send(Message(warm, b"warm"))
        for index, topic in enumerate(topics):
            cluster.pause_namesrv(index)
            try:
                began = time.monotonic()
                result = producer.send(Message(topic, b"through the other"))
                took = time.monotonic() - began
            finally:
                cluster.resume_namesrv(index)
            assert result.status is SendStatus.SEND_OK
            print(
                f"\n[deployments] {backend.name}: name server #{index} hung, "
                f"the send took {took:.2f} s"
            )
            assert took < timeout, f"name server #{index} hung: the send took {took:.1f} s"
