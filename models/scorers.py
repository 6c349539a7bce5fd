"""Scorers: one small protocol so the ensemble treats every model alike.

A scorer turns feature rows (float64, columns in the registry's ``features.json`` order)
into fraud scores in [0, 1]. ``score_one`` exists beside ``score_batch`` because the
per-event path must not pay batch set-up costs (XGBoost's ``DMatrix``, sklearn's joblib).

Example::

    scorer = XGBoostScorer(booster, feature_names)
    scores = scorer.score_batch(X)              # shape (n_rows,), each in [0, 1]
    reasons = scorer.contributions(X[0], top_k=3)  # [("amount_zscore", 1.7), ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np
import xgboost as xgb
from numpy.typing import NDArray
from scipy.special import expit

from fraudstream.models.compiled_xgboost import CompiledBooster, sigmoid
from fraudstream.models.isolation import CompiledIsolationForest
from fraudstream.models.names import ModelName


@runtime_checkable
class Scorer(Protocol):
    """What the ensemble needs from a model: a name and scores in [0, 1]."""

    name: ModelName

    def score_batch(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Fraud scores for rows of shape (n_rows, n_features); result (n_rows,)."""
        ...

    def score_one(self, x: NDArray[np.float64]) -> float:
        """Fraud score of one row of shape (n_features,)."""
        ...


