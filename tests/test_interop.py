"""Cross tests with the Java and Go clients (the peers in ``interop/``).

Four directions: a peer produces and this client consumes (java-to-python,
go-to-python), and this client produces and a peer consumes (python-to-java,
python-to-go). Each direction is one *exchange*: one peer process (``peer run``, see
interop/README.md) does all its commands at once while this client's producers or
consumers run, every message variant of the catalogue below crosses in one go, and
the tests then check what each side saw:

- bodies byte for byte: text, binary, empty where it can be stored, over 4 KiB (sent
  compressed: the stored record is smaller than the body), incompressible, 4 MiB (the
  limit), and over the limit where a client lets it through;
- message ids (what the producer was told is what the consumer sees), keys, tags (ASCII
  and not), user properties (not ASCII), queue and offset;
- a tag filter, batches, per-key order, delay levels and 5.x timers (not delivered
  before their time), transactions with check-back (committed ones arrive, rolled back
  ones never; a message may come twice, so deliveries are compared by id), and
  request-reply both ways.

Besides: one consumer group with a Java and a Python member splits the queues between
them. A smoke subset of the directions runs on a 4.x cluster (the Java peer built with
that client release) and on a cluster whose servers answer with the ROCKETMQ header,
in tests/test_interop_clusters.py. The main suite uses the blocking driver; the 4.x
smoke uses asyncio and the header smoke gevent. What the peers do differently is
documented in interop/README.md and asserted here where it shows.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rocketmq_proto import (
    BrokerSystemError,
    ConsumeResult,
    Message,
    MessageExt,
    MessageQueue,
    SendStatus,
    SystemBusyError,
    TransactionState,
)

from .backends import Backend
from .peers import PeerRun, Step, build_peers, step

pytestmark = pytest.mark.broker

MAX_BODY = 4 * 1024 * 1024  # the clients' and brokers' default limit
COMPRESS_OVER = 4096  # bodies of this size and more are sent compressed
COMPRESSED, COMPRESSION_TYPE, ZLIB_TYPE = 0x1, 0x700, 0x300  # sysFlag bits
TAG = "TagA"
TAG_BATCH = "TagB"
TAG_UNICODE = "标签-ü"
PROPS = {"color": "blüe", "emoji": "🚀", "中文键": "值 ü"}
REPLY_PREFIX = b"reply:"  # what both peers' repliers put before the request's body
REQUESTS = 2  # request-reply round trips each way
REQUEST_BODY = "ping-\x00\xff-ü".encode()
DELAY_LEVEL = 2  # 2 s on the test clusters (messageDelayLevel 1s 2s 3s ...)
TIMER_MS = 3000
# Generous for a loaded 2-core machine.
LIMITS = {"send_timeout": 20.0, "request_timeout": 20.0}
WAIT = 90.0  # the longest wait for a delivery

DIRECTIONS = [("java", "python"), ("python", "java"), ("go", "python"), ("python", "go")]
DIRECTION_IDS = [f"{a}-to-{b}" for a, b in DIRECTIONS]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def is_v5(version: str | None) -> bool:
    return not str(version).startswith("4.")


# ---------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Variant:
    """Messages of one kind, sent by one command of a peer or one loop of this client.

    Bodies: ``fixed`` for every message, else ``size`` bytes by the peers' rule
    (``(i + j) & 0xff``), else ``msg-<i>``.
    """

    label: str
    count: int = 1
    topic: str = "main"  # "main" or "order"
    mode: str = "plain"  # plain, batch, ordered, delay, transaction
    tag: str | None = None
    keys: tuple[str, ...] = ()
    props: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None
    fixed: bytes | None = None
    delay_level: int = 0
    deliver_delay_ms: int = 0
    sharding_keys: tuple[str, ...] = ()
    tx_state: str | None = None  # commit, rollback, unknown-then-commit, unknown-then-rollback

    def body(self, i: int) -> bytes:
        if self.fixed is not None:
            return self.fixed
        if self.size is not None:
            start = i & 0xFF
            return (bytes(range(256)) * (self.size // 256 + 2))[start : start + self.size]
        return b"msg-%d" % i

    @property
    def committed(self) -> bool:
        return self.tx_state is None or self.tx_state.endswith("commit")

    @property
    def checked(self) -> bool:
        return bool(self.tx_state and self.tx_state.startswith("unknown"))

    def sharding_key(self, i: int) -> str | None:
        return self.sharding_keys[i % len(self.sharding_keys)] if self.sharding_keys else None


def catalogue(token: str, *, version: str, full: bool, peer_sends: bool) -> list[Variant]:
    """The variants of one exchange; ``full`` False is the smoke subset."""
    # Sent in this order: what waits (check-backs, delays) first, so that the waits
    # overlap the rest; the empty body last, as the 4.x Java consumer stops at it.
    plain = [
        Variant("plain", 3, tag=TAG, keys=(f"k1-{token}", f"k2-{token}"), props=PROPS),
        Variant("tag-unicode", 2, tag=TAG_UNICODE, keys=(f"k3-{token}",), props={"n": "ü"}),
    ]
    empty = Variant("empty", fixed=b"", keys=(f"empty-{token}",))
    if not full:
        return [*plain, empty]
    variants = [
        Variant(
            f"tx-{state}", count, mode="transaction", tx_state=state, keys=(f"tx-{state}-{token}",)
        )
        for state, count in [
            ("commit", 1),
            ("unknown-then-commit", 2),
            ("rollback", 1),
            ("unknown-then-rollback", 1),
        ]
    ]
    variants.append(Variant("delay", mode="delay", delay_level=DELAY_LEVEL, keys=(f"d-{token}",)))
    if is_v5(version):
        variants.append(Variant("timer", deliver_delay_ms=TIMER_MS, keys=(f"t-{token}",)))
    binary = bytes(range(256))[::-1] + b"\x00\r\n\xff" + "ü€".encode() + b"\xc3(\x80"
    variants += [
        *plain,
        Variant("binary", fixed=binary, tag="bin", keys=(f"bin-{token}",)),
        Variant("compressed", 2, size=COMPRESS_OVER + 1904, keys=(f"z-{token}",)),
        Variant("random", fixed=os.urandom(200_000), keys=(f"rnd-{token}",)),
        Variant("max", size=MAX_BODY, keys=(f"max-{token}",)),
        Variant("batch", 4, mode="batch", tag=TAG_BATCH, keys=(f"b-{token}",), props=PROPS),
        Variant(
            "ordered", 24, "order", "ordered", sharding_keys=tuple(f"{c}-{token}" for c in "abc")
        ),
    ]
    if peer_sends:
        # One byte over the limit: the Java client refuses it, the Go client sends it
        # compressed (see interop/README.md). This client refuses it too (tested alone).
        variants.append(Variant("over-max", size=MAX_BODY + 1, keys=(f"over-{token}",)))
    variants.append(empty)
    return variants


def filtered_tags(consumer: str) -> set[str]:
    """The tags a consumer subscribed with ``TAG_UNICODE || TAG_BATCH`` receives.

    The Go client hashes a subscription's tags over their UTF-8 bytes, where Java (and
    the broker, and this client) hash UTF-16 units as ``String.hashCode`` does: the
    broker's filter never matches a non-ASCII tag of a Go subscription.
    """
    return {TAG_BATCH} if consumer == "go" else {TAG_UNICODE, TAG_BATCH}


def undeliverable(variant: Variant, consumer: str, version: str) -> str | None:
    """Why a consumer is documented not to get a stored message; None: it gets it."""
    if variant.label == "empty" and consumer == "java" and not is_v5(version):
        # The 4.x Java client's pull callback fails on a pull batch that holds a message
        # without body (a NullPointerException, logged; the same offset is pulled again):
        # that queue is stuck from the batch on.
        return "the 4.x Java consumer fails on an empty body"
    return None


def refusal(variant: Variant, producer: str, version: str) -> str | None:
    """The error (a regex) a producer is documented to meet for a variant; None: sent."""
    if variant.label == "empty":
        if producer == "java":
            return "body length is zero"  # the Java client refuses it before sending
        if producer == "python":
            return "message body is empty"  # so does this one
        if is_v5(version):
            return "NullPointerException"  # the 5.x broker fails on a send without body
    if variant.label == "over-max" and producer == "java":
        return "body size over max value"
    return None


# ---------------------------------------------------------------------- records


@dataclass
class Sent:
    label: str
    index: int
    body: bytes
    msg_id: str | None
    offset_msg_id: str | None
    broker: str | None
    queue_id: int | None
    queue_offset: int | None
    sharding_key: str | None = None
    check_times: int | None = None
    deliver_at: int | None = None

    @property
    def expected_id(self) -> str:
        """The id a consumer sees: the producer's, else (no UNIQ_KEY) the offset id."""
        found = self.msg_id or self.offset_msg_id
        assert found, f"{self.label}[{self.index}] has no id at all"
        return found


