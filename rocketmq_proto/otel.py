"""OpenTelemetry metrics of a client, under the instrument names of the RocketMQ 5.x
clients (the ``[otel]`` extra: ``pip install 'rocketmq-remoting[otel]'``).

``instrument(client)`` gives a client (of any driver) a hook that records, through
the global meter provider or the one given:

- ``rocketmq_send_cost_time`` (histogram, ms): each send, by ``topic``,
  ``client_id`` and ``invocation_status`` (``success``/``failure``);
- ``rocketmq_process_time`` (histogram, ms): each handler call, by ``topic``,
  ``consumer_group``, ``client_id`` and ``invocation_status``;
- ``rocketmq_await_time`` (histogram, ms): how long a batch waited in the client
  before its handler call, by ``topic``, ``consumer_group``, ``client_id``;
- ``rocketmq_delivery_latency`` (histogram, ms): from a message's storing on the
  broker to its arrival in the client;
- ``rocketmq_consumer_cached_messages`` and ``rocketmq_consumer_cached_bytes``
  (gauges): what the consumer holds, per topic (from its ``stats()``).

The bucket boundaries advised are the 5.x clients'. The core itself never imports
OpenTelemetry: only :func:`instrument` does.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from rocketmq_proto.flows.hooks import ConsumeContext, SendContext
from rocketmq_proto.wire.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

__all__ = [
    "AWAIT_TIME",
    "CACHED_BYTES",
    "CACHED_MESSAGES",
    "DELIVERY_LATENCY",
    "PROCESS_TIME",
    "SEND_COST_TIME",
    "ClientMetrics",
    "instrument",
]

SEND_COST_TIME: Final = "rocketmq_send_cost_time"
DELIVERY_LATENCY: Final = "rocketmq_delivery_latency"
AWAIT_TIME: Final = "rocketmq_await_time"
PROCESS_TIME: Final = "rocketmq_process_time"
CACHED_MESSAGES: Final = "rocketmq_consumer_cached_messages"
CACHED_BYTES: Final = "rocketmq_consumer_cached_bytes"

#: Bucket boundaries (ms) of the 5.x clients' histograms.
SEND_BUCKETS: Final = (1.0, 5.0, 10.0, 20.0, 50.0, 200.0, 500.0)
DELIVERY_BUCKETS: Final = (1.0, 5.0, 10.0, 20.0, 50.0, 200.0, 500.0)
AWAIT_BUCKETS: Final = (1.0, 5.0, 20.0, 100.0, 1000.0, 5000.0, 10000.0)
PROCESS_BUCKETS: Final = (1.0, 5.0, 10.0, 100.0, 10000.0, 60000.0)


class ClientMetrics:
    """The hook :func:`instrument` adds: records each send and handler call."""

    def __init__(self, client: Any, meter: Meter) -> None:
        self._client = client
        self._client_id: str = client.client_id
        #: The consumer's group (without its namespace), for a consumer.
        self._group: str | None = getattr(client, "group", None)
        self._send = meter.create_histogram(
            SEND_COST_TIME,
            unit="ms",
            description="Time a send took, from its call to its broker's answer",
            explicit_bucket_boundaries_advisory=SEND_BUCKETS,
        )
        self._process = meter.create_histogram(
            PROCESS_TIME,
            unit="ms",
            description="Time a message handler call took",
            explicit_bucket_boundaries_advisory=PROCESS_BUCKETS,
        )
        self._await = meter.create_histogram(
            AWAIT_TIME,
            unit="ms",
            description="Time messages waited in the client before their handler call",
            explicit_bucket_boundaries_advisory=AWAIT_BUCKETS,
        )
        self._delivery = meter.create_histogram(
            DELIVERY_LATENCY,
            unit="ms",
            description="Time from a message's storing on the broker to its arrival here",
            explicit_bucket_boundaries_advisory=DELIVERY_BUCKETS,
        )
        _gauges_of(meter).clients.add(self)

    def __repr__(self) -> str:
        return f"ClientMetrics({self._client_id!r})"

    # ----------------------------------------------------------------- hook

    def after_send(self, ctx: SendContext) -> None:
        status = "success" if ctx.error is None else "failure"
        self._send.record(
            ctx.elapsed * 1000,
            {
                "topic": ctx.message.topic,
                "client_id": self._client_id,
                "invocation_status": status,
            },
        )

    def after_consume(self, ctx: ConsumeContext) -> None:
        if (ctx.result is None and ctx.error is None) or not ctx.messages:
            return  # not handled (the consumer closed first), or the handler emptied its list
        attributes = {
            "topic": ctx.messages[0].topic,
            "consumer_group": self._group or ctx.group,
            "client_id": self._client_id,
        }
        ok = ctx.succeeded
        self._process.record(
            ctx.elapsed * 1000,
            {**attributes, "invocation_status": "success" if ok else "failure"},
        )
        if ctx.await_time is None:
            return
        self._await.record(ctx.await_time * 1000, attributes)
        arrived_ms = ctx.timestamp_ms - ctx.await_time * 1000
        for msg in ctx.messages:
            if msg.store_timestamp > 0:
                self._delivery.record(max(0.0, arrived_ms - msg.store_timestamp), attributes)

    # --------------------------------------------------------------- gauges

    def observations(self, key: str) -> list[Observation]:
        """This client's ``cached_messages`` or ``cached_bytes``, per topic."""
        from opentelemetry.metrics import Observation

        totals: dict[str, int] = {}
        for queue in self._client.stats().get("queues", ()):
            totals[queue["topic"]] = totals.get(queue["topic"], 0) + queue[key]
        labels = {"consumer_group": self._group or "", "client_id": self._client_id}
        return [Observation(value, {"topic": t, **labels}) for t, value in sorted(totals.items())]


