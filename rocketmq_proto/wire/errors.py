"""The exception hierarchy shared by the core and every driver.

Contract (the one the fuzz tests hold the core to): whatever a peer sends, the
core raises only :class:`RemoteProtocolError` for it; a call the user or a
driver makes that the protocol does not allow raises :class:`LocalProtocolError`
or a :class:`ValueError` subclass of :class:`RocketMQError`. Any other
exception escaping the core is a bug.
"""

from __future__ import annotations

from rocketmq_proto.wire.codes import ResponseCode, request_name

#: How much of a server's remark an error's message quotes; ``remark`` keeps it whole.
MAX_REMARK_IN_MESSAGE = 4096


class RocketMQError(Exception):
    """Root of every error this client raises."""

    #: Whether repeating the same operation (perhaps elsewhere) may succeed.
    retriable: bool = False


class ProtocolError(RocketMQError):
    """The remoting protocol was broken, by the peer or by us."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid remoting frame or body."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow (a bug in the caller)."""


class InvalidArgumentError(RocketMQError, ValueError):
    """A value the user gave is not acceptable: the message says which and why."""


class InvalidMessageError(InvalidArgumentError):
    """A message cannot be sent as it is (topic, body, properties, size...)."""


class MessageTooLargeError(InvalidMessageError):
    """A message (or batch) is larger than the producer's maximum message size."""


class InvalidTopicError(InvalidMessageError):
    """A topic name is empty, too long, uses characters RocketMQ forbids, or is reserved."""


class InvalidPropertyError(InvalidMessageError):
    """A property key or value cannot be encoded (separator characters, size, reserved key)."""


class TimerUnsupportedError(InvalidMessageError):
    """A timer message (``deliver_at``, TIMER_DELIVER_MS, TIMER_DELAY_SEC/MS) was about to go
    to a broker older than RocketMQ 5.0.0, which has no timers and would deliver it at once.

    Raised before the message is sent; the producer option ``timer_fallback="delay_level"``
    sends it with the nearest delay level instead.
    """


class ConfigError(InvalidArgumentError):
    """A client was configured with an invalid option."""


class CompressionUnavailableError(RocketMQError):
    """A message body is compressed with an algorithm whose library is not installed."""


class RequestTimeoutError(RocketMQError, TimeoutError):
    """No answer arrived before the request's deadline (also a builtin :class:`TimeoutError`)."""

    retriable = True


class ConnectionClosedError(RocketMQError, ConnectionError):
    """The connection closed (or could not be opened) before an answer arrived.

    Also a builtin :class:`ConnectionError` (so an :class:`OSError`).
    """

    retriable = True


class RouteNotFoundError(RocketMQError):
    """The name servers know no route for a topic (it does not exist, or has no queue)."""


class BrokerError(RocketMQError):
    """A server answered with an error response code.

    ``code`` and ``remark`` are the response's (the message quotes at most
    :data:`MAX_REMARK_IN_MESSAGE` characters of the remark; ``remark`` keeps it
    whole); ``request`` is the code of the request answered, when known;
    ``retriable`` says whether Java's client would try again (for a send: on
    another broker).
    """

    #: The response code this class stands for (``None`` for the generic class).
    response_code: int | None = None

    def __init__(
        self,
        code: int,
        remark: str | None = None,
        *,
        retriable: bool | None = None,
        request: int | None = None,
    ):
        self.code = code
        self.remark = remark or ""
        self.request = request
        if retriable is not None:
            self.retriable = retriable
        try:
            name = ResponseCode(code).name
        except ValueError:
            name = "UNKNOWN"
        detail = ""
        if len(self.remark) > MAX_REMARK_IN_MESSAGE:
            cut = len(self.remark) - MAX_REMARK_IN_MESSAGE
            detail = (
                f": {self.remark[:MAX_REMARK_IN_MESSAGE]}... ({cut} more characters in .remark)"
            )
        elif self.remark:
            detail = f": {self.remark}"
        what = f"{request_name(request)}: " if request is not None else ""
        super().__init__(f"{what}broker answered {name} ({code}){detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_broker_error,
            (type(self), self.code, self.remark, self.retriable, self.request),
        )


def _rebuild_broker_error(
    cls: type[BrokerError], code: int, remark: str, retriable: bool, request: int | None
) -> BrokerError:
    return cls(code, remark, retriable=retriable, request=request)


class BrokerSystemError(BrokerError):
    response_code = ResponseCode.SYSTEM_ERROR
    retriable = True


class SystemBusyError(BrokerError):
    response_code = ResponseCode.SYSTEM_BUSY
    retriable = True


class RequestCodeNotSupportedError(BrokerError):
    response_code = ResponseCode.REQUEST_CODE_NOT_SUPPORTED


class TransactionFailedError(BrokerError):
    response_code = ResponseCode.TRANSACTION_FAILED


