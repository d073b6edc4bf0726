"""The asyncio client classes: each a thin shell running core flows on the transport."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from rocketmq_proto.connection.connection import Reply
from rocketmq_proto.flows.admin import DEFAULT_CLUSTER, AdminCore, TopicOffset
from rocketmq_proto.flows.consumer.lite_pull import PullConsumerCore
from rocketmq_proto.flows.consumer.push import HANDLER_NOT_RUN, MessageHandler, PushConsumerCore
from rocketmq_proto.flows.effects import Flow, supervised
from rocketmq_proto.flows.producer import (
    ProducerCore,
    QueueSelector,
    ReplyWaiters,
    SendResult,
    make_reply_message,
)
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.message.model import Message, MessageExt, UniqueIdGenerator
from rocketmq_proto.options import (
    ClientOptions,
    ClientSettings,
    ConsumerOptions,
    ProducerOptions,
    PullConsumerOptions,
    check_transaction_group,
    client_settings,
    consumer_settings,
    ip_bytes,
    producer_settings,
    pull_consumer_settings,
)
from rocketmq_proto.wire.codes import Perm, TransactionState
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import ConfigError, LocalProtocolError, RequestTimeoutError
from rocketmq_proto.wire.route import ClusterInfo, MessageQueue, TopicRouteData

from ._host import local_ip
from ._interpreter import cancel_spawned, run_flow
from ._transport import RemotingClient

T = TypeVar("T")


def _host_facts(pid: int) -> dict[str, Any]:
    """What the settings builders take from this process and host."""
    return {
        "pid": pid,
        "nonce": random.getrandbits(48),
        "default_ip": local_ip(),
        "environ": os.environ,
    }


#: Seconds :meth:`Producer.close` waits by default for the sends in flight.
DEFAULT_CLOSE_TIMEOUT = 5.0


class _ClientBase:
    """What every client object has: settings, the session core, a transport, upkeep."""

    def __init__(self, settings: ClientSettings) -> None:
        self._settings = settings
        self._core = ClientCore(settings.client)
        self._log = settings.transport.logger or logging.getLogger("rocketmq_asyncio")
        self._remoting: RemotingClient | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def client_id(self) -> str:
        return self._core.client_id

    async def start(self) -> None:
        """Open the client (connections are made on first use)."""
        if self._remoting is not None:
            return
        if self._closing:
            raise LocalProtocolError("a closed client cannot be started again")
        transport = self._settings.transport
        self._remoting = RemotingClient(
            serialize_type=transport.serialize_type,
            ssl_context=transport.ssl_context,
            signer=transport.signer,
            connect_timeout=transport.connect_timeout,
            max_frame_size=transport.max_frame_size,
            request_handler=self._on_server_request,
            logger=transport.logger,
        )
        self._maintenance = self._upkeep_of(
            self._core.maintenance_flow, lambda: self._core.closed, "client upkeep"
        )

    def _upkeep_of(
        self, make: Callable[[], Flow[None]], stopped: Callable[[], bool], what: str
    ) -> asyncio.Task[None]:
        """Start an upkeep flow under the core's supervisor (restarted if it fails)."""
        return asyncio.create_task(
            self._run(supervised(make, stopped, what, self._log)),
            name=f"rocketmq-{what.replace(' ', '-')}-{self.client_id}",
        )

    async def _run(self, flow: Flow[T]) -> T:
        remoting = self._remoting
        if remoting is None:
            flow.close()
            raise LocalProtocolError(
                f"{type(self).__name__} is not started (use 'async with' or await start())"
            )
        return await run_flow(remoting, flow)

    async def _on_server_request(self, addr: str, command: RemotingCommand) -> Reply | None:
        return await self._run(self._core.handle_server_request(addr, command))

    async def _unregister(self) -> None:
        """Hook: tell brokers this client's groups are gone."""

    async def close(self) -> None:
        """Stop upkeep, unregister from brokers, close connections."""
        if self._closing:
            return
        self._closing = True
        self._core.closed = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        if self._remoting is not None:
            try:
                await self._unregister()
            except Exception as exc:  # closing must finish whatever the brokers say
                self._log.info("unregister failed while closing: %s", exc)
            await cancel_spawned(self._remoting)
            await self._remoting.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Producer(_ClientBase):
    """Sends messages. ``async with Producer("127.0.0.1:9876", group="g") as p: ...``

    Options (all keyword, Java's defaults): see :class:`rocketmq_proto.ProducerOptions`.
    """

    def __init__(
        self, namesrv_addr: str | Iterable[str] | None = None, **options: Unpack[ProducerOptions]
    ):
        pid = os.getpid()
        settings, config = producer_settings(
            namesrv_addr,
            options,
            **_host_facts(pid),
        )
        super().__init__(settings)
        ids = UniqueIdGenerator(ip_bytes(settings.client.client_ip), pid, random.getrandbits(32))
        self._producer = ProducerCore(self._core, config, ids)
        self._producer.register()
        self._replies = ReplyWaiters(self._deliver_reply)
        self._replies.register(self._core)
        #: Tasks of send_async() not yet done, for flush() and close().
        self._sends: set[asyncio.Task[SendResult]] = set()

    @property
    def group(self) -> str:
        return self._producer.config.group

    async def _unregister(self) -> None:
        self._producer.unregister()
        await self._run(self._core.unregister_flow(producer_group=self._producer.group))

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every send started by :meth:`send_async` before this call is
        done, succeeded or failed (their outcome is read from their tasks).

        Raises the builtin :class:`TimeoutError` if some are still in flight after
        ``timeout`` seconds (``None``: as long as they take; each send is bounded
        by its own timeout anyway). The sends are not cancelled.
        """
        pending = set(self._sends)
        if not pending:
            return
        _, not_done = await asyncio.wait(pending, timeout=timeout)
        if not_done:
            raise TimeoutError(
                f"flush: {len(not_done)} of {len(pending)} sends still in flight "
                f"after {timeout:g} s"
            )

    async def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Finish the sends in flight (as :meth:`flush`, up to ``timeout`` seconds:
        5 by default, ``None`` for as long as they take), then unregister and close.

        Sends still in flight after ``timeout`` fail with :class:`ConnectionClosedError`.
        """
        if not self._closing and self._remoting is not None:
            try:
                await self.flush(timeout)
            except TimeoutError as exc:
                self._log.warning("closing with sends in flight, which fail: %s", exc)
        await super().close()

    async def send(
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
        result = await self._run(
            self._producer.send_flow(
                message, timeout, queue=queue, sharding_key=sharding_key, selector=selector, arg=arg
            )
        )
        assert result is not None
        return result

    def send_async(
        self,
        message: Message,
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
    ) -> asyncio.Task[SendResult]:
        """Start a send and return at once: a task to await later (pipelined sends).

        :meth:`flush` waits for the sends started so far; :meth:`close` finishes them.
        """
        task = asyncio.ensure_future(
            self.send(
                message, timeout, queue=queue, sharding_key=sharding_key, selector=selector, arg=arg
            )
        )
        sends = self._sends
        sends.add(task)
        task.add_done_callback(sends.discard)
        return task

    async def send_oneway(
        self,
        message: Message,
        *,
        queue: MessageQueue | None = None,
        sharding_key: str | None = None,
        selector: QueueSelector | None = None,
        arg: Any = None,
    ) -> None:
        """Send without waiting for (or getting) any answer: the broker sends none."""
        await self._run(
            self._producer.send_flow(
                message,
                queue=queue,
                sharding_key=sharding_key,
                selector=selector,
                arg=arg,
                oneway=True,
            )
        )

    async def send_batch(
        self,
        messages: Sequence[Message],
        timeout: float | None = None,
        *,
        queue: MessageQueue | None = None,
    ) -> SendResult:
        """Send messages of one topic as one request; ``msg_id`` lists their ids, comma-joined."""
        return await self._run(self._producer.send_batch_flow(messages, timeout, queue=queue))

    async def request(self, message: Message, timeout: float = 3.0) -> MessageExt:
        """Send a request message and wait for its reply (request-reply)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        correlation_id = await self._run(self._producer.prepare_request(message, timeout))
        waiter: asyncio.Future[MessageExt] = loop.create_future()
        self._replies.expect(correlation_id, waiter)
        try:
            remaining = timeout - (loop.time() - start)
            await self.send(message, max(remaining, 0.001))
            remaining = timeout - (loop.time() - start)
            try:
                return await asyncio.wait_for(waiter, max(remaining, 0.0))
            except TimeoutError:
                raise RequestTimeoutError(
                    f"no reply to request {correlation_id} on {message.topic!r} within {timeout} s"
                ) from None
        finally:
            self._replies.forget(correlation_id)

    async def send_reply(
        self, request: MessageExt, body: bytes, timeout: float | None = None
    ) -> SendResult:
        """Answer a request message received by a consumer."""
        return await self.send(make_reply_message(request, body), timeout)

    @staticmethod
    def _deliver_reply(token: Any, message: MessageExt) -> None:
        waiter: asyncio.Future[MessageExt] = token
        if not waiter.done():
            waiter.get_loop().call_soon_threadsafe(_set_if_pending, waiter, message)


def _set_if_pending(waiter: asyncio.Future[MessageExt], message: MessageExt) -> None:
    if not waiter.done():
        waiter.set_result(message)


LocalTransaction = Callable[[Message, Any], "TransactionState | bool | Awaitable[Any] | None"]
TransactionChecker = Callable[[MessageExt], "TransactionState | bool | Awaitable[Any] | None"]


class TransactionProducer(Producer):
    """A producer of transactional messages.

    ``checker(message)`` answers the broker's check-back for a transaction whose
    outcome it does not know (a coroutine function or a plain callable). The
    ``group`` option is required and may not be ``DEFAULT_PRODUCER``: the broker
    sends its check-back to a producer of the group.
    """

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        checker: TransactionChecker | None = None,
        **options: Unpack[ProducerOptions],
    ) -> None:
        if not callable(checker):
            raise ConfigError("checker must be callable: (message) -> TransactionState")
        check_transaction_group(options)
        super().__init__(namesrv_addr, **options)
        self._producer.transaction_checker = checker

    async def send_in_transaction(
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
        return await self._run(
            self._producer.transaction_flow(message, execute_local, arg, timeout)
        )


class Admin(_ClientBase):
    """Topics, groups, offsets, routes and message lookups."""

    def __init__(
        self, namesrv_addr: str | Iterable[str] | None = None, **options: Unpack[ClientOptions]
    ):
        # Administration waits longer by default: a broker may take seconds to
        # create its first topic (its stores start lazily).
        options.setdefault("request_timeout", 15.0)
        settings = client_settings(
            namesrv_addr,
            options,
            **_host_facts(os.getpid()),
        )
        super().__init__(settings)
        self._admin = AdminCore(self._core)

    async def create_topic(
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
        return await self._run(
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

    async def delete_topic(self, topic: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        await self._run(self._admin.delete_topic_flow(topic, cluster=cluster))

    async def create_group(
        self, group: str, *, cluster: str = DEFAULT_CLUSTER, **settings: Any
    ) -> None:
        await self._run(self._admin.create_group_flow(group, cluster=cluster, **settings))

    async def delete_group(self, group: str, *, cluster: str = DEFAULT_CLUSTER) -> None:
        await self._run(self._admin.delete_group_flow(group, cluster=cluster))

    async def cluster_info(self) -> ClusterInfo:
        return await self._run(self._core.cluster_info_flow())

    async def topic_route(self, topic: str) -> TopicRouteData:
        return await self._run(self._admin.route_flow(topic))

    async def topic_offsets(self, topic: str) -> list[TopicOffset]:
        return await self._run(self._admin.topic_offsets_flow(topic))

    async def max_offset(self, queue: MessageQueue) -> int:
        return await self._run(self._admin.max_offset_flow(queue))

    async def min_offset(self, queue: MessageQueue) -> int:
        return await self._run(self._admin.min_offset_flow(queue))

    async def search_offset(self, queue: MessageQueue, timestamp_ms: int) -> int:
        return await self._run(self._admin.search_offset_flow(queue, timestamp_ms))

    async def consumer_offset(self, group: str, queue: MessageQueue) -> int | None:
        return await self._run(self._admin.query_consumer_offset_flow(group, queue))

    async def reset_offsets_by_time(
        self, group: str, topic: str, timestamp_ms: int, *, force: bool = True
    ) -> dict[MessageQueue, int]:
        """Move ``group``'s offsets of ``topic`` to the first message stored at
        ``timestamp_ms`` or later (``force=False``: only back); the new offsets.
        Online consumers of the group restart the queues from there."""
        return await self._run(
            self._admin.reset_offsets_by_time_flow(group, topic, timestamp_ms, force=force)
        )

    async def query_messages(
        self,
        topic: str,
        key: str,
        *,
        max_num: int = 32,
        begin_timestamp: int = 0,
        end_timestamp: int = 2**63 - 1,
    ) -> list[MessageExt]:
        return await self._run(
            self._admin.query_messages_flow(
                topic,
                key,
                max_num=max_num,
                begin_timestamp=begin_timestamp,
                end_timestamp=end_timestamp,
            )
        )

    async def view_message(self, msg_id: str, topic: str | None = None) -> MessageExt:
        return await self._run(self._admin.view_message_flow(msg_id, topic))


class PushConsumer(_ClientBase):
    """Receives messages pushed to ``handler(messages) -> ConsumeResult``.

    ``handler`` gets a list of :class:`MessageExt` (one by default, up to
    ``consume_message_batch_max_size``). Returning ``None`` (nothing), ``True``
    or ``ConsumeResult.SUCCESS`` means consumed; a failure is explicit:
    ``RETRY_LATER`` (or ``False``; orderly: ``SUSPEND_CURRENT_QUEUE_A_MOMENT``)
    or an exception, which is logged with its traceback. A coroutine function
    is awaited; a plain function runs in a thread pool of ``consume_thread_max``
    threads, so it may block. Options:
    :class:`rocketmq_proto.ConsumerOptions` (``group`` is required)::

        consumer = PushConsumer("127.0.0.1:9876", handle, group="g")
        consumer.subscribe("Orders", "paid || shipped")
        async with consumer:
            ...
    """

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        handler: MessageHandler | None = None,
        **options: Unpack[ConsumerOptions],
    ) -> None:
        if not callable(handler):
            raise ConfigError("handler must be callable: (messages) -> ConsumeResult")
        pid = os.getpid()
        settings, config = consumer_settings(
            namesrv_addr,
            options,
            **_host_facts(pid),
        )
        super().__init__(settings)
        ids = UniqueIdGenerator(ip_bytes(settings.client.client_ip), pid, random.getrandbits(32))
        self._semaphore: asyncio.Semaphore | None = None
        self._user_handler = handler
        self._user_handler_is_async = inspect.iscoroutinefunction(
            handler
        ) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))  # noqa: B004
        self._consumer = PushConsumerCore(self._core, config, self._bounded_handler, ids)
        self._consumer.register()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._consumer_task: asyncio.Task[None] | None = None

    @property
    def group(self) -> str:
        return self._consumer.config.group

    def subscribe(self, topic: str, expression: str = "*", *, sql: bool = False) -> None:
        """Subscribe to ``topic``: tags (``*``, ``"a || b"``) or, with ``sql``, an SQL92 filter.

        Safe on a running consumer when called on its event loop's thread: flows
        run only on that thread, and each step of one (its code between two
        effects) ends before anything else runs there, so no lock is needed (the
        blocking driver takes its core lock here). From another thread (a plain
        handler runs in a worker thread), use
        ``loop.call_soon_threadsafe(consumer.subscribe, ...)``.
        """
        self._consumer.subscribe(topic, expression, "SQL92" if sql else "TAG")

    def unsubscribe(self, topic: str) -> None:
        """Stop consuming ``topic`` (its queues go at the next rebalance); on the
        loop's thread, as :meth:`subscribe`."""
        self._consumer.unsubscribe(topic)

    async def _bounded_handler(self, messages: list[MessageExt]) -> Any:
        assert self._semaphore is not None
        async with self._semaphore:
            if self._consumer.closed:
                return HANDLER_NOT_RUN  # closed while this call waited for a slot
            handler = self._user_handler
            if self._user_handler_is_async:
                return await handler(messages)
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, handler, messages)
            if inspect.isawaitable(result):
                result = await result
            return result

    async def start(self) -> None:
        if self._remoting is not None:
            return
        self._semaphore = asyncio.Semaphore(self._consumer.config.consume_thread_max)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._consumer.config.consume_thread_max, thread_name_prefix="rocketmq-consume"
        )
        await super().start()
        await self._run(self._consumer.start_flow())
        self._consumer_task = self._upkeep_of(
            self._consumer.maintenance_flow, lambda: self._consumer.closed, "consumer upkeep"
        )

    async def close(self) -> None:
        """Stop pulling, let running handlers finish, commit offsets, unregister, close."""
        if self._closing:
            return
        if self._remoting is not None and not self._consumer.closed:
            try:
                await self._run(self._consumer.shutdown_flow())
            except Exception as exc:
                self._log.warning("consumer shutdown incomplete: %s", exc)
        self._consumer.closed = True
        if self._consumer_task is not None:
            self._consumer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer_task
        await super().close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def consumed(self) -> int:
        """Messages handed to the handler so far."""
        return self._consumer.consumed

    def assigned_queues(self) -> list[MessageQueue]:
        """The queues this consumer pulls now (its share after the last rebalance)."""
        return sorted(self._consumer.queues)


