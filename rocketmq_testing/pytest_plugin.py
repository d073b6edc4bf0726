"""A pytest plugin: a real local RocketMQ cluster for your own tests.

pytest loads it by itself wherever ``rocketmq-remoting`` is installed beside pytest
(the ``testing`` extra, ``pip install 'rocketmq-remoting[testing]'``, brings pytest);
``-p no:rocketmq`` turns it off. Ask for the fixtures::

    def test_orders_are_sent(rocketmq_namesrv):
        with rocketmq_sync.Producer(rocketmq_namesrv, group="orders") as producer:
            producer.send(rocketmq_sync.Message("Orders", b"paid"))

``rocketmq_cluster`` (session scope) is the cluster: ``namesrv_addr``, ``brokers``
(name -> address), ``version``, and for a cluster the plugin started,
``stop_broker(name)`` / ``start_broker(name)``, ``stop_namesrv()`` /
``start_namesrv()``. ``rocketmq_namesrv`` is its name server address.

Which cluster:

- with ``ROCKETMQ_NAMESRV`` set (``host:port``, ``;`` between several), that one, as
  it is: nothing is started or stopped;
- otherwise one name server and two brokers (``broker-a``, ``broker-b``) of release
  ``--rocketmq-cluster-version`` (or ``ROCKETMQ_VERSION``, default
  :data:`~rocketmq_testing.cluster.DEFAULT_VERSION`), started on 127.0.0.1 by the
  first test that asks and stopped when the session ends. It needs Java 17 and
  Maven: the jars come from Maven Central once and are cached. Delay level *n*
  waits *n* seconds, so that retries and delayed messages come back quickly
  (``--rocketmq-cluster-default-delays`` keeps the broker's own levels). Under
  pytest-xdist each worker process starts a cluster of its own: start one with
  ``rocketmq-cluster up`` and name it in ``ROCKETMQ_NAMESRV`` instead.

A cluster that cannot be started fails the tests that need it (with the reason and
the servers' last log lines); it never skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from rocketmq_testing.cluster import (
    DEFAULT_VERSION,
    SHORT_MESSAGE_DELAY_LEVELS,
    ClusterError,
    ClusterInfo,
    LocalCluster,
    cluster_from_env,
)

__all__ = ["pytest_addoption", "rocketmq_cluster", "rocketmq_namesrv"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rocketmq", "a local RocketMQ cluster (rocketmq_testing)")
    group.addoption(
        "--rocketmq-cluster-version",
        default=None,
        help=f"RocketMQ release of the cluster started for the tests (default "
        f"$ROCKETMQ_VERSION or {DEFAULT_VERSION}); ignored with $ROCKETMQ_NAMESRV",
    )
    group.addoption(
        "--rocketmq-cluster-default-delays",
        action="store_true",
        default=False,
        help="keep the broker's own delay levels (1s 5s 10s 30s 1m ...) instead of "
        "level n waiting n seconds",
    )


@pytest.fixture(scope="session")
def rocketmq_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterInfo]:
    """The session's RocketMQ cluster: ``ROCKETMQ_NAMESRV``'s, or one started here."""
    try:
        external = cluster_from_env()
    except ClusterError as exc:
        pytest.fail(f"ROCKETMQ_NAMESRV names no usable cluster: {exc}", pytrace=False)
    if external is not None:
        yield external
        return
    config = request.config
    version = (
        config.getoption("rocketmq_cluster_version")
        or os.environ.get("ROCKETMQ_VERSION")
        or DEFAULT_VERSION
    )
    props: dict[str, str | int | float | bool] = {}
    if not config.getoption("rocketmq_cluster_default_delays"):
        props["messageDelayLevel"] = SHORT_MESSAGE_DELAY_LEVELS
    try:
        local = LocalCluster(version=version, extra_broker_props=props)
        local.start()
    except ClusterError as exc:
        pytest.fail(f"could not start a local RocketMQ {version} cluster: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def rocketmq_namesrv(rocketmq_cluster: ClusterInfo) -> str:
    """The name server address of :func:`rocketmq_cluster` (what clients are given)."""
    return rocketmq_cluster.namesrv_addr
