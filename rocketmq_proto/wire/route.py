"""Topic routes and cluster info from name servers, and the queues they imply.

A name server answers GET_ROUTEINFO_BY_TOPIC (105) with a ``TopicRouteData``
body and GET_BROKER_CLUSTER_INFO (106) with a ``ClusterInfo`` body. Both are
fastjson output: routes are standard JSON only when the client announces
version 4.9.4 or later (or asks with ``acceptStandardJsonOnly``), and cluster
info never is (broker ids are written as unquoted integer keys). The parsers
here read both forms and check every field's type.

From a route, :func:`publish_queues` and :func:`subscribe_queues` derive the
queues a producer sends to and a consumer may be assigned, exactly as Java's
``MQClientInstance.topicRouteData2TopicPublishInfo`` and
``topicRouteData2TopicSubscribeInfo`` do, static (logical-queue) topics included.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rocketmq_proto.wire import jsonlenient as jl
from rocketmq_proto.wire.codes import Perm
from rocketmq_proto.wire.errors import RemoteProtocolError

#: Broker id of a master in ``brokerAddrs``.
MASTER_ID: Final = 0

#: Most queues one broker may declare for one topic, and most queues one route
#: may declare in all. Not server limits: guards so that a corrupt route cannot
#: make a client build millions of queue objects.
MAX_QUEUE_NUMS: Final = 65536
MAX_ROUTE_QUEUES: Final = 262144

#: Scope of a static topic's global logical queues, and the broker name prefix
#: Java gives logical queues (``TopicQueueMappingUtils.getMockBrokerName``).
METADATA_SCOPE_GLOBAL: Final = "__global__"
LOGICAL_QUEUE_MOCK_BROKER_PREFIX: Final = "__syslo__"
#: Endpoint of a logical queue that no broker currently hosts.
LOGICAL_QUEUE_MOCK_BROKER_NAME_NOT_EXIST: Final = "__syslo__none__"


def java_order_key(text: str) -> str:
    """A key that sorts strings the way Java's ``String.compareTo`` does.

    Java compares UTF-16 code units, Python code points: the two orders differ
    only between a character above U+FFFF (a surrogate pair in Java, sorting
    below U+E000) and one in U+E000..U+FFFF. Clients of one group must sort
    queues and client ids identically to agree on a rebalance, so the key spells
    such strings as their UTF-16 code units.
    """
    if text.isascii() or max(text) < "\U00010000":
        return text
    data = text.encode("utf-16-be", "surrogatepass")
    return "".join(map(chr, struct.unpack(f">{len(data) // 2}H", data)))


@dataclass(frozen=True, slots=True)
class MessageQueue:
    """One queue of a topic on one broker (Java ``MessageQueue``).

    Hashable, and ordered as Java orders them: by topic, broker name, queue id.
    """

    topic: str
    broker_name: str
    queue_id: int

    def _key(self) -> tuple[str, str, int]:
        return (java_order_key(self.topic), java_order_key(self.broker_name), self.queue_id)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, MessageQueue):
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, MessageQueue):
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, MessageQueue):
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, MessageQueue):
            return NotImplemented
        return self._key() >= other._key()

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object Java writes for a queue (fastjson orders keys by name)."""
        return {"brokerName": self.broker_name, "queueId": self.queue_id, "topic": self.topic}

    @classmethod
    def from_json_dict(cls, obj: Any, what: str = "message queue") -> MessageQueue:
        """Read a queue object (also one used as a map key); bad fields raise
        :class:`RemoteProtocolError`."""
        obj = jl.as_object(obj, what)
        return cls(
            jl.get_str(obj, "topic", what),
            jl.get_str(obj, "brokerName", what),
            jl.get_int(obj, "queueId", what),
        )


