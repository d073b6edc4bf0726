"""Consume offsets: the in-memory table, the broadcasting file format, and the broker calls.

A clustering consumer keeps its progress on the brokers (Java's
``RemoteBrokerOffsetStore``): it reads a queue's offset when it takes the queue,
updates the table as consumption finishes, and commits the table every 5 s
(and piggy-backed on pulls). A broadcasting consumer keeps it in a local file
(Java's ``LocalFileOffsetStore``): ``~/.rocketmq_offsets/<clientId>/<group>/offsets.json``,
holding fastjson's ``OffsetSerializeWrapper`` with queue objects as map keys.

:class:`OffsetStore` is the table; :func:`encode_local_offsets` /
:func:`load_local_offsets` the file's bytes (the driver reads and writes the
file: write ``offsets.json.tmp``, move the old file to ``offsets.json.bak``,
rename the temporary file, as Java's ``MixAll.string2File`` does); the flows
talk to brokers.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Final

from rocketmq_proto.flows.effects import Flow, call, oneway
from rocketmq_proto.flows.session import ClientCore
from rocketmq_proto.wire import jsonlenient as jl
from rocketmq_proto.wire import requests as rq
from rocketmq_proto.wire.bodies import _mq_keyed, _mq_table
from rocketmq_proto.wire.codes import ResponseCode
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import (
    ConnectionClosedError,
    RemoteProtocolError,
    RequestTimeoutError,
    RocketMQError,
    RouteNotFoundError,
    error_for_response,
)
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MASTER_ID, MessageQueue

log = logging.getLogger("rocketmq_proto.consumer")

__all__ = [
    "LOCAL_OFFSET_DEFAULT_INSTANCE",
    "LOCAL_OFFSET_FILE_NAME",
    "LOCAL_OFFSET_STORE_DIR_NAME",
    "OFFSET_REQUEST_TIMEOUT",
    "PERSIST_CONSUMER_OFFSET_INTERVAL",
    "OffsetStore",
    "commit_offsets_flow",
    "encode_local_offsets",
    "find_broker_in_subscribe",
    "load_local_offsets",
    "local_offsets_client_id",
    "local_offsets_path",
    "max_offset_flow",
    "parse_local_offsets",
    "persist_offset_flow",
    "query_offset_flow",
    "search_offset_flow",
    "subscribe_addr_flow",
    "update_offset_flow",
]

#: How often Java commits offsets (``persistConsumerOffsetInterval``), seconds.
PERSIST_CONSUMER_OFFSET_INTERVAL: Final = 5.0
#: Timeout Java gives offset queries and updates, seconds.
OFFSET_REQUEST_TIMEOUT: Final = 5.0
#: Where Java keeps broadcasting offsets: ``~/<dir>/<clientId>/<group>/<file>``
#: (``-Drocketmq.client.localOffsetStoreDir`` replaces ``~/<dir>``).
LOCAL_OFFSET_STORE_DIR_NAME: Final = ".rocketmq_offsets"
LOCAL_OFFSET_FILE_NAME: Final = "offsets.json"
#: The instance name in that path when none was configured: Java's default
#: ``DEFAULT``, which its broadcasting consumers keep (it renames the instance to
#: the pid for clustering consumers only), so a restarted process finds its file.
LOCAL_OFFSET_DEFAULT_INSTANCE: Final = "DEFAULT"


class OffsetStore:
    """Each queue's consume offset: the next offset to consume, as Java stores it.

    Tracks which offsets changed since they were last committed, and supports
    Java's freeze (after an illegal offset the fixed value must not be
    overwritten by consumption still in flight until the queue is re-taken).
    """

    __slots__ = ("_committed", "_frozen", "_table")

    def __init__(self, offsets: Mapping[MessageQueue, int] | None = None) -> None:
        self._table: dict[MessageQueue, int] = dict(offsets or {})
        self._committed: dict[MessageQueue, int] = {}
        self._frozen: set[MessageQueue] = set()

    def update(self, mq: MessageQueue, offset: int, increase_only: bool = False) -> None:
        """Set ``mq``'s offset; with ``increase_only`` never move it back (Java's
        concurrent consumption commits this way). A frozen offset does not change."""
        if self._frozen and mq in self._frozen:  # (an empty set asks no hash)
            return
        old = self._table.get(mq)
        if old is None or not increase_only or offset > old:
            self._table[mq] = offset

    def update_and_freeze(self, mq: MessageQueue, offset: int) -> None:
        """Set ``mq``'s offset and ignore later :meth:`update` calls until :meth:`remove`."""
        self._table[mq] = offset
        self._frozen.add(mq)

    def read(self, mq: MessageQueue) -> int | None:
        """The offset in memory (Java's ``READ_FROM_MEMORY``), ``None`` if unknown."""
        return self._table.get(mq)

    def remove(self, mq: MessageQueue) -> None:
        """Forget ``mq`` (it was dropped, or is about to be taken afresh)."""
        self._table.pop(mq, None)
        self._committed.pop(mq, None)
        self._frozen.discard(mq)

    def __contains__(self, mq: object) -> bool:
        return mq in self._table

    def __len__(self) -> int:
        return len(self._table)

    def table(self, topic: str | None = None) -> dict[MessageQueue, int]:
        """A copy of the table, optionally only ``topic``'s queues (Java's ``cloneOffsetTable``)."""
        return {mq: o for mq, o in self._table.items() if topic is None or mq.topic == topic}

    def to_commit(
        self, assigned: Collection[MessageQueue] | None = None, *, every: bool = False
    ) -> dict[MessageQueue, int]:
        """Offsets changed since they were last :meth:`mark_committed` (``every``:
        all of them), sorted by queue.

        With ``assigned`` (the queues this consumer holds), entries of other
        queues are forgotten first, as Java's ``persistAll`` does.
        """
        if assigned is not None:
            for mq in [mq for mq in self._table if mq not in assigned]:
                self.remove(mq)
        committed = self._committed
        return dict(
            sorted(
                (mq, offset)
                for mq, offset in self._table.items()
                if every or committed.get(mq) != offset
            )
        )

    def mark_committed(self, offsets: Mapping[MessageQueue, int]) -> None:
        """Record that these offsets reached the store (broker or file)."""
        for mq, offset in offsets.items():
            if mq in self._table:
                self._committed[mq] = offset

    def local_snapshot(
        self,
        assigned: Collection[MessageQueue],
        previous: Mapping[MessageQueue, int] | None = None,
    ) -> dict[MessageQueue, int]:
        """What the broadcasting file should hold: its ``previous`` content with
        the offsets of the ``assigned`` queues replaced (Java's ``persistAll``)."""
        out = dict(previous or {})
        for mq, offset in self._table.items():
            if mq in assigned:
                out[mq] = offset
        return out


