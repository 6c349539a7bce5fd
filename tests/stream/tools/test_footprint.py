"""The Redis counters behind `fraudstream capacity`, on one Redis and on a cluster.

A demo pointed at a Redis Cluster (`FRAUDSTREAM_REDIS_URL=redis+cluster://...`) measures
its footprint too: the counters are summed over the masters, not read from one of them.
"""

from __future__ import annotations

from fraudstream.features.redis_cluster import blocking_client
from fraudstream.stream.tools.footprint import RedisCounters
from fraudstream.stream.tools.services import EmbeddedRedis
from tests.support.redis_cluster import LocalRedisCluster, empty_redis_url
from tests.support.worker_runs import REDIS_DATABASES

KEYS = 60  # enough that each of three masters owns some (checked below)


def test_counters_count_every_command_and_byte_the_run_sent(
    any_redis: EmbeddedRedis | LocalRedisCluster,
) -> None:
    url = empty_redis_url(any_redis, next(REDIS_DATABASES))
    before = RedisCounters.read(url)
    with blocking_client(url, timeout_s=5.0) as client:
        for index in range(KEYS):
            client.zadd(f"fs:{{card:{index}}}:times", {f"t{index}": index})
    after = RedisCounters.read(url)

    assert after.calls - before.calls >= KEYS  # every ZADD, whichever master took it
    assert after.net_input_bytes - before.net_input_bytes >= KEYS * len("fs:{card:0}:times")
    if isinstance(any_redis, LocalRedisCluster):
        assert all(count > 0 for count in any_redis.key_counts())
