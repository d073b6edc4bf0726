"""The commands that move messages: ``send``, ``tail`` and ``bench``."""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextlib
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

import rocketmq_sync
from rocketmq_proto import Message, MessageExt, RocketMQError, SendResult
from rocketmq_proto.message.properties import MessageConst

from ._app import _pair, cli
from ._common import (
    EXIT_FAILED,
    emit_json,
    exit_code_of,
    interrupted,
    message_json,
    message_line,
    opened,
    parse_time,
    settings,
    stderr,
    stdin_is_terminal,
)

#: The group ``tail`` reads with by default: broadcasting, nothing committed, so
#: any number of tails run side by side and none moves a consumer's offsets.
TAIL_GROUP = "rocketmq-cli-tail"
#: The group ``bench consume`` consumes with by default.
BENCH_GROUP = "rocketmq-cli-bench"


# ------------------------------------------------------------------- send


def _result_json(result: SendResult) -> dict[str, Any]:
    mq = result.message_queue
    return {
        "status": result.status.name,
        "msg_id": result.msg_id,
        "offset_msg_id": result.offset_msg_id,
        "topic": mq.topic,
        "broker": mq.broker_name,
        "queue_id": mq.queue_id,
        "queue_offset": result.queue_offset,
    }


def _bodies(bodies: tuple[str, ...], files: tuple[Path, ...], count: int | None) -> Iterator[bytes]:
    """The bodies to send, in order: arguments, files, else stdin's lines."""
    given = [b.encode() for b in bodies] + [f.read_bytes() for f in files]
    if given:
        yield from given
        return
    if count is not None:
        return
    stdin: Any = sys.stdin.buffer
    if stdin_is_terminal():
        raise click.UsageError("nothing to send: give BODY arguments, --file, or pipe lines in")
    for line in stdin:
        yield line.rstrip(b"\r\n")


@dataclass
class Tally:
    """Sends (or receipts) counted from several threads."""

    ok: int = 0
    failed: int = 0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=4096)
    )
    first_error: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self, latency: float | None, error: BaseException | None = None) -> None:
        with self.lock:
            if error is None:
                self.ok += 1
                if latency is not None:
                    self.latencies.append(latency)
            else:
                self.failed += 1
                self.first_error = self.first_error or error

    def latency_ms(self, q: float) -> float:
        with self.lock:
            values = sorted(self.latencies)
        if not values:
            return 0.0
        return 1000 * values[min(len(values) - 1, int(q * len(values)))]


_RETRY_TOPIC = MessageConst.PROPERTY_RETRY_TOPIC


class Seen:
    """Which positions of each queue were delivered, to count the messages
    delivered again from the same position (a pull answered twice, a queue taken
    again after a rebalance): per queue, the ranges of offsets seen, merged as
    they touch (few: a queue's messages arrive nearly in order, and a gap that
    never fills costs one range, not an entry per offset after it). Messages of
    the group's retry topic are counted apart from their topic's."""

    def __init__(self) -> None:
        #: (retried, broker, queue id) -> sorted, disjoint [start, end) ranges.
        self._queues: dict[tuple[bool, str, int], list[list[int]]] = {}
        self.again = 0

    def add(self, msg: MessageExt) -> None:
        """Note a delivery of ``msg`` (called under the tally's lock)."""
        key = (_RETRY_TOPIC in msg.properties, msg.broker_name, msg.queue_id)
        ranges = self._queues.setdefault(key, [])
        offset = msg.queue_offset
        i = bisect.bisect_right(ranges, [offset, math.inf]) - 1  # the range starting at or before
        if i >= 0 and offset < ranges[i][1]:
            self.again += 1
            return
        joins_left = i >= 0 and ranges[i][1] == offset
        joins_right = i + 1 < len(ranges) and ranges[i + 1][0] == offset + 1
        if joins_left and joins_right:
            ranges[i][1] = ranges[i + 1][1]
            del ranges[i + 1]
        elif joins_left:
            ranges[i][1] = offset + 1
        elif joins_right:
            ranges[i + 1][0] = offset
        else:
            ranges.insert(i + 1, [offset, offset + 1])

    def ranges(self) -> int:
        """Ranges held, over all queues (what the memory grows with)."""
        return sum(len(r) for r in self._queues.values())


def _received(tally: Tally, seen: Seen, start: float) -> dict[str, Any]:
    """A consume benchmark's summary: what ``_summary`` says, and the redeliveries."""
    doc = _summary("received", tally, time.perf_counter() - start)
    doc.pop("failed")
    doc["redelivered"] = seen.again
    return doc


