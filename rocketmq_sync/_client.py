# Generated from rocketmq_asyncio/_client.py by scripts/unasync.py: do not edit.
# Edit rocketmq_asyncio/_client.py, then run: python scripts/unasync.py
"""The client classes, written once: each a thin shell running core flows.

``rocketmq_sync/_client.py`` is the source of every driver's classes;
``rocketmq_sync/_client.py`` is generated from it by ``scripts/unasync.py``
(coroutine syntax removed, the names of the table there replaced). What differs
between the drivers lives in their ``_shell`` modules, behind the same names.
Edit the asyncio source, then run ``python scripts/unasync.py``; lint checks the
two agree.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, Unpack

from rocketmq_proto.driver import (
    DEFAULT_CLUSTER,
    DEFAULT_TRACE_TOPIC,
    TRACE_SEND_TIMEOUT,
    BrokerStatus,
    Built,
    ClientOptions,
    ClusterInfo,
    ConsumeMessageDirectlyResult,
    ConsumerConfig,
    ConsumerConnection,
    ConsumerOptions,
    ConsumerRunningInfo,
    ConsumeStats,
    Flow,
    Host,
    InvalidArgumentError,
    LifecycleOwner,
    LocalProtocolError,
    Message,
    MessageExt,
    MessageHandler,
    MessageQueue,
    Perm,
    ProducerCore,
    ProducerOptions,
    PullConsumerCore,
    PullConsumerOptions,
    PushCore,
    QueueSelector,
    RemotingCommand,
    ReplyWaiters,
    RequestTimeoutError,
    RocketMQError,
    SendResult,
    SimpleConsumerOptions,
    SubscriptionGroupConfig,
    TopicOffset,
    TopicRouteData,
    TraceRecord,
    TransactionState,
    build_admin,
    build_producer,
    build_pull_consumer,
    build_push_consumer,
    build_simple_consumer,
    build_transaction_producer,
    log_fields,
    make_reply_message,
    supervised,
)

from ._host import local_ip
from ._shell import (
    DefaultRuntime,
    Engine,
    Future,
    LocalTransaction,
    Runtime,
    TransactionChecker,
    bounded_handler,
    cancel_and_wait,
    deliver,
    monotonic,
    new_signal,
    new_waiter,
    wait_all,
    wait_signal,
    wait_waiter,
)

T = TypeVar("T")


def _host() -> Host:
    """What the core's builders take from this process and host."""
    return Host(
        pid=os.getpid(),
        nonce=random.getrandbits(48),
        id_seed=random.getrandbits(32),
        default_ip=local_ip(),
        environ=os.environ,
    )


#: Seconds :meth:`Producer.close` waits by default for the sends in flight.
DEFAULT_CLOSE_TIMEOUT = 5.0


