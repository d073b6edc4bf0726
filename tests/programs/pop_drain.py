"""One member of a POP-mode consumer group, for the multi-process drain test.

    python pop_drain.py NAMESRV TOPIC GROUP OUT_FILE IDLE_SECONDS DEADLINE_SECONDS

Runs a ``rocketmq_sync`` PushConsumer with ``consume_mode="pop"`` and writes the
body of every message it handles to OUT_FILE, one per line. Ends once it has
handled something and then nothing more for IDLE_SECONDS, or after
DEADLINE_SECONDS in all.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import rocketmq_sync  # noqa: E402


def main() -> int:
    namesrv, topic, group, out, idle, limit = sys.argv[1:7]
    lock = threading.Lock()
    last = [0.0]
    handled = [0]
    with open(out, "w", encoding="utf-8") as sink:

        def handle(messages: list[Any]) -> None:
            with lock:
                for message in messages:
                    sink.write(message.body.decode() + "\n")
                handled[0] += len(messages)
                last[0] = time.monotonic()

        consumer = rocketmq_sync.PushConsumer(
            namesrv,
            handle,
            group=group,
            consume_mode="pop",
            consume_from_where="first",
            consume_message_batch_max_size=16,
        )
        consumer.subscribe(topic)
        began = time.monotonic()
        with consumer:
            while time.monotonic() - began < float(limit):
                time.sleep(0.2)
                with lock:
                    if handled[0] and time.monotonic() - last[0] > float(idle):
                        break
        with lock:
            sink.flush()
    print(handled[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
