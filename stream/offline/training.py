"""The offline path, training: fit the models on a historical stream and register them.

A stream is split by time (never shuffled): the earliest `TRAIN_FRACTION` of its span
trains the models, the next `VALID_FRACTION` tunes early stopping, the IsolationForest
calibration and every scorer's cost-optimal thresholds, and the rest is held out for
evaluation (`fraudstream.stream.offline.evaluation`). The split boundaries travel in the
registry metadata so evaluation holds out exactly what training never saw. The validation
part also chooses XGBoost's tree settings from a named grid (`models.tree_search.GRIDS`);
every candidate and the choice are recorded in the metadata too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.builder import FeatureMatrix, build_features
from fraudstream.features.definitions import ANOMALY_FEATURES, DEFAULT_LABEL_DELAY_S
from fraudstream.features.geo import SECONDS_PER_DAY
from fraudstream.models.drift import ScoreReference
from fraudstream.models.ensemble import EnsembleWeights, combine_batch
from fraudstream.models.names import ModelName
from fraudstream.models.registry import (
    LoadedModels,
    RegistryError,
    file_sha256,
    list_versions,
    load_version,
    save_version,
    verify_version,
)
from fraudstream.models.rules import RulesScorer
from fraudstream.models.signing import (
    SigningKey,
    SigningKeyError,
    key_file_for,
    signing_key_for,
)
from fraudstream.models.training import TrainedModels, TrainingParams, train_models
from fraudstream.models.tree_search import GRIDS
from fraudstream.stream.offline.feature_cache import FeatureCache, cache_key
from fraudstream.stream.served_features import (
    LABEL_DELAY_KEY,
    IncompatibleModel,
    trained_label_delay_s,
)
from fraudstream.stream.settings import Settings
from fraudstream.stream.sim.generator import GeneratorConfig, generate_stream
from fraudstream.stream.sim.rejected import RejectedRecords
from fraudstream.stream.sim.streamfile import labels_path_for, read_stream_file, write_stream
from fraudstream.thresholds.cost import CostModel
from fraudstream.thresholds.optimise import Constraints, optimise_thresholds

TRAIN_FRACTION = 0.5
VALID_FRACTION = 0.2
#: Generated history a model is trained on when the registry is empty (seed 7).
TRAINING_TRANSACTIONS = 200_000
#: The tree-settings grid `fraudstream train` and the demo search unless told otherwise.
DEFAULT_SEARCH = "quick"
#: `--search` choices: "none" trains the default tree settings alone.
SEARCH_CHOICES = ("none", *GRIDS)


@dataclass(frozen=True)
class TimeSplit:
    """Epoch-second boundaries: train `< train_end` <= valid `< valid_end` <= held out."""

    train_end: float
    valid_end: float

    @classmethod
    def of(cls, event_times: NDArray[np.float64]) -> TimeSplit:
        start, end = float(event_times.min()), float(event_times.max())
        span = end - start
        return cls(
            train_end=start + TRAIN_FRACTION * span,
            valid_end=start + (TRAIN_FRACTION + VALID_FRACTION) * span,
        )

    @classmethod
    def ending_at(cls, start: float, valid_end: float) -> TimeSplit:
        """Train and validation in the proportions of `of`, filling `[start, valid_end)`:
        how a prequential fold fits on everything before its label-delay gap."""
        train_share = TRAIN_FRACTION / (TRAIN_FRACTION + VALID_FRACTION)
        return cls(train_end=start + train_share * (valid_end - start), valid_end=valid_end)

    def rows(
        self, event_times: NDArray[np.float64], is_fraud: NDArray[np.float64]
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """The labelled training rows and the labelled validation rows."""
        labelled = ~np.isnan(is_fraud)
        train = labelled & (event_times < self.train_end)
        return train, labelled & ~train & (event_times < self.valid_end)


def load_labelled_stream(
    data: Path,
    since: float | None = None,
    label_delay_s: float = DEFAULT_LABEL_DELAY_S,
    rejects: RejectedRecords | None = None,
    cache: FeatureCache | None = None,
) -> FeatureMatrix:
    """Read a stream and the labels file beside it, and build point-in-time features, the
    merchant risk windows ending `label_delay_s` before each transaction.

    With `since`, keep transactions from that time on and only the labels that had
    arrived by the stream's last event: what a retrain can know at that moment. Records
    that break the contract go to `rejects` (see `read_stream_file`). With `cache`, a
    matrix built before from the same files, feature definition and label delay is
    reused (nothing is read then, so nothing is rejected either), and one built now is
    kept (see `feature_cache`).
    """
    if cache is None:
        return _build_labelled_stream(data, since, label_delay_s, rejects)
    strict = rejects is None or rejects.strict
    key = cache_key(data, labels_path_for(data), since, label_delay_s, strict)
    return cache.load_or_build(
        key, lambda: _build_labelled_stream(data, since, label_delay_s, rejects)
    )


def _build_labelled_stream(
    data: Path, since: float | None, label_delay_s: float, rejects: RejectedRecords | None
) -> FeatureMatrix:
    transactions, labels = read_stream_file(data, rejects)
    if since is not None:
        transactions = [txn for txn in transactions if txn.event_time >= since]
        if not transactions:
            raise ValueError(f"no transactions in {data} at or after {since}")
        now = max(txn.event_time for txn in transactions)
        labels = [label for label in labels if label.label_time <= now]
    return build_features(transactions, labels, label_delay_s)


def score_all(
    models: LoadedModels | TrainedModels, weights: EnsembleWeights, features: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """Scores of every model, the ensemble and the rules baseline for a feature matrix."""
    per_model: dict[str, NDArray[np.float64]] = {
        ModelName.XGBOOST: models.xgboost.score_batch(features),
        ModelName.ISOLATION_FOREST: models.isolation_forest.score_batch(features),
    }
    return {
        **per_model,
        "ensemble": combine_batch(per_model, weights.as_dict()),
        "rules": RulesScorer(models.feature_names).score_batch(features),
    }


def cheapest_weights(
    scores: dict[str, NDArray[np.float64]],
    is_fraud: NDArray[np.float64],
    cost: CostModel,
    constraints: Constraints,
) -> EnsembleWeights:
    """The IsolationForest weight (0.05 to 0.95, step 0.05) whose ensemble costs least.

    The default weights of a registered version; settings can still override them.
    """
    best: tuple[float, float] | None = None
    for forest_weight in np.round(np.arange(0.05, 0.951, 0.05), 2):
        weights: dict[str, float] = {
            ModelName.XGBOOST: 1.0 - forest_weight,
            ModelName.ISOLATION_FOREST: forest_weight,
        }
        ensemble = combine_batch({name: scores[name] for name in weights}, weights)
        expected = optimise_thresholds(ensemble, is_fraud, cost, constraints).outcome.cost_per_txn
        if best is None or expected < best[0]:
            best = (expected, float(forest_weight))
    assert best is not None
    return EnsembleWeights(xgboost=1.0 - best[1], isolation_forest=best[1])


@dataclass(frozen=True)
class FittedScorers:
    """What training chooses on one split, before anything is registered: both models, the
    ensemble weights, and each scorer's thresholds with their cost on validation."""

    models: TrainedModels
    weights: EnsembleWeights
    thresholds: dict[str, dict[str, float]]
    valid_scores: dict[str, NDArray[np.float64]]


