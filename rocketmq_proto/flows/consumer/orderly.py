"""Orderly consumption: broker locks and one consume loop per queue.

Java's ``ConsumeMessageOrderlyService`` and the lock calls of ``RebalanceImpl``:
a clustering group consumes a queue in order only while this client holds the
queue's lock on its broker (LOCK_BATCH_MQ, renewed every 20 s; UNLOCK_BATCH_MQ
when the queue is let go). Each queue with messages waiting has one consume
loop, which takes the next batch only after the previous one was settled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rocketmq_proto.flows.consumer.consume import process_orderly_result_flow
from rocketmq_proto.flows.consumer.dispatch import Handler
from rocketmq_proto.flows.consumer.push_state import Periodic, PushContext, QueueState
from rocketmq_proto.flows.effects import Flow, call, now, oneway, sleep, spawn
from rocketmq_proto.flows.producer import ProducerCore
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    encode_lock_batch,
    encode_unlock_batch,
    parse_lock_batch_response,
)
from rocketmq_proto.wire.codes import ResponseCode
from rocketmq_proto.wire.errors import RemoteProtocolError, RocketMQError
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue

__all__ = ["OrderlyConsumption"]

log = logging.getLogger("rocketmq_proto.consumer")

#: Seconds a consume loop waits before trying again a lock it could not get.
LOCK_RETRY_DELAY = 0.1


def _by_broker(mqs: list[MessageQueue]) -> dict[str, list[MessageQueue]]:
    by_broker: dict[str, list[MessageQueue]] = {}
    for mq in mqs:
        by_broker.setdefault(mq.broker_name, []).append(mq)
    return by_broker


@dataclass(slots=True)
class OrderlyConsumption:
    """Orderly consumption of a push consumer: locks, and a consume loop per queue."""

    ctx: PushContext
    handler: Handler
    #: Sends the messages past their retries to the retry topic.
    producer: ProducerCore
    #: When the held queues' locks were last renewed.
    renewal: Periodic

    # ------------------------------------------------------------------ locks

    def lock_flow(self, mqs: list[MessageQueue]) -> Flow[set[MessageQueue]]:
        """Lock ``mqs`` on their brokers: the ones this client holds now. A broker
        that fails or refuses locks none of its queues (logged)."""
        client = self.ctx.client
        locked: set[MessageQueue] = set()
        for broker_name, group_mqs in _by_broker(mqs).items():
            addr = client.master_addr(broker_name)
            if addr is None:
                continue
            body = encode_lock_batch(self.ctx.group, client.client_id, group_mqs)
            try:
                response = yield from call(
                    addr, rq.lock_batch_mq(body), client.config.request_timeout
                )
            except RocketMQError as exc:
                log.warning(
                    "lock of %s queues on %s failed: %s",
                    len(group_mqs),
                    broker_name,
                    exc,
                    extra=log_fields(
                        client=client.client_id, group=self.ctx.group, broker=broker_name, addr=addr
                    ),
                )
                continue
            if response.code != ResponseCode.SUCCESS:
                log.warning(
                    "lock on %s refused: %s %s",
                    broker_name,
                    response.code,
                    response.remark,
                    extra=log_fields(
                        client=client.client_id, group=self.ctx.group, broker=broker_name, addr=addr
                    ),
                )
                continue
            try:
                locked |= parse_lock_batch_response(response.body)
            except RemoteProtocolError as exc:
                log.warning(
                    "lock answer of %s unreadable: %s",
                    broker_name,
                    exc,
                    extra=log_fields(
                        client=client.client_id, group=self.ctx.group, broker=broker_name, addr=addr
                    ),
                )
        return locked

    def unlock_flow(self, mqs: list[MessageQueue]) -> Flow[None]:
        """Unlock ``mqs`` on their brokers (oneway; failures are logged)."""
        client = self.ctx.client
        for broker_name, group_mqs in _by_broker(mqs).items():
            addr = client.master_addr(broker_name)
            if addr is None:
                continue
            body = encode_unlock_batch(self.ctx.group, client.client_id, group_mqs)
            try:
                yield from oneway(addr, rq.unlock_batch_mq(body))
            except RocketMQError as exc:
                log.info(
                    "unlock on %s failed: %s",
                    broker_name,
                    exc,
                    extra=log_fields(
                        client=client.client_id, group=self.ctx.group, broker=broker_name, addr=addr
                    ),
                )

    def lock_all_flow(self) -> Flow[None]:
        """Renew the broker locks of every orderly queue held (every 20 s); a queue
        locked with messages waiting and no consume loop gets one."""
        ctx = self.ctx
        mqs = sorted(ctx.held())
        locked = yield from self.lock_flow(mqs)
        now_s = yield from now()
        for mq in mqs:
            state = ctx.queues.get(mq)
            if state is None:
                continue
            pq = state.request.process_queue
            if mq in locked:
                pq.set_locked(True, now_s)
                if pq.msg_count and state.begin_consuming():
                    yield from spawn(self.consume_flow(state), f"orderly {mq}")
            else:
                pq.set_locked(False, now_s)
        self.renewal.ran(now_s)

    # ---------------------------------------------------------------- consume

    def dispatch_flow(
        self, state: QueueState, msgs: list[MessageExt], start_loop: bool
    ) -> Flow[None]:
        """Messages were cached in ``state``'s process queue: start its consume loop
        if the process queue asked for one and none runs."""
        if start_loop and state.begin_consuming():
            yield from spawn(self.consume_flow(state), f"orderly {state.message_queue}")

    def consume_flow(self, state: QueueState) -> Flow[None]:
        """Consume one queue in order until it holds nothing (or loses its lock, is
        given away or dropped, or the consumer closes)."""
        ctx = self.ctx
        config = ctx.config
        handler = self.handler
        request = state.request
        pq = request.process_queue
        mq = request.message_queue
        try:
            while not pq.dropped and not state.releasing and not ctx.closed:
                now_s = yield from now()
                if config.clustering and (not pq.locked or pq.is_lock_expired(now_s)):
                    locked = yield from self.lock_flow([mq])
                    now_s = yield from now()
                    pq.set_locked(mq in locked, now_s)
                    if mq not in locked:
                        yield from sleep(LOCK_RETRY_DELAY)
                        continue
                msgs = pq.take_messages(config.consume_message_batch_max_size, now_s)
                if not msgs:
                    return
                handler.in_flight += 1
                try:
                    result = yield from handler.call_flow(msgs)
                    if result is None:
                        pq.rollback()  # not consumed: the taken messages stay pending
                        return
                    if pq.dropped:
                        return
                    outcome = yield from process_orderly_result_flow(
                        pq,
                        mq,
                        msgs,
                        result,
                        offsets=ctx.offsets,
                        group=ctx.group,
                        producer=self.producer,
                        max_reconsume=config.max_reconsume,
                        default_suspend_millis=config.suspend_current_queue_time_millis,
                    )
                finally:
                    handler.in_flight -= 1
                ctx.metrics.dead_lettered += outcome.dead_lettered
                if not outcome.continue_consume:
                    yield from sleep(outcome.delay)
        finally:
            state.end_consuming()
