"""Messages pulled from one queue and not yet consumed (Java's ``ProcessQueue``).

The pull loop puts what it pulls; consumption removes what it finished. The
offset a consumer may commit is the smallest offset still held (everything
below it is done), or one past the largest offset pulled once nothing is held:
committing any further could skip a message that is still being consumed.

Orderly consumption takes messages in offset order into a "consuming" set
(:meth:`ProcessQueue.take_messages`), then commits them or puts them back.

Times are whatever clock the driver passes as ``now`` (the monotonic seconds of
the ``Now`` effect). Not thread-safe: a driver that shares one between threads
guards it with a lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import Final

from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.message.properties import MessageConst
from rocketmq_proto.wire.bodies import ProcessQueueInfo

__all__ = [
    "PULL_MAX_IDLE_TIME",
    "REBALANCE_LOCK_INTERVAL",
    "REBALANCE_LOCK_MAX_LIVE_TIME",
    "ProcessQueue",
]

#: How long the client trusts a broker lock of an orderly queue (the broker holds it 60 s).
REBALANCE_LOCK_MAX_LIVE_TIME: Final = 30.0
#: How often an orderly consumer renews its locks.
REBALANCE_LOCK_INTERVAL: Final = 20.0
#: A push consumer's queue not pulled for this long is re-created by the next rebalance.
PULL_MAX_IDLE_TIME: Final = 120.0

_CONSUME_START: Final = MessageConst.PROPERTY_CONSUME_START_TIMESTAMP
_MAX_OFFSET: Final = MessageConst.PROPERTY_MAX_OFFSET


class ProcessQueue:
    """The pulled, unconsumed messages of one queue, by queue offset."""

    __slots__ = (
        "_consuming",
        "_msgs",
        "_offsets",
        "_size",
        "consuming",
        "dropped",
        "last_consume_time",
        "last_lock_time",
        "last_pull_time",
        "locked",
        "msg_acc_cnt",
        "queue_offset_max",
        "try_unlock_times",
    )

    def __init__(self, now: float) -> None:
        self._msgs: dict[int, MessageExt] = {}
        self._offsets: list[int] = []  # the keys of _msgs, ascending
        self._consuming: dict[int, MessageExt] = {}  # orderly: taken, not committed
        self._size = 0
        #: The largest offset ever put (Java's ``queueOffsetMax``).
        self.queue_offset_max = 0
        #: Set when the queue is no longer this consumer's: stop pulling and consuming.
        self.dropped = False
        #: Orderly: whether the broker lock is held (see :meth:`is_lock_expired`).
        self.locked = False
        #: Orderly: whether a consume task is running for this queue.
        self.consuming = False
        self.last_pull_time = now
        self.last_consume_time = now
        self.last_lock_time = now
        self.try_unlock_times = 0
        #: Messages the broker still holds beyond the last pulled one (from MAX_OFFSET).
        self.msg_acc_cnt = 0

    # ----------------------------------------------------------------- state

    @property
    def msg_count(self) -> int:
        """Messages held, those being consumed orderly included."""
        return len(self._msgs) + len(self._consuming)

    @property
    def msg_size(self) -> int:
        """Body bytes of the messages held."""
        return self._size

    @property
    def max_span(self) -> int:
        """Largest minus smallest offset waiting to be consumed (0 when none waits)."""
        offsets = self._offsets
        return offsets[-1] - offsets[0] if offsets else 0

    @property
    def min_offset(self) -> int | None:
        return self._offsets[0] if self._offsets else None

    @property
    def max_offset(self) -> int | None:
        return self._offsets[-1] if self._offsets else None

    def has_temp_message(self) -> bool:
        """Whether messages wait to be consumed (Java's ``hasTempMessage``)."""
        return bool(self._offsets)

    def contains(self, msg: MessageExt) -> bool:
        """Whether the message (by its offset) still waits to be consumed."""
        return msg.queue_offset in self._msgs

    def messages(self) -> list[MessageExt]:
        """The messages waiting, in offset order (a new list)."""
        return [self._msgs[o] for o in self._offsets]

    def is_pull_expired(self, now: float) -> bool:
        return now - self.last_pull_time > PULL_MAX_IDLE_TIME

    def is_lock_expired(self, now: float) -> bool:
        return now - self.last_lock_time > REBALANCE_LOCK_MAX_LIVE_TIME

    def set_locked(self, locked: bool, now: float | None = None) -> None:
        """Record a lock answer; ``now`` (when locked) starts the 30 s of trust."""
        self.locked = locked
        if locked and now is not None:
            self.last_lock_time = now

    # -------------------------------------------------------------- changes

    def put(self, msgs: Iterable[MessageExt]) -> bool:
        """Hold pulled messages; whether a consume task should be dispatched.

        A message whose offset is already held is ignored (kept as it was). The
        answer is ``True`` once, when messages wait and no consume task runs;
        orderly consumption uses it, concurrent consumption dispatches anyway.
        """
        held = self._msgs
        offsets = self._offsets
        consuming = self._consuming
        last: MessageExt | None = None
        for msg in msgs:
            last = msg
            offset = msg.queue_offset
            if offset in held or offset in consuming:
                continue
            held[offset] = msg
            if not offsets or offset > offsets[-1]:
                offsets.append(offset)
            else:
                bisect.insort(offsets, offset)
            self._size += len(msg.body)
            if offset > self.queue_offset_max:
                self.queue_offset_max = offset
        dispatch = False
        if offsets and not self.consuming:
            dispatch = True
            self.consuming = True
        if last is not None:
            max_offset = last.properties.get(_MAX_OFFSET)
            if max_offset is not None:
                try:
                    acc = int(max_offset) - last.queue_offset
                except ValueError:
                    acc = 0
                if acc > 0:
                    self.msg_acc_cnt = acc
        return dispatch

    def _discard(self, offset: int) -> MessageExt | None:
        msg = self._msgs.pop(offset, None)
        if msg is not None:
            offsets = self._offsets
            del offsets[bisect.bisect_left(offsets, offset)]
            self._size -= len(msg.body)
        return msg

    def remove(self, msgs: Iterable[MessageExt], now: float | None = None) -> int:
        """Forget consumed messages; the offset to commit, or -1 if nothing was held.

        As Java's ``removeMessage``: the smallest offset still held, or
        :attr:`queue_offset_max` + 1 when the queue is now empty.
        """
        if now is not None:
            self.last_consume_time = now
        if not self._msgs:
            return -1
        for msg in msgs:
            self._discard(msg.queue_offset)
        offsets = self._offsets
        return offsets[0] if offsets else self.queue_offset_max + 1

    # ---------------------------------------------------------------- orderly

    def take_messages(self, batch_size: int, now: float | None = None) -> list[MessageExt]:
        """Orderly: the next ``batch_size`` messages by offset, moved to the consuming set.

        An empty answer also ends the consume task (:attr:`consuming` is reset),
        so the next :meth:`put` dispatches again.
        """
        if now is not None:
            self.last_consume_time = now
        offsets = self._offsets
        taken = offsets[: max(batch_size, 0)]
        del offsets[: len(taken)]
        result = []
        for offset in taken:
            msg = self._msgs.pop(offset)
            self._consuming[offset] = msg
            result.append(msg)
        if not result:
            self.consuming = False
        return result

    def commit(self) -> int:
        """Orderly: the taken messages are done; the offset to commit (-1 if none was taken)."""
        consuming = self._consuming
        if not consuming:
            return -1
        offset = max(consuming)
        self._size -= sum(len(m.body) for m in consuming.values())
        consuming.clear()
        return offset + 1

    def rollback(self) -> None:
        """Orderly: put every taken message back, to be taken again."""
        taken = list(self._consuming.values())
        self._consuming.clear()
        for msg in taken:
            self._back(msg, counted=True)

    def make_messages_to_consume_again(self, msgs: Sequence[MessageExt]) -> None:
        """Orderly: put these taken messages back (Java's ``makeMessageToConsumeAgain``)."""
        for msg in msgs:
            taken = self._consuming.pop(msg.queue_offset, None)
            self._back(msg, counted=taken is not None)

    def _back(self, msg: MessageExt, *, counted: bool) -> None:
        # ``counted``: the message was taken, so its size is still in _size.
        offset = msg.queue_offset
        if offset in self._msgs:
            if counted:
                self._size -= len(msg.body)
            return
        self._msgs[offset] = msg
        bisect.insort(self._offsets, offset)
        if not counted:
            self._size += len(msg.body)
            if offset > self.queue_offset_max:
                self.queue_offset_max = offset

    def clear(self) -> None:
        """Forget every message (the queue was dropped or its offset reset)."""
        self._msgs.clear()
        self._offsets.clear()
        self._consuming.clear()
        self._size = 0
        self.queue_offset_max = 0

    # ----------------------------------------------------------- concurrently

    def expired_messages(
        self, now_ms: int, consume_timeout_ms: int, limit: int = 16
    ) -> list[MessageExt]:
        """Concurrent consumption: the leading messages whose consumption started
        (CONSUME_START_TIME) more than ``consume_timeout_ms`` ago, at most ``limit``.

        Java's ``cleanExpiredMsg`` sends each back with delay level 3 and removes
        it (see :func:`rocketmq_proto.flows.consumer.consume.clean_expired_flow`).
        """
        out = []
        for offset in self._offsets[: max(limit, 0)]:
            msg = self._msgs[offset]
            started = msg.properties.get(_CONSUME_START)
            if not started:
                break
            try:
                began = int(started)
            except ValueError:
                break
            if now_ms - began <= consume_timeout_ms:
                break
            out.append(msg)
        return out

    # ------------------------------------------------------------------ report

    def info(self, commit_offset: int, now: float, wall_ms: int) -> ProcessQueueInfo:
        """This queue in consumer running info; ``now``/``wall_ms`` convert its times
        (driver clock) to epoch milliseconds."""

        def wall(t: float) -> int:
            return wall_ms - int((now - t) * 1000)

        offsets = self._offsets
        consuming = self._consuming
        return ProcessQueueInfo(
            commit_offset=commit_offset,
            cached_msg_min_offset=offsets[0] if offsets else 0,
            cached_msg_max_offset=offsets[-1] if offsets else 0,
            cached_msg_count=len(offsets),
            cached_msg_size_in_mib=self._size // (1024 * 1024),
            transaction_msg_min_offset=min(consuming) if consuming else 0,
            transaction_msg_max_offset=max(consuming) if consuming else 0,
            transaction_msg_count=len(consuming),
            locked=self.locked,
            try_unlock_times=self.try_unlock_times,
            last_lock_timestamp=wall(self.last_lock_time),
            dropped=self.dropped,
            last_pull_timestamp=wall(self.last_pull_time),
            last_consume_timestamp=wall(self.last_consume_time),
        )

    def __repr__(self) -> str:
        return (
            f"ProcessQueue(count={self.msg_count}, size={self._size}, "
            f"min={self.min_offset}, max={self.max_offset}, dropped={self.dropped}, "
            f"locked={self.locked})"
        )
