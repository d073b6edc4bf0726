"""The consumer suite (``tests/test_consumer_broker.py``) run through the 5.x proxy, by
the sync driver: its clients take the proxy's remoting address as their name server.
The other drivers' smoke tests through the proxy are in ``test_deployments_broker.py``."""

from __future__ import annotations

from typing import Any

import pytest

from .cluster_fixture import through_proxy_fixtures
from .test_consumer_broker import *  # noqa: F403

#: Tests of the suite that cannot pass through the proxy's remoting port, and why
#: (deselected by ``conftest.py``; what the proxy does instead is tested in
#: ``test_deployments_broker.py``).
NOT_THROUGH_PROXY = {
    "test_failed_message_is_retried_with_growing_reconsume_times": "it waits for the "
    "group's retry topic before sending; through the proxy that topic exists only once "
    "a first message was sent back (a heartbeat makes none), and the proxy's route cache "
    "(refreshed every 20 s) tells it later still: test_deployments_broker's retry test",
    "test_always_failing_message_goes_to_the_dead_letter_queue": "as "
    "test_failed_message_is_retried_with_growing_reconsume_times",
}


rocketmq_cluster, backend = through_proxy_fixtures()


@pytest.fixture
def rebalance_options() -> dict[str, Any]:
    """The proxy does not tell a group's remoting consumers when one joins or leaves
    (it forwards no NOTIFY_CONSUMER_IDS_CHANGED): they find out at their periodic
    rebalance, every 20 s by default. The rebalance test's consumers look every 3 s."""
    return {"rebalance_interval": 3.0}
