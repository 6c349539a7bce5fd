"""The compiled IsolationForest must score exactly like scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from fraudstream.models.isolation import CompiledIsolationForest

N_FEATURES = 12


def _fit(max_features: float = 1.0, seed: int = 0, **data_kwargs: float) -> IsolationForest:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1000, N_FEATURES))
    if data_kwargs.get("nan_fraction"):
        X[rng.random(X.shape) < data_kwargs["nan_fraction"]] = np.nan
    return IsolationForest(
        n_estimators=30, max_samples=256, max_features=max_features, random_state=seed
    ).fit(X)


@pytest.mark.parametrize("max_features", [1.0, 0.5, 0.25])
def test_random_rows_score_like_sklearn(max_features: float) -> None:
    stock = _fit(max_features)
    compiled = CompiledIsolationForest.from_sklearn(stock)
    X = np.random.default_rng(7).normal(scale=2.0, size=(3000, N_FEATURES))
    assert np.max(np.abs(compiled.score_samples(X) - stock.score_samples(X))) < 1e-6


@pytest.mark.parametrize("float32_thresholds", [False, True])
def test_values_exactly_on_thresholds_score_like_sklearn(float32_thresholds: bool) -> None:
    """Every split threshold, and its float32 neighbours, placed in every column.

    Fitted thresholds are float64 values between float32 data points, so sklearn's
    float32 input never equals one exactly; rounding them to float32 in place makes
    ``x == threshold`` happen for real, on both sides of the comparison.
    """
    stock = _fit(max_features=0.5)
    if float32_thresholds:
        for estimator in stock.estimators_:
            threshold = estimator.tree_.threshold
            threshold[:] = threshold.astype(np.float32)
    compiled = CompiledIsolationForest.from_sklearn(stock)
    split = [e.tree_.threshold[e.tree_.feature >= 0] for e in stock.estimators_]
    thresholds = np.concatenate(split)
    as_float32 = thresholds.astype(np.float32)
    candidates = np.concatenate(
        [
            thresholds,
            as_float32.astype(np.float64),
            np.nextafter(as_float32, np.float32(np.inf)).astype(np.float64),
            np.nextafter(as_float32, np.float32(-np.inf)).astype(np.float64),
        ]
    )
    X = np.random.default_rng(3).choice(candidates, size=(4000, N_FEATURES))
    assert np.max(np.abs(compiled.score_samples(X) - stock.score_samples(X))) < 1e-6


def test_missing_values_follow_the_trained_direction() -> None:
    stock = _fit(nan_fraction=0.1)
    compiled = CompiledIsolationForest.from_sklearn(stock)
    X = np.random.default_rng(5).normal(size=(2000, N_FEATURES))
    X[np.random.default_rng(6).random(X.shape) < 0.2] = np.nan
    assert np.max(np.abs(compiled.score_samples(X) - stock.score_samples(X))) < 1e-6


def test_single_row_gives_one_score() -> None:
    stock = _fit()
    compiled = CompiledIsolationForest.from_sklearn(stock)
    x = np.random.default_rng(8).normal(size=N_FEATURES)
    assert compiled.score_samples(x).shape == (1,)
    assert compiled.score_samples(x)[0] == pytest.approx(stock.score_samples(x[None])[0], abs=1e-9)


def test_wrong_feature_count_is_rejected() -> None:
    compiled = CompiledIsolationForest.from_sklearn(_fit())
    with pytest.raises(ValueError, match=f"{N_FEATURES} features"):
        compiled.score_samples(np.zeros((2, N_FEATURES + 1)))


def test_npz_round_trip_without_pickle(tmp_path: Path) -> None:
    compiled = CompiledIsolationForest.from_sklearn(_fit(max_features=0.5))
    path = tmp_path / "forest.npz"
    compiled.save(path)
    with np.load(path, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    loaded = CompiledIsolationForest.load(path)
    X = np.random.default_rng(9).normal(size=(500, N_FEATURES))
    assert np.array_equal(loaded.score_samples(X), compiled.score_samples(X))
