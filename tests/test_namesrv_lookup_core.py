"""Name server discovery by HTTP lookup (Java's TopAddressing): the core's decisions, no IO."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from rocketmq_proto.flows.effects import Call, HttpGet, Now, Sleep
from rocketmq_proto.flows.namesrv_lookup import (
    LOOKUP_RETRY_INTERVAL,
    LookupAnswerError,
    parse_lookup_answer,
    parse_lookup_url,
)
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message
from rocketmq_proto.options import client_settings, namesrv_source
from rocketmq_proto.wire.codes import RequestCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    ConnectionClosedError,
    RequestTimeoutError,
    RocketMQError,
)

from .flowsim import Sim
from .test_producer_core import NAMESRV, Broker, wire

URL = "http://127.0.0.1:8080/rocketmq/nsaddr"
OTHER = "127.0.0.1:9877"


def http(status: int, body: bytes, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\n{headers}\r\n".encode() + body


@dataclass
class Lookups:
    """A scripted lookup endpoint: the next answers (bytes, or an error to raise)."""

    answer: bytes | Exception = field(default_factory=lambda: http(200, NAMESRV.encode()))
    asked: list[tuple[float, HttpGet]] = field(default_factory=list)


class LookupSim(Sim):
    """Sim that also answers :class:`HttpGet` from ``lookups``, and can stop upkeep."""

    def __init__(self, on_call: Callable[[str, RemotingCommand], RemotingCommand]) -> None:
        super().__init__(on_call)
        self.lookups = Lookups()
        self.stop: Callable[[float], bool] = lambda now: False
        self.client: ClientCore | None = None

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, HttpGet):
            self.lookups.asked.append((self.now, effect))
            self.now += 0.001
            if isinstance(self.lookups.answer, Exception):
                raise self.lookups.answer
            return self.lookups.answer
        if isinstance(effect, Sleep) and self.client is not None and self.stop(self.now):
            self.client.closed = True
        return super().perform(effect)


class Namesrvs(Broker):
    """The scripted cluster, with name servers by address: only those in ``up`` answer."""

    def __init__(self) -> None:
        super().__init__()
        self.up = {NAMESRV, OTHER}
        self.namesrv_calls: list[str] = []

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        if addr in (NAMESRV, OTHER):
            self.namesrv_calls.append(addr)
            if addr not in self.up:
                raise ConnectionClosedError(f"cannot connect to {addr}")
            addr = NAMESRV
        if wire(command).code == RequestCode.HEART_BEAT:
            return RemotingCommand(0, {}, b"", flag=1)
        return super().__call__(addr, command)


def lookup_client(**config: Any) -> ClientCore:
    return ClientCore(
        ClientConfig((), client_ip="10.0.0.1", instance_name="t", namesrv_lookup_url=URL, **config)
    )


def producer(client: ClientCore) -> ProducerCore:
    core = ProducerCore(client, ProducerConfig(group="G"), UniqueIdGenerator(bytes(4), 1, 2))
    core.register()
    return core


# ---------------------------------------------------------------- URL and answer


def test_the_lookup_url_is_validated_and_becomes_an_http_1_0_get() -> None:
    url = parse_lookup_url("http://ns.example:8080/rocketmq/nsaddr-unit?nofix=1")
    assert (url.host, url.port, url.target) == ("ns.example", 8080, "/rocketmq/nsaddr-unit?nofix=1")
    assert url.request() == (
        b"GET /rocketmq/nsaddr-unit?nofix=1 HTTP/1.0\r\nHost: ns.example:8080\r\n"
        b"Accept: text/plain\r\nConnection: close\r\nUser-Agent: rocketmq-remoting\r\n\r\n"
    )
    plain = parse_lookup_url("http://10.1.2.3")
    assert (plain.port, plain.target) == (80, "/")
    assert b"Host: 10.1.2.3\r\n" in plain.request()
    for bad in (
        "https://h/x",
        "ftp://h/x",
        "http:///x",
        "http://u:p@h/x",
        "h:80",
        "http://h:99999/",
    ):
        with pytest.raises(ConfigError, match="namesrv_lookup_url"):
            parse_lookup_url(bad)


def test_an_answer_is_its_body_first_line_as_java_reads_it() -> None:
    assert parse_lookup_answer(http(200, b"10.0.0.1:9876;10.0.0.2:9876")) == (
        "10.0.0.1:9876",
        "10.0.0.2:9876",
    )
    assert parse_lookup_answer(http(200, b"  10.0.0.1:9876;\r\nignored\n")) == ("10.0.0.1:9876",)
    assert parse_lookup_answer(http(200, b"10.0.0.1:9876trailing", "Content-Length: 13\r\n")) == (
        "10.0.0.1:9876",
    )
    assert parse_lookup_answer(b"HTTP/1.0 200 OK\n\n10.0.0.3:1\n") == ("10.0.0.3:1",)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (http(500, b"10.0.0.1:9876"), "HTTP status 500"),
        (http(404, b""), "HTTP status 404"),
        (http(200, b""), "at least one"),
        (http(200, b"<html>not found</html>"), "expected host:port"),
        (http(200, b"10.0.0.1:70000"), "expected host:port"),
        (http(200, b"\xff\xfe"), "not UTF-8"),
        (http(200, b"10.0.0.1:9876", "Content-Length: 50\r\n"), "ended before"),
        (b"garbage without headers", "no end of headers"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
    ],
)
def test_an_unusable_answer_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(LookupAnswerError, match=why):
        parse_lookup_answer(raw)


# ---------------------------------------------------------------- configuration


def test_the_name_servers_come_from_the_argument_the_environment_or_a_lookup_url() -> None:
    env = {"NAMESRV_ADDR": "10.0.0.1:9876", "NAMESRV_LOOKUP_URL": URL}
    assert namesrv_source("10.0.0.2:9876", None, env) == ("10.0.0.2:9876", None)
    assert namesrv_source(None, None, env) == ("10.0.0.1:9876", None)  # Java: env before HTTP
    assert namesrv_source(None, None, {"NAMESRV_LOOKUP_URL": URL}) == ((), URL)
    assert namesrv_source(None, URL, env) == ((), URL)  # an explicit option beats the env
    with pytest.raises(ConfigError, match="not both"):
        namesrv_source("10.0.0.2:9876", URL, {})
    with pytest.raises(ConfigError, match="NAMESRV_LOOKUP_URL"):
        namesrv_source(None, None, {})


def test_a_client_configured_by_lookup_url_starts_with_no_list() -> None:
    settings = client_settings(
        None, {"namesrv_lookup_url": URL, "namesrv_lookup_interval": 1.0}, pid=1, nonce=2
    )
    assert settings.client.namesrv_addrs == ()
    assert settings.client.namesrv_lookup_url == URL
    assert settings.client.namesrv_lookup_interval == 1.0
    assert ClientCore(settings.client).namesrv_addrs == ()
    with pytest.raises(ConfigError, match="at least one"):
        ClientConfig(())
    with pytest.raises(ConfigError, match="namesrv_lookup_interval"):
        ClientConfig((), namesrv_lookup_url=URL, namesrv_lookup_interval=0)
    with pytest.raises(ConfigError, match="http://"):
        client_settings(None, {"namesrv_lookup_url": "https://h/x"}, pid=1, nonce=2)


# ------------------------------------------------------------------ the client core


def test_the_first_name_server_call_asks_the_lookup_url_first() -> None:
    cluster = Namesrvs()
    sim = LookupSim(cluster)
    client = lookup_client()
    result = sim.run(producer(client).send_flow(Message("T", b"x")))
    assert result is not None
    (_, asked), *more = sim.lookups.asked
    assert not more
    assert (asked.host, asked.port, asked.request) == (
        "127.0.0.1",
        8080,
        parse_lookup_url(URL).request(),
    )
    assert client.namesrv_addrs == (NAMESRV,)
    assert cluster.namesrv_calls == [NAMESRV]


@pytest.mark.parametrize(
    "failure",
    [
        http(500, b"oops"),
        http(200, b"<html>hello</html>"),
        ConnectionClosedError("connection refused"),
        RequestTimeoutError("timed out"),
    ],
    ids=["500", "garbage", "refused", "timeout"],
)
def test_a_failed_lookup_keeps_the_list_in_use(failure: bytes | Exception, caplog: Any) -> None:
    sim = LookupSim(Namesrvs())
    client = lookup_client()
    assert sim.run(client.lookup_namesrv_flow()) is True
    sim.lookups.answer = failure
    with caplog.at_level("WARNING", logger="rocketmq_proto.client"):
        assert sim.run(client.lookup_namesrv_flow()) is False
    assert client.namesrv_addrs == (NAMESRV,)
    assert "the name server list is unchanged" in caplog.text
    assert URL in caplog.text


def test_with_no_list_and_a_failed_lookup_a_call_fails_without_a_name_server() -> None:
    cluster = Namesrvs()
    sim = LookupSim(cluster)
    sim.lookups.answer = ConnectionClosedError("connection refused")
    client = lookup_client()
    with pytest.raises(ConnectionClosedError, match="no name server address yet"):
        sim.run(client.route_flow("T"))
    assert cluster.namesrv_calls == []
    sim.lookups.answer = http(200, NAMESRV.encode())
    assert sim.run(client.route_flow("T")).broker_datas  # the next call asks again
    assert len(sim.lookups.asked) == 2


def test_a_new_list_is_used_and_the_last_good_name_server_stays_first() -> None:
    cluster = Namesrvs()
    sim = LookupSim(cluster)
    client = lookup_client()
    sim.lookups.answer = http(200, f"{OTHER}".encode())
    sim.run(client.route_flow("A"))
    assert cluster.namesrv_calls == [OTHER]
    # Now NAMESRV is added first: OTHER answered last, so it is still tried first.
    sim.lookups.answer = http(200, f"{NAMESRV};{OTHER}".encode())
    assert sim.run(client.lookup_namesrv_flow()) is True
    assert client.namesrv_order() == [OTHER, NAMESRV]
    # OTHER disappears from the list: the new list is used, from its start.
    sim.lookups.answer = http(200, f"{NAMESRV}".encode())
    assert sim.run(client.lookup_namesrv_flow()) is True
    sim.run(client.route_flow("B"))
    assert cluster.namesrv_calls == [OTHER, NAMESRV]
    assert sim.run(client.lookup_namesrv_flow()) is False  # the same list: no change


def test_an_answer_from_a_name_server_dropped_meanwhile_is_still_used() -> None:
    client = ClientCore(ClientConfig((NAMESRV, OTHER)))
    flow = client.cluster_info_flow()
    effect = next(flow)
    assert isinstance(effect, Call) and effect.addr == NAMESRV
    client.set_namesrv_addrs([OTHER])  # a lookup answered while the call was out
    with pytest.raises(RocketMQError):  # the name server's error answer, as usual
        flow.send(RemotingCommand(1, {}, b"", flag=1))
    assert client.namesrv_order() == [OTHER]


def test_flows_needing_the_list_at_once_share_one_lookup() -> None:
    client = lookup_client()
    first = client.namesrv_list_flow()
    assert isinstance(next(first), Now)
    assert isinstance(first.send(100.0), HttpGet)
    second = client.namesrv_list_flow()
    assert isinstance(next(second), Now)
    assert isinstance(second.send(100.0), Sleep)  # waits for the first one's answer
    with pytest.raises(StopIteration) as done:
        first.send(http(200, NAMESRV.encode()))
    assert done.value.value == (NAMESRV,)
    assert isinstance(second.send(None), Now)
    with pytest.raises(StopIteration) as done:
        second.send(100.01)
    assert done.value.value == (NAMESRV,)


# ---------------------------------------------------------------------- schedule


def run_upkeep(client: ClientCore, sim: LookupSim, seconds: float) -> list[float]:
    start = sim.now
    sim.client = client
    sim.stop = lambda now: now - start >= seconds
    sim.run(client.maintenance_flow())
    return [when - start for when, _ in sim.lookups.asked]


def test_upkeep_looks_up_at_start_then_every_interval() -> None:
    sim = LookupSim(Namesrvs())
    client = lookup_client(namesrv_lookup_interval=10.0)
    times = run_upkeep(client, sim, 35.0)
    assert len(times) == 4
    assert times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(10.0 <= gap < 11.0 for gap in gaps), gaps


def test_the_default_interval_is_javas_two_minutes() -> None:
    sim = LookupSim(Namesrvs())
    client = lookup_client()
    times = run_upkeep(client, sim, 250.0)
    assert len(times) == 3
    assert all(120.0 <= b - a < 121.0 for a, b in itertools.pairwise(times))


def test_while_no_list_is_known_failed_lookups_are_retried_sooner() -> None:
    sim = LookupSim(Namesrvs())
    sim.lookups.answer = http(503, b"")
    client = lookup_client()
    times = run_upkeep(client, sim, 3 * LOOKUP_RETRY_INTERVAL + 1)
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(LOOKUP_RETRY_INTERVAL <= gap < LOOKUP_RETRY_INTERVAL + 1 for gap in gaps), gaps
    assert client.namesrv_addrs == ()


def test_a_client_with_addresses_never_asks_a_url() -> None:
    sim = LookupSim(Namesrvs())
    client = ClientCore(ClientConfig((NAMESRV,)))
    assert run_upkeep(client, sim, 300.0) == []
