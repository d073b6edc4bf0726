"""A gevent WSGI app whose handlers share one gevent Producer (run by test_gevent_wsgi.py).

    python gevent_wsgi.py NAMESRV TOPIC REQUESTS patch|nopatch

Serves on 127.0.0.1, fires REQUESTS concurrent HTTP requests at itself from
greenlets, and prints one JSON line: how many produced, their message ids, and
every time gevent's monitor saw the hub blocked for more than 100 ms.
"""

from __future__ import annotations

import sys

if sys.argv[4] == "patch":
    from gevent import monkey

    monkey.patch_all()

import json
from pathlib import Path

import gevent
import gevent.events
import gevent.socket
import zope.event  # type: ignore[import-untyped]
from gevent.pywsgi import WSGIServer

gevent.config.monitor_thread = True
gevent.config.max_blocking_time = 0.1

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rocketmq_gevent import Message, Producer  # noqa: E402

NAMESRV, TOPIC, REQUESTS = sys.argv[1], sys.argv[2], int(sys.argv[3])
blocked: list[str] = []


def on_event(event: object) -> None:
    # Only blocking with the client's own code on the stack counts: this program's HTTP
    # greenlets and the WSGI server are not what is under test.
    if isinstance(event, gevent.events.EventLoopBlocked):
        report = "".join(event.info)
        # The report is the blocked greenlet's stack, then a tree of every greenlet.
        stack = report.split("Blocked Stack", 1)[-1]
        stack = stack.split("+---", 1)[0].split("Greenlet tree", 1)[0]
        if "rocketmq_" in stack:
            blocked.append(f"blocked {event.blocking_time:.3f}s in: {stack[-1500:]}")


zope.event.subscribers.append(on_event)

# Generous timeouts: what is measured here is the hub, not a busy machine's latency.
producer = Producer(NAMESRV, group="wsgi-producer", send_timeout=30.0, request_timeout=30.0)
producer.start()


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    path = str(environ["PATH_INFO"])
    try:
        result = producer.send(Message(TOPIC, path.encode(), keys=[path.strip("/")]))
    except Exception as exc:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [repr(exc).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [result.msg_id.encode()]


server = WSGIServer(("127.0.0.1", 0), app, log=None)
server.start()
port = server.server_port


def fetch(i: int) -> str:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(f"GET /req-{i} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(body.decode(errors="replace") or head.decode(errors="replace"))
    return body.decode()


jobs = [gevent.spawn(fetch, i) for i in range(REQUESTS)]
gevent.joinall(jobs, timeout=120)
ids = [job.value for job in jobs if job.successful()]
errors = [repr(job.exception) for job in jobs if job.ready() and not job.successful()]
server.stop()
producer.close()
gevent.sleep(0.3)  # let the monitor thread report the last interval
print(json.dumps({"produced": len(ids), "ids": ids, "errors": errors[:5], "blocked": blocked}))
