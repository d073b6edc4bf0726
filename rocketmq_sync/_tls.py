"""TLS over memory buffers, so that one reader and many writers can share a connection.

An ``ssl.SSLSocket`` must not be read in one thread while another writes to it
(OpenSSL does not allow concurrent use of one ``SSL`` object), and gevent would
need its own ``SSLSocket`` class for it. Instead the driver keeps a plain socket
of its runtime and runs the TLS state machine over ``ssl.MemoryBIO``, under the
lock that already guards the connection: encrypting and decrypting never block,
the socket IO happens outside that lock. This works the same with threads and
greenlets, with the user's ``ssl.SSLContext`` (gevent's ``SSLContext``
subclass included), patched or not.
"""

from __future__ import annotations

import ssl

from rocketmq_proto.driver import ConnectionClosedError

from ._runtime import SocketLike

__all__ = ["TlsSession"]

_READ_SIZE = 256 * 1024


class TlsSession:
    """The client side of one TLS session, bytes in and bytes out.

    Not thread-safe: the transport calls it under its connection lock.
    """

    __slots__ = ("_incoming", "_obj", "_outgoing", "eof")

    def __init__(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        #: The peer closed the TLS session (close_notify).
        self.eof = False

    def handshake(self, sock: SocketLike) -> None:
        """Run the handshake over ``sock``; its timeout bounds each read."""
        while True:
            try:
                self._obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            pending = self._outgoing.read()
            if pending:
                sock.sendall(pending)
            if done:
                return
            data = sock.recv(_READ_SIZE)
            if not data:
                raise ConnectionClosedError("peer closed the connection during the TLS handshake")
            self._incoming.write(data)

    def encrypt(self, data: bytes) -> bytes:
        """Records for ``data``, preceded by anything else the session must send."""
        obj = self._obj
        view = memoryview(data)
        while view:
            written = obj.write(view)
            view = view[written:]
        return self._outgoing.read()

    def decrypt(self, data: bytes) -> bytes:
        """The plaintext in ``data`` (may be empty: a partial record); sets :attr:`eof`."""
        self._incoming.write(data)
        chunks: list[bytes] = []
        read = self._obj.read
        while True:
            try:
                chunk = read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def has_output(self) -> bool:
        return bool(self._outgoing.pending)

    def pending_output(self) -> bytes:
        """Bytes the session produced while reading (a key update, an alert)."""
        return self._outgoing.read() if self._outgoing.pending else b""
