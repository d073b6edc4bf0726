"""Messages the real-broker suites send and compare with what the brokers stored."""

from __future__ import annotations

import uuid

from rocketmq_proto import Message, MessageExt


def _unique_key() -> str:
    return f"k_{uuid.uuid4().hex[:12]}"


def assert_same(stored: MessageExt, sent: Message) -> None:
    assert stored.body == sent.body
    assert stored.tags == sent.tags
    assert stored.keys == sent.keys
    for key, value in sent.properties.items():
        assert stored.properties.get(key) == value, key


def sample(topic: str, i: int) -> Message:
    return Message(
        topic,
        b"\x00\xffbody-%d-" % i + bytes(range(i % 7)),
        tags=f"Tag{i % 3}",
        keys=[f"key-{i}", _unique_key()],
        properties={"color": "blüe", "n": str(i), "emoji": "🚀"},
    )
