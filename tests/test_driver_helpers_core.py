"""What every driver decides alike, written once in the core: an endpoint's address
and errors, the answers to a server's requests, an HTTP answer's limits and
errors, a user callback's error, a transport's settings."""

from __future__ import annotations

import logging

import pytest

from rocketmq_proto.driver import (
    ConfigError,
    Connection,
    ConnectionClosedError,
    Endpoint,
    HttpAnswer,
    HttpGet,
    InvalidArgumentError,
    RemoteProtocolError,
    RemotingCommand,
    Reply,
    RequestFailed,
    RequestTimedOut,
    RequestTimeoutError,
    ResponseCode,
    SerializeType,
    UserCallbackError,
    request_timeout_error,
    transport_settings,
    user_callback_error,
)
from rocketmq_proto.wire.codes import FLAG_ONEWAY

LOG = logging.getLogger("test_driver_helpers_core")
GET_ROUTE = 105  # GET_ROUTEINFO_BY_TOPIC


def endpoint(addr: str = "10.0.0.1:10911") -> Endpoint:
    return Endpoint(addr, LOG)


def server_request(code: int = 39, *, oneway: bool = False) -> RemotingCommand:
    return RemotingCommand(code, {}, b"", opaque=7, flag=FLAG_ONEWAY if oneway else 0)


@pytest.mark.parametrize(
    ("addr", "host", "port"),
    [("10.0.0.1:10911", "10.0.0.1", 10911), ("[::1]:9876", "::1", 9876), ("broker:1", "broker", 1)],
)
def test_an_endpoint_splits_its_address(addr: str, host: str, port: int) -> None:
    e = endpoint(addr)
    assert (e.addr, e.host, e.port) == (addr, host, port)


@pytest.mark.parametrize("addr", ["10.0.0.1", ":10911", "host:", "host:port", "host:-1"])
def test_an_endpoint_refuses_an_address_that_is_not_host_port(addr: str) -> None:
    with pytest.raises(InvalidArgumentError, match="is not host:port"):
        endpoint(addr)


