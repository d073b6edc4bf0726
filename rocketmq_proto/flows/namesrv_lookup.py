"""Name server discovery over HTTP (Java's ``TopAddressing``), without IO.

Java's client, when no name server address is configured, asks an HTTP
endpoint for the list (``MixAll.getWSAddr()``: by default
``http://jmenv.tbsite.net:8080/rocketmq/nsaddr``, the host and last path part
set by the ``rocketmq.namesrv.domain`` and ``rocketmq.namesrv.domain.subgroup``
properties) before anything else, then every two minutes. The answer's body is
``host:port;host:port`` (its first line; surrounding blanks ignored). A failed
or unusable answer changes nothing: the list in use is kept.

This client has no default endpoint: the URL is given explicitly
(``namesrv_lookup_url``, or the ``NAMESRV_LOOKUP_URL`` environment variable).
Here are the decisions: the URL's validation, the request's bytes, the
answer's parsing, when to ask again. The driver only moves bytes (the
:class:`~rocketmq_proto.flows.effects.HttpGet` effect).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from rocketmq_proto.flows.effects import Flow, http_get, now, sleep
from rocketmq_proto.wire.errors import ConfigError, ConnectionClosedError, RequestTimeoutError
from rocketmq_proto.wire.logfields import log_fields

__all__ = [
    "DEFAULT_LOOKUP_INTERVAL",
    "LOOKUP_RETRY_INTERVAL",
    "LookupAnswerError",
    "LookupUrl",
    "NamesrvLookup",
    "parse_lookup_answer",
    "parse_lookup_url",
]

log = logging.getLogger("rocketmq_proto.client")

#: Seconds between two lookups once a list is known (Java's two minutes).
DEFAULT_LOOKUP_INTERVAL = 120.0
#: Seconds between two lookups while no list is known yet (the first ones failed).
LOOKUP_RETRY_INTERVAL = 5.0
#: The largest answer read: a list of name servers is a few hundred bytes.
MAX_ANSWER_SIZE = 64 * 1024

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] ([0-9]{3})(?: .*)?$")


class LookupAnswerError(ValueError):
    """The lookup endpoint's answer is not a usable name server list."""


@dataclass(frozen=True, slots=True)
class LookupUrl:
    """A validated ``http://host[:port]/path[?query]`` lookup URL."""

    url: str
    host: str
    port: int
    target: str

    def request(self) -> bytes:
        """The whole HTTP/1.0 GET request (the server closes the connection after answering)."""
        default_port = self.port == 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = host if default_port else f"{host}:{self.port}"
        return (
            f"GET {self.target} HTTP/1.0\r\n"
            f"Host: {host_header}\r\n"
            "Accept: text/plain\r\n"
            "Connection: close\r\n"
            "User-Agent: rocketmq-remoting\r\n"
            "\r\n"
        ).encode("ascii")


def parse_lookup_url(url: str) -> LookupUrl:
    """Validate a lookup URL: plain ``http``, a host, an optional port, no user info."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"namesrv_lookup_url must be an http:// URL, got {url!r}")
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid namesrv_lookup_url {url!r}: {exc}") from None
    if parts.scheme.lower() != "http":
        raise ConfigError(
            f"namesrv_lookup_url {url!r} must use http:// (the name server lookup is plain HTTP)"
        )
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ConfigError(f"namesrv_lookup_url {url!r} must name a host, without user info")
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if any(c in target for c in " \r\n") or not target.isascii():
        raise ConfigError(f"namesrv_lookup_url {url!r}: the path must be URL-encoded ASCII")
    try:
        parts.hostname.encode("ascii")
    except UnicodeEncodeError:
        raise ConfigError(f"namesrv_lookup_url {url!r}: the host must be ASCII") from None
    return LookupUrl(text, parts.hostname, port if port is not None else 80, target)


def parse_lookup_answer(raw: bytes) -> tuple[str, ...]:
    """The name servers in an HTTP answer (status line, headers, body), validated.

    Only a 200 answer counts; its body's first line, trimmed, is
    ``host:port;host:port`` (as Java's ``TopAddressing`` reads it). Raises
    :class:`LookupAnswerError` otherwise.
    """
    from rocketmq_proto.flows.session import parse_addrs

    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    if not sep:
        raise LookupAnswerError("not an HTTP answer (no end of headers)")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status = _STATUS_LINE.match(lines[0])
    if status is None:
        raise LookupAnswerError(f"not an HTTP answer: {lines[0][:80]!r}")
    code = int(status.group(1))
    if code != 200:
        raise LookupAnswerError(f"HTTP status {code}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise LookupAnswerError(f"bad Content-Length {value.strip()!r}") from None
            if length < 0 or len(body) < length:
                raise LookupAnswerError("the answer ended before its Content-Length")
            body = body[:length]
        elif name.strip().lower() == b"transfer-encoding":
            raise LookupAnswerError("a chunked answer to an HTTP/1.0 request")
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise LookupAnswerError("the body is not UTF-8 text") from None
    text = text.splitlines()[0] if text else ""
    try:
        return parse_addrs(text)
    except ConfigError as exc:
        raise LookupAnswerError(f"{exc} (body {text[:120]!r})") from None


@dataclass(slots=True)
class NamesrvLookup:
    """When to ask the lookup endpoint, and one lookup at a time.

    ``interval`` seconds after the last attempt when a list is known; while none
    is, every :data:`LOOKUP_RETRY_INTERVAL` seconds (or ``interval`` if shorter).
    """

    url: LookupUrl
    interval: float = DEFAULT_LOOKUP_INTERVAL
    timeout: float = 3.0
    #: When the last lookup was attempted (``None``: never).
    last_attempt: float | None = None
    _running: bool = field(default=False)

    def next_due(self, have_list: bool) -> float | None:
        """When the next lookup is due (``None``: now, none was attempted)."""
        if self.last_attempt is None:
            return None
        wait = self.interval if have_list else min(self.interval, LOOKUP_RETRY_INTERVAL)
        return self.last_attempt + wait

    def due(self, now: float, have_list: bool) -> bool:
        when = self.next_due(have_list)
        return when is None or now >= when

    def fetch_flow(self) -> Flow[tuple[str, ...] | None]:
        """Ask the endpoint once: the list it answers, for the caller to use;
        ``None`` if it failed.

        A failure (no connection, a timeout, a status other than 200, a body that
        is not a valid list) is logged and changes nothing. A flow that finds a
        lookup already running waits for it instead of sending a second request
        (and gets ``None``: the running one's caller applies the list).
        """
        if self._running:
            now_s = yield from now()
            limit = now_s + self.timeout + 1.0
            while self._running and now_s < limit:
                yield from sleep(0.005)
                now_s = yield from now()
            return None
        self._running = True
        try:
            self.last_attempt = yield from now()
            url = self.url
            try:
                raw = yield from http_get(
                    url.host, url.port, url.request(), self.timeout, MAX_ANSWER_SIZE
                )
                addrs = parse_lookup_answer(raw)
            except (RequestTimeoutError, ConnectionClosedError, LookupAnswerError) as exc:
                log.warning(
                    "name server lookup at %s failed, the name server list is unchanged: %s",
                    url.url,
                    exc,
                    extra=log_fields(url=url.url),
                )
                return None
            return addrs
        finally:
            self._running = False
