"""The shared threshold on a real redis-server: one live version for the consumer group."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from fraudstream.features.redis_client import redis_client
from fraudstream.models.signing import SigningKey
from fraudstream.stream.tools.services import EmbeddedRedis
from fraudstream.thresholds.online import ThresholdState
from fraudstream.thresholds.shared import (
    HISTORY_LENGTH,
    SharedThreshold,
    ThresholdSignatureError,
)
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.signing import TEST_SIGNING_KEY

pytestmark = pytest.mark.integration

T = TypeVar("T")


def state(version: int, review: float = 0.01, decline: float = 0.9) -> ThresholdState:
    return ThresholdState(version, review, decline, f"v{version}", {"frauds": 40 + version})


def run_with(
    url: str, body: Callable[[SharedThreshold, SharedThreshold], Awaitable[T]],
    second_key: SigningKey = TEST_SIGNING_KEY, second_prefix: str | None = None,
) -> T:  # fmt: skip
    """Two workers' adapters on a fresh, unique prefix; closed afterwards.

    The second may hold another key, or serve another group (`second_prefix`).
    """
    prefix = f"test:{{threshold-{uuid.uuid4().hex}}}"

    async def main() -> T:
        first = SharedThreshold.from_url(url, prefix, signing_key=TEST_SIGNING_KEY)
        second = SharedThreshold.from_url(url, second_prefix or prefix, signing_key=second_key)
        try:
            return await body(first, second)
        finally:
            await first.close()
            await second.close()

    return asyncio.run(main())


def test_nothing_is_live_before_the_first_publication(redis_server: EmbeddedRedis) -> None:
    async def body(worker: SharedThreshold, _: SharedThreshold) -> None:
        assert await worker.current() is None
        assert await worker.history(10) == []

    run_with(redis_server.url, body)


def test_exactly_one_of_two_racing_workers_publishes(
    any_redis: EmbeddedRedis | LocalRedisCluster,
) -> None:
    """On one Redis and on a Redis Cluster (`any_redis`) alike."""

    async def body(first: SharedThreshold, second: SharedThreshold) -> None:
        await first.initialise(state(1))
        for _ in range(20):  # many rounds, so interleavings vary
            live = await first.current()
            assert live is not None
            mine, theirs = state(live.version + 1, 0.02), state(live.version + 1, 0.03)
            wins = await asyncio.gather(
                first.publish(mine, live.version), second.publish(theirs, live.version)
            )
            assert sorted(wins) == [False, True]
            winner = mine if wins[0] else theirs
            assert await second.current() == winner
            assert await first.current() == winner

    run_with(any_redis.url, body)


def test_stale_expected_version_is_refused(redis_server: EmbeddedRedis) -> None:
    async def body(first: SharedThreshold, second: SharedThreshold) -> None:
        await first.initialise(state(1))
        assert await first.publish(state(2), expected_version=1)
        assert not await second.publish(state(2, 0.05), expected_version=1)
        assert await second.current() == state(2)
        with pytest.raises(ValueError, match="must exceed"):
            await second.publish(state(2), expected_version=2)

    run_with(redis_server.url, body)


def test_history_lists_versions_newest_first(redis_server: EmbeddedRedis) -> None:
    async def body(worker: SharedThreshold, _: SharedThreshold) -> None:
        await worker.initialise(state(1))
        for version in (2, 3, 4):
            assert await worker.publish(state(version, 0.01 * version), version - 1)
        entries = await worker.history(limit=3)
        assert [entry["state"]["version"] for entry in entries] == [4, 3, 2]
        assert ThresholdState.from_dict(entries[0]["state"]) == state(4, 0.04)
        times = [entry["published_at"] for entry in await worker.history(limit=10)]
        assert len(times) == 4 and times == sorted(times, reverse=True)

    run_with(redis_server.url, body)


def test_history_is_capped(redis_server: EmbeddedRedis) -> None:
    async def body(worker: SharedThreshold, _: SharedThreshold) -> None:
        await worker.initialise(state(1))
        for version in range(2, HISTORY_LENGTH + 6):
            assert await worker.publish(state(version), version - 1)
        entries = await worker.history(limit=HISTORY_LENGTH + 100)
        assert len(entries) == HISTORY_LENGTH
        assert entries[0]["state"]["version"] == HISTORY_LENGTH + 5

    run_with(redis_server.url, body)


def test_initialise_keeps_the_live_version(redis_server: EmbeddedRedis) -> None:
    async def body(first: SharedThreshold, second: SharedThreshold) -> None:
        assert await first.initialise(state(1)) == state(1)
        assert await first.publish(state(2, 0.02), expected_version=1)
        # A restarted worker brings its configured pair: the group's version stays live.
        assert await second.initialise(state(1, 0.5, 0.6)) == state(2, 0.02)
        assert await second.current() == state(2, 0.02)
        assert len(await second.history(10)) == 2

    run_with(redis_server.url, body)


def test_reader_sees_new_version_after_publish(redis_server: EmbeddedRedis) -> None:
    async def body(writer: SharedThreshold, reader: SharedThreshold) -> None:
        await writer.initialise(state(1))
        assert await reader.current() == state(1)
        assert await writer.publish(state(2, 0.03, 0.8), expected_version=1)
        assert await reader.current() == state(2, 0.03, 0.8)

    run_with(redis_server.url, body)


async def forge(url: str, key: str, state_json: str, signature: str | None) -> None:
    """What anyone who can write Redis can do: store a state of their own."""
    client = redis_client(url)
    try:
        await client.delete(key)
        fields = {"version": 2, "state": state_json}
        await client.hset(key, mapping=fields if signature is None
                          else {**fields, "signature": signature})  # fmt: skip
    finally:
        await client.aclose()


@pytest.mark.parametrize("signature", [None, "0" * 64, "not even hex"])
def test_a_state_without_this_keys_signature_is_refused(
    redis_server: EmbeddedRedis, signature: str | None
) -> None:
    async def body(worker: SharedThreshold, restarted: SharedThreshold) -> None:
        assert await worker.initialise(state(1)) == state(1)
        forged = json.dumps(state(2, 0.4, 0.99).to_dict())
        await forge(redis_server.url, worker.live_key, forged, signature)
        with pytest.raises(ThresholdSignatureError, match="not signed"):
            await worker.current()
        with pytest.raises(ThresholdSignatureError, match="not signed"):
            await restarted.initialise(state(1))  # a starting worker does not adopt it

    run_with(redis_server.url, body)


def test_an_edited_signed_state_is_refused(redis_server: EmbeddedRedis) -> None:
    async def body(worker: SharedThreshold, _: SharedThreshold) -> None:
        await worker.initialise(state(1))
        client = redis_client(redis_server.url)
        signature = await client.hget(worker.live_key, "signature")
        await client.aclose()
        edited = json.dumps(state(1, 0.4, 0.99).to_dict(), separators=(",", ":"))
        await forge(redis_server.url, worker.live_key, edited, signature.decode())
        with pytest.raises(ThresholdSignatureError, match="not signed with this worker's"):
            await worker.current()

    run_with(redis_server.url, body)


def test_a_worker_with_another_key_refuses_the_groups_pair(redis_server: EmbeddedRedis) -> None:
    async def body(worker: SharedThreshold, stranger: SharedThreshold) -> None:
        await worker.initialise(state(1))
        with pytest.raises(ThresholdSignatureError):
            await stranger.current()
        with pytest.raises(ThresholdSignatureError):
            await stranger.initialise(state(1))  # and does not overwrite it either
        assert await worker.current() == state(1)

    run_with(redis_server.url, body, second_key=SigningKey.generate())


def test_a_signed_state_copied_to_another_group_is_refused(redis_server: EmbeddedRedis) -> None:
    other_group = f"test:{{threshold-{uuid.uuid4().hex}}}"

    async def body(worker: SharedThreshold, elsewhere: SharedThreshold) -> None:
        await worker.initialise(state(1, 0.4, 0.99))
        client = redis_client(redis_server.url)
        stored = await client.hgetall(worker.live_key)
        await client.hset(elsewhere.live_key, mapping=stored)
        await client.aclose()
        with pytest.raises(ThresholdSignatureError):
            await elsewhere.current()

    run_with(redis_server.url, body, second_prefix=other_group)
