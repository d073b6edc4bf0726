"""The blocking transport: one multiplexed remoting connection per address.

Written once against :class:`~rocketmq_sync._runtime.Runtime`, so the same code
runs on OS threads (``rocketmq_sync``) and on greenlets (``rocketmq_gevent``).

Every request to an address shares one TCP (or TLS) connection, pipelined by
opaque: the core's :class:`~rocketmq_proto.connection.connection.Connection` allocates
opaques, matches answers and expires deadlines; this module moves bytes, keeps
one future per request, one reader task and one timer per connection.

- **Reading.** A task per connection connects, then reads and feeds the core,
  completing futures outside the connection's lock. Where the runtime lets
  callers read (threads, greenlets), a caller blocked on its own request may
  read the answer itself: the reader task waits ("parked") while nothing is in
  flight after such a caller's request, and a caller that finds it parked
  reads, so its answer needs no hand-off between tasks (waiting in the
  runtime's poller: ``poll()`` for a thread, the hub for a greenlet). A reading caller completes
  only its own request, leaving the others' to the reader task, their
  failures too (their callbacks never run amid a caller's code). Only one task reads at a time:
  a caller reads only a parked reader's connection, and whoever stops reading
  with requests still in flight unparks the reader. A parked reader looks for
  what came unasked (a server's request, a close) every :data:`_PARKED_LOOK`
  seconds.
- **Writing.** A request is queued in the core under the connection's lock,
  then whoever takes the write lock sends everything queued so far. Where the
  runtime says so (``reader_writes``: threads), a request another thread queues
  while the reader is busy with what it read is left to the reader, which
  writes all such frames in one send before it reads again (having first let
  the threads its completions woke make their next requests); not a big one
  (:data:`_LEAVE_UNDER`): the reader reads nothing while it writes. A caller
  that finds the write lock taken returns at once: the writer holding it sends
  its frame too (so concurrent senders share ``sendall`` calls). With threads
  the caller's thread writes (handing the write to another thread would cost a
  thread switch per request); with greenlets (``Runtime.coalesce_writes``) a
  greenlet spawned for it writes once the caller yields, so that every request
  a greenlet makes before it next waits leaves in one ``send`` (unless the
  request is the connection's only one in flight: that one is written at once).
- **Timers.** Deadlines are expired by one runtime timer per connection, armed
  at :meth:`Connection.next_deadline` and moved only when a request with an
  earlier deadline appears. The socket's own timeout cannot serve: it is one
  value shared by ``recv`` and ``sendall``, and a reader waking every few
  milliseconds would cut short a concurrent write. The socket's timeout is the
  write timeout; a ``recv`` that times out on an idle connection is not an error.

Nothing here decides for the protocol: the errors, and the answer to a request
from the server that no handler takes, come from the core's
:class:`~rocketmq_proto.connection.endpoint.Endpoint`, alike for every driver.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
import warnings
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from rocketmq_proto import driver
from rocketmq_proto.driver import (
    ConfigError,
    Connection,
    ConnectionClosedError,
    Endpoint,
    InvalidArgumentError,
    RemotingCommand,
    Reply,
    RocketMQError,
    TransportSettings,
    log_fields,
    request_name,
    request_timeout_error,
    transport_settings,
)

from ._future import Future
from ._runtime import Cancellable, ForkCheck, Runtime, SocketLike, TaskHandle
from ._tls import TlsSession

__all__ = ["RemotingClient", "RequestHandler"]

#: Handles a request the server sent us (a transaction check-back, "consumer ids
#: changed", running info...), given the server's address. Returns the
#: :class:`Reply`, ``None`` to send none, or a :class:`Future` of either (the
#: answer is sent when it completes). Runs on the runtime's user pool.
RequestHandler = Callable[[str, RemotingCommand], "Reply | Future[Reply | None] | None"]

_RECV_SIZE: Final = 256 * 1024
_YIELD_EVERY: Final = 16
#: A request whose deadline is at most this much before the armed timer does not
#: move it: the timer fires a little late for it rather than being re-armed.
_TIMER_SLACK: Final = 0.002
#: A timer firing more than this before its deadline is re-armed, not trusted.
_TIMER_EARLY: Final = 0.05
#: How much longer than its own timeout a blocking call waits for its future
#: (a safety net: the connection's timer normally completes it in time).
_WAIT_GRACE: Final = 1.0

_CONNECTING: Final = 0
_OPEN: Final = 1
_CLOSED: Final = 2

#: A request whose body is at least this many bytes is written by its caller, never
#: left to a busy reader (see Runtime.reader_writes): the reader reads nothing while
#: it writes, and a big frame may take long to leave.
_LEAVE_UNDER: Final = 64 * 1024
#: Seconds between a parked reader's looks for what came unasked.
_PARKED_LOOK: Final = 0.5
#: Seconds a caller reading its own answer waits in poll() at most before it
#: looks whether its request was completed elsewhere (by the timer, a close).
_CALLER_LOOK: Final = 1.0

_Completion = tuple[Future[Any], Any, BaseException | None]
_Actions = tuple[list[_Completion], list[RemotingCommand], driver.ConnectionClosed | None]


class _Channel:
    """One connection to one address: its socket, its core Connection, its reader.

    ``_lock`` guards the core connection, the TLS session and every field below
    it; it is never held during socket IO. ``_write_lock`` is held while writing,
    so that frames leave in the order the core queued them.
    """

    def __init__(self, core: _Core, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.addr = endpoint.addr
        self._core = core
        self._rt = core.runtime
        self._log = core.log
        settings = core.settings
        self._conn = Connection(
            serialize_type=settings.serialize_type,
            max_frame_size=settings.max_frame_size,
            signer=settings.signer,
            logger=core.log,
        )
        self._lock = self._rt.Lock()
        self._write_lock = self._rt.Lock()
        # opaque -> (future, timeout): the timeout only for the error message.
        self._waiters: dict[int, tuple[Future[RemotingCommand], float]] = {}
        self._connect_waiters: list[Future[None]] = []
        self._status = _CONNECTING
        self._sock: SocketLike | None = None
        self._tls: TlsSession | None = None
        self._dirty = False  # frames queued in the core and not yet taken by a writer
        self._coalesce = self._rt.coalesce_writes
        self._flush_scheduled = False
        self._timer: Cancellable | None = None
        self._timer_at = 0.0
        self._timer_seq = 0
        self._started = False
        self._task: TaskHandle | None = None  # connects, then sends what was queued
        self._reader: TaskHandle | None = None
        self._reader_task: object | None = None  # the reader, as Runtime.current() names it
        self._closing_on_purpose = False
        self._abandoned = False
        self.was_open = False
        # A caller reading its own answer (see read_for): while nothing is in flight
        # and the last request was a blocked caller's, the reader task waits
        # ("parked") instead of reading; a caller that finds it parked reads.
        self._callers_read = self._rt.callers_read
        self._parked = False
        self._caller_reading = False
        self._reading_caller: object | None = None  # the task reading, while one does
        # Completions a reading caller left to the reader task (see _feed).
        self._handoff: deque[_Completion] = deque()
        self._last_was_caller = False
        self._unpark = self._rt.Event()
        self._pollers: list[Any] = [None, None]  # see _poll_for
        # Where the reader writes (Runtime.reader_writes): the reader task is busy
        # with what it read, from taking it to its last look for frames queued
        # meanwhile, which it then writes, all in one send (see _received).
        self._reader_writes = self._rt.reader_writes
        self._reader_busy = False
        self._writer_spawned = False  # for what the reader would not write (see _flush)
        # (Under _write_lock.) Bytes the reader took and the socket did not: the next
        # writer sends them before anything else.
        self._carry = b""

    def __repr__(self) -> str:
        status = ("connecting", "open", "closed")[self._status]
        return f"<_Channel {self.addr} {status} in_flight={len(self._waiters)}>"

    @property
    def usable(self) -> bool:
        return self._status != _CLOSED

    @property
    def is_open(self) -> bool:
        return self._status == _OPEN

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        self._task = self._rt.spawn(self._run)

    # ------------------------------------------------------------------ sending

    def request(
        self, command: RemotingCommand, timeout: float, caller: bool = False
    ) -> Future[RemotingCommand] | None:
        """Queue ``command``; ``None`` if this channel closed meanwhile (use another).
        ``caller``: the thread calling waits for the answer and will offer to read it
        (:meth:`read_for`), then call :meth:`ensure_reader`."""
        rt = self._rt
        future: Future[RemotingCommand] = Future(rt)
        now = rt.monotonic()
        with self._lock:
            if self._status == _CLOSED:
                return None
            opaque = self._conn.send_request(command, now, timeout)
            self._waiters[opaque] = (future, timeout)
            self._dirty = True
            self._last_was_caller = caller
            # A caller reading reads this answer too, or unparks the reader when it
            # stops (ensure_reader): two tasks never read at once.
            unpark = self._parked and not caller and not self._caller_reading
            if unpark:
                self._parked = False
            deadline = now + timeout
            if self._timer is None or deadline + _TIMER_SLACK < self._timer_at:
                self._arm_timer(deadline, now)
            is_open = self._status == _OPEN
            # Coalescing pays when requests come in bursts; the only request in
            # flight (a caller sending one at a time) is written at once.
            coalesce = self._coalesce and len(self._waiters) > 1
            # A busy reader writes it (a blocked caller writes its own: it reads next),
            # unless it is big: the reader would read nothing while writing it.
            left = self._reader_busy and not caller and len(command.body) < _LEAVE_UNDER
            spawn_flush = is_open and coalesce and not self._flush_scheduled
            if spawn_flush:
                self._flush_scheduled = True
        if unpark:
            self._unpark.set()
        if spawn_flush:
            self._rt.spawn(self._scheduled_flush)
        elif is_open:
            if not coalesce and not left:
                self._flush()
        elif not self._started:
            self._start()
        return future

    def oneway(self, command: RemotingCommand) -> Future[None] | None:
        """Queue a oneway ``command``; the future completes once it is handed to the socket."""
        rt = self._rt
        with self._lock:
            if self._status == _CLOSED:
                return None
            self._conn.send_request(command, rt.monotonic(), oneway=True)
            self._dirty = True
            waiter: Future[None] | None = None
            if self._status == _CONNECTING:
                waiter = Future(rt)
                self._connect_waiters.append(waiter)
        if waiter is not None:
            if not self._started:
                self._start()
            return waiter
        self._kick()
        if self._status == _CLOSED:
            return Future.failed(
                rt,
                ConnectionClosedError(
                    f"connection to {self.addr} closed while sending oneway "
                    f"{request_name(command.code)}"
                ),
            )
        return Future.completed(rt, None)

    def send_reply(self, request: RemotingCommand, reply: Reply | None) -> None:
        """Answer ``request`` (a request from the server) with ``reply``, if any."""
        with self._lock:
            if not self.endpoint.queue_reply(self._conn, request, reply):
                return
            self._dirty = True
            is_open = self._status == _OPEN
        if is_open:
            self._kick()

    def _kick(self) -> None:
        """Have what is queued sent: now, or (coalescing) by a task spawned for it."""
        if not self._coalesce:
            self._flush()
            return
        with self._lock:
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self._rt.spawn(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Send what the core has queued, unless another writer is doing it now. The
        reader task (or a caller reading for it) never waits to write: it would read
        nothing meanwhile, and a peer that cannot write its answers may stop reading
        too. It leaves :data:`_LEAVE_UNDER` bytes or more, and whatever the socket
        does not take at once, to a task spawned to write them."""
        lock = self._lock
        write_lock = self._write_lock
        conn = self._conn
        me = self._rt.current()
        # The reader task, or a caller reading for it: the only task reading now.
        on_reader = me is self._reader_task or me is self._reading_caller
        while True:
            if not write_lock.acquire(False):
                return  # the writer holding it takes our frames before it lets go
            error: BaseException | None = None
            handed = False
            try:
                while True:
                    with lock:
                        sock = self._sock
                        if self._status != _OPEN or sock is None:
                            break
                        if on_reader and conn.bytes_to_send >= _LEAVE_UNDER:
                            handed = True
                            break
                        self._dirty = False
                        data = conn.data_to_send()
                        tls = self._tls
                        if tls is not None:
                            data = tls.encrypt(data) if data else tls.pending_output()
                    if self._carry:  # what the reader could not send: first
                        data, self._carry = self._carry + data, b""
                    if not data:
                        break
                    if on_reader:
                        # Never waits: what the socket does not take now is carried
                        # over to a task spawned to send it (the reader must read).
                        sent = self._rt.send_now(sock, data)
                        if sent < len(data):
                            self._carry = data[sent:]
                            handed = True
                            break
                    else:
                        sock.sendall(data)
            except OSError as exc:  # ssl.SSLError and socket timeouts are OSErrors too
                error = exc
            finally:
                write_lock.release()
            if error is not None:
                # A caller reading this connection fails only its own requests here,
                # as when its read fails (the others' go to the reader).
                self._lost(error, "writing", self._reading_caller is self._rt.current())
                return
            if handed:
                with lock:
                    spawn = not self._writer_spawned
                    self._writer_spawned = True
                if spawn:
                    try:
                        self._rt.spawn(self._spawned_write)
                    except BaseException:
                        self._writer_spawned = False  # the next look tries again
                        raise
                return
            # A sender may have queued a frame after our last look and found the
            # write lock still taken: then it is ours to send.
            if not self._dirty or self._status != _OPEN:
                return

    def _spawned_write(self) -> None:
        """(A task spawned by the reader.) Write what the reader would not."""
        with self._lock:
            self._writer_spawned = False
        self._flush()

    # ------------------------------------------------------------------- timers

    def _arm_timer(self, deadline: float, now: float) -> None:
        """(Under ``_lock``.) Expire requests at ``deadline``, replacing the armed timer."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_seq += 1
        self._timer_at = deadline
        self._timer = self._rt.call_later(
            deadline - now, functools.partial(self._on_timer, self._timer_seq)
        )

    def _on_timer(self, seq: int) -> None:
        rt = self._rt
        with self._lock:
            if seq != self._timer_seq or self._status == _CLOSED:
                return  # superseded by a timer armed later, or nothing left to expire
            self._timer = None
            now = rt.monotonic()
            if now + _TIMER_EARLY < self._timer_at:
                # Far too early (a runtime's clock was stale when it was armed): no
                # request is due yet; wait for the deadline again.
                self._arm_timer(self._timer_at, now)
                return
            # A timer may fire a clock tick early: treat its own deadline as due, or
            # the request that armed it would not expire and the timer would spin.
            self._conn.handle_timer(max(now, self._timer_at))
            actions = self._drain()
            if self._status != _CLOSED:
                deadline = self._conn.next_deadline()
                if deadline is not None:
                    self._arm_timer(deadline, rt.monotonic())
        self._dispatch(actions)

    # --------------------------------------------------------- connect and read

    def _run(self) -> None:
        try:
            sock = self._open()
        except Exception as exc:
            self._connect_failed(exc)
            return
        if sock is None:
            return
        # Read in a task of its own from the start: sending the requests queued while
        # connecting may take a while, and the answers to the first ones must not wait.
        self._reader = self._rt.spawn(self._read_loop, sock)
        with self._lock:
            waiters, self._connect_waiters = self._connect_waiters, []
        self._flush()
        for waiter in waiters:
            waiter.set_result(None)

    def _open(self) -> SocketLike | None:
        core = self._core
        rt = self._rt
        timeout = core.connect_timeout
        deadline = rt.monotonic() + timeout
        endpoint = self.endpoint
        sock = rt.create_connection((endpoint.host, endpoint.port), timeout)
        tls: TlsSession | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            ssl_context = core.settings.ssl_context
            if ssl_context is not None:
                tls = TlsSession(ssl_context, endpoint.host)
                sock.settimeout(max(0.001, deadline - rt.monotonic()))
                tls.handshake(sock)
            sock.settimeout(core.write_timeout)
        except BaseException:
            sock.close()
            raise
        with self._lock:
            if self._status == _CLOSED:  # the client closed while we were connecting
                sock.close()
                return None
            self._sock = sock
            self._tls = tls
            self._status = _OPEN
            self.was_open = True
            self._dirty = True
        core.on_connected(self)
        return sock

    def _connect_failed(self, exc: BaseException) -> None:
        error = self.endpoint.connect_error(exc, self._core.connect_timeout)
        # Back off first, while this channel still counts as connecting: once it is
        # marked closed, a request in another thread drops it from the pool and
        # dials again, and the failure would come too late to back off. Before
        # failing the requests too: one retried from a callback fails fast.
        self._core.on_connect_failed(self, error)
        with self._lock:
            if self._status == _CLOSED:
                return
            self._conn.connection_lost(error)
            actions = self._drain()
        self._dispatch(actions)

    def _read_loop(self, sock: SocketLike) -> None:
        # Known from its first step (``_reader`` is set by the task that spawned it,
        # maybe only after this one read and wrote: a TLS session ticket comes unasked).
        self._reader_task = self._rt.current()
        recv = self._rt.idle_read(sock)
        callers_read = self._callers_read
        try:
            while True:
                if callers_read and not self._my_turn(sock):
                    return
                try:
                    data = recv(_RECV_SIZE)
                except TimeoutError:  # idle for the write timeout: nothing wrong
                    if self._status == _CLOSED:
                        return
                    continue
                except OSError as exc:
                    self._lost(exc, "reading")
                    return
                if not self._received(data):
                    return
        except Exception as exc:  # a bug: fail what is in flight rather than leave it hanging
            self._log.error(
                "reader of %s failed", self.addr, exc_info=exc, extra=log_fields(addr=self.addr)
            )
            self._lost(exc, "reading")
        except BaseException as exc:  # SystemExit from a callback: the task ends, and so
            self._lost(exc, "reading")  # does the connection (nothing would read or write it)
            raise
        finally:
            self._close_socket(sock)

    def _received(self, data: bytes) -> bool:
        """Feed what was read to the core and complete what it completes; whether
        the connection is still open."""
        actions, flush = self._feed(data)
        self._dispatch(actions)
        if flush:
            self._kick()
        if self._reader_writes:
            if actions[0]:
                # The threads these completions woke (a sender waiting for a free
                # slot) run first, so that the requests they make now are among
                # the frames this reader writes, in one send.
                self._rt.sleep(0)
            self._write_left()
        return self._status != _CLOSED

    def _write_left(self) -> None:
        """(The reader task, done with what it read.) Write the frames queued while it
        was busy, then stop being busy: a frame queued after its last look is
        written by its caller. If another task is writing, that writer takes them:
        it looks for frames queued during its write before it stops (a task the
        reader spawned to write big ones too, see :meth:`_flush`)."""
        lock = self._lock
        write_lock = self._write_lock
        while True:
            if self._dirty:
                self._flush()
            with lock:
                if (
                    not self._dirty
                    or self._status != _OPEN
                    or write_lock.locked()
                    or self._writer_spawned
                ):
                    self._reader_busy = False
                    return

    def _feed(
        self, data: bytes, caller: bool = False, own: Future[Any] | None = None
    ) -> tuple[_Actions, bool]:
        """Feed ``data`` to the core; what to complete, and whether TLS has output to
        send. A ``caller`` reading completes only its ``own`` future (if any): the
        others' completions go to the reader task (:meth:`_handed_over`), as if it
        had read them, so that their callbacks never run in a caller's thread,
        amid the caller's own code."""
        flush = False
        tls = self._tls
        with self._lock:
            if self._status == _CLOSED:
                return ([], [], None), False
            conn = self._conn
            if tls is None or not data:
                conn.receive_data(data)
            else:
                try:
                    plain = tls.decrypt(data)
                except ssl.SSLError as exc:
                    error = ConnectionClosedError(f"TLS error from {self.addr}: {exc}")
                    error.__cause__ = exc
                    conn.connection_lost(error)
                else:
                    if plain:
                        conn.receive_data(plain)
                    if tls.eof:
                        conn.receive_data(b"")
                    if not self._dirty and tls.has_output():
                        self._dirty = flush = True
            actions = self._drain()
            if caller:
                actions = self._hand_over(actions, own)
            elif self._reader_writes:
                self._reader_busy = True
        return actions, flush

    def _hand_over(self, actions: _Actions, own: Future[Any] | None) -> _Actions:
        """(Under ``_lock``, in a reading caller.) ``actions`` less the completions of
        requests other than ``own``, which go to the reader task (:meth:`_feed`)."""
        done = actions[0]
        if done and (len(done) > 1 or done[0][0] is not own):
            self._handoff.extend(c for c in done if c[0] is not own)
            self._unpark.set()  # the reader completes them
            actions = ([c for c in done if c[0] is own], actions[1], actions[2])
        return actions

    def _handed_over(self) -> None:
        """(The reader task.) Complete what a reading caller left to it."""
        handoff = self._handoff
        while handoff:
            batch = []
            with self._lock:
                while handoff:
                    batch.append(handoff.popleft())
            self._dispatch((batch, [], None))

    # ------------------------------------------------- a caller reading its answer

    def _my_turn(self, sock: SocketLike) -> bool:
        """(The reader task, before each read.) Whether to read now; ``False`` once
        the connection closed. While nothing is in flight after a blocked caller's
        request, wait ("parked"): that caller's next request is then likely read
        by that caller (:meth:`read_for`), sparing a hand-off. A request of anyone
        else unparks the reader, as does a caller that stops reading with requests
        still in flight; every :data:`_PARKED_LOOK` seconds the reader looks for
        what came unasked meanwhile (a server's request, the connection closing).
        Meanwhile it completes what a reading caller left to it."""
        lock = self._lock
        with lock:
            if self._status == _CLOSED:
                return False
            if self._waiters or not self._last_was_caller:
                return True
            self._parked = True
            self._unpark.clear()
        while True:
            woken = self._unpark.wait(_PARKED_LOOK)
            if woken:
                # Cleared before the hand-over is emptied: what a caller hands over
                # after this sets it again (and is seen at the next wait).
                with lock:
                    self._unpark.clear()
            if self._handoff:
                self._handed_over()
            with lock:
                if self._status == _CLOSED:
                    if self._caller_reading:  # it sets the event once done with the socket
                        continue
                    turn = False
                    break
                if not self._parked:
                    turn = True
                    break
                if woken or self._caller_reading:
                    continue
            if _readable(self._poll_for(sock, look=True), 0.0):
                with lock:
                    if self._parked and not self._caller_reading:
                        self._parked = False
                        turn = True
                        break
        # No caller reads now (nor will before the reader parks again): what the
        # last one left is all there is.
        if self._handoff:
            self._handed_over()
        return turn

    def _poll_for(self, sock: SocketLike, *, look: bool = False) -> Any:
        """A poller of ``sock``: the parked reader's for its looks, or the callers'
        (one caller reads at a time). Made once each: a poller may not be polled by
        two tasks at once."""
        pollers = self._pollers
        poller = pollers[look]
        if poller is None:
            poller = pollers[look] = self._rt.poller(sock)
        return poller

    def read_for(self, future: Future[Any], deadline: float) -> bool:
        """(A caller waiting for ``future``, a request of its own on this channel,
        due by ``deadline``.) Read the connection here until ``future`` is done, if
        the reader task is parked and no other caller reads: ``True``. Else
        ``False`` at once (the reader task, or that caller, reads it). Either way the
        caller calls :meth:`ensure_reader` once it reads no more here (it may read
        for its next request first: its flow may have made it meanwhile)."""
        return self._read_as_caller(future, deadline)

    def look(self) -> None:
        """(Before a request is sent here.) If the reader task is parked and no
        caller reads, read what came meanwhile, unasked: a connection the server
        closed is then known closed before a request is written to it."""
        if self._parked and not self._caller_reading:
            try:
                self._read_as_caller(None, 0.0)
            finally:
                self.ensure_reader()  # for a request another task sent meanwhile

    def _read_as_caller(self, own: Future[Any] | None, deadline: float) -> bool:
        """Read as a caller (see :meth:`read_for`); ``own`` ``None``: only what has
        come already. An interrupt (``KeyboardInterrupt`` in the main thread) after
        bytes were read, before their answers were all in hand, leaves the stream's
        state unknown: the connection is dropped, and every request that was in
        flight then fails (none is left waiting forever)."""
        lock = self._lock
        rt = self._rt
        local = self._core.local
        reading_before = getattr(local, "reading", False)
        me = rt.current()
        taken = False
        unsettled = False  # bytes read whose answers are not all in hand yet
        in_play: list[Future[Any]] = []
        try:
            with lock:
                sock = self._sock
                if self._status != _OPEN or sock is None:
                    return False
                if not self._parked or self._caller_reading:
                    return False
                self._reading_caller = me
                self._caller_reading = taken = True
            local.reading = True
            poller = self._poll_for(sock)
            give_up = deadline + _WAIT_GRACE  # should the timer fail to fire
            while own is None or not own.done():
                if own is None:
                    if not _readable(poller, 0.0):
                        break
                else:
                    now = rt.monotonic()
                    if now > give_up:
                        break  # the caller waits for its future, as it would have
                    # Waits until the request's deadline at most (then the timer fails
                    # it; a moment later if it is late), looking every second whether
                    # another task completed it.
                    wait = min(_CALLER_LOOK, max(deadline - now, _TIMER_SLACK))
                    if not _readable(poller, wait):
                        continue
                unsettled = True
                try:
                    data = sock.recv(_RECV_SIZE)
                except TimeoutError:  # readable, then not (a spurious wake-up)
                    unsettled = False
                    continue
                except OSError as exc:
                    unsettled = False
                    self._lost(exc, "reading", True, own)
                    break
                with lock:
                    in_play = [entry[0] for entry in self._waiters.values()]
                actions, flush = self._feed(data, True, own)
                unsettled = False
                self._dispatch(actions)
                if flush:
                    self._kick()
                if self._status == _CLOSED or own is None:
                    break
        except Exception as exc:  # a bug: as in the reader task
            self._log.error(
                "reading from %s failed", self.addr, exc_info=exc, extra=log_fields(addr=self.addr)
            )
            self._abandon_read(exc, in_play, own)
        except BaseException:
            if unsettled:
                self._abandon_read(ConnectionClosedError("interrupted while reading"), in_play, own)
            raise
        finally:
            if taken:
                # First what an interrupt here must not skip: the flags (plain stores,
                # atomic under the interpreter's lock).
                self._caller_reading = False
                self._reading_caller = None
                local.reading = reading_before
                with lock:
                    # Closed: the reader closes the socket, now no caller uses it.
                    wake = self._parked and self._status == _CLOSED
                    if wake:
                        self._parked = False
                if wake:
                    self._unpark.set()
        return True

    def _abandon_read(
        self, exc: BaseException, in_play: list[Future[Any]], own: Future[Any] | None
    ) -> None:
        """Drop the connection after a caller's read failed midway; fail the requests
        that were in flight as it fed what it read, should one have been taken from
        the core's and this channel's tables without being completed (one whose
        answer was handed to the reader is not). Others' requests fail on the
        reader task, as in :meth:`_feed`."""
        self._lost(exc, "reading", True, own)
        with self._lock:
            handed = {id(c[0]) for c in self._handoff}
            stranded = [f for f in in_play if not f.done() and id(f) not in handed]
            error = ConnectionClosedError(f"connection to {self.addr} broke while reading: {exc!r}")
            self._handoff.extend((f, None, error) for f in stranded if f is not own)
            self._unpark.set()
        if own is not None and own in stranded:
            own.set_exception(error)

    def ensure_reader(self) -> None:
        """(A caller done waiting, having read or not; a look done.) If requests are
        in flight while the reader task is parked and nobody reads, unpark it."""
        with self._lock:
            wake = self._parked and not self._caller_reading and bool(self._waiters)
            if wake:
                self._parked = False
        if wake:
            self._unpark.set()

    def _close_socket(self, sock: SocketLike) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # makes a writer stuck in sendall fail now
        # Close only when no writer is using the socket: closing a descriptor another
        # thread is writing to could let that write reach a socket reusing its number.
        with self._write_lock:
            sock.close()

    def _lost(
        self, exc: BaseException, doing: str, caller: bool = False, own: Future[Any] | None = None
    ) -> None:
        """The connection broke with ``exc``: fail what is in flight (a reading
        ``caller`` fails only its ``own`` request here, as :meth:`_feed` does)."""
        with self._lock:
            if self._status == _CLOSED:
                return
            error = self.endpoint.broken_error(exc, doing, self._core.write_timeout)
            self._conn.connection_lost(error)
            actions = self._drain()
            if caller:
                actions = self._hand_over(actions, own)
        self._dispatch(actions)

    # ------------------------------------------------------------------- events

    def _drain(self) -> _Actions:
        """(Under ``_lock``.) Turn the core's events into futures to complete."""
        conn = self._conn
        waiters = self._waiters
        addr = self.addr
        done: list[_Completion] = []
        requests: list[RemotingCommand] = []
        closed: driver.ConnectionClosed | None = None
        while True:
            try:
                event = conn.next_event()
            except driver.RemoteProtocolError as exc:
                # The stream lost its framing; the core reports what was in flight next.
                self._log.error(
                    "protocol error from %s, dropping the connection: %s",
                    addr,
                    exc,
                    extra=log_fields(addr=addr),
                )
                continue
            if event is None:
                break
            if isinstance(event, driver.Response):  # the most frequent first
                entry = waiters.pop(event.opaque, None)
                if entry is not None:
                    done.append((entry[0], event.command, None))
            elif isinstance(event, driver.ServerRequest):
                requests.append(event.command)
            elif isinstance(event, driver.ConnectionClosed):
                closed = event
            else:  # a request timed out, or failed with the connection
                failed = self.endpoint.request_failure(event, waiters)
                if failed is not None:
                    done.append((failed[0], None, failed[1]))
        if closed is not None:
            self._status = _CLOSED
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            reason = closed.error or ConnectionClosedError(f"connection to {addr} closed")
            if waiters:  # the core failed every request in flight; this is a safety net
                for future, _ in waiters.values():
                    done.append((future, None, ConnectionClosedError(str(reason))))
                waiters.clear()
            for waiter in self._connect_waiters:
                error = ConnectionClosedError(str(reason))
                error.__cause__ = reason
                done.append((waiter, None, error))
            self._connect_waiters = []
        return done, requests, closed

    def _dispatch(self, actions: _Actions) -> None:
        done, requests, closed = actions
        try:
            for index, (future, value, error) in enumerate(done, 1):
                try:
                    if error is None:
                        future.set_result(value)
                    else:
                        future.set_exception(error)
                except BaseException:
                    # A callback's SystemExit (or an interrupt): the futures after it
                    # are out of every table already; complete them before it goes on.
                    _complete_quietly(done[index:])
                    raise
                if index % _YIELD_EVERY == 0:
                    # Completing a future resumes its flow right here; after a batch of
                    # them, let others run (under gevent the hub must not wait on us).
                    self._rt.sleep(0)
            for command in requests:
                self._core.on_server_request(self, command)
        finally:
            if closed is not None:
                self._core.on_closed(self, closed.error, self._closing_on_purpose)
                sock = self._sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the reader, which closes it
                self._unpark.set()  # a parked reader too

    # ------------------------------------------------------------------ closing

    def close(self, reason: str) -> None:
        """Close on purpose: requests in flight fail with :class:`ConnectionClosedError`."""
        with self._lock:
            if self._status == _CLOSED:
                return
            self._closing_on_purpose = True
            self._conn.connection_lost(ConnectionClosedError(reason))
            actions = self._drain()
        self._dispatch(actions)

    def join(self, timeout: float) -> None:
        """Wait for the connect task and the reader to end (not from either of them)."""
        rt = self._rt
        deadline = rt.monotonic() + timeout
        current = rt.current()
        for task in (self._task, self._reader):
            if task is not None and task is not current:
                if task is self._reader and self._reading_caller is current:
                    continue  # it waits for this caller to stop reading, up the stack
                task.join(max(0.0, deadline - rt.monotonic()))

    def abandon(self) -> None:
        """In a forked child: forget this connection without touching the parent's.

        No lock is taken (a thread of the parent may have held it) and nothing is
        sent: the socket is the parent's too. Requests in flight are the
        parent's; nobody in the child completes them.
        """
        self._abandoned = True
        self._status = _CLOSED
        self._waiters = {}
        self._connect_waiters = []
        timer, self._timer = self._timer, None
        if timer is not None:
            with contextlib.suppress(Exception):  # the runtime may have been reset already
                timer.cancel()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()  # our descriptor only: no shutdown, the parent keeps its own


