"""Every log record the client writes carries structured ``rocketmq_*`` fields:
checked on the source (each logging call passes ``extra=``, built by
``log_fields`` or naming ``rocketmq_*`` keys), and on what ``log_fields`` makes."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from rocketmq_proto.message.model import Message
from rocketmq_proto.wire.logfields import log_fields
from rocketmq_proto.wire.route import MessageQueue

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rocketmq_proto", "rocketmq_asyncio", "rocketmq_sync", "rocketmq_gevent")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def logging_calls(path: Path) -> list[ast.Call]:
    """The calls ``<logger>.<level>(...)`` in a module, where the logger is named
    ``log``, ``_log``, ``logger`` or ``self._log``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in LEVELS:
            continue
        target = node.func.value
        name = (
            target.id
            if isinstance(target, ast.Name)
            else target.attr
            if isinstance(target, ast.Attribute)
            else ""
        )
        if name in ("log", "_log", "logger"):
            found.append(node)
    return found


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_scan_finds_the_clients_logging_calls() -> None:
    assert sum(len(logging_calls(p)) for p in sources()) > 100


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_logging_call_passes_structured_fields(path: Path) -> None:
    missing = []
    for call in logging_calls(path):
        extra = next((k.value for k in call.keywords if k.arg == "extra"), None)
        ok = False
        if isinstance(extra, ast.Call):
            func = extra.func
            named = (isinstance(func, ast.Name) and func.id.endswith("log_fields")) or (
                isinstance(func, ast.Attribute) and func.attr.endswith("log_fields")
            )
            ok = named and bool(extra.keywords)  # log_fields() alone names nothing
        elif isinstance(extra, ast.Dict):
            ok = bool(extra.keys) and all(
                isinstance(k, ast.Constant) and str(k.value).startswith("rocketmq_")
                for k in extra.keys
            )
        elif isinstance(extra, ast.Name):  # a dict of fields built just before
            ok = True
        if not ok:
            missing.append(f"line {call.lineno}")
    assert not missing, f"{path.relative_to(ROOT)}: logging calls without fields: {missing}"


def test_log_fields_names_what_is_known_and_leaves_out_the_rest() -> None:
    mq = MessageQueue("T", "broker-a", 3)
    assert log_fields(queue=mq, group="G", client="c1", addr="h:1") == {
        "rocketmq_topic": "T",
        "rocketmq_broker": "broker-a",
        "rocketmq_queue_id": 3,
        "rocketmq_group": "G",
        "rocketmq_client": "c1",
        "rocketmq_addr": "h:1",
    }
    assert log_fields(topic=None, msg_ids=("a", "b"), request="SEND_MESSAGE") == {
        "rocketmq_msg_ids": ["a", "b"],
        "rocketmq_request": "SEND_MESSAGE",
    }


def test_a_record_carries_the_fields_of_its_place(caplog: pytest.LogCaptureFixture) -> None:
    """A send attempt that failed and was retried elsewhere: its record names the
    client, the group, the queue and the address it went to."""
    from rocketmq_proto.wire.errors import ConnectionClosedError

    from .flowsim import Sim
    from .test_producer_core import BROKERS, Broker, make_producer

    broker = Broker()
    broker.failing["broker-a"] = ConnectionClosedError("down")
    core = make_producer()
    sim = Sim(broker)
    with caplog.at_level(logging.INFO, logger="rocketmq_proto.producer"):
        for _ in range(2):  # one of the two goes to broker-a first
            sim.run(core.send_flow(Message("T", b"x")))
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    fields = {k: v for k, v in vars(record).items() if k.startswith("rocketmq_")}
    assert fields == {
        "rocketmq_client": core.client.client_id,
        "rocketmq_group": "G",
        "rocketmq_topic": "T",
        "rocketmq_broker": "broker-a",
        "rocketmq_queue_id": fields["rocketmq_queue_id"],
        "rocketmq_addr": BROKERS["broker-a"],
    }
