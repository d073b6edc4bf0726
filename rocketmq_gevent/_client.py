"""The blocking client classes bound to gevent: greenlets, gevent sockets and locks."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rocketmq_sync import _client as blocking
from rocketmq_sync._runtime import Runtime

from ._runtime import GeventRuntime


class Producer(blocking.Producer):
    __doc__ = blocking.Producer.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime


class TransactionProducer(blocking.TransactionProducer):
    __doc__ = blocking.TransactionProducer.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime


class Admin(blocking.Admin):
    __doc__ = blocking.Admin.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime


class PushConsumer(blocking.PushConsumer):
    __doc__ = blocking.PushConsumer.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime


class PullConsumer(blocking.PullConsumer):
    __doc__ = blocking.PullConsumer.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime


class SimpleConsumer(blocking.SimpleConsumer):
    __doc__ = blocking.SimpleConsumer.__doc__
    runtime_factory: ClassVar[Callable[[], Runtime]] = GeventRuntime
