"""A scripted interpreter for core flows: effects answered by test code, no IO."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rocketmq_proto.flows.effects import (
    Call,
    Flow,
    Now,
    Offload,
    Oneway,
    Sleep,
    Spawn,
    UserCall,
    WallTime,
)
from rocketmq_proto.wire.command import RemotingCommand
from rocketmq_proto.wire.errors import RocketMQError, UserCallbackError

T = TypeVar("T")


@dataclass
class Sim:
    """Answers effects: ``on_call(addr, command) -> response`` (or raises RocketMQError)."""

    on_call: Callable[[str, RemotingCommand], RemotingCommand]
    now: float = 100.0
    wall_ms: int = 1_700_000_000_000
    call_cost: float = 0.001
    #: The seconds a timed user call is said to take.
    user_call_cost: float = 0.002
    calls: list[tuple[str, RemotingCommand]] = field(default_factory=list)
    oneways: list[tuple[str, RemotingCommand]] = field(default_factory=list)
    #: Flows spawned (name, flow), not run: a test runs those it wants with :meth:`run`.
    spawned: list[tuple[str, Flow[Any]]] = field(default_factory=list)
    #: The functions offloaded (run here, at once).
    offloaded: list[Callable[..., Any]] = field(default_factory=list)
    #: The functions of the ``short`` Offload effects (run here, at once).
    ran_short: list[Callable[..., Any]] = field(default_factory=list)

    def run(self, flow: Flow[T]) -> T:
        result: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = flow.throw(error) if error is not None else flow.send(result)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = self.perform(effect)
            except RocketMQError as exc:
                error = exc

    def perform(self, effect: Any) -> Any:
        if isinstance(effect, Call):
            self.calls.append((effect.addr, effect.command))
            self.now += self.call_cost
            return self.on_call(effect.addr, effect.command)
        if isinstance(effect, Oneway):
            self.oneways.append((effect.addr, effect.command))
            return None
        if isinstance(effect, Spawn):
            self.spawned.append((effect.name, effect.flow))
            return None
        if isinstance(effect, Sleep):
            self.now += effect.seconds
            return None
        if isinstance(effect, Now):
            return self.now
        if isinstance(effect, WallTime):
            return self.wall_ms
        if isinstance(effect, UserCall):
            try:
                value = effect.fn(*effect.args)
            except Exception as exc:
                error = UserCallbackError(str(exc))
                if effect.timed:
                    error.elapsed = self.user_call_cost
                raise error from exc
            return (value, self.user_call_cost) if effect.timed else value
        if isinstance(effect, Offload):
            (self.ran_short if effect.short else self.offloaded).append(effect.fn)
            return effect.fn(*effect.args)
        raise AssertionError(f"unknown effect {effect!r}")
