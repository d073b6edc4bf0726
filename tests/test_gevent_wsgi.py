"""gevent workers: a pywsgi app sharing one gevent Producer, with and without monkey-patching."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync

PROGRAM = Path(__file__).resolve().parent / "programs" / "gevent_wsgi.py"
REQUESTS = 200

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("mode", ["nopatch", "patch"])
def test_wsgi_handlers_share_one_producer_without_blocking_the_hub(
    rocketmq_cluster: Any, mode: str
) -> None:
    topic = f"Wsgi_{mode}_{uuid.uuid4().hex[:8]}"
    with rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
    run = subprocess.run(
        [sys.executable, str(PROGRAM), rocketmq_cluster.namesrv_addr, topic, str(REQUESTS), mode],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == []
    assert outcome["produced"] == REQUESTS
    assert outcome["blocked"] == [], "the hub was blocked: " + "; ".join(outcome["blocked"])
    assert len(set(outcome["ids"])) == REQUESTS
    # Every acknowledged message is on the brokers.
    with rocketmq_sync.Admin(rocketmq_cluster.namesrv_addr) as admin:
        stored = sum(o.max_offset - o.min_offset for o in admin.topic_offsets(topic))
    assert stored == REQUESTS
