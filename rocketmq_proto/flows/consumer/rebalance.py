"""Rebalance: which queues of a topic each consumer of a group takes (Java's ``RebalanceImpl``).

Every consumer of a clustering group computes the allocation by itself, from the
same inputs (the topic's readable queues and the group's client ids, both
sorted the way Java sorts them), with the same strategy. The strategies here
compute exactly what Java's ``AllocateMessageQueue*`` classes compute, so a
group that mixes Java and Python consumers still gives every queue to exactly
one of them.

A strategy is a plain function ``(consumer_group, current_cid, mq_all, cid_all)
-> list[MessageQueue]``; :func:`allocate_by_config` and
:func:`allocate_by_machine_room` build one from their settings, as Java's
setters configure the strategy objects. :func:`decide_rebalance` turns an
allocation into what to change; :func:`rebalance_topic_flow` runs one topic's
round (route, consumer ids, allocation, decision).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
from rocketmq_proto.flows.effects import Flow, call, now
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message.namespace import RETRY_PREFIX
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import MessageModel, parse_consumer_id_list
from rocketmq_proto.wire.codes import ResponseCode
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    InvalidArgumentError,
    RequestTimeoutError,
    RocketMQError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue, TopicRouteData, java_order_key, subscribe_queues

log = logging.getLogger("rocketmq_proto.consumer")

__all__ = [
    "DEFAULT_VIRTUAL_NODE_COUNT",
    "AllocateStrategy",
    "RebalanceDecision",
    "allocate_averagely",
    "allocate_averagely_by_circle",
    "allocate_by_config",
    "allocate_by_machine_room",
    "allocate_consistent_hash",
    "consistent_hash",
    "consumer_ids_flow",
    "decide_rebalance",
    "java_message_queue_str",
    "queues_not_subscribed",
    "rebalance_topic_flow",
    "sort_for_rebalance",
    "strategy_name",
]

#: An allocation strategy: (consumer group, this client's id, every queue sorted,
#: every client id sorted) -> the queues this client takes.
AllocateStrategy = Callable[[str, str, Sequence[MessageQueue], Sequence[str]], list[MessageQueue]]

#: Virtual nodes per consumer on the ring of ``AllocateMessageQueueConsistentHash()``.
DEFAULT_VIRTUAL_NODE_COUNT: Final = 10


def sort_for_rebalance(
    mqs: Iterable[MessageQueue], cids: Iterable[str]
) -> tuple[list[MessageQueue], list[str]]:
    """Queues and client ids sorted as Java's ``Collections.sort`` sorts them.

    Queues by topic, broker name, queue id (``MessageQueue.compareTo``); ids by
    ``String.compareTo`` (UTF-16 code units, see :func:`java_order_key`).
    Duplicates are kept, as Java keeps them in ``cidAll``.
    """
    return sorted(mqs), sorted(cids, key=java_order_key)


def _check(current_cid: str, mq_all: Sequence[MessageQueue], cid_all: Sequence[str]) -> bool:
    # Java's AbstractAllocateMessageQueueStrategy.check: an empty input is an
    # error (RebalanceImpl then keeps the current assignment); a client that is
    # not in the list takes nothing.
    if not current_cid:
        raise InvalidArgumentError("currentCID is empty")
    if not mq_all:
        raise InvalidArgumentError("mqAll is null or mqAll empty")
    if not cid_all:
        raise InvalidArgumentError("cidAll is null or cidAll empty")
    if current_cid not in cid_all:
        log.info(
            "consumer %s is not among the group's consumers %s",
            current_cid,
            list(cid_all),
            extra=log_fields(client=current_cid),
        )
        return False
    return True


def allocate_averagely(
    consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue], cid_all: Sequence[str]
) -> list[MessageQueue]:
    """Java's ``AllocateMessageQueueAveragely`` (strategy "AVG").

    Consecutive blocks: the first ``len(mq_all) % len(cid_all)`` consumers take
    one queue more than the others (8 queues, 3 consumers: 3, 3, 2).
    """
    if not _check(current_cid, mq_all, cid_all):
        return []
    index = cid_all.index(current_cid)
    n_mq, n_cid = len(mq_all), len(cid_all)
    mod = n_mq % n_cid
    if n_mq <= n_cid:
        average = 1
    elif mod > 0 and index < mod:
        average = n_mq // n_cid + 1
    else:
        average = n_mq // n_cid
    start = index * average if mod > 0 and index < mod else index * average + mod
    count = min(average, n_mq - start)
    return [mq_all[start + i] for i in range(count)]


def allocate_averagely_by_circle(
    consumer_group: str, current_cid: str, mq_all: Sequence[MessageQueue], cid_all: Sequence[str]
) -> list[MessageQueue]:
    """Java's ``AllocateMessageQueueAveragelyByCircle`` ("AVG_BY_CIRCLE"): consumer
    ``i`` takes queues ``i``, ``i + n``, ``i + 2n``... of ``n`` consumers."""
    if not _check(current_cid, mq_all, cid_all):
        return []
    index = cid_all.index(current_cid)
    return list(mq_all[index :: len(cid_all)])


def java_message_queue_str(mq: MessageQueue) -> str:
    """Java's ``MessageQueue.toString()``: the key a queue is hashed by on the ring."""
    return f"MessageQueue [topic={mq.topic}, brokerName={mq.broker_name}, queueId={mq.queue_id}]"