class _Gauges:
    """One meter's two gauges, reading every client instrumented with that meter
    (the SDK keeps the first callback of an instrument name and drops later ones)."""

    def __init__(self) -> None:
        #: The hooks of the instrumented clients (dropped with their client).
        self.clients: weakref.WeakSet[ClientMetrics] = weakref.WeakSet()

    def register(self, meter: Meter) -> None:
        meter.create_observable_gauge(
            CACHED_MESSAGES,
            callbacks=[self._observe_messages],
            unit="1",
            description="Messages a push consumer holds, not consumed yet",
        )
        meter.create_observable_gauge(
            CACHED_BYTES,
            callbacks=[self._observe_bytes],
            unit="By",
            description="Body bytes of the messages a push consumer holds",
        )

    def _observe(self, key: str) -> list[Observation]:
        return [o for hook in list(self.clients) for o in hook.observations(key)]

    def _observe_messages(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("cached_messages")

    def _observe_bytes(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe("cached_bytes")


#: Each meter's gauges, made with its first instrumented client.
_GAUGES: weakref.WeakKeyDictionary[Meter, _Gauges] = weakref.WeakKeyDictionary()


def _gauges_of(meter: Meter) -> _Gauges:
    candidate = _Gauges()
    gauges = _GAUGES.setdefault(meter, candidate)  # one wins, whatever the threads
    if gauges is candidate:
        gauges.register(meter)
    return gauges


def instrument(client: Any, *, meter_provider: MeterProvider | None = None) -> ClientMetrics:
    """Record ``client``'s metrics through OpenTelemetry (``meter_provider``, or the
    global one); returns the hook added to it. ``client.remove_hook`` stops the
    histograms; the gauges follow the client's queues (none once it is closed).

    Raises :class:`ConfigError` if the ``opentelemetry-api`` package is missing.
    """
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ConfigError(
            "OpenTelemetry is not installed: pip install 'rocketmq-remoting[otel]'"
        ) from None
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    hook = ClientMetrics(client, provider.get_meter("rocketmq-remoting"))
    client.add_hook(hook)
    return hook
