"""Combining model scores: a weighted mean that survives missing models.

Both scorers output fraud probabilities (XGBoost directly, IsolationForest through its
Platt calibration), so a weighted mean of them is again a probability estimate. A model
that timed out or failed is reported as ``None`` (``NaN`` in the vectorised form): its
weight is dropped and the others are renormalised, and the result says it is degraded.
Timeouts and fallback policy live in the stream worker; this module is pure arithmetic
plus an offline :class:`Ensemble` for batch evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from fraudstream.models.names import ModelName
from fraudstream.models.registry import LoadedModels
from fraudstream.models.scorers import Scorer
from fraudstream.models.training import TrainedModels

NEUTRAL_SCORE = 0.01
"""Score when no model answered: the prior fraud rate of the reference problem (≈ 1 %,
DESIGN §1), i.e. the best probability estimate without evidence. The result is flagged
``degraded`` so the decision stage can apply its own policy (for example, review)."""


@dataclass(frozen=True)
class EnsembleWeights:
    """Relative model weights; they need not sum to 1 (they are normalised).

    Defaults 0.7 / 0.3: XGBoost learns from labelled fraud and ranks it far better on
    validation (AUC-PR), so it leads; the IsolationForest is there for patterns the
    labels do not contain, and 0.3 of a calibrated score lets a strongly anomalous
    transaction lift the total without its noisier ranking dominating. Both are settings.
    """

    xgboost: float = 0.7
    isolation_forest: float = 0.3

    def __post_init__(self) -> None:
        _check_weights(self.as_dict())
        if self.xgboost + self.isolation_forest <= 0.0:
            raise ValueError("at least one ensemble weight must be positive")

    def as_dict(self) -> dict[str, float]:
        """Weights keyed by scorer name, the form :func:`combine` takes and metadata stores."""
        return {ModelName.XGBOOST: self.xgboost, ModelName.ISOLATION_FOREST: self.isolation_forest}

    @classmethod
    def from_dict(cls, weights: Mapping[str, float]) -> EnsembleWeights:
        """Inverse of :meth:`as_dict`; a model left out gets weight 0."""
        unknown = set(weights) - set(ModelName)
        if unknown:
            raise ValueError(f"no ensemble model named {sorted(unknown)}")
        return cls(
            xgboost=float(weights.get(ModelName.XGBOOST, 0.0)),
            isolation_forest=float(weights.get(ModelName.ISOLATION_FOREST, 0.0)),
        )


@dataclass(frozen=True)
class EnsembleResult:
    """``weights_used`` holds every scored model's normalised weight, 0 for missing ones."""

    score: float
    weights_used: dict[str, float] = field(default_factory=dict)
    degraded: bool = False


def combine(
    model_scores: Mapping[str, float | None],
    weights: Mapping[str, float],
    neutral_score: float = NEUTRAL_SCORE,
) -> EnsembleResult:
    """Weighted mean of the available scores; ``None`` or NaN means the model is missing.

    Every name in ``model_scores`` needs a weight. If no model with a positive weight
    answered, the score is ``neutral_score`` and the result is degraded.
    """
    _check_weights(weights, model_scores.keys())
    answered = {
        name: float(score)
        for name, score in model_scores.items()
        if score is not None and not math.isnan(score)
    }
    total = sum(weights[name] for name in answered)
    if total <= 0.0:
        return EnsembleResult(neutral_score, dict.fromkeys(model_scores, 0.0), degraded=True)
    weights_used = {
        name: weights[name] / total if name in answered else 0.0 for name in model_scores
    }
    score = sum(weights_used[name] * value for name, value in answered.items())
    degraded = len(answered) < len(model_scores)
    return EnsembleResult(score, weights_used, degraded)


def combine_batch(
    score_columns: Mapping[str, NDArray[np.float64]],
    weights: Mapping[str, float],
    neutral_score: float = NEUTRAL_SCORE,
) -> NDArray[np.float64]:
    """Row-wise :func:`combine` over columns of equal length, NaN marking a missing score."""
    _check_weights(weights, score_columns.keys())
    names = list(score_columns)
    scores = np.column_stack([np.asarray(score_columns[n], dtype=np.float64) for n in names])
    present = ~np.isnan(scores)
    row_weights = np.where(present, np.array([weights[n] for n in names]), 0.0)
    total = row_weights.sum(axis=1)
    weighted = np.where(present, scores, 0.0) * row_weights
    combined = np.full(scores.shape[0], neutral_score)
    np.divide(weighted.sum(axis=1), total, out=combined, where=total > 0.0)
    return combined


class Ensemble:
    """Both scorers and their weights, for offline scoring (registry version or fresh).

    No timeouts here: the async worker wraps each scorer in its own budget and calls
    :func:`combine` with whatever arrived.
    """

    def __init__(
        self, models: LoadedModels | TrainedModels, weights: EnsembleWeights | None = None
    ) -> None:
        self.models = models
        self.weights = weights if weights is not None else EnsembleWeights()
        self.scorers: tuple[Scorer, ...] = (models.xgboost, models.isolation_forest)

    def score_one(self, x: NDArray[np.float64]) -> tuple[float, dict[str, float]]:
        """Ensemble score of one row and each model's own score."""
        per_model: dict[str, float] = {s.name: s.score_one(x) for s in self.scorers}
        return combine(per_model, self.weights.as_dict()).score, per_model

    def score_batch(
        self, X: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """Ensemble scores of rows (n_rows, n_features) and each model's own scores."""
        per_model: dict[str, NDArray[np.float64]] = {
            scorer.name: scorer.score_batch(X) for scorer in self.scorers
        }
        return combine_batch(per_model, self.weights.as_dict()), per_model


def _check_weights(weights: Mapping[str, float], required: Iterable[str] = ()) -> None:
    """Weights are finite and non-negative, and every scored model has one."""
    bad = {name: w for name, w in weights.items() if not (math.isfinite(w) and w >= 0.0)}
    if bad:
        raise ValueError(f"model weights must be finite and >= 0, got {bad}")
    missing = [name for name in required if name not in weights]
    if missing:
        raise ValueError(f"no ensemble weight for {missing}; weights are set for {list(weights)}")
