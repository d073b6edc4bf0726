"""Builders: each client class's cores, made from its options in one call.

A driver's ``Producer("127.0.0.1:9876", group="g")`` hands its arguments and the
facts of its process (:class:`Host`) to :func:`build_producer` and gets a
:class:`Built`: the validated settings, the session core every client has
(:class:`~rocketmq_proto.flows.session.ClientCore`) and the class's own core,
registered with the session. The driver then only runs them. So validation,
message-id generation and the wiring of cores are written once for every
driver; a bad option raises :class:`~rocketmq_proto.wire.errors.ConfigError`
here, before the driver makes a thread or a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rocketmq_proto.flows.admin import AdminCore
from rocketmq_proto.flows.consumer.auto_push import AutoPushConsumerCore
from rocketmq_proto.flows.consumer.lite_pull import PullConsumerCore
from rocketmq_proto.flows.consumer.pop_push import PopPushConsumerCore
from rocketmq_proto.flows.consumer.push import ConsumerConfig, MessageHandler, PushConsumerCore
from rocketmq_proto.flows.consumer.simple import SimpleConsumerCore
from rocketmq_proto.flows.producer import ProducerConfig, ProducerCore, TransactionChecker
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.flows.trace import TRACE_SEND_TIMEOUT, Tracer, trace_producer_group
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.options import (
    ClientSettings,
    admin_settings,
    check_transaction_group,
    consumer_settings,
    ip_bytes,
    producer_settings,
    pull_consumer_settings,
    simple_consumer_settings,
    trace_options,
)
from rocketmq_proto.wire.errors import ConfigError

__all__ = [
    "Built",
    "Host",
    "PushCore",
    "build_admin",
    "build_producer",
    "build_pull_consumer",
    "build_push_consumer",
    "build_simple_consumer",
    "build_transaction_producer",
]

C = TypeVar("C")

NamesrvAddr = str | Iterable[str] | None

#: The core of a push consumer, by its ``consume_mode``: pull, pop or auto.
PushCore = PushConsumerCore | PopPushConsumerCore | AutoPushConsumerCore


@dataclass(frozen=True, slots=True)
class Host:
    """What building a client takes from its process and host (the driver reads
    them: the core does no IO and draws no random numbers)."""

    #: This process's id (the default instance name, message ids).
    pid: int
    #: Random bits unique to this client object: the default instance name is
    #: ``pid#nonce``, as Java's ``pid#nanotime``.
    nonce: int
    #: Random bits seeding the message-id generator.
    id_seed: int
    #: This host's address (``client_ip``'s default).
    default_ip: str = "127.0.0.1"
    #: Where ``NAMESRV_ADDR`` is read when no name server is given.
    environ: Mapping[str, str] | None = None

    def settings_args(self) -> dict[str, Any]:
        """The keyword arguments of the ``*_settings`` builders."""
        return {
            "pid": self.pid,
            "nonce": self.nonce,
            "default_ip": self.default_ip,
            "environ": self.environ,
        }

    def id_generator(self, settings: ClientSettings) -> UniqueIdGenerator:
        """The message-id generator of a client with ``settings``."""
        return UniqueIdGenerator(ip_bytes(settings.client.client_ip), self.pid, self.id_seed)


@dataclass(frozen=True, slots=True)
class Built(Generic[C]):
    """A client's cores, made and wired, not started."""

    settings: ClientSettings
    #: The session: routes, heartbeats, connections' owners, server requests.
    session: ClientCore
    #: The class's own core (a producer's, a consumer's, an admin's).
    core: C
    #: The message trace (``enable_trace=True``): the session's, told by the flows,
    #: and the dispatch flow the driver runs while the client is open.
    tracer: Tracer | None = None


def _tracer(
    session: ClientCore, topic: str | None, group: str, kind: str, ids: UniqueIdGenerator
) -> Tracer | None:
    """The trace of a client of ``group`` (``kind``: PRODUCE or CONSUME) sending to
    ``topic`` (``None``: no trace), set as the session's."""
    if topic is None:
        return None
    producer = ProducerCore(
        session,
        ProducerConfig(
            group=trace_producer_group(group, kind),
            send_timeout=TRACE_SEND_TIMEOUT,
            send_latency_fault_enable=session.fault.enabled,
            # Trace bodies are large and repetitive: the fastest zlib level shrinks
            # them nearly as much (any zlib level reads back the same).
            compress_level=1,
        ),
        ids,
        hooked=False,
        # A trace message's body (at most MAX_TRACE_BODY bytes, about 0.3 ms at zlib
        # level 1) is compressed by the task sending it, outside the core lock:
        # handing it to a thread saved a drain's event loop nothing measurable and
        # cost thousands of context switches per drain (benchmarks/trace_parts.py,
        # "offloaded" against "on").
        short_compression=True,
    )
    tracer = Tracer(topic, producer, ids, namespace=session.config.namespace)
    session.tracer = tracer
    return tracer