@dataclass
class Got:
    """One delivery, as a Python consumer or a peer's consumer saw it."""

    msg_id: str
    body: bytes
    tags: str | None
    keys: list[str]
    properties: dict[str, str]
    sys_flag: int
    store_size: int
    born: int
    stored: int
    consumed_at: int
    broker: str
    queue_id: int
    queue_offset: int

    @classmethod
    def of_message(cls, m: MessageExt) -> Got:
        return cls(
            m.msg_id,
            m.body,
            m.tags,
            list(m.keys),
            dict(m.properties),
            m.sys_flag,
            m.store_size,
            m.born_timestamp,
            m.store_timestamp,
            int(time.time() * 1000),
            m.broker_name,
            m.queue_id,
            m.queue_offset,
        )

    @classmethod
    def of_line(cls, x: dict[str, Any]) -> Got:
        return cls(
            x["msgId"],
            bytes.fromhex(x["bodyHex"]),
            x["tags"],
            x["keys"].split(" ") if x["keys"] else [],
            x["properties"],
            x["sysFlag"],
            x["storeSize"],
            x["bornTimestamp"],
            x["storeTimestamp"],
            x["consumedAt"],
            x["brokerName"],
            x["queueId"],
            x["queueOffset"],
        )


@dataclass
class Exchange:
    producer: str
    consumer: str
    version: str
    variants: dict[str, Variant]
    sent: dict[str, list[Sent]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    got: dict[str, list[Got]] = field(default_factory=dict)  # by consumer: all, filter, order
    requests: list[dict[str, Any]] = field(default_factory=list)  # what the replier saw
    replies: list[dict[str, Any]] = field(default_factory=list)  # what the requester got
    checked: dict[str, int] = field(default_factory=dict)  # check-backs by message id

    def delivered(self, *, topic: str = "main") -> list[Sent]:
        """What was sent and should reach the consumer."""
        return [
            s
            for label, sent in self.sent.items()
            if self.variants[label].topic == topic
            and self.variants[label].committed
            and not undeliverable(self.variants[label], self.consumer, self.version)
            for s in sent
        ]

    def first_by_id(self, consumer: str = "all") -> dict[str, Got]:
        seen: dict[str, Got] = {}
        for g in self.got.get(consumer, []):
            seen.setdefault(g.msg_id, g)
        return seen


# ---------------------------------------------------------------------- Python side


class Inbox:
    """A push consumer's handler that records every delivery (handler-call order)."""

    def __init__(self) -> None:
        self.got: list[Got] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[MessageExt]) -> ConsumeResult:
        with self._lock:
            self.got.extend(Got.of_message(m) for m in messages)
        return ConsumeResult.SUCCESS

    def ids(self) -> set[str]:
        with self._lock:
            return {g.msg_id for g in self.got}

    def snapshot(self) -> list[Got]:
        with self._lock:
            return list(self.got)


def retry_busy(backend: Backend, send: Callable[[], Any]) -> Any:
    """``send()``, again after a pause when a loaded broker sheds it (SYSTEM_BUSY)."""
    for attempt in range(8):
        try:
            return send()
        except SystemBusyError:
            if attempt == 7:
                raise
            backend.sleep(1.0)


