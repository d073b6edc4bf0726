"""The client session: name servers, routes, brokers, heartbeats (Java's ``MQClientInstance``).

One :class:`ClientCore` is shared by the producers and consumers of one client
object. It holds what they share (routes, broker addresses, the fault table,
who to heartbeat for) and the flows that maintain it. It performs no IO: its
flows yield effects (see :mod:`rocketmq_proto._effects`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import _requests as rq
from ._bodies import ConsumerData, HeartbeatData, encode_heartbeat
from ._codes import RequestCode, ResponseCode
from ._command import RemotingCommand
from ._connection import Reply
from ._effects import Call, Flow, Now, Sleep
from ._errors import (
    ConfigError,
    ConnectionClosedError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from ._fault import LatencyFaultTolerance
from ._route import (
    MASTER_ID,
    ClusterInfo,
    MessageQueue,
    TopicRouteData,
    parse_cluster_info,
    parse_topic_route,
    publish_queues,
)

log = logging.getLogger("rocketmq_proto.client")

_ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")

#: Handles one kind of broker-initiated request: (broker address, request) -> flow of the reply.
ServerRequestHandler = Callable[[str, RemotingCommand], Flow[Reply | None]]


def parse_addrs(value: str | Iterable[str], what: str = "name server address") -> tuple[str, ...]:
    """``"host:port;host:port"`` (Java's form) or a list of ``host:port``, validated."""
    items = value.split(";") if isinstance(value, str) else list(value)
    addrs = tuple(a.strip() for a in items if a and a.strip())
    if not addrs:
        raise ConfigError(f"at least one {what} is required (host:port)")
    for addr in addrs:
        match = _ADDR.match(addr)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise ConfigError(f"invalid {what} {addr!r}: expected host:port")
    return addrs


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What every client object shares. Times are seconds."""

    namesrv_addrs: tuple[str, ...]
    client_ip: str = "127.0.0.1"
    instance_name: str = "DEFAULT"
    unit_name: str | None = None
    namespace: str | None = None
    request_timeout: float = 3.0
    route_refresh_interval: float = 30.0
    heartbeat_interval: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "namesrv_addrs", parse_addrs(self.namesrv_addrs))
        for name in ("request_timeout", "route_refresh_interval", "heartbeat_interval"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        if not self.instance_name or "@" in self.instance_name:
            raise ConfigError(f"instance_name {self.instance_name!r} must be non-empty, no '@'")
        if self.namespace is not None and not re.fullmatch(r"[A-Za-z0-9_-]+", self.namespace):
            raise ConfigError(
                f"namespace {self.namespace!r} may only use letters, digits, '_' and '-'"
            )

    @property
    def client_id(self) -> str:
        """``ip@instance[@unit]``: brokers route check-backs and replies by it."""
        cid = f"{self.client_ip}@{self.instance_name}"
        return f"{cid}@{self.unit_name}" if self.unit_name else cid


@dataclass(slots=True)
class TopicPublishInfo:
    """The queues a topic is sent to, and the round-robin position among them."""

    topic: str
    queues: list[MessageQueue]
    order_topic: bool = False
    have_route: bool = True
    position: int = 0

    def next_position(self) -> int:
        self.position = (self.position + 1) & 0x7FFFFFFF
        return self.position


@dataclass(slots=True)
class _RouteEntry:
    route: TopicRouteData
    fetched_at: float


@dataclass(slots=True)
class ClientCore:
    """Routes, broker addresses and session upkeep shared by a client's producers/consumers."""

    config: ClientConfig
    fault: LatencyFaultTolerance = field(default_factory=LatencyFaultTolerance)
    closed: bool = False
    #: Producer groups and consumer data providers to announce in heartbeats.
    producer_groups: set[str] = field(default_factory=set)
    consumer_data: dict[str, Callable[[], ConsumerData]] = field(default_factory=dict)
    #: Broker-initiated request handlers by request code.
    handlers: dict[int, ServerRequestHandler] = field(default_factory=dict)
    #: Topics whose routes the periodic refresh keeps fresh.
    topics_in_use: set[str] = field(default_factory=set)
    _routes: dict[str, _RouteEntry] = field(default_factory=dict)
    _publish: dict[str, TopicPublishInfo] = field(default_factory=dict)
    _broker_addrs: dict[str, dict[int, str]] = field(default_factory=dict)
    _namesrv_index: int = 0
    _last_refresh: float | None = None
    _last_heartbeat: float | None = None
    #: Set when a route names a broker not seen before: heartbeat it soon, so that
    #: it knows our groups (check-backs and replies are routed by them).
    _new_broker: bool = False
    #: Topics whose route a flow is fetching now, and topics found not to exist.
    _fetching: set[str] = field(default_factory=set)
    _missing: set[str] = field(default_factory=set)

    @property
    def client_id(self) -> str:
        return self.config.client_id

    # ------------------------------------------------------------ name servers

    def namesrv_order(self) -> list[str]:
        """Name servers to try, starting with the one that last worked."""
        addrs = self.config.namesrv_addrs
        i = self._namesrv_index % len(addrs)
        return [*addrs[i:], *addrs[:i]]

    def _namesrv_call(self, make: Callable[[], RemotingCommand]) -> Flow[RemotingCommand]:
        """Call the name servers in turn until one answers (any response code)."""
        last: RocketMQError | None = None
        for addr in self.namesrv_order():
            try:
                response: RemotingCommand = yield Call(addr, make(), self.config.request_timeout)
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                log.warning("name server %s failed: %s", addr, exc)
                last = exc
                self._namesrv_index += 1
                continue
            return response
        assert last is not None
        raise last

    # ------------------------------------------------------------------ routes

    def cached_route(self, topic: str) -> TopicRouteData | None:
        entry = self._routes.get(topic)
        return entry.route if entry is not None else None

    def route_flow(self, topic: str, *, force: bool = False) -> Flow[TopicRouteData]:
        """The topic's route, from the cache unless stale (or ``force``).

        Concurrent flows that need the same route share one name server request
        (as Java's client does under its name server lock): the others wait for
        its answer instead of sending hundreds of identical requests at startup.
        """
        now: float = yield Now()
        entry = self._routes.get(topic)
        if (
            entry is not None
            and not force
            and now - entry.fetched_at < self.config.route_refresh_interval
        ):
            return entry.route
        if topic in self._fetching:
            started = now
            limit = started + 2 * self.config.request_timeout
            while topic in self._fetching and now < limit:
                yield Sleep(0.005)
                now = yield Now()
            entry = self._routes.get(topic)
            if entry is not None and entry.fetched_at >= started:
                return entry.route
            if topic not in self._fetching and topic in self._missing:
                raise RouteNotFoundError(
                    f"no route for topic {topic!r}: the name servers know no such topic"
                )
        self._fetching.add(topic)
        try:
            response = yield from self._namesrv_call(lambda: rq.get_route_info(topic))
            if response.code == ResponseCode.TOPIC_NOT_EXIST:
                self._routes.pop(topic, None)
                self._missing.add(topic)
                raise RouteNotFoundError(
                    f"no route for topic {topic!r}: the name servers know no such topic"
                )
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(response.code, response.remark)
            route = parse_topic_route(response.body)
            self._missing.discard(topic)
            self.update_route(topic, route, now)
            return route
        finally:
            self._fetching.discard(topic)

    def update_route(self, topic: str, route: TopicRouteData, now: float) -> None:
        self._routes[topic] = _RouteEntry(route, now)
        for broker in route.broker_datas:
            known = self._broker_addrs.get(broker.broker_name)
            if known != broker.broker_addrs:
                self._new_broker = True
            self._broker_addrs[broker.broker_name] = dict(broker.broker_addrs)
        info = self._publish.get(topic)
        queues = publish_queues(topic, route)
        if info is None:
            self._publish[topic] = TopicPublishInfo(topic, queues, bool(route.order_topic_conf))
        else:
            info.queues = queues
            info.order_topic = bool(route.order_topic_conf)
            info.have_route = True

    def forget_route(self, topic: str) -> None:
        """Drop a cached route so the next use fetches it again (after an error)."""
        self._routes.pop(topic, None)

    def publish_info_flow(
        self, topic: str, *, default_topic: str = rq.DEFAULT_TOPIC, default_queue_nums: int = 4
    ) -> Flow[TopicPublishInfo]:
        """Where ``topic`` may be sent; for an unknown topic, the default topic's
        brokers (a broker with ``autoCreateTopicEnable`` then creates it), as Java does."""
        self.topics_in_use.add(topic)
        now: float = yield Now()
        info = self._publish.get(topic)
        entry = self._routes.get(topic)
        if (
            info is not None
            and info.queues
            and entry is not None
            and now - entry.fetched_at < self.config.route_refresh_interval
        ):
            return info
        try:
            yield from self.route_flow(topic, force=True)
        except RouteNotFoundError as missing:
            try:
                default_route = yield from self.route_flow(default_topic)
            except RouteNotFoundError:
                raise missing from None
            queues: list[MessageQueue] = []
            for qd in sorted(default_route.queue_datas, key=lambda q: q.broker_name):
                broker = default_route.broker_data(qd.broker_name)
                if not qd.writable or broker is None or MASTER_ID not in broker.broker_addrs:
                    continue
                count = min(default_queue_nums, qd.write_queue_nums)
                queues.extend(MessageQueue(topic, qd.broker_name, i) for i in range(count))
            if not queues:
                raise missing from None
            info = self._publish.setdefault(topic, TopicPublishInfo(topic, queues))
            info.queues = queues
            info.have_route = False
            return info
        info = self._publish[topic]
        if not info.queues:
            raise RouteNotFoundError(f"topic {topic!r} has no writable queue on any master")
        return info

    # ----------------------------------------------------------------- brokers

    def master_addr(self, broker_name: str) -> str | None:
        return self._broker_addrs.get(broker_name, {}).get(MASTER_ID)

    def broker_addr(self, broker_name: str, *, prefer_master: bool = True) -> str | None:
        addrs = self._broker_addrs.get(broker_name)
        if not addrs:
            return None
        if prefer_master and MASTER_ID in addrs:
            return addrs[MASTER_ID]
        return addrs[min(addrs)]

    def broker_name_of(self, addr: str) -> str | None:
        for name, addrs in self._broker_addrs.items():
            if addr in addrs.values():
                return name
        return None

    def known_brokers(self) -> dict[str, dict[int, str]]:
        return {name: dict(addrs) for name, addrs in self._broker_addrs.items()}

    def master_addr_flow(self, broker_name: str, topic: str) -> Flow[str]:
        """The master of ``broker_name``, fetching ``topic``'s route if it is unknown."""
        addr = self.master_addr(broker_name)
        if addr is None:
            yield from self.route_flow(topic, force=True)
            addr = self.master_addr(broker_name)
        if addr is None:
            raise RouteNotFoundError(f"broker {broker_name!r} has no master in the route")
        return addr

    def cluster_info_flow(self) -> Flow[ClusterInfo]:
        response = yield from self._namesrv_call(rq.get_broker_cluster_info)
        if response.code != ResponseCode.SUCCESS:
            raise error_for_response(response.code, response.remark)
        info = parse_cluster_info(response.body)
        for name, broker in info.broker_addr_table.items():
            self._broker_addrs[name] = dict(broker.broker_addrs)
        return info

    # --------------------------------------------------------------- heartbeat

    def heartbeat_body(self) -> bytes:
        data = HeartbeatData(
            client_id=self.client_id,
            producer_groups=tuple(sorted(self.producer_groups)),
            consumer_datas=tuple(make() for make in self.consumer_data.values()),
        )
        return encode_heartbeat(data)

    def heartbeat_flow(self) -> Flow[int]:
        """HEART_BEAT to every broker (only masters when no consumer); returns how many answered."""
        if not self.producer_groups and not self.consumer_data:
            return 0
        body = self.heartbeat_body()
        self._new_broker = False
        answered = 0
        for name, addrs in sorted(self._broker_addrs.items()):
            for broker_id, addr in sorted(addrs.items()):
                if broker_id != MASTER_ID and not self.consumer_data:
                    continue
                try:
                    response = yield Call(addr, rq.heart_beat(body), self.config.request_timeout)
                except RocketMQError as exc:
                    log.warning("heartbeat to %s (%s) failed: %s", name, addr, exc)
                    continue
                if response.code != ResponseCode.SUCCESS:
                    log.warning(
                        "heartbeat to %s (%s) refused: %s %s",
                        name,
                        addr,
                        response.code,
                        response.remark,
                    )
                    continue
                answered += 1
        self._last_heartbeat = yield Now()
        return answered

    def unregister_flow(
        self, *, producer_group: str | None = None, consumer_group: str | None = None
    ) -> Flow[None]:
        """UNREGISTER_CLIENT to every known broker; failures are logged, not raised."""
        for name, addrs in sorted(self._broker_addrs.items()):
            for addr in sorted(set(addrs.values())):
                command = rq.unregister_client(
                    self.client_id, producer_group=producer_group, consumer_group=consumer_group
                )
                try:
                    yield Call(addr, command, self.config.request_timeout)
                except RocketMQError as exc:
                    log.info("unregister from %s (%s) failed: %s", name, addr, exc)

    def refresh_routes_flow(self) -> Flow[None]:
        for topic in sorted(self.topics_in_use):
            try:
                yield from self.route_flow(topic, force=True)
            except RocketMQError as exc:
                log.warning("route refresh of %r failed: %s", topic, exc)
        self._last_refresh = yield Now()

    def maintenance_flow(self) -> Flow[None]:
        """Runs until :attr:`closed`: routes refreshed and heartbeats sent on their intervals."""
        config = self.config
        while not self.closed:
            now: float = yield Now()
            if self._last_refresh is None or now - self._last_refresh >= (
                config.route_refresh_interval
            ):
                yield from self.refresh_routes_flow()
            if (
                self._new_broker
                or self._last_heartbeat is None
                or now - self._last_heartbeat >= config.heartbeat_interval
            ):
                yield from self.heartbeat_flow()
            now = yield Now()
            assert self._last_refresh is not None
            due = min(
                self._last_refresh + config.route_refresh_interval,
                (self._last_heartbeat or now) + config.heartbeat_interval,
            )
            # Wake at least once a second so that closing is noticed promptly.
            yield Sleep(min(1.0, max(0.0, due - now)))

    # -------------------------------------------------- broker-initiated requests

    def handle_server_request(self, addr: str, command: RemotingCommand) -> Flow[Reply | None]:
        """The flow answering a request a broker sent us (``None``: no answer)."""
        handler = self.handlers.get(command.code)
        if handler is not None:
            return handler(addr, command)
        return _unsupported(command)


def _unsupported(command: RemotingCommand) -> Flow[Reply | None]:
    if command.is_oneway:
        return None
    try:
        name = RequestCode(command.code).name
    except ValueError:
        name = str(command.code)
    return Reply(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, remark=f"request {name} is not supported")
    yield  # a generator, so that every handler is a flow
