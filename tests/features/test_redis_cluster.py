"""The feature store on a real three-master Redis Cluster: routing, spread, one master down."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
import pytest
import redis
from redis.asyncio.connection import SSLConnection

from fraudstream.features.builder import build_features
from fraudstream.features.redis_client import PipelineScripts, execute_commands, redis_client
from fraudstream.features.redis_cluster import ClusterClient, SomeCommandsFailed
from fraudstream.features.store import GENERATION_KEY, RedisFeatureStore, transaction_keys
from fraudstream.features.stores import FeatureStorePartlyUnavailable
from tests.features.test_store import random_history, replay_online
from tests.support.redis_cluster import LocalRedisCluster


def test_a_cluster_url_names_its_nodes_and_options_for_all_of_them() -> None:
    client = redis_client(
        "rediss+cluster://app:secret@10.0.0.1:7000,10.0.0.2:7001/?ssl_ca_certs=/ca.pem"
        "&socket_timeout=2"
    )
    assert isinstance(client, ClusterClient)
    assert sorted(client.nodes_manager.startup_nodes) == ["10.0.0.1:7000", "10.0.0.2:7001"]
    options = client.connection_kwargs
    assert (options["username"], options["password"]) == ("app", "secret")
    assert options["connection_class"] is SSLConnection and options["ssl_ca_certs"] == "/ca.pem"
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (2.0, 0.5)



def tag(key: str) -> str:
    return key[key.index("{") : key.index("}") + 1]


@pytest.mark.integration
@pytest.mark.redis_cluster
def test_one_batch_over_every_master_comes_back_in_order(redis_cluster: LocalRedisCluster) -> None:
    keys = [f"k:{{{n}}}" for n in range(300)]
    assert {redis_cluster.node_of(key) for key in keys} == {0, 1, 2}

    async def run() -> list[object]:
        client = redis_client(redis_cluster.flush())
        try:
            await execute_commands(client, [("SET", key, str(n)) for n, key in enumerate(keys)])
            return await execute_commands(
                client, [("ECHO", "first"), *(("GET", key) for key in keys), ("PING",)]
            )
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [b"first", *(str(n).encode() for n in range(300)), b"PONG"]


@pytest.mark.integration
@pytest.mark.redis_cluster
def test_a_master_that_lost_the_scripts_gets_them_again_and_only_it(
    redis_cluster: LocalRedisCluster,
) -> None:
    script = "return redis.call('INCR', KEYS[1])"
    keys = [f"n:{{{n}}}" for n in range(30)]
    flushed = redis_cluster.node_of(keys[0])

    async def run() -> list[object]:
        client = redis_client(redis_cluster.flush())
        scripts = PipelineScripts(client, [script])
        try:
            await scripts.run(lambda shas: [("EVALSHA", shas[0], 1, key) for key in keys])
            with redis.Redis(port=redis_cluster.nodes[flushed].port) as node:
                node.script_flush()
            return await scripts.run(lambda shas: [("EVALSHA", shas[0], 1, key) for key in keys])
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [2] * len(keys)  # each key counted once per run, none lost


@pytest.mark.integration
@pytest.mark.redis_cluster
def test_the_windows_spread_over_every_master_and_each_tag_lives_on_one(
    redis_cluster: LocalRedisCluster,
) -> None:
    transactions, labels = random_history(seed=3)
    asyncio.run(replay_online(redis_cluster.flush(), transactions, labels, batch=25))
    assert all(count > 0 for count in redis_cluster.key_counts())
    homes: dict[str, set[int]] = defaultdict(set)
    for node in range(3):
        for key in redis_cluster.keys_of(node):
            homes[tag(key) if "{" in key else key].add(node)
    assert all(len(nodes) == 1 for nodes in homes.values()), homes
    cards = {tag(transaction_keys(txn)[0]) for txn in transactions}
    assert cards <= set(homes) and len({next(iter(homes[card])) for card in cards}) == 3
    assert GENERATION_KEY in homes


@pytest.mark.integration
@pytest.mark.redis_cluster
def test_a_frozen_master_degrades_only_the_transactions_with_keys_on_it(
    redis_cluster: LocalRedisCluster,
) -> None:
    """SIGSTOP one master (not the generation's): the batch's other transactions get their
    exact vectors, those touching it none; the next batch is not sent it (paused); once it
    is back every vector is served again."""
    transactions, _ = random_history(seed=4, count=240)
    before, batch = transactions[:120], transactions[120:]
    offline = build_features(transactions).features[120:]
    frozen = (redis_cluster.node_of(GENERATION_KEY) + 1) % 3
    touches = [any(redis_cluster.node_of(key) == frozen for key in transaction_keys(txn))
               for txn in batch]  # fmt: skip
    assert 0 < sum(touches) < len(batch)

    async def run() -> tuple[list[FeatureStorePartlyUnavailable], list[np.ndarray]]:
        store = RedisFeatureStore.from_url(redis_cluster.flush())
        failures = []
        try:
            await store.record_and_featurize(before)
            with redis_cluster.frozen(frozen):
                for _ in range(2):  # the first waits for the timeout, the second is paused
                    with pytest.raises(FeatureStorePartlyUnavailable) as raised:
                        await store.record_and_featurize(batch)
                    failures.append(raised.value)
            assert isinstance(store._client, ClusterClient)
            store._client.paused.clear()  # as if the pause had ended
            return failures, await store.record_and_featurize(batch)
        finally:
            await store.close()

    try:
        (timed_out, paused), recovered = asyncio.run(run())
    finally:
        redis_cluster.wait_until_ok()
    for failure in (timed_out, paused):
        assert [vector is None for vector in failure.vectors] == touches
        served = [row for row, vector in enumerate(failure.vectors) if vector is not None]
        np.testing.assert_array_equal(
            np.vstack([failure.vectors[row] for row in served]), offline[served]
        )
        assert isinstance(failure.__cause__, SomeCommandsFailed)
    assert "Timeout" in str(timed_out) and "not asked again yet" in str(paused)
    np.testing.assert_array_equal(np.vstack(recovered), offline)
