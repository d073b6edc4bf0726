"""The profile summary of ``benchmarks/profile_worker.py``: py-spy's raw samples
turned into µs per message, per function and per place the code lives."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import profile_worker


def _after(lines: list[str], title: str, count: int | None = None) -> list[str]:
    """The report's lines after the section title ``title`` (the first ``count``)."""
    rest = lines[lines.index(title) + 1 :]
    return rest if count is None else rest[:count]


def test_a_frame_is_placed_in_its_package_library_or_module() -> None:
    place = profile_worker._package
    assert place("run_flow (rocketmq_sync/_interpreter.py:12)") == "rocketmq_sync"
    assert place("x (rocketmq_proto/flows/consumer/dispatch.py:3)") == "rocketmq_proto.flows"
    assert place("y (rocketmq_proto/__init__.py:3)") == "rocketmq_proto"
    assert place("z (/venv/lib/python3.11/site-packages/gevent/hub.py:9)") == "gevent"
    assert place("switch (gevent/hub.py:1)") == "gevent"
    assert place("d (json/decoder.py:3)") == "json"
    assert place("select (selectors.py:451)") == "selectors"
    assert place("main (/work/bench/side_by_side.py:7)") == "side_by_side"


def test_samples_are_summed_per_message_by_function_and_by_place(tmp_path: Path) -> None:
    raw = tmp_path / "samples.txt"
    raw.write_text(
        "main (side_by_side.py:1);run_flow (rocketmq_asyncio/_interpreter.py:5) 300\n"
        "main (side_by_side.py:1);run_flow (rocketmq_asyncio/_interpreter.py:5);"
        "decode (rocketmq_proto/wire/command.py:9) 100\n"
        "main (side_by_side.py:1);select (selectors.py:451) 600\n"
    )
    # 1,000 samples at 1,000 per second over 100 messages: 10,000 µs per message.
    lines = profile_worker.summarise(raw, count=100, rate=1000, top=5)
    assert lines[0] == "samples: 1000 (10000.0 µs per message, every thread)"
    places = _after(lines, "self, by where the code lives, µs per message:", 3)
    assert [line.split() for line in places] == [
        ["6000.0", "selectors"],
        ["3000.0", "rocketmq_asyncio"],
        ["1000.0", "rocketmq_proto.wire"],
    ]
    # Inclusive: a frame with everything it called (the root frame left out).
    inclusive = _after(lines, "inclusive, µs per message:")
    assert inclusive[0].split() == ["6000.0", "select", "selectors.py"]
    assert inclusive[1].split() == ["4000.0", "run_flow", "_interpreter.py"]


def test_a_frame_of_the_standard_library_by_full_path_is_placed_in_its_module() -> None:
    place = profile_worker._package
    assert place("run_once (/usr/local/lib/python3.11/asyncio/base_events.py:1845)") == "asyncio"
    assert place("select (/usr/lib/python3.11/selectors.py:451)") == "selectors"
    assert place("h (/v/lib/python3.11/site-packages/gevent/hub.py:1)") == "gevent"
    assert place("<method 'sendall' of '_socket.socket' objects> (builtins:0)") == "builtins"


def test_yappis_own_times_are_summed_per_message_by_function_place_and_thread(
    tmp_path: Path,
) -> None:
    out = tmp_path / "yappi.txt"
    out.write_text(
        "0.3\trun_flow (/w/rocketmq_sync/_interpreter.py:5)\n"
        "0.1\tdecode (/w/rocketmq_proto/wire/command.py:9)\n"
        "0.05\tlen (builtins:0)\n"
        "0.05\t<method 'poll' of 'select.poll' objects> (builtins:0)\n"
        "0.4\tthread _MainThread 0\n"
        "0.1\tthread Thread 3\n"
    )
    # 0.5 s of own CPU over 1,000 messages: 500 µs per message.
    lines = profile_worker.summarise_yappi(out, count=1000, top=5)
    assert lines[0].startswith("own CPU under yappi: 500.0 µs per message")
    threads = _after(lines, "by thread:", 2)
    assert [line.split() for line in threads] == [
        ["400.0", "_MainThread", "0"],
        ["100.0", "Thread", "3"],
    ]
    places = _after(lines, "self, by where the code lives, µs per message:", 3)
    assert [line.split() for line in places] == [
        ["300.0", "rocketmq_sync"],
        ["100.0", "rocketmq_proto.wire"],
        ["100.0", "builtins"],
    ]
    functions = _after(lines, "self, µs per message:")
    assert functions[0].split() == ["300.0", "run_flow", "_interpreter.py"]


def test_a_thread_waiting_for_work_is_left_out_and_its_samples_told(tmp_path: Path) -> None:
    raw = tmp_path / "samples.txt"
    raw.write_text(
        "main (side_by_side.py:1);run_flow (rocketmq_sync/_interpreter.py:5) 300\n"
        "_WorkerGreenlet.run (gevent/threadpool.py:1);Queue.get (gevent/_threading.py:2);"
        "acquire_with_timeout (gevent/_threading.py:36) 700\n"
    )
    lines = profile_worker.summarise(raw, count=100, rate=1000, top=5)
    assert lines[0] == "samples: 300 (3000.0 µs per message, every thread)"
    assert lines[1].startswith("left out: 700 samples (7000.0 µs per message) of threads waiting")
    places = _after(lines, "self, by where the code lives, µs per message:")
    assert places[0].split() == ["3000.0", "rocketmq_sync"]
    assert "gevent" not in " ".join(lines[2:])
