"""This host's address for client ids and message ids, read from its interfaces.

Read once per process, without sending anything: on Linux each interface's IPv4
address by the ``SIOCGIFADDR`` ioctl on a socket that is never connected, and the
IPv6 addresses from ``/proc/net/if_inet6``; elsewhere what the host name resolves
to. The choice among them is the core's (:func:`choose_client_ip`, as Java's).
``rocketmq_sync``'s copy is generated from this one (drivers do not import each
other). It runs once per process, at the first client's construction, and takes
microseconds.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import sys

from rocketmq_proto.driver import choose_client_ip

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1


@functools.cache
def local_ip() -> str:
    """The address this process's clients name themselves by (``client_ip``'s default)."""
    try:
        return choose_client_ip(interface_addresses())
    except OSError:
        return "127.0.0.1"


def interface_addresses() -> list[str]:
    """This host's addresses, in interface order (IPv4 first), from up, non-bridge interfaces."""
    found: list[str] = []
    if sys.platform.startswith("linux"):
        found = _linux_ipv4() + _linux_ipv6()
    if not found:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
        found = [str(info[4][0]) for info in infos]
    return found


def _skipped(name: str) -> bool:
    # Java passes over bridges (a container host's docker0 is one).
    return os.path.exists(f"/sys/class/net/{name}/bridge")


def _linux_ipv4() -> list[str]:
    import fcntl

    found: list[str] = []
    # Only ioctls go through this socket: it is never bound, connected or written to.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(sock, _SIOCGIFFLAGS, request), 16)[0]
                if not flags & _IFF_UP or _skipped(name):
                    continue
                answer = fcntl.ioctl(sock, _SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(answer[20:24]))
    return found


def _linux_ipv6() -> list[str]:
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError:
        return []
    found: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or _skipped(fields[5]):
            continue
        try:
            found.append(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[0])))
        except ValueError:
            continue
    return found
