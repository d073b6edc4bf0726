"""A WSGI app for gunicorn's gevent workers that sends one RocketMQ message per request.

    pip install 'gunicorn[gevent]' 'rocketmq-remoting[gevent]'
    ROCKETMQ_NAMESRV=127.0.0.1:9876 ROCKETMQ_TOPIC=Orders \\
        gunicorn -c examples/gunicorn_conf.py -k gevent -w 2 -b 127.0.0.1:8000 \\
        examples.gunicorn_gevent_app:app

Run it from the root of a clone (gunicorn puts the current directory on
``sys.path``, so ``examples.gunicorn_gevent_app`` and the client's packages are
found there). ``ROCKETMQ_NAMESRV`` defaults to 127.0.0.1:9876, ``ROCKETMQ_TOPIC``
to ``Orders`` (the topic must exist).

    curl -X POST --data 'order 42 paid' http://127.0.0.1:8000/

Each ``POST`` sends its body, as it is, to the topic and answers
``{"msg_id": ..., "worker": <pid>}``; an error of the client answers 503 with
its text, an empty body 400.

Each worker process has one ``rocketmq_gevent.Producer``, shared by all its
greenlets: it is made on the worker's first request, so after gunicorn forked the
worker (a client is never carried across a fork), and closed when the worker
exits by the ``worker_exit`` hook in ``examples/gunicorn_conf.py``, which also
sends this module's log lines to stderr. ``close()`` lets the sends in flight
finish (up to 5 s) first. SIGTERM to the gunicorn master stops it gracefully:
each worker finishes its requests, then exits and closes its producer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from gevent.lock import Semaphore

from rocketmq_gevent import InvalidMessageError, Message, Producer, RocketMQError

NAMESRV = os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876"
TOPIC = os.environ.get("ROCKETMQ_TOPIC") or "Orders"

log = logging.getLogger(__name__)

_producer: Producer | None = None
_producer_pid = 0  # the process that made _producer
_lock = Semaphore()  # one greenlet makes the producer, the others wait for it


def get_producer() -> Producer:
    """This process's producer, made and started on first use."""
    global _producer, _producer_pid
    with _lock:
        if _producer is None or _producer_pid != os.getpid():  # none yet in this process
            producer = Producer(NAMESRV, group="gunicorn-orders")
            producer.start()
            _producer, _producer_pid = producer, os.getpid()
            log.info("producer started in worker %d (name server %s)", os.getpid(), NAMESRV)
        return _producer


def close_producer(timeout: float = 5.0) -> None:
    """Close this process's producer, if it made one (gunicorn_conf.py's worker_exit)."""
    global _producer
    with _lock:
        producer, _producer = _producer, None
    if producer is None or _producer_pid != os.getpid():
        return
    producer.close(timeout)  # finishes the sends in flight first
    sends = producer.stats()["sends"]
    log.info(
        "producer closed in worker %d: %d messages sent, %d failed",
        os.getpid(),
        sends["ok"],
        sends["failed"],
    )


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    def answer(status: str, document: dict[str, Any]) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(document).encode()]

    if environ["REQUEST_METHOD"] != "POST":
        return answer("405 Method Not Allowed", {"error": "POST a message body"})
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if not body:
        return answer("400 Bad Request", {"error": "empty body"})
    try:
        result = get_producer().send(Message(TOPIC, body))
    except InvalidMessageError as exc:  # refused before sending: the request's fault
        return answer("400 Bad Request", {"error": str(exc)})
    except RocketMQError as exc:
        log.warning("send failed: %s", exc)
        return answer("503 Service Unavailable", {"error": str(exc)})
    return answer("200 OK", {"msg_id": result.msg_id, "worker": os.getpid()})
