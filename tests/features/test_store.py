"""The Redis feature store gives the offline builder's vectors, on a real redis-server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import replace

import numpy as np
import pytest
import redis.asyncio as aioredis
from numpy.typing import NDArray

from fraudstream.features import store as store_module
from fraudstream.features import windows as windows_module
from fraudstream.features.builder import build_features
from fraudstream.features.definitions import FEATURE_NAMES
from fraudstream.features.store import (
    CardCache,
    RedisFeatureStore,
    RedisGate,
    RedisScoreStore,
    redis_stores,
)
from fraudstream.features.stores import FeatureStoreError, ScoreStoreError
from fraudstream.features.transaction import Label, Transaction
from fraudstream.features.windows import RETENTION_SECONDS, STORED_CARD_EVENTS
from fraudstream.stream.tools.services import EmbeddedRedis
from tests.support.redis_cluster import LocalRedisCluster, empty_redis_url

pytestmark = pytest.mark.integration

T0 = 1_767_225_600.0
DAY = 86_400.0


def random_history(seed: int, count: int = 600) -> tuple[list[Transaction], list[Label]]:
    rng = random.Random(seed)
    transactions, labels = [], []
    t = T0
    for i in range(count):
        t += rng.expovariate(1 / 2400.0)
        located = rng.random() < 0.8
        transactions.append(
            Transaction(
                txn_id=f"t{i:05d}",
                card_id=f"c{rng.randrange(12)}",
                merchant_id=f"m{rng.randrange(6)}",
                amount=round(rng.lognormvariate(3.5, 1.0), 2),
                currency="EUR",
                country=rng.choice(["FR", "DE", "US"]),
                channel=rng.choice(["pos", "ecom", "atm"]),
                event_time=round(t, 3),
                lat=round(rng.uniform(-60, 60), 4) if located else None,
                lon=round(rng.uniform(-120, 120), 4) if located else None,
            )
        )
        if rng.random() < 0.1:
            labels.append(Label(f"t{i:05d}", True, "stolen_card", t + rng.uniform(0.5, 3) * DAY))
    return transactions, labels


async def replay_online(
    url: str,
    transactions: list[Transaction],
    labels: list[Label],
    batch: int,
    cache: CardCache | None = None,
    repeat: int = 1,
    label_delay_s: float = 7 * DAY,
) -> np.ndarray:
    """Feed the store as the worker would: labels as they arrive, transactions in batches.

    `repeat` > 1 feeds the whole stream again through the same store (warm cache), as a
    redelivery would; the rows of the last pass are returned.
    """
    store = RedisFeatureStore.from_url(url, cache, label_delay_s)
    try:
        for _ in range(repeat):
            pending = sorted(labels, key=lambda label: label.label_time)
            rows = []
            for start in range(0, len(transactions), batch):
                chunk = transactions[start : start + batch]
                due = [label for label in pending if label.label_time < chunk[0].event_time]
                pending = pending[len(due) :]
                await store.record_labels(due)
                rows += await store.record_and_featurize(chunk)
    finally:
        await store.close()
    return np.vstack(rows)


async def flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


@pytest.mark.parametrize(
    ("cached", "label_delay_s"),
    [(False, 7 * DAY), (True, 7 * DAY), (False, 1.5 * DAY)],
    ids=["redis-only", "card-cache", "short-delay"],
)
def test_online_vectors_equal_offline_builder(
    any_redis: EmbeddedRedis | LocalRedisCluster, cached: bool, label_delay_s: float
) -> None:
    """On one Redis and on a Redis Cluster (`any_redis`) alike."""
    transactions, labels = random_history(seed=1)
    cache = CardCache() if cached else None
    online = asyncio.run(replay_online(
        empty_redis_url(any_redis), transactions, labels, 1, cache, 1, label_delay_s
    ))  # fmt: skip
    offline = build_features(transactions, labels, label_delay_s).features
    for window in ("1d", "30d"):
        share = offline[:, FEATURE_NAMES.index(f"merchant_fraud_share_{window}_delayed")]
        assert share.max() > 0, f"known frauds in the {window} window: the test has teeth"
    np.testing.assert_array_equal(online, offline)


def test_a_label_recorded_before_it_is_due_counts_only_from_its_label_time(
    redis_server: EmbeddedRedis,
) -> None:
    """Labels read ahead of the transactions: each row of the second half still sees only
    the labels whose label_time precedes it, as offline."""
    transactions, labels = random_history(seed=4)
    half = len(transactions) // 2
    early = [label for label in labels if label.txn_id < transactions[half].txn_id]
    assert any(label.label_time > transactions[half].event_time for label in early)

    async def run() -> np.ndarray:
        await flush(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url, label_delay_s=DAY)
        try:
            await store.record_and_featurize(transactions[:half])
            assert await store.record_labels(early) == len(early)
            return np.vstack(await store.record_and_featurize(transactions[half:]))
        finally:
            await store.close()

    online = asyncio.run(run())
    offline = build_features(transactions, early, label_delay_s=DAY).features[half:]
    np.testing.assert_array_equal(online, offline)


@pytest.mark.parametrize("cache", [None, CardCache(max_cards=3)], ids=["redis-only", "small-cache"])
def test_micro_batches_give_the_same_vectors(
    redis_server: EmbeddedRedis, cache: CardCache | None
) -> None:
    transactions, _ = random_history(seed=2, count=300)
    asyncio.run(flush(redis_server.url))
    batched = asyncio.run(replay_online(redis_server.url, transactions, [], 37, cache))
    np.testing.assert_array_equal(batched, build_features(transactions).features)


def test_redelivered_transaction_is_not_counted_twice(redis_server: EmbeddedRedis) -> None:
    transactions, _ = random_history(seed=3, count=200)
    asyncio.run(flush(redis_server.url))
    first = asyncio.run(replay_online(redis_server.url, transactions, [], batch=20))
    # The whole stream again, as after a consumer restart from an old offset (cold)...
    second = asyncio.run(replay_online(redis_server.url, transactions, [], batch=20))
    np.testing.assert_array_equal(first, second)
    # ...and redelivered to a worker that still holds the cards in memory (warm).
    warm = asyncio.run(replay_online(redis_server.url, transactions, [], 20, CardCache(), 2))
    np.testing.assert_array_equal(first, warm)


def test_scores_are_kept_under_the_transaction_key_for_late_labels(
    redis_server: EmbeddedRedis,
) -> None:
    async def run() -> tuple[bytes | None, list[tuple[float, float] | None]]:
        await flush(redis_server.url)
        features, scores = redis_stores(redis_server.url)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            await scores.record_scores([("t1", 1_767_225_600.5, 0.25)])
            raw = await client.get("fs:{txn:t1}:score")
            return raw, await scores.scores_for(["t1", "never-scored"])
        finally:
            await client.aclose()
            await features.close()  # the client both stores share

    raw, found = asyncio.run(run())
    assert raw == b"1767225600.5,0.25"
    assert found == [(1_767_225_600.5, 0.25), None]


def test_unreachable_redis_raises_a_score_store_error_the_worker_already_catches() -> None:
    async def run() -> None:
        scores = RedisScoreStore.from_url("redis://127.0.0.1:1")
        try:
            await scores.scores_for(["t1"])
        finally:
            await scores.close()

    with pytest.raises(ScoreStoreError, match="score store unavailable") as raised:
        asyncio.run(run())
    assert isinstance(raised.value, FeatureStoreError)


def test_a_redis_restarted_empty_is_noticed_by_every_worker_and_bounds_partial_history(
    redis_server: EmbeddedRedis,
) -> None:
    transactions, _ = random_history(seed=21, count=40)

    async def run() -> tuple[RedisFeatureStore, RedisFeatureStore]:
        await flush(redis_server.url)
        first, second = (RedisFeatureStore.from_url(redis_server.url) for _ in range(2))
        try:
            await first.record_and_featurize(transactions[:10])  # sets the generation
            await second.record_and_featurize(transactions[10:20])  # adopts it
            await flush(redis_server.url)  # what a restart without persistence leaves
            await first.record_and_featurize(transactions[20:30])  # notices, sets a new one
            await second.record_and_featurize(transactions[30:])  # sees it changed
            await first.record_and_featurize(transactions[30:])  # nothing new since
            return first, second
        finally:
            await first.close()
            await second.close()

    first, second = asyncio.run(run())
    assert (first.resets, second.resets) == (1, 1)
    assert first.generation == second.generation
    assert first.partial_history_until == transactions[29].event_time + RETENTION_SECONDS
    assert second.partial_history_until == transactions[-1].event_time + RETENTION_SECONDS


def test_after_a_failure_the_stores_leave_a_frozen_redis_alone_then_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transactions, _ = random_history(seed=22, count=4)

    async def run(server: EmbeddedRedis) -> list[str]:
        features, scores = redis_stores(server.url)
        seen = []
        try:
            await features.record_and_featurize(transactions[:2])
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                for attempt in (
                    lambda: features.record_and_featurize(transactions[2:]),  # times out
                    lambda: scores.record_scores([("t1", T0, 0.5)]),  # not asked: paused
                ):
                    with pytest.raises(FeatureStoreError) as raised:
                        await attempt()
                    seen.append(str(raised.value))
            finally:
                os.kill(server.pid, signal.SIGCONT)
            features.gate = scores.gate = RedisGate()  # as if the pause had ended
            await features.record_and_featurize(transactions[2:])
            await scores.record_scores([("t1", T0, 0.5)])
            return seen
        finally:
            await features.close()

    monkeypatch.setattr(store_module, "PAUSE_AFTER_FAILURE_S", 3600.0)
    with EmbeddedRedis() as server:
        timed_out, paused = asyncio.run(run(server))
    assert "Timeout" in timed_out
    assert "not asked again yet" in paused and "Timeout" in paused


@pytest.mark.parametrize("cache", [None, CardCache()], ids=["redis-only", "card-cache"])
def test_a_hot_cards_window_is_capped_the_same_online_and_offline(
    redis_server: EmbeddedRedis, cache: CardCache | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (windows_module, store_module):  # small caps, so the test stays quick
        monkeypatch.setattr(module, "MAX_CARD_EVENTS", 20)
        monkeypatch.setattr(module, "STORED_CARD_EVENTS", 40)
    transactions, _ = random_history(seed=23, count=300)
    hot = [replace(txn, card_id="hot") for txn in transactions]
    asyncio.run(flush(redis_server.url))
    online = asyncio.run(replay_online(redis_server.url, hot, [], 16, cache))
    offline = build_features(hot, []).features
    np.testing.assert_array_equal(online, offline)
    client = aioredis.Redis.from_url(redis_server.url)
    assert asyncio.run(client.zcard("fs:{card:hot}:times")) == 40
    assert offline[-1, FEATURE_NAMES.index("count_30d")] == 20, "counts saturate at the cap"


def test_a_window_full_to_the_cap_evicted_at_once_is_no_script_failure(
    redis_server: EmbeddedRedis,
) -> None:
    """10,000 events evicted by one event far ahead: past Lua's unpack limit (~8,000)."""
    base, _ = random_history(seed=24, count=1)
    full = [
        replace(base[0], txn_id=f"h{i:05d}", card_id="hot", event_time=T0 + i)
        for i in range(STORED_CARD_EVENTS)
    ]
    far_ahead = replace(full[0], txn_id="far", event_time=T0 + 400 * DAY)

    async def run() -> tuple[NDArray[np.float64], int]:
        await flush(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url, CardCache())
        try:
            for start in range(0, len(full), 500):
                await store.record_and_featurize(full[start : start + 500])
            store.forget_cached_cards()  # so the card's whole window is read back once
            [row] = await store.record_and_featurize([far_ahead])
            return row, await store._client.zcard("fs:{card:hot}:times")
        finally:
            await store.close()

    row, left = asyncio.run(run())
    assert left == 1
    assert row[FEATURE_NAMES.index("count_30d")] == 0


