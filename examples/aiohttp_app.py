"""An aiohttp web app that sends one RocketMQ message per HTTP request.

    pip install aiohttp rocketmq-remoting
    python examples/aiohttp_app.py --namesrv 127.0.0.1:9876 --topic Orders --port 8080

(From a clone, without installing the package: ``PYTHONPATH=. python examples/aiohttp_app.py``.)
The name server defaults to ``$ROCKETMQ_NAMESRV``, else 127.0.0.1:9876; the topic
must exist. The app listens on 127.0.0.1 only.

    curl -X POST --data '{"order": 42}' -H 'Content-Type: application/json' \\
        http://127.0.0.1:8080/orders

``POST /orders`` sends the request's body, as it is, to the topic and answers
``{"msg_id": ..., "queue": {"broker": ..., "queue_id": ...}, "offset": ...}``; an
error of the client (no route, a broker that refused, a timeout...) answers 503
with its text, an empty body 400.

One ``rocketmq_asyncio.Producer`` serves every request: it is started once when the
app starts (a ``cleanup_ctx`` generator) and closed when the app stops. Ctrl-C or
SIGTERM stops the server: aiohttp lets the requests being handled finish, then
runs the cleanup, whose ``close()`` also waits for any send still in flight (up
to 5 s) before closing the connections.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from rocketmq_asyncio import InvalidMessageError, Message, Producer, RocketMQError

log = logging.getLogger("aiohttp_app")

NAMESRV = web.AppKey("namesrv", str)
TOPIC = web.AppKey("topic", str)
PRODUCER = web.AppKey("producer", Producer)


async def rocketmq_producer(app: web.Application) -> AsyncIterator[None]:
    """Start the producer with the app, close it when the app stops."""
    producer = Producer(app[NAMESRV], group="aiohttp-orders")
    await producer.start()
    app[PRODUCER] = producer
    log.info("producer started (name server %s, topic %s)", app[NAMESRV], app[TOPIC])
    yield
    await producer.close()  # finishes the sends in flight first (up to 5 s)
    sends = producer.stats()["sends"]
    log.info("producer closed: %d messages sent, %d failed", sends["ok"], sends["failed"])


async def post_order(request: web.Request) -> web.Response:
    body = await request.read()
    if not body:
        return web.json_response({"error": "empty body"}, status=400)
    message = Message(request.app[TOPIC], body)
    try:
        result = await request.app[PRODUCER].send(message)
    except InvalidMessageError as exc:  # refused before sending: the request's fault
        return web.json_response({"error": str(exc)}, status=400)
    except RocketMQError as exc:
        log.warning("send failed: %s", exc)
        return web.json_response({"error": str(exc)}, status=503)
    return web.json_response(
        {
            "msg_id": result.msg_id,
            "queue": {
                "broker": result.message_queue.broker_name,
                "queue_id": result.message_queue.queue_id,
            },
            "offset": result.queue_offset,
        }
    )


def make_app(namesrv: str, topic: str) -> web.Application:
    app = web.Application()
    app[NAMESRV] = namesrv
    app[TOPIC] = topic
    app.cleanup_ctx.append(rocketmq_producer)
    app.router.add_post("/orders", post_order)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namesrv", default=os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876")
    parser.add_argument("--topic", default="Orders")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(make_app(args.namesrv, args.topic), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
