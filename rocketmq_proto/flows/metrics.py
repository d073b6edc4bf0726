"""A client's own counters and timings, for its ``stats()`` snapshot (and the optional
OpenTelemetry export built on it).

Counting costs no effect: a send's time is the one its flow measured anyway, a
handler's is measured by the driver (a timed :class:`~rocketmq_proto.flows.effects.UserCall`),
and a batch's wait for a consume worker comes from the wall clock its flow read
anyway. Timings keep the last :data:`SAMPLES` values of each kind: percentiles
describe recent behaviour, counts are totals since the client was made.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["SAMPLES", "ConsumeMetrics", "Samples", "SendMetrics", "queue_row"]

#: Values kept per timing.
SAMPLES: Final = 4096


class Samples:
    """The last :data:`SAMPLES` values of a timing (seconds), and how many in all."""

    __slots__ = ("_values", "count")

    def __init__(self) -> None:
        self._values: deque[float] = deque(maxlen=SAMPLES)
        #: Values added since the start.
        self.count = 0

    def add(self, seconds: float) -> None:
        self._values.append(seconds)
        self.count += 1

    def summary(self) -> dict[str, Any]:
        """``count`` (all time) and, over the recent values, ``p50_ms``, ``p99_ms``
        and ``max_ms`` (``None`` before the first value)."""
        values = sorted(self._values)
        if not values:
            return {"count": self.count, "p50_ms": None, "p99_ms": None, "max_ms": None}
        return {
            "count": self.count,
            "p50_ms": _ms(_percentile(values, 0.50)),
            "p99_ms": _ms(_percentile(values, 0.99)),
            "max_ms": _ms(values[-1]),
        }

    def recent(self) -> list[float]:
        """The recent values, oldest first (seconds)."""
        return list(self._values)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass(slots=True)
class SendMetrics:
    """A producer's sends: each ``send``/``send_batch`` call counts once, however
    many attempts it made; a batch's messages are counted in ``messages``."""

    ok: int = 0
    failed: int = 0
    #: Messages in the successful sends.
    messages: int = 0
    #: Seconds from a send's start to its broker's answer (route lookup and retries included).
    latency: Samples = field(default_factory=Samples)

    def snapshot(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "messages": self.messages,
            "latency": self.latency.summary(),
        }


@dataclass(slots=True)
class ConsumeMetrics:
    """A consumer's handler calls, counted by message."""

    #: Messages the handler consumed (it returned success, or nothing).
    ok: int = 0
    #: Messages the handler failed (it raised, or asked for a retry): each is retried.
    failed: int = 0
    #: Messages sent to the group's dead-letter queue (failed past the maximum retries).
    dead_lettered: int = 0
    #: Seconds each handler call took.
    process: Samples = field(default_factory=Samples)
    #: Seconds a batch waited in the client, from its arrival to its handler call.
    awaited: Samples = field(default_factory=Samples)

    def handled(self, count: int, success: bool, seconds: float | None) -> None:
        if success:
            self.ok += count
        else:
            self.failed += count
        if seconds is not None:
            self.process.add(seconds)

    def snapshot(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "process_time": self.process.summary(),
            "await_time": self.awaited.summary(),
        }


def queue_row(
    topic: str, broker: str, queue_id: int, cached: int, cached_bytes: int, lag: int | None
) -> dict[str, Any]:
    """One held queue in a consumer's ``stats()``: its messages and body bytes
    cached in the client, and its lag (messages on the broker not consumed yet, as
    far as the last pull answer tells; ``None`` before the first)."""
    return {
        "topic": topic,
        "broker": broker,
        "queue_id": queue_id,
        "cached_messages": cached,
        "cached_bytes": cached_bytes,
        "lag": lag,
    }