class _ClientBase:
    """What every client object has: settings, the session core, a runtime, an
    engine running flows on connections, upkeep."""

    #: The runtime the class runs on; ``rocketmq_gevent`` binds its own.
    runtime_factory: ClassVar[Callable[..., Runtime]] = DefaultRuntime

    def __init__(self, built: Built[Any], runtime: Runtime | None = None) -> None:
        self._settings = built.settings
        self._core = built.session
        self._log = self._settings.transport.logger or logging.getLogger(__package__)
        #: This client's own runtime (made here, or by a subclass for it): closed with it.
        self._runtime = runtime if runtime is not None else type(self).runtime_factory()
        self._lock = self._runtime.Lock()
        #: Held by methods that touch core state directly (see ``Runtime.core_lock``).
        self._core_lock = self._runtime.core_lock
        self._engine: Engine | None = None
        #: The class's own cores whose lifecycle this shell moves (a producer's, an
        #: admin's); a consumer's core is moved by its start and shutdown flows.
        self._own_cores: tuple[LifecycleOwner, ...] = ()
        self._maintenance: Future[None] | None = None
        #: The message trace (``enable_trace=True``) and its dispatch flow's task.
        self._tracer = built.tracer
        self._trace_task: Future[None] | None = None
        self._closing = False

    @property
    def client_id(self) -> str:
        return self._core.client_id

    def stats(self) -> dict[str, Any]:
        """A snapshot of what this client did, built from counters it keeps anyway
        (no dependency, no background work): ``client_id``; for a producer,
        ``sends`` (``ok``, ``failed``, ``messages``, and ``latency`` with ``count``,
        ``p50_ms``, ``p99_ms``, ``max_ms`` over the last 4096 sends); for a push
        consumer, ``consume`` (messages ``ok``, ``failed`` (each is retried),
        ``dead_lettered``, and ``process_time`` and ``await_time`` summaries as
        ``latency``) and ``queues`` (per held queue: ``cached_messages``,
        ``cached_bytes``, ``lag``); for a pull consumer, ``polled`` and ``queues``;
        for a simple consumer, ``received``, ``acked``, ``dead_lettered``; with
        ``enable_trace``, ``trace`` (records ``recorded``, ``sent``, ``buffered``,
        ``dropped``, ``failed``). Safe from any thread, a hook included: it reads the
        counters without stopping the client (each is copied whole; two may be a
        moment apart)."""
        snapshot: dict[str, Any] = {"client_id": self.client_id, **self._stats()}
        if self._tracer is not None:
            snapshot["trace"] = self._tracer.stats()
        return snapshot

    def _stats(self) -> dict[str, Any]:
        """Hook: the class's own part of :meth:`stats`."""
        return {}

    def add_hook(self, hook: object) -> None:
        """Call ``hook`` (a :class:`rocketmq_proto.Hook`, or any object with some of
        its methods) before and after each send, consume and remoting request of
        this client, from the next one on; hooks given as the ``hooks`` option
        come first. A hook that raises is logged and changes nothing."""
        self._core.hooks.add(hook)

    def remove_hook(self, hook: object) -> None:
        """Stop calling ``hook``."""
        self._core.hooks.remove(hook)

    def start(self) -> None:
        """Open the client (connections are made on first use).

        A start that fails (a consumer with no subscription, brokers refusing
        its group...) closes the client and raises: a closed client cannot be
        started again. Starting a started client does nothing.
        """
        with self._lock:
            if self._closing:
                raise LocalProtocolError("a closed client cannot be started again")
            if self._engine is not None:
                return
            engine = Engine(self._settings.transport, self._on_server_request, self._runtime)
            self._core.start()  # once the engine is made: a failure there leaves it created
            for core in self._own_cores:
                core.start()
            self._engine = engine
            self._maintenance = self._upkeep_of(
                self._core.maintenance_flow, lambda: self._core.closed, "client upkeep"
            )
            if self._tracer is not None:
                self._trace_task = self._upkeep_of(
                    self._tracer.dispatch_flow, lambda: self._core.closed, "trace dispatch"
                )
        try:
            self._on_started()
        except BaseException:
            self.close()
            raise

    def _on_started(self) -> None:
        """Hook: what a client starts once its engine runs (a consumer's start)."""

    def _upkeep_of(
        self, make: Callable[[], Flow[None]], stopped: Callable[[], bool], what: str
    ) -> Future[None]:
        """Start an upkeep flow under the core's supervisor (restarted if it fails)."""
        return self._start(
            supervised(make, stopped, what, self._log),
            name=f"rocketmq-{what.replace(' ', '-')}-{self.client_id}",
        )

    def _engine_or_fail(self, flow: Flow[Any]) -> Engine:
        engine = self._engine
        if engine is None:
            flow.close()
            raise LocalProtocolError(
                f"{type(self).__name__} is not started (use 'with' or start())"
            )
        return engine

    def _run(self, flow: Flow[T]) -> T:
        return self._engine_or_fail(flow).run(flow)

    def _start(self, flow: Flow[T], name: str | None = None) -> Future[T]:
        return self._engine_or_fail(flow).start(flow, name)

    def _on_server_request(self, addr: str, command: RemotingCommand) -> Future[Any]:
        # Started, not waited for: the transport answers when the flow ends, so
        # nothing is held while the flow waits for a user callable.
        return self._start(self._core.handle_server_request(addr, command))

    def _unregister(self) -> None:
        """Hook: tell brokers this client's groups are gone."""

    def _wind_down(self, timeout: float | None) -> None:
        """Hook: finish this client's own work before it closes (sends in flight,
        a consumer's handlers and offsets); once, even when closes race."""

    def close(self) -> None:
        """Stop upkeep, unregister from brokers, close connections."""
        self._close(None)

    def _close(self, timeout: float | None) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wind_down(timeout)
        self._flush_trace()
        self._core.begin_close()
        for core in self._own_cores:
            core.begin_close()
        if self._maintenance is not None:
            cancel_and_wait(self._maintenance)
        if self._trace_task is not None:
            cancel_and_wait(self._trace_task)
        if self._engine is not None:
            try:
                self._unregister()
            except Exception as exc:  # closing must finish whatever the brokers say
                self._log.info(
                    "unregister failed while closing: %s",
                    exc,
                    extra=log_fields(client=self.client_id),
                )
            self._engine.close()
        self._core.finish_close()
        for core in self._own_cores:
            core.finish_close()
        self._runtime.close()

    def _flush_trace(self) -> None:
        """Send the trace records still buffered (up to ``TRACE_SEND_TIMEOUT``)."""
        tracer = self._tracer
        if tracer is None or self._engine is None:
            return
        try:
            left = self._run(tracer.flush_flow(TRACE_SEND_TIMEOUT))
        except Exception as exc:  # closing must finish
            self._log.warning(
                "trace records not flushed while closing: %s",
                exc,
                extra=log_fields(client=self.client_id),
            )
            return
        if left:
            self._log.warning(
                "closing with %d trace records unsent",
                left,
                extra=log_fields(client=self.client_id),
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_engine", None) is not None and not getattr(self, "_closing", True):
            warnings.warn(
                f"unclosed {type(self).__name__} {self.client_id}",
                ResourceWarning,
                stacklevel=1,
            )


class Producer(_ClientBase):
    """Sends messages. ``with Producer("127.0.0.1:9876", group="g") as p: p.send(m)``.

    Safe to share between the tasks (blocking drivers: threads, greenlets) of its
    runtime. Options (all keyword, Java's defaults): :class:`rocketmq_proto.ProducerOptions`.
    """

    def __init__(
        self, namesrv_addr: str | Iterable[str] | None = None, **options: Unpack[ProducerOptions]
    ):
        self._init_from(build_producer(namesrv_addr, options, _host()))

    def _init_from(self, built: Built[ProducerCore]) -> None:
        super().__init__(built)
        self._producer = built.core
        self._own_cores = (self._producer,)
        self._replies = ReplyWaiters(self._deliver_reply)
        self._replies.register(self._core)
        #: Sends started and not yet done, for flush() and close(). Only set.add,
        #: set.discard and set.copy touch it: each is atomic under the GIL.
        self._sends: set[Future[Any]] = set()

    @property
    def group(self) -> str:
        return self._producer.config.group

    def _stats(self) -> dict[str, Any]:
        return self._producer.stats()

    def _unregister(self) -> None:
        self._producer.unregister()
        self._run(self._core.unregister_flow(producer_group=self._producer.group))

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every send started before this call by :meth:`send_async` (in
        the blocking drivers, also by :meth:`send` in other threads) is done,
        succeeded or failed (their outcome is read from their futures).

        Raises the builtin :class:`TimeoutError` if some are still in flight after
        ``timeout`` seconds (``None``: as long as they take; each send is bounded
        by its own timeout anyway). The sends are not cancelled.
        """
        pending = self._sends.copy()
        left = wait_all(pending, timeout)
        if left:
            raise TimeoutError(
                f"flush: {left} of {len(pending)} sends still in flight after {timeout:g} s"
            )

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Finish the sends in flight (as :meth:`flush`, up to ``timeout`` seconds:
        5 by default, ``None`` for as long as they take), then unregister and close.

        Sends still in flight after ``timeout`` fail with :class:`ConnectionClosedError`.
        """
        self._close(timeout)

    def _wind_down(self, timeout: float | None) -> None:
        if self._engine is not None:
            try:
                self.flush(timeout)
            except TimeoutError as exc:
                self._log.warning(
                    "closing with sends in flight, which fail: %s",
                    exc,
                    extra=log_fields(client=self.client_id, group=self.group),
                )

    def send(
        self,
        message: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
    ) -> SendResult:
        """Send and wait for the broker's answer (retrying on another broker if needed).

        ``queue``, ``sharding_key`` (one key, one queue: ordered messages) or
        ``selector(queues, message, arg)`` pin the queue; then there is no retry.
        An exception raised by ``selector`` becomes :class:`UserCallbackError`
        (the original as its ``__cause__``). ``timeout`` (default: the
        ``send_timeout`` option) bounds the whole send, route lookups and retries
        included (:class:`RequestTimeoutError`).
        """
        flow = self._producer.send_flow(
            message, timeout, queue=queue, sharding_key=sharding_key, selector=selector, arg=arg
        )
        return self._engine_or_fail(flow).run_send(flow, self._sends)

    def send_async(
        self,
        message: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
    ) -> Future[SendResult]:
        """Start a send and return at once: a :class:`Future` of its result (pipelined
        sends). In the blocking drivers, a :class:`concurrent.futures.Future`.

        :meth:`flush` waits for the sends started so far; :meth:`close` finishes them.
        """
        flow = self._producer.send_flow(
            message, timeout, queue=queue, sharding_key=sharding_key, selector=selector, arg=arg
        )
        future = self._start(flow)
        sends = self._sends
        sends.add(future)
        future.add_done_callback(sends.discard)
        return future

    def send_oneway(
        self,
        message: Message,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
    ) -> None:
        """Send without waiting for (or getting) any answer: the broker sends none."""
        self._run(
            self._producer.send_flow(
                message,
                queue=queue,
                sharding_key=sharding_key,
                selector=selector,
                arg=arg,
                oneway=True,
            )
        )

    def send_batch(
        self,
        messages: Sequence[Message],
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
    ) -> SendResult:
        """Send messages of one topic as one request; ``msg_id`` lists their ids, comma-joined."""
        return self._run(self._producer.send_batch_flow(messages, timeout, queue=queue))

    def request(self, message: Message, timeout: float = 3.0) -> MessageExt:
        """Send a request message and wait for its reply (request-reply)."""
        start = monotonic()
        correlation_id = self._run(self._producer.prepare_request(message, timeout))
        waiter = new_waiter(self._runtime)
        self._replies.expect(correlation_id, waiter)
        try:
            self.send(message, max(timeout - (monotonic() - start), 0.001))
            remaining = max(timeout - (monotonic() - start), 0.0)
            try:
                reply: MessageExt = wait_waiter(waiter, remaining)
                return reply
            except TimeoutError:
                raise RequestTimeoutError(
                    f"no reply to request {correlation_id} on {message.topic!r} within {timeout} s"
                ) from None
        finally:
            self._replies.forget(correlation_id)

    def send_reply(
        self, request: MessageExt, body: bytes, timeout: float | None = None
    ) -> SendResult:
        """Answer a request message received by a consumer."""
        return self.send(make_reply_message(request, body), timeout)

    @staticmethod
    def _deliver_reply(token: Any, message: MessageExt) -> None:
        deliver(token, message)


class TransactionProducer(Producer):
    """A producer of transactional messages.

    ``checker(message)`` answers the broker's check-back for a transaction whose
    outcome it does not know (in asyncio, a coroutine function or a plain
    callable). The
    ``group`` option is required and may not be ``DEFAULT_PRODUCER``: the broker
    sends its check-back to a producer of the group.
    """

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        checker: TransactionChecker | None = None,
        **options: Unpack[ProducerOptions],
    ) -> None:
        self._init_from(build_transaction_producer(namesrv_addr, options, _host(), checker))

    def send_in_transaction(
        self,
        message: Message,
        execute_local: LocalTransaction,
        arg: Any = None,
        timeout: float | None = None,
    ) -> tuple[SendResult, TransactionState]:
        """Send a half message, run ``execute_local(message, arg)``, commit or roll back.

        ``execute_local`` returns a :class:`TransactionState` (``True``/``False`` for
        commit/rollback); an exception or UNKNOWN leaves it to the check-back.
        """
        return self._run(self._producer.transaction_flow(message, execute_local, arg, timeout))


