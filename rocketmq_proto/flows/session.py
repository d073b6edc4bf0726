"""The client session: name servers, routes, brokers, heartbeats (Java's ``MQClientInstance``).

One :class:`ClientCore` is shared by the producers and consumers of one client
object. It holds what they share (routes, broker addresses, the fault table,
who to heartbeat for) and the flows that maintain it. It performs no IO: its
flows yield effects (see :mod:`rocketmq_proto.flows.effects`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.effects import Flow, call, now, sleep
from rocketmq_proto.flows.fault import LatencyFaultTolerance
from rocketmq_proto.flows.hooks import Hooks
from rocketmq_proto.flows.lifecycle import Lifecycle, LifecycleOwner
from rocketmq_proto.flows.namesrv_lookup import (
    DEFAULT_LOOKUP_INTERVAL,
    NamesrvLookup,
    parse_lookup_url,
)
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import ConsumerData, HeartbeatData, encode_heartbeat
from rocketmq_proto.wire.codes import RequestCode, ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConfigError,
    ConnectionClosedError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import (
    MASTER_ID,
    BrokerData,
    ClusterInfo,
    MessageQueue,
    TopicRouteData,
    parse_cluster_info,
    parse_topic_route,
    publish_queues,
)

if TYPE_CHECKING:
    from rocketmq_proto.flows.trace import Tracer

log = logging.getLogger("rocketmq_proto.client")

_ADDR = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")

#: Seconds each name server gets on a first try when there are several (see
#: :meth:`ClientCore._namesrv_call`).
NAMESRV_FIRST_TRY = 1.0

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
    """What every client object shares. Times are seconds.

    ``namesrv_addrs`` may be empty only with ``namesrv_lookup_url``: the list is
    then asked from that URL (see :mod:`rocketmq_proto.flows.namesrv_lookup`), at
    start and every ``namesrv_lookup_interval`` seconds; with both, the
    addresses are the list used until the first lookup answers.
    """

    namesrv_addrs: tuple[str, ...]
    client_ip: str = "127.0.0.1"
    instance_name: str = "DEFAULT"
    unit_name: str | None = None
    namespace: str | None = None
    request_timeout: float = 3.0
    route_refresh_interval: float = 30.0
    heartbeat_interval: float = 30.0
    namesrv_lookup_url: str | None = None
    namesrv_lookup_interval: float = DEFAULT_LOOKUP_INTERVAL

    def __post_init__(self) -> None:
        if self.namesrv_lookup_url is None or self.namesrv_addrs:
            object.__setattr__(self, "namesrv_addrs", parse_addrs(self.namesrv_addrs))
        else:
            object.__setattr__(self, "namesrv_addrs", ())
        if self.namesrv_lookup_url is not None:
            parse_lookup_url(self.namesrv_lookup_url)
        for name in (
            "request_timeout",
            "route_refresh_interval",
            "heartbeat_interval",
            "namesrv_lookup_interval",
        ):
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
class ClientCore(LifecycleOwner):
    """Routes, broker addresses and session upkeep shared by a client's producers/consumers.

    Its lifecycle (:class:`~rocketmq_proto.flows.lifecycle.LifecycleOwner`): the
    upkeep flow runs until closing begins.
    """

    config: ClientConfig
    fault: LatencyFaultTolerance = field(default_factory=LatencyFaultTolerance)
    #: The user's hooks (see :mod:`rocketmq_proto.flows.hooks`): the flows call
    #: the send and consume ones, the transport the request ones.
    hooks: Hooks = field(default_factory=Hooks)
    #: The message trace (``enable_trace=True``): the flows tell it each send,
    #: consume and transaction outcome.
    tracer: Tracer | None = None
    _lifecycle: Lifecycle = field(default_factory=lambda: Lifecycle("client"), init=False)
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
    #: When each broker address last answered a heartbeat: a known route whose
    #: brokers still answer outlives a name server that forgot its topic.
    _broker_answered: dict[str, float] = field(default_factory=dict)
    #: Whether the last name server call found none answering.
    _namesrv_unreachable: bool = False
    #: The name servers in use: the configured ones, or the lookup's last answer.
    _namesrv_addrs: tuple[str, ...] = ()
    _namesrv_lookup: NamesrvLookup | None = None
    #: The ``version`` (Java's ``MQVersion.Version`` ordinal) of the latest response seen
    #: from each broker address: what its release can do (see :meth:`note_broker_version`).
    _broker_versions: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = self.config
        self._namesrv_addrs = config.namesrv_addrs
        if config.namesrv_lookup_url is not None:
            self._namesrv_lookup = NamesrvLookup(
                parse_lookup_url(config.namesrv_lookup_url),
                config.namesrv_lookup_interval,
                config.request_timeout,
            )

    @property
    def client_id(self) -> str:
        return self.config.client_id

    # ------------------------------------------------------------ name servers

    @property
    def namesrv_addrs(self) -> tuple[str, ...]:
        """The name servers in use (empty until a lookup answers, when only a URL is set)."""
        return self._namesrv_addrs

    def set_namesrv_addrs(self, addrs: str | Iterable[str]) -> bool:
        """Use ``addrs`` (validated) from now on; returns whether the list changed.

        The next call still starts with the name server that answered last when it
        is in the new list.
        """
        new = parse_addrs(addrs)
        old = self._namesrv_addrs
        if new == old:
            return False
        current = old[self._namesrv_index % len(old)] if old else None
        self._namesrv_index = new.index(current) if current in new else 0
        self._namesrv_addrs = new
        log.info(
            "name servers changed: %s -> %s",
            ";".join(old) or "none",
            ";".join(new),
            extra=log_fields(client=self.client_id),
        )
        return True

    def lookup_namesrv_flow(self) -> Flow[bool]:
        """Ask the lookup URL for the name servers (if one is set); ``False`` if unchanged."""
        lookup = self._namesrv_lookup
        if lookup is None:
            return False
        addrs = yield from lookup.fetch_flow()
        return addrs is not None and self.set_namesrv_addrs(addrs)

    def namesrv_list_flow(self) -> Flow[tuple[str, ...]]:
        """The name servers in use; with none known yet, the lookup URL is asked first
        (flows needing it meanwhile share that one lookup)."""
        if not self._namesrv_addrs:
            yield from self.lookup_namesrv_flow()
        if not self._namesrv_addrs:
            self._namesrv_unreachable = True
            lookup = self._namesrv_lookup
            where = lookup.url.url if lookup is not None else "no lookup URL"
            raise ConnectionClosedError(f"no name server address yet: the lookup at {where} failed")
        return self._namesrv_addrs

    def namesrv_order(self) -> list[str]:
        """Name servers to try, starting with the one that last worked."""
        addrs = self._namesrv_addrs
        if not addrs:
            return []
        i = self._namesrv_index % len(addrs)
        return [*addrs[i:], *addrs[:i]]

    def namesrv_call_flow(self, make: Callable[[], RemotingCommand]) -> Flow[RemotingCommand]:
        """The first answer of a name server to ``make()`` (a command made for each
        try), trying them in turn as the client's own requests do."""
        return (yield from self._namesrv_call(make))

    def _namesrv_call(self, make: Callable[[], RemotingCommand]) -> Flow[RemotingCommand]:
        """Call the name servers in turn until one answers (any response code).

        The next call starts with the one that answered last, so a dead name
        server costs one failed try, not one per call. With several name servers,
        each first gets :data:`NAMESRV_FIRST_TRY` seconds (a name server answers in
        milliseconds): one that black-holes connections delays a call by that much,
        not by a whole request timeout. Those that only ran out of that time get a
        second try with the whole timeout before the call fails.
        """
        addrs = self._namesrv_addrs or (yield from self.namesrv_list_flow())
        timeout = self.config.request_timeout
        first_try = min(timeout, NAMESRV_FIRST_TRY) if len(addrs) > 1 else timeout
        last: RocketMQError | None = None
        slow: list[str] = []
        for addr in self.namesrv_order():
            try:
                response = yield from call(addr, make(), first_try)
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                log.warning(
                    "name server %s failed: %s",
                    addr,
                    exc,
                    extra=log_fields(client=self.client_id, addr=addr),
                )
                last = exc
                if isinstance(exc, RequestTimeoutError) and first_try < timeout:
                    slow.append(addr)
                continue
            return self._namesrv_answered(addr, response)
        for addr in slow:
            try:
                response = yield from call(addr, make(), timeout)
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                log.warning(
                    "name server %s failed again: %s",
                    addr,
                    exc,
                    extra=log_fields(client=self.client_id, addr=addr),
                )
                last = exc
                continue
            return self._namesrv_answered(addr, response)
        self._namesrv_unreachable = True
        if last is None:  # no name server was tried: the list is empty
            raise ConnectionClosedError("no name server address to call")
        raise last

    def _namesrv_answered(self, addr: str, response: RemotingCommand) -> RemotingCommand:
        if addr in self._namesrv_addrs:  # the list may have changed during the call
            self._namesrv_index = self._namesrv_addrs.index(addr)
        self._namesrv_unreachable = False
        return response

    # ------------------------------------------------------------------ routes

    def cached_route(self, topic: str) -> TopicRouteData | None:
        entry = self._routes.get(topic)
        return entry.route if entry is not None else None

    def route_flow(
        self, topic: str, *, force: bool = False, keep_known: bool = True
    ) -> Flow[TopicRouteData]:
        """The topic's route, from the cache unless stale (or ``force``).

        Concurrent flows that need the same route share one name server request
        (as Java's client does under its name server lock): the others wait for
        its answer instead of sending hundreds of identical requests at startup.

        With ``keep_known`` (the default), a route already known outlives a failed
        refresh: the name servers cannot be reached, or answer that the topic does
        not exist while a broker of the route still answers this client's
        heartbeats (a name server restarted empty, before the brokers registered
        again). The known route is returned and the failure logged. It is dropped
        only when the name servers deny the topic and none of its brokers answered
        a heartbeat within two heartbeat intervals (see :meth:`_brokers_alive`).
        ``keep_known=False`` (an administrator's question) always asks the name
        servers and raises what they answer.
        """
        now_s = yield from now()
        entry = self._routes.get(topic)
        if (
            entry is not None
            and not force
            and now_s - entry.fetched_at < self.config.route_refresh_interval
        ):
            return entry.route
        if entry is not None and keep_known:
            try:
                return (yield from self._fetch_route(topic, now_s, known=entry.route))
            except RouteNotFoundError as exc:
                if not self._brokers_alive(entry.route, now_s):
                    self._routes.pop(topic, None)
                    raise
                log.warning(
                    "keeping the known route of %r: its brokers still answer (%s)",
                    topic,
                    exc,
                    extra=log_fields(client=self.client_id, topic=topic),
                )
            except (RequestTimeoutError, ConnectionClosedError) as exc:
                log.warning(
                    "keeping the known route of %r: %s",
                    topic,
                    exc,
                    extra=log_fields(client=self.client_id, topic=topic),
                )
            return entry.route
        try:
            return (yield from self._fetch_route(topic, now_s))
        except RouteNotFoundError:
            self._routes.pop(topic, None)
            raise

    def _brokers_alive(self, route: TopicRouteData, now: float) -> bool:
        """Whether a broker of ``route`` answered a heartbeat lately (two intervals)."""
        return any(self._broker_alive(broker, now) for broker in route.broker_datas)

    def _broker_alive(self, broker: BrokerData, now: float) -> bool:
        horizon = now - 2 * self.config.heartbeat_interval
        return any(
            self._broker_answered.get(addr, horizon - 1) >= horizon
            for addr in broker.broker_addrs.values()
        )

    def _with_live_brokers(
        self, topic: str, known: TopicRouteData, fresh: TopicRouteData, now: float
    ) -> TopicRouteData:
        """``fresh``, plus the brokers of ``known`` it lacks that still answer heartbeats.

        A name server restarted empty learns the brokers one by one, as each
        registers again (every 30 s): a route it gives meanwhile lacks some. Their
        queues are kept, so that consumers do not drop them for half a minute;
        they go once the broker is silent for two heartbeat intervals too.
        """
        present = {broker.broker_name for broker in fresh.broker_datas}
        kept = [
            broker
            for broker in known.broker_datas
            if broker.broker_name not in present and self._broker_alive(broker, now)
        ]
        if not kept:
            return fresh
        names = {broker.broker_name for broker in kept}
        log.warning(
            "the name servers' route of %r lacks %s, which still answer: keeping their queues",
            topic,
            ", ".join(sorted(names)),
            extra=log_fields(client=self.client_id, topic=topic),
        )
        return replace(
            fresh,
            broker_datas=(*fresh.broker_datas, *kept),
            queue_datas=(
                *fresh.queue_datas,
                *(queue for queue in known.queue_datas if queue.broker_name in names),
            ),
        )

    def _fetch_route(
        self, topic: str, now_s: float, *, known: TopicRouteData | None = None
    ) -> Flow[TopicRouteData]:
        """Ask the name servers for ``topic``'s route (sharing a request in flight);
        with the ``known`` route, brokers missing from the answer but still alive
        are kept (:meth:`_with_live_brokers`)."""
        if topic in self._fetching:
            started = now_s
            limit = started + 2 * self.config.request_timeout
            while topic in self._fetching and now_s < limit:
                yield from sleep(0.005)
                now_s = yield from now()
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
                self._missing.add(topic)
                raise RouteNotFoundError(
                    f"no route for topic {topic!r}: the name servers know no such topic"
                )
            if response.code != ResponseCode.SUCCESS:
                raise error_for_response(
                    response.code, response.remark, request=RequestCode.GET_ROUTEINFO_BY_TOPIC
                )
            route = parse_topic_route(response.body)
            self._missing.discard(topic)
            if known is not None:
                route = self._with_live_brokers(topic, known, route, now_s)
            self.update_route(topic, route, now_s)
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
        info = self._publish.get(topic)
        if info is not None and info.queues and topic in self._routes:
            # A known route is used whatever its age, as Java's client does: the
            # upkeep flow refreshes it in the background, and a send never waits
            # for (or fails with) a name server.
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
            raise error_for_response(
                response.code, response.remark, request=RequestCode.GET_BROKER_CLUSTER_INFO
            )
        info = parse_cluster_info(response.body)
        for name, broker in info.broker_addr_table.items():
            self._broker_addrs[name] = dict(broker.broker_addrs)
        return info

    def note_broker_version(self, addr: str, version: int) -> None:
        """Remember the ``version`` header of a response from the broker at ``addr``.

        Brokers put their release's ``MQVersion.Version`` ordinal in every response
        (4.9.7 is 407, 5.0.0 is 413); the flows that call brokers (heartbeats, sends,
        :meth:`broker_version_flow`) feed it here. The latest one wins: a broker
        upgraded in place is seen as the new release from its next answer on.
        """
        self._broker_versions[addr] = version

    def broker_version(self, addr: str) -> int | None:
        """The version the broker at ``addr`` last answered with; ``None`` before any answer."""
        return self._broker_versions.get(addr)

    def broker_version_flow(self, addr: str, timeout: float) -> Flow[int]:
        """The version of the broker at ``addr``, asked with one HEART_BEAT if no answer
        from it was seen yet (the cheapest request every broker answers, whatever its
        ACL; it also announces our groups, as the next heartbeat round would)."""
        known = self._broker_versions.get(addr)
        if known is not None:
            return known
        response = yield from self._heartbeat_to_flow(addr, timeout)
        return response.version

    def _heartbeat_to_flow(
        self, addr: str, timeout: float, body: bytes | None = None
    ) -> Flow[RemotingCommand]:
        """One HEART_BEAT to ``addr`` (``body``: the round's, or made now): its answer,
        the broker's version noted and a success remembered. Errors raise."""
        request = rq.heart_beat(self.heartbeat_body() if body is None else body)
        response = yield from call(addr, request, timeout)
        self.note_broker_version(addr, response.version)
        if response.code == ResponseCode.SUCCESS:
            self._broker_answered[addr] = yield from now()
        return response

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
                    response = yield from self._heartbeat_to_flow(
                        addr, self.config.request_timeout, body
                    )
                except RocketMQError as exc:
                    log.warning(
                        "heartbeat to %s (%s) failed: %s",
                        name,
                        addr,
                        exc,
                        extra=log_fields(client=self.client_id, broker=name, addr=addr),
                    )
                    continue
                if response.code != ResponseCode.SUCCESS:
                    log.warning(
                        "heartbeat to %s (%s) refused: %s %s",
                        name,
                        addr,
                        response.code,
                        response.remark,
                        extra=log_fields(client=self.client_id, broker=name, addr=addr),
                    )
                    continue
                answered += 1
        self._last_heartbeat = yield from now()
        return answered

    def heartbeat_once_flow(self, addr: str) -> Flow[None]:
        """HEART_BEAT to ``addr`` unless it answered one already: before a half
        message goes there (the periodic heartbeat may be up to 30 s away).
        Failures are logged, not raised: the send itself says whether ``addr``
        can be reached."""
        if addr in self._broker_answered or not self.producer_groups:
            return
        try:
            yield from self._heartbeat_to_flow(addr, self.config.request_timeout)
        except RocketMQError as exc:
            log.warning(
                "heartbeat to %s failed: %s",
                addr,
                exc,
                extra=log_fields(client=self.client_id, addr=addr),
            )

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
                    yield from call(addr, command, self.config.request_timeout)
                except RocketMQError as exc:
                    log.info(
                        "unregister from %s (%s) failed: %s",
                        name,
                        addr,
                        exc,
                        extra=log_fields(client=self.client_id, broker=name, addr=addr),
                    )

    def refresh_routes_flow(self) -> Flow[float]:
        """Refresh every route in use; known routes outlive failures (see :meth:`route_flow`).

        When no name server can be reached, the other topics are not tried this
        round: each try would wait for the same failure. Returns the time it
        ended (the driver's clock).
        """
        topics = sorted(self.topics_in_use)
        for index, topic in enumerate(topics):
            try:
                yield from self.route_flow(topic, force=True)
            except RocketMQError as exc:
                log.warning(
                    "route refresh of %r failed: %s",
                    topic,
                    exc,
                    extra=log_fields(client=self.client_id, topic=topic),
                )
            if self._namesrv_unreachable and index + 1 < len(topics):
                log.warning(
                    "no name server answers: the routes of %d more topics are kept as they are",
                    len(topics) - index - 1,
                    extra=log_fields(client=self.client_id),
                )
                break
        self._last_refresh = ended = yield from now()
        return ended

    def maintenance_flow(self) -> Flow[None]:
        """Runs until :attr:`closed`: routes refreshed and heartbeats sent on their intervals.

        With a name server lookup URL, the list is asked for first, then every
        ``namesrv_lookup_interval`` seconds (see :class:`NamesrvLookup`).
        """
        config = self.config
        lookup = self._namesrv_lookup
        while not self.closed:
            now_s = yield from now()
            if lookup is not None and lookup.due(now_s, bool(self._namesrv_addrs)):
                yield from self.lookup_namesrv_flow()
                now_s = yield from now()
            # Compared as ``due`` is computed below: ``now - last >= interval`` can be
            # false (rounding) at the very time ``due`` says, and the loop would spin.
            last_refresh = self._last_refresh
            if last_refresh is None or now_s >= last_refresh + config.route_refresh_interval:
                last_refresh = yield from self.refresh_routes_flow()
            if (
                self._new_broker
                or self._last_heartbeat is None
                or now_s >= self._last_heartbeat + config.heartbeat_interval
            ):
                yield from self.heartbeat_flow()
            now_s = yield from now()
            due = min(
                last_refresh + config.route_refresh_interval,
                (self._last_heartbeat or now_s) + config.heartbeat_interval,
            )
            if lookup is not None:
                due = min(due, lookup.next_due(bool(self._namesrv_addrs)) or now_s)
            # Wake at least once a second so that closing is noticed promptly.
            yield from sleep(min(1.0, max(0.0, due - now_s)))

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
