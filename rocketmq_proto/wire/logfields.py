"""The structured fields of the client's log records.

Every record the client logs carries, as attributes of the
:class:`logging.LogRecord` (the ``extra`` of the call), what it knows of the
matter: ``rocketmq_client`` (the client id), ``rocketmq_group``,
``rocketmq_topic``, ``rocketmq_broker`` (a broker's name), ``rocketmq_queue_id``,
``rocketmq_addr`` (the ``host:port`` talked to), ``rocketmq_msg_id`` or
``rocketmq_msg_ids``. A formatter or a JSON log handler picks them up, for
instance ``%(rocketmq_topic)s`` with a default, or every ``rocketmq_*`` attribute.
Fields not known at a record's place are left out, never set to ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rocketmq_proto.wire.route import MessageQueue

__all__ = ["FIELD_PREFIX", "log_fields"]

#: What every structured field's name starts with.
FIELD_PREFIX = "rocketmq_"


def log_fields(
    *,
    client: str | None = None,
    group: str | None = None,
    topic: str | None = None,
    queue: MessageQueue | None = None,
    broker: str | None = None,
    addr: str | None = None,
    msg_id: str | None = None,
    msg_ids: Sequence[str] | None = None,
    **other: Any,
) -> dict[str, Any]:
    """The ``extra`` of a log call: the given facts as ``rocketmq_*`` fields (a
    ``queue`` gives its topic, broker and queue id; ``other`` names more fields,
    prefixed the same)."""
    fields: dict[str, Any] = {}
    if queue is not None:
        fields["rocketmq_topic"] = queue.topic
        fields["rocketmq_broker"] = queue.broker_name
        fields["rocketmq_queue_id"] = queue.queue_id
    if client is not None:
        fields["rocketmq_client"] = client
    if group is not None:
        fields["rocketmq_group"] = group
    if topic is not None:
        fields["rocketmq_topic"] = topic
    if broker is not None:
        fields["rocketmq_broker"] = broker
    if addr is not None:
        fields["rocketmq_addr"] = addr
    if msg_id is not None:
        fields["rocketmq_msg_id"] = msg_id
    if msg_ids is not None:
        fields["rocketmq_msg_ids"] = list(msg_ids)
    for name, value in other.items():
        if value is not None:
            fields[FIELD_PREFIX + name] = value
    return fields
