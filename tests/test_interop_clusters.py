"""The cross tests' smoke subset on the other clusters (see tests/test_interop.py for
the exchanges): on a 4.x cluster, with the Java peer built with that client release
and this client's asyncio driver, and on a cluster whose servers answer with the
ROCKETMQ header, with the gevent driver.

Apart from tests/test_interop.py because these use extra clusters: the modules that
do run one after another on one worker of a spread run (tests/conftest.py), and the
main cross tests, on the session cluster, need not wait for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .backends import Backend
from .cluster_fixture import V4_VERSION, launcher  # type: ignore[attr-defined]
from .peers import build_peers
from .test_interop import (
    DIRECTION_IDS,
    DIRECTIONS,
    Exchange,
    assert_same_message,
    deliveries,
    exchange_between,
    refusal,
    undeliverable,
)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def peers_v4() -> dict[str, str]:
    """The Java peer built with the 4.x cluster's client release, and the Go peer."""
    java = build_peers("java", java_version=V4_VERSION)
    go = build_peers("go")
    return {**java, **go}


@pytest.fixture(scope="module")
def peers_v5() -> dict[str, str]:
    """The peers for a 5.x cluster: the Java client of the pom's release, and the Go peer."""
    return build_peers("all")


@pytest.fixture(scope="module")
def asyncio_backend() -> Iterator[Backend]:
    made = Backend("asyncio")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def gevent_backend() -> Iterator[Backend]:
    made = Backend("gevent")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module", params=DIRECTIONS, ids=DIRECTION_IDS)
def exchange_v4(
    request: pytest.FixtureRequest,
    peers_v4: dict[str, str],
    rocketmq_v4_cluster: launcher.LocalCluster,
    asyncio_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Exchange:
    workdir = tmp_path_factory.mktemp("v4-" + "-".join(request.param))
    return exchange_between(
        request.param, peers_v4, rocketmq_v4_cluster, asyncio_backend, workdir, full=False
    )


@pytest.fixture(scope="module", params=DIRECTIONS, ids=DIRECTION_IDS)
def exchange_headers(
    request: pytest.FixtureRequest,
    peers_v5: dict[str, str],
    rocketmq_headers_cluster: launcher.LocalCluster,
    gevent_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Exchange:
    workdir = tmp_path_factory.mktemp("headers-" + "-".join(request.param))
    # This client and the Java peer send ROCKETMQ headers too; the Go client has only
    # JSON ones.
    return exchange_between(
        request.param,
        peers_v5,
        rocketmq_headers_cluster,
        gevent_backend,
        workdir,
        full=False,
        options={"serialize_type": "ROCKETMQ"},
        peer_env={"PEER_JAVA_OPTS": "-Drocketmq.serialize.type=ROCKETMQ"},
    )


def check_smoke(ex: Exchange) -> None:
    sent = ex.delivered()
    assert {s.label for s in sent} >= {"plain", "tag-unicode"}
    seen = deliveries(ex)
    assert set(seen) == {s.expected_id for s in sent}
    for s in sent:
        assert s.msg_id and seen[s.msg_id].msg_id == s.msg_id
        assert_same_message(ex, s, seen[s.msg_id])
    empty = ex.variants["empty"]
    expected = refusal(empty, ex.producer, ex.version)
    if expected is not None:
        assert re.search(expected, ex.refused["empty"]), ex.refused
    else:
        (s,) = ex.sent["empty"]
        if undeliverable(empty, ex.consumer, ex.version):
            # Sent last, it stops nothing else; it never came while the rest did.
            assert s.expected_id not in seen
        else:
            assert seen[s.expected_id].body == b""


def test_v4_smoke(exchange_v4: Exchange, rocketmq_v4_cluster: launcher.LocalCluster) -> None:
    assert exchange_v4.version == rocketmq_v4_cluster.version == V4_VERSION
    check_smoke(exchange_v4)


def test_rocketmq_header_smoke(exchange_headers: Exchange) -> None:
    check_smoke(exchange_headers)
