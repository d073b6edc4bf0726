"""The watchdog of a test run spread over pytest-xdist workers.

    python tests/run_watchdog.py SHARED_DIR   (started by tests/conftest.py)

The controller of the run starts it with a pipe on its standard input and closes
the pipe when it has cleaned up; the pipe also closes when the controller dies
(killed, timed out, its terminal closed) before it could. Either way, once the
pipe is closed, this kills every process still carrying the run's mark (the
shared directory in its environment: the workers, and the servers of the
clusters they started, the session's among them), then removes the directory.
After an orderly end there is nothing left to kill.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

SHARED_DIR_ENV = "ROCKETMQ_TESTS_SHARED_DIR"


def marked_processes(mark: bytes) -> list[int]:
    """The processes whose environment holds ``mark`` (``NAME=value``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if mark in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def main() -> int:
    shared = Path(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the controller's to handle
    sys.stdin.buffer.read()  # until the controller closes the pipe, or dies
    mark = f"{SHARED_DIR_ENV}={shared}".encode()
    for pid in marked_processes(mark):
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