def reply_retrying(backend: Backend, send: Callable[[], Any]) -> int:
    """Send a reply, again while the broker does not know the requester yet; return how
    many times it refused.

    A broker forwards a reply over the requester's connection, which it knows from the
    requester's heartbeat. The Go client heartbeats the brokers it knows 1 s after it
    starts and then every 30 s (the Java client and this one heartbeat a broker as soon
    as they learn of it): a reply to a Go request is refused ("channel of <client> not
    found") until that heartbeat, up to 30 s when the request came after the first one.
    """
    deadline = time.monotonic() + 45.0
    refusals = 0
    while True:
        try:
            retry_busy(backend, send)
            return refusals
        except BrokerSystemError as exc:
            if "not found" not in str(exc) or time.monotonic() > deadline:
                raise
            refusals += 1
            backend.sleep(0.5)


def create_topics(
    backend: Backend, ns: str, token: str, options: Mapping[str, Any]
) -> dict[str, str]:
    topics = {role: f"Interop{role.capitalize()}_{token}" for role in ("main", "order", "req")}
    with backend.open("Admin", ns, **{**options, "request_timeout": 30.0}) as admin:
        for name in topics.values():
            admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)
    return topics


def python_send(
    backend: Backend,
    variant: Variant,
    topic: str,
    producer: Any,
    tx_producer: Any,
    avoid: set[tuple[str, int]] | None = None,
) -> list[Sent]:
    """Send one variant with this client; the records of what it was told.

    ``avoid``: (broker, queue id) pairs not to send to, while another queue is free.
    """

    def away(queues: list[Any], _message: Any, _arg: Any) -> Any:
        free = [q for q in queues if (q.broker_name, q.queue_id) not in (avoid or ())]
        return (free or queues)[0]

    def message(i: int) -> Message:
        return Message(
            topic,
            variant.body(i),
            tags=variant.tag,
            keys=list(variant.keys) or None,
            properties=dict(variant.props) or None,
            delay_level=variant.delay_level,
            deliver_at=int(time.time() * 1000) + variant.deliver_delay_ms
            if variant.deliver_delay_ms
            else None,
        )

    def record(
        i: int, msg: Message, r: Any, msg_id: str | None = None, offset_id: str | None = None
    ) -> Sent:
        assert r.status is SendStatus.SEND_OK, r
        return Sent(
            variant.label,
            i,
            msg.body,
            msg_id or r.msg_id,
            offset_id or r.offset_msg_id,
            r.message_queue.broker_name,
            r.message_queue.queue_id,
            r.queue_offset,
            sharding_key=variant.sharding_key(i),
            deliver_at=msg.deliver_at if variant.deliver_delay_ms else None,
        )

    sent: list[Sent] = []
    if variant.mode == "batch":
        batch = [message(i) for i in range(variant.count)]
        result = retry_busy(backend, lambda: producer.send_batch(batch))
        ids = result.msg_id.split(",")
        offset_ids = result.offset_msg_id.split(",")
        assert len(ids) == len(offset_ids) == variant.count
        for i, msg in enumerate(batch):
            s = record(i, msg, result, ids[i], offset_ids[i])
            s.queue_offset = result.queue_offset + i
            sent.append(s)
        return sent
    for i in range(variant.count):
        msg = message(i)
        if variant.mode == "transaction":
            local = {
                "commit": TransactionState.COMMIT,
                "rollback": TransactionState.ROLLBACK,
            }.get(str(variant.tx_state), TransactionState.UNKNOWN)
            result, state = retry_busy(
                backend, lambda m=msg, s=local: tx_producer.send_in_transaction(m, lambda _m, _a: s)
            )
            assert state is local
        else:
            key = variant.sharding_key(i)
            pick = away if avoid is not None and key is None else None
            result = retry_busy(
                backend, lambda m=msg, k=key, p=pick: producer.send(m, sharding_key=k, selector=p)
            )
        sent.append(record(i, msg, result))
    return sent


def peer_send_step(variant: Variant, topic: str, workdir: Path) -> Step:
    """The peer command sending one variant."""
    body: dict[str, Any] = {}
    if variant.fixed is not None:
        if len(variant.fixed) > 4096:
            path = workdir / f"{variant.label}.body"
            path.write_bytes(variant.fixed)
            body["body_file"] = path
        else:
            body["body_hex"] = variant.fixed.hex()
    elif variant.size is not None:
        body["body_size"] = variant.size
    mode = "delay" if variant.mode == "plain" and variant.deliver_delay_ms else variant.mode
    return step(
        "produce",
        background=variant.mode == "transaction",  # their check-backs are waited for together
        label=variant.label,
        topic=topic,
        count=variant.count,
        mode=mode,
        tag=variant.tag,
        keys=",".join(variant.keys) or None,
        prop=[f"{k}={v}" for k, v in variant.props.items()],
        delay_level=variant.delay_level or None,
        deliver_delay_ms=variant.deliver_delay_ms or None,
        sharding_key=",".join(variant.sharding_keys) or None,
        tx_state=variant.tx_state,
        **body,
    )


def sent_of_lines(variant: Variant, lines: list[dict[str, Any]]) -> list[Sent]:
    out = []
    for x in lines:
        queue = x.get("queue") or {}
        out.append(
            Sent(
                variant.label,
                int(x["index"]),
                variant.body(int(x["index"])),
                x.get("msgId"),
                x.get("offsetMsgId"),
                queue.get("brokerName"),
                queue.get("queueId"),
                x.get("queueOffset"),
                sharding_key=x.get("shardingKey"),
                check_times=x.get("checkTimes"),
            )
        )
    return out


# ---------------------------------------------------------------------- exchanges


def wait_for_ids(
    backend: Backend,
    seen: Callable[[], set[str]],
    expected: set[str],
    what: str,
) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        missing = expected - seen()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: {len(missing)} of {len(expected)} never arrived: {sorted(missing)[:5]}"
            )
        backend.sleep(0.2)


