"""A send's timeout bounds the whole send, its route lookups included (core flows, virtual time)."""

from __future__ import annotations

from typing import Any

import pytest

from rocketmq_proto.flows.effects import Call, Flow, Now, Sleep, within
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import Message
from rocketmq_proto.wire.codes import RequestCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import RequestTimeoutError

from .flowsim import Sim
from .test_producer_core import Broker

SILENT = ("127.0.0.1:1", "127.0.0.1:2")  # name servers that never answer


class SilentNameServers(Sim):
    """A name server call takes its whole timeout and fails; the clock follows."""

    def __init__(self) -> None:
        super().__init__(Broker())
        self.timeouts: list[float] = []

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Call) and effect.addr in SILENT:
            self.calls.append((effect.addr, effect.command))
            self.timeouts.append(effect.timeout)
            self.now += effect.timeout
            raise RequestTimeoutError(f"no answer from {effect.addr} in {effect.timeout:g}s")
        return super().perform(effect)


def producer(namesrv: tuple[str, ...], request_timeout: float = 3.0) -> ProducerCore:
    client = ClientCore(
        ClientConfig(
            namesrv, client_ip="10.0.0.1", instance_name="t", request_timeout=request_timeout
        )
    )
    core = ProducerCore(client, ProducerConfig(group="G"), UniqueIdGenerator(bytes(4), 1, 2))
    core.register()
    return core


@pytest.mark.parametrize("batch", [False, True])
def test_a_send_to_silent_name_servers_ends_at_its_timeout(batch: bool) -> None:
    sim = SilentNameServers()
    core = producer(SILENT)  # 3 s a name server request: 6 s before the fix
    start = sim.now
    flow: Flow[Any] = (
        core.send_batch_flow([Message("T", b"x")], timeout=0.5)
        if batch
        else core.send_flow(Message("T", b"x"), timeout=0.5)
    )
    with pytest.raises(RequestTimeoutError):
        sim.run(flow)
    assert sim.now - start == pytest.approx(0.5)
    assert sim.timeouts == [pytest.approx(0.5)]  # the second name server is not even asked
    assert not [c for c in sim.calls if c[0] not in SILENT]


def test_a_send_waiting_for_another_sends_route_lookup_ends_at_its_timeout() -> None:
    core = producer(("127.0.0.1:9876",))
    fetching = core.client.route_flow("T", force=True)
    assert isinstance(fetching.send(None), Now)
    assert isinstance(fetching.send(100.0), Call)  # its name server request is under way
    sim = Sim(Broker(), now=100.0)
    with pytest.raises(RequestTimeoutError):
        sim.run(core.send_flow(Message("T", b"x"), timeout=0.2))
    assert 100.2 <= sim.now < 100.21  # polled for the shared answer, no longer
    assert not sim.calls


def test_within_cuts_calls_and_sleeps_and_passes_results_and_errors_through() -> None:
    seen: list[object] = []

    def inner() -> Flow[str]:
        response = yield Call("a:1", RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC), 5.0)
        seen.append(response)
        yield Sleep(10.0)
        try:
            yield Call("a:1", RemotingCommand(RequestCode.GET_ROUTEINFO_BY_TOPIC), 5.0)
        except RequestTimeoutError as exc:
            seen.append(exc)
        return "done"

    outer = within(inner(), 103.0, "test")
    assert isinstance(outer.send(None), Now)
    call = outer.send(100.0)
    assert isinstance(call, Call) and call.timeout == 3.0
    assert isinstance(outer.send("answer"), Now)
    sleep = outer.send(101.0)
    assert isinstance(sleep, Sleep) and sleep.seconds == 2.0
    assert isinstance(outer.send(None), Now)
    with pytest.raises(StopIteration) as done:
        outer.send(103.0)  # no time left: the call is not made, the inner flow gets the error
    assert done.value.value == "done"
    assert seen[0] == "answer" and isinstance(seen[1], RequestTimeoutError)
