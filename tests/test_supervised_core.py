"""The core's supervisor of upkeep flows: a failure is logged and the flow restarted."""

from __future__ import annotations

import logging

import pytest

from rocketmq_proto.flows.effects import UPKEEP_RESTART_DELAY, Flow, Sleep, supervised

from .flowsim import Sim

log = logging.getLogger("test.supervised")


def test_a_failing_upkeep_is_logged_with_its_traceback_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[float] = []
    stopped = False

    def upkeep() -> Flow[None]:
        nonlocal stopped
        runs.append(sim.now)
        yield Sleep(0.5)
        if len(runs) == 1:
            raise KeyError("a bug in the upkeep")
        stopped = True  # the client closed: the flow returns

    sim = Sim(lambda addr, command: command)
    with caplog.at_level("ERROR", logger="test.supervised"):
        sim.run(supervised(upkeep, lambda: stopped, "pull consumer upkeep", log))
    assert len(runs) == 2
    assert runs[1] - runs[0] == pytest.approx(0.5 + UPKEEP_RESTART_DELAY)
    (record,) = caplog.records
    assert record.getMessage() == "pull consumer upkeep failed; restarting it in 1 s"
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_an_upkeep_ending_while_not_stopped_is_restarted_and_one_stopped_is_not() -> None:
    runs = 0
    stopped = False

    def upkeep() -> Flow[None]:
        nonlocal runs, stopped
        runs += 1
        stopped = runs == 3
        yield Sleep(0.1)

    sim = Sim(lambda addr, command: command)
    sim.run(supervised(upkeep, lambda: stopped, "upkeep", log))
    assert runs == 3
    # Stopped before it starts: never run.
    sim.run(supervised(upkeep, lambda: True, "upkeep", log))
    assert runs == 3
