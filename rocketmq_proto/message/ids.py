"""Message ids: offset message ids (where a broker stored a message) and unique ids
(the UNIQ_KEY property, made by the producer)."""

from __future__ import annotations

import ipaddress
import struct
from datetime import date
from typing import Final, NamedTuple

from rocketmq_proto.wire.errors import InvalidArgumentError

__all__ = [
    "OffsetMsgId",
    "UniqueIdGenerator",
    "UniqueIdInfo",
    "decode_offset_msg_id",
    "encode_offset_msg_id",
    "parse_unique_id",
]


def _parse_ip(host: str) -> int | bytes:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgumentError(f"{host!r} is not an IPv4 or IPv6 address") from None
    if isinstance(addr, ipaddress.IPv4Address):
        return int(addr)
    return addr.packed


# ------------------------------------------------------------------ offset message ids


class OffsetMsgId(NamedTuple):
    """What an offset message id says: where the broker stored the message."""

    host: str
    port: int
    offset: int


_HEX_DIGITS: Final = frozenset("0123456789ABCDEFabcdef")
_OFFSET_ID_V4: Final = struct.Struct(">4sIq")
_OFFSET_ID_V6: Final = struct.Struct(">16sIq")


def encode_offset_msg_id(host: str, port: int, commit_log_offset: int) -> str:
    """The offset message id of a stored message: store IP + port int32 + offset int64, hex.

    32 upper-case hex characters for an IPv4 store host, 56 for IPv6.
    """
    ip = _parse_ip(host)
    if not 0 <= port <= 0xFFFF:
        raise InvalidArgumentError(f"port {port} is out of range 0..65535")
    if not 0 <= commit_log_offset < 1 << 63:
        raise InvalidArgumentError(
            f"commit log offset {commit_log_offset} is not a non-negative int64"
        )
    if isinstance(ip, int):
        return f"{ip:08X}{port:08X}{commit_log_offset:016X}"
    return ip.hex().upper() + f"{port:08X}{commit_log_offset:016X}"


def decode_offset_msg_id(msg_id: str) -> OffsetMsgId:
    """Split an offset message id into store host (without port), port and commit-log offset."""
    if (
        not isinstance(msg_id, str)
        or len(msg_id) not in (32, 56)
        or not _HEX_DIGITS.issuperset(msg_id)
    ):
        raise InvalidArgumentError(
            f"{msg_id!r} is not an offset message id (32 or 56 hex characters)"
        )
    raw = bytes.fromhex(msg_id)
    if len(raw) == 16:
        ip_raw, port, offset = _OFFSET_ID_V4.unpack(raw)
        host = str(ipaddress.IPv4Address(ip_raw))
    else:
        ip_raw, port, offset = _OFFSET_ID_V6.unpack(raw)
        host = ipaddress.IPv6Address(ip_raw).compressed
    return OffsetMsgId(host, port, offset)


def _offset_msg_id(ip: int | bytes, port: int, offset: int) -> str:
    port &= 0xFFFFFFFF
    offset &= 0xFFFFFFFFFFFFFFFF
    if isinstance(ip, int):
        return f"{ip:08X}{port:08X}{offset:016X}"
    return f"{ip.hex().upper()}{port:08X}{offset:016X}"


# ------------------------------------------------------------------ unique ids (UNIQ_KEY)


class UniqueIdInfo(NamedTuple):
    """What a client-generated message id (UNIQ_KEY) says about its producer."""

    ip: str
    pid: int
    timestamp_ms: int


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_DAY_MS: Final = 86_400_000


_MAX_NOW_MS: Final = (date(9999, 1, 1).toordinal() - _EPOCH_ORDINAL) * _DAY_MS


def _month_bounds(now_ms: int) -> tuple[int, int]:
    """Start of the UTC month holding ``now_ms`` and of the next one, epoch ms."""
    if not 0 <= now_ms < _MAX_NOW_MS:
        raise InvalidArgumentError(f"time {now_ms} ms is outside 1970..9998")
    day = date.fromordinal(_EPOCH_ORDINAL + now_ms // _DAY_MS)
    start = date(day.year, day.month, 1)
    nxt = date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)
    return (
        (start.toordinal() - _EPOCH_ORDINAL) * _DAY_MS,
        (nxt.toordinal() - _EPOCH_ORDINAL) * _DAY_MS,
    )


