"""A push consumer's settings (Java's ``DefaultMQPushConsumer`` fields), validated."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rocketmq_proto.flows.consumer.consume import max_reconsume_times
from rocketmq_proto.flows.consumer.pull import PullConfig
from rocketmq_proto.flows.consumer.rebalance import (
    AllocateStrategy,
    allocate_averagely,
    allocate_averagely_by_circle,
    allocate_consistent_hash,
)
from rocketmq_proto.wire.bodies import ConsumeFromWhere, MessageModel
from rocketmq_proto.wire.errors import ConfigError

__all__ = ["ConsumeMode", "ConsumerConfig"]

_STRATEGIES: dict[str, AllocateStrategy] = {
    "averagely": allocate_averagely,
    "average": allocate_averagely,
    "averagely_by_circle": allocate_averagely_by_circle,
    "circle": allocate_averagely_by_circle,
    "consistent_hash": allocate_consistent_hash,
}


class ConsumeMode(enum.StrEnum):
    CONCURRENTLY = "concurrently"
    ORDERLY = "orderly"


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """Push consumer settings, with Java's defaults. Times in seconds unless named ms."""

    group: str
    message_model: MessageModel = MessageModel.CLUSTERING
    consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    #: For CONSUME_FROM_TIMESTAMP: epoch ms (default: half an hour before start).
    consume_timestamp: int | None = None
    allocate_strategy: str | AllocateStrategy = "averagely"
    orderly: bool = False
    #: Handlers running at once (Java's ``consumeThreadMax``).
    consume_thread_max: int = 20
    consume_message_batch_max_size: int = 1
    #: -1: 16 for concurrent consumption, unlimited local retries for orderly.
    max_reconsume_times: int = -1
    #: Delay level of messages sent back (0: the broker's 3 + reconsume times).
    delay_level_when_next_consume: int = 0
    suspend_current_queue_time_millis: int = 1000
    consume_timeout_minutes: int = 15
    persist_consumer_offset_interval: float = 5.0
    rebalance_interval: float = 20.0
    #: Broadcasting: directory of the local offset files (default ``~/.rocketmq_offsets``).
    offset_store_dir: str | None = None
    #: The instance name the user configured (``None``: a generated one). It names
    #: the broadcasting offsets directory, ``<client_ip>@<name or DEFAULT>``.
    configured_instance_name: str | None = None
    #: Graceful close: how long in-flight handlers may run on.
    await_termination: float = 30.0
    #: ``"pull"``: queues shared out by client rebalance and pulled (classic);
    #: ``"pop"``: RocketMQ 5.x POP, every consumer pops from every queue and acks;
    #: ``"auto"``: each topic by the group's request mode on the brokers.
    consume_mode: str = "pull"
    #: POP mode: how long popped messages stay hidden from the group's other
    #: consumers (a failed message comes back after its retry delay instead).
    pop_invisible_duration: float = 60.0
    pull: PullConfig = field(default_factory=PullConfig)

    def __post_init__(self) -> None:
        if not self.group or not all(c.isalnum() or c in "%|-_" for c in self.group):
            raise ConfigError(
                f"consumer group {self.group!r} must be non-empty and use only "
                "letters, digits, '%', '|', '-' and '_'"
            )
        object.__setattr__(self, "message_model", MessageModel(self.message_model))
        object.__setattr__(self, "consume_from_where", ConsumeFromWhere(self.consume_from_where))
        if isinstance(self.allocate_strategy, str):
            if self.allocate_strategy not in _STRATEGIES:
                raise ConfigError(
                    f"allocate_strategy must be one of {sorted(_STRATEGIES)} or a callable, "
                    f"got {self.allocate_strategy!r}"
                )
        elif not callable(self.allocate_strategy):
            raise ConfigError("allocate_strategy must be a name or a callable")
        if not 1 <= self.consume_thread_max <= 1000:
            raise ConfigError(f"consume_thread_max must be 1..1000, got {self.consume_thread_max}")
        if not 1 <= self.consume_message_batch_max_size <= 1024:
            raise ConfigError(
                "consume_message_batch_max_size must be 1..1024, "
                f"got {self.consume_message_batch_max_size}"
            )
        if self.max_reconsume_times < -1:
            raise ConfigError(f"max_reconsume_times must be >= -1, got {self.max_reconsume_times}")
        if self.consume_mode not in ("pull", "pop", "auto"):
            raise ConfigError(
                f"consume_mode must be 'pull', 'pop' or 'auto', got {self.consume_mode!r}"
            )
        if self.consume_mode == "auto" and self.orderly:
            raise ConfigError(
                "an orderly consumer pulls, as Java's does: consume_mode 'auto' needs "
                "orderly=False (consume_mode 'pop' pops in order)"
            )
        if self.consume_mode != "pull" and self.message_model != MessageModel.CLUSTERING:
            raise ConfigError(
                f"a broadcasting consumer pulls: consume_mode {self.consume_mode!r} "
                "needs clustering"
            )
        if not 1 <= self.pop_invisible_duration <= 12 * 3600:
            raise ConfigError(
                "pop_invisible_duration must be 1 s to 43200 s, "
                f"got {self.pop_invisible_duration!r}"
            )
        for name in ("persist_consumer_offset_interval", "rebalance_interval", "await_termination"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")

    @property
    def strategy(self) -> AllocateStrategy:
        if isinstance(self.allocate_strategy, str):
            return _STRATEGIES[self.allocate_strategy]
        return self.allocate_strategy

    @property
    def clustering(self) -> bool:
        return self.message_model == MessageModel.CLUSTERING

    @property
    def orderly_clustering(self) -> bool:
        """Orderly consumption of a clustering group: queues are locked on the brokers."""
        return self.orderly and self.clustering

    @property
    def max_reconsume(self) -> int:
        """The effective ``maxReconsumeTimes`` (``-1`` resolved)."""
        return max_reconsume_times(self.max_reconsume_times, orderly=self.orderly)

    def start_timestamp(self, start_ms: int) -> int:
        """Where CONSUME_FROM_TIMESTAMP starts: the configured time, else half an
        hour before the consumer started (``start_ms``)."""
        if self.consume_timestamp is None:
            return start_ms - 30 * 60 * 1000
        return self.consume_timestamp
