"""The command line's consume benchmark counts messages delivered again (no broker)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from rocketmq_cli._stream import Seen
from rocketmq_proto import MessageExt


def delivery(broker: str, queue_id: int, offset: int, retried: bool = False) -> MessageExt:
    props = {"RETRY_TOPIC": "T"} if retried else {}
    return MessageExt(
        "T", b"x", broker_name=broker, queue_id=queue_id, queue_offset=offset, properties=props
    )


def test_each_message_delivered_again_is_counted_once_per_extra_delivery() -> None:
    seen = Seen()
    for offset in (0, 2, 1, 3):  # out of order, as concurrent handlers see them
        seen.add(delivery("broker-a", 0, offset))
    seen.add(delivery("broker-b", 0, 0))  # the same queue id on another broker: another queue
    seen.add(delivery("broker-a", 0, 0, retried=True))  # the retry topic's queue 0
    assert seen.again == 0
    seen.add(delivery("broker-a", 0, 1))
    seen.add(delivery("broker-a", 0, 3))
    seen.add(delivery("broker-b", 0, 0))
    seen.add(delivery("broker-a", 0, 0, retried=True))
    assert seen.again == 4


def test_a_gap_that_never_fills_costs_one_range_not_an_entry_per_offset() -> None:
    seen = Seen()
    for offset in [*range(500), *range(800, 100_800)]:
        seen.add(delivery("broker-a", 0, offset))
    assert seen.ranges() == 2 and seen.again == 0


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 3), st.integers(0, 40))))
def test_redeliveries_are_deliveries_less_distinct_messages(
    deliveries: list[tuple[str, int, int]],
) -> None:
    seen = Seen()
    for broker, queue_id, offset in deliveries:
        seen.add(delivery(broker, queue_id, offset))
    assert seen.again == len(deliveries) - len(set(deliveries))
    # The ranges are disjoint, sorted and not touching (each gap is a real one).
    for ranges in seen._queues.values():
        assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))
