"""Option names and units: one scheme (times in seconds, sizes in bytes, no unit in a
name), the older Java-derived names accepted as aliases, clear errors at the boundary."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_type_hints

import pytest

from rocketmq_proto.flows.consumer.push import ConsumerConfig
from rocketmq_proto.flows.producer import ProducerConfig
from rocketmq_proto.options import (
    _TIMES,
    OPTION_ALIASES,
    ClientOptions,
    ConsumerOptions,
    ProducerOptions,
    PullConsumerOptions,
    SimpleConsumerOptions,
    consumer_settings,
    producer_settings,
    pull_consumer_settings,
    simple_consumer_settings,
)
from rocketmq_proto.wire.errors import ConfigError

NAMESRV = "127.0.0.1:9876"
MIB = 1024 * 1024
TYPED_DICTS = (
    ClientOptions,
    ProducerOptions,
    ConsumerOptions,
    PullConsumerOptions,
    SimpleConsumerOptions,
)

Builder = Callable[..., tuple[Any, Any]]


def built(builder: Builder, **options: Any) -> tuple[Any, Any]:
    """The client settings and the class's config from ``options`` (a consumer gets
    a group)."""
    if builder is not producer_settings:
        options.setdefault("group", "G")
    return builder(NAMESRV, options, pid=1, nonce=2)


def config(builder: Builder, **options: Any) -> Any:
    return built(builder, **options)[1]


# (builder, alias, its value, the current name, the same value in the current unit)
ALIAS_CASES = [
    (
        consumer_settings,
        "suspend_current_queue_time_millis",
        1500,
        "suspend_current_queue_time",
        1.5,
    ),
    (consumer_settings, "consume_timeout_minutes", 2, "consume_timeout", 120.0),
    (producer_settings, "compress_msg_body_over_howmuch", 1000, "compress_over", 1000),
    (
        consumer_settings,
        "pull_threshold_size_for_queue",
        50,
        "pull_threshold_bytes_for_queue",
        50 * MIB,
    ),
    (
        pull_consumer_settings,
        "pull_threshold_size_for_queue",
        7,
        "pull_threshold_bytes_for_queue",
        7 * MIB,
    ),
]


def test_every_alias_has_a_case() -> None:
    assert {case[1] for case in ALIAS_CASES} == set(OPTION_ALIASES)
    assert {(case[1], case[3]) for case in ALIAS_CASES} == set(OPTION_ALIASES.items())


@pytest.mark.parametrize(("builder", "alias", "old", "name", "new"), ALIAS_CASES)
def test_an_alias_sets_its_option_with_the_unit_converted(
    builder: Builder, alias: str, old: Any, name: str, new: Any
) -> None:
    by_alias = config(builder, **{alias: old})
    assert by_alias == config(builder, **{name: new})
    assert by_alias != config(builder)  # the value was not the default: the alias took effect


@pytest.mark.parametrize(("builder", "alias", "old", "name", "new"), ALIAS_CASES)
def test_an_alias_and_its_option_together_are_refused_naming_both(
    builder: Builder, alias: str, old: Any, name: str, new: Any
) -> None:
    with pytest.raises(ConfigError, match=rf"{name} and {alias} set the same option"):
        config(builder, **{alias: old, name: new})


def test_the_current_names_reach_the_configs_in_their_units() -> None:
    consumer = config(
        consumer_settings,
        suspend_current_queue_time=0.25,
        consume_timeout=90,
        pull_threshold_bytes_for_queue=3 * MIB + 5,
    )
    assert consumer.suspend_current_queue_time_millis == 250
    assert consumer.consume_timeout_minutes * 60 == 90
    assert consumer.pull.pull_threshold_size_for_queue == 3  # whole MiB, as Java counts
    assert config(producer_settings, compress_over=0).compress_msg_body_over_howmuch == 0


def test_the_documented_defaults_are_the_configs_defaults() -> None:
    assert config(
        consumer_settings,
        suspend_current_queue_time=1.0,
        consume_timeout=900.0,
        pull_threshold_bytes_for_queue=100 * MIB,
    ) == config(consumer_settings)
    assert config(producer_settings, compress_over=4096) == ProducerConfig()
    assert config(consumer_settings).suspend_current_queue_time_millis == (
        ConsumerConfig(group="G").suspend_current_queue_time_millis
    )


# --------------------------------------------------------------------- time options


# Each time option: a builder that takes it, and where its value lands, in seconds.
def short_poll_settings(namesrv: Any, options: dict[str, Any], **host: Any) -> tuple[Any, Any]:
    """A push consumer's settings with a long poll shorter than any pull timeout
    tried (the pull timeout must be at least the long poll, as in Java)."""
    return consumer_settings(namesrv, {"broker_suspend_max_time": 0.1, **options}, **host)


TIMES: dict[str, tuple[Builder, Callable[[Any, Any], float]]] = {
    "request_timeout": (producer_settings, lambda s, c: s.client.request_timeout),
    "connect_timeout": (producer_settings, lambda s, c: s.transport.connect_timeout),
    "route_refresh_interval": (producer_settings, lambda s, c: s.client.route_refresh_interval),
    "heartbeat_interval": (producer_settings, lambda s, c: s.client.heartbeat_interval),
    "namesrv_lookup_interval": (producer_settings, lambda s, c: s.client.namesrv_lookup_interval),
    "send_timeout": (producer_settings, lambda s, c: c.send_timeout),
    "suspend_current_queue_time": (
        consumer_settings,
        lambda s, c: c.suspend_current_queue_time_millis / 1000,
    ),
    "consume_timeout": (consumer_settings, lambda s, c: c.consume_timeout_minutes * 60),
    "persist_consumer_offset_interval": (
        consumer_settings,
        lambda s, c: c.persist_consumer_offset_interval,
    ),
    "rebalance_interval": (consumer_settings, lambda s, c: c.rebalance_interval),
    "await_termination": (consumer_settings, lambda s, c: c.await_termination),
    "pull_interval": (consumer_settings, lambda s, c: c.pull.pull_interval),
    "auto_commit_interval": (pull_consumer_settings, lambda s, c: c.auto_commit_interval),
    "broker_suspend_max_time": (
        pull_consumer_settings,
        lambda s, c: c.pull.broker_suspend_max_time,
    ),
    "consumer_timeout_when_suspend": (
        short_poll_settings,
        lambda s, c: c.pull.consumer_timeout_when_suspend,
    ),
    "await_duration": (simple_consumer_settings, lambda s, c: c.await_duration),
    "invisible_duration": (simple_consumer_settings, lambda s, c: c.invisible_duration),
    "pop_invisible_duration": (consumer_settings, lambda s, c: c.pop_invisible_duration),
}


def option_hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for typed in TYPED_DICTS:
        hints.update(get_type_hints(typed))
    return hints


def test_every_time_option_is_a_float_of_seconds_with_no_unit_in_its_name() -> None:
    hints = option_hints()
    for name in hints:
        assert not name.endswith(("_millis", "_ms", "_minutes", "_seconds", "_mib")), name
        assert "howmuch" not in name, name
    floats = {name for name, hint in hints.items() if hint is float}
    assert floats == set(_TIMES) == set(TIMES)
    assert not set(OPTION_ALIASES) & set(hints)  # the TypedDicts list current names only


@pytest.mark.parametrize("name", sorted(TIMES))
@pytest.mark.parametrize("value", [7, 7.5, 0.25])
def test_a_time_option_takes_seconds_as_int_or_float(name: str, value: float) -> None:
    builder, where = TIMES[name]
    if name.endswith("invisible_duration") and value < 1:  # the broker revives by seconds
        with pytest.raises(ConfigError, match=f"{name} must be 1 s to 43200 s"):
            built(builder, **{name: value})
        return
    assert where(*built(builder, **{name: value})) == value


@pytest.mark.parametrize("name", sorted(TIMES))
@pytest.mark.parametrize("bad", ["3", True, None, -1, -0.5, math.nan, math.inf, [1]])
def test_a_time_option_of_a_wrong_type_or_sign_is_a_clear_error(name: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must be a .*number of seconds"):
        config(TIMES[name][0], **{name: bad})


def test_zero_is_refused_for_a_time_option_unless_it_means_no_pause() -> None:
    assert config(consumer_settings, pull_interval=0).pull.pull_interval == 0
    # Java's suspendCurrentQueueTimeMillis=0 was accepted: the core waits 10 ms anyway.
    assert (
        config(consumer_settings, suspend_current_queue_time=0).suspend_current_queue_time_millis
        == 0
    )
    assert (
        config(
            consumer_settings, suspend_current_queue_time_millis=0
        ).suspend_current_queue_time_millis
        == 0
    )
    # A long poll of 0: the broker answers a pull that finds nothing at once.
    assert config(consumer_settings, broker_suspend_max_time=0).pull.broker_suspend_max_time == 0
    zero_ok = {
        "pull_interval",
        "suspend_current_queue_time",
        "broker_suspend_max_time",
        "await_duration",
    }
    for name in sorted(set(TIMES) - zero_ok):
        with pytest.raises(ConfigError, match=rf"^{name} must be a positive number of seconds"):
            config(TIMES[name][0], **{name: 0})


# --------------------------------------------------------------------- size options


@pytest.mark.parametrize("bad", [-1, 1.5, "4096", True, None])
def test_compress_over_is_a_number_of_bytes(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"^compress_over must be a number of bytes >= 0"):
        config(producer_settings, compress_over=bad)


@pytest.mark.parametrize("bad", [MIB - 1, 1024 * MIB + 1, 100.0 * MIB, "1", True])
def test_pull_threshold_bytes_for_queue_is_bytes_from_1_mib_to_1_gib(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"^pull_threshold_bytes_for_queue must be a number of"):
        config(consumer_settings, pull_threshold_bytes_for_queue=bad)


# ------------------------------------------------------------------ alias errors


@pytest.mark.parametrize(("builder", "alias", "old", "name", "new"), ALIAS_CASES)
@pytest.mark.parametrize("bad", ["1", True, None])
def test_an_alias_of_a_wrong_type_is_an_error_naming_the_alias(
    builder: Builder, alias: str, old: Any, name: str, new: Any, bad: Any
) -> None:
    with pytest.raises(ConfigError, match=rf"^{alias} must be a number of "):
        config(builder, **{alias: bad})


@pytest.mark.parametrize(("builder", "alias", "old", "name", "new"), ALIAS_CASES)
def test_an_alias_out_of_range_names_the_option_and_the_alias(
    builder: Builder, alias: str, old: Any, name: str, new: Any
) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must be .*\(from {alias}=-1, in "):
        config(builder, **{alias: -1})


def test_an_alias_of_another_class_is_an_unknown_option() -> None:
    with pytest.raises(
        ConfigError, match=r"^unknown producer option\(s\): consume_timeout_minutes$"
    ):
        config(producer_settings, consume_timeout_minutes=15)
    with pytest.raises(ConfigError, match=r"^unknown pull consumer option\(s\): consume_timeout$"):
        config(pull_consumer_settings, consume_timeout=60.0)


def test_an_unknown_option_is_named_as_before() -> None:
    with pytest.raises(ConfigError, match=r"^unknown consumer option\(s\): bogus, consume_timeot$"):
        config(consumer_settings, bogus=1, consume_timeot=2)
