"""Training: XGBoost and IsolationForest from one time-split feature matrix.

The caller builds the matrices (features/) and chooses the split; rows are float64,
columns in ``feature_names`` order, labels 0/1. The validation split serves four
purposes: XGBoost early stopping, choosing XGBoost's tree settings from a small grid
(models/tree_search.py), fitting the IsolationForest calibration, and the validation
metrics. Those metrics are therefore slightly optimistic; the honest figures come from
scoring a later, untouched test split (the ``evaluate`` command).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xgboost as xgb
from numpy.typing import ArrayLike, NDArray
from sklearn.ensemble import IsolationForest

from fraudstream.models.isolation import CompiledIsolationForest
from fraudstream.models.metrics import auc_pr, auc_roc
from fraudstream.models.names import ModelName
from fraudstream.models.scorers import AnomalyCalibration, IsolationForestScorer, XGBoostScorer
from fraudstream.models.tree_search import Candidate, TreeMethod, TreeSearch, TreeSettings


@dataclass(frozen=True)
class TrainingParams:
    """Hyper-parameters; everything is seeded, so the same data gives the same models.

    ``xgb_scale_pos_weight`` defaults to 1: the class imbalance is handled by the
    cost-optimal thresholds (thresholds/), and an unweighted logistic loss keeps XGBoost's
    output a calibrated fraud probability, which the ensemble averages with the equally
    calibrated IsolationForest score. Up-weighting positives (e.g. neg/pos ≈ 99) would
    inflate every score towards 0.5 and break that comparability.

    ``if_fit_on="legit"`` fits the forest on legitimate training rows only, the classic
    choice when labels exist: the forest then learns what normal looks like, and known
    fraud does not dilute the notion of "isolated". ``"all"`` is the unsupervised
    alternative, for when labels are untrustworthy.

    ``if_features`` restricts the forest to a subset of the features (None: all). A
    forest isolates on random features, so features that vary a lot among legitimate
    transactions without meaning fraud dilute it; a few deviation features sharpen it.

    The four tree settings a search may change are ``tree_settings()``; ``xgb_max_bin``
    is for ``"hist"`` trees only and None with ``"exact"``.
    """

    xgb_max_rounds: int = 300
    xgb_max_depth: int = 6
    xgb_learning_rate: float = 0.1
    xgb_tree_method: TreeMethod = "hist"
    xgb_max_bin: int | None = 256
    xgb_subsample: float = 0.8
    xgb_colsample_bytree: float = 0.8
    xgb_scale_pos_weight: float = 1.0
    xgb_early_stopping_rounds: int | None = 30
    if_n_estimators: int = 100
    if_max_samples: int = 256
    if_max_features: float = 1.0
    if_fit_on: Literal["legit", "all"] = "legit"
    if_features: tuple[str, ...] | None = None
    seed: int = 42

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def tree_settings(self) -> TreeSettings:
        """Raises ``ValueError`` when the method and ``xgb_max_bin`` do not go together."""
        return TreeSettings(
            self.xgb_max_depth, self.xgb_learning_rate, self.xgb_tree_method, self.xgb_max_bin
        )

    def with_trees(self, settings: TreeSettings) -> TrainingParams:
        return dataclasses.replace(
            self,
            xgb_max_depth=settings.max_depth,
            xgb_learning_rate=settings.learning_rate,
            xgb_tree_method=settings.tree_method,
            xgb_max_bin=settings.max_bin,
        )


@dataclass(frozen=True)
class TrainedModels:
    """Both scorers plus validation metrics, ready for ``registry.save_version``.

    ``metrics`` maps each ``ModelName`` (``"xgboost"``, ``"isolation_forest"``) to
    ``auc_roc`` and ``auc_pr`` on the validation split, and ``"validation"`` to its row
    counts. ``params`` hold the tree settings the search chose; ``tree_search`` every
    candidate it tried (one, the params' own, when there was no search).
    """

    feature_names: tuple[str, ...]
    xgboost: XGBoostScorer
    isolation_forest: IsolationForestScorer
    metrics: dict[str, dict[str, float]]
    params: TrainingParams
    tree_search: TreeSearch


def train_models(
    X_train: NDArray[np.float64],
    y_train: ArrayLike,
    X_valid: NDArray[np.float64],
    y_valid: ArrayLike,
    feature_names: Sequence[str],
    params: TrainingParams = TrainingParams(),
    search: Sequence[TreeSettings] = (),
) -> TrainedModels:
    """Train both models; raises ``ValueError`` when a split cannot support training.

    Labels may be bool, int or float, as long as every value is 0 or 1. With ``search``
    (e.g. ``tree_search.GRIDS["quick"]``), XGBoost is trained once per tree setting and
    the one with the best validation average precision is kept; without, with ``params``'
    own settings.
    """
    names = tuple(feature_names)
    fraud_train = _check_split("training", X_train, y_train, names)
    fraud_valid = _check_split("validation", X_valid, y_valid, names)

    grid = tuple(search) or (params.tree_settings(),)
    booster, tree_search = _search_xgboost(
        X_train, fraud_train, X_valid, fraud_valid, names, params, grid
    )
    params = params.with_trees(tree_search.chosen.settings)
    xgboost_scorer = XGBoostScorer(booster, names)

    columns = None if params.if_features is None else [names.index(f) for f in params.if_features]
    stock_forest = fit_isolation_forest(
        X_train if columns is None else X_train[:, columns], fraud_train, params
    )
    forest = CompiledIsolationForest.from_sklearn(stock_forest)
    uncalibrated = IsolationForestScorer(forest, AnomalyCalibration(1.0, 0.0), columns)
    anomaly_valid = uncalibrated.anomaly_batch(X_valid)
    calibration = AnomalyCalibration.fit(anomaly_valid, fraud_valid)
    forest_scorer = IsolationForestScorer(forest, calibration, columns)

    metrics = {
        "validation": {"rows": float(fraud_valid.size), "fraud_rows": float(fraud_valid.sum())},
        ModelName.XGBOOST: {
            **_ranking_metrics(fraud_valid, xgboost_scorer.score_batch(X_valid)),
            "trees": float(booster.num_boosted_rounds()),
        },
        ModelName.ISOLATION_FOREST: _ranking_metrics(fraud_valid, anomaly_valid),
    }
    return TrainedModels(names, xgboost_scorer, forest_scorer, metrics, params, tree_search)


def fit_isolation_forest(
    X_train: NDArray[np.float64],
    is_fraud: NDArray[np.bool_],
    params: TrainingParams = TrainingParams(),
) -> IsolationForest:
    """The stock estimator, fitted as ``train_models`` fits it (the benchmark reuses it)."""
    rows = X_train[~is_fraud] if params.if_fit_on == "legit" else X_train
    return IsolationForest(
        n_estimators=params.if_n_estimators,
        max_samples=min(params.if_max_samples, rows.shape[0]),
        max_features=params.if_max_features,
        random_state=params.seed,
    ).fit(rows)


def _search_xgboost(
    X_train: NDArray[np.float64],
    fraud_train: NDArray[np.bool_],
    X_valid: NDArray[np.float64],
    fraud_valid: NDArray[np.bool_],
    names: tuple[str, ...],
    params: TrainingParams,
    grid: tuple[TreeSettings, ...],
) -> tuple[xgb.Booster, TreeSearch]:
    """Train one booster per tree setting on the same matrices, score each on the
    validation split, and return the chosen booster with the whole search.

    Only the best booster so far is kept in memory: a grid may hold many.
    """
    train = xgb.DMatrix(X_train, label=fraud_train.astype(np.float32), feature_names=list(names))
    valid = xgb.DMatrix(X_valid, label=fraud_valid.astype(np.float32), feature_names=list(names))
    candidates: list[Candidate] = []
    best: xgb.Booster | None = None
    for settings in grid:
        started = time.perf_counter()
        booster = _train_xgboost(train, valid, params.with_trees(settings))
        seconds = time.perf_counter() - started
        scores = booster.inplace_predict(X_valid)
        candidates.append(
            Candidate(
                settings=settings,
                average_precision=auc_pr(scores, fraud_valid),
                auc_roc=auc_roc(scores, fraud_valid),
                trees=booster.num_boosted_rounds(),
                train_seconds=round(seconds, 2),
            )
        )
        if TreeSearch.of(candidates).chosen_index == len(candidates) - 1:
            best = booster
    assert best is not None  # the first candidate is chosen while it is the only one
    return best, TreeSearch.of(candidates)


def _train_xgboost(train: xgb.DMatrix, valid: xgb.DMatrix, params: TrainingParams) -> xgb.Booster:
    """Early stopping keeps only the best round's trees (``save_best``), so the saved
    model and every prediction agree without carrying an iteration range around."""
    callbacks: list[xgb.callback.TrainingCallback] = []
    if params.xgb_early_stopping_rounds:
        callbacks.append(
            xgb.callback.EarlyStopping(
                rounds=params.xgb_early_stopping_rounds,
                metric_name="aucpr",
                data_name="valid",
                maximize=True,
                save_best=True,
            )
        )
    bins = {} if params.xgb_max_bin is None else {"max_bin": params.xgb_max_bin}
    return xgb.train(
        {
            "objective": "binary:logistic",
            "tree_method": params.xgb_tree_method,
            **bins,
            "eval_metric": "aucpr",
            "max_depth": params.xgb_max_depth,
            "learning_rate": params.xgb_learning_rate,
            "subsample": params.xgb_subsample,
            "colsample_bytree": params.xgb_colsample_bytree,
            "scale_pos_weight": params.xgb_scale_pos_weight,
            "seed": params.seed,
        },
        train,
        num_boost_round=params.xgb_max_rounds,
        evals=[(valid, "valid")],
        callbacks=callbacks,
        verbose_eval=False,
    )


def _check_split(
    split: str,
    X: NDArray[np.float64],
    y: ArrayLike,
    names: tuple[str, ...],
) -> NDArray[np.bool_]:
    """Validate one split and return its labels as booleans."""
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"{split} matrix has shape {X.shape}; expected (rows, {len(names)})")
    labels = np.asarray(y)
    if labels.shape != (X.shape[0],) or not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{split} labels must be {X.shape[0]} values of 0 or 1")
    fraud = labels.astype(bool)
    if fraud.all() or not fraud.any():
        raise ValueError(
            f"{split} split has {int(fraud.sum())} fraud rows out of {fraud.size}; "
            "both classes are needed: move the split boundaries or generate more data"
        )
    return fraud


def _ranking_metrics(is_fraud: NDArray[np.bool_], score: NDArray[np.float64]) -> dict[str, float]:
    return {"auc_roc": auc_roc(score, is_fraud), "auc_pr": auc_pr(score, is_fraud)}
