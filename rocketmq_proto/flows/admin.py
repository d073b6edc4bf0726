"""Administration flows: topics, groups, offsets, routes, looking up messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rocketmq_proto.flows.effects import Flow, call
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.codec import decode_messages
from rocketmq_proto.message.ids import decode_offset_msg_id
from rocketmq_proto.message.model import MessageExt, validate_topic
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    ConsumerConnection,
    ConsumerRunningInfo,
    ConsumeStats,
    OffsetWrapper,
    encode_subscription_group_config,
    parse_consume_stats,
    parse_consumer_connection,
    parse_consumer_running_info,
    parse_reset_offset_body,
)
from rocketmq_proto.wire.codes import Perm, RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    InvalidArgumentError,
    QueryNotFoundError,
    RemoteProtocolError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from rocketmq_proto.wire.pop import encode_set_request_mode
from rocketmq_proto.wire.route import MASTER_ID, MessageQueue, TopicRouteData, subscribe_queues
from rocketmq_proto.wire.trace import (
    DEFAULT_TRACE_TOPIC,
    RECORD_SEPARATOR,
    TraceRecord,
    decode_trace_data,
)

log = logging.getLogger("rocketmq_proto.admin")

DEFAULT_CLUSTER = "DefaultCluster"


def check_success(response: RemotingCommand, request: int | None = None) -> RemotingCommand:
    """``response`` if its code is SUCCESS, else the broker's error (naming ``request``) raised."""
    if response.code != ResponseCode.SUCCESS:
        raise error_for_response(response.code, response.remark, request=request)
    return response