def open_exchange(
    producer: str,
    consumer: str,
    cluster: Any,
    backend: Backend,
    options: Mapping[str, Any],
    *,
    full: bool,
) -> tuple[Exchange, str, list[Variant], dict[str, str]]:
    """A new exchange on ``cluster``: the exchange, its token, the catalogue of
    variants the producer sends, and the topics (created)."""
    token = uuid.uuid4().hex[:8]
    version = str(cluster.version)
    peer_sends = producer != "python"
    variants = catalogue(token, version=version, full=full, peer_sends=peer_sends)
    ex = Exchange(producer, consumer, version, {v.label: v for v in variants})
    topics = create_topics(backend, cluster.namesrv_addr, token, options)
    return ex, token, variants, topics


def peer_to_python(
    peer: str,
    exe: str,
    cluster: Any,
    backend: Backend,
    workdir: Path,
    *,
    full: bool,
    options: Mapping[str, Any],
    peer_env: Mapping[str, str] | None,
) -> Exchange:
    ns = cluster.namesrv_addr
    ex, _, variants, topics = open_exchange(peer, "python", cluster, backend, options, full=full)
    inboxes = {"all": Inbox()}
    subscriptions = {"all": (topics["main"], "*", {})}
    if full:
        inboxes.update(filter=Inbox(), order=Inbox())
        subscriptions["filter"] = (topics["main"], f"{TAG_UNICODE} || {TAG_BATCH}", {})
        subscriptions["order"] = (topics["order"], "*", {"orderly": True})
    started: list[Any] = []
    replier: Any = None
    try:
        for name, (topic, expression, extra) in subscriptions.items():
            consumer = backend.make(
                "PushConsumer",
                ns,
                inboxes[name],
                group=unique(f"ipy_{name}"),
                consume_from_where="first",
                **{**options, **extra},
            )
            consumer.subscribe(topic, expression)
            consumer.start()
            started.append(consumer)
        steps = [peer_send_step(v, topics[v.topic], workdir) for v in variants]
        if full:
            replier = backend.make(
                "Producer", ns, group=unique("ipy_replier"), **{**options, **LIMITS}
            )
            replier.start()

            def answer(messages: list[MessageExt]) -> ConsumeResult:
                for m in messages:
                    # Handlers run concurrently: each fills in its own entry.
                    entry: dict[str, Any] = {
                        "msgId": m.msg_id,
                        "body": m.body,
                        "properties": dict(m.properties),
                        "queue": (m.broker_name, m.queue_id, m.queue_offset),
                        "reconsumeTimes": m.reconsume_times,
                        "at": time.time(),
                    }
                    ex.requests.append(entry)
                    # A reply that fails otherwise raises: the request is redelivered.
                    entry["refusals"] = reply_retrying(
                        backend, lambda m=m: replier.send_reply(m, REPLY_PREFIX + m.body)
                    )
                return ConsumeResult.SUCCESS

            consumer = backend.make(
                "PushConsumer",
                ns,
                answer,
                group=unique("ipy_reply"),
                consume_from_where="first",
                **options,
            )
            consumer.subscribe(topics["req"])
            consumer.start()
            started.append(consumer)
            # Last, in the foreground: a Go requester must have sent its first request
            # before its client's first heartbeat, 1 s after it started (see
            # reply_retrying), which is likelier in a process that is not starting all
            # its other commands at the same time.
            steps.append(
                step(
                    "request",
                    label="request",
                    topic=topics["req"],
                    count=REQUESTS,
                    body_hex=REQUEST_BODY.hex(),
                    timeout_ms=60_000,
                )
            )
        run = PeerRun(exe, ns, steps, workdir, sleep=backend.sleep, env=peer_env)
        try:
            # Its exit code is that of its worst command: the commands' own results are
            # checked one by one below (a documented refusal fails its command).
            run.finish(timeout=300)
        finally:
            run.kill()
        results = run.steps()
        for v in variants:
            result = results.get(v.label)
            assert result is not None, f"the peer never finished {v.label}\n{run.stderr_tail()}"
            if result["rc"] != 0:
                # Only a documented refusal is the tests' to check; any other
                # failure of the peer fails the exchange, saying what it was.
                assert refusal(v, ex.producer, ex.version) is not None, (
                    f"the {ex.producer} peer failed to send {v.label!r}: {result['error']}\n"
                    f"{run.stderr_tail()}"
                )
                ex.refused[v.label] = str(result["error"])
                continue
            ex.sent[v.label] = sent_of_lines(v, run.produced(v.label))
            assert len(ex.sent[v.label]) == v.count, (v.label, run.stderr_tail())
        if full:
            ex.replies = run.produced("request")
        wait_for_ids(
            backend, inboxes["all"].ids, {s.expected_id for s in ex.delivered()}, "python consumer"
        )
        if full:
            want_filter = {
                s.expected_id
                for s in ex.delivered()
                if ex.variants[s.label].tag in filtered_tags(ex.consumer)
            }
            wait_for_ids(backend, inboxes["filter"].ids, want_filter, "python tag filter")
            want_order = {s.expected_id for s in ex.delivered(topic="order")}
            wait_for_ids(backend, inboxes["order"].ids, want_order, "python orderly consumer")
    finally:
        for consumer in started:
            consumer.close()
        if replier is not None:
            replier.close()
    ex.got = {name: inbox.snapshot() for name, inbox in inboxes.items()}
    return ex


