"""When to try connecting to an address again after connections to it failed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _AddrState:
    failures: int = 0
    retry_at: float = 0.0


@dataclass(slots=True)
class ReconnectBackoff:
    """Exponential backoff per address: ``initial`` doubled per failure, capped at ``maximum``.

    A driver asks :meth:`may_connect` before opening a connection; while an
    address is backing off, requests to it fail at once instead of each waiting
    for a connect timeout.
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
        """Record a failed connect (or a connection that broke); returns the delay chosen."""
        state = self._state.setdefault(addr, _AddrState())
        delay: float = min(self.maximum, self.initial * 2.0 ** min(state.failures, 32))
        state.failures += 1
        state.retry_at = now + delay
        return delay

    def succeeded(self, addr: str) -> None:
        self._state.pop(addr, None)
