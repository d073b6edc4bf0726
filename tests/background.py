"""Long scenarios run in a child process while the rest of the suite goes on.

A scenario that mostly waits (a five-minute name-server outage) would hold the
whole run up; started when the tests are collected, it runs beside them, with
its own cluster, and the test that judges it reads what it printed. A scenario
no selected test needs is never started; one still running when the session
ends is killed (its cluster's servers die with it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"


@dataclass(frozen=True)
class Scenario:
    """A program of ``tests/programs`` with its arguments, for the tests named ``test``."""

    program: str
    args: tuple[str, ...]
    test: str  # a node id's suffix: "module.py::test_name"


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


class BackgroundRun:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        # Files, not pipes: a program printing much while nobody reads must not block.
        # They live as long as the run (closed by outcome() or kill()).
        self._out: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(PROGRAMS / scenario.program), *scenario.args],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def outcome(self, timeout: float) -> Outcome:
        """Wait for the program (killing it after ``timeout`` more seconds); what it printed."""
        try:
            returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            returncode = self.process.wait()
        self._out.seek(0)
        self._err.seek(0)
        outcome = Outcome(returncode, self._out.read(), self._err.read())
        self._close_files()
        return outcome

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_files()

    def _close_files(self) -> None:
        self._out.close()
        self._err.close()


#: Both name servers of a cluster dead for ``NAMESRV_OUTAGE_SECONDS`` (5 min by default),
#: then back empty for 45 s, under producers and consumers of the three drivers.
NAMESRV_OUTAGE = Scenario(
    "namesrv_outage.py",
    (os.environ.get("NAMESRV_OUTAGE_SECONDS", "300"), "45"),
    "test_namesrv_outage_broker.py::test_a_name_server_outage_fails_no_send_and_stalls_no_consumer",
)
SCENARIOS = [NAMESRV_OUTAGE]

_runs: dict[Scenario, BackgroundRun] = {}


def start_background_runs(items: list[pytest.Item]) -> None:
    """Start each scenario some collected test will judge."""
    for scenario in SCENARIOS:
        if scenario not in _runs and any(item.nodeid.endswith(scenario.test) for item in items):
            _runs[scenario] = BackgroundRun(scenario)


def background_run(scenario: Scenario) -> BackgroundRun:
    """The scenario's run, started now if the collection did not start it."""
    run = _runs.get(scenario)
    if run is None:
        run = _runs[scenario] = BackgroundRun(scenario)
    return run


def stop_background_runs() -> None:
    for run in _runs.values():
        run.kill()
