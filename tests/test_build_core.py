"""The builders: each client class's cores made from its options in one call,
with every bad option refused before a driver makes a thread or a socket."""

from __future__ import annotations

from typing import Any

import pytest

from rocketmq_proto import ConfigError
from rocketmq_proto.build import (
    Host,
    build_admin,
    build_producer,
    build_pull_consumer,
    build_push_consumer,
    build_transaction_producer,
)
from rocketmq_proto.flows.consumer.push import ConsumerConfig
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.wire.codes import RequestCode

HOST = Host(pid=4242, nonce=77, id_seed=99, default_ip="10.1.2.3", environ={})
NS = "127.0.0.1:9876"


def test_host_gives_the_settings_builders_their_facts() -> None:
    built = build_producer(NS, {}, HOST)
    assert built.settings.client.instance_name == "4242#77"
    assert built.settings.client.client_ip == "10.1.2.3"
    reference = UniqueIdGenerator(bytes([10, 1, 2, 3]), 4242, 99)
    assert built.core.ids.prefix == reference.prefix  # ip, pid and seed alike
    assert build_producer(NS, {}, Host(4242, 77, 98)).core.ids.prefix != reference.prefix


def test_build_producer_wires_the_producer_into_its_session() -> None:
    built = build_producer(NS, {"group": "G1"}, HOST)
    assert built.core.client is built.session
    assert built.session.producer_groups == {"G1"}
    assert RequestCode.CHECK_TRANSACTION_STATE in built.session.handlers
    assert built.core.transaction_checker is None


def test_build_transaction_producer_sets_the_checker_and_checks_the_group() -> None:
    def checker(message: Any) -> bool:
        return True

    built = build_transaction_producer(NS, {"group": "TG"}, HOST, checker)
    assert built.core.transaction_checker is checker
    with pytest.raises(ConfigError, match="checker must be callable"):
        build_transaction_producer(NS, {"group": "TG"}, HOST, None)
    with pytest.raises(ConfigError, match="group"):
        build_transaction_producer(NS, {}, HOST, checker)


def test_build_admin_waits_longer_unless_told() -> None:
    assert build_admin(NS, {}, HOST).settings.client.request_timeout == 15.0
    assert build_admin(NS, {"request_timeout": 2.0}, HOST).settings.client.request_timeout == 2.0
    with pytest.raises(ConfigError, match="unknown admin option"):
        build_admin(NS, {"grup": "x"}, HOST)


def test_build_push_consumer_asks_for_the_handler_once_the_options_are_valid() -> None:
    seen: list[ConsumerConfig] = []

    def handler(messages: list[Any]) -> None:
        return None

    def run(messages: list[Any]) -> None:
        return handler(messages)

    def run_handler(config: ConsumerConfig, given: Any) -> Any:
        assert given is handler
        seen.append(config)
        return run

    options: dict[str, Any] = {"group": "CG", "consume_thread_max": 7}
    built = build_push_consumer(NS, options, HOST, handler, run_handler)
    assert [c.consume_thread_max for c in seen] == [7]
    assert built.core.handler is run  # the core calls the handler as the driver runs it
    assert "CG" in built.session.consumer_data
    assert RequestCode.CONSUME_MESSAGE_DIRECTLY in built.session.handlers

    with pytest.raises(ConfigError, match="consume_thread_max"):
        build_push_consumer(
            NS, {"group": "CG", "consume_thread_max": 0}, HOST, handler, run_handler
        )
    with pytest.raises(ConfigError, match="handler must be callable"):
        build_push_consumer(NS, {"group": "CG"}, HOST, None, run_handler)
    assert len(seen) == 1  # a bad option: no handler (and so no runtime) was made


def test_build_pull_consumer_registers_and_keeps_notify() -> None:
    calls: list[int] = []
    built = build_pull_consumer(NS, {"group": "PG"}, HOST, notify=lambda: calls.append(1))
    assert "PG" in built.session.consumer_data
    built.core.notify()
    assert calls == [1]
    with pytest.raises(ConfigError, match="needs a group"):
        build_pull_consumer(NS, {}, HOST, notify=lambda: None)
