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
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import side_by_side as sbs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "trace_cost.json"
SCENARIOS = (
    sbs.Scenario("async16", "pipelined send, 16 in flight", "produce", "async", inflight=16),
    sbs.Scenario("drain", "push consumer drain", "push"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a trial run")
    parser.add_argument("--drivers", default=",".join(sbs.OURS))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import cluster as launcher

    import rocketmq_sync

    counts = (
        {"async16": 8_000, "drain": 20_000} if args.quick else {"async16": 30_000, "drain": 60_000}
    )
    warmup = 500 if args.quick else 2_000
    drivers = [d for d in args.drivers.split(",") if d]
    external = launcher.cluster_from_env()
    local = None if external is not None else launcher.LocalCluster()
    if local is not None:
        print("starting the local cluster...", flush=True)
        local.start()
    cluster: Any = external or local
    best: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    try:
        namesrv = cluster.namesrv_addr
        run_id = uuid.uuid4().hex[:6]
        send_topic, drain_topic = f"TraceCostSend_{run_id}", f"TraceCostDrain_{run_id}"
        with rocketmq_sync.Admin(namesrv) as admin:
            admin.create_topic(send_topic, read_queue_nums=8, write_queue_nums=8)
            admin.create_topic(drain_topic, read_queue_nums=8, write_queue_nums=8)
        sbs.fill_backlog(namesrv, drain_topic, counts["drain"])
        for scenario in SCENARIOS:
            for driver in drivers:
                for round_ in range(args.rounds):
                    for trace in (False, True) if round_ % 2 == 0 else (True, False):
                        cmd = sbs.command_for(
                            driver,
                            scenario,
                            peers={},
                            namesrv=namesrv,
                            topic=send_topic if scenario.op == "produce" else drain_topic,
                            group=f"tc_{scenario.key}_{driver}_{trace}_{round_}_{run_id}",
                            count=counts[scenario.key],
                            warmup=warmup,
                        )
                        if trace:
                            cmd.append("--trace")
                        record = sbs.run_one(cmd, timeout=900)
                        mode = "on" if trace else "off"
                        kept = best.setdefault(scenario.key, {}).setdefault(driver, {})
                        if mode not in kept or sbs.figure(record, scenario) > sbs.figure(
                            kept[mode], scenario
                        ):
                            kept[mode] = record
                        print(
                            f"{driver:8s} {scenario.label:30s} trace {mode:3s} "
                            f"{sbs.describe(record, scenario)}"
                            + (f"  trace {record['trace']}" if "trace" in record else ""),
                            flush=True,
                        )
    finally:
        if local is not None:
            local.stop()
    print()
    print(f"{'':8s} {'scenario':30s} {'off msgs/s':>11s} {'on msgs/s':>11s} {'ratio':>6s} "
          f"{'off µs/msg':>10s} {'on µs/msg':>10s} {'sent':>8s} {'dropped':>8s}")  # fmt: skip
    ratios = []
    for scenario in SCENARIOS:
        for driver in drivers:
            off, on = best[scenario.key][driver]["off"], best[scenario.key][driver]["on"]
            f_off, f_on = sbs.figure(off, scenario), sbs.figure(on, scenario)
            ratio = f_on / f_off if f_off else float("nan")
            ratios.append(ratio)
            trace = on.get("trace", {})
            print(
                f"{driver:8s} {scenario.label:30s} {f_off:11,.0f} {f_on:11,.0f} {ratio:6.2f} "
                f"{off['cpuUsPerMsg']:10.1f} {on['cpuUsPerMsg']:10.1f} "
                f"{trace.get('sent', 0):8d} {trace.get('dropped', 0):8d}"
            )
    print(f"\nlowest on/off ratio: {min(ratios):.2f} (bound: 0.90)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"counts": counts, "best": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
