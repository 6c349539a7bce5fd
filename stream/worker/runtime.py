"""What one worker does besides moving bytes: start-up, deciding, labels, hot reload.

`WorkerRuntime` is framework-free: the Faust adapter (stream/worker/app.py) hands it raw
records and sends on what it returns, so tests can drive a worker's whole life without a
broker. It owns the decision pipeline, the optional shadow candidate, the score-drift
monitor and the threshold keeper, and it decides what a worker does when Redis fails:

- features: scored history-free and `degraded` (the pipeline's own policy);
- the shared threshold (start-up, labels, the refresh timer, a model promotion): keep
  deciding with the pair in force, count every failure, log once per outage, and catch up
  (join the group, publish a promoted model's pair) when Redis answers again. A stored
  pair that is unreadable or not signed with the worker's key fails the same way.

Every model version it loads (live, shadow, hot reload) must be signed with
`settings.signing_key`; a worker has no key-less mode. It must also serve the features
the worker computes (stream/served_features.py): the live version's label delay sets the
merchant risk windows of the feature store, and a shadow or promoted version trained with
another delay is refused (serving it takes a restart, whose store then follows it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.features.store import CardCache, redis_stores
from fraudstream.features.stores import FeatureStoreError
from fraudstream.features.transaction import InvalidTransaction, parse_label
from fraudstream.models.drift import DriftMonitor, ScoreReference
from fraudstream.models.ensemble import EnsembleWeights
from fraudstream.models.names import ModelName
from fraudstream.models.registry import LoadedModels, RegistryError, live_version, load_version
from fraudstream.stream.contract import DeadLetter
from fraudstream.stream.served_features import IncompatibleModel, trained_label_delay_s
from fraudstream.stream.settings import Settings, SettingsError
from fraudstream.stream.worker.metrics import WorkerMetrics
from fraudstream.stream.worker.pipeline import (
    BatchOutcome,
    DecisionPipeline,
    IncomingRecord,
    ShadowCandidate,
    ThresholdPair,
    dead_letter,
)
from fraudstream.stream.worker.recalibration import ThresholdKeeper, keeper_for
from fraudstream.stream.worker.rules_watch import RulesWatch
from fraudstream.thresholds.online import ThresholdState
from fraudstream.thresholds.shared import SharedThresholdError

log = logging.getLogger(__name__)


def weights_for(settings: Settings, models: LoadedModels) -> dict[str, float]:
    """The version's fitted ensemble weights, unless settings override them."""
    weights = EnsembleWeights.from_dict(models.metadata["weights"]).as_dict()
    if settings.weight_xgboost is not None:
        weights[ModelName.XGBOOST] = settings.weight_xgboost
    if settings.weight_isolation_forest is not None:
        weights[ModelName.ISOLATION_FOREST] = settings.weight_isolation_forest
    return weights


def registry_pair(models: LoadedModels) -> ThresholdPair:
    """The version's own cost-optimal pair, chosen on its validation split.

    Its version names the model (`v0003-static`), so a decision made with it says which.
    """
    return ThresholdPair.from_registry(models.version, models.metadata)


def group_pair(state: ThresholdState) -> ThresholdPair:
    """The consumer group's published pair, as decisions name it (`v12`)."""
    return state.pair


class Outage:
    """Counts the failures of one dependency, logging once per outage instead of per call."""

    def __init__(self, what: str, consequence: str, count: Any) -> None:
        self.what, self.consequence, self._count = what, consequence, count
        self.down = False

    def failed(self, error: Exception) -> None:
        self._count()
        if not self.down:
            log.error("%s unavailable (%s); %s", self.what, error, self.consequence)
            self.down = True

    def recovered(self) -> None:
        if self.down:
            log.warning("%s is back", self.what)
            self.down = False


