"""The pull consumer suite (``tests/test_pull_consumer_broker.py``) run through the 5.x proxy, by
the sync driver: its clients take the proxy's remoting address as their name server.
The other drivers' smoke tests through the proxy are in ``test_deployments_broker.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .backends import Backend
from .cluster_fixture import ThroughProxy
from .test_pull_consumer_broker import *  # noqa: F403


@pytest.fixture(scope="module")
def rocketmq_cluster(rocketmq_deployment_cluster: Any) -> ThroughProxy:
    return ThroughProxy(rocketmq_deployment_cluster)


@pytest.fixture(scope="module", params=["sync"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    made = Backend(request.param)
    try:
        yield made
    finally:
        made.close()