def fit_scorers(
    matrix: FeatureMatrix,
    train: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    cost: CostModel,
    constraints: Constraints,
    search: str = DEFAULT_SEARCH,
) -> FittedScorers:
    """Fit both models on the `train` rows of `matrix`, then choose on the `valid` rows the
    XGBoost tree settings of the `search` grid (`SEARCH_CHOICES`; "none" for the default
    settings alone), the ensemble weights and every scorer's thresholds: the cheapest under
    `cost` within `constraints`. Shared by `train_from_file` and the prequential evaluation,
    so the folds evaluate what training registers.
    """
    if search not in SEARCH_CHOICES:
        raise ValueError(f"unknown tree search {search!r}; choose one of {SEARCH_CHOICES}")
    y = matrix.is_fraud
    trained = train_models(
        matrix.features[train],
        y[train],
        matrix.features[valid],
        y[valid],
        list(matrix.feature_names),
        TrainingParams(if_features=ANOMALY_FEATURES),
        search=GRIDS.get(search, ()),
    )
    valid_scores = score_all(trained, EnsembleWeights(), matrix.features[valid])
    weights = cheapest_weights(valid_scores, y[valid], cost, constraints)
    valid_scores["ensemble"] = combine_batch(
        {name: valid_scores[name] for name in weights.as_dict()}, weights.as_dict()
    )
    thresholds = {}
    for name, scores in valid_scores.items():
        choice = optimise_thresholds(scores, y[valid], cost, constraints)
        thresholds[name] = {
            "review": choice.outcome.review_threshold,
            "decline": choice.outcome.decline_threshold,
            "validation_cost_per_txn": choice.outcome.cost_per_txn,
        }
    return FittedScorers(trained, weights, thresholds, valid_scores)