@dataclass(frozen=True, slots=True)
class QueueData:
    """One broker's queues of a topic, as a route lists them."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    @property
    def readable(self) -> bool:
        return bool(self.perm & Perm.READ)

    @property
    def writable(self) -> bool:
        return bool(self.perm & Perm.WRITE)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "brokerName": self.broker_name,
            "perm": self.perm,
            "readQueueNums": self.read_queue_nums,
            "topicSysFlag": self.topic_sys_flag,
            "writeQueueNums": self.write_queue_nums,
        }


@dataclass(frozen=True, slots=True)
class BrokerData:
    """One broker (a master and its slaves) by name, with each member's address."""

    cluster: str
    broker_name: str
    broker_addrs: dict[int, str]
    zone_name: str | None = None
    enable_acting_master: bool = False

    @property
    def master_addr(self) -> str | None:
        """The master's address (broker id 0), or None when no master is registered."""
        return self.broker_addrs.get(MASTER_ID)

    def select_addr(self) -> str | None:
        """The master's address, else the lowest-id slave's (Java picks a random
        slave; a fixed choice keeps the core deterministic). None if no member."""
        master = self.broker_addrs.get(MASTER_ID)
        if master is not None:
            return master
        if not self.broker_addrs:
            return None
        return self.broker_addrs[min(self.broker_addrs)]

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "brokerAddrs": dict(sorted(self.broker_addrs.items())),
            "brokerName": self.broker_name,
            "cluster": self.cluster,
            "enableActingMaster": self.enable_acting_master,
        }
        if self.zone_name is not None:
            out["zoneName"] = self.zone_name
        return out


@dataclass(frozen=True, slots=True)
class TopicQueueMappingInfo:
    """One broker's share of a static topic's logical queues (RocketMQ 5)."""

    topic: str | None
    scope: str | None
    total_queues: int
    bname: str | None
    epoch: int
    dirty: bool
    curr_id_map: dict[int, int]  # logical queue id -> physical queue id on ``bname``

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "currIdMap": dict(sorted(self.curr_id_map.items())),
            "dirty": self.dirty,
            "epoch": self.epoch,
            "totalQueues": self.total_queues,
        }
        for key, value in (("bname", self.bname), ("scope", self.scope), ("topic", self.topic)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class TopicRouteData:
    """A topic's route: which brokers hold its queues, and where they listen."""

    queue_datas: tuple[QueueData, ...] = ()
    broker_datas: tuple[BrokerData, ...] = ()
    order_topic_conf: str | None = None
    filter_server_table: dict[str, tuple[str, ...]] = field(default_factory=dict)
    topic_queue_mapping_by_broker: dict[str, TopicQueueMappingInfo] = field(default_factory=dict)

    def broker_data(self, broker_name: str) -> BrokerData | None:
        """The broker named ``broker_name`` in this route (the first, as Java looks)."""
        for broker in self.broker_datas:
            if broker.broker_name == broker_name:
                return broker
        return None

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "brokerDatas": [b.to_json_dict() for b in self.broker_datas],
            "filterServerTable": {k: list(v) for k, v in self.filter_server_table.items()},
            "queueDatas": [q.to_json_dict() for q in self.queue_datas],
        }
        if self.order_topic_conf is not None:
            out["orderTopicConf"] = self.order_topic_conf
        if self.topic_queue_mapping_by_broker:
            out["topicQueueMappingByBroker"] = {
                k: v.to_json_dict() for k, v in self.topic_queue_mapping_by_broker.items()
            }
        return out


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """GET_BROKER_CLUSTER_INFO's answer: every broker, and which cluster holds which."""

    broker_addr_table: dict[str, BrokerData] = field(default_factory=dict)
    cluster_addr_table: dict[str, frozenset[str]] = field(default_factory=dict)

    def cluster_brokers(self, cluster: str) -> list[BrokerData]:
        """The brokers of ``cluster`` that the table describes, sorted by name."""
        names = self.cluster_addr_table.get(cluster, frozenset())
        found = [self.broker_addr_table[n] for n in names if n in self.broker_addr_table]
        return sorted(found, key=lambda b: java_order_key(b.broker_name))

    def cluster_addrs(self, cluster: str) -> list[str]:
        """Every member address of every broker in ``cluster`` (Java's
        ``retrieveAllAddrByCluster``)."""
        return [
            addr
            for broker in self.cluster_brokers(cluster)
            for _, addr in sorted(broker.broker_addrs.items())
        ]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "brokerAddrTable": {k: v.to_json_dict() for k, v in self.broker_addr_table.items()},
            "clusterAddrTable": {k: sorted(v) for k, v in self.cluster_addr_table.items()},
        }


