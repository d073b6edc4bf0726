"""Where a traced drain's time goes: the push-consumer drain run with trace off, on,
and with one part of the tracer left out at a time.

    python benchmarks/trace_parts.py [--driver asyncio] [--count 200000] [--rounds 3]
        [--variants off,told,written,uncompressed,offloaded,on]
        [--switch-intervals 0.005,0.02]

Uses the cluster ``ROCKETMQ_NAMESRV`` names (else starts the local one), makes a
topic and a backlog of ``--count`` 1 KiB messages, then runs one
``side_by_side.py`` drain worker per variant, alternating their order round by
round. The variants:

- ``off``: trace off;
- ``told``: trace on, each handler call told to the tracer, no record written;
- ``written``: the records written into trace messages, none sent;
- ``uncompressed``: everything, trace messages sent uncompressed (about 15
  times the bytes to the brokers);
- ``offloaded``: everything, trace messages compressed off the IO thread (a
  worker thread, as bodies of 64 KiB or more of other producers are);
- ``on``: trace on, as shipped (trace messages compressed by the task sending
  them: the event loop, the hub, or in the threads driver the sending thread,
  outside the client's core lock).

For each run it prints msgs/s (first message to last), the process's CPU per
message (the client's start to its close, every thread), the main thread's CPU
per message (from the worker's start, its setup included, to the drain's end:
for asyncio and gevent the thread that does all of the client's IO; for the
threads driver, not), and
the process's minor page faults and voluntary context switches. The difference
between two variants is what the part between them costs; run-to-run spread is
large on a shared 2-core machine, so compare within a round and over several.
The parts are left out by replacing the tracer's methods in the worker process
only (the client's code is unchanged).

``--switch-intervals`` runs each variant at each of the interpreter's switch
intervals given (``sys.setswitchinterval`` in the worker; Python's default is
0.005 s), alternating with the rest: the threads driver's drains depend on how
often the interpreter's lock is taken from a thread running Python code.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from variants import alternating, sbs

VARIANTS = ("off", "told", "written", "uncompressed", "offloaded", "on")


def apply(variant: str) -> Callable[[], None]:
    """Replace the tracer's parts ``variant`` leaves out; returns the undoing."""
    from rocketmq_proto.flows import trace

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    undo: list[Callable[[], None]] = []

    def replace(owner: Any, name: str, value: Any) -> None:
        old = getattr(owner, name)
        setattr(owner, name, value)
        undo.append(lambda: setattr(owner, name, old))

    if variant == "told":

        def drop_unwritten(self: trace.Tracer) -> None:
            told = sum(2 * len(call[1]) for call in self._consumed)
            self._consumed.clear()
            self._records -= told
            self.recorded -= told

        replace(trace.Tracer, "_write_consumed", drop_unwritten)
    elif variant == "written":
        take = trace.Tracer.take

        def drop_unsent(
            self: trace.Tracer, now_s: float, *, flush: bool = False
        ) -> trace.TraceBatch | None:
            while (batch := take(self, now_s, flush=True)) is not None:
                self.sent += batch.records  # counted as gone, so close does not wait
            return None

        replace(trace.Tracer, "take", drop_unsent)
    elif variant == "uncompressed":
        replace(trace.Tracer, "__init__", _adjusting_producer(_uncompressed))
    elif variant == "offloaded":
        replace(trace.Tracer, "__init__", _adjusting_producer(_offloading))

    def undo_all() -> None:
        for step in reversed(undo):
            step()

    return undo_all