def _summary(what: str, tally: Tally, elapsed: float) -> dict[str, Any]:
    rate = tally.ok / elapsed if elapsed > 0 else 0.0
    return {
        what: tally.ok,
        "failed": tally.failed,
        "seconds": round(elapsed, 3),
        "rate": round(rate, 1),
        "latency_p50_ms": round(tally.latency_ms(0.5), 2),
        "latency_p99_ms": round(tally.latency_ms(0.99), 2),
    }


def _say_summary(doc: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        emit_json(doc)
        return
    count = doc.get("sent", doc.get("received", 0))
    line = f"{verb} {count} messages in {doc['seconds']:.2f} s: {doc['rate']:.1f} msg/s"
    if "failed" in doc:
        line += f", {doc['failed']} failed"
    if doc.get("redelivered"):
        line += f", {doc['redelivered']} of them delivered again"
    if doc.get("latency_p50_ms"):
        line += f" (latency p50 {doc['latency_p50_ms']:.1f} ms, p99 {doc['latency_p99_ms']:.1f} ms)"
    click.echo(line)


def _progress(total: int | None) -> Progress:
    columns: list[Any] = [TextColumn("[bold]{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TaskProgressColumn()]
    else:
        columns += [TextColumn("{task.completed} msgs")]
    columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    console = stderr()
    return Progress(
        *columns,
        console=console,
        transient=False,
        refresh_per_second=8,
        disable=not console.is_terminal,  # piped: the summary alone
    )


def _pipelined(
    producer: Any,
    make: Any,
    total: int | None,
    deadline: float | None,
    concurrency: int,
    tally: Tally,
    on_tick: Any,
) -> None:
    """Send ``make(i)`` for i = 0.. until ``total`` or ``deadline``, at most
    ``concurrency`` in flight; ``on_tick()`` after each answer."""
    window: collections.deque[tuple[float, concurrent.futures.Future[Any]]] = collections.deque()

    def settle(started: float, future: concurrent.futures.Future[Any]) -> None:
        try:
            future.result()
        except RocketMQError as exc:
            tally.done(None, exc)
        else:
            tally.done(time.perf_counter() - started)
        on_tick()

    i = 0
    while (total is None or i < total) and (deadline is None or time.monotonic() < deadline):
        if len(window) >= concurrency:
            settle(*window.popleft())
        window.append((time.perf_counter(), producer.send_async(make(i))))
        i += 1
    while window:
        settle(*window.popleft())


@cli.command()
@click.argument("topic")
@click.argument("bodies", nargs=-1, metavar="[BODY]...")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="A file to send as one message; repeatable.",
)
@click.option("--tags", help="The message tag.")
@click.option("-k", "--key", "keys", multiple=True, help="A key (indexed); repeatable.")
@click.option("-p", "--property", "properties", multiple=True, metavar="KEY=VALUE")
@click.option("--sharding-key", help="Messages with one sharding key go to one queue, in order.")
@click.option(
    "-c", "--count", type=click.IntRange(min=1), help="Send N messages (the bodies in turn)."
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 4096),
    default=64,
    show_default=True,
    help="Sends in flight with --count.",
)
def send(
    topic: str,
    bodies: tuple[str, ...],
    files: tuple[Path, ...],
    tags: str | None,
    keys: tuple[str, ...],
    properties: tuple[str, ...],
    sharding_key: str | None,
    count: int | None,
    concurrency: int,
) -> None:
    """Send messages to TOPIC: each BODY argument, each --file, else each line of
    stdin. With --count N, N messages with a live progress bar and the rate."""
    s = settings()
    props = dict(_pair(p, "--property") for p in properties)

    def message(body: bytes) -> Message:
        return Message(topic, body, tags=tags, keys=list(keys) or None, properties=props or None)

    if count is not None and sharding_key:
        raise click.UsageError("--sharding-key sends one by one: leave --count out")
    source = _bodies(bodies, files, count)
    with opened(s.producer()) as producer:
        if count is None:
            failed = 0
            for body in source:
                try:
                    result = producer.send(message(body), sharding_key=sharding_key)
                except RocketMQError as exc:
                    if not failed:
                        first = exc
                    failed += 1
                    click.echo(f"rocketmq: error: send failed: {exc}", err=True)
                    continue
                if s.json:
                    emit_json(_result_json(result))
                else:
                    mq = result.message_queue
                    click.echo(
                        f"{result.status.name}  {result.msg_id}  "
                        f"{mq.broker_name}/{mq.queue_id}@{result.queue_offset}"
                    )
            if failed:
                raise click.exceptions.Exit(exit_code_of(first))
            return
        given = list(source)
        templates = given or [b""]

        def make(i: int) -> Message:
            return message(templates[i % len(templates)] if given else f"message {i}".encode())

        tally = Tally()
        start = time.perf_counter()
        with _progress(count) as progress:
            task = progress.add_task("send", total=count, rate="")

            def tick() -> None:
                took = time.perf_counter() - start
                rate = f"{tally.ok / took:.0f} msg/s" if took > 0 else ""
                progress.update(task, completed=tally.ok + tally.failed, rate=rate)

            try:
                _pipelined(producer, make, count, None, concurrency, tally, tick)
            except KeyboardInterrupt:
                progress.stop()
                _say_summary(_summary("sent", tally, time.perf_counter() - start), "sent", s.json)
                interrupted("send stopped")
    _say_summary(_summary("sent", tally, time.perf_counter() - start), "sent", s.json)
    if tally.failed:
        click.echo(
            f"rocketmq: error: {tally.failed} sends failed, the first: {tally.first_error}",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)


# ------------------------------------------------------------------- tail


def _start_point(start: str) -> int | None:
    """``--from`` as a time (epoch ms), ``None`` for ``first``; ``last`` is now."""
    if start == "first":
        return None
    if start == "last":
        return int(time.time() * 1000)
    return parse_time(start)


def _tags_of(expression: str | None) -> set[str] | None:
    """The tags of a tag expression (``a || b``); ``None`` for every message."""
    if not expression or expression.strip() == "*":
        return None
    return {t.strip() for t in expression.split("||") if t.strip()}


@cli.command()
@click.argument("topic")
@click.option(
    "--from",
    "start",
    default="last",
    show_default=True,
    metavar="first|last|TIME",
    help="Where to start: the first message kept, new ones only, or a time "
    "(epoch ms, ISO date-time, -10m, -2h, -1d).",
)
@click.option("--tag", "tag_expr", help="A tag filter: 'a || b'.")
@click.option("--sql", "sql_expr", help="An SQL92 filter on properties (brokers must allow it).")
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after N messages.")
@click.option(
    "--idle",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop once nothing new came for SECONDS (the backlog read, say).",
)
@click.option("-g", "--group", default=TAIL_GROUP, show_default=True, help="The group read with.")
def tail(
    topic: str,
    start: str,
    tag_expr: str | None,
    sql_expr: str | None,
    count: int | None,
    idle: float | None,
    group: str,
) -> None:
    """Print the messages of TOPIC as they come (one line each, or --json lines),
    until Ctrl-C (exit 130), --count messages or --idle seconds without a new
    one (exit 0). Commits no offset."""
    if tag_expr and sql_expr:
        raise click.UsageError("--tag and --sql do not go together")
    s = settings()
    since = _start_point(start)
    tags = _tags_of(tag_expr)
    options: dict[str, Any] = {"group": group, "auto_commit": False, **s.client_options()}
    if sql_expr:
        # The brokers filter: the consumer subscribes (broadcasting, so that tails
        # of one group do not share the queues) and what was stored before the
        # start is skipped here.
        options["message_model"] = "broadcasting"
        options["consume_from_where"] = "first"
    consumer = rocketmq_sync.PullConsumer(s.namesrv, **options)
    if sql_expr:
        consumer.subscribe(topic, sql_expr, sql=True)
    seen = 0
    with opened(consumer):
        try:
            if not sql_expr:
                # Every queue of the topic, each read from exactly where --from says.
                queues = consumer.queues_of(topic)
                consumer.assign(queues)
                for queue in queues:
                    if since is None:
                        consumer.seek_to_beginning(queue)
                    elif start == "last":
                        consumer.seek_to_end(queue)
                    else:
                        consumer.seek(queue, consumer.offset_for_timestamp(queue, since))
            # The last time something came (a message the filters drop too: the
            # tail is still reading a backlog then), for --idle.
            last_news = time.monotonic()
            while count is None or seen < count:
                wait = 0.5
                if idle is not None:
                    left = last_news + idle - time.monotonic()
                    if left <= 0:
                        break
                    wait = min(wait, left)
                polled = consumer.poll(wait, None if count is None else count - seen)
                if polled:
                    last_news = time.monotonic()
                for msg in polled:
                    if tags is not None and msg.tags not in tags:
                        continue
                    if sql_expr and since is not None and msg.store_timestamp < since:
                        continue
                    _print_message(msg, s.json)
                    seen += 1
        except KeyboardInterrupt:
            stderr().print(f"tail stopped after {seen} messages")
            raise click.exceptions.Exit(130) from None


def _print_message(msg: MessageExt, as_json: bool) -> None:
    if as_json:
        emit_json(message_json(msg))
    else:
        click.echo(message_line(msg))
    sys.stdout.flush()


# ------------------------------------------------------------------ bench


@cli.group()
def bench() -> None:
    """Measure produce and consume rates, live."""


def _live(meter: Any) -> Any:
    """A live display of ``meter`` on stderr, when stderr is a terminal."""
    console = stderr()
    if not console.is_terminal:
        return contextlib.nullcontext()
    return Live(meter, console=console, refresh_per_second=4)


class _Meter:
    """A live line: messages so far, rate over the last second and overall."""

    def __init__(self, label: str, tally: Tally) -> None:
        self.label = label
        self.tally = tally
        self.start = time.perf_counter()
        self.samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=16)

    def __rich__(self) -> Text:
        now = time.perf_counter()
        done = self.tally.ok
        self.samples.append((now, done))
        t0, n0 = self.samples[0]
        recent = (done - n0) / (now - t0) if now > t0 else 0.0
        overall = done / (now - self.start) if now > self.start else 0.0
        text = (
            f"{self.label}: {done} msgs  {recent:,.0f} msg/s now  {overall:,.0f} msg/s overall  "
            f"{now - self.start:5.1f} s"
        )
        if self.tally.failed:
            text += f"  {self.tally.failed} failed"
        if self.tally.latencies:
            text += f"  p99 {self.tally.latency_ms(0.99):.1f} ms"
        return Text(text)


