"""What the parts of a push consumer share: held queues, schedules, subscriptions.

:class:`PushContext` is the one mutable state the parts of
:class:`~rocketmq_proto.flows.consumer.push.PushConsumerCore` work on (the pull
loops, consumption, orderly locks, the upkeep round). The small state objects
here name what used to be loose flags: :class:`QueuePhase` for an orderly
queue's consume loop and handover, :class:`RebalanceSchedule` and
:class:`Periodic` for when the upkeep round does what.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass, field
from typing import Final

from rocketmq_proto.flows.consumer.offsets import (
    OffsetStore,
    local_offsets_client_id,
    local_offsets_path,
)
from rocketmq_proto.flows.consumer.pull import PullRequest
from rocketmq_proto.flows.consumer.push_config import ConsumerConfig
from rocketmq_proto.flows.lifecycle import Lifecycle
from rocketmq_proto.flows.metrics import ConsumeMetrics
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.wire.bodies import ExpressionType, SubscriptionData, build_subscription
from rocketmq_proto.wire.route import MessageQueue

__all__ = [
    "QUICK_REBALANCE_DELAY",
    "Periodic",
    "PushContext",
    "QueuePhase",
    "QueueState",
    "RebalanceSchedule",
]

#: Seconds until an extra rebalance after an orderly queue could not be locked.
QUICK_REBALANCE_DELAY: Final = 0.5


class QueuePhase(enum.Enum):
    """A held queue's consume loop (orderly consumption), and its handover.

    ``IDLE -> CONSUMING -> IDLE`` while the queue is ours; a rebalance that gives
    a ``CONSUMING`` queue away makes it ``HANDING_OVER`` (still locked: the next
    owner must not run a message still being handled), and when its loop ends it
    is ``HANDED_OVER``: the upkeep commits its offset and unlocks it.
    """

    #: No consume loop runs for the queue.
    IDLE = "idle"
    #: Its consume loop runs.
    CONSUMING = "consuming"
    #: Given away while its consume loop ran: the loop stops at its next turn.
    HANDING_OVER = "handing over"
    #: Given away, and its loop has ended: ready to be let go.
    HANDED_OVER = "handed over"


@dataclass(slots=True)
class QueueState:
    """A queue the consumer holds: its pull request and its consume phase."""

    request: PullRequest
    phase: QueuePhase = QueuePhase.IDLE

    @property
    def message_queue(self) -> MessageQueue:
        return self.request.message_queue

    @property
    def consuming(self) -> bool:
        """Whether a consume loop runs for the queue."""
        return self.phase is QueuePhase.CONSUMING or self.phase is QueuePhase.HANDING_OVER

    @property
    def releasing(self) -> bool:
        """Whether the queue was given away while its consume loop ran."""
        return self.phase is QueuePhase.HANDING_OVER or self.phase is QueuePhase.HANDED_OVER

    def begin_consuming(self) -> bool:
        """``IDLE -> CONSUMING``: whether the caller is to start a consume loop
        (``False``: one runs already, or the queue was given away)."""
        if self.phase is not QueuePhase.IDLE:
            return False
        self.phase = QueuePhase.CONSUMING
        return True

    def end_consuming(self) -> None:
        """The consume loop ended: ``CONSUMING -> IDLE``, ``HANDING_OVER -> HANDED_OVER``."""
        if self.phase is QueuePhase.CONSUMING:
            self.phase = QueuePhase.IDLE
        elif self.phase is QueuePhase.HANDING_OVER:
            self.phase = QueuePhase.HANDED_OVER

    def hand_over(self) -> None:
        """A rebalance gave the queue away while its loop ran: ``CONSUMING -> HANDING_OVER``."""
        if self.phase is QueuePhase.CONSUMING:
            self.phase = QueuePhase.HANDING_OVER


@dataclass(slots=True)
class Periodic:
    """A task of the upkeep round that runs every ``interval`` seconds."""

    interval: float
    #: When it last ran (``None``: never, so it is due).
    last: float | None = None

    def due(self, now: float) -> bool:
        return self.last is None or now - self.last >= self.interval

    def ran(self, now: float) -> None:
        self.last = now


@dataclass(slots=True)
class RebalanceSchedule:
    """When the next rebalance round is due: every ``interval`` seconds, and
    sooner when asked (at once, or in :data:`QUICK_REBALANCE_DELAY`)."""

    every: Periodic
    #: When an extra round was asked for: ``-inf`` at once, a time for soon,
    #: ``None`` for no extra round. A new consumer rebalances at once.
    _asked: float | None = -math.inf

    @property
    def due_at(self) -> float | None:
        """When an extra round is due (``-inf``: at once; ``None``: none asked)."""
        return self._asked

    def ask_now(self) -> None:
        """Rebalance at the next upkeep step (subscriptions or the group changed)."""
        self._asked = -math.inf

    def ask_soon(self, now: float) -> None:
        """Rebalance in :data:`QUICK_REBALANCE_DELAY` (Java's ``rebalanceLater(500)``),
        unless a round is due earlier."""
        at = now + QUICK_REBALANCE_DELAY
        if self._asked is None or at < self._asked:
            self._asked = at

    def due(self, now: float) -> bool:
        return (self._asked is not None and now >= self._asked) or self.every.due(now)

    def begin(self) -> None:
        """A round starts: the asks so far are answered by it."""
        self._asked = None

    def done(self, now: float) -> None:
        """A round ended: the next regular one is an interval from ``now``."""
        self.every.ran(now)


@dataclass(slots=True)
class PushContext:
    """A push consumer's shared state: settings, subscriptions, held queues, offsets."""

    client: ClientCore
    config: ConsumerConfig
    #: The group as the brokers know it (with the namespace).
    group: str
    lifecycle: Lifecycle
    subscriptions: dict[str, SubscriptionData] = field(default_factory=dict)
    offsets: OffsetStore = field(default_factory=OffsetStore)
    #: The queues held now, each pulled by its pull loop.
    queues: dict[MessageQueue, QueueState] = field(default_factory=dict)
    #: Orderly queues given away whose consume loop has not ended yet (still locked).
    releasing: dict[MessageQueue, QueueState] = field(default_factory=dict)
    rebalance: RebalanceSchedule = field(init=False)
    #: Wall clock (ms) when the consumer started: CONSUME_FROM_TIMESTAMP's default.
    start_ms: int = 0
    #: Broadcasting: the offsets file's content, as last read or written.
    local_offsets: dict[MessageQueue, int] = field(default_factory=dict)
    #: Handler calls counted and timed, for the client's ``stats()``.
    metrics: ConsumeMetrics = field(default_factory=ConsumeMetrics)

    def __post_init__(self) -> None:
        self.rebalance = RebalanceSchedule(Periodic(self.config.rebalance_interval))

    @property
    def closed(self) -> bool:
        """Whether the consumer began closing: pulls and handlers stop."""
        return self.lifecycle.closed

    @property
    def orderly(self) -> bool:
        return self.config.orderly

    def all_subscriptions(self) -> dict[str, SubscriptionData]:
        """The user's subscriptions, and for clustering the group's retry topic."""
        subs = dict(self.subscriptions)
        if self.config.clustering:
            retry = ns.retry_topic(self.group)
            subs.setdefault(retry, build_subscription(retry, "*", ExpressionType.TAG))
        return subs

    def subscription(self, topic: str) -> SubscriptionData | None:
        return self.subscriptions.get(topic) or self.all_subscriptions().get(topic)

    def local_offsets_file(self) -> str:
        """Broadcasting: the path of the group's offsets file (named after the
        configured instance name, not the generated one: see
        :func:`~rocketmq_proto.flows.consumer.offsets.local_offsets_client_id`)."""
        client_config = self.client.config
        stable_id = local_offsets_client_id(
            client_config.client_ip,
            self.config.configured_instance_name,
            client_config.unit_name,
        )
        root, client_id, group, name = local_offsets_path(stable_id, self.group)
        base = self.config.offset_store_dir or os.path.join(os.path.expanduser("~"), root)
        return os.path.join(base, client_id, group, name)

    def held(self) -> list[MessageQueue]:
        """Every queue held, the given-away orderly ones still locked included."""
        return [*self.queues, *self.releasing]

    def current(self, request: PullRequest) -> QueueState | None:
        """The state of ``request``'s queue if ``request`` still pulls it."""
        state = self.queues.get(request.message_queue)
        return state if state is not None and state.request is request else None
