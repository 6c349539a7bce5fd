"""The offline path: train on a historical stream, evaluate on its held-out later part.

A stream is split by time (never shuffled): the earliest `TRAIN_FRACTION` of its span
trains the models, the next `VALID_FRACTION` tunes early stopping, the IsolationForest
calibration and every scorer's cost-optimal thresholds, and the rest is held out for
`evaluate`. The split boundaries travel in the registry metadata so `evaluate` holds out
exactly what training never saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.builder import FeatureMatrix, build_features
from fraudstream.features.definitions import ANOMALY_FEATURES
from fraudstream.models.drift import ScoreReference
from fraudstream.models.ensemble import EnsembleWeights, combine_batch
from fraudstream.models.metrics import auc_pr, auc_roc, card_precision_at_k, recall_at_fpr
from fraudstream.models.registry import LoadedModels, load_version, save_version
from fraudstream.models.rules import RulesScorer
from fraudstream.models.training import TrainedModels, TrainingParams, train_models
from fraudstream.stream.sim.streamfile import labels_path_for, read_stream_file
from fraudstream.thresholds.cost import CostModel, evaluate_thresholds
from fraudstream.thresholds.optimise import Constraints, optimise_thresholds

TRAIN_FRACTION = 0.5
VALID_FRACTION = 0.2
MODEL_NAMES = ("xgboost", "isolation_forest", "ensemble", "rules")
#: Per-scenario recall is read at the score that flags this share of legitimate traffic.
SCENARIO_ALERT_FPR = 0.01


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


def load_labelled_stream(data: Path, since: float | None = None) -> FeatureMatrix:
    """Read a stream and the labels file beside it, and build point-in-time features.

    With `since`, keep transactions from that time on and only the labels that had
    arrived by the stream's last event: what a retrain can know at that moment.
    """
    transactions, labels = read_stream_file(data)
    if since is not None:
        transactions = [txn for txn in transactions if txn.event_time >= since]
        if not transactions:
            raise ValueError(f"no transactions in {data} at or after {since}")
        now = max(txn.event_time for txn in transactions)
        labels = [label for label in labels if label.label_time <= now]
    return build_features(transactions, labels)


def file_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def score_all(
    models: LoadedModels | TrainedModels, weights: EnsembleWeights, features: NDArray[np.float64]
) -> dict[str, NDArray[np.float64]]:
    """Scores of every model, the ensemble and the rules baseline for a feature matrix."""
    per_model = {
        "xgboost": models.xgboost.score_batch(features),
        "isolation_forest": models.isolation_forest.score_batch(features),
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
        weights = {"xgboost": 1.0 - forest_weight, "isolation_forest": forest_weight}
        ensemble = combine_batch({name: scores[name] for name in weights}, weights)
        expected = optimise_thresholds(ensemble, is_fraud, cost, constraints).outcome.cost_per_txn
        if best is None or expected < best[0]:
            best = (expected, float(forest_weight))
    assert best is not None
    return EnsembleWeights(xgboost=1.0 - best[1], isolation_forest=best[1])


def train_from_file(
    data: Path,
    registry: Path,
    cost: CostModel = CostModel(),
    constraints: Constraints = Constraints(),
    since: float | None = None,
) -> str:
    """Train both models on `data`, pick each scorer's thresholds, register a new version.

    `since` retrains on the recent part only (see `load_labelled_stream`).
    """
    matrix = load_labelled_stream(data, since)
    times = np.array([txn.event_time for txn in matrix.transactions])
    split = TimeSplit.of(times)
    labelled = ~np.isnan(matrix.is_fraud)
    train = labelled & (times < split.train_end)
    valid = labelled & (times >= split.train_end) & (times < split.valid_end)
    y = matrix.is_fraud
    trained = train_models(
        matrix.features[train],
        y[train],
        matrix.features[valid],
        y[valid],
        list(matrix.feature_names),
        TrainingParams(if_features=ANOMALY_FEATURES),
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
    return save_version(
        registry,
        trained,
        training_data_hash=file_sha256(data, labels_path_for(data)),
        extra_metadata={
            "data": str(data),
            "since": since,
            "split": {"train_end": split.train_end, "valid_end": split.valid_end},
            "rows": {"train": int(train.sum()), "valid": int(valid.sum())},
            "weights": weights.as_dict(),
            "cost_model": vars(cost),
            "constraints": vars(constraints),
            "thresholds": thresholds,
            "score_reference": ScoreReference.fit(valid_scores["ensemble"]).to_dict(),
        },
    )


def evaluate_from_file(data: Path, registry: Path, cost: CostModel = CostModel()) -> dict[str, Any]:
    """Quality of every scorer on the part of `data` the live model never trained on.

    Two costs per scorer: `cost_per_txn` at the thresholds that are cost-optimal on this
    held-out data (what the scorer's ranking is worth), and `cost_per_txn_deployed` at the
    thresholds chosen on the validation split and stored in the registry (what a static
    deployment would have paid; the gap is what online recalibration is for).
    """
    models = load_version(registry)
    matrix = load_labelled_stream(data)
    times = np.array([txn.event_time for txn in matrix.transactions])
    held_out = ~np.isnan(matrix.is_fraud) & (times >= models.metadata["split"]["valid_end"])
    if not held_out.any():
        held_out = ~np.isnan(matrix.is_fraud)
    features = matrix.features[held_out]
    y = matrix.is_fraud[held_out]
    cards = [txn.card_id for txn, keep in zip(matrix.transactions, held_out, strict=True) if keep]
    scenarios = np.array(matrix.scenarios)[held_out]
    weights = EnsembleWeights.from_dict(models.metadata["weights"])
    report: dict[str, Any] = {
        "model_version": models.version,
        "transactions": int(held_out.sum()),
        "frauds": int(y.sum()),
        "period": {"start": float(times[held_out].min()), "end": float(times[held_out].max())},
        "models": {},
        "recall_by_scenario": {},
    }
    constraints = Constraints(**models.metadata["constraints"])
    for name, scores in score_all(models, weights, features).items():
        chosen = models.metadata["thresholds"][name]
        deployed = evaluate_thresholds(scores, y, chosen["review"], chosen["decline"], cost)
        optimal = optimise_thresholds(scores, y, cost, constraints).outcome
        report["models"][name] = {
            "auc_roc": auc_roc(scores, y),
            "auc_pr": auc_pr(scores, y),
            "recall_at_fpr_0_1pct": recall_at_fpr(scores, y, 0.001),
            "card_precision_at_100": card_precision_at_k(scores, y, cards, times[held_out], 100),
            "cost_per_txn": optimal.cost_per_txn,
            "review_threshold": optimal.review_threshold,
            "decline_threshold": optimal.decline_threshold,
            "recall": optimal.recall,
            "fpr": optimal.fpr,
            "review_rate": optimal.review_rate,
            "cost_per_txn_deployed": deployed.cost_per_txn,
            "deployed_thresholds": {"review": chosen["review"], "decline": chosen["decline"]},
        }
        flagged = scores > np.quantile(scores[y == 0], 1.0 - SCENARIO_ALERT_FPR)
        for scenario in sorted(set(scenarios[y == 1])):
            in_scenario = scenarios == scenario
            report["recall_by_scenario"].setdefault(scenario, {"frauds": int(in_scenario.sum())})
            report["recall_by_scenario"][scenario][name] = float(flagged[in_scenario].mean())
    return report


def format_report(report: dict[str, Any]) -> str:
    """The evaluation as two plain-text tables: quality per model, recall per scenario."""
    lines = [
        f"model version {report['model_version']}: {report['transactions']:,} held-out "
        f"transactions, {report['frauds']:,} frauds",
        "",
        f"{'model':<17}{'auc_roc':>8}{'auc_pr':>8}{'rec@0.1%':>9}{'cp@100':>8}"
        f"{'cost/txn':>10}{'review>=':>10}{'decline>=':>10}{'recall':>8}{'fpr':>8}"
        f"{'deployed':>10}",
    ]
    for name, row in report["models"].items():
        lines.append(
            f"{name:<17}{row['auc_roc']:>8.3f}{row['auc_pr']:>8.3f}"
            f"{row['recall_at_fpr_0_1pct']:>9.3f}{row['card_precision_at_100']:>8.3f}"
            f"{row['cost_per_txn']:>10.3f}{row['review_threshold']:>10.4f}"
            f"{row['decline_threshold']:>10.4f}{row['recall']:>8.3f}{row['fpr']:>8.4f}"
            f"{row['cost_per_txn_deployed']:>10.3f}"
        )
    lines += [
        "",
        "cost/txn: at the thresholds (review>=, decline>=) that are cost-optimal on this data;",
        "deployed: at the thresholds chosen on the validation split, as a static deployment.",
        "",
        f"recall by fraud scenario, each model flagging its top {SCENARIO_ALERT_FPR:.0%} "
        "of legitimate traffic:",
    ]
    lines.append(f"{'scenario':<22}{'frauds':>7}" + "".join(f"{m:>17}" for m in MODEL_NAMES))
    for scenario, row in report["recall_by_scenario"].items():
        lines.append(
            f"{scenario:<22}{row['frauds']:>7}" + "".join(f"{row[m]:>17.3f}" for m in MODEL_NAMES)
        )
    return "\n".join(lines)
