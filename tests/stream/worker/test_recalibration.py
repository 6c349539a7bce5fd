"""The dynamic threshold on a real redis-server: labels in, one shared version out.

The shared threshold lives in Redis, so this stays an integration test; the scores come
from the Redis score store, as in the worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import numpy as np
import pytest

from fraudstream.features.store import RedisScoreStore
from fraudstream.features.transaction import Label
from fraudstream.stream.tools.services import EmbeddedRedis
from fraudstream.stream.worker import recalibration
from fraudstream.stream.worker.recalibration import describe_live_threshold, keeper_for
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.online import ThresholdState
from fraudstream.thresholds.optimise import Constraints
from tests.support.signing import TEST_SIGNING_KEY

pytestmark = pytest.mark.integration

DAY = 86_400.0
T0 = 1_767_225_600.0
INITIAL = ThresholdState(1, review=0.0005, decline=0.99, reason="registry", figures={})


async def recorded_history(store: RedisScoreStore, count: int = 6000) -> list[Label]:
    """Scores of `count` decisions over 5 days (5 % fraud, overlapping legit on 0.3-0.4),
    recorded in `store`, and their labels, each arriving 2 days after its decision."""
    rng = np.random.default_rng(1)
    is_fraud = rng.random(count) < 0.05
    scores = np.where(is_fraud, rng.uniform(0.3, 1.0, count), rng.uniform(0.0, 0.4, count))
    times = T0 + np.sort(rng.uniform(0, 5 * DAY, count))
    await store.record_scores([(f"t{i}", float(times[i]), float(scores[i])) for i in range(count)])
    return [Label(f"t{i}", bool(is_fraud[i]), "x", float(times[i] + 2 * DAY)) for i in range(count)]


def test_matured_labels_recalibrate_once_and_every_keeper_adopts_the_version(
    redis_server: EmbeddedRedis,
) -> None:
    async def run() -> None:
        group = f"group-{uuid.uuid4().hex[:6]}"
        store = RedisScoreStore.from_url(redis_server.url)
        options = dict(maturity_days=1.0, window_days=30.0, cost=CostModel(),
                       constraints=Constraints(max_fpr=0.01, min_recall=0.9))  # fmt: skip
        first, second = (
            keeper_for(store, redis_server.url, group, TEST_SIGNING_KEY, **options)  # type: ignore[arg-type]
            for _ in range(2)
        )
        assert (await first.start(INITIAL)).version == 1
        assert (await second.start(INITIAL)).version == 1
        labels = await recorded_history(store)
        count = len(labels)
        # Nothing is mature while the label clock is within a day of the decisions.
        assert await first.learn(labels[:10]) is None
        attempts = [await first.learn(labels[i : i + 500]) for i in range(10, count, 500)]
        accepted = [a for a in attempts if a is not None and a.accepted]
        assert accepted, [a.reason for a in attempts if a is not None]
        live = await second.refresh()
        assert live is not None and live.version == first.live.version >= 2  # type: ignore[union-attr]
        # Each accepted move is step-bounded, so the decline threshold came down gradually.
        assert 0.99 - live.decline <= 0.02 * (live.version - 1) + 1e-9
        described = await describe_live_threshold(redis_server.url, group, TEST_SIGNING_KEY)
        assert f"live: v{live.version}" in described
        history = await first.shared.history(10)
        assert [entry["state"]["version"] for entry in history][0] == live.version
        await first.shared.close()
        await second.shared.close()
        await store.close()

    asyncio.run(run())


def test_a_recall_floor_the_review_capacity_cannot_hold_yields_with_one_log_line(
    redis_server: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        store = RedisScoreStore.from_url(redis_server.url)
        # No reviews allowed: 90 % recall would need declines far beyond a 1 % FPR.
        limits = Constraints(max_fpr=0.01, min_recall=0.9, max_review_rate=0.0)
        keeper = keeper_for(store, redis_server.url, f"group-{uuid.uuid4().hex[:6]}",
                            TEST_SIGNING_KEY, maturity_days=1.0, window_days=30.0,
                            cost=CostModel(), constraints=limits)  # fmt: skip
        await keeper.start(INITIAL)
        labels = await recorded_history(store)
        with caplog.at_level(logging.WARNING, logger=recalibration.__name__):
            attempts = [await keeper.learn(labels[i : i + 500]) for i in range(0, len(labels), 500)]
        optimised = [a for a in attempts if a is not None and "target_review" in a.figures]
        assert optimised and all("recall_floor_yielded" in a.figures for a in optimised)
        yielded = [r for r in caplog.records if "recall floor yields" in r.getMessage()]
        assert len(yielded) == 1
        assert keeper.live is not None and keeper.live.version >= 2
        await keeper.shared.close()
        await store.close()

    asyncio.run(run())


def test_an_attempt_runs_off_the_event_loop(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches keep being decided while the optimiser works on a large window."""
    real_recalibrate = recalibration.recalibrate

    def slow_recalibrate(*args: object) -> object:
        time.sleep(0.3)  # a 100,000-decision window on a busy machine
        return real_recalibrate(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(recalibration, "recalibrate", slow_recalibrate)

    async def run() -> None:
        store = RedisScoreStore.from_url(redis_server.url)
        keeper = keeper_for(store, redis_server.url, f"group-{uuid.uuid4().hex[:6]}",
                            TEST_SIGNING_KEY, maturity_days=1.0, window_days=30.0,
                            cost=CostModel(), constraints=Constraints(max_fpr=0.01))  # fmt: skip
        await keeper.start(INITIAL)
        labels = await recorded_history(store)
        ticks = 0

        async def other_work() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(other_work())
        attempts = 0
        for i in range(0, len(labels), 500):
            before = ticks
            if await keeper.learn(labels[i : i + 500]) is not None:
                attempts += 1
                assert ticks > before, "the event loop stood still during the attempt"
        ticker.cancel()
        assert attempts >= 1
        await keeper.shared.close()
        await store.close()

    asyncio.run(run())