class MessageIllegalError(BrokerError):
    response_code = ResponseCode.MESSAGE_ILLEGAL


class ServiceNotAvailableError(BrokerError):
    response_code = ResponseCode.SERVICE_NOT_AVAILABLE
    retriable = True


class VersionNotSupportedError(BrokerError):
    response_code = ResponseCode.VERSION_NOT_SUPPORTED


class NoPermissionError(BrokerError):
    response_code = ResponseCode.NO_PERMISSION
    retriable = True


class AuthenticationError(BrokerError):
    """The server refused our credentials (missing, unknown, or a bad signature)."""

    retriable = False


class TopicNotExistError(BrokerError):
    response_code = ResponseCode.TOPIC_NOT_EXIST
    retriable = True


class TopicExistsError(BrokerError):
    response_code = ResponseCode.TOPIC_EXIST_ALREADY


class QueryNotFoundError(BrokerError):
    response_code = ResponseCode.QUERY_NOT_FOUND


class SubscriptionError(BrokerError):
    """The broker rejected a subscription (parse failure, unknown or stale subscription)."""


class SubscriptionParseFailedError(SubscriptionError):
    response_code = ResponseCode.SUBSCRIPTION_PARSE_FAILED


class SubscriptionNotExistError(SubscriptionError):
    response_code = ResponseCode.SUBSCRIPTION_NOT_EXIST


class SubscriptionNotLatestError(SubscriptionError):
    response_code = ResponseCode.SUBSCRIPTION_NOT_LATEST
    retriable = True


class SubscriptionGroupNotExistError(SubscriptionError):
    response_code = ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST


class InvalidParameterError(BrokerError):
    response_code = ResponseCode.INVALID_PARAMETER


class NoBuyerIdError(BrokerError):
    response_code = ResponseCode.NO_BUYER_ID
    retriable = True


class NotInCurrentUnitError(BrokerError):
    response_code = ResponseCode.NOT_IN_CURRENT_UNIT
    retriable = True


class ConsumerNotOnlineError(BrokerError):
    response_code = ResponseCode.CONSUMER_NOT_ONLINE


class FlowControlError(BrokerError):
    response_code = ResponseCode.FLOW_CONTROL
    retriable = True


class GoAwayError(BrokerError):
    """The server is shutting down and asks clients to go elsewhere."""

    response_code = ResponseCode.GO_AWAY
    retriable = True


_BY_CODE: dict[int, type[BrokerError]] = {
    cls.response_code: cls
    for cls in (
        BrokerSystemError,
        SystemBusyError,
        RequestCodeNotSupportedError,
        TransactionFailedError,
        MessageIllegalError,
        ServiceNotAvailableError,
        VersionNotSupportedError,
        NoPermissionError,
        TopicNotExistError,
        TopicExistsError,
        QueryNotFoundError,
        SubscriptionParseFailedError,
        SubscriptionNotExistError,
        SubscriptionNotLatestError,
        SubscriptionGroupNotExistError,
        InvalidParameterError,
        NoBuyerIdError,
        NotInCurrentUnitError,
        ConsumerNotOnlineError,
        FlowControlError,
        GoAwayError,
    )
    if cls.response_code is not None
}

# Remarks by which ACL 1.0 and ACL 2.0 brokers say a request's credentials were refused:
# both answer with a generic code (SYSTEM_ERROR or NO_PERMISSION), so the remark decides.
_AUTH_REMARK_MARKERS = (
    "accesskey",
    "signature",
    "authentication",
    "aclexception",
    "not authorized",
    "user:",
    "username",
    "no user",
)


def error_for_response(
    code: int, remark: str | None = None, *, request: int | None = None
) -> BrokerError:
    """The exception for an error response, chosen by its code (and for auth, its remark).

    ``request`` (the request's code) names the request in the message.
    """
    low = (remark or "").lower()
    if code in (ResponseCode.SYSTEM_ERROR, ResponseCode.NO_PERMISSION) and any(
        marker in low for marker in _AUTH_REMARK_MARKERS
    ):
        return AuthenticationError(code, remark, request=request)
    cls = _BY_CODE.get(code, BrokerError)
    return cls(code, remark, request=request)


class PopNotServedError(RocketMQError):
    """The server does not serve POP consumption, although it answers other requests:
    the RocketMQ 5.x proxy's remoting port handles POP_MESSAGE as a pull (and fails),
    and never answers ACK_MESSAGE. A SimpleConsumer (or a POP-mode PushConsumer)
    must be given the name servers, and reach the brokers themselves."""


class UserCallbackError(RocketMQError):
    """A user's callable (handler, local transaction, checker) raised; see ``__cause__``."""

    #: Seconds the callable ran before it raised, when the driver timed the call.
    elapsed: float | None = None


class LocalStorageError(RocketMQError):
    """A local file (broadcasting offsets) could not be read or written; see ``__cause__``."""
