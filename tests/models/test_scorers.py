from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from fraudstream.models.scorers import AnomalyCalibration, Scorer, rank_contributions
from fraudstream.models.training import TrainedModels
from fraudstream.stream.sim.feature_rows import synthetic_fraud_rows
from tests.support.small_models import FEATURE_NAMES, train_small_models


@pytest.fixture(scope="module")
def trained() -> TrainedModels:
    return train_small_models()


def test_both_scorers_follow_the_protocol(trained: TrainedModels) -> None:
    X, _ = synthetic_fraud_rows(300, seed=11)
    for scorer in (trained.xgboost, trained.isolation_forest):
        assert isinstance(scorer, Scorer)
        scores = scorer.score_batch(X)
        assert scores.shape == (300,) and scores.dtype == np.float64
        assert np.all((scores >= 0.0) & (scores <= 1.0))
        assert scorer.score_one(X[7]) == pytest.approx(scores[7], abs=1e-7)


def test_xgboost_contributions_plus_bias_sum_to_the_margin(trained: TrainedModels) -> None:
    booster = trained.xgboost.booster
    x = synthetic_fraud_rows(20, seed=12)[0][5]
    contributions = trained.xgboost.contributions(x, top_k=None)
    assert sorted(name for name, _ in contributions) == sorted(FEATURE_NAMES)
    matrix = xgb.DMatrix(x[None], feature_names=list(FEATURE_NAMES))
    bias = float(booster.predict(matrix, pred_contribs=True)[0, -1])
    margin = float(booster.inplace_predict(x[None], predict_type="margin")[0])
    assert sum(value for _, value in contributions) + bias == pytest.approx(margin, abs=1e-4)


def test_approximate_contributions_also_sum_to_the_margin(trained: TrainedModels) -> None:
    booster = trained.xgboost.booster
    rows = synthetic_fraud_rows(20, seed=13)[0][:4]
    per_row = trained.xgboost.contributions_batch(rows, top_k=None, approximate=True)
    matrix = xgb.DMatrix(rows, feature_names=list(FEATURE_NAMES))
    bias = booster.predict(matrix, pred_contribs=True, approx_contribs=True)[:, -1]
    margins = booster.inplace_predict(rows, predict_type="margin")
    for contributions, row_bias, margin in zip(per_row, bias, margins, strict=True):
        total = sum(value for _, value in contributions) + float(row_bias)
        assert total == pytest.approx(float(margin), abs=1e-4)


def test_contributions_list_fraud_drivers_first(trained: TrainedModels) -> None:
    x = synthetic_fraud_rows(20, seed=13)[0][0]
    values = [value for _, value in trained.xgboost.contributions(x, top_k=None)]
    positives = [v for v in values if v > 0]
    assert values[: len(positives)] == sorted(positives, reverse=True)
    assert [abs(v) for v in values[len(positives) :]] == sorted(
        (abs(v) for v in values[len(positives) :]), reverse=True
    )
    assert len(trained.xgboost.contributions(x, top_k=3)) == 3


def test_batch_ranking_matches_a_plain_sort_row_by_row(trained: TrainedModels) -> None:
    rows = synthetic_fraud_rows(60, seed=14)[0]
    # The approximate values come from the compiled trees, which equal XGBoost's float32
    # approx_contribs up to rounding (test_compiled_xgboost.py), so rank those exact values.
    raw = trained.xgboost.compiled.margin_and_contributions(rows).contributions
    matrix = xgb.DMatrix(rows, feature_names=list(FEATURE_NAMES))
    stock = trained.xgboost.booster.predict(matrix, pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(raw, stock[:, :-1], rtol=0.0, atol=1e-4)
    ranked = trained.xgboost.contributions_batch(rows, top_k=4, approximate=True)
    for values, top in zip(raw, ranked, strict=True):
        expected = sorted(zip(FEATURE_NAMES, values.tolist(), strict=True),
                          key=lambda pair: (pair[1] <= 0.0, -abs(pair[1])))[:4]  # fmt: skip
        assert top == expected


def test_explained_scores_are_the_scores_and_the_contributions_of_one_pass(
    trained: TrainedModels,
) -> None:
    rows = synthetic_fraud_rows(30, seed=15)[0][:12]
    explained = trained.xgboost.score_explained(rows)

    np.testing.assert_array_equal(explained.scores, trained.xgboost.score_batch(rows))
    assert rank_contributions(explained.contributions, FEATURE_NAMES, 3) == (
        trained.xgboost.contributions_batch(rows, top_k=3, approximate=True)
    )


def test_calibration_is_monotone_and_bounded(trained: TrainedModels) -> None:
    calibration = trained.isolation_forest.calibration
    anomaly = np.linspace(0.0, 1.0, 1001)
    mapped = calibration.apply(anomaly)
    assert calibration.slope > 0.0
    assert np.all(np.diff(mapped) > 0.0)
    assert np.all((mapped >= 0.0) & (mapped <= 1.0))


def test_calibration_matches_the_fraud_rate_of_typical_rows() -> None:
    rng = np.random.default_rng(0)
    anomaly = rng.uniform(0.35, 0.75, size=20_000)
    is_fraud = rng.random(20_000) < np.where(anomaly > 0.6, 0.2, 0.01)
    calibration = AnomalyCalibration.fit(anomaly, is_fraud)
    typical, strange = calibration.apply(np.array([0.45, 0.72]))
    assert 0.0 < typical < 0.05 < strange < 0.5


def test_calibration_stays_increasing_when_anomaly_carries_no_fraud_signal() -> None:
    rng = np.random.default_rng(1)
    anomaly = rng.uniform(0.35, 0.75, size=5_000)
    is_fraud = rng.random(5_000) < np.where(anomaly > 0.6, 0.001, 0.05)  # anti-correlated
    calibration = AnomalyCalibration.fit(anomaly, is_fraud)
    assert calibration.slope > 0.0
    assert np.all(np.diff(calibration.apply(np.linspace(0.0, 1.0, 101))) > 0.0)
    assert calibration.apply(np.array([0.5]))[0] == pytest.approx(is_fraud.mean(), abs=0.01)


def test_calibration_round_trips_through_json(trained: TrainedModels) -> None:
    calibration = trained.isolation_forest.calibration
    restored = AnomalyCalibration.from_json(json.loads(json.dumps(calibration.to_json())))
    assert restored == calibration
