"""What one wake-up costs here: an idle aiokafka consumer's CPU per fetch against its fetch wait.

Tansu answers an idle fetch when its `max_wait` ends, so an idle consumer sleeps that long
between fetches and does the same work on every wake-up. If CPU per fetch grows with the
sleep, the work itself is not what costs: waking up cold is (caches and, in a virtual
machine, an idle vCPU resumed). On this machine that cost is what the worker pays on each
of its ~370 sleeps a second at 600/s (fetches, Redis round trips, the producer's
acknowledgements), and what the §1 baseline, never idle, did not pay (bench/RESULTS.md,
issue 9, twentieth session).

    python -m bench.bench_wakeup_cost [--seconds 10] [--waits 0 1 2 5 10 20 50]

One consumer on uvloop, no Faust, on a fresh embedded broker; each wait measured in turn.
At a 0 ms wait the broker answers at once and the consumer never sleeps: the same work, hot.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer

from fraudstream.stream.tools.services import EmbeddedBroker

TOPIC = "wakeup-cost"


async def cpu_per_fetch(
    bootstrap: str, fetch_max_wait_ms: int, seconds: float
) -> tuple[float, float]:
    """(fetches a second, CPU microseconds a fetch) of one idle consumer."""
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id=f"wakeup-{fetch_max_wait_ms}",
        fetch_max_wait_ms=fetch_max_wait_ms, enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=3000)  # joined and assigned
        fetcher = consumer._fetcher
        fetch = fetcher._proc_fetch_request
        fetches = 0

        async def counted(*args: Any) -> Any:
            nonlocal fetches
            fetches += 1
            return await fetch(*args)

        fetcher._proc_fetch_request = counted
        await asyncio.sleep(1.0)
        fetches, cpu, wall = 0, time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        return fetches / wall, cpu / max(fetches, 1) * 1e6
    finally:
        await consumer.stop()


def measured_waits(waits: Sequence[int], seconds: float) -> Iterator[tuple[int, float, float]]:
    """(wait, fetches a second, CPU microseconds a fetch) for each wait in turn, as each is
    measured, on one fresh embedded broker."""
    with EmbeddedBroker() as broker:
        for wait in waits:
            yield wait, *uvloop.run(cpu_per_fetch(broker.bootstrap, wait, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--waits", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20, 50])
    args = parser.parse_args()
    print("| fetch wait, ms | fetches a second | CPU a fetch, us |")
    print("|---:|---:|---:|")
    for wait, rate, cost in measured_waits(args.waits, args.seconds):
        print(f"| {wait} | {rate:,.0f} | {cost:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
