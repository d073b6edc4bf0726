# Generated from rocketmq_asyncio/__init__.py by scripts/unasync.py: do not edit.
# Edit rocketmq_asyncio/__init__.py, then run: python scripts/unasync.py
"""RocketMQ for blocking code and threads: ``with Producer(...)``, thread-safe clients."""

import logging as _logging

from rocketmq_proto import (
    AuthenticationError,
    BrokerError,
    ClusterInfo,
    ConfigError,
    ConnectionClosedError,
    ConsumeContext,
    ConsumeResult,
    EndTransactionContext,
    Hook,
    InvalidMessageError,
    Message,
    MessageExt,
    MessageQueue,
    MessageTooLargeError,
    ProtocolError,
    QueueSelection,
    RemoteProtocolError,
    RequestContext,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    SendContext,
    SendResult,
    SendStatus,
    TimerFallback,
    TimerUnsupportedError,
    TopicOffset,
    TopicRouteData,
    TraceRecord,
    TraceType,
    TransactionState,
)
from rocketmq_proto import __version__ as __version__

from ._client import (
    Admin,
    Producer,
    PullConsumer,
    PushConsumer,
    SimpleConsumer,
    TransactionProducer,
)
from ._future import Future

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "Admin",
    "AuthenticationError",
    "BrokerError",
    "ClusterInfo",
    "ConfigError",
    "ConnectionClosedError",
    "ConsumeContext",
    "ConsumeResult",
    "EndTransactionContext",
    "Future",
    "Hook",
    "InvalidMessageError",
    "Message",
    "MessageExt",
    "MessageQueue",
    "MessageTooLargeError",
    "Producer",
    "ProtocolError",
    "PullConsumer",
    "PushConsumer",
    "QueueSelection",
    "RemoteProtocolError",
    "RequestContext",
    "RequestTimeoutError",
    "RocketMQError",
    "RouteNotFoundError",
    "SendContext",
    "SendResult",
    "SendStatus",
    "SimpleConsumer",
    "TimerFallback",
    "TimerUnsupportedError",
    "TopicOffset",
    "TopicRouteData",
    "TraceRecord",
    "TraceType",
    "TransactionProducer",
    "TransactionState",
]
