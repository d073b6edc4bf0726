"""Timer messages and broker releases: the producer checks the broker's version first.

Brokers older than 5.0.0 have no timers and deliver a timer message at once; the
producer learns each broker's release from the ``version`` of its responses and
refuses such a send before it is made (or, with ``timer_fallback="delay_level"``,
sends the nearest delay level of that broker instead).
"""

from __future__ import annotations

import json

import pytest

from rocketmq_proto import TimerFallback, TimerUnsupportedError
from rocketmq_proto.flows.producer import (
    DEFAULT_DELAY_LEVELS,
    TIMER_MIN_BROKER_VERSION,
    ProducerConfig,
    broker_release,
    nearest_delay_level,
    parse_delay_levels,
)
from rocketmq_proto.message.model import Message
from rocketmq_proto.message.properties import decode_properties
from rocketmq_proto.options import producer_settings
from rocketmq_proto.wire.codes import FLAG_RESPONSE, RequestCode, ResponseCode, SendStatus
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.errors import ConfigError, InvalidMessageError, RequestTimeoutError
from rocketmq_proto.wire.route import MessageQueue

from .flowsim import Sim
from .test_producer_core import NAMESRV, make_producer

BROKERS = {"broker-a": "127.0.0.1:10911", "broker-b": "127.0.0.1:10921"}
V4_9_7 = 407
V5_5_0 = 513
SHORT_LEVELS = " ".join(f"{n}s" for n in range(1, 19))  # the test clusters' table


def route_body() -> bytes:
    return json.dumps(
        {
            "brokerDatas": [
                {"cluster": "C", "brokerName": n, "brokerAddrs": {"0": a}}
                for n, a in BROKERS.items()
            ],
            "queueDatas": [
                {
                    "brokerName": n,
                    "readQueueNums": 4,
                    "writeQueueNums": 4,
                    "perm": 6,
                    "topicSysFlag": 0,
                }
                for n in BROKERS
            ],
        }
    ).encode()


class Brokers:
    """A name server and two brokers of given releases (``version`` per address)."""

    def __init__(self, version: int, *, levels: str | None = SHORT_LEVELS) -> None:
        self.version = dict.fromkeys(BROKERS.values(), version)
        self.levels = levels
        self.requests: list[tuple[str, RemotingCommand]] = []
        self.failing: set[str] = set()

    def answer(
        self, addr: str, code: int, fields: dict[str, str], body: bytes = b""
    ) -> RemotingCommand:
        return RemotingCommand(code, fields, body, flag=FLAG_RESPONSE, version=self.version[addr])

    def __call__(self, addr: str, command: RemotingCommand) -> RemotingCommand:
        decoder = FrameDecoder()
        decoder.feed(encode_command(command))
        cmd = decoder.next_frame()
        assert cmd is not None
        if addr == NAMESRV:
            assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC
            return RemotingCommand(0, {}, route_body(), flag=FLAG_RESPONSE)
        if addr in self.failing:
            raise RequestTimeoutError(f"{addr} does not answer")
        self.requests.append((addr, cmd))
        if cmd.code == RequestCode.HEART_BEAT:
            return self.answer(addr, ResponseCode.SUCCESS, {})
        if cmd.code == RequestCode.GET_BROKER_CONFIG:
            if self.levels is None:
                return self.answer(addr, ResponseCode.NO_PERMISSION, {})
            config = f"brokerName=x\nmessageDelayLevel={self.levels}\nflushDiskType=ASYNC_FLUSH\n"
            return self.answer(addr, ResponseCode.SUCCESS, {}, config.encode())
        assert cmd.code == RequestCode.SEND_MESSAGE_V2
        fields = {"msgId": "", "queueId": cmd.ext_fields["e"], "queueOffset": "1"}
        return self.answer(addr, ResponseCode.SUCCESS, fields)

    def codes(self) -> list[int]:
        return [cmd.code for _, cmd in self.requests]

    def sent_properties(self) -> list[dict[str, str]]:
        return [
            decode_properties(cmd.ext_fields["i"].encode())
            for _, cmd in self.requests
            if cmd.code == RequestCode.SEND_MESSAGE_V2
        ]


def test_version_numbers_name_their_releases() -> None:
    assert TIMER_MIN_BROKER_VERSION == 413
    assert broker_release(TIMER_MIN_BROKER_VERSION) == "5.0.0"
    assert broker_release(412) == "5.0.0-SNAPSHOT"
    assert broker_release(V4_9_7) == "4.9.7"
    assert broker_release(479) == "5.3.3"  # the version this client announces
    assert broker_release(V5_5_0) == "5.5.0"
    assert broker_release(212) == "4.0.0-SNAPSHOT"
    assert broker_release(100) == "older than 4.0.0"