def _complete_quietly(done: list[_Completion]) -> None:
    """Complete ``done`` whatever their callbacks raise (what one raises is dropped:
    the caller is already on its way out with an exception of its own)."""
    for future, value, error in done:
        try:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        except BaseException:  # dropped: see the docstring
            pass


def _readable(poller: Any, seconds: float) -> bool:
    """Whether the polled socket has something to read (or closed) within ``seconds``."""
    try:
        return bool(poller.poll(seconds * 1000))
    except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
        return False


class _Core:
    """The state of a :class:`RemotingClient` that its connections refer to.

    Connections, their reader tasks and timers hold this object, never the
    client, so that an unclosed client can be garbage-collected and warn.
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: TransportSettings,
        write_timeout: float,
        request_handler: RequestHandler | None,
        backoff: driver.ReconnectBackoff | None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.connect_timeout = settings.connect_timeout
        self.write_timeout = write_timeout
        self.request_handler = request_handler
        self.log = settings.logger or logging.getLogger(__name__)
        self._lock = runtime.Lock()
        # Under _lock. Its ``conns`` are read without it, for a quick look.
        self.pool: driver.PoolPolicy[_Channel] = driver.PoolPolicy(backoff)
        self.closed = False
        self.used = False
        #: Notices, on the core's next use, that it is in a child after os.fork().
        self._fork = ForkCheck()
        #: Per thread: whether it reads one of these connections as a caller now.
        self.local = runtime.local()

    def check_fork(self) -> None:
        """Start afresh if this is a child after ``os.fork()`` and nothing did yet."""
        self._fork.check(self._start_afresh)

    def channel(self, addr: str) -> _Channel:
        """The connection to ``addr``, opening one if there is none (without waiting).
        A connection whose reader is parked is looked at first (:meth:`_Channel.look`):
        one the server closed while idle is replaced, not used."""
        self._fork.check(self._start_afresh)
        pool = self.pool
        channel = pool.conns.get(addr)
        if channel is not None and channel.usable:
            if channel._parked:
                channel.look()
            if channel.usable:
                return channel
        with self._lock:
            if self.closed:
                raise ConnectionClosedError(f"cannot send to {addr}: the client is closed")
            channel = pool.conns.get(addr)
            if channel is not None and not channel.usable:
                pool.on_closed(addr, channel)  # it closed; its own report is on its way
            decision = pool.on_need(addr, self.runtime.monotonic())
            if isinstance(decision, driver.Fail):
                raise decision.error
            if not isinstance(decision, driver.Dial):
                return decision.conn  # open, or connecting: the request queues on it
            channel = _Channel(self, Endpoint(addr, self.log))
            pool.on_dial(addr, channel)
            self.used = True
        # Not connecting yet: the caller queues its request first, then starts it, so
        # that a connect failing at once still fails that request (not with "backing off").
        return channel

    # ------------------------------------------------------ called by channels
    # In a child after os.fork(), a greenlet of the parent's may still run a channel
    # of the parent's: its first report makes the core start afresh, which forgets
    # that channel, so nothing more of it is logged or kept.

    def on_connected(self, channel: _Channel) -> None:
        self.check_fork()
        if channel._abandoned:
            return
        with self._lock:
            self.pool.on_connected(channel.addr, channel)
        self.log.debug("connected to %s", channel.addr, extra=log_fields(addr=channel.addr))

    def on_connect_failed(self, channel: _Channel, error: ConnectionClosedError) -> None:
        self.check_fork()
        addr = channel.addr
        with self._lock:
            delay = self.pool.on_connect_failed(addr, channel, str(error), self.runtime.monotonic())
        if delay is None:  # forgotten: the client closed it, or forked
            return
        self.log.warning("%s; retry in %.3fs", error, delay, extra=log_fields(addr=addr))

    def on_closed(self, channel: _Channel, error: RocketMQError | None, on_purpose: bool) -> None:
        self.check_fork()
        addr = channel.addr
        with self._lock:
            self.pool.on_closed(addr, channel)
        if channel._abandoned or on_purpose or not channel.was_open:
            return
        channel.endpoint.log_closed(error)

    def on_server_request(self, channel: _Channel, command: RemotingCommand) -> None:
        handler = self.request_handler
        if handler is None:
            channel.send_reply(command, channel.endpoint.unhandled(command))
            return
        # Never on the reader: a slow handler must not hold up the responses behind it.
        self.runtime.run_user(
            handler,
            (channel.addr, command),
            functools.partial(self._handled, channel, command),
        )

    def _handled(
        self,
        channel: _Channel,
        command: RemotingCommand,
        reply: object,
        exc: BaseException | None,
    ) -> None:
        self.check_fork()  # a reply of the parent's handler is not the child's to send
        if exc is None and isinstance(reply, Future):
            # The handler started a flow and answers when it ends: no worker waits for it.
            reply.add_done_callback(functools.partial(self._reply_done, channel, command))
            return
        channel.send_reply(command, channel.endpoint.answer(command, reply, exc))

    def _reply_done(
        self, channel: _Channel, command: RemotingCommand, done: Future[Reply | None]
    ) -> None:
        if done.cancelled():
            self._handled(channel, command, None, None)  # nobody answers a cancelled flow
            return
        error = done.exception()
        self._handled(channel, command, None if error is not None else done.result(), error)

    # ------------------------------------------------------------------ closing

    def close_addr(self, addr: str) -> _Channel | None:
        self.check_fork()
        with self._lock:
            channel = self.pool.forget(addr)
        if channel is not None:
            channel.close(f"connection to {addr} closed by the client")
        return channel

    def close(self) -> list[_Channel]:
        self.check_fork()
        with self._lock:
            if self.closed:
                return []
            self.closed = True
            channels = self.pool.forget_all()
        for channel in channels:
            channel.close("the client was closed")
        return channels

    def _start_afresh(self) -> None:
        # In a child after os.fork(). Locks may be held by threads of the parent
        # that do not exist here, and every socket is shared with the parent: start
        # with none of them. The new lock comes first: a runtime that checks for a
        # fork there (gevent's, which reinitialises the hub) starts afresh before
        # the sockets are let go.
        self._lock = self.runtime.Lock()
        self.local = self.runtime.local()
        for channel in self.pool.forget_all():
            channel.abandon()


class RemotingClient:
    """Requests to name servers and brokers, over one multiplexed connection per address.

    ``addr`` is ``"host:port"`` (``"[v6]:port"`` for IPv6). A connection opens on
    first use, in a task of its own: :meth:`request_future` never waits for it,
    the request is queued until the connection is up (its timeout runs from the
    call). Concurrent requests to an address share one connect attempt and one
    connection, pipelined by opaque. A failed connect makes the address back off
    (``backoff`` decides for how long); requests to it meanwhile fail at once. A
    connection that closes or breaks is dropped, failing its requests in flight
    with :class:`ConnectionClosedError`, and the next request reconnects.

    ``settings`` (header type, TLS, signing, limits) default to
    :func:`~rocketmq_proto.driver.transport_settings`'s; ``write_timeout`` bounds
    a write. ``request_handler`` answers requests the server sends (see
    :data:`RequestHandler`); it runs on the runtime's pool for user callables.
    Callbacks added to the futures run in the task that completes them (the
    connection's reader or its timer; for a blocked caller's own request, that
    caller, if it read the answer itself) and must not block.

    Safe to share between threads (or greenlets). After ``os.fork()`` the child
    forgets the parent's connections and opens its own on first use.
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: TransportSettings | None = None,
        *,
        write_timeout: float = 30.0,
        request_handler: RequestHandler | None = None,
        backoff: driver.ReconnectBackoff | None = None,
    ) -> None:
        settings = settings or transport_settings()
        ssl_context = settings.ssl_context  # the core does not import ssl: checked here
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
        if not write_timeout > 0:
            raise ConfigError(f"write_timeout must be positive, got {write_timeout!r}")
        self._runtime = runtime
        self._hooks = settings.hooks
        self._core = _Core(runtime, settings, write_timeout, request_handler, backoff)

    def __repr__(self) -> str:
        core = self._core
        state = "closed" if core.closed else f"connected to {sorted(core.pool.conns)}"
        return f"<RemotingClient ({self._runtime.name}) {state}>"

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def closed(self) -> bool:
        return self._core.closed

    def reading_here(self) -> bool:
        """Whether the current thread reads one of this client's connections as a
        caller now: a user's callable must not run here (it could wait for that
        connection's answers)."""
        return getattr(self._core.local, "reading", False)

    def connected(self, addr: str) -> bool:
        """Whether a connection to ``addr`` is open now."""
        self._core.check_fork()
        channel = self._core.pool.conns.get(addr)
        return channel is not None and channel.is_open

    # ----------------------------------------------------------------- requests

    def request_future(
        self, addr: str, command: RemotingCommand, timeout: float
    ) -> Future[RemotingCommand]:
        """Send ``command``; the future gets the response, whatever its code.

        Never blocks. ``timeout`` (seconds) runs from now and covers connecting.
        The future fails with :class:`RequestTimeoutError` or
        :class:`ConnectionClosedError` (or :class:`InvalidArgumentError` for a bad
        address or timeout). The settings' request hooks are called before, and
        when the future completes (on the thread that completes it).
        """
        future = self._request_future(addr, command, timeout)[0]
        if self._hooks.requests:
            self._hooked(future, addr, command)
        return future

    def _hooked(self, future: Future[Any], addr: str, command: RemotingCommand) -> None:
        hooks = self._hooks
        ctx = driver.request_started(hooks, addr, command)
        began = self._runtime.monotonic()

        def ended(done: Future[Any]) -> None:
            error = done.exception()
            response = None if error is not None else done.result()
            elapsed = self._runtime.monotonic() - began
            driver.request_ended(hooks, ctx, elapsed, response, error)

        future.add_done_callback(ended)

    def caller_request(
        self, addr: str, command: RemotingCommand, timeout: float
    ) -> tuple[Future[RemotingCommand], _Channel | None]:
        """:meth:`request_future` for a caller that blocks until it is answered, and
        the connection it went to: the caller offers to read the answer itself
        (``channel.read_for(future, deadline)``), then calls
        ``channel.ensure_reader()``, read or not. ``None``: it failed at once."""
        future, channel = self._request_future(addr, command, timeout, caller=True)
        if self._hooks.requests:
            self._hooked(future, addr, command)
        return future, channel

    def _request_future(
        self, addr: str, command: RemotingCommand, timeout: float, caller: bool = False
    ) -> tuple[Future[RemotingCommand], _Channel | None]:
        core = self._core
        try:
            if not timeout > 0:
                raise InvalidArgumentError(f"a request needs a positive timeout, got {timeout!r}")
            for _ in range(3):
                channel = core.channel(addr)
                future = channel.request(command, timeout, caller)
                if future is not None:
                    return future, channel
            raise ConnectionClosedError(f"connection to {addr} keeps closing")
        except RocketMQError as exc:
            return Future.failed(self._runtime, exc), None

    def request(self, addr: str, command: RemotingCommand, timeout: float) -> RemotingCommand:
        """Send ``command`` and wait for the response, whatever its code.

        Raises :class:`RequestTimeoutError` or :class:`ConnectionClosedError`.
        Where the runtime lets callers read, the caller reads the answer itself
        while the connection's reader waits (see :meth:`caller_request`).
        """
        rt = self._runtime
        deadline = rt.monotonic() + timeout
        if rt.callers_read:
            future, channel = self.caller_request(addr, command, timeout)
            if channel is not None:
                try:
                    channel.read_for(future, deadline)
                finally:
                    channel.ensure_reader()
        else:
            future = self.request_future(addr, command, timeout)
        try:
            wait = deadline + _WAIT_GRACE - rt.monotonic() if timeout > 0 else 0.0
            return future.result(max(0.0, wait))
        except RocketMQError:
            raise  # the request's own failure (a RequestTimeoutError is a TimeoutError too)
        except TimeoutError:
            raise request_timeout_error(command.code, addr, timeout) from None

    def oneway_future(self, addr: str, command: RemotingCommand) -> Future[None]:
        """Send ``command`` with the oneway flag (no answer comes); never blocks.

        The future completes once the command is handed to the socket, or fails
        with :class:`ConnectionClosedError` if the connection cannot be opened.
        """
        future = self._oneway_future(addr, command)
        if self._hooks.requests:
            self._hooked(future, addr, command)
        return future

    def _oneway_future(self, addr: str, command: RemotingCommand) -> Future[None]:
        core = self._core
        try:
            for _ in range(3):
                channel = core.channel(addr)
                future = channel.oneway(command)
                if future is not None:
                    return future
            raise ConnectionClosedError(f"connection to {addr} keeps closing")
        except RocketMQError as exc:
            return Future.failed(self._runtime, exc)

    def oneway(self, addr: str, command: RemotingCommand) -> None:
        """:meth:`oneway_future`, waiting until the command is written (or fails)."""
        future = self.oneway_future(addr, command)
        wait = self._core.connect_timeout + _WAIT_GRACE
        try:
            future.result(wait)
        except RocketMQError:
            raise
        except TimeoutError:
            raise ConnectionClosedError(
                f"cannot send oneway {request_name(command.code)} to {addr}: "
                f"not connected after {wait:g}s"
            ) from None

    # ------------------------------------------------------------------ closing

    def close_addr(self, addr: str) -> None:
        """Close the connection to ``addr`` (if any), failing its requests in flight."""
        channel = self._core.close_addr(addr)
        if channel is not None and channel.was_open:
            channel.join(self._core.connect_timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close every connection; requests in flight fail with :class:`ConnectionClosedError`.

        Waits up to ``timeout`` seconds (default: the connect timeout) for the
        readers to end. A connect still under way is not waited for: it closes
        its socket as soon as it completes.
        """
        channels = self._core.close()
        rt = self._runtime
        deadline = rt.monotonic() + (self._core.connect_timeout if timeout is None else timeout)
        for channel in channels:
            if channel.was_open:
                channel.join(max(0.0, deadline - rt.monotonic()))

    def __enter__(self) -> RemotingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Only a warning: the garbage collector runs at any point of any thread (one
        # may hold this client's locks), so nothing is closed or failed from here.
        core = getattr(self, "_core", None)
        if core is None or core.closed or not core.used:
            return
        _warn(f"unclosed {self!r}", ResourceWarning, source=self)
