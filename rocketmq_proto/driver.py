"""The driver contract: everything a driver (an IO backend) takes from the core.

A driver runs the core on one kind of IO (``rocketmq_asyncio``: an event loop;
``rocketmq_sync``: threads; ``rocketmq_gevent``: greenlets; a fourth, e.g. for
trio, would do the same). It imports only this module and :mod:`rocketmq_proto`
(the user's names); a test holds the three drivers to that. What it must do:

1. **Connections.** Keep one :class:`Connection` per broker or name-server
   address: feed it the bytes read (``receive_data``), write what it returns,
   hand its events to the waiters, and call ``handle_timer`` at
   ``next_deadline()``. Ask a :class:`PoolPolicy` whether to use, wait for or
   dial a connection, or fail at once while a failed address backs off. An
   :class:`Endpoint` per address splits it and words the errors, the log and
   the answers to a server's requests that nobody handles; a transport made
   on its own takes its :class:`TransportSettings` from :func:`transport_settings`.
2. **Effects.** Run a :data:`Flow` (a generator) to its end: send each
   :data:`Effect` it yields back to it performed (:class:`Call` answered by the
   response, :class:`Now` by a monotonic clock in seconds, :class:`WallTime` by
   epoch milliseconds, ...), throw a :class:`RocketMQError` of an effect into
   it, and turn an exception of a user's callable into
   :class:`UserCallbackError` (:func:`user_callback_error`); :class:`HttpAnswer`
   bounds an :class:`HttpGet`'s answer and words its errors. Every class of the
   :data:`Effect` union is here.
3. **Clients.** Build each client's cores with a ``build_*`` builder (it
   validates the options once for every driver, from the process's
   :class:`Host` facts), run their upkeep flows under :func:`supervised`,
   answer the server's requests with ``ClientCore.handle_server_request``,
   and move them through their lifecycle (:class:`LifecycleOwner`) in order.
"""

from __future__ import annotations

import logging
from typing import Any

from rocketmq_proto.build import (
    Built,
    Host,
    PushCore,
    build_admin,
    build_producer,
    build_pull_consumer,
    build_push_consumer,
    build_simple_consumer,
    build_transaction_producer,
)
from rocketmq_proto.connection.connection import (
    Connection,
    ConnectionClosed,
    ConnectionState,
    Event,
    Reply,
    RequestFailed,
    RequestTimedOut,
    Response,
    ServerRequest,
    Signer,
)
from rocketmq_proto.connection.endpoint import Endpoint, request_timeout_error
from rocketmq_proto.connection.pool import Dial, Fail, PoolPolicy, ReconnectBackoff, Use, Wait
from rocketmq_proto.flows.admin import DEFAULT_CLUSTER, AdminCore, BrokerStatus, TopicOffset
from rocketmq_proto.flows.consumer.auto_push import AutoPushConsumerCore
from rocketmq_proto.flows.consumer.lite_pull import PullConsumerCore
from rocketmq_proto.flows.consumer.pop_push import PopPushConsumerCore
from rocketmq_proto.flows.consumer.push import (
    HANDLER_NOT_RUN,
    ConsumerConfig,
    MessageHandler,
    PushConsumerCore,
)
from rocketmq_proto.flows.consumer.simple import SimpleConsumerCore
from rocketmq_proto.flows.effects import (
    Call,
    Effect,
    Flow,
    HttpGet,
    Now,
    Offload,
    Oneway,
    ReadFile,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
    WriteFile,
    supervised,
)
from rocketmq_proto.flows.hooks import Hooks, request_ended, request_started
from rocketmq_proto.flows.lifecycle import LifecycleOwner, LifecycleState
from rocketmq_proto.flows.localfile import read_file as perform_read_file
from rocketmq_proto.flows.localfile import write_file as perform_write_file
from rocketmq_proto.flows.perform import HttpAnswer, user_callback_error
from rocketmq_proto.flows.producer import (
    ProducerCore,
    QueueSelector,
    ReplyWaiters,
    SendResult,
    make_reply_message,
)
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.flows.trace import TRACE_SEND_TIMEOUT
from rocketmq_proto.message.model import Message, MessageExt
from rocketmq_proto.options import (
    ClientOptions,
    ClientSettings,
    ConsumerOptions,
    ProducerOptions,
    PullConsumerOptions,
    SimpleConsumerOptions,
    TransportSettings,
    choose_client_ip,
)
from rocketmq_proto.wire.bodies import (
    ClientConnection,
    ConsumeMessageDirectlyResult,
    ConsumerConnection,
    ConsumerRunningInfo,
    ConsumeStats,
    OffsetWrapper,
    SubscriptionGroupConfig,
)
from rocketmq_proto.wire.codes import (
    Perm,
    ResponseCode,
    SerializeType,
    TransactionState,
    request_name,
)
from rocketmq_proto.wire.command import DEFAULT_MAX_FRAME_SIZE, RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    ConnectionClosedError,
    InvalidArgumentError,
    LocalProtocolError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    UserCallbackError,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import ClusterInfo, MessageQueue, TopicRouteData
