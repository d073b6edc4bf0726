"""The blocking driver's interpreter of the core's effects (:mod:`rocketmq_proto.flows.effects`).

Continuation-passing: no thread (or greenlet) waits for a flow. Each effect is
started without blocking, and the flow resumes in whichever task completes it:
a call's answer on its connection's reader, a sleep on the runtime's timer, a
user's callable on the user pool (called at once when the flow already runs on
one of the pool's workers, unless that worker is reading a connection). Where
the runtime lets callers read, the task blocked in :func:`run_flow` reads the
answers to the requests the flow makes in it, and the flow resumes there. A
flow yields many effects that complete at once (``Now``, a call that fails
fast...); those are run in a loop, not by recursion, so a long flow cannot
exhaust the stack.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Generic, Never, NoReturn, TypeVar

from rocketmq_proto import driver
from rocketmq_proto.driver import Flow, HttpAnswer, RocketMQError, log_fields, user_callback_error
from rocketmq_proto.driver import perform_read_file as read_file
from rocketmq_proto.driver import perform_write_file as write_file

from ._future import Future
from ._runtime import Cancellable, LockLike, Runtime
from ._transport import RemotingClient, _Channel

__all__ = ["run_flow", "start_flow"]

_log = logging.getLogger("rocketmq_sync")

T = TypeVar("T")


class _Fatal:
    """Marks an error that is a bug, not an effect's failure: it ends the flow."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_ASYNC: Final = object()  # _perform's answer: the effect will resume the flow later

#: A flow running on a user worker calls at most this many users' callables in a
#: row itself before it queues one (so that other queued calls get their turn).
_CALLS_IN_A_ROW: Final = 32
#: Effects a flow may step through in a row, all completing at once, before the
#: other tasks get a turn (:meth:`Runtime.give_turn`).
_TURN_AFTER: Final = 1000
#: Clock readings answered in one step at most (:meth:`_FlowRunner._step`): a flow
#: that reads a clock over and over still lets other flows have the core lock.
_CLOCKS_IN_A_STEP: Final = 16


