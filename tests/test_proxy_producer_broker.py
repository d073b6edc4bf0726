"""The producer suite (``tests/test_producer_broker.py``) run through the 5.x proxy, by
the sync driver: its clients take the proxy's remoting address as their name server.
The other drivers' smoke tests through the proxy are in ``test_deployments_broker.py``."""

from __future__ import annotations

import pytest

from .backends import Backend
from .cluster_fixture import ThroughProxy, through_proxy_fixtures
from .test_producer_broker import *  # noqa: F403
from .test_producer_broker import unique

#: Tests of the suite that cannot pass through the proxy's remoting port, and why
#: (deselected by ``conftest.py``; what the proxy does instead is tested in
#: ``test_deployments_broker.py``).
NOT_THROUGH_PROXY = {
    "test_transactions[commit]": "the proxy answers the END_TRANSACTION after a send "
    "SUCCESS and forwards nothing: a transaction ends at the broker's check-back only",
    "test_transactions[rollback]": "as test_transactions[commit]",
    "test_check_back_commits_store_one_message_each": "the suite makes its topic without "
    "attributes (it runs on 4.x brokers too), so of message.type NORMAL, and the proxy "
    "refuses a transactional message to such a topic; check-backs through the proxy are "
    "tested by test_transactions[checkback-*] here and test_deployments_broker",
    "test_unknown_topic_without_autocreate_or_with_it": "the proxy creates no topic: a "
    "send to an unknown one is MESSAGE_ILLEGAL (expected type UNSPECIFIED)",
    "test_request_reply_round_trip": "the proxy's remoting port does not serve "
    "SEND_REPLY_MESSAGE_V2 (325): REQUEST_CODE_NOT_SUPPORTED",
}


rocketmq_cluster, backend = through_proxy_fixtures()


@pytest.fixture(scope="module")
def topic(rocketmq_cluster: ThroughProxy, backend: Backend) -> str:
    """The suite's topic, MIXED: the proxy checks each message's type (delayed,
    transactional, normal) against its topic's ``message.type``."""
    name = unique(f"ProducerT_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.admin_namesrv_addr) as admin:
        created = admin.create_topic(
            name, read_queue_nums=4, write_queue_nums=4, attributes={"+message.type": "MIXED"}
        )
    assert sorted(created) == sorted(rocketmq_cluster.brokers)
    return name
