"""The pull consumer suite (``tests/test_pull_consumer_broker.py``) run through the 5.x proxy, by
the sync driver: its clients take the proxy's remoting address as their name server.
The other drivers' smoke tests through the proxy are in ``test_deployments_broker.py``."""

from __future__ import annotations

from .cluster_fixture import through_proxy_fixtures
from .test_pull_consumer_broker import *  # noqa: F403

rocketmq_cluster, backend = through_proxy_fixtures()
