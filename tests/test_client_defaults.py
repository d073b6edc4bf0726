"""Defaults a Python user expects, in every driver: host address, NAMESRV_ADDR,
reserved group names, options in seconds (older names too), a clear error for
poll() before start()."""

from __future__ import annotations

import socket
import threading
import uuid
from typing import Any

import pytest

from rocketmq_proto import (
    ConfigError,
    Hook,
    InvalidMessageError,
    InvalidPropertyError,
    InvalidTopicError,
    LocalProtocolError,
    Message,
    MessageExt,
    RequestContext,
    SendStatus,
)
from rocketmq_proto.options import (
    RESERVED_CONSUMER_GROUPS,
    choose_client_ip,
    ip_bytes,
    namesrv_addrs,
)

from .backends import Backend

NAMESRV = "127.0.0.1:9876"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def host_module(backend: Backend) -> Any:
    """The driver's host-address lookup (gevent shares the blocking driver's)."""
    if backend.name == "asyncio":
        import rocketmq_asyncio._host as module
    else:
        import rocketmq_sync._host as module  # type: ignore[no-redef]
    return module


def host_address(backend: Backend) -> str:
    return host_module(backend).local_ip()  # type: ignore[no-any-return]


def handler(messages: list[Any]) -> None:
    return None


# ------------------------------------------------------------- the host address


@pytest.mark.parametrize(
    ("addresses", "chosen"),
    [
        # loopback and link-local never; the first other IPv4 address wins
        (["127.0.0.1", "169.254.3.4", "10.1.2.3", "172.16.0.9"], "10.1.2.3"),
        # 192.168/16 only when nothing else is there (Java's order), then the last one
        (["192.168.1.5", "172.17.0.2"], "172.17.0.2"),
        (["127.0.0.1", "192.168.1.5", "192.168.7.7"], "192.168.7.7"),
        # IPv4 before IPv6; IPv6 bracketed as Java writes it, link-local skipped
        (["fe80::1%eth0", "2001:db8::5", "10.9.9.9"], "10.9.9.9"),
        (["::1", "fe80::fc:ff:fe00:1", "fd00::2", "2001:db8::5"], "[fd00::2]"),
        # nothing usable: loopback
        (["127.0.0.1", "::1", "0.0.0.0", "not an address"], "127.0.0.1"),
        ([], "127.0.0.1"),
    ],
)
def test_client_ip_is_chosen_as_the_java_client_chooses(addresses: list[str], chosen: str) -> None:
    assert choose_client_ip(addresses) == chosen


def test_client_and_message_ids_use_this_hosts_address(backend: Backend) -> None:
    address = host_address(backend)
    assert address == choose_client_ip(host_module(backend).interface_addresses())
    producer = backend.make("Producer", NAMESRV, group=unique("ipg"))
    try:
        assert producer.client_id.startswith(f"{address}@")
        assert producer._producer.ids.prefix.startswith(ip_bytes(address).hex().upper())
    finally:
        producer.close()
    explicit = backend.make("Producer", NAMESRV, group=unique("ipg"), client_ip="10.20.30.40")
    try:
        assert explicit.client_id.startswith("10.20.30.40@")
    finally:
        explicit.close()


# ------------------------------------------------------------------ NAMESRV_ADDR


def test_namesrv_addr_falls_back_to_the_environment() -> None:
    env = {"NAMESRV_ADDR": "10.0.0.1:9876;10.0.0.2:9876"}
    assert namesrv_addrs(None, env) == "10.0.0.1:9876;10.0.0.2:9876"
    assert namesrv_addrs("", env) == "10.0.0.1:9876;10.0.0.2:9876"
    assert namesrv_addrs("10.0.0.3:9876", env) == "10.0.0.3:9876"
    assert namesrv_addrs(["10.0.0.3:9876"], {}) == ["10.0.0.3:9876"]
    for missing in ({}, {"NAMESRV_ADDR": "  "}, None):
        with pytest.raises(ConfigError, match="NAMESRV_ADDR"):
            namesrv_addrs(None, missing)


