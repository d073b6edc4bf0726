"""What every command shares: the global options, the clients they make, the
exit codes, errors worded in one line, and the output (tables or JSON)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import ssl
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from rich import box
from rich.console import Console
from rich.table import Table

import rocketmq_sync
from rocketmq_proto import (
    ConfigError,
    ConnectionClosedError,
    InvalidArgumentError,
    MessageExt,
    RequestTimeoutError,
    RocketMQError,
)

#: Exit codes (documented in docs/cli.md).
EXIT_OK = 0
#: The operation failed: a broker refused it, or what was asked for does not exist.
EXIT_FAILED = 1
#: A usage error: a bad option, argument or value.
EXIT_USAGE = 2
#: No name server or broker could be reached in time.
EXIT_UNREACHABLE = 3
#: Stopped by Ctrl-C (SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


@dataclass
class Settings:
    """The global options, as the group read them."""

    namesrv: str | None
    namespace: str | None
    access_key: str | None
    secret_key: str | None
    tls: bool
    tls_insecure: bool
    timeout: float
    json: bool
    debug: bool

    def client_options(self) -> dict[str, Any]:
        """The options every client of a command takes (a command that makes no
        client, or asks for help, needs no name server)."""
        if not self.namesrv and not os.environ.get("NAMESRV_ADDR"):
            raise click.UsageError("no name server: give --namesrv HOST:PORT or set NAMESRV_ADDR")
        options: dict[str, Any] = {"request_timeout": self.timeout}
        if self.namespace:
            options["namespace"] = self.namespace
        if self.access_key or self.secret_key:
            if not (self.access_key and self.secret_key):
                raise click.UsageError("--access-key and --secret-key go together")
            options["access_key"] = self.access_key
            options["secret_key"] = self.secret_key
        if self.tls or self.tls_insecure:
            context = ssl.create_default_context()
            if self.tls_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            options["ssl_context"] = context
        return options

    @property
    def where(self) -> str:
        """The name servers, for error messages."""
        return self.namesrv or "NAMESRV_ADDR unset"

    def admin(self) -> rocketmq_sync.Admin:
        return rocketmq_sync.Admin(self.namesrv, **self.client_options())

    def producer(self, **options: Any) -> rocketmq_sync.Producer:
        return rocketmq_sync.Producer(self.namesrv, **self.client_options(), **options)


def stdin_is_terminal() -> bool:
    """Whether stdin is a terminal (not a pipe, a file or a test's input)."""
    stream: Any = sys.stdin
    return bool(stream is not None and stream.isatty())


def settings() -> Settings:
    """The settings of the command being run."""
    found = click.get_current_context().find_object(Settings)
    assert found is not None, "the rocketmq group sets its Settings first"
    return found


# ----------------------------------------------------------------- errors


def exit_code_of(exc: BaseException) -> int:
    if isinstance(exc, InvalidArgumentError | ConfigError):
        return EXIT_USAGE
    if isinstance(exc, ConnectionClosedError | RequestTimeoutError):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


def fail(exc: BaseException, debug: bool, where: str) -> NoReturn:
    """Print ``exc`` as one line on stderr (its traceback too with ``--debug``)
    and leave with its exit code."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc) or type(exc).__name__
    click.echo(f"rocketmq: error: {message} (name server: {where})", err=True)
    if not isinstance(exc, RocketMQError) and not debug:
        click.echo("rocketmq: run with --debug for the traceback", err=True)
    raise click.exceptions.Exit(exit_code_of(exc))


def interrupted(what: str = "") -> NoReturn:
    """Leave as an interrupt does (Ctrl-C)."""
    click.echo(f"rocketmq: interrupted{': ' + what if what else ''}", err=True)
    raise click.exceptions.Exit(EXIT_INTERRUPTED)


class Group(click.Group):
    """A click group whose commands' failures end in one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            interrupted()
        except Exception as exc:
            found = ctx.find_object(Settings)
            fail(exc, found.debug if found else False, found.where if found else "?")


# ----------------------------------------------------------------- output


def stdout() -> Console:
    """A console on stdout: the terminal's width, or a wide one when piped
    (columns fold rather than being cut)."""
    out = Console(soft_wrap=False, highlight=False)
    if not out.is_terminal:
        out = Console(width=240, soft_wrap=False, highlight=False, no_color=True)
    return out


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def emit_json(value: Any) -> None:
    """One JSON document on one line of stdout."""
    click.echo(json.dumps(value, ensure_ascii=False, sort_keys=False))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    plain = not Console().is_terminal  # piped: columns apart by spaces, for grep and awk
    out = Table(
        title=title,
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        box=None if plain else box.SIMPLE_HEAD,
    )
    for name in columns:
        numeric = name.lower() in NUMERIC_COLUMNS
        out.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    return out


NUMERIC_COLUMNS = frozenset(
    {
        "queue",
        "queues",
        "id",
        "min offset",
        "max offset",
        "broker offset",
        "consumer offset",
        "lag",
        "offset",
        "read",
        "write",
        "perm",
        "in tps",
        "out tps",
        "in today",
        "out today",
        "messages",
    }
)


def show_time(ms: int) -> str:
    """Epoch milliseconds as local time, to the millisecond ('' for 0)."""
    if ms <= 0:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def parse_time(text: str) -> int:
    """A point in time as epoch milliseconds: epoch ms (13 digits), epoch seconds,
    an ISO 8601 date-time (local time unless it says its zone), or ``-5m`` /
    ``-2h`` / ``-1d`` back from now."""
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text.startswith("-") and text[1:-1].isdigit() and text[-1:] in units:
        return int((time.time() - int(text[1:-1]) * units[text[-1]]) * 1000)
    if text.isdigit():
        value = int(text)
        return value if value >= 10**11 else value * 1000
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is no time: give epoch ms, an ISO date-time "
            "(2024-05-01T12:00:00) or -10m / -2h / -1d"
        ) from None
    return int(when.timestamp() * 1000)


def body_text(body: bytes) -> tuple[str, bool]:
    """A body as text: UTF-8 if it is, else base64 (and ``True``)."""
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def message_json(msg: MessageExt) -> dict[str, Any]:
    text, encoded = body_text(msg.body)
    doc: dict[str, Any] = {
        "topic": msg.topic,
        "msg_id": msg.msg_id,
        "offset_msg_id": msg.offset_msg_id,
        "broker": msg.broker_name,
        "queue_id": msg.queue_id,
        "queue_offset": msg.queue_offset,
        "store_timestamp": msg.store_timestamp,
        "born_timestamp": msg.born_timestamp,
        "born_host": msg.born_host,
        "store_host": msg.store_host,
        "reconsume_times": msg.reconsume_times,
        "tags": msg.tags,
        "keys": msg.keys,
        "properties": dict(sorted(msg.properties.items())),
    }
    doc["body_base64" if encoded else "body"] = text
    return doc


def message_line(msg: MessageExt) -> str:
    """A message on one line: store time, where, tags, keys, id, body."""
    text, encoded = body_text(msg.body)
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    parts = [
        show_time(msg.store_timestamp),
        f"{msg.broker_name}/{msg.queue_id}@{msg.queue_offset}",
        msg.msg_id,
    ]
    if msg.tags:
        parts.append(f"tags={msg.tags}")
    if msg.keys:
        parts.append(f"keys={','.join(msg.keys)}")
    parts.append(("base64:" if encoded else "") + text)
    return "  ".join(parts)


@contextmanager
def opened(client: Any) -> Iterator[Any]:
    """A client started, closed on the way out."""
    client.start()
    try:
        yield client
    finally:
        client.close()