def _limits(count: int | None, duration: float | None) -> tuple[int | None, float | None]:
    if count is None and duration is None:
        duration = 10.0
    return count, None if duration is None else time.monotonic() + duration


@bench.command("produce")
@click.argument("topic")
@click.option(
    "-s",
    "--size",
    type=click.IntRange(1, 4 * 1024 * 1024),
    default=128,
    show_default=True,
    help="Body bytes.",
)
@click.option("-c", "--count", type=click.IntRange(min=1), help="Messages to send.")
@click.option(
    "-d", "--duration", type=click.FloatRange(min=0.1), help="Seconds to send for (default 10)."
)
@click.option("--concurrency", type=click.IntRange(1, 4096), default=64, show_default=True)
def bench_produce(
    topic: str, size: int, count: int | None, duration: float | None, concurrency: int
) -> None:
    """Send as fast as the cluster takes it; show the rate live, then the summary."""
    s = settings()
    total, deadline = _limits(count, duration)
    body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    tally = Tally()
    meter = _Meter("produce", tally)
    with opened(s.producer()) as producer, _live(meter):
        try:
            _pipelined(
                producer,
                lambda i: Message(topic, body),
                total,
                deadline,
                concurrency,
                tally,
                lambda: None,
            )
        except KeyboardInterrupt:
            _say_summary(_summary("sent", tally, time.perf_counter() - meter.start), "sent", s.json)
            interrupted("bench stopped")
    _say_summary(_summary("sent", tally, time.perf_counter() - meter.start), "sent", s.json)
    if tally.failed:
        click.echo(
            f"rocketmq: error: {tally.failed} sends failed, the first: {tally.first_error}",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_FAILED)


