"""Client lifecycles: created, running, closing, closed.

Every client core (the session, a producer, an admin, the push and the pull
consumer) moves through the same four states, one way only::

    created --start()--> running --begin_close()--> closing --finish_close()--> closed
       `-------------------begin_close()---------------^

A driver moves them with these methods; a wrong move (starting a closed client,
closing one twice) raises :class:`LocalProtocolError` naming the client and its
state. The drivers move the session core (:class:`ClientCore`), the producer's
and the admin's with these methods when their client starts and closes; the
push and pull consumer cores move in their own start and shutdown flows. The
flows that must stop when a client closes poll :attr:`closed`, which is true
from the moment closing begins.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rocketmq_proto.wire.errors import LocalProtocolError

__all__ = ["Lifecycle", "LifecycleOwner", "LifecycleState"]


class LifecycleState(enum.Enum):
    """Where a client is in its life."""

    #: Made, not started yet: nothing runs.
    CREATED = "created"
    #: Started: its flows run.
    RUNNING = "running"
    #: Closing began: its flows wind down and take no new work.
    CLOSING = "closing"
    #: Closed for good: it cannot be started again.
    CLOSED = "closed"


_CREATED = LifecycleState.CREATED
_RUNNING = LifecycleState.RUNNING
_CLOSING = LifecycleState.CLOSING
_CLOSED = LifecycleState.CLOSED


@dataclass(slots=True)
class Lifecycle:
    """One client's state and its guarded transitions.

    ``what`` names the client in error messages ("producer", "push consumer").
    """

    what: str
    _state: LifecycleState = _CREATED
    _started: bool = False

    @property
    def state(self) -> LifecycleState:
        return self._state

    @property
    def closed(self) -> bool:
        """Whether closing has begun (closing or closed)."""
        return self._state is _CLOSING or self._state is _CLOSED

    def _refuse(self, move: str, why: str) -> LocalProtocolError:
        return LocalProtocolError(f"cannot {move} the {self.what}: it is {why}")

    def start(self) -> None:
        """created -> running."""
        if self._state is _RUNNING:
            raise self._refuse("start", "already running")
        if self._state is not _CREATED:
            why = f"{self._state.value} (a closed {self.what} cannot be started again)"
            raise self._refuse("start", why)
        self._state = _RUNNING
        self._started = True

    def begin_close(self) -> None:
        """created or running -> closing."""
        if self._state is _CLOSING or self._state is _CLOSED:
            raise self._refuse("close", f"already {self._state.value}")
        self._state = _CLOSING

    def finish_close(self) -> None:
        """closing -> closed."""
        if self._state is _CLOSED:
            raise self._refuse("finish closing", "already closed")
        if self._state is not _CLOSING:
            raise self._refuse("finish closing", f"{self._state.value}: begin_close() comes first")
        self._state = _CLOSED

    def close_at_once(self) -> None:
        """Any state -> closed, for a client closed without winding down (a driver
        that could not run its close flow). Closed stays closed."""
        self._state = _CLOSED

    @property
    def was_started(self) -> bool:
        """Whether it ever ran (it may be closing or closed now)."""
        return self._started


class LifecycleOwner:
    """The lifecycle methods and properties of a client core that holds a
    :class:`Lifecycle` in ``_lifecycle``."""

    __slots__ = ()

    _lifecycle: Lifecycle

    @property
    def state(self) -> LifecycleState:
        """Where this client is in its life."""
        return self._lifecycle.state

    @property
    def running(self) -> bool:
        return self._lifecycle.state is _RUNNING

    @property
    def closed(self) -> bool:
        """Whether closing has begun: the flows that poll it stop."""
        return self._lifecycle.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        # Kept for drivers that still set the flag: True closes at once.
        if value:
            self._lifecycle.close_at_once()
        elif self._lifecycle.closed:
            raise LocalProtocolError(f"a closed {self._lifecycle.what} cannot be reopened")

    def start(self) -> None:
        """created -> running; :class:`LocalProtocolError` from any other state."""
        self._lifecycle.start()

    def close_at_once(self) -> None:
        """Any state -> closed (idempotent): for a driver closing a client that ran
        no close flow, e.g. one never started."""
        self._lifecycle.close_at_once()

    def begin_close(self) -> None:
        """created or running -> closing (the flows that poll :attr:`closed` stop);
        :class:`LocalProtocolError` when closing already began."""
        self._lifecycle.begin_close()

    def finish_close(self) -> None:
        """closing -> closed; :class:`LocalProtocolError` from any other state."""
        self._lifecycle.finish_close()
