"""Errors that tell the truth: requests by name, whole remarks kept, builtin bases."""

from __future__ import annotations

import pickle

import pytest

from rocketmq_proto.flows.session import ClientConfig, ClientCore
from rocketmq_proto.message.model import Message
from rocketmq_proto.wire.codes import FLAG_RESPONSE, RequestCode, ResponseCode, request_name
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    MAX_REMARK_IN_MESSAGE,
    AuthenticationError,
    BrokerError,
    ConnectionClosedError,
    RequestTimeoutError,
    RocketMQError,
    TopicNotExistError,
    UserCallbackError,
    error_for_response,
)
from rocketmq_proto.wire.route import MessageQueue

from .flowsim import Sim
from .test_producer_core import Broker, make_producer

NAMESRV = "127.0.0.1:9876"


def test_request_name_is_the_code_name_or_the_number_when_unknown() -> None:
    assert request_name(RequestCode.GET_ROUTEINFO_BY_TOPIC) == "GET_ROUTEINFO_BY_TOPIC"
    assert request_name(105) == "GET_ROUTEINFO_BY_TOPIC"
    assert request_name(987654) == "request code 987654"


def test_broker_error_names_the_request_and_the_response() -> None:
    error = error_for_response(
        ResponseCode.TOPIC_NOT_EXIST, "no topic", request=RequestCode.PULL_MESSAGE
    )
    assert isinstance(error, TopicNotExistError)
    assert str(error) == "PULL_MESSAGE: broker answered TOPIC_NOT_EXIST (17): no topic"
    assert error.request == RequestCode.PULL_MESSAGE
    assert str(error_for_response(1, "x")) == "broker answered SYSTEM_ERROR (1): x"


def test_a_long_remark_is_cut_in_the_message_and_kept_whole_on_the_error() -> None:
    remark = "".join(chr(ord("a") + i % 26) for i in range(MAX_REMARK_IN_MESSAGE * 3))
    error = error_for_response(ResponseCode.SYSTEM_BUSY, remark)
    assert error.remark == remark
    message = str(error)
    assert remark[:MAX_REMARK_IN_MESSAGE] in message
    assert remark[: MAX_REMARK_IN_MESSAGE + 1] not in message
    assert f"{MAX_REMARK_IN_MESSAGE * 2} more characters in .remark" in message
    assert len(message) < MAX_REMARK_IN_MESSAGE + 200
    short = error_for_response(ResponseCode.SYSTEM_BUSY, "a" * MAX_REMARK_IN_MESSAGE)
    assert str(short).endswith(": " + "a" * MAX_REMARK_IN_MESSAGE)


def test_broker_errors_pickle_with_their_request_remark_and_retriable() -> None:
    remark = "r" * (MAX_REMARK_IN_MESSAGE + 10)
    for error in (
        error_for_response(17, remark, request=105),
        error_for_response(1, "AccessKey is invalid", request=10),
        BrokerError(999, "odd", retriable=True),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert (copy.code, copy.remark, copy.request, copy.retriable) == (
            error.code,
            error.remark,
            error.request,
            error.retriable,
        )
        assert str(copy) == str(error)
    assert isinstance(error_for_response(1, "AccessKey is invalid"), AuthenticationError)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [(RequestTimeoutError, TimeoutError), (ConnectionClosedError, ConnectionError)],
)
def test_timeouts_and_closed_connections_are_also_builtin_errors(
    cls: type[RocketMQError], builtin: type[Exception]
) -> None:
    error = cls("GET_ROUTEINFO_BY_TOPIC to 127.0.0.1:9876 timed out after 3s")
    assert isinstance(error, builtin) and isinstance(error, RocketMQError)
    assert error.retriable
    assert str(error) == "GET_ROUTEINFO_BY_TOPIC to 127.0.0.1:9876 timed out after 3s"
    with pytest.raises(builtin):
        raise error
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error) and copy.retriable


def test_a_route_lookup_error_names_get_routeinfo_by_topic() -> None:
    client = ClientCore(ClientConfig((NAMESRV,), client_ip="10.0.0.1", instance_name="t"))

    def namesrv(addr: str, command: RemotingCommand) -> RemotingCommand:
        assert command.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
        return RemotingCommand(
            ResponseCode.SYSTEM_ERROR, {}, b"", flag=FLAG_RESPONSE, remark="disk full"
        )

    with pytest.raises(BrokerError) as info:
        Sim(namesrv).run(client.route_flow("T"))
    assert str(info.value).startswith("GET_ROUTEINFO_BY_TOPIC: broker answered SYSTEM_ERROR (1)")
    assert info.value.remark == "disk full"


def test_an_exception_in_a_queue_selector_becomes_user_callback_error_with_its_cause() -> None:
    broker = Broker()
    core = make_producer()
    failure = KeyError("no such shard")

    def selector(queues: list[MessageQueue], message: Message, arg: object) -> MessageQueue:
        raise failure

    with pytest.raises(UserCallbackError) as info:
        Sim(broker).run(core.send_flow(Message("T", b"x"), selector=selector, arg=1))
    assert info.value.__cause__ is failure
    assert "queue selector" in str(info.value) and "no such shard" in str(info.value)
    assert broker.sent == []
