"""Training on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from fraudstream.models.metrics import recall_at_fpr
from fraudstream.models.training import TrainedModels, TrainingParams, train_models
from fraudstream.models.tree_search import TreeSettings
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


LARGE_AMOUNT = 3000.0
AMOUNT_FEATURES = ("amount", "ordinary_signal", "noise_a", "noise_b")
AMOUNT_COLUMN = AMOUNT_FEATURES.index("amount")
AMOUNT_PARAMS = TrainingParams(
    xgb_max_rounds=100, xgb_max_depth=4, xgb_early_stopping_rounds=10, if_n_estimators=10
)
AMOUNT_GRID = (
    TreeSettings(4, 0.1, "hist", 256),
    TreeSettings(4, 0.1, "hist", 4096),
    TreeSettings(4, 0.1, "exact", None),
)


def _rows_with_fraud_above_a_large_amount(
    n_rows: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Amounts mostly small (lognormal, median ~33); 0.2 % are large, spread evenly from
    a fifth of `LARGE_AMOUNT` to twice it, and every amount above it is fraud. The large
    ones are fewer than one 256-quantile bin holds (0.39 % of rows), so at 256 bins the
    top bin mixes legitimate amounts below the threshold with the fraud above it. Other
    fraud follows a second feature, as ordinary fraud would."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, len(AMOUNT_FEATURES)))
    amount = rng.lognormal(3.5, 1.0, size=n_rows)
    large = rng.random(n_rows) < 0.002
    amount[large] = rng.uniform(LARGE_AMOUNT / 5, LARGE_AMOUNT * 2, size=int(large.sum()))
    X[:, AMOUNT_COLUMN] = amount
    ordinary = rng.random(n_rows) < 1.0 / (1.0 + np.exp(5.0 - 1.5 * X[:, 1]))
    return X, ordinary | (amount > LARGE_AMOUNT)


def _train_on_amounts(search: tuple[TreeSettings, ...]) -> TrainedModels:
    X_train, y_train = _rows_with_fraud_above_a_large_amount(20_000, seed=1)
    X_valid, y_valid = _rows_with_fraud_above_a_large_amount(10_000, seed=2)
    return train_models(
        X_train, y_train, X_valid, y_valid, AMOUNT_FEATURES, AMOUNT_PARAMS, search=search
    )


def _recall_above_the_amount_at_low_fpr(trained: TrainedModels) -> float:
    """Recall of the above-the-amount fraud at a 0.1 % FPR, on rows training never saw."""
    X, is_fraud = _rows_with_fraud_above_a_large_amount(50_000, seed=3)
    pattern_or_legit = (X[:, AMOUNT_COLUMN] > LARGE_AMOUNT) | ~is_fraud
    scores = trained.xgboost.score_batch(X)
    return recall_at_fpr(scores[pattern_or_legit], is_fraud[pattern_or_legit], max_fpr=0.001)


@pytest.fixture(scope="module")
def searched() -> TrainedModels:
    return _train_on_amounts(AMOUNT_GRID)


def test_search_finds_the_split_above_a_large_amount_that_256_bins_miss(
    searched: TrainedModels,
) -> None:
    bins_256 = _train_on_amounts(())
    assert bins_256.params.tree_settings() == AMOUNT_GRID[0]
    chosen = _recall_above_the_amount_at_low_fpr(searched)
    alone = _recall_above_the_amount_at_low_fpr(bins_256)
    assert searched.params.tree_settings() != AMOUNT_GRID[0]
    assert chosen >= 0.8 and chosen >= alone + 0.5, (chosen, alone)


def test_search_records_every_candidate_and_keeps_the_chosen_one(
    searched: TrainedModels,
) -> None:
    search = searched.tree_search
    assert [candidate.settings for candidate in search.candidates] == list(AMOUNT_GRID)
    figures = [candidate.average_precision for candidate in search.candidates]
    assert search.chosen.average_precision == max(figures)
    assert searched.params.tree_settings() == search.chosen.settings
    assert searched.metrics["xgboost"]["auc_pr"] == pytest.approx(search.chosen.average_precision)
    assert searched.metrics["xgboost"]["trees"] == search.chosen.trees


def test_search_chooses_the_same_settings_and_trees_again(searched: TrainedModels) -> None:
    again = _train_on_amounts(AMOUNT_GRID)
    figures = [(c.settings, c.average_precision, c.trees) for c in searched.tree_search.candidates]
    assert [(c.settings, c.average_precision, c.trees) for c in again.tree_search.candidates] == (
        figures
    )
    assert again.tree_search.chosen_index == searched.tree_search.chosen_index
    X, _ = _rows_with_fraud_above_a_large_amount(500, seed=4)
    assert np.array_equal(again.xgboost.score_batch(X), searched.xgboost.score_batch(X))


def test_without_a_search_the_params_own_settings_are_the_one_candidate() -> None:
    trained = train_small_models()
    assert [c.settings for c in trained.tree_search.candidates] == [SMALL_PARAMS.tree_settings()]
    assert trained.params == SMALL_PARAMS