def build_producer(
    namesrv_addr: NamesrvAddr, options: Mapping[str, Any], host: Host
) -> Built[ProducerCore]:
    """A producer's cores."""
    options, trace_topic = trace_options(options)
    settings, config = producer_settings(namesrv_addr, options, **host.settings_args())
    session = ClientCore(settings.client, hooks=settings.transport.hooks)
    ids = host.id_generator(settings)
    producer = ProducerCore(session, config, ids)
    producer.register()
    tracer = _tracer(session, trace_topic, config.group, "PRODUCE", ids)
    return Built(settings, session, producer, tracer)


def build_transaction_producer(
    namesrv_addr: NamesrvAddr,
    options: Mapping[str, Any],
    host: Host,
    checker: TransactionChecker | None,
) -> Built[ProducerCore]:
    """A transaction producer's cores: ``checker(message)`` answers the broker's
    check-backs. Its group is checked (the broker sends check-backs to a
    producer of the group)."""
    if not callable(checker):
        raise ConfigError("checker must be callable: (message) -> TransactionState")
    check_transaction_group(options)
    built = build_producer(namesrv_addr, options, host)
    built.core.set_transaction_checker(checker)
    return built


def build_admin(
    namesrv_addr: NamesrvAddr, options: Mapping[str, Any], host: Host
) -> Built[AdminCore]:
    """An admin client's cores. Administration waits longer by default (a
    ``request_timeout`` of 15 s): a broker may take seconds to create its first
    topic, as its stores start lazily."""
    settings = admin_settings(
        namesrv_addr, {"request_timeout": 15.0, **options}, **host.settings_args()
    )
    session = ClientCore(settings.client, hooks=settings.transport.hooks)
    return Built(settings, session, AdminCore(session))


def build_push_consumer(
    namesrv_addr: NamesrvAddr,
    options: Mapping[str, Any],
    host: Host,
    handler: MessageHandler | None,
    run_handler: Callable[[ConsumerConfig, MessageHandler], MessageHandler],
) -> Built[PushCore]:
    """A push consumer's cores, consuming with the user's ``handler``.

    ``run_handler(config, handler)`` is the handler as the driver runs it for
    this configuration (at most ``config.consume_thread_max`` at once): the core
    calls that one. It is asked once the options are valid. With
    ``consume_mode="pop"`` the core pops (:class:`PopPushConsumerCore`), with
    ``"auto"`` it consumes each topic by the brokers' mode (:class:`AutoPushConsumerCore`).
    """
    if not callable(handler):
        raise ConfigError("handler must be callable: (messages) -> ConsumeResult")
    options, trace_topic = trace_options(options)
    settings, config = consumer_settings(namesrv_addr, options, **host.settings_args())
    session = ClientCore(settings.client, hooks=settings.transport.hooks)
    run = run_handler(config, handler)
    # One generator for the client: two made from the same seed give the same ids.
    ids = host.id_generator(settings)
    consumer: PushCore
    if config.consume_mode == "pop":
        consumer = PopPushConsumerCore(session, config, run)
    elif config.consume_mode == "auto":
        consumer = AutoPushConsumerCore(session, config, run, ids)
    else:
        consumer = PushConsumerCore(session, config, run, ids)
    consumer.register()
    tracer = _tracer(session, trace_topic, config.group, "CONSUME", ids)
    return Built(settings, session, consumer, tracer)


def build_pull_consumer(
    namesrv_addr: NamesrvAddr,
    options: Mapping[str, Any],
    host: Host,
    *,
    notify: Callable[[], object],
) -> Built[PullConsumerCore]:
    """A pull consumer's cores. ``notify()`` is called when messages arrive for
    :meth:`~PullConsumerCore.take` (the driver wakes its polls)."""
    settings, config = pull_consumer_settings(namesrv_addr, options, **host.settings_args())
    session = ClientCore(settings.client, hooks=settings.transport.hooks)
    consumer = PullConsumerCore(session, config, notify=notify)
    consumer.register()
    return Built(settings, session, consumer)


def build_simple_consumer(
    namesrv_addr: NamesrvAddr, options: Mapping[str, Any], host: Host
) -> Built[SimpleConsumerCore]:
    """A simple (POP) consumer's cores."""
    settings, config = simple_consumer_settings(namesrv_addr, options, **host.settings_args())
    session = ClientCore(settings.client, hooks=settings.transport.hooks)
    consumer = SimpleConsumerCore(session, config)
    consumer.register()
    return Built(settings, session, consumer)
