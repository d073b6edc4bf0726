"""Authentication against real brokers of both lines, for each driver.

5.x runs ACL 2.0 (``authenticationEnabled``, a Super user made by
``initAuthenticationUser``); 4.x runs ACL 1.0 (``aclEnable`` and
``plain_acl.yml`` with one admin account). ``scripts/cluster.py`` sets both up with
the user of :class:`AclUser`. The right credentials are accepted (messages sent and
read back); a wrong secret, an unknown access key or no credentials at all are
refused with an :class:`AuthenticationError` that says so.

The 4.x line is 4.9.7, the newest 4.x release whose name server and broker jars
Maven Central serves (4.9.8's are missing there); ``ROCKETMQ_V4_VERSION`` picks
another.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rocketmq_proto import AuthenticationError, Message, MessageExt, RocketMQError, SendStatus
from rocketmq_proto.wire.errors import QueryNotFoundError

from .backends import BACKENDS, Backend
from .cluster_fixture import launcher  # type: ignore[attr-defined]

pytestmark = pytest.mark.broker

V4 = os.environ.get("ROCKETMQ_V4_VERSION") or "4.9.7"
LINES = {"v5": launcher.DEFAULT_VERSION, "v4": V4}
USER = launcher.AclUser()
# The machine running these may be loaded (2 shared cores): successful paths get
# generous limits; refusals must come within SEND_TIMEOUT.
ADMIN_TIMEOUT = 20.0
OK_LIMITS = {"send_timeout": 20.0, "request_timeout": 20.0}
SEND_TIMEOUT = 8.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class _OneClusterAtATime:
    """Starts the cluster of one broker line at a time (stopping the other's first)."""

    def __init__(self) -> None:
        self.current: tuple[str, launcher.LocalCluster] | None = None
        self.failed: dict[str, str] = {}

    def get(self, line: str) -> launcher.LocalCluster:
        if self.current is not None and self.current[0] == line:
            return self.current[1]
        if line in self.failed:
            pytest.fail(self.failed[line], pytrace=False)
        self.stop()
        local = launcher.LocalCluster(version=LINES[line], acl=USER)
        try:
            local.start()
        except launcher.ClusterError as exc:
            self.failed[line] = f"could not start the ACL cluster {LINES[line]}: {exc}"
            pytest.fail(self.failed[line], pytrace=False)
        self.current = (line, local)
        return local

    def stop(self) -> None:
        if self.current is not None:
            _, local = self.current
            self.current = None
            local.stop()


@pytest.fixture(scope="module")
def _clusters() -> Iterator[_OneClusterAtATime]:
    made = _OneClusterAtATime()
    try:
        yield made
    finally:
        made.stop()


# One parametrisation over (line, driver), lines outermost, so that each line's cluster
# starts once (two module-scoped parametrised fixtures would make pytest interleave them).
COMBOS = [(line, name) for line in LINES for name in BACKENDS]


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{line}-{name}" for line, name in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def backend(combo: tuple[str, str]) -> Iterator[Backend]:
    """Overrides conftest's: the driver of this (line, driver) pair."""
    made = Backend(combo[1])
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def acl_cluster(_clusters: _OneClusterAtATime, combo: tuple[str, str]) -> launcher.LocalCluster:
    """The authenticating cluster of this pair's broker line (ACL on, user ``USER``)."""
    return _clusters.get(combo[0])


def creds(access_key: str = USER.access_key, secret_key: str = USER.secret_key) -> dict[str, str]:
    return {"access_key": access_key, "secret_key": secret_key}


@pytest.fixture(scope="module")
def admin(acl_cluster: launcher.LocalCluster, backend: Backend) -> Iterator[Any]:
    with backend.open(
        "Admin", acl_cluster.namesrv_addr, request_timeout=ADMIN_TIMEOUT, **creds()
    ) as made:
        yield made


@pytest.fixture(scope="module")
def topic(acl_cluster: launcher.LocalCluster, admin: Any, backend: Backend) -> str:
    name = unique(f"AuthT_{backend.name}")
    created = admin.create_topic(name, read_queue_nums=2, write_queue_nums=2)
    assert sorted(created) == sorted(acl_cluster.brokers)
    return name


def test_right_credentials_send_and_read_back(
    acl_cluster: launcher.LocalCluster, backend: Backend, admin: Any, topic: str
) -> None:
    with backend.open(
        "Producer", acl_cluster.namesrv_addr, group=unique("authok"), **OK_LIMITS, **creds()
    ) as producer:
        for i in range(4):
            msg = Message(
                topic,
                b"signed %d \x00\xff" % i,
                tags="T",
                keys=[unique("k")],
                properties={"p": "ü"},
            )
            result = producer.send(msg)
            assert result.status is SendStatus.SEND_OK
            stored = admin.view_message(result.offset_msg_id)
            assert stored.body == msg.body and stored.keys == msg.keys
            assert stored.properties["p"] == "ü"
        batch = [Message(topic, b"batch %d" % i) for i in range(3)]
        result = producer.send_batch(batch)
        for msg, offset_id in zip(batch, result.offset_msg_id.split(","), strict=True):
            assert admin.view_message(offset_id).body == msg.body
        # A lookup through the key index (QUERY_MESSAGE by key).
        key = unique("idx")
        producer.send(Message(topic, b"by key", keys=[key]))
        found = backend.wait_for(lambda: admin.query_messages(topic, key), 20, "the key index")
        assert found[0].body == b"by key"


# 4.9.x brokers (PlainAccessValidator.parse) always leave the ``_UNIQUE_KEY_QUERY`` field
# of QUERY_MESSAGE out of the signature they check; 5.x brokers only for requests that
# announce version <= V4_9_3. The client's lookup by UNIQ_KEY does not send that flag (it
# queries the key index and keeps the exact UNIQ_KEY), so it is signed alike for both.


def test_lookup_by_unique_key_is_signed_as_the_broker_checks_it(
    combo: tuple[str, str],
    acl_cluster: launcher.LocalCluster,
    backend: Backend,
    admin: Any,
    topic: str,
) -> None:
    with backend.open(
        "Producer", acl_cluster.namesrv_addr, group=unique("authuniq"), **OK_LIMITS, **creds()
    ) as producer:
        sent = producer.send(Message(topic, b"by uniq key", keys=[unique("k")]))

    def lookup() -> MessageExt | None:
        try:
            found: MessageExt = admin.view_message(sent.msg_id, topic)
            return found
        except QueryNotFoundError:
            return None  # not indexed yet

    found = backend.wait_for(lookup, 30, "the message by its UNIQ_KEY")
    assert found.body == b"by uniq key"


def _refused(
    backend: Backend, acl_cluster: launcher.LocalCluster, topic: str, **options: Any
) -> AuthenticationError:
    """A send with these credentials: it must fail with an AuthenticationError, promptly."""
    with backend.open(
        "Producer",
        acl_cluster.namesrv_addr,
        group=unique("authbad"),
        send_timeout=SEND_TIMEOUT,
        **options,
    ) as producer:
        began = time.monotonic()
        with pytest.raises(RocketMQError) as info:
            producer.send(Message(topic, b"must not be stored"))
        elapsed = time.monotonic() - began
    error = info.value
    print(
        f"\n[{acl_cluster.version} {backend.name}] {type(error).__name__}: {error} "
        f"(code {getattr(error, 'code', None)}, remark {getattr(error, 'remark', None)!r})"
    )
    assert isinstance(error, AuthenticationError), repr(error)
    assert not error.retriable
    assert elapsed < SEND_TIMEOUT + 2.0
    return error


def _assert_clear(error: AuthenticationError) -> None:
    text = str(error).lower()
    assert error.remark, "the broker's reason is kept"
    assert any(word in text for word in ("auth", "signature", "access", "user", "permission"))
    assert USER.secret_key not in str(error)


def test_wrong_secret_is_refused(
    acl_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    error = _refused(backend, acl_cluster, topic, **creds(secret_key="wrong-secret-1"))
    _assert_clear(error)


def test_unknown_access_key_is_refused(
    acl_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    error = _refused(
        backend, acl_cluster, topic, **creds(access_key="nobody", secret_key="x1234567")
    )
    _assert_clear(error)


def test_missing_credentials_are_refused(
    acl_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    error = _refused(backend, acl_cluster, topic)
    _assert_clear(error)


def test_admin_with_wrong_secret_is_refused_by_the_broker(
    acl_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    with (
        backend.open(
            "Admin",
            acl_cluster.namesrv_addr,
            request_timeout=ADMIN_TIMEOUT,
            **creds(secret_key="wrong-secret-2"),
        ) as bad_admin,
        pytest.raises(AuthenticationError) as info,
    ):
        bad_admin.create_topic(unique("AuthDenied"))
    _assert_clear(info.value)


def test_name_server_answers_without_credentials(
    acl_cluster: launcher.LocalCluster, backend: Backend, topic: str
) -> None:
    """The name servers do not authenticate (neither line): routes are readable by anyone,
    so a refused client is refused by the broker, with the broker's reason."""
    with backend.open(
        "Admin", acl_cluster.namesrv_addr, request_timeout=ADMIN_TIMEOUT
    ) as anonymous:
        route = anonymous.topic_route(topic)
        assert sorted(b.broker_name for b in route.broker_datas) == sorted(acl_cluster.brokers)
        assert set(anonymous.cluster_info().broker_addr_table) == set(acl_cluster.brokers)