class _FlowRunner(Generic[T]):
    """Drives one flow; at most one effect of it is outstanding at any time."""

    __slots__ = (
        "_caller",
        "_client",
        "_clocks",
        "_core_lock",
        "_flow",
        "_in_a_row",
        "_lock",
        "_pending",
        "_result",
        "_running",
        "_runtime",
        "_spawned",
        "_target",
        "_timer",
        "_watching",
    )

    def __init__(
        self,
        client: RemotingClient,
        runtime: Runtime,
        flow: Flow[T],
        result: Future[T],
        core_lock: LockLike | None = None,
        spawned: set[Future[Any]] | None = None,
    ) -> None:
        self._core_lock = core_lock
        self._spawned = spawned
        self._client = client
        self._runtime = runtime
        self._flow = flow
        self._result = result
        self._lock = runtime.Lock()
        self._pending: tuple[Any, BaseException | _Fatal | None] | None = None
        self._running = False
        self._in_a_row = 0
        #: Clock readings the last step answered itself (see _step).
        self._clocks = 0
        #: The timer of the sleep the flow waits for, if it does.
        self._timer: Cancellable | None = None
        #: Whether a cancelled result ends the flow's sleep at once (see _result_done).
        self._watching = False
        #: The task blocked until the flow ends, if it offers to read the answers
        #: to the requests the flow makes while it runs there (see read_answers);
        #: the request it may read next: its connection, its future, its deadline.
        self._caller: object | None = None
        self._target: tuple[_Channel, Future[Any], float] | None = None

    def resume(self, value: Any, error: BaseException | _Fatal | None) -> None:
        """Continue the flow with an effect's outcome (from any thread or greenlet)."""
        with self._lock:
            self._pending = (value, error)
            if self._running:
                return  # the loop below, up the stack or in another task, takes it
            self._running = True
        self._loop()

    def _loop(self) -> None:
        flow = self._flow
        result = self._result
        at_once = 0  # effects in a row that completed without waiting
        while True:
            with self._lock:
                item = self._pending
                if item is None:
                    self._running = False
                    return
                self._pending = None
            value, error = item
            while True:
                if result.cancelled():
                    flow.close()
                    return
                if isinstance(error, _Fatal):
                    flow.close()
                    result.set_exception(error.error)
                    return
                try:
                    core_lock = self._core_lock
                    if core_lock is None:
                        effect = self._step(flow, value, error)
                    else:
                        # Flows of one client share its core state: one steps at a time.
                        with core_lock:
                            effect = self._step(flow, value, error)
                except StopIteration as stop:
                    result.set_result(stop.value)
                    return
                except BaseException as exc:
                    result.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    return
                try:
                    value, error = self._perform(effect), None
                except RocketMQError as exc:
                    value, error = None, exc
                except BaseException as exc:
                    value, error = None, _Fatal(exc)
                if value is _ASYNC:
                    break
                at_once += 1 + self._clocks
                if at_once >= _TURN_AFTER:
                    # A flow that never waits must not keep every other task (under
                    # gevent: every greenlet, the hub's IO too) from running.
                    at_once = 0
                    self._runtime.give_turn()

    def _step(self, flow: Flow[T], value: Any, error: BaseException | None) -> driver.Effect:
        """Step the flow to its next effect that is not a reading of a clock: those
        are answered here, in the same hold of the core lock. (A consume worker reads
        the clocks around each handler call: each step taking the lock again let the
        connections' readers, stepping their pull flows, contend for it.) A reading
        that fails, or a flow cancelled meanwhile, is left to the loop, as before."""
        effect = flow.send(value) if error is None else flow.throw(error)
        runtime, result = self._runtime, self._result
        answered = 0
        while answered < _CLOCKS_IN_A_STEP:
            kind = type(effect)
            try:
                if kind is driver.Now:
                    reading: Any = runtime.monotonic()
                elif kind is driver.WallTime:
                    reading = int(time.time() * 1000)
                else:
                    break
            except Exception:  # _perform reads it again, and fails the flow
                break  # (an interrupt goes up, as one raised by the step would)
            if result.cancelled():
                break
            effect = flow.send(reading)
            answered += 1
        self._clocks = answered
        return effect

    def _perform(self, effect: driver.Effect) -> Any:
        """The effect's result if it is known now, else :data:`_ASYNC` (and resume later)."""
        # Most frequent first. (Fields are read as attributes: capturing them in the
        # patterns is slower.)
        match effect:
            case driver.Call():
                caller = self._caller
                if caller is not None and caller is self._runtime.current():
                    future, channel = self._client.caller_request(
                        effect.addr, effect.command, effect.timeout
                    )
                    if channel is not None:
                        deadline = self._runtime.monotonic() + effect.timeout
                        self._target = (channel, future, deadline)
                    return self._await(future)
                return self._await(
                    self._client.request_future(effect.addr, effect.command, effect.timeout)
                )
            case driver.Now():
                return self._runtime.monotonic()
            case driver.Oneway():
                return self._await(self._client.oneway_future(effect.addr, effect.command))
            case driver.Sleep():
                if effect.seconds <= 0:
                    return None
                self._timer = self._runtime.call_later(effect.seconds, self._woken)
                if not self._watching:
                    self._watching = True
                    self._result.add_done_callback(self._result_done)
                return _ASYNC
            case driver.WallTime():
                return int(time.time() * 1000)
            case driver.UserCall():
                return self._user_call(effect)
            case driver.Spawn():
                spawned = start_flow(
                    self._client,
                    self._runtime,
                    effect.flow,
                    core_lock=self._core_lock,
                    spawned=self._spawned,
                )
                if self._spawned is not None:  # the client cancels it when it closes
                    self._spawned.add(spawned)
                    spawned.add_done_callback(self._spawned.discard)
                spawned.add_done_callback(functools.partial(_spawn_done, effect.name))
                return None
            case driver.ReadFile():
                return read_file(effect.path)
            case driver.WriteFile():
                write_file(effect.path, effect.data)
                return None
            case driver.Offload():
                # Outside the core lock (see _loop): the client's other flows go on.
                if not effect.short and self._runtime.offload(
                    effect.fn, effect.args, self._offload_done
                ):
                    return _ASYNC
                return effect.fn(*effect.args)
            case driver.HttpGet():
                # Its own task (thread or greenlet): the flow may be running on the
                # timer or a connection's reader, which must not wait for a web server.
                self._runtime.spawn(self._http_get, effect)
                return _ASYNC
            case _:
                _not_an_effect(effect)

    def read_answers(self) -> None:
        """(The caller, blocked until the flow ends.) Read the answer to each request
        the flow makes in this task, on its connection, while that connection's
        reader is parked (:meth:`_Channel.read_for`): the flow then resumes here,
        not on the reader. Returns once the flow ended, or made a request this
        task cannot read (then the flow goes on elsewhere)."""
        result = self._result
        reading: _Channel | None = None  # the connection read last
        try:
            while not result.done():
                target, self._target = self._target, None
                if target is None:
                    return
                channel, future, deadline = target
                if reading is not channel:
                    if reading is not None:
                        reading.ensure_reader()
                    reading = channel
                if not channel.read_for(future, deadline):
                    return
        finally:
            self._caller = None
            if reading is not None:
                reading.ensure_reader()
            target, self._target = self._target, None
            if target is not None:
                target[0].ensure_reader()

    def _user_call(self, effect: driver.UserCall) -> Any:
        fn = _timed(effect.fn, self._runtime.monotonic) if effect.timed else effect.fn
        # Not in a caller reading a connection: the callable could wait for it.
        if self._in_a_row < _CALLS_IN_A_ROW and not self._client.reading_here():
            try:
                ran, value = self._runtime.run_user_here(fn, effect.args)
            except Exception as exc:
                error = _callback_error(effect.fn, exc)
                raise error from error.__cause__
            if ran:
                self._in_a_row += 1
                return value
        self._in_a_row = 0
        self._runtime.run_user(fn, effect.args, functools.partial(self._user_done, effect.fn))
        return _ASYNC

    def _http_get(self, effect: driver.HttpGet) -> None:
        try:
            answer = http_get(self._runtime, effect)
        except RocketMQError as exc:
            self.resume(None, exc)
        except BaseException as exc:
            self.resume(None, _Fatal(exc))
        else:
            self.resume(answer, None)

    def _offload_done(self, value: Any, error: BaseException | None) -> None:
        self.resume(value, None if error is None else _Fatal(error))

    def _await(self, future: Future[Any]) -> Any:
        if future.done():  # failed fast (backing off, closed): no callback needed
            return future.result()
        future.add_done_callback(self._future_done)
        return _ASYNC

    def _future_done(self, future: Future[Any]) -> None:
        try:
            value = future.result()
        except RocketMQError as exc:
            self.resume(None, exc)
        except BaseException as exc:
            self.resume(None, _Fatal(exc))
        else:
            self.resume(value, None)

    def _woken(self) -> None:
        self._timer = None
        self.resume(None, None)

    def _result_done(self, result: Future[T]) -> None:
        """A flow cancelled while it sleeps (a closing client's upkeep) ends now, not
        when its timer would have fired: the timer is cancelled, so nothing of the
        closed client stays armed in a timer it does not own (a gevent hub's)."""
        if not result.cancelled():
            return
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.resume(None, None)  # the loop sees the cancelled result and closes the flow

    def _user_done(self, fn: Any, value: Any, exc: BaseException | None) -> None:
        if exc is None:
            self.resume(value, None)
        elif isinstance(exc, Exception):
            self.resume(None, _callback_error(fn, exc))
        else:
            self.resume(None, _Fatal(exc))


