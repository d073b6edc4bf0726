"""What running a process on one CPU does to this client: each driver's
sequential and pipelined sends and its drains on any CPU (the operating system's
choice) and on one CPU (``os.sched_setaffinity``, as ``taskset -c N`` would).

    python benchmarks/one_cpu.py [--quick] [--drivers sync,gevent,asyncio] [--cpu N] [--rounds 2]

One run, one cluster (the local one it starts, or ROCKETMQ_NAMESRV), each run in
its own process by ``side_by_side.py --worker``, the two variants alternating
``--rounds`` times; the best run of each is kept. It prints msgs/s, CPU per
message, the ratio one CPU over any CPU, and the sequential sends' p50. The
figures go to ``benchmarks/results/one_cpu.json``.

Why: the threads driver hands every answer from a connection's reader thread to
the thread that waits for it, and only one of them holds the interpreter's lock
at a time. Spread over two CPUs, each hand-off wakes the other CPU and moves the
lock and its data between them; on one CPU nothing moves. The single-threaded
drivers (asyncio, gevent) have no such hand-off, which this shows too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import ROOT, Comparison, p50_columns, sbs

RESULTS = ROOT / "benchmarks" / "results" / "one_cpu.json"
SCENARIOS = (
    sbs.SCENARIO_BY_KEY["sync"],
    sbs.SCENARIO_BY_KEY["async16"],
    sbs.SCENARIO_BY_KEY["async128"],
    sbs.SCENARIO_BY_KEY["drain"],
    sbs.SCENARIO_BY_KEY["pull"],
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--drivers", default="sync,gevent,asyncio")
    parser.add_argument(
        "--cpu",
        type=int,
        default=max(os.sched_getaffinity(0)),
        help="the one CPU (default: the highest this process may use, %(default)s)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = (
        {"sync": 2_000, "async16": 8_000, "async128": 8_000, "drain": 20_000, "pull": 20_000}
        if args.quick
        else {
            "sync": 5_000,
            "async16": 30_000,
            "async128": 30_000,
            "drain": 60_000,
            "pull": 60_000,
        }
    )
    comparison = Comparison(
        scenarios=SCENARIOS,
        drivers=[d for d in args.drivers.split(",") if d],
        variants=(("any CPU", ()), ("one CPU", ("--cpus", str(args.cpu)))),
        counts=counts,
        warmup=500 if args.quick else 2_000,
        rounds=args.rounds,
    )
    best = comparison.run()
    comparison.table(best, p50_columns("any CPU", "one CPU"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"counts": counts, "cpu": args.cpu, "best": best}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