def test_the_latest_response_of_each_broker_sets_its_version() -> None:
    brokers = Brokers(V4_9_7)
    brokers.version[BROKERS["broker-b"]] = V5_5_0
    sim = Sim(brokers)
    core = make_producer()
    client = core.client
    assert client.broker_version(BROKERS["broker-a"]) is None
    sim.run(core.send_flow(Message("T", b"x"), queue=MessageQueue("T", "broker-a", 0)))
    assert client.broker_version(BROKERS["broker-a"]) == V4_9_7  # from the send's answer
    assert client.broker_version(BROKERS["broker-b"]) is None
    sim.run(client.heartbeat_flow())
    assert client.broker_version(BROKERS["broker-b"]) == V5_5_0  # from the heartbeat's
    brokers.version[BROKERS["broker-a"]] = V5_5_0  # upgraded in place
    sim.run(client.heartbeat_flow())
    assert client.broker_version(BROKERS["broker-a"]) == V5_5_0


def test_timer_message_for_a_4x_broker_is_refused_before_any_send() -> None:
    brokers = Brokers(V4_9_7)
    sim = Sim(brokers)
    core = make_producer()
    msg = Message("T", b"later", deliver_at=sim.wall_ms + 5000)
    with pytest.raises(TimerUnsupportedError) as caught:
        sim.run(core.send_flow(msg))
    text = str(caught.value)
    addr = brokers.requests[0][0]
    assert addr in text and "4.9.7" in text and "407" in text and "timer_fallback" in text
    assert isinstance(caught.value, InvalidMessageError)
    # The version was asked with one heartbeat; nothing was sent.
    assert brokers.codes() == [RequestCode.HEART_BEAT]
    # Known now: the next one is refused without a request.
    with pytest.raises(TimerUnsupportedError):
        sim.run(
            core.send_flow(
                Message("T", b"later", deliver_at=sim.wall_ms + 5000),
                queue=MessageQueue("T", addr_name(addr), 0),
            )
        )
    assert brokers.codes() == [RequestCode.HEART_BEAT]


def addr_name(addr: str) -> str:
    return next(name for name, a in BROKERS.items() if a == addr)


@pytest.mark.parametrize("key", ["TIMER_DELAY_SEC", "TIMER_DELAY_MS", "TIMER_DELIVER_MS"])
def test_each_timer_property_is_refused_oneway_and_ordered_too(key: str) -> None:
    brokers = Brokers(V4_9_7)
    sim = Sim(brokers)
    core = make_producer()
    for kwargs in ({"oneway": True}, {"sharding_key": "k"}):
        msg = Message("T", b"later")
        msg.properties[key] = "5000"
        with pytest.raises(TimerUnsupportedError):
            sim.run(core.send_flow(msg, **kwargs))
    assert RequestCode.SEND_MESSAGE_V2 not in brokers.codes()
    assert not sim.oneways


def test_timer_message_for_a_5x_broker_is_sent_as_it_is() -> None:
    brokers = Brokers(V5_5_0)
    sim = Sim(brokers)
    core = make_producer()
    deliver_at = sim.wall_ms + 5000
    queue = MessageQueue("T", "broker-a", 1)
    result = sim.run(core.send_flow(Message("T", b"later", deliver_at=deliver_at), queue=queue))
    assert result is not None and result.status is SendStatus.SEND_OK
    sim.run(core.send_flow(Message("T", b"later", deliver_at=deliver_at), queue=queue))
    # One heartbeat learns the version; both messages go with their timer.
    assert brokers.codes() == [
        RequestCode.HEART_BEAT,
        RequestCode.SEND_MESSAGE_V2,
        RequestCode.SEND_MESSAGE_V2,
    ]
    assert [p["TIMER_DELIVER_MS"] for p in brokers.sent_properties()] == [str(deliver_at)] * 2


def test_messages_without_timer_go_to_a_4x_broker_unchecked() -> None:
    brokers = Brokers(V4_9_7)
    sim = Sim(brokers)
    core = make_producer()
    sim.run(core.send_flow(Message("T", b"now")))
    sim.run(core.send_flow(Message("T", b"later", delay_level=3)))
    # A delay level takes precedence over a timer on every broker: not a timer message.
    sim.run(core.send_flow(Message("T", b"level", delay_level=2, deliver_at=sim.wall_ms + 9000)))
    assert brokers.codes() == [RequestCode.SEND_MESSAGE_V2] * 3
    assert brokers.sent_properties()[2]["DELAY"] == "2"


def test_a_server_that_tells_no_version_is_not_judged() -> None:
    brokers = Brokers(0)
    sim = Sim(brokers)
    core = make_producer()
    sim.run(core.send_flow(Message("T", b"later", deliver_at=sim.wall_ms + 5000)))
    assert brokers.codes() == [RequestCode.HEART_BEAT, RequestCode.SEND_MESSAGE_V2]
    assert "TIMER_DELIVER_MS" in brokers.sent_properties()[0]


