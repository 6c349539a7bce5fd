"""The Faust worker: agents that move bytes between topics and call the pipeline.

`score_transactions` takes micro-batches from `transactions`, hands them to
`DecisionPipeline`, and sends decisions and dead letters on; `learn_from_labels` feeds
late fraud labels to the merchant risk features. All logic lives in stream/pipeline.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from fraudstream.features.store import CardCache, FeatureStoreError, redis_stores
from fraudstream.features.transaction import InvalidTransaction, parse_label
from fraudstream.models.drift import DriftMonitor, ScoreReference
from fraudstream.models.ensemble import EnsembleWeights
from fraudstream.models.registry import LoadedModels, RegistryError, live_version, load_version
from fraudstream.stream.contract import DeadLetter
from fraudstream.stream.settings import Settings
from fraudstream.stream.worker.metrics import WorkerMetrics, attach_faust_sensor
from fraudstream.stream.worker.pipeline import (
    BatchOutcome,
    DecisionPipeline,
    IncomingRecord,
    ShadowCandidate,
    ThresholdPair,
    dead_letter,
)
from fraudstream.stream.worker.recalibration import ThresholdKeeper, keeper_for
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.online import ThresholdState

log = logging.getLogger(__name__)

#: Faust settings that make it quick and reliable on Tansu (docs/notes-faust-on-tansu.md):
#: Tansu holds a group join for about half the session timeout, so the session timeout
#: is the rebalance latency; heartbeats must fire well inside it.
FAUST_ON_TANSU: dict[str, Any] = {
    "topic_replication_factor": 1,
    "web_enabled": False,
    "consumer_auto_offset_reset": "earliest",
    "broker_max_poll_records": 1000,
    "broker_commit_interval": 0.5,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 20.0,
}
BATCH_MAX = 500
BATCH_WITHIN_S = 0.005


def shorten_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Make Faust's consumers ask for data with a short `fetch_max_wait_ms`.

    faust-streaming hard-codes 1,500 ms, and Tansu answers a fetch with no data only when
    that wait ends, not when data arrives: measured with aiokafka, a record waited 364 ms
    (median) to be fetched at 1,500 ms against 3 ms at 10 ms. The cost is more fetch
    requests while idle. aiokafka reads the attribute when the consumer starts.
    """
    original = AIOKafkaConsumerThread._create_worker_consumer

    def create_worker_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def weights_for(settings: Settings, models: LoadedModels) -> dict[str, float]:
    """The version's fitted ensemble weights, unless settings override them."""
    weights = EnsembleWeights.from_dict(models.metadata["weights"]).as_dict()
    if settings.weight_xgboost is not None:
        weights["xgboost"] = settings.weight_xgboost
    if settings.weight_isolation_forest is not None:
        weights["isolation_forest"] = settings.weight_isolation_forest
    return weights


def registry_pair(models: LoadedModels) -> ThresholdPair:
    """The version's own cost-optimal pair, chosen on its validation split."""
    chosen = models.metadata["thresholds"]["ensemble"]
    return ThresholdPair(f"{models.version}-static", chosen["review"], chosen["decline"])


def build_pipeline(settings: Settings, redis_url: str) -> DecisionPipeline:
    """The live registry version with its thresholds and weights."""
    models = load_version(settings.registry_path)
    feature_store, score_store = redis_stores(redis_url, CardCache())
    return DecisionPipeline(
        feature_store,
        score_store,
        models,
        weights_for(settings, models),
        registry_pair(models),
        settings.model_timeout_s,
        settings.fallback_policy,
    )


