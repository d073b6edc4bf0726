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
    ConsumeResult,
    InvalidMessageError,
    Message,
    MessageExt,
    MessageQueue,
    MessageTooLargeError,
    ProtocolError,
    QueueSelection,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    SendResult,
    SendStatus,
    TimerFallback,
    TimerUnsupportedError,
    TopicOffset,
    TopicRouteData,
    TransactionState,
)

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
    "ConsumeResult",
    "Future",
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
    "RequestTimeoutError",
    "RocketMQError",
    "RouteNotFoundError",
    "SendResult",
    "SendStatus",
    "SimpleConsumer",
    "TimerFallback",
    "TimerUnsupportedError",
    "TopicOffset",
    "TopicRouteData",
    "TransactionProducer",
    "TransactionState",
]
