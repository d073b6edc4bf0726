"""The command line's consume benchmark counts messages delivered again (no broker)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rocketmq_cli._stream import Seen


def test_each_message_delivered_again_is_counted_once_per_extra_delivery() -> None:
    seen = Seen()
    for offset in (0, 2, 1, 3):  # out of order, as concurrent handlers see them
        seen.add("broker-a", 0, offset)
    seen.add("broker-b", 0, 0)  # the same queue id on another broker: another queue
    assert seen.again == 0
    seen.add("broker-a", 0, 1)  # below the offset every one was seen under
    seen.add("broker-a", 0, 3)
    seen.add("broker-b", 0, 0)
    assert seen.again == 3


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 3), st.integers(0, 40))))
def test_redeliveries_are_deliveries_less_distinct_messages(
    deliveries: list[tuple[str, int, int]],
) -> None:
    seen = Seen()
    for broker, queue_id, offset in deliveries:
        seen.add(broker, queue_id, offset)
    assert seen.again == len(deliveries) - len(set(deliveries))
