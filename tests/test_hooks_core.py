"""Hooks in the core: which objects are hooks, a hook that raises, the send wrapper."""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import pytest

from rocketmq_proto import ConfigError, Hook, Message, RequestTimeoutError, SendContext
from rocketmq_proto.flows.effects import Effect, Now, WallTime
from rocketmq_proto.flows.hooks import Hooks, hooked_send


class Recorder(Hook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def before_send(self, ctx: SendContext) -> None:
        ctx.extra["mine"] = "noted"
        ctx.extra["at"] = ctx.timestamp_ms
        self.calls.append(("before_send", ctx.message.body))

    def after_send(self, ctx: SendContext) -> None:
        self.calls.append(("after_send", (ctx.result, ctx.error, ctx.elapsed, ctx.extra)))


WALL_MS = 1_765_000_000_000


def drive(flow: Generator[Effect, Any, Any], clock: list[float]) -> Any:
    """Run a flow whose only effects are Now, answered from ``clock`` in turn, and
    WallTime (the epoch ms :data:`WALL_MS`)."""
    value: Any = None
    try:
        while True:
            effect = flow.send(value)
            if isinstance(effect, WallTime):
                value = WALL_MS
                continue
            assert isinstance(effect, Now), effect
            value = clock.pop(0)
    except StopIteration as stop:
        return stop.value


def test_only_objects_with_a_hook_method_are_hooks() -> None:
    assert len(Hooks([Hook(), Recorder()])) == 2

    class OnlyAfterRequest:
        def after_request(self, ctx: object) -> None: ...

    assert len(Hooks([OnlyAfterRequest()])) == 1
    with pytest.raises(ConfigError, match="a hook needs at least one of the methods"):
        Hooks([object()])
    with pytest.raises(ConfigError, match="hooks must be a list"):
        Hooks("before_send")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hooks must be a list"):
        Hooks(Hook())  # type: ignore[arg-type]
    hooks = Hooks()
    assert not hooks
    recorder = Recorder()
    hooks.add(recorder)
    assert hooks and len(hooks) == 1
    hooks.remove(recorder)
    hooks.remove(recorder)  # not there: ignored
    assert not hooks


def test_a_raising_hook_is_logged_and_the_next_still_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Hook):
        def before_send(self, ctx: SendContext) -> None:
            raise RuntimeError("hook bug")

    recorder = Recorder()
    hooks = Hooks([Broken(), recorder])
    ctx = SendContext("g", [Message("T", b"x")])
    with caplog.at_level(logging.WARNING, logger="rocketmq_proto.hooks"):
        hooks.fire("before_send", ctx)
    assert recorder.calls == [("before_send", b"x")]
    [record] = caplog.records
    assert "raised in before_send" in record.getMessage() and "hook bug" in record.getMessage()
    assert record.exc_info is not None and record.rocketmq_hook == "before_send"  # type: ignore[attr-defined]


def test_a_send_between_its_hooks_with_its_result_or_error_and_time() -> None:
    recorder = Recorder()
    hooks = Hooks([recorder])

    def sending() -> Generator[Effect, Any, str]:
        yield Now()
        return "the result"

    flow = hooked_send(hooks, "g", [Message("T", b"one")], False, sending())
    assert drive(flow, [10.0, 10.5, 12.0]) == "the result"
    assert recorder.calls == [
        ("before_send", b"one"),
        ("after_send", ("the result", None, 2.0, {"mine": "noted", "at": WALL_MS})),
    ]

    recorder.calls.clear()

    def failing() -> Generator[Effect, Any, str]:
        yield Now()
        raise RequestTimeoutError("no answer")

    flow = hooked_send(hooks, "g", [Message("T", b"two")], False, failing())
    with pytest.raises(RequestTimeoutError, match="no answer"):
        drive(flow, [1.0, 1.25, 1.5])
    (_, (result, error, elapsed, _extra)) = recorder.calls[1]
    assert result is None and isinstance(error, RequestTimeoutError) and elapsed == 0.5