def test_a_broker_that_does_not_answer_the_version_question_is_retried_elsewhere() -> None:
    brokers = Brokers(V5_5_0)
    brokers.failing.add(BROKERS["broker-a"])
    sim = Sim(brokers)
    core = make_producer()
    result = None
    for _ in range(2):  # whichever broker round robin picks first
        result = sim.run(core.send_flow(Message("T", b"later", deliver_at=sim.wall_ms + 5000)))
    assert result is not None and result.message_queue.broker_name == "broker-b"
    assert all(addr == BROKERS["broker-b"] for addr, _ in brokers.requests)
    assert brokers.codes().count(RequestCode.SEND_MESSAGE_V2) == 2


def test_fallback_sends_the_nearest_of_the_brokers_own_delay_levels() -> None:
    brokers = Brokers(V4_9_7)  # levels 1s, 2s ... 18s
    sim = Sim(brokers)
    core = make_producer(timer_fallback="delay_level")
    assert core.config.timer_fallback is TimerFallback.DELAY_LEVEL
    queue = MessageQueue("T", "broker-a", 0)
    msg = Message("T", b"later", deliver_at=sim.wall_ms + 3400)
    result = sim.run(core.send_flow(msg, queue=queue))
    assert result is not None and result.status is SendStatus.SEND_OK
    delayed = Message("T", b"later")
    delayed.properties["TIMER_DELAY_SEC"] = "10"
    sim.run(core.send_flow(delayed, queue=queue))
    far = Message("T", b"later", deliver_at=sim.wall_ms + 3_600_000)
    sim.run(core.send_flow(far, queue=queue))
    past = Message("T", b"now", deliver_at=sim.wall_ms - 1000)
    sim.run(core.send_flow(past, queue=queue))
    sent = brokers.sent_properties()
    assert [p.get("DELAY") for p in sent] == ["3", "10", "18", None]
    for props in sent:
        assert not {"TIMER_DELIVER_MS", "TIMER_DELAY_SEC", "TIMER_DELAY_MS"} & set(props)
    # The table is read once per broker; the user's message keeps its timer.
    assert brokers.codes().count(RequestCode.GET_BROKER_CONFIG) == 1
    assert msg.deliver_at == sim.wall_ms + 3400 and msg.delay_level == 0


def test_fallback_uses_the_default_table_when_the_broker_does_not_tell_its_own() -> None:
    brokers = Brokers(V4_9_7, levels=None)  # GET_BROKER_CONFIG refused
    sim = Sim(brokers)
    core = make_producer(timer_fallback=TimerFallback.DELAY_LEVEL)
    queue = MessageQueue("T", "broker-a", 0)
    sim.run(core.send_flow(Message("T", b"x", deliver_at=sim.wall_ms + 50_000), queue=queue))
    # Default levels: 30s is level 4, 1m level 5: 50 s is nearer to 1m.
    assert brokers.sent_properties()[0]["DELAY"] == "5"


def test_fallback_leaves_5x_brokers_their_timers() -> None:
    brokers = Brokers(V5_5_0)
    sim = Sim(brokers)
    core = make_producer(timer_fallback="delay_level")
    deliver_at = sim.wall_ms + 3400
    sim.run(core.send_flow(Message("T", b"x", deliver_at=deliver_at)))
    assert brokers.sent_properties()[0]["TIMER_DELIVER_MS"] == str(deliver_at)
    assert RequestCode.GET_BROKER_CONFIG not in brokers.codes()


def test_nearest_delay_level() -> None:
    default = parse_delay_levels(DEFAULT_DELAY_LEVELS)
    assert len(default) == 18 and default[0] == 1000 and default[-1] == 7_200_000
    assert parse_delay_levels("500s 1d") == (500_000, 86_400_000)
    assert nearest_delay_level(0, default) == 0
    assert nearest_delay_level(-5000, default) == 0
    assert nearest_delay_level(400, default) == 0
    assert nearest_delay_level(500, default) == 1  # as near to 0 as to 1 s: the later
    assert nearest_delay_level(3000, default) == 2  # 1s and 5s are as near: 5 s
    assert nearest_delay_level(7_000, default) == 2
    assert nearest_delay_level(45 * 60_000, default) == 17  # as near to 30m as to 1h
    assert nearest_delay_level(10 * 3_600_000, default) == 18
    for bad in ("", "5", "1x", "s", "1.5s"):
        with pytest.raises(ValueError):
            parse_delay_levels(bad)


def test_timer_fallback_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="timer_fallback"):
        ProducerConfig(timer_fallback="nearest")  # type: ignore[arg-type]
    assert ProducerConfig().timer_fallback is TimerFallback.REFUSE
    _, config = producer_settings(
        "127.0.0.1:9876", {"timer_fallback": "delay_level"}, pid=1, nonce=2
    )
    assert config.timer_fallback is TimerFallback.DELAY_LEVEL