@bench.command("consume")
@click.argument("topic")
@click.option("-g", "--group", default=BENCH_GROUP, show_default=True)
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after N messages.")
@click.option(
    "-d", "--duration", type=click.FloatRange(min=0.1), help="Seconds to consume for (default 10)."
)
@click.option(
    "--from",
    "start",
    type=click.Choice(["first", "last"]),
    default="last",
    show_default=True,
    help="Where a group with no offsets starts.",
)
@click.option("--threads", type=click.IntRange(1, 1024), default=20, show_default=True)
def bench_consume(
    topic: str, group: str, count: int | None, duration: float | None, start: str, threads: int
) -> None:
    """Consume with a push consumer; show the rate live, then the summary."""
    s = settings()
    total, deadline = _limits(count, duration)
    tally = Tally()
    seen = Seen()
    enough = threading.Event()

    def handler(messages: list[MessageExt]) -> None:
        now_ms = time.time() * 1000
        for m in messages:
            tally.done(max(0.0, (now_ms - m.born_timestamp) / 1000) if m.born_timestamp else None)
        with tally.lock:
            for m in messages:
                seen.add(m)
        if total is not None and tally.ok >= total:
            enough.set()

    consumer = rocketmq_sync.PushConsumer(
        s.namesrv,
        handler,
        group=group,
        consume_from_where=start,
        consume_thread_max=threads,
        **s.client_options(),
    )
    consumer.subscribe(topic)
    meter = _Meter("consume", tally)
    with opened(consumer), _live(meter):
        try:
            while not enough.is_set() and (deadline is None or time.monotonic() < deadline):
                enough.wait(0.2)
        except KeyboardInterrupt:
            _say_summary(_received(tally, seen, meter.start), "received", s.json)
            interrupted("bench stopped")
    _say_summary(_received(tally, seen, meter.start), "received", s.json)
