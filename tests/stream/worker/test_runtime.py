"""WorkerRuntime without Faust: start-up, thresholds and hot reload, against a real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from pathlib import Path

import pytest

from fraudstream.features.redis_client import redis_client
from fraudstream.features.store import RedisFeatureStore
from fraudstream.features.transaction import Label
from fraudstream.models.registry import RegistryError, load_version, set_live
from fraudstream.models.signing import SigningKey
from fraudstream.stream.served_features import IncompatibleModel
from fraudstream.stream.settings import Settings, SettingsError
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.tools.services import EmbeddedRedis, free_port
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.pipeline import IncomingRecord
from fraudstream.stream.worker.runtime import WorkerRuntime, registry_pair
from fraudstream.thresholds.online import ThresholdState
from tests.support.outdated import OLD_MERCHANT_FEATURES, edit_metadata, rename_features
from tests.support.signing import TEST_SIGNING_KEY, copy_version

pytestmark = pytest.mark.integration


def shared_threshold_errors(metrics: WorkerMetrics) -> float:
    value = metrics.registry.get_sample_value("fraudstream_shared_threshold_errors_total")
    return 0.0 if value is None else value


def records(count: int, seed: int) -> list[IncomingRecord]:
    """The first `count` transactions of a small generated stream, as consumed records.

    Their txn_ids name the seed: streams of other seeds reuse ids with other content, which
    a worker sharing Redis with them would dead-letter as conflicting duplicates.
    """
    stream = generate_stream(GeneratorConfig(transactions=100, seed=seed))
    return [IncomingRecord(json.dumps({**t.to_dict(), "txn_id": f"s{seed}-{t.txn_id}"}).encode(),
                           t.event_time)
            for t in stream.transactions[:count]]  # fmt: skip


def test_redis_outage_on_the_shared_threshold_keeps_the_pair_logs_once_and_recovers(
    trained_registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens here until the test starts Redis on it
    settings = Settings(registry_path=trained_registry, dynamic_threshold=True, app_id="outage",
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    metrics = WorkerMetrics()
    runtime = WorkerRuntime(settings, f"redis://127.0.0.1:{port}/0", metrics)
    own_pair = registry_pair(load_version(trained_registry))

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="fraudstream.stream.worker.runtime"):
            await runtime.start()  # Redis down: start-up goes on with the model's own pair
            assert runtime.pipeline is not None
            assert runtime.pipeline.thresholds == own_pair
            outcome = await runtime.decide(records(20, seed=4))
            assert len(outcome.decisions) == 20
            assert all(d.threshold_version == own_pair.version for d in outcome.decisions)
            for _ in range(3):
                await runtime.follow_live_threshold()
            assert runtime.pipeline.thresholds == own_pair
            assert shared_threshold_errors(metrics) == 4
            unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(unavailable) == 1  # once per outage, not once per failure
            with EmbeddedRedis(port=port, unix_socket=False):
                await runtime.follow_live_threshold()
                assert runtime.pipeline.thresholds.version == "v1"  # joined the group
                assert any("is back" in r.getMessage() for r in caplog.records)
                await runtime.follow_live_threshold()
                assert shared_threshold_errors(metrics) == 4

    asyncio.run(scenario())


def test_without_the_dynamic_threshold_a_reloaded_model_decides_with_its_own_pair_version(
    trained_registry: Path, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    copy_version(registry, "v0001", "v0002")
    settings = Settings(registry_path=registry, dynamic_threshold=False,
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    runtime = WorkerRuntime(settings, redis_server.url.replace("/0", "/14"), WorkerMetrics())

    async def scenario() -> list[str]:
        await runtime.start()
        versions = [d.threshold_version for d in (await runtime.decide(records(5, 5))).decisions]
        set_live(registry, "v0002")
        await runtime.follow_live_model()
        after = (await runtime.decide(records(5, 6))).decisions
        return versions + [d.threshold_version for d in after]

    assert asyncio.run(scenario()) == ["v0001-static"] * 5 + ["v0002-static"] * 5


def test_redis_stopping_under_a_joined_worker_is_counted_and_nothing_raises(
    trained_registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = Settings(registry_path=trained_registry, dynamic_threshold=True, app_id="stops",
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    metrics = WorkerMetrics()
    runtime = WorkerRuntime(settings, f"redis://127.0.0.1:{port}/0", metrics)
    fraud = Label("t-gone", is_fraud=True, scenario="card_testing", label_time=1.8e9)

    async def scenario() -> None:
        with EmbeddedRedis(port=port, unix_socket=False):
            await runtime.start()
            assert runtime.pipeline is not None
            joined = runtime.pipeline.thresholds
            assert joined.version == "v1" and shared_threshold_errors(metrics) == 0
        # Stopped: the pooled connections are dead and nothing listens any more.
        with caplog.at_level(logging.ERROR, logger="fraudstream.stream.worker.runtime"):
            await runtime.follow_live_threshold()
            await runtime.follow_live_model()
            await runtime.follow_live_threshold()
        assert runtime.pipeline.thresholds == joined
        assert shared_threshold_errors(metrics) == 2
        assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
        letters = await runtime.learn([json.dumps(fraud.to_dict()).encode(), None])
        assert [(letter.stage, letter.error.split(":")[0]) for letter in letters] == [
            ("labels", "tombstone"), ("labels", "feature store unavailable"),
        ]  # fmt: skip
        outcome = await runtime.decide(records(5, seed=7))
        assert len(outcome.decisions) == 5 and all(d.degraded for d in outcome.decisions)

    asyncio.run(scenario())


def test_an_unreadable_shared_threshold_is_counted_like_an_outage(
    trained_registry: Path, redis_server: EmbeddedRedis
) -> None:
    settings = Settings(registry_path=trained_registry, dynamic_threshold=True, app_id="corrupt",
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    metrics = WorkerMetrics()
    runtime = WorkerRuntime(settings, redis_server.url, metrics)

    async def scenario() -> None:
        await runtime.start()
        assert runtime.pipeline is not None
        joined = runtime.pipeline.thresholds
        client = redis_client(redis_server.url)
        await client.hset("fs:{threshold:corrupt}:live", "state", "{not json")
        await client.aclose()
        await runtime.follow_live_threshold()
        assert runtime.pipeline.thresholds == joined
        assert shared_threshold_errors(metrics) == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("signature", [None, "forged"])
def test_a_shared_threshold_not_signed_with_the_workers_key_is_not_applied(
    trained_registry: Path, redis_server: EmbeddedRedis, signature: str | None
) -> None:
    group = f"unsigned-{signature}"
    settings = Settings(registry_path=trained_registry, dynamic_threshold=True, app_id=group,
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    metrics = WorkerMetrics()
    runtime = WorkerRuntime(settings, redis_server.url.replace("/0", "/13"), metrics)
    moved = ThresholdState(2, review=0.4, decline=0.99, reason="written by hand", figures={})

    async def scenario() -> None:
        await runtime.start()
        assert runtime.pipeline is not None
        joined = runtime.pipeline.thresholds
        assert joined.version == "v1" and shared_threshold_errors(metrics) == 0
        client = redis_client(redis_server.url.replace("/0", "/13"))
        forged = {"version": 2, "state": json.dumps(moved.to_dict())}
        if signature is None:
            await client.hdel(f"fs:{{threshold:{group}}}:live", "signature")
        else:
            forged["signature"] = signature
        await client.hset(f"fs:{{threshold:{group}}}:live", mapping=forged)
        await client.aclose()
        for _ in range(2):
            await runtime.follow_live_threshold()
        assert runtime.pipeline.thresholds == joined
        assert shared_threshold_errors(metrics) == 2
        # Each case its own seed: a run's own id key hashes cards apart from another run's.
        outcome = await runtime.decide(records(5, seed=8 if signature is None else 9))
        assert {d.threshold_version for d in outcome.decisions} == {"v1"}

    asyncio.run(scenario())


def test_a_worker_needs_a_key_and_refuses_a_version_signed_with_another(
    trained_registry: Path, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match="FRAUDSTREAM_SIGNING_KEY"):
        WorkerRuntime(Settings(registry_path=trained_registry), redis_server.url, WorkerMetrics())
    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    shutil.copytree(registry / "v0001", registry / "v0002")  # signed for v0001, not v0002
    stranger = Settings(registry_path=registry, dynamic_threshold=False,
                        signing_key=SigningKey.generate())  # fmt: skip
    with pytest.raises(RegistryError, match="signature does not match version v0001"):
        asyncio.run(WorkerRuntime(stranger, redis_server.url, WorkerMetrics()).start())
    settings = Settings(registry_path=registry, dynamic_threshold=False,
                        signing_key=TEST_SIGNING_KEY)  # fmt: skip
    runtime = WorkerRuntime(settings, redis_server.url.replace("/0", "/12"), WorkerMetrics())

    async def hot_reload() -> str:
        await runtime.start()
        set_live(registry, "v0002")
        await runtime.follow_live_model()
        assert runtime.pipeline is not None
        return runtime.pipeline.models.version

    assert asyncio.run(hot_reload()) == "v0001", "the copied version is refused, v0001 serves"
    assert runtime.failed_versions == {"v0002"}


def test_the_store_computes_with_the_live_models_label_delay_and_others_are_refused(
    trained_registry: Path, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(trained_registry, registry)
    edit_metadata(registry / "v0001", label_delay_days=3)
    copy_version(registry, "v0001", "v0002")
    edit_metadata(registry / "v0002", label_delay_days=7)  # not what this worker computes
    copy_version(registry, "v0001", "v0003")
    rename_features(registry / "v0003", OLD_MERCHANT_FEATURES)
    settings = Settings(registry_path=registry, dynamic_threshold=False,
                        signing_key=TEST_SIGNING_KEY, label_delay_days=7)  # fmt: skip
    runtime = WorkerRuntime(settings, redis_server.url.replace("/0", "/11"), WorkerMetrics())

    async def hot_reloads() -> float:
        await runtime.start()
        assert runtime.pipeline is not None
        for version in ("v0002", "v0003"):
            set_live(registry, version)
            await runtime.follow_live_model()
        assert runtime.pipeline.models.version == "v0001"
        store = runtime.pipeline.feature_store
        assert isinstance(store, RedisFeatureStore)
        return store.label_delay_s

    assert asyncio.run(hot_reloads()) == 3 * 86_400.0, "the model's delay, not the setting's"
    assert runtime.failed_versions == {"v0002", "v0003"}
    starting = WorkerRuntime(settings, redis_server.url.replace("/0", "/11"), WorkerMetrics())
    with pytest.raises(IncompatibleModel, match="merchant_fraud_rate_30d"):
        asyncio.run(starting.start())  # v0003, another feature list, is live
