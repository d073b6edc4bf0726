"""The ``rocketmq`` command group, its global options, and the commands that look
at the cluster: ``topic``, ``message``, ``lag`` and ``cluster``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any

import click
from rich.live import Live

import rocketmq_proto
from rocketmq_proto import MessageQueue, Perm
from rocketmq_proto.message import namespace as ns

from ._common import (
    EXIT_FAILED,
    Group,
    Settings,
    emit_json,
    interrupted,
    message_json,
    opened,
    settings,
    show_time,
    stderr,
    stdin_is_terminal,
    stdout,
    table,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=Group, context_settings=CONTEXT)
@click.option(
    "-n",
    "--namesrv",
    envvar="NAMESRV_ADDR",
    show_envvar=True,
    metavar="HOST:PORT[;...]",
    help="Name server address(es), ';'-separated.",
)
@click.option("--namespace", envvar="ROCKETMQ_NAMESPACE", show_envvar=True, help="Namespace.")
@click.option("--access-key", envvar="ROCKETMQ_ACCESS_KEY", show_envvar=True, help="ACL key.")
@click.option("--secret-key", envvar="ROCKETMQ_SECRET_KEY", show_envvar=True, help="ACL secret.")
@click.option("--tls", is_flag=True, help="Connect with TLS (certificates verified).")
@click.option("--tls-insecure", is_flag=True, help="Connect with TLS, certificates not verified.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds a request may take.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine output: JSON (one document a line).")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(version=rocketmq_proto.__version__, prog_name="rocketmq")
@click.pass_context
def cli(
    ctx: click.Context,
    namesrv: str | None,
    namespace: str | None,
    access_key: str | None,
    secret_key: str | None,
    tls: bool,
    tls_insecure: bool,
    timeout: float,
    as_json: bool,
    debug: bool,
) -> None:
    """Look at and use an Apache RocketMQ cluster: send and tail messages, see
    topics, consumer lag and brokers.

    Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 the cluster could
    not be reached, 130 interrupted (Ctrl-C)."""
    ctx.obj = Settings(
        namesrv=namesrv or None,
        namespace=namespace or None,
        access_key=access_key,
        secret_key=secret_key,
        tls=tls,
        tls_insecure=tls_insecure,
        timeout=timeout,
        json=as_json,
        debug=debug,
    )


# ------------------------------------------------------------------ topic


@cli.group(cls=Group)
def topic() -> None:
    """Create, list, delete topics; show a topic's route and queues."""


@topic.command("create")
@click.argument("name")
@click.option("-q", "--queues", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option(
    "--read-queues", type=click.IntRange(1, 1024), help="Read queues (default: --queues)."
)
@click.option(
    "--write-queues", type=click.IntRange(1, 1024), help="Write queues (default: --queues)."
)
@click.option("-c", "--cluster", default="DefaultCluster", show_default=True)
@click.option("--order", is_flag=True, help="An ordered topic.")
@click.option(
    "-a",
    "--attribute",
    "attributes",
    multiple=True,
    metavar="KEY=VALUE",
    help="A topic attribute (RocketMQ 5), e.g. message.type=FIFO; repeatable.",
)
def topic_create(
    name: str,
    queues: int,
    read_queues: int | None,
    write_queues: int | None,
    cluster: str,
    order: bool,
    attributes: tuple[str, ...],
) -> None:
    """Create (or update) topic NAME on every master of the cluster."""
    attrs = dict(_pair(a, "--attribute") for a in attributes)
    s = settings()
    with opened(s.admin()) as admin:
        brokers = admin.create_topic(
            name,
            cluster=cluster,
            read_queue_nums=read_queues or queues,
            write_queue_nums=write_queues or queues,
            order=order,
            attributes=attrs or None,
        )
    if s.json:
        emit_json({"topic": name, "brokers": brokers})
    else:
        click.echo(f"topic {name} created on {', '.join(brokers)}")


def _pair(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint=option)
    return key, value


def _is_internal(name: str) -> bool:
    return ns.is_system_topic(name) or name.startswith(("%RETRY%", "%DLQ%", "%LMQ%"))


@topic.command("list")
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Also the system, retry and DLQ topics."
)
def topic_list(show_all: bool) -> None:
    """List the topics the name servers know."""
    s = settings()
    with opened(s.admin()) as admin:
        names = admin.list_topics()
    if not show_all:
        names = [n for n in names if not _is_internal(n)]
    if s.json:
        emit_json(names)
    else:
        for name in names:
            click.echo(name)


