"""Protocol-core micro-benchmarks: prints figures for this machine.

    python benchmarks/bench_core.py

Each figure is the best of several repeats of this process's CPU time (the
least disturbed run), so the numbers are comparable between runs on a busy
machine. For scale, the script also times one ``json.dumps`` of a whole send
header, which the encoder must beat.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rocketmq_proto.connection.connection import Connection, Response
from rocketmq_proto.wire.codes import FLAG_RESPONSE, SerializeType
from rocketmq_proto.wire.command import FrameDecoder, RemotingCommand, encode_command
from rocketmq_proto.wire.requests import SendTemplate, encode_properties_field

BODY_1K = bytes(range(256)) * 4
PROPERTIES = {
    "UNIQ_KEY": "7F0000010CB318B4AAC2075A7A5F0000",
    "TAGS": "TagA",
    "KEYS": "order-1 order-2",
    "WAIT": "true",
    "color": "blue",
}


def best_of(fn: Callable[[int], None], n: int, repeats: int = 7) -> float:
    """CPU seconds per operation of ``fn(n)``, best of ``repeats`` runs.

    CPU time of this process, not wall time: on a shared machine other
    processes' load then inflates the figures less.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(n)
        best = min(best, time.process_time() - start)
    return best / n


def bench_encode_send(serialize_type: SerializeType) -> tuple[float, float]:
    """µs to turn one 1 KiB message with a few properties into SEND_MESSAGE_V2 frame bytes.

    Returns (encode only, encode plus the connection's bookkeeping: opaque,
    table of requests in flight, deadline heap, output buffer).
    """
    template = SendTemplate("bench-producer-group", "BenchTopic")

    def encode_only(n: int) -> None:
        build = template.build
        for i in range(n):
            command = build(
                i & 7,
                "broker-a",
                encode_properties_field(PROPERTIES),
                BODY_1K,
                1_700_000_000_000 + i,
            )
            encode_command(command, serialize_type)

    def through_connection(n: int) -> None:
        conn = Connection(serialize_type=serialize_type)
        build = template.build
        send = conn.send_request
        for i in range(n):
            command = build(
                i & 7,
                "broker-a",
                encode_properties_field(PROPERTIES),
                BODY_1K,
                1_700_000_000_000 + i,
            )
            send(command, 0.0, 3.0)
            conn.data_to_send()

    return best_of(encode_only, 20_000) * 1e6, best_of(through_connection, 20_000) * 1e6


def _response_stream(count: int) -> bytes:
    frames = []
    for opaque in range(1, count + 1):
        frames.append(
            encode_command(
                RemotingCommand(
                    0,
                    {"queueId": "3", "queueOffset": str(opaque), "msgId": "7F00000100002A9F"},
                    BODY_1K,
                    flag=FLAG_RESPONSE,
                    opaque=opaque,
                )
            )
        )
    return b"".join(frames)


def bench_frame_stream() -> float:
    """MB/s decoding a stream of 1 KiB-body responses fed in 4 KiB chunks."""
    stream = _response_stream(2000)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]

    def run(n: int) -> None:
        for _ in range(n):
            decoder = FrameDecoder()
            count = 0
            for chunk in chunks:
                decoder.feed(chunk)
                while decoder.next_frame() is not None:
                    count += 1
            assert count == 2000

    seconds = best_of(run, 3)
    return len(stream) / seconds / 1e6


def bench_connection_stream() -> float:
    """MB/s through a Connection: the same stream, matched to requests in flight."""
    stream = _response_stream(2000)
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]

    def run(n: int) -> None:
        for _ in range(n):
            conn = Connection()
            for _ in range(2000):
                conn.send_request(RemotingCommand(10), 0.0, 3.0)
            conn.data_to_send()
            matched = 0
            for chunk in chunks:
                conn.receive_data(chunk)
                while (event := conn.next_event()) is not None:
                    matched += isinstance(event, Response)
            assert matched == 2000

    seconds = best_of(run, 3)
    return len(stream) / seconds / 1e6


