"""Client options: one validated set, shared by every driver's classes.

Each driver's ``Producer`` (and the other client classes) takes
``namesrv_addr`` and keyword options typed by the TypedDicts here, and turns
them into configs with :func:`producer_settings`. So option names, defaults
(Java's) and validation are written once.

One scheme for every name: snake_case, no unit in the name, times in seconds
(``float``), sizes in bytes. Older names (Java's, some in ms, minutes or MiB)
are still accepted: see :data:`OPTION_ALIASES`. The builders convert to the
configs' own fields and units.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, TypeVar

from rocketmq_proto.connection.connection import Signer
from rocketmq_proto.flows.admin import PREDEFINED_GROUPS
from rocketmq_proto.flows.consumer.lite_pull import PullConsumerConfig
from rocketmq_proto.flows.consumer.pull import PullConfig
from rocketmq_proto.flows.consumer.push import ConsumerConfig
from rocketmq_proto.flows.consumer.simple import SimpleConsumerConfig
from rocketmq_proto.flows.hooks import Hooks
from rocketmq_proto.flows.namesrv_lookup import DEFAULT_LOOKUP_INTERVAL
from rocketmq_proto.flows.producer import ProducerConfig, QueueSelection, TimerFallback
from rocketmq_proto.flows.session import ClientConfig
from rocketmq_proto.message.compression import CompressionType
from rocketmq_proto.message.model import validate_topic
from rocketmq_proto.wire.acl import Credentials, sign_request
from rocketmq_proto.wire.codes import SerializeType
from rocketmq_proto.wire.command import DEFAULT_MAX_FRAME_SIZE
from rocketmq_proto.wire.errors import ConfigError, RocketMQError
from rocketmq_proto.wire.trace import DEFAULT_TRACE_TOPIC


class ClientOptions(TypedDict, total=False):
    """Options every client object takes.

    Times are seconds (``float``), sizes bytes; no name carries a unit. The
    TypedDicts list the current names only: an older name from
    :data:`OPTION_ALIASES` still works at run time, but a type checker reports
    it as an unexpected keyword, to point at the current name.
    """

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
    namesrv_lookup_url: str | None
    namesrv_lookup_interval: float
    hooks: Iterable[object] | None


class TraceOptions(TypedDict, total=False):
    """Message trace, for ``Producer``, ``TransactionProducer`` and ``PushConsumer``.

    ``enable_trace``: record each send, consume and transaction outcome to the
    trace topic, as Java's client does with ``enableMsgTrace`` (off by default);
    ``trace_topic``: that topic (``RMQ_SYS_TRACE_TOPIC`` by default; a topic of
    your own is in the client's namespace, as Java's ``customizedTraceTopic``).
    """

    enable_trace: bool
    trace_topic: str | None


class ProducerOptions(ClientOptions, TraceOptions, total=False):
    """Options of ``Producer`` and ``TransactionProducer``.

    ``compress_over``: a body larger than this many bytes is compressed (sent so
    only if that makes it smaller); 4096 by default. Alias:
    ``compress_msg_body_over_howmuch`` (Java's name, bytes too).
    """

    group: str
    send_timeout: float
    retry_times_when_send_failed: int
    retry_another_broker_when_not_store_ok: bool
    compress_over: int
    compress_level: int
    compress_type: str | CompressionType
    max_message_size: int
    default_topic_queue_nums: int
    send_latency_fault_enable: bool
    queue_selection: str | QueueSelection
    timer_fallback: str | TimerFallback


class ConsumerOptions(ClientOptions, TraceOptions, total=False):
    """Options of ``PushConsumer`` (Java's names in snake_case; times in seconds).

    ``suspend_current_queue_time``: how long an orderly queue pauses when its
    handler asks for a pause without a time (1.0; kept within 0.01..30 as
    Java's client does). ``consume_timeout``: a message whose handler has run
    longer is sent back for a retry (900.0; looked for every 15 minutes).
    ``pull_threshold_bytes_for_queue``: cached bytes per queue above which
    pulling pauses (100 MiB; 1 MiB..1 GiB, counted in whole MiB as Java's).
    ``consume_timestamp`` is a point in time, not a duration: epoch
    milliseconds, as message timestamps. ``broker_suspend_max_time``: how long
    the broker holds a pull that finds nothing (the long poll, 15.0);
    ``consumer_timeout_when_suspend``: how long the client waits for such a
    pull's answer (30.0, at least the former). A pull that times out is
    followed by the next at once; a pull that fails fast, 3 s later.
    ``consume_mode``: ``"pull"`` (client rebalance, the default) or ``"pop"``
    (RocketMQ 5.x POP: every consumer pops from every queue and acks; a failed
    message comes back after the broker's retry delay for its attempt) or
    ``"auto"`` (each topic as the group's request mode on the brokers says,
    ``PULL`` or ``POP``: set it with ``Admin.set_consume_mode``; looked at again
    every 20 s); ``pop_invisible_duration`` (60.0): how long popped messages stay hidden
    while their handler runs.

    Aliases (Java's names, still accepted): ``suspend_current_queue_time_millis``
    (milliseconds), ``consume_timeout_minutes`` (minutes) and
    ``pull_threshold_size_for_queue`` (MiB).
    """

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
    suspend_current_queue_time: float
    consume_timeout: float
    persist_consumer_offset_interval: float
    rebalance_interval: float
    offset_store_dir: str | None
    await_termination: float
    pull_batch_size: int
    pull_threshold_for_queue: int
    pull_threshold_bytes_for_queue: int
    pull_interval: float
    post_subscription_when_pull: bool
    broker_suspend_max_time: float
    consumer_timeout_when_suspend: float
    consume_mode: str
    pop_invisible_duration: float


class PullConsumerOptions(ClientOptions, total=False):
    """Options of ``PullConsumer`` (times in seconds).

    ``consume_timestamp`` is epoch milliseconds, and ``broker_suspend_max_time``
    and ``consumer_timeout_when_suspend`` are the long poll and pull timeout,
    as in :class:`ConsumerOptions`.
    """

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
    broker_suspend_max_time: float
    consumer_timeout_when_suspend: float


class SimpleConsumerOptions(ClientOptions, total=False):
    """Options of ``SimpleConsumer`` (times in seconds).

    ``await_duration``: how long a ``receive`` waits for a message (15.0);
    ``invisible_duration``: how long received messages stay hidden unless
    ``receive`` says (60.0); ``max_reconsume_times``: a message delivered again
    more often than this goes to the group's dead-letter queue (16: at most 17
    deliveries);
    ``consume_from_where``: ``"last"`` (the default) or ``"first"``, for a group
    with no offset yet; ``fifo``: orderly pops (a queue's messages in order,
    the next held until the previous is acked).
    """

    group: str
    await_duration: float
    invisible_duration: float
    max_reconsume_times: int
    consume_from_where: str
    fifo: bool


_CLIENT_KEYS = frozenset(ClientOptions.__annotations__)
_TRACE_KEYS = frozenset(TraceOptions.__annotations__)
_PRODUCER_KEYS = frozenset(ProducerOptions.__annotations__) - _CLIENT_KEYS - _TRACE_KEYS
_PULL_KEYS = frozenset(
    {
        "pull_batch_size",
        "pull_threshold_for_queue",
        "pull_threshold_bytes_for_queue",
        "pull_interval",
        "post_subscription_when_pull",
        "broker_suspend_max_time",
        "consumer_timeout_when_suspend",
    }
)
_CONSUMER_KEYS = (
    frozenset(ConsumerOptions.__annotations__) - _CLIENT_KEYS - _PULL_KEYS - _TRACE_KEYS
)

T = TypeVar("T")

_MIB: Final = 1024 * 1024

#: The time options (seconds), each with whether 0 is allowed.
_TIMES: Final[Mapping[str, bool]] = {
    "request_timeout": False,
    "connect_timeout": False,
    "route_refresh_interval": False,
    "heartbeat_interval": False,
    "namesrv_lookup_interval": False,
    "send_timeout": False,
    "suspend_current_queue_time": True,  # the core waits at least 10 ms anyway
    "consume_timeout": False,
    "persist_consumer_offset_interval": False,
    "rebalance_interval": False,
    "await_termination": False,
    "pull_interval": True,
    "auto_commit_interval": False,
    "broker_suspend_max_time": True,
    "consumer_timeout_when_suspend": False,
    "await_duration": True,
    "invisible_duration": False,
    "pop_invisible_duration": False,
}

#: Older names (Java's, in snake_case), each with the option it sets, its unit and
#: the conversion of its value to the option's unit.
_ALIASES: Final[Mapping[str, tuple[str, str, Callable[[Any], Any]]]] = {
    "suspend_current_queue_time_millis": (
        "suspend_current_queue_time",
        "milliseconds",
        lambda ms: ms / 1000,
    ),
    "consume_timeout_minutes": ("consume_timeout", "minutes", lambda minutes: minutes * 60),
    "compress_msg_body_over_howmuch": ("compress_over", "bytes", lambda size: size),
    "pull_threshold_size_for_queue": (
        "pull_threshold_bytes_for_queue",
        "MiB",
        lambda mib: round(mib * _MIB),
    ),
}

#: Older option names still accepted, and the option each one sets: a value in
#: milliseconds or minutes becomes seconds, one in MiB bytes. Giving an alias
#: and its option together is a :class:`ConfigError`.
OPTION_ALIASES: Final[Mapping[str, str]] = {alias: new[0] for alias, new in _ALIASES.items()}


def _whole(minutes: float) -> float:
    return int(minutes) if minutes == int(minutes) else minutes


#: Options whose config field has another name or unit (Java's): the field and
#: the conversion from the option's unit.
_FIELDS: Final[Mapping[str, tuple[str, Callable[[Any], Any]]]] = {
    "suspend_current_queue_time": (
        "suspend_current_queue_time_millis",
        lambda seconds: round(seconds * 1000),
    ),
    "consume_timeout": ("consume_timeout_minutes", lambda seconds: _whole(seconds / 60)),
    "compress_over": ("compress_msg_body_over_howmuch", lambda size: size),
    "pull_threshold_bytes_for_queue": ("pull_threshold_size_for_queue", lambda size: size // _MIB),
}


def _check_option(name: str, value: Any) -> None:
    """Raise :class:`ConfigError` if a time or size option has a wrong type or
    range (the configs the options go to check the rest)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if name in _TIMES:
        zero_ok = _TIMES[name]
        number = whole or isinstance(value, float)
        if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            kind = "a number of seconds >= 0" if zero_ok else "a positive number of seconds"
            raise ConfigError(f"{name} must be {kind}, got {value!r}")
    elif name == "compress_over" and not (whole and value >= 0):
        raise ConfigError(f"compress_over must be a number of bytes >= 0, got {value!r}")
    elif name == "pull_threshold_bytes_for_queue" and not (whole and _MIB <= value <= 1024 * _MIB):
        raise ConfigError(
            "pull_threshold_bytes_for_queue must be a number of bytes from 1 MiB to "
            f"1 GiB ({_MIB}..{1024 * _MIB}), got {value!r}"
        )


def _resolve_aliases(options: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """``options`` with each alias of an ``allowed`` option replaced by that
    option, its value converted (other aliases are left, as unknown options)."""
    resolved = dict(options)
    for alias, (name, unit, convert) in _ALIASES.items():
        if alias not in options or name not in allowed:
            continue
        if name in options:
            raise ConfigError(
                f"{name} and {alias} set the same option ({alias} is its older name, "
                f"in {unit}): give only {name}"
            )
        value = resolved.pop(alias)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{alias} must be a number of {unit}, got {value!r}")
        converted = convert(value)
        try:
            _check_option(name, converted)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from {alias}={value!r}, in {unit})") from None
        resolved[name] = converted
    return resolved


def _fields(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as a config's fields: names and units converted where they differ."""
    fields = {}
    for name, value in options.items():
        if name in _FIELDS:
            field, convert = _FIELDS[name]
            fields[field] = convert(value)
        else:
            fields[name] = value
    return fields


@dataclass(frozen=True, slots=True)
class TransportSettings:
    """What a driver's transport needs: header type, TLS, signing, limits."""

    serialize_type: SerializeType
    ssl_context: Any
    signer: Signer | None
    connect_timeout: float
    max_frame_size: int
    logger: logging.Logger | None
    #: The client's hooks (its transport calls their ``before_request`` and
    #: ``after_request``; its flows the others).
    hooks: Hooks = field(default_factory=Hooks)


@dataclass(frozen=True, slots=True)
class ClientSettings:
    client: ClientConfig
    transport: TransportSettings
    credentials: Credentials | None


def make_signer(credentials: Credentials) -> Signer:
    def signer(fields: dict[str, str], body: bytes) -> dict[str, str]:
        return sign_request(fields, body, credentials)

    return signer


#: The producer group a producer gets when none is given (Java's ``DEFAULT_PRODUCER``).
DEFAULT_PRODUCER_GROUP = "DEFAULT_PRODUCER"

#: Group names Java's ``MixAll`` reserves for the brokers' and tools' own clients:
#: a consumer in one would share offsets and rebalancing with them. (The brokers'
#: predefined groups, but the producer's default and the schedule service's, which
#: are not consumer groups of Java's reserved list.)
RESERVED_CONSUMER_GROUPS = PREDEFINED_GROUPS - {"DEFAULT_PRODUCER", "SCHEDULE_CONSUMER"}
#: Prefix of the system consumer groups (Java's ``MixAll.CID_RMQ_SYS_PREFIX``).
SYSTEM_CONSUMER_GROUP_PREFIX = "CID_RMQ_SYS_"


def check_consumer_group(group: object) -> None:
    """Raise :class:`ConfigError` if ``group`` is one the Java client reserves."""
    if not isinstance(group, str):
        raise ConfigError(f"a consumer group must be a string, got {group!r}")
    if group in RESERVED_CONSUMER_GROUPS or group.startswith(SYSTEM_CONSUMER_GROUP_PREFIX):
        raise ConfigError(
            f"consumer group {group!r} is reserved by RocketMQ (the brokers and tools use it "
            "for their own clients): choose a group name of your application's own"
        )


def check_transaction_group(options: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless a transaction producer's options name its own group.

    A broker that cannot decide a half message asks a producer of the message's
    group (any one) whether to commit it: producers of unrelated applications
    sharing ``DEFAULT_PRODUCER`` would be asked about each other's transactions.
    """
    group = options.get("group")
    if not group or group == DEFAULT_PRODUCER_GROUP:
        raise ConfigError(
            "a TransactionProducer needs a group of its own, not "
            f"{group or DEFAULT_PRODUCER_GROUP!r}: the broker asks a producer of the half "
            "message's group whether to commit or roll back it, so the group must be the "
            "application's: TransactionProducer(..., group='my-tx-group')"
        )


#: The environment variable Java's client reads the name servers from when none is set.
NAMESRV_ADDR_ENV = "NAMESRV_ADDR"


def namesrv_addrs(
    namesrv_addr: str | Iterable[str] | None, environ: Mapping[str, str] | None
) -> str | Iterable[str]:
    """``namesrv_addr``, or when it is ``None`` or empty, ``NAMESRV_ADDR`` from ``environ``.

    The value is validated by :class:`ClientConfig`.
    """
    if namesrv_addr is not None and (not isinstance(namesrv_addr, str) or namesrv_addr.strip()):
        return namesrv_addr
    from_env = (environ or {}).get(NAMESRV_ADDR_ENV, "").strip()
    if not from_env:
        raise ConfigError(
            "no name server address: pass one ('host:port;host:port'), set the "
            f"{NAMESRV_ADDR_ENV} environment variable, or give a lookup URL "
            f"(namesrv_lookup_url=... or {NAMESRV_LOOKUP_URL_ENV})"
        )
    return from_env


#: The environment variable naming the name server lookup URL (this client's own:
#: Java builds its URL from the ``rocketmq.namesrv.domain`` property instead).
NAMESRV_LOOKUP_URL_ENV = "NAMESRV_LOOKUP_URL"


def namesrv_source(
    namesrv_addr: str | Iterable[str] | None,
    lookup_url: str | None,
    environ: Mapping[str, str] | None,
) -> tuple[str | Iterable[str], str | None]:
    """Where the name servers come from: ``(addresses, lookup URL)``, one of them set.

    In Java's order: the ``namesrv_addr`` argument, else the ``NAMESRV_ADDR``
    environment variable, else a lookup URL (the ``namesrv_lookup_url`` option,
    else ``NAMESRV_LOOKUP_URL``). An explicit option beats the environment: with
    ``namesrv_lookup_url`` set, ``NAMESRV_ADDR`` is not read. The argument and
    the option together are refused (Java would never ask the URL then).
    There is no default URL: nothing is asked unless one is given.
    """
    given = namesrv_addr is not None and (
        not isinstance(namesrv_addr, str) or bool(namesrv_addr.strip())
    )
    if lookup_url is not None:
        if given:
            raise ConfigError(
                "give either a name server address or namesrv_lookup_url, not both "
                "(the lookup URL is asked only when no address is set)"
            )
        return (), lookup_url
    env = environ or {}
    if not given and not env.get(NAMESRV_ADDR_ENV, "").strip():
        from_env = env.get(NAMESRV_LOOKUP_URL_ENV, "").strip()
        if from_env:
            return (), from_env
    return namesrv_addrs(namesrv_addr, environ), None


def _check_keys(options: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")


def client_settings(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """Validated client and transport settings from a driver's options.

    ``pid`` and ``nonce`` (any number unique to this client object) make the
    default instance name, as Java's ``pid#nanotime``. ``default_ip`` (this
    host's address, which the driver looks up) is ``client_ip``'s default;
    without ``namesrv_addr`` the name servers come from ``environ``'s
    ``NAMESRV_ADDR`` (the driver passes :data:`os.environ`), as Java's client,
    or from a lookup URL (see :func:`namesrv_source`).
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
    addrs, lookup_url = namesrv_source(namesrv_addr, options.get("namesrv_lookup_url"), environ)
    client = ClientConfig(
        namesrv_addrs=addrs,  # type: ignore[arg-type]
        namesrv_lookup_url=lookup_url,
        namesrv_lookup_interval=options.get("namesrv_lookup_interval", DEFAULT_LOOKUP_INTERVAL),
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
        hooks=Hooks(options.get("hooks")),
    )
    return ClientSettings(client, transport, credentials)


def trace_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The options without the trace ones, and the trace topic if ``enable_trace``
    (``None`` if not). A trace topic without ``enable_trace=True``, or one that
    cannot be sent to, is a :class:`ConfigError`."""
    rest = {k: v for k, v in options.items() if k not in _TRACE_KEYS}
    enabled = options.get("enable_trace", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"enable_trace must be True or False, got {enabled!r}")
    topic = options.get("trace_topic")
    if topic is not None and not enabled:
        raise ConfigError(f"trace_topic={topic!r} is given but enable_trace is not True")
    if not enabled:
        return rest, None
    if topic is None:
        return rest, DEFAULT_TRACE_TOPIC
    try:
        return rest, validate_topic(topic)
    except RocketMQError as exc:
        raise ConfigError(f"invalid trace_topic: {exc}") from None


def _split_options(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    own_keys: frozenset[str],
    what: str,
    *,
    pid: int,
    nonce: int,
    default_ip: str,
    environ: Mapping[str, str] | None,
) -> tuple[ClientSettings, dict[str, Any]]:
    """Client settings from the shared options, and the class's own options apart
    (aliases resolved, times and sizes checked)."""
    allowed = _CLIENT_KEYS | own_keys
    options = _resolve_aliases(options, allowed)
    _check_keys(options, allowed, what)
    for name, value in options.items():
        _check_option(name, value)
    settings = client_settings(
        namesrv_addr,
        {k: v for k, v in options.items() if k in _CLIENT_KEYS},
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    return settings, {k: v for k, v in options.items() if k in own_keys}


def admin_settings(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> ClientSettings:
    """:func:`client_settings` for ``Admin``, which takes only the shared options:
    an unknown one is a :class:`ConfigError` naming it, as for the other classes."""
    settings, _ = _split_options(
        namesrv_addr,
        options,
        frozenset(),
        "admin",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    return settings


def producer_settings(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> tuple[ClientSettings, ProducerConfig]:
    settings, own = _split_options(
        namesrv_addr,
        options,
        _PRODUCER_KEYS,
        "producer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    return settings, ProducerConfig(**_fields(own))


def consumer_settings(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> tuple[ClientSettings, ConsumerConfig]:
    settings, pull, own = _consumer_split(
        namesrv_addr,
        options,
        _CONSUMER_KEYS,
        "consumer",
        "PushConsumer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    config = _built(
        "consumer",
        lambda: ConsumerConfig(
            pull=pull, configured_instance_name=options.get("instance_name"), **_fields(own)
        ),
    )
    return settings, config


_PULL_CONSUMER_KEYS = frozenset(PullConsumerOptions.__annotations__) - _CLIENT_KEYS - _PULL_KEYS


def _consumer_split(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    own_keys: frozenset[str],
    what: str,
    class_name: str,
    **host: Any,
) -> tuple[ClientSettings, PullConfig, dict[str, Any]]:
    """What both consumers' settings start with: the group checked, the client
    settings, the pull options as a :class:`PullConfig`, and the class's own
    options (``own_keys``) apart, short enum names spelled out."""
    if "group" not in options:
        raise ConfigError(f"a consumer needs a group: {class_name}(..., group='my-group')")
    check_consumer_group(options["group"])
    settings, mine = _split_options(namesrv_addr, options, own_keys | _PULL_KEYS, what, **host)
    pull = PullConfig(**_fields({k: v for k, v in mine.items() if k in _PULL_KEYS}))
    own = _consumer_enum_options({k: v for k, v in mine.items() if k in own_keys})
    return settings, pull, own


def _built(what: str, make: Callable[[], T]) -> T:
    """``make()``, a config whose own checks raise :class:`ValueError`: as a
    :class:`ConfigError` naming the class's options."""
    try:
        return make()
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"invalid {what} option: {exc}") from None


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
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> tuple[ClientSettings, PullConsumerConfig]:
    settings, pull, own = _consumer_split(
        namesrv_addr,
        options,
        _PULL_CONSUMER_KEYS,
        "pull consumer",
        "PullConsumer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    strategy = own.pop("allocate_strategy", "averagely")
    if isinstance(strategy, str):
        strategy = ConsumerConfig(group=own["group"], allocate_strategy=strategy).strategy
    config = _built(
        "pull consumer", lambda: PullConsumerConfig(pull=pull, strategy=strategy, **own)
    )
    return settings, config


_SIMPLE_CONSUMER_KEYS = frozenset(SimpleConsumerOptions.__annotations__) - _CLIENT_KEYS


def simple_consumer_settings(
    namesrv_addr: str | Iterable[str] | None,
    options: Mapping[str, Any],
    *,
    pid: int,
    nonce: int,
    default_ip: str = "127.0.0.1",
    environ: Mapping[str, str] | None = None,
) -> tuple[ClientSettings, SimpleConsumerConfig]:
    if "group" not in options:
        raise ConfigError("a consumer needs a group: SimpleConsumer(..., group='my-group')")
    check_consumer_group(options["group"])
    settings, own = _split_options(
        namesrv_addr,
        options,
        _SIMPLE_CONSUMER_KEYS,
        "simple consumer",
        pid=pid,
        nonce=nonce,
        default_ip=default_ip,
        environ=environ,
    )
    own = _consumer_enum_options(own)
    return settings, _built("simple consumer", lambda: SimpleConsumerConfig(**own))


def choose_client_ip(addresses: Iterable[str]) -> str:
    """The address a client names itself by, chosen among this host's ``addresses``
    (in interface order) as Java's ``NetworkUtil.getLocalAddress`` chooses.

    The first IPv4 address that is not loopback, link-local, unspecified or in
    192.168.0.0/16 (Java passes over those: home and NAT networks); else the last
    usable IPv4 one; else the first usable IPv6 one, in brackets as Java writes it;
    else ``127.0.0.1``. Unparsable entries are skipped. The driver reads the
    addresses (the core does no IO).
    """
    v4: list[ipaddress.IPv4Address] = []
    v6: list[ipaddress.IPv6Address] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        if isinstance(ip, ipaddress.IPv4Address):
            if not str(ip).startswith("0."):
                v4.append(ip)
        elif ip.ipv4_mapped is None:
            v6.append(ip)
    for ip4 in v4:
        if ip4 not in _HOME_NETWORK:
            return str(ip4)
    if v4:
        return str(v4[-1])
    if v6:
        return f"[{v6[0]}]"
    return "127.0.0.1"


_HOME_NETWORK = ipaddress.IPv4Network("192.168.0.0/16")


def ip_bytes(ip: str) -> bytes:
    """The 4 (or 16) bytes of an IP address, for message ids (loopback if unparsable)."""
    try:
        return ipaddress.ip_address(ip.strip("[]")).packed
    except ValueError:
        return b"\x7f\x00\x00\x01"
