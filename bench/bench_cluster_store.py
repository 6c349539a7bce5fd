"""The feature store's cost per micro-batch on one redis-server and on a 3-master cluster.

`RedisFeatureStore.record_and_featurize` with the worker's card cache, generated
transactions in batches of `--batch`, on the embedded redis-server (TCP and Unix socket)
and on the test suite's local three-master Redis Cluster (tests/support/redis_cluster.py,
TCP): client CPU and wall time per batch, rounds interleaved so a busy machine hurts all.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from fraudstream.features.store import CardCache, RedisFeatureStore
from fraudstream.features.transaction import Transaction
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis
from tests.support.redis_cluster import LocalRedisCluster, empty_redis_url

WARM_UP_BATCHES = 20


async def per_batch(url: str, txns: list[Transaction], batch: int) -> tuple[float, float]:
    """(client CPU ms, wall ms) per batch, after `WARM_UP_BATCHES`."""
    store = RedisFeatureStore.from_url(url, CardCache())
    batches = [txns[i : i + batch] for i in range(0, len(txns), batch)]
    try:
        for chunk in batches[:WARM_UP_BATCHES]:
            await store.record_and_featurize(chunk)
        cpu, wall = time.process_time(), time.perf_counter()
        for chunk in batches[WARM_UP_BATCHES:]:
            await store.record_and_featurize(chunk)
        timed = len(batches) - WARM_UP_BATCHES
        return (time.process_time() - cpu) / timed * 1e3, (time.perf_counter() - wall) / timed * 1e3
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count = args.batch * (args.batches + WARM_UP_BATCHES)
    txns = generate_stream(GeneratorConfig(transactions=count, seed=9)).transactions
    print(f"| Redis (batch {args.batch}) | client CPU ms per batch | wall ms per batch |")
    print("|---|---:|---:|")
    with EmbeddedRedis() as single, LocalRedisCluster() as cluster:
        targets = {"one redis-server, TCP": single.url, "one redis-server, Unix socket":
                   single.unix_url or single.url, "3-master cluster, TCP": cluster.url}  # fmt: skip
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, url in targets.items():
                empty_redis_url(single)
                cluster.flush()
                figures[name].append(asyncio.run(per_batch(url, txns, args.batch)))
    for name, runs in figures.items():
        cpu = sorted(run[0] for run in runs)[len(runs) // 2]
        wall = sorted(run[1] for run in runs)[len(runs) // 2]
        print(f"| {name} | {cpu:.2f} | {wall:.2f} |")


if __name__ == "__main__":
    main()
