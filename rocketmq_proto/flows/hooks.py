"""Hooks: a client's user code called before and after each send, each consume and
each remoting request (as Java's ``SendMessageHook``, ``ConsumeMessageHook`` and
``RPCHook``, in one object).

A hook is any object with some of the methods of :class:`Hook`; each gets a
context it may read, and annotate through ``ctx.extra`` (the same context goes to
the ``before_`` and the ``after_`` call). Hooks run where the client runs its own
code: in asyncio on the event loop, so they must not block. A hook that raises is
logged (logger ``rocketmq_proto.hooks``) and changes nothing: the send, the
consume or the request goes on as if it had returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from rocketmq_proto.flows.effects import Flow, now, wall_ms
from rocketmq_proto.wire.errors import ConfigError

if TYPE_CHECKING:
    from rocketmq_proto.flows.producer import SendResult
    from rocketmq_proto.message.model import Message, MessageExt
    from rocketmq_proto.wire.command import RemotingCommand

__all__ = [
    "HOOK_METHODS",
    "ConsumeContext",
    "EndTransactionContext",
    "Hook",
    "Hooks",
    "RequestContext",
    "SendContext",
    "hooked_send",
    "request_ended",
    "request_started",
]

log = logging.getLogger("rocketmq_proto.hooks")

T = TypeVar("T")


@dataclass(slots=True)
class SendContext:
    """One send (a batch is one send of several messages), as a hook sees it."""

    #: The producer group.
    group: str
    #: The messages sent: one, or a batch's.
    messages: list[Message]
    #: A oneway send has no result.
    oneway: bool = False
    #: Its result, once sent (``after_send``).
    result: SendResult | None = None
    #: Why it failed (``after_send``), else ``None``.
    error: BaseException | None = None
    #: Seconds from ``before_send`` to ``after_send``.
    elapsed: float = 0.0
    #: Wall-clock time of ``before_send``, in milliseconds since the epoch.
    timestamp_ms: int = 0
    #: A hook's own notes, from its ``before_send`` to its ``after_send``.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> Message:
        """The (first) message sent."""
        return self.messages[0]


@dataclass(slots=True)
class ConsumeContext:
    """One call of a consumer's handler, as a hook sees it."""

    #: The consumer group.
    group: str
    #: The messages handed to the handler.
    messages: list[MessageExt]
    #: What the handler's answer means (``after_consume``), a ``ConsumeResult``;
    #: ``None`` if it did not run (the consumer closed first).
    result: Any = None
    #: The exception the handler raised (``after_consume``), else ``None``.
    error: BaseException | None = None
    #: Seconds the handler took.
    elapsed: float = 0.0
    #: Wall-clock time of ``before_consume``, in milliseconds since the epoch.
    timestamp_ms: int = 0
    #: Seconds the messages waited in the client before the handler call (from
    #: their arrival; POP: from their pop), if known.
    await_time: float | None = None
    #: A hook's own notes, from its ``before_consume`` to its ``after_consume``.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """Whether the handler consumed the messages (it ran, did not raise, and did
        not ask for them again)."""
        return self.error is None and str(self.result) == "SUCCESS"


@dataclass(slots=True)
class EndTransactionContext:
    """A transaction's outcome as the producer told the broker (END_TRANSACTION),
    after its local transaction or when answering a check-back."""

    #: The producer group.
    group: str
    #: The half message (its topic, tags and keys; the broker's region in its
    #: ``MSG_REGION`` property when it came with a check-back).
    message: Message | MessageExt
    msg_id: str
    transaction_id: str | None
    #: ``COMMIT_MESSAGE``, ``ROLLBACK_MESSAGE`` or ``UNKNOW``, as Java names them.
    state: str
    #: The broker told.
    broker_addr: str
    #: Whether this answered a broker's check-back.
    from_check: bool
    #: Wall-clock time the outcome was sent, in milliseconds since the epoch.
    timestamp_ms: int = 0


@dataclass(slots=True)
class RequestContext:
    """One remoting request and its response, as a hook sees them."""

    #: Where it went: ``host:port`` of a name server, broker or proxy.
    addr: str
    request: RemotingCommand
    #: The response (``after_request``); ``None`` for a oneway request or a failure.
    response: RemotingCommand | None = None
    #: Why it failed (a timeout, a closed connection), else ``None``.
    error: BaseException | None = None
    #: Seconds from ``before_request`` to ``after_request``.
    elapsed: float = 0.0
    #: A hook's own notes, from its ``before_request`` to its ``after_request``.
    extra: dict[str, Any] = field(default_factory=dict)


class Hook:
    """A hook's methods, all optional (this base class does nothing: subclass it
    and override what you need, or give any object with some of these names)."""

    def before_send(self, ctx: SendContext) -> None:
        """Before a send's first attempt (route lookup and retries follow)."""

    def after_send(self, ctx: SendContext) -> None:
        """Once the send succeeded (``ctx.result``) or failed (``ctx.error``)."""

    def before_consume(self, ctx: ConsumeContext) -> None:
        """Before the handler gets ``ctx.messages``."""

    def after_consume(self, ctx: ConsumeContext) -> None:
        """Once the handler returned (``ctx.result``) or raised (``ctx.error``)."""

    def before_request(self, ctx: RequestContext) -> None:
        """Before a request goes out (``ctx.request`` may still be changed: fields
        added to ``ext_fields`` are sent)."""

    def after_request(self, ctx: RequestContext) -> None:
        """Once the response came (``ctx.response``), or the request failed."""

    def after_end_transaction(self, ctx: EndTransactionContext) -> None:
        """Once a transaction's outcome was sent to the broker."""