def http_get(runtime: Runtime, effect: driver.HttpGet) -> bytes:
    """Perform :class:`HttpGet` with the runtime's socket (blocking this task only)."""
    answer = HttpAnswer(effect)
    deadline = runtime.monotonic() + effect.timeout
    try:
        sock = runtime.create_connection((effect.host, effect.port), effect.timeout)
        try:
            sock.settimeout(max(deadline - runtime.monotonic(), 0.001))
            sock.sendall(effect.request)
            while True:
                sock.settimeout(max(deadline - runtime.monotonic(), 0.001))
                chunk = sock.recv(65536)
                if not chunk:
                    return answer.value()
                answer.add(chunk)
        finally:
            sock.close()
    except RocketMQError:
        raise
    except OSError as exc:  # a TimeoutError too: the effect's timeout ran out
        answer.fail(exc)


class _TimedFailure(Exception):
    """What a timed callable raises: its own exception and the seconds it ran."""

    def __init__(self, error: Exception, elapsed: float) -> None:
        super().__init__(error)
        self.error = error
        self.elapsed = elapsed


def _timed(fn: Callable[..., Any], clock: Callable[[], float]) -> Callable[..., tuple[Any, float]]:
    """``fn`` answering ``(its value, the seconds it ran)`` (a timed :class:`UserCall`)."""

    def timed(*args: Any) -> tuple[Any, float]:
        began = clock()
        try:
            value = fn(*args)
        except Exception as exc:
            raise _TimedFailure(exc, clock() - began) from exc
        return value, clock() - began

    return timed


