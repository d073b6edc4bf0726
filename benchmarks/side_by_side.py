"""This client (asyncio, gevent, sync) against the Java and Go clients, on one cluster.

    python benchmarks/side_by_side.py [--quick] [--no-docs]

One command, one run, one cluster: it starts the local cluster (or uses
ROCKETMQ_NAMESRV), builds the Java and Go peers (``interop/build.sh``), then runs
every client, each in its own process, through the same scenarios with 1 KiB
bodies:

- sequential synchronous sends: p50/p99 latency and msgs/s;
- pipelined (asynchronous) sends with 16 and 128 in flight: msgs/s;
- batch sends of 32 messages: msgs/s;
- draining a backlog of 100,000 messages with a push consumer: msgs/s (this
  client's pull consumer is measured too);
- draining the same backlog with RocketMQ 5.x POP: this client's SimpleConsumer
  (receive 32, one ack call per batch) and PushConsumer(consume_mode="pop"), and
  the Java client's push consumer in POP mode (no client rebalance);
- one producer sending over 1,000 topics: its route requests and heartbeats per
  minute, counted by relays in front of the name server and brokers
  (``benchmarks/wire_count.py``), and its CPU per send;
- client CPU time per message in each (the process's user + system time).

Every producer first sends the same number of unmeasured warm-up messages (the
JVM compiles its hot paths then). The figures are printed as a table with the
ratios to Java, written as JSON to ``benchmarks/results/side_by_side.json`` and,
unless ``--no-docs``, to ``docs/benchmarks.md`` with a plot
(``docs/benchmarks.png``; needs matplotlib: ``pip install -e '.[bench]'``).

``--worker`` runs one scenario of this client in the current process and prints
one JSON line with the same fields as the peers' ``bench-produce`` and
``bench-consume`` commands; the orchestrator uses it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

OURS = ("asyncio", "gevent", "sync")
PEERS = ("java", "go")
#: The floor column: a sequential send with no client around it (sequential sends only).
FLOOR = "floor"
CLIENTS = (*OURS, *PEERS, FLOOR)
SIZE = 1024
RESULTS = ROOT / "benchmarks" / "results" / "side_by_side.json"
BODY = bytes(ord("a") + i % 26 for i in range(SIZE))  # the peers' body (--size/--random: another)
POP_BATCH = 32  # messages per SimpleConsumer receive (the broker's most)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile, as the peers compute it."""
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


# ====================================================================== worker


#: The process's resident memory as its measurement ended, while its client was
#: still open (the peers read theirs before they shut their client down).
_rss_at_end: list[int] = []


def _measured() -> None:
    """The measurement ended: note the resident memory now (once)."""
    if not _rss_at_end:
        _rss_at_end.append(_rss_kib())


def _emit(record: dict[str, Any]) -> None:
    record.setdefault("rssKiB", _rss_at_end[0] if _rss_at_end else _rss_kib())
    print(json.dumps(record), flush=True)


