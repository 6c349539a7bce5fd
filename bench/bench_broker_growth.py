"""Does the embedded broker slow down as its log grows? CPU and fetch delay per 10 s window.

Produces `--rate` records/s (~520 bytes, keyed over 4 partitions, producer linger
`--linger-ms`) to a fresh topic on a fresh embedded Tansu broker for `--seconds`, while one
aiokafka consumer (fetch wait 10 ms, as the worker's) reads them; every 10 s it prints the
broker process's CPU (cores) and the fetch delay (read time - send time, p50/p99).

Why: issue 9's long-run latency growth. Run with linger 5, 20 and 50 ms
(bench/RESULTS.md): Tansu 0.6's memory engine pays per stored batch, more as batches pile
up, so its CPU at a constant rate keeps rising until it saturates a core.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudstream.stream.latency import latency_percentiles
from fraudstream.stream.tools.services import EmbeddedBroker

WINDOW_S = 10.0
PADDING = b"x" * 500


async def _consume(consumer: AIOKafkaConsumer, delays_ms: list[float]) -> None:
    while True:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            now = time.time()
            delays_ms.extend(1000.0 * (now - float(r.value[:20])) for r in records)


async def measure(
    rate: float, seconds: float, linger_ms: int, partitions: int, fetch_wait_ms: int
) -> None:
    with EmbeddedBroker() as broker:
        broker.create_topics(["growth"], partitions)
        broker_process = psutil.Process(broker.pid)
        consumer = AIOKafkaConsumer(
            "growth", bootstrap_servers=broker.bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms,
        )  # fmt: skip
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=linger_ms)
        await consumer.start()
        await producer.start()
        delays: list[float] = []
        reader = asyncio.ensure_future(_consume(consumer, delays))
        started = window_started = time.time()
        cpu_before, seen, sent = sum(broker_process.cpu_times()[:2]), 0, 0
        try:
            while time.time() - started < seconds:
                while sent < int((time.time() - started) * rate):
                    value = f"{time.time():<20.6f}".encode() + PADDING
                    await producer.send("growth", value, key=str(sent % 997).encode())
                    sent += 1
                await asyncio.sleep(0.005)
                if time.time() - window_started >= WINDOW_S:
                    cpu = sum(broker_process.cpu_times()[:2])
                    delay = latency_percentiles(delays[seen:], ("p50", "p99"))
                    cores = (cpu - cpu_before) / (time.time() - window_started)
                    print(f"t={time.time() - started:4.0f}s records {sent:7,d}  broker "
                          f"{cores:.2f} core  fetch delay p50 {delay['p50']} p99 {delay['p99']} "
                          "ms", flush=True)  # fmt: skip
                    window_started, cpu_before, seen = time.time(), cpu, len(delays)
        finally:
            reader.cancel()
            await consumer.stop()
            await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetch-wait-ms", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(
        measure(args.rate, args.seconds, args.linger_ms, args.partitions, args.fetch_wait_ms)
    )


if __name__ == "__main__":
    main()