def test_connect_and_broken_errors_describe_the_cause_and_chain_it() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    error = endpoint().connect_error(refused, 3.0)
    assert str(error) == (
        "cannot connect to 10.0.0.1:10911: ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert error.__cause__ is refused
    assert str(endpoint().connect_error(TimeoutError(), 2.5)) == (
        "cannot connect to 10.0.0.1:10911: timed out after 2.5s"
    )
    broken = endpoint().broken_error(BrokenPipeError(), "writing", 30.0)
    assert str(broken) == "connection to 10.0.0.1:10911 broke while writing: BrokenPipeError"


def test_a_request_failure_takes_its_waiter_and_names_the_request() -> None:
    waiters: dict[int, tuple[str, float]] = {1: ("first", 2.0), 2: ("second", 3.0)}
    timed_out = endpoint().request_failure(RequestTimedOut(1, GET_ROUTE), waiters)
    assert timed_out is not None and timed_out[0] == "first"
    assert isinstance(timed_out[1], RequestTimeoutError)
    assert str(timed_out[1]) == "GET_ROUTEINFO_BY_TOPIC to 10.0.0.1:10911 timed out after 2s"
    # The connection wraps the root cause; the request's error chains the root.
    root = RemoteProtocolError("bad frame")
    wrapper = ConnectionClosedError("connection failed: bad frame")
    wrapper.__cause__ = root
    failed = endpoint().request_failure(RequestFailed(2, GET_ROUTE, wrapper), waiters)
    assert failed is not None and failed[0] == "second"
    assert str(failed[1]) == (
        "GET_ROUTEINFO_BY_TOPIC to 10.0.0.1:10911 failed: connection failed: bad frame"
    )
    assert failed[1].__cause__ is root
    assert waiters == {}
    assert endpoint().request_failure(RequestTimedOut(1, GET_ROUTE), waiters) is None


def test_a_request_timeout_says_what_the_request_was_doing() -> None:
    assert str(request_timeout_error(GET_ROUTE, "a:1", 0.5, "connecting")) == (
        "GET_ROUTEINFO_BY_TOPIC to a:1 timed out after 0.5s (connecting)"
    )


def test_a_request_nobody_handles_is_answered_not_supported_unless_oneway() -> None:
    reply = endpoint().unhandled(server_request(39))
    assert reply == Reply(
        ResponseCode.REQUEST_CODE_NOT_SUPPORTED, remark="request type 39 not supported"
    )
    assert endpoint().unhandled(server_request(39, oneway=True)) is None


def test_a_handlers_outcome_becomes_the_answer() -> None:
    ok = Reply(ResponseCode.SUCCESS)
    e = endpoint()
    assert e.answer(server_request(), ok, None) is ok
    assert e.answer(server_request(), None, None) is None
    assert e.answer(server_request(oneway=True), ok, None) is None
    assert e.answer(server_request(), "not a reply", None) is None
    failed = e.answer(server_request(), None, KeyError("x"))
    assert failed == Reply(ResponseCode.SYSTEM_ERROR, remark="KeyError: 'x'")


def test_a_reply_is_queued_only_on_an_open_connection() -> None:
    conn = Connection(serialize_type=SerializeType.JSON)
    e = endpoint()
    assert not e.queue_reply(conn, server_request(), None)
    assert e.queue_reply(conn, server_request(), Reply(ResponseCode.SUCCESS))
    assert conn.data_to_send()
    conn.connection_lost()
    assert not e.queue_reply(conn, server_request(), Reply(ResponseCode.SUCCESS))
    assert conn.data_to_send() == b""


def test_an_http_answer_is_bounded_and_its_failures_named() -> None:
    effect = HttpGet("nameserver", 8080, b"GET / HTTP/1.0\r\n\r\n", 3.0, max_size=4)
    answer = HttpAnswer(effect)
    answer.add(b"ab")
    answer.add(b"cd")
    assert answer.value() == b"abcd"
    with pytest.raises(ConnectionClosedError, match="from nameserver:8080 exceeds 4 bytes"):
        answer.add(b"e")
    with pytest.raises(RequestTimeoutError) as timed_out:
        answer.fail(TimeoutError())
    assert str(timed_out.value) == "no HTTP answer from nameserver:8080 within 3.0 s"
    assert timed_out.value.__cause__ is None
    reset = ConnectionResetError("reset")
    with pytest.raises(
        ConnectionClosedError, match="HTTP request to nameserver:8080 failed"
    ) as info:
        answer.fail(reset)
    assert info.value.__cause__ is reset


def test_a_user_callback_error_names_the_callable_and_chains_the_cause() -> None:
    def check(msg: object) -> None:
        raise ValueError("no")

    cause = ValueError("no")
    error = user_callback_error(check, cause)
    assert isinstance(error, UserCallbackError)
    assert str(error).endswith("check raised ValueError: no")
    assert error.__cause__ is cause


def test_transport_settings_are_checked() -> None:
    settings = transport_settings(serialize_type=SerializeType.ROCKETMQ, connect_timeout=1.5)
    assert (settings.serialize_type, settings.connect_timeout) == (SerializeType.ROCKETMQ, 1.5)
    assert transport_settings().max_frame_size > 8
    with pytest.raises(ConfigError, match="connect_timeout must be positive"):
        transport_settings(connect_timeout=0)
    with pytest.raises(ConfigError, match="max_frame_size must be at least 8"):
        transport_settings(max_frame_size=4)
    with pytest.raises(ConfigError, match=r"ssl_context must be an ssl\.SSLContext"):
        transport_settings(ssl_context="tls please")


def test_logs_about_a_servers_request_name_it(caplog: pytest.LogCaptureFixture) -> None:
    e = endpoint()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        e.unhandled(server_request(39))
        e.answer(server_request(39), None, KeyError("x"))
        e.answer(server_request(39), "not a reply", None)
        closed = Connection(serialize_type=SerializeType.JSON)
        closed.connection_lost()
        e.queue_reply(closed, server_request(39), Reply(ResponseCode.SUCCESS))
        e.unhandled(server_request(999_999))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5, messages
    assert all("CHECK_TRANSACTION_STATE" in m for m in messages[:4]), messages
    assert "request code 999999" in messages[4]
