"""RocketMQ for asyncio: ``async with Producer(...)``, awaitable sends."""

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

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "Admin",
    "AuthenticationError",
    "BrokerError",
    "ClusterInfo",
    "ConfigError",
    "ConnectionClosedError",
    "ConsumeResult",
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
