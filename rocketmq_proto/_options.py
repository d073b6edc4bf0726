"""Client options: one validated set, shared by every driver's classes.

Each driver's ``Producer`` (and the other client classes) takes
``namesrv_addr`` and keyword options typed by the TypedDicts here, and turns
them into configs with :func:`producer_settings`. So option names, defaults
(Java's) and validation are written once.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._acl import Credentials, sign_request
from ._client import ClientConfig
from ._codes import SerializeType
from ._command import DEFAULT_MAX_FRAME_SIZE
from ._connection import Signer
from ._errors import ConfigError
from ._lite_pull import PullConsumerConfig
from ._producer import ProducerConfig, QueueSelection
from ._pull import PullConfig
from ._push import ConsumerConfig


class ClientOptions(TypedDict, total=False):
    """Options every client object takes (times in seconds)."""

    namespace: str | None
    instance_name: str | None
    client_ip: str | None
    unit_name: str | None
    access_key: str | None
    secret_key: str | None
    security_token: str | None
    ssl_context: Any  # ssl.SSLContext; the core does not import ssl
    serialize_type: str | SerializeType
    request_timeout: float
    connect_timeout: float
    route_refresh_interval: float
    heartbeat_interval: float
    max_frame_size: int
    logger: logging.Logger | None


class ProducerOptions(ClientOptions, total=False):
    """Options of ``Producer`` and ``TransactionProducer``."""

    group: str
    send_timeout: float
    retry_times_when_send_failed: int
    retry_another_broker_when_not_store_ok: bool
    compress_msg_body_over_howmuch: int
    compress_level: int
    max_message_size: int
    default_topic_queue_nums: int
    send_latency_fault_enable: bool
    queue_selection: str | QueueSelection


class ConsumerOptions(ClientOptions, total=False):
    """Options of ``PushConsumer`` (Java's names, snake_case; times in seconds)."""

    group: str
    message_model: str
    consume_from_where: str
    consume_timestamp: int | None
    allocate_strategy: Any
    orderly: bool
    consume_thread_max: int
    consume_message_batch_max_size: int
    max_reconsume_times: int
    delay_level_when_next_consume: int
    suspend_current_queue_time_millis: int
    consume_timeout_minutes: int
    persist_consumer_offset_interval: float
    rebalance_interval: float
    offset_store_dir: str | None
    await_termination: float
    pull_batch_size: int
    pull_threshold_for_queue: int
    pull_threshold_size_for_queue: int
    pull_interval: float
    post_subscription_when_pull: bool


class PullConsumerOptions(ClientOptions, total=False):
    """Options of ``PullConsumer`` (times in seconds)."""

    group: str
    message_model: str
    consume_from_where: str
    consume_timestamp: int | None
    allocate_strategy: Any
    auto_commit: bool
    auto_commit_interval: float
    max_poll_records: int
    rebalance_interval: float
    pull_batch_size: int
    pull_threshold_for_queue: int


_CLIENT_KEYS = frozenset(ClientOptions.__annotations__)
_PRODUCER_KEYS = frozenset(ProducerOptions.__annotations__) - _CLIENT_KEYS
_PULL_KEYS = frozenset(
    {
        "pull_batch_size",
        "pull_threshold_for_queue",
        "pull_threshold_size_for_queue",
        "pull_interval",
        "post_subscription_when_pull",
    }
)
_CONSUMER_KEYS = frozenset(ConsumerOptions.__annotations__) - _CLIENT_KEYS - _PULL_KEYS


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """What a driver's transport needs: header type, TLS, signing, limits."""

    serialize_type: SerializeType
    ssl_context: Any
    signer: Signer | None
    connect_timeout: float
    max_frame_size: int
    logger: logging.Logger | None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    client: ClientConfig
    transport: TransportSettings
    credentials: Credentials | None


def make_signer(credentials: Credentials) -> Signer:
    def signer(fields: dict[str, str], body: bytes) -> dict[str, str]:
        return sign_request(fields, body, credentials)

    return signer


def _check_keys(options: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")


def client_settings(
    namesrv_addr: str | Iterable[str],
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
) -> ClientSettings:
    """Validated client and transport settings from a driver's options.

    ``pid`` and ``nonce`` (any number unique to this client object) make the
    default instance name, as Java's ``pid#nanotime``.
    """
    access_key = options.get("access_key")
    secret_key = options.get("secret_key")
    credentials: Credentials | None = None
    if access_key or secret_key:
        if not (access_key and secret_key):
            raise ConfigError("access_key and secret_key must be given together")
        credentials = Credentials(access_key, secret_key, options.get("security_token"))
    raw_type = options.get("serialize_type", SerializeType.JSON)
    try:
        serialize_type = (
            SerializeType[raw_type.upper()]
            if isinstance(raw_type, str)
            else SerializeType(raw_type)
        )
    except (KeyError, ValueError):
        raise ConfigError(f"serialize_type must be JSON or ROCKETMQ, got {raw_type!r}") from None
    ssl_context = options.get("ssl_context")
    if ssl_context is not None and not hasattr(ssl_context, "wrap_socket"):
        raise ConfigError(f"ssl_context must be an ssl.SSLContext, got {type(ssl_context)!r}")
    connect_timeout = options.get("connect_timeout", 3.0)
    if not isinstance(connect_timeout, int | float) or connect_timeout <= 0:
        raise ConfigError(f"connect_timeout must be a positive number, got {connect_timeout!r}")
    max_frame_size = options.get("max_frame_size", DEFAULT_MAX_FRAME_SIZE)
    if not isinstance(max_frame_size, int) or max_frame_size < 1024:
        raise ConfigError(f"max_frame_size must be an int >= 1024, got {max_frame_size!r}")
    client = ClientConfig(
        namesrv_addrs=namesrv_addr,  # type: ignore[arg-type]  # parsed in __post_init__
        client_ip=options.get("client_ip") or default_ip,
        instance_name=options.get("instance_name") or f"{pid}#{nonce}",
        unit_name=options.get("unit_name"),
        namespace=options.get("namespace"),
        request_timeout=options.get("request_timeout", 3.0),
        route_refresh_interval=options.get("route_refresh_interval", 30.0),
        heartbeat_interval=options.get("heartbeat_interval", 30.0),
    )
    transport = TransportSettings(
        serialize_type=serialize_type,
        ssl_context=ssl_context,
        signer=make_signer(credentials) if credentials is not None else None,
        connect_timeout=float(connect_timeout),
        max_frame_size=max_frame_size,
        logger=options.get("logger"),
    )
    return ClientSettings(client, transport, credentials)


def _split_options(
    namesrv_addr: str | Iterable[str],
    options: Mapping[str, Any],
    own_keys: frozenset[str],
    what: str,
    *,
    pid: int,
    nonce: int,
    default_ip: str,
) -> tuple[ClientSettings, dict[str, Any]]:
    """Client settings from the shared options, and the class's own options apart."""
    _check_keys(options, _CLIENT_KEYS | own_keys, what)
    settings = client_settings(
        namesrv_addr,
        {k: v for k, v in options.items() if k in _CLIENT_KEYS},
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
    )
    return settings, {k: v for k, v in options.items() if k in own_keys}


def producer_settings(
    namesrv_addr: str | Iterable[str],
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
) -> tuple[ClientSettings, ProducerConfig]:
    settings, own = _split_options(
        namesrv_addr,
        options,
        _PRODUCER_KEYS,
        "producer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
    )
    return settings, ProducerConfig(**own)


def consumer_settings(
    namesrv_addr: str | Iterable[str],
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
) -> tuple[ClientSettings, ConsumerConfig]:
    if "group" not in options:
        raise ConfigError("a consumer needs a group: PushConsumer(..., group='my-group')")
    settings, own = _split_options(
        namesrv_addr,
        options,
        _CONSUMER_KEYS | _PULL_KEYS,
        "consumer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
    )
    pull = PullConfig(**{k: v for k, v in own.items() if k in _PULL_KEYS})
    consumer_options = _consumer_enum_options({k: v for k, v in own.items() if k in _CONSUMER_KEYS})
    try:
        config = ConsumerConfig(pull=pull, **consumer_options)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid consumer option: {exc}") from None
    return settings, config


_PULL_CONSUMER_KEYS = frozenset(PullConsumerOptions.__annotations__) - _CLIENT_KEYS - _PULL_KEYS


def _consumer_enum_options(options: dict[str, Any]) -> dict[str, Any]:
    for key in ("message_model", "consume_from_where"):
        value = options.get(key)
        if isinstance(value, str) and not value.isupper():
            options[key] = value.upper()
    short = options.get("consume_from_where")
    if short in ("LAST", "FIRST"):
        options["consume_from_where"] = f"CONSUME_FROM_{short}_OFFSET"
    elif short == "TIMESTAMP":
        options["consume_from_where"] = "CONSUME_FROM_TIMESTAMP"
    return options


def pull_consumer_settings(
    namesrv_addr: str | Iterable[str],
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
) -> tuple[ClientSettings, PullConsumerConfig]:
    if "group" not in options:
        raise ConfigError("a consumer needs a group: PullConsumer(..., group='my-group')")
    settings, mine = _split_options(
        namesrv_addr,
        options,
        _PULL_CONSUMER_KEYS | _PULL_KEYS,
        "pull consumer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
    )
    pull = PullConfig(**{k: v for k, v in mine.items() if k in _PULL_KEYS})
    own = _consumer_enum_options({k: v for k, v in mine.items() if k in _PULL_CONSUMER_KEYS})
    strategy = own.pop("allocate_strategy", "averagely")
    if isinstance(strategy, str):
        strategy = ConsumerConfig(group=own["group"], allocate_strategy=strategy).strategy
    try:
        config = PullConsumerConfig(pull=pull, strategy=strategy, **own)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid pull consumer option: {exc}") from None
    return settings, config


def ip_bytes(ip: str) -> bytes:
    """The 4 (or 16) bytes of an IP address, for message ids (loopback if unparsable)."""
    try:
        return ipaddress.ip_address(ip.strip("[]")).packed
    except ValueError:
        return b"\x7f\x00\x00\x01"