# ------------------------------------------------------------------- parsing


def _queue_nums(obj: Mapping[Any, Any], key: str, what: str) -> int:
    value = jl.get_int(obj, key, what)
    if value > MAX_QUEUE_NUMS:
        raise RemoteProtocolError(f"{what}: {key} is {value}, more than {MAX_QUEUE_NUMS}")
    return value


def _parse_queue_data(value: Any, what: str) -> QueueData:
    obj = jl.as_object(value, what)
    # Servers before 4.9 spelled the flag "topicSynFlag".
    flag_key = "topicSysFlag" if "topicSysFlag" in obj else "topicSynFlag"
    return QueueData(
        broker_name=jl.get_str(obj, "brokerName", what),
        read_queue_nums=_queue_nums(obj, "readQueueNums", what),
        write_queue_nums=_queue_nums(obj, "writeQueueNums", what),
        perm=jl.get_int(obj, "perm", what),
        topic_sys_flag=jl.get_int(obj, flag_key, what),
    )


def _parse_int_keyed(value: Any, what: str, *, bits: int) -> dict[int, Any]:
    """A Java ``Map<Long|Integer, V>``: keys arrive bare (``{0:...}``) or quoted."""
    out: dict[int, Any] = {}
    for key, item in jl.as_object(value, what).items():
        out[jl.as_int(key, f"{what} key", bits=bits)] = item
    return out


def _parse_broker_data(value: Any, what: str) -> BrokerData:
    obj = jl.as_object(value, what)
    addrs_what = f"{what}: brokerAddrs"
    raw = obj.get("brokerAddrs")
    addrs = {} if raw is None else _parse_int_keyed(raw, addrs_what, bits=64)
    return BrokerData(
        cluster=jl.get_opt_str(obj, "cluster", what) or "",
        broker_name=jl.get_str(obj, "brokerName", what),
        broker_addrs={k: jl.as_str(v, f"{addrs_what}[{k}]") for k, v in addrs.items()},
        zone_name=jl.get_opt_str(obj, "zoneName", what),
        enable_acting_master=jl.get_bool(obj, "enableActingMaster", what),
    )


def _parse_mapping_info(value: Any, what: str) -> TopicQueueMappingInfo:
    obj = jl.as_object(value, what)
    raw = obj.get("currIdMap")
    ids = {} if raw is None else _parse_int_keyed(raw, f"{what}: currIdMap", bits=32)
    total = _queue_nums(obj, "totalQueues", what)
    return TopicQueueMappingInfo(
        topic=jl.get_opt_str(obj, "topic", what),
        scope=jl.get_opt_str(obj, "scope", what),
        total_queues=total,
        bname=jl.get_opt_str(obj, "bname", what),
        epoch=jl.get_int(obj, "epoch", what, bits=64),
        dirty=jl.get_bool(obj, "dirty", what),
        curr_id_map={k: jl.as_int(v, f"{what}: currIdMap[{k}]") for k, v in ids.items()},
    )