#: The method names a hook may have.
HOOK_METHODS = (
    "before_send",
    "after_send",
    "before_consume",
    "after_consume",
    "before_request",
    "after_request",
    "after_end_transaction",
)


def _check_hook(hook: object) -> object:
    if not any(callable(getattr(hook, name, None)) for name in HOOK_METHODS):
        raise ConfigError(
            f"a hook needs at least one of the methods {', '.join(HOOK_METHODS)}; {hook!r} has none"
        )
    return hook


class Hooks:
    """A client's hooks, called in the order they were added, each guarded."""

    __slots__ = ("_hooks", "_methods", "requests")

    def __init__(self, hooks: Iterable[object] | None = None) -> None:
        if hooks is not None and (isinstance(hooks, str | bytes) or not _iterable(hooks)):
            raise ConfigError(f"hooks must be a list of hook objects, got {hooks!r}")
        self._hooks: tuple[object, ...] = tuple(_check_hook(h) for h in hooks or ())
        self._methods: dict[str, tuple[tuple[object, Any], ...]] = {}
        #: Whether some hook watches remoting requests (transports skip the
        #: bookkeeping otherwise).
        self.requests = False
        self._index()

    def _index(self) -> None:
        self._methods = {
            name: tuple(
                (hook, method)
                for hook in self._hooks
                if callable(method := getattr(hook, name, None))
            )
            for name in HOOK_METHODS
        }
        self.requests = bool(self._methods["before_request"] or self._methods["after_request"])

    def add(self, hook: object) -> None:
        """Call ``hook`` too, from the next send, consume or request on."""
        self._hooks = (*self._hooks, _check_hook(hook))
        self._index()

    def remove(self, hook: object) -> None:
        """Stop calling ``hook`` (a hook never added is ignored)."""
        self._hooks = tuple(h for h in self._hooks if h is not hook)
        self._index()

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def fire(self, name: str, ctx: object) -> None:
        """Call each hook's ``name`` method with ``ctx``; log and go on past one
        that raises."""
        for hook, method in self._methods.get(name, ()):
            try:
                method(ctx)
            except Exception as exc:
                log.warning(
                    "hook %r raised in %s (ignored): %r",
                    hook,
                    name,
                    exc,
                    exc_info=exc,
                    extra={"rocketmq_hook": name},
                )


def _iterable(value: object) -> bool:
    try:
        iter(value)  # type: ignore[call-overload]
    except TypeError:
        return False
    return True


def hooked_send(
    hooks: Hooks, group: str, messages: list[Message], oneway: bool, flow: Flow[T]
) -> Flow[T]:
    """``flow`` (a send) between ``before_send`` and ``after_send``."""
    ctx = SendContext(group, messages, oneway)
    ctx.timestamp_ms = yield from wall_ms()
    hooks.fire("before_send", ctx)
    start = yield from now()
    try:
        result = yield from flow
    except Exception as exc:
        ctx.error = exc
        ctx.elapsed = (yield from now()) - start
        hooks.fire("after_send", ctx)
        raise
    ctx.result = result  # type: ignore[assignment]  # a SendResult, or None (oneway)
    ctx.elapsed = (yield from now()) - start
    hooks.fire("after_send", ctx)
    return result


def request_started(hooks: Hooks, addr: str, command: RemotingCommand) -> RequestContext:
    """A transport's part, before a request goes out: ``before_request``."""
    ctx = RequestContext(addr, command)
    hooks.fire("before_request", ctx)
    return ctx


def request_ended(
    hooks: Hooks,
    ctx: RequestContext,
    elapsed: float,
    response: RemotingCommand | None = None,
    error: BaseException | None = None,
) -> None:
    """A transport's part, once a request is answered or failed: ``after_request``."""
    ctx.response, ctx.error, ctx.elapsed = response, error, elapsed
    hooks.fire("after_request", ctx)
