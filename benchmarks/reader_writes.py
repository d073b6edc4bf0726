"""What leaving writes to a busy reader thread does for the threads driver's
pipelined sends: with it (the default) and with every request written by its
caller (``--no-reader-writes``).

    python benchmarks/reader_writes.py [--quick] [--rounds 3]

One run, one cluster (the local one it starts, or ROCKETMQ_NAMESRV), each run in
its own process by ``side_by_side.py --worker sync``, the two variants
alternating ``--rounds`` times; the best run of each is kept. It prints msgs/s,
CPU per message and the ratio of the two. The figures go to
``benchmarks/results/reader_writes.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import ROOT, Comparison, sbs

RESULTS = ROOT / "benchmarks" / "results" / "reader_writes.json"
SCENARIOS = (sbs.SCENARIO_BY_KEY["async16"], sbs.SCENARIO_BY_KEY["async128"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = (
        {"async16": 4_000, "async128": 4_000}
        if args.quick
        else {"async16": 20_000, "async128": 20_000}
    )
    comparison = Comparison(
        scenarios=SCENARIOS,
        drivers=["sync"],
        variants=(("callers write", ("--no-reader-writes",)), ("reader writes", ())),
        counts=counts,
        warmup=500 if args.quick else 2_000,
        rounds=args.rounds,
    )
    best = comparison.run()
    comparison.table(best)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"counts": counts, "best": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