def python_to_peer(
    peer: str,
    exe: str,
    cluster: Any,
    backend: Backend,
    workdir: Path,
    *,
    full: bool,
    options: Mapping[str, Any],
    peer_env: Mapping[str, str] | None,
) -> Exchange:
    ns = cluster.namesrv_addr
    ex, token, variants, topics = open_exchange(
        "python", peer, cluster, backend, options, full=full
    )
    version = ex.version
    consumers = {"all": (topics["main"], "*", {})}
    if full:
        consumers["filter"] = (topics["main"], f"{TAG_UNICODE} || {TAG_BATCH}", {})
        consumers["order"] = (topics["order"], "*", {"orderly": True})
    steps = []
    ready = []
    for name, (topic, expression, extra) in consumers.items():
        ready.append(workdir / f"{name}.ready")
        steps.append(
            step(
                "consume",
                background=True,
                label=name,
                topic=topic,
                group=unique(f"i{peer}_{name}"),
                expression=expression,
                count=0,
                ready_file=ready[-1],
                **extra,
            )
        )
    if full:
        ready.append(workdir / "reply.ready")
        steps.append(
            step(
                "reply",
                background=True,
                label="reply",
                topic=topics["req"],
                group=unique(f"i{peer}_reply"),
                count=0,
                ready_file=ready[-1],
            )
        )
    asked: dict[str, int] = {}
    answers = {
        f"{v.label}-{token}": TransactionState.COMMIT if v.committed else TransactionState.ROLLBACK
        for v in variants
        if v.checked
    }

    def checker(m: MessageExt) -> TransactionState:
        asked[m.msg_id] = asked.get(m.msg_id, 0) + 1
        return (
            answers.get(m.keys[0], TransactionState.UNKNOWN) if m.keys else TransactionState.UNKNOWN
        )

    run = PeerRun(exe, ns, steps, workdir, sleep=backend.sleep, env=peer_env)
    try:
        run.wait_ready(ready)
        with (
            backend.open(
                "Producer", ns, group=unique("ipy_producer"), **{**options, **LIMITS}
            ) as producer,
            backend.open(
                "TransactionProducer", ns, checker, group=unique("ipy_tx"), **{**options, **LIMITS}
            ) as tx_producer,
        ):
            pending = None
            if full:
                bodies = [REQUEST_BODY + b"-%d" % i for i in range(REQUESTS)]

                def requests() -> list[MessageExt]:
                    return [
                        producer.request(Message(topics["req"], b, keys=[f"req-{token}"]), 60.0)
                        for b in bodies
                    ]

                pending = backend.background(requests)

            def avoid(v: Variant) -> set[tuple[str, int]] | None:
                # The 4.x Java consumer fails on a whole pull batch holding an empty body:
                # nothing else goes to that queue.
                if v.label != "empty":
                    return None
                return {
                    (s.broker or "", s.queue_id or 0)
                    for label, sent in ex.sent.items()
                    if ex.variants[label].topic == v.topic
                    for s in sent
                }

            for v in variants:
                expected = refusal(v, "python", version)
                try:
                    ex.sent[v.label] = python_send(
                        backend, v, topics[v.topic], producer, tx_producer, avoid(v)
                    )
                except Exception as exc:  # a documented refusal is checked by the tests
                    if expected is None:
                        raise
                    ex.refused[v.label] = f"{type(exc).__name__}: {exc}"
            if full:
                assert pending is not None
                for body, reply in zip(bodies, pending.result(90), strict=True):
                    ex.replies.append(
                        {"request": body, "body": reply.body, "properties": dict(reply.properties)}
                    )
            checked = {
                s.msg_id
                for label, sent in ex.sent.items()
                if ex.variants[label].checked
                for s in sent
            }
            deadline = time.monotonic() + WAIT
            while not checked <= set(asked):
                assert time.monotonic() < deadline, f"check-backs: asked {asked}, wanted {checked}"
                backend.sleep(0.2)
            ex.checked = dict(asked)

            def seen(name: str) -> Callable[[], set[str]]:
                return lambda: {x["msgId"] for x in run.consumed(name)}

            wait_for_ids(
                backend, seen("all"), {s.expected_id for s in ex.delivered()}, f"{peer} consumer"
            )
            if full:
                want_filter = {
                    s.expected_id
                    for s in ex.delivered()
                    if ex.variants[s.label].tag in filtered_tags(ex.consumer)
                }
                wait_for_ids(backend, seen("filter"), want_filter, f"{peer} tag filter")
                want_order = {s.expected_id for s in ex.delivered(topic="order")}
                wait_for_ids(backend, seen("order"), want_order, f"{peer} orderly consumer")
        run.stop()
        rc = run.finish()
        assert rc == 0, f"the {peer} peer failed ({rc})\n{run.stderr_tail()}"
    finally:
        run.kill()
    ex.got = {name: [Got.of_line(x) for x in run.consumed(name)] for name in consumers}
    ex.requests = run.consumed("reply")
    return ex


def exchange_between(
    direction: tuple[str, str],
    peers: Mapping[str, str],
    cluster: Any,
    backend: Backend,
    workdir: Path,
    *,
    full: bool,
    options: Mapping[str, Any] | None = None,
    peer_env: Mapping[str, str] | None = None,
) -> Exchange:
    """Run one direction: ``options`` for this client, ``peer_env`` for the peer process."""
    producer, consumer = direction
    peer = consumer if producer == "python" else producer
    run = python_to_peer if producer == "python" else peer_to_python
    return run(
        peer,
        peers[peer],
        cluster,
        backend,
        workdir,
        full=full,
        options=dict(options or {}),
        peer_env=peer_env,
    )


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def peers() -> dict[str, str]:
    """The peers for the default (5.x) cluster: the Java client of the pom's release."""
    return build_peers("all")


@pytest.fixture(scope="module")
def sync_backend() -> Iterator[Backend]:
    made = Backend("sync")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module", params=DIRECTIONS, ids=DIRECTION_IDS)
