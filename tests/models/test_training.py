"""Training on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.models.training import TrainedModels, TrainingParams, train_models
from fraudstream.stream.sim.feature_rows import synthetic_fraud_rows
from tests.support.small_models import FEATURE_NAMES, SMALL_PARAMS, train_small_models


@pytest.fixture(scope="module")
def trained() -> TrainedModels:
    return train_small_models()


def test_metrics_cover_both_models_on_the_validation_split(trained: TrainedModels) -> None:
    assert trained.metrics["validation"]["rows"] == 2000
    for model in ("xgboost", "isolation_forest"):
        assert 0.5 < trained.metrics[model]["auc_roc"] <= 1.0
        assert 0.0 < trained.metrics[model]["auc_pr"] <= 1.0
    assert trained.metrics["xgboost"]["auc_pr"] > trained.metrics["isolation_forest"]["auc_pr"]


def test_training_is_deterministic(trained: TrainedModels) -> None:
    again = train_small_models()
    X, _ = synthetic_fraud_rows(200, seed=3)
    assert np.array_equal(trained.xgboost.score_batch(X), again.xgboost.score_batch(X))
    assert np.array_equal(
        trained.isolation_forest.score_batch(X), again.isolation_forest.score_batch(X)
    )


def test_early_stopping_keeps_only_the_best_trees() -> None:
    params = TrainingParams(
        xgb_max_rounds=200, xgb_max_depth=3, xgb_early_stopping_rounds=5, if_n_estimators=10
    )
    trained = train_small_models(params)
    trees = trained.metrics["xgboost"]["trees"]
    assert trees == trained.xgboost.booster.num_boosted_rounds() < 200


def test_forest_fitted_on_legit_rows_only_by_default() -> None:
    legit_only = train_small_models()
    all_rows = train_small_models(
        TrainingParams(xgb_max_rounds=5, if_n_estimators=20, if_fit_on="all")
    )
    X, _ = synthetic_fraud_rows(50, seed=4)
    assert not np.allclose(
        legit_only.isolation_forest.anomaly_batch(X), all_rows.isolation_forest.anomaly_batch(X)
    )


def test_validation_split_without_fraud_is_rejected_with_advice() -> None:
    X, y = synthetic_fraud_rows(500)
    with pytest.raises(ValueError, match="both classes are needed"):
        train_models(X, y, X, np.zeros_like(y), FEATURE_NAMES, SMALL_PARAMS)


def test_feature_count_mismatch_is_rejected() -> None:
    X, y = synthetic_fraud_rows(500)
    with pytest.raises(ValueError, match="expected"):
        train_models(X, y, X, y, FEATURE_NAMES[:-1], SMALL_PARAMS)


def test_float_labels_as_stored_by_the_stream_are_accepted() -> None:
    X, y = synthetic_fraud_rows(1500, seed=5)
    params = TrainingParams(xgb_max_rounds=5, if_n_estimators=5)
    trained = train_models(X, y.astype(np.float64), X, y.astype(bool), FEATURE_NAMES, params)
    assert trained.metrics["validation"]["fraud_rows"] == y.sum()
