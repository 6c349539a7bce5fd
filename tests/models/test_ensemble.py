from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fraudstream.models.ensemble import (
    NEUTRAL_SCORE,
    Ensemble,
    EnsembleWeights,
    combine,
    combine_batch,
)
from fraudstream.models.registry import load_version, save_version
from fraudstream.stream.sim.feature_rows import synthetic_fraud_rows
from tests.support.signing import TEST_SIGNING_KEY
from tests.support.small_models import train_small_models

WEIGHTS = EnsembleWeights().as_dict()


def test_both_models_give_the_weighted_mean() -> None:
    result = combine({"xgboost": 0.9, "isolation_forest": 0.1}, WEIGHTS)
    assert result.score == pytest.approx(0.7 * 0.9 + 0.3 * 0.1)
    assert result.weights_used == pytest.approx(WEIGHTS)
    assert not result.degraded


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_one_missing_model_leaves_the_others_score(missing: float | None) -> None:
    result = combine({"xgboost": missing, "isolation_forest": 0.2}, WEIGHTS)
    assert result.score == pytest.approx(0.2)
    assert result.weights_used == {"xgboost": 0.0, "isolation_forest": 1.0}
    assert result.degraded


def test_all_models_missing_gives_the_neutral_score() -> None:
    result = combine({"xgboost": None, "isolation_forest": None}, WEIGHTS)
    assert result.score == NEUTRAL_SCORE
    assert result.degraded
    assert combine({"xgboost": None}, WEIGHTS, neutral_score=0.5).score == 0.5


def test_weights_are_renormalised_across_three_models() -> None:
    weights = {"a": 1.0, "b": 2.0, "c": 1.0}
    result = combine({"a": 0.0, "b": None, "c": 1.0}, weights)
    assert result.score == pytest.approx(0.5)
    assert sum(result.weights_used.values()) == pytest.approx(1.0)


def test_a_scored_model_without_weight_is_rejected() -> None:
    with pytest.raises(ValueError, match="no ensemble weight for"):
        combine({"xgboost": 0.5, "rules": 0.1}, WEIGHTS)


def test_invalid_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        EnsembleWeights(xgboost=-0.1)
    with pytest.raises(ValueError, match="positive"):
        EnsembleWeights(xgboost=0.0, isolation_forest=0.0)


def test_combine_batch_equals_combine_row_by_row() -> None:
    rng = np.random.default_rng(0)
    columns = {name: rng.random(200) for name in WEIGHTS}
    columns["xgboost"][rng.random(200) < 0.3] = np.nan
    columns["isolation_forest"][rng.random(200) < 0.3] = np.nan
    batch = combine_batch(columns, WEIGHTS)
    one_by_one = [
        combine({name: float(column[i]) for name, column in columns.items()}, WEIGHTS).score
        for i in range(200)
    ]
    assert np.allclose(batch, one_by_one, rtol=0.0, atol=1e-12)
    assert np.any(batch == NEUTRAL_SCORE)


def test_ensemble_scores_a_loaded_version_one_row_or_a_batch(tmp_path: Path) -> None:
    save_version(tmp_path, train_small_models(), training_data_hash="h", extra_metadata={},
                 signing_key=TEST_SIGNING_KEY)  # fmt: skip
    ensemble = Ensemble(load_version(tmp_path), EnsembleWeights(0.6, 0.4))
    X, _ = synthetic_fraud_rows(64, seed=31)
    scores, per_model = ensemble.score_batch(X)
    assert set(per_model) == {"xgboost", "isolation_forest"}
    assert np.allclose(scores, 0.6 * per_model["xgboost"] + 0.4 * per_model["isolation_forest"])
    score, single = ensemble.score_one(X[3])
    assert score == pytest.approx(scores[3], abs=1e-7)
    assert single["xgboost"] == pytest.approx(per_model["xgboost"][3], abs=1e-7)


def test_weights_round_trip_through_a_dict() -> None:
    weights = EnsembleWeights(0.8, 0.2)
    assert EnsembleWeights.from_dict(weights.as_dict()) == weights
    assert EnsembleWeights.from_dict({"xgboost": 1.0}).isolation_forest == 0.0
    with pytest.raises(ValueError, match="no ensemble model named"):
        EnsembleWeights.from_dict({"xgb": 1.0})
