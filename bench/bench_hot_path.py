"""The worker's decide path without Faust: CPU per 1,000 decisions by batch size.

`WorkerRuntime.decide` (validate, Redis features, both models under their timeouts,
ensemble, thresholds, reasons, score store) plus encoding each decision, on a real
redis-server, for 20,000 generated transactions in batches of `--batch` (default: 5, 20,
100). The difference between batch sizes is the fixed cost per batch (bench/RESULTS.md,
issue 9: about 6 ms of CPU per batch, 0.3 ms per transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import orjson

from fraudstream.models.signing import signing_key_for
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.pipeline import IncomingRecord
from fraudstream.stream.worker.runtime import WorkerRuntime

TRANSACTIONS = 20_000
WARM_UP = 2_000


async def started_runtime(redis_url: str, registry: Path) -> WorkerRuntime:
    """A worker's decide path without Faust, on `redis_url`, started."""
    key = signing_key_for(registry, Settings.from_env().signing_key)
    runtime = WorkerRuntime(
        # The generated stream lies in the past: no skew check against the wall clock.
        Settings(registry_path=registry, signing_key=key, max_event_skew_s=0),
        redis_url,
        WorkerMetrics(),
    )
    await runtime.start()
    return runtime


async def decide_in_batches(
    runtime: WorkerRuntime, values: list[bytes], start: int, stop: int, batch: int
) -> None:
    """Decide `values[start:stop]` in batches of `batch` and encode every decision."""
    for i in range(start, stop, batch):
        outcome = await runtime.decide(
            [IncomingRecord(value, time.time()) for value in values[i : min(i + batch, stop)]]
        )
        if outcome.dead_letters:  # a dead letter costs nothing: it would flatter the figure
            raise SystemExit(f"dead-lettered: {outcome.dead_letters[0].error}")
        for decision in outcome.decisions:
            decision.to_json_bytes()


async def cpu_per_1000(redis_url: str, registry: Path, batch: int) -> tuple[float, float]:
    """(CPU s, wall s) per 1,000 decisions of this process in batches of `batch`."""
    runtime = await started_runtime(redis_url, registry)
    stream = generate_stream(GeneratorConfig(TRANSACTIONS + WARM_UP, seed=5))
    raw = [orjson.dumps(txn.to_dict()) for txn in stream.transactions]
    await decide_in_batches(runtime, raw, 0, WARM_UP, batch)
    cpu, wall = time.process_time(), time.perf_counter()
    await decide_in_batches(runtime, raw, WARM_UP, WARM_UP + TRANSACTIONS, batch)
    scale = 1000 / TRANSACTIONS
    return (time.process_time() - cpu) * scale, (time.perf_counter() - wall) * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, nargs="*", default=[5, 20, 100])
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    args = parser.parse_args()
    print("| batch | CPU s per 1,000 | wall s per 1,000 |\n|---:|---:|---:|")
    for batch in args.batch:
        with EmbeddedRedis() as redis:
            url = redis.unix_url or redis.url
            cpu, wall = asyncio.run(cpu_per_1000(url, args.registry.resolve(), batch))
        print(f"| {batch} | {cpu:.3f} | {wall:.3f} |")


if __name__ == "__main__":
    main()
