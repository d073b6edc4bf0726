"""A push consumer's pull loops: one per held queue (Java's ``PullMessageService``).

Each loop runs :func:`~rocketmq_proto.flows.consumer.pull.pull_step_flow` until its
queue is dropped or the consumer closes, and acts on each step's outcome: the
messages cached go to consumption (concurrent or orderly), an orderly queue just
locked has its offset read again, an illegal offset ends the loop and asks for
a rebalance. The path from a pulled frame to the handler runs one way: the step
answers, the loop dispatches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from rocketmq_proto.flows.consumer.dispatch import Consumption
from rocketmq_proto.flows.consumer.offsets import query_offset_flow
from rocketmq_proto.flows.consumer.pull import PullRequest, pull_step_flow
from rocketmq_proto.flows.consumer.push_state import PushContext
from rocketmq_proto.flows.effects import Flow, sleep, spawn
from rocketmq_proto.wire.errors import RocketMQError
from rocketmq_proto.wire.logfields import log_fields

__all__ = ["PullLoops"]

log = logging.getLogger("rocketmq_proto.consumer")


@dataclass(slots=True)
class PullLoops:
    """Starts and runs the pull loops of a push consumer's held queues."""

    ctx: PushContext
    consumption: Consumption

    def start_flow(self, requests: Iterable[PullRequest]) -> Flow[None]:
        """Spawn a pull loop for each request that still pulls its queue."""
        for request in requests:
            if self.ctx.current(request) is not None:
                yield from spawn(self.loop_flow(request), f"pull {request.message_queue}")

    def loop_flow(self, request: PullRequest) -> Flow[None]:
        """Pull one queue until it is dropped (or the consumer closes)."""
        ctx = self.ctx
        config = ctx.config
        mq = request.message_queue
        while not ctx.closed:
            state = ctx.current(request)
            if state is None:
                return
            outcome = yield from pull_step_flow(
                ctx.client,
                request,
                ctx.subscription(mq.topic),
                config.pull,
                ctx.offsets,
                clustering=config.clustering,
                orderly=config.orderly,
                queue_count=len(ctx.queues),
            )
            if outcome.reread_offset:
                delay = yield from self._reread_offset_flow(request)
                if delay > 0:
                    yield from sleep(delay)
                continue
            if outcome.messages:
                yield from self.consumption.dispatch_flow(state, outcome.messages, outcome.dispatch)
            if outcome.delay is None:
                if outcome.offset_fixed:
                    ctx.queues.pop(mq, None)
                    ctx.offsets.remove(mq)
                    ctx.rebalance.ask_now()
                return
            if outcome.delay > 0:
                yield from sleep(outcome.delay)

    def _reread_offset_flow(self, request: PullRequest) -> Flow[float]:
        """Orderly: the queue was just locked, so another consumer may have moved its
        offset meanwhile: read it again and pull from there. Seconds to wait before
        the next step (a failure backs off).

        Unlike Java, a group with no offset on the broker keeps the start offset
        taken with the queue: Java works it out again from ``consume_from_where``,
        and a new group starting from the last offset then skips the messages
        stored since it took the queue (the broker answers such a group "not
        found" once the queue's first message has left its memory)."""
        ctx = self.ctx
        config = ctx.config
        mq = request.message_queue
        try:
            found = yield from query_offset_flow(ctx.client, ctx.group, mq)
            if found is not None and found >= 0:
                ctx.offsets.update(mq, found)
                offset = found
            else:
                offset = request.next_offset
        except RocketMQError as exc:
            log.debug(
                "offset of locked queue %s unavailable: %s",
                mq,
                exc,
                extra=log_fields(client=ctx.client.client_id, group=ctx.group, queue=mq),
            )
            return config.pull.pull_time_delay_when_exception
        request.relocked(offset)
        return 0.0