from rocketmq_proto.wire.trace import DEFAULT_TRACE_TOPIC, TraceRecord

__all__ = [
    "CLIENT_CLASSES",
    "DEFAULT_CLUSTER",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_TRACE_TOPIC",
    "HANDLER_NOT_RUN",
    "SHARED_EXPORTS",
    "TRACE_SEND_TIMEOUT",
    "AdminCore",
    "AutoPushConsumerCore",
    "BrokerStatus",
    "Built",
    "Call",
    "ClientConnection",
    "ClientCore",
    "ClientOptions",
    "ClientSettings",
    "ClusterInfo",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionState",
    "ConsumeMessageDirectlyResult",
    "ConsumeStats",
    "ConsumerConfig",
    "ConsumerConnection",
    "ConsumerOptions",
    "ConsumerRunningInfo",
    "Dial",
    "Effect",
    "Endpoint",
    "Event",
    "Fail",
    "Flow",
    "Hooks",
    "Host",
    "HttpAnswer",
    "HttpGet",
    "InvalidArgumentError",
    "LifecycleOwner",
    "LifecycleState",
    "LocalProtocolError",
    "Message",
    "MessageExt",
    "MessageHandler",
    "MessageQueue",
    "Now",
    "Offload",
    "OffsetWrapper",
    "Oneway",
    "Perm",
    "PoolPolicy",
    "PopPushConsumerCore",
    "ProducerCore",
    "ProducerOptions",
    "PullConsumerCore",
    "PullConsumerOptions",
    "PushConsumerCore",
    "PushCore",
    "QueueSelector",
    "ReadFile",
    "ReconnectBackoff",
    "RemoteProtocolError",
    "RemotingCommand",
    "Reply",
    "ReplyWaiters",
    "RequestFailed",
    "RequestTimedOut",
    "RequestTimeoutError",
    "Response",
    "ResponseCode",
    "RocketMQError",
    "SendResult",
    "SerializeType",
    "ServerRequest",
    "Signer",
    "SimpleConsumerCore",
    "SimpleConsumerOptions",
    "Sleep",
    "Spawn",
    "SubscriptionGroupConfig",
    "TopicOffset",
    "TopicRouteData",
    "TraceRecord",
    "TransactionState",
    "TransportSettings",
    "Use",
    "UserCall",
    "UserCallbackError",
    "Wait",
    "WallTime",
    "WriteFile",
    "build_admin",
    "build_producer",
    "build_pull_consumer",
    "build_push_consumer",
    "build_simple_consumer",
    "build_transaction_producer",
    "choose_client_ip",
    "log_fields",
    "make_reply_message",
    "perform_read_file",
    "perform_write_file",
    "request_ended",
    "request_name",
    "request_started",
    "request_timeout_error",
    "supervised",
    "transport_settings",
    "user_callback_error",
]

#: The user's names every driver package exports besides its client classes
#: (all defined in :mod:`rocketmq_proto`): one list, which a test holds each
#: driver's ``__all__`` to.
SHARED_EXPORTS = (
    "AuthenticationError",
    "BrokerError",
    "ClusterInfo",
    "ConfigError",
    "ConnectionClosedError",
    "ConsumeContext",
    "ConsumeResult",
    "EndTransactionContext",
    "Hook",
    "InvalidMessageError",
    "Message",
    "MessageExt",
    "MessageQueue",
    "MessageTooLargeError",
    "ProtocolError",
    "QueueSelection",
    "RemoteProtocolError",
    "RequestContext",
    "RequestTimeoutError",
    "RocketMQError",
    "RouteNotFoundError",
    "SendContext",
    "SendResult",
    "SendStatus",
    "TimerFallback",
    "TimerUnsupportedError",
    "TopicOffset",
    "TopicRouteData",
    "TraceRecord",
    "TraceType",
    "TransactionState",
)

#: The client classes every driver package exports.
CLIENT_CLASSES = (
    "Admin",
    "Producer",
    "PullConsumer",
    "PushConsumer",
    "SimpleConsumer",
    "TransactionProducer",
)


def transport_settings(
    *,
    serialize_type: SerializeType = SerializeType.JSON,
    ssl_context: Any = None,
    signer: Signer | None = None,
    connect_timeout: float = 3.0,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    logger: logging.Logger | None = None,
) -> TransportSettings:
    """The settings of a driver's transport made on its own (a client's come from
    its builder), checked as far as the core can: ``ssl_context``
    needs ``wrap_socket`` (a transport insists on an :class:`ssl.SSLContext`).
    Raises :class:`ConfigError`."""
    if not connect_timeout > 0:
        raise ConfigError(f"connect_timeout must be positive, got {connect_timeout!r}")
    if max_frame_size < 8:
        raise ConfigError(f"max_frame_size must be at least 8, got {max_frame_size!r}")
    if ssl_context is not None and not hasattr(ssl_context, "wrap_socket"):  # no ssl import here
        raise ConfigError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
    return TransportSettings(
        serialize_type=SerializeType(serialize_type),
        ssl_context=ssl_context,
        signer=signer,
        connect_timeout=connect_timeout,
        max_frame_size=max_frame_size,
        logger=logger,
    )
