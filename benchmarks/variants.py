"""Two variants of this client's runs compared in one run on one cluster: the
runner behind ``trace_cost.py`` (trace off and on) and ``one_cpu.py`` (any CPU
and one CPU).

Each scenario of each driver runs ``rounds`` times per variant, the variants
alternating (their order swapped every other round, so that neither always runs
on a warmer cluster), each run in its own process by ``side_by_side.py
--worker``; the best run of each is kept.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import side_by_side as sbs  # noqa: E402

__all__ = ["ROOT", "Best", "Comparison", "Variant", "alternating", "sbs"]

T = TypeVar("T")


def alternating(variants: Sequence[T], rounds: int) -> Iterator[tuple[int, int, T]]:
    """(round, place in the round, variant) for ``rounds`` rounds of every variant,
    their order reversed every other round (so that none always runs on a warmer
    cluster)."""
    for round_ in range(rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for index, variant in enumerate(order):
            yield round_, index, variant


#: A variant: its name and the worker flags it adds.
Variant = tuple[str, Sequence[str]]
#: Kept runs: scenario key -> driver -> variant name -> the worker's record.
Best = dict[str, dict[str, dict[str, dict[str, Any]]]]


@dataclass
class Comparison:
    scenarios: Sequence[sbs.Scenario]
    drivers: Sequence[str]
    #: The baseline first, then the variant compared with it.
    variants: tuple[Variant, Variant]
    counts: dict[str, int]
    warmup: int
    rounds: int

    def run(self, describe_more: Callable[[dict[str, Any]], str] = lambda r: "") -> Best:
        """Start the local cluster (or use ``ROCKETMQ_NAMESRV``'s), make the topics and
        the drain backlog, run every combination, and return the best runs."""
        import rocketmq_sync

        best: Best = {}
        with sbs.bench_cluster() as cluster:
            namesrv = cluster.namesrv_addr
            run_id = uuid.uuid4().hex[:6]
            send_topic, drain_topic = f"VariantSend_{run_id}", f"VariantDrain_{run_id}"
            with rocketmq_sync.Admin(namesrv) as admin:
                admin.create_topic(send_topic, read_queue_nums=8, write_queue_nums=8)
                admin.create_topic(drain_topic, read_queue_nums=8, write_queue_nums=8)
            drains = [self.counts[s.key] for s in self.scenarios if s.op != "produce"]
            if drains:
                sbs.fill_backlog(namesrv, drain_topic, max(drains))
            for scenario in self.scenarios:
                for driver in self.drivers:
                    for round_, index, (name, flags) in alternating(self.variants, self.rounds):
                        cmd = sbs.command_for(
                            driver,
                            scenario,
                            peers={},
                            namesrv=namesrv,
                            topic=send_topic if scenario.op == "produce" else drain_topic,
                            group=f"v_{scenario.key}_{driver}_{round_}_{index}_{run_id}",
                            count=self.counts[scenario.key],
                            warmup=self.warmup,
                        )
                        record = sbs.run_one([*cmd, *flags], timeout=900)
                        kept = best.setdefault(scenario.key, {}).setdefault(driver, {})
                        if name not in kept or (sbs.figure(record, scenario) or 0.0) > (
                            sbs.figure(kept[name], scenario) or 0.0
                        ):
                            kept[name] = record
                        print(
                            f"{driver:8s} {scenario.label:30s} {name:10s} "
                            f"{sbs.describe(record, scenario)}{describe_more(record)}",
                            flush=True,
                        )
        return best

    def table(
        self,
        best: Best,
        more: tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]] = ("", lambda a, b: ""),
    ) -> list[float]:
        """Print each scenario's kept figures of both variants and their ratio
        (variant over baseline; ``more``: a heading and the columns it adds); the
        ratios, in the order printed."""
        (base, _), (other, _) = self.variants
        heading, columns = more
        print()
        print(
            f"{'':8s} {'scenario':30s} {base + ' msgs/s':>16s} {other + ' msgs/s':>16s} "
            f"{'ratio':>6s} {base + ' µs/msg':>16s} {other + ' µs/msg':>16s}{heading}"
        )
        ratios = []
        for scenario in self.scenarios:
            for driver in self.drivers:
                a, b = best[scenario.key][driver][base], best[scenario.key][driver][other]
                f_a, f_b = sbs.figure(a, scenario) or 0.0, sbs.figure(b, scenario) or 0.0
                ratio = f_b / f_a if f_a else float("nan")
                ratios.append(ratio)
                print(
                    f"{driver:8s} {scenario.label:30s} {f_a:16,.0f} {f_b:16,.0f} {ratio:6.2f} "
                    f"{a['cpuUsPerMsg']:16.1f} {b['cpuUsPerMsg']:16.1f}{columns(a, b)}"
                )
        return ratios


def p50_columns(
    base: str, other: str
) -> tuple[str, Callable[[dict[str, Any], dict[str, Any]], str]]:
    """:meth:`Comparison.table`'s ``more`` for the sequential sends' p50 latencies
    (ms) of both variants, blank for the other scenarios."""

    def columns(a: dict[str, Any], b: dict[str, Any]) -> str:
        if "p50Ms" not in a:
            return ""
        return f" {a['p50Ms']:12.3f} {b['p50Ms']:12.3f}"

    return f" {base + ' p50':>12s} {other + ' p50':>12s}", columns
