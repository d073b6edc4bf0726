"""The transactional outbox with RocketMQ transactional messages and sqlite3.

    python examples/transactional_outbox.py --namesrv 127.0.0.1:9876 --topic OrderEvents

An "order placed" event must reach the other services exactly when the order
is stored: never for an order the database refused, never lost for one it
kept. A ``TransactionProducer`` sends the event as a *half* message (no
consumer sees it yet), then runs the local transaction: one sqlite transaction
inserts the order and records the message id in an ``outbox`` table. The
database's answer decides the message: stored, COMMIT (delivered); refused
by a constraint, ROLLBACK (dropped).

When the broker never learns the outcome (the process died between the
database commit and telling the broker), it asks a producer of the group: the
check-back. The checker looks the message id up in sqlite: recorded, COMMIT;
absent, ROLLBACK; and UNKNOWN (ask again later) when it cannot tell, because
the database is unavailable or the message is so young that its local
transaction may still be running.

The run places three orders:

1. a new order: stored, its event committed;
2. the same order again (a client retrying, say): the primary key refuses it,
   its event is rolled back;
3. a new order stored whose outcome is "lost" (the local transaction returns
   UNKNOWN after the commit, as if the process had died there): the broker's
   check-back asks the checker, which finds the order and commits.

A push consumer (``rocketmq_sync``; the checker and the local transactions use
a sqlite connection per call, so any thread may run them) prints what it
receives: the events of the first and third orders, once each, never the
duplicate's. The run ends once both arrived and ``--settle`` more seconds
passed (the rolled-back event would never come anyway); it prints a summary,
its last line a JSON object. Exit status: 0 when exactly the committed events
were consumed, 1 otherwise or past ``--timeout``, 130 when stopped by Ctrl-C
or SIGTERM before that.

Brokers check unfinished transactions every ``transactionCheckInterval`` (60 s
by default) once they are ``transactionTimeOut`` old (6 s): the third order may
take a minute to arrive (the ``rocketmq-cluster`` launcher starts brokers
checking every second). The database is ``outbox-orders.db`` in the current
directory unless ``--db`` names another: it outlives the run, as an outbox must,
so that a check-back that comes after a restart (for an order whose outcome the
last run never told) still finds the order and commits its event.

Create the topic first: ``admin.create_topic("OrderEvents")`` with a
``rocketmq_sync.Admin(namesrv)`` (on every master of the cluster), or
``mqadmin updateTopic -c DefaultCluster -t OrderEvents``. A topic the brokers make on
the first send (``autoCreateTopicEnable``) reaches a consumer started before it
only at its next route refresh, up to 30 s later.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from contextlib import closing
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from rocketmq_sync import (
    Message,
    MessageExt,
    PushConsumer,
    TransactionProducer,
    TransactionState,
)

#: How long a local transaction may run: a half message younger than this, whose
#: order is not (yet) in the database, is answered UNKNOWN rather than ROLLBACK.
LOCAL_TRANSACTION_TIMEOUT = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    item     TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0)
);
CREATE TABLE IF NOT EXISTS outbox (
    msg_id   TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    topic    TEXT NOT NULL
);
"""


