"""Namespaces: ``ns%name`` prefixes that let tenants share a cluster.

A client with a namespace wraps every topic and group it sends to the servers
and unwraps names it shows to the user, as Java's ``NamespaceUtil`` does.
"""

from __future__ import annotations

RETRY_PREFIX = "%RETRY%"
DLQ_PREFIX = "%DLQ%"
NAMESPACE_SEPARATOR = "%"

_SYSTEM_TOPICS = frozenset(
    {
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "BenchmarkTest",
        "RMQ_SYS_TRANS_HALF_TOPIC",
        "RMQ_SYS_TRACE_TOPIC",
        "RMQ_SYS_TRANS_OP_HALF_TOPIC",
        "TRANS_CHECK_MAX_TIME_TOPIC",
        "SELF_TEST_TOPIC",
        "OFFSET_MOVED_EVENT",
        "rmq_sys_REVIVE_LOG",
        "rmq_sys_wheel_timer",
    }
)


def is_system_topic(name: str) -> bool:
    return name in _SYSTEM_TOPICS or name.endswith("_REPLY_TOPIC") or name.startswith("rmq_sys_")


def _split_prefix(name: str) -> tuple[str, str]:
    for prefix in (RETRY_PREFIX, DLQ_PREFIX):
        if name.startswith(prefix):
            return prefix, name[len(prefix) :]
    return "", name


def wrap(namespace: str | None, name: str) -> str:
    """``name`` inside ``namespace`` (retry/DLQ prefixes stay in front)."""
    if not namespace or is_system_topic(name):
        return name
    prefix, bare = _split_prefix(name)
    if bare.startswith(namespace + NAMESPACE_SEPARATOR):
        return name
    return f"{prefix}{namespace}{NAMESPACE_SEPARATOR}{bare}"


def unwrap(namespace: str | None, name: str) -> str:
    """``name`` as the user knows it, without ``namespace``."""
    if not namespace:
        return name
    prefix, bare = _split_prefix(name)
    head = namespace + NAMESPACE_SEPARATOR
    if bare.startswith(head):
        return prefix + bare[len(head) :]
    return name


def retry_topic(group: str) -> str:
    return RETRY_PREFIX + group


def dlq_topic(group: str) -> str:
    return DLQ_PREFIX + group