def _adjusting_producer(adjust: Callable[[Any], None]) -> Callable[..., None]:
    """``Tracer.__init__`` as it is, then ``adjust(tracer.producer)``."""
    from rocketmq_proto.flows import trace

    init = trace.Tracer.__init__

    def adjusted(self: trace.Tracer, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        adjust(self.producer)

    return adjusted


def _uncompressed(producer: Any) -> None:
    producer.config = dataclasses.replace(
        producer.config, compress_msg_body_over_howmuch=sys.maxsize
    )


def _offloading(producer: Any) -> None:
    producer.short_compression = False


def set_switch_interval(argv: list[str]) -> list[str]:
    """Set the interpreter's switch interval if ``argv`` starts with
    ``--switch-interval SECONDS``; the rest of ``argv``."""
    if argv[:1] != ["--switch-interval"]:
        return argv
    sys.setswitchinterval(float(argv[1]))
    return argv[2:]


def _worker(variant: str, argv: list[str]) -> int:
    """Run one ``side_by_side.py`` worker with ``variant``'s parts left out (and,
    with ``--switch-interval SECONDS`` first in ``argv``, at that switch interval);
    its record gets the main thread's CPU (from the worker's start), the process's
    minor page faults and voluntary context switches, read as the drain ends
    (before the close)."""
    argv = set_switch_interval(argv)
    apply(variant)
    usage: dict[str, float] = {}
    started = time.thread_time()  # imports done: the main thread's CPU from here
    measured, emit = sbs._measured, sbs._emit

    def measured_too() -> None:
        if not usage:  # the first time: the drain just ended, on the main thread
            own = resource.getrusage(resource.RUSAGE_SELF)
            usage.update(mainCpuSec=time.thread_time() - started, minorFaults=own.ru_minflt)
            usage.update(voluntarySwitches=own.ru_nvcsw)
        measured()

    def emit_too(record: dict[str, Any]) -> None:
        record.update(usage)
        emit(record)

    sbs._measured, sbs._emit = measured_too, emit_too
    sys.argv = [str(Path(sbs.__file__)), *argv]
    return int(sbs.main() or 0)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker-variant":
        return _worker(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--driver", default="asyncio", choices=sbs.OURS)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--switch-intervals", default="", help="seconds, comma-separated")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for variant in variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    try:
        intervals = [float(i) for i in args.switch_intervals.split(",") if i]
    except ValueError:
        parser.error(f"--switch-intervals: not seconds: {args.switch_intervals!r}")
    if any(i <= 0 for i in intervals):
        parser.error(f"--switch-intervals: each must be above 0, got {args.switch_intervals!r}")
    each: list[float | None] = list(intervals) or [None]
    runs = [(v, i) for i in each for v in variants]
    import rocketmq_sync

    with sbs.bench_cluster() as cluster:
        namesrv = cluster.namesrv_addr
        run_id = uuid.uuid4().hex[:6]
        topic = f"TraceParts_{run_id}"
        with rocketmq_sync.Admin(namesrv) as admin:
            admin.create_topic(topic, read_queue_nums=8, write_queue_nums=8)
        sbs.fill_backlog(namesrv, topic, args.count)
        print(f"{args.driver} drains of {args.count:,} x 1 KiB, {args.rounds} rounds", flush=True)
        for round_, place, (variant, interval) in alternating(runs, args.rounds):
            group = f"parts_{variant}_{round_}_{place}_{run_id}"
            cmd = [sys.executable, __file__, "--worker-variant", variant]
            label = variant
            if interval is not None:
                cmd += ["--switch-interval", str(interval)]
                label = f"{variant} {interval * 1000:g} ms"
            cmd += ["--worker", args.driver, "--op", "push", "--namesrv", namesrv,
                    "--topic", topic, "--count", str(args.count), "--group", group]  # fmt: skip
            if variant != "off":
                cmd.append("--trace")
            record = sbs.run_one(cmd, timeout=900)
            seen = max(1, record["received"])
            print(
                f"round {round_} {label:12s} {record['msgsPerSecFromFirst']:9,.0f} msgs/s"
                f"  cpu {record['cpuUsPerMsg']:5.1f} µs/msg"
                f"  main thread {record['mainCpuSec'] * 1e6 / seen:5.1f} µs/msg"
                f"  faults {record['minorFaults']:7,}  switches {record['voluntarySwitches']:6,}"
                f"  trace {record.get('trace', {}).get('sent', 0)} sent",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
