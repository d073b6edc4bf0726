"""The main job (the README's first command, ``bash scripts/main.sh``): what it
runs, ``examples/main_job.py``, run as a user runs it, against the real cluster.

``scripts/main.sh`` is ``scripts/bootstrap.sh`` (the set-up every run of the suite
does first) and then the job itself; the job here gets the session cluster through
``ROCKETMQ_NAMESRV``, as the README says it may, and must send and receive every
message with each driver and say so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_main_sh_runs_the_bootstrap_then_the_job() -> None:
    lines = [
        line
        for line in (ROOT / "scripts" / "main.sh").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[-2:] == [
        "bash scripts/bootstrap.sh",
        'exec .venv/bin/python examples/main_job.py "$@"',
    ]


@pytest.mark.broker
def test_the_main_job_sends_and_receives_with_every_driver(
    rocketmq_cluster: Any, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NAMESRV_ADDR", "PYTHONPATH")}
    env["ROCKETMQ_NAMESRV"] = rocketmq_cluster.namesrv_addr
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "main_job.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"{run.stdout[-4000:]}\n--- stderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, output
    assert f"name server {rocketmq_cluster.namesrv_addr}" in run.stdout, output
    for driver in ("asyncio", "sync", "gevent"):
        match = re.search(
            rf"^{driver} +sent (\d+) and received (\d+) messages \(all match\)",
            run.stdout,
            re.MULTILINE,
        )
        assert match and match.group(1) == match.group(2) != "0", output
    assert run.stdout.rstrip().endswith("done: every backend sent and received every message")