def bench_json_dumps_header() -> float:
    """µs for one json.dumps of a whole SEND_MESSAGE_V2 header (the naive encoder)."""
    import json

    header = {
        "code": 310,
        "extFields": {
            "a": "bench-producer-group",
            "b": "BenchTopic",
            "c": "TBW102",
            "d": "4",
            "e": "3",
            "f": "0",
            "g": "1700000000000",
            "h": "0",
            "i": encode_properties_field(PROPERTIES),
            "j": "0",
            "k": "false",
            "m": "false",
            "n": "broker-a",
        },
        "flag": 0,
        "language": "PYTHON",
        "opaque": 1,
        "serializeTypeCurrentRPC": "JSON",
        "version": 479,
    }

    def run(n: int) -> None:
        for _ in range(n):
            json.dumps(header)

    return best_of(run, 20_000) * 1e6


def bench_push_consume_path(batches: int = 1500, size: int = 32) -> float:
    """µs of CPU per message through a push consumer's concurrent consume path, as a
    pulled batch goes from its dispatch to its settled offset: consume workers, one
    handler call per message (an ``async`` handler that does nothing), the verdict,
    the metrics, the process queue and the offset table; driven by the asyncio
    interpreter, no network (best of 7)."""
    import asyncio

    from rocketmq_asyncio._interpreter import FlowTasks, run_flow
    from rocketmq_proto.flows.consumer.process_queue import ProcessQueue
    from rocketmq_proto.flows.consumer.pull import PullRequest
    from rocketmq_proto.flows.consumer.push import ConsumerConfig, PushConsumerCore
    from rocketmq_proto.flows.consumer.push_state import QueueState
    from rocketmq_proto.flows.session import ClientConfig, ClientCore
    from rocketmq_proto.message.ids import UniqueIdGenerator
    from rocketmq_proto.message.model import MessageExt
    from rocketmq_proto.wire.route import MessageQueue

    async def handler(msgs: list[MessageExt]) -> None:
        pass

    async def once() -> float:
        client = ClientCore(
            ClientConfig(("127.0.0.1:9876",), client_ip="10.0.0.1", instance_name="bench")
        )
        core = PushConsumerCore(
            client,
            ConsumerConfig(group="bench"),
            handler=handler,
            ids=UniqueIdGenerator(b"\x0a\x00\x00\x01", 1, 0),
        )
        queue = MessageQueue("BenchTopic", "broker-a", 0)
        pq = ProcessQueue(0.0)
        state = QueueState(PullRequest("bench", queue, pq, 0))
        core.queues[queue] = state
        core.offsets.update(queue, 0)
        pulled = [
            [
                MessageExt(
                    "BenchTopic",
                    BODY_1K,
                    queue_offset=b * size + i,
                    store_host="127.0.0.1:10911",
                    commit_log_offset=b * size + i,
                    broker_name="broker-a",
                )
                for i in range(size)
            ]
            for b in range(batches)
        ]
        consumption = core.consumption
        tasks = FlowTasks()
        start = time.process_time()
        for msgs in pulled:
            pq.put(msgs)
            await run_flow(None, consumption.dispatch_flow(state, msgs, True), tasks=tasks)  # type: ignore[arg-type]
            while consumption.workers:
                await asyncio.sleep(0)  # the workers it spawned take the batches
        spent = time.process_time() - start
        assert core.offsets.read(queue) == batches * size, "not every message was settled"
        return spent / (batches * size)

    async def best() -> float:
        return min([await once() for _ in range(7)])

    return asyncio.run(best()) * 1e6


def main() -> None:
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    print(f"for scale: json.dumps of a whole send header: {bench_json_dumps_header():.2f} µs")
    for serialize_type in SerializeType:
        encode_us, conn_us = bench_encode_send(serialize_type)
        print(
            f"encode SEND_MESSAGE_V2, 1 KiB body, {serialize_type.name} header: "
            f"{encode_us:.2f} µs/request (target <= 5); "
            f"through Connection.send_request: {conn_us:.2f} µs/request"
        )
    try:
        from bench_codec_messages import bench_decode_pull_body
    except ImportError:
        pass
    else:
        rate = bench_decode_pull_body(200)
        print(
            f"decode pull body of 32 x 1 KiB stored messages: {rate:,.0f} messages/s "
            f"(target >= 250,000)"
        )
    print(
        "push consumer's consume path, 32-message batches, asyncio handler: "
        f"{bench_push_consume_path():.2f} µs/message"
    )
    print(f"decode frame stream in 4 KiB chunks: {bench_frame_stream():.1f} MB/s")
    print(f"connection: stream matched to requests: {bench_connection_stream():.1f} MB/s")


if __name__ == "__main__":
    main()