def consistent_hash(key: str) -> int:
    """The hash of Java's ``ConsistentHashRouter.MD5Hash``.

    MD5 of the key's UTF-8 bytes; the first four digest bytes, big-endian, as
    an unsigned number (0 to 2**32 - 1; Java holds it in a ``long``).
    """
    # Java's getBytes(UTF_8) writes '?' for a lone surrogate, as "replace" does.
    digest = hashlib.md5(key.encode("utf-8", "replace"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big")


def allocate_consistent_hash(
    consumer_group: str,
    current_cid: str,
    mq_all: Sequence[MessageQueue],
    cid_all: Sequence[str],
    *,
    virtual_node_count: int = DEFAULT_VIRTUAL_NODE_COUNT,
    hash_function: Callable[[str], int] = consistent_hash,
) -> list[MessageQueue]:
    """Java's ``AllocateMessageQueueConsistentHash`` ("CONSISTENT_HASH").

    A ring of ``virtual_node_count`` virtual nodes per client id, keyed
    ``"<cid>-<index>"``; a queue (keyed by its Java ``toString()``) goes to the
    first virtual node at or after its hash, wrapping around. As in Java's
    ``TreeMap``, a later virtual node whose hash collides replaces an earlier one.
    Use ``functools.partial`` to choose other settings.
    """
    if virtual_node_count < 0:
        raise InvalidArgumentError(f"illegal virtualNodeCnt :{virtual_node_count}")
    if not _check(current_cid, mq_all, cid_all):
        return []
    ring: dict[int, str] = {}
    for cid in cid_all:
        # ConsistentHashRouter.addNode numbers a node's replicas after those it
        # already has on the ring: only a client id listed twice has any.
        existing = sum(1 for owner in ring.values() if owner == cid)
        for i in range(virtual_node_count):
            ring[hash_function(f"{cid}-{i + existing}")] = cid
    if not ring:
        return []
    points = sorted(ring)
    result = []
    for mq in mq_all:
        at = bisect.bisect_left(points, hash_function(java_message_queue_str(mq)))
        owner = ring[points[at if at < len(points) else 0]]
        if owner == current_cid:
            result.append(mq)
    return result


def allocate_by_config(queues: Iterable[MessageQueue]) -> AllocateStrategy:
    """Java's ``AllocateMessageQueueByConfig`` ("CONFIG"): always the given queues."""
    fixed = list(queues)

    def allocate(
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        return list(fixed)

    allocate.strategy_name = "CONFIG"  # type: ignore[attr-defined]
    return allocate


def _java_split_at(text: str) -> list[str]:
    # String.split("@") drops trailing empty strings.
    parts = text.split("@")
    while parts and not parts[-1]:
        parts.pop()
    return parts


def allocate_by_machine_room(consumeridcs: Collection[str]) -> AllocateStrategy:
    """Java's ``AllocateMessageQueueByMachineRoom`` ("MACHINE_ROOM").

    Only queues of brokers named ``<idc>@<name>`` with ``<idc>`` in
    ``consumeridcs`` are shared out: each consumer takes a consecutive block of
    ``len // consumers`` queues, and the remainder goes one each to the first
    consumers, taken from the end.
    """
    idcs = frozenset(consumeridcs)

    def allocate(
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        if not _check(current_cid, mq_all, cid_all):
            return []
        index = cid_all.index(current_cid)
        pre = []
        for mq in mq_all:
            parts = _java_split_at(mq.broker_name)
            if len(parts) == 2 and parts[0] in idcs:
                pre.append(mq)
        n_cid = len(cid_all)
        mod, rem = divmod(len(pre), n_cid)
        result = pre[mod * index : mod * index + mod]
        if rem > index:
            result.append(pre[index + mod * n_cid])
        return result

    allocate.strategy_name = "MACHINE_ROOM"  # type: ignore[attr-defined]
    return allocate


_NAMES: Final[dict[object, str]] = {
    allocate_averagely: "AVG",
    allocate_averagely_by_circle: "AVG_BY_CIRCLE",
    allocate_consistent_hash: "CONSISTENT_HASH",
}


def strategy_name(strategy: AllocateStrategy) -> str:
    """Java's ``getName()`` of a strategy (for logs and running info)."""
    name = getattr(strategy, "strategy_name", None)
    if isinstance(name, str):
        return name
    func = getattr(strategy, "func", strategy)  # a functools.partial
    return _NAMES.get(func, getattr(func, "__name__", "CUSTOM"))


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True, slots=True)
class RebalanceDecision:
    """What a rebalance round changes for one topic.

    The driver (or the consumer core) applies it in Java's order: drop every
    queue of :attr:`to_drop` and :attr:`to_renew` (mark the process queue
    dropped, persist and forget its offset, unlock it if orderly); then add
    :attr:`to_add` and those of :attr:`to_renew` whose removal succeeded
    (compute the start offset, create a process queue, start pulling).
    """

    topic: str
    #: Allocated now and not held: take them (sorted).
    to_add: tuple[MessageQueue, ...] = ()
    #: Held and no longer allocated: let them go (sorted).
    to_drop: tuple[MessageQueue, ...] = ()
    #: Held and still allocated, but nothing pulled them for too long (a push
    #: consumer's pull loop died): drop and take again (sorted).
    to_renew: tuple[MessageQueue, ...] = ()
    #: Everything allocated to this client after the round.
    allocated: frozenset[MessageQueue] = frozenset()

    @property
    def changed(self) -> bool:
        return bool(self.to_add or self.to_drop or self.to_renew)


def decide_rebalance(
    topic: str,
    current: Mapping[MessageQueue, ProcessQueue],
    allocated: Iterable[MessageQueue],
    *,
    now: float | None = None,
    push: bool = True,
) -> RebalanceDecision:
    """Compare the held queues of ``topic`` with a new allocation.

    ``current`` may hold queues of other topics (they are ignored). With
    ``push`` and ``now``, a held queue whose process queue has not been pulled
    for two minutes is renewed, as Java's ``updateProcessQueueTableInRebalance``
    does for push consumers.
    """
    wanted = frozenset(allocated)
    held = {mq: pq for mq, pq in current.items() if mq.topic == topic}
    drop = sorted(mq for mq in held if mq not in wanted)
    renew = sorted(
        mq
        for mq, pq in held.items()
        if mq in wanted and push and now is not None and pq.is_pull_expired(now)
    )
    add = sorted(mq for mq in wanted if mq not in held)
    return RebalanceDecision(topic, tuple(add), tuple(drop), tuple(renew), wanted)


def queues_not_subscribed(
    current: Iterable[MessageQueue], topics: Collection[str]
) -> list[MessageQueue]:
    """Held queues of topics no longer subscribed (Java's ``truncateMessageQueueNotMyTopic``):
    mark them dropped and forget them."""
    return sorted(mq for mq in current if mq.topic not in topics)


# ---------------------------------------------------------------------- flows


def consumer_ids_flow(client: ClientCore, topic: str, group: str) -> Flow[list[str] | None]:
    """The client ids of ``group`` (GET_CONSUMER_LIST_BY_GROUP), or ``None`` if no
    broker of ``topic`` could say.

    Java asks one broker of the topic at random; this asks them in route order
    and moves to the next one when a broker fails, which gives the same answer
    (every broker knows the group from its heartbeats) more robustly.
    """
    route = client.cached_route(topic)
    if route is None:
        route = yield from client.route_flow(topic)
    timeout = client.config.request_timeout
    for broker in route.broker_datas:
        addr = broker.select_addr()
        if addr is None:
            continue
        try:
            response = yield from call(addr, rq.get_consumer_list_by_group(group), timeout)
        except (RequestTimeoutError, ConnectionClosedError) as exc:
            log.warning(
                "consumer list of %s from %s failed: %s",
                group,
                addr,
                exc,
                extra=log_fields(client=client.client_id, group=group, topic=topic, addr=addr),
            )
            continue
        if response.code != ResponseCode.SUCCESS:
            log.warning(
                "consumer list of %s from %s: %s",
                group,
                addr,
                error_for_response(response.code, response.remark),
                extra=log_fields(client=client.client_id, group=group, topic=topic, addr=addr),
            )
            continue
        if not response.body:
            return []
        return parse_consumer_id_list(response.body)
    return None


def rebalance_topic_flow(
    client: ClientCore,
    group: str,
    topic: str,
    strategy: AllocateStrategy,
    current: Mapping[MessageQueue, ProcessQueue],
    *,
    message_model: str = MessageModel.CLUSTERING,
    push: bool = True,
) -> Flow[RebalanceDecision | None]:
    """One topic's rebalance round (Java's ``rebalanceByTopic``); ``None``: change nothing.

    ``group`` and ``topic`` are the names the servers know (namespace applied).
    Broadcasting takes every readable queue; clustering asks a broker for the
    group's client ids, sorts both lists and runs ``strategy``. As in Java, a
    failure to learn the queues or the ids, or a strategy that raises (empty
    inputs), leaves the current assignment as it is. When the route cannot be
    fetched, the last one known is used.
    """
    now_s = yield from now()
    route: TopicRouteData | None
    try:
        route = yield from client.route_flow(topic)
    except RocketMQError as exc:
        if not topic.startswith(RETRY_PREFIX):
            log.warning(
                "rebalance of %s: no route for %s: %s",
                group,
                topic,
                exc,
                extra=log_fields(client=client.client_id, group=group, topic=topic),
            )
        route = client.cached_route(topic)
    if route is None:
        return None
    queues = subscribe_queues(topic, route)
    if message_model == MessageModel.BROADCASTING:
        return decide_rebalance(topic, current, queues, now=now_s, push=push)
    try:
        cids = yield from consumer_ids_flow(client, topic, group)
    except RocketMQError as exc:
        log.warning(
            "rebalance of %s/%s: consumer ids unavailable: %s",
            group,
            topic,
            exc,
            extra=log_fields(client=client.client_id, group=group, topic=topic),
        )
        cids = None
    if cids is None:
        log.warning(
            "rebalance of %s/%s: consumer id list unavailable",
            group,
            topic,
            extra=log_fields(client=client.client_id, group=group, topic=topic),
        )
        return None
    mq_all, cid_all = sort_for_rebalance(queues, cids)
    try:
        mine = strategy(group, client.client_id, mq_all, cid_all)
    except (RocketMQError, ValueError, IndexError) as exc:
        log.error(
            "allocation by %s failed for %s/%s: %s",
            strategy_name(strategy),
            group,
            topic,
            exc,
            extra=log_fields(client=client.client_id, group=group, topic=topic),
        )
        return None
    return decide_rebalance(topic, current, mine or (), now=now_s, push=push)
