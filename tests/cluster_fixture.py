"""The session's real RocketMQ cluster, for the tests that ask for ``rocketmq_cluster``.

With ``ROCKETMQ_NAMESRV`` set, that cluster is used as it is (its brokers are read
from the name server's cluster info; ``ROCKETMQ_VERSION`` may name its release).
Otherwise ``scripts/cluster.py`` starts a name server and brokers ``broker-a`` and
``broker-b`` of release ``ROCKETMQ_VERSION`` (default: the launcher's), with
``messageDelayLevel`` = 1s 2s ... 18s (level n waits n seconds), and stops them when
the session ends. A cluster that cannot be started or reached fails the tests that
need it; it never skips them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))

import cluster as launcher  # type: ignore[import-not-found, unused-ignore]  # noqa: E402


@pytest.fixture(scope="session")
def rocketmq_cluster() -> Iterator[launcher.ClusterInfo]:
    """A running cluster: ``namesrv_addr``, ``brokers`` (name -> address), ``version``."""
    try:
        external = launcher.cluster_from_env()
    except launcher.ClusterError as exc:
        pytest.fail(f"the cluster named by ROCKETMQ_NAMESRV is unusable: {exc}", pytrace=False)
    if external is not None:
        yield external
        return
    local = launcher.LocalCluster(
        version=os.environ.get("ROCKETMQ_VERSION") or launcher.DEFAULT_VERSION,
        extra_broker_props={"messageDelayLevel": launcher.SHORT_MESSAGE_DELAY_LEVELS},
    )
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start the local RocketMQ cluster: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()