class XGBoostScorer:
    """A ``binary:logistic`` booster; scores are its predicted fraud probabilities.

    Small batches (up to ``COMPILED_MAX_ROWS`` rows, which is what the streaming worker
    scores: 5-50 rows) and the approximate (Saabas) contributions are evaluated by a
    :class:`CompiledBooster`, the trees compiled into NumPy arrays at construction. Why:
    at that size XGBoost's per-call overhead (``inplace_predict``'s array-interface
    plumbing, a ``DMatrix`` for contributions) costs more than the trees (py-spy: ≈ 1.3 ms
    a batch). The compiled trees agree with XGBoost within 1e-6 on probabilities (in
    practice to the float32 bit) and 1e-4 on contributions
    (tests/models/test_compiled_xgboost.py). Larger batches, where XGBoost's C++ loop is
    faster per row, and exact TreeSHAP still go to the booster.

    The booster predicts on ``n_threads`` threads (default 1; this sets its ``nthread``).
    One thread is deliberate: a worker scales out by partitions and processes (DESIGN §9),
    and an OpenMP team waits at a barrier for any descheduled member, so with another busy
    process on a 2-core host a 2-thread predict of one row went from ≈ 125 µs to ≈ 14 ms,
    while one thread stayed at ≈ 125 µs (≈ 3 µs per row in batches of 512, against
    ≈ 1.8 µs with two idle cores).
    """

    name: ModelName = ModelName.XGBOOST

    # Measured with 116 depth-6 trees: the compiled trees cost about as much as
    # ``inplace_predict`` between 50 and 100 rows, and ≈ 2x as much at 500.
    COMPILED_MAX_ROWS: ClassVar[int] = 64

    def __init__(
        self, booster: xgb.Booster, feature_names: Sequence[str], n_threads: int = 1
    ) -> None:
        """Raises ``ValueError`` if the feature count differs from the booster's, or if
        the booster is not one :class:`CompiledBooster` supports."""
        if booster.num_features() != len(feature_names):
            raise ValueError(
                f"booster expects {booster.num_features()} features, "
                f"feature list has {len(feature_names)}"
            )
        booster.set_param({"nthread": n_threads})
        self.booster = booster
        self.compiled = CompiledBooster.from_booster(booster)
        self.feature_names = tuple(feature_names)

    def score_batch(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Compiled trees for small batches; ``inplace_predict`` (no DMatrix) beyond."""
        if X.shape[0] <= self.COMPILED_MAX_ROWS:
            return self.compiled.predict(X)
        return np.asarray(self.booster.inplace_predict(X), dtype=np.float64)

    def score_one(self, x: NDArray[np.float64]) -> float:
        return float(self.compiled.predict(x)[0])

    def contributions(
        self, x: NDArray[np.float64], top_k: int | None = 5
    ) -> list[tuple[str, float]]:
        """The features that moved this row's score most, as (name, SHAP value) pairs.

        Values are TreeSHAP contributions in margin (log-odds) units; together with the
        bias they sum to the row's margin. Order: features pushing towards fraud first
        (largest first), then those pushing away (largest magnitude first), because the
        decision's ``reasons`` exist to explain why a transaction was flagged.
        ``top_k=None`` returns every feature. Slower than scoring (it builds a DMatrix):
        call it for flagged transactions, not for every one.
        """
        return self.contributions_batch(x.reshape(1, -1), top_k)[0]

    def contributions_batch(
        self, X: NDArray[np.float64], top_k: int | None = 5, approximate: bool = False
    ) -> list[list[tuple[str, float]]]:
        """`contributions` for many rows at once (much cheaper per row).

        `approximate=True` gives XGBoost's Saabas attribution (the path of each tree only)
        instead of exact TreeSHAP: it also sums to the margin, and the compiled trees give
        it without a DMatrix, ≈ 0.12 ms for 1 row and ≈ 0.25 ms for 10 against ≈ 0.6 and
        ≈ 0.75 ms through XGBoost, ≈ 12 µs a row in batches of 500 (116 trees, depth 6),
        which is what the online path affords. Exact TreeSHAP goes through XGBoost with
        one DMatrix, ≈ 640 µs a row.
        """
        rows = np.atleast_2d(X)
        if approximate:
            values = self.compiled.margin_and_contributions(rows).contributions
        else:
            matrix = xgb.DMatrix(rows, feature_names=list(self.feature_names))
            values = self.booster.predict(matrix, pred_contribs=True)[:, :-1]
        return rank_contributions(values, self.feature_names, top_k)

    def score_explained(self, X: NDArray[np.float64]) -> ExplainedScores:
        """Scores and Saabas contributions of every row, from one descent of the trees.

        Why: the worker asks for both in one call, so a batch pays one call and one timeout
        for XGBoost, not a second one for its reasons.
        """
        attribution = self.compiled.margin_and_contributions(np.atleast_2d(X))
        return ExplainedScores(sigmoid(attribution.margin), attribution.contributions)


class ExplainedScores(NamedTuple):
    """Fraud scores (n_rows,) and each feature's contribution to them (n_rows, n_features)."""

    scores: NDArray[np.float64]
    contributions: NDArray[np.float64]


def rank_contributions(
    values: NDArray[np.float64], feature_names: Sequence[str], top_k: int | None = 5
) -> list[list[tuple[str, float]]]:
    """Each row's (name, value) pairs in the order of `XGBoostScorer.contributions`.

    Positive values first, then by magnitude, ties in feature order (lexsort is stable;
    its last key sorts first), all rows at once.
    """
    rows = np.atleast_2d(values)
    order = np.lexsort((-np.abs(rows), rows <= 0.0), axis=-1)[:, :top_k]
    return [
        [(feature_names[column], float(row[column])) for column in columns]
        for row, columns in zip(rows, order, strict=True)
    ]


@dataclass(frozen=True)
class AnomalyCalibration:
    """Platt scaling of the anomaly score: ``P(fraud) = sigmoid(slope * anomaly + intercept)``.

    Why Platt (a logistic regression of the label on the raw anomaly score, fitted on the
    validation split): the ensemble takes a weighted mean of XGBoost and IsolationForest
    scores, which only means something if both are on the same scale. XGBoost's output is
    a fraud probability, so the IsolationForest score is mapped to one too: a typical
    transaction gets about the base fraud rate, a very isolated one what its anomaly
    level has meant for labelled fraud. A tail mapping (rank of the anomaly among training
    rows) would express rarity instead, and a 1-in-1000 anomaly would read as 0.999, far
    above any fraud probability XGBoost would give the same row.

    Monotone increasing in the anomaly by construction: the slope is constrained to be at
    least ``MIN_SLOPE`` (per standard deviation of the anomaly score). If the forest's
    anomalies carry no fraud signal on the validation split, the slope sits at that floor,
    the map is nearly flat at the base rate, and the validation AUC in ``metrics.json``
    shows why. The map is stored as two numbers in ``calibration.json``.
    """

    slope: float
    intercept: float

    MIN_SLOPE: ClassVar[float] = 1e-3

    def apply(self, anomaly: NDArray[np.float64]) -> NDArray[np.float64]:
        """Map raw anomaly scores (``-score_samples``, higher = stranger) into [0, 1]."""
        return np.asarray(expit(self.slope * anomaly + self.intercept), dtype=np.float64)

    @classmethod
    def fit(cls, anomaly: NDArray[np.float64], is_fraud: NDArray[np.bool_]) -> AnomalyCalibration:
        """Fit by Newton's method on Platt's smoothed targets, which keep the fit finite
        when the classes are separable and avoid scores of exactly 0 or 1."""
        labels = np.asarray(is_fraud, dtype=bool)
        n_pos, n_neg = int(labels.sum()), int((~labels).sum())
        target = np.where(labels, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        centre = float(np.mean(anomaly))
        spread = float(np.std(anomaly)) or 1.0
        z = (np.asarray(anomaly, dtype=np.float64) - centre) / spread
        design = np.column_stack([z, np.ones_like(z)])
        params = _newton_logistic(design, target, np.zeros(2))
        if params[0] < cls.MIN_SLOPE:
            intercept_only = _newton_logistic(
                design[:, 1:], target, params[1:], offset=cls.MIN_SLOPE * z
            )
            params = np.array([cls.MIN_SLOPE, intercept_only[0]])
        slope = float(params[0] / spread)
        return cls(slope=slope, intercept=float(params[1] - slope * centre))

    def to_json(self) -> dict[str, float | str]:
        return {"method": "platt", "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_json(cls, document: dict[str, float | str]) -> AnomalyCalibration:
        if document.get("method") != "platt":
            raise ValueError(f"unknown calibration method {document.get('method')!r}")
        return cls(slope=float(document["slope"]), intercept=float(document["intercept"]))


def _newton_logistic(
    design: NDArray[np.float64],
    target: NDArray[np.float64],
    start: NDArray[np.float64],
    offset: NDArray[np.float64] | None = None,
    iterations: int = 50,
) -> NDArray[np.float64]:
    """Maximum-likelihood logistic regression with soft targets (a convex problem)."""
    params = start.astype(np.float64)
    base = np.zeros(design.shape[0]) if offset is None else offset
    for _ in range(iterations):
        p = expit(design @ params + base)
        gradient = design.T @ (p - target)
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design
        step = np.linalg.solve(hessian + 1e-9 * np.eye(params.size), gradient)
        params = params - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return params


class IsolationForestScorer:
    """The compiled forest's anomaly score, calibrated to a fraud probability."""

    name: ModelName = ModelName.ISOLATION_FOREST

    def __init__(
        self,
        forest: CompiledIsolationForest,
        calibration: AnomalyCalibration,
        input_columns: Sequence[int] | None = None,
    ) -> None:
        """`input_columns` selects the columns of the full feature vector the forest was
        fitted on (None: all of them)."""
        self.forest = forest
        self.calibration = calibration
        self.input_columns = None if input_columns is None else np.asarray(input_columns)

    def anomaly_batch(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Raw anomaly: ``-score_samples``, in (0, 1], 0.5 and above being anomalous."""
        if self.input_columns is not None:
            X = np.atleast_2d(X)[:, self.input_columns]
        return -self.forest.score_samples(X)

    def score_batch(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.calibration.apply(self.anomaly_batch(X))

    def score_one(self, x: NDArray[np.float64]) -> float:
        return float(self.score_batch(x)[0])
