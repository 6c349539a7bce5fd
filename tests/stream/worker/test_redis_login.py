"""A worker whose Redis refuses its login keeps deciding (degraded) and says why, on a real
password-protected redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from fraudstream.features.transaction import Label
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.pipeline import IncomingRecord
from fraudstream.stream.worker.runtime import WorkerRuntime
from tests.support.signing import TEST_SIGNING_KEY

pytestmark = pytest.mark.integration

PASSWORD = "the-real-redis-password"


def test_a_wrong_redis_password_gives_degraded_decisions_and_a_log_naming_the_cause(
    trained_registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream = generate_stream(GeneratorConfig(transactions=100, seed=8))
    records = [IncomingRecord(json.dumps(t.to_dict()).encode(), t.event_time)
               for t in stream.transactions[:10]]  # fmt: skip
    label = Label(stream.transactions[0].txn_id, True, "card_testing", 1.8e9)
    settings = Settings(registry_path=trained_registry, dynamic_threshold=True, app_id="login",
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    metrics = WorkerMetrics()

    async def scenario(url: str) -> None:
        runtime = WorkerRuntime(settings, url, metrics)
        await runtime.start()  # nothing raises: the model's own pair decides meanwhile
        outcome = await runtime.decide(records)
        assert len(outcome.decisions) == 10 and all(d.degraded for d in outcome.decisions)
        assert outcome.feature_store_errors >= 1
        letters = await runtime.learn([json.dumps(label.to_dict()).encode()])
        assert [letter.error.split(":")[0] for letter in letters] == ["feature store unavailable"]
        assert "invalid username-password pair" in letters[0].error
        await runtime.follow_live_threshold()

    with EmbeddedRedis(password=PASSWORD, unix_socket=False) as server:
        wrong = server.url.replace(PASSWORD, "a-wrong-password")
        with caplog.at_level(logging.ERROR, logger="fraudstream.stream.worker.runtime"):
            asyncio.run(scenario(wrong))
    refusals = [r.getMessage() for r in caplog.records if "username-password" in r.getMessage()]
    assert refusals and "unavailable" in refusals[0]
    assert "a-wrong-password" not in caplog.text and PASSWORD not in caplog.text