def _previous_month_start(month_start_ms: int) -> int:
    return _month_bounds(month_start_ms - 1)[0]


class UniqueIdGenerator:
    """Message ids (the UNIQ_KEY property) laid out as Java's ``MessageClientIDSetter``.

    ``ip`` (4 or 16 bytes) + pid (int16) + a per-process int32 (Java uses its class
    loader's hash: pass any number that differs between processes), then per id the
    milliseconds since the start of the current month (int32, wrapping like Java's
    cast after 24.8 days) and a counter (int16), all upper-case hex: 32 characters for
    IPv4. Months are taken in UTC (Java uses the local time zone; the field is only a
    hint). Not thread-safe: a driver shares one per process behind its own lock, or
    uses one per thread with distinct ``instance_hash`` values.
    """

    __slots__ = ("_counter", "_next_start", "_prefix", "_start")

    def __init__(self, ip: bytes, pid: int, instance_hash: int) -> None:
        if not isinstance(ip, bytes | bytearray) or len(ip) not in (4, 16):
            raise InvalidArgumentError(f"ip must be 4 or 16 bytes, got {ip!r}")
        self._prefix = (
            (bytes(ip) + struct.pack(">HI", pid & 0xFFFF, instance_hash & 0xFFFFFFFF)).hex().upper()
        )
        self._counter = 0
        self._start = 0
        self._next_start = -1

    @property
    def prefix(self) -> str:
        """The fixed hex prefix (ip, pid, instance hash) every id starts with."""
        return self._prefix

    def next_id(self, now_ms: int) -> str:
        """A new id for a message created at ``now_ms`` (epoch milliseconds)."""
        elapsed, counter = self._reserve(now_ms, 1)
        return f"{self._prefix}{elapsed:08X}{counter:04X}"

    def next_ids(self, now_ms: int, count: int) -> list[str]:
        """``count`` new ids for messages created at ``now_ms``: what as many calls of
        :meth:`next_id` return, made at once (a batch's members share the time part)."""
        elapsed, counter = self._reserve(now_ms, count)
        head = f"{self._prefix}{elapsed:08X}"
        return [f"{head}{n & 0xFFFF:04X}" for n in range(counter, counter + count)]

    def _reserve(self, now_ms: int, count: int) -> tuple[int, int]:
        """Take ``count`` counter values for ids made at ``now_ms``: the ids' time part
        (milliseconds since the month began) and the first counter value."""
        if not self._start <= now_ms < self._next_start:
            self._start, self._next_start = _month_bounds(now_ms)
        counter = self._counter
        self._counter = (counter + count) & 0xFFFF
        return (now_ms - self._start) & 0xFFFFFFFF, counter


def parse_unique_id(msg_id: str, now_ms: int) -> UniqueIdInfo:
    """The producer IP, pid and (nearly) the creation time of a UNIQ_KEY id.

    The id holds only milliseconds since a month's start, so like Java's
    ``getNearlyTimeFromID`` the month is taken as ``now_ms``'s (UTC), or the previous
    one if that would put the id in the future.
    """
    if (
        not isinstance(msg_id, str)
        or len(msg_id) not in (32, 56)
        or not _HEX_DIGITS.issuperset(msg_id)
    ):
        raise InvalidArgumentError(f"{msg_id!r} is not a message id (32 or 56 hex characters)")
    raw = bytes.fromhex(msg_id)
    ip_len = 16 if len(raw) == 28 else 4
    ip_raw = raw[:ip_len]
    pid, _salt, span, _counter = struct.unpack_from(">HIIH", raw, ip_len)
    ip = (
        str(ipaddress.IPv4Address(ip_raw))
        if ip_len == 4
        else ipaddress.IPv6Address(ip_raw).compressed
    )
    start, _ = _month_bounds(now_ms)
    if start + span > now_ms and start > 0:
        start = _previous_month_start(start)
    return UniqueIdInfo(ip, pid, start + span)