class WorkerRuntime:
    """A worker's decision pipeline and control plane; `start()` before anything else."""

    def __init__(self, settings: Settings, redis_url: str, metrics: WorkerMetrics) -> None:
        if settings.signing_key is None:
            raise SettingsError(
                "a worker needs FRAUDSTREAM_SIGNING_KEY: it loads only models and threshold "
                "pairs signed with it"
            )
        self.signing_key = settings.signing_key
        self.settings = settings
        #: SettingsError naming FRAUDSTREAM_ID_HASH_KEY if unset for named services.
        self.ids = settings.id_pseudonyms()
        self.redis_url = redis_url
        self.metrics = metrics
        self.pipeline: DecisionPipeline | None = None
        self.keeper: ThresholdKeeper | None = None
        self.drift: DriftMonitor | None = None
        self.failed_versions: set[str] = set()
        self.rules: RulesWatch | None = None
        #: The label delay the feature store computes with: the live version's at start.
        self.label_delay_s: float | None = None
        self._joined_group = False
        self._unpublished_model: LoadedModels | None = None
        self._starting = asyncio.Lock()
        self.threshold_outage = Outage(
            "shared threshold in Redis", "deciding with the pair in force",
            metrics.observe_shared_threshold_error,
        )  # fmt: skip

    @property
    def started(self) -> bool:
        return self.pipeline is not None

    async def start(self) -> None:
        """Load the live model, shadow and drift reference, and join the group's threshold.

        Idempotent (both agents call it before their first record). Redis being down does
        not stop start-up: the model's own pair decides until the group's can be read.
        """
        async with self._starting:
            if self.pipeline is not None:
                return
            settings = self.settings
            models = self._load(None)
            assert self.label_delay_s is not None, "set by the first load"
            feature_store, score_store = redis_stores(
                self.redis_url, CardCache(), self.label_delay_s
            )
            self.pipeline = DecisionPipeline(
                feature_store,
                score_store,
                models,
                weights_for(settings, models),
                registry_pair(models),
                settings.model_timeout_s,
                settings.fallback_policy,
                stand_in_after_s=settings.stand_in_after_s,
                max_event_skew_s=settings.event_skew_limit_s,
                ids=self.ids,
            )
            self.metrics.set_model_version(models.version)
            self.rules = RulesWatch(
                settings.rules_path, self.ids, on_invalid=self.metrics.observe_invalid_rules
            )
            self.pipeline.rule_set = self.rules.rule_set
            self._use_shadow()
            self._use_drift_reference(models)
            self._apply(registry_pair(models))
            if settings.dynamic_threshold:
                self.keeper = keeper_for(
                    self.pipeline.score_store, self.redis_url, settings.app_id, self.signing_key,
                    maturity_days=settings.label_maturity_days,
                    window_days=settings.label_window_days,
                    cost=settings.cost_model, constraints=settings.recalibration_constraints,
                )  # fmt: skip
                await self._join_group()

    def _use_shadow(self) -> None:
        if self.settings.shadow_version is None:
            return
        assert self.pipeline is not None
        try:
            candidate = self._load(self.settings.shadow_version)
        except RegistryError as error:
            log.error("no shadow model: %s", error)
            return
        self.pipeline.shadow = ShadowCandidate(
            candidate, weights_for(self.settings, candidate), registry_pair(candidate)
        )

    def _load(self, version: str | None) -> LoadedModels:
        """`version` (None: the live one), verified against the signing key, loaded, and
        checked to serve the features this worker computes (the first load sets the label
        delay the worker computes with); `RegistryError` otherwise, saying what to do."""
        registry = self.settings.registry_path
        models = load_version(registry, version, signing_key=self.signing_key)
        label_delay_s = trained_label_delay_s(models, registry)
        if self.label_delay_s is None:
            self.label_delay_s = label_delay_s
        elif label_delay_s != self.label_delay_s:
            raise IncompatibleModel(
                f"model {registry / models.version} was trained with a label delay of "
                f"{label_delay_s / SECONDS_PER_DAY:g} days, this worker's merchant windows "
                f"end {self.label_delay_s / SECONDS_PER_DAY:g} days before each transaction; "
                "restart the workers to serve it"
            )
        return models

    def _use_drift_reference(self, models: LoadedModels) -> None:
        if "score_reference" in models.metadata:
            reference = ScoreReference.from_dict(models.metadata["score_reference"])
            self.drift = DriftMonitor(reference)

    def _apply(self, pair: ThresholdPair) -> None:
        """Make `pair` the one this worker decides with."""
        assert self.pipeline is not None
        self.pipeline.thresholds = pair
        self.metrics.set_thresholds(pair.version, pair.review, pair.decline)

    async def _join_group(self) -> None:
        """Adopt the group's live pair, or publish the model's own if none is live yet."""
        assert self.keeper is not None and self.pipeline is not None
        own = self.pipeline.thresholds
        version = self.pipeline.models.version
        initial = ThresholdState(1, own.review, own.decline,
                                 f"validation optimum of model {version}",
                                 {"model_version": version})  # fmt: skip
        try:
            self._apply(group_pair(await self.keeper.start(initial)))
        except SharedThresholdError as error:
            self.threshold_outage.failed(error)
            return
        self.threshold_outage.recovered()
        self._joined_group = True

    async def decide(self, records: Sequence[IncomingRecord]) -> BatchOutcome:
        """Decisions and dead letters for one micro-batch; never raises for bad input."""
        assert self.pipeline is not None, "start() the runtime first"
        outcome = await self.pipeline.process(records)
        if self.drift is not None:
            self.drift.observe([decision.score for decision in outcome.decisions])
            if (psi := self.drift.value()) is not None:
                self.metrics.set_score_psi(psi)
        return outcome

    async def learn(self, values: Sequence[bytes | None]) -> list[DeadLetter]:
        """Feed late labels to merchant risk and the threshold; return the dead letters.

        A label that cannot be parsed (a tombstone is None), or that Redis could not record,
        is dead-lettered; Redis failing never raises here (the label agent must go on).
        """
        assert self.pipeline is not None, "start() the runtime first"
        letters, parsed = [], []
        for value in values:
            try:
                parsed.append(parse_label(value))
            except InvalidTransaction as error:
                letters.append(dead_letter(value, str(error), "labels", self.ids))
        frauds = sum(label.is_fraud for label in parsed)
        self.metrics.observe_labels(frauds, len(parsed) - frauds)
        try:
            await self.pipeline.feature_store.record_labels(parsed)
            if self.keeper is not None:  # before joining the group it only fills its window
                await self.keeper.learn(parsed)
        except FeatureStoreError as error:
            letters += [
                dead_letter(json.dumps(label.to_dict()).encode(), str(error), "labels", self.ids)
                for label in parsed
            ]
        except SharedThresholdError as error:
            # The labels are in the window: only publishing a recalibrated pair failed.
            self.threshold_outage.failed(error)
        for letter in letters:
            self.metrics.observe_dead_letter(letter.stage, letter.error)
        return letters

    async def follow_live_threshold(self) -> None:
        """Apply the group's live pair: every worker converges within one interval.

        Also catches up after an outage: joins the group, publishes a promoted model's pair.
        """
        if self.keeper is None or self.pipeline is None:
            return
        if not self._joined_group:
            await self._join_group()
            return
        try:
            if self._unpublished_model is not None:
                await self._publish_model_pair(self._unpublished_model)
            else:
                live = await self.keeper.refresh()
                if live is not None:
                    self._apply(group_pair(live))
        except SharedThresholdError as error:
            self.threshold_outage.failed(error)
            return
        self.threshold_outage.recovered()

    async def _publish_model_pair(self, models: LoadedModels) -> None:
        assert self.keeper is not None
        own = registry_pair(models)
        self._apply(group_pair(await self.keeper.model_changed(models.version, own.review,
                                                               own.decline)))  # fmt: skip
        self._unpublished_model = None

    def follow_rules(self) -> None:
        """Hot reload of the business rules: a valid edit takes over between batches."""
        if self.rules is not None and self.pipeline is not None and self.rules.check():
            self.pipeline.rule_set = self.rules.rule_set

    async def follow_live_model(self) -> None:
        """Hot reload: load a newly promoted version (hash-verified) between batches.

        A version that fails to load is reported once and the current one keeps serving.
        """
        if self.pipeline is None:
            return
        current = self.pipeline.models.version
        try:
            wanted = live_version(self.settings.registry_path)
        except RegistryError as error:
            log.error("model registry unreadable, keeping %s: %s", current, error)
            return
        if wanted == current or wanted in self.failed_versions:
            return
        loop = asyncio.get_running_loop()
        try:
            models = await loop.run_in_executor(None, self._load, wanted)
            self.pipeline.use_models(models, weights_for(self.settings, models))
        except (RegistryError, ValueError) as error:
            self.failed_versions.add(wanted)
            log.error("cannot load model %s, keeping %s: %s", wanted, current, error)
            return
        self.metrics.set_model_version(models.version)
        log.warning("now serving model %s", models.version)
        self._apply(registry_pair(models))  # until the group has published its pair
        if self.keeper is not None:
            self._unpublished_model = models
            await self.follow_live_threshold()

    def forget_cached_cards(self) -> None:
        """Another worker may write these cards next: memory must not outlive ownership."""
        if self.pipeline is not None:
            self.pipeline.feature_store.forget_cached_cards()