def read_event(message: MessageExt) -> dict[str, Any] | None:
    """The message's JSON object, or None for a body that is not one (a message this
    program did not send): skipped, never left to fail its handler over and over."""
    try:
        event = json.loads(message.body)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        print(f"skipped {message.msg_id}: its body is not a JSON object", flush=True)
        return None
    return event


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--namesrv",
        default=os.environ.get("ROCKETMQ_NAMESRV") or "127.0.0.1:9876",
        help="name server(s), 'host:port;host:port' (default: $ROCKETMQ_NAMESRV or %(default)s)",
    )
    parser.add_argument("--topic", default="OrderEvents")
    parser.add_argument("--group", default="outbox-orders", help="the producer group")
    parser.add_argument("--consumer-group", default="outbox-shipping")
    parser.add_argument(
        "--db", default="outbox-orders.db", help="the sqlite file (default: %(default)s)"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait at the end")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    return parser.parse_args(argv)


class OrderStore:
    """The service's database. A connection per call: the local transactions and
    the checker run on the client's threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)  # explicit BEGIN
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def place(self, order_id: str, item: str, quantity: int, msg_id: str, topic: str) -> None:
        """The order and its event's id in one database transaction; raises
        ``sqlite3.IntegrityError`` for an order the constraints refuse."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO orders (order_id, item, quantity) VALUES (?, ?, ?)",
                    (order_id, item, quantity),
                )
                db.execute(
                    "INSERT INTO outbox (msg_id, order_id, topic) VALUES (?, ?, ?)",
                    (msg_id, order_id, topic),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def order_of(self, msg_id: str) -> str | None:
        """The order whose event ``msg_id`` is, if the database has it."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT o.order_id FROM outbox AS x JOIN orders AS o USING (order_id)"
                " WHERE x.msg_id = ?",
                (msg_id,),
            ).fetchone()
        return None if row is None else str(row[0])

    def rows(self) -> list[tuple[str, str]]:
        """(order id, event message id) of every stored order."""
        with closing(self._connect()) as db:
            return [
                (str(order_id), str(msg_id))
                for order_id, msg_id in db.execute(
                    "SELECT order_id, msg_id FROM outbox ORDER BY order_id"
                )
            ]


@dataclass
class Order:
    order_id: str
    item: str
    quantity: int
    lose_outcome: bool = False  # the process "dies" after the database commit
    msg_id: str | None = None
    local_state: str | None = None
    db_error: str | None = None


def stored_events(store: OrderStore, orders: list[Order]) -> list[str]:
    """The message ids the database recorded for ``orders`` (it may hold others)."""
    ours = {order.order_id for order in orders}
    return [msg_id for order_id, msg_id in store.rows() if order_id in ours]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db_path = args.db
    store = OrderStore(db_path)
    run_id = uuid.uuid4().hex[:8]  # order ids of this run, so that reruns do not collide
    orders = [
        Order(f"order-{run_id}-1", "book", 1),
        Order(f"order-{run_id}-1", "book", 1),  # the same order again: refused
        Order(f"order-{run_id}-2", "lamp", 2, lose_outcome=True),
    ]
    lock = threading.Lock()
    checks: list[dict[str, Any]] = []
    consumed: list[dict[str, Any]] = []
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def local_transaction(message: Message, order: Order) -> TransactionState:
        # The id the consumers will see: the half message already has it.
        msg_id = message.msg_id
        assert msg_id is not None
        try:
            store.place(order.order_id, order.item, order.quantity, msg_id, message.topic)
        except sqlite3.IntegrityError as exc:  # refused: the event must never be seen
            order.db_error = str(exc)
            return TransactionState.ROLLBACK
        except sqlite3.Error as exc:  # did it commit? The check-back will find out
            order.db_error = str(exc)
            return TransactionState.UNKNOWN
        if order.lose_outcome:
            return TransactionState.UNKNOWN  # as if the process had died right here
        return TransactionState.COMMIT

    def check(message: MessageExt) -> TransactionState:
        """The broker asks about a half message whose outcome it never got."""
        try:
            order_id = store.order_of(message.msg_id)
        except sqlite3.Error:
            answer = TransactionState.UNKNOWN  # cannot tell now: the broker asks again
        else:
            age = time.time() - message.born_timestamp / 1000
            if order_id is not None:
                answer = TransactionState.COMMIT
            elif age < LOCAL_TRANSACTION_TIMEOUT:
                answer = TransactionState.UNKNOWN  # its local transaction may still run
            else:
                answer = TransactionState.ROLLBACK
        with lock:
            checks.append({"msg_id": message.msg_id, "keys": message.keys, "answer": answer.name})
        print(f"check-back for {message.msg_id} ({message.keys}): {answer.name}", flush=True)
        return answer

    def handle(messages: list[MessageExt]) -> None:
        for message in messages:
            event = read_event(message)
            if event is None or event.get("run") != run_id:
                continue  # left by an earlier run
            print(f"consumed: order {event['order_id']} placed ({message.msg_id})", flush=True)
            with lock:
                consumed.append({"order_id": event["order_id"], "msg_id": message.msg_id})

    started = time.monotonic()
    consumer = PushConsumer(
        args.namesrv, handle, group=args.consumer_group, consume_from_where="first"
    )
    consumer.subscribe(args.topic)
    with (
        consumer,
        TransactionProducer(args.namesrv, check, group=args.group) as producer,
    ):
        for order in orders:
            body = json.dumps(
                {"order_id": order.order_id, "item": order.item, "run": run_id}
            ).encode()
            message = Message(args.topic, body, tags="placed", keys=[order.order_id])
            result, state = producer.send_in_transaction(message, local_transaction, order)
            order.msg_id, order.local_state = result.msg_id, state.name
            if order.db_error:
                why = f" ({order.db_error})"
            elif order.lose_outcome:
                why = " (outcome lost on purpose: the broker will ask the checker)"
            else:
                why = ""
            print(f"order {order.order_id}: local transaction {state.name}{why}", flush=True)
        # Committed: by the local transaction, or once checked (answered from the database).
        expected = set(stored_events(store, orders))
        deadline = started + args.timeout
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if expected <= {c["msg_id"] for c in consumed}:
                    break
            stop.wait(0.1)
        settle_until = min(deadline, time.monotonic() + args.settle)
        while not stop.is_set() and time.monotonic() < settle_until:
            stop.wait(0.1)  # anything else arriving now would be a wrong delivery
    with lock:
        consumed_ids = [c["msg_id"] for c in consumed]
        answered = list(checks)
    committed = stored_events(store, orders)
    rolled_back = [o.msg_id for o in orders if o.msg_id not in committed]
    ok = sorted(consumed_ids) == sorted(committed) and not set(rolled_back) & set(consumed_ids)
    summary = {
        "example": "transactional_outbox",
        "topic": args.topic,
        "db": db_path,
        "orders": [asdict(order) for order in orders],
        "checks": answered,
        "consumed": consumed,
        "committed": committed,
        "rolled_back": rolled_back,
        "ok": ok,
        "seconds": round(time.monotonic() - started, 2),
        "stopped_by": stopped_by[0] if stopped_by else None,
    }
    print(
        f"{len(committed)} orders stored and their events consumed once each: {ok}; "
        f"{len(rolled_back)} event rolled back; {len(answered)} check-back(s)"
    )
    print(json.dumps(summary), flush=True)
    if ok:
        return 0
    return 130 if stopped_by else 1


if __name__ == "__main__":
    sys.exit(main())
