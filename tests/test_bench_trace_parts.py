"""The variants of ``benchmarks/trace_parts.py``: each leaves out the part of the
tracer it names, and nothing else, and is undone."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import trace_parts

from rocketmq_proto.flows import trace
from rocketmq_proto.flows.producer import ProducerConfig
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.trace import ConsumeReturnType


def _told(calls: int) -> trace.Tracer:
    """A tracer told ``calls`` handler calls of one message each."""
    ids = UniqueIdGenerator(b"\x7f\x00\x00\x01", 1, 2)
    # Nothing is sent (the tests take the trace messages): the producer as the
    # client's trace producer is made, as far as the variants look at it.
    producer: Any = SimpleNamespace(
        short_compression=True,
        config=ProducerConfig(group="_INNER_TRACE_PRODUCER-g-CONSUME", compress_level=1),
    )
    tracer = trace.Tracer("RMQ_SYS_TRACE_TOPIC", producer, ids)
    for i in range(calls):
        msg = MessageExt("T", b"x", properties={"UNIQ_KEY": ids.next_id(1_000)}, queue_offset=i)
        tracer.consumed("g", (msg,), 1_000, 0.001, ConsumeReturnType.SUCCESS)
    return tracer


def test_as_shipped_the_records_are_written_and_taken() -> None:
    tracer = _told(40)
    batch = tracer.take(0.0, flush=True)
    assert batch is not None and batch.records == 80
    assert tracer.stats()["recorded"] == 80


def test_told_writes_no_record_and_counts_none() -> None:
    undo = trace_parts.apply("told")
    try:
        tracer = _told(40)
        assert tracer.take(0.0, flush=True) is None
        assert tracer.stats() == {
            "recorded": 0, "sent": 0, "buffered": 0, "dropped": 0, "failed": 0,
        }  # fmt: skip
    finally:
        undo()
    assert _told(40).take(0.0, flush=True) is not None


def test_written_takes_the_records_as_sent_and_sends_nothing() -> None:
    undo = trace_parts.apply("written")
    try:
        tracer = _told(40)
        assert tracer.take(0.0, flush=True) is None
        assert tracer.stats()["sent"] == 80
        assert tracer.buffered == 0
    finally:
        undo()
    assert _told(40).take(0.0, flush=True) is not None


def test_offloaded_compresses_the_trace_messages_off_the_io_thread() -> None:
    shipped_init = trace.Tracer.__init__
    undo = trace_parts.apply("offloaded")
    try:
        assert _told(1).producer.short_compression is False
    finally:
        undo()
    assert trace.Tracer.__init__ is shipped_init
    assert _told(1).producer.short_compression is True


def test_uncompressed_sends_the_trace_messages_as_written() -> None:
    shipped_init = trace.Tracer.__init__
    undo = trace_parts.apply("uncompressed")
    try:
        producer = _told(1).producer
        assert producer.config.compress_msg_body_over_howmuch == sys.maxsize
    finally:
        undo()
    assert trace.Tracer.__init__ is shipped_init


def test_off_and_on_change_nothing() -> None:
    for variant in ("off", "on"):
        trace_parts.apply(variant)()
        tracer = _told(3)
        batch = tracer.take(0.0, flush=True)
        assert batch is not None and batch.records == 6


def test_an_unknown_variant_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'sent'"):
        trace_parts.apply("sent")


def test_rounds_alternate_the_variants_order() -> None:
    assert list(trace_parts.alternating(["a", "b", "c"], 3)) == [
        (0, 0, "a"), (0, 1, "b"), (0, 2, "c"),
        (1, 0, "c"), (1, 1, "b"), (1, 2, "a"),
        (2, 0, "a"), (2, 1, "b"), (2, 2, "c"),
    ]  # fmt: skip


def test_a_worker_runs_at_the_switch_interval_it_is_given() -> None:
    default = sys.getswitchinterval()
    try:
        rest = trace_parts.set_switch_interval(["--switch-interval", "0.02", "--worker", "sync"])
        assert rest == ["--worker", "sync"]
        assert sys.getswitchinterval() == pytest.approx(0.02)
    finally:
        sys.setswitchinterval(default)
    assert trace_parts.set_switch_interval(["--worker", "sync"]) == ["--worker", "sync"]
    assert sys.getswitchinterval() == default
