"""Where one scenario's time goes: a ``side_by_side.py`` worker run under py-spy,
its samples summed per function and given in microseconds per message.

    python benchmarks/profile_worker.py --scenario batch32 --driver asyncio \\
        [--count 200000] [--rate 2000] [--top 30] [--py-spy PATH] [--trace] [--gil]
        [--yappi]

Uses the cluster ``ROCKETMQ_NAMESRV`` names, or starts the local one; makes a
topic (and, for a drain, a backlog of ``--count`` messages). py-spy is not a
dependency of the project (``pip install py-spy``): ``--py-spy`` names it, else
it is looked up on ``PATH``. Prints the worker's own figures, then the functions
with the most samples, inclusive (the function and what it calls) and self (the
function alone), per message of the run: ``samples / rate / count``; and the self
samples summed by where the code lives (this project's packages, each library,
the standard library's modules), to compare two drivers or two scenarios.
``--gil`` samples only the thread holding the interpreter's lock (for the threads
driver: its Python work on every thread, no thread's waiting). ``--yappi``
profiles with yappi instead (``pip install yappi``): each function's own CPU
time on every thread (for gevent, every greenlet: a switch ends no function's
time, where py-spy's samples of the gevent driver gather around switches),
builtins included, deterministic; its clock, read at every call, makes the run
several times slower, so read its figures as shares.

Reading it: py-spy samples every thread that is not idle in its eyes, so a
thread waiting on a lock can count (look at the root frames printed first; the
known waits, gevent's thread pool workers waiting for work, are left out and
their samples told), and
on this machine's virtualised kernel samples gather at system calls (a line
calling ``asyncio.get_running_loop()``, which calls ``getpid()``, drew a sixth of
a drain's samples where timing the call gives well under 1%): compare two runs
of one command, or the Python frames between system calls, rather than taking
a line's share as its cost.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from variants import sbs


def _frame_key(frame: str) -> str:
    """``name (path:line)`` -> ``name file``."""
    name, _, where = frame.partition(" (")
    return f"{name} {where.split(':')[0].rsplit('/', 1)[-1]}" if where else name


def _package(frame: str) -> str:
    """Where a frame's code lives: this project's package (``rocketmq_proto.flows``
    and such), or the top package or module of a library or of the standard
    library (py-spy names a file by its path under its ``sys.path`` entry)."""
    _, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].replace("\\", "/")
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.startswith("rocketmq_"):
            return ".".join([part, *parts[i + 1 : -1][:1]])
        if part == "site-packages" and i + 1 < len(parts):
            return parts[i + 1].removesuffix(".py")
        if part.startswith("python3") and i + 1 < len(parts) and parts[i + 1] != "site-packages":
            return parts[i + 1].removesuffix(".py")  # the standard library, by full path
    top = parts[-1] if path.startswith("/") else parts[0]
    return top.removesuffix(".py") or frame


#: Leaf frames (as :func:`_frame_key` gives them) of threads waiting, which py-spy
#: counts as busy: gevent's thread pool workers waiting for work.
_WAITS = frozenset({"acquire_with_timeout _threading.py"})


def summarise(raw: Path, *, count: int, rate: float, top: int) -> list[str]:
    """The report's lines for py-spy's ``--format raw`` output in ``raw``. Samples
    of a known wait (:data:`_WAITS`) are left out, and their sum is given."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    roots: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        frames = stack.split(";")
        if _frame_key(frames[-1]) in _WAITS:
            waiting += n
            continue
        total += n
        roots[" / ".join(_frame_key(f) for f in frames[:3])] += n
        seen = set()
        for frame in frames[1:] or frames:
            key = _frame_key(frame)
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
        own[_frame_key(frames[-1])] += n
        packages[_package(frames[-1])] += n

    def per_message(n: float) -> float:
        return n / rate / count * 1e6

    lines = [f"samples: {total} ({per_message(total):.1f} µs per message, every thread)"]
    if waiting:
        lines.append(
            f"left out: {waiting} samples ({per_message(waiting):.1f} µs per message) of "
            "threads waiting, which py-spy counts as busy"
        )
    return lines + _sections(
        per_message,
        ("by thread (root frames):", roots, 6),
        ("self, by where the code lives, µs per message:", packages, top),
        ("inclusive, µs per message:", inclusive, top),
        ("self, µs per message:", own, top),
    )


def _sections(
    per_message: Callable[[float], float], *sections: tuple[str, Mapping[str, float], int]
) -> list[str]:
    """The report's sections: each a title, then its largest ``limit`` entries of
    a counter, given per message."""
    lines: list[str] = []
    for title, counter, limit in sections:
        lines.append(title)
        largest = sorted(counter.items(), key=lambda kv: kv[1], reverse=True)[:limit]
        lines += [f"  {per_message(n):8.1f}  {key}" for key, n in largest]
    return lines


