"""What every driver's interpreter does alike when it performs an effect.

Each driver performs the effects of :mod:`rocketmq_proto.flows.effects` with its
own IO; what does not depend on the IO is here, written once: the error a user's
callable that raised is thrown into its flow as, and the answer to an
:class:`~rocketmq_proto.flows.effects.HttpGet` as it is read, with the errors the
exchange fails with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from rocketmq_proto.flows.effects import HttpGet
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    RequestTimeoutError,
    UserCallbackError,
)

__all__ = ["HttpAnswer", "user_callback_error"]


def user_callback_error(
    fn: Callable[..., Any], exc: Exception, elapsed: float | None = None
) -> UserCallbackError:
    """The error a :class:`~rocketmq_proto.flows.effects.UserCall` of ``fn`` fails
    with when ``fn`` raised ``exc`` (chained to it), after ``elapsed`` seconds if
    the call was timed."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    error = UserCallbackError(f"{name} raised {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    error.elapsed = elapsed
    return error


class HttpAnswer:
    """The answer to an :class:`~rocketmq_proto.flows.effects.HttpGet` as a driver
    reads it: :meth:`add` each chunk, then :meth:`value`; an OS error of the
    exchange goes to :meth:`fail`."""

    __slots__ = ("_data", "_effect", "where")

    def __init__(self, effect: HttpGet) -> None:
        self._effect = effect
        self._data = bytearray()
        #: ``host:port``, as the errors name it.
        self.where = f"{effect.host}:{effect.port}"

    def add(self, chunk: bytes) -> None:
        """Add bytes read; raises :class:`ConnectionClosedError` once the answer
        exceeds the effect's ``max_size``."""
        self._data += chunk
        if len(self._data) > self._effect.max_size:
            raise ConnectionClosedError(
                f"HTTP answer from {self.where} exceeds {self._effect.max_size} bytes"
            )

    def value(self) -> bytes:
        """The whole answer (the server closed the connection)."""
        return bytes(self._data)

    def fail(self, exc: OSError) -> NoReturn:
        """Raise what the effect fails with for ``exc``: :class:`RequestTimeoutError`
        when the time ran out (a :class:`TimeoutError`), else
        :class:`ConnectionClosedError` chained to ``exc``."""
        if isinstance(exc, TimeoutError):
            raise RequestTimeoutError(
                f"no HTTP answer from {self.where} within {self._effect.timeout} s"
            ) from None
        raise ConnectionClosedError(f"HTTP request to {self.where} failed: {exc}") from exc
