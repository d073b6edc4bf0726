"""The pool's policy: per address, use, wait for, or dial a connection, or fail at once.

A driver keeps one connection per address. When a request finds no open one,
the driver asks :meth:`PoolPolicy.on_need` and follows the decision:

- :class:`Use`: a connection is open, send on it;
- :class:`Wait`: one is being dialled, wait for it (or queue on it), so that
  concurrent requests share one connect attempt;
- :class:`Dial`: open one, and report it with :meth:`PoolPolicy.on_dial`;
- :class:`Fail`: a connect to the address failed a moment ago; while it backs
  off (:class:`ReconnectBackoff`), requests fail at once with that error
  instead of each waiting for a connect timeout.

The driver then reports what happens to the connection (connected, connect
failed, closed). The policy does no IO and reads no clock: time comes in as
``now``, like :class:`~rocketmq_proto.connection.connection.Connection`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rocketmq_proto.wire.errors import ConnectionClosedError

__all__ = ["Dial", "Fail", "PoolPolicy", "ReconnectBackoff", "Use", "Wait"]

C = TypeVar("C")


@dataclass(slots=True)
class _AddrState:
    failures: int = 0
    retry_at: float = 0.0


@dataclass(slots=True)
class ReconnectBackoff:
    """Exponential backoff per address: ``initial`` doubled per failure, capped at ``maximum``.

    :class:`PoolPolicy` asks :meth:`may_connect` before it lets a driver dial;
    while an address is backing off, requests to it fail at once.
    """

    initial: float = 0.1
    maximum: float = 5.0
    _state: dict[str, _AddrState] = field(default_factory=dict)

    def may_connect(self, addr: str, now: float) -> bool:
        state = self._state.get(addr)
        return state is None or now >= state.retry_at

    def retry_in(self, addr: str, now: float) -> float:
        """Seconds until ``addr`` may be tried again (0 if now)."""
        state = self._state.get(addr)
        return 0.0 if state is None else max(0.0, state.retry_at - now)

    def failed(self, addr: str, now: float) -> float:
        """Record a failed connect; returns the delay chosen."""
        state = self._state.setdefault(addr, _AddrState())
        delay: float = min(self.maximum, self.initial * 2.0 ** min(state.failures, 32))
        state.failures += 1
        state.retry_at = now + delay
        return delay

    def succeeded(self, addr: str) -> None:
        self._state.pop(addr, None)


# --------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Use(Generic[C]):
    """A connection to the address is open: send on it."""

    conn: C


@dataclass(frozen=True, slots=True)
class Wait(Generic[C]):
    """A connection to the address is being dialled: wait for it, or queue on it."""

    conn: C


@dataclass(frozen=True, slots=True)
class Dial:
    """No connection to the address and none being dialled: open one."""


@dataclass(frozen=True, slots=True)
class Fail:
    """The address backs off after a failed connect: fail the request with ``error``."""

    error: ConnectionClosedError


_DIAL = Dial()


# ------------------------------------------------------------------------ policy


class PoolPolicy(Generic[C]):
    """One client's connections by address, and when to dial them.

    ``C`` is the driver's connection object. The policy keeps it and compares
    it by identity only: a report about a connection the address no longer
    uses (forgotten, or replaced after it closed) changes nothing. Not
    thread-safe: a driver with threads calls it under a lock of its own.

    ``conns`` holds every connection by address, open or being dialled;
    ``open`` only the open ones. Both are read-only views.
    """

    __slots__ = ("_conns", "_open", "_reasons", "backoff", "conns", "open")

    def __init__(self, backoff: ReconnectBackoff | None = None) -> None:
        self.backoff = backoff if backoff is not None else ReconnectBackoff()
        self._conns: dict[str, C] = {}
        self._open: dict[str, C] = {}
        # The last connect error per address, named in the failures while it backs off.
        self._reasons: dict[str, str] = {}
        self.conns: Mapping[str, C] = self._conns
        self.open: Mapping[str, C] = self._open

    def on_need(self, addr: str, now: float) -> Use[C] | Wait[C] | Dial | Fail:
        """A request to ``addr`` needs a connection: what the driver does."""
        conn = self._conns.get(addr)
        if conn is not None:
            return Use(conn) if addr in self._open else Wait(conn)
        backoff = self.backoff
        if backoff.may_connect(addr, now):
            return _DIAL
        return Fail(
            ConnectionClosedError(
                f"not connecting to {addr}: backing off for "
                f"{backoff.retry_in(addr, now):.3f}s more after a failed connect "
                f"({self._reasons.get(addr, 'unknown error')})"
            )
        )

    def on_dial(self, addr: str, conn: C) -> None:
        """The driver dials ``conn`` to ``addr`` (after :class:`Dial`)."""
        self._conns[addr] = conn
        self._open.pop(addr, None)

    def on_connected(self, addr: str, conn: C) -> bool:
        """``conn`` connected: ``addr`` is reachable, its back-off and last error reset.

        Returns whether ``conn`` is still the address's connection (``False``:
        it was forgotten meanwhile, and the driver closes it).
        """
        self.backoff.succeeded(addr)
        self._reasons.pop(addr, None)
        if self._conns.get(addr) is not conn:
            return False
        self._open[addr] = conn
        return True

    def on_connect_failed(self, addr: str, conn: C, reason: str, now: float) -> float | None:
        """Dialling ``conn`` failed with ``reason``: ``addr`` backs off.

        Returns the back-off delay, or ``None`` if ``conn`` was no longer the
        address's connection (the client forgot it): then nothing changes.
        """
        if self._conns.get(addr) is not conn:
            return None
        del self._conns[addr]
        self._reasons[addr] = reason
        return self.backoff.failed(addr, now)

    def on_closed(self, addr: str, conn: C) -> bool:
        """``conn`` closed, or its dial ended without a connect failure.

        The next request dials again at once: a connection that breaks does
        not back off. Returns whether ``conn`` was the address's connection.
        """
        if self._conns.get(addr) is not conn:
            return False
        del self._conns[addr]
        self._open.pop(addr, None)
        return True

    def forget(self, addr: str) -> C | None:
        """Drop the connection to ``addr`` (the driver closes it); its reports are then ignored."""
        self._open.pop(addr, None)
        return self._conns.pop(addr, None)

    def forget_all(self) -> list[C]:
        """Drop every connection (the client closes, or a forked child starts afresh)."""
        conns = list(self._conns.values())
        self._conns.clear()
        self._open.clear()
        return conns