#: Runs a worker (the arguments after the output path and the context backend)
#: under yappi, CPU clock, every thread (or, with the ``greenlet`` backend, every
#: greenlet: a switch then ends no function's time), builtins included; writes
#: each function's own CPU seconds, a line per function: ``seconds<TAB>name
#: (path:line)``.
_YAPPI_RUN = """
import runpy, sys, yappi
out, backend, sys.argv = sys.argv[1], sys.argv[2], sys.argv[3:]
yappi.set_context_backend(backend)
yappi.set_clock_type("cpu")
yappi.start(builtins=True, profile_threads=True)
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
finally:
    yappi.stop()
with open(out, "w") as f:
    for st in yappi.get_func_stats():
        where = "builtins:0" if st.builtin else f"{st.module}:{st.lineno}"
        f.write(f"{st.tsub!r}\\t{st.name} ({where})\\n")
    contexts = yappi.get_greenlet_stats() if backend == "greenlet" else yappi.get_thread_stats()
    for th in contexts:
        f.write(f"{th.ttot!r}\\tthread {th.name} {th.id}\\n")
sys.exit(code)
"""


def summarise_yappi(path: Path, *, count: int, top: int) -> list[str]:
    """The report's lines for the own CPU seconds :data:`_YAPPI_RUN` wrote."""
    own: collections.defaultdict[str, float] = collections.defaultdict(float)
    places: collections.defaultdict[str, float] = collections.defaultdict(float)
    threads: collections.defaultdict[str, float] = collections.defaultdict(float)
    for line in path.read_text().splitlines():
        seconds_text, _, frame = line.partition("\t")
        seconds = float(seconds_text)
        if frame.startswith("thread "):
            threads[frame.removeprefix("thread ")] += seconds
            continue
        own[_frame_key(frame)] += seconds
        places[_package(frame)] += seconds

    def per_message(seconds: float) -> float:
        return seconds / count * 1e6

    total = sum(own.values())
    lines = [
        f"own CPU under yappi: {per_message(total):.1f} µs per message (the profiler's "
        "clock, read at every call, multiplies a run's CPU: read shares, not µs)"
    ]
    return lines + _sections(
        per_message,
        ("by thread:", threads, 6),
        ("self, by where the code lives, µs per message:", places, top),
        ("self, µs per message:", own, top),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="batch32", choices=sorted(sbs.SCENARIO_BY_KEY))
    parser.add_argument("--driver", default="asyncio", choices=sbs.OURS)
    parser.add_argument("--count", type=int, default=0, help="messages (default: the scenario's)")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--rate", type=int, default=2_000, help="samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--py-spy", default=shutil.which("py-spy"))
    parser.add_argument("--trace", action="store_true", help="message trace on")
    parser.add_argument("--keep", help="also write py-spy's raw samples here")
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    parser.add_argument(
        "--yappi",
        action="store_true",
        help="profile with yappi (CPU clock, every thread) instead of sampling with py-spy",
    )
    args = parser.parse_args()
    if args.yappi:
        try:
            import yappi  # noqa: F401
        except ImportError:
            parser.error("yappi is not installed: pip install yappi")
    elif not args.py_spy:
        parser.error("py-spy not found: install it (pip install py-spy) or give --py-spy PATH")
    scenario = sbs.SCENARIO_BY_KEY[args.scenario]
    count = args.count or sbs._counts(False)[scenario.key]
    with sbs.bench_cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        import rocketmq_sync

        namesrv = cluster.namesrv_addr
        topic = f"Profile_{uuid.uuid4().hex[:6]}"
        with rocketmq_sync.Admin(namesrv) as admin:
            admin.create_topic(topic, read_queue_nums=8, write_queue_nums=8)
        if scenario.op != "produce":
            sbs.fill_backlog(namesrv, topic, count)
        cmd = sbs.command_for(
            args.driver,
            scenario,
            peers={},
            namesrv=namesrv,
            topic=topic,
            group=f"profile_{uuid.uuid4().hex[:6]}",
            count=count,
            warmup=args.warmup,
        )
        if args.trace:
            cmd.append("--trace")
        raw = Path(args.keep) if args.keep else Path(tmp) / "samples.txt"
        if args.yappi:
            backend = "greenlet" if args.driver == "gevent" else "native_thread"
            profiled = [cmd[0], "-c", _YAPPI_RUN, str(raw), backend, *cmd[1:]]
        else:
            spy = [args.py_spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
            profiled = [*spy, "--gil", "--", *cmd] if args.gil else [*spy, "--", *cmd]
        done = subprocess.run(profiled, capture_output=True, text=True, timeout=1800)
        records = [json.loads(s) for s in done.stdout.splitlines() if s.startswith("{")]
        if done.returncode != 0 or not records:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        record = records[-1]
        print(f"{args.driver} {scenario.label}, {count} messages: {sbs.describe(record, scenario)}")
        if args.yappi:
            lines = summarise_yappi(raw, count=count, top=args.top)
        else:
            lines = summarise(raw, count=count, rate=args.rate, top=args.top)
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
