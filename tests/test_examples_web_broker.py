"""The web examples, run as their docstrings say, against the real cluster.

examples/aiohttp_app.py (``python examples/aiohttp_app.py``) and
examples/gunicorn_gevent_app.py (``gunicorn -c examples/gunicorn_conf.py -k gevent -w 2``)
each serve on a free 127.0.0.1 port; every message id they answer with is looked
up at the brokers, then SIGTERM must stop them cleanly with their producers closed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import rocketmq_sync
from rocketmq_proto import QueryNotFoundError, RocketMQError

from .backends import wait_for

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
#: Seconds a server has to answer its first request, and to exit after SIGTERM.
START_WAIT = 60.0
STOP_WAIT = 30.0
#: No proxy from the environment: every request goes to 127.0.0.1 directly.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def new_topic(admin: rocketmq_sync.Admin, prefix: str) -> str:
    topic = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin.create_topic(topic, read_queue_nums=2, write_queue_nums=2)

    def on_both_brokers() -> bool:
        try:
            return len(admin.topic_route(topic).queue_datas) == 2
        except RocketMQError:  # not on the name server yet
            return False

    wait_for(on_both_brokers, 30, f"the route of {topic} on both brokers")
    return topic


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, content_type: str = "text/plain") -> tuple[int, dict[str, Any]]:
    """POST ``body``: the status and the JSON answer (error statuses included)."""
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with HTTP.open(request, timeout=30) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, text = exc.code, exc.read()
    try:
        return status, json.loads(text)
    except ValueError:  # not the examples' JSON (a server's own error page): show it
        return status, {"not JSON": text.decode(errors="replace")}


class Server:
    """A server started as a subprocess in its own process group, its output in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until_answering(self, url: str) -> None:
        """Until ``url`` answers anything over HTTP (a GET: the examples answer 405)."""
        deadline = time.monotonic() + START_WAIT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the server exited ({self.proc.returncode}) before answering:\n"
                    + self.output()[-5000:]
                )
            try:
                with HTTP.open(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{url} did not answer within {START_WAIT:g} s; the server said:\n"
                    + self.output()[-5000:]
                )
            time.sleep(0.2)

    def terminate(self) -> int:
        """SIGTERM, then its exit code (fails if it is still running after STOP_WAIT)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"still running {STOP_WAIT:g} s after SIGTERM; it said:\n" + self.output()[-5000:]
            )

    def kill(self) -> None:
        """Kill it and its process group (gunicorn's workers too) if it still runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_WAIT)


def stored_body(admin: rocketmq_sync.Admin, msg_id: str, topic: str) -> bytes:
    """The body the brokers hold for ``msg_id`` (waiting for their index of keys)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return admin.view_message(msg_id, topic=topic).body
        except QueryNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_aiohttp_app_sends_one_message_per_request(rocketmq_cluster: Any, tmp_path: Path) -> None:
    ns = rocketmq_cluster.namesrv_addr
    with rocketmq_sync.Admin(ns) as admin:
        topic = new_topic(admin, "WebAiohttp")
        port = free_port()
        url = f"http://127.0.0.1:{port}/orders"
        server = Server(
            [
                sys.executable,
                "examples/aiohttp_app.py",
                "--namesrv",
                ns,
                "--topic",
                topic,
                "--port",
                str(port),
            ],
            tmp_path / "aiohttp.log",
            env={},
        )
        try:
            server.wait_until_answering(url)
            # JSON and text bodies, five requests at a time.
            requests = [
                (json.dumps({"order": i}).encode(), "application/json")
                if i % 2
                else (f"order {i}".encode(), "text/plain")
                for i in range(10)
            ]
            bodies = [body for body, _ in requests]
            with ThreadPoolExecutor(max_workers=5) as pool:
                answers = list(pool.map(lambda r: post(url, *r), requests))
            for body, (status, answer) in zip(bodies, answers, strict=True):
                assert status == 200, answer
                assert answer["queue"]["broker"] in rocketmq_cluster.brokers, answer
                assert answer["queue"]["queue_id"] in (0, 1), answer
                assert answer["offset"] >= 0, answer
                assert stored_body(admin, answer["msg_id"], topic) == body, answer
            assert len({answer["msg_id"] for _, answer in answers}) == len(bodies)
            assert post(url, b"") == (400, {"error": "empty body"})

            assert server.terminate() == 0, server.output()[-5000:]
            output = server.output()
            tail = output[-5000:]
            assert "producer started" in output, tail
            # Logged once close() returned: the producer really closed, after every send.
            assert f"producer closed: {len(bodies)} messages sent, 0 failed" in output, tail
            assert "Traceback" not in output, tail
        finally:
            server.kill()


def test_aiohttp_app_answers_503_when_the_client_fails(tmp_path: Path) -> None:
    """A send that fails (no name server listens at the address) is a 503 with the error."""
    port, nowhere = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/orders"
    server = Server(
        [sys.executable, "examples/aiohttp_app.py", "--topic", "Orders", "--port", str(port)],
        tmp_path / "aiohttp.log",
        env={"ROCKETMQ_NAMESRV": f"127.0.0.1:{nowhere}"},  # the default of --namesrv
    )
    try:
        server.wait_until_answering(url)
        status, answer = post(url, b"order 1")
        assert status == 503, answer
        assert f"cannot connect to 127.0.0.1:{nowhere}" in answer["error"], answer
        assert server.terminate() == 0, server.output()[-5000:]
        assert "producer closed: 0 messages sent, 1 failed" in server.output(), server.output()
    finally:
        server.kill()


def test_gunicorn_gevent_app_sends_from_each_worker(rocketmq_cluster: Any, tmp_path: Path) -> None:
    ns = rocketmq_cluster.namesrv_addr
    with rocketmq_sync.Admin(ns) as admin:
        topic = new_topic(admin, "WebGunicorn")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = Server(
            [
                str(GUNICORN),
                "-c",
                "examples/gunicorn_conf.py",
                "-k",
                "gevent",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{port}",
                "examples.gunicorn_gevent_app:app",
            ],
            tmp_path / "gunicorn.log",
            env={"ROCKETMQ_NAMESRV": ns, "ROCKETMQ_TOPIC": topic},
        )
        try:
            server.wait_until_answering(url)
            # 20 at once, then one at a time until both workers have served some: the
            # second may still be importing the app during the burst (it takes a second).
            bodies = [f"order {i} of {topic}".encode() for i in range(20)]
            with ThreadPoolExecutor(max_workers=20) as pool:
                answers = list(pool.map(lambda b: post(url, b), bodies))
            deadline = time.monotonic() + START_WAIT
            while len({answer.get("worker") for _, answer in answers}) < 2:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
                bodies.append(f"order {len(bodies)} of {topic}".encode())
                answers.append(post(url, bodies[-1]))
            for body, (status, answer) in zip(bodies, answers, strict=True):
                assert status == 200, answer
                assert stored_body(admin, answer["msg_id"], topic) == body, answer
            assert len({answer["msg_id"] for _, answer in answers}) == len(bodies)
            workers = {answer["worker"] for _, answer in answers}
            assert len(workers) == 2, (
                f"{len(bodies)} requests in {START_WAIT:g} s, all served by {workers}:\n"
                + server.output()[-5000:]
            )

            assert server.terminate() == 0, server.output()[-5000:]
            output = server.output()
            started = {int(pid) for pid in re.findall(r"producer started in worker (\d+)", output)}
            closed = re.findall(
                r"producer closed in worker (\d+): (\d+) messages sent, (\d+) failed", output
            )
            tail = output[-5000:]
            # Each worker made its own producer, after the fork (not in the master), and
            # closed it once as it exited, after all of its sends.
            assert started == workers, tail
            assert server.proc.pid not in started, tail
            assert sorted(int(pid) for pid, _, _ in closed) == sorted(started), tail
            assert sum(int(sent) for _, sent, _ in closed) == len(bodies), tail
            assert all(failed == "0" for _, _, failed in closed), tail
            assert "Exception during worker exit" not in output, tail
            assert "Traceback" not in output, tail
        finally:
            server.kill()
