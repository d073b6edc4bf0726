"""The ``rocketmq`` command line against the real cluster: each command's output
and exit code (in-process with click's runner, and as a real process), bad input
worded in one line, and the live displays of ``bench`` and ``tail`` in a real
terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import rocketmq_sync
from rocketmq_cli import cli
from rocketmq_proto import Message

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def run(namesrv: str | None, *args: str, stdin: str | None = None) -> Result:
    """``rocketmq [--namesrv NS] args...`` in this process."""
    head = ["--namesrv", namesrv] if namesrv else []
    env = {"NAMESRV_ADDR": ""}
    return CliRunner().invoke(cli, [*head, *args], input=stdin, env=env, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result.stdout


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def one_error_line(result: Result) -> str:
    """The error a failed command printed: one line, no traceback."""
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("rocketmq: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def namesrv(rocketmq_cluster: Any) -> str:
    return str(rocketmq_cluster.namesrv_addr)


@pytest.fixture(scope="module")
def topic(namesrv: str) -> Iterator[str]:
    name = unique("CliT")
    created = json.loads(ok(run(namesrv, "--json", "topic", "create", name, "-q", "2")))
    assert created["topic"] == name and len(created["brokers"]) >= 1
    with rocketmq_sync.Admin(namesrv) as admin:
        deadline = time.monotonic() + 20
        while not admin.topic_route(name).queue_datas:
            assert time.monotonic() < deadline, "no route for the new topic"
            time.sleep(0.2)
    yield name
    run(namesrv, "topic", "delete", name, "--yes")


def test_topic_commands_create_list_route_stats_and_delete(namesrv: str, topic: str) -> None:
    assert topic in ok(run(namesrv, "topic", "list")).split()
    listed = json.loads(ok(run(namesrv, "--json", "topic", "list")))
    assert topic in listed and not any(t.startswith("%RETRY%") for t in listed)
    assert any(
        t.startswith("%RETRY%") or t == "TBW102"
        for t in json.loads(ok(run(namesrv, "--json", "topic", "list", "--all")))
    )
    route = json.loads(ok(run(namesrv, "--json", "topic", "route", topic)))
    assert {q["read"] for q in route["queues"]} == {2} and route["brokers"]
    assert all(q["perm"] == "RW" for q in route["queues"])
    table = ok(run(namesrv, "topic", "route", topic))
    assert all(b["broker"] in table for b in route["brokers"])
    stats = json.loads(ok(run(namesrv, "--json", "topic", "stats", topic)))
    assert len(stats) == 2 * len(route["brokers"])
    # A topic of its own, deleted: then it has no route (exit 1, one line).
    doomed = unique("CliGone")
    ok(run(namesrv, "topic", "create", doomed, "-q", "1"))
    refused = run(namesrv, "topic", "delete", doomed)  # no terminal to ask on
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert f"topic {doomed} deleted" in ok(run(namesrv, "topic", "delete", doomed, "-y"))
    gone = run(namesrv, "topic", "route", doomed)
    assert gone.exit_code == 1 and doomed in one_error_line(gone)


def test_send_from_arguments_stdin_and_files_then_find_show_and_tail_them(
    namesrv: str, topic: str, tmp_path: Path
) -> None:
    key = unique("key")
    sent = json_lines(
        ok(run(namesrv, "--json", "send", topic, "first", "second", "-k", key, "--tags", "A"))
    )
    assert [d["status"] for d in sent] == ["SEND_OK", "SEND_OK"]
    human = ok(run(namesrv, "send", topic, "third", "-k", key, "--tags", "B", "-p", "p=1"))
    assert human.startswith("SEND_OK  ") and "@" in human
    piped = json_lines(ok(run(namesrv, "--json", "send", topic, "-k", key, stdin="l1\nl2\n")))
    assert len(piped) == 2
    path = tmp_path / "body.bin"
    path.write_bytes(b"\xff\x00binary")
    from_file = json_lines(ok(run(namesrv, "--json", "send", topic, "-f", str(path), "-k", key)))
    # Found by key: all six, with their bodies.
    found = json_lines(ok(run(namesrv, "--json", "message", "find", "-t", topic, "-k", key)))
    bodies = {d.get("body") or d.get("body_base64") for d in found}
    assert bodies == {"first", "second", "third", "l1", "l2", "/wBiaW5hcnk="}
    table = ok(run(namesrv, "message", "find", "-t", topic, "-k", key))
    assert all(d["msg_id"] in table for d in sent + piped)
    missing = run(namesrv, "message", "find", "-t", topic, "-k", unique("nokey"))
    assert missing.exit_code == 1
    # Shown by offset id, by the id send returned (with the topic), by queue offset.
    first = sent[0]
    by_offset_id = json.loads(ok(run(namesrv, "--json", "message", "show", first["offset_msg_id"])))
    by_send_id = json.loads(
        ok(run(namesrv, "--json", "message", "show", first["msg_id"], "-t", topic))
    )
    at = json.loads(
        ok(
            run(
                namesrv,
                *("--json", "message", "show", "-t", topic, "-b", first["broker"]),
                *("-q", str(first["queue_id"]), "-o", str(first["queue_offset"])),
            )
        )
    )
    for doc in (by_offset_id, by_send_id, at):
        assert (doc["msg_id"], doc["body"], doc["tags"], doc["keys"]) == (
            first["msg_id"],
            "first",
            "A",
            [key],
        )
    shown = ok(run(namesrv, "message", "show", from_file[0]["offset_msg_id"]))
    assert re.search(r"^body \(base64\):\s+/wBiaW5hcnk=$", shown, re.M)
    assert re.search(rf"^keys:\s+{key}$", shown, re.M)
    # Tailed from the first message: all of them (the topic holds only these so
    # far, sent above), in JSON; a tag filter keeps the B one.
    tailed = json_lines(ok(run(namesrv, "--json", "tail", topic, "--from", "first", "-c", "6")))
    assert {d.get("body") or d.get("body_base64") for d in tailed} == bodies
    only_b = ok(run(namesrv, "tail", topic, "--from", "first", "--tag", "B", "-c", "1"))
    assert only_b.rstrip().endswith("third") and "tags=B" in only_b


def test_send_count_bench_lag_and_cluster(namesrv: str, topic: str) -> None:
    summary = json.loads(ok(run(namesrv, "--json", "send", topic, "hello", "-c", "200")))
    assert summary["sent"] == 200 and summary["failed"] == 0 and summary["rate"] > 0
    text = ok(run(namesrv, "send", topic, "-c", "20", "--concurrency", "4"))
    assert text.startswith("sent 20 messages in ") and " msg/s" in text
    produced = json.loads(
        ok(run(namesrv, "--json", "bench", "produce", topic, "-c", "300", "-s", "64"))
    )
    assert produced["sent"] == 300 and produced["latency_p99_ms"] > 0
    # A group consumes the whole topic: then its lag is 0 on every queue.
    group = unique("cli_bench")
    with rocketmq_sync.Admin(namesrv) as admin:
        # A broker answers a send once the message is in its commit log; the queues'
        # offsets move a moment later (the broker dispatches in the background, late
        # on a loaded machine): read them until two reads agree.
        def stored() -> int:
            return sum(o.max_offset - o.min_offset for o in admin.topic_offsets(topic))

        total, previous = stored(), -1
        while total != previous:
            time.sleep(0.5)
            total, previous = stored(), total
    bench = run(
        namesrv,
        *("--json", "bench", "consume", topic, "-g", group),
        *("--from", "first", "-c", str(total), "-d", "60"),
    )
    consumed = json.loads(ok(bench))
    assert consumed["received"] >= total
    lag = json.loads(ok(run(namesrv, "--json", "lag", group, "-t", topic)))
    # (What the consumer logged is its account of a lag left: a commit that failed.)
    assert lag["group"] == group and lag["total_lag"] == 0 and len(lag["queues"]) >= 2, (
        f"stored {total}; consumed {consumed}; lagging queues "
        f"{[q for q in lag['queues'] if q.get('lag')]}; total lag {lag.get('total_lag')}; "
        f"the consumer's log: {bench.stderr[-4000:]!r}"
    )
    assert sum(q["consumer_offset"] for q in lag["queues"]) == total
    assert f"group {group}: total lag 0" in ok(run(namesrv, "lag", group))
    # The cluster: every member, as Admin lists them.
    rows = json.loads(ok(run(namesrv, "--json", "cluster")))
    with rocketmq_sync.Admin(namesrv) as admin:
        members = {(r.broker_name, r.addr) for r in admin.cluster_list()}
    assert {(r["broker"], r["addr"]) for r in rows} == members
    assert all(r["version"] and r["error"] is None for r in rows)
    assert all(r["addr"] in ok(run(namesrv, "cluster")) for r in rows)


def test_tail_idle_and_lag_watch_count_stop_by_themselves(namesrv: str) -> None:
    """The bounded forms of the two commands that otherwise run until Ctrl-C."""
    fresh = unique("CliIdle")
    ok(run(namesrv, "topic", "create", fresh, "-q", "2"))
    with rocketmq_sync.Admin(namesrv) as admin:
        deadline = time.monotonic() + 20
        while len(admin.topic_route(fresh).queue_datas) < 2:
            assert time.monotonic() < deadline, "no route for the new topic"
            time.sleep(0.2)
    ok(run(namesrv, "send", fresh, "a", "b", "c"))
    # --idle: what the topic holds, then a stop (exit 0) once nothing new comes.
    began = time.monotonic()
    backlog = json_lines(
        ok(run(namesrv, "--json", "tail", fresh, "--from", "first", "--idle", "1"))
    )
    assert sorted(d["body"] for d in backlog) == ["a", "b", "c"]
    assert time.monotonic() - began < 20
    # From the end: nothing new, so nothing printed.
    assert ok(run(namesrv, "tail", fresh, "--idle", "0.5")) == ""
    # --count comes first when it is reached first.
    first_two = run(namesrv, "--json", "tail", fresh, "--from", "first", "-c", "2", "--idle", "30")
    assert len(json_lines(ok(first_two))) == 2
    zero = run(namesrv, "tail", fresh, "--idle", "0")
    assert zero.exit_code == 2 and "--idle" in zero.output
    # lag --watch --count N: N refreshes (here JSON documents), then exit 0.
    group = unique("cli_watch")
    consume = ("-g", group, "--from", "first", "-c", "3", "-d", "60")
    ok(run(namesrv, "bench", "consume", fresh, *consume))
    began = time.monotonic()
    docs = json_lines(
        ok(run(namesrv, "--json", "lag", group, "-t", fresh, "--watch", "-i", "0.5", "-c", "3"))
    )
    assert [d["total_lag"] for d in docs] == [0, 0, 0]
    assert 1.0 <= time.monotonic() - began < 20  # two pauses, none after the last
    table = ok(run(namesrv, "lag", group, "-t", fresh, "-w", "-i", "0.5", "-c", "2"))
    assert table.count(f"group {group}: total lag 0") == 2
    alone = run(namesrv, "lag", group, "-c", "2")
    assert alone.exit_code == 2 and "--count goes with --watch" in alone.output
    run(namesrv, "topic", "delete", fresh, "--yes")


def test_bad_input_and_failures_give_one_line_and_their_exit_code(namesrv: str, topic: str) -> None:
    nowhere = run(None, "cluster")
    assert nowhere.exit_code == 2 and "NAMESRV_ADDR" in nowhere.output
    for command in (["topic", "--help"], ["topic", "create", "--help"], ["tail", "-h"]):
        helped = run(None, *command)  # help needs no name server
        assert helped.exit_code == 0 and "Usage:" in helped.output, (command, helped.output)
    unknown = run(namesrv, "topic", "frobnicate")
    assert unknown.exit_code == 2 and "No such command" in unknown.output
    bad_topic = run(namesrv, "send", "bad topic!", "x")
    assert bad_topic.exit_code == 2 and "'bad topic!'" in one_error_line(bad_topic)
    bad_time = run(namesrv, "tail", topic, "--from", "yesterday-ish")
    assert bad_time.exit_code == 2 and "is no time" in bad_time.output
    both = run(namesrv, "tail", topic, "--tag", "a", "--sql", "a > 1")
    assert both.exit_code == 2 and "do not go together" in both.output
    bad_pair = run(namesrv, "send", topic, "x", "-p", "novalue")
    assert bad_pair.exit_code == 2 and "KEY=VALUE" in bad_pair.output
    bad_id = run(namesrv, "message", "show", "not-an-id")
    assert bad_id.exit_code == 2 and "not an offset message id" in one_error_line(bad_id)
    no_group = run(namesrv, "lag", unique("nogroup"))
    assert no_group.exit_code == 1 and "known to no broker" in one_error_line(no_group)
    unreachable = run("127.0.0.1:1", "--timeout", "1", "topic", "list")
    assert unreachable.exit_code == 3
    assert "127.0.0.1:1" in one_error_line(unreachable)


def cli_process(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rocketmq_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        **kwargs,
    )


def test_the_command_runs_as_a_process(namesrv: str, topic: str) -> None:
    done = cli_process("--namesrv", namesrv, "--json", "cluster")
    assert done.returncode == 0, done.stderr
    assert {r["cluster"] for r in json.loads(done.stdout)} == {"DefaultCluster"}
    failed = cli_process("--namesrv", namesrv, "topic", "route", unique("CliNone"))
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("rocketmq: error: ") and "Traceback" not in failed.stderr
    helped = cli_process("--help")
    assert helped.returncode == 0 and "130 interrupted" in helped.stdout


# ------------------------------------------------------------ live display

TMUX = shutil.which("tmux")


class Pane:
    """A command running in a detached tmux session, its screen read back."""

    def __init__(self, command: str) -> None:
        assert TMUX, "tmux is needed to check the live display in a terminal"
        self.name = unique("rocketmq_cli")
        env = f"PYTHONPATH={ROOT} NAMESRV_ADDR="
        shell = f"{env} {sys.executable} -m rocketmq_cli {command}; echo EXIT=$?; sleep 60"
        subprocess.run(
            [TMUX, "new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", shell],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            [TMUX, "capture-pane", "-p", "-t", self.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, f"{text!r} never showed:\n{screen}"
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        subprocess.run([TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run([TMUX, "kill-session", "-t", self.name], check=False)


def test_bench_shows_its_rate_live_then_the_summary(namesrv: str, topic: str) -> None:
    pane = Pane(f"--namesrv {namesrv} bench produce {topic} --duration 4 --concurrency 8")
    try:
        live = pane.wait_for("msg/s now", 20)
        assert "EXIT=" not in live  # shown while it runs
        line = next(x for x in live.splitlines() if "msg/s now" in x)
        assert line.startswith("produce: ") and "msgs" in line and "overall" in line
        final = pane.wait_for("EXIT=", 30)
    finally:
        pane.close()
    assert "EXIT=0" in final
    summary = next(x for x in final.splitlines() if x.startswith("sent "))
    assert " msg/s, 0 failed" in summary


def test_tail_streams_in_a_terminal_and_ctrl_c_stops_it(namesrv: str, topic: str) -> None:
    pane = Pane(f"--namesrv {namesrv} tail {topic} --from last")
    marker = unique("live")
    try:
        time.sleep(3)  # tail started and sought the ends of the queues
        with rocketmq_sync.Producer(namesrv) as producer:
            for i in range(3):
                producer.send(Message(topic, f"{marker}-{i}".encode()))
        screen = pane.wait_for(f"{marker}-2", 20)
        shown = [line for line in screen.splitlines() if marker in line]
        assert len(shown) == 3 and "EXIT=" not in screen
        pane.keys("C-c")
        final = pane.wait_for("EXIT=", 20)
    finally:
        pane.close()
    assert "tail stopped after 3 messages" in final and "EXIT=130" in final
    assert "Traceback" not in final
