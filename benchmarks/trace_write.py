"""What the tracer costs per consumed message, in-process, without a broker.

    python benchmarks/trace_write.py [--messages 50000] [--rounds 7]

Runs ``Tracer.consumed`` (one handler call per message, as a push consumer with
the default batch size of 1 calls it), then the writing of the SubBefore and
SubAfter records, the packing into trace messages and their zlib compression, on
1 KiB messages; prints the CPU time (``time.process_time``) per message of each
step, the best of ``--rounds`` runs. Complements ``trace_cost.py``, which
measures whole drains and sends against a cluster.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rocketmq_proto.flows.trace import Tracer
from rocketmq_proto.message.ids import UniqueIdGenerator
from rocketmq_proto.message.model import MessageExt
from rocketmq_proto.wire.trace import ConsumeReturnType


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    count = args.messages
    ids = UniqueIdGenerator(b"\x7f\x00\x00\x01", 1234, 99)
    messages = [
        MessageExt(
            "BenchTopic",
            b"x" * 1024,
            properties={"UNIQ_KEY": ids.next_id(1_733_400_000_000), "WAIT": "true"},
            queue_offset=i,
        )
        for i in range(count)
    ]
    best: dict[str, float] = {}
    producer: Any = None  # never used: nothing is sent
    for _ in range(args.rounds):
        tracer = Tracer("RMQ_SYS_TRACE_TOPIC", producer, ids, capacity=10 * count)
        t0 = time.process_time()
        for msg in messages:
            tracer.consumed("bench", (msg,), 1_733_400_000_000, 0.0001, ConsumeReturnType.SUCCESS)
        t1 = time.process_time()
        bodies = []
        while (batch := tracer.take(0.0, flush=True)) is not None:
            bodies.append((batch.body(), list(batch.keys)))
        t2 = time.process_time()
        for body, _ in bodies:
            zlib.compress(body, 1)
        t3 = time.process_time()
        for step, seconds in (
            ("record and write (most calls write 16 at once)", t1 - t0),
            ("pack into trace messages", t2 - t1),
            ("zlib level 1", t3 - t2),
        ):
            best[step] = min(best.get(step, float("inf")), seconds)
        assert tracer.buffered == 0 and tracer.dropped == 0
    for step, seconds in best.items():
        print(f"{step:50s} {seconds / count * 1e6:6.2f} µs/msg")
    print(f"{'total':50s} {sum(best.values()) / count * 1e6:6.2f} µs/msg")
    print(f"({len(bodies)} trace messages for {count} consumed messages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