class Admin(_ClientBase):
    """Topics, groups, offsets, routes and message lookups."""

    def __init__(
        self, namesrv_addr: str | Iterable[str] | None = None, **options: Unpack[ClientOptions]
    ):
        built = build_admin(namesrv_addr, options, _host())
        super().__init__(built)
        self._admin = built.core
        self._own_cores = (self._admin,)

    def create_topic(
        self,
        topic: str,
        *,
        cluster: str = DEFAULT_CLUSTER,
        read_queue_nums: int = 8,
        write_queue_nums: int = 8,
        perm: int = Perm.READ | Perm.WRITE,
        order: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Create (or update) ``topic`` on every master of ``cluster``; returns broker names."""
        return self._run(
            self._admin.create_topic_flow(
                topic,
                cluster=cluster,
                read_queue_nums=read_queue_nums,
                write_queue_nums=write_queue_nums,
                perm=perm,
                order=order,
                attributes=attributes,
            )
        )

    def delete_topic(self, topic: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        self._run(self._admin.delete_topic_flow(topic, cluster=cluster))

    def create_group(self, group: str, *, cluster: str = DEFAULT_CLUSTER, **settings: Any) -> None:
        self._run(self._admin.create_group_flow(group, cluster=cluster, **settings))

    def set_consume_mode(
        self,
        topic: str,
        group: str,
        mode: str,
        *,
        pop_share_queue_num: int = -1,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        """How ``group`` consumes ``topic``, on every master of ``cluster``:
        ``"POP"`` or ``"PULL"`` (as ``mqadmin setConsumeMode``); the topic and the
        group must exist. Push consumers with ``consume_mode="auto"`` follow it
        within 20 s. ``pop_share_queue_num`` is for Java's POP consumers, which pop
        that many queues beyond their share (-1: all); this client's pop all."""
        self._run(
            self._admin.set_consume_mode_flow(
                topic, group, mode, pop_share_queue_num=pop_share_queue_num, cluster=cluster
            )
        )

    def delete_group(self, group: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        self._run(self._admin.delete_group_flow(group, cluster=cluster))

    def cluster_info(self) -> ClusterInfo:
        return self._run(self._core.cluster_info_flow())

    def topic_route(self, topic: str) -> TopicRouteData:
        return self._run(self._admin.route_flow(topic))

    def topic_offsets(self, topic: str) -> list[TopicOffset]:
        """Each queue of ``topic`` with its min and max offsets and the time its
        last message was stored (the topic's stats, as ``mqadmin topicStatus``)."""
        return self._run(self._admin.topic_offsets_flow(topic))

    def max_offset(self, queue: MessageQueue) -> int:
        return self._run(self._admin.max_offset_flow(queue))

    def min_offset(self, queue: MessageQueue) -> int:
        return self._run(self._admin.min_offset_flow(queue))

    def search_offset(self, queue: MessageQueue, timestamp_ms: int) -> int:
        return self._run(self._admin.search_offset_flow(queue, timestamp_ms))

    def consumer_offset(self, group: str, queue: MessageQueue) -> int | None:
        return self._run(self._admin.query_consumer_offset_flow(group, queue))

    def reset_offsets_by_time(
        self, group: str, topic: str, timestamp_ms: int, *, force: bool = True
    ) -> dict[MessageQueue, int]:
        """Move ``group``'s offsets of ``topic`` to the first message stored at
        ``timestamp_ms`` or later (``force=False``: only back); the new offsets.
        Online consumers of the group restart the queues from there."""
        return self._run(
            self._admin.reset_offsets_by_time_flow(group, topic, timestamp_ms, force=force)
        )

    def query_messages(
        self,
        topic: str,
        key: str,
        *,
        max_num: int = 32,
        begin_timestamp: int = 0,
        end_timestamp: int = 2**63 - 1,
    ) -> list[MessageExt]:
        return self._run(
            self._admin.query_messages_flow(
                topic,
                key,
                max_num=max_num,
                begin_timestamp=begin_timestamp,
                end_timestamp=end_timestamp,
            )
        )

    def query_trace(
        self, msg_id: str, trace_topic: str = DEFAULT_TRACE_TOPIC, *, max_num: int = 64
    ) -> list[TraceRecord]:
        """The trace records of the message ``msg_id`` (the id ``send`` returned) in
        ``trace_topic``: its sends (``Pub``), consumes (``SubBefore``/``SubAfter``) and
        transaction outcome (``EndTransaction``), written by this client or by the
        Java and Go clients, as ``mqadmin queryMsgTraceById`` reads them. Traces
        are sent in the background: a record may show up a second or two after
        its send or consume. Needs the name servers (a proxy does not serve this
        query)."""
        return self._run(self._admin.query_trace_flow(msg_id, trace_topic, max_num=max_num))

    def consumer_progress(self, group: str, topic: str | None = None) -> ConsumeStats:
        """``group``'s progress on each queue (of ``topic`` only, when given), as
        ``mqadmin consumerProgress`` shows it: ``offset_table`` maps each
        :class:`MessageQueue` to its broker offset, consumer offset, ``lag`` and
        last consume time (``last_timestamp``, ms); ``total_lag`` sums the lags.
        Raises :class:`RouteNotFoundError` for a group no broker knows."""
        return self._run(self._admin.consumer_progress_flow(group, topic))

    def consumer_connections(self, group: str) -> ConsumerConnection:
        """``group``'s clients (client id, address, language, version) and
        subscriptions, as ``mqadmin consumerConnection`` shows them."""
        return self._run(self._admin.consumer_connections_flow(group))

    def consumer_running_info(self, group: str, client_id: str) -> ConsumerRunningInfo:
        """What consumer ``client_id`` of ``group`` (a ``ClientConnection.client_id``)
        says of itself: its ``properties`` (settings, start time), subscriptions and
        the ``queues`` it holds with their cached messages and offsets, as
        ``mqadmin consumerStatus`` shows it."""
        return self._run(self._admin.consumer_running_info_flow(group, client_id))

    def view_message(self, msg_id: str, topic: str | None = None) -> MessageExt:
        """A message by id: an offset message id (as ``mqadmin queryMsgById``), or
        with ``topic`` the id ``send`` returned (its UNIQ_KEY)."""
        return self._run(self._admin.view_message_flow(msg_id, topic))

    def message_at(self, queue: MessageQueue, offset: int) -> MessageExt:
        """The message at ``offset`` of ``queue`` (as ``mqadmin queryMsgByOffset``);
        :class:`QueryNotFoundError` if the queue holds none there."""
        return self._run(self._admin.message_at_flow(queue, offset))

    def list_topics(self) -> list[str]:
        """Every topic the name servers know, sorted (as ``mqadmin topicList``),
        the brokers' own and retry topics included."""
        return self._run(self._admin.list_topics_flow())

    def list_groups(
        self, *, cluster: str | None = None, include_system: bool = False
    ) -> list[SubscriptionGroupConfig]:
        """The consumer groups of the brokers of ``cluster`` (``None``: every
        cluster), by name, each with its settings as the first broker holding it
        has them; the brokers' predefined groups only with ``include_system``."""
        return self._run(
            self._admin.list_groups_flow(cluster=cluster, include_system=include_system)
        )

    def reset_offsets(
        self,
        group: str,
        topic: str,
        to: str | Mapping[MessageQueue, int],
        *,
        force: bool = True,
    ) -> dict[MessageQueue, int]:
        """Move ``group``'s offsets of ``topic``: ``to`` is ``"earliest"`` (the
        first message kept), ``"latest"`` (after the last one) or a mapping of
        queues to offsets. The first two work as :meth:`reset_offsets_by_time`
        (online consumers are told); explicit offsets are written as they are,
        and need the group to have no consumer online. The new offsets."""
        if isinstance(to, str):
            where = to.lower()
            if where not in ("earliest", "latest"):
                raise InvalidArgumentError(
                    f"reset offsets to 'earliest', 'latest' or a queue->offset mapping, not {to!r}"
                )
            timestamp = 0 if where == "earliest" else -1
            return self.reset_offsets_by_time(group, topic, timestamp, force=force)
        return self._run(self._admin.set_offsets_flow(group, topic, to))

    def clone_offsets(self, src_group: str, dst_group: str, topic: str) -> dict[MessageQueue, int]:
        """Give ``dst_group`` the offsets ``src_group`` committed on ``topic`` (as
        ``mqadmin cloneGroupOffset``); the offsets written, by queue. Consumers of
        ``dst_group`` online keep their own offsets and may write them back."""
        return self._run(self._admin.clone_offsets_flow(src_group, dst_group, topic))

    def broker_config(self, broker: str) -> dict[str, str]:
        """The settings of ``broker`` (an address, or a broker name for its master),
        as ``mqadmin getBrokerConfig`` shows them."""
        return self._run(self._admin.broker_config_flow(broker))

    def update_broker_config(self, broker: str, settings: Mapping[str, Any]) -> None:
        """Change settings of a running ``broker`` (an address or a broker name), as
        ``mqadmin updateBrokerConfig``; until its restart unless the broker persists
        them. Brokers refuse some keys (:class:`NoPermissionError`)."""
        self._run(self._admin.update_broker_config_flow(broker, settings))

    def broker_runtime_stats(self, broker: str) -> dict[str, str]:
        """The runtime figures of ``broker`` (an address or a broker name): TPS,
        totals, disk use, versions..., under Java's names (as ``mqadmin brokerStatus``)."""
        return self._run(self._admin.broker_runtime_stats_flow(broker))

    def cluster_list(self, cluster: str | None = None) -> list[BrokerStatus]:
        """Every member of ``cluster`` (``None``: every cluster) with its runtime
        figures (``in_tps``, ``out_tps``, ``version``...), as ``mqadmin clusterList``;
        a member that does not answer comes with its ``error``."""
        return self._run(self._admin.cluster_list_flow(cluster))

    def consume_message_directly(
        self,
        group: str,
        client_id: str,
        msg_id: str,
        topic: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ConsumeMessageDirectlyResult:
        """Hand message ``msg_id`` (an offset message id, or with ``topic`` the id
        ``send`` returned) once more to consumer ``client_id`` (a
        ``ClientConnection.client_id``) of ``group``, through its broker, as
        ``mqadmin queryMsgById -g -d`` does: the consumer runs its handler on it
        and answers; no offset moves. A push consumer of this client answers too."""
        return self._run(
            self._admin.consume_message_directly_flow(
                group, client_id, msg_id, topic, timeout=timeout
            )
        )


class _ConsumerBase(_ClientBase):
    """What both consumers share: a group, subscriptions, the consumer core's
    start and shutdown flows, and its supervised upkeep."""

    #: Names the consumer in logs and in its upkeep task's name.
    _kind: ClassVar[str]
    _consumer: PushCore | PullConsumerCore
    _consumer_upkeep: Future[None] | None = None

    @property
    def group(self) -> str:
        return self._consumer.config.group

    def _stats(self) -> dict[str, Any]:
        return self._consumer.stats()

    def subscribe(self, topic: str, expression: str = "*", *, sql: bool = False) -> None:
        """Subscribe to ``topic``: tags (``*``, ``"a || b"``) or, with ``sql``, an SQL92
        filter. Rebalance shares the topic's queues out among the group.

        Safe on a running consumer: the next rebalance takes it up. In asyncio,
        call it on the loop's thread (from a handler's worker thread, use
        ``loop.call_soon_threadsafe``); the blocking drivers take any thread.
        """
        with self._core_lock:  # flows of this consumer read the subscriptions meanwhile
            self._consumer.subscribe(topic, expression, "SQL92" if sql else "TAG")

    def _on_started(self) -> None:
        self._run(self._consumer.start_flow())
        self._on_consumer_started()
        self._consumer_upkeep = self._upkeep_of(
            self._consumer.maintenance_flow, lambda: self._consumer.closed, f"{self._kind} upkeep"
        )

    def _on_consumer_started(self) -> None:
        """Hook: what follows the consumer core's start, before its upkeep starts."""

    def _wind_down(self, timeout: float | None) -> None:
        if self._engine is not None and not self._consumer.closed:
            try:
                self._run(self._consumer.shutdown_flow())
            except Exception as exc:
                self._log.warning(
                    "%s shutdown incomplete: %s",
                    self._kind,
                    exc,
                    extra=log_fields(client=self.client_id, group=self.group),
                )
        self._consumer.close_at_once()  # closed already unless no shutdown flow ran
        if self._consumer_upkeep is not None:
            cancel_and_wait(self._consumer_upkeep)


class PushConsumer(_ConsumerBase):
    """Receives messages pushed to ``handler(messages) -> ConsumeResult``.

    ``handler`` gets a list of :class:`MessageExt` (one by default, up to
    ``consume_message_batch_max_size``). Returning ``None`` (nothing), ``True``
    or ``ConsumeResult.SUCCESS`` means consumed; a failure is explicit:
    ``RETRY_LATER`` (or ``False``; orderly: ``SUSPEND_CURRENT_QUEUE_A_MOMENT``)
    or an exception, which is logged with its traceback. At most
    ``consume_thread_max`` handlers run at once. In asyncio a coroutine function
    is awaited and a plain function runs in a thread pool, so it may block; the
    blocking drivers run handlers on their worker threads (greenlets under
    gevent). With ``consume_mode="pop"`` (RocketMQ 5.x brokers) it does not
    rebalance and pull: every consumer of the group pops from all queues and acks
    what its handler consumed (a failure comes back after the broker's retry
    delay), and :meth:`assigned_queues` is empty. Options:
    :class:`rocketmq_proto.ConsumerOptions` (``group`` is required)::

        consumer = PushConsumer("127.0.0.1:9876", handle, group="g")
        consumer.subscribe("Orders", "paid || shipped")
        with consumer:
            ...
    """

    _kind = "consumer"

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        handler: MessageHandler | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        runtime: Runtime | None = None

        def run_handler(config: ConsumerConfig, handler: MessageHandler) -> MessageHandler:
            # The runtime runs the handlers (at most consume_thread_max at once); the
            # flows answering broker requests only pass through it without waiting.
            nonlocal runtime
            runtime = type(self).runtime_factory(max_user_workers=config.consume_thread_max)
            return bounded_handler(runtime, handler, lambda: self._consumer.closed)

        built = build_push_consumer(namesrv_addr, options, _host(), handler, run_handler)
        super().__init__(built, runtime)
        self._consumer: PushCore = built.core

    def unsubscribe(self, topic: str) -> None:
        """Stop consuming ``topic`` (its queues go at the next rebalance); called
        as :meth:`subscribe`."""
        with self._core_lock:
            self._consumer.unsubscribe(topic)

    def close(self) -> None:
        """Stop pulling, let running handlers finish, commit offsets, unregister, close."""
        self._close(None)

    @property
    def consumed(self) -> int:
        """Messages handed to the handler so far."""
        return self._consumer.consumed

    def assigned_queues(self) -> list[MessageQueue]:
        """The queues this consumer pulls now (its share after the last rebalance)."""
        with self._core_lock:
            return sorted(self._consumer.queues)


class PullConsumer(_ConsumerBase):
    """Messages on demand: ``poll(timeout)``, or ``for message in consumer``.

    ``subscribe`` (queues shared out by rebalance, like a push consumer) or
    ``assign`` queues yourself. Polled offsets are committed every 5 s
    (``auto_commit``) or by :meth:`commit`. Options:
    :class:`rocketmq_proto.PullConsumerOptions` (``group`` is required).
    """

    _kind = "pull consumer"

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        **options: Unpack[PullConsumerOptions],
    ) -> None:
        built = build_pull_consumer(
            namesrv_addr, options, _host(), notify=lambda: self._arrived.set()
        )
        super().__init__(built)
        self._arrived = new_signal(self._runtime)
        self._consumer: PullConsumerCore = built.core
        self._pending_assign: list[MessageQueue] | None = None

    def assign(self, queues: Iterable[MessageQueue]) -> None:
        """Consume exactly ``queues`` (no rebalance)."""
        queues = list(queues)
        if self._engine is None:
            self._pending_assign = queues
            return
        self._run(self._consumer.assign_flow(queues))

    def _on_consumer_started(self) -> None:
        if self._pending_assign is not None:
            self._run(self._consumer.assign_flow(self._pending_assign))

    def poll(self, timeout: float = 1.0, max_records: int | None = None) -> list[MessageExt]:
        """Messages that arrived, waiting up to ``timeout`` seconds for the first.

        Raises :class:`LocalProtocolError` before :meth:`start`.
        """
        self._consumer.check_started()
        deadline = monotonic() + timeout
        while True:
            with self._core_lock:
                self._arrived.clear()
                messages = self._consumer.take(max_records)
            if messages:
                return messages
            remaining = deadline - monotonic()
            if remaining <= 0:
                return []
            wait_signal(self._arrived, remaining)

    def __iter__(self) -> Iterator[MessageExt]:
        """Every message, as it arrives (ends when the consumer is closed)."""
        return self._iterate()

    def _iterate(self) -> Iterator[MessageExt]:
        while not self._consumer.closed:
            yield from self.poll(1.0)

    def seek(self, queue: MessageQueue, offset: int) -> None:
        self._run(self._consumer.seek_flow(queue, offset))

    def seek_to_beginning(self, queue: MessageQueue) -> None:
        self._run(self._consumer.seek_to_begin_flow(queue))

    def seek_to_end(self, queue: MessageQueue) -> None:
        self._run(self._consumer.seek_to_end_flow(queue))

    def offset_for_timestamp(self, queue: MessageQueue, timestamp_ms: int) -> int:
        return self._run(self._consumer.offset_for_timestamp_flow(queue, timestamp_ms))

    def commit(self, offsets: dict[MessageQueue, int] | None = None) -> None:
        """Store the polled offsets (or ``offsets``) on the brokers now."""
        self._run(self._consumer.commit_flow(offsets))

    def committed(self, queue: MessageQueue) -> int | None:
        return self._run(self._consumer.committed_flow(queue))

    def pause(self, queues: Iterable[MessageQueue]) -> None:
        with self._core_lock:
            self._consumer.pause(queues, True)

    def resume(self, queues: Iterable[MessageQueue]) -> None:
        with self._core_lock:
            self._consumer.pause(queues, False)

    def assignment(self) -> list[MessageQueue]:
        with self._core_lock:
            return self._consumer.assignment()

    def queues_of(self, topic: str) -> list[MessageQueue]:
        return self._run(self._consumer.queues_of_flow(topic))

    def close(self) -> None:
        """Stop fetching, commit the polled offsets, unregister, close."""
        self._close(None)

    def _wind_down(self, timeout: float | None) -> None:
        super()._wind_down(timeout)
        self._arrived.set()  # polls waiting now return


class SimpleConsumer(_ClientBase):
    """RocketMQ 5.x POP consumption: ``receive()`` messages, ``ack()`` each.

    The brokers hand a received message to no other consumer of the group for
    an invisible duration; one not acked by then is delivered again (its
    ``reconsume_times`` raised), and once it was delivered again more than
    ``max_reconsume_times`` times it goes to the group's dead-letter queue.
    Any number of consumers of a group share all queues: there is no
    rebalance. Needs RocketMQ 5 brokers
    (not the proxy's remoting port, which does not serve POP). Options:
    :class:`rocketmq_proto.SimpleConsumerOptions` (``group`` is required)::

        consumer = SimpleConsumer("127.0.0.1:9876", group="workers")
        consumer.subscribe("Orders")
        with consumer:
            for message in consumer.receive(16, invisible_duration=30):
                handle(message)
                consumer.ack(message)
    """

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        **options: Unpack[SimpleConsumerOptions],
    ) -> None:
        built = build_simple_consumer(namesrv_addr, options, _host())
        super().__init__(built)
        self._consumer = built.core
        self._own_cores = (self._consumer,)

    @property
    def group(self) -> str:
        return self._consumer.config.group

    def _stats(self) -> dict[str, Any]:
        return self._consumer.stats()

    def subscribe(self, topic: str, expression: str = "*", *, sql: bool = False) -> None:
        """Receive from ``topic``: tags (``*``, ``"a || b"``) or, with ``sql``, an
        SQL92 filter. Safe on a running consumer: the next receive takes it up."""
        with self._core_lock:
            self._consumer.subscribe(topic, expression, "SQL92" if sql else "TAG")

    def unsubscribe(self, topic: str) -> None:
        """Receive from ``topic`` no more."""
        with self._core_lock:
            self._consumer.unsubscribe(topic)

    def _on_started(self) -> None:
        self._run(self._consumer.start_flow())

    def _unregister(self) -> None:
        self._consumer.unregister()
        self._run(self._core.unregister_flow(consumer_group=self._consumer.group))

    def receive(
        self,
        max_messages: int = 16,
        invisible_duration: float | None = None,
        *,
        wait: float | None = None,
    ) -> list[MessageExt]:
        """Up to ``max_messages`` (1..32) messages, hidden from the group's other
        receives for ``invisible_duration`` seconds (default: the option, 60),
        waiting up to ``wait`` seconds for the first (default: the
        ``await_duration`` option, 15). ``[]`` if none came meanwhile.

        Ack each message once processed; one not acked in time is delivered again.
        """
        return self._run(self._consumer.receive_flow(max_messages, invisible_duration, wait))

    def ack(self, messages: MessageExt | Iterable[MessageExt]) -> None:
        """Ack a received message (or several: one batch ack per broker and topic):
        the group never gets it again. Raises the broker's error if one refused;
        the batches before it were acked. Ack a message before its invisible
        duration ends: after that it may be delivered again, even if the ack
        succeeds. Only its latest receipt handle (after
        :meth:`change_invisible_duration`) acks it."""
        batch = [messages] if isinstance(messages, MessageExt) else list(messages)
        self._run(self._consumer.ack_flow(batch))

    def change_invisible_duration(self, message: MessageExt, duration: float) -> None:
        """Hide ``message`` for ``duration`` seconds from now (to process it longer,
        or to have it back sooner). Its receipt handle changes: ``message`` gets
        the new one, and only that one acks it."""
        self._run(self._consumer.change_invisible_flow(message, duration))

    def __iter__(self) -> Iterator[MessageExt]:
        """Every message, as received (ends when the consumer is closed); ack each."""
        return self._iterate()

    def _iterate(self) -> Iterator[MessageExt]:
        while not self._consumer.closed:
            try:
                messages = self.receive()
            except RocketMQError:
                if self._consumer.closed:
                    return  # closed meanwhile (a receive then fails): the end
                raise
            yield from messages
