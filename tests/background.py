"""Long scenarios run in a child process while the rest of the suite goes on.

A scenario that mostly waits (a five-minute name-server outage) would hold the
whole run up; started when the tests are collected, it runs beside them, with
its own cluster, and the test that judges it reads what it printed. A scenario
no selected test needs is never started; one still running when the session
ends is killed (its cluster's servers die with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
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
    """Start each scenario some collected test will judge (in a run spread over
    pytest-xdist workers, the controller starts them instead: see
    :func:`start_shared_runs`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for scenario in SCENARIOS:
        if scenario not in _runs and any(item.nodeid.endswith(scenario.test) for item in items):
            _runs[scenario] = BackgroundRun(scenario)


def background_run(scenario: Scenario) -> BackgroundRun | SharedRun:
    """The scenario's run: the one the controller of a spread run started, or this
    process's, started now if the collection did not start it."""
    shared = os.environ.get(SHARED_DIR_ENV)
    if shared and os.environ.get("PYTEST_XDIST_WORKER"):
        started = SharedRun(Path(shared), scenario)
        if started.pid_file.exists():
            return started
    run = _runs.get(scenario)
    if run is None:
        run = _runs[scenario] = BackgroundRun(scenario)
    return run


def stop_background_runs() -> None:
    for run in _runs.values():
        run.kill()


# -------------------------------------------------------- runs spread over workers

#: The directory the controller of a pytest-xdist run shares with its workers
#: (tests/cluster_fixture.py sets it).
SHARED_DIR_ENV = "ROCKETMQ_TESTS_SHARED_DIR"


class SharedRun:
    """A scenario the controller of a spread run started: its output, exit status
    and process id in files of the shared directory, for whichever worker runs the
    test that judges it."""

    def __init__(self, shared: Path, scenario: Scenario) -> None:
        stem = shared / Path(scenario.program).stem
        self.out_file = stem.with_suffix(".out")
        self.err_file = stem.with_suffix(".err")
        self.status_file = stem.with_suffix(".status")
        self.pid_file = stem.with_suffix(".pid")

    def outcome(self, timeout: float) -> Outcome:
        """Wait for the program's exit status (killing it after ``timeout`` more
        seconds); what it printed."""
        deadline = time.monotonic() + timeout
        while not self.status_file.exists():
            if time.monotonic() > deadline:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(self.pid_file.read_text()), signal.SIGKILL)
                deadline = time.monotonic() + 30.0
            time.sleep(0.5)
        return Outcome(
            int(self.status_file.read_text()),
            self.out_file.read_text(errors="replace"),
            self.err_file.read_text(errors="replace"),
        )


_shared: list[tuple[subprocess.Popen[bytes], threading.Thread]] = []


def start_shared_runs(shared: Path, node_ids: list[str]) -> None:
    """In the controller: start each scenario a test among ``node_ids`` judges, once,
    writing its output, and its exit status when it ends, into ``shared``."""
    for scenario in SCENARIOS:
        run = SharedRun(shared, scenario)
        if run.pid_file.exists() or not any(i.endswith(scenario.test) for i in node_ids):
            continue
        with open(run.out_file, "wb") as out, open(run.err_file, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, str(PROGRAMS / scenario.program), *scenario.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        run.pid_file.write_text(str(process.pid))

        def finish(process: subprocess.Popen[bytes] = process, run: SharedRun = run) -> None:
            status = process.wait()
            temporary = run.status_file.with_suffix(".tmp")
            temporary.write_text(str(status))
            temporary.replace(run.status_file)

        waiter = threading.Thread(target=finish, name=f"background {scenario.program}")
        waiter.daemon = True
        waiter.start()
        _shared.append((process, waiter))


def stop_shared_runs() -> None:
    """In the controller, at the end: kill the scenarios still running."""
    for process, waiter in _shared:
        if process.poll() is None:
            process.kill()
        waiter.join(10.0)
    _shared.clear()