def train_from_file(
    data: Path,
    registry: Path,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    since: float | None = None,
    *,
    signing_key: SigningKey,
    rejects: RejectedRecords | None = None,
    label_delay_s: float = DEFAULT_LABEL_DELAY_S,
    search: str = DEFAULT_SEARCH,
) -> str:
    """Train both models on `data`, pick each scorer's thresholds, register a new version
    signed with `signing_key`.

    Thresholds and ensemble weights are the cheapest under `cost` within `constraints`
    (the command line passes `Settings.cost_model` and `Settings.selection_constraints`:
    the FPR cap and review capacity less a margin, as the pair will decide unseen
    traffic); both are stored in the version's metadata. `since` retrains on the recent part only
    (see `load_labelled_stream`); records that break the contract go to `rejects`. The
    label delay of the merchant risk features, `label_delay_s` (the command line passes
    `Settings.label_delay_s`), is recorded too: workers serving the version compute with it.
    `search` names the grid of XGBoost tree settings tried (see `fit_scorers`).
    """
    matrix = load_labelled_stream(
        data, since, label_delay_s, rejects, FeatureCache.in_registry(registry)
    )
    times = np.array([txn.event_time for txn in matrix.transactions])
    split = TimeSplit.of(times)
    train, valid = split.rows(times, matrix.is_fraud)
    fitted = fit_scorers(matrix, train, valid, cost, constraints, search)
    return save_version(
        registry,
        fitted.models,
        training_data_hash=file_sha256(
            *(path for path in (data, labels_path_for(data)) if path.exists())
        ),
        extra_metadata={
            "data": str(data),
            "since": since,
            LABEL_DELAY_KEY: label_delay_s / SECONDS_PER_DAY,
            "tree_search_grid": search,
            "split": {"train_end": split.train_end, "valid_end": split.valid_end},
            "rows": {"train": int(train.sum()), "valid": int(valid.sum())},
            "weights": fitted.weights.as_dict(),
            "cost_model": vars(cost),
            "constraints": vars(constraints),
            "thresholds": fitted.thresholds,
            "score_reference": ScoreReference.fit(fitted.valid_scores["ensemble"]).to_dict(),
        },
        signing_key=signing_key,
    )


def ensure_trained_model(settings: Settings, work: Path) -> tuple[str, SigningKey]:
    """A signed live version that serves today's features with the configured label delay,
    trained on a generated history if the registry is empty or its live version is stale.

    Stale: trained on another feature list (a registry made before a feature changed) or
    another label delay than `settings.label_delay_days`; the new version becomes live, the
    old ones stay. The history is written under `work/training/`. Returns a line saying
    what was done and the key the registry is signed with (`signing_key_for`), which its
    workers need. Raises `RegistryError` or `SigningKeyError`, saying what to do, when the
    live version of an existing registry does not verify with that key.
    """
    registry = settings.registry_path
    versions = list_versions(registry) if registry.exists() else []
    why = f"registry {registry} is empty"
    if versions:
        try:
            key = signing_key_for(registry, settings.signing_key)
            live = verify_version(registry, signing_key=key)
        except (RegistryError, SigningKeyError) as error:
            hint = f"{error}; or move {registry} away to train a new, signed one"
            raise type(error)(hint) from error
        stale = _stale_because(load_version(registry, live, signing_key=key), settings)
        if stale is None:
            return f"using model registry {registry} ({live} live, signature checked)", key
        why = f"live model {live} of {registry} {stale}"
    key = signing_key_for(registry, settings.signing_key, create=True)
    history = work / "training" / "history.jsonl"
    print(f"{why}: generating {TRAINING_TRANSACTIONS:,} transactions and training "
          "(about a minute)", flush=True)  # fmt: skip
    write_stream(generate_stream(GeneratorConfig(TRAINING_TRANSACTIONS, seed=7)), history)
    version = train_from_file(history, registry, settings.cost_model,
                              settings.selection_constraints, signing_key=key,
                              label_delay_s=settings.label_delay_s)  # fmt: skip
    signed = "" if settings.signing_key is not None else f" (key: {key_file_for(registry)})"
    return f"trained {version} into {registry}, signed{signed}", key


def _stale_because(models: LoadedModels, settings: Settings) -> str | None:
    """Why `models` cannot serve under `settings` (a phrase), or None when it can."""
    try:
        label_delay_s = trained_label_delay_s(models, settings.registry_path)
    except IncompatibleModel:
        return "was trained on another feature list than this FraudStream computes"
    if label_delay_s != settings.label_delay_s:
        return (
            f"was trained with a label delay of {label_delay_s / SECONDS_PER_DAY:g} days, "
            f"FRAUDSTREAM_LABEL_DELAY_DAYS is {settings.label_delay_days:g}"
        )
    return None
