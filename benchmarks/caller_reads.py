"""What a blocking caller reading its own answer does for the blocking drivers
(threads and gevent): their sequential and pipelined sends with callers reading
(the default) and with the connection's reader task handing every answer over
(``--no-caller-reads``).

    python benchmarks/caller_reads.py [--quick] [--rounds 3] [--drivers sync,gevent]

One run, one cluster (the local one it starts, or ROCKETMQ_NAMESRV), each run in
its own process by ``side_by_side.py --worker <driver>``, the two variants
alternating ``--rounds`` times; the best run of each is kept. It prints msgs/s,
CPU per message, the ratio callers reading over handed over, and the
sequential sends' p50. The figures go to ``benchmarks/results/caller_reads.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import ROOT, Comparison, p50_columns, sbs

RESULTS = ROOT / "benchmarks" / "results" / "caller_reads.json"
SCENARIOS = (sbs.SCENARIO_BY_KEY["sync"], sbs.SCENARIO_BY_KEY["async16"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drivers", default="sync,gevent")
    args = parser.parse_args()
    counts = {"sync": 1_000, "async16": 4_000} if args.quick else {"sync": 5_000, "async16": 20_000}
    comparison = Comparison(
        scenarios=SCENARIOS,
        drivers=[d for d in args.drivers.split(",") if d],
        variants=(("handed over", ("--no-caller-reads",)), ("callers read", ())),
        counts=counts,
        warmup=500 if args.quick else 2_000,
        rounds=args.rounds,
    )
    best = comparison.run()
    comparison.table(best, p50_columns("handed", "reading"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"counts": counts, "best": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
