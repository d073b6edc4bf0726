"""What message trace costs: send and drain throughput with ``enable_trace`` off and on.

    python benchmarks/trace_cost.py [--quick] [--drivers asyncio,gevent,sync] [--rounds 2]

One run, one cluster (the local one it starts, or ROCKETMQ_NAMESRV): for each
driver, pipelined sends (16 in flight) and a push-consumer drain of a 1 KiB
backlog, each run in its own process by ``side_by_side.py --worker``, with trace
off and on, alternating, ``--rounds`` times; the best run of each is kept. It
prints msgs/s, CPU per message, the on/off throughput ratio (the issue's bound:
a cost of at most 10%, a ratio of at least 0.90), and the trace records the
client sent and dropped. The figures go to ``benchmarks/results/trace_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import ROOT, Comparison, sbs

RESULTS = ROOT / "benchmarks" / "results" / "trace_cost.json"
SCENARIOS = (
    sbs.Scenario("async16", "pipelined send, 16 in flight", "produce", "async", inflight=16),
    sbs.Scenario("drain", "push consumer drain", "push"),
)


def _trace(record: dict[str, Any]) -> str:
    return f"  trace {record['trace']}" if "trace" in record else ""


def _sent_dropped(off: dict[str, Any], on: dict[str, Any]) -> str:
    trace = on.get("trace", {})
    return f" {trace.get('sent', 0):8d} {trace.get('dropped', 0):8d}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--drivers", default=",".join(sbs.OURS))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = (
        {"async16": 8_000, "drain": 20_000} if args.quick else {"async16": 30_000, "drain": 60_000}
    )
    comparison = Comparison(
        scenarios=SCENARIOS,
        drivers=[d for d in args.drivers.split(",") if d],
        variants=(("off", ()), ("on", ("--trace",))),
        counts=counts,
        warmup=500 if args.quick else 2_000,
        rounds=args.rounds,
    )
    best = comparison.run(_trace)
    ratios = comparison.table(best, (f" {'sent':>8s} {'dropped':>8s}", _sent_dropped))
    print(f"\nlowest on/off ratio: {min(ratios):.2f} (bound: 0.90)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"counts": counts, "best": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