def exchange(
    request: pytest.FixtureRequest,
    peers: dict[str, str],
    rocketmq_cluster: Any,
    sync_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Exchange:
    workdir = tmp_path_factory.mktemp("-".join(request.param))
    return exchange_between(
        request.param, peers, rocketmq_cluster, sync_backend, workdir, full=True
    )


# ---------------------------------------------------------------------- checks


def deliveries(ex: Exchange, consumer: str = "all") -> dict[str, Got]:
    return ex.first_by_id(consumer)


def assert_same_message(ex: Exchange, s: Sent, g: Got) -> None:
    v = ex.variants[s.label]
    where = f"{s.label}[{s.index}]"
    assert g.body == s.body, f"{where}: body differs ({len(g.body)} bytes, sent {len(s.body)})"
    assert g.tags == v.tag, where
    assert g.keys == list(v.keys), where
    for name, value in v.props.items():
        assert g.properties.get(name) == value, (where, name)


def test_every_message_arrives_under_the_id_its_producer_was_given(exchange: Exchange) -> None:
    ex = exchange
    sent = ex.delivered()
    seen = deliveries(ex)
    assert {s.expected_id for s in sent} <= set(seen)
    for s in sent:
        if ex.producer == "go" and ex.variants[s.label].mode == "batch":
            # The Go client gives batch members no UNIQ_KEY: consumers see the offset id.
            assert s.msg_id is None and seen[s.offset_msg_id or ""].msg_id == s.offset_msg_id
        else:
            assert s.msg_id, f"{s.label}[{s.index}] has no message id"
            assert seen[s.msg_id].msg_id == s.msg_id
    # Only what was sent arrives, and only transactions (committed on a check-back that
    # the broker may repeat) may arrive twice.
    tx_ids = {s.expected_id for s in sent if ex.variants[s.label].mode == "transaction"}
    ids = [g.msg_id for g in ex.got["all"]]
    assert set(ids) == {s.expected_id for s in sent}
    assert not [i for i in set(ids) if ids.count(i) > 1 and i not in tx_ids]


def test_bodies_tags_keys_and_properties_cross_unchanged(exchange: Exchange) -> None:
    seen = deliveries(exchange)
    checked = set()
    for s in exchange.delivered():
        assert_same_message(exchange, s, seen[s.expected_id])
        checked.add(s.label)
    assert {"plain", "tag-unicode", "binary", "random", "max", "batch"} <= checked


def test_large_bodies_are_stored_compressed(exchange: Exchange) -> None:
    seen = deliveries(exchange)
    large = [
        s for s in exchange.delivered() if len(s.body) >= COMPRESS_OVER and s.label != "random"
    ]
    assert {s.label for s in large} >= {"compressed", "max"}
    for s in large:
        g = seen[s.expected_id]
        # The broker stores what the producer sent: a compressed body is a smaller record.
        assert g.store_size < len(s.body), (s.label, g.store_size)
        if exchange.consumer == "go":
            assert g.sys_flag & COMPRESSED, "the Go client shows the stored COMPRESSED flag"
        elif exchange.producer == "python" and is_v5(exchange.version):
            # The Java client clears COMPRESSED once it has decompressed the body, and
            # keeps the algorithm's bits: this client marks zlib, as Java does by default.
            assert g.sys_flag & COMPRESSION_TYPE == ZLIB_TYPE, hex(g.sys_flag)
    biggest = max(len(s.body) for s in exchange.delivered())
    limit = MAX_BODY + 1 if exchange.producer == "go" else MAX_BODY
    assert biggest == limit


def test_bodies_a_client_refuses(exchange: Exchange) -> None:
    """The empty body and one byte over the limit: refused where documented, else delivered."""
    checked = []
    for label in ("empty", "over-max"):
        if label not in exchange.variants:
            continue
        checked.append(label)
        variant = exchange.variants[label]
        expected = refusal(variant, exchange.producer, exchange.version)
        if expected is None:
            assert label in exchange.sent, exchange.refused.get(label)
            (s,) = exchange.sent[label]
            if undeliverable(variant, exchange.consumer, exchange.version):
                assert s.expected_id not in deliveries(exchange)
            else:
                assert deliveries(exchange)[s.expected_id].body == s.body
        else:
            assert label not in exchange.sent
            assert re.search(expected, exchange.refused[label]), exchange.refused[label]
    assert "empty" in checked


def test_tag_filter_selects_by_ascii_and_non_ascii_tags(exchange: Exchange) -> None:
    tags = filtered_tags(exchange.consumer)
    wanted = {s.expected_id for s in exchange.delivered() if exchange.variants[s.label].tag in tags}
    assert len(wanted) == sum(v.count for v in exchange.variants.values() if v.tag in tags)
    got = {g.msg_id for g in exchange.got["filter"]}
    assert got == wanted
    assert {g.tags for g in exchange.got["filter"]} == tags


def test_batch_members_keep_their_own_ids_and_consecutive_offsets(exchange: Exchange) -> None:
    batch = exchange.sent["batch"]
    seen = deliveries(exchange)
    members = [seen[s.expected_id] for s in batch]
    assert len({g.msg_id for g in members}) == len(batch) == exchange.variants["batch"].count
    assert len({(g.broker, g.queue_id) for g in members}) == 1
    offsets = [g.queue_offset for g in members]
    assert offsets == list(range(offsets[0], offsets[0] + len(batch)))
    for s, g in zip(batch, members, strict=True):
        assert (g.broker, g.queue_id, g.queue_offset) == (s.broker, s.queue_id, s.queue_offset)
        assert g.body == s.body and g.tags == TAG_BATCH


def test_queue_and_offset_are_the_ones_the_producer_was_told(exchange: Exchange) -> None:
    seen = {**deliveries(exchange), **deliveries(exchange, "order")}
    for s in exchange.sent["plain"] + exchange.sent["binary"] + exchange.sent["ordered"]:
        g = seen[s.expected_id]
        assert (g.broker, g.queue_id, g.queue_offset) == (s.broker, s.queue_id, s.queue_offset), (
            s.label
        )


def test_order_per_sharding_key_is_kept(exchange: Exchange) -> None:
    sent = {s.expected_id: s for s in exchange.sent["ordered"]}
    per_key: dict[str, list[int]] = {}
    seen: set[str] = set()
    for g in exchange.got["order"]:
        if g.msg_id in seen:
            continue  # a redelivery does not reorder the first deliveries
        seen.add(g.msg_id)
        s = sent[g.msg_id]
        per_key.setdefault(str(s.sharding_key), []).append(s.index)
    variant = exchange.variants["ordered"]
    assert set(per_key) == set(variant.sharding_keys)
    for key, indexes in per_key.items():
        assert indexes == sorted(indexes), (key, indexes)
        assert len(indexes) == variant.count // len(variant.sharding_keys), (key, indexes)
    # One key, one queue: the one the producer was told, the one the consumer read.
    consumed = {g.msg_id: (g.broker, g.queue_id) for g in exchange.got["order"]}
    for key in per_key:
        ids = [i for i, s in sent.items() if s.sharding_key == key]
        assert len({(sent[i].broker, sent[i].queue_id) for i in ids}) == 1
        assert {consumed[i] for i in ids} == {(sent[ids[0]].broker, sent[ids[0]].queue_id)}


def test_delayed_messages_are_not_delivered_before_their_time(exchange: Exchange) -> None:
    seen = deliveries(exchange)
    (s,) = exchange.sent["delay"]
    g = seen[s.expected_id]
    assert g.stored - g.born >= DELAY_LEVEL * 1000
    assert g.consumed_at - g.born >= DELAY_LEVEL * 1000
    if is_v5(exchange.version):
        (t,) = exchange.sent["timer"]
        g = seen[t.expected_id]
        # The time asked for: this client's, or the peer's as its message carries it.
        deliver_at = t.deliver_at or int(g.properties["TIMER_DELIVER_MS"])
        # The broker's timer works in whole seconds (TIMER_OUT_MS is the time asked for
        # rounded down): nothing comes before that second.
        assert g.consumed_at >= deliver_at // 1000 * 1000, (g.consumed_at, deliver_at)
        assert g.consumed_at - g.born >= TIMER_MS - 1000


def test_transactions_committed_arrive_rolled_back_never(exchange: Exchange) -> None:
    ex = exchange
    seen = deliveries(ex)
    for label in ("tx-commit", "tx-unknown-then-commit", "tx-rollback", "tx-unknown-then-rollback"):
        v = ex.variants[label]
        sent = ex.sent[label]
        assert len(sent) == v.count
        for s in sent:
            if v.committed:
                assert seen[s.expected_id].body == s.body, label
            else:
                assert s.expected_id not in seen, f"{label} was delivered"
            if v.checked:
                # The producer's checker was asked (and answered) by the broker.
                times = (
                    ex.checked.get(s.expected_id, 0) if ex.producer == "python" else s.check_times
                )
                assert times and times >= 1, (label, times)


def test_request_reply(exchange: Exchange) -> None:
    ex = exchange
    if ex.producer == "python":
        # This client asks, the peer's replier answers with its prefix (the Go peer sets
        # the reply's body itself: the Go client's reply helper leaves it empty).
        assert len(ex.replies) == REQUESTS
        for r in ex.replies:
            assert r["body"] == REPLY_PREFIX + r["request"]
            assert r["properties"].get("CORRELATION_ID")
        by_correlation = {x["properties"].get("CORRELATION_ID"): x for x in ex.requests}
        for r in ex.replies:
            request = by_correlation[r["properties"]["CORRELATION_ID"]]
            assert bytes.fromhex(request["bodyHex"]) == r["request"]
            assert request["replyStatus"] == "SEND_OK", request
    else:
        # The peer asks, this client's replier answers.
        assert len(ex.replies) == REQUESTS and len(ex.requests) >= REQUESTS
        asked = {r["properties"]["CORRELATION_ID"]: r for r in ex.requests}
        for r in ex.replies:
            assert "error" not in r, r
            assert bytes.fromhex(r["bodyHex"]) == REPLY_PREFIX + REQUEST_BODY
            assert asked[r["correlationId"]]["body"] == REQUEST_BODY
            assert asked[r["correlationId"]]["msgId"] == r["requestMsgId"]
        # Only a Go requester is unknown to a broker for a while (see reply_retrying).
        if ex.producer == "java":
            assert not any(r.get("refusals") for r in ex.requests), ex.requests


# ---------------------------------------------------------------------- one group, two clients


def java_consumer(
    peers: dict[str, str],
    ns: str,
    topic: str,
    group: str,
    workdir: Path,
    backend: Backend,
    **options: Any,
) -> PeerRun:
    """The Java peer's push consumer of ``group``, running in the background (``count=0``:
    until the run is stopped), once it has started."""
    ready = workdir / "ready"
    run = PeerRun(
        peers["java"],
        ns,
        [
            step(
                "consume",
                background=True,
                label="java",
                topic=topic,
                group=group,
                count=0,
                ready_file=ready,
                **options,
            )
        ],
        workdir,
        sleep=backend.sleep,
    )
    run.wait_ready([ready])
    return run


def test_a_java_and_a_python_consumer_split_the_queues_of_one_group(
    peers: dict[str, str],
    rocketmq_cluster: Any,
    sync_backend: Backend,
    tmp_path: Path,
) -> None:
    """Average allocation on both: every queue has exactly one owner, every message is consumed."""
    backend = sync_backend
    ns = rocketmq_cluster.namesrv_addr
    topic = unique("InteropSplit")
    group = unique("isplit")
    with backend.open("Admin", ns, request_timeout=30.0) as admin:
        admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        route = admin.topic_route(topic)
    all_queues = {(b.broker_name, q) for b in route.queue_datas for q in range(b.read_queue_nums)}
    assert len(all_queues) == 4 * len(rocketmq_cluster.brokers)
    half = len(all_queues) // 2
    inbox = Inbox()
    consumer = backend.make(
        "PushConsumer",
        ns,
        inbox,
        group=group,
        consume_from_where="first",
        allocate_strategy="averagely",
    )
    consumer.subscribe(topic)
    consumer.start()
    run = None
    try:

        def owned() -> set[tuple[str, int]]:
            return {
                (q.broker_name, q.queue_id) for q in consumer.assigned_queues() if q.topic == topic
            }

        backend.wait_for(
            lambda: owned() == all_queues, 60, "the python consumer to own every queue alone"
        )
        run = java_consumer(peers, ns, topic, group, tmp_path, backend)
        # Once the Java member is in, the Python member keeps half of the queues.
        backend.wait_for(
            lambda: len(owned()) == half, 60, "the python consumer to give up half of the queues"
        )
        backend.sleep(1.0)
        mine = owned()
        assert len(mine) == half
        with backend.open("Producer", ns, group=unique("isplit_p"), **LIMITS) as producer:
            queues = [MessageQueue(topic, broker, qid) for broker, qid in sorted(all_queues)]
            sent = {}
            for round_ in range(3):
                for q in queues:
                    r = retry_busy(
                        backend,
                        lambda q=q, n=round_: producer.send(
                            Message(topic, b"split-%d" % n), queue=q
                        ),
                    )
                    sent[r.msg_id] = (q.broker_name, q.queue_id)
        assert set(sent.values()) == all_queues

        shares = [(int(time.time() * 1000), sorted(mine))]  # the python share as it changes

        def all_consumed() -> bool:
            share = sorted(owned())
            if share != shares[-1][1]:
                shares.append((int(time.time() * 1000), share))
            return set(sent) <= inbox.ids() | {x["msgId"] for x in run.consumed("java")}

        backend.wait_for(all_consumed, WAIT, "every message")
        assert owned() == mine and len(shares) == 1, f"the python share changed: {shares}"
        run.stop()
        assert run.finish() == 0
        java_got = {x["msgId"]: (x["brokerName"], x["queueId"]) for x in run.consumed("java")}
        python_got = {g.msg_id: (g.broker, g.queue_id) for g in inbox.snapshot()}
    finally:
        consumer.close()
        if run is not None:
            run.kill()
    java_queues = set(java_got.values())
    python_queues = set(python_got.values())
    strays = [
        (g.msg_id, g.broker, g.queue_id, g.consumed_at)
        for g in inbox.snapshot()
        if (g.broker, g.queue_id) not in mine
    ]
    assert python_queues == mine, f"python consumed outside its share {shares}: {strays}"
    assert java_queues.isdisjoint(mine)
    assert java_queues | mine == all_queues and len(java_queues) == half
    assert set(java_got) | set(python_got) == set(sent)
    assert not set(java_got) & set(python_got), "a message was consumed by both members"
    for msg_id, queue in sent.items():
        owner = python_got if queue in mine else java_got
        assert msg_id in owner


def test_a_java_pop_consumer_and_this_client_share_a_pop_group(
    peers: dict[str, str],
    rocketmq_cluster: Any,
    sync_backend: Backend,
    tmp_path: Path,
) -> None:
    """A Java 5.x push consumer in POP mode (client rebalance off) and this client's
    push consumer in ``auto`` mode, one group: both pop and ack, every message is
    consumed, none lost."""
    backend = sync_backend
    ns = rocketmq_cluster.namesrv_addr
    topic = unique("InteropPop")
    group = unique("ipop")
    with backend.open("Admin", ns, request_timeout=30.0) as admin:
        admin.create_topic(topic, read_queue_nums=4, write_queue_nums=4)
        admin.create_group(group)
        admin.set_consume_mode(topic, group, "POP")
    inbox = Inbox()
    consumer = backend.make(
        "PushConsumer", ns, inbox, group=group, consume_mode="auto", consume_from_where="first"
    )
    consumer.subscribe(topic)
    consumer.start()
    run = None
    count = 2000
    try:
        run = java_consumer(peers, ns, topic, group, tmp_path, backend, pop=True, timeout_sec=600)
        with backend.open("Producer", ns, group=unique("ipop_p"), **LIMITS) as producer:
            sent = set()
            for i in range(count):
                r = retry_busy(backend, lambda i=i: producer.send(Message(topic, b"pop-%d" % i)))
                sent.add(r.msg_id)

        def java_ids() -> set[str]:
            return {x["msgId"] for x in run.consumed("java")}

        backend.wait_for(lambda: sent <= inbox.ids() | java_ids(), WAIT, "every message")
        backend.sleep(2.0)
        run.stop()
        assert run.finish() == 0
        java_got, python_got = java_ids(), inbox.ids()
        # This client popped them: each carries its receipt handle.
        assert all("POP_CK" in g.properties for g in inbox.snapshot())
    finally:
        consumer.close()
        if run is not None:
            run.kill()
    assert java_got and python_got, (len(java_got), len(python_got))
    assert sent <= java_got | python_got
    both = java_got & python_got
    # POP hands a message to one consumer at a time; twice only after an invisible
    # time ran out unacked, which a quick handler never lets happen.
    assert len(both) <= count // 100, f"{len(both)} messages consumed by both"
    print(f"\njava {len(java_got)}, python {len(python_got)}, both {len(both)} of {count}")


def test_lz4_and_zstd_bodies_from_this_client_are_read_by_the_java_consumer(
    rocketmq_cluster: Any, sync_backend: Backend, tmp_path: Path
) -> None:
    """compress_type="lz4"/"zstd": Java 5.x's consumer decompresses the bodies (LZ4 frames
    with independent blocks, Zstandard frames) and sees the algorithm's sysFlag bits."""
    java = build_peers("java")["java"]
    backend = sync_backend
    ns = rocketmq_cluster.namesrv_addr
    topic = unique("InteropCodec")
    with backend.open("Admin", ns, request_timeout=30.0) as admin:
        admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)
    ready = tmp_path / "ready"
    run = PeerRun(
        java,
        ns,
        [
            step(
                "consume",
                background=True,
                label="java",
                topic=topic,
                group=unique("icodec"),
                count=0,
                ready_file=ready,
                **{"from": "first"},
            )
        ],
        tmp_path,
        sleep=backend.sleep,
    )
    try:
        run.wait_ready([ready])
        sent: dict[str, tuple[bytes, int]] = {}
        for compress_type, bits in (("lz4", 0x100), ("zstd", 0x200)):
            body = b"".join(b"%s body line %d\n" % (compress_type.encode(), i) for i in range(3000))
            with backend.open(
                "Producer", ns, group=unique("icodec_p"), compress_type=compress_type, **LIMITS
            ) as producer:
                result = retry_busy(backend, lambda b=body: producer.send(Message(topic, b)))
            sent[result.msg_id] = (body, bits)

        def java_got() -> dict[str, dict[str, Any]]:
            return {x["msgId"]: x for x in run.consumed("java")}

        run.wait(lambda: set(sent) <= set(java_got()), WAIT, "the Java consumer's deliveries")
        run.stop()
        assert run.finish() == 0
    finally:
        run.kill()
    got = java_got()
    for msg_id, (body, bits) in sent.items():
        delivery = got[msg_id]
        assert bytes.fromhex(delivery["bodyHex"]) == body
        assert int(delivery["storeSize"]) < len(body) // 4  # stored compressed
        assert int(delivery["sysFlag"]) & COMPRESSION_TYPE == bits, delivery["sysFlag"]
