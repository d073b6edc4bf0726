"""What the client classes need from a blocking runtime (threads, or gevent), under
the names ``rocketmq_asyncio._shell`` gives asyncio's: this driver's
``_client.py`` is generated from the asyncio one (``scripts/unasync.py``), and
everything that differs between the drivers lives in the two ``_shell`` modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from rocketmq_proto import Message, MessageExt, TransactionState
from rocketmq_proto.driver import Flow, MessageHandler, TransportSettings

# ``X as X``: names the client classes take from here (explicit re-exports).
from ._future import CancelledError
from ._future import Future as Future
from ._interpreter import run_flow, start_flow
from ._runtime import EventLike, ThreadRuntime
from ._runtime import Runtime as Runtime
from ._transport import RemotingClient, RequestHandler

T = TypeVar("T")

LocalTransaction = Callable[[Message, Any], "TransactionState | bool | None"]
TransactionChecker = Callable[[MessageExt], "TransactionState | bool | None"]

monotonic = time.monotonic


#: The runtime a client makes for itself (``rocketmq_gevent`` binds its own).
DefaultRuntime = ThreadRuntime


def bounded_handler(
    runtime: Runtime, handler: MessageHandler, closed: Callable[[], bool]
) -> MessageHandler:
    """The handler as it is: the runtime's worker pool bounds how many run."""
    return handler


class Engine:
    """Runs one client's core flows on its connections and its runtime."""

    def __init__(
        self, transport: TransportSettings, request_handler: RequestHandler, runtime: Runtime
    ) -> None:
        self.remoting = RemotingClient(runtime, transport, request_handler=request_handler)
        self._runtime = runtime
        self._core_lock = runtime.core_lock
        #: The futures of the flows this client's flows spawned, while they run.
        self.spawned: set[Future[Any]] = set()

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its end; its value."""
        return run_flow(
            self.remoting, self._runtime, flow, core_lock=self._core_lock, spawned=self.spawned
        )

    def run_send(self, flow: Flow[T], sends: set[Any]) -> T:
        """A send the caller waits for, counted in ``sends`` meanwhile: ``flush``
        in another thread waits for it too."""
        return run_flow(
            self.remoting,
            self._runtime,
            flow,
            core_lock=self._core_lock,
            spawned=self.spawned,
            running=sends,
        )

    def start(self, flow: Flow[T], name: str | None = None) -> Future[T]:
        """Start ``flow``; a future of its value."""
        return start_flow(
            self.remoting, self._runtime, flow, core_lock=self._core_lock, spawned=self.spawned
        )

    def close(self) -> None:
        # The spawned flows that still run end now (a sleeping one at once: no
        # timer of the closed client stays armed), then the connections close.
        for future in list(self.spawned):
            future.cancel()
        self.spawned.clear()
        self.remoting.close()


def cancel_and_wait(future: Future[Any]) -> None:
    """Cancel ``future``: its flow is closed at its next step."""
    future.cancel()


def wait_all(pending: set[Future[Any]], timeout: float | None) -> int:
    """Wait up to ``timeout`` seconds for every one of ``pending`` to end; how
    many have not."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for future in pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            future.exception(remaining)
        except TimeoutError:
            return sum(1 for f in pending if not f.done())
        except CancelledError:
            pass
    return 0


def new_signal(runtime: Runtime) -> EventLike:
    """What wakes a waiter when something arrived (set from any thread)."""
    return runtime.Event()


def wait_signal(signal: EventLike, timeout: float) -> None:
    """Until ``signal`` is set, or ``timeout`` seconds (waking at least every 0.5 s)."""
    signal.wait(min(timeout, 0.5))


def new_waiter(runtime: Runtime) -> Future[Any]:
    """A future a reply is delivered to, from any thread."""
    return Future(runtime)


def wait_waiter(waiter: Future[T], timeout: float) -> T:
    """The waiter's value; the builtin :class:`TimeoutError` after ``timeout`` s."""
    return waiter.result(timeout)


def deliver(waiter: Future[T], value: T) -> None:
    """Give ``waiter`` its value unless it has one (safe from any thread)."""
    if not waiter.done():
        waiter.set_result(value)