def test_a_txn_id_reused_with_other_content_is_caught_an_identical_one_is_not(
    redis_server: EmbeddedRedis,
) -> None:
    transactions, _ = random_history(seed=25, count=3)
    first, other = transactions[0], transactions[1]
    reused = replace(first, amount=first.amount + 1.0)
    elsewhere = replace(first, card_id="another-card")

    async def run() -> tuple[list[bool], list[bool], int]:
        await flush(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url)
        try:
            in_one_batch = await store.claim([first, other, first, reused])
            later = await store.claim([first, reused, elsewhere])
            await store.record_and_featurize([first, other])
            matched = await store.record_labels([Label(first.txn_id, True, "x", T0 + DAY)])
            return in_one_batch, later, matched
        finally:
            await store.close()

    in_one_batch, later, matched = asyncio.run(run())
    assert in_one_batch == [False, False, False, True]
    assert later == [False, True, True]
    assert matched == 1, "a late label still finds the transaction's merchant"


def test_recording_claimed_transactions_does_not_write_their_seen_keys_again(
    redis_server: EmbeddedRedis,
) -> None:
    """The claim's `SET NX` leaves each `seen` key holding its content: recording the same
    transactions right after sends no second `SET` (issue 9), but a batch recorded without
    a claim, or recorded again, still writes them, and labels find them either way."""
    transactions, _ = random_history(seed=27, count=12)
    claimed, unclaimed = transactions[:6], transactions[6:]

    async def run() -> tuple[list[int], int]:
        client = aioredis.Redis.from_url(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url)
        sets = []
        try:
            await client.flushdb()
            await store.record_and_featurize(unclaimed)  # also sets the generation token
            for step in (lambda: store.claim(claimed), lambda: store.record_and_featurize(claimed),
                         lambda: store.record_and_featurize(claimed)):  # fmt: skip
                before = await client.info("commandstats")
                await step()
                after = await client.info("commandstats")
                sets.append(after["cmdstat_set"]["calls"] - before["cmdstat_set"]["calls"])
            labels = [Label(txn.txn_id, True, "x", txn.event_time + DAY) for txn in transactions]
            return sets, await store.record_labels(labels)
        finally:
            await store.close()
            await client.aclose()

    sets, matched = asyncio.run(run())
    assert sets == [6, 0, 6], "claimed: one SET each, none when recorded, one again after"
    assert matched == len(transactions)