def test_every_client_takes_its_name_servers_from_namesrv_addr(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAMESRV_ADDR", "127.0.0.1:19876;127.0.0.1:29876")
    made = [
        backend.make("Producer", group=unique("envp")),
        backend.make("TransactionProducer", checker=handler, group=unique("envtx")),
        backend.make("PushConsumer", handler=handler, group=unique("envc")),
        backend.make("PullConsumer", group=unique("envl")),
        backend.make("Admin"),
    ]
    try:
        for client in made:
            assert client._core.config.namesrv_addrs == ("127.0.0.1:19876", "127.0.0.1:29876")
        given = backend.make("Admin", NAMESRV)
        assert given._core.config.namesrv_addrs == (NAMESRV,)
        given.close()
    finally:
        for client in made:
            client.close()
    monkeypatch.delenv("NAMESRV_ADDR")
    with pytest.raises(ConfigError, match="NAMESRV_ADDR"):
        backend.make("Producer", group=unique("envp"))


@pytest.mark.broker
def test_a_producer_configured_by_namesrv_addr_sends(
    rocketmq_cluster: Any, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = unique(f"EnvT_{backend.name}")
    with backend.open("Admin", rocketmq_cluster.namesrv_addr) as admin:
        admin.create_topic(topic, read_queue_nums=1, write_queue_nums=1)
    monkeypatch.setenv("NAMESRV_ADDR", rocketmq_cluster.namesrv_addr)
    with backend.open("Producer", group=unique("envsend")) as producer:
        result = producer.send(Message(topic, b"from the environment"), 30.0)
    assert result.status is SendStatus.SEND_OK
    # The message id (UNIQ_KEY) starts with this host's address, as Java's.
    assert result.msg_id.startswith(ip_bytes(host_address(backend)).hex().upper())


# ------------------------------------------------------------------- group names


@pytest.mark.parametrize(
    "group", [*sorted(RESERVED_CONSUMER_GROUPS), "CID_RMQ_SYS_TRACE", "DEFAULT_CONSUMER"]
)
def test_consumers_refuse_the_group_names_rocketmq_reserves(backend: Backend, group: str) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        backend.make("PushConsumer", NAMESRV, handler, group=group)
    with pytest.raises(ConfigError, match="reserved"):
        backend.make("PullConsumer", NAMESRV, group=group)


def test_a_transaction_producer_needs_a_group_of_its_own(backend: Backend) -> None:
    with pytest.raises(ConfigError, match="broker asks a producer of the half message's group"):
        backend.make("TransactionProducer", NAMESRV, handler)
    with pytest.raises(ConfigError, match="DEFAULT_PRODUCER"):
        backend.make("TransactionProducer", NAMESRV, handler, group="DEFAULT_PRODUCER")
    made = backend.make("TransactionProducer", NAMESRV, handler, group=unique("txown"))
    made.close()


# ------------------------------------------------------------------------ options


def test_every_driver_takes_times_in_seconds_and_the_older_names(backend: Backend) -> None:
    current = backend.make(
        "PushConsumer",
        NAMESRV,
        handler,
        group=unique("opts"),
        suspend_current_queue_time=0.5,
        consume_timeout=120.0,
    )
    older = backend.make(
        "PushConsumer",
        NAMESRV,
        handler,
        group=unique("opts"),
        suspend_current_queue_time_millis=500,
        consume_timeout_minutes=2,
    )
    producer = backend.make("Producer", NAMESRV, group=unique("opts"), compress_over=8192)
    try:
        for consumer in (current, older):
            assert consumer._consumer.config.suspend_current_queue_time_millis == 500
            assert consumer._consumer.config.consume_timeout_minutes == 2
        assert producer._producer.config.compress_msg_body_over_howmuch == 8192
    finally:
        for client in (current, older, producer):
            client.close()
    with pytest.raises(ConfigError, match="consume_timeout and consume_timeout_minutes"):
        backend.make(
            "PushConsumer",
            NAMESRV,
            handler,
            group=unique("opts"),
            consume_timeout=60.0,
            consume_timeout_minutes=1,
        )
    with pytest.raises(ConfigError, match="send_timeout must be a positive number of seconds"):
        backend.make("Producer", NAMESRV, group=unique("opts"), send_timeout=-1)


# ------------------------------------------------------------------------- misuse


def test_poll_before_start_raises_the_same_clear_error(backend: Backend) -> None:
    consumer = backend.make("PullConsumer", NAMESRV, group=unique("early"))
    try:
        with pytest.raises(LocalProtocolError, match=r"poll\(\) before start\(\)"):
            consumer.poll(0.01)
    finally:
        consumer.close()


def test_a_failed_start_closes_the_client_and_the_next_start_says_so(backend: Backend) -> None:
    """A start that fails releases what it opened; starting again is refused
    clearly rather than half-running the client."""
    consumer = backend.make("PushConsumer", NAMESRV, lambda msgs: None, group=unique("nosub"))
    with pytest.raises(ConfigError, match="subscribe to at least one topic"):
        consumer.start()
    with pytest.raises(LocalProtocolError, match="closed client cannot be started again"):
        consumer.start()
    consumer.close()  # closing a closed client does nothing


def test_poll_on_a_consumer_closed_before_it_started_raises(backend: Backend) -> None:
    consumer = backend.make("PullConsumer", NAMESRV, group=unique("early"))
    consumer.close()
    with pytest.raises(LocalProtocolError, match=r"poll\(\) before start\(\)"):
        consumer.poll(0.01)


def test_a_start_whose_transport_refuses_its_settings_fails_the_same_way_again(
    backend: Backend,
) -> None:
    """The options let an object with ``wrap_socket`` through; the transport wants
    an ``ssl.SSLContext``. Each start says so (the client is not left running)."""

    class NotAnSSLContext:
        def wrap_socket(self, *args: object, **kwargs: object) -> None:
            return None

    producer = backend.make("Producer", NAMESRV, group=unique("tls"), ssl_context=NotAnSSLContext())
    try:
        for _ in range(2):
            with pytest.raises(ConfigError, match=r"ssl\.SSLContext"):
                producer.start()
    finally:
        producer.close()


def test_closes_racing_on_a_consumer_close_it_once() -> None:
    """Several threads closing one threads-driver consumer (never started, and
    started): one winds it down, the others return; none raises. (asyncio clients
    are used from their loop's thread, gevent's from greenlets.)"""
    import rocketmq_sync

    for started in (False, True):
        consumer = rocketmq_sync.PullConsumer(NAMESRV, group=unique("race"))
        if started:
            consumer.assign([])
            consumer.start()
        errors: list[BaseException] = []

        def close(consumer: Any = consumer, errors: list[BaseException] = errors) -> None:
            try:
                consumer.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=close) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert consumer._consumer.closed


def test_admin_refuses_an_unknown_option_by_name(backend: Backend) -> None:
    with pytest.raises(ConfigError, match=r"unknown admin option.*: bogus_option"):
        backend.make("Admin", NAMESRV, bogus_option=1)
    with pytest.raises(ConfigError, match=r"unknown admin option.*: group"):
        backend.make("Admin", NAMESRV, group="g")  # a producer's or consumer's option
    admin = backend.make("Admin", NAMESRV, request_timeout=2.0)
    admin.close()


def test_the_shell_moves_the_producer_and_admin_cores_through_their_lives(
    backend: Backend,
) -> None:
    from rocketmq_proto.driver import LifecycleState

    producer = backend.make("Producer", NAMESRV, group=unique("life"))
    admin = backend.make("Admin", NAMESRV)
    cores = [producer._producer, admin._admin, producer._core, admin._core]
    assert [c.state for c in cores] == [LifecycleState.CREATED] * 4
    producer.start()
    admin.start()
    assert [c.state for c in cores] == [LifecycleState.RUNNING] * 4
    producer.close()
    admin.close()
    assert [c.state for c in cores] == [LifecycleState.CLOSED] * 4
    never = backend.make("Producer", NAMESRV, group=unique("life"))
    never.close()
    assert never._producer.state is LifecycleState.CLOSED


# ------------------------------------------------------ validation before sending


class _Requests(Hook):
    """Records each remoting request a client is about to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def before_request(self, ctx: RequestContext) -> None:
        self.sent.append((ctx.addr, ctx.request.code))


def test_send_refuses_bad_tags_properties_and_system_topics_before_sending(
    backend: Backend,
) -> None:
    """The core's checks (tests/test_producer_core.py) reach the caller of each
    driver's ``Producer.send`` as the same errors, before any request goes out: the
    name server is a listening socket that nothing may connect to, and a request
    hook sees no request."""
    with socket.socket() as namesrv:
        namesrv.bind(("127.0.0.1", 0))
        namesrv.listen(8)
        addr = f"127.0.0.1:{namesrv.getsockname()[1]}"
        requests = _Requests()
        with backend.open("Producer", addr, group=unique("valid"), hooks=[requests]) as producer:
            # A tag no tag filter could select.
            with pytest.raises(InvalidMessageError, match="no subscription could ever select it"):
                producer.send(backend.module.Message("T", b"x", tags="paid||shipped"))
            with pytest.raises(InvalidMessageError, match=r"control character '\\t'"):
                producer.send(backend.module.Message("T", b"x", tags="a\tb"))
            # A property the wire format cannot carry (set past put_user_property's checks).
            message = backend.module.Message("T", b"x")
            message.properties["color"] = "bl\x01ue"
            with pytest.raises(InvalidPropertyError, match=r"'color': value contains the sep"):
                producer.send(message)
            message = backend.module.Message("T", b"x")
            message.properties["big"] = "v" * 40000
            with pytest.raises(InvalidPropertyError, match="more than 32767"):
                producer.send(message)
            # A reserved system topic: no Message of the driver can name it, and a
            # received message of such a topic (a MessageExt) is no Message to send.
            with pytest.raises(InvalidTopicError, match="reserved system topic"):
                backend.module.Message("SCHEDULE_TOPIC_XXXX", b"x")
            with pytest.raises(InvalidTopicError, match="reserved system topic"):
                backend.module.Message("T", b"x").topic = "RMQ_SYS_TRANS_HALF_TOPIC"
            with pytest.raises(InvalidMessageError, match="expected a Message, got MessageExt"):
                producer.send(MessageExt("SCHEDULE_TOPIC_XXXX", b"x"))
        assert requests.sent == []
        namesrv.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing connected to the name server
            namesrv.accept()
