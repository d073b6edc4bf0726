"""Latency fault tolerance: keep sends away from brokers that are slow or failing.

The thresholds are Java's (``MQFaultStrategy``): a send that took at least
``LATENCY_MAX[i]`` ms makes its broker unavailable for ``NOT_AVAILABLE[i]`` ms;
a failed send counts as 10 s of latency (30 s when the broker is isolated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LATENCY_MAX_MS = (50, 100, 550, 1800, 3000, 5000, 15000)
NOT_AVAILABLE_MS = (0, 0, 2000, 5000, 6000, 10000, 30000)
FAILURE_LATENCY_MS = 10_000
ISOLATION_LATENCY_MS = 30_000


#: Below this latency a broker is never avoided (asked first: it is every fast send).
_AVOIDED_FROM_MS = min(
    limit for limit, duration in zip(LATENCY_MAX_MS, NOT_AVAILABLE_MS, strict=True) if duration
)


def not_available_duration_ms(latency_ms: float) -> int:
    """How long a broker is avoided after a send that took ``latency_ms``."""
    if latency_ms < _AVOIDED_FROM_MS:
        return 0
    for limit, duration in zip(reversed(LATENCY_MAX_MS), reversed(NOT_AVAILABLE_MS), strict=True):
        if latency_ms >= limit:
            return duration
    return 0


@dataclass(slots=True)
class _FaultItem:
    latency_ms: float
    available_at: float  # driver clock, seconds


@dataclass(slots=True)
class LatencyFaultTolerance:
    """Per-broker availability, fed with send outcomes and the driver's ``now`` (seconds)."""

    enabled: bool = True
    _items: dict[str, _FaultItem] = field(default_factory=dict)

    def update(
        self,
        broker_name: str,
        latency_ms: float,
        now: float,
        *,
        failed: bool = False,
        isolate: bool = False,
    ) -> None:
        if not self.enabled:
            return
        if failed:
            latency_ms = ISOLATION_LATENCY_MS if isolate else FAILURE_LATENCY_MS
        duration_ms = not_available_duration_ms(latency_ms)
        if duration_ms == 0:
            self._items.pop(broker_name, None)
            return
        self._items[broker_name] = _FaultItem(latency_ms, now + duration_ms / 1000.0)

    def is_available(self, broker_name: str, now: float) -> bool:
        item = self._items.get(broker_name)
        return item is None or now >= item.available_at

    def remove(self, broker_name: str) -> None:
        self._items.pop(broker_name, None)
