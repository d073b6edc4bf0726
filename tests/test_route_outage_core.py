"""Known routes outlive name-server outages: the client core's decisions, without IO."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    RequestTimeoutError,
    RouteNotFoundError,
)

from .flowsim import Sim
from .test_producer_core import BROKERS, NAMESRV, Broker, make_producer, reply, route_body, wire

SECOND_NAMESRV = "127.0.0.1:9877"


class Cluster(Broker):
    """The scripted brokers, and name servers that can go down or come back empty."""

    def __init__(self) -> None:
        super().__init__()
        #: Name server address -> "up", "down" (connection refused), "empty" (no topics),
        #: "slow" (the request times out), "partial" (only broker-a registered again).
        self.namesrv: dict[str, str] = {NAMESRV: "up", SECOND_NAMESRV: "up"}
        self.namesrv_calls: list[str] = []

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        if addr in self.namesrv:
            self.namesrv_calls.append(addr)
            state = self.namesrv[addr]
            if state == "down":
                raise ConnectionClosedError(f"request to {addr} failed: cannot connect")
            if state == "slow":
                raise RequestTimeoutError(f"request to {addr} timed out")
            if state == "empty":
                return reply(ResponseCode.TOPIC_NOT_EXIST)
            if state == "partial":
                route = json.loads(route_body(wire(command).ext_fields["topic"]))
                route["brokerDatas"] = route["brokerDatas"][:1]
                route["queueDatas"] = route["queueDatas"][:1]
                return reply(ResponseCode.SUCCESS, body=json.dumps(route).encode())
            return super().__call__(NAMESRV, command)
        cmd = wire(command)
        if cmd.code == RequestCode.HEART_BEAT:
            name = next(n for n, a in BROKERS.items() if a == addr)
            failure = self.failing.get(name)
            if isinstance(failure, Exception):
                raise failure
            return reply(ResponseCode.SUCCESS)
        return super().__call__(addr, command)


def sends_ok(sim: Sim, core: ProducerCore, count: int) -> None:
    for i in range(count):
        result = sim.run(core.send_flow(Message("T", b"%d" % i)))
        assert result is not None


def test_a_send_uses_the_known_route_however_old_and_never_asks_the_name_server() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    sends_ok(sim, core, 1)
    assert cluster.namesrv_calls == [NAMESRV]
    cluster.namesrv[NAMESRV] = "down"
    sim.now += 10 * core.client.config.route_refresh_interval
    sends_ok(sim, core, 20)
    assert cluster.namesrv_calls == [NAMESRV]  # not asked again
    assert len(cluster.sent) == 21


@pytest.mark.parametrize("failure", ["down", "slow"])
def test_a_failed_refresh_keeps_the_known_route(failure: str, caplog: Any) -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    sends_ok(sim, core, 1)
    known = client.cached_route("T")
    cluster.namesrv[NAMESRV] = failure
    sim.now += client.config.route_refresh_interval
    with caplog.at_level("WARNING", logger="rocketmq_proto.client"):
        sim.run(client.refresh_routes_flow())
        assert sim.run(client.route_flow("T")) is known
    assert client.cached_route("T") is known
    assert "keeping the known route of 'T'" in caplog.text
    sends_ok(sim, core, 3)


def test_a_name_server_that_forgot_the_topic_does_not_drop_a_route_whose_brokers_answer() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    sends_ok(sim, core, 1)
    assert sim.run(client.heartbeat_flow()) == len(BROKERS)
    cluster.namesrv[NAMESRV] = "empty"  # restarted, the brokers not registered again yet
    sim.now += client.config.route_refresh_interval
    sim.run(client.refresh_routes_flow())
    assert client.cached_route("T") is not None
    sends_ok(sim, core, 3)


def test_a_route_is_dropped_when_the_name_servers_deny_it_and_its_brokers_are_silent() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    sends_ok(sim, core, 1)
    sim.run(client.heartbeat_flow())
    cluster.namesrv[NAMESRV] = "empty"
    # No heartbeat answered for more than two intervals: the brokers are gone too.
    sim.now += 2 * client.config.heartbeat_interval + 1
    with pytest.raises(RouteNotFoundError):
        sim.run(client.route_flow("T", force=True))
    assert client.cached_route("T") is None


def test_an_administrators_route_question_is_answered_by_the_name_servers_alone() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    sends_ok(sim, core, 1)
    sim.run(client.heartbeat_flow())
    cluster.namesrv[NAMESRV] = "down"
    with pytest.raises(ConnectionClosedError):
        sim.run(client.route_flow("T", force=True, keep_known=False))
    cluster.namesrv[NAMESRV] = "empty"
    with pytest.raises(RouteNotFoundError):
        sim.run(client.route_flow("T", force=True, keep_known=False))


def test_a_refresh_round_stops_at_the_first_topic_no_name_server_answers() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    for topic in ("A", "B", "C", "D"):
        sim.run(core.send_flow(Message(topic, b"x")))
    cluster.namesrv[NAMESRV] = "slow"
    del cluster.namesrv[SECOND_NAMESRV]
    cluster.namesrv_calls.clear()
    sim.now += client.config.route_refresh_interval
    sim.run(client.refresh_routes_flow())
    assert cluster.namesrv_calls == [NAMESRV]
    assert all(client.cached_route(topic) is not None for topic in ("A", "B", "C", "D"))


def test_a_dead_name_server_costs_one_try_then_the_live_one_is_asked_first() -> None:
    cluster = Cluster()
    sim = Sim(cluster)
    client = ClientCore(ClientConfig((NAMESRV, SECOND_NAMESRV)))
    core = ProducerCore(client, ProducerConfig(group="G"), UniqueIdGenerator(bytes(4), 1, 1))
    core.register()
    cluster.namesrv[NAMESRV] = "slow"  # black-holed: every try waits for its timeout
    sim.run(core.send_flow(Message("T", b"first")))
    assert cluster.namesrv_calls == [NAMESRV, SECOND_NAMESRV]
    sim.run(core.send_flow(Message("U", b"second")))
    assert cluster.namesrv_calls == [NAMESRV, SECOND_NAMESRV, SECOND_NAMESRV]


def brokers_of(route: Any) -> list[str]:
    return sorted(broker.broker_name for broker in route.broker_datas)


def test_a_route_from_a_name_server_that_knows_some_brokers_again_keeps_the_live_others(
    caplog: Any,
) -> None:
    """A name server restarted empty learns the brokers one by one: a route it gives
    meanwhile lacks some. Those still answering keep their queues, until silent."""
    cluster = Cluster()
    sim = Sim(cluster)
    core = make_producer()
    client = core.client
    sends_ok(sim, core, 1)
    sim.run(client.heartbeat_flow())
    cluster.namesrv[NAMESRV] = "partial"
    sim.now += client.config.route_refresh_interval
    with caplog.at_level("WARNING", logger="rocketmq_proto.client"):
        route = sim.run(client.route_flow("T", force=True))
    assert brokers_of(route) == sorted(BROKERS)
    assert len(route.queue_datas) == 2
    assert "lacks broker-b, which still answer" in caplog.text
    # broker-b falls silent (only broker-a answers heartbeats): after two intervals it goes.
    cluster.failing["broker-b"] = ConnectionClosedError("cannot connect")
    for _ in range(3):
        sim.now += client.config.heartbeat_interval
        sim.run(client.heartbeat_flow())
    route = sim.run(client.route_flow("T", force=True))
    assert brokers_of(route) == ["broker-a"]
    # An administrator's question gets the name servers' answer as it is.
    cluster.namesrv[NAMESRV] = "up"
    sim.run(client.route_flow("T", force=True))
    cluster.namesrv[NAMESRV] = "partial"
    assert brokers_of(sim.run(client.route_flow("T", force=True, keep_known=False))) == ["broker-a"]
