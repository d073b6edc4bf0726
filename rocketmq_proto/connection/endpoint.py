"""What a driver's transport says about the address it talks to, written once.

A transport moves bytes between a socket and a
:class:`~rocketmq_proto.connection.connection.Connection`; the few decisions it
makes beyond that are the same in every driver and live here: how an address
splits into host and port, the errors a request or a connect fails with, how a
closed connection is logged, and the answer to a request from the server that
nobody handles. Java's remoting layer gives two such answers:
``REQUEST_CODE_NOT_SUPPORTED`` when no handler is installed, ``SYSTEM_ERROR``
when the handler raised.

None of it is on a request's way when all goes well: only a dial, a failure and
a request from the server come here.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from rocketmq_proto.connection.connection import (
    Connection,
    ConnectionState,
    Reply,
    RequestFailed,
    RequestTimedOut,
)
from rocketmq_proto.wire.codes import ResponseCode, request_name
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    LocalProtocolError,
    RequestTimeoutError,
    RocketMQError,
)
from rocketmq_proto.wire.logfields import log_fields

__all__ = ["Endpoint", "describe_failure", "request_timeout_error"]

W = TypeVar("W")


def describe_failure(exc: BaseException, timeout: float) -> str:
    """``exc`` (an OS or TLS error) for an error message; a :class:`TimeoutError`
    as the ``timeout`` that ran out."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def request_timeout_error(
    request_code: int, addr: str, timeout: float, doing: str | None = None
) -> RequestTimeoutError:
    """The error of a request to ``addr`` that got no answer within ``timeout``
    seconds (the caller's), ``doing`` what when the time ran out, if not waiting
    for the answer."""
    text = f"{request_name(request_code)} to {addr} timed out after {timeout:g}s"
    return RequestTimeoutError(f"{text} ({doing})" if doing else text)


class Endpoint:
    """An address a transport connects to: ``"host:port"`` (``"[v6]:port"`` for
    IPv6), split into :attr:`host` and :attr:`port`, and what the transport
    says about it in its errors and its log.

    Raises :class:`InvalidArgumentError` for an address that is not host:port.
    """

    __slots__ = ("_log", "addr", "host", "port")

    def __init__(self, addr: str, log: logging.Logger) -> None:
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidArgumentError(f"address {addr!r} is not host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self.addr = addr
        self.host = host
        self.port = int(port)
        self._log = log

    def __repr__(self) -> str:
        return f"<Endpoint {self.addr}>"

    # ------------------------------------------------------------------ errors

    def connect_error(self, exc: BaseException, timeout: float) -> ConnectionClosedError:
        """The error of a connect that failed with ``exc`` (a :class:`TimeoutError`
        after ``timeout`` seconds), chained to it."""
        error = ConnectionClosedError(
            f"cannot connect to {self.addr}: {describe_failure(exc, timeout)}"
        )
        error.__cause__ = exc
        return error

    def broken_error(self, exc: BaseException, doing: str, timeout: float) -> ConnectionClosedError:
        """The error of an open connection that broke with ``exc`` while ``doing``
        (reading, writing; a :class:`TimeoutError` after ``timeout`` seconds)."""
        error = ConnectionClosedError(
            f"connection to {self.addr} broke while {doing}: {describe_failure(exc, timeout)}"
        )
        error.__cause__ = exc
        return error

    def request_failure(
        self, event: RequestTimedOut | RequestFailed, waiters: dict[int, tuple[W, float]]
    ) -> tuple[W, RocketMQError] | None:
        """The waiter of a request that timed out or failed, taken from ``waiters``
        (opaque -> (waiter, the caller's timeout)), and the error to fail it with;
        ``None`` if nobody waits for it any more.

        A fresh error per request: one instance raised in many threads or tasks
        would have its traceback rewritten by each of them. A failed request's
        error is chained to the root cause (a refused connect, a protocol error),
        not to the connection's own wrapper of it.
        """
        entry = waiters.pop(event.opaque, None)
        if entry is None:
            return None
        if isinstance(event, RequestTimedOut):
            return entry[0], request_timeout_error(event.request_code, self.addr, entry[1])
        error = ConnectionClosedError(
            f"{request_name(event.request_code)} to {self.addr} failed: {event.error}"
        )
        error.__cause__ = event.error.__cause__ or event.error
        return entry[0], error

    def log_closed(self, error: RocketMQError | None) -> None:
        """Log how the connection ended (unless the client closed it on purpose)."""
        if error is None or isinstance(error, ConnectionClosedError):
            self._log.info(
                "connection to %s closed: %s",
                self.addr,
                error or "by us",
                extra=log_fields(addr=self.addr),
            )
        else:
            self._log.warning(
                "connection to %s failed: %s", self.addr, error, extra=log_fields(addr=self.addr)
            )

    # ------------------------------------------------------ requests from the server

    def unhandled(self, command: RemotingCommand) -> Reply | None:
        """The answer to a request from the server when no handler is installed
        (logged): ``REQUEST_CODE_NOT_SUPPORTED``, or ``None`` for a oneway request."""
        self._log.warning(
            "no handler for %s from %s; answering not supported",
            request_name(command.code),
            self.addr,
            extra=log_fields(addr=self.addr, request=request_name(command.code)),
        )
        if command.is_oneway:
            return None
        return Reply(
            ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
            remark=f"request type {command.code} not supported",  # Java's words
        )

    def answer(
        self, command: RemotingCommand, outcome: object, error: BaseException | None
    ) -> Reply | None:
        """The answer to a request from the server, given what its handler returned
        (``outcome``) or raised (``error``, logged): the handler's :class:`Reply`,
        ``SYSTEM_ERROR`` if it raised, ``None`` to send nothing (it returned
        ``None``, the request is oneway, or it returned something else: logged)."""
        if error is not None:
            self._log.error(
                "handler for %s from %s raised",
                request_name(command.code),
                self.addr,
                exc_info=error,
                extra=log_fields(addr=self.addr, request=request_name(command.code)),
            )
            outcome = Reply(ResponseCode.SYSTEM_ERROR, remark=f"{type(error).__name__}: {error}")
        if outcome is None or command.is_oneway:
            return None
        if not isinstance(outcome, Reply):
            self._log.error(
                "handler for %s returned %r, not a Reply; not answering",
                request_name(command.code),
                outcome,
                extra=log_fields(addr=self.addr, request=request_name(command.code)),
            )
            return None
        return outcome

    def queue_reply(self, conn: Connection, command: RemotingCommand, reply: Reply | None) -> bool:
        """Queue ``reply`` to ``command`` on ``conn``, the connection ``command``
        came on; whether it was queued (the driver then has it sent). Nothing is
        queued without a reply, on a closed connection, or for a reply that cannot
        be encoded (logged)."""
        if reply is None:
            return False
        if conn.state is not ConnectionState.OPEN:
            self._log.debug(
                "not answering %s (opaque %d) from %s: connection closed",
                request_name(command.code),
                command.opaque,
                self.addr,
                extra=log_fields(addr=self.addr, request=request_name(command.code)),
            )
            return False
        try:
            conn.send_reply(command, reply)
        except (LocalProtocolError, InvalidArgumentError) as exc:
            self._log.error(
                "cannot answer %s from %s: %s",
                request_name(command.code),
                self.addr,
                exc,
                extra=log_fields(addr=self.addr, request=request_name(command.code)),
            )
            return False
        return True
