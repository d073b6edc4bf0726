"""The interop peers (``interop/``): building them and running their commands from tests.

``build_peers`` runs ``interop/build.sh``; a failed build fails the test that needed
the peers (it never skips it). ``PeerRun`` starts one peer process on a file of
commands (``peer run``, see interop/README.md), with every consumer and replier in
it stopped by one stop file, and collects the JSON lines it prints as they come: a
test can produce while a peer consumes, wait for the deliveries it expects, then stop
the peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

INTEROP = Path(__file__).resolve().parent.parent / "interop"
#: A cold build downloads the Java client and the Go modules.
BUILD_TIMEOUT = 1200.0


def build_peers(what: str = "all", java_version: str | None = None) -> dict[str, str]:
    """Build (or find up to date) the peers; return their commands by name ("java", "go")."""
    env = dict(os.environ)
    if java_version is not None:
        env["ROCKETMQ_VERSION"] = java_version
    try:
        done = subprocess.run(
            ["bash", str(INTEROP / "build.sh"), what],
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"interop/build.sh {what} did not run: {exc}", pytrace=False)
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    peers = {"java": found.get("JAVA_PEER"), "go": found.get("GO_PEER")}
    wanted = ("java", "go") if what == "all" else (what,)
    if done.returncode != 0 or any(not peers[name] for name in wanted):
        pytest.fail(
            f"interop/build.sh {what} failed (exit {done.returncode}):\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    return {name: str(peers[name]) for name in wanted}


@dataclass(frozen=True)
class Step:
    """One command of a ``peer run`` file: ``--name value`` options, in the background or not."""

    command: str
    options: tuple[tuple[str, str | None], ...]
    background: bool = False

    def line(self) -> str:
        fields = ["&"] if self.background else []
        fields.append(self.command)
        for name, value in self.options:
            fields.append(f"--{name}")
            if value is not None:
                fields.append(value)
        for field in fields:
            if "\t" in field or "\n" in field or "\r" in field:
                raise ValueError(f"a peer argument cannot hold a tab or a line break: {field!r}")
        return "\t".join(fields)


def step(command: str, *, background: bool = False, **options: Any) -> Step:
    """A ``Step``: ``tx_state="commit"`` is ``--tx-state commit``; a list repeats the option;
    True is a bare flag (``orderly=True``); None leaves the option out."""
    pairs: list[tuple[str, str | None]] = []
    for key, value in options.items():
        name = key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            pairs.append((name, None))
        elif isinstance(value, list | tuple):
            pairs.extend((name, str(v)) for v in value)
        else:
            pairs.append((name, str(value)))
    return Step(command, tuple(pairs), background)


class PeerRun:
    """A peer process running ``steps``; its output lines are collected by a thread.

    ``sleep`` is how the waiting methods pause (gevent's, under gevent). Consumers and
    repliers in ``steps`` should use ``count=0``: they stop when :meth:`stop` creates
    the stop file (or at ``timeout``).
    """

    def __init__(
        self,
        exe: str,
        namesrv: str,
        steps: Sequence[Step],
        workdir: Path,
        *,
        timeout: float = 180.0,
        sleep: Callable[[float], None] = time.sleep,
        env: Mapping[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.stop_file = workdir / "stop"
        self._sleep = sleep
        self._lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        run_file = workdir / "steps.run"
        run_file.write_text("".join(s.line() + "\n" for s in steps), encoding="utf-8")
        argv = [
            exe,
            "run",
            "--namesrv",
            namesrv,
            "--file",
            str(run_file),
            "--stop-file",
            str(self.stop_file),
            "--timeout-sec",
            str(int(timeout)),
        ]
        self._stderr_path = workdir / "stderr.log"
        self._stderr = open(self._stderr_path, "wb")  # noqa: SIM115 (closed in finish/kill)
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True, name="peer-stdout")
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "garbage", "text": raw[:200].decode("utf-8", "replace")}
            with self._lock:
                self._lines.append(line)

    # ----- reading the output

    def lines(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._lines)

    def steps(self) -> dict[str, dict[str, Any]]:
        """The end-of-command lines of the finished commands, by label."""
        return {x["label"]: x for x in self.lines() if x.get("event") == "step"}

    def produced(self, label: str) -> list[dict[str, Any]]:
        """A produce (or request) command's lines, by message index."""
        found = [x for x in self.lines() if x.get("label") == label and "index" in x]
        return sorted(found, key=lambda x: int(x["index"]))

    def consumed(self, label: str) -> list[dict[str, Any]]:
        """A consume (or reply) command's deliveries, in the order it printed them."""
        return [x for x in self.lines() if x.get("label") == label and "bodyHex" in x]

    def stderr_tail(self, size: int = 4000) -> str:
        try:
            return self._stderr_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    # ----- waiting

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``check`` until it returns something true; fail (with the peer's stderr)
        after ``timeout`` seconds or if the peer exits first."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if self._proc.poll() is not None:
                self._reader.join(5)
                value = check()
                if value:
                    return value
                raise AssertionError(
                    f"the peer exited ({self._proc.returncode}) before {what}\n{self.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n{self.stderr_tail()}"
                )
            self._sleep(0.1)

    def wait_ready(self, files: Iterable[Path], timeout: float = 90.0) -> None:
        wanted = list(files)
        self.wait(lambda: all(f.exists() for f in wanted), timeout, "the peer's consumers")

    def stop(self) -> None:
        """Ask the peer's consumers and repliers to finish."""
        self.stop_file.write_text("stop\n")

    def finish(self, timeout: float = 120.0) -> int:
        """Wait for the peer to exit (after its last command); return its exit code."""
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"the peer did not exit within {timeout} s\n{self.stderr_tail()}"
                )
            self._sleep(0.1)
        self._reader.join(10)
        self._stderr.close()
        return self._proc.returncode

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._reader.join(5)
        self._stderr.close()