# ------------------------------------------------------------ the local file


def local_offsets_client_id(
    client_ip: str, instance_name: str | None = None, unit_name: str | None = None
) -> str:
    """The client id naming a broadcasting group's offsets directory: Java's
    ``ip@instance[@unit]``, with :data:`LOCAL_OFFSET_DEFAULT_INSTANCE` when no
    instance name was configured. Not the running client's id, whose generated
    instance name (``pid#random``) changes with every process: offsets stored
    under it would be lost at each restart."""
    cid = f"{client_ip}@{instance_name or LOCAL_OFFSET_DEFAULT_INSTANCE}"
    return f"{cid}@{unit_name}" if unit_name else cid


def local_offsets_path(client_id: str, group: str) -> tuple[str, str, str, str]:
    """Path components, below the user's home directory, of a broadcasting
    group's offsets file: join them with ``os.path.join(home, *parts)``."""
    return (LOCAL_OFFSET_STORE_DIR_NAME, client_id, group, LOCAL_OFFSET_FILE_NAME)


def encode_local_offsets(table: Mapping[MessageQueue, int]) -> bytes:
    """The offsets file's content, as fastjson writes an ``OffsetSerializeWrapper``.

    Queue objects are the map's keys (not standard JSON); Java's reader accepts
    this compact form as well as the pretty-printed one Java writes.
    """
    return jl.dumps({"offsetTable": _mq_table(table.items())}).encode()


def parse_local_offsets(data: bytes | str) -> dict[MessageQueue, int]:
    """An offsets file written by Java or by :func:`encode_local_offsets`.

    Raises :class:`RemoteProtocolError` if the content is not such a file.
    """
    what = "offsets file"
    obj = jl.as_object(jl.loads(data, what=what), what)
    return {
        mq: jl.as_int(offset, f"{what}: offset of {mq}", bits=64)
        for mq, offset in _mq_keyed(obj.get("offsetTable"), f"{what}: offsetTable")
    }