def route_from_json(doc: Any, what: str = "topic route") -> TopicRouteData:
    """A :class:`TopicRouteData` from an already parsed JSON document."""
    obj = jl.as_object(doc, what)
    queue_datas = tuple(
        _parse_queue_data(item, f"{what}: queueDatas[{i}]")
        for i, item in enumerate(jl.get_list(obj, "queueDatas", what))
    )
    broker_datas = tuple(
        _parse_broker_data(item, f"{what}: brokerDatas[{i}]")
        for i, item in enumerate(jl.get_list(obj, "brokerDatas", what))
    )
    filter_servers: dict[str, tuple[str, ...]] = {}
    for addr, servers in jl.get_object(obj, "filterServerTable", what).items():
        key_what = f"{what}: filterServerTable"
        servers_what = f"{key_what}[{addr!r}]"
        filter_servers[jl.as_str(addr, f"{key_what} key")] = tuple(
            jl.as_str(s, servers_what)
            for s in ([] if servers is None else jl.as_list(servers, servers_what))
        )
    mappings = {
        jl.as_str(name, f"{what}: topicQueueMappingByBroker key"): _parse_mapping_info(
            info, f"{what}: topicQueueMappingByBroker[{name!r}]"
        )
        for name, info in jl.get_object(obj, "topicQueueMappingByBroker", what).items()
    }
    total = sum(max(q.read_queue_nums, q.write_queue_nums, 0) for q in queue_datas)
    total += sum(max(m.total_queues, 0) for m in mappings.values())
    if total > MAX_ROUTE_QUEUES:
        raise RemoteProtocolError(f"{what}: declares {total} queues, more than {MAX_ROUTE_QUEUES}")
    return TopicRouteData(
        queue_datas=queue_datas,
        broker_datas=broker_datas,
        order_topic_conf=jl.get_opt_str(obj, "orderTopicConf", what),
        filter_server_table=filter_servers,
        topic_queue_mapping_by_broker=mappings,
    )


def parse_topic_route(body: bytes) -> TopicRouteData:
    """The body of GET_ROUTEINFO_BY_TOPIC's answer, standard JSON or not."""
    return route_from_json(jl.loads(body, what="topic route"))


def parse_cluster_info(body: bytes) -> ClusterInfo:
    """The body of GET_BROKER_CLUSTER_INFO's answer (unquoted integer keys and all)."""
    what = "cluster info"
    obj = jl.as_object(jl.loads(body, what=what), what)
    brokers: dict[str, BrokerData] = {}
    for name, data in jl.get_object(obj, "brokerAddrTable", what).items():
        key = jl.as_str(name, f"{what}: brokerAddrTable key")
        brokers[key] = _parse_broker_data(data, f"{what}: brokerAddrTable[{key!r}]")
    clusters: dict[str, frozenset[str]] = {}
    for name, members in jl.get_object(obj, "clusterAddrTable", what).items():
        key = jl.as_str(name, f"{what}: clusterAddrTable key")
        members_what = f"{what}: clusterAddrTable[{key!r}]"
        items = [] if members is None else jl.as_list(members, members_what)
        clusters[key] = frozenset(jl.as_str(m, members_what) for m in items)
    return ClusterInfo(broker_addr_table=brokers, cluster_addr_table=clusters)


def encode_topic_route(route: TopicRouteData, *, standard_json: bool = True) -> bytes:
    """A route as a name server writes it: standard JSON (quoted broker ids), or
    with ``standard_json=False`` the older form with bare integer keys."""
    doc = route.to_json_dict()
    if standard_json:
        return jl.dumps(_quote_int_keys(doc)).encode()
    return jl.dumps(doc).encode()


def encode_cluster_info(info: ClusterInfo) -> bytes:
    """Cluster info as a name server writes it (bare integer broker ids)."""
    return jl.dumps(info.to_json_dict()).encode()


def _quote_int_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(str(k) if isinstance(k, int) else k): _quote_int_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quote_int_keys(v) for v in value]
    return value


# ------------------------------------------------------------ queues of a route

_ORDER_CONF_NUM: Final = re.compile(r"[+-]?[0-9]{1,10}")


def _order_topic_queues(topic: str, conf: str) -> list[MessageQueue]:
    queues: list[MessageQueue] = []
    for entry in conf.split(";"):
        if len(queues) > MAX_ROUTE_QUEUES:
            raise RemoteProtocolError("topic route: orderTopicConf declares too many queues")
        if not entry:  # Java's split drops trailing empties; tolerate inner ones too
            continue
        parts = entry.split(":")
        if len(parts) < 2 or not _ORDER_CONF_NUM.fullmatch(parts[1]):
            raise RemoteProtocolError(
                f"topic route: orderTopicConf entry {entry!r} is not 'brokerName:queueNums'"
            )
        count = int(parts[1])
        if count > MAX_QUEUE_NUMS:
            raise RemoteProtocolError(
                f"topic route: orderTopicConf entry {entry!r}: too many queues"
            )
        queues.extend(MessageQueue(topic, parts[0], i) for i in range(count))
    return queues


