"""The RocketMQ remoting protocol as pure state machines: no sockets, threads or clocks.

Layers (see the project's design notes):

1. codec: frames, both header formats, commands, message encodings, route and
   other bodies, ACL signing;
2. :class:`Connection`: one connection's opaques, requests in flight, timeouts;
3. client logic: routes, producer and admin flows (generators of effects that a
   driver performs with its own IO).

The user-facing classes live in the driver packages ``rocketmq_asyncio``,
``rocketmq_gevent`` and ``rocketmq_sync``; what they share (messages, results,
errors, codes) is defined and exported here.
"""

import logging as _logging

#: The release of the ``rocketmq-remoting`` distribution; the driver packages re-export it
#: and the build reads it from here (``[tool.hatch.version]`` in pyproject.toml).
__version__ = "0.1.0"

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
)
from rocketmq_proto.flows.admin import BrokerStatus, TopicOffset
from rocketmq_proto.flows.consumer.consume import ConsumeResult
from rocketmq_proto.flows.effects import Call, Effect, Flow, Now, Oneway, Sleep, UserCall, WallTime
from rocketmq_proto.flows.hooks import (
    ConsumeContext,
    EndTransactionContext,
    Hook,
    RequestContext,
    SendContext,
)
from rocketmq_proto.flows.producer import (
    QueueSelection,
    QueueSelector,
    SendResult,
    TimerFallback,
    make_reply_message,
    select_by_key,
)
from rocketmq_proto.message.codec import decode_message, decode_messages, encode_batch
from rocketmq_proto.message.compression import CompressionType, compress_body, decompress_body
from rocketmq_proto.message.ids import UniqueIdGenerator, decode_offset_msg_id, encode_offset_msg_id
from rocketmq_proto.message.model import Message, MessageExt, validate_topic
from rocketmq_proto.message.properties import MessageConst, decode_properties, encode_properties
from rocketmq_proto.options import (
    ClientOptions,
    ConsumerOptions,
    ProducerOptions,
    PullConsumerOptions,
    SimpleConsumerOptions,
)
from rocketmq_proto.wire.acl import Credentials, sign_request
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
    LanguageCode,
    MessageSysFlag,
    Perm,
    PullStatus,
    PullSysFlag,
    RequestCode,
    ResponseCode,
    SendStatus,
    SerializeType,
    TransactionState,
)
from rocketmq_proto.wire.command import (
    DEFAULT_MAX_FRAME_SIZE,
    ExtTemplate,
    FrameDecoder,
    RemotingCommand,
    encode_command,
)
from rocketmq_proto.wire.errors import (
    AuthenticationError,
    BrokerError,
    BrokerSystemError,
    CompressionUnavailableError,
    ConfigError,
    ConnectionClosedError,
    FlowControlError,
    InvalidArgumentError,
    InvalidMessageError,
    InvalidPropertyError,
    InvalidTopicError,
    LocalProtocolError,
    MessageTooLargeError,
    NoPermissionError,
    PopNotServedError,
    ProtocolError,
    QueryNotFoundError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    ServiceNotAvailableError,
    SystemBusyError,
    TimerUnsupportedError,
    TopicNotExistError,
    UserCallbackError,
    error_for_response,
)
from rocketmq_proto.wire.hashing import java_string_hash
from rocketmq_proto.wire.route import (
    BrokerData,
    ClusterInfo,
    MessageQueue,
    QueueData,
    TopicRouteData,
)
from rocketmq_proto.wire.trace import TraceRecord, TraceType

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "AuthenticationError",
    "BrokerData",
    "BrokerError",
    "BrokerStatus",
    "BrokerSystemError",
    "Call",
    "ClientConnection",
    "ClientOptions",
    "ClusterInfo",
    "CompressionType",
    "CompressionUnavailableError",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionState",
    "ConsumeContext",
    "ConsumeMessageDirectlyResult",
    "ConsumeResult",
    "ConsumeStats",
    "ConsumerConnection",
    "ConsumerOptions",
    "ConsumerRunningInfo",
    "Credentials",
    "Effect",
    "EndTransactionContext",
    "Event",
    "ExtTemplate",
    "Flow",
    "FlowControlError",
    "FrameDecoder",
    "Hook",
    "InvalidArgumentError",
    "InvalidMessageError",
    "InvalidPropertyError",
    "InvalidTopicError",
    "LanguageCode",
    "LocalProtocolError",
    "Message",
    "MessageConst",
    "MessageExt",
    "MessageQueue",
    "MessageSysFlag",
    "MessageTooLargeError",
    "NoPermissionError",
    "Now",
    "OffsetWrapper",
    "Oneway",
    "Perm",
    "PopNotServedError",
    "ProducerOptions",
    "ProtocolError",
    "PullConsumerOptions",
    "PullStatus",
    "PullSysFlag",
    "QueryNotFoundError",
    "QueueData",
    "QueueSelection",
    "QueueSelector",
    "RemoteProtocolError",
    "RemotingCommand",
    "Reply",
    "RequestCode",
    "RequestContext",
    "RequestFailed",
    "RequestTimedOut",
    "RequestTimeoutError",
    "Response",
    "ResponseCode",
    "RocketMQError",
    "RouteNotFoundError",
    "SendContext",
    "SendResult",
    "SendStatus",
    "SerializeType",
    "ServerRequest",
    "ServiceNotAvailableError",
    "SimpleConsumerOptions",
    "Sleep",
    "SubscriptionGroupConfig",
    "SystemBusyError",
    "TimerFallback",
    "TimerUnsupportedError",
    "TopicNotExistError",
    "TopicOffset",
    "TopicRouteData",
    "TraceRecord",
    "TraceType",
    "TransactionState",
    "UniqueIdGenerator",
    "UserCall",
    "UserCallbackError",
    "WallTime",
    "compress_body",
    "decode_message",
    "decode_messages",
    "decode_offset_msg_id",
    "decode_properties",
    "decompress_body",
    "encode_batch",
    "encode_command",
    "encode_offset_msg_id",
    "encode_properties",
    "error_for_response",
    "java_string_hash",
    "make_reply_message",
    "select_by_key",
    "sign_request",
    "validate_topic",
]
