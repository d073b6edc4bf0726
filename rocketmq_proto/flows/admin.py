"""Administration flows: topics, groups, offsets, routes, looking up messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from rocketmq_proto.flows.effects import Flow, call
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message import namespace as ns
from rocketmq_proto.message.codec import decode_messages
from rocketmq_proto.message.ids import decode_offset_msg_id
from rocketmq_proto.message.model import MessageExt, validate_topic
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import (
    ConsumeMessageDirectlyResult,
    ConsumerConnection,
    ConsumerRunningInfo,
    ConsumeStats,
    OffsetWrapper,
    SubscriptionGroupConfig,
    encode_properties_text,
    encode_subscription_group_config,
    parse_consume_message_directly_result,
    parse_consume_stats,
    parse_consumer_connection,
    parse_consumer_id_list,
    parse_consumer_running_info,
    parse_kv_table,
    parse_properties_text,
    parse_reset_offset_body,
    parse_subscription_groups,
    parse_topic_list,
    parse_topic_stats,
)
from rocketmq_proto.wire.codes import Perm, PullSysFlag, RequestCode, ResponseCode
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

#: A 5.x broker's remark on an UPDATE_CONSUMER_OFFSET it ignored (answered SUCCESS):
#: the queue's offset was reset on the broker's side and no consumer pulled since.
_RESET_PENDING: Final = "Offset has been previously reset"

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


#: The group Java's admin tools pull with (``mqadmin queryMsgByOffset``).
TOOLS_CONSUMER_GROUP = "TOOLS_CONSUMER"

#: Consumer groups every broker has from the start (Java's predefined groups).
PREDEFINED_GROUPS = frozenset(
    {
        "DEFAULT_CONSUMER",
        "DEFAULT_PRODUCER",
        "TOOLS_CONSUMER",
        "SCHEDULE_CONSUMER",
        "FILTERSRV_CONSUMER",
        "__MONITOR_CONSUMER",
        "CLIENT_INNER_PRODUCER",
        "SELF_TEST_P_GROUP",
        "SELF_TEST_C_GROUP",
        "CID_ONS-HTTP-PROXY",
        "CID_ONSAPI_PERMISSION",
        "CID_ONSAPI_OWNER",
        "CID_ONSAPI_PULL",
    }
)

#: Prefix of the consumer groups the brokers make for themselves.
SYSTEM_GROUP_PREFIX = "CID_RMQ_SYS_"

#: How long a broker waits for a consumer it hands a message to (Java's broker: 10 s).
CONSUME_DIRECTLY_BROKER_WAIT = 10.0


def is_system_group(group: str) -> bool:
    """A group the brokers define themselves (predefined, or ``CID_RMQ_SYS_...``)."""
    return group in PREDEFINED_GROUPS or group.startswith(SYSTEM_GROUP_PREFIX)


@dataclass(frozen=True, slots=True)
class TopicOffset:
    """A queue's offsets: messages ``min_offset`` <= offset < ``max_offset`` are
    stored; ``last_update_timestamp`` is when the last of them was stored (epoch
    ms; 0 for an empty queue, or a broker that does not tell)."""

    message_queue: MessageQueue
    min_offset: int
    max_offset: int
    last_update_timestamp: int = 0


_FIRST_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """One member of a cluster and its runtime figures (GET_BROKER_RUNTIME_INFO),
    as ``mqadmin clusterList`` shows them."""

    cluster: str
    broker_name: str
    #: 0 for a master.
    broker_id: int
    addr: str
    #: The broker's runtime table (Java's names and texts); empty if it did not answer.
    stats: dict[str, str]
    #: Why ``stats`` is empty: the error asking for them, else ``None``.
    error: str | None = None

    def _number(self, key: str) -> float:
        found = _FIRST_NUMBER.search(self.stats.get(key, ""))
        return float(found.group()) if found else 0.0

    @property
    def version(self) -> str:
        return self.stats.get("brokerVersionDesc", "")

    @property
    def in_tps(self) -> float:
        """Messages stored per second (the last 10 s; ``putTps``)."""
        return self._number("putTps")

    @property
    def out_tps(self) -> float:
        """Messages delivered to consumers per second (``getTransferredTps``)."""
        return self._number("getTransferredTps")

    @property
    def in_today(self) -> int:
        """Messages stored since midnight."""
        return int(self._number("msgPutTotalTodayNow") - self._number("msgPutTotalTodayMorning"))

    @property
    def out_today(self) -> int:
        """Messages delivered since midnight."""
        return int(self._number("msgGetTotalTodayNow") - self._number("msgGetTotalTodayMorning"))


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
        """Min and max offsets and last store time of every queue of ``topic``, as
        ``mqadmin topicStatus`` shows them: GET_TOPIC_STATS_INFO to each broker
        (a broker that does not serve it is asked queue by queue)."""
        full = self._wrap(topic)
        route = yield from self.client.route_flow(full, force=True)
        timeout = self.client.config.request_timeout
        stats: dict[str, dict[int, TopicOffset]] = {}
        for broker in route.broker_datas:
            addr = broker.select_addr()
            if addr is None:
                continue
            command = rq.get_topic_stats_info(full)
            response = yield from call(addr, command, timeout)
            if response.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                continue
            table = parse_topic_stats(check_success(response, command.code).body or b"{}")
            stats[broker.broker_name] = {
                mq.queue_id: TopicOffset(
                    MessageQueue(topic, broker.broker_name, mq.queue_id),
                    offsets.min_offset,
                    offsets.max_offset,
                    offsets.last_update_timestamp,
                )
                for mq, offsets in table.offset_table.items()
            }
        out = []
        for mq in subscribe_queues(full, route):
            known = stats.get(mq.broker_name, {}).get(mq.queue_id)
            if known is None:
                user_mq = MessageQueue(topic, mq.broker_name, mq.queue_id)
                low = yield from self.min_offset_flow(user_mq)
                high = yield from self.max_offset_flow(user_mq)
                known = TopicOffset(user_mq, low, high)
            out.append(known)
        return out

    def list_topics_flow(self) -> Flow[list[str]]:
        """Every topic the name servers know (GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
        as ``mqadmin topicList``), sorted; with a namespace, only its topics,
        without it."""
        response = yield from self.client.namesrv_call_flow(rq.get_all_topic_list_from_namesrv)
        code = RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER
        names = parse_topic_list(check_success(response, code).body or b"{}")
        namespace = self.client.config.namespace
        if namespace:
            names = [ns.unwrap(namespace, n) for n in names if ns.unwrap(namespace, n) != n]
        return sorted(set(names))

    def list_groups_flow(
        self, *, cluster: str | None = None, include_system: bool = False
    ) -> Flow[list[SubscriptionGroupConfig]]:
        """The consumer groups of the masters of ``cluster`` (every cluster when
        ``None``), merged by name (GET_ALL_SUBSCRIPTIONGROUP_CONFIG to each, as
        ``mqadmin consumerGroupList`` reads them), sorted; the brokers' own groups
        only with ``include_system``. With a namespace, only its groups, without it."""
        masters = yield from self._all_masters(cluster)
        timeout = self.client.config.request_timeout
        namespace = self.client.config.namespace
        merged: dict[str, SubscriptionGroupConfig] = {}
        for _, addr in masters:
            command = rq.get_all_subscription_group_config()
            response = check_success((yield from call(addr, command, timeout)), command.code)
            for name, config in parse_subscription_groups(response.body or b"{}").items():
                if not include_system and is_system_group(name):
                    continue
                if namespace:
                    bare = ns.unwrap(namespace, name)
                    if bare == name:
                        continue
                    config = replace(config, group_name=bare)
                merged.setdefault(config.group_name, config)
        return [merged[name] for name in sorted(merged)]

    def _all_masters(self, cluster: str | None) -> Flow[list[tuple[str, str]]]:
        if cluster is not None:
            return (yield from self._masters(cluster))
        info = yield from self.client.cluster_info_flow()
        out = []
        for name in sorted(info.cluster_addr_table):
            for broker in info.cluster_brokers(name):
                addr = broker.broker_addrs.get(MASTER_ID)
                if addr is not None:
                    out.append((broker.broker_name, addr))
        return out

    def broker_addr_flow(self, broker: str) -> Flow[str]:
        """``broker`` if it is an address (``host:port``), else the address of the
        master named ``broker`` in the name servers' cluster info."""
        if ":" in broker:
            return broker
        info = yield from self.client.cluster_info_flow()
        data = info.broker_addr_table.get(broker)
        addr = data.broker_addrs.get(MASTER_ID) if data is not None else None
        if addr is None:
            known = ", ".join(sorted(info.broker_addr_table)) or "none"
            raise RouteNotFoundError(f"no broker master named {broker!r} (brokers: {known})")
        return addr

    def broker_config_flow(self, broker: str) -> Flow[dict[str, str]]:
        """A broker's settings (GET_BROKER_CONFIG, as ``mqadmin getBrokerConfig``)."""
        addr = yield from self.broker_addr_flow(broker)
        command = rq.get_broker_config()
        response = yield from call(addr, command, self.client.config.request_timeout)
        body = check_success(response, command.code).body
        return dict(sorted(parse_properties_text(body or b"", what=f"config of {addr}").items()))

    def update_broker_config_flow(self, broker: str, settings: Mapping[str, object]) -> Flow[None]:
        """Change settings of a running broker (UPDATE_BROKER_CONFIG, as ``mqadmin
        updateBrokerConfig``); the broker refuses some (NO_PERMISSION)."""
        body = encode_properties_text(settings)
        addr = yield from self.broker_addr_flow(broker)
        command = rq.update_broker_config(body)
        check_success(
            (yield from call(addr, command, self.client.config.request_timeout)), command.code
        )

    def broker_runtime_stats_flow(self, broker: str) -> Flow[dict[str, str]]:
        """A broker's runtime figures (GET_BROKER_RUNTIME_INFO, as ``mqadmin
        brokerStatus``): Java's names, values as the broker wrote them."""
        addr = yield from self.broker_addr_flow(broker)
        command = rq.get_broker_runtime_info()
        response = yield from call(addr, command, self.client.config.request_timeout)
        return parse_kv_table(check_success(response, command.code).body or b"{}")

    def cluster_list_flow(self, cluster: str | None = None) -> Flow[list[BrokerStatus]]:
        """Every member of ``cluster`` (every cluster when ``None``) with its runtime
        figures, as ``mqadmin clusterList``; a member that does not answer is listed
        with the error and no figures."""
        info = yield from self.client.cluster_info_flow()
        names = sorted(info.cluster_addr_table) if cluster is None else [cluster]
        if cluster is not None and cluster not in info.cluster_addr_table:
            raise RouteNotFoundError(
                f"no cluster {cluster!r} (clusters: {', '.join(sorted(info.cluster_addr_table))})"
            )
        timeout = self.client.config.request_timeout
        rows = []
        for name in names:
            for broker in info.cluster_brokers(name):
                for broker_id, addr in sorted(broker.broker_addrs.items()):
                    command = rq.get_broker_runtime_info()
                    try:
                        response = yield from call(addr, command, timeout)
                        table = parse_kv_table(check_success(response, command.code).body or b"{}")
                    except RocketMQError as exc:
                        rows.append(
                            BrokerStatus(name, broker.broker_name, broker_id, addr, {}, str(exc))
                        )
                        continue
                    rows.append(BrokerStatus(name, broker.broker_name, broker_id, addr, table))
        return rows

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
        ``timestamp_ms`` or later (-1: the end of each queue), on every broker;
        the new offset of each queue.

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
                if timestamp_ms < 0:  # the brokers' own reading: the end of the queue
                    target = yield from self.max_offset_flow(user_mq)
                else:
                    target = yield from self.search_offset_flow(user_mq, timestamp_ms)
                if not force:
                    current = yield from self.query_consumer_offset_flow(group, user_mq)
                    if current is not None and current < target:
                        moved[user_mq] = current
                        continue
                yield from self._write_offset_flow(addr, full_group, full_topic, mq, target)
                moved[user_mq] = target
        return moved

    def _write_offset_flow(
        self, addr: str, group: str, topic: str, mq: MessageQueue, offset: int
    ) -> Flow[None]:
        """UPDATE_CONSUMER_OFFSET of ``group`` (full name) for ``mq`` of ``topic``."""
        update = rq.update_consumer_offset(
            consumer_group=group,
            topic=topic,
            queue_id=mq.queue_id,
            commit_offset=offset,
            broker_name=mq.broker_name,
        )
        response = yield from call(addr, update, self.client.config.request_timeout)
        if response.code == ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST:
            name = ns.unwrap(self.client.config.namespace, group)
            raise error_for_response(
                response.code,
                f"group {name!r} does not exist on {mq.broker_name} ({addr}): create it "
                "first (create_group), then write its offsets",
                request=update.code,
            )
        check_success(response, update.code)
        if response.remark == _RESET_PENDING:
            # A 5.x broker ignores commits to a queue whose offset was reset on its
            # side until a consumer pulls it, and says so in a SUCCESS: set the
            # offset as a server-side reset of that one queue instead.
            reset = rq.invoke_broker_to_reset_offset(
                topic=topic, group=group, timestamp_ms=-1, queue_id=mq.queue_id, offset=offset
            )
            answer = yield from call(addr, reset, self.client.config.request_timeout)
            check_success(answer, reset.code)

    def set_offsets_flow(
        self, group: str, topic: str, offsets: Mapping[MessageQueue, int]
    ) -> Flow[dict[MessageQueue, int]]:
        """Write ``offsets`` (queues of ``topic``) as ``group``'s committed offsets
        (UPDATE_CONSUMER_OFFSET to each queue's master). The group must have no
        consumer online: those keep their own offsets and would write them back
        (for them, reset by time, which they are told of)."""
        for mq, offset in offsets.items():
            if mq.topic != topic:
                raise InvalidArgumentError(f"queue {mq} is not a queue of topic {topic!r}")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise InvalidArgumentError(
                    f"offset of {mq} must be an integer >= 0, got {offset!r}"
                )
        full_topic, full_group = self._wrap(topic), self._wrap(group)
        route = yield from self.client.route_flow(full_topic, force=True)
        timeout = self.client.config.request_timeout
        known = {(mq.broker_name, mq.queue_id) for mq in subscribe_queues(full_topic, route)}
        for mq in offsets:
            if (mq.broker_name, mq.queue_id) not in known:
                raise InvalidArgumentError(f"topic {topic!r} has no queue {mq}")
        for broker in route.broker_datas:
            addr = broker.select_addr()
            if addr is None:
                continue
            command = rq.get_consumer_list_by_group(full_group)
            response = yield from call(addr, command, timeout)
            online = parse_consumer_id_list(response.body) if response.code == 0 else []
            if online:
                raise InvalidArgumentError(
                    f"group {group!r} has consumers online ({', '.join(sorted(online))}): "
                    "they would write their own offsets back; stop them, or reset by time"
                )
        done: dict[MessageQueue, int] = {}
        for mq, offset in sorted(offsets.items()):
            addr = yield from self.client.master_addr_flow(mq.broker_name, full_topic)
            yield from self._write_offset_flow(addr, full_group, full_topic, mq, offset)
            done[mq] = offset
        return done

    def clone_offsets_flow(
        self, src_group: str, dst_group: str, topic: str
    ) -> Flow[dict[MessageQueue, int]]:
        """Give ``dst_group`` the committed offsets ``src_group`` has on ``topic``'s
        queues, as ``mqadmin cloneGroupOffset`` does: the source's progress read
        (GET_CONSUME_STATS), each offset written for the destination
        (UPDATE_CONSUMER_OFFSET). The offsets written, by queue."""
        stats = yield from self.consumer_progress_flow(src_group, topic)
        full_topic, full_dst = self._wrap(topic), self._wrap(dst_group)
        done: dict[MessageQueue, int] = {}
        for mq, progress in stats.offset_table.items():
            if mq.topic != topic or progress.consumer_offset < 0:
                continue
            addr = yield from self.client.master_addr_flow(mq.broker_name, full_topic)
            offset = progress.consumer_offset
            yield from self._write_offset_flow(addr, full_dst, full_topic, mq, offset)
            done[mq] = offset
        return done

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

    def message_at_flow(self, mq: MessageQueue, offset: int) -> Flow[MessageExt]:
        """The message at ``offset`` of queue ``mq``: one message pulled there by
        Java's tools group (as ``mqadmin queryMsgByOffset``); no offset is committed.
        :class:`QueryNotFoundError` if the queue holds none there."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"a queue offset is an integer >= 0, got {offset!r}")
        topic, addr = yield from self._queue_addr(mq)
        command = rq.pull_message(
            consumer_group=TOOLS_CONSUMER_GROUP,
            topic=topic,
            queue_id=mq.queue_id,
            queue_offset=offset,
            max_msg_nums=1,
            sys_flag=int(PullSysFlag.SUBSCRIPTION),
            commit_offset=0,
            suspend_timeout_millis=0,
            subscription="*",
            sub_version=0,
            broker_name=mq.broker_name,
        )
        response = yield from call(addr, command, self.client.config.request_timeout)
        if response.code == ResponseCode.SUCCESS:
            for msg in decode_messages(response.body):
                if msg.queue_offset == offset:
                    msg.topic = ns.unwrap(self.client.config.namespace, msg.topic)
                    msg.broker_name = mq.broker_name
                    return msg
        elif response.code not in (
            ResponseCode.PULL_NOT_FOUND,
            ResponseCode.PULL_RETRY_IMMEDIATELY,
            ResponseCode.PULL_OFFSET_MOVED,
        ):
            raise error_for_response(response.code, response.remark, request=command.code)
        low = response.ext_fields.get("minOffset", "?")
        high = response.ext_fields.get("maxOffset", "?")
        raise QueryNotFoundError(
            ResponseCode.QUERY_NOT_FOUND,
            f"no message at offset {offset} of {mq} (it holds offsets {low} to {high}, exclusive)",
        )

    def consume_message_directly_flow(
        self,
        group: str,
        client_id: str,
        msg_id: str,
        topic: str | None = None,
        *,
        timeout: float | None = None,
    ) -> Flow[ConsumeMessageDirectlyResult]:
        """Hand message ``msg_id`` (an offset id, or with ``topic`` a UNIQ_KEY) to
        consumer ``client_id`` of ``group`` once more, through the broker storing
        it (CONSUME_MESSAGE_DIRECTLY, as ``mqadmin queryMsgById -g -d``); what the
        consumer answered. Its offsets do not move. The broker waits 10 s for the
        consumer; ``timeout`` (default: that, and the request timeout) bounds it all."""
        msg = yield from self.view_message_flow(msg_id, topic)
        command = rq.consume_message_directly(
            consumer_group=self._wrap(group),
            client_id=client_id,
            msg_id=msg.offset_msg_id,
            topic=self._wrap(msg.topic),
        )
        wait = (
            timeout
            if timeout is not None
            else CONSUME_DIRECTLY_BROKER_WAIT + self.client.config.request_timeout
        )
        response = yield from call(msg.store_host, command, wait)
        check_success(response, command.code)
        if not response.body:
            raise RemoteProtocolError(
                f"CONSUME_MESSAGE_DIRECTLY answered without a result (client {client_id})"
            )
        return parse_consume_message_directly_result(response.body)