def _callback_error(fn: Callable[..., Any], exc: Exception) -> driver.UserCallbackError:
    """The flow's error for a user callable's exception (with the time it ran, if timed)."""
    if isinstance(exc, _TimedFailure):
        return user_callback_error(fn, exc.error, exc.elapsed)
    return user_callback_error(fn, exc)


def _not_an_effect(effect: Never) -> NoReturn:
    """Raise for what a flow yielded that is no effect. Typed ``Never``: mypy reports
    a member of :data:`Effect` that :meth:`_FlowRunner._perform` has no case for."""
    raise TypeError(f"not an effect: {effect!r}")


def _spawn_done(name: str, future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.error("flow %s failed", name, exc_info=future.exception(), extra=log_fields(task=name))


def start_flow(
    client: RemotingClient,
    runtime: Runtime,
    flow: Flow[T],
    *,
    core_lock: LockLike | None = None,
    spawned: set[Future[Any]] | None = None,
) -> Future[T]:
    """Start driving ``flow``; the future gets its return value (or exception).

    Runs the flow in this thread up to its first effect that cannot complete at
    once, then returns. A :class:`RocketMQError` of an effect is thrown into the
    flow (an exception of a user's callable as :class:`UserCallbackError`, with
    the original as ``__cause__``); anything else ends the flow and fails the
    future. Cancelling the future closes the flow at its next step, or at once
    if it sleeps (its timer is cancelled). The futures of the flows it (and they)
    spawn are kept in ``spawned`` while they run, if given.
    """
    result: Future[T] = Future(runtime)
    _FlowRunner(client, runtime, flow, result, core_lock, spawned).resume(None, None)
    return result


def run_flow(
    client: RemotingClient,
    runtime: Runtime,
    flow: Flow[T],
    *,
    core_lock: LockLike | None = None,
    spawned: set[Future[Any]] | None = None,
    running: set[Future[Any]] | None = None,
) -> T:
    """Drive ``flow`` to its end and return its value: :func:`start_flow`, then wait.
    Where the runtime lets callers read (:attr:`Runtime.callers_read`), this task
    reads the answers to the requests the flow makes while it runs here. The
    flow's future is in ``running`` (if given) until it ends."""
    result: Future[T] = Future(runtime)
    if running is not None:
        running.add(result)
        result.add_done_callback(running.discard)
    runner = _FlowRunner(client, runtime, flow, result, core_lock, spawned)
    if runtime.callers_read:
        runner._caller = runtime.current()
        runner.resume(None, None)
        runner.read_answers()
    else:
        runner.resume(None, None)
    return result.result()