def offset_field(response: RemotingCommand, name: str = "offset") -> int:
    """An integer ext field of a successful response (offsets, mostly)."""
    check_success(response)
    value = response.ext_fields.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RemoteProtocolError(
            f"response to request has no integer {name!r}: {response.ext_fields!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class TopicOffset:
    """A queue's offsets: messages ``min_offset`` <= offset < ``max_offset`` are stored."""

    message_queue: MessageQueue
    min_offset: int
    max_offset: int


@dataclass(slots=True)
class AdminCore(LifecycleOwner):
    """Administration flows over a client session, and the admin client's
    lifecycle (:class:`~rocketmq_proto.flows.lifecycle.LifecycleOwner`)."""

    client: ClientCore
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("admin client"), init=False)

    def _wrap(self, name: str) -> str:
        return ns.wrap(self.client.config.namespace, name)

    def _masters(self, cluster: str) -> Flow[list[tuple[str, str]]]:
        info = yield from self.client.cluster_info_flow()
        brokers = info.cluster_brokers(cluster)
        if not brokers:
            raise RouteNotFoundError(f"cluster {cluster!r} has no broker (or does not exist)")
        out = []
        for broker in brokers:
            addr = broker.broker_addrs.get(MASTER_ID)
            if addr is not None:
                out.append((broker.broker_name, addr))
        return out

    def create_topic_flow(
        self,
        topic: str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        read_queue_nums: int = 8,
        write_queue_nums: int = 8,
        perm: int = Perm.READ | Perm.WRITE,
        order: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> Flow[list[str]]:
        """UPDATE_AND_CREATE_TOPIC on every master of ``cluster``; returns their names."""
        validate_topic(topic)
        if not (0 < read_queue_nums <= 1024 and 0 < write_queue_nums <= 1024):
            raise InvalidArgumentError("queue counts must be 1..1024")
        full = self._wrap(topic)
        masters = yield from self._masters(cluster)
        timeout = self.client.config.request_timeout
        for _, addr in masters:
            command = rq.update_and_create_topic(
                full,
                read_queue_nums=read_queue_nums,
                write_queue_nums=write_queue_nums,
                perm=int(perm),
                order=order,
                attributes=attributes,
            )
            check_success((yield from call(addr, command, timeout)), command.code)
        self.client.forget_route(full)
        return [name for name, _ in masters]

    def delete_topic_flow(self, topic: str, *, cluster: str = DEFAULT_CLUSTER) -> Flow[None]:
        """DELETE_TOPIC_IN_BROKER on every master of ``cluster``, then in every name server."""
        full = self._wrap(topic)
        masters = yield from self._masters(cluster)
        timeout = self.client.config.request_timeout
        for _, addr in masters:
            check_success(
                (yield from call(addr, rq.delete_topic_in_broker(full), timeout)),
                RequestCode.DELETE_TOPIC_IN_BROKER,
            )
        for addr in (yield from self.client.namesrv_list_flow()):
            check_success(
                (yield from call(addr, rq.delete_topic_in_namesrv(full), timeout)),
                RequestCode.DELETE_TOPIC_IN_NAMESRV,
            )
        self.client.forget_route(full)

    def create_group_flow(
        self, group: str, *, cluster: str = DEFAULT_CLUSTER, **settings: object
    ) -> Flow[None]:
        """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP on every master of ``cluster``."""
        body = encode_subscription_group_config(self._wrap(group), **settings)
        masters = yield from self._masters(cluster)
        for _, addr in masters:
            command = rq.update_and_create_subscription_group(body)
            check_success(
                (yield from call(addr, command, self.client.config.request_timeout)), command.code
            )

    def set_consume_mode_flow(
        self,
        topic: str,
        group: str,
        mode: str,
        *,
        pop_share_queue_num: int = -1,
        cluster: str = DEFAULT_CLUSTER,
    ) -> Flow[None]:
        """SET_MESSAGE_REQUEST_MODE on every master of ``cluster``: ``group``
        consumes ``topic`` by ``mode`` (``"PULL"`` or ``"POP"``, any case). The
        topic and the group must exist on the brokers."""
        wire_mode = mode.upper() if isinstance(mode, str) else mode
        body = encode_set_request_mode(
            self._wrap(topic), self._wrap(group), wire_mode, pop_share_queue_num
        )
        masters = yield from self._masters(cluster)
        for _, addr in masters:
            command = rq.set_message_request_mode(body)
            check_success(
                (yield from call(addr, command, self.client.config.request_timeout)), command.code
            )

    def delete_group_flow(self, group: str, *, cluster: str = DEFAULT_CLUSTER) -> Flow[None]:
        masters = yield from self._masters(cluster)
        for _, addr in masters:
            command = rq.delete_subscription_group(self._wrap(group))
            check_success(
                (yield from call(addr, command, self.client.config.request_timeout)), command.code
            )

    def route_flow(self, topic: str) -> Flow[TopicRouteData]:
        # What the name servers say now: no known route stands in for their answer.
        return (yield from self.client.route_flow(self._wrap(topic), force=True, keep_known=False))

    def _queue_addr(self, mq: MessageQueue) -> Flow[tuple[str, str]]:
        topic = self._wrap(mq.topic)
        addr = yield from self.client.master_addr_flow(mq.broker_name, topic)
        return topic, addr

    def max_offset_flow(self, mq: MessageQueue) -> Flow[int]:
        topic, addr = yield from self._queue_addr(mq)
        command = rq.get_max_offset(topic, mq.queue_id, broker_name=mq.broker_name)
        return offset_field((yield from call(addr, command, self.client.config.request_timeout)))

    def min_offset_flow(self, mq: MessageQueue) -> Flow[int]:
        topic, addr = yield from self._queue_addr(mq)
        command = rq.get_min_offset(topic, mq.queue_id, broker_name=mq.broker_name)
        return offset_field((yield from call(addr, command, self.client.config.request_timeout)))

    def search_offset_flow(self, mq: MessageQueue, timestamp_ms: int) -> Flow[int]:
        topic, addr = yield from self._queue_addr(mq)
        command = rq.search_offset_by_timestamp(
            topic, mq.queue_id, timestamp_ms, broker_name=mq.broker_name
        )
        return offset_field((yield from call(addr, command, self.client.config.request_timeout)))

    def topic_offsets_flow(self, topic: str) -> Flow[list[TopicOffset]]:
        """Min and max offsets of every queue of ``topic``."""
        full = self._wrap(topic)
        route = yield from self.client.route_flow(full, force=True)
        out = []
        for mq in subscribe_queues(full, route):
            user_mq = MessageQueue(topic, mq.broker_name, mq.queue_id)
            low = yield from self.min_offset_flow(user_mq)
            high = yield from self.max_offset_flow(user_mq)
            out.append(TopicOffset(user_mq, low, high))
        return out

    def query_consumer_offset_flow(self, group: str, mq: MessageQueue) -> Flow[int | None]:
        """The group's committed offset of ``mq`` (``None`` if it has none)."""
        topic, addr = yield from self._queue_addr(mq)
        command = rq.query_consumer_offset(
            consumer_group=self._wrap(group),
            topic=topic,
            queue_id=mq.queue_id,
            broker_name=mq.broker_name,
        )
        response = yield from call(addr, command, self.client.config.request_timeout)
        if response.code == ResponseCode.QUERY_NOT_FOUND:
            return None
        return offset_field(response)

    def reset_offsets_by_time_flow(
        self, group: str, topic: str, timestamp_ms: int, *, force: bool = True
    ) -> Flow[dict[MessageQueue, int]]:
        """Move ``group``'s offsets of ``topic`` to the first message stored at
        ``timestamp_ms`` or later, on every broker; the new offset of each queue.

        Each master moves the offsets and tells the group's online consumers
        (they restart the queues from there). A broker with no consumer of the
        group online answers CONSUMER_NOT_ONLINE; then, as Java's admin tool
        does, the offsets are searched and written one queue at a time. Without
        ``force`` an offset only moves back.
        """
        full_topic, full_group = self._wrap(topic), self._wrap(group)
        route = yield from self.client.route_flow(full_topic, force=True)
        timeout = self.client.config.request_timeout
        queues = subscribe_queues(full_topic, route)
        moved: dict[MessageQueue, int] = {}
        for broker in route.broker_datas:
            addr = broker.broker_addrs.get(MASTER_ID)
            if addr is None:
                continue
            command = rq.invoke_broker_to_reset_offset(
                topic=full_topic, group=full_group, timestamp_ms=timestamp_ms, force=force
            )
            response = yield from call(addr, command, timeout)
            if response.code == ResponseCode.SUCCESS:
                table = parse_reset_offset_body(response.body) if response.body else {}
                for mq, offset in table.items():
                    moved[MessageQueue(topic, mq.broker_name, mq.queue_id)] = offset
                continue
            if response.code != ResponseCode.CONSUMER_NOT_ONLINE:
                raise error_for_response(response.code, response.remark, request=command.code)
            for mq in queues:
                if mq.broker_name != broker.broker_name:
                    continue
                user_mq = MessageQueue(topic, mq.broker_name, mq.queue_id)
                target = yield from self.search_offset_flow(user_mq, timestamp_ms)
                if not force:
                    current = yield from self.query_consumer_offset_flow(group, user_mq)
                    if current is not None and current < target:
                        moved[user_mq] = current
                        continue
                update = rq.update_consumer_offset(
                    consumer_group=full_group,
                    topic=full_topic,
                    queue_id=mq.queue_id,
                    commit_offset=target,
                    broker_name=mq.broker_name,
                )
                check_success((yield from call(addr, update, timeout)), update.code)
                moved[user_mq] = target
        return moved

    def query_messages_flow(
        self,
        topic: str,
        key: str,
        *,
        max_num: int = 32,
        begin_timestamp: int = 0,
        end_timestamp: int = 2**63 - 1,
        unique_key: bool = False,
    ) -> Flow[list[MessageExt]]:
        """Messages of ``topic`` with ``key`` among their KEYS (or UNIQ_KEY), from every broker."""
        full = self._wrap(topic)
        route = yield from self.client.route_flow(full, force=True)
        found: dict[tuple[str, int], MessageExt] = {}
        errors: list[RocketMQError] = []
        for broker in route.broker_datas:
            addr = broker.select_addr()
            if addr is None:
                continue
            # A UNIQ_KEY is in the key index too, so the query goes without the
            # ``_UNIQUE_KEY_QUERY`` flag (which 4.9 ACL brokers leave out of the
            # signature they check) and the exact match is kept below.
            command = rq.query_message(
                topic=full,
                key=key,
                max_num=max_num,
                begin_timestamp=begin_timestamp,
                end_timestamp=end_timestamp,
            )
            try:
                response = yield from call(addr, command, self.client.config.request_timeout * 5)
            except RocketMQError as exc:
                errors.append(exc)
                continue
            if response.code == ResponseCode.QUERY_NOT_FOUND:
                continue
            check_success(response, command.code)
            for msg in decode_messages(response.body):
                if unique_key:
                    if msg.properties.get("UNIQ_KEY") != key:
                        continue
                elif key not in msg.keys:
                    continue
                msg.broker_name = broker.broker_name
                msg.topic = ns.unwrap(self.client.config.namespace, msg.topic)
                found[(msg.store_host, msg.commit_log_offset)] = msg
        if not found and errors:
            raise errors[0]
        return sorted(found.values(), key=lambda m: (m.store_timestamp, m.commit_log_offset))

    def query_trace_flow(
        self, msg_id: str, trace_topic: str = DEFAULT_TRACE_TOPIC, *, max_num: int = 64
    ) -> Flow[list[TraceRecord]]:
        """The trace records of message ``msg_id`` (its client id, as ``send``
        returns it) in ``trace_topic``, whoever wrote them (this client, Java's, Go's),
        in the order they were stored: as ``mqadmin queryMsgTraceById`` finds them,
        by key in the trace topic's index. A record that cannot be read is skipped
        (logged once per trace message); the others of its message are kept."""
        messages = yield from self.query_messages_flow(trace_topic, msg_id, max_num=max_num)
        records: list[TraceRecord] = []
        for msg in messages:
            unreadable: list[str] = []
            for raw in msg.body.decode(errors="replace").split(RECORD_SEPARATOR):
                if not raw:
                    continue
                try:
                    decoded = decode_trace_data(raw + RECORD_SEPARATOR)
                except RemoteProtocolError as exc:
                    unreadable.append(str(exc))
                    continue
                records.extend(r for r in decoded if r.msg_id == msg_id)
            if unreadable:
                log.warning(
                    "trace message %s in %s: %d records unreadable, the first: %s",
                    msg.msg_id,
                    trace_topic,
                    len(unreadable),
                    unreadable[0],
                    extra={"rocketmq_topic": trace_topic, "rocketmq_msg_id": msg.msg_id},
                )
        return records

    def _group_brokers_flow(self, group: str) -> Flow[list[tuple[str, str]]]:
        """(name, address) of each broker that knows ``group`` (by its retry topic's
        route, as Java's admin finds them): the master, else another member."""
        retry = ns.retry_topic(group)
        try:
            route = yield from self.client.route_flow(retry, keep_known=False)
        except RouteNotFoundError:
            raise RouteNotFoundError(
                f"group {ns.unwrap(self.client.config.namespace, group)!r} is known to no "
                "broker (it has no retry topic: it never consumed, or does not exist)"
            ) from None
        out = []
        for data in sorted(route.broker_datas, key=lambda d: d.broker_name):
            addr = data.broker_addrs.get(MASTER_ID) or next(iter(data.broker_addrs.values()), None)
            if addr is not None:
                out.append((data.broker_name, addr))
        return out

    def consumer_progress_flow(self, group: str, topic: str | None = None) -> Flow[ConsumeStats]:
        """``group``'s progress on each queue (of ``topic`` only, when given):
        GET_CONSUME_STATS to each broker of the group, merged, as ``mqadmin
        consumerProgress`` shows it. Topic names without the namespace."""
        full = self._wrap(group)
        timeout = self.client.config.request_timeout
        table: dict[MessageQueue, OffsetWrapper] = {}
        tps = 0.0
        namespace = self.client.config.namespace
        for _, addr in (yield from self._group_brokers_flow(full)):
            command = rq.get_consume_stats(full, self._wrap(topic) if topic else None)
            stats = parse_consume_stats(
                check_success((yield from call(addr, command, timeout)), command.code).body or b"{}"
            )
            tps += stats.consume_tps
            for mq, offsets in stats.offset_table.items():
                user = MessageQueue(ns.unwrap(namespace, mq.topic), mq.broker_name, mq.queue_id)
                table[user] = offsets
        return ConsumeStats(dict(sorted(table.items())), tps)

    def consumer_connections_flow(self, group: str) -> Flow[ConsumerConnection]:
        """``group``'s clients and subscriptions (GET_CONSUMER_CONNECTION_LIST to a
        broker of the group), as ``mqadmin consumerConnection`` shows them."""
        full = self._wrap(group)
        body = yield from self._first_answer_flow(
            group, lambda: rq.get_consumer_connection_list(full), self.client.config.request_timeout
        )
        return parse_consumer_connection(body)

    def consumer_running_info_flow(self, group: str, client_id: str) -> Flow[ConsumerRunningInfo]:
        """What consumer ``client_id`` of ``group`` says of itself (its settings,
        subscriptions and queues), asked through a broker that knows it
        (GET_CONSUMER_RUNNING_INFO, as ``mqadmin consumerStatus``)."""
        full = self._wrap(group)
        # The broker relays the question to the client: give it that long, and more.
        timeout = 2 * self.client.config.request_timeout
        body = yield from self._first_answer_flow(
            group, lambda: rq.get_consumer_running_info(full, client_id), timeout
        )
        return parse_consumer_running_info(body)

    def _first_answer_flow(
        self, group: str, request: Callable[[], RemotingCommand], timeout: float
    ) -> Flow[bytes]:
        """The body of the first broker of ``group`` (the user's name) that answers
        ``request()`` (a command made for each broker) with one; else the last
        broker's error."""
        error: RocketMQError | None = None
        for _, addr in (yield from self._group_brokers_flow(self._wrap(group))):
            command = request()
            response = yield from call(addr, command, timeout)
            if response.code == ResponseCode.SUCCESS and response.body:
                return response.body
            error = error_for_response(response.code, response.remark, request=command.code)
        raise error or RouteNotFoundError(f"group {group!r} is known to no broker")

    def view_message_flow(self, msg_id: str, topic: str | None = None) -> Flow[MessageExt]:
        """A message by id: an offset message id directly; a UNIQ_KEY through ``topic``'s index."""
        try:
            decoded = decode_offset_msg_id(msg_id)
        except (RocketMQError, ValueError):
            decoded = None
        if decoded is not None and 0 < decoded.port < 65536:
            host, port = decoded.host, decoded.port
            addr = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
            command = rq.view_message_by_id(decoded.offset)
            try:
                response = yield from call(addr, command, self.client.config.request_timeout)
            except RocketMQError:
                # A UNIQ_KEY also reads as an offset id, of a host that is not a broker.
                if topic is None:
                    raise
            else:
                if response.code == ResponseCode.SUCCESS:
                    msg = decode_messages(response.body)[0]
                    msg.topic = ns.unwrap(self.client.config.namespace, msg.topic)
                    msg.broker_name = self.client.broker_name_of(addr) or ""
                    return msg
                if topic is None:
                    raise error_for_response(response.code, response.remark, request=command.code)
        if topic is None:
            raise InvalidArgumentError(
                f"{msg_id!r} is not an offset message id; give the topic to look up a UNIQ_KEY"
            )
        found = yield from self.query_messages_flow(topic, msg_id, unique_key=True, max_num=1)
        if not found:
            raise QueryNotFoundError(ResponseCode.QUERY_NOT_FOUND, f"no message {msg_id!r}")
        return found[0]