def create_app(
    settings: Settings,
    kafka_url: str,
    redis_url: str,
    *,
    datadir: Path,
    status_file: Path | None = None,
    session_timeout_s: float = 6.0,
    metrics: WorkerMetrics | None = None,
) -> faust.App:
    """The worker app; `metrics` (default: a fresh registry) is what /metrics serves."""
    metrics = metrics if metrics is not None else WorkerMetrics()
    app = faust.App(
        settings.app_id,
        broker=kafka_url,
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        broker_session_timeout=session_timeout_s,
        **FAUST_ON_TANSU,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw")

    transactions = raw_topic(settings.topic_transactions)
    labels = raw_topic(settings.topic_labels)
    dead_letters = raw_topic(settings.topic_dlq)
    pipeline: list[DecisionPipeline] = []
    keeper: list[ThresholdKeeper] = []
    drift: list[DriftMonitor] = []
    starting = asyncio.Lock()

    def apply(live: ThresholdState) -> None:
        """Make `live` the pair this worker decides with."""
        pair = ThresholdPair(f"v{live.version}", live.review, live.decline)
        pipeline[0].thresholds = pair
        metrics.set_thresholds(pair.version, pair.review, pair.decline)

    async def ready() -> DecisionPipeline:
        """Build the pipeline (and the threshold keeper) once, on first use."""
        async with starting:
            if not pipeline:
                built = build_pipeline(settings, redis_url)
                metrics.set_model_version(built.models.version)
                pipeline.append(built)
                if settings.shadow_version is not None:
                    try:
                        candidate = load_version(settings.registry_path, settings.shadow_version)
                        built.shadow = ShadowCandidate(candidate, weights_for(settings, candidate),
                                                       registry_pair(candidate))  # fmt: skip
                    except RegistryError as error:
                        log.error("no shadow model: %s", error)
                if "score_reference" in built.models.metadata:
                    reference = ScoreReference.from_dict(built.models.metadata["score_reference"])
                    drift.append(DriftMonitor(reference))
                own_pair = built.thresholds
                initial = ThresholdState(1, own_pair.review, own_pair.decline,
                                         f"validation optimum of model {built.models.version}",
                                         {"model_version": built.models.version})  # fmt: skip
                if settings.dynamic_threshold:
                    keeper.append(keeper_for(
                        built.score_store, redis_url, settings.app_id,
                        maturity_days=settings.label_maturity_days,
                        window_days=settings.label_window_days,
                        cost=CostModel(settings.cost_fn, settings.cost_fp, settings.cost_review),
                        min_recall=settings.recalibration_min_recall, max_fpr=settings.max_fpr,
                    ))  # fmt: skip
                    initial = await keeper[0].start(initial)
                apply(initial)
        return pipeline[0]

    async def send_dead_letter(letter: DeadLetter) -> None:
        metrics.observe_dead_letter(letter.stage, letter.error)
        await dead_letters.send(value=letter.to_json_bytes(), force=True)

    async def emit(outcome: BatchOutcome) -> None:
        """Hand a batch's records to the producer at once, then wait for all deliveries.

        One wait per batch instead of one per record; the batch's offsets are acked only
        after this returns, so a crash never commits a decision that was not delivered.
        """
        producer = app.producer
        pending = [
            await producer.send(settings.topic_decisions, decision.card_id.encode(),
                                decision.to_json_bytes(), None, None, None)
            for decision in outcome.decisions
        ] + [
            await producer.send(settings.topic_dlq, None, letter.to_json_bytes(),
                                None, None, None)
            for letter in outcome.dead_letters
        ]  # fmt: skip
        await asyncio.gather(*pending)

    @app.agent(transactions)
    async def score_transactions(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            records = [
                IncomingRecord(event.value, event.message.timestamp or time.time())
                for event in events
            ]
            outcome = await (await ready()).process(records)
            if drift:
                drift[0].observe([decision.score for decision in outcome.decisions])
                if (psi := drift[0].value()) is not None:
                    metrics.set_score_psi(psi)
            started = time.perf_counter()
            await emit(outcome)
            metrics.observe_batch(outcome, time.perf_counter() - started)

    @app.agent(labels)
    async def learn_from_labels(stream: Any) -> None:
        async for values in stream.take(BATCH_MAX, within=0.05):
            parsed = []
            for value in values:
                try:
                    parsed.append(parse_label(value))
                except InvalidTransaction as error:
                    await send_dead_letter(dead_letter(value, str(error), "labels"))
            frauds = sum(label.is_fraud for label in parsed)
            metrics.observe_labels(frauds, len(parsed) - frauds)
            try:
                await (await ready()).feature_store.record_labels(parsed)
                if keeper:
                    await keeper[0].learn(parsed)
            except FeatureStoreError as error:
                for label in parsed:
                    letter = dead_letter(json.dumps(label.to_dict()).encode(), str(error), "labels")
                    await send_dead_letter(letter)

    @app.timer(interval=0.5)
    async def follow_live_threshold() -> None:
        """Apply the group's live threshold: every worker converges within one interval."""
        if keeper and pipeline:
            live = await keeper[0].refresh()
            if live is not None:
                apply(live)

    failed_versions: set[str] = set()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def forget_cards_on_revoke(sender: Any, *args: Any, **kwargs: Any) -> None:
        """Another worker may write these cards next: memory must not outlive ownership."""
        if pipeline:
            pipeline[0].feature_store.forget_cached_cards()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def forget_cards_on_assignment(sender: Any, *args: Any, **kwargs: Any) -> None:
        """Again after the new assignment, in case a batch was still finishing meanwhile."""
        if pipeline:
            pipeline[0].feature_store.forget_cached_cards()

    @app.timer(interval=2.0)
    async def follow_live_model() -> None:
        """Hot reload: load a newly promoted version (hash-verified) between batches.

        A version that fails to load is reported once and the current one keeps serving.
        """
        if not pipeline:
            return
        try:
            wanted = live_version(settings.registry_path)
        except RegistryError as error:
            log.error("model registry unreadable, keeping %s: %s", pipeline[0].models.version,
                      error)  # fmt: skip
            return
        if wanted == pipeline[0].models.version or wanted in failed_versions:
            return
        loop = asyncio.get_running_loop()
        try:
            models = await loop.run_in_executor(None, load_version, settings.registry_path, wanted)
            pipeline[0].use_models(models, weights_for(settings, models))
        except (RegistryError, ValueError) as error:
            failed_versions.add(wanted)
            log.error("cannot load model %s, keeping %s: %s", wanted,
                      pipeline[0].models.version, error)  # fmt: skip
            return
        metrics.set_model_version(models.version)
        log.warning("now serving model %s", models.version)
        pair = registry_pair(models)
        if keeper:
            apply(await keeper[0].model_changed(models.version, pair.review, pair.decline))
        else:
            apply(ThresholdState(1, pair.review, pair.decline, "registry", {}))

    @app.timer(interval=1.0)
    async def report_consumer_lag() -> None:
        """Records behind the high-water mark, per owned `transactions` partition."""
        metrics.clear_lag()
        for tp in app.consumer.assignment():
            if tp.topic != settings.topic_transactions:
                continue
            position = await app.consumer.position(tp)
            if position is not None:
                metrics.set_lag(tp.partition, max(0, app.consumer.highwater(tp) - position))

    if status_file is not None:

        @app.on_rebalance_complete.connect  # type: ignore[arg-type]
        async def report_assignment(sender: Any, **kwargs: Any) -> None:
            """Tell whoever started us which partitions we own (written atomically)."""
            assigned = sorted(
                tp.partition
                for tp in app.consumer.assignment()
                if tp.topic == settings.topic_transactions
            )
            pending = status_file.with_suffix(".tmp")
            pending.write_text(json.dumps({"partitions": assigned, "time": time.time()}))
            pending.replace(status_file)

    return app


def run_worker(
    settings: Settings, kafka_url: str, redis_url: str, *, datadir: Path,
    status_file: Path | None = None, session_timeout_s: float = 6.0,
) -> None:  # fmt: skip
    """Run one worker in the foreground until SIGTERM / Ctrl-C."""
    load_version(settings.registry_path)  # fail fast on a missing or tampered model
    shorten_fetch_wait(settings.fetch_max_wait_ms)
    metrics = WorkerMetrics()
    port = metrics.serve(settings.metrics_port)
    print(f"metrics on http://127.0.0.1:{port}/metrics", flush=True)
    if status_file is not None:
        status_file.with_suffix(".metrics").write_text(f"http://127.0.0.1:{port}/metrics\n")
    app = create_app(
        settings, kafka_url, redis_url, datadir=datadir, status_file=status_file,
        session_timeout_s=session_timeout_s, metrics=metrics,
    )  # fmt: skip
    attach_faust_sensor(app, metrics)
    faust.Worker(app, loglevel="warning", redirect_stdouts=False).execute_from_commandline()