def test_claiming_fresh_txn_ids_reads_nothing_back(redis_server: EmbeddedRedis) -> None:
    """The usual batch (no redelivery, no reuse) is claimed by its `SET NX`es alone; only
    a txn_id already held is read back to compare (issue 9: half the claim's commands)."""
    transactions, _ = random_history(seed=26, count=20)

    async def gets_after(batches: list[list[Transaction]]) -> list[int]:
        client = aioredis.Redis.from_url(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url)
        counts = []
        try:
            await client.flushdb()
            await client.config_resetstat()
            for batch in batches:
                await store.claim(batch)
                stats = await client.info("commandstats")
                counts.append(int(stats.get("cmdstat_get", {}).get("calls", 0)))
            return counts
        finally:
            await store.close()
            await client.aclose()

    fresh, redelivered = transactions[:10], transactions[5:15]
    assert asyncio.run(gets_after([fresh, redelivered])) == [0, 5]


def test_a_label_of_a_transaction_seen_before_the_upgrade_is_skipped_not_fatal(
    redis_server: EmbeddedRedis,
) -> None:
    """`seen` values written before event times were kept ("<digest> <merchant>")."""

    async def run() -> int:
        await flush(redis_server.url)
        store = RedisFeatureStore.from_url(redis_server.url)
        try:
            await store._client.set("fs:{txn:old}:seen", "0123abcd m1")
            return await store.record_labels([Label("old", True, "x", T0)])
        finally:
            await store.close()

    assert asyncio.run(run()) == 0
