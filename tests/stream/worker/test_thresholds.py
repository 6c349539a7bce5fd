"""Two workers in one group apply one live threshold version, switching without restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fraudstream.stream.tools.services import EmbeddedBroker, EmbeddedRedis
from fraudstream.stream.tools.workers import start_workers, stop_workers
from fraudstream.stream.worker.recalibration import shared_threshold
from fraudstream.thresholds.online import ThresholdState
from tests.support.signing import TEST_SIGNING_KEY
from tests.support.worker_runs import (
    collect,
    live_version,
    produce,
    setup_run,
    stream_of,
    wait_for_split,
    wait_until,
)

THRESHOLD_INFO = "fraudstream_threshold_version_info"

pytestmark = pytest.mark.integration


async def publish(redis_url: str, group: str, state: ThresholdState) -> bool:
    shared = shared_threshold(redis_url, group, TEST_SIGNING_KEY)  # the workers' key
    try:
        current = await shared.current()
        assert current is not None, "the workers initialise the shared threshold"
        return await shared.publish(state, expected_version=current.version)
    finally:
        await shared.close()


def test_two_workers_switch_to_a_published_version_together(
    broker: EmbeddedBroker, redis_server: EmbeddedRedis, trained_registry: Path, tmp_path: Path
) -> None:
    env, topics = setup_run(broker, redis_server, trained_registry, tmp_path)
    workers = start_workers(2, env, tmp_path, session_timeout_s=2.0)
    try:
        wait_for_split(workers)
        txns = stream_of(1200, seed=24)
        produce(broker, topics["transactions"], txns[:400], [])
        before = collect(broker, topics["decisions"], 400)
        new = ThresholdState(2, review=0.05, decline=0.5, reason="test", figures={})
        assert asyncio.run(publish(env["FRAUDSTREAM_REDIS_URL"], env["FRAUDSTREAM_APP_ID"], new))
        for worker in workers:  # each polls the shared threshold every 0.5 s
            wait_until(lambda w=worker: live_version(w, THRESHOLD_INFO) == "v2", "v2 applied")
        produce(broker, topics["transactions"], txns[400:], [])
        everything = collect(broker, topics["decisions"], len(txns))
    finally:
        stop_workers(workers)
    assert {d["threshold_version"] for d in before} == {"v1"}
    after = [d for d in everything if d["txn_id"] in {t.txn_id for t in txns[400:]}]
    assert len(after) == 800
    assert {d["threshold_version"] for d in after} == {"v2"}
    assert len({d["card_id"] for d in after}) > 10  # cards of both workers' partitions
    by_model = [decision for decision in after if not decision["rules"]]  # a rule overrides
    assert len(by_model) > 700
    for decision in by_model:
        expected = ("decline" if decision["score"] >= 0.5
                    else "review" if decision["score"] >= 0.05 else "approve")  # fmt: skip
        assert decision["decision"] == expected
