"""The benchmark's request-counting relays (``benchmarks/wire_count.py``): what they
note, how they turn notes into a rate, and that the routes they relay name the
brokers' relays. A small fake name server stands in for the real one (the relays
are a measuring tool; the row they serve runs against the real cluster)."""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rocketmq_proto.wire.codes import SerializeType
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import wire_count


@pytest.mark.parametrize("serialize_type", [SerializeType.JSON, SerializeType.ROCKETMQ])
def test_request_of_reads_a_request_and_skips_a_response(serialize_type: int) -> None:
    request = RemotingCommand(105, {"topic": "T"})
    found = wire_count.request_of(encode_command(request, serialize_type))
    assert found is not None and found.code == 105 and found.get("topic") == "T"
    response = RemotingCommand(0, flag=1)
    assert wire_count.request_of(encode_command(response, serialize_type)) is None
    assert wire_count.request_of(b"\x00\x00\x00\x08\x00\x00\x00\x04{no") is None


def test_per_minute_is_the_mean_interval_of_each_subject_summed() -> None:
    counter = wire_count.WireCount("127.0.0.1:1", [])
    counter.notes += [(t, 34, "broker-a") for t in (100.0, 130.0, 160.0)]  # every 30 s
    counter.notes += [(t, 34, "broker-b") for t in (110.0, 170.0)]  # every 60 s
    counter.notes += [(120.0, 34, "broker-c")]  # once: no interval
    counter.notes += [(t, 105, "T") for t in (100.0, 115.0)]  # another code
    assert counter.per_minute(34, 0, 1000) == pytest.approx(2.0 + 1.0)
    assert counter.requests(34, 0, 1000) == 6
    assert counter.per_minute(34, 125, 1000) == pytest.approx(2.0)  # broker-a: 130, 160
    assert counter.per_minute(105, 0, 1000) == pytest.approx(4.0)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> bytes:
    head = _read_exactly(sock, 4)
    return head + _read_exactly(sock, struct.unpack(">I", head)[0])


@pytest.fixture
def fake_namesrv() -> Iterator[tuple[str, str]]:
    """A server answering each request with a route naming a broker address (which
    is only a name here); yields (its address, the broker address)."""
    listener = socket.create_server(("127.0.0.1", 0))
    broker = "127.0.0.1:10911"
    body = b'{"brokerDatas":[{"brokerAddrs":{0:"' + broker.encode() + b'"}}]}'

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            while True:
                try:
                    frame = _read_frame(conn)
                except OSError:
                    return
                decoder = FrameDecoder()
                decoder.feed(frame)
                request = decoder.next_frame()
                assert request is not None
                conn.sendall(
                    encode_command(RemotingCommand(0, flag=1, opaque=request.opaque, body=body))
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", broker
    listener.close()
    thread.join(5)


def test_the_relayed_route_names_the_brokers_relay_and_requests_are_noted(
    fake_namesrv: tuple[str, str],
) -> None:
    namesrv, broker = fake_namesrv
    with wire_count.WireCount(namesrv, [broker]) as counter:
        host, port = counter.namesrv_addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            for opaque in (1, 2):
                sock.sendall(encode_command(RemotingCommand(105, {"topic": "T"}, opaque=opaque)))
                decoder = FrameDecoder()
                decoder.feed(_read_frame(sock))
                answer = decoder.next_frame()
                assert answer is not None and answer.opaque == opaque
                assert broker.encode() not in answer.body
                relay = answer.body.split(b'"')[5].decode()
                assert relay.startswith("127.0.0.1:") and relay != broker
                assert len(relay) == len(broker)
        assert [(code, subject) for _, code, subject in counter.notes] == [(105, "T")] * 2


def test_frames_split_across_reads_or_sharing_one_are_each_noted_once(
    fake_namesrv: tuple[str, str],
) -> None:
    namesrv, broker = fake_namesrv
    frames = [encode_command(RemotingCommand(105, {"topic": f"T{i}"}, opaque=i)) for i in range(3)]
    with wire_count.WireCount(namesrv, [broker]) as counter:
        host, port = counter.namesrv_addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(frames[0][:7])  # the length and part of the header mark
            time.sleep(0.05)
            sock.sendall(frames[0][7:] + frames[1] + frames[2][:20])
            time.sleep(0.05)
            sock.sendall(frames[2][20:])
            answers = []
            for _ in frames:
                decoder = FrameDecoder()
                decoder.feed(_read_frame(sock))
                answer = decoder.next_frame()
                assert answer is not None
                answers.append(answer.opaque)
        assert answers == [0, 1, 2]
        assert [subject for _, _, subject in counter.notes] == ["T0", "T1", "T2"]