class PullConsumer(_ClientBase):
    """Messages on demand: ``await poll(timeout)``, or ``async for``.

    ``subscribe`` (rebalance shares queues out) or ``assign`` queues yourself.
    Polled offsets are committed every 5 s (``auto_commit``) or by :meth:`commit`.
    """

    def __init__(
        self,
        namesrv_addr: str | Iterable[str] | None = None,
        **options: Unpack[PullConsumerOptions],
    ) -> None:
        settings, config = pull_consumer_settings(
            namesrv_addr,
            options,
            **_host_facts(os.getpid()),
        )
        super().__init__(settings)
        self._arrived: asyncio.Event | None = None
        self._consumer = PullConsumerCore(self._core, config, notify=self._notify)
        self._consumer.register()
        self._pending_assign: list[MessageQueue] | None = None
        self._upkeep: asyncio.Task[None] | None = None

    def _notify(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    def subscribe(self, topic: str, expression: str = "*", *, sql: bool = False) -> None:
        """Subscribe to ``topic`` (tags, or with ``sql`` an SQL92 filter); rebalance assigns.

        On the loop's thread, as :meth:`PushConsumer.subscribe` (no lock needed)."""
        self._consumer.subscribe(topic, expression, "SQL92" if sql else "TAG")

    async def assign(self, queues: Iterable[MessageQueue]) -> None:
        """Consume exactly ``queues`` (no rebalance)."""
        queues = list(queues)
        if self._remoting is None:
            self._pending_assign = queues
            return
        await self._run(self._consumer.assign_flow(queues))

    async def start(self) -> None:
        if self._remoting is not None:
            return
        self._arrived = asyncio.Event()
        await super().start()
        await self._run(self._consumer.start_flow())
        if self._pending_assign is not None:
            await self._run(self._consumer.assign_flow(self._pending_assign))
        self._upkeep = self._upkeep_of(
            self._consumer.maintenance_flow, lambda: self._consumer.closed, "pull consumer upkeep"
        )

    async def poll(self, timeout: float = 1.0, max_records: int | None = None) -> list[MessageExt]:
        """Messages that arrived, waiting up to ``timeout`` seconds for the first.

        Raises :class:`LocalProtocolError` before :meth:`start`.
        """
        self._consumer.check_started()
        assert self._arrived is not None  # made by start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._arrived.clear()
            messages = self._consumer.take(max_records)
            if messages:
                return messages
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def __aiter__(self) -> AsyncIterator[MessageExt]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MessageExt]:
        while not self._consumer.closed:
            for message in await self.poll(1.0):
                yield message

    async def seek(self, queue: MessageQueue, offset: int) -> None:
        await self._run(self._consumer.seek_flow(queue, offset))

    async def seek_to_beginning(self, queue: MessageQueue) -> None:
        await self._run(self._consumer.seek_to_begin_flow(queue))

    async def seek_to_end(self, queue: MessageQueue) -> None:
        await self._run(self._consumer.seek_to_end_flow(queue))

    async def offset_for_timestamp(self, queue: MessageQueue, timestamp_ms: int) -> int:
        return await self._run(self._consumer.offset_for_timestamp_flow(queue, timestamp_ms))

    async def commit(self, offsets: dict[MessageQueue, int] | None = None) -> None:
        await self._run(self._consumer.commit_flow(offsets))

    async def committed(self, queue: MessageQueue) -> int | None:
        return await self._run(self._consumer.committed_flow(queue))

    def pause(self, queues: Iterable[MessageQueue]) -> None:
        self._consumer.pause(queues, True)

    def resume(self, queues: Iterable[MessageQueue]) -> None:
        self._consumer.pause(queues, False)

    def assignment(self) -> list[MessageQueue]:
        return self._consumer.assignment()

    async def queues_of(self, topic: str) -> list[MessageQueue]:
        return await self._run(self._consumer.queues_of_flow(topic))

    async def close(self) -> None:
        if self._closing:
            return
        if self._remoting is not None and not self._consumer.closed:
            try:
                await self._run(self._consumer.shutdown_flow())
            except Exception as exc:
                self._log.warning("pull consumer shutdown incomplete: %s", exc)
        self._consumer.closed = True
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await super().close()