def is_order_topic(route: TopicRouteData) -> bool:
    """Whether the route carries an ``orderTopicConf`` (Java's ``orderTopic``)."""
    return bool(route.order_topic_conf)


def _mock_broker_name(scope: str) -> str:
    if scope == METADATA_SCOPE_GLOBAL:
        return LOGICAL_QUEUE_MOCK_BROKER_PREFIX + scope[2:]
    return LOGICAL_QUEUE_MOCK_BROKER_PREFIX + scope


def static_topic_endpoints(topic: str, route: TopicRouteData) -> dict[MessageQueue, str]:
    """For a static topic: each logical queue and the broker that hosts it now
    (:data:`LOGICAL_QUEUE_MOCK_BROKER_NAME_NOT_EXIST` if none). Empty for an
    ordinary topic. Follows Java's ``ClientMetadata.topicRouteData2EndpointsForStaticTopic``.
    """
    by_scope: dict[str, list[TopicQueueMappingInfo]] = {}
    for info in route.topic_queue_mapping_by_broker.values():
        if info.scope is not None:
            by_scope.setdefault(info.scope, []).append(info)
    endpoints: dict[MessageQueue, str] = {}
    for scope, infos in by_scope.items():
        mock = _mock_broker_name(scope)
        infos = sorted(infos, key=lambda i: -i.epoch)  # newest first, stable
        # Java's loop compares against an epoch it never updates (-1), so in
        # effect this is the largest totalQueues of the scope's mappings.
        max_total = max((i.total_queues for i in infos if i.epoch >= -1), default=0)
        owner: dict[int, TopicQueueMappingInfo] = {}
        for info in infos:
            for global_id in info.curr_id_map:
                old = owner.get(global_id)
                if old is None or old.epoch <= info.epoch:
                    owner[global_id] = info
        for queue_id in range(max_total):
            hosted = owner.get(queue_id)
            bname = hosted.bname if hosted is not None else None
            endpoints[MessageQueue(topic, mock, queue_id)] = (
                bname if bname is not None else LOGICAL_QUEUE_MOCK_BROKER_NAME_NOT_EXIST
            )
    return endpoints


def publish_queues(topic: str, route: TopicRouteData) -> list[MessageQueue]:
    """The queues a producer sends ``topic``'s messages to, in Java's order.

    With ``orderTopicConf`` ("brokerName:num;..."): those queues, in that order.
    For a static topic: its logical queues by id. Otherwise, brokers sorted by
    name; for each writable one that has a master, ``writeQueueNums`` queues.
    """
    if route.order_topic_conf:
        return _order_topic_queues(topic, route.order_topic_conf)
    if route.order_topic_conf is None and route.topic_queue_mapping_by_broker:
        return sorted(static_topic_endpoints(topic, route), key=lambda mq: mq.queue_id)
    queues: list[MessageQueue] = []
    for qd in sorted(route.queue_datas, key=lambda q: java_order_key(q.broker_name)):
        if not qd.writable:
            continue
        broker = route.broker_data(qd.broker_name)
        if broker is None or MASTER_ID not in broker.broker_addrs:
            continue
        queues.extend(MessageQueue(topic, qd.broker_name, i) for i in range(qd.write_queue_nums))
    return queues


def subscribe_queues(topic: str, route: TopicRouteData) -> list[MessageQueue]:
    """The queues a consumer of ``topic`` may be assigned, sorted (Java returns a
    set: ``readQueueNums`` queues of each readable broker; for a static topic,
    its logical queues)."""
    if route.topic_queue_mapping_by_broker:
        return sorted(static_topic_endpoints(topic, route))
    found: set[MessageQueue] = set()
    for qd in route.queue_datas:
        if qd.readable:
            found.update(MessageQueue(topic, qd.broker_name, i) for i in range(qd.read_queue_nums))
    return sorted(found)