def _rss_kib() -> int:
    """The process's resident memory now (VmRSS), in KiB, as the peers read it; -1
    if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _since_process_start() -> float:
    """Seconds since the kernel started this process (as the peers read it:
    /proc/self/stat's start time in clock ticks since boot, against /proc/uptime)."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


#: When the worker's first send was acknowledged (seconds since its process started).
_first_ack: list[float] = []


def _acknowledged() -> None:
    if not _first_ack:
        _first_ack.append(_since_process_start())


def _produce_record(
    client: str, args: argparse.Namespace, elapsed: float, cpu: float, lat: list[float]
) -> dict[str, Any]:
    lat.sort()
    record: dict[str, Any] = {
        "client": client,
        "op": "bench-produce",
        "mode": args.mode,
        "count": args.count,
        "size": len(BODY),
        "warmup": args.warmup,
        "firstAckSec": _first_ack[0] if _first_ack else None,
        "elapsedSec": elapsed,
        "msgsPerSec": args.count / elapsed,
        "cpuSec": cpu,
        "cpuUsPerMsg": cpu * 1e6 / args.count,
        "errors": getattr(args, "errors", 0),
    }
    if args.mode == "async":
        record["inflight"] = args.inflight
    if args.mode == "batch":
        record["batch"] = args.batch
    if args.mode == "spread":
        record["topics"] = args.topics
        record["startEpochMs"], record["endEpochMs"] = args.window
    if lat:
        record["p50Ms"] = percentile(lat, 0.50) * 1e3
        record["p99Ms"] = percentile(lat, 0.99) * 1e3
    return record


def _spread_topics(args: argparse.Namespace) -> list[str]:
    """The topics a producer sends to: ``--topic`` itself, or with ``--mode spread``
    its ``--topics`` numbered siblings ``<topic>_0`` ... (as the peers name them)."""
    if args.mode != "spread":
        return [args.topic]
    return [f"{args.topic}_{i}" for i in range(args.topics)]


def _spread_done(args: argparse.Namespace, started: float, sent: int, errors: int) -> None:
    """Notes a spread run's measured window (wall clock), how many it sent, and
    how many of those failed."""
    args.count = sent
    args.errors = errors
    args.window = (int(started * 1000), int(time.time() * 1000))


def _trace_options(args: argparse.Namespace) -> dict[str, Any]:
    """The client options of ``--trace`` (message trace on)."""
    return {"enable_trace": True} if getattr(args, "trace", False) else {}


def _with_trace(record: dict[str, Any], client: Any) -> dict[str, Any]:
    """``record`` with the trace counters of the (closed) ``client``, if it traced."""
    trace = client.stats().get("trace") if hasattr(client, "stats") else None
    if trace:
        record["trace"] = trace
    return record


def _batches(topic: str, count: int, size: int) -> list[list[Any]]:
    from rocketmq_proto import Message

    return [
        [Message(topic, BODY) for _ in range(min(size, count - start))]
        for start in range(0, count, size)
    ]


async def _asyncio_produce(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    import rocketmq_asyncio
    from rocketmq_proto import Message, RocketMQError

    topic = args.topic
    async with rocketmq_asyncio.Producer(
        args.namesrv,
        group=f"bench_{uuid.uuid4().hex[:8]}",
        send_timeout=30.0,
        **_trace_options(args),
    ) as producer:
        topics = _spread_topics(args)
        for i in range(max(1, args.warmup)):
            await producer.send(Message(topics[i % len(topics)], BODY))
            _acknowledged()
        lat: list[float] = []
        batches = _batches(topic, args.count, args.batch) if args.mode == "batch" else []
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "spread":
            started, deadline, sent, errors = time.time(), t0 + args.seconds, 0, 0
            while time.perf_counter() < deadline:
                try:  # counted, as the peers count theirs
                    await producer.send(Message(topics[sent % len(topics)], BODY))
                except RocketMQError:
                    errors += 1
                sent += 1
            _spread_done(args, started, sent, errors)
        elif args.mode == "sync":
            for _ in range(args.count):
                s = time.perf_counter()
                await producer.send(Message(topic, BODY))
                lat.append(time.perf_counter() - s)
        elif args.mode == "batch":
            for batch in batches:
                s = time.perf_counter()
                await producer.send_batch(batch)
                lat.append(time.perf_counter() - s)
        else:
            window = asyncio.Semaphore(args.inflight)
            tasks: set[asyncio.Task[Any]] = set()

            async def one() -> None:
                try:
                    await producer.send(Message(topic, BODY))
                finally:
                    window.release()

            for _ in range(args.count):
                await window.acquire()
                task = asyncio.ensure_future(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.gather(*list(tasks))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        _measured()
    return _with_trace(_produce_record("asyncio", args, elapsed, cpu, lat), producer)


def _blocking_produce(client: str, args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq_proto import Message, RocketMQError

    module, event_type, slots_type = _blocking_module(client)
    topic = args.topic
    with module.Producer(
        args.namesrv,
        group=f"bench_{uuid.uuid4().hex[:8]}",
        send_timeout=30.0,
        **_trace_options(args),
    ) as producer:
        topics = _spread_topics(args)
        for i in range(max(1, args.warmup)):
            producer.send(Message(topics[i % len(topics)], BODY))
            _acknowledged()
        lat: list[float] = []
        batches = _batches(topic, args.count, args.batch) if args.mode == "batch" else []
        cpu0, t0 = time.process_time(), time.perf_counter()
        if args.mode == "spread":
            started, deadline, sent, errors = time.time(), t0 + args.seconds, 0, 0
            while time.perf_counter() < deadline:
                try:  # counted, as the peers count theirs
                    producer.send(Message(topics[sent % len(topics)], BODY))
                except RocketMQError:
                    errors += 1
                sent += 1
            _spread_done(args, started, sent, errors)
        elif args.mode == "sync":
            for _ in range(args.count):
                s = time.perf_counter()
                producer.send(Message(topic, BODY))
                lat.append(time.perf_counter() - s)
        elif args.mode == "batch":
            for batch in batches:
                s = time.perf_counter()
                producer.send_batch(batch)
                lat.append(time.perf_counter() - s)
        else:
            slots = slots_type(args.inflight)
            done = event_type()
            remaining = [args.count]
            errors: list[BaseException] = []
            lock = threading.Lock()

            def finished(future: Any) -> None:
                if future.exception() is not None:
                    errors.append(future.exception())
                slots.release()
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()

            for _ in range(args.count):
                slots.acquire()
                producer.send_async(Message(topic, BODY)).add_done_callback(finished)
            done.wait(600)
            if errors:
                raise errors[0]
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        _measured()
    return _with_trace(_produce_record(client, args, elapsed, cpu, lat), producer)


def _floor_produce(args: argparse.Namespace) -> dict[str, Any]:
    """The floor of a sequential send from Python on this machine: one blocking socket
    to a broker master, one SEND_MESSAGE_V2 frame of a 1 KiB body encoded once and
    sent again and again, one at a time, each response read whole and not decoded
    (the warm-up's are: each must be a success). No client around it."""
    import socket
    import struct

    import rocketmq_sync
    from rocketmq_proto.message.properties import properties_string
    from rocketmq_proto.wire import requests as rq
    from rocketmq_proto.wire.codes import ResponseCode
    from rocketmq_proto.wire.command import FrameDecoder, encode_command

    with rocketmq_sync.Admin(args.namesrv) as admin:
        route = admin.topic_route(args.topic)
    broker = min(route.broker_datas, key=lambda b: b.broker_name)
    host, port = (broker.master_addr or "").rsplit(":", 1)
    command = rq.SendTemplate("bench_floor", args.topic).build(
        0, broker.broker_name, properties_string({"WAIT": "true"}), BODY, int(time.time() * 1000)
    )
    frame = encode_command(command)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    recv_into, send = sock.recv_into, sock.sendall
    head = bytearray(4)
    body = bytearray(4096)

    def exchange() -> bytearray:
        send(frame)
        for buf, size in ((head, 4), (body, 0)):
            view = memoryview(buf)
            if buf is body:
                size = struct.unpack(">I", head)[0]
                if size > len(body):
                    body.extend(bytes(size - len(body)))
                    view = memoryview(body)
            got = 0
            while got < size:
                n = recv_into(view[got:size])
                if not n:
                    raise ConnectionError("the broker closed the connection")
                got += n
        return body

    with sock:
        decoder = FrameDecoder()
        for _ in range(max(1, args.warmup)):
            answer = exchange()
            size = struct.unpack(">I", head)[0]
            decoder.feed(bytes(head) + bytes(answer[:size]))
            response = decoder.next_frame()
            if response is None or response.code != ResponseCode.SUCCESS:
                raise RuntimeError(f"the floor's send was refused: {response!r}")
        # A success's header starts as the warm-up's did (its code comes first, in
        # either serialization): each answer is checked by its first bytes, so that
        # a broker answering "busy" at once cannot pass for a fast floor.
        success = bytes(answer[4:14])
        lat: list[float] = []
        clock = time.perf_counter
        cpu0, t0 = time.process_time(), clock()
        for _ in range(args.count):
            s = clock()
            answer = exchange()
            lat.append(clock() - s)
            if answer[4:14] != success:
                size = struct.unpack(">I", head)[0]
                decoder.feed(bytes(head) + bytes(answer[:size]))
                raise RuntimeError(f"the floor's send was refused: {decoder.next_frame()!r}")
        elapsed, cpu = clock() - t0, time.process_time() - cpu0
        _measured()
    return _produce_record("floor", args, elapsed, cpu, lat)


def _blocking_module(client: str) -> tuple[Any, Any, Any]:
    if client == "gevent":
        from gevent.event import Event
        from gevent.lock import BoundedSemaphore

        import rocketmq_gevent

        return rocketmq_gevent, Event, BoundedSemaphore
    import rocketmq_sync

    return rocketmq_sync, threading.Event, threading.BoundedSemaphore


@dataclass
class _Drain:
    """Counts consumed messages; when the first and the last arrived."""

    count: int
    seen: int = 0
    first_at: float | None = None
    first_cpu: float | None = None
    done_at: float | None = None
    #: A file whose existence ends the drain (--stop-file), whatever the count.
    stop_file: str | None = None
    #: Wall clock (s) of the first and the last message counted.
    first_epoch: float | None = None
    last_epoch: float | None = None

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[str] | None = None  # set by add_distinct: POP may redeliver
        self.duplicates = 0

    def going(self, deadline: float) -> bool:
        """Whether to go on: the count not reached, time left, no stop file."""
        going = (
            self.seen < self.count
            and time.perf_counter() < deadline
            and not (self.stop_file and os.path.exists(self.stop_file))
        )
        if not going:
            _measured()  # (every worker's wait loop asks this; its client is still open)
        return going

    def arrived(self) -> None:
        """The first messages arrived (counted later, once acked)."""
        with self.lock:
            if self.first_at is None:
                self.first_at, self.first_cpu = time.perf_counter(), time.process_time()

    def add(self, n: int) -> None:
        with self.lock:
            if self.first_at is None:
                self.first_at, self.first_cpu = time.perf_counter(), time.process_time()
            if n:
                self.last_epoch = time.time()
                if self.first_epoch is None:
                    self.first_epoch = self.last_epoch
            self.seen += n
            if self.seen >= self.count and self.done_at is None:
                self.done_at = time.perf_counter()

    def add_distinct(self, msgs: list[Any]) -> None:
        """Counts the messages not seen before (by ``msg_id``) and the others as
        duplicates: a POP delivery not acked within its invisible time comes again."""
        fresh = 0
        with self.lock:
            if self.ids is None:
                self.ids = set()
            for msg in msgs:
                key = msg.msg_id
                if key in self.ids:
                    self.duplicates += 1
                else:
                    self.ids.add(key)
                    fresh += 1
        self.add(fresh)

    def record(self, client: str, op: str, t0: float, cpu0: float) -> dict[str, Any]:
        end = self.done_at or time.perf_counter()
        cpu = time.process_time()
        first = self.first_at or end
        record: dict[str, Any] = {
            "client": client,
            "op": op,
            "count": self.count,
            "received": self.seen,
            "elapsedSec": end - t0,
            "msgsPerSec": self.seen / (end - t0),
            "elapsedFromFirstSec": end - first,
            "msgsPerSecFromFirst": self.seen / max(end - first, 1e-9),
            "cpuSec": cpu - cpu0,
            "cpuUsPerMsg": (cpu - cpu0) * 1e6 / max(1, self.seen),
            "cpuFromFirstUsPerMsg": (cpu - (self.first_cpu or cpu)) * 1e6 / max(1, self.seen),
            "timedOut": self.seen < self.count and not self.stop_file,
            "firstAtEpochMs": None if self.first_epoch is None else self.first_epoch * 1000,
            "lastAtEpochMs": None if self.last_epoch is None else self.last_epoch * 1000,
        }
        if self.ids is not None:
            record["duplicates"] = self.duplicates
        return record


async def _asyncio_consume(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    import rocketmq_asyncio
    from rocketmq_proto import ConsumeResult, MessageExt

    drain = _Drain(args.count, stop_file=args.stop_file)
    deadline = time.perf_counter() + args.timeout
    cpu0, t0 = time.process_time(), time.perf_counter()
    if args.op == "push":

        async def handler(msgs: list[MessageExt]) -> ConsumeResult:
            drain.add(len(msgs))
            return ConsumeResult.SUCCESS

        consumer = rocketmq_asyncio.PushConsumer(
            args.namesrv,
            handler,
            group=args.group,
            consume_from_where="first",
            **_trace_options(args),
        )
        consumer.subscribe(args.topic)
        async with consumer:
            while drain.going(deadline):
                await asyncio.sleep(0.01)
    elif args.op == "pop":

        async def pop_handler(msgs: list[MessageExt]) -> ConsumeResult:
            drain.add_distinct(msgs)
            return ConsumeResult.SUCCESS

        popper = rocketmq_asyncio.PushConsumer(
            args.namesrv,
            pop_handler,
            group=args.group,
            consume_from_where="first",
            consume_mode="pop",
        )
        popper.subscribe(args.topic)
        async with popper:
            while drain.going(deadline):
                await asyncio.sleep(0.01)
    elif args.op == "simple":
        simple = rocketmq_asyncio.SimpleConsumer(
            args.namesrv, group=args.group, consume_from_where="first"
        )
        simple.subscribe(args.topic)
        async with simple:
            while drain.going(deadline):
                msgs = await simple.receive(POP_BATCH, wait=1.0)
                if msgs:
                    drain.arrived()
                    await simple.ack(msgs)
                    drain.add_distinct(msgs)
    else:
        pull = rocketmq_asyncio.PullConsumer(
            args.namesrv, group=args.group, consume_from_where="first"
        )
        pull.subscribe(args.topic)
        async with pull:
            while drain.going(deadline):
                drain.add(len(await pull.poll(1.0)))
    record = drain.record("asyncio", f"bench-{args.op}", t0, cpu0)
    return _with_trace(record, consumer) if args.op == "push" else record


def _blocking_consume(client: str, args: argparse.Namespace) -> dict[str, Any]:
    from rocketmq_proto import ConsumeResult, MessageExt

    module, _, _ = _blocking_module(client)
    sleep: Callable[[float], None] = time.sleep
    if client == "gevent":
        import gevent

        sleep = gevent.sleep
    drain = _Drain(args.count, stop_file=args.stop_file)
    deadline = time.perf_counter() + args.timeout
    cpu0, t0 = time.process_time(), time.perf_counter()
    if args.op == "push":

        def handler(msgs: list[MessageExt]) -> ConsumeResult:
            drain.add(len(msgs))
            return ConsumeResult.SUCCESS

        consumer = module.PushConsumer(
            args.namesrv,
            handler,
            group=args.group,
            consume_from_where="first",
            **_trace_options(args),
        )
        consumer.subscribe(args.topic)
        with consumer:
            while drain.going(deadline):
                sleep(0.01)
    elif args.op == "pop":

        def pop_handler(msgs: list[MessageExt]) -> ConsumeResult:
            drain.add_distinct(msgs)
            return ConsumeResult.SUCCESS

        popper = module.PushConsumer(
            args.namesrv,
            pop_handler,
            group=args.group,
            consume_from_where="first",
            consume_mode="pop",
        )
        popper.subscribe(args.topic)
        with popper:
            while drain.going(deadline):
                sleep(0.01)
    elif args.op == "simple":
        simple = module.SimpleConsumer(args.namesrv, group=args.group, consume_from_where="first")
        simple.subscribe(args.topic)
        with simple:
            while drain.going(deadline):
                msgs = simple.receive(POP_BATCH, wait=1.0)
                if msgs:
                    drain.arrived()
                    simple.ack(msgs)
                    drain.add_distinct(msgs)
    else:
        pull = module.PullConsumer(args.namesrv, group=args.group, consume_from_where="first")
        pull.subscribe(args.topic)
        with pull:
            while drain.going(deadline):
                drain.add(len(pull.poll(1.0)))
    record = drain.record(client, f"bench-{args.op}", t0, cpu0)
    return _with_trace(record, consumer) if args.op == "push" else record


def _body(size: int, *, random_bytes: bool = False) -> bytes:
    """A body of ``size`` bytes: the peers' repeating letters (compressible), or
    seeded random bytes (incompressible)."""
    if random_bytes:
        import random

        return random.Random(size).randbytes(size)
    return bytes(ord("a") + i % 26 for i in range(size))


def run_worker(args: argparse.Namespace) -> None:
    import asyncio

    global BODY
    if args.cpus:  # before any thread starts: the threads started later inherit it
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    if args.no_caller_reads:  # the blocking drivers as before callers read their answers
        from rocketmq_gevent._runtime import GeventRuntime
        from rocketmq_sync._runtime import ThreadRuntime

        ThreadRuntime.callers_read = False
        GeventRuntime.callers_read = False
    if args.no_reader_writes:  # the threads driver as before its readers wrote
        from rocketmq_sync._runtime import ThreadRuntime

        ThreadRuntime.reader_writes = False
    if args.size != SIZE or args.random:
        BODY = _body(args.size, random_bytes=args.random)
    client = args.worker
    if client == "floor":
        record = _floor_produce(args)
    elif args.op == "produce":
        if client == "asyncio":
            record = asyncio.run(_asyncio_produce(args))
        else:
            record = _blocking_produce(client, args)
    elif client == "asyncio":
        record = asyncio.run(_asyncio_consume(args))
    else:
        record = _blocking_consume(client, args)
    _emit(record)


# ================================================================ orchestrator


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    op: str  # produce | push | pull | simple (SimpleConsumer) | pop (POP-mode push)
    mode: str = "sync"
    inflight: int = 0
    batch: int = 0
    #: Body size (bytes) and whether the body is random (incompressible).
    size: int = SIZE
    random: bool = False


SCENARIOS = (
    Scenario("sync", "sequential sync send", "produce", "sync"),
    Scenario("async16", "pipelined send, 16 in flight", "produce", "async", inflight=16),
    Scenario("async128", "pipelined send, 128 in flight", "produce", "async", inflight=128),
    Scenario("batch32", "batch send of 32", "produce", "batch", batch=32),
    Scenario("k64", "64 KiB bodies, 16 in flight", "produce", "async", inflight=16, size=65536),
    Scenario(
        "k64r",
        "64 KiB random bodies, 16 in flight",
        "produce",
        "async",
        inflight=16,
        size=65536,
        random=True,
    ),
    Scenario("m1", "1 MiB bodies, 16 in flight", "produce", "async", inflight=16, size=1 << 20),
    Scenario(
        "m1r",
        "1 MiB random bodies, 16 in flight",
        "produce",
        "async",
        inflight=16,
        size=1 << 20,
        random=True,
    ),
    Scenario("topics", "sends over many topics", "produce", "spread"),
    Scenario("drain", "push consumer drain", "push"),
    Scenario("scale4", "push drain by 4 processes of one group", "push"),
    Scenario("pull", "pull consumer drain", "pull"),
    Scenario("pop_simple", "simple consumer (POP) drain", "simple"),
    Scenario("pop_push", "push consumer (POP) drain", "pop"),
)


SCENARIO_BY_KEY = {s.key: s for s in SCENARIOS}


def runs(scenario: Scenario, client: str) -> bool:
    """Whether ``client`` has this scenario: the peers have no pull-consumer
    benchmark, no SimpleConsumer (the remoting Java and Go clients have none),
    and the Go client no POP mode. The floor is a sequential send only."""
    if client == FLOOR:
        return scenario.key == "sync"
    if scenario.op in ("pull", "simple"):
        return client in OURS
    if scenario.op == "pop":
        return client != "go"
    return True


def _counts(quick: bool) -> dict[str, int]:
    if quick:
        return {"sync": 2_000, "async16": 8_000, "async128": 8_000, "batch32": 16_000,
                "k64": 300, "k64r": 300, "m1": 40, "m1r": 40, "scale4": 40_000,
                "drain": 20_000, "pull": 20_000, "pop_simple": 20_000, "pop_push": 20_000,
                "warmup": 500, "topics": 100, "topics_seconds": 65}  # fmt: skip
    return {"sync": 5_000, "async16": 100_000, "async128": 30_000, "batch32": 64_000,
            "k64": 2_000, "k64r": 2_000, "m1": 200, "m1r": 200, "scale4": 400_000,
            "drain": 100_000, "pull": 100_000, "pop_simple": 100_000, "pop_push": 100_000,
            "warmup": 2_000, "topics": 1_000, "topics_seconds": 75}  # fmt: skip


def build_peers() -> dict[str, list[str]]:
    out = subprocess.run(
        ["bash", str(ROOT / "interop" / "build.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    peers: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("JAVA_PEER="):
            peers["java"] = [line.split("=", 1)[1]]
        elif line.startswith("GO_PEER="):
            peers["go"] = [line.split("=", 1)[1]]
    missing = set(PEERS) - set(peers)
    if missing:
        raise SystemExit(f"interop/build.sh did not build {sorted(missing)}")
    return peers


def _warmup(scenario: Scenario, warmup: int) -> int:
    """Warm-up sends of ``scenario``: the same bytes as ``warmup`` 1 KiB sends at most
    (a large body's send is warm after a few)."""
    return max(10, min(warmup, warmup * SIZE // scenario.size))


def command_for(
    client: str,
    scenario: Scenario,
    *,
    peers: dict[str, list[str]],
    namesrv: str,
    topic: str,
    group: str,
    count: int,
    warmup: int,
    topics: int = 1,
    seconds: int = 0,
) -> list[str]:
    """The command running ``scenario`` for ``client``; a spread scenario sends
    over ``topics`` topics (``<topic>_0`` ...) for ``seconds``, its warm-up is one
    send to each."""
    spread: list[str] = []
    if scenario.mode == "spread":
        spread = ["--topics", str(topics), "--seconds", str(seconds)]
        warmups = topics
    else:
        warmups = _warmup(scenario, warmup)
    if client in (*OURS, FLOOR):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", client,
               "--op", scenario.op, "--namesrv", namesrv, "--topic", topic,
               "--count", str(count), *spread]  # fmt: skip
        if scenario.op == "produce":
            cmd += ["--mode", scenario.mode, "--warmup", str(warmups)]
            cmd += [
                "--inflight",
                str(scenario.inflight or 16),
                "--batch",
                str(scenario.batch or 32),
                "--size",
                str(scenario.size),
            ]
            if scenario.random:
                cmd.append("--random")
        else:
            cmd += ["--group", group]
        return cmd
    cmd = [*peers[client]]
    if scenario.op == "produce":
        cmd += ["bench-produce", "--namesrv", namesrv, "--topic", topic, "--count", str(count),
                "--mode", scenario.mode, "--warmup", str(warmups),
                "--size", str(scenario.size), *spread]  # fmt: skip
        if scenario.random:
            cmd.append("--random")
        if scenario.inflight:
            cmd += ["--inflight", str(scenario.inflight)]
        if scenario.batch:
            cmd += ["--batch", str(scenario.batch)]
    else:
        cmd += ["bench-consume", "--namesrv", namesrv, "--topic", topic, "--group", group,
                "--count", str(count), "--from", "first"]  # fmt: skip
        if scenario.op == "pop":
            cmd.append("--pop")  # the peer sets the group's request mode to POP first
    return cmd


#: Consumer processes of the scale-out row.
SCALE_PROCESSES = 4


def scale_out(
    client: str,
    scenario: Scenario,
    *,
    peers: dict[str, list[str]],
    namesrv: str,
    topic: str,
    group: str,
    total: int,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """:data:`SCALE_PROCESSES` push consumers of ``client``, each a process of its
    own, in one new group draining the ``total`` messages of ``topic``: msgs/s from
    the first message any of them got to the last (their wall clocks), once the
    group's lag is 0 (then a stop file ends them). CPU: all of theirs, per message."""
    import tempfile

    import rocketmq_sync
    from rocketmq_proto import RocketMQError

    stop = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "stop"
    base = command_for(
        client,
        scenario,
        peers=peers,
        namesrv=namesrv,
        topic=topic,
        group=group,
        count=total,
        warmup=0,
    )
    cmd = [*base, "--stop-file", str(stop)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(SCALE_PROCESSES)
    ]
    try:
        deadline = time.monotonic() + timeout
        with rocketmq_sync.Admin(namesrv) as admin:
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    progress = admin.consumer_progress(group, topic)
                except RocketMQError:  # the group is not known yet
                    continue
                committed = sum(o.consumer_offset for o in progress.offset_table.values())
                if committed and progress.total_lag == 0:
                    break
            else:
                raise RuntimeError(f"{group} did not drain {topic} in {timeout:.0f} s")
        stop.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        stop.unlink(missing_ok=True)
        stop.parent.rmdir()
    records = []
    for p, (out, err) in zip(procs, outs, strict=True):
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        if p.returncode not in (0, 2) or not lines:
            tail = "\n".join(err.splitlines()[-15:])
            raise RuntimeError(f"{' '.join(cmd[:4])}... exited {p.returncode}:\n{tail}")
        records.append(lines[-1])
    firsts = [r["firstAtEpochMs"] for r in records if _finite(r.get("firstAtEpochMs"))]
    lasts = [r["lastAtEpochMs"] for r in records if _finite(r.get("lastAtEpochMs"))]
    span = (max(lasts) - min(firsts)) / 1000
    rate = total / span
    cpu = sum(float(r["cpuSec"]) for r in records)
    return {
        "client": client,
        "op": "scale-out",
        "processes": SCALE_PROCESSES,
        "count": total,
        "received": sum(int(r["received"]) for r in records),
        "perProcess": [int(r["received"]) for r in records],
        "elapsedFromFirstSec": span,
        "msgsPerSec": rate,
        "msgsPerSecFromFirst": rate,
        "cpuSec": cpu,
        "cpuUsPerMsg": cpu * 1e6 / total,
    }


def spread_over_topics(
    client: str,
    scenario: Scenario,
    *,
    peers: dict[str, list[str]],
    namesrv: str,
    topic: str,
    topics: int,
    seconds: int,
) -> dict[str, Any]:
    """One producer of ``client`` sending one message at a time over ``topics``
    topics for ``seconds`` (after one warm-up send to each), through relays that
    count its requests (:mod:`wire_count`): its route requests and heartbeats per
    minute in the measured window, beside its CPU per send."""
    from wire_count import GET_ROUTEINFO_BY_TOPIC, HEART_BEAT, WireCount

    import rocketmq_sync

    with rocketmq_sync.Admin(namesrv) as admin:
        brokers = sorted(
            addr
            for broker in admin.cluster_info().broker_addr_table.values()
            for addr in broker.broker_addrs.values()
        )
    with WireCount(namesrv, brokers) as counter:
        cmd = command_for(
            client,
            scenario,
            peers=peers,
            namesrv=counter.namesrv_addr,
            topic=topic,
            group="",
            count=0,
            warmup=0,
            topics=topics,
            seconds=seconds,
        )
        record = run_one(cmd, timeout=seconds + 600)
        since, until = record["startEpochMs"] / 1000, record["endEpochMs"] / 1000
        for name, code in (
            ("routeRequestsPerMin", GET_ROUTEINFO_BY_TOPIC),
            ("heartbeatsPerMin", HEART_BEAT),
        ):
            record[name] = counter.per_minute(code, since, until)
            record[name.replace("PerMin", "InWindow")] = counter.requests(code, since, until)
    return record


def create_spread_topics(namesrv: str, topic: str, topics: int) -> float:
    """Creates ``<topic>_0`` ... ``<topic>_<topics - 1>`` (4 queues each); seconds taken."""
    from concurrent.futures import ThreadPoolExecutor

    import rocketmq_sync

    started = time.perf_counter()
    with rocketmq_sync.Admin(namesrv) as admin, ThreadPoolExecutor(8) as pool:
        names = [f"{topic}_{i}" for i in range(topics)]

        def create(name: str) -> None:
            admin.create_topic(name, read_queue_nums=4, write_queue_nums=4)

        for _ in pool.map(create, names):
            pass
    return time.perf_counter() - started


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def run_one(cmd: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not records:
        tail = "\n".join(done.stderr.splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {done.returncode}:\n{tail}")
    record: dict[str, Any] = records[-1]
    return record


def fill_backlog(namesrv: str, topic: str, count: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    import rocketmq_sync

    started = time.perf_counter()
    with (
        rocketmq_sync.Producer(namesrv, group="bench_fill", send_timeout=30.0) as producer,
        ThreadPoolExecutor(8) as pool,
    ):
        for _ in pool.map(producer.send_batch, _batches(topic, count, 32)):
            pass
    return time.perf_counter() - started


def machine_facts(cluster_version: str) -> dict[str, str]:
    def first_line(cmd: list[str], pattern: str = "") -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except OSError:
            return "not found"
        text = (out.stdout + out.stderr).strip().splitlines()
        for line in text:
            if pattern in line:
                return line.strip()
        return text[0].strip() if text else "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": first_line(["java", "-version"], "version"),
        "go": first_line(["go", "version"]),
        "broker": f"Apache RocketMQ {cluster_version} (name server + 2 brokers on 127.0.0.1)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def figure(record: dict[str, Any] | None, scenario: Scenario) -> float | None:
    if record is None:
        return None
    if scenario.op == "produce":
        return float(record["msgsPerSec"])
    return float(record.get("msgsPerSecFromFirst") or record["msgsPerSec"])


@contextlib.contextmanager
def bench_cluster() -> Iterator[Any]:
    """The cluster ``ROCKETMQ_NAMESRV`` names, or a local one started now and
    stopped when the block ends."""
    import cluster as launcher

    external = launcher.cluster_from_env()
    if external is not None:
        yield external
        return
    local = launcher.LocalCluster()
    print("starting the local cluster...", flush=True)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def orchestrate(args: argparse.Namespace) -> int:
    import rocketmq_sync

    counts = _counts(args.quick)
    clients = [c for c in args.clients.split(",") if c]
    keys = [k for k in args.scenarios.split(",") if k] if args.scenarios else []
    unknown = set(keys) - {s.key for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown --scenarios {sorted(unknown)}")
    scenarios = [s for s in SCENARIOS if not keys or s.key in keys]
    peers = build_peers() if set(clients) & set(PEERS) else {}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with bench_cluster() as cluster:
        namesrv = cluster.namesrv_addr
        run_id = uuid.uuid4().hex[:6]
        send_topic = f"BenchSend_{run_id}"
        drain_topic = f"BenchDrain_{run_id}"
        with rocketmq_sync.Admin(namesrv) as admin:
            admin.create_topic(send_topic, read_queue_nums=8, write_queue_nums=8)
            admin.create_topic(drain_topic, read_queue_nums=8, write_queue_nums=8)
        drain_count = counts["drain"]
        seconds = fill_backlog(namesrv, drain_topic, drain_count)
        print(f"backlog of {drain_count:,} x 1 KiB filled in {seconds:.1f} s", flush=True)
        scale_topic = f"BenchScale_{run_id}"
        if any(s.key == "scale4" for s in scenarios):
            with rocketmq_sync.Admin(namesrv) as admin:
                admin.create_topic(scale_topic, read_queue_nums=8, write_queue_nums=8)
            seconds = fill_backlog(namesrv, scale_topic, counts["scale4"])
            print(f"backlog of {counts['scale4']:,} x 1 KiB filled in {seconds:.1f} s", flush=True)
        spread_topic = f"BenchTopics_{run_id}"
        if any(s.key == "topics" for s in scenarios):
            seconds = create_spread_topics(namesrv, spread_topic, counts["topics"])
            print(f"{counts['topics']:,} topics created in {seconds:.1f} s", flush=True)
        facts = machine_facts(cluster.version)
        for scenario in scenarios:
            for client in clients:
                if not runs(scenario, client):
                    continue
                group = f"bench_{scenario.key}_{client}_{run_id}"
                try:
                    if scenario.key == "scale4":
                        record = scale_out(
                            client,
                            scenario,
                            peers=peers,
                            namesrv=namesrv,
                            topic=scale_topic,
                            group=group,
                            total=counts["scale4"],
                        )
                    elif scenario.key == "topics":
                        record = spread_over_topics(
                            client,
                            scenario,
                            peers=peers,
                            namesrv=namesrv,
                            topic=spread_topic,
                            topics=counts["topics"],
                            seconds=counts["topics_seconds"],
                        )
                    else:
                        cmd = command_for(
                            client,
                            scenario,
                            peers=peers,
                            namesrv=namesrv,
                            topic=send_topic if scenario.op == "produce" else drain_topic,
                            group=group,
                            count=counts[scenario.key],
                            warmup=counts["warmup"],
                        )
                        record = run_one(cmd, timeout=900)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    print(f"{client:8s} {scenario.label}: FAILED: {exc}", flush=True)
                    continue
                results.setdefault(scenario.key, {})[client] = record
                print(f"{client:8s} {scenario.label:32s} {describe(record, scenario)}", flush=True)
    out = {"facts": facts, "counts": counts, "results": results}
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(out, indent=2) + "\n")
    table = render_table(results)
    print()
    print(table)
    print()
    print("\n".join(render_targets(results)))
    if not args.no_docs:
        write_docs(out, table)
    return 0


def describe(record: dict[str, Any], scenario: Scenario) -> str:
    text = f"{figure(record, scenario) or 0:10,.0f} msgs/s  cpu {record['cpuUsPerMsg']:7.1f} µs/msg"
    if scenario.key == "sync":
        text += f"  p50 {record['p50Ms']:.3f} ms  p99 {record['p99Ms']:.3f} ms"
    if scenario.mode == "spread":
        text += (
            f"  over {record['topics']:,} topics: {record['routeRequestsPerMin']:,.0f} route"
            f" requests/min, {record['heartbeatsPerMin']:,.1f} heartbeats/min"
        )
    if record.get("duplicates"):
        text += f"  ({record['duplicates']:,} delivered again)"
    if record.get("timedOut"):
        text += "  (timed out)"
    return text


def _fmt_ratio(value: float | None, java: float | None) -> str:
    if value is None or not java:
        return ""
    return f" ({value / java:.2f}x)"


#: A row of the table: its label, each client's figure, its format, and whether
#: higher is better.
Row = tuple[str, dict[str, float | None], str, bool]


def table_rows(results: dict[str, dict[str, dict[str, Any]]]) -> list[Row]:
    """Every row of the table, in order: each scenario's throughput and CPU (and the
    sequential send's latencies), then start-up and resident memory."""
    rows: list[Row] = []
    for scenario in SCENARIOS:
        got = results.get(scenario.key, {})
        if not got:
            continue  # not run (--scenarios)
        rows.append(
            (
                f"{scenario.label} (msgs/s)",
                {c: figure(r, scenario) for c, r in got.items()},
                ",.0f",
                True,
            )
        )
        if scenario.mode == "spread":
            for name, what in (
                ("routeRequestsPerMin", "route requests per minute"),
                ("heartbeatsPerMin", "heartbeats per minute"),
            ):
                rows.append(
                    (
                        f"{scenario.label}, {what}",
                        {c: r.get(name) for c, r in got.items()},
                        ",.1f",
                        False,
                    )
                )
        if scenario.key == "sync":
            for q in ("p50Ms", "p99Ms"):
                rows.append(
                    (
                        f"sequential sync send, {q[:3]} latency (ms)",
                        {c: r.get(q) for c, r in got.items()},
                        ".3f",
                        False,
                    )
                )
        rows.append(
            (
                f"{scenario.label}, client CPU (µs/msg)",
                {c: r.get("cpuUsPerMsg") for c, r in got.items()},
                ".1f",
                False,
            )
        )

    def field(key: str, name: str, scale: float) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for client, record in results.get(key, {}).items():
            value = record.get(name)
            if isinstance(value, int | float) and value >= 0 and not math.isnan(value):
                out[client] = value * scale
        return out

    scaled = {
        c: figure(r, SCENARIO_BY_KEY["scale4"]) / d
        for c, r in results.get("scale4", {}).items()
        if (d := figure(results.get("drain", {}).get(c), SCENARIO_BY_KEY["drain"]))
    }
    if scaled:
        rows.append(
            (f"scale-out: {SCALE_PROCESSES} processes / 1 (push drain)", scaled, ".2f", True)
        )
    for label, key, name, scale, fmt in (
        ("start-up to the first acknowledged send (ms)", "sync", "firstAckSec", 1000, ",.0f"),
        ("resident memory after the 16-in-flight sends (MiB)", "async16", "rssKiB", 1 / 1024,
         ",.1f"),
        ("resident memory after the push drain (MiB)", "drain", "rssKiB", 1 / 1024, ",.1f"),
    ):  # fmt: skip
        values = {c: v for c, v in field(key, name, scale).items() if c != FLOOR}
        if values:
            rows.append((label, values, fmt, False))
    return rows


def render_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    header = "| measurement | " + " | ".join(CLIENTS) + " |"
    lines = [header, "|---|" + "---:|" * len(CLIENTS)]
    for label, values, fmt, _ in table_rows(results):
        java = values.get("java")
        cells = []
        for client in CLIENTS:
            value = values.get(client)
            if value is None:
                cells.append("—")
                continue
            text = format(value, fmt)
            if client in OURS:
                text += _fmt_ratio(value, java)
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    def get(key: str, client: str, field: str = "") -> float | None:
        record = results.get(key, {}).get(client)
        if record is None:
            return None
        if field:
            return float(record[field])
        return figure(record, next(s for s in SCENARIOS if s.key == key))

    lines = ["Targets:"]

    def check(text: str, value: float | None, limit: float, at_least: bool) -> None:
        if value is None:
            lines.append(f"- {text}: not measured")
            return
        ok = value >= limit if at_least else value <= limit
        lines.append(f"- {text}: {value:.2f} ({'met' if ok else 'MISSED'})")

    for key in ("async16", "async128"):
        a, j = get(key, "asyncio"), get(key, "java")
        check(f"asyncio pipelined {key[5:]} in flight / Java ≥ 0.90",
              a / j if a and j else None, 0.90, True)  # fmt: skip
    s, j = get("sync", "sync", "p50Ms"), get("sync", "java", "p50Ms")
    check("sync sequential p50 / Java ≤ 1.20", s / j if s and j else None, 1.20, False)
    for client in OURS:
        d, j = get("drain", client), get("drain", "java")
        check(f"{client} push drain / Java ≥ 0.80", d / j if d and j else None, 0.80, True)
    for key in ("sync", "async16", "async128", "batch32", "drain"):
        g, a = get(key, "gevent"), get(key, "asyncio")
        check(f"gevent / asyncio, {key} ≥ 0.80", g / a if g and a else None, 0.80, True)
    floor = get("sync", FLOOR, "p50Ms")
    for client in OURS:
        p50 = get("sync", client, "p50Ms")
        check(f"{client} sequential p50 / floor ≤ 1.50",
              p50 / floor if p50 and floor else None, 1.50, False)  # fmt: skip
    for key in ("async16", "async128"):
        y, j = get(key, "sync"), get(key, "java")
        check(f"sync pipelined {key[5:]} in flight / Java ≥ 1.00",
              y / j if y and j else None, 1.00, True)  # fmt: skip
    for client in OURS:
        push, pull = get("drain", client, "cpuUsPerMsg"), get("pull", client, "cpuUsPerMsg")
        check(f"{client} push CPU / pull CPU ≤ 1.25",
              push / pull if push and pull else None, 1.25, False)  # fmt: skip
    for key in ("batch32", "drain"):
        for client in ("asyncio", "gevent"):
            c, g = get(key, client, "cpuUsPerMsg"), get(key, "go", "cpuUsPerMsg")
            check(f"{client} {key} CPU / Go's ≤ 1.00", c / g if c and g else None, 1.00, False)
    return lines


def write_docs(out: dict[str, Any], table: str) -> None:
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    plotted = plot(out["results"], docs / "benchmarks.png")
    facts = out["facts"]
    counts = out["counts"]
    notes_path = docs / "benchmarks-notes.md"
    notes = notes_path.read_text() if notes_path.exists() else ""
    text = [
        "# Benchmarks: this client beside the Java and Go clients",
        "",
        "Produced by `python benchmarks/side_by_side.py` (one command, one run, one "
        "cluster); the raw figures are in `benchmarks/results/side_by_side.json`. "
        "This file is rewritten by every run; `docs/benchmarks-notes.md` holds the "
        "commentary it includes below.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        "",
        "Clients and brokers share the machine, so every figure includes the "
        "brokers' own CPU contention.",
        "",
        "## Method",
        "",
        f"- 1 KiB bodies; each producer first sends {counts['warmup']:,} unmeasured "
        "messages (routes, connections, the JVM's JIT).",
        f"- Sequential sync sends: {counts['sync']:,}; pipelined sends: "
        f"{counts['async16']:,} with 16 in flight, {counts['async128']:,} with 128; "
        f"batch sends: {counts['batch32']:,} messages in batches of 32.",
        "- Floor: the same sequential sends with no client around them: one blocking "
        "socket from Python to a broker master, one SEND_MESSAGE_V2 frame of a 1 KiB "
        "body encoded once and sent again and again, each response read whole and not "
        "decoded. The physical limit of a sequential send from Python on this machine.",
        f"- Large bodies, 16 in flight: {counts['k64']:,} of 64 KiB and {counts['m1']:,} "
        "of 1 MiB, compressible (the peers' repeating letters; every client compresses "
        "bodies over 4 KiB) and random (incompressible); fewer warm-up sends, the same "
        "bytes as the 1 KiB warm-up at most.",
        f"- Many topics: one producer sends one message at a time, round-robin over "
        f"{counts.get('topics', 0):,} topics of 4 queues each, for "
        f"{counts.get('topics_seconds', 0)} s after one warm-up send to each, with default "
        "settings, through relays on 127.0.0.1 in front of the name server and each "
        "broker (`benchmarks/wire_count.py`; the routes it relays name the brokers' "
        "relays) that note every request. Route requests and heartbeats per minute: "
        "for each topic (route requests) or broker (heartbeats) asked at least twice "
        "in the measured time, 60 s over the mean time between two of its requests, "
        "summed. The relays add to every request's latency, so this row's msgs/s is "
        "not the sequential send's.",
        "- Start-up: from the kernel's start of the client's process (/proc) to the "
        "first acknowledged send (a route lookup and two connections included): "
        "interpreter or JVM start, imports, client start. Clock ticks of 10 ms.",
        "- Resident memory (VmRSS): after the 16-in-flight sends and after the push "
        "drain; the peers read it before their client shuts down, this client's "
        "workers as they end (their client closed).",
        f"- Drain: a backlog of {counts['drain']:,} messages over 2 brokers x 8 queues, "
        "consumed from the first offset by a new group with default settings (20 "
        "handlers, pulls of 32); msgs/s counted from the first message received to "
        "the last, so client start-up and the first rebalance are left out.",
        f"- Group of {SCALE_PROCESSES} processes: a backlog of {counts['scale4']:,} "
        "messages, consumed from the first offset by a new group of "
        f"{SCALE_PROCESSES} push consumers of one client, each a process of its own, "
        "with default settings; msgs/s from the first message any of them received to "
        "the last (their wall clocks), CPU all of theirs per message. Scale-out: that "
        "rate over the one-process drain's.",
        "- POP drains: the same backlog, consumed by a new group from the first offset "
        "with RocketMQ 5.x POP: a SimpleConsumer receiving 32 at a time and acking each "
        "batch with one ack call (one receive at a time), and push consumers with "
        'consume_mode="pop" (this client) or setClientRebalance(false) and the group\'s '
        "request mode set to POP (Java); messages counted once each (by message id).",
        "- CPU: the client process's user + system time during the measurement, per message.",
        "- Java: `rocketmq-client` "
        "(the broker's version) via `interop/java`; Go: `rocketmq-client-go/v2` via "
        "`interop/go`. Ratios in brackets are to Java.",
        "",
        "## Results",
        "",
        table,
        "",
        *render_targets(out["results"]),
        "",
    ]
    if plotted:
        text += ["![every row against Java](benchmarks.png)", ""]
    if notes:
        text += [notes.rstrip(), ""]
    (docs / "benchmarks.md").write_text("\n".join(text))
    print(f"wrote {docs / 'benchmarks.md'}" + (" and benchmarks.png" if plotted else ""))


def plot(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> bool:
    """Every row of the table against the Java client's figure (left) and the Go
    client's (right): each client's advantage (its figure over the reference's
    where higher is better, the reference's over its where lower is), on a log
    scale; right of 1 is ahead. Rows without a figure of the reference (the
    floor, the pull and simple consumers; the POP push drain for Go) stay empty
    in its panel."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[bench]')")
        return False
    rows = [r for r in table_rows(results) if r[1].get("java") or r[1].get("go")]
    fig, axes = plt.subplots(
        1, 2, figsize=(16, 0.42 * len(rows) * 2 + 1.5), sharey=True, squeeze=False
    )
    for ax, reference in zip(axes[0], ("java", "go"), strict=True):
        clients = [c for c in CLIENTS if c not in (reference, FLOOR)]
        height = 0.8 / len(clients)
        for i, client in enumerate(clients):
            ys, xs = [], []
            for y, (_, values, _, higher) in enumerate(rows):
                value, ref = values.get(client), values.get(reference)
                if value and ref:
                    ys.append(y + (i - (len(clients) - 1) / 2) * height)
                    xs.append(value / ref if higher else ref / value)
            # From 1 (the reference) to the advantage: right when ahead, left when behind.
            ax.barh(ys, [x - 1 for x in xs], height, left=1, label=client)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=1)
        name = reference.title()
        ax.set_xlabel(f"advantage over the {name} client (log scale; right of 1: ahead)")
        ax.set_title(f"Every row against {name}")
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    first = axes[0][0]
    first.set_yticks(range(len(rows)))
    first.set_yticklabels([r[0] for r in rows], fontsize=7)
    first.invert_yaxis()
    fig.suptitle("One run of benchmarks/side_by_side.py, one RocketMQ cluster")
    fig.tight_layout(rect=(0, 0, 1, 0.99))  # (room for the title above the panels')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated scenario keys to run (default: all): "
        + ",".join(s.key for s in SCENARIOS),
    )
    parser.add_argument(
        "--results",
        default=str(RESULTS),
        help="the run's JSON, written by a run, read by --render (default: %(default)s)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite docs/ from benchmarks/results/side_by_side.json (no run)",
    )
    worker = parser.add_argument_group("worker (one scenario of this client)")
    worker.add_argument("--worker", choices=(*OURS, FLOOR))
    worker.add_argument(
        "--op", choices=("produce", "push", "pull", "simple", "pop"), default="produce"
    )
    worker.add_argument("--namesrv")
    worker.add_argument("--topic")
    worker.add_argument("--group")
    worker.add_argument("--count", type=int, default=10_000)
    worker.add_argument("--mode", choices=("sync", "async", "batch", "spread"), default="sync")
    worker.add_argument("--topics", type=int, default=1, help="--mode spread: topics sent to")
    worker.add_argument("--seconds", type=float, default=60.0, help="--mode spread: how long")
    worker.add_argument("--inflight", type=int, default=16)
    worker.add_argument("--batch", type=int, default=32)
    worker.add_argument("--warmup", type=int, default=0)
    worker.add_argument("--timeout", type=float, default=600.0)
    worker.add_argument("--trace", action="store_true", help="message trace on")
    worker.add_argument("--size", type=int, default=SIZE, help="body size (bytes)")
    worker.add_argument("--random", action="store_true", help="incompressible bodies")
    worker.add_argument(
        "--cpus", help="run on these CPUs only (comma-separated numbers), as taskset -c would"
    )
    worker.add_argument(
        "--no-caller-reads",
        action="store_true",
        help="sync, gevent: the reader task hands every answer over (callers never read)",
    )
    worker.add_argument(
        "--no-reader-writes",
        action="store_true",
        help="sync: every request is written by its caller, never left to a busy reader",
    )
    worker.add_argument("--stop-file", help="a consumer stops once this file exists")
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return 0
    if args.render:
        out = json.loads(Path(args.results).read_text())
        write_docs(out, render_table(out["results"]))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
