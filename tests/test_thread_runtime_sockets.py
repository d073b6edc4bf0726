"""The thread runtime's sockets: reads and writes through the descriptor where the
socket would not wait, the socket's own calls (and timeout) where it would."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from rocketmq_sync._runtime import ThreadRuntime, _DescriptorSocket

pytestmark = pytest.mark.skipif(os.name != "posix", reason="descriptors are read only on POSIX")


@pytest.fixture
def pair() -> Iterator[tuple[_DescriptorSocket, socket.socket]]:
    ours, peer = socket.socketpair()
    ours.settimeout(5.0)
    wrapped = _DescriptorSocket(ours)
    yield wrapped, peer
    wrapped.close()
    peer.close()


def test_the_thread_runtime_connects_with_a_descriptor_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    runtime = ThreadRuntime()
    try:
        sock = runtime.create_connection(server.getsockname()[:2], 2.0)
        accepted, _ = server.accept()
        try:
            assert isinstance(sock, _DescriptorSocket)
            sock.sendall(b"ping")
            assert accepted.recv(16) == b"ping"
            accepted.sendall(b"pong")
            assert sock.recv(16) == b"pong"
        finally:
            sock.close()
            accepted.close()
    finally:
        server.close()
        runtime.close()


def test_a_read_with_nothing_there_waits_with_the_timeout(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, peer = pair
    ours.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        ours.recv(16)
    assert 0.15 < time.monotonic() - started < 2.0
    ours.settimeout(5.0)
    threading.Timer(0.1, peer.sendall, (b"later",)).start()
    assert ours.recv(16) == b"later"  # waited for it in the socket's own recv
    peer.sendall(b"now")
    assert ours.recv(16) == b"now"


def test_a_closed_peer_reads_as_the_end(pair: tuple[_DescriptorSocket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(b"last")
    peer.close()
    assert ours.recv(16) == b"last"
    assert ours.recv(16) == b""


def test_sendall_more_than_the_buffer_takes_sends_all_of_it_in_order(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, peer = pair
    data = os.urandom(4 << 20)  # far more than a socket pair's buffers hold
    received = bytearray()

    def read() -> None:
        while len(received) < len(data):
            chunk = peer.recv(1 << 16)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    ours.sendall(data)
    reader.join(10)
    assert bytes(received) == data


def test_sendall_into_a_full_buffer_times_out(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, _peer = pair
    while ours.send_now(b"x" * 65536):
        pass
    ours.settimeout(0.2)
    with pytest.raises(TimeoutError):
        ours.sendall(b"y" * 65536)


def test_send_now_never_waits_and_tells_what_it_sent(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, peer = pair
    total = 0
    started = time.monotonic()
    while True:
        sent = ours.send_now(b"z" * 65536)
        if sent == 0:
            break
        total += sent
    assert time.monotonic() - started < 2.0  # the 5 s timeout never waited on
    assert total > 0
    got = 0
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        while True:
            got += len(peer.recv(1 << 16))
    assert got == total


def test_a_socket_without_a_timeout_is_used_as_it_is(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, peer = pair
    ours.settimeout(None)  # blocking: the descriptor would block the thread in os.read
    threading.Timer(0.1, peer.sendall, (b"blocking",)).start()
    assert ours.recv(16) == b"blocking"
    ours.sendall(b"back")
    assert peer.recv(16) == b"back"
    assert ours.send_now(b"now") == 3
    assert ours.gettimeout() is None
    assert peer.recv(16) == b"now"


def test_after_close_a_reused_descriptor_is_never_touched() -> None:
    """The number of a closed descriptor goes to the next file opened: a read or
    write after close fails as on a closed socket, not on that file."""
    ours, peer = socket.socketpair()
    ours.settimeout(5.0)
    wrapped = _DescriptorSocket(ours)
    number = ours.fileno()
    wrapped.close()
    others: list[socket.socket] = []
    try:
        while True:  # the next descriptor opened takes the freed number
            other, other_peer = socket.socketpair()
            others += [other, other_peer]
            if number in (other.fileno(), other_peer.fileno()):
                break
            assert len(others) < 20
        reused = other if other.fileno() == number else other_peer
        counterpart = other_peer if reused is other else other
        counterpart.sendall(b"not yours")
        with pytest.raises(OSError):
            wrapped.recv(16)
        with pytest.raises(OSError):
            wrapped.sendall(b"nor this")
        with pytest.raises(OSError):
            wrapped.send_now(b"nor this")
        reused.setblocking(False)
        assert reused.recv(16) == b"not yours"  # still there: nothing read it
        counterpart.setblocking(False)
        with pytest.raises(BlockingIOError):
            counterpart.recv(16)  # nothing was written to it either
    finally:
        peer.close()
        for sock in others:
            sock.close()


def test_reads_and_writes_with_data_or_room_there_take_the_descriptor(
    pair: tuple[_DescriptorSocket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the wrapper: one ``os.read``/``os.write`` and no socket call
    when the descriptor would not block; the socket's call when it would."""
    ours, peer = pair
    calls: list[str] = []
    real_read, real_write = os.read, os.write

    def read(fd: int, n: int) -> bytes:
        calls.append("read")
        return real_read(fd, n)

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        return real_write(fd, data)

    monkeypatch.setattr(os, "read", read)
    monkeypatch.setattr(os, "write", write)
    ours.sendall(b"out")
    assert ours.send_now(b"now") == 3
    assert peer.recv(16) == b"outnow"
    peer.sendall(b"in")
    time.sleep(0.05)
    assert ours.recv(16) == b"in"
    assert calls == ["write", "write", "read"]
    calls.clear()
    ours.settimeout(0.1)
    with pytest.raises(TimeoutError):
        ours.recv(16)  # nothing there: one look at the descriptor, then the socket's wait
    assert calls == ["read"]


def test_a_reset_and_a_closed_peer_raise_as_the_socket_does(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    ours, peer = pair
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # closed with data unread on neither side: the next write fails
    with pytest.raises(OSError) as raised:
        for _ in range(100):
            ours.sendall(b"x" * 1024)
            time.sleep(0.01)
    assert isinstance(raised.value, (BrokenPipeError, ConnectionResetError))


def test_a_shutdown_from_another_thread_ends_a_waiting_read(
    pair: tuple[_DescriptorSocket, socket.socket],
) -> None:
    """What closing a connection relies on: its reader, waiting in the socket's
    own ``recv``, wakes when another thread shuts the socket down."""
    ours, _peer = pair
    ours.settimeout(30.0)
    threading.Timer(0.2, ours.shutdown, (socket.SHUT_RDWR,)).start()
    started = time.monotonic()
    assert ours.recv(16) == b""
    assert time.monotonic() - started < 10.0
