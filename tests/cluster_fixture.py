"""The session's real RocketMQ cluster, for the tests that ask for ``rocketmq_cluster``.

With ``ROCKETMQ_NAMESRV`` set, that cluster is used as it is (its brokers are read
from the name server's cluster info; ``ROCKETMQ_VERSION`` may name its release).
Otherwise ``scripts/cluster.py`` starts a name server and brokers ``broker-a`` and
``broker-b`` of release ``ROCKETMQ_VERSION`` (default: the launcher's), with
``messageDelayLevel`` = 1s 2s ... 18s (level n waits n seconds), and stops them when
the session ends. A cluster that cannot be started or reached fails the tests that
need it; it never skips them.

Two more clusters are shared by the modules that test against them:
``rocketmq_v4_cluster`` (a 4.x release, ``ROCKETMQ_V4_VERSION``, default 4.9.7, with the
same short delay levels) and ``rocketmq_headers_cluster`` (the default release, its
servers answering with the ROCKETMQ binary header). Each is started by the first test
that needs it and stopped right after the last one: ``group_extra_cluster_users`` (run
by conftest when the tests are collected) puts the tests that use one next to each
other, and ``stop_extra_clusters_after`` (after each test) stops a cluster no test
left needs. So at most one of them runs at a time, besides the session's cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(_SCRIPTS))

import cluster as launcher  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from .background import SHARED_DIR_ENV  # noqa: E402

#: The 4.x release of ``rocketmq_v4_cluster``: 4.9.7 is the newest 4.x whose name server
#: and broker jars Maven Central serves (4.9.8's are missing there).
V4_VERSION = os.environ.get("ROCKETMQ_V4_VERSION") or "4.9.7"

#: The shared extra clusters (fixture names), started on first use, stopped after last use.
EXTRA_CLUSTERS = ("rocketmq_v4_cluster", "rocketmq_headers_cluster", "rocketmq_deployment_cluster")
_running_extra: dict[str, launcher.LocalCluster] = {}
_last_user: dict[str, str] = {}


def _extra_cluster(
    name: str, local: launcher.LocalCluster, what: str
) -> Iterator[launcher.LocalCluster]:
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start the {what}: {exc}", pytrace=False)
    _running_extra[name] = local
    try:
        yield local
    finally:
        _stop_extra(name)


def _stop_extra(name: str) -> None:
    local = _running_extra.pop(name, None)
    if local is not None:
        local.stop()


def group_extra_cluster_users(items: list[pytest.Item]) -> None:
    """Reorder ``items`` so the tests using one extra cluster run one after another.

    They all move to where the first of them is (keeping their order); the others keep
    theirs. Then record each cluster's last user, after which it is stopped.
    """
    for name in EXTRA_CLUSTERS:
        users = [item for item in items if name in getattr(item, "fixturenames", ())]
        if not users:
            continue
        first = items.index(users[0])
        others = [item for item in items if name not in getattr(item, "fixturenames", ())]
        items[:] = others[:first] + users + others[first:]
        _last_user[name] = users[-1].nodeid


def stop_extra_clusters_after(item: pytest.Item) -> None:
    """Stop the extra clusters whose last user ``item`` was (its fixtures are torn down)."""
    for name, nodeid in _last_user.items():
        if nodeid == item.nodeid:
            _stop_extra(name)


@pytest.fixture(scope="session")
def rocketmq_v4_cluster() -> Iterator[launcher.LocalCluster]:
    """A running 4.x cluster (``V4_VERSION``): ``namesrv_addr``, ``brokers``, ``version``."""
    local = launcher.LocalCluster(
        version=V4_VERSION,
        extra_broker_props={"messageDelayLevel": launcher.SHORT_MESSAGE_DELAY_LEVELS},
    )
    yield from _extra_cluster("rocketmq_v4_cluster", local, f"RocketMQ {V4_VERSION} cluster")


@pytest.fixture(scope="session")
def rocketmq_headers_cluster() -> Iterator[launcher.LocalCluster]:
    """A running cluster whose servers answer with the ROCKETMQ binary header."""
    local = launcher.LocalCluster(serialize_type="ROCKETMQ")
    yield from _extra_cluster("rocketmq_headers_cluster", local, "ROCKETMQ-header cluster")


_SESSION_STATE = "session-cluster.json"


def _session_cluster(**kw: Any) -> launcher.LocalCluster:
    return launcher.LocalCluster(
        version=os.environ.get("ROCKETMQ_VERSION") or launcher.DEFAULT_VERSION,
        extra_broker_props={"messageDelayLevel": launcher.SHORT_MESSAGE_DELAY_LEVELS},
        **kw,
    )


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
    shared = os.environ.get(SHARED_DIR_ENV)
    if shared and os.environ.get("PYTEST_XDIST_WORKER"):
        yield shared_session_cluster(Path(shared))
        return
    yield from running(_session_cluster(), "local RocketMQ cluster")


def shared_session_cluster(shared: Path) -> launcher.LocalCluster:
    """The session cluster of a run spread over workers: started by the first worker
    that needs it (the others wait on a lock, then attach to it), left running when
    that worker ends, and stopped by the controller (:func:`stop_shared_session_cluster`)."""
    failed = shared / "session-cluster.failed"
    with launcher._file_lock(shared / "session-cluster.lock"):
        if failed.exists():  # one worker's try is every worker's answer
            pytest.fail(failed.read_text(encoding="utf-8"), pytrace=False)
        state = launcher._load_state(shared / _SESSION_STATE)
        if state is None:
            # Not tied to this worker: the controller stops it at the end, or the
            # run's watchdog (tests/run_watchdog.py) kills it if the run dies.
            local = _session_cluster(die_with_parent=False)
            try:
                local.start()
            except launcher.ClusterError as exc:
                message = f"could not start the local RocketMQ cluster: {exc}"
                failed.write_text(message, encoding="utf-8")
                pytest.fail(message, pytrace=False)
            local.detach()
            state = local.to_state()
            launcher._write_state(shared / _SESSION_STATE, state)
    return launcher.LocalCluster.attach(state)


def stop_shared_session_cluster(shared: Path) -> None:
    """Stop the session cluster a worker started for the run (if one did)."""
    state = launcher._load_state(shared / _SESSION_STATE)
    if state is not None:
        launcher.LocalCluster.attach(state).stop()


def running(local: launcher.LocalCluster, what: str) -> Iterator[launcher.LocalCluster]:
    """A fixture's body: ``local`` started (the test fails, saying so, if it cannot
    be), and stopped after its tests."""
    try:
        local.start()
    except launcher.ClusterError as exc:
        pytest.fail(f"could not start the {what}: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def rocketmq_deployment_cluster() -> Iterator[launcher.LocalCluster]:
    """A running cluster as deployed for real: two name servers, masters ``broker-a``
    and ``broker-b`` with a slave each (``slaveReadEnable=true``), and the 5.x proxy
    in cluster mode (``proxy_addr``, its remoting port)."""
    local = launcher.LocalCluster(
        version=launcher.DEFAULT_VERSION,
        namesrv_count=2,
        proxy=True,
        slaves=True,
        slave_read_enable=True,
        extra_broker_props={
            "messageDelayLevel": launcher.SHORT_MESSAGE_DELAY_LEVELS,
            # Topics of message.type MIXED (the proxy checks each message's type).
            "enableMixedMessageType": "true",
            # The launcher's brokers check a half message every second, and give up
            # after transactionCheckMax checks (15 by default). Through the proxy a
            # new producer group can be asked only after the proxy's transaction
            # heartbeat names it to the brokers (every 20 s): 15 s is too short.
            "transactionCheckMax": "100",
        },
    )
    yield from _extra_cluster(
        "rocketmq_deployment_cluster", local, "proxy + slaves + two name servers cluster"
    )


def admin_addr(cluster: Any) -> str:
    """Where a test's ``Admin`` finds the name servers: the cluster's own, even when
    its other clients go through the proxy (which serves no admin requests)."""
    return str(getattr(cluster, "admin_namesrv_addr", cluster.namesrv_addr))


class ThroughProxy:
    """``cluster`` as its clients see it through the proxy: the proxy's remoting
    address is their name server (and every broker's address in the routes)."""

    def __init__(self, cluster: launcher.LocalCluster) -> None:
        assert cluster.proxy_addr is not None
        self.cluster = cluster
        self.namesrv_addr: str = cluster.proxy_addr
        self.admin_namesrv_addr: str = cluster.namesrv_addr
        self.brokers: dict[str, str] = dict(cluster.brokers)
        self.version: str = cluster.version


def through_proxy_fixtures() -> tuple[Any, Any]:
    """The two fixtures a suite's module run through the proxy overrides: its
    ``rocketmq_cluster`` (:class:`ThroughProxy` of the deployment cluster) and its
    ``backend`` (the sync driver only). Use: ``rocketmq_cluster, backend =
    through_proxy_fixtures()``."""

    @pytest.fixture(scope="module", name="rocketmq_cluster")
    def cluster(rocketmq_deployment_cluster: launcher.LocalCluster) -> ThroughProxy:
        return ThroughProxy(rocketmq_deployment_cluster)

    @pytest.fixture(scope="module", name="backend")
    def backend() -> Iterator[Any]:
        from .backends import opened

        yield from opened("sync")

    return cluster, backend
