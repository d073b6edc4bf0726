"""A real local Apache RocketMQ cluster for tests: the launcher (:mod:`.cluster`,
also the ``rocketmq-cluster`` command) and a pytest plugin (:mod:`.pytest_plugin`,
the ``rocketmq_cluster`` fixture), with the ``testing`` extra.

It needs Java 17 and Maven: the name server and brokers run from the jars of
``org.apache.rocketmq`` that Maven resolves from Maven Central once per release
and caches (``~/.cache/rocketmq-py-cluster``). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

from rocketmq_testing.cluster import (
    DEFAULT_VERSION,
    SHORT_MESSAGE_DELAY_LEVELS,
    AclUser,
    ClusterError,
    ClusterInfo,
    ExternalCluster,
    LocalCluster,
    TlsOptions,
    cluster_from_env,
)

__all__ = [
    "DEFAULT_VERSION",
    "SHORT_MESSAGE_DELAY_LEVELS",
    "AclUser",
    "ClusterError",
    "ClusterInfo",
    "ExternalCluster",
    "LocalCluster",
    "TlsOptions",
    "cluster_from_env",
]
