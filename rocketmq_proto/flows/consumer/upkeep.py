"""A push consumer's upkeep: the rebalance round and the periodic tasks.

Java's ``RebalancePushImpl`` and the scheduled tasks of ``MQClientInstance``
for one group: rebalance (at start, every 20 s, and when asked), taking and
letting go of queues (offsets committed, orderly locks taken and released),
offset commits every 5 s (to the brokers, or for broadcasting to a local
file), lock renewals of orderly queues, and the 15-minute clean-up of messages
stuck in a concurrent handler.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from rocketmq_proto.flows.consumer.consume import clean_expired_flow, initial_offset_flow
from rocketmq_proto.flows.consumer.offsets import (
    commit_offsets_flow,
    encode_local_offsets,
    persist_offset_flow,
)
from rocketmq_proto.flows.consumer.orderly import OrderlyConsumption
from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.consumer.pull import PullRequest
from rocketmq_proto.flows.consumer.pull_loop import PullLoops
from rocketmq_proto.flows.consumer.push_state import Periodic, PushContext, QueueState
from rocketmq_proto.flows.consumer.rebalance import queues_not_subscribed, rebalance_topic_flow
from rocketmq_proto.flows.effects import Flow, now, read_file, sleep, wall_ms, write_file
from rocketmq_proto.flows.producer import ProducerCore
from rocketmq_proto.wire.errors import RocketMQError
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue

__all__ = ["CLEAN_EXPIRED_INTERVAL", "UPKEEP_STEP", "PushUpkeep"]

log = logging.getLogger("rocketmq_proto.consumer")

#: Seconds between two looks for messages stuck in a concurrent handler.
CLEAN_EXPIRED_INTERVAL = 900.0
#: Seconds between two steps of the upkeep loop.
UPKEEP_STEP = 0.2


@dataclass(slots=True)
class PushUpkeep:
    """The rebalance round and periodic tasks of one push consumer."""

    ctx: PushContext
    pulls: PullLoops
    #: Orderly consumption (its locks); ``None`` for concurrent consumption.
    orderly: OrderlyConsumption | None
    #: Sends stuck messages back when the broker will not take them.
    producer: ProducerCore
    persist: Periodic
    clean: Periodic

    @property
    def _locks(self) -> OrderlyConsumption | None:
        """Orderly consumption of a clustering group: queues are locked on the brokers."""
        return self.orderly if self.ctx.config.clustering else None

    # ------------------------------------------------------------------ loop

    def maintenance_flow(self) -> Flow[None]:
        """Until closed: rebalance, commit offsets, renew locks, clean expired messages."""
        ctx = self.ctx
        while not ctx.closed:
            now_s = yield from now()
            if ctx.releasing:
                try:
                    yield from self.finish_releases_flow()
                except RocketMQError as exc:
                    log.warning(
                        "release of orderly queues of %s failed: %s",
                        ctx.group,
                        exc,
                        extra=log_fields(client=ctx.client.client_id, group=ctx.group),
                    )
            if ctx.rebalance.due(now_s):
                try:
                    yield from self.rebalance_flow()
                except RocketMQError as exc:
                    log.warning(
                        "rebalance of %s failed: %s",
                        ctx.group,
                        exc,
                        extra=log_fields(client=ctx.client.client_id, group=ctx.group),
                    )
            if self.persist.due(now_s) and not ctx.closed:  # (a close commits, confirmed)
                try:
                    yield from self.persist_flow()
                except RocketMQError as exc:
                    log.warning(
                        "offset commit of %s failed: %s",
                        ctx.group,
                        exc,
                        extra=log_fields(client=ctx.client.client_id, group=ctx.group),
                    )
                    self.persist.ran(now_s)
            locks = self._locks
            if locks is not None and locks.renewal.due(now_s):
                yield from locks.lock_all_flow()
            if not ctx.orderly and self.clean.due(now_s):
                self.clean.ran(now_s)
                yield from self.clean_expired_flow()
            yield from sleep(UPKEEP_STEP)

    # ------------------------------------------------------------- rebalance

    def rebalance_flow(self) -> Flow[bool]:
        """One rebalance round over every subscribed topic; whether anything changed."""
        ctx = self.ctx
        ctx.rebalance.begin()
        changed = False
        subs = ctx.all_subscriptions()
        current = {mq: state.request.process_queue for mq, state in ctx.queues.items()}
        added: list[PullRequest] = []
        for mq in queues_not_subscribed(list(ctx.queues), subs):
            yield from self.drop_queue_flow(mq)
            changed = True
        try:
            for topic in subs:
                decision = yield from rebalance_topic_flow(
                    ctx.client,
                    ctx.group,
                    topic,
                    ctx.config.strategy,
                    current,
                    message_model=ctx.config.message_model,
                )
                if decision is None or not decision.changed:
                    continue
                changed = True
                for mq in (*decision.to_drop, *decision.to_renew):
                    yield from self.drop_queue_flow(mq)
                for mq in (*decision.to_add, *decision.to_renew):
                    request = yield from self._add_queue_flow(mq)
                    if request is not None:
                        added.append(request)
        except RocketMQError:
            yield from self.pulls.start_flow(added)  # what was taken is pulled all the same
            raise
        ctx.rebalance.done((yield from now()))
        if changed:
            # The new subscription version reaches the brokers (heartbeat) before
            # the first pull that carries it: a broker refuses a pull whose version
            # is newer than the one registered (SUBSCRIPTION_NOT_LATEST).
            wall = yield from wall_ms()
            for topic, sub in ctx.subscriptions.items():
                ctx.subscriptions[topic] = dataclasses.replace(sub, sub_version=wall)
            yield from ctx.client.heartbeat_flow()
        yield from self.pulls.start_flow(added)
        return changed

    def drop_queue_flow(self, mq: MessageQueue) -> Flow[None]:
        ctx = self.ctx
        state = ctx.queues.pop(mq, None)
        if state is None:
            return
        if self._locks is not None and state.consuming:
            # As Java: a busy orderly queue keeps its broker lock until its consume
            # loop ends, so the next owner cannot run a message still being handled.
            state.hand_over()
            ctx.releasing[mq] = state
            log.info(
                "queue %s is being consumed; releasing it when its handler ends",
                mq,
                extra=log_fields(client=ctx.client.client_id, group=ctx.group, queue=mq),
            )
            return
        yield from self._release_queue_flow(mq, state)

    def _release_queue_flow(self, mq: MessageQueue, state: QueueState) -> Flow[None]:
        ctx = self.ctx
        state.request.process_queue.dropped = True
        if ctx.config.clustering:
            yield from persist_offset_flow(ctx.client, ctx.group, ctx.offsets, mq)
            locks = self._locks
            if locks is not None:
                yield from locks.unlock_flow([mq])
        ctx.offsets.remove(mq)

    def _add_queue_flow(self, mq: MessageQueue) -> Flow[PullRequest | None]:
        """Take ``mq``: lock it (orderly), read its start offset; the pull request
        to start (the caller spawns its pull loop), or ``None`` if not taken now."""
        ctx = self.ctx
        config = ctx.config
        now_s = yield from now()
        if mq in ctx.releasing:  # its old consume loop still runs: take it back after
            ctx.rebalance.ask_soon(now_s)
            return None
        locks = self._locks
        if locks is not None:
            locked = yield from locks.lock_flow([mq])
            if mq not in locked:
                log.info(
                    "queue %s is locked by another consumer; trying again soon",
                    mq,
                    extra=log_fields(client=ctx.client.client_id, group=ctx.group, queue=mq),
                )
                ctx.rebalance.ask_soon(now_s)
                return None
        ctx.offsets.remove(mq)
        try:
            offset = yield from initial_offset_flow(
                ctx.client,
                ctx.group,
                mq,
                config.consume_from_where,
                config.start_timestamp(ctx.start_ms),
                stored=None if config.clustering else ctx.local_offsets,
                offsets=ctx.offsets,
            )
        except RocketMQError as exc:
            log.warning(
                "start offset of %s unavailable; taking it later: %s",
                mq,
                exc,
                extra=log_fields(client=ctx.client.client_id, group=ctx.group, queue=mq),
            )
            ctx.rebalance.ask_now()
            return None
        pq = ProcessQueue(now_s)
        pq.set_locked(True, now_s)
        if ctx.offsets.read(mq) is None:
            ctx.offsets.update(mq, offset)
        request = PullRequest(ctx.group, mq, pq, offset)
        ctx.queues[mq] = QueueState(request)
        log.info(
            "consuming %s from offset %d",
            mq,
            offset,
            extra=log_fields(client=ctx.client.client_id, group=ctx.group, queue=mq),
        )
        return request

    def finish_releases_flow(self) -> Flow[None]:
        """Let go of the given-away orderly queues whose consume loop ended."""
        ctx = self.ctx
        for mq, state in list(ctx.releasing.items()):
            if not state.consuming:
                del ctx.releasing[mq]
                yield from self._release_queue_flow(mq, state)
                ctx.rebalance.ask_now()  # it may be allocated here again

    # -------------------------------------------------------------- offsets

    def persist_flow(self, *, confirmed: bool = False) -> Flow[None]:
        """Commit offsets: to the brokers (clustering; ``confirmed``: waiting for
        each broker's answer) or the local file (broadcasting)."""
        ctx = self.ctx
        assigned = ctx.held()
        if ctx.config.clustering:
            yield from commit_offsets_flow(
                ctx.client, ctx.group, ctx.offsets, assigned, confirmed=confirmed
            )
        else:
            previous = ctx.local_offsets
            table = ctx.offsets.local_snapshot(assigned, previous)
            if table != previous or not previous:
                path = ctx.local_offsets_file()
                old = yield from read_file(path)
                if old is not None:
                    yield from write_file(path + ".bak", old)
                yield from write_file(path, encode_local_offsets(table))
                ctx.local_offsets = table
        self.persist.ran((yield from now()))

    # --------------------------------------------------------------- clean up

    def clean_expired_flow(self) -> Flow[None]:
        """Send back the messages stuck in a concurrent handler for longer than
        ``consume_timeout_minutes`` (Java's ``cleanExpireMsg``)."""
        ctx = self.ctx
        wall = yield from wall_ms()
        for state in list(ctx.queues.values()):
            yield from clean_expired_flow(
                ctx.client,
                ctx.group,
                state.request.process_queue,
                wall_ms=wall,
                producer=self.producer,
                consume_timeout_minutes=ctx.config.consume_timeout_minutes,
                max_reconsume=ctx.config.max_reconsume,
            )
