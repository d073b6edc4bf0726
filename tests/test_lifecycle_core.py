"""Client lifecycles: every core moves created -> running -> closing -> closed, and
a wrong move raises LocalProtocolError naming the client."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rocketmq_proto.flows.admin import AdminCore
from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig, PullConsumerCore
from rocketmq_proto.flows.consumer.push import ConsumerConfig, PushConsumerCore
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner, LifecycleState
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore
from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.wire.codes import TransactionState
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import ConfigError, ConnectionClosedError, LocalProtocolError

from .flowsim import Sim

CREATED = LifecycleState.CREATED
RUNNING = LifecycleState.RUNNING
CLOSING = LifecycleState.CLOSING
CLOSED = LifecycleState.CLOSED

IDS = UniqueIdGenerator(bytes([10, 0, 0, 1]), 1, 1)


def client() -> ClientCore:
    return ClientCore(ClientConfig(("127.0.0.1:9876",), client_ip="10.0.0.1", instance_name="t"))


def producer() -> ProducerCore:
    return ProducerCore(client(), ProducerConfig(group="G"), IDS)


def push() -> PushConsumerCore:
    return PushConsumerCore(client(), ConsumerConfig(group="G"), lambda msgs: None, IDS)


def pull() -> PullConsumerCore:
    return PullConsumerCore(client(), PullConsumerConfig("G"))


CORES: dict[str, tuple[Callable[[], LifecycleOwner], str]] = {
    "client": (client, "client"),
    "producer": (producer, "producer"),
    "admin": (lambda: AdminCore(client()), "admin client"),
    "push consumer": (push, "push consumer"),
    "pull consumer": (pull, "pull consumer"),
}


def unreachable(addr: str, command: RemotingCommand) -> RemotingCommand:
    raise ConnectionClosedError(f"{addr} is down")


@pytest.fixture(params=sorted(CORES))
def core(request: pytest.FixtureRequest) -> tuple[LifecycleOwner, str]:
    make, what = CORES[request.param]
    return make(), what


def test_the_four_states_in_order(core: tuple[LifecycleOwner, str]) -> None:
    owner, _ = core
    assert owner.state is CREATED and not owner.running and not owner.closed
    owner.start()
    assert owner.state is RUNNING and owner.running and not owner.closed
    owner.begin_close()
    assert owner.state is CLOSING and owner.closed and not owner.running
    owner.finish_close()
    assert owner.state is CLOSED and owner.closed


def test_starting_twice_or_after_close_is_refused(core: tuple[LifecycleOwner, str]) -> None:
    owner, what = core
    owner.start()
    with pytest.raises(LocalProtocolError, match=f"cannot start the {what}: it is already running"):
        owner.start()
    owner.begin_close()
    with pytest.raises(LocalProtocolError, match=f"cannot start the {what}: it is closing"):
        owner.start()
    owner.finish_close()
    with pytest.raises(LocalProtocolError, match=f"cannot start the {what}: it is closed"):
        owner.start()
    assert owner.state is CLOSED


def test_closing_moves_only_forward(core: tuple[LifecycleOwner, str]) -> None:
    owner, what = core
    with pytest.raises(LocalProtocolError, match="begin_close\\(\\) comes first"):
        owner.finish_close()
    owner.start()
    with pytest.raises(LocalProtocolError, match="begin_close\\(\\) comes first"):
        owner.finish_close()
    owner.begin_close()
    with pytest.raises(LocalProtocolError, match=f"cannot close the {what}: it is already closing"):
        owner.begin_close()
    owner.finish_close()
    with pytest.raises(LocalProtocolError, match="already closed"):
        owner.begin_close()
    with pytest.raises(LocalProtocolError, match="already closed"):
        owner.finish_close()
    assert owner.state is CLOSED


def test_a_client_never_started_may_be_closed(core: tuple[LifecycleOwner, str]) -> None:
    owner, _ = core
    owner.begin_close()
    owner.finish_close()
    assert owner.state is CLOSED


def test_setting_closed_still_closes_at_once(core: tuple[LifecycleOwner, str]) -> None:
    """Drivers that still write ``closed = True`` close the core at once; a closed
    core cannot be reopened by writing ``False``."""
    owner, what = core
    owner.closed = False  # not closed: nothing to do
    assert owner.state is CREATED
    owner.start()
    owner.closed = True
    assert owner.state is CLOSED
    owner.closed = True  # stays closed
    with pytest.raises(LocalProtocolError, match=f"a closed {what} cannot be reopened"):
        owner.closed = False


def test_each_core_holds_its_own_lifecycle() -> None:
    session = client()
    producer_core = ProducerCore(session, ProducerConfig(group="G"), IDS)
    session.start()
    producer_core.start()
    producer_core.begin_close()
    assert session.state is RUNNING and producer_core.state is CLOSING


def test_the_session_upkeep_stops_once_closing_began() -> None:
    session = client()
    session.start()
    session.begin_close()
    sim = Sim(unreachable)
    sim.run(session.maintenance_flow())  # returns at once
    assert sim.calls == []


# ---------------------------------------------------------------- consumers


def test_the_push_consumer_starts_in_its_start_flow() -> None:
    consumer = push()
    with pytest.raises(ConfigError, match="subscribe"):
        Sim(unreachable).run(consumer.start_flow())
    assert consumer.state is CREATED  # it may still be started once subscribed
    consumer.subscribe("T")
    Sim(unreachable).run(consumer.start_flow())
    assert consumer.state is RUNNING


def test_the_push_consumer_start_flow_accepts_a_driver_that_started_it() -> None:
    consumer = push()
    consumer.subscribe("T")
    consumer.start()
    Sim(unreachable).run(consumer.start_flow())
    assert consumer.state is RUNNING


def test_a_closed_push_consumer_cannot_run_its_start_flow() -> None:
    consumer = push()
    consumer.subscribe("T")
    consumer.begin_close()
    consumer.finish_close()
    sim = Sim(unreachable)
    with pytest.raises(LocalProtocolError, match="push consumer: it is closed"):
        sim.run(consumer.start_flow())
    assert sim.calls == []


@pytest.mark.parametrize("driver_began", [False, True])
def test_the_push_consumer_shutdown_ends_closed(driver_began: bool) -> None:
    consumer = push()
    consumer.subscribe("T")
    sim = Sim(unreachable)
    sim.run(consumer.start_flow())
    if driver_began:
        consumer.begin_close()
    sim.run(consumer.shutdown_flow())
    assert consumer.state is CLOSED
    with pytest.raises(LocalProtocolError, match="already closed"):
        sim.run(consumer.shutdown_flow())


def test_a_push_consumer_shutdown_cut_short_still_ends_closed() -> None:
    """A driver that abandons the shutdown flow (cancelled, its task killed) finds
    the consumer closed all the same."""
    consumer = push()
    consumer.subscribe("T")
    Sim(unreachable).run(consumer.start_flow())
    flow = consumer.shutdown_flow()
    next(flow)  # the first effect: closing began
    assert consumer.state is CLOSING and consumer.closed
    flow.close()
    assert consumer.state is CLOSED


def test_the_pull_consumer_is_started_by_its_start_flow_and_closed_by_its_shutdown() -> None:
    consumer = pull()
    with pytest.raises(LocalProtocolError, match="before start"):
        consumer.check_started()
    assert not consumer.started
    sim = Sim(unreachable)
    sim.run(consumer.start_flow())
    assert consumer.state is RUNNING and consumer.started
    consumer.check_started()
    sim.run(consumer.shutdown_flow())
    assert consumer.state is CLOSED and consumer.started
    with pytest.raises(LocalProtocolError, match="pull consumer: it is closed"):
        sim.run(consumer.start_flow())


# ----------------------------------------------------------------- producer


def test_the_transaction_checker_is_set_by_a_method() -> None:
    core = producer()

    def checker(msg: object) -> TransactionState:
        return TransactionState.COMMIT

    assert core.transaction_checker is None
    with pytest.raises(ConfigError, match="callable"):
        core.set_transaction_checker("commit")  # type: ignore[arg-type]
    core.set_transaction_checker(checker)
    assert core.transaction_checker is checker
    core.transaction_checker = None  # the field write drivers still use
    assert core.transaction_checker is None
    core.transaction_checker = checker
    assert core.transaction_checker is checker
    core.begin_close()
    with pytest.raises(LocalProtocolError, match="producer is closing"):
        core.set_transaction_checker(checker)


def test_lifecycle_messages_name_the_client() -> None:
    cycle = Lifecycle("widget")
    cycle.begin_close()
    with pytest.raises(LocalProtocolError) as info:
        cycle.start()
    assert str(info.value) == (
        "cannot start the widget: it is closing (a closed widget cannot be started again)"
    )