def load_local_offsets(main: bytes | None, backup: bytes | None) -> dict[MessageQueue, int]:
    """Java's ``readLocalOffset``: ``offsets.json``, else ``offsets.json.bak``.

    ``None`` stands for a file that could not be read. The main file is used if
    it is non-empty and parses; otherwise the backup, whose parse errors are
    raised (Java fails to start then); with neither, no offsets.
    """
    if main and main.strip():
        try:
            return parse_local_offsets(main)
        except RemoteProtocolError as exc:
            log.warning(
                "offsets file is corrupt (%s); trying the backup",
                exc,
                extra=log_fields(file="offsets.json"),
            )
    if backup and backup.strip():
        return parse_local_offsets(backup)
    return {}


# ---------------------------------------------------------------- addresses


def find_broker_in_subscribe(
    addrs: Mapping[int, str], broker_id: int, only_this_broker: bool
) -> tuple[str, bool] | None:
    """Java's ``findBrokerAddressInSubscribe`` over one broker's members:
    ``(address, is_slave)`` or ``None``.

    The member ``broker_id``; for a slave id also the next id; unless
    ``only_this_broker``, else any member (Java's ``HashMap`` yields the lowest id).
    """
    if not addrs:
        return None
    addr = addrs.get(broker_id)
    slave = broker_id != MASTER_ID
    if addr is None and slave:
        addr = addrs.get(broker_id + 1)
    if addr is None and not only_this_broker:
        first = min(addrs)
        addr, slave = addrs[first], first != MASTER_ID
    return None if addr is None else (addr, slave)


def subscribe_addr_flow(
    client: ClientCore,
    mq: MessageQueue,
    broker_id: int = MASTER_ID,
    *,
    only_this_broker: bool = False,
) -> Flow[tuple[str, bool]]:
    """Where to pull from or query offsets of ``mq``: ``(address, is_slave)``.

    Looks in the known brokers, refreshes the topic's route once if the broker
    is unknown (then accepting any member, as Java's retry does), and raises
    :class:`RouteNotFoundError` if it is still unknown.
    """
    found = find_broker_in_subscribe(
        client.known_brokers().get(mq.broker_name, {}), broker_id, only_this_broker
    )
    if found is None:
        yield from client.route_flow(mq.topic, force=True)
        found = find_broker_in_subscribe(
            client.known_brokers().get(mq.broker_name, {}), broker_id, False
        )
    if found is None:
        raise RouteNotFoundError(f"The broker[{mq.broker_name}] not exist")
    return found


def _offset(response: RemotingCommand) -> int:
    if response.code != ResponseCode.SUCCESS:
        raise error_for_response(response.code, response.remark)
    value = response.ext_fields.get("offset")
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RemoteProtocolError(
            f"offset response lacks an integer 'offset': {response.ext_fields!r}"
        ) from None


# -------------------------------------------------------------------- flows


def query_offset_flow(
    client: ClientCore, group: str, mq: MessageQueue, timeout: float = OFFSET_REQUEST_TIMEOUT
) -> Flow[int | None]:
    """``group``'s committed offset of ``mq`` on the broker (QUERY_CONSUMER_OFFSET);
    ``None`` when the broker has none (QUERY_NOT_FOUND, 22). Other errors raise."""
    addr, _ = yield from subscribe_addr_flow(client, mq, only_this_broker=True)
    command = rq.query_consumer_offset(
        consumer_group=group, topic=mq.topic, queue_id=mq.queue_id, broker_name=mq.broker_name
    )
    response = yield from call(addr, command, timeout)
    if response.code == ResponseCode.QUERY_NOT_FOUND:
        return None
    return _offset(response)


def max_offset_flow(
    client: ClientCore, mq: MessageQueue, timeout: float | None = None
) -> Flow[int]:
    """The offset the next message of ``mq`` will get (GET_MAX_OFFSET, to the master)."""
    addr = yield from client.master_addr_flow(mq.broker_name, mq.topic)
    command = rq.get_max_offset(mq.topic, mq.queue_id, broker_name=mq.broker_name)
    return _offset((yield from call(addr, command, timeout or client.config.request_timeout)))


def search_offset_flow(
    client: ClientCore, mq: MessageQueue, timestamp_ms: int, timeout: float | None = None
) -> Flow[int]:
    """The first offset of ``mq`` stored at or after ``timestamp_ms``
    (SEARCH_OFFSET_BY_TIMESTAMP)."""
    addr = yield from client.master_addr_flow(mq.broker_name, mq.topic)
    command = rq.search_offset_by_timestamp(
        mq.topic, mq.queue_id, timestamp_ms, broker_name=mq.broker_name
    )
    return _offset((yield from call(addr, command, timeout or client.config.request_timeout)))


