"""The worker examples (examples/thread_pool_worker.py, transactional_outbox.py,
orderly_consumer.py, simple_consumer_worker.py) run as a user runs them, in a
Python process of their own, against the real cluster.

Each test gives its example a fresh topic (on both brokers) and its own groups,
reads the summary the example prints last (a JSON line), and checks what it
reports, then what the brokers (and, for the outbox, the sqlite file) say
independently of the example: messages stored, offsets committed, what a key
lookup finds, that nothing unacked is left. One more test stops a worker with
SIGTERM half way and checks that it shut down cleanly, committing no offset
past what its handlers finished.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync

from .backends import wait_for

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Seconds an example may run before it is killed (and its test fails).
RUN_TIMEOUT = 150.0
STEPS = ["created", "paid", "shipped"]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def ns(rocketmq_cluster: Any) -> str:
    return str(rocketmq_cluster.namesrv_addr)


@pytest.fixture(scope="module")
def admin(ns: str) -> Iterator[rocketmq_sync.Admin]:
    with rocketmq_sync.Admin(ns, request_timeout=10.0) as made:
        yield made


def new_topic(admin: rocketmq_sync.Admin, prefix: str, queues: int = 4) -> str:
    """A topic of ``queues`` queues on each of the two brokers, its route known."""
    topic = unique(prefix)
    admin.create_topic(topic, read_queue_nums=queues, write_queue_nums=queues)
    wait_for(lambda: len(admin.topic_route(topic).queue_datas) == 2, 30, "the route")
    return topic


def _env() -> dict[str, str]:
    # The examples import the packages of this checkout, as the tests do.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_example(name: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``examples/<name>`` to its end; (its final JSON summary, its stdout).
    Fails unless it exits 0 within ``RUN_TIMEOUT``."""
    command = [sys.executable, str(EXAMPLES / name), *args]
    started = time.monotonic()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env=_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"{name} still ran after {RUN_TIMEOUT} s\n{_tail(out)}\n{_tail(err)}")
    print(f"{name} took {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, (
        f"{name} exited {done.returncode}\nstdout:\n{_tail(done.stdout)}\n"
        f"stderr:\n{_tail(done.stderr)}"
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stdout


def stored(admin: rocketmq_sync.Admin, topic: str) -> int:
    """Messages the brokers hold in ``topic``."""
    return sum(o.max_offset - o.min_offset for o in admin.topic_offsets(topic))


def committed_offsets(admin: rocketmq_sync.Admin, group: str, topic: str) -> dict[Any, int]:
    """The consumer offset ``group`` committed for each queue of ``topic`` (0 if none)."""
    offsets = {}
    for entry in admin.topic_offsets(topic):
        offset = admin.consumer_offset(group, entry.message_queue)
        offsets[entry.message_queue] = offset if offset is not None and offset > 0 else 0
    return offsets


def test_thread_pool_worker_processes_every_job_on_several_threads(
    ns: str, admin: rocketmq_sync.Admin
) -> None:
    """40 jobs sent from 4 threads, each taking 50 ms in a handler run on up to 6
    consume threads: every job processed once, by several threads at once but
    never more than 6; the brokers hold the 40 messages and the group's offsets
    cover all of them."""
    topic = new_topic(admin, "ExPool")
    group = unique("expool")
    summary, _ = run_example(
        "thread_pool_worker.py",
        *("--namesrv", ns, "--topic", topic, "--group", group, "--count", "40"),
        *("--workers", "6", "--producer-threads", "4", "--work-ms", "50", "--timeout", "90"),
    )
    assert summary["complete"] is True and summary["stopped_by"] is None
    assert summary["sent"] == 40 and summary["processed"] == 40, summary
    assert summary["duplicates"] == 0 and summary["earlier_runs_ignored"] == 0, summary
    assert summary["sender_threads"] >= 2, summary
    assert sum(summary["per_thread"].values()) == 40, summary
    # Handlers block (sleep), so the consumer's pool grew, up to consume_thread_max.
    assert 2 <= summary["threads"] <= 6, summary
    assert 2 <= summary["max_concurrent"] <= 6, summary
    # The brokers: 40 messages stored, and the group's committed offsets past each.
    assert stored(admin, topic) == 40
    offsets = committed_offsets(admin, group, topic)
    ends = {o.message_queue: o.max_offset for o in admin.topic_offsets(topic)}
    assert offsets == ends, f"committed {offsets}, stored up to {ends}"


def test_thread_pool_worker_stops_cleanly_on_sigterm(
    ns: str, admin: rocketmq_sync.Admin, tmp_path: Path
) -> None:
    """SIGTERM while 4 threads work through 300 jobs of 200 ms: the worker lets its
    running handlers finish, exits 130 within a few seconds with its summary, and
    the offsets it committed cover no job it did not process (what is left is
    consumed by the next run)."""
    topic = new_topic(admin, "ExPoolTerm", queues=2)
    group = unique("expoolterm")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(
            [
                *(sys.executable, str(EXAMPLES / "thread_pool_worker.py"), "--namesrv", ns),
                *("--topic", topic, "--group", group, "--count", "300", "--workers", "4"),
                *("--work-ms", "200", "--timeout", "90"),
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
        try:
            wait_for(lambda: "progress: " in out_path.read_text(), 60, "jobs processed")
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    took = time.monotonic() - signalled
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert process.returncode == 130, f"exit {process.returncode}\n{_tail(stdout)}\n{_tail(stderr)}"
    assert took < 10, f"{took:.1f} s from SIGTERM to exit"
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "SIGTERM" and summary["complete"] is False
    assert 0 < summary["processed"] < 300, summary
    assert summary["sent"] == 300 and stored(admin, topic) == 300
    committed = sum(committed_offsets(admin, group, topic).values())
    # Offsets move past a message only once its handler finished (and they were
    # committed when the consumer closed: not a job lost, none done twice needlessly).
    assert 0 < committed <= summary["processed"], (committed, summary["processed"])


def test_transactional_outbox_delivers_only_what_the_database_kept(
    ns: str, admin: rocketmq_sync.Admin, tmp_path: Path
) -> None:
    """A new order commits; the same order again fails the primary key and rolls
    back; a stored order whose outcome is lost is committed by the check-back,
    which found it in sqlite. The consumer gets the two committed events once
    each, never the rolled-back one; the database and the brokers agree."""
    topic = new_topic(admin, "ExOutbox", queues=2)
    db = tmp_path / "orders.db"
    summary, _ = run_example(
        "transactional_outbox.py",
        *("--namesrv", ns, "--topic", topic, "--db", str(db), "--settle", "1"),
        *("--group", unique("exoutbox"), "--consumer-group", unique("exoutbox_c")),
        *("--timeout", "90"),
    )
    first, duplicate, lost = summary["orders"]
    assert first["local_state"] == "COMMIT" and first["db_error"] is None, first
    assert duplicate["order_id"] == first["order_id"]
    assert duplicate["local_state"] == "ROLLBACK", duplicate
    assert "UNIQUE" in duplicate["db_error"], duplicate
    assert lost["local_state"] == "UNKNOWN" and lost["db_error"] is None, lost
    # The broker asked about the lost outcome; the checker found the order: COMMIT.
    answers = {(c["msg_id"], c["answer"]) for c in summary["checks"]}
    assert (lost["msg_id"], "COMMIT") in answers, summary["checks"]
    asked_of_duplicate = [c for c in summary["checks"] if c["msg_id"] == duplicate["msg_id"]]
    assert all(c["answer"] != "COMMIT" for c in asked_of_duplicate), asked_of_duplicate
    consumed = sorted(c["msg_id"] for c in summary["consumed"])
    assert consumed == sorted([first["msg_id"], lost["msg_id"]]), summary["consumed"]
    assert duplicate["msg_id"] not in consumed
    assert summary["ok"] is True and summary["rolled_back"] == [duplicate["msg_id"]]
    # The database: two orders, each with its event's id in the outbox.
    with closing(sqlite3.connect(db)) as conn:
        rows = sorted(conn.execute("SELECT order_id, msg_id FROM outbox"))
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    assert rows == sorted(
        [(first["order_id"], first["msg_id"]), (lost["order_id"], lost["msg_id"])]
    )
    # The brokers: the topic holds the two committed events; a lookup of the
    # duplicated order's key finds only the committed one.
    assert stored(admin, topic) == 2
    found = wait_for(
        lambda: admin.query_messages(topic, first["order_id"]), 30, "the first order's event"
    )
    assert [m.msg_id for m in found] == [first["msg_id"]]
    assert [m.msg_id for m in admin.query_messages(topic, lost["order_id"])] == [lost["msg_id"]]


def test_orderly_consumer_handles_each_orders_steps_in_order(
    ns: str, admin: rocketmq_sync.Admin
) -> None:
    """8 orders' steps interleaved over 8 queues and consumed orderly: every
    order's steps handled created, paid, shipped, never two handlers for one
    order at once; the step that failed once paused its queue and came back
    (reconsume count 1) before that order's next step. At the brokers each
    order's three messages sit in one queue, in step order."""
    topic = new_topic(admin, "ExOrderly")
    group = unique("exorderly")
    summary, _ = run_example(
        "orderly_consumer.py",
        *("--namesrv", ns, "--topic", topic, "--group", group, "--orders", "8"),
        *("--timeout", "90"),
    )
    assert summary["sent"] == 24 and summary["complete_orders"] == 8, summary
    assert summary["in_order"] is True, summary["violations"]
    assert summary["violations"] == [] and summary["overlaps"] == 0, summary
    assert summary["one_queue_per_order"] is True, summary["queues"]
    attempts = summary["flaky_attempts"]
    assert len(attempts) >= 2 and attempts[0]["reconsume_times"] == 0, attempts
    assert attempts[1]["reconsume_times"] >= 1, attempts
    assert summary["flaky_order_steps"][:3] == STEPS, summary["flaky_order_steps"]

    # The brokers: each order's steps stored in one queue, in order; all consumed.
    def three_steps(order: str) -> list[Any] | None:
        found = admin.query_messages(topic, order)
        return found if len(found) == 3 else None

    assert len(summary["queues"]) == 8
    for order, (queue,) in summary["queues"].items():
        found = wait_for(functools.partial(three_steps, order), 30, f"{order}'s steps")
        assert {f"{m.broker_name}/{m.queue_id}" for m in found} == {queue}, order
        in_queue_order = sorted(found, key=lambda m: m.queue_offset)
        assert [m.tags for m in in_queue_order] == STEPS, order
    offsets = committed_offsets(admin, group, topic)
    ends = {o.message_queue: o.max_offset for o in admin.topic_offsets(topic)}
    assert offsets == ends, f"committed {offsets}, stored up to {ends}"


def test_simple_consumer_worker_acks_every_job_and_a_failed_one_comes_back(
    ns: str, admin: rocketmq_sync.Admin
) -> None:
    """6 jobs received with a 3 s invisible duration; job 2 fails once and is not
    acked: it comes back after its invisible time, reconsume count 1, and is then
    acked with the others. Afterwards the group receives nothing more: every job
    was acked."""
    topic = new_topic(admin, "ExPop", queues=2)
    group = unique("expop")
    summary, _ = run_example(
        "simple_consumer_worker.py",
        *("--namesrv", ns, "--topic", topic, "--group", group, "--count", "6"),
        *("--fail-job", "2", "--invisible", "3", "--timeout", "90"),
    )
    assert summary["sent"] == 6 and summary["acked"] == 6, summary
    assert summary["duplicates"] == 0, summary
    (failure,) = summary["failures"]
    assert failure["job"] == 2 and failure["reconsume_times"] == 0, failure
    (back,) = summary["redeliveries"]
    assert back["job"] == 2 and back["msg_id"] == failure["msg_id"], back
    assert back["reconsume_times"] >= 1, back
    assert back["back_after_s"] >= 2.5, back  # not before its invisible time was over
    assert stored(admin, topic) == 6
    # Nothing unacked is left: a receive of the group gets nothing for longer
    # than the invisible duration of the example's last receipts.
    late: list[Any] = []
    consumer = rocketmq_sync.SimpleConsumer(ns, group=group, await_duration=2.0)
    consumer.subscribe(topic)
    with consumer:
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            late += consumer.receive(16, invisible_duration=30, wait=1.5)
    assert late == [], [(m.msg_id, m.body, m.reconsume_times) for m in late]