@topic.command("delete")
@click.argument("name")
@click.option("-c", "--cluster", default="DefaultCluster", show_default=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def topic_delete(name: str, cluster: str, yes: bool) -> None:
    """Delete topic NAME from the brokers of the cluster and the name servers."""
    s = settings()
    if not yes:
        if not stdin_is_terminal():
            raise click.UsageError(f"deleting {name!r} needs --yes when not asked on a terminal")
        click.confirm(f"Delete topic {name!r} and its messages?", abort=True)
    with opened(s.admin()) as admin:
        admin.topic_route(name)  # a topic that does not exist is an error, not a no-op
        admin.delete_topic(name, cluster=cluster)
    if s.json:
        emit_json({"topic": name, "deleted": True})
    else:
        click.echo(f"topic {name} deleted")


def _perm(value: int) -> str:
    return ("R" if value & Perm.READ else "-") + ("W" if value & Perm.WRITE else "-")


@topic.command("route")
@click.argument("name")
def topic_route(name: str) -> None:
    """Show which brokers hold topic NAME, their queues and addresses."""
    s = settings()
    with opened(s.admin()) as admin:
        route = admin.topic_route(name)
    if s.json:
        emit_json(
            {
                "topic": name,
                "brokers": [
                    {
                        "broker": b.broker_name,
                        "cluster": b.cluster,
                        "addrs": {str(k): v for k, v in sorted(b.broker_addrs.items())},
                    }
                    for b in route.broker_datas
                ],
                "queues": [
                    {
                        "broker": q.broker_name,
                        "read": q.read_queue_nums,
                        "write": q.write_queue_nums,
                        "perm": _perm(q.perm),
                    }
                    for q in route.queue_datas
                ],
            }
        )
        return
    addrs = {b.broker_name: b for b in route.broker_datas}
    rows = []
    for q in sorted(route.queue_datas, key=lambda q: q.broker_name):
        data = addrs.get(q.broker_name)
        members = (
            ", ".join(f"{i}={a}" for i, a in sorted(data.broker_addrs.items())) if data else ""
        )
        cluster = data.cluster if data else ""
        rows.append(
            (q.broker_name, cluster, q.read_queue_nums, q.write_queue_nums, _perm(q.perm), members)
        )
    stdout().print(
        table(f"topic {name}", ("Broker", "Cluster", "Read", "Write", "Perm", "Addresses"), rows)
    )


@topic.command("stats")
@click.argument("name")
def topic_stats(name: str) -> None:
    """Each queue of topic NAME: min and max offset, last message stored."""
    s = settings()
    with opened(s.admin()) as admin:
        offsets = admin.topic_offsets(name)
    if s.json:
        emit_json(
            [
                {
                    "broker": o.message_queue.broker_name,
                    "queue_id": o.message_queue.queue_id,
                    "min_offset": o.min_offset,
                    "max_offset": o.max_offset,
                    "last_update_timestamp": o.last_update_timestamp,
                }
                for o in offsets
            ]
        )
        return
    rows = [
        (
            o.message_queue.broker_name,
            o.message_queue.queue_id,
            o.min_offset,
            o.max_offset,
            show_time(o.last_update_timestamp),
        )
        for o in offsets
    ]
    stdout().print(
        table(f"topic {name}", ("Broker", "Queue", "Min offset", "Max offset", "Last stored"), rows)
    )
    click.echo(f"messages kept: {sum(o.max_offset - o.min_offset for o in offsets)}")


# ---------------------------------------------------------------- message


@cli.group(cls=Group)
def message() -> None:
    """Look up messages by id, key or queue offset."""


def _show_message(msg: Any) -> None:
    s = settings()
    if s.json:
        emit_json(message_json(msg))
        return
    doc = message_json(msg)
    body = doc.pop("body", None)
    encoded = doc.pop("body_base64", None)
    properties = doc.pop("properties")
    doc["store_timestamp"] = show_time(msg.store_timestamp)
    doc["born_timestamp"] = show_time(msg.born_timestamp)
    doc["keys"] = " ".join(msg.keys)
    for key, value in doc.items():
        click.echo(f"{key + ':':<17}{'' if value is None else value}")
    for key, value in properties.items():
        click.echo(f"{'property:':<17}{key}={value}")
    if encoded is not None:
        click.echo(f"{'body (base64):':<17}{encoded}")
    else:
        click.echo(f"{'body:':<17}{body}")


@message.command("show")
@click.argument("msg_id", required=False)
@click.option("-t", "--topic", help="The topic (needed for the id send returned).")
@click.option("-b", "--broker", help="With --queue and --offset: the message at a queue offset.")
@click.option("-q", "--queue", "queue_id", type=click.IntRange(min=0), help="Queue id.")
@click.option("-o", "--offset", type=click.IntRange(min=0), help="Queue offset.")
def message_show(
    msg_id: str | None,
    topic: str | None,
    broker: str | None,
    queue_id: int | None,
    offset: int | None,
) -> None:
    """Show message MSG_ID (an offset id, or with --topic the id send returned),
    or the message at --topic/--broker/--queue/--offset."""
    by_offset = (broker, queue_id, offset)
    if msg_id is None:
        if topic is None or None in by_offset:
            raise click.UsageError("give MSG_ID, or --topic, --broker, --queue and --offset")
    elif any(v is not None for v in by_offset):
        raise click.UsageError("give MSG_ID or a queue offset, not both")
    s = settings()
    with opened(s.admin()) as admin:
        if msg_id is not None:
            msg = admin.view_message(msg_id, topic)
        else:
            assert topic is not None and broker is not None
            assert queue_id is not None and offset is not None
            msg = admin.message_at(MessageQueue(topic, broker, queue_id), offset)
    _show_message(msg)


@message.command("find")
@click.option("-t", "--topic", required=True)
@click.option("-k", "--key", required=True, help="A key the messages were sent with.")
@click.option("-m", "--max", "max_num", type=click.IntRange(1, 64), default=32, show_default=True)
def message_find(topic: str, key: str, max_num: int) -> None:
    """Find the messages of a topic by key (KEYS)."""
    s = settings()
    with opened(s.admin()) as admin:
        found = admin.query_messages(topic, key, max_num=max_num)
    if s.json:
        for msg in found:
            emit_json(message_json(msg))
    else:
        rows = [
            (
                m.msg_id,
                m.broker_name,
                m.queue_id,
                m.queue_offset,
                show_time(m.store_timestamp),
                m.tags or "",
                " ".join(m.keys),
            )
            for m in found
        ]
        stdout().print(
            table(
                f"{len(found)} message(s) of {topic} with key {key}",
                ("Message id", "Broker", "Queue", "Offset", "Stored", "Tags", "Keys"),
                rows,
            )
        )
    if not found:
        raise click.exceptions.Exit(EXIT_FAILED)


# -------------------------------------------------------------- lag, cluster


@cli.command()
@click.argument("group")
@click.option("-t", "--topic", help="Only this topic's queues.")
@click.option("-w", "--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "-i",
    "--interval",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    help="Seconds between two refreshes of --watch.",
)
@click.option(
    "-c",
    "--count",
    type=click.IntRange(min=1),
    help="With --watch: stop after N refreshes (exit 0).",
)
def lag(group: str, topic: str | None, watch: bool, interval: float, count: int | None) -> None:
    """A consumer group's progress on each queue and its lag."""
    if count is not None and not watch:
        raise click.UsageError("--count goes with --watch")
    s = settings()
    with opened(s.admin()) as admin:
        if not watch:
            _print_lag(group, admin.consumer_progress(group, topic), s)
            return
        # Refreshes 1, 2, ... (for ever without --count), each but the last followed
        # by a pause of --interval seconds.
        rounds: Iterable[int] = itertools.count(1) if count is None else range(1, count + 1)
        try:
            if s.json or not stdout().is_terminal:
                for i in rounds:
                    _print_lag(group, admin.consumer_progress(group, topic), s)
                    if i != count:
                        time.sleep(interval)
                return
            with Live(console=stdout(), auto_refresh=False) as live:
                for i in rounds:
                    stats = admin.consumer_progress(group, topic)
                    live.update(_lag_table(group, stats, time.strftime("%H:%M:%S")), refresh=True)
                    if i != count:
                        time.sleep(interval)
        except KeyboardInterrupt:
            interrupted("lag --watch stopped")


def _lag_rows(stats: Any) -> list[tuple[Any, ...]]:
    return [
        (
            mq.topic,
            mq.broker_name,
            mq.queue_id,
            w.broker_offset,
            w.consumer_offset,
            w.lag,
            show_time(w.last_timestamp),
        )
        for mq, w in stats.offset_table.items()
    ]


def _lag_table(group: str, stats: Any, when: str | None = None) -> Any:
    title = f"group {group}: total lag {stats.total_lag}, {stats.consume_tps:.1f} msg/s"
    if when:
        title += f"  ({when})"
    return table(
        title,
        ("Topic", "Broker", "Queue", "Broker offset", "Consumer offset", "Lag", "Last consumed"),
        _lag_rows(stats),
    )


def _print_lag(group: str, stats: Any, s: Settings) -> None:
    if s.json:
        emit_json(
            {
                "group": group,
                "total_lag": stats.total_lag,
                "consume_tps": stats.consume_tps,
                "queues": [
                    {
                        "topic": mq.topic,
                        "broker": mq.broker_name,
                        "queue_id": mq.queue_id,
                        "broker_offset": w.broker_offset,
                        "consumer_offset": w.consumer_offset,
                        "lag": w.lag,
                        "last_timestamp": w.last_timestamp,
                    }
                    for mq, w in stats.offset_table.items()
                ],
            }
        )
    else:
        stdout().print(_lag_table(group, stats))


@cli.command()
@click.option("-c", "--cluster", "name", help="Only this cluster.")
def cluster(name: str | None) -> None:
    """The brokers of the cluster(s), with their versions and traffic."""
    s = settings()
    with opened(s.admin()) as admin:
        rows = admin.cluster_list(name)
    if s.json:
        emit_json(
            [
                {
                    "cluster": r.cluster,
                    "broker": r.broker_name,
                    "broker_id": r.broker_id,
                    "addr": r.addr,
                    "version": r.version,
                    "in_tps": r.in_tps,
                    "out_tps": r.out_tps,
                    "in_today": r.in_today,
                    "out_today": r.out_today,
                    "error": r.error,
                }
                for r in rows
            ]
        )
    else:
        stdout().print(
            table(
                None,
                (
                    "Cluster",
                    "Broker",
                    "Id",
                    "Address",
                    "Version",
                    "In TPS",
                    "Out TPS",
                    "In today",
                    "Out today",
                ),
                [
                    (
                        r.cluster,
                        r.broker_name,
                        r.broker_id,
                        r.addr,
                        r.version or f"unreachable: {r.error}",
                        f"{r.in_tps:.1f}",
                        f"{r.out_tps:.1f}",
                        r.in_today,
                        r.out_today,
                    )
                    for r in rows
                ],
            )
        )
    if any(r.error for r in rows):
        stderr().print("some brokers did not answer", style="yellow")
        raise click.exceptions.Exit(EXIT_FAILED)