def _update_command(group: str, mq: MessageQueue, offset: int) -> RemotingCommand:
    return rq.update_consumer_offset(
        consumer_group=group,
        topic=mq.topic,
        queue_id=mq.queue_id,
        commit_offset=offset,
        broker_name=mq.broker_name,
    )


def commit_offsets_flow(
    client: ClientCore,
    group: str,
    store: OffsetStore,
    assigned: Collection[MessageQueue] | None = None,
    *,
    confirmed: bool = False,
) -> Flow[dict[MessageQueue, int]]:
    """Commit the changed offsets to the brokers (UPDATE_CONSUMER_OFFSET); returns
    what was stored.

    Oneway, as Java's periodic ``persistAll``, unless ``confirmed`` (a push or
    pull consumer's close): then every queue's offset is sent, changed since the
    last commit or not (that one may have been a oneway the broker never got), and
    each commit waits for its broker's answer, so that ``close`` returns once the
    offsets are stored. A broker that does not answer one is not asked for its
    other queues: the flow waits one request timeout per broker at most. Queues
    outside ``assigned`` are forgotten first. A queue whose broker cannot be
    reached, or refuses, is logged and tried again next time.

    Each queue's offset is read as its commit is sent, not when the flow began: a
    commit that waited (for a route, a connection, an earlier answer) never
    stores an older offset than one another commit sent meanwhile.
    """
    sent: dict[MessageQueue, int] = {}
    silent: set[str] = set()
    for mq in store.to_commit(assigned, every=confirmed):
        if mq.broker_name in silent:
            continue
        try:
            stored = yield from update_offset_flow(client, group, mq, store, confirmed=confirmed)
        except (RequestTimeoutError, ConnectionClosedError) as exc:
            silent.add(mq.broker_name)
            # (The offset now: the one sent, unless it moved since.)
            _commit_failed(
                client, group, mq, store.read(mq), exc, "; not committing its other queues now"
            )
            continue
        except RocketMQError as exc:
            _commit_failed(client, group, mq, store.read(mq), exc)
            continue
        if stored is not None:
            sent[mq] = stored
    store.mark_committed(sent)
    return sent


def _commit_failed(
    client: ClientCore,
    group: str,
    mq: MessageQueue,
    offset: int | None,
    exc: Exception,
    then: str = "",
) -> None:
    log.warning(
        "commit of %s offset %s for %s failed: %s%s",
        mq,
        offset,
        group,
        exc,
        then,
        extra=log_fields(client=client.client_id, group=group, queue=mq),
    )


def update_offset_flow(
    client: ClientCore,
    group: str,
    mq: MessageQueue,
    offset: int | OffsetStore,
    *,
    confirmed: bool,
) -> Flow[int | None]:
    """Store ``group``'s ``offset`` of ``mq`` on its broker (UPDATE_CONSUMER_OFFSET):
    oneway, or ``confirmed`` by the broker's answer (a refusal raises). ``offset``
    may be the store to read it from, once the broker is known and the command is
    sent (``None`` is returned, and nothing sent, if the store forgot ``mq``
    meanwhile); the offset sent is returned."""
    addr, _ = yield from subscribe_addr_flow(client, mq)
    if isinstance(offset, OffsetStore):
        value = offset.read(mq)
        if value is None:
            return None
        offset = value
    command = _update_command(group, mq, offset)
    if not confirmed:
        yield from oneway(addr, command)
        return offset
    response = yield from call(addr, command, client.config.request_timeout)
    if response.code != ResponseCode.SUCCESS:
        raise error_for_response(response.code, response.remark, request=command.code)
    return offset


def persist_offset_flow(
    client: ClientCore, group: str, store: OffsetStore, mq: MessageQueue
) -> Flow[bool]:
    """Commit one queue's offset now, oneway (Java's ``persist``), before a queue is
    let go to another consumer or after its offset was fixed; whether it was sent.
    Errors are logged."""
    offset = store.read(mq)
    if offset is None:
        return False
    try:
        stored = yield from update_offset_flow(client, group, mq, store, confirmed=False)
    except RocketMQError as exc:
        _commit_failed(client, group, mq, offset, exc)
        return False
    if stored is None:
        return False
    store.mark_committed({mq: stored})
    return True
